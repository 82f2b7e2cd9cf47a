"""A logged exception shows its traceback, never the local variables of its frames.

Found by the fault run: asyncpg's pool logs "Failed to restore the pool connection floor"
with ``exc_info`` while PostgreSQL restarts, and the console renderer (rich's default) printed
every frame's locals, the connect arguments among them. A password, a DSN or a message's
Authorization header can be a local anywhere in a library's stack.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SECRET = "NSCANARYTRACEBACKLOCAL0000"

PROGRAM = f"""
import logging
from netscope.observability.logging import setup_logging

setup_logging("info", {{fmt!r}})

def connect(password={SECRET!r}):
    raise ConnectionRefusedError("Connect call failed")

try:
    connect()
except ConnectionRefusedError:
    log = logging.getLogger("asyncpg.pool")
    log.warning("Failed to restore the pool connection floor", exc_info=True)
"""


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_logged_traceback_names_the_error_and_shows_no_local(fmt: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(fmt=fmt)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    err = done.stderr
    assert "Failed to restore the pool connection floor" in err
    assert "ConnectionRefusedError: Connect call failed" in err  # the traceback is there
    assert "in connect" in err or '"connect"' in err or "connect()" in err
    assert SECRET not in err, err
