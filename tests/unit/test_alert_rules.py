"""The alert-rules generator: the shipped file is its output, every rule reads only series
NetScope exports, every rule carries what an on-call needs, and operators can tune it.

The rules' behaviour (fires / stays silent) is proven by promtool in test_alert_rules_promtool.py
and end to end in tests/integration/test_alerts_e2e.py.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from netscope.api.hub import _HubMetrics
from netscope.cli import app
from netscope.contract.outcomes import NO_UPSTREAM_LATENCY_OUTCOMES, Outcome
from netscope.observability.alert_rules import (
    SEVERITIES,
    AlertThresholds,
    BurnWindow,
    alert_names,
    build_rules,
    duration,
    metric_names,
    render_yaml,
)
from netscope.observability.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy" / "prometheus" / "netscope-alerts.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
ALERTS_DOC = REPO / "docs" / "alerts.md"
# Series Prometheus itself makes for every target.
PROMETHEUS_SERIES = frozenset({"up"})


def exported_series() -> set[str]:
    """Every series name NetScope's /metrics can carry: the pipeline's and the hub's registry
    (a labelled family with no child yet still names its samples)."""
    registry = CollectorRegistry()
    Metrics(registry).init_upstream("payments")
    _HubMetrics(registry)
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in registry.collect():
        names |= {family.name + s for s in suffixes[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def rules_of(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"]]


def alerts_named(name: str, rules: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [r for r in rules_of(rules or build_rules()) if r.get("alert") == name]


def unknown_series(rules: dict[str, Any]) -> dict[str, set[str]]:
    """Per rule, the series it reads that neither NetScope, Prometheus nor the file defines."""
    recorded = {r["record"] for r in rules_of(rules) if "record" in r}
    known = exported_series() | PROMETHEUS_SERIES | recorded
    out = {}
    for rule in rules_of(rules):
        missing = metric_names(rule["expr"]) - known
        if missing:
            out[rule.get("alert") or rule["record"]] = missing
    return out


# --- the shipped file ---------------------------------------------------------------------


def test_the_shipped_file_is_the_generators_output_byte_for_byte() -> None:
    assert SHIPPED.read_text(encoding="utf-8") == render_yaml(AlertThresholds()), (
        "deploy/prometheus/netscope-alerts.yml is stale: regenerate it with "
        "`.venv/bin/netscope alert-rules -o deploy/prometheus/netscope-alerts.yml`"
    )


def test_rules_read_only_series_netscope_exports() -> None:
    assert unknown_series(build_rules()) == {}


def test_a_renamed_metric_is_caught() -> None:
    rules = build_rules()
    rule = rules_of(rules)[1]
    rule["expr"] = rule["expr"].replace("netscope_errors_total", "netscope_error_total")
    assert unknown_series(rules) == {rule["alert"]: {"netscope_error_total"}}


def test_the_clock_series_is_exported_and_reads_the_wall_clock() -> None:
    import time

    m = Metrics()
    value = m.registry.get_sample_value("netscope_time_seconds")
    assert value is not None and abs(value - time.time()) < 5


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, upstream) (rate(a_bucket{x="y", z=~"b|c"}[5m])) > 1e3', {"a_bucket"}),
        ("deriv(sum by (topic) (lag)[15m:1m]) > 0 and min_over_time(lag[15m:1m]) > 0", {"lag"}),
        ('label_replace(full == 1, "check", "spool", "", "") or ignoring(check) b', {"full", "b"}),
        ("abs(t - timestamp(t)) > 1 unless on(instance) up offset 5m", {"t", "up"}),
        ('rec:ratio_rate5m{job="n"} > (14.4 * 0.005)', {"rec:ratio_rate5m"}),
        ('max without (state) (s{state=~"open|half_open"}) == bool 1', {"s"}),
    ],
)
def test_metric_names_finds_selected_series_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_metric_names_agrees_with_a_real_promql_parser() -> None:
    # A cross-check of the small lexer on every shipped expression, where the parser is
    # installed (`pip install promql-parser`); the lexer alone is what CI relies on.
    parser = pytest.importorskip("promql_parser")

    def walk(node: Any, out: set[str]) -> None:
        name = getattr(node, "name", None)
        if type(node).__name__ == "VectorSelector" and name:
            out.add(name)
        for attr in ("expr", "lhs", "rhs", "param", "vector_selector"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, str | int | float):
                walk(child, out)
        for arg in getattr(node, "args", None) or []:
            walk(arg, out)

    for rule in rules_of(build_rules()):
        found: set[str] = set()
        walk(parser.parse(rule["expr"]), found)
        assert found == metric_names(rule["expr"]), rule["expr"]


# --- what each rule carries ---------------------------------------------------------------

PER_UPSTREAM = {
    "NetScopeUpstreamLatencyHigh",
    "NetScopeUpstreamErrorRatioHigh",
    "NetScopeCircuitOpen",
    "NetScopeErrorBudgetBurnPage",
    "NetScopeErrorBudgetBurnTicket",
}


def test_every_alert_has_severity_summary_description_and_runbook_url() -> None:
    rules = build_rules()
    for rule in rules_of(rules):
        if "alert" not in rule:
            continue
        name, ann = rule["alert"], rule["annotations"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(ann) == {"summary", "description", "runbook_url"}, name
        assert "{{ $value" in ann["description"], f"{name}: the description names no value"
        assert "{{ $labels." in ann["summary"], f"{name}: the summary names nothing"
        if name in PER_UPSTREAM:
            for key in ("summary", "description"):
                assert "{{ $labels.upstream }}" in ann[key], f"{name} {key}"


def test_the_runbook_alerts_have_the_runbooks_severities() -> None:
    alerts = [r for r in rules_of(build_rules()) if "alert" in r]
    severity = {r["alert"]: r["labels"]["severity"] for r in alerts}
    assert severity["NetScopeUpstreamLatencyHigh"] == "warning"
    assert severity["NetScopeUpstreamErrorRatioHigh"] == "major"
    assert severity["NetScopeAuditBacklogGrowing"] == "critical"
    assert severity["NetScopeCircuitOpen"] == "major"


def github_anchor(heading: str) -> str:
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def test_every_runbook_url_points_to_a_section_of_the_runbook() -> None:
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for rule in rules_of(build_rules()):
        if "alert" in rule:
            url = rule["annotations"]["runbook_url"]
            assert url.startswith("docs/runbook.md#"), url
            assert url.split("#", 1)[1] in anchors, f"{rule['alert']}: {url}"


def test_the_error_ratio_counts_upstream_caused_errors_over_calls_made() -> None:
    (rule,) = alerts_named("NetScopeUpstreamErrorRatioHigh")
    expr = rule["expr"]
    assert 'netscope_errors_total{job="netscope",origin="upstream"}' in expr
    excluded = re.search(r'outcome!~"([^"]+)"', expr)
    assert excluded is not None
    assert set(excluded.group(1).split("|")) == {o.value for o in NO_UPSTREAM_LATENCY_OUTCOMES}
    assert Outcome.SUCCESS.value not in excluded.group(1)
    assert expr.rstrip().endswith("> 0.02")


def test_the_burn_rate_alerts_have_the_sre_workbook_windows() -> None:
    rules = {r.get("alert"): r["expr"] for r in rules_of(build_rules())}
    page, ticket = rules["NetScopeErrorBudgetBurnPage"], rules["NetScopeErrorBudgetBurnTicket"]
    # 0.5 % budget: 14.4x = 7.2 %, 6x = 3 %, 1x = 0.5 %.
    assert "ratio_rate1h{" in page and "ratio_rate5m{" in page and "> 0.072" in page
    assert "ratio_rate6h{" in page and "ratio_rate30m{" in page and "> 0.03" in page
    assert "ratio_rate3d{" in ticket and "ratio_rate6h{" in ticket and "> 0.005" in ticket


# --- tuning -------------------------------------------------------------------------------


def test_shortened_windows_reach_every_rule() -> None:
    t = AlertThresholds(
        audit_backlog_growing_s=10,
        circuit_open_for_s=5,
        upstream_error_window_s=20,
        upstream_error_for_s=0,
        slo_burn_windows=(
            BurnWindow(long_window_s=60, short_window_s=10, burn_rate=2, alert="page"),
        ),
    )
    rules = {r.get("alert") or r["record"]: r for r in rules_of(build_rules(t))}
    backlog = rules["NetScopeAuditBacklogGrowing"]["expr"]
    assert "> 10" in backlog and "[10s]" in backlog
    assert rules["NetScopeCircuitOpen"]["for"] == "5s"
    assert "for" not in rules["NetScopeUpstreamErrorRatioHigh"]
    assert "[20s]" in rules["NetScopeUpstreamErrorRatioHigh"]["expr"]
    assert "NetScopeErrorBudgetBurnTicket" not in rules  # no ticket window configured
    assert {"job_upstream:netscope_call_errors:ratio_rate1m",
            "job_upstream:netscope_call_errors:ratio_rate10s"} <= set(rules)  # fmt: skip


def test_per_upstream_latency_targets_split_the_rule() -> None:
    t = AlertThresholds(latency_p95_target_s_by_upstream={"payments": 0.5, "search": 2.0})
    exprs = [r["expr"] for r in alerts_named("NetScopeUpstreamLatencyHigh", build_rules(t))]
    assert len(exprs) == 3
    assert 'upstream="payments"' in exprs[0] and exprs[0].endswith("> 0.5")
    assert 'upstream="search"' in exprs[1] and exprs[1].endswith("> 2")
    assert 'upstream!~"payments|search"' in exprs[2] and exprs[2].endswith("> 1")


@pytest.mark.parametrize(
    "bad",
    [
        {"upstream_error_ratio_max": 2},
        {"latency_p95_target_s_by_upstream": {'x"} or vector(1) #': 1.0}},
        {"job": 'a"b'},
        {"slo_burn_windows": [{"long_window_s": 60, "short_window_s": 60, "burn_rate": 1,
                               "alert": "page"}]},
        {"slo_burn_windows": []},
        {"latency_for_s": -1},
        {"no_such_key": 1},
    ],
)
def test_bad_thresholds_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AlertThresholds.model_validate(bad)


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (60, "1m"), (90, "1m30s"), (900, "15m"), (259200, "3d")]
)
def test_durations_read_as_prometheus_writes_them(seconds: int, text: str) -> None:
    assert duration(seconds) == text


def test_overrides_are_written_in_the_header() -> None:
    text = render_yaml(AlertThresholds(latency_p95_target_s=0.8))
    assert "#   latency_p95_target_s = 0.8\n" in text
    assert "Overrides" not in render_yaml(AlertThresholds())


# --- the command --------------------------------------------------------------------------

runner = CliRunner()


def test_cli_writes_the_shipped_file_by_default(tmp_path: Path) -> None:
    out = tmp_path / "rules.yml"
    result = runner.invoke(app, ["alert-rules", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == SHIPPED.read_text(encoding="utf-8")


def test_cli_set_and_overrides_file_tune_without_promql(tmp_path: Path) -> None:
    overrides = tmp_path / "alerts.toml"
    overrides.write_text(
        "call_success_slo_ratio = 0.999\n[latency_p95_target_s_by_upstream]\npayments = 0.5\n"
    )
    result = runner.invoke(
        app,
        ["alert-rules", "--overrides", str(overrides), "--set", "upstream_error_ratio_max=0.05",
         "--set", "latency_p95_target_s_by_upstream.search=2.5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "> 0.05\n" in text  # the error ratio
    assert "> 0.0144\n" in text  # 14.4 x 0.1 % budget
    assert 'upstream="payments"' in text and 'upstream="search"' in text and "> 2.5\n" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "latency_target=1"], "unknown threshold 'latency_target'"),
        (["--set", "upstream_error_ratio_max=two"], "upstream_error_ratio_max"),
        (["--set", "nothing"], "expected KEY=VALUE"),
    ],
)
def test_cli_refuses_bad_overrides_with_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["alert-rules", *args])
    assert result.exit_code == 2
    assert message in result.stderr


# --- docs ---------------------------------------------------------------------------------


def test_docs_list_every_threshold_with_its_default() -> None:
    doc = ALERTS_DOC.read_text(encoding="utf-8")
    defaults = AlertThresholds().model_dump(mode="json")
    for name, value in defaults.items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row is not None, f"docs/alerts.md has no row for {name}"
        if not isinstance(value, list | dict):
            assert f"`{value}`" in row, f"docs/alerts.md: {name} default is {value}"


def test_docs_name_every_alert() -> None:
    doc = ALERTS_DOC.read_text(encoding="utf-8")
    runbook = RUNBOOK.read_text(encoding="utf-8")
    for name in alert_names(build_rules()):
        assert f"`{name}`" in doc, f"docs/alerts.md does not describe {name}"
        assert f"`{name}`" in runbook, f"docs/runbook.md section 8 does not name {name}"


def test_overrides_file_example_in_docs_is_valid() -> None:
    doc = ALERTS_DOC.read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert block is not None, "docs/alerts.md has no TOML example"
    AlertThresholds.model_validate(tomllib.loads(block.group(1)))
