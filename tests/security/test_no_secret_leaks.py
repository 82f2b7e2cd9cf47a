"""No secret surfaces anywhere NetScope writes (issue 15, item 4: the secret grep).

One real run with a distinctive canary in every secret it holds or carries: the S3 key pair
of an RGW user made for the test, the admin token, the viewer (WebSocket) token, the ledger
password (PostgreSQL ledger), a secret header configured on an upstream, and in messages an
``Authorization: Bearer`` header, a ``?token=`` query value and an ``Authorization`` Kafka
header, on valid messages (called, retried, timed out, refused by a dead upstream) and on
invalid ones (dead-lettered). The admin API and the stream are also tried with a wrong
token shaped like a canary (an attacker's guess may be someone's real secret).

Then everything NetScope produced is read back and grepped for the canaries' marker:
its logs (the process's stderr at ``logging.level = "debug"``, or caplog in-process), every
audit record in RGW, what NetScope added to each dead letter, the ledger's rows, the spool,
``/metrics`` (names and labels), ``/api/status``, ``/health/ready``, the admin and dashboard
answers, every WebSocket frame, the output of ``netscope audit errors``, of
``check-config --connect`` with a wrong S3 secret, and of config errors naming secret keys.

What may hold a canary, by contract: a dead letter's *value and original headers* are the
original message, byte for byte (docs/contract.md §3: the topic exists to fix and replay
it). The test asserts they are exactly that, and greps only what NetScope added.

The two runs (``netscope run`` as a subprocess, and a Service in-process under caplog)
share the scenario; their artifacts go to test-artifacts/security/secrets-<mode>/.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from netscope.config import load_settings
from netscope.devservices.base import free_port, run_cli
from netscope.service import Service
from netscope.tools.messages import make_request
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import read_audit, read_topic, running, wait_for
from tests.security.canaries import MARKER, Canaries, leaks
from tests.security.support import artifact_dir

pytestmark = pytest.mark.integration

VALID_PER_UPSTREAM = 12
# In-process, caplog also hears the test's side: its HTTP client (httpx, httpcore) and the
# simulated upstreams' aiohttp server (they receive the secrets, as a real upstream does).
TEST_SIDE_LOGGERS = ("httpx", "httpcore", "aiohttp.access", "aiohttp.server", "aiohttp.web")


# ------------------------------------------------------------------ the real services


def rgw_user_with(rgw: Any, access_key: str, secret_key: str) -> str:
    """A new RGW user holding the canary key pair, and a bucket of its own; its name."""
    args = ["radosgw-admin", "-c", str(rgw.conf_path), "-n", "client.rgw.a", "--no-mon-config"]
    uid = f"canary-{uuid.uuid4().hex[:8]}"
    run_cli(
        [*args, "user", "create", f"--uid={uid}", "--display-name=secret grep",
         f"--access-key={access_key}", f"--secret-key={secret_key}"],
        timeout_s=60,
    )  # fmt: skip
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=rgw.endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=rgw.region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )
    bucket = f"secrets-{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + 60
    while True:  # a new user's key can take a moment to be accepted
        try:
            s3.create_bucket(Bucket=bucket)
            return bucket
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def config_toml(
    *,
    bootstrap: str,
    topic: str,
    port: int,
    tmp: Path,
    rgw: Any,
    bucket: str,
    dsn: str,
    upstreams: dict[str, str],
    canaries: Canaries,
) -> str:
    """The run's TOML: every secret but the upstream's header comes from the environment."""
    lines = [
        'instance_id = "secret-grep"',
        "[kafka]",
        f'bootstrap_servers = "{bootstrap}"',
        f'requests_topic = "{topic}"',
        f'dead_letter_topic = "{topic}.dlq"',
        f'group_id = "secret-grep-{topic}"',
        "session_timeout_s = 6.0",
        "[pipeline]",
        "commit_interval_s = 0.2",
        "[api]",
        f"port = {port}",
        "[logging]",
        'level = "debug"',
        'format = "json"',
        "[audit]",
        'backend = "s3"',
        "batch_max_delay_s = 0.1",
        "write_timeout_s = 5.0",
        "[audit.s3]",
        f'endpoint = "{rgw.endpoint}"',
        f'bucket = "{bucket}"',
        f'region = "{rgw.region}"',
        "[audit.spool]",
        f'path = "{tmp / "spool"}"',
        "free_disk_floor_bytes = 0",
        "[ledger]",
        'backend = "postgresql"',
        f'dsn = "{dsn}"',
    ]
    for name, url in upstreams.items():
        lines += [
            f"[upstreams.{name}]",
            f'base_url = "{url}"',
            "connect_timeout_s = 0.3",
            "read_timeout_s = 0.4",
            "deadline_s = 2.0",
            f"[upstreams.{name}.secret_headers]",
            f'X-Api-Key = "{canaries.upstream_secret}"',
        ]
    return "\n".join(lines) + "\n"


def secret_env(canaries: Canaries) -> dict[str, str]:
    return {
        "NETSCOPE_AUDIT__S3__ACCESS_KEY_ID": canaries.s3_access_key,
        "NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": canaries.s3_secret_key,
        "NETSCOPE_API__ADMIN_TOKEN": canaries.admin_token,
        "NETSCOPE_API__WS_TOKEN": canaries.ws_token,
        "NETSCOPE_LEDGER__PASSWORD": canaries.ledger_password,
    }


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("NETSCOPE_")}


# ------------------------------------------------------------------ traffic


def messages(c: Canaries, upstreams: list[str]) -> tuple[list[Any], list[Any]]:
    """(valid, invalid) as (key, value, kafka headers); each carries canaries."""
    rand = random.Random(15)
    kafka_headers = [("Authorization", f"Bearer {c.kafka_header}".encode())]
    valid = []
    for up in upstreams:
        for i in range(VALID_PER_UPSTREAM):
            req = make_request(up, rand=rand, path=f"/v1/items/{i}?token={c.message_query}&n=1")
            req["headers"] = {"Authorization": f"Bearer {c.message_bearer}", "X-Note": "canary"}
            valid.append((f"k-{i}".encode(), orjson.dumps(req), kafka_headers))
    base = make_request(upstreams[0], rand=rand)
    bearer = f"Bearer {c.message_bearer}"
    variants: list[Any] = [
        base | {"headers": {"Authorization": f"{bearer}\r\nX-Injected: 1"}},
        base | {"headers": {"Proxy-Authorization": bearer}},
        base | {"path": f"/v1/x?token={c.message_query}#fragment"},
        base | {"path": f"http://user:{c.message_query}@evil.example/x?token={c.message_query}"},
        base | {"timeout_ms": c.message_bearer},
        base | {"api_key": c.message_bearer},
        base | {"method": "post", "headers": {"Authorization": bearer}},
        base | {"idempotency_key": f"has space {c.message_bearer}"},
    ]
    invalid: list[Any] = [
        (f"bad-{i}".encode(), orjson.dumps(v), kafka_headers) for i, v in enumerate(variants)
    ]
    invalid.append((b"bad-raw", b"\xff\xfe" + bearer.encode() + b" {", kafka_headers))
    return valid, invalid


async def produce_with_headers(bootstrap: str, topic: str, items: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, headers=h) for k, v, h in items]
        for fut in futures:
            await fut
    finally:
        await producer.stop()


# ------------------------------------------------------------------ the two ways to run


@dataclass
class Run:
    base_url: str
    logs: str = ""
    exit_code: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def netscope_subprocess(config: Path, env: dict[str, str], port: int) -> AsyncIterator[Run]:
    stderr = config.with_suffix(".stderr")
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "netscope", "run", "-c", str(config),
            env=clean_environ() | env, stdout=err, stderr=subprocess.STDOUT,
        )  # fmt: skip
        run = Run(f"http://127.0.0.1:{port}")
        try:
            yield run
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 90)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            run.exit_code = proc.returncode
    run.logs = stderr.read_text(errors="replace")


@contextlib.asynccontextmanager
async def netscope_in_process(
    config: Path, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Run]:
    settings = load_settings(config, env=clean_environ() | env)
    caplog.set_level("DEBUG")
    service = Service(settings)
    run = Run("")
    async with running(service):
        run.base_url = service.base_url
        yield run
    run.exit_code = 0 if service.summary is not None and service.summary.clean else 3
    # Formatted lines and each record's attributes (args, extras), tracebacks included;
    # the test's own clients and the simulated upstreams log too, and are not NetScope.
    ours = [r for r in caplog.records if not r.name.startswith(TEST_SIDE_LOGGERS)]
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    run.logs = "\n".join(f"{formatter.format(r)}\n{r.__dict__}" for r in ours)


# ------------------------------------------------------------------ what is read back


async def http_answers(base: str, c: Canaries, request_id: str) -> dict[str, str]:
    """Every answer an operator, a scraper or an attacker gets, as text."""
    out: dict[str, str] = {}
    admin = {"Authorization": f"Bearer {c.admin_token}", "X-Netscope-Actor": "secret-grep"}
    guess = {"Authorization": f"Bearer {c.wrong_token}"}
    viewer = {"Authorization": f"Bearer {c.ws_token}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def keep(name: str, resp: httpx.Response) -> None:
            out[name] = f"{resp.status_code} {dict(resp.headers)}\n{resp.text}"

        for path in ("/metrics", "/api/status", "/health/ready", "/health/live", "/openapi.json"):
            await keep(path, await http.get(path))
        await keep("admin guess", await http.get("/admin/breakers", headers=guess))
        await keep("admin no token", await http.post("/admin/throttle", json={"rate_per_s": 1}))
        await keep("admin breakers", await http.get("/admin/breakers", headers=admin))
        for body in ({"rate_per_s": 50}, {"rate_per_s": None}):
            resp = await http.post("/admin/throttle", json=body, headers=admin)
            assert resp.status_code == 200, resp.text
            await keep(f"admin throttle {body}", resp)
        for action in ("force-open", "reset"):
            resp = await http.post(f"/admin/breakers/flaky/{action}", headers=admin)
            assert resp.status_code == 200, resp.text
            await keep(f"admin {action}", resp)
        await keep("history guess", await http.get("/api/history", params={"token": c.wrong_token}))
        await keep("history", await http.get("/api/history", headers=viewer))
        await keep(
            "timeline",
            await http.get("/api/timeline", params={"request_id": request_id}, headers=viewer),
        )
        await keep("timeline guess", await http.get("/api/timeline", headers=guess))
    assert out["history"].startswith("200"), out["history"][:300]
    assert out["timeline"].startswith("200"), out["timeline"][:300]
    assert out["admin guess"].startswith("401") and out["history guess"].startswith("401")
    return out


async def ws_frames(base: str, c: Canaries, stop: asyncio.Event) -> list[str]:
    """Frames of one admitted client (until ``stop``), after a refused guess."""
    ws_url = base.replace("http", "ws", 1) + "/ws/events"
    frames: list[str] = []
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{ws_url}?token={c.wrong_token}") as ws:
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 4401
        async with http.ws_connect(f"{ws_url}?token={c.ws_token}") as ws:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    msg = await ws.receive(timeout=0.5)
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        frames.append(msg.data)
                    elif msg.type != aiohttp.WSMsgType.TEXT:
                        break
    return frames


async def ledger_rows(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "select table_name from information_schema.tables where table_schema = 'public'"
        )
        dump = []
        for (name,) in tables:
            rows = await conn.fetch(f'select * from "{name}"')
            dump += [f"{name}: {dict(r)}" for r in rows]
        return "\n".join(dump)
    finally:
        await conn.close()


def spool_text(path: Path) -> str:
    parts = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        data = file.read_bytes()
        with contextlib.suppress(OSError, EOFError):
            data = gzip.decompress(data)
        parts.append(f"{file.name}: {data.decode(errors='replace')}")
    return "\n".join(parts)


async def cli(*args: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "netscope", *args, env=clean_environ() | env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return f"exit {proc.returncode}\n{out.decode(errors='replace')}"


async def error_paths(config: Path, tmp: Path, c: Canaries, env: dict[str, str]) -> dict[str, str]:
    """Errors an operator meets, each naming a secret key or carrying a secret value."""
    out: dict[str, str] = {}
    wrong_secret = env | {"NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": c.wrong_token}
    out["check-config --connect, wrong S3 secret"] = await cli(
        "check-config", "--connect", str(config), env=wrong_secret
    )
    bad = tmp / "bad.toml"
    bad.write_text(
        "[api]\n"
        f'admin_token = ["{c.admin_token}"]\n'
        f'ws_token = {{ value = "{c.ws_token}" }}\n'
        '[audit]\nbackend = "s3"\n[audit.s3]\n'
        'endpoint = "http://127.0.0.1:9"\nbucket = "b"\n'
        f'access_key_id = "{c.s3_access_key}"\n'
        f'secret_access_key = {{ nested = "{c.s3_secret_key}" }}\n'
        "[ledger]\n"
        f'dsn = "postgresql://netscope:{c.ledger_password}@127.0.0.1:5432/db"\n'
        "[upstreams.payments]\n"
        f'base_url = "http://user:{c.upstream_secret}@127.0.0.1:9/?api_key={c.upstream_secret}"\n'
        f'headers = {{ "X-Api-Key" = {len(c.upstream_secret)} }}\n'
    )
    out["check-config, bad values under secret keys"] = await cli("check-config", str(bad), env={})
    # A misspelt section is refused before anything is parsed; a misspelt key within one by
    # the model: two paths, each naming the variable, never its value.
    for typo in ({"NETSCOPE_AUDT": c.s3_secret_key}, {"NETSCOPE_API__ADMIN_TOKN": c.admin_token}):
        out[f"check-config, misspelt {next(iter(typo))}"] = await cli(
            "check-config", str(config), env=env | typo
        )
    missing = tmp / "missing-file.toml"
    missing.write_text(f'[api]\nadmin_token_file = "/nonexistent/{c.admin_token}"\n')
    out["check-config, unreadable secret file"] = await cli("check-config", str(missing), env={})
    for name, text in out.items():
        assert "exit 0" not in text.splitlines()[0], f"{name} should have failed:\n{text}"
    return out


# ------------------------------------------------------------------ the test


@pytest.mark.parametrize("mode", ["subprocess", "in-process"])
async def test_no_canary_in_anything_netscope_writes(
    mode: str, tansu_broker, rgw, postgres, tmp_path: Path, caplog
) -> None:
    c = Canaries()
    art = artifact_dir(f"secrets-{mode}")
    bucket = await asyncio.to_thread(rgw_user_with, rgw, c.s3_access_key, c.s3_secret_key)
    dsn = await asyncio.to_thread(postgres.create_database, f"s_{uuid.uuid4().hex[:12]}")
    topic = f"secrets-{uuid.uuid4().hex[:8]}"
    await tansu_broker.create_topic(topic, 4)
    port = free_port()
    env = secret_env(c)

    async with (
        UpstreamSim(SimConfig(latency_ms=1.0)) as ok,
        UpstreamSim(SimConfig(latency_ms=1.0, error_rate=0.4, hang_rate=0.2, seed=15)) as flaky,
    ):
        upstreams = {"payments": ok.url, "flaky": flaky.url, "down": "http://127.0.0.1:9"}
        config = tmp_path / "netscope.toml"
        config.write_text(
            config_toml(
                bootstrap=tansu_broker.bootstrap, topic=topic, port=port, tmp=tmp_path,
                rgw=rgw, bucket=bucket, dsn=dsn, upstreams=upstreams, canaries=c,
            )
        )  # fmt: skip
        valid, invalid = messages(c, list(upstreams))
        runner = (
            netscope_subprocess(config, env, port)
            if mode == "subprocess"
            else netscope_in_process(config, env, caplog)
        )
        async with runner as run, httpx.AsyncClient(base_url=run.base_url) as http:

            async def ready() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get("/health/ready")).status_code == 200
                return False

            async def processed() -> int:
                return int((await http.get("/api/status")).json()["processed"])

            await wait_for(ready, timeout_s=90, what="netscope to be ready")
            stop_ws = asyncio.Event()
            frames_task = asyncio.create_task(ws_frames(run.base_url, c, stop_ws))
            await produce_with_headers(tansu_broker.bootstrap, topic, valid + invalid)
            total = len(valid) + len(invalid)

            async def all_processed() -> bool:
                return await processed() >= total

            await wait_for(all_processed, timeout_s=120, what=f"{total} messages")
            request_id = orjson.loads(valid[0][1])["request_id"]
            answers = await http_answers(run.base_url, c, request_id)
            stop_ws.set()
            frames = await asyncio.wait_for(frames_task, 30)
        assert ok.stats.total > 0 and flaky.stats.total > 0, "the upstreams were called"

    corpora: dict[str, str] = {"logs": run.logs}
    corpora |= {f"http {name}": text for name, text in answers.items()}
    corpora["websocket frames"] = "\n".join(frames)
    settings = load_settings(config, env=clean_environ() | env)
    records = await read_audit(settings.audit, control=True)
    corpora["audit records"] = "\n".join(orjson.dumps(r).decode() for r in records)
    dead = await read_topic(tansu_broker.bootstrap, f"{topic}.dlq", expected=len(invalid))
    corpora["ledger rows"] = await ledger_rows(dsn)
    corpora["spool"] = spool_text(tmp_path / "spool")
    now_ms = int(time.time() * 1000)
    corpora["netscope audit errors"] = await cli(
        "audit", "errors", "-c", str(config), "--from", str(now_ms - 3_600_000),
        "--to", str(now_ms + 60_000), "--json", env=env,
    )  # fmt: skip
    corpora |= await error_paths(config, tmp_path, c, env)

    # The dead letters: the original message exactly (contract), then NetScope's headers.
    originals = {k: (v, h) for k, v, h in invalid}
    assert len(dead) == len(invalid), len(dead)
    added = []
    for record in dead:
        value, headers = originals[record.key]
        assert record.value == value
        own = [(k, v) for k, v in record.headers if k.startswith("netscope-dlq-")]
        assert [h for h in record.headers if not h[0].startswith("netscope-dlq-")] == headers
        assert {k for k, _ in own} >= {"netscope-dlq-reason", "netscope-dlq-field"}, own
        added.append(f"{record.key!r}: {[(k, v.decode(errors='replace')) for k, v in own]}")
    corpora["dead letters (netscope-dlq-* headers)"] = "\n".join(added)

    for name, text in corpora.items():
        safe = name.replace(" ", "_").replace("/", "_").replace("*", "")[:60]
        (art / f"{safe}.txt").write_text(text)

    # The run exercised what it claims to: every message audited once, errors happened.
    calls = [r for r in records if r.get("record_type") == "call"]
    assert len(calls) == len(valid) + len(invalid), len(calls)
    outcomes = {r["outcome"] for r in calls}
    assert {"success", "invalid", "rejected_circuit_open"} <= outcomes, outcomes
    tried = {(a["status"], a["error_class"]) for r in calls for a in r["attempts"]}
    assert {(200, None), (503, None), (None, "connect_error")} <= tried, tried
    assert any(r["path"] and "token=REDACTED" in r["path"] for r in calls)
    assert any(r.get("actor") for r in records if r.get("record_type") == "control")
    assert len(frames) > 10 and len(run.logs) > 1000, (len(frames), len(run.logs))
    assert run.exit_code == 0, run.logs[-3000:]

    found = [hit for name, text in corpora.items() for hit in leaks(name, text)]
    assert not found, f"{len(found)} canary hit(s) ({MARKER}...):\n" + "\n".join(found[:40])
