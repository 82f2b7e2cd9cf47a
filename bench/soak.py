"""The soak (issue 15, item 5): mixed traffic and mixed faults at nominal load for a long
while, with slot 0's RSS, open files, asyncio tasks and spool sampled from its /metrics and
judged for a growth trend. Not part of the default test run.

What runs: the fault harness (tests/faults/harness.py) with a soak schedule drawn from a
seed: loadgen traffic at 40 msg/s (2 % invalid), a second and third `netscope run` joining
the group, being SIGKILLed, SIGTERMed and restarted, and leaving, every few minutes; radosgw
down windows; PostgreSQL ledger restarts; upstream chaos windows (latency past the deadline,
5xx, 429, resets, hangs). Slot 0 is never signalled, so its curves are one process's. The
schedule keeps a quiet head (warm-up, then the baseline window) and a quiet tail (faults
healed, only slot 0 in the group) with the same membership as the baseline.

The verdict (``verdict``): over the second half of the load, the least-squares slope of RSS
stays under a ceiling (full runs); open fds and tasks in the quiet tail are back to the
baseline within a margin; RSS in the tail stays within a margin of the baseline and its peak
under a ceiling; the spool is empty in the tail; slot 0 kept one PID. After the run the
evidence goes to tests/faults/checker.py with the fault run's strict rules (0 missing, 0
doubled, invalid messages dead-lettered, no offset committed past an unaudited message, no
call beyond what the ledger allows, none to the redirect target, no unclean exit or crash).

    .venv/bin/python bench/soak.py --minutes 30 --png docs/img/soak.png     # the full soak
    .venv/bin/python bench/soak.py --minutes 3                              # a quick look

It starts its own tansu, Ceph RGW and PostgreSQL under /tmp/ns-soak-*, prints the figures,
writes test-artifacts/soak/<seed>-<minutes>m.json (every sample, the schedule, the verdict)
and the PNG, and exits 1 if the verdict fails. tests/integration/test_soak.py is the short
variant CI runs. Figures of the full run: docs/reliability.md, "Soak".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults import evidence
from tests.faults.checker import check
from tests.faults.harness import (
    CHAOS,
    MAX_ATTEMPTS,
    Fault,
    FaultRun,
    Instance,
    ScheduleSpec,
    sim_for,
)

from netscope.config import UpstreamConfig
from netscope.tools.upstream_sim import UpstreamSim

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "soak"
MB = 1024 * 1024
# From slot 0's /metrics; RSS and open fds from /proc/<pid> (what prometheus_client's process
# collector reads; the service's own registry has none).
SERIES = {
    "tasks": "netscope_asyncio_tasks",
    "spool_bytes": "netscope_audit_spool_bytes",
    "spool_pending": "netscope_audit_spool_pending_batches",
    "records": "netscope_audit_records_total",
}
WINDOW_KINDS = ("rgw_down", "pg_restart", "chaos")  # faults with a duration, shaded in the plot


# --- the schedule ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakSpec:
    seed: int
    minutes: float = 30.0
    sample_s: float = 5.0
    rate_per_s: float = 40.0  # the harness's nominal load

    @property
    def load_s(self) -> float:
        return self.minutes * 60.0

    @property
    def quiet_s(self) -> float:
        """Length of the quiet head and of the quiet tail (no fault starts or runs there)."""
        return min(120.0, max(20.0, 0.08 * self.load_s))


def _segments(lo: float, hi: float, n: int) -> list[tuple[float, float]]:
    step = (hi - lo) / n
    return [(lo + i * step, lo + (i + 1) * step) for i in range(n)]


def draw_soak_schedule(spec: SoakSpec) -> list[Fault]:
    """Every fault of the soak, from the seed alone. Slot 0 is never a target; windows of one
    kind never overlap; every fault has healed when the quiet tail starts."""
    rand = random.Random(spec.seed)
    lo, hi = spec.quiet_s, spec.load_s - spec.quiet_s
    zone = hi - lo
    short = zone < 300
    faults: list[Fault] = []
    # Membership cycles: slots 1 and 2 join, are killed / stopped and restarted, leave.
    for start, end in _segments(lo, hi, max(1, round(zone / 300))):
        span = end - start
        join1 = start + rand.uniform(0.0, 0.1) * span
        join2 = join1 + rand.uniform(0.05, 0.15) * span
        leave1 = end - rand.uniform(0.05, 0.1) * span
        leave2 = leave1 - rand.uniform(0.05, 0.15) * span
        faults += [
            Fault(join1, "join", 1),
            Fault(join2, "join", 2),
            Fault(leave2, "leave", 2),
            Fault(leave1, "leave", 1),
        ]
        # Kills and a SIGTERM while both run (a kill of a slot not running is skipped).
        for _ in range(3):
            faults.append(
                Fault(
                    rand.uniform(join2 + 2, leave2 - 4),
                    "sigkill",
                    rand.choice([1, 2]),
                    hold_s=rand.uniform(0.5, 3.0),
                )
            )
        faults.append(
            Fault(
                rand.uniform(join2 + 2, leave2 - 4),
                "sigterm",
                rand.choice([1, 2]),
                hold_s=rand.uniform(0.5, 2.0),
            )
        )
    rgw_hold = (8.0, 12.0) if short else (15.0, 45.0)
    for a, b in _segments(lo, hi, max(1, round(zone / 360))):
        hold = rand.uniform(*rgw_hold)
        faults.append(Fault(rand.uniform(a, max(a, b - hold - 5)), "rgw_down", hold_s=hold))
    for a, b in _segments(lo, hi, max(1, round(zone / 420))):
        faults.append(Fault(rand.uniform(a, b - 8), "pg_restart", hold_s=rand.uniform(1.0, 4.0)))
    kinds = list(CHAOS)
    rand.shuffle(kinds)
    chaos_hold = (3.0, 7.0) if short else (5.0, 20.0)
    for i, (a, b) in enumerate(_segments(lo, hi, max(2, round(zone / 120)))):
        hold = rand.uniform(*chaos_hold)
        faults.append(
            Fault(
                rand.uniform(a, max(a, b - hold - 1)),
                "chaos",
                hold_s=hold,
                chaos=kinds[i % len(kinds)],
            )
        )
    return sorted(faults, key=lambda f: f.at_s)


class SoakRun(FaultRun):
    """FaultRun with the soak's schedule and a fault's slot taken literally: a kill aimed at
    slot 1 while slot 1 is down is skipped, never redirected to slot 0."""

    def __init__(self, *, soak: SoakSpec, **kwargs: Any) -> None:
        spec = ScheduleSpec(seed=soak.seed, load_s=soak.load_s, rate_per_s=soak.rate_per_s)
        super().__init__(spec=spec, **kwargs)
        self.schedule = draw_soak_schedule(soak)
        self.log.schedule = [asdict(f) for f in self.schedule]
        self.log.spec = asdict(soak)
        assert all(f.slot == 0 for f in self.schedule if f.kind not in
                   ("sigkill", "sigterm", "join", "leave"))  # fmt: skip
        assert not any(f.slot == 0 for f in self.schedule if f.kind in ("sigkill", "sigterm"))

    async def _target(self, fault: Fault) -> Instance:
        return self.instances[fault.slot]



# --- sampling ---------------------------------------------------------------------------------


@dataclass
class Samples:
    rows: list[dict[str, float]] = field(default_factory=list)  # wall time, pid, SERIES
    gaps: int = 0  # scrapes of a running slot 0 that did not answer


def proc_rss_bytes(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return math.nan


def proc_open_fds(pid: int) -> float:
    try:
        return float(len(os.listdir(f"/proc/{pid}/fd")))
    except OSError:
        return math.nan


def proc_fd_kinds(pid: int) -> dict[str, int]:
    """Slot 0's open fds by kind: ``tcp:<remote port>`` for a connected TCP socket (which
    peer: broker, RGW, PostgreSQL, upstream, a client of the API), else ``socket``, ``pipe``,
    ``file`` or ``other``: what an fd count above the baseline is made of."""
    peers: dict[str, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    cols = line.split()
                    remote_port = int(cols[2].rsplit(":", 1)[1], 16)
                    if remote_port:
                        peers[cols[9]] = remote_port
        except OSError:
            continue
    kinds: dict[str, int] = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return kinds
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            port = peers.get(target[8:-1])
            kind = f"tcp:{port}" if port else "socket"
        elif target.startswith("pipe:"):
            kind = "pipe"
        elif target.startswith("/"):
            kind = "file"
        else:
            kind = "other"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


async def sample(run: FaultRun, every_s: float, stop: asyncio.Event, out: Samples) -> None:
    """Slot 0's /metrics every ``every_s`` while it runs, until ``stop``."""
    inst = run.instances[0]
    async with httpx.AsyncClient() as http:
        while not stop.is_set():
            tick = time.monotonic()
            if inst.running and inst.proc is not None:
                got = await inst.scrape(http)
                if got is None:
                    out.gaps += 1
                else:
                    pid = inst.proc.pid
                    row = {"wall": time.time(), "pid": float(pid)}
                    row |= {"rss": proc_rss_bytes(pid), "fds": proc_open_fds(pid)}
                    row["fd_kinds"] = proc_fd_kinds(pid)  # type: ignore[assignment]
                    row |= {k: got.get(name, math.nan) for k, name in SERIES.items()}
                    out.rows.append(row)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, every_s - (time.monotonic() - tick)))


# --- the verdict ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    rss_slope_mb_per_10min: float | None  # None: not judged (too short a run for a slope)
    rss_tail_margin_mb: float
    rss_ceiling_mb: float
    fds_margin: float
    tasks_margin: float


FULL = Thresholds(rss_slope_mb_per_10min=1.0, rss_tail_margin_mb=10.0, rss_ceiling_mb=300.0,
                  fds_margin=2.0, tasks_margin=5.0)  # fmt: skip
SHORT = Thresholds(rss_slope_mb_per_10min=None, rss_tail_margin_mb=25.0, rss_ceiling_mb=300.0,
                   fds_margin=4.0, tasks_margin=8.0)  # fmt: skip


def slope_per_10min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), in value per 10 minutes."""
    if len(points) < 3:
        return math.nan
    mx = statistics.fmean(t for t, _ in points)
    my = statistics.fmean(v for _, v in points)
    sxx = sum((t - mx) ** 2 for t, _ in points)
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return sxy / sxx * 600.0 if sxx else math.nan


# The transport's pool bound for each upstream (UpstreamConfig.max_connections, default).
UPSTREAM_MAX_CONNECTIONS = UpstreamConfig.model_fields["max_connections"].default


def _kinds_delta(base: list[dict[str, Any]], tail: list[dict[str, Any]]) -> dict[str, int]:
    first = base[-1].get("fd_kinds", {}) if base else {}
    last = tail[-1].get("fd_kinds", {}) if tail else {}
    delta = {k: last.get(k, 0) - first.get(k, 0) for k in set(first) | set(last)}
    return {k: v for k, v in sorted(delta.items()) if v}


def verdict(
    rows: list[dict[str, float]], spec: SoakSpec, th: Thresholds, upstream_port: int | None = None
) -> dict[str, Any]:
    """The figures and whether they pass; ``rows`` have ``t`` (s from the schedule's start).

    Keep-alive connections to the upstream are the HTTP transport's pool, not a leak: after a
    chaos window or a rebalance that gave slot 0 more partitions the pool may hold a few more
    idle ones than at the baseline, until their idle timeout (found by the short soak in CI:
    the tail's +5 fds were all ``tcp:<upstream port>``). They are judged against the pool's
    bound (``max_connections``), every other fd against the baseline."""
    load = [r for r in rows if 0.0 <= r["t"] <= spec.load_s]
    upstream_kind = f"tcp:{upstream_port}"
    for r in load:
        pooled = r.get("fd_kinds", {}).get(upstream_kind, 0) if upstream_port else 0  # type: ignore[attr-defined]
        r["upstream_conns"] = float(pooled)
        r["fds_not_upstream"] = r["fds"] - pooled
    q = spec.quiet_s
    base = [r for r in load if q / 2 <= r["t"] < q]
    tail = [r for r in load if r["t"] >= spec.load_s - q / 2]
    second = [r for r in load if r["t"] >= spec.load_s / 2]

    def med(part: list[dict[str, float]], key: str, scale: float = 1.0) -> float:
        vals = [r[key] / scale for r in part if not math.isnan(r[key])]
        return statistics.median(vals) if vals else math.nan

    def slope(key: str, scale: float = 1.0) -> float:
        return slope_per_10min([(r["t"], r[key] / scale) for r in second if not math.isnan(r[key])])

    fig: dict[str, Any] = {
        "samples": len(load),
        "pids": sorted({int(r["pid"]) for r in load}),
        "rss_mb": {
            "start": round(load[0]["rss"] / MB, 1) if load else None,
            "baseline": round(med(base, "rss", MB), 1),
            "tail": round(med(tail, "rss", MB), 1),
            "end": round(load[-1]["rss"] / MB, 1) if load else None,
            "max": round(max((r["rss"] for r in load), default=math.nan) / MB, 1),
            "slope_per_10min_second_half": round(slope("rss", MB), 2),
        },
        "fds": {
            "baseline": med(base, "fds"),
            "tail": med(tail, "fds"),
            "max": max((r["fds"] for r in load), default=math.nan),
            "slope_per_10min_second_half": round(slope("fds"), 2),
            # What the tail holds that the baseline did not (last sample of each window).
            "tail_minus_baseline_by_kind": _kinds_delta(base, tail),
            "not_upstream_baseline": med(base, "fds_not_upstream"),
            "not_upstream_tail": med(tail, "fds_not_upstream"),
            "upstream_pool_max": max((r["upstream_conns"] for r in load), default=math.nan),
        },
        "tasks": {
            "baseline": med(base, "tasks"),
            "tail": med(tail, "tasks"),
            "max": max((r["tasks"] for r in load), default=math.nan),
            "slope_per_10min_second_half": round(slope("tasks"), 2),
        },
        "spool": {
            "max_bytes": max((r["spool_bytes"] for r in rows), default=math.nan),
            "max_pending_batches": max((r["spool_pending"] for r in rows), default=math.nan),
            "tail_pending_batches_max": max((r["spool_pending"] for r in tail), default=math.nan),
        },
    }
    rss, fds, tasks = fig["rss_mb"], fig["fds"], fig["tasks"]
    failed: list[str] = []
    if len(base) < 2 or len(tail) < 2:
        failed.append(f"too few samples: {len(base)} in the baseline, {len(tail)} in the tail")
    if len(fig["pids"]) != 1:
        failed.append(f"slot 0 restarted: pids {fig['pids']}")
    limit = th.rss_slope_mb_per_10min
    if limit is not None and not rss["slope_per_10min_second_half"] < limit:
        failed.append(f"RSS slope {rss['slope_per_10min_second_half']} MB/10 min >= {limit}")
    if not rss["tail"] <= rss["baseline"] + th.rss_tail_margin_mb:
        failed.append(f"RSS tail {rss['tail']} MB > baseline {rss['baseline']} "
                      f"+ {th.rss_tail_margin_mb}")  # fmt: skip
    if not rss["max"] <= th.rss_ceiling_mb:
        failed.append(f"RSS peak {rss['max']} MB > {th.rss_ceiling_mb}")
    if not fds["not_upstream_tail"] <= fds["not_upstream_baseline"] + th.fds_margin:
        failed.append(
            f"open fds (upstream pool aside) tail {fds['not_upstream_tail']} > baseline "
            f"{fds['not_upstream_baseline']} + {th.fds_margin}"
        )
    if not fds["upstream_pool_max"] <= UPSTREAM_MAX_CONNECTIONS:
        failed.append(
            f"{fds['upstream_pool_max']} connections to the upstream > its pool's bound "
            f"{UPSTREAM_MAX_CONNECTIONS}"
        )
    if not tasks["tail"] <= tasks["baseline"] + th.tasks_margin:
        failed.append(f"tasks tail {tasks['tail']} > baseline {tasks['baseline']} "
                      f"+ {th.tasks_margin}")  # fmt: skip
    if fig["spool"]["tail_pending_batches_max"] != 0:
        failed.append(f"spool not empty in the tail: {fig['spool']['tail_pending_batches_max']}")
    fig["thresholds"] = asdict(th)
    fig["failed"] = failed
    fig["ok"] = not failed
    return fig


# --- the run ----------------------------------------------------------------------------------


async def run_soak(
    spec: SoakSpec,
    *,
    broker: Any,
    rgw: Any,
    bucket: str,
    postgres: Any,
    dsn: str,
    root: Path,
    thresholds: Thresholds,
    say: Any = print,
) -> dict[str, Any]:
    """The soak, its samples, its verdict and the checker's report, as one document."""
    topic = f"soak-{uuid.uuid4().hex[:10]}"
    await broker.create_topic(topic, 4)
    started = time.monotonic()
    samples = Samples()
    stop = asyncio.Event()
    async with UpstreamSim() as elsewhere, sim_for(spec.seed) as sim:
        sim.config.redirect_location = f"{elsewhere.url}/stolen"  # chaos "redirect"
        run = SoakRun(soak=spec, broker=broker, rgw=rgw, bucket=bucket, postgres=postgres,
                      dsn=dsn, sim=sim, topic=topic, root=root)  # fmt: skip
        say(f"soak seed={spec.seed} minutes={spec.minutes} faults={len(run.schedule)} "
            f"({dict(Counter(f.kind for f in run.schedule))}) root={root}")  # fmt: skip
        sampler = asyncio.create_task(sample(run, spec.sample_s, stop, samples))
        progress = asyncio.create_task(_progress(run, samples, spec, say))
        try:
            await run.run()
        finally:
            stop.set()
            progress.cancel()
            await sampler
            say("events:\n  " + "\n  ".join(run.log.events))
        t0 = run.t0_wall
        rows = [r | {"t": r["wall"] - t0} for r in samples.rows]
        fig = verdict(rows, spec, thresholds, upstream_port=urlsplit(sim.url).port)
        say("gathering the evidence ...")
        ev = await evidence.gather(
            bootstrap=broker.bootstrap,
            topic=topic,
            dlq_topic=run.settings.kafka.dead_letter_topic,
            group_id=run.settings.kafka.group_id,
            audit_cfg=run.settings.audit,
            sent=run.load.acked,
            upstream_calls=sim.stats.by_idempotency_key,
        )
        report = check(ev.produced, ev.audit, ev.dead_lettered, ev.committed, ev.upstream_calls,
                       max_attempts=MAX_ATTEMPTS)  # fmt: skip
        offending = _offending(report, ev.audit, list(sim.stats.recent), t0)
        redirect_target_calls = elsewhere.stats.total
    checker = {
        "messages": len(ev.produced),
        "invalid": sum(not m.valid for m in ev.produced),
        "missing": len(report.missing),
        "doubled": len(report.doubled),
        "not_dead_lettered": len(report.not_dead_lettered),
        "committed_past_unaudited": len(report.committed_past_unaudited),
        "calls_beyond_allowed": len(report.calls_beyond_allowed),
        "offending_keys": offending,
        "redirect_target_calls": redirect_target_calls,
        "detail": report.to_dict() if not report.ok else None,
    }
    failed = list(fig["failed"])
    if run.log.settle_error:
        failed.append(f"settle: {run.log.settle_error}")
    # The fault run's rules (tests/integration/test_fault_schedule.py), strict as there.
    for name in ("missing", "doubled", "not_dead_lettered", "committed_past_unaudited",
                 "calls_beyond_allowed", "redirect_target_calls"):  # fmt: skip
        if checker[name]:
            failed.append(f"checker: {checker[name]} {name}")
    if run.unclean_exits():
        failed.append(f"unclean exits {run.unclean_exits()} (hung: {run.hung_logs()})")
    if run.crashes():
        failed.append(f"exits no fault asked for {run.crashes()}")
    fig["failed"], fig["ok"] = failed, not failed
    return {
        "seed": spec.seed,
        "spec": asdict(spec),
        "broker": broker.name,
        "faults_injected": run.log.injected,
        "schedule": run.log.schedule,
        "windows": fault_windows(run.schedule),
        "events": run.log.events,
        "exits": run.log.exits,
        "unclean_exits": run.unclean_exits(),
        "hung_logs": run.hung_logs(),
        "crashes": run.crashes(),
        "tracebacks": run.tracebacks(),  # logged ones (asyncpg during a ledger restart, ...)
        "logs": run.keep_logs(ARTIFACTS / f"{spec.seed}-{spec.minutes:g}m-logs"),
        "load_s": round(run.log.load_s, 1),
        "settle_s": round(run.log.settle_s, 1),
        "total_s": round(time.monotonic() - started, 1),
        "scrape_gaps": samples.gaps,
        "verdict": fig,
        "checker": checker,
        "samples": rows,
    }


async def _progress(run: FaultRun, samples: Samples, spec: SoakSpec, say: Any) -> None:
    """A line a minute, so a long run in the background shows it is alive."""
    while True:
        await asyncio.sleep(60)
        if samples.rows:
            r = samples.rows[-1]
            t = r["wall"] - run.t0_wall if run.t0_wall else float("nan")
            say(f"  t={t:6.0f}s/{spec.load_s:.0f} rss={r['rss'] / MB:.1f}MB fds={r['fds']:.0f} "
                f"tasks={r['tasks']:.0f} spool={r['spool_bytes']:.0f}B "
                f"records={r['records']:.0f} injected={run.log.injected}")  # fmt: skip


def _offending(
    report: Any, audit: list[dict[str, Any]], arrivals: list[dict[str, Any]], t0_wall: float
) -> dict[str, Any]:
    """For the first 20 keys called beyond what their records allow: the records' outcomes
    and attempts, and what the upstream saw (seconds from the schedule's start)."""
    out: dict[str, Any] = {}
    for key in list(report.calls_beyond_allowed)[:20]:
        out[key] = {
            "records": [
                {"kafka": r["kafka"], "outcome": r.get("outcome"), "status": r.get("status"),
                 "instance_id": r.get("instance_id"), "attempts": len(r.get("attempts") or []),
                 "after_lease_expiry": r.get("attempt_after_lease_expiry"),
                 "from_ledger": r.get("outcome_from_ledger")}
                for r in audit
                if r.get("idempotency_key") == key
            ],
            "upstream_saw": [
                {"t": round(e["t"] - t0_wall, 2), "outcome": e.get("outcome")}
                for e in arrivals
                if e["headers"].get("idempotency-key") == key
            ],
        }
    return out


def fault_windows(schedule: list[Fault]) -> list[dict[str, Any]]:
    """Faults with a duration ([start, end] in s from the schedule's start) and instants."""
    return [
        {"kind": f.kind, "chaos": f.chaos, "slot": f.slot, "start": round(f.at_s, 1),
         "end": round(f.at_s + (f.hold_s if f.kind in WINDOW_KINDS else 0.0), 1)}
        for f in schedule
    ]  # fmt: skip


def summary(doc: dict[str, Any]) -> str:
    v, c = doc["verdict"], doc["checker"]
    rss, fds, tasks, spool = v["rss_mb"], v["fds"], v["tasks"], v["spool"]
    return "\n".join([
        f"soak seed={doc['seed']} on {doc['broker']}: load {doc['load_s']} s, "
        f"settle {doc['settle_s']} s, total {doc['total_s']} s, {v['samples']} samples "
        f"of pid {v['pids']}, {doc['scrape_gaps']} scrape gaps",
        f"faults injected: {doc['faults_injected']}",
        f"RSS MB: start {rss['start']} baseline {rss['baseline']} tail {rss['tail']} "
        f"end {rss['end']} max {rss['max']} slope {rss['slope_per_10min_second_half']}/10 min",
        f"open fds: baseline {fds['baseline']} tail {fds['tail']} max {fds['max']} "
        f"slope {fds['slope_per_10min_second_half']}/10 min; upstream pool aside: baseline "
        f"{fds.get('not_upstream_baseline')} tail {fds.get('not_upstream_tail')}; upstream "
        f"pool max {fds.get('upstream_pool_max')}; tail - baseline by kind "
        f"{fds.get('tail_minus_baseline_by_kind')}",
        f"tasks: baseline {tasks['baseline']} tail {tasks['tail']} max {tasks['max']} "
        f"slope {tasks['slope_per_10min_second_half']}/10 min",
        f"spool: max {spool['max_bytes']} B, max {spool['max_pending_batches']} batches, "
        f"tail {spool['tail_pending_batches_max']}",
        f"checker: {c['messages']} messages ({c['invalid']} invalid), missing {c['missing']}, "
        f"doubled {c['doubled']}, not dead-lettered {c['not_dead_lettered']}, committed past "
        f"unaudited {c['committed_past_unaudited']}, calls beyond allowed "
        f"{c['calls_beyond_allowed']}, calls to the redirect target "
        f"{c['redirect_target_calls']}",
        f"unclean exits {doc['unclean_exits']}, hung {doc['hung_logs']}, crashes "
        f"{doc['crashes']}",
        "verdict: " + ("no growth trend, OK" if v["ok"] else "FAILED: " + "; ".join(v["failed"])),
    ])  # fmt: skip


# --- the plot ----------------------------------------------------------------------------------


def plot(doc: dict[str, Any], path: Path) -> None:
    """Four panels over time (minutes): RSS, open fds, asyncio tasks, spool; fault windows
    shaded, kills of the other slots ticked, the quiet head and tail marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = SoakSpec(**doc["spec"])
    # The load phase only: in the settle phase slot 0 is stopped (its tasks fall to a few).
    rows = [r for r in doc["samples"] if 0 <= r["t"] <= spec.load_s]
    t = [r["t"] / 60 for r in rows]
    panels = [
        ("RSS (MB)", [r["rss"] / MB for r in rows]),
        ("open fds", [r["fds"] for r in rows]),
        ("asyncio tasks", [r["tasks"] for r in rows]),
        ("spool (KiB)", [r["spool_bytes"] / 1024 for r in rows]),
    ]
    colors = {"rgw_down": "tab:red", "pg_restart": "tab:blue", "chaos": "tab:orange"}
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    for ax, (label, ys) in zip(axes, panels, strict=True):
        ax.plot(t, ys, color="black", linewidth=0.9)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        for w in doc["windows"]:
            if w["kind"] in colors:
                ax.axvspan(w["start"] / 60, max(w["end"], w["start"] + 1) / 60,
                           color=colors[w["kind"]], alpha=0.18, linewidth=0)  # fmt: skip
            elif w["kind"] in ("sigkill", "sigterm"):
                ax.axvline(w["start"] / 60, color="tab:purple", alpha=0.25, linewidth=0.8)
        for x in (spec.quiet_s / 60, (spec.load_s - spec.quiet_s) / 60):
            ax.axvline(x, color="grey", linestyle=":", linewidth=1)
        ax.axvline(spec.load_s / 60, color="green", linestyle="--", linewidth=1)
    axes[-1].set_xlabel("minutes since the fault schedule started (dotted: quiet head and tail; "
                        "dashed green: load stops)")
    v = doc["verdict"]
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.3) for c in colors.values()]
    handles.append(plt.Line2D([0], [0], color="tab:purple", alpha=0.5))
    axes[0].legend(handles, ["RGW down", "ledger restart", "upstream chaos",
                             "SIGKILL/SIGTERM of slot 1-2"],
                   loc="lower right", fontsize=8, ncol=4)  # fmt: skip
    fig.suptitle(
        f"NetScope soak, slot 0 (never signalled): {doc['load_s'] / 60:.0f} min at "
        f"{spec.rate_per_s:.0f} msg/s, {sum(doc['faults_injected'].values())} faults, "
        f"RSS slope {v['rss_mb']['slope_per_10min_second_half']} MB/10 min (2nd half)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


# --- services and the command line ----------------------------------------------------------


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1505)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--png", type=Path, default=None,
                        help="default: test-artifacts/soak/<seed>-<minutes>m.png")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep /tmp/ns-soak-* afterwards")
    parser.add_argument("--replot", type=Path, default=None,
                        help="only redraw the PNG from a soak's JSON")  # fmt: skip
    args = parser.parse_args()
    if args.replot:
        doc = orjson.loads(args.replot.read_bytes())
        plot(doc, args.png or args.replot.with_suffix(".png"))
        print(summary(doc))
        return 0 if doc["verdict"]["ok"] else 1

    from netscope.devservices import (
        CephRgw,
        Postgres,
        PostgresConfig,
        RgwConfig,
        TansuBroker,
        free_port,
    )
    from netscope.devservices.base import tie_daemons_to_this_process
    from netscope.devservices.kafka import BrokerConfig

    tie_daemons_to_this_process()
    spec = SoakSpec(seed=args.seed, minutes=args.minutes, sample_s=args.sample_s)
    thresholds = FULL if args.minutes >= 20 else SHORT
    work = Path(tempfile.mkdtemp(prefix="ns-soak-", dir="/tmp"))  # short: Ceph socket paths
    work.chmod(0o711)  # postgres runs as another account when this runs as root
    ports = set()
    while len(ports) < 4:
        ports.add(free_port())
    p_rgw, p_mon, p_kafka, p_pg = sorted(ports)
    broker = TansuBroker(BrokerConfig(data_dir=work / "tansu", port=p_kafka))
    rgw = CephRgw(RgwConfig(data_dir=work / "rgw", rgw_port=p_rgw, mon_port=p_mon))
    postgres = Postgres(PostgresConfig(data_dir=work / "postgres", port=p_pg))
    started: list[Any] = []
    try:
        for service in (broker, rgw, postgres):
            await asyncio.to_thread(service.up)
            started.append(service)
        bucket = await asyncio.to_thread(rgw.create_bucket, f"soak-{uuid.uuid4().hex[:12]}")
        dsn = await asyncio.to_thread(postgres.create_database, f"soak_{uuid.uuid4().hex[:12]}")
        doc = await run_soak(spec, broker=broker, rgw=rgw, bucket=bucket, postgres=postgres,
                             dsn=dsn, root=work / "run", thresholds=thresholds,
                             say=lambda s: print(s, flush=True))  # fmt: skip
    finally:
        for service in reversed(started):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(service.down)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    name = f"{spec.seed}-{spec.minutes:g}m"
    out = ARTIFACTS / f"{name}.json"
    write_json(doc, out)
    png = args.png or ARTIFACTS / f"{name}.png"
    plot(doc, png)
    print(summary(doc))
    print(f"samples and schedule: {out}\nplot: {png}")
    return 0 if doc["verdict"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
