"""Invalid messages go to the dead-letter topic, with their headers and the reason.

The dead-letter copy must exist before the original's offset can be committed (bad input
loses nothing), so a failed produce is retried with capped exponential backoff until it
succeeds or the worker is cancelled by a stop (then nothing is committed: redelivered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.structs import ConsumerRecord

from netscope.contract.records import dead_letter_headers
from netscope.contract.request import InvalidMessage
from netscope.observability.events import EventBus, MessageDeadLettered

log = logging.getLogger(__name__)

_DLQ_PREFIX = "netscope-dlq-"


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
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith(_DLQ_PREFIX)]
        headers += dead_letter_headers(
            invalid.reason, invalid.field, record.topic, record.partition, record.offset
        )
        backoff = self._initial_backoff_s
        while True:
            try:
                await self._producer.send_and_wait(
                    self.topic, value=record.value, key=record.key, headers=headers
                )
                break
            except Exception as exc:
                log.error("dead-letter produce failed, retrying in %.1fs: %s", backoff, exc)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
        self._events.publish(
            MessageDeadLettered(
                record.topic, record.partition, record.offset, invalid.field, invalid.reason
            )
        )
