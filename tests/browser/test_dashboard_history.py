"""The dashboard's history, drill-down and incident shortcuts in real headless chromium, fed
synthetic bus events (the pipeline's own are in test_dashboard_history_e2e.py).

The page loads the server's last hour (GET api/history), merges the stream's ``history``
events, draws uPlot charts at most once a second, and lays the breaker and degraded bands
as DOM segments whose ``data-from`` / ``data-to`` are the events' own times. Page errors,
CSP refusals included, fail every test (conftest)."""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from netscope.api.history import History
from netscope.contract.records import Attempt, AuditRecord, KafkaPosition, Outcome
from netscope.observability.events import (
    AuditBatchDurable,
    AuditTarget,
    BreakerTransitioned,
    CallCompleted,
    DegradedModeChanged,
    RetryScheduled,
    SpoolBatchUploaded,
    StatusSampled,
    WriteResult,
)
from netscope.resilience.retry import RetryReason
from netscope.status import KafkaStatus, PipelineStatus, SpoolStatus
from tests.browser.conftest import ARTIFACTS, Live, serve_hub, wait_until

pytestmark = pytest.mark.browser

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard-history.png"

_offset = 0


def call(
    upstream: str = "payments",
    outcome: Outcome = Outcome.SUCCESS,
    *,
    statuses: tuple[int, ...] = (200,),
    request_id: str | None = None,
    trace_id: str | None = None,
    at: float | None = None,
    latency_s: float = 0.1,
) -> CallCompleted:
    global _offset
    _offset += 1
    now = time.time() if at is None else at
    attempts = [
        Attempt(n, now - 0.05 * (len(statuses) - n + 1), 0.01, status,
                retry_delay_s=0.02 if n < len(statuses) else None)
        for n, status in enumerate(statuses, start=1)
    ]  # fmt: skip
    record = AuditRecord(
        request_id=request_id or f"req-{_offset}", idempotency_key=f"key-{_offset}",
        trace_id=trace_id or f"{_offset:032x}", span_id=None, upstream=upstream, method="POST",
        path="/v1/x", kafka=KafkaPosition("requests", 0, _offset, int(now * 1000)),
        outcome=outcome, received_at=now - latency_s, completed_at=now, latency_s=latency_s,
        status=statuses[-1], attempts=attempts,
    )  # fmt: skip
    return CallCompleted(record, upstream_time_s=0.05, created=now)


async def open_live(page: Page, url: str) -> None:
    await page.goto(url)
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
    await expect(page.locator("#history-status")).to_have_attribute("data-state", "ok")


async def model(page: Page, expr: str) -> object:
    return await page.evaluate(f"(() => {{ const m = window.netscope.history; return {expr}; }})()")


async def test_a_page_opened_late_shows_what_happened_before(page: Page) -> None:
    env, stop = await serve_hub()
    try:
        opened_at = time.time()
        for _ in range(6):
            env.bus.publish(call("geo", Outcome.HTTP_ERROR, statuses=(503,)))
        env.bus.publish(call("geo"))
        env.bus.publish(BreakerTransitioned("geo", "closed", "open", "failure_rate 86%",
                                            created=opened_at - 0.5))  # fmt: skip
        await open_live(page, env.url())
        totals = await model(
            page, "Object.values(m.up.geo.outcomes).map(v => v.reduce((a, b) => a + b, 0))"
        )
        assert sorted(totals) == [1, 6]  # type: ignore[arg-type]
        seg = page.locator('.band[data-band-upstream="geo"] .seg[data-state="open"]')
        await expect(seg).to_have_count(1)
        assert float(await seg.get_attribute("data-from") or 0) == pytest.approx(
            opened_at - 0.5, abs=1e-3
        )
        assert await seg.get_attribute("data-ongoing") == "true"
        # One panel per upstream plus the instance, five charts each drawn by uPlot.
        await expect(page.locator('[data-chart-upstream="geo"] figure.chart canvas')).to_have_count(
            5
        )
        await expect(page.locator('[data-panel="instance"] figure.chart canvas')).to_have_count(3)
    finally:
        await stop()


async def test_live_updates_are_merged_and_drawn_at_most_once_a_second(
    live: Live, page: Page
) -> None:
    await open_live(page, live.url())
    draws_before = await page.evaluate("window.netscope.charts.draws")
    started = time.monotonic()
    for _ in range(40):
        live.bus.publish(call())
    await page.wait_for_function(
        "() => Object.values(window.netscope.history.up.payments?.outcomes ?? {})"
        ".some(v => v.reduce((a, b) => a + b, 0) >= 40)"
    )
    await page.wait_for_function(f"() => window.netscope.charts.draws > {draws_before}")
    # Summaries (and history events) come 5 times a second here: draws stay at one a second.
    await wait_until(lambda: time.monotonic() - started > 3.2, within_s=10)
    draws = await page.evaluate("window.netscope.charts.draws") - draws_before
    elapsed = time.monotonic() - started
    assert 1 <= draws <= elapsed + 1.5, (draws, elapsed)


async def test_the_window_selector_reloads_the_history(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    assert await model(page, "m.n") == 450  # 15 min of 2 s slots
    await page.click('#window button[data-window="3600"]')
    await page.wait_for_function("() => window.netscope.history.n === 1800")
    await expect(page.locator('#window button[data-window="3600"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(page.locator('#window button[data-window="900"]')).to_have_attribute(
        "aria-pressed", "false"
    )
    await page.click('#window button[data-window="300"]')
    await page.wait_for_function("() => window.netscope.history.n === 150")
    await expect(page.locator("#history-status")).to_contain_text("last 5 min")


async def test_breaker_band_segments_carry_the_transition_times(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    live.bus.publish(call("ledger"))
    t = time.time()
    moves = [
        (t, "closed", "open"),
        (t + 0.4, "open", "half_open"),
        (t + 0.6, "half_open", "closed"),
    ]
    for at, frm, to in moves:
        live.bus.publish(BreakerTransitioned("ledger", frm, to, f"to {to}", created=at))
    lane = page.locator('.band[data-band-upstream="ledger"] .seg')
    await expect(lane).to_have_count(4)
    segs = await lane.evaluate_all(
        "els => els.map(e => [e.dataset.state, +e.dataset.from, +e.dataset.to])"
    )
    assert [s[0] for s in segs] == ["closed", "open", "half_open", "closed"]
    assert [round(s[1], 3) for s in segs[1:]] == [round(m[0], 3) for m in moves]
    assert [round(s[2], 3) for s in segs[1:3]] == [round(moves[1][0], 3), round(moves[2][0], 3)]
    caption = page.locator('.band[data-band-upstream="ledger"] .band-caption')
    await expect(caption).to_contain_text("open (to open)")


async def test_degraded_mode_is_a_band_under_the_audit_chart(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    t = time.time()
    live.bus.publish(DegradedModeChanged(True, "StoreTimeout", created=t))
    band = page.locator('[data-panel="instance"] .band[data-band="degraded"]')
    await expect(band.locator('.seg[data-state="degraded"]')).to_have_count(1)
    live.bus.publish(DegradedModeChanged(False, "store recovered", created=t + 0.5))
    await expect(band.locator('.seg[data-state="normal"][data-ongoing="true"]')).to_have_count(1)
    seg = band.locator('.seg[data-state="degraded"]')
    assert float(await seg.get_attribute("data-to") or 0) == pytest.approx(t + 0.5, abs=1e-3)
    # The band is drawn right under the audit chart, on its time scale.
    chart_box = await page.locator(
        '[data-panel="instance"] figure[data-chart="audit"] .u-over'
    ).bounding_box()
    lane_box = await band.locator(".lane").bounding_box()
    assert chart_box and lane_box
    assert lane_box["x"] == pytest.approx(chart_box["x"], abs=1.5)
    assert lane_box["width"] == pytest.approx(chart_box["width"], abs=1.5)


async def test_clicking_a_feed_row_opens_its_timeline(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    trace = "c0ffee" + "0" * 26
    live.bus.publish(RetryScheduled("payments", "req-drill", trace, 1, RetryReason.RETRYABLE,
                                    "retryable status 503", 0.02))  # fmt: skip
    live.bus.publish(call(statuses=(503, 200), request_id="req-drill", trace_id=trace))
    row = page.locator('#feed tr.kind-call[data-request-id="req-drill"]')
    await row.click()
    drill = page.locator("#drill")
    await expect(drill).to_be_visible()
    await expect(drill).to_have_attribute("data-source", "memory")
    attempts = drill.locator('tr.drill-row[data-kind="attempt"]')
    await expect(attempts).to_have_count(2)
    assert [await a.get_attribute("data-status") for a in await attempts.all()] == ["503", "200"]
    await expect(attempts.first).to_contain_text("retried after 20 ms: retryable status 503")
    await expect(attempts.first).to_have_attribute("data-breaker", "closed")
    await expect(drill.locator('dd[data-field="trace_id"]')).to_have_text(trace)
    await expect(drill.locator(".audit-object")).to_contain_text("no store attached")
    await page.keyboard.press("Escape")
    await expect(drill).to_be_hidden()


async def test_searching_an_id_opens_its_timeline(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    event = call(request_id="order-991")
    live.bus.publish(event)
    await page.fill("#search", event.record.idempotency_key or "")
    await page.press("#search", "Enter")
    await expect(page.locator("#drill-status")).to_contain_text("1 call, from memory")
    await expect(page.locator('#drill dd[data-field="request_id"]')).to_have_text("order-991")
    await page.click("#drill-close")
    await page.fill("#search", "never-seen")
    await page.click("#search-go")
    await expect(page.locator("#drill-status")).to_have_attribute("data-state", "empty")


async def test_tiles_link_to_the_runbook_section_of_their_state(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    live.bus.publish(call("geo"))
    link = page.locator('[data-upstream="geo"] a.runbook')
    await expect(link).to_have_attribute("data-runbook", "health")
    live.bus.publish(BreakerTransitioned("geo", "closed", "open", "failure_rate"))
    await expect(link).to_have_attribute("data-runbook", "INC-03")
    await expect(link).to_have_attribute(
        "href", "dashboard/runbook#inc-03--circuit-breaker-open-for-long"
    )
    live.bus.publish(DegradedModeChanged(True, "StoreTimeout"))
    banner_link = page.locator("#degraded-banner a.runbook")
    await expect(banner_link).to_have_attribute(
        "href", "dashboard/runbook#inc-02--ceph-rgw-write-errors"
    )
    await link.click()
    await expect(page.locator("#inc-03--circuit-breaker-open-for-long")).to_be_visible()
    assert page.url.endswith("/dashboard/runbook#inc-03--circuit-breaker-open-for-long")


async def test_the_report_link_is_hidden_without_an_audit_store(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    await expect(page.locator("#report-link")).to_be_hidden()


async def test_the_feed_samples_under_sustained_load(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    # 3,000 calls over 3 s: 1,000 a second, in bursts of 50 every 50 ms.
    for _ in range(60):
        for _ in range(50):
            live.bus.publish(call())
        await page.wait_for_timeout(50)
    await page.wait_for_function("() => window.netscope.feedSkipped > 0")
    await expect(page.locator("#feed-sampled")).to_be_visible()
    rows = await page.locator("#feed tr").count()
    assert rows <= 500
    # Sampling is the feed's only: the tile and the charts count every call.
    await expect(page.locator('[data-upstream="payments"] .totals')).to_contain_text("3,000 calls")
    await page.wait_for_function(
        "() => window.netscope.history.up.payments.outcomes.success"
        ".reduce((a, b) => a + b, 0) >= 3000"
    )


async def test_the_token_reaches_the_history_api(page: Page) -> None:
    env, stop = await serve_hub(token="let-me-in")
    try:
        await open_live(page, f"{env.base}/dashboard?token=let-me-in")
        env.bus.publish(call("geo"))
        await page.wait_for_function("() => window.netscope.history.up.geo !== undefined")
    finally:
        await stop()


class Wall:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sample(t: float, *, spool_bytes: int, pending: int, queue: int, lag: int) -> StatusSampled:
    st = PipelineStatus(
        instance_id="demo", queue_depth=queue, queue_capacity=2000, in_flight=queue // 8,
        processed=0, paused_reason=None, ingest_rate_per_s=math.inf,
        audit_degraded=pending > 0, audit_store="s3", spool=SpoolStatus(spool_bytes, 1, pending),
        kafka=KafkaStatus(True, True, True, "", (("requests", 0), ("requests", 1)),
                          {("requests", 0): lag, ("requests", 1): lag // 2 + 3}),
        breakers={"payments": "closed", "geo": "closed", "ledger": "closed"},
    )  # fmt: skip
    return StatusSampled(st, created=t)


async def test_history_overview(page: Page) -> None:
    """Fifteen minutes of a bad day, drawn by the page opened at the end: geo fails for three
    minutes (its breaker opens, probes, recovers), RGW is down for a minute (degraded band,
    backlog rising then draining). The docs screenshot (docs/img/dashboard-history.png)."""
    end = time.time()
    clock = Wall(end - 900)
    env, stop = await serve_hub(history=History(clock=clock))
    rng = random.Random(3)
    geo_bad = (end - 600, end - 420)
    rgw_down = (end - 300, end - 240)
    try:
        t = clock.t
        backlog = 0
        while t < end:
            clock.t = t
            failing = geo_bad[0] <= t < geo_bad[1]
            for name, rate, base in (("payments", 6, 0.04), ("geo", 4, 0.08), ("ledger", 3, 0.15)):
                for _ in range(rng.randint(rate - 1, rate + 1)):
                    bad = failing and name == "geo" and rng.random() < 0.9
                    outcome = Outcome.HTTP_ERROR if bad else Outcome.SUCCESS
                    slow = base * (6 if bad else 1) * rng.lognormvariate(0, 0.35)
                    env.bus.publish(call(name, outcome, statuses=(503, 503) if bad else (200,),
                                         at=t, latency_s=slow))  # fmt: skip
                    if bad:
                        env.bus.publish(RetryScheduled(name, "r", "0" * 32, 1,
                                                       RetryReason.RETRYABLE, "503", 0.05,
                                                       created=t))  # fmt: skip
            down = rgw_down[0] <= t < rgw_down[1]
            target = AuditTarget.SPOOL if down else AuditTarget.STORE
            env.bus.publish(AuditBatchDurable("requests", 0, 13, 9000, target,
                                              WriteResult.CREATED, 0.02, t, created=t))  # fmt: skip
            backlog = backlog + 13 if down else max(0, backlog - 40)
            if not down and backlog:
                env.bus.publish(SpoolBatchUploaded("k", 40, 30_000, WriteResult.CREATED, 30.0,
                                                   created=t))  # fmt: skip
            env.bus.publish(sample(t, spool_bytes=backlog * 700, pending=backlog // 13,
                                   queue=40 + rng.randint(0, 30) + (400 if down else 0),
                                   lag=20 + rng.randint(0, 15)))  # fmt: skip
            t += 1.0
        moves = [(geo_bad[0] + 4, "closed", "open"), (geo_bad[0] + 9, "open", "half_open"),
                 (geo_bad[0] + 9.4, "half_open", "open"), (geo_bad[1] + 2, "open", "half_open"),
                 (geo_bad[1] + 2.5, "half_open", "closed")]  # fmt: skip
        for at, frm, to in moves:
            env.bus.publish(BreakerTransitioned("geo", frm, to, f"to {to}", created=at))
        env.bus.publish(DegradedModeChanged(True, "StoreTimeout", created=rgw_down[0] + 1))
        env.bus.publish(DegradedModeChanged(False, "store recovered", created=rgw_down[1] + 3))
        clock.t = end
        await open_live(page, env.url())
        await expect(
            page.locator('.band[data-band-upstream="geo"] .seg[data-state="open"]')
        ).to_have_count(2)
        await expect(
            page.locator('.band[data-band="degraded"] .seg[data-state="degraded"]')
        ).to_have_count(1)
        await page.evaluate("window.NetScopeCharts.drawNow()")
        shot = ARTIFACTS / "history-overview.png"
        await page.locator(".history").screenshot(path=str(shot))
        if os.environ.get("NETSCOPE_UPDATE_DOCS_SCREENSHOT") == "1":
            shutil.copyfile(shot, DOCS_IMG)
    finally:
        await stop()
