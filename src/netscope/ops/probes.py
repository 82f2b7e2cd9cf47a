"""The I/O of ``netscope check``: NetScope's endpoints, Prometheus' HTTP API, the NTP client.

Thin on purpose: every function returns figures (``figures.py``) or an error string and
judges nothing, so the checklist stays pure. Every request is bounded; nothing here
retries, because a check that hides a slow answer behind retries reports a healthier
system than the one an operator has.

Only unauthenticated endpoints are read (``/health/*``, ``/api/status``, ``/metrics``,
``/ws/events``): the checklist must work for an on-call engineer without the admin token.
``/ws/events`` needs ``api.ws_token`` when the service sets one: pass it in
``NETSCOPE_API__WS_TOKEN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from netscope.ops import exposition
from netscope.ops.clock import parse_chronyc_tracking, parse_timesync_status
from netscope.ops.figures import Answer, Clock, Trends, Window
from netscope.ops.promql import Queries, trends_from, window_from

HTTP_TIMEOUT_S = 5.0
CLOCK_TOOL_TIMEOUT_S = 3.0


def _error(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def get(client: httpx.AsyncClient, path: str) -> Answer:
    """One GET of NetScope; the JSON body when there is one."""
    try:
        resp = await client.get(path)
    except httpx.HTTPError as exc:
        return Answer(None, error=_error(exc))
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    return Answer(resp.status_code, body)


async def scrape(client: httpx.AsyncClient) -> tuple[exposition.Scrape | None, str]:
    """NetScope's ``/metrics``, parsed; or None and why."""
    try:
        resp = await client.get("/metrics")
        resp.raise_for_status()
        return exposition.parse(resp.text), ""
    except (httpx.HTTPError, ValueError) as exc:
        return None, f"GET /metrics: {_error(exc)}"


class EventStream:
    """What became of the check's own WebSocket client: ``problem`` is "" while it listens."""

    def __init__(self) -> None:
        self.problem = ""


@contextlib.asynccontextmanager
async def event_stream(url: str) -> AsyncIterator[EventStream]:
    """Hold one WebSocket client on ``/ws/events`` (summaries only) while the window runs.

    Why: ``netscope_ws_broadcast_delay_seconds`` only observes events sent to clients; with
    no dashboard open the WS item would have nothing to judge. A client that cannot connect
    (or is closed, e.g. for a missing ``api.ws_token``) only leaves that item unjudged: its
    ``problem`` says why.
    """
    from websockets.asyncio.client import connect

    stream = EventStream()
    ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    ws_url = ws_url.rstrip("/") + "/ws/events?type=summary"
    token = os.environ.get("NETSCOPE_API__WS_TOKEN")
    if token:
        ws_url += "&token=" + quote(token, safe="")
    where = ws_url.split("?")[0]
    try:
        async with asyncio.timeout(HTTP_TIMEOUT_S):
            conn = await connect(ws_url, open_timeout=HTTP_TIMEOUT_S)
    except Exception as exc:  # any failure only means "no WS figure": say why
        stream.problem = f"WebSocket {where}: {_error(exc)}"
        yield stream
        return

    async def drain() -> None:
        # Read what the hub sends so its queue for this client never fills.
        try:
            async for _ in conn:
                pass
        except Exception:
            pass
        code, reason = conn.close_code, conn.close_reason
        stream.problem = f"WebSocket {where} closed by NetScope" + (
            f": {code} {reason}".rstrip() if code is not None else ""
        )

    reader = asyncio.create_task(drain())
    try:
        yield stream
    finally:
        reader.cancel()
        # Not `suppress(BaseException)` around `await reader`: that would also swallow a
        # cancellation of this task (Ctrl-C of `check --watch`), and the watch went on.
        await asyncio.wait({reader})
        with contextlib.suppress(Exception):
            async with asyncio.timeout(HTTP_TIMEOUT_S):
                await conn.close()


async def sample_window(
    client: httpx.AsyncClient, url: str, seconds: float
) -> tuple[Window | None, str, str]:
    """Two scrapes of ``/metrics`` ``seconds`` apart, with a WS client held in between:
    the window (or None and why), and why the WS client could not listen ("" if it did).

    The sleep is the measurement itself (the window's length), not a synchronisation.
    """
    async with event_stream(url) as stream:
        before, problem = await scrape(client)
        if before is None:
            return None, problem, stream.problem
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        after, problem = await scrape(client)
        span = time.monotonic() - t0
        ws_problem = stream.problem
    if after is None:
        return None, problem, ws_problem
    return exposition.window(before, after, span), "", ws_problem


# -- Prometheus -----------------------------------------------------------------------------


class PrometheusError(Exception):
    """Prometheus did not answer, or refused a query (the message says which)."""


class PrometheusApi:
    """The two calls of Prometheus' HTTP API the check needs (``/api/v1/query[_range]``)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def _get(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        try:
            resp = await self._client.get(path, params=params)
            doc = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(_error(exc)) from exc
        if doc.get("status") != "success":
            raise PrometheusError(
                f"{params['query']!r}: {doc.get('errorType')}: {doc.get('error')}"
            )
        return list(doc["data"]["result"])

    async def query(self, promql: str) -> list[dict[str, Any]]:
        return await self._get("/api/v1/query", {"query": promql})

    async def query_range(
        self, promql: str, start: float, end: float, step_s: float
    ) -> list[dict[str, Any]]:
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                  "step": f"{step_s:.3f}"}  # fmt: skip
        return await self._get("/api/v1/query_range", params)


async def read_prometheus(url: str, queries: Queries) -> tuple[int, Window, Trends]:
    """Processes scraped, the window over ``rate_window``, the trends. Raises
    ``PrometheusError`` naming the first query that failed."""
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=HTTP_TIMEOUT_S) as client:
        api = PrometheusApi(client)
        processes = await api.query(queries.processes())
        window_q, instants_q = queries.window(), queries.trend_instants()
        end = time.time()
        start = end - queries.trend_window_s
        names = [*window_q, *instants_q]
        answers = await asyncio.gather(*(api.query(q) for q in (*window_q.values(),
                                                                *instants_q.values())))  # fmt: skip
        by_name = dict(zip(names, answers, strict=True))
        ranges = {
            name: await api.query_range(q, start, end, queries.trend_step_s)
            for name, q in queries.trend_ranges().items()
        }
    count = int(float(processes[0]["value"][1])) if processes else 0
    window = window_from(
        {n: by_name[n] for n in window_q}, f"last {queries.rate_window}, Prometheus"
    )
    trends = trends_from(ranges, {n: by_name[n] for n in instants_q}, queries.trend_window_s)
    return count, window, trends


# -- the host's clock -------------------------------------------------------------------------


async def _run(*argv: str) -> str | None:
    """stdout of a short command, or None if it is missing, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return None
    try:
        async with asyncio.timeout(CLOCK_TOOL_TIMEOUT_S):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return out.decode(errors="replace") if proc.returncode == 0 else None


async def read_clock() -> Clock:
    """The NTP client's offset: chrony first, then systemd-timesyncd; "unknown" otherwise."""
    attempts = (
        (("chronyc", "-n", "tracking"), parse_chronyc_tracking),
        (("timedatectl", "timesync-status"), parse_timesync_status),
    )
    tried = []
    for argv, parse in attempts:
        tried.append(" ".join(argv))
        text = await _run(*argv)
        clock = parse(text) if text else None
        if clock is not None:
            return clock
    return Clock(source="", detail=f"no NTP client answered ({', '.join(tried)})")
