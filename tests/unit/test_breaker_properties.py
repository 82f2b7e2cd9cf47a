"""Hypothesis state machine: no operation sequence breaks the breaker's contract.

Checked after every step: only legal edges are reported, reports chain
(each from_state equals the previous to_state), HALF_OPEN never admits more
than its probe quota, and after ``poll()`` neither OPEN nor HALF_OPEN has
outlived its deadline. A shadow model also checks that reset/force edges only
come from the admin operations.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from netscope.resilience.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    Permit,
    Transition,
)
from netscope.resilience.clock import FakeClock

S = BreakerState
EPSILON = 1e-9

AUTOMATIC_EDGES = {
    (S.CLOSED, S.OPEN),
    (S.OPEN, S.HALF_OPEN),
    (S.HALF_OPEN, S.CLOSED),
    (S.HALF_OPEN, S.OPEN),
}

configs = st.builds(
    BreakerConfig,
    window_type=st.sampled_from(["count", "time"]),
    window_size_calls=st.integers(5, 10),
    window_duration_s=st.floats(1.0, 20.0),
    minimum_calls=st.integers(1, 5),
    failure_rate_threshold=st.floats(0.1, 1.0),
    slow_call_rate_threshold=st.floats(0.1, 1.0),
    slow_call_duration_s=st.floats(0.0, 3.0),
    wait_in_open_s=st.floats(0.5, 10.0),
    wait_in_open_multiplier=st.floats(1.0, 3.0),
    max_wait_in_open_s=st.floats(10.0, 40.0),
    permitted_calls_in_half_open=st.integers(1, 4),
    max_wait_in_half_open_s=st.floats(0.5, 20.0),
)


class BreakerMachine(RuleBasedStateMachine):
    permits = Bundle("permits")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(1000.0)
        self.seen: list[Transition] = []
        self.admin_op: str | None = None
        self.breaker: CircuitBreaker

    @initialize(config=configs)
    def setup(self, config: BreakerConfig) -> None:
        self.config = config
        self.breaker = CircuitBreaker("p", config, self.clock, self._on_transition)

    def _on_transition(self, t: Transition) -> None:
        previous = self.seen[-1].to_state if self.seen else S.CLOSED
        assert t.from_state == previous, f"broken chain: {previous} then {t}"
        assert t.from_state != t.to_state, t
        assert t.at == self.clock.now
        if t.to_state in (S.FORCED_OPEN, S.FORCED_CLOSED):
            assert self.admin_op == "force", t
        elif t.from_state in (S.FORCED_OPEN, S.FORCED_CLOSED):
            assert t.to_state is S.CLOSED and self.admin_op == "reset", t
        elif t.to_state is S.CLOSED and self.admin_op == "reset":
            assert t.reason == "reset by admin"
        else:
            assert (t.from_state, t.to_state) in AUTOMATIC_EDGES, t
        self.seen.append(t)

    @rule(outcome=st.sampled_from(["success", "success", "failure", "ignored"]),
          duration=st.floats(0.0, 5.0))
    def call(self, outcome: str, duration: float) -> None:
        permit = self.breaker.try_acquire()
        if permit is None:
            return
        if outcome == "ignored":
            self.breaker.record_ignored(permit)
        else:
            getattr(self.breaker, f"record_{outcome}")(permit, duration)

    @rule(target=permits)
    def acquire(self) -> Permit | None:
        return self.breaker.try_acquire()

    def _report(self, permit: Permit | None, outcome: str, duration: float) -> None:
        if permit is None:
            return
        self.breaker.poll()  # settle due transitions so `generation` is the one judged
        generation = self.breaker.generation
        if outcome == "ignored":
            self.breaker.record_ignored(permit)
            return
        counted = getattr(self.breaker, f"record_{outcome}")(permit, duration)
        # Only a permit of the current generation may ever count.
        assert not counted or permit.generation == generation, (permit, generation)

    @rule(permit=consumes(permits),
          outcome=st.sampled_from(["success", "failure", "ignored"]),
          duration=st.floats(0.0, 5.0))
    def report(self, permit: Permit | None, outcome: str, duration: float) -> None:
        self._report(permit, outcome, duration)

    @rule(permit=permits)
    def report_again(self, permit: Permit | None) -> None:
        # Duplicate/stale report of a permit still in the bundle: must not count.
        if permit is not None and permit.released:
            assert not self.breaker.record_failure(permit, 0.0)
        else:
            self._report(permit, "failure", 0.0)

    @rule(seconds=st.one_of(st.floats(0.0, 2.0), st.floats(0.0, 60.0)))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def poll(self) -> None:
        self.breaker.poll()
        snap = self.breaker.snapshot()
        now = self.clock.now
        if snap["state"] == S.HALF_OPEN:
            assert now - snap["entered_at"] < self.config.max_wait_in_half_open_s + EPSILON
        if snap["state"] == S.OPEN:
            assert now - snap["opened_at"] < snap["current_wait_in_open_s"] + EPSILON

    @rule(op=st.sampled_from(["force_open", "force_closed", "reset"]),
          dice=st.integers(0, 7))
    def admin(self, op: str, dice: int) -> None:
        # Admin operations are rare in life; at full frequency they would keep
        # the breaker away from the automatic OPEN/HALF_OPEN paths under test.
        if dice != 0:
            return
        self.admin_op = "reset" if op == "reset" else "force"
        try:
            getattr(self.breaker, op)()
        finally:
            self.admin_op = None

    @invariant()
    def probe_quota_respected(self) -> None:
        if not hasattr(self, "breaker"):
            return
        snap = self.breaker.snapshot()
        if snap["state"] == S.HALF_OPEN:
            used = snap["half_open_probes_in_flight"] + snap["half_open_probes_recorded"]
            assert used <= self.config.permitted_calls_in_half_open

    @invariant()
    def open_wait_within_bounds(self) -> None:
        if not hasattr(self, "breaker"):
            return
        wait = self.breaker.snapshot()["current_wait_in_open_s"]
        assert self.config.wait_in_open_s <= wait <= self.config.max_wait_in_open_s

    @invariant()
    def rates_are_ratios(self) -> None:
        if not hasattr(self, "breaker"):
            return
        snap = self.breaker.snapshot()
        assert 0.0 <= snap["failure_rate"] <= 1.0
        assert 0.0 <= snap["slow_call_rate"] <= 1.0
        if self.config.window_type == "count":
            assert snap["calls"] <= self.config.window_size_calls


BreakerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBreakerStateMachine = BreakerMachine.TestCase
