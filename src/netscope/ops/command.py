"""``netscope check``: runbook section 5's checklist as one command (docs/runbook.md §5).

    netscope check [--url http://127.0.0.1:8080] [--prometheus URL] [--json] [--watch 300]

One line per item with its figure, threshold and mark; exit 0 when every judged item
passes, 1 on a warning, 2 on a failure (``--watch``: 130 on Ctrl-C). Without
``--prometheus`` the call figures come from two scrapes of ``/metrics`` ``--sample``
seconds apart, and the items that need history say "needs --prometheus".
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from netscope.config import ConfigError, load_settings
from netscope.ledger.cli import parse_duration_s
from netscope.ops import probes, render
from netscope.ops.checklist import Thresholds, evaluate
from netscope.ops.figures import Figures, Trends, Window
from netscope.ops.promql import Queries
from netscope.ops.verdict import Line, exit_code
from netscope.runtime import wait_event

DEFAULT_URL = "http://127.0.0.1:8080"
EXIT_CONFIG, EXIT_INTERRUPTED = 2, 130


async def collect(
    url: str,
    *,
    prometheus: str | None,
    queries: Queries,
    sample_s: float,
    p95_targets: dict[str, float],
) -> Figures:
    """Measure everything one checklist run needs (I/O only; judged by ``evaluate``)."""
    clock_task = asyncio.create_task(probes.read_clock())
    prom_task = (
        asyncio.create_task(probes.read_prometheus(prometheus, queries)) if prometheus else None
    )
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=probes.HTTP_TIMEOUT_S) as client:
        window: Window | None = None
        window_error = ws_error = ""
        if prom_task is None:
            window, window_error, ws_error = await probes.sample_window(client, url, sample_s)
        live, ready, status = await asyncio.gather(
            probes.get(client, "/health/live"),
            probes.get(client, "/health/ready"),
            probes.get(client, "/api/status"),
        )
    prometheus_error, processes = "", 0
    trends: Trends | None = None
    if prom_task is not None:
        try:
            processes, window, trends = await prom_task
        except probes.PrometheusError as exc:
            prometheus_error = str(exc)
            window_error = f"Prometheus: {exc}"
    return Figures(
        url=url,
        live=live,
        ready=ready,
        status=status,
        window=window,
        window_error=window_error,
        ws_error=ws_error,
        clock=await clock_task,
        prometheus=prometheus,
        prometheus_error=prometheus_error,
        prometheus_series=processes,
        trends=trends,
        p95_targets=p95_targets,
        trend_window_s=queries.trend_window_s,
    )


def _show(lines: list[Line], figures: Figures, *, as_json: bool, console: Console) -> None:
    at = datetime.now(UTC).isoformat(timespec="seconds")
    if as_json:
        meta = {"at": at, "url": figures.url, "prometheus": figures.prometheus,
                "window": figures.window.span if figures.window else None}  # fmt: skip
        typer.echo(render.as_json(lines, meta))
        return
    header = f"netscope check {figures.url} at {at}" + (
        f" (Prometheus {figures.prometheus})" if figures.prometheus else ""
    )
    if sys.stdout.isatty():
        render.table(lines, header, console)
    else:
        typer.echo(render.plain(lines, header))


def check_command(
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help=f"NetScope's API (default: api.host:port of -c FILE, or {DEFAULT_URL})"
        ),
    ] = None,
    prometheus: Annotated[
        str | None,
        typer.Option("--prometheus", help="Prometheus URL: windows over 5 min and trends."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document per run.")] = False,
    watch: Annotated[
        float | None,
        typer.Option("--watch", help="Run again every SECONDS until Ctrl-C (runbook: 300)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="The service's TOML: upstreams' p95 targets, URL."),
    ] = None,
    sample_s: Annotated[
        float,
        typer.Option("--sample", help="Without --prometheus: seconds between the two scrapes."),
    ] = 5.0,
    selector: Annotated[
        str,
        typer.Option("--selector", help='Prometheus label matchers, e.g. instance="h:8080".'),
    ] = "",
    trend_window: Annotated[
        str, typer.Option("--trend-window", help="With --prometheus: span of the trends.")
    ] = "15m",
) -> None:
    """Runbook §5 health checklist: one line per item, exit 0 pass / 1 warn / 2 fail."""
    targets: dict[str, float] = {}
    if config is not None:
        try:
            settings = load_settings(config)
        except ConfigError as exc:
            typer.echo(f"netscope: {exc}", err=True)
            raise typer.Exit(EXIT_CONFIG) from None
        targets = {n: u.latency_p95_target_s for n, u in settings.upstreams.items()}
        if url is None and settings.api.port:
            url = f"http://{settings.api.host}:{settings.api.port}"
    try:
        trend_s = parse_duration_s(trend_window)
    except ValueError as exc:
        typer.echo(f"netscope: --trend-window: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    if sample_s <= 0 or (watch is not None and watch <= 0) or trend_s <= 0:
        typer.echo("netscope: --sample, --watch and --trend-window must be > 0", err=True)
        raise typer.Exit(EXIT_CONFIG)
    queries = Queries(selector=selector.strip().strip("{}"), trend_window_s=trend_s)
    target_url = url or DEFAULT_URL
    console = Console()

    async def once() -> int:
        figures = await collect(target_url, prometheus=prometheus, queries=queries,
                                sample_s=sample_s, p95_targets=targets)  # fmt: skip
        lines = evaluate(figures, Thresholds())
        _show(lines, figures, as_json=json_out, console=console)
        return exit_code(lines)

    async def every(interval_s: float) -> int:
        # Its own handlers, not asyncio.run's KeyboardInterrupt: a process started in the
        # background of a non-interactive shell inherits SIGINT ignored, and Ctrl-C, `kill
        # -INT` or a supervisor's SIGTERM must end the watch all the same.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            started = time.monotonic()
            run = asyncio.ensure_future(once())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({run, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not run.done():  # stopped mid-run: its figures would be partial
                run.cancel()
                await asyncio.wait({run})
                break
            run.result()
            sys.stdout.flush()
            # The period is start to start: a slow run does not stretch the schedule.
            await wait_event(stop, max(0.0, interval_s - (time.monotonic() - started)))
        return EXIT_INTERRUPTED

    if watch is None:
        raise typer.Exit(asyncio.run(once()))
    try:
        code = asyncio.run(every(watch))
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)
