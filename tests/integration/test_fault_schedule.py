"""Issue 15, items 1 and 2: each fault alone, then faults mixed at random points, judged end
to end.

A seeded schedule (tests/faults/harness.py) of SIGKILLs (each restarted), SIGTERMs (at random
or in each stage), a second and third instance joining and leaving the group, RGW killed with
the spool's disk filled meanwhile, the PostgreSQL ledger restarted, the broker killed (noida)
and upstream chaos (latency, 5xx, 429, resets, hangs, slowloris headers, endless bodies, gzip
bombs, redirects to another host), under continuous loadgen traffic with unique request_ids,
on one to three `netscope run` processes sharing a PostgreSQL ledger. Afterwards the evidence
(tests/faults/evidence.py) goes to tests/faults/checker.py: 0 missing, 0 doubled, every
invalid message dead-lettered, no offset committed past an unaudited message, calls per key
within what the ledger allows; and every process exits 0 on SIGTERM, none exits on its own,
the redirect target sees nothing. The report is kept in test-artifacts/faults/<name>.json,
the processes' logs beside it.

Replay a failure with its seed: ``FAULT_SEED=<seed> pytest tests/integration/test_fault_schedule.py
-k <test>``. The long variant (``FAULT_LONG=1``, marked slow) runs 22 kills (``FAULT_KILLS``).
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from netscope.devservices.kafka import DURABLE, MEMBER_EXPIRY
from netscope.tools.upstream_sim import UpstreamSim
from tests.faults import evidence
from tests.faults.checker import check
from tests.faults.harness import CHAOS, MAX_ATTEMPTS, FaultRun, ScheduleSpec, sim_for

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "faults"


def _seed(default: int) -> int:
    return int(os.environ.get("FAULT_SEED", default))


def explain(
    report: Any, audit: list[dict[str, Any]], arrivals: list[dict[str, Any]], t0_wall: float
) -> dict[str, Any]:
    """For each key called beyond what its records allow : its records and the
    simulator's arrivals (seconds from the start of the fault schedule)."""
    keys = list(report.calls_beyond_allowed)
    out: dict[str, Any] = {}
    for key in keys:
        records = [
            {
                "kafka": r["kafka"],
                "outcome": r.get("outcome"),
                "status": r.get("status"),
                "instance_id": r.get("instance_id"),
                "attempts": r.get("attempts"),
                "received_at": round(r["received_at"] - t0_wall, 2)
                if r.get("received_at")
                else None,
                "completed_at": round(r["completed_at"] - t0_wall, 2)
                if r.get("completed_at")
                else None,
                "after_lease_expiry": r.get("attempt_after_lease_expiry"),
                "from_ledger": r.get("outcome_from_ledger"),
            }
            for r in audit
            if r.get("idempotency_key") == key
        ]
        seen = [
            {
                "t": round(e["t"] - t0_wall, 2),
                "outcome": e.get("outcome"),
                "status": e.get("status"),
            }
            for e in arrivals
            if e["headers"].get("idempotency-key") == key
        ]
        out[key] = {"records": records, "upstream_saw": seen}
    return out


async def run_schedule(
    spec: ScheduleSpec,
    broker: Any,
    rgw: Any,
    bucket: str,
    postgres: Any,
    dsn: str,
    tmp_path: Path,
    *,
    name: str | None = None,
) -> dict[str, Any]:
    topic = f"faults-{uuid.uuid4().hex[:10]}"
    await broker.create_topic(topic, 4)
    started = time.monotonic()
    # The host the simulator's redirects point at: NetScope must never follow them there.
    async with UpstreamSim() as elsewhere, sim_for(spec.seed) as sim:
        sim.config.redirect_location = f"{elsewhere.url}/stolen"
        run = FaultRun(
            spec=spec,
            broker=broker,
            rgw=rgw,
            bucket=bucket,
            postgres=postgres,
            dsn=dsn,
            sim=sim,
            topic=topic,
            root=tmp_path,
        )
        try:
            await run.run()
        finally:
            print(f"FAULT_SEED={spec.seed} events:\n  " + "\n  ".join(run.log.events))
        ev = await evidence.gather(
            bootstrap=broker.bootstrap,
            topic=topic,
            dlq_topic=run.settings.kafka.dead_letter_topic,
            group_id=run.settings.kafka.group_id,
            audit_cfg=run.settings.audit,
            sent=run.load.acked,
            upstream_calls=sim.stats.by_idempotency_key,
        )
    report = check(
        ev.produced,
        ev.audit,
        ev.dead_lettered,
        ev.committed,
        ev.upstream_calls,
        max_attempts=MAX_ATTEMPTS,
    )
    per_key = Counter(ev.upstream_calls.values())
    outcomes = Counter(r.get("outcome") for r in ev.audit if r.get("record_type") != "control")
    doc = {
        "seed": spec.seed,
        "broker": broker.name,
        "spec": run.log.spec,
        "faults_injected": run.log.injected,
        "schedule": run.log.schedule,
        "events": run.log.events,
        "exits": run.log.exits,
        "unclean_exits": run.unclean_exits(),
        "hung_logs": run.hung_logs(),
        "crashes": run.crashes(),
        "tracebacks": run.tracebacks(),
        "messages": len(ev.produced),
        "invalid": sum(not m.valid for m in ev.produced),
        "dlq_copies": ev.dlq_copies,
        "outcomes": dict(outcomes),
        "calls_per_key": {str(k): v for k, v in sorted(per_key.items())},
        "takeovers": sum(bool(r.get("attempt_after_lease_expiry")) for r in ev.audit),
        "from_ledger": sum(bool(r.get("outcome_from_ledger")) for r in ev.audit),
        "settle_error": run.log.settle_error,
        "load_s": round(run.log.load_s, 1),
        "settle_s": round(run.log.settle_s, 1),
        "total_s": round(time.monotonic() - started, 1),
        "check": report.to_dict(),
        "upstream_outcomes": dict(sim.stats.by_outcome),
        "redirect_target_calls": elsewhere.stats.total,
        "offending_keys": explain(report, ev.audit, list(sim.stats.recent), run.t0_wall),
    }
    name = f"{name or spec.seed}" + ("" if broker.name == "tansu" else f"-{broker.name}")
    doc["logs"] = run.keep_logs(ARTIFACTS / f"{name}-logs")
    out = ARTIFACTS / f"{name}.json"
    out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    summary = (
        f"FAULT_SEED={spec.seed} on {broker.name}: faults {run.log.injected}, "
        f"messages {doc['messages']}, missing {len(report.missing)}, doubled "
        f"{len(report.doubled)}, calls per key {doc['calls_per_key']}, report {out}"
    )
    print(summary)
    detail = orjson.dumps(report.to_dict()).decode()[:4000]
    assert run.log.settle_error is None, f"{summary}: {run.log.settle_error}\n{detail}"
    assert not (report.missing or report.doubled or report.not_dead_lettered), (
        f"{summary}\n{detail}"
    )
    assert not report.committed_past_unaudited, f"{summary}\n{detail}"
    assert doc["redirect_target_calls"] == 0, f"{summary}: a redirect was followed"
    assert not doc["crashes"], f"{summary}: processes exited on their own {doc['crashes']}"
    codes = [c for exits in doc["unclean_exits"].values() for c in exits]
    assert not codes, f"{summary}: unclean exits {doc['unclean_exits']} {doc['hung_logs']}"
    assert not report.calls_beyond_allowed, f"{summary}: calls beyond the ledger\n{detail}"
    assert report.ok, f"{summary}\n{detail}"
    return doc


# Each fault alone, on one schedule each (short): a mixed run's failure is easier to read
# once every single fault is known to pass on its own.
ALONE = {
    "sigkill": {"kills": 6},
    "sigterm": {"sigterms": 3},
    # SIGTERM at startup, mid-join, while degraded, while the ledger is down, mid-chaos.
    "sigterm_in_stages": {
        "sigterm_in_stages": True,
        "kills": 1,
        "joins": 1,
        "rgw_down_s": 8.0,
        "pg_restarts": 1,
        "chaos_windows": 2,
        "chaos_sequential": True,
    },
    "membership": {"joins": 1},
    "rgw_down_disk_full": {"rgw_down_s": 12.0, "disk_full": True},
    "ledger_restart": {"pg_restarts": 2},
    "upstream": {"chaos_windows": len(CHAOS), "chaos_sequential": True},
}
NOTHING = {
    "kills": 0, "sigterms": 0, "joins": 0, "rgw_down_s": 0.0, "pg_restarts": 0,
    "chaos_windows": 0, "broker_restarts": 0, "disk_full": False,
}  # fmt: skip


@pytest.mark.parametrize("fault", list(ALONE))
async def test_each_fault_alone(
    fault: str, tansu_broker, rgw_faults, rgw_bucket, postgres, postgres_dsn, tmp_path: Path
) -> None:
    load_s = 10.0 + 5.0 * len(CHAOS) if fault == "upstream" else 35.0
    spec = ScheduleSpec(seed=_seed(1510), load_s=load_s, **(NOTHING | ALONE[fault]))
    doc = await run_schedule(
        spec, tansu_broker, rgw_faults, rgw_bucket, postgres, postgres_dsn, tmp_path,
        name=f"alone-{fault}",
    )  # fmt: skip
    if fault == "upstream":  # every hostile kind really met traffic
        seen = set(doc["upstream_outcomes"])
        want = {"reset", "hang", "slowloris", "endless_body", "gzip_bomb", "redirect"}
        want |= {"rate_limited", "error"}
        assert want <= seen, f"chaos kinds that met no request: {sorted(want - seen)}"


async def test_broker_restart_alone(
    noida_broker, rgw_faults, rgw_bucket, postgres, postgres_dsn, tmp_path: Path
) -> None:
    """SIGKILL of the broker that keeps data across restarts (noida), twice, under load."""
    spec = ScheduleSpec(seed=_seed(1511), load_s=40.0, **(NOTHING | {"broker_restarts": 2}))
    await run_schedule(
        spec, noida_broker, rgw_faults, rgw_bucket, postgres, postgres_dsn, tmp_path,
        name="alone-broker_restart",
    )  # fmt: skip


async def test_mixed_faults_ci(
    tansu_broker, rgw_faults, rgw_bucket, postgres, postgres_dsn, tmp_path: Path
) -> None:
    """The CI variant: ~8 SIGKILLs, a SIGTERM, a join/leave cycle of two more instances, RGW
    down 15 s, a ledger restart and four upstream chaos windows in ~75 s of load (tansu)."""
    spec = ScheduleSpec(
        seed=_seed(1501),
        kills=int(os.environ.get("FAULT_KILLS", 8)),
        load_s=75.0,
        chaos_windows=len(CHAOS),
    )
    await run_schedule(spec, tansu_broker, rgw_faults, rgw_bucket, postgres, postgres_dsn, tmp_path)


async def test_mixed_faults_ci_noida(
    noida_broker, rgw_faults, rgw_bucket, postgres, postgres_dsn, tmp_path: Path
) -> None:
    """The CI variant on noida, which keeps its data across a restart but never expires a
    member that died without leaving (MEMBER_EXPIRY): no SIGKILL of NetScope; instead 3
    SIGTERMs, a broker SIGKILL + restart, a join/leave cycle of two more instances, RGW down
    15 s, a ledger restart and a chaos window of each upstream kind in ~75 s of load."""
    spec = ScheduleSpec(
        seed=_seed(1503),
        kills=0,
        sigterms=3,
        load_s=75.0,
        chaos_windows=len(CHAOS),
        broker_restarts=1,
    )
    await run_schedule(spec, noida_broker, rgw_faults, rgw_bucket, postgres, postgres_dsn, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(not os.environ.get("FAULT_LONG"), reason="long fault run: set FAULT_LONG=1")
@pytest.mark.parametrize("broker_name", ["tansu", "noida"])
async def test_mixed_faults_long(
    broker_name: str,
    request: pytest.FixtureRequest,
    rgw_faults,
    rgw_bucket,
    postgres,
    postgres_dsn,
    tmp_path: Path,
) -> None:
    """22 kills, SIGTERMs at random and in each stage, two join/leave cycles, RGW down with
    the disk full, two ledger restarts, 18 chaos windows; on noida two broker restarts and no
    SIGKILL: noida never expires a member that died without leaving (MEMBER_EXPIRY), so one
    SIGKILL of the group's leader stalls the group for good, whatever the client does."""
    broker = request.getfixturevalue(f"{broker_name}_broker")
    expiry = MEMBER_EXPIRY in broker.features
    spec = ScheduleSpec(
        seed=_seed(1502),
        kills=int(os.environ.get("FAULT_KILLS", 22)) if expiry else 0,
        sigterms=3,
        load_s=200.0,
        joins=2,
        rgw_down_s=20.0,
        pg_restarts=2,
        chaos_windows=2 * len(CHAOS),
        broker_restarts=2 if DURABLE in broker.features else 0,
        sigterm_in_stages=True,
    )
    await run_schedule(spec, broker, rgw_faults, rgw_bucket, postgres, postgres_dsn, tmp_path)
