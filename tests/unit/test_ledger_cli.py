"""``netscope ledger status|lookup|purge`` against a real SQLite ledger in a temp folder."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netscope.cli import app
from netscope.ledger.model import ClaimRequest, Completion, LedgerKey, Settle
from netscope.ledger.sqlite import SqliteLedger

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "netscope.toml"
    path.write_text(
        f'[audit.spool]\npath = "{tmp_path / "spool"}"\n'
        '[upstreams.payments]\nbase_url = "http://127.0.0.1:9"\n'
    )
    return path


def seed(db: Path) -> None:
    async def go() -> None:
        ledger = SqliteLedger(db)
        await ledger.open()
        now = time.time()
        done = ClaimRequest(LedgerKey("payments", "order-1"), "t1", 30.0, 86_400.0)
        busy = ClaimRequest(LedgerKey("payments", "order-2"), "t2", 30.0, 86_400.0)
        refused = ClaimRequest(LedgerKey("payments", "order-3"), "t3", 30.0, 86_400.0)
        await ledger.claim([done, busy, refused], now - 7200)
        completion = Completion("success", 201, 1, "netscope.requests/0/17", now - 7199)
        refusal = Completion("http_error", 429, 2, "netscope.requests/1/5", now - 9000)
        await ledger.settle(
            [
                Settle(done.key, "t1", completion, 86_400.0),
                Settle(refused.key, "t3", refusal, 86_400.0, done=False),
            ],
            now - 7199,
        )
        await ledger.close()

    asyncio.run(go())


def test_status_lookup_and_purge(config: Path, tmp_path: Path) -> None:
    seed(tmp_path / "ledger.sqlite3")  # beside the spool: where netscope run puts it

    status = runner.invoke(app, ["ledger", "status", "-c", str(config)])
    assert status.exit_code == 0, status.output
    assert "completed    1" in status.output and "in_progress  1" in status.output
    assert "released     1" in status.output
    assert "expired      1" in status.output  # order-2's lease ran out an hour ago

    found = runner.invoke(app, ["ledger", "lookup", "order-1", "-c", str(config)])
    assert found.exit_code == 0, found.output
    assert "completed" in found.output and "netscope.requests/0/17" in found.output
    assert "status 201" in found.output

    released = runner.invoke(app, ["ledger", "lookup", "order-3", "-c", str(config)])
    assert released.exit_code == 0, released.output
    assert "state        released (the outcome does not count as done" in released.output
    assert "status 429" in released.output and "netscope.requests/1/5" in released.output

    missing = runner.invoke(app, ["ledger", "lookup", "nope", "-c", str(config)])
    assert missing.exit_code == 1 and "not in the ledger" in missing.output

    bad = runner.invoke(app, ["ledger", "purge", "--older-than", "soon", "-c", str(config)])
    assert bad.exit_code == 2 and "not a duration" in bad.output

    purge = ["ledger", "purge", "--yes", "-c", str(config), "--older-than"]
    kept = runner.invoke(app, [*purge, "3h"])
    assert kept.exit_code == 0 and "purged 0" in kept.output
    purged = runner.invoke(app, [*purge, "1h"])
    assert purged.exit_code == 0 and "purged 2" in purged.output  # order-1 and order-3
    gone = runner.invoke(app, ["ledger", "lookup", "order-1", "-c", str(config)])
    assert gone.exit_code == 1


def test_a_ledger_that_is_off_says_so(config: Path) -> None:
    text = config.read_text() + '[ledger]\nbackend = "none"\n'
    config.write_text(text)
    result = runner.invoke(app, ["ledger", "status", "-c", str(config)])
    assert result.exit_code == 2 and "ledger is off" in result.output
