"""How the long-running commands (run, upstream-sim, demo) drive their event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (a dependency on Linux and macOS): the same asyncio
    API with the I/O core in C, for processes bound by per-message socket work on one core."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
