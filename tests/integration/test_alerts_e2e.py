"""Alert rules end to end: a real Prometheus scrapes a real `netscope run`, evaluates the
generated rules and sends to a real Alertmanager, whose webhook receiver is this test.

The rules are the shipped generator's, with windows shortened through its thresholds
(seconds instead of minutes), so what is proven here is the shipped PromQL on the series
a running NetScope really exports, not a copy of it:

- stopping RGW fires NetScopeAuditBacklogGrowing, and restarting it resolves the alert;
- an upstream that fails every call fires NetScopeCircuitOpen, and its recovery resolves it.

Every wait is a poll with a deadline on what the receiver got; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from netscope.devservices.base import free_port
from netscope.observability.alert_rules import AlertThresholds, BurnWindow, render_yaml
from netscope.tools.loadgen import LoadgenConfig, run_loadgen
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import settings_for, settings_toml, wait_for

pytestmark = pytest.mark.integration

# Windows shortened through the generator, evaluated every second (the Prometheus fixture's
# evaluation_interval) on 1 s scrapes. Everything not under test is shortened too, so the
# file is the shipped shape with small numbers, and promtool-checked by the unit tests.
SHORT = AlertThresholds(
    audit_backlog_growing_s=10,
    circuit_open_for_s=5,
    latency_window_s=20,
    latency_for_s=5,
    upstream_error_window_s=20,
    upstream_error_for_s=5,
    slo_burn_windows=(BurnWindow(long_window_s=60, short_window_s=10, burn_rate=2, alert="page"),),
    instance_down_for_s=5,
    not_ready_for_s=5,
    consumer_lag_window_s=30,
    ws_window_s=20,
    ws_for_s=5,
    ledger_down_for_s=5,
    clock_offset_for_s=5,
)
BREAKER = """
[upstreams.payments.retry]
max_attempts = 1
[upstreams.payments.breaker]
window_size_calls = 10
minimum_calls = 5
wait_in_open_s = 2.0
"""


@dataclass(frozen=True)
class Notification:
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    # Wall clock, from the payload: when Prometheus saw the condition start (firing) or end
    # (resolved). Not when the test read it: a loop blocked meanwhile would misdate it.
    starts_at: float
    ends_at: float | None

    @property
    def at(self) -> float:
        return self.ends_at if self.status == "resolved" and self.ends_at else self.starts_at


def _epoch(rfc3339: str) -> float | None:
    if rfc3339.startswith("0001-"):  # Go's zero time: "no end"
        return None
    head, _, frac = rfc3339.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}")


class Webhook:
    """Alertmanager's webhook receiver: records every alert of every notification."""

    def __init__(self) -> None:
        self.got: list[Notification] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Webhook:
        app = web.Application()
        app.router.add_post("/alerts", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/alerts"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.json()
        for a in body["alerts"]:
            self.got.append(
                Notification(
                    a["status"], a["labels"], a["annotations"],
                    _epoch(a["startsAt"]) or 0.0, _epoch(a["endsAt"]),
                )
            )  # fmt: skip
        return web.Response(text="ok")

    def first(self, alertname: str, status: str, *, after: float) -> Notification | None:
        """The first `status` notification of `alertname` whose start (firing) or end
        (resolved) is later than `after` (wall clock)."""
        return next(
            (
                n for n in self.got
                if n.labels.get("alertname") == alertname and n.status == status and n.at > after
            ),
            None,
        )  # fmt: skip

    def names(self, status: str) -> set[str]:
        return {n.labels["alertname"] for n in self.got if n.status == status}


async def notified(hook: Webhook, alertname: str, status: str, *, after: float,
                   timeout_s: float) -> Notification:  # fmt: skip
    await wait_for(
        lambda: hook.first(alertname, status, after=after) is not None,
        timeout_s=timeout_s,
        what=f"{alertname} {status} at the webhook (got: {sorted(hook.names(status))})",
    )
    found = hook.first(alertname, status, after=after)
    assert found is not None
    return found


@contextlib.asynccontextmanager
async def netscope_run(config: Path, env: dict[str, str], log: Path) -> AsyncIterator[Any]:
    """`netscope run -c config` as an operator starts it; SIGTERM on the way out."""
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "netscope", "run", "-c", str(config),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 60)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


@contextlib.asynccontextmanager
async def load(bootstrap: str, topic: str) -> AsyncIterator[None]:
    """Steady traffic to upstream "payments" for the whole test."""
    stop = asyncio.Event()
    cfg = LoadgenConfig(
        bootstrap=bootstrap, topic=topic, rate_per_s=20, upstreams={"payments": 1.0}, seed=14
    )
    task = asyncio.create_task(run_loadgen(cfg, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_backlog_and_circuit_alerts_fire_and_resolve_through_alertmanager(
    tansu_broker, rgw_faults, rgw_bucket, prometheus, alertmanager, tmp_path: Path
) -> None:
    started = time.time()
    marks: dict[str, float] = {}
    topic = f"alerts-{uuid.uuid4().hex[:12]}"
    await tansu_broker.create_topic(topic, 2)
    rules = tmp_path / "rules.yml"
    rules.write_text(render_yaml(SHORT), encoding="utf-8")
    port = free_port()

    async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim, Webhook() as hook:
        settings = settings_for(
            broker=tansu_broker, topic=topic, tmp_path=tmp_path, upstreams={"payments": sim.url},
            rgw=rgw_faults, bucket=rgw_bucket, group_id=f"g-{topic}",
            # A short drain backoff: the backlog empties within a second of RGW's return.
            audit={"spool": {"path": tmp_path / "spool", "free_disk_floor_bytes": 0,
                             "drain_max_backoff_s": 1.0}},
        )  # fmt: skip
        config = tmp_path / "netscope.toml"
        config.write_text(settings_toml(settings, api_port=port) + BREAKER)
        env = os.environ | {"NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": rgw_faults.secret_key}

        await asyncio.to_thread(alertmanager.set_webhook, hook.url)
        await asyncio.to_thread(prometheus.set_alerting, [rules], [alertmanager.address])
        await asyncio.to_thread(prometheus.set_scrape_targets, [f"127.0.0.1:{port}"], 1)
        try:
            async with netscope_run(config, env, tmp_path / "netscope.log"), load(
                tansu_broker.bootstrap, topic
            ):

                async def rgw_written() -> bool:
                    got = await prometheus.aquery(
                        'sum(netscope_audit_writes_total{job="netscope",target="store"}) > 0'
                    )
                    return bool(got)

                await wait_for(rgw_written, timeout_s=60, what="Prometheus sees RGW written")
                # The clock series reads this host's clock at each scrape (same host here).
                offset = await prometheus.aquery(
                    "abs(netscope_time_seconds - timestamp(netscope_time_seconds))"
                )
                assert offset and float(offset[0]["value"][1]) < 1.0, offset
                healthy = {"NetScopeAuditBacklogGrowing", "NetScopeCircuitOpen"}
                assert not healthy & hook.names("firing"), hook.got

                # --- RGW stopped: the audit backlog alert fires, then resolves -------------
                killed = marks["RGW killed"] = time.time()
                rgw_faults.kill_rgw()
                fired = await notified(
                    hook, "NetScopeAuditBacklogGrowing", "firing", after=killed, timeout_s=60
                )
                assert fired.labels["severity"] == "critical"
                assert fired.labels["instance"] == f"127.0.0.1:{port}"
                assert fired.annotations["runbook_url"].endswith("#inc-02--ceph-rgw-write-errors")
                assert f"127.0.0.1:{port}" in fired.annotations["summary"]
                healed = marks["RGW restarted"] = time.time()
                rgw_faults.start_rgw()  # blocks until signed requests succeed
                await notified(
                    hook, "NetScopeAuditBacklogGrowing", "resolved", after=healed, timeout_s=90
                )
                assert not hook.first("NetScopeCircuitOpen", "firing", after=started)

                # --- the upstream fails every call: the circuit alert fires, then resolves -
                failing = marks["upstream failing"] = time.time()
                sim.config.error_rate = 1.0
                fired = await notified(
                    hook, "NetScopeCircuitOpen", "firing", after=failing, timeout_s=60
                )
                assert fired.labels["upstream"] == "payments"
                assert fired.labels["severity"] == "major"
                assert "payments" in fired.annotations["summary"]
                assert fired.annotations["runbook_url"].endswith(
                    "#inc-03--circuit-breaker-open-for-long"
                )
                recovered = marks["upstream healed"] = time.time()
                sim.config.error_rate = 0.0
                await notified(hook, "NetScopeCircuitOpen", "resolved", after=recovered,
                               timeout_s=60)  # fmt: skip
                assert "NetScopeClockOffset" not in hook.names("firing")
        finally:
            # The timeline, for the log of a failing or slow run: faults, then notifications.
            for what, at in marks.items():
                print(f"{at - started:6.1f} s {what}", file=sys.stderr)
            for n in hook.got:
                print(f"{n.at - started:6.1f} s {n.status:8} {n.labels['alertname']}",
                      file=sys.stderr)  # fmt: skip
            # The Prometheus and Alertmanager fixtures are shared by the session.
            await asyncio.to_thread(prometheus.set_scrape_targets, [], 1)
            await asyncio.to_thread(prometheus.set_alerting, [], [])
            await asyncio.to_thread(alertmanager.set_webhook, None)
