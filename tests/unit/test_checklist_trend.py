"""The trend verdict behind "lag stable, no continuous drift" and "queue_depth not growing".

Every rule of ``ops/trend.py`` by example, then properties over any series (hypothesis): a
series that never rises never warns, a strictly rising one beyond the floor always fails,
and a catch-up (a zero) forgives what came before it.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from netscope.ops.trend import MIN_SAMPLES, classify
from netscope.ops.verdict import Status


def series(*values: float, step_s: float = 60.0) -> list[tuple[float, float]]:
    return [(i * step_s, float(v)) for i, v in enumerate(values)]


def test_too_few_samples_is_not_judged() -> None:
    for n in range(MIN_SAMPLES):
        trend = classify(series(*range(n)), floor=0)
        assert trend.status is Status.SKIP and trend.verdict == "no history"
        assert f"{n} samples" in trend.figure


def test_flat_and_falling_pass() -> None:
    assert classify(series(50, 50, 50, 50), floor=10).verdict == "stable"
    falling = classify(series(500, 400, 300, 100), floor=10)
    assert (falling.status, falling.verdict) == (Status.PASS, "falling")


def test_growth_at_every_step_fails_as_continuous_drift() -> None:
    trend = classify(series(100, 120, 140, 160, 180), floor=10)
    assert (trend.status, trend.verdict) == (Status.FAIL, "growing continuously")
    assert trend.figure == "100 -> 180 over 4 min (+20/min), rose in 4 of 4 steps"


def test_a_flat_step_or_two_is_still_continuous() -> None:
    # 8 of 10 steps up, none down: CONTINUOUS_SHARE (80 %).
    values = [100, 110, 120, 120, 130, 140, 150, 150, 160, 170, 180]
    assert classify(series(*values), floor=10).status is Status.FAIL
    # 7 of 10 up: growing, not continuous.
    values = [100, 110, 120, 120, 130, 140, 140, 150, 150, 160, 170]
    assert classify(series(*values), floor=10).status is Status.WARN


def test_a_net_rise_with_dips_warns() -> None:
    trend = classify(series(100, 300, 150, 400), floor=10)
    assert (trend.status, trend.verdict) == (Status.WARN, "growing")


def test_a_rise_within_the_floor_or_the_noise_band_passes() -> None:
    # +8 messages with a floor of 10: the commit interval, not a drift.
    assert classify(series(100, 102, 105, 108), floor=10).status is Status.PASS
    # +50 on a level of 1000 with dips: within 10 % of the peak.
    assert classify(series(1000, 1040, 990, 1050), floor=10).status is Status.PASS


def test_caught_up_recently_passes_and_growth_since_the_catch_up_is_judged() -> None:
    recent = classify(series(500, 800, 900, 0, 5), floor=10)
    assert (recent.status, recent.verdict) == (Status.PASS, "caught up")
    assert recent.figure == "at 0 60 s ago, 5 now"
    # Zero at the start, then growth at every step: the drift after the catch-up counts.
    drift = classify(series(0, 50, 100, 150, 200), floor=10)
    assert drift.status is Status.FAIL
    assert drift.figure.startswith("0 -> 200")


def test_spans_read_in_seconds_when_short() -> None:
    trend = classify(series(1, 1, 1, step_s=5.0), floor=1)
    assert "over 10 s" in trend.figure


values = st.lists(st.integers(min_value=0, max_value=10_000), min_size=MIN_SAMPLES, max_size=30)


@given(values)
def test_a_series_that_never_rises_never_warns(vals: list[int]) -> None:
    ordered = sorted(vals, reverse=True)
    assert classify(series(*ordered), floor=0).status in (Status.PASS,)


@given(st.integers(min_value=1, max_value=1000), st.integers(min_value=MIN_SAMPLES, max_value=30),
       st.integers(min_value=1, max_value=50))  # fmt: skip
def test_a_strictly_rising_series_beyond_the_floor_always_fails(
    start: int, n: int, step: int
) -> None:
    vals = [start + i * step for i in range(n)]
    floor = (vals[-1] - vals[0]) - 1
    assert classify(series(*vals), floor=floor).status is Status.FAIL


@given(values)
def test_the_verdict_depends_only_on_what_follows_the_last_zero(vals: list[int]) -> None:
    with_zero = [*vals, 0, *vals]
    after = [0, *vals]
    a = classify(series(*with_zero), floor=5)
    b = classify(series(*after), floor=5)
    assert a.status is b.status and a.verdict == b.verdict
