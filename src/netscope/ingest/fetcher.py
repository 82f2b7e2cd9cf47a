"""The fetch loop: Kafka records -> units of work, paced by backpressure and the throttle.

Every fetched record is tracked by the audit writer before it is dispatched, so its offset
holds back the commit until its record is durable. Backpressure pauses the assigned
partitions (the broker keeps the messages: nothing is dropped) and keeps polling while paused,
which aiokafka needs to stay in the group. The operator's throttle (runbook INC-01 step 4)
is a token bucket checked per record; at rate 0 it pauses ingest like backpressure does.

A stop ends the loop at once, whatever the consumer is doing: aiokafka's ``getmany`` ignores
its ``timeout_ms`` while the group rebalances (it waits for the next assignment, which a
member that never rejoins can hold off for ever), so every poll is raced against the stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from aiokafka import TopicPartition

from netscope.ingest.flow import FlowControl
from netscope.ingest.work import Work
from netscope.observability.events import BackpressureChanged, EventBus, IngestRateChanged
from netscope.resilience.clock import Clock
from netscope.resilience.limiter import TokenBucket
from netscope.runtime import wait_event

log = logging.getLogger(__name__)

PAUSED_POLL_S = 0.05
FETCH_TIMEOUT_MS = 100


class Fetcher:
    def __init__(
        self,
        consumer: Any,
        *,
        writer: Any,
        flow: FlowControl,
        dispatch: Callable[[Hashable, Work], None],
        in_progress: Callable[[], int] = lambda: 0,
        wait_below: Callable[[int, float], Awaitable[None]] | None = None,
        max_in_progress: int = 1 << 30,
        events: EventBus,
        clock: Clock,
        max_poll_records: int,
        rate_per_s: float = 0.0,
        start_paused: bool = False,
        ledger_available: Callable[[], bool] = lambda: True,
    ) -> None:
        """``rate_per_s`` 0 means unlimited, as in the config; ``start_paused`` sets it to 0
        (paused) until an operator lifts it (pipeline.start_paused)."""
        self._consumer = consumer
        self._writer = writer
        self._flow = flow
        self._dispatch = dispatch
        # Messages taken and not yet at their terminal outcome (queued per key or calling):
        # bounded apart from queue_depth, which also counts records waiting for their batch.
        self._in_progress = in_progress
        self._wait_below = wait_below or (lambda n, t: asyncio.sleep(t))
        self._max_in_progress = max_in_progress
        self._events = events
        self._clock = clock
        self._max_poll_records = max_poll_records
        self._ledger_available = ledger_available
        self.limiter = TokenBucket(float("inf"), 1, clock)
        self._stopping = asyncio.Event()
        if start_paused or rate_per_s > 0:  # a limit from the start is said, like any other
            self.set_rate(0.0 if start_paused else rate_per_s)

    # -- operator controls -------------------------------------------------------------------

    @property
    def paused_reason(self) -> str | None:
        """Why consumption is paused (queue_full, spool_full, ledger_unavailable, throttle),
        or None."""
        return self._flow.reason

    @property
    def rate_per_s(self) -> float:
        return self.limiter.rate_per_s

    def set_rate(self, rate_per_s: float | None, actor: str = "config") -> None:
        """Runbook INC-01 step 4: lower (0 pauses) or lift (None) the ingest rate at runtime."""
        self._set_limit(rate_per_s)
        self._events.publish(IngestRateChanged(self.limiter.rate_per_s, actor))

    def _set_limit(self, rate_per_s: float | None) -> None:
        rate = float("inf") if rate_per_s is None else rate_per_s
        burst = max(1, int(rate)) if rate not in (0, float("inf")) else 1
        self.limiter.set_rate(rate, burst)

    def stop(self) -> None:
        self._stopping.set()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Fetch until :meth:`stop`."""
        while not self._stopping.is_set():
            if self._backpressure():
                await self._wait_or_stop(PAUSED_POLL_S)
                # Keep polling while paused: aiokafka needs it to stay in the group.
                await self._poll(timeout_ms=0)
                continue
            if self._in_progress() >= self._max_in_progress:
                # Enough taken and not yet called to the end: a message fetched now would
                # only wait inside NetScope, its deadline and audit latency already running.
                await self._wait_below(self._max_in_progress // 2, PAUSED_POLL_S)
                continue
            room = min(
                self._flow.room(self._writer.pending_records),
                self._max_in_progress - self._in_progress(),
            )
            batches = await self._poll(
                timeout_ms=FETCH_TIMEOUT_MS,
                max_records=max(1, min(room, self._max_poll_records)),
            )
            limit = self.limiter
            for tp, records in batches.items():
                for record in records:
                    if not limit.unlimited:  # a check, not a coroutine, per record
                        await self._throttle()
                    self._take(tp, record)

    async def _poll(self, **kwargs: Any) -> dict[TopicPartition, list[Any]]:
        """``consumer.getmany`` or, once :meth:`stop` is called, nothing.

        During a group join aiokafka's getmany waits for the assignment and ignores its
        timeout, so a SIGTERM then would wait for the whole rebalance (for ever if a member
        never rejoins). A stop cancels the poll instead; what it had fetched is not taken,
        so it is neither tracked nor committed, and Kafka redelivers it.
        """
        if self._stopping.is_set():
            return {}
        poll = asyncio.ensure_future(self._consumer.getmany(**kwargs))
        poll.add_done_callback(_retrieve)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((poll, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            poll.cancel()  # no-op once done; otherwise it ends at its next step, unawaited
        if self._stopping.is_set() or poll.cancelled():
            return {}
        return poll.result()

    def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Partitions assigned while paused start paused."""
        if self._flow.paused and assigned:
            self._consumer.pause(*assigned)

    def _take(self, tp: TopicPartition, record: Any) -> None:
        work = Work(
            lane=self._writer.track(tp.topic, tp.partition, record.offset),
            topic=tp.topic,
            partition=tp.partition,
            record=record,
            received_at=time.time(),
            consumed_mono=self._clock.monotonic(),
            dispatched=time.perf_counter(),
        )
        self._dispatch(work.ordering_key, work)

    def _backpressure(self) -> bool:
        change = self._flow.update(
            pending=self._writer.pending_records,
            spool_full=self._writer.spool_full,
            throttle_paused=self.limiter.paused,
            ledger_down=not self._ledger_available(),
        )
        if change is not None:
            assigned = list(self._consumer.assignment())
            if change.current is None:
                self._consumer.resume(*assigned)
            else:
                self._consumer.pause(*assigned)
            if change.previous is not None:
                self._events.publish(BackpressureChanged(False, change.previous))
            if change.current is not None:
                self._events.publish(BackpressureChanged(True, change.current))
        return self._flow.paused

    async def _throttle(self) -> None:
        while not self.limiter.try_acquire():
            await self._wait_or_stop(min(self.limiter.wait_time_s(), 0.25))
            if self._stopping.is_set():
                return

    async def _wait_or_stop(self, seconds: float) -> None:
        await wait_event(self._stopping, seconds)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """A poll's failure is raised by the loop unless the stop dropped the poll first."""
    if not task.cancelled():
        task.exception()
