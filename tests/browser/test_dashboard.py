"""The dashboard page in real headless chromium, fed synthetic bus events.

Each test publishes events the way the pipeline would and asserts on what the page renders,
using the selectors docs/dashboard.md promises (tiles [data-upstream] .breaker-state, #feed
rows [data-trace-id], #degraded-banner, #conn-status[data-state]). Playwright's expect() does
the waiting. test_overview also produces docs/img/dashboard.png when
NETSCOPE_UPDATE_DOCS_SCREENSHOT=1.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from netscope.contract.records import Attempt, AuditRecord, KafkaPosition, Outcome
from netscope.observability.events import (
    BackpressureChanged,
    BreakerTransitioned,
    CallCompleted,
    DegradedModeChanged,
    RetryScheduled,
)
from netscope.resilience.retry import RetryReason
from tests.browser.conftest import ARTIFACTS, Live, serve_hub, wait_until

pytestmark = pytest.mark.browser

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
_offset = 0


def call(
    trace_id: str,
    *,
    created: float | None = None,
    upstream: str = "payments",
    outcome: Outcome = Outcome.SUCCESS,
    latency_s: float = 0.042,
    status: int | None = 200,
    request_id: str | None = None,
    attempts: int = 1,
) -> CallCompleted:
    global _offset
    _offset += 1
    record = AuditRecord(
        request_id=request_id or f"req-{_offset:06d}",
        idempotency_key=None,
        trace_id=trace_id,
        span_id=None,
        upstream=upstream,
        method="POST",
        path="/v1/charge",
        kafka=KafkaPosition("netscope.requests", _offset % 6, 10_000 + _offset, 0),
        outcome=outcome,
        received_at=0.0,
        completed_at=latency_s,
        latency_s=latency_s,
        status=status,
        attempts=[Attempt(n, 0.0, latency_s / attempts, status) for n in range(1, attempts + 1)],
    )
    if created is None:
        return CallCompleted(record, upstream_time_s=latency_s)
    return CallCompleted(record, upstream_time_s=latency_s, created=created)


def trace(n: int) -> str:
    return f"{n:08x}" + "4bf92f3577b34da6a3ce929d0e0e4736"[8:]


async def open_live(page: Page, url: str) -> None:
    await page.goto(url)
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")


async def test_page_shows_live_events_with_trace_id(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    live.bus.publish(call(trace(1), request_id="req-first", latency_s=0.1234))
    row = page.locator(f'#feed tr[data-trace-id="{trace(1)}"]')
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("payments")
    await expect(row).to_contain_text("success")
    await expect(row).to_contain_text("123 ms")
    await expect(row).to_contain_text("req-first")
    # The call also creates the upstream's tile, whose figures come with the next summary.
    tile = page.locator('[data-upstream="payments"]')
    await expect(tile.locator(".breaker-state")).to_have_text("closed")
    await expect(tile.locator(".p99 .value")).to_have_text("123")
    await expect(tile.locator(".p99 .unit")).to_have_text("ms")


async def test_feed_is_newest_first(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    for n in range(1, 4):
        live.bus.publish(call(trace(n)))
    rows = page.locator("#feed tr.kind-call")
    await expect(rows).to_have_count(3)
    assert [await r.get_attribute("data-trace-id") for r in await rows.all()] == [
        trace(3),
        trace(2),
        trace(1),
    ]


async def test_breaker_tile_turns_open_then_closed(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    live.bus.publish(call(trace(1), upstream="ledger"))
    badge = page.locator('[data-upstream="ledger"] .breaker-state')
    await expect(badge).to_have_text("closed")

    live.bus.publish(BreakerTransitioned("ledger", "closed", "open", "failure_rate 62% >= 50%"))
    await expect(badge).to_have_text("open")
    await expect(page.locator('[data-upstream="ledger"]')).to_have_attribute("data-state", "open")
    red = await badge.evaluate("el => getComputedStyle(el).backgroundColor")
    assert red == "rgb(248, 81, 73)"

    live.bus.publish(BreakerTransitioned("ledger", "open", "half_open", "wait elapsed"))
    await expect(badge).to_have_text("half_open")
    live.bus.publish(BreakerTransitioned("ledger", "half_open", "closed", "probes succeeded"))
    await expect(badge).to_have_text("closed")
    green = await badge.evaluate("el => getComputedStyle(el).backgroundColor")
    assert green == "rgb(46, 160, 67)"
    # Summaries arrive every 0.2 s and must agree with the transitions, not flap the tile.
    await expect(page.locator("#feed tr.kind-system")).to_have_count(3)
    await expect(badge).to_have_text("closed")


async def test_trace_search_shows_only_that_trace(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    wanted, other = trace(0xA), trace(0xB)
    for _ in range(3):
        live.bus.publish(call(wanted, upstream="geo"))
        live.bus.publish(call(other, upstream="payments"))
    await expect(page.locator("#feed tr.kind-call")).to_have_count(6)

    await page.fill("#search", wanted)
    visible = page.locator("#feed tr:visible")
    await expect(visible).to_have_count(3)
    for row in await visible.all():
        assert await row.get_attribute("data-trace-id") == wanted

    # A full trace id also reconnects with a server-side trace_id filter.
    await page.wait_for_function(
        "w => window.netscope.connected && window.netscope.serverFilter.trace_id === w",
        arg=wanted,
    )
    await wait_until(lambda: live.hub.client_count == 1)
    await expect(page.locator("#filter-status")).to_contain_text(f"trace_id={wanted}")
    live.bus.publish(call(other, upstream="payments", request_id="req-not-shown"))
    live.bus.publish(call(wanted, upstream="geo", request_id="req-after-filter"))
    await expect(page.locator('#feed tr[data-request-id="req-after-filter"]')).to_be_visible()
    # Same stream, same order: had the other trace been sent, it would be here by now.
    await expect(page.locator('#feed tr[data-request-id="req-not-shown"]')).to_have_count(0)

    await page.fill("#search", "")
    await page.wait_for_function(
        "() => window.netscope.connected && !window.netscope.serverFilter.trace_id"
    )
    await expect(page.locator("#feed tr.kind-call:visible")).to_have_count(7)
    await expect(page.locator("#filter-status")).to_be_hidden()


async def test_search_by_request_id_filters_rows(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    live.bus.publish(call(trace(1), request_id="order-77-a"))
    live.bus.publish(call(trace(2), request_id="order-88-b"))
    await expect(page.locator("#feed tr.kind-call")).to_have_count(2)
    await page.fill("#search", "order-88")
    await expect(page.locator("#feed tr:visible")).to_have_count(1)
    await expect(page.locator("#feed tr:visible")).to_have_attribute("data-trace-id", trace(2))


async def test_degraded_banner_follows_degraded_mode(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    banner = page.locator("#degraded-banner")
    await expect(banner).to_be_hidden()
    live.bus.publish(DegradedModeChanged(True, "StoreTimeout"))
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("StoreTimeout")
    live.bus.publish(DegradedModeChanged(False, "store recovered"))
    await expect(banner).to_be_hidden()


async def test_pause_holds_rows_until_resumed(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    live.bus.publish(call(trace(1)))
    await expect(page.locator("#feed tr.kind-call")).to_have_count(1)
    await page.click("#pause")
    live.bus.publish(call(trace(2)))
    await expect(page.locator("#pause")).to_have_text("Resume (1 new)")
    await expect(page.locator(f'#feed tr[data-trace-id="{trace(2)}"]')).to_have_count(0)
    await page.click("#pause")
    await expect(page.locator(f'#feed tr[data-trace-id="{trace(2)}"]')).to_have_count(1)
    await expect(page.locator("#pause")).to_have_text("Pause")


async def test_token_from_page_url_is_passed_to_the_stream(page: Page) -> None:
    env, stop = await serve_hub(token="let-me-in")
    try:
        await page.goto(env.url())
        await expect(page.locator("#conn-status")).to_have_attribute("data-state", "unauthorized")
        await open_live(page, f"{env.base}/?token=let-me-in")  # via the / redirect
        env.bus.publish(call(trace(5)))
        await expect(page.locator(f'#feed tr[data-trace-id="{trace(5)}"]')).to_have_count(1)
    finally:
        await stop()


async def test_overview(page: Page) -> None:
    """Realistic traffic across three upstreams, one of them open: the docs screenshot."""
    status: dict[str, Any] = {
        "queue_depth": 412,
        "queue_capacity": 1000,
        "consumer_lag": 1873,
        "audit_degraded": False,
        "spool_bytes": 3_481_600,
        "spool_oldest_age_s": 47.0,
        "paused_reason": None,
        "breakers": {"payments": "closed", "geo": "open", "ledger": "half_open"},
    }
    env, stop = await serve_hub()
    env.hub.set_status_provider(lambda: status)
    rng = random.Random(6)
    try:
        await open_live(page, env.url())
        env.bus.publish(BreakerTransitioned("geo", "closed", "open", "slow_call_rate 80% >= 60%"))
        env.bus.publish(BackpressureChanged(False, "queue_full"))
        t0 = time.time() - 5.0  # spread over ~5 s, as real traffic would be
        for n in range(400):
            upstream = ("payments", "geo", "ledger")[n % 3]
            tid = f"{rng.getrandbits(128):032x}"
            if upstream == "geo":
                if n % 2:
                    ev = call(
                        tid,
                        created=t0 + n * 0.012,
                        upstream="geo",
                        outcome=Outcome.REJECTED_CIRCUIT_OPEN,
                        latency_s=0.0004,
                        status=None,
                    )
                else:
                    ev = call(
                        tid,
                        created=t0 + n * 0.012,
                        upstream="geo",
                        outcome=Outcome.TIMEOUT_READ,
                        latency_s=2.0 + rng.random(),
                        status=None,
                        attempts=3,
                    )
            elif upstream == "ledger" and n % 7 == 0:
                env.bus.publish(
                    RetryScheduled(
                        "ledger",
                        f"req-r{n}",
                        tid,
                        1,
                        RetryReason.RETRYABLE,
                        "retryable status 503",
                        0.2,
                        created=t0 + n * 0.012 - 0.3,
                    )
                )
                ev = call(
                    tid,
                    created=t0 + n * 0.012,
                    upstream="ledger",
                    outcome=Outcome.HTTP_ERROR,
                    status=503,
                    latency_s=0.3 + rng.random() / 5,
                    attempts=2,
                )
            else:
                ev = call(
                    tid,
                    created=t0 + n * 0.012,
                    upstream=upstream,
                    latency_s=rng.lognormvariate(-3.2, 0.5),
                    status=200 if upstream == "payments" else 201,
                )
            env.bus.publish(ev)
        await expect(page.locator("#feed tr.kind-call")).to_have_count(400)
        await expect(page.locator('[data-upstream="geo"] .breaker-state')).to_have_text("open")
        await expect(page.locator('[data-upstream="ledger"] .breaker-state')).to_have_text(
            "half_open"
        )
        await expect(page.locator("#queue-depth")).to_have_text("412")
        await expect(page.locator("#consumer-lag")).to_have_text("1,873")
        await expect(page.locator("#spool-bytes")).to_have_text("3.3 MiB")
        await expect(page.locator('[data-upstream="payments"] .rate .value')).not_to_have_text(
            "\u2013"
        )
        shot = ARTIFACTS / "overview-full.png"
        await page.screenshot(path=str(shot))
        if os.environ.get("NETSCOPE_UPDATE_DOCS_SCREENSHOT") == "1":
            DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, DOCS_IMG)
    finally:
        await stop()
