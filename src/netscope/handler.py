"""One message, start to end: parse -> claim -> guard -> settle -> record -> audit writer.

The handler never raises for bad input or a failing upstream: an invalid message is
dead-lettered and audited as ``invalid``; a call ends in an outcome from the caller, which is
total. With the idempotency ledger on (ledger/gate.py), a valid message's key is claimed
before the call and settled after it, before its record goes to the audit: a key the ledger
holds as done is not called again (``duplicate_skipped``). The record goes to the audit
writer, which makes it durable and only then lets its offset be committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from netscope.audit.record import (
    call_record,
    internal_error_record,
    invalid_record,
    kafka_position,
    not_called_record,
)
from netscope.contract.outcomes import Outcome
from netscope.contract.records import AuditRecord
from netscope.contract.request import CallRequest, FieldError, InvalidMessage, parse_request
from netscope.ingest.work import Work
from netscope.ledger.gate import Duplicate, IdempotencyGate, NotCalled, Ticket
from netscope.observability.events import CallCompleted, EventBus, MessageSkipped
from netscope.outbound.caller import CallResult

log = logging.getLogger(__name__)


class Guard(Protocol):
    async def call(self, req: CallRequest, consumed_at: float | None = None) -> CallResult: ...

    def budget_s(self, req: CallRequest) -> float: ...


class RecordSink(Protocol):
    """What the handler needs of the audit writer."""

    def takes_work(self, lane: Any) -> bool: ...

    def complete(self, lane: Any, record: Any) -> bool: ...


class DeadLetters(Protocol):
    async def publish(self, record: Any, invalid: InvalidMessage) -> None: ...


class MessageHandler:
    def __init__(
        self,
        *,
        guards: Mapping[str, Guard],
        max_request_bytes: Mapping[str, int],
        max_message_bytes: int,
        writer: RecordSink,
        dead_letters: DeadLetters,
        events: EventBus,
        instance_id: str | None,
        gate: IdempotencyGate | None = None,
        replay_run_id: str | None = None,
    ) -> None:
        self._guards = guards
        self._gate = gate
        self._replay_run_id = replay_run_id
        self._max_request_bytes = max_request_bytes
        self._max_message_bytes = max_message_bytes
        self._writer = writer
        self._dead_letters = dead_letters
        self._events = events
        self._instance_id = instance_id
        self.processed = 0  # messages that reached a terminal outcome here

    async def __call__(self, work: Work) -> None:
        if not self._writer.takes_work(work.lane):
            # Its partition is being (or was) revoked while it waited: calling it now would
            # only duplicate the new owner's call, and its record would be discarded.
            self._events.publish(MessageSkipped(work.topic, work.partition, work.record.offset))
            return
        t_parse = time.perf_counter()
        parsed = self._parse(work)  # total: never raises, whatever the bytes
        try:
            record, upstream_time = await self._outcome(work, parsed, t_parse)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug here must still end in one terminal record, or its offset would hold
            # back every later commit of the partition until a rebalance.
            log.exception("handling failed: audited as internal_error")
            record = internal_error_record(
                parsed if isinstance(parsed, CallRequest) else None,
                kafka_position(work.record),
                received_at=work.received_at,
                completed_at=time.time(),
                instance_id=self._instance_id,
                detail=f"{type(exc).__name__}: {exc}",
            )
            upstream_time = 0.0
        record.replay_run_id = self._replay_run_id
        self.processed += 1
        self._events.publish(CallCompleted(record, upstream_time))
        self._writer.complete(work.lane, record)

    async def _outcome(
        self, work: Work, parsed: CallRequest | InvalidMessage, t_parse: float
    ) -> tuple[AuditRecord, float]:
        """The terminal record of a message, and the time spent inside upstream attempts."""
        position = kafka_position(work.record)
        if isinstance(parsed, InvalidMessage):
            await self._dead_letters.publish(work.record, parsed)
            record = invalid_record(
                parsed,
                position,
                received_at=work.received_at,
                completed_at=time.time(),
                instance_id=self._instance_id,
            )
            return record, 0.0
        # Waiting behind the same key, then for a worker; parsing is work, not a wait.
        queued_s = max(0.0, t_parse - work.dispatched)
        guard = self._guards[parsed.upstream]
        ticket = None
        gate = self._gate
        if gate is not None and gate.enabled_for(parsed.upstream):
            deadline = work.consumed_mono + guard.budget_s(parsed)
            admission = await gate.admit(parsed, deadline)
            if not isinstance(admission, Ticket):
                return self._not_called(work, parsed, admission), 0.0
            ticket = admission
        result = await guard.call(parsed, work.consumed_mono)
        record = call_record(
            parsed,
            result,
            position,
            received_at=work.received_at,
            completed_at=time.time(),
            latency_s=time.perf_counter() - work.dispatched,
            queued_s=queued_s + result.queued_s,
            instance_id=self._instance_id,
        )
        if ticket is not None and gate is not None:
            record.attempt_after_lease_expiry = ticket.after_lease_expiry
            record.replay_run_id = self._replay_run_id  # settle points at this record
            await gate.settle(ticket, record)
        return record, result.upstream_time_s

    def _not_called(
        self, work: Work, req: CallRequest, admission: Duplicate | NotCalled
    ) -> AuditRecord:
        common = {
            "received_at": work.received_at,
            "completed_at": time.time(),
            "instance_id": self._instance_id,
        }
        position = kafka_position(work.record)
        if isinstance(admission, NotCalled):
            return not_called_record(
                req, position, outcome=admission.outcome, detail=admission.detail, **common
            )
        done = admission.entry.completion
        original = done.outcome if done else "unknown"
        return not_called_record(
            req,
            position,
            outcome=Outcome.DUPLICATE_SKIPPED,
            detail=f"idempotency key completed before as {original}",
            status=done.status if done else None,
            duplicate_of=done.audit_ref if done else None,
            **common,
        )

    def _parse(self, work: Work) -> CallRequest | InvalidMessage:
        record = work.record
        header_tp = next((v for k, v in (record.headers or ()) if k == "traceparent"), None)
        parsed = parse_request(
            record.value,
            upstreams=self._guards,
            header_traceparent=header_tp,
            max_message_bytes=self._max_message_bytes,
        )
        if isinstance(parsed, CallRequest) and parsed.body_bytes is not None:
            limit = self._max_request_bytes[parsed.upstream]
            if len(parsed.body_bytes) > limit:
                reason = f"{len(parsed.body_bytes)} bytes, upstream limit {limit}"
                error = FieldError("body", reason)
                return InvalidMessage((error,), parsed.request_id, parsed.trace)
        return parsed
