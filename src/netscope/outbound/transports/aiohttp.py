"""The aiohttp transport: pure Python on the event loop, the default.

Kept beside the reqwest transport because it is pure Python (no Rust wheel to ship, any
platform and interpreter), it tells every timeout apart exactly (aiohttp has its own exception
for a connect timeout, a socket read timeout and the total timer), and it runs on whichever
event loop is current, so it has no thread or runtime of its own to stop at exit. It stays the
default because pyreqwest's lower client CPU did not make the pipeline faster: measured
interleaved on 2026-12-04 (docs/performance.md), one worker was no faster with pyreqwest
(latency-bound, and the hand-off to its runtime thread adds latency) and used ~20 MB more.

Thin on purpose: aiohttp does the protocol; this module builds the request, bounds the body
and turns aiohttp's exception zoo into ``ErrorClass`` members.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from netscope.contract.outcomes import ErrorClass
from netscope.contract.request import CallRequest
from netscope.outbound.transport import AttemptResult, HeaderPlan, may_have_body, short
from netscope.resilience.retry import parse_retry_after

if TYPE_CHECKING:
    from netscope.config import UpstreamConfig

# aiohttp rounds timeouts at or above this many seconds up to a whole second of loop time
# (fewer timer wake-ups); a deadline must fire when it says, so never round.
_EXACT = math.inf


class AiohttpTransport:
    """A pooled aiohttp session for one upstream."""

    def __init__(self, name: str, cfg: UpstreamConfig) -> None:
        self.name = name
        self.cfg = cfg
        self._base = cfg.base_url
        self._headers = HeaderPlan(cfg)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.cfg.max_connections,
            ttl_dns_cache=60,
            enable_cleanup_closed=True,
            timeout_ceil_threshold=_EXACT,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            raise_for_status=False,
            trust_env=False,
            # Messages are independent: a cookie set by one answer must never ride along
            # with another message's call (and no jar costs nothing per request).
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # aiohttp re-sends an idempotent request once, by itself, when a reused connection
        # fails (RFC 9112 9.3.1 allows it). The upstream then sees a call that no attempt
        # lists, outside the retry policy and budget: the fault run caught two calls under
        # one Idempotency-Key for a record of one attempt. Every call must be an attempt, so
        # it is off; the retry policy decides. There is no public switch
        # (aio-libs/aiohttp#10790); aiohttp's own test client sets this slot the same way,
        # and tests/unit/test_caller.py fails if it stops working.
        self._session._retry_connection = False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        req: CallRequest,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        total_timeout_s: float | None = None,
    ) -> AttemptResult:
        assert self._session is not None, "start() first"
        started_at = time.time()
        t0 = time.perf_counter()
        result = AttemptResult(started_at=started_at, duration_s=0.0)
        timeout = aiohttp.ClientTimeout(
            total=total_timeout_s,
            sock_connect=connect_timeout_s,
            sock_read=read_timeout_s,
            ceil_threshold=_EXACT,
        )
        url = URL(self._base + req.message.path, encoded=True)
        try:
            async with self._session.request(
                req.message.method,
                url,
                headers=self._headers.request_headers(req),
                data=req.body_bytes,
                timeout=timeout,
                # Redirects could leave the allow-listed host: never follow them.
                allow_redirects=False,
            ) as resp:
                result.status = resp.status
                if resp.status >= 400:  # only a refusal's Retry-After matters to the retry
                    result.retry_after_s = parse_retry_after(
                        resp.headers.get("Retry-After"), time.time()
                    )
                # Read to the end, size-bounded: an answer is only complete, and its
                # connection reusable, once the whole body is in.
                limit = self.cfg.max_response_bytes
                if not await _read_bounded(resp, req.message.method, limit):
                    result.error_class = ErrorClass.RESPONSE_TOO_LARGE
                    result.detail = f"response larger than max_response_bytes={limit}"
        except aiohttp.ConnectionTimeoutError:
            result.error_class = ErrorClass.TIMEOUT_CONNECT
        except (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError):
            result.error_class = ErrorClass.TIMEOUT_READ
        except aiohttp.ClientConnectorError as exc:
            result.error_class = ErrorClass.CONNECT_ERROR
            result.detail = short(exc)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            result.error_class = ErrorClass.CONNECTION_RESET
            result.detail = short(exc)
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            result.error_class = ErrorClass.PROTOCOL_ERROR
            result.detail = short(exc)
        except aiohttp.ClientError as exc:
            result.error_class = ErrorClass.CONNECT_ERROR
            result.detail = short(exc)
        except TimeoutError:
            # Not a socket timeout (those are ServerTimeoutError): aiohttp's total timer.
            result.error_class = ErrorClass.DEADLINE_EXCEEDED
        except asyncio.CancelledError:
            raise
        result.duration_s = time.perf_counter() - t0
        return result


async def _read_bounded(resp: aiohttp.ClientResponse, method: str, limit: int) -> bool:
    """Read the body to its end, nothing kept; False as soon as it is larger than ``limit``."""
    length = resp.content_length
    if length is not None and "Content-Encoding" not in resp.headers:
        # The common case: the parser stops at the declared length, so one read is bounded
        # (a compressed body is not: it is counted below as it inflates). HEAD, 204 and 304
        # declare a length but carry no body.
        if length > limit and may_have_body(method, resp.status):
            return False
        await resp.read()
        return True
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > limit:
            return False
    return True
