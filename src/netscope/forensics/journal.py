"""The incident journal (runbook section 9) as a self-contained HTML page or as Markdown.

Rendered from the report's JSON (forensics/incident.py) and its SVG plots
(forensics/plots.py). The HTML has its style inline and no script, font or image from
elsewhere: it opens offline, prints on A4, and is what gets attached to a post-mortem. What
only a person knows (root cause, actions, corrective actions, post-fix validation) is there
and marked "to be filled"; what the audit shows is filled and marked editable.
"""

from __future__ import annotations

from html import escape
from typing import Any

TO_FILL = "To be filled"
STATUS_MARK = {"held": "held", "touched": "touched", "check": "to check", "violated": "VIOLATED",
               "pass": "pass", "fail": "FAIL", "unknown": "unknown"}  # fmt: skip

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
       max-width: 1000px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; border-bottom: 1px solid #ddd;
  padding-bottom: 3px; margin-top: 28px; }
.meta { color: #555; font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.journal th { width: 24%; }
.fill { background: #fff8e1; color: #8d6e00; font-style: italic; }
.editable { border-bottom: 1px dashed #999; }
.s-held, .s-pass { color: #2e7d32; } .s-touched, .s-check, .s-unknown { color: #ef6c00; }
.s-violated, .s-fail { color: #c62828; font-weight: 600; }
figure { margin: 12px 0; page-break-inside: avoid; } figure svg { width: 100%; height: auto; }
@media print { body { margin: 0; max-width: none; font-size: 11px; }
  h2 { page-break-after: avoid; } table, figure { page-break-inside: avoid; } }
@page { size: A4; margin: 14mm; }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _impact_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = [[up, str(c.get("calls", 0)), str(c.get("failed", 0)), str(c.get("timeouts", 0)),
             str(c.get("past_deadline", 0)), str(c.get("rejected", 0))]
            for up, c in data["impact"].items()]  # fmt: skip
    return rows


IMPACT_HEAD = ["upstream", "calls", "failed", "timed out", "past deadline", "rejected"]


def impact_summary(data: dict[str, Any]) -> str:
    totals = data["totals"]
    failed = sum(c.get("failed", 0) for c in data["impact"].values())
    late = sum(c.get("past_deadline", 0) for c in data["impact"].values())
    rejected = sum(c.get("rejected", 0) for c in data["impact"].values())
    return (
        f"{totals['calls']} messages: {failed} calls failed, {late} past their deadline, "
        f"{rejected} rejected by NetScope, {totals['dead_lettered']} dead-lettered (DLQ)"
    )


def invariants_summary(data: dict[str, Any]) -> str:
    hit = [f"{i['id']} ({STATUS_MARK[i['status']]})" for i in data["invariants"]
           if i["status"] != "held"]  # fmt: skip
    return ", ".join(hit) or "none"


def html(data: dict[str, Any], plots: dict[str, str]) -> str:
    det, win = data["detected"], data["window"]
    title = f"Incident {data['incident'] or '(no ID)'}: {win['from']} to {win['to']}"
    fill = f'<span class="fill">{TO_FILL}</span>'
    journal = [
        ("Incident ID", _e(data["incident"]) if data["incident"] else fill),
        ("Start / End", f'<span class="editable">{_e(det["start"] or "none detected")}</span> '
                        f'→ <span class="editable">{_e(det["end"] or "-")}</span>'
                        f'<div class="meta">as detected: {_e(det["rule"])}</div>'),
        ("Impact", f'<span class="editable">{_e(impact_summary(data))}</span>'),
        ("Invariants touched (I1..I5)", _e(invariants_summary(data))),
        ("Root cause", fill), ("Immediate actions", fill),
        ("Long-term corrective actions", fill), ("Post-fix validation", fill),
    ]  # fmt: skip
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">NetScope post-incident report, generated {_e(data["generated_at"])} '
        f"from {_e(data['store'])}; {data['objects']['read']} audit objects read"
        + (f", {len(data['objects']['unreadable'])} unreadable (skipped, listed below)"
           if data["objects"]["unreadable"] else "") + ". Event-time window, UTC.</p>",
        "<h2>Journal (runbook section 9)</h2>",
        _table(["field", "value"], [[k, v] for k, v in journal], raw=True, cls="journal"),
        "<h2>Impact by upstream</h2>",
        _table(IMPACT_HEAD, _impact_rows(data), numeric_from=1),
        "<h2>Invariants</h2>",
        _table(["", "invariant", "status", "evidence"], [
            [_e(i["id"]), _e(i["name"]),
             f'<span class="s-{i["status"]}">{_e(STATUS_MARK[i["status"]])}</span>',
             "<br>".join(_e(x) for x in i["evidence"]) or "-"] for i in data["invariants"]
        ], raw=True),
    ]  # fmt: skip
    if data["validation"]:
        parts += [
            "<h2>Back to normal? (runbook section 6)</h2>",
            _table(["incident", "check", "status", "evidence"], [
                [_e(v["incident"]), _e(v["check"]),
                 f'<span class="s-{v["status"]}">{_e(STATUS_MARK[v["status"]])}</span>',
                 _e(v["evidence"])] for v in data["validation"]
            ], raw=True),
        ]  # fmt: skip
    parts.append("<h2>Plots</h2>")
    for name, svg in plots.items():
        parts.append(f'<figure id="plot-{_e(name)}">{svg}</figure>')
    parts += ["<h2>Control events</h2>", _controls_table(data)]
    if data["degraded_periods"]:
        parts += ["<h2>Degraded periods (audit to the local spool)</h2>", _table(
            ["instance", "start", "end", "duration s", "backlog at start", "drained records",
             "spool empty at"],
            [[p["instance_id"], p["start"], p["end"] or "ongoing", p["duration_s"],
              p["backlog_batches_at_start"], p["drained_records"], p["backlog_empty_at"]]
             for p in data["degraded_periods"]])]  # fmt: skip
    parts += ["<h2>Outcomes</h2>", _table(["outcome", "messages"], [
        [o, n] for o, n in data["totals"]["by_outcome"].items()], numeric_from=1)]  # fmt: skip
    if data["partitions"]:
        parts += ["<h2>Partitions (I2 evidence)</h2>", _table(
            ["topic", "partition", "records", "first offset", "last offset", "missing",
             "duplicated"],
            [[p["topic"], p["partition"], p["records"], p["first_offset"], p["last_offset"],
              p["missing_offsets"], p["duplicate_records"]] for p in data["partitions"]],
            numeric_from=1)]  # fmt: skip
    if data["objects"]["unreadable"]:
        parts += ["<h2>Unreadable objects (skipped)</h2>", "<ul>"
                  + "".join(f"<li>{_e(u)}</li>" for u in data["objects"]["unreadable"])
                  + "</ul>"]  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts)


def _controls_table(data: dict[str, Any]) -> str:
    rows = []
    for c in data["control_events"]:
        d = c["data"]
        detail = d.get("reason") or ""
        if c["event"] in ("degraded_mode", "spool_drained"):
            detail = (f"{detail} spool backlog {d.get('spool_pending_batches')} batches").strip()
        rows.append([c["at"], c["what"], c["upstream"] or "", c["instance_id"] or "",
                     c["actor"] or "", c["run"], detail])  # fmt: skip
    if not rows:
        return "<p>No control event in this period.</p>"
    return _table(["time (UTC)", "event", "upstream", "instance", "who", "run", "detail"], rows)


def _table(
    head: list[str], rows: list[list[Any]], *, raw: bool = False, numeric_from: int | None = None,
    cls: str = "",
) -> str:  # fmt: skip
    out = [f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head)
           + "</tr></thead><tbody>"]  # fmt: skip
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            num = numeric_from is not None and i >= numeric_from
            cells.append(f'<td{" class=n" if num else ""}>{v if raw else _e(v)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def markdown(data: dict[str, Any], plot_files: dict[str, str]) -> str:
    """The same journal in Markdown; plots are SVG files beside it (``plot_files``: name ->
    relative path)."""
    det, win = data["detected"], data["window"]
    fill = f"_{TO_FILL}_"
    lines = [
        f"# Incident {data['incident'] or '(no ID)'}: {win['from']} to {win['to']}", "",
        f"NetScope post-incident report, generated {data['generated_at']} from "
        f"{data['store']}; {data['objects']['read']} audit objects read. Event-time window, UTC.",
        "", "## Journal (runbook section 9)", "",
        f"- **Incident ID**: {data['incident'] or fill}",
        f"- **Start / End**: {det['start'] or 'none detected'} → {det['end'] or '-'} "
        f"(as detected: {det['rule']}; editable)",
        f"- **Impact**: {impact_summary(data)}",
        f"- **Invariants touched** (I1..I5): {invariants_summary(data)}",
        f"- **Root cause**: {fill}", f"- **Immediate actions**: {fill}",
        f"- **Long-term corrective actions**: {fill}", f"- **Post-fix validation**: {fill}",
        "", "## Impact by upstream", "", _md_table(IMPACT_HEAD, _impact_rows(data)),
        "", "## Invariants", "",
        _md_table(["", "invariant", "status", "evidence"], [
            [i["id"], i["name"], STATUS_MARK[i["status"]], "; ".join(i["evidence"]) or "-"]
            for i in data["invariants"]]),
    ]  # fmt: skip
    if data["validation"]:
        lines += ["", "## Back to normal? (runbook section 6)", "", _md_table(
            ["incident", "check", "status", "evidence"],
            [[v["incident"], v["check"], STATUS_MARK[v["status"]], v["evidence"]]
             for v in data["validation"]])]  # fmt: skip
    lines += ["", "## Plots", ""]
    lines += [f"![{name}]({path})" for name, path in plot_files.items()]
    lines += ["", "## Control events", "", _md_table(
        ["time (UTC)", "event", "upstream", "instance", "who", "run"],
        [[c["at"], c["what"], c["upstream"] or "", c["instance_id"] or "", c["actor"] or "",
          c["run"]] for c in data["control_events"]]) if data["control_events"] else
        "No control event in this period."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _md_table(head: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return ("" if v is None else str(v)).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)
