"""A fake upstream HTTP API whose failure modes can be turned up and down while it runs.

The gateway's resilience features (timeouts, retries, breakers, Retry-After handling,
trace propagation, idempotency keys) can only be shown honestly against an upstream that
really is slow, really refuses, really hangs and really drops connections. This module is
that upstream: tests use it in-process, the demo and game days run it as
``netscope upstream-sim`` and turn its knobs live through ``PUT /_sim/config``.

Everything under ``/_sim/`` is control plane and is never counted as traffic, so tests can
read ``/_sim/stats`` to assert what the gateway actually sent (e.g. "no calls while the
breaker was open", "calls spaced per Retry-After", "traceparent propagated").

Beyond refusals and hangs it plays the hostile upstreams a gateway must survive: headers
trickled a byte at a time (slowloris), a body that never ends, a small gzip body that inflates
to 64 MiB, and a redirect to another host (which a gateway must never follow).

Note for anyone counting resets: a plain aiohttp client silently re-sends an idempotent
request (GET, PUT, DELETE, ...) once when the server drops a kept-alive connection, so one
reset GET from such a client shows up here as two arrivals (NetScope turns that off).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gzip
import math
import random
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass, fields
from typing import Annotated, Any

import orjson
import typer
from aiohttp import web

from netscope.runtime import run_loop, wait_event

LATENCY_DISTRIBUTIONS = ("fixed", "uniform", "lognormal")
CONTROL_PREFIX = "/_sim/"

# Outcome labels, as counted in stats and echoed in the X-Sim-Outcome response header.
OUTCOME_OK = "ok"
OUTCOME_ERROR = "error"
OUTCOME_429 = "rate_limited"
OUTCOME_HANG = "hang"
OUTCOME_RESET = "reset"
OUTCOME_SLOWLORIS = "slowloris"
OUTCOME_ENDLESS = "endless_body"
OUTCOME_GZIP_BOMB = "gzip_bomb"
OUTCOME_REDIRECT = "redirect"
HOSTILE_RATES = ("slowloris_rate", "endless_body_rate", "gzip_bomb_rate", "redirect_rate")
GZIP_BOMB_INFLATED_BYTES = 64 << 20


@dataclass
class SimConfig:
    """Knobs of the simulated upstream; every field can be patched live.

    Fault draws happen in this order, each independently: reset, hang, slowloris, endless
    body, gzip bomb, redirect, 429, error; the first that fires decides the outcome,
    otherwise the answer is 200.
    """

    latency_ms: float = 5.0
    latency_jitter_ms: float = 0.0
    # fixed: always latency_ms; uniform: latency_ms +/- jitter; lognormal: mean latency_ms,
    # standard deviation jitter (a long right tail, like real upstreams).
    latency_distribution: str = "uniform"
    error_rate: float = 0.0
    error_status: int = 503
    rate_429: float = 0.0
    # Sent verbatim in Retry-After: whole numbers as delta-seconds, fractions (handy for
    # fast tests) as a decimal string, which strict RFC 9110 parsers will not accept.
    retry_after_s: float = 1.0
    hang_rate: float = 0.0
    # A hung request is answered (as a normal 200) after this long if the client is still
    # there; a client that gives up earlier cancels the hang.
    hang_s: float = 30.0
    reset_rate: float = 0.0
    # Status line and headers sent one byte every slowloris_interval_s (until hang_s).
    slowloris_rate: float = 0.0
    slowloris_interval_s: float = 0.5
    # 200, chunked, 1 KiB every 10 ms for as long as the client reads (until hang_s).
    endless_body_rate: float = 0.0
    # 200 with Content-Encoding: gzip, ~64 KiB on the wire, 64 MiB once inflated.
    gzip_bomb_rate: float = 0.0
    # 302 to redirect_location: another host (by default, a cloud metadata address).
    redirect_rate: float = 0.0
    redirect_location: str = "http://169.254.169.254/latest/meta-data/"
    response_bytes: int = 64
    seed: int | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        for name in (
            "latency_ms",
            "latency_jitter_ms",
            "retry_after_s",
            "hang_s",
            "slowloris_interval_s",
        ):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("error_rate", "rate_429", "hang_rate", "reset_rate", *HOSTILE_RATES):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if self.latency_distribution not in LATENCY_DISTRIBUTIONS:
            raise ValueError(
                f"latency_distribution must be one of {LATENCY_DISTRIBUTIONS}, "
                f"got {self.latency_distribution!r}"
            )
        if not _is_int(self.error_status) or not 400 <= self.error_status <= 599:
            raise ValueError(
                f"error_status must be an int in [400, 599], got {self.error_status!r}"
            )
        if not _is_int(self.response_bytes) or self.response_bytes < 0:
            raise ValueError(f"response_bytes must be an int >= 0, got {self.response_bytes!r}")
        if not isinstance(self.redirect_location, str):
            raise ValueError(f"redirect_location must be a string, got {self.redirect_location!r}")
        if self.seed is not None and not _is_int(self.seed):
            raise ValueError(f"seed must be an int or null, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def apply_patch(self, patch: dict[str, Any]) -> None:
        """Validate ``patch`` as a whole, then apply it in place (all or nothing)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(patch) - known)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        candidate = dataclasses.replace(self, **patch)
        candidate.validate()
        # In place, so every holder of this object (tests, the running app) sees the change.
        for name in patch:
            setattr(self, name, getattr(candidate, name))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class SimStats:
    """What the simulated upstream has seen: counters plus a bounded history of requests."""

    def __init__(self, history_size: int = 1000) -> None:
        self.history_size = history_size
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.by_status: Counter[int] = Counter()
        self.by_outcome: Counter[str] = Counter()
        self.by_path: Counter[str] = Counter()
        # Every Idempotency-Key ever sent (not bounded like ``recent``): "no key reached the
        # upstream twice" must hold over a whole run, not the last thousand requests.
        self.by_idempotency_key: Counter[str] = Counter()
        self.in_flight = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=self.history_size)

    def record_arrival(self, request: web.BaseRequest) -> dict[str, Any]:
        self.total += 1
        self.by_path[request.path] += 1
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            self.by_idempotency_key[key] += 1
        entry: dict[str, Any] = {
            "t": time.time(),
            "method": request.method,
            "path": request.path_qs,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "outcome": None,
            "status": None,
        }
        self.recent.append(entry)
        return entry

    @staticmethod
    def record_outcome(entry: dict[str, Any], outcome: str, status: int | None) -> None:
        entry["outcome"] = outcome
        entry["status"] = status

    def finish(self, outcome: str, status: int | None) -> None:
        self.by_outcome[outcome] += 1
        if status is not None:
            self.by_status[status] += 1

    def arrivals(self, path: str | None = None) -> list[float]:
        """Arrival times (epoch seconds) of the recent requests, optionally for one path."""
        return [e["t"] for e in self.recent if path is None or _path_only(e["path"]) == path]

    def headers(self, path: str | None = None) -> list[dict[str, str]]:
        """Lower-cased request headers of the recent requests, oldest first."""
        return [e["headers"] for e in self.recent if path is None or _path_only(e["path"]) == path]

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "in_flight": self.in_flight,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_outcome": dict(self.by_outcome),
            "by_path": dict(self.by_path),
            "idempotency_keys": len(self.by_idempotency_key),
            "idempotency_keys_repeated": {
                k: n for k, n in self.by_idempotency_key.items() if n > 1
            },
            "history_size": self.history_size,
            "recent_arrivals": [e["t"] for e in self.recent],
            "recent": list(self.recent),
        }


def _path_only(path_qs: str) -> str:
    return path_qs.split("?", 1)[0]


class UpstreamSim:
    """The simulated upstream as an in-process aiohttp server.

    ``config`` is live: mutate it (or PUT /_sim/config) and the next request obeys it.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        history_size: int = 1000,
    ) -> None:
        self.config = config if config is not None else SimConfig()
        self.config.validate()
        self.host = host
        self.port = port
        self.stats = SimStats(history_size)
        self._rand = random.Random(self.config.seed)
        self._seed_in_use = self.config.seed
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("UpstreamSim is not started")
        return self._url

    def make_app(self) -> web.Application:
        app = web.Application()
        # Control routes first: aiohttp matches in registration order and the catch-all
        # would otherwise swallow them.
        app.router.add_get("/_sim/config", self._get_config)
        app.router.add_put("/_sim/config", self._put_config)
        app.router.add_get("/_sim/stats", self._get_stats)
        app.router.add_post("/_sim/reset-stats", self._reset_stats)
        app.router.add_route("*", "/{tail:.*}", self._traffic)
        return app

    async def start(self) -> str:
        """Start listening; returns the base URL (with the real port when port=0)."""
        if self._runner is not None:
            return self.url
        # handler_cancellation: a client that gives up on a hung request cancels the hang
        # instead of leaving it parked until hang_s.
        self._runner = web.AppRunner(
            self.make_app(), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        # A gateway starting on a backlog opens its whole pool at once (two workers: 200
        # connections): the default listen backlog of 128 drops SYNs, and a SYN retried after
        # the kernel's 1 s shows up as a connect timeout that no real upstream would cause.
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        port = self._runner.addresses[0][1]
        self.port = port
        self._url = f"http://{self.host}:{port}"
        return self._url

    async def stop(self) -> None:
        if self._runner is None:
            return
        self._closing.set()  # releases hung handlers so shutdown is prompt
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> UpstreamSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- control plane -------------------------------------------------------------------

    async def _get_config(self, request: web.Request) -> web.Response:
        return _json(self.config.to_dict())

    async def _put_config(self, request: web.Request) -> web.Response:
        try:
            patch = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _json({"error": f"body is not JSON: {exc}"}, status=400)
        if not isinstance(patch, dict):
            return _json({"error": "body must be a JSON object of SimConfig fields"}, status=400)
        try:
            self.config.apply_patch(patch)
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, status=400)
        return _json(self.config.to_dict())

    async def _get_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats.snapshot())

    async def _reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return _json({"reset": True})

    # -- traffic -------------------------------------------------------------------------

    def _rng(self) -> random.Random:
        # A live seed change restarts the sequence so runs stay reproducible.
        if self.config.seed != self._seed_in_use:
            self._rand = random.Random(self.config.seed)
            self._seed_in_use = self.config.seed
        return self._rand

    def _latency_s(self, rand: random.Random) -> float:
        cfg = self.config
        base, jitter = cfg.latency_ms, cfg.latency_jitter_ms
        if cfg.latency_distribution == "fixed" or jitter == 0 or base == 0:
            ms = base
        elif cfg.latency_distribution == "uniform":
            ms = rand.uniform(base - jitter, base + jitter)
        else:
            sigma2 = math.log1p((jitter / base) ** 2)
            ms = rand.lognormvariate(math.log(base) - sigma2 / 2, math.sqrt(sigma2))
        return max(0.0, ms) / 1000.0

    def _decide(self, rand: random.Random) -> str:
        cfg = self.config
        if cfg.reset_rate and rand.random() < cfg.reset_rate:
            return OUTCOME_RESET
        if cfg.hang_rate and rand.random() < cfg.hang_rate:
            return OUTCOME_HANG
        for rate, outcome in (
            (cfg.slowloris_rate, OUTCOME_SLOWLORIS),
            (cfg.endless_body_rate, OUTCOME_ENDLESS),
            (cfg.gzip_bomb_rate, OUTCOME_GZIP_BOMB),
            (cfg.redirect_rate, OUTCOME_REDIRECT),
        ):
            if rate and rand.random() < rate:
                return outcome
        if cfg.rate_429 and rand.random() < cfg.rate_429:
            return OUTCOME_429
        if cfg.error_rate and rand.random() < cfg.error_rate:
            return OUTCOME_ERROR
        return OUTCOME_OK

    async def _traffic(self, request: web.Request) -> web.StreamResponse:
        entry = self.stats.record_arrival(request)
        rand = self._rng()
        outcome = self._decide(rand)
        latency_s = self._latency_s(rand)
        status: int | None = None
        self.stats.in_flight += 1
        try:
            # Drain the body so a reset or answer is not confused with a slow reader.
            await request.read()
            if outcome == OUTCOME_HANG:
                await wait_event(self._closing, self.config.hang_s)
            elif latency_s > 0:
                await asyncio.sleep(latency_s)
            if outcome == OUTCOME_SLOWLORIS:
                await self._slowloris(request)
            if outcome in (OUTCOME_RESET, OUTCOME_SLOWLORIS):
                if request.transport is not None:
                    request.transport.abort()
                # Nothing may be written after the abort; cancelling is how aiohttp lets
                # a handler end without a response.
                raise asyncio.CancelledError
            headers = {"X-Sim-Outcome": outcome}
            if outcome == OUTCOME_ENDLESS:
                status = 200
                return await self._endless(request, headers)
            if outcome == OUTCOME_GZIP_BOMB:
                status = 200
                headers["Content-Encoding"] = "gzip"
                return web.Response(status=200, body=_gzip_bomb(), headers=headers)
            if outcome == OUTCOME_REDIRECT:
                status = 302
                headers["Location"] = self.config.redirect_location
                return web.Response(status=302, headers=headers)
            if outcome == OUTCOME_429:
                status = 429
                headers["Retry-After"] = _retry_after(self.config.retry_after_s)
            elif outcome == OUTCOME_ERROR:
                status = self.config.error_status
            else:
                status = 200
            body = self._body(request, outcome, status)
            return web.Response(
                status=status, body=body, headers=headers, content_type="application/json"
            )
        finally:
            self.stats.in_flight -= 1
            self.stats.record_outcome(entry, outcome, status)
            self.stats.finish(outcome, status)

    async def _slowloris(self, request: web.Request) -> None:
        """Trickle a response head a byte at a time, each byte within any read timeout."""
        head = b"HTTP/1.1 200 OK\r\nX-Sim-Outcome: slowloris\r\n" + b"X-Pad: " + b"x" * 4096
        until = time.monotonic() + self.config.hang_s
        for byte in head:
            transport = request.transport
            if transport is None or transport.is_closing() or time.monotonic() >= until:
                return
            transport.write(bytes((byte,)))
            await wait_event(self._closing, self.config.slowloris_interval_s)
            if self._closing.is_set():
                return

    async def _endless(self, request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        until = time.monotonic() + self.config.hang_s
        chunk = b"x" * 1024
        with contextlib.suppress(ConnectionError):
            while time.monotonic() < until and not self._closing.is_set():
                await resp.write(chunk)
                await asyncio.sleep(0.01)
        return resp

    def _body(self, request: web.Request, outcome: str, status: int) -> bytes:
        doc: dict[str, Any] = {
            "sim": "netscope-upstream-sim",
            "status": status,
            "outcome": outcome,
            "method": request.method,
            "path": request.path_qs,
            "traceparent": request.headers.get("traceparent"),
            "idempotency_key": request.headers.get("Idempotency-Key"),
        }
        body = orjson.dumps(doc)
        missing = self.config.response_bytes - len(body)
        if missing > 0:
            # ,"pad":"" costs 9 bytes; below that the body just stays a little larger.
            doc["pad"] = "x" * max(0, missing - 9)
            body = orjson.dumps(doc)
        return body


@functools.cache
def _gzip_bomb() -> bytes:
    return gzip.compress(bytes(GZIP_BOMB_INFLATED_BYTES), compresslevel=9)


def _retry_after(seconds: float) -> str:
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{seconds:g}"


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


async def _serve_until_signalled(sim: UpstreamSim) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    url = await sim.start()
    typer.echo(f"upstream-sim listening on {url} (control: {url}/_sim/config, {url}/_sim/stats)")
    try:
        await stop.wait()
    finally:
        await sim.stop()
        s = sim.stats
        typer.echo(f"upstream-sim stopped: {s.total} requests, outcomes {dict(s.by_outcome)}")


def upstream_sim_command(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 8081,
    latency_ms: Annotated[float, typer.Option(help="Base response latency.")] = 5.0,
    latency_jitter_ms: Annotated[float, typer.Option(help="Latency spread.")] = 0.0,
    latency_distribution: Annotated[
        str, typer.Option(help="fixed | uniform | lognormal.")
    ] = "uniform",
    error_rate: Annotated[float, typer.Option(help="Share answered with --error-status.")] = 0.0,
    error_status: Annotated[int, typer.Option(help="Status for injected errors.")] = 503,
    rate_429: Annotated[float, typer.Option(help="Share answered 429 + Retry-After.")] = 0.0,
    retry_after_s: Annotated[float, typer.Option(help="Retry-After value on 429s.")] = 1.0,
    hang_rate: Annotated[float, typer.Option(help="Share that never answers.")] = 0.0,
    hang_s: Annotated[float, typer.Option(help="How long a hang lasts at most.")] = 30.0,
    reset_rate: Annotated[float, typer.Option(help="Share whose connection is reset.")] = 0.0,
    slowloris_rate: Annotated[
        float, typer.Option(help="Share whose headers trickle a byte at a time.")
    ] = 0.0,
    endless_body_rate: Annotated[float, typer.Option(help="Share with a never-ending body.")] = 0.0,
    gzip_bomb_rate: Annotated[
        float, typer.Option(help="Share answered with a gzip body inflating to 64 MiB.")
    ] = 0.0,
    redirect_rate: Annotated[
        float, typer.Option(help="Share answered 302 to --redirect-location.")
    ] = 0.0,
    redirect_location: Annotated[
        str, typer.Option(help="Where redirects point (another host).")
    ] = "http://169.254.169.254/latest/meta-data/",
    response_bytes: Annotated[int, typer.Option(help="Approximate response body size.")] = 64,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible faults.")] = None,
) -> None:
    """Run a simulated upstream HTTP API with live-adjustable faults until Ctrl-C."""
    config = SimConfig(
        latency_ms=latency_ms,
        latency_jitter_ms=latency_jitter_ms,
        latency_distribution=latency_distribution,
        error_rate=error_rate,
        error_status=error_status,
        rate_429=rate_429,
        retry_after_s=retry_after_s,
        hang_rate=hang_rate,
        hang_s=hang_s,
        reset_rate=reset_rate,
        slowloris_rate=slowloris_rate,
        endless_body_rate=endless_body_rate,
        gzip_bomb_rate=gzip_bomb_rate,
        redirect_rate=redirect_rate,
        redirect_location=redirect_location,
        response_bytes=response_bytes,
        seed=seed,
    )
    try:
        config.validate()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    run_loop(_serve_until_signalled(UpstreamSim(config, host=host, port=port)))
