"""Where `netscope check`'s figures come from, without a network.

- two scrapes of ``/metrics`` -> a window (``ops/exposition.py``), on the text ``Metrics``
  really exports, so a renamed series breaks this test and not an on-call's night;
- the PromQL of ``--prometheus`` (``ops/promql.py``), evaluated by ``promtool`` on the same
  samples: both sources must give the same figures, and every expression must parse;
- Prometheus' answers -> figures;
- the NTP clients' reports -> the clock offset (``ops/clock.py``).
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest

from netscope.contract.outcomes import ErrorClass, Outcome
from netscope.observability.events import (
    AuditBatchDurable,
    AuditTarget,
    AuditWriteFailed,
    WriteResult,
)
from netscope.observability.metrics import Metrics
from netscope.ops import exposition
from netscope.ops.clock import parse_chronyc_tracking, parse_timesync_status
from netscope.ops.promql import Queries, by_label, points, scalar, trends_from, window_from
from tests.unit.test_metrics_calls import UP, completed
from tests.unit.test_metrics_promql import promtool, record

# -- histogram_quantile ---------------------------------------------------------------------


def test_quantile_interpolates_inside_the_bucket_holding_the_rank() -> None:
    buckets = [(0.1, 50.0), (0.2, 90.0), (0.5, 100.0), (math.inf, 100.0)]
    assert exposition.histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert exposition.histogram_quantile(0.7, buckets) == pytest.approx(0.15)
    assert exposition.histogram_quantile(0.95, buckets) == pytest.approx(0.35)
    assert exposition.histogram_quantile(0.25, buckets) == pytest.approx(0.05)  # from 0


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    buckets = [(0.1, 1.0), (1.0, 2.0), (math.inf, 10.0)]
    assert exposition.histogram_quantile(0.99, buckets) == 1.0


def test_quantile_of_an_empty_histogram_is_unknown() -> None:
    assert exposition.histogram_quantile(0.99, []) is None
    assert exposition.histogram_quantile(0.99, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert exposition.histogram_quantile(0.5, [(math.inf, 4.0)]) is None


# -- increases over two scrapes ---------------------------------------------------------------


def test_increase_sums_per_label_and_counts_a_reset_from_zero() -> None:
    before = exposition.parse('c_total{u="a"} 10\nc_total{u="b"} 100\n')
    after = exposition.parse('c_total{u="a"} 15\nc_total{u="b"} 7\nc_total{u="c"} 2\n')
    assert exposition.increase(before, after, "c_total", by="u") == {"a": 5, "b": 7, "c": 2}
    assert exposition.increase(before, after, "c_total") == {None: 14}
    assert exposition.increase(before, after, "c_total", lambda lab: lab["u"] != "b") == {None: 7}


def metrics() -> Metrics:
    m = Metrics()
    m.init_upstream(UP)
    return m


def traffic(m: Metrics) -> None:
    """One window's events: 100 calls to the upstream (3 errors, 1 a timeout), NetScope's
    own refusals and invalid input (in neither side of the ratio), audit writes."""
    for latency in [0.01] * 80 + [0.2] * 15 + [1.5] * 2:
        m.on_event(completed(Outcome.SUCCESS, latency_s=latency))
    m.on_event(completed(Outcome.HTTP_ERROR, latency_s=0.3))
    m.on_event(completed(Outcome.CONNECT_ERROR, ErrorClass.CONNECTION_RESET, latency_s=0.02))
    m.on_event(completed(Outcome.TIMEOUT_READ, ErrorClass.TIMEOUT_READ, latency_s=2.0))
    for _ in range(40):
        m.on_event(completed(Outcome.REJECTED_CIRCUIT_OPEN, ErrorClass.CIRCUIT_OPEN))
    for _ in range(5):
        m.on_event(completed(Outcome.INVALID, ErrorClass.INVALID, upstream=None))
    for write_s in [0.03] * 9 + [0.4]:
        m.on_event(AuditBatchDurable("t", 0, 10, 100, AuditTarget.STORE, WriteResult.CREATED,
                                     write_s, 0.0))  # fmt: skip
    m.on_event(AuditWriteFailed(AuditTarget.STORE, "StoreTimeout", "slow"))


def scrape(m: Metrics) -> exposition.Scrape:
    return exposition.parse(generate_latest(m.registry).decode())


def test_a_window_from_two_scrapes_of_what_netscope_exports() -> None:
    m = metrics()
    m.on_event(completed(Outcome.HTTP_ERROR))  # before the window: not counted
    before = scrape(m)
    traffic(m)
    w = exposition.window(before, scrape(m), 5.0)
    up = w.upstreams[UP]
    assert (up.calls, up.errors, up.timeouts) == (100, 3, 1)
    assert up.p95_s is not None and 0.2 < up.p95_s <= 0.25
    assert up.p99_s is not None and 1.0 < up.p99_s <= 2.5
    assert (w.store_writes, w.store_errors) == (10, 1)
    assert w.audit_write_p95_s is not None and 0.25 < w.audit_write_p95_s <= 0.5
    assert w.ws_delay_p99_s is None and w.ws_delay_samples == 0  # the hub's registry, not here
    assert w.span == "last 5 s, two scrapes of /metrics"


# -- the PromQL, evaluated by promtool on the same samples -------------------------------------


def promtool_eval(tmp_path: Path, series: list[dict[str, Any]], tests: list[dict]) -> str:
    doc = {"rule_files": [], "evaluation_interval": "1m",
           "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}]}
    (tmp_path / "test.yml").write_bytes(orjson.dumps(doc))
    run = subprocess.run([promtool(), "test", "rules", "test.yml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    return run.stdout + run.stderr if run.returncode else ""


def expected(value: float | None, **labels: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    inside = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return [{"labels": "{" + inside + "}", "value": value}]


def test_the_promql_of_check_counts_what_the_two_scrapes_count(tmp_path: Path) -> None:
    m = metrics()
    before = scrape(m)
    # Six samples a minute apart: [5m] at 5m covers them exactly, so increase() has nothing
    # to extrapolate and must equal the scrapes' difference.
    series = record(m, [lambda: [], *([lambda: traffic(m) or []] * 5)])
    after = scrape(m)
    w = exposition.window(before, after, 300.0)
    up = w.upstreams[UP]
    q = Queries().window()
    wanted = {
        "calls": expected(up.calls, upstream=UP),
        "errors": expected(up.errors, upstream=UP),
        "timeouts": expected(up.timeouts, upstream=UP),
        "p95": expected(up.p95_s, upstream=UP),
        "p99": expected(up.p99_s, upstream=UP),
        "store_writes": expected(w.store_writes),
        "store_errors": expected(w.store_errors),
        "audit_p95": expected(w.audit_write_p95_s),
        # The hour's rate is extrapolated alike for every bucket: same quantile.
        "audit_p95_baseline": expected(w.audit_write_p95_s),
        "ws_p99": [],  # the hub's series: not in this registry, and no error either
        "ws_count": [],
    }
    assert set(wanted) == set(q)
    instants = Queries(trend_window_s=300).trend_instants()
    # promtool compares exactly; interpolated quantiles differ in the last bits of a float:
    # compared in whole microseconds.
    for name in ("p95", "p99", "audit_p95", "audit_p95_baseline"):
        q[name] = f"round(({q[name]}) * 1000000)"
        for sample in wanted[name]:
            sample["value"] = round(sample["value"] * 1_000_000)
    tests = [{"expr": q[name], "eval_time": "5m", "exp_samples": wanted[name]} for name in q]
    tests += [
        {"expr": instants["queue_capacity"], "eval_time": "5m", "exp_samples": expected(0.0)},
        {"expr": instants["closed_share"], "eval_time": "5m",
         "exp_samples": expected(1.0, upstream=UP)},
        {"expr": Queries().processes(), "eval_time": "5m", "exp_samples": expected(1.0)},
    ]  # fmt: skip
    for expr in Queries().trend_ranges().values():
        tests.append({"expr": expr, "eval_time": "5m",
                      "exp_samples": expected(0.0) if "queue" in expr else []})  # fmt: skip
    failure = promtool_eval(tmp_path, series, tests)
    assert not failure, failure


def test_a_selector_lands_in_every_series_matcher() -> None:
    q = Queries(selector='instance="h:8080"')
    for expr in [*q.window().values(), *q.trend_ranges().values(), *q.trend_instants().values(),
                 q.processes()]:  # fmt: skip
        assert expr.count("{") == expr.count('instance="h:8080"'), expr


# -- Prometheus answers -> figures -------------------------------------------------------------


def vector(*samples: tuple[dict[str, str], str]) -> list[dict[str, Any]]:
    return [{"metric": labels, "value": [1700000000.0, value]} for labels, value in samples]


def test_answers_become_a_window_with_nan_as_unknown() -> None:
    answers = {name: [] for name in Queries().window()}
    answers |= {
        "calls": vector(({"upstream": "a"}, "120"), ({"upstream": "b"}, "0")),
        "errors": vector(({"upstream": "a"}, "3")),
        "p95": vector(({"upstream": "a"}, "0.25"), ({"upstream": "b"}, "NaN")),
        "p99": vector(({"upstream": "a"}, "0.5")),
        "store_writes": vector(({}, "40")),
        "audit_p95": vector(({}, "NaN")),
    }
    w = window_from(answers, "last 5m, Prometheus")
    assert (w.upstreams["a"].calls, w.upstreams["a"].errors, w.upstreams["a"].p95_s) == (
        120, 3, 0.25)  # fmt: skip
    assert w.upstreams["b"].p95_s is None and w.upstreams["b"].calls == 0
    assert (w.store_writes, w.store_errors, w.audit_write_p95_s) == (40, 0, None)


def test_range_answers_become_trends() -> None:
    matrix = [{"metric": {}, "values": [[1.0, "3"], [2.0, "NaN"], [3.0, "5"]]}]
    trends = trends_from(
        {"lag": matrix, "queue_depth": []},
        {"queue_capacity": vector(({}, "2000")),
         "closed_share": vector(({"upstream": "a"}, "0.75"))},
        900,
    )  # fmt: skip
    assert trends.lag == [(1.0, 3.0), (3.0, 5.0)]
    assert trends.queue_depth == [] and trends.queue_capacity == 2000
    assert trends.closed_share == {"a": 0.75}
    assert points([]) == [] and scalar([]) is None and by_label([], "x") == {}


# -- the clock --------------------------------------------------------------------------------

CHRONY = """\
Reference ID    : C0A80101 (192.168.1.1)
Stratum         : 3
Ref time (UTC)  : Thu Dec 03 10:00:00 2026
System time     : 0.000123456 seconds slow of NTP time
Last offset     : +0.000003211 seconds
RMS offset      : 0.000021000 seconds
Frequency       : 1.234 ppm slow
Residual freq   : +0.001 ppm
Skew            : 0.012 ppm
Root delay      : 0.012345678 seconds
Root dispersion : 0.000456789 seconds
Update interval : 64.2 seconds
Leap status     : Normal
"""

TIMESYNC = """\
       Server: 192.168.1.1 (ntp.example.com)
Poll interval: 34min 8s (min: 32s; max 34min 8s)
         Leap: normal
      Version: 4
      Stratum: 2
    Reference: C0248F97
    Precision: 1us (-24)
Root distance: 15.321ms (max: 5s)
       Offset: -1.234ms
        Delay: 12.345ms
       Jitter: 2.001ms
 Packet count: 6
    Frequency: +12.345ppm
"""

def test_chrony_slow_of_ntp_time_is_behind() -> None:
    clock = parse_chronyc_tracking(CHRONY)
    assert clock is not None
    assert clock.source == "chronyc" and clock.offset_s == pytest.approx(-0.000123456)
    assert clock.synchronised is True
    fast = parse_chronyc_tracking(CHRONY.replace("slow of NTP", "fast of NTP"))
    assert fast is not None and fast.offset_s == pytest.approx(0.000123456)
    unsynced = parse_chronyc_tracking(CHRONY.replace("Normal", "Not synchronised"))
    assert unsynced is not None and unsynced.synchronised is False


def test_timesyncd_offset_with_units_and_sign() -> None:
    clock = parse_timesync_status(TIMESYNC)
    assert clock is not None and clock.offset_s == pytest.approx(0.001234)  # theta < 0: ahead
    for text, seconds in (("+250us", -250e-6), ("2.5s", -2.5), ("-1min", 60.0)):
        parsed = parse_timesync_status(TIMESYNC.replace("-1.234ms", text))
        assert parsed is not None and parsed.offset_s == pytest.approx(seconds), text


def test_unparsable_reports_are_none_never_a_made_up_offset() -> None:
    for parse in (parse_chronyc_tracking, parse_timesync_status):
        assert parse("") is None
        assert parse("506 Cannot talk to daemon\n") is None
        assert parse("Failed to connect to bus: Host is down\n") is None
