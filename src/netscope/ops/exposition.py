"""A window's figures from two scrapes of NetScope's own ``/metrics``, without Prometheus.

Why not read the counters once: a counter since the process started says nothing about now
(a week of clean traffic hides ten minutes of errors). Two scrapes ``span`` seconds apart
give the same increases and quantiles Prometheus' ``increase()`` and
``histogram_quantile()`` would over that span, computed the same way (counter resets
included), so the checklist judges both sources alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from netscope.ops.figures import UpstreamWindow, Window

Labels = tuple[tuple[str, str], ...]
Scrape = dict[tuple[str, Labels], float]
Match = Callable[[dict[str, str]], bool]

# What the runbook's ratio divides by: the calls that went to the upstream. NetScope's own
# refusals, invalid input and the ledger's duplicates are in neither side (docs/metrics.md).
_NOT_CALLED = ("invalid", "ledger_unavailable")
_TIMEOUT_OUTCOMES = frozenset({"timeout_connect", "timeout_read", "deadline_exceeded"})


def parse(text: str) -> Scrape:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels."""
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def _all(_: dict[str, str]) -> bool:
    return True


def _delta(old: float | None, new: float) -> float:
    """A counter's increase; one that went down was reset (a restart) and counts from 0."""
    if old is None:
        return new
    return new - old if new >= old else new


def increase(
    before: Scrape, after: Scrape, name: str, match: Match = _all, by: str | None = None
) -> dict[str | None, float]:
    """Sum of each series' increase, grouped by label ``by`` (None: one group).

    A series that went down was reset (the process restarted): its increase is its new
    value, as Prometheus counts it. A series absent before started at zero.
    """
    out: dict[str | None, float] = {}
    for (sample_name, labels), value in after.items():
        if sample_name != name:
            continue
        lab = dict(labels)
        if not match(lab):
            continue
        key = lab.get(by) if by else None
        out[key] = out.get(key, 0.0) + _delta(before.get((sample_name, labels)), value)
    return out


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``(le, count)`` buckets.

    None when the histogram is empty. Linear interpolation inside the bucket holding the
    rank; a rank in the ``+Inf`` bucket answers the highest finite bound (the histogram
    cannot say more), as Prometheus does.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return prev_le if len(ordered) > 1 else None
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def quantiles(
    before: Scrape, after: Scrape, name: str, qs: tuple[float, ...], by: str | None = None
) -> dict[str | None, tuple[float | None, ...]]:
    """Quantiles of histogram ``name`` over the window, per value of label ``by``."""
    per_group: dict[str | None, dict[float, float]] = {}
    for (sample_name, labels), value in after.items():
        if sample_name != f"{name}_bucket":
            continue
        lab = dict(labels)
        group = lab.get(by) if by else None
        buckets = per_group.setdefault(group, {})
        le = float(lab["le"])
        buckets[le] = buckets.get(le, 0.0) + _delta(before.get((sample_name, labels)), value)
    return {
        group: tuple(histogram_quantile(q, list(b.items())) for q in qs)
        for group, b in per_group.items()
    }


def _called(labels: dict[str, str]) -> bool:
    outcome = labels.get("outcome", "")
    return not (
        outcome in _NOT_CALLED
        or outcome.startswith("rejected_")
        or outcome.startswith("duplicate_")
    )


def _store(labels: dict[str, str]) -> bool:
    return labels.get("target") == "store"


def window(before: Scrape, after: Scrape, span_s: float) -> Window:
    """The checklist's window from two scrapes ``span_s`` seconds apart."""
    calls = increase(before, after, "netscope_requests_total", _called, by="upstream")
    errors = increase(
        before, after, "netscope_errors_total", lambda lab: lab.get("origin") == "upstream",
        by="upstream",
    )  # fmt: skip
    timeouts = increase(
        before, after, "netscope_requests_total",
        lambda lab: lab.get("outcome") in _TIMEOUT_OUTCOMES, by="upstream",
    )  # fmt: skip
    latency = quantiles(
        before, after, "netscope_request_duration_seconds", (0.95, 0.99), by="upstream"
    )
    names = sorted(
        {str(lab[1]) for (n, labels) in after for lab in labels
         if n == "netscope_requests_total" and lab[0] == "upstream"}
    )  # fmt: skip
    upstreams = {
        name: UpstreamWindow(
            calls=calls.get(name, 0.0),
            errors=errors.get(name, 0.0),
            timeouts=timeouts.get(name, 0.0),
            p95_s=latency.get(name, (None, None))[0],
            p99_s=latency.get(name, (None, None))[1],
        )
        for name in names
    }
    writes = increase(before, after, "netscope_audit_writes_total", _store).get(None, 0.0)
    write_errors = increase(before, after, "netscope_audit_write_errors_total", _store)
    audit_p95 = quantiles(before, after, "netscope_audit_write_duration_seconds", (0.95,))
    ws = quantiles(before, after, "netscope_ws_broadcast_delay_seconds", (0.99,))
    ws_count = increase(before, after, "netscope_ws_broadcast_delay_seconds_count")
    return Window(
        span=f"last {span_s:.0f} s, two scrapes of /metrics",
        upstreams=upstreams,
        store_writes=writes,
        store_errors=write_errors.get(None, 0.0),
        audit_write_p95_s=audit_p95.get(None, (None,))[0],
        ws_delay_p99_s=ws.get(None, (None,))[0],
        ws_delay_samples=ws_count.get(None, 0.0),
    )
