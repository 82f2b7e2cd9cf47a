"""The shipped rules through Prometheus' own tool: `promtool check rules` and the
`promtool test rules` files under deploy/prometheus/tests/, which give every alert a case
that fires and one that stays silent at its boundary (1.9 % vs 2.1 %, 4 vs 6 min open...).

promtool missing skips locally with the reason, and fails on CI (CI=true), like chromium in
tests/browser/conftest.py: CI must not go green by skipping the alert tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from netscope.observability.alert_rules import (
    AlertThresholds,
    BurnWindow,
    alert_names,
    build_rules,
    render_yaml,
)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "netscope-alerts.yml"
TESTS = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.yml"))


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing on CI: scripts/install-system-deps.sh installs it")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_shipped_rules() -> None:
    result = run("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(g["rules"]) for g in build_rules()["groups"])
    assert f"SUCCESS: {rules} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert TESTS, "no promtool test files under deploy/prometheus/tests/"
    result = run("test", "rules", *map(str, TESTS))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert out.count("SUCCESS") == len(TESTS), out


def cases() -> dict[str, dict[str, int]]:
    """Per alert name, how many `alert_rule_test` cases expect it firing / silent.

    Read with a regex over the files' fixed layout (`alertname:` then `exp_alerts:`), so no
    YAML library is needed; a case written another way is not counted and fails below.
    """
    found: dict[str, dict[str, int]] = {}
    pattern = re.compile(r"alertname:\s*(\w+)\s*\n\s*exp_alerts:\s*(\[\])?")
    for path in TESTS:
        for name, empty in pattern.findall(path.read_text(encoding="utf-8")):
            kind = "silent" if empty else "firing"
            found.setdefault(name, {"firing": 0, "silent": 0})[kind] += 1
    return found


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    counted = cases()
    for name in alert_names(build_rules()):
        got = counted.get(name, {"firing": 0, "silent": 0})
        assert got["firing"] >= 1 and got["silent"] >= 1, f"{name}: {got}"
    assert set(counted) <= set(alert_names(build_rules())), "a test names an unknown alert"


@pytest.mark.parametrize(
    "thresholds",
    [
        # The end-to-end test's shortened windows, and an operator's per-upstream tuning.
        AlertThresholds(
            audit_backlog_growing_s=10, circuit_open_for_s=5, upstream_error_window_s=20,
            slo_burn_windows=(
                BurnWindow(long_window_s=60, short_window_s=10, burn_rate=2, alert="page"),
            ),
        ),
        AlertThresholds(
            latency_p95_target_s_by_upstream={"payments": 0.5, "search-v2": 2.0},
            call_success_slo_ratio=0.999, job="netscope-prod", latency_for_s=0,
        ),
    ],
    ids=["shortened", "tuned"],
)  # fmt: skip
def test_promtool_accepts_tuned_rules(tmp_path: Path, thresholds: AlertThresholds) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(render_yaml(thresholds), encoding="utf-8")
    result = run("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
