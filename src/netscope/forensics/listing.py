"""``netscope audit ls``: what the audit holds for a period, from a listing alone.

The key layout (audit/keys.py) puts the event hour in the prefix, so a period is the
listing of its hour prefixes: nothing outside the window is listed and no object is read.
A key also names its topic, partition, first offset and replay run, which is enough for
counts, bytes and the offsets covered; the record count needs the objects themselves
(``--records`` reads them, with a progress bar).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from netscope.audit.keys import CONTROL_TOPIC, hour_prefix, parse_key
from netscope.audit.store import AuditStore


def hours_between(from_ms: int, to_ms: int) -> list[str]:
    """The event hours (``YYYY-MM-DD/HH``, UTC) that ``[from_ms, to_ms)`` touches."""
    start = datetime.fromtimestamp(from_ms / 1000, UTC).replace(minute=0, second=0, microsecond=0)
    end = datetime.fromtimestamp(to_ms / 1000, UTC)
    hours = []
    while start < end:
        hours.append(start.strftime("%Y-%m-%d/%H"))
        start += timedelta(hours=1)
    return hours


@dataclass(slots=True)
class HourListing:
    hour: str  # YYYY-MM-DD/HH
    objects: int = 0
    bytes: int = 0
    replay_objects: int = 0
    control_objects: int = 0  # control records (breaker, throttle, degraded, start/stop)
    other_keys: int = 0  # under the prefix but not NetScope's layout (named in the output)
    # (topic, partition) -> [first object's first offset, last object's first offset]
    partitions: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    runs: set[str] = field(default_factory=set)
    records: int | None = None  # only with --records

    def to_dict(self) -> dict[str, object]:
        return {
            "hour": self.hour,
            "objects": self.objects,
            "bytes": self.bytes,
            "replay_objects": self.replay_objects,
            "control_objects": self.control_objects,
            "replay_runs": sorted(self.runs),
            "other_keys": self.other_keys,
            "records": self.records,
            "partitions": {
                f"{t}/{p}": {"first_offset": lo, "last_object_first_offset": hi}
                for (t, p), (lo, hi) in sorted(self.partitions.items())
            },
        }


async def list_period(
    store: AuditStore, prefix: str, from_ms: int, to_ms: int
) -> AsyncIterator[tuple[HourListing, list[str]]]:
    """Per hour of the period, its listing and the keys of NetScope's objects in it."""
    for hour in hours_between(from_ms, to_ms):
        listing = HourListing(hour)
        keys: list[str] = []
        async for key, size in store.list_objects(hour_prefix(prefix, hour)):
            parsed = parse_key(key)
            if parsed is None:
                listing.other_keys += 1
                continue
            keys.append(key)
            listing.objects += 1
            listing.bytes += size
            if parsed.run_id is not None:
                listing.replay_objects += 1
                listing.runs.add(parsed.run_id)
            if parsed.topic == CONTROL_TOPIC:
                listing.control_objects += 1
                continue
            span = listing.partitions.setdefault(
                (parsed.topic, parsed.partition), [parsed.first_offset, parsed.first_offset]
            )
            span[0] = min(span[0], parsed.first_offset)
            span[1] = max(span[1], parsed.first_offset)
        yield listing, keys


async def count_records(
    store: AuditStore, keys: list[str], on_object: Callable[[], None] = lambda: None
) -> int:
    """Records in these objects (reads them: one line per record, not parsed)."""
    total = 0
    for key in keys:
        body = await store.get(key)
        if body[:2] == b"\x1f\x8b":
            body = zlib.decompress(body, wbits=31)
        total += sum(1 for line in body.splitlines() if line.strip())
        on_object()
    return total
