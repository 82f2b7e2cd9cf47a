"""The main job, assembled: Kafka -> validate -> guarded upstream call -> audit -> commit.

One message goes forward through the stages, each in its own module:

    ingest/fetcher.py  fetch, backpressure (ingest/flow.py), throttle -> a Work per record
    ingest/keyed.py    per-key queues and a fixed worker pool: order per key
    handler.py         parse -> dead letter (ingest/dead_letter.py) or claim the key
                       (ledger/gate.py) -> guarded call (outbound/caller.py) -> settle
                       -> record (audit/record.py) -> writer
    audit/writer.py    batches made durable in the store, or the spool when it fails
    audit/commit.py    durable offsets -> Kafka commits; rebalance; lag

This module only builds them, starts and stops them in order, and offers the read model
(:meth:`Pipeline.status`) the API, the dashboard and the sampled gauges use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from netscope import __version__
from netscope.audit.commit import OffsetCommitter
from netscope.audit.control import ControlAudit, config_digest
from netscope.audit.drain import SpoolDrainer
from netscope.audit.spool import Spool
from netscope.audit.store import AuditStore
from netscope.audit.writer import AuditWriter
from netscope.config import Settings
from netscope.handler import MessageHandler
from netscope.ingest.dead_letter import DeadLetterPublisher
from netscope.ingest.fetcher import Fetcher
from netscope.ingest.flow import FlowControl
from netscope.ingest.group import LeaderTrackingAssignor, leave_only_when_safe, stop_consumer
from netscope.ingest.kafka import make_consumer, make_producer
from netscope.ingest.keyed import KeyedScheduler
from netscope.ingest.rejoin import rejoin_keeping_member_id
from netscope.ingest.work import Work
from netscope.ledger.factory import build_ledger
from netscope.ledger.gate import IdempotencyGate
from netscope.observability.events import (
    EventBus,
    InstanceStarted,
    InstanceStopping,
    StatusSampled,
)
from netscope.observability.log_events import log_event
from netscope.observability.metrics import Metrics
from netscope.outbound.caller import UpstreamGuard
from netscope.resilience.clock import SystemClock
from netscope.runtime import bounded_step
from netscope.status import (
    LedgerStatus,
    PipelineStatus,
    SpoolStatus,
    StopSummary,
    spool_status,
)

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0
CLOSE_STEP_TIMEOUT_S = 5.0  # each closing step of a stop (commit, last drain, clients)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        events: EventBus | None = None,
        metrics: Metrics | None = None,
        consumer_overrides: dict[str, Any] | None = None,
        replay_run_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.replay_run_id = replay_run_id
        self.events = events or EventBus()
        self.metrics = metrics or Metrics()
        self.events.subscribe(self.metrics.on_event)
        self.events.subscribe(log_event)
        self.clock = SystemClock()
        self.started_at = time.time()
        self.guards = {
            name: UpstreamGuard(name, cfg, self.events, self.clock)
            for name, cfg in settings.upstreams.items()
        }
        for name, guard in self.guards.items():
            self.metrics.init_upstream(name, in_flight=guard.calls_in_progress)
        self._build_ledger()
        self._build_audit()
        self._build_kafka(consumer_overrides or {})
        self._background: list[asyncio.Task[Any]] = []
        self._spool_status = SpoolStatus()

    def _build_ledger(self) -> None:
        ledger = build_ledger(self.settings)
        self.gate = None
        if ledger is not None:
            ups = self.settings.upstreams
            self.gate = IdempotencyGate(
                ledger,
                self.settings.ledger,
                {n: u.idempotency for n, u in ups.items()},
                {n: u.deadline_s for n, u in ups.items()},
                self.events,
            )

    def _build_audit(self) -> None:
        audit = self.settings.audit
        self.store = AuditStore.from_config(audit)
        self.spool, self.spool_report = Spool.open(
            Path(audit.spool.path),
            segment_max_bytes=audit.spool.segment_max_bytes,
            capacity_bytes=audit.spool.capacity_bytes,
            free_disk_floor_bytes=audit.spool.free_disk_floor_bytes,
        )
        self.writer = AuditWriter(
            audit,
            self.store,
            self.events,
            spool=self.spool,
            on_spool_append=lambda: self.drainer.wake(),
            run_id=self.replay_run_id,
            instance_id=self.settings.instance_id,
        )
        self.control_audit = ControlAudit(
            self.writer,
            instance_id=self.settings.instance_id,
            replay_run_id=self.replay_run_id,
            spool=lambda: self._spool_status,
        )
        self.events.subscribe(self.control_audit.on_event)
        self.drainer = SpoolDrainer(
            self.spool,
            self.writer.upload_spooled,
            events=self.events,
            initial_backoff_s=audit.spool.drain_initial_backoff_s,
            max_backoff_s=audit.spool.drain_max_backoff_s,
        )

    def _build_kafka(self, consumer_overrides: dict[str, Any]) -> None:
        s = self.settings
        # A leader does not send LeaveGroup while tansu rebalances (see ingest/group.py).
        self._assignor = LeaderTrackingAssignor()
        self._consumer = make_consumer(
            s.kafka, **({"partition_assignment_strategy": (self._assignor,)} | consumer_overrides)
        )
        self._producer = make_producer(s.kafka)
        dead_letters: Any = DeadLetterPublisher(
            self._producer, s.kafka.dead_letter_topic, self.events
        )
        if self.replay_run_id is not None:
            dead_letters = AlreadyDeadLettered()
        self.handler = MessageHandler(
            guards=self.guards,
            max_request_bytes={n: u.max_request_bytes for n, u in s.upstreams.items()},
            max_message_bytes=s.pipeline.max_message_bytes,
            writer=self.writer,
            dead_letters=dead_letters,
            events=self.events,
            instance_id=s.instance_id,
            gate=self.gate,
            replay_run_id=self.replay_run_id,
        )
        self.scheduler: KeyedScheduler[Work] = KeyedScheduler(
            self.handler, workers=s.pipeline.max_in_flight
        )
        self.fetcher = Fetcher(
            self._consumer,
            writer=self.writer,
            flow=FlowControl(s.pipeline.queue_depth),
            dispatch=self.scheduler.dispatch,
            in_progress=lambda: self.scheduler.outstanding,
            wait_below=self.scheduler.wait_below,
            max_in_progress=2 * s.pipeline.max_in_flight,
            events=self.events,
            clock=self.clock,
            max_poll_records=s.kafka.max_poll_records,
            rate_per_s=s.pipeline.ingest_rate_per_s,
            start_paused=s.pipeline.start_paused,
            ledger_available=self._ledger_available,
        )
        self.committer = OffsetCommitter(
            self._consumer,
            self.writer,
            self.events,
            interval_s=s.pipeline.commit_interval_s,
            revoke_flush_timeout_s=s.pipeline.drain_timeout_s,
            auto_offset_reset=s.kafka.auto_offset_reset,
            on_assigned=self.fetcher.on_assigned,
        )
        self.consumer_connected = False

    # -- lifecycle ---------------------------------------------------------------------------

    def _ledger_available(self) -> bool:
        return self.gate is None or self.gate.available

    async def start_stages(self, detail: dict[str, Any] | None = None) -> None:
        """Everything but Kafka: ledger, HTTP clients, workers, audit writer and drainer.
        ``netscope replay`` feeds these from its own reader (replay/runner.py). ``detail``
        goes into the audited start event (a replay's window)."""
        if self.gate is not None:
            await self.gate.open()
        for guard in self.guards.values():
            await guard.client.start()
        if not self.spool_report.clean:
            # Torn tails are truncated and corrupt segments quarantined, never dropped silently.
            log.warning("audit spool recovered with findings: %s", self.spool_report)
        if self.spool_report.pending_entries:
            log.warning(
                "audit spool holds %d batches from a previous run: draining them",
                self.spool_report.pending_entries,
            )
            self.drainer.wake()
        self.scheduler.start()
        self._background = [
            asyncio.create_task(self.writer.run(), name="audit-sealer"),
            asyncio.create_task(self.drainer.run(), name="spool-drainer"),
            asyncio.create_task(self._sample_loop(), name="sampler"),
        ]
        if self.gate is not None:
            self._background.append(asyncio.create_task(self.gate.watch(), name="ledger"))
        self.events.publish(
            InstanceStarted(
                config_digest(self.settings), __version__, self.replay_run_id, detail or {}
            )
        )

    async def stop_stages(
        self, drain_timeout_s: float, detail: dict[str, Any] | None = None
    ) -> tuple[int, int, int]:
        """The replay's stop: drain the workers, flush the audit, close. Returns (abandoned,
        audit_pending, batches still in the spool)."""
        abandoned = await self.scheduler.wait_idle(drain_timeout_s)
        await self.scheduler.stop()
        await bounded_step("ledger settles", self.handler.settled(), CLOSE_STEP_TIMEOUT_S)
        self._audit_stopping(abandoned, detail)
        if not await bounded_step(
            "audit flush", self.writer.flush(), self.settings.pipeline.flush_timeout_s
        ):
            await self.writer.close()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await bounded_step("last spool drain", self.drainer.drain_once(), CLOSE_STEP_TIMEOUT_S)
        audit_pending = self.writer.pending_records
        spooled = (await asyncio.to_thread(self.spool.stats)).pending_entries
        await self._close_clients()
        return abandoned, audit_pending, spooled

    def _audit_stopping(self, abandoned: int, detail: dict[str, Any] | None = None) -> None:
        """The stop, as the last control event: before the final flush, so it is durable."""
        data = {"abandoned_in_flight": abandoned, **(detail or {})}
        self.events.publish(InstanceStopping(self.handler.processed, self.replay_run_id, data))

    async def _close_clients(self) -> None:
        for name, guard in self.guards.items():
            await bounded_step(f"{name} client close", guard.client.close(), CLOSE_STEP_TIMEOUT_S)
        if self.gate is not None:
            await bounded_step("ledger close", self.gate.ledger.close(), CLOSE_STEP_TIMEOUT_S)
        self.spool.close()

    async def start(self) -> None:
        await self.start_stages()
        await self._producer.start()
        await self._consumer.start()
        leave_only_when_safe(self._consumer, self._assignor)
        rejoin_keeping_member_id(self._consumer)
        self._consumer.subscribe(
            [self.settings.kafka.requests_topic], listener=self.committer.listener()
        )
        self.consumer_connected = True
        self._background += [
            asyncio.create_task(self.committer.run(), name="committer"),
            asyncio.create_task(self.committer.lag_loop(), name="lag"),
        ]

    async def run(self) -> None:
        """Fetch until :meth:`request_stop`."""
        await self.fetcher.run()

    def request_stop(self) -> None:
        self.fetcher.stop()

    async def stop(self, drain_timeout_s: float | None = None) -> StopSummary:
        """Runbook section 4: stop fetching, drain, flush the audit, commit, close.

        Every step is bounded, whatever the state of Kafka or the store: a stop takes at most
        drain_timeout_s + flush_timeout_s + 9 closing steps x (CLOSE_STEP_TIMEOUT_S +
        CANCEL_GRACE_S), and the steps of the upstream clients. What is not durable by
        then is not committed, so Kafka redelivers it to the next owner.
        """
        cfg = self.settings.pipeline
        self.fetcher.stop()
        abandoned = await self.scheduler.wait_idle(drain_timeout_s or cfg.drain_timeout_s)
        await bounded_step("workers stop", self.scheduler.stop(), CLOSE_STEP_TIMEOUT_S)
        await bounded_step("ledger settles", self.handler.settled(), CLOSE_STEP_TIMEOUT_S)
        self._audit_stopping(abandoned)
        if not await bounded_step("audit flush", self.writer.flush(), cfg.flush_timeout_s):
            # What is not durable now is redelivered, not retried.
            await bounded_step("audit writers close", self.writer.close(), CLOSE_STEP_TIMEOUT_S)
        await bounded_step("final commit", self.committer.commit(), CLOSE_STEP_TIMEOUT_S)
        for task in self._background:
            task.cancel()
        await bounded_step(
            "background tasks end",
            asyncio.gather(*self._background, return_exceptions=True),
            CLOSE_STEP_TIMEOUT_S,
        )
        # One last pass so what was spooled during the stop goes out if the store is back.
        await bounded_step("last spool drain", self.drainer.drain_once(), CLOSE_STEP_TIMEOUT_S)
        audit_pending = self.writer.pending_records
        if lost := self.writer.pending_control_records:
            log.warning("%d control records (state changes, this stop) not durable: lost", lost)
        await bounded_step("consumer close", stop_consumer(self._consumer), CLOSE_STEP_TIMEOUT_S)
        self.consumer_connected = False
        await bounded_step("producer close", self._producer.stop(), CLOSE_STEP_TIMEOUT_S)
        await self._close_clients()
        committed = self.committer.committed
        return StopSummary(
            processed=self.handler.processed,
            abandoned=abandoned,
            audit_pending=audit_pending,
            committed={f"{tp.topic}/{tp.partition}": o for tp, o in committed.items()},
            clean=abandoned == 0 and audit_pending == 0,
        )

    # -- operator controls and read model ----------------------------------------------------

    @property
    def processed(self) -> int:
        return self.handler.processed

    @property
    def paused_reason(self) -> str | None:
        return self.fetcher.paused_reason

    def set_ingest_rate(self, rate_per_s: float | None, actor: str = "operator") -> None:
        """Runbook INC-01 step 4: lower (or lift, with None) the ingest rate at runtime."""
        self.fetcher.set_rate(rate_per_s, actor)

    def status(self) -> PipelineStatus:
        """A snapshot for readers; cheap, and never touches the disk."""
        s, spool = self.settings, self._spool_status
        return PipelineStatus(
            instance_id=s.instance_id,
            queue_depth=self.writer.pending_records,
            queue_capacity=s.pipeline.queue_depth,
            in_flight=self.scheduler.outstanding,
            processed=self.handler.processed,
            paused_reason=self.fetcher.paused_reason,
            ingest_rate_per_s=self.fetcher.rate_per_s,
            audit_degraded=self.writer.degraded,
            audit_store=self.store.description,
            # The sampled figures, with the writer's live "holding a refused batch" flag.
            spool=replace(spool, full=spool.full or self.writer.spool_full),
            kafka=self.committer.status(connected=self.consumer_connected),
            breakers={name: str(g.breaker.state) for name, g in self.guards.items()},
            ledger=self._ledger_status(),
        )

    def _ledger_status(self) -> LedgerStatus:
        gate = self.gate
        if gate is None:
            return LedgerStatus("none", True)
        return LedgerStatus(gate.ledger.description, gate.available, gate.detail)

    async def _sample_loop(self) -> None:
        """State that is not an event (spool on disk, time-based breaker moves), each second."""
        while True:
            stats = await asyncio.to_thread(self.spool.stats)  # a lock and a statvfs: off-loop
            self._spool_status = spool_status(stats, self.writer.spool_full)
            for guard in self.guards.values():
                guard.breaker.poll()
            self.events.publish(StatusSampled(self.status()))
            await asyncio.sleep(SAMPLE_INTERVAL_S)


class AlreadyDeadLettered:
    """A replay does not dead-letter again: the live run did (the record still says invalid)."""

    async def publish(self, record: Any, invalid: Any) -> None:
        return None
