"""Retry policy: one pure function decides whether and when to try again.

Why hand-written: tenacity/stamina/backoff wrap the call itself, so they cannot
see the request's overall deadline, the HTTP method and idempotency key, a
Retry-After header, or a retry budget shared across requests; and their sleeps
are not driven by an injectable clock. Here the I/O layer performs the attempt
and asks ``decide()`` what to do; every decision carries a typed reason
(``RetryReason``, what metrics and alerts count) and a human-readable detail.

Semantics follow Envoy's retry policy (retry_on conditions, retriable status
codes, full-jitter exponential backoff, ``max_interval``, rate-limited retry
back-off honouring Retry-After, per-try timeout) and fix what users complain
about:

* **Retry-After ignored** -> honoured by default, as a floor on the delay; a
  Retry-After longer than ``retry_after_max_s`` means "give up now" rather than
  holding a request (and a bulkhead slot) hostage.
* **Retries that multiply load** -> the optional ``RetryBudget`` is consulted
  last, so a token is spent only for a retry that will really happen.
* **Retries that cannot finish** -> no retry starts unless
  ``now + delay + per_try_timeout_s <= deadline``.
* **Duplicate side effects** -> non-idempotent methods retry only with an
  idempotency key (or never, by policy).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Literal

from netscope.contract.outcomes import ErrorClass
from netscope.resilience.budget import RetryBudget

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRYABLE_ERROR_CLASSES",
    "FailedAttempt",
    "RetryDecision",
    "RetryPolicy",
    "RetryReason",
    "backoff_s",
    "decide",
    "is_retryable",
    "parse_retry_after",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""RFC 9110 section 9.2.2: repeating these has the same effect as sending once."""

RETRYABLE_ERROR_CLASSES = frozenset(
    {
        ErrorClass.CONNECT_ERROR,
        ErrorClass.CONNECTION_RESET,
        ErrorClass.TIMEOUT_CONNECT,
        ErrorClass.TIMEOUT_READ,
    }
)
"""Transport failures a new attempt can fix: what ``retry_on`` may name in the config. The
rest either cannot change on a retry (a malformed or oversize answer), ends the call (the
deadline) or never reached the upstream (local refusals)."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    """Total attempts including the first (1 = never retry)."""
    base_backoff_s: float = 0.05
    """Backoff cap before the first retry; doubles per attempt (full jitter below it)."""
    max_backoff_s: float = 2.0
    """Upper bound of the exponential backoff cap."""
    retry_on: frozenset[ErrorClass] = frozenset(
        {ErrorClass.CONNECT_ERROR, ErrorClass.TIMEOUT_CONNECT, ErrorClass.TIMEOUT_READ}
    )
    """Transport error classes worth retrying (a status is retried by ``retry_on_statuses``)."""
    retry_on_statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    """HTTP statuses worth retrying."""
    retry_after_max_s: float = 10.0
    """A Retry-After longer than this seconds means give up instead of waiting."""
    respect_retry_after: bool = True
    """Use Retry-After as a floor for the delay (False: ignore the header entirely)."""
    retry_non_idempotent: Literal["never", "with_idempotency_key"] = "with_idempotency_key"
    """Whether POST/PATCH/... may be retried, and only when carrying an idempotency key."""

    def __post_init__(self) -> None:
        if (isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int)
                or self.max_attempts < 1):
            raise ValueError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        for name in ("base_backoff_s", "max_backoff_s", "retry_after_max_s"):
            value = getattr(self, name)
            if math.isnan(value) or math.isinf(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_backoff_s < self.base_backoff_s:
            raise ValueError(
                f"max_backoff_s ({self.max_backoff_s}) must be >= base_backoff_s "
                f"({self.base_backoff_s})"
            )
        try:
            # Plain strings are accepted; a typo would silently never match, so refuse it.
            object.__setattr__(self, "retry_on", frozenset(ErrorClass(c) for c in self.retry_on))
        except ValueError as exc:
            raise ValueError(f"retry_on: {exc}") from None
        if self.retry_non_idempotent not in ("never", "with_idempotency_key"):
            raise ValueError(
                "retry_non_idempotent must be 'never' or 'with_idempotency_key', "
                f"got {self.retry_non_idempotent!r}"
            )


@dataclass(frozen=True)
class FailedAttempt:
    """What went wrong with one attempt, as classified by the I/O layer."""

    error_class: ErrorClass | None
    """What failed, None when only the status did (``HTTP_ERROR`` means the same)."""
    status: int | None = None
    """HTTP status when a response arrived."""
    retry_after_s: float | None = None
    """Parsed Retry-After (see ``parse_retry_after``), if the response had one."""


class RetryReason(StrEnum):
    """Why ``decide()`` said what it said: the first check that decided, in check order."""

    RETRYABLE = "retryable"  # yes
    NOT_RETRYABLE = "not_retryable"  # class/status not in the policy
    MAX_ATTEMPTS = "max_attempts"
    NON_IDEMPOTENT = "non_idempotent"  # method not idempotent, no key (or never, by policy)
    RETRY_AFTER_TOO_LONG = "retry_after_too_long"  # Retry-After above retry_after_max_s
    DEADLINE = "deadline"  # the next try could not finish before the global deadline
    BUDGET = "budget"  # the retry budget is spent


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_s: float
    """Seconds to wait before the next attempt (0.0 when not retrying)."""
    reason: RetryReason
    detail: str = ""
    """For people (logs, the live feed), e.g. "status 503 not retryable"."""


def backoff_s(policy: RetryPolicy, attempt: int, rand: Callable[[], float]) -> float:
    """Full-jitter backoff after failed attempt number ``attempt`` (1-based).

    ``rand() * min(max_backoff_s, base_backoff_s * 2**(attempt-1))``; full jitter
    (AWS architecture blog) spreads synchronized clients best.
    """
    exponent = max(0, attempt - 1)
    # 2**64 already dwarfs any sane max/base ratio; bounding avoids float overflow.
    cap = policy.max_backoff_s if exponent >= 64 else min(
        policy.max_backoff_s, policy.base_backoff_s * float(2**exponent))
    return rand() * cap


_DELTA_SECONDS = re.compile(r"[+-]?\d+(?:\.\d+)?")


def parse_retry_after(value: str | None, now_epoch_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 section 10.2.3).

    Accepts delta-seconds (leniently: decimals and a sign too) or an HTTP-date
    (IMF-fixdate, RFC 850 or asctime). Dates in the past and negative deltas
    give 0.0. Absent or unparseable values give None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return max(0.0, float(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    if when.tzinfo is None:
        # HTTP-dates are always GMT; a zone-less asctime date means UTC.
        when = when.replace(tzinfo=UTC)
    delta = when.timestamp() - now_epoch_s
    if math.isnan(delta):
        return None
    return max(0.0, delta)


def is_retryable(policy: RetryPolicy, failure: FailedAttempt) -> bool:
    """True if the failure's error class or status is listed in the policy."""
    if failure.error_class is not None and failure.error_class in policy.retry_on:
        return True
    return failure.status is not None and failure.status in policy.retry_on_statuses


def _describe(failure: FailedAttempt) -> str:
    if failure.status is not None and failure.error_class in (None, ErrorClass.HTTP_ERROR):
        return f"status {failure.status}"
    if failure.error_class is not None:
        return failure.error_class.value
    return "unknown failure"


def _no(reason: RetryReason, detail: str) -> RetryDecision:
    return RetryDecision(retry=False, delay_s=0.0, reason=reason, detail=detail)


def decide(
    policy: RetryPolicy,
    *,
    attempt: int,
    failure: FailedAttempt,
    method: str,
    has_idempotency_key: bool,
    now: float,
    deadline: float,
    per_try_timeout_s: float,
    budget: RetryBudget | None,
    rand: Callable[[], float],
) -> RetryDecision:
    """Decide whether attempt number ``attempt`` (1-based, just failed) is retried.

    Checks, first failing one wins: retryable class/status; attempts left;
    idempotency; Retry-After cap; deadline (``now + delay + per_try_timeout_s
    <= deadline``, all on the same monotonic clock); finally the budget, which
    is charged only when everything else said yes.
    """
    what = _describe(failure)
    if not is_retryable(policy, failure):
        return _no(RetryReason.NOT_RETRYABLE, f"{what} not retryable")
    if attempt >= policy.max_attempts:
        return _no(RetryReason.MAX_ATTEMPTS, "max_attempts reached")
    verb = method.upper()
    if verb not in IDEMPOTENT_METHODS:
        if policy.retry_non_idempotent == "never":
            return _no(RetryReason.NON_IDEMPOTENT, f"non-idempotent {verb} never retried")
        if not has_idempotency_key:
            return _no(
                RetryReason.NON_IDEMPOTENT, f"non-idempotent {verb} without idempotency key"
            )
    delay = backoff_s(policy, attempt, rand)
    retry_after = failure.retry_after_s if policy.respect_retry_after else None
    if retry_after is not None:
        if retry_after > policy.retry_after_max_s:
            return _no(
                RetryReason.RETRY_AFTER_TOO_LONG,
                f"retry-after {retry_after:.1f}s exceeds cap {policy.retry_after_max_s:.1f}s",
            )
        delay = max(delay, retry_after)
    if now + delay + per_try_timeout_s > deadline:
        return _no(RetryReason.DEADLINE, "deadline: next try cannot finish")
    if budget is not None and not budget.try_spend():
        return _no(RetryReason.BUDGET, "retry budget exhausted")
    suffix = f" (retry-after {retry_after:.1f}s)" if retry_after is not None else ""
    return RetryDecision(True, delay, RetryReason.RETRYABLE, f"retryable {what}{suffix}")
