"""``netscope check-config --connect FILE``: reach every dependency a configuration names.

Runbook section 2 lists the prerequisites (network access to Kafka and RGW, RGW credentials
with read/write on the audit bucket) and section 3 step 2 says "check dependencies" before
starting. Each dependency gets one line, checked the way NetScope will use it:

- the broker: topics exist (listed from metadata: asking for a missing topic by name makes
  auto-creating brokers create it), their partitions, the consumer group's state;
- the audit store: a probe object written, read and deleted (``s3probe.py``);
- the idempotency ledger: the SQLite file writable, or PostgreSQL reachable with its table
  present (or creatable by the account);
- the spool folder: writable, free disk above ``audit.spool.free_disk_floor_bytes``;
- each upstream's ``base_url``: a HEAD of ``/`` without body; any HTTP answer counts as
  reachable (an upstream's ``/`` may well be a 404).

Exit 2 when any line fails (a warning alone exits 0). Nothing is changed but the probe
object, which is deleted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import typer

from netscope.config import KafkaConfig, LedgerConfig, Settings, SpoolConfig, UpstreamConfig
from netscope.ledger._shared import TABLE
from netscope.ledger.factory import sqlite_path
from netscope.ops import s3probe
from netscope.ops.verdict import Line, Status

EXIT_OK, EXIT_FAILED = 0, 2
KAFKA_TIMEOUT_S = 15.0
_MARK = {Status.PASS: "ok  ", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "skip"}


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _line(key: str, status: Status, figure: str, detail: str = "") -> Line:
    return Line(key, key, status, figure, "", detail)


def _count(n: int | None, noun: str) -> str:
    if n is None:
        return f"? {noun}s"
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# -- Kafka -----------------------------------------------------------------------------------


def group_state(groups: list[Any], group_id: str) -> tuple[str, int] | None:
    """``(state, members)`` of ``group_id`` from DescribeGroups answers, None if unknown.

    Brokers disagree on how to say "no such group": Apache Kafka answers state ``Dead``,
    others an error code, an empty state, or fields shifted by one (noida, when asked for
    several groups), so only an entry naming the group, with no error and a live state,
    counts.
    """
    for response in groups:
        for entry in getattr(response, "groups", []):
            error_code, name, state, _protocol_type, _protocol, members = entry[:6]
            if name == group_id and error_code == 0 and state and state != "Dead":
                return str(state), len(members)
    return None


def _partitions(described: list[dict[str, Any]]) -> dict[str, int]:
    return {
        t["topic"]: len(t.get("partitions", []))
        for t in described
        if t.get("error_code", 0) == 0
    }


async def check_kafka(cfg: KafkaConfig) -> Line:
    from aiokafka.admin import AIOKafkaAdminClient

    from netscope.ingest.kafka import _common  # the pipeline's own security settings

    admin = AIOKafkaAdminClient(**_common(cfg), request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000))
    where = cfg.bootstrap_servers
    try:
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            await admin.start()
            # Metadata of every topic: naming a missing one would auto-create it (tansu,
            # and Apache Kafka with auto.create.topics.enable).
            existing = set(await admin.list_topics())
            wanted = [cfg.requests_topic, cfg.dead_letter_topic]
            present = [t for t in wanted if t in existing]
            partitions = _partitions(await admin.describe_topics(present)) if present else {}
            try:
                groups = await admin.describe_consumer_groups([cfg.group_id])
                group = group_state(groups, cfg.group_id)
                group_text = (
                    f"group {cfg.group_id} {group[0]}, {_count(group[1], 'member')}"
                    if group else f"group {cfg.group_id} not created yet (no commit)"
                )  # fmt: skip
            except Exception as exc:  # DescribeGroups is not vital: say it is unknown
                group_text = f"group {cfg.group_id} state unknown ({_error(exc)})"
    except TimeoutError:
        return _line("kafka", Status.FAIL, f"{where}: no answer in {KAFKA_TIMEOUT_S:g} s")
    except Exception as exc:
        return _line("kafka", Status.FAIL, f"{where}: unreachable: {_error(exc)}")
    finally:
        await admin.close()
    missing = [t for t in wanted if t not in existing]
    topics = ", ".join(f"{t} ({_count(partitions.get(t), 'partition')})" for t in present)
    figure = f"{where}: topics {topics or 'none'}; {group_text}"
    if missing:
        detail = "; ".join(
            f"{t} does not exist"
            + (" (requests)" if t == cfg.requests_topic
               else " (dead letters: a partition stalls at its first invalid message)")
            for t in missing
        )  # fmt: skip
        return _line("kafka", Status.FAIL, f"{where}: missing topic {', '.join(missing)}",
                     detail)  # fmt: skip
    return _line("kafka", Status.PASS, figure)


# -- audit store -----------------------------------------------------------------------------


async def check_store(settings: Settings) -> Line:
    result = await s3probe.probe(settings.audit)
    return _line("audit store", result.status, result.figure, result.detail)


# -- ledger ----------------------------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_sqlite(path: Path) -> Line:
    """The SQLite ledger: its file (and folder, for the WAL files) writable; the schema
    present, or created at first start."""
    where = f"sqlite {path}"
    if not path.exists():
        folder = _nearest_existing(path.parent)
        if os.access(folder, os.W_OK | os.X_OK):
            return _line("ledger", Status.PASS, f"{where}: absent, created at start "
                         f"({folder} is writable)")  # fmt: skip
        return _line("ledger", Status.FAIL, f"{where}: cannot be created: {folder} not writable")
    if not path.is_file():
        return _line("ledger", Status.FAIL, f"{where}: not a file")
    if not (os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)):
        return _line("ledger", Status.FAIL, f"{where}: not writable (file and folder must be: WAL)")
    try:
        conn = sqlite3.connect(path, timeout=2.0)
        try:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return _line("ledger", Status.FAIL, f"{where}: unreadable: {_error(exc)}")
    schema = "schema present" if found else f"table {TABLE} created at start"
    return _line("ledger", Status.PASS, f"{where}: writable, {schema}")


async def check_postgres(cfg: LedgerConfig) -> Line:
    """PostgreSQL reachable; the ledger's table present with the rights NetScope uses, or
    creatable by the account (NetScope creates it at first start)."""
    import asyncpg

    from netscope.ledger.postgres import redact_dsn

    where = f"postgresql {redact_dsn(cfg.dsn)}"
    password = cfg.password.get_secret_value() if cfg.password else None
    try:
        async with asyncio.timeout(cfg.connect_timeout_s + cfg.statement_timeout_s + 1):
            conn = await asyncpg.connect(cfg.dsn, password=password, timeout=cfg.connect_timeout_s)
            try:
                present = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE)
                if present:
                    # One privilege per call: given a list, has_table_privilege is true
                    # when *any* of them is held.
                    each = [await conn.fetchval("SELECT has_table_privilege($1, $2)", TABLE, p)
                            for p in ("SELECT", "INSERT", "UPDATE", "DELETE")]  # fmt: skip
                    rights = all(each)
                    schema = None
                else:
                    schema = await conn.fetchval("SELECT current_schema()")
                    rights = await conn.fetchval(
                        "SELECT has_schema_privilege(current_schema(), 'CREATE')"
                    )
            finally:
                await conn.close()
    except TimeoutError:
        return _line("ledger", Status.FAIL, f"{where}: no answer in {cfg.connect_timeout_s:g} s")
    except Exception as exc:
        return _line("ledger", Status.FAIL, f"{where}: unreachable: {_error(exc)}")
    if present and rights:
        return _line("ledger", Status.PASS, f"{where}: reachable, table {TABLE} present")
    if present:
        return _line("ledger", Status.FAIL, f"{where}: table {TABLE} present but this account "
                     "lacks SELECT, INSERT, UPDATE or DELETE on it")  # fmt: skip
    if rights:
        return _line("ledger", Status.PASS, f"{where}: reachable, table {TABLE} created at "
                     f"start (the account may CREATE in schema {schema})")  # fmt: skip
    return _line("ledger", Status.FAIL, f"{where}: table {TABLE} absent and the account may "
                 f"not CREATE in schema {schema}: create it, or grant CREATE")  # fmt: skip


async def check_ledger(settings: Settings) -> Line:
    cfg = settings.ledger
    upstreams = settings.upstreams.values()
    if cfg.backend == "none" or not any(u.idempotency.enabled for u in upstreams):
        return _line("ledger", Status.PASS, "off (ledger.backend = \"none\", or no upstream with "
                     "idempotency.enabled)")  # fmt: skip
    if cfg.backend == "sqlite":
        return await asyncio.to_thread(check_sqlite, sqlite_path(settings))
    return await check_postgres(cfg)


# -- spool -----------------------------------------------------------------------------------


def check_spool(cfg: SpoolConfig) -> Line:
    """The spool folder writable (or creatable) with free disk above its floor."""
    path = Path(cfg.path)
    folder = _nearest_existing(path)
    where = f"{path}" + ("" if folder == path else f" (absent; created in {folder})")
    if not os.access(folder, os.W_OK | os.X_OK):
        return _line("spool", Status.FAIL, f"{where}: not writable")
    free = shutil.disk_usage(folder).free
    figure = f"{where}: writable, {_size(free)} free (floor {_size(cfg.free_disk_floor_bytes)})"
    if free < cfg.free_disk_floor_bytes:
        detail = ("below audit.spool.free_disk_floor_bytes: the spool would refuse every batch "
                  "while RGW fails (spool_full, ingest paused; INC-02 step 4)")
        return _line("spool", Status.FAIL, figure, detail)
    return _line("spool", Status.PASS, figure)


# -- upstreams -------------------------------------------------------------------------------


async def check_upstream(name: str, up: UpstreamConfig) -> Line:
    """HEAD ``{base_url}/``: no body, no configured header (secrets stay home); any HTTP
    answer proves DNS, TCP, TLS and an HTTP server."""
    key = f"upstream {name}"
    url = f"{up.base_url}/"
    timeout = httpx.Timeout(up.read_timeout_s, connect=up.connect_timeout_s)
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            resp = await client.head(url)
    except httpx.TimeoutException as exc:
        return _line(key, Status.FAIL, f"{url}: no answer ({type(exc).__name__}, connect "
                     f"{up.connect_timeout_s:g} s / read {up.read_timeout_s:g} s)")  # fmt: skip
    except httpx.HTTPError as exc:
        return _line(key, Status.FAIL, f"{url}: unreachable: {_error(exc)}")
    ms = (time.monotonic() - started) * 1000
    return _line(key, Status.PASS, f"{url}: reachable (HTTP {resp.status_code} to HEAD, "
                 f"{ms:.0f} ms)")  # fmt: skip


# -- all together ----------------------------------------------------------------------------


async def run(settings: Settings) -> list[Line]:
    """Every dependency at once; each is bounded on its own."""
    return list(
        await asyncio.gather(
            check_kafka(settings.kafka),
            check_store(settings),
            check_ledger(settings),
            asyncio.to_thread(check_spool, settings.audit.spool),
            *(check_upstream(n, u) for n, u in settings.upstreams.items()),
        )
    )


def render(lines: list[Line]) -> str:
    width = max((len(ln.name) for ln in lines), default=0)
    out = []
    for ln in lines:
        out.append(f"  {_MARK[ln.status]}  {ln.name:<{width}}  {ln.figure}")
        if ln.detail:
            out.append(f"        {'':<{width}}  {ln.detail}")
    failed = sum(1 for ln in lines if ln.status is Status.FAIL)
    out.append(f"connect: {failed} of {len(lines)} dependencies failed" if failed
               else f"connect: all {len(lines)} dependencies answer")  # fmt: skip
    return "\n".join(out)


def exit_for(lines: list[Line]) -> int:
    """2 when a dependency fails; a warning (a probe object left behind) still exits 0."""
    return EXIT_FAILED if any(ln.status is Status.FAIL for ln in lines) else EXIT_OK


def preflight_command(settings: Settings) -> int:
    """Print one line per dependency; 2 when any fails, else 0."""
    typer.echo("connect:")
    lines = asyncio.run(run(settings))
    typer.echo(render(lines))
    return exit_for(lines)
