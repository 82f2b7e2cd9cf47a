"""The PromQL ``netscope check --prometheus`` asks, and its answers turned into figures.

One place for every expression, written as docs/metrics.md documents them (the runbook
names -> series table), so the check and the documented queries cannot drift apart. A
``selector`` (e.g. ``job="netscope",instance="10.0.0.5:8080"``) is added to every series:
without one, figures cover every NetScope process Prometheus scrapes (the fleet).
Parsing is pure: unit tests feed recorded answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from netscope.ops.figures import Trends, UpstreamWindow, Window

# The calls that went to the upstream: the denominator of the runbook's error ratio.
CALLED = 'outcome!~"invalid|rejected_.*|duplicate_.*|ledger_unavailable"'
TIMED_OUT = 'outcome=~"timeout_connect|timeout_read|deadline_exceeded"'
TREND_POINTS = 15  # samples over the trend window (one a minute over 15 min)


@dataclass(frozen=True, slots=True)
class Queries:
    selector: str = ""
    rate_window: str = "5m"
    baseline_window: str = "1h"
    trend_window_s: float = 900.0

    def _s(self, *matchers: str) -> str:
        inside = ",".join(m for m in (*matchers, self.selector) if m)
        return "{" + inside + "}" if inside else ""

    @property
    def trend_step_s(self) -> float:
        return max(1.0, self.trend_window_s / TREND_POINTS)

    def _quantile(self, q: float, series: str, by: str, rng: str) -> str:
        return (f"histogram_quantile({q}, sum by ({by}) "
                f"(rate({series}_bucket{self._s()}[{rng}])))")  # fmt: skip

    def window(self) -> dict[str, str]:
        """Instant queries for the window's figures, by the name ``window_from`` reads."""
        r, b = self.rate_window, self.baseline_window
        called, timed_out = self._s(CALLED), self._s(TIMED_OUT)
        upstream_origin, store = self._s('origin="upstream"'), self._s('target="store"')
        latency = "netscope_request_duration_seconds"
        audit = "netscope_audit_write_duration_seconds"
        ws = "netscope_ws_broadcast_delay_seconds"
        return {
            "calls": f"sum by (upstream) (increase(netscope_requests_total{called}[{r}]))",
            "errors": f"sum by (upstream) (increase(netscope_errors_total{upstream_origin}[{r}]))",
            "timeouts": f"sum by (upstream) (increase(netscope_requests_total{timed_out}[{r}]))",
            "p95": self._quantile(0.95, latency, "le, upstream", r),
            "p99": self._quantile(0.99, latency, "le, upstream", r),
            "store_writes": f"sum(increase(netscope_audit_writes_total{store}[{r}]))",
            "store_errors": f"sum(increase(netscope_audit_write_errors_total{store}[{r}]))",
            "audit_p95": self._quantile(0.95, audit, "le", r),
            "audit_p95_baseline": self._quantile(0.95, audit, "le", b),
            "ws_p99": self._quantile(0.99, ws, "le", r),
            "ws_count": f"sum(increase({ws}_count{self._s()}[{r}]))",
        }

    def processes(self) -> str:
        return f"count(netscope_start_time_seconds{self._s()})"

    def trend_ranges(self) -> dict[str, str]:
        """Range queries over the trend window (``query_range``)."""
        return {
            "lag": f"sum(netscope_consumer_lag{self._s()})",
            "queue_depth": f"sum(netscope_queue_depth{self._s()})",
        }

    def trend_instants(self) -> dict[str, str]:
        w = f"{self.trend_window_s:.0f}s"
        closed = self._s('state=~"closed|forced_closed"')
        return {
            "queue_capacity": f"sum(netscope_queue_capacity{self._s()})",
            # Per process first (closed and forced_closed add up), then the worst process.
            "closed_share": "min by (upstream) (sum by (upstream, instance) "
            f"(avg_over_time(netscope_circuit_state{closed}[{w}])))",
        }


def _value(sample: dict[str, Any]) -> float | None:
    value = float(sample["value"][1])
    return None if math.isnan(value) or math.isinf(value) else value


def scalar(result: list[dict[str, Any]]) -> float | None:
    """The value of a one-sample instant vector; None when empty or NaN."""
    return _value(result[0]) if result else None


def by_label(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    """``{label value: sample value}`` of an instant vector, NaN samples left out."""
    out: dict[str, float] = {}
    for sample in result:
        value = _value(sample)
        if value is not None and label in sample["metric"]:
            out[sample["metric"][label]] = value
    return out


def points(result: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """The first series of a range answer as ``(unix time, value)``."""
    if not result:
        return []
    return [(float(t), float(v)) for t, v in result[0]["values"] if not math.isnan(float(v))]


def window_from(answers: dict[str, list[dict[str, Any]]], span: str) -> Window:
    """A ``Window`` from the answers to ``Queries.window()``."""
    calls = by_label(answers["calls"], "upstream")
    errors = by_label(answers["errors"], "upstream")
    timeouts = by_label(answers["timeouts"], "upstream")
    p95 = by_label(answers["p95"], "upstream")
    p99 = by_label(answers["p99"], "upstream")
    upstreams = {
        name: UpstreamWindow(
            calls=calls.get(name, 0.0),
            errors=errors.get(name, 0.0),
            timeouts=timeouts.get(name, 0.0),
            p95_s=p95.get(name),
            p99_s=p99.get(name),
        )
        for name in sorted(set(calls) | set(p95))
    }
    return Window(
        span=span,
        upstreams=upstreams,
        store_writes=scalar(answers["store_writes"]) or 0.0,
        store_errors=scalar(answers["store_errors"]) or 0.0,
        audit_write_p95_s=scalar(answers["audit_p95"]),
        audit_write_p95_baseline_s=scalar(answers["audit_p95_baseline"]),
        ws_delay_p99_s=scalar(answers["ws_p99"]),
        ws_delay_samples=scalar(answers["ws_count"]) or 0.0,
    )


def trends_from(
    ranges: dict[str, list[dict[str, Any]]],
    instants: dict[str, list[dict[str, Any]]],
    span_s: float,
) -> Trends:
    """``Trends`` from the answers to ``Queries.trend_ranges()`` and ``trend_instants()``."""
    return Trends(
        span_s=span_s,
        lag=points(ranges["lag"]),
        queue_depth=points(ranges["queue_depth"]),
        queue_capacity=scalar(instants["queue_capacity"]),
        closed_share=by_label(instants["closed_share"], "upstream"),
    )
