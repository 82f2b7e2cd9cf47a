"""Browser fixtures: Debian chromium driven by Playwright (no `playwright install`).

`live` serves a FastAPI app holding only the event hub's router, in the test's own loop, so a
test publishes synthetic bus events and watches the real page render them. `page` opens
headless chromium, fails the test on any page error (CSP violations included) and always
saves a screenshot to test-artifacts/browser/<test>.png, pass or fail.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Page, async_playwright
from prometheus_client import CollectorRegistry

from netscope.api.hub import EventHub
from netscope.observability.events import EventBus

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
VIEWPORT = {"width": 1440, "height": 900}  # a laptop screen


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing on CI: apt-get install chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")


async def wait_until(pred: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.005)


@dataclass
class Live:
    bus: EventBus
    hub: EventHub
    base: str

    def url(self, query: str = "") -> str:
        return f"{self.base}/dashboard" + (f"?{query}" if query else "")


async def serve_hub(**hub_kwargs: Any) -> tuple[Live, Callable[[], Any]]:
    hub_kwargs.setdefault("summary_interval_s", 0.2)
    hub_kwargs.setdefault("heartbeat_s", 5.0)
    bus = EventBus()
    hub = EventHub(bus, registry=CollectorRegistry(), **hub_kwargs)
    app = FastAPI()
    app.include_router(hub.router)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done())
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    await hub.start()

    async def stop() -> None:
        await hub.stop()
        server.should_exit = True
        await task

    return Live(bus, hub, f"http://127.0.0.1:{port}"), stop


@pytest_asyncio.fixture(loop_scope="function")
async def live() -> AsyncIterator[Live]:
    env, stop = await serve_hub()
    try:
        yield env
    finally:
        await stop()


@pytest_asyncio.fixture(loop_scope="function")
async def page(request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    require_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
            pg = await context.new_page()
            pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            pg.on(
                "console",
                lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
            )
            try:
                yield pg
            finally:
                await pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
        finally:
            await browser.close()
    # Expected refusals (e.g. a 4401 close) are not page errors: only script errors count.
    unexpected = [e for e in errors if "WebSocket" not in e]
    assert not unexpected, unexpected
