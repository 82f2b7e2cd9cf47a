"""How a list of checked lines is shown: a rich table in a terminal, plain text otherwise
(logs, pipes, cron mail keep one line per item with no escape codes), or JSON for tools."""

from __future__ import annotations

from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from netscope.ops.verdict import Line, Status, exit_code

_STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.SKIP: "dim"}
_MARK = {Status.PASS: "PASS", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "skip"}


def summary(lines: list[Line]) -> str:
    counts = {s: sum(1 for ln in lines if ln.status is s) for s in Status}
    return (f"{counts[Status.PASS]} pass, {counts[Status.WARN]} warn, "
            f"{counts[Status.FAIL]} fail, {counts[Status.SKIP]} not judged "
            f"-> exit {exit_code(lines)}")  # fmt: skip


def plain(lines: list[Line], header: str) -> str:
    """Aligned columns: mark, item, figure, threshold; the detail indented below."""
    name_w = max((len(ln.name) for ln in lines), default=0)
    fig_w = min(60, max((len(ln.figure) for ln in lines), default=0))
    out = [header]
    for ln in lines:
        out.append(f"{_MARK[ln.status]}  {ln.name:<{name_w}}  {ln.figure:<{fig_w}}  "
                   f"[{ln.threshold}]".rstrip())  # fmt: skip
        if ln.detail and ln.status is not Status.PASS:
            out.append(f"      {'':<{name_w}}  {ln.detail}")
    out.append(summary(lines))
    return "\n".join(out)


def table(lines: list[Line], header: str, console: Console) -> None:
    t = Table(title=Text(header), title_justify="left", show_lines=False)
    for column in ("", "item", "figure", "threshold", "detail"):
        t.add_column(column, overflow="fold")
    for ln in lines:
        # Text, not markup: a figure or an error may hold brackets ("[Errno 111]").
        cells = (ln.name, ln.figure, ln.threshold, "" if ln.status is Status.PASS else ln.detail)
        t.add_row(Text(_MARK[ln.status], style=_STYLE[ln.status]), *(Text(c) for c in cells))
    console.print(t)
    console.print(summary(lines))


def as_json(lines: list[Line], meta: dict[str, Any]) -> str:
    doc = {**meta, "exit_code": exit_code(lines), "items": [ln.to_dict() for ln in lines]}
    return orjson.dumps(doc).decode()
