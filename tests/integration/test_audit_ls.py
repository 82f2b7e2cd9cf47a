"""``netscope audit ls`` on the local store and on a real RGW bucket: a period's objects from
a listing (only its hour prefixes), records counted only when asked."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from netscope.audit.batch import encode
from netscope.audit.keys import object_key
from netscope.audit.store import AuditStore
from netscope.cli import app
from netscope.config import Settings

HOUR_MS = 3_600_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % HOUR_MS  # an hour boundary, 2026
runner = CliRunner()


def line(offset: int, ts_ms: int) -> bytes:
    at = ts_ms / 1000 + offset / 100
    return orjson.dumps({
        "kafka": {"topic": "calls", "partition": 0, "offset": offset, "timestamp_ms": ts_ms},
        "request_id": f"r-{offset}", "trace_id": f"{offset:032x}", "upstream": "payments",
        "outcome": "success", "status": 200, "received_at": at, "completed_at": at + 0.01,
        "attempts": [{"n": 1, "started_at": at, "duration_s": 0.01, "status": 200}],
    })  # fmt: skip


async def seed(settings: Settings) -> dict[str, int]:
    """Three hours of objects; the middle one also holds a replay's object. Returns bytes
    written per hour."""
    store = AuditStore.from_config(settings.audit)
    written: dict[str, int] = {}
    for h, hour in enumerate(("2026-05-28/20", "2026-05-28/21", "2026-05-28/22")):
        batches: list[tuple[int, str | None, int]] = [(h * 100, None, 10), (h * 100 + 10, None, 5)]
        if h == 1:
            batches.append((h * 100, "20261204T000000Z-abc123", 15))
        for first, run_id, n in batches:
            ts = T0 + h * HOUR_MS
            body = encode([line(first + i, ts) for i in range(n)], compress=True)
            key = object_key("audit", hour, "calls", 0, first, gzip=True, run_id=run_id)
            assert await store.put_if_absent(key, body)
            written[hour] = written.get(hour, 0) + len(body)
    return written


def config_file(tmp_path: Path, settings_toml: str) -> Path:
    path = tmp_path / "netscope.toml"
    path.write_text(settings_toml + '[upstreams.payments]\nbase_url = "http://127.0.0.1:9"\n')
    return path


def ls(config: Path, *extra: str) -> list[dict[str, Any]]:
    # The window covers the 21:00 hour and the start of 22:00, not 20:00.
    args = ["audit", "ls", "-c", str(config), "--json", "--from", str(T0 + HOUR_MS + 1),
            "--to", str(T0 + 2 * HOUR_MS + 60_000), *extra]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def check(hours: list[dict[str, Any]], written: dict[str, int], records: bool) -> None:
    assert [h["hour"] for h in hours] == ["2026-05-28/21", "2026-05-28/22"]
    middle, last = hours
    assert middle["objects"] == 3 and middle["replay_objects"] == 1
    assert middle["replay_runs"] == ["20261204T000000Z-abc123"]
    assert middle["bytes"] == written["2026-05-28/21"]
    assert middle["partitions"] == {
        "calls/0": {"first_offset": 100, "last_object_first_offset": 110}
    }
    assert last["objects"] == 2 and last["bytes"] == written["2026-05-28/22"]
    assert middle["records"] == (30 if records else None)
    assert last["records"] == (15 if records else None)


@pytest.mark.parametrize("records", [False, True])
def test_audit_ls_on_the_local_store(tmp_path: Path, records: bool) -> None:
    audit = tmp_path / "audit"
    settings = Settings(audit={"backend": "local", "local": {"path": audit}})
    written = asyncio.run(seed(settings))
    config = config_file(tmp_path, f'[audit]\nbackend = "local"\n[audit.local]\npath = "{audit}"\n')
    check(ls(config, *(["--records"] if records else [])), written, records)


def test_audit_ls_on_rgw(rgw, rgw_bucket: str, tmp_path: Path, monkeypatch) -> None:
    s3 = {"endpoint": rgw.endpoint, "bucket": rgw_bucket, "region": rgw.region,
          "access_key_id": rgw.access_key, "secret_access_key": rgw.secret_key}  # fmt: skip
    settings = Settings(audit={"backend": "s3", "s3": s3})
    written = asyncio.run(seed(settings))
    monkeypatch.setenv("NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY", rgw.secret_key)
    toml = "\n".join(
        ["[audit]", 'backend = "s3"', "[audit.s3]", f'endpoint = "{rgw.endpoint}"',
         f'bucket = "{rgw_bucket}"', f'region = "{rgw.region}"',
         f'access_key_id = "{rgw.access_key}"', ""]
    )  # fmt: skip
    check(ls(config_file(tmp_path, toml), "--records"), written, records=True)


def test_an_empty_period_says_so(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    config = config_file(tmp_path, f'[audit]\nbackend = "local"\n[audit.local]\npath = "{audit}"\n')
    result = runner.invoke(app, ["audit", "ls", "-c", str(config), "--from", str(T0),
                                 "--to", str(T0 + 1000)])  # fmt: skip
    assert result.exit_code == 0
    assert "no audit object in this period" in result.output


def seeded_with_a_corrupt_object(tmp_path: Path) -> Path:
    """The three seeded hours on the local store, plus one object that is not gzip at all
    (partition 1 of 21:00); returns the config file."""
    audit = tmp_path / "audit"
    settings = Settings(audit={"backend": "local", "local": {"path": audit}})
    asyncio.run(seed(settings))
    bad = audit / "audit/dt=2026-05-28/hour=21/topic=calls/partition=1"
    bad.mkdir(parents=True)
    (bad / f"{0:020d}.jsonl.gz").write_bytes(b"\x1f\x8b not gzip at all")
    return config_file(tmp_path, f'[audit]\nbackend = "local"\n[audit.local]\npath = "{audit}"\n')


def test_timeline_skips_an_unreadable_object_and_names_it(tmp_path: Path) -> None:
    config = seeded_with_a_corrupt_object(tmp_path)
    window = ["--from", str(T0), "--to", str(T0 + 3 * HOUR_MS)]
    result = runner.invoke(
        app, ["audit", "timeline", "-c", str(config), "--outcome", "success", *window, "--jsonl"]
    )
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len([r for r in rows if r["kind"] == "call"]) == 15 + 45  # live 3 x 15 + replay 15
    assert "skipped unreadable object" in result.output and "partition=1" in result.output
    none = runner.invoke(app, ["audit", "timeline", "-c", str(config), "--request-id", "nope",
                               *window])  # fmt: skip
    assert none.exit_code == 0 and "no matching call" in none.output


def test_report_names_an_unreadable_object_and_reads_the_rest(tmp_path: Path) -> None:
    config = seeded_with_a_corrupt_object(tmp_path)
    out = tmp_path / "inc.html"
    result = runner.invoke(app, ["report", "-c", str(config), "--from", str(T0), "--to",
                                 str(T0 + 3 * HOUR_MS), "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = orjson.loads((tmp_path / "inc.html.json").read_bytes())
    (unreadable,) = data["objects"]["unreadable"]
    assert "partition=1" in unreadable and "skipped unreadable object" in result.output
    assert data["objects"]["read"] == 8  # 7 good objects and the bad one, counted
    assert data["totals"]["calls"] == 60  # the seed's replay lines carry no replay_run_id
    assert "Unreadable objects (skipped)" in out.read_text()


def test_report_on_an_empty_period_says_so_and_on_a_dead_store_fails_in_one_line(
    tmp_path: Path,
) -> None:
    audit = tmp_path / "audit"
    config = config_file(tmp_path, f'[audit]\nbackend = "local"\n[audit.local]\npath = "{audit}"\n')
    window = ["--from", str(T0), "--to", str(T0 + 1000)]
    result = runner.invoke(app, ["report", "-c", str(config), *window,
                                 "-o", str(tmp_path / "empty.html")])  # fmt: skip
    assert result.exit_code == 0 and "no audit record in this period" in result.output
    dead = tmp_path / "dead.toml"
    dead.write_text('[audit]\nbackend = "s3"\n[audit.s3]\nendpoint = "http://127.0.0.1:9"\n'
                    'bucket = "b"\naccess_key_id = "k"\n'
                    'secret_access_key = "s3cr3t"\n')  # fmt: skip
    result = runner.invoke(app, ["report", "-c", str(dead), *window,
                                 "-o", str(tmp_path / "x.html")])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "netscope report: cannot read s3 http://127.0.0.1:9/b" in result.output
    assert "Debug source" not in result.output and "s3cr3t" not in result.output
    result = runner.invoke(app, ["report", "-c", str(config), *window, "--format", "pdf",
                                 "-o", str(tmp_path / "x.pdf")])  # fmt: skip
    assert result.exit_code == 2 and "--format must be html or md" in result.output
