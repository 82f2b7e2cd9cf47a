"""Backpressure as a pure decision: should consumption be paused now, and why.

Ingest pauses (the assigned partitions, never dropping anything) when the queue of messages
fetched but not yet durably audited reaches ``queue_depth``, when the audit spool refuses
batches, when the idempotency ledger does not answer (nothing may be called without a claim),
or when an operator throttled ingest to 0. Queue pauses have hysteresis: resuming
waits until the queue is below ``resume_ratio`` of the bound, so a queue hovering at the bound
does not flap pause/resume on every fetch. The fetcher applies the decision to the consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

from netscope.observability.events import PauseReason

RESUME_RATIO = 0.8


@dataclass(slots=True, frozen=True)
class FlowChange:
    previous: PauseReason | None
    current: PauseReason | None


class FlowControl:
    def __init__(self, queue_depth: int, resume_ratio: float = RESUME_RATIO) -> None:
        if queue_depth < 1 or not 0 < resume_ratio <= 1:
            raise ValueError("need queue_depth >= 1 and 0 < resume_ratio <= 1")
        self.queue_depth = queue_depth
        self.resume_ratio = resume_ratio
        self.reason: PauseReason | None = None

    @property
    def paused(self) -> bool:
        return self.reason is not None

    def room(self, pending: int) -> int:
        """How many more records a fetch may take before the queue is full."""
        return max(0, self.queue_depth - pending)

    def update(
        self,
        *,
        pending: int,
        spool_full: bool,
        throttle_paused: bool,
        ledger_down: bool = False,
    ) -> FlowChange | None:
        """Decide from the current state; a :class:`FlowChange` only when the decision moved.

        The most severe reason wins: a full spool (the audit cannot take more), then a ledger
        down (nothing can be called), then an operator's pause, then a full queue.
        """
        reason: PauseReason | None = None
        if spool_full:
            reason = PauseReason.SPOOL_FULL
        elif ledger_down:
            reason = PauseReason.LEDGER_UNAVAILABLE
        elif throttle_paused:
            reason = PauseReason.THROTTLE
        elif pending >= self.queue_depth or (
            self.reason is PauseReason.QUEUE_FULL
            and pending > self.queue_depth * self.resume_ratio
        ):
            reason = PauseReason.QUEUE_FULL
        if reason is self.reason:
            return None
        change = FlowChange(self.reason, reason)
        self.reason = reason
        return change
