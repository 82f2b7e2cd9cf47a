"""The idempotency ledger under faults: NetScope killed mid-call, the ledger's server stopped.

Real broker (tansu), real Ceph RGW, real PostgreSQL (or the embedded SQLite ledger), and the
upstream simulator counting every ``Idempotency-Key`` it receives. What users rely on:

- every consumed message still has exactly one terminal audit record;
- no key reaches the upstream twice, except after a crash mid-call: then the redelivered
  message takes the key over once its lease has run out, calls it again (same
  Idempotency-Key) and its record says ``attempt_after_lease_expiry``;
- while the ledger cannot answer nothing is called (fail closed), ingest pauses and says
  why, readiness names the ledger, and all of it heals on its own.

Leases are made short (upstream ``deadline_s`` 2 s + ``ledger.lease_margin_s`` 1 s) so an
expired lease is the normal case after a restart. Waiting is always a poll with a deadline
on an observable condition (tests.harness.wait_for).

"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from netscope.config import LedgerConfig, Settings
from netscope.devservices.base import free_port
from netscope.service import Service
from netscope.tools.loadgen import LoadgenConfig
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import (
    BackgroundLoad,
    committed_offsets,
    make_traffic,
    metric,
    produce,
    read_audit,
    running,
    settings_for,
    settings_toml,
    terminal_counts,
    toml_table,
    wait_for,
    with_keys,
)

pytestmark = pytest.mark.integration

UPSTREAM = "payments"
DEADLINE_S = 2.0  # upstream deadline_s: the lease is this plus LEASE_MARGIN_S
LEASE_MARGIN_S = 1.0
RETRY_INTERVAL_S = 0.2  # ledger.retry_interval_s: claims and pings while it is down
# How long the upstream is watched for calls while the ledger is down.
QUIET_S = 3.0
# Outcomes after which nothing was sent upstream.
NOT_CALLED = {"invalid", "duplicate_skipped", "duplicate_in_progress", "ledger_unavailable"}


@pytest.fixture
async def sim():
    """An upstream slow enough (20-40 ms) that a kill always finds calls in flight."""
    config = SimConfig(latency_ms=30.0, latency_jitter_ms=10.0, seed=3)
    async with UpstreamSim(config, history_size=20_000) as s:
        yield s


async def new_topic(broker: Any, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    await broker.create_topic(name, 4)
    return name


def ledger_options(backend: str, dsn: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "backend": backend,
        "lease_margin_s": LEASE_MARGIN_S,
        "retry_interval_s": RETRY_INTERVAL_S,
    }
    if backend == "postgresql":
        options |= {"dsn": dsn, "connect_timeout_s": 2.0, "statement_timeout_s": 1.0}
    return options


def service_toml(
    settings: Settings, *, port: int, ledger: dict[str, Any], ingest_rate_per_s: float
) -> str:
    text = settings_toml(settings, api_port=port)
    text = with_keys(text, "pipeline", {"ingest_rate_per_s": ingest_rate_per_s})
    text = with_keys(
        text, f"upstreams.{UPSTREAM}", {"deadline_s": DEADLINE_S, "read_timeout_s": 1.0}
    )
    return text + toml_table("ledger", ledger)


async def scrape(http: httpx.AsyncClient) -> dict[str, float]:
    """GET /metrics of a NetScope process, each sample name summed over its labels; {} while
    it does not answer."""
    try:
        text = (await http.get("/metrics", timeout=2)).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def expected_positions(topic: str, ends: dict[int, int]) -> set[tuple[str, int, int]]:
    # Fresh topic, plain (non-transactional) produce: offsets are 0..end-1 per partition.
    return {(topic, p, o) for p, end in ends.items() for o in range(end)}


def assert_exactly_once(records: list[dict[str, Any]], topic: str, ends: dict[int, int]) -> None:
    counts = terminal_counts(records)
    expected = expected_positions(topic, ends)
    missing = expected - set(counts)
    extra = set(counts) - expected
    doubled = {k: n for k, n in counts.items() if n != 1}
    assert not missing, f"{len(missing)} messages without a record, e.g. {sorted(missing)[:5]}"
    assert not extra, f"records for positions never produced: {sorted(extra)[:5]}"
    assert not doubled, f"{len(doubled)} messages audited twice: {sorted(doubled.items())[:5]}"


async def committed_all(bootstrap: str, group_id: str, topic: str, ends: dict[int, int]) -> bool:
    got = await committed_offsets(bootstrap, group_id, topic)
    return all(got.get(p, 0) >= end for p, end in ends.items())


# --- 1. NetScope SIGKILLed mid-call, restarted ------------------------------------------------


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_sigkill_mid_stream_calls_again_only_keys_whose_lease_ran_out(
    backend: str,
    request: pytest.FixtureRequest,
    tansu_broker,
    rgw,
    rgw_bucket,
    sim: UpstreamSim,
    tmp_path: Path,
) -> None:
    """`netscope run` (ledger on PostgreSQL, or the default SQLite file beside the spool) is
    killed with calls in flight, then restarted on the same config until all is committed.

    A key completed before the kill is not called again (its redelivered message, if any, is
    ``duplicate_skipped`` and that record is deduplicated by the audit's exactly-once keys).
    A key claimed but not settled at the kill is in_progress under a 3 s lease: the restart
    (a new group member) takes longer than that, so it is taken over, called a second time at
    most, and its record carries ``attempt_after_lease_expiry``.
    """
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgresql" else None
    n = 600
    topic = await new_topic(tansu_broker, f"lk-{backend[:2]}")
    settings = settings_for(
        broker=tansu_broker,
        topic=topic,
        tmp_path=tmp_path,
        rgw=rgw,
        bucket=rgw_bucket,
        upstreams={UPSTREAM: sim.url},
    )
    traffic = make_traffic(n, upstreams=[UPSTREAM], invalid_every=100, seed=17)
    valid_keys = {req["idempotency_key"] for *_, req in traffic if req is not None}
    assert len(valid_keys) == n - n // 100, "every valid message has a key of its own"
    ends = await produce(tansu_broker.bootstrap, topic, traffic)

    port = free_port()
    config = tmp_path / "netscope.toml"
    # 200/s: the 600 messages take ~3 s, so the kill lands mid-stream with ~6 calls in flight.
    config.write_text(
        service_toml(
            settings, port=port, ledger=ledger_options(backend, dsn), ingest_rate_per_s=200.0
        )
    )
    env = os.environ | {"NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": rgw.secret_key}
    cmd = [sys.executable, "-m", "netscope", "run", "-c", str(config)]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs: list[asyncio.subprocess.Process] = []

    async def start(log: Path) -> asyncio.subprocess.Process:
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *cmd, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=err
            )
        procs.append(proc)
        return proc

    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            first = await start(logs[0])

            async def audited_some() -> bool:
                return (await scrape(http)).get("netscope_audit_records_total", 0.0) > 0

            await wait_for(
                lambda: sim.stats.total >= n // 4, timeout_s=60, what="first process calling"
            )
            await wait_for(audited_some, timeout_s=30, what="first process auditing to RGW")
            in_flight_at_kill = sim.stats.in_flight
            first.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
            calls_at_kill = sim.stats.total
            audited_at_kill = len(terminal_counts(await read_audit(settings.audit)))
            assert 0 < audited_at_kill < n, f"killed mid-stream: {audited_at_kill} of {n} audited"
            assert calls_at_kill < len(valid_keys), "killed before every key was called"

            second = await start(logs[1])
            await wait_for(
                lambda: committed_all(tansu_broker.bootstrap, settings.kafka.group_id, topic, ends),
                timeout_s=90,
                interval_s=0.5,
                what="restarted process committing every message",
            )
            scraped = await scrape(http)
            lease_expiries = scraped.get("netscope_ledger_lease_expiries_total", 0.0)
            assert scraped.get("netscope_ledger_up") == 1.0
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 60) == 0, logs[1].read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    records = await read_audit(settings.audit)
    assert_exactly_once(records, topic, ends)
    outcomes = Counter(r["outcome"] for r in records)
    retaken = {r["idempotency_key"] for r in records if r["attempt_after_lease_expiry"]}
    calls = sim.stats.by_idempotency_key
    summary = (
        f"outcomes {dict(outcomes)}, in flight at kill {in_flight_at_kill}, calls at kill "
        f"{calls_at_kill}, audited at kill {audited_at_kill}, retaken {len(retaken)}, "
        f"lease expiries (metric) {lease_expiries}, sim {sim.stats.total} calls"
    )
    print(summary)

    assert set(calls) <= valid_keys, "only produced keys reach the upstream"
    twice = {k: c for k, c in calls.items() if c > 1}
    assert set(twice) <= retaken, (
        f"keys called twice without a lease expiry: {sorted(set(twice) - retaken)[:5]}; {summary}"
    )
    assert max(calls.values()) <= 2, f"a key called more than twice: {twice}"
    # Not one call lost: every key reached the upstream (the leases ran out before the
    # restarted process asked, so nothing ended as duplicate_in_progress).
    never_called = valid_keys - set(calls)
    assert not never_called, f"{len(never_called)} keys never called; {summary}"
    assert outcomes["duplicate_in_progress"] == 0, summary
    assert outcomes["ledger_unavailable"] == 0, summary
    assert outcomes["success"] == len(valid_keys), summary
    for r in records:
        if r["attempt_after_lease_expiry"]:
            assert r["outcome"] == "success", r
            assert r["instance_id"] == settings.instance_id
    # Each takeover is counted once, by the process that made it (the restarted one).
    assert lease_expiries == len(retaken), summary
    # Every message has a key of its own, so no record may be a duplicate. A call settled
    # by the first process whose record the kill lost is audited from the ledger
    # (outcome_from_ledger), never as a duplicate of itself.
    skipped = [r for r in records if r["outcome"] == "duplicate_skipped"]
    recovered = [r for r in records if r["outcome_from_ledger"]]
    for r in recovered:
        assert calls[r["idempotency_key"]] == 1, r
        assert r["outcome"] == "success" and r["status"] == 200, r
        assert r["attempts"] == [] and r["duplicate_of"] is None, r
    print(f"recovered from the ledger: {len(recovered)}")
    assert not skipped, f"duplicate_skipped records not deduplicated: {skipped[:2]}"


# --- 2. PostgreSQL stopped mid-stream ---------------------------------------------------------


def steady_load(bootstrap: str, topic: str, rate_per_s: float) -> BackgroundLoad:
    """Background producer at a steady rate; remembers what the broker acknowledged."""
    return BackgroundLoad(
        LoadgenConfig(
            bootstrap=bootstrap,
            topic=topic,
            rate_per_s=rate_per_s,
            upstreams={UPSTREAM: 1.0},
            seed=23,
        )
    )


def committed_to_end(service: Service, topic: str, ends: dict[int, int]) -> bool:
    committed = service.pipeline.committer.committed
    return all(committed.get(TopicPartition(topic, p)) == end for p, end in ends.items())


async def test_postgres_stopped_mid_stream_pauses_calls_nothing_and_heals(
    tansu_broker, rgw, rgw_bucket, postgres, postgres_dsn: str, sim: UpstreamSim, tmp_path: Path
) -> None:
    """PostgreSQL (the ledger) stops under a steady trickle of messages, then comes back.

    Fail closed: a message whose key cannot be claimed is never called. Messages already
    taken when the ledger went away retry their claim within their deadline and may end as
    ``ledger_unavailable`` records (allowed: audited, committed, not called). Ingest pauses
    (``ledger_unavailable``), readiness is 503 naming ``ledger``, ``netscope_ledger_up`` is 0;
    once the server is back the gate's watch sees it, and everything resumes by itself.
    """
    topic = await new_topic(tansu_broker, "lpg")
    base = settings_for(
        broker=tansu_broker,
        topic=topic,
        tmp_path=tmp_path,
        rgw=rgw,
        bucket=rgw_bucket,
        upstreams={UPSTREAM: sim.url},
        upstream_overrides={"deadline_s": DEADLINE_S, "read_timeout_s": 1.0},
    )
    settings = base.model_copy(
        update={"ledger": LedgerConfig(**ledger_options("postgresql", postgres_dsn))}
    )
    service = Service(settings)
    pipeline = service.pipeline
    outage_s = 5.0  # at least; the upstream is watched for QUIET_S of it

    async with running(service), httpx.AsyncClient(base_url=service.base_url) as http:

        async def ready() -> tuple[int, dict[str, Any]]:
            resp = await http.get("/health/ready")
            return resp.status_code, resp.json()

        async def ready_is(code: int) -> bool:
            return (await ready())[0] == code

        load = steady_load(tansu_broker.bootstrap, topic, rate_per_s=50.0).start()
        await wait_for(lambda: pipeline.processed >= 50, timeout_s=30, what="processing")
        await wait_for(lambda: ready_is(200), timeout_s=30, what="ready before the outage")
        assert metric(service, "netscope_ledger_up") == 1

        await asyncio.to_thread(postgres.stop)
        stopped_at = time.monotonic()
        await wait_for(
            lambda: pipeline.paused_reason == "ledger_unavailable",
            timeout_s=15,
            what="ingest paused for the ledger",
        )
        code, body = await ready()
        assert code == 503 and "ledger" in body["failing"], body
        assert not body["checks"]["ledger"]["ok"]
        assert "consumption paused" in body["checks"]["ledger"]["detail"], body
        assert metric(service, "netscope_ledger_up") == 0
        assert metric(service, "netscope_ingest_paused", {"reason": "ledger_unavailable"}) == 1
        assert pipeline.status().ledger.available is False

        # Calls whose claim was answered before the server went are allowed to land; after
        # that the upstream must see nothing at all until the ledger is back.
        await wait_for(lambda: sim.stats.in_flight == 0, timeout_s=10, what="no call in flight")
        quiet_from = time.time() + 0.5
        quiet_end = max(stopped_at + outage_s, time.monotonic() + 0.5 + QUIET_S)
        while time.monotonic() < quiet_end:
            assert pipeline.paused_reason == "ledger_unavailable"
            assert not pipeline.gate.available
            await asyncio.sleep(0.2)  # pacing of the outage-check loop, not synchronisation
        quiet_until = time.time()
        called_while_down = [
            e for e in list(sim.stats.recent) if quiet_from <= e["t"] <= quiet_until
        ]
        assert load.sent > pipeline.processed, "the load kept coming while paused"

        await asyncio.to_thread(postgres.start)
        await wait_for(lambda: ready_is(200), timeout_s=30, what="ready again")
        await wait_for(lambda: pipeline.paused_reason is None, timeout_s=15, what="ingest resumed")
        assert metric(service, "netscope_ledger_up") == 1
        resumed_at = pipeline.processed
        await wait_for(
            lambda: pipeline.processed > resumed_at + 100,
            timeout_s=30,
            what="processing after the ledger came back",
        )
        ends = await load.stop()
        await wait_for(
            lambda: committed_to_end(service, topic, ends),
            timeout_s=60,
            what="offsets committed to the end",
        )
        lease_expiries = metric(
            service, "netscope_ledger_lease_expiries_total", {"upstream": UPSTREAM}
        )
    assert service.summary is not None and service.summary.clean, service.summary

    assert not called_while_down, (
        f"{len(called_while_down)} calls reached the upstream while the ledger was down, "
        f"e.g. {called_while_down[:2]}"
    )
    records = await read_audit(settings.audit)
    assert_exactly_once(records, topic, ends)
    assert len(records) == load.sent
    assert await committed_offsets(tansu_broker.bootstrap, settings.kafka.group_id, topic) == ends

    calls = sim.stats.by_idempotency_key
    outcomes = Counter(r["outcome"] for r in records)
    print(f"outcomes {dict(outcomes)}, lease expiries {lease_expiries}, sim {sim.stats.total}")
    twice = {k: c for k, c in calls.items() if c > 1}
    assert not twice, f"keys called twice: {twice}"
    for r in records:
        key = r["idempotency_key"]
        # Not called: the outcome says so, or the record has no attempt (a claim answered as
        # the ledger came back, with the message's deadline already spent: deadline_exceeded).
        if r["outcome"] in NOT_CALLED or not r["attempts"]:
            assert key not in calls, f"{r['outcome']} record but the key was called: {r}"
        else:
            assert calls.get(key) == 1, f"a {r['outcome']} record for a key never called: {r}"
        assert not r["attempt_after_lease_expiry"], r
    assert outcomes["duplicate_skipped"] == outcomes["duplicate_in_progress"] == 0, outcomes
