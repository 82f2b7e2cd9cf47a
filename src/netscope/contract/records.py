"""What NetScope writes: the terminal audit record of each message, and dead-letter records.

Plain slotted dataclasses serialised by orjson (which encodes dataclasses natively): the audit
path runs once per message, so it avoids a validation layer it does not need. The field list is
the contract documented in docs/contract.md and docs/audit-format.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from netscope.contract.outcomes import (  # re-exported: records name their outcome
    ERROR_OUTCOMES,
    TIMEOUT_OUTCOMES,
    ErrorClass,
    Outcome,
)

__all__ = [
    "AUDIT_SCHEMA_VERSION",
    "ERROR_OUTCOMES",
    "TIMEOUT_OUTCOMES",
    "Attempt",
    "AuditRecord",
    "ControlEvent",
    "ControlRecord",
    "KafkaPosition",
    "Outcome",
    "dead_letter_headers",
    "record_from_json",
]

AUDIT_SCHEMA_VERSION = 1


@dataclass(slots=True)
class Attempt:
    """One try against the upstream."""

    n: int
    started_at: float  # epoch seconds
    duration_s: float
    status: int | None = None
    error_class: ErrorClass | None = None
    retry_delay_s: float | None = None  # wait before the next try, when there was one


@dataclass(slots=True)
class KafkaPosition:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # Kafka record timestamp: the event time, decides the audit hour
    key: str | None = None


@dataclass(slots=True)
class AuditRecord:
    """The terminal record of one consumed message."""

    request_id: str | None
    idempotency_key: str | None
    trace_id: str | None
    span_id: str | None
    upstream: str | None
    method: str | None
    path: str | None  # query values of secret-looking parameters are redacted
    kafka: KafkaPosition
    outcome: Outcome
    received_at: float  # epoch seconds, when NetScope consumed the message
    completed_at: float
    latency_s: float  # consume -> outcome, waits included
    queued_s: float = 0.0  # waiting for the same key's previous message or a free call slot
    status: int | None = None
    error_class: ErrorClass | None = None
    error_detail: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    created_at: str | None = None  # producer's created_at, as given
    instance_id: str | None = None
    # Idempotency ledger (docs/audit-format.md, "Replays and duplicates"):
    replay_run_id: str | None = None  # set on records written by `netscope replay`
    duplicate_of: str | None = None  # duplicate_skipped: the audit_ref of the original call
    # Called again because an earlier claim's lease ran out (a crash mid-call, most likely):
    # the upstream may have seen this key before, and got the same Idempotency-Key.
    attempt_after_lease_expiry: bool = False
    # This message was called by an earlier process that stopped after settling its key but
    # before this record was durable: outcome, status and the attempt count (in error_detail)
    # come from the ledger; the attempts' details were lost with that process.
    outcome_from_ledger: bool = False
    record_type: str = "call"  # "control" for ControlRecord; absent in older records: "call"
    schema_version: int = AUDIT_SCHEMA_VERSION

    @property
    def event_time_ms(self) -> int:
        return self.kafka.timestamp_ms

    def to_json(self) -> bytes:
        # orjson hands back its whole working buffer (8 KiB for a ~600-byte line) and audit
        # lines wait in memory until their batch is durable: keep an exact-size copy
        # (measured: peak RSS at saturation fell by tens of MB).
        return memoryview(orjson.dumps(self)).tobytes()


class ControlEvent(StrEnum):
    """What a control record says happened (docs/audit-format.md, "Control records")."""

    INSTANCE_STARTED = "instance_started"
    INSTANCE_STOPPING = "instance_stopping"
    BREAKER_TRANSITION = "breaker_transition"  # including forced states and resets
    THROTTLE_CHANGED = "throttle_changed"
    DEGRADED_MODE = "degraded_mode"  # entered or left, with the spool backlog then
    SPOOL_DRAINED = "spool_drained"  # a drain pass moved spooled batches to the store


@dataclass(slots=True)
class ControlRecord:
    """A state change an incident timeline needs beside the calls, in the same store and
    layout (a ``control/`` folder per hour), as durable as call records (same spool)."""

    event: ControlEvent
    at: float  # epoch seconds
    instance_id: str | None
    data: dict[str, Any]  # event-specific fields (docs/audit-format.md)
    upstream: str | None = None
    actor: str | None = None  # who, for operator actions (throttle, forced breaker states)
    replay_run_id: str | None = None
    seq: int = 0  # set by the audit writer: the record's place in its control lane
    record_type: str = "control"
    schema_version: int = AUDIT_SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(self)


def record_from_json(line: bytes | str) -> dict[str, Any]:
    """Audit records are read back as dicts: readers depend on docs/audit-format.md only."""
    return orjson.loads(line)


# Kafka header names on dead-letter messages (values are UTF-8).
DLQ_REASON = "netscope-dlq-reason"
DLQ_FIELD = "netscope-dlq-field"
DLQ_SOURCE = "netscope-dlq-source"  # topic/partition/offset of the original
DLQ_SCHEMA = "netscope-dlq-schema-version"


def dead_letter_headers(
    reason: str, field_path: str, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    return [
        (DLQ_REASON, reason[:1000].encode()),
        (DLQ_FIELD, field_path.encode()),
        (DLQ_SOURCE, f"{topic}/{partition}/{offset}".encode()),
        (DLQ_SCHEMA, b"1"),
    ]
