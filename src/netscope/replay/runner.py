"""``netscope replay``: a Kafka time window, read again and sent through the live path.

Runbook section 7: the window's records are read under the replay's own identity (manual
assignment, no group, nothing committed: the live group's offsets never move), paced by a
token bucket, and handed to the same handler, guards and idempotency ledger as live traffic
(pipeline.py's stages without its Kafka consumer). A key the ledger holds as completed is not
called again (``duplicate_skipped``); every replayed message gets one terminal audit record,
written under ``run=<run_id>`` keys so it never collides with the live objects.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from netscope.config import Settings
from netscope.contract.outcomes import DUPLICATE_OUTCOMES, ERROR_OUTCOMES, Outcome
from netscope.ingest.work import Work
from netscope.observability.events import CallCompleted
from netscope.pipeline import Pipeline
from netscope.resilience.clock import SystemClock
from netscope.resilience.limiter import TokenBucket
from netscope.runtime import wait_event


def new_run_id() -> str:
    """Sortable by start time, unique enough to never reuse another run's audit keys."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


@dataclass(slots=True)
class Tally:
    """One partition's (or the total's) progress."""

    planned: int = 0
    read: int = 0
    filtered: int = 0  # another upstream than --upstream: not processed
    called: int = 0  # reached the upstream (whatever the answer)
    skipped: int = 0  # duplicate_skipped / duplicate_in_progress: the ledger said done
    failed: int = 0  # an error outcome (including not called for lack of a ledger)
    invalid: int = 0
    ledger_unavailable: int = 0  # of failed: not called, the ledger could not be asked

    @property
    def done(self) -> int:
        return self.filtered + self.skipped + self.failed + self.invalid + self.succeeded

    succeeded: int = 0

    def count(self, outcome: Outcome, attempts: int) -> None:
        if attempts:
            self.called += 1
        if outcome in DUPLICATE_OUTCOMES:
            self.skipped += 1
        elif outcome is Outcome.INVALID:
            self.invalid += 1
        elif outcome in ERROR_OUTCOMES:
            self.failed += 1
            if outcome is Outcome.LEDGER_UNAVAILABLE:
                self.ledger_unavailable += 1
        else:
            self.succeeded += 1


@dataclass(slots=True)
class ReplaySummary:
    run_id: str
    topic: str
    from_ms: int
    to_ms: int
    rate_per_s: float | None
    upstream: str | None
    partitions: dict[int, Tally] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    interrupted: bool = False
    abandoned: int = 0  # in flight when the drain ran out: no record (rerun the window)
    audit_pending: int = 0  # records not durable at the end: no record (rerun the window)
    spooled: int = 0  # batches durable in the replay's spool, not yet in the store
    spool_path: str = ""

    @property
    def total(self) -> Tally:
        total = Tally()
        for t in self.partitions.values():
            for name in Tally.__dataclass_fields__:
                setattr(total, name, getattr(total, name) + getattr(t, name))
        return total

    @property
    def clean(self) -> bool:
        return (
            not self.interrupted
            and self.abandoned == 0
            and self.audit_pending == 0
            and self.spooled == 0
        )

    def to_json(self) -> bytes:
        total = self.total
        elapsed = (self.finished_at or time.time()) - self.started_at
        return orjson.dumps(
            {
                "run_id": self.run_id,
                "topic": self.topic,
                "from_ms": self.from_ms,
                "to_ms": self.to_ms,
                "rate_per_s": self.rate_per_s,
                "upstream": self.upstream,
                "started_at": self.started_at,
                "finished_at": self.finished_at,
                "elapsed_s": round(elapsed, 3),
                "achieved_rate_per_s": round(total.read / elapsed, 2) if elapsed > 0 else None,
                "interrupted": self.interrupted,
                "abandoned": self.abandoned,
                "audit_pending": self.audit_pending,
                "spooled": self.spooled,
                "spool_path": self.spool_path,
                "clean": self.clean,
                "total": _tally_dict(total),
                "partitions": {str(p): _tally_dict(t) for p, t in sorted(self.partitions.items())},
            },
            option=orjson.OPT_INDENT_2,
        )


def _tally_dict(t: Tally) -> dict[str, int]:
    return {name: getattr(t, name) for name in Tally.__dataclass_fields__}


def replay_settings(settings: Settings, run_id: str) -> Settings:
    """The live settings with a spool of the replay's own (the live process holds its
    spool); the ledger stays the live one (sqlite beside the spool's folder, or PostgreSQL)."""
    audit = settings.audit
    live = Path(audit.spool.path)
    spool = audit.spool.model_copy(update={"path": live.parent / f"replay-{run_id}-spool"})
    ledger = settings.ledger
    if ledger.backend == "sqlite" and ledger.path is None:
        ledger = ledger.model_copy(update={"path": live.parent / "ledger.sqlite3"})
    return settings.model_copy(
        update={"audit": audit.model_copy(update={"spool": spool}), "ledger": ledger}
    )


def upstream_of(value: bytes | None) -> str | None:
    """The upstream a message names, read cheaply for ``--upstream`` (None if unreadable:
    such a message is processed, and the handler dead-letters it as invalid)."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    up = data.get("upstream") if isinstance(data, dict) else None
    return up if isinstance(up, str) else None


class Replay:
    def __init__(
        self,
        settings: Settings,
        summary: ReplaySummary,
        records: AsyncIterator[Any],
        *,
        on_progress: Callable[[ReplaySummary], None] = lambda s: None,
        metrics_port: int | None = None,
    ) -> None:
        self.summary = summary
        self._settings = replay_settings(settings, summary.run_id)
        summary.spool_path = str(self._settings.audit.spool.path)
        self._records = records
        self._on_progress = on_progress
        self._metrics_port = metrics_port
        self._stop = asyncio.Event()
        rate = summary.rate_per_s
        burst = max(1, int(rate / 10)) if rate else 1  # a tenth of a second's worth at most
        self._bucket = TokenBucket(rate or float("inf"), burst, SystemClock())

    def stop(self) -> None:
        """Ctrl-C: stop reading; what was taken is finished and audited."""
        self._stop.set()

    async def run(self) -> ReplaySummary:
        s = self.summary
        pipeline = Pipeline(self._settings, replay_run_id=s.run_id)
        pipeline.events.subscribe(self._on_event)
        if self._metrics_port is not None:
            self._serve_metrics(pipeline, self._metrics_port)
        max_in_progress = 2 * self._settings.pipeline.max_in_flight
        queue_depth = self._settings.pipeline.queue_depth
        await pipeline.start_stages(
            {"topic": s.topic, "from_ms": s.from_ms, "to_ms": s.to_ms,
             "rate_per_s": s.rate_per_s, "upstream": s.upstream}
        )  # fmt: skip
        try:
            async for record in self._records:
                if self._stop.is_set():
                    s.interrupted = True
                    break
                tally = s.partitions.setdefault(record.partition, Tally())
                tally.read += 1
                if s.upstream is not None and upstream_of(record.value) not in (s.upstream, None):
                    tally.filtered += 1
                    continue
                await self._pace()
                if self._stop.is_set():
                    s.interrupted = True
                    break
                # Backpressure as live: never more taken than the workers and the audit hold.
                while (
                    pipeline.scheduler.outstanding >= max_in_progress
                    or pipeline.writer.pending_records >= queue_depth
                ) and not self._stop.is_set():
                    await pipeline.scheduler.wait_below(max_in_progress // 2, 0.05)
                self._dispatch(pipeline, record)
            else:
                s.interrupted = self._stop.is_set()
        finally:
            s.abandoned, s.audit_pending, s.spooled = await pipeline.stop_stages(
                self._settings.pipeline.drain_timeout_s,
                {"interrupted": s.interrupted, "totals": _tally_dict(s.total)},
            )
            s.finished_at = time.time()
            self._on_progress(s)
            if s.spooled == 0:  # everything reached the store: the replay's spool is empty
                shutil.rmtree(s.spool_path, ignore_errors=True)
        return s

    def _serve_metrics(self, pipeline: Pipeline, port: int) -> None:
        from prometheus_client import start_http_server

        from netscope.replay.metrics import ReplayCollector

        registry = pipeline.metrics.registry
        registry.register(ReplayCollector(self.summary))
        start_http_server(port, addr="127.0.0.1", registry=registry)  # a daemon thread

    async def _pace(self) -> None:
        bucket = self._bucket
        while not bucket.try_acquire() and not self._stop.is_set():
            await wait_event(self._stop, max(bucket.wait_time_s(), 0.001))

    def _dispatch(self, pipeline: Pipeline, record: Any) -> None:
        work = Work(
            lane=pipeline.writer.track(record.topic, record.partition, record.offset),
            topic=record.topic,
            partition=record.partition,
            record=record,
            received_at=time.time(),
            consumed_mono=pipeline.clock.monotonic(),
            dispatched=time.perf_counter(),
        )
        pipeline.scheduler.dispatch(work.ordering_key, work)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, CallCompleted):
            rec = event.record
            tally = self.summary.partitions.setdefault(rec.kafka.partition, Tally())
            tally.count(rec.outcome, len(rec.attempts))
            self._on_progress(self.summary)
