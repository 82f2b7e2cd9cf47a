"""The pipeline's read model: what the API, the dashboard, the demo and the sampled gauges see.

Readers get this snapshot, never the pipeline's internals or Prometheus values read back as
state. Building it is cheap and never touches the disk: the spool figures are the last ones
the sampler read (in a thread, off the event loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, frozen=True)
class SpoolStatus:
    bytes: int = 0
    segments: int = 0
    pending_entries: int = 0
    oldest_pending_age_s: float | None = None
    free_disk_bytes: int = 0
    quarantined_segments: int = 0
    full: bool = False  # refusing appends (capacity or free-disk floor), or holding a batch


@dataclass(slots=True, frozen=True)
class KafkaStatus:
    connected: bool  # the consumer is started
    joined: bool  # the group has given this process an assignment (possibly empty)
    broker_reachable: bool  # the last broker round trip succeeded recently
    broker_detail: str
    assigned: tuple[tuple[str, int], ...]
    # Broker end offset minus committed offset per assigned partition (absent until the
    # first lag sample of that partition).
    lag: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())


@dataclass(slots=True, frozen=True)
class LedgerStatus:
    backend: str  # "none" when the ledger is off
    available: bool
    detail: str = ""


@dataclass(slots=True, frozen=True)
class PipelineStatus:
    instance_id: str
    queue_depth: int  # fetched, not yet durably audited
    queue_capacity: int
    in_flight: int  # dispatched, no terminal outcome yet
    processed: int
    paused_reason: str | None
    ingest_rate_per_s: float
    audit_degraded: bool
    audit_store: str
    spool: SpoolStatus
    kafka: KafkaStatus
    breakers: dict[str, str]
    ledger: LedgerStatus = LedgerStatus("none", True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``GET /api/status`` (flat keys kept for existing readers)."""
        spool = self.spool
        rate = self.ingest_rate_per_s
        return {
            "instance_id": self.instance_id,
            "queue_depth": self.queue_depth,
            "queue_capacity": self.queue_capacity,
            "in_flight": self.in_flight,
            "consumer_lag": self.kafka.total_lag,
            "consumer_lag_by_partition": {
                f"{t}/{p}": lag for (t, p), lag in sorted(self.kafka.lag.items())
            },
            "assigned_partitions": [f"{t}/{p}" for t, p in self.kafka.assigned],
            "paused_reason": self.paused_reason,
            # JSON has no infinity: null means unlimited.
            "ingest_rate_per_s": None if rate == float("inf") else rate,
            "audit_degraded": self.audit_degraded,
            "audit_store": self.audit_store,
            "spool_bytes": spool.bytes,
            "spool_pending_entries": spool.pending_entries,
            "spool_oldest_age_s": spool.oldest_pending_age_s,
            "spool_free_disk_bytes": spool.free_disk_bytes,
            "spool_full": spool.full,
            "processed": self.processed,
            "breakers": dict(self.breakers),
            "ledger": {
                "backend": self.ledger.backend,
                "available": self.ledger.available,
                "detail": self.ledger.detail,
            },
        }


@dataclass(slots=True)
class StopSummary:
    """What a stop left behind (logged by ``netscope run``, printed by the demo)."""

    processed: int
    abandoned: int  # in flight when the drain timeout ran out: will be redelivered
    audit_pending: int  # fetched but not durably audited: will be redelivered
    committed: dict[str, int]
    clean: bool


def spool_status(stats: Any, holding: bool) -> SpoolStatus:
    """From ``Spool.stats()`` (read in a thread) and whether the writer holds a refused batch."""
    return SpoolStatus(
        bytes=stats.bytes,
        segments=stats.segments,
        pending_entries=stats.pending_entries,
        oldest_pending_age_s=stats.oldest_pending_age_s,
        free_disk_bytes=stats.free_disk_bytes,
        quarantined_segments=stats.quarantined_segments,
        full=bool(stats.full or holding),
    )


__all__ = [
    "KafkaStatus",
    "LedgerStatus",
    "PipelineStatus",
    "SpoolStatus",
    "StopSummary",
    "spool_status",
]
