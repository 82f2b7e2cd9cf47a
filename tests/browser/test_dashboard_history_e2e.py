"""The dashboard's history and drill-down against a real pipeline (tansu, the upstream
simulator, Ceph RGW for the audit where it matters), in headless chromium.

* An upstream made to fail: the error ratio rises, its breaker lane shows the open periods at
  the transitions' own times, then the recovery; the report link downloads the journal.
* RGW stopped: the degraded band under the audit chart, the spool backlog rising, then
  draining once RGW is back.
* A click on a feed row shows exactly the attempts the simulator logged for that request, from
  memory and again from its audit object in RGW once memory has forgotten it.

Screenshots go to test-artifacts/browser/history-*.png, and to docs/img/ with
NETSCOPE_UPDATE_DOCS_SCREENSHOT=1. Waiting is always a poll with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from netscope.observability.events import BreakerTransitioned, DegradedModeChanged
from netscope.service import Service
from netscope.tools.loadgen import LoadgenConfig, run_loadgen
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.browser.conftest import ARTIFACTS
from tests.harness import make_traffic, produce, running, settings_for, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
SLOW_S = 60_000  # ms: a deadline for what waits on the pipeline


async def shot(locator: Any, name: str, *, docs: bool = True) -> None:
    path = ARTIFACTS / f"{name}.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await locator.screenshot(path=str(path))
    if docs and os.environ.get("NETSCOPE_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(path, DOCS_IMG / f"{name}.png")


@asynccontextmanager
async def traffic(bootstrap: str, topic: str, rate: float) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_loadgen(
        LoadgenConfig(bootstrap=bootstrap, topic=topic, rate_per_s=rate,
                      upstreams={"payments": 1.0}), stop=stop))  # fmt: skip
    try:
        yield
    finally:
        stop.set()
        await task


async def open_dashboard(page: Page, service: Service) -> None:
    """The page on a 5 minute window: these runs last a minute or two."""
    await page.goto(f"{service.base_url}/dashboard")
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    await page.click('#window button[data-window="300"]')
    await page.wait_for_function("() => window.netscope.history.n === 150")
    await expect(page.locator("#history-status")).to_have_attribute("data-state", "ok")


async def until(page: Page, predicate: str, arg: Any = None, timeout_ms: int = SLOW_S) -> Any:
    """Poll a function of the page's history model (``m``) until it is truthy."""
    fn = f"(arg) => {{ const m = window.netscope.history; return ({predicate}); }}"
    handle = await page.wait_for_function(fn, arg=arg, timeout=timeout_ms)
    return await handle.json_value()


# The error ratio of each finished slot since ``arg`` (epoch s), as the errors chart draws it.
RATIOS = """(() => {
  const u = m.up.payments; if (!u) return [];
  const out = [];
  for (let i = 0; i < m.n - 1; i += 1) {
    const t = m.start + i * m.step;
    if (t < arg) continue;
    let total = 0, errors = 0;
    for (const [o, v] of Object.entries(u.outcomes)) {
      total += v[i] || 0; if (m.errorOutcomes.has(o)) errors += v[i] || 0;
    }
    out.push([t, total ? 100 * errors / total : null]);
  }
  return out;
})()"""


async def test_a_failing_upstream_shows_its_error_ratio_and_breaker_band_at_the_right_times(
    tansu_broker, page: Page, tmp_path: Path
) -> None:
    topic = f"hist-{uuid.uuid4().hex[:10]}"
    await tansu_broker.create_topic(topic, 4)
    async with UpstreamSim(SimConfig(latency_ms=2.0)) as sim:
        settings = settings_for(
            broker=tansu_broker, topic=topic, tmp_path=tmp_path, upstreams={"payments": sim.url},
            upstream_overrides={
                "breaker": {"minimum_calls": 5, "window_size_calls": 10, "wait_in_open_s": 2.0,
                            "permitted_calls_in_half_open": 2},
                "retry": {"max_attempts": 1},
            },
        )  # fmt: skip
        async with running(Service(settings)) as service:
            moves: list[BreakerTransitioned] = []
            service.pipeline.events.subscribe(
                lambda ev: moves.append(ev) if isinstance(ev, BreakerTransitioned) else None
            )
            async with traffic(tansu_broker.bootstrap, topic, 40):
                await open_dashboard(page, service)
                calm_from = time.time()
                # A few finished slots of calm traffic first: the "before".
                await until(page, f"{RATIOS}.filter(([, r]) => r !== null).length >= 3", calm_from)
                failed_at = time.time()
                sim.config.error_rate = 1.0
                band = page.locator('.band[data-band-upstream="payments"]')
                await expect(band.locator('.seg[data-state="open"]').first).to_be_attached(
                    timeout=SLOW_S
                )
                # Two finished slots above the line: the ratio has risen and stays up.
                await until(
                    page, f"{RATIOS}.filter(([, r]) => r !== null && r > 50).length >= 2", failed_at
                )
                panel = page.locator('[data-chart-upstream="payments"]')
                await page.evaluate("window.NetScopeCharts.drawNow()")
                await shot(panel, "history-breaker-open")

                recovered_at = time.time()
                sim.config.error_rate = 0.0
                await expect(
                    band.locator('.seg[data-state="closed"][data-ongoing="true"]:not([data-since-window-start])')
                ).to_have_count(1, timeout=SLOW_S)  # fmt: skip
                closed_at = max(m.created for m in moves if m.to_state == "closed")
                await until(page, f"{RATIOS}.filter(([, r]) => r === 0).length >= 2", closed_at)
                await page.evaluate("window.NetScopeCharts.drawNow()")
                segments = await band.locator(".seg").evaluate_all(
                    "els => els.map(e => [e.dataset.state, +e.dataset.from, +e.dataset.to])"
                )
                ratios = await until(page, RATIOS, calm_from)
                await shot(panel, "history-breaker-recovered")

                # The report for the window on screen, as the link downloads it.
                async with page.expect_download(timeout=SLOW_S) as download_info:
                    await page.click("#report-link")
                download = await download_info.value
                saved = Path(await download.path())
                report_html = await asyncio.to_thread(saved.read_text, encoding="utf-8")
                assert download.suggested_filename.startswith("netscope-report-")

    # Every segment after the window's start begins at a transition the breaker published,
    # at that transition's own time (the band is not quantised to the charts' slots).
    by_time = {round(m.created, 3): m.to_state for m in moves}
    for state, start, _ in segments[1:]:
        assert by_time.get(round(start, 3)) == state, (state, start, by_time)
    first_open = min(m.created for m in moves if m.to_state == "open")
    assert failed_at <= first_open <= failed_at + 15
    assert any(s == "open" and start >= failed_at for s, start, _ in segments)
    assert segments[-1][0] == "closed" and segments[-1][1] >= recovered_at
    assert [s for s, _, _ in segments].count("half_open") >= 1  # the way back: probes
    # The ratio: at 0 before the failure, above the 2 % line during it, back at 0 after.
    before = [r for t, r in ratios if t + 2 <= failed_at and r is not None]
    during = [r for t, r in ratios if failed_at <= t and t + 2 <= recovered_at and r is not None]
    after = [r for t, r in ratios if t >= closed_at + 0.1 and r is not None]
    assert before and max(before) == 0, ratios
    assert during and max(during) > 50, ratios
    assert after and after[-1] == 0, ratios
    assert "payments" in report_html and "<svg" in report_html


async def test_rgw_stopped_shows_the_degraded_band_and_the_backlog_rising_then_draining(
    tansu_broker, rgw_faults, rgw_bucket, page: Page, tmp_path: Path
) -> None:
    topic = f"hist-rgw-{uuid.uuid4().hex[:10]}"
    await tansu_broker.create_topic(topic, 4)
    async with UpstreamSim(SimConfig(latency_ms=2.0)) as sim:
        settings = settings_for(
            broker=tansu_broker, topic=topic, tmp_path=tmp_path, rgw=rgw_faults,
            bucket=rgw_bucket, upstreams={"payments": sim.url},
            audit={"spool": {"path": tmp_path / "spool", "free_disk_floor_bytes": 0,
                             "drain_initial_backoff_s": 0.2, "drain_max_backoff_s": 1.0}},
        )  # fmt: skip
        async with running(Service(settings)) as service:
            modes: list[DegradedModeChanged] = []
            service.pipeline.events.subscribe(
                lambda ev: modes.append(ev) if isinstance(ev, DegradedModeChanged) else None
            )
            async with traffic(tansu_broker.bootstrap, topic, 40):
                await open_dashboard(page, service)
                await until(page, "(m.inst.audit.store || []).some(v => v > 0)")
                killed_at = time.time()
                rgw_faults.kill_rgw()
                band = page.locator('[data-panel="instance"] .band[data-band="degraded"]')
                await expect(band.locator('.seg[data-state="degraded"]')).to_have_count(
                    1, timeout=SLOW_S
                )
                # The backlog rising: three finished slots, each holding more than the last.
                rising = """(() => {
                  const v = m.inst.spool_pending.slice(0, m.n - 1).filter(x => x !== null && x > 0);
                  return v.length >= 3 && v[v.length - 1] > v[v.length - 3];
                })()"""
                await until(page, rising, timeout_ms=90_000)
                await page.evaluate("window.NetScopeCharts.drawNow()")
                instance = page.locator('[data-panel="instance"]')
                await shot(instance, "history-degraded")

                restarted_at = time.time()
                rgw_faults.start_rgw()
                await expect(
                    band.locator('.seg[data-state="normal"][data-ongoing="true"]:not([data-since-window-start])')
                ).to_have_count(1, timeout=120_000)  # fmt: skip
                drained = """(() => {
                  const v = m.inst.spool_pending.slice(0, m.n - 1);
                  const peak = Math.max(...v.filter(x => x !== null));
                  const last = v.filter(x => x !== null).pop();
                  return peak > 0 && last === 0;
                })()"""
                await until(page, drained, timeout_ms=120_000)
                await page.evaluate("window.NetScopeCharts.drawNow()")
                segments = await band.locator(".seg").evaluate_all(
                    "els => els.map(e => [e.dataset.state, +e.dataset.from, +e.dataset.to])"
                )
                flows = await until(page, """(() => {
                  const sum = (k) => (m.inst.audit[k] || []).reduce((a, b) => a + b, 0);
                  return {spool: sum("spool"), drained: sum("drained"), store: sum("store")};
                })()""")  # fmt: skip
                await shot(instance, "history-drained")

    on = [ev for ev in modes if ev.degraded]
    off = [ev for ev in modes if not ev.degraded]
    degraded = [s for s in segments if s[0] == "degraded"]
    assert len(degraded) == 1 and on and off
    assert degraded[0][1] == pytest.approx(on[0].created, abs=1e-3)
    assert degraded[0][2] == pytest.approx(off[-1].created, abs=1e-3)
    assert killed_at <= degraded[0][1] <= killed_at + 20
    assert degraded[0][2] >= restarted_at
    assert flows["spool"] > 0 and flows["drained"] > 0 and flows["store"] > 0, flows


async def test_clicking_an_event_shows_exactly_the_attempts_the_upstream_saw(
    tansu_broker, rgw, rgw_bucket, page: Page, tmp_path: Path
) -> None:
    topic = f"hist-drill-{uuid.uuid4().hex[:10]}"
    await tansu_broker.create_topic(topic, 2)
    n = 80
    # A third of the answers are 503: retried (3 attempts at most), some end in http_error.
    async with UpstreamSim(SimConfig(latency_ms=2.0, error_rate=0.3, seed=3),
                           history_size=10_000) as sim:  # fmt: skip
        settings = settings_for(
            broker=tansu_broker, topic=topic, tmp_path=tmp_path, rgw=rgw, bucket=rgw_bucket,
            upstreams={"payments": sim.url},
            upstream_overrides={
                "retry": {"base_backoff_s": 0.01, "max_backoff_s": 0.02},
                "retry_budget": {"ratio": 1.0},
                "breaker": {"enabled": False},
            },
        )  # fmt: skip
        async with running(Service(settings)) as service:
            await open_dashboard(page, service)
            await produce(tansu_broker.bootstrap, topic, make_traffic(n, upstreams=["payments"]))
            await wait_for(lambda: service.pipeline.processed >= n, timeout_s=60,
                           what="every message handled")  # fmt: skip
            await wait_for(lambda: service.pipeline.writer.pending_records == 0, timeout_s=60,
                           what="every record durable in RGW")  # fmt: skip
            seen: dict[str, list[int]] = defaultdict(list)  # what the upstream answered, per key
            for entry in sim.stats.recent:
                seen[entry["headers"]["idempotency-key"]].append(entry["status"])

            row = page.locator('#feed tr.kind-call:is([data-attempts="2"], [data-attempts="3"])')
            await expect(row.first).to_be_attached(timeout=SLOW_S)
            row = row.first
            answers: dict[str, Any] = {}
            for source in ("memory", "audit_object"):
                if source == "audit_object":
                    await page.click("#drill-close")
                    service.hub.recent.clear()  # as if it were hours ago: memory forgot it
                await row.click()
                drill = page.locator("#drill")
                await expect(drill).to_have_attribute("data-source", source, timeout=SLOW_S)
                key = await drill.locator('dd[data-field="idempotency_key"]').text_content()
                attempts = drill.locator('tr.drill-row[data-kind="attempt"]')
                statuses = [int(await a.get_attribute("data-status") or 0)
                            for a in await attempts.all()]  # fmt: skip
                breakers = {await a.get_attribute("data-breaker") for a in await attempts.all()}
                assert breakers == {"closed"}, breakers  # known live, and from the audit
                where = drill.locator(".audit-object")
                await expect(where).to_have_attribute("data-where", "store", timeout=SLOW_S)
                answers[source] = (key, statuses, await where.get_attribute("data-key"))
                name = f"history-drill-{source.replace('_', '-')}"
                await shot(drill, name, docs=source == "audit_object")

    (key, statuses, object_key), again = answers["memory"], answers["audit_object"]
    assert key and len(statuses) >= 2
    assert statuses == seen[key], (statuses, seen[key])  # exactly what the upstream logged
    assert again == answers["memory"]  # the same story from the audit store
    assert object_key and f"topic={topic}/" in object_key
