"""The incident journal's data (forensics/incident.py, validation.py, journal.py), from
records built as the audit writes them: what an engineer reads in the report must be what
the records say, and every invariant status must follow from its evidence."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from netscope.forensics.incident import IncidentFold, _Partition
from netscope.forensics.journal import html, markdown
from netscope.forensics.validation import validate

T0 = 1_733_299_980  # 2024-12-04T08:13:00Z, a minute boundary (seconds)
_seq = itertools.count()


def call(
    at: float, outcome: str = "success", *, upstream: str = "payments", latency: float = 0.05,
    partition: int = 0, offset: int | None = None, attempts: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    n = next(_seq)
    if attempts is None:
        error = outcome if outcome.startswith("timeout") else None
        attempts = [{"n": 1, "started_at": at - latency, "duration_s": latency,
                     "status": 200 if outcome == "success" else None, "error_class": error,
                     "retry_delay_s": None}]  # fmt: skip
    return {
        "request_id": f"r{n}", "idempotency_key": f"r{n}", "trace_id": f"{n:032x}",
        "upstream": upstream, "outcome": outcome, "received_at": at - latency,
        "completed_at": at, "latency_s": latency, "attempts": attempts,
        "kafka": {"topic": "req", "partition": partition,
                  "offset": n if offset is None else offset, "timestamp_ms": int(at * 1000)},
        "record_type": "call", **extra,
    }  # fmt: skip


def control(at: float, event: str, upstream: str | None = None, **data: Any) -> dict[str, Any]:
    return {"record_type": "control", "event": event, "at": at, "instance_id": "a",
            "upstream": upstream, "actor": None, "replay_run_id": None, "seq": next(_seq),
            "data": data}  # fmt: skip


def fold(records: list[dict[str, Any]], minutes: int = 10, **kw: Any) -> dict[str, Any]:
    f = IncidentFold(T0 * 1000, (T0 + minutes * 60) * 1000, **kw)
    for r in records:
        f.add(r)
    data = f.result()
    data.update(incident=None, generated_at="now", store="test",
                objects={"read": 1, "unreadable": []})  # fmt: skip
    data["validation"] = validate(data, None)
    return data


def inc01() -> list[dict[str, Any]]:
    """Ten calls a minute; minutes 3-4 time out half the time, the breaker opens at 3:30,
    probes at 5:00, closes at 5:10."""
    records = []
    for minute in range(10):
        for i in range(10):
            at = T0 + minute * 60 + i * 6 + 3  # attempts start in the same minute
            slow = minute in (3, 4) and i % 2 == 0
            records.append(call(at, "timeout_read" if slow else "success",
                                latency=2.0 if slow else 0.05 + 0.001 * i))  # fmt: skip
    records += [
        control(T0 + 210, "breaker_transition", "payments", **{"from": "closed", "to": "open",
                "reason": "failure_rate 0.50 >= 0.50 over 10 calls"}),
        control(T0 + 300, "breaker_transition", "payments",
                **{"from": "open", "to": "half_open", "reason": "wait_in_open_s elapsed"}),
        control(T0 + 310, "breaker_transition", "payments",
                **{"from": "half_open", "to": "closed", "reason": "2 probes succeeded"}),
    ]  # fmt: skip
    return records


def test_an_inc01_window_detects_the_spike_and_the_breakers_moves() -> None:
    data = fold(inc01(), deadlines_s={"payments": 3.0})
    assert data["totals"]["calls"] == 100
    assert data["detected"]["start"] == "2024-12-04T08:16:00Z"  # minute 3
    assert data["detected"]["end"] == "2024-12-04T08:19:00Z"  # the end of minute 5: closed
    timeouts = data["series"]["timeouts"]["timeout_read"]
    assert timeouts == [0, 0, 0, 5, 5, 0, 0, 0, 0, 0]
    assert data["impact"]["payments"] == {"calls": 100, "failed": 10, "timeouts": 10}
    states = [(iv["state"], iv["start_at"] - T0) for iv in data["breakers"]]
    assert states == [("closed", 0), ("open", 210), ("half_open", 300), ("closed", 310)]
    p95 = data["series"]["latency_s"]["payments"]["p95"]
    assert p95[3] == pytest.approx(2.0, rel=0.05) and p95[0] == pytest.approx(0.059, rel=0.05)
    i1 = data["invariants"][0]
    assert (i1["id"], i1["status"]) == ("I1", "touched")  # timeouts, all within the deadline
    assert data["invariants"][4]["status"] == "touched"  # I5: the breaker opened
    checks = {(v["incident"], v["check"]): v["status"] for v in data["validation"]}
    assert checks[("INC-01", "p95/p99 back down")] == "pass"
    assert checks[("INC-01", "timeouts back to their base level")] == "pass"
    assert checks[("INC-01", "circuit back to closed")] == "pass"
    assert checks[("INC-03", "transitions open -> half_open -> closed")] == "pass"


def test_the_checks_fail_while_the_incident_still_runs() -> None:
    records = [r for r in inc01() if r.get("event") != "breaker_transition" or
               r["data"]["to"] == "open"]  # fmt: skip
    for minute in range(5, 10):  # the upstream never recovers
        for i in range(0, 10, 2):
            records.append(call(T0 + minute * 60 + i * 6 + 2, "timeout_read", latency=2.0))
    data = fold(records, deadlines_s={"payments": 3.0})
    checks = {(v["incident"], v["check"]): v["status"] for v in data["validation"]}
    assert checks[("INC-01", "timeouts back to their base level")] == "fail"
    assert checks[("INC-01", "circuit back to closed")] == "fail"
    assert checks[("INC-01", "p95/p99 back down")] == "fail"
    assert checks[("INC-03", "transitions open -> half_open -> closed")] == "fail"


def test_a_steady_background_of_errors_is_not_an_incident() -> None:
    records = [call(T0 + m * 60 + i + 1, "http_error" if i % 10 == 0 else "success")
               for m in range(10) for i in range(30)]  # fmt: skip
    assert fold(records)["detected"]["start"] is None  # 10 % every minute: the usual


def test_a_call_past_its_deadline_plus_slack_violates_i1_with_the_request_named() -> None:
    late = call(T0 + 30, "success", latency=3.6)
    data = fold([call(T0 + 10), late], deadlines_s={"payments": 3.0})
    i1 = data["invariants"][0]
    assert i1["status"] == "violated" and late["request_id"] in i1["evidence"][0]
    assert data["impact"]["payments"]["past_deadline"] == 1


def test_offsets_without_a_record_ask_to_check_and_a_second_record_violates_i2() -> None:
    records = [call(T0 + i, offset=i) for i in (0, 1, 2, 5)]
    i2 = fold(records)["invariants"][1]
    assert i2["status"] == "check" and "2 offsets without a record" in i2["evidence"][0]
    i2 = fold([*records[:3], call(T0 + 9, offset=1)])["invariants"][1]
    assert i2["status"] == "violated", i2
    i2 = fold(records[:3])["invariants"][1]
    assert i2["status"] == "held" and "exactly one record" in i2["evidence"][-1]


def test_an_inc02_window_shows_the_degraded_period_and_the_backlog_drained() -> None:
    records = [call(T0 + s, offset=s // 5) for s in range(0, 600, 5)]
    records += [
        control(T0 + 120, "degraded_mode", degraded=True, reason="StoreTimeout",
                spool_pending_batches=0),
        control(T0 + 185, "degraded_mode", degraded=False, reason="store answers",
                spool_pending_batches=40),
        control(T0 + 190, "spool_drained", batches=30, records=900, complete=False,
                spool_pending_batches=10),
        control(T0 + 200, "spool_drained", batches=10, records=300, complete=True,
                spool_pending_batches=0),
    ]  # fmt: skip
    data = fold(records)
    (period,) = data["degraded_periods"]
    assert (period["start_at"] - T0, period["end_at"] - T0, period["duration_s"]) == (120, 185, 65)
    assert period["drained_records"] == 1200 and period["backlog_empty_at"] is not None
    assert [p["pending_batches"] for p in data["backlog"]] == [0, 40, 10, 0]
    assert data["detected"]["start"] == "2024-12-04T08:15:00Z"  # minute 2: degraded
    assert data["invariants"][1]["status"] == "touched"  # degraded, nothing missing
    checks = {v["check"]: v["status"] for v in data["validation"] if v["incident"] == "INC-02"}
    assert checks == {"RGW writes resumed": "pass", "audit backlog purged": "pass",
                      "no event lost": "pass"}  # fmt: skip


def test_replayed_and_out_of_window_records_stay_out_of_the_series() -> None:
    records = [call(T0 + 5), call(T0 + 6, replay_run_id="run-1"), call(T0 + 3600)]
    data = fold(records)
    assert data["totals"]["calls"] == 1
    assert data["totals"]["replay_runs"] == {"run-1": 1}


def test_the_partition_bitmap_counts_gaps_and_duplicates_in_any_order() -> None:
    p = _Partition()
    for offset in (1000, 1002, 990, 1002, 5000):
        p.add(offset)
    assert p.span() == (990, 5000)
    assert (p.records, p.distinct) == (5, 4)
    assert len(p.bits) < 1000  # bits, not a set of integers


def test_the_html_opens_offline_and_marks_what_a_person_fills() -> None:
    data = fold(inc01(), deadlines_s={"payments": 3.0})
    page = html(data, {"outcomes": "<svg></svg>"})
    assert "<script" not in page and not re.search(r"(src|href)=\"?https?:", page)
    # No incident ID given, root cause, actions, corrective actions, validation:
    assert page.count("To be filled") == 5
    assert "2024-12-04T08:16:00Z" in page and "I1 (touched)" in page
    md = markdown(data, {"outcomes": "report.outcomes.svg"})
    assert "- **Root cause**: _To be filled_" in md and "![outcomes](report.outcomes.svg)" in md
