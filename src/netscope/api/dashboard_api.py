"""The dashboard's HTTP endpoints: history, drill-down, report download, runbook page.

    GET /api/history?window=900          the last window's series and bands (JSON)
    GET /api/timeline?trace_id=...       one request's timeline (or request_id,
        idempotency_key, q=any of the three; topic, partition, offset, timestamp_ms from a
        feed row; from, to: epoch ms of a search's span)
    GET /api/report?from=MS&to=MS        ``netscope report`` of that window, as a download
        [&incident=INC-03] [&format=json]
    GET /dashboard/runbook               docs/runbook.md, rendered, with anchors

Every data endpoint takes the event stream's rule (api/access.py): the viewer token when
one is configured (``?token=`` or ``Authorization: Bearer``), 401 otherwise; a foreign
``Origin``, 403. Nothing new is bound: these routes ride on the API's existing server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from netscope.api import runbook
from netscope.api.access import ORIGIN, UNAUTHORIZED
from netscope.api.drill import Busy, DrillQuery
from netscope.api.history import HORIZON_S
from netscope.api.report_download import ReportBusy

if TYPE_CHECKING:
    from netscope.api.hub import EventHub

_API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_DOC_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_INCIDENT = r"^[A-Za-z0-9_.-]{1,40}$"
# Kafka's own bounds (int32 partitions, int64 offsets) and the last millisecond of year 9999:
# past them a number cannot name a message or a time, and used to fail deep in the store
# code (orjson "Integer exceeds 64-bit range", datetime overflow) as a 502.
_MAX_PARTITION = 2**31 - 1
_MAX_OFFSET = 2**63 - 1
_MAX_EPOCH_MS = 253_402_300_799_999
# Every answer a data endpoint may give besides 200, in the OpenAPI document: what clients
# and the schema tests hold the service to (tests/security/test_api_schemathesis.py).
_DATA_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Parameters that cannot be combined, or no identifier given."},
    401: {"description": "The viewer token (`api.ws_token`) is missing or wrong."},
    403: {"description": "A browser request from a foreign `Origin`."},
    429: {"description": "Another search or report is running; see `Retry-After`."},
    502: {"description": "The audit store failed to answer."},
    503: {"description": "No audit store is attached to this dashboard."},
}
_REPORT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}, "application/json": {}}, "description": "A download."}
}


def _reason(exc: Exception) -> str:
    """One line: obstore appends its whole debug tree ("Debug source: ...") to messages."""
    text = str(exc).split("\n\nDebug source:", 1)[0].strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300]


def _json(body: Any) -> Response:
    data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(data, media_type="application/json", headers=_API_HEADERS)


def build_router(hub: EventHub) -> APIRouter:
    router = APIRouter(tags=["dashboard"], responses=_DATA_RESPONSES)

    def viewer(request: Request) -> None:
        refusal = hub.access.refusal(request.headers, request.query_params)
        if refusal == ORIGIN:
            raise HTTPException(403, "origin not allowed")
        if refusal == UNAUTHORIZED:
            raise HTTPException(401, "missing or wrong token", {"WWW-Authenticate": "Bearer"})

    allowed = [Depends(viewer)]

    @router.get("/api/history", dependencies=allowed)
    async def history(
        window: Annotated[float, Query(gt=0, le=HORIZON_S, description="seconds")] = 900.0,
    ) -> Response:
        """The last ``window`` seconds of every series, with the breaker and degraded bands
        (docs/dashboard.md, "History")."""
        body = hub.history.snapshot(window)
        body["runbook"] = {"url": hub.runbook_url, "sections": runbook.SECTIONS}
        body["audit"] = hub.drill.has_store
        return _json(body)

    @router.get("/api/timeline", dependencies=allowed)
    async def timeline(
        trace_id: str | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        q: Annotated[str | None, Query(description="a trace, request or key id")] = None,
        topic: str | None = None,
        partition: Annotated[int | None, Query(ge=0, le=_MAX_PARTITION)] = None,
        offset: Annotated[int | None, Query(ge=0, le=_MAX_OFFSET)] = None,
        timestamp_ms: Annotated[int | None, Query(ge=0, le=_MAX_EPOCH_MS)] = None,
        from_ms: Annotated[int | None, Query(alias="from", ge=0, le=_MAX_EPOCH_MS)] = None,
        to_ms: Annotated[int | None, Query(alias="to", ge=0, le=_MAX_EPOCH_MS)] = None,
    ) -> Response:
        """One request's timeline: memory first, then its audit object, then a scan."""
        try:
            query = DrillQuery(
                trace_id=(trace_id or "").strip().lower() or None,
                request_id=(request_id or "").strip() or None,
                idempotency_key=(idempotency_key or "").strip() or None,
                any_id=(q or "").strip() or None,
                topic=topic,
                partition=partition,
                offset=offset,
                timestamp_ms=timestamp_ms,
                from_ms=from_ms,
                to_ms=to_ms,
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            return _json(await hub.drill.timeline(query))
        except Busy as exc:
            raise HTTPException(429, str(exc), {"Retry-After": "2"}) from None
        except Exception as exc:  # obstore raises its own error types per backend
            raise HTTPException(502, f"audit store: {_reason(exc)}") from None

    @router.get("/api/report", dependencies=allowed, responses=_REPORT_CONTENT)
    async def report(
        from_ms: Annotated[
            int, Query(alias="from", ge=0, le=_MAX_EPOCH_MS, description="epoch ms")
        ],
        to_ms: Annotated[
            int, Query(alias="to", ge=0, le=_MAX_EPOCH_MS, description="epoch ms, exclusive")
        ],
        incident: Annotated[str | None, Query(pattern=_INCIDENT)] = None,
        fmt: Annotated[Literal["html", "json"], Query(alias="format")] = "html",
    ) -> Response:
        """``netscope report`` for ``[from, to)``: the journal as one offline HTML file."""
        if hub.reports is None:
            raise HTTPException(503, "no audit store attached to this dashboard")
        try:
            download = await hub.reports.render(from_ms, to_ms, incident=incident, fmt=fmt)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        except ReportBusy as exc:
            raise HTTPException(429, str(exc), {"Retry-After": "5"}) from None
        except Exception as exc:
            raise HTTPException(502, f"audit store: {_reason(exc)}") from None
        disposition = f'attachment; filename="{download.filename}"'
        headers = {**_API_HEADERS, "Content-Disposition": disposition}
        return Response(download.body, media_type=download.media_type, headers=headers)

    @router.get("/dashboard/runbook", include_in_schema=False)
    async def runbook_page() -> HTMLResponse:
        """Documentation, not data: no token needed (its links must open from anywhere)."""
        path = runbook.find(hub.runbook_path)
        if path is None:
            missing = runbook.missing_page(hub.runbook_path or runbook.SOURCE)
            return HTMLResponse(missing, status_code=404, headers=_DOC_HEADERS)
        page = runbook.render(path.read_text(encoding="utf-8"))
        return HTMLResponse(page, headers=_DOC_HEADERS)

    return router
