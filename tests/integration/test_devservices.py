"""The dev services behave as the rest of the suite assumes: real S3, real Kafka, real PromQL.

These tests guard the fixtures themselves: if a launcher's readiness check lies, or a fault
hook does not do what its name says, every fault-injection test built on it is worthless.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta
from pathlib import Path

import obstore
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from obstore.store import S3Store
from typer.testing import CliRunner

from netscope.devservices import (
    BrokerConfig,
    CephRgw,
    KafkaBroker,
    Prometheus,
    ServiceError,
    TansuBroker,
)
from netscope.devservices.cli import app

pytestmark = pytest.mark.integration


def _store(rgw: CephRgw, bucket: str) -> S3Store:
    return S3Store(
        bucket,
        endpoint=rgw.endpoint,
        access_key_id=rgw.access_key,
        secret_access_key=rgw.secret_key,
        region=rgw.region,
        client_options={"allow_http": True, "timeout": "5s", "connect_timeout": "2s"},
        retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=5)},
    )


# --- Ceph RGW ------------------------------------------------------------------------------


def test_rgw_default_bucket_exists_and_is_signed_only(rgw: CephRgw) -> None:
    rgw.s3_client().head_bucket(Bucket=rgw.bucket)
    assert rgw.rgw_ready()


async def test_rgw_put_get_list_by_prefix(rgw: CephRgw, rgw_bucket: str) -> None:
    store = _store(rgw, rgw_bucket)
    for key in ("audit/a/1.jsonl", "audit/a/2.jsonl", "audit/b/1.jsonl"):
        await obstore.put_async(store, key, key.encode())

    got = await obstore.get_async(store, "audit/a/2.jsonl")
    assert bytes(await got.bytes_async()) == b"audit/a/2.jsonl"

    listed = [m["path"] for batch in obstore.list(store, prefix="audit/a") for m in batch]
    assert sorted(listed) == ["audit/a/1.jsonl", "audit/a/2.jsonl"]

    with pytest.raises(obstore.exceptions.AlreadyExistsError):
        await obstore.put_async(store, "audit/a/1.jsonl", b"again", mode="create")


async def test_rgw_kill_refuses_fast_and_restart_keeps_data(
    rgw_faults: CephRgw, rgw_bucket: str
) -> None:
    store = _store(rgw_faults, rgw_bucket)
    await obstore.put_async(store, "before-kill", b"kept")

    rgw_faults.kill_rgw()
    assert not rgw_faults.rgw_ready()
    with pytest.raises(Exception):  # noqa: B017 - obstore's error type for refused connects varies
        await asyncio.wait_for(obstore.put_async(store, "during-kill", b"x"), timeout=5)

    rgw_faults.start_rgw()
    assert rgw_faults.rgw_ready()
    got = await obstore.get_async(store, "before-kill")
    assert bytes(await got.bytes_async()) == b"kept"


def test_rgw_freeze_hangs_requests_and_thaw_recovers(rgw_faults: CephRgw) -> None:
    rgw_faults.freeze_rgw()
    # A frozen gateway still accepts TCP connections: only a timed-out request reveals it.
    with socket.create_connection(("127.0.0.1", rgw_faults.config.rgw_port), timeout=1):
        pass
    assert not rgw_faults.rgw_ready(timeout_s=0.5)

    rgw_faults.thaw_rgw()
    assert rgw_faults.rgw_ready(timeout_s=5)


# --- Kafka brokers -------------------------------------------------------------------------


async def test_broker_consumer_group_resumes_from_committed_offset(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"m{i}".encode(), partition=0)
    finally:
        await producer.stop()

    group = f"g-{topic}"

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_broker.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=kafka_broker.session_timeout_ms,
            heartbeat_interval_ms=kafka_broker.session_timeout_ms // 6,
        )

    first = consumer()
    await first.start()
    try:
        seen = [await asyncio.wait_for(first.getone(), timeout=20) for _ in range(4)]
        assert [m.value for m in seen] == [b"m0", b"m1", b"m2", b"m3"]
        await first.commit({tp: seen[-1].offset + 1})
    finally:
        await first.stop()

    second = consumer()
    await second.start()
    try:
        assert await second.committed(tp) == 4
        resumed = await asyncio.wait_for(second.getone(), timeout=20)
        assert (resumed.offset, resumed.value) == (4, b"m4")
    finally:
        await second.stop()


@pytest.mark.broker_features("durable")
async def test_broker_feature_marker_runs_only_where_declared(kafka_broker: KafkaBroker) -> None:
    assert "durable" in kafka_broker.features
    assert kafka_broker.name == "noida"


def test_broker_start_failure_reports_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = TansuBroker(BrokerConfig(data_dir=tmp_path, port=port, start_timeout_s=10))
        try:
            broker.check_binaries()
        except ServiceError as exc:
            pytest.skip(str(exc))
        with pytest.raises(ServiceError) as err:
            broker.up()
        broker.down()
    assert "last lines of" in str(err.value)
    assert "starting:" in str(err.value)


# --- Prometheus ----------------------------------------------------------------------------


async def test_prometheus_scrapes_a_target_after_reload(prometheus: Prometheus) -> None:
    assert isinstance(await prometheus.aquery("up"), list)
    own = prometheus.url.removeprefix("http://")
    prometheus.set_scrape_targets([own], interval_s=1)
    result = await asyncio.to_thread(
        prometheus.wait_for,
        f'up{{job="netscope",instance="{own}"}}',
        lambda r: bool(r) and r[0]["value"][1] == "1",
        20,
    )
    assert result[0]["metric"]["instance"] == own


# --- CLI -----------------------------------------------------------------------------------


def test_cli_status_on_empty_data_dir_reports_everything_stopped(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("rgw", "tansu", "noida", "prometheus"):
        assert f"{name} " in result.output
    assert "ready" not in result.output


def test_cli_rejects_unknown_service(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["up", "kafka9", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown service" in result.output


def test_cli_up_status_down_roundtrip(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--data-dir", str(tmp_path)]
    tansu, noida = str(_free()), str(_free())
    try:
        up = runner.invoke(
            app, ["up", "tansu", "noida", *args, "--tansu-port", tansu, "--noida-port", noida]
        )
        if up.exit_code != 0 and "not found" in up.output:
            pytest.skip(up.output)
        assert up.exit_code == 0, up.output
        # One active export per variable: pasting the block must not let the last one win.
        assert f"\nexport NETSCOPE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:{tansu}" in up.output
        assert f"# alternative: export NETSCOPE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:{noida}" in (
            up.output
        )
        # Ports given at `up` are remembered: status needs no port flags.
        status = runner.invoke(app, ["status", *args])
        assert f"tansu       ready      bootstrap=127.0.0.1:{tansu}" in status.output
        assert f"noida       ready      bootstrap=127.0.0.1:{noida}" in status.output
    finally:
        down = runner.invoke(app, ["down", "tansu", "noida", *args])
    assert down.exit_code == 0, down.output
    after = runner.invoke(app, ["status", *args]).output
    assert "tansu       stopped" in after
    assert "noida       stopped" in after


def _free() -> int:
    from netscope.devservices import free_port

    return free_port()
