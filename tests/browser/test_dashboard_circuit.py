"""The dashboard's "is the circuit open" and retry rows, in real headless chromium.

A forced-open circuit rejects every call just as a tripped one does, so its tile is marked
open (``data-open="true"``, tinted) while its badge keeps the operator-override colour. Retry
rows show the decision's detail (for people), never only its reason word.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from netscope.observability.events import BreakerTransitioned, RetryDenied, RetryScheduled
from netscope.resilience.retry import RetryReason
from tests.browser.conftest import Live

pytestmark = pytest.mark.browser

TINT = "rgb(34, 23, 25)"  # #221719, style.css .tile[data-open="true"]
PURPLE = "rgb(163, 113, 247)"


async def open_live(page: Page, url: str) -> None:
    await page.goto(url)
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")


async def test_a_forced_open_circuit_is_shown_open(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    tile = page.locator('[data-upstream="geo"]')
    badge = tile.locator(".breaker-state")

    live.bus.publish(BreakerTransitioned("geo", "closed", "forced_open", "forced by admin"))
    await expect(badge).to_have_text("forced_open")
    await expect(tile).to_have_attribute("data-open", "true")
    assert await tile.evaluate("el => getComputedStyle(el).backgroundColor") == TINT
    assert await badge.evaluate("el => getComputedStyle(el).backgroundColor") == PURPLE

    live.bus.publish(BreakerTransitioned("geo", "forced_open", "forced_closed", "forced by admin"))
    await expect(badge).to_have_text("forced_closed")
    await expect(tile).to_have_attribute("data-open", "false")
    assert await tile.evaluate("el => getComputedStyle(el).backgroundColor") != TINT

    live.bus.publish(BreakerTransitioned("geo", "forced_closed", "open", "reset then tripped"))
    await expect(tile).to_have_attribute("data-open", "true")
    live.bus.publish(BreakerTransitioned("geo", "open", "half_open", "wait elapsed"))
    await expect(tile).to_have_attribute("data-open", "false")


async def test_retry_rows_show_the_detail(live: Live, page: Page) -> None:
    await open_live(page, live.url())
    trace = "ab" * 16
    live.bus.publish(
        RetryScheduled(
            "ledger", "req-1", trace, 1, RetryReason.RETRYABLE, "retryable status 503", 0.2
        )
    )
    live.bus.publish(RetryDenied("ledger", RetryReason.BUDGET, "retry budget exhausted"))
    rows = page.locator("#feed tr.kind-retry")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("retry denied: retry budget exhausted")
    await expect(rows.nth(1)).to_contain_text("retryable status 503")
    await expect(rows.nth(1)).to_contain_text("retry #1 in 200 ms")
