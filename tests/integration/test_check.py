"""`netscope check` against a real NetScope on real services, in each state of runbook §5.

A NetScope service (broker noida: its end offsets are exact, so the lag figures are real;
audit on Ceph RGW) runs under steady traffic from a real producer, and `netscope check`
reads it through its HTTP endpoints only, as an on-call engineer's terminal would:

- healthy: every judged item passes, exit 0;
- RGW stopped (radosgw SIGKILLed): the "Ceph RGW audit writes" item fails, exit 2;
- upstream failing (simulator answering 503 to everything): the breaker opens, the
  "Circuits now" item fails naming it, exit 2;
- with Prometheus scraping the service: the trend items are judged from history;
- `--watch` repeats until Ctrl-C (exit 130).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from netscope.cli import app
from netscope.service import Service
from netscope.tools.messages import make_request
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import running, settings_for, wait_for

pytestmark = pytest.mark.integration

SAMPLE_S = "2"  # the two scrapes of /metrics: long enough for a few calls and summaries


@contextlib.asynccontextmanager
async def steady_traffic(bootstrap: str, topic: str, rate_per_s: float = 25) -> AsyncIterator[None]:
    """Produce valid requests at a steady rate until the block ends (the pacing sleep is the
    traffic's rate, not a synchronisation)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    rand = random.Random(11)

    async def produce() -> None:
        i = 0
        while True:
            request = make_request("payments", rand=rand)
            await producer.send(topic, orjson.dumps(request), key=f"k-{i % 32}".encode())
            i += 1
            await asyncio.sleep(1 / rate_per_s)

    task = asyncio.create_task(produce())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()


@contextlib.asynccontextmanager
async def netscope_under_traffic(
    broker: Any, rgw: Any, bucket: str, tmp_path: Path, upstream_url: str, **overrides: Any
) -> AsyncIterator[Service]:
    """A ready NetScope (audit on RGW) that has already processed some traffic."""
    topic = f"check-{os.getpid()}-{random.randrange(1 << 30)}"
    await broker.create_topic(topic, 2)
    settings = settings_for(
        broker=broker, topic=topic, tmp_path=tmp_path, upstreams={"payments": upstream_url},
        rgw=rgw, bucket=bucket, group_id=topic, **overrides,
    )  # fmt: skip
    async with running(Service(settings)) as service, steady_traffic(broker.bootstrap, topic):

        async def is_ready() -> bool:
            async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
                return (await client.get("/health/ready")).status_code == 200

        await wait_for(is_ready, timeout_s=60, what="NetScope ready")
        await wait_for(lambda: service.pipeline.status().processed >= 20, timeout_s=60,
                       what="20 messages processed")  # fmt: skip
        yield service


async def check(*args: str) -> tuple[int, dict[str, Any]]:
    """`netscope check --json ARGS` as a command, in a thread beside the service's loop."""
    result = await asyncio.to_thread(CliRunner().invoke, app, ["check", "--json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, orjson.loads(result.stdout)


def by_key(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in doc["items"]}


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {item["key"]: item["status"] for item in doc["items"]}


async def test_a_healthy_netscope_passes_every_judged_item_and_exits_0(
    noida_broker, rgw, rgw_bucket, tmp_path: Path
) -> None:
    async with (
        UpstreamSim(SimConfig(latency_ms=2.0)) as sim,
        netscope_under_traffic(noida_broker, rgw, rgw_bucket, tmp_path, sim.url) as service,
    ):
        code, doc = await check("--url", service.base_url, "--sample", SAMPLE_S)
    items = by_key(doc)
    assert code == 0, doc
    assert {s for s in statuses(doc).values()} <= {"pass", "skip"}, statuses(doc)
    for key in ("live", "ready", "kafka.lag", "rgw.writes", "rgw.latency", "audit.backlog",
                "latency.payments", "errors.payments", "timeouts.payments", "queue.depth",
                "circuits.now", "ws.delay"):  # fmt: skip
        assert items[key]["status"] == "pass", items[key]
    # Figures are real measurements over the sample window, not placeholders.
    assert "calls" in items["errors.payments"]["figure"]
    assert "events" in items["ws.delay"]["figure"], "check's own WS client fed the histogram"
    # Trends need history: said, not pretended.
    for key in ("kafka.lag_trend", "queue.trend", "circuits.window"):
        assert items[key] == items[key] | {"status": "skip", "figure": "needs --prometheus"}
    # No NTP client on this machine: "unknown", never a failure; the broker skew is declared
    # not observable.
    assert items["clock.ntp"]["status"] == "skip"
    assert items["clock.broker"]["figure"] == "not observed"


async def test_a_failing_upstream_fails_the_circuit_item_and_exits_2(
    noida_broker, rgw, rgw_bucket, tmp_path: Path
) -> None:
    # A long open wait keeps the breaker open during the check (no half-open probe flips it).
    breaker = {"breaker": {"wait_in_open_s": 120.0, "max_wait_in_open_s": 120.0}}
    async with (
        UpstreamSim(SimConfig(latency_ms=1.0, error_rate=1.0)) as sim,
        netscope_under_traffic(noida_broker, rgw, rgw_bucket, tmp_path, sim.url,
                               upstream_overrides=breaker) as service,
    ):  # fmt: skip
        await wait_for(lambda: service.pipeline.status().breakers["payments"] == "open",
                       timeout_s=30, what="the breaker to open")  # fmt: skip
        code, doc = await check("--url", service.base_url, "--sample", SAMPLE_S)
    items = by_key(doc)
    assert code == 2, doc
    circuits = items["circuits.now"]
    assert circuits["status"] == "fail" and circuits["figure"] == "payments open", circuits
    # Everything sent to the upstream in the window failed, or nothing was sent (rejected).
    assert items["errors.payments"]["status"] in ("fail", "skip"), items["errors.payments"]
    assert items["rgw.writes"]["status"] == "pass", "the audit is not what failed"


async def test_with_prometheus_the_trends_are_judged_from_history(
    noida_broker, rgw, rgw_bucket, prometheus, tmp_path: Path
) -> None:
    async with (
        UpstreamSim(SimConfig(latency_ms=2.0)) as sim,
        netscope_under_traffic(noida_broker, rgw, rgw_bucket, tmp_path, sim.url) as service,
    ):
        target = f"127.0.0.1:{service.bound_port}"
        await asyncio.to_thread(prometheus.set_scrape_targets, [target], 1)
        selector = f'instance="{target}"'
        args = ("--url", service.base_url, "--prometheus", prometheus.url,
                "--selector", selector, "--trend-window", "20s")  # fmt: skip
        last: dict[str, Any] = {}

        async def trends_judged() -> bool:
            nonlocal last
            _, last = await check(*args)
            return all(by_key(last)[k]["status"] != "skip"
                       for k in ("kafka.lag_trend", "queue.trend", "circuits.window"))  # fmt: skip

        try:
            await wait_for(trends_judged, timeout_s=90, interval_s=1.0,
                           what="20 s of history in Prometheus")  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last check: {last}") from None
        code, doc = await check(*args)
    items = by_key(doc)
    assert code == 0, doc
    assert items["prometheus"]["status"] == "pass" and "1 NetScope" in items["prometheus"]["figure"]
    for key in ("kafka.lag_trend", "queue.trend", "circuits.window", "errors.payments",
                "latency.payments", "rgw.writes"):  # fmt: skip
        assert items[key]["status"] == "pass", items[key]
        assert "needs --prometheus" not in items[key]["figure"]
    assert "Prometheus" in items["errors.payments"]["figure"]
    assert items["circuits.window"]["figure"] == "worst payments: closed 100.0 %"


async def test_a_prometheus_that_does_not_scrape_netscope_is_a_failure_not_a_silent_pass(
    noida_broker, rgw, rgw_bucket, prometheus, tmp_path: Path
) -> None:
    async with (
        UpstreamSim(SimConfig(latency_ms=2.0)) as sim,
        netscope_under_traffic(noida_broker, rgw, rgw_bucket, tmp_path, sim.url) as service,
    ):
        code, doc = await check("--url", service.base_url, "--prometheus", prometheus.url,
                                "--selector", 'instance="nowhere:1"')  # fmt: skip
    assert code == 2
    assert by_key(doc)["prometheus"]["figure"] == "no NetScope series"


async def test_with_a_viewer_token_the_ws_item_needs_it_and_says_so(
    noida_broker, rgw, rgw_bucket, tmp_path: Path
) -> None:
    async with (
        UpstreamSim(SimConfig(latency_ms=2.0)) as sim,
        netscope_under_traffic(noida_broker, rgw, rgw_bucket, tmp_path, sim.url,
                               api={"ws_token": "viewer-secret"}) as service,
    ):  # fmt: skip
        code, without = await check("--url", service.base_url, "--sample", "1")
        with_token = await asyncio.to_thread(
            CliRunner().invoke, app,
            ["check", "--json", "--url", service.base_url, "--sample", "1"],
            env={"NETSCOPE_API__WS_TOKEN": "viewer-secret"},
        )  # fmt: skip
    ws = by_key(without)["ws.delay"]
    assert code == 0 and ws["status"] == "skip", ws
    assert ws["detail"].endswith("/ws/events closed by NetScope: 4401 unauthorized"), ws
    assert by_key(orjson.loads(with_token.stdout))["ws.delay"]["status"] == "pass"


def _sigint_ignored() -> None:
    """As for a process a non-interactive shell starts in the background (`cmd &`, a CI
    runner): SIGINT ignored, inherited across exec."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def test_watch_repeats_until_ctrl_c(noida_broker, rgw, rgw_bucket, tmp_path: Path) -> None:
    """Also when started with SIGINT ignored (found in CI: the watch went on for good)."""
    async with (
        UpstreamSim(SimConfig(latency_ms=2.0)) as sim,
        netscope_under_traffic(noida_broker, rgw, rgw_bucket, tmp_path, sim.url) as service,
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "netscope", "check", "--url", service.base_url, "--json",
            "--sample", "0.5", "--watch", "1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=_sigint_ignored,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            runs = [orjson.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
                    for _ in range(2)]  # fmt: skip
            proc.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert code == 130
    assert [run["exit_code"] for run in runs] == [0, 0], runs
    assert runs[0]["at"] <= runs[1]["at"]


async def test_plain_output_is_one_line_per_item_with_figure_threshold_and_mark(
    noida_broker, rgw, rgw_bucket, tmp_path: Path
) -> None:
    async with (
        UpstreamSim(SimConfig(latency_ms=2.0)) as sim,
        netscope_under_traffic(noida_broker, rgw, rgw_bucket, tmp_path, sim.url) as service,
    ):
        # The service's own file: `check -c` finds the API there, and each upstream's target.
        config = tmp_path / "netscope.toml"
        config.write_text(f'[api]\nhost = "127.0.0.1"\nport = {service.bound_port}\n'
                          f'[upstreams.payments]\nbase_url = "{sim.url}"\n'
                          "latency_p95_target_s = 0.75\n")  # fmt: skip
        url = service.base_url
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["check", "-c", str(config), "--sample", "1"]
        )
    lines = result.stdout.splitlines()
    assert result.exit_code == 0, result.stdout
    assert lines[0].startswith(f"netscope check {url} at ")
    live = next(ln for ln in lines if "Service live" in ln)
    assert live.startswith("PASS  Service live") and "[GET /health/live = 200]" in live
    assert any(ln.startswith("PASS  p95/p99 payments") and "p95 <= 750 ms (target)" in ln
               for ln in lines)  # fmt: skip
    assert lines[-1].endswith("-> exit 0")
    assert "\x1b[" not in result.stdout, "no escape codes when stdout is not a terminal"


# Last: radosgw restarts afterwards, and the first bucket created after that is slow.
async def test_rgw_stopped_fails_the_rgw_item_and_exits_2(
    noida_broker, rgw_faults, rgw_bucket, tmp_path: Path
) -> None:
    async with (
        UpstreamSim(SimConfig(latency_ms=2.0)) as sim,
        netscope_under_traffic(noida_broker, rgw_faults, rgw_bucket, tmp_path, sim.url) as service,
    ):
        await asyncio.to_thread(rgw_faults.kill_rgw)
        await wait_for(lambda: service.pipeline.status().audit_degraded, timeout_s=30,
                       what="degraded mode after RGW died")  # fmt: skip
        code, doc = await check("--url", service.base_url, "--sample", SAMPLE_S)
    items = by_key(doc)
    assert code == 2, doc
    rgw_item = items["rgw.writes"]
    assert rgw_item["status"] == "fail" and rgw_item["name"] == "Ceph RGW audit writes"
    assert "degraded mode" in rgw_item["detail"]
    assert "degraded yes" in rgw_item["figure"]
    assert items["ready"]["status"] == "fail" and "audit_store" in items["ready"]["figure"]
    # The batches are safe in the spool meanwhile: that item says so, without failing yet.
    assert items["audit.backlog"]["status"] == "warn", items["audit.backlog"]
