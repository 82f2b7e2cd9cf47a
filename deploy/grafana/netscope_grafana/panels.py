"""The panel catalogue: what the on-call engineer sees, row by row, as plain data.

Why data and not SDK calls: the queries are what matters and what the tests check (they
parse, name exported series only, and return data from a real Prometheus); ``build.py``
owns the Grafana details (ids, layout, legends) once for every panel. Queries aggregate
over instances unless a figure is per process (queue, spool, clients), and follow
docs/metrics.md's PromQL so the dashboard and the runbook read the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from netscope.resilience.breaker import BreakerState
from netscope_grafana.promql import by, increase, quantile, rate, sel

Kind = Literal["timeseries", "state-timeline"]


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str = "short"
    kind: Kind = "timeseries"
    width: int = 8
    # A red step at each value (the runbook's thresholds: 2 % errors, 2 s WS delay).
    thresholds: tuple[float, ...] = ()
    # state-timeline: value -> (text, colour).
    states: tuple[tuple[int, str, str], ...] = ()
    # Shown instead of "No data" where no series is the normal, healthy answer.
    no_value: str | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def _t(expr: str, legend: str) -> Target:
    return Target(expr, legend)


# The breaker states as one number per upstream, so a state timeline shows one band per
# upstream; colours as on NetScope's own dashboard (docs/dashboard.md). closed is 0: the
# sum of the other states' indicators times their code.
BREAKER_CODES: tuple[tuple[int, str, str], ...] = (
    (0, BreakerState.CLOSED.value, "green"),
    (1, BreakerState.HALF_OPEN.value, "yellow"),
    (2, BreakerState.OPEN.value, "red"),
    (3, BreakerState.FORCED_OPEN.value, "purple"),
    (4, BreakerState.FORCED_CLOSED.value, "blue"),
)


def _breaker_state_expr() -> str:
    terms = []
    for code, state, _ in BREAKER_CODES:
        if code:
            indicator = sel("netscope_circuit_state", f'state="{state}"')
            terms.append(f"{by('instance, upstream', indicator, 'max')} * {code}")
    return " + ".join(terms)


def _ratio(numerator: str, denominator: str) -> str:
    return f"{numerator} / {denominator}"


_CALLED = 'outcome!~"invalid|rejected_.*|duplicate_.*|ledger_unavailable"'

CALLS = Row(
    "Calls per upstream (RED)",
    (
        Panel(
            "Request rate",
            "Messages that reached a terminal outcome per second, every outcome "
            "(netscope_requests_total).",
            (_t(by("upstream", rate("netscope_requests_total")), "{{upstream}}"),),
            unit="reqps",
        ),
        Panel(
            "Upstream error ratio (runbook: 2 %)",
            "Errors the upstream caused (origin=upstream) over the calls that went to it: "
            "invalid input, local refusals and the ledger's duplicates are on neither side "
            "(docs/metrics.md, runbook section 8).",
            (
                _t(
                    _ratio(
                        by("upstream", rate("netscope_errors_total", 'origin="upstream"')),
                        by("upstream", rate("netscope_requests_total", _CALLED)),
                    ),
                    "{{upstream}}",
                ),
            ),
            unit="percentunit",
            thresholds=(0.02,),
        ),
        Panel(
            "Latency p50 / p95 / p99",
            "Consume-to-outcome latency of the messages that went to the upstream, waits and "
            "retries included; rejections and duplicates are not observed.",
            tuple(
                _t(
                    quantile(q, "netscope_request_duration_seconds", "upstream"),
                    f"p{int(q * 100)} {{{{upstream}}}}",
                )
                for q in (0.5, 0.95, 0.99)
            ),
            unit="s",
        ),
        Panel(
            "Outcomes other than success",
            "Terminal outcomes except success: upstream failures, timeouts, NetScope's "
            "refusals (rejected_*, ledger_unavailable), invalid input and duplicates.",
            (
                _t(
                    by("upstream, outcome", rate("netscope_requests_total", 'outcome!="success"')),
                    "{{upstream}} {{outcome}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Errors by class and origin",
            "Terminal errors by error class; origin says whom they are about: upstream, "
            "local (NetScope refused) or input (invalid message).",
            (
                _t(
                    by("upstream, origin, error_class", rate("netscope_errors_total")),
                    "{{upstream}} {{origin}}/{{error_class}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Upstream answers by status class (per attempt)",
            "Attempts the upstream answered, retried ones included: a 429 storm shows here as "
            "4xx even when retries absorb it.",
            (
                _t(
                    by("upstream, status_class", rate("netscope_upstream_responses_total")),
                    "{{upstream}} {{status_class}}",
                ),
            ),
            unit="reqps",
        ),
    ),
)

RESILIENCE = Row(
    "Timeouts, retries and circuit breakers",
    (
        Panel(
            "Timeouts by kind (per attempt)",
            "Attempts that timed out: connect, read, or the message's deadline (runbook "
            "INC-01). One message with three timed-out attempts counts three.",
            (_t(by("upstream, kind", rate("netscope_timeouts_total")), "{{upstream}} {{kind}}"),),
            unit="reqps",
        ),
        Panel(
            "Retries and retry-budget denials",
            "Retries scheduled, and retries refused because the retry budget was spent or the "
            "deadline could not be met.",
            (
                _t(by("upstream", rate("netscope_retries_total")), "{{upstream}} retries"),
                _t(
                    by("upstream, reason", rate("netscope_retries_denied_total")),
                    "{{upstream}} denied: {{reason}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Breaker transitions (since process start)",
            "Transitions counted by each process since it started; a step up is a transition. "
            "Cumulative on purpose: each (from, to) series appears on its first transition, "
            "already at 1, so increase() or rate() would not see that first one.",
            (
                _t(
                    by(
                        "upstream, from_state, to_state",
                        sel("netscope_circuit_transitions_total"),
                    ),
                    "{{upstream}} {{from_state}} -> {{to_state}}",
                ),
            ),
            no_value="no transition since start",
        ),
        Panel(
            "Circuit breaker state",
            "Each upstream's breaker over time: open and forced_open reject every call "
            "(netscope_circuit_open = 1, the runbook's circuit alert).",
            (_t(_breaker_state_expr(), "{{upstream}} ({{instance}})"),),
            kind="state-timeline",
            states=BREAKER_CODES,
            width=24,
        ),
    ),
)

INTAKE = Row(
    "Kafka intake and flow control",
    (
        Panel(
            "Queue depth and capacity",
            "Messages consumed but not yet durably audited, against pipeline.queue_depth: at "
            "the bound ingest pauses (runbook section 5: not growing).",
            (
                _t(by("instance", sel("netscope_queue_depth"), "max"), "depth {{instance}}"),
                _t(by("instance", sel("netscope_queue_capacity"), "max"), "capacity {{instance}}"),
            ),
        ),
        Panel(
            "Consumer lag per partition",
            "Broker end offset minus committed offset, per assigned partition (runbook "
            "section 5: stable, no drift).",
            (
                _t(
                    by("topic, partition", sel("netscope_consumer_lag"), "max"),
                    "{{topic}}/{{partition}}",
                ),
            ),
        ),
        Panel(
            "In flight by upstream",
            "Calls in progress, retries and saturation waits included.",
            (_t(by("upstream", sel("netscope_in_flight")), "{{upstream}}"),),
        ),
        Panel(
            "Ingest paused, by reason",
            "1 while consumption is paused: queue_full, spool_full, throttle or "
            "ledger_unavailable.",
            (
                _t(
                    by("instance, reason", sel("netscope_ingest_paused"), "max"),
                    "{{reason}} {{instance}}",
                ),
            ),
            width=12,
        ),
        Panel(
            "Offset commits and dead letters",
            "Successful and failed offset commits, and invalid messages sent to the "
            "dead-letter topic by first failing field.",
            (
                _t(by("instance", rate("netscope_kafka_commits_total")), "commits {{instance}}"),
                _t(
                    by("instance", rate("netscope_kafka_commit_errors_total")),
                    "commit errors {{instance}}",
                ),
                _t(by("field", rate("netscope_dead_letters_total")), "dead letters: {{field}}"),
            ),
            unit="ops",
            width=12,
        ),
    ),
)

AUDIT = Row(
    "Audit: Ceph RGW and the local spool",
    (
        Panel(
            "Audit batches written",
            "Batches made durable by target (store = RGW, spool = local fallback) and result; "
            "records per second beside them. RGW is written while store > 0.",
            (
                _t(
                    by("target, result", rate("netscope_audit_writes_total")),
                    "{{target}} {{result}}",
                ),
                _t(f"sum({rate('netscope_audit_records_total')})", "records"),
            ),
            unit="ops",
        ),
        Panel(
            "Audit write errors",
            "Failed audit writes by target and reason, retried (nothing is dropped); keeps "
            "counting while RGW is down (runbook INC-02).",
            (
                _t(
                    by("target, reason", rate("netscope_audit_write_errors_total")),
                    "{{target}} {{reason}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Audit write latency",
            "Time to make one batch durable (RGW write, retries and spool fallback included), "
            "and consume-to-durable latency of each batch's oldest record.",
            (
                _t(quantile(0.95, "netscope_audit_write_duration_seconds"), "write p95"),
                _t(quantile(0.99, "netscope_audit_write_duration_seconds"), "write p99"),
                _t(quantile(0.99, "netscope_audit_durable_latency_seconds"), "durable p99"),
            ),
            unit="s",
        ),
        Panel(
            "Spool backlog",
            "Bytes in the local spool waiting for upload to RGW; non-zero means RGW is behind "
            "or down.",
            (_t(by("instance", sel("netscope_audit_spool_bytes"), "max"), "{{instance}}"),),
            unit="bytes",
            width=6,
        ),
        Panel(
            "Spool backlog age and batches",
            "Age of the oldest spooled batch not yet uploaded (the backlog alert), batches "
            "pending and the drain rate.",
            (
                _t(
                    by("instance", sel("netscope_audit_backlog_oldest_age_seconds"), "max"),
                    "oldest age (s) {{instance}}",
                ),
                _t(
                    by("instance", sel("netscope_audit_spool_pending_batches"), "max"),
                    "pending batches {{instance}}",
                ),
                _t(
                    by("instance", rate("netscope_audit_spool_drained_total")),
                    "drained/s {{instance}}",
                ),
            ),
            width=6,
        ),
        Panel(
            "Spool disk",
            "Free bytes on the spool's volume (runbook INC-02 step 4); at the floor the spool "
            "is full and ingest pauses.",
            (
                _t(
                    by("instance", sel("netscope_audit_spool_free_disk_bytes"), "min"),
                    "free {{instance}}",
                ),
            ),
            unit="bytes",
            width=6,
        ),
        Panel(
            "Degraded mode, spool full, quarantine",
            "1 while the audit runs degraded (batches go to the spool) or the spool refuses "
            "appends; corrupt segments in quarantine need an operator.",
            (
                _t(by("instance", sel("netscope_audit_degraded"), "max"), "degraded {{instance}}"),
                _t(
                    by("instance", sel("netscope_audit_spool_full"), "max"),
                    "spool full {{instance}}",
                ),
                _t(
                    by("instance", sel("netscope_audit_spool_quarantined_segments"), "max"),
                    "quarantined {{instance}}",
                ),
            ),
            width=6,
        ),
    ),
)

WEBSOCKET = Row(
    "Live dashboard WebSocket",
    (
        Panel(
            "WS broadcast delay (runbook: p99 < 2 s)",
            "Event creation to sent on the socket, per process.",
            (
                _t(
                    quantile(0.5, "netscope_ws_broadcast_delay_seconds", "instance"),
                    "p50 {{instance}}",
                ),
                _t(
                    quantile(0.99, "netscope_ws_broadcast_delay_seconds", "instance"),
                    "p99 {{instance}}",
                ),
            ),
            unit="s",
            thresholds=(2.0,),
            width=12,
        ),
        Panel(
            "WS clients, events and drops",
            "Connected clients, events sent by type, and events lost by slow clients.",
            (
                _t(by("instance", sel("netscope_ws_clients"), "max"), "clients {{instance}}"),
                _t(by("type", rate("netscope_ws_events_sent_total")), "sent/s {{type}}"),
                _t(
                    by("instance", rate("netscope_ws_dropped_events_total")),
                    "dropped/s {{instance}}",
                ),
            ),
            width=12,
        ),
    ),
)

LEDGER = Row(
    "Idempotency ledger",
    (
        Panel(
            "Ledger claims and settles",
            "Answers to claims (claimed, completed = already done, in_progress, taken_over) "
            "and settles after the call.",
            (
                _t(by("result", rate("netscope_ledger_claims_total")), "claim {{result}}"),
                _t(by("result", rate("netscope_ledger_settles_total")), "settle {{result}}"),
            ),
            unit="ops",
            width=12,
        ),
        Panel(
            "Ledger round trip p99",
            "One batched claim or settle round trip that succeeded.",
            (_t(quantile(0.99, "netscope_ledger_round_trip_seconds", "op"), "p99 {{op}}"),),
            unit="s",
            width=12,
        ),
        Panel(
            "Ledger up, errors and lease expiries",
            "0 while the ledger does not answer (ingest pauses); failed round trips; keys "
            "called again after a lease ran out (possibly called twice).",
            (
                _t(by("instance", sel("netscope_ledger_up"), "min"), "up {{instance}}"),
                _t(by("op", rate("netscope_ledger_errors_total")), "errors/s {{op}}"),
                _t(
                    by("upstream", increase("netscope_ledger_lease_expiries_total")),
                    "lease expiries {{upstream}}",
                ),
            ),
            width=12,
        ),
        Panel(
            "Duplicates kept from the upstream",
            "Messages the ledger answered as done (duplicate_skipped) or held by another "
            "claim (duplicate_in_progress): not called.",
            (
                _t(
                    by(
                        "upstream, outcome",
                        rate("netscope_requests_total", 'outcome=~"duplicate_.*"'),
                    ),
                    "{{upstream}} {{outcome}}",
                ),
            ),
            unit="reqps",
            width=12,
        ),
    ),
)

REPLAY = Row(
    "Replay (netscope replay --metrics-port)",
    (
        Panel(
            "Replay progress",
            "Messages read from the window over the offsets planned, per run (runbook "
            "section 7, step 5). Only while a replay runs with --metrics-port and is scraped.",
            (
                _t(
                    _ratio(
                        by("run_id", sel("netscope_replay_messages_total", 'result="read"')),
                        by("run_id", sel("netscope_replay_planned_messages")),
                    ),
                    "{{run_id}}",
                ),
            ),
            unit="percentunit",
            no_value="no replay scraped",
            width=12,
        ),
        Panel(
            "Replay messages by result",
            "What happened to the window's messages: read, called, succeeded, skipped (the "
            "ledger held the key as done), failed, invalid, filtered.",
            (
                _t(
                    by("run_id, result", rate("netscope_replay_messages_total")),
                    "{{run_id}} {{result}}",
                ),
            ),
            unit="ops",
            width=12,
            no_value="no replay scraped",
        ),
    ),
)

ROWS: tuple[Row, ...] = (CALLS, RESILIENCE, INTAKE, AUDIT, WEBSOCKET, LEDGER, REPLAY)

ALERTS_ANNOTATION = 'ALERTS{alertstate="firing", alertname=~"NetScope.*"}'
"""Prometheus keeps ALERTS only while a rule is pending or firing (deploy/prometheus/)."""

INSTANCE_QUERY = "label_values(netscope_start_time_seconds, instance)"
UPSTREAM_QUERY = (
    'label_values(netscope_requests_total{instance=~"$instance", upstream!="(invalid)"}, upstream)'
)
