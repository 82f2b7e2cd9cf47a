"""Evidence of a fault run, read back from the real services for tests.faults.checker:

- every produced message, read from the broker (not from the producer's memory): its
  position, its idempotency key and whether NetScope must take it as valid;
- every terminal audit record, listed and decoded from RGW;
- the DLQ: the source position of each dead-letter copy (its ``netscope-dlq-source`` header);
- the group's committed offsets (OffsetFetch);
- the upstream simulator's per-key call log (every ``Idempotency-Key`` it received).

Reading a topic is a poll with a deadline until every position asked for has been seen:
tansu's end offsets are wrong (see /work/shared/notes/kafka-brokers.md), so "read to the end"
is not available; the loadgen's acknowledgements say which positions must exist.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from netscope.config import AuditConfig
from netscope.contract.records import DLQ_SOURCE
from netscope.tools.loadgen import SentMessage
from tests.faults.checker import Position, Produced
from tests.harness import committed_offsets, read_audit


async def _read(
    bootstrap: str, topic: str, done: Callable[[list[Any]], bool], timeout_s: float
) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=16 << 20,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        parts = consumer.partitions_for_topic(topic) or set()
        while not parts and time.monotonic() < deadline:
            await consumer.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            return out
        consumer.assign([TopicPartition(topic, p) for p in parts])
        await consumer.seek_to_beginning()
        while not done(out) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


def _key_of(value: bytes | None) -> str | None:
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    key = doc.get("idempotency_key") or doc.get("request_id")
    return key if isinstance(key, str) else None


async def produced(
    bootstrap: str, topic: str, sent: dict[tuple[int, int], SentMessage], timeout_s: float = 60
) -> list[Produced]:
    """The requests topic read back: one Produced per acknowledged position found there
    (validity is the generator's, which made the message valid or broken on purpose). An
    acknowledged position the broker no longer has is reported as produced but unreadable:
    the checker counts it as missing (it has no record), which is what it is."""
    want = set(sent)
    seen: dict[tuple[int, int], Any] = {}

    read = [0]  # how many of the records were looked at

    def done(records: list[Any]) -> bool:
        for r in records[read[0] :]:
            seen[(r.partition, r.offset)] = r
        read[0] = len(records)
        return want <= seen.keys()

    await _read(bootstrap, topic, done, timeout_s)
    out = []
    for (partition, offset), msg in sorted(sent.items()):
        record = seen.get((partition, offset))
        key = _key_of(record.value) if record is not None and msg.valid else None
        out.append(Produced((topic, partition, offset), key, msg.valid))
    return out


async def dead_lettered(
    bootstrap: str, dlq_topic: str, invalid: set[Position], timeout_s: float = 30
) -> tuple[list[Position], int]:
    """Source positions of the DLQ's copies, and how many copies there are in all."""

    def sources(records: list[Any]) -> set[Position]:
        out = set()
        for r in records:
            for name, value in r.headers or ():
                if name == DLQ_SOURCE and value:
                    topic, partition, offset = value.decode().rsplit("/", 2)
                    out.add((topic, int(partition), int(offset)))
        return out

    if not invalid:
        return [], 0
    records = await _read(bootstrap, dlq_topic, lambda rs: invalid <= sources(rs), timeout_s)
    return sorted(sources(records)), len(records)


@dataclass
class Evidence:
    produced: list[Produced]
    audit: list[dict[str, Any]]
    dead_lettered: list[Position]
    dlq_copies: int
    committed: dict[tuple[str, int], int]
    upstream_calls: Counter[str]


async def gather(
    *,
    bootstrap: str,
    topic: str,
    dlq_topic: str,
    group_id: str,
    audit_cfg: AuditConfig,
    sent: dict[tuple[int, int], SentMessage],
    upstream_calls: Counter[str],
) -> Evidence:
    messages = await produced(bootstrap, topic, sent)
    invalid = {m.position for m in messages if not m.valid}
    dlq, copies = await dead_lettered(bootstrap, dlq_topic, invalid)
    committed = await committed_offsets(bootstrap, group_id, topic)
    audit = await read_audit(audit_cfg)
    return Evidence(
        messages,
        audit,
        dlq,
        copies,
        {(topic, p): o for p, o in committed.items()},
        Counter(upstream_calls),
    )
