"""The pyreqwest transport: Rust reqwest (hyper, tokio) under a thin Python layer.

Why it exists: it spends less client CPU per call than aiohttp (bench/transport_bench.py), and
the HTTP client is the largest single cost of NetScope's hot path. The requests run on
pyreqwest's own tokio runtime (a thread of its own); Python awaits their results.

How it keeps the transport contract (outbound/transport.py), and where it is less exact than
the aiohttp transport:

- **Timeouts.** reqwest takes the connect and read timeouts per client, not per request: they
  are the upstream's configured ``connect_timeout_s`` / ``read_timeout_s``; only the total
  timeout is per request (what is left of the deadline, pool wait included). The caller asks
  for shorter connect/read timeouts only when the deadline clips them, and then they equal the
  total: the total fires and the result is ``DEADLINE_EXCEEDED``, what the caller reports for
  a clipped timeout anyway. A caller asking for other per-call connect/read timeouts would not
  get them: they are not honoured here.
- **Telling the timeouts apart.** reqwest reports a read timeout and the total timeout as the
  same "operation timed out", and pyreqwest names every timeout before the response head a
  ``ConnectTimeoutError``. So: a timeout whose cause chain shows the connect phase (hyper-util's
  ``client error (Connect)``) is ``TIMEOUT_CONNECT``; any other is ``DEADLINE_EXCEEDED`` when
  the attempt lasted its total timeout (to within ``_TOTAL_SLACK_S``), else ``TIMEOUT_READ``.
  Where both timers end within that slack of each other, the deadline's name wins.
- **After the connection is up**, pyreqwest names a peer that closed or reset the connection a
  ``ConnectError`` like a refused connect; the same connect-phase mark tells
  ``CONNECT_ERROR`` from ``CONNECTION_RESET``.
- **Response size.** The body is streamed (``build_streamed``) and counted as it arrives,
  after reqwest inflates it (gzip, deflate, brotli, zstd), so a compressed bomb is cut at
  ``max_response_bytes``. reqwest drops ``Content-Length`` from an answer it inflates, so only
  an identity body is refused unread on its declared length. pyreqwest buffers ahead of the
  count up to its streamed read buffer (``streamed_read_buffer_limit``, 64 KiB by default):
  memory per call is bounded by ``max_response_bytes`` plus that buffer.
- **Pool.** ``max_connections`` bounds requests in flight (pyreqwest's limiter, waited for
  under the total timeout: a wait cut by it is ``DEADLINE_EXCEEDED``) and idle connections
  kept; no proxy from the environment, no redirects followed, no cookie store. Secret headers
  are marked sensitive, so reqwest keeps them out of its debug output.
- **Shutdown.** pyreqwest's runtime thread goes on tearing down (connections, the Python
  objects they hold) after ``close()`` returns, and an interpreter exit meanwhile aborted
  (``Fatal Python error: PyGILState_Release``, exit 134) on asyncio's own loop: measured with
  0.15.1, 4-5 of 10 runs of bench/transport_bench.py's client and 3 of 30 runs of
  tests/unit/test_transport.py's start/stop cycles, closed or not; 0 of 30 on uvloop.
  ``close()`` therefore waits ``_CLOSE_SETTLE_S`` with the loop still running, and the first
  ``start()`` registers the same wait at exit for a process that never closes its transports:
  0 of 30 in every mode since. A timing mitigation, not a fix inside pyreqwest: the test
  stays.
"""

from __future__ import annotations

import asyncio
import atexit
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import (
    ConnectError,
    ConnectTimeoutError,
    DecodeError,
    PoolTimeoutError,
    ReadError,
    RedirectError,
    RequestError,
    RequestTimeoutError,
    WriteError,
)

from netscope.contract.outcomes import ErrorClass
from netscope.contract.request import CallRequest
from netscope.outbound.transport import AttemptResult, HeaderPlan, may_have_body, short
from netscope.resilience.retry import parse_retry_after

if TYPE_CHECKING:
    from pyreqwest.response import Response

    from netscope.config import UpstreamConfig

# Time given to pyreqwest's runtime thread after a client's close() and before interpreter exit.
_CLOSE_SETTLE_S = 0.05
_exit_guarded = False
# A timeout ending this close to the attempt's total timeout is the total timeout's.
_TOTAL_SLACK_S = 0.005
# In the cause chain of an error raised while connecting (hyper-util's error kind).
_CONNECT_PHASE = "client error (Connect)"


class ReqwestTransport:
    """A pooled pyreqwest client for one upstream."""

    def __init__(self, name: str, cfg: UpstreamConfig) -> None:
        self.name = name
        self.cfg = cfg
        self._base = cfg.base_url
        self._headers = HeaderPlan(cfg)
        self._client: Client | None = None

    async def start(self) -> None:
        _guard_interpreter_exit()
        cfg = self.cfg
        self._client = (
            ClientBuilder()
            .connect_timeout(timedelta(seconds=cfg.connect_timeout_s))
            .read_timeout(timedelta(seconds=cfg.read_timeout_s))
            .max_connections(cfg.max_connections)
            .pool_max_idle_per_host(cfg.max_connections)
            # Redirects could leave the allow-listed host: never follow them.
            .follow_redirects(False)
            # Messages are independent: no cookie of one answer rides along with another call.
            .default_cookie_store(False)
            # The configured base_url is the destination, as with aiohttp's trust_env=False.
            .no_proxy()
            .error_for_status(False)
            .build()
        )

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
            del client
            # pyreqwest's runtime thread goes on tearing down (connections, the Python objects
            # they hold) after close() returns; an interpreter exit meanwhile aborts. Let it
            # finish while the loop still runs (see the module docstring for the figures).
            await asyncio.sleep(_CLOSE_SETTLE_S)

    async def send(
        self,
        req: CallRequest,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        total_timeout_s: float | None = None,
    ) -> AttemptResult:
        assert self._client is not None, "start() first"
        started_at = time.time()
        t0 = time.perf_counter()
        result = AttemptResult(started_at=started_at, duration_s=0.0)
        method = req.message.method
        builder = self._client.request(method, self._base + req.message.path).headers(
            self._headers.request_headers(req, secrets=False)
        )
        for name, value in self._headers.secrets:
            # Sensitive: reqwest leaves the value out of its debug output.
            builder = builder.header(name, value, is_sensitive=True)
        if req.body_bytes is not None:
            builder = builder.body_bytes(req.body_bytes)
        if total_timeout_s is not None:
            builder = builder.timeout(timedelta(seconds=max(total_timeout_s, 0.0)))
        try:
            async with builder.build_streamed() as resp:
                status = result.status = resp.status
                if status >= 400:  # only a refusal's Retry-After matters to the retry
                    result.retry_after_s = parse_retry_after(
                        resp.get_header("Retry-After"), time.time()
                    )
                limit = self.cfg.max_response_bytes
                if not await _read_bounded(resp, method, status, limit):
                    result.error_class = ErrorClass.RESPONSE_TOO_LARGE
                    result.detail = f"response larger than max_response_bytes={limit}"
        except PoolTimeoutError:
            # Waiting for a pool slot is bounded by the total timeout only.
            result.error_class = ErrorClass.DEADLINE_EXCEEDED
        except RequestTimeoutError as exc:
            elapsed = time.perf_counter() - t0
            if isinstance(exc, ConnectTimeoutError) and _in_connect_phase(exc):
                result.error_class = ErrorClass.TIMEOUT_CONNECT
            elif total_timeout_s is not None and elapsed >= total_timeout_s - _TOTAL_SLACK_S:
                result.error_class = ErrorClass.DEADLINE_EXCEEDED
            else:
                result.error_class = ErrorClass.TIMEOUT_READ
        except ConnectError as exc:
            connecting = _in_connect_phase(exc)
            result.error_class = (
                ErrorClass.CONNECT_ERROR if connecting else ErrorClass.CONNECTION_RESET
            )
            result.detail = _detail(exc)
        except (ReadError, WriteError) as exc:
            result.error_class = ErrorClass.CONNECTION_RESET
            result.detail = _detail(exc)
        except (DecodeError, RedirectError) as exc:
            result.error_class = ErrorClass.PROTOCOL_ERROR
            result.detail = _detail(exc)
        except RequestError as exc:
            result.error_class = ErrorClass.CONNECT_ERROR
            result.detail = _detail(exc)
        except asyncio.CancelledError:
            raise
        result.duration_s = time.perf_counter() - t0
        return result


def _guard_interpreter_exit() -> None:
    """At exit, before finalization starts, give pyreqwest's runtime thread the same time to
    finish: for a process that never closed its transports (a failed start, a test)."""
    global _exit_guarded
    if not _exit_guarded:
        _exit_guarded = True
        atexit.register(time.sleep, _CLOSE_SETTLE_S)


async def _read_bounded(resp: Response, method: str, status: int, limit: int) -> bool:
    """Read the body to its end, nothing kept; False as soon as it is larger than ``limit``."""
    length = resp.get_header("Content-Length")
    # reqwest removes Content-Length from a body it inflates: a declared length is the body's.
    if (
        length is not None
        and length.isdigit()
        and int(length) > limit
        and may_have_body(method, status)
    ):
        return False
    size = 0
    read_chunk = resp.body_reader.read_chunk
    while (chunk := await read_chunk()) is not None:
        size += len(chunk)
        if size > limit:
            return False
    return True


def _causes(exc: BaseException) -> list[str]:
    """The messages of the error's cause chain, outermost first (pyreqwest's ``details``)."""
    details = getattr(exc, "details", None)
    causes = details.get("causes") if isinstance(details, dict) else None
    return [c.get("message", "") if isinstance(c, dict) else str(c) for c in causes or ()]


def _in_connect_phase(exc: BaseException) -> bool:
    return any(_CONNECT_PHASE in cause for cause in _causes(exc))


def _detail(exc: BaseException) -> str:
    """The error and its deepest cause (what happened), bounded. Never the whole chain: its
    first link quotes the request URL, query included."""
    message = getattr(exc, "message", None)
    causes = _causes(exc)
    if not isinstance(message, str):
        return short(exc)
    cause = f" ({causes[-1]})" if causes else ""
    return f"{type(exc).__name__}: {message}{cause}"[:300]
