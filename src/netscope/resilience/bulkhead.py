"""Bulkhead: a bounded concurrency counter, pure (no asyncio).

Why: one slow upstream must not absorb every worker. Hand-written because an
``asyncio.Semaphore`` hides its count, cannot be resized at runtime and cannot
be used from synchronous code or tested without a loop; the I/O layer wraps
this counter with asyncio for bounded waits.
"""

from __future__ import annotations

__all__ = ["Bulkhead"]


class Bulkhead:
    """At most ``max_concurrent`` holders at a time."""

    def __init__(self, max_concurrent: int) -> None:
        self._check(max_concurrent)
        self._max = max_concurrent
        self._in_use = 0

    @staticmethod
    def _check(max_concurrent: int) -> None:
        if (isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int)
                or max_concurrent < 1):
            raise ValueError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")

    @property
    def max_concurrent(self) -> int:
        return self._max

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def available(self) -> int:
        """Free slots; 0 (never negative) while shrunk below in_use."""
        return max(0, self._max - self._in_use)

    def try_acquire(self) -> bool:
        """Take a slot if one is free; never blocks."""
        if self._in_use >= self._max:
            return False
        self._in_use += 1
        return True

    def release(self) -> None:
        """Return a slot. Releasing more than acquired is a caller bug and raises."""
        if self._in_use <= 0:
            raise RuntimeError("Bulkhead.release() without a matching try_acquire()")
        self._in_use -= 1

    def resize(self, max_concurrent: int) -> None:
        """Change the limit at runtime; holders above a shrunk limit drain naturally."""
        self._check(max_concurrent)
        self._max = max_concurrent
