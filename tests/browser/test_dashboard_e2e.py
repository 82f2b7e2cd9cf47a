"""The dashboard against the real pipeline: tansu broker, upstream simulator, live traffic."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from netscope.service import Service
from netscope.tools.loadgen import LoadgenConfig, run_loadgen
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import running, settings_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]

_HEX32 = re.compile(r"^[0-9a-f]{32}$")


async def test_tile_opens_when_the_simulator_fails_and_closes_after_recovery(
    tansu_broker, page: Page, tmp_path: Path
) -> None:
    topic = f"dash-{os.getpid()}"
    await tansu_broker.create_topic(topic, 4)
    async with UpstreamSim(SimConfig(latency_ms=2.0)) as sim:
        settings = settings_for(
            broker=tansu_broker,
            topic=topic,
            tmp_path=tmp_path,
            upstreams={"payments": sim.url},
            upstream_overrides={
                "breaker": {
                    "minimum_calls": 5,
                    "window_size_calls": 10,
                    "wait_in_open_s": 1.0,
                    "permitted_calls_in_half_open": 2,
                },
                "retry": {"max_attempts": 1},
            },
        )
        stop = asyncio.Event()
        async with running(Service(settings)) as service:
            traffic = asyncio.create_task(
                run_loadgen(
                    LoadgenConfig(
                        bootstrap=tansu_broker.bootstrap,
                        topic=topic,
                        rate_per_s=30,
                        upstreams={"payments": 1.0},
                    ),
                    stop=stop,
                )
            )
            try:
                await page.goto(f"{service.base_url}/dashboard")
                badge = page.locator('[data-upstream="payments"] .breaker-state')
                await expect(badge).to_have_text("closed", timeout=30_000)
                feed_row = page.locator("#feed tr.kind-call").first
                await expect(feed_row).to_have_attribute("data-trace-id", _HEX32, timeout=30_000)

                sim.config.error_rate = 1.0
                await expect(badge).to_have_text("open", timeout=30_000)
                await page.screenshot(path="test-artifacts/browser/e2e-open.png")

                sim.config.error_rate = 0.0
                await expect(badge).to_have_text("closed", timeout=30_000)
            finally:
                stop.set()
                await traffic
