"""`netscope admin ...` as an operator types it, against a running NetScope (runbook INC-01/03)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest

from netscope.service import Service
from tests.harness import running, settings_for

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
        assert pipeline.ingest_limit.rate_per_s == 5
        code, out = await admin(url, "throttle", "off")
        assert code == 0, out
        assert pipeline.ingest_limit.unlimited

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
        assert pipeline.ingest_limit.unlimited, "refused calls changed nothing"
