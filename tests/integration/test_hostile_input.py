"""Hostile input through Kafka (issue 15, item 3): a running `netscope run` fed 100,000 messages.

A seeded stream of hostile shapes (src/netscope/tools/hostile/: random bytes, invalid UTF-8,
deep nesting, huge values, NaN, duplicate keys, SSRF-shaped paths and hosts, CR/LF, forbidden
headers, odd methods and timeouts, broken traces, oversized keys and headers, garbage Kafka
headers, header keys that are not UTF-8, keyless tombstones) interleaved with valid traffic is
produced to a real broker while NetScope runs as its own process. Then, over the whole run:

- no crash: the process never exits on its own, answers /health/live after each quarter of
  the stream, and exits 0 (clean: everything audited and committed) on SIGTERM;
- no call for an invalid message: the upstream simulator saw exactly the valid messages'
  Idempotency-Keys, each once, and the canary (the host every SSRF shape names) nothing;
- each invalid message has exactly one dead letter and one ``invalid`` audit record, each
  valid one exactly one audit record with its declared outcome, and nothing else exists;
- memory bounded: RSS, sampled every 0.5 s, stays under ``RSS_PEAK_BOUND_MB``, and its trend
  over the second half of the stream (least-squares slope times duration) is at most
  ``RSS_GROWTH_BOUND_MB``.

Its figures and RSS series go to test-artifacts/hostile-input/.

The seed is printed (and taken from HOSTILE_INPUT_SEED when set): a failure replays with
it. HOSTILE_INPUT_MESSAGES overrides the count of the tansu run (100,000), and
HOSTILE_INPUT_SHORT_MESSAGES that of the noida run (20,000: noida is the slower broker, and
the one whose record size limit the dead-letter copies meet).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from netscope.audit.batch import decode
from netscope.audit.record import KEY_MAX_CHARS
from netscope.audit.store import AuditStore
from netscope.config import AuditConfig
from netscope.contract.records import DLQ_SOURCE
from netscope.devservices.base import free_port
from netscope.ingest.dead_letter import DLQ_OMITTED
from netscope.tools.hostile import HostileConfig, HostileStream, kinds, new_seed
from netscope.tools.hostile import kafka as hostile_kafka
from netscope.tools.hostile.kafka import Produced
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import committed_offsets, settings_for, wait_for

pytestmark = pytest.mark.integration

FULL_RUN = int(os.environ.get("HOSTILE_INPUT_MESSAGES", "100000"))
SHORT_RUN = int(os.environ.get("HOSTILE_INPUT_SHORT_MESSAGES", "20000"))
HOSTILE_SHARE = 0.5
QUARTERS = 4  # produced in four parts; RSS is read when each part is committed
MAX_MESSAGE_BYTES = 256 * 1024  # below noida's 1 MiB record limit, so "beyond" fits in it
MAX_REQUEST_BYTES = 64 * 1024
# Largest record value each broker takes: noida refuses a batch over 1 MiB; tansu has no
# limit of its own, so the value is set just past NetScope's dead-letter producer's
# max_request_size (4 MiB, ingest/kafka.py), which the copy then hits instead.
BROKER_MAX_VALUE = {"noida": 1_048_516, "tansu": (4 << 20) + (256 << 10)}
STALL_S = 90.0
RSS_GROWTH_BOUND_MB = 64.0
RSS_PEAK_BOUND_MB = 400.0  # measured 172-177 MB over 100,000 messages (docs/reliability.md)


@dataclass
class RssSampler:
    """Samples a process's resident memory (/proc) every interval until it exits."""

    pid: int
    samples: list[tuple[float, float]] = field(default_factory=list)  # (t, MB)
    t0: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def read_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS line")

    async def run(self, proc: asyncio.subprocess.Process, interval_s: float = 0.5) -> None:
        while proc.returncode is None:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                self.samples.append((self.elapsed(), self.read_mb()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), interval_s)


def write_config(path: Path, settings: Any, api_port: int) -> Path:
    """`netscope run` settings: the test's broker and simulator, a local audit folder, the
    default (SQLite) ledger, and limits the hostile shapes aim at."""
    k = settings.kafka
    lines = [
        'instance_id = "hostile"',
        "[kafka]",
        f'bootstrap_servers = "{k.bootstrap_servers}"',
        f'requests_topic = "{k.requests_topic}"',
        f'dead_letter_topic = "{k.dead_letter_topic}"',
        f'group_id = "{k.group_id}"',
        f"session_timeout_s = {k.session_timeout_s}",
        "max_poll_records = 1000",
        "[pipeline]",
        "commit_interval_s = 0.2",
        f"max_message_bytes = {MAX_MESSAGE_BYTES}",
        "[api]",
        'host = "127.0.0.1"',
        f"port = {api_port}",
        "[logging]",
        'level = "warning"',
        'format = "console"',
        "[audit]",
        'backend = "local"',
        "batch_max_delay_s = 0.1",
        "[audit.local]",
        f'path = "{settings.audit.local.path}"',
        "[audit.spool]",
        f'path = "{settings.audit.spool.path}"',
        "free_disk_floor_bytes = 0",
    ]
    for name, up in settings.upstreams.items():
        lines += [f"[upstreams.{name}]", f'base_url = "{up.base_url}"',
                  f"max_request_bytes = {MAX_REQUEST_BYTES}"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:]


async def wait_ready(base_url: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:

        async def ready() -> bool:
            assert proc.returncode is None, (
                f"netscope exited {proc.returncode} at start:\n{tail(log_path)}"
            )
            with contextlib.suppress(httpx.HTTPError):
                return (await http.get("/health/ready")).status_code == 200
            return False

        await wait_for(ready, timeout_s=90, interval_s=0.5, what="/health/ready 200")


async def live(base_url: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        return (await http.get("/health/live")).status_code


def batches(total: int, parts: int) -> Iterator[int]:
    """Sizes of the parts the stream is produced in."""
    for i in range(parts):
        yield total * (i + 1) // parts - total * i // parts


async def read_audit_index(cfg: AuditConfig) -> dict[tuple[int, int], list[tuple[Any, ...]]]:
    """(partition, offset) -> [(outcome, request_id, error_class, called, key length)] for
    every call record:
    compact, so 100,000 records do not cost the test process hundreds of MB."""
    store = AuditStore.from_config(cfg)
    index: dict[tuple[int, int], list[tuple[Any, ...]]] = {}
    async for key in store.list_keys(cfg.prefix + "/"):
        for r in decode(await store.get(key)):
            if r.get("record_type") == "control":
                continue
            k = r["kafka"]
            called = r["attempts"] != []
            entry = (r["outcome"], r["request_id"], r["error_class"], called, len(k["key"] or ""))
            index.setdefault((k["partition"], k["offset"]), []).append(entry)
    return index


async def read_dead_letters(bootstrap: str, topic: str, expected: int) -> list[tuple[Any, ...]]:
    """(source, omitted header or None, value length or None) of every dead letter."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
    )  # fmt: skip
    await consumer.start()
    out: list[tuple[Any, ...]] = []
    try:
        await consumer.topics()  # a metadata round trip: the partitions are then known
        parts = consumer.partitions_for_topic(topic) or set()
        assert parts, f"no dead-letter topic {topic}"
        consumer.assign([TopicPartition(topic, p) for p in parts])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + 120
        while len(out) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for m in records:
                    headers = dict(m.headers)
                    size = None if m.value is None else len(m.value)
                    out.append((headers[DLQ_SOURCE].decode(), headers.get(DLQ_OMITTED), size))
        # Anything past the expected count is a duplicate: give it a moment to show up.
        for records in (await consumer.getmany(timeout_ms=2000)).values():
            for m in records:
                headers = dict(m.headers)
                out.append((headers[DLQ_SOURCE].decode(), headers.get(DLQ_OMITTED), None))
    finally:
        await consumer.stop()
    return out


def check_audit(
    produced: list[Produced], index: dict[tuple[int, int], list[tuple[Any, ...]]]
) -> Counter[str]:
    """Exactly one record per message, with the verdict and outcome its kind declared."""
    problems: Counter[str] = Counter()
    examples: list[str] = []
    positions = {(p.partition, p.offset) for p in produced}
    extra = set(index) - positions
    for p in produced:
        records = index.get((p.partition, p.offset), [])
        if len(records) != 1:
            problems[f"{len(records)} records"] += 1
            examples.append(f"{p.kind} {p.partition}/{p.offset}: {records}")
            continue
        outcome, request_id, error_class, called, key_chars = records[0]
        expected = p.outcomes if p.valid else frozenset({"invalid"})
        if outcome not in expected or error_class == "internal_error":
            problems[f"{p.kind}: {outcome} not in {sorted(expected)}"] += 1
            examples.append(f"{p.kind} {p.partition}/{p.offset}: {records[0]}")
        if p.valid and request_id != p.request_id:
            problems[f"{p.kind}: request_id {request_id!r} != {p.request_id!r}"] += 1
        if not p.valid and called:
            problems[f"{p.kind}: invalid but attempts recorded"] += 1
        if key_chars > KEY_MAX_CHARS + len("...(1048576 bytes)"):
            problems[f"{p.kind}: audit key of {key_chars} characters"] += 1
    if extra:
        problems["records at no produced position"] = len(extra)
    assert not problems, f"{dict(problems)}; e.g. {examples[:10]}"
    return Counter(p.kind for p in produced)


def check_dead_letters(
    produced: list[Produced], topic: str, dead: list[tuple[Any, ...]]
) -> None:
    expected = {f"{topic}/{p.partition}/{p.offset}": p for p in produced if not p.valid}
    sources = Counter(source for source, _, _ in dead)
    doubled = {s: n for s, n in sources.items() if n > 1}
    missing = set(expected) - set(sources)
    unexpected = set(sources) - set(expected)
    assert not doubled and not missing and not unexpected, (
        f"dead letters: {len(doubled)} doubled, {len(missing)} missing "
        f"(e.g. {[expected[s].kind for s in list(missing)[:5]]}), {len(unexpected)} for "
        "valid messages"
    )
    for source, omitted, size in dead:
        want = expected[source].dlq_omitted
        assert (omitted is not None) == want and (size is None or not want), (
            f"{expected[source].kind} at {source}: omitted={omitted!r} value={size}"
        )


def check_calls(produced: list[Produced], sim: UpstreamSim, canary: UpstreamSim) -> None:
    valid_ids = Counter(p.request_id for p in produced if p.valid)
    invalid_ids = {p.request_id for p in produced if not p.valid and p.request_id}
    assert set(valid_ids.values()) == {1}, "each valid message has its own Idempotency-Key"
    seen = sim.stats.by_idempotency_key
    called_invalid = invalid_ids & set(seen)
    assert not called_invalid, f"invalid messages called: {list(called_invalid)[:5]}"
    assert set(seen) == set(valid_ids), (
        f"{len(set(valid_ids) - set(seen))} valid never called, "
        f"{len(set(seen) - set(valid_ids))} unknown keys called"
    )
    assert set(seen.values()) == {1}, f"called twice: {[k for k, n in seen.items() if n > 1][:5]}"
    assert sim.stats.total == len(valid_ids)
    assert canary.stats.total == 0, f"the canary host was called: {list(canary.stats.recent)[:3]}"


def check_rss(
    samples: list[tuple[float, float]], t_half: float, t_end: float
) -> tuple[float, float]:
    """The peak, and the growth over the second half of the stream: the least-squares slope
    of every RSS sample taken while it was processed, times its duration (robust to the
    collector's sawtooth, unlike two single readings). The first half warms up (allocator
    pools, the ledger's cache, aiokafka's buffers); a leak keeps growing in the second."""
    peak = max(mb for _, mb in samples)
    window = [(t, mb) for t, mb in samples if t_half <= t <= t_end]
    assert len(window) >= 4, f"too few RSS samples in the second half: {window}"
    mean_t = sum(t for t, _ in window) / len(window)
    mean_mb = sum(mb for _, mb in window) / len(window)
    slope = sum((t - mean_t) * (mb - mean_mb) for t, mb in window) / sum(
        (t - mean_t) ** 2 for t, _ in window
    )
    growth = slope * (t_end - t_half)
    assert peak <= RSS_PEAK_BOUND_MB, f"peak RSS {peak:.0f} MB"
    assert growth <= RSS_GROWTH_BOUND_MB, f"RSS grew {growth:.0f} MB over the second half"
    return peak, growth


def write_report(name: str, report: dict[str, Any]) -> Path:
    """The run's figures and RSS series, kept under test-artifacts/ (issue 15: reports are
    test artifacts)."""
    out = Path(__file__).resolve().parents[2] / "test-artifacts" / "hostile-input" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return out


@dataclass
class NetScopeProcess:
    """A `netscope run` child: its exit code and log once stopped, its RSS throughout."""

    proc: asyncio.subprocess.Process
    base_url: str
    log_path: Path
    sampler: RssSampler
    code: int | None = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.asynccontextmanager
async def netscope_run(
    config: Path, api_port: int, log_path: Path
) -> AsyncIterator[NetScopeProcess]:
    """Start `netscope run`, wait until ready; on exit SIGTERM it and wait for its exit."""
    with log_path.open("wb") as log_file:  # a file, not a pipe: nothing can block its logging
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "netscope", "run", "-c", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
    child = NetScopeProcess(proc, f"http://127.0.0.1:{api_port}", log_path, RssSampler(proc.pid))
    sampling = asyncio.create_task(child.sampler.run(proc))
    try:
        await wait_ready(child.base_url, proc, log_path)
        yield child
        proc.send_signal(signal.SIGTERM)
        child.code = await asyncio.wait_for(proc.wait(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sampling


async def wait_committed(
    broker: Any, topic: str, ends: dict[int, int], child: NetScopeProcess
) -> None:
    """Poll the group's committed offsets until they reach ``ends``. Fails as soon as the
    process is gone or the commits stop moving for ``STALL_S`` (a message that can never be
    finished holds its partition back: a stall, not a slow run)."""
    want = dict(ends)
    progress = {"total": -1, "at": time.monotonic()}

    async def committed() -> bool:
        assert child.proc.returncode is None, f"netscope exited {child.proc.returncode}"
        got = await committed_offsets(broker.bootstrap, topic, topic)
        total = sum(got.values())
        if total != progress["total"]:
            progress.update(total=total, at=time.monotonic())
        stalled = time.monotonic() - progress["at"]
        assert stalled < STALL_S, f"commits stuck at {got} for {stalled:.0f}s; want {want}"
        return all(got.get(p, 0) >= end for p, end in want.items())

    await wait_for(committed, timeout_s=1500, interval_s=1.0, what=f"offsets {want} committed")


@dataclass
class Fed:
    produced: list[Produced] = field(default_factory=list)
    plateaus: list[float] = field(default_factory=list)  # RSS (MB) when each part committed
    boundaries: list[float] = field(default_factory=list)  # the sampler's clock then
    produce_s: float = 0.0


async def feed(
    stream: HostileStream, count: int, broker: Any, topic: str, child: NetScopeProcess
) -> Fed:
    """Produce ``count`` messages in quarters, each waited for until committed (a running
    NetScope consumes while the next one is drawn), reading RSS and /health/live between."""
    fed = Fed()
    producer = hostile_kafka.make_producer(broker.bootstrap)
    await producer.start()
    ends: dict[int, int] = {}
    try:
        for size in batches(count, QUARTERS):
            t0 = time.monotonic()
            part = await hostile_kafka.produce(
                producer, topic, (stream.next() for _ in range(size))
            )
            fed.produce_s += time.monotonic() - t0
            fed.produced += part
            for p in part:
                ends[p.partition] = max(ends.get(p.partition, 0), p.offset + 1)
            await wait_committed(broker, topic, ends, child)
            fed.boundaries.append(child.sampler.elapsed())
            fed.plateaus.append(child.sampler.read_mb())
            assert await live(child.base_url) == 200
    finally:
        await producer.stop()
    return fed


BROKER_RUNS = [
    pytest.param("tansu", FULL_RUN, id=f"tansu-{FULL_RUN}"),
    pytest.param("noida", SHORT_RUN, id=f"noida-{SHORT_RUN}"),
]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("broker_name", "count"), BROKER_RUNS)
async def test_hostile_stream_through_kafka_no_crash_no_call_one_dead_letter_each(
    broker_name: str, count: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    seed = int(os.environ.get("HOSTILE_INPUT_SEED") or new_seed())
    print(f"\nhostile input: seed={seed} messages={count} broker={broker_name} "
          f"(replay: HOSTILE_INPUT_SEED={seed})")  # fmt: skip
    broker = request.getfixturevalue(f"{broker_name}_broker")
    topic = f"hostile-{seed}-{os.getpid()}"
    await broker.create_topic(topic, 4)
    t_start = time.monotonic()
    async with (
        UpstreamSim(SimConfig(latency_ms=1.0), history_size=100) as sim,
        UpstreamSim(SimConfig(), history_size=100) as canary,
    ):
        settings = settings_for(
            broker=broker, topic=topic, tmp_path=tmp_path, group_id=topic,
            upstreams={"payments": sim.url, "search": sim.url},
        )  # fmt: skip
        api_port = free_port()
        config = write_config(tmp_path / "netscope.toml", settings, api_port)
        stream = HostileStream(
            HostileConfig(
                max_message_bytes=MAX_MESSAGE_BYTES,
                max_request_bytes=MAX_REQUEST_BYTES,
                broker_max_value_bytes=BROKER_MAX_VALUE[broker_name],
                canary=canary.url.removeprefix("http://"),
            ),
            random.Random(seed),
            HOSTILE_SHARE,
        )
        async with netscope_run(config, api_port, tmp_path / "netscope.log") as child:
            fed = await feed(stream, count, broker, topic, child)
            t_done = time.monotonic()
        log = child.log
        assert child.code == 0, f"exit {child.code}:\n{log[-3000:]}"
        assert "netscope stopped (exit 0)" in log and "Traceback" not in log, log[-3000:]

        produced = fed.produced
        by_kind = check_audit(produced, await read_audit_index(settings.audit))
        assert set(by_kind) == {*kinds(stream.cfg), "valid"}, "every shape was sent"
        invalid = [p for p in produced if not p.valid]
        dead = await read_dead_letters(broker.bootstrap, f"{topic}.dlq", len(invalid))
        check_dead_letters(produced, topic, dead)
        check_calls(produced, sim, canary)
    half, end = fed.boundaries[QUARTERS // 2 - 1], fed.boundaries[-1]
    peak, growth = check_rss(child.sampler.samples, half, end)
    figures = {
        "seed": seed, "broker": broker_name, "messages": len(produced), "invalid": len(invalid),
        "dead_letters": len(dead), "dead_letters_omitted": sum(1 for _, o, _ in dead if o),
        "upstream_calls": sim.stats.total, "canary_calls": canary.stats.total,
        "produce_s": round(fed.produce_s, 1), "run_s": round(t_done - t_start, 1),
        "rss_mb_at_quarters": [round(x) for x in fed.plateaus], "rss_peak_mb": round(peak),
        "rss_trend_second_half_mb": round(growth, 1),
    }  # fmt: skip
    report = write_report(
        f"{broker_name}-{seed}.json",
        figures | {"by_kind": dict(by_kind), "rss_samples": child.sampler.samples},
    )
    print(f"hostile input: {figures} report={report}")
