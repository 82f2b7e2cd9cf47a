"""The dashboard's "report for this window" link: ``netscope report``, served as a download.

The same code as the command (forensics/report.py: read the period once, fold, validate,
write the journal), so the page and the terminal can never tell two stories. Why it runs in
a thread with an event loop and a store client of its own: folding a busy hour of records
and drawing five matplotlib plots is seconds of CPU, which on the pipeline's loop would stall
calls and commits for that long; in a thread the loop keeps its turns (the GIL is released
every few milliseconds) and the HTTP request simply waits. One report at a time, over at most
a day: a second request while one is built is told to retry (HTTP 429), not queued.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from netscope.audit.store import AuditStore
from netscope.config import AuditConfig
from netscope.forensics import report

MAX_WINDOW_S = 86400.0
BINS_PER_WINDOW = 120  # plot and detection bins: 2.5 s over 5 min, 30 s over an hour


class ReportBusy(Exception):
    """A report is already being built."""


@dataclass(frozen=True, slots=True)
class Download:
    filename: str
    media_type: str
    body: bytes


def bin_for(window_s: float) -> int:
    """Bin width (s) so a window has about ``BINS_PER_WINDOW`` bins, from 1 s to a minute."""
    return int(min(60, max(1, round(window_s / BINS_PER_WINDOW))))


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


class ReportDownloads:
    """Builds one report at a time for ``[from_ms, to_ms)`` as HTML (or its JSON data)."""

    def __init__(self, audit: AuditConfig, deadlines_s: dict[str, float]) -> None:
        self._audit = audit
        self._deadlines_s = dict(deadlines_s)
        self._busy = threading.Lock()

    async def render(
        self, from_ms: int, to_ms: int, *, incident: str | None = None, fmt: str = "html"
    ) -> Download:
        if not 0 < to_ms - from_ms <= MAX_WINDOW_S * 1000:
            raise ValueError(f"the window must be from 1 ms to {MAX_WINDOW_S:.0f} s long")
        if fmt not in ("html", "json"):
            raise ValueError("format must be html or json")
        if not self._busy.acquire(blocking=False):
            raise ReportBusy("a report is being built; try again when it is done")
        try:
            return await asyncio.to_thread(self._render, from_ms, to_ms, incident, fmt)
        finally:
            self._busy.release()

    def _render(self, from_ms: int, to_ms: int, incident: str | None, fmt: str) -> Download:
        data = asyncio.run(self._build(from_ms, to_ms, incident))
        name = f"netscope-report-{_stamp(from_ms)}-{_stamp(to_ms)}"
        if fmt == "json":  # the data the journal is written from: no plots to draw
            body = orjson.dumps(data, option=orjson.OPT_INDENT_2)
            return Download(f"{name}.json", "application/json", body)
        with tempfile.TemporaryDirectory(prefix="netscope-report-") as tmp:
            out = Path(tmp) / f"{name}.html"
            report.write(data, out, "html")
            return Download(f"{name}.html", "text/html; charset=utf-8", out.read_bytes())

    async def _build(self, from_ms: int, to_ms: int, incident: str | None) -> dict[str, Any]:
        store = AuditStore.from_config(self._audit)  # a client for this thread's loop
        return await report.build(
            store,
            self._audit.prefix,
            from_ms,
            to_ms,
            deadlines_s=self._deadlines_s,
            incident=incident,
            bin_s=bin_for((to_ms - from_ms) / 1000),
        )
