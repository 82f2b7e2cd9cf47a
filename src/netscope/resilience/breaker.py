"""Circuit breaker: a pure, clock-driven state machine (resilience4j semantics, fixed).

Why hand-written: pybreaker/aiobreaker count consecutive failures only (no
failure *rate*, no slow-call rate, no sliding time window), read the wall clock
directly (untestable without sleeps) and have no bound on how long HALF_OPEN may
last. resilience4j has the right model, so this follows its
``CircuitBreakerStateMachine`` / ``CircuitBreakerConfig`` closely, and then
addresses what its users trip over:

* **Stuck half-open.** Probes that never report back (lost task, hung socket)
  pin resilience4j's half-open slots unless ``maxWaitDurationInHalfOpenState``
  is set, and it is off by default. Here it is always on: after
  ``max_wait_in_half_open_s`` an unresolved HALF_OPEN goes back to OPEN, and
  every permit belongs to a *generation*; each transition starts a new one, so a
  permit that is never returned simply expires with its generation.
* **Stale results.** A late result from an earlier state (a CLOSED-era call
  finishing while we are already HALF_OPEN) is dropped instead of polluting the
  probe count.
* **Flapping.** ``wait_in_open_multiplier`` grows the OPEN wait on consecutive
  failed recoveries (capped by ``max_wait_in_open_s``); a successful recovery
  resets it.
* **Slow recovery decisions.** HALF_OPEN decides as soon as the outcome is
  certain (e.g. 2 of 3 probes failed at a 0.5 threshold) instead of waiting for
  every probe; the verdict is identical to waiting, only sooner.
* **Impossible configs** (``minimum_calls`` above a count window, so the breaker
  could never trip) raise at construction instead of being silently clamped.

No I/O, no asyncio, no logging or metrics inside: state changes are reported to
an ``on_transition`` callback, invoked only after the state is fully updated
(so a raising callback cannot corrupt the breaker; its exception propagates to
whoever triggered the transition). Time-based transitions (OPEN->HALF_OPEN,
HALF_OPEN timeout) are applied lazily on every public call and by ``poll()``,
which the I/O layer calls periodically so transitions are reported even with no
traffic. Not thread-safe: meant for one asyncio event loop.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from netscope.resilience.clock import Clock

__all__ = [
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "Permit",
    "Transition",
]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"


def _finite(name: str, value: float, *, low: float, high: float = math.inf,
            low_inclusive: bool = True) -> None:
    ok = not math.isnan(value) and (value >= low if low_inclusive else value > low)
    ok = ok and value <= high
    if not ok:
        bound = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {bound} {low} and <= {high}, got {value!r}")


@dataclass(frozen=True)
class BreakerConfig:
    """Breaker knobs. Ratios are 0..1, durations are seconds."""

    window_type: Literal["count", "time"] = "count"
    """Sliding window over the last N calls ("count") or the last T seconds ("time")."""
    window_size_calls: int = 50
    """Count window: how many most recent calls are evaluated."""
    window_duration_s: float = 30.0
    """Time window: calls recorded within the last this-many seconds are evaluated."""
    minimum_calls: int = 10
    """No verdict until the window holds at least this many calls (avoids 1-of-1 = 100%)."""
    failure_rate_threshold: float = 0.5
    """Open when failed/calls >= this ratio (0 < x <= 1)."""
    slow_call_rate_threshold: float = 1.0
    """Open when slow/calls >= this ratio (0 < x <= 1); 1.0 = only when every call is slow."""
    slow_call_duration_s: float = 5.0
    """A call taking strictly longer than this is slow (failed or not)."""
    wait_in_open_s: float = 5.0
    """Time OPEN rejects calls before letting probes through (HALF_OPEN)."""
    wait_in_open_multiplier: float = 1.0
    """OPEN wait grows by this factor on each consecutive failed recovery (>= 1; 1 = fixed)."""
    max_wait_in_open_s: float = 60.0
    """Cap for the grown OPEN wait."""
    permitted_calls_in_half_open: int = 3
    """Probe calls admitted in HALF_OPEN (total, counting ones in flight)."""
    max_wait_in_half_open_s: float = 30.0
    """HALF_OPEN that has not reached a verdict after this long goes back to OPEN."""

    def __post_init__(self) -> None:
        if self.window_type not in ("count", "time"):
            raise ValueError(f"window_type must be 'count' or 'time', got {self.window_type!r}")
        for name in ("window_size_calls", "minimum_calls", "permitted_calls_in_half_open"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.window_type == "count" and self.minimum_calls > self.window_size_calls:
            raise ValueError(
                f"minimum_calls ({self.minimum_calls}) must be <= window_size_calls "
                f"({self.window_size_calls}) for a count window, or the breaker can never open"
            )
        _finite("window_duration_s", self.window_duration_s, low=0, low_inclusive=False)
        _finite("failure_rate_threshold", self.failure_rate_threshold, low=0,
                high=1, low_inclusive=False)
        _finite("slow_call_rate_threshold", self.slow_call_rate_threshold, low=0,
                high=1, low_inclusive=False)
        _finite("slow_call_duration_s", self.slow_call_duration_s, low=0)
        _finite("wait_in_open_s", self.wait_in_open_s, low=0, low_inclusive=False)
        _finite("wait_in_open_multiplier", self.wait_in_open_multiplier, low=1)
        _finite("max_wait_in_open_s", self.max_wait_in_open_s, low=self.wait_in_open_s)
        _finite("max_wait_in_half_open_s", self.max_wait_in_half_open_s, low=0,
                low_inclusive=False)
        for name in ("window_duration_s", "slow_call_duration_s", "wait_in_open_s",
                     "max_wait_in_open_s", "max_wait_in_half_open_s"):
            if math.isinf(getattr(self, name)):
                raise ValueError(f"{name} must be finite")

    def wait_in_open_for(self, consecutive_reopens: int) -> float:
        """OPEN wait after ``consecutive_reopens`` failed recoveries (0 = first open)."""
        if self.wait_in_open_multiplier == 1.0 or consecutive_reopens <= 0:
            return self.wait_in_open_s
        # Exponent bounded so the float never overflows; the cap wins long before.
        exponent = min(consecutive_reopens, 1024)
        try:
            grown = self.wait_in_open_s * self.wait_in_open_multiplier**exponent
        except OverflowError:
            return self.max_wait_in_open_s
        return min(self.max_wait_in_open_s, grown)


@dataclass(frozen=True)
class Transition:
    """One state change, as reported to ``on_transition``."""

    name: str
    from_state: BreakerState
    to_state: BreakerState
    at: float
    """Monotonic time (clock seconds) at which the transition was applied."""
    reason: str


class Permit:
    """Ticket for one admitted call; hand it back through exactly one ``record_*``.

    Mutable only in its ``released`` flag so double-recording is a harmless no-op
    and no registry of outstanding permits (a leak if callers lose them) is needed
    outside HALF_OPEN.
    """

    __slots__ = ("acquired_at", "generation", "id", "released", "state")

    def __init__(self, id: int, generation: int, state: BreakerState, acquired_at: float):
        self.id = id
        self.generation = generation
        self.state = state
        self.acquired_at = acquired_at
        self.released = False

    def __repr__(self) -> str:
        return (f"Permit(id={self.id}, generation={self.generation}, state={self.state.value}, "
                f"acquired_at={self.acquired_at}, released={self.released})")


class _Window:
    """Running failed/slow totals over a count- or time-based sliding window."""

    def __init__(self, config: BreakerConfig) -> None:
        self._config = config
        # Count window: (failed, slow); time window: (recorded_at, failed, slow).
        self._entries: deque[tuple[float, bool, bool]] = deque()
        self.calls = 0
        self.failed = 0
        self.slow = 0

    def clear(self) -> None:
        self._entries.clear()
        self.calls = self.failed = self.slow = 0

    def _drop_oldest(self) -> None:
        _, failed, slow = self._entries.popleft()
        self.calls -= 1
        self.failed -= failed
        self.slow -= slow

    def evict(self, now: float) -> None:
        if self._config.window_type != "time":
            return
        # Window is (now - duration, now]: a call exactly `duration` old has left it.
        horizon = self._config.window_duration_s
        while self._entries and now - self._entries[0][0] >= horizon:
            self._drop_oldest()

    def add(self, now: float, failed: bool, slow: bool) -> None:
        self.evict(now)
        self._entries.append((now, failed, slow))
        self.calls += 1
        self.failed += failed
        self.slow += slow
        if self._config.window_type == "count" and self.calls > self._config.window_size_calls:
            self._drop_oldest()


class CircuitBreaker:
    """Failure-rate / slow-call-rate circuit breaker. See module docstring."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        clock: Clock,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._entered_at = clock.monotonic()
        self._window = _Window(config)
        self._consecutive_reopens = 0
        self._current_wait_s = config.wait_in_open_s
        self._opened_at: float | None = None
        self._permit_ids = itertools.count(1)
        # HALF_OPEN bookkeeping; bounded by permitted_calls_in_half_open.
        self._probes_in_flight: set[int] = set()
        self._probes_issued = 0
        self._probes_recorded = 0
        self._probes_failed = 0
        self._probes_slow = 0

    # ------------------------------------------------------------------ queries

    @property
    def state(self) -> BreakerState:
        """Current state, after applying any time-based transition that is due."""
        self._apply_due()
        return self._state

    @property
    def generation(self) -> int:
        """Incremented on every transition; permits from older generations are stale."""
        return self._generation

    def retry_after_s(self) -> float | None:
        """Seconds until OPEN lets probes through; None when not OPEN."""
        self._apply_due()
        if self._state is not BreakerState.OPEN or self._opened_at is None:
            return None
        return max(0.0, self._opened_at + self._current_wait_s - self._clock.monotonic())

    def next_transition_at(self) -> float | None:
        """Monotonic deadline of the next time-based transition, if any."""
        if self._state is BreakerState.OPEN and self._opened_at is not None:
            return self._opened_at + self._current_wait_s
        if self._state is BreakerState.HALF_OPEN:
            return self._entered_at + self.config.max_wait_in_half_open_s
        return None

    def snapshot(self) -> dict[str, Any]:
        """JSON-friendly view for metrics, health and the dashboard."""
        self._apply_due()
        now = self._clock.monotonic()
        self._window.evict(now)
        if self._state is BreakerState.HALF_OPEN:
            calls, failed, slow = self._probes_recorded, self._probes_failed, self._probes_slow
        else:
            calls, failed, slow = self._window.calls, self._window.failed, self._window.slow
        return {
            "name": self.name,
            "state": self._state.value,
            "generation": self._generation,
            "failure_rate": failed / calls if calls else 0.0,
            "slow_call_rate": slow / calls if calls else 0.0,
            "calls": calls,
            "failed_calls": failed,
            "slow_calls": slow,
            "minimum_calls": self.config.minimum_calls,
            "entered_at": self._entered_at,
            "opened_at": self._opened_at,
            "next_transition_at": self.next_transition_at(),
            "retry_after_s": self.retry_after_s(),
            "current_wait_in_open_s": self._current_wait_s,
            "consecutive_reopens": self._consecutive_reopens,
            "half_open_probes_in_flight": len(self._probes_in_flight),
            "half_open_probes_recorded": self._probes_recorded,
            "half_open_probes_permitted": self.config.permitted_calls_in_half_open,
        }

    # ----------------------------------------------------------------- commands

    def poll(self) -> None:
        """Apply due time-based transitions; call periodically (~1 s) from the I/O layer."""
        self._apply_due()

    def try_acquire(self) -> Permit | None:
        """Admit a call (returns a Permit) or reject it (returns None)."""
        self._apply_due()
        state = self._state
        if state in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
            return None
        if state is BreakerState.HALF_OPEN:
            if self._probes_issued >= self.config.permitted_calls_in_half_open:
                return None
            permit = self._new_permit()
            self._probes_issued += 1
            self._probes_in_flight.add(permit.id)
            return permit
        return self._new_permit()

    def record_success(self, permit: Permit, duration_s: float | None = None) -> bool:
        """Report a healthy outcome. Returns True if it counted (False: stale/duplicate)."""
        return self._record(permit, failed=False, duration_s=duration_s)

    def record_failure(self, permit: Permit, duration_s: float | None = None) -> bool:
        """Report an unhealthy outcome. Returns True if it counted (False: stale/duplicate)."""
        return self._record(permit, failed=True, duration_s=duration_s)

    def record_ignored(self, permit: Permit) -> None:
        """Release a permit without counting (e.g. a 4xx that says nothing about the upstream).

        In HALF_OPEN this frees the probe slot so another probe can be admitted.
        """
        self._apply_due()
        if permit.released:
            return
        permit.released = True
        if self._is_current_probe(permit):
            self._probes_in_flight.discard(permit.id)
            self._probes_issued -= 1

    def force_open(self, by: str = "admin") -> None:
        """Admin: reject everything until ``reset()``. Nothing is recorded meanwhile."""
        self._apply_due()
        if self._state is not BreakerState.FORCED_OPEN:
            self._transition(BreakerState.FORCED_OPEN, f"forced by {by}")

    def force_closed(self, by: str = "admin") -> None:
        """Admin: admit everything until ``reset()``. Nothing is recorded meanwhile."""
        self._apply_due()
        if self._state is not BreakerState.FORCED_CLOSED:
            self._transition(BreakerState.FORCED_CLOSED, f"forced by {by}")

    def reset(self, by: str = "admin") -> None:
        """Back to CLOSED with an empty window and the base OPEN wait.

        Outstanding permits become stale. Reported as a transition only when the
        state actually changes (a reset while CLOSED just clears the window).
        """
        self._apply_due()
        self._consecutive_reopens = 0
        self._current_wait_s = self.config.wait_in_open_s
        if self._state is BreakerState.CLOSED:
            self._window.clear()
            self._generation += 1
            return
        self._transition(BreakerState.CLOSED, f"reset by {by}")

    # ---------------------------------------------------------------- internals

    def _new_permit(self) -> Permit:
        return Permit(next(self._permit_ids), self._generation, self._state,
                      self._clock.monotonic())

    def _is_current_probe(self, permit: Permit) -> bool:
        return (self._state is BreakerState.HALF_OPEN
                and permit.generation == self._generation
                and permit.id in self._probes_in_flight)

    def _record(self, permit: Permit, *, failed: bool, duration_s: float | None) -> bool:
        self._apply_due()
        if permit.released:
            return False
        permit.released = True
        now = self._clock.monotonic()
        if duration_s is None:
            duration_s = now - permit.acquired_at
        slow = duration_s > self.config.slow_call_duration_s
        if permit.generation != self._generation:
            return False  # acquired in an earlier state: says nothing about this one
        if self._state is BreakerState.CLOSED:
            self._window.add(now, failed, slow)
            self._evaluate_closed()
            return True
        if self._is_current_probe(permit):
            self._probes_in_flight.discard(permit.id)
            self._probes_recorded += 1
            self._probes_failed += failed
            self._probes_slow += slow
            self._evaluate_half_open()
            return True
        return False  # forced states record nothing

    def _evaluate_closed(self) -> None:
        window, cfg = self._window, self.config
        if window.calls < cfg.minimum_calls:
            return
        failure_rate = window.failed / window.calls
        slow_rate = window.slow / window.calls
        if failure_rate >= cfg.failure_rate_threshold:
            reason = (f"failure_rate {failure_rate:.2f} >= {cfg.failure_rate_threshold:.2f} "
                      f"over {window.calls} calls")
        elif slow_rate >= cfg.slow_call_rate_threshold:
            reason = (f"slow_call_rate {slow_rate:.2f} >= {cfg.slow_call_rate_threshold:.2f} "
                      f"over {window.calls} calls")
        else:
            return
        self._open(reason, grow=False)

    def _evaluate_half_open(self) -> None:
        cfg = self.config
        total = cfg.permitted_calls_in_half_open
        failed, slow = self._probes_failed, self._probes_slow
        pending = total - self._probes_recorded
        # Decide as soon as the verdict over all `total` probes is already certain.
        if failed / total >= cfg.failure_rate_threshold:
            self._open(f"half_open probes failed: failure_rate {failed / total:.2f} >= "
                       f"{cfg.failure_rate_threshold:.2f} ({failed} of {total} probes)",
                       grow=True)
        elif slow / total >= cfg.slow_call_rate_threshold:
            self._open(f"half_open probes slow: slow_call_rate {slow / total:.2f} >= "
                       f"{cfg.slow_call_rate_threshold:.2f} ({slow} of {total} probes)",
                       grow=True)
        elif ((failed + pending) / total < cfg.failure_rate_threshold
              and (slow + pending) / total < cfg.slow_call_rate_threshold):
            self._consecutive_reopens = 0
            self._current_wait_s = cfg.wait_in_open_s
            self._transition(BreakerState.CLOSED, "half_open probes succeeded")

    def _open(self, reason: str, *, grow: bool) -> None:
        if grow:
            self._consecutive_reopens += 1
        self._current_wait_s = self.config.wait_in_open_for(self._consecutive_reopens)
        self._transition(BreakerState.OPEN, reason)

    def _apply_due(self) -> None:
        # Transitions are stamped with the *current* time, not the overdue
        # deadline: after a long silence we land in HALF_OPEN with a full probe
        # period instead of replaying every missed OPEN/HALF_OPEN cycle.
        now = self._clock.monotonic()
        if self._state is BreakerState.OPEN and self._opened_at is not None:
            if now >= self._opened_at + self._current_wait_s:
                self._transition(BreakerState.HALF_OPEN, "wait_in_open elapsed")
        elif self._state is BreakerState.HALF_OPEN:
            max_wait = self.config.max_wait_in_half_open_s
            if now >= self._entered_at + max_wait:
                total = self.config.permitted_calls_in_half_open
                recorded = self._probes_recorded
                reason = (f"half_open max wait {max_wait:.1f}s elapsed with {recorded} of "
                          f"{total} probes resolved")
                # No probe ever admitted = no evidence of sickness: keep the wait.
                self._open(reason, grow=self._probes_issued > 0)

    def _transition(self, to_state: BreakerState, reason: str) -> None:
        from_state = self._state
        now = self._clock.monotonic()
        self._state = to_state
        self._generation += 1
        self._entered_at = now
        self._probes_in_flight.clear()
        self._probes_issued = self._probes_recorded = 0
        self._probes_failed = self._probes_slow = 0
        if to_state is BreakerState.OPEN:
            self._opened_at = now
        elif to_state is not BreakerState.HALF_OPEN:
            self._opened_at = None
        if to_state is BreakerState.CLOSED or from_state is BreakerState.CLOSED:
            # Fresh evidence after recovery; and a window that tripped the
            # breaker must not trip it again straight after the next recovery.
            self._window.clear()
        if to_state in (BreakerState.FORCED_OPEN, BreakerState.FORCED_CLOSED):
            self._window.clear()
        if self._on_transition is not None:
            self._on_transition(Transition(self.name, from_state, to_state, now, reason))
