"""The log listener: state changes an on-call engineer wants in the log, each logged once.

Per-message events stay out of the log (metrics and the live stream carry them). Logic
modules publish events and never log these changes themselves, so nothing is logged twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from netscope.observability.events import (
    AuditTarget,
    AuditWriteFailed,
    BackpressureChanged,
    BreakerTransitioned,
    CommitFailed,
    DegradedModeChanged,
    IngestRateChanged,
    LeaseExpired,
    LedgerAvailabilityChanged,
    PartitionsAssigned,
    PartitionsRevoked,
)

log = logging.getLogger("netscope.events")


def _breaker(ev: BreakerTransitioned) -> None:
    log.warning("circuit %s: %s -> %s (%s)", ev.upstream, ev.from_state, ev.to_state, ev.reason)


def _degraded(ev: DegradedModeChanged) -> None:
    if ev.degraded:
        log.warning("audit store failing, degraded mode ON: writing to the local spool (%s)",
                    ev.reason)
    else:
        log.warning("audit store back, degraded mode OFF (%s)", ev.reason)


def _backpressure(ev: BackpressureChanged) -> None:
    # Info, not warning: under a backlog this is the normal rhythm of backpressure; the
    # netscope_ingest_paused gauge is what alerts watch.
    log.info("ingest %s: %s", "paused" if ev.paused else "resumed", ev.reason)


def _rate(ev: IngestRateChanged) -> None:
    rate = ev.rate_per_s
    if rate == 0:
        log.warning("ingest paused (rate 0): lift with `netscope admin throttle off` or a rate")
    else:
        log.warning("ingest rate limit set to %s",
                    "unlimited" if rate == float("inf") else f"{rate}/s")


def _assigned(ev: PartitionsAssigned) -> None:
    log.info("assigned %s (now %d)", [f"{t}/{p}" for t, p in ev.partitions], ev.total)


def _revoked(ev: PartitionsRevoked) -> None:
    log.info("revoked %s (now %d)", [f"{t}/{p}" for t, p in ev.partitions], ev.total)


def _commit_failed(ev: CommitFailed) -> None:
    log.warning("offset commit failed (retried at the next tick): %s", ev.error)


def _write_failed(ev: AuditWriteFailed) -> None:
    if ev.draining:
        what = "upload" if ev.target is AuditTarget.STORE else "spool read/ack"
        log.warning("spool drain %s failed (retried with backoff): %s: %s",
                    what, ev.reason, ev.detail)
    elif ev.target is AuditTarget.SPOOL:
        log.error("audit spool refused a batch, holding it (ingest pauses): %s: %s",
                  ev.reason, ev.detail)


def _ledger(ev: LedgerAvailabilityChanged) -> None:
    if ev.available:
        log.warning("idempotency ledger %s answers again: ingest resumes", ev.backend)
    else:
        log.error("idempotency ledger %s unavailable, ingest paused, nothing is called: %s",
                  ev.backend, ev.detail)


def _lease_expired(ev: LeaseExpired) -> None:
    # The key is being called again: the upstream may see it twice (same Idempotency-Key).
    log.warning("lease of key %s on %s ran out (takeover %d): calling it again",
                ev.idempotency_key, ev.upstream, ev.takeovers)


_HANDLERS: dict[type, Callable[[Any], None]] = {
    BreakerTransitioned: _breaker,
    DegradedModeChanged: _degraded,
    BackpressureChanged: _backpressure,
    IngestRateChanged: _rate,
    PartitionsAssigned: _assigned,
    PartitionsRevoked: _revoked,
    CommitFailed: _commit_failed,
    AuditWriteFailed: _write_failed,
    LedgerAvailabilityChanged: _ledger,
    LeaseExpired: _lease_expired,
}


def log_event(event: Any) -> None:
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(event)
