"""Is a series growing? A verdict over samples, without a fixed threshold.

Section 5 asks for a consumer lag "stable, without continuous drift" and a queue depth "not
growing": those are statements about a shape over time, not about a level (a lag of 5,000
is fine on a busy topic and alarming on a quiet one). The rules follow LinkedIn's Burrow:

- a consumer that caught up (a sample at zero) is judged only on what came after: growth
  before it was absorbed;
- growth at (nearly) every step of the window is the drift the runbook forbids: **fail**;
- a net rise larger than the noise band is worth a look: **warn**;
- anything else (flat, falling, noisy around a level): **pass**.

The noise band is the larger of an absolute floor chosen by the caller (a few messages of
lag are the commit interval, not a drift) and a share of the window's peak.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from netscope.ops.verdict import Status

MIN_SAMPLES = 3  # two points make a slope, not a trend
CONTINUOUS_SHARE = 0.8  # "rose at nearly every step": tolerates a flat step or two
RELATIVE_BAND = 0.1  # a net rise within 10 % of the peak is noise


@dataclass(frozen=True, slots=True)
class Trend:
    status: Status
    verdict: str  # stable, falling, caught up, growing, growing continuously, no history
    figure: str


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


def _span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def classify(
    samples: Sequence[tuple[float, float]],
    *,
    floor: float,
    min_samples: int = MIN_SAMPLES,
) -> Trend:
    """Judge ``samples`` ((unix time, value) in time order) for growth.

    ``floor`` is the smallest net rise that may count as growth, in the series' unit.
    """
    if len(samples) < min_samples:
        return Trend(
            Status.SKIP,
            "no history",
            f"{len(samples)} samples in the window (needs at least {min_samples})",
        )
    last_zero = max((i for i, (_, v) in enumerate(samples) if v <= 0), default=None)
    if last_zero is not None:
        since = samples[last_zero:]
        if len(since) < min_samples:
            ago = samples[-1][0] - samples[last_zero][0]
            return Trend(
                Status.PASS,
                "caught up",
                f"at 0 {_span(ago)} ago, {_fmt(samples[-1][1])} now",
            )
        samples = since
    values = [v for _, v in samples]
    steps = [b - a for a, b in itertools.pairwise(values)]
    rising = sum(1 for d in steps if d > 0)
    falling = sum(1 for d in steps if d < 0)
    net = values[-1] - values[0]
    span_s = samples[-1][0] - samples[0][0]
    per_min = net / span_s * 60 if span_s > 0 else 0.0
    figure = (
        f"{_fmt(values[0])} -> {_fmt(values[-1])} over {_span(span_s)} "
        f"({per_min:+.3g}/min), rose in {rising} of {len(steps)} steps"
    )
    if falling == 0 and rising >= CONTINUOUS_SHARE * len(steps) and net > floor:
        return Trend(Status.FAIL, "growing continuously", figure)
    if net > max(floor, RELATIVE_BAND * max(values)):
        return Trend(Status.WARN, "growing", figure)
    return Trend(Status.PASS, "falling" if net < 0 else "stable", figure)
