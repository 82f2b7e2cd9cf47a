"""The drainer's promise: a failing store never loses an entry, is retried with growing,
capped backoff, and every entry is acked exactly once after its upload succeeds. Every
upload and every failure is a typed event on the bus (a long outage keeps counting)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from netscope.audit.drain import SpoolDrainer
from netscope.audit.spool import Spool, SpoolEntry, SpoolRef
from netscope.observability.events import (
    AuditTarget,
    AuditWriteFailed,
    EventBus,
    SpoolBatchUploaded,
    SpoolDrainPassed,
    WriteResult,
)


def open_spool(d: Path) -> Spool:
    spool, _ = Spool.open(d, free_disk_floor_bytes=0)
    return spool


class FlakyStore:
    """Fails the first ``failures`` uploads, then stores objects by key."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[str] = []
        self.objects: dict[str, bytes] = {}

    async def upload(self, entry: SpoolEntry) -> WriteResult:
        self.calls.append(entry.key)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("rgw down")
        if entry.key in self.objects:
            return WriteResult.ALREADY_PRESENT
        self.objects[entry.key] = entry.payload
        return WriteResult.CREATED


class Recorder:
    """An event bus with one listener that keeps what the drainer published."""

    def __init__(self) -> None:
        self.bus = EventBus()
        self.bus.subscribe(self._on_event)
        self.events: list[object] = []
        self.drained = asyncio.Event()
        self.want_drained = 1

    def _on_event(self, event: object) -> None:
        self.events.append(event)
        if self.count(SpoolBatchUploaded) >= self.want_drained:
            self.drained.set()

    def count(self, kind: type) -> int:
        return len(self.of(kind))

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)
        await asyncio.sleep(0)  # yield to the loop; no wall-clock wait


async def test_drain_once_uploads_in_order_and_acks(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    for i in range(3):
        spool.append(f"k{i}", b"body%d" % i, {"i": i})
    store = FlakyStore()
    drainer = SpoolDrainer(spool, store.upload)
    assert await drainer.drain_once() == 3
    assert store.calls == ["k0", "k1", "k2"]
    assert store.objects["k1"] == b"body1"
    assert drainer.drained_total == 3 and drainer.failures_total == 0
    assert spool.stats().pending_entries == 0
    assert await drainer.drain_once() == 0


async def test_drain_once_stops_at_first_failure_and_keeps_entry(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append("k0", b"a", {})
    spool.append("k1", b"b", {})
    store = FlakyStore(failures=1)
    rec = Recorder()
    drainer = SpoolDrainer(spool, store.upload, events=rec.bus)
    assert await drainer.drain_once() == 0
    assert store.calls == ["k0"]  # did not skip ahead past the failing entry
    assert isinstance(drainer.last_error, ConnectionError)
    assert drainer.failures_total == 1
    (failed,) = rec.events
    assert isinstance(failed, AuditWriteFailed)
    assert failed.target is AuditTarget.STORE and failed.draining
    assert (failed.reason, failed.detail) == ("ConnectionError", "rgw down")
    assert [e.key for e in spool.iter_pending()] == ["k0", "k1"]
    assert await drainer.drain_once() == 2
    assert store.calls == ["k0", "k0", "k1"]  # the SAME entry retried first


async def test_run_backs_off_growing_and_capped_then_drains_exactly_once(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append("k0", b"a", {"topic": "calls", "partition": 3})
    store = FlakyStore(failures=6)
    rec = Recorder()
    sleep = FakeSleep()
    drainer = SpoolDrainer(
        spool,
        store.upload,
        initial_backoff_s=0.5,
        max_backoff_s=4.0,
        rand=lambda: 1.0,  # the top of the jitter range shows the cap itself
        sleep=sleep,
        events=rec.bus,
        idle_poll_s=3600,
    )
    task = asyncio.create_task(drainer.run())
    await rec.drained.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert sleep.delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    # Every failed upload of the outage is reported, not only the first ones.
    assert rec.count(AuditWriteFailed) == 6
    assert store.calls == ["k0"] * 7
    assert rec.count(SpoolBatchUploaded) == 1 and drainer.drained_total == 1
    assert drainer.failures_total == 6 and drainer.consecutive_failures == 0
    assert store.objects == {"k0": b"a"}
    spool.close()
    reopened, _ = Spool.open(tmp_path, free_disk_floor_bytes=0)
    assert list(reopened.iter_pending()) == []  # acked durably, not replayed


def test_full_jitter_scales_the_capped_delay() -> None:
    draws = iter([0.0, 0.25, 0.5])
    drainer = SpoolDrainer(
        None,  # type: ignore[arg-type]
        FlakyStore().upload,
        initial_backoff_s=1.0,
        max_backoff_s=8.0,
        rand=lambda: next(draws),
    )
    drainer.consecutive_failures = 3  # cap = min(8, 1 * 2**2) = 4
    assert [drainer.backoff_delay_s() for _ in range(3)] == [0.0, 1.0, 2.0]
    drainer.consecutive_failures = 10_000  # very long outage: no overflow, capped
    draws = iter([1.0])
    assert drainer.backoff_delay_s() == 8.0


async def test_cancel_mid_upload_keeps_entry_pending(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append("k0", b"a", {})
    started = asyncio.Event()

    async def hanging_upload(entry: SpoolEntry) -> WriteResult:
        started.set()
        await asyncio.Event().wait()  # a PUT that never answers
        raise AssertionError("unreachable")

    drainer = SpoolDrainer(spool, hanging_upload)
    task = asyncio.create_task(drainer.drain_once())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e.key for e in spool.iter_pending()] == ["k0"]
    spool.close()

    reopened = open_spool(tmp_path)
    assert [e.key for e in reopened.iter_pending()] == ["k0"]
    store = FlakyStore()
    assert await SpoolDrainer(reopened, store.upload).drain_once() == 1
    assert store.objects == {"k0": b"a"}


async def test_wake_triggers_a_pass_for_new_appends(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    store = FlakyStore()
    rec = Recorder()
    rec.want_drained = 2
    drainer = SpoolDrainer(spool, store.upload, events=rec.bus, idle_poll_s=3600)
    task = asyncio.create_task(drainer.run())
    spool.append("k0", b"a", {})
    spool.append("k1", b"b", {})
    drainer.wake()
    await rec.drained.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.calls == ["k0", "k1"]


async def test_uploaded_event_describes_the_batch(tmp_path: Path) -> None:
    spool, _ = Spool.open(tmp_path, free_disk_floor_bytes=0, clock=lambda: 1000.0)
    spool.append("k0", b"abc", {"records": 3})
    spool.append("k1", b"de", {})  # no count in the meta: 0, not a crash
    store = FlakyStore()
    store.objects["k1"] = b"de"  # uploaded before a crash, ack not written
    rec = Recorder()
    drainer = SpoolDrainer(spool, store.upload, events=rec.bus, wall=lambda: 1012.5)
    assert await drainer.drain_once() == 2
    assert [
        (e.key, e.records, e.bytes, e.result, e.spooled_for_s) for e in rec.of(SpoolBatchUploaded)
    ] == [
        ("k0", 3, 3, WriteResult.CREATED, 12.5),
        ("k1", 0, 2, WriteResult.ALREADY_PRESENT, 12.5),
    ]


async def test_each_pass_that_moved_the_backlog_says_how_much_and_what_is_left(
    tmp_path: Path,
) -> None:
    """The incident report plots the backlog's drain from these (control record
    ``spool_drained``): a pass cut by a failure says so and what it left behind."""

    class FailsThird(FlakyStore):
        async def upload(self, entry: SpoolEntry) -> WriteResult:
            self.failures = 1 if len(self.calls) == 2 else 0
            return await super().upload(entry)

    spool = open_spool(tmp_path)
    for i in range(4):
        spool.append(f"k{i}", b"x", {"records": 10 + i})
    rec = Recorder()
    drainer = SpoolDrainer(spool, FailsThird().upload, events=rec.bus)
    assert await drainer.drain_once() == 2
    assert await drainer.drain_once() == 2
    assert await drainer.drain_once() == 0  # nothing moved: nothing said
    assert [(e.batches, e.records, e.complete, e.pending_batches_after)
            for e in rec.of(SpoolDrainPassed)] == [(2, 21, False, 2), (2, 25, True, 0)]  # fmt: skip


async def test_broken_event_listener_does_not_stop_draining(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append("k0", b"a", {})
    bus = EventBus()

    def listener(event: object) -> None:
        raise RuntimeError("metrics exploded")

    bus.subscribe(listener)
    store = FlakyStore()
    assert await SpoolDrainer(spool, store.upload, events=bus).drain_once() == 1
    assert spool.stats().pending_entries == 0


async def test_ack_failure_is_retried_not_lost(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append("k0", b"a", {})
    real_ack = spool.ack
    ack_failures = [OSError("EIO on ack file")]

    def flaky_ack(ref: SpoolRef) -> None:
        if ack_failures:
            raise ack_failures.pop()
        real_ack(ref)

    spool.ack = flaky_ack  # type: ignore[method-assign]
    store = FlakyStore()
    rec = Recorder()
    drainer = SpoolDrainer(spool, store.upload, events=rec.bus)
    assert await drainer.drain_once() == 0
    assert isinstance(drainer.last_error, OSError)
    (failed,) = rec.of(AuditWriteFailed)
    assert (failed.target, failed.reason, failed.draining) == (AuditTarget.SPOOL, "OSError", True)
    assert spool.stats().pending_entries == 1
    # Re-upload of the same key is what the idempotent store turns into a 412.
    assert await drainer.drain_once() == 1
    assert store.calls == ["k0", "k0"]
    assert spool.stats().pending_entries == 0


async def test_spool_read_error_backs_off_instead_of_killing_run(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append("k0", b"a", {})
    real_iter = spool.iter_pending
    read_failures = [OSError("EIO reading segment")]

    def flaky_iter() -> Iterator[SpoolEntry]:
        if read_failures:
            raise read_failures.pop()
        yield from real_iter()

    spool.iter_pending = flaky_iter  # type: ignore[method-assign]
    rec = Recorder()
    sleep = FakeSleep()
    drainer = SpoolDrainer(
        spool, FlakyStore().upload, sleep=sleep, events=rec.bus, rand=lambda: 1.0
    )
    task = asyncio.create_task(drainer.run())
    await rec.drained.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sleep.delays == [0.5]
    failed = rec.events[0]
    assert isinstance(failed, AuditWriteFailed)
    assert (failed.target, failed.reason, failed.draining) == (AuditTarget.SPOOL, "OSError", True)
