"""The one create-only write of an audit batch, and its dedupe when the key is already taken.

Both the live writer and the spool drainer write through :meth:`ExactlyOnce.write`:

1. PUT the batch at its key with ``If-None-Match: *``. Created: done.
2. Key taken (412): an earlier attempt, an earlier run or the drainer wrote an object that
   starts at this offset (a timed-out PUT may have been applied anyway). Read that object's
   last offset, keep only the records past it and go back to 1 with the key of the first one
   left. A redelivered message never gets a second record.
3. Remember, per partition, the offset range of the last object a 412 revealed. A rerun after
   a crash may cut the same offsets into other batches: a later batch can start *inside* that
   object, where no key matches, so the key alone cannot dedupe it; it is trimmed first.

docs/audit-format.md ("Exactly-once rules") is the contract this implements.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any, NamedTuple, Protocol

import orjson

from netscope.audit.batch import Batch, encode, last_offset, record_offset
from netscope.audit.keys import object_key
from netscope.config import AuditConfig
from netscope.observability.events import WriteResult

TopicPartition = tuple[str, int]


class CreateOnlyStore(Protocol):
    """What this module needs of the store (audit/store.py's AuditStore)."""

    async def put_if_absent(self, key: str, body: bytes) -> bool: ...

    async def get(self, key: str) -> bytes: ...


class ObjectConflict(Exception):
    """The object at a batch's key does not start at or cover its first offset.

    Only a foreign or hand-edited object can do this; retrying would loop on the same key.
    """


class Encoded(NamedTuple):
    """A batch as it was already encoded once (a spool entry): key and body, sent as they are."""

    key: str
    body: bytes


class ExactlyOnce:
    def __init__(
        self,
        store: CreateOnlyStore,
        *,
        prefix: str,
        compress: bool,
        run_id: str | None = None,
        instance_id: str | None = None,
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._compress = compress
        self._run_id = run_id  # a replay's objects get keys of their own (audit/keys.py)
        self._instance_id = instance_id or "unnamed"  # control objects are per instance
        # Per partition, [first, last] offsets of the last object a 412 revealed (rule 3).
        self._seen: dict[TopicPartition, tuple[int, int]] = {}

    @classmethod
    def from_config(
        cls,
        cfg: AuditConfig,
        store: CreateOnlyStore,
        run_id: str | None = None,
        instance_id: str | None = None,
    ) -> ExactlyOnce:
        compress = cfg.compression == "gzip"
        return cls(
            store, prefix=cfg.prefix, compress=compress, run_id=run_id, instance_id=instance_id
        )

    def key_for(self, batch: Batch) -> str:
        return object_key(
            self._prefix,
            batch.hour,
            batch.topic,
            batch.partition,
            batch.first_offset,
            gzip=self._compress,
            run_id=self._run_id,
            instance_id=self._instance_id,
        )

    async def encode(self, batch: Batch) -> bytes:
        if not self._compress:
            return encode(batch.lines, compress=False)
        # zlib lets go of the GIL while it deflates: in a thread, compression runs on another
        # core instead of stalling the loop (~2 % of its time at saturation).
        return await asyncio.to_thread(encode, batch.lines, compress=True)

    async def write(self, batch: Batch, *, encoded: Encoded | None = None) -> WriteResult:
        """Create-only writes until every record of ``batch`` is covered by some object.

        ``encoded``: the batch's key and bytes from an earlier encoding (a spool entry), used
        for the first PUT as they are. ALREADY_PRESENT means some of the records were found
        already written (only the missing ones were written, possibly none).
        """
        tp = (batch.topic, batch.partition)
        result = WriteResult.CREATED
        seen = self._seen.get(tp)
        if seen is not None and batch.offsets and seen[0] <= batch.first_offset <= seen[1]:
            result, encoded = WriteResult.ALREADY_PRESENT, None
            batch = batch.after(seen[1])
        while batch.offsets:
            key, body = encoded or (self.key_for(batch), await self.encode(batch))
            encoded = None
            if await self._store.put_if_absent(key, body):
                return result
            covered = last_offset(await self._store.get(key))
            if covered < batch.first_offset:
                raise ObjectConflict(f"{key} ends at offset {covered} < {batch.first_offset}")
            self._seen[tp] = (batch.first_offset, covered)
            result = WriteResult.ALREADY_PRESENT
            batch = batch.after(covered)
        return result


def spooled_batch(meta: dict[str, Any], body: bytes) -> Batch:
    """A spool entry's body back to its batch (the offsets are in the records)."""
    if body[:2] == b"\x1f\x8b":
        body = zlib.decompress(body, wbits=31)
    batch = Batch(str(meta["topic"]), int(meta["partition"]), str(meta["hour"]))
    for line in body.splitlines():
        if line.strip():
            batch.add(record_offset(orjson.loads(line)), line)
    return batch
