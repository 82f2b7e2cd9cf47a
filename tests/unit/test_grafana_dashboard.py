"""The Grafana dashboard as code (deploy/grafana/), proven without a Grafana server.

- the checked-in JSON is exactly what the generator writes (no hand edits drift);
- it validates against Grafana's dashboard schema kept in deploy/grafana/schema/ (from
  grafana-foundation-sdk's own types), and that schema does reject broken dashboards;
- every query parses (promql-parser) once the template variables are filled in, filters on
  ``$instance`` (and ``$upstream`` where the series has it), and reads only series that
  NetScope's registries export: a metric renamed in the code fails here;
- the provisioning files point at what the dashboard and deploy/compose.yaml expect.

That every query returns data from a real Prometheus is tests/integration/
test_grafana_dashboard_queries.py.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA_DIR = ROOT / "deploy" / "grafana"
if str(GRAFANA_DIR) not in sys.path:  # the generator's package (deploy/ is no package)
    sys.path.append(str(GRAFANA_DIR))

from netscope_grafana import build, checks, exported, schema  # noqa: E402
from netscope_grafana.promql import substitute  # noqa: E402

DASHBOARD = GRAFANA_DIR / "dashboards" / "netscope.json"
VALUES = {"instance": ".*", "upstream": ".*", "__rate_interval": "30s"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_checked_in_dashboard_is_what_the_generator_writes() -> None:
    assert DASHBOARD.read_text() == build.render(), (
        "deploy/grafana/dashboards/netscope.json is stale: "
        ".venv/bin/python deploy/grafana/generate.py"
    )


def test_generator_check_mode_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    import generate

    assert generate.main(["--check"]) == 0, capsys.readouterr().out


def test_dashboard_validates_against_grafanas_schema(dashboard: dict[str, Any]) -> None:
    assert schema.errors(dashboard) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["panels"][1]["targets"][0].update(exprr="up"), "'exprr' was unexpected"),
        (lambda d: d["panels"][1]["gridPos"].pop("h"), "'h' is a required property"),
        (lambda d: d["panels"][1]["options"]["legend"].update(bogus=1), "'bogus' was unexpected"),
        (lambda d: d["panels"][1]["fieldConfig"]["defaults"]["custom"].update(lineWidth="x"),
         "is not of type 'number'"),
        (lambda d: d["templating"]["list"][1].update(refresh=7), "is not one of"),
        (lambda d: d["panels"][1].update(type="graph"), "no schema kept for panel type"),
        (lambda d: d.pop("annotations"), "'annotations' is a required property"),
    ],
)  # fmt: skip
def test_the_schema_rejects_a_broken_dashboard(
    dashboard: dict[str, Any], change: Any, expected: str
) -> None:
    broken = copy.deepcopy(dashboard)
    change(broken)
    found = schema.errors(broken)
    assert any(expected in e for e in found), found


def test_schema_files_name_their_source_and_match_the_python_sdk_pin() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deploy = pyproject["project"]["optional-dependencies"]["deploy"]
    assert f"grafana-foundation-sdk=={schema.SDK_VERSION}" in deploy
    installed = importlib.metadata.version("grafana-foundation-sdk").removeprefix("v")
    assert installed == schema.SDK_VERSION
    for name in schema.SOURCES:
        comment = schema.load(name)["$comment"]
        assert f"{schema.SDK_PACKAGE}@{schema.SDK_VERSION}" in comment
        assert schema.SDK_INTEGRITY in comment


def test_every_query_parses_with_the_variables_filled_in(dashboard: dict[str, Any]) -> None:
    found = checks.queries(dashboard)
    assert {q.kind for q in found} == {"panel", "variable", "annotation"}
    for q in found:
        promql_parser.parse(substitute(q.expr, VALUES))  # raises on bad PromQL


def test_the_dashboard_passes_every_check(dashboard: dict[str, Any]) -> None:
    """Schema, parse, exported names, the instance and upstream filters, known variables."""
    assert checks.problems(DASHBOARD.read_text()) == []


def test_panels_read_only_series_netscope_exports(dashboard: dict[str, Any]) -> None:
    names = checks.panel_metric_names(dashboard, VALUES)
    unknown = names - set(exported.exported_series()) - checks.PROMETHEUS_SERIES
    assert not unknown, f"panels read series NetScope does not export: {sorted(unknown)}"


def test_a_metric_renamed_in_the_code_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rename netscope_retries_total where it is defined: the panel still reading it fails."""
    from prometheus_client import Counter

    import netscope.observability.metrics as metrics_module

    def renaming_counter(name: str, *args: Any, **kwargs: Any) -> Counter:
        if name == "netscope_retries_total":
            name = "netscope_retries_scheduled_total"
        return Counter(name, *args, **kwargs)

    monkeypatch.setattr(metrics_module, "Counter", renaming_counter)
    exported.exported_series.cache_clear()
    try:
        renamed = exported.exported_series()
        assert "netscope_retries_scheduled_total" in renamed
        found = checks.problems(DASHBOARD.read_text(), renamed)
    finally:
        exported.exported_series.cache_clear()
    assert len(found) == 1, found
    assert "'Retries and retry-budget denials' A: 'netscope_retries_total' is not a " in found[0]


def test_a_missing_filter_or_unknown_variable_is_reported(dashboard: dict[str, Any]) -> None:
    broken = copy.deepcopy(dashboard)
    target = broken["panels"][1]["targets"][0]
    target["expr"] = target["expr"].replace(', upstream=~"$upstream"', "")
    other = broken["panels"][2]["targets"][0]
    other["expr"] = other["expr"].replace("$__rate_interval", "$window")
    third = broken["panels"][3]["targets"][0]
    third["expr"] = third["expr"].replace('instance=~"$instance"', 'instance=~".*"')
    found = checks.problems(json.dumps(broken))
    assert "panel 2 'Request rate' A: netscope_requests_total without the upstream filter" in found
    assert any(p.endswith("without the instance filter") for p in found), found
    assert any("undefined variables ['window']" in p for p in found), found


def test_the_panels_cover_what_the_runbook_watches(dashboard: dict[str, Any]) -> None:
    names = checks.panel_metric_names(dashboard, VALUES)
    for needed in (
        "netscope_requests_total", "netscope_errors_total",
        "netscope_request_duration_seconds_bucket", "netscope_timeouts_total",
        "netscope_retries_total", "netscope_retries_denied_total", "netscope_circuit_state",
        "netscope_circuit_transitions_total", "netscope_queue_depth", "netscope_in_flight",
        "netscope_consumer_lag", "netscope_audit_writes_total",
        "netscope_audit_write_errors_total", "netscope_audit_spool_bytes",
        "netscope_audit_backlog_oldest_age_seconds", "netscope_audit_spool_free_disk_bytes",
        "netscope_ws_broadcast_delay_seconds_bucket", "netscope_ledger_claims_total",
        "netscope_ledger_round_trip_seconds_bucket", "netscope_ledger_up",
        "netscope_replay_messages_total", "netscope_replay_planned_messages", "ALERTS",
    ):  # fmt: skip
        assert needed in names, needed
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance", "upstream"} <= variables.keys()
    for name in ("instance", "upstream"):
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    (alerts,) = dashboard["annotations"]["list"]
    assert alerts["expr"].startswith("ALERTS{") and alerts["enable"]


def test_layout_fits_the_grid_without_overlap(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and 0 not in ids
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells


def test_provisioning_matches_the_dashboard_and_the_compose_stack(
    dashboard: dict[str, Any],
) -> None:
    provisioning = GRAFANA_DIR / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "netscope.yaml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["uid"] == build.DATASOURCE_UID
    assert source["name"] == build.DATASOURCE_NAME
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert variable["current"]["value"] == source["uid"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "netscope.yaml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file"
    compose = ROOT / "deploy" / "compose.yaml"
    if not compose.exists():
        pytest.skip("deploy/compose.yaml not present")
    grafana = yaml.safe_load(compose.read_text())["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
