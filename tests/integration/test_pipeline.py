"""The main job end to end on real brokers (tansu and noida) and a real Ceph RGW."""

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
import pytest
from aiokafka import TopicPartition

from netscope.contract.records import DLQ_FIELD, DLQ_REASON, DLQ_SOURCE
from netscope.service import Service
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import (
    committed_offsets,
    make_traffic,
    metric,
    produce,
    read_audit,
    read_topic,
    running,
    settings_for,
    settings_toml,
    terminal_counts,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def sim():
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as s:
        yield s


def committed_to_end(service: Service, ends: dict[int, int]) -> bool:
    topic = service.settings.kafka.requests_topic
    committed = service.pipeline.committer.committed
    return all(committed.get(TopicPartition(topic, p)) == end for p, end in ends.items())


async def test_10k_messages_each_audited_once_invalid_dead_lettered(
    kafka_broker, topic, rgw, rgw_bucket, sim, tmp_path: Path
):
    settings = settings_for(
        broker=kafka_broker,
        topic=topic,
        tmp_path=tmp_path,
        rgw=rgw,
        bucket=rgw_bucket,
        upstreams={"payments": sim.url, "search": sim.url},
    )
    traffic = make_traffic(10_000, upstreams=["payments", "search"], invalid_every=50)
    invalid = sum(1 for *_, req in traffic if req is None)
    ends = await produce(kafka_broker.bootstrap, topic, traffic)

    async with running(Service(settings)) as service:
        await wait_for(
            lambda: committed_to_end(service, ends), timeout_s=180, what="offsets committed"
        )
    summary = service.summary
    assert summary.clean, summary

    records = await read_audit(settings.audit)
    counts = terminal_counts(records)
    assert len(counts) == 10_000, "every consumed message has a terminal record"
    assert set(counts.values()) == {1}, "and only one"
    by_request = Counter(r["request_id"] for r in records if r["outcome"] != "invalid")
    expected_ids = {req["request_id"] for *_, req in traffic if req is not None}
    assert set(by_request) == expected_ids
    assert set(by_request.values()) == {1}
    assert Counter(r["outcome"] for r in records)["invalid"] == invalid
    assert all(r["trace_id"] and len(r["trace_id"]) == 32 for r in records)

    dlq = await read_topic(kafka_broker.bootstrap, f"{topic}.dlq", invalid)
    assert len(dlq) == invalid
    for msg in dlq:
        headers = dict(msg.headers)
        assert headers[DLQ_REASON] and headers[DLQ_FIELD]
        assert headers[DLQ_SOURCE].decode().startswith(f"{topic}/")

    assert await committed_offsets(kafka_broker.bootstrap, settings.kafka.group_id, topic) == ends
    assert sim.stats.total >= 10_000 - invalid


async def test_ready_names_rgw_while_it_is_down(
    tansu_broker, rgw_faults, rgw_bucket, sim, tmp_path: Path
):
    topic = f"ready-{os.getpid()}"
    await tansu_broker.create_topic(topic, 4)
    settings = settings_for(
        broker=tansu_broker,
        topic=topic,
        tmp_path=tmp_path,
        rgw=rgw_faults,
        bucket=rgw_bucket,
        upstreams={"payments": sim.url},
    )
    async with (
        running(Service(settings)) as service,
        httpx.AsyncClient(base_url=service.base_url) as http,
    ):

        async def status() -> int:
            return (await http.get("/health/ready")).status_code

        await wait_for(lambda: _eq(status(), 200), timeout_s=30, what="ready 200")
        assert (await http.get("/health/live")).status_code == 200
        rgw_faults.kill_rgw()
        await wait_for(lambda: _eq(status(), 503), timeout_s=15, what="ready 503")
        body = (await http.get("/health/ready")).json()
        assert "audit_store" in body["failing"]
        assert body["checks"]["kafka"]["ok"] is True
        rgw_faults.start_rgw()
        await wait_for(lambda: _eq(status(), 200), timeout_s=30, what="ready 200 again")


async def _eq(coro: Any, value: Any) -> bool:
    return (await coro) == value


async def test_sigterm_mid_stream_then_restart_no_loss_no_duplicate(
    kafka_broker, topic, rgw, rgw_bucket, tmp_path: Path
):
    """A real `netscope run` process, stopped by SIGTERM halfway and started again."""
    async with UpstreamSim(SimConfig(latency_ms=5.0)) as sim:
        settings = settings_for(
            broker=kafka_broker,
            topic=topic,
            tmp_path=tmp_path,
            rgw=rgw,
            bucket=rgw_bucket,
            upstreams={"payments": sim.url},
        )
        config = tmp_path / "netscope.toml"
        config.write_text(settings_toml(settings))
        traffic = make_traffic(3000, upstreams=["payments"], invalid_every=100)
        ends = await produce(kafka_broker.bootstrap, topic, traffic)
        env = os.environ | {
            "NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": rgw.secret_key,
        }
        cmd = [sys.executable, "-m", "netscope", "run", "-c", str(config)]

        first = await asyncio.create_subprocess_exec(*cmd, env=env, stderr=asyncio.subprocess.PIPE)
        await wait_for(lambda: sim.stats.total >= 800, timeout_s=60, what="first half")
        first.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(first.communicate(), 60)
        assert first.returncode == 0, err.decode()[-2000:]
        assert b"netscope stopped" in err
        mid = await committed_offsets(kafka_broker.bootstrap, settings.kafka.group_id, topic)
        assert sum(mid.values()) < sum(ends.values()), "the stop really happened mid-stream"

        second = await asyncio.create_subprocess_exec(*cmd, env=env, stderr=asyncio.subprocess.PIPE)
        try:

            async def done() -> bool:
                got = await committed_offsets(
                    kafka_broker.bootstrap, settings.kafka.group_id, topic
                )
                return got == ends

            await wait_for(done, timeout_s=120, interval_s=0.5, what="all committed")
        finally:
            second.send_signal(signal.SIGTERM)
            _, err2 = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 0, err2.decode()[-2000:]

    counts = terminal_counts(await read_audit(settings.audit))
    assert len(counts) == 3000
    assert set(counts.values()) == {1}


async def test_keyless_messages_are_each_called_and_audited_once(
    tansu_broker, sim, tmp_path: Path
) -> None:
    """Producers that do not partition by key send key=None: nothing to order them by."""
    topic = f"keyless-{os.getpid()}"
    await tansu_broker.create_topic(topic, 4)
    traffic = [(None, value, req) for _, value, req in make_traffic(300, upstreams=["payments"])]
    ends = await produce(tansu_broker.bootstrap, topic, traffic)
    settings = settings_for(
        broker=tansu_broker, topic=topic, tmp_path=tmp_path, upstreams={"payments": sim.url}
    )
    async with running(Service(settings)) as service:
        await wait_for(
            lambda: committed_to_end(service, ends), timeout_s=60, what="offsets committed"
        )
    assert service.summary is not None and service.summary.clean
    records = await read_audit(settings.audit)
    assert set(terminal_counts(records).values()) == {1} and len(records) == 300
    assert all(r["kafka"]["key"] is None and r["outcome"] == "success" for r in records)
    assert sim.stats.total == 300


async def test_a_failing_fetch_loop_stops_like_sigterm_and_exits_1(
    tansu_broker, sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the fetch loop must not leave a process that looks alive and takes nothing:
    it stops cleanly (what is durable is committed) and says it failed."""
    import gc

    from netscope.service import EXIT_FAILED

    topic = f"failing-{os.getpid()}"
    await tansu_broker.create_topic(topic, 4)
    ends = await produce(tansu_broker.bootstrap, topic, make_traffic(50, upstreams=["payments"]))
    service = Service(
        settings_for(
            broker=tansu_broker, topic=topic, tmp_path=tmp_path, upstreams={"payments": sim.url}
        )
    )
    real_run = service.pipeline.run

    async def run_then_fail() -> None:
        fetching = asyncio.create_task(real_run())
        await wait_for(lambda: service.pipeline.processed >= 50, timeout_s=60, what="the 50")
        service.pipeline.request_stop()
        await fetching
        raise RuntimeError("injected fetch-loop bug")

    service.pipeline.run = run_then_fail  # type: ignore[method-assign]
    threshold = gc.get_threshold()
    try:
        code = await service.run_until_signal()
    finally:
        gc.unfreeze()  # run_until_signal tunes the collector for the process
        gc.set_threshold(*threshold)
    assert code == EXIT_FAILED
    assert "fetch loop failed" in caplog.text and "injected fetch-loop bug" in caplog.text
    assert service.summary is not None and service.summary.clean
    assert await committed_offsets(
        tansu_broker.bootstrap, service.settings.kafka.group_id, topic
    ) == ends


async def test_rebalance_mid_stream_every_message_audited_once_revoked_queue_not_called(
    tansu_broker, tmp_path: Path
) -> None:
    """A second worker joins while the first holds a deep queue (few keys, slow upstream).

    Every message still ends with exactly one terminal record and the group commits to the
    end. Once its revoke begins, the first worker starts no call for a partition it is losing:
    the new owner calls those messages.
    """
    topic = f"rebalance-{os.getpid()}"
    group = f"rebalance-{os.getpid()}"
    await tansu_broker.create_topic(topic, 4)
    ends = await produce(
        tansu_broker.bootstrap, topic, make_traffic(3000, upstreams=["payments"], keys=64)
    )
    async with UpstreamSim(SimConfig(latency_ms=200.0), history_size=10_000) as slow:

        def service(name: str) -> Service:
            return Service(settings_for(
                broker=tansu_broker, topic=topic, tmp_path=tmp_path / name, group_id=group,
                upstreams={"payments": slow.url},
                upstream_overrides={"headers": {"x-worker": name}},
            ))

        first, second = service("a"), service("b")
        revokes: list[tuple[float, set[int]]] = []
        on_revoked = first.pipeline.committer.revoked

        async def recording_revoke(revoked: list[TopicPartition]) -> None:
            revokes.append((time.time(), {tp.partition for tp in revoked}))
            await on_revoked(revoked)

        first.pipeline.committer.revoked = recording_revoke  # type: ignore[method-assign]

        async def group_done() -> bool:
            return await committed_offsets(tansu_broker.bootstrap, group, topic) == ends

        async with running(first):
            await wait_for(lambda: first.pipeline.processed >= 200, timeout_s=60,
                           what="the first worker under way")
            async with running(second):
                await wait_for(group_done, timeout_s=180, what="the group committed to the end")
            kept = {tp.partition for tp in first.pipeline._consumer.assignment()}
        history = list(slow.stats.recent)
    records = [*await read_audit(first.settings.audit), *await read_audit(second.settings.audit)]
    counts = terminal_counts(records)
    assert len(counts) == 3000 and set(counts.values()) == {1}
    assert second.pipeline.processed > 0, "the second worker took partitions"

    lost = set(range(4)) - kept
    # (aiokafka also calls the listener with an empty set when the consumer first joins)
    revoked_at = next(t for t, partitions in revokes if partitions & lost)
    partition_of = {r["idempotency_key"]: r["kafka"]["partition"] for r in records}
    late_calls = [
        e for e in history
        if e["headers"].get("x-worker") == "a"
        and partition_of[e["headers"]["idempotency-key"]] in lost
        and e["t"] > revoked_at + 1.0  # calls already on their way when the revoke began
    ]
    assert lost
    assert late_calls == [], f"{len(late_calls)} calls for lost partitions after the revoke"
    assert metric(first, "netscope_revoked_skipped_total") > 0


async def test_dead_letter_keeps_producer_headers_and_trace(
    tansu_broker, sim, tmp_path: Path
) -> None:
    """Invariant I4 for bad input: the DLQ copy and the audit record keep the producer's trace."""
    from aiokafka import AIOKafkaProducer

    topic = f"dlq-{os.getpid()}"
    await tansu_broker.create_topic(topic, 4)
    settings = settings_for(
        broker=tansu_broker, topic=topic, tmp_path=tmp_path, upstreams={"payments": sim.url}
    )
    traceparent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    producer = AIOKafkaProducer(bootstrap_servers=tansu_broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, b"{not json", key=b"k", headers=[("traceparent", traceparent), ("x-app", b"a")]
        )
    finally:
        await producer.stop()
    async with running(Service(settings)) as service:
        await wait_for(lambda: service.pipeline.processed >= 1, timeout_s=30, what="processed")
    [dead] = await read_topic(tansu_broker.bootstrap, f"{topic}.dlq", 1)
    headers = dict(dead.headers)
    assert headers["traceparent"] == traceparent and headers["x-app"] == b"a"
    assert headers[DLQ_FIELD] == b"(message)"
    [record] = await read_audit(settings.audit)
    assert record["outcome"] == "invalid"
    assert record["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_compressed_batches_are_consumed(tansu_broker, tmp_path: Path, codec: str) -> None:
    """A producer may compress its batches with any codec Kafka knows: the fetch loop must
    read them all (without cramjam, snappy/lz4/zstd batches stopped it at start)."""
    topic = f"codec-{codec}-{uuid.uuid4().hex[:8]}"
    await tansu_broker.create_topic(topic, 2)
    items = make_traffic(20, upstreams=["payments"])
    await produce(tansu_broker.bootstrap, topic, items, compression_type=codec)
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim:
        settings = settings_for(broker=tansu_broker, topic=topic, tmp_path=tmp_path,
                                upstreams={"payments": sim.url})  # fmt: skip
        async with running(Service(settings)) as service:
            await wait_for(lambda: service.pipeline.processed == len(items), timeout_s=60,
                           what=f"{codec} batches consumed")  # fmt: skip
        assert sim.stats.total == len(items)
