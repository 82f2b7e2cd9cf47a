"""The replay's live view (rich): a bar per partition and one in total, with what happened.

Redrawn at most ten times a second whatever the message rate: the replay's progress callback
runs per message, so it only marks the view dirty.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from netscope.replay.runner import ReplaySummary, Tally

REDRAW_S = 0.1
_FIELDS = (
    "read {task.fields[read]}  called {task.fields[called]}  skipped {task.fields[skipped]}"
    "  failed {task.fields[failed]}"
)


class ReplayProgress:
    def __init__(self, planned: dict[int, int], console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}", justify="right"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(_FIELDS),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        zero = {"read": 0, "called": 0, "skipped": 0, "failed": 0}
        self._tasks: dict[int, TaskID] = {
            p: self._progress.add_task(f"partition {p}", total=n, **zero)
            for p, n in sorted(planned.items())
        }
        self._total = self._progress.add_task("total", total=sum(planned.values()), **zero)
        self._last = 0.0

    def __enter__(self) -> ReplayProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, summary: ReplaySummary, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < REDRAW_S:
            return
        self._last = now
        for p, tally in summary.partitions.items():
            task = self._tasks.get(p)
            if task is not None:
                self._show(task, tally)
        self._show(self._total, summary.total)

    def _show(self, task: TaskID, t: Tally) -> None:
        self._progress.update(
            task, completed=t.done, read=t.read, called=t.called, skipped=t.skipped,
            failed=t.failed,
        )  # fmt: skip


def summary_table(summary: ReplaySummary) -> Table:
    table = Table(title=f"replay {summary.run_id}", show_lines=False)
    for col in ("partition", "read", "called", "succeeded", "skipped", "failed", "invalid",
                "filtered"):
        table.add_column(col, justify="right")
    rows = [(str(p), t) for p, t in sorted(summary.partitions.items())]
    rows.append(("total", summary.total))
    for name, t in rows:
        table.add_row(name, *(str(v) for v in (t.read, t.called, t.succeeded, t.skipped,
                                                t.failed, t.invalid, t.filtered)))
    return table
