"""The event hub over a real socket: ordering, filters, heartbeats, drops, auth, summaries.

The hub's router runs in a FastAPI app served by uvicorn on 127.0.0.1:0 in the test's own loop,
and real ``websockets`` clients connect to it, so what is asserted is what a browser would get.
Synchronisation is by waiting for specific events (or polling with a deadline), never sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from netscope.api.hub import SUMMARY_WINDOW_S, EventHub, StreamFilter, percentile
from netscope.contract.outcomes import ErrorClass
from netscope.contract.records import Attempt, AuditRecord, KafkaPosition, Outcome
from netscope.observability.events import (
    AuditBatchDurable,
    AuditTarget,
    AuditWriteFailed,
    BreakerTransitioned,
    CallCompleted,
    DegradedModeChanged,
    EventBus,
    RetryDenied,
    RetryScheduled,
    WriteResult,
)
from netscope.resilience.retry import RetryReason

TIMEOUT_S = 10.0


def record(
    offset: int,
    *,
    upstream: str | None = "alpha",
    outcome: Outcome = Outcome.SUCCESS,
    latency_s: float = 0.012,
    trace_id: str | None = None,
    request_id: str | None = None,
    status: int | None = 200,
    error_class: ErrorClass | None = None,
) -> AuditRecord:
    return AuditRecord(
        request_id=request_id or f"req-{offset}",
        idempotency_key=f"idem-{offset}",
        trace_id=trace_id or f"{offset + 1:032x}",
        span_id="b7ad6b7169203331",
        upstream=upstream,
        method="POST",
        path="/v1/pay?api_key=REDACTED",
        kafka=KafkaPosition("netscope.requests", 3, offset, 1_700_000_000_000),
        outcome=outcome,
        received_at=1.0,
        completed_at=1.0 + latency_s,
        latency_s=latency_s,
        status=status,
        error_class=error_class,
        attempts=[Attempt(1, 1.0, latency_s, status), Attempt(2, 1.0, latency_s, status)],
    )


def call(offset: int, **kw: Any) -> CallCompleted:
    return CallCompleted(record(offset, **kw), upstream_time_s=0.01)


async def wait_until(pred: Callable[[], bool], within_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + within_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.002)


@dataclass
class Env:
    bus: EventBus
    hub: EventHub
    registry: CollectorRegistry
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/events" + (f"?{query}" if query else "")

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value


@asynccontextmanager
async def running(**hub_kwargs: Any) -> AsyncIterator[Env]:
    """Hub + uvicorn on an ephemeral port; timers default to 'never' unless a test asks."""
    hub_kwargs.setdefault("heartbeat_s", 3600.0)
    hub_kwargs.setdefault("summary_interval_s", 3600.0)
    bus, registry = EventBus(), CollectorRegistry()
    hub = EventHub(bus, registry=registry, **hub_kwargs)
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
    try:
        yield Env(bus, hub, registry, port)
    finally:
        await hub.stop()
        server.should_exit = True
        await task


async def recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))


async def recv_until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    """Every event up to and including the first of type ``kind``."""
    seen = []
    while True:
        ev = await recv(ws)
        seen.append(ev)
        if ev["type"] == kind:
            return seen


def assert_increasing(events: list[dict[str, Any]]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs


# --------------------------------------------------------------------------- stream basics


async def test_call_events_arrive_in_order_without_payload_details() -> None:
    async with running() as env, connect(env.ws()) as ws:
        for i in range(5):
            env.bus.publish(call(i, status=201))
        events = [await recv(ws) for _ in range(5)]
    assert [e["type"] for e in events] == ["call"] * 5
    assert_increasing(events)
    first = events[0]
    assert first["v"] == 1
    assert first["error_class"] is None
    assert first["trace_id"] == f"{1:032x}"
    assert first["request_id"] == "req-0"
    assert first["upstream"] == "alpha"
    assert first["outcome"] == "success"
    assert first["status"] == 201
    assert first["latency_ms"] == pytest.approx(12.0)
    assert first["attempts"] == 2
    assert (first["partition"], first["offset"]) == (3, 0)
    assert isinstance(first["ts"], float)
    for forbidden in ("headers", "body", "path", "idempotency_key"):
        assert forbidden not in first


async def test_a_failed_call_carries_outcome_and_error_class_as_their_values() -> None:
    async with running() as env, connect(env.ws("outcome=rejected_circuit_open")) as ws:
        env.bus.publish(call(1, outcome=Outcome.TIMEOUT_READ, status=None))
        env.bus.publish(
            call(
                2,
                outcome=Outcome.REJECTED_CIRCUIT_OPEN,
                status=None,
                error_class=ErrorClass.CIRCUIT_OPEN,
            )
        )
        ev = await recv(ws)
    assert (ev["offset"], ev["outcome"], ev["error_class"]) == (
        2,
        "rejected_circuit_open",
        "circuit_open",
    )


async def test_every_bus_event_type_is_converted() -> None:
    async with running() as env, connect(env.ws()) as ws:
        env.bus.publish(
            RetryScheduled(
                "alpha", "req-1", "ab" * 16, 1, RetryReason.RETRYABLE, "retryable timeout_read", 0.2
            )
        )
        env.bus.publish(RetryDenied("alpha", RetryReason.BUDGET, "retry budget exhausted"))
        env.bus.publish(BreakerTransitioned("alpha", "closed", "open", "failure_rate"))
        env.bus.publish(AuditWriteFailed(AuditTarget.STORE, "StoreTimeout", "x" * 1000))
        env.bus.publish(
            AuditBatchDurable(
                "t", 1, 5, 500, AuditTarget.STORE, WriteResult.ALREADY_PRESENT, 0.01, 1.0
            )
        )
        env.bus.publish(DegradedModeChanged(True, "store unreachable"))
        events = await recv_until(ws, "degraded")
    retry, denied, breaker, audit, durable, degraded = events
    assert retry["type"] == "retry" and retry["trace_id"] == "ab" * 16
    assert retry["delay_ms"] == pytest.approx(200.0) and retry["denied"] is False
    # The reason is the enum's value (what to count by), the detail is for people.
    assert (retry["reason"], retry["detail"]) == ("retryable", "retryable timeout_read")
    assert (denied["type"], denied["denied"], denied["reason"], denied["detail"]) == (
        "retry",
        True,
        "budget",
        "retry budget exhausted",
    )
    assert (breaker["type"], breaker["from_state"], breaker["to_state"]) == (
        "breaker",
        "closed",
        "open",
    )
    assert audit["result"] == "failed" and len(audit["detail"]) == 200
    assert (audit["target"], audit["reason"]) == ("store", "StoreTimeout")
    assert (durable["result"], durable["where"], durable["records"]) == (
        "durable",
        "already_present",
        5,
    )
    assert degraded["degraded"] is True
    assert_increasing(events)


async def test_filters_by_upstream_outcome_trace_and_request() -> None:
    trace = "c0ffee" + "0" * 26
    async with (
        running() as env,
        connect(env.ws("upstream=beta,gamma")) as by_upstream,
        connect(env.ws("outcome=timeout_read,http_error")) as by_outcome,
        connect(env.ws(f"trace_id={trace.upper()}")) as by_trace,
        connect(env.ws("request_id=req-4")) as by_request,
        connect(env.ws("type=breaker")) as by_type,
    ):
        env.bus.publish(call(0, upstream="alpha"))
        env.bus.publish(call(1, upstream="beta", outcome=Outcome.TIMEOUT_READ, status=None))
        env.bus.publish(call(2, upstream="gamma", trace_id=trace))
        env.bus.publish(call(3, upstream="alpha", outcome=Outcome.HTTP_ERROR, status=503))
        env.bus.publish(call(4, upstream="alpha", trace_id=trace))
        env.bus.publish(BreakerTransitioned("alpha", "closed", "open", "failure_rate"))
        # Events without the filtered field pass every filter: a common end marker.
        env.bus.publish(DegradedModeChanged(False, "recovered"))

        async def offsets(ws: ClientConnection) -> list[int]:
            return [e["offset"] for e in await recv_until(ws, "degraded") if e["type"] == "call"]

        assert await offsets(by_upstream) == [1, 2]
        assert await offsets(by_outcome) == [1, 3]
        assert await offsets(by_trace) == [2, 4]
        assert await offsets(by_request) == [4]
        # The breaker event is for alpha: filtered out of the beta,gamma stream above.
        assert [e["type"] for e in await recv_until(by_type, "breaker")] == ["breaker"]


def test_stream_filter_semantics() -> None:
    f = StreamFilter.from_query({"upstream": "a", "trace_id": "AB"})
    assert f.trace_id == "ab"
    assert f.matches({"type": "summary"})
    assert f.matches({"type": "breaker", "upstream": "a"})
    assert not f.matches({"type": "breaker", "upstream": "b"})
    assert not f.matches({"type": "call", "upstream": "a", "outcome": "success", "trace_id": "x"})
    assert not f.matches({"type": "retry", "upstream": "a", "trace_id": None, "denied": True})


async def test_heartbeat_arrives_on_its_own() -> None:
    async with running(heartbeat_s=0.05) as env, connect(env.ws()) as ws:
        beat = (await recv_until(ws, "heartbeat"))[-1]
    assert beat["interval_s"] == 0.05
    assert beat["clients"] == 1


async def test_event_published_from_another_thread_is_delivered() -> None:
    async with running() as env, connect(env.ws()) as ws:
        t = threading.Thread(target=env.bus.publish, args=(call(7),))
        t.start()
        ev = await recv(ws)
        t.join()
    assert ev["offset"] == 7


async def test_stop_closes_clients_with_going_away() -> None:
    async with running() as env, connect(env.ws()) as ws:
        await env.hub.stop()
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


# --------------------------------------------------------------------------- slow clients


async def test_slow_client_loses_events_but_never_slows_the_publisher() -> None:
    """A client that stops reading gets a bounded queue, then a 'dropped' notice.

    The slow client's receive buffer is tiny, websockets stops reading its socket after one
    queued frame and compression is off (repetitive JSON deflates ~15x, which would only delay
    the point where TCP backpressure reaches the hub's sender). The fast client keeps up.
    """
    async with running(client_queue=64) as env:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", env.port))
        raw.setblocking(False)
        fast_events: list[dict[str, Any]] = []
        caught_up = asyncio.Event()
        async with (
            connect(env.ws("type=call"), sock=raw, max_queue=1, compression=None) as slow,
            connect(env.ws("type=call"), compression=None) as fast,
        ):
            published = 0

            async def read_fast() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for msg in fast:
                        fast_events.append(json.loads(msg))
                        if len(fast_events) == published:
                            caught_up.set()

            reader = asyncio.create_task(read_fast())
            durations: list[float] = []
            deadline = time.monotonic() + 60
            while env.hub.dropped_total == 0 or published % 4800:
                assert time.monotonic() < deadline, "the slow client never fell behind"
                caught_up.clear()
                for _ in range(48):  # below client_queue: the fast client never drops
                    started = time.perf_counter()
                    env.bus.publish(call(published, latency_s=0.001 * (published % 50)))
                    durations.append(time.perf_counter() - started)
                    published += 1
                await asyncio.wait_for(caught_up.wait(), TIMEOUT_S)

            # put_nowait only: a slow socket costs the publisher nothing. Percentiles, not the
            # maximum, because a shared CI box can preempt any single call.
            durations.sort()
            assert durations[len(durations) // 2] < 0.001
            assert durations[int(len(durations) * 0.99)] < 0.01
            assert [e["offset"] for e in fast_events] == list(range(published))
            dropped_total = env.hub.dropped_total
            assert env.metric("netscope_ws_dropped_events_total") == dropped_total

            # The slow client now reads (with a wider window, to drain quickly): what it got
            # plus what it was told it lost must account for every event exactly.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            slow_events: list[dict[str, Any]] = []

            def accounted() -> int:
                return sum(e.get("count", 1) for e in slow_events)

            while accounted() < published:
                slow_events.append(await recv(slow))
            reader.cancel()

    assert accounted() == published
    assert_increasing(slow_events)
    notices = [e for e in slow_events if e["type"] == "dropped"]
    assert notices and sum(n["count"] for n in notices) == dropped_total
    covered: set[int] = set()
    for e in slow_events:
        if e["type"] == "dropped":
            assert e["count"] == e["last_seq"] - e["first_seq"] + 1
            covered.update(range(e["first_seq"], e["last_seq"] + 1))
        else:
            covered.add(e["seq"])
    assert covered == {e["seq"] for e in fast_events}  # nothing lost silently
    assert not any(e["type"] == "dropped" for e in fast_events)


# --------------------------------------------------------------------------- auth


async def test_token_is_required_when_configured() -> None:
    async with running(token="s3cret") as env:
        for url in (env.ws(), env.ws("token=wrong")):
            async with connect(url) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        async with (
            connect(env.ws("token=s3cret")) as by_query,
            connect(env.ws(), additional_headers={"Authorization": "Bearer s3cret"}) as by_header,
        ):
            env.bus.publish(call(1))
            assert (await recv(by_query))["offset"] == 1
            assert (await recv(by_header))["offset"] == 1
        assert env.metric("netscope_ws_rejected_total", {"reason": "unauthorized"}) == 2


async def test_foreign_origin_is_refused() -> None:
    async with running() as env:
        async with connect(env.ws(), origin="http://evil.example") as ws:  # type: ignore[arg-type]
            with pytest.raises(ConnectionClosed) as closed:
                await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        same = f"http://127.0.0.1:{env.port}"
        async with connect(env.ws(), origin=same) as ws:  # type: ignore[arg-type]
            env.bus.publish(call(2))
            assert (await recv(ws))["offset"] == 2


# --------------------------------------------------------------------------- summaries


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def test_summary_figures_from_known_calls() -> None:
    clock = FakeClock()
    bus = EventBus()
    hub = EventHub(bus, clock=clock)
    clock.now += 20  # past the first window: rates divide by the full 10 s
    for i in range(1, 101):  # latencies 1..100 ms; 5 read timeouts and 5 http errors
        outcome = Outcome.SUCCESS
        if i % 20 == 0:
            outcome = Outcome.TIMEOUT_READ
        elif i % 20 == 10:
            outcome = Outcome.HTTP_ERROR
        bus.publish(call(i, upstream="alpha", outcome=outcome, latency_s=i / 1000))
    # Rejections count as calls and errors but never as upstream latency.
    for i in range(20):
        bus.publish(call(200 + i, upstream="alpha", outcome=Outcome.REJECTED_CIRCUIT_OPEN))
    bus.publish(call(300, upstream="beta", latency_s=0.5))
    bus.publish(call(301, upstream=None, outcome=Outcome.INVALID))
    bus.publish(BreakerTransitioned("alpha", "closed", "open", "failure_rate"))

    s = hub.summary()
    alpha = s["upstreams"]["alpha"]
    assert alpha["calls"] == 120
    assert alpha["rate_per_s"] == pytest.approx(12.0)
    assert alpha["errors"] == 30
    assert alpha["error_pct"] == pytest.approx(25.0)
    assert alpha["timeouts"] == 5
    assert alpha["p95_ms"] == pytest.approx(95.0)
    assert alpha["p99_ms"] == pytest.approx(99.0)
    assert alpha["breaker"] == "open"
    assert s["upstreams"]["beta"]["p99_ms"] == pytest.approx(500.0)
    assert s["upstreams"]["beta"]["breaker"] == "closed"
    assert set(s["upstreams"]) == {"alpha", "beta"}

    clock.now += 10.5  # everything leaves the window; totals remain
    alpha = hub.summary()["upstreams"]["alpha"]
    assert (alpha["calls"], alpha["rate_per_s"], alpha["p99_ms"]) == (0, 0.0, None)
    assert (alpha["calls_total"], alpha["errors_total"], alpha["timeouts_total"]) == (120, 30, 5)


def test_summary_rate_before_first_full_window() -> None:
    clock = FakeClock()
    bus = EventBus()
    hub = EventHub(bus, clock=clock)
    clock.now += 4
    for i in range(20):
        bus.publish(call(i))
    assert hub.summary()["upstreams"]["alpha"]["rate_per_s"] == pytest.approx(5.0)


def test_status_provider_is_merged_and_its_failures_contained() -> None:
    bus = EventBus()
    hub = EventHub(bus)
    bus.publish(BreakerTransitioned("alpha", "closed", "open", "failure_rate"))
    status = {
        "queue_depth": 12,
        "queue_capacity": 1000,
        "consumer_lag": 3,
        "audit_degraded": False,
        "spool_bytes": 0,
        "spool_oldest_age_s": None,
        "paused_reason": None,
        "breakers": {"alpha": "half_open", "gamma": "forced_open"},
    }
    hub.set_status_provider(lambda: status)
    s = hub.summary()
    assert s["status"]["queue_depth"] == 12
    # The provider reads the breakers themselves: it wins over what events taught the hub.
    assert s["upstreams"]["alpha"]["breaker"] == "half_open"
    assert s["upstreams"]["gamma"]["breaker"] == "forced_open"

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    hub.set_status_provider(broken)
    assert hub.summary()["status"] == {}


async def test_summary_events_are_broadcast_and_replayed_to_new_clients() -> None:
    async with running(summary_interval_s=0.05) as env:
        async with connect(env.ws()) as first:
            env.bus.publish(call(1, latency_s=0.25))
            while True:
                summary = (await recv_until(first, "summary"))[-1]
                if summary["upstreams"].get("alpha", {}).get("calls"):
                    break
        assert summary["upstreams"]["alpha"]["p99_ms"] == pytest.approx(250.0)
        async with connect(env.ws()) as late:
            replay = await recv(late)
        assert replay["type"] == "summary"  # the newest summary comes first, no waiting


async def test_broadcast_metrics() -> None:
    async with running() as env:
        async with connect(env.ws()) as ws:
            await wait_until(lambda: env.metric("netscope_ws_clients") == 1)
            env.bus.publish(call(1))
            await recv(ws)
            await wait_until(lambda: env.metric("netscope_ws_broadcast_delay_seconds_count") == 1)
        await wait_until(lambda: env.metric("netscope_ws_clients") == 0)
    assert env.metric("netscope_ws_events_sent_total", {"type": "call"}) == 1
    assert env.metric("netscope_ws_broadcast_delay_seconds_bucket", {"le": "2.0"}) == 1


# --------------------------------------------------------------------------- routes


async def test_dashboard_routes() -> None:
    async with running() as env, aiohttp.ClientSession() as http:
        async with http.get(f"{env.http}/?token=t", allow_redirects=False) as resp:
            assert resp.status in (302, 307)
            assert resp.headers["location"] == "dashboard?token=t"
        async with http.get(f"{env.http}/dashboard") as resp:
            assert resp.status == 200
            html = await resp.text()
            assert 'id="feed"' in html and "dashboard/static/app.js" in html
            assert "connect-src 'self'" in resp.headers["content-security-policy"]
            assert resp.headers["referrer-policy"] == "no-referrer"
        async with http.get(f"{env.http}/dashboard/static/app.js") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/javascript"
        async with http.get(f"{env.http}/dashboard/static/style.css") as resp:
            assert resp.status == 200 and resp.content_type == "text/css"
        for bad in ("index.html", "..%2Fhub.py", "nope.js"):
            async with http.get(f"{env.http}/dashboard/static/{bad}") as resp:
                assert resp.status == 404, bad


async def test_a_client_joining_an_unwatched_hub_still_gets_current_figures_at_once() -> None:
    """With nobody connected the summary is not computed (it costs the loop at saturation);
    the first client to join must not see stale or empty tiles because of that."""
    async with running() as env:
        env.bus.publish(call(1, latency_s=0.25))
        env.hub.publish_summary()  # a tick with nobody listening
        async with connect(env.ws()) as ws:
            first = await recv(ws)
    assert first["type"] == "summary"
    assert first["upstreams"]["alpha"]["calls"] == 1
    assert first["upstreams"]["alpha"]["p99_ms"] == pytest.approx(250.0)


def test_the_latency_window_stays_bounded_while_nobody_watches() -> None:
    clock = FakeClock()
    bus = EventBus()
    hub = EventHub(bus, clock=clock)
    for i in range(100):
        bus.publish(call(i, upstream="alpha"))
    clock.now += SUMMARY_WINDOW_S + 1
    bus.publish(call(100, upstream="alpha"))
    hub.publish_summary()  # no client: no summary built, but the old calls are dropped
    assert len(hub._stats["alpha"].window) == 1
