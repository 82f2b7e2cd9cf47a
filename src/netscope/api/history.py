"""The dashboard's memory of the last hour: per-upstream and instance series, and bands.

Why on the server: a page opened at 3 a.m. must show what happened before it was opened, and
the embedded default has no Prometheus or Grafana to ask. Why a bus listener: like metrics.py
and the audit's control records, it only folds the typed events the pipeline already
publishes (observability/events.py), so no stage knows it exists and it is tested alone with
an injected clock.

Memory is fixed at start: every series is a :class:`~netscope.api.ring.SlotRing` of float32
(``step_s`` slots, ``horizon_s`` kept: 1,800 slots of 2 s, 7 KiB a series), created on first
use, with the number of upstreams and partitions capped. Per upstream: calls by outcome,
latency p50/p95/p99 (each slot's calls folded into a log histogram, 5 % buckets, the
report's sketch), timeouts by kind (counted per attempt, as ``netscope_timeouts_total``),
retries scheduled and denied; its breaker as a :class:`~netscope.api.bands.StateBand`. For
the instance: queue depth, in flight, consumer lag per partition and the spool backlog
(from the pipeline's one-second ``StatusSampled``), records made durable by target and the
degraded-mode band.

Time: counts go into the slot of the injected clock's time when the event arrives (the bus
is synchronous: that is when it happened, within microseconds); band changes carry the
event's own time, so they agree exactly with the ``breaker`` and ``degraded`` events the page
receives on the WebSocket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from netscope.api.bands import StateBand
from netscope.api.ring import SlotRing, Values
from netscope.contract.outcomes import (
    ERROR_OUTCOMES,
    NO_UPSTREAM_LATENCY_OUTCOMES,
    TIMEOUT_KIND,
    Outcome,
    TimeoutKind,
)
from netscope.forensics.sketch import LogHistogram
from netscope.observability.events import (
    AuditBatchDurable,
    AuditTarget,
    AuditWriteFailed,
    BreakerTransitioned,
    CallCompleted,
    DegradedModeChanged,
    RetryDenied,
    RetryScheduled,
    SpoolBatchUploaded,
    StatusSampled,
)

STEP_S = 2.0
HORIZON_S = 3600.0
MAX_UPSTREAMS = 64  # upstreams come from the config's allow-list; this only bounds a mistake
MAX_PARTITIONS = 256  # consumer-lag series kept; more partitions are left out of the chart
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
TIMEOUT_KINDS = tuple(kind.value for kind in TimeoutKind)
AUDIT_FLOWS = ("store", "spool", "drained", "failed")
NAN = math.nan
BREAKER_INITIAL = "closed"  # breakers start closed with the process
NORMAL, DEGRADED = "normal", "degraded"


class _Upstream:
    __slots__ = ("breaker", "hist", "hist_slot", "latency", "outcomes", "retries", "timeouts")

    def __init__(self, size: int, horizon_s: float) -> None:
        self.outcomes: dict[str, SlotRing] = {}  # created on first use: most never occur
        self.latency = {name: SlotRing(size, NAN) for name, _ in QUANTILES}  # seconds
        self.timeouts = {kind: SlotRing(size) for kind in TIMEOUT_KINDS}
        self.retries = {"scheduled": SlotRing(size), "denied": SlotRing(size)}
        self.breaker = StateBand(BREAKER_INITIAL, horizon_s=horizon_s)
        self.hist = LogHistogram()  # the latencies of slot ``hist_slot``, not yet finished
        self.hist_slot: int | None = None

    def rings(self) -> list[SlotRing]:
        return [*self.outcomes.values(), *self.latency.values(), *self.timeouts.values(),
                *self.retries.values()]  # fmt: skip


class _Instance:
    __slots__ = ("audit", "degraded", "gauges", "lag", "queue_capacity")

    def __init__(self, size: int, horizon_s: float) -> None:
        self.gauges = {
            name: SlotRing(size, NAN)
            for name in ("queue_depth", "in_flight", "spool_bytes", "spool_pending")
        }
        self.lag: dict[str, SlotRing] = {}
        self.audit = {flow: SlotRing(size) for flow in AUDIT_FLOWS}  # records (failed: writes)
        self.degraded = StateBand(NORMAL, horizon_s=horizon_s)
        self.queue_capacity: int | None = None

    def rings(self) -> list[SlotRing]:
        return [*self.gauges.values(), *self.lag.values(), *self.audit.values()]


def _counts(rings: dict[str, SlotRing], first: int, last: int) -> dict[str, Values]:
    return {name: ring.read(first, last) for name, ring in sorted(rings.items())}


class History:
    """Bus listener (:meth:`on_event`) and the read side (:meth:`snapshot`, :meth:`tail`)."""

    def __init__(
        self,
        *,
        step_s: float = STEP_S,
        horizon_s: float = HORIZON_S,
        clock: Callable[[], float] = time.time,
        max_upstreams: int = MAX_UPSTREAMS,
        max_partitions: int = MAX_PARTITIONS,
    ) -> None:
        if step_s <= 0 or horizon_s < step_s:
            raise ValueError("need 0 < step_s <= horizon_s")
        self.step_s = step_s
        self.horizon_s = horizon_s
        self.size = math.ceil(horizon_s / step_s)
        self._clock = clock
        self._max_upstreams = max_upstreams
        self._max_partitions = max_partitions
        self._upstreams: dict[str, _Upstream] = {}
        self._instance = _Instance(self.size, horizon_s)
        self._targets: dict[str, float] = {}

    # ----------------------------------------------------------------- configuration

    def set_targets(self, targets: dict[str, float | None]) -> None:
        """Per-upstream p95 latency targets (seconds) drawn on the latency chart."""
        self._targets = {name: t for name, t in targets.items() if t is not None}
        for name in targets:
            self._upstream(name)

    # ----------------------------------------------------------------- write side

    def on_event(self, event: Any) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def slot(self, t: float | None = None) -> int:
        """The absolute number of the slot holding time ``t`` (default: now)."""
        return math.floor((self._clock() if t is None else t) / self.step_s)

    def _upstream(self, name: str) -> _Upstream | None:
        up = self._upstreams.get(name)
        if up is None and len(self._upstreams) < self._max_upstreams:
            up = self._upstreams[name] = _Upstream(self.size, self.horizon_s)
        return up

    def _call(self, ev: CallCompleted) -> None:
        r = ev.record
        if r.upstream is None:
            return  # invalid messages name no upstream: the dead-letter count covers them
        up = self._upstreams.get(r.upstream) or self._upstream(r.upstream)
        if up is None:
            return
        slot = self.slot()
        outcome = r.outcome
        ring = up.outcomes.get(outcome)  # a StrEnum finds its str key: no .value per call
        if ring is None:
            ring = up.outcomes[outcome.value] = SlotRing(self.size)
        ring.add(slot)
        if outcome not in NO_UPSTREAM_LATENCY_OUTCOMES and not r.outcome_from_ledger:
            self._observe(up, slot, r.latency_s)
        deadline_attempt = False
        for attempt in r.attempts:
            if attempt.error_class is None:
                continue  # answered: most attempts
            kind = TIMEOUT_KIND.get(attempt.error_class)
            if kind is not None:
                up.timeouts[kind.value].add(slot)
                deadline_attempt |= kind is TimeoutKind.DEADLINE
        # A deadline that ran out between attempts (or queued) has no attempt of its own.
        if outcome is Outcome.DEADLINE_EXCEEDED and not deadline_attempt:
            up.timeouts[TimeoutKind.DEADLINE.value].add(slot)

    def _observe(self, up: _Upstream, slot: int, latency_s: float) -> None:
        if up.hist_slot is None:
            up.hist_slot = slot
        elif slot > up.hist_slot:
            self._finish(up)
            up.hist_slot = slot
        # A clock that stepped back puts the call in the open slot: never rewrite a past one.
        up.hist.add(latency_s)

    @staticmethod
    def _finish(up: _Upstream) -> None:
        if up.hist_slot is None or not up.hist.total:
            return
        values = up.hist.quantiles(q for _, q in QUANTILES)
        for (name, _), value in zip(QUANTILES, values, strict=True):
            up.latency[name].put(up.hist_slot, NAN if value is None else value)
        up.hist = LogHistogram()

    def _retry(self, ev: RetryScheduled) -> None:
        up = self._upstream(ev.upstream)
        if up is not None:
            up.retries["scheduled"].add(self.slot())

    def _retry_denied(self, ev: RetryDenied) -> None:
        up = self._upstream(ev.upstream)
        if up is not None:
            up.retries["denied"].add(self.slot())

    def _breaker(self, ev: BreakerTransitioned) -> None:
        up = self._upstream(ev.upstream)
        if up is not None:
            up.breaker.change(ev.created, ev.to_state, ev.reason, from_state=ev.from_state)

    def _durable(self, ev: AuditBatchDurable) -> None:
        flow = "store" if ev.target is AuditTarget.STORE else "spool"
        self._instance.audit[flow].add(self.slot(), ev.records)

    def _uploaded(self, ev: SpoolBatchUploaded) -> None:
        self._instance.audit["drained"].add(self.slot(), ev.records)

    def _write_failed(self, ev: AuditWriteFailed) -> None:
        self._instance.audit["failed"].add(self.slot())

    def _degraded(self, ev: DegradedModeChanged) -> None:
        state = DEGRADED if ev.degraded else NORMAL
        self._instance.degraded.change(ev.created, state, ev.reason)

    def _sampled(self, ev: StatusSampled) -> None:
        st, inst, slot = ev.status, self._instance, self.slot()
        inst.queue_capacity = st.queue_capacity
        inst.gauges["queue_depth"].put(slot, st.queue_depth)
        inst.gauges["in_flight"].put(slot, st.in_flight)
        inst.gauges["spool_bytes"].put(slot, st.spool.bytes)
        inst.gauges["spool_pending"].put(slot, st.spool.pending_entries)
        for (topic, partition), lag in st.kafka.lag.items():
            name = f"{topic}/{partition}"
            ring = inst.lag.get(name)
            if ring is None:
                if len(inst.lag) >= self._max_partitions:
                    continue
                ring = inst.lag[name] = SlotRing(self.size, NAN)
            ring.put(slot, lag)
        for name in st.breakers:
            self._upstream(name)

    # ----------------------------------------------------------------- read side

    def band(self, upstream: str) -> StateBand | None:
        """An upstream's breaker band (the drill-down asks it the state at each attempt)."""
        up = self._upstreams.get(upstream)
        return None if up is None else up.breaker

    @property
    def degraded_band(self) -> StateBand:
        return self._instance.degraded

    @property
    def upstreams(self) -> list[str]:
        return sorted(self._upstreams)

    def snapshot(self, window_s: float) -> dict[str, Any]:
        """The last ``window_s`` (clamped to one slot .. the horizon), with the bands: what
        a page draws when it opens or changes window."""
        n = max(1, min(self.size, math.ceil(window_s / self.step_s)))
        last = self.slot()
        return self._view(last - n + 1, last, bands=True)

    def tail(self, slots: int = 2) -> dict[str, Any]:
        """The newest ``slots`` slots: the one just finished (its percentiles are final now)
        and the current one. The page merges it every second; band changes reach it as their
        own events, and each tail repeats the current states so a page that lost one heals."""
        last = self.slot()
        return self._view(last - slots + 1, last, bands=False)

    def memory_bytes(self) -> int:
        """Bytes held by the series (bands and open histograms are a few hundred more)."""
        rings = self._instance.rings()
        for up in self._upstreams.values():
            rings += up.rings()
        return sum(ring.nbytes for ring in rings)

    def _view(self, first: int, last: int, *, bands: bool) -> dict[str, Any]:
        start = first * self.step_s
        now = self._clock()
        upstreams: dict[str, Any] = {}
        for name in sorted(self._upstreams):
            up = self._upstreams[name]
            up.breaker.prune(now)
            view: dict[str, Any] = {
                "outcomes": _counts(up.outcomes, first, last),
                "latency": self._latency(up, first, last),
                "timeouts": _counts(up.timeouts, first, last),
                "retries": _counts(up.retries, first, last),
                "target_p95_s": self._targets.get(name),
            }
            if bands:
                view["breaker"] = up.breaker.window(start)
            else:
                view["breaker_state"] = up.breaker.current
            upstreams[name] = view
        inst = self._instance
        inst.degraded.prune(now)
        instance: dict[str, Any] = {
            **{name: ring.read(first, last) for name, ring in inst.gauges.items()},
            "queue_capacity": inst.queue_capacity,
            "lag": _counts(inst.lag, first, last),
            "audit": _counts(inst.audit, first, last),
        }
        if bands:
            instance["degraded"] = inst.degraded.window(start)
        else:
            instance["degraded_state"] = inst.degraded.current
        return {
            "step_s": self.step_s,
            "start": start,
            "n": last - first + 1,
            "now": now,
            "error_outcomes": sorted(o.value for o in ERROR_OUTCOMES),
            "upstreams": upstreams,
            "instance": instance,
        }

    @staticmethod
    def _latency(up: _Upstream, first: int, last: int) -> dict[str, Values]:
        out = {name: ring.read(first, last) for name, ring in up.latency.items()}
        slot = up.hist_slot
        if slot is not None and first <= slot <= last and up.hist.total:
            # The open slot: its percentiles so far (written to the ring when it closes).
            values = up.hist.quantiles(q for _, q in QUANTILES)
            for (name, _), value in zip(QUANTILES, values, strict=True):
                out[name][slot - first] = NAN if value is None else value
        return out


_HANDLERS: dict[type, Callable[[History, Any], None]] = {
    CallCompleted: History._call,
    RetryScheduled: History._retry,
    RetryDenied: History._retry_denied,
    BreakerTransitioned: History._breaker,
    AuditBatchDurable: History._durable,
    SpoolBatchUploaded: History._uploaded,
    AuditWriteFailed: History._write_failed,
    DegradedModeChanged: History._degraded,
    StatusSampled: History._sampled,
}

__all__ = ["HORIZON_S", "STEP_S", "History"]
