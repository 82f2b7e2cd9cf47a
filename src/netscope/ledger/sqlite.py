"""The idempotency ledger in one SQLite file: one host, any number of processes on it.

Why the standard library's ``sqlite3`` on a thread of our own rather than aiosqlite:
aiosqlite sends every statement to its thread as its own hop, so a claim (BEGIN IMMEDIATE,
SELECT, upsert, COMMIT) would be four awaits, and an asyncio timeout or a cancellation
landing between two of them leaves a transaction open on the connection, holding the write
lock every other process waits for. Here each operation is one function run on the ledger's
single thread: one hop per batch, and the transaction commits or rolls back inside that
function whatever happens to the awaiting coroutine. (aiosqlite is this same design, a
sqlite3 connection owned by one thread, without the atomic hop.)

Why the rules are decided in Python (ledger/_shared.py ``decide``) rather than in SQL:
every write runs under ``BEGIN IMMEDIATE``, the database's single write lock, so reading
the batch's rows and writing the decisions cannot interleave with another process's claim.
Two ``SqliteLedger`` objects on one file (two processes on one host) are therefore correct;
SQLite on a network file system is not (its locks are not reliable there): keep the file
on a local disk.

Durability: WAL mode with ``synchronous=FULL``, so a commit is on disk (the WAL fsynced)
before a claim or settle answers. With NORMAL a power cut can lose the last commits; a lost
completed row means the redelivered message calls the upstream twice, which is what the
ledger exists to prevent. FULL costs one fsync per batch, not per key (bench/ledger_bench.py
measures both).

Set-based statements, a batch's keys passed as one JSON array (``json_each``): each
statement and each row fetched releases and retakes the GIL around SQLite, and retaking it
from a busy event loop waits up to the interpreter's switch interval (5 ms). One statement
per key made a batch of 256 settles cost a second of waiting; here a claim or a settle is a
handful of statements whatever the batch, and answers come back as one JSON document
(``json_group_array``), one row.

Bounds: SQLite's busy timeout (``statement_timeout_s``) bounds waiting for another
process's lock; an asyncio timeout a second longer bounds the whole hop (a slow disk, a
queue of operations on the thread), so the busy error with its clear message usually wins.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson

from netscope.ledger._shared import (
    COLUMNS,
    DELETE_CHUNK,
    SELECT_COLUMNS,
    TABLE,
    Decision,
    decide,
    entry_from_row,
    fan_out,
    ours,
    unique_claims,
    unique_settles,
)
from netscope.ledger.model import (
    Claim,
    ClaimRequest,
    Entry,
    EntryState,
    LedgerKey,
    LedgerStats,
    LedgerUnavailable,
    Settle,
)

T = TypeVar("T")


def _json(value: Any) -> str:
    # Text, not bytes: SQLite >= 3.45 reads a BLOB argument of json_each() as JSONB.
    return orjson.dumps(value).decode()

# Tables created before released entries were kept have the older check, which
# _migrate_state_check_sync widens in place at open.
_STATE_CHECK = "state IN ('in_progress', 'completed', 'released')"
_OLD_STATE_CHECK = "CHECK (state IN ('in_progress', 'completed'))"

# The primary key leads with idempotency_key so that find() (one key, every upstream) is a
# prefix scan of it: no second index to maintain on every claim.
_SCHEMA = (
    f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        upstream        TEXT    NOT NULL,
        idempotency_key TEXT    NOT NULL,
        state           TEXT    NOT NULL CHECK ({_STATE_CHECK}),
        token           TEXT    NOT NULL,
        created_at      REAL    NOT NULL,
        lease_until     REAL,
        expires_at      REAL,
        takeovers       INTEGER NOT NULL DEFAULT 0,
        outcome         TEXT,
        status          INTEGER,
        attempts        INTEGER,
        audit_ref       TEXT,
        completed_at    REAL,
        PRIMARY KEY (idempotency_key, upstream)
    ) WITHOUT ROWID
    """,
    # Partial: a claim inserts its row with no expiry and leaves this index alone; only a
    # settle adds an entry (the sweep's comparison implies NOT NULL).
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expires_at ON {TABLE} (expires_at)"
    " WHERE expires_at IS NOT NULL",
)

# The batch's keys travel as one JSON parameter: one statement whatever the batch size, and
# a statement text the connection's cache keeps. CROSS JOIN keeps json_each as the outer
# loop, so each key is one primary-key lookup.
_SELECT_KEYS = f"""
    SELECT {SELECT_COLUMNS}
    FROM json_each(?1) AS j CROSS JOIN {TABLE} AS t
    WHERE t.idempotency_key = j.value ->> 0 AND t.upstream = j.value ->> 1
"""
# A batch's new keys in one statement:
# [[idempotency_key, upstream, token, lease_until, audit_ref], ...].
_INSERT_NEW = f"""
    INSERT INTO {TABLE} (idempotency_key, upstream, state, token, created_at, lease_until,
                         takeovers, audit_ref)
    SELECT j.value ->> 0, j.value ->> 1, 'in_progress', j.value ->> 2, ?2, j.value ->> 3, 0,
           j.value ->> 4
    FROM json_each(?1) AS j WHERE true
    ON CONFLICT (idempotency_key, upstream) DO NOTHING
"""
# The batch's rows after it, as one JSON array of COLUMNS-ordered arrays: one row fetched.
_ROWS_JSON = f"""
    SELECT json_group_array(json_array({SELECT_COLUMNS}))
    FROM json_each(?1) AS j CROSS JOIN {TABLE} AS t
    WHERE t.idempotency_key = j.value ->> 0 AND t.upstream = j.value ->> 1
"""
# Which settles hold their key (the array index of each): [[key, upstream, token], ...].
_HELD_JSON = f"""
    SELECT json_group_array(j.key)
    FROM json_each(?1) AS j CROSS JOIN {TABLE} AS t
    WHERE t.idempotency_key = j.value ->> 0 AND t.upstream = j.value ->> 1
      AND t.token = j.value ->> 2 AND t.state = 'in_progress'
"""
# Completions and releases in one statement: [[key, upstream, token, state, expires_at,
# outcome, status, attempts, audit_ref, completed_at], ...] (state: completed or released).
_SETTLE_MANY = f"""
    UPDATE {TABLE} AS t
    SET state = j.value ->> 3, lease_until = NULL, expires_at = j.value ->> 4,
        outcome = j.value ->> 5, status = j.value ->> 6, attempts = j.value ->> 7,
        audit_ref = j.value ->> 8, completed_at = j.value ->> 9
    FROM json_each(?1) AS j
    WHERE t.idempotency_key = j.value ->> 0 AND t.upstream = j.value ->> 1
      AND t.token = j.value ->> 2 AND t.state = 'in_progress'
"""
_UPSERT = (
    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (idempotency_key, upstream) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
)
_FIND = f"SELECT {SELECT_COLUMNS} FROM {TABLE} AS t WHERE t.idempotency_key = ? ORDER BY t.upstream"
_STATS = f"""
    SELECT count(*) FILTER (WHERE state = 'in_progress') AS in_progress,
           count(*) FILTER (WHERE state = 'completed') AS completed,
           count(*) FILTER (WHERE state = 'released') AS released,
           count(*) FILTER (WHERE state = 'in_progress' AND lease_until <= ?) AS expired_leases,
           min(completed_at) FILTER (WHERE state = 'completed') AS oldest_completed_at
    FROM {TABLE}
"""
_SWEEP = f"""
    DELETE FROM {TABLE} WHERE (idempotency_key, upstream) IN (
        SELECT idempotency_key, upstream FROM {TABLE}
        WHERE state IN ('completed', 'released') AND expires_at <= ? LIMIT ?)
"""
_PURGE = f"""
    DELETE FROM {TABLE} WHERE (idempotency_key, upstream) IN (
        SELECT idempotency_key, upstream FROM {TABLE}
        WHERE state IN ('completed', 'released') AND completed_at < ? LIMIT ?)
"""


class SqliteLedger:
    """``Ledger`` on a local SQLite file (see the module docstring for why it is built so)."""

    # Class-level so bench/ledger_bench.py can measure NORMAL against it; not configurable.
    _synchronous = "FULL"

    def __init__(self, path: Path, *, statement_timeout_s: float = 2.0) -> None:
        self.path = Path(path)
        self.description = f"sqlite:{self.path}"
        self._statement_timeout_s = statement_timeout_s
        # A second over the busy timeout: SQLite's "database is locked" should answer first.
        self._bound_s = statement_timeout_s + 1.0
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # touched only on the executor's thread

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the parent directory, the file and the schema; idempotent."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-sqlite")
        try:
            # Two lock waits at most (WAL switch, schema), each bounded by the busy timeout.
            await self._run("open", self._open_sync, bound_s=2 * self._bound_s)
        except BaseException:
            executor, self._executor = self._executor, None
            executor.submit(self._close_sync)
            executor.shutdown(wait=False)
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            future = asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
            async with asyncio.timeout(self._bound_s):
                await future
        except (TimeoutError, sqlite3.Error):
            pass  # closing: the thread finishes its last operation and closes on its own
        finally:
            executor.shutdown(wait=False)

    async def ping(self) -> None:
        await self._run("ping", self._ping_sync)

    # -- the protocol ------------------------------------------------------------------------

    async def claim(self, requests: Sequence[ClaimRequest], now: float) -> list[Claim]:
        if not requests:
            return []
        unique, slots = unique_claims(requests)
        answers = await self._run("claim", self._claim_sync, unique, now)
        return fan_out(requests, slots, answers)

    async def settle(self, settles: Sequence[Settle], now: float) -> list[bool]:
        if not settles:
            return []
        return await self._run("settle", self._settle_sync, settles, now)

    async def exchange(
        self, settles: Sequence[Settle], requests: Sequence[ClaimRequest], now: float
    ) -> tuple[list[bool], list[Claim]]:
        if not requests:
            return await self.settle(settles, now), []
        unique, slots = unique_claims(requests)
        applied, answers = await self._run(
            "exchange", self._exchange_sync, settles, unique, now
        )
        return applied, fan_out(requests, slots, answers)

    async def get(self, keys: Sequence[LedgerKey]) -> dict[LedgerKey, Entry]:
        if not keys:
            return {}
        return await self._run("get", self._get_sync, keys)

    async def find(self, idempotency_key: str) -> list[Entry]:
        return await self._run("find", self._find_sync, idempotency_key)

    async def stats(self, now: float) -> LedgerStats:
        return await self._run("stats", self._stats_sync, now)

    async def purge(self, completed_before: float) -> int:
        return await self._delete_chunks("purge", _PURGE, completed_before)

    async def sweep(self, now: float) -> int:
        return await self._delete_chunks("sweep", _SWEEP, now)

    async def _delete_chunks(self, what: str, sql: str, bound: float) -> int:
        # One short write transaction per chunk, each its own hop: claims from this process
        # and the others get the lock in between instead of waiting out a long delete.
        total = 0
        while True:
            deleted = await self._run(what, self._delete_sync, sql, bound)
            total += deleted
            if deleted < DELETE_CHUNK:
                return total

    # -- the thread's side -------------------------------------------------------------------

    async def _run(
        self, what: str, fn: Callable[..., T], *args: Any, bound_s: float | None = None
    ) -> T:
        executor = self._executor
        if executor is None:
            raise LedgerUnavailable(f"ledger {what}: {self.description} is not open")
        bound = self._bound_s if bound_s is None else bound_s
        try:
            # Cancelling the awaited future (timeout, shutdown) cancels the job if it has not
            # started; one that has runs to its commit or rollback on the thread.
            future = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except RuntimeError as exc:  # close() shut the executor down under us
            raise LedgerUnavailable(f"ledger {what}: {self.description} is closing") from exc
        try:
            async with asyncio.timeout(bound):
                return await future
        except TimeoutError as exc:
            raise LedgerUnavailable(
                f"ledger {what}: {self.description} did not answer within {bound:.1f}s"
            ) from exc
        except (sqlite3.Error, OSError) as exc:
            raise LedgerUnavailable(f"ledger {what}: {self.description}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("connection closed")
        return self._conn

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return _write_transaction(self._connection())

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions, ours are explicit (BEGIN IMMEDIATE).
        # timeout= is SQLite's busy timeout: how long a statement waits for another's lock.
        conn = sqlite3.connect(
            self.path,
            timeout=self._statement_timeout_s,
            isolation_level=None,
            check_same_thread=False,  # close() may run after the thread was replaced
        )
        try:
            conn.row_factory = sqlite3.Row
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL (journal_mode={mode})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            for ddl in _SCHEMA:
                conn.execute(ddl)
            self._migrate_state_check_sync(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _migrate_state_check_sync(self, conn: sqlite3.Connection) -> None:
        """Widen the state check of a table created before ``released`` entries were kept.

        SQLite cannot alter a CHECK constraint; rebuilding the table would copy every row
        under the write lock (minutes for a full 24 h ledger). Loosening a CHECK changes
        nothing on disk, so this is SQLite's documented in-place procedure for it
        (https://sqlite.org/lang_altertable.html, "making other kinds of table schema
        changes"): edit the table's SQL in sqlite_master and bump schema_version, in one
        write transaction, so other connections re-read the schema. Idempotent: a table
        that already allows ``released`` is left alone; an unrecognised one is refused.
        """
        sql_of = f"SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '{TABLE}'"
        (sql,) = conn.execute(sql_of).fetchone()
        if "'released'" in sql:
            return
        with _write_transaction(conn) as tx:
            (sql,) = tx.execute(sql_of).fetchone()  # another process may have done it
            if "'released'" in sql:
                return
            if sql.count(_OLD_STATE_CHECK) != 1:
                raise sqlite3.OperationalError(
                    f"{TABLE}: unrecognised state check, cannot allow 'released': {sql}"
                )
            (version,) = tx.execute("PRAGMA schema_version").fetchone()
            tx.execute("PRAGMA writable_schema = ON")
            try:
                tx.execute(
                    "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                    (sql.replace(_OLD_STATE_CHECK, f"CHECK ({_STATE_CHECK})"), TABLE),
                )
                tx.execute(f"PRAGMA schema_version = {int(version) + 1}")
            finally:
                tx.execute("PRAGMA writable_schema = OFF")

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _ping_sync(self) -> None:
        # Reads the schema and a page of the table: a missing or corrupt file fails here.
        self._connection().execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchall()

    def _select(
        self, conn: sqlite3.Connection, keys: Sequence[LedgerKey]
    ) -> dict[LedgerKey, Entry]:
        param = json.dumps([[k.idempotency_key, k.upstream] for k in keys], ensure_ascii=False)
        entries = (entry_from_row(row) for row in conn.execute(_SELECT_KEYS, (param,)))
        return {e.key: e for e in entries}

    def _claim_sync(self, unique: Sequence[ClaimRequest], now: float) -> list[Decision]:
        with self._write() as conn:
            return self._claim_in(conn, unique, now)

    def _claim_in(
        self, conn: sqlite3.Connection, unique: Sequence[ClaimRequest], now: float
    ) -> list[Decision]:
        # New keys are inserted in one statement; a key then holding this request's token is
        # ours (new, or a retry of ours: decide()'s same-token rule). The rest, held by
        # another claim, completed, or expired, go through decide() as before; only takeovers
        # and TTL-expired keys need a write, one upsert each (rare).
        param = _json(
            [
                [r.key.idempotency_key, r.key.upstream, r.token, now + r.lease_s, r.audit_ref]
                for r in unique
            ]
        )
        conn.execute(_INSERT_NEW, (param, now))
        stored = self._rows(conn, param)
        decisions: list[Decision] = []
        writes: list[tuple[Any, ...]] = []
        for r in unique:
            entry = stored.get(r.key)
            if (
                entry is not None
                and entry.token == r.token
                and entry.state is EntryState.IN_PROGRESS
            ):
                decisions.append(Decision(ours(entry), entry, write=False))
                continue
            decision = decide(entry, r, now)
            if decision.write:
                writes.append(_row(decision.entry, claimant_ref=r.audit_ref))
            decisions.append(decision)
        if writes:
            conn.executemany(_UPSERT, writes)
        return decisions

    @staticmethod
    def _rows(conn: sqlite3.Connection, param: str) -> dict[LedgerKey, Entry]:
        (doc,) = conn.execute(_ROWS_JSON, (param,)).fetchone()
        rows = (dict(zip(COLUMNS, row, strict=True)) for row in orjson.loads(doc))
        return {e.key: e for e in map(entry_from_row, rows)}

    def _settle_sync(self, settles: Sequence[Settle], now: float) -> list[bool]:
        with self._write() as conn:
            return self._settle_in(conn, settles, now)

    def _exchange_sync(
        self, settles: Sequence[Settle], unique: Sequence[ClaimRequest], now: float
    ) -> tuple[list[bool], list[Decision]]:
        with self._write() as conn:
            applied = self._settle_in(conn, settles, now) if settles else []
            decisions = self._claim_in(conn, unique, now) if unique else []
        return applied, decisions

    def _settle_in(
        self, conn: sqlite3.Connection, settles: Sequence[Settle], now: float
    ) -> list[bool]:
        applied = [False] * len(settles)
        keep = unique_settles(settles)
        idents = [
            [settles[i].key.idempotency_key, settles[i].key.upstream, settles[i].token]
            for i in keep
        ]
        (doc,) = conn.execute(_HELD_JSON, (_json(idents),)).fetchone()
        rows: list[list[Any]] = []
        for held in orjson.loads(doc):
            i = keep[held]
            applied[i] = True
            s, c = settles[i], settles[i].completion
            state = EntryState.COMPLETED if s.done else EntryState.RELEASED
            rows.append(
                [*idents[held], state.value, now + s.ttl_s, c.outcome, c.status, c.attempts,
                 c.audit_ref, c.completed_at]
            )  # fmt: skip
        if rows:
            conn.execute(_SETTLE_MANY, (_json(rows),))
        return applied

    def _get_sync(self, keys: Sequence[LedgerKey]) -> dict[LedgerKey, Entry]:
        return self._select(self._connection(), keys)

    def _find_sync(self, idempotency_key: str) -> list[Entry]:
        rows = self._connection().execute(_FIND, (idempotency_key,))
        return [entry_from_row(row) for row in rows]

    def _stats_sync(self, now: float) -> LedgerStats:
        row = self._connection().execute(_STATS, (now,)).fetchone()
        return LedgerStats(
            backend=self.description,
            in_progress=row["in_progress"],
            completed=row["completed"],
            released=row["released"],
            expired_leases=row["expired_leases"],
            oldest_completed_at=row["oldest_completed_at"],
        )

    def _delete_sync(self, sql: str, bound: float) -> int:
        # Outside an explicit transaction one statement is its own (autocommit) transaction.
        return self._connection().execute(sql, (bound, DELETE_CHUNK)).rowcount


@contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction holding the database's write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT leaves it open too
            conn.rollback()
        raise


def _row(entry: Entry, *, claimant_ref: str | None) -> tuple[Any, ...]:
    """The entry as the values of ``COLUMNS``, in order; an in_progress entry's audit_ref is
    its claimant's (see ``COLUMNS``)."""
    c = entry.completion
    return (
        entry.key.upstream,
        entry.key.idempotency_key,
        entry.state.value,
        entry.token,
        entry.created_at,
        entry.lease_until,
        entry.expires_at,
        entry.takeovers,
        None if c is None else c.outcome,
        None if c is None else c.status,
        None if c is None else c.attempts,
        claimant_ref if c is None else c.audit_ref,
        None if c is None else c.completed_at,
    )
