"""Retry budget: retries may add at most a fixed fraction on top of real traffic.

Why: per-request ``max_attempts`` alone multiplies load exactly when the
upstream is weakest (3 attempts = 3x traffic during an outage, and more when
layers retry independently). A budget caps retries *across* requests, the way
Finagle's ``RetryBudget`` and Envoy's ``retry_budget`` do. Hand-written because
tenacity/stamina/backoff only know per-call attempt counts; none has a shared,
clock-injectable budget.

Model (Finagle's token bucket, made exact): every request deposits ``ratio``
tokens and every retry withdraws one; both expire ``ttl_s`` after they happen.
A fixed reserve of ``min_retries_per_s * ttl_s`` lets low-traffic services
still retry. A retry is granted only if the balance is >= 1.

Guarantee (tested with hypothesis): at every granted retry at time t,

    retries in (t - ttl_s, t]  <=  ratio * requests in (t - ttl_s, t] + min_retries_per_s * ttl_s

Consequently any window (a, a + ttl_s] holds at most
``ratio * requests in (a - ttl_s, a + ttl_s] + reserve`` retries. The naive claim
"retries <= ratio * requests + reserve over *every* window of ttl_s" cannot hold
for any online budget: 100 requests at t=0 legitimately fund 20 retries at
t=9.9, yet the window (9, 19] then shows 20+ retries and zero requests.

Events are kept exactly (one deque entry per distinct timestamp, run-length
coalesced), so memory is O(distinct request timestamps in the last ttl_s).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from netscope.resilience.clock import Clock

__all__ = ["RetryBudget", "RetryBudgetConfig"]


@dataclass(frozen=True)
class RetryBudgetConfig:
    ratio: float = 0.2
    """Retries allowed per request over the trailing ttl_s (0.2 = at most +20% load)."""
    min_retries_per_s: float = 1.0
    """Floor so quiet services can still retry: reserve = this * ttl_s retries."""
    ttl_s: float = 10.0
    """How long a deposit (request) or withdrawal (retry) counts, in seconds."""

    def __post_init__(self) -> None:
        for name in ("ratio", "min_retries_per_s"):
            value = getattr(self, name)
            if math.isnan(value) or math.isinf(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if math.isnan(self.ttl_s) or math.isinf(self.ttl_s) or self.ttl_s <= 0:
            raise ValueError(f"ttl_s must be a finite number > 0, got {self.ttl_s!r}")

    @property
    def reserve(self) -> float:
        """Retries always available per ttl_s window regardless of traffic."""
        return self.min_retries_per_s * self.ttl_s


class _ExpiringCounter:
    """Sum of events that happened strictly less than ``ttl_s`` ago."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._events: deque[tuple[float, int]] = deque()  # (timestamp, count)
        self.total = 0

    def add(self, now: float) -> None:
        self.expire(now)
        if self._events and self._events[-1][0] == now:
            self._events[-1] = (now, self._events[-1][1] + 1)
        else:
            self._events.append((now, 1))
        self.total += 1

    def expire(self, now: float) -> None:
        while self._events and now - self._events[0][0] >= self._ttl_s:
            _, count = self._events.popleft()
            self.total -= count


class RetryBudget:
    """Shared retry allowance; one per upstream (or per service) is typical."""

    def __init__(self, config: RetryBudgetConfig, clock: Clock) -> None:
        self.config = config
        self._clock = clock
        self._requests = _ExpiringCounter(config.ttl_s)
        self._retries = _ExpiringCounter(config.ttl_s)

    def record_request(self) -> None:
        """Deposit: call once per original request (not per retry)."""
        self._requests.add(self._clock.monotonic())

    def available(self) -> float:
        """Retries that could be granted right now (may be fractional; >= 1 means yes)."""
        now = self._clock.monotonic()
        self._requests.expire(now)
        self._retries.expire(now)
        balance = (self.config.ratio * self._requests.total + self.config.reserve
                   - self._retries.total)
        return max(0.0, balance)

    def try_spend(self) -> bool:
        """Withdraw one retry if the budget allows; False means do not retry."""
        if self.available() < 1.0:
            return False
        self._retries.add(self._clock.monotonic())
        return True

    def snapshot(self) -> dict[str, float]:
        """Counts in the trailing ttl_s window, for metrics."""
        available = self.available()
        return {
            "requests": float(self._requests.total),
            "retries": float(self._retries.total),
            "available": available,
        }
