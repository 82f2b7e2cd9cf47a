"""``netscope replay`` end to end: real broker (noida: exact time lookups), real RGW, the real
ledger (SQLite, or a shared PostgreSQL), the upstream simulator counting every key it sees.

The replay runs as operators run it: the CLI in a subprocess, with the service's TOML and the
S3 secret in the environment. Waiting is a poll with a deadline on what users observe.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from netscope.config import Settings
from netscope.devservices.base import free_port
from netscope.service import Service
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import (
    committed_offsets,
    make_traffic,
    produce,
    read_audit,
    running,
    settings_for,
    settings_toml,
    terminal_counts,
    wait_for,
)


async def new_topic(broker: Any) -> str:
    name = f"replay-{uuid.uuid4().hex[:12]}"
    await broker.create_topic(name, 4)
    return name


def write_config(settings: Settings, path: Path, ledger: dict[str, str] | None = None) -> Path:
    text = settings_toml(settings)
    if ledger:
        text += "[ledger]\n" + "".join(f'{k} = "{v}"\n' for k, v in ledger.items())
    path.write_text(text)
    return path


async def replay_cli(
    config: Path, secret: str, *args: str, cwd: Path
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "netscope", "replay", "-c", str(config), *args,
        env=os.environ | {"NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": secret, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def process_live(settings: Settings, topic: str, ends: dict[int, int]) -> None:
    """Run the live service until every produced message is committed."""
    async with running(Service(settings)):
        await wait_for(
            lambda: _committed_all(settings, topic, ends),
            timeout_s=90,
            what="live service committing every message",
        )


async def _committed_all(settings: Settings, topic: str, ends: dict[int, int]) -> bool:
    committed = await committed_offsets(
        settings.kafka.bootstrap_servers, settings.kafka.group_id, topic
    )
    return all(committed.get(p, 0) >= end for p, end in ends.items())


async def scrape(port: int) -> dict[str, float]:
    """The replay's progress series, summed over partitions; {} while it does not answer."""
    try:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "netscope_replay_messages_total":
                result = sample.labels["result"]
                out[result] = out.get(result, 0.0) + sample.value
            elif sample.name == "netscope_replay_rate_limit_per_second":
                out["rate_limit"] = sample.value
    return out


def window_args(t0_ms: int, t1_ms: int) -> list[str]:
    return ["--from", str(t0_ms), "--to", str(t1_ms)]


async def test_a_replayed_window_calls_nothing_twice_paces_and_audits_each_as_duplicate(
    noida_broker, rgw, rgw_bucket, tmp_path: Path
) -> None:
    n = 120
    topic = await new_topic(noida_broker)
    async with UpstreamSim(SimConfig(latency_ms=2.0), history_size=10_000) as sim:
        settings = settings_for(
            broker=noida_broker, topic=topic, tmp_path=tmp_path, rgw=rgw, bucket=rgw_bucket,
            upstreams={"payments": sim.url, "search": sim.url},
        )  # fmt: skip
        t0_ms = int(time.time() * 1000) - 1
        ends = await produce(
            noida_broker.bootstrap, topic, make_traffic(n, upstreams=["payments", "search"])
        )
        t1_ms = int(time.time() * 1000) + 1
        await process_live(settings, topic, ends)
        assert sim.stats.total == n
        config = write_config(settings, tmp_path / "netscope.toml")

        # The dry run reads the window and says the ledger holds every key: nothing called.
        code, out, err = await replay_cli(
            config, rgw.secret_key, *window_args(t0_ms, t1_ms), "--dry-run", cwd=tmp_path
        )
        assert code == 0, err
        assert f"ledger: {n} of {n} keys already completed" in out + err
        assert sim.stats.total == n

        rate = 40.0
        summary_path = tmp_path / "summary.json"
        port = free_port()
        replay = asyncio.create_task(
            replay_cli(
                config, rgw.secret_key, *window_args(t0_ms, t1_ms), "--rate", str(rate), "--yes",
                "--summary-json", str(summary_path), "--metrics-port", str(port), cwd=tmp_path,
            )
        )
        # While it runs, its progress is scrapeable like the live service's.
        seen: dict[str, float] = {}

        async def replay_progress_scraped() -> bool:
            seen.update(await scrape(port))
            return seen.get("read", 0) > 0 or replay.done()

        await wait_for(replay_progress_scraped, timeout_s=60, what="replay metrics")
        code, out, err = await replay
        assert code == 0, err
        assert seen.get("read", 0) > 0, f"no progress scraped while replaying: {seen}"
        assert seen["rate_limit"] == rate
        summary = orjson.loads(summary_path.read_bytes())
        assert summary["clean"] and summary["total"]["read"] == n
        assert summary["total"]["skipped"] == n and summary["total"]["called"] == 0

    # Exactly one call per key over live + replay.
    assert sim.stats.total == n
    assert max(sim.stats.by_idempotency_key.values()) == 1

    records = await read_audit(settings.audit)
    live = [r for r in records if r["replay_run_id"] is None]
    replayed = [r for r in records if r["replay_run_id"] == summary["run_id"]]
    assert len(live) == n and max(terminal_counts(live).values()) == 1
    assert len(replayed) == n and max(terminal_counts(replayed).values()) == 1
    assert {r["outcome"] for r in replayed} == {"duplicate_skipped"}
    by_position = {(r["kafka"]["partition"], r["kafka"]["offset"]): r for r in live}
    for r in replayed:
        original = by_position[(r["kafka"]["partition"], r["kafka"]["offset"])]
        assert r["duplicate_of"] == f"{topic}/{r['kafka']['partition']}/{r['kafka']['offset']}"
        assert r["request_id"] == original["request_id"]

    # The pace held: the replay took its messages at the set rate, within 10 %.
    taken = sorted(r["received_at"] for r in replayed)
    achieved = (len(taken) - 1) / (taken[-1] - taken[0])
    assert abs(achieved - rate) / rate <= 0.10, f"replayed at {achieved:.1f}/s, asked {rate}"


async def test_two_replays_sharing_postgresql_at_once_call_each_key_once(
    noida_broker, rgw, rgw_bucket, postgres_dsn: str, tmp_path: Path
) -> None:
    """Nothing processed this window before: both replays race for every key."""
    n = 150
    topic = await new_topic(noida_broker)
    async with UpstreamSim(SimConfig(latency_ms=20.0), history_size=10_000) as sim:
        settings = settings_for(
            broker=noida_broker, topic=topic, tmp_path=tmp_path, rgw=rgw, bucket=rgw_bucket,
            upstreams={"payments": sim.url},
        )  # fmt: skip
        t0_ms = int(time.time() * 1000) - 1
        await produce(noida_broker.bootstrap, topic, make_traffic(n, upstreams=["payments"]))
        t1_ms = int(time.time() * 1000) + 1
        ledger = {"backend": "postgresql", "dsn": postgres_dsn}
        runs = []
        for name in ("a", "b"):
            # Two hosts: each its own spool folder; one shared ledger.
            host = tmp_path / name
            host.mkdir()
            cfg = settings.model_copy(
                update={
                    "audit": settings.audit.model_copy(
                        update={
                            "spool": settings.audit.spool.model_copy(
                                update={"path": host / "spool"}
                            )
                        }
                    )
                }
            )
            config = write_config(cfg, host / "netscope.toml", ledger)
            runs.append(
                replay_cli(
                    config, rgw.secret_key, *window_args(t0_ms, t1_ms), "--yes",
                    "--summary-json", str(host / "summary.json"), cwd=host,
                )
            )
        results = await asyncio.gather(*runs)
        for code, _, err in results:
            assert code == 0, err

    assert sim.stats.total == n, f"{sim.stats.total} calls for {n} keys"
    assert max(sim.stats.by_idempotency_key.values()) == 1
    summaries = [orjson.loads((tmp_path / h / "summary.json").read_bytes()) for h in "ab"]
    assert sum(s["total"]["called"] for s in summaries) == n
    records = await read_audit(settings.audit)
    for s in summaries:
        mine = [r for r in records if r["replay_run_id"] == s["run_id"]]
        assert len(mine) == n and max(terminal_counts(mine).values()) == 1
        assert {r["outcome"] for r in mine} <= {"success", "duplicate_skipped"}


async def test_replay_on_a_broker_without_time_lookups_refuses_clearly(
    tansu_broker, tmp_path: Path
) -> None:
    topic = await new_topic(tansu_broker)
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim:
        t0_ms = int(time.time() * 1000) - 3_600_000
        await produce(tansu_broker.bootstrap, topic, make_traffic(40, upstreams=["payments"]))
        text = "\n".join(
            [
                "[kafka]",
                f'bootstrap_servers = "{tansu_broker.bootstrap}"',
                f'requests_topic = "{topic}"',
                "[audit.spool]",
                f'path = "{tmp_path / "spool"}"',
                "[upstreams.payments]",
                f'base_url = "{sim.url}"',
            ]
        )
        config = tmp_path / "netscope.toml"
        config.write_text(text + "\n")
        code, out, err = await replay_cli(
            config, "unused", *window_args(t0_ms, t0_ms + 1_800_000), "--yes", cwd=tmp_path
        )
        assert sim.stats.total == 0
    assert code == 1, out + err
    assert "cannot replay a time window" in out + err
    assert "a time-window replay needs" in out + err  # says why, and what would work
