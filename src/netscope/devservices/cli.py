"""`netscope dev`: start, stop and inspect the local dev services from a terminal.

Daemons outlive the command (own session, pid files in the data dir), so `up` in one shell
and `down` in another work. The port plan chosen at `up` is saved in the data dir, so
`status` and `down` need no repeated port flags.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import typer

from netscope.devservices.base import ServiceError
from netscope.devservices.registry import SERVICE_NAMES, PortPlan, build_service

app = typer.Typer(
    help="Run real local dev services: Ceph RGW (S3), tansu + noida Kafka brokers, Prometheus, "
    "PostgreSQL.",
    no_args_is_help=True,
)

_PLAN_FILE = "ports.json"

DataDirOpt = typer.Option(
    Path("var/dev"), "--data-dir", help="Where pid files, logs and service data live."
)
ServicesArg = typer.Argument(
    None, help=f"Services to act on (default: all): {', '.join(SERVICE_NAMES)}."
)


def _select(services: list[str] | None) -> list[str]:
    chosen = list(services) if services else list(SERVICE_NAMES)
    unknown = [s for s in chosen if s not in SERVICE_NAMES]
    if unknown:
        typer.secho(
            f"unknown service(s): {', '.join(unknown)}; choose from {', '.join(SERVICE_NAMES)}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    return chosen


def _load_plan(data_dir: Path) -> PortPlan:
    try:
        saved = json.loads((data_dir / _PLAN_FILE).read_text())
    except (OSError, ValueError):
        return PortPlan()
    known = set(asdict(PortPlan()))
    return PortPlan(**{k: int(v) for k, v in saved.items() if k in known})


def _save_plan(data_dir: Path, plan: PortPlan) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / _PLAN_FILE).write_text(json.dumps(asdict(plan), indent=2) + "\n")


@app.command()
def up(
    services: list[str] | None = ServicesArg,
    data_dir: Path = DataDirOpt,
    rgw_port: int | None = typer.Option(None, help="RGW S3 port (default 7480)."),
    mon_port: int | None = typer.Option(None, help="Ceph monitor port (default 16789)."),
    tansu_port: int | None = typer.Option(None, help="tansu Kafka port (default 19092)."),
    noida_port: int | None = typer.Option(None, help="noida Kafka port (default 19093)."),
    prometheus_port: int | None = typer.Option(None, help="Prometheus port (default 19090)."),
    postgres_port: int | None = typer.Option(None, help="PostgreSQL port (default 15432)."),
) -> None:
    """Start services (idempotent) and print endpoints and env lines to export."""
    chosen = _select(services)
    overrides = {
        "rgw_port": rgw_port,
        "mon_port": mon_port,
        "tansu_port": tansu_port,
        "noida_port": noida_port,
        "prometheus_port": prometheus_port,
        "postgres_port": postgres_port,
    }
    plan = replace(_load_plan(data_dir), **{k: v for k, v in overrides.items() if v is not None})
    _save_plan(data_dir, plan)
    env: list[str] = []
    for name in chosen:
        service = build_service(name, data_dir, plan)
        typer.echo(f"starting {name} ...")
        try:
            service.up()
        except ServiceError as exc:
            typer.secho(f"{name}: FAILED\n{exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc
        st = service.status()
        typer.echo(f"{name}: ready  " + "  ".join(f"{k}={v}" for k, v in st.endpoints.items()))
        env.extend(service.env_lines())
    typer.echo("\n# Dev credentials (loopback only, not secrets). Export with:")
    for line in _one_export_per_variable(env):
        typer.echo(line)


def _one_export_per_variable(lines: list[str]) -> list[str]:
    # Both brokers offer the same variable; a pasted block must not silently let the last
    # one win, so later duplicates are printed as commented-out alternatives.
    seen: set[str] = set()
    out: list[str] = []
    for line in lines:
        var = line.removeprefix("export ").split("=", 1)[0] if line.startswith("export ") else ""
        if var and var in seen:
            out.append(f"# alternative: {line}")
        else:
            seen.add(var)
            out.append(line)
    return out


@app.command()
def down(
    services: list[str] | None = ServicesArg,
    data_dir: Path = DataDirOpt,
) -> None:
    """Stop services (idempotent); data stays in the data dir."""
    plan = _load_plan(data_dir)
    failed = False
    # Reverse order: stop consumers of a service before the service itself.
    for name in reversed(_select(services)):
        try:
            build_service(name, data_dir, plan).down()
            typer.echo(f"{name}: stopped")
        except ServiceError as exc:
            typer.secho(f"{name}: FAILED to stop\n{exc}", fg=typer.colors.RED, err=True)
            failed = True
    if failed:
        raise typer.Exit(1)


@app.command()
def status(data_dir: Path = DataDirOpt) -> None:
    """Show which services run and answer; exit 1 if any running one is not ready."""
    plan = _load_plan(data_dir)
    unhealthy = False
    for name in SERVICE_NAMES:
        st = build_service(name, data_dir, plan).status()
        state = "ready" if st.ready else ("NOT READY" if st.running else "stopped")
        unhealthy = unhealthy or (st.running and not st.ready)
        endpoints = "  ".join(f"{k}={v}" for k, v in st.endpoints.items())
        detail = f"  ({st.detail})" if st.detail else ""
        typer.echo(f"{name:<11} {state:<10} {endpoints}{detail}")
    if unhealthy:
        raise typer.Exit(1)
