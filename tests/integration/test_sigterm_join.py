"""SIGTERM while `netscope run` is in its first group join exits, within the bound (issue 15).

Found by the fault schedule (tests/faults/harness.py): an instance started while the group was
rebalancing logged ``revoked [] (now 0)``, ``netscope ready``, then ``SIGTERM received`` and
nothing more; it was still there 60 s later. aiokafka's ``getmany`` ignores its timeout while
a rebalance is in progress (it waits for the next assignment), so the fetch loop never saw the
stop while another member kept the join open. Here that member is a plain aiokafka consumer of
the same group whose revoke callback does not return (as a NetScope instance's revoke waits up
to drain_timeout_s for its audit flush), so the broker holds the new member's JoinGroup for as
long as the test wants; the signal comes at several delays after ``netscope ready``, and in
two runs the member lets go soon after the signal, so the assignment arrives during the stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from netscope.ingest.fetcher import Fetcher
from netscope.ingest.flow import FlowControl
from netscope.observability.events import EventBus
from netscope.resilience.clock import SystemClock
from tests.harness import wait_for

DELAYS_S = (0.0, 0.1, 0.3, 0.5, 1.0, 2.0)  # after "netscope ready"
# (delay after ready, the held member lets go this long after the SIGTERM)
RELEASED = ((0.3, 0.5), (1.0, 1.0))
DRAIN_S, FLUSH_S = 5.0, 2.0
STOP_WITHIN_S = 20.0  # the stop's own bound is drain + flush + 30 s; a good stop takes ~5 s
HUNG_AFTER_S = 35.0  # the test's deadline per process before it calls a stop hung
PARTITIONS = 4
# After the stopped instance left, a rebalance of the one member left: ~1 s on both brokers.
LEFT_WITHIN_S = 20.0


class _HeldRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Holds its partitions through a rebalance until released: the join stays open."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.assigned: set[TopicPartition] = set()
        self.revoking = False

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self.revoking = True
            await self.release.wait()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned = set(assigned)


@contextlib.asynccontextmanager
async def member_holding_the_group(
    bootstrap: str, topic: str, group: str, session_ms: int = 2000
) -> AsyncIterator[Any]:
    listener = _HeldRevoke()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        session_timeout_ms=session_ms,  # tansu holds a first join for half of it
        heartbeat_interval_ms=500,
        enable_auto_commit=False,
    )
    await consumer.start()
    consumer.subscribe([topic], listener=listener)

    async def poll() -> None:
        while True:
            with contextlib.suppress(Exception):
                await consumer.getmany(timeout_ms=200)
            await asyncio.sleep(0.05)

    polling = asyncio.create_task(poll())
    try:
        yield listener
    finally:
        listener.release.set()
        polling.cancel()
        await asyncio.gather(polling, return_exceptions=True)
        await asyncio.wait_for(consumer.stop(), 15)


def write_config(path: Path, *, bootstrap: str, topic: str, group: str) -> Path:
    root = path.parent
    path.write_text(
        "\n".join(
            [
                f'instance_id = "join-{group}"',
                "[kafka]",
                f'bootstrap_servers = "{bootstrap}"',
                f'requests_topic = "{topic}"',
                f'dead_letter_topic = "{topic}.dlq"',
                f'group_id = "{group}"',
                "session_timeout_s = 6",
                "[pipeline]",
                f"drain_timeout_s = {DRAIN_S}",
                f"flush_timeout_s = {FLUSH_S}",
                "[api]",
                "port = 0",
                "[logging]",
                'level = "info"',  # "netscope ready" is an info line
                'format = "console"',
                "[audit]",
                'backend = "local"',
                "[audit.local]",
                f'path = "{root / "audit"}"',
                "[audit.spool]",
                f'path = "{root / "spool"}"',
                "free_disk_floor_bytes = 0",
                "[upstreams.payments]",
                'base_url = "http://127.0.0.1:9"',
            ]
        )
        + "\n"
    )
    return path


async def sigterm_during_join(
    broker,
    topic: str,
    tmp_path: Path,
    delay_s: float,
    release_s: float | None = None,
    *,
    left_s: float | None = None,
) -> str:
    """One run: SIGTERM ``delay_s`` after ready while the join is held (until ``release_s``
    after the signal, or for good); returns what went wrong, or the empty string. With
    ``left_s``: once the instance has exited, the held member lets go and must be assigned
    every partition within ``left_s`` (the instance left: the group does not wait for it)."""
    what = f"delay {delay_s}" + ("" if release_s is None else f", released after {release_s}")
    group = f"join-{uuid.uuid4().hex[:8]}"
    # tansu's launcher says 2 s; noida refuses a session under 6 s.
    session_ms = broker.session_timeout_ms
    async with member_holding_the_group(broker.bootstrap, topic, group, session_ms) as held:
        await wait_for(lambda: bool(held.assigned), timeout_s=30, what="the member holding all")
        root = tmp_path / group
        root.mkdir()
        config = write_config(root / "netscope.toml", bootstrap=broker.bootstrap, topic=topic,
                              group=group)  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "netscope", "run", "-c", str(config),
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stderr is not None
        log: list[str] = []
        try:
            async with asyncio.timeout(60):
                while not any("netscope ready" in line for line in log):
                    line = (await proc.stderr.readline()).decode(errors="replace")
                    if not line:
                        return f"{what}: exited before ready:\n{''.join(log)[-3000:]}"
                    log.append(line)
            await asyncio.sleep(delay_s)  # the deliberate delay after ready, not a wait
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            if release_s is not None:
                asyncio.get_running_loop().call_later(release_s, held.release.set)
            reading = asyncio.ensure_future(proc.stderr.read())
            try:
                await asyncio.wait_for(proc.wait(), HUNG_AFTER_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                text = "".join(log) + (await reading).decode(errors="replace")
                return (
                    f"{what}: still running {HUNG_AFTER_S}s after SIGTERM (hung):\n{text[-3000:]}"
                )
            took = time.monotonic() - t0
            rest = await asyncio.wait_for(reading, 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = "".join(log) + rest.decode(errors="replace")
        tail = "\n".join(line for line in text.splitlines() if "Heartbeat" not in line)[-3000:]
        before_stop = text.split("SIGTERM received")[0]
        if "assigned [" in before_stop or not held.revoking:
            return f"{what}: not stopped during the join (a test problem):\n{tail}"
        if proc.returncode != 0 or "netscope stopped (exit 0)" not in text:
            return f"{what}: exit {proc.returncode}:\n{tail}"
        if took >= STOP_WITHIN_S:
            return f"{what}: the stop took {took:.1f}s:\n{tail}"
        if "fetch loop did not end" in text:  # the service's guard, not the fetch loop, ended it
            return f"{what}: the fetch loop ignored the stop:\n{tail}"
        if left_s is not None:
            held.assigned = set()
            held.release.set()
            try:
                await wait_for(lambda: len(held.assigned) == PARTITIONS, timeout_s=left_s,
                               what="the held member assigned everything")  # fmt: skip
            except AssertionError:
                return f"{what}: the group still waits for the stopped instance:\n{tail}"
        return ""


async def test_sigterm_during_the_first_group_join_exits_0_within_the_bound(
    tansu_broker, tmp_path: Path
) -> None:
    topic = f"join-stop-{os.getpid()}"
    await tansu_broker.create_topic(topic, PARTITIONS)
    runs: list[tuple[float, float | None]] = [(d, None) for d in DELAYS_S] + list(RELEASED)
    # Two at a time (2 cores); each run has its own group, so runs do not see each other.
    lanes = [runs[0::2], runs[1::2]]

    async def lane(each: list[tuple[float, float | None]]) -> list[str]:
        return [await sigterm_during_join(tansu_broker, topic, tmp_path, *run) for run in each]

    failures = [f for found in await asyncio.gather(*map(lane, lanes)) for f in found if f]
    assert not failures, "\n\n".join(failures)


# -- the fetch loop alone, against a consumer in a join that never ends -------------------------


class _JoiningConsumer:
    """aiokafka during a rebalance: getmany waits for an assignment, whatever its timeout."""

    def __init__(self) -> None:
        self.cancelled = 0

    def assignment(self) -> set[TopicPartition]:
        return set()

    def pause(self, *tps: TopicPartition) -> None: ...

    def resume(self, *tps: TopicPartition) -> None: ...

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        try:
            await asyncio.get_running_loop().create_future()  # the assignment: never
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")


class _Writer:
    pending_records = 0
    spool_full = False


async def test_the_fetch_loop_ends_at_stop_while_getmany_waits_for_an_assignment() -> None:
    consumer = _JoiningConsumer()
    for start_paused in (False, True):  # the poll of a paused consumer, too
        fetcher = Fetcher(
            consumer,
            writer=_Writer(),
            flow=FlowControl(10),
            dispatch=lambda key, work: None,
            events=EventBus(),
            clock=SystemClock(),
            max_poll_records=100,
            start_paused=start_paused,
        )
        run = asyncio.create_task(fetcher.run())
        await asyncio.sleep(0.2)  # let it reach the poll (0.05 s paused ticks)
        assert not run.done()
        fetcher.stop()
        await asyncio.wait_for(run, 1.0)
    await asyncio.sleep(0)
    assert consumer.cancelled == 2  # the polls were cancelled, not left waiting


async def test_an_instance_stopped_mid_join_leaves_the_group(kafka_broker, tmp_path: Path) -> None:
    """Found by the long noida fault run: the stop's 5 s bound cut aiokafka's close while it
    waited for the join in flight, so no LeaveGroup went out; noida never expires a member, so
    every later rebalance waited for the stopped one and no partition was assigned again. The
    join is held for good here: the instance must leave anyway, and the member left must then
    get every partition (on tansu too, well within its session-timeout eviction)."""
    topic = f"join-leave-{os.getpid()}"
    await kafka_broker.create_topic(topic, PARTITIONS)
    found = await asyncio.gather(
        *(sigterm_during_join(kafka_broker, topic, tmp_path, d, left_s=LEFT_WITHIN_S)
          for d in (0.3, 1.0))
    )  # fmt: skip
    failures = [f for f in found if f]
    assert not failures, "\n\n".join(failures)
