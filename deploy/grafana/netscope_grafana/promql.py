"""PromQL for the dashboard: selectors with the template variables, and the checks on them.

Why helpers instead of query strings typed by hand: every selector must carry the
``instance`` filter, and the ``upstream`` filter exactly when the series has that label; the
helpers derive that from what NetScope exports (``exported.py``), so a panel cannot forget a
filter or name a series that does not exist (``sel`` raises at generation time).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import promql_parser

from netscope_grafana.exported import exported_series

RATE = "$__rate_interval"
"""Grafana's window for rate(): max(4 x scrape interval, step + scrape interval)."""
INSTANCE = "instance"
UPSTREAM = "upstream"
VARIABLES = (INSTANCE, UPSTREAM)
# Grafana's own variables a panel may use, and the template variables of this dashboard.
_VARIABLE_RE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def sel(metric: str, *matchers: str) -> str:
    """``metric{instance=~"$instance"[, upstream=~"$upstream"], matchers...}``.

    ``matchers`` are PromQL label matchers as written (``'outcome="success"'``). Raises
    KeyError for a series NetScope does not export.
    """
    labels = exported_series()[metric]
    parts = [f'{INSTANCE}=~"${INSTANCE}"']
    if UPSTREAM in labels:
        parts.append(f'{UPSTREAM}=~"${UPSTREAM}"')
    parts.extend(matchers)
    return f"{metric}{{{', '.join(parts)}}}"


def rate(metric: str, *matchers: str) -> str:
    return f"rate({sel(metric, *matchers)}[{RATE}])"


def increase(metric: str, *matchers: str) -> str:
    return f"increase({sel(metric, *matchers)}[{RATE}])"


def by(labels: str, expr: str, op: str = "sum") -> str:
    """``sum by (labels) (expr)``; ``labels`` as written in PromQL (``"upstream, outcome"``)."""
    return f"{op} by ({labels}) ({expr})"


def quantile(q: float, histogram: str, labels: str = "") -> str:
    """``histogram_quantile`` of a NetScope histogram (base name, without ``_bucket``)."""
    group = f"le, {labels}" if labels else "le"
    return f"histogram_quantile({q:g}, {by(group, rate(histogram + '_bucket'))})"


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` and ``${name}`` as Grafana does (``$__rate_interval`` included).

    Raises KeyError naming a variable ``values`` does not give, so a query with a variable
    the dashboard does not define cannot pass a test unnoticed.
    """

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values[name]

    return _VARIABLE_RE.sub(one, expr)


def variables_in(expr: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in _VARIABLE_RE.finditer(expr)}


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: frozenset[tuple[str, str, str]]  # (label, operator, value)

    def label_ops(self, label: str) -> set[tuple[str, str]]:
        return {(op, value) for name, op, value in self.matchers if name == label}


_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of an expression, parsed by promql-parser (raises on bad PromQL)."""
    found: list[Selector] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = frozenset(
                (m.name, _OPS[str(m.op).rsplit(".", 1)[-1]], m.value)
                for m in node.matchers.matchers
            )
            found.append(Selector(node.name or "", matchers))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def metric_names(expr: str) -> set[str]:
    return {s.metric for s in selectors(expr)}
