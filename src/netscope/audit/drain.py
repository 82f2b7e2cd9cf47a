"""Moves spooled audit objects to the object store once it answers again.

Why a separate drainer: the spool only promises durability; someone has to empty it
without ever giving an entry up. Every upload failure is treated as "retry later" (a
store that says 403 today may be fixed tomorrow; dropping would break the audit promise),
the oldest pending entry is retried first so nothing is skipped, and retries back off
exponentially with full jitter so a dead store is not hammered. Uploads must be
idempotent (the writer's ``upload_spooled``: deterministic key, ``If-None-Match: *``, a
taken key deduped as in audit/exactly_once.py): a timed-out PUT may still be applied by RGW,
and an entry uploaded just before a crash is uploaded again after restart because its ack
had not been written yet.

Instrumentation is typed events on the bus (``SpoolBatchUploaded`` after each upload,
``SpoolDrainPassed`` after a pass that moved something, ``AuditWriteFailed`` with
``draining=True`` for each failure), so this module knows nothing
about Prometheus or logging, and a long store outage keeps counting as write errors.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator

from netscope.audit.spool import Spool, SpoolEntry
from netscope.observability.events import (
    AuditTarget,
    AuditWriteFailed,
    EventBus,
    SpoolBatchUploaded,
    SpoolDrainPassed,
    WriteResult,
)
from netscope.runtime import wait_event

__all__ = ["SpoolDrainer"]

_DONE = object()
_DETAIL_MAX = 300


class SpoolDrainer:
    """Uploads pending spool entries oldest first; acks each one after its upload."""

    def __init__(
        self,
        spool: Spool,
        upload: Callable[[SpoolEntry], Awaitable[WriteResult]],
        *,
        events: EventBus | None = None,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        idle_poll_s: float = 5.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if initial_backoff_s <= 0 or max_backoff_s < initial_backoff_s:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")
        self._spool = spool
        self._upload = upload
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._rand = rand
        self._sleep = sleep
        self._events = events
        self._wall = wall  # the spool stamps entries with wall time (appended_at)
        # Safety net for appends nobody called wake() for; wake() is the fast path.
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self.drained_total = 0
        self.drained_records_total = 0
        self.failures_total = 0
        self.consecutive_failures = 0
        self.last_error: BaseException | None = None

    def wake(self) -> None:
        """Ask for a drain pass now (e.g. right after an append). Does not cut a backoff
        short: a failing store is not retried faster because more data arrived."""
        self._wake.set()

    def backoff_delay_s(self) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2**(failures-1)))."""
        exponent = max(0, self.consecutive_failures - 1)
        # min() before the power would overflow for very long outages.
        cap = self._max_backoff_s
        if exponent < 64:
            cap = min(cap, self._initial_backoff_s * 2.0**exponent)
        return cap * self._rand()

    async def drain_once(self) -> int:
        """Upload what can be uploaded, oldest first; stop at the first failure.
        Returns how many entries were uploaded and acked in this pass."""
        records_before, failures_before = self.drained_records_total, self.failures_total
        count = await self._pass()
        if count:
            # One event per pass that moved something: the backlog's drain, as the incident
            # report plots it (degraded mode left, then the spool emptied).
            try:
                left = (await asyncio.to_thread(self._spool.stats)).pending_entries
            except Exception:
                left = None
            self._publish(
                SpoolDrainPassed(
                    batches=count,
                    records=self.drained_records_total - records_before,
                    complete=self.failures_total == failures_before,
                    pending_batches_after=left,
                )
            )
        return count

    async def _pass(self) -> int:
        it = self._spool.iter_pending()
        count = 0
        reading = False
        try:
            while True:
                # Reading touches the disk: keep it off the event loop.
                reading = True
                try:
                    entry = await asyncio.to_thread(next, it, _DONE)
                except Exception as exc:
                    # A disk error must not kill the drainer: back off and rescan.
                    reading = False
                    self._failed(AuditTarget.SPOOL, exc)
                    return count
                reading = False
                if entry is _DONE:
                    return count
                assert isinstance(entry, SpoolEntry)
                if not await self._move(entry):
                    return count
                count += 1
                del entry  # keep at most one payload alive between iterations
        finally:
            # A cancelled to_thread leaves next() running in its thread; closing the
            # generator now would raise. Dropping it is enough: it holds no lock.
            if not reading:
                _close(it)

    async def _move(self, entry: SpoolEntry) -> bool:
        """Upload one entry, then ack it; False (reported) if either failed."""
        try:
            result = await self._upload(entry)
        except Exception as exc:
            self._failed(AuditTarget.STORE, exc)
            return False
        try:
            await asyncio.to_thread(self._spool.ack, entry.ref)
        except Exception as exc:
            # Uploaded but not acked: the entry is uploaded again, and deduped by its key.
            self._failed(AuditTarget.SPOOL, exc)
            return False
        self.drained_total += 1
        self.drained_records_total += int(entry.meta.get("records", 0))
        self.consecutive_failures = 0
        self._publish(
            SpoolBatchUploaded(
                key=entry.key,
                records=int(entry.meta.get("records", 0)),
                bytes=len(entry.payload),
                result=result,
                spooled_for_s=max(0.0, self._wall() - entry.appended_at),
            )
        )
        return True

    def _failed(self, target: AuditTarget, exc: Exception) -> None:
        """``target``: STORE when the upload failed, SPOOL when reading or acking did."""
        self.failures_total += 1
        self.consecutive_failures += 1
        self.last_error = exc
        self._publish(
            AuditWriteFailed(
                target=target,
                reason=type(exc).__name__,
                detail=str(exc)[:_DETAIL_MAX],
                draining=True,
            )
        )

    async def run(self) -> None:
        """Drain until cancelled: back off after a failure, otherwise wait for wake()."""
        while True:
            # Cleared before the pass, so a wake() during the pass triggers another one.
            self._wake.clear()
            failures_before = self.failures_total
            await self.drain_once()
            if self.failures_total != failures_before:
                await self._sleep(self.backoff_delay_s())
                continue
            await wait_event(self._wake, self._idle_poll_s)

    def _publish(self, event: SpoolBatchUploaded | SpoolDrainPassed | AuditWriteFailed) -> None:
        # The bus shields publishers from listener errors: a broken metric cannot stop a drain.
        if self._events is not None:
            self._events.publish(event)


def _close(it: Iterator[SpoolEntry]) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()
