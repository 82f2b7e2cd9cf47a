"""``netscope``: one obvious command per task.

netscope demo                 the main job on an embedded default (no infrastructure)
netscope run -c FILE          the main job against real Kafka and Ceph RGW
netscope check-config FILE    validate a configuration and exit (--connect: reach each dependency)
netscope check                runbook §5's health checklist against a running NetScope
netscope dev up|down|status   local Ceph RGW, Kafka-protocol brokers, Prometheus
netscope replay --from --to   replay a Kafka time window without duplicate side effects
netscope ledger ...           the idempotency ledger: status, lookup KEY, purge
netscope audit ls             what the audit holds for a period
netscope loadgen              produce request traffic to any Kafka
netscope upstream-sim         an HTTP upstream with fault knobs
netscope admin ...            throttle ingest, force breakers (needs the admin token)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from netscope.config import ConfigError, Settings, load_settings
from netscope.devservices.cli import app as dev_app
from netscope.forensics.cli import app as audit_app
from netscope.forensics.cli import report
from netscope.ledger.cli import app as ledger_app
from netscope.observability.alert_rules_cli import alert_rules_command
from netscope.ops.command import check_command
from netscope.replay.cli import replay_command
from netscope.runtime import run_loop
from netscope.tools.loadgen import loadgen_command
from netscope.tools.upstream_sim import upstream_sim_command

EXIT_CONFIG = 2

app = typer.Typer(
    help="NetScope: Kafka-fed network-call gateway with resilient calls and a durable audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(dev_app, name="dev", help="Local real services: Ceph RGW, Kafka brokers, Prometheus.")
app.command("replay", help="Replay a Kafka time window through the live path (runbook §7).")(
    replay_command
)
app.command("check", help="Runbook §5 health checklist: exit 0 pass, 1 warn, 2 fail.")(
    check_command
)
app.add_typer(ledger_app, name="ledger")
app.add_typer(audit_app, name="audit")
app.command("report", help="The post-incident journal from the audit (runbook §7, §9).")(report)
app.command("loadgen", help="Produce call-request traffic to a Kafka topic.")(loadgen_command)
app.command("upstream-sim", help="Run an HTTP upstream with fault knobs.")(upstream_sim_command)
app.command("alert-rules", help="Write the Prometheus alert rules (§8).")(alert_rules_command)
admin_app = typer.Typer(help="Operate a running NetScope (needs NETSCOPE_API__ADMIN_TOKEN).")
app.add_typer(admin_app, name="admin")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file; NETSCOPE_* env vars override it."),
]


def _load(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"netscope: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None


@app.command("check-config")
def check_config(
    config: Annotated[Path, typer.Argument(help="TOML file to validate.")],
    connect: Annotated[
        bool,
        typer.Option("--connect", help="Also reach every dependency it names (runbook §2)."),
    ] = False,
) -> None:
    """Validate a configuration (file + environment) and print a summary. Exit 2 if invalid,
    or with --connect if a dependency (broker, RGW, ledger, spool, upstream) fails."""
    settings = _load(config)
    typer.echo(f"ok: {config}")
    typer.echo(
        f"  kafka      {settings.kafka.bootstrap_servers} topic={settings.kafka.requests_topic}"
    )
    typer.echo(f"  audit      backend={settings.audit.backend} prefix={settings.audit.prefix}")
    typer.echo(
        f"  api        {settings.api.host}:{settings.api.port}"
        f" admin={'on' if settings.api.admin_token else 'off'}"
    )
    for name, up in settings.upstreams.items():
        typer.echo(f"  upstream   {name} -> {up.base_url} deadline={up.deadline_s}s")
    if connect:
        from netscope.ops.preflight import preflight_command

        raise typer.Exit(preflight_command(settings))


@app.command("run")
def run(config: ConfigOpt = None) -> None:
    """Run NetScope: consume, call, audit, commit. SIGTERM drains; a second signal forces."""
    settings = _load(config)
    from netscope.audit.spool import SpoolInUse
    from netscope.observability.logging import setup_logging
    from netscope.service import Service

    setup_logging(settings.logging.level, settings.logging.format)
    if not settings.upstreams:
        typer.echo("netscope: config has no [upstreams.<name>]: nothing could be called", err=True)
        raise typer.Exit(EXIT_CONFIG)

    async def main() -> int:
        try:
            service = Service(settings)
        except SpoolInUse as exc:
            typer.echo(f"netscope: audit.spool.path: {exc}", err=True)
            return EXIT_CONFIG
        return await service.run_until_signal()

    raise typer.Exit(run_loop(main()))


@app.command("demo")
def demo(
    port: Annotated[int, typer.Option(help="API / dashboard port on 127.0.0.1.")] = 8080,
    rate: Annotated[float, typer.Option(help="Nominal traffic, messages per second.")] = 50.0,
    duration_s: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where audit and spool go (default: a temp folder).")
    ] = None,
) -> None:
    """NetScope's main job on an embedded default: broker, upstreams, traffic, local audit."""
    from netscope.demo import run_demo
    from netscope.observability.logging import setup_logging

    setup_logging("warning", "console")
    raise typer.Exit(
        run_loop(run_demo(port=port, rate_per_s=rate, duration_s=duration_s, data_dir=data_dir))
    )


def _admin_call(url: str, method: str, path: str, body: dict | None = None) -> None:
    import httpx

    token = os.environ.get("NETSCOPE_API__ADMIN_TOKEN")
    if not token:
        typer.echo(
            "netscope: set NETSCOPE_API__ADMIN_TOKEN to the service's api.admin_token", err=True
        )
        raise typer.Exit(EXIT_CONFIG)
    try:
        resp = httpx.request(
            method,
            url.rstrip("/") + path,
            json=body,
            timeout=10,
            headers={"Authorization": f"Bearer {token}", "X-Netscope-Actor": _actor()},
        )
    except httpx.HTTPError as exc:
        typer.echo(f"netscope: cannot reach {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(resp.text)
    # The service says only "unauthorized" (api/auth.py): the hint is the CLI's own.
    if resp.status_code == 401:
        typer.echo(
            "netscope: refused: wrong bearer token (NETSCOPE_API__ADMIN_TOKEN must equal the "
            "service's api.admin_token)",
            err=True,
        )
    elif resp.status_code == 429:
        typer.echo(
            "netscope: refused: too many failed attempts from this address; retry in "
            f"{resp.headers.get('Retry-After', '?')} s",
            err=True,
        )
    if resp.status_code >= 400:
        raise typer.Exit(1)


UrlOpt = Annotated[str, typer.Option("--url", help="NetScope API base URL.")]


def _actor() -> str:
    """Who runs this command, for the audit's control events (the token authenticates)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


@admin_app.command("throttle")
def admin_throttle(
    rate: Annotated[
        str, typer.Argument(help="Messages/s to ingest, 0 to pause, 'off' to lift the limit.")
    ],
    url: UrlOpt = "http://127.0.0.1:8080",
) -> None:
    """Runbook INC-01 step 4: reduce the incoming rate temporarily (or lift it)."""
    value = None if rate.lower() in ("off", "none", "unlimited") else float(rate)
    _admin_call(url, "POST", "/admin/throttle", {"rate_per_s": value})


@admin_app.command("breaker")
def admin_breaker(
    action: Annotated[str, typer.Argument(help="show | force-open | force-closed | reset")],
    upstream: Annotated[
        str | None, typer.Argument(help="Upstream name (not needed for show).")
    ] = None,
    url: UrlOpt = "http://127.0.0.1:8080",
) -> None:
    """Show every breaker, or force one open or closed, or reset it."""
    if action == "show":
        _admin_call(url, "GET", "/admin/breakers")
        return
    if action not in ("force-open", "force-closed", "reset") or upstream is None:
        typer.echo("netscope: usage: netscope admin breaker {force-open|force-closed|reset} "
                   "UPSTREAM, or netscope admin breaker show", err=True)
        raise typer.Exit(EXIT_CONFIG)
    _admin_call(url, "POST", f"/admin/breakers/{upstream}/{action}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
