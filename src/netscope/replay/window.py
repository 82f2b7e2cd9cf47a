"""A Kafka time window as per-partition offsets: planned, read back, and (optionally) committed.

Runbook for an incident replay: name the window by timestamps, turn it into offsets, then
either read those offsets under the replay's own identity or reset a group onto them. The
semantics follow the Kafka tools an operator already knows:

- a bound is looked up like ``kafka-consumer-groups --reset-offsets --to-datetime``: the first
  offset whose record timestamp is ``>=`` the time; "no such record" means the log end;
- the end is exclusive, like kcat ``-o s@FROM -o e@TO``: ``[from, to)`` in time and in offsets;
- a group is only reset while it has no active member, like the Kafka tool.

Why the plan is verified by reading records: ``offsets_for_times`` is a broker feature that a
Kafka-compatible broker may fake. tansu 0.6 answers by its own write time and returns offset 0
for times past the end, and it reports end offsets too low. Without a check, a replay there
would silently start at offset 0 and re-send a whole topic. A few fetches per partition (the
records on each side of each boundary) prove the answer or raise :class:`WindowUnsupported`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError, OffsetOutOfRangeError
from aiokafka.structs import OffsetAndMetadata

from netscope.config import KafkaConfig
from netscope.ingest.kafka import _common as _client_kwargs
from netscope.ingest.kafka import make_consumer

__all__ = [
    "GroupActive",
    "GroupReset",
    "PartitionPlan",
    "WindowPlan",
    "WindowStalled",
    "WindowUnsupported",
    "parse_time",
    "plan_window",
    "read_window",
    "reset_group",
    "window_consumer",
]

# --- time ------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[Tt ](?P<h>\d{2}):(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2})(?:\.(?P<frac>\d+))?)?"
    r"(?P<zone>[Zz]|[+-]\d{2}:\d{2})?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 10^11 ms is 1973-03-03; every smaller "epoch ms" seen in practice was epoch seconds.
_MIN_PLAUSIBLE_MS = 10**11


def parse_time(text: str) -> int:
    """Epoch milliseconds from RFC 3339 (``2024-05-01T12:00:00Z``, ``...+02:00``) or epoch ms.

    A time without a zone is refused rather than guessed: an incident window read in the
    wrong zone replays the wrong hours. Fractions finer than a millisecond are truncated,
    since Kafka timestamps are milliseconds.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("empty time: give RFC 3339 (2024-05-01T12:00:00Z) or epoch milliseconds")
    if raw.isdigit():
        value = int(raw)
        if value < _MIN_PLAUSIBLE_MS:
            raise ValueError(
                f"{raw!r} is not epoch milliseconds (that would be before 1973); "
                f"if it is epoch seconds, use {value * 1000}"
            )
        return value
    if raw.startswith("-") and raw[1:].isdigit():
        raise ValueError(f"{raw!r}: epoch milliseconds cannot be negative")
    match = _RFC3339.fullmatch(raw)
    if match is None:
        raise ValueError(
            f"{raw!r} is neither RFC 3339 (e.g. 2024-05-01T12:00:00Z or "
            "2024-05-01T14:00:00.250+02:00) nor epoch milliseconds"
        )
    zone = match["zone"]
    if zone is None:
        raise ValueError(
            f"{raw!r} has no time zone: add Z for UTC or an offset such as +02:00 "
            "(a window read in the wrong zone replays the wrong hours)"
        )
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"{raw!r}: offset {zone} is out of range")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    frac = (match["frac"] or "").ljust(3, "0")[:3]
    try:
        moment = datetime(
            int(match["y"]),
            int(match["mo"]),
            int(match["d"]),
            int(match["h"]),
            int(match["mi"]),
            int(match["s"] or 0),
            int(frac) * 1000,
            tzinfo=tz,
        )
    except ValueError as exc:
        raise ValueError(f"{raw!r} is not a valid date-time: {exc}") from None
    ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    if ms < 0:
        raise ValueError(f"{raw!r} is before 1970: Kafka timestamps cannot be negative")
    return ms


def format_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, for messages and the CLI's plan table."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# --- plan ------------------------------------------------------------------------------------


class WindowUnsupported(RuntimeError):
    """The broker's time lookup or end offsets contradict its own records.

    Raised instead of returning a plan that would start or stop at the wrong offset (on
    tansu 0.6: offset 0, i.e. the whole topic).
    """


class WindowStalled(RuntimeError):
    """Reading a window made no progress for too long (records gone or offsets wrong)."""


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """Offsets ``[start_offset, end_offset)`` of one partition; empty when start >= end."""

    topic: str
    partition: int
    start_offset: int
    end_offset: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def empty(self) -> bool:
        return self.start_offset >= self.end_offset

    @property
    def offsets(self) -> int:
        """Offsets in the range: an upper bound on records (transaction markers and
        compaction leave gaps)."""
        return max(0, self.end_offset - self.start_offset)


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """The window ``[from_ms, to_ms)`` as offsets of each partition, in partition order."""

    from_ms: int
    to_ms: int
    partitions: list[PartitionPlan] = field(default_factory=list)

    @property
    def total_offsets(self) -> int:
        """Sum of the partitions' offset ranges (an upper bound on records)."""
        return sum(p.offsets for p in self.partitions)

    @property
    def non_empty(self) -> list[PartitionPlan]:
        return [p for p in self.partitions if not p.empty]

    @property
    def empty(self) -> bool:
        return not self.non_empty

    def starts(self) -> dict[TopicPartition, int]:
        """Where a consumer group reset onto this window resumes, per partition."""
        return {p.tp: p.start_offset for p in self.partitions}


@contextlib.asynccontextmanager
async def window_consumer(cfg: KafkaConfig, **overrides: Any) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer for planning and reading windows: no group, nothing committed.

    ``group_id=None`` makes a commit impossible (aiokafka raises), so reading a window can
    never move the live group's offsets. ``auto_offset_reset="none"``: a window start that
    retention already deleted raises instead of jumping silently to the log start or end.
    Security settings come from ``cfg`` like every other NetScope client.
    """
    kwargs: dict[str, Any] = {
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "none",
    }
    kwargs.update(overrides)
    consumer = make_consumer(cfg, **kwargs)
    await consumer.start()
    # aiokafka 0.14: stop() before its no-group task ever ran raises CancelledError (the
    # task is cancelled before reaching its own handler); one loop turn lets it start.
    await asyncio.sleep(0)
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _partitions_of(consumer: AIOKafkaConsumer, topic: str, timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        if time.monotonic() >= deadline:
            raise ValueError(f"topic {topic!r} not found (no partitions in the cluster metadata)")
        await consumer._client.force_metadata_update()  # public API has no refresh
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        await asyncio.sleep(0.2)


def _answer(found: Any) -> int | None:
    """The offset of a ListOffsets-by-time answer; None for "no record at/after that time".

    Kafka (v1+) says "none" as offset -1 with timestamp -1 (aiokafka maps that to None);
    tansu says offset 0 with timestamp -1, which is the same "none", so a negative
    timestamp counts as no answer too.
    """
    if found is None or found.offset < 0 or found.timestamp < 0:
        return None
    return int(found.offset)


@dataclass(slots=True)
class _Bounds:
    """One partition while planning: log bounds and the two looked-up offsets."""

    tp: TopicPartition
    begin: int
    end: int
    start: int
    stop: int


async def plan_window(
    consumer: AIOKafkaConsumer,
    topic: str,
    from_ms: int,
    to_ms: int,
    partitions: Sequence[int] | None = None,
    *,
    verify: bool = True,
    metadata_timeout_s: float = 10.0,
    probe_timeout_ms: int = 5000,
) -> WindowPlan:
    """Offsets of ``[from_ms, to_ms)`` in each partition of ``topic`` (or of ``partitions``).

    ``consumer`` is a started consumer without a subscription (:func:`window_consumer`);
    the check assigns it partitions and leaves it unassigned. Time lookups run before the
    end offsets are read, so on a live topic an answer is never beyond the end it is
    clamped to.

    ``verify`` (the default) reads the records around each boundary and raises
    :class:`WindowUnsupported` when the broker's answers contradict them; turning it off
    only makes sense on a broker known to implement ListOffsets by timestamp.
    """
    if from_ms < 0 or to_ms < 0:
        raise ValueError("window bounds must be epoch milliseconds >= 0")
    if from_ms >= to_ms:
        raise ValueError(
            f"empty window: --from {format_ms(from_ms)} must be before --to {format_ms(to_ms)}"
        )
    known = await _partitions_of(consumer, topic, metadata_timeout_s)
    wanted = sorted(known) if partitions is None else sorted(set(partitions))
    missing = [p for p in wanted if p not in known]
    if missing:
        raise ValueError(
            f"topic {topic!r} has no partition {', '.join(map(str, missing))} "
            f"(it has {', '.join(map(str, sorted(known)))})"
        )
    tps = [TopicPartition(topic, p) for p in wanted]
    if not tps:
        return WindowPlan(from_ms, to_ms, [])

    starts = await consumer.offsets_for_times(dict.fromkeys(tps, from_ms))
    stops = await consumer.offsets_for_times(dict.fromkeys(tps, to_ms))
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)

    bounds: list[_Bounds] = []
    for tp in tps:
        begin, end = int(begins[tp]), int(ends[tp])

        def resolve(found: Any, begin: int = begin, end: int = end) -> int:
            offset = _answer(found)
            return end if offset is None else min(max(offset, begin), end)

        bounds.append(_Bounds(tp, begin, end, resolve(starts.get(tp)), resolve(stops.get(tp))))

    if verify:
        await _verify(consumer, bounds, from_ms, to_ms, probe_timeout_ms)
    return WindowPlan(
        from_ms,
        to_ms,
        [PartitionPlan(topic, b.tp.partition, b.start, b.stop) for b in bounds],
    )


# --- verification ----------------------------------------------------------------------------

_HOW = (
    "this broker does not look offsets up by record timestamp (tansu 0.6 answers by its own "
    "write time and returns 0 past the end); a time-window replay needs exact ListOffsets by "
    "timestamp (Apache Kafka)"
)


async def _probe(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, timeout_ms: int
) -> list[ConsumerRecord[Any, Any]]:
    """Up to two records at or after ``offset``: the fetch returns whole batches, so two
    records cost one round trip when the offset is in the log."""
    consumer.seek(tp, offset)
    got = await consumer.getmany(tp, timeout_ms=timeout_ms, max_records=2)
    return sorted(got.get(tp, []), key=lambda r: r.offset)


def _check_boundary(
    b: _Bounds,
    offset: int,
    bound_ms: int,
    name: str,
    records: list[ConsumerRecord[Any, Any]],
) -> None:
    """Kafka's answer is "the first offset with timestamp >= bound": every record before it
    is earlier than the bound, and the record at it (if it was in the log) is not."""
    p = b.tp.partition
    for r in records:
        if r.offset < offset and r.timestamp >= bound_ms:
            raise WindowUnsupported(
                f"partition {p}: the broker places {name} {format_ms(bound_ms)} at offset "
                f"{offset}, but the earlier record at offset {r.offset} has timestamp "
                f"{format_ms(r.timestamp)}; {_HOW}"
            )
    after = next((r for r in records if r.offset >= offset), None)
    if offset < b.end and after is not None and after.offset < b.end and after.timestamp < bound_ms:
        raise WindowUnsupported(
            f"partition {p}: the broker places {name} {format_ms(bound_ms)} at offset "
            f"{offset}, but the record at offset {after.offset} has timestamp "
            f"{format_ms(after.timestamp)}, before it; {_HOW}"
        )


async def _verify(
    consumer: AIOKafkaConsumer,
    bounds: list[_Bounds],
    from_ms: int,
    to_ms: int,
    timeout_ms: int,
) -> None:
    """Read the records on each side of each boundary (about two fetches per partition).

    A boundary at the log end is checked too: the record before it must be earlier than the
    bound, and a record found at or past the reported end must be explained by the end
    having grown since (re-read afterwards); tansu's end offsets cannot explain it.
    """
    beyond: dict[TopicPartition, int] = {}
    try:
        for b in bounds:
            if b.stop < b.start:
                raise WindowUnsupported(
                    f"partition {b.tp.partition}: the broker places the window's end (offset "
                    f"{b.stop}) before its start (offset {b.start}); {_HOW}"
                )
            if b.begin >= b.end:
                continue  # empty partition: nothing to contradict
            consumer.assign([b.tp])
            cache: dict[int, list[ConsumerRecord[Any, Any]]] = {}
            for offset, bound_ms, name in ((b.start, from_ms, "--from"), (b.stop, to_ms, "--to")):
                first = max(b.begin, offset - 1)
                if first not in cache:
                    cache[first] = await _probe(consumer, b.tp, first, timeout_ms)
                records = cache[first]
                if offset < b.end and not any(r.offset >= offset for r in records):
                    # The two records straddled a batch edge: fetch the boundary record.
                    if offset not in cache:
                        cache[offset] = await _probe(consumer, b.tp, offset, timeout_ms)
                    records = records + cache[offset]
                _check_boundary(b, offset, bound_ms, name, records)
                for r in records:
                    if r.offset >= b.end:
                        beyond[b.tp] = max(beyond.get(b.tp, -1), r.offset)
    finally:
        consumer.unsubscribe()
    if beyond:
        ends_now = await consumer.end_offsets(list(beyond))
        for tp, offset in sorted(beyond.items()):
            if offset >= ends_now[tp]:
                raise WindowUnsupported(
                    f"partition {tp.partition}: the broker reports end offset {ends_now[tp]} "
                    f"but returned a record at offset {offset}: its end offsets are wrong "
                    "(tansu 0.6 reports the start of the last batch + 1), so a window's end "
                    "cannot be placed; a time-window replay needs Apache Kafka"
                )


# --- read ------------------------------------------------------------------------------------


async def read_window(
    consumer: AIOKafkaConsumer,
    plan: WindowPlan,
    *,
    poll_timeout_ms: int = 500,
    idle_timeout_s: float = 30.0,
) -> AsyncIterator[ConsumerRecord[Any, Any]]:
    """Yield the plan's records, partition by partition as fetched, then stop.

    Manual assignment and seek, never a commit: reading a window must not move any group's
    offsets (use :func:`window_consumer`). A partition is finished, and paused, once its
    position reaches ``end_offset``; records fetched past it are dropped. The caller paces
    by how fast it iterates. ``idle_timeout_s`` without any progress raises
    :class:`WindowStalled` (a plan that promises offsets the broker does not deliver).
    """
    if getattr(consumer, "_group_id", None) is not None and getattr(
        consumer, "_enable_auto_commit", False
    ):
        raise ValueError("read_window must not auto-commit: use enable_auto_commit=False")
    pending = {p.tp: p for p in plan.partitions if not p.empty}
    if not pending:
        return
    consumer.assign(list(pending))
    for tp, part in pending.items():
        consumer.seek(tp, part.start_offset)
    # Idle time is counted only across polls that brought nothing: the caller's pacing
    # between records must not look like a stall.
    idle_since: float | None = None
    while pending:
        try:
            batch = await consumer.getmany(*pending, timeout_ms=poll_timeout_ms)
        except OffsetOutOfRangeError as exc:
            raise WindowStalled(
                f"part of the window is no longer in the log (retention deleted it?): {exc}"
            ) from exc
        idle_since = None if batch else (idle_since or time.monotonic())
        for tp, records in batch.items():
            part = pending.get(tp)
            if part is None:
                continue
            for record in records:
                if record.offset >= part.end_offset:
                    break
                if record.offset >= part.start_offset:
                    yield record
        for tp in list(pending):
            # Known locally once fetched: no round trip. It also moves past transaction
            # markers, which never reach the caller as records.
            if await consumer.position(tp) >= pending[tp].end_offset:
                consumer.pause(tp)
                del pending[tp]
        stalled = idle_since is not None and time.monotonic() - idle_since > idle_timeout_s
        if pending and stalled:
            where = [
                f"partition {tp.partition} at {await consumer.position(tp)} of "
                f"[{p.start_offset}, {p.end_offset})"
                for tp, p in sorted(pending.items())
            ]
            raise WindowStalled(f"no records for {idle_timeout_s:g} s: {', '.join(where)}")


# --- group reset -----------------------------------------------------------------------------


class GroupActive(RuntimeError):
    """The group has members; resetting offsets under them would be undone or fought over."""

    def __init__(self, group: str, members: int, state: str) -> None:
        self.group = group
        self.members = members
        self.state = state
        super().__init__(
            f"consumer group {group!r} is active ({members} member"
            f"{'' if members == 1 else 's'}, state {state}): stop every consumer of the "
            "group before resetting its offsets, as kafka-consumer-groups requires"
        )


@dataclass(frozen=True, slots=True)
class GroupReset:
    """What a reset changed (or, in a dry run, would change): offsets per partition."""

    group: str
    before: dict[TopicPartition, int | None]  # None: nothing committed
    after: dict[TopicPartition, int]
    dry_run: bool

    def rows(self) -> list[tuple[str, int, int | None, int]]:
        """(topic, partition, before, after) in partition order, for the CLI's table."""
        return [
            (tp.topic, tp.partition, self.before.get(tp), offset)
            for tp, offset in sorted(self.after.items())
        ]


_INACTIVE_STATES = frozenset({"Empty", "Dead", ""})


async def _describe(admin: AIOKafkaAdminClient, group: str) -> tuple[int, str]:
    """(member count, state) from DescribeGroups, raising on a per-group error code."""
    responses = await admin.describe_consumer_groups([group])
    for response in responses:
        for entry in response.to_object()["groups"]:
            if entry["group"] != group:
                continue
            if entry["error_code"]:
                raise KafkaError(
                    f"DescribeGroups for {group!r} failed with error {entry['error_code']}"
                )
            return len(entry["members"]), str(entry["state"])
    raise KafkaError(f"DescribeGroups did not describe group {group!r}")


async def reset_group(
    kafka: KafkaConfig | str,
    group: str,
    plan: WindowPlan,
    *,
    dry_run: bool,
    timeout_ms: int = 15_000,
) -> GroupReset:
    """Commit the plan's start offsets for ``group``, like ``kafka-consumer-groups
    --reset-offsets``: refused (:class:`GroupActive`) while the group has a member.

    The commit comes from a consumer that never joins (manual assignment, generation -1):
    the broker accepts it only while the group is empty, so a consumer joining between
    the check and the commit also ends in :class:`GroupActive`, not in a half reset.
    ``kafka`` is the service's KafkaConfig (SASL settings apply) or a bare bootstrap string.
    Returns the committed offsets before and after (read back, not assumed).
    """
    cfg = KafkaConfig(bootstrap_servers=kafka) if isinstance(kafka, str) else kafka
    target = plan.starts()
    admin = AIOKafkaAdminClient(**_client_kwargs(cfg), request_timeout_ms=timeout_ms)
    await admin.start()
    try:
        members, state = await _describe(admin, group)
        if members or state not in _INACTIVE_STATES:
            raise GroupActive(group, members, state)
        consumer = make_consumer(
            cfg, group_id=group, enable_auto_commit=False, request_timeout_ms=timeout_ms
        )
        await consumer.start()
        try:
            tps = sorted(target)
            before = {tp: await consumer.committed(tp) for tp in tps}
            if dry_run or not tps:
                return GroupReset(group, before, dict(target), dry_run=dry_run)
            consumer.assign(tps)
            try:
                await consumer.commit(
                    {tp: OffsetAndMetadata(offset, "") for tp, offset in target.items()}
                )
            except CommitFailedError:
                members, state = await _describe(admin, group)
                raise GroupActive(group, max(members, 1), state) from None
            after = {tp: await consumer.committed(tp) for tp in tps}
        finally:
            await consumer.stop()
    finally:
        await admin.close()
    wrong = {tp: got for tp, got in after.items() if got != target[tp]}
    if wrong:
        raise KafkaError(
            f"group {group!r}: committed offsets read back as {wrong}, expected {target}"
        )
    return GroupReset(group, before, {tp: target[tp] for tp in tps}, dry_run=False)
