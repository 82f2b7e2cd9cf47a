"""Idempotency ledger throughput: claim + settle of new keys, in batches of 1, 50 and 500.

    .venv/bin/python bench/ledger_bench.py [--seconds 3] [--batches 1,50,500]
        [--dir /var/tmp] [--postgres-dsn postgresql://netscope@127.0.0.1:5432/scratch]

One batch at a time, as one gate does under load: claim N new keys (one round trip), settle
them all as completed (one round trip), repeat for ``--seconds`` after one warm-up batch.
Per (backend, batch size):

- keys/s: keys claimed and completed per wall-clock second (two row writes each);
- client CPU-ms/key: this process's user + system CPU, every thread (SQLite runs on the
  ledger's own thread), over the keys;
- server CPU-ms/key (PostgreSQL on this host only): the pool's backend process, from /proc;
- p50 claim / settle ms: latency of one round trip.

SQLite runs twice, ``synchronous=FULL`` (what the ledger uses: every commit fsynced) and
``NORMAL`` (the WAL is fsynced only at checkpoints), on a fresh file under ``--dir``: keep
it on a real disk, a tmpfs would make fsync free. PostgreSQL runs on the DSN given, which
should be a scratch database: the bench's rows use a 1970 clock and are purged afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from netscope.ledger.model import ClaimRequest, Completion, Ledger, LedgerKey, Settle
from netscope.ledger.postgres import PostgresLedger
from netscope.ledger.sqlite import SqliteLedger

CLOCK0 = 1_000_000.0  # 1970: purge(CLOCK0 + 1e6) cannot touch a real row
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    backend: str
    batch: int
    keys: int
    wall_s: float
    cpu_s: float
    server_cpu_s: float | None
    claim_ms: list[float]
    settle_ms: list[float]


async def run(
    ledger: Ledger, name: str, batch: int, seconds: float, server: ServerCpu | None
) -> Result:
    run_id = uuid.uuid4().hex[:8]
    counter = 0

    def next_batch() -> list[ClaimRequest]:
        nonlocal counter
        reqs = [
            ClaimRequest(
                LedgerKey("bench", f"{run_id}-{counter + i}"), uuid.uuid4().hex, 30.0, 3600.0
            )
            for i in range(batch)
        ]
        counter += batch
        return reqs

    async def one(now: float, claim_ms: list[float], settle_ms: list[float]) -> None:
        reqs = next_batch()
        t0 = time.perf_counter()
        claims = await ledger.claim(reqs, now)
        t1 = time.perf_counter()
        settles = [
            Settle(
                c.request.key, c.request.token, Completion("success", 200, 1, "t/0/1", now), 3600.0
            )
            for c in claims
        ]
        applied = await ledger.settle(settles, now)
        t2 = time.perf_counter()
        assert all(applied), "bench keys are new: every settle must apply"
        claim_ms.append((t1 - t0) * 1e3)
        settle_ms.append((t2 - t1) * 1e3)

    await one(CLOCK0, [], [])  # warm-up: connections, prepared statements, page cache
    claim_ms: list[float] = []
    settle_ms: list[float] = []
    keys = 0
    server0 = server.cpu_s() if server else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall0 < seconds:
        await one(CLOCK0 + 1, claim_ms, settle_ms)
        keys += batch
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    server_cpu = None
    if server and server0 is not None:
        server1 = server.cpu_s()
        server_cpu = None if server1 is None else server1 - server0
    return Result(name, batch, keys, wall, cpu, server_cpu, claim_ms, settle_ms)


class ServerCpu:
    """CPU of the PostgreSQL backend serving the ledger's one pool connection (local only)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_s(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


async def bench_sqlite(directory: Path, batches: list[int], seconds: float) -> list[Result]:
    results = []
    for synchronous in ("FULL", "NORMAL"):
        for batch in batches:
            d = Path(tempfile.mkdtemp(prefix="ledger-bench-", dir=directory))
            try:
                ledger = SqliteLedger(d / "ledger.sqlite3")
                ledger._synchronous = synchronous  # the bench's one knob the ledger hides
                await ledger.open()
                try:
                    name = f"sqlite {synchronous}"
                    results.append(await run(ledger, name, batch, seconds, None))
                finally:
                    await ledger.close()
            finally:
                shutil.rmtree(d, ignore_errors=True)
    return results


async def bench_postgres(dsn: str, batches: list[int], seconds: float) -> list[Result]:
    results = []
    for batch in batches:
        ledger = PostgresLedger(dsn, pool_min_size=1, pool_max_size=1)
        await ledger.open()
        try:
            pool = ledger._pool
            assert pool is not None
            async with pool.acquire() as conn:
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                local = await conn.fetchval(
                    "SELECT inet_server_addr() IS NULL"
                    " OR inet_server_addr() <<= '127.0.0.0/8'::inet"
                )
            server = ServerCpu(pid) if local and Path(f"/proc/{pid}").exists() else None
            results.append(await run(ledger, "postgresql", batch, seconds, server))
            await ledger.purge(CLOCK0 + 1e6)
        finally:
            await ledger.close()
    return results


def report(results: list[Result]) -> None:
    head = (
        f"{'backend':<14} {'batch':>5} {'keys':>7} {'keys/s':>9} {'client CPU-ms/key':>18} "
        f"{'server CPU-ms/key':>18} {'p50 claim ms':>13} {'p50 settle ms':>14}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        server = "-" if r.server_cpu_s is None else f"{r.server_cpu_s * 1e3 / r.keys:.3f}"
        print(
            f"{r.backend:<14} {r.batch:>5} {r.keys:>7} {r.keys / r.wall_s:>9,.0f} "
            f"{r.cpu_s * 1e3 / r.keys:>18.3f} {server:>18} "
            f"{statistics.median(r.claim_ms):>13.2f} {statistics.median(r.settle_ms):>14.2f}"
        )


def _fstype(path: Path) -> str:
    out = subprocess.run(
        ["df", "--output=fstype", str(path)], capture_output=True, text=True, check=False
    ).stdout.split()
    return out[-1] if out else "?"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per case")
    parser.add_argument("--batches", default="1,50,500")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="SQLite files here")
    parser.add_argument("--postgres-dsn", help="a scratch PostgreSQL database (optional)")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, SQLite dir {args.dir} "
        f"({_fstype(args.dir)}), {args.seconds:g} s per case\n"
    )
    results: list[Result] = []
    if not args.no_sqlite:
        results += await bench_sqlite(args.dir, batches, args.seconds)
    if args.postgres_dsn:
        results += await bench_postgres(args.postgres_dsn, batches, args.seconds)
    report(results)


if __name__ == "__main__":
    asyncio.run(main())
