"""Replay windows on real brokers: time -> offsets, reading a plan, resetting a group onto it.

The data is produced with explicit record timestamps, so every expected offset is computed
from what was written, not read back from the broker under test. noida implements
ListOffsets by timestamp exactly; tansu does not (it answers by write time, 0 past the end,
and under-reports end offsets): there the planner must refuse, or its plan must still be
exact. Never a silent start at offset 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from netscope.config import KafkaConfig
from netscope.devservices import KafkaBroker
from netscope.devservices.kafka import TIME_OFFSETS
from netscope.replay.window import (
    GroupActive,
    PartitionPlan,
    WindowPlan,
    WindowStalled,
    WindowUnsupported,
    plan_window,
    read_window,
    reset_group,
    window_consumer,
)
from tests.harness import committed_offsets

S = 1000  # one second in ms
# An hour ago, on a whole second: far from a broker's write time ("now"), which is what
# tansu looks up by, yet inside retention. noida, like Kafka, deletes records whose
# timestamps are older than retention.ms (7 days): data stamped in 2023 vanishes mid-test.
BASE = (int(time.time()) - 3600) * S


@dataclass(frozen=True)
class Written:
    """What a test produced: (offset, timestamp) per partition, in offset order."""

    topic: str
    rows: dict[int, list[tuple[int, int]]]

    def expected(self, from_ms: int, to_ms: int) -> dict[int, tuple[int, int]]:
        """Kafka's semantics, computed from the data: the first offset with ts >= bound,
        else the log end."""
        out: dict[int, tuple[int, int]] = {}
        for partition, rows in self.rows.items():
            end = rows[-1][0] + 1 if rows else 0

            def first(bound: int, rows: list[tuple[int, int]] = rows, end: int = end) -> int:
                return next((o for o, ts in rows if ts >= bound), end)

            out[partition] = (first(from_ms), first(to_ms))
        return out


# p0: 30 records one second apart from BASE, in three batches; p1: after every window
# below; p2: 100 s before BASE; p3: empty.
LAYOUT: dict[int, list[int]] = {
    0: [BASE + i * S for i in range(30)],
    1: [BASE + 100 * S + i * S for i in range(10)],
    2: [BASE - 100 * S + i * S for i in range(10)],
    3: [],
}


async def produce_timed(
    bootstrap: str, topic: str, layout: Mapping[int, Sequence[int | None]]
) -> Written:
    """Send with explicit timestamps (None: now, by this clock), ten per batch; return the
    offsets the broker assigned with the timestamps sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    rows: dict[int, list[tuple[int, int]]] = {p: [] for p in layout}
    try:
        for partition, stamps in layout.items():
            for chunk in range(0, len(stamps), 10):
                sent = []
                for i in range(chunk, min(chunk + 10, len(stamps))):
                    stamp = stamps[i] if stamps[i] is not None else int(time.time() * 1000)
                    fut = await producer.send(
                        topic, f"p{partition}-{i}".encode(), partition=partition, timestamp_ms=stamp
                    )
                    sent.append((fut, stamp))
                for fut, stamp in sent:
                    rows[partition].append(((await fut).offset, stamp))
    finally:
        await producer.stop()
    for partition_rows in rows.values():
        partition_rows.sort()
    return Written(topic, rows)


def offsets(plan: WindowPlan) -> dict[int, tuple[int, int]]:
    return {p.partition: (p.start_offset, p.end_offset) for p in plan.partitions}


def cfg(broker: KafkaBroker) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=broker.bootstrap)


async def plan(broker: KafkaBroker, topic: str, from_ms: int, to_ms: int) -> WindowPlan:
    async with window_consumer(cfg(broker)) as consumer:
        return await plan_window(consumer, topic, from_ms, to_ms)


# --- planning on a broker with exact time lookups --------------------------------------------


@pytest.mark.broker_features(TIME_OFFSETS)
async def test_middle_window_plan_is_exact_and_end_exclusive(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    written = await produce_timed(kafka_broker.bootstrap, topic, LAYOUT)
    # From exactly record 10's timestamp (included) to exactly record 20's (excluded).
    got = await plan(kafka_broker, topic, BASE + 10 * S, BASE + 20 * S)
    assert offsets(got) == {0: (10, 20), 1: (0, 0), 2: (10, 10), 3: (0, 0)}
    assert offsets(got) == written.expected(BASE + 10 * S, BASE + 20 * S)
    assert got.total_offsets == 10
    assert [p.partition for p in got.non_empty] == [0]


@pytest.mark.broker_features(TIME_OFFSETS)
async def test_window_past_the_end_is_empty_at_the_log_end(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    await produce_timed(kafka_broker.bootstrap, topic, LAYOUT)
    got = await plan(kafka_broker, topic, BASE + 500 * S, BASE + 600 * S)
    assert offsets(got) == {0: (30, 30), 1: (10, 10), 2: (10, 10), 3: (0, 0)}
    assert got.empty and got.total_offsets == 0


@pytest.mark.broker_features(TIME_OFFSETS)
async def test_window_from_before_the_start_starts_at_the_beginning(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    await produce_timed(kafka_broker.bootstrap, topic, LAYOUT)
    got = await plan(kafka_broker, topic, BASE - 500 * S, BASE + 3 * S + 500)
    assert offsets(got) == {0: (0, 4), 1: (0, 0), 2: (0, 10), 3: (0, 0)}
    only = await _plan_partitions(kafka_broker, topic, BASE - 500 * S, BASE + 3 * S + 500, [2])
    assert offsets(only) == {2: (0, 10)}


async def _plan_partitions(
    broker: KafkaBroker, topic: str, from_ms: int, to_ms: int, partitions: list[int]
) -> WindowPlan:
    async with window_consumer(cfg(broker)) as consumer:
        return await plan_window(consumer, topic, from_ms, to_ms, partitions)


@pytest.mark.broker_features(TIME_OFFSETS)
async def test_read_window_yields_exactly_the_window_and_stops(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    written = await produce_timed(kafka_broker.bootstrap, topic, LAYOUT)
    from_ms, to_ms = BASE - 95 * S, BASE + 5 * S
    async with window_consumer(cfg(kafka_broker)) as consumer:
        got = await plan_window(consumer, topic, from_ms, to_ms)
        assert offsets(got) == {0: (0, 5), 1: (0, 0), 2: (5, 10), 3: (0, 0)}
        async with asyncio.timeout(30):  # the iterator must end on its own
            records = [r async for r in read_window(consumer, got)]
    seen = sorted((r.partition, r.offset) for r in records)
    assert seen == [(0, o) for o in range(5)] + [(2, o) for o in range(5, 10)]
    assert all(from_ms <= r.timestamp < to_ms for r in records)
    window = {(p, o) for p, rows in written.rows.items() for o, ts in rows if from_ms <= ts < to_ms}
    assert set(seen) == window


# --- the broker matrix: exact, or refused; never a silent start at 0 --------------------------

WINDOWS = {
    "middle": (BASE + 10 * S, BASE + 20 * S),
    "between-records": (BASE + 9 * S + 500, BASE + 19 * S + 500),
    "past-the-end": (BASE + 500 * S, BASE + 600 * S),
    "overlapping-start": (BASE - 500 * S, BASE + 3 * S + 500),
    "entirely-before": (BASE - 500 * S, BASE - 400 * S),
    "everything": (BASE - 500 * S, BASE + 500 * S),
    # After the broker's write time too: tansu's own "past the end" answer (offset 0).
    "future": (BASE + 7200 * S, BASE + 9000 * S),
}


async def test_every_window_is_exact_or_refused(kafka_broker: KafkaBroker, topic: str) -> None:
    written = await produce_timed(kafka_broker.bootstrap, topic, LAYOUT)
    refused: dict[str, str] = {}
    async with window_consumer(cfg(kafka_broker)) as consumer:
        for name, (from_ms, to_ms) in WINDOWS.items():
            try:
                got = await plan_window(consumer, topic, from_ms, to_ms)
            except WindowUnsupported as exc:
                refused[name] = str(exc)
                continue
            assert offsets(got) == written.expected(from_ms, to_ms), name
    if TIME_OFFSETS in kafka_broker.features:
        assert refused == {}
    else:
        # tansu answers offset 0 for these: refusing is the only correct outcome.
        assert {"middle", "between-records", "past-the-end", "future"} <= set(refused), refused
        assert all("record timestamp" in m or "end offsets" in m for m in refused.values())


async def test_live_timestamps_window_is_exact_or_refused(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    """Timestamps from the producer's clock: tansu's write-time lookup then looks right,
    and only its wrong end offsets betray it (a plan ending early in every partition)."""
    before = int(time.time() * 1000) - 60 * S
    written = await produce_timed(kafka_broker.bootstrap, topic, {p: [None] * 25 for p in range(4)})
    from_ms, to_ms = before, int(time.time() * 1000) + 3600 * S
    try:
        got = await plan(kafka_broker, topic, from_ms, to_ms)
    except WindowUnsupported as exc:
        assert TIME_OFFSETS not in kafka_broker.features, exc
        assert "end offsets are wrong" in str(exc)
        return
    assert offsets(got) == written.expected(from_ms, to_ms) == {p: (0, 25) for p in range(4)}


async def test_plan_rejects_bad_requests(kafka_broker: KafkaBroker, topic: str) -> None:
    async with window_consumer(cfg(kafka_broker)) as consumer:
        with pytest.raises(ValueError, match="must be before"):
            await plan_window(consumer, topic, BASE, BASE)
        with pytest.raises(ValueError, match="has no partition 7"):
            await plan_window(consumer, topic, BASE, BASE + S, [0, 7])


# --- reading a given plan (no time lookup involved: both brokers) -----------------------------


async def test_read_window_reads_a_given_plan_and_commits_nothing(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    await produce_timed(kafka_broker.bootstrap, topic, LAYOUT)
    given = WindowPlan(
        0,
        1,
        [
            PartitionPlan(topic, 0, 5, 12),  # 18 more records follow: must stop at 12
            PartitionPlan(topic, 1, 3, 3),  # empty: never read
            PartitionPlan(topic, 2, 8, 10),  # to the log end
        ],
    )
    async with window_consumer(cfg(kafka_broker)) as consumer:
        async with asyncio.timeout(30):
            records = [r async for r in read_window(consumer, given)]
        assert consumer._group_id is None  # nothing to commit with
    assert sorted((r.partition, r.offset) for r in records) == [(0, o) for o in range(5, 12)] + [
        (2, 8),
        (2, 9),
    ]
    assert [r.value for r in records if r.partition == 0] == [
        f"p0-{i}".encode() for i in range(5, 12)
    ]


async def test_read_window_stalls_loudly_on_offsets_the_broker_lacks(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    """A plan promising records that never come (wrong end offsets) raises, not hangs."""
    await produce_timed(kafka_broker.bootstrap, topic, LAYOUT)
    promised = WindowPlan(0, 1, [PartitionPlan(topic, 0, 28, 30), PartitionPlan(topic, 3, 0, 5)])
    got: list[tuple[int, int]] = []
    async with window_consumer(cfg(kafka_broker)) as consumer:
        async with asyncio.timeout(30):
            with pytest.raises(WindowStalled, match=r"partition 3 at 0 of \[0, 5\)"):
                async for r in read_window(consumer, promised, idle_timeout_s=1.0):
                    got.append((r.partition, r.offset))
    assert got == [(0, 28), (0, 29)]


async def test_read_window_refuses_an_auto_committing_consumer() -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers="127.0.0.1:1", group_id="live", enable_auto_commit=True
    )
    with pytest.raises(ValueError, match="auto-commit"):
        async for _ in read_window(consumer, WindowPlan(0, 1, [PartitionPlan("t", 0, 0, 1)])):
            pass


# --- group reset -------------------------------------------------------------------------------


def _plan_with_starts(topic: str, starts: dict[int, int]) -> WindowPlan:
    return WindowPlan(0, 1, [PartitionPlan(topic, p, s, s + 5) for p, s in starts.items()])


async def _commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def test_reset_group_dry_run_then_commit_while_inactive(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    await produce_timed(kafka_broker.bootstrap, topic, LAYOUT)
    group = f"g-{topic}"
    tp = [TopicPartition(topic, p) for p in range(4)]
    await _commit(kafka_broker.bootstrap, group, {tp[0]: 25})
    target = _plan_with_starts(topic, {0: 10, 1: 0, 2: 3, 3: 0})

    dry = await reset_group(kafka_broker.bootstrap, group, target, dry_run=True)
    assert dry.dry_run
    assert dry.before == {tp[0]: 25, tp[1]: None, tp[2]: None, tp[3]: None}
    assert dry.after == {tp[0]: 10, tp[1]: 0, tp[2]: 3, tp[3]: 0}
    assert await committed_offsets(kafka_broker.bootstrap, group, topic) == {0: 25}

    done = await reset_group(cfg(kafka_broker), group, target, dry_run=False)
    assert not done.dry_run
    assert done.before == dry.before and done.after == dry.after
    assert done.rows()[0] == (topic, 0, 25, 10)
    assert await committed_offsets(kafka_broker.bootstrap, group, topic) == {
        0: 10,
        1: 0,
        2: 3,
        3: 0,
    }


async def _active_member(broker: KafkaBroker, topic: str, group: str) -> AIOKafkaConsumer:
    """A consumer subscribed in `group`, returned once it holds partitions."""
    member = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=broker.session_timeout_ms,
        heartbeat_interval_ms=broker.session_timeout_ms // 6,
    )
    await member.start()
    deadline = time.monotonic() + 30
    while not member.assignment():
        if time.monotonic() > deadline:
            await member.stop()
            raise AssertionError(f"{broker.name}: no assignment for {group} after 30 s")
        await asyncio.sleep(0.1)  # the join runs in aiokafka's background task
    return member


async def test_reset_group_refuses_while_a_member_is_active(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    await produce_timed(kafka_broker.bootstrap, topic, LAYOUT)
    group = f"g-{topic}"
    target = _plan_with_starts(topic, {0: 10, 1: 0, 2: 3, 3: 0})
    member = await _active_member(kafka_broker, topic, group)
    try:
        for dry_run in (True, False):
            with pytest.raises(GroupActive) as refused:
                await reset_group(kafka_broker.bootstrap, group, target, dry_run=dry_run)
            assert refused.value.members == 1
            assert "1 member," in str(refused.value)
        assert await committed_offsets(kafka_broker.bootstrap, group, topic) == {}
    finally:
        await member.stop()


@pytest.mark.broker_features(TIME_OFFSETS)
async def test_reset_onto_a_window_once_the_group_is_empty(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    """The runbook end to end: plan by time, refused while the service runs, applied once
    it stopped, and the group then resumes at the window's start.

    noida only: it plans by time. (tansu also keeps a stopped member listed in
    DescribeGroups, measured still "Stable, 1 member" 30 s after it left, so a reset
    there stays refused, as it should while the broker says the group is active.)
    """
    await produce_timed(kafka_broker.bootstrap, topic, LAYOUT)
    group = f"g-{topic}"
    target = await plan(kafka_broker, topic, BASE + 10 * S, BASE + 20 * S)
    member = await _active_member(kafka_broker, topic, group)
    try:
        with pytest.raises(GroupActive):
            await reset_group(kafka_broker.bootstrap, group, target, dry_run=False)
    finally:
        await member.stop()

    deadline = time.monotonic() + 30
    while True:
        try:
            done = await reset_group(kafka_broker.bootstrap, group, target, dry_run=False)
            break
        except GroupActive:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    assert done.after == target.starts()
    assert await committed_offsets(kafka_broker.bootstrap, group, topic) == {
        0: 10,
        1: 0,
        2: 10,
        3: 0,
    }

    resumed = await _active_member(kafka_broker, topic, group)
    try:
        first: dict[int, Any] = {}
        deadline = time.monotonic() + 30
        while 0 not in first and time.monotonic() < deadline:
            for tp, records in (await resumed.getmany(timeout_ms=500)).items():
                first.setdefault(tp.partition, records[0])
        assert first[0].offset == 10 and first[0].timestamp == BASE + 10 * S
    finally:
        await resumed.stop()
