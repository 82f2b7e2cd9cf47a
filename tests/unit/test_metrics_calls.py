"""Call metrics an operator alerts on, fed event by event into ``Metrics.on_event``.

Each test pins a signal the runbook reads: errors apart by origin, a latency histogram that
rejections cannot flatter, answers by status class per attempt, circuit "open" that counts
forced_open, and every alerted series present at 0 before the first event.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from netscope.contract.outcomes import ErrorClass, ErrorOrigin, Outcome, error_origin
from netscope.contract.records import Attempt, AuditRecord, KafkaPosition
from netscope.observability.events import (
    AttemptFinished,
    BreakerTransitioned,
    CallCompleted,
    RetryDenied,
    RetryScheduled,
)
from netscope.observability.metrics import BREAKER_STATES, OPEN_STATES, Metrics
from netscope.resilience.breaker import BreakerState
from netscope.resilience.retry import RetryReason

REPO = Path(__file__).parents[2]
UP = "pay"


def completed(
    outcome: Outcome,
    error_class: ErrorClass | None = None,
    *,
    upstream: str | None = UP,
    latency_s: float = 0.2,
    attempts: list[Attempt] | None = None,
) -> CallCompleted:
    rec = AuditRecord(
        request_id="r",
        idempotency_key="r",
        trace_id="0" * 31 + "1",
        span_id="0" * 15 + "1",
        upstream=upstream,
        method="GET",
        path="/",
        kafka=KafkaPosition("t", 0, 0, 0),
        outcome=outcome,
        received_at=1.0,
        completed_at=1.0 + latency_s,
        latency_s=latency_s,
        error_class=error_class,
        attempts=attempts or [],
    )
    return CallCompleted(rec, upstream_time_s=0.0)


def feed(m: Metrics, *events: Any) -> Metrics:
    for ev in events:
        m.on_event(ev)
    return m


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def total(m: Metrics, name: str, where: Callable[[dict[str, str]], bool] = lambda _: True) -> float:
    """``sum(name{...})`` over the samples whose labels pass ``where``."""
    return sum(
        s.value
        for family in m.registry.collect()
        for s in family.samples
        if s.name == name and where(s.labels)
    )


def not_matching(label: str, regex: str) -> Callable[[dict[str, str]], bool]:
    """PromQL ``label!~"regex"`` (anchored at both ends, like Prometheus)."""
    return lambda labels: re.fullmatch(regex, labels.get(label, "")) is None


# -------------------------------------------------------------------- errors by origin


def test_errors_carry_the_origin_of_their_error_class() -> None:
    m = feed(
        Metrics(),
        completed(Outcome.HTTP_ERROR),  # a final 5xx: the record names no class
        completed(Outcome.TIMEOUT_READ, ErrorClass.TIMEOUT_READ),
        completed(Outcome.REJECTED_CIRCUIT_OPEN, ErrorClass.CIRCUIT_OPEN),
        completed(Outcome.REJECTED_RATE_LIMITED, ErrorClass.BULKHEAD_FULL),
        completed(Outcome.INVALID, ErrorClass.INVALID, upstream=None),
    )
    expected = {
        (UP, "http_error", "upstream"),
        (UP, "timeout_read", "upstream"),
        (UP, "circuit_open", "local"),
        (UP, "bulkhead_full", "local"),
        ("(invalid)", "invalid", "input"),
    }
    for upstream, error_class, origin in expected:
        got = value(
            m, "netscope_errors_total", upstream=upstream, error_class=error_class, origin=origin
        )
        assert got == 1, (upstream, error_class, origin)


def test_runbook_error_ratio_counts_upstream_failures_only() -> None:
    # 100 answered calls, 1 of them a failure (1 %), during an incident that also brings
    # 60 local rejections and 20 invalid messages: the upstream is within the 2 % rule.
    m = Metrics()
    m.init_upstream(UP)
    feed(m, *[completed(Outcome.SUCCESS)] * 99, completed(Outcome.HTTP_ERROR))
    feed(m, *[completed(Outcome.REJECTED_CIRCUIT_OPEN, ErrorClass.CIRCUIT_OPEN)] * 40)
    feed(m, *[completed(Outcome.REJECTED_RATE_LIMITED, ErrorClass.RATE_LIMITED)] * 20)
    feed(m, *[completed(Outcome.INVALID, ErrorClass.INVALID, upstream=None)] * 20)
    feed(m, *[completed(Outcome.DUPLICATE_SKIPPED)] * 10)

    # docs/metrics.md, "Runbook section 8 alerts as PromQL", evaluated on the samples.
    errors = total(m, "netscope_errors_total", lambda labels: labels["origin"] == "upstream")
    requests = total(
        m,
        "netscope_requests_total",
        not_matching("outcome", "invalid|rejected_.*|duplicate_skipped"),
    )
    assert (errors, requests) == (1, 100)
    assert errors / requests <= 0.02
    # The old rule (every non-success over every message) would have paged: 81 / 190.
    assert total(m, "netscope_errors_total") == 81


def test_duplicate_skipped_is_not_an_error() -> None:
    m = feed(Metrics(), completed(Outcome.DUPLICATE_SKIPPED))
    assert value(m, "netscope_requests_total", upstream=UP, outcome="duplicate_skipped") == 1
    assert total(m, "netscope_errors_total") == 0


def test_every_error_class_has_one_origin_label() -> None:
    m = Metrics()
    for cls in ErrorClass:
        feed(m, completed(Outcome.PROTOCOL_ERROR, cls))
    origins = {
        s.labels["error_class"]: s.labels["origin"]
        for family in m.registry.collect()
        for s in family.samples
        if s.name == "netscope_errors_total"
    }
    assert origins == {cls.value: error_origin(cls).value for cls in ErrorClass}


# -------------------------------------------------------------------- latency histogram


def test_latency_histogram_observes_no_rejection_invalid_or_skipped_message() -> None:
    m = Metrics()
    feed(m, *[completed(Outcome.SUCCESS, latency_s=0.2)] * 10)
    feed(m, completed(Outcome.HTTP_ERROR, latency_s=0.3))
    feed(m, completed(Outcome.TIMEOUT_READ, ErrorClass.TIMEOUT_READ, latency_s=1.5))
    # An open circuit: a flood of ~0 s rejections would drag p95 to the first bucket.
    fast = 0.0001
    open_circuit = completed(Outcome.REJECTED_CIRCUIT_OPEN, ErrorClass.CIRCUIT_OPEN, latency_s=fast)
    saturated = completed(Outcome.REJECTED_RATE_LIMITED, ErrorClass.RATE_LIMITED, latency_s=fast)
    feed(m, *[open_circuit] * 200, *[saturated] * 50)
    feed(m, completed(Outcome.DUPLICATE_SKIPPED, latency_s=fast))
    feed(m, completed(Outcome.INVALID, ErrorClass.INVALID, upstream=None, latency_s=fast))

    assert value(m, "netscope_request_duration_seconds_count", upstream=UP) == 12
    assert value(m, "netscope_request_duration_seconds_bucket", upstream=UP, le="0.1") == 0
    assert value(m, "netscope_request_duration_seconds_count", upstream="(invalid)") is None
    # NetScope's own time still covers rejections: refusing is work it does.
    assert value(m, "netscope_call_overhead_seconds_count") == 12 + 200 + 50 + 1


# -------------------------------------------------------------------- answers by status class


def test_upstream_answers_are_counted_per_attempt_by_status_class() -> None:
    m = Metrics()
    m.init_upstream(UP)
    # A 429 storm, retried: the message ends in success, the answers tell the story.
    feed(
        m,
        AttemptFinished(UP, 429, None, 0.01),
        AttemptFinished(UP, 429, None, 0.01),
        AttemptFinished(UP, 200, None, 0.02),
        AttemptFinished(UP, 503, None, 0.02),
        AttemptFinished(UP, 200, ErrorClass.RESPONSE_TOO_LARGE, 0.02),  # it did answer
        AttemptFinished(UP, None, ErrorClass.TIMEOUT_READ, 1.0),  # no answer: not counted
        completed(Outcome.SUCCESS),
    )
    answers = {
        cls: value(m, "netscope_upstream_responses_total", upstream=UP, status_class=cls)
        for cls in ("2xx", "3xx", "4xx", "5xx")
    }
    assert answers == {"2xx": 2, "3xx": 0, "4xx": 2, "5xx": 1}


# -------------------------------------------------------------------- retries


def test_retry_denials_are_labelled_by_their_reason_value() -> None:
    m = Metrics()
    m.init_upstream(UP)
    feed(
        m,
        RetryDenied(UP, RetryReason.BUDGET, "retry budget exhausted"),
        RetryDenied(UP, RetryReason.DEADLINE, "deadline: next try cannot finish"),
        RetryDenied(UP, RetryReason.DEADLINE, "deadline: next try cannot finish"),
        # Never guessed from prose: a reason is its own label, not "deadline" by default.
        RetryDenied(UP, RetryReason.RETRY_AFTER_TOO_LONG, "retry-after 30.0s exceeds cap"),
    )
    reasons = {
        r.value: value(m, "netscope_retries_denied_total", upstream=UP, reason=r.value)
        for r in (RetryReason.BUDGET, RetryReason.DEADLINE, RetryReason.RETRY_AFTER_TOO_LONG)
    }
    assert reasons == {"budget": 1, "deadline": 2, "retry_after_too_long": 1}


def test_retries_and_timeouts_per_attempt() -> None:
    m = Metrics()
    timed_out = [
        Attempt(1, 1.0, 1.0, None, ErrorClass.TIMEOUT_READ, 0.05),
        Attempt(2, 2.0, 0.2, None, ErrorClass.TIMEOUT_CONNECT, 0.05),
        Attempt(3, 3.0, 0.5, None, ErrorClass.DEADLINE_EXCEEDED),
    ]
    feed(
        m,
        RetryScheduled(UP, "r", "t", 1, RetryReason.RETRYABLE, "retryable timeout_read", 0.05),
        completed(Outcome.DEADLINE_EXCEEDED, ErrorClass.DEADLINE_EXCEEDED, attempts=timed_out),
        # Ran out while queued: no attempt of its own, still one deadline timeout.
        completed(Outcome.DEADLINE_EXCEEDED, ErrorClass.DEADLINE_EXCEEDED),
    )
    assert value(m, "netscope_retries_total", upstream=UP) == 1
    kinds = {
        k: value(m, "netscope_timeouts_total", upstream=UP, kind=k)
        for k in ("connect", "read", "deadline")
    }
    assert kinds == {"connect": 1, "read": 1, "deadline": 2}


# -------------------------------------------------------------------- circuit state


@pytest.mark.parametrize(
    ("to_state", "is_open"),
    [
        ("open", 1),
        ("forced_open", 1),  # rejects every call just the same
        ("half_open", 0),
        ("forced_closed", 0),
        ("closed", 0),
    ],
)
def test_circuit_open_gauge_counts_forced_open(to_state: str, is_open: int) -> None:
    m = Metrics()
    m.init_upstream(UP)
    feed(m, BreakerTransitioned(UP, "closed", to_state, "test"))
    assert value(m, "netscope_circuit_open", upstream=UP) == is_open
    states = {s: value(m, "netscope_circuit_state", upstream=UP, state=s) for s in BREAKER_STATES}
    assert states == {s: (1 if s == to_state else 0) for s in BREAKER_STATES}


def test_circuit_state_is_spelled_alike_in_code_dashboard_and_docs() -> None:
    states = [s.value for s in BreakerState]
    assert list(BREAKER_STATES) == states
    assert {"open", "forced_open"} == OPEN_STATES
    app = (REPO / "src/netscope/api/dashboard/app.js").read_text(encoding="utf-8")
    js_states = re.search(r"const STATES = \[([^\]]*)\]", app)
    js_open = re.search(r"const OPEN_STATES = \[([^\]]*)\]", app)
    assert js_states and js_open
    assert set(re.findall(r'"(\w+)"', js_states.group(1))) == set(states)
    assert set(re.findall(r'"(\w+)"', js_open.group(1))) == OPEN_STATES
    docs = (REPO / "docs/metrics.md").read_text(encoding="utf-8")
    row = next(line for line in docs.splitlines() if line.startswith("| `netscope_circuit_state`"))
    listed = row.split("∈", 1)[1].split("(", 1)[0]
    assert re.findall(r"`(\w+)`", listed) == states


# -------------------------------------------------------------------- present from start


def test_every_alerted_series_exists_at_zero_from_start() -> None:
    m = Metrics()
    m.init_upstream(UP)
    upstream_classes = [c for c in ErrorClass if error_origin(c) is ErrorOrigin.UPSTREAM]
    assert {ErrorClass.HTTP_ERROR, ErrorClass.TIMEOUT_READ} <= set(upstream_classes)
    for cls in upstream_classes:
        got = value(m, "netscope_errors_total", upstream=UP, error_class=cls, origin="upstream")
        assert got == 0, cls
    for cls in ("2xx", "3xx", "4xx", "5xx"):
        assert value(m, "netscope_upstream_responses_total", upstream=UP, status_class=cls) == 0
    for reason in ("budget", "deadline"):
        assert value(m, "netscope_retries_denied_total", upstream=UP, reason=reason) == 0
    assert value(m, "netscope_request_duration_seconds_count", upstream=UP) == 0
    assert value(m, "netscope_request_duration_seconds_bucket", upstream=UP, le="+Inf") == 0
    for state in BREAKER_STATES:
        expected = 1 if state == "closed" else 0
        assert value(m, "netscope_circuit_state", upstream=UP, state=state) == expected
    assert value(m, "netscope_circuit_open", upstream=UP) == 0
    for outcome in Outcome:
        assert value(m, "netscope_requests_total", upstream=UP, outcome=outcome) == 0


def test_one_registry_per_instance() -> None:
    registry = CollectorRegistry()
    Metrics(registry).init_upstream(UP)
    assert registry.get_sample_value("netscope_circuit_open", {"upstream": UP}) == 0


# -------------------------------------------------------------------- hot path stays cheap


def count_labels(monkeypatch: pytest.MonkeyPatch, metric: Any) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []
    original = metric.labels

    def counting(*values: str) -> Any:
        calls.append(values)
        return original(*values)

    monkeypatch.setattr(metric, "labels", counting)
    return calls


def test_label_children_are_resolved_once_per_combination(monkeypatch) -> None:
    m = Metrics()
    m.init_upstream(UP)
    errors = count_labels(monkeypatch, m.errors)
    latency = count_labels(monkeypatch, m.latency)
    answers = count_labels(monkeypatch, m.upstream_responses)
    timeouts = count_labels(monkeypatch, m.timeouts)
    timed_out = [Attempt(1, 1.0, 1.0, None, ErrorClass.TIMEOUT_READ)]
    for _ in range(50):
        feed(
            m,
            AttemptFinished(UP, 503, None, 0.01),
            AttemptFinished(UP, 504, None, 0.01),
            completed(Outcome.HTTP_ERROR),
            completed(Outcome.TIMEOUT_READ, ErrorClass.TIMEOUT_READ, attempts=timed_out),
            completed(Outcome.SUCCESS),
        )
    assert len(errors) == 2  # http_error, timeout_read
    assert len(latency) == 3  # one child per (upstream, outcome, class) seen
    assert answers == [(UP, "5xx"), (UP, "5xx")]  # one per status, both 5xx
    assert timeouts == [(UP, "read")]
    assert value(m, "netscope_upstream_responses_total", upstream=UP, status_class="5xx") == 100
    assert value(m, "netscope_errors_total", upstream=UP, error_class="http_error",
                 origin="upstream") == 50
