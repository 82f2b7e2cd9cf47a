"""Backpressure decisions (ingest/flow.py): pure, no broker."""

from __future__ import annotations

import pytest

from netscope.ingest.flow import FlowChange, FlowControl
from netscope.observability.events import PauseReason


def update(flow: FlowControl, pending: int, *, spool_full: bool = False, throttle: bool = False):
    return flow.update(pending=pending, spool_full=spool_full, throttle_paused=throttle)


def test_pauses_at_the_bound_and_resumes_only_below_the_resume_ratio() -> None:
    flow = FlowControl(100)
    assert update(flow, 99) is None and not flow.paused
    assert update(flow, 100) == FlowChange(None, PauseReason.QUEUE_FULL)
    # Hysteresis: between 80 % and the bound it stays paused, with no change to report.
    assert update(flow, 90) is None and flow.reason is PauseReason.QUEUE_FULL
    assert update(flow, 81) is None and flow.paused
    assert update(flow, 80) == FlowChange(PauseReason.QUEUE_FULL, None)
    assert not flow.paused
    # Below the bound again, without a pause: no flapping on the way up either.
    assert update(flow, 95) is None and not flow.paused


def test_the_most_severe_reason_wins_and_each_move_is_reported_once() -> None:
    flow = FlowControl(10)
    assert update(flow, 10, throttle=True) == FlowChange(None, PauseReason.THROTTLE)
    assert update(flow, 10, throttle=True, spool_full=True) == FlowChange(
        PauseReason.THROTTLE, PauseReason.SPOOL_FULL
    )
    assert update(flow, 10, throttle=True, spool_full=True) is None
    assert update(flow, 10) == FlowChange(PauseReason.SPOOL_FULL, PauseReason.QUEUE_FULL)
    assert update(flow, 0) == FlowChange(PauseReason.QUEUE_FULL, None)


def test_a_throttle_pause_lifts_at_once_whatever_the_queue() -> None:
    flow = FlowControl(10)
    update(flow, 9, throttle=True)
    assert update(flow, 9) == FlowChange(PauseReason.THROTTLE, None)


def test_room_is_what_a_fetch_may_still_take() -> None:
    flow = FlowControl(10)
    assert flow.room(3) == 7
    assert flow.room(12) == 0


@pytest.mark.parametrize(("depth", "ratio"), [(0, 0.8), (10, 0.0), (10, 1.5)])
def test_bad_bounds_are_refused(depth: int, ratio: float) -> None:
    with pytest.raises(ValueError):
        FlowControl(depth, ratio)
