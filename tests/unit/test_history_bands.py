"""StateBand: the changes of a breaker (or degraded mode) with their exact times."""

from __future__ import annotations

import pytest

from netscope.api.bands import StateBand


def test_a_band_starts_in_its_initial_state() -> None:
    band = StateBand("closed")
    assert band.current == "closed"
    assert band.state_at(123.0) == "closed"
    assert band.window(0.0) == {"initial": "closed", "changes": []}


def test_changes_answer_the_state_at_any_time() -> None:
    band = StateBand("closed")
    band.change(10.0, "open", "failure_rate 60%")
    band.change(15.5, "half_open", "wait elapsed")
    band.change(16.0, "closed", "probes succeeded")
    assert [band.state_at(t) for t in (9.9, 10.0, 15.4, 15.5, 16.0, 99)] == [
        "closed", "open", "open", "half_open", "closed", "closed",
    ]  # fmt: skip
    assert band.changes[0].from_state == "closed" and band.changes[1].from_state == "open"


def test_a_window_starts_with_the_state_then_and_lists_later_changes() -> None:
    band = StateBand("closed")
    band.change(10.0, "open", "r1")
    band.change(20.0, "closed", "r2")
    assert band.window(12.0) == {"initial": "open", "changes": [[20.0, "closed", "r2"]]}
    assert band.window(5.0)["changes"] == [[10.0, "open", "r1"], [20.0, "closed", "r2"]]


def test_a_move_to_the_same_state_is_not_a_change_unless_said_where_from() -> None:
    band = StateBand("normal")
    band.change(1.0, "normal")
    assert band.changes == []
    band.change(2.0, "forced_open", "forced by alice", from_state="forced_open")
    assert len(band.changes) == 1


def test_a_late_change_is_put_in_its_place() -> None:
    band = StateBand("closed")
    band.change(10.0, "open")
    band.change(30.0, "closed")
    band.change(20.0, "half_open")  # published from another thread, arrived after
    assert [c.at for c in band.changes] == [10.0, 20.0, 30.0]
    assert band.state_at(25.0) == "half_open"
    assert band.changes[1].from_state == "open"


def test_pruning_forgets_old_changes_but_not_their_outcome() -> None:
    band = StateBand("closed", horizon_s=60.0)
    band.change(100.0, "open")
    band.change(130.0, "half_open")
    band.prune(now=185.0)  # horizon 125: the open is forgotten, still the state before
    assert [c.to_state for c in band.changes] == ["half_open"]
    assert band.state_at(110.0) == "open"
    assert band.window(0.0)["initial"] == "open"


def test_a_flapping_breaker_cannot_grow_the_band() -> None:
    band = StateBand("closed", max_changes=4)
    for i in range(1000):
        band.change(float(i), "open" if i % 2 == 0 else "closed")
    assert len(band.changes) == 4
    assert band.current == "closed"
    assert band.state_at(996.5) == "open"  # the kept part is exact
    assert band.state_at(0.0) == "closed"  # before it: the state the oldest kept left


def test_max_changes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StateBand("closed", max_changes=0)
