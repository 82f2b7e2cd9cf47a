"""The last few thousand terminal records and retry decisions, for the drill-down.

Why: a click on a row of the live feed is almost always about something that happened
seconds ago, often before its audit batch is even durable; answering from memory is instant
and costs the store nothing. Why bounded by count: the records are kept by reference (the
writer already built them), so the cost is the records themselves, about 1 KiB each
(bench/dashboard_bench.py measures it), whatever the traffic. Older requests are answered from
the audit store (api/drill.py).

Retry decisions are kept because the audit record says how long each attempt waited before
the next, not why: the ``RetryScheduled`` event's detail ("retryable status 503
(retry-after 0.2s)") is only known live.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from netscope.contract.records import AuditRecord
from netscope.observability.events import CallCompleted, RetryScheduled

RECENT_CALLS = 4096
RECENT_RETRIES = 4096


class RecentCalls:
    """Bus listener keeping the newest ``calls`` records and ``retries`` retry decisions."""

    def __init__(self, calls: int = RECENT_CALLS, retries: int = RECENT_RETRIES) -> None:
        self._calls: deque[AuditRecord] = deque(maxlen=calls)
        self._retries: deque[RetryScheduled] = deque(maxlen=retries)

    def on_event(self, event: Any) -> None:
        if type(event) is CallCompleted:
            self._calls.append(event.record)
        elif type(event) is RetryScheduled:
            self._retries.append(event)

    def __len__(self) -> int:
        return len(self._calls)

    def clear(self) -> None:
        self._calls.clear()
        self._retries.clear()

    def find(self, match: Any) -> list[AuditRecord]:
        """Records (oldest first) for which ``match(record)`` is true; a linear scan of a few
        thousand references, on demand only (well under a millisecond)."""
        return [r for r in list(self._calls) if match(r)]

    def retries_of(self, trace_id: str | None, request_id: str | None) -> list[RetryScheduled]:
        """The retry decisions of one request (both ids must agree when given)."""
        return [
            ev
            for ev in list(self._retries)
            if (trace_id is None or ev.trace_id == trace_id)
            and (request_id is None or ev.request_id == request_id)
        ]
