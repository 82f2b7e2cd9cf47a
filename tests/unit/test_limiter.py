"""Token bucket: refill, burst, wait times, runtime re-rating, paused/unlimited."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscope.resilience.clock import FakeClock
from netscope.resilience.limiter import TokenBucket


def make(rate: float = 10.0, burst: int = 5) -> tuple[TokenBucket, FakeClock]:
    clock = FakeClock(10.0)
    return TokenBucket(rate, burst, clock), clock


def test_starts_full_and_drains() -> None:
    bucket, _ = make(rate=10.0, burst=5)
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    assert (bucket.rate_per_s, bucket.burst) == (10.0, 5)


def test_refills_at_rate_up_to_burst() -> None:
    bucket, clock = make(rate=10.0, burst=5)
    for _ in range(5):
        bucket.try_acquire()
    clock.advance(0.25)
    assert bucket.tokens() == pytest.approx(2.5)
    clock.advance(100.0)
    assert bucket.tokens() == 5.0


def test_wait_time_then_acquire_succeeds_exactly() -> None:
    bucket, clock = make(rate=3.0, burst=2)
    assert bucket.wait_time_s() == 0.0
    bucket.try_acquire(2)
    wait = bucket.wait_time_s()
    assert wait == pytest.approx(1 / 3)
    clock.advance(wait)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()


def test_wait_time_for_n_tokens() -> None:
    bucket, _ = make(rate=2.0, burst=10)
    bucket.try_acquire(10)
    assert bucket.wait_time_s(4) == pytest.approx(2.0)


def test_acquire_n_is_all_or_nothing() -> None:
    bucket, _ = make(rate=1.0, burst=5)
    bucket.try_acquire(3)
    assert not bucket.try_acquire(3)
    assert bucket.tokens() == pytest.approx(2.0)


def test_more_than_burst_is_never_possible() -> None:
    bucket, _ = make(rate=100.0, burst=5)
    assert not bucket.try_acquire(6)
    assert bucket.wait_time_s(6) == math.inf


def test_zero_rate_pauses_but_keeps_bank() -> None:
    bucket, clock = make(rate=10.0, burst=5)
    bucket.try_acquire(2)
    bucket.set_rate(0.0)
    assert bucket.paused
    assert not bucket.try_acquire()
    assert bucket.wait_time_s() == math.inf
    clock.advance(100.0)
    assert bucket.tokens() == pytest.approx(3.0)  # no refill while paused
    bucket.set_rate(10.0)
    assert [bucket.try_acquire() for _ in range(4)] == [True] * 3 + [False]


def test_infinite_rate_is_unlimited() -> None:
    bucket, _ = make(rate=math.inf, burst=1)
    assert bucket.unlimited
    assert all(bucket.try_acquire(1000) for _ in range(1000))
    assert bucket.wait_time_s(10**6) == 0.0


def test_leaving_unlimited_starts_full() -> None:
    bucket, _ = make(rate=math.inf, burst=3)
    bucket.try_acquire()
    bucket.set_rate(1.0)
    assert bucket.tokens() == 3.0


def test_set_rate_settles_at_old_rate_first() -> None:
    bucket, clock = make(rate=10.0, burst=100)
    bucket.try_acquire(100)
    clock.advance(1.0)  # +10 at old rate
    bucket.set_rate(1.0)
    clock.advance(1.0)  # +1 at new rate
    assert bucket.tokens() == pytest.approx(11.0)


def test_set_rate_shrinking_burst_drops_excess() -> None:
    bucket, _ = make(rate=10.0, burst=10)
    bucket.set_rate(10.0, burst=3)
    assert bucket.burst == 3
    assert bucket.tokens() == 3.0
    bucket.set_rate(10.0, burst=8)
    assert bucket.tokens() == 3.0  # growing does not mint tokens


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1), (float("nan"), 1), (1.0, 0), (1.0, 1.5)])
def test_validation(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"rate_per_s|burst"):
        TokenBucket(rate, burst, FakeClock())
    bucket, _ = make()
    with pytest.raises(ValueError):
        bucket.set_rate(rate, burst)


def test_negative_n_rejected() -> None:
    bucket, _ = make()
    with pytest.raises(ValueError):
        bucket.try_acquire(-1)
    with pytest.raises(ValueError):
        bucket.wait_time_s(-1)


@given(
    rate=st.floats(0.1, 100.0),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0.0, 1.0), max_size=200),
)
def test_grants_never_exceed_burst_plus_rate_times_elapsed(
    rate: float, burst: int, gaps: list[float]
) -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate, burst, clock)
    granted = 0
    for gap in gaps:
        clock.advance(gap)
        granted += bucket.try_acquire()
    assert granted <= burst + rate * clock.now + 1e-6
