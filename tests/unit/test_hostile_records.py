"""ingest/records.py: a record header key that is not UTF-8 no longer stops a partition.

aiokafka decodes header keys strictly while iterating a fetched batch; the integration run
(tests/integration/test_hostile_input.py) showed that one such record made every getmany() on
its partition raise, forever. These tests pin aiokafka's failure (so a fixed aiokafka is
noticed) and the lenient reader's output, record for record.
"""

from __future__ import annotations

import inspect
import struct

import aiokafka.consumer.fetcher as fetcher
import pytest
from aiokafka.record.default_records import DefaultRecordBatch, _DefaultRecordBatchBuilderPy
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c

from netscope.ingest.records import (
    LenientBatch,
    LenientMemoryRecords,
    LenientRecord,
    install,
    read_v2_records,
)
from netscope.tools.hostile import RawHeaderKey

BAD = RawHeaderKey(b"\xff\xfe")


def batch(
    records: list[tuple[bytes | None, bytes | None, list]], *, base: int = 0, codec: int = 0
) -> bytes:
    """A v2 batch as a producer that writes header keys as bytes would send it."""
    builder = _DefaultRecordBatchBuilderPy(2, codec, 0, -1, -1, 0, 1 << 20)
    for i, (key, value, headers) in enumerate(records):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=key, value=value, headers=headers)
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base)  # the broker's base offset
    return bytes(raw)


def read_all(records: object) -> list:
    out = []
    while records.has_next():  # type: ignore[attr-defined]
        out.extend(records.next_batch())  # type: ignore[attr-defined]
    return out


POISONED = [
    (b"k", b"before", [("h", b"1")]),
    (None, b"poison", [(BAD, b"x"), ("null", None)]),
    (b"k", b"after", []),
]


def test_aiokafka_alone_raises_on_the_whole_batch() -> None:
    """The bug: records before and after the bad one are lost with it."""
    with pytest.raises(UnicodeDecodeError):
        read_all(MemoryRecords(batch(POISONED)))


@pytest.mark.parametrize("codec", [0, 1], ids=["plain", "gzip"])
def test_every_record_of_a_poisoned_batch_is_read(codec: int) -> None:
    got = read_all(LenientMemoryRecords(batch(POISONED, base=40, codec=codec)))
    assert [(r.offset, r.key, r.value) for r in got] == [
        (40, b"k", b"before"), (41, None, b"poison"), (42, b"k", b"after"),
    ]  # fmt: skip
    assert list(got[0].headers) == [("h", b"1")]
    assert list(got[1].headers) == [("\ufffd\ufffd", b"x"), ("null", None)]
    assert [r.timestamp for r in got] == [1_700_000_000_000 + i for i in range(3)]
    assert {r.timestamp_type for r in got} == {0}


def test_a_clean_batch_keeps_aiokafka_s_fast_path() -> None:
    records = LenientMemoryRecords(batch([(b"k", b"v", [("h", b"1")])]))
    first = records.next_batch()
    assert isinstance(first, LenientBatch) and first.validate_crc()
    assert first.base_offset == 0 and first.next_offset == 1
    [record] = list(first)
    assert not isinstance(record, LenientRecord)  # aiokafka's own record


def test_several_batches_and_a_partial_tail() -> None:
    one = batch([(b"a", b"1", [])], base=0)
    two = batch([(b"b", b"2", [(BAD, b"")]), (b"c", b"3", [])], base=1)
    got = read_all(LenientMemoryRecords(one + two + two[:20]))  # a fetch cut mid-batch
    assert [(r.offset, r.value) for r in got] == [(0, b"1"), (1, b"2"), (2, b"3")]


def test_legacy_batches_pass_through() -> None:
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    builder.append(0, timestamp=1_700_000_000_000, key=b"k", value=b"v")
    got = read_all(LenientMemoryRecords(bytes(builder.build())))
    assert [(r.offset, r.key, r.value) for r in got] == [(0, b"k", b"v")]


def test_log_append_time_takes_the_batch_s_max_timestamp() -> None:
    raw = bytearray(batch([(b"k", b"v", [(BAD, b"")])]))
    attributes = struct.unpack_from(">h", raw, 21)[0] | 0x08
    struct.pack_into(">h", raw, 21, attributes)
    struct.pack_into(">I", raw, 17, calc_crc32c(bytes(raw[21:])))
    max_ts = struct.unpack_from(">q", raw, 35)[0]
    [record] = read_v2_records(bytes(raw))
    assert record.timestamp == max_ts and record.timestamp_type == 1
    assert DefaultRecordBatch(bytes(raw)).validate_crc()


def test_install_swaps_the_name_aiokafka_s_fetcher_builds_batches_with() -> None:
    """If a new aiokafka stops building MemoryRecords by this name, install() would do
    nothing: this test says so before a hostile header does."""
    assert "MemoryRecords(" in inspect.getsource(fetcher.Fetcher)
    install()
    assert fetcher.MemoryRecords is LenientMemoryRecords
