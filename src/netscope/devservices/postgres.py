"""A private local PostgreSQL server for development and ledger integration tests.

Why a private cluster: the shared ledger must be tested against a real PostgreSQL (locking,
transactions, a server that goes away mid-stream), but no cluster runs on these machines and
there is no systemd or Docker. `initdb` + `postgres` on loopback with trust auth, socket and
data under one directory, gives a disposable server in about a second.

Why an unprivileged OS account: `initdb` and `postgres` refuse to run as root. When this
process is root, both run through `setpriv` (util-linux, exec's in place, so the pid file
holds postgres' own pid and `--pdeathsig=keep` preserves the test session's death signal
across the uid change). The account is, in order: `PostgresConfig.os_user`, the owner of an
existing cluster, Debian's `postgres` account, or a `netscope-pg` system account created once.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from netscope.devservices.base import (
    Daemon,
    MissingBinaryError,
    ServiceError,
    ServiceStatus,
    require_binary,
    run_cli,
    wait_until,
)

_INSTALL_HINT = "install it with scripts/install-system-deps.sh (Debian: postgresql)"
_BINARIES = ("initdb", "postgres", "pg_isready", "psql")
_FALLBACK_OS_USER = "netscope-pg"
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class PostgresConfig:
    data_dir: Path
    port: int = 15432
    user: str = "netscope"
    database: str = "netscope"
    os_user: str | None = None  # account running postgres when we are root; None: pick one
    start_timeout_s: float = 30.0
    stop_grace_s: float = 15.0
    cli_timeout_s: float = 60.0


def find_bin_dir() -> Path:
    """The directory holding initdb, postgres, pg_isready and psql together.

    Debian keeps the server binaries off PATH (/usr/lib/postgresql/<major>/bin), so PATH is
    tried first and then the newest Debian major.
    """
    candidates: list[Path] = []
    on_path = shutil.which("postgres")
    if on_path is not None:
        candidates += [Path(on_path).parent, Path(on_path).resolve().parent]

    def major(bin_dir: Path) -> int:
        return int(bin_dir.parent.name) if bin_dir.parent.name.isdigit() else -1

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major, reverse=True)
    for bin_dir in candidates:
        if all(os.access(bin_dir / b, os.X_OK) for b in _BINARIES):
            return bin_dir
    raise MissingBinaryError(
        f"PostgreSQL server binaries ({', '.join(_BINARIES)}) not found on PATH or in "
        f"/usr/lib/postgresql/*/bin; {_INSTALL_HINT}"
    )


@dataclass
class Postgres:
    """Launcher and handle: DSNs, per-test databases, stop/start for fault tests."""

    config: PostgresConfig
    _daemon: Daemon = field(init=False, repr=False)

    name = "postgres"

    def __post_init__(self) -> None:
        self._daemon = Daemon(
            name=self.name,
            pid_file=self.data_dir / "pids" / "postgres.pid",
            log_file=self.data_dir / "log" / "postgres.log",
            binary_hint="postgres",
        )

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir.resolve()

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_file(self) -> Path:
        return self._daemon.log_file

    def dsn(self, database: str | None = None) -> str:
        db = database or self.config.database
        return f"postgresql://{self.config.user}@127.0.0.1:{self.config.port}/{db}"

    @staticmethod
    def check_binaries() -> None:
        find_bin_dir()
        if os.geteuid() == 0:
            require_binary("setpriv", "install util-linux (needed to run postgres as non-root)")

    # --- lifecycle ---------------------------------------------------------------------------

    def up(self) -> None:
        """Create the cluster on first use, start it if stopped, ensure the default database."""
        self.check_binaries()
        self._init_cluster()
        self.start()
        self.create_database(self.config.database)

    def down(self) -> None:
        self.stop()

    def start(self) -> None:
        """Start on the existing cluster (same port and data) and wait; no-op when running."""
        if not (self.cluster_dir / "PG_VERSION").exists():
            raise ServiceError(f"postgres: no cluster in {self.cluster_dir}; call up() first")
        if not self._daemon.running():
            postgres = str(find_bin_dir() / "postgres")
            self._daemon.start(
                self._as_owner(
                    [
                        postgres,
                        "-D", str(self.cluster_dir),
                        "-k", str(self.socket_dir),
                        "-p", str(self.config.port),
                        "-c", "listen_addresses=127.0.0.1",
                    ]
                ),
                env=_clean_env(),
            )  # fmt: skip
        wait_until(
            self.ready,
            timeout_s=self.config.start_timeout_s,
            what=f"postgres (127.0.0.1:{self.config.port})",
            log_path=self.log_file,
            alive=self._daemon.running,
        )

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open sessions are cut, unlike SIGTERM's wait for them."""
        self._daemon.stop(first_signal=signal.SIGINT, grace_s=self.config.stop_grace_s)

    def kill(self) -> None:
        """Immediate shutdown (SIGQUIT, no checkpoint): the next start runs crash recovery."""
        self._daemon.stop(first_signal=signal.SIGQUIT, grace_s=self.config.stop_grace_s)

    def ready(self) -> bool:
        """True when the server accepts connections on its TCP port (pg_isready)."""
        try:
            pg_isready = str(find_bin_dir() / "pg_isready")
            proc = subprocess.run(
                [pg_isready, "-q", "-h", "127.0.0.1", "-p", str(self.config.port), "-t", "2"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env=_clean_env(),
                timeout=5,
                check=False,
            )
        except (MissingBinaryError, OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0

    def status(self) -> ServiceStatus:
        running = self._daemon.running()
        return ServiceStatus(
            name=self.name,
            running=running,
            ready=running and self.ready(),
            endpoints={"dsn": self.dsn()},
        )

    def pid(self) -> int | None:
        return self._daemon.pid()

    def env_lines(self) -> list[str]:
        return [
            "export NETSCOPE_LEDGER__BACKEND=postgresql",
            f"export NETSCOPE_LEDGER__DSN={self.dsn()}",
        ]

    # --- test helpers --------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database `name` unless it exists; returns its DSN (fresh DB per test)."""
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        exists = f"select 1 from pg_database where datname = '{name}'"
        if self._psql(exists) != "1":
            proc = self._psql_proc(f'create database "{name}"')
            if proc.returncode != 0 and self._psql(exists) != "1":
                raise ServiceError(f"postgres: create database {name}: {proc.stderr.strip()}")
        return self.dsn(name)

    # --- internals -----------------------------------------------------------------------

    def _psql(self, sql: str) -> str:
        proc = self._psql_proc(sql)
        if proc.returncode != 0:
            raise ServiceError(f"postgres: {sql!r} failed: {proc.stderr.strip()[-2000:]}")
        return proc.stdout.strip()

    def _psql_proc(self, sql: str) -> subprocess.CompletedProcess[str]:
        psql = str(find_bin_dir() / "psql")
        args = [psql, "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", self.dsn("postgres")]
        env = _clean_env() | {"PGCONNECT_TIMEOUT": "5"}
        return run_cli(
            [*args, "-c", sql], timeout_s=self.config.cli_timeout_s, env=env, check=False
        )

    def _init_cluster(self) -> None:
        """initdb into a scratch dir renamed into place: a half-made cluster is never used."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        owner = self._owner()
        self.socket_dir.mkdir(exist_ok=True)
        self.socket_dir.chmod(0o755)
        if owner is not None:
            # Our own service dir only needs to be enterable; ancestors are checked, not changed.
            self.data_dir.chmod(self.data_dir.stat().st_mode | stat.S_IXOTH)
            _check_searchable(self.data_dir, owner)
            os.chown(self.socket_dir, owner.pw_uid, owner.pw_gid)
        if (self.cluster_dir / "PG_VERSION").exists():
            return
        scratch = self.data_dir / "pgdata.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if owner is not None:
            os.chown(scratch, owner.pw_uid, owner.pw_gid)
        initdb = str(find_bin_dir() / "initdb")
        run_cli(
            self._as_owner(
                [initdb, "-D", str(scratch), "-U", self.config.user, "--auth=trust",
                 "--encoding=UTF8", "--locale=C"]
            ),
            timeout_s=max(self.config.cli_timeout_s, 120),
            env=_clean_env(),
        )  # fmt: skip
        scratch.rename(self.cluster_dir)

    def _owner(self) -> pwd.struct_passwd | None:
        """The account postgres runs as; None when this process is not root (runs as itself)."""
        if os.geteuid() != 0:
            return None
        if self.config.os_user:
            return _account(self.config.os_user)
        if self.cluster_dir.exists():
            uid = self.cluster_dir.stat().st_uid
            if uid != 0:
                return pwd.getpwuid(uid)
        try:
            return pwd.getpwnam("postgres")  # created by Debian's postgresql-common
        except KeyError:
            return _ensure_system_account(_FALLBACK_OS_USER)

    def _as_owner(self, args: list[str]) -> list[str]:
        owner = self._owner()
        if owner is None:
            return args
        setpriv = require_binary("setpriv", "install util-linux")
        return [
            setpriv,
            f"--reuid={owner.pw_uid}",
            f"--regid={owner.pw_gid}",
            "--init-groups",
            "--pdeathsig=keep",
            "--",
            *args,
        ]


def _clean_env() -> dict[str, str]:
    # No inherited PG* variables or exotic locales: the same server everywhere.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}


def _account(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:
        raise ServiceError(f"postgres: OS user {name!r} does not exist") from exc


def _ensure_system_account(name: str) -> pwd.struct_passwd:
    """Create a login-less system account once; tolerate a parallel session creating it."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = require_binary("useradd", "install passwd, or set PostgresConfig.os_user")
    proc = run_cli(
        [useradd, "--system", "--user-group", "--no-create-home",
         "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
        timeout_s=30,
        check=False,
    )  # fmt: skip
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:
        raise ServiceError(f"postgres: could not create OS user {name!r}: {proc.stderr}") from exc


def _check_searchable(path: Path, owner: pwd.struct_passwd) -> None:
    """Fail early and clearly when the postgres account cannot reach the data dir.

    Temp dirs are often 0700 root; initdb would otherwise die with a bare EACCES.
    """
    groups = set(os.getgrouplist(owner.pw_name, owner.pw_gid))
    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid == owner.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            raise ServiceError(
                f"postgres runs as OS user {owner.pw_name!r} (root may not), which cannot "
                f"enter {directory}: `chmod o+x {directory}` or use another data dir"
            )
