"""One event model, many listeners (the stamina / resilience4j pattern).

The pipeline, the caller and the audit writer publish typed events; metrics, the WebSocket hub
and the logger subscribe. Logic modules never call Prometheus or the logger directly, so each
listener can be tested alone and a broken listener can never break the data path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netscope.contract.records import AuditRecord

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class CallCompleted:
    """A message reached its terminal outcome (not yet durable in the audit)."""

    record: AuditRecord
    upstream_time_s: float  # time spent inside upstream attempts and retry waits
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class RetryScheduled:
    upstream: str
    request_id: str
    trace_id: str
    attempt: int  # the attempt that failed
    reason: str
    delay_s: float
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class RetryDenied:
    upstream: str
    reason: str  # budget, deadline, non-idempotent, ...
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class BreakerTransitioned:
    upstream: str
    from_state: str
    to_state: str
    reason: str
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class AuditBatchDurable:
    """A batch is durable (in the store or the spool); its offsets may be committed."""

    topic: str
    partition: int
    records: int
    bytes: int
    where: str  # "store" | "already_present" | "spool"
    write_s: float
    oldest_received_at: float
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class AuditWriteFailed:
    reason: str  # error class, e.g. StoreTimeout, GenericError
    detail: str
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class DegradedModeChanged:
    degraded: bool
    reason: str
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class BackpressureChanged:
    paused: bool
    reason: str  # queue_full | spool_full | throttle
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class MessageDeadLettered:
    topic: str
    partition: int
    offset: int
    field: str
    reason: str
    created: float = field(default_factory=time.time)


Event = (
    CallCompleted
    | RetryScheduled
    | RetryDenied
    | BreakerTransitioned
    | AuditBatchDurable
    | AuditWriteFailed
    | DegradedModeChanged
    | BackpressureChanged
    | MessageDeadLettered
)
Listener = Callable[[Any], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener bug must not cost a message
                log.exception("event listener %r failed on %s", listener, type(event).__name__)
