"""HTTP API on the pipeline's event loop: health, metrics, status, admin, events (FastAPI).

Readiness is honest: 200 only when the Kafka consumer holds an assignment, the audit store
answers a *signed* request, and the metrics endpoint renders; otherwise 503 with a JSON body
naming each failing dependency. Admin endpoints need a bearer token, and are disabled (403)
when none is configured.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from netscope import __version__
from netscope.pipeline import Pipeline

READY_PROBE_TIMEOUT_S = 2.0


class ThrottleRequest(BaseModel):
    rate_per_s: float | None = Field(
        description="Messages per second to ingest; 0 pauses ingest; null lifts the limit.",
        ge=0,
    )


def status_snapshot(pipeline: Pipeline) -> dict[str, Any]:
    """What an operator (and the dashboard) needs to see at once."""
    spool = pipeline.spool.stats()
    lag = sum(
        sample.value
        for metric in pipeline.metrics.consumer_lag.collect()
        for sample in metric.samples
    )
    return {
        "instance_id": pipeline.settings.instance_id,
        "queue_depth": pipeline.writer.pending_records,
        "queue_capacity": pipeline.settings.pipeline.queue_depth,
        "consumer_lag": int(lag),
        "paused_reason": pipeline.paused_reason,
        "ingest_rate_per_s": pipeline.ingest_limit.rate_per_s,
        "audit_degraded": pipeline.writer.degraded,
        "audit_store": pipeline.store.description,
        "spool_bytes": spool.bytes,
        "spool_pending_entries": spool.pending_entries,
        "spool_oldest_age_s": spool.oldest_pending_age_s,
        "spool_free_disk_bytes": spool.free_disk_bytes,
        "spool_full": spool.full or pipeline.writer.spool_full,
        "processed": pipeline.processed,
        "breakers": {name: str(g.breaker.state) for name, g in pipeline.guards.items()},
    }


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

    @app.get("/health/ready", tags=["health"])
    async def ready() -> JSONResponse:
        checks: dict[str, dict[str, Any]] = {}
        ok, detail = pipeline.kafka_ready()
        checks["kafka"] = {"ok": ok, "detail": detail}
        try:
            await asyncio.wait_for(pipeline.store.probe(), READY_PROBE_TIMEOUT_S)
            checks["audit_store"] = {"ok": True, "detail": pipeline.store.description}
        except Exception as exc:
            checks["audit_store"] = {
                "ok": False,
                "detail": f"{pipeline.store.description}: {type(exc).__name__}: {exc}"[:300],
            }
        try:
            generate_latest(pipeline.metrics.registry)
            checks["metrics"] = {"ok": True, "detail": "renders"}
        except Exception as exc:
            checks["metrics"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        spool_full = pipeline.writer.spool_full or pipeline.spool.stats().full
        checks["audit_spool"] = {
            "ok": not spool_full,
            "detail": "full: consumption paused" if spool_full else "has room",
        }
        failing = [name for name, check in checks.items() if not check["ok"]]
        body = {
            "status": "ready" if not failing else "not_ready",
            "failing": failing,
            "checks": checks,
            "degraded": pipeline.writer.degraded,
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
    async def throttle(body: ThrottleRequest) -> dict[str, Any]:
        """Runbook INC-01 step 4: reduce the incoming rate temporarily (or lift it)."""
        pipeline.set_ingest_rate(body.rate_per_s)
        return {"ingest_rate_per_s": pipeline.ingest_limit.rate_per_s}

    @admin.get("/breakers")
    async def breakers() -> dict[str, Any]:
        return {name: g.breaker.snapshot() for name, g in pipeline.guards.items()}

    @admin.post("/breakers/{upstream}/{action}")
    async def breaker_action(
        upstream: str, action: Literal["force-open", "force-closed", "reset"]
    ) -> dict[str, Any]:
        guard = pipeline.guards.get(upstream)
        if guard is None:
            raise HTTPException(404, f"no upstream named {upstream!r}")
        {
            "force-open": guard.breaker.force_open,
            "force-closed": guard.breaker.force_closed,
            "reset": guard.breaker.reset,
        }[action]()
        return {"upstream": upstream, "state": str(guard.breaker.state)}

    app.include_router(admin)
    if hub is not None:
        app.include_router(hub.router)
    return app
