"""Many awaiting callers, one round trip: a micro-batcher (the DataLoader pattern).

Every message of a fetch claims its key from its own worker; the fetcher hands the whole
fetch to the workers in one loop turn, so collecting what arrived during that turn and sending
it as one batch gives "one round trip per fetch" without the fetcher knowing about the ledger.
While a batch is in flight the next one fills up, so a slow ledger sees fewer, bigger batches
instead of more round trips.

Hand-written: it is twenty lines around ``asyncio.Future`` and no library does exactly this
(aiodataloader adds caching and keys we must not have).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    def __init__(
        self, send: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *, max_batch: int = 500
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # round trips made (tests and the bench read it)

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        live: list[tuple[T, asyncio.Future[R]]] = []
        try:
            await asyncio.sleep(0)  # let the rest of this loop turn's callers join
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                live = [(item, fut) for item, fut in batch if not fut.cancelled()]
                if not live:
                    continue
                self.batches += 1
                try:
                    results = await self._send([item for item, _ in live])
                except Exception as exc:  # every caller of the batch learns it
                    for _, fut in live:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), result in zip(live, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        except asyncio.CancelledError:  # shutting down: nobody will send what waits
            for _, fut in [*live, *self._pending]:
                fut.cancel()
            self._pending.clear()
            raise
        finally:
            self._flusher = None
