"""SlotRing, the history's one series: a value per time slot, the newest ``size`` kept.

The property test drives it with random writes and reads against a plain dict that keeps
every slot, then forgets the ones the ring may not hold: the two must always agree."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netscope.api.ring import SlotRing


def test_a_new_ring_reads_its_fill_value() -> None:
    assert SlotRing(4).read(10, 13).tolist() == [0.0] * 4
    assert all(math.isnan(v) for v in SlotRing(4, math.nan).read(0, 2))
    assert SlotRing(4).newest is None


def test_counts_and_puts_land_in_their_slots_oldest_first() -> None:
    ring = SlotRing(5)
    ring.add(100)
    ring.add(100, 2)
    ring.add(102)
    ring.put(103, 7.5)
    assert ring.read(99, 104).tolist() == [0.0, 3.0, 0.0, 1.0, 7.5, 0.0]
    assert ring.newest == 103
    assert ring.get(100) == 3.0


def test_slots_skipped_are_cleared_not_left_from_a_lap_ago() -> None:
    ring = SlotRing(3)
    for slot in (0, 1, 2):
        ring.add(slot, 10 + slot)
    ring.add(4)  # slot 3 is skipped: its array cell held slot 0's value
    assert ring.read(2, 4).tolist() == [12.0, 0.0, 1.0]
    assert ring.read(0, 1).tolist() == [0.0, 0.0]  # forgotten, not wrong


def test_a_jump_past_the_whole_ring_clears_it() -> None:
    ring = SlotRing(4, math.nan)
    ring.put(1, 5)
    ring.put(50, 6)
    values = ring.read(47, 50)
    assert np.isnan(values[:3]).all() and values[3] == 6


def test_writes_older_than_what_is_kept_are_ignored() -> None:
    ring = SlotRing(3)
    ring.add(10)
    ring.add(7)  # 10 - 3: out of the ring
    ring.add(8)  # the oldest slot kept
    assert ring.read(8, 10).tolist() == [1.0, 0.0, 1.0]
    assert ring.newest == 10


def test_reads_of_empty_or_reversed_ranges_are_empty() -> None:
    ring = SlotRing(3)
    ring.add(1)
    assert ring.read(5, 4).size == 0


def test_memory_is_four_bytes_a_slot_whatever_is_written() -> None:
    ring = SlotRing(1800)
    for slot in range(0, 100_000, 7):
        ring.add(slot, 3)
    assert ring.nbytes == 1800 * 4 == 7200
    assert ring.read(0, 10).dtype == np.float32


def test_json_carries_nan_as_null() -> None:
    ring = SlotRing(3, math.nan)
    ring.put(1, 0.25)
    assert orjson.dumps(ring.read(0, 1), option=orjson.OPT_SERIALIZE_NUMPY) == b"[null,0.25]"


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SlotRing(0)


ops = st.lists(
    st.tuples(st.sampled_from(["add", "put", "read"]), st.integers(0, 60), st.integers(0, 9)),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 12), ops=ops)
def test_the_ring_agrees_with_a_dict_that_keeps_everything(size: int, ops: list) -> None:
    ring = SlotRing(size)
    model: dict[int, float] = {}
    newest: int | None = None
    for op, slot, amount in ops:
        if op == "read":
            first, last = slot, slot + amount
            expected = [
                model.get(s, 0.0) if newest is not None and newest - size < s <= newest else 0.0
                for s in range(first, last + 1)
            ]
            assert ring.read(first, last).tolist() == expected
            continue
        if newest is not None and slot <= newest - size:
            expected_ignored = True
        else:
            expected_ignored = False
            if newest is None or slot > newest:
                newest = slot
            model = {s: v for s, v in model.items() if s > newest - size}
        if expected_ignored:
            before = ring.read(slot, slot).tolist()
        if op == "add":
            ring.add(slot, amount)
            if not expected_ignored:
                model[slot] = model.get(slot, 0.0) + amount
        else:
            ring.put(slot, amount)
            if not expected_ignored:
                model[slot] = float(amount)
        if expected_ignored:
            assert ring.read(slot, slot).tolist() == before
        assert ring.newest == newest
