"""Grafana's dashboard JSON Schema, kept in ``deploy/grafana/schema/``, and validation against it.

Where the schema comes from (no Grafana server installs on these machines, so this is the
proof that Grafana would accept the dashboard): grafana-foundation-sdk publishes the same
generated types for every language; its npm package of the version pinned for Python
(``@grafana/grafana-foundation-sdk@0.0.21``) ships them as TypeScript declarations
(``dist/<module>/types.gen.d.ts``, generated from Grafana's CUE schemas). ``regenerate``
converts the types NetScope's dashboard uses into JSON Schema (draft-07) with
ts-json-schema-generator, unchanged but for a ``$comment`` naming the source. Objects are
closed (``additionalProperties: false``), so a misspelt or unknown field fails.

Two things are joined at validation time, in code and not in the files, because the SDK
types leave them open: a panel's ``targets`` (``cog.Dataquery``, an interface without fields)
are checked as the Prometheus query type, and a panel's ``options`` and
``fieldConfig.defaults.custom`` (``any`` in the dashboard type) against its panel plugin's
types (timeseries, state-timeline).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator, ValidationError
from jsonschema.exceptions import best_match

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
SDK_PACKAGE = "@grafana/grafana-foundation-sdk"
SDK_VERSION = "0.0.21"  # the same version as the Python SDK pinned in pyproject.toml
SDK_INTEGRITY = (  # npm's dist.integrity of that version, checked before use
    "sha512-ruLodJlQEAfBm+aqIse5oT2TsHEr0paQ7xErUPu/plBy+j0h6SrT7WbIyKVZIBMhLyLQtwSzJKSP9rJ09gct"
    "ew=="
)
GENERATOR = "ts-json-schema-generator@2.9.0"
# file in SCHEMA_DIR -> (SDK module, exported type)
SOURCES: dict[str, tuple[str, str]] = {
    "dashboard.schema.json": ("dashboard", "Dashboard"),
    "prometheus-dataquery.schema.json": ("prometheus", "Dataquery"),
    "timeseries-options.schema.json": ("timeseries", "Options"),
    "timeseries-fieldconfig.schema.json": ("timeseries", "FieldConfig"),
    "statetimeline-options.schema.json": ("statetimeline", "Options"),
    "statetimeline-fieldconfig.schema.json": ("statetimeline", "FieldConfig"),
}
# A panel's "type" -> the SDK module whose Options / FieldConfig describe it.
PANEL_MODULES = {"timeseries": "timeseries", "state-timeline": "statetimeline"}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text())
    return data


def _prefixed(schema: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The schema's definitions renamed ``prefix + name``, with every $ref rewritten."""
    text = json.dumps(schema["definitions"]).replace('"#/definitions/', f'"#/definitions/{prefix}')
    return {prefix + k: v for k, v in json.loads(text).items()}


@cache
def dashboard_validator() -> Draft7Validator:
    """The dashboard schema with every target checked as a Prometheus query."""
    schema = load("dashboard.schema.json")
    definitions = dict(schema["definitions"])
    if definitions.get("Dataquery") != {"additionalProperties": False, "type": "object"}:
        raise ValueError("the SDK's Dataquery type changed: review dashboard_validator()")
    definitions.update(_prefixed(load("prometheus-dataquery.schema.json"), "prometheus."))
    definitions["Dataquery"] = {"$ref": "#/definitions/prometheus.Dataquery"}
    return Draft7Validator({**schema, "definitions": definitions})


@cache
def _plugin_validator(module: str, part: str) -> Draft7Validator:
    schema = load(f"{module}-{part}.schema.json")
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def errors(dashboard: dict[str, Any]) -> list[str]:
    """Every schema violation of a dashboard, each with its JSON path; [] when valid."""
    found = [_describe(e) for e in dashboard_validator().iter_errors(dashboard)]
    for i, panel in enumerate(dashboard.get("panels", [])):
        if panel.get("type") == "row":
            continue
        module = PANEL_MODULES.get(panel.get("type", ""))
        if module is None:
            found.append(f"panels/{i}: no schema kept for panel type {panel.get('type')!r}")
            continue
        parts = {
            "options": panel.get("options", {}),
            "fieldconfig": panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}),
        }
        for part, value in parts.items():
            for e in _plugin_validator(module, part).iter_errors(value):
                found.append(f"panels/{i} ({panel.get('title')}) {part}: {_describe(e)}")
    return found


def _describe(error: ValidationError) -> str:
    if error.context:  # anyOf (a Panel or a RowPanel): the branch that got deepest says why
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0], []).append(sub)
        error = max((best_match(b) for b in branches.values()), key=lambda e: len(e.path))
    path = "/".join(str(p) for p in error.absolute_path)
    return f"{path}: {error.message[:300]}"


def regenerate(out_dir: Path = SCHEMA_DIR) -> list[Path]:
    """Fetch the SDK's npm package (integrity checked) and convert its types; needs npm/npx.

    Only needed when the SDK pin moves: the result is kept in the repository, so tests and
    CI never run it.
    """
    npm, npx = shutil.which("npm"), shutil.which("npx")
    if npm is None or npx is None:
        raise RuntimeError("regenerating the schema needs node's npm and npx on PATH")
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(
            [npm, "pack", f"{SDK_PACKAGE}@{SDK_VERSION}", "--silent"], cwd=work, check=True,
            capture_output=True,
        )  # fmt: skip
        (tarball,) = work.glob("*.tgz")
        digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if f"sha512-{digest}" != SDK_INTEGRITY:
            raise RuntimeError(f"{tarball.name}: integrity sha512-{digest} != {SDK_INTEGRITY}")
        shutil.unpack_archive(tarball, work)
        for name, (module, type_name) in SOURCES.items():
            source = f"dist/{module}/types.gen.d.ts"
            out = work / name
            subprocess.run(
                [npx, "-y", GENERATOR, "--path", str(work / "package" / source),
                 "--type", type_name, "--no-type-check", "-o", str(out)],
                cwd=work, check=True, capture_output=True,
            )  # fmt: skip
            schema = json.loads(out.read_text())
            schema["$comment"] = (
                f"Grafana's {type_name} type ({module}) as JSON Schema: {SDK_PACKAGE}@"
                f"{SDK_VERSION} ({SDK_INTEGRITY}), {source}, converted by {GENERATOR}. "
                "Apache-2.0, Grafana Labs. Regenerate: deploy/grafana/generate.py --schema."
            )
            target = out_dir / name
            target.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
            written.append(target)
    return written
