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
from enum import StrEnum
from typing import Any

from netscope.contract.outcomes import ErrorClass
from netscope.contract.records import AuditRecord
from netscope.resilience.retry import RetryReason

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class CallCompleted:
    """A message reached its terminal outcome (not yet durable in the audit)."""

    record: AuditRecord
    upstream_time_s: float  # time spent inside upstream attempts and retry waits
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class AttemptFinished:
    """One try against an upstream ended: with an HTTP status, or an error class, or both."""

    upstream: str
    status: int | None
    error_class: ErrorClass | None
    duration_s: float
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class RetryScheduled:
    upstream: str
    request_id: str
    trace_id: str
    attempt: int  # the attempt that failed
    reason: RetryReason
    detail: str  # human-readable, e.g. "status 503 (retry-after 0.2s)"
    delay_s: float
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class RetryDenied:
    upstream: str
    reason: RetryReason  # only the refusals an operator alerts on: budget, deadline
    detail: str
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class BreakerTransitioned:
    upstream: str
    from_state: str
    to_state: str
    reason: str
    created: float = field(default_factory=time.time)


class AuditTarget(StrEnum):
    STORE = "store"  # the object store (RGW)
    SPOOL = "spool"  # the local durable spool


class WriteResult(StrEnum):
    CREATED = "created"  # a new object (or spool entry) holds the batch
    ALREADY_PRESENT = "already_present"  # an earlier write held it: only the missing part went


@dataclass(slots=True, frozen=True)
class AuditBatchDurable:
    """A batch is durable (in the store or the spool); its offsets may be committed."""

    topic: str
    partition: int
    records: int
    bytes: int
    target: AuditTarget
    result: WriteResult
    write_s: float
    oldest_received_at: float
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class SpoolBatchUploaded:
    """The drainer moved one spooled batch to the store (the store is being written)."""

    key: str
    records: int
    bytes: int
    result: WriteResult
    spooled_for_s: float  # since it was appended to the spool
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class SpoolDrainPassed:
    """A drain pass moved spooled batches to the store (the audit control record
    ``spool_drained``: how the backlog of a degraded period went out)."""

    batches: int
    records: int
    complete: bool  # the pass reached the end of the spool (False: stopped at a failure)
    pending_batches_after: int | None  # None when the spool could not be read
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class AuditWriteFailed:
    """One write to the store or the spool failed (it is retried: nothing is dropped)."""

    target: AuditTarget
    reason: str  # exception class, e.g. StoreTimeout, GenericError, SpoolFull
    detail: str
    draining: bool = False  # the drainer's upload of a spooled batch, not a live batch
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class DegradedModeChanged:
    degraded: bool
    reason: str
    created: float = field(default_factory=time.time)


class PauseReason(StrEnum):
    QUEUE_FULL = "queue_full"
    SPOOL_FULL = "spool_full"
    THROTTLE = "throttle"
    LEDGER_UNAVAILABLE = "ledger_unavailable"


class LedgerOp(StrEnum):
    CLAIM = "claim"
    SETTLE = "settle"


@dataclass(slots=True, frozen=True)
class LedgerRoundTrip:
    """One batched round trip to the idempotency ledger, ended (``error`` set if it failed).

    ``results`` counts the answers by name: claim results (claimed, completed, in_progress,
    taken_over) or settle results (completed, released, lease_lost)."""

    op: LedgerOp
    items: int
    duration_s: float
    results: tuple[tuple[str, int], ...] = ()
    error: str | None = None
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class LeaseExpired:
    """A key's lease ran out before its call was settled (a crash mid-call, or a call that
    outlived deadline + margin): it is being called again, with the same Idempotency-Key."""

    upstream: str
    idempotency_key: str
    takeovers: int
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class LedgerAvailabilityChanged:
    """The ledger stopped (or resumed) answering: ingest pauses while it is down."""

    available: bool
    backend: str
    detail: str
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class BackpressureChanged:
    paused: bool
    reason: PauseReason
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class IngestRateChanged:
    rate_per_s: float  # inf = unlimited, 0 = paused
    actor: str = "config"  # who: "config" at start, else the operator (admin API caller)
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class InstanceStarted:
    """This process started consuming (or a replay started): written to the audit."""

    config_digest: str  # sha256 of the effective configuration, secrets masked
    version: str
    replay_run_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # a replay's window, rate, ...
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class InstanceStopping:
    """This process (or a replay) is stopping: the last control event it audits."""

    processed: int
    replay_run_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class MessageDeadLettered:
    topic: str
    partition: int
    offset: int
    field: str
    reason: str
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class MessageSkipped:
    """A queued message was not called because its partition was revoked meanwhile (the new
    owner calls it); it gets no record here and its offset is not committed here."""

    topic: str
    partition: int
    offset: int
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class PartitionsAssigned:
    partitions: tuple[tuple[str, int], ...]  # newly assigned
    total: int  # assigned to this process after the change
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class PartitionsRevoked:
    partitions: tuple[tuple[str, int], ...]
    total: int
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class OffsetsCommitted:
    offsets: dict[tuple[str, int], int]
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class CommitFailed:
    error: str
    created: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class StatusSampled:
    """The periodic read of state that is not an event (queue, spool, lag): gauges follow it.

    ``status`` is the pipeline's read model (netscope.status.PipelineStatus)."""

    status: Any
    created: float = field(default_factory=time.time)


Event = (
    CallCompleted
    | AttemptFinished
    | RetryScheduled
    | RetryDenied
    | BreakerTransitioned
    | AuditBatchDurable
    | SpoolBatchUploaded
    | AuditWriteFailed
    | DegradedModeChanged
    | BackpressureChanged
    | IngestRateChanged
    | MessageDeadLettered
    | MessageSkipped
    | PartitionsAssigned
    | PartitionsRevoked
    | OffsetsCommitted
    | CommitFailed
    | StatusSampled
    | LedgerRoundTrip
    | LeaseExpired
    | LedgerAvailabilityChanged
    | InstanceStarted
    | InstanceStopping
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
