"""Checks on a generated dashboard that need no server: schema, PromQL, metric names, filters.

Why they run in the generator as well as in the tests: a dashboard that fails one of them is
never written, so the checked-in JSON is always one that passed. The tests run the same
checks on the checked-in file, and the integration test runs every query returned by
``queries`` against a real Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netscope_grafana import schema
from netscope_grafana.exported import exported_series
from netscope_grafana.promql import (
    INSTANCE,
    UPSTREAM,
    VARIABLES,
    metric_names,
    selectors,
    substitute,
    variables_in,
)

PROMETHEUS_SERIES = frozenset({"ALERTS"})
"""Series Prometheus makes itself; only the alert annotation may read them."""
GRAFANA_VARIABLES = frozenset({"__rate_interval"})
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard and where it is."""

    where: str
    expr: str
    kind: str  # "panel", "variable" or "annotation"
    label: str | None = None  # a variable's label (label_values)


def queries(dashboard: Mapping[str, Any]) -> list[Query]:
    """Every panel target, the selector inside each label_values() variable, the annotation."""
    out: list[Query] = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            where = f"panel {panel['id']} {panel['title']!r} {target['refId']}"
            out.append(Query(where, target["expr"], "panel"))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        match = _LABEL_VALUES.match(variable["query"])
        if match is None:
            raise ValueError(f"variable {variable['name']}: not label_values(selector, label)")
        out.append(
            Query(f"variable {variable['name']}", match["selector"], "variable", match["label"])
        )
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            where = f"annotation {annotation['name']!r}"
            out.append(Query(where, annotation["expr"], "annotation"))
    return out


def panel_metric_names(dashboard: Mapping[str, Any], values: Mapping[str, str]) -> set[str]:
    """The series the dashboard reads (every query, variables substituted)."""
    return {name for q in queries(dashboard) for name in metric_names(substitute(q.expr, values))}


def problems(text: str, exported: Mapping[str, frozenset[str]] | None = None) -> list[str]:
    """Everything wrong with a dashboard's JSON text; [] when it passes.

    ``exported``: series name -> label names, NetScope's registries by default (a test
    passes a modified one to show that a renamed metric is caught).
    """
    dashboard = json.loads(text)
    found = [f"schema: {e}" for e in schema.errors(dashboard)]
    defined = {v["name"] for v in dashboard["templating"]["list"]} | GRAFANA_VARIABLES
    values = {name: ".*" for name in VARIABLES} | {"__rate_interval": "30s"}
    exported = exported_series() if exported is None else exported
    for q in queries(dashboard):
        unknown_vars = variables_in(q.expr) - defined
        if unknown_vars:
            found.append(f"{q.where}: undefined variables {sorted(unknown_vars)}")
            continue
        try:
            parsed = selectors(substitute(q.expr, values))
        except (KeyError, ValueError) as exc:
            found.append(f"{q.where}: does not parse: {exc}")
            continue
        for s in parsed:
            allowed = PROMETHEUS_SERIES if q.kind == "annotation" else frozenset()
            if s.metric not in exported and s.metric not in allowed:
                found.append(f"{q.where}: {s.metric!r} is not a series NetScope exports")
                continue
            if q.kind != "panel":
                continue
            for label in VARIABLES:
                needed = label == INSTANCE or label in exported[s.metric]
                if needed and ("=~", f"${label}") not in _raw_ops(q.expr, s.metric, label):
                    found.append(f"{q.where}: {s.metric} without the {label} filter")
    return found


def _raw_ops(expr: str, metric: str, label: str) -> set[tuple[str, str]]:
    """``label``'s matchers on ``metric`` as written, variables unfilled (``=~ $upstream``)."""
    out: set[tuple[str, str]] = set()
    for s in selectors(substitute(expr, _MARKERS)):
        if s.metric == metric:
            out |= {(op, value.replace(_MARK, "$")) for op, value in s.label_ops(label)}
    return out


_MARK = "VAR_"
_MARKERS = {INSTANCE: f"{_MARK}{INSTANCE}", UPSTREAM: f"{_MARK}{UPSTREAM}"} | {
    "__rate_interval": "30s"
}
