"""The unit of work: one fetched Kafka record on its way to a terminal, durable outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka.structs import ConsumerRecord


@dataclass(slots=True, eq=False)  # identity hash: a keyless record is its own ordering key
class Work:
    lane: Any  # the audit writer's token for the record's partition (see AuditWriter.track)
    topic: str
    partition: int
    record: ConsumerRecord
    received_at: float  # epoch s
    consumed_mono: float  # monotonic: the message's deadline counts from here (I1)
    dispatched: float  # perf_counter: latency_s and queued_s count from here

    @property
    def ordering_key(self) -> Any:
        """Messages of one Kafka key in one partition are called in order; a keyless
        message has nothing to keep order with, so it is its own key."""
        key = self.record.key
        return self if key is None else (self.partition, key)
