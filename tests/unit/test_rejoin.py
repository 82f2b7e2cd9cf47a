"""A stale generation keeps the member id, only in the task that read the answer
(ingest/rejoin.py). The coordinator here is a stand-in with aiokafka's attribute names; the
broker behaviour is proven in tests/integration/test_group_rejoin.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from netscope.ingest.rejoin import (
    ILLEGAL_GENERATION,
    NO_GENERATION,
    UNKNOWN_MEMBER_ID,
    only_stale_generation,
    rejoin_keeping_member_id,
)


def commit_answer(*codes: int) -> dict[str, Any]:
    """The shape of OffsetCommitResponse.to_object(): an error code per partition."""
    partitions = [{"partition": i, "error_code": code} for i, code in enumerate(codes)]
    return {"topics": [{"topic": "t", "partitions": partitions}]}


@pytest.mark.parametrize(
    ("answer", "stale"),
    [
        (commit_answer(ILLEGAL_GENERATION, ILLEGAL_GENERATION), True),
        (commit_answer(0, ILLEGAL_GENERATION), True),
        ({"error_code": ILLEGAL_GENERATION}, True),  # Heartbeat, SyncGroup
        (commit_answer(ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID), False),  # the id is gone too
        ({"error_code": UNKNOWN_MEMBER_ID}, False),
        (commit_answer(0, 0), False),
        ({"error_code": 27}, False),  # REBALANCE_IN_PROGRESS: aiokafka keeps the id already
        ({}, False),
    ],
)
def test_only_a_stale_generation_with_a_known_member_counts(answer: Any, stale: bool) -> None:
    assert only_stale_generation(answer) is stale


class _Answer:
    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def to_object(self) -> Any:
        return self.obj


class _Coordinator:
    """aiokafka's GroupCoordinator as far as rejoin.py touches it."""

    def __init__(self) -> None:
        self.generation = 7
        self.member_id = "m-1"
        self.rejoins = 0
        self.next_answer: Any = {}

    async def _send_req(self, request: Any) -> _Answer:
        return _Answer(self.next_answer)

    def reset_generation(self) -> None:  # aiokafka's: forgets both
        self.generation = NO_GENERATION
        self.member_id = ""
        self.request_rejoin()

    def request_rejoin(self) -> None:
        self.rejoins += 1


class _Consumer:
    def __init__(self) -> None:
        self._coordinator = _Coordinator()


async def _answered(coordinator: _Coordinator, answer: Any, resets: int = 1) -> None:
    """What aiokafka does with an answer: handle it in the task that sent the request."""
    coordinator.next_answer = answer
    await coordinator._send_req(object())
    for _ in range(resets):  # once per partition in an OffsetCommit answer
        coordinator.reset_generation()


async def test_a_stale_generation_rejoins_under_the_same_member_id() -> None:
    consumer = _Consumer()
    rejoin_keeping_member_id(consumer)
    coordinator = consumer._coordinator
    await _answered(coordinator, commit_answer(ILLEGAL_GENERATION, ILLEGAL_GENERATION), 2)
    assert (coordinator.generation, coordinator.member_id) == (NO_GENERATION, "m-1")
    assert coordinator.rejoins == 2


async def test_an_unknown_member_forgets_its_id_as_before() -> None:
    consumer = _Consumer()
    rejoin_keeping_member_id(consumer)
    coordinator = consumer._coordinator
    await _answered(coordinator, commit_answer(ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID))
    assert coordinator.member_id == ""


async def test_the_next_answer_in_the_task_ends_the_exception() -> None:
    consumer = _Consumer()
    rejoin_keeping_member_id(consumer)
    coordinator = consumer._coordinator
    await _answered(coordinator, {"error_code": ILLEGAL_GENERATION})
    assert coordinator.member_id == "m-1"
    await _answered(coordinator, {"error_code": 0})  # e.g. a LeaveGroup, then its reset
    assert coordinator.member_id == ""


async def test_a_reset_in_another_task_forgets_the_id() -> None:
    """The heartbeat task's UNKNOWN_MEMBER_ID must not inherit the commit task's answer."""
    consumer = _Consumer()
    rejoin_keeping_member_id(consumer)
    coordinator = consumer._coordinator
    read = asyncio.Event()
    go_on = asyncio.Event()

    async def committing() -> None:
        coordinator.next_answer = {"error_code": ILLEGAL_GENERATION}
        await coordinator._send_req(object())
        read.set()
        await go_on.wait()

    task = asyncio.create_task(committing())
    await read.wait()
    await asyncio.create_task(_reset(coordinator))  # while the committing task holds its flag
    go_on.set()
    await task
    assert coordinator.member_id == ""


async def _reset(coordinator: _Coordinator) -> None:
    coordinator.reset_generation()


def test_an_unknown_coordinator_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    class Bare:
        _coordinator = object()

    with caplog.at_level(logging.WARNING):
        rejoin_keeping_member_id(Bare())
    assert "not the one known here" in caplog.text
    consumer = type("NoGroup", (), {"_coordinator": None})()
    rejoin_keeping_member_id(consumer)  # no group: nothing to do, nothing said
