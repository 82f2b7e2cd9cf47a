"""The SQLite ledger: the shared contract on a temp file, then what only SQLite has (its file,
its pragmas, its lock)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netscope.ledger.model import ClaimResult, LedgerUnavailable
from netscope.ledger.sqlite import SqliteLedger
from tests.ledger_contract import T0, TTL_S, LedgerContract, key, release, request


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "ledger.sqlite3"  # var/ does not exist yet: open() makes it


@pytest.fixture
def ledger_factory(ledger_path: Path) -> Callable[[], SqliteLedger]:
    return lambda: SqliteLedger(ledger_path, statement_timeout_s=2.0)


class TestSqliteContract(LedgerContract):
    pass


async def test_open_creates_the_directory_and_a_durable_wal_database(ledger_path: Path) -> None:
    ledger = SqliteLedger(ledger_path)
    await ledger.open()
    try:
        assert ledger.description == f"sqlite:{ledger_path}"
        conn = sqlite3.connect(ledger_path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            conn.close()
        # synchronous is per connection: ask the ledger's own.
        conn = ledger._conn
        assert conn is not None
        synchronous = await asyncio.get_running_loop().run_in_executor(
            ledger._executor, lambda: conn.execute("PRAGMA synchronous").fetchone()[0]
        )
        assert synchronous == 2  # FULL
    finally:
        await ledger.close()


async def test_a_file_where_the_directory_should_be_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("not a directory")
    ledger = SqliteLedger(tmp_path / "var" / "ledger.sqlite3")
    with pytest.raises(LedgerUnavailable, match="ledger open: sqlite:"):
        await ledger.open()
    with pytest.raises(LedgerUnavailable, match="not open"):
        await ledger.claim([request(key("k1"))], T0)


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may create files in, root included (the suite often runs as root,
    which ignores mode bits): ``chattr +i`` where it works, else mode 0555."""
    d = tmp_path / "ro"
    d.mkdir()
    chattr = shutil.which("chattr")
    immutable = (
        chattr is not None
        and subprocess.run([chattr, "+i", str(d)], capture_output=True, check=False).returncode == 0
    )
    if not immutable:
        if os.geteuid() == 0:
            pytest.skip("running as root without chattr +i: cannot make a directory unwritable")
        d.chmod(0o555)
    try:
        yield d
    finally:
        if immutable:
            subprocess.run([chattr, "-i", str(d)], check=False)  # type: ignore[list-item]
        d.chmod(0o755)


async def test_an_unwritable_directory_is_unavailable(unwritable_dir: Path) -> None:
    ledger = SqliteLedger(unwritable_dir / "ledger.sqlite3")
    with pytest.raises(LedgerUnavailable, match=r"unable to open database file"):
        await ledger.open()
    ledger = SqliteLedger(unwritable_dir / "sub" / "ledger.sqlite3")
    with pytest.raises(LedgerUnavailable, match=r"ledger open: .*ermission denied|not permitted"):
        await ledger.open()


async def test_a_lock_held_past_the_bound_is_unavailable_then_clears(ledger_path: Path) -> None:
    ledger = SqliteLedger(ledger_path, statement_timeout_s=0.3)
    await ledger.open()
    other = sqlite3.connect(ledger_path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # another process writing (or stuck mid-write)
        t0 = time.monotonic()
        with pytest.raises(LedgerUnavailable, match="database is locked"):
            await ledger.claim([request(key("k1"))], T0)
        assert time.monotonic() - t0 < 1.3  # busy timeout 0.3 s, asyncio bound 1.3 s
        other.execute("ROLLBACK")
        # The failed claim left no transaction open behind it: the next one just works.
        [claim] = await ledger.claim([request(key("k1"))], T0)
        assert claim.result is ClaimResult.CLAIMED
    finally:
        other.close()
        await ledger.close()


async def test_a_stuck_thread_is_bounded_by_the_asyncio_timeout(ledger_path: Path) -> None:
    ledger = SqliteLedger(ledger_path, statement_timeout_s=0.2)
    await ledger.open()
    try:
        # Something slow on the ledger's thread (a disk stalling an fsync, say).
        blocker = asyncio.get_running_loop().run_in_executor(ledger._executor, time.sleep, 2.0)
        t0 = time.monotonic()
        with pytest.raises(LedgerUnavailable, match=r"did not answer within 1\.2s"):
            await ledger.claim([request(key("k1"))], T0)
        assert time.monotonic() - t0 < 1.6
        await blocker
        # The timed-out claim never ran (cancelled before it started): the key is free.
        assert await ledger.get([key("k1")]) == {}
        [claim] = await ledger.claim([request(key("k1"))], T0)
        assert claim.result is ClaimResult.CLAIMED
    finally:
        await ledger.close()


@pytest.fixture
def garbage_file(ledger_path: Path) -> Path:
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_bytes(b"this is not a database" * 512)
    return ledger_path


async def test_a_file_that_is_not_a_database_is_unavailable(garbage_file: Path) -> None:
    ledger = SqliteLedger(garbage_file)
    with pytest.raises(LedgerUnavailable, match="file is not a database"):
        await ledger.open()


def test_two_processes_claiming_one_file_have_one_winner_per_key(ledger_path: Path) -> None:
    """Real processes, not two objects in one: SQLite's file locks between processes."""
    script = r"""
import asyncio, sys, uuid
from pathlib import Path
from netscope.ledger.model import ClaimRequest, LedgerKey
from netscope.ledger.sqlite import SqliteLedger

async def main():
    ledger = SqliteLedger(Path(sys.argv[1]))
    await ledger.open()
    won = []
    for i in range(0, 400, 20):
        batch = [ClaimRequest(LedgerKey("billing", f"k{j}"), uuid.uuid4().hex, 30.0, 60.0)
                 for j in range(i, i + 20)]
        for c in await ledger.claim(batch, 1000.0):
            if c.result.value == "claimed":
                won.append(c.request.key.idempotency_key)
    await ledger.close()
    print("\n".join(won))

asyncio.run(main())
"""
    asyncio.run(_open_once(ledger_path))
    procs = [
        subprocess.Popen(
            [os.sys.executable, "-c", script, str(ledger_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    winners = [line for out in outputs for line in out.split()]
    assert sorted(winners) == sorted(f"k{j}" for j in range(400))  # each key exactly once


async def _open_once(path: Path) -> None:
    ledger = SqliteLedger(path)
    await ledger.open()
    await ledger.close()


# The table as ledgers before released entries were kept created it (the state check is the
# only difference): a file from an older version must open, keep its rows and take releases.
_OLD_SCHEMA = """
    CREATE TABLE netscope_idempotency (
        upstream        TEXT    NOT NULL,
        idempotency_key TEXT    NOT NULL,
        state           TEXT    NOT NULL CHECK (state IN ('in_progress', 'completed')),
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
"""


async def test_a_table_from_before_released_entries_is_widened_in_place(ledger_path: Path) -> None:
    ledger_path.parent.mkdir(parents=True)
    old = sqlite3.connect(ledger_path, isolation_level=None)
    old.execute("PRAGMA journal_mode = WAL")
    old.execute(_OLD_SCHEMA)
    old.execute(
        "CREATE INDEX netscope_idempotency_expires_at ON netscope_idempotency (expires_at)"
        " WHERE expires_at IS NOT NULL"
    )
    old.execute(
        "INSERT INTO netscope_idempotency VALUES ('billing', 'done', 'completed', 't0', ?, NULL,"
        " ?, 0, 'success', 200, 1, 'calls/0/1', ?)",
        (T0, T0 + TTL_S, T0),
    )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        old.execute(
            "INSERT INTO netscope_idempotency (upstream, idempotency_key, state, token,"
            " created_at) VALUES ('billing', 'x', 'released', 't', 0)"
        )
    # `old` stays open across the migration: another process's connection, which must see
    # the wider check without reopening (schema_version is bumped).
    try:
        ledger = SqliteLedger(ledger_path)
        await ledger.open()
        try:
            [done] = await ledger.claim([request(key("done"))], T0 + 1)
            assert done.result is ClaimResult.COMPLETED
            r = request(key("refused"), ref="calls/0/2")
            await ledger.claim([r], T0 + 1)
            assert await ledger.settle([release(r)], T0 + 2) == [True]
            [here] = await ledger.claim([request(key("refused"), ref="calls/0/2")], T0 + 3)
            assert here.result is ClaimResult.RELEASED_HERE
        finally:
            await ledger.close()
        old.execute(
            "INSERT INTO netscope_idempotency (upstream, idempotency_key, state, token,"
            " created_at) VALUES ('billing', 'y', 'released', 't', 0)"
        )
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            old.execute(
                "INSERT INTO netscope_idempotency (upstream, idempotency_key, state, token,"
                " created_at) VALUES ('billing', 'z', 'bogus', 't', 0)"
            )
        assert old.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (sql,) = old.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'netscope_idempotency'"
        ).fetchone()
        assert "'released'" in sql and sql.count("CHECK") == 1
        # Opening again leaves the table alone.
        version = old.execute("PRAGMA schema_version").fetchone()
        await _open_once(ledger_path)
        assert old.execute("PRAGMA schema_version").fetchone() == version
    finally:
        old.close()


async def test_an_unrecognised_state_check_is_refused_not_guessed(ledger_path: Path) -> None:
    ledger_path.parent.mkdir(parents=True)
    other = _OLD_SCHEMA.replace("('in_progress', 'completed')", "('in_progress', 'done')")
    conn = sqlite3.connect(ledger_path)
    conn.execute(other)
    conn.close()
    ledger = SqliteLedger(ledger_path)
    with pytest.raises(LedgerUnavailable, match="unrecognised state check"):
        await ledger.open()
