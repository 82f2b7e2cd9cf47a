"""The runbook's call alerts, exactly as docs/metrics.md writes them, evaluated by ``promtool``
on the series ``Metrics`` really exports.

Events are fed into ``Metrics.on_event`` minute by minute; each minute's samples become a
promtool input series, and ``promtool test rules`` says whether the documented alert fires.
So a label renamed in code, a typo in the documented PromQL or a series missing at start
fails here, not during an incident.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from netscope.contract.outcomes import ErrorClass, Outcome
from netscope.observability.events import BreakerTransitioned
from netscope.observability.metrics import Metrics
from tests.unit.test_metrics_calls import UP, completed

DOCS = Path(__file__).parents[2] / "docs" / "metrics.md"
MINUTES = 10


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing on CI: scripts/install-system-deps.sh installs it")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def documented_alert(starts_with: str) -> tuple[str, str]:
    """(expression, for) of the row of the "Runbook section 8 alerts" table."""
    row = next(
        line for line in DOCS.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"| {starts_with}")
    )
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
    expression = cells[2].strip("`").replace("\\|", "|")
    hold = cells[3].strip("`") if re.fullmatch(r"`\d+m`", cells[3]) else "0m"
    return expression, hold


Minute = Callable[[], Iterable[Any]]


def record(metrics: Metrics, minutes: Iterable[Minute]) -> list[dict[str, Any]]:
    """promtool input series: the registry's samples after each minute's events."""
    snapshots: list[dict[str, float]] = []
    for events in minutes:
        for event in events():
            metrics.on_event(event)
        snapshot = {}
        for family in metrics.registry.collect():
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                snapshot[f"{s.name}{{{labels}}}"] = s.value
        snapshots.append(snapshot)
    names = sorted({key for snap in snapshots for key in snap})
    return [
        {"series": key, "values": " ".join(_value(snap.get(key)) for snap in snapshots)}
        for key in names
    ]


def _value(v: float | None) -> str:
    return "_" if v is None else repr(float(v)).replace("inf", "Inf")


def fires(tmp_path: Path, alert: str, series: list[dict[str, Any]], labels: dict[str, str]) -> bool:
    expression, hold = documented_alert(alert)
    # YAML is a superset of JSON: no YAML library needed to write promtool's files.
    rules = {
        "groups": [
            {
                "name": "netscope",
                "rules": [
                    {"alert": "A", "expr": expression, "for": hold, "labels": {"severity": "x"}}
                ],
            }
        ]
    }
    (tmp_path / "rules.yml").write_bytes(orjson.dumps(rules))

    def case(expected: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": f"{MINUTES}m", "alertname": "A", "exp_alerts": expected}
            ],
        }

    firing = [{"exp_labels": {"severity": "x", **labels}}]
    verdicts = []
    for expected in ([], firing):
        test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [case(expected)]}
        (tmp_path / "test.yml").write_bytes(orjson.dumps(test))
        run = subprocess.run(
            [promtool(), "test", "rules", "test.yml"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )
        out = run.stdout + run.stderr
        # Anything but a verdict (a bad expression, a bad file) must not pass as "not firing".
        assert ("SUCCESS" in out) != ("FAILED:" in out), out
        assert "alertname: A" in out or run.returncode == 0, out
        verdicts.append(run.returncode == 0)
    assert verdicts[0] != verdicts[1], "promtool agreed with neither or both expectations"
    return verdicts[1]


def per_minute(*events: Any) -> Minute:
    return lambda: events


def started() -> Metrics:
    m = Metrics()
    m.init_upstream(UP)
    return m


ERROR_ALERT = "`errors_total / requests_total` > 2 %"
CIRCUIT_ALERT = "`circuit_state=open` > 5 min"


def test_error_ratio_alert_ignores_local_refusals_and_bad_input(tmp_path: Path) -> None:
    # 1 % upstream errors while NetScope sheds load and the producer sends garbage.
    minute = per_minute(
        *[completed(Outcome.SUCCESS)] * 99,
        completed(Outcome.HTTP_ERROR),
        *[completed(Outcome.REJECTED_CIRCUIT_OPEN, ErrorClass.CIRCUIT_OPEN)] * 40,
        *[completed(Outcome.REJECTED_RATE_LIMITED, ErrorClass.BULKHEAD_FULL)] * 20,
        *[completed(Outcome.INVALID, ErrorClass.INVALID, upstream=None)] * 20,
    )
    series = record(started(), [per_minute(), *[minute] * MINUTES])
    assert not fires(tmp_path, ERROR_ALERT, series, {})


def test_error_ratio_alert_fires_on_three_percent_upstream_errors(tmp_path: Path) -> None:
    minute = per_minute(
        *[completed(Outcome.SUCCESS)] * 96,
        completed(Outcome.HTTP_ERROR),
        completed(Outcome.TIMEOUT_READ, ErrorClass.TIMEOUT_READ),
        completed(Outcome.CONNECT_ERROR, ErrorClass.CONNECTION_RESET),
        *[completed(Outcome.REJECTED_RATE_LIMITED, ErrorClass.RATE_LIMITED)] * 50,
    )
    series = record(started(), [per_minute(), *[minute] * MINUTES])
    assert fires(tmp_path, ERROR_ALERT, series, {})


@pytest.mark.parametrize(("state", "expected"), [("open", True), ("forced_open", True),
                                                  ("half_open", False)])
def test_circuit_alert_counts_forced_open(tmp_path: Path, state: str, expected: bool) -> None:
    minutes = [per_minute(), per_minute(BreakerTransitioned(UP, "closed", state, "test"))]
    series = record(started(), minutes + [per_minute()] * (MINUTES - 1))
    assert fires(tmp_path, CIRCUIT_ALERT, series, {"upstream": UP}) is expected
