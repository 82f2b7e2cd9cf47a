"""The fault-schedule harness (issue 15, items 1 and 2): a seeded schedule of faults, run
against one to three ``netscope run`` processes in one consumer group under continuous load.

The schedule is drawn once from ``random.Random(seed)`` before anything starts (times, fault
kinds, targets, durations), so a failing run is replayed with the same seed; what the
processes do between faults is, of course, not deterministic. Delays between faults are the
schedule itself; every wait for a state (a process exiting, offsets committed, a spool
empty) is a poll with a deadline (tests.harness.wait_for).

Faults:
- ``sigkill`` / ``sigterm``: an instance is killed (or stopped) and restarted after a drawn
  delay, on the same spool directory (the recovery of a crashed host);
- ``join`` / ``leave``: a second and third instance join the group mid-load and leave it
  (SIGTERM) later: rebalances;
- ``rgw_down``: radosgw SIGKILLed for a drawn duration, then started;
- ``pg_restart``: the PostgreSQL ledger stopped, then started;
- ``broker_restart``: the broker SIGKILLed, then started (only on a durable broker: noida);
- ``disk_full``: while RGW is down (so the spool takes every batch), slot 0's spool disk (a
  32 MiB tmpfs of its own, mounted when run as root) is filled to its last byte by a ballast
  file, then the ballast is deleted;
- ``chaos``: the upstream simulator turns hostile for a while (latency past the deadline,
  5xx bursts, 429 with Retry-After, connection resets, hangs, slowloris headers, an endless
  body, a gzip bomb, a redirect to another host).

At the end every slot that ever ran is running again (a stopped host's spool is drained only
by that host: the operational model of the spool), traffic stops, the group commits to the
end, the spools empty, every process is stopped with SIGTERM, and the evidence is judged by
tests.faults.checker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from netscope.config import Settings
from netscope.devservices.base import free_port
from netscope.tools.loadgen import LoadgenConfig
from netscope.tools.messages import SMALL_INVALID_KINDS
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import (
    BackgroundLoad,
    committed_offsets,
    settings_for,
    settings_toml,
    toml_table,
    wait_for,
    with_keys,
)

UPSTREAM = "payments"
DEADLINE_S = 2.0  # upstream deadline_s; the ledger lease is this plus LEASE_MARGIN_S
READ_TIMEOUT_S = 1.0
LEASE_MARGIN_S = 1.0
MAX_ATTEMPTS = 3  # the retry policy's default max_attempts
HUNG = "hung-after-SIGTERM"
# SIGTERM while Python still imports (no handler yet, never assigned a partition): the
# default disposition ends it, nothing consumed; accepted like a clean exit.
TERM_AT_STARTUP = "SIGTERM-during-startup"
# The simulator between chaos windows: a little latency so kills find calls in flight.
BASELINE = SimConfig(latency_ms=20.0, latency_jitter_ms=10.0, hang_s=30.0)
CHAOS: dict[str, dict[str, Any]] = {
    "latency": {"latency_ms": 2500.0, "latency_jitter_ms": 500.0},  # past the 2 s deadline
    "5xx": {"error_rate": 0.6, "error_status": 503},
    "429": {"rate_429": 0.5, "retry_after_s": 0.3},
    "reset": {"reset_rate": 0.3},
    "hang": {"hang_rate": 0.3},
    "slowloris": {"slowloris_rate": 0.3},  # headers a byte every 0.5 s: only the deadline cuts
    "endless_body": {"endless_body_rate": 0.3},
    "gzip_bomb": {"gzip_bomb_rate": 0.3},  # 64 KiB on the wire, 64 MiB inflated
    "redirect": {"redirect_rate": 0.3},  # to another host, which must never be called
}


# --- the schedule ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    at_s: float  # from the start of the load
    kind: str  # sigkill, sigterm, join, leave, rgw_down, pg_restart, chaos
    slot: int = 0  # the instance, for sigkill / sigterm / join / leave
    hold_s: float = 0.0  # restart delay, outage or chaos duration
    chaos: str = ""  # a CHAOS key
    # sigterm only: sent this long after the slot's current run logs "netscope ready" (a
    # stage reached through the process's own progress, not the clock: mid-join)
    after_ready_s: float | None = None


@dataclass(frozen=True)
class ScheduleSpec:
    seed: int
    kills: int = 8
    sigterms: int = 1
    load_s: float = 90.0
    joins: int = 1  # join/leave cycles of slots 1 and 2
    rgw_down_s: float = 15.0
    pg_restarts: int = 1
    chaos_windows: int = 4
    rate_per_s: float = 40.0
    broker_restarts: int = 0  # SIGKILL + start; only on a durable broker (noida)
    disk_full: bool = True  # inside the RGW outage; needs root for the tmpfs (else skipped)
    chaos_sequential: bool = False  # windows one after another (each kind alone), not drawn
    # A SIGTERM inside each stage the schedule creates: right after a restart (startup),
    # during a join (rebalance), while RGW is down (degraded, spooling), while the ledger is
    # down (ingest paused), during each upstream chaos window (calls in flight or hung).
    sigterm_in_stages: bool = False


def draw_schedule(spec: ScheduleSpec) -> list[Fault]:
    """Every fault of a run, drawn from the seed alone, sorted by time."""
    rand = random.Random(spec.seed)
    lo, hi = 4.0, spec.load_s - 6.0
    faults: list[Fault] = []
    # Membership: slot 1 joins, slot 2 joins, both leave; kills may target any running slot.
    span = (hi - lo) / max(1, spec.joins)
    for j in range(spec.joins):
        start = lo + j * span
        join1 = start + rand.uniform(0.05, 0.2) * span
        join2 = join1 + rand.uniform(0.1, 0.2) * span
        leave2 = join2 + rand.uniform(0.15, 0.25) * span
        leave1 = leave2 + rand.uniform(0.05, 0.2) * span
        faults += [
            Fault(join1, "join", 1),
            Fault(join2, "join", 2),
            Fault(leave2, "leave", 2),
            Fault(min(leave1, hi), "leave", 1),
        ]
    for _ in range(spec.kills):
        faults.append(
            Fault(
                rand.uniform(lo, hi),
                "sigkill",
                rand.choice([0, 0, 1, 2]),
                hold_s=rand.uniform(0.2, 2.5),
            )
        )
    for _ in range(spec.sigterms):
        faults.append(
            Fault(
                rand.uniform(lo, hi),
                "sigterm",
                rand.choice([0, 1, 2]),
                hold_s=rand.uniform(0.2, 2.0),
            )
        )
    if spec.rgw_down_s:
        at = rand.uniform(lo, max(lo, hi - spec.rgw_down_s))
        faults.append(Fault(at, "rgw_down", hold_s=spec.rgw_down_s))
        if spec.disk_full:
            faults.append(Fault(at + 1.0, "disk_full", 0, hold_s=max(2.0, spec.rgw_down_s - 4)))
    for _ in range(spec.pg_restarts):
        faults.append(Fault(rand.uniform(lo, hi), "pg_restart", hold_s=rand.uniform(1.0, 4.0)))
    for _ in range(spec.broker_restarts):
        faults.append(Fault(rand.uniform(lo, hi), "broker_restart", hold_s=rand.uniform(1.0, 3.0)))
    kinds = list(CHAOS)
    rand.shuffle(kinds)
    faults += _chaos_windows(spec, rand, kinds, lo, hi)
    if spec.sigterm_in_stages:
        faults += _sigterms_in_stages(faults)
    return sorted(faults, key=lambda f: f.at_s)


def _sigterms_in_stages(faults: list[Fault]) -> list[Fault]:
    """One SIGTERM in each stage, placed by the first fault that creates it."""
    out = []
    seen: set[str] = set()
    for f in sorted(faults, key=lambda f: f.at_s):
        stage = f"chaos_{f.chaos}" if f.kind == "chaos" else f.kind
        if stage in seen:
            continue
        seen.add(stage)
        if f.kind == "sigkill":  # startup: 0.3 s after the restart
            out.append(Fault(f.at_s + f.hold_s + 0.3, "sigterm", f.slot, hold_s=0.5))
        elif f.kind == "join":  # the joining instance, mid-join: as in the hang it found
            out.append(Fault(f.at_s, "sigterm", f.slot, hold_s=0.5, after_ready_s=0.3))
        elif f.kind in ("rgw_down", "pg_restart", "broker_restart", "chaos"):
            out.append(Fault(f.at_s + min(1.5, f.hold_s / 2), "sigterm", 0, hold_s=0.5))
    return out


def _chaos_windows(
    spec: ScheduleSpec, rand: random.Random, kinds: list[str], lo: float, hi: float
) -> list[Fault]:
    faults = []
    if spec.chaos_sequential and spec.chaos_windows:
        slot_s = (hi - lo) / spec.chaos_windows
        for i in range(spec.chaos_windows):
            at = lo + i * slot_s
            hold = slot_s - 1.0  # a breath between two kinds: each one alone
            faults.append(Fault(at, "chaos", hold_s=hold, chaos=kinds[i % len(kinds)]))
        return faults
    for i in range(spec.chaos_windows):
        faults.append(
            Fault(
                rand.uniform(lo, hi - 4),
                "chaos",
                hold_s=rand.uniform(3.0, 7.0),
                chaos=kinds[i % len(kinds)],
            )
        )
    return faults


# --- NetScope processes ----------------------------------------------------------------------


class Instance:
    """One slot of the group: a port, a spool directory, a config; restarted in place."""

    def __init__(self, slot: int, settings: Settings, dsn: str, root: Path, env: dict[str, str]):
        self.slot = slot
        self.port = free_port()
        self.dir = root / f"slot{slot}"
        self.dir.mkdir(parents=True, exist_ok=True)
        text = settings_toml(settings, api_port=self.port)
        text = text.replace(
            f'instance_id = "{settings.instance_id}"', f'instance_id = "fault-{slot}"'
        )
        text = text.replace(
            f'path = "{settings.audit.spool.path}"', f'path = "{self.dir / "spool"}"'
        )
        text = with_keys(
            text,
            f"upstreams.{UPSTREAM}",
            {"deadline_s": DEADLINE_S, "read_timeout_s": READ_TIMEOUT_S},
        )
        ledger = {
            "backend": "postgresql",
            "dsn": dsn,
            "lease_margin_s": LEASE_MARGIN_S,
            "retry_interval_s": 0.2,
            "connect_timeout_s": 2.0,
            "statement_timeout_s": 1.0,
        }
        text += toml_table("ledger", ledger)
        self.config = self.dir / "netscope.toml"
        self.config.write_text(text)
        self.spool = self.dir / "spool"
        self.spool_mounted = False
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.generation = 0
        self.ever_started = False
        self.exits: list[int | str] = []  # return codes (or HUNG), in order
        # Exits nobody asked for (a crash): (return code, log), found by a watcher task.
        self.unexpected: list[tuple[int, str]] = []
        self._signalled: asyncio.subprocess.Process | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self.hung_logs: list[str] = []  # the logs of runs that did not stop on SIGTERM
        self.lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def log(self) -> Path:
        return self.dir / f"run{self.generation}.log"

    async def start(self) -> None:
        if self.running:
            return
        self.generation += 1
        with self.log.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "netscope",
                "run",
                "-c",
                str(self.config),
                env=self.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
            )
        self.ever_started = True
        watcher = asyncio.create_task(self._watch(self.proc, str(self.log)))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, proc: asyncio.subprocess.Process, log: str) -> None:
        code = await proc.wait()
        if self._signalled is not proc:
            self.unexpected.append((code, log))

    async def signal(self, sig: signal.Signals, timeout_s: float = 45.0) -> int | str | None:
        """Send ``sig`` and wait for the exit. A process still there ``timeout_s`` later is
        recorded as ``HUNG`` (NetScope promises to stop within drain_timeout_s = 30 s) and
        SIGKILLed, so the run goes on to its verdict."""
        if not self.running:
            return None
        assert self.proc is not None
        self._signalled = self.proc
        self.proc.send_signal(sig)
        try:
            code: int | str = await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            await self._dump_tasks()
            self.proc.kill()
            await self.proc.wait()
            code = HUNG
            self.hung_logs.append(str(self.log))
        if code == -signal.SIGTERM and sig == signal.SIGTERM and not self._had_partitions():
            code = TERM_AT_STARTUP  # before its handler was installed: nothing was consumed
        self.exits.append(code)
        return code

    async def _dump_tasks(self, timeout_s: float = 5.0) -> None:
        """SIGUSR1: the process logs where each of its tasks waits, kept in its log for the
        report before the SIGKILL."""
        assert self.proc is not None
        before = self.log.stat().st_size if self.log.exists() else 0
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.returncode is None:
            with self.log.open("rb") as f:
                f.seek(before)
                if b"SIGUSR1:" in f.read():
                    return
            await asyncio.sleep(0.1)

    def mount_spool(self, size_mib: int = 32) -> bool:
        """Put this slot's spool on a small tmpfs of its own, so filling it is a real ENOSPC
        and not the whole machine's disk. Root only; False when it cannot."""
        if os.geteuid() != 0:
            return False
        self.spool.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(self.spool)],
            capture_output=True,
            check=False,
        )
        self.spool_mounted = done.returncode == 0
        return self.spool_mounted

    def unmount_spool(self) -> None:
        if self.spool_mounted:
            subprocess.run(["umount", "-l", str(self.spool)], capture_output=True, check=False)
            self.spool_mounted = False

    def _had_partitions(self) -> bool:
        return "assigned ['" in self.log.read_text(errors="replace")

    async def scrape(self, http: httpx.AsyncClient) -> dict[str, float] | None:
        """Unlabelled samples of /metrics; None while it does not answer."""
        try:
            text = (await http.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2)).text
        except httpx.HTTPError:
            return None
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
        return out


# --- traffic -----------------------------------------------------------------------------------


def steady_load(bootstrap: str, topic: str, rate_per_s: float, seed: int) -> BackgroundLoad:
    """The fault run's traffic: unique request_ids, 2 % invalid, 64 Kafka keys."""
    return BackgroundLoad(
        LoadgenConfig(
            bootstrap=bootstrap,
            topic=topic,
            rate_per_s=rate_per_s,
            upstreams={UPSTREAM: 1.0},
            invalid_share=0.02,
            invalid_kinds=SMALL_INVALID_KINDS,
            key_cardinality=64,
            seed=seed,
        )
    )


# --- the run ----------------------------------------------------------------------------------


@dataclass
class RunLog:
    seed: int
    spec: dict[str, Any]
    schedule: list[dict[str, Any]]
    injected: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    exits: dict[int, list[int | str]] = field(default_factory=dict)
    load_s: float = 0.0
    settle_s: float = 0.0
    settle_error: str | None = None  # the group did not commit to the end / spools not empty

    def note(self, t0: float, text: str) -> None:
        self.events.append(f"{time.monotonic() - t0:7.2f}s {text}")


class FaultRun:
    """Runs a schedule against real services; `evidence` is gathered afterwards."""

    def __init__(
        self,
        *,
        spec: ScheduleSpec,
        broker: Any,
        rgw: Any,
        bucket: str,
        postgres: Any,
        dsn: str,
        sim: UpstreamSim,
        topic: str,
        root: Path,
    ) -> None:
        self.spec = spec
        self.broker, self.rgw, self.postgres, self.sim = broker, rgw, postgres, sim
        self.topic = topic
        self.schedule = draw_schedule(spec)
        self.settings = settings_for(
            broker=broker,
            topic=topic,
            tmp_path=root,
            rgw=rgw,
            bucket=bucket,
            group_id=f"g-{topic}",
            upstreams={UPSTREAM: sim.url},
            audit={
                "spool": {
                    "path": root / "spool",
                    "free_disk_floor_bytes": 0,
                    "drain_max_backoff_s": 2.0,
                }
            },
        )
        env = os.environ | {"NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": rgw.secret_key}
        self.instances = [Instance(i, self.settings, dsn, root, env) for i in range(3)]
        self.log = RunLog(spec.seed, asdict(spec), [asdict(f) for f in self.schedule])
        self.load = steady_load(broker.bootstrap, topic, spec.rate_per_s, seed=spec.seed)
        self._t0 = 0.0
        self.t0_wall = 0.0  # time.time() at the start of the fault schedule

    def _count(self, kind: str) -> None:
        self.log.injected[kind] = self.log.injected.get(kind, 0) + 1

    async def _target(self, fault: Fault) -> Instance:
        """The fault's slot if it runs, else slot 0 (always a member, except mid-restart)."""
        inst = self.instances[fault.slot]
        return inst if inst.running else self.instances[0]

    async def _apply(self, fault: Fault) -> None:
        await asyncio.sleep(max(0.0, self._t0 + fault.at_s - time.monotonic()))  # the schedule
        note = lambda text: self.log.note(self._t0, text)  # noqa: E731
        if fault.after_ready_s is not None:
            await self._ready(self.instances[fault.slot], fault.after_ready_s)
        if fault.kind in ("sigkill", "sigterm"):
            inst = await self._target(fault)
            async with inst.lock:
                if not inst.running:
                    note(f"{fault.kind} skipped: slot {inst.slot} is not running")
                    return
                sig = signal.SIGKILL if fault.kind == "sigkill" else signal.SIGTERM
                code = await inst.signal(sig)
                self._count(fault.kind)
                note(f"{fault.kind} slot {inst.slot} -> exit {code}")
                await asyncio.sleep(fault.hold_s)  # the drawn restart delay
                await inst.start()
                note(f"restarted slot {inst.slot}")
        elif fault.kind == "join":
            inst = self.instances[fault.slot]
            async with inst.lock:
                await inst.start()
            self._count("join")
            note(f"slot {fault.slot} joins")
        elif fault.kind == "leave":
            inst = self.instances[fault.slot]
            async with inst.lock:
                code = await inst.signal(signal.SIGTERM)
            self._count("leave")
            note(f"slot {fault.slot} leaves -> exit {code}")
        elif fault.kind in ("rgw_down", "pg_restart", "broker_restart"):
            # SIGKILL for RGW and the broker (what survives is what they made durable), a
            # clean stop for PostgreSQL; each started again after the drawn outage.
            down, up, what = {
                "rgw_down": (self.rgw.kill_rgw, self.rgw.start_rgw, "rgw"),
                "pg_restart": (self.postgres.stop, self.postgres.start, "postgres"),
                "broker_restart": (self.broker.kill, self.broker.up, f"broker {self.broker.name}"),
            }[fault.kind]
            await asyncio.to_thread(down)
            self._count(fault.kind)
            note(f"{what} down")
            await asyncio.sleep(fault.hold_s)
            await asyncio.to_thread(up)
            note(f"{what} up")
        elif fault.kind == "disk_full":
            inst = self.instances[fault.slot]
            if not inst.spool_mounted:
                note("disk_full skipped: the spool is not on its own tmpfs (needs root)")
                return
            ballast = inst.spool / "ballast"
            filled = await asyncio.to_thread(_fill, ballast)
            self._count("disk_full")
            note(f"slot {inst.slot} spool disk filled ({filled} bytes of ballast, 0 free)")
            await asyncio.sleep(fault.hold_s)
            ballast.unlink(missing_ok=True)
            note(f"slot {inst.slot} spool disk freed")
        elif fault.kind == "chaos":
            self.sim.config.apply_patch(CHAOS[fault.chaos])
            self._count(f"chaos_{fault.chaos}")
            note(f"chaos {fault.chaos} on")
            await asyncio.sleep(fault.hold_s)
            self.sim.config.apply_patch({k: getattr(BASELINE, k) for k in CHAOS[fault.chaos]})
            note(f"chaos {fault.chaos} off")

    async def _ready(self, inst: Instance, then_s: float) -> None:
        """Until the slot's current run says it is ready (it joins the group next), then
        ``then_s`` more."""

        async def ready() -> bool:
            return inst.running and "netscope ready" in inst.log.read_text(errors="replace")

        await wait_for(ready, timeout_s=60, what=f"slot {inst.slot} ready")
        await asyncio.sleep(then_s)  # the stage's offset, part of the schedule

    async def run(self) -> dict[int, int]:
        """Load + faults, then heal, settle and stop; returns the produced ends."""
        first = self.instances[0]
        if any(f.kind == "disk_full" for f in self.schedule) and not first.mount_spool():
            self.log.note(time.monotonic(), "no tmpfs for slot 0's spool: disk_full skipped")
        async with httpx.AsyncClient() as http:
            try:
                await first.start()
                self._t0 = time.monotonic()
                self.load.start()

                async def processing() -> bool:
                    got = await first.scrape(http)
                    return bool(got and got.get("netscope_audit_records_total", 0) > 0)

                await wait_for(processing, timeout_s=60, what="first instance auditing")
                self._t0, self.t0_wall = time.monotonic(), time.time()
                tasks = [asyncio.create_task(self._apply(f)) for f in self.schedule]
                await asyncio.sleep(self.spec.load_s)  # the load phase's length
                await asyncio.gather(*tasks)  # every fault healed by its own task
                self.log.load_s = time.monotonic() - self._t0
                try:
                    await self._settle(http)
                except AssertionError as exc:  # judged anyway: the report says what is missing
                    self.log.settle_error = str(exc)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.rgw.start_rgw)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.postgres.start)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.broker.up)
                for inst in self.instances:
                    if inst.running:
                        assert inst.proc is not None
                        inst._signalled = inst.proc
                        inst.proc.kill()
                        await inst.proc.wait()
                    inst.unmount_spool()
                self.log.exits = {i.slot: i.exits for i in self.instances}
        return dict(self.load.ends)

    async def _settle(self, http: httpx.AsyncClient) -> None:
        started = time.monotonic()
        self.sim.config.apply_patch(BASELINE.to_dict() | {"seed": None})
        # A host's spool is drained by that host only: every slot that ran comes back.
        for inst in self.instances:
            if inst.ever_started:
                await inst.start()
        ends = await self.load.stop()
        group = self.settings.kafka.group_id

        async def settled() -> bool:
            got = await committed_offsets(self.broker.bootstrap, group, self.topic)
            if any(got.get(p, 0) < end for p, end in ends.items()):
                return False
            for inst in self.instances:
                scraped = await inst.scrape(http) if inst.running else None
                if inst.running and (
                    scraped is None or scraped.get("netscope_audit_spool_pending_batches") != 0
                ):
                    return False
            return True

        await wait_for(
            settled,
            timeout_s=180,
            interval_s=1.0,
            what="offsets committed to the end and every spool empty",
        )
        for inst in self.instances:
            code = await inst.signal(signal.SIGTERM)
            self.log.note(self._t0, f"final SIGTERM slot {inst.slot} -> exit {code}")
        self.log.settle_s = time.monotonic() - started

    def unclean_exits(self) -> dict[int, list[int | str]]:
        """SIGTERM exits other than 0 (SIGKILL's -9 is the fault itself)."""
        bad = {
            i.slot: [c for c in i.exits if c not in (0, -signal.SIGKILL, TERM_AT_STARTUP)]
            for i in self.instances
        }
        return {slot: codes for slot, codes in bad.items() if codes}

    def crashes(self) -> list[tuple[int, int, str]]:
        """(slot, return code, log) of every exit no fault asked for."""
        return [(i.slot, code, log) for i in self.instances for code, log in i.unexpected]

    def keep_logs(self, dest: Path) -> list[str]:
        """Copy every process log to ``dest`` (pytest's tmp dirs rotate away); their paths."""
        dest.mkdir(parents=True, exist_ok=True)
        kept = []
        for inst in self.instances:
            for log in sorted(inst.dir.glob("run*.log")):
                target = dest / f"slot{inst.slot}-{log.name}"
                shutil.copyfile(log, target)
                kept.append(str(target))
        return kept

    def hung_logs(self) -> list[str]:
        return [log for inst in self.instances for log in inst.hung_logs]

    def tracebacks(self) -> list[str]:
        """Log files of the run that hold a Python traceback (a crash, not a fault)."""
        out = []
        for inst in self.instances:
            for log in sorted(inst.dir.glob("run*.log")):
                if "Traceback (most recent call last)" in log.read_text(errors="replace"):
                    out.append(str(log))
        return out


def _fill(path: Path) -> int:
    """Fill the file system holding ``path`` to its last byte; returns the ballast's size."""
    size = shutil.disk_usage(path.parent).free
    with path.open("wb") as f:
        while size > 0:
            try:
                os.posix_fallocate(f.fileno(), 0, size)
                break
            except OSError:  # rounding: a block less
                size -= 4096
    return size


def sim_for(seed: int) -> UpstreamSim:
    return UpstreamSim(SimConfig(**(BASELINE.to_dict() | {"seed": seed})), history_size=50_000)
