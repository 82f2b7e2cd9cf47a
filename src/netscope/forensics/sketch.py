"""Latency percentiles in constant memory: a log-bucketed histogram.

A report over ten million calls cannot keep every latency to sort it. Each value goes into
a bucket whose bounds grow by ``GROWTH`` (5 %), from 1 ms to about 2 h, so a quantile read
back is within 5 % of the true value, whatever the count, in at most ``BUCKETS`` integers
per series (the idea of HdrHistogram and DDSketch, small enough to write here rather than
add a dependency for one function). Values under 1 ms fall in bucket 0 and read as 1 ms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MIN_S = 0.001
GROWTH = 1.05
_LOG_GROWTH = math.log(GROWTH)
BUCKETS = 330  # 0.001 * 1.05**330 is about 9,800 s: beyond any deadline


def bucket(value_s: float) -> int:
    if value_s <= MIN_S:
        return 0
    return min(BUCKETS - 1, int(math.log(value_s / MIN_S) / _LOG_GROWTH) + 1)


def upper_bound(index: int) -> float:
    """The largest value bucket ``index`` holds (what a quantile in it reads as)."""
    return MIN_S * GROWTH**index


class LogHistogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, value_s: float) -> None:
        i = bucket(value_s)
        self.counts[i] = self.counts.get(i, 0) + 1
        self.total += 1

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """The value below which a share ``q`` of the values lie, for each ``q`` (ascending);
        None when empty."""
        if not self.total:
            return [None for _ in qs]
        out: list[float | None] = []
        ordered = sorted(self.counts.items())
        seen, j = 0, 0
        for q in qs:
            rank = max(1, math.ceil(q * self.total))
            while seen + ordered[j][1] < rank:
                seen += ordered[j][1]
                j += 1
            out.append(upper_bound(ordered[j][0]))
        return out
