"""What an on-call sees: correlated events on the WebSocket, and the README's first command."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from netscope.devservices.base import free_port
from netscope.service import Service
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import make_traffic, produce, running, settings_for, wait_for

pytestmark = pytest.mark.integration


async def test_websocket_client_receives_trace_ids_of_what_it_produced(
    tansu_broker, tmp_path: Path
):
    topic = f"ws-{os.getpid()}"
    await tansu_broker.create_topic(topic, 4)
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim:
        settings = settings_for(
            broker=tansu_broker, topic=topic, tmp_path=tmp_path, upstreams={"payments": sim.url}
        )
        seen: dict[str, dict] = {}
        async with (
            running(Service(settings)) as service,
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{service.base_url}/ws/events") as ws,
        ):
            traffic = make_traffic(50, upstreams=["payments"], seed=11)
            expected = {req["traceparent"].split("-")[1] for *_, req in traffic if req is not None}
            await produce(tansu_broker.bootstrap, topic, traffic)

            async def drain() -> None:
                async for msg in ws:
                    event = orjson.loads(msg.data)
                    if event.get("type") == "call" and event.get("trace_id") in expected:
                        seen[event["trace_id"]] = event
                        if len(seen) == len(expected):
                            return

            await asyncio.wait_for(drain(), 60)
    assert set(seen) == expected
    sample = next(iter(seen.values()))
    assert sample["upstream"] == "payments" and sample["outcome"] == "success"
    assert sample["request_id"] and sample["seq"] > 0


async def test_readme_first_command_shows_traffic_flowing():
    """`netscope demo` as a new user runs it: URLs printed, traffic counted, clean stop."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "netscope",
        "demo",
        "--port",
        str(port),
        "--rate",
        "40",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []

    async def read() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            output.append(line.decode())

    reader = asyncio.create_task(read())
    try:

        async def success_count() -> float:
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}/metrics") as resp,
                ):
                    text = await resp.text()
            except aiohttp.ClientError:
                return 0.0
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("netscope_requests_total{") and 'outcome="success"' in line
            )

        await wait_for(lambda: _above(success_count(), 50), timeout_s=90, what="traffic")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/health/ready") as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(f"http://127.0.0.1:{port}/dashboard") as resp:
                assert resp.status == 200
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 60)
        await reader
    finally:
        if proc.returncode is None:
            proc.kill()
    text = "".join(output)
    assert proc.returncode == 0, text
    for url in ("/dashboard", "/metrics", "/health/ready", "/ws/events"):
        assert url in text
    summary = re.search(r"NetScope processed (\d+), still pending (\d+), audit pending (\d+)", text)
    assert summary, text
    assert int(summary.group(1)) > 50 and summary.group(2) == "0" and summary.group(3) == "0"


async def _above(coro, value: float) -> bool:
    return (await coro) > value
