"""Suite-wide secret grep: every test's captured output, then test-artifacts/ (a pytest plugin).

test_no_secret_leaks.py proves one run clean; this keeps the whole suite honest as it grows.
For every test, what pytest captured (stdout, stderr and the log records, setup to
teardown) is searched for

* the canary marker (tests/security/canaries.py): any test may use ``canary(...)`` for a
  secret it hands NetScope, and no canary may surface in output;
* the dev RGW user's secret key (devservices), which the integration tests hand NetScope.

A hit fails that test, naming where. Lines logged by the test's own side (its HTTP client,
the simulated upstreams) are skipped: they are not NetScope's output. At the end of the
session every text file written under test-artifacts/ during it is searched the same way;
a hit fails the session.

Limits, by nature: pytest captures log records at the levels the loggers allow (WARNING by
default, lower where a test asks), and a subprocess's output only if the test passes it on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netscope.devservices.ceph import RgwConfig
from tests.security.canaries import MARKER

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TEST_SIDE_LOGGERS = ("httpx", "httpcore", "aiohttp.access", "aiohttp.server", "aiohttp.web")
_BINARY = frozenset({".png", ".jpg", ".jpeg", ".gz", ".sqlite3", ".db", ".pdf"})
# "LEVEL    logger.name:file.py:123 message": pytest's default captured-log line.
_LOG_LINE = re.compile(r"^(CRITICAL|ERROR|WARNING|INFO|DEBUG|NOTSET)\s+([\w.]+):")


DEV_RGW_SECRET: str = RgwConfig.__dataclass_fields__["secret_key"].default
_NEEDLES = re.compile(f"{re.escape(MARKER)}|{re.escape(DEV_RGW_SECRET)}", re.IGNORECASE)
_started = time.time()
_artifact_hits: list[str] = []


def _netscope_lines(title: str, text: str) -> Iterator[str]:
    """The lines of a captured section that are not the test side's own logging."""
    if "log" not in title:
        yield from text.splitlines()
        return
    skipping = False
    for line in text.splitlines():
        head = _LOG_LINE.match(line)
        if head is not None:
            skipping = head.group(2).startswith(TEST_SIDE_LOGGERS)
        if not skipping:
            yield line


def hits_in(source: str, text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        for match in _NEEDLES.finditer(line):
            start = max(0, match.start() - 60)
            found.append(f"{source}: ...{line[start : match.end() + 60]}...")
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    found = []
    for title, content in report.sections:
        if not title.endswith(f" {report.when}"):
            continue  # a later phase's report repeats the earlier phases' sections
        found += hits_in(f"{item.nodeid} [{title}]", "\n".join(_netscope_lines(title, content)))
    if found and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = "secret grep: a secret surfaced in captured output:\n" + "\n".join(
            found[:20]
        )
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not ARTIFACTS.is_dir():
        return
    for path in sorted(ARTIFACTS.rglob("*")):
        if not path.is_file() or path.suffix.lower() in _BINARY:
            continue
        if path.stat().st_mtime < _started:
            continue  # an older run's file: not this session's to judge
        text = path.read_text(errors="replace")
        _artifact_hits.extend(hits_in(str(path.relative_to(ARTIFACTS.parent)), text))
    if _artifact_hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _artifact_hits:
        terminalreporter.section("secret grep: test-artifacts/", red=True)
        for hit in _artifact_hits[:40]:
            terminalreporter.write_line(hit)
