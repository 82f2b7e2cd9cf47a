"""Prometheus metrics: a listener of the event bus plus gauges sampled from live state.

Each NetScope instance owns its registry (several pipelines can share one test process).
Names follow Prometheus conventions (``netscope_`` prefix, ``_total`` counters, base units in
the name); docs/metrics.md maps the runbook's names onto them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from netscope.contract.records import Outcome
from netscope.observability.events import (
    AuditBatchDurable,
    AuditWriteFailed,
    BackpressureChanged,
    BreakerTransitioned,
    CallCompleted,
    DegradedModeChanged,
    MessageDeadLettered,
    RetryDenied,
    RetryScheduled,
)

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
BREAKER_STATES = ("closed", "open", "half_open", "forced_open", "forced_closed")
# Attempt error class -> the `kind` label of netscope_timeouts_total.
_TIMEOUT_KIND = {
    "timeout_connect": "connect",
    "timeout_read": "read",
    "deadline_exceeded": "deadline",
}


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
            "Terminal outcomes other than success, by upstream and error class.",
            ["upstream", "error_class"],
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
            "Consume-to-outcome latency of a message, retries included, by upstream.",
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
        self.circuit_transitions = Counter(
            "netscope_circuit_transitions_total",
            "Circuit breaker transitions.",
            ["upstream", "from_state", "to_state"],
            registry=r,
        )
        self.audit_writes = Counter(
            "netscope_audit_writes_total",
            "Audit batches made durable, by where (store, already_present, spool).",
            ["where"],
            registry=r,
        )
        self.audit_records = Counter(
            "netscope_audit_records_total", "Audit records made durable.", registry=r
        )
        self.audit_write_errors = Counter(
            "netscope_audit_write_errors_total",
            "Failed audit object writes, by error class.",
            ["reason"],
            registry=r,
        )
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
        # Sampled gauges, set by the pipeline's sampler.
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
            "High watermark minus committed offset, per assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.ingest_rate_limit = Gauge(
            "netscope_ingest_rate_limit_per_second",
            "Current ingest throttle (+Inf = unlimited, 0 = paused).",
            registry=r,
        )
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
        self.started = Gauge(
            "netscope_start_time_seconds", "Unix time the process started.", registry=r
        )
        self.started.set(time.time())
        self._per_call: dict[tuple[str, Outcome], tuple[Any, Any]] = {}

    def sample_spool(self, stats: Any, refusing: bool) -> None:
        self.spool_bytes.set(stats.bytes)
        self.spool_segments.set(stats.segments)
        self.spool_pending.set(stats.pending_entries)
        self.spool_oldest_age.set(stats.oldest_pending_age_s or 0.0)
        self.spool_free_disk.set(stats.free_disk_bytes)
        self.spool_full.set(1 if (stats.full or refusing) else 0)
        self.spool_quarantined.set(stats.quarantined_segments)

    def init_upstream(
        self, name: str, state: str = "closed", in_flight: Callable[[], float] | None = None
    ) -> None:
        """Export every series of an upstream at zero, so rate() and alerts work from start.

        ``in_flight`` is read at scrape time: a plain counter on the hot path instead of a
        locked gauge update twice per call.
        """
        for outcome in Outcome:
            self.requests.labels(name, outcome.value)
        for kind in _TIMEOUT_KIND.values():
            self.timeouts.labels(name, kind)
        self.retries.labels(name)
        if in_flight is not None:
            self.in_flight.labels(name).set_function(in_flight)
        else:
            self.in_flight.labels(name).set(0)
        self.set_circuit_state(name, state)

    def set_circuit_state(self, upstream: str, state: str) -> None:
        for s in BREAKER_STATES:
            self.circuit_state.labels(upstream, s).set(1 if s == state else 0)

    def on_event(self, event: Any) -> None:
        handler: Callable[[Any], None] | None = self._handlers.get(type(event))
        if handler is not None:
            handler(self, event)

    def _call_completed(self, ev: CallCompleted) -> None:
        rec = ev.record
        upstream = rec.upstream or "(invalid)"  # invalid messages name no usable upstream
        children = self._per_call.get((upstream, rec.outcome))
        if children is None:
            # labels() takes a lock and builds a key: resolve the children once per pair.
            children = self._per_call[(upstream, rec.outcome)] = (
                self.requests.labels(upstream, rec.outcome.value),
                self.latency.labels(upstream),
            )
        requests, latency = children
        requests.inc()
        if rec.outcome is not Outcome.SUCCESS:
            self.errors.labels(upstream, rec.error_class or rec.outcome.value).inc()
        for attempt in rec.attempts:
            kind = _TIMEOUT_KIND.get(attempt.error_class or "")
            if kind:
                self.timeouts.labels(upstream, kind).inc()
        # A deadline that ran out between attempts (or while queued) has no attempt of its own.
        if rec.outcome is Outcome.DEADLINE_EXCEEDED and not any(
            a.error_class == "deadline_exceeded" for a in rec.attempts
        ):
            self.timeouts.labels(upstream, "deadline").inc()
        if rec.outcome is not Outcome.INVALID:
            latency.observe(rec.latency_s)
            self.overhead.observe(max(0.0, rec.latency_s - rec.queued_s - ev.upstream_time_s))

    def _retry(self, ev: RetryScheduled) -> None:
        self.retries.labels(ev.upstream).inc()

    def _retry_denied(self, ev: RetryDenied) -> None:
        reason = "budget" if "budget" in ev.reason else "deadline"
        self.retries_denied.labels(ev.upstream, reason).inc()

    def _breaker(self, ev: BreakerTransitioned) -> None:
        self.circuit_transitions.labels(ev.upstream, ev.from_state, ev.to_state).inc()
        self.set_circuit_state(ev.upstream, ev.to_state)

    def _durable(self, ev: AuditBatchDurable) -> None:
        self.audit_writes.labels(ev.where).inc()
        self.audit_records.inc(ev.records)
        self.audit_write_latency.observe(ev.write_s)
        self.audit_durable_latency.observe(max(0.0, ev.created - ev.oldest_received_at))

    def _write_failed(self, ev: AuditWriteFailed) -> None:
        self.audit_write_errors.labels(ev.reason).inc()

    def _degraded(self, ev: DegradedModeChanged) -> None:
        self.degraded.set(1 if ev.degraded else 0)

    def _backpressure(self, ev: BackpressureChanged) -> None:
        self.paused.labels(ev.reason).set(1 if ev.paused else 0)

    def _dead_letter(self, ev: MessageDeadLettered) -> None:
        self.dead_letters.labels(ev.field.split(".")[0].split("[")[0]).inc()

    _handlers: dict[type, Callable[[Metrics, Any], None]] = {
        CallCompleted: _call_completed,
        RetryScheduled: _retry,
        RetryDenied: _retry_denied,
        BreakerTransitioned: _breaker,
        AuditBatchDurable: _durable,
        AuditWriteFailed: _write_failed,
        DegradedModeChanged: _degraded,
        BackpressureChanged: _backpressure,
        MessageDeadLettered: _dead_letter,
    }
