"""Offsets committed only where the audit is durable (audit/commit.py), without a broker.

The consumer and the writer are stand-ins with the few calls the committer makes; the broker
behaviour itself is covered by the integration tests (tests/integration/test_pipeline.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from netscope.audit.commit import OffsetCommitter
from netscope.observability.events import (
    CommitFailed,
    EventBus,
    OffsetsCommitted,
    PartitionsAssigned,
    PartitionsRevoked,
)

T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


class Consumer:
    def __init__(self) -> None:
        self.assigned: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_commit = False
        self.down = False
        self.ends: dict[TopicPartition, int] = {}
        self.group_committed: dict[TopicPartition, int | None] = {}
        self.beginnings: dict[TopicPartition, int] = {}
        self.highwaters: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail_commit:
            raise ConnectionError("coordinator gone")
        self.commits.append(dict(offsets))

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.down:
            await asyncio.sleep(3600)  # a broker that does not answer
        return {tp: self.ends[tp] for tp in tps}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.group_committed.get(tp)

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.beginnings.get(tp, 0) for tp in tps}

    async def topics(self) -> set[str]:
        if self.down:
            raise ConnectionError("no broker")
        return {"t"}


class Writer:
    def __init__(self) -> None:
        self.durable: dict[tuple[str, int], int] = {}
        self.assigned: list[tuple[str, int]] = []
        self.closed: list[tuple[str, int]] = []
        self.forgotten: list[tuple[str, int]] = []
        self.flushed: list[list[tuple[str, int]] | None] = []

    def committable(self) -> dict[tuple[str, int], int]:
        return dict(self.durable)

    def assign(self, topic: str, partition: int) -> None:
        self.assigned.append((topic, partition))

    def closing(self, keys: list[tuple[str, int]]) -> None:
        self.closed += keys

    async def flush(self, keys: list[tuple[str, int]] | None = None) -> None:
        self.flushed.append(keys)

    def forget(self, keys: list[tuple[str, int]]) -> None:
        self.forgotten += keys


def build(**kwargs: Any) -> tuple[OffsetCommitter, Consumer, Writer, list[Any]]:
    consumer, writer, events = Consumer(), Writer(), EventBus()
    seen: list[Any] = []
    events.subscribe(seen.append)
    committer = OffsetCommitter(
        consumer, writer, events, interval_s=1.0, revoke_flush_timeout_s=1.0, **kwargs
    )
    return committer, consumer, writer, seen


async def test_commits_exactly_what_is_durable_and_only_when_it_moved() -> None:
    committer, consumer, writer, seen = build()
    await committer.commit()
    assert consumer.commits == []  # nothing durable: nothing committed
    writer.durable = {("t", 0): 10}
    await committer.commit()
    await committer.commit()
    writer.durable = {("t", 0): 10, ("t", 1): 3}
    await committer.commit()
    assert consumer.commits == [{T0: 10}, {T1: 3}]
    assert [e.offsets for e in seen if isinstance(e, OffsetsCommitted)] == [
        {("t", 0): 10},
        {("t", 1): 3},
    ]


async def test_a_failed_commit_is_reported_and_retried_next_time() -> None:
    committer, consumer, writer, seen = build()
    writer.durable = {("t", 0): 4}
    consumer.fail_commit = True
    await committer.commit()
    assert committer.committed == {} and isinstance(seen[-1], CommitFailed)
    consumer.fail_commit = False
    await committer.commit()
    assert consumer.commits == [{T0: 4}]


async def test_revoke_flushes_commits_what_is_durable_then_forgets_the_partition() -> None:
    committer, consumer, writer, seen = build()
    consumer.assigned = {T0, T1}
    committer.assigned([T0, T1])
    assert committer.joined and writer.assigned == [("t", 0), ("t", 1)]
    writer.durable = {("t", 0): 7, ("t", 1): 2}
    await committer.revoked([T1])
    assert writer.closed == [("t", 1)] and writer.flushed == [[("t", 1)]]
    assert consumer.commits == [{T1: 2}]  # only the partition leaving
    assert writer.forgotten == [("t", 1)] and T1 not in committer.committed
    assigned, revoked = (e for e in seen if isinstance(e, PartitionsAssigned | PartitionsRevoked))
    assert assigned.total == 2 and revoked.partitions == (("t", 1),) and revoked.total == 1


async def test_an_empty_assignment_still_means_joined() -> None:
    committer, *_ = build()
    committer.assigned([])
    assert committer.joined


async def test_lag_comes_from_the_broker_before_any_commit_and_after() -> None:
    committer, consumer, writer, _ = build()
    consumer.assigned = {T0, T1}
    consumer.ends = {T0: 100, T1: 50}
    consumer.group_committed = {T0: 40}  # the group committed earlier; T1 never
    consumer.beginnings = {T1: 5}
    await committer.sample_lag()
    assert committer.lag == {T0: 60, T1: 45}
    writer.durable = {("t", 0): 90}
    await committer.commit()
    await committer.sample_lag()
    assert committer.lag == {T0: 10, T1: 45}
    assert committer.broker_ok_age_s is not None and committer.broker_detail == "broker answers"


async def test_an_under_reported_end_offset_is_corrected_by_the_fetch_high_watermark() -> None:
    committer, consumer, _, _ = build()
    consumer.assigned = {T0}
    consumer.ends = {T0: 1}  # tansu answers ListOffsets with 1 whatever the log holds
    consumer.highwaters = {T0: 30}
    await committer.sample_lag()
    assert committer.lag == {T0: 30}


async def test_latest_reset_counts_lag_from_the_end_until_the_first_commit() -> None:
    committer, consumer, _, _ = build(auto_offset_reset="latest")
    consumer.assigned = {T0}
    consumer.ends = {T0: 100}
    await committer.sample_lag()
    assert committer.lag == {T0: 0}


async def test_a_silent_broker_is_noticed(monkeypatch) -> None:
    monkeypatch.setattr("netscope.audit.commit.BROKER_PROBE_TIMEOUT_S", 0.05)
    committer, consumer, _, _ = build()
    consumer.assigned = {T0}
    consumer.down = True
    await committer.sample_lag()
    assert committer.broker_ok_age_s is None
    assert committer.broker_detail.startswith("broker did not answer")
