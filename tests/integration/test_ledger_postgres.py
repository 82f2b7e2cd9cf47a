"""The PostgreSQL ledger: the shared contract on a fresh database per test, then what only a
server has (it can be unreachable, go away and come back, hold a lock past the bound)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import asyncpg
import pytest

from netscope.devservices import Postgres, free_port
from netscope.ledger.model import ClaimResult, EntryState, LedgerUnavailable
from netscope.ledger.postgres import PostgresLedger, redact_dsn
from tests.ledger_contract import T0, LedgerContract, complete, key, release, request


@pytest.fixture
def ledger_factory(postgres_dsn: str) -> Callable[[], PostgresLedger]:
    return lambda: PostgresLedger(postgres_dsn, pool_max_size=4, statement_timeout_s=2.0)


class TestPostgresContract(LedgerContract):
    pass


def test_the_description_carries_no_password() -> None:
    dsn = "postgresql://app:s3cret@db.example:6432/ledger?sslmode=require&password=s3cret"
    assert redact_dsn(dsn) == "postgresql://app@db.example:6432/ledger?sslmode=require"
    assert PostgresLedger(dsn).description == redact_dsn(dsn)
    assert redact_dsn("postgresql://h1:5432,h2:5432/db") == "postgresql://h1:5432,h2:5432/db"
    assert redact_dsn("postgres://:pw@h/db") == "postgres://h/db"


async def test_a_closed_port_is_unavailable() -> None:
    port = free_port()  # nothing listens on it
    ledger = PostgresLedger(f"postgresql://netscope@127.0.0.1:{port}/x", connect_timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(
        LedgerUnavailable, match=f"ledger open: postgresql://netscope@127.0.0.1:{port}/x"
    ):
        await ledger.open()
    assert time.monotonic() - t0 < 3.0
    with pytest.raises(LedgerUnavailable, match="not open"):
        await ledger.claim([request(key("k1"))], T0)


async def test_a_missing_database_is_unavailable(postgres: Postgres) -> None:
    ledger = PostgresLedger(postgres.dsn("no_such_database"), connect_timeout_s=2.0)
    with pytest.raises(LedgerUnavailable, match="no_such_database"):
        await ledger.open()


async def test_calls_fail_while_the_server_is_down_and_work_once_it_is_back(
    postgres: Postgres, postgres_dsn: str
) -> None:
    ledger = PostgresLedger(postgres_dsn, pool_min_size=2, connect_timeout_s=2.0)
    await ledger.open()
    try:
        done = request(key("done"))
        await ledger.claim([done], T0)
        await ledger.settle([complete(done, T0)], T0)

        await asyncio.to_thread(postgres.stop)
        for call in (
            lambda: ledger.claim([request(key("k1"))], T0 + 1),
            lambda: ledger.settle([complete(done, T0)], T0 + 1),
            lambda: ledger.get([done.key]),
            ledger.ping,
            lambda: ledger.sweep(T0 + 1),
        ):
            t0 = time.monotonic()
            with pytest.raises(LedgerUnavailable, match=r"ledger \w+: postgresql://"):
                await call()
            assert time.monotonic() - t0 < 5.0

        await asyncio.to_thread(postgres.start)
        # No reopen: the very next call gets a new connection from the pool.
        claims = await ledger.claim([request(key("done")), request(key("k1"))], T0 + 2)
        assert [c.result for c in claims] == [ClaimResult.COMPLETED, ClaimResult.CLAIMED]
        await ledger.ping()
    finally:
        await ledger.close()


async def test_a_crashed_server_comes_back_with_every_committed_claim(
    postgres: Postgres, postgres_dsn: str
) -> None:
    ledger = PostgresLedger(postgres_dsn, connect_timeout_s=2.0)
    await ledger.open()
    try:
        batch = [request(key(f"k{i}")) for i in range(50)]
        await ledger.claim(batch, T0)
        await ledger.settle([complete(r, T0) for r in batch[:25]], T0)
        await asyncio.to_thread(postgres.kill)  # immediate shutdown: crash recovery on start
        with pytest.raises(LedgerUnavailable):
            await ledger.get([batch[0].key])
        await asyncio.to_thread(postgres.start)
        stored = await ledger.get([r.key for r in batch])
        assert len(stored) == 50
        assert sum(e.state is EntryState.COMPLETED for e in stored.values()) == 25
    finally:
        await ledger.close()


async def test_a_row_locked_past_the_statement_timeout_is_unavailable(postgres_dsn: str) -> None:
    ledger = PostgresLedger(postgres_dsn, statement_timeout_s=0.5)
    await ledger.open()
    other = await asyncpg.connect(postgres_dsn)
    try:
        r = request(key("k1"))
        await ledger.claim([r], T0)
        tx = other.transaction()
        await tx.start()  # another session holding the row (a stuck instance, say)
        await other.execute(
            "SELECT 1 FROM netscope_idempotency WHERE idempotency_key = 'k1' FOR UPDATE"
        )
        t0 = time.monotonic()
        with pytest.raises(LedgerUnavailable, match="statement timeout"):
            await ledger.claim([request(key("k1"))], T0 + 100)
        assert time.monotonic() - t0 < 1.4  # the server's 0.5 s, before the client's 1.5 s
        with pytest.raises(LedgerUnavailable, match="statement timeout"):
            await ledger.settle([complete(r, T0)], T0)
        await tx.rollback()
        [claim] = await ledger.claim([request(key("k1"))], T0 + 100)
        assert claim.result is ClaimResult.TAKEN_OVER
    finally:
        await other.close()
        await ledger.close()


async def test_every_pool_connection_keeps_the_statement_timeout(postgres_dsn: str) -> None:
    ledger = PostgresLedger(
        postgres_dsn, pool_min_size=3, pool_max_size=3, statement_timeout_s=0.75
    )
    await ledger.open()
    try:
        for _ in range(3):  # through the pool's reset on release (RESET ALL)
            await ledger.claim([request(key("k1"))], T0)
        pool = ledger._pool
        assert pool is not None
        conns = [await pool.acquire() for _ in range(3)]
        try:
            for conn in conns:
                assert await conn.fetchval("SHOW statement_timeout") == "750ms"
        finally:
            for conn in conns:
                await pool.release(conn)
    finally:
        await ledger.close()


async def test_two_instances_opening_together_create_the_schema_once(postgres_dsn: str) -> None:
    ledgers = [PostgresLedger(postgres_dsn) for _ in range(4)]
    await asyncio.gather(*(ledger.open() for ledger in ledgers))
    try:
        claims = await asyncio.gather(
            *(ledger.claim([request(key("k1"))], T0) for ledger in ledgers)
        )
        assert sum(c.result is ClaimResult.CLAIMED for [c] in claims) == 1
    finally:
        await asyncio.gather(*(ledger.close() for ledger in ledgers))


# The table as ledgers before released entries were kept created it: only the state check
# differs. A database from an older version must open, keep its rows and take releases.
_OLD_SCHEMA = """
CREATE TABLE netscope_idempotency (
    upstream        text             NOT NULL,
    idempotency_key text             NOT NULL,
    state           text             NOT NULL CHECK (state IN ('in_progress', 'completed')),
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
CREATE INDEX netscope_idempotency_expires_at ON netscope_idempotency (expires_at)
    WHERE expires_at IS NOT NULL;
INSERT INTO netscope_idempotency VALUES
    ('billing', 'done', 'completed', 't0', 1750000000.25, NULL, 1750003600.25, 0, 'success',
     200, 1, 'calls/0/1', 1750000000.25);
"""
_CHECKS = """
SELECT pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = 'netscope_idempotency'::regclass AND contype = 'c'
"""


async def test_a_table_from_before_released_entries_is_widened_in_place(
    postgres_dsn: str,
) -> None:
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(_OLD_SCHEMA)
        ledgers = [PostgresLedger(postgres_dsn) for _ in range(3)]
        await asyncio.gather(*(ledger.open() for ledger in ledgers))  # at once: one ALTER
        try:
            [check] = [row[0] for row in await admin.fetch(_CHECKS)]
            assert "'released'" in check and "'completed'" in check, check
            ledger = ledgers[0]
            [done] = await ledger.claim([request(key("done"))], T0 + 1)
            assert done.result is ClaimResult.COMPLETED
            r = request(key("refused"), ref="calls/0/2")
            await ledger.claim([r], T0 + 1)
            assert await ledger.settle([release(r)], T0 + 2) == [True]
            [here] = await ledgers[1].claim([request(key("refused"), ref="calls/0/2")], T0 + 3)
            assert here.result is ClaimResult.RELEASED_HERE
        finally:
            await asyncio.gather(*(ledger.close() for ledger in ledgers))
        with pytest.raises(asyncpg.CheckViolationError):
            await admin.execute(
                "INSERT INTO netscope_idempotency (upstream, idempotency_key, state, token,"
                " created_at) VALUES ('billing', 'z', 'bogus', 't', 0)"
            )
    finally:
        await admin.close()


async def test_an_account_that_may_not_widen_the_check_is_told_how(postgres_dsn: str) -> None:
    admin = await asyncpg.connect(postgres_dsn)
    role = f"ledger_user_{uuid.uuid4().hex[:8]}"
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        await admin.execute(_OLD_SCHEMA)
        await admin.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON netscope_idempotency TO {role}"
        )
        user_dsn = postgres_dsn.replace("postgresql://netscope@", f"postgresql://{role}@", 1)
        assert user_dsn != postgres_dsn, postgres_dsn
        ledger = PostgresLedger(user_dsn, connect_timeout_s=2.0)
        with pytest.raises(LedgerUnavailable, match="run once as the table's owner: ALTER TABLE"):
            await ledger.open()
        # The owner opens it once; then the account works as before.
        owner = PostgresLedger(postgres_dsn)
        await owner.open()
        await owner.close()
        await ledger.open()
        try:
            [claim] = await ledger.claim([request(key("k1"))], T0)
            assert claim.result is ClaimResult.CLAIMED
        finally:
            await ledger.close()
    finally:
        await admin.execute(f"DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}")
        await admin.close()
