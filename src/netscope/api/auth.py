"""Admin authentication: a constant-time bearer check and a brute-force brake per client.

Why a module of its own: the admin endpoints change what the pipeline does (throttle, force
a breaker), so their token is the one secret an attacker on the network gains most from
guessing. Two rules, both pure and testable without a server:

* ``token_matches`` compares SHA-256 digests of the supplied and the expected token with
  ``hmac.compare_digest``: the time taken tells nothing about how many leading characters
  were right, nor (since both digests are 32 bytes) how long the real token is.
* ``FailureBrake`` counts failed attempts per client address. The first ``free_failures``
  within ``reset_after_s`` of each other cost nothing (typos); each failure beyond locks that
  address out for ``base_lockout_s`` doubled per extra failure, capped at ``max_lockout_s``.
  While locked out, every request from the address is refused with 429 *before* its token is
  looked at, so an attacker cannot use the refusals as a fast oracle. A success forgets the
  address. The table of addresses is bounded (oldest forgotten first), so a spray of
  addresses cannot grow memory.

The refusal says ``unauthorized`` and nothing else: not whether a token was sent, nor which
part was wrong. ``netscope admin`` words its own message for the operator.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from netscope.resilience.clock import Clock, SystemClock

UNAUTHORIZED = "unauthorized"
TOO_MANY_FAILURES = "too many failed attempts"


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <token>`` header (scheme case-insensitive,
    RFC 6750), or None when the header is absent or of another scheme."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def token_matches(supplied: str | None, expected: str) -> bool:
    """Constant-time comparison that also hides the expected token's length."""
    given = hashlib.sha256((supplied or "").encode("utf-8", "surrogatepass")).digest()
    wanted = hashlib.sha256(expected.encode("utf-8", "surrogatepass")).digest()
    # Both compared in full even when nothing was supplied: no early exit to time.
    return hmac.compare_digest(given, wanted) and supplied is not None


@dataclass(frozen=True, slots=True)
class BrakePolicy:
    """How hard failed admin attempts are braked (defaults: 5 free, then 1 s, 2 s, ... 5 min)."""

    free_failures: int = 5
    reset_after_s: float = 600.0  # quiet time after which an address starts afresh
    base_lockout_s: float = 1.0
    max_lockout_s: float = 300.0
    max_clients: int = 10_000

    def __post_init__(self) -> None:
        if self.free_failures < 1 or self.max_clients < 1:
            raise ValueError("free_failures and max_clients must be >= 1")
        if not 0 < self.base_lockout_s <= self.max_lockout_s:
            raise ValueError("need 0 < base_lockout_s <= max_lockout_s")

    def lockout_s(self, failures: int) -> float:
        """Lockout earned by the ``failures``-th failure in a row: 0 for the free ones, then
        ``base_lockout_s`` doubled per failure beyond them, at most ``max_lockout_s``."""
        extra = failures - self.free_failures - 1
        if extra < 0:
            return 0.0
        # 2**extra overflows floats past ~1000 failures: cap the exponent first.
        doublings = min(extra, math.ceil(math.log2(self.max_lockout_s / self.base_lockout_s)))
        return min(self.max_lockout_s, self.base_lockout_s * 2.0**doublings)


@dataclass(slots=True)
class _Record:
    failures: int
    last_failure_at: float
    locked_until: float


class FailureBrake:
    """Failed-attempt counters per client address, with an injectable monotonic clock."""

    def __init__(self, policy: BrakePolicy | None = None, clock: Clock | None = None) -> None:
        self.policy = policy if policy is not None else BrakePolicy()
        self._now: Callable[[], float] = (clock if clock is not None else SystemClock()).monotonic
        self._clients: OrderedDict[str, _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after_s(self, client: str) -> float:
        """Seconds this client must wait before its next attempt is even looked at (0: go)."""
        record = self._current(client)
        if record is None:
            return 0.0
        return max(0.0, record.locked_until - self._now())

    def failed(self, client: str) -> float:
        """Count a failed attempt; returns the lockout it earns (0 within the free ones)."""
        now = self._now()
        record = self._current(client)
        if record is None:
            record = _Record(0, now, now)
            self._clients[client] = record
            while len(self._clients) > self.policy.max_clients:
                self._clients.popitem(last=False)
        self._clients.move_to_end(client)
        record.failures += 1
        record.last_failure_at = now
        lockout = self.policy.lockout_s(record.failures)
        record.locked_until = now + lockout
        return lockout

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def _current(self, client: str) -> _Record | None:
        record = self._clients.get(client)
        if record is None:
            return None
        now = self._now()
        quiet_since = max(record.last_failure_at, record.locked_until)
        if now - quiet_since >= self.policy.reset_after_s:
            del self._clients[client]
            return None
        return record


class Verdict(Enum):
    ALLOWED = "allowed"
    UNAUTHORIZED = "unauthorized"
    THROTTLED = "throttled"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    retry_after_s: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, rounded up (RFC 9110 delay-seconds), at least 1."""
        return str(max(1, math.ceil(self.retry_after_s)))


class AdminAuth:
    """The admin endpoints' door: brake first, then the constant-time token check."""

    def __init__(self, token: str, brake: FailureBrake | None = None) -> None:
        self._token = token
        self.brake = brake if brake is not None else FailureBrake()

    def check(self, client: str, authorization: str | None) -> Decision:
        wait = self.brake.retry_after_s(client)
        if wait > 0:
            return Decision(Verdict.THROTTLED, wait)
        if token_matches(bearer_token(authorization), self._token):
            self.brake.succeeded(client)
            return Decision(Verdict.ALLOWED)
        self.brake.failed(client)
        return Decision(Verdict.UNAUTHORIZED)


class Refusal(BaseModel):
    """The body of every refusal: a word, never which part of the credential was wrong."""

    detail: str


ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Refusal, "description": "Missing or wrong bearer token: `unauthorized`."},
    403: {"model": Refusal, "description": "Admin API disabled: no `api.admin_token` set."},
    429: {
        "model": Refusal,
        "description": "Too many failed attempts from this address; see `Retry-After`.",
        "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}},
    },
}

_BEARER = HTTPBearer(auto_error=False, description="`api.admin_token`", scheme_name="admin")


class AdminGate:
    """The door of every ``/admin`` route (403 when no token is configured).

    Two faces of one check. ``route_class`` runs it before anything else of the request is
    touched: FastAPI parses (and answers 422 about) a JSON body before it runs dependencies,
    so a dependency alone would let an unauthenticated client learn how its body parses.
    The instance itself is also the routes' dependency, which puts the bearer scheme in the
    OpenAPI document and keeps a route added without the route class guarded all the same.

    Keyed by the peer address the server sees: behind a reverse proxy every client shares
    the proxy's address, so the proxy should brake too."""

    def __init__(self, token: str | None, brake: FailureBrake | None = None) -> None:
        self.auth = AdminAuth(token, brake) if token is not None else None
        self.route_class: type[APIRoute] = type("AdminRoute", (_GuardedRoute,), {"gate": self})

    def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> None:
        if getattr(request.state, "admin_checked", False):
            return  # the route class let it in already: count each request once
        self.check(request)

    def check(self, request: Request) -> None:
        """Raise the refusal (403, 429 or 401), or return when the request may go on."""
        if self.auth is None:
            raise HTTPException(403, "admin API disabled: set api.admin_token")
        client = request.client.host if request.client is not None else "unknown"
        decision = self.auth.check(client, request.headers.get("authorization"))
        if decision.verdict is Verdict.THROTTLED:
            raise HTTPException(
                429, TOO_MANY_FAILURES, {"Retry-After": decision.retry_after_header}
            )
        if decision.verdict is Verdict.UNAUTHORIZED:
            raise HTTPException(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        request.state.admin_checked = True


class _GuardedRoute(APIRoute):
    gate: AdminGate

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        gate = self.gate

        async def guarded(request: Request) -> Response:
            try:
                gate.check(request)
            except HTTPException as refusal:
                return JSONResponse(
                    {"detail": refusal.detail}, refusal.status_code, headers=refusal.headers
                )
            return await handler(request)

        return guarded
