"""The event stream's doors and its memory (issue 15, item 4, WebSocket).

* With ``api.ws_token`` set, a client without it, or with a wrong one, is closed 4401; a
  browser page of another origin is closed 4403 even with the right token.
* A client that connects and never reads must not slow the pipeline nor another client,
  and what the server keeps for it stays bounded: its hub queue stops at
  ``api.ws_client_queue`` (the rest is dropped and counted) and the socket's write buffer
  stops at the transport's high-water mark (uvicorn waits for ``resume_writing``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from netscope.service import Service
from tests.harness import make_traffic, produce, wait_for
from tests.security.support import service_with

pytestmark = pytest.mark.integration

WS_TOKEN = "ws-viewer-5d1e8a"
QUEUE_BOUND = 1000  # api.ws_client_queue's default
CHUNK = 600


async def close_code(url: str, **kw: Any) -> int | None:
    """Connect, and return the close code the server ends with (None: it stayed open)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url, **kw) as ws:
        try:
            msg = await ws.receive(timeout=10)
        except TimeoutError:
            return None
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code
        return None  # it sent an event: admitted


async def test_token_and_origin_are_enforced(tansu_broker, tmp_path: Path) -> None:
    async with service_with(
        tansu_broker, f"wsauth-{os.getpid()}", tmp_path, api={"ws_token": WS_TOKEN}
    ) as (service, _sim):
        ws = service.base_url.replace("http", "ws", 1) + "/ws/events"
        host = service.base_url.removeprefix("http://")
        rejected = service.hub.metrics.rejected

        assert await close_code(ws) == 4401
        assert await close_code(f"{ws}?token=wrong") == 4401
        assert await close_code(ws, headers={"Authorization": "Bearer wrong"}) == 4401
        assert await close_code(f"{ws}?token={WS_TOKEN[:-1]}") == 4401
        assert rejected.labels("unauthorized")._value.get() == 4

        evil = {"Origin": "http://evil.example"}
        assert await close_code(f"{ws}?token={WS_TOKEN}", headers=evil) == 4403
        # A look-alike of the service's own host is still another origin.
        lookalike = {"Origin": f"http://{host}.evil.example"}
        assert await close_code(f"{ws}?token={WS_TOKEN}", headers=lookalike) == 4403
        assert rejected.labels("origin")._value.get() == 2

        # Admitted: the right token by query or header, from no origin or its own.
        # (Heartbeats and summaries come within a second or two: "stayed open" means admitted.)
        assert await close_code(f"{ws}?token={WS_TOKEN}") is None
        assert await close_code(ws, headers={"Authorization": f"Bearer {WS_TOKEN}"}) is None
        own = {"Origin": f"http://{host}"}
        assert await close_code(f"{ws}?token={WS_TOKEN}", headers=own) is None
        await wait_for(lambda: service.hub.client_count == 0, timeout_s=10, what="all gone")


class NeverReads:
    """A raw WebSocket client that completes the handshake and then never reads.

    Its receive buffer is made tiny before connecting, so the server's writes back up at
    once instead of filling megabytes of loopback buffers first."""

    def __init__(self, base_url: str) -> None:
        self._host, port = base_url.removeprefix("http://").rsplit(":", 1)
        self._port = int(port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        await loop.sock_connect(self.sock, (self._host, self._port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws/events HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(self.sock, request.encode())
        head = b""
        while b"\r\n\r\n" not in head:  # the handshake answer only, then never again
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 1), 10)
            assert chunk, "server closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head

    def close(self) -> None:
        self.sock.close()


class Reader:
    """A well-behaved client: reads everything, remembers call events and drop notices."""

    def __init__(self) -> None:
        self.calls: set[str] = set()
        self.dropped = 0

    async def run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            event = orjson.loads(msg.data)
            if event["type"] == "call":
                self.calls.add(event["request_id"])
            elif event["type"] == "dropped":
                self.dropped += event["count"]


async def timed_chunk(
    service: Service, bootstrap: str, topic: str, seed: int, reader: Reader
) -> float:
    """Produce CHUNK messages; seconds until all are processed and the reader saw them."""
    items = make_traffic(CHUNK, upstreams=["payments"], seed=seed, keys=256)
    ids = {req["request_id"] for *_, req in items if req is not None}
    target = service.pipeline.processed + CHUNK
    started = time.monotonic()
    await produce(bootstrap, topic, items)
    await wait_for(
        lambda: service.pipeline.processed >= target,
        timeout_s=120,
        interval_s=0.02,
        what=f"{CHUNK} messages processed",
    )
    took = time.monotonic() - started
    try:
        await wait_for(lambda: ids <= reader.calls, timeout_s=30, what="the reader")
    except AssertionError:
        missing = len(ids - reader.calls)
        raise AssertionError(f"reader: {missing} calls missing, {reader.dropped} dropped") from None
    return took


async def test_a_client_that_never_reads_costs_nothing_but_its_bounded_queue(
    tansu_broker, tmp_path: Path
) -> None:
    topic = f"wsslow-{os.getpid()}"
    async with (
        service_with(tansu_broker, topic, tmp_path) as (service, _sim),
        aiohttp.ClientSession() as http,
        http.ws_connect(service.base_url + "/ws/events") as ws,
    ):
        hub = service.hub
        reader = Reader()
        reading = asyncio.create_task(reader.run(ws))
        bootstrap = tansu_broker.bootstrap
        try:
            await timed_chunk(service, bootstrap, topic, 1, reader)  # warm-up: joins, JIT
            baseline = await timed_chunk(service, bootstrap, topic, 2, reader)

            before = set(hub._clients)
            stuck = NeverReads(service.base_url)
            await stuck.connect()
            await wait_for(lambda: hub.client_count == 2, timeout_s=10, what="both clients")
            (slow,) = set(hub._clients) - before
            dropped_before = hub.dropped_total
            # Traffic until the stuck client's queue is at its bound (bounded: 20 chunks).
            seed = 3
            while not slow.queue.full() and seed < 23:
                await timed_chunk(service, bootstrap, topic, seed, reader)
                seed += 1
            assert slow.queue.full(), "the stuck client's queue never filled"
            with_stuck = await timed_chunk(service, bootstrap, topic, seed, reader)

            # Bounded: the queue holds exactly its bound, the rest was dropped and counted.
            assert slow.queue.qsize() == QUEUE_BOUND
            assert hub.dropped_total - dropped_before >= CHUNK
            # uvicorn's connection to the stuck socket: its transport's buffer stops at the
            # high-water mark (64 KiB) plus the one frame being written.
            peer = stuck.sock.getsockname()[:2]
            (protocol,) = (p for p in service.server.server_state.connections if p.client == peer)
            buffered = protocol.transport.get_write_buffer_size()
            assert buffered <= 256 * 1024, buffered
            # The other client lost nothing and the pipeline did not slow down.
            assert reader.dropped == 0
            assert with_stuck <= 1.5 * baseline + 1.0, (baseline, with_stuck)
            print(
                f"\nchunk of {CHUNK}: {baseline:.2f} s alone, {with_stuck:.2f} s with a "
                f"stuck client (queue {slow.queue.qsize()}/{QUEUE_BOUND}, "
                f"{hub.dropped_total - dropped_before} dropped, {buffered} B buffered)"
            )
            stuck.close()
            await wait_for(lambda: hub.client_count == 1, timeout_s=30, what="stuck one gone")
        finally:
            reading.cancel()
