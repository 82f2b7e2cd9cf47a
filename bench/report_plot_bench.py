"""Which library draws the static plots of `netscope report`: matplotlib, Altair + vl-convert,
or pygal.

    .venv/bin/python bench/report_plot_bench.py --minutes 180 --rounds 3
        [--seed 7] [--warmup 1] [--libs matplotlib,altair,pygal] [--html DIR]
        [--mpl-fonttype none|path]

Install the candidates first (none of them is a NetScope dependency):
``.venv/bin/pip install matplotlib altair vl-convert-python pygal``.

The post-incident report is one self-contained HTML file that must open offline: static plots
as inline SVG, no JavaScript, no CDN, no external fonts or URLs. This bench draws the report's
five plots from one synthetic data set (``random.Random(--seed)``, stdlib only, so no
candidate pays for another's imports) over a window of ``--minutes`` minutes and 3 upstreams
(an incident on payments a third of the way in):

1. outcomes per minute per upstream: stacked bars success / failed / timeout / rejected, one
   panel per upstream (pygal has no panels: one chart per upstream, so 3 SVGs);
2. latency p50 / p95 / p99 per minute, seconds, log scale;
3. timeouts per minute by kind (timeout_connect, timeout_read, deadline_exceeded);
4. breaker state per upstream over time, step lines (closed=0, half_open=1, open=2);
5. audit spool backlog (records) at a few control-event moments, step line with points.

Each library in its own idiom, configured for the offline report:

- ``matplotlib``: Agg backend, ``matplotlib.figure.Figure`` (no pyplot state), ``savefig`` to
  SVG into a BytesIO, ``metadata`` all ``None`` (else an RDF block names purl.org,
  creativecommons.org and matplotlib.org), ``svg.hashsalt`` fixed, ``svg.fonttype`` from
  ``--mpl-fonttype`` (``none``: text as ``<text>`` like the others, the default here;
  ``path``: glyphs as paths, pixel-identical everywhere, larger);
- ``altair``: ``alt.Data(values=...)`` (no pandas), ``chart.to_dict()`` (schema validation
  included) then ``vl_convert.vegalite_to_svg(spec, vl_version=...)`` with the Vega-Lite
  version Altair targets; the first call starts vl-convert's embedded V8;
- ``pygal``: ``js=[]`` and an ``add_xml_filter`` hook that drops the inline ``<script>``
  (pygal always writes one with its tooltip config, even with ``js=[]``), the two comments
  naming pygal.org / github.com, and the per-point ``<desc>`` tooltip data that only
  pygal.js reads (without it: 40 % of pygal's bytes).

Every candidate runs in its own subprocess (``python this-file --worker LIB``), rounds
interleaved (matplotlib, altair, pygal, baseline, matplotlib, ...) after ``--warmup`` rounds
that are thrown away (page cache, first-run effects). ``baseline`` is the same subprocess
with no plotting library: interpreter start, this module's stdlib imports and the data set.

Columns: ``import s`` the library's imports, ``render s`` the five plots to SVG text,
``1st s`` the first plot alone (lazy initialisation shows there), ``wall s`` the whole
subprocess as a CLI user waits for it, ``CPU s`` its user + system time (all threads, from
``getrusage(RUSAGE_CHILDREN)`` around it), ``RSS MiB`` its peak resident set (the worker's
``ru_maxrss``), ``SVG KiB`` the bytes of all SVGs, ``refs`` the external references found
(must be 0: an ``http(s)://`` URL other than ``http://www.w3.org/...`` namespaces, a
``<script``, ``@import``, a ``href``/``url()`` not local (``#``) or ``data:``, an ``on...=``
handler, ``javascript:``), ``dup ids`` the element ids defined in more than one SVG of the
report (invalid HTML once the SVGs are inlined in one page), ``clash`` those of them that
are referenced (``url(#id)``, ``href="#id"``) and defined differently, so render wrong
(matplotlib's referenced ids hash their content: shared, not clashing). Medians over
``--rounds``.
The machine's speed drifts from run to run: compare within one run only (the ratio table).
Installed size: ``du -sk`` of each distribution's files under site-packages (its RECORD),
alone, with its whole dependency closure, and what it adds to NetScope's own closure.

Figures (2026-12-05, this machine: 2 cores shared with a CI test run (pytest with its Kafka,
Ceph RGW and Prometheus services; load average 1.0-1.1), so +-30 %; Python 3.11.7;
``--minutes 180 --rounds 3``, seed 7, medians of 3 rounds after 1 warm-up round; matplotlib
3.11.2, altair 6.3.0 + vl-convert-python 1.9.0.post1, pygal 3.1.3):

    library     import s  render s  1st s  wall s  CPU s  RSS MiB  SVG KiB  SVGs  refs  clash
    matplotlib     0.339     1.975  1.453   2.724  2.803      101      518     5     0      0
    altair         0.218     1.193  0.865   1.633  1.685      192      494     5     0      0
    pygal          0.021     0.242  0.212   0.406  0.401       26      479     7     0      0
    baseline           -         -      -   0.090  0.085       20        -     -     -      -

    ratio to matplotlib   import  render  wall   CPU   RSS   SVG bytes
    altair                  0.64    0.60  0.60  0.60  1.91   0.95
    pygal                   0.06    0.12  0.15  0.14  0.26   0.92

    installed (du -sk, MiB)  alone  with deps  added to NetScope's deps
    matplotlib                36.9      170.6  169.4 (numpy, pillow, fonttools, contourpy, ...)
    altair + vl-convert       93.5      105.7  103.5 (vl-convert 84 MiB: embedded V8)
    pygal                      1.3        1.8    1.8 (importlib-metadata, zipp, lazy-importer)

Plot 1 (2,160 stacked bars) is most of every render: matplotlib draws each bar as a patch
(1.45 s of its 2.0 s; the same data as stacked step areas, ``fill_between(step="post")``,
takes 0.16 s), and vl-convert's first call also starts its V8. All three pass the offline
check once configured as above (matplotlib's default metadata and pygal's script and comments
fail it). Matplotlib repeats 89 ids across its 5 SVGs (``figure_1``, ``axes_1``, ...; the
referenced ones hash their content, so they do not clash); pygal repeats 3 unreferenced ids
and names its charts by ``uuid4``, so its output differs from run to run.
``--mpl-fonttype path`` makes matplotlib's SVGs 594 KiB instead of 518. A repeat run minutes
earlier (pygal still keeping its ``<desc>``: 820 KiB) gave the same order: wall 2.78 / 1.84 /
0.47 s.

Choice: matplotlib, against pygal's better figures here, for what the report must show. Its
plots shade the detected incident and the degraded periods behind every time axis
(``axvspan``), draw latency on a log axis that stays legible, stack outcomes as step areas
in one panel per upstream, and come out identical from run to run; pygal has no panels, no
shaded spans, crowded log labels, random ids, and needs its own inline script stripped by a
filter hook that a pygal release could break. The cost is real and measured: the shipped
plots (forensics/plots.py: step areas, not the bars above) render in 1.4 s at 82 MiB peak
for a 180-minute window of 3 upstreams (measured 2026-12-05 on the report of
``bench/audit_engine_bench.py``'s data set), in a command that spends 2-10 s reading a day of
audit; and the install grows by 170 MiB (numpy, pillow, fonttools). Altair's startup, memory
and embedded V8 buy nothing a static report needs. If install size ever matters more than
the plots, pygal is the measured fallback.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

CANDIDATES = ("matplotlib", "altair", "pygal")
BASELINE = "baseline"
DISTRIBUTIONS = {  # candidate -> distributions whose versions and sizes are reported
    "matplotlib": ("matplotlib",),
    "altair": ("altair", "vl-convert-python"),
    "pygal": ("pygal",),
}
START = datetime(2024, 5, 1, 4, 0, tzinfo=UTC)
UPSTREAMS = ("payments", "inventory", "notifications")
OUTCOMES = ("success", "failed", "timeout", "rejected")
OUTCOME_COLORS = ("#4c9a2a", "#d1495b", "#edae49", "#7d7d7d")
QUANTILES = ("p50", "p95", "p99")
TIMEOUT_KINDS = ("timeout_connect", "timeout_read", "deadline_exceeded")
BREAKER_STATES = ("closed", "half_open", "open")
WIDTH_PX, HEIGHT_PX, PANEL_PX = 900, 260, 150

# --- the data set ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """What the report plots; steps are (minute offset, value) change points."""

    minutes: int
    times: list[datetime]
    outcomes: dict[str, dict[str, list[int]]]  # upstream -> outcome -> count per minute
    latency: dict[str, list[float]]  # quantile -> seconds per minute
    timeouts: dict[str, list[int]]  # kind -> count per minute
    breaker: dict[str, list[tuple[float, int]]]  # upstream -> (minute, state) changes
    backlog: list[tuple[float, int]]  # (minute, spool records) at control events

    def at(self, minute: float) -> datetime:
        return START + timedelta(minutes=minute)

    def label(self, i: int) -> str:
        return self.times[i].strftime("%H:%M")


def _count(rnd: random.Random, n: int, p: float) -> int:
    """A binomial draw by its normal approximation (n is in the hundreds)."""
    if n <= 0 or p <= 0.0:
        return 0
    mean = n * p
    return max(0, min(n, round(rnd.gauss(mean, math.sqrt(mean * (1.0 - p))))))


def make_data(minutes: int, seed: int) -> Dataset:
    rnd = random.Random(seed)
    s = minutes // 3  # incident start (minute offset)
    e = s + max(12, minutes // 9)  # incident end
    rates = {"payments": 300, "inventory": 180, "notifications": 120}
    outcomes = {up: {o: [] for o in OUTCOMES} for up in UPSTREAMS}
    latency: dict[str, list[float]] = {q: [] for q in QUANTILES}
    timeouts: dict[str, list[int]] = {k: [] for k in TIMEOUT_KINDS}
    for m in range(minutes):
        incident = s <= m < e
        minute_timeouts = 0
        for up in UPSTREAMS:
            total = max(0, round(rnd.gauss(rates[up], rates[up] * 0.08)))
            hit = incident and up == "payments"
            p_timeout, p_rejected, p_failed = (0.30, 0.20, 0.03) if hit else (0.004, 0.001, 0.01)
            if up == "inventory" and s + 5 <= m < s + 8:  # a short knock-on
                p_timeout, p_rejected = 0.08, 0.05
            timeout = _count(rnd, total, p_timeout)
            rejected = _count(rnd, total - timeout, p_rejected)
            failed = _count(rnd, total - timeout - rejected, p_failed)
            counts = (total - timeout - rejected - failed, failed, timeout, rejected)
            for o, c in zip(OUTCOMES, counts, strict=True):
                outcomes[up][o].append(c)
            minute_timeouts += timeout
        read = _count(rnd, minute_timeouts, 0.85 if incident else 0.6)
        deadline = _count(rnd, minute_timeouts - read, 0.7 if incident else 0.3)
        timeouts["timeout_read"].append(read)
        timeouts["deadline_exceeded"].append(deadline)
        timeouts["timeout_connect"].append(minute_timeouts - read - deadline)
        p50 = 0.045 * rnd.lognormvariate(0.0, 0.08)
        p95 = 0.180 * rnd.lognormvariate(0.0, 0.15) * (9.0 if incident else 1.0)
        p99 = 0.450 * rnd.lognormvariate(0.0, 0.20) * (11.0 if incident else 1.0)
        latency["p50"].append(round(p50 * (1.8 if incident else 1.0), 4))
        latency["p95"].append(round(p95, 4))
        latency["p99"].append(round(min(p99, 5.0), 4))  # the read timeout caps it
    closed, half, opened = 0, 1, 2
    breaker = {
        "payments": [
            (0.0, closed), (s + 1.5, opened), (s + 3.5, half), (s + 3.6, opened),
            (s + 6.0, half), (s + 6.1, opened), (e + 0.5, half), (e + 0.8, closed),
        ],
        "inventory": [(0.0, closed), (s + 6.0, opened), (s + 7.0, half), (s + 7.4, closed)],
        "notifications": [(0.0, closed)],
    }
    backlog = [
        (0.0, 0), (s + 2.0, 1_200), (s + 6.5, 5_400), (s + 10.0, 9_100),
        (e + 1.0, 3_050), (e + 4.0, 420), (e + 6.0, 0),
    ]
    times = [START + timedelta(minutes=m) for m in range(minutes)]
    return Dataset(minutes, times, outcomes, latency, timeouts, breaker, backlog)


def steps(changes: list[tuple[float, int]], end: float) -> list[tuple[float, int]]:
    """Change points as the corners of a step-after line, ending at ``end``."""
    pts: list[tuple[float, int]] = []
    for i, (t, v) in enumerate(changes):
        if i:
            pts.append((t, changes[i - 1][1]))
        pts.append((t, v))
    pts.append((end, changes[-1][1]))
    return pts


# --- the candidates --------------------------------------------------------------------------

Plot = Callable[[Dataset], list[str]]


class Library:
    """One candidate: ``load`` does its imports, each plot method returns SVG text(s)."""

    name = ""

    def load(self) -> None:
        raise NotImplementedError

    def plots(self) -> list[tuple[str, Plot]]:
        return [
            ("outcomes", self.outcomes),
            ("latency", self.latency),
            ("timeouts", self.timeouts),
            ("breaker", self.breaker),
            ("backlog", self.backlog),
        ]

    def outcomes(self, d: Dataset) -> list[str]:
        raise NotImplementedError

    def latency(self, d: Dataset) -> list[str]:
        raise NotImplementedError

    def timeouts(self, d: Dataset) -> list[str]:
        raise NotImplementedError

    def breaker(self, d: Dataset) -> list[str]:
        raise NotImplementedError

    def backlog(self, d: Dataset) -> list[str]:
        raise NotImplementedError


class Baseline(Library):
    name = BASELINE

    def load(self) -> None:
        pass

    def plots(self) -> list[tuple[str, Plot]]:
        return []


class Matplotlib(Library):
    name = "matplotlib"

    def __init__(self, fonttype: str) -> None:
        self.fonttype = fonttype
        self.figure: Any = None
        self.mdates: Any = None

    def load(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        from matplotlib.figure import Figure

        matplotlib.rcParams.update({
            "svg.fonttype": self.fonttype,
            "svg.hashsalt": "netscope-report",
            "font.size": 9,
            "timezone": "UTC",
        })
        self.figure, self.mdates = Figure, mdates

    def _svg(self, fig: Any) -> str:
        buf = io.BytesIO()
        metadata_off = {"Creator": None, "Date": None, "Format": None, "Type": None}
        fig.savefig(buf, format="svg", metadata=metadata_off)
        return buf.getvalue().decode()

    def _fig(self, height_px: int, rows: int = 1) -> tuple[Any, Any]:
        fig = self.figure(figsize=(WIDTH_PX / 100, height_px / 100), dpi=100,
                          layout="constrained")
        axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
        for ax in axes:
            ax.xaxis.set_major_formatter(self.mdates.DateFormatter("%H:%M"))
            ax.grid(True, axis="y", linewidth=0.4, alpha=0.5)
        return fig, axes

    def outcomes(self, d: Dataset) -> list[str]:
        fig, axes = self._fig(PANEL_PX * len(UPSTREAMS) + 60, rows=len(UPSTREAMS))
        width = 0.9 / 1440.0  # days
        for ax, up in zip(axes, UPSTREAMS, strict=True):
            bottom = [0] * d.minutes
            for o, color in zip(OUTCOMES, OUTCOME_COLORS, strict=True):
                counts = d.outcomes[up][o]
                ax.bar(d.times, counts, width=width, bottom=bottom, color=color, label=o,
                       linewidth=0)
                bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
            ax.set_ylabel(f"{up}\ncalls/min")
        axes[0].legend(loc="upper right", ncols=len(OUTCOMES), fontsize=8)
        fig.suptitle("Outcomes per minute")
        return [self._svg(fig)]

    def latency(self, d: Dataset) -> list[str]:
        fig, (ax,) = self._fig(HEIGHT_PX)
        for q in QUANTILES:
            ax.plot(d.times, d.latency[q], label=q, linewidth=1.2)
        ax.set_yscale("log")
        ax.set_ylabel("seconds")
        ax.set_title("Latency per minute")
        ax.legend(loc="upper right")
        return [self._svg(fig)]

    def timeouts(self, d: Dataset) -> list[str]:
        fig, (ax,) = self._fig(HEIGHT_PX)
        for k in TIMEOUT_KINDS:
            ax.plot(d.times, d.timeouts[k], label=k, linewidth=1.2)
        ax.set_ylabel("timeouts/min")
        ax.set_title("Timeouts per minute by kind")
        ax.legend(loc="upper right")
        return [self._svg(fig)]

    def breaker(self, d: Dataset) -> list[str]:
        fig, (ax,) = self._fig(HEIGHT_PX)
        for up in UPSTREAMS:
            pts = [*d.breaker[up], (float(d.minutes), d.breaker[up][-1][1])]
            ax.step([d.at(t) for t, _ in pts], [v for _, v in pts], where="post", label=up,
                    linewidth=1.4)
        ax.set_yticks(range(len(BREAKER_STATES)), BREAKER_STATES)
        ax.set_ylim(-0.3, 2.3)
        ax.set_title("Circuit breaker state")
        ax.legend(loc="upper right")
        return [self._svg(fig)]

    def backlog(self, d: Dataset) -> list[str]:
        fig, (ax,) = self._fig(HEIGHT_PX)
        pts = [*d.backlog, (float(d.minutes), d.backlog[-1][1])]
        ax.step([d.at(t) for t, _ in pts], [v for _, v in pts], where="post", marker="o",
                markersize=3, linewidth=1.4)
        ax.set_ylabel("records")
        ax.set_title("Audit spool backlog")
        return [self._svg(fig)]


class Altair(Library):
    name = "altair"

    def __init__(self) -> None:
        self.alt: Any = None
        self.vlc: Any = None
        self.vl_version = ""

    def load(self) -> None:
        import altair as alt
        import vl_convert as vlc

        self.alt, self.vlc = alt, vlc
        self.vl_version = "_".join(alt.SCHEMA_VERSION.split(".")[:2])  # 'v6.4.1' -> 'v6_4'

    def _svg(self, chart: Any) -> str:
        chart = chart.configure_legend(orient="top", title=None)
        return str(self.vlc.vegalite_to_svg(chart.to_dict(), vl_version=self.vl_version))

    def _x(self) -> Any:
        alt = self.alt
        return alt.X("t:T", title=None, scale=alt.Scale(type="utc"),
                     axis=alt.Axis(format="%H:%M"))

    def _iso(self, t: datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _long(self, d: Dataset, series: dict[str, list[Any]], key: str) -> list[dict[str, Any]]:
        return [
            {"t": self._iso(t), key: name, "v": values[i]}
            for name, values in series.items()
            for i, t in enumerate(d.times)
        ]

    def outcomes(self, d: Dataset) -> list[str]:
        alt = self.alt
        rows = [
            {"t": self._iso(t), "upstream": up, "outcome": o, "order": j,
             "n": d.outcomes[up][o][i]}
            for up in UPSTREAMS
            for j, o in enumerate(OUTCOMES)
            for i, t in enumerate(d.times)
        ]
        chart = (
            alt.Chart(alt.Data(values=rows), title="Outcomes per minute")
            .mark_bar()
            .encode(
                x=self._x(),
                y=alt.Y("n:Q", title="calls/min", stack="zero"),
                color=alt.Color("outcome:N", sort=list(OUTCOMES),
                                scale=alt.Scale(domain=list(OUTCOMES),
                                                range=list(OUTCOME_COLORS))),
                order=alt.Order("order:O"),
                row=alt.Row("upstream:N", sort=list(UPSTREAMS), title=None),
            )
            .properties(width=WIDTH_PX - 160, height=PANEL_PX - 30)
            .resolve_scale(y="independent")
        )
        return [self._svg(chart)]

    def _lines(self, d: Dataset, series: dict[str, list[Any]], key: str, title: str,
               y: Any) -> str:
        alt = self.alt
        chart = (
            alt.Chart(alt.Data(values=self._long(d, series, key)), title=title)
            .mark_line(strokeWidth=1.2)
            .encode(x=self._x(), y=y, color=alt.Color(f"{key}:N", sort=list(series)))
            .properties(width=WIDTH_PX - 160, height=HEIGHT_PX - 70)
        )
        return self._svg(chart)

    def latency(self, d: Dataset) -> list[str]:
        y = self.alt.Y("v:Q", title="seconds", scale=self.alt.Scale(type="log"))
        return [self._lines(d, d.latency, "quantile", "Latency per minute", y)]

    def timeouts(self, d: Dataset) -> list[str]:
        y = self.alt.Y("v:Q", title="timeouts/min")
        return [self._lines(d, d.timeouts, "kind", "Timeouts per minute by kind", y)]

    def breaker(self, d: Dataset) -> list[str]:
        alt = self.alt
        rows = [
            {"t": self._iso(d.at(t)), "upstream": up, "state": v}
            for up in UPSTREAMS
            for t, v in [*d.breaker[up], (float(d.minutes), d.breaker[up][-1][1])]
        ]
        label = "['closed', 'half_open', 'open'][datum.value]"
        chart = (
            alt.Chart(alt.Data(values=rows), title="Circuit breaker state")
            .mark_line(interpolate="step-after", strokeWidth=1.4)
            .encode(
                x=self._x(),
                y=alt.Y("state:Q", title=None, scale=alt.Scale(domain=[-0.3, 2.3]),
                        axis=alt.Axis(values=[0, 1, 2], labelExpr=label)),
                color=alt.Color("upstream:N", sort=list(UPSTREAMS)),
            )
            .properties(width=WIDTH_PX - 160, height=HEIGHT_PX - 70)
        )
        return [self._svg(chart)]

    def backlog(self, d: Dataset) -> list[str]:
        alt = self.alt
        pts = [*d.backlog, (float(d.minutes), d.backlog[-1][1])]
        rows = [{"t": self._iso(d.at(t)), "records": v} for t, v in pts]
        chart = (
            alt.Chart(alt.Data(values=rows), title="Audit spool backlog")
            .mark_line(interpolate="step-after", point=True, strokeWidth=1.4)
            .encode(x=self._x(), y=alt.Y("records:Q", title="records"))
            .properties(width=WIDTH_PX - 160, height=HEIGHT_PX - 70)
        )
        return [self._svg(chart)]


class Pygal(Library):
    name = "pygal"

    def __init__(self) -> None:
        self.pygal: Any = None
        self.style: Any = None
        self.outcome_style: Any = None

    def load(self) -> None:
        import pygal
        from pygal.style import Style

        self.pygal = pygal
        self.style = Style(background="white", plot_background="white",
                           font_family="sans-serif")
        self.outcome_style = Style(background="white", plot_background="white",
                                   font_family="sans-serif", colors=OUTCOME_COLORS)

    @staticmethod
    def _offline(root: Any) -> Any:
        """xml filter: drop pygal's inline <script>, its two URL comments and the per-point
        <desc> tooltip data only pygal.js reads (40 % of the bytes)."""
        for parent in list(root.iter()):
            for child in list(parent):
                tag = child.tag
                if callable(tag) or str(tag).rsplit("}", 1)[-1] in ("script", "desc"):
                    parent.remove(child)
        return root

    def _opts(self, title: str, height: int) -> dict[str, Any]:
        return {
            "title": title, "width": WIDTH_PX, "height": height, "js": [],
            "disable_xml_declaration": True,
            "style": self.style, "legend_at_bottom": True, "legend_at_bottom_columns": 4,
            "truncate_legend": -1, "truncate_label": -1,
        }

    def _minute_opts(self, d: Dataset, title: str, height: int) -> dict[str, Any]:
        return self._opts(title, height) | {
            "x_labels": [d.label(i) for i in range(d.minutes)],
            "x_labels_major_every": 30, "show_minor_x_labels": False,
        }

    def _render(self, chart: Any) -> str:
        chart.add_xml_filter(self._offline)
        return str(chart.render(is_unicode=True))

    def _minute_lines(self, d: Dataset, series: dict[str, list[Any]], title: str,
                      **extra: Any) -> str:
        chart = self.pygal.Line(**self._minute_opts(d, title, HEIGHT_PX), show_dots=False,
                                **extra)
        for name, values in series.items():
            chart.add(name, values)
        return self._render(chart)

    def outcomes(self, d: Dataset) -> list[str]:
        out = []
        for up in UPSTREAMS:
            opts = self._minute_opts(d, f"Outcomes per minute: {up}", PANEL_PX + 60)
            opts |= {"style": self.outcome_style, "show_legend": up == UPSTREAMS[0]}
            chart = self.pygal.StackedBar(**opts, spacing=0)
            for o in OUTCOMES:
                chart.add(o, d.outcomes[up][o])
            out.append(self._render(chart))
        return out

    def latency(self, d: Dataset) -> list[str]:
        return [self._minute_lines(d, d.latency, "Latency per minute (s)", logarithmic=True)]

    def timeouts(self, d: Dataset) -> list[str]:
        return [self._minute_lines(d, d.timeouts, "Timeouts per minute by kind")]

    def _step_chart(self, d: Dataset, title: str, **extra: Any) -> Any:
        return self.pygal.DateTimeLine(
            **self._opts(title, HEIGHT_PX),
            x_value_formatter=lambda t: t.strftime("%H:%M"), **extra,
        )

    def breaker(self, d: Dataset) -> list[str]:
        labels = [{"label": s, "value": i} for i, s in enumerate(BREAKER_STATES)]
        chart = self._step_chart(d, "Circuit breaker state", show_dots=False, y_labels=labels,
                                 range=(-0.3, 2.3))
        for up in UPSTREAMS:
            chart.add(up, [(d.at(t), v) for t, v in steps(d.breaker[up], float(d.minutes))])
        return [self._render(chart)]

    def backlog(self, d: Dataset) -> list[str]:
        chart = self._step_chart(d, "Audit spool backlog (records)", show_legend=False)
        chart.add("backlog", [(d.at(t), v) for t, v in steps(d.backlog, float(d.minutes))])
        return [self._render(chart)]


def make_library(name: str, mpl_fonttype: str) -> Library:
    if name == "matplotlib":
        return Matplotlib(mpl_fonttype)
    if name == "altair":
        return Altair()
    if name == "pygal":
        return Pygal()
    if name == BASELINE:
        return Baseline()
    raise SystemExit(f"unknown library {name!r}")


# --- the offline check -----------------------------------------------------------------------

_URL = re.compile(r"https?://[^\s\"'<>)]+", re.IGNORECASE)
_REF_PATTERNS = (
    ("script", re.compile(r"<script\b", re.IGNORECASE)),
    ("@import", re.compile(r"@import\b", re.IGNORECASE)),
    ("href", re.compile(r"""\bhref\s*=\s*["'](?!#|data:)""", re.IGNORECASE)),
    ("url()", re.compile(r"""\burl\(\s*["']?(?!#|data:)""", re.IGNORECASE)),
    ("handler", re.compile(r"""\son[a-z]+\s*=\s*["']""", re.IGNORECASE)),
    ("javascript:", re.compile(r"javascript:", re.IGNORECASE)),
)
_ID = re.compile(r"""\bid\s*=\s*["']([^"']+)["']""")


def external_refs(svg: str) -> list[str]:
    """What would make the SVG reach outside the file or run code; [] if offline-safe."""
    urls = (u.removesuffix("--") for u in _URL.findall(svg))  # "--" of a "-->"
    found = [u for u in urls if not u.lower().startswith("http://www.w3.org/")]
    found += [name for name, pattern in _REF_PATTERNS if pattern.search(svg)]
    return found


_LOCAL_REF = re.compile(r"""url\(\s*["']?#([^"')\s]+)|href\s*=\s*["']#([^"']+)""")


def duplicate_ids(svgs: list[str]) -> tuple[int, int]:
    """Ids defined in more than one SVG once all are inlined in one page: (all of them, those
    referenced (``url(#id)``, ``href="#id"``) whose definitions differ, which render wrong)."""
    defs: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for svg in svgs:
        for ident in set(_ID.findall(svg)):
            counts[ident] = counts.get(ident, 0) + 1
    dups = {ident for ident, n in counts.items() if n > 1}
    referenced = {a or b for svg in svgs for a, b in _LOCAL_REF.findall(svg)} & dups
    for ident in referenced:  # the element: its tag if empty, else up to its end tag
        quoted = r"""[\"']""" + re.escape(ident) + r"""[\"']"""
        element = re.compile(r"<([\w:-]+)[^<>]*\bid=" + quoted + r"[^<>]*?(?:/>|>.*?</\1>)",
                             re.DOTALL)
        defs[ident] = {m.group(0) for svg in svgs for m in element.finditer(svg)}
    return len(dups), sum(1 for texts in defs.values() if len(texts) > 1)


def inline(svg: str) -> str:
    """The <svg> element alone (no XML declaration or DOCTYPE), for inlining in HTML."""
    return svg[svg.index("<svg"):]


def write_html(path: Path, lib: str, svgs: Iterable[str]) -> None:
    body = "\n".join(f"<figure>{inline(svg)}</figure>" for svg in svgs)
    path.write_text(
        "<!doctype html>\n<html lang=en><meta charset=utf-8>"
        f"<title>NetScope report plots: {lib}</title>"
        "<style>body{font-family:sans-serif;max-width:960px;margin:auto}"
        "figure{margin:1em 0}svg{max-width:100%;height:auto}</style>\n"
        f"<h1>{lib}</h1>\n{body}\n</html>\n",
        encoding="utf-8",
    )


# --- the worker (one subprocess per library and round) ---------------------------------------


def worker(lib_name: str, minutes: int, seed: int, mpl_fonttype: str,
           html_dir: str | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = make_data(minutes, seed)
    t1 = time.perf_counter()
    lib = make_library(lib_name, mpl_fonttype)
    lib.load()
    t2 = time.perf_counter()
    svgs: list[str] = []
    per_plot: dict[str, float] = {}
    for name, plot in lib.plots():
        p0 = time.perf_counter()
        svgs += plot(data)
        per_plot[name] = time.perf_counter() - p0
    t3 = time.perf_counter()
    refs = sorted({r for svg in svgs for r in external_refs(svg)})
    result = {
        "data_s": t1 - t0,
        "import_s": t2 - t1,
        "render_s": t3 - t2,
        "first_s": next(iter(per_plot.values()), 0.0),
        "per_plot": per_plot,
        "svgs": len(svgs),
        "svg_bytes": sum(len(svg.encode()) for svg in svgs),
        "refs": refs,
        "dup_ids": duplicate_ids(svgs)[0],
        "clashes": duplicate_ids(svgs)[1],
        "cpu_in_s": time.process_time(),
        "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
    }
    if html_dir:
        Path(html_dir).mkdir(parents=True, exist_ok=True)
        write_html(Path(html_dir) / f"report-{lib_name}.html", lib_name, svgs)
    return result


def run_worker(lib: str, args: argparse.Namespace, html_dir: str | None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", lib,
           "--minutes", str(args.minutes), "--seed", str(args.seed),
           "--mpl-fonttype", args.mpl_fonttype]
    if html_dir:
        cmd += ["--html", html_dir]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - w0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{lib} worker failed ({proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


# --- installed sizes -------------------------------------------------------------------------


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(names: Iterable[str]) -> set[str]:
    """The distributions ``names`` need at run time (markers evaluated, no extras)."""
    from packaging.requirements import Requirement

    todo, seen = [_canon(n) for n in names], set[str]()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_canon(req.name))
    return seen


def _paths(dist_name: str) -> set[Path]:
    """The top-level entries of site-packages that hold a distribution's files."""
    dist = metadata.distribution(dist_name)
    out: set[Path] = set()
    for f in dist.files or []:
        parts = f.parts
        if not parts or parts[0] == "..":  # console scripts in bin/: not counted
            continue
        top = f if len(parts) == 1 or parts[0] == "__pycache__" else Path(parts[0])
        out.add(Path(str(dist.locate_file(top))))
    return {p for p in out if p.exists()}


def du_kib(paths: set[Path]) -> int:
    if not paths:
        return 0
    out = subprocess.run(["du", "-sck", *sorted(map(str, paths))], capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def installed_sizes(candidate: str) -> tuple[int, int, int, list[str]]:
    """(alone, with its closure, added to NetScope's closure) in KiB, and the added names."""
    dists = DISTRIBUTIONS[candidate]
    own = set().union(*(_paths(d) for d in dists))
    full = closure(dists)
    base = closure(["netscope"])
    added = sorted(full - base)
    return (du_kib(own), du_kib(set().union(*(_paths(d) for d in full))),
            du_kib(set().union(*(_paths(d) for d in added))), added)


# --- the driver ------------------------------------------------------------------------------

COLUMNS = (  # key, heading, scale, format
    ("import_s", "import s", 1.0, "{:.3f}"),
    ("render_s", "render s", 1.0, "{:.3f}"),
    ("first_s", "1st s", 1.0, "{:.3f}"),
    ("wall_s", "wall s", 1.0, "{:.3f}"),
    ("cpu_s", "CPU s", 1.0, "{:.3f}"),
    ("rss_kib", "RSS MiB", 1 / 1024, "{:.0f}"),
    ("svg_bytes", "SVG KiB", 1 / 1024, "{:.0f}"),
)
RATIO_KEYS = ("import_s", "render_s", "wall_s", "cpu_s", "rss_kib", "svg_bytes")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=int, default=180)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="rounds run first and discarded")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--libs", default=",".join(CANDIDATES))
    ap.add_argument("--mpl-fonttype", choices=("none", "path"), default="none")
    ap.add_argument("--html", metavar="DIR", help="write report-<lib>.html (last round)")
    ap.add_argument("--no-sizes", action="store_true", help="skip the installed-size table")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.minutes, args.seed, args.mpl_fonttype,
                                args.html)))
        return

    libs = [x for x in args.libs.split(",") if x] + [BASELINE]
    if args.html:
        Path(args.html).mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    results: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
    total = args.warmup + args.rounds
    for r in range(total):
        last = r == total - 1
        for lib in libs:
            res = run_worker(lib, args, args.html if last and lib != BASELINE else None)
            kept = r >= args.warmup
            if kept:
                results[lib].append(res)
            print(f"round {r + 1}/{total}{'' if kept else ' (warm-up)'} {lib:<10} "
                  f"wall {res['wall_s']:.3f} s", file=sys.stderr)
    load1 = os.getloadavg()

    def med(lib: str, key: str) -> float:
        return statistics.median(float(x[key]) for x in results[lib])

    print(f"\n{args.minutes} minutes, seed {args.seed}, medians of {args.rounds} rounds "
          f"(+{args.warmup} warm-up), matplotlib svg.fonttype={args.mpl_fonttype}; "
          f"load average {load0[0]:.2f} before, {load1[0]:.2f} after; "
          f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    head = f"{'library':<12}" + "".join(f"{h:>10}" for _, h, _, _ in COLUMNS)
    print(head + f"{'SVGs':>6}{'refs':>6}{'dup ids':>9}{'clash':>7}")
    for lib in libs:
        cells = "".join(f"{fmt.format(med(lib, k) * scale):>10}" for k, _, scale, fmt in COLUMNS)
        last = results[lib][-1]
        refs = max(len(x["refs"]) for x in results[lib])
        print(f"{lib:<12}{cells}{last['svgs']:>6}{refs:>6}{last['dup_ids']:>9}"
              f"{last['clashes']:>7}")
    for lib in libs:
        if any(x["refs"] for x in results[lib]):
            print(f"  {lib} external references: {results[lib][-1]['refs']}")

    names = [lib for lib in libs if lib != BASELINE]
    print("\nrender per plot (median s): " + "  ".join(
        f"{lib}: " + " / ".join(
            f"{statistics.median(x['per_plot'][p] for x in results[lib]):.3f}"
            for p in results[lib][0]["per_plot"])
        for lib in names))
    if "matplotlib" in names:
        print("\nratio to matplotlib: " + ", ".join(k for k in RATIO_KEYS))
        for lib in names:
            ratios = "".join(f"{med(lib, k) / med('matplotlib', k):>10.2f}" for k in RATIO_KEYS)
            print(f"{lib:<12}{ratios}")

    print("\nversions: " + ", ".join(
        f"{d} {_version(d)}" for lib in names for d in DISTRIBUTIONS.get(lib, ())))
    if not args.no_sizes:
        print("\ninstalled size (du -sk under site-packages, MiB): alone / with dependencies"
              " / added to NetScope's own dependencies")
        for lib in names:
            alone, full, added, new = installed_sizes(lib)
            print(f"{lib:<12}{alone / 1024:>8.1f}{full / 1024:>8.1f}{added / 1024:>8.1f}"
                  f"   ({', '.join(new)})")


if __name__ == "__main__":
    main()
