"""HTTP API on the pipeline's event loop: health, metrics, status, admin, events (FastAPI).

Readiness is honest: 200 only when the Kafka consumer has joined its group (an instance with no
partition assigned is ready, and says so) and the broker answered within the last 10 s, the
audit store answers a *signed* request (probed at most every 2 s, one probe at a time), the
metrics endpoint renders, the spool has room and the idempotency ledger (when on) answers;
otherwise 503 with a JSON body naming each failing dependency. Admin endpoints need a bearer
token, and are disabled (403) when none is configured; a wrong or missing token gets 401
``unauthorized`` and repeated failures 429 (api/auth.py).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from netscope import __version__
from netscope.api.admin_models import (
    BREAKER_ACTION_RESPONSES,
    THROTTLE_RESPONSES,
    BreakerChanged,
    BreakerSnapshot,
    ThrottleRequest,
    ThrottleState,
)
from netscope.api.auth import ADMIN_RESPONSES, AdminGate
from netscope.pipeline import Pipeline
from netscope.status import KafkaStatus

READY_PROBE_TIMEOUT_S = 2.0
READY_PROBE_TTL_S = 2.0
_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"description": "Not ready: `failing` names each dependency that fails, and why."}
}


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
            async with asyncio.timeout(READY_PROBE_TIMEOUT_S):
                await self._probe()
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

    # Constant-time token check and a brute-force brake per client address (api/auth.py).
    admin_token = settings.api.admin_token
    admin_gate = AdminGate(None if admin_token is None else admin_token.get_secret_value())
    app.state.admin_gate = admin_gate

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, Any]:
        return {"status": "live", "uptime_s": round(time.time() - pipeline.started_at, 1)}

    store_probe = StoreProbe(pipeline.store.probe)
    app.state.store_probe = store_probe

    @app.get("/health/ready", tags=["health"], responses=_NOT_READY)
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

    @app.get("/metrics", tags=["observability"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(generate_latest(pipeline.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/status", tags=["observability"])
    async def status() -> dict[str, Any]:
        return status_snapshot(pipeline)

    admin = APIRouter(
        prefix="/admin",
        tags=["admin"],
        dependencies=[Depends(admin_gate)],
        responses=ADMIN_RESPONSES,
        route_class=admin_gate.route_class,
    )

    @admin.post("/throttle", responses=THROTTLE_RESPONSES)
    async def throttle(
        body: ThrottleRequest, x_netscope_actor: Annotated[str | None, Header()] = None
    ) -> ThrottleState:
        """Runbook INC-01 step 4: reduce the incoming rate temporarily (or lift it)."""
        pipeline.set_ingest_rate(body.rate_per_s, actor=actor_of(x_netscope_actor))
        return ThrottleState(ingest_rate_per_s=status_snapshot(pipeline)["ingest_rate_per_s"])

    @admin.get("/breakers")
    async def breakers() -> dict[str, BreakerSnapshot]:
        return {
            name: BreakerSnapshot.model_validate(g.breaker.snapshot())
            for name, g in pipeline.guards.items()
        }

    @admin.post("/breakers/{upstream}/{action}", responses=BREAKER_ACTION_RESPONSES)
    async def breaker_action(
        action: Literal["force-open", "force-closed", "reset"],
        # The configured names as examples: a schema-driven client starts from a real one.
        upstream: str = Path(examples=sorted(pipeline.guards) or None),
        x_netscope_actor: Annotated[str | None, Header()] = None,
    ) -> BreakerChanged:
        guard = pipeline.guards.get(upstream)
        if guard is None:
            raise HTTPException(404, f"no upstream named {upstream!r}")
        {
            "force-open": guard.breaker.force_open,
            "force-closed": guard.breaker.force_closed,
            "reset": guard.breaker.reset,
        }[action](by=actor_of(x_netscope_actor))
        return BreakerChanged(upstream=upstream, state=guard.breaker.state)

    app.include_router(admin)
    if hub is not None:
        attach_dashboard(hub, pipeline)
        app.include_router(hub.router)
    return app


def attach_dashboard(hub: Any, pipeline: Pipeline) -> None:
    """What the dashboard reads besides events: the audit store (drill-down of older
    requests, the report download) and each upstream's p95 target, when the config has one
    (``latency_p95_target_s``; read with a default so older configs work unchanged)."""
    if not hasattr(hub, "attach_audit"):
        return
    upstreams = pipeline.settings.upstreams
    hub.attach_audit(
        pipeline.store,
        pipeline.settings.audit,
        {name: up.deadline_s for name, up in upstreams.items()},
        {name: getattr(up, "latency_p95_target_s", None) for name, up in upstreams.items()},
    )


_ACTOR = re.compile(r"[^A-Za-z0-9_.@:/ -]")


def actor_of(header: str | None) -> str:
    """Who an admin action is audited as: the bearer of the admin token, and what its client
    said of itself (``netscope admin`` sends ``cli:user@host``). Informative: the token is
    the authentication; the header only names the person. Cleaned and capped: it is stored."""
    said = _ACTOR.sub("", header or "")[:80].strip()
    return f"admin token ({said})" if said else "admin token"
