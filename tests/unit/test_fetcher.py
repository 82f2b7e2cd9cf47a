"""The fetch loop (ingest/fetcher.py) against a stand-in consumer: what it takes, when it
pauses the partitions, and what it publishes. The real broker is in tests/integration."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from netscope.ingest.fetcher import Fetcher
from netscope.ingest.flow import FlowControl
from netscope.observability.events import (
    BackpressureChanged,
    EventBus,
    IngestRateChanged,
    PauseReason,
)
from netscope.resilience.clock import SystemClock

TP = TopicPartition("t", 0)


def rec(offset: int, key: bytes | None) -> ConsumerRecord:
    return ConsumerRecord("t", 0, offset, 0, 0, key, b"{}", None, 1, 2, [])


class Consumer:
    def __init__(self, batches: list[list[ConsumerRecord]]) -> None:
        self.batches = batches
        self.paused: set[TopicPartition] = set()
        self.max_records: list[int | None] = []

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        await asyncio.sleep(0)
        if self.paused or not self.batches:
            return {}
        self.max_records.append(max_records)
        return {TP: self.batches.pop(0)}


class Writer:
    def __init__(self) -> None:
        self.pending_records = 0
        self.spool_full = False
        self.tracked: list[int] = []

    def track(self, topic: str, partition: int, offset: int) -> str:
        self.tracked.append(offset)
        self.pending_records += 1
        return f"lane-{partition}"


def build(consumer: Consumer, writer: Writer, depth: int = 10, **kwargs: Any):
    events: list[Any] = []
    bus = EventBus()
    bus.subscribe(events.append)
    dispatched: list[tuple[Any, Any]] = []
    fetcher = Fetcher(
        consumer,
        writer=writer,
        flow=FlowControl(depth),
        dispatch=lambda key, work: dispatched.append((key, work)),
        events=bus,
        clock=SystemClock(),
        max_poll_records=500,
        **kwargs,
    )
    return fetcher, events, dispatched


async def until(cond, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():  # noqa: ASYNC110 - a poll with a deadline on loop turns
            await asyncio.sleep(0)


class Do:
    """An action between two conditions of :func:`run_until`."""

    def __init__(self, action) -> None:
        self.action = action


async def run_until(fetcher: Fetcher, *steps) -> None:
    """Run the fetch loop through the steps (conditions awaited, actions done), then stop it."""
    task = asyncio.create_task(fetcher.run())
    try:
        for step in steps:
            if isinstance(step, Do):
                step.action()
            else:
                await until(step)
    finally:
        fetcher.stop()
        await task


async def test_records_are_tracked_then_dispatched_under_their_ordering_key() -> None:
    consumer = Consumer([[rec(0, b"a"), rec(1, None), rec(2, b"a")]])
    writer = Writer()
    fetcher, _, dispatched = build(consumer, writer)
    await run_until(fetcher, lambda: len(dispatched) == 3)
    assert writer.tracked == [0, 1, 2]
    keys = [key for key, _ in dispatched]
    assert keys[0] == keys[2] == (0, b"a")  # same key, same queue: in order
    assert keys[1] is dispatched[1][1]  # keyless: its own key
    assert [w.lane for _, w in dispatched] == ["lane-0"] * 3
    assert consumer.max_records == [10]  # never more than the queue has room for


async def test_a_full_queue_pauses_the_partitions_and_says_why() -> None:
    consumer = Consumer([[rec(0, b"k")]])
    writer = Writer()
    writer.pending_records = 10
    fetcher, events, dispatched = build(consumer, writer, depth=10)
    seen: dict[str, Any] = {}

    def at_the_bound() -> None:
        seen.update(dispatched=list(dispatched), reason=fetcher.paused_reason, events=list(events))
        writer.pending_records = 8  # down to the resume ratio

    await run_until(
        fetcher, lambda: consumer.paused == {TP}, Do(at_the_bound), lambda: len(dispatched) == 1
    )
    assert seen["dispatched"] == [] and seen["reason"] == "queue_full"
    first = seen["events"][0]
    assert seen["events"] == [BackpressureChanged(True, PauseReason.QUEUE_FULL, first.created)]
    assert not consumer.paused and events[-1] == BackpressureChanged(
        False, PauseReason.QUEUE_FULL, events[-1].created
    )


async def test_start_paused_is_a_rate_of_zero_published_and_lifted_by_the_operator() -> None:
    consumer = Consumer([[rec(0, b"k")]])
    fetcher, events, dispatched = build(consumer, Writer(), start_paused=True)
    assert isinstance(events[0], IngestRateChanged) and events[0].rate_per_s == 0
    held: list[int] = []
    await run_until(
        fetcher,
        lambda: fetcher.paused_reason == "throttle",
        Do(lambda: held.append(len(dispatched)) or fetcher.set_rate(None)),
        lambda: len(dispatched) == 1,
    )
    assert held == [0]
    lifted = [e for e in events if isinstance(e, IngestRateChanged)][-1]
    assert lifted.rate_per_s == float("inf")


async def test_no_limit_publishes_nothing_at_start() -> None:
    _, events, _ = build(Consumer([]), Writer())
    assert events == []


async def test_no_more_is_taken_while_enough_waits_to_be_called() -> None:
    """Messages fetched beyond what the workers can start soon would only wait inside
    NetScope with their deadline and audit latency running: the fetcher takes no more."""
    consumer = Consumer([[rec(i, b"k") for i in range(4)], [rec(4, b"k")]])
    outstanding = {"n": 0}

    def dispatch(key: Any, work: Any) -> None:
        outstanding["n"] += 1

    async def wait_below(n: int, timeout_s: float) -> None:
        await asyncio.sleep(0)

    bus = EventBus()
    fetcher = Fetcher(
        consumer,
        writer=Writer(),
        flow=FlowControl(100),
        dispatch=dispatch,
        in_progress=lambda: outstanding["n"],
        wait_below=wait_below,
        max_in_progress=4,
        events=bus,
        clock=SystemClock(),
        max_poll_records=500,
    )
    held: list[int] = []
    await run_until(
        fetcher,
        lambda: outstanding["n"] == 4,
        Do(lambda: held.append(len(consumer.batches))),
        Do(lambda: outstanding.update(n=1)),  # three finished: room again
        lambda: outstanding["n"] == 2,
    )
    assert held == [1]  # the second batch stayed at the broker while 4 were in progress
    assert consumer.max_records == [4, 3]
