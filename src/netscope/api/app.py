"""HTTP API on the pipeline's event loop: health, metrics, status, admin, events (FastAPI).

Readiness is honest: 200 only when the Kafka consumer has joined its group (an instance with no
partition assigned is ready, and says so) and the broker answered within the last 10 s, the
audit store answers a *signed* request (probed at most every 2 s, one probe at a time), the
metrics endpoint renders, the spool has room and the idempotency ledger (when on) answers;
otherwise 503 with a JSON body naming each failing dependency. Admin endpoints need a bearer
token, and are disabled (403) when none is configured.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from netscope import __version__
from netscope.pipeline import Pipeline
from netscope.status import KafkaStatus

READY_PROBE_TIMEOUT_S = 2.0
READY_PROBE_TTL_S = 2.0


class ThrottleRequest(BaseModel):
    rate_per_s: float | None = Field(
        description="Messages per second to ingest; 0 pauses ingest; null lifts the limit.",
        ge=0,
    )


def status_snapshot(pipeline: Pipeline) -> dict[str, Any]:
    """What an operator (and the dashboard) needs to see at once: the pipeline's read model."""
    return pipeline.status().to_dict()


def kafka_check(kafka: KafkaStatus) -> tuple[bool, str]:
    """Ready when the group has given this process its (possibly empty) assignment and the
    broker still answers: aiokafka keeps an assignment after the broker is gone."""
    if not kafka.connected:
        return False, "consumer not started"
    if not kafka.joined:
        return False, "consumer has not joined its group yet"
    if not kafka.broker_reachable:
        return False, kafka.broker_detail
    if not kafka.assigned:
        # More instances than partitions: this one is idle by design, and healthy.
        return True, "joined, no partition assigned (more instances than partitions?)"
    return True, f"{len(kafka.assigned)} partitions assigned"


class StoreProbe:
    """The readiness probe of the audit store, cached for ``ttl_s`` and single-flight, so a
    scrape storm or many load-balancer checks do not each send a signed request to RGW."""

    def __init__(self, probe: Callable[[], Awaitable[None]], ttl_s: float = READY_PROBE_TTL_S):
        self._probe = probe
        self._ttl_s = ttl_s
        self._at = -float("inf")
        self._result: tuple[bool, str] = (False, "not probed yet")
        self._running: asyncio.Future[tuple[bool, str]] | None = None
        self.probes = 0  # signed requests actually sent

    async def check(self) -> tuple[bool, str]:
        if time.monotonic() - self._at < self._ttl_s:
            return self._result
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._run())
        # Shielded: a client that hangs up must not cancel the probe the others wait for.
        return await asyncio.shield(self._running)

    async def _run(self) -> tuple[bool, str]:
        self.probes += 1
        try:
            await asyncio.wait_for(self._probe(), READY_PROBE_TIMEOUT_S)
            self._result = (True, "answers a signed request")
        except Exception as exc:
            self._result = (False, f"{type(exc).__name__}: {exc}"[:300])
        self._at = time.monotonic()
        return self._result


def create_app(pipeline: Pipeline, *, hub: Any | None = None) -> FastAPI:
    settings = pipeline.settings
    app = FastAPI(
        title="NetScope",
        version=__version__,
        description="Kafka-fed network-call gateway: health, metrics, admin and live events.",
    )

    def require_admin(authorization: str | None = Header(default=None)) -> None:
        token = settings.api.admin_token
        if token is None:
            raise HTTPException(403, "admin API disabled: set api.admin_token")
        supplied = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(supplied.encode(), token.get_secret_value().encode()):
            raise HTTPException(401, "missing or wrong bearer token")

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, Any]:
        return {"status": "live", "uptime_s": round(time.time() - pipeline.started_at, 1)}

    store_probe = StoreProbe(pipeline.store.probe)
    app.state.store_probe = store_probe

    @app.get("/health/ready", tags=["health"])
    async def ready() -> JSONResponse:
        status = pipeline.status()
        checks: dict[str, dict[str, Any]] = {}
        ok, detail = kafka_check(status.kafka)
        checks["kafka"] = {
            "ok": ok,
            "detail": detail,
            "assigned_partitions": len(status.kafka.assigned),
        }
        ok, detail = await store_probe.check()
        checks["audit_store"] = {"ok": ok, "detail": f"{status.audit_store}: {detail}"}
        try:
            generate_latest(pipeline.metrics.registry)
            checks["metrics"] = {"ok": True, "detail": "renders"}
        except Exception as exc:
            checks["metrics"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        spool_full = status.spool.full
        checks["audit_spool"] = {
            "ok": not spool_full,
            "detail": "full: consumption paused" if spool_full else "has room",
        }
        ledger = status.ledger
        if ledger.backend != "none":
            checks["ledger"] = {
                "ok": ledger.available,
                "detail": f"{ledger.backend}: "
                + ("answers" if ledger.available else f"{ledger.detail}: consumption paused"),
            }
        failing = [name for name, check in checks.items() if not check["ok"]]
        body = {
            "status": "ready" if not failing else "not_ready",
            "failing": failing,
            "checks": checks,
            "degraded": status.audit_degraded,
        }
        return JSONResponse(body, status_code=200 if not failing else 503)

    @app.get("/metrics", tags=["observability"])
    async def metrics() -> Response:
        return Response(generate_latest(pipeline.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/status", tags=["observability"])
    async def status() -> dict[str, Any]:
        return status_snapshot(pipeline)

    admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

    @admin.post("/throttle")
    async def throttle(
        body: ThrottleRequest, x_netscope_actor: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        """Runbook INC-01 step 4: reduce the incoming rate temporarily (or lift it)."""
        pipeline.set_ingest_rate(body.rate_per_s, actor=actor_of(x_netscope_actor))
        return {"ingest_rate_per_s": status_snapshot(pipeline)["ingest_rate_per_s"]}

    @admin.get("/breakers")
    async def breakers() -> dict[str, Any]:
        return {name: g.breaker.snapshot() for name, g in pipeline.guards.items()}

    @admin.post("/breakers/{upstream}/{action}")
    async def breaker_action(
        upstream: str,
        action: Literal["force-open", "force-closed", "reset"],
        x_netscope_actor: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        guard = pipeline.guards.get(upstream)
        if guard is None:
            raise HTTPException(404, f"no upstream named {upstream!r}")
        {
            "force-open": guard.breaker.force_open,
            "force-closed": guard.breaker.force_closed,
            "reset": guard.breaker.reset,
        }[action](by=actor_of(x_netscope_actor))
        return {"upstream": upstream, "state": str(guard.breaker.state)}

    app.include_router(admin)
    if hub is not None:
        app.include_router(hub.router)
    return app


_ACTOR = re.compile(r"[^A-Za-z0-9_.@:/ -]")


def actor_of(header: str | None) -> str:
    """Who an admin action is audited as: the bearer of the admin token, and what its client
    said of itself (``netscope admin`` sends ``cli:user@host``). Informative: the token is
    the authentication; the header only names the person. Cleaned and capped: it is stored."""
    said = _ACTOR.sub("", header or "")[:80].strip()
    return f"admin token ({said})" if said else "admin token"
