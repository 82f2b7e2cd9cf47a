"""``netscope audit``: read the audit back (runbook section 7, "Reconstitution depuis audit").

    netscope audit ls -c FILE --from 2026-12-04T10:00:00Z --to 2026-12-04T12:00:00Z
        [--records] [--json]
    netscope audit timeline -c FILE --from ... --to ... [--trace-id ID | --request-id ID |
        --idempotency-key K] [--upstream U] [--outcome O] [--json | --jsonl] [--limit N]
    netscope audit errors -c FILE --from ... --to ... [--json]
    netscope report -c FILE --from ... --to ... [--incident INC-01] -o FILE [--format md]

Exit codes: 0 listed (an empty period says so), 1 the store cannot be read, 2 bad arguments
or configuration.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from netscope.audit.store import AuditStore
from netscope.config import ConfigError, load_settings
from netscope.forensics.listing import HourListing, count_records, list_period
from netscope.forensics.timeline import Row
from netscope.replay.window import parse_time

EXIT_FAILED, EXIT_CONFIG = 1, 2

app = typer.Typer(
    help="Read the audit back: list a period's objects, rebuild a timeline.",
    no_args_is_help=True,
)
FromOpt = Annotated[
    str, typer.Option("--from", help="Period start (event time): RFC 3339 with a zone, epoch ms.")
]
ToOpt = Annotated[str, typer.Option("--to", help="Period end (exclusive), same forms.")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="The service's TOML file.")
]


def _reason(exc: Exception) -> str:
    """One line: obstore appends its whole debug tree ("Debug source: ...") to the message."""
    text = str(exc).split("\n\nDebug source:", 1)[0].strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _window(from_: str, to: str) -> tuple[int, int]:
    from_ms, to_ms = parse_time(from_), parse_time(to)
    if from_ms >= to_ms:
        raise ValueError("--from must be before --to")
    return from_ms, to_ms


@app.command("ls")
def ls(
    from_: FromOpt,
    to: ToOpt,
    config: ConfigOpt = None,
    records: Annotated[
        bool, typer.Option("--records", help="Also count records (reads every object).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """The audit objects of a period, per event hour: count, bytes, partitions, replays."""
    try:
        settings = load_settings(config)
        from_ms, to_ms = _window(from_, to)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"netscope audit: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    console = Console(stderr=True)
    store = AuditStore.from_config(settings.audit)
    try:
        hours = asyncio.run(_list(store, settings.audit.prefix, from_ms, to_ms, records, console))
    except Exception as exc:  # obstore raises its own error types per backend
        typer.echo(f"netscope audit: cannot read {store.description}: {_reason(exc)}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    if as_json:
        sys.stdout.write(orjson.dumps([h.to_dict() for h in hours]).decode() + "\n")
        return
    Console().print(_table(store.description, hours, records))
    if not any(h.objects for h in hours):
        console.print("no audit object in this period (check --from/--to: event time, UTC)")


async def _list(
    store: AuditStore, prefix: str, from_ms: int, to_ms: int, records: bool, console: Console
) -> list[HourListing]:
    hours: list[HourListing] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("listing hours", total=None)
        all_keys: list[tuple[HourListing, list[str]]] = []
        async for listing, keys in list_period(store, prefix, from_ms, to_ms):
            hours.append(listing)
            all_keys.append((listing, keys))
            progress.update(task, description=f"listed {listing.hour}")
        if records:
            total = sum(len(keys) for _, keys in all_keys)
            task = progress.add_task("reading objects", total=total)
            for listing, keys in all_keys:
                listing.records = await count_records(
                    store, keys, lambda: progress.advance(task)
                )
    return hours


def _table(where: str, hours: list[HourListing], records: bool) -> Table:
    table = Table(title=f"audit objects in {where}")
    columns = ["hour (UTC)", "objects", "bytes", "partitions", "replay objects", "control"]
    if records:
        columns.insert(3, "records")
    for name in columns:
        table.add_column(name, justify="right")
    total = HourListing("total", records=0 if records else None)
    for h in hours:
        row = [h.hour, str(h.objects), f"{h.bytes:,}", str(len(h.partitions)),
               f"{h.replay_objects}" + (f" ({len(h.runs)} runs)" if h.runs else ""),
               str(h.control_objects)]  # fmt: skip
        if records:
            row.insert(3, str(h.records))
            total.records = (total.records or 0) + (h.records or 0)
        table.add_row(*row)
        total.objects += h.objects
        total.bytes += h.bytes
        total.replay_objects += h.replay_objects
        total.control_objects += h.control_objects
    row = ["total", str(total.objects), f"{total.bytes:,}", "", str(total.replay_objects),
           str(total.control_objects)]  # fmt: skip
    if records:
        row.insert(3, str(total.records))
    table.add_row(*row)
    return table


@app.command("timeline")
def timeline(
    from_: FromOpt,
    to: ToOpt,
    config: ConfigOpt = None,
    trace_id: Annotated[str | None, typer.Option(help="W3C trace id (32 hex).")] = None,
    request_id: Annotated[str | None, typer.Option(help="The message's request_id.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Its idempotency_key.")] = None,
    upstream: Annotated[str | None, typer.Option(help="Only calls to this upstream.")] = None,
    outcome: Annotated[str | None, typer.Option(help="Only this outcome.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array on stdout.")] = False,
    as_jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON row per line.")] = False,
    limit: Annotated[int, typer.Option(help="Most rows in the terminal table.")] = 500,
) -> None:
    """The chronology of matching calls, every attempt expanded, with the control events
    (breaker, throttle, degraded mode) of their upstreams around them; live and replay apart."""
    from netscope.forensics.reader import read_period
    from netscope.forensics.timeline import Filters, build

    try:
        settings = load_settings(config)
        from_ms, to_ms = _window(from_, to)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"netscope audit: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    filters = Filters(trace_id, request_id, idempotency_key, upstream, outcome)
    console = Console(stderr=True)
    store = AuditStore.from_config(settings.audit)
    unreadable: list[str] = []

    async def collect() -> list[dict[str, Any]]:
        out = []
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("reading audit objects", total=None)
            async for record in read_period(
                store, settings.audit.prefix, from_ms, to_ms,
                needles=filters.needles(),
                on_listed=lambda n: progress.update(task, total=n),
                on_object=lambda: progress.advance(task),
                unreadable=unreadable,
            ):  # fmt: skip
                out.append(record)
        return out

    try:
        records = asyncio.run(collect())
    except Exception as exc:  # obstore raises its own error types per backend
        typer.echo(f"netscope audit: cannot read {store.description}: {_reason(exc)}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    rows = build(records, filters, from_ms, to_ms)
    for problem in unreadable:
        console.print(f"[yellow]skipped unreadable object {problem}[/]")
    if as_json or as_jsonl:
        dicts = [row.to_dict() for row in rows]
        if as_json:
            sys.stdout.write(orjson.dumps(dicts).decode() + "\n")
        else:
            sys.stdout.write("".join(orjson.dumps(d).decode() + "\n" for d in dicts))
        return
    if not rows:
        console.print("no matching call in this period (--from/--to are event time, UTC)")
        return
    Console().print(_timeline_table(rows[:limit]))
    if len(rows) > limit:
        console.print(f"{len(rows) - limit} more rows: raise --limit, or use --jsonl")


def _timeline_table(rows: list[Row]) -> Table:
    from datetime import UTC, datetime

    table = Table(title="timeline (UTC)")
    for name in ("time", "kind", "what", "upstream", "request_id", "run", "detail"):
        table.add_column(name)
    for row in rows:
        at = datetime.fromtimestamp(row.at, UTC).strftime("%H:%M:%S.%f")[:-3]
        detail = ", ".join(f"{k}={v}" for k, v in row.detail.items() if v not in (None, ""))
        table.add_row(at, row.kind, row.what, row.upstream or "", row.request_id or "",
                      row.run, detail)  # fmt: skip
    return table


@app.command("errors")
def errors(
    from_: FromOpt,
    to: ToOpt,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """What went wrong in a period: calls by upstream x outcome x status / error class (with
    first and last occurrence), retries, timeouts by kind, the requests with most attempts."""
    from netscope.forensics.errors import Breakdown
    from netscope.forensics.reader import read_period

    try:
        settings = load_settings(config)
        from_ms, to_ms = _window(from_, to)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"netscope audit: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    console = Console(stderr=True)
    store = AuditStore.from_config(settings.audit)
    unreadable: list[str] = []

    async def collect() -> Breakdown:
        folded = Breakdown()  # record by record: memory does not grow with the period
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("reading audit objects", total=None)
            async for record in read_period(
                store, settings.audit.prefix, from_ms, to_ms,
                on_listed=lambda n: progress.update(task, total=n),
                on_object=lambda: progress.advance(task),
                unreadable=unreadable,
            ):  # fmt: skip
                if record.get("record_type") != "control" and (
                    from_ms <= record["kafka"]["timestamp_ms"] < to_ms
                ):
                    folded.add(record)
        return folded

    try:
        result = asyncio.run(collect()).to_dict()
    except Exception as exc:  # obstore raises its own error types per backend
        typer.echo(f"netscope audit: cannot read {store.description}: {_reason(exc)}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    for problem in unreadable:
        console.print(f"[yellow]skipped unreadable object {problem}[/]")
    if as_json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        return
    if not result["calls"]:
        console.print("no call in this period (--from/--to are event time, UTC)")
        return
    out = Console()
    out.print(_errors_table(result))
    for name in ("attempts", "retries"):
        out.print(f"{name}: " + ", ".join(f"{u} {n}" for u, n in result[name].items()))
    timeouts = [f"{t['upstream']} {t['kind']} {t['attempts']}" for t in result["timeouts"]]
    if timeouts:
        out.print("timeouts (attempts): " + ", ".join(timeouts))
    most = [f"{m['request_id']} ({m['attempts']})" for m in result["most_attempts"]]
    if most:
        out.print("most attempts: " + ", ".join(most))


def _errors_table(result: dict[str, Any]) -> Table:
    from datetime import UTC, datetime

    def hhmmss(at: float) -> str:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")

    table = Table(title=f"{result['calls']} calls by upstream, outcome and cause (UTC)")
    for name in ("upstream", "outcome", "status / error class", "count", "first", "last"):
        table.add_column(name, justify="right" if name == "count" else "left")
    for g in result["by_upstream_outcome_cause"]:
        table.add_row(g["upstream"], g["outcome"], g["cause"], str(g["count"]),
                      hhmmss(g["first_at"]), hhmmss(g["last_at"]))  # fmt: skip
    return table


def report(
    from_: FromOpt,
    to: ToOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="The journal's file.")],
    config: ConfigOpt = None,
    incident: Annotated[
        str | None, typer.Option(help="The incident's ID, e.g. INC-01 (runbook section 6).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="html (one file) or md.")] = "html",
    bin_s: Annotated[
        int | None,
        typer.Option(help="Plot and detection bin, seconds (default 60; 3600 past 2 days)."),
    ] = None,
) -> None:
    """The post-incident journal (runbook section 9), pre-filled from the audit: start/end,
    impact, invariants touched with evidence, control events, plots; its data as JSON beside."""
    from netscope.forensics import report as report_mod

    try:
        settings = load_settings(config)
        from_ms, to_ms = _window(from_, to)
        if fmt not in ("html", "md"):
            raise ValueError(f"--format must be html or md, not {fmt!r}")
        if bin_s is not None and not 1 <= bin_s <= 86400:
            raise ValueError("--bin-s must be between 1 and 86400 seconds")
        if bin_s is not None and (to_ms - from_ms) / 1000 / bin_s > 20_000:
            raise ValueError("--bin-s: more than 20,000 bins in this window; use a larger bin")
        if not output.parent.is_dir():
            raise ValueError(f"--output: no directory {output.parent}")
    except (ConfigError, ValueError) as exc:
        typer.echo(f"netscope report: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    console = Console(stderr=True)
    store = AuditStore.from_config(settings.audit)
    deadlines = {name: up.deadline_s for name, up in settings.upstreams.items()}

    async def collect() -> dict[str, Any]:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("reading audit objects", total=None)
            return await report_mod.build(
                store, settings.audit.prefix, from_ms, to_ms, deadlines_s=deadlines,
                incident=incident, bin_s=bin_s, on_listed=lambda n: progress.update(task, total=n),
                on_object=lambda: progress.advance(task),
            )  # fmt: skip

    try:
        data = asyncio.run(collect())
    except Exception as exc:  # obstore raises its own error types per backend
        typer.echo(f"netscope report: cannot read {store.description}: {_reason(exc)}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    for problem in data["objects"]["unreadable"]:
        console.print(f"[yellow]skipped unreadable object {problem}[/]")
    if not data["totals"]["calls"] and not data["control_events"]:
        console.print("no audit record in this period (--from/--to are event time, UTC)")
    written = report_mod.write(data, output, fmt)
    det = data["detected"]
    console.print(f"{data['totals']['calls']} calls; incident detected "
                  + (f"{det['start']} to {det['end']}" if det["start"] else "nowhere"))  # fmt: skip
    for path in written:
        typer.echo(str(path))
