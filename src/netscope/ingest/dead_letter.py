"""Invalid messages go to the dead-letter topic, with their headers and the reason.

The dead-letter copy must exist before the original's offset can be committed (bad input
loses nothing), so a failed produce is retried with capped exponential backoff until it
succeeds or the worker is cancelled by a stop (then nothing is committed: redelivered).

One failure is not retried as is: a copy too large for the dead-letter topic (the original
value, key and headers plus ours can pass the broker's or the producer's size limit even when
the original did not: noida refuses records over 1 MiB, a tansu topic takes values aiokafka's
producer refuses at 4 MiB). Retried, it would fail forever and hold its partition's commits
back (found by tests/integration/test_hostile_input.py). It is sent once more without the
original value, key and headers, with ``netscope-dlq-omitted`` saying what was left out: the
original stays readable at ``netscope-dlq-source`` in the requests topic (a ``traceparent``
header of sane size is kept, so the copy stays correlated).

aiokafka cannot produce a record with neither key nor value (an assertion, which the loop
above retried forever: a keyless tombstone written by another client stalled its partition).
Such a copy, and the reduced one, get an empty key instead of none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.structs import ConsumerRecord

from netscope.contract.records import dead_letter_headers
from netscope.contract.request import InvalidMessage
from netscope.observability.events import EventBus, MessageDeadLettered

log = logging.getLogger(__name__)

_DLQ_PREFIX = "netscope-dlq-"
DLQ_OMITTED = "netscope-dlq-omitted"  # only on a copy sent without the original's bytes
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


class DeadLetterPublisher:
    def __init__(
        self,
        producer: Any,
        topic: str,
        events: EventBus,
        *,
        initial_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._producer = producer
        self.topic = topic
        self._events = events
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep

    async def publish(self, record: ConsumerRecord, invalid: InvalidMessage) -> None:
        # The producer's own headers (traceparent first of all) travel with the dead letter,
        # so whoever replays it keeps the correlation; ours are replaced, never doubled.
        ours = dead_letter_headers(
            invalid.reason, invalid.field, record.topic, record.partition, record.offset
        )
        originals = [(k, v) for k, v in (record.headers or ()) if not k.startswith(_DLQ_PREFIX)]
        value, key, headers = record.value, _some_key(record.key, record.value), originals + ours
        backoff = self._initial_backoff_s
        reduced = False
        while True:
            try:
                await self._producer.send_and_wait(
                    self.topic, value=value, key=key, headers=headers
                )
                break
            except _TOO_LARGE as exc:
                if not reduced:  # once: ours alone are ~2 KiB at most
                    reduced = True
                    omitted = _omitted(record)
                    log.warning(
                        "dead letter of %s/%d/%d too large for %s (%s): sent without %s",
                        record.topic, record.partition, record.offset, self.topic, exc, omitted,
                    )  # fmt: skip
                    trace = [(k, v) for k, v in originals if k == "traceparent" and _small(v)]
                    value, key = None, b""
                    headers = [*trace[:1], *ours, (DLQ_OMITTED, omitted.encode())]
                    continue
                error: Exception = exc
            except Exception as exc:
                error = exc
            log.error("dead-letter produce failed, retrying in %.1fs: %s", backoff, error)
            await self._sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)
        self._events.publish(
            MessageDeadLettered(
                record.topic, record.partition, record.offset, invalid.field, invalid.reason
            )
        )


def _omitted(record: ConsumerRecord) -> str:
    headers = record.headers or ()
    header_bytes = sum(len(k) + len(v or b"") for k, v in headers)
    return (
        f"value ({len(record.value or b'')} bytes), key ({len(record.key or b'')} bytes), "
        f"headers ({len(headers)}, {header_bytes} bytes)"
    )


def _some_key(key: bytes | None, value: bytes | None) -> bytes | None:
    return b"" if key is None and value is None else key


def _small(value: bytes | None) -> bool:
    return value is not None and len(value) <= 512
