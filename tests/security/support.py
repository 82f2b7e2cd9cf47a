"""Shared pieces of the security tests: a running Service with chosen tokens, artifacts.

Everything runs against a real Service (tansu broker, real sockets); only loopback.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from netscope.service import Service
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import running, settings_for

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "security"


def artifact_dir(name: str) -> Path:
    """``test-artifacts/security/<name>/``, emptied: what a reviewer opens after a run."""
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    for old in path.iterdir():
        if old.is_file():
            old.unlink()
    return path


@contextlib.asynccontextmanager
async def service_with(
    broker: Any, topic: str, tmp_path: Path, *, api: dict[str, Any] | None = None, **kw: Any
) -> AsyncIterator[tuple[Service, UpstreamSim]]:
    """A Service on ``topic`` with one upstream ("payments") on an in-process simulator."""
    await broker.create_topic(topic, 4)
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim:
        settings = settings_for(
            broker=broker,
            topic=topic,
            tmp_path=tmp_path,
            upstreams={"payments": sim.url},
            api=api,
            **kw,
        )
        async with running(Service(settings)) as service:
            yield service, sim
