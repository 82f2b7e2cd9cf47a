"""``netscope audit errors``: the breakdown operators ask for after an incident.

From the call records of a period: calls by upstream x outcome x final status / error class
(count, first and last occurrence), attempts and retries per upstream, timeouts by kind
(over every attempt, not only final outcomes), and the requests that needed the most
attempts. Pure: it folds records one by one (constant memory in the records, bounded by the
number of groups and the top list).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_CLASSES = ("timeout_connect", "timeout_read", "deadline_exceeded")


@dataclass(slots=True)
class Group:
    count: int = 0
    first_at: float = float("inf")
    last_at: float = float("-inf")

    def add(self, at: float) -> None:
        self.count += 1
        self.first_at = min(self.first_at, at)
        self.last_at = max(self.last_at, at)


@dataclass(slots=True)
class Breakdown:
    calls: int = 0
    groups: dict[tuple[str, str, str], Group] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)  # per upstream
    retries: dict[str, int] = field(default_factory=dict)  # attempts beyond the first
    timeouts: dict[tuple[str, str], int] = field(default_factory=dict)  # (upstream, kind)
    top: list[tuple[int, float, str, str]] = field(default_factory=list)  # heap
    top_n: int = 10

    def add(self, record: dict[str, Any]) -> None:
        self.calls += 1
        upstream = record.get("upstream") or "(invalid)"
        outcome = record["outcome"]
        cause = str(record.get("status") or record.get("error_class") or "-")
        at = record["completed_at"]
        self.groups.setdefault((upstream, outcome, cause), Group()).add(at)
        attempts = record.get("attempts") or []
        self.attempts[upstream] = self.attempts.get(upstream, 0) + len(attempts)
        if len(attempts) > 1:
            self.retries[upstream] = self.retries.get(upstream, 0) + len(attempts) - 1
        for attempt in attempts:
            kind = attempt.get("error_class")
            if kind in TIMEOUT_CLASSES:
                self.timeouts[(upstream, kind)] = self.timeouts.get((upstream, kind), 0) + 1
        if len(attempts) > 1:
            item = (len(attempts), -at, record.get("request_id") or "", upstream)
            if len(self.top) < self.top_n:
                heapq.heappush(self.top, item)
            else:
                heapq.heappushpop(self.top, item)

    def to_dict(self) -> dict[str, Any]:
        by_count = sorted(self.groups.items(), key=lambda kv: -kv[1].count)
        return {
            "calls": self.calls,
            "by_upstream_outcome_cause": [
                {
                    "upstream": u,
                    "outcome": o,
                    "cause": c,
                    "count": g.count,
                    "first_at": g.first_at,
                    "last_at": g.last_at,
                }
                for (u, o, c), g in by_count
            ],
            "attempts": dict(sorted(self.attempts.items())),
            "retries": dict(sorted(self.retries.items())),
            "timeouts": [
                {"upstream": u, "kind": k, "attempts": n}
                for (u, k), n in sorted(self.timeouts.items())
            ],
            "most_attempts": [
                {"request_id": rid, "upstream": up, "attempts": n, "completed_at": -neg_at}
                for n, neg_at, rid, up in sorted(self.top, reverse=True)
            ],
        }


def breakdown(records: Iterable[dict[str, Any]], from_ms: int, to_ms: int) -> Breakdown:
    out = Breakdown()
    for record in records:
        if record.get("record_type") == "control":
            continue
        if from_ms <= record["kafka"]["timestamp_ms"] < to_ms:
            out.add(record)
    return out
