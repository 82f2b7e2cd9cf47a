"""Helpers for end-to-end tests: settings for real services, produce, read back the audit.

Everything here talks to the real broker and store handed over by the fixtures; nothing is
mocked. Waiting is always a poll with a deadline on an observable condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from netscope.audit.batch import decode
from netscope.audit.store import AuditStore
from netscope.config import AuditConfig, Settings
from netscope.service import Service
from netscope.tools.loadgen import LoadgenConfig, SentMessage, run_loadgen
from netscope.tools.messages import make_invalid, make_request

SMALL_INVALID = (
    "garbage",
    "json_array",
    "missing_request_id",
    "wrong_types",
    "path_with_scheme",
    "forbidden_header_host",
)


def settings_for(
    *,
    broker: Any,
    topic: str,
    tmp_path: Path,
    upstreams: dict[str, str],
    rgw: Any | None = None,
    bucket: str | None = None,
    group_id: str = "netscope-test",
    api: dict[str, Any] | None = None,
    audit: dict[str, Any] | None = None,
    pipeline: dict[str, Any] | None = None,
    upstream_overrides: dict[str, Any] | None = None,
) -> Settings:
    audit_cfg: dict[str, Any] = {
        "spool": {"path": tmp_path / "spool", "free_disk_floor_bytes": 0},
        "batch_max_delay_s": 0.1,
        "write_timeout_s": 2.0,
    }
    if rgw is not None:
        audit_cfg |= {
            "backend": "s3",
            "s3": {
                "endpoint": rgw.endpoint,
                "bucket": bucket or rgw.bucket,
                "region": rgw.region,
                "access_key_id": rgw.access_key,
                "secret_access_key": rgw.secret_key,
            },
        }
    else:
        audit_cfg |= {"backend": "local", "local": {"path": tmp_path / "audit"}}
    audit_cfg |= audit or {}
    return Settings(
        instance_id="test",
        kafka={
            "bootstrap_servers": broker.bootstrap,
            "requests_topic": topic,
            "dead_letter_topic": f"{topic}.dlq",
            "group_id": group_id,
            "session_timeout_s": max(6.0, broker.session_timeout_ms / 1000),
        },
        audit=audit_cfg,
        api={"port": 0} | (api or {}),
        pipeline={"commit_interval_s": 0.2, "drain_timeout_s": 10} | (pipeline or {}),
        upstreams={
            name: {"base_url": url, "read_timeout_s": 2.0} | (upstream_overrides or {})
            for name, url in upstreams.items()
        },
    )


def make_traffic(
    n: int, *, upstreams: list[str], invalid_every: int = 0, seed: int = 7, keys: int = 64
) -> list[tuple[bytes, bytes, dict[str, Any] | None]]:
    """(key, value, request-or-None-if-invalid) triples, deterministic for a seed.

    Few keys (64) by default, so tests see many messages per key and exercise ordering.
    """
    rand = random.Random(seed)
    out = []
    for i in range(n):
        key = f"k-{rand.randrange(keys)}".encode()
        if invalid_every and i % invalid_every == invalid_every - 1:
            kind = SMALL_INVALID[i % len(SMALL_INVALID)]
            out.append((key, make_invalid(kind, rand), None))
        else:
            req = make_request(upstreams[i % len(upstreams)], rand=rand)
            out.append((key, orjson.dumps(req), req))
    return out


async def produce(
    bootstrap: str,
    topic: str,
    items: list[tuple[bytes, bytes, Any]],
    compression_type: str | None = None,
) -> dict[int, int]:
    """Produce and wait for acks; returns the next offset per partition (what must be committed)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=4 << 20,
        compression_type=compression_type,
    )  # fmt: skip
    await producer.start()
    ends: dict[int, int] = {}
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v, _ in items]
        for fut in futures:
            meta = await fut
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return ends


async def read_audit(cfg: AuditConfig, *, control: bool = False) -> list[dict[str, Any]]:
    """The call records of the audit (with ``control``, the control records too)."""
    store = AuditStore.from_config(cfg)
    records: list[dict[str, Any]] = []
    async for key in store.list_keys(cfg.prefix + "/"):
        records.extend(
            r for r in decode(await store.get(key)) if control or r.get("record_type") != "control"
        )
    return records


async def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    """Committed offsets of a group (OffsetFetch; tansu lacks the admin API for it)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        out = {}
        for p in sorted(parts):
            offset = await consumer.committed(TopicPartition(topic, p))
            if offset is not None:
                out[p] = offset
        return out
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[Any] = []
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        deadline = time.monotonic() + timeout_s
        while not parts and time.monotonic() < deadline:
            await consumer.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in parts])
        await consumer.seek_to_beginning()
        while len(out) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


async def wait_for(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.2,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


def terminal_counts(records: list[dict[str, Any]]) -> Counter[tuple[str, int, int]]:
    """How many terminal records each (topic, partition, offset) has."""
    return Counter(
        (r["kafka"]["topic"], r["kafka"]["partition"], r["kafka"]["offset"]) for r in records
    )


@contextlib.asynccontextmanager
async def running(service: Service) -> AsyncIterator[Service]:
    """Start a Service and its fetch loop; on exit stop it the way SIGTERM would."""
    await service.start()
    run = asyncio.create_task(service.pipeline.run(), name="pipeline-run")
    try:
        yield service
    finally:
        service.pipeline.request_stop()
        await _or_dump_tasks(run, "the fetch loop to end")
        if service.summary is None:
            await _or_dump_tasks(service.stop(), "the service to stop")


STOP_DEADLINE_S = 120.0  # every stop step is bounded well below this


async def _or_dump_tasks(step: Awaitable[Any], what: str) -> None:
    """A stop that hangs fails here with every task's stack, not as a silent test timeout."""
    try:
        await asyncio.wait_for(step, STOP_DEADLINE_S)
    except TimeoutError:
        import io

        out = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(file=out)
        raise AssertionError(f"timed out waiting for {what}; tasks:\n{out.getvalue()}") from None


def metric(service: Service, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample of the service's own registry (0 when the series does not exist yet)."""
    value = service.pipeline.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def metric_sum(service: Service, name: str) -> float:
    """Sum of a counter's samples over all label values."""
    return sum(
        sample.value
        for family in service.pipeline.metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    )


def toml_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def toml_table(table: str, keys: dict[str, Any]) -> str:
    """A [table] of scalar keys, to append to a TOML text."""
    return f"[{table}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items())


def with_keys(text: str, table: str, keys: dict[str, Any]) -> str:
    """Add keys at the top of an existing [table] of a TOML text."""
    header = f"[{table}]\n"
    assert text.count(header) == 1, f"{header!r} not once in the TOML"
    return text.replace(header, toml_table(table, keys), 1)


def settings_toml(settings: Settings, *, api_port: int = 0, timeouts: bool = False) -> str:
    """Test settings as a TOML file for `netscope run`; the S3 secret stays in the environment
    (NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY), as an operator would keep it."""
    s3 = settings.audit.s3
    spool = settings.audit.spool
    assert s3.access_key_id is not None
    lines = [
        f'instance_id = "{settings.instance_id}"',
        "[kafka]",
        f'bootstrap_servers = "{settings.kafka.bootstrap_servers}"',
        f'requests_topic = "{settings.kafka.requests_topic}"',
        f'dead_letter_topic = "{settings.kafka.dead_letter_topic}"',
        f'group_id = "{settings.kafka.group_id}"',
        f"session_timeout_s = {settings.kafka.session_timeout_s}",
        "[pipeline]",
        "commit_interval_s = 0.2",
        "[api]",
        'host = "127.0.0.1"',
        f"port = {api_port}",
        "[logging]",
        'format = "console"',
        "[audit]",
        'backend = "s3"',
        "batch_max_delay_s = 0.1",
        f"write_timeout_s = {settings.audit.write_timeout_s}",
        "[audit.s3]",
        f'endpoint = "{s3.endpoint}"',
        f'bucket = "{s3.bucket}"',
        f'access_key_id = "{s3.access_key_id.get_secret_value()}"',
        "[audit.spool]",
        f'path = "{spool.path}"',
        "free_disk_floor_bytes = 0",
        f"drain_max_backoff_s = {spool.drain_max_backoff_s}",
    ]
    for name, up in settings.upstreams.items():
        lines += [f"[upstreams.{name}]", f'base_url = "{up.base_url}"']
        if timeouts:  # callers that add their own keys to the table leave them out
            lines += [
                f"connect_timeout_s = {up.connect_timeout_s}",
                f"read_timeout_s = {up.read_timeout_s}",
                f"deadline_s = {up.deadline_s}",
            ]
    return "\n".join(lines) + "\n"


async def run_report(
    settings: Settings, out_dir: Path, from_s: float, to_s: float, *extra: str
) -> tuple[dict[str, Any], Path]:
    """`netscope report` over ``[from_s, to_s)`` as an operator runs it (a TOML file, the S3
    secret in the environment), in a thread beside the test's loop; its JSON data and the
    journal's path."""
    from typer.testing import CliRunner

    from netscope.cli import app

    config = out_dir / "report.toml"
    config.write_text(settings_toml(settings, timeouts=True))  # deadlines: I1's evidence
    out = out_dir / "report.html"
    secret = settings.audit.s3.secret_access_key
    env = {"NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": secret.get_secret_value() if secret else ""}
    args = ["report", "-c", str(config), "--from", str(int(from_s * 1000)),
            "--to", str(int(to_s * 1000) + 1), "-o", str(out), *extra]  # fmt: skip
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
    assert result.exit_code == 0, result.output
    return orjson.loads((out_dir / "report.html.json").read_bytes()), out


class BackgroundLoad:
    """`netscope loadgen` in-process at a steady rate; remembers every message the broker
    acknowledged, by position, and the end offset of each partition."""

    def __init__(self, cfg: LoadgenConfig) -> None:
        self.cfg = cfg
        self.acked: dict[tuple[int, int], SentMessage] = {}
        self.ends: dict[int, int] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None

    @property
    def sent(self) -> int:
        return len(self.acked)

    def _on_sent(self, msg: SentMessage) -> None:
        assert msg.partition is not None and msg.offset is not None
        self.acked[(msg.partition, msg.offset)] = msg
        self.ends[msg.partition] = max(self.ends.get(msg.partition, 0), msg.offset + 1)

    def start(self) -> BackgroundLoad:
        self._task = asyncio.create_task(
            run_loadgen(self.cfg, on_sent=self._on_sent, stop=self._stop)
        )
        return self

    async def stop(self) -> dict[int, int]:
        """Stop producing; the end offsets. Any produce error fails the test."""
        self._stop.set()
        assert self._task is not None
        report = await self._task
        assert report.errors == 0, report.summary()
        return dict(self.ends)
