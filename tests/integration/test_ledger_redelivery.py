"""A refused call redelivered after a crash is not made again; a replay of it is.

The fault run's ``redelivery_after_release`` (tests/integration/test_fault_schedule.py): an
instance calls a message's upstream, gets a 429 (an outcome that does not count as done),
releases the key, writes the message's audit record and is SIGKILLed before the offset is
committed. The next instance gets the message again. Before released keys were kept it
called the upstream again (now 200: the side effect happened) while the audit kept the
first record (429), the exactly-once rule dropping the second: the audit misstated what
the upstream did. Now the key is kept ``released`` under the message's position, so the
redelivered message is audited from the ledger and not called; a replay of the window (its
own run, its own ref) calls it again, as releasing means.

The window between a record becoming durable and its offset's commit is milliseconds (the
committer commits on durability), which the fault run hits by chance. Here the first
instance stops and the group's offsets are then rewound to where they were before it:
for the ledger, the audit and the second instance that is exactly what a SIGKILL inside
that window leaves behind.

Real broker (noida: the replay looks offsets up by time), real Ceph RGW, the ledger on
PostgreSQL or the default SQLite file, the upstream simulator counting every
``Idempotency-Key`` it receives, ``netscope run`` and ``netscope replay`` as subprocesses.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from netscope.config import Settings
from netscope.devservices.base import free_port
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import (
    committed_offsets,
    make_traffic,
    produce,
    read_audit,
    settings_for,
    settings_toml,
    terminal_counts,
    toml_table,
    wait_for,
    with_keys,
)
from tests.integration.test_ledger_faults import (
    assert_exactly_once,
    committed_all,
    ledger_options,
)
from tests.integration.test_replay import replay_cli, window_args

pytestmark = pytest.mark.integration

UPSTREAM = "payments"


def run_toml(settings: Settings, *, port: int, ledger: dict[str, Any]) -> str:
    """``netscope run``'s TOML: one attempt per call (the simulator's count is the number of
    calls)."""
    text = settings_toml(settings, api_port=port)
    text = with_keys(text, f"upstreams.{UPSTREAM}", {"deadline_s": 2.0, "read_timeout_s": 1.0})
    text += f"[upstreams.{UPSTREAM}.retry]\nmax_attempts = 1\n"
    return text + toml_table("ledger", ledger)


async def rewind(bootstrap: str, group_id: str, topic: str, ends: dict[int, int]) -> None:
    """Commit offset 0 for every partition of the group (no member is running)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in ends]
        consumer.assign(parts)
        await consumer.commit({tp: 0 for tp in parts})
    finally:
        await consumer.stop()


async def claim_results(http: httpx.AsyncClient) -> dict[str, float]:
    """``netscope_ledger_claims_total`` by result; {} while the process does not answer."""
    try:
        text = (await http.get("/metrics", timeout=2)).text
    except httpx.HTTPError:
        return {}
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "netscope_ledger_claims_total"
    }


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_a_refused_call_redelivered_after_a_crash_is_not_called_again_but_replayed(
    backend: str, request: pytest.FixtureRequest, noida_broker, rgw, rgw_bucket, tmp_path: Path
) -> None:
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgresql" else None
    n = 12
    topic = f"redeliver-{uuid.uuid4().hex[:12]}"
    await noida_broker.create_topic(topic, 4)
    sim_config = SimConfig(latency_ms=2.0, rate_429=1.0, retry_after_s=0.1, seed=5)
    async with UpstreamSim(sim_config, history_size=1_000) as sim:
        settings = settings_for(
            broker=noida_broker, topic=topic, tmp_path=tmp_path, rgw=rgw, bucket=rgw_bucket,
            upstreams={UPSTREAM: sim.url},
        )  # fmt: skip
        traffic = make_traffic(n, upstreams=[UPSTREAM], seed=29)
        keys = {req["idempotency_key"] for *_, req in traffic if req is not None}
        assert len(keys) == n, "every message has a key of its own"
        t0_ms = int(time.time() * 1000) - 1
        ends = await produce(noida_broker.bootstrap, topic, traffic)
        t1_ms = int(time.time() * 1000) + 1

        port = free_port()
        config = tmp_path / "netscope.toml"
        config.write_text(run_toml(settings, port=port, ledger=ledger_options(backend, dsn)))
        env = os.environ | {"NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": rgw.secret_key}
        procs: list[asyncio.subprocess.Process] = []

        async def start(config: Path, log: Path) -> asyncio.subprocess.Process:
            with log.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "netscope", "run", "-c", str(config),
                    env=env, stdout=asyncio.subprocess.DEVNULL, stderr=err,
                )  # fmt: skip
            procs.append(proc)
            return proc

        async def all_audited() -> bool:
            return len(terminal_counts(await read_audit(settings.audit))) == n

        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                first = await start(config, tmp_path / "first.log")
                await wait_for(all_audited, timeout_s=60, what="first instance auditing all")
                await wait_for(
                    lambda: committed_all(
                        noida_broker.bootstrap, settings.kafka.group_id, topic, ends
                    ),
                    timeout_s=30,
                    what="first instance committing",
                )
                assert sim.stats.total == n
                first.send_signal(signal.SIGTERM)
                log = (tmp_path / "first.log").read_text
                assert await asyncio.wait_for(first.wait(), 60) == 0, log()[-3000:]
                # As if it had died before committing: every message will be redelivered.
                await rewind(noida_broker.bootstrap, settings.kafka.group_id, topic, ends)
                committed = await committed_offsets(
                    noida_broker.bootstrap, settings.kafka.group_id, topic
                )
                assert sum(committed.values()) == 0, committed

                sim.config.apply_patch({"rate_429": 0.0})  # a second call would now succeed
                second = await start(config, tmp_path / "second.log")
                await wait_for(
                    lambda: committed_all(
                        noida_broker.bootstrap, settings.kafka.group_id, topic, ends
                    ),
                    timeout_s=90,
                    interval_s=0.5,
                    what="second instance committing the redelivered messages",
                )
                claims = await claim_results(http)
                second.send_signal(signal.SIGTERM)
                log = (tmp_path / "second.log").read_text
                assert await asyncio.wait_for(second.wait(), 60) == 0, log()[-3000:]
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

        # The redelivery called nothing: one call per key, the 429 the audit holds.
        assert sim.stats.total == n, f"redelivered refusals called again: {sim.stats.total}"
        assert set(sim.stats.by_idempotency_key) == keys
        assert claims.get("released_here") == n, claims
        assert claims.get("claimed", 0) == 0, claims
        records = await read_audit(settings.audit)
        assert_exactly_once(records, topic, ends)
        assert {(r["outcome"], r["status"]) for r in records} == {("http_error", 429)}

        # A replay of the window is its own run: every released key is called again.
        summary_path = tmp_path / "summary.json"
        code, _, err = await replay_cli(
            config, rgw.secret_key, *window_args(t0_ms, t1_ms), "--yes",
            "--summary-json", str(summary_path), cwd=tmp_path,
        )  # fmt: skip
        assert code == 0, err[-3000:]
        summary = orjson.loads(summary_path.read_bytes())
        assert summary["total"]["called"] == n, summary["total"]

    assert Counter(sim.stats.by_idempotency_key.values()) == {2: n}
    replayed = [
        r for r in await read_audit(settings.audit) if r["replay_run_id"] == summary["run_id"]
    ]
    assert len(replayed) == n and max(terminal_counts(replayed).values()) == 1
    assert {(r["outcome"], r["status"]) for r in replayed} == {("success", 200)}
    assert not any(r["outcome_from_ledger"] for r in replayed)
