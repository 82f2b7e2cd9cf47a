"""Control events into the audit: the state changes an incident timeline needs beside calls.

A listener of the event bus, like metrics and logs: breaker transitions (with the reason and
the counts that triggered them, forced states and resets with who did it), throttle changes
(who), degraded mode entered or left (with the spool backlog then), each drain pass that
moved the spool's backlog to the store, and an instance's start
(with its configuration digest) and stop. Each becomes a ``ControlRecord`` the audit writer
makes durable like a call record (docs/audit-format.md, "Control records").
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import orjson

from netscope.audit.writer import AuditWriter
from netscope.config import Settings
from netscope.contract.records import ControlEvent, ControlRecord
from netscope.observability.events import (
    BreakerTransitioned,
    DegradedModeChanged,
    IngestRateChanged,
    InstanceStarted,
    InstanceStopping,
    SpoolDrainPassed,
)
from netscope.status import SpoolStatus


def config_digest(settings: Settings) -> str:
    """sha256 of the effective configuration; secrets are masked before hashing (pydantic
    dumps a SecretStr as '**********'), so the digest says "same config" without leaking."""
    dumped = settings.model_dump(mode="json")
    return "sha256:" + hashlib.sha256(orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)).hexdigest()


class ControlAudit:
    def __init__(
        self,
        writer: AuditWriter,
        *,
        instance_id: str | None,
        replay_run_id: str | None = None,
        spool: Callable[[], SpoolStatus] = SpoolStatus,
    ) -> None:
        self._writer = writer
        self._instance_id = instance_id
        self._replay_run_id = replay_run_id
        self._spool = spool

    def on_event(self, event: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(self, event)

    def _write(
        self,
        kind: ControlEvent,
        at: float,
        data: dict[str, Any],
        *,
        upstream: str | None = None,
        actor: str | None = None,
        replay_run_id: str | None = None,
    ) -> None:
        self._writer.control(
            ControlRecord(
                event=kind,
                at=at,
                instance_id=self._instance_id,
                data=data,
                upstream=upstream,
                actor=actor,
                replay_run_id=replay_run_id or self._replay_run_id,
            )
        )

    def _breaker(self, ev: BreakerTransitioned) -> None:
        by = None
        if ev.reason.startswith(("forced by ", "reset by ")):
            by = ev.reason.split(" by ", 1)[1]
        data = {"from": ev.from_state, "to": ev.to_state, "reason": ev.reason}
        self._write(ControlEvent.BREAKER_TRANSITION, ev.created, data, upstream=ev.upstream,
                    actor=by)  # fmt: skip

    def _throttle(self, ev: IngestRateChanged) -> None:
        rate = None if ev.rate_per_s == float("inf") else ev.rate_per_s  # JSON: null = unlimited
        self._write(ControlEvent.THROTTLE_CHANGED, ev.created, {"rate_per_s": rate},
                    actor=ev.actor)  # fmt: skip

    def _degraded(self, ev: DegradedModeChanged) -> None:
        spool = self._spool()
        data = {
            "degraded": ev.degraded,
            "reason": ev.reason,
            "spool_pending_batches": spool.pending_entries,
            "spool_bytes": spool.bytes,
            "spool_oldest_pending_age_s": spool.oldest_pending_age_s,
        }
        self._write(ControlEvent.DEGRADED_MODE, ev.created, data)

    def _drained(self, ev: SpoolDrainPassed) -> None:
        data = {
            "batches": ev.batches,
            "records": ev.records,
            "complete": ev.complete,
            "spool_pending_batches": ev.pending_batches_after,
        }
        self._write(ControlEvent.SPOOL_DRAINED, ev.created, data)

    def _started(self, ev: InstanceStarted) -> None:
        data = {"config_digest": ev.config_digest, "version": ev.version, **ev.detail}
        self._write(ControlEvent.INSTANCE_STARTED, ev.created, data,
                    replay_run_id=ev.replay_run_id)  # fmt: skip

    def _stopping(self, ev: InstanceStopping) -> None:
        data = {"processed": ev.processed, **ev.detail}
        self._write(ControlEvent.INSTANCE_STOPPING, ev.created or time.time(), data,
                    replay_run_id=ev.replay_run_id)  # fmt: skip

    _handlers: dict[type, Callable[[ControlAudit, Any], None]] = {
        BreakerTransitioned: _breaker,
        IngestRateChanged: _throttle,
        DegradedModeChanged: _degraded,
        SpoolDrainPassed: _drained,
        InstanceStarted: _started,
        InstanceStopping: _stopping,
    }
