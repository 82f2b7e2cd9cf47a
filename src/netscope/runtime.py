"""How the long-running commands (run, upstream-sim, demo) drive their event loop, and how a
stop keeps each of its steps bounded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("netscope.stop")


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (a dependency on Linux and macOS): the same asyncio
    API with the I/O core in C, for processes bound by per-message socket work on one core."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def bounded_step(name: str, step: Awaitable[Any], timeout_s: float) -> bool:
    """Run one stop step within ``timeout_s``; False if it failed or ran out of time."""
    try:
        await asyncio.wait_for(step, timeout_s)
    except TimeoutError:
        log.warning("stop: %s did not finish within %.1fs; moving on", name, timeout_s)
        return False
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the stop itself is cancelled
        # A client that cancels its own work when its peer is gone (aiokafka's consumer
        # without a broker does): the step failed, the stop goes on.
        log.warning("stop: %s was cancelled from inside; moving on", name)
        return False
    except Exception as exc:
        log.warning("stop: %s failed: %s: %s", name, type(exc).__name__, exc)
        return False
    return True
