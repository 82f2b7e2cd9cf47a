"""Prometheus metrics: a listener of the event bus plus gauges sampled from live state.

Each NetScope instance owns its registry (several pipelines can share one test process).
Names follow Prometheus conventions (``netscope_`` prefix, ``_total`` counters, base units in
the name); docs/metrics.md maps the runbook's names onto them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from netscope.contract.outcomes import (
    ERROR_OUTCOMES,
    NO_UPSTREAM_LATENCY_OUTCOMES,
    TIMEOUT_KIND,
    ErrorClass,
    ErrorOrigin,
    Outcome,
    error_origin,
    status_class,
)
from netscope.ledger.model import ClaimResult
from netscope.observability.events import (
    AttemptFinished,
    AuditBatchDurable,
    AuditTarget,
    AuditWriteFailed,
    BackpressureChanged,
    BreakerTransitioned,
    CallCompleted,
    CommitFailed,
    DegradedModeChanged,
    IngestRateChanged,
    LeaseExpired,
    LedgerAvailabilityChanged,
    LedgerOp,
    LedgerRoundTrip,
    MessageDeadLettered,
    MessageSkipped,
    OffsetsCommitted,
    PartitionsAssigned,
    PartitionsRevoked,
    PauseReason,
    RetryDenied,
    RetryScheduled,
    SpoolBatchUploaded,
    StatusSampled,
    WriteResult,
)
from netscope.resilience.breaker import BreakerState
from netscope.resilience.retry import RetryReason

LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
DURABLE_BUCKETS_S = (
    0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
)
OVERHEAD_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
# The netscope_audit_writes_total series that can occur (a spool append is always new).
_AUDIT_WRITE_SERIES = (
    (AuditTarget.STORE, WriteResult.CREATED),
    (AuditTarget.STORE, WriteResult.ALREADY_PRESENT),
    (AuditTarget.SPOOL, WriteResult.CREATED),
)
BREAKER_STATES = tuple(s.value for s in BreakerState)  # spelled once, by the breaker
OPEN_STATES = frozenset({BreakerState.OPEN.value, BreakerState.FORCED_OPEN.value})
"""The circuit rejects every call in both: whatever asks "is it open" must count forced_open."""
INVALID_UPSTREAM = "(invalid)"  # invalid messages name no usable upstream
_NO_UPSTREAM_LATENCY = NO_UPSTREAM_LATENCY_OUTCOMES
# The error class of a terminal outcome whose record names none (a final HTTP status).
_ERROR_CLASS_NAMES = frozenset(c.value for c in ErrorClass)
_OUTCOME_CLASS: dict[Outcome, ErrorClass] = {
    **{o: ErrorClass(o.value) for o in ERROR_OUTCOMES if o.value in _ERROR_CLASS_NAMES},
    Outcome.REJECTED_CIRCUIT_OPEN: ErrorClass.CIRCUIT_OPEN,
    Outcome.REJECTED_RATE_LIMITED: ErrorClass.RATE_LIMITED,
}
# Series the runbook alerts read, exported at 0 per upstream so they never say "no data".
_UPSTREAM_ERROR_CLASSES = tuple(
    c for c in ErrorClass if error_origin(c) is ErrorOrigin.UPSTREAM
)
_ANSWER_CLASSES = ("2xx", "3xx", "4xx", "5xx")
_ALERTED_DENIALS = (RetryReason.BUDGET, RetryReason.DEADLINE)


# requests child, errors child (None: not an error), latency child (None: not observed),
# whether the overhead histogram observes it.
_CallChildren = tuple[Any, Any | None, Any | None, bool]


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "netscope_requests_total",
            "Messages that reached a terminal outcome, by upstream and outcome.",
            ["upstream", "outcome"],
            registry=r,
        )
        self.errors = Counter(
            "netscope_errors_total",
            "Terminal error outcomes, by upstream, error class and origin (upstream, local, "
            "input): the runbook's error ratio counts origin=upstream.",
            ["upstream", "error_class", "origin"],
            registry=r,
        )
        self.upstream_responses = Counter(
            "netscope_upstream_responses_total",
            "Attempts the upstream answered, by HTTP status class (retried answers included).",
            ["upstream", "status_class"],
            registry=r,
        )
        self.timeouts = Counter(
            "netscope_timeouts_total",
            "Attempts that timed out, by upstream and kind (connect, read, deadline).",
            ["upstream", "kind"],
            registry=r,
        )
        self.retries = Counter(
            "netscope_retries_total", "Retries scheduled, by upstream.", ["upstream"], registry=r
        )
        self.retries_denied = Counter(
            "netscope_retries_denied_total",
            "Retries refused by the budget or the deadline.",
            ["upstream", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "netscope_request_duration_seconds",
            "Consume-to-outcome latency of a message, retries included, by upstream; "
            "rejections, invalid and skipped messages are not observed.",
            ["upstream"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.overhead = Histogram(
            "netscope_call_overhead_seconds",
            "NetScope's own time per message: latency minus time inside upstream attempts.",
            buckets=OVERHEAD_BUCKETS_S,
            registry=r,
        )
        self.circuit_state = Gauge(
            "netscope_circuit_state",
            "Circuit breaker state per upstream: 1 for the current state, 0 otherwise.",
            ["upstream", "state"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "netscope_circuit_open",
            "1 while the circuit rejects every call (state open or forced_open), else 0.",
            ["upstream"],
            registry=r,
        )
        self.circuit_transitions = Counter(
            "netscope_circuit_transitions_total",
            "Circuit breaker transitions.",
            ["upstream", "from_state", "to_state"],
            registry=r,
        )
        self.audit_writes = Counter(
            "netscope_audit_writes_total",
            "Audit batches written, by target (store, spool) and result (created, "
            "already_present); the drainer's uploads of spooled batches count as store.",
            ["target", "result"],
            registry=r,
        )
        self.audit_records = Counter(
            "netscope_audit_records_total", "Audit records made durable.", registry=r
        )
        self.audit_write_errors = Counter(
            "netscope_audit_write_errors_total",
            "Failed audit writes (the drainer's included), by target and error class.",
            ["target", "reason"],
            registry=r,
        )
        # "RGW is being written" and its alerts need these series before the first write.
        for target, result in _AUDIT_WRITE_SERIES:
            self.audit_writes.labels(target.value, result.value)
        self.audit_write_errors.labels(AuditTarget.STORE.value, "StoreTimeout")
        self.audit_write_latency = Histogram(
            "netscope_audit_write_duration_seconds",
            "Time to make one audit batch durable.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.audit_durable_latency = Histogram(
            "netscope_audit_durable_latency_seconds",
            "Consume-to-audit-durable latency (oldest record of each batch).",
            buckets=DURABLE_BUCKETS_S,
            registry=r,
        )
        self.degraded = Gauge(
            "netscope_audit_degraded",
            "1 while the audit store fails and batches go to the local spool.",
            registry=r,
        )
        self.dead_letters = Counter(
            "netscope_dead_letters_total",
            "Invalid messages sent to the dead-letter topic, by first failing field.",
            ["field"],
            registry=r,
        )
        self.paused = Gauge(
            "netscope_ingest_paused",
            "1 while consumption is paused by backpressure, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in PauseReason:  # alerts on a pause need the series before the first one
            self.paused.labels(reason.value).set(0)
        # Sampled gauges, set from the pipeline's StatusSampled event (each second).
        self.queue_depth = Gauge(
            "netscope_queue_depth",
            "Messages consumed but not yet durably audited (the bounded internal queue).",
            registry=r,
        )
        self.queue_capacity = Gauge(
            "netscope_queue_capacity", "Configured queue_depth bound.", registry=r
        )
        self.in_flight = Gauge(
            "netscope_in_flight", "Upstream calls in progress.", ["upstream"], registry=r
        )
        self.consumer_lag = Gauge(
            "netscope_consumer_lag",
            "Broker end offset minus committed offset, per assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.ingest_rate_limit = Gauge(
            "netscope_ingest_rate_limit_per_second",
            "Current ingest throttle (+Inf = unlimited, 0 = paused).",
            registry=r,
        )
        self.ingest_rate_limit.set(float("inf"))  # unlimited until an IngestRateChanged
        self.commits = Counter(
            "netscope_kafka_commits_total", "Offset commits that succeeded.", registry=r
        )
        self.revoked_skipped = Counter(
            "netscope_revoked_skipped_total",
            "Queued messages left uncalled because their partition was revoked "
            "(the new owner processes them).",
            registry=r,
        )
        self.commit_errors = Counter(
            "netscope_kafka_commit_errors_total", "Offset commits that failed.", registry=r
        )
        self.assigned = Gauge(
            "netscope_assigned_partitions", "Partitions assigned to this process.", registry=r
        )
        self.spool_bytes = Gauge(
            "netscope_audit_spool_bytes", "Bytes in the local audit spool.", registry=r
        )
        self.spool_segments = Gauge(
            "netscope_audit_spool_segments", "Segment files in the local audit spool.", registry=r
        )
        self.spool_pending = Gauge(
            "netscope_audit_spool_pending_batches",
            "Audit batches in the spool waiting for upload.",
            registry=r,
        )
        self.spool_oldest_age = Gauge(
            "netscope_audit_backlog_oldest_age_seconds",
            "Age of the oldest spooled batch not yet uploaded (0 when empty).",
            registry=r,
        )
        self.spool_free_disk = Gauge(
            "netscope_audit_spool_free_disk_bytes",
            "Free bytes on the spool's volume.",
            registry=r,
        )
        self.spool_full = Gauge(
            "netscope_audit_spool_full",
            "1 while the spool refuses appends (capacity or free-disk floor).",
            registry=r,
        )
        self.spool_quarantined = Gauge(
            "netscope_audit_spool_quarantined_segments",
            "Corrupt spool segments moved to quarantine (need an operator).",
            registry=r,
        )
        self.spool_drained = Counter(
            "netscope_audit_spool_drained_total",
            "Spooled batches uploaded to the store (rate() = drain rate).",
            registry=r,
        )
        self._init_ledger(r)
        self.started = Gauge(
            "netscope_start_time_seconds", "Unix time the process started.", registry=r
        )
        self.started.set(time.time())
        # Read at scrape time, like node_exporter's node_time_seconds: Prometheus compares it
        # with its own clock (timestamp(x) - x), the runbook's NTP prerequisite as an alert.
        self.clock = Gauge(
            "netscope_time_seconds",
            "This process's wall clock when /metrics was rendered, Unix time.",
            registry=r,
        )
        self.clock.set_function(time.time)
        # Read at scrape time too: the soak (bench/soak.py) plots it for a growth trend.
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        self.tasks = Gauge(
            "netscope_asyncio_tasks",
            "asyncio tasks not yet done on the service's event loop when /metrics was rendered.",
            registry=r,
        )
        self.tasks.set_function(self._count_tasks)
        self._lag_labels: set[tuple[str, str]] = set()
        # labels() takes a lock and builds a key: on the per-call and per-attempt paths the
        # children are resolved once per label combination and kept here.
        self._per_call: dict[tuple[str, Outcome, ErrorClass | None], _CallChildren] = {}
        self._per_timeout: dict[tuple[str, str], Any] = {}
        self._per_answer: dict[tuple[str, int], Any] = {}

    def _count_tasks(self) -> float:
        """Tasks of the loop these metrics were built on (else of the loop rendering them)."""
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        loop = self._loop or here
        if loop is None or loop.is_closed():
            return float("nan")
        # all_tasks() retries its copy of the task set while another thread changes it, so a
        # render off the loop's thread (a scrape thread) reads it safely too.
        return float(len(asyncio.all_tasks(loop)))

    def _init_ledger(self, r: CollectorRegistry) -> None:
        self.ledger_claims = Counter(
            "netscope_ledger_claims_total",
            "Idempotency keys claimed before a call, by result (claimed, completed = "
            "already done, in_progress = held by another claim, taken_over = lease expired, "
            "released_here = refused before for this very message: audited from the ledger).",
            ["result"],
            registry=r,
        )
        for result in ClaimResult:
            self.ledger_claims.labels(result.value)
        self.ledger_settles = Counter(
            "netscope_ledger_settles_total",
            "Claims settled after the call: completed, released (the outcome does not count "
            "as done), lease_lost (another claim took the key meanwhile).",
            ["result"],
            registry=r,
        )
        for result in ("completed", "released", "lease_lost"):
            self.ledger_settles.labels(result)
        self.ledger_round_trip = Histogram(
            "netscope_ledger_round_trip_seconds",
            "One batched round trip to the idempotency ledger, by operation.",
            ["op"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.ledger_errors = Counter(
            "netscope_ledger_errors_total",
            "Ledger round trips that failed (unreachable, timed out), by operation.",
            ["op"],
            registry=r,
        )
        for op in LedgerOp:
            self.ledger_round_trip.labels(op.value)
            self.ledger_errors.labels(op.value)
        self.ledger_lease_expiries = Counter(
            "netscope_ledger_lease_expiries_total",
            "Keys called again because an earlier claim's lease ran out (a crash mid-call): "
            "the upstream may have seen them twice (same Idempotency-Key).",
            ["upstream"],
            registry=r,
        )
        self.ledger_up = Gauge(
            "netscope_ledger_up",
            "1 while the idempotency ledger answers (ingest pauses at 0).",
            registry=r,
        )
        self.ledger_up.set(1)

    def init_upstream(
        self, name: str, state: str = "closed", in_flight: Callable[[], float] | None = None
    ) -> None:
        """Export every series of an upstream at zero, so rate() and alerts work from start.

        ``in_flight`` is read at scrape time: a plain counter on the hot path instead of a
        locked gauge update twice per call.
        """
        for outcome in Outcome:
            self.requests.labels(name, outcome.value)
        for error_class in _UPSTREAM_ERROR_CLASSES:
            self.errors.labels(name, error_class.value, ErrorOrigin.UPSTREAM.value)
        for answer in _ANSWER_CLASSES:
            self.upstream_responses.labels(name, answer)
        for kind in TIMEOUT_KIND.values():
            self.timeouts.labels(name, kind.value)
        self.retries.labels(name)
        self.ledger_lease_expiries.labels(name)
        for reason in _ALERTED_DENIALS:
            self.retries_denied.labels(name, reason.value)
        self.latency.labels(name)
        if in_flight is not None:
            self.in_flight.labels(name).set_function(in_flight)
        else:
            self.in_flight.labels(name).set(0)
        self.set_circuit_state(name, state)

    def set_circuit_state(self, upstream: str, state: str) -> None:
        for s in BREAKER_STATES:
            self.circuit_state.labels(upstream, s).set(1 if s == state else 0)
        self.circuit_open.labels(upstream).set(1 if state in OPEN_STATES else 0)

    def on_event(self, event: Any) -> None:
        handler: Callable[[Any], None] | None = self._handlers.get(type(event))
        if handler is not None:
            handler(self, event)

    def _call_children(
        self, upstream: str, outcome: Outcome, error_class: ErrorClass | None
    ) -> _CallChildren:
        errors = None
        if outcome in ERROR_OUTCOMES:
            cls = error_class or _OUTCOME_CLASS.get(outcome, ErrorClass.INTERNAL_ERROR)
            errors = self.errors.labels(upstream, cls.value, error_origin(cls).value)
        latency = None if outcome in _NO_UPSTREAM_LATENCY else self.latency.labels(upstream)
        return (
            self.requests.labels(upstream, outcome.value),
            errors,
            latency,
            outcome is not Outcome.INVALID,
        )

    def _call_completed(self, ev: CallCompleted) -> None:
        rec = ev.record
        upstream = rec.upstream or INVALID_UPSTREAM
        key = (upstream, rec.outcome, rec.error_class)
        children = self._per_call.get(key)
        if children is None:
            children = self._per_call[key] = self._call_children(*key)
        requests, errors, latency, overhead = children
        requests.inc()
        if errors is not None:
            errors.inc()
        for attempt in rec.attempts:
            kind = TIMEOUT_KIND.get(attempt.error_class)
            if kind is not None:
                self._timeout(upstream, kind.value)
        # A deadline that ran out between attempts (or while queued) has no attempt of its own.
        if rec.outcome is Outcome.DEADLINE_EXCEEDED and not any(
            a.error_class is ErrorClass.DEADLINE_EXCEEDED for a in rec.attempts
        ):
            self._timeout(upstream, "deadline")
        if latency is not None and not rec.outcome_from_ledger:  # not timed here
            latency.observe(rec.latency_s)
        if overhead:  # a rejection is NetScope's own time, all of it: it counts here
            self.overhead.observe(max(0.0, rec.latency_s - rec.queued_s - ev.upstream_time_s))

    def _timeout(self, upstream: str, kind: str) -> None:
        child = self._per_timeout.get((upstream, kind))
        if child is None:
            child = self._per_timeout[(upstream, kind)] = self.timeouts.labels(upstream, kind)
        child.inc()

    def _attempt_finished(self, ev: AttemptFinished) -> None:
        if ev.status is None:
            return  # no answer: the error class says why (timeouts_total, errors_total)
        key = (ev.upstream, ev.status)
        child = self._per_answer.get(key)
        if child is None:
            child = self._per_answer[key] = self.upstream_responses.labels(
                ev.upstream, status_class(ev.status)
            )
        child.inc()

    def _retry(self, ev: RetryScheduled) -> None:
        self.retries.labels(ev.upstream).inc()

    def _retry_denied(self, ev: RetryDenied) -> None:
        self.retries_denied.labels(ev.upstream, ev.reason.value).inc()

    def _breaker(self, ev: BreakerTransitioned) -> None:
        self.circuit_transitions.labels(ev.upstream, ev.from_state, ev.to_state).inc()
        self.set_circuit_state(ev.upstream, ev.to_state)

    def _durable(self, ev: AuditBatchDurable) -> None:
        self.audit_writes.labels(ev.target.value, ev.result.value).inc()
        self.audit_records.inc(ev.records)
        self.audit_write_latency.observe(ev.write_s)
        self.audit_durable_latency.observe(max(0.0, ev.created - ev.oldest_received_at))

    def _spool_uploaded(self, ev: SpoolBatchUploaded) -> None:
        # RGW is being written: the store series counts it. Its records were counted (and
        # their latency observed) when the spool made them durable.
        self.audit_writes.labels(AuditTarget.STORE.value, ev.result.value).inc()
        self.spool_drained.inc()

    def _write_failed(self, ev: AuditWriteFailed) -> None:
        self.audit_write_errors.labels(ev.target.value, ev.reason).inc()

    def _degraded(self, ev: DegradedModeChanged) -> None:
        self.degraded.set(1 if ev.degraded else 0)

    def _backpressure(self, ev: BackpressureChanged) -> None:
        self.paused.labels(ev.reason).set(1 if ev.paused else 0)

    def _sampled(self, ev: StatusSampled) -> None:
        st = ev.status
        self.queue_depth.set(st.queue_depth)
        self.queue_capacity.set(st.queue_capacity)
        spool = st.spool
        self.spool_bytes.set(spool.bytes)
        self.spool_segments.set(spool.segments)
        self.spool_pending.set(spool.pending_entries)
        self.spool_oldest_age.set(spool.oldest_pending_age_s or 0.0)
        self.spool_free_disk.set(spool.free_disk_bytes)
        self.spool_full.set(1 if spool.full else 0)
        self.spool_quarantined.set(spool.quarantined_segments)
        self.assigned.set(len(st.kafka.assigned))
        lag = {(t, str(p)): v for (t, p), v in st.kafka.lag.items()}
        for key, value in lag.items():
            self.consumer_lag.labels(*key).set(value)
        for key in self._lag_labels - lag.keys():  # partitions that left this process
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(*key)
        self._lag_labels = set(lag)

    def _skipped(self, ev: MessageSkipped) -> None:
        self.revoked_skipped.inc()

    def _committed(self, ev: OffsetsCommitted) -> None:
        self.commits.inc()

    def _commit_failed(self, ev: CommitFailed) -> None:
        self.commit_errors.inc()

    def _partitions(self, ev: PartitionsAssigned | PartitionsRevoked) -> None:
        self.assigned.set(ev.total)

    def _rate(self, ev: IngestRateChanged) -> None:
        self.ingest_rate_limit.set(ev.rate_per_s)

    def _dead_letter(self, ev: MessageDeadLettered) -> None:
        self.dead_letters.labels(ev.field.split(".")[0].split("[")[0]).inc()

    def _ledger_round_trip(self, ev: LedgerRoundTrip) -> None:
        if ev.error is not None:
            self.ledger_errors.labels(ev.op.value).inc()
            return
        self.ledger_round_trip.labels(ev.op.value).observe(ev.duration_s)
        counter = self.ledger_claims if ev.op is LedgerOp.CLAIM else self.ledger_settles
        for result, n in ev.results:
            counter.labels(result).inc(n)

    def _lease_expired(self, ev: LeaseExpired) -> None:
        self.ledger_lease_expiries.labels(ev.upstream).inc()

    def _ledger_availability(self, ev: LedgerAvailabilityChanged) -> None:
        self.ledger_up.set(1 if ev.available else 0)

    _handlers: dict[type, Callable[[Metrics, Any], None]] = {
        CallCompleted: _call_completed,
        AttemptFinished: _attempt_finished,
        RetryScheduled: _retry,
        RetryDenied: _retry_denied,
        BreakerTransitioned: _breaker,
        AuditBatchDurable: _durable,
        SpoolBatchUploaded: _spool_uploaded,
        AuditWriteFailed: _write_failed,
        DegradedModeChanged: _degraded,
        BackpressureChanged: _backpressure,
        MessageDeadLettered: _dead_letter,
        StatusSampled: _sampled,
        MessageSkipped: _skipped,
        OffsetsCommitted: _committed,
        CommitFailed: _commit_failed,
        PartitionsAssigned: _partitions,
        PartitionsRevoked: _partitions,
        IngestRateChanged: _rate,
        LedgerRoundTrip: _ledger_round_trip,
        LeaseExpired: _lease_expired,
        LedgerAvailabilityChanged: _ledger_availability,
    }
