"""`check-config --connect`'s judgement, without a network.

The S3 answers below are the texts obstore 0.12 gives for Ceph RGW's real answers (recorded
on this machine): a read-only key, a wrong secret and an unknown key are all
``PermissionDeniedError``, and only the ``<Code>`` tells them apart, which is what lets the
preflight say "no write permission" (runbook §2, INC-02 step 1) rather than "denied".
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from obstore.exceptions import GenericError, PermissionDeniedError

from netscope.audit.store import StoreTimeout
from netscope.config import SpoolConfig
from netscope.ledger.sqlite import SqliteLedger
from netscope.ops.preflight import check_spool, check_sqlite, exit_for, group_state, render
from netscope.ops.s3probe import explain
from netscope.ops.verdict import Line, Status


def s3_answer(method: str, status: str, code: str) -> str:
    return (
        f"The operation lacked the necessary privileges to complete for path p/probe: Error "
        f"performing {method} http://127.0.0.1:7480/b/p/probe in 2.1ms - Server returned "
        f"non-2xx status code: {status}: <?xml version=\"1.0\" encoding=\"UTF-8\"?><Error>"
        f"<Code>{code}</Code><Message></Message><BucketName>b</BucketName></Error>"
    )


@pytest.mark.parametrize(
    ("op", "code", "said"),
    [
        ("put", "AccessDenied", "no write permission (PUT AccessDenied, 403)"),
        ("get", "AccessDenied", "no read permission (GET AccessDenied, 403)"),
        ("list", "AccessDenied", "no list permission (LIST AccessDenied, 403)"),
        ("delete", "AccessDenied", "no delete permission (DELETE AccessDenied, 403)"),
        ("list", "SignatureDoesNotMatch", "wrong secret key (SignatureDoesNotMatch, 403)"),
        ("put", "InvalidAccessKeyId", "unknown access key (InvalidAccessKeyId, 403)"),
        ("list", "NoSuchBucket", "the bucket does not exist (NoSuchBucket, 404)"),
        ("put", "QuotaExceeded", "PUT refused: QuotaExceeded, 403"),
    ],
)
def test_s3_refusals_are_named_by_their_code(op: str, code: str, said: str) -> None:
    status = "404 Not Found" if code == "NoSuchBucket" else "403 Forbidden"
    exc = PermissionDeniedError(s3_answer("PUT", status, code))
    assert explain(op, exc, 5.0) == said


def test_an_unreachable_store_and_a_timeout_are_said_plainly() -> None:
    refused = GenericError("Generic S3 error: Error performing PUT http://127.0.0.1:9/b/p in "
                           "113µs - HTTP error: error sending request\n\nDebug source: ...")
    assert explain("list", refused, 5.0).startswith("unreachable: no connection")
    assert explain("put", StoreTimeout("slow"), 2.0) == "no answer to PUT within 2 s"
    assert explain("get", TimeoutError(), 2.0) == "no answer to GET within 2 s"
    odd = explain("put", ValueError("first line\nsecond"), 2.0)
    assert odd == "PUT failed: ValueError: first line"


# -- Kafka: DescribeGroups as each broker answers it ---------------------------------------------


def response(*groups: tuple) -> SimpleNamespace:
    return SimpleNamespace(groups=list(groups))


def test_group_state_reads_the_entry_naming_the_group() -> None:
    members = [("m1", "c", "h", b"", b"")]
    stable = response((0, "netscope", "Stable", "consumer", "roundrobin", members))
    assert group_state([stable], "netscope") == ("Stable", 1)
    empty = response((0, "netscope", "Empty", "consumer", "", []))
    assert group_state([empty], "netscope") == ("Empty", 0)


def test_an_unknown_group_is_none_whatever_the_broker_puts_in_the_fields() -> None:
    tansu = response((-1, None, "", "unknown-g", "Empty", []))
    noida = response((-32768, "", "", "unknown-g", "Dead", []))  # fields shifted by one
    kafka = response((0, "unknown-g", "Dead", "", "", []))  # Apache Kafka's (and noida's) way
    assert group_state([kafka], "unknown-g") is None
    other = response((0, "someone-else", "Stable", "consumer", "", []))
    assert group_state([tansu], "unknown-g") is None
    assert group_state([noida], "unknown-g") is None
    assert group_state([other], "netscope") is None
    assert group_state([], "netscope") is None


# -- ledger and spool: the file system --------------------------------------------------------


async def test_sqlite_absent_in_a_writable_folder_is_created_at_start(tmp_path: Path) -> None:
    line = check_sqlite(tmp_path / "var" / "ledger.sqlite3")
    assert line.status is Status.PASS and "created at start" in line.figure


async def test_sqlite_with_its_schema_passes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    await ledger.open()
    await ledger.close()
    line = check_sqlite(path)
    assert (line.status, line.figure) == (Status.PASS, f"sqlite {path}: writable, schema present")


def test_sqlite_that_is_not_a_database_fails(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"not a database at all, just bytes" * 100)
    line = check_sqlite(path)
    assert line.status is Status.FAIL and "unreadable" in line.figure
    folder = tmp_path / "dir.sqlite3"
    folder.mkdir()
    assert check_sqlite(folder).figure.endswith("not a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission")
def test_sqlite_in_a_read_only_folder_fails(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    line = check_sqlite(ro / "ledger.sqlite3")
    assert line.status is Status.FAIL and "not writable" in line.figure


def test_spool_with_free_disk_above_its_floor_passes(tmp_path: Path) -> None:
    line = check_spool(SpoolConfig(path=tmp_path / "spool", free_disk_floor_bytes=0))
    assert line.status is Status.PASS
    assert "(absent; created in" in line.figure and "free (floor 0 B)" in line.figure


def test_spool_below_its_free_disk_floor_fails(tmp_path: Path) -> None:
    line = check_spool(SpoolConfig(path=tmp_path, free_disk_floor_bytes=1 << 60))
    assert line.status is Status.FAIL and "spool_full" in line.detail


# -- output and exit code --------------------------------------------------------------------


def test_one_line_per_dependency_and_exit_2_only_on_a_failure() -> None:
    ok = Line("kafka", "kafka", Status.PASS, "127.0.0.1:9092: topics t (4 partitions)", "")
    warn = Line("audit store", "audit store", Status.WARN, "s3 …: no delete permission", "",
                "probe object left at audit/_preflight/x.probe")  # fmt: skip
    fail = Line("upstream pay", "upstream pay", Status.FAIL, "http://x/: unreachable", "")
    assert exit_for([ok, warn]) == 0
    assert exit_for([ok, warn, fail]) == 2
    text = render([ok, warn, fail]).splitlines()
    assert text[0] == "  ok    kafka         127.0.0.1:9092: topics t (4 partitions)"
    assert text[1].startswith("  WARN  audit store") and "left at" in text[2]
    assert text[3].startswith("  FAIL  upstream pay  http://x/: unreachable")
    assert text[-1] == "connect: 1 of 3 dependencies failed"
    assert render([ok]).splitlines()[-1] == "connect: all 1 dependencies answer"
