"""pytest fixtures that run real local services (Ceph RGW, tansu, noida, Prometheus, PostgreSQL,
Alertmanager).

Why a plugin module: the fixtures are shared by every test package, and keeping them out of
conftest.py leaves that file for light, suite-wide settings.

Rules the fixtures follow:
- lazy: a service starts only when a test requests its fixture (unit runs need nothing);
- fresh: one new temp data dir per session under /tmp, dynamic free ports (parallel runs
  on one machine do not clash), everything stopped and deleted at session end;
- honest absence: a missing binary skips locally with the reason, but FAILS when CI=true,
  so CI can never go green by silently skipping the integration suite.

Markers: tests using a service fixture are marked `integration` automatically.
`@pytest.mark.broker_features("durable", ...)` skips the test for brokers lacking a
feature, naming the broker and the feature (see netscope.devservices.kafka).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from netscope.devservices import (
    BrokerConfig,
    CephRgw,
    KafkaBroker,
    MissingBinaryError,
    NoidaBroker,
    Postgres,
    PostgresConfig,
    Prometheus,
    PrometheusConfig,
    RgwConfig,
    ServiceError,
    TansuBroker,
    free_port,
)
from netscope.devservices.alertmanager import Alertmanager, AlertmanagerConfig
from netscope.devservices.base import tie_daemons_to_this_process

BROKERS: dict[str, type[KafkaBroker]] = {"tansu": TansuBroker, "noida": NoidaBroker}
SERVICE_FIXTURES = frozenset(
    {
        "rgw",
        "rgw_bucket",
        "rgw_faults",
        "kafka_broker",
        "topic",
        "tansu_broker",
        "noida_broker",
        "prometheus",
        "postgres",
        "postgres_dsn",
        "alertmanager",
    }
)

T = TypeVar("T")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _require(check: Callable[[], object], service: str) -> None:
    try:
        check()
    except MissingBinaryError as exc:
        message = f"{service} unavailable: {exc}"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _start(service: Any, what: str) -> None:
    try:
        service.up()
    except ServiceError as exc:
        # A service that is installed but does not start is a real failure everywhere.
        pytest.fail(f"{what} failed to start:\n{exc}", pytrace=False)


def _distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def run_async(factory: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 60.0) -> T:
    """Run a coroutine to completion from sync code, even if a loop runs in this thread."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result(timeout=timeout_s)


def pytest_configure(config: pytest.Config) -> None:
    # A killed or interrupted session must not leave daemons behind.
    tie_daemons_to_this_process()
    config.addinivalue_line(
        "markers",
        "broker_features(*names): needs these Kafka broker features; skipped per broker "
        "that lacks one (the reason names broker and feature)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Checked from the class constant, before any broker starts: a test no broker in the
    # matrix can run costs nothing.
    marker = item.get_closest_marker("broker_features")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "kafka_broker" not in callspec.params:
        return
    broker = callspec.params["kafka_broker"]
    missing = sorted(set(marker.args) - BROKERS[broker].features)
    if missing:
        pytest.skip(f"broker {broker!r} lacks {', '.join(missing)} (known gap, see notes)")


@pytest.fixture(scope="session")
def devservices_root() -> Iterator[Path]:
    """Fresh per-session data dir; short path because Ceph admin sockets cap path length."""
    root = Path(tempfile.mkdtemp(prefix="ns-dev-", dir="/tmp"))
    yield root
    if os.environ.get("KEEP_DEVSERVICES"):  # the services' logs, for a post-mortem
        print(f"devservices kept in {root}")
        return
    shutil.rmtree(root, ignore_errors=True)


# --- Ceph RGW ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rgw(devservices_root: Path) -> Iterator[CephRgw]:
    """Single-node RGW with the dev user and the default bucket "netscope-audit"."""
    _require(CephRgw.check_binaries, "Ceph RGW")
    rgw_port, mon_port = _distinct_ports(2)
    handle = CephRgw(
        RgwConfig(data_dir=devservices_root / "rgw", rgw_port=rgw_port, mon_port=mon_port)
    )
    try:
        _start(handle, "Ceph RGW")
        yield handle
    finally:
        handle.down()


@pytest.fixture
def rgw_bucket(rgw: CephRgw) -> str:
    """A new, empty bucket for this test only.

    Creating a bucket can take seconds on a loaded 2-core machine (the first one also creates
    RGW's index and data pools), longer than the short client timeout the handle uses for
    probes: retry until a deadline instead of failing the test's setup.
    """
    name = f"t-{uuid.uuid4().hex[:16]}"
    deadline = time.monotonic() + 90
    while True:
        try:
            client = rgw.s3_client(timeout_s=30, max_attempts=3)
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=name)
            return name
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.fixture
def rgw_faults(rgw: CephRgw) -> Iterator[CephRgw]:
    """The RGW handle for fault-injection tests; heals the gateway afterwards.

    A test that fails between `freeze_rgw()` and `thaw_rgw()` would otherwise leave every
    later test in the session talking to a stopped gateway.
    """
    yield rgw
    with contextlib.suppress(ServiceError):
        rgw.thaw_rgw()
    rgw.start_rgw()


# --- Kafka-protocol brokers ---------------------------------------------------------------


def _broker(cls: type[KafkaBroker], root: Path) -> Iterator[KafkaBroker]:
    handle = cls(BrokerConfig(data_dir=root / cls.name, port=free_port()))
    _require(handle.check_binaries, f"{cls.name} broker")
    try:
        _start(handle, f"{cls.name} broker")
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="session")
def tansu_broker(devservices_root: Path) -> Iterator[KafkaBroker]:
    yield from _broker(TansuBroker, devservices_root)


@pytest.fixture(scope="session")
def noida_broker(devservices_root: Path) -> Iterator[KafkaBroker]:
    yield from _broker(NoidaBroker, devservices_root)


@pytest.fixture(scope="session", params=list(BROKERS), ids=list(BROKERS))
def kafka_broker(request: pytest.FixtureRequest) -> KafkaBroker:
    """The broker matrix: every test using it runs once per broker."""
    broker: KafkaBroker = request.getfixturevalue(f"{request.param}_broker")
    return broker


@pytest.fixture
def topic(kafka_broker: KafkaBroker) -> str:
    """A unique topic with 4 partitions, created and visible in metadata."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    run_async(lambda: kafka_broker.create_topic(name, partitions=4))
    return name


# --- Prometheus ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prometheus(devservices_root: Path) -> Iterator[Prometheus]:
    """Prometheus with lifecycle API; point it at targets with `set_scrape_targets`."""
    _require(Prometheus.check_binaries, "Prometheus")
    handle = Prometheus(
        PrometheusConfig(data_dir=devservices_root / "prometheus", port=free_port())
    )
    try:
        _start(handle, "Prometheus")
        yield handle
    finally:
        handle.down()


# --- Alertmanager --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def alertmanager(devservices_root: Path) -> Iterator[Alertmanager]:
    """Alertmanager (Debian's prometheus-alertmanager); route alerts with `set_webhook`."""
    _require(Alertmanager.check_binaries, "Alertmanager")
    handle = Alertmanager(
        AlertmanagerConfig(data_dir=devservices_root / "alertmanager", port=free_port())
    )
    try:
        _start(handle, "Alertmanager")
        yield handle
    finally:
        handle.down()


# --- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres(devservices_root: Path) -> Iterator[Postgres]:
    """PostgreSQL with superuser "netscope", trust auth on 127.0.0.1; `stop()`/`start()`."""
    _require(Postgres.check_binaries, "PostgreSQL")
    # mkdtemp makes the root 0700; when the suite runs as root, postgres runs as another
    # account that must be able to enter it (search only: it still cannot list it).
    devservices_root.chmod(0o711)
    handle = Postgres(PostgresConfig(data_dir=devservices_root / "postgres", port=free_port()))
    try:
        _start(handle, "PostgreSQL")
        yield handle
    finally:
        handle.down()


@pytest.fixture
def postgres_dsn(postgres: Postgres) -> Iterator[str]:
    """DSN of a new, empty database for this test only.

    Afterwards the server is started again if the test stopped it (a fault test failing
    between `stop()` and `start()` must not break every later test of the session).
    """
    yield postgres.create_database(f"t_{uuid.uuid4().hex[:16]}")
    try:
        postgres.start()
    except ServiceError as exc:
        pytest.fail(f"PostgreSQL did not come back after the test:\n{exc}", pytrace=False)
