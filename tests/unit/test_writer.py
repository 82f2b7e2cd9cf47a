"""The audit writer's I/O (audit/writer.py) against an in-memory store and spool.

What the pipeline relies on: a batch is committable only once durable (store, else spool,
else held while ingest pauses), every failed write is an event, degraded mode is an event
(the writer logs nothing itself), and cancelling a flush or a writer at any point leaves
nothing committed that is not durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from netscope.audit.batch import decode
from netscope.audit.spool import SpoolFull
from netscope.audit.writer import AuditWriter
from netscope.config import AuditConfig
from netscope.contract.records import AuditRecord, KafkaPosition, Outcome
from netscope.observability.events import (
    AuditBatchDurable,
    AuditTarget,
    AuditWriteFailed,
    DegradedModeChanged,
    EventBus,
    WriteResult,
)

TS_MS = 1_714_557_600_000  # 2024-05-01T10:00Z


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0
        self.fail: Exception | None = None
        self.hang = False
        self.hanging = asyncio.Event()

    async def put_if_absent(self, key: str, body: bytes) -> bool:
        self.puts += 1
        if self.hang:
            self.hanging.set()
            await asyncio.Event().wait()  # a PUT that never answers
        if self.fail is not None:
            raise self.fail
        if key in self.objects:
            return False
        self.objects[key] = body
        return True

    async def get(self, key: str) -> bytes:
        return self.objects[key]

    def offsets(self) -> list[int]:
        return sorted(r["kafka"]["offset"] for b in self.objects.values() for r in decode(b))


class MemorySpool:
    def __init__(self) -> None:
        self.entries: list[tuple[str, bytes, dict[str, Any]]] = []
        self.full = False

    def append(self, key: str, body: bytes, meta: dict[str, Any]) -> None:
        if self.full:
            raise SpoolFull("capacity")
        self.entries.append((key, body, meta))


class Entry:
    """A spool entry as the drainer hands it over."""

    def __init__(self, key: str, payload: bytes, meta: dict[str, Any]) -> None:
        self.key, self.payload, self.meta = key, payload, meta


class Env:
    def __init__(self, *, spool: bool = True, store: MemoryStore | None = None, **cfg: Any) -> None:
        self.store = store or MemoryStore()
        self.spool = MemorySpool() if spool else None
        self.events: list[Any] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        self.appends = 0
        self.writer = AuditWriter(
            AuditConfig(**({"batch_max_records": 2, "batch_max_delay_s": 60.0} | cfg)),
            self.store,  # type: ignore[arg-type]
            bus,
            spool=self.spool,
            on_spool_append=self._appended,
        )

    def _appended(self) -> None:
        self.appends += 1

    def feed(self, offsets: range, partition: int = 0) -> None:
        lanes = [self.writer.track("t", partition, o) for o in offsets]
        for lane, o in zip(lanes, offsets, strict=True):
            assert self.writer.complete(lane, record(partition, o))

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def record(partition: int, offset: int) -> AuditRecord:
    return AuditRecord(
        request_id=f"r{offset}",
        idempotency_key=None,
        trace_id=None,
        span_id=None,
        upstream="payments",
        method="GET",
        path="/x",
        kafka=KafkaPosition("t", partition, offset, TS_MS),
        outcome=Outcome.SUCCESS,
        received_at=1000.0 + offset,
        completed_at=1000.5 + offset,
        latency_s=0.5,
    )


async def until(cond: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_sealed_batches_go_to_the_store_then_become_committable() -> None:
    env = Env()
    env.feed(range(5))
    await env.writer.wait_durable(5.0)
    await env.writer.flush()
    assert env.store.offsets() == [0, 1, 2, 3, 4]
    assert env.writer.committable() == {("t", 0): 5}
    assert env.writer.pending_records == 0
    durable = env.of(AuditBatchDurable)
    assert [(e.target, e.result, e.records) for e in durable] == [
        (AuditTarget.STORE, WriteResult.CREATED, 2),
        (AuditTarget.STORE, WriteResult.CREATED, 2),
        (AuditTarget.STORE, WriteResult.CREATED, 1),
    ]
    assert durable[0].oldest_received_at == 1000.0
    assert not env.spool.entries  # type: ignore[union-attr]


async def test_a_key_already_taken_is_reported_as_already_present() -> None:
    env = Env()
    env.feed(range(2))
    await env.writer.flush()
    redelivered = Env(store=env.store)  # the same bucket, a new process
    redelivered.feed(range(2))
    await redelivered.writer.flush()
    (durable,) = redelivered.of(AuditBatchDurable)
    assert (durable.target, durable.result) == (AuditTarget.STORE, WriteResult.ALREADY_PRESENT)
    assert env.store.offsets() == [0, 1]


async def test_store_failure_spools_and_enters_degraded_mode_once_without_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="netscope")
    env = Env()
    env.store.fail = ConnectionError("rgw down")
    env.feed(range(6))
    await env.writer.flush()
    assert env.writer.degraded
    assert env.writer.committable() == {("t", 0): 6}, "the spool is durable: commit"
    assert [m for _, _, m in env.spool.entries] == [  # type: ignore[union-attr]
        {"topic": "t", "partition": 0, "hour": "2024-05-01/10", "first_offset": o,
         "last_offset": o + 1, "records": 2}
        for o in (0, 2, 4)
    ]  # fmt: skip
    assert env.appends == 3
    assert env.store.puts == 1, "degraded: later batches skip the failing store"
    (failed,) = env.of(AuditWriteFailed)
    assert (failed.target, failed.reason, failed.draining) == (
        AuditTarget.STORE,
        "ConnectionError",
        False,
    )
    assert [e.degraded for e in env.of(DegradedModeChanged)] == [True]
    assert {(e.target, e.result) for e in env.of(AuditBatchDurable)} == {
        (AuditTarget.SPOOL, WriteResult.CREATED)
    }
    assert caplog.records == [], "the log listener logs these events, not the writer"


async def test_upload_spooled_leaves_degraded_mode_and_dedupes() -> None:
    env = Env()
    env.store.fail = ConnectionError("rgw down")
    env.feed(range(4))
    await env.writer.flush()
    env.store.fail = None
    entries = [Entry(*e) for e in env.spool.entries]  # type: ignore[union-attr]
    assert await env.writer.upload_spooled(entries[0]) == WriteResult.CREATED
    assert not env.writer.degraded
    assert [e.degraded for e in env.of(DegradedModeChanged)] == [True, False]
    # Uploaded again (its ack was lost in a crash): the key is taken, nothing is doubled.
    assert await env.writer.upload_spooled(entries[0]) == WriteResult.ALREADY_PRESENT
    assert await env.writer.upload_spooled(entries[1]) == WriteResult.CREATED
    assert env.store.offsets() == [0, 1, 2, 3]
    env.feed(range(4, 6))
    await env.writer.flush()
    assert env.of(AuditBatchDurable)[-1].target is AuditTarget.STORE


async def test_upload_spooled_raises_while_the_store_fails() -> None:
    env = Env()
    env.store.fail = ConnectionError("rgw down")
    env.feed(range(2))
    await env.writer.flush()
    with pytest.raises(ConnectionError):
        await env.writer.upload_spooled(Entry(*env.spool.entries[0]))  # type: ignore[union-attr]
    assert env.writer.degraded


async def test_full_spool_holds_the_batch_and_pauses_until_the_store_takes_it() -> None:
    env = Env()
    env.store.fail = ConnectionError("rgw down")
    env.spool.full = True  # type: ignore[union-attr]
    env.feed(range(2))
    flush = asyncio.create_task(env.writer.flush())
    await until(lambda: env.writer.spool_full, "the writer to hold the batch")
    assert env.writer.committable() == {}
    assert env.writer.pending_records == 2
    spool_failures = [e for e in env.of(AuditWriteFailed) if e.target is AuditTarget.SPOOL]
    assert spool_failures and spool_failures[0].reason == "SpoolFull"
    env.store.fail = None  # RGW back: the held batch goes straight to the store
    await asyncio.wait_for(flush, 10)
    assert not env.writer.spool_full
    assert env.writer.committable() == {("t", 0): 2}
    assert env.of(AuditBatchDurable)[-1].target is AuditTarget.STORE
    assert env.store.offsets() == [0, 1]
    # Nothing was spooled, so no drained upload will ever end degraded mode: the held
    # batch the store took does (it stayed on for good before).
    assert not env.writer.degraded
    assert [e.degraded for e in env.of(DegradedModeChanged)] == [True, False]


async def test_without_a_spool_a_failing_store_is_retried_not_dropped() -> None:
    env = Env(spool=False)
    env.store.fail = ConnectionError("rgw down")
    env.feed(range(2))
    flush = asyncio.create_task(env.writer.flush())
    await until(lambda: len(env.of(AuditWriteFailed)) >= 2, "a retried store write")
    assert not env.writer.degraded, "no spool to be degraded onto"
    env.store.fail = None
    await asyncio.wait_for(flush, 10)
    assert env.store.offsets() == [0, 1]


async def test_cancelled_flush_commits_nothing_undurable_and_releases_the_hold() -> None:
    env = Env()
    env.store.fail = ConnectionError("rgw down")
    env.spool.full = True  # type: ignore[union-attr]
    env.feed(range(2))
    flush = asyncio.create_task(env.writer.flush())
    await until(lambda: env.writer.spool_full, "the writer to hold the batch")
    flush.cancel()  # SIGTERM's bounded flush ran out
    with pytest.raises(asyncio.CancelledError):
        await flush
    assert env.writer.committable() == {}
    assert env.writer.pending_records == 2, "redelivered, never acknowledged"
    assert not env.writer.spool_full, "a cancelled hold does not pause ingest forever"
    # The batch is still sealed: a later flush makes it durable.
    env.store.fail = None
    await asyncio.wait_for(env.writer.flush(), 10)
    assert env.writer.committable() == {("t", 0): 2}


async def test_close_cancels_a_writer_stuck_in_a_put() -> None:
    env = Env()
    env.store.hang = True
    env.feed(range(2))
    await asyncio.wait_for(env.store.hanging.wait(), 5)
    await asyncio.wait_for(env.writer.close(), 5)
    assert env.writer.committable() == {}
    assert env.writer.pending_records == 2
    assert not env.of(AuditBatchDurable)


async def test_forget_cancels_the_lane_writer_and_drops_late_records() -> None:
    env = Env()
    env.store.hang = True
    lane = env.writer.track("t", 0, 0)
    late = env.writer.track("t", 0, 1)
    env.writer.track("t", 0, 2)
    env.writer.complete(lane, record(0, 0))
    env.writer.complete(late, record(0, 1))  # sealed: the writer hangs in its PUT
    await asyncio.wait_for(env.store.hanging.wait(), 5)
    env.writer.closing([("t", 0)])
    assert not env.writer.takes_work(lane) and env.writer.owns(lane)
    env.writer.forget([("t", 0)])
    assert not env.writer.owns(lane)
    assert env.writer.complete(lane, record(0, 2)) is False
    assert env.writer.partitions() == [] and env.writer.pending_records == 0
    await asyncio.wait_for(env.writer.flush(), 5)  # nothing left to wait for


async def test_run_seals_batches_on_age() -> None:
    env = Env(batch_max_records=100, batch_max_delay_s=0.05)
    sealer = asyncio.create_task(env.writer.run())
    try:
        env.feed(range(3))
        await asyncio.wait_for(env.writer.wait_durable(5.0), 6)
        await until(lambda: env.writer.committable() == {("t", 0): 3}, "the aged batch")
    finally:
        sealer.cancel()
    assert env.store.offsets() == [0, 1, 2]
