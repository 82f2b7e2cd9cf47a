"""The one place where durable audit turns into committed Kafka offsets (at-least-once).

The audit writer reports, per partition, the next offset below which every record is durable;
this module commits exactly that, on an interval and whenever a batch became durable, and on
a rebalance: before a partition leaves, what is durable for it is committed and the rest is
left to the new owner (redelivered). It also knows the consumer lag, from the broker's end
offsets (correct before this process commits anything and while partitions are paused, when
the fetch high-watermark goes stale), and whether the broker still answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from aiokafka import ConsumerRebalanceListener, TopicPartition

from netscope.audit.keys import CONTROL_TOPIC
from netscope.observability.events import (
    CommitFailed,
    EventBus,
    OffsetsCommitted,
    PartitionsAssigned,
    PartitionsRevoked,
)
from netscope.status import KafkaStatus

log = logging.getLogger(__name__)

BROKER_PROBE_TIMEOUT_S = 3.0
BROKER_STALE_AFTER_S = 10.0  # no broker answer for this long: Kafka is not ready


class OffsetCommitter:
    def __init__(
        self,
        consumer: Any,
        writer: Any,
        events: EventBus,
        *,
        interval_s: float,
        revoke_flush_timeout_s: float,
        auto_offset_reset: Literal["earliest", "latest"] = "earliest",
        on_assigned: Callable[[list[TopicPartition]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._writer = writer
        self._events = events
        self._interval_s = interval_s
        self._revoke_flush_timeout_s = revoke_flush_timeout_s
        self._earliest = auto_offset_reset == "earliest"
        self._on_assigned = on_assigned
        self._clock = clock
        self.committed: dict[TopicPartition, int] = {}
        self.joined = False  # the group gave us an assignment (possibly empty)
        self.lag: dict[TopicPartition, int] = {}
        self._start_offsets: dict[TopicPartition, int] = {}  # lag base before our 1st commit
        self._broker_ok_at: float | None = None
        self.broker_detail = "no broker round trip yet"

    # -- commits -----------------------------------------------------------------------------

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        offsets = {}
        for (topic, partition), offset in self._writer.committable().items():
            if topic == CONTROL_TOPIC:  # control events: audited, nothing to commit
                continue
            tp = TopicPartition(topic, partition)
            if only is not None and tp not in only:
                continue
            if self.committed.get(tp) != offset:
                offsets[tp] = offset
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as exc:
            self._events.publish(CommitFailed(f"{type(exc).__name__}: {exc}"[:300]))
            return
        self.committed.update(offsets)
        self._events.publish(
            OffsetsCommitted({(tp.topic, tp.partition): o for tp, o in offsets.items()})
        )

    async def run(self) -> None:
        """Commit whenever a batch became durable, at most every ``interval_s``."""
        while True:
            await self._writer.wait_durable(self._interval_s)
            await self.commit()

    # -- rebalance ---------------------------------------------------------------------------

    def listener(self) -> ConsumerRebalanceListener:
        return _Listener(self)

    def assigned(self, assigned: list[TopicPartition]) -> None:
        self.joined = True
        for tp in assigned:
            self._writer.assign(tp.topic, tp.partition)
        if self._on_assigned is not None:
            self._on_assigned(assigned)
        self._events.publish(
            PartitionsAssigned(_names(assigned), total=len(self._consumer.assignment()))
        )

    async def revoked(self, revoked: list[TopicPartition]) -> None:
        """Commit what is durable for the partitions leaving us; the rest is redelivered."""
        keys = [(tp.topic, tp.partition) for tp in revoked]
        self._writer.closing(keys)  # queued messages of these partitions will not start
        try:
            async with asyncio.timeout(self._revoke_flush_timeout_s):
                await self._writer.flush(keys)
        except TimeoutError:
            log.warning("revoke: audit flush timed out; undurable messages will be redelivered")
        await self.commit(only=set(revoked))
        self._writer.forget(keys)
        for tp in revoked:
            self.committed.pop(tp, None)
            self.lag.pop(tp, None)
            self._start_offsets.pop(tp, None)
        remaining = len(self._consumer.assignment()) - len(revoked)
        self._events.publish(PartitionsRevoked(_names(revoked), total=max(0, remaining)))

    # -- lag and broker liveness ---------------------------------------------------------------

    @property
    def broker_ok_age_s(self) -> float | None:
        """Seconds since the broker last answered a round trip (None: never yet)."""
        return None if self._broker_ok_at is None else self._clock() - self._broker_ok_at

    async def sample_lag(self) -> None:
        """End offset minus committed offset for each assigned partition, asked of the broker.

        Doubles as the broker liveness probe: aiokafka keeps its assignment when the broker
        goes away, so an assignment alone does not mean Kafka is there.
        """
        assigned = list(self._consumer.assignment())
        try:
            async with asyncio.timeout(BROKER_PROBE_TIMEOUT_S):
                if assigned:
                    ends = await self._consumer.end_offsets(assigned)
                    await self._learn_start_offsets(assigned)
                else:
                    ends = {}
                    await self._consumer.topics()  # a metadata round trip
        except Exception as exc:
            self.broker_detail = f"broker did not answer: {type(exc).__name__}: {exc}"[:300]
            return
        self._broker_ok_at = self._clock()
        self.broker_detail = "broker answers"
        for tp, end in ends.items():
            # A broker that under-reports end offsets (tansu does) is corrected by what the
            # fetches have seen; Apache Kafka's answer is never below the high-watermark.
            end = max(end, self._consumer.highwater(tp) or 0)
            base = self.committed.get(tp, self._start_offsets.get(tp))
            if base is not None:
                self.lag[tp] = max(0, end - base)

    async def _learn_start_offsets(self, assigned: list[TopicPartition]) -> None:
        """Before this process commits on a partition, lag counts from the group's committed
        offset, or from where consumption starts when the group has none."""
        known = self.committed.keys() | self._start_offsets.keys()
        unknown = [tp for tp in assigned if tp not in known]
        if not unknown:
            return
        missing = []
        for tp in unknown:
            offset = await self._consumer.committed(tp)
            if offset is None:
                missing.append(tp)
            else:
                self._start_offsets[tp] = offset
        if missing:
            starts = await (
                self._consumer.beginning_offsets(missing)
                if self._earliest
                else self._consumer.end_offsets(missing)
            )
            self._start_offsets.update(starts)

    def status(self, *, connected: bool) -> KafkaStatus:
        age = self.broker_ok_age_s
        assigned = self._consumer.assignment() if connected else set()
        return KafkaStatus(
            connected=connected,
            joined=self.joined,
            broker_reachable=age is not None and age <= BROKER_STALE_AFTER_S,
            broker_detail=self.broker_detail,
            assigned=_names(list(assigned)),
            lag={(tp.topic, tp.partition): lag for tp, lag in self.lag.items()},
        )

    async def lag_loop(self, interval_s: float = 1.0) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.sample_lag()
            await asyncio.sleep(interval_s)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, committer: OffsetCommitter) -> None:
        self._c = committer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._c.revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._c.assigned(list(assigned))


def _names(tps: list[TopicPartition]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((tp.topic, tp.partition) for tp in tps))
