"""Where one NetScope process spends its CPU at saturation: the pipeline in-process, profiled.

    .venv/bin/python bench/pipeline_profile.py [--messages 20000] [--cprofile 40]

Runs the real Service (pipeline, API, hub) in this process on uvloop, against a tansu broker
and the upstream simulator (its own process, 5 ms), with the audit in a local folder so that
only NetScope's own work is measured. Prints throughput, CPU-ms per message, the garbage
collector's share and the outcomes; with ``--cprofile N``, the N functions with the most own
time (cProfile slows everything about 2x: compare shares, not absolute times), then the
same time summed by area (HTTP client, Kafka client, validation, audit, guards, ...), so what
NetScope adds can be told from what the baseline pays too.

The same tuning as ``netscope run`` applies (gc.freeze and the young-generation threshold);
``--default-gc`` keeps CPython's defaults, to see what that tuning buys.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import make_traffic, metric_sum, produce, settings_for, wait_for

from netscope import service as service_module
from netscope.devservices.base import free_port
from netscope.devservices.kafka import BrokerConfig, TansuBroker
from netscope.service import Service

# First match wins; a builtin (C function) counts for the area of whoever called it.
AREAS = (
    ("HTTP client (baseline pays it too)", ("aiohttp", "yarl", "multidict", "aiohappyeyeballs")),
    ("Kafka client (baseline pays it too)", ("aiokafka", "kafka/")),
    ("validation", ("netscope/contract/request", "netscope/contract/traceparent", "pydantic")),
    ("idempotency ledger", ("netscope/ledger", "sqlite3", "asyncpg", "uuid")),
    ("pipeline: fetch, workers, order, handler, commits",
     ("netscope/pipeline", "netscope/ingest", "netscope/handler", "netscope/audit/commit")),
    ("audit record and batches", ("netscope/contract/records", "netscope/audit")),
    ("guards: deadline, limiter, breaker, bulkhead, retry",
     ("netscope/outbound", "netscope/resilience")),
    ("metrics, logs and event hub",
     ("netscope/observability", "netscope/api", "netscope/status", "prometheus_client")),
    ("asyncio", ("asyncio", "uvloop")),
)


def _area(filename: str) -> str:
    for name, marks in AREAS:
        if any(mark in filename for mark in marks):
            return name
    return "other"


def print_areas(stats: pstats.Stats) -> None:
    """Own time summed by area; a C builtin's time goes to its callers' areas, by edge time."""
    totals: Counter[str] = Counter()
    table = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, tottime, _, callers) in table.items():
        if filename != "~":
            totals[_area(filename)] += tottime
            continue
        edge_total = sum(edge[2] for edge in callers.values()) or 1.0
        for (caller_file, _, _), edge in callers.items():
            totals[_area(caller_file)] += tottime * edge[2] / edge_total
    grand = sum(totals.values())
    print(f"own time by area ({grand:.2f} s profiled):")
    for name, seconds in totals.most_common():
        print(f"  {seconds / grand:6.1%}  {name}")


class GcClock:
    """Time spent in the collector, from gc.callbacks."""

    def __init__(self) -> None:
        self.runs = 0
        self.seconds = 0.0
        self._t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.runs += 1
            self.seconds += time.perf_counter() - self._t0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=4096)
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    parser.add_argument("--default-gc", action="store_true")
    args = parser.parse_args()
    n = args.messages
    work = Path(tempfile.mkdtemp(prefix="netscope-profile-"))
    broker = TansuBroker(BrokerConfig(data_dir=work / "broker", port=free_port()))
    sim_port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "netscope", "upstream-sim", "--port",
                            str(sim_port), "--latency-ms", "5"], stdout=subprocess.DEVNULL)
    try:
        broker.up()
        await broker.create_topic("profile", 4)
        await produce(broker.bootstrap, "profile",
                      make_traffic(n, upstreams=["payments"], keys=args.keys))
        settings = settings_for(
            broker=broker, topic="profile", tmp_path=work,
            upstreams={"payments": f"http://127.0.0.1:{sim_port}"},
            pipeline={"max_in_flight": 256, "queue_depth": 4000, "start_paused": True},
            upstream_overrides={"bulkhead": {"max_concurrent": 100}},
            audit={"batch_max_delay_s": 0.25},
        )
        service = Service(settings)
        await service.start()
        pipeline = service.pipeline
        run = asyncio.create_task(pipeline.run())
        await wait_for(
            lambda: bool(pipeline.status().kafka.assigned), timeout_s=60, what="assignment"
        )
        if not args.default_gc:
            service_module._tune_gc()
        gc_clock = GcClock()
        profiler = cProfile.Profile() if args.cprofile else None
        cpu0, t0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        pipeline.set_ingest_rate(None)  # release
        await wait_for(lambda: pipeline.processed >= n, timeout_s=600, interval_s=0.05,
                       what="the backlog")
        if profiler:
            profiler.disable()
            if os.environ.get("PROFILE_DUMP"):
                profiler.dump_stats(os.environ["PROFILE_DUMP"])
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        outcomes = Counter({
            sample.labels["outcome"]: int(sample.value)
            for family in pipeline.metrics.registry.collect() for sample in family.samples
            if sample.name == "netscope_requests_total" and sample.value
        })
        pipeline.request_stop()
        await run
        await service.stop()
        status = Path("/proc/self/status").read_text().splitlines()
        rss = {line.split(":")[0]: int(line.split()[1]) // 1024 for line in status
               if line.startswith(("VmRSS", "VmHWM"))}
        print(f"memory: {rss['VmRSS']} MB resident at the end, peak {rss['VmHWM']} MB")
        print(f"{n} messages: {n / elapsed:.0f} msg/s, {cpu / n * 1e3:.3f} CPU-ms per message, "
              f"loop busy {cpu / elapsed:.0%}, GC {gc_clock.runs} passes = "
              f"{gc_clock.seconds / cpu:.1%} of the CPU; outcomes {dict(outcomes)}; "
              f"requests_total {metric_sum(service, 'netscope_requests_total'):.0f}")
        reg = pipeline.metrics.registry
        trips = reg.get_sample_value("netscope_ledger_round_trip_seconds_count", {"op": "claim"})
        if trips:
            took = reg.get_sample_value("netscope_ledger_round_trip_seconds_sum", {"op": "claim"})
            claims = metric_sum(service, "netscope_ledger_claims_total")
            print(f"ledger: {trips:.0f} round trips, {claims / trips:.0f} claims each, "
                  f"{1000 * took / trips:.1f} ms each on average")
        if profiler:
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(args.cprofile)
            print_areas(stats)
    finally:
        sim.terminate()
        sim.wait(10)
        broker.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    uvloop.run(main())
