"""The drill-down: one request's whole story, for a click on the live feed or a search.

Built by the engine of ``netscope audit timeline`` (forensics/timeline.py: a row per call,
then one per attempt, and the control records of its upstream around it), from the first
source that has the request:

1. **memory** (api/recent.py): the last few thousand records, by reference; the retry
   decisions' reasons and the breaker's state come from what the process saw live;
2. **the audit object** at the record's Kafka position (a feed row knows its topic,
   partition, offset and event time): one listing of that partition's hour folder and one
   GET, whatever the traffic;
3. **a scan** of the period's objects (forensics/reader.py, the raw-line needle test first),
   for a search by id alone; one at a time, bounded in time span.

Each call is annotated with the audit object it landed in (a listing of its partition's
hour folder, then the object read to make sure), and each attempt with the breaker's state
when it started (from the history's band when live, else from the breaker transitions in
the control records of the hours read).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from netscope.api.bands import StateBand
from netscope.api.history import History
from netscope.api.recent import RecentCalls
from netscope.audit.batch import decode
from netscope.audit.keys import event_hour, hour_prefix, parse_key
from netscope.audit.store import AuditStore
from netscope.contract.records import AuditRecord
from netscope.forensics import timeline
from netscope.forensics.listing import hours_between
from netscope.forensics.reader import read_period

MAX_CALLS = 50  # calls in one answer (a trace replayed many times); more: truncated
MAX_LOCATED = 10  # calls whose audit object is looked up
SCAN_DEFAULT_S = 3600.0
SCAN_MAX_S = 6 * 3600.0
ID_MAX = 200
_END_OF_TIME_MS = 2**62


class Busy(Exception):
    """A scan of the audit is already running: one at a time."""


@dataclass(frozen=True, slots=True)
class DrillQuery:
    """What to look for: ids (all given must match; ``any_id`` matches any of the three, the
    search box's way), and where a feed row says the record is."""

    trace_id: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None
    any_id: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None  # the Kafka record's time: its audit hour
    from_ms: int | None = None  # the scan's span (default: the last hour)
    to_ms: int | None = None

    def __post_init__(self) -> None:
        ids = (self.trace_id, self.request_id, self.idempotency_key, self.any_id)
        if not any(ids) and not self.has_position:
            raise ValueError("give a trace_id, request_id, idempotency_key, q or a position")
        for value in ids:
            if value is not None and (len(value) > ID_MAX or not value.isprintable()):
                raise ValueError(f"an id is at most {ID_MAX} printable characters")
        if self.from_ms is not None and self.to_ms is not None and self.from_ms >= self.to_ms:
            raise ValueError("from must be before to")

    @property
    def has_position(self) -> bool:
        return self.topic is not None and self.partition is not None and self.offset is not None

    def needle(self) -> bytes | None:
        for value in (self.trace_id, self.request_id, self.idempotency_key, self.any_id):
            if value:
                return value.encode()
        return None

    def matches(self, ids: tuple[str | None, str | None, str | None],
                position: tuple[str, int, int]) -> bool:  # fmt: skip
        """``ids`` = (trace_id, request_id, idempotency_key) of a record."""
        trace, request, key = ids
        if self.trace_id is not None and trace != self.trace_id.lower():
            return False
        if self.request_id is not None and request != self.request_id:
            return False
        if self.idempotency_key is not None and key != self.idempotency_key:
            return False
        if self.any_id is not None and self.any_id not in ids and self.any_id.lower() != trace:
            return False
        return not self.has_position or position == (self.topic, self.partition, self.offset)

    def matches_record(self, r: AuditRecord) -> bool:
        k = r.kafka
        return self.matches((r.trace_id, r.request_id, r.idempotency_key),
                            (k.topic, k.partition, k.offset))  # fmt: skip

    def matches_dict(self, r: dict[str, Any]) -> bool:
        k = r["kafka"]
        return self.matches((r.get("trace_id"), r.get("request_id"), r.get("idempotency_key")),
                            (k["topic"], k["partition"], k["offset"]))  # fmt: skip


@dataclass(slots=True)
class _Found:
    calls: list[dict[str, Any]]
    controls: list[dict[str, Any]]
    source: str  # "memory", "audit_object", "audit_scan" or "none"
    unreadable: list[str]
    truncated: bool = False


class Drill:
    """Answers :class:`DrillQuery`; the store is optional (memory only without it)."""

    def __init__(
        self,
        recent: RecentCalls,
        history: History | None = None,
        *,
        store: AuditStore | None = None,
        prefix: str = "audit",
        clock: Callable[[], float] = time.time,
        scan_max_s: float = SCAN_MAX_S,
    ) -> None:
        self._recent = recent
        self._history = history
        self._store = store
        self._prefix = prefix
        self._clock = clock
        self._scan_max_s = scan_max_s
        self._scan_lock = asyncio.Lock()

    def attach_store(self, store: AuditStore, prefix: str) -> None:
        self._store, self._prefix = store, prefix

    @property
    def has_store(self) -> bool:
        return self._store is not None

    async def timeline(self, query: DrillQuery) -> dict[str, Any]:
        found = await self._find(query)
        rows = timeline.build([*found.calls, *found.controls], timeline.Filters(), 0,
                              _END_OF_TIME_MS)  # fmt: skip
        memory = found.source == "memory"
        bands = self._bands(found, memory)
        retries = self._retry_decisions(found.calls) if memory else {}
        out_rows = [self._row(row, bands, retries) for row in rows]
        calls = []
        for i, record in enumerate(found.calls):
            located = await self._locate(record) if i < MAX_LOCATED else None
            calls.append(_call_summary(record, located))
        return {
            "query": {k: v for k, v in asdict(query).items() if v is not None},
            "source": found.source,
            "calls": calls,
            "rows": out_rows,
            "unreadable": found.unreadable,
            "truncated": found.truncated,
        }

    # ----------------------------------------------------------------- sources

    async def _find(self, q: DrillQuery) -> _Found:
        records = self._recent.find(q.matches_record)
        if records:
            calls = [orjson.loads(r.to_json()) for r in records[-MAX_CALLS:]]
            return _Found(calls, self._memory_controls(), "memory", [],
                          truncated=len(records) > MAX_CALLS)  # fmt: skip
        if self._store is None:
            return _Found([], [], "none", [])
        if q.has_position and q.timestamp_ms is not None:
            record = await self._at_position(q)
            if record is not None and q.matches_dict(record):
                controls = await self._controls_around(record)
                return _Found([record], controls, "audit_object", [])
        if q.needle() is None:
            return _Found([], [], "none", [])
        return await self._scan(q)

    async def _at_position(self, q: DrillQuery) -> dict[str, Any] | None:
        assert q.topic is not None and q.partition is not None and q.offset is not None
        assert q.timestamp_ms is not None
        key = await self._object_for(q.topic, q.partition, q.offset, q.timestamp_ms, None)
        if key is None:
            return None
        return await self._record_in(key, q.offset)

    async def _scan(self, q: DrillQuery) -> _Found:
        assert self._store is not None
        now_ms = int(self._clock() * 1000)
        to_ms = q.to_ms if q.to_ms is not None else now_ms + 60_000
        from_ms = q.from_ms if q.from_ms is not None else to_ms - int(SCAN_DEFAULT_S * 1000)
        from_ms = max(from_ms, to_ms - int(self._scan_max_s * 1000))
        if self._scan_lock.locked():
            raise Busy("another search of the audit is running; try again in a moment")
        calls: list[dict[str, Any]] = []
        controls: list[dict[str, Any]] = []
        unreadable: list[str] = []
        truncated = False
        needle = q.needle()
        async with self._scan_lock:
            async for record in read_period(self._store, self._prefix, from_ms, to_ms,
                                            needles=[needle] if needle else [],
                                            unreadable=unreadable):  # fmt: skip
                if record.get("record_type") == "control":
                    controls.append(record)
                elif q.matches_dict(record):
                    if len(calls) < MAX_CALLS:
                        calls.append(record)
                    else:
                        truncated = True
        return _Found(calls, controls if calls else [], "audit_scan", unreadable, truncated)

    async def _controls_around(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The control records of the hour before the call to just after it: enough to know
        the breaker's state at each attempt and the events around it."""
        assert self._store is not None
        start_ms = int((record["received_at"] - 3600) * 1000)
        end_ms = int((record["completed_at"] + timeline.CONTROL_MARGIN_S) * 1000)
        out: list[dict[str, Any]] = []
        for hour in hours_between(start_ms, end_ms):
            async for key in self._keys(f"{hour_prefix(self._prefix, hour)}control/"):
                body = await self._store.get(key)
                out.extend(await asyncio.to_thread(lambda b=body: list(decode(b))))
        return out

    def _memory_controls(self) -> list[dict[str, Any]]:
        """The history's band changes in the shape of control records, so the timeline
        engine interleaves them exactly as it does the audit's."""
        if self._history is None:
            return []
        out: list[dict[str, Any]] = []
        for name in self._history.upstreams:
            band = self._history.band(name)
            for c in band.changes if band is not None else ():
                out.append(
                    _control(
                        "breaker_transition",
                        c.at,
                        name,
                        {"from": c.from_state, "to": c.to_state, "reason": c.reason},
                    )
                )
        for c in self._history.degraded_band.changes:
            data = {"degraded": c.to_state == "degraded", "reason": c.reason}
            out.append(_control("degraded_mode", c.at, None, data))
        return out

    # ----------------------------------------------------------------- where it landed

    async def _locate(self, record: dict[str, Any]) -> dict[str, Any] | None:
        if self._store is None:
            return None
        k = record["kafka"]
        try:
            key = await self._object_for(
                k["topic"],
                k["partition"],
                k["offset"],
                k["timestamp_ms"],
                record.get("replay_run_id"),
            )
            if key is not None and await self._record_in(key, k["offset"]) is not None:
                return {"where": "store", "key": key}
        except Exception as exc:  # the answer is still useful without the object's name
            return {"where": "unknown", "detail": f"{type(exc).__name__}: {exc}"[:200]}
        return {
            "where": "not_in_store",
            "detail": "not in the store yet: in a batch being written, or in the local spool "
            "until the store takes it",
        }

    async def _object_for(self, topic: str, partition: int, offset: int, timestamp_ms: int,
                          run_id: str | None) -> str | None:  # fmt: skip
        """The key of the object that would hold ``offset``: batches are consecutive offsets
        of one partition and one event hour, named by their first offset, so it is the
        greatest first offset at or below it (the caller reads it to make sure)."""
        hour = event_hour(timestamp_ms)
        folder = f"{hour_prefix(self._prefix, hour)}topic={topic}/partition={partition}/"
        best: tuple[int, str] | None = None
        async for key in self._keys(folder):
            parsed = parse_key(key)
            if parsed is None or parsed.run_id != run_id or parsed.first_offset > offset:
                continue
            if best is None or parsed.first_offset > best[0]:
                best = (parsed.first_offset, key)
        return None if best is None else best[1]

    async def _record_in(self, key: str, offset: int) -> dict[str, Any] | None:
        assert self._store is not None
        body = await self._store.get(key)
        return await asyncio.to_thread(_find_offset, body, offset)

    async def _keys(self, prefix: str) -> AsyncIterator[str]:
        assert self._store is not None
        async for key in self._store.list_keys(prefix):
            yield key

    # ----------------------------------------------------------------- annotations

    def _bands(self, found: _Found, memory: bool) -> dict[str, StateBand]:
        upstreams = {c.get("upstream") for c in found.calls if c.get("upstream")}
        bands: dict[str, StateBand] = {}
        for name in upstreams:
            if memory and self._history is not None:
                band = self._history.band(name)
                if band is not None:
                    bands[name] = band
            elif not memory:
                instance = next(
                    (c.get("instance_id") for c in found.calls if c.get("upstream") == name), None
                )
                band = band_from_controls(found.controls, name, instance)
                if band is not None:
                    bands[name] = band
        return bands

    def _retry_decisions(self, calls: Iterable[dict[str, Any]]) -> dict[tuple[str, int], str]:
        out: dict[tuple[str, int], str] = {}
        for call in calls:
            for ev in self._recent.retries_of(call.get("trace_id"), call.get("request_id")):
                out[(ev.request_id, ev.attempt)] = ev.detail
        return out

    @staticmethod
    def _row(row: timeline.Row, bands: dict[str, StateBand],
             retries: dict[tuple[str, int], str]) -> dict[str, Any]:  # fmt: skip
        out = row.to_dict()
        band = bands.get(row.upstream or "")
        if row.kind in ("call", "attempt"):
            out["breaker"] = None if band is None else band.state_at(row.at)
        if row.kind == "attempt":
            n = int(row.what.rsplit(" ", 1)[-1])
            delay = row.detail.get("retry_delay_s")
            why = retries.get((row.request_id or "", n))
            if delay is not None:
                out["retry"] = f"retried after {delay * 1000:.0f} ms" + (f": {why}" if why else "")
            else:
                out["retry"] = None
        return out


def band_from_controls(
    controls: Iterable[dict[str, Any]], upstream: str, instance_id: str | None = None
) -> StateBand | None:
    """An upstream's breaker band, as one instance saw it, from audit control records: its
    breaker transitions, and its starts (a breaker starts closed). None when they hold
    neither: the state is then not known from the hours read. Other instances' breakers are
    their own, so their records are left out when ``instance_id`` is given."""
    mine = [
        c for c in controls
        if instance_id is None or c.get("instance_id") in (None, instance_id)
    ]  # fmt: skip
    moves = sorted(
        (c for c in mine
         if (c.get("event") == "breaker_transition" and c.get("upstream") == upstream)
         or (c.get("event") == "instance_started" and not c.get("replay_run_id"))),
        key=lambda c: c["at"],
    )  # fmt: skip
    if not moves:
        return None
    first = moves[0]
    initial = first["data"]["from"] if first["event"] == "breaker_transition" else "closed"
    band = StateBand(initial, horizon_s=float("inf"), max_changes=1 << 20)
    for c in moves:
        if c["event"] == "instance_started":
            band.change(c["at"], "closed", "instance started", from_state=band.current)
        else:
            data = c["data"]
            band.change(c["at"], data["to"], data.get("reason", ""), from_state=data["from"])
    return band


def _control(event: str, at: float, upstream: str | None, data: dict[str, Any]) -> dict[str, Any]:
    return {"record_type": "control", "event": event, "at": at, "upstream": upstream,
            "data": data, "instance_id": None, "actor": None}  # fmt: skip


def _find_offset(body: bytes, offset: int) -> dict[str, Any] | None:
    for record in decode(body):
        kafka = record.get("kafka")
        if kafka is not None and kafka["offset"] == offset:
            return record
    return None


def _call_summary(record: dict[str, Any], located: dict[str, Any] | None) -> dict[str, Any]:
    k = record["kafka"]
    return {
        "trace_id": record.get("trace_id"),
        "request_id": record.get("request_id"),
        "idempotency_key": record.get("idempotency_key"),
        "upstream": record.get("upstream"),
        "outcome": record.get("outcome"),
        "status": record.get("status"),
        "error_class": record.get("error_class"),
        "error_detail": record.get("error_detail"),
        "latency_s": record.get("latency_s"),
        "attempts": len(record.get("attempts") or []),
        "kafka": {
            "topic": k["topic"],
            "partition": k["partition"],
            "offset": k["offset"],
            "timestamp_ms": k["timestamp_ms"],
        },
        "run": record.get("replay_run_id") or "live",
        "audit_object": located,
    }


__all__ = ["Busy", "Drill", "DrillQuery", "band_from_controls"]
