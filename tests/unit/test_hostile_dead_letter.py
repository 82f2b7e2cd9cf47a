"""ingest/dead_letter.py under hostile input: copies that can never be produced as they are.

Before issue 15 both cases below were retried forever (every error was), holding back the
commits of their partition: a copy larger than the dead-letter topic takes, and a record
with neither key nor value (which aiokafka's producer refuses with an assertion). The fake
producer models exactly those two refusals of the real one; the integration run
(tests/integration/test_hostile_input.py) meets them on real brokers.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord

from netscope.contract.records import DLQ_FIELD, DLQ_REASON, DLQ_SOURCE
from netscope.contract.request import FieldError, InvalidMessage
from netscope.ingest.dead_letter import DLQ_OMITTED, DeadLetterPublisher
from netscope.observability.events import EventBus, MessageDeadLettered

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
INVALID = InvalidMessage((FieldError("(message)", "300000 bytes, limit is 262144"),))


class Producer:
    """aiokafka's refusals: no key and no value (assert), a record over max_request_size."""

    def __init__(self, max_bytes: int = 4096, fail_first: int = 0) -> None:
        self.max_bytes = max_bytes
        self.fail_first = fail_first
        self.sent: list[dict[str, Any]] = []
        self.attempts = 0

    async def send_and_wait(
        self, topic: str, value: bytes | None, key: bytes | None, headers: list
    ) -> None:
        self.attempts += 1
        assert not (value is None and key is None), "Need at least one: key or value"
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v or b"") for k, v in headers)
        if size > self.max_bytes:
            raise MessageSizeTooLargeError(f"{size} bytes")
        if self.attempts <= self.fail_first:
            raise KafkaConnectionError("broker away")
        self.sent.append({"topic": topic, "value": value, "key": key, "headers": headers})


def record(value: bytes | None, key: bytes | None, headers: list) -> ConsumerRecord:
    return ConsumerRecord(
        topic="req", partition=1, offset=7, timestamp=0, timestamp_type=0, key=key,
        value=value, checksum=None, serialized_key_size=-1, serialized_value_size=-1,
        headers=headers,
    )  # fmt: skip


def publisher(producer: Producer) -> tuple[DeadLetterPublisher, list[Any], list[float]]:
    events = EventBus()
    seen: list[Any] = []
    events.subscribe(seen.append)
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    return DeadLetterPublisher(producer, "req.dlq", events, sleep=sleep), seen, sleeps


async def test_a_copy_too_large_for_the_topic_is_sent_once_without_the_original() -> None:
    producer = Producer(max_bytes=4096)
    dlq, events, sleeps = publisher(producer)
    headers = [("traceparent", TRACEPARENT), ("big", b"x" * 3000)]
    await dlq.publish(record(b"{" * 3000, b"k" * 100, headers), INVALID)

    [sent] = producer.sent
    assert sent["value"] is None and sent["key"] == b""
    got = dict(sent["headers"])
    assert got["traceparent"] == TRACEPARENT, "the copy stays correlated"
    assert "big" not in got
    assert got[DLQ_SOURCE] == b"req/1/7" and got[DLQ_FIELD] == b"(message)"
    assert got[DLQ_REASON].startswith(b"(message): 300000 bytes")
    assert got[DLQ_OMITTED] == b"value (3000 bytes), key (100 bytes), headers (2, 3069 bytes)"
    assert producer.attempts == 2 and sleeps == [], "no backoff: the second try is different"
    assert [type(e) for e in events] == [MessageDeadLettered]


async def test_a_copy_that_fits_is_byte_for_byte_the_original() -> None:
    producer = Producer()
    dlq, _, _ = publisher(producer)
    await dlq.publish(record(b"{bad", b"k", [("traceparent", TRACEPARENT)]), INVALID)
    [sent] = producer.sent
    assert sent["value"] == b"{bad" and sent["key"] == b"k"
    assert DLQ_OMITTED not in dict(sent["headers"])


async def test_a_keyless_tombstone_gets_an_empty_key_not_an_endless_retry() -> None:
    producer = Producer()
    dlq, events, sleeps = publisher(producer)
    await dlq.publish(record(None, None, []), InvalidMessage((FieldError("(message)", "x"),)))
    [sent] = producer.sent
    assert sent["value"] is None and sent["key"] == b""
    assert producer.attempts == 1 and sleeps == [] and len(events) == 1


async def test_a_failing_broker_is_still_retried_with_backoff() -> None:
    producer = Producer(fail_first=3)
    dlq, events, sleeps = publisher(producer)
    await dlq.publish(record(b"{bad", b"k", []), INVALID)
    assert sleeps == [0.2, 0.4, 0.8] and len(producer.sent) == 1 and len(events) == 1


async def test_a_reduced_copy_that_still_does_not_fit_backs_off_instead_of_spinning() -> None:
    producer = Producer(max_bytes=10)  # smaller than our own headers: never in practice
    dlq, _, sleeps = publisher(producer)

    async def give_up(s: float) -> None:
        sleeps.append(s)
        if len(sleeps) == 3:
            raise RuntimeError("stop")  # stands for the stop that cancels the worker

    dlq._sleep = give_up
    with pytest.raises(RuntimeError):
        await dlq.publish(record(b"{bad", b"k", []), INVALID)
    assert sleeps == [0.2, 0.4, 0.8] and producer.sent == []
