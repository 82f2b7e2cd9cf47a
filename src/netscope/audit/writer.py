"""The audit writer: terminal records -> batched objects -> durable -> committable offsets.

This is where "at-least-once, audit before commit" is enforced, in one place:

1. Records arrive in completion order; each partition's lane releases them in *fetch* order
   (the highest contiguous completed offset, as Kafka commits require).
2. Released records fill the partition's open batch; a batch is sealed on size, count, age or
   a change of event hour, so batch boundaries depend only on the offsets and their timestamps.
3. Sealed batches of one partition become durable one after another: written to the store
   with a create-only PUT, or appended (fsync) to the local spool when the store fails.
4. Only then does the lane's committable offset move past the batch.

A create-only PUT that finds its key taken means an earlier run (or a timed-out attempt that
the store applied anyway) wrote an object starting at the same offset: the writer reads that
object's last offset and writes only the records past it, so a redelivered message never gets
a second record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from netscope.audit.batch import Batch, encode, last_offset
from netscope.audit.keys import event_hour, object_key
from netscope.audit.store import AuditStore
from netscope.config import AuditConfig
from netscope.contract.records import AuditRecord
from netscope.observability.events import (
    AuditBatchDurable,
    AuditWriteFailed,
    DegradedModeChanged,
    EventBus,
)

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class _Lane:
    topic: str
    partition: int
    fetched: deque[int] = field(default_factory=deque)
    done: dict[int, tuple[str, bytes, float]] = field(default_factory=dict)
    batch: Batch | None = None
    batch_received_at: float = 0.0
    sealed: deque[tuple[Batch, float]] = field(default_factory=deque)
    writer: asyncio.Task[None] | None = None
    committable: int | None = None  # next offset to commit: everything below is durable
    unreleased: int = 0  # fetched but not yet durable
    closing: bool = False  # being revoked: finish what started, start nothing new


class AuditWriter:
    """Owns the lanes of the partitions assigned to this process."""

    def __init__(
        self,
        cfg: AuditConfig,
        store: AuditStore,
        events: EventBus,
        *,
        spool: Any | None = None,
        on_spool_append: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._events = events
        self._spool = spool
        self._on_spool_append = on_spool_append
        self._clock = clock
        self._lanes: dict[TopicPartition, _Lane] = {}
        self._compress = cfg.compression == "gzip"
        self.degraded = False
        self.spool_full = False
        self._holding = 0  # lanes holding a batch the spool refused
        self._durable = asyncio.Event()
        # Per partition, the [first, last] offsets of the last object a 412 revealed. A rerun
        # after a crash may batch the same offsets with other boundaries: a later batch can
        # start inside that object, where no key matches, so the key alone cannot dedup it.
        self._seen_object: dict[TopicPartition, tuple[int, int]] = {}

    # -- feeding -----------------------------------------------------------------------------

    def assign(self, topic: str, partition: int) -> None:
        self._lanes.setdefault((topic, partition), _Lane(topic, partition))

    def track(self, topic: str, partition: int, offset: int) -> _Lane:
        """A message was fetched: it holds back the commit until its record is durable.

        Returns the lane token to hand back to :meth:`complete`; a token from before a
        rebalance no longer matches, so a late record cannot leak into a new assignment.
        """
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[(topic, partition)] = _Lane(topic, partition)
        lane.fetched.append(offset)
        lane.unreleased += 1
        return lane

    def owns(self, lane: _Lane) -> bool:
        """Whether ``lane`` (a token from :meth:`track`) is still this process's partition."""
        return self._lanes.get((lane.topic, lane.partition)) is lane

    def takes_work(self, lane: _Lane) -> bool:
        """Whether a message of ``lane`` that has not started yet should start: not once a
        revoke has begun (the new owner will process it)."""
        return not lane.closing and self.owns(lane)

    def closing(self, partitions: list[tuple[str, int]]) -> None:
        """A revoke has begun: records of started messages are still taken until forget()."""
        for key in partitions:
            if (lane := self._lanes.get(key)) is not None:
                lane.closing = True

    def complete(self, lane: _Lane, record: AuditRecord) -> bool:
        """The terminal record of a tracked message; False if its partition was revoked."""
        if not self.owns(lane):
            return False
        kafka = record.kafka
        hour = event_hour(kafka.timestamp_ms)
        lane.done[kafka.offset] = (hour, record.to_json(), record.received_at)
        self._release(lane)
        return True

    def _release(self, lane: _Lane) -> None:
        cfg = self._cfg
        while lane.fetched and lane.fetched[0] in lane.done:
            offset = lane.fetched.popleft()
            hour, line, received_at = lane.done.pop(offset)
            if lane.batch is not None and lane.batch.hour != hour:
                self._seal(lane)
            if lane.batch is None:
                lane.batch = Batch(lane.topic, lane.partition, hour, opened_at=self._clock())
                lane.batch_received_at = received_at
            lane.batch.add(offset, line)
            if (
                len(lane.batch.offsets) >= cfg.batch_max_records
                or lane.batch.size_bytes >= cfg.batch_max_bytes
            ):
                self._seal(lane)

    def _seal(self, lane: _Lane) -> None:
        if lane.batch is None:
            return
        lane.sealed.append((lane.batch, lane.batch_received_at))
        lane.batch = None
        if lane.writer is None or lane.writer.done():
            lane.writer = asyncio.create_task(
                self._write_lane(lane), name=f"audit-{lane.topic}-{lane.partition}"
            )

    # -- state -------------------------------------------------------------------------------

    @property
    def pending_records(self) -> int:
        """Records fetched but not yet durable (in flight, waiting for order, or in a batch)."""
        return sum(lane.unreleased for lane in self._lanes.values())

    def committable(self) -> dict[TopicPartition, int]:
        return {
            tp: lane.committable for tp, lane in self._lanes.items() if lane.committable is not None
        }

    def partitions(self) -> list[TopicPartition]:
        return list(self._lanes)

    async def wait_durable(self, timeout_s: float) -> None:
        """Wake up when some batch became durable (or after ``timeout_s``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._durable.wait(), timeout_s)
        self._durable.clear()

    # -- flushing ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Seal batches that reached their age. Runs until cancelled."""
        tick = min(self._cfg.batch_max_delay_s / 4, 0.05)
        while True:
            await asyncio.sleep(tick)
            now = self._clock()
            for lane in list(self._lanes.values()):
                if (
                    lane.batch is not None
                    and now - lane.batch.opened_at >= self._cfg.batch_max_delay_s
                ):
                    self._seal(lane)

    async def flush(self, partitions: list[TopicPartition] | None = None) -> None:
        """Seal every open batch and wait until all sealed batches are durable."""
        lanes = [self._lanes[tp] for tp in (partitions or list(self._lanes)) if tp in self._lanes]
        for lane in lanes:
            self._seal(lane)
        writers = [lane.writer for lane in lanes if lane.writer is not None]
        if writers:
            await asyncio.gather(*writers, return_exceptions=True)

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Drop revoked partitions; their undurable messages will be redelivered elsewhere."""
        for tp in partitions:
            lane = self._lanes.pop(tp, None)
            if lane and lane.writer and not lane.writer.done():
                lane.writer.cancel()

    async def _write_lane(self, lane: _Lane) -> None:
        while lane.sealed:
            batch, received_at = lane.sealed[0]
            started = self._clock()
            where = await self._make_durable(batch)
            lane.sealed.popleft()
            lane.committable = batch.last_offset + 1
            lane.unreleased -= len(batch.offsets)
            self._events.publish(
                AuditBatchDurable(
                    topic=batch.topic,
                    partition=batch.partition,
                    records=len(batch.offsets),
                    bytes=batch.size_bytes,
                    where=where,
                    write_s=self._clock() - started,
                    oldest_received_at=received_at,
                )
            )
            self._durable.set()

    async def _make_durable(self, batch: Batch) -> str:
        """Store or spool; never gives up (a record is never dropped), backs off instead.

        ``spool_full`` (it pauses ingest) stays set while any lane holds a batch the spool
        refused, and clears once the last such batch is durable by either path (or its lane
        is revoked): a held batch the store took back must not leave ingest paused forever.
        """
        held: list[bool] = []
        try:
            return await self._make_durable_attempts(batch, held)
        finally:
            if held:
                self._holding -= 1
                self.spool_full = self._holding > 0

    async def _make_durable_attempts(self, batch: Batch, held: list[bool]) -> str:
        backoff_s = 0.1
        while True:
            if not self.degraded or self._spool is None:
                try:
                    return await self.write_exactly_once(batch)
                except Exception as exc:
                    self._report_failure(exc)
                    if self._spool is not None:
                        self._set_degraded(True, f"{type(exc).__name__}: {exc}")
            if self._spool is not None:
                try:
                    await self._spool_batch(batch)
                    return "spool"
                except Exception as exc:  # SpoolFull or disk error: hold the batch, pause ingest
                    if not held:
                        held.append(True)
                        self._holding += 1
                    self.spool_full = True
                    log.error("audit spool refused a batch, holding it: %s", exc)
                    # The store may be back: try it directly before the next spool attempt.
                    try:
                        return await self.write_exactly_once(batch)
                    except Exception as store_exc:
                        self._report_failure(store_exc)
            await asyncio.sleep(backoff_s * (0.5 + random.random() / 2))
            backoff_s = min(backoff_s * 2, 5.0)

    async def write_exactly_once(self, batch: Batch) -> str:
        """Create-only writes until every record of ``batch`` is covered by some object."""
        result = "store"
        tp = (batch.topic, batch.partition)
        seen = self._seen_object.get(tp)
        if seen is not None and batch.offsets and seen[0] <= batch.first_offset <= seen[1]:
            result = "already_present"
            batch = batch.after(seen[1])
        while batch.offsets:
            key = self.key_for(batch)
            body = await self._encode(batch)
            if await self._store.put_if_absent(key, body):
                return result
            covered = last_offset(await self._store.get(key))
            log.info("audit object %s already present (covers up to offset %d)", key, covered)
            self._seen_object[tp] = (batch.first_offset, covered)
            result = "already_present"
            batch = batch.after(covered)
        return result

    async def _encode(self, batch: Batch) -> bytes:
        if not self._compress:
            return encode(batch.lines, compress=False)
        # zlib lets go of the GIL while it deflates: in a thread, compression runs on another
        # core instead of stalling the loop (~2 % of its time at saturation).
        return await asyncio.to_thread(encode, batch.lines, compress=True)

    def key_for(self, batch: Batch) -> str:
        return object_key(
            self._cfg.prefix,
            batch.hour,
            batch.topic,
            batch.partition,
            batch.first_offset,
            gzip=self._compress,
        )

    async def _spool_batch(self, batch: Batch) -> None:
        assert self._spool is not None
        meta = {
            "topic": batch.topic,
            "partition": batch.partition,
            "hour": batch.hour,
            "first_offset": batch.first_offset,
            "last_offset": batch.last_offset,
            "records": len(batch.offsets),
        }
        body = await self._encode(batch)
        await asyncio.to_thread(self._spool.append, self.key_for(batch), body, meta)
        if self._on_spool_append is not None:
            self._on_spool_append()

    async def upload_spooled(self, entry: Any) -> None:
        """Drainer callback: the same exactly-once write, from a spooled object."""
        tp = (str(entry.meta["topic"]), int(entry.meta["partition"]))
        seen = self._seen_object.get(tp)
        if seen is not None and seen[0] <= int(entry.meta["first_offset"]) <= seen[1]:
            # Starts inside an object found earlier: write only what that object lacks.
            await self.write_exactly_once(batch_from_body(entry.meta, entry.payload))
            self._set_degraded(False, "store answered a spooled batch")
            return
        if await self._store.put_if_absent(entry.key, entry.payload):
            self._set_degraded(False, "store accepted a spooled batch")
            return
        batch = batch_from_body(entry.meta, entry.payload)
        covered = last_offset(await self._store.get(entry.key))
        self._seen_object[tp] = (batch.first_offset, covered)
        await self.write_exactly_once(batch.after(covered))
        self._set_degraded(False, "store answered a spooled batch")

    def _report_failure(self, exc: BaseException) -> None:
        self._events.publish(AuditWriteFailed(reason=type(exc).__name__, detail=str(exc)[:300]))

    def _set_degraded(self, degraded: bool, reason: str) -> None:
        if degraded != self.degraded:
            self.degraded = degraded
            if degraded:
                log.warning(
                    "audit store failing, degraded mode: writing to local spool (%s)", reason
                )
            else:
                log.warning("audit store back, leaving degraded mode (%s)", reason)
            self._events.publish(DegradedModeChanged(degraded=degraded, reason=reason))


def batch_from_body(meta: dict[str, Any], body: bytes) -> Batch:
    import zlib

    if body[:2] == b"\x1f\x8b":
        body = zlib.decompress(body, wbits=31)
    batch = Batch(str(meta["topic"]), int(meta["partition"]), str(meta["hour"]))
    for line in body.splitlines():
        if line.strip():
            batch.add(orjson.loads(line)["kafka"]["offset"], line)
    return batch
