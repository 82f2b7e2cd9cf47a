"""End-to-end benchmark: NetScope (every guarantee on) next to a minimal baseline and a peer.

    .venv/bin/python bench/pipeline_bench.py [--messages 20000] [--workers 1,2] [--rounds 3]

All consume the same backlog (4096 distinct keys by default, so per-key order does not cap
concurrency) from a real tansu broker and call the same upstream simulator (5 ms latency, its
own process). The baseline is "consume -> call -> commit" and nothing else: no validation, no
breaker, no audit. The peer (bench/peer.py) is the same job as a user writes it by hand
without NetScope: the baseline plus JSONL audit batches PUT to the same RGW bucket (500
records or 1 s, boto3 in a thread), offsets committed after the PUT; no breaker, retry or
order. Baseline and peer each run in a process of their own. NetScope runs as `netscope run`
processes writing its audit to the same RGW; they start paused (`pipeline.start_paused`) and
are released together once the group has settled, and nothing polls them during the run.
Every NetScope run must end with one successful audit record per message (a rejected or
short-circuited message is cheap and would flatter it); the peer's audit must likewise hold
one record per message, answered 200.

Rounds (baseline, peer, then each NetScope size) are interleaved because this machine's speed
drifts between runs; the table gives medians, with ratios taken within each round:

- throughput, end to end: messages / s from release (first fetch for the baseline and the
  peer) to all offsets committed. It includes each side's start and finish: NetScope's last
  audit batch waits its age (`audit.batch_max_delay_s`) and a PUT before its commit, ~0.4 s
  of a 5 s run; the peer's waits up to 1 s and a PUT;
- throughput, steady: messages / s while the committed offsets go from 10 % to 90 % of the
  backlog, both sides watched the same way (the broker asked every 50 ms): the rate a
  long-running consumer sustains, start-up and the last batch left out;
- vs base, vs peer: each run's rate over the baseline's and the peer's of the same round;
- CPU-ms / msg: user + system CPU of that side's process(es) during the run, over the
  backlog. The figure that survives machine drift (the simulator, broker and RGW are not in it);
- overhead p50/p99: NetScope's own time per message (latency minus queueing and time inside
  upstream attempts), computed exactly from the audit records;
- consume -> audit-durable p99: from the netscope_audit_durable_latency_seconds histogram
  (bucket-interpolated, as Prometheus' histogram_quantile does). One observation per batch,
  from its oldest record's fetch to the batch durable; the peer reports the same per batch
  (fetch of the oldest record -> PUT done), and its p99 is exact over its batches;
- peak RSS of each process (VmHWM), the largest seen.

Per phase it also prints each process's share of a core (NetScope, simulator, broker, RGW),
which says whether the machine or NetScope was the limit. ``--profile PATH`` records py-spy
collapsed stacks of the NetScope processes.

``--ledgers none,sqlite,postgresql`` runs each NetScope size once per idempotency-ledger
backend in the same round (default: sqlite, the shipped default), each on a fresh ledger (its
own SQLite file, its own PostgreSQL database on a local server started here), so the ledger's
cost reads as the ratio of those rows. PostgreSQL's server CPU is counted with the services.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import make_traffic, produce, read_audit

from netscope.config import AuditConfig
from netscope.devservices.base import free_port
from netscope.devservices.ceph import CephRgw, RgwConfig
from netscope.devservices.kafka import BrokerConfig, TansuBroker
from netscope.devservices.postgres import Postgres, PostgresConfig

# The same bounds for the baseline and for each NetScope worker, as an operator deploys them
# (NetScope's defaults). The baseline is CPU-bound on its one loop: more would not help it.
CONCURRENCY = 256  # messages in progress
CONNECTIONS = 100  # concurrent calls: the baseline's pool; NetScope's bulkhead and pool
QUEUE_DEPTH = int(os.environ.get("BENCH_QUEUE_DEPTH", 2000))  # NetScope's default
ADMIN_TOKEN = "bench-admin-token"


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _sample(text: str, name: str) -> float:
    """Sum of a metric's samples in a Prometheus text exposition."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((f"{name} ", f"{name}{{")))


def _histogram_quantile(text: str, name: str, q: float) -> float:
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1]
    if total == 0:
        return float("nan")
    rank, prev_le, prev_count = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_le, prev_count = le, count
    return prev_le


async def baseline(bootstrap: str, topic: str, url: str, n: int, group: str,
                   on_start: Callable[[], None] | None = None) -> float:
    """Consume -> call -> commit, with the same concurrency bound and nothing else. Returns
    messages / s from the first fetch to the last commit."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                session_timeout_ms=6000, max_poll_records=500)
    await consumer.start()
    sem = asyncio.Semaphore(CONCURRENCY)
    done = ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as http:

        async def call(value: bytes) -> None:
            nonlocal done, ok
            async with sem:
                req = orjson.loads(value)
                path = req.get("path", "/") if isinstance(req, dict) else "/"
                try:
                    async with http.get(url + path) as resp:
                        await resp.read()
                        ok += resp.status == 200
                except Exception:
                    pass
            done += 1

        start = None
        while done < n:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            if batches and start is None:
                start = time.perf_counter()
                if on_start is not None:
                    on_start()
            tasks = [asyncio.create_task(call(r.value)) for rs in batches.values() for r in rs]
            if tasks:
                await asyncio.gather(*tasks)
                await consumer.commit()
        elapsed = time.perf_counter() - (start or time.perf_counter())
    await consumer.stop()
    print(f"  baseline: {ok} of {n} calls answered 200", file=sys.stderr, flush=True)
    if ok != n:
        raise SystemExit("baseline: not every call succeeded; the figures would mean nothing")
    return n / elapsed


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Where the machine's cores went during one phase: CPU-s per named process."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        self.t0 = time.perf_counter()

    def report(self, label: str, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Prints each process's share of a core; returns the CPU-s each one used."""
        elapsed = time.perf_counter() - self.t0
        used = {name: _cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}
        used.update(extra or {})
        parts = ", ".join(f"{name} {sec / elapsed:.0%}" for name, sec in used.items())
        print(f"  {label}: {elapsed:.1f} s; share of one core: {parts}", flush=True)
        return used


class CommitWatcher:
    """One long-lived connection asking the group's committed offsets (OffsetFetch) every
    50 ms: a new client per poll would cost the machine more than NetScope's own commits."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                          enable_auto_commit=False)
        self._topic = topic

    async def __aenter__(self) -> CommitWatcher:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def wait_for(self, ends: dict[int, int], pids: list[int]) -> list[int]:
        """Returns the NetScope processes' total resident MB, sampled every second; the
        committed total over time is kept in ``progress`` (see ``steady_rate``)."""
        tps = [TopicPartition(self._topic, p) for p in sorted(ends)]
        rss_mb: list[int] = []
        self.progress: list[tuple[float, int]] = []
        next_sample = 0.0
        while True:
            if pids and time.perf_counter() >= next_sample:
                rss_mb.append(sum(_status_kb(pid, "VmRSS") for pid in pids) // 1024)
                next_sample = time.perf_counter() + 1.0
            done = {tp.partition: await self._consumer.committed(tp) for tp in tps}
            self.progress.append((time.perf_counter(), sum(v or 0 for v in done.values())))
            if done == ends:
                return rss_mb
            await asyncio.sleep(0.05)

    def steady_rate(self, total: int, low: float = 0.1, high: float = 0.9) -> float:
        """Messages / s between the first polls showing ``low`` and ``high`` of ``total``
        committed. Interpolated inside the poll interval the threshold was crossed in."""

        def crossing(target: float) -> float:
            prev_t, prev_n = self.progress[0]
            for t, n in self.progress:
                if n >= target:
                    if n == prev_n:
                        return t
                    return prev_t + (t - prev_t) * (target - prev_n) / (n - prev_n)
                prev_t, prev_n = t, n
            raise ValueError("never reached")

        return (high - low) * total / (crossing(high * total) - crossing(low * total))


def _status_kb(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field)))


def _ledger_toml(ledger: str, work: Path, group: str, pg: Postgres | None) -> str:
    """A fresh ledger per run: the backlog's keys would otherwise all be duplicates."""
    if ledger == "none":
        return '[ledger]\nbackend = "none"\n'
    if ledger == "sqlite":
        return f'[ledger]\nbackend = "sqlite"\npath = "{work / f"{group}-ledger.sqlite3"}"\n'
    assert pg is not None
    dsn = pg.create_database(group.replace("-", "_"))
    return f'[ledger]\nbackend = "postgresql"\ndsn = "{dsn}"\n'


def _config(path: Path, *, bootstrap: str, topic: str, rgw: CephRgw, sim_url: str,
            spool: Path, port: int, group: str, paused: bool = False,
            ledger_toml: str = "") -> None:
    path.write_text(f"""
instance_id = "bench-{port}"
[kafka]
bootstrap_servers = "{bootstrap}"
requests_topic = "{topic}"
dead_letter_topic = "{topic}.dlq"
group_id = "{group}"
session_timeout_s = 6
[pipeline]
max_in_flight = {CONCURRENCY}
queue_depth = {QUEUE_DEPTH}
start_paused = {"true" if paused else "false"}
[api]
port = {port}
admin_token = "{ADMIN_TOKEN}"
[logging]
level = "warning"
format = "console"
[audit]
backend = "s3"
prefix = "audit-{group}"
[audit.s3]
endpoint = "{rgw.endpoint}"
bucket = "{rgw.bucket}"
access_key_id = "{rgw.access_key}"
secret_access_key = "{rgw.secret_key}"
[audit.spool]
path = "{spool}"
free_disk_floor_bytes = 0
[upstreams.payments]
base_url = "{sim_url}"
max_connections = {CONNECTIONS}
[upstreams.payments.bulkhead]
max_concurrent = {CONNECTIONS}
{ledger_toml}""")


async def netscope_run(
    workers: int, *, bootstrap: str, topic: str, rgw: CephRgw, sim_url: str, work: Path,
    ends: dict[int, int], group: str, services: dict[str, int], profile: Path | None = None,
    ledger_toml: str = "",
) -> dict[str, float]:
    procs = []
    spies: list[subprocess.Popen[bytes]] = []
    ports = []
    for i in range(workers):
        port = free_port()
        cfg = work / f"{group}-{i}.toml"
        _config(cfg, bootstrap=bootstrap, topic=topic, rgw=rgw, sim_url=sim_url,
                spool=work / f"{group}-spool-{i}", port=port, group=group, paused=True,
                ledger_toml=ledger_toml)
        procs.append(subprocess.Popen([sys.executable, "-m", "netscope", "run", "-c", str(cfg)],
                                      stdout=subprocess.DEVNULL))
        ports.append(port)
        if profile is not None:
            # Collapsed stacks (flamegraph.pl / speedscope input); py-spy costs some CPU too.
            spies.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                 "--rate", "200", "--nonblocking", "--pid", str(procs[-1].pid), "--output",
                 f"{profile}.x{workers}-{i}.txt"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    # Every worker starts paused (pipeline.start_paused) and is released once the group has
    # settled, so the run measures the workers consuming together, not one of them alone
    # before a rebalance; nothing polls NetScope during the run (a 20 Hz /metrics scrape
    # costs it a few % of its CPU), only the broker for the group's committed offsets.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        while True:
            assigned = []
            for port in ports:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                        text = await resp.text()
                    assigned.append(_sample(text, "netscope_assigned_partitions"))
                except aiohttp.ClientError:
                    assigned.append(0.0)
            if all(assigned) and sum(assigned) == len(ends):
                break
            await asyncio.sleep(0.1)
        meter = CpuMeter({**{f"netscope-{i}": p.pid for i, p in enumerate(procs)}, **services})
        start = time.perf_counter()
        for port in ports:
            async with http.post(f"http://127.0.0.1:{port}/admin/throttle", headers=admin,
                                 json={"rate_per_s": None}) as resp:
                resp.raise_for_status()
        async with CommitWatcher(bootstrap, group, topic) as watcher:
            rss_series = await watcher.wait_for(ends, [p.pid for p in procs])
        elapsed = time.perf_counter() - start
        steady = watcher.steady_rate(sum(ends.values()))
        cpu = meter.report(f"netscope x{workers}")
        print(f"  netscope x{workers}: resident MB, each second: {rss_series}", flush=True)
        durable_p99 = []
        for port in ports:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            durable_p99.append(
                _histogram_quantile(text, "netscope_audit_durable_latency_seconds", 0.99)
            )
    rss = []
    for proc in procs:
        rss.append(_status_kb(proc.pid, "VmHWM") / 1024)
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(60)
    for spy in spies:
        spy.wait(30)
    n = sum(ends.values())
    cpu_s = sum(sec for name, sec in cpu.items() if name.startswith("netscope-"))
    return {"throughput": n / elapsed, "steady": steady, "durable_p99_s": max(durable_p99),
            "rss_mb": max(rss), "cpu_ms": 1000 * cpu_s / n}


async def peer_run(*, bootstrap: str, topic: str, rgw: CephRgw, sim_url: str,
                   ends: dict[int, int], group: str, services: dict[str, int]) -> dict[str, float]:
    """The hand-written peer (bench/peer.py) in its own process, timed like NetScope: from its
    first fetch to all offsets committed, as the broker reports them."""
    n = sum(ends.values())
    async with CommitWatcher(bootstrap, group, topic) as watcher:
        child = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).with_name("peer.py")), "--bootstrap", bootstrap,
            "--topic", topic, "--group", group, "--upstream", f"payments={sim_url}",
            "--s3-endpoint", rgw.endpoint, "--bucket", rgw.bucket, "--access-key",
            rgw.access_key, "--secret-key", rgw.secret_key, "--prefix", f"audit-{group}",
            "--stop-after", str(n), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        assert child.stdin is not None and child.stdout is not None
        if not await child.stdout.readline():  # "start": its first batch is in
            raise SystemExit(f"peer exited early ({await child.wait()})")
        start = time.perf_counter()
        meter = CpuMeter({"peer": child.pid, **services})
        # No retries: a failed PUT ends it (a failed call is audited), and the offsets would
        # never come.
        watch, died = (asyncio.create_task(watcher.wait_for(ends, [])),
                       asyncio.create_task(child.wait()))
        await asyncio.wait({watch, died}, return_when=asyncio.FIRST_COMPLETED)
        if not watch.done():
            watch.cancel()
            raise SystemExit(f"peer exited before committing the backlog ({died.result()})")
        died.cancel()
        elapsed = time.perf_counter() - start
    line = await child.stdout.readline()  # per batch: consume -> durable s; then it waits
    cpu = meter.report("peer")
    rss = _status_kb(child.pid, "VmHWM") / 1024
    child.stdin.close()
    if await child.wait() != 0 or not line:
        raise SystemExit("peer failed")
    durable = orjson.loads(line)
    records = await read_audit(_audit_cfg(rgw, group))
    statuses = Counter(r.get("status") or r.get("error") for r in records)
    print(f"  peer: {len(records)} audit records in {len(durable)} batches, statuses "
          f"{dict(statuses)}", flush=True)
    once = {(r["partition"], r["offset"]) for r in records}
    if (len(records) != n or len(once) != n or len({r.get("request_id") for r in records}) != n
            or statuses[200] != n):
        raise SystemExit(f"peer: expected {n} records answered 200, each once")
    return {"throughput": n / elapsed, "steady": watcher.steady_rate(n),
            "durable_p99_s": _quantile(durable, 0.99), "rss_mb": rss,
            "cpu_ms": 1000 * cpu["peer"] / n}


def _audit_cfg(rgw: CephRgw, group: str) -> AuditConfig:
    return AuditConfig(backend="s3", prefix=f"audit-{group}", s3={
        "endpoint": rgw.endpoint, "bucket": rgw.bucket, "access_key_id": rgw.access_key,
        "secret_access_key": rgw.secret_key})


def _check_outcomes(label: str, records: list[dict], expected: int) -> None:
    """A throughput figure only counts if every message was really called and succeeded: a
    rejected or short-circuited message is cheap and would flatter the run."""
    outcomes = Counter(r["outcome"] for r in records)
    print(f"  {label}: {len(records)} audit records, outcomes {dict(outcomes)}", flush=True)
    failed = Counter(a["error_class"] or a["status"] for r in records for a in r["attempts"]
                     if a["error_class"] or (a["status"] or 0) >= 400)
    if failed:
        print(f"  {label}: failed attempts by error class / status: {dict(failed)}", flush=True)
    if len(records) != expected or outcomes["success"] != expected:
        raise SystemExit(f"{label}: expected {expected} successes, got {dict(outcomes)}")


def _overheads_ms(records: list[dict]) -> list[float]:
    """NetScope's own time: latency minus key/slot queueing minus time in upstream attempts."""
    return [
        1000 * (r["latency_s"] - r.get("queued_s", 0.0)
                - sum(a["duration_s"] + (a.get("retry_delay_s") or 0) for a in r["attempts"]))
        for r in records if r["attempts"]
    ]


async def nominal(rate: float, seconds: float, *, broker: TansuBroker, rgw: CephRgw,
                  sim_url: str, work: Path) -> dict[str, float]:
    """Latency at a steady, sub-saturation rate: what an on-call sees on a normal day."""
    from netscope.tools.loadgen import LoadgenConfig, run_loadgen

    topic, group = "bench-nominal", "netscope-nominal"
    await broker.create_topic(topic, 4)
    port = free_port()
    cfg = work / "nominal.toml"
    _config(cfg, bootstrap=broker.bootstrap, topic=topic, rgw=rgw, sim_url=sim_url,
            spool=work / "nominal-spool", port=port, group=group)
    proc = subprocess.Popen([sys.executable, "-m", "netscope", "run", "-c", str(cfg)],
                            stdout=subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            report = await run_loadgen(LoadgenConfig(
                bootstrap=broker.bootstrap, topic=topic, rate_per_s=rate, duration_s=seconds,
                upstreams={"payments": 1.0}))
            records: list[dict] = []
            for _ in range(600):
                records = await read_audit(_audit_cfg(rgw, group))
                if len(records) >= report.sent:
                    break
                await asyncio.sleep(0.1)
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
        rss = _status_kb(proc.pid, "VmHWM") / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    over = _overheads_ms(records)
    return {
        "throughput": report.actual_rate_per_s,
        "ovh_p50_ms": _quantile(over, 0.5),
        "ovh_p99_ms": _quantile(over, 0.99),
        "durable_p99_s": _histogram_quantile(text, "netscope_audit_durable_latency_seconds", 0.99),
        "rss_mb": rss,
    }


async def main() -> None:
    if sys.argv[1:2] == ["--baseline-child"]:
        bootstrap, topic, url, n, group = sys.argv[2:7]
        rate = await baseline(bootstrap, topic, url, int(n), group,
                              on_start=lambda: print("start", flush=True))
        print(rate, flush=True)
        # Alive until the parent has read this process's CPU time.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--nominal-rate", type=float, default=200.0)
    parser.add_argument("--nominal-seconds", type=float, default=20.0)
    parser.add_argument("--skip-nominal", action="store_true")
    parser.add_argument("--rounds", type=int, default=3,
                        help="baseline and NetScope runs, interleaved; medians are printed")
    parser.add_argument("--keys", type=int, default=4096,
                        help="distinct Kafka keys (order is kept per key: few keys = little "
                             "concurrency, and uneven partitions for a second worker)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write py-spy collapsed stacks of each NetScope process here")
    parser.add_argument("--ledgers", default="sqlite",
                        help="idempotency-ledger backends to run NetScope with, comma-separated"
                             " (none, sqlite, postgresql); one row each")
    args = parser.parse_args()
    ledgers = [name.strip() for name in args.ledgers.split(",")]
    if unknown := set(ledgers) - {"none", "sqlite", "postgresql"}:
        parser.error(f"--ledgers: unknown {sorted(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="netscope-bench-"))
    broker = TansuBroker(BrokerConfig(data_dir=work / "broker", port=free_port()))
    rgw = CephRgw(RgwConfig(data_dir=work / "rgw", rgw_port=free_port(), mon_port=free_port()))
    sim_port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "netscope", "upstream-sim", "--port",
                            str(sim_port), "--latency-ms", "5"], stdout=subprocess.DEVNULL)
    sim_url = f"http://127.0.0.1:{sim_port}"
    runs: dict[str, list[dict[str, float]]] = {}
    pg = None
    if "postgresql" in ledgers:
        work.chmod(0o711)  # postgres runs as its own OS user when we are root: let it in
        pg = Postgres(PostgresConfig(data_dir=work / "postgres", port=free_port()))
    try:
        broker.up()
        rgw.up()
        if pg is not None:
            pg.up()
        n = args.messages
        topic = "bench"
        await broker.create_topic(topic, 4)
        ends = await produce(broker.bootstrap, topic,
                             make_traffic(n, upstreams=["payments"], keys=args.keys))
        print(f"  backlog per partition: {ends}", flush=True)
        services = {"sim": sim.pid, "broker": broker.pid() or 0,
                    **{f"rgw-{role}": pid for role, pid in rgw.pids().items()}}
        if pg is not None:
            services["postgres"] = pg.pid() or 0
        # The machine's speed drifts by tens of % between runs: interleave rounds and report
        # medians, ratios taken within each round.
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}", flush=True)
            # Its own process, like NetScope's: the offset watcher must not share its loop.
            child = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--baseline-child", broker.bootstrap, topic, sim_url,
                str(n), f"baseline-{rnd}", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE)
            assert child.stdin is not None and child.stdout is not None
            async with CommitWatcher(broker.bootstrap, f"baseline-{rnd}", topic) as watcher:
                if not await child.stdout.readline():  # "start": its first batch is in
                    raise SystemExit(f"baseline exited early ({await child.wait()})")
                meter = CpuMeter({"baseline": child.pid, **services})
                await watcher.wait_for(ends, [])
            line = await child.stdout.readline()  # its rate; it waits for us before exiting
            base_cpu = meter.report("baseline")["baseline"]
            base_rss = _status_kb(child.pid, "VmHWM") / 1024
            child.stdin.close()
            if await child.wait() != 0 or not line:
                raise SystemExit("baseline failed")
            base = float(line)
            base_steady = watcher.steady_rate(n)
            runs.setdefault("saturation: baseline consume->call->commit", []).append(
                {"throughput": base, "ratio": 1.0, "steady": base_steady, "steady_ratio": 1.0,
                 "cpu_ms": 1000 * base_cpu / n, "rss_mb": base_rss})
            peer = await peer_run(bootstrap=broker.bootstrap, topic=topic, rgw=rgw,
                                  sim_url=sim_url, ends=ends, group=f"peer-{rnd}",
                                  services=services)
            runs.setdefault("saturation: peer (hand-written)", []).append(
                {**peer, "ratio": peer["throughput"] / base, "peer_ratio": 1.0,
                 "steady_ratio": peer["steady"] / base_steady, "steady_peer_ratio": 1.0})
            for workers, ledger in ((int(w), led) for w in args.workers.split(",")
                                    for led in ledgers):
                group = f"netscope-{workers}w-{ledger}-{rnd}"
                label = f"netscope x{workers}" + (f" ledger={ledger}" if len(ledgers) > 1 else "")
                res = await netscope_run(workers, bootstrap=broker.bootstrap, topic=topic,
                                         rgw=rgw, sim_url=sim_url, work=work, ends=ends,
                                         group=group, services=services, profile=args.profile,
                                         ledger_toml=_ledger_toml(ledger, work, group, pg))
                records = await read_audit(_audit_cfg(rgw, group))
                _check_outcomes(label, records, n)
                over = _overheads_ms(records)
                calls = [1000 * a["duration_s"] for r in records for a in r["attempts"]]
                print(f"  {label}: upstream attempt as NetScope saw it (5 ms at the "
                      f"simulator): p50 {_quantile(calls, 0.5):.1f} ms, p99 "
                      f"{_quantile(calls, 0.99):.1f} ms", flush=True)
                runs.setdefault(f"saturation: {label}", []).append(
                    {**res, "ratio": res["throughput"] / base,
                     "peer_ratio": res["throughput"] / peer["throughput"],
                     "steady_ratio": res["steady"] / base_steady,
                     "steady_peer_ratio": res["steady"] / peer["steady"],
                     "ovh_p50_ms": _quantile(over, 0.5), "ovh_p99_ms": _quantile(over, 0.99)})
        if not args.skip_nominal:
            nom = await nominal(args.nominal_rate, args.nominal_seconds, broker=broker,
                                rgw=rgw, sim_url=sim_url, work=work)
            runs[f"nominal {args.nominal_rate:g} msg/s: netscope x1"] = [nom]
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(10)
        rgw.down()
        broker.down()
        if pg is not None:
            pg.down()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nNetScope pipeline benchmark: {args.messages} messages backlog ({args.keys} keys), "
          f"4 partitions, upstream 5 ms, {os.cpu_count()} cores, concurrency {CONCURRENCY}, "
          f"audit on Ceph RGW; median of {args.rounds} round(s), [min-max] of the ratio")
    print(f"{'':44} {'end to end':>42} {'steady (10-90 % committed)':>42}")
    print(f"{'run':44} {'msg/s':>6} {'vs base':>17} {'vs peer':>17} {'msg/s':>6} "
          f"{'vs base':>17} {'vs peer':>17} {'CPU-ms/msg':>10} {'ovh p50 ms':>10} "
          f"{'ovh p99 ms':>10} {'durable p99 s':>13} {'peak RSS MB':>11}")

    def med(rs: list[dict[str, float]], key: str, f: str) -> str:
        values = [r[key] for r in rs if key in r]
        agg = max if key == "rss_mb" else statistics.median  # a peak is a peak
        return format(agg(values), f) if values else "-"

    def ratio(rs: list[dict[str, float]], key: str) -> str:
        if key not in rs[0]:
            return "-"
        ratios = [r[key] for r in rs if key in r]
        return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"

    for name, rs in runs.items():
        print(f"{name:44} {med(rs, 'throughput', '6.0f'):>6} {ratio(rs, 'ratio'):>17} "
              f"{ratio(rs, 'peer_ratio'):>17} {med(rs, 'steady', '6.0f'):>6} "
              f"{ratio(rs, 'steady_ratio'):>17} {ratio(rs, 'steady_peer_ratio'):>17} "
              f"{med(rs, 'cpu_ms', '10.3f'):>10} {med(rs, 'ovh_p50_ms', '10.2f'):>10} "
              f"{med(rs, 'ovh_p99_ms', '10.2f'):>10} {med(rs, 'durable_p99_s', '13.3f'):>13} "
              f"{med(rs, 'rss_mb', '11.0f'):>11}")


if __name__ == "__main__":
    # The same event loop as `netscope run` (uvloop), for the baseline too.
    uvloop.run(main())
