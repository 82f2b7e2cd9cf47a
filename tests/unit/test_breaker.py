"""Circuit breaker: transition sequences, exact reasons, windows, stale permits."""

from __future__ import annotations

import dataclasses

import pytest

from netscope.resilience.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    Permit,
    Transition,
)
from netscope.resilience.clock import FakeClock

S = BreakerState


def make(
    **overrides: object,
) -> tuple[CircuitBreaker, FakeClock, list[Transition]]:
    defaults: dict[str, object] = {"window_size_calls": 10, "minimum_calls": 4}
    defaults.update(overrides)
    config = BreakerConfig(**defaults)  # type: ignore[arg-type]
    clock = FakeClock(100.0)
    seen: list[Transition] = []
    return CircuitBreaker("upstream-a", config, clock, seen.append), clock, seen


def call(breaker: CircuitBreaker, ok: bool, duration_s: float = 0.01) -> Permit:
    permit = breaker.try_acquire()
    assert permit is not None, f"rejected in {breaker.state}"
    if ok:
        assert breaker.record_success(permit, duration_s)
    else:
        assert breaker.record_failure(permit, duration_s)
    return permit


def edges(seen: list[Transition]) -> list[tuple[str, str]]:
    return [(t.from_state.value, t.to_state.value) for t in seen]


def trip(breaker: CircuitBreaker, n: int = 4) -> None:
    for _ in range(n):
        call(breaker, ok=False)
    assert breaker.state is S.OPEN


# ------------------------------------------------------------------ config


def test_defaults_match_documented_values() -> None:
    c = BreakerConfig()
    assert (c.window_type, c.window_size_calls, c.window_duration_s, c.minimum_calls) == (
        "count", 50, 30.0, 10)
    assert (c.failure_rate_threshold, c.slow_call_rate_threshold, c.slow_call_duration_s) == (
        0.5, 1.0, 5.0)
    assert (c.wait_in_open_s, c.wait_in_open_multiplier, c.max_wait_in_open_s) == (5.0, 1.0, 60.0)
    assert (c.permitted_calls_in_half_open, c.max_wait_in_half_open_s) == (3, 30.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window_type", "sliding"),
        ("window_size_calls", 0),
        ("window_size_calls", 2.5),
        ("window_duration_s", 0.0),
        ("window_duration_s", float("inf")),
        ("minimum_calls", 0),
        ("failure_rate_threshold", 0.0),
        ("failure_rate_threshold", 1.5),
        ("failure_rate_threshold", float("nan")),
        ("slow_call_rate_threshold", 0.0),
        ("slow_call_rate_threshold", 1.01),
        ("slow_call_duration_s", -1.0),
        ("wait_in_open_s", 0.0),
        ("wait_in_open_multiplier", 0.5),
        ("max_wait_in_open_s", 1.0),
        ("permitted_calls_in_half_open", 0),
        ("max_wait_in_half_open_s", 0.0),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        BreakerConfig(**{field: value})  # type: ignore[arg-type]


def test_config_rejects_minimum_calls_above_count_window() -> None:
    with pytest.raises(ValueError, match="minimum_calls"):
        BreakerConfig(window_size_calls=5, minimum_calls=10)
    BreakerConfig(window_type="time", window_size_calls=5, minimum_calls=10)  # fine: unused


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BreakerConfig().minimum_calls = 3  # type: ignore[misc]


# ------------------------------------------------------------- CLOSED -> OPEN


def test_stays_closed_below_minimum_calls() -> None:
    breaker, _, seen = make()
    for _ in range(3):
        call(breaker, ok=False)
    assert breaker.state is S.CLOSED
    assert seen == []


def test_opens_on_failure_rate_with_exact_reason() -> None:
    breaker, clock, seen = make(minimum_calls=8)
    for ok in [True, True, True, False, False, False, False]:
        call(breaker, ok)
    assert breaker.state is S.CLOSED
    call(breaker, ok=False)  # 5 of 8 = 0.625
    assert breaker.state is S.OPEN
    assert seen == [Transition("upstream-a", S.CLOSED, S.OPEN, clock.now,
                               "failure_rate 0.62 >= 0.50 over 8 calls")]


def test_failure_rate_exactly_at_threshold_opens() -> None:
    breaker, _, seen = make()
    for ok in [True, False, True, False]:
        call(breaker, ok)
    assert seen[-1].reason == "failure_rate 0.50 >= 0.50 over 4 calls"


def test_below_threshold_stays_closed() -> None:
    breaker, _, _ = make(minimum_calls=10)
    for i in range(40):
        call(breaker, ok=i % 3 != 0)  # ~1/3 failures
    assert breaker.state is S.CLOSED


def test_count_window_evicts_oldest_calls() -> None:
    breaker, _, _ = make(window_size_calls=4, minimum_calls=4)
    call(breaker, ok=False)
    for _ in range(3):
        call(breaker, ok=True)  # window [F,T,T,T] = 0.25
    for _ in range(1):
        call(breaker, ok=True)  # F evicted: [T,T,T,T]
    assert breaker.snapshot()["failed_calls"] == 0
    call(breaker, ok=False)
    assert breaker.state is S.CLOSED  # 1/4 < 0.5
    call(breaker, ok=False)  # [T,T,F,F] = 0.5
    assert breaker.state is S.OPEN


def test_opens_on_slow_call_rate() -> None:
    breaker, _, seen = make(slow_call_rate_threshold=0.5, slow_call_duration_s=1.0)
    call(breaker, ok=True, duration_s=2.0)
    call(breaker, ok=True, duration_s=0.5)
    call(breaker, ok=True, duration_s=1.0)  # exactly the threshold is not slow
    assert breaker.state is S.CLOSED
    call(breaker, ok=True, duration_s=1.5)
    assert breaker.state is S.OPEN
    assert seen[-1].reason == "slow_call_rate 0.50 >= 0.50 over 4 calls"


def test_default_slow_rate_requires_every_call_slow() -> None:
    breaker, _, seen = make()
    for _ in range(3):
        call(breaker, ok=True, duration_s=6.0)
    call(breaker, ok=True, duration_s=0.1)
    assert breaker.state is S.CLOSED
    assert seen == []
    breaker2, _, seen2 = make()
    for _ in range(4):
        call(breaker2, ok=True, duration_s=6.0)
    assert seen2[-1].reason == "slow_call_rate 1.00 >= 1.00 over 4 calls"


def test_failure_reason_wins_when_both_rates_trip() -> None:
    breaker, _, seen = make(slow_call_rate_threshold=0.5, slow_call_duration_s=1.0)
    for _ in range(4):
        call(breaker, ok=False, duration_s=5.0)
    assert seen[-1].reason.startswith("failure_rate 1.00")


def test_duration_defaults_to_time_since_acquire() -> None:
    breaker, clock, _ = make(slow_call_duration_s=1.0)
    for _ in range(4):
        permit = breaker.try_acquire()
        assert permit is not None
        clock.advance(1.5)
        breaker.record_success(permit)
    assert breaker.state is S.OPEN


def test_time_window_evicts_old_calls() -> None:
    breaker, clock, _ = make(window_type="time", window_duration_s=10.0, minimum_calls=4)
    for _ in range(3):
        call(breaker, ok=False)
    clock.advance(10.0)  # exactly window_duration old: evicted
    call(breaker, ok=False)
    snap = breaker.snapshot()
    assert snap["calls"] == 1
    assert breaker.state is S.CLOSED
    clock.advance(9.9)
    for _ in range(2):
        call(breaker, ok=False)
    assert breaker.state is S.CLOSED  # 3 calls < minimum
    call(breaker, ok=True)  # 3 failed + 1 ok within 9.9s
    assert breaker.state is S.OPEN


def test_time_window_counts_are_unbounded_by_window_size_calls() -> None:
    breaker, _, _ = make(window_type="time", window_size_calls=1, minimum_calls=5)
    for _ in range(20):
        call(breaker, ok=True)
    assert breaker.snapshot()["calls"] == 20


def test_ignored_calls_do_not_count() -> None:
    breaker, _, _ = make()
    for _ in range(10):
        permit = breaker.try_acquire()
        assert permit is not None
        breaker.record_ignored(permit)
    assert breaker.snapshot()["calls"] == 0
    assert breaker.state is S.CLOSED


# ------------------------------------------------------------ OPEN behaviour


def test_open_rejects_and_reports_retry_after() -> None:
    breaker, clock, _ = make(wait_in_open_s=5.0)
    trip(breaker)
    assert breaker.try_acquire() is None
    assert breaker.retry_after_s() == pytest.approx(5.0)
    clock.advance(3.0)
    assert breaker.retry_after_s() == pytest.approx(2.0)
    snap = breaker.snapshot()
    assert snap["opened_at"] == 100.0
    assert snap["next_transition_at"] == 105.0


def test_retry_after_is_none_unless_open() -> None:
    breaker, _, _ = make()
    assert breaker.retry_after_s() is None
    breaker.force_open()
    assert breaker.retry_after_s() is None


def test_open_to_half_open_after_wait_reported_by_poll() -> None:
    breaker, clock, seen = make(wait_in_open_s=5.0)
    trip(breaker)
    clock.advance(4.999)
    breaker.poll()
    assert seen[-1].to_state is S.OPEN
    clock.advance(0.001)
    breaker.poll()
    assert seen[-1] == Transition("upstream-a", S.OPEN, S.HALF_OPEN, 105.0,
                                  "wait_in_open elapsed")


def test_state_property_applies_due_transition() -> None:
    breaker, clock, _ = make(wait_in_open_s=5.0)
    trip(breaker)
    clock.advance(5.0)
    assert breaker.state is S.HALF_OPEN


def test_late_poll_does_not_replay_missed_cycles() -> None:
    breaker, clock, seen = make(wait_in_open_s=5.0, max_wait_in_half_open_s=10.0)
    trip(breaker)
    clock.advance(1000.0)
    breaker.poll()
    assert edges(seen) == [("closed", "open"), ("open", "half_open")]
    assert seen[-1].at == 1100.0
    assert breaker.snapshot()["next_transition_at"] == 1110.0


# ---------------------------------------------------------------- HALF_OPEN


def to_half_open(**overrides: object) -> tuple[CircuitBreaker, FakeClock, list[Transition]]:
    breaker, clock, seen = make(**overrides)
    trip(breaker)
    clock.advance(breaker.config.wait_in_open_s)
    assert breaker.state is S.HALF_OPEN
    return breaker, clock, seen


def test_half_open_admits_only_permitted_probes() -> None:
    breaker, _, _ = to_half_open(permitted_calls_in_half_open=3)
    permits = [breaker.try_acquire() for _ in range(3)]
    assert all(p is not None for p in permits)
    assert breaker.try_acquire() is None


def test_half_open_closes_when_probes_succeed() -> None:
    breaker, _, seen = to_half_open(permitted_calls_in_half_open=3)
    permits = [breaker.try_acquire() for _ in range(3)]
    assert breaker.record_success(permits[0], 0.01)  # type: ignore[arg-type]
    assert breaker.state is S.HALF_OPEN
    assert breaker.record_success(permits[1], 0.01)  # type: ignore[arg-type]
    # 2 of 3 succeeded: even a failing third gives 0.33 < 0.5, so close now.
    assert breaker.state is S.CLOSED
    assert seen[-1].reason == "half_open probes succeeded"
    # The outstanding third probe is stale and must not count in CLOSED.
    assert not breaker.record_failure(permits[2], 0.01)  # type: ignore[arg-type]
    assert breaker.snapshot()["calls"] == 0


def test_half_open_reopens_early_when_failure_is_certain() -> None:
    breaker, clock, seen = to_half_open(permitted_calls_in_half_open=3)
    permits = [breaker.try_acquire() for _ in range(3)]
    breaker.record_failure(permits[0], 0.01)  # type: ignore[arg-type]
    assert breaker.state is S.HALF_OPEN
    breaker.record_failure(permits[1], 0.01)  # type: ignore[arg-type]
    assert breaker.state is S.OPEN
    assert seen[-1].reason == (
        "half_open probes failed: failure_rate 0.67 >= 0.50 (2 of 3 probes)")
    assert seen[-1].at == clock.now


def test_half_open_waits_for_all_probes_when_undecided() -> None:
    breaker, _, _ = to_half_open(permitted_calls_in_half_open=4)
    permits = [breaker.try_acquire() for _ in range(4)]
    breaker.record_failure(permits[0], 0.01)  # type: ignore[arg-type]
    breaker.record_success(permits[1], 0.01)  # type: ignore[arg-type]
    breaker.record_success(permits[2], 0.01)  # type: ignore[arg-type]
    assert breaker.state is S.HALF_OPEN  # 1/4 or 2/4 still possible
    breaker.record_success(permits[3], 0.01)  # type: ignore[arg-type]
    assert breaker.state is S.CLOSED


def test_half_open_slow_probes_reopen() -> None:
    breaker, _, seen = to_half_open(permitted_calls_in_half_open=2,
                                    slow_call_duration_s=1.0)
    for _ in range(2):
        permit = breaker.try_acquire()
        assert permit is not None
        breaker.record_success(permit, 3.0)
    assert seen[-1].reason == "half_open probes slow: slow_call_rate 1.00 >= 1.00 (2 of 2 probes)"


def test_ignored_probe_frees_its_slot() -> None:
    breaker, _, _ = to_half_open(permitted_calls_in_half_open=1)
    permit = breaker.try_acquire()
    assert permit is not None
    assert breaker.try_acquire() is None
    breaker.record_ignored(permit)
    assert breaker.state is S.HALF_OPEN
    again = breaker.try_acquire()
    assert again is not None
    breaker.record_success(again, 0.01)
    assert breaker.state is S.CLOSED


def test_half_open_max_wait_with_lost_probe_goes_back_to_open() -> None:
    breaker, clock, seen = to_half_open(permitted_calls_in_half_open=2,
                                        max_wait_in_half_open_s=30.0,
                                        wait_in_open_multiplier=2.0)
    lost = breaker.try_acquire()  # never returned
    done = breaker.try_acquire()
    assert lost is not None and done is not None
    breaker.record_success(done, 0.01)
    assert breaker.state is S.HALF_OPEN
    clock.advance(29.999)
    breaker.poll()
    assert breaker.state is S.HALF_OPEN
    clock.advance(0.001)
    breaker.poll()
    assert seen[-1].from_state is S.HALF_OPEN and seen[-1].to_state is S.OPEN
    assert seen[-1].reason == "half_open max wait 30.0s elapsed with 1 of 2 probes resolved"
    assert breaker.retry_after_s() == pytest.approx(10.0)  # grown: 5 * 2
    # The lost permit surfaces later: stale, ignored.
    assert not breaker.record_success(lost, 0.01)


def test_half_open_timeout_without_probes_keeps_wait() -> None:
    breaker, clock, seen = to_half_open(wait_in_open_multiplier=2.0)
    clock.advance(30.0)
    breaker.poll()
    assert seen[-1].reason == "half_open max wait 30.0s elapsed with 0 of 3 probes resolved"
    assert breaker.retry_after_s() == pytest.approx(5.0)


def test_wait_in_open_grows_on_consecutive_reopens_and_is_capped() -> None:
    breaker, clock, _ = to_half_open(wait_in_open_s=5.0, wait_in_open_multiplier=3.0,
                                     max_wait_in_open_s=60.0,
                                     permitted_calls_in_half_open=1)
    waits = []
    for _ in range(4):
        call(breaker, ok=False)  # probe fails
        wait = breaker.retry_after_s()
        assert wait is not None
        waits.append(wait)
        clock.advance(wait)
        assert breaker.state is S.HALF_OPEN
    assert waits == [15.0, 45.0, 60.0, 60.0]
    call(breaker, ok=True)
    assert breaker.state is S.CLOSED
    trip(breaker)
    assert breaker.retry_after_s() == 5.0  # recovery reset the growth


def test_huge_multiplier_does_not_overflow() -> None:
    cfg = BreakerConfig(wait_in_open_multiplier=1e10, max_wait_in_open_s=60.0)
    assert cfg.wait_in_open_for(10_000) == 60.0


# ------------------------------------------------------------- stale permits


def test_closed_permit_recorded_after_open_is_ignored() -> None:
    breaker, clock, _ = make(permitted_calls_in_half_open=1)
    slow = breaker.try_acquire()
    assert slow is not None
    trip(breaker)
    clock.advance(5.0)
    assert breaker.state is S.HALF_OPEN
    assert not breaker.record_failure(slow, 0.01)
    assert breaker.state is S.HALF_OPEN
    assert breaker.snapshot()["half_open_probes_recorded"] == 0
    breaker.record_ignored(slow)  # also harmless
    assert breaker.try_acquire() is not None


def test_double_record_is_noop() -> None:
    breaker, _, _ = make()
    permit = breaker.try_acquire()
    assert permit is not None
    assert breaker.record_failure(permit, 0.01)
    assert not breaker.record_failure(permit, 0.01)
    assert not breaker.record_success(permit, 0.01)
    assert breaker.snapshot()["calls"] == 1


def test_permit_from_before_reset_is_stale() -> None:
    breaker, _, _ = make()
    permit = breaker.try_acquire()
    assert permit is not None
    breaker.reset()
    assert not breaker.record_failure(permit, 0.01)
    assert breaker.snapshot()["calls"] == 0


def test_stale_probe_from_previous_half_open_does_not_count() -> None:
    breaker, clock, _ = to_half_open(permitted_calls_in_half_open=2,
                                     max_wait_in_half_open_s=10.0)
    old = breaker.try_acquire()
    assert old is not None
    clock.advance(10.0)
    assert breaker.state is S.OPEN
    clock.advance(breaker.retry_after_s() or 0.0)
    assert breaker.state is S.HALF_OPEN
    breaker.record_ignored(old)  # must not free a slot in the new half-open
    assert breaker.try_acquire() is not None
    assert breaker.try_acquire() is not None
    assert breaker.try_acquire() is None


# -------------------------------------------------------------- forced states


def test_force_open_rejects_until_reset() -> None:
    breaker, clock, seen = make()
    breaker.force_open()
    assert breaker.try_acquire() is None
    clock.advance(10_000)
    breaker.poll()
    assert breaker.state is S.FORCED_OPEN
    breaker.reset()
    assert breaker.state is S.CLOSED
    assert [(t.from_state.value, t.to_state.value, t.reason) for t in seen] == [
        ("closed", "forced_open", "forced by admin"),
        ("forced_open", "closed", "reset by admin"),
    ]


def test_force_closed_admits_everything_and_records_nothing() -> None:
    breaker, _, seen = make()
    breaker.force_closed()
    for _ in range(50):
        permit = breaker.try_acquire()
        assert permit is not None
        assert not breaker.record_failure(permit, 0.01)
    assert breaker.state is S.FORCED_CLOSED
    assert edges(seen) == [("closed", "forced_closed")]


def test_forcing_same_state_twice_reports_once() -> None:
    breaker, _, seen = make()
    breaker.force_open()
    breaker.force_open()
    breaker.force_closed()
    assert edges(seen) == [("closed", "forced_open"), ("forced_open", "forced_closed")]


def test_force_from_open_and_half_open() -> None:
    breaker, _, seen = to_half_open()
    breaker.force_closed()
    assert seen[-1].from_state is S.HALF_OPEN
    breaker.reset()
    trip(breaker)
    breaker.force_open()
    assert seen[-1].from_state is S.OPEN
    assert breaker.retry_after_s() is None


def test_reset_clears_window_and_growth() -> None:
    breaker, _, seen = to_half_open(wait_in_open_multiplier=2.0,
                                    permitted_calls_in_half_open=1)
    call(breaker, ok=False)
    assert breaker.retry_after_s() == 10.0
    breaker.reset()
    assert seen[-1].reason == "reset by admin"
    assert breaker.snapshot()["calls"] == 0
    trip(breaker)
    assert breaker.retry_after_s() == 5.0


def test_reset_while_closed_clears_without_transition() -> None:
    breaker, _, seen = make()
    for _ in range(3):
        call(breaker, ok=False)
    breaker.reset()
    assert seen == []
    call(breaker, ok=False)
    assert breaker.state is S.CLOSED  # only 1 call in the fresh window


# ------------------------------------------------------------------ snapshot


def test_snapshot_fields() -> None:
    breaker, _, _ = make()
    call(breaker, ok=False)
    call(breaker, ok=True, duration_s=10.0)
    snap = breaker.snapshot()
    assert snap["name"] == "upstream-a"
    assert snap["state"] == "closed"
    assert snap["failure_rate"] == 0.5
    assert snap["slow_call_rate"] == 0.5
    assert snap["calls"] == 2
    assert snap["opened_at"] is None
    assert snap["next_transition_at"] is None
    assert snap["retry_after_s"] is None


def test_snapshot_in_half_open_reports_probe_counts() -> None:
    breaker, _, _ = to_half_open(permitted_calls_in_half_open=4)
    p = breaker.try_acquire()
    breaker.try_acquire()
    breaker.record_failure(p, 0.01)  # type: ignore[arg-type]
    snap = breaker.snapshot()
    assert snap["state"] == "half_open"
    assert snap["half_open_probes_in_flight"] == 1
    assert snap["half_open_probes_recorded"] == 1
    assert snap["failure_rate"] == 1.0
    assert snap["next_transition_at"] == snap["entered_at"] + 30.0


def test_transition_callback_sees_consistent_state() -> None:
    clock = FakeClock()
    observed: list[tuple[str, str]] = []
    breaker: CircuitBreaker

    def listener(t: Transition) -> None:
        observed.append((t.to_state.value, breaker.state.value))

    breaker = CircuitBreaker("x", BreakerConfig(window_size_calls=2, minimum_calls=2),
                             clock, listener)
    for _ in range(2):
        call(breaker, ok=False)
    assert observed == [("open", "open")]


def test_works_without_callback() -> None:
    breaker = CircuitBreaker("x", BreakerConfig(window_size_calls=2, minimum_calls=2),
                             FakeClock())
    for _ in range(2):
        call(breaker, ok=False)
    assert breaker.state is S.OPEN


# --------------------------------------------------------------------- clock


def test_fake_clock_moves_only_forward() -> None:
    clock = FakeClock(5.0)
    assert clock.advance(1.5) == 6.5
    clock.now = 10.0
    assert clock.monotonic() == 10.0
    with pytest.raises(ValueError):
        clock.advance(-1.0)
    with pytest.raises(ValueError):
        clock.set(9.0)
    with pytest.raises(ValueError):
        FakeClock(float("nan"))


def test_system_clock_is_a_clock() -> None:
    from netscope.resilience.clock import Clock, SystemClock

    clock = SystemClock()
    assert isinstance(clock, Clock)
    first = clock.monotonic()
    assert clock.monotonic() >= first
