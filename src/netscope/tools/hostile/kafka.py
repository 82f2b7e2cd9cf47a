"""Produce hostile messages (this package's shapes) to Kafka and remember where each one went.

Why a module of its own: aiokafka's producer refuses to write a header key that is not UTF-8
(its compiled batch builder takes ``str`` only) or a record with neither key nor value (an
assertion in ``send``), yet other clients write both and NetScope must survive them. Such a
message goes out in a batch of its own, built by aiokafka's pure-Python builder, which
encodes keys through :class:`RawHeaderKey`. Every other message goes through the ordinary
``send``, so the stream is produced at full speed.

Only what the checker needs is kept per message (:class:`Produced`), never the bytes: a
100,000-message run holds some megabytes of values at any time, not the whole stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from aiokafka.structs import RecordMetadata

from netscope.tools.hostile.model import Hostile

# Room for the largest hostile value a broker without a limit of its own (tansu) is sent.
MAX_REQUEST_BYTES = 16 << 20
# A record this large travels alone: a broker with a size limit (noida: 1 MiB, like Kafka's
# default message.max.bytes) refuses the whole produce request it shares with others.
ALONE_BYTES = 128 * 1024


@dataclass(frozen=True, slots=True)
class Produced:
    """One acknowledged message: what NetScope must do with it, and where it is."""

    kind: str
    valid: bool
    request_id: str | None
    outcomes: frozenset[str]
    dlq_omitted: bool
    partition: int
    offset: int


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=MAX_REQUEST_BYTES,
    )


async def produce(
    producer: AIOKafkaProducer,
    topic: str,
    messages: Iterable[Hostile],
    *,
    on_produced: Callable[[Produced], None] | None = None,
) -> list[Produced]:
    """Send ``messages`` in order (per partition) and wait for every acknowledgement.

    Keyed messages go to the partition Kafka's default partitioner picks for their key
    (so per-key ordering holds across both ways of sending); keyless ones round-robin.
    """
    partitions = sorted(await producer.partitions_for(topic))
    partitioner = DefaultPartitioner()
    pending: list[tuple[Hostile, asyncio.Future[RecordMetadata]]] = []
    for n, hostile in enumerate(messages):
        if hostile.key is None:
            partition = partitions[n % len(partitions)]
        else:
            partition = partitioner(hostile.key, partitions, partitions)
        alone = len(hostile.value or b"") + len(hostile.key or b"") > ALONE_BYTES
        if alone:
            await producer.flush()
        if hostile.hand_built:
            future = await _send_raw(producer, topic, partition, hostile)
        else:
            future = await producer.send(
                topic,
                value=hostile.value,
                key=hostile.key,
                headers=list(hostile.headers),
                partition=partition,
            )
        if alone:
            await asyncio.wait([future])
        pending.append((_strip(hostile), future))
    out = []
    for hostile, future in pending:
        meta = await future
        produced = Produced(
            kind=hostile.kind,
            valid=hostile.valid,
            request_id=hostile.request_id,
            outcomes=hostile.outcomes,
            dlq_omitted=hostile.dlq_omitted,
            partition=meta.partition,
            offset=meta.offset,
        )
        if on_produced is not None:
            on_produced(produced)
        out.append(produced)
    return out


async def _send_raw(
    producer: AIOKafkaProducer, topic: str, partition: int, hostile: Hostile
) -> asyncio.Future[RecordMetadata]:
    """A batch of one record, written as given: header keys as the bytes they carry, key
    and value both null if so."""
    batch = producer.create_batch()
    # The compiled builder takes str keys only; the pure-Python one calls key.encode().
    batch._builder = _DefaultRecordBatchBuilderPy(  # type: ignore[attr-defined]
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=0,
        batch_size=MAX_REQUEST_BYTES,
    )
    batch.append(timestamp=None, key=hostile.key, value=hostile.value, headers=hostile.headers)
    return await producer.send_batch(batch, topic, partition=partition)


def _strip(hostile: Hostile) -> Hostile:
    """Drop the bytes while the acknowledgement is awaited: only the verdict is needed."""
    return Hostile(
        hostile.kind,
        None,
        valid=hostile.valid,
        request_id=hostile.request_id,
        outcomes=hostile.outcomes,
        dlq_omitted=hostile.dlq_omitted,
    )
