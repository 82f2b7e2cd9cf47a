"""History: the dashboard's last hour, folded from bus events with an injected clock.

Every figure a chart draws is checked here against events whose times the test chooses:
counts per slot by outcome, latency percentiles per slot (the open slot included), timeouts
by kind as the metrics count them, retries, the audit's flows, the instance's gauges, and
the breaker and degraded bands at their events' own times; then the bounds (an hour, the
upstream and partition caps, memory per series) and the read side's shape."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from netscope.api.history import History
from netscope.contract.outcomes import ErrorClass
from netscope.contract.records import Attempt, AuditRecord, KafkaPosition, Outcome
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
    WriteResult,
)
from netscope.resilience.retry import RetryReason
from netscope.status import KafkaStatus, PipelineStatus, SpoolStatus

T0 = 1_800_000_000.0  # a slot boundary for step 2 s


class Wall:
    """A wall clock the test moves."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def call(
    upstream: str | None = "pay",
    outcome: Outcome = Outcome.SUCCESS,
    latency_s: float = 0.010,
    attempts: list[Attempt] | None = None,
    from_ledger: bool = False,
) -> CallCompleted:
    record = AuditRecord(
        request_id="r", idempotency_key="r", trace_id="ab" * 16, span_id=None,
        upstream=upstream, method="POST", path="/x",
        kafka=KafkaPosition("t", 0, 1, int(T0 * 1000)), outcome=outcome,
        received_at=T0, completed_at=T0 + latency_s, latency_s=latency_s,
        attempts=attempts if attempts is not None else [Attempt(1, T0, latency_s, 200)],
        outcome_from_ledger=from_ledger,
    )  # fmt: skip
    return CallCompleted(record, upstream_time_s=latency_s)


def status(**kw: Any) -> StatusSampled:
    lag = kw.pop("lag", {("t", 0): 5, ("t", 1): 7})
    st = PipelineStatus(
        instance_id="i", queue_depth=kw.get("queue_depth", 12), queue_capacity=2000,
        in_flight=kw.get("in_flight", 3), processed=0, paused_reason=None,
        ingest_rate_per_s=math.inf, audit_degraded=False, audit_store="local",
        spool=SpoolStatus(bytes=kw.get("spool_bytes", 0), pending_entries=kw.get("pending", 0)),
        kafka=KafkaStatus(True, True, True, "", (("t", 0), ("t", 1)), lag),
        breakers=kw.get("breakers", {"pay": "closed"}),
    )  # fmt: skip
    return StatusSampled(st)


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def hist(wall: Wall) -> History:
    return History(step_s=2.0, horizon_s=60.0, clock=wall)


def series(view: dict[str, Any], *path: str) -> list[float | None]:
    node: Any = view
    for key in path:
        node = node[key]
    return [None if math.isnan(v) else round(float(v), 6) for v in node]


def test_calls_are_counted_per_slot_and_outcome(hist: History, wall: Wall) -> None:
    for _ in range(3):
        hist.on_event(call())
    hist.on_event(call(outcome=Outcome.HTTP_ERROR))
    wall.t += 2.5  # next slot
    hist.on_event(call(outcome=Outcome.HTTP_ERROR))
    wall.t += 2.0
    view = hist.snapshot(6)  # three slots: the two written and the current one
    assert view["start"] == T0 and view["n"] == 3 and view["step_s"] == 2.0
    assert series(view, "upstreams", "pay", "outcomes", "success") == [3, 0, 0]
    assert series(view, "upstreams", "pay", "outcomes", "http_error") == [1, 1, 0]
    assert "timeout_read" not in view["upstreams"]["pay"]["outcomes"]  # never seen
    assert "http_error" in view["error_outcomes"] and "success" not in view["error_outcomes"]


def test_latency_percentiles_per_slot_including_the_open_one(hist: History, wall: Wall) -> None:
    for ms in range(1, 101):  # 1..100 ms
        hist.on_event(call(latency_s=ms / 1000))
    wall.t += 2
    hist.on_event(call(latency_s=0.5))  # closes the first slot; the second is still open
    view = hist.snapshot(4)
    p50, p95, p99 = (series(view, "upstreams", "pay", "latency", q) for q in ("p50", "p95", "p99"))
    # The report's 5 % log buckets: each within 5 % above the exact nearest rank.
    assert p50[0] == pytest.approx(0.050, rel=0.05) and p50[0] >= 0.050
    assert p95[0] == pytest.approx(0.095, rel=0.05) and p99[0] == pytest.approx(0.099, rel=0.05)
    assert p99[1] == pytest.approx(0.5, rel=0.05)  # read live from the open slot
    wall.t += 2  # nothing more: an empty slot has no latency, not zero
    assert series(hist.snapshot(2), "upstreams", "pay", "latency", "p50")[-1] is None


def test_calls_that_reached_no_upstream_leave_latency_alone(hist: History) -> None:
    hist.on_event(call(outcome=Outcome.REJECTED_CIRCUIT_OPEN, latency_s=0.0001, attempts=[]))
    hist.on_event(call(outcome=Outcome.DUPLICATE_SKIPPED, latency_s=0.0001, attempts=[]))
    hist.on_event(call(latency_s=3.0, from_ledger=True))  # timed by another process
    view = hist.snapshot(2)
    assert series(view, "upstreams", "pay", "latency", "p99") == [None]
    assert series(view, "upstreams", "pay", "outcomes", "rejected_circuit_open") == [1]


def test_timeouts_by_kind_count_attempts_like_the_metric(hist: History) -> None:
    read = Attempt(1, T0, 2.0, None, ErrorClass.TIMEOUT_READ, 0.1)
    connect = Attempt(2, T0, 1.0, None, ErrorClass.TIMEOUT_CONNECT)
    hist.on_event(call(outcome=Outcome.TIMEOUT_CONNECT, attempts=[read, connect]))
    # A deadline that ran out between attempts has no attempt of its own: still counted.
    hist.on_event(call(outcome=Outcome.DEADLINE_EXCEEDED, attempts=[read]))
    deadline = Attempt(1, T0, 1.0, None, ErrorClass.DEADLINE_EXCEEDED)
    hist.on_event(call(outcome=Outcome.DEADLINE_EXCEEDED, attempts=[deadline]))
    view = hist.snapshot(2)["upstreams"]["pay"]["timeouts"]
    assert {k: series(view, k) for k in view} == {"connect": [1], "deadline": [2], "read": [2]}


def test_retries_scheduled_and_denied(hist: History) -> None:
    hist.on_event(RetryScheduled("pay", "r", "t", 1, RetryReason.RETRYABLE, "503", 0.1))
    hist.on_event(RetryScheduled("pay", "r", "t", 2, RetryReason.RETRYABLE, "503", 0.2))
    hist.on_event(RetryDenied("pay", RetryReason.BUDGET, "retry budget exhausted"))
    view = hist.snapshot(2)["upstreams"]["pay"]["retries"]
    assert series(view, "scheduled") == [2] and series(view, "denied") == [1]


def test_the_breaker_band_uses_the_events_own_times(hist: History, wall: Wall) -> None:
    hist.on_event(BreakerTransitioned("pay", "closed", "open", "failure_rate", created=T0 + 0.3))
    hist.on_event(BreakerTransitioned("pay", "open", "half_open", "wait", created=T0 + 1.3))
    wall.t += 10
    band = hist.snapshot(60)["upstreams"]["pay"]["breaker"]
    assert band == {
        "initial": "closed",
        "changes": [[T0 + 0.3, "open", "failure_rate"], [T0 + 1.3, "half_open", "wait"]],
    }
    # A window starting inside the open period begins open.
    assert hist.snapshot(8)["upstreams"]["pay"]["breaker"]["initial"] == "half_open"
    assert hist.band("pay") is not None and hist.band("pay").state_at(T0 + 1.0) == "open"
    assert hist.band("nope") is None


def test_audit_flows_and_the_degraded_band(hist: History) -> None:
    def durable(target: AuditTarget, records: int) -> AuditBatchDurable:
        return AuditBatchDurable("t", 0, records, 100, target, WriteResult.CREATED, 0.01, T0)

    hist.on_event(durable(AuditTarget.STORE, 10))
    hist.on_event(durable(AuditTarget.SPOOL, 4))
    hist.on_event(SpoolBatchUploaded("k", 4, 100, WriteResult.CREATED, 3.0))
    hist.on_event(AuditWriteFailed(AuditTarget.STORE, "StoreTimeout", "no answer"))
    hist.on_event(DegradedModeChanged(True, "StoreTimeout", created=T0 + 0.5))
    hist.on_event(DegradedModeChanged(False, "store recovered", created=T0 + 1.5))
    view = hist.snapshot(2)["instance"]
    assert {k: series(view, "audit", k) for k in view["audit"]} == {
        "drained": [4], "failed": [1], "spool": [4], "store": [10],
    }  # fmt: skip
    assert view["degraded"]["changes"] == [
        [T0 + 0.5, "degraded", "StoreTimeout"], [T0 + 1.5, "normal", "store recovered"],
    ]  # fmt: skip


def test_the_instance_gauges_come_from_the_sampled_status(hist: History, wall: Wall) -> None:
    hist.on_event(status(queue_depth=12, in_flight=3, spool_bytes=4096, pending=2))
    wall.t += 2
    hist.on_event(status(queue_depth=40, in_flight=8, spool_bytes=0, pending=0, lag={("t", 0): 9}))
    view = hist.snapshot(4)["instance"]
    assert series(view, "queue_depth") == [12, 40]
    assert series(view, "in_flight") == [3, 8]
    assert series(view, "spool_bytes") == [4096, 0]
    assert series(view, "spool_pending") == [2, 0]
    assert series(view, "lag", "t/0") == [5, 9]
    assert series(view, "lag", "t/1") == [7, None]  # not sampled: no data, not zero
    assert view["queue_capacity"] == 2000
    assert "pay" in hist.upstreams  # configured upstreams appear before their first call


def test_invalid_messages_name_no_upstream_and_are_not_charted(hist: History) -> None:
    hist.on_event(call(upstream=None, outcome=Outcome.INVALID, attempts=[]))
    assert hist.upstreams == []


def test_upstreams_and_partitions_are_capped(wall: Wall) -> None:
    hist = History(step_s=2, horizon_s=60, clock=wall, max_upstreams=2, max_partitions=1)
    for name in ("a", "b", "c"):
        hist.on_event(call(upstream=name))
        hist.on_event(BreakerTransitioned(name, "closed", "open", "x"))
    hist.on_event(status(lag={("t", 0): 1, ("t", 1): 2}, breakers={}))
    view = hist.snapshot(2)
    assert set(view["upstreams"]) == {"a", "b"}
    assert set(view["instance"]["lag"]) == {"t/0"}


def test_an_hour_is_kept_and_no_more(wall: Wall) -> None:
    hist = History(step_s=2, horizon_s=3600, clock=wall)
    hist.on_event(call())
    hist.on_event(BreakerTransitioned("pay", "closed", "open", "x", created=T0))
    wall.t += 3598  # the call's slot is the oldest of the hour
    assert series(hist.snapshot(3600), "upstreams", "pay", "outcomes", "success")[0] == 1
    wall.t += 2
    view = hist.snapshot(3600)
    assert sum(series(view, "upstreams", "pay", "outcomes", "success")) == 0
    assert view["upstreams"]["pay"]["breaker"] == {"initial": "open", "changes": []}


def test_the_window_is_clamped_to_a_slot_and_the_horizon(hist: History) -> None:
    assert hist.snapshot(0.001)["n"] == 1
    assert hist.snapshot(10_000)["n"] == 30  # 60 s of 2 s slots


def test_the_tail_is_the_last_two_slots_with_the_current_states(hist: History, wall: Wall) -> None:
    hist.on_event(call())
    hist.on_event(BreakerTransitioned("pay", "closed", "open", "x", created=T0))
    hist.on_event(DegradedModeChanged(True, "StoreTimeout", created=T0))
    wall.t += 2
    tail = hist.tail()
    assert tail["n"] == 2 and tail["start"] == T0
    assert series(tail, "upstreams", "pay", "outcomes", "success") == [1, 0]
    assert tail["upstreams"]["pay"]["breaker_state"] == "open"
    assert tail["instance"]["degraded_state"] == "degraded"
    assert "breaker" not in tail["upstreams"]["pay"]  # changes travel as their own events


def test_targets_are_reported_per_upstream(hist: History) -> None:
    hist.set_targets({"pay": 0.25, "geo": None})
    view = hist.snapshot(2)
    assert view["upstreams"]["pay"]["target_p95_s"] == 0.25
    assert view["upstreams"]["geo"]["target_p95_s"] is None


def test_the_view_is_json_with_nulls_for_missing_data(hist: History) -> None:
    hist.on_event(call(latency_s=0.25))
    body = orjson.loads(orjson.dumps(hist.snapshot(4), option=orjson.OPT_SERIALIZE_NUMPY))
    assert body["upstreams"]["pay"]["latency"]["p99"][0] is None  # the slot before: no call
    assert body["upstreams"]["pay"]["latency"]["p99"][1] == pytest.approx(0.25, rel=0.05)


def test_memory_is_a_few_kib_per_series_whatever_the_traffic(wall: Wall) -> None:
    hist = History(clock=wall)  # the defaults: 2 s slots, an hour
    for i in range(20_000):
        wall.t += 0.2
        hist.on_event(call(outcome=(Outcome.SUCCESS, Outcome.HTTP_ERROR)[i % 2]))
    per_series = 1800 * 4
    before = hist.memory_bytes()
    # pay: 2 outcomes, 3 percentiles, 3 timeout kinds, 2 retry kinds; instance: 4 gauges, 4 flows
    assert before == (2 + 3 + 3 + 2 + 4 + 4) * per_series
    for _ in range(20_000):
        wall.t += 0.2
        hist.on_event(call())
    assert hist.memory_bytes() == before


def test_a_clock_that_steps_back_never_rewrites_a_finished_slot(hist: History, wall: Wall) -> None:
    hist.on_event(call(latency_s=0.1))
    wall.t += 2
    hist.on_event(call(latency_s=0.2))  # finishes slot 0 at 0.1
    wall.t -= 2  # NTP steps the wall clock back
    hist.on_event(call(latency_s=0.9))  # counted in slot 0, its latency in the open slot
    wall.t += 2
    view = hist.snapshot(4)
    assert series(view, "upstreams", "pay", "outcomes", "success") == [2, 1]
    assert series(view, "upstreams", "pay", "latency", "p99")[0] == pytest.approx(0.1, rel=0.05)


def test_step_and_horizon_are_checked() -> None:
    with pytest.raises(ValueError):
        History(step_s=0)
    with pytest.raises(ValueError):
        History(step_s=10, horizon_s=5)
