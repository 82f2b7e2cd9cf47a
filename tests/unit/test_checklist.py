"""`netscope check`'s judgement, without a network: hand-made figures -> lines and exit code.

Each item of runbook §5 is driven to each of its verdicts, with the boundary on both sides
(2 % errors passes at the alert's edge and fails just above it), so a changed threshold is
a failing test, not a surprise during an incident.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from netscope.config import UpstreamConfig
from netscope.ops import render
from netscope.ops.checklist import (
    BROKER_SKEW_NOT_OBSERVED,
    DEFAULT_P95_TARGET_S,
    NEEDS_PROMETHEUS,
    Thresholds,
    evaluate,
)
from netscope.ops.figures import Answer, Clock, Figures, Trends, UpstreamWindow, Window
from netscope.ops.verdict import EXIT_FAIL, EXIT_PASS, EXIT_WARN, Line, Status, exit_code, worst

T = Thresholds()


def status_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "consumer_lag": 3,
        "consumer_lag_by_partition": {"t/0": 1, "t/1": 2},
        "assigned_partitions": ["t/0", "t/1"],
        "queue_depth": 10,
        "queue_capacity": 2000,
        "paused_reason": None,
        "audit_degraded": False,
        "spool_pending_entries": 0,
        "spool_oldest_age_s": None,
        "spool_full": False,
        "breakers": {"payments": "closed"},
    }
    return body | overrides


def ready_body(failing: tuple[str, ...] = ()) -> dict[str, Any]:
    checks = {name: {"ok": name not in failing, "detail": f"{name} detail"}
              for name in ("kafka", "audit_store", "metrics", "audit_spool")}  # fmt: skip
    return {"status": "not_ready" if failing else "ready", "failing": list(failing),
            "checks": checks}  # fmt: skip


def healthy_window(**upstream: Any) -> Window:
    up = {"calls": 200.0, "errors": 0.0, "timeouts": 0.0, "p95_s": 0.05, "p99_s": 0.08}
    return Window(
        span="last 5 s, two scrapes of /metrics",
        upstreams={"payments": UpstreamWindow(**(up | upstream))},
        store_writes=20.0,
        store_errors=0.0,
        audit_write_p95_s=0.05,
        ws_delay_p99_s=0.01,
        ws_delay_samples=5.0,
    )


def figures(**overrides: Any) -> Figures:
    base = Figures(
        url="http://127.0.0.1:8080",
        live=Answer(200, {"status": "live", "uptime_s": 120.0}),
        ready=Answer(200, ready_body()),
        status=Answer(200, status_body()),
        window=healthy_window(),
        clock=Clock("chronyc", offset_s=0.002, synchronised=True),
    )
    return dataclasses.replace(base, **overrides)


def line(f: Figures, key: str, t: Thresholds = T) -> Line:
    found = {ln.key: ln for ln in evaluate(f, t)}
    return found[key]


# -- the vocabulary ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([], EXIT_PASS),
        ([Status.SKIP], EXIT_PASS),
        ([Status.PASS, Status.SKIP], EXIT_PASS),
        ([Status.PASS, Status.WARN], EXIT_WARN),
        ([Status.WARN, Status.SKIP, Status.PASS], EXIT_WARN),
        ([Status.PASS, Status.FAIL], EXIT_FAIL),
        ([Status.WARN, Status.FAIL, Status.SKIP], EXIT_FAIL),
    ],
)
def test_exit_code_is_the_worst_judged_status(statuses: list[Status], code: int) -> None:
    lines = [Line(f"k{i}", "n", s, "", "") for i, s in enumerate(statuses)]
    assert exit_code(lines) == code
    assert worst(statuses) in (statuses or [Status.SKIP])


def test_a_healthy_service_passes_everything_it_can_judge() -> None:
    lines = evaluate(figures())
    judged = {ln.key: ln.status for ln in lines if ln.status is not Status.SKIP}
    assert set(judged.values()) == {Status.PASS}, judged
    assert exit_code(lines) == EXIT_PASS
    # In the runbook's order: service, Kafka, RGW, calls, flow, WS, clock.
    keys = [ln.key for ln in lines]
    assert keys == [
        "live", "ready", "kafka.lag", "kafka.lag_trend", "rgw.writes", "rgw.latency",
        "audit.backlog", "latency.payments", "errors.payments", "timeouts.payments",
        "queue.depth", "queue.trend", "circuits.now", "circuits.window", "ws.delay",
        "clock.ntp", "clock.broker",
    ]  # fmt: skip


def test_without_prometheus_the_trend_items_say_so_rather_than_pretend() -> None:
    lines = {ln.key: ln for ln in evaluate(figures())}
    for key in ("kafka.lag_trend", "queue.trend", "circuits.window"):
        assert lines[key].status is Status.SKIP
        assert lines[key].figure == NEEDS_PROMETHEUS
    assert "prometheus" not in lines


# -- service ------------------------------------------------------------------------------------


def test_live_fails_without_an_answer_and_on_a_non_200() -> None:
    down = figures(live=Answer(None, error="ConnectError: refused"))
    assert line(down, "live").status is Status.FAIL
    assert line(down, "live").detail == "ConnectError: refused"
    assert line(figures(live=Answer(500, "boom")), "live").figure == "HTTP 500"
    assert line(figures(), "live").figure == "200, up 2 min"
    days = figures(live=Answer(200, {"uptime_s": 3 * 86400 + 5}))
    assert line(days, "live").figure == "200, up 3 d"


def test_ready_503_fails_and_names_each_failing_check_with_its_detail() -> None:
    f = figures(ready=Answer(503, ready_body(failing=("audit_store", "kafka"))))
    ln = line(f, "ready")
    assert ln.status is Status.FAIL
    assert ln.figure == "503: audit_store, kafka"
    assert "audit_store: audit_store detail" in ln.detail


# -- Kafka ---------------------------------------------------------------------------------------


def test_lag_now_is_a_figure_and_an_idle_instance_says_it_has_no_partition() -> None:
    assert line(figures(), "kafka.lag").figure == "3 messages over 2 partitions"
    idle = figures(status=Answer(200, status_body(assigned_partitions=[],
                                                 consumer_lag_by_partition={})))  # fmt: skip
    assert line(idle, "kafka.lag").figure == "no partition assigned"


def trends(**overrides: Any) -> Trends:
    flat = [(float(t), 5.0) for t in range(0, 900, 60)]
    base = Trends(span_s=900, lag=flat, queue_depth=flat, queue_capacity=2000,
                  closed_share={"payments": 1.0})  # fmt: skip
    return dataclasses.replace(base, **overrides)


def with_prometheus(**overrides: Any) -> Figures:
    return figures(prometheus="http://prom:9090", prometheus_series=1, trends=trends(**overrides))


def test_lag_growing_at_every_step_fails_and_a_net_rise_warns() -> None:
    drift = [(float(t), 100.0 + 10 * i) for i, t in enumerate(range(0, 900, 60))]
    assert line(with_prometheus(lag=drift), "kafka.lag_trend").status is Status.FAIL
    bumpy = [(0.0, 100.0), (60.0, 300.0), (120.0, 150.0), (180.0, 400.0)]
    assert line(with_prometheus(lag=bumpy), "kafka.lag_trend").status is Status.WARN
    assert line(with_prometheus(), "kafka.lag_trend").status is Status.PASS


def test_prometheus_that_failed_leaves_trends_unknown_and_fails_its_own_line() -> None:
    f = figures(prometheus="http://prom:9090", prometheus_error="ConnectError: refused",
                window=None, window_error="Prometheus: ConnectError: refused")  # fmt: skip
    lines = {ln.key: ln for ln in evaluate(f)}
    assert lines["prometheus"].status is Status.FAIL
    assert lines["kafka.lag_trend"].status is Status.SKIP
    assert "ConnectError" in lines["kafka.lag_trend"].detail
    assert lines["errors.payments"].status is Status.SKIP
    assert exit_code(list(lines.values())) == EXIT_FAIL


def test_a_prometheus_without_netscope_series_fails() -> None:
    f = dataclasses.replace(with_prometheus(), prometheus_series=0)
    ln = line(f, "prometheus")
    assert ln.status is Status.FAIL and ln.figure == "no NetScope series"


# -- RGW -----------------------------------------------------------------------------------------


def test_audit_writes_fail_in_degraded_mode() -> None:
    f = figures(status=Answer(200, status_body(audit_degraded=True)))
    ln = line(f, "rgw.writes")
    assert ln.status is Status.FAIL and "degraded yes" in ln.figure
    assert "degraded mode" in ln.detail


def test_audit_writes_fail_when_readiness_probe_of_the_store_fails_even_without_traffic() -> None:
    f = figures(ready=Answer(503, ready_body(failing=("audit_store",))),
                window=dataclasses.replace(healthy_window(), store_writes=0.0))  # fmt: skip
    ln = line(f, "rgw.writes")
    assert ln.status is Status.FAIL and "readiness probe" in ln.detail


@pytest.mark.parametrize(
    ("writes", "errors", "expected"),
    [
        (100.0, 0.0, Status.PASS),
        (0.0, 0.0, Status.PASS),  # no write in the window, nothing failing
        (99.0, 1.0, Status.WARN),  # 1 % failed: retried, worth a look
        (96.0, 4.0, Status.WARN),
        (95.0, 5.0, Status.FAIL),  # 5 %: fails
        (0.0, 3.0, Status.FAIL),
    ],
)
def test_audit_write_error_ratio(writes: float, errors: float, expected: Status) -> None:
    window = dataclasses.replace(healthy_window(), store_writes=writes, store_errors=errors)
    assert line(figures(window=window), "rgw.writes").status is expected


@pytest.mark.parametrize(
    ("p95", "baseline", "expected"),
    [
        (0.05, None, Status.PASS),
        (1.0, None, Status.PASS),  # at the threshold
        (1.01, None, Status.WARN),
        (4.99, None, Status.WARN),
        (5.0, None, Status.FAIL),  # the default write timeout: writes go to the spool
        (0.5, 0.1, Status.WARN),  # five times its hour: not stable
        (0.15, 0.1, Status.PASS),
        (0.09, 0.01, Status.PASS),  # tiny figures are not "unstable"
    ],
)
def test_audit_write_latency(p95: float, baseline: float | None, expected: Status) -> None:
    window = dataclasses.replace(
        healthy_window(), audit_write_p95_s=p95, audit_write_p95_baseline_s=baseline
    )
    assert line(figures(window=window), "rgw.latency").status is expected


def test_audit_write_latency_without_writes_is_not_judged() -> None:
    window = dataclasses.replace(healthy_window(), audit_write_p95_s=None)
    assert line(figures(window=window), "rgw.latency").status is Status.SKIP


@pytest.mark.parametrize(
    ("pending", "age", "full", "expected"),
    [
        (0, None, False, Status.PASS),
        (3, 10.0, False, Status.WARN),  # draining
        (3, 899.0, False, Status.WARN),
        (3, 900.0, False, Status.FAIL),  # §8: a backlog older than 15 min is critical
        (0, None, True, Status.FAIL),  # full: ingest paused
    ],
)
def test_spool_backlog(pending: int, age: float | None, full: bool, expected: Status) -> None:
    body = status_body(spool_pending_entries=pending, spool_oldest_age_s=age, spool_full=full)
    assert line(figures(status=Answer(200, body)), "audit.backlog").status is expected


# -- calls ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errors", "expected"),
    [(0.0, Status.PASS), (2.0, Status.PASS), (2.2, Status.WARN), (4.0, Status.WARN),
     (4.2, Status.FAIL), (200.0, Status.FAIL)],
)  # fmt: skip
def test_upstream_error_ratio_against_the_2_percent_alert(errors: float, expected: Status) -> None:
    f = figures(window=healthy_window(calls=200.0, errors=errors))
    ln = line(f, "errors.payments")
    assert ln.status is expected
    assert ln.threshold == "<= 2.0 % of calls (warn > 1.0 %)"


def test_timeouts_use_the_same_scale() -> None:
    assert line(figures(window=healthy_window(timeouts=5.0)), "timeouts.payments").status is (
        Status.FAIL
    )
    assert line(figures(window=healthy_window(timeouts=3.0)), "timeouts.payments").status is (
        Status.WARN
    )


def test_an_upstream_without_calls_in_the_window_is_not_judged() -> None:
    f = figures(window=healthy_window(calls=0.0, p95_s=None, p99_s=None))
    for key in ("errors.payments", "timeouts.payments", "latency.payments"):
        assert line(f, key).status is Status.SKIP, key
        assert "no call" in line(f, key).figure


@pytest.mark.parametrize(
    ("p95", "p99", "expected"),
    [
        (0.9, 1.5, Status.PASS),
        (1.0, 2.0, Status.PASS),  # exactly at target and twice it
        (1.1, 1.5, Status.WARN),  # §8: p95 above target is a warning, never a failure
        (0.5, 2.1, Status.WARN),
        (30.0, 30.0, Status.WARN),
    ],
)
def test_latency_against_the_default_target(p95: float, p99: float, expected: Status) -> None:
    ln = line(figures(window=healthy_window(p95_s=p95, p99_s=p99)), "latency.payments")
    assert ln.status is expected


def test_each_upstream_is_judged_against_its_own_target() -> None:
    f = figures(window=healthy_window(p95_s=0.3, p99_s=0.4), p95_targets={"payments": 0.25})
    ln = line(f, "latency.payments")
    assert ln.status is Status.WARN
    assert ln.threshold == "p95 <= 250 ms (target), p99 <= 500 ms"


def test_the_default_target_is_the_config_default() -> None:
    default = UpstreamConfig(base_url="http://x").latency_p95_target_s
    assert DEFAULT_P95_TARGET_S == default == T.default_p95_target_s


def test_upstreams_come_from_the_window_and_the_breakers() -> None:
    body = status_body(breakers={"payments": "closed", "search": "closed"})
    keys = [ln.key for ln in evaluate(figures(status=Answer(200, body)))]
    assert "errors.search" in keys and "latency.search" in keys


# -- flow ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "expected"), [(0, Status.PASS), (1599, Status.PASS), (1600, Status.WARN),
                            (2000, Status.WARN)]
)  # fmt: skip
def test_queue_fill(depth: int, expected: Status) -> None:
    body = status_body(queue_depth=depth, queue_capacity=2000)
    assert line(figures(status=Answer(200, body)), "queue.depth").status is expected


def test_queue_trend_noise_floor_scales_with_capacity() -> None:
    # +50 messages on a 2000-message queue is below its 5 % floor: not a growth.
    creeping = [(float(t), 10.0 + 5 * i) for i, t in enumerate(range(0, 660, 60))]
    assert line(with_prometheus(queue_depth=creeping), "queue.trend").status is Status.PASS
    small = dataclasses.replace(with_prometheus(queue_depth=creeping),
                                trends=trends(queue_depth=creeping, queue_capacity=100))
    assert line(small, "queue.trend").status is Status.FAIL


@pytest.mark.parametrize(
    ("states", "expected", "figure"),
    [
        ({"a": "closed", "b": "closed"}, Status.PASS, "2 of 2 closed"),
        ({"a": "closed", "b": "half_open"}, Status.WARN, "b half_open"),
        ({"a": "forced_closed"}, Status.WARN, "a forced_closed"),
        ({"a": "open", "b": "half_open"}, Status.FAIL, "a open, b half_open"),
        ({"a": "forced_open"}, Status.FAIL, "a forced_open"),
    ],
)
def test_circuits_now(states: dict[str, str], expected: Status, figure: str) -> None:
    ln = line(figures(status=Answer(200, status_body(breakers=states))), "circuits.now")
    assert (ln.status, ln.figure) == (expected, figure)


@pytest.mark.parametrize(
    ("share", "expected"),
    [(1.0, Status.PASS), (0.9, Status.PASS), (0.89, Status.WARN), (0.5, Status.WARN),
     (0.49, Status.FAIL), (0.0, Status.FAIL)],
)  # fmt: skip
def test_circuits_mostly_closed_over_the_window(share: float, expected: Status) -> None:
    f = with_prometheus(closed_share={"payments": 1.0, "search": share})
    ln = line(f, "circuits.window")
    assert ln.status is expected
    if share < 1.0:
        assert ln.figure.startswith("worst search")


# -- WebSocket and clock -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p99", "expected"),
    [(0.01, Status.PASS), (0.99, Status.PASS), (1.0, Status.WARN), (1.99, Status.WARN),
     (2.0, Status.FAIL)],
)  # fmt: skip
def test_ws_delay_against_the_2_s_of_section_5(p99: float, expected: Status) -> None:
    window = dataclasses.replace(healthy_window(), ws_delay_p99_s=p99)
    assert line(figures(window=window), "ws.delay").status is expected


def test_ws_delay_without_an_event_is_not_judged() -> None:
    window = dataclasses.replace(healthy_window(), ws_delay_p99_s=None, ws_delay_samples=0.0)
    ln = line(figures(window=window), "ws.delay")
    assert ln.status is Status.SKIP and "no WebSocket client" in ln.detail


@pytest.mark.parametrize(
    ("offset", "synced", "expected"),
    [
        (0.0, True, Status.PASS),
        (-0.1, True, Status.PASS),
        (0.11, True, Status.WARN),
        (-0.99, True, Status.WARN),
        (1.0, True, Status.FAIL),
        (-3.0, None, Status.FAIL),
        (0.001, False, Status.WARN),  # close, but the NTP client says it is not synchronised
    ],
)
def test_clock_offset(offset: float, synced: bool | None, expected: Status) -> None:
    ln = line(figures(clock=Clock("chronyc", offset_s=offset, synchronised=synced)), "clock.ntp")
    assert ln.status is expected
    assert ("ahead" if offset > 0 else "behind") in ln.figure


def test_no_ntp_client_is_unknown_and_never_fails() -> None:
    f = figures(clock=Clock(source="", detail="no NTP client answered (chronyc ...)"))
    ln = line(f, "clock.ntp")
    assert (ln.status, ln.figure) == (Status.SKIP, "unknown")
    assert exit_code(evaluate(f)) == EXIT_PASS


def test_the_broker_skew_is_declared_not_observed() -> None:
    ln = line(figures(), "clock.broker")
    assert (ln.status, ln.figure, ln.detail) == (Status.SKIP, "not observed",
                                                 BROKER_SKEW_NOT_OBSERVED)  # fmt: skip


# -- NetScope unreachable -----------------------------------------------------------------------


def test_an_unreachable_netscope_fails_live_and_ready_and_judges_nothing_else() -> None:
    gone = Answer(None, error="ConnectError: All connection attempts failed")
    f = figures(live=gone, ready=gone, status=gone, window=None,
                window_error="GET /metrics: ConnectError")  # fmt: skip
    lines = evaluate(f)
    failed = [ln.key for ln in lines if ln.status is Status.FAIL]
    assert failed == ["live", "ready"]
    assert exit_code(lines) == EXIT_FAIL


# -- rendering -----------------------------------------------------------------------------------


def test_plain_output_has_one_line_per_item_and_the_exit_code_last() -> None:
    f = figures(window=healthy_window(errors=100.0))
    lines = evaluate(f)
    text = render.plain(lines, "netscope check x").splitlines()
    assert text[0] == "netscope check x"
    errors = next(t for t in text if "Errors payments" in t)
    assert errors.startswith("FAIL  Errors payments")
    assert "50.0 %: 100 upstream errors of 200 calls" in errors
    assert errors.endswith("[<= 2.0 % of calls (warn > 1.0 %)]")
    assert text[-1].endswith("-> exit 2")


def test_json_carries_every_field_and_the_exit_code() -> None:
    lines = evaluate(figures())
    doc = orjson.loads(render.as_json(lines, {"url": "u"}))
    assert doc["exit_code"] == 0 and doc["url"] == "u"
    assert doc["items"][0] == {"key": "live", "name": "Service live", "status": "pass",
                               "figure": "200, up 2 min", "threshold": "GET /health/live = 200",
                               "detail": ""}  # fmt: skip


def test_the_terminal_table_shows_brackets_as_text_not_markup() -> None:
    import io

    from rich.console import Console

    out = io.StringIO()
    lines = [Line("live", "Service live", Status.FAIL, "no answer", "GET /health/live = 200",
                  "OSError: [Errno 111] Connect call failed [red]")]  # fmt: skip
    render.table(lines, "netscope check [x]", Console(file=out, width=200, force_terminal=False))
    text = out.getvalue()
    assert "[Errno 111]" in text and "[red]" in text and "netscope check [x]" in text
    assert "-> exit 2" in text
