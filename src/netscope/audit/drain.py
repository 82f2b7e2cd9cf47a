"""Moves spooled audit objects to the object store once it answers again.

Why a separate drainer: the spool only promises durability; someone has to empty it
without ever giving an entry up. Every upload failure is treated as "retry later" (a
store that says 403 today may be fixed tomorrow; dropping would break the audit promise),
the oldest pending entry is retried first so nothing is skipped, and retries back off
exponentially with full jitter so a dead store is not hammered. Uploads must be
idempotent (deterministic key, ``If-None-Match: *``, 412 counts as success): a timed-out
PUT may still be applied by RGW, and an entry uploaded just before a crash is uploaded
again after restart because its ack had not been written yet.

Instrumentation is a hook (``on_event``) so this module knows nothing about Prometheus or
logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterator

from netscope.audit.spool import Spool, SpoolEntry

__all__ = ["SpoolDrainer"]

_log = logging.getLogger(__name__)

_DONE = object()


class SpoolDrainer:
    """Uploads pending spool entries oldest first; acks each one after its upload."""

    def __init__(
        self,
        spool: Spool,
        upload: Callable[[SpoolEntry], Awaitable[None]],
        *,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_event: Callable[[str, dict], None] | None = None,
        idle_poll_s: float = 5.0,
    ) -> None:
        if initial_backoff_s <= 0 or max_backoff_s < initial_backoff_s:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")
        self._spool = spool
        self._upload = upload
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._rand = rand
        self._sleep = sleep
        self._on_event = on_event
        # Safety net for appends nobody called wake() for; wake() is the fast path.
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self.drained_total = 0
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
                    self._failed(None, exc)
                    return count
                reading = False
                if entry is _DONE:
                    return count
                assert isinstance(entry, SpoolEntry)
                try:
                    await self._upload(entry)
                    await asyncio.to_thread(self._spool.ack, entry.ref)
                except Exception as exc:
                    self._failed(entry, exc)
                    return count
                count += 1
                self.drained_total += 1
                self.consecutive_failures = 0
                self._emit(
                    "drained",
                    {
                        "key": entry.key,
                        "segment": entry.ref.segment,
                        "offset": entry.ref.offset,
                        "bytes": len(entry.payload),
                        "appended_at": entry.appended_at,
                        "meta": entry.meta,
                    },
                )
                del entry  # keep at most one payload alive between iterations
        finally:
            # A cancelled to_thread leaves next() running in its thread; closing the
            # generator now would raise. Dropping it is enough: it holds no lock.
            if not reading:
                _close(it)

    def _failed(self, entry: SpoolEntry | None, exc: Exception) -> None:
        """entry is None when reading the spool itself failed."""
        self.failures_total += 1
        self.consecutive_failures += 1
        self.last_error = exc
        self._emit(
            "upload_failed",
            {
                "key": entry.key if entry else None,
                "segment": entry.ref.segment if entry else None,
                "offset": entry.ref.offset if entry else None,
                "error": repr(exc),
                "consecutive_failures": self.consecutive_failures,
            },
        )

    async def run(self) -> None:
        """Drain until cancelled: back off after a failure, otherwise wait for wake()."""
        while True:
            # Cleared before the pass, so a wake() during the pass triggers another one.
            self._wake.clear()
            failures_before = self.failures_total
            await self.drain_once()
            if self.failures_total != failures_before:
                delay_s = self.backoff_delay_s()
                self._emit(
                    "backoff",
                    {"delay_s": delay_s, "consecutive_failures": self.consecutive_failures},
                )
                await self._sleep(delay_s)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_poll_s)

    def _emit(self, name: str, fields: dict) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(name, fields)
        except Exception:
            # A broken metrics hook must not stop the audit from draining.
            _log.exception("spool drainer on_event hook failed", extra={"event": name})


def _close(it: Iterator[SpoolEntry]) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()
