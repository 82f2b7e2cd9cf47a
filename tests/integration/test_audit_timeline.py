"""``netscope audit timeline`` on a real RGW: a request's attempts come back exactly as the
upstream saw them, in order, and the breaker's control events of that upstream around them."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from netscope.cli import app
from netscope.service import Service
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import make_traffic, produce, read_audit, running, settings_for, wait_for

runner = CliRunner()


async def test_a_requests_timeline_is_what_the_upstream_saw(
    tansu_broker, rgw, rgw_bucket, tmp_path: Path, monkeypatch
) -> None:
    topic = f"timeline-{uuid.uuid4().hex[:10]}"
    await tansu_broker.create_topic(topic, 2)
    n = 200
    # A third of the answers are 503: retried (3 attempts at most), some end in http_error.
    async with UpstreamSim(SimConfig(latency_ms=2.0, error_rate=0.3, seed=3),
                           history_size=10_000) as sim:  # fmt: skip
        settings = settings_for(
            broker=tansu_broker, topic=topic, tmp_path=tmp_path, rgw=rgw, bucket=rgw_bucket,
            upstreams={"payments": sim.url},
            upstream_overrides={
                "retry": {"base_backoff_s": 0.01, "max_backoff_s": 0.02},
                "retry_budget": {"ratio": 1.0},
                "breaker": {"enabled": False},
            },
        )  # fmt: skip
        await produce(tansu_broker.bootstrap, topic, make_traffic(n, upstreams=["payments"]))
        async with running(Service(settings)) as service:
            await wait_for(lambda: service.pipeline.processed >= n, timeout_s=60,
                           what="every message handled")  # fmt: skip
        sim_total = sim.stats.total
        seen: dict[str, list[int]] = defaultdict(list)  # what the upstream answered, per key
        for entry in sim.stats.recent:
            seen[entry["headers"]["idempotency-key"]].append(entry["status"])

    records = await read_audit(settings.audit)
    retried = [r for r in records if len(r["attempts"]) >= 2]
    assert retried, "the 503s should have caused retries"
    record = retried[0]
    event_ms = record["kafka"]["timestamp_ms"]
    monkeypatch.setenv("NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY", rgw.secret_key)
    config = tmp_path / "netscope.toml"
    config.write_text("\n".join([
        "[audit]", 'backend = "s3"', "[audit.s3]", f'endpoint = "{rgw.endpoint}"',
        f'bucket = "{rgw_bucket}"', f'region = "{rgw.region}"',
        f'access_key_id = "{rgw.access_key}"', "",
    ]))  # fmt: skip
    # The CLI runs its own event loop: in a thread, as from a shell beside this test's loop.
    result = await asyncio.to_thread(runner.invoke, app, [
        "audit", "timeline", "-c", str(config), "--request-id", record["request_id"],
        "--from", str(event_ms - 3_600_000), "--to", str(event_ms + 3_600_000), "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = orjson.loads(result.stdout)

    calls = [r for r in rows if r["kind"] == "call"]
    attempts = [r for r in rows if r["kind"] == "attempt"]
    assert [c["request_id"] for c in calls] == [record["request_id"]]
    assert calls[0]["what"] == record["outcome"]
    # Exactly the attempts the upstream logged for that request, in order.
    assert [a["status"] for a in attempts] == seen[record["idempotency_key"]]
    assert [a["what"] for a in attempts] == [f"attempt {i + 1}" for i in range(len(attempts))]
    times = [r["at"] for r in rows]
    assert times == sorted(times)
    # Control events of the same period are interleaved: at least this instance's start.
    control = [r for r in rows if r["kind"] == "control"]
    assert any(r["what"] == "instance_started" for r in control), control
    assert all(r["run"] == "live" for r in rows)

    # The same period's breakdown agrees with the records, group by group.
    result = await asyncio.to_thread(runner.invoke, app, [
        "audit", "errors", "-c", str(config), "--json",
        "--from", str(event_ms - 3_600_000), "--to", str(event_ms + 3_600_000),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["calls"] == n
    expected: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in records:
        expected[(r["upstream"], r["outcome"], str(r["status"] or r["error_class"]))] += 1
    got = {(g["upstream"], g["outcome"], g["cause"]): g["count"]
           for g in report["by_upstream_outcome_cause"]}  # fmt: skip
    assert got == expected
    assert report["retries"]["payments"] == sum(len(r["attempts"]) - 1 for r in records)
    assert report["attempts"]["payments"] == sim_total
    assert report["most_attempts"][0]["attempts"] == max(len(r["attempts"]) for r in records)
