"""One message, start to end: parse -> claim -> guard -> settle -> record -> audit writer.

The handler never raises for bad input or a failing upstream: an invalid message is
dead-lettered and audited as ``invalid``; a call ends in an outcome from the caller, which is
total. With the idempotency ledger on (ledger/gate.py), a valid message's key is claimed
before the call and settled after it, before its record goes to the audit: a key the ledger
holds as done is not called again (``duplicate_skipped``), and neither is a message handled
again at the same position after its own call was refused (the key released under its
ref, and its offset not committed: a crash, a rebalance): its record is rebuilt from the
ledger (``outcome_from_ledger``). The record goes to the audit writer, which makes it
durable and only then lets its offset be committed.
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
from netscope.contract.outcomes import ErrorClass, Outcome
from netscope.contract.records import AuditRecord, KafkaPosition
from netscope.contract.request import CallRequest, FieldError, InvalidMessage, parse_request
from netscope.ingest.work import Work
from netscope.ledger.gate import Duplicate, IdempotencyGate, NotCalled, Ticket, position_ref
from netscope.ledger.model import Completion, EntryState
from netscope.observability.events import CallCompleted, EventBus, MessageSkipped
from netscope.outbound.caller import CallResult

log = logging.getLogger(__name__)

# The error class a record rebuilt from the ledger can be sure of: the ledger keeps the
# outcome, not the class, and these outcomes have one class each (a connect_error may have
# been a reset, a rejected_rate_limited a full bulkhead: left unset).
_ERROR_CLASS_OF = {
    Outcome.HTTP_ERROR: ErrorClass.HTTP_ERROR,
    Outcome.TIMEOUT_CONNECT: ErrorClass.TIMEOUT_CONNECT,
    Outcome.TIMEOUT_READ: ErrorClass.TIMEOUT_READ,
    Outcome.DEADLINE_EXCEEDED: ErrorClass.DEADLINE_EXCEEDED,
    Outcome.REJECTED_CIRCUIT_OPEN: ErrorClass.CIRCUIT_OPEN,
}


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
        self._settling: set[asyncio.Task[None]] = set()

    async def __call__(self, work: Work) -> None:
        if not self._writer.takes_work(work.lane):
            # Its partition is being (or was) revoked while it waited: calling it now would
            # only duplicate the new owner's call, and its record would be discarded.
            self._events.publish(MessageSkipped(work.topic, work.partition, work.record.offset))
            return
        t_parse = time.perf_counter()
        parsed = self._parse(work)  # total: never raises, whatever the bytes
        ticket = None
        try:
            record, upstream_time, ticket = await self._outcome(work, parsed, t_parse)
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
        gate = self._gate
        if ticket is None or gate is None:
            self._writer.complete(work.lane, record)
            return
        # The key is settled before its record goes to the audit: a record durable (and its
        # offset committed) before the settle would leave the key claimed if we crashed, and
        # a replay would call it again. Off this worker, though: the next message need not
        # wait for a ledger round trip (its offset stays uncommitted until then).
        task = asyncio.create_task(self._settle_then_record(gate, ticket, work.lane, record))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle_then_record(
        self, gate: IdempotencyGate, ticket: Ticket, lane: Any, record: AuditRecord
    ) -> None:
        try:
            await gate.settle(ticket, record)
        except asyncio.CancelledError:
            raise
        except Exception:  # never lose the record for the ledger's sake
            log.exception("ledger settle failed: the key stays claimed until its lease ends")
        self._writer.complete(lane, record)

    async def settled(self) -> None:
        """Wait for the settles in flight (a stop, before the audit's last flush)."""
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def _outcome(
        self, work: Work, parsed: CallRequest | InvalidMessage, t_parse: float
    ) -> tuple[AuditRecord, float, Ticket | None]:
        """The terminal record of a message, the time spent inside upstream attempts, and
        the ledger claim to settle (None without the ledger or without a call)."""
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
            return record, 0.0, None
        # Waiting behind the same key, then for a worker; parsing is work, not a wait.
        queued_s = max(0.0, t_parse - work.dispatched)
        guard = self._guards[parsed.upstream]
        ticket = None
        gate = self._gate
        if gate is not None and gate.enabled_for(parsed.upstream):
            deadline = work.consumed_mono + guard.budget_s(parsed)
            ref = position_ref(position, self._replay_run_id)  # what settle will store
            admission = await gate.admit(parsed, deadline, ref)
            if not isinstance(admission, Ticket):
                return self._not_called(work, parsed, admission), 0.0, None
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
        if ticket is not None:
            record.attempt_after_lease_expiry = ticket.after_lease_expiry
            record.replay_run_id = self._replay_run_id  # settle points at this record
        return record, result.upstream_time_s, ticket

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
        entry = admission.entry
        done = entry.completion
        if done is not None and done.audit_ref == position_ref(position, self._replay_run_id):
            return self._recovered(req, position, done, common, state=entry.state)
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

    @staticmethod
    def _recovered(
        req: CallRequest,
        position: KafkaPosition,
        done: Completion,
        common: dict[str, Any],
        *,
        state: EntryState = EntryState.COMPLETED,
    ) -> AuditRecord:
        """The record of this very message's call, made by an earlier handling of it that
        settled the key and stopped before its offset was committed (a crash, a revoke):
        rebuilt from the ledger, so the call is neither audited as a duplicate of itself
        nor, when it was refused and the key released, made a second time behind the back
        of the record that earlier handling wrote (or was writing)."""
        try:
            outcome = Outcome(done.outcome)
        except ValueError:  # a ledger written by a newer version: keep what it says
            outcome = Outcome.SUCCESS if done.status and done.status < 400 else Outcome.HTTP_ERROR
        if state is EntryState.RELEASED:
            detail = (
                f"refused before a restart or rebalance ({done.attempts} attempt(s)), key "
                "released; not called again for the same message: outcome and status from "
                "the idempotency ledger (a replay calls it again)"
            )
        else:
            detail = (
                f"called before a restart ({done.attempts} attempt(s)); outcome and status "
                "from the idempotency ledger: the call's own record was not durable"
            )
        record = not_called_record(
            req, position, outcome=outcome, detail=detail, status=done.status, **common
        )
        record.outcome_from_ledger = True
        record.error_class = _ERROR_CLASS_OF.get(outcome)
        return record

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
