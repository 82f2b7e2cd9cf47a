"""`netscope admin ...` as an operator types it, against a running NetScope (runbook INC-01/03)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest

from netscope.service import Service
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import (
    make_traffic,
    metric,
    produce,
    read_audit,
    running,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.integration

TOKEN = "cli-t0ken"


async def admin(url: str, *args: str, token: str | None = TOKEN) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "NETSCOPE_API__ADMIN_TOKEN"}
    if token is not None:
        env["NETSCOPE_API__ADMIN_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "netscope",
        "admin",
        *args,
        "--url",
        url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_admin_cli_throttles_and_forces_breakers(tansu_broker, tmp_path: Path) -> None:
    topic = f"cli-{os.getpid()}"
    await tansu_broker.create_topic(topic, 4)
    settings = settings_for(
        broker=tansu_broker,
        topic=topic,
        tmp_path=tmp_path,
        upstreams={"payments": "http://127.0.0.1:9"},
        api={"admin_token": TOKEN},
    )
    async with running(Service(settings)) as service:
        url = service.base_url
        pipeline = service.pipeline

        code, out = await admin(url, "throttle", "5")
        assert code == 0, out
        assert pipeline.fetcher.limiter.rate_per_s == 5
        code, out = await admin(url, "throttle", "off")
        assert code == 0, out
        assert pipeline.fetcher.limiter.unlimited

        code, out = await admin(url, "breaker", "force-open", "payments")
        assert code == 0, out
        assert str(pipeline.guards["payments"].breaker.state) == "forced_open"
        code, out = await admin(url, "breaker", "show")
        assert code == 0, out
        assert orjson.loads(out)["payments"]["state"] == "forced_open"
        code, out = await admin(url, "breaker", "reset", "payments")
        assert code == 0, out
        assert str(pipeline.guards["payments"].breaker.state) == "closed"

        code, out = await admin(url, "breaker", "force-open", "nosuch")
        assert code == 1 and "no upstream named" in out
        code, out = await admin(url, "throttle", "5", token="wrong")
        assert code == 1 and "401" not in out and "wrong bearer token" in out
        code, out = await admin(url, "throttle", "5", token=None)
        assert code == 2 and "NETSCOPE_API__ADMIN_TOKEN" in out
        assert pipeline.fetcher.limiter.unlimited, "refused calls changed nothing"

    # Each operator action is in the audit as a control event, with who did it.
    records = await read_audit(settings.audit, control=True)
    control = sorted((r for r in records if r["record_type"] == "control"), key=lambda r: r["seq"])
    events = [(r["event"], r["data"].get("rate_per_s", r["data"].get("to"))) for r in control]
    assert events == [
        ("instance_started", None),
        ("throttle_changed", 5.0),
        ("throttle_changed", None),
        ("breaker_transition", "forced_open"),
        ("breaker_transition", "closed"),
        ("instance_stopping", None),
    ], events
    actors = {r["actor"] for r in control if r["event"] != "instance_started"} - {None}
    assert len(actors) == 1 and actors.pop().startswith("admin token (cli:"), control


async def test_start_paused_holds_partitions_until_the_operator_lifts_it(
    tansu_broker, tmp_path: Path
) -> None:
    """pipeline.start_paused: the worker joins and takes its partitions, consumes nothing,
    and takes the whole backlog once `netscope admin throttle off` is run."""
    topic = f"paused-{os.getpid()}"
    await tansu_broker.create_topic(topic, 4)
    items = make_traffic(40, upstreams=["payments"])
    await produce(tansu_broker.bootstrap, topic, items)
    sim = UpstreamSim(SimConfig(latency_ms=1.0))
    await sim.start()
    settings = settings_for(
        broker=tansu_broker,
        topic=topic,
        tmp_path=tmp_path,
        upstreams={"payments": sim.url},
        api={"admin_token": TOKEN},
        pipeline={"start_paused": True},
    )
    try:
        async with running(Service(settings)) as service:
            pipeline = service.pipeline
            await wait_for(
                lambda: bool(pipeline.status().kafka.assigned)
                and pipeline.paused_reason is not None,
                timeout_s=60,
                what="assignment while paused",
            )
            assert pipeline.paused_reason == "throttle"
            assert metric(service, "netscope_ingest_paused", {"reason": "throttle"}) == 1
            # An absence can only be observed over a window: a second of fetch-loop turns.
            deadline = asyncio.get_running_loop().time() + 1.0
            while asyncio.get_running_loop().time() < deadline:
                assert pipeline.processed == 0 and sim.stats.total == 0
                await asyncio.sleep(0.05)

            code, out = await admin(service.base_url, "throttle", "off")
            assert code == 0, out
            await wait_for(
                lambda: pipeline.processed == len(items),
                timeout_s=60,
                what="the backlog after the pause was lifted",
            )
            assert pipeline.paused_reason is None
            assert metric(service, "netscope_ingest_paused", {"reason": "throttle"}) == 0
    finally:
        await sim.stop()
