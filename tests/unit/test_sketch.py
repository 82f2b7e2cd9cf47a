"""The report's latency percentiles (forensics/sketch.py): within 5 % of the exact value,
whatever the distribution, in bounded memory."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from netscope.forensics.sketch import BUCKETS, GROWTH, MIN_S, LogHistogram, bucket


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@given(st.lists(st.floats(min_value=MIN_S, max_value=3600.0), min_size=1, max_size=400))
def test_quantiles_are_within_five_percent_above_the_exact_rank(values: list[float]) -> None:
    hist = LogHistogram()
    for v in values:
        hist.add(v)
    for q, got in zip((0.5, 0.95, 0.99), hist.quantiles((0.5, 0.95, 0.99)), strict=True):
        want = exact(values, q)
        assert got is not None
        assert want <= got * (1 + 1e-9) and got <= want * GROWTH * (1 + 1e-9), (q, want, got)


def test_empty_reads_none_and_out_of_range_values_are_clamped() -> None:
    assert LogHistogram().quantiles((0.5,)) == [None]
    hist = LogHistogram()
    hist.add(0.0)
    hist.add(1e9)
    assert bucket(0.0) == 0 and bucket(1e9) == BUCKETS - 1
    assert hist.quantiles((0.5,)) == [MIN_S]
    assert len(hist.counts) == 2  # a million calls would still be at most BUCKETS integers
