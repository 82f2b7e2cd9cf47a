"""Process plumbing shared by the dev-service launchers.

Why hand-written: the launchers must run the same way from the CLI (daemons outlive the
command) and from pytest fixtures (daemons die with the session), on machines without systemd
or Docker. A few dozen lines of `subprocess` + pid files do that with no extra dependency.

Every daemon gets: stdin from /dev/null, its own session (Ctrl-C in the launching terminal
does not reach it), no inherited file descriptors, a pid file and a log file in the data dir.
Every wait is bounded; a failed wait raises `ServiceError` carrying the tail of the log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1
_tie_to_parent = False


def tie_daemons_to_this_process() -> None:
    """Make daemons started from now on die (SIGKILL) if this process dies.

    For test sessions: a pytest killed by a timeout or Ctrl-C must not leave Ceph and
    brokers running on a shared 2-core machine. The CLI does not call this, since its
    daemons are meant to outlive the command. Linux only (prctl PR_SET_PDEATHSIG).
    """
    global _tie_to_parent
    _tie_to_parent = True


def _tie_here() -> bool:
    # The kernel sends the death signal when the *thread* that forked exits: a daemon
    # restarted from a worker thread (asyncio.to_thread) would die with that thread.
    import threading

    return _tie_to_parent and threading.current_thread() is threading.main_thread()


def _set_pdeathsig() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ServiceError(RuntimeError):
    """A dev service failed to start, stop or answer; the message says which and why."""


class MissingBinaryError(ServiceError):
    """A binary the service needs is not installed on this machine."""


@dataclass(frozen=True)
class ServiceStatus:
    """What `status` reports for one service."""

    name: str
    running: bool
    ready: bool
    detail: str = ""
    endpoints: dict[str, str] = field(default_factory=dict)


def require_binary(name: str, hint: str) -> str:
    """Return the absolute path of `name`, or raise with an install hint."""
    path = shutil.which(name)
    if path is None:
        raise MissingBinaryError(f"{name!r} not found on PATH; {hint}")
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (racy by nature, fine for dev/test)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(log {path} is empty)"


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    log_path: Path | None = None,
    interval_s: float = 0.1,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll `predicate` until true; raise `ServiceError` with the log tail on timeout.

    `alive` lets the wait stop early when the daemon already died: waiting the full timeout
    for a process that crashed at startup only delays the error.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if predicate():
                return
        except Exception:
            pass  # a probe that raises only means "not ready yet"
        if alive is not None and not alive():
            reason = f"{what}: process exited before becoming ready"
            break
        if time.monotonic() >= deadline:
            reason = f"{what}: not ready after {timeout_s:.1f} s"
            break
        time.sleep(interval_s)
    if log_path is not None:
        reason += f"\n--- last lines of {log_path} ---\n{log_tail(log_path)}"
    raise ServiceError(reason)


def run_cli(
    args: Sequence[str],
    *,
    timeout_s: float,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived admin command under `timeout(1)`.

    `timeout -k` kills the command even when it ignores SIGTERM (some `ceph` commands hang
    forever without ceph-mgr); the Python-side timeout is only a backstop.
    """
    cmd = ["timeout", "-k", "3", f"{timeout_s:g}", *args]
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s + 10,
            close_fds=True,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"{' '.join(args)}: no answer after {timeout_s:g} s") from exc
    if check and proc.returncode != 0:
        timed_out = " (timed out)" if proc.returncode == 124 else ""
        raise ServiceError(
            f"{' '.join(args)} exited {proc.returncode}{timed_out}\n"
            f"stdout: {proc.stdout.strip()[-2000:]}\nstderr: {proc.stderr.strip()[-2000:]}"
        )
    return proc


@dataclass(frozen=True)
class Daemon:
    """One long-running process, identified by a pid file and a binary name.

    The binary name guards against pid reuse: a stale pid file pointing at an unrelated
    process is treated as "not running" instead of being signalled.
    """

    name: str
    pid_file: Path
    log_file: Path
    binary_hint: str

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_our_process(pid, self.binary_hint) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, args: Sequence[str], *, env: dict[str, str] | None = None) -> int:
        """Spawn detached; returns the pid. Idempotent: an already-running daemon is kept."""
        existing = self.pid()
        if existing is not None:
            return existing
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} starting: {' '.join(args)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_set_pdeathsig if _tie_here() else None,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def send(self, sig: signal.Signals) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        return True

    def stop(
        self,
        *,
        first_signal: signal.Signals = signal.SIGTERM,
        grace_s: float = 10.0,
    ) -> None:
        """`first_signal`, then SIGKILL after `grace_s`; always removes the pid file."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, first_signal)
                # A stopped process never handles SIGTERM: wake it so it can.
                os.kill(pid, signal.SIGCONT)
            if not _wait_gone(pid, self.binary_hint, grace_s):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not _wait_gone(pid, self.binary_hint, 5.0):
                    raise ServiceError(f"{self.name} (pid {pid}) survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL without grace, for fault injection; returns once the process is gone."""
        self.stop(first_signal=signal.SIGKILL, grace_s=5.0)


def _reap(pid: int) -> None:
    # Daemons started by this very process become zombies when they die until reaped;
    # a zombie still has a /proc entry and would look "running".
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _is_our_process(pid: int, binary_hint: str) -> bool:
    _reap(pid)
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):
        return False
    return binary_hint in cmdline


def _wait_gone(pid: int, binary_hint: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _is_our_process(pid, binary_hint):
            return True
        time.sleep(0.05)
    return not _is_our_process(pid, binary_hint)


class PromStyleDaemon:
    """What Prometheus and Alertmanager share as local daemons: one process, an HTTP
    ``/-/ready`` endpoint on loopback, the same start wait, stop and status. Subclasses (plain
    dataclasses) give ``name``, ``config`` (``port``, ``start_timeout_s``, ``stop_grace_s``)
    and ``_daemon``, and build their own command line."""

    name: str
    config: Any
    _daemon: Daemon

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def _start_and_wait(self, argv: list[str]) -> None:
        if not self._daemon.running():
            self._daemon.start(argv)
        wait_until(
            self.ready,
            timeout_s=self.config.start_timeout_s,
            what=f"{self.name} ({self.url}/-/ready)",
            log_path=self._daemon.log_file,
            alive=self._daemon.running,
        )

    def down(self) -> None:
        self._daemon.stop(grace_s=self.config.stop_grace_s)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def status(self) -> ServiceStatus:
        running = self._daemon.running()
        return ServiceStatus(
            name=self.name,
            running=running,
            ready=running and self.ready(),
            endpoints={"http": self.url},
        )

    def env_lines(self) -> list[str]:
        return [f"# {self.name} UI/API: {self.url}"]
