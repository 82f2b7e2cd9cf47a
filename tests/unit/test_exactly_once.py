"""The one create-only write and its dedupe (audit/exactly_once.py), on an in-memory store.

The store here only does what RGW's ``If-None-Match: *`` does: create, or say the key is
taken. The rules under test are docs/audit-format.md's "Exactly-once rules".
"""

from __future__ import annotations

import pytest

from netscope.audit.batch import Batch, decode, encode
from netscope.audit.exactly_once import Encoded, ExactlyOnce, ObjectConflict, spooled_batch
from netscope.audit.keys import parse_key
from netscope.observability.events import WriteResult

HOUR = "2024-05-01/10"


class MemoryStore:
    """Create-only objects by key; records every PUT attempt."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts: list[str] = []
        self.fail: Exception | None = None

    async def put_if_absent(self, key: str, body: bytes) -> bool:
        self.puts.append(key)
        if self.fail is not None:
            raise self.fail
        if key in self.objects:
            return False
        self.objects[key] = body
        return True

    async def get(self, key: str) -> bytes:
        return self.objects[key]

    def offsets(self) -> dict[int, list[int]]:
        """First offset of each object -> the offsets it holds."""
        out = {}
        for key, body in self.objects.items():
            parsed = parse_key(key)
            assert parsed is not None
            out[parsed.first_offset] = [r["kafka"]["offset"] for r in decode(body)]
        return dict(sorted(out.items()))


def line(partition: int, offset: int) -> bytes:
    return b'{"kafka":{"partition":%d,"offset":%d}}' % (partition, offset)


def batch(first: int, end: int, partition: int = 0) -> Batch:
    b = Batch("t", partition, HOUR)
    for o in range(first, end):
        b.add(o, line(partition, o))
    return b


def writer(store: MemoryStore, *, compress: bool = True) -> ExactlyOnce:
    return ExactlyOnce(store, prefix="audit", compress=compress)


async def test_a_free_key_is_created_with_every_record() -> None:
    store = MemoryStore()
    objects = writer(store)
    assert await objects.write(batch(0, 10)) == WriteResult.CREATED
    key = objects.key_for(batch(0, 10))
    assert key == "audit/dt=2024-05-01/hour=10/topic=t/partition=0/00000000000000000000.jsonl.gz"
    assert store.puts == [key]
    assert store.offsets() == {0: list(range(10))}


async def test_uncompressed_objects_are_plain_json_lines() -> None:
    store = MemoryStore()
    objects = writer(store, compress=False)
    await objects.write(batch(0, 2))
    ((key, body),) = store.objects.items()
    assert key.endswith("/00000000000000000000.jsonl")
    assert body == line(0, 0) + b"\n" + line(0, 1) + b"\n"


async def test_key_taken_by_an_object_covering_the_whole_batch_writes_nothing() -> None:
    store = MemoryStore()
    objects = writer(store)
    await objects.write(batch(0, 10))  # an earlier run, or a timed-out PUT applied anyway
    assert await objects.write(batch(0, 10)) == WriteResult.ALREADY_PRESENT
    assert await writer(store).write(batch(0, 6)) == WriteResult.ALREADY_PRESENT
    assert store.offsets() == {0: list(range(10))}


async def test_key_taken_by_an_object_covering_part_writes_only_the_rest() -> None:
    store = MemoryStore()
    await writer(store).write(batch(0, 5))
    objects = writer(store)  # the rerun: no memory of the earlier process
    assert await objects.write(batch(0, 13)) == WriteResult.ALREADY_PRESENT
    assert store.offsets() == {0: list(range(5)), 5: list(range(5, 13))}


async def test_a_later_batch_starting_inside_a_revealed_object_is_trimmed_before_any_put() -> None:
    """Rerun after a crash, cut differently: [0, 10) exists; the rerun batches [0, 5) and
    [5, 13). Key 5 is free, so only the memory of the 412 on key 0 prevents 5..9 twice."""
    store = MemoryStore()
    await writer(store).write(batch(0, 10))
    objects = writer(store)
    assert await objects.write(batch(0, 5)) == WriteResult.ALREADY_PRESENT
    store.puts.clear()
    assert await objects.write(batch(5, 13)) == WriteResult.ALREADY_PRESENT
    assert store.puts == [objects.key_for(batch(10, 13))], "no PUT at key 5"
    assert store.offsets() == {0: list(range(10)), 10: [10, 11, 12]}
    # Past the revealed object, batches are ordinary again.
    assert await objects.write(batch(13, 15)) == WriteResult.CREATED


async def test_a_later_batch_wholly_inside_a_revealed_object_is_not_written() -> None:
    store = MemoryStore()
    await writer(store).write(batch(0, 10))
    objects = writer(store)
    await objects.write(batch(0, 3))
    store.puts.clear()
    assert await objects.write(batch(3, 7)) == WriteResult.ALREADY_PRESENT
    assert await objects.write(batch(7, 10)) == WriteResult.ALREADY_PRESENT
    assert store.puts == []


async def test_the_memory_is_per_partition() -> None:
    store = MemoryStore()
    await writer(store).write(batch(0, 10, partition=0))
    objects = writer(store)
    await objects.write(batch(0, 5, partition=0))
    assert await objects.write(batch(5, 8, partition=1)) == WriteResult.CREATED
    assert parse_key(store.puts[-1]).partition == 1  # type: ignore[union-attr]


async def test_an_encoded_spool_entry_goes_as_it_is() -> None:
    store = MemoryStore()
    objects = writer(store)
    b = batch(0, 4)
    body = encode(b.lines, compress=True)
    # The key as spooled (by a run with another prefix, say) is the one written.
    result = await objects.write(b, encoded=Encoded("elsewhere/0.jsonl.gz", body))
    assert result == WriteResult.CREATED
    assert store.objects == {"elsewhere/0.jsonl.gz": body}


async def test_an_encoded_spool_entry_whose_key_is_taken_writes_only_the_rest() -> None:
    store = MemoryStore()
    objects = writer(store)
    await objects.write(batch(0, 6))  # the rerun wrote [0, 6) live before the drain
    spooled = batch(0, 9)
    entry = Encoded(objects.key_for(spooled), encode(spooled.lines, compress=True))
    assert await objects.write(spooled, encoded=entry) == WriteResult.ALREADY_PRESENT
    assert store.offsets() == {0: list(range(6)), 6: [6, 7, 8]}


async def test_a_spool_entry_starting_inside_a_revealed_object_ignores_its_bytes() -> None:
    """The drainer's side of the race: the first run spooled [0, 5) and [5, 10), the rerun
    wrote [0, 13) at key 0 before the drain: uploading [5, 10) at key 5 would double 5..9."""
    store = MemoryStore()
    objects = writer(store)
    await objects.write(batch(0, 13))
    for first, end in ((0, 5), (5, 10)):
        b = batch(first, end)
        entry = Encoded(objects.key_for(b), encode(b.lines, compress=True))
        assert await objects.write(b, encoded=entry) == WriteResult.ALREADY_PRESENT
    assert store.offsets() == {0: list(range(13))}


async def test_an_object_not_covering_the_batch_start_is_a_conflict_not_a_loop() -> None:
    store = MemoryStore()
    objects = writer(store)
    b = batch(5, 8)
    store.objects[objects.key_for(b)] = encode([line(0, 1)], compress=True)  # foreign
    with pytest.raises(ObjectConflict):
        await objects.write(b)


async def test_store_errors_propagate_and_teach_nothing() -> None:
    store = MemoryStore()
    objects = writer(store)
    store.fail = TimeoutError("rgw frozen")
    with pytest.raises(TimeoutError):
        await objects.write(batch(0, 3))
    store.fail = None
    assert await objects.write(batch(0, 3)) == WriteResult.CREATED


@pytest.mark.parametrize("compress", [True, False])
def test_spooled_batch_reads_back_offsets_and_lines(compress: bool) -> None:
    b = batch(3, 6, partition=2)
    meta = {"topic": "t", "partition": 2, "hour": HOUR, "first_offset": 3}
    back = spooled_batch(meta, encode(b.lines, compress=compress))
    assert (back.topic, back.partition, back.hour) == ("t", 2, HOUR)
    assert back.offsets == [3, 4, 5]
    assert back.lines == b.lines
