"""The dashboard's HTTP endpoints and the history updates on the stream, over real sockets.

The hub's router runs in uvicorn on 127.0.0.1:0 in the test's own loop (as in test_hub.py).
Checked: the history's JSON, the drill-down and report endpoints, the runbook page and the
bundled assets; and that every data endpoint applies the stream's token and Origin rule."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import connect

from netscope.api import runbook
from netscope.api.app import attach_dashboard
from netscope.api.hub import EventHub
from netscope.audit.batch import encode
from netscope.audit.keys import event_hour, object_key
from netscope.audit.store import AuditStore
from netscope.config import AuditConfig
from netscope.contract.records import Attempt, AuditRecord, KafkaPosition, Outcome
from netscope.observability.events import BreakerTransitioned, CallCompleted, EventBus

REPO = Path(__file__).resolve().parents[2]


def record(
    offset: int, *, at: float | None = None, outcome: Outcome = Outcome.SUCCESS
) -> AuditRecord:
    at = time.time() if at is None else at
    return AuditRecord(
        request_id=f"req-{offset}", idempotency_key=f"key-{offset}", trace_id=f"{offset:032x}",
        span_id=None, upstream="pay", method="POST", path="/x",
        kafka=KafkaPosition("t", 0, offset, int(at * 1000)), outcome=outcome,
        received_at=at, completed_at=at + 0.01, latency_s=0.01,
        status=200 if outcome is Outcome.SUCCESS else 503,
        attempts=[Attempt(1, at, 0.01, 200 if outcome is Outcome.SUCCESS else 503)],
    )  # fmt: skip


class Env:
    def __init__(self, bus: EventBus, hub: EventHub, port: int) -> None:
        self.bus, self.hub, self.port = bus, hub, port
        self.base = f"http://127.0.0.1:{port}"

    def http(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, timeout=30, **kw)


@asynccontextmanager
async def serving(**hub_kwargs: Any) -> AsyncIterator[Env]:
    hub_kwargs.setdefault("heartbeat_s", 3600.0)
    hub_kwargs.setdefault("summary_interval_s", 3600.0)
    bus = EventBus()
    hub = EventHub(bus, registry=CollectorRegistry(), **hub_kwargs)
    app = FastAPI()
    app.include_router(hub.router)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    await hub.start()
    try:
        yield Env(bus, hub, server.servers[0].sockets[0].getsockname()[1])
    finally:
        await hub.stop()
        server.should_exit = True
        await task


async def test_the_history_endpoint_gives_the_window_with_its_bands() -> None:
    async with serving() as env, env.http() as http:
        for offset in range(4):
            env.bus.publish(CallCompleted(record(offset), upstream_time_s=0.01))
        env.bus.publish(BreakerTransitioned("pay", "closed", "open", "failure_rate"))
        resp = await http.get("/api/history", params={"window": 60})
        assert resp.status_code == 200
        assert resp.headers["cache-control"] == "no-store"
        body = resp.json()
    assert body["n"] == 30 and body["step_s"] == 2.0
    assert sum(body["upstreams"]["pay"]["outcomes"]["success"]) == 4
    assert body["upstreams"]["pay"]["breaker"]["changes"][0][1] == "open"
    assert body["runbook"]["url"] == "dashboard/runbook"
    assert body["runbook"]["sections"]["INC-03"] == "inc-03--circuit-breaker-open-for-long"
    assert body["audit"] is False  # no store attached: the page hides the report link


@pytest.mark.parametrize("window", ["0", "-5", "3601", "abc"])
async def test_the_window_is_validated(window: str) -> None:
    async with serving() as env, env.http() as http:
        assert (await http.get(f"/api/history?window={window}")).status_code == 422


@pytest.mark.parametrize(
    "path", ["/api/history", "/api/timeline?request_id=r", "/api/report?from=1&to=2"]
)
async def test_every_data_endpoint_takes_the_streams_token_and_origin_rule(path: str) -> None:
    async with serving(token="s3cret") as env, env.http() as http:
        assert (await http.get(path)).status_code == 401
        assert (await http.get(path, headers={"Authorization": "Bearer nope"})).status_code == 401
        sep = "&" if "?" in path else "?"
        ok = {200, 503}  # the report answers 503 here: no store attached
        assert (await http.get(f"{path}{sep}token=s3cret")).status_code in ok
        bearer = {"Authorization": "Bearer s3cret"}
        assert (await http.get(path, headers=bearer)).status_code in ok
        foreign = {**bearer, "Origin": "http://evil.example"}
        assert (await http.get(path, headers=foreign)).status_code == 403
        own = {**bearer, "Origin": env.base}
        assert (await http.get(path, headers=own)).status_code in ok


async def test_without_a_token_configured_the_origin_rule_still_holds() -> None:
    async with serving() as env, env.http() as http:
        assert (await http.get("/api/history")).status_code == 200
        resp = await http.get("/api/history", headers={"Origin": "http://evil.example"})
        assert resp.status_code == 403


async def test_the_stream_carries_history_updates_every_summary() -> None:
    async with serving(summary_interval_s=0.05) as env:
        env.bus.publish(CallCompleted(record(1), upstream_time_s=0.01))
        async with connect(f"ws://127.0.0.1:{env.port}/ws/events") as ws:
            deadline = time.monotonic() + 10
            while True:
                assert time.monotonic() < deadline, "no history event"
                ev = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if ev["type"] == "history":
                    break
    assert ev["n"] == 2 and ev["seq"] > 0
    assert sum(ev["upstreams"]["pay"]["outcomes"]["success"]) == 1
    assert ev["upstreams"]["pay"]["breaker_state"] == "closed"
    assert ev["instance"]["degraded_state"] == "normal"


async def test_call_events_carry_their_event_time_for_the_drill_down() -> None:
    rec = record(7)
    async with (
        serving() as env,
        connect(f"ws://127.0.0.1:{env.port}/ws/events?type=call") as ws,
    ):
        env.bus.publish(CallCompleted(rec, upstream_time_s=0.01))
        ev = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ev["timestamp_ms"] == rec.kafka.timestamp_ms
    assert (ev["topic"], ev["partition"], ev["offset"]) == ("t", 0, 7)


async def test_the_timeline_endpoint() -> None:
    async with serving() as env, env.http() as http:
        assert (await http.get("/api/timeline")).status_code == 400
        assert (await http.get("/api/timeline?partition=-1&request_id=r")).status_code == 422
        env.bus.publish(CallCompleted(record(9), upstream_time_s=0.01))
        resp = await http.get("/api/timeline", params={"q": "key-9"})
        assert resp.status_code == 200
        body = resp.json()
        assert body["source"] == "memory"
        assert [r["kind"] for r in body["rows"]] == ["call", "attempt"]
        async with env.hub.drill._scan_lock:  # a search already running: told to retry
            env.hub.drill.attach_store(SimpleNamespace(), "audit")  # type: ignore[arg-type]
            resp = await http.get("/api/timeline", params={"request_id": "not-in-memory"})
        assert resp.status_code == 429 and resp.headers["retry-after"] == "2"


async def test_the_report_download(tmp_path: Path) -> None:
    cfg = AuditConfig(backend="local", local={"path": tmp_path / "audit"})
    store = AuditStore.from_config(cfg)
    now = time.time()
    records = [record(i, at=now - 30 + i, outcome=Outcome.SUCCESS if i % 4 else Outcome.HTTP_ERROR)
               for i in range(20)]  # fmt: skip
    key = object_key(cfg.prefix, event_hour(records[0].kafka.timestamp_ms), "t", 0, 0, gzip=True)
    await store.put_if_absent(key, encode([r.to_json() for r in records], compress=True))
    async with serving() as env, env.http() as http:
        params = {"from": int((now - 60) * 1000), "to": int(now * 1000) + 1}
        assert (await http.get("/api/report", params=params)).status_code == 503
        env.hub.attach_audit(store, cfg, {"pay": 15.0}, {"pay": 0.5})
        resp = await http.get("/api/report", params={**params, "incident": "INC-03"})
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/html")
        disposition = resp.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="netscope-report-')
        assert "<svg" in resp.text and "INC-03" in resp.text
        data = (await http.get("/api/report", params={**params, "format": "json"})).json()
        assert data["totals"]["calls"] == 20
        bad = {"from": params["to"], "to": params["from"]}
        assert (await http.get("/api/report", params=bad)).status_code == 400
        assert (
            await http.get("/api/report", params={**params, "incident": "<x>"})
        ).status_code == 422
        env.hub.reports._busy.acquire()
        try:
            assert (await http.get("/api/report", params=params)).status_code == 429
        finally:
            env.hub.reports._busy.release()
        assert env.hub.history.snapshot(60)["upstreams"]["pay"]["target_p95_s"] == 0.5


async def test_the_runbook_page_has_every_anchor_the_page_links_to() -> None:
    async with serving() as env, env.http() as http:
        resp = await http.get("/dashboard/runbook")
        assert resp.status_code == 200
        assert "default-src 'none'" in resp.headers["content-security-policy"]
        for section, anchor in runbook.SECTIONS.items():
            assert f'id="{anchor}"' in resp.text, section
        assert "<script" not in resp.text
    async with serving(runbook_path=Path("/nonexistent/runbook.md")) as env, env.http() as http:
        resp = await http.get("/dashboard/runbook")
        assert resp.status_code == 404 and "Runbook not installed" in resp.text


def test_anchors_are_githubs() -> None:
    assert runbook.slug("INC-03 — Circuit breaker open for long") == runbook.SECTIONS["INC-03"]
    assert runbook.slug("5. Health checklist (every 5 minutes)") == runbook.SECTIONS["health"]
    headings = [line.lstrip("#").strip() for line in (REPO / "docs" / "runbook.md").read_text()
                .splitlines() if line.startswith("#")]  # fmt: skip
    assert set(runbook.SECTIONS.values()) <= {runbook.slug(h) for h in headings}


async def test_the_charting_library_is_bundled_with_its_licence() -> None:
    async with serving() as env, env.http() as http:
        for name, media in (("uPlot.iife.min.js", "text/javascript"), ("uPlot.min.css", "text/css"),
                            ("charts.js", "text/javascript"), ("drill.js", "text/javascript"),
                            ("uPlot.LICENSE.txt", "text/plain")):  # fmt: skip
            resp = await http.get(f"/dashboard/static/{name}")
            assert resp.status_code == 200 and resp.headers["content-type"].startswith(media)
        licence = (await http.get("/dashboard/static/uPlot.LICENSE.txt")).text
        assert "MIT License" in licence and "Leon Sorokin" in licence
        page = (await http.get("/dashboard")).text
        assert "dashboard/static/uPlot.iife.min.js" in page and "http" not in page.split("<body")[0]


def test_the_service_wiring_reads_the_p95_target_when_the_config_has_one(tmp_path: Path) -> None:
    bus = EventBus()
    hub = EventHub(bus, registry=CollectorRegistry())
    cfg = AuditConfig(backend="local", local={"path": tmp_path})
    upstreams = {
        "pay": SimpleNamespace(deadline_s=15.0, latency_p95_target_s=0.4),
        "geo": SimpleNamespace(deadline_s=5.0),  # a config without the knob
    }
    pipeline = SimpleNamespace(
        store=object(), settings=SimpleNamespace(upstreams=upstreams, audit=cfg)
    )
    attach_dashboard(hub, pipeline)  # type: ignore[arg-type]
    view = hub.history.snapshot(2)["upstreams"]
    assert view["pay"]["target_p95_s"] == 0.4 and view["geo"]["target_p95_s"] is None
    assert hub.drill.has_store and hub.reports is not None
