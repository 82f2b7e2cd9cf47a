"""``netscope report``: read a period's audit once, fold it, write the journal and its data.

The plain streaming reader (forensics/reader.py) feeds ``IncidentFold`` record by record:
memory stays flat however long the period (bench/audit_engine_bench.py measures it against
DuckDB and Polars; the fold's own cost is measured there too). The JSON written beside the
HTML or Markdown is the report's data, for tools and tests: whatever the page says is in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from netscope.audit.store import AuditStore
from netscope.forensics.incident import IncidentFold, iso
from netscope.forensics.reader import read_period
from netscope.forensics.validation import validate


async def build(
    store: AuditStore,
    prefix: str,
    from_ms: int,
    to_ms: int,
    *,
    deadlines_s: dict[str, float],
    incident: str | None = None,
    bin_s: int | None = None,
    on_listed: Callable[[int], None] = lambda n: None,
    on_object: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """The report's data for ``[from_ms, to_ms)`` (event time)."""
    if bin_s is None:  # minutes; hours past two days (a week of minutes is 10,080 bins)
        bin_s = 60 if (to_ms - from_ms) / 1000 <= 2 * 86400 else 3600
    fold = IncidentFold(from_ms, to_ms, deadlines_s=deadlines_s, bin_s=bin_s)
    unreadable: list[str] = []
    objects = 0

    def counted() -> None:
        nonlocal objects
        objects += 1
        on_object()

    async for record in read_period(
        store, prefix, from_ms, to_ms, on_listed=on_listed, on_object=counted,
        unreadable=unreadable,
    ):  # fmt: skip
        fold.add(record)
    data = fold.result()
    data.update(
        incident=incident,
        generated_at=iso(time.time()),
        store=store.description,
        objects={"read": objects, "unreadable": unreadable},
    )
    data["validation"] = validate(data, incident)
    return data


def write(data: dict[str, Any], out: Path, fmt: str) -> list[Path]:
    """Write the journal (``html`` or ``md``) to ``out`` and its data to ``out`` + ``.json``;
    Markdown's plots go to SVG files beside it. Returns the paths written."""
    from netscope.forensics import journal, plots

    svgs = plots.render_all(data)
    written = [out]
    if fmt == "html":
        out.write_text(journal.html(data, svgs), encoding="utf-8")
    else:
        files = {}
        for name, svg in svgs.items():
            path = out.with_name(f"{out.stem}.{name}.svg")
            path.write_text(svg, encoding="utf-8")
            files[name] = path.name
            written.append(path)
        out.write_text(journal.markdown(data, files), encoding="utf-8")
    data_path = out.with_name(out.name + ".json")
    data_path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    written.append(data_path)
    return written
