"""Runbook section 5 ("Checklist de santé, toutes les 5 minutes") as pure functions.

``evaluate(figures)`` turns what the probes measured into one ``Line`` per item, in the
runbook's order: service, Kafka, Ceph RGW, metrics, WebSocket, then section 2's clock. No
I/O here: every threshold below is unit-tested with hand-made figures.

Where a threshold comes from:

- errors: section 8's major alert is an upstream error ratio above 2 % over 5 min, so 2 %
  fails; half of it warns. Terminal timeouts are judged on the same scale.
- p95: each upstream's ``latency_p95_target_s`` (section 8: above target is a *warning*,
  so latency never fails the check); p99 warns above twice the target.
- audit (RGW) writes: degraded mode, readiness' signed probe failing, or 5 % of writes
  failing is a failure; any failed write warns. A p95 write time at the default
  ``audit.write_timeout_s`` (5 s) fails, since writes then go to the spool; above 1 s warns.
- spool backlog: section 8's critical alert is a backlog growing for 15 min, so an oldest
  spooled batch older than 15 min (or a full spool) fails; a backlog being drained warns.
- queue_depth: at 80 % of ``pipeline.queue_depth`` ingest is about to pause (it resumes
  below 80 %): warns.
- circuits: open (or forced open) now fails, half-open or forced closed warns; over the
  trend window, a breaker letting calls through less than 90 % of the time warns, less
  than 50 % fails ("majoritairement closed").
- WebSocket: section 5 asks for < 2 s; p99 at 2 s fails, at 1 s warns.
- clock: skew between instances beyond ``ledger.lease_margin_s`` (2 s by default) can take
  over a live lease, so 1 s from NTP (half of it, two hosts may err in opposite
  directions) fails and 100 ms warns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netscope.config import UpstreamConfig
from netscope.ops.figures import Figures, Window
from netscope.ops.trend import classify
from netscope.ops.verdict import Line, Status

DEFAULT_P95_TARGET_S: float = UpstreamConfig.model_fields["latency_p95_target_s"].default
NEEDS_PROMETHEUS = "needs --prometheus"

# Why NetScope cannot tell its skew against the broker (section 2, "NTP"): said once, here.
BROKER_SKEW_NOT_OBSERVED = (
    "NetScope cannot observe it cheaply: a record's timestamp is the producer's clock "
    "(CreateTime; the broker's only on LogAppendTime topics), and NetScope exports no "
    "record-age figure; compare each host's NTP offset instead (line above, on each host)"
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Every number the checklist judges by (see the module docstring for why each)."""

    error_ratio_fail: float = 0.02
    error_ratio_warn: float = 0.01
    timeout_ratio_fail: float = 0.02
    timeout_ratio_warn: float = 0.01
    default_p95_target_s: float = DEFAULT_P95_TARGET_S
    p99_target_factor: float = 2.0
    audit_p95_warn_s: float = 1.0
    audit_p95_fail_s: float = 5.0
    audit_error_ratio_fail: float = 0.05
    audit_unstable_factor: float = 2.0  # p95 over the window vs its 1 h baseline
    backlog_age_fail_s: float = 900.0
    queue_fill_warn: float = 0.8
    queue_floor_share: float = 0.05  # queue growth below 5 % of capacity is noise
    lag_floor: float = 10.0  # lag growth below 10 messages is the commit interval
    closed_share_pass: float = 0.9
    closed_share_fail: float = 0.5
    ws_delay_warn_s: float = 1.0
    ws_delay_fail_s: float = 2.0
    clock_warn_s: float = 0.1
    clock_fail_s: float = 1.0


def _s(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.1f} s"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def _uptime(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.1f} %"


def _n(value: float) -> str:
    return f"{value:.0f}" if value == int(value) or value >= 100 else f"{value:.1f}"


def _status_body(f: Figures) -> dict[str, Any] | None:
    return f.status.body if f.status.status == 200 and isinstance(f.status.body, dict) else None


def _why_no_status(f: Figures) -> str:
    answer = f.status
    return f"GET /api/status: {answer.error or f'HTTP {answer.status}'}"


# -- service ------------------------------------------------------------------------------


def live(f: Figures) -> Line:
    answer = f.live
    name, threshold = "Service live", "GET /health/live = 200"
    if answer.status == 200:
        uptime = (answer.body or {}).get("uptime_s") if isinstance(answer.body, dict) else None
        figure = "200" + (f", up {_uptime(float(uptime))}" if uptime is not None else "")
        return Line("live", name, Status.PASS, figure, threshold)
    figure = f"HTTP {answer.status}" if answer.status else "no answer"
    return Line("live", name, Status.FAIL, figure, threshold, answer.error or f.url)


def ready(f: Figures) -> Line:
    answer = f.ready
    name, threshold = "Service ready", "GET /health/ready = 200"
    body = answer.body if isinstance(answer.body, dict) else {}
    checks = body.get("checks") or {}
    if answer.status == 200:
        return Line("ready", name, Status.PASS, "200", threshold, ", ".join(sorted(checks)))
    if answer.status is None:
        return Line("ready", name, Status.FAIL, "no answer", threshold, answer.error)
    failing = body.get("failing") or []
    detail = "; ".join(f"{c}: {checks.get(c, {}).get('detail', '')}" for c in failing)
    figure = f"{answer.status}: " + (", ".join(failing) or "not ready")
    return Line("ready", name, Status.FAIL, figure, threshold, detail[:400])


# -- Kafka --------------------------------------------------------------------------------


def consumer_lag(f: Figures) -> Line:
    name, threshold = "Kafka consumer lag", "no fixed level: the trend decides"
    status = _status_body(f)
    if status is None:
        return Line("kafka.lag", name, Status.SKIP, "unknown", threshold, _why_no_status(f))
    parts = status.get("consumer_lag_by_partition") or {}
    if not status.get("assigned_partitions"):
        return Line("kafka.lag", name, Status.PASS, "no partition assigned", threshold)
    figure = f"{status.get('consumer_lag', 0)} messages over {len(parts)} partitions"
    return Line("kafka.lag", name, Status.PASS, figure, threshold)


def _trend_gate(f: Figures, key: str, name: str, threshold: str) -> Line | None:
    """The line to show when no trend can be computed (no Prometheus, or it failed)."""
    if f.prometheus is None:
        return Line(key, name, Status.SKIP, NEEDS_PROMETHEUS, threshold, "a trend needs history")
    if f.trends is None:
        reason = f.prometheus_error or "no answer"
        return Line(key, name, Status.SKIP, "unknown", threshold, f"Prometheus: {reason}")
    return None


def _span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def lag_trend(f: Figures, t: Thresholds) -> Line:
    key, name = "kafka.lag_trend", "Kafka lag trend"
    threshold = f"no continuous growth over {_span(f.trend_window_s)}"
    gate = _trend_gate(f, key, name, threshold)
    if gate is not None:
        return gate
    assert f.trends is not None
    trend = classify(f.trends.lag, floor=t.lag_floor)
    return Line(key, name, trend.status, f"{trend.verdict}: {trend.figure}", threshold)


# -- Ceph RGW (the audit store) -------------------------------------------------------------


def _no_window(f: Figures, key: str, name: str, threshold: str) -> Line:
    return Line(key, name, Status.SKIP, "unknown", threshold, f.window_error or "not measured")


def audit_writes(f: Figures, t: Thresholds) -> Line:
    key, name = "rgw.writes", "Ceph RGW audit writes"
    threshold = (
        f"not degraded, store probe ok, failed writes < {_pct(t.audit_error_ratio_fail)} "
        "(warn > 0)"
    )
    problems: list[str] = []
    ready_body = f.ready.body if isinstance(f.ready.body, dict) else {}
    store_check = (ready_body.get("checks") or {}).get("audit_store")
    if store_check is not None and not store_check.get("ok", True):
        problems.append(f"readiness probe: {store_check.get('detail', 'failing')}")
    status = _status_body(f)
    degraded = bool(status and status.get("audit_degraded"))
    if degraded:
        problems.append("degraded mode: batches go to the local spool (INC-02)")
    w = f.window
    if w is None and status is None and store_check is None:
        return _no_window(f, key, name, threshold)
    figure_parts = [f"degraded {'yes' if degraded else 'no'}" if status is not None else ""]
    ratio = 0.0
    if w is not None:
        attempts = w.store_writes + w.store_errors
        ratio = w.store_errors / attempts if attempts else 0.0
        figure_parts.append(
            f"{_n(w.store_errors)} failed of {_n(attempts)} writes ({w.span})"
            if attempts else f"no write ({w.span})"
        )  # fmt: skip
    figure = ", ".join(p for p in figure_parts if p)
    if problems or ratio >= t.audit_error_ratio_fail:
        return Line(key, name, Status.FAIL, figure, threshold, "; ".join(problems)[:400])
    if w is not None and w.store_errors > 0:
        return Line(key, name, Status.WARN, figure, threshold, "some writes failed (retried)")
    return Line(key, name, Status.PASS, figure, threshold)


def audit_latency(f: Figures, t: Thresholds) -> Line:
    key, name = "rgw.latency", "Ceph RGW write latency p95"
    threshold = f"p95 <= {_s(t.audit_p95_warn_s)} (fail at {_s(t.audit_p95_fail_s)})"
    w = f.window
    if w is None:
        return _no_window(f, key, name, threshold)
    p95 = w.audit_write_p95_s
    if p95 is None:
        return Line(key, name, Status.SKIP, f"no write ({w.span})", threshold)
    figure = f"{_s(p95)} ({w.span})"
    base = w.audit_write_p95_baseline_s
    if base is not None:
        figure += f", 1 h p95 {_s(base)}"
    if p95 >= t.audit_p95_fail_s:
        return Line(key, name, Status.FAIL, figure, threshold, "writes time out to the spool")
    if p95 > t.audit_p95_warn_s:
        return Line(key, name, Status.WARN, figure, threshold)
    if base is not None and p95 > t.audit_unstable_factor * base and p95 > 0.1:
        detail = f"more than {t.audit_unstable_factor:g}x its 1 h level: not stable"
        return Line(key, name, Status.WARN, figure, threshold, detail)
    return Line(key, name, Status.PASS, figure, threshold)


def spool_backlog(f: Figures, t: Thresholds) -> Line:
    key, name = "audit.backlog", "Audit spool backlog"
    threshold = f"empty (warn while draining, fail older than {_span(t.backlog_age_fail_s)})"
    status = _status_body(f)
    if status is None:
        return Line(key, name, Status.SKIP, "unknown", threshold, _why_no_status(f))
    pending = int(status.get("spool_pending_entries") or 0)
    age = status.get("spool_oldest_age_s")
    figure = f"{pending} batches" + (f", oldest {_s(float(age))}" if pending and age else "")
    if status.get("spool_full"):
        return Line(key, name, Status.FAIL, figure + ", full", threshold,
                    "ingest paused (spool_full): INC-02 step 4")  # fmt: skip
    if pending and age is not None and float(age) >= t.backlog_age_fail_s:
        return Line(key, name, Status.FAIL, figure, threshold, "not drained for 15 min (§8)")
    if pending:
        return Line(key, name, Status.WARN, figure, threshold, "RGW writes pending (draining)")
    return Line(key, name, Status.PASS, figure, threshold)


# -- calls ---------------------------------------------------------------------------------


def _upstream_names(f: Figures) -> list[str]:
    names: set[str] = set(f.window.upstreams) if f.window else set()
    status = _status_body(f)
    if status:
        names |= set(status.get("breakers") or {})
    return sorted(names)


def latency(f: Figures, t: Thresholds, upstream: str) -> Line:
    key, name = f"latency.{upstream}", f"p95/p99 {upstream}"
    target = f.p95_targets.get(upstream, t.default_p95_target_s)
    threshold = f"p95 <= {_s(target)} (target), p99 <= {_s(t.p99_target_factor * target)}"
    w = f.window
    if w is None:
        return _no_window(f, key, name, threshold)
    up = w.upstreams.get(upstream)
    if up is None or up.p95_s is None:
        return Line(key, name, Status.SKIP, f"no call ({w.span})", threshold)
    p99 = up.p99_s if up.p99_s is not None else up.p95_s
    figure = f"p95 {_s(up.p95_s)}, p99 {_s(p99)} ({w.span})"
    over = []
    if up.p95_s > target:
        over.append("p95 above target (section 8: warning)")
    if p99 > t.p99_target_factor * target:
        over.append("p99 above twice the target")
    return Line(key, name, Status.WARN if over else Status.PASS, figure, threshold,
                "; ".join(over))  # fmt: skip


def _ratio_line(
    key: str, name: str, count: float, calls: float, w: Window, fail: float, warn: float,
    what: str,
) -> Line:
    threshold = f"<= {_pct(fail)} of calls (warn > {_pct(warn)})"
    if calls <= 0:
        return Line(key, name, Status.SKIP, f"no call ({w.span})", threshold)
    ratio = count / calls
    figure = f"{_pct(ratio)}: {_n(count)} {what} of {_n(calls)} calls ({w.span})"
    status = Status.FAIL if ratio > fail else Status.WARN if ratio > warn else Status.PASS
    return Line(key, name, status, figure, threshold)


def errors(f: Figures, t: Thresholds, upstream: str) -> Line:
    key, name = f"errors.{upstream}", f"Errors {upstream}"
    w = f.window
    if w is None:
        return _no_window(f, key, name, f"<= {_pct(t.error_ratio_fail)} of calls")
    up = w.upstreams.get(upstream)
    return _ratio_line(key, name, up.errors if up else 0.0, up.calls if up else 0.0, w,
                       t.error_ratio_fail, t.error_ratio_warn, "upstream errors")  # fmt: skip


def timeouts(f: Figures, t: Thresholds, upstream: str) -> Line:
    key, name = f"timeouts.{upstream}", f"Timeouts {upstream}"
    w = f.window
    if w is None:
        return _no_window(f, key, name, f"<= {_pct(t.timeout_ratio_fail)} of calls")
    up = w.upstreams.get(upstream)
    return _ratio_line(key, name, up.timeouts if up else 0.0, up.calls if up else 0.0, w,
                       t.timeout_ratio_fail, t.timeout_ratio_warn, "timed out")  # fmt: skip


# -- flow ----------------------------------------------------------------------------------


def queue_depth(f: Figures, t: Thresholds) -> Line:
    key, name = "queue.depth", "queue_depth"
    threshold = f"< {_pct(t.queue_fill_warn)} of capacity"
    status = _status_body(f)
    if status is None:
        return Line(key, name, Status.SKIP, "unknown", threshold, _why_no_status(f))
    depth, capacity = int(status.get("queue_depth") or 0), int(status.get("queue_capacity") or 0)
    fill = depth / capacity if capacity else 0.0
    figure = f"{depth} / {capacity} ({_pct(fill)})"
    paused = status.get("paused_reason")
    detail = f"ingest paused: {paused}" if paused else ""
    if fill >= t.queue_fill_warn:
        return Line(key, name, Status.WARN, figure, threshold, detail or "near the pause point")
    return Line(key, name, Status.PASS, figure, threshold, detail)


def queue_trend(f: Figures, t: Thresholds) -> Line:
    key, name = "queue.trend", "queue_depth trend"
    threshold = f"not growing over {_span(f.trend_window_s)}"
    gate = _trend_gate(f, key, name, threshold)
    if gate is not None:
        return gate
    assert f.trends is not None
    capacity = f.trends.queue_capacity or 0.0
    trend = classify(f.trends.queue_depth, floor=max(1.0, t.queue_floor_share * capacity))
    return Line(key, name, trend.status, f"{trend.verdict}: {trend.figure}", threshold)


_CIRCUIT_FAIL = ("open", "forced_open")
_CIRCUIT_WARN = ("half_open", "forced_closed")


def circuits_now(f: Figures) -> Line:
    key, name, threshold = "circuits.now", "Circuits now", "every breaker closed"
    status = _status_body(f)
    if status is None:
        return Line(key, name, Status.SKIP, "unknown", threshold, _why_no_status(f))
    states: dict[str, str] = dict(status.get("breakers") or {})
    bad = {n: s for n, s in states.items() if s in _CIRCUIT_FAIL}
    odd = {n: s for n, s in states.items() if s in _CIRCUIT_WARN}
    if not bad and not odd:
        return Line(key, name, Status.PASS, f"{len(states)} of {len(states)} closed", threshold)
    figure = ", ".join(f"{n} {s}" for n, s in sorted({**odd, **bad}.items()))
    if bad:
        return Line(key, name, Status.FAIL, figure, threshold,
                    "calls are rejected: INC-03 / netscope admin breaker show")  # fmt: skip
    return Line(key, name, Status.WARN, figure, threshold)


def circuits_window(f: Figures, t: Thresholds) -> Line:
    key, name = "circuits.window", "Circuits mostly closed"
    threshold = f"closed >= {_pct(t.closed_share_pass)} of {_span(f.trend_window_s)}"
    gate = _trend_gate(f, key, name, threshold)
    if gate is not None:
        return gate
    assert f.trends is not None
    shares = f.trends.closed_share
    if not shares:
        return Line(key, name, Status.SKIP, "no breaker series", threshold)
    worst_name = min(shares, key=shares.__getitem__)
    share = shares[worst_name]
    figure = f"worst {worst_name}: closed {_pct(share)}"
    if share < t.closed_share_fail:
        return Line(key, name, Status.FAIL, figure, threshold)
    if share < t.closed_share_pass:
        return Line(key, name, Status.WARN, figure, threshold)
    return Line(key, name, Status.PASS, figure, threshold)


# -- WebSocket and clock -------------------------------------------------------------------


def ws_delay(f: Figures, t: Thresholds) -> Line:
    key, name = "ws.delay", "WS broadcast delay p99"
    threshold = f"< {_s(t.ws_delay_fail_s)} (warn at {_s(t.ws_delay_warn_s)})"
    w = f.window
    if w is None:
        return _no_window(f, key, name, threshold)
    if w.ws_delay_p99_s is None or w.ws_delay_samples <= 0:
        return Line(key, name, Status.SKIP, f"no event sent ({w.span})", threshold,
                    f.ws_error or "no WebSocket client was connected")  # fmt: skip
    p99 = w.ws_delay_p99_s
    figure = f"{_s(p99)} over {_n(w.ws_delay_samples)} events ({w.span})"
    status = (Status.FAIL if p99 >= t.ws_delay_fail_s
              else Status.WARN if p99 >= t.ws_delay_warn_s else Status.PASS)  # fmt: skip
    return Line(key, name, status, figure, threshold)


def clock_offset(f: Figures, t: Thresholds) -> Line:
    key, name = "clock.ntp", "Clock offset (NTP)"
    threshold = f"|offset| <= {_s(t.clock_warn_s)} (fail at {_s(t.clock_fail_s)})"
    c = f.clock
    if c.offset_s is None:
        return Line(key, name, Status.SKIP, "unknown", threshold,
                    c.detail or "neither chronyc nor timedatectl answered")  # fmt: skip
    size = abs(c.offset_s)
    direction = "ahead" if c.offset_s > 0 else "behind"
    figure = f"{_s(size)} {direction} ({c.source})"
    detail = "; ".join(x for x in (c.detail, "checked on this host") if x)
    if size >= t.clock_fail_s:
        return Line(key, name, Status.FAIL, figure, threshold,
                    "lease takeovers possible (ledger.lease_margin_s); " + detail)  # fmt: skip
    if c.synchronised is False:
        return Line(key, name, Status.WARN, figure, threshold, "not synchronised; " + detail)
    if size > t.clock_warn_s:
        return Line(key, name, Status.WARN, figure, threshold, detail)
    return Line(key, name, Status.PASS, figure, threshold, detail)


def clock_broker() -> Line:
    return Line("clock.broker", "Clock vs broker", Status.SKIP, "not observed",
                "skew < ledger.lease_margin_s", BROKER_SKEW_NOT_OBSERVED)  # fmt: skip


def prometheus(f: Figures) -> Line | None:
    if f.prometheus is None:
        return None
    key, name, threshold = "prometheus", "Prometheus", "answers and scrapes NetScope"
    if f.prometheus_error:
        return Line(key, name, Status.FAIL, "unusable", threshold, f.prometheus_error[:400])
    if f.prometheus_series <= 0:
        return Line(key, name, Status.FAIL, "no NetScope series", threshold,
                    "is it scraping NetScope's /metrics? (docs/runbook.md §3 step 1)")  # fmt: skip
    return Line(key, name, Status.PASS, f"{f.prometheus_series} NetScope processes scraped",
                threshold, f.prometheus)  # fmt: skip


def evaluate(f: Figures, t: Thresholds | None = None) -> list[Line]:
    """Section 5's checklist, in the runbook's order, one line per item (per upstream for
    the call figures)."""
    t = t or Thresholds()
    lines: list[Line] = []
    prom = prometheus(f)
    if prom is not None:
        lines.append(prom)
    lines += [live(f), ready(f), consumer_lag(f), lag_trend(f, t)]
    lines += [audit_writes(f, t), audit_latency(f, t), spool_backlog(f, t)]
    for upstream in _upstream_names(f):
        lines += [latency(f, t, upstream), errors(f, t, upstream), timeouts(f, t, upstream)]
    lines += [queue_depth(f, t), queue_trend(f, t), circuits_now(f), circuits_window(f, t)]
    lines += [ws_delay(f, t), clock_offset(f, t), clock_broker()]
    return lines

