"""The drill-down engine on a real local audit store: memory first, then the record's own
audit object, then a scan; the attempts, the breaker's state at each, the retry decisions
and the object each call landed in."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from netscope.api.drill import MAX_CALLS, Busy, Drill, DrillQuery, band_from_controls
from netscope.api.history import History
from netscope.api.recent import RecentCalls
from netscope.audit.batch import encode
from netscope.audit.keys import CONTROL_TOPIC, event_hour, object_key
from netscope.audit.store import AuditStore
from netscope.config import AuditConfig
from netscope.contract.records import (
    Attempt,
    AuditRecord,
    ControlEvent,
    ControlRecord,
    KafkaPosition,
    Outcome,
)
from netscope.observability.events import BreakerTransitioned, CallCompleted, RetryScheduled
from netscope.resilience.retry import RetryReason

T0 = 1_800_000_100.0
TS_MS = int(T0 * 1000)
PREFIX = "audit"


def trace(n: int) -> str:
    return f"{n:032x}"


def record(offset: int, *, attempts: int = 1, outcome: Outcome = Outcome.SUCCESS,
           key: str | None = None, upstream: str = "pay") -> AuditRecord:  # fmt: skip
    started = T0 + offset
    tries = []
    for n in range(1, attempts + 1):
        last = n == attempts
        status = 200 if last and outcome is Outcome.SUCCESS else 503
        tries.append(Attempt(n, started + (n - 1) * 0.3, 0.1, status, None,
                             None if last else 0.2))  # fmt: skip
    return AuditRecord(
        request_id=f"req-{offset}", idempotency_key=key or f"key-{offset}",
        trace_id=trace(offset), span_id=None, upstream=upstream, method="POST", path="/x",
        kafka=KafkaPosition("t", 0, offset, TS_MS), outcome=outcome,
        received_at=started, completed_at=started + 0.3 * attempts, latency_s=0.3 * attempts,
        status=tries[-1].status, attempts=tries,
    )  # fmt: skip


async def put_objects(store: AuditStore, records: list[AuditRecord], first: int) -> str:
    key = object_key(PREFIX, event_hour(TS_MS), "t", 0, first, gzip=True)
    assert await store.put_if_absent(key, encode([r.to_json() for r in records], compress=True))
    return key


async def put_controls(store: AuditStore, controls: list[ControlRecord]) -> None:
    key = object_key(PREFIX, event_hour(TS_MS), CONTROL_TOPIC, 0, 1, gzip=True, instance_id="i")
    await store.put_if_absent(key, encode([c.to_json() for c in controls], compress=True))


def breaker(at: float, frm: str, to: str) -> ControlRecord:
    return ControlRecord(ControlEvent.BREAKER_TRANSITION, at, "i",
                         {"from": frm, "to": to, "reason": "test"}, upstream="pay")  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return AuditStore.from_config(AuditConfig(backend="local", local={"path": tmp_path / "a"}))


@pytest.fixture
def recent() -> RecentCalls:
    return RecentCalls(calls=100, retries=100)


@pytest.fixture
def history() -> History:
    return History(clock=lambda: T0 + 60)


def publish(recent: RecentCalls, history: History, *events: object) -> None:
    for ev in events:
        recent.on_event(ev)
        history.on_event(ev)


async def test_a_recent_call_is_answered_from_memory_with_everything_it_needs(
    store: AuditStore, recent: RecentCalls, history: History
) -> None:
    r = record(11, attempts=3, outcome=Outcome.SUCCESS)
    key = await put_objects(store, [record(10), r, record(12)], 10)
    await put_objects(store, [record(13)], 13)
    publish(recent, history,
            BreakerTransitioned("pay", "closed", "open", "failure_rate", created=T0 + 11.1),
            BreakerTransitioned("pay", "open", "half_open", "wait", created=T0 + 11.5),
            RetryScheduled("pay", "req-11", trace(11), 1, RetryReason.RETRYABLE,
                           "retryable status 503", 0.2),
            RetryScheduled("pay", "req-11", trace(11), 2, RetryReason.RETRYABLE,
                           "retryable status 503 (retry-after 0.2s)", 0.2),
            CallCompleted(r, upstream_time_s=0.9))  # fmt: skip
    drill = Drill(recent, history, store=store, prefix=PREFIX)
    out = await drill.timeline(DrillQuery(trace_id=trace(11)))

    assert out["source"] == "memory"
    [c] = out["calls"]
    assert (c["request_id"], c["idempotency_key"], c["attempts"]) == ("req-11", "key-11", 3)
    assert c["audit_object"] == {"where": "store", "key": key}
    attempts = [row for row in out["rows"] if row["kind"] == "attempt"]
    assert [a["status"] for a in attempts] == [503, 503, 200]
    # Attempt starts: T0+11.0 (closed), +11.3 (open), +11.6 (half-open: the probe).
    assert [a["breaker"] for a in attempts] == ["closed", "open", "half_open"]
    assert attempts[0]["retry"] == "retried after 200 ms: retryable status 503"
    assert attempts[1]["retry"].endswith("(retry-after 0.2s)")
    assert attempts[2]["retry"] is None
    controls = [row["what"] for row in out["rows"] if row["kind"] == "control"]
    assert controls == ["breaker closed -> open", "breaker open -> half_open"]
    times = [row["at"] for row in out["rows"]]
    assert times == sorted(times)


async def test_a_call_not_yet_in_the_store_says_so(
    store: AuditStore, recent: RecentCalls, history: History
) -> None:
    await put_objects(store, [record(10)], 10)
    publish(recent, history, CallCompleted(record(11), upstream_time_s=0.1))
    out = await Drill(recent, history, store=store, prefix=PREFIX).timeline(
        DrillQuery(request_id="req-11")
    )
    assert out["calls"][0]["audit_object"]["where"] == "not_in_store"


async def test_an_older_call_is_read_from_its_own_audit_object(
    store: AuditStore, recent: RecentCalls, history: History
) -> None:
    key = await put_objects(store, [record(10), record(11, attempts=2), record(12)], 10)
    await put_controls(store, [breaker(T0 - 100, "closed", "open"),
                               breaker(T0 + 11.2, "open", "half_open")])  # fmt: skip
    query = DrillQuery(trace_id=trace(11), request_id="req-11", topic="t", partition=0,
                       offset=11, timestamp_ms=TS_MS)  # fmt: skip
    out = await Drill(recent, history, store=store, prefix=PREFIX).timeline(query)
    assert out["source"] == "audit_object"
    assert out["calls"][0]["audit_object"] == {"where": "store", "key": key}
    attempts = [row for row in out["rows"] if row["kind"] == "attempt"]
    assert [(a["status"], a["breaker"]) for a in attempts] == [(503, "open"), (200, "half_open")]
    assert attempts[0]["retry"] == "retried after 200 ms"  # the reason is only known live


async def test_a_search_by_any_id_scans_the_window(
    store: AuditStore, recent: RecentCalls, history: History
) -> None:
    await put_objects(store, [record(10), record(11, key="order-42"), record(12)], 10)
    drill = Drill(recent, history, store=store, prefix=PREFIX, clock=lambda: T0 + 60)
    out = await drill.timeline(DrillQuery(any_id="order-42"))
    assert out["source"] == "audit_scan"
    assert [c["request_id"] for c in out["calls"]] == ["req-11"]
    # Outside the window searched: not found, and said so.
    out = await drill.timeline(DrillQuery(any_id="order-42", from_ms=0, to_ms=TS_MS - 7_200_000))
    assert (out["source"], out["calls"]) == ("audit_scan", [])


async def test_one_scan_at_a_time(store: AuditStore, recent: RecentCalls) -> None:
    drill = Drill(recent, store=store, prefix=PREFIX)
    async with drill._scan_lock:
        with pytest.raises(Busy):
            await drill.timeline(DrillQuery(request_id="req-1"))


async def test_without_a_store_only_memory_answers(recent: RecentCalls) -> None:
    out = await Drill(recent).timeline(DrillQuery(request_id="req-404"))
    assert (out["source"], out["calls"], out["rows"]) == ("none", [], [])
    recent.on_event(CallCompleted(record(5), upstream_time_s=0.1))
    out = await Drill(recent).timeline(DrillQuery(any_id="key-5"))
    assert out["calls"][0]["audit_object"] is None
    assert out["rows"][1]["breaker"] is None  # no history: not known


async def test_many_matches_are_truncated(recent: RecentCalls) -> None:
    for offset in range(MAX_CALLS + 5):
        r = record(offset, key="same")
        recent.on_event(CallCompleted(r, upstream_time_s=0.1))
    out = await Drill(recent).timeline(DrillQuery(idempotency_key="same"))
    assert out["truncated"] and len(out["calls"]) == MAX_CALLS


def test_queries_are_checked() -> None:
    with pytest.raises(ValueError):
        DrillQuery()
    with pytest.raises(ValueError):
        DrillQuery(request_id="x" * 201)
    with pytest.raises(ValueError):
        DrillQuery(request_id="a\nb")
    with pytest.raises(ValueError):
        DrillQuery(request_id="a", from_ms=5, to_ms=5)
    assert DrillQuery(topic="t", partition=0, offset=3).has_position


def test_a_query_matches_every_id_given() -> None:
    r = orjson.loads(record(3).to_json())
    assert DrillQuery(trace_id=trace(3).upper()).matches_dict(r)
    assert DrillQuery(any_id="key-3").matches_dict(r)
    assert DrillQuery(any_id=trace(3)).matches_dict(r)
    assert not DrillQuery(request_id="req-3", idempotency_key="other").matches_dict(r)
    assert not DrillQuery(request_id="req-3", topic="t", partition=0, offset=4).matches_dict(r)


def test_a_band_from_control_records() -> None:
    controls = [orjson.loads(c.to_json()) for c in (breaker(20, "open", "half_open"),
                                                    breaker(10, "closed", "open"))]  # fmt: skip
    band = band_from_controls(controls, "pay")
    assert band is not None
    assert [band.state_at(t) for t in (5, 15, 25)] == ["closed", "open", "half_open"]
    assert band_from_controls(controls, "geo") is None
    # Another instance's breaker is its own; an instance's start says its breakers are closed.
    other = breaker(30, "half_open", "open")
    other.instance_id = "j"
    started = ControlRecord(ControlEvent.INSTANCE_STARTED, 40, "i", {"config_digest": "x"})
    more = [*controls, orjson.loads(other.to_json()), orjson.loads(started.to_json())]
    band = band_from_controls(more, "pay", "i")
    assert band is not None
    assert [band.state_at(t) for t in (35, 45)] == ["half_open", "closed"]
    assert band_from_controls(more, "geo", "i").state_at(50) == "closed"  # type: ignore[union-attr]


def test_recent_memory_is_bounded() -> None:
    recent = RecentCalls(calls=3, retries=2)
    for offset in range(10):
        recent.on_event(CallCompleted(record(offset), upstream_time_s=0.1))
        recent.on_event(RetryScheduled("pay", f"req-{offset}", trace(offset), 1,
                                       RetryReason.RETRYABLE, "503", 0.1))  # fmt: skip
    assert len(recent) == 3
    assert [r.request_id for r in recent.find(lambda r: True)] == ["req-7", "req-8", "req-9"]
    assert recent.retries_of(None, "req-7") == []  # only the last two retries are kept
    recent.clear()
    assert len(recent) == 0
