"""A second instance joins and is stopped mid-join: the first is assigned every partition again.

Found by the long noida fault run (seed 1502: 7,501 of 8,049 messages never processed; the
finding in docs/reliability.md). noida 0.2.3 starts a new generation the moment a member
joins, so the instance already in the group got ``ILLEGAL_GENERATION`` for its next commit or
heartbeat, and aiokafka answers that by forgetting its member id: it rejoined as a new member,
noida completed the join with the forgotten id as leader, and no member was assigned a
partition again, through every later restart. NetScope now rejoins under the same member id
(ingest/rejoin.py). Two real ``netscope run`` processes in one group, as users scale out;
the second gets SIGTERM shortly after it is ready, while the group rebalances for it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import committed_offsets, make_traffic, produce, wait_for
from tests.integration.test_sigterm_join import write_config

PARTITIONS = 4
# After "netscope ready" of the second instance: within its join, or just after it.
DELAYS_S = (0.4, 1.5)
# Every partition back on the first instance: its session (6 s) + a held join + slack.
RECOVER_WITHIN_S = 30.0


class _Instance:
    """A ``netscope run`` whose log is read as it is written."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reading = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: Path) -> _Instance:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "netscope", "run", "-c", str(config),
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace"))

    async def logged(self, text: str, *, timeout_s: float) -> bool:
        """Whether a line contains ``text`` within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            if self._reading.done():
                return False
            await asyncio.sleep(0.05)
        return False

    async def holds(self, partitions: int, *, timeout_s: float) -> bool:
        """Whether its last assignment change ("assigned/revoked [...] (now N)") says N =
        ``partitions`` within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        text = f"(now {partitions})"
        while time.monotonic() < deadline:
            changes = [line for line in self.lines if "(now " in line]
            if changes and text in changes[-1]:
                return True
            await asyncio.sleep(0.05)
        return False

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.wait_for(self._reading, 10)

    def tail(self) -> str:
        return "".join(line for line in self.lines if "Heartbeat" not in line)[-2500:]


def _config(
    root: Path, name: str, *, bootstrap: str, topic: str, group: str, upstream: str
) -> Path:
    path = write_config(root / f"{name}.toml", bootstrap=bootstrap, topic=topic, group=group)
    # Each instance its own id, spool and audit folder, as two deployments would have.
    text = path.read_text().replace(f'instance_id = "join-{group}"', f'instance_id = "{name}"')
    for folder in ("audit", "spool"):
        text = text.replace(f'"{root / folder}"', f'"{root / name / folder}"')
    text = text.replace('base_url = "http://127.0.0.1:9"', f'base_url = "{upstream}"')
    path.write_text(text)
    return path


async def joiner_stopped_mid_join(
    broker, topic: str, tmp_path: Path, delay_s: float, upstream: str
) -> str:
    """One run; returns what went wrong, or the empty string."""
    what = f"second instance stopped {delay_s}s after ready"
    group = f"rejoin-{uuid.uuid4().hex[:8]}"
    root = tmp_path / group
    root.mkdir()
    configs = {
        name: _config(
            root, name, bootstrap=broker.bootstrap, topic=topic, group=group, upstream=upstream
        )
        for name in ("first", "second")
    }
    first = await _Instance.start(configs["first"])
    second: _Instance | None = None
    try:
        if not await first.holds(PARTITIONS, timeout_s=40):
            return f"{what}: the first instance never had every partition:\n{first.tail()}"
        second = await _Instance.start(configs["second"])
        if not await second.logged("netscope ready", timeout_s=40):
            return f"{what}: the second instance never got ready:\n{second.tail()}"
        await asyncio.sleep(delay_s)  # the deliberate delay, not a wait
        second.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.proc.wait(), 30)
        if second.proc.returncode != 0:
            return f"{what}: the second exited {second.proc.returncode}:\n{second.tail()}"
        t0 = time.monotonic()
        # Whatever the second's join did, what is produced now must be processed and
        # committed: the first instance holds every partition again (or still).
        traffic = make_traffic(4 * PARTITIONS, upstreams=["payments"], seed=int(delay_s * 10))
        ends = await produce(broker.bootstrap, topic, traffic)

        async def caught_up() -> bool:
            committed = await committed_offsets(broker.bootstrap, group, topic)
            return all(committed.get(p, 0) >= end for p, end in ends.items())

        try:
            await wait_for(caught_up, timeout_s=RECOVER_WITHIN_S, interval_s=0.5,
                           what="the group's commits past the new messages")  # fmt: skip
        except AssertionError:
            return (
                f"{what}: messages produced after the second's stop not committed within "
                f"{RECOVER_WITHIN_S:.0f}s:\n{first.tail()}\n-- second:\n{second.tail()}"
            )
        print(f"{what}: new messages committed {time.monotonic() - t0:.1f}s after its stop")
        return ""
    finally:
        for instance in (second, first):
            if instance is not None:
                await instance.close()


async def test_the_first_instance_gets_every_partition_back(kafka_broker, tmp_path: Path) -> None:
    topic = f"rejoin-{os.getpid()}"
    await kafka_broker.create_topic(topic, PARTITIONS)
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim:
        found = await asyncio.gather(
            *(joiner_stopped_mid_join(kafka_broker, topic, tmp_path, d, sim.url) for d in DELAYS_S)
        )
    failures = [f for f in found if f]
    assert not failures, "\n\n".join(failures)
