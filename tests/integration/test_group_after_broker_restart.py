"""A consumer group after a broker restart, and after a member dies without leaving.

Found by the long fault run on noida (seed 1502): after ~12 s no `netscope run` ever got
partitions again, and it looked like the broker restart at 88 s. It was not. The restart is
harmless (first test: a stable group of NetScope-configured consumers survives a SIGKILL and
restart of noida, and a fresh member gets partitions within seconds). The cause is noida-db
0.2.3's group coordinator: it never expires a member that stops heartbeating, and when that
member led the last generation, every later rebalance names the dead member leader again;
followers loop JoinGroup -> SyncGroup (REBALANCE_IN_PROGRESS after the rebalance timeout)
with the same generation, DescribeGroups says CompletingRebalance, forever (> 5 min seen),
and the state survives a broker restart. No consumer setting changes that (session 6-10 s,
rebalance timeout 3-30 s tried). The second test pins the behaviour NetScope relies on, on
brokers that implement it (`member_expiry`; noida is skipped with that reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from netscope.config import KafkaConfig
from netscope.devservices import KafkaBroker
from netscope.devservices.kafka import MEMBER_EXPIRY
from netscope.ingest.kafka import make_consumer

PARTITIONS = 4
REPO = Path(__file__).resolve().parents[2]


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.now: set[TopicPartition] = set()
        self.changed = asyncio.Event()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.now -= set(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.now |= set(assigned)
        self.changed.set()


def _cfg(broker: KafkaBroker, group: str) -> KafkaConfig:
    return KafkaConfig(
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        session_timeout_s=broker.session_timeout_ms / 1000,
    )


@contextlib.asynccontextmanager
async def _member(cfg: KafkaConfig, topic: str) -> AsyncIterator[_Assignments]:
    """A consumer built like `netscope run` builds it, polling as the fetcher does."""
    listener = _Assignments()
    consumer: AIOKafkaConsumer = make_consumer(cfg)
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
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), timeout=10)


async def _until(cond: Callable[[], bool], timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - start


def _covered(*members: _Assignments) -> bool:
    """Every partition owned by exactly one member, every member owning at least one."""
    owned = [tp.partition for m in members for tp in m.now]
    return sorted(owned) == list(range(PARTITIONS)) and all(m.now for m in members)


@pytest.mark.broker_features("durable")  # noida: group state survives the restart
async def test_fresh_member_gets_partitions_after_broker_restart(
    kafka_broker: KafkaBroker,
) -> None:
    topic, group = f"t-{uuid.uuid4().hex[:12]}", f"g-{uuid.uuid4().hex[:12]}"
    await kafka_broker.create_topic(topic, PARTITIONS)
    cfg = _cfg(kafka_broker, group)
    async with _member(cfg, topic) as first, _member(cfg, topic) as second:
        await _until(lambda: _covered(first, second), 60, "a stable group of two")
        await asyncio.to_thread(kafka_broker.kill)
        await asyncio.sleep(3)
        await asyncio.to_thread(kafka_broker.up)
        async with _member(cfg, topic) as fresh:
            took = await _until(
                lambda: _covered(first, second, fresh), 60, "the fresh member gets partitions"
            )
    assert took < 30, f"fresh member waited {took:.1f}s for partitions after the restart"


_ABANDONED_MEMBER = """
import asyncio, sys
from netscope.config import KafkaConfig
from netscope.ingest.kafka import make_consumer
from aiokafka import ConsumerRebalanceListener

class L(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked): pass
    def on_partitions_assigned(self, assigned):
        if assigned:
            print("assigned", flush=True)

async def main():
    bootstrap, group, topic, session_s = sys.argv[1:5]
    consumer = make_consumer(KafkaConfig(
        bootstrap_servers=bootstrap, group_id=group, session_timeout_s=float(session_s)))
    await consumer.start()
    consumer.subscribe([topic], listener=L())
    while True:
        await consumer.getmany(timeout_ms=200)

asyncio.run(main())
"""


@pytest.mark.broker_features(MEMBER_EXPIRY)
async def test_member_killed_without_leaving_is_expired(kafka_broker: KafkaBroker) -> None:
    """The group leader is SIGKILLed (no LeaveGroup): a new member gets every partition."""
    topic, group = f"t-{uuid.uuid4().hex[:12]}", f"g-{uuid.uuid4().hex[:12]}"
    await kafka_broker.create_topic(topic, PARTITIONS)
    cfg = _cfg(kafka_broker, group)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    leader = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _ABANDONED_MEMBER,
        kafka_broker.bootstrap,
        group,
        topic,
        str(cfg.session_timeout_s),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        assert leader.stdout is not None
        line = await asyncio.wait_for(leader.stdout.readline(), timeout=60)
        assert line.strip() == b"assigned", "the first member never got its partitions"
        leader.send_signal(signal.SIGKILL)  # no LeaveGroup: to the broker it just goes silent
        await leader.wait()
        async with _member(cfg, topic) as fresh:
            # The dead member's session expires, then the rebalance it does not rejoin ends.
            bound_s = 2 * cfg.session_timeout_s + 30
            await _until(lambda: _covered(fresh), bound_s, "the new member owns every partition")
    finally:
        if leader.returncode is None:
            leader.kill()
            await leader.wait()
