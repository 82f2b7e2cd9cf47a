"""The vocabulary of a check: a status per line, and the exit code of a list of lines.

Shared by ``netscope check`` and ``netscope check-config --connect`` so both read the same
and scripts can rely on one convention: 0 all pass, 1 a warning, 2 a failure. ``skip`` is
a line that could not be judged (needs ``--prometheus``, no traffic, no NTP client): it is
shown with its reason and never changes the exit code, because a check that fails for want
of data would teach operators to ignore it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

EXIT_PASS, EXIT_WARN, EXIT_FAIL = 0, 1, 2


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


# Worst first: the exit code and a summary take the worst status present.
_SEVERITY = {Status.SKIP: 0, Status.PASS: 1, Status.WARN: 2, Status.FAIL: 3}


@dataclass(frozen=True, slots=True)
class Line:
    """One checked item: what was measured, against what, and the verdict.

    ``key`` is stable for scripts (``--json``), ``name`` is for people.
    """

    key: str
    name: str
    status: Status
    figure: str
    threshold: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = str(self.status)
        return out


def worst(statuses: list[Status]) -> Status:
    """The most severe status; SKIP when there is nothing judged."""
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.SKIP)


def exit_code(lines: list[Line]) -> int:
    """0 every judged line passes (or nothing could be judged), 1 a warning, 2 a failure."""
    status = worst([line.status for line in lines])
    return {Status.FAIL: EXIT_FAIL, Status.WARN: EXIT_WARN}.get(status, EXIT_PASS)
