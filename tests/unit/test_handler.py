"""One message through the handler (handler.py), built without a broker, store or upstream.

The guard, the audit writer and the dead-letter publisher are stand-ins recording what they
were given: what is tested is the handler's own logic (parse, route, record, order of effects).
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from netscope.contract.outcomes import ErrorClass, Outcome
from netscope.contract.records import Attempt, AuditRecord
from netscope.contract.request import CallRequest, InvalidMessage
from netscope.handler import MessageHandler
from netscope.ingest.work import Work
from netscope.observability.events import CallCompleted, EventBus, MessageSkipped
from netscope.outbound.caller import CallResult
from netscope.tools.messages import encode, make_invalid, make_request

RAND = random.Random(7)


class Guard:
    def __init__(self, result: CallResult) -> None:
        self.result = result
        self.calls: list[tuple[CallRequest, float | None]] = []

    async def call(self, req: CallRequest, consumed_at: float | None = None) -> CallResult:
        self.calls.append((req, consumed_at))
        return self.result


class Writer:
    def __init__(self, takes: bool = True) -> None:
        self.takes = takes
        self.completed: list[tuple[Any, AuditRecord]] = []

    def takes_work(self, lane: Any) -> bool:
        return self.takes

    def complete(self, lane: Any, record: AuditRecord) -> bool:
        self.completed.append((lane, record))
        return True


class DeadLetters:
    def __init__(self, log: list[str]) -> None:
        self.sent: list[tuple[ConsumerRecord, InvalidMessage]] = []
        self._log = log

    async def publish(self, record: ConsumerRecord, invalid: InvalidMessage) -> None:
        self._log.append("dead_letter")
        self.sent.append((record, invalid))


def work(value: bytes, *, offset: int = 5, key: bytes | None = b"k") -> Work:
    record = ConsumerRecord(
        topic="t", partition=2, offset=offset, timestamp=1_700_000_000_000, timestamp_type=0,
        key=key, value=value, checksum=None, serialized_key_size=1,
        serialized_value_size=len(value), headers=[],
    )
    now = time.perf_counter()
    return Work(
        lane="lane-2", topic="t", partition=2, record=record, received_at=time.time(),
        consumed_mono=123.0, dispatched=now,
    )


def build(result: CallResult | None = None, *, takes: bool = True, max_request_bytes: int = 1024):
    log: list[str] = []
    guard = Guard(result or CallResult(Outcome.SUCCESS, status=200))
    writer = Writer(takes)
    dead = DeadLetters(log)
    events = EventBus()
    seen: list[Any] = []
    events.subscribe(seen.append)
    events.subscribe(lambda ev: log.append(type(ev).__name__))
    handler = MessageHandler(
        guards={"payments": guard},
        max_request_bytes={"payments": max_request_bytes},
        max_message_bytes=1 << 20,
        writer=writer,
        dead_letters=dead,
        events=events,
        instance_id="i-1",
    )
    return handler, guard, writer, dead, seen, log


async def test_a_valid_message_is_called_recorded_published_then_handed_to_the_writer() -> None:
    attempt = Attempt(n=1, started_at=time.time(), duration_s=0.01, status=200)
    result = CallResult(Outcome.SUCCESS, attempts=[attempt], status=200, upstream_time_s=0.01)
    handler, guard, writer, dead, seen, _ = build(result)
    msg = make_request("payments", rand=RAND, path="/v1/pay?token=s3cret&x=1")
    w = work(encode(msg))

    await handler(w)

    (req, consumed_at), = guard.calls
    assert req.request_id == msg["request_id"] and consumed_at == 123.0  # deadline from consume
    (lane, record), = writer.completed
    assert lane == "lane-2"
    assert record.outcome is Outcome.SUCCESS and record.status == 200
    assert record.request_id == msg["request_id"]
    assert record.idempotency_key == msg["idempotency_key"]
    assert record.trace_id == msg["traceparent"].split("-")[1]
    assert (record.kafka.topic, record.kafka.partition, record.kafka.offset) == ("t", 2, 5)
    assert record.kafka.key == "k" and record.instance_id == "i-1"
    assert "s3cret" not in (record.path or "")  # secrets never reach the audit
    assert record.attempts == [attempt]
    assert [type(e) for e in seen] == [CallCompleted]
    assert seen[0].record is record and seen[0].upstream_time_s == 0.01
    assert handler.processed == 1 and not dead.sent


async def test_an_invalid_message_is_dead_lettered_before_its_record_exists() -> None:
    handler, guard, writer, dead, _, log = build()
    w = work(make_invalid("missing_request_id", RAND))

    await handler(w)

    assert not guard.calls
    (record_in, invalid), = dead.sent
    assert record_in is w.record and invalid.field
    (_, record), = writer.completed
    assert record.outcome is Outcome.INVALID and record.error_class is ErrorClass.INVALID
    assert record.trace_id  # a fresh trace: findable even without a traceparent
    assert log == ["dead_letter", "CallCompleted"]


async def test_a_body_over_the_upstreams_limit_is_invalid_input_not_a_call() -> None:
    handler, guard, writer, dead, _, _ = build(max_request_bytes=16)
    msg = make_request("payments", rand=RAND, method="POST", body={"note": "x" * 100})

    await handler(work(encode(msg)))

    assert not guard.calls
    (_, invalid), = dead.sent
    assert invalid.field == "body" and "upstream limit 16" in invalid.reason
    assert writer.completed[0][1].request_id == msg["request_id"]


async def test_a_message_of_a_revoked_partition_is_skipped_not_called_nor_recorded() -> None:
    handler, guard, writer, dead, seen, _ = build(takes=False)

    await handler(work(encode(make_request("payments", rand=RAND)), offset=9))

    assert not guard.calls and not writer.completed and not dead.sent
    assert seen == [MessageSkipped("t", 2, 9, created=seen[0].created)]
    assert handler.processed == 0


@pytest.mark.parametrize(
    "outcome", [Outcome.TIMEOUT_READ, Outcome.REJECTED_CIRCUIT_OPEN, Outcome.HTTP_ERROR]
)
async def test_every_call_outcome_ends_in_exactly_one_record(outcome: Outcome) -> None:
    handler, _, writer, _, seen, _ = build(CallResult(outcome, queued_s=0.5))

    await handler(work(encode(make_request("payments", rand=RAND))))

    (_, record), = writer.completed
    assert record.outcome is outcome and record.queued_s >= 0.5
    assert len(seen) == 1


async def test_a_bug_while_handling_still_ends_in_one_terminal_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without a record its offset would hold back every later commit of the partition."""

    class BrokenGuard:
        async def call(self, req: CallRequest, consumed_at: float | None = None) -> CallResult:
            raise RuntimeError("a bug")

    handler, _, writer, _, seen, _ = build()
    handler._guards = {"payments": BrokenGuard()}  # type: ignore[dict-item]
    msg = make_request("payments", rand=RAND)

    await handler(work(encode(msg)))

    (_, record), = writer.completed
    assert record.outcome is Outcome.PROTOCOL_ERROR
    assert record.error_class is ErrorClass.INTERNAL_ERROR
    assert record.error_detail == "RuntimeError: a bug"
    assert record.request_id == msg["request_id"] and record.upstream == "payments"
    assert [type(e) for e in seen] == [CallCompleted] and handler.processed == 1
    assert "handling failed" in caplog.text
