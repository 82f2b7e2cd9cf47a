"""The states of one thing over time (a circuit breaker, the audit's degraded mode).

Why not a series of slots: a breaker that opens for 1.2 s must show as 1.2 s at its exact
times, whatever the charts' resolution, and a band is only drawn from its changes. This keeps
the changes of the last hour (bounded in number too, so a flapping breaker cannot grow it)
and the state before the oldest one kept, so a band can be drawn from any window's start and
"what state was it in at 12:03:07?" has an answer (the drill-down asks it for each attempt).
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Change:
    at: float  # epoch seconds: the event's own time
    from_state: str
    to_state: str
    reason: str = ""

    def to_list(self) -> list[Any]:
        return [self.at, self.to_state, self.reason]


class StateBand:
    """Changes of one state, time-ordered, the last ``horizon_s`` (and ``max_changes``) kept."""

    __slots__ = ("_before", "_changes", "horizon_s", "max_changes")

    def __init__(self, initial: str, *, horizon_s: float = 3600.0, max_changes: int = 512):
        if max_changes < 1:
            raise ValueError("max_changes must be >= 1")
        self._before = initial  # the state before the oldest change kept
        self._changes: deque[Change] = deque()
        self.horizon_s = horizon_s
        self.max_changes = max_changes

    @property
    def current(self) -> str:
        return self._changes[-1].to_state if self._changes else self._before

    @property
    def changes(self) -> list[Change]:
        return list(self._changes)

    def change(
        self, at: float, to_state: str, reason: str = "", from_state: str | None = None
    ) -> None:
        """Record a move to ``to_state`` at ``at``. A late change (published from another
        thread after a newer one) is put in its place; a change that moves nowhere is kept
        only if the caller says where from (a forced state set again is still an event)."""
        changes = self._changes
        if changes and at < changes[-1].at:
            ordered = list(changes)
            i = bisect.bisect_right([c.at for c in ordered], at)
            before = ordered[i - 1].to_state if i else self._before
            ordered.insert(i, Change(at, from_state or before, to_state, reason))
            self._changes = deque(ordered)
        else:
            before = self.current
            if from_state is None and to_state == before:
                return
            changes.append(Change(at, from_state or before, to_state, reason))
        while len(self._changes) > self.max_changes:
            self._before = self._changes.popleft().to_state

    def prune(self, now: float) -> None:
        """Forget changes older than the horizon (their outcome stays as the initial state)."""
        horizon = now - self.horizon_s
        changes = self._changes
        while changes and changes[0].at < horizon:
            self._before = changes.popleft().to_state

    def state_at(self, t: float) -> str:
        """The state at time ``t`` (before the oldest change kept: the state it left)."""
        state = self._before
        for change in self._changes:
            if change.at > t:
                break
            state = change.to_state
        return state

    def window(self, start: float) -> dict[str, Any]:
        """What a band from ``start`` needs: the state then, and each change after it."""
        return {
            "initial": self.state_at(start),
            "changes": [c.to_list() for c in self._changes if c.at > start],
        }
