"""The seam between the guard stack and an HTTP client library: one attempt in, one result out.

``UpstreamGuard`` (caller.py) talks to a :class:`Transport` only; each transport lives in
``outbound/transports/`` and is the one module that knows its library. What every transport
owes the caller (tests/unit/test_caller.py runs each one against the same cases):

- the URL is the configured ``base_url`` + the message's path, never anything the message
  chooses; redirects are never followed (the answer is the 3xx itself); no cookie is kept
  between calls; a keep-alive pool per upstream bounded by ``max_connections``;
- headers from :class:`HeaderPlan`: the operator's configured headers win over a message's
  (case-insensitively), then ``traceparent`` and ``Idempotency-Key``; a secret header's value
  never reaches a log, a repr or a ``detail``;
- ``connect_timeout_s`` -> ``TIMEOUT_CONNECT``, ``read_timeout_s`` -> ``TIMEOUT_READ``,
  ``total_timeout_s`` bounds all of it (pool wait, connect, send, body to its end) ->
  ``DEADLINE_EXCEEDED``;
- the body is read to its end and thrown away, bounded by ``max_response_bytes`` counted after
  decompression (a declared length over it is refused unread, except where no body can follow:
  HEAD, 1xx, 204, 304) -> ``RESPONSE_TOO_LARGE`` with the status kept;
- Retry-After parsed on refusals (status >= 400);
- the library's errors become ``ErrorClass`` members with a short ``detail`` naming the error
  (anything else raised, a bug, is the caller's ``internal_error``); cancellation propagates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, get_args

from netscope.config import UpstreamConfig
from netscope.contract.outcomes import ErrorClass
from netscope.contract.request import CallRequest

# One source of truth: the config knob's allowed values (upstreams.<name>.transport).
TRANSPORT_NAMES: tuple[str, ...] = get_args(UpstreamConfig.model_fields["transport"].annotation)


@dataclass(slots=True)
class AttemptResult:
    """What one attempt came to: a whole answer (``status``), or why not (``error_class``)."""

    started_at: float  # epoch seconds
    duration_s: float
    status: int | None = None
    error_class: ErrorClass | None = None  # None: a whole answer arrived (see status)
    detail: str | None = None
    retry_after_s: float | None = None


class Transport(Protocol):
    """One upstream's HTTP client: pooled, started once, closed once."""

    async def start(self) -> None:
        """Open the pool; ``send`` may be called once this returns."""

    async def close(self) -> None:
        """Close the pool and its connections; idempotent."""

    async def send(
        self,
        req: CallRequest,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        total_timeout_s: float | None = None,
    ) -> AttemptResult:
        """One request, its body read to the end (bounded), classified."""
        ...


def make_transport(name: str, upstream: str, cfg: UpstreamConfig) -> Transport:
    """The transport ``cfg.transport`` names (config validation keeps ``name`` known)."""
    if name == "aiohttp":
        from netscope.outbound.transports.aiohttp import AiohttpTransport

        return AiohttpTransport(upstream, cfg)
    if name == "reqwest":
        from netscope.outbound.transports.reqwest import ReqwestTransport

        return ReqwestTransport(upstream, cfg)
    raise ValueError(f"unknown transport {name!r}: one of {', '.join(TRANSPORT_NAMES)}")


class HeaderPlan:
    """The fixed part of every request's headers for one upstream, merged once per call."""

    __slots__ = ("_plain", "_reserved", "secrets")

    def __init__(self, cfg: UpstreamConfig) -> None:
        self._plain = dict(cfg.headers)
        # (name, value) of the secret headers, for a transport that can mark them sensitive.
        self.secrets = tuple((k, v.get_secret_value()) for k, v in cfg.secret_headers.items())
        # Names a message may not set: the operator's (credentials!) and NetScope's own.
        names = [*self._plain, *(k for k, _ in self.secrets), "traceparent", "idempotency-key"]
        self._reserved = frozenset(k.lower() for k in names)

    def __repr__(self) -> str:  # never the values: some are secrets
        return f"HeaderPlan(headers={sorted(self._plain)}, secret={[k for k, _ in self.secrets]})"

    def request_headers(self, req: CallRequest, *, secrets: bool = True) -> dict[str, str]:
        """The headers of one call; ``secrets=False`` leaves the secret ones to the caller."""
        reserved = self._reserved
        headers = {k: v for k, v in req.message.headers.items() if k.lower() not in reserved}
        headers.update(self._plain)
        if secrets:
            headers.update(self.secrets)
        headers["traceparent"] = req.trace.header
        headers["Idempotency-Key"] = req.idempotency_key
        if req.content_type:
            headers["Content-Type"] = req.content_type
        return headers


def may_have_body(method: str, status: int) -> bool:
    """False where HTTP says no body follows whatever the headers declare (RFC 9110 §6.4.1)."""
    return method != "HEAD" and status not in (204, 304) and status >= 200


def short(exc: BaseException) -> str:
    """An error for the audit's ``detail``: its type and message, bounded."""
    return f"{type(exc).__name__}: {exc}"[:300]
