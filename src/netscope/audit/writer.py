"""The audit writer: makes sealed batches durable, so their offsets may be committed.

This is where "at-least-once, audit before commit" is enforced. The state of each partition
(fetch order, batches, what is committable) is pure and lives in audit/lanes.py; the one
create-only write with its dedupe lives in audit/exactly_once.py. This module is the I/O:

- one writer task per lane with sealed batches, making them durable one after another, in
  offset order: written to the store, or appended (fsync) to the local spool when the store
  fails (degraded mode), or, when the spool refuses too, held in memory while ingest pauses
  (``spool_full``) and both are retried with backoff. A record is never dropped;
- the sealer that closes batches on age, ``flush``, and ``wait_durable`` for the committer.

It publishes events (batch durable, write failed, degraded mode changed) and never logs or
counts them itself: the log listener and the metrics listen on the bus.

Cancelling ``flush()``, ``close()`` or a lane's writer task is safe at any point: a batch is
marked durable only after its write returned, so an interrupted one stays uncommitted and
Kafka redelivers it (a write that completed unseen is deduped by its key then).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netscope.audit.batch import Batch
from netscope.audit.exactly_once import Encoded, ExactlyOnce, spooled_batch
from netscope.audit.keys import CONTROL_TOPIC, event_hour
from netscope.audit.lanes import BatchLimits, Lane, Lanes, TopicPartition
from netscope.audit.store import AuditStore
from netscope.config import AuditConfig
from netscope.contract.records import AuditRecord, ControlRecord
from netscope.observability.events import (
    AuditBatchDurable,
    AuditTarget,
    AuditWriteFailed,
    DegradedModeChanged,
    EventBus,
    WriteResult,
)
from netscope.runtime import wait_event

__all__ = ["AuditWriter", "TopicPartition"]

BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 5.0
_DETAIL_MAX = 300

Durable = tuple[AuditTarget, WriteResult]


@dataclass(slots=True)
class _Attempts:
    """One batch's way to durability: its backoff and whether it holds a spool_full slot."""

    held: bool = False
    backoff_s: float = BACKOFF_INITIAL_S

    def next_delay_s(self) -> float:
        delay_s = self.backoff_s * (0.5 + random.random() / 2)
        self.backoff_s = min(self.backoff_s * 2, BACKOFF_MAX_S)
        return delay_s


class AuditWriter:
    """Owns the lanes of the partitions assigned to this process and their writer tasks."""

    def __init__(
        self,
        cfg: AuditConfig,
        store: AuditStore,
        events: EventBus,
        *,
        spool: Any | None = None,
        on_spool_append: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        run_id: str | None = None,
        instance_id: str | None = None,
    ) -> None:
        self._cfg = cfg
        self._lanes = Lanes(BatchLimits.from_config(cfg), clock)
        self._objects = ExactlyOnce.from_config(cfg, store, run_id, instance_id)
        # Control events: a lane of their own, numbered from this process's start (in µs)
        # so that a restarted instance never writes a key an earlier run wrote.
        self._control_seq = itertools.count(int(time.time() * 1_000_000))
        self._events = events
        self._spool = spool
        self._on_spool_append = on_spool_append
        self._clock = clock
        self._tasks: dict[Lane, asyncio.Task[None]] = {}
        self.degraded = False
        self.spool_full = False
        self._holding = 0  # lanes holding a batch the spool refused
        self._durable = asyncio.Event()

    # -- feeding (see audit/lanes.py) --------------------------------------------------------

    def assign(self, topic: str, partition: int) -> None:
        self._lanes.assign(topic, partition)

    def track(self, topic: str, partition: int, offset: int) -> Lane:
        """A message was fetched: it holds back the commit until its record is durable.

        Returns the lane token to hand back to :meth:`complete`; a token from before a
        rebalance no longer matches, so a late record cannot leak into a new assignment.
        """
        return self._lanes.track(topic, partition, offset)

    def owns(self, lane: Lane) -> bool:
        """Whether ``lane`` (a token from :meth:`track`) is still this process's partition."""
        return self._lanes.owns(lane)

    def takes_work(self, lane: Lane) -> bool:
        """Whether a message of ``lane`` that has not started yet should start: not once a
        revoke has begun (the new owner will process it)."""
        return self._lanes.takes_work(lane)

    def closing(self, partitions: list[TopicPartition]) -> None:
        """A revoke has begun: records of started messages are still taken until forget()."""
        self._lanes.closing(partitions)

    def complete(self, lane: Lane, record: AuditRecord) -> bool:
        """The terminal record of a tracked message; False if its partition was revoked."""
        kafka = record.kafka
        hour = event_hour(kafka.timestamp_ms)
        if not self._lanes.complete(lane, kafka.offset, hour, record.to_json(), record.received_at):
            return False
        if lane.sealed:
            self._start_writer(lane)
        return True

    def control(self, record: ControlRecord) -> None:
        """Audit a control event, as durably as a call record (batched, spooled if needed)."""
        seq = record.seq = next(self._control_seq)
        lane = self._lanes.track(CONTROL_TOPIC, 0, seq)
        hour = event_hour(int(record.at * 1000))
        if self._lanes.complete(lane, seq, hour, record.to_json(), record.at) and lane.sealed:
            self._start_writer(lane)

    # -- state -------------------------------------------------------------------------------

    @property
    def pending_records(self) -> int:
        """Records fetched but not yet durable (in flight, waiting for order, or in a batch).
        Control records are not fetched messages: they neither hold back ingest nor count
        as redelivered work (see ``pending_control_records``)."""
        return self._lanes.pending_records - self.pending_control_records

    @property
    def pending_control_records(self) -> int:
        lanes = self._lanes.select([(CONTROL_TOPIC, 0)])
        return lanes[0].unreleased if lanes else 0

    def committable(self) -> dict[TopicPartition, int]:
        return self._lanes.committable()

    def partitions(self) -> list[TopicPartition]:
        return self._lanes.partitions()

    async def wait_durable(self, timeout_s: float) -> None:
        """Wake up when some batch became durable (or after ``timeout_s``)."""
        await wait_event(self._durable, timeout_s)
        self._durable.clear()

    # -- sealing, flushing, stopping ---------------------------------------------------------

    async def run(self) -> None:
        """Seal batches that reached their age. Runs until cancelled."""
        tick = min(self._cfg.batch_max_delay_s / 4, 0.05)
        while True:
            await asyncio.sleep(tick)
            for lane in self._lanes.seal_aged():
                self._start_writer(lane)

    async def flush(self, partitions: list[TopicPartition] | None = None) -> None:
        """Seal every open batch and wait until all sealed batches are durable.

        Cancelling it (a timeout) cancels the writers it waits for: their batches stay
        uncommitted and are redelivered.
        """
        lanes = self._lanes.select(partitions)
        for lane in lanes:
            self._lanes.seal(lane)
            if lane.sealed:
                self._start_writer(lane)
        writers = [task for lane in lanes if (task := self._tasks.get(lane)) is not None]
        if writers:
            await asyncio.gather(*writers, return_exceptions=True)

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Drop revoked partitions; their undurable messages will be redelivered elsewhere."""
        for lane in self._lanes.forget(partitions):
            task = self._tasks.pop(lane, None)
            if task is not None:
                task.cancel()

    async def close(self) -> None:
        """Cancel every lane writer and wait for them (undurable batches are redelivered)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- making batches durable --------------------------------------------------------------

    def _start_writer(self, lane: Lane) -> None:
        task = self._tasks.get(lane)
        if task is None or task.done():
            self._tasks[lane] = asyncio.create_task(
                self._write_lane(lane), name=f"audit-{lane.topic}-{lane.partition}"
            )

    async def _write_lane(self, lane: Lane) -> None:
        while lane.sealed:
            head = lane.sealed[0]
            started = self._clock()
            target, result = await self._make_durable(head.batch)
            self._lanes.durable(lane)
            batch = head.batch
            self._events.publish(
                AuditBatchDurable(
                    topic=batch.topic,
                    partition=batch.partition,
                    records=len(batch.offsets),
                    bytes=batch.size_bytes,
                    target=target,
                    result=result,
                    write_s=self._clock() - started,
                    oldest_received_at=head.oldest_received_at,
                )
            )
            self._durable.set()

    async def _make_durable(self, batch: Batch) -> Durable:
        """Store, else spool, else hold and back off; never gives up (no record is dropped).

        ``spool_full`` (it pauses ingest) stays set while any lane holds a batch the spool
        refused, and clears once the last such batch is durable by either path (or its lane
        is revoked): a held batch the store took back must not leave ingest paused forever.
        """
        attempts = _Attempts()
        try:
            while True:
                durable = await self._attempt(batch, attempts)
                if durable is not None:
                    return durable
                await asyncio.sleep(attempts.next_delay_s())
        finally:
            if attempts.held:
                self._holding -= 1
                self.spool_full = self._holding > 0

    async def _attempt(self, batch: Batch, attempts: _Attempts) -> Durable | None:
        """One round: the store (unless degraded), then the spool, then the store again."""
        if not self.degraded or self._spool is None:
            result = await self._try_store(batch)
            if result is not None:
                return AuditTarget.STORE, result
        if self._spool is None:
            return None
        if await self._try_spool(batch):
            return AuditTarget.SPOOL, WriteResult.CREATED
        if not attempts.held:
            attempts.held = True
            self._holding += 1
        self.spool_full = True
        # The store may be back: try it directly before the next spool attempt.
        result = await self._try_store(batch)
        if result is None:
            return None
        # With nothing spooled the drainer never writes, so this is where a store that came
        # back while the spool refused everything ends degraded mode.
        self._set_degraded(False, "store accepted a held batch")
        return AuditTarget.STORE, result

    async def _try_store(self, batch: Batch) -> WriteResult | None:
        try:
            return await self._objects.write(batch)
        except Exception as exc:
            self._failed(AuditTarget.STORE, exc)
            if self._spool is not None:
                self._set_degraded(True, f"{type(exc).__name__}: {exc}"[:_DETAIL_MAX])
            return None

    async def _try_spool(self, batch: Batch) -> bool:
        """Append to the spool; False if it refused (SpoolFull) or the disk failed."""
        assert self._spool is not None
        meta = {
            "topic": batch.topic,
            "partition": batch.partition,
            "hour": batch.hour,
            "first_offset": batch.first_offset,
            "last_offset": batch.last_offset,
            "records": len(batch.offsets),
        }
        try:
            body = await self._objects.encode(batch)
            key = self._objects.key_for(batch)
            await asyncio.to_thread(self._spool.append, key, body, meta)
        except Exception as exc:
            self._failed(AuditTarget.SPOOL, exc)
            return False
        if self._on_spool_append is not None:
            self._on_spool_append()
        return True

    # -- the drainer's side ------------------------------------------------------------------

    async def upload_spooled(self, entry: Any) -> WriteResult:
        """Drainer callback: a spooled batch to the store, through the same exactly-once
        write (its spooled bytes go as they are unless part of it is already present).
        Raises on a store failure (the drainer retries); success leaves degraded mode."""
        batch = await asyncio.to_thread(spooled_batch, entry.meta, entry.payload)
        result = await self._objects.write(batch, encoded=Encoded(entry.key, entry.payload))
        self._set_degraded(False, "store accepted a spooled batch")
        return result

    # -- events ------------------------------------------------------------------------------

    def _failed(self, target: AuditTarget, exc: BaseException) -> None:
        self._events.publish(
            AuditWriteFailed(
                target=target, reason=type(exc).__name__, detail=str(exc)[:_DETAIL_MAX]
            )
        )

    def _set_degraded(self, degraded: bool, reason: str) -> None:
        if degraded != self.degraded:
            self.degraded = degraded
            self._events.publish(DegradedModeChanged(degraded=degraded, reason=reason))
