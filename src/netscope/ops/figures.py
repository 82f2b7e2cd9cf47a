"""What ``netscope check`` measured: the seam between the probes (I/O) and the checklist.

Every field is a plain value or ``None`` for "not measured", so the checklist can be fed by
hand in unit tests and tell "no data" apart from "zero". Two sources fill a ``Window``: two
scrapes of NetScope's ``/metrics`` a few seconds apart, or Prometheus over minutes; the
checklist does not care which, it prints ``Window.span`` beside each figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer of NetScope: ``status`` None means no answer (``error`` says why)."""

    status: int | None
    body: Any = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class UpstreamWindow:
    """One upstream over a window. Counts are increases (Prometheus' may be fractional)."""

    calls: float  # messages that went to the upstream (refusals, invalid, duplicates excluded)
    errors: float  # terminal errors the upstream caused (origin="upstream")
    timeouts: float  # terminal timeouts (timeout_connect, timeout_read, deadline_exceeded)
    p95_s: float | None  # consume-to-outcome latency, retries included
    p99_s: float | None


@dataclass(frozen=True, slots=True)
class Window:
    """Rates over a span: the runbook's "errors under threshold", latency, RGW, WS."""

    span: str  # how it was measured, printed beside each figure
    upstreams: dict[str, UpstreamWindow] = field(default_factory=dict)
    store_writes: float = 0.0  # audit batches written to the store (drainer's included)
    store_errors: float = 0.0
    audit_write_p95_s: float | None = None
    audit_write_p95_baseline_s: float | None = None  # the same over a longer span, if known
    ws_delay_p99_s: float | None = None
    ws_delay_samples: float = 0.0


@dataclass(frozen=True, slots=True)
class Trends:
    """Series over the trend window (Prometheus only: a trend needs history)."""

    span_s: float
    lag: list[tuple[float, float]] = field(default_factory=list)
    queue_depth: list[tuple[float, float]] = field(default_factory=list)
    queue_capacity: float | None = None
    # Per upstream, the share of the window its breaker let calls through (closed or
    # forced_closed), worst instance.
    closed_share: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Clock:
    """This host's NTP view. ``offset_s`` None: no tool answered (``source`` says which)."""

    source: str  # "chronyc", "timedatectl", or "" when neither answered
    offset_s: float | None = None
    synchronised: bool | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything one run of the checklist measured."""

    url: str
    live: Answer
    ready: Answer
    status: Answer  # GET /api/status
    window: Window | None  # None: could not be measured (detail in window_error)
    clock: Clock
    window_error: str = ""
    ws_error: str = ""  # why check's own WebSocket client could not listen ("" if it did)
    prometheus: str | None = None  # its URL when --prometheus was given
    prometheus_error: str = ""  # why Prometheus could not be used ("" when it answered)
    prometheus_series: int = 0  # NetScope processes Prometheus holds series of
    trends: Trends | None = None
    p95_targets: dict[str, float] = field(default_factory=dict)  # from -c FILE
    trend_window_s: float = 900.0  # the span trends are (or would be) judged over
