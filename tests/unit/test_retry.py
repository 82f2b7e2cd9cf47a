"""Retry policy: backoff, Retry-After parsing, and every branch of decide()."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscope.contract.outcomes import ErrorClass
from netscope.resilience.budget import RetryBudget, RetryBudgetConfig
from netscope.resilience.clock import FakeClock
from netscope.resilience.retry import (
    IDEMPOTENT_METHODS,
    FailedAttempt,
    RetryDecision,
    RetryPolicy,
    RetryReason,
    backoff_s,
    decide,
    parse_retry_after,
)

NOW_EPOCH = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
TIMEOUT_READ = FailedAttempt(ErrorClass.TIMEOUT_READ, None, None)
R = RetryReason


def status(code: int, retry_after_s: float | None = None) -> FailedAttempt:
    return FailedAttempt(ErrorClass.HTTP_ERROR, code, retry_after_s)


def one() -> float:
    return 1.0


def run(
    failure: FailedAttempt = TIMEOUT_READ,
    policy: RetryPolicy | None = None,
    **kwargs: Any,
) -> RetryDecision:
    args: dict[str, Any] = {
        "attempt": 1,
        "failure": failure,
        "method": "GET",
        "has_idempotency_key": False,
        "now": 100.0,
        "deadline": 200.0,
        "per_try_timeout_s": 1.0,
        "budget": None,
        "rand": one,
    }
    args.update(kwargs)
    return decide(policy or RetryPolicy(), **args)


# ------------------------------------------------------------------ policy


def test_policy_defaults() -> None:
    p = RetryPolicy()
    assert p.max_attempts == 3
    assert (p.base_backoff_s, p.max_backoff_s) == (0.05, 2.0)
    assert p.retry_on == {
        ErrorClass.CONNECT_ERROR, ErrorClass.TIMEOUT_CONNECT, ErrorClass.TIMEOUT_READ
    }
    assert p.retry_on_statuses == frozenset({429, 502, 503, 504})
    assert (p.retry_after_max_s, p.respect_retry_after) == (10.0, True)
    assert p.retry_non_idempotent == "with_idempotency_key"
    assert frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}) == IDEMPOTENT_METHODS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", True),
        ("base_backoff_s", -0.1),
        ("max_backoff_s", 0.01),
        ("max_backoff_s", float("nan")),
        ("retry_after_max_s", -1.0),
        ("retry_non_idempotent", "always"),
    ],
)
def test_policy_validation_names_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().max_attempts = 9  # type: ignore[misc]


# ----------------------------------------------------------------- backoff


def test_backoff_doubles_and_caps() -> None:
    p = RetryPolicy(base_backoff_s=0.1, max_backoff_s=1.0)
    assert [backoff_s(p, a, one) for a in range(1, 7)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_full_jitter_scales_by_rand() -> None:
    p = RetryPolicy(base_backoff_s=0.1, max_backoff_s=1.0)
    assert backoff_s(p, 3, lambda: 0.5) == pytest.approx(0.2)
    assert backoff_s(p, 3, lambda: 0.0) == 0.0


def test_backoff_huge_attempt_does_not_overflow() -> None:
    assert backoff_s(RetryPolicy(), 10_000, one) == 2.0


@given(attempt=st.integers(1, 200), r=st.floats(0.0, 1.0))
def test_backoff_within_bounds(attempt: int, r: float) -> None:
    p = RetryPolicy()
    assert 0.0 <= backoff_s(p, attempt, lambda: r) <= p.max_backoff_s


# ------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("  7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Wednesday, 01-May-24 12:01:00 GMT", 60.0),  # RFC 850
        ("Wed May  1 12:00:10 2024", 10.0),  # asctime, zone-less = GMT
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # past -> 0
        (None, None),
        ("", None),
        ("soon", None),
        ("12abc", None),
        ("Wed, 99 Foo 2024 99:00:00 GMT", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    result = parse_retry_after(value, NOW_EPOCH)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_parse_retry_after_roundtrips_formatted_dates() -> None:
    when = datetime.fromtimestamp(NOW_EPOCH + 42, tz=UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW_EPOCH) == pytest.approx(42)


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, NOW_EPOCH)
    assert result is None or result >= 0.0


# ------------------------------------------------------------------ decide


@pytest.mark.parametrize(
    "error_class", [ErrorClass.CONNECT_ERROR, ErrorClass.TIMEOUT_CONNECT, ErrorClass.TIMEOUT_READ]
)
def test_retryable_error_classes(error_class: ErrorClass) -> None:
    decision = run(FailedAttempt(error_class, None, None))
    assert decision == RetryDecision(True, 0.05, R.RETRYABLE, f"retryable {error_class.value}")


@pytest.mark.parametrize("code", [429, 502, 503, 504])
def test_retryable_statuses(code: int) -> None:
    decision = run(status(code))
    assert decision.retry
    assert (decision.reason, decision.detail) == (R.RETRYABLE, f"retryable status {code}")


def test_status_without_error_class() -> None:
    decision = run(FailedAttempt(None, 503, None))
    assert (decision.reason, decision.detail) == (R.RETRYABLE, "retryable status 503")


@pytest.mark.parametrize(
    ("failure", "detail"),
    [
        (status(400), "status 400 not retryable"),
        (status(500), "status 500 not retryable"),
        (FailedAttempt(ErrorClass.PROTOCOL_ERROR, None, None), "protocol_error not retryable"),
        # Retryable by default policy, but this policy did not list it.
        (FailedAttempt(ErrorClass.CONNECTION_RESET, None, None), "connection_reset not retryable"),
        (FailedAttempt(None, None, None), "unknown failure not retryable"),
    ],
)
def test_not_retryable(failure: FailedAttempt, detail: str) -> None:
    assert run(failure) == RetryDecision(False, 0.0, R.NOT_RETRYABLE, detail)


def test_a_listed_error_class_is_retried_whatever_the_status() -> None:
    # A body cut short after a 200 header: the class decides, not the status.
    policy = RetryPolicy(retry_on=frozenset({ErrorClass.CONNECTION_RESET}))
    assert run(FailedAttempt(ErrorClass.CONNECTION_RESET, 200, None), policy=policy).retry


def test_policy_accepts_class_names_and_refuses_typos() -> None:
    (only,) = RetryPolicy(retry_on=frozenset({"timeout_read"})).retry_on
    assert only is ErrorClass.TIMEOUT_READ
    with pytest.raises(ValueError, match=r"retry_on: 'timeout_reed'"):
        RetryPolicy(retry_on=frozenset({"timeout_reed"}))


def test_non_retryable_wins_over_max_attempts() -> None:
    assert run(status(400), attempt=3).reason is R.NOT_RETRYABLE


def test_max_attempts_counts_the_first_attempt() -> None:
    assert run(attempt=2).retry
    assert run(attempt=3) == RetryDecision(False, 0.0, R.MAX_ATTEMPTS, "max_attempts reached")
    assert run(policy=RetryPolicy(max_attempts=1)).reason is R.MAX_ATTEMPTS


def test_backoff_grows_with_attempt() -> None:
    assert run(attempt=2, policy=RetryPolicy(max_attempts=5)).delay_s == pytest.approx(0.1)


@pytest.mark.parametrize("method", [*sorted(IDEMPOTENT_METHODS), "get", "put"])
def test_idempotent_methods_retry_without_key(method: str) -> None:
    assert run(method=method).retry


def test_post_without_key_is_not_retried() -> None:
    decision = run(method="post")
    assert decision.reason is R.NON_IDEMPOTENT
    assert decision.detail == "non-idempotent POST without idempotency key"


def test_post_with_key_is_retried() -> None:
    assert run(method="POST", has_idempotency_key=True).retry


def test_policy_never_retries_non_idempotent_even_with_key() -> None:
    decision = run(method="PATCH", has_idempotency_key=True,
                   policy=RetryPolicy(retry_non_idempotent="never"))
    assert decision.reason is R.NON_IDEMPOTENT
    assert decision.detail == "non-idempotent PATCH never retried"


def test_retry_after_is_a_floor_on_delay() -> None:
    decision = run(status(503, 3.0))
    assert decision == RetryDecision(
        True, 3.0, R.RETRYABLE, "retryable status 503 (retry-after 3.0s)"
    )


def test_backoff_wins_when_longer_than_retry_after() -> None:
    policy = RetryPolicy(base_backoff_s=1.0, max_backoff_s=5.0)
    decision = run(status(429, 0.5), policy=policy)
    assert decision.delay_s == 1.0


def test_retry_after_over_cap_gives_up() -> None:
    decision = run(status(429, 30.0))
    assert decision == RetryDecision(
        False, 0.0, R.RETRY_AFTER_TOO_LONG, "retry-after 30.0s exceeds cap 10.0s"
    )


def test_retry_after_at_cap_is_honoured() -> None:
    assert run(status(429, 10.0)).delay_s == 10.0


def test_retry_after_ignored_when_not_respected() -> None:
    policy = RetryPolicy(respect_retry_after=False)
    decision = run(status(429, 30.0), policy=policy)
    assert decision == RetryDecision(True, 0.05, R.RETRYABLE, "retryable status 429")


def test_deadline_rule_exact_boundary() -> None:
    # now + delay + per_try == deadline: allowed; any less room: refused.
    delay = backoff_s(RetryPolicy(), 1, one)
    assert run(now=100.0, deadline=100.0 + delay + 1.0, per_try_timeout_s=1.0).retry
    decision = run(now=100.0, deadline=100.0 + delay + 0.999, per_try_timeout_s=1.0)
    assert decision == RetryDecision(False, 0.0, R.DEADLINE, "deadline: next try cannot finish")


def test_deadline_accounts_for_retry_after() -> None:
    decision = run(status(503, 5.0), now=100.0, deadline=105.5, per_try_timeout_s=1.0)
    assert decision.reason is R.DEADLINE


def test_budget_consulted_last_and_charged_only_on_yes() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryBudgetConfig(ratio=0.0, min_retries_per_s=0.1, ttl_s=10.0), clock)
    assert budget.available() == pytest.approx(1.0)
    # Every earlier "no" leaves the budget untouched.
    earlier = [
        run(status(400), budget=budget),
        run(attempt=3, budget=budget),
        run(method="POST", budget=budget),
        run(status(429, 60.0), budget=budget),
        run(deadline=100.5, budget=budget),
    ]
    assert [d.reason for d in earlier] == [
        R.NOT_RETRYABLE, R.MAX_ATTEMPTS, R.NON_IDEMPOTENT, R.RETRY_AFTER_TOO_LONG, R.DEADLINE
    ]
    assert budget.available() == pytest.approx(1.0)
    assert run(budget=budget).retry
    assert budget.available() == pytest.approx(0.0)
    assert run(budget=budget) == RetryDecision(False, 0.0, R.BUDGET, "retry budget exhausted")


def test_rand_not_called_for_early_refusals() -> None:
    def boom() -> float:
        raise AssertionError("rand must not be drawn")

    run(status(400), rand=boom)
    run(attempt=3, rand=boom)
    run(method="POST", rand=boom)
