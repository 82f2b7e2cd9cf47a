"""The post-incident report as an engineer opens it: `netscope report` over a real run
(tansu, an upstream that fails every call for a while and its breaker opening, audit on Ceph
RGW), the HTML opened from disk in headless Chromium. It renders, its five plots are drawn at
a readable size, and the page asks for nothing from anywhere (the screenshot is
test-artifacts/browser/report-full.png; docs/img/report.png came from this test)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from playwright.async_api import Page, Route

from netscope.service import Service
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.browser.conftest import ARTIFACTS
from tests.harness import make_traffic, produce, run_report, running, settings_for, wait_for


async def test_the_report_renders_offline_with_its_plots(
    page: Page, tansu_broker, rgw, rgw_bucket, tmp_path: Path
) -> None:
    topic = f"report-{uuid.uuid4().hex[:10]}"
    await tansu_broker.create_topic(topic, 2)
    n = 150
    started = time.time()
    async with UpstreamSim(SimConfig(latency_ms=5.0, seed=5)) as sim:
        settings = settings_for(
            broker=tansu_broker, topic=topic, tmp_path=tmp_path, rgw=rgw, bucket=rgw_bucket,
            upstreams={"payments": sim.url},
            pipeline={"ingest_rate_per_s": 12},  # about 12 s of traffic: plots with a shape
            upstream_overrides={
                "retry": {"base_backoff_s": 0.01, "max_backoff_s": 0.02},
                "breaker": {"minimum_calls": 8, "window_size_calls": 10,
                            "wait_in_open_s": 1.0, "permitted_calls_in_half_open": 2},
            },
        )  # fmt: skip
        await produce(tansu_broker.bootstrap, topic, make_traffic(n, upstreams=["payments"]))
        async with running(Service(settings)) as service:
            processed = lambda: service.pipeline.processed  # noqa: E731
            await wait_for(lambda: processed() >= 50, timeout_s=60, what="a calm start")
            sim.config.error_rate = 1.0  # the incident: every answer a 503
            await wait_for(lambda: processed() >= 90, timeout_s=60, what="the incident")
            sim.config.error_rate = 0.0
            await wait_for(lambda: processed() >= n, timeout_s=60,
                           what="every message handled")  # fmt: skip
    data, report = await run_report(settings, tmp_path, started - 1, time.time() + 1,
                                    "--incident", "INC-03", "--bin-s", "1")  # fmt: skip
    assert data["totals"]["calls"] == n
    assert data["breakers"], "the breaker opened: its plot has a line"

    asked: list[str] = []

    async def only_the_file(route: Route) -> None:
        url = route.request.url
        if url == report.as_uri():
            await route.continue_()
        else:  # anything else would leave the machine, or fail offline
            asked.append(url)
            await route.abort()

    await page.route("**/*", only_the_file)
    await page.goto(report.as_uri(), wait_until="load")
    assert asked == [], f"the report asked for {asked}"
    window = data["window"]
    assert await page.title() == f"Incident INC-03: {window['from']} to {window['to']}"
    for name in ("outcomes", "latency", "timeouts", "breakers", "backlog"):
        box = await page.locator(f"#plot-{name} svg").bounding_box()
        assert box is not None and box["width"] > 500 and box["height"] > 100, (name, box)
    # Drawn, not only framed: the legends name what the data holds.
    outcomes = await page.locator("#plot-outcomes svg").inner_html()
    assert "http_error" in outcomes and "success" in outcomes
    assert "payments" in await page.locator("#plot-breakers svg").inner_html()
    assert await page.locator("text=To be filled").count() == 4  # the ID is given
    failed = sum(c.get("failed", 0) for c in data["impact"].values())
    assert f"{failed} calls failed" in await page.locator("table.journal").inner_text()
    await page.set_viewport_size({"width": 1100, "height": 900})
    await page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
