"""The main job: Kafka -> validate -> guarded upstream call -> audit -> commit.

Flow control in one paragraph: the fetch loop queues each record under its Kafka key;
``max_in_flight`` long-lived workers take keys that have work and process each key's messages
one after another (order per key), different keys concurrently. Every fetched record counts
against ``queue_depth`` until its audit record is durable; at the bound the assigned partitions
are paused (never dropped) and resumed below 80 %. Commits carry only offsets the audit writer
reports durable (see audit/writer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from netscope.audit.drain import SpoolDrainer
from netscope.audit.spool import Spool
from netscope.audit.store import AuditStore
from netscope.audit.writer import AuditWriter
from netscope.config import Settings
from netscope.contract.records import (
    AuditRecord,
    KafkaPosition,
    Outcome,
    dead_letter_headers,
)
from netscope.contract.request import CallRequest, FieldError, InvalidMessage, parse_request
from netscope.contract.traceparent import new_trace
from netscope.ingest.kafka import make_consumer, make_producer
from netscope.observability.events import (
    BackpressureChanged,
    BreakerTransitioned,
    CallCompleted,
    DegradedModeChanged,
    EventBus,
    MessageDeadLettered,
)
from netscope.observability.metrics import Metrics
from netscope.outbound.caller import CallResult, UpstreamGuard
from netscope.outbound.redact import redact_path
from netscope.resilience.clock import SystemClock
from netscope.resilience.limiter import TokenBucket

log = logging.getLogger(__name__)

RESUME_RATIO = 0.8


@dataclass(slots=True, eq=False)  # identity hash: a keyless record is its own ordering key
class _Work:
    """One fetched record on its way to a terminal outcome."""

    lane: Any  # the audit writer's token for its partition
    tp: TopicPartition
    record: ConsumerRecord
    received_at: float  # epoch s
    consumed_mono: float  # the deadline counts from here (I1)
    dispatched: float  # perf_counter: latency_s and queued_s count from here


@dataclass(slots=True)
class StopSummary:
    processed: int
    abandoned: int  # in flight when the drain timeout ran out: will be redelivered
    audit_pending: int  # fetched but not durably audited: will be redelivered
    committed: dict[str, int]
    clean: bool


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, pipeline: Pipeline) -> None:
        self._p = pipeline

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._p._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._p._on_assigned(list(assigned))


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        events: EventBus | None = None,
        metrics: Metrics | None = None,
        consumer_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.events = events or EventBus()
        self.metrics = metrics or Metrics()
        self.events.subscribe(self.metrics.on_event)
        self.events.subscribe(_log_event)
        self.clock = SystemClock()
        self.guards = {
            name: UpstreamGuard(name, cfg, self.events, self.clock)
            for name, cfg in settings.upstreams.items()
        }
        for name, guard in self.guards.items():
            self.metrics.init_upstream(name, in_flight=guard.calls_in_progress)
        self.store = AuditStore.from_config(settings.audit)
        spool_cfg = settings.audit.spool
        self.spool, self.spool_report = Spool.open(
            Path(spool_cfg.path),
            segment_max_bytes=spool_cfg.segment_max_bytes,
            capacity_bytes=spool_cfg.capacity_bytes,
            free_disk_floor_bytes=spool_cfg.free_disk_floor_bytes,
        )
        self.writer = AuditWriter(
            settings.audit,
            self.store,
            self.events,
            spool=self.spool,
            on_spool_append=lambda: self.drainer.wake(),
        )
        self.drainer = SpoolDrainer(
            self.spool,
            self.writer.upload_spooled,
            initial_backoff_s=spool_cfg.drain_initial_backoff_s,
            max_backoff_s=spool_cfg.drain_max_backoff_s,
            on_event=self._on_drain_event,
        )
        rate = settings.pipeline.ingest_rate_per_s
        self.ingest_limit = TokenBucket(
            rate if rate > 0 else float("inf"), max(1, int(rate) or 1), self.clock
        )
        if settings.pipeline.start_paused:
            self.ingest_limit.set_rate(0.0, 1)
            log.warning("ingest paused at start (pipeline.start_paused): "
                        "lift with `netscope admin throttle off`")
        self.metrics.ingest_rate_limit.set(self.ingest_limit.rate_per_s)
        self.metrics.queue_capacity.set(settings.pipeline.queue_depth)
        self._consumer = make_consumer(settings.kafka, **(consumer_overrides or {}))
        self._producer = make_producer(settings.kafka)
        # Messages of one Kafka key wait in that key's queue; a key with work is in _ready
        # until a worker takes it, and the worker drains it: order per key, and no task or
        # semaphore per message (a fixed pool of workers bounds concurrency).
        self._key_queues: dict[Any, deque[_Work]] = {}
        self._ready: deque[Any] = deque()
        self._parked: deque[asyncio.Future[None]] = deque()  # idle workers
        self._workers: list[asyncio.Task[None]] = []
        self._outstanding = 0  # dispatched, not yet at a terminal outcome
        self._all_done: asyncio.Event | None = None  # set by stop() to hear outstanding == 0
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[Any]] = []
        self._paused_reason: str | None = None
        self._committed: dict[TopicPartition, int] = {}
        self.processed = 0
        self.consumer_connected = False
        self.started_at = time.time()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        for guard in self.guards.values():
            await guard.client.start()
        await self._producer.start()
        await self._consumer.start()
        self._consumer.subscribe([self.settings.kafka.requests_topic], listener=_Rebalance(self))
        self.consumer_connected = True
        if not self.spool_report.clean:
            # Torn tails are truncated and corrupt segments quarantined, never dropped silently.
            log.warning("audit spool recovered with findings: %s", self.spool_report)
        if self.spool_report.pending_entries:
            log.warning(
                "audit spool holds %d batches from a previous run: draining them",
                self.spool_report.pending_entries,
            )
            self.drainer.wake()
        self._workers = [
            asyncio.create_task(self._worker(), name=f"worker-{i}")
            for i in range(self.settings.pipeline.max_in_flight)
        ]
        self._background = [
            asyncio.create_task(self.writer.run(), name="audit-sealer"),
            asyncio.create_task(self.drainer.run(), name="spool-drainer"),
            asyncio.create_task(self._commit_loop(), name="committer"),
            asyncio.create_task(self._sample_loop(), name="sampler"),
        ]

    async def run(self) -> None:
        """Fetch until :meth:`request_stop`."""
        consumer = self._consumer
        while not self._stopping.is_set():
            if self._backpressure():
                await self._wait_or_stop(0.05)
                # Keep polling while paused: aiokafka needs it to stay in the group.
                await consumer.getmany(timeout_ms=0)
                continue
            room = self.settings.pipeline.queue_depth - self.writer.pending_records
            batches = await consumer.getmany(
                timeout_ms=100, max_records=max(1, min(room, self.settings.kafka.max_poll_records))
            )
            limit = self.ingest_limit
            for tp, records in batches.items():
                for record in records:
                    if not limit.unlimited:  # a check, not a coroutine, per record
                        await self._throttle()
                    self._dispatch(tp, record)

    @property
    def paused_reason(self) -> str | None:
        """Why consumption is paused (queue_full, spool_full, throttle), or None."""
        return self._paused_reason

    @property
    def in_flight_messages(self) -> int:
        """Messages dispatched that have not reached a terminal outcome yet."""
        return self._outstanding

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self, drain_timeout_s: float | None = None) -> StopSummary:
        """Runbook section 4: stop fetching, drain, flush the audit, commit, close."""
        self._stopping.set()
        timeout = drain_timeout_s or self.settings.pipeline.drain_timeout_s
        if self._outstanding:
            self._all_done = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_done.wait(), timeout)
        abandoned = self._outstanding
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self.writer.flush()
        await self._commit()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        # One last pass so what was spooled during the stop goes out if the store is back.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.drainer.drain_once(), 5)
        audit_pending = self.writer.pending_records
        await self._consumer.stop()
        self.consumer_connected = False
        await self._producer.stop()
        for guard in self.guards.values():
            await guard.client.close()
        self.spool.close()
        return StopSummary(
            processed=self.processed,
            abandoned=abandoned,
            audit_pending=audit_pending,
            committed={f"{tp.topic}/{tp.partition}": o for tp, o in self._committed.items()},
            clean=abandoned == 0 and audit_pending == 0,
        )

    # -- flow control ------------------------------------------------------------------------

    def _backpressure(self) -> bool:
        depth = self.settings.pipeline.queue_depth
        pending = self.writer.pending_records
        reason = None
        if self.writer.spool_full:
            reason = "spool_full"
        elif self.ingest_limit.paused:
            reason = "throttle"
        elif pending >= depth or (
            self._paused_reason == "queue_full" and pending > depth * RESUME_RATIO
        ):
            reason = "queue_full"
        if reason != self._paused_reason:
            assigned = list(self._consumer.assignment())
            if reason is None:
                self._consumer.resume(*assigned)
                log.info("ingest resumed (was paused: %s)", self._paused_reason)
                self.events.publish(BackpressureChanged(False, self._paused_reason or ""))
            else:
                self._consumer.pause(*assigned)
                # Info, not warning: under a backlog this is the normal rhythm of backpressure;
                # the netscope_ingest_paused gauge is what alerts watch.
                log.info("ingest paused: %s (pending=%d, queue_depth=%d)", reason, pending, depth)
                if self._paused_reason is not None:
                    self.events.publish(BackpressureChanged(False, self._paused_reason))
                self.events.publish(BackpressureChanged(True, reason))
            self._paused_reason = reason
        return reason is not None

    async def _throttle(self) -> None:
        while not self.ingest_limit.try_acquire():
            wait = self.ingest_limit.wait_time_s()
            await self._wait_or_stop(min(wait, 0.25))
            if self._stopping.is_set():
                return

    def set_ingest_rate(self, rate_per_s: float | None) -> None:
        """Runbook INC-01 step 4: lower (or lift, with None) the ingest rate at runtime."""
        rate = float("inf") if rate_per_s is None else rate_per_s
        self.ingest_limit.set_rate(rate, max(1, int(rate)) if rate not in (0, float("inf")) else 1)
        self.metrics.ingest_rate_limit.set(rate)
        log.warning("ingest rate limit set to %s/s", "unlimited" if rate_per_s is None else rate)

    async def _wait_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- processing --------------------------------------------------------------------------

    def _dispatch(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        work = _Work(
            lane=self.writer.track(tp.topic, tp.partition, record.offset),
            tp=tp,
            record=record,
            received_at=time.time(),
            consumed_mono=self.clock.monotonic(),
            dispatched=time.perf_counter(),
        )
        self._outstanding += 1
        # A keyless message is its own key: nothing to keep it in order with.
        key = work if record.key is None else (tp.partition, record.key)
        queue = self._key_queues.get(key)
        if queue is not None:
            queue.append(work)  # a worker holds or will take this key: in order
            return
        self._key_queues[key] = deque((work,))
        self._ready.append(key)
        while self._parked:
            worker = self._parked.popleft()
            if not worker.done():
                worker.set_result(None)
                break

    async def _worker(self) -> None:
        ready, parked = self._ready, self._parked
        loop = asyncio.get_running_loop()
        while True:
            if not ready:
                wake = loop.create_future()
                parked.append(wake)
                await wake
                continue
            key = ready.popleft()
            queue = self._key_queues[key]
            try:
                while queue:
                    try:
                        await self._process(queue[0])
                    except Exception:  # a bug: that offset stays uncommitted (redelivered)
                        log.exception("processing failed; the message will be redelivered")
                    queue.popleft()
            finally:
                del self._key_queues[key]

    async def _process(self, work: _Work) -> None:
        if not self.writer.takes_work(work.lane):
            # Its partition is being (or was) revoked while it waited: calling it now would
            # only duplicate the new owner's call, and its record would be discarded.
            self.metrics.revoked_skipped.inc()
            self._settle()
            return
        tp, record, received_at = work.tp, work.record, work.received_at
        t_parse = time.perf_counter()
        header_tp = next((v for k, v in (record.headers or ()) if k == "traceparent"), None)
        parsed = parse_request(
            record.value,
            upstreams=self.guards,
            header_traceparent=header_tp,
            max_message_bytes=self.settings.pipeline.max_message_bytes,
        )
        if isinstance(parsed, CallRequest):
            limit = self.settings.upstreams[parsed.upstream].max_request_bytes
            if parsed.body_bytes is not None and len(parsed.body_bytes) > limit:
                parsed = InvalidMessage(
                    (
                        FieldError(
                            "body", f"{len(parsed.body_bytes)} bytes, upstream limit {limit}"
                        ),
                    ),
                    parsed.request_id,
                    parsed.trace,
                )
        position = KafkaPosition(
            topic=tp.topic,
            partition=tp.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key=record.key.decode("utf-8", "replace") if record.key is not None else None,
        )
        if isinstance(parsed, InvalidMessage):
            await self._dead_letter(tp, record, parsed)
            audit = self._invalid_record(parsed, position, received_at)
            upstream_time = 0.0
        else:
            parse_s = time.perf_counter() - t_parse
            # Waiting behind the same key, then for a worker; parsing is work, not a wait.
            queued_s = time.perf_counter() - work.dispatched - parse_s
            result = await self.guards[parsed.upstream].call(parsed, work.consumed_mono)
            audit = self._call_record(parsed, result, position, received_at, work.dispatched)
            audit.queued_s = round(max(0.0, queued_s) + result.queued_s, 6)
            upstream_time = result.upstream_time_s
        self.processed += 1
        self._settle()
        self.events.publish(CallCompleted(audit, upstream_time))
        self.writer.complete(work.lane, audit)

    def _settle(self) -> None:
        """One dispatched message reached its end here (terminal outcome, or revoked)."""
        self._outstanding -= 1
        if self._outstanding == 0 and self._all_done is not None:
            self._all_done.set()

    async def _dead_letter(
        self, tp: TopicPartition, record: ConsumerRecord, invalid: InvalidMessage
    ) -> None:
        """The DLQ copy must exist before the offset can be committed: retry until it does."""
        backoff = 0.2
        while True:
            try:
                await self._producer.send_and_wait(
                    self.settings.kafka.dead_letter_topic,
                    value=record.value,
                    key=record.key,
                    # The producer's own headers (traceparent first of all) travel with the
                    # dead letter, so whoever replays it keeps the correlation.
                    headers=[
                        (k, v)
                        for k, v in (record.headers or ())
                        if not k.startswith("netscope-dlq-")
                    ]
                    + dead_letter_headers(
                        invalid.reason, invalid.field, tp.topic, tp.partition, record.offset
                    ),
                )
                break
            except Exception as exc:
                log.error("dead-letter produce failed, retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        self.events.publish(
            MessageDeadLettered(
                tp.topic, tp.partition, record.offset, invalid.field, invalid.reason
            )
        )

    def _invalid_record(
        self, invalid: InvalidMessage, position: KafkaPosition, received_at: float
    ) -> AuditRecord:
        trace = invalid.trace or new_trace()
        now = time.time()
        return AuditRecord(
            request_id=invalid.request_id,
            idempotency_key=None,
            trace_id=trace.trace_id,
            span_id=trace.span_id,
            upstream=None,
            method=None,
            path=None,
            kafka=position,
            outcome=Outcome.INVALID,
            received_at=received_at,
            completed_at=now,
            latency_s=round(now - received_at, 6),
            error_class="invalid",
            error_detail=invalid.reason[:1000],
            instance_id=self.settings.instance_id,
        )

    def _call_record(
        self,
        req: CallRequest,
        result: CallResult,
        position: KafkaPosition,
        received_at: float,
        t0: float,
    ) -> AuditRecord:
        msg = req.message
        return AuditRecord(
            request_id=msg.request_id,
            idempotency_key=req.idempotency_key,
            trace_id=req.trace.trace_id,
            span_id=req.trace.span_id,
            upstream=msg.upstream,
            method=msg.method,
            path=redact_path(msg.path),
            kafka=position,
            outcome=result.outcome,
            received_at=received_at,
            completed_at=time.time(),
            latency_s=round(time.perf_counter() - t0, 6),
            status=result.status,
            error_class=result.error_class,
            error_detail=result.detail,
            attempts=result.attempts,
            created_at=msg.created_at.isoformat() if msg.created_at else None,
            instance_id=self.settings.instance_id,
        )

    # -- rebalance and commits ---------------------------------------------------------------

    def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self.writer.assign(tp.topic, tp.partition)
        log.info("assigned %s", sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))
        self.metrics.assigned.set(len(self._consumer.assignment()))
        if self._paused_reason is not None and assigned:
            self._consumer.pause(*assigned)

    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Commit what is durable for the partitions leaving us; the rest is redelivered."""
        keys = [(tp.topic, tp.partition) for tp in revoked]
        self.writer.closing(keys)  # queued messages of these partitions will not start
        try:
            await asyncio.wait_for(self.writer.flush(keys), self.settings.pipeline.drain_timeout_s)
        except TimeoutError:
            log.warning("revoke: audit flush timed out; undurable messages will be redelivered")
        await self._commit(only=set(revoked))
        self.writer.forget(keys)
        for tp in revoked:
            self._committed.pop(tp, None)
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        log.info("revoked %s", sorted(f"{tp.topic}/{tp.partition}" for tp in revoked))

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        offsets = {}
        for (topic, partition), offset in self.writer.committable().items():
            tp = TopicPartition(topic, partition)
            if only is not None and tp not in only:
                continue
            if self._committed.get(tp) != offset:
                offsets[tp] = offset
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as exc:
            self.metrics.commit_errors.inc()
            log.warning("offset commit failed (will retry): %s", exc)
            return
        self._committed.update(offsets)
        self.metrics.commits.inc()

    async def _commit_loop(self) -> None:
        interval = self.settings.pipeline.commit_interval_s
        while True:
            await self.writer.wait_durable(interval)
            await self._commit()

    async def _sample_loop(self) -> None:
        """Gauges that are states, not events; and breaker time-based transitions."""
        while True:
            self.metrics.queue_depth.set(self.writer.pending_records)
            stats = await asyncio.to_thread(self.spool.stats)
            self.metrics.sample_spool(stats, self.writer.spool_full)
            for guard in self.guards.values():
                guard.breaker.poll()
            for tp in self._consumer.assignment():
                high = self._consumer.highwater(tp)
                if high is None:
                    continue
                done = self._committed.get(tp)
                if done is None:
                    continue
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, high - done)
                )
            await asyncio.sleep(1.0)

    def _on_drain_event(self, name: str, fields: dict[str, Any]) -> None:
        if name == "drained":
            self.metrics.spool_drained.inc()
        elif name == "upload_failed":
            log.warning("spool drain failed: %s", fields)

    # -- readiness ---------------------------------------------------------------------------

    def kafka_ready(self) -> tuple[bool, str]:
        if not self.consumer_connected:
            return False, "consumer not started"
        if not self._consumer.assignment():
            return False, "consumer has no partition assignment"
        return True, f"{len(self._consumer.assignment())} partitions assigned"


def _log_event(event: Any) -> None:
    """State changes an on-call wants in the log; per-message events stay out of it."""
    if isinstance(event, BreakerTransitioned):
        log.warning(
            "circuit %s: %s -> %s (%s)",
            event.upstream,
            event.from_state,
            event.to_state,
            event.reason,
        )
    elif isinstance(event, DegradedModeChanged):
        log.warning("audit degraded mode %s: %s", "ON" if event.degraded else "OFF", event.reason)
