"""Per-partition lane state (audit/lanes.py), pure: no broker, no store, no event loop.

What the audit promises rests on these rules: records released in fetch order whatever order
they complete in, batches sealed on count, size, age or hour, and a committable offset that
moves only past batches declared durable, one after another.
"""

from __future__ import annotations

import pytest

from netscope.audit.lanes import BatchLimits, Lane, Lanes
from netscope.config import AuditConfig

H1 = "2024-05-01/10"
H2 = "2024-05-01/11"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(
    max_records: int = 100, max_bytes: int = 1 << 20, max_age_s: float = 1.0
) -> tuple[Lanes, FakeClock]:
    clock = FakeClock()
    return Lanes(BatchLimits(max_records, max_bytes, max_age_s), clock), clock


def line(offset: int, size: int = 10) -> bytes:
    return f"{offset:0{size}d}".encode()


def done(lanes: Lanes, lane: Lane, offset: int, hour: str = H1, at: float = 0.0) -> bool:
    return lanes.complete(lane, offset, hour, line(offset), at or float(offset))


def sealed_offsets(lane: Lane) -> list[list[int]]:
    return [s.batch.offsets for s in lane.sealed]


# --- release in fetch order ---------------------------------------------------------------------


def test_records_completed_in_order_fill_one_open_batch() -> None:
    lanes, clock = make()
    for o in range(3):
        lane = lanes.track("t", 0, o)
    for o in range(3):
        assert done(lanes, lane, o)
    assert lane.batch is not None
    assert lane.batch.offsets == [0, 1, 2]
    assert lane.batch.lines == [line(0), line(1), line(2)]
    assert lane.batch.opened_at == clock.now
    assert not lane.sealed and lane.committable is None


def test_out_of_order_completion_releases_only_the_contiguous_prefix() -> None:
    lanes, _ = make()
    for o in range(4):
        lane = lanes.track("t", 0, o)
    done(lanes, lane, 2)
    done(lanes, lane, 1)
    assert lane.batch is None, "nothing released while offset 0 is outstanding"
    done(lanes, lane, 0)
    assert lane.batch is not None and lane.batch.offsets == [0, 1, 2]
    done(lanes, lane, 3)
    assert lane.batch.offsets == [0, 1, 2, 3]
    assert not lane.done and not lane.fetched


def test_offsets_with_gaps_are_released_in_fetch_order() -> None:
    # Compaction and transaction markers leave holes: the order is the fetch order.
    lanes, _ = make()
    for o in (3, 5, 9):
        lane = lanes.track("t", 0, o)
    done(lanes, lane, 9)
    done(lanes, lane, 5)
    assert lane.batch is None
    done(lanes, lane, 3)
    assert lane.batch is not None and lane.batch.offsets == [3, 5, 9]


def test_batch_remembers_when_its_oldest_record_was_received() -> None:
    lanes, _ = make(max_records=2)
    for o in range(3):
        lane = lanes.track("t", 0, o)
    lanes.complete(lane, 1, H1, line(1), 11.0)
    lanes.complete(lane, 0, H1, line(0), 10.0)
    lanes.complete(lane, 2, H1, line(2), 12.0)
    assert [s.oldest_received_at for s in lane.sealed] == [10.0]
    assert lane.batch_received_at == 12.0


# --- sealing ----------------------------------------------------------------------------------


def test_seals_on_record_count() -> None:
    lanes, _ = make(max_records=2)
    for o in range(5):
        lane = lanes.track("t", 0, o)
        done(lanes, lane, o)
    assert sealed_offsets(lane) == [[0, 1], [2, 3]]
    assert lane.batch is not None and lane.batch.offsets == [4]


def test_seals_on_size() -> None:
    # Each line is 10 bytes + newline: the third one reaches 33 >= 30.
    lanes, _ = make(max_bytes=30)
    for o in range(4):
        lane = lanes.track("t", 0, o)
        done(lanes, lane, o)
    assert sealed_offsets(lane) == [[0, 1, 2]]
    assert lane.batch is not None and lane.batch.offsets == [3]


def test_an_hour_change_seals_so_a_batch_never_spans_two_hours() -> None:
    lanes, _ = make()
    for o in range(4):
        lane = lanes.track("t", 0, o)
    done(lanes, lane, 0, H1)
    done(lanes, lane, 1, H1)
    done(lanes, lane, 2, H2)
    done(lanes, lane, 3, H1)  # late event: its own batch again
    assert sealed_offsets(lane) == [[0, 1], [2]]
    assert [s.batch.hour for s in lane.sealed] == [H1, H2]
    assert lane.batch is not None and lane.batch.hour == H1 and lane.batch.offsets == [3]


def test_seal_aged_waits_for_the_age_of_the_open_batch() -> None:
    lanes, clock = make(max_age_s=1.0)
    a = lanes.track("t", 0, 0)
    done(lanes, a, 0)
    clock.now += 0.5
    b = lanes.track("t", 1, 0)
    done(lanes, b, 0)
    lanes.assign("t", 2)  # no open batch: never sealed
    clock.now += 0.49
    assert lanes.seal_aged() == []
    clock.now += 0.01
    assert lanes.seal_aged() == [a]
    assert sealed_offsets(a) == [[0]] and a.batch is None
    assert b.batch is not None
    clock.now += 0.5
    assert lanes.seal_aged() == [b]
    assert lanes.seal_aged() == []


def test_seal_without_open_batch_is_a_no_op() -> None:
    lanes, _ = make()
    lane = lanes.assign("t", 0)
    assert lanes.seal(lane) is False
    assert not lane.sealed
    lanes.track("t", 0, 0)
    done(lanes, lane, 0)
    assert lanes.seal(lane) is True
    assert lanes.seal(lane) is False
    assert sealed_offsets(lane) == [[0]]


# --- durability and committable offsets -------------------------------------------------------


def test_durable_pops_the_head_and_moves_the_committable_offset() -> None:
    lanes, _ = make(max_records=2)
    for o in range(5):
        lane = lanes.track("t", 0, o)
        done(lanes, lane, o)
    assert lane.unreleased == 5 and lanes.pending_records == 5
    assert lanes.committable() == {}
    first = lanes.durable(lane)
    assert first.batch.offsets == [0, 1]
    assert lane.committable == 2 and lanes.committable() == {("t", 0): 2}
    assert lane.unreleased == 3
    lanes.durable(lane)
    assert lanes.committable() == {("t", 0): 4}
    assert lanes.pending_records == 1  # offset 4, still in the open batch
    with pytest.raises(IndexError):
        lanes.durable(lane)  # nothing sealed: the I/O side never calls this


def test_committable_is_the_next_offset_after_a_gap() -> None:
    lanes, _ = make()
    for o in (7, 8, 12):
        lane = lanes.track("t", 0, o)
        done(lanes, lane, o)
    lanes.seal(lane)
    lanes.durable(lane)
    assert lanes.committable() == {("t", 0): 13}


def test_pending_records_count_in_flight_waiting_and_batched() -> None:
    lanes, _ = make(max_records=2)
    for o in range(5):
        a = lanes.track("t", 0, o)
    b = lanes.track("t", 1, 0)
    done(lanes, a, 0)
    done(lanes, a, 1)  # sealed
    done(lanes, a, 3)  # waiting for 2
    assert lanes.pending_records == 6
    done(lanes, b, 0)
    assert lanes.pending_records == 6, "a record counts until it is durable"
    lanes.durable(a)
    assert lanes.pending_records == 4


def test_partitions_and_committable_per_lane() -> None:
    lanes, _ = make(max_records=1)
    lanes.assign("t", 1)
    lane = lanes.track("t", 0, 0)
    done(lanes, lane, 0)
    lanes.durable(lane)
    assert sorted(lanes.partitions()) == [("t", 0), ("t", 1)]
    assert lanes.committable() == {("t", 0): 1}


# --- assignment, revoke ----------------------------------------------------------------------


def test_track_on_an_unassigned_partition_creates_its_lane() -> None:
    lanes, _ = make()
    lane = lanes.track("t", 3, 42)
    assert lanes.partitions() == [("t", 3)]
    assert lanes.assign("t", 3) is lane, "assign keeps an existing lane"
    assert lane.key == ("t", 3)


def test_closing_stops_new_work_but_still_takes_started_records() -> None:
    lanes, _ = make()
    lane = lanes.track("t", 0, 0)
    other = lanes.track("t", 1, 0)
    assert lanes.takes_work(lane)
    lanes.closing([("t", 0), ("t", 9)])  # unknown partitions are ignored
    assert not lanes.takes_work(lane)
    assert lanes.takes_work(other)
    assert lanes.owns(lane)
    assert done(lanes, lane, 0), "a started message's record is still taken"


def test_forget_drops_the_lane_and_its_token() -> None:
    lanes, _ = make()
    lane = lanes.track("t", 0, 0)
    lanes.track("t", 0, 1)
    assert lanes.forget([("t", 0), ("t", 5)]) == [lane]
    assert not lanes.owns(lane) and not lanes.takes_work(lane)
    assert done(lanes, lane, 0) is False
    assert lanes.pending_records == 0 and lanes.partitions() == []


def test_a_token_from_before_a_rebalance_does_not_leak_into_the_new_lane() -> None:
    lanes, _ = make()
    old = lanes.track("t", 0, 0)
    lanes.forget([("t", 0)])
    new = lanes.track("t", 0, 0)  # reassigned, the message is redelivered
    assert new is not old and new != old
    assert not lanes.owns(old) and lanes.owns(new)
    assert done(lanes, old, 0) is False
    assert new.batch is None and new.unreleased == 1
    assert done(lanes, new, 0)
    assert new.batch is not None and new.batch.offsets == [0]


def test_select_returns_existing_lanes_only() -> None:
    lanes, _ = make()
    a = lanes.assign("t", 0)
    b = lanes.assign("t", 1)
    assert lanes.select() == [a, b]
    assert lanes.select([("t", 1), ("t", 7)]) == [b]
    assert lanes.select([]) == []


def test_limits_from_config() -> None:
    cfg = AuditConfig(batch_max_records=7, batch_max_bytes=2048, batch_max_delay_s=0.5)
    assert BatchLimits.from_config(cfg) == BatchLimits(7, 2048, 0.5)
