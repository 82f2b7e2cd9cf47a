"""Fetched Kafka record batches that one hostile record cannot turn into a poison pill.

Why: the Kafka protocol says a record header's key is UTF-8, and aiokafka decodes it
strictly while it iterates a fetched batch. Any client that takes header names as bytes
(librdkafka, Go's clients) can write a key that is not UTF-8; aiokafka then raises
``UnicodeDecodeError`` from every ``getmany()`` that reaches that record. Measured on tansu
and noida (issue 15, hostile input): the fetch loop ended (exit 1), the records fetched with
the bad one were never delivered, and after a restart the same partition failed again, so
nothing behind that record was ever processed. A Java consumer decodes such a key with
replacement characters and carries on; with :func:`install`, so does NetScope. The record
is then judged by its value like any other (headers other than ``traceparent`` carry no
meaning for NetScope), and a dead-letter copy carries the key as decoded.

How: aiokafka's fetcher builds ``MemoryRecords`` from each fetched partition's bytes.
:func:`install` replaces that one name in ``aiokafka.consumer.fetcher`` with
:class:`LenientMemoryRecords`, which hands out aiokafka's own compiled batches (the fast
path is unchanged) and, only when iterating one raises ``UnicodeDecodeError``, re-reads that
batch's records from its bytes with header keys decoded with U+FFFD replacement, resuming
after the last record already handed out. ``tests/unit/test_hostile_records.py`` fails if a
new aiokafka no longer builds batches this way.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.legacy_records import LegacyRecordBatch
from aiokafka.record.util import decode_varint

log = logging.getLogger(__name__)

_LOG_OVERHEAD = 12  # base offset (int64) + batch length (int32)
_MAGIC_AT = 16  # + partition leader epoch (int32)
_MIN_SLICE = _LOG_OVERHEAD + 14  # aiokafka's minimum (a v0 record's overhead)
# v2 batch header: base offset, length, leader epoch, magic, crc, attributes,
# last offset delta, first timestamp, max timestamp, producer id, epoch, base sequence, count
_V2_HEADER = struct.Struct(">qiibIhiqqqhii")
_CODEC_MASK = 0x07
_LOG_APPEND_TIME = 0x08
_DECODERS: dict[int, Any] = {
    1: gzip_decode,
    2: lambda data: snappy_decode(bytes(data)),
    3: lambda data: lz4_decode(bytes(data)),
    4: lambda data: zstd_decode(bytes(data)),
}


@dataclass(frozen=True, slots=True)
class LenientRecord:
    """What aiokafka's fetcher reads of a record (its ``DefaultRecord`` interface)."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    checksum: None = None


class LenientBatch:
    """An aiokafka v2 batch whose iteration survives a header key that is not UTF-8."""

    def __init__(self, batch: Any, raw: memoryview) -> None:
        self._batch = batch
        self._raw = raw

    def __getattr__(self, name: str) -> Any:  # base_offset, validate_crc, producer_id...
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        handed_out = 0
        try:
            for record in self._batch:
                handed_out += 1
                yield record
        except UnicodeDecodeError as exc:
            log.warning(
                "record batch at offset %d has a header key that is not UTF-8 (%s): read "
                "with replacement characters",
                self._batch.base_offset,
                exc.reason,
            )
            yield from read_v2_records(self._raw, skip=handed_out)


def read_v2_records(raw: memoryview | bytes, *, skip: int = 0) -> Iterator[LenientRecord]:
    """The records of one v2 batch (wire format, KIP-98), header keys decoded leniently."""
    (base_offset, _, _, magic, _, attributes, _, first_ts, max_ts, _, _, _, count) = (
        _V2_HEADER.unpack_from(raw)
    )
    if magic != 2:
        raise CorruptRecordException(f"not a v2 record batch (magic {magic})")
    body: Any = memoryview(raw)[_V2_HEADER.size :]
    codec = attributes & _CODEC_MASK
    if codec:
        body = memoryview(_DECODERS[codec](body))
    log_append = bool(attributes & _LOG_APPEND_TIME)
    pos = 0
    for index in range(count):
        length, pos = decode_varint(body, pos)
        end = pos + length
        ts_delta, pos = decode_varint(body, pos + 1)  # after the attributes (int8, unused)
        offset_delta, pos = decode_varint(body, pos)
        key, pos = _nullable_bytes(body, pos)
        value, pos = _nullable_bytes(body, pos)
        n_headers, pos = decode_varint(body, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _h in range(n_headers):
            key_len, pos = decode_varint(body, pos)
            name = bytes(body[pos : pos + key_len]).decode("utf-8", "replace")
            header_value, pos = _nullable_bytes(body, pos + key_len)
            headers.append((name, header_value))
        if pos != end:
            raise CorruptRecordException(f"record of {length} bytes read as {pos - end + length}")
        if index >= skip:
            yield LenientRecord(
                offset=base_offset + offset_delta,
                timestamp=max_ts if log_append else first_ts + ts_delta,
                timestamp_type=int(log_append),
                key=key,
                value=value,
                headers=headers,
            )


def _nullable_bytes(body: memoryview, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(body, pos)
    if length < 0:
        return None, pos
    return bytes(body[pos : pos + length]), pos + length


class LenientMemoryRecords:
    """aiokafka's ``MemoryRecords`` interface (``has_next``, ``next_batch``) over one
    partition's fetched bytes, handing out v2 batches as :class:`LenientBatch`."""

    def __init__(self, data: bytes) -> None:
        self._buffer = memoryview(data)
        self._pos = 0
        self._next: memoryview | None = None
        self._cache_next()

    def _cache_next(self) -> None:
        buffer, pos = self._buffer, self._pos
        self._next = None
        if len(buffer) - pos < _LOG_OVERHEAD:
            return  # a partial batch at the end of a fetch: fetched again next time
        (length,) = struct.unpack_from(">i", buffer, pos + 8)
        end = pos + _LOG_OVERHEAD + length
        if end > len(buffer):
            return
        self._next = buffer[pos:end]
        self._pos = end

    def size_in_bytes(self) -> int:
        return len(self._buffer)

    def has_next(self) -> bool:
        return self._next is not None

    def next_batch(self) -> Any:
        raw = self._next
        if raw is None:
            return None
        if len(raw) < _MIN_SLICE:
            raise CorruptRecordException(
                f"Record size is less than the minimum record overhead ({_MIN_SLICE - 12})"
            )
        self._cache_next()
        magic = raw[_MAGIC_AT]
        if magic >= 2:
            return LenientBatch(DefaultRecordBatch(raw), raw)
        return LegacyRecordBatch(raw, magic)  # v0/v1 records have no headers


def install() -> None:
    """Make every aiokafka consumer of this process read batches through this module."""
    import aiokafka.consumer.fetcher as fetcher

    fetcher.MemoryRecords = LenientMemoryRecords  # type: ignore[assignment,misc]
