"""Token bucket rate limiter, pure and clock-driven, re-tunable at runtime.

Why hand-written: aiolimiter and friends own the waiting (``async with``) and
read the event loop clock, so they cannot answer "how long until n tokens?"
without blocking, cannot be re-rated while in use (the ingest throttle changes
the rate as upstream health changes), and cannot be tested without sleeping.
This class only does arithmetic; the I/O layer decides whether to wait
(``wait_time_s``) or shed (``try_acquire``).

Special rates, chosen so the type stays ``float``:

* ``rate_per_s == 0`` means **paused**: nothing is granted, not even banked
  tokens, and ``wait_time_s`` is ``math.inf``. Banked tokens are kept and are
  usable again once the rate goes back above zero.
* ``rate_per_s == math.inf`` means **unlimited**: every request is granted
  immediately, ``wait_time_s`` is 0. ``burst`` is ignored while unlimited; on
  switching back to a finite rate the bucket starts full.

A request for more than ``burst`` tokens can never succeed: ``try_acquire``
returns False and ``wait_time_s`` returns ``math.inf`` instead of a deadline
that would never come.
"""

from __future__ import annotations

import math

from netscope.resilience.clock import Clock

__all__ = ["TokenBucket"]

# Refill arithmetic is floating point; a caller that waits exactly
# wait_time_s() must then be granted, not miss by one ulp.
_EPSILON = 1e-9


def _check(rate_per_s: float, burst: int) -> None:
    if math.isnan(rate_per_s) or rate_per_s < 0:
        raise ValueError(
            f"rate_per_s must be >= 0 (0 = paused, inf = unlimited), got {rate_per_s!r}"
        )
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be an int >= 1, got {burst!r}")


class TokenBucket:
    """``rate_per_s`` tokens per second refill a bucket of at most ``burst`` tokens.

    Starts full, so a freshly started service may send ``burst`` calls at once.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Clock) -> None:
        _check(rate_per_s, burst)
        self._clock = clock
        self._rate = float(rate_per_s)
        self._burst = burst
        self._tokens = float(burst)
        self._updated_at = clock.monotonic()

    @property
    def rate_per_s(self) -> float:
        """Refill rate in tokens per second (0 = paused, inf = unlimited)."""
        return self._rate

    @property
    def burst(self) -> int:
        """Bucket capacity in tokens: the largest instantaneous burst."""
        return self._burst

    @property
    def paused(self) -> bool:
        return self._rate == 0.0

    @property
    def unlimited(self) -> bool:
        return math.isinf(self._rate)

    def tokens(self) -> float:
        """Tokens currently banked (after refill)."""
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = max(0.0, now - self._updated_at)
        self._updated_at = now
        if self.unlimited:
            self._tokens = float(self._burst)
        elif self._rate > 0:
            self._tokens = min(float(self._burst), self._tokens + elapsed * self._rate)

    def try_acquire(self, n: int = 1) -> bool:
        """Take ``n`` tokens if available now; never blocks."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self._refill()
        if self.unlimited:
            return True
        if self.paused or n > self._burst:
            return False
        if self._tokens + _EPSILON >= n:
            self._tokens = max(0.0, self._tokens - n)
            return True
        return False

    def wait_time_s(self, n: int = 1) -> float:
        """Seconds until ``n`` tokens are available (0 = now, inf = never at this rate).

        Advisory: another caller may take the tokens first, so re-check with
        ``try_acquire`` after waiting.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self._refill()
        if self.unlimited:
            return 0.0
        if self.paused or n > self._burst:
            return math.inf
        missing = n - self._tokens
        if missing <= _EPSILON:
            return 0.0
        return missing / self._rate

    def set_rate(self, rate_per_s: float, burst: int | None = None) -> None:
        """Change rate (and optionally burst) from now on.

        Tokens accrued so far are settled at the old rate first; shrinking
        ``burst`` drops the excess tokens, growing it does not add any.
        """
        new_burst = self._burst if burst is None else burst
        _check(rate_per_s, new_burst)
        was_unlimited = self.unlimited
        self._refill()
        self._rate = float(rate_per_s)
        self._burst = new_burst
        if was_unlimited and not self.unlimited:
            self._tokens = float(new_burst)
        self._tokens = min(self._tokens, float(new_burst))
