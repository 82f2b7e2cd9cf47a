"""A single-node Ceph RADOS Gateway for development and integration tests.

Why hand-written: there is no Docker engine or systemd here, and `cephadm`/`vstart.sh` need
one or the other (or a source tree). One monitor, one bluestore OSD in a sparse file and
one radosgw, all on 127.0.0.1 with auth off, is enough for real S3 semantics. Every
ceph.conf line below was needed on this machine; see docs/dev-services.md and the shared
notes for why each one is there.

Readiness is a *signed* S3 ListBuckets with the configured credentials: an anonymous
`GET /` answers 200 even when the OSD is down, so it proves nothing.
"""

from __future__ import annotations

import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netscope.devservices.base import (
    Daemon,
    ServiceError,
    ServiceStatus,
    require_binary,
    run_cli,
    wait_until,
)

_INSTALL_HINT = "install it with scripts/install-system-deps.sh (Debian: ceph-mon ceph-osd radosgw)"


@dataclass(frozen=True)
class RgwConfig:
    """What a developer may change; defaults avoid the well-known Ceph ports."""

    data_dir: Path
    rgw_port: int = 7480
    mon_port: int = 16789
    access_key: str = "netscope-dev"
    # Dev-only credential for a loopback-only gateway with Ceph auth off.
    secret_key: str = "netscope-dev-secret"
    bucket: str = "netscope-audit"
    region: str = "us-east-1"
    user_id: str = "netscope"
    bluestore_size_gib: int = 10
    start_timeout_s: float = 60.0
    cli_timeout_s: float = 20.0
    stop_grace_s: float = 15.0


@dataclass
class CephRgw:
    """Launcher and handle for the local RGW; also the object tests use for fault injection."""

    config: RgwConfig
    _daemons: dict[str, Daemon] = field(init=False, repr=False)

    name = "rgw"

    def __post_init__(self) -> None:
        root = self.data_dir
        self._daemons = {
            role: Daemon(
                name=role,
                pid_file=root / "pids" / f"{role}.pid",
                log_file=root / "log" / f"{role}.stdout.log",
                binary_hint=binary,
            )
            for role, binary in (("mon", "ceph-mon"), ("osd", "ceph-osd"), ("rgw", "radosgw"))
        }

    # --- handle attributes used by clients -------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir.resolve()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.config.rgw_port}"

    @property
    def access_key(self) -> str:
        return self.config.access_key

    @property
    def secret_key(self) -> str:
        return self.config.secret_key

    @property
    def region(self) -> str:
        return self.config.region

    @property
    def bucket(self) -> str:
        return self.config.bucket

    @property
    def conf_path(self) -> Path:
        return self.data_dir / "ceph.conf"

    # --- lifecycle ---------------------------------------------------------------------------

    @staticmethod
    def check_binaries() -> None:
        for binary in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "timeout"):
            require_binary(binary, _INSTALL_HINT)

    def up(self) -> None:
        """Bootstrap on first use, (re)start whatever is not running, wait for S3."""
        self.check_binaries()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("run", "log", "crash", "pids", "rgw"):
            (self.data_dir / sub).mkdir(exist_ok=True)
        self._write_conf()
        self._start_mon()
        self._start_osd()
        self.start_rgw()
        self._ensure_user()
        self.create_bucket(self.bucket)

    def down(self) -> None:
        """Stop radosgw, then the OSD, then the monitor (reverse dependency order)."""
        for role in ("rgw", "osd", "mon"):
            self._daemons[role].stop(grace_s=self.config.stop_grace_s)

    def status(self) -> ServiceStatus:
        running = {role: d.running() for role, d in self._daemons.items()}
        all_up = all(running.values())
        ready = all_up and self.rgw_ready()
        detail = " ".join(f"{role}={'up' if up else 'down'}" for role, up in running.items())
        return ServiceStatus(
            name=self.name,
            running=all_up,
            ready=ready,
            detail=detail,
            endpoints={"s3": self.endpoint},
        )

    def pids(self) -> dict[str, int]:
        """Running daemons by role (benchmarks account their CPU)."""
        return {role: pid for role, d in self._daemons.items() if (pid := d.pid()) is not None}

    def env_lines(self) -> list[str]:
        return [
            "export NETSCOPE_AUDIT__BACKEND=s3",
            f"export NETSCOPE_AUDIT__S3__ENDPOINT={self.endpoint}",
            f"export NETSCOPE_AUDIT__S3__REGION={self.region}",
            f"export NETSCOPE_AUDIT__S3__BUCKET={self.bucket}",
            f"export NETSCOPE_AUDIT__S3__ACCESS_KEY_ID={self.access_key}",
            f"export NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY={self.secret_key}  # dev only",
        ]

    # --- fault hooks -------------------------------------------------------------------------

    def kill_rgw(self) -> None:
        """SIGKILL radosgw only; the OSD and monitor keep running (data survives)."""
        self._daemons["rgw"].kill()

    def start_rgw(self) -> None:
        """Start radosgw if it is not running and wait until signed S3 requests succeed."""
        rgw = self._daemons["rgw"]
        if not rgw.running():
            rgw.start(
                [
                    "radosgw",
                    "-f",
                    "-c",
                    str(self.conf_path),
                    "-n",
                    "client.rgw.a",
                    "--no-mon-config",
                ],
            )
        # Before the user exists a signed request is refused (InvalidAccessKeyId), which
        # still proves radosgw reached RADOS: accept that answer during bootstrap.
        wait_until(
            lambda: self._s3_answers(allow_unknown_key=True),
            timeout_s=self.config.start_timeout_s,
            what="radosgw (signed ListBuckets)",
            log_path=self.data_dir / "log" / "client.rgw.a.log",
            alive=rgw.running,
        )

    def freeze_rgw(self) -> None:
        """SIGSTOP radosgw: connects still succeed, requests hang (a 'stuck' gateway)."""
        if not self._daemons["rgw"].send(signal.SIGSTOP):
            raise ServiceError("freeze_rgw: radosgw is not running")

    def thaw_rgw(self) -> None:
        if not self._daemons["rgw"].send(signal.SIGCONT):
            raise ServiceError("thaw_rgw: radosgw is not running")

    def rgw_ready(self, timeout_s: float = 2.0) -> bool:
        """True when a signed ListBuckets with the configured credentials succeeds."""
        try:
            return self._s3_answers(allow_unknown_key=False, timeout_s=timeout_s)
        except Exception:
            return False

    # --- S3 helpers --------------------------------------------------------------------------

    def s3_client(self, *, timeout_s: float = 5.0, max_attempts: int = 1) -> Any:
        """A boto3 S3 client for this gateway: path-style, no retries hiding faults."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
                retries={"max_attempts": max_attempts, "mode": "standard"},
            ),
        )

    def create_bucket(self, name: str) -> str:
        """Create `name` if missing (idempotent); returns the name."""
        client = self.s3_client(max_attempts=3)
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyExists":
                raise
        return name

    def _s3_answers(self, *, allow_unknown_key: bool, timeout_s: float = 2.0) -> bool:
        from botocore.exceptions import ClientError

        client = self.s3_client(timeout_s=timeout_s)
        try:
            client.list_buckets()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            return allow_unknown_key and code == "InvalidAccessKeyId"
        return True

    # --- bootstrap steps ---------------------------------------------------------------------

    def _ceph(self, *args: str, check: bool = True) -> str:
        proc = run_cli(
            ["ceph", "-c", str(self.conf_path), *args],
            timeout_s=self.config.cli_timeout_s,
            check=check,
        )
        return proc.stdout

    def _start_mon(self) -> None:
        mon = self._daemons["mon"]
        mon_data = self.data_dir / "mon" / "ceph-a"
        if not (mon_data / "store.db").exists():
            mon_data.mkdir(parents=True, exist_ok=True)
            run_cli(
                ["ceph-mon", "-c", str(self.conf_path), "--mkfs", "-i", "a"],
                timeout_s=self.config.cli_timeout_s,
            )
        if not mon.running():
            mon.start(["ceph-mon", "-f", "-c", str(self.conf_path), "-i", "a"])
        wait_until(
            lambda: (
                run_cli(
                    ["ceph", "-c", str(self.conf_path), "mon", "stat"],
                    timeout_s=3,
                    check=True,
                ).returncode
                == 0
            ),
            timeout_s=self.config.start_timeout_s,
            what="ceph-mon (mon stat)",
            log_path=self.data_dir / "log" / "mon.a.log",
            alive=mon.running,
            interval_s=0.2,
        )

    def _start_osd(self) -> None:
        osd = self._daemons["osd"]
        osd_data = self.data_dir / "osd" / "ceph-0"
        if not (osd_data / "whoami").exists():
            osd_uuid = str(uuid.uuid4())
            osd_data.mkdir(parents=True, exist_ok=True)
            self._ceph("osd", "new", osd_uuid, "0")
            run_cli(
                [
                    "ceph-osd",
                    "-c",
                    str(self.conf_path),
                    "-i",
                    "0",
                    "--mkfs",
                    "--osd-uuid",
                    osd_uuid,
                ],
                timeout_s=max(self.config.cli_timeout_s, 60),
            )
        if not osd.running():
            osd.start(["ceph-osd", "-f", "-c", str(self.conf_path), "-i", "0"])
        asok = self.data_dir / "run" / "ceph-osd.0.asok"
        wait_until(
            lambda: (
                '"active"'
                in run_cli(["ceph", "--admin-daemon", str(asok), "status"], timeout_s=3).stdout
            ),
            timeout_s=self.config.start_timeout_s,
            what="ceph-osd (admin socket state active)",
            log_path=self.data_dir / "log" / "osd.0.log",
            alive=osd.running,
            interval_s=0.2,
        )

    def _ensure_user(self) -> None:
        args = [
            "radosgw-admin",
            "-c",
            str(self.conf_path),
            "-n",
            "client.rgw.a",
            "--no-mon-config",
        ]
        info = run_cli(
            [*args, "user", "info", f"--uid={self.config.user_id}"],
            timeout_s=self.config.cli_timeout_s,
            check=False,
        )
        if info.returncode == 0 and self.access_key in info.stdout:
            return
        run_cli(
            [
                *args,
                "user",
                "create",
                f"--uid={self.config.user_id}",
                "--display-name=NetScope dev",
                f"--access-key={self.access_key}",
                f"--secret-key={self.secret_key}",
            ],
            timeout_s=self.config.cli_timeout_s,
        )
        wait_until(
            self.rgw_ready,
            timeout_s=self.config.start_timeout_s,
            what="radosgw accepting the dev user's signature",
            log_path=self.data_dir / "log" / "client.rgw.a.log",
        )

    def _write_conf(self) -> None:
        """(Re)write ceph.conf, keeping the cluster's fsid and monitor address.

        The RGW port may change between runs; the monitor address may not, because it is
        baked into the monitor's map at bootstrap.
        """
        fsid = str(uuid.uuid4())
        if self.conf_path.exists():
            old = dict(
                line.split("=", 1)
                for line in self.conf_path.read_text().splitlines()
                if "=" in line and not line.startswith("#")
            )
            fsid = old.get("fsid ", f" {fsid}").strip()
            old_mon = old.get("mon host ", "").strip()
            if old_mon and old_mon != f"v2:127.0.0.1:{self.config.mon_port}":
                raise ServiceError(
                    f"{self.data_dir} was bootstrapped with monitor {old_mon}; the monitor "
                    f"port cannot change (use port {old_mon.rsplit(':', 1)[-1]} or delete "
                    "the data dir)"
                )
        self.conf_path.write_text(self._render_conf(fsid))

    def _render_conf(self, fsid: str) -> str:
        c = self.config
        d = self.data_dir
        mon = f"v2:127.0.0.1:{c.mon_port}"
        return f"""# Generated by netscope.devservices.ceph; loopback-only, auth off: dev use only.
[global]
fsid = {fsid}
mon host = {mon}
mon initial members = a
ms bind msgr1 = false
ms bind ipv6 = false
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms mon client mode = crc
client mount timeout = 30
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = {d}/run
admin socket = {d}/run/$cluster-$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
crash dir = {d}/crash
keyring = {d}/keyring
mon data = {d}/mon/$cluster-$id
osd data = {d}/osd/$cluster-$id
log to stderr = false
err to stderr = true

[mon]
public addr = {mon}
paxos propose interval = 0.05
paxos min wait = 0.01
mon data avail crit = 1
mon data avail warn = 2

[osd]
osd objectstore = bluestore
bluestore block create = true
bluestore block size = {c.bluestore_size_gib}G

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{c.rgw_port} tcp_nodelay=1
rgw thread pool size = 128
rgw exit timeout secs = 10
rgw dns name = localhost
rgw data = {d}/rgw
"""
