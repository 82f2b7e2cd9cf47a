"""The key scheduler (ingest/keyed.py) with plain coroutines as the handler: no broker."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from netscope.ingest.keyed import KeyedScheduler


class Gate:
    """A handler whose calls block until released, recording what ran and when."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []
        self.running: dict[str, int] = defaultdict(int)
        self.max_running_per_key: dict[str, int] = defaultdict(int)
        self.max_running = 0
        self.release = asyncio.Event()
        self.changed = asyncio.Event()

    async def __call__(self, item: tuple[str, int]) -> None:
        key, _ = item
        self.started.append(item)
        self.running[key] += 1
        self.max_running_per_key[key] = max(self.max_running_per_key[key], self.running[key])
        self.max_running = max(self.max_running, sum(self.running.values()))
        self.changed.set()
        await self.release.wait()
        self.running[key] -= 1


async def until(predicate, timeout_s: float = 5.0) -> None:
    """Poll with a deadline, one loop turn at a time (the workers need turns to progress)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0)


async def test_one_key_runs_in_order_one_at_a_time_while_keys_run_concurrently() -> None:
    gate = Gate()
    scheduler: KeyedScheduler[tuple[str, int]] = KeyedScheduler(gate, workers=4)
    scheduler.start()
    try:
        for i in range(3):
            for key in ("a", "b"):
                scheduler.dispatch(key, (key, i))
        await until(lambda: len(gate.started) == 2)
        assert sorted(gate.started) == [("a", 0), ("b", 0)]  # one per key, both keys at once
        assert scheduler.outstanding == 6
        gate.release.set()
        assert await scheduler.wait_idle(5) == 0
        assert [i for k, i in gate.started if k == "a"] == [0, 1, 2]
        assert [i for k, i in gate.started if k == "b"] == [0, 1, 2]
        assert gate.max_running_per_key == {"a": 1, "b": 1}
    finally:
        await scheduler.stop()


async def test_the_pool_bounds_concurrency_across_keys() -> None:
    gate = Gate()
    scheduler: KeyedScheduler[tuple[str, int]] = KeyedScheduler(gate, workers=3)
    scheduler.start()
    try:
        for key in "abcdefgh":
            scheduler.dispatch(key, (key, 0))
        await until(lambda: len(gate.started) == 3)
        # Let the loop turn: no fourth call may start while three are blocked.
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(gate.started) == 3
        gate.release.set()
        assert await scheduler.wait_idle(5) == 0
        assert gate.max_running == 3 and len(gate.started) == 8
    finally:
        await scheduler.stop()


async def test_a_failing_handler_does_not_stop_the_key_or_the_worker() -> None:
    seen: list[int] = []

    async def handle(item: int) -> None:
        seen.append(item)
        if item == 1:
            raise RuntimeError("bug")

    scheduler: KeyedScheduler[int] = KeyedScheduler(handle, workers=1)
    scheduler.start()
    try:
        for i in range(3):
            scheduler.dispatch("k", i)
        assert await scheduler.wait_idle(5) == 0
        assert seen == [0, 1, 2]
        assert scheduler.active_keys == 0
    finally:
        await scheduler.stop()


async def test_wait_idle_reports_what_is_left_when_the_time_runs_out() -> None:
    gate = Gate()
    scheduler: KeyedScheduler[tuple[str, int]] = KeyedScheduler(gate, workers=2)
    scheduler.start()
    scheduler.dispatch("a", ("a", 0))
    scheduler.dispatch("a", ("a", 1))
    scheduler.dispatch("b", ("b", 0))
    await until(lambda: len(gate.started) == 2)
    assert await scheduler.wait_idle(0.05) == 3
    await scheduler.stop()  # abandons the blocked calls: their offsets are never committed
    assert scheduler.outstanding == 3


async def test_identity_keys_keep_keyless_items_apart() -> None:
    gate = Gate()
    scheduler: KeyedScheduler[tuple[str, int]] = KeyedScheduler(gate, workers=2)
    scheduler.start()
    try:
        a, b = ("x", 0), ("x", 1)
        scheduler.dispatch(object(), a)
        scheduler.dispatch(object(), b)
        await until(lambda: len(gate.started) == 2)  # distinct keys: both run at once
        gate.release.set()
        assert await scheduler.wait_idle(5) == 0
    finally:
        await scheduler.stop()


async def test_wait_below_wakes_as_soon_as_enough_finished() -> None:
    gate = Gate()
    scheduler: KeyedScheduler[tuple[str, int]] = KeyedScheduler(gate, workers=4)
    scheduler.start()
    try:
        for key in "abcd":
            scheduler.dispatch(key, (key, 0))
        await until(lambda: len(gate.started) == 4)
        waiter = asyncio.create_task(scheduler.wait_below(2, timeout_s=5))
        await asyncio.sleep(0)
        assert not waiter.done()
        gate.release.set()
        await asyncio.wait_for(waiter, 5)
        assert scheduler.outstanding <= 2
    finally:
        await scheduler.stop()
