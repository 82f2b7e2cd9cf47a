"""How often a cancellation is lost by each way of waiting for an event with a timeout.

The committer, the spool drainer, the fetcher's pacing and the keyed scheduler's drain all
wait for an event with a timeout inside a loop that the stop cancels. On Python 3.11,
``asyncio.wait_for`` drops a cancellation that arrives as the awaited event is set: the loop
goes on and whoever waits for it after the cancel waits for good (docs/reliability.md,
finding 10). This counts, for each way, the trials in which the cancelled loop was still
running afterwards. The cancel is sent 0-4 loop iterations after the event is set.

    .venv/bin/python bench/wait_for_cancel.py [trials]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

from netscope.runtime import wait_event

Waiter = Callable[[asyncio.Event, float], Awaitable[object]]


async def with_wait_for(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)


async def lost(waiter: Waiter, trials: int) -> int:
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            await waiter(event, 10)
            event.clear()

    survivors = 0
    for i in range(trials):
        task = asyncio.create_task(loop())
        for _ in range(i % 5):
            await asyncio.sleep(0)
        event.set()
        for _ in range((i // 5) % 4):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.05)
        if not done:
            survivors += 1
            task.cancel()
            await asyncio.wait({task}, timeout=0.05)
    return survivors


async def main(trials: int) -> None:
    print(f"python {sys.version.split()[0]}, {trials} trials each")
    for name, waiter in (("asyncio.wait_for", with_wait_for), ("runtime.wait_event", wait_event)):
        n = await lost(waiter, trials)
        print(f"  {name:<20} cancellations lost: {n:>4} of {trials} ({n / trials:.0%})")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
