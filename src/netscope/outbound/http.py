"""One HTTP attempt against one allow-listed upstream, classified for the retry policy.

Thin on purpose: aiohttp does the protocol; this module only builds the request from the
validated message (the URL is the configured ``base_url`` + the message's path, never anything
the message chooses), bounds sizes, and turns aiohttp's exception zoo into ``ErrorClass``
members (contract/outcomes.py): connect vs read timeouts are told apart here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from netscope.config import UpstreamConfig
from netscope.contract.outcomes import ErrorClass
from netscope.contract.request import CallRequest
from netscope.resilience.retry import parse_retry_after

# aiohttp rounds timeouts at or above this many seconds up to a whole second of loop time
# (fewer timer wake-ups); a deadline must fire when it says, so never round.
_EXACT = math.inf


@dataclass(slots=True)
class AttemptResult:
    started_at: float  # epoch seconds
    duration_s: float
    status: int | None = None
    error_class: ErrorClass | None = None  # None: a whole answer arrived (see status)
    detail: str | None = None
    retry_after_s: float | None = None


class UpstreamClient:
    """A pooled aiohttp session for one upstream."""

    def __init__(self, name: str, cfg: UpstreamConfig) -> None:
        self.name = name
        self.cfg = cfg
        self._base = cfg.base_url
        self._static_headers = dict(cfg.headers)
        self._static_headers.update(
            {k: v.get_secret_value() for k, v in cfg.secret_headers.items()}
        )
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
            # Redirects could leave the allow-listed host: never follow them.
            trust_env=False,
            # Messages are independent: a cookie set by one answer must never ride along
            # with another message's call (and no jar costs nothing per request).
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, req: CallRequest) -> dict[str, str]:
        headers: dict[str, str] = dict(req.message.headers)
        # Configured headers win: a message must not override credentials the operator set.
        headers.update(self._static_headers)
        headers["traceparent"] = req.trace.header
        headers["Idempotency-Key"] = req.idempotency_key
        if req.content_type:
            headers["Content-Type"] = req.content_type
        return headers

    async def attempt(
        self,
        req: CallRequest,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        total_timeout_s: float | None = None,
    ) -> AttemptResult:
        """One request. ``total_timeout_s`` bounds all of it (pool wait, connect, send, body):
        the caller passes what is left of the global deadline, reported as deadline_exceeded.
        """
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
                headers=self._headers(req),
                data=req.body_bytes,
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                result.status = resp.status
                if resp.status >= 400:  # only a refusal's Retry-After matters to the retry
                    result.retry_after_s = parse_retry_after(
                        _header(resp.headers, "Retry-After"), time.time()
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
            result.detail = _short(exc)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            result.error_class = ErrorClass.CONNECTION_RESET
            result.detail = _short(exc)
        except aiohttp.ClientPayloadError as exc:
            result.error_class = ErrorClass.PROTOCOL_ERROR
            result.detail = _short(exc)
        except aiohttp.ClientResponseError as exc:
            result.error_class = ErrorClass.PROTOCOL_ERROR
            result.detail = _short(exc)
        except aiohttp.ClientError as exc:
            result.error_class = ErrorClass.CONNECT_ERROR
            result.detail = _short(exc)
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
        if length > limit and _has_body(method, resp.status):
            return False
        await resp.read()
        return True
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > limit:
            return False
    return True


def _has_body(method: str, status: int) -> bool:
    return method != "HEAD" and status not in (204, 304) and status >= 200


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
