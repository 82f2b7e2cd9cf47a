"""Bulkhead: bounded concurrency counter."""

from __future__ import annotations

import pytest

from netscope.resilience.bulkhead import Bulkhead


def test_acquire_up_to_limit() -> None:
    bulkhead = Bulkhead(2)
    assert bulkhead.try_acquire()
    assert bulkhead.try_acquire()
    assert not bulkhead.try_acquire()
    assert (bulkhead.in_use, bulkhead.available, bulkhead.max_concurrent) == (2, 0, 2)


def test_release_frees_a_slot() -> None:
    bulkhead = Bulkhead(1)
    bulkhead.try_acquire()
    bulkhead.release()
    assert (bulkhead.in_use, bulkhead.available) == (0, 1)
    assert bulkhead.try_acquire()


def test_over_release_is_a_bug() -> None:
    bulkhead = Bulkhead(1)
    with pytest.raises(RuntimeError):
        bulkhead.release()
    assert bulkhead.in_use == 0


def test_shrink_below_in_use_drains() -> None:
    bulkhead = Bulkhead(3)
    for _ in range(3):
        bulkhead.try_acquire()
    bulkhead.resize(1)
    assert bulkhead.available == 0
    assert not bulkhead.try_acquire()
    bulkhead.release()
    bulkhead.release()
    assert not bulkhead.try_acquire()  # still 1 in use == limit
    bulkhead.release()
    assert bulkhead.try_acquire()


def test_grow_admits_more() -> None:
    bulkhead = Bulkhead(1)
    bulkhead.try_acquire()
    bulkhead.resize(2)
    assert bulkhead.try_acquire()


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_validation(value: object) -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        Bulkhead(value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_concurrent"):
        Bulkhead(1).resize(value)  # type: ignore[arg-type]
