"""`netscope check-config --connect FILE` against real services (runbook §2, INC-02 step 1).

The command is run as an operator runs it: a TOML file, the S3 secret in the environment.
Each dependency gets one line; exit 2 when one fails:

- everything reachable: every line ok, exit 0, and the probe object is gone afterwards;
- a read-only S3 key (a second RGW user granted s3:GetObject/s3:ListBucket by a bucket
  policy, which RGW honours: proved first with boto3) is reported as "no write permission";
- missing topics (not auto-created by the check, even on tansu, which auto-creates topics
  a client names), a wrong secret, a dead upstream, an unreachable PostgreSQL: each fails
  on its own line;
- RGW stopped: "unreachable";
- PostgreSQL ledger: reachable with its table absent (created at first start) or present.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from netscope.cli import app
from netscope.config import LedgerConfig
from netscope.devservices.base import free_port, run_cli
from netscope.ledger.postgres import PostgresLedger
from netscope.ops.preflight import check_postgres
from netscope.ops.verdict import Status
from netscope.tools.upstream_sim import SimConfig, UpstreamSim

pytestmark = pytest.mark.integration


def write_config(
    path: Path,
    *,
    bootstrap: str,
    topic: str,
    endpoint: str,
    bucket: str,
    access_key: str,
    upstream: str,
    ledger: str = "",
) -> Path:
    path.write_text(
        "\n".join(
            [
                "[kafka]",
                f'bootstrap_servers = "{bootstrap}"',
                f'requests_topic = "{topic}"',
                f'dead_letter_topic = "{topic}.dlq"',
                f'group_id = "{topic}"',
                "[audit]",
                'backend = "s3"',
                "write_timeout_s = 5.0",
                "[audit.s3]",
                f'endpoint = "{endpoint}"',
                f'bucket = "{bucket}"',
                f'access_key_id = "{access_key}"',
                "[audit.spool]",
                f'path = "{path.parent / "spool"}"',
                "free_disk_floor_bytes = 0",
                "[ledger]",
                ledger,
                "[upstreams.payments]",
                f'base_url = "{upstream}"',
                "connect_timeout_s = 1.0",
                "read_timeout_s = 2.0",
            ]
        )
        + "\n"
    )
    return path


async def connect(config: Path, secret: str) -> tuple[int, dict[str, str]]:
    """Run the command; its exit code and its dependency lines by name."""
    env = {"NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": secret}
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["check-config", "--connect", str(config)], env=env
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    out = result.stdout
    assert secret not in out, "the secret must never be printed"
    section = out.split("connect:\n", 1)[1].splitlines()
    lines: dict[str, str] = {}
    for text in section:
        mark, _, rest = text.strip().partition("  ")
        for name in ("kafka", "audit store", "ledger", "spool", "upstream payments"):
            if mark in ("ok", "WARN", "FAIL") and rest.strip().startswith(name):
                lines[name] = f"{mark} {rest.strip()[len(name):].strip()}"
    assert len(lines) == 5, out
    return result.exit_code, lines


async def topics_of(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_a_reachable_config_passes_every_dependency_and_leaves_nothing_behind(
    noida_broker, rgw, rgw_bucket, tmp_path: Path
) -> None:
    topic = f"pre-{uuid.uuid4().hex[:10]}"
    await noida_broker.create_topic(topic, 3)
    await noida_broker.create_topic(f"{topic}.dlq", 1)
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim:
        config = write_config(
            tmp_path / "netscope.toml", bootstrap=noida_broker.bootstrap, topic=topic,
            endpoint=rgw.endpoint, bucket=rgw_bucket, access_key=rgw.access_key,
            upstream=sim.url,
        )  # fmt: skip
        code, lines = await connect(config, rgw.secret_key)
    assert code == 0, lines
    assert lines["kafka"] == (
        f"ok {noida_broker.bootstrap}: topics {topic} (3 partitions), {topic}.dlq (1 "
        f"partition); group {topic} not created yet (no commit)"
    )
    assert lines["audit store"].startswith(f"ok s3 {rgw.endpoint}/{rgw_bucket}: list, write, "
                                           "read, delete ok")  # fmt: skip
    assert lines["ledger"].startswith("ok sqlite ") and "created at start" in lines["ledger"]
    assert lines["spool"].startswith("ok ") and "writable" in lines["spool"]
    assert lines["upstream payments"].startswith(f"ok {sim.url}/: reachable (HTTP ")
    listed = rgw.s3_client().list_objects_v2(Bucket=rgw_bucket, Prefix="audit/")
    assert listed.get("KeyCount", 0) == 0, "the probe object was deleted"


async def test_a_live_consumer_group_shows_its_state_and_members(
    noida_broker, rgw, rgw_bucket, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaConsumer

    topic = f"pre-{uuid.uuid4().hex[:10]}"
    await noida_broker.create_topic(topic, 2)
    await noida_broker.create_topic(f"{topic}.dlq", 1)
    member = AIOKafkaConsumer(topic, bootstrap_servers=noida_broker.bootstrap, group_id=topic,
                              session_timeout_ms=6000)  # fmt: skip
    await member.start()
    try:
        deadline = time.monotonic() + 30
        while not member.assignment():  # joined once it holds its partitions
            assert time.monotonic() < deadline, "the member never joined"
            await member.getmany(timeout_ms=200)
        async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim:
            config = write_config(
                tmp_path / "netscope.toml", bootstrap=noida_broker.bootstrap, topic=topic,
                endpoint=rgw.endpoint, bucket=rgw_bucket, access_key=rgw.access_key,
                upstream=sim.url,
            )  # fmt: skip
            code, lines = await connect(config, rgw.secret_key)
    finally:
        await member.stop()
    assert code == 0, lines
    assert lines["kafka"].endswith(f"; group {topic} Stable, 1 member")


def radosgw_admin(rgw: Any, *args: str) -> str:
    cmd = ["radosgw-admin", "-c", str(rgw.conf_path), "-n", "client.rgw.a", "--no-mon-config"]
    return run_cli([*cmd, *args], timeout_s=30).stdout


def read_only_key(rgw: Any, bucket: str) -> tuple[str, str]:
    """A second RGW user whose only rights on ``bucket`` come from a bucket policy granting
    s3:GetObject and s3:ListBucket: its key reads, and cannot write."""
    uid = f"reader-{uuid.uuid4().hex[:8]}"
    access, secret = f"{uid}-key", f"{uid}-secret"
    radosgw_admin(rgw, "user", "create", f"--uid={uid}", "--display-name=read only",
                  f"--access-key={access}", f"--secret-key={secret}")  # fmt: skip
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": [f"arn:aws:iam:::user/{uid}"]},
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        }],
    }  # fmt: skip
    rgw.s3_client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    return access, secret


async def test_a_read_only_s3_key_is_reported_as_no_write_permission(
    noida_broker, rgw, rgw_bucket, tmp_path: Path
) -> None:
    access, secret = await asyncio.to_thread(read_only_key, rgw, rgw_bucket)
    owner = rgw.s3_client()
    owner.put_object(Bucket=rgw_bucket, Key="audit/seen-by-reader", Body=b"x")
    import boto3
    from botocore.config import Config

    reader = boto3.client(
        "s3", endpoint_url=rgw.endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
        region_name=rgw.region, config=Config(s3={"addressing_style": "path"},
                                              retries={"max_attempts": 1}),
    )  # fmt: skip
    # RGW honours the policy: the key reads and lists, and its writes are refused.
    deadline = time.monotonic() + 30
    while True:
        try:
            assert reader.get_object(Bucket=rgw_bucket, Key="audit/seen-by-reader")["Body"].read()
            break
        except ClientError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    assert reader.list_objects_v2(Bucket=rgw_bucket)["KeyCount"] == 1
    with pytest.raises(ClientError) as denied:
        reader.put_object(Bucket=rgw_bucket, Key="audit/x", Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"

    topic = f"pre-{uuid.uuid4().hex[:10]}"
    await noida_broker.create_topic(topic, 1)
    await noida_broker.create_topic(f"{topic}.dlq", 1)
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim:
        config = write_config(
            tmp_path / "netscope.toml", bootstrap=noida_broker.bootstrap, topic=topic,
            endpoint=rgw.endpoint, bucket=rgw_bucket, access_key=access, upstream=sim.url,
        )  # fmt: skip
        code, lines = await connect(config, secret)
    assert code == 2, lines
    assert lines["audit store"] == (
        f"FAIL s3 {rgw.endpoint}/{rgw_bucket}: no write permission (PUT AccessDenied, 403)"
    )
    assert all(lines[n].startswith("ok") for n in ("kafka", "ledger", "spool",
                                                     "upstream payments")), lines  # fmt: skip


async def test_each_failing_dependency_fails_on_its_own_line(
    tansu_broker, rgw, rgw_bucket, tmp_path: Path
) -> None:
    topic = f"absent-{uuid.uuid4().hex[:10]}"
    dead = f"http://127.0.0.1:{free_port()}"
    config = write_config(
        tmp_path / "netscope.toml", bootstrap=tansu_broker.bootstrap, topic=topic,
        endpoint=rgw.endpoint, bucket=rgw_bucket, access_key=rgw.access_key, upstream=dead,
        ledger=f'backend = "postgresql"\ndsn = "postgresql://netscope@127.0.0.1:{free_port()}'
               '/netscope"\nconnect_timeout_s = 2.0',
    )  # fmt: skip
    code, lines = await connect(config, "not-the-secret")
    assert code == 2
    assert lines["kafka"] == f"FAIL {tansu_broker.bootstrap}: missing topic {topic}, {topic}.dlq"
    assert lines["audit store"] == (
        f"FAIL s3 {rgw.endpoint}/{rgw_bucket}: wrong secret key (SignatureDoesNotMatch, 403)"
    )
    assert lines["ledger"].startswith("FAIL postgresql postgresql://netscope@127.0.0.1:")
    assert "unreachable" in lines["ledger"]
    assert lines["upstream payments"].startswith(f"FAIL {dead}/: unreachable: ConnectError")
    assert lines["spool"].startswith("ok")
    # Checking did not create what it found missing (tansu creates a topic a client names).
    assert topic not in await topics_of(tansu_broker.bootstrap)


async def test_rgw_stopped_is_unreachable(
    noida_broker, rgw_faults, rgw_bucket, tmp_path: Path
) -> None:
    topic = f"pre-{uuid.uuid4().hex[:10]}"
    await noida_broker.create_topic(topic, 1)
    await noida_broker.create_topic(f"{topic}.dlq", 1)
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim:
        config = write_config(
            tmp_path / "netscope.toml", bootstrap=noida_broker.bootstrap, topic=topic,
            endpoint=rgw_faults.endpoint, bucket=rgw_bucket, access_key=rgw_faults.access_key,
            upstream=sim.url,
        )  # fmt: skip
        await asyncio.to_thread(rgw_faults.kill_rgw)
        code, lines = await connect(config, rgw_faults.secret_key)
    assert code == 2
    assert lines["audit store"].startswith(f"FAIL s3 {rgw_faults.endpoint}/{rgw_bucket}: "
                                           "unreachable: no connection")  # fmt: skip


async def test_postgres_ledger_table_absent_then_present(postgres_dsn: str) -> None:
    cfg = LedgerConfig(backend="postgresql", dsn=postgres_dsn)
    absent = await check_postgres(cfg)
    assert absent.status is Status.PASS
    assert absent.figure.endswith("table netscope_idempotency created at start (the account "
                                  "may CREATE in schema public)")  # fmt: skip
    ledger = PostgresLedger(postgres_dsn)
    await ledger.open()  # NetScope's first start creates it
    await ledger.close()
    present = await check_postgres(cfg)
    assert present.status is Status.PASS
    assert present.figure.endswith("reachable, table netscope_idempotency present")
