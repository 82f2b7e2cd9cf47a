"""The stop's bounded steps and the event wait every background loop uses (runtime.py).

Python 3.11's ``asyncio.wait_for`` can lose a cancellation that meets a completing await: the
long noida fault run's committer loop survived the stop's cancel and the stop waited for it
until the process was SIGKILLed (docs/reliability.md, finding 10). These tests fail with
``wait_for`` in either place.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from netscope.runtime import CANCEL_GRACE_S, bounded_step, wait_event


async def _loop_on(event: asyncio.Event, rounds: list[int]) -> None:
    """The shape of the committer's loop: wait for a wake-up (or a tick), act, again."""
    while True:
        await wait_event(event, 10)
        event.clear()
        rounds.append(1)


async def test_a_cancellation_that_meets_the_event_is_kept() -> None:
    """The cancel arrives in the same loop iteration as the wake-up, at several offsets."""
    kept = 0
    trials = 40
    for i in range(trials):
        event, rounds = asyncio.Event(), []
        task = asyncio.create_task(_loop_on(event, rounds))
        for _ in range(i % 4):
            await asyncio.sleep(0)
        event.set()
        for _ in range((i // 4) % 3):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        kept += bool(done) and task.cancelled()
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
    assert kept == trials


async def test_wait_event_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


async def test_a_step_that_ignores_its_cancellation_is_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # what a lost cancellation looks like from outside

    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert await bounded_step("stubborn", stubborn(), 0.05) is False
    assert time.monotonic() - t0 < 0.05 + CANCEL_GRACE_S + 1.0
    assert "stubborn did not finish within 0.1s" in caplog.text
    assert "left behind" in caplog.text
    release.set()


async def test_a_step_that_ends_on_cancellation_is_not_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert await bounded_step("slow", asyncio.sleep(3600), 0.05) is False
    assert "slow did not finish" in caplog.text and "left behind" not in caplog.text


async def test_a_step_that_fails_or_is_cancelled_from_inside_lets_the_stop_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise ConnectionError("broker gone")

    async def cancelled_inside() -> None:
        raise asyncio.CancelledError

    with caplog.at_level(logging.WARNING):
        assert await bounded_step("commit", fails(), 1.0) is False
        assert await bounded_step("consumer close", cancelled_inside(), 1.0) is False
    assert "commit failed: ConnectionError: broker gone" in caplog.text
    assert "consumer close was cancelled from inside" in caplog.text
    assert await bounded_step("quick", asyncio.sleep(0), 1.0) is True


async def test_cancelling_the_stop_cancels_its_step() -> None:
    started = asyncio.Event()

    async def step() -> None:
        started.set()
        await asyncio.sleep(3600)

    inner = asyncio.ensure_future(step())
    stop = asyncio.create_task(bounded_step("step", inner, 3600))
    await started.wait()
    stop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stop
    await asyncio.wait({inner}, timeout=1.0)
    assert inner.cancelled()
