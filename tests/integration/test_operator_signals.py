"""Signals an on-call engineer reads, on real brokers: lag, readiness, and bounded stops.

Each test here failed on the code before the pipeline was cut into stages (issue 10): lag was
only exported after this process's first commit, an assignment kept /health/ready at 200 after
the broker was gone, an idle instance of a group was "not ready", and SIGTERM with the store
down and the spool full never returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from netscope.devservices.base import free_port
from netscope.devservices.kafka import BrokerConfig, TansuBroker
from netscope.service import EXIT_FORCED, EXIT_UNCLEAN, Service
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import make_traffic, metric, produce, running, settings_for, wait_for

pytestmark = pytest.mark.integration


async def ready(service: Service) -> tuple[int, dict]:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
        resp = await client.get("/health/ready")
        return resp.status_code, resp.json()


@pytest.mark.broker_features("exact_end_offsets")  # tansu under-reports ListOffsets
async def test_lag_is_known_before_the_first_commit_and_while_paused(
    kafka_broker, topic, tmp_path: Path
) -> None:
    ends = await produce(kafka_broker.bootstrap, topic, make_traffic(40, upstreams=["payments"]))
    settings = settings_for(
        broker=kafka_broker,
        topic=topic,
        tmp_path=tmp_path,
        upstreams={"payments": "http://127.0.0.1:9"},
        pipeline={"start_paused": True},
    )
    async with running(Service(settings)) as service:

        def lag_by_partition() -> dict[int, float | None]:
            return {
                p: metric(service, "netscope_consumer_lag", {"topic": topic, "partition": str(p)})
                for p in ends
            }

        await wait_for(
            lambda: lag_by_partition() == {p: float(end) for p, end in ends.items()},
            timeout_s=60,
            what="lag = backlog on every partition, with nothing committed and ingest paused",
        )
        assert service.pipeline.paused_reason == "throttle"
        assert service.pipeline.status().kafka.total_lag == 40


async def test_ready_turns_503_when_the_broker_goes_away_after_assignment(tmp_path: Path) -> None:
    broker = TansuBroker(BrokerConfig(data_dir=tmp_path / "broker", port=free_port()))
    await asyncio.to_thread(broker.up)
    try:
        await broker.create_topic("gone", 2)
        settings = settings_for(
            broker=broker,
            topic="gone",
            tmp_path=tmp_path,
            upstreams={"payments": "http://127.0.0.1:9"},
        )
        service = Service(settings)
        async with running(service):

            async def is_ready() -> bool:
                return (await ready(service))[0] == 200

            await wait_for(is_ready, timeout_s=60, what="ready with an assignment")
            assert service.pipeline.status().kafka.assigned
            await asyncio.to_thread(broker.down)

            async def kafka_failing() -> bool:
                code, body = await ready(service)
                return code == 503 and body["failing"] == ["kafka"]

            await wait_for(kafka_failing, timeout_s=30, what="503 naming kafka")
            assert service.pipeline.status().kafka.assigned, "aiokafka still holds it"
            t0 = time.monotonic()
        # The stop with the broker gone is bounded too (each closing step has a timeout).
        assert time.monotonic() - t0 < 60
    finally:
        await asyncio.to_thread(broker.down)


async def test_an_instance_with_no_partition_is_ready_and_says_so(
    tansu_broker, tmp_path: Path
) -> None:
    topic = f"one-partition-{os.getpid()}"
    await tansu_broker.create_topic(topic, 1)

    def settings(name: str):
        return settings_for(
            broker=tansu_broker,
            topic=topic,
            tmp_path=tmp_path / name,
            upstreams={"payments": "http://127.0.0.1:9"},
            group_id=f"idle-{os.getpid()}",
        )

    async with running(Service(settings("a"))) as a, running(Service(settings("b"))) as b:

        async def one_idle_both_ready() -> bool:
            answers = [await ready(a), await ready(b)]
            assigned = sorted(body["checks"]["kafka"]["assigned_partitions"] for _, body in answers)
            return all(code == 200 for code, _ in answers) and assigned == [0, 1]

        await wait_for(one_idle_both_ready, timeout_s=90, interval_s=0.5, what="1 + 0 partitions")
        idle = next(s for s in (a, b) if not s.pipeline.status().kafka.assigned)
        _, body = await ready(idle)
        assert "no partition assigned" in body["checks"]["kafka"]["detail"]


# -- bounded stops of a real `netscope run` ---------------------------------------------------


def write_config(
    path: Path,
    *,
    bootstrap: str,
    topic: str,
    upstream: str,
    audit: str,
    pipeline: str = "",
    deadline_s: float = 5.0,
) -> Path:
    path.write_text(
        "\n".join(
            [
                'instance_id = "stop-test"',
                "[kafka]",
                f'bootstrap_servers = "{bootstrap}"',
                f'requests_topic = "{topic}"',
                f'dead_letter_topic = "{topic}.dlq"',
                f'group_id = "{topic}"',
                "session_timeout_s = 6",
                "[pipeline]",
                pipeline,
                "[api]",
                "port = 0",
                "[logging]",
                'level = "warning"',
                'format = "console"',
                audit,
                "[upstreams.payments]",
                f'base_url = "{upstream}"',
                f"deadline_s = {deadline_s}",
                f"read_timeout_s = {deadline_s - 1}",
                "[upstreams.payments.retry]",
                "max_attempts = 1",
            ]
        )
        + "\n"
    )
    return path


async def start_netscope(config: Path, env: dict[str, str] | None = None):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "netscope", "run", "-c", str(config),
        env=os.environ | (env or {}),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )


async def stop_and_time(proc, signals: int = 1, gap_s: float = 0.0) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    if signals > 1:
        await asyncio.sleep(gap_s)  # the operator's second Ctrl-C, some time after the first
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, err.decode(), time.monotonic() - t0


async def test_sigterm_with_the_store_down_and_the_spool_full_exits_3_within_the_bound(
    tansu_broker, tmp_path: Path
) -> None:
    topic = f"stuck-audit-{os.getpid()}"
    await tansu_broker.create_topic(topic, 2)
    await produce(tansu_broker.bootstrap, topic, make_traffic(30, upstreams=["payments"]))
    dead_store = f"http://127.0.0.1:{free_port()}"  # nothing listens: every PUT fails
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim:
        config = write_config(
            tmp_path / "netscope.toml",
            bootstrap=tansu_broker.bootstrap,
            topic=topic,
            upstream=sim.url,
            pipeline="drain_timeout_s = 2.0\nflush_timeout_s = 2.0",
            audit="\n".join(
                [
                    "[audit]",
                    'backend = "s3"',
                    "batch_max_delay_s = 0.1",
                    "write_timeout_s = 1.0",
                    "[audit.s3]",
                    f'endpoint = "{dead_store}"',
                    'bucket = "nowhere"',
                    'access_key_id = "test"',
                    "[audit.spool]",
                    f'path = "{tmp_path / "spool"}"',
                    "free_disk_floor_bytes = 1152921504606846976",  # 1 EiB: the spool is full
                ]
            ),
        )
        proc = await start_netscope(config, {"NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": "x"})
        await wait_for(lambda: sim.stats.total >= 30, timeout_s=60, what="the 30 calls")
        code, log, took = await stop_and_time(proc)
    # drain_timeout_s + flush_timeout_s + 4 closing steps of at most 5 s, and start-up slack.
    assert code == EXIT_UNCLEAN, log[-3000:]
    assert took < 2 + 2 + 4 * 5 + 5, f"stop took {took:.1f}s"
    assert "netscope stopped (exit 3)" in log and "audit_pending=30" in log
    assert "will be redelivered" in log


@contextlib.asynccontextmanager
async def netscope_with_a_hanging_call(broker, tmp_path: Path, name: str, pipeline: str):
    """A `netscope run` (local audit) with at least one call hanging at the upstream."""
    topic = f"{name}-{os.getpid()}"
    await broker.create_topic(topic, 2)
    await produce(broker.bootstrap, topic, make_traffic(5, upstreams=["payments"]))
    async with UpstreamSim(SimConfig(latency_ms=1.0, hang_rate=1.0, hang_s=60.0)) as sim:
        config = write_config(
            tmp_path / "netscope.toml",
            bootstrap=broker.bootstrap,
            topic=topic,
            upstream=sim.url,
            pipeline=pipeline,
            audit=f'[audit]\nbackend = "local"\n[audit.local]\npath = "{tmp_path / "audit"}"\n'
            f'[audit.spool]\npath = "{tmp_path / "spool"}"\nfree_disk_floor_bytes = 0',
            deadline_s=30.0,
        )
        proc = await start_netscope(config)
        try:
            await wait_for(lambda: sim.stats.in_flight >= 1, timeout_s=60, what="a hanging call")
            yield proc
        finally:
            if proc.returncode is None:  # the test failed before stopping it
                proc.kill()
                await proc.wait()


async def test_the_drain_timeout_abandons_calls_still_in_flight_and_exits_3(
    tansu_broker, tmp_path: Path
) -> None:
    pipeline = "drain_timeout_s = 1.0\nflush_timeout_s = 2.0"
    async with netscope_with_a_hanging_call(tansu_broker, tmp_path, "slow", pipeline) as proc:
        code, log, took = await stop_and_time(proc)
    assert code == EXIT_UNCLEAN, log[-3000:]
    assert took < 1 + 2 + 4 * 5 + 5, f"stop took {took:.1f}s"
    assert "abandoned_in_flight=0" not in log and "netscope stopped (exit 3)" in log


async def test_a_second_signal_forces_exit_130_at_once(tansu_broker, tmp_path: Path) -> None:
    pipeline = "drain_timeout_s = 60.0"
    async with netscope_with_a_hanging_call(tansu_broker, tmp_path, "forced", pipeline) as proc:
        code, log, took = await stop_and_time(proc, signals=2, gap_s=0.5)
    assert code == EXIT_FORCED, log[-3000:]
    assert took < 10, f"forced exit took {took:.1f}s"
    assert "second signal: forced exit 130" in log


async def test_sigusr1_logs_where_each_task_waits_and_changes_nothing(
    tansu_broker, tmp_path: Path
) -> None:
    """`kill -USR1`: the evidence for a stall, without stopping it; SIGTERM then stops."""
    pipeline = "drain_timeout_s = 1.0\nflush_timeout_s = 2.0"
    async with netscope_with_a_hanging_call(tansu_broker, tmp_path, "usr1", pipeline) as proc:
        proc.send_signal(signal.SIGUSR1)
        seen: list[str] = []
        async with asyncio.timeout(30):
            while not any("SIGUSR1: running; tasks:" in line for line in seen):
                line = (await proc.stderr.readline()).decode(errors="replace")
                assert line, "exited after SIGUSR1:\n" + "".join(seen)[-3000:]
                seen.append(line)
        code, log, _ = await stop_and_time(proc)
    dump = "".join(seen) + log
    assert "fetch-loop" in dump, dump[-3000:]  # every task, each with where it waits
    assert code == EXIT_UNCLEAN and "netscope stopped (exit 3)" in log, log[-3000:]
