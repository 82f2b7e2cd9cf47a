"""Every query of the Grafana dashboard returns data from a real Prometheus scraping NetScope.

No Grafana server installs here, so this test does what Grafana would: it takes each panel
target, variable and annotation of the checked-in dashboard (deploy/grafana/dashboards/),
fills in the template variables (``$instance`` = the scraped targets, ``$upstream`` = ``.*``,
``$__rate_interval`` = 30s) and runs it as a range query over the test's window against the
session's Prometheus, which scrapes a real ``Service`` (noida broker: a replay needs exact
time lookups) and a real ``netscope replay --metrics-port`` subprocess every second.

The traffic is made so that every series a panel reads exists and moves, not only the ones
exported at 0 from start: a failing upstream (retries, budget denials, breaker transitions),
a hanging one (read timeouts), invalid messages (dead letters), the audit store failing
(degraded mode, spool writes, write errors, drain), a second delivery of the same requests
(duplicates kept by the ledger), a WebSocket client (broadcast delay) and a replay of the
first window (replay progress). A panel passes when its query returns at least one series
with a finite value; the fault panels must also show a value above zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from netscope.devservices.base import free_port
from netscope.service import Service
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import make_traffic, metric, metric_sum, produce, running, settings_for, wait_for

GRAFANA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
if str(GRAFANA_DIR) not in sys.path:  # the generator's package (deploy/ is no package)
    sys.path.append(str(GRAFANA_DIR))

from netscope_grafana.checks import (  # noqa: E402
    PROMETHEUS_SERIES,
    Query,
    panel_metric_names,
    queries,
)
from netscope_grafana.promql import substitute  # noqa: E402

pytestmark = pytest.mark.integration

DASHBOARD = GRAFANA_DIR / "dashboards" / "netscope.json"
RATE_WINDOW = "30s"
UPSTREAMS = ("payments", "flaky", "slow")
# Panel targets whose series only move under a fault: each must go above zero here, which
# proves the traffic exercised them (not just a series exported at 0).
MUST_MOVE = {
    "Breaker transitions (since process start)": "A",
    "Retries and retry-budget denials": "AB",
    "Timeouts by kind (per attempt)": "A",
    "Audit write errors": "A",
    "Spool backlog": "A",
    "Spool backlog age and batches": "AC",
    "Degraded mode, spool full, quarantine": "A",
    "Offset commits and dead letters": "AC",
    "Duplicates kept from the upstream": "A",
    "Replay progress": "A",
    "Replay messages by result": "A",
    "WS broadcast delay (runbook: p99 < 2 s)": "AB",
}


@contextlib.asynccontextmanager
async def sims() -> AsyncIterator[dict[str, UpstreamSim]]:
    configs = {
        "payments": SimConfig(latency_ms=3.0, seed=1),
        "flaky": SimConfig(latency_ms=2.0, error_rate=1.0, seed=2),
        "slow": SimConfig(latency_ms=3.0, hang_rate=0.3, hang_s=5.0, seed=3),
    }
    async with contextlib.AsyncExitStack() as stack:
        yield {n: await stack.enter_async_context(UpstreamSim(c)) for n, c in configs.items()}


def upstream_policy() -> dict[str, Any]:
    """Short timeouts, a small retry budget and a quick breaker: faults show within seconds."""
    return {
        "read_timeout_s": 0.2,
        "deadline_s": 2.0,
        "retry": {"max_attempts": 3, "base_backoff_s": 0.01, "max_backoff_s": 0.05},
        "retry_budget": {"ratio": 0.1, "min_retries_per_s": 0.1, "ttl_s": 30.0},
        "breaker": {
            "minimum_calls": 5, "window_size_calls": 10, "wait_in_open_s": 1.0,
            "permitted_calls_in_half_open": 1,
        },
    }  # fmt: skip


def replay_toml(settings: Any, path: Path) -> Path:
    """The live service's settings as an operator's TOML (local audit store)."""
    k, audit = settings.kafka, settings.audit
    lines = [
        'instance_id = "replay"', "[kafka]",
        f'bootstrap_servers = "{k.bootstrap_servers}"', f'requests_topic = "{k.requests_topic}"',
        f'dead_letter_topic = "{k.dead_letter_topic}"', f'group_id = "{k.group_id}"',
        "[logging]", 'format = "console"',
        "[audit]", 'backend = "local"', "batch_max_delay_s = 0.1",
        "[audit.local]", f'path = "{audit.local.path}"',
        "[audit.spool]", f'path = "{audit.spool.path}"', "free_disk_floor_bytes = 0",
    ]  # fmt: skip
    for name, up in settings.upstreams.items():
        lines += [f"[upstreams.{name}]", f'base_url = "{up.base_url}"', "read_timeout_s = 1.0"]
    path.write_text("\n".join(lines) + "\n")
    return path


async def run_replay(config: Path, port: int, t0_ms: int, t1_ms: int, cwd: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "netscope", "replay", "-c", str(config),
        "--from", str(t0_ms), "--to", str(t1_ms), "--rate", "15", "--yes",
        "--metrics-port", str(port), "--summary-json", str(cwd / "replay.json"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
        env=os.environ | {"COLUMNS": "200"},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


class AuditStoreFault:
    """The local audit store fails: its prefix folder is replaced by a file (ENOTDIR)."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.folder = root / prefix
        self.away = root / f"{prefix}.away"

    def __enter__(self) -> AuditStoreFault:
        self.folder.rename(self.away)
        self.folder.write_bytes(b"")
        return self

    def __exit__(self, *exc: object) -> None:
        self.folder.unlink()
        self.away.rename(self.folder)


def query_range(base_url: str, promql: str, start: float, end: float) -> list[dict[str, Any]]:
    body = urllib.parse.urlencode(
        {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}
    ).encode()
    request = urllib.request.Request(f"{base_url}/api/v1/query_range", data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        doc = json.loads(exc.read())
    if doc.get("status") != "success":
        raise AssertionError(f"{promql!r}: {doc.get('errorType')}: {doc.get('error')}")
    return list(doc["data"]["result"])


def metric_names_scraped(base_url: str, instances: str, start: float, end: float) -> set[str]:
    query = urllib.parse.urlencode(
        {"match[]": f'{{instance=~"{instances}"}}', "start": f"{start:.3f}", "end": f"{end:.3f}"}
    )
    with urllib.request.urlopen(f"{base_url}/api/v1/label/__name__/values?{query}") as resp:
        return set(json.loads(resp.read())["data"])


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    return [v for s in result for _, raw in s["values"] if math.isfinite(v := float(raw))]


async def test_every_dashboard_query_returns_data_from_prometheus_scraping_netscope(
    noida_broker, prometheus, tmp_path: Path
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    topic = f"grafana-{uuid.uuid4().hex[:10]}"
    await noida_broker.create_topic(topic, 4)
    t_start = time.time()
    async with sims() as upstreams:
        settings = settings_for(
            broker=noida_broker, topic=topic, tmp_path=tmp_path,
            upstreams={n: s.url for n, s in upstreams.items()},
            upstream_overrides=upstream_policy(), group_id=f"g-{uuid.uuid4().hex[:8]}",
            audit={"spool": {"path": tmp_path / "spool", "free_disk_floor_bytes": 0,
                             "drain_max_backoff_s": 1.0}},
        )  # fmt: skip
        replay_port = free_port()
        async with running(Service(settings)) as service, aiohttp.ClientSession() as http:
            live = service.base_url.removeprefix("http://")
            replay = f"127.0.0.1:{replay_port}"
            prometheus.set_scrape_targets([live, replay], interval_s=1)
            await asyncio.to_thread(
                prometheus.wait_for, f'up{{instance="{live}"}} == 1', bool, 30.0
            )
            ws = await http.ws_connect(f"{service.base_url}/ws/events")
            reader = asyncio.create_task(_drain(ws))
            try:
                await _traffic(service, settings, upstreams, tmp_path, replay_port)
                await asyncio.sleep(3)  # the last figures scraped
            finally:
                reader.cancel()
                await ws.close()
    t_end = time.time()

    values = {"instance": f"{live}|{replay}", "upstream": ".*", "__rate_interval": RATE_WINDOW}
    empty, flat, errors = [], [], []
    for q in queries(dashboard):
        promql = substitute(q.expr, values)
        try:
            result = await asyncio.to_thread(query_range, prometheus.url, promql, t_start, t_end)
        except AssertionError as exc:
            errors.append(f"{q.where}: {exc}")
            continue
        if q.kind == "annotation":
            continue  # Prometheus answered; ALERTS exists only while a rule fires (no rules here)
        if q.kind == "variable":
            found = {s["metric"].get(q.label or "") for s in result}
            expected = {live, replay} if q.label == "instance" else set(UPSTREAMS)
            if not expected <= found:
                empty.append(f"{q.where}: {sorted(expected - found)} missing from {found}")
            continue
        numbers = finite_values(result)
        if not numbers:
            empty.append(f"{q.where}: {promql}")
        elif _must_move(q) and max(numbers) <= 0:
            flat.append(f"{q.where}: always 0")
    # No unknown metric: every series the dashboard reads was scraped from these targets.
    scraped = await asyncio.to_thread(
        metric_names_scraped, prometheus.url, values["instance"], t_start, t_end
    )
    unknown = panel_metric_names(dashboard, values) - PROMETHEUS_SERIES - scraped
    assert not unknown, f"read by the dashboard, never scraped: {sorted(unknown)}"
    assert not errors, "queries Prometheus refused:\n" + "\n".join(errors)
    assert not empty, "queries with no data:\n" + "\n".join(empty)
    assert not flat, "fault series that never moved:\n" + "\n".join(flat)


def _must_move(q: Query) -> bool:
    for title, refs in MUST_MOVE.items():
        if f"{title!r}" in q.where and q.where.rsplit(" ", 1)[-1] in refs:
            return True
    return False


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


async def _traffic(
    service: Service,
    settings: Any,
    upstreams: dict[str, UpstreamSim],
    tmp_path: Path,
    replay_port: int,
) -> None:
    bootstrap, topic = settings.kafka.bootstrap_servers, settings.kafka.requests_topic

    async def all_done(n: int) -> None:
        await wait_for(
            lambda: metric_sum(service, "netscope_requests_total") >= n,
            timeout_s=60, what=f"{n} messages at a terminal outcome",
        )  # fmt: skip

    # 1. Every upstream, invalid messages among them: breaker, retries, timeouts, DLQ.
    first = make_traffic(60, upstreams=list(UPSTREAMS), invalid_every=10, seed=5, keys=1000)
    t0_ms = int(time.time() * 1000) - 1
    await produce(bootstrap, topic, first)
    t1_ms = int(time.time() * 1000) + 1
    await all_done(len(first))

    # 2. The audit store fails: batches go to the spool, then drain once it is back.
    with AuditStoreFault(settings.audit.local.path, settings.audit.prefix):
        await produce(bootstrap, topic, make_traffic(20, upstreams=["payments"], seed=6))
        await wait_for(
            lambda: metric(service, "netscope_audit_writes_total",
                           {"target": "spool", "result": "created"}) > 0,
            timeout_s=30, what="a batch written to the spool",
        )  # fmt: skip
        await asyncio.sleep(3)  # degraded mode and the backlog scraped
    await wait_for(
        lambda: metric(service, "netscope_audit_spool_drained_total") > 0,
        timeout_s=60, what="the spool drained to the store",
    )  # fmt: skip

    # 3. The failing upstream heals; the first window is delivered again (duplicates).
    upstreams["flaky"].config.error_rate = 0.0
    await asyncio.sleep(1.5)  # past wait_in_open_s: the next call is a half-open probe
    await produce(bootstrap, topic, first)
    await all_done(2 * len(first) + 20)

    # 4. A replay of the first window, scraped while it runs.
    config = replay_toml(settings, tmp_path / "replay.toml")
    await run_replay(config, replay_port, t0_ms, t1_ms, tmp_path)
