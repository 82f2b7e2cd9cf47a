"""The admin door on a real Service: what a refusal says, and the brake on guessing.

The pure rules (constant-time comparison, lockout arithmetic) are unit-tested in
tests/unit/test_auth.py; this is the same door over real sockets, with the operator's CLI.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from netscope.api.auth import BrakePolicy, FailureBrake
from netscope.service import Service
from tests.harness import settings_for, wait_for
from tests.security.support import service_with

pytestmark = pytest.mark.integration

TOKEN = "adm-7c4f0b9e2d"


async def cli(url: str, *args: str, token: str) -> tuple[int, str]:
    env = os.environ | {"NETSCOPE_API__ADMIN_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "netscope", "admin", *args, "--url", url,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_refusals_say_nothing_and_guessing_is_braked(tansu_broker, tmp_path: Path) -> None:
    async with (
        service_with(
            tansu_broker, f"admin-{os.getpid()}", tmp_path, api={"admin_token": TOKEN}
        ) as (service, _sim),
        httpx.AsyncClient(base_url=service.base_url) as http,
    ):
        right = {"Authorization": f"Bearer {TOKEN}"}
        # Four wrong ways in (the brake forgives five): the same two words each time.
        attempts = [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN}x"},
        ]
        for headers in attempts:
            resp = await http.post("/admin/throttle", json={"rate_per_s": 0}, headers=headers)
            assert resp.status_code == 401, resp.text
            assert resp.json() == {"detail": "unauthorized"}
            assert resp.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in resp.text and TOKEN not in str(resp.headers)
        # A body that is not JSON is refused at the door too, not parsed (no 422 oracle).
        resp = await http.post(
            "/admin/throttle", content=b"\x00{", headers={"Content-Type": "application/json"}
        )
        assert resp.status_code == 401, resp.text
        assert service.pipeline.fetcher.limiter.unlimited, "no refused call changed anything"

        # The sixth failure earns a lockout: then even the right token waits (429).
        resp = await http.get("/admin/breakers", headers={"Authorization": "Bearer guess"})
        assert resp.status_code == 401
        resp = await http.get("/admin/breakers", headers=right)
        assert resp.status_code == 429 and resp.headers["retry-after"] == "1", resp.text
        assert resp.json() == {"detail": "too many failed attempts"}

        # Once the lockout ends, the right token works and the address is forgiven.
        async def admitted() -> bool:
            return (await http.get("/admin/breakers", headers=right)).status_code == 200

        await wait_for(admitted, timeout_s=10, interval_s=0.1, what="the lockout to end")
        gate = service.app.state.admin_gate
        assert len(gate.auth.brake) == 0

        # The operator's CLI says so in words (and never shows the token). A lockout longer
        # than the CLI takes to start, so the answer it gets is surely the 429.
        gate.auth.brake = FailureBrake(BrakePolicy(free_failures=1, base_lockout_s=60))
        for _ in range(2):
            await http.get("/admin/breakers", headers={"Authorization": "Bearer guess"})
        code, out = await cli(service.base_url, "breaker", "show", token=TOKEN)
        assert code == 1 and "too many failed attempts" in out and TOKEN not in out, out
        assert re.search(r"retry in (5\d|60) s", out), out  # Retry-After, whole seconds
        gate.auth.brake = FailureBrake()

        # And the CLI's own words for a wrong token (tests/integration/test_cli_admin.py).
        code, out = await cli(service.base_url, "throttle", "5", token="nope")
        assert code == 1 and "wrong bearer token" in out and "401" not in out, out


async def test_the_openapi_document_names_the_bearer_scheme_on_every_admin_operation(
    tmp_path: Path,
) -> None:
    """The document alone (the Service is built, not started): what clients generate from."""
    broker = SimpleNamespace(bootstrap="127.0.0.1:9", session_timeout_ms=6000)
    settings = settings_for(
        broker=broker, topic="t", tmp_path=tmp_path, upstreams={"payments": "http://127.0.0.1:9"},
        api={"admin_token": TOKEN},
    )  # fmt: skip
    doc = Service(settings).app.openapi()
    assert doc["components"]["securitySchemes"]["admin"] == {
        "type": "http",
        "description": "`api.admin_token`",
        "scheme": "bearer",
    }
    admin_ops = [
        (path, method, op)
        for path, item in doc["paths"].items()
        if path.startswith("/admin")
        for method, op in item.items()
    ]
    assert len(admin_ops) == 3
    for path, method, op in admin_ops:
        assert op["security"] == [{"admin": []}], (path, method)
        assert {"401", "403", "429"} <= set(op["responses"]), (path, method)
    others = [op for path, item in doc["paths"].items() if not path.startswith("/admin")
              for op in item.values()]  # fmt: skip
    assert all("security" not in op for op in others)
