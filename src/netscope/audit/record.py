"""Pure builders of the terminal audit record of one message (docs/audit-format.md)."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from netscope.contract.outcomes import ErrorClass, Outcome
from netscope.contract.records import AuditRecord, KafkaPosition
from netscope.contract.request import CallRequest, InvalidMessage
from netscope.contract.traceparent import new_trace
from netscope.outbound.caller import CallResult
from netscope.outbound.redact import redact_path

_DETAIL_MAX = 1000
# Every record waits in memory until its batch is durable (up to pipeline.queue_depth of
# them): a producer sending 100 KB keys took a `netscope run` from 200 MB to 1.1 GB RSS
# (bench/hostile_bench.py, issue 15). Real keys are ids; a longer one is cut.
KEY_MAX_CHARS = 1024


def kafka_position(record: ConsumerRecord) -> KafkaPosition:
    return KafkaPosition(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=audit_key(record.key),
    )


def audit_key(key: bytes | None) -> str | None:
    """The Kafka key as the audit shows it: UTF-8 (invalid bytes replaced), at most
    ``KEY_MAX_CHARS`` characters, a longer one cut and marked with its full length."""
    if key is None:
        return None
    if len(key) <= KEY_MAX_CHARS:
        return key.decode("utf-8", "replace")
    head = key[: KEY_MAX_CHARS * 4].decode("utf-8", "replace")[:KEY_MAX_CHARS]
    return f"{head}...({len(key)} bytes)"


def invalid_record(
    invalid: InvalidMessage,
    position: KafkaPosition,
    *,
    received_at: float,
    completed_at: float,
    instance_id: str | None,
) -> AuditRecord:
    """An invalid message's record: what could be read of it, and why it was refused.

    Without a usable traceparent it gets a fresh trace, so it can still be found by trace_id.
    """
    trace = invalid.trace or new_trace()
    return AuditRecord(
        request_id=invalid.request_id,
        idempotency_key=None,
        trace_id=trace.trace_id,
        span_id=trace.span_id,
        upstream=None,
        method=None,
        path=None,
        kafka=position,
        outcome=Outcome.INVALID,
        received_at=received_at,
        completed_at=completed_at,
        latency_s=round(completed_at - received_at, 6),
        error_class=ErrorClass.INVALID,
        error_detail=invalid.reason[:_DETAIL_MAX],
        instance_id=instance_id,
    )


def call_record(
    req: CallRequest,
    result: CallResult,
    position: KafkaPosition,
    *,
    received_at: float,
    completed_at: float,
    latency_s: float,
    queued_s: float,
    instance_id: str | None,
) -> AuditRecord:
    msg = req.message
    return AuditRecord(
        request_id=msg.request_id,
        idempotency_key=req.idempotency_key,
        trace_id=req.trace.trace_id,
        span_id=req.trace.span_id,
        upstream=msg.upstream,
        method=msg.method,
        path=redact_path(msg.path),  # secret-looking query values never reach the audit
        kafka=position,
        outcome=result.outcome,
        received_at=received_at,
        completed_at=completed_at,
        latency_s=round(latency_s, 6),
        queued_s=round(queued_s, 6),
        status=result.status,
        error_class=result.error_class,
        error_detail=result.detail,
        attempts=result.attempts,
        created_at=msg.created_at.isoformat() if msg.created_at else None,
        instance_id=instance_id,
    )


def not_called_record(
    req: CallRequest,
    position: KafkaPosition,
    *,
    outcome: Outcome,
    received_at: float,
    completed_at: float,
    instance_id: str | None,
    detail: str,
    status: int | None = None,
    duplicate_of: str | None = None,
) -> AuditRecord:
    """The record of a valid message the idempotency ledger kept from the upstream:
    ``duplicate_skipped`` (done before: ``duplicate_of`` points at the original, ``status``
    is the original's), ``duplicate_in_progress`` or ``ledger_unavailable``."""
    msg = req.message
    error_class = ErrorClass.LEDGER_UNAVAILABLE if outcome is Outcome.LEDGER_UNAVAILABLE else None
    return AuditRecord(
        request_id=msg.request_id,
        idempotency_key=req.idempotency_key,
        trace_id=req.trace.trace_id,
        span_id=req.trace.span_id,
        upstream=msg.upstream,
        method=msg.method,
        path=redact_path(msg.path),
        kafka=position,
        outcome=outcome,
        received_at=received_at,
        completed_at=completed_at,
        latency_s=round(completed_at - received_at, 6),
        status=status,
        error_class=error_class,
        error_detail=detail[:_DETAIL_MAX],
        created_at=msg.created_at.isoformat() if msg.created_at else None,
        instance_id=instance_id,
        duplicate_of=duplicate_of,
    )


def internal_error_record(
    req: CallRequest | None,
    position: KafkaPosition,
    *,
    received_at: float,
    completed_at: float,
    instance_id: str | None,
    detail: str,
) -> AuditRecord:
    """The record of a message NetScope failed to handle (a bug: neither the message's fault
    nor the upstream's), as the caller reports its own bugs: ``protocol_error`` /
    ``internal_error``, with what is known of the request. Whether the upstream was called
    is not known here."""
    msg = req.message if req is not None else None
    trace = req.trace if req is not None else new_trace()
    return AuditRecord(
        request_id=msg.request_id if msg else None,
        idempotency_key=req.idempotency_key if req is not None else None,
        trace_id=trace.trace_id,
        span_id=trace.span_id,
        upstream=msg.upstream if msg else None,
        method=msg.method if msg else None,
        path=redact_path(msg.path) if msg else None,
        kafka=position,
        outcome=Outcome.PROTOCOL_ERROR,
        received_at=received_at,
        completed_at=completed_at,
        latency_s=round(completed_at - received_at, 6),
        error_class=ErrorClass.INTERNAL_ERROR,
        error_detail=detail[:_DETAIL_MAX],
        instance_id=instance_id,
    )
