"""The PostgreSQL dev service is a real server the ledger tests can rely on.

Guards the fixture itself: a DSN that connects, one fresh database per test, and a
`stop()`/`start()` pair that really cuts live sessions and brings the same data back on the
same port (the "PostgreSQL stopped mid-stream" fault tests build on exactly that).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from netscope.devservices import Postgres, free_port
from netscope.devservices.cli import app

pytestmark = pytest.mark.integration


async def test_postgres_dsn_connects_to_a_fresh_database(postgres_dsn: str) -> None:
    conn = await asyncpg.connect(postgres_dsn, timeout=10)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_database()") == postgres_dsn.rsplit("/", 1)[1]
        tables = await conn.fetchval(
            "select count(*) from pg_tables where schemaname not in ('pg_catalog', "
            "'information_schema')"
        )
        assert tables == 0
    finally:
        await conn.close()


async def test_postgres_stop_cuts_sessions_and_start_keeps_data(
    postgres: Postgres, postgres_dsn: str
) -> None:
    conn = await asyncpg.connect(postgres_dsn, timeout=10)
    await conn.execute("create table kept (id int primary key, v text)")
    await conn.execute("insert into kept values (1, 'before-stop')")

    postgres.stop()  # with `conn` still open: a fast shutdown must not wait for it
    assert not postgres.ready()
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await conn.fetchval("select 1", timeout=5)
    conn.terminate()
    with pytest.raises(OSError):
        await asyncpg.connect(postgres_dsn, timeout=5)

    postgres.start()
    assert postgres.ready()
    again = await asyncpg.connect(postgres_dsn, timeout=10)
    try:
        assert await again.fetchval("select v from kept where id = 1") == "before-stop"
    finally:
        await again.close()


def test_postgres_create_database_is_idempotent_and_rejects_odd_names(
    postgres: Postgres,
) -> None:
    assert postgres.create_database("t_twice") == postgres.create_database("t_twice")
    with pytest.raises(ValueError):
        postgres.create_database('x"; drop database netscope; --')


@pytest.fixture
def enterable_dir() -> Iterator[Path]:
    # pytest's tmp_path is 0700: not enterable by the account postgres runs as under root.
    root = Path(tempfile.mkdtemp(prefix="ns-pg-", dir="/tmp"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


# Via the session fixture: skipped locally / failed in CI when PostgreSQL is not installed.
@pytest.mark.usefixtures("postgres")
def test_cli_up_status_down_postgres(enterable_dir: Path) -> None:
    runner = CliRunner()
    args = ["--data-dir", str(enterable_dir)]
    port = free_port()
    try:
        up = runner.invoke(app, ["up", "postgres", *args, "--postgres-port", str(port)])
        assert up.exit_code == 0, up.output
        dsn = f"postgresql://netscope@127.0.0.1:{port}/netscope"
        assert "export NETSCOPE_LEDGER__BACKEND=postgresql" in up.output
        assert f"export NETSCOPE_LEDGER__DSN={dsn}" in up.output
        status = runner.invoke(app, ["status", *args])
        assert f"postgres    ready      dsn={dsn}" in status.output
    finally:
        down = runner.invoke(app, ["down", "postgres", *args])
    assert down.exit_code == 0, down.output
    assert "postgres    stopped" in runner.invoke(app, ["status", *args]).output
