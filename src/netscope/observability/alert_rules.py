"""NetScope's Prometheus alert rules, generated from one set of thresholds and windows.

Why a generator: the runbook (section 8) fixes what each alert means, but its targets and
windows are the operator's to tune, and the tests must evaluate the very same rules with
windows shortened to seconds. Writing PromQL by hand in three places (the shipped file, the
tests, an operator's copy) lets them drift. Here every number lives in `AlertThresholds` (units
in the names, documented defaults), `build_rules()` turns it into the rules-file structure, and
`render_yaml()` writes it byte-for-byte deterministically. The shipped
``deploy/prometheus/netscope-alerts.yml`` is ``render_yaml(AlertThresholds())`` and a unit test
keeps the two identical; ``netscope alert-rules --set KEY=VALUE`` writes a tuned copy.

The label vocabularies (outcomes, error origins, breaker states) come from the code that
defines them, so a new outcome lands on the right side of each ratio without editing PromQL.

Pure: no I/O, no clock; thresholds in, rules out.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from netscope.config import UPSTREAM_NAME
from netscope.contract.outcomes import (
    DUPLICATE_OUTCOMES,
    NO_UPSTREAM_LATENCY_OUTCOMES,
    ErrorOrigin,
    Outcome,
)
from netscope.resilience.breaker import BreakerState

Seconds = Annotated[int, Field(ge=1)]
ForSeconds = Annotated[int, Field(ge=0)]  # 0: fire on the first evaluation that matches
Ratio = Annotated[float, Field(gt=0, lt=1)]

SEVERITIES = ("warning", "major", "critical")  # the runbook's: warning, majeure, critique

# Sections of docs/runbook.md (GitHub heading anchors) that say what to do; a unit test
# checks each one is a heading of the runbook.
RUNBOOK_PREREQUISITES = "2-prerequisites"
RUNBOOK_HEALTH = "5-health-checklist-every-5-minutes"
RUNBOOK_INC01 = "inc-01--outbound-timeouts-surge"
RUNBOOK_INC02 = "inc-02--ceph-rgw-write-errors"
RUNBOOK_INC03 = "inc-03--circuit-breaker-open-for-long"
RUNBOOK_ALERTS = "8-operational-slos-and-alert-thresholds"


class BurnWindow(BaseModel):
    """One multi-window burn-rate condition (SRE workbook, ch. 5): both windows must burn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    long_window_s: Seconds
    short_window_s: Seconds
    burn_rate: Annotated[float, Field(gt=0)]
    alert: Literal["page", "ticket"]


_DEFAULT_BURN_WINDOWS = (
    BurnWindow(long_window_s=3600, short_window_s=300, burn_rate=14.4, alert="page"),
    BurnWindow(long_window_s=21600, short_window_s=1800, burn_rate=6.0, alert="page"),
    BurnWindow(long_window_s=259200, short_window_s=21600, burn_rate=1.0, alert="ticket"),
)


class AlertThresholds(BaseModel):
    """Every threshold and window of the shipped rules; the defaults are the runbook's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: str = Field(
        "netscope",
        description="Prometheus `job` label of the NetScope scrape config; every selector "
        "is restricted to it (a `netscope replay --metrics-port` scraped under another job "
        "then stays out of the live alerts).",
    )
    runbook_url: str = Field(
        "docs/runbook.md",
        description="Where operators read docs/runbook.md (e.g. the repository's web view); "
        "each alert's `runbook_url` is this plus the anchor of its section.",
    )
    latency_p95_target_s: Annotated[float, Field(gt=0)] = Field(
        1.0,
        description="p95 outbound latency target of an upstream with no entry in "
        "`latency_p95_target_s_by_upstream` (the runbook leaves the value to the team).",
    )
    latency_p95_target_s_by_upstream: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Per-upstream p95 targets, e.g. `{payments = 0.8}`.",
    )
    latency_window_s: Seconds = Field(300, description="Rate window of the p95.")
    latency_for_s: ForSeconds = Field(600, description="How long p95 stays above target.")
    upstream_error_ratio_max: Ratio = Field(
        0.02, description="Upstream-caused errors / calls made to the upstream (2 %)."
    )
    upstream_error_window_s: Seconds = Field(300, description="Rate window of that ratio.")
    upstream_error_for_s: ForSeconds = Field(
        60, description="How long the ratio stays above (against one-evaluation blips)."
    )
    audit_backlog_growing_s: Seconds = Field(
        900,
        description="The oldest spooled audit batch has waited this long and its age still "
        "grows over this window (RGW not taking the backlog).",
    )
    circuit_open_for_s: ForSeconds = Field(
        300, description="How long a circuit stays open (or forced open) without closing."
    )
    call_success_slo_ratio: Ratio = Field(
        0.995, description="SLO of call success; the error budget is 1 minus this."
    )
    slo_burn_windows: tuple[BurnWindow, ...] = Field(
        _DEFAULT_BURN_WINDOWS,
        description="Multi-window burn-rate conditions: 1 h / 5 min at 14.4x and "
        "6 h / 30 min at 6x page, 3 d / 6 h at 1x opens a ticket.",
    )
    instance_down_for_s: ForSeconds = Field(60, description="Scrape failing for this long.")
    not_ready_for_s: ForSeconds = Field(
        120, description="A readiness input (spool full, audit store failing) fails this long."
    )
    consumer_lag_window_s: Seconds = Field(
        900, description="Window of the consumer-lag trend (Burrow-style: a slope, no level)."
    )
    consumer_lag_growth_min_per_s: Annotated[float, Field(ge=0)] = Field(
        1.0,
        description="Lag slope over the window, messages per second, above which it grows "
        "(the lag must also never have reached 0 in the window).",
    )
    spool_free_disk_min_bytes: Annotated[int, Field(ge=0)] = Field(
        1 << 30,
        description="Free bytes on the spool's volume below which it is nearly full "
        "(twice the default `audit.spool.free_disk_floor_bytes`, where the spool refuses).",
    )
    spool_free_disk_for_s: ForSeconds = Field(300, description="How long it stays below.")
    ws_broadcast_delay_p99_max_s: Annotated[float, Field(gt=0)] = Field(
        2.0, description="WebSocket broadcast delay p99 bound (runbook section 5: < 2 s)."
    )
    ws_window_s: Seconds = Field(300, description="Rate window of that p99.")
    ws_for_s: ForSeconds = Field(300, description="How long the p99 stays above.")
    ledger_down_for_s: ForSeconds = Field(
        60, description="The idempotency ledger unreachable (ingest paused) for this long."
    )
    clock_offset_max_s: Annotated[float, Field(gt=0)] = Field(
        1.0, description="|NetScope's clock - Prometheus' clock| at scrape above this."
    )
    clock_offset_for_s: ForSeconds = Field(300, description="How long the offset stays above.")

    @field_validator("latency_p95_target_s_by_upstream")
    @classmethod
    def _upstream_names(cls, value: dict[str, float]) -> dict[str, float]:
        # The names go into PromQL matchers unescaped: they must be valid upstream names.
        for name in value:
            if not UPSTREAM_NAME.match(name):
                raise ValueError(f"upstream name {name!r} must match {UPSTREAM_NAME.pattern}")
        return value

    @field_validator("job")
    @classmethod
    def _job(cls, value: str) -> str:
        if not value or '"' in value or "\\" in value:
            raise ValueError("job must be a non-empty label value without quotes or backslashes")
        return value

    @model_validator(mode="after")
    def _windows(self) -> AlertThresholds:
        for w in self.slo_burn_windows:
            if w.short_window_s >= w.long_window_s:
                raise ValueError(
                    f"slo_burn_windows: short window {w.short_window_s} s must be shorter "
                    f"than long window {w.long_window_s} s"
                )
        if not any(w.alert == "page" for w in self.slo_burn_windows):
            raise ValueError("slo_burn_windows needs at least one 'page' window")
        return self


# --- the label vocabularies, from the code that defines them ---------------------------------

# Calls that went to the upstream (or were due to): the runbook ratio's denominator.
_NOT_CALLED = sorted(o.value for o in NO_UPSTREAM_LATENCY_OUTCOMES)
# Requests a caller is owed an answer for: every outcome but invalid input and the ledger's
# "already done / being done by another claim" (no new call was owed).
_NOT_OWED = sorted(o.value for o in DUPLICATE_OUTCOMES | {Outcome.INVALID})
# A circuit that has not closed: rejecting (open, forced_open) or probing between two opens.
_NOT_CLOSED = sorted(
    s.value for s in (BreakerState.OPEN, BreakerState.FORCED_OPEN, BreakerState.HALF_OPEN)
)


def duration(seconds: int) -> str:
    """Seconds as a Prometheus duration: 900 -> "15m", 259200 -> "3d", 90 -> "1m30s"."""
    if seconds < 0:
        raise ValueError(f"negative duration {seconds}")
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


def number(value: float) -> str:
    """A threshold as PromQL reads it, without float noise (1 - 0.995 -> 0.005)."""
    return f"{value:.12g}"


def _regex(values: list[str]) -> str:
    return "|".join(values)


class _Builder:
    """Helpers bound to one set of thresholds (the job selector, the runbook base)."""

    def __init__(self, t: AlertThresholds) -> None:
        self.t = t

    def sel(self, name: str, *matchers: str) -> str:
        return name + "{" + ",".join([f'job="{self.t.job}"', *matchers]) + "}"

    def runbook(self, anchor: str) -> str:
        return f"{self.t.runbook_url}#{anchor}"

    def alert(
        self,
        name: str,
        expr: str,
        *,
        hold_s: int,
        severity: str,
        summary: str,
        description: str,
        anchor: str,
    ) -> dict[str, Any]:
        assert severity in SEVERITIES, severity
        rule: dict[str, Any] = {"alert": name, "expr": expr}
        if hold_s:
            rule["for"] = duration(hold_s)
        rule["labels"] = {"severity": severity}
        rule["annotations"] = {
            "summary": summary,
            "description": description,
            "runbook_url": self.runbook(anchor),
        }
        return rule


# --- runbook section 8 ------------------------------------------------------------------------


def _latency(b: _Builder) -> list[dict[str, Any]]:
    t = b.t
    window = duration(t.latency_window_s)

    def rule(matcher: str | None, target: float) -> dict[str, Any]:
        bucket = b.sel(
            "netscope_request_duration_seconds_bucket", *([matcher] if matcher else [])
        )
        expr = (
            "histogram_quantile(\n"
            "  0.95,\n"
            f"  sum by (job, upstream, le) (rate({bucket}[{window}]))\n"
            f")\n> {number(target)}"
        )
        return b.alert(
            "NetScopeUpstreamLatencyHigh",
            expr,
            hold_s=t.latency_for_s,
            severity="warning",
            summary="p95 latency of upstream {{ $labels.upstream }} is "
            "{{ $value | humanizeDuration }}, above its "
            f"{number(target)} s target",
            description="Consume-to-outcome p95 of the calls to {{ $labels.upstream }} "
            f"(retries included, rejections excluded) over {window} has been "
            "{{ $value | humanizeDuration }}, above the "
            f"{number(target)} s target, for {duration(t.latency_for_s)}. "
            "Check the upstream's latency and 429s, the timeouts, the breaker; throttle "
            "intake if needed (INC-01).",
            anchor=RUNBOOK_INC01,
        )

    overrides = t.latency_p95_target_s_by_upstream
    rules = [rule(f'upstream="{name}"', target) for name, target in sorted(overrides.items())]
    rest = f'upstream!~"{_regex(sorted(overrides))}"' if overrides else None
    rules.append(rule(rest, t.latency_p95_target_s))
    return rules


def upstream_error_ratio_expr(b: _Builder, window_s: int) -> str:
    """Upstream-caused errors over the calls that went to the upstream, per upstream.

    Numerator: ``netscope_errors_total{origin="upstream"}`` (status, timeouts, resets,
    protocol errors). Denominator: ``netscope_requests_total`` without the outcomes that
    made no call (rejections, invalid, duplicates, ledger_unavailable). Load shedding and bad
    input are on neither side, so they can neither page as "the upstream fails" nor hide it.
    """
    window = duration(window_s)
    errors = b.sel("netscope_errors_total", f'origin="{ErrorOrigin.UPSTREAM.value}"')
    calls = b.sel("netscope_requests_total", f'outcome!~"{_regex(_NOT_CALLED)}"')
    return (
        f"sum by (job, upstream) (rate({errors}[{window}]))\n"
        "/\n"
        f"sum by (job, upstream) (rate({calls}[{window}]))"
    )


def _error_ratio(b: _Builder) -> dict[str, Any]:
    t = b.t
    window = duration(t.upstream_error_window_s)
    limit = t.upstream_error_ratio_max
    return b.alert(
        "NetScopeUpstreamErrorRatioHigh",
        upstream_error_ratio_expr(b, t.upstream_error_window_s) + f"\n> {number(limit)}",
        hold_s=t.upstream_error_for_s,
        severity="major",
        summary="Upstream {{ $labels.upstream }} fails {{ $value | humanizePercentage }} "
        f"of calls over {window} (limit {number(limit * 100)} %)",
        description="{{ $value | humanizePercentage }} of the calls NetScope made to "
        "{{ $labels.upstream }} over the last "
        f"{window} ended in an upstream-caused error (status, timeout, reset, protocol). "
        "Local rejections, invalid messages and duplicates are not counted. "
        "Find the error classes: sum by (upstream, error_class) "
        "(rate(netscope_errors_total[5m])), `netscope audit errors`.",
        anchor=RUNBOOK_INC03,
    )


def _audit_backlog(b: _Builder) -> dict[str, Any]:
    t = b.t
    age = b.sel("netscope_audit_backlog_oldest_age_seconds")
    window = duration(t.audit_backlog_growing_s)
    expr = f"{age} > {t.audit_backlog_growing_s}\nand\nderiv({age}[{window}]) > 0"
    return b.alert(
        "NetScopeAuditBacklogGrowing",
        expr,
        hold_s=0,  # the window is the threshold itself: "growing for more than 15 min"
        severity="critical",
        summary="Audit backlog of {{ $labels.instance }} has not reached RGW for "
        "{{ $value | humanizeDuration }}",
        description="The oldest audit batch spooled locally by {{ $labels.instance }} has "
        "waited {{ $value | humanizeDuration }} and its age still grows over "
        f"{window}: RGW is not taking the backlog. Records are durable in the spool only "
        "(one copy, one disk). Check RGW credentials and endpoint, the spool's free disk "
        "(INC-02).",
        anchor=RUNBOOK_INC02,
    )


def _circuit_open(b: _Builder) -> dict[str, Any]:
    t = b.t
    window = duration(max(t.circuit_open_for_s, 1))
    # "Continuously open" as an operator means it: not closed since. A failed half-open probe
    # sends it straight back to open; counting half_open as "not closed" keeps those probe
    # blips (which a 1 s scrape can catch) from restarting the 5 min. forced_open rejects
    # every call just the same: it counts.
    not_closed = b.sel("netscope_circuit_state", f'state=~"{_regex(_NOT_CLOSED)}"')
    expr = (
        f"avg_over_time({b.sel('netscope_circuit_open')}[{window}])\n"
        "and\n"
        f"max without (state) ({not_closed}) == 1"
    )
    return b.alert(
        "NetScopeCircuitOpen",
        expr,
        hold_s=t.circuit_open_for_s,
        severity="major",
        summary="Circuit of upstream {{ $labels.upstream }} on {{ $labels.instance }} "
        f"has not closed for {duration(t.circuit_open_for_s)}",
        description="The breaker of {{ $labels.upstream }} on {{ $labels.instance }} has "
        f"been open or forced_open, with at most half-open probes in between, for "
        f"{duration(t.circuit_open_for_s)}; it rejected calls "
        "{{ $value | humanizePercentage }} of the last "
        f"{window}. Useful throughput to it is down. "
        "`netscope admin breaker show`; silence the alert if it was forced open on purpose "
        "(INC-03).",
        anchor=RUNBOOK_INC03,
    )


# --- SLO: multi-window, multi-burn-rate (Sloth / Pyrra shape) --------------------------------

SLO_RECORD = "job_upstream:netscope_call_errors:ratio_rate{window}"


def slo_record_name(window_s: int) -> str:
    return SLO_RECORD.format(window=duration(window_s))


def _slo(b: _Builder) -> list[dict[str, Any]]:
    t = b.t
    windows = sorted(
        {w.long_window_s for w in t.slo_burn_windows}
        | {w.short_window_s for w in t.slo_burn_windows}
    )
    errors = b.sel("netscope_errors_total", f'origin!="{ErrorOrigin.INPUT.value}"')
    owed = b.sel("netscope_requests_total", f'outcome!~"{_regex(_NOT_OWED)}"')
    rules: list[dict[str, Any]] = [
        {
            "record": slo_record_name(w),
            "expr": f"sum by (job, upstream) (rate({errors}[{duration(w)}]))\n"
            "/\n"
            f"sum by (job, upstream) (rate({owed}[{duration(w)}]))",
        }
        for w in windows
    ]
    budget = 1 - t.call_success_slo_ratio
    slo_pct = number(t.call_success_slo_ratio * 100)
    for kind, name, severity in (
        ("page", "NetScopeErrorBudgetBurnPage", "critical"),
        ("ticket", "NetScopeErrorBudgetBurnTicket", "warning"),
    ):
        conditions = [w for w in t.slo_burn_windows if w.alert == kind]
        if not conditions:
            continue
        clauses = []
        for w in conditions:
            limit = number(w.burn_rate * budget)
            clauses.append(
                "(\n"
                f"  {b.sel(slo_record_name(w.long_window_s))} > {limit}\n"
                "  and\n"
                f"  {b.sel(slo_record_name(w.short_window_s))} > {limit}\n"
                ")"
            )
        said = " or ".join(
            f"{number(w.burn_rate)}x over {duration(w.long_window_s)} and "
            f"{duration(w.short_window_s)}"
            for w in conditions
        )
        rules.append(
            b.alert(
                name,
                "\nor\n".join(clauses),
                hold_s=0,  # the short window is what stops it quickly; no `for` (Sloth)
                severity=severity,
                summary="Upstream {{ $labels.upstream }} burns the call-success error budget "
                f"({slo_pct} % SLO): error ratio {{{{ $value | humanizePercentage }}}}",
                description="Calls to {{ $labels.upstream }} fail at "
                "{{ $value | humanizePercentage }} over the long window, burning the "
                f"{number(budget * 100)} % error budget at {said}. Failed calls are every "
                "error outcome of a valid, non-duplicate request, local rejections (open "
                "circuit, rate limit, ledger unavailable) included: what the callers lost.",
                anchor=RUNBOOK_ALERTS,
            )
        )
    return rules


# --- what an on-call needs beside them --------------------------------------------------------


def _oncall(b: _Builder) -> list[dict[str, Any]]:
    t = b.t
    lag = f"sum by (job, topic) ({b.sel('netscope_consumer_lag')})"
    lag_window = duration(t.consumer_lag_window_s)
    step = duration(max(1, t.consumer_lag_window_s // 15))
    ws_window = duration(t.ws_window_s)
    ws_bucket = b.sel("netscope_ws_broadcast_delay_seconds_bucket")
    clock = b.sel("netscope_time_seconds")
    return [
        b.alert(
            "NetScopeInstanceDown",
            f'up{{job="{t.job}"}} == 0',
            hold_s=t.instance_down_for_s,
            severity="critical",
            summary="NetScope instance {{ $labels.instance }} is down",
            description="Prometheus has not scraped {{ $labels.instance }} for "
            f"{duration(t.instance_down_for_s)} (up = {{{{ $value }}}}): the process is "
            "gone or /metrics does not answer. Its partitions move to the other instances "
            "of the group; start it again (section 3).",
            anchor=RUNBOOK_ALERTS,
        ),
        b.alert(
            "NetScopeNotReady",
            # /health/ready's checks that have a series; the label names the check as
            # /health/ready does. ledger: NetScopeLedgerUnreachable; metrics: InstanceDown.
            'label_replace(\n'
            f'  {b.sel("netscope_audit_spool_full")} == 1, "check", "audit_spool", "", ""\n'
            ")\nor\nlabel_replace(\n"
            f'  {b.sel("netscope_audit_degraded")} == 1, "check", "audit_store", "", ""\n'
            ")",
            hold_s=t.not_ready_for_s,
            severity="major",
            summary="NetScope {{ $labels.instance }} is not ready: {{ $labels.check }} failing",
            description="Readiness check {{ $labels.check }} of {{ $labels.instance }} has "
            f"failed for {duration(t.not_ready_for_s)} (value {{{{ $value }}}}). "
            "audit_store: RGW writes fail, batches go to the local spool (INC-02); "
            "audit_spool: the spool is full, ingest is paused. "
            "`curl :8080/health/ready` names the failing check and why.",
            anchor=RUNBOOK_HEALTH,
        ),
        b.alert(
            "NetScopeConsumerLagGrowing",
            f"deriv({lag}[{lag_window}:{step}]) > {number(t.consumer_lag_growth_min_per_s)}\n"
            "and\n"
            f"min_over_time({lag}[{lag_window}:{step}]) > 0",
            hold_s=0,  # the trend window is the hold
            severity="warning",
            summary="Consumer lag on topic {{ $labels.topic }} keeps growing "
            "({{ $value | humanize }} messages/s)",
            description="The lag of the group on {{ $labels.topic }} grew by "
            "{{ $value | humanize }} messages/s over the last "
            f"{lag_window} and never reached 0: consumption is slower than production. "
            "Check the upstream latency, the breaker, ingest pauses "
            "(netscope_ingest_paused) and the throttle.",
            anchor=RUNBOOK_ALERTS,
        ),
        b.alert(
            "NetScopeSpoolDiskNearlyFull",
            f'{b.sel("netscope_audit_spool_free_disk_bytes")} < '
            f"{t.spool_free_disk_min_bytes}",
            hold_s=t.spool_free_disk_for_s,
            severity="warning",
            summary="Spool volume of {{ $labels.instance }} has "
            "{{ $value | humanize1024 }}B free",
            description="The audit spool's volume on {{ $labels.instance }} has "
            "{{ $value | humanize1024 }}B free (alert below "
            f"{t.spool_free_disk_min_bytes} bytes). When it reaches "
            "audit.spool.free_disk_floor_bytes the spool refuses batches and ingest pauses; "
            "during an RGW outage that is when NetScope stops (INC-02 step 4).",
            anchor=RUNBOOK_INC02,
        ),
        b.alert(
            "NetScopeWsBroadcastDelayHigh",
            "histogram_quantile(\n"
            "  0.99,\n"
            f"  sum by (job, instance, le) (rate({ws_bucket}[{ws_window}]))\n"
            f")\n> {number(t.ws_broadcast_delay_p99_max_s)}",
            hold_s=t.ws_for_s,
            severity="warning",
            summary="WebSocket broadcast delay p99 of {{ $labels.instance }} is "
            "{{ $value | humanizeDuration }}",
            description="Events reach dashboard clients of {{ $labels.instance }} "
            "{{ $value | humanizeDuration }} after they happen (p99 over "
            f"{ws_window}; bound {number(t.ws_broadcast_delay_p99_max_s)} s). "
            "Slow clients drop events: netscope_ws_dropped_events_total.",
            anchor=RUNBOOK_ALERTS,
        ),
        b.alert(
            "NetScopeLedgerUnreachable",
            f'{b.sel("netscope_ledger_up")} == 0',
            hold_s=t.ledger_down_for_s,
            severity="major",
            summary="Idempotency ledger unreachable from {{ $labels.instance }}",
            description="{{ $labels.instance }} has not reached its idempotency ledger for "
            f"{duration(t.ledger_down_for_s)} (netscope_ledger_up = {{{{ $value }}}}): it "
            "fails closed, ingest is paused and nothing is called. `netscope ledger status`; "
            "for PostgreSQL check the server and ledger.statement_timeout_s.",
            anchor=RUNBOOK_ALERTS,
        ),
        b.alert(
            "NetScopeClockOffset",
            f"abs({clock} - timestamp({clock})) > {number(t.clock_offset_max_s)}",
            hold_s=t.clock_offset_for_s,
            severity="warning",
            summary="Clock of {{ $labels.instance }} is {{ $value | humanizeDuration }} "
            "off Prometheus' clock",
            description="At scrape, the wall clock of {{ $labels.instance }} differs from "
            "Prometheus' by {{ $value | humanizeDuration }} (bound "
            f"{number(t.clock_offset_max_s)} s). Audit timestamps, replay windows and lease "
            "expiries read this clock: check NTP/chrony on both hosts (section 2).",
            anchor=RUNBOOK_PREREQUISITES,
        ),
    ]


def build_rules(t: AlertThresholds | None = None) -> dict[str, Any]:
    """The rules file as a dict (Prometheus `groups:` format)."""
    b = _Builder(t or AlertThresholds())
    return {
        "groups": [
            {
                "name": "netscope-runbook",
                "rules": [
                    *_latency(b),
                    _error_ratio(b),
                    _audit_backlog(b),
                    _circuit_open(b),
                ],
            },
            # Recording rules first in their group: Prometheus evaluates a group in order,
            # so the burn alerts read this evaluation's ratios.
            {"name": "netscope-slo", "rules": _slo(b)},
            {"name": "netscope-oncall", "rules": _oncall(b)},
        ]
    }


def alert_names(rules: dict[str, Any]) -> list[str]:
    """Distinct alert names, in file order."""
    seen: dict[str, None] = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                seen.setdefault(rule["alert"], None)
    return list(seen)


# --- metric names an expression reads (for the "only exported series" test) ------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_:])[0-9][0-9A-Za-z.+-]*")  # 0.95, 1e3, offset 5m
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
     "group_left", "group_right", "inf", "nan", "atan2"}
)  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (a small lexer, no PromQL library needed).

    Strips strings, label matchers, ranges, grouping clauses and numbers, then keeps the
    identifiers that are not followed by "(" (functions, aggregations) and are not keywords.
    """
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


# --- YAML, written by hand: deterministic, no YAML library -----------------------------------

HEADER = (
    "# NetScope alert rules. GENERATED by `netscope alert-rules`"
    " (src/netscope/observability/alert_rules.py): do not edit by hand.\n"
    "# Tune: netscope alert-rules --set KEY=VALUE [--overrides FILE.toml] -o FILE"
    " (keys and defaults: docs/alerts.md).\n"
    "# Unit tests: promtool test rules deploy/prometheus/tests/*.yml\n"
)


def render_yaml(t: AlertThresholds | None = None) -> str:
    """The rules file for these thresholds, as shipped (header, overrides, rules)."""
    t = t or AlertThresholds()
    changed = overrides_of(t)
    lines = [HEADER.rstrip("\n")]
    if changed:
        lines.append("# Overrides of the defaults:")
        lines += [f"#   {key} = {value}" for key, value in changed.items()]
    lines += _yaml(build_rules(t), 0)
    return "\n".join(lines) + "\n"


def overrides_of(t: AlertThresholds) -> dict[str, str]:
    """The fields that differ from the defaults, JSON-encoded, in field order."""
    default = AlertThresholds().model_dump(mode="json")
    now = t.model_dump(mode="json")
    return {
        key: json.dumps(value, sort_keys=True)
        for key, value in now.items()
        if value != default[key]
    }


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number(value)
    text = str(value)
    if '"' in text and "'" not in text and text.isprintable():
        return f"'{text}'"  # PromQL matchers read better single-quoted than escaped
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(text, ensure_ascii=False)


def _yaml(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _entry(f"{pad}{key}:", item, indent)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                first, *rest = _yaml(item, indent + 2)
                out.append(f"{pad}- {first.lstrip()}")
                out += rest
            else:
                out += _entry(f"{pad}-", item, indent)
    else:
        out.append(pad + _scalar(value))
    return out


def _entry(prefix: str, item: Any, indent: int) -> list[str]:
    if isinstance(item, dict | list) and item:
        return [prefix, *_yaml(item, indent + 2)]
    if isinstance(item, dict):
        return [f"{prefix} {{}}"]
    if isinstance(item, list):
        return [f"{prefix} []"]
    if isinstance(item, str) and "\n" in item:
        body = " " * (indent + 2)
        return [f"{prefix} |-", *[body + line if line else "" for line in item.split("\n")]]
    return [f"{prefix} {_scalar(item)}"]
