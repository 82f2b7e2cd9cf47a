"""Issue 5, "audit that never loses a record": RGW and NetScope faults under continuous load.

Every test runs against a real Ceph RGW and a real Kafka-protocol broker. Load is produced in
the background at a steady rate (netscope.tools.loadgen) for the whole fault, so the pipeline
is busy when the fault hits and while it heals. What users rely on, checked after each fault:

- every consumed message has exactly one terminal audit record in RGW (no loss, no double);
- the local spool is empty again (everything spooled during the outage was uploaded);
- the consumer group's committed offsets reached the end of what was produced;
- the runbook's signals moved (degraded gauge, write errors, pause reason, readiness).

Waiting is always a poll with a deadline on an observable condition (tests.harness.wait_for);
fault durations are measured by loops that keep checking the pipeline, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from netscope.audit.batch import Batch, encode
from netscope.audit.exactly_once import ExactlyOnce
from netscope.audit.keys import event_hour, object_key
from netscope.audit.spool import QUARANTINE_DIRNAME, Spool
from netscope.audit.store import AuditStore
from netscope.audit.writer import AuditWriter
from netscope.contract.records import AuditRecord, KafkaPosition, Outcome
from netscope.devservices.base import free_port
from netscope.observability.events import EventBus, WriteResult
from netscope.service import Service
from netscope.tools.loadgen import LoadgenConfig
from netscope.tools.messages import SMALL_INVALID_KINDS
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import (
    BackgroundLoad,
    committed_offsets,
    metric,
    metric_sum,
    read_audit,
    run_report,
    running,
    settings_for,
    settings_toml,
    terminal_counts,
    wait_for,
)

pytestmark = pytest.mark.integration

RATE_PER_S = 100.0
# Short drain backoff cap (default 30 s) keeps the tests' heal time bounded; the semantics
# under test (never skip, never drop, oldest first) do not depend on it.
DRAIN_MAX_BACKOFF_S = 3.0
# netscope_audit_writes_total series: new objects in RGW, batches appended to the spool.
STORED = {"target": "store", "result": "created"}
SPOOLED = {"target": "spool", "result": "created"}


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
async def sim():
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as s:
        yield s


def steady_load(bootstrap: str, topic: str, rate_per_s: float = RATE_PER_S) -> BackgroundLoad:
    """Background producer at a steady rate; remembers what the broker acknowledged."""
    return BackgroundLoad(
        LoadgenConfig(
            bootstrap=bootstrap,
            topic=topic,
            rate_per_s=rate_per_s,
            upstreams={"payments": 1.0},
            invalid_share=0.02,
            invalid_kinds=SMALL_INVALID_KINDS,
            seed=5,
        )
    )


class GaugeWatch:
    """Records the distinct successive values of a metric while a test runs."""

    def __init__(self, read: Any) -> None:
        self._read = read
        self.values: list[float | None] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            value = self._read()
            if not self.values or self.values[-1] != value:
                self.values.append(value)
            await asyncio.sleep(0.05)

    async def stop(self) -> list[float | None]:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.values


def expected_positions(topic: str, ends: dict[int, int]) -> set[tuple[str, int, int]]:
    # Fresh topic, plain (non-transactional) produce: offsets are 0..end-1 per partition.
    return {(topic, p, o) for p, end in ends.items() for o in range(end)}


async def assert_exactly_once(settings: Any, topic: str, ends: dict[int, int]) -> int:
    counts = terminal_counts(await read_audit(settings.audit))
    expected = expected_positions(topic, ends)
    missing = expected - set(counts)
    extra = set(counts) - expected
    doubled = {k: n for k, n in counts.items() if n != 1}
    assert not missing, (
        f"{len(missing)} messages without an audit record, e.g. {sorted(missing)[:5]}"
    )
    assert not extra, f"records for positions never produced: {sorted(extra)[:5]}"
    assert not doubled, (
        f"{len(doubled)} messages audited more than once: {sorted(doubled.items())[:5]}"
    )
    return len(counts)


def committed_to_end(service: Service, topic: str, ends: dict[int, int]) -> bool:
    committed = service.pipeline.committer.committed
    return all(committed.get(TopicPartition(topic, p)) == end for p, end in ends.items())


def committed_total(service: Service) -> int:
    return sum(service.pipeline.committer.committed.values())


def audit_settings(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """The `audit` override for settings_for (its merge is shallow: repeat the spool basics)."""
    spool = {
        "path": tmp_path / "spool",
        "free_disk_floor_bytes": 0,
        "drain_max_backoff_s": DRAIN_MAX_BACKOFF_S,
    } | extra.pop("spool", {})
    return {"spool": spool} | extra


async def outage_keeps_processing(service: Service, started: float, duration_s: float) -> None:
    """Hold an RGW outage for ``duration_s`` (from ``started``), checking all along that the
    pipeline keeps consuming, stays degraded and keeps spooling."""
    pipeline = service.pipeline
    while time.monotonic() - started < duration_s:
        before = pipeline.processed
        spooled = metric(service, "netscope_audit_writes_total", SPOOLED)
        await wait_for(
            lambda before=before, spooled=spooled: (
                pipeline.processed > before
                and metric(service, "netscope_audit_writes_total", SPOOLED) > spooled
            ),
            timeout_s=15,
            what="the pipeline to keep processing and spooling during the outage",
        )
        assert pipeline.writer.degraded, "left degraded mode while RGW is still down"
        await asyncio.sleep(0.5)  # pacing of the outage-check loop, not synchronisation


async def heal_and_settle(
    service: Service, load: BackgroundLoad, topic: str, *, timeout_s: float = 90
) -> dict[int, int]:
    """Keep the load on for a few seconds after the fault heals, then stop it and wait for
    the pipeline to commit everything and empty the spool."""
    pipeline = service.pipeline
    healed_at = pipeline.processed
    await wait_for(
        lambda: pipeline.processed > healed_at + RATE_PER_S * 3,
        timeout_s=60,
        what="processing under load after the fault healed",
    )
    ends = await load.stop()
    await wait_for(
        lambda: committed_to_end(service, topic, ends),
        timeout_s=timeout_s,
        what="offsets committed to the end",
    )
    await wait_for(
        lambda: pipeline.spool.stats().pending_entries == 0 and not pipeline.writer.degraded,
        timeout_s=timeout_s,
        what="spool drained and degraded mode left",
    )
    return ends


def _segments(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("seg-*.log"))


def fault_settings(
    broker: Any,
    topic: str,
    rgw: Any,
    bucket: str,
    sim: Any,
    tmp_path: Path,
    *,
    audit: dict[str, Any] | None = None,
) -> Any:
    """Settings shared by the fault tests: RGW audit, one upstream, a group per topic."""
    return settings_for(
        broker=broker,
        topic=topic,
        tmp_path=tmp_path,
        rgw=rgw,
        bucket=bucket,
        group_id=f"g-{topic}",
        upstreams={"payments": sim.url},
        audit=audit or audit_settings(tmp_path),
    )


async def new_topic(broker: Any, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    await broker.create_topic(name, 4)
    return name


# --- 1. RGW killed for 60 s -------------------------------------------------------------------


async def test_rgw_killed_60s_under_load_every_message_audited_once(
    tansu_broker, rgw_faults, rgw_bucket, sim, tmp_path: Path
):
    topic = await new_topic(tansu_broker, "kill")
    settings = fault_settings(tansu_broker, topic, rgw_faults, rgw_bucket, sim, tmp_path)
    service = Service(settings)
    started_wall = time.time()
    async with running(service):
        degraded = GaugeWatch(lambda: metric(service, "netscope_audit_degraded"))
        load = steady_load(tansu_broker.bootstrap, topic).start()
        await wait_for(
            lambda: metric(service, "netscope_audit_writes_total", STORED) > 0,
            timeout_s=30,
            what="first batches in RGW",
        )

        rgw_faults.kill_rgw()
        killed_at, killed_wall = time.monotonic(), time.time()
        await wait_for(
            lambda: (
                service.pipeline.writer.degraded
                and service.pipeline.spool.stats().pending_entries > 0
            ),
            timeout_s=20,
            what="degraded mode with spooled batches",
        )
        committed_early = committed_total(service)
        await outage_keeps_processing(service, killed_at, 60)
        assert service.pipeline.spool.stats().pending_entries > 0
        assert committed_total(service) > committed_early, (
            "offsets kept being committed on the strength of the spool during the outage"
        )
        restarted_wall = time.time()
        rgw_faults.start_rgw()

        ends = await heal_and_settle(service, load, topic)
        degraded_values = await degraded.stop()
        write_errors = metric_sum(service, "netscope_audit_write_errors_total")
        drained = metric(service, "netscope_audit_spool_drained_total")
    assert service.summary is not None and service.summary.clean, service.summary

    n = await assert_exactly_once(settings, topic, ends)
    assert n == load.sent and n > RATE_PER_S * 60
    assert await committed_offsets(tansu_broker.bootstrap, settings.kafka.group_id, topic) == ends
    assert degraded_values[-2:] == [1.0, 0.0] and 1.0 in degraded_values, degraded_values
    assert write_errors > 0
    assert drained > 0

    # The journal of this incident (runbook INC-02, sections 7 and 9), read back from RGW:
    # the degraded period where RGW was down, the backlog drained after, nothing lost.
    data, _ = await run_report(settings, tmp_path, started_wall - 1, time.time() + 1,
                               "--incident", "INC-02", "--bin-s", "5")  # fmt: skip
    (period,) = data["degraded_periods"]
    assert killed_wall <= period["start_at"] <= killed_wall + 20, (period, killed_wall)
    assert restarted_wall <= period["end_at"] <= time.time(), (period, restarted_wall)
    assert not period["ongoing"] and period["drained_records"] > 0
    assert period["backlog_empty_at"] is not None, period
    backlog = [p["pending_batches"] for p in data["backlog"]]
    assert max(backlog) > 0 and backlog[-1] == 0, data["backlog"]
    assert {v["check"]: v["status"] for v in data["validation"]} == {
        "RGW writes resumed": "pass", "audit backlog purged": "pass", "no event lost": "pass",
    }, data["validation"]  # fmt: skip
    assert data["totals"]["calls"] == n
    parts = data["partitions"]
    assert sum(p["records"] for p in parts) == n
    assert all(p["missing_offsets"] == 0 and p["duplicate_records"] == 0 for p in parts), parts
    i2 = next(i for i in data["invariants"] if i["id"] == "I2")
    assert i2["status"] == "touched", i2  # degraded, and nothing lost
    degraded_bins = set(data["detected"]["abnormal_bins"])
    assert degraded_bins and data["detected"]["start"] in degraded_bins


# --- 2. RGW frozen (SIGSTOP) for 20 s ---------------------------------------------------------


async def test_rgw_frozen_20s_timed_out_puts_applied_later_no_duplicate(
    tansu_broker, rgw_faults, rgw_bucket, sim, tmp_path: Path
):
    topic = await new_topic(tansu_broker, "freeze")
    settings = fault_settings(tansu_broker, topic, rgw_faults, rgw_bucket, sim, tmp_path)
    service = Service(settings)
    async with running(service):
        degraded = GaugeWatch(lambda: metric(service, "netscope_audit_degraded"))
        load = steady_load(tansu_broker.bootstrap, topic).start()
        await wait_for(
            lambda: metric(service, "netscope_audit_writes_total", STORED) > 0,
            timeout_s=30,
            what="first batches in RGW",
        )

        rgw_faults.freeze_rgw()
        frozen_at = time.monotonic()
        try:
            await wait_for(
                lambda: (
                    service.pipeline.writer.degraded
                    and service.pipeline.spool.stats().pending_entries > 0
                ),
                timeout_s=20,
                what="degraded mode with spooled batches (PUTs time out)",
            )
            timeouts = metric(
                service,
                "netscope_audit_write_errors_total",
                {"target": "store", "reason": "StoreTimeout"},
            )
            assert timeouts > 0, "a frozen gateway shows up as write timeouts"
            await outage_keeps_processing(service, frozen_at, 20)
        finally:
            rgw_faults.thaw_rgw()

        ends = await heal_and_settle(service, load, topic)
        degraded_values = await degraded.stop()
        write_errors = metric_sum(service, "netscope_audit_write_errors_total")
    assert service.summary is not None and service.summary.clean, service.summary

    n = await assert_exactly_once(settings, topic, ends)
    assert n == load.sent
    assert await committed_offsets(tansu_broker.bootstrap, settings.kafka.group_id, topic) == ends
    assert degraded_values[-2:] == [1.0, 0.0], degraded_values
    assert write_errors > 0


# --- 3. NetScope SIGKILLed while degraded, restarted -----------------------------------------


async def _scrape(http: httpx.AsyncClient) -> dict[str, float]:
    """GET /metrics of a NetScope process; {} while it does not answer."""
    try:
        text = (await http.get("/metrics", timeout=2)).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                out[sample.name] = sample.value
    return out


async def test_netscope_sigkilled_while_degraded_spool_recovered_on_restart(
    tansu_broker, rgw_faults, rgw_bucket, sim, tmp_path: Path
):
    """tansu keeps committed offsets as long as the broker runs, and only NetScope is killed
    here, so the fast broker is enough; the broker is not what is under test."""
    topic = await new_topic(tansu_broker, "crash")
    settings = fault_settings(tansu_broker, topic, rgw_faults, rgw_bucket, sim, tmp_path)
    port = free_port()
    config = tmp_path / "netscope.toml"
    config.write_text(settings_toml(settings, api_port=port))
    env = os.environ | {"NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": rgw_faults.secret_key}
    cmd = [sys.executable, "-m", "netscope", "run", "-c", str(config)]
    spool_dir = Path(settings.audit.spool.path)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        first = await asyncio.create_subprocess_exec(
            *cmd, env=env, stderr=asyncio.subprocess.DEVNULL
        )
        second = None
        try:
            load = steady_load(tansu_broker.bootstrap, topic).start()

            async def first_metric(name: str, above: float) -> bool:
                return (await _scrape(http)).get(name, 0.0) > above

            await wait_for(
                lambda: first_metric("netscope_audit_records_total", 200),
                timeout_s=60,
                what="first process auditing to RGW",
            )
            rgw_faults.kill_rgw()
            await wait_for(
                lambda: first_metric("netscope_audit_spool_pending_batches", 5),
                timeout_s=45,
                what="first process spooling batches while RGW is down",
            )
            first.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
            segments = _segments(spool_dir)
            assert segments, "the killed process left its spool segments behind"
            committed_at_kill = await committed_offsets(
                tansu_broker.bootstrap, settings.kafka.group_id, topic
            )
            assert committed_at_kill, "offsets were committed on the strength of the spool"

            rgw_faults.start_rgw()
            second = await asyncio.create_subprocess_exec(
                *cmd, env=env, stderr=asyncio.subprocess.PIPE
            )
            assert second.stderr is not None
            log_lines: list[bytes] = []

            async def collect() -> None:
                assert second is not None and second.stderr is not None
                async for line in second.stderr:
                    log_lines.append(line)

            collector = asyncio.create_task(collect())
            await wait_for(
                lambda: first_metric("netscope_audit_spool_drained_total", 0),
                timeout_s=60,
                what="restarted process draining the recovered spool",
            )
            await wait_for(
                lambda: first_metric("netscope_audit_records_total", RATE_PER_S * 3),
                timeout_s=60,
                what="restarted process processing new load",
            )
            ends = await load.stop()

            async def settled() -> bool:
                got = await committed_offsets(
                    tansu_broker.bootstrap, settings.kafka.group_id, topic
                )
                scraped = await _scrape(http)
                return got == ends and scraped.get("netscope_audit_spool_pending_batches") == 0.0

            await wait_for(
                settled, timeout_s=120, interval_s=0.5, what="all committed, spool empty"
            )
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 60) == 0
            await collector
        finally:
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    log_text = b"".join(log_lines).decode(errors="replace")
    assert "from a previous run: draining them" in log_text, log_text[-3000:]
    assert not _segments(spool_dir), "spool segments left after the drain"
    n = await assert_exactly_once(settings, topic, ends)
    assert n == load.sent


# --- 4. A full spool pauses consumption --------------------------------------------------------


async def test_full_spool_pauses_consumption_nothing_dropped_resumes_after_drain(
    tansu_broker, rgw_faults, rgw_bucket, sim, tmp_path: Path
):
    topic = await new_topic(tansu_broker, "full")
    # Uncompressed batches fill the smallest allowed spool (1 MiB) in seconds.
    small_spool = audit_settings(tmp_path, compression="none", spool={"capacity_bytes": 1 << 20})
    settings = fault_settings(
        tansu_broker, topic, rgw_faults, rgw_bucket, sim, tmp_path, audit=small_spool
    )
    service = Service(settings)
    pipeline = service.pipeline
    async with running(service), httpx.AsyncClient(base_url=service.base_url) as http:
        load = steady_load(tansu_broker.bootstrap, topic, rate_per_s=200).start()
        await wait_for(
            lambda: metric(service, "netscope_audit_writes_total", STORED) > 0,
            timeout_s=30,
            what="first batches in RGW",
        )
        rgw_faults.kill_rgw()
        await wait_for(
            lambda: pipeline.paused_reason == "spool_full",
            timeout_s=60,
            what="ingest paused because the spool is full",
        )
        assert metric(service, "netscope_ingest_paused", {"reason": "spool_full"}) == 1
        await wait_for(
            lambda: metric(service, "netscope_audit_spool_full") == 1,
            timeout_s=5,
            what="spool full gauge",
        )
        ready = await http.get("/health/ready")
        assert ready.status_code == 503
        assert "audit_spool" in ready.json()["failing"]

        # Paused means paused: nothing more is consumed while the spool has no room.
        processed = pipeline.processed
        held_since = time.monotonic()
        while time.monotonic() - held_since < 3:
            assert pipeline.paused_reason == "spool_full"
            assert pipeline.processed <= processed + pipeline.settings.kafka.max_poll_records
            await asyncio.sleep(0.2)  # pacing of the check loop
        assert load.sent > pipeline.processed, "the load keeps coming while consumption is paused"

        rgw_faults.start_rgw()
        await wait_for(
            lambda: pipeline.paused_reason is None,
            timeout_s=60,
            what="consumption resumed after the drain",
        )
        assert metric(service, "netscope_ingest_paused", {"reason": "spool_full"}) == 0
        ends = await heal_and_settle(service, load, topic)
        last: dict = {}

        async def ready_again() -> bool:
            resp = await http.get("/health/ready")
            last.update(resp.json())
            return resp.status_code == 200

        # Ready follows within seconds, not at once: the store probe is cached 2 s and the
        # spool figures are sampled each second (docs/runbook.md).
        try:
            await wait_for(ready_again, timeout_s=15, what="ready again")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answer: {last}") from None
    assert service.summary is not None and service.summary.clean, service.summary

    n = await assert_exactly_once(settings, topic, ends)
    assert n == load.sent
    assert await committed_offsets(tansu_broker.bootstrap, settings.kafka.group_id, topic) == ends


# --- 5. A corrupt spool segment is quarantined, the rest drains ---------------------------------


def _record(topic: str, partition: int, offset: int, ts_ms: int) -> AuditRecord:
    return AuditRecord(
        request_id=str(uuid.uuid4()),
        idempotency_key=None,
        trace_id=uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        upstream="payments",
        method="GET",
        path="/v1/x",
        kafka=KafkaPosition(topic, partition, offset, ts_ms, key="k"),
        outcome=Outcome.SUCCESS,
        received_at=ts_ms / 1000,
        completed_at=ts_ms / 1000 + 0.01,
        latency_s=0.01,
        status=200,
        instance_id="forged",
    )


def _spool_batch(spool: Spool, prefix: str, topic: str, partition: int, first: int, n: int) -> int:
    """Append one real audit batch (as the writer spools it); returns the frame's offset."""
    ts_ms = int(time.time() * 1000)
    hour = event_hour(ts_ms)
    batch = Batch(topic, partition, hour)
    for offset in range(first, first + n):
        batch.add(offset, _record(topic, partition, offset, ts_ms).to_json())
    key = object_key(prefix, hour, topic, partition, first, gzip=True)
    meta: dict[str, str | int] = {
        "topic": topic,
        "partition": partition,
        "hour": hour,
        "first_offset": first,
        "last_offset": first + n - 1,
        "records": n,
    }
    return spool.append(key, encode(batch.lines, compress=True), meta).offset


async def test_corrupt_spool_segment_quarantined_and_reported_rest_drains(
    tansu_broker, rgw, rgw_bucket, sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    topic = await new_topic(tansu_broker, "corrupt")
    settings = fault_settings(tansu_broker, topic, rgw, rgw_bucket, sim, tmp_path)
    spool_dir = Path(settings.audit.spool.path)
    forged = "forged-topic"
    prefix = settings.audit.prefix
    # Segment 1: batches A (offsets 0-9) and B (10-19); segment 2: batch C (20-29).
    with Spool.open(spool_dir)[0] as spool:
        a_at = _spool_batch(spool, prefix, forged, 0, 0, 10)
        _spool_batch(spool, prefix, forged, 0, 10, 10)
    with Spool.open(spool_dir)[0] as spool:
        _spool_batch(spool, prefix, forged, 0, 20, 10)
    segments = _segments(spool_dir)
    assert len(segments) == 2
    bad = segments[0]
    data = bytearray(bad.read_bytes())
    data[a_at + 100] ^= 0x40  # inside A's frame, before B's: corruption, not a torn tail
    bad.write_bytes(bytes(data))

    caplog.set_level(logging.WARNING, logger="netscope")
    service = Service(settings)
    report = service.pipeline.spool_report
    assert [q.segment for q in report.quarantined] == [bad.name]
    assert report.quarantined[0].salvaged_entries == 1  # B, copied before the move
    async with running(service):
        await wait_for(
            lambda: service.pipeline.spool.stats().pending_entries == 0,
            timeout_s=60,
            what="the good batches drained",
        )
        await wait_for(
            lambda: metric(service, "netscope_audit_spool_quarantined_segments") == 1,
            timeout_s=10,
            what="quarantined-segments gauge",
        )
        assert metric(service, "netscope_audit_spool_drained_total") == 2
    assert (spool_dir / QUARANTINE_DIRNAME / bad.name).exists()
    assert "audit spool recovered with findings" in caplog.text
    assert bad.name in caplog.text

    counts = terminal_counts(await read_audit(settings.audit))
    assert set(counts) == {(forged, 0, o) for o in range(10, 30)}, "B and C drained, A reported"
    assert set(counts.values()) == {1}


# --- 7. Redelivery with different batch boundaries ------------------------------------------


async def test_redelivered_batches_with_new_boundaries_are_not_doubled(rgw, rgw_bucket, tmp_path):
    """After a crash between "batch durable" and "offset committed", the redelivered messages
    are batched again, and the new boundaries need not match the object already written
    (age-based sealing depends on timing). Offsets [0, 10) are in one object; the rerun
    batches them as [0, 5) and [5, 13): records 5..9 must not get a second copy."""
    settings = settings_for(
        broker=_NoBroker(),
        topic="t",
        tmp_path=tmp_path,
        rgw=rgw,
        bucket=rgw_bucket,
        upstreams={"payments": "http://127.0.0.1:9"},
    )
    store = AuditStore.from_config(settings.audit)
    objects = ExactlyOnce.from_config(settings.audit, store)
    ts_ms = int(time.time() * 1000)
    hour = event_hour(ts_ms)

    def batch(first: int, end: int) -> Batch:
        b = Batch("redelivery", 0, hour)
        for o in range(first, end):
            b.add(o, _record("redelivery", 0, o, ts_ms).to_json())
        return b

    assert await ExactlyOnce.from_config(settings.audit, store).write(batch(0, 10)) == (
        WriteResult.CREATED  # the first run
    )
    assert await objects.write(batch(0, 5)) == WriteResult.ALREADY_PRESENT  # the rerun
    await objects.write(batch(5, 13))

    counts = terminal_counts(await read_audit(settings.audit))
    assert set(counts) == {("redelivery", 0, o) for o in range(13)}
    assert set(counts.values()) == {1}, sorted(k for k, n in counts.items() if n > 1)


async def test_spooled_batch_starting_inside_a_rerun_object_is_not_doubled(
    rgw, rgw_bucket, tmp_path
):
    """The drainer's side of the same race: the first run spooled [0, 5) and [5, 10); the
    rerun (RGW back) wrote [0, 13) at key 0 before the drain. Uploading the spooled [5, 10)
    at key 5 would double 5..9: the 412 on key 0 must make the drainer skip it."""
    settings = settings_for(
        broker=_NoBroker(),
        topic="t",
        tmp_path=tmp_path,
        rgw=rgw,
        bucket=rgw_bucket,
        upstreams={"payments": "http://127.0.0.1:9"},
    )
    store = AuditStore.from_config(settings.audit)
    objects = ExactlyOnce.from_config(settings.audit, store)
    writer = AuditWriter(settings.audit, store, EventBus())
    ts_ms = int(time.time() * 1000)
    hour = event_hour(ts_ms)
    lines = {o: _record("spooled", 0, o, ts_ms).to_json() for o in range(13)}

    def batch(first: int, end: int) -> Batch:
        b = Batch("spooled", 0, hour)
        for o in range(first, end):
            b.add(o, lines[o])
        return b

    def entry(first: int, end: int) -> SimpleNamespace:
        b = batch(first, end)
        meta = {"topic": "spooled", "partition": 0, "hour": hour, "first_offset": first}
        return SimpleNamespace(
            key=objects.key_for(b), payload=encode(b.lines, compress=True), meta=meta
        )

    assert await objects.write(batch(0, 13)) == WriteResult.CREATED  # the rerun, live
    # The drain of the first run's spool:
    assert await writer.upload_spooled(entry(0, 5)) == WriteResult.ALREADY_PRESENT
    assert await writer.upload_spooled(entry(5, 10)) == WriteResult.ALREADY_PRESENT

    counts = terminal_counts(await read_audit(settings.audit))
    assert set(counts) == {("spooled", 0, o) for o in range(13)}
    assert set(counts.values()) == {1}, sorted(k for k, n in counts.items() if n > 1)


class _NoBroker:
    bootstrap = "127.0.0.1:9"
    session_timeout_ms = 6000
