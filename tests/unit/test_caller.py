"""UpstreamGuard (the per-upstream guard stack) against a real in-process upstream, no Kafka.

Every test that builds a guard runs once per transport (``make_guard`` is parametrized over
``TRANSPORT_NAMES``): each transport owes the caller the same behaviour.

Every assertion is about what a user of NetScope relies on: the outcome written to the audit,
the attempts listed in it, and what the upstream really received (``sim.stats``: arrivals,
headers). Timing assertions are lower bounds (a guarantee of the code, safe on a loaded
machine) or generous upper bounds a few times the expected value.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from netscope.config import UpstreamConfig
from netscope.contract.outcomes import ErrorClass, Outcome
from netscope.contract.request import CallRequest, parse_request
from netscope.observability.events import AttemptFinished, EventBus, RetryDenied, RetryScheduled
from netscope.outbound.caller import CallResult, UpstreamGuard
from netscope.outbound.transport import TRANSPORT_NAMES
from netscope.resilience.retry import RetryReason
from netscope.tools.messages import make_request
from netscope.tools.upstream_sim import SimConfig, UpstreamSim

NAME = "api"


@pytest.fixture
async def sim() -> AsyncIterator[UpstreamSim]:
    async with UpstreamSim(SimConfig(latency_ms=1.0, seed=1)) as s:
        yield s


@pytest.fixture(params=TRANSPORT_NAMES)
async def make_guard(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    guards: list[UpstreamGuard] = []

    async def factory(base_url: str, **overrides: Any) -> tuple[UpstreamGuard, list[Any]]:
        overrides.setdefault("transport", request.param)
        cfg = UpstreamConfig(base_url=base_url, **overrides)
        bus = EventBus()
        events: list[Any] = []
        bus.subscribe(events.append)
        guard = UpstreamGuard(NAME, cfg, bus)
        await guard.client.start()
        guards.append(guard)
        return guard, events

    yield factory
    for g in guards:
        await g.client.close()


_rand = random.Random(42)


def request(**fields: Any) -> CallRequest:
    """A validated request for upstream NAME; ``fields`` override the message (None deletes)."""
    method = fields.pop("method", "GET")
    msg = make_request(NAME, method=method, rand=_rand)
    for key, value in fields.items():
        if value is None:
            msg.pop(key, None)
        else:
            msg[key] = value
    parsed = parse_request(orjson.dumps(msg), upstreams={NAME})
    assert isinstance(parsed, CallRequest), parsed
    return parsed


NO_RETRY = {"retry": {"max_attempts": 1}}
FAST_RETRY = {"retry": {"max_attempts": 3, "base_backoff_s": 0.01, "max_backoff_s": 0.02}}


# -- timeouts: connect vs read vs deadline ----------------------------------------------------


async def test_read_timeout_when_upstream_slower_than_read_timeout(sim, make_guard):
    sim.config.latency_ms = 800
    guard, _ = await make_guard(sim.url, read_timeout_s=0.1, **NO_RETRY)
    res = await guard.call(request())
    assert res.outcome is Outcome.TIMEOUT_READ
    assert [a.error_class for a in res.attempts] == [ErrorClass.TIMEOUT_READ]
    assert res.status is None
    assert sim.stats.total == 1


async def test_deadline_when_timeout_ms_shorter_than_per_try_timeout(sim, make_guard):
    sim.config.latency_ms = 3000
    guard, _ = await make_guard(sim.url, read_timeout_s=5.0, **FAST_RETRY)
    t0 = time.perf_counter()
    res = await guard.call(request(timeout_ms=200))
    elapsed = time.perf_counter() - t0
    assert res.outcome is Outcome.DEADLINE_EXCEEDED
    assert res.error_class is ErrorClass.DEADLINE_EXCEEDED
    # the clipped per-try timeout is reported as the deadline, not as a read timeout
    assert [a.error_class for a in res.attempts] == [ErrorClass.DEADLINE_EXCEEDED]
    assert elapsed >= 0.19
    assert elapsed < 2.5, "the caller's 200 ms deadline cut the 3 s upstream short"


async def test_deadline_caps_the_config_deadline_too(sim, make_guard):
    sim.config.latency_ms = 3000
    guard, _ = await make_guard(
        sim.url, connect_timeout_s=0.2, read_timeout_s=5.0, deadline_s=0.3, **FAST_RETRY
    )
    res = await guard.call(request())
    assert res.outcome is Outcome.DEADLINE_EXCEEDED
    assert len(res.attempts) == 1


@contextlib.asynccontextmanager
async def _serve(handler: Callable[[web.Request], Any]) -> AsyncIterator[int]:
    """A one-route upstream on a free loopback port; yields the port."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def _chunked(chunk: bytes, count: int, pause_s: float) -> Callable[[web.Request], Any]:
    """A handler answering 200 with ``count`` chunks, ``pause_s`` apart."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(count):
            await resp.write(chunk)
            await asyncio.sleep(pause_s)
        return resp

    return handler


async def test_deadline_cuts_a_body_that_trickles_within_the_read_timeout(make_guard):
    """Each chunk arrives well within read_timeout_s, so only the deadline can end the call."""
    async with _serve(_chunked(b".", count=100, pause_s=0.05)) as port:
        url = f"http://127.0.0.1:{port}"
        guard, _ = await make_guard(url, read_timeout_s=3.0, deadline_s=3.0, **NO_RETRY)
        t0 = time.perf_counter()
        res = await guard.call(request(timeout_ms=400))
        elapsed = time.perf_counter() - t0
    assert res.outcome is Outcome.DEADLINE_EXCEEDED
    assert [a.error_class for a in res.attempts] == [ErrorClass.DEADLINE_EXCEEDED]
    # The message's 400 ms, not the upstream's 3 s deadline nor the 5 s body; slack for load.
    assert 0.39 <= elapsed < 2.5, elapsed


async def test_response_larger_than_max_response_bytes_is_a_protocol_error(make_guard):
    # Ten chunks of 20 kB: no single read sees the whole body.
    async with _serve(_chunked(b"x" * 20_000, count=10, pause_s=0.01)) as port:
        url = f"http://127.0.0.1:{port}"
        guard, _ = await make_guard(url, max_response_bytes=100_000, **NO_RETRY)
        res = await guard.call(request())
        assert res.outcome is Outcome.PROTOCOL_ERROR
        assert res.error_class is ErrorClass.RESPONSE_TOO_LARGE and res.status == 200
        roomy, _ = await make_guard(url, max_response_bytes=200_000, **NO_RETRY)
        assert (await roomy.call(request())).outcome is Outcome.SUCCESS  # exactly fits


_BOMB = gzip.compress(b"x" * 1_000_000)  # ~1 kB on the wire, 1 MB once inflated


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        pytest.param(b"x" * 150_000, {}, id="declared-length-over-the-limit"),
        # Content-Length counts compressed bytes: the inflated size is what is bounded.
        pytest.param(_BOMB, {"Content-Encoding": "gzip"}, id="small-gzip-inflating-past-it"),
    ],
)
async def test_a_body_with_a_declared_length_is_bounded_too(make_guard, body, headers):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    async with _serve(handler) as port:
        guard, _ = await make_guard(
            f"http://127.0.0.1:{port}", max_response_bytes=100_000, **NO_RETRY
        )
        res = await guard.call(request())
    assert res.error_class is ErrorClass.RESPONSE_TOO_LARGE and res.status == 200


async def test_a_head_answer_declaring_a_large_body_is_not_too_large(make_guard):
    """HEAD gets the GET's Content-Length and no body: nothing to bound."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 150_000)

    async with _serve(handler) as port:
        guard, _ = await make_guard(
            f"http://127.0.0.1:{port}", max_response_bytes=100_000, **NO_RETRY
        )
        res = await guard.call(request(method="HEAD"))
    assert res.outcome is Outcome.SUCCESS and res.status == 200, res


async def test_deadline_cuts_a_declared_length_body_that_trickles(make_guard):
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 100
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b".")
            await asyncio.sleep(0.05)
        return resp

    async with _serve(handler) as port:
        guard, _ = await make_guard(
            f"http://127.0.0.1:{port}", read_timeout_s=3.0, deadline_s=3.0, **NO_RETRY
        )
        t0 = time.perf_counter()
        res = await guard.call(request(timeout_ms=400))
        elapsed = time.perf_counter() - t0
    assert [a.error_class for a in res.attempts] == [ErrorClass.DEADLINE_EXCEEDED]
    # The message's 400 ms, not the upstream's 3 s deadline nor the 5 s body; slack for load.
    assert 0.39 <= elapsed < 2.5, elapsed


async def test_a_cookie_set_by_one_answer_never_rides_along_with_another_call(make_guard):
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        resp = web.Response(text="ok")
        resp.set_cookie("session", "belongs-to-the-first-message")
        return resp

    async with _serve(handler) as port:
        # A host name: aiohttp's default jar already ignores cookies from IP addresses.
        guard, _ = await make_guard(f"http://localhost:{port}", **NO_RETRY)
        for _ in range(2):
            assert (await guard.call(request())).outcome is Outcome.SUCCESS
    assert seen == [None, None]


@contextlib.asynccontextmanager
async def _serve_raw(answer: bytes | None) -> AsyncIterator[int]:
    """A bare TCP upstream: reads each request head and writes ``answer`` verbatim (None: never
    answers), keeping the connection open. For what aiohttp's server refuses to send."""
    writers: list[asyncio.StreamWriter] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(Exception):
            while await reader.readuntil(b"\r\n\r\n"):
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("status", [204, 304])
async def test_a_bodiless_status_declaring_a_large_length_is_not_too_large(make_guard, status):
    """204 and 304 carry no body whatever Content-Length says: nothing to bound or wait for."""
    answer = f"HTTP/1.1 {status} No Body\r\nContent-Length: 150000\r\n\r\n".encode()
    async with _serve_raw(answer) as port:
        guard, _ = await make_guard(
            f"http://127.0.0.1:{port}", max_response_bytes=100_000, read_timeout_s=1.0, **NO_RETRY
        )
        res = await guard.call(request())
    assert res.outcome is Outcome.SUCCESS and res.status == status, res
    assert res.error_class is None


async def test_a_small_compressed_body_is_inflated_and_fits(make_guard):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"x" * 50_000), headers={"Content-Encoding": "gzip"})

    async with _serve(handler) as port:
        guard, _ = await make_guard(
            f"http://127.0.0.1:{port}", max_response_bytes=100_000, **NO_RETRY
        )
        res = await guard.call(request())
    assert res.outcome is Outcome.SUCCESS and res.status == 200, res


async def test_read_timeout_when_the_upstream_accepts_and_never_answers(make_guard):
    async with _serve_raw(None) as port:
        guard, _ = await make_guard(
            f"http://127.0.0.1:{port}", connect_timeout_s=1.0, read_timeout_s=0.2, **NO_RETRY
        )
        t0 = time.perf_counter()
        res = await guard.call(request())
        elapsed = time.perf_counter() - t0
    assert [a.error_class for a in res.attempts] == [ErrorClass.TIMEOUT_READ]
    assert res.outcome is Outcome.TIMEOUT_READ and res.status is None
    assert 0.19 <= elapsed < 2.5, elapsed


async def test_a_reset_on_a_kept_alive_connection_reaches_the_upstream_once_per_attempt(
    make_guard,
):
    """Every call the upstream sees is an attempt in the record. aiohttp re-sends an
    idempotent request once, on its own, when a reused connection fails; that hidden call
    bypassed the retry policy and budget and was in no record (found by the fault run)."""
    arrivals: list[str] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while head := await reader.readuntil(b"\r\n\r\n"):
                key = next(
                    line.split(b":", 1)[1].strip().decode()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"idempotency-key:")
                )
                arrivals.append(key)
                if key.startswith("reset"):
                    # RST, no answer: the request may or may not have been acted on.
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    writer.transport.abort()
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        guard, _ = await make_guard(f"http://127.0.0.1:{port}", **NO_RETRY)
        warm = await guard.call(request(idempotency_key="warm-1"))  # leaves a kept-alive conn
        assert warm.status == 200, warm
        res = await guard.call(request(method="PUT", idempotency_key="reset-1"))
    finally:
        server.close()
        await server.wait_closed()
    assert [a.error_class for a in res.attempts] == [ErrorClass.CONNECTION_RESET], res
    assert arrivals.count("reset-1") == len(res.attempts) == 1, arrivals


async def test_a_redirect_is_the_answer_and_is_never_followed(make_guard):
    elsewhere: list[str] = []

    async def other_host(request: web.Request) -> web.Response:
        elsewhere.append(request.path)
        return web.Response(text="not allow-listed")

    async with _serve(other_host) as other_port:

        async def redirect(request: web.Request) -> web.Response:
            location = f"http://127.0.0.1:{other_port}/stolen"
            return web.Response(status=302, headers={"Location": location})

        async with _serve(redirect) as port:
            guard, _ = await make_guard(f"http://127.0.0.1:{port}", **NO_RETRY)
            res = await guard.call(request())
    assert res.outcome is Outcome.SUCCESS and res.status == 302, res
    assert elsewhere == []


async def test_the_pool_is_bounded_and_kept_alive(make_guard):
    peers: set[Any] = set()
    in_flight = peak = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.05)
        finally:
            in_flight -= 1
        return web.Response(text="ok")

    async with _serve(handler) as port:
        guard, _ = await make_guard(f"http://127.0.0.1:{port}", max_connections=2, **NO_RETRY)
        for _ in range(3):
            results = await asyncio.gather(*(guard.call(request()) for _ in range(6)))
            assert [r.outcome for r in results] == [Outcome.SUCCESS] * 6
    assert peak == 2
    # 18 calls over the same connections: the pool keeps them alive between calls.
    assert len(peers) <= 2, peers


async def test_a_wait_for_a_pool_slot_is_cut_by_the_deadline(sim, make_guard):
    """The pool is smaller than the bulkhead: the second call waits for a connection, within
    its deadline only."""
    sim.config.latency_ms = 1500
    guard, _ = await make_guard(sim.url, max_connections=1, **NO_RETRY)
    first = asyncio.create_task(guard.call(request()))
    await _until(lambda: sim.stats.in_flight == 1)
    t0 = time.perf_counter()
    second = await guard.call(request(timeout_ms=300))
    elapsed = time.perf_counter() - t0
    assert [a.error_class for a in second.attempts] == [ErrorClass.DEADLINE_EXCEEDED]
    assert 0.29 <= elapsed < 1.4, elapsed
    assert (await first).outcome is Outcome.SUCCESS
    assert sim.stats.total == 1


async def test_a_secret_header_never_reaches_a_detail_a_repr_or_a_log(make_guard, caplog):
    caplog.set_level(logging.DEBUG)
    guard, _ = await make_guard(
        f"http://127.0.0.1:{_closed_port()}",
        secret_headers={"Authorization": "Bearer s3cr3t"},
        **NO_RETRY,
    )
    res = await guard.call(request())
    assert res.error_class is ErrorClass.CONNECT_ERROR
    for text in (res.detail or "", repr(res), repr(guard.client), caplog.text):
        assert "s3cr3t" not in text


async def test_calls_in_progress_feed_the_in_flight_gauge_at_scrape_time(sim, make_guard):
    from netscope.observability.metrics import Metrics

    sim.config.latency_ms = 300
    guard, _ = await make_guard(sim.url, **NO_RETRY)
    metrics = Metrics()
    metrics.init_upstream(NAME, in_flight=guard.calls_in_progress)

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("netscope_in_flight", {"upstream": NAME})

    assert gauge() == 0
    calls = [asyncio.create_task(guard.call(request())) for _ in range(2)]
    await _until(lambda: sim.stats.in_flight == 2)
    assert gauge() == 2
    await asyncio.gather(*calls)
    assert gauge() == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connect_error_on_closed_port_is_retried_up_to_max_attempts(make_guard):
    url = f"http://127.0.0.1:{_closed_port()}"
    guard, events = await make_guard(url, **FAST_RETRY)
    res = await guard.call(request())
    assert res.outcome is Outcome.CONNECT_ERROR
    assert [a.error_class for a in res.attempts] == [ErrorClass.CONNECT_ERROR] * 3
    assert sum(isinstance(e, RetryScheduled) for e in events) == 2


@pytest.fixture
def unaccepting_port() -> Any:
    """A port whose listener has a full accept queue: SYNs are dropped, connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    yield port
    for c in fillers:
        c.close()
    listener.close()


async def test_connect_timeout_when_accept_queue_is_full(unaccepting_port, make_guard):
    guard, _ = await make_guard(
        f"http://127.0.0.1:{unaccepting_port}",
        connect_timeout_s=0.2,
        read_timeout_s=5.0,
        **NO_RETRY,
    )
    res = await guard.call(request())
    assert res.outcome is Outcome.TIMEOUT_CONNECT
    assert [a.error_class for a in res.attempts] == [ErrorClass.TIMEOUT_CONNECT]


async def test_connect_timeout_not_mislabelled_when_deadline_clips_the_read_timeout(
    unaccepting_port, make_guard
):
    # deadline 1 s < read_timeout 5 s clips the read timeout of the try; the connect timeout
    # (0.2 s) is not clipped and is what fires: it must be reported as a connect timeout.
    guard, _ = await make_guard(
        f"http://127.0.0.1:{unaccepting_port}",
        connect_timeout_s=0.2,
        read_timeout_s=5.0,
        deadline_s=1.0,
        **NO_RETRY,
    )
    res = await guard.call(request())
    assert [a.error_class for a in res.attempts] == [ErrorClass.TIMEOUT_CONNECT]
    assert res.outcome is Outcome.TIMEOUT_CONNECT


# -- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
async def test_retries_honour_max_attempts(sim, make_guard, max_attempts):
    sim.config.error_rate = 1.0
    guard, _ = await make_guard(
        sim.url, retry={"max_attempts": max_attempts, "base_backoff_s": 0.01}
    )
    res = await guard.call(request())
    assert res.outcome is Outcome.HTTP_ERROR
    assert res.status == 503
    assert len(res.attempts) == max_attempts
    assert sim.stats.total == max_attempts


async def test_non_retryable_status_is_not_retried(sim, make_guard):
    sim.config.error_rate = 1.0
    sim.config.error_status = 500
    guard, _ = await make_guard(sim.url, **FAST_RETRY)
    res = await guard.call(request())
    assert res.outcome is Outcome.HTTP_ERROR and res.status == 500
    assert sim.stats.total == 1


async def test_post_without_idempotency_key_is_not_retried(sim, make_guard):
    sim.config.error_rate = 1.0
    guard, events = await make_guard(sim.url, **FAST_RETRY)
    res = await guard.call(request(method="POST", idempotency_key=None))
    assert res.outcome is Outcome.HTTP_ERROR
    assert len(res.attempts) == 1
    assert sim.stats.total == 1
    assert not any(isinstance(e, RetryScheduled) for e in events)


async def test_post_with_idempotency_key_is_retried_with_the_same_key(sim, make_guard):
    sim.config.error_rate = 1.0
    guard, _ = await make_guard(sim.url, **FAST_RETRY)
    res = await guard.call(request(method="POST", idempotency_key="order-77"))
    assert len(res.attempts) == 3
    assert sim.stats.total == 3
    keys = [h.get("idempotency-key") for h in sim.stats.headers()]
    assert keys == ["order-77"] * 3


async def test_never_policy_forbids_post_retry_even_with_key(sim, make_guard):
    sim.config.error_rate = 1.0
    guard, _ = await make_guard(sim.url, retry={"max_attempts": 3, "retry_non_idempotent": "never"})
    res = await guard.call(request(method="POST", idempotency_key="k-1"))
    assert len(res.attempts) == 1
    assert sim.stats.total == 1


async def test_retry_after_is_a_floor_between_attempts(sim, make_guard):
    sim.config.rate_429 = 1.0
    sim.config.retry_after_s = 0.3
    guard, _ = await make_guard(sim.url, retry={"max_attempts": 3, "base_backoff_s": 0.001})
    res = await guard.call(request())
    assert res.outcome is Outcome.HTTP_ERROR and res.status == 429
    arrivals = sim.stats.arrivals()
    assert len(arrivals) == 3
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.3 - 0.01, gaps  # tolerance: arrival stamps, not send stamps


# -- events: typed, one per attempt, denials by reason -------------------------------------


def _of(kind: type, events: list[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def test_every_attempt_publishes_attempt_finished_before_its_retry(sim, make_guard):
    sim.config.error_rate = 1.0
    guard, events = await make_guard(sim.url, **FAST_RETRY)
    res = await guard.call(request())
    finished = _of(AttemptFinished, events)
    assert [(e.upstream, e.status, e.error_class) for e in finished] == [(NAME, 503, None)] * 3
    # The audit rounds an attempt's duration to the microsecond; the event carries it whole.
    assert [round(e.duration_s, 6) for e in finished] == [a.duration_s for a in res.attempts]
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["AttemptFinished", "RetryScheduled"] * 2 + ["AttemptFinished"]


async def test_attempt_finished_carries_the_error_class_as_the_enum(make_guard):
    guard, events = await make_guard(f"http://127.0.0.1:{_closed_port()}", **NO_RETRY)
    res = await guard.call(request())
    (finished,) = _of(AttemptFinished, events)
    assert finished.status is None
    assert type(finished.error_class) is ErrorClass
    assert finished.error_class is ErrorClass.CONNECT_ERROR
    assert type(res.error_class) is ErrorClass


async def test_retry_scheduled_carries_reason_and_detail(sim, make_guard):
    sim.config.error_rate = 1.0
    guard, events = await make_guard(sim.url, **FAST_RETRY)
    await guard.call(request())
    scheduled = _of(RetryScheduled, events)
    assert [e.reason for e in scheduled] == [RetryReason.RETRYABLE] * 2
    assert [e.detail for e in scheduled] == ["retryable status 503"] * 2
    assert [e.attempt for e in scheduled] == [1, 2]


async def test_an_exhausted_budget_publishes_retry_denied(sim, make_guard):
    sim.config.error_rate = 1.0
    guard, events = await make_guard(
        sim.url, retry_budget={"ratio": 0.0, "min_retries_per_s": 0.0}, **FAST_RETRY
    )
    res = await guard.call(request())
    assert len(res.attempts) == 1
    assert [(e.upstream, e.reason, e.detail) for e in _of(RetryDenied, events)] == [
        (NAME, RetryReason.BUDGET, "retry budget exhausted")
    ]


async def test_a_retry_that_cannot_finish_in_time_publishes_retry_denied(sim, make_guard):
    sim.config.error_rate = 1.0
    # The per-try timeout, clipped to the message's 0.5 s, leaves no room for a second try.
    guard, events = await make_guard(sim.url, **FAST_RETRY)
    await guard.call(request(timeout_ms=500))
    (denied,) = _of(RetryDenied, events)
    assert denied.reason is RetryReason.DEADLINE
    assert denied.detail.startswith("deadline")


@pytest.mark.parametrize(
    ("status", "retry"),
    [(500, FAST_RETRY["retry"]), (503, {"max_attempts": 1})],
    ids=["not_retryable", "max_attempts"],
)
async def test_policy_refusals_publish_no_retry_denied(sim, make_guard, status, retry):
    # Only budget and deadline refusals are something to alert on; these are the policy.
    sim.config.error_rate = 1.0
    sim.config.error_status = status
    guard, events = await make_guard(sim.url, retry=retry)
    await guard.call(request())
    assert _of(RetryDenied, events) == []
    assert len(_of(AttemptFinished, events)) == 1


# -- headers sent upstream -----------------------------------------------------------------


async def test_traceparent_and_idempotency_key_sent_upstream(sim, make_guard):
    guard, _ = await make_guard(sim.url)
    req = request(idempotency_key="idem-1")
    res = await guard.call(req)
    assert res.outcome is Outcome.SUCCESS and res.status == 200
    [headers] = sim.stats.headers()
    assert headers["traceparent"] == req.trace.header
    assert headers["traceparent"].split("-")[1] == req.message.traceparent.split("-")[1]
    assert headers["idempotency-key"] == "idem-1"


async def test_idempotency_key_defaults_to_request_id(sim, make_guard):
    guard, _ = await make_guard(sim.url)
    req = request(idempotency_key=None)
    await guard.call(req)
    [headers] = sim.stats.headers()
    assert headers["idempotency-key"] == req.request_id


@pytest.fixture
async def header_echo() -> AsyncIterator[tuple[str, list[Any]]]:
    """A bare upstream that keeps every header line, duplicates included."""
    seen: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())  # CIMultiDict: getall() sees duplicates
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_secret_headers_sent_and_configured_headers_win(header_echo, make_guard):
    url, seen = header_echo
    guard, _ = await make_guard(
        url,
        headers={"X-Tenant": "ops"},
        secret_headers={"Authorization": "Bearer s3cr3t"},
    )
    req = request(headers={"x-tenant": "evil", "authorization": "Bearer evil", "X-Extra": "kept"})
    res = await guard.call(req)
    assert res.outcome is Outcome.SUCCESS
    [h] = seen
    # exactly one line each, case-insensitively, carrying the operator's value
    assert h.getall("X-Tenant") == ["ops"]
    assert h.getall("Authorization") == ["Bearer s3cr3t"]
    assert h.getall("X-Extra") == ["kept"]
    assert "s3cr3t" not in repr(guard.cfg)


# -- saturation: bulkhead and rate limit, reject vs wait -------------------------------------


async def test_bulkhead_reject_when_full(sim, make_guard):
    sim.config.latency_ms = 400
    guard, _ = await make_guard(
        sim.url, bulkhead={"max_concurrent": 1}, on_saturation="reject", **NO_RETRY
    )
    first = asyncio.create_task(guard.call(request()))
    await _until(lambda: sim.stats.in_flight == 1)
    second = await guard.call(request())
    assert second.outcome is Outcome.REJECTED_RATE_LIMITED
    assert second.error_class is ErrorClass.BULKHEAD_FULL
    assert second.attempts == []
    assert (await first).outcome is Outcome.SUCCESS
    assert sim.stats.total == 1


async def test_bulkhead_wait_serialises_calls(sim, make_guard):
    sim.config.latency_ms = 300
    guard, _ = await make_guard(
        sim.url,
        bulkhead={"max_concurrent": 1},
        on_saturation="wait",
        max_saturation_wait_s=10,
        **NO_RETRY,
    )
    results = await asyncio.gather(*(guard.call(request()) for _ in range(3)))
    assert [r.outcome for r in results] == [Outcome.SUCCESS] * 3
    # Time waiting for the slot is queueing, reported apart from NetScope's own overhead.
    waits = sorted(r.queued_s for r in results)
    assert waits[0] < 0.05 and waits[1] >= 0.25 and waits[2] >= 0.5, waits
    arrivals = sorted(sim.stats.arrivals())
    # one at a time: each arrival waits for the previous 300 ms answer
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.29, gaps
    assert guard.bulkhead.in_use == 0


async def test_bulkhead_waiters_are_served_first_come_first_served(make_guard):
    guard, _ = await make_guard(
        "http://127.0.0.1:9",
        bulkhead={"max_concurrent": 1},
        on_saturation="wait",
        max_saturation_wait_s=10,
    )
    far = guard.clock.monotonic() + 60
    assert guard.bulkhead.try_acquire()  # the only slot is taken
    order: list[int] = []

    async def waiter(i: int) -> None:
        assert await guard._admit_bulkhead(far, CallResult(Outcome.SUCCESS))
        order.append(i)
        guard._release_bulkhead()

    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(waiter(i)))
        await _until(lambda n=i + 1: len(guard._bulkhead_waiters) == n)
    # A newcomer does not jump the queue even if it arrives as a slot frees.
    guard._release_bulkhead()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert guard.bulkhead.in_use == 0 and not guard._bulkhead_waiters


async def test_bulkhead_slot_handed_to_a_cancelled_waiter_is_passed_on(make_guard):
    guard, _ = await make_guard(
        "http://127.0.0.1:9",
        bulkhead={"max_concurrent": 1},
        on_saturation="wait",
        max_saturation_wait_s=10,
    )
    far = guard.clock.monotonic() + 60
    assert guard.bulkhead.try_acquire()
    first = asyncio.create_task(guard._admit_bulkhead(far, CallResult(Outcome.SUCCESS)))
    await _until(lambda: len(guard._bulkhead_waiters) == 1)
    second = asyncio.create_task(guard._admit_bulkhead(far, CallResult(Outcome.SUCCESS)))
    await _until(lambda: len(guard._bulkhead_waiters) == 2)
    guard._release_bulkhead()  # hands the slot to `first` ...
    first.cancel()  # ... which is cancelled (shutdown) before it runs again
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second, "the slot went on to the next waiter"
    guard._release_bulkhead()
    assert guard.bulkhead.in_use == 0 and not guard._bulkhead_waiters


async def test_bulkhead_wait_timeout_leaves_no_waiter_behind(make_guard):
    guard, _ = await make_guard(
        "http://127.0.0.1:9",
        bulkhead={"max_concurrent": 1},
        on_saturation="wait",
        max_saturation_wait_s=0.05,
    )
    assert guard.bulkhead.try_acquire()
    result = CallResult(Outcome.SUCCESS)
    assert not await guard._admit_bulkhead(guard.clock.monotonic() + 60, result)
    assert result.queued_s >= 0.04, "the wait that gave up is queueing too"
    assert not guard._bulkhead_waiters
    guard._release_bulkhead()
    assert guard.bulkhead.in_use == 0


async def test_bulkhead_wait_gives_up_after_max_saturation_wait(sim, make_guard):
    sim.config.latency_ms = 1500
    guard, _ = await make_guard(
        sim.url,
        bulkhead={"max_concurrent": 1},
        on_saturation="wait",
        max_saturation_wait_s=0.2,
        **NO_RETRY,
    )
    first = asyncio.create_task(guard.call(request()))
    await _until(lambda: sim.stats.in_flight == 1)
    second = await guard.call(request())
    assert second.outcome is Outcome.REJECTED_RATE_LIMITED
    assert second.error_class is ErrorClass.BULKHEAD_FULL
    assert (await first).outcome is Outcome.SUCCESS
    assert guard.bulkhead.in_use == 0


async def test_rate_limit_reject(sim, make_guard):
    guard, _ = await make_guard(
        sim.url, rate_limit={"rate_per_s": 0.5, "burst": 2}, on_saturation="reject"
    )
    results = [await guard.call(request()) for _ in range(4)]
    outcomes = [r.outcome for r in results]
    assert outcomes[:2] == [Outcome.SUCCESS] * 2
    assert outcomes[2:] == [Outcome.REJECTED_RATE_LIMITED] * 2
    assert {r.error_class for r in results[2:]} == {ErrorClass.RATE_LIMITED}
    assert sim.stats.total == 2


async def test_rate_limit_wait_spaces_calls(sim, make_guard):
    guard, _ = await make_guard(
        sim.url,
        rate_limit={"rate_per_s": 5, "burst": 1},
        on_saturation="wait",
        max_saturation_wait_s=5,
    )
    results = [await guard.call(request()) for _ in range(4)]
    assert [r.outcome for r in results] == [Outcome.SUCCESS] * 4
    arrivals = sim.stats.arrivals()
    # 5/s with burst 1: the 3 later calls needed 0.2 s of refill each
    assert arrivals[-1] - arrivals[0] >= 3 * 0.2 - 0.05


async def test_rate_limit_wait_longer_than_allowed_rejects(sim, make_guard):
    guard, _ = await make_guard(
        sim.url,
        rate_limit={"rate_per_s": 0.2, "burst": 1},
        on_saturation="wait",
        max_saturation_wait_s=0.5,
    )
    assert (await guard.call(request())).outcome is Outcome.SUCCESS
    res = await guard.call(request())
    assert res.outcome is Outcome.REJECTED_RATE_LIMITED
    assert res.error_class is ErrorClass.RATE_LIMITED
    assert sim.stats.total == 1


# -- breaker in the guard ------------------------------------------------------------------


async def test_open_breaker_rejects_without_calling(sim, make_guard):
    sim.config.error_rate = 1.0
    guard, _ = await make_guard(
        sim.url,
        breaker={"minimum_calls": 4, "window_size_calls": 4, "wait_in_open_s": 60},
        **NO_RETRY,
    )
    results: list[CallResult] = [await guard.call(request()) for _ in range(6)]
    assert [r.outcome for r in results[:4]] == [Outcome.HTTP_ERROR] * 4
    assert [r.outcome for r in results[4:]] == [Outcome.REJECTED_CIRCUIT_OPEN] * 2
    assert sim.stats.total == 4


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)
