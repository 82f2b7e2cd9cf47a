"""Runbook incidents replayed on real components: upstream simulator + tansu + Ceph RGW.

Each scenario drives the real Service (Kafka consumer, guard stack, audit writer to RGW, admin
API) and asserts only through what an operator sees: Prometheus metrics, the event bus
(BreakerTransitioned, ...), the audit records read back from RGW, and what the upstream
really received (``sim.stats``). Load is paced by NetScope's own ingest throttle
(``pipeline.ingest_rate_per_s``) so breaker cycles happen under steady traffic.

Retry budget bounds: the scenarios use ``retry_budget.ttl_s = 60`` so a whole scenario sits in
one budget window; the budget then guarantees exactly
``retries <= ratio * requests + min_retries_per_s * ttl_s`` over the run (docs/invariants.md, I5).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from netscope.observability.events import BackpressureChanged, BreakerTransitioned, CallCompleted
from netscope.service import Service
from netscope.tools.messages import make_request
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import (
    metric,
    produce,
    read_audit,
    run_report,
    settings_for,
    terminal_counts,
    wait_for,
)
from tests.harness import running as harness_running

pytestmark = pytest.mark.integration

UP = "api"
TOKEN = "admin-t0ken"
TTL_S = 60.0


# -- shared helpers (also used by test_invariants.py) ----------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[UpstreamSim]:
    async with UpstreamSim(SimConfig(latency_ms=5.0, seed=11), history_size=5000) as s:
        yield s


@pytest.fixture
async def topic_t(tansu_broker) -> str:
    name = f"res-{uuid.uuid4().hex[:12]}"
    await tansu_broker.create_topic(name, 4)
    return name


def budget(ratio: float = 0.2, min_retries_per_s: float = 0.1) -> dict[str, float]:
    return {"ratio": ratio, "min_retries_per_s": min_retries_per_s, "ttl_s": TTL_S}


def make_settings(
    broker: Any,
    topic: str,
    tmp_path: Path,
    rgw: Any,
    bucket: str,
    sim: UpstreamSim,
    upstream: dict[str, Any],
    pipeline: dict[str, Any] | None = None,
    api: dict[str, Any] | None = None,
) -> Any:
    return settings_for(
        broker=broker,
        topic=topic,
        tmp_path=tmp_path,
        rgw=rgw,
        bucket=bucket,
        upstreams={UP: sim.url},
        upstream_overrides=upstream,
        pipeline=pipeline,
        api=api,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
    )


class Running:
    """A started Service plus everything it published on its event bus."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.events: list[Any] = []

    @property
    def pipeline(self) -> Any:
        return self.service.pipeline

    def completed(self) -> dict[str, Any]:
        return {e.record.request_id: e.record for e in self.events if isinstance(e, CallCompleted)}

    def transitions(self) -> list[BreakerTransitioned]:
        return [e for e in self.events if isinstance(e, BreakerTransitioned) and e.upstream == UP]

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.service, name, labels)

    async def wait_done(self, ids: list[str], timeout_s: float = 60) -> None:
        await wait_for(
            lambda: set(ids) <= self.completed().keys(),
            timeout_s=timeout_s,
            what=f"{len(ids)} messages to reach a terminal outcome",
        )


@asynccontextmanager
async def running(settings: Any) -> AsyncIterator[Running]:
    service = Service(settings)
    r = Running(service)
    service.pipeline.events.subscribe(r.events.append)
    async with harness_running(service):
        yield r
    r.summary = service.summary  # type: ignore[attr-defined]


_rand = random.Random(2024)


async def send(broker: Any, topic: str, n: int, **kw: Any) -> list[str]:
    """Produce n valid requests (distinct keys: no per-key ordering between them)."""
    msgs = [make_request(UP, rand=_rand, **kw) for _ in range(n)]
    items = [(m["request_id"].encode(), orjson.dumps(m), m) for m in msgs]
    await produce(broker.bootstrap, topic, items)
    return [m["request_id"] for m in msgs]


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def parse_iso(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def arrivals_in(sim: UpstreamSim, start: float, end: float) -> int:
    return sum(1 for t in sim.stats.arrivals() if start <= t < end)


def intervals(transitions: list[BreakerTransitioned], state: str, end: float) -> list[tuple]:
    """[entered, left) wall-clock intervals spent in ``state``."""
    out = []
    for i, t in enumerate(transitions):
        if t.to_state == state:
            left = transitions[i + 1].created if i + 1 < len(transitions) else end
            out.append((t.created, left))
    return out


def assert_budget(r: Running, sim_total: int, requests: int, ratio: float, reserve: float) -> None:
    retries = r.metric("netscope_retries_total", upstream=UP)
    assert retries <= ratio * requests + reserve, (retries, requests)
    # every upstream arrival is a first attempt or a granted retry
    assert sim_total <= (1 + ratio) * requests + reserve, (sim_total, requests)


# -- INC-01: timeouts surge ------------------------------------------------------------------


async def test_inc01_latency_past_read_timeout_then_recovery(
    tansu_broker, topic_t, rgw, rgw_bucket, sim, tmp_path
):
    ratio, min_rps = 0.1, 0.05
    upstream = {
        "connect_timeout_s": 0.5,
        "read_timeout_s": 0.2,
        "deadline_s": 3.0,
        "retry": {"max_attempts": 3, "base_backoff_s": 0.02, "max_backoff_s": 0.1},
        "retry_budget": budget(ratio, min_rps),
        "breaker": {
            "minimum_calls": 10,
            "window_size_calls": 20,
            "failure_rate_threshold": 0.5,
            "wait_in_open_s": 1.0,
            "permitted_calls_in_half_open": 2,
        },
    }
    settings = make_settings(
        tansu_broker,
        topic_t,
        tmp_path,
        rgw,
        rgw_bucket,
        sim,
        upstream,
        pipeline={"ingest_rate_per_s": 20},
    )
    started = time.monotonic()
    started_wall = time.time()
    read_timeouts_at_close: list[float] = []
    async with running(settings) as r:
        r.pipeline.events.subscribe(
            lambda e: (
                read_timeouts_at_close.append(
                    r.metric("netscope_timeouts_total", upstream=UP, kind="read")
                )
                if isinstance(e, BreakerTransitioned) and e.to_state == "closed"
                else None
            )
        )
        baseline = await send(tansu_broker, topic_t, 30)
        await r.wait_done(baseline)
        assert r.metric("netscope_timeouts_total", upstream=UP, kind="read") == 0

        sim.config.latency_ms = 500  # the incident: upstream slower than read_timeout_s
        incident_wall = time.time()
        incident = await send(tansu_broker, topic_t, 40)
        await r.wait_done(incident)
        assert r.metric("netscope_timeouts_total", upstream=UP, kind="read") > 0
        assert any(t.to_state == "open" for t in r.transitions()), "breaker opened"

        sim.config.latency_ms = 5  # recovery
        recovery_wall = time.time()
        recovery = await send(tansu_broker, topic_t, 60)
        await r.wait_done(recovery)
        await wait_for(
            lambda: r.pipeline.guards[UP].breaker.state == "closed",
            timeout_s=30,
            what="breaker closed again",
        )
        timeouts_end = r.metric("netscope_timeouts_total", upstream=UP, kind="read")
        sim_total = sim.stats.total
    run_s = time.monotonic() - started
    assert run_s < TTL_S, "the scenario must fit one budget window for the exact bound"

    seq = [(t.from_state, t.to_state) for t in r.transitions()]
    assert seq[0] == ("closed", "open"), seq
    assert seq[-2:] == [("open", "half_open"), ("half_open", "closed")], seq
    assert ("half_open", "closed") in seq
    # timeouts_total back at its base level: no read timeout after the breaker closed
    assert read_timeouts_at_close and timeouts_end == read_timeouts_at_close[-1]

    requests = len(baseline) + len(incident) + len(recovery)
    assert_budget(r, sim_total, requests, ratio, min_rps * TTL_S)

    records = await read_audit(settings.audit)
    by_id = {rec["request_id"]: rec for rec in records}
    assert set(by_id) == set(baseline + incident + recovery)
    assert {by_id[i]["outcome"] for i in incident} <= {
        "timeout_read",
        "deadline_exceeded",
        "rejected_circuit_open",
    }
    assert any(by_id[i]["outcome"] == "timeout_read" for i in incident)
    base_lat = [by_id[i]["latency_s"] for i in baseline if by_id[i]["outcome"] == "success"]
    assert len(base_lat) == len(baseline)
    recovered = [by_id[i] for i in recovery if by_id[i]["outcome"] == "success"]
    recovered.sort(key=lambda rec: rec["completed_at"])
    last = [rec["latency_s"] for rec in recovered[-20:]]
    assert len(last) == 20
    # p99 back to baseline: far below the 0.2 s every incident call needed at least
    assert p99(last) <= max(5 * p99(base_lat), p99(base_lat) + 0.15), (p99(last), p99(base_lat))

    # The journal of this incident, from RGW (runbook sections 7 and 9), in 1 s bins: the
    # timeout spike and the breaker's moves at the right seconds, and back to normal.
    data, _ = await run_report(settings, tmp_path, started_wall - 2, time.time() + 1,
                               "--incident", "INC-01", "--bin-s", "1")  # fmt: skip
    bins = [parse_iso(b) for b in data["series"]["bins"]]
    spikes = [t for t, n in zip(bins, data["series"]["timeouts"]["timeout_read"], strict=True)
              if n]  # fmt: skip
    audited = sum(1 for rec in records for a in rec["attempts"]
                  if a["error_class"] == "timeout_read")  # fmt: skip
    assert sum(data["series"]["timeouts"]["timeout_read"]) == audited > 0
    # Read timeouts only for attempts started while the upstream was slow (1 s bins).
    assert incident_wall - 1 <= min(spikes) and max(spikes) <= recovery_wall, (
        spikes, incident_wall, recovery_wall)  # fmt: skip
    moves = [(e["data"]["from"], e["data"]["to"], e["at_s"]) for e in data["control_events"]
             if e["event"] == "breaker_transition"]  # fmt: skip
    assert [(f, t) for f, t, _ in moves] == seq, "the report has the breaker's every move"
    assert incident_wall <= moves[0][2] <= recovery_wall, (moves, incident_wall)
    assert moves[-1][:2] == ("half_open", "closed") and moves[-1][2] >= recovery_wall
    assert data["breakers"][-1]["state"] == "closed"
    det = data["detected"]
    assert incident_wall - 1 <= parse_iso(det["start"]) <= moves[0][2], det
    assert parse_iso(det["end"]) >= moves[0][2], det
    assert {v["check"]: v["status"] for v in data["validation"]} == {
        "p95/p99 back down": "pass",
        "timeouts back to their base level": "pass",
        "circuit back to closed": "pass",
    }, data["validation"]
    i1 = next(i for i in data["invariants"] if i["id"] == "I1")
    assert i1["status"] == "touched", i1  # timeouts, each within its deadline
    assert data["totals"]["calls"] == requests
    assert data["impact"][UP]["timeouts"] == sum(
        1 for i in incident if by_id[i]["outcome"] in ("timeout_read", "deadline_exceeded")
    )


# -- INC-03: breaker open for a while --------------------------------------------------------


async def test_inc03_5xx_breaker_cycle_no_calls_while_open(
    tansu_broker, topic_t, rgw, rgw_bucket, sim, tmp_path
):
    permitted = 2
    upstream = {
        "retry": {"max_attempts": 2, "base_backoff_s": 0.01, "max_backoff_s": 0.02},
        "retry_budget": budget(),
        "breaker": {
            "minimum_calls": 6,
            "window_size_calls": 10,
            "wait_in_open_s": 0.8,
            "permitted_calls_in_half_open": permitted,
        },
    }
    # max_in_flight=1: calls are strictly sequential, so every upstream arrival can be placed
    # exactly relative to the breaker transitions (no call admitted in one state arrives in
    # the next).
    settings = make_settings(
        tansu_broker,
        topic_t,
        tmp_path,
        rgw,
        rgw_bucket,
        sim,
        upstream,
        pipeline={"ingest_rate_per_s": 20, "max_in_flight": 1},
    )
    async with running(settings) as r:
        sim.config.error_rate = 1.0
        failing = await send(tansu_broker, topic_t, 60)
        await r.wait_done(failing)
        assert sum(t.to_state == "open" for t in r.transitions()) >= 1
        sim.config.error_rate = 0.0
        healthy = await send(tansu_broker, topic_t, 40)
        await r.wait_done(healthy)
        await wait_for(
            lambda: r.pipeline.guards[UP].breaker.state == "closed",
            timeout_s=30,
            what="breaker closed",
        )
        end = time.time()

    trans = r.transitions()
    seq = ",".join(f"{t.from_state}>{t.to_state}" for t in trans)
    cycle = "open>half_open,half_open>open,"
    body = seq.removeprefix("closed>open,").removesuffix("open>half_open,half_open>closed")
    assert seq.startswith("closed>open,") and seq.endswith("open>half_open,half_open>closed"), seq
    assert body == cycle * body.count(cycle), (
        f"not closed>open>half_open>(open>half_open)*>closed: {seq}"
    )

    opens = intervals(trans, "open", end)
    assert opens
    for start, stop in opens:
        assert arrivals_in(sim, start, stop) == 0, ("upstream called while open", start, stop)
    for start, stop in intervals(trans, "half_open", end):
        assert arrivals_in(sim, start, stop) <= permitted, ("half-open probes", start, stop)

    records = await read_audit(settings.audit)
    assert set(terminal_counts(records).values()) == {1}
    rejected = [rec for rec in records if rec["outcome"] == "rejected_circuit_open"]
    assert rejected, "rejected_circuit_open audited while open"
    for rec in rejected:
        assert rec["attempts"] == [] or rec["attempts"][-1]["status"] is not None
        assert any(
            rec["received_at"] <= stop and rec["completed_at"] >= start for start, stop in opens
        ), rec
    assert r.metric("netscope_requests_total", upstream=UP, outcome="rejected_circuit_open") == len(
        rejected
    )
    assert r.metric("netscope_circuit_state", upstream=UP, state="closed") == 1


# -- 429 + Retry-After -----------------------------------------------------------------------


async def test_429_retry_after_spacing_and_no_retry_storm(
    tansu_broker, topic_t, rgw, rgw_bucket, sim, tmp_path
):
    ratio, min_rps, retry_after = 0.2, 0.1, 0.3
    upstream = {
        "deadline_s": 5.0,
        "retry": {"max_attempts": 3, "base_backoff_s": 0.01, "max_backoff_s": 0.02},
        "retry_budget": budget(ratio, min_rps),
    }
    settings = make_settings(
        tansu_broker,
        topic_t,
        tmp_path,
        rgw,
        rgw_bucket,
        sim,
        upstream,
        pipeline={"ingest_rate_per_s": 10},
    )
    started = time.monotonic()
    async with running(settings) as r:
        sim.config.rate_429 = 1.0
        sim.config.retry_after_s = retry_after
        limited = await send(tansu_broker, topic_t, 30)
        await r.wait_done(limited)
        sim.config.rate_429 = 0.0
        after = await send(tansu_broker, topic_t, 20)
        await r.wait_done(after)
        sim_total = sim.stats.total
        recent = list(sim.stats.recent)
        assert r.pipeline.guards[UP].breaker.state == "closed", "429 is pushback, not ill health"
    assert time.monotonic() - started < TTL_S

    per_key: dict[str, list[float]] = defaultdict(list)
    for entry in recent:
        per_key[entry["headers"]["idempotency-key"]].append(entry["t"])
    retried = {k: ts for k, ts in per_key.items() if len(ts) > 1}
    assert retried, "some 429s were retried"
    for key, ts in retried.items():
        gaps = [b - a for a, b in itertools.pairwise(ts)]
        # arrival stamps (not send stamps): allow a few ms of scheduling skew downwards only
        assert min(gaps) >= retry_after - 0.02, (key, gaps)
    assert set(per_key) == set(limited + after), "Idempotency-Key defaults to request_id"

    requests = len(limited) + len(after)
    assert_budget(r, sim_total, requests, ratio, min_rps * TTL_S)
    records = {rec["request_id"]: rec for rec in await read_audit(settings.audit)}
    assert all(records[i]["outcome"] == "success" for i in after)
    assert {records[i]["status"] for i in limited} == {429}


# -- INC-01 step 4: throttle and backpressure ------------------------------------------------


async def test_admin_throttle_lowers_consumption_then_lifts(
    tansu_broker, topic_t, rgw, rgw_bucket, sim, tmp_path
):
    settings = make_settings(
        tansu_broker,
        topic_t,
        tmp_path,
        rgw,
        rgw_bucket,
        sim,
        {},
        api={"admin_token": TOKEN},
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with running(settings) as r, httpx.AsyncClient(base_url=r.service.base_url) as http:
        assert (await http.post("/admin/throttle", json={"rate_per_s": 5})).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        resp = await http.post("/admin/throttle", json={"rate_per_s": 5}, headers=bad)
        assert resp.status_code == 401
        resp = await http.post("/admin/throttle", json={"rate_per_s": 5}, headers=auth)
        assert resp.status_code == 200 and resp.json()["ingest_rate_per_s"] == 5
        assert r.metric("netscope_ingest_rate_limit_per_second") == 5

        ids = await send(tansu_broker, topic_t, 150)
        await wait_for(lambda: r.pipeline.processed >= 5, timeout_s=30, what="first ones")
        t0, p0 = time.monotonic(), r.pipeline.processed
        await asyncio.sleep(3.0)  # a measurement window, not a synchronisation
        t1, p1 = time.monotonic(), r.pipeline.processed
        rate_bound = 5 * (t1 - t0) + 5 + 1  # rate * window + burst + one in flight
        assert 0 < p1 - p0 <= rate_bound, (p1 - p0, rate_bound)
        assert p1 < len(ids)

        resp = await http.post("/admin/throttle", json={"rate_per_s": None}, headers=auth)
        assert resp.status_code == 200
        assert r.metric("netscope_ingest_rate_limit_per_second") == math.inf
        # the ~130 left would need > 25 s at 5/s
        await r.wait_done(ids, timeout_s=20)
    records = await read_audit(settings.audit)
    assert set(terminal_counts(records).values()) == {1}
    assert {rec["request_id"] for rec in records} == set(ids)


async def test_slow_upstream_small_queue_pauses_partitions_nothing_dropped(
    tansu_broker, topic_t, rgw, rgw_bucket, sim, tmp_path
):
    sim.config.latency_ms = 300
    settings = make_settings(
        tansu_broker,
        topic_t,
        tmp_path,
        rgw,
        rgw_bucket,
        sim,
        {"read_timeout_s": 5.0},
        pipeline={"queue_depth": 10},
    )
    seen_paused: list[float] = []
    async with running(settings) as r:
        r.pipeline.events.subscribe(
            lambda e: (
                seen_paused.append(r.metric("netscope_ingest_paused", reason="queue_full"))
                if isinstance(e, BackpressureChanged)
                else None
            )
        )
        ids = await send(tansu_broker, topic_t, 80)
        await wait_for(
            lambda: r.metric("netscope_ingest_paused", reason="queue_full") == 1,
            timeout_s=30,
            interval_s=0.02,
            what="ingest paused on queue_full",
        )
        max_depth = 0

        async def depth_ok() -> bool:
            nonlocal max_depth
            max_depth = max(max_depth, r.pipeline.writer.pending_records)
            return set(ids) <= r.completed().keys()

        await wait_for(depth_ok, timeout_s=60, interval_s=0.02, what="all processed")
        assert max_depth <= 10 + settings.kafka.max_poll_records, max_depth
        await wait_for(
            lambda: r.metric("netscope_ingest_paused", reason="queue_full") == 0,
            timeout_s=30,
            what="resumed",
        )
    assert 1.0 in seen_paused and seen_paused[-1] == 0.0
    records = await read_audit(settings.audit)
    counts = terminal_counts(records)
    assert len(counts) == 80 and set(counts.values()) == {1}, "nothing dropped, none twice"
    assert {rec["outcome"] for rec in records} == {"success"}
    assert r.summary.clean  # type: ignore[attr-defined]


# -- admin breaker controls ------------------------------------------------------------------


def _exported_states(text: str) -> dict[str, float]:
    for family in text_string_to_metric_families(text):
        if family.name == "netscope_circuit_state":
            return {
                s.labels["state"]: s.value for s in family.samples if s.labels["upstream"] == UP
            }
    raise AssertionError("netscope_circuit_state not exported")


async def test_admin_force_open_closed_reset(tansu_broker, topic_t, rgw, rgw_bucket, sim, tmp_path):
    upstream = {
        "retry": {"max_attempts": 1},
        "breaker": {"minimum_calls": 4, "window_size_calls": 4, "wait_in_open_s": 60},
    }
    settings = make_settings(
        tansu_broker,
        topic_t,
        tmp_path,
        rgw,
        rgw_bucket,
        sim,
        upstream,
        api={"admin_token": TOKEN},
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with running(settings) as r, httpx.AsyncClient(base_url=r.service.base_url) as http:

        async def state() -> dict[str, float]:
            return _exported_states((await http.get("/metrics")).text)

        assert (await state())["closed"] == 1
        resp = await http.post(f"/admin/breakers/{UP}/force-open")
        assert resp.status_code == 401
        resp = await http.post("/admin/breakers/nope/force-open", headers=auth)
        assert resp.status_code == 404

        resp = await http.post(f"/admin/breakers/{UP}/force-open", headers=auth)
        assert resp.status_code == 200 and resp.json()["state"] == "forced_open"
        assert (await state()) == {
            "closed": 0,
            "open": 0,
            "half_open": 0,
            "forced_open": 1,
            "forced_closed": 0,
        }
        before = sim.stats.total
        ids = await send(tansu_broker, topic_t, 5)
        await r.wait_done(ids)
        assert {r.completed()[i].outcome for i in ids} == {"rejected_circuit_open"}
        assert sim.stats.total == before, "forced open: no call reaches the upstream"

        resp = await http.post(f"/admin/breakers/{UP}/force-closed", headers=auth)
        assert resp.json()["state"] == "forced_closed"
        assert (await state())["forced_closed"] == 1
        sim.config.error_rate = 1.0
        ids = await send(tansu_broker, topic_t, 12)
        await r.wait_done(ids)
        assert {r.completed()[i].outcome for i in ids} == {"http_error"}
        assert sim.stats.total == before + 12, "forced closed: every call goes through"
        assert (await state())["forced_closed"] == 1, "failures do not open a forced-closed one"

        resp = await http.post(f"/admin/breakers/{UP}/reset", headers=auth)
        assert resp.json()["state"] == "closed"
        assert (await state())["closed"] == 1
        sim.config.error_rate = 0.0
        ids = await send(tansu_broker, topic_t, 5)
        await r.wait_done(ids)
        assert {r.completed()[i].outcome for i in ids} == {"success"}
    seq = [(t.from_state, t.to_state) for t in r.transitions()]
    assert seq == [
        ("closed", "forced_open"),
        ("forced_open", "forced_closed"),
        ("forced_closed", "closed"),
    ]
