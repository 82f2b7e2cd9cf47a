"""``netscope alert-rules``: write the Prometheus rules file with an operator's thresholds.

Why a command: operators tune a target or a window (``--set latency_p95_target_s=0.8``) or
keep their tuning in a TOML file under version control, and get a rules file generated the
same way as the shipped one, so nobody edits PromQL by hand. Kept apart from the pure
generator (alert_rules.py) so that module stays free of I/O and typer.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from netscope.observability.alert_rules import AlertThresholds, render_yaml

EXIT_BAD_OVERRIDE = 2


class OverrideError(ValueError):
    """An override names no threshold or cannot be read; the message says which."""


def parse_set(item: str) -> tuple[list[str], Any]:
    """``KEY=VALUE`` -> (key path, value). VALUE is read as a TOML value when it is one
    (0.8, 600, true, [..], {..}), else taken as a string; ``a.b=1`` sets key b of table a."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise OverrideError(f"--set {item!r}: expected KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return [part.strip() for part in key.split(".")], value


def apply(base: dict[str, Any], path: list[str], value: Any) -> None:
    known = AlertThresholds.model_fields
    if path[0] not in known:
        raise OverrideError(
            f"unknown threshold {path[0]!r}; known: {', '.join(sorted(known))}"
        )
    node = base
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def thresholds_from(overrides_file: Path | None, sets: list[str]) -> AlertThresholds:
    """Defaults, then the TOML file's keys, then each ``--set`` in order."""
    data: dict[str, Any] = {}
    if overrides_file is not None:
        try:
            loaded = tomllib.loads(overrides_file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise OverrideError(f"{overrides_file}: {exc}") from exc
        for key, value in loaded.items():
            apply(data, [key], value)
    for item in sets:
        path, value = parse_set(item)
        apply(data, path, value)
    try:
        return AlertThresholds.model_validate(data)
    except ValidationError as exc:
        raise OverrideError(_first_error(exc)) from exc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']} (got {err.get('input')!r})"


def alert_rules_command(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here instead of standard output."),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE override, repeatable: latency_p95_target_s=0.8, "
            "latency_p95_target_s_by_upstream.payments=0.5, call_success_slo_ratio=0.999 "
            "(every key: docs/alerts.md).",
        ),
    ] = None,
    overrides: Annotated[
        Path | None,
        typer.Option("--overrides", help="TOML file of overrides, applied before --set."),
    ] = None,
) -> None:
    """Write the Prometheus alert rules (runbook section 8, SLO burn rates, on-call alerts).

    Exit 2 when an override names no threshold or has a bad value.
    """
    try:
        thresholds = thresholds_from(overrides, sets or [])
    except OverrideError as exc:
        typer.echo(f"netscope alert-rules: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_OVERRIDE) from None
    text = render_yaml(thresholds)
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)  # a Prometheus reloading meanwhile never reads half a file
    typer.echo(f"wrote {output}", err=True)
