"""One time series in one fixed float32 array: a value per time slot, the newest hour kept.

Why: the dashboard must answer "since when?" for a page opened late, without a time-series
database and without memory that grows with traffic or uptime. A slot is a fixed span of wall
time, numbered absolutely (``floor(t / step)``), so series written at different moments line
up without a shared cursor. The array is overwritten in a circle: a series costs
``4 * size`` bytes whatever the rate (1,800 slots of 2 s, an hour: 7 KiB).

A slot nobody wrote reads as the series' fill value: 0 for counts, NaN ("no data") for gauges
and percentiles, which JSON carries as null (orjson) and the charts draw as a gap.
"""

from __future__ import annotations

from array import array

import numpy as np
import numpy.typing as npt

Values = npt.NDArray[np.float32]


class SlotRing:
    """The newest ``size`` slots of one series; older slots are forgotten, never moved."""

    __slots__ = ("_cells", "_newest", "_values", "fill")

    def __init__(self, size: int, fill: float = 0.0) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.fill = fill
        # One buffer, two views: the array for the per-event writes (a Python float32 cell is
        # about 4x quicker to update than a numpy element), numpy for the vectorised reads.
        self._cells = array("f", [fill]) * size
        self._values: Values = np.frombuffer(self._cells, dtype=np.float32)
        self._newest: int | None = None  # absolute number of the newest slot written

    @property
    def size(self) -> int:
        return len(self._cells)

    @property
    def newest(self) -> int | None:
        return self._newest

    @property
    def nbytes(self) -> int:
        return int(self._values.nbytes)

    def add(self, slot: int, amount: float = 1.0) -> None:
        """Count ``amount`` into ``slot`` (a slot older than the kept ones is ignored)."""
        i = self._claim(slot)
        if i is not None:
            self._cells[i] += amount

    def put(self, slot: int, value: float) -> None:
        """Set ``slot``'s value (a gauge's last reading, a finished percentile)."""
        i = self._claim(slot)
        if i is not None:
            self._cells[i] = value

    def get(self, slot: int) -> float:
        return float(self.read(slot, slot)[0])

    def read(self, first: int, last: int) -> Values:
        """Values of slots ``first..last`` (inclusive), oldest first, as a new contiguous
        array: slots never written, forgotten or not yet reached read as the fill value."""
        n = last - first + 1
        if n <= 0:
            return np.empty(0, dtype=np.float32)
        out = np.full(n, self.fill, dtype=np.float32)
        if self._newest is None:
            return out
        lo = max(first, self._newest - self.size + 1)
        hi = min(last, self._newest)
        if lo <= hi:
            slots = np.arange(lo, hi + 1)
            out[slots - first] = self._values[slots % self.size]
        return out

    def _claim(self, slot: int) -> int | None:
        """The array index of ``slot``, clearing the slots skipped since the newest one."""
        size = len(self._cells)
        newest = self._newest
        if newest is None:
            self._newest = slot
            return slot % size
        if slot == newest:
            return slot % size
        if slot > newest:
            if slot - newest >= size:
                self._values.fill(self.fill)
            else:
                self._values[np.arange(newest + 1, slot + 1) % size] = self.fill
            self._newest = slot
        elif slot <= newest - size:
            return None  # older than what is kept
        return slot % size
