"""Nothing listens beyond loopback by default (issue 15, item 4).

Two defaults are checked socket by socket, from /proc: a Service built from the default
``[api]`` section (only the port is 0, so parallel runs do not clash), and ``netscope demo``,
the README's first command, with everything it starts (embedded broker, upstream
simulators, API), as a process tree.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from netscope.config import ApiConfig
from netscope.devservices.base import free_port
from tests.harness import wait_for
from tests.security.listening import Listener, _address, descendants, listeners
from tests.security.support import service_with

pytestmark = pytest.mark.integration


def test_the_api_defaults_to_loopback() -> None:
    assert ApiConfig().host == "127.0.0.1"


@pytest.mark.parametrize(
    ("hex_addr", "text", "loopback"),
    [
        ("0100007F", "127.0.0.1", True),
        ("0101007F", "127.0.1.1", True),
        ("00000000", "0.0.0.0", False),
        ("0A00A8C0", "192.168.0.10", False),
        ("00000000000000000000000001000000", "::1", True),
        ("00000000000000000000000000000000", "::", False),
        ("0000000000000000FFFF00000100007F", "::ffff:7f00:1", True),  # 127.0.0.1 mapped
        ("0000000000000000FFFF00000000000", None, None),
    ],
)
def test_the_proc_reader_tells_loopback_from_the_rest(hex_addr, text, loopback) -> None:
    """The check can fail: a wildcard or LAN address is seen as what it is (kernel order)."""
    if text is None:
        with pytest.raises(ValueError):
            _address(hex_addr)
        return
    address = _address(hex_addr)
    assert str(address) == text
    assert Listener("tcp", address, 8080, 1).loopback is loopback


async def test_a_default_service_listens_on_loopback_only(tansu_broker, tmp_path: Path) -> None:
    async with service_with(tansu_broker, f"lo-{os.getpid()}", tmp_path) as (service, sim):
        assert service.settings.api.host == ApiConfig().host  # the default, untouched
        found = listeners({os.getpid()})
        api_port, sim_port = service.bound_port, int(sim.url.rsplit(":", 1)[1].rstrip("/"))
    ports = {x.port for x in found}
    assert api_port in ports and sim_port in ports, found
    assert all(x.loopback for x in found), [x for x in found if not x.loopback]


async def test_netscope_demo_listens_on_loopback_only() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "netscope", "demo", "--port", str(port), "--rate", "20",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient() as http:

            async def ready() -> bool:
                try:
                    resp = await http.get(f"http://127.0.0.1:{port}/health/ready")
                except httpx.HTTPError:
                    return False
                return resp.status_code == 200

            await wait_for(ready, timeout_s=90, what="the demo to be ready")
        tree = descendants(proc.pid)
        found = listeners(tree)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert len(tree) >= 2, "the demo runs its broker as a child process"
    assert port in {x.port for x in found}
    assert len(found) >= 4, found  # API, broker, two upstream simulators
    assert all(x.loopback for x in found), [x for x in found if not x.loopback]
