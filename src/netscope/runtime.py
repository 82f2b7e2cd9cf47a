"""How the long-running commands (run, upstream-sim, demo) drive their event loop, how a
stop keeps each of its steps bounded, and what it logs when something still hangs."""

from __future__ import annotations

import asyncio
import io
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


# How long a step that ran out of time gets to honour its cancellation before the stop
# leaves it behind.
CANCEL_GRACE_S = 1.0


async def bounded_step(name: str, step: Awaitable[Any], timeout_s: float) -> bool:
    """Run one stop step within ``timeout_s``; False if it failed or ran out of time.

    The bound holds whatever the step does with its cancellation: the step runs as a task,
    the stop waits for it with ``asyncio.wait`` and, past the bound, cancels it and waits
    ``CANCEL_GRACE_S`` at most. (``asyncio.wait_for`` waits for the cancelled step to end,
    and on Python 3.11 a cancellation that meets a completing await inside it can be lost:
    finding 10 in docs/reliability.md.)
    """
    task = asyncio.ensure_future(step)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:  # the stop itself is cancelled
        task.cancel()
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
        log.warning(
            "stop: %s did not finish within %.1fs; moving on%s",
            name,
            timeout_s,
            "" if task.done() else " (it has not ended on cancellation either: left behind)",
        )
        return False
    if task.cancelled():
        # A client that cancels its own work when its peer is gone (aiokafka's consumer
        # without a broker does): the step failed, the stop goes on.
        log.warning("stop: %s was cancelled from inside; moving on", name)
        return False
    exc = task.exception()
    if exc is not None:
        log.warning("stop: %s failed: %s: %s", name, type(exc).__name__, exc)
        return False
    return True


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """``event.wait()`` for at most ``timeout_s``; True when the event is set.

    Not ``asyncio.wait_for``: on Python 3.11 it drops a cancellation that arrives as the
    event is set (150 of 200 in a tight reproduction, ``bench/wait_for_cancel.py``), so a
    background loop cancelled by a stop went on waiting and the stop waited for it for good
    (finding 10 in docs/reliability.md). ``asyncio.timeout`` keeps the cancellation.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


def task_stacks(tasks: set[asyncio.Task[Any]] | None = None) -> str:
    """Where each task waits, innermost await last: the evidence for a stop that hangs.

    ``Task.print_stack`` shows only a suspended task's outermost frame; this follows the
    chain of awaited coroutines down to the future that has not resolved. Tasks waiting at
    the same place (the idle workers) are listed once.
    """
    by_stack: dict[str, list[str]] = {}
    for task in tasks if tasks is not None else asyncio.all_tasks():
        lines: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                if isinstance(awaited, asyncio.Task):
                    lines.append(f"    awaits task {awaited.get_name()!r}")
                elif not asyncio.iscoroutine(awaited):  # a future (its iterator, in C)
                    lines.append("    awaits a future")
                break
            code = frame.f_code
            lines.append(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        by_stack.setdefault("\n".join(lines), []).append(task.get_name())
    out = io.StringIO()
    for stack, names in sorted(by_stack.items(), key=lambda item: sorted(item[1])[0]):
        names.sort()
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        out.write(f"task {', '.join(names[:5])}{more}:\n{stack}\n")
    return out.getvalue()
