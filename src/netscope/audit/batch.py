"""Encoding of one audit object: JSON Lines, one terminal record per line, optionally gzip.

docs/audit-format.md is the contract; readers rely on that page, not on this module.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

# Level 1: audit batches are small and the CPU is better spent on calls; ratio is still ~5x.
_GZIP_LEVEL = 1


@dataclass(slots=True)
class Batch:
    """Consecutive records of one partition and one event hour, in offset order."""

    topic: str
    partition: int
    hour: str
    offsets: list[int] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    size_bytes: int = 0
    opened_at: float = 0.0  # monotonic, for the age-based flush

    @property
    def first_offset(self) -> int:
        return self.offsets[0]

    @property
    def last_offset(self) -> int:
        return self.offsets[-1]

    def add(self, offset: int, line: bytes) -> None:
        self.offsets.append(offset)
        self.lines.append(line)
        self.size_bytes += len(line) + 1

    def after(self, offset: int) -> Batch:
        """The part of this batch past ``offset`` (what an existing object does not cover)."""
        keep = [i for i, o in enumerate(self.offsets) if o > offset]
        rest = Batch(self.topic, self.partition, self.hour, opened_at=self.opened_at)
        for i in keep:
            rest.add(self.offsets[i], self.lines[i])
        return rest


def encode(lines: list[bytes], *, compress: bool) -> bytes:
    body = b"\n".join(lines) + b"\n"
    return gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0) if compress else body


def decode(body: bytes) -> Iterator[dict]:
    if body[:2] == b"\x1f\x8b":
        body = zlib.decompress(body, wbits=31)
    for line in body.splitlines():
        if line.strip():
            yield orjson.loads(line)


def record_offset(record: dict) -> int:
    """A record's place in its lane: the Kafka offset, or a control event's sequence."""
    kafka = record.get("kafka")
    return int(kafka["offset"]) if kafka is not None else int(record["seq"])


def last_offset(body: bytes) -> int:
    """Highest offset (or control sequence) among the records of an encoded object."""
    return max(record_offset(record) for record in decode(body))
