"""``netscope replay``: the runbook's section 7 as one command (docs/runbook.md).

    netscope replay -c FILE --from 2026-12-04T10:00:00Z --to 2026-12-04T10:15:00Z \\
        [--topic T] [--partitions 0,2] [--rate 50] [--upstream payments] [--dry-run] [--yes]
    netscope replay -c FILE --from ... --to ... --reset-group netscope   (moves a group)

Exit codes: 0 done (every message has its record; upstream errors are outcomes, counted in
the summary), 1 not done cleanly (a record not durable, messages left uncalled because the
ledger could not be asked, the ledger down for a dry run) or the broker cannot look offsets
up by time, 2 bad arguments or configuration, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table

from netscope.config import ConfigError, Settings, load_settings
from netscope.contract.request import CallRequest, parse_request
from netscope.ledger.factory import build_ledger
from netscope.ledger.model import EntryState, LedgerKey, LedgerUnavailable
from netscope.replay.window import (
    GroupActive,
    WindowPlan,
    WindowStalled,
    WindowUnsupported,
    format_ms,
    parse_time,
    plan_window,
    read_window,
    reset_group,
    window_consumer,
)

EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 1, 2, 130
DRY_RUN_LOOKUP_BATCH = 500


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"netscope replay: {message}", err=True)
    return typer.Exit(code)


def replay_command(
    from_: Annotated[
        str, typer.Option("--from", help="Window start, RFC 3339 with a zone, or epoch ms.")
    ],
    to: Annotated[str, typer.Option("--to", help="Window end (exclusive), same forms.")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="The service's TOML file.")
    ] = None,
    topic: Annotated[
        str | None, typer.Option(help="Topic (default: kafka.requests_topic).")
    ] = None,
    partitions: Annotated[
        str | None, typer.Option(help="Comma-separated partitions (default: all).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Messages per second (default: unlimited).")
    ] = None,
    upstream: Annotated[
        str | None, typer.Option(help="Only messages for this upstream; others are left.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read the window, call nothing, print the plan.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    reset_group_name: Annotated[
        str | None,
        typer.Option(
            "--reset-group",
            help="Instead of replaying here, move this (stopped) consumer group's offsets "
            "to the window start, like kafka-consumer-groups --reset-offsets.",
        ),
    ] = None,
    summary_json: Annotated[
        Path | None, typer.Option(help="Where the final summary goes (default: replay-RUN.json).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve the replay's Prometheus metrics on 127.0.0.1:PORT while it runs."),
    ] = None,
) -> None:
    """Replay a Kafka time window through the live path, without duplicate side effects."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    try:
        from_ms, to_ms = parse_time(from_), parse_time(to)
        parts = [int(p) for p in partitions.split(",")] if partitions else None
    except ValueError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    if rate is not None and rate <= 0:
        raise _fail("--rate must be > 0 messages per second", EXIT_CONFIG)
    if upstream is not None and upstream not in settings.upstreams:
        known = ", ".join(sorted(settings.upstreams)) or "none"
        raise _fail(f"--upstream {upstream!r} is not configured (known: {known})", EXIT_CONFIG)
    topic = topic or settings.kafka.requests_topic
    console = Console(stderr=True)
    code = asyncio.run(
        _main(
            settings, console, topic=topic, from_ms=from_ms, to_ms=to_ms, parts=parts,
            rate=rate, upstream=upstream, dry_run=dry_run, yes=yes,
            reset_group_name=reset_group_name, summary_json=summary_json,
            metrics_port=metrics_port,
        )
    )  # fmt: skip
    raise typer.Exit(code)


async def _main(
    settings: Settings,
    console: Console,
    *,
    topic: str,
    from_ms: int,
    to_ms: int,
    parts: list[int] | None,
    rate: float | None,
    upstream: str | None,
    dry_run: bool,
    yes: bool,
    reset_group_name: str | None,
    summary_json: Path | None,
    metrics_port: int | None = None,
) -> int:
    try:
        async with window_consumer(settings.kafka) as consumer:
            plan = await plan_window(consumer, topic, from_ms, to_ms, parts)
            console.print(plan_table(topic, plan))
            if plan.empty:
                console.print("nothing to replay: the window holds no message")
                return 0
            if reset_group_name is not None:
                return await _reset(settings, console, reset_group_name, plan, yes=yes)
            if dry_run:
                return await _dry_run(settings, console, consumer, plan, upstream)
            if not yes and not _confirm(plan, rate):
                return EXIT_FAILED
            return await _replay(
                settings, console, consumer, topic, plan, rate, upstream, summary_json,
                metrics_port,
            )
    except WindowUnsupported as exc:
        console.print(f"[red]netscope replay: cannot replay a time window here:[/] {exc}")
        return EXIT_FAILED
    except LedgerUnavailable as exc:
        console.print(f"[red]netscope replay:[/] {exc}")
        return EXIT_FAILED
    except (WindowStalled, ValueError) as exc:
        console.print(f"[red]netscope replay:[/] {exc}")
        return EXIT_FAILED if isinstance(exc, WindowStalled) else EXIT_CONFIG


def plan_table(topic: str, plan: WindowPlan) -> Table:
    table = Table(title=f"{topic}  [{format_ms(plan.from_ms)}, {format_ms(plan.to_ms)})")
    for col in ("partition", "start offset", "end offset", "messages"):
        table.add_column(col, justify="right")
    for p in plan.partitions:
        table.add_row(str(p.partition), str(p.start_offset), str(p.end_offset), str(p.offsets))
    table.add_row("total", "", "", str(plan.total_offsets))
    return table


def _confirm(plan: WindowPlan, rate: float | None) -> bool:
    if not sys.stdin.isatty():
        typer.echo("netscope replay: not a terminal: pass --yes to replay", err=True)
        return False
    pace = f" at {rate:g}/s" if rate else ""
    return typer.confirm(f"Replay {plan.total_offsets} messages{pace}?")


async def _reset(
    settings: Settings, console: Console, group: str, plan: WindowPlan, *, yes: bool
) -> int:
    preview = await reset_group(settings.kafka, group, plan, dry_run=True)
    console.print(_reset_table(group, preview.rows(), "would move"))
    if not yes and not (sys.stdin.isatty() and typer.confirm(f"Reset group {group!r}?")):
        console.print("not reset (pass --yes, or answer y)")
        return EXIT_FAILED
    try:
        done = await reset_group(settings.kafka, group, plan, dry_run=False)
    except GroupActive as exc:
        console.print(f"[red]netscope replay: {exc}[/]")
        return EXIT_FAILED
    console.print(_reset_table(group, done.rows(), "moved"))
    console.print(
        f"group {group!r} will resume at the window start; its instances re-process it, "
        "and the idempotency ledger skips what was completed"
    )
    return 0


def _reset_table(group: str, rows: list[tuple[str, int, int | None, int]], verb: str) -> Table:
    table = Table(title=f"group {group}: {verb}")
    for col in ("topic", "partition", "committed", "new offset"):
        table.add_column(col, justify="right")
    for t, p, before, after in rows:
        table.add_row(t, str(p), "-" if before is None else str(before), str(after))
    return table


async def _dry_run(
    settings: Settings,
    console: Console,
    consumer: AIOKafkaConsumer,
    plan: WindowPlan,
    upstream: str | None,
) -> int:
    """Read the window and say what a replay would do; nothing is called or written."""
    by_partition: Counter[int] = Counter()
    by_upstream: Counter[str] = Counter()
    keys: list[LedgerKey] = []
    async for record in read_window(consumer, plan):
        parsed = parse_request(
            record.value,
            upstreams=settings.upstreams,
            header_traceparent=None,
            max_message_bytes=settings.pipeline.max_message_bytes,
        )
        name = parsed.upstream if isinstance(parsed, CallRequest) else "(invalid)"
        if upstream is not None and name not in (upstream, "(invalid)"):
            continue
        by_partition[record.partition] += 1
        by_upstream[name] += 1
        if isinstance(parsed, CallRequest) and settings.upstreams[name].idempotency.enabled:
            keys.append(LedgerKey(name, parsed.idempotency_key))
    table = Table(title="dry run: what a replay would do (nothing called)")
    table.add_column("by", justify="left")
    table.add_column("messages", justify="right")
    for p, n in sorted(by_partition.items()):
        table.add_row(f"partition {p}", str(n))
    for name, n in sorted(by_upstream.items()):
        table.add_row(f"upstream {name}", str(n))
    console.print(table)
    completed = await _completed_in_ledger(settings, keys)
    if completed is None:
        console.print("ledger: off (every message would be called again)")
    else:
        console.print(
            f"ledger: {completed} of {len(keys)} keys already completed "
            f"(would be skipped as duplicate_skipped); {len(keys) - completed} would be called"
        )
    return 0


async def _completed_in_ledger(settings: Settings, keys: list[LedgerKey]) -> int | None:
    ledger = build_ledger(settings)
    if ledger is None:
        return None
    try:
        await ledger.open()
        completed = 0
        for i in range(0, len(keys), DRY_RUN_LOOKUP_BATCH):
            found = await ledger.get(keys[i : i + DRY_RUN_LOOKUP_BATCH])
            now = time.time()
            completed += sum(
                1
                for e in found.values()
                if e.state is EntryState.COMPLETED and (e.expires_at or now + 1) > now
            )
        return completed
    except LedgerUnavailable as exc:
        raise LedgerUnavailable(f"ledger {ledger.description} unavailable: {exc}") from None
    finally:
        await ledger.close()


async def _replay(
    settings: Settings,
    console: Console,
    consumer: AIOKafkaConsumer,
    topic: str,
    plan: WindowPlan,
    rate: float | None,
    upstream: str | None,
    summary_json: Path | None,
    metrics_port: int | None,
) -> int:
    from netscope.replay.progress import ReplayProgress, summary_table
    from netscope.replay.runner import Replay, ReplaySummary, Tally, new_run_id

    summary = ReplaySummary(new_run_id(), topic, plan.from_ms, plan.to_ms, rate, upstream)
    for p in plan.non_empty:
        summary.partitions[p.partition] = Tally(planned=p.offsets)
    view = ReplayProgress({p.partition: p.offsets for p in plan.non_empty}, console)
    replay = Replay(
        settings,
        summary,
        read_window(consumer, plan),
        on_progress=view.update,
        metrics_port=metrics_port,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, replay.stop)
    loop.add_signal_handler(signal.SIGTERM, replay.stop)
    console.print(f"replay run {summary.run_id}: audit records under run={summary.run_id}")
    try:
        with view:
            await replay.run()
            view.update(summary, force=True)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    console.print(summary_table(summary))
    out = summary_json or Path(f"replay-{summary.run_id}.json")
    out.write_bytes(summary.to_json())
    console.print(f"summary written to {out}")
    if summary.spooled:
        console.print(
            f"[yellow]{summary.spooled} audit batches are durable in {summary.spool_path} but "
            "not yet in the store (it failed): keep that folder[/]"
        )
    if summary.interrupted:
        console.print("[yellow]interrupted: the rest of the window was not replayed[/]")
        return EXIT_INTERRUPTED
    missed = summary.total.ledger_unavailable
    if missed:
        console.print(
            f"[red]{missed} messages were not called: the idempotency ledger could not be "
            "asked before their deadline. Run the same replay again once it answers.[/]"
        )
        return EXIT_FAILED
    return 0 if summary.clean else EXIT_FAILED
