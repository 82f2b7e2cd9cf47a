"""Per-partition audit lanes: from "fetched" to "committable", as pure state (no I/O, no tasks).

One lane per assigned partition. It answers the questions the audit must get right before any
byte is written:

1. Records complete in any order (keys run in parallel), but a lane *releases* them in fetch
   order only: the contiguous completed prefix of the fetched offsets, as Kafka commits need.
2. Released records fill the lane's open batch; a batch is sealed on record count, size, age
   or a change of event hour, so its boundaries depend only on the offsets and their
   timestamps (and on time, for the age).
3. Sealed batches wait in order; the I/O side (audit/writer.py) makes the head durable and
   calls :meth:`Lanes.durable`, and only then does the committable offset move past it.

``unreleased`` counts what is fetched and not yet durable (the backpressure measure). A lane
that is being revoked is ``closing``: what started is still taken, nothing new starts.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from netscope.audit.batch import Batch
from netscope.config import AuditConfig

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """When a batch is sealed (whichever comes first); an hour change always seals."""

    max_records: int
    max_bytes: int
    max_age_s: float

    @classmethod
    def from_config(cls, cfg: AuditConfig) -> BatchLimits:
        return cls(cfg.batch_max_records, cfg.batch_max_bytes, cfg.batch_max_delay_s)


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed batch waiting to become durable."""

    batch: Batch
    oldest_received_at: float  # wall time the batch's first record was consumed


# A completed record waiting for its turn: (event hour, JSON line, received_at). A plain tuple,
# not a dataclass: one is built per record, on the hot path.
_Done = tuple[str, bytes, float]


# eq=False: a lane is a token compared and hashed by identity (a lane from before a
# rebalance must not equal the new lane of the same partition).
@dataclass(slots=True, eq=False)
class Lane:
    topic: str
    partition: int
    fetched: deque[int] = field(default_factory=deque)  # fetch order, not yet released
    done: dict[int, _Done] = field(default_factory=dict)  # completed, waiting for order
    batch: Batch | None = None
    batch_received_at: float = 0.0
    sealed: deque[Sealed] = field(default_factory=deque)
    committable: int | None = None  # next offset to commit: everything below is durable
    unreleased: int = 0  # fetched but not yet durable
    closing: bool = False  # being revoked: finish what started, start nothing new
    key: TopicPartition = field(init=False)  # built once: owns() reads it for every record

    def __post_init__(self) -> None:
        self.key = (self.topic, self.partition)


class Lanes:
    """The lanes of the partitions assigned to this process."""

    def __init__(self, limits: BatchLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._lanes: dict[TopicPartition, Lane] = {}

    # -- membership --------------------------------------------------------------------------

    def assign(self, topic: str, partition: int) -> Lane:
        lane = self._lanes.get((topic, partition))
        if lane is None:  # not setdefault: track() calls this per record, a Lane is not free
            lane = self._lanes[(topic, partition)] = Lane(topic, partition)
        return lane

    def owns(self, lane: Lane) -> bool:
        """Whether ``lane`` is still the current lane of its partition (not revoked since)."""
        return self._lanes.get(lane.key) is lane

    def takes_work(self, lane: Lane) -> bool:
        return not lane.closing and self.owns(lane)

    def closing(self, partitions: Iterable[TopicPartition]) -> None:
        for key in partitions:
            if (lane := self._lanes.get(key)) is not None:
                lane.closing = True

    def forget(self, partitions: Iterable[TopicPartition]) -> list[Lane]:
        """Drop lanes; returns the dropped ones (their undurable records are redelivered)."""
        return [lane for key in partitions if (lane := self._lanes.pop(key, None)) is not None]

    def select(self, partitions: Iterable[TopicPartition] | None = None) -> list[Lane]:
        """The lanes of ``partitions`` that exist (all lanes when None)."""
        if partitions is None:
            return list(self._lanes.values())
        return [lane for key in partitions if (lane := self._lanes.get(key)) is not None]

    # -- records -----------------------------------------------------------------------------

    def track(self, topic: str, partition: int, offset: int) -> Lane:
        """A message was fetched: it holds back the commit until its record is durable."""
        lane = self._lanes.get((topic, partition)) or self.assign(topic, partition)
        lane.fetched.append(offset)
        lane.unreleased += 1
        return lane

    def complete(self, lane: Lane, offset: int, hour: str, line: bytes, received_at: float) -> bool:
        """The terminal record of a tracked offset; False (and ignored) if the lane is gone."""
        if not self.owns(lane):
            return False
        lane.done[offset] = (hour, line, received_at)
        self._release(lane)
        return True

    def _release(self, lane: Lane) -> None:
        limits = self._limits
        while lane.fetched and lane.fetched[0] in lane.done:
            offset = lane.fetched.popleft()
            hour, line, received_at = lane.done.pop(offset)
            if lane.batch is not None and lane.batch.hour != hour:
                self.seal(lane)
            if lane.batch is None:
                lane.batch = Batch(lane.topic, lane.partition, hour, opened_at=self._clock())
                lane.batch_received_at = received_at
            lane.batch.add(offset, line)
            if (
                len(lane.batch.offsets) >= limits.max_records
                or lane.batch.size_bytes >= limits.max_bytes
            ):
                self.seal(lane)

    # -- sealing and durability --------------------------------------------------------------

    def seal(self, lane: Lane) -> bool:
        """Seal the open batch, if any; True if one was sealed."""
        if lane.batch is None:
            return False
        lane.sealed.append(Sealed(lane.batch, lane.batch_received_at))
        lane.batch = None
        return True

    def seal_aged(self) -> list[Lane]:
        """Seal every open batch that reached its maximum age; returns the lanes sealed."""
        now = self._clock()
        max_age_s = self._limits.max_age_s
        aged = [
            lane
            for lane in self._lanes.values()
            if lane.batch is not None and now - lane.batch.opened_at >= max_age_s
        ]
        for lane in aged:
            self.seal(lane)
        return aged

    def durable(self, lane: Lane) -> Sealed:
        """The head of ``lane.sealed`` is durable: its offsets become committable."""
        sealed = lane.sealed.popleft()
        lane.committable = sealed.batch.last_offset + 1
        lane.unreleased -= len(sealed.batch.offsets)
        return sealed

    # -- read model --------------------------------------------------------------------------

    @property
    def pending_records(self) -> int:
        """Records fetched but not yet durable (in flight, waiting for order, or in a batch)."""
        return sum(lane.unreleased for lane in self._lanes.values())

    def committable(self) -> dict[TopicPartition, int]:
        return {
            key: lane.committable
            for key, lane in self._lanes.items()
            if lane.committable is not None
        }

    def partitions(self) -> list[TopicPartition]:
        return list(self._lanes)
