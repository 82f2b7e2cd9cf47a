"""Each HTTP transport starts and stops cleanly in the real processes, again and again.

pyreqwest 0.15.1 aborted at interpreter exit in some runs (``Fatal Python error:
PyGILState_Release``, exit 134; measured in tests/unit/test_transport.py and
outbound/transports/reqwest.py). An abort at exit would lose nothing NetScope had committed,
but a supervisor would see a crash on every deploy: this checks `netscope run` (SIGTERM after
real calls) and `netscope demo` (its own timed stop) exit 0, several times each.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from netscope.devservices.base import free_port
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import make_traffic, produce, wait_for

pytestmark = pytest.mark.integration

RUNS = 3
TRANSPORTS = ("aiohttp", "reqwest")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_netscope_run_stops_cleanly_every_time(
    tansu_broker, tmp_path: Path, transport: str
) -> None:
    topic = f"lifecycle-{transport}-{os.getpid()}"
    await tansu_broker.create_topic(topic, 2)
    config = tmp_path / "netscope.toml"
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim:
        config.write_text(
            f"""
[kafka]
bootstrap_servers = "{tansu_broker.bootstrap}"
requests_topic = "{topic}"
dead_letter_topic = "{topic}.dlq"
group_id = "{topic}"
session_timeout_s = 6
[api]
port = 0
[logging]
level = "warning"
format = "console"
[audit]
backend = "local"
[audit.local]
path = "{tmp_path / "audit"}"
[audit.spool]
path = "{tmp_path / "spool"}"
free_disk_floor_bytes = 0
[upstreams.payments]
base_url = "{sim.url}"
transport = "{transport}"
"""
        )
        for run in range(RUNS):
            before = sim.stats.total
            # New requests each run: the idempotency ledger (on by default, kept beside the
            # spool across runs) would rightly skip a repeat of the previous run's keys.
            traffic = make_traffic(20, upstreams=["payments"], seed=run)
            await produce(tansu_broker.bootstrap, topic, traffic)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "netscope", "run", "-c", str(config),
                stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            )
            try:
                await wait_for(
                    lambda before=before: sim.stats.total >= before + 20,
                    timeout_s=60,
                    what=f"run {run}: 20 calls through {transport}",
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(proc.communicate(), 60)
            log = err.decode()
            assert "Fatal Python error" not in log, log[-2000:]
            assert proc.returncode == 0, f"run {run}: exit {proc.returncode}\n{log[-2000:]}"


async def test_netscope_demo_stops_cleanly_every_time(tmp_path: Path) -> None:
    """The embedded default with the default transport: broker, simulators, traffic, stop."""
    for run in range(2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "netscope", "demo", "--duration-s", "4",
            "--port", str(free_port()), "--data-dir", str(tmp_path / f"demo-{run}"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
        out, err, hung = await _communicate_or_dump(proc, DEMO_EXIT_S)
        text = out.decode() + err.decode()
        assert not hung, f"demo {run}: still running after {DEMO_EXIT_S}s\n{text[-8000:]}"
        assert "Fatal Python error" not in text, text[-2000:]
        assert proc.returncode == 0, f"demo {run}: exit {proc.returncode}\n{text[-8000:]}"
        assert "still pending 0, audit pending 0" in text


# The demo's own guard exits by 4 s of traffic + its traffic stop and catch-up (10 s each) +
# the stop's bound (Service.stop_bound_s: 130 s with the defaults and two upstreams): past
# that, something waits outside the guard.
DEMO_EXIT_S = 180


async def _communicate_or_dump(
    proc: asyncio.subprocess.Process, timeout_s: float
) -> tuple[bytes, bytes, bool]:
    """``communicate()``; a process still running after ``timeout_s`` gets SIGABRT, which
    (PYTHONFAULTHANDLER=1) prints every thread's stack, so a hang fails with its evidence."""
    talking = asyncio.ensure_future(proc.communicate())
    done, _ = await asyncio.wait({talking}, timeout=timeout_s)
    if done:
        out, err = talking.result()
        return out, err, False
    proc.send_signal(signal.SIGABRT)
    done, _ = await asyncio.wait({talking}, timeout=15)
    if not done:
        proc.kill()
    out, err = await talking
    return out, err, True
