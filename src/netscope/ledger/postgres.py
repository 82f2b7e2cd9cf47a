"""The idempotency ledger in PostgreSQL: shared by every instance of a consumer group.

Why the claim is an upsert and not SELECT ... FOR UPDATE then INSERT: a key nobody has yet
has no row to lock, so two instances would both see "absent" and both insert. ``INSERT ...
ON CONFLICT DO UPDATE ... WHERE <lease or TTL expired, or released by another message>``
decides on the row's latest committed version under the row's lock: exactly one concurrent
claim inserts or takes over and gets the row back from RETURNING; the others' upsert leaves
the row alone (the WHERE is false for them). Those rows are then read by a second
statement, which under READ COMMITTED sees what the winner committed. That second statement
is only needed when some key of the batch was held (or released by this very message): a
batch of new keys is one round trip.

Batches travel as arrays through ``unnest()``: one statement and one prepared plan
whatever the size. The batch is deduplicated first (an upsert cannot touch a row twice per
statement) and sorted, so two instances upserting overlapping batches lock rows in the same
order and cannot deadlock.

Bounds: ``statement_timeout`` is set on every pool connection (server side: a statement
stuck on a lock or a slow disk is cancelled by the server, which frees its locks), the
driver's ``command_timeout`` a second later (client side: a server that stopped answering),
and each operation, pool checkout included, has an asyncio timeout as a backstop.

Reconnection: asyncpg's pool replaces a connection found closed at checkout, and one that
breaks during a call is dropped when released. While the server is down every call fails
with ``LedgerUnavailable``; once it is back the next call opens a new connection. Nothing
here needs reopening.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from netscope.ledger._shared import (
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

# Everything the driver raises for a server it cannot use: connection refused or lost,
# statement or lock timeout, shutdown, too many connections, protocol trouble.
_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
)

# How many times a claim re-asks keys that changed between its upsert and its read
# (released, swept or expired meanwhile). Each round needs another process to have changed
# the same key in those microseconds; running out of rounds means something is wrong.
_MAX_CLAIM_ROUNDS = 5

# A second over statement_timeout: the server's cancellation, which names the cause, should
# answer first.
_CLIENT_GRACE_S = 1.0

_STATE_CHECK = "state IN ('in_progress', 'completed', 'released')"

# See ledger/sqlite.py for why the primary key leads with idempotency_key (find()).
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    upstream        text             NOT NULL,
    idempotency_key text             NOT NULL,
    state           text             NOT NULL CONSTRAINT {TABLE}_state_check CHECK ({_STATE_CHECK}),
    token           text             NOT NULL,
    created_at      double precision NOT NULL,
    lease_until     double precision,
    expires_at      double precision,
    takeovers       integer          NOT NULL DEFAULT 0,
    outcome         text,
    status          integer,
    attempts        integer,
    audit_ref       text,
    completed_at    double precision,
    PRIMARY KEY (idempotency_key, upstream)
);
CREATE INDEX IF NOT EXISTS {TABLE}_expires_at ON {TABLE} (expires_at)
    WHERE expires_at IS NOT NULL;
"""
# Without this an account that may use the table but not create in the schema could not
# open the ledger (CREATE ... IF NOT EXISTS checks the privilege before the existence).
_SCHEMA_EXISTS = f"""
SELECT to_regclass('{TABLE}') IS NOT NULL AND to_regclass('{TABLE}_expires_at') IS NOT NULL
"""
# A table created before released entries were kept: its state check (named by PostgreSQL,
# normally {TABLE}_state_check) refuses 'released'. No column changes, only this check.
_OLD_STATE_CHECK = f"""
SELECT c.conname FROM pg_constraint AS c
WHERE c.conrelid = to_regclass('{TABLE}') AND c.contype = 'c'
  AND pg_get_constraintdef(c.oid) LIKE '%in_progress%'
  AND pg_get_constraintdef(c.oid) NOT LIKE '%released%'
"""

# $5 is the caller's now, $6 the claimants' audit_refs (stored with the claim: ``excluded``
# carries it to the WHERE). created_at and takeovers: a settled row past its TTL, or a row
# released by another message (its ref differs, or either is NULL: _shared.released_here)
# starts again from scratch (CLAIMED), an in_progress row past its lease keeps its history
# (TAKEN_OVER, one more takeover). A returned row's takeovers tell the two apart. A released
# row with this claim's own ref is left alone: the read that follows answers RELEASED_HERE.
_CLAIM = f"""
INSERT INTO {TABLE} AS t (upstream, idempotency_key, state, token, created_at, lease_until,
                          takeovers, audit_ref)
SELECT r.upstream, r.idempotency_key, 'in_progress', r.token, $5::float8, $5::float8 + r.lease_s,
       0, r.audit_ref
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $6::text[])
     WITH ORDINALITY AS r(upstream, idempotency_key, token, lease_s, audit_ref, ord)
ORDER BY r.ord
ON CONFLICT (idempotency_key, upstream) DO UPDATE SET
    state = 'in_progress',
    token = excluded.token,
    lease_until = excluded.lease_until,
    created_at = CASE WHEN t.state = 'in_progress' THEN t.created_at ELSE excluded.created_at END,
    takeovers = CASE WHEN t.state = 'in_progress' THEN t.takeovers + 1 ELSE 0 END,
    expires_at = NULL, outcome = NULL, status = NULL, attempts = NULL,
    audit_ref = excluded.audit_ref, completed_at = NULL
WHERE (t.state = 'in_progress' AND t.lease_until <= $5::float8)
   OR (t.state IN ('completed', 'released') AND t.expires_at <= $5::float8)
   OR (t.state = 'released' AND NOT coalesce(t.audit_ref = excluded.audit_ref, false))
RETURNING {SELECT_COLUMNS}
"""
_SELECT_KEYS = f"""
SELECT {SELECT_COLUMNS}
FROM unnest($1::text[], $2::text[]) AS r(upstream, idempotency_key)
JOIN {TABLE} AS t ON t.idempotency_key = r.idempotency_key AND t.upstream = r.upstream
"""
# One statement for a batch of completions and releases (both keep the row: state
# completed or released); it returns the indexes it applied to. A token that no longer
# holds its key matches no row and is left out.
_SETTLE = f"""
UPDATE {TABLE} AS t
SET state = s.state, lease_until = NULL, expires_at = $12::float8 + s.ttl_s,
    outcome = s.outcome, status = s.status, attempts = s.attempts,
    audit_ref = s.audit_ref, completed_at = s.completed_at
FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::int[], $8::int[], $9::text[], $10::float8[], $11::float8[])
    AS s(i, upstream, idempotency_key, token, state, outcome, status, attempts,
         audit_ref, completed_at, ttl_s)
WHERE t.idempotency_key = s.idempotency_key AND t.upstream = s.upstream
  AND t.token = s.token AND t.state = 'in_progress'
RETURNING s.i
"""
_FIND = f"""
SELECT {SELECT_COLUMNS} FROM {TABLE} AS t WHERE t.idempotency_key = $1 ORDER BY t.upstream
"""
_STATS = f"""
SELECT count(*) FILTER (WHERE state = 'in_progress') AS in_progress,
       count(*) FILTER (WHERE state = 'completed') AS completed,
       count(*) FILTER (WHERE state = 'released') AS released,
       count(*) FILTER (WHERE state = 'in_progress' AND lease_until <= $1::float8)
           AS expired_leases,
       min(completed_at) FILTER (WHERE state = 'completed') AS oldest_completed_at
FROM {TABLE}
"""
# SKIP LOCKED: a row a claim is resetting right now is left for the next sweep rather than
# waited for.
_SWEEP = f"""
WITH doomed AS (
    SELECT idempotency_key, upstream FROM {TABLE}
    WHERE state IN ('completed', 'released') AND expires_at <= $1::float8
    LIMIT $2 FOR UPDATE SKIP LOCKED
)
DELETE FROM {TABLE} AS t USING doomed
WHERE t.idempotency_key = doomed.idempotency_key AND t.upstream = doomed.upstream
"""
_PURGE = f"""
WITH doomed AS (
    SELECT idempotency_key, upstream FROM {TABLE}
    WHERE state IN ('completed', 'released') AND completed_at < $1::float8
    LIMIT $2 FOR UPDATE SKIP LOCKED
)
DELETE FROM {TABLE} AS t USING doomed
WHERE t.idempotency_key = doomed.idempotency_key AND t.upstream = doomed.upstream
"""


def redact_dsn(dsn: str) -> str:
    """The DSN without a password (in the user info or as a query parameter)."""
    parts = urlsplit(dsn)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    netloc = f"{user}@{hosts}" if at and user else hosts
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if "pass" not in k]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


class PostgresLedger:
    """``Ledger`` on PostgreSQL through an asyncpg pool (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        *,
        password: str | None = None,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        statement_timeout_s: float = 2.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.description = redact_dsn(dsn)
        self._dsn = dsn
        self._password = password
        self._pool_min_size = pool_min_size
        self._pool_max_size = pool_max_size
        self._statement_timeout_s = statement_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = statement_timeout_s + _CLIENT_GRACE_S
        # Checkout (maybe a new connection) plus the two statements a claim may need.
        self._bound_s = connect_timeout_s + 2 * self._command_timeout_s
        self._pool: asyncpg.Pool | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (``pool_min_size`` connections) and create the schema if missing.

        Raises ``LedgerUnavailable`` when the server cannot be reached; open() may be called
        again later.
        """
        if self._pool is not None:
            return
        pool: asyncpg.Pool | None = None
        try:
            async with asyncio.timeout(self._bound_s + self._connect_timeout_s):
                pool = await asyncpg.create_pool(
                    self._dsn,
                    password=self._password,
                    min_size=self._pool_min_size,
                    max_size=self._pool_max_size,
                    timeout=self._connect_timeout_s,  # per connection attempt
                    command_timeout=self._command_timeout_s,
                    server_settings={
                        "statement_timeout": str(round(self._statement_timeout_s * 1000)),
                        "application_name": "netscope-ledger",
                    },
                )
                async with pool.acquire(timeout=self._connect_timeout_s) as conn:
                    await self._ensure_schema(conn)
        except (TimeoutError, *_DRIVER_ERRORS) as exc:
            if pool is not None:
                pool.terminate()
            raise LedgerUnavailable(f"ledger open: {self.description}: {_why(exc)}") from exc
        except BaseException:
            if pool is not None:
                pool.terminate()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(self._bound_s):
                await pool.close()  # waits for checked-out connections to come back
        except (TimeoutError, *_DRIVER_ERRORS):
            pool.terminate()

    async def ping(self) -> None:
        await self._run("ping", lambda conn: conn.fetchval("SELECT 1"))

    @staticmethod
    async def _ensure_schema(conn: asyncpg.Connection) -> None:
        """Create the table, or widen the state check of one created before released
        entries were kept (``_OLD_STATE_CHECK``; the only change to the schema so far).

        The widening is ``DROP CONSTRAINT`` + ``ADD CONSTRAINT ... NOT VALID``: catalog
        only, no scan of the rows (they all satisfy the wider check) under the table's lock.
        It needs the table's owner; another account gets a ``LedgerUnavailable`` saying so.
        """
        present = await conn.fetchval(_SCHEMA_EXISTS)
        if present and await conn.fetchval(_OLD_STATE_CHECK) is None:
            return
        async with conn.transaction():
            # Instances starting together: CREATE ... IF NOT EXISTS is not safe against a
            # concurrent CREATE of the same name (a unique violation in the catalog).
            await conn.execute(f"SELECT pg_advisory_xact_lock(hashtext('{TABLE}'))")
            if not present:
                await conn.execute(_SCHEMA)
            old = await conn.fetchval(_OLD_STATE_CHECK)  # None once another instance did it
            if old is None:
                return
            quoted = '"' + old.replace('"', '""') + '"'
            alter = (
                f"ALTER TABLE {TABLE} DROP CONSTRAINT {quoted}, ADD CONSTRAINT "
                f"{TABLE}_state_check CHECK ({_STATE_CHECK}) NOT VALID"
            )
            try:
                await conn.execute(alter)
            except asyncpg.InsufficientPrivilegeError as exc:
                raise LedgerUnavailable(
                    f"{TABLE} predates released entries and this account may not alter it "
                    f"({exc}): run once as the table's owner: {alter}"
                ) from exc

    # -- the protocol ------------------------------------------------------------------------

    async def claim(self, requests: Sequence[ClaimRequest], now: float) -> list[Claim]:
        if not requests:
            return []
        unique, slots = unique_claims(requests)

        async def work(conn: asyncpg.Connection) -> list[Decision]:
            return await self._claim_rounds(conn, unique, now)

        answers = await self._run("claim", work)
        return fan_out(requests, slots, answers)

    async def _claim_rounds(
        self, conn: asyncpg.Connection, unique: Sequence[ClaimRequest], now: float
    ) -> list[Decision]:
        answers: list[Decision | None] = [None] * len(unique)
        # One lock order for every instance (see the module docstring: no deadlocks).
        pending = sorted(
            range(len(unique)),
            key=lambda i: (unique[i].key.idempotency_key, unique[i].key.upstream),
        )
        for _ in range(_MAX_CLAIM_ROUNDS):
            batch = [unique[i] for i in pending]
            rows = await conn.fetch(
                _CLAIM,
                [r.key.upstream for r in batch],
                [r.key.idempotency_key for r in batch],
                [r.token for r in batch],
                [float(r.lease_s) for r in batch],
                float(now),
                [r.audit_ref for r in batch],
            )
            won = {e.key: e for e in map(entry_from_row, rows)}
            held = []
            for i in pending:
                entry = won.get(unique[i].key)
                if entry is None:
                    held.append(i)
                else:
                    answers[i] = Decision(ours(entry), entry, write=False)
            if not held:
                break
            keys = [unique[i].key for i in held]
            stored = await self._select(conn, keys)
            pending = []
            for i in held:
                decision = decide(stored.get(unique[i].key), unique[i], now)
                if decision.write:  # gone, expired or released since the upsert: ask again
                    pending.append(i)
                else:
                    answers[i] = decision
            if not pending:
                break
        else:
            raise LedgerUnavailable(
                f"ledger claim: {self.description}: {len(pending)} keys changed under the "
                f"claim {_MAX_CLAIM_ROUNDS} times in a row"
            )
        done = [a for a in answers if a is not None]
        assert len(done) == len(unique), "every key answered"
        return done

    async def exchange(
        self, settles: Sequence[Settle], requests: Sequence[ClaimRequest], now: float
    ) -> tuple[list[bool], list[Claim]]:
        """Settles then claims in one transaction on one connection: one commit (one WAL
        flush) for both, the point of batching them together."""
        if not requests:
            return await self.settle(settles, now), []
        if not settles:
            return [], await self.claim(requests, now)
        unique, slots = unique_claims(requests)
        columns = self._settle_columns(settles)

        async def work(conn: asyncpg.Connection) -> tuple[set[int], list[Decision]]:
            async with conn.transaction():
                rows = await conn.fetch(_SETTLE, *columns, float(now))
                return {row["i"] for row in rows}, await self._claim_rounds(conn, unique, now)

        applied, answers = await self._run("exchange", work)
        return [i in applied for i in range(len(settles))], fan_out(requests, slots, answers)

    async def settle(self, settles: Sequence[Settle], now: float) -> list[bool]:
        if not settles:
            return []
        columns = self._settle_columns(settles)

        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(_SETTLE, *columns, float(now))

        applied = {row["i"] for row in await self._run("settle", work)}
        return [i in applied for i in range(len(settles))]

    @staticmethod
    def _settle_columns(settles: Sequence[Settle]) -> list[list[Any]]:
        columns: list[list[Any]] = [[] for _ in range(11)]
        for i in unique_settles(settles):
            s = settles[i]
            c = s.completion
            state = EntryState.COMPLETED if s.done else EntryState.RELEASED
            values = (
                i, s.key.upstream, s.key.idempotency_key, s.token, state.value, c.outcome,
                c.status, c.attempts, c.audit_ref, float(c.completed_at), float(s.ttl_s),
            )  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        return columns

    async def get(self, keys: Sequence[LedgerKey]) -> dict[LedgerKey, Entry]:
        if not keys:
            return {}
        return await self._run("get", lambda conn: self._select(conn, keys))

    async def find(self, idempotency_key: str) -> list[Entry]:
        rows = await self._run("find", lambda conn: conn.fetch(_FIND, idempotency_key))
        return [entry_from_row(row) for row in rows]

    async def stats(self, now: float) -> LedgerStats:
        row = await self._run("stats", lambda conn: conn.fetchrow(_STATS, float(now)))
        return LedgerStats(
            backend=self.description,
            in_progress=row["in_progress"],
            completed=row["completed"],
            released=row["released"],
            expired_leases=row["expired_leases"],
            oldest_completed_at=row["oldest_completed_at"],
        )

    async def purge(self, completed_before: float) -> int:
        return await self._delete_chunks("purge", _PURGE, completed_before)

    async def sweep(self, now: float) -> int:
        return await self._delete_chunks("sweep", _SWEEP, now)

    async def _delete_chunks(self, what: str, sql: str, bound: float) -> int:
        # Chunks keep every statement within statement_timeout however large the backlog.
        total = 0
        while True:
            status = await self._run(
                what, lambda conn: conn.execute(sql, float(bound), DELETE_CHUNK)
            )
            deleted = int(status.rsplit(" ", 1)[-1])  # "DELETE <n>"
            total += deleted
            if deleted < DELETE_CHUNK:
                return total

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    async def _select(
        conn: asyncpg.Connection, keys: Sequence[LedgerKey]
    ) -> dict[LedgerKey, Entry]:
        rows = await conn.fetch(
            _SELECT_KEYS, [k.upstream for k in keys], [k.idempotency_key for k in keys]
        )
        return {e.key: e for e in map(entry_from_row, rows)}

    async def _run(self, what: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise LedgerUnavailable(f"ledger {what}: {self.description} is not open")
        try:
            async with asyncio.timeout(self._bound_s):
                async with pool.acquire(timeout=self._connect_timeout_s) as conn:
                    return await work(conn)
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise LedgerUnavailable(
                f"ledger {what}: {self.description} did not answer in time (connect bound "
                f"{self._connect_timeout_s:.1f}s, statement bound {self._command_timeout_s:.1f}s)"
            ) from exc
        except _DRIVER_ERRORS as exc:
            raise LedgerUnavailable(f"ledger {what}: {self.description}: {_why(exc)}") from exc


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
