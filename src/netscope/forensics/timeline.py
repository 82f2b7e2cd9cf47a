"""``netscope audit timeline``: what happened to a request, or to an upstream, in order.

Rows from call records (one per message, then one per attempt: start, duration, status or
error class, the wait before the next try) and from control records (breaker transitions,
throttles, degraded mode, starts and stops) of the same upstreams and time span, ordered by
time. Live and replayed records are told apart by ``replay_run_id``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CONTROL_MARGIN_S = 60.0  # control events this long around the calls found are shown


@dataclass(slots=True)
class Filters:
    trace_id: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None
    upstream: str | None = None
    outcome: str | None = None

    def needles(self) -> list[bytes]:
        """Substrings a matching line must contain (the most selective filter first); empty:
        no cheap test, every line is parsed."""
        for value in (self.trace_id, self.request_id, self.idempotency_key):
            if value:
                return [value.encode()]
        return []

    def match(self, record: dict[str, Any]) -> bool:
        return all(
            expected is None or record.get(name) == expected
            for name, expected in (
                ("trace_id", self.trace_id),
                ("request_id", self.request_id),
                ("idempotency_key", self.idempotency_key),
                ("upstream", self.upstream),
                ("outcome", self.outcome),
            )
        )


@dataclass(slots=True)
class Row:
    at: float
    kind: str  # "call", "attempt", "control"
    what: str
    upstream: str | None
    request_id: str | None
    trace_id: str | None
    run: str  # "live" or the replay run id
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "kind": self.kind,
            "what": self.what,
            "upstream": self.upstream,
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "run": self.run,
            **self.detail,
        }


def call_rows(record: dict[str, Any]) -> list[Row]:
    run = record.get("replay_run_id") or "live"
    common = (record.get("upstream"), record.get("request_id"), record.get("trace_id"), run)
    k = record["kafka"]
    rows = [
        Row(
            record["received_at"],
            "call",
            record["outcome"],
            *common,
            detail={
                "status": record.get("status"),
                "error_class": record.get("error_class"),
                "latency_s": record.get("latency_s"),
                "attempts": len(record.get("attempts") or []),
                "kafka": f"{k['topic']}/{k['partition']}/{k['offset']}",
                "duplicate_of": record.get("duplicate_of"),
                "error_detail": record.get("error_detail"),
            },
        )
    ]
    for attempt in record.get("attempts") or []:
        rows.append(
            Row(
                attempt["started_at"],
                "attempt",
                f"attempt {attempt['n']}",
                *common,
                detail={
                    "status": attempt.get("status"),
                    "error_class": attempt.get("error_class"),
                    "duration_s": attempt.get("duration_s"),
                    "retry_delay_s": attempt.get("retry_delay_s"),
                },
            )
        )
    return rows


def control_row(record: dict[str, Any]) -> Row:
    run = record.get("replay_run_id") or "live"
    data = dict(record.get("data") or {})
    what = record["event"]
    if what == "breaker_transition":
        what = f"breaker {data.get('from')} -> {data.get('to')}"
    return Row(
        record["at"], "control", what, record.get("upstream"), None, None, run,
        detail={"actor": record.get("actor"), "instance_id": record.get("instance_id"), **data},
    )  # fmt: skip


def build(
    records: Iterable[dict[str, Any]], filters: Filters, from_ms: int, to_ms: int
) -> list[Row]:
    """The timeline of the calls matching ``filters`` in ``[from_ms, to_ms)`` (event time),
    with the control events of their upstreams around them."""
    calls: list[dict[str, Any]] = []
    controls: list[dict[str, Any]] = []
    for record in records:
        if record.get("record_type") == "control":
            controls.append(record)
        elif from_ms <= record["kafka"]["timestamp_ms"] < to_ms and filters.match(record):
            calls.append(record)
    rows = [row for record in calls for row in call_rows(record)]
    if calls:
        upstreams = {r.get("upstream") for r in calls}
        first = min(r["received_at"] for r in calls) - CONTROL_MARGIN_S
        last = max(r["completed_at"] for r in calls) + CONTROL_MARGIN_S
        for record in controls:
            up = record.get("upstream")
            if first <= record["at"] <= last and (up is None or up in upstreams):
                rows.append(control_row(record))
    rows.sort(key=lambda row: (row.at, row.kind != "call"))
    return rows
