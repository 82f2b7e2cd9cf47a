"""Live event stream: EventBus -> versioned JSON over WebSocket, plus the dashboard page.

Why it is shaped like this: the event bus is called synchronously on the data path, so the
hub's listener must never wait. Each event is converted and serialised once, then offered to
every client's bounded queue with ``put_nowait``; a client that cannot keep up loses events
(counted, and told so with a ``dropped`` event when it catches up) instead of slowing the
pipeline or growing memory. One sender task per connection does the only awaiting.

The wire protocol is documented in docs/dashboard.md. Every message is one JSON text frame
``{"v": 1, "seq": n, "type": ..., "ts": epoch_s, ...}``; ``seq`` is hub-wide and increases on
every connection (filters and drops leave gaps; a ``dropped`` notice carries the seq of the
last event it replaces). Call events carry identifiers and outcomes only, never headers,
bodies or paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from netscope.api import runbook
from netscope.api.access import ViewerAccess
from netscope.api.drill import Drill
from netscope.api.history import History
from netscope.api.recent import RecentCalls
from netscope.contract.outcomes import (
    ERROR_OUTCOMES,
    NO_UPSTREAM_LATENCY_OUTCOMES,
    TIMEOUT_OUTCOMES,
)
from netscope.observability.events import (
    AuditBatchDurable,
    AuditWriteFailed,
    BackpressureChanged,
    BreakerTransitioned,
    CallCompleted,
    DegradedModeChanged,
    EventBus,
    MessageDeadLettered,
    RetryDenied,
    RetryScheduled,
    WriteResult,
)

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SUMMARY_WINDOW_S = 10.0
_NO_UPSTREAM_LATENCY = NO_UPSTREAM_LATENCY_OUTCOMES  # counted in rates and errors, not in p95
# Filters apply only to event types that carry the filtered field; the rest always pass, so a
# trace-focused view still sees breaker changes, summaries and heartbeats.
_UPSTREAM_TYPES = frozenset({"call", "retry", "breaker"})
_CORRELATED_TYPES = frozenset({"call", "retry"})
_DELAY_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
_MAX_WINDOW_SAMPLES = 100_000  # per upstream; bounds memory at very high rates
_DETAIL_MAX = 200
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_GOING_AWAY = 1001

_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "drill.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    # uPlot (MIT, https://github.com/leeoniya/uPlot), bundled: the page works offline.
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot.LICENSE.txt": "text/plain; charset=utf-8",
}
_JSON = orjson.OPT_SERIALIZE_NUMPY  # the history's series are float32 arrays (NaN -> null)
# The page loads only its own assets and talks only to its own origin.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # The token may be in the page URL: never leak it through Referer.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

StatusProvider = Callable[[], dict[str, Any]]


def _split(value: str | None) -> frozenset[str]:
    if not value:
        return frozenset()
    return frozenset(part.strip() for part in value.split(",") if part.strip())


@dataclass(slots=True, frozen=True)
class StreamFilter:
    """Per-connection filter parsed from the WebSocket query string."""

    upstreams: frozenset[str] = frozenset()
    outcomes: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    trace_id: str | None = None
    request_id: str | None = None

    @classmethod
    def from_query(cls, params: Any) -> StreamFilter:
        trace_id = (params.get("trace_id") or "").strip().lower() or None
        return cls(
            upstreams=_split(params.get("upstream")),
            outcomes=_split(params.get("outcome")),
            types=_split(params.get("type")),
            trace_id=trace_id,
            request_id=(params.get("request_id") or "").strip() or None,
        )

    def matches(self, ev: dict[str, Any]) -> bool:
        kind = ev["type"]
        if self.types and kind not in self.types:
            return False
        if self.upstreams and kind in _UPSTREAM_TYPES and ev.get("upstream") not in self.upstreams:
            return False
        if self.outcomes and kind == "call" and ev["outcome"] not in self.outcomes:
            return False
        if kind in _CORRELATED_TYPES:
            if self.trace_id is not None and ev.get("trace_id") != self.trace_id:
                return False
            if self.request_id is not None and ev.get("request_id") != self.request_id:
                return False
        return True


@dataclass(slots=True)
class _Out:
    """One event, serialised once and shared by every client queue."""

    seq: int
    type: str
    created: float
    payload: dict[str, Any]
    text: str


@dataclass(slots=True)
class _Drops:
    count: int
    first_seq: int
    last_seq: int


@dataclass(slots=True, eq=False)
class _Client:
    ws: WebSocket
    filter: StreamFilter
    queue: asyncio.Queue[tuple[_Out, _Drops | None]]
    drops: _Drops | None = None  # lost since the last notice; reported when it catches up
    sender: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _UpstreamStats:
    # (monotonic time, latency ms or None, is_error, is_timeout)
    window: deque[tuple[float, float | None, bool, bool]] = field(
        default_factory=lambda: deque(maxlen=_MAX_WINDOW_SAMPLES)
    )
    calls_total: int = 0
    errors_total: int = 0
    timeouts_total: int = 0
    breaker: str | None = None


def _with_query(target: str, request: Request) -> str:
    # Keep ?token= across the redirect so a bookmarked root URL still authenticates.
    query = request.url.query
    return f"{target}?{query}" if query else target


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1): always a latency that was actually observed."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


class _HubMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.clients = Gauge(
            "netscope_ws_clients", "WebSocket event-stream clients connected.", registry=registry
        )
        self.sent = Counter(
            "netscope_ws_events_sent_total",
            "Events sent to WebSocket clients, by event type.",
            ["type"],
            registry=registry,
        )
        self.dropped = Counter(
            "netscope_ws_dropped_events_total",
            "Events a slow WebSocket client lost because its queue was full.",
            registry=registry,
        )
        self.delay = Histogram(
            "netscope_ws_broadcast_delay_seconds",
            "Event creation to sent on the WebSocket (runbook: < 2 s under nominal load).",
            buckets=_DELAY_BUCKETS_S,
            registry=registry,
        )
        self.rejected = Counter(
            "netscope_ws_rejected_total",
            "WebSocket connections refused, by reason (unauthorized, origin).",
            ["reason"],
            registry=registry,
        )


class EventHub:
    """Fan-out of bus events to WebSocket clients, with summaries and the dashboard routes."""

    def __init__(
        self,
        events: EventBus,
        *,
        client_queue: int = 1000,
        heartbeat_s: float = 10.0,
        summary_interval_s: float = 1.0,
        token: str | None = None,
        registry: CollectorRegistry | None = None,
        window_s: float = SUMMARY_WINDOW_S,
        allow_origins: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        history: History | None = None,
        recent: RecentCalls | None = None,
        runbook_url: str = runbook.DEFAULT_URL,
        runbook_path: Path | None = None,
    ) -> None:
        if client_queue < 1:
            raise ValueError("client_queue must be >= 1")
        self._client_queue = client_queue
        self.heartbeat_s = heartbeat_s
        self.summary_interval_s = summary_interval_s
        self.access = ViewerAccess(token, allow_origins)
        self._window_s = window_s
        self._clock = clock
        self._started_at = clock()
        self.metrics = _HubMetrics(registry or CollectorRegistry())
        self._clients: set[_Client] = set()
        self._seq = 0
        self._stats: dict[str, _UpstreamStats] = {}
        self._status_provider: StatusProvider | None = None
        self._last_summary: _Out | None = None
        self._summary_ticked = False
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._dropped_total = 0
        # The page's memory: the last hour of series and bands, the last calls for the
        # drill-down. Listeners of their own (logic emits events, instrumentation listens).
        self.history = history or History()
        self.recent = recent or RecentCalls()
        self.drill = Drill(self.recent, self.history)
        self.reports: Any = None  # api.report_download.ReportDownloads, once a store is known
        self.runbook_url = runbook_url
        self.runbook_path = runbook_path
        self._unsubscribers = [
            events.subscribe(self._on_bus_event),
            events.subscribe(self._on_loop(self.history.on_event)),
            events.subscribe(self._on_loop(self.recent.on_event)),
        ]
        self.router = self._build_router()

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._every(self.heartbeat_s, self._heartbeat)),
                asyncio.create_task(self._every(self.summary_interval_s, self.publish_summary)),
            ]

    async def stop(self) -> None:
        """Stop timers and close every client with 1001 (going away)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for client in list(self._clients):
            if client.sender is not None:
                client.sender.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for unsubscribe in self._unsubscribers:
            unsubscribe()
        self._unsubscribers = []

    def attach_audit(
        self,
        store: Any,
        audit: Any,
        deadlines_s: dict[str, float],
        latency_targets_s: dict[str, float | None] | None = None,
    ) -> None:
        """Where older requests and reports are read from (the pipeline's audit store and its
        config), and each upstream's p95 target for the latency chart."""
        from netscope.api.report_download import ReportDownloads

        self.drill.attach_store(store, audit.prefix)
        self.reports = ReportDownloads(audit, deadlines_s)
        if latency_targets_s:
            self.history.set_targets(latency_targets_s)

    def set_status_provider(self, fn: StatusProvider | None) -> None:
        """Gauges merged into every summary: queue, lag, audit backlog, breaker states."""
        self._status_provider = fn

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def dropped_total(self) -> int:
        return self._dropped_total

    # ----------------------------------------------------------------- publish path

    def _on_bus_event(self, event: Any) -> None:
        # Bus listeners run on the publisher's thread; client queues belong to the loop.
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._handle, event)
            return
        self._handle(event)

    def _on_loop(self, listener: Callable[[Any], None]) -> Callable[[Any], None]:
        """``listener`` run on the hub's loop, whatever thread published: what it keeps is
        read by the loop's requests, so it is only ever touched there."""

        def hop(event: Any) -> None:
            if self._loop is not None and threading.get_ident() != self._loop_thread:
                self._loop.call_soon_threadsafe(listener, event)
            else:
                listener(event)

        return hop

    def _handle(self, event: Any) -> None:
        if isinstance(event, CallCompleted):
            self._account_call(event)
        elif isinstance(event, BreakerTransitioned):
            self._stats_for(event.upstream).breaker = event.to_state
        if not self._clients:
            return  # nobody listening: skip serialisation entirely
        payload = self._convert(event)
        if payload is not None:
            self._broadcast(payload, event.created)

    def _broadcast(self, payload: dict[str, Any], created: float) -> _Out:
        """O(clients) and non-blocking: never awaits, never waits for a slow socket."""
        self._seq += 1
        payload = {"v": PROTOCOL_VERSION, "seq": self._seq, **payload}
        payload.setdefault("ts", created)
        text = orjson.dumps(payload, option=_JSON).decode()
        out = _Out(self._seq, payload["type"], created, payload, text)
        for client in self._clients:
            if client.filter.matches(payload):
                self._offer(client, out)
        return out

    def _offer(self, client: _Client, out: _Out) -> None:
        try:
            client.queue.put_nowait((out, client.drops))
        except asyncio.QueueFull:
            if client.drops is None:
                client.drops = _Drops(1, out.seq, out.seq)
            else:
                client.drops.count += 1
                client.drops.last_seq = out.seq
            self._dropped_total += 1
            self.metrics.dropped.inc()
        else:
            client.drops = None  # travels with the event queued just after the gap

    def _convert(self, ev: Any) -> dict[str, Any] | None:
        created = ev.created
        if isinstance(ev, CallCompleted):
            r = ev.record
            return {
                "type": "call",
                "ts": created,
                "trace_id": r.trace_id,
                "request_id": r.request_id,
                "upstream": r.upstream,
                "method": r.method,
                "outcome": r.outcome.value,
                "status": r.status,
                "error_class": None if r.error_class is None else r.error_class.value,
                "latency_ms": _ms(r.latency_s),
                "upstream_ms": _ms(ev.upstream_time_s),
                "attempts": len(r.attempts),
                "topic": r.kafka.topic,
                "partition": r.kafka.partition,
                "offset": r.kafka.offset,
                "timestamp_ms": r.kafka.timestamp_ms,  # the event time: the audit hour
            }
        if isinstance(ev, RetryScheduled):
            return {
                "type": "retry",
                "ts": created,
                "denied": False,
                "upstream": ev.upstream,
                "trace_id": ev.trace_id,
                "request_id": ev.request_id,
                "attempt": ev.attempt,
                "reason": ev.reason.value,
                "detail": ev.detail[:_DETAIL_MAX],
                "delay_ms": _ms(ev.delay_s),
            }
        if isinstance(ev, RetryDenied):
            return {
                "type": "retry",
                "ts": created,
                "denied": True,
                "upstream": ev.upstream,
                "trace_id": None,
                "request_id": None,
                "reason": ev.reason.value,
                "detail": ev.detail[:_DETAIL_MAX],
            }
        if isinstance(ev, BreakerTransitioned):
            return {
                "type": "breaker",
                "ts": created,
                "upstream": ev.upstream,
                "from_state": ev.from_state,
                "to_state": ev.to_state,
                "reason": ev.reason,
            }
        if isinstance(ev, DegradedModeChanged):
            return {"type": "degraded", "ts": created, "degraded": ev.degraded, "reason": ev.reason}
        if isinstance(ev, BackpressureChanged):
            return {"type": "backpressure", "ts": created, "paused": ev.paused, "reason": ev.reason}
        if isinstance(ev, MessageDeadLettered):
            return {
                "type": "dead_letter",
                "ts": created,
                "topic": ev.topic,
                "partition": ev.partition,
                "offset": ev.offset,
                "field": ev.field,
                "reason": ev.reason[:_DETAIL_MAX],
            }
        if isinstance(ev, AuditBatchDurable):
            return {
                "type": "audit",
                "ts": created,
                "result": "durable",
                # The documented wire values: a batch an earlier write already held is
                # "already_present", whichever target took it.
                "where": "already_present"
                if ev.result is WriteResult.ALREADY_PRESENT
                else ev.target.value,
                "topic": ev.topic,
                "partition": ev.partition,
                "records": ev.records,
                "bytes": ev.bytes,
                "write_ms": _ms(ev.write_s),
            }
        if isinstance(ev, AuditWriteFailed):
            return {
                "type": "audit",
                "ts": created,
                "result": "failed",
                "target": ev.target.value,
                "draining": ev.draining,
                "reason": ev.reason,
                "detail": ev.detail[:_DETAIL_MAX],
            }
        return None

    # ----------------------------------------------------------------- summaries

    def _stats_for(self, upstream: str) -> _UpstreamStats:
        stats = self._stats.get(upstream)
        if stats is None:
            stats = self._stats[upstream] = _UpstreamStats()
        return stats

    def _account_call(self, ev: CallCompleted) -> None:
        r = ev.record
        if r.upstream is None:
            return  # invalid messages never had an upstream: the dead-letter event covers them
        stats = self._stats_for(r.upstream)
        outcome = r.outcome
        is_error = outcome in ERROR_OUTCOMES
        is_timeout = outcome in TIMEOUT_OUTCOMES
        latency = None if outcome in _NO_UPSTREAM_LATENCY else r.latency_s * 1000.0
        stats.window.append((self._clock(), latency, is_error, is_timeout))
        stats.calls_total += 1
        stats.errors_total += is_error
        stats.timeouts_total += is_timeout

    def summary(self) -> dict[str, Any]:
        """Per-upstream figures over the last ``window_s`` plus the status provider's gauges."""
        now = self._clock()
        self._prune_windows()
        # Before the first full window, divide by the time actually observed (at least 1 s).
        span = min(self._window_s, max(1.0, now - self._started_at))
        status: dict[str, Any] = {}
        if self._status_provider is not None:
            try:
                status = dict(self._status_provider())
            except Exception:  # a broken gauge must not stop the stream
                log.exception("dashboard status provider failed")
        breakers: dict[str, str] = dict(status.get("breakers") or {})
        for name in breakers:
            self._stats_for(name)
        upstreams: dict[str, Any] = {}
        for name in sorted(self._stats):
            stats = self._stats[name]
            calls = len(stats.window)
            errors = sum(1 for s in stats.window if s[2])
            timeouts = sum(1 for s in stats.window if s[3])
            latencies = sorted(s[1] for s in stats.window if s[1] is not None)
            p95, p99 = percentile(latencies, 0.95), percentile(latencies, 0.99)
            upstreams[name] = {
                "rate_per_s": round(calls / span, 3),
                "calls": calls,
                "errors": errors,
                "error_pct": round(100.0 * errors / calls, 2) if calls else 0.0,
                "timeouts": timeouts,
                "p95_ms": None if p95 is None else round(p95, 3),
                "p99_ms": None if p99 is None else round(p99, 3),
                "calls_total": stats.calls_total,
                "errors_total": stats.errors_total,
                "timeouts_total": stats.timeouts_total,
                "breaker": breakers.get(name) or stats.breaker or "closed",
            }
        return {
            "type": "summary",
            "window_s": self._window_s,
            "upstreams": upstreams,
            "status": status,
            "hub": {"clients": len(self._clients), "dropped_total": self._dropped_total},
        }

    def publish_summary(self) -> None:
        self._summary_ticked = True
        if not self._clients:
            # Nobody to show it to: only keep the windows bounded. Sorting a 10 s window of
            # latencies every second costs ~1 % of the loop at saturation; a client that
            # joins gets a summary computed then (handle()).
            self._prune_windows()
            self._last_summary = None
            return
        self._last_summary = self._summary_out()
        # The charts' new points: the slot just finished and the current one (page: merge).
        self._broadcast({"type": "history", **self.history.tail()}, time.time())

    def _summary_out(self) -> _Out:
        created = time.time()
        return self._broadcast({**self.summary(), "ts": created}, created)

    def _prune_windows(self) -> None:
        horizon = self._clock() - self._window_s
        for stats in self._stats.values():
            window = stats.window
            while window and window[0][0] < horizon:
                window.popleft()

    def _heartbeat(self) -> None:
        if self._clients:
            self._broadcast(
                {
                    "type": "heartbeat",
                    "interval_s": self.heartbeat_s,
                    "clients": len(self._clients),
                },
                time.time(),
            )

    async def _every(self, interval_s: float, fn: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + interval_s
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval_s
            try:
                fn()
            except Exception:
                log.exception("event hub periodic task %s failed", fn.__name__)

    # ----------------------------------------------------------------- connections

    def _authorized(self, ws: WebSocket) -> bool:
        return self.access.authorized(ws.headers, ws.query_params)

    def _origin_allowed(self, ws: WebSocket) -> bool:
        # Browsers always send Origin; a foreign page must not read the stream through the
        # user's browser (cross-site WebSocket hijacking). Non-browser clients send none.
        return self.access.origin_allowed(ws.headers)

    async def _refuse(self, ws: WebSocket, code: int, reason: str) -> None:
        self.metrics.rejected.labels(reason).inc()
        # Accept first so a browser sees the close code, not just a failed handshake.
        await ws.accept()
        await ws.close(code=code, reason=reason)

    async def handle(self, ws: WebSocket) -> None:
        """Serve one WebSocket client until it leaves or the hub stops."""
        if not self._origin_allowed(ws):
            await self._refuse(ws, CLOSE_FORBIDDEN_ORIGIN, "origin")
            return
        if not self._authorized(ws):
            await self._refuse(ws, CLOSE_UNAUTHORIZED, "unauthorized")
            return
        client = _Client(
            ws, StreamFilter.from_query(ws.query_params), asyncio.Queue(self._client_queue)
        )
        # Tiles fill at once, not after one interval.
        if self._summary_ticked:
            if self._last_summary is None:  # skipped while nobody listened: compute it now
                self._last_summary = self._summary_out()
            client.queue.put_nowait((self._last_summary, None))
        # Registered before accept: once the client sees the socket open, nothing is missed.
        self._clients.add(client)
        self.metrics.clients.inc()
        try:
            await ws.accept()
            client.sender = asyncio.create_task(self._send_loop(client))
            reader = asyncio.create_task(self._read_loop(ws))
            done, pending = await asyncio.wait(
                {client.sender, reader}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.debug("event stream client ended: %r", task.exception())
            if client.sender in done and client.sender.cancelled():
                with contextlib.suppress(Exception):
                    await ws.close(code=CLOSE_GOING_AWAY, reason="server stopping")
        finally:
            self._clients.discard(client)
            self.metrics.clients.dec()

    @staticmethod
    async def _read_loop(ws: WebSocket) -> None:
        # Clients have nothing to say; reading only notices the disconnect promptly.
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return

    async def _send_loop(self, client: _Client) -> None:
        ws, queue = client.ws, client.queue
        while True:
            if queue.empty():
                if client.drops is not None:  # caught up: report what was lost meanwhile
                    drops, client.drops = client.drops, None
                    await self._send_drops(ws, drops)
                    continue
                out, drops_before = await queue.get()
            else:
                out, drops_before = queue.get_nowait()
            if drops_before is not None:
                await self._send_drops(ws, drops_before)
            await ws.send_text(out.text)
            self.metrics.sent.labels(out.type).inc()
            self.metrics.delay.observe(max(0.0, time.time() - out.created))

    async def _send_drops(self, ws: WebSocket, drops: _Drops) -> None:
        notice = {
            "v": PROTOCOL_VERSION,
            "seq": drops.last_seq,
            "type": "dropped",
            "ts": time.time(),
            "count": drops.count,
            "first_seq": drops.first_seq,
            "last_seq": drops.last_seq,
        }
        await ws.send_text(orjson.dumps(notice).decode())
        self.metrics.sent.labels("dropped").inc()

    # ----------------------------------------------------------------- routes

    def _build_router(self) -> APIRouter:
        router = APIRouter()
        assets = resources.files("netscope.api").joinpath("dashboard")

        @router.websocket("/ws/events")
        async def ws_events(ws: WebSocket) -> None:
            await self.handle(ws)

        @router.get("/", include_in_schema=False)
        async def root(request: Request) -> RedirectResponse:
            return RedirectResponse(_with_query("dashboard", request))

        @router.get("/dashboard/", include_in_schema=False)
        async def dashboard_slash(request: Request) -> RedirectResponse:
            # Asset and WebSocket URLs in the page are relative to /dashboard.
            return RedirectResponse(_with_query("../dashboard", request))

        @router.get("/dashboard", include_in_schema=False)
        async def dashboard() -> HTMLResponse:
            html = assets.joinpath("index.html").read_text(encoding="utf-8")
            return HTMLResponse(html, headers=_PAGE_HEADERS)

        @router.get("/dashboard/static/{name}", include_in_schema=False)
        async def dashboard_asset(name: str) -> Response:
            media_type = _ASSETS.get(name)  # fixed allow-list: no path traversal possible
            if media_type is None:
                raise HTTPException(status_code=404)
            body = assets.joinpath(name).read_bytes()
            return Response(body, media_type=media_type, headers=_PAGE_HEADERS)

        from netscope.api.dashboard_api import build_router

        router.include_router(build_router(self))
        return router
