"""Per-key queues served by a fixed pool of workers: order per key, concurrency across keys.

Messages of one key wait in that key's queue; a key with work sits in ``ready`` until a
worker takes it, and that worker drains the queue before taking another key. So two messages
of one key never run at once, and a fixed pool bounds concurrency without a task, semaphore
or done-callback per message (measured: those cost more than the call itself at saturation).

The handler is injected: this module knows nothing of Kafka, HTTP or the audit, so it is
tested with plain coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from netscope.runtime import wait_event

log = logging.getLogger(__name__)

W = TypeVar("W")


class KeyedScheduler(Generic[W]):
    def __init__(self, handle: Callable[[W], Awaitable[None]], *, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self._handle = handle
        self._size = workers
        self._queues: dict[Hashable, deque[W]] = {}
        self._ready: deque[Hashable] = deque()
        self._parked: deque[asyncio.Future[None]] = deque()  # idle workers
        self._workers: list[asyncio.Task[None]] = []
        self._outstanding = 0  # dispatched, handler not finished
        self._idle: asyncio.Event | None = None  # created by wait_idle()
        self._room: asyncio.Future[None] | None = None  # wait_below()'s waiter
        self._room_at = 0

    @property
    def outstanding(self) -> int:
        """Dispatched items whose handler has not returned yet (queued or running)."""
        return self._outstanding

    @property
    def active_keys(self) -> int:
        return len(self._queues)

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._worker(), name=f"worker-{i}") for i in range(self._size)
        ]

    async def stop(self) -> None:
        """Cancel the workers; what they were running is abandoned (never committed)."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def dispatch(self, key: Hashable, item: W) -> None:
        self._outstanding += 1
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(item)  # a worker holds or will take this key: in order
            return
        self._queues[key] = deque((item,))
        self._ready.append(key)
        while self._parked:
            worker = self._parked.popleft()
            if not worker.done():
                worker.set_result(None)
                break

    async def wait_idle(self, timeout_s: float) -> int:
        """Wait until nothing is outstanding or ``timeout_s`` passed; returns what is left."""
        if self._outstanding:
            self._idle = asyncio.Event()
            await wait_event(self._idle, timeout_s)
        return self._outstanding

    async def wait_below(self, n: int, timeout_s: float) -> None:
        """Wait until at most ``n`` items are outstanding (or ``timeout_s`` passed)."""
        if self._outstanding <= n:
            return
        self._room_at = n
        self._room = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._room
        self._room = None

    async def _worker(self) -> None:
        ready, parked = self._ready, self._parked
        loop = asyncio.get_running_loop()
        while True:
            if not ready:
                wake = loop.create_future()
                parked.append(wake)
                await wake
                continue
            key = ready.popleft()
            queue = self._queues[key]
            try:
                while queue:
                    try:
                        await self._handle(queue[0])
                    except Exception:  # the handler's own net failed: never commits past it
                        log.exception("processing failed; the message will be redelivered")
                    queue.popleft()
                    self._finished()
            finally:
                del self._queues[key]

    def _finished(self) -> None:
        self._outstanding -= 1
        room = self._room
        if room is not None and self._outstanding <= self._room_at and not room.done():
            room.set_result(None)
        if self._outstanding == 0 and self._idle is not None:
            self._idle.set()
