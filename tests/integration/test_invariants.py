"""Invariants I1 (bounded time) and I5 (upstream protection) on real components.

Definitions, bounds and the arguments behind them: docs/invariants.md. Both tests run the real
Service (tansu + Ceph RGW + upstream simulator) and judge it on the audit records read back
from RGW and on what the upstream really received.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest

from netscope.contract.records import TIMEOUT_OUTCOMES
from netscope.tools.messages import make_request
from tests.harness import produce, read_audit, terminal_counts
from tests.integration import test_resilience_scenarios as _scenarios
from tests.integration.test_resilience_scenarios import (
    TTL_S,
    UP,
    budget,
    make_settings,
    running,
    send,
)

sim = _scenarios.sim  # fixtures shared with the scenarios
topic_t = _scenarios.topic_t

pytestmark = pytest.mark.integration

# I1 bound: slack past the deadline for the task switch that observes it, the cancelled
# socket's close, and the audit record's own stamping (docs/invariants.md).
I1_SLACK_S = 0.5


async def test_i1_hanging_upstream_every_message_terminal_within_deadline(
    tansu_broker,
    topic_t,
    rgw,
    rgw_bucket,
    sim,
    tmp_path,
):
    deadline_s = 1.0
    upstream = {
        "connect_timeout_s": 0.5,
        "read_timeout_s": 5.0,  # longer than the deadline: only the deadline can end a hang
        "deadline_s": deadline_s,
        "breaker": {"enabled": False},  # no early rejection: every call really hangs
    }
    settings = make_settings(tansu_broker, topic_t, tmp_path, rgw, rgw_bucket, sim, upstream)
    sim.config.hang_rate = 1.0
    async with running(settings) as r:
        plain = await send(tansu_broker, topic_t, 30)
        short = await send(tansu_broker, topic_t, 10, timeout_ms=300)
        await r.wait_done(plain + short, timeout_s=60)
    records = {rec["request_id"]: rec for rec in await read_audit(settings.audit)}
    assert set(records) == set(plain + short)
    assert set(terminal_counts(list(records.values())).values()) == {1}
    timeout_family = {o.value for o in TIMEOUT_OUTCOMES}
    for ids, budget_s in ((plain, deadline_s), (short, 0.3)):
        for i in ids:
            rec = records[i]
            assert rec["outcome"] in timeout_family, rec
            assert rec["latency_s"] <= budget_s + I1_SLACK_S, rec
            # and the deadline was really used, not cut short
            assert rec["latency_s"] >= budget_s * 0.9, rec
    assert sim.stats.total >= len(plain) + len(short)


async def test_i1_deadline_counts_from_consumption_behind_the_same_key(
    tansu_broker,
    topic_t,
    rgw,
    rgw_bucket,
    sim,
    tmp_path,
):
    """Messages queued behind a hanging one with the same Kafka key (ordering per key) are
    still bounded by their deadline from consumption, not n x deadline."""
    deadline_s = 1.0
    upstream = {
        "connect_timeout_s": 0.5,
        "read_timeout_s": 5.0,
        "deadline_s": deadline_s,
        "breaker": {"enabled": False},
    }
    settings = make_settings(tansu_broker, topic_t, tmp_path, rgw, rgw_bucket, sim, upstream)
    sim.config.hang_rate = 1.0
    msgs = [make_request(UP, rand=_scenarios._rand) for _ in range(5)]
    same_key = [(b"one-key", orjson.dumps(m), m) for m in msgs]
    async with running(settings) as r:
        await produce(tansu_broker.bootstrap, topic_t, same_key)
        await r.wait_done([m["request_id"] for m in msgs], timeout_s=60)
    records = await read_audit(settings.audit)
    assert len(records) == 5 and set(terminal_counts(records).values()) == {1}
    timeout_family = {o.value for o in TIMEOUT_OUTCOMES}
    for rec in records:
        assert rec["outcome"] in timeout_family, rec
        assert rec["latency_s"] <= deadline_s + I1_SLACK_S, rec
    # Only the head of the key's queue ever reached the upstream within its deadline.
    assert sim.stats.total < 5


async def test_i5_failing_upstream_load_bounded_and_concurrency_capped(
    tansu_broker,
    topic_t,
    rgw,
    rgw_bucket,
    sim,
    tmp_path,
):
    ratio, min_rps, max_concurrent, permitted = 0.2, 0.1, 4, 2
    upstream = {
        "retry": {"max_attempts": 3, "base_backoff_s": 0.01, "max_backoff_s": 0.05},
        "retry_budget": budget(ratio, min_rps),
        "breaker": {
            "minimum_calls": 10,
            "window_size_calls": 20,
            "wait_in_open_s": 0.5,
            "permitted_calls_in_half_open": permitted,
        },
        "bulkhead": {"max_concurrent": max_concurrent},
        "on_saturation": "wait",
        "max_saturation_wait_s": 2.0,
    }
    settings = make_settings(
        tansu_broker,
        topic_t,
        tmp_path,
        rgw,
        rgw_bucket,
        sim,
        upstream,
        pipeline={"ingest_rate_per_s": 50},
    )
    sim.config.error_rate = 1.0
    sim.config.latency_ms = 50  # long enough for calls to overlap
    peak = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, sim.stats.in_flight)
            await asyncio.sleep(0.002)

    started = time.monotonic()
    sampler = asyncio.create_task(sample())
    try:
        async with running(settings) as r:
            ids = await send(tansu_broker, topic_t, 200)
            await r.wait_done(ids, timeout_s=60)
            total = sim.stats.total
            retries = r.metric("netscope_retries_total", upstream=UP)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await sampler
    assert time.monotonic() - started < TTL_S
    requests = len(ids)
    reserve = min_rps * TTL_S
    half_opens = sum(1 for t in r.transitions() if t.to_state == "half_open")
    bound = requests * (1 + ratio) + reserve + half_opens * permitted
    assert total <= bound, (total, bound)
    # the budget alone, exactly (one window): every arrival is a first try or a granted retry
    assert retries <= ratio * requests + reserve
    assert total <= requests + retries
    # the breaker shed most of it: far fewer calls than messages
    assert total < requests
    assert 0 < peak <= max_concurrent, peak
    records = await read_audit(settings.audit)
    outcomes = {rec["outcome"] for rec in records}
    assert "rejected_circuit_open" in outcomes
    assert outcomes <= {"http_error", "rejected_circuit_open", "rejected_rate_limited"}
