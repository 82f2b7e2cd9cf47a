"""What the live dashboard's history costs: the server per event, and the page at 1,000 events/s.

    .venv/bin/python bench/dashboard_bench.py [--events 200000] [--rate 1000] [--seconds 30]
        [--skip-page]

1. **Server, per event** (in this process, no socket): a realistic mix of bus events (calls
   with one to three attempts, 5 % failing, retries, an audit batch per 100 calls, the
   one-second status sample) published through an ``EventBus`` with, in turn: no listener;
   the history alone; the recent-calls memory alone; the whole hub (history, memory, the
   10 s tile windows) with nobody connected. CPU-µs per event is ``time.process_time`` over
   the run, minus the bare bus. Then the read side: building and serialising a 5 min, 15 min
   and 1 h snapshot and a tail, and the memory both keep (``History.memory_bytes``;
   tracemalloc for the records the memory holds).
2. **Page, at ``--rate`` events/s for ``--seconds``**: the real hub under uvicorn in this
   process, fed by a publisher task, and the real page in headless Chromium. Page CPU is the
   renderer main thread's busy time (CDP ``Performance.getMetrics``: TaskDuration, with
   ScriptDuration, LayoutDuration and RecalcStyleDuration) over the wall time of the run, as
   a share of one core; also its JS heap, chart draws, the feed's rows shown and sampled out,
   events the page's socket dropped, and this process's CPU (publisher, hub, uvicorn).

Nothing here is a test: it prints figures (docs/performance.md, "Dashboard").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry

from netscope.api.history import History
from netscope.api.hub import EventHub
from netscope.api.recent import RECENT_CALLS, RecentCalls
from netscope.contract.outcomes import ErrorClass
from netscope.contract.records import Attempt, AuditRecord, KafkaPosition, Outcome
from netscope.observability.events import (
    AuditBatchDurable,
    AuditTarget,
    CallCompleted,
    EventBus,
    RetryScheduled,
    StatusSampled,
    WriteResult,
)
from netscope.resilience.retry import RetryReason
from netscope.status import KafkaStatus, PipelineStatus, SpoolStatus

UPSTREAMS = ("payments", "geo", "ledger")


def events(n: int, *, rate: float, seed: int = 7) -> Iterator[Any]:
    """``n`` call events at ``rate`` a second (their times spread as real traffic would), with
    the retries, audit batches and status samples that come with them."""
    rand = random.Random(seed)
    start = time.time()
    for i in range(n):
        now = start + i / rate
        upstream = UPSTREAMS[i % len(UPSTREAMS)]
        trace = f"{rand.getrandbits(128):032x}"
        failed = rand.random() < 0.05
        tries = rand.choice((1, 1, 1, 2, 3)) if failed else 1
        attempts = [
            Attempt(k, now, 0.01, 503 if failed or k < tries else 200, None,
                    0.05 if k < tries else None)
            for k in range(1, tries + 1)
        ]  # fmt: skip
        if failed and rand.random() < 0.3:
            attempts[-1] = Attempt(tries, now, 2.0, None, ErrorClass.TIMEOUT_READ)
        outcome = (
            Outcome.TIMEOUT_READ
            if attempts[-1].error_class
            else Outcome.HTTP_ERROR
            if failed
            else Outcome.SUCCESS
        )
        record = AuditRecord(
            request_id=f"req-{i}", idempotency_key=f"req-{i}", trace_id=trace, span_id=None,
            upstream=upstream, method="POST", path="/v1/charge",
            kafka=KafkaPosition("requests", i % 4, i, int(now * 1000)), outcome=outcome,
            received_at=now - 0.02, completed_at=now, latency_s=rand.lognormvariate(-4, 0.6),
            status=attempts[-1].status, attempts=attempts, instance_id="bench",
        )  # fmt: skip
        for k in range(1, tries):
            yield RetryScheduled(upstream, record.request_id or "", trace, k,
                                 RetryReason.RETRYABLE, "retryable status 503", 0.05)  # fmt: skip
        yield CallCompleted(record, upstream_time_s=0.02, created=now)
        if i % 100 == 99:
            yield AuditBatchDurable("requests", i % 4, 100, 60_000, AuditTarget.STORE,
                                    WriteResult.CREATED, 0.02, now - 0.3)  # fmt: skip
        if i % int(rate) == 0:
            yield StatusSampled(status(i))


def status(i: int) -> PipelineStatus:
    return PipelineStatus(
        instance_id="bench", queue_depth=i % 500, queue_capacity=2000, in_flight=i % 64,
        processed=i, paused_reason=None, ingest_rate_per_s=math.inf, audit_degraded=False,
        audit_store="bench", spool=SpoolStatus(),
        kafka=KafkaStatus(True, True, True, "", tuple(("requests", p) for p in range(4)),
                          {("requests", p): (i * (p + 1)) % 300 for p in range(4)}),
        breakers=dict.fromkeys(UPSTREAMS, "closed"),
    )  # fmt: skip


class ReplayClock:
    """The history's clock during a replay: the time of the event being published (listens
    first), so an hour of event time fills an hour of slots in a few seconds."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def on_event(self, ev: Any) -> None:
        self.t = ev.created


def cpu_per_event(evs: list[Any], setup: Callable[[EventBus, ReplayClock], Any]) -> float:
    bus = EventBus()
    clock = ReplayClock()
    bus.subscribe(clock.on_event)  # in every variant, the bare one included
    keep = setup(bus, clock)
    gc.collect()
    start = time.process_time()
    publish = bus.publish
    for ev in evs:
        publish(ev)
    spent = time.process_time() - start
    del keep
    return spent / len(evs) * 1e6


def server_side(n: int, rate: float) -> None:
    print(f"## Server, per event ({n:,} calls at {rate:g}/s of event time, in process)\n")
    evs = list(events(n, rate=rate))
    calls = sum(1 for e in evs if isinstance(e, CallCompleted))
    variants: list[tuple[str, Callable[[EventBus, ReplayClock], Any]]] = [
        ("bus, no listener", lambda bus, clock: None),
        ("history", lambda bus, clock: bus.subscribe(History(clock=clock).on_event)),
        ("recent calls", lambda bus, clock: bus.subscribe(RecentCalls().on_event)),
        (
            "hub (history + recent + tiles), no client",
            lambda bus, clock: EventHub(
                bus, registry=CollectorRegistry(), history=History(clock=clock)
            ),
        ),
    ]
    rows = [(name, min(cpu_per_event(evs, setup) for _ in range(3))) for name, setup in variants]
    total = len(evs)
    del evs
    bare = rows[0][1]
    print(
        f"{total:,} bus events for {calls:,} calls (with their retries, audit batches and "
        "status samples); best of 3 runs\n"
    )
    print("| listener | CPU-µs per bus event | over the bare bus |")
    print("|---|---:|---:|")
    for name, us in rows:
        print(f"| {name} | {us:.2f} | {us - bare:+.2f} |")

    # The read side, on a full hour (50 calls/s of event time, three upstreams).
    clock = ReplayClock()
    hist = History(clock=clock)
    bus = EventBus()
    bus.subscribe(clock.on_event)
    bus.subscribe(hist.on_event)
    for ev in events(180_000, rate=50):
        bus.publish(ev)
    print("\n| read (an hour of three upstreams) | ms to build + serialise | JSON bytes |")
    print("|---|---:|---:|")
    reads = (("tail (2 slots, each second)", hist.tail),
             ("snapshot 5 min", lambda: hist.snapshot(300)),
             ("snapshot 15 min", lambda: hist.snapshot(900)),
             ("snapshot 1 h", lambda: hist.snapshot(3600)))  # fmt: skip
    for label, make in reads:
        reps = 50
        start = time.perf_counter()
        for _ in range(reps):
            body = orjson.dumps(make(), option=orjson.OPT_SERIALIZE_NUMPY)
        ms = (time.perf_counter() - start) / reps * 1000
        print(f"| {label} | {ms:.2f} | {len(body):,} |")
    series = hist.memory_bytes() // (1800 * 4)
    print(
        f"\nhistory memory: {hist.memory_bytes() / 1024:.0f} KiB in {series} series "
        f"({1800 * 4 / 1024:.1f} KiB each: 1,800 float32 slots of 2 s), whatever the rate"
    )

    # Traced from before the records exist: what stays allocated is what the memory holds.
    recent = RecentCalls()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for ev in events(RECENT_CALLS + 100, rate=rate, seed=9):
        recent.on_event(ev)
    del ev
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    print(
        f"recent-calls memory: {held / 2**20:.1f} MiB for {len(recent):,} records "
        f"({held / max(1, len(recent)):.0f} bytes each: the records outlive their batch)\n"
    )


async def page_side(rate: float, seconds: float) -> None:
    import uvicorn
    from fastapi import FastAPI
    from playwright.async_api import async_playwright
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

    print(f"## Page at {rate:g} events/s for {seconds:g} s (headless Chromium, one tab)\n")
    bus = EventBus()
    hub = EventHub(bus, registry=CollectorRegistry())
    app = FastAPI()
    app.include_router(hub.router)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    await hub.start()
    port = server.servers[0].sockets[0].getsockname()[1]
    feed = events(int(rate * (seconds + 30)), rate=rate, seed=11)
    stop = asyncio.Event()

    async def publisher() -> None:
        # Ten events every 10 ms: the loop's turns, as a busy pipeline publishes them.
        per_tick = max(1, int(rate / 100))
        next_at = time.monotonic()
        while not stop.is_set():
            published = 0
            while published < per_tick:
                ev = next(feed)
                if isinstance(ev, CallCompleted):
                    ev = CallCompleted(ev.record, ev.upstream_time_s)  # created now
                    published += 1
                bus.publish(ev)
            next_at += per_tick / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=CHROMIUM_ARGS)  # fmt: skip
        page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Performance.enable")
        pub = asyncio.create_task(publisher())
        await page.goto(f"http://127.0.0.1:{port}/dashboard")
        await page.wait_for_function(
            "() => window.netscope.connected && window.netscope.history.loaded"
        )
        # Warm-up, measured from nothing: the first draws and the feed's first burst pass.
        await asyncio.sleep(5)

        def metrics(raw: dict[str, Any]) -> dict[str, float]:
            return {m["name"]: m["value"] for m in raw["metrics"]}

        m0, wall0, cpu0 = (
            metrics(await cdp.send("Performance.getMetrics")),
            time.monotonic(),
            time.process_time(),
        )
        counters = "{r: ns.received, d: ns.charts.draws, s: ns.feedSkipped}"
        state0 = await page.evaluate(
            f"(() => {{ const ns = window.netscope; return {counters}; }})()"
        )
        await asyncio.sleep(seconds)  # the measured period
        m1, wall1, cpu1 = (
            metrics(await cdp.send("Performance.getMetrics")),
            time.monotonic(),
            time.process_time(),
        )
        state1 = await page.evaluate("""(() => { const ns = window.netscope; return {
            r: ns.received, d: ns.charts.draws, s: ns.feedSkipped, dropped: ns.dropped,
            rows: document.querySelectorAll('#feed tr').length, drawMs: ns.charts.lastDrawMs,
        }; })()""")
        # The 1 h window's load, at this rate (what a late opener waits for).
        await page.click('#window button[data-window="3600"]')
        await page.wait_for_function("() => window.netscope.history.n === 1800")
        load_ms = await page.evaluate("window.netscope.charts.lastLoadMs")
        stop.set()
        await pub
        await browser.close()
    await hub.stop()
    server.should_exit = True
    await serving

    wall = wall1 - wall0
    share = lambda key: 100 * (m1[key] - m0[key]) / wall  # noqa: E731
    events_in = state1["r"] - state0["r"]
    print("| figure | value |")
    print("|---|---:|")
    print(f"| page main thread busy (TaskDuration), % of one core | {share('TaskDuration'):.1f} |")
    print(f"| of which script / layout / style, % | {share('ScriptDuration'):.1f} / "
          f"{share('LayoutDuration'):.1f} / {share('RecalcStyleDuration'):.1f} |")  # fmt: skip
    print(f"| JS heap used, MiB (end) | {m1['JSHeapUsedSize'] / 2**20:.1f} |")
    print(f"| messages received by the page /s | {events_in / wall:.0f} |")
    print(f"| chart draws /s | {(state1['d'] - state0['d']) / wall:.2f} |")
    print(f"| last draw, ms | {state1['drawMs']:.1f} |")
    print(f"| feed rows shown (cap 500); sampled out /s | {state1['rows']}; "
          f"{(state1['s'] - state0['s']) / wall:.0f} |")  # fmt: skip
    print(f"| events the page's socket dropped | {state1['dropped']} |")
    print(f"| 1 h window load (fetch + parse + draw), ms | {load_ms:.0f} |")
    print(f"| this process's CPU (publisher + hub + uvicorn), % of one core | "
          f"{100 * (cpu1 - cpu0) / wall:.1f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip-page", action="store_true")
    args = parser.parse_args()
    server_side(args.events, args.rate)
    if not args.skip_page:
        asyncio.run(page_side(args.rate, args.seconds))


if __name__ == "__main__":
    main()
