"""MicroBatcher: callers of one loop turn share one round trip; failures reach each caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from netscope.ledger.batching import MicroBatcher


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.sent = asyncio.Event()

    async def send(self, items: Sequence[int]) -> list[int]:
        self.calls.append(list(items))
        self.sent.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [i * 10 for i in items]


async def test_callers_of_one_loop_turn_share_one_round_trip() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec.send)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(100)))
    assert results == [i * 10 for i in range(100)]
    assert rec.calls == [list(range(100))]


async def test_batches_are_capped_at_max_batch() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec.send, max_batch=40)
    await asyncio.gather(*(batcher.submit(i) for i in range(100)))
    assert [len(c) for c in rec.calls] == [40, 40, 20]


async def test_callers_arriving_during_a_round_trip_form_the_next_batch() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    batcher = MicroBatcher(rec.send)
    first = [asyncio.create_task(batcher.submit(i)) for i in range(3)]
    await rec.sent.wait()
    later = [asyncio.create_task(batcher.submit(i)) for i in range(3, 8)]
    await asyncio.sleep(0)
    assert len(rec.calls) == 1  # the later ones wait for the first round trip
    rec.gate.set()
    assert await asyncio.gather(*first, *later) == [i * 10 for i in range(8)]
    assert rec.calls == [[0, 1, 2], [3, 4, 5, 6, 7]]


async def test_a_failed_round_trip_raises_in_every_caller_and_the_next_one_works() -> None:
    rec = Recorder()
    rec.fail = ConnectionError("down")
    batcher = MicroBatcher(rec.send)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    rec.fail = None
    assert await batcher.submit(7) == 70


async def test_a_cancelled_caller_is_left_out_of_the_batch() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec.send)
    gone = asyncio.create_task(batcher.submit(1))
    kept = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == 20
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert rec.calls == [[2]]
