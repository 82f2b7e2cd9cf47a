"""The simulated upstream must really misbehave the way its knobs say.

Runs the sim in-process on 127.0.0.1 and talks to it with a real aiohttp client. Timing is
asserted as lower bounds only: a loaded CI box may be slower, never faster.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from netscope.tools.upstream_sim import GZIP_BOMB_INFLATED_BYTES, SimConfig, UpstreamSim


# Function-scoped loop: the project default for async fixtures is the session loop.
@pytest_asyncio.fixture(loop_scope="function")
async def sim() -> AsyncIterator[UpstreamSim]:
    s = UpstreamSim(SimConfig(latency_ms=0.0, seed=7))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest_asyncio.fixture(loop_scope="function")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def test_start_returns_local_url(sim: UpstreamSim) -> None:
    assert sim.url.startswith("http://127.0.0.1:")
    assert sim.port > 0


async def test_healthy_answer_echoes_request(sim: UpstreamSim, http: aiohttp.ClientSession) -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {"traceparent": tp, "Idempotency-Key": "idem-1"}
    async with http.post(f"{sim.url}/v1/pay?x=1", json={"a": 1}, headers=headers) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["method"] == "POST"
    assert body["path"] == "/v1/pay?x=1"
    assert body["traceparent"] == tp
    assert body["idempotency_key"] == "idem-1"


async def test_response_bytes_pads_body(sim: UpstreamSim, http: aiohttp.ClientSession) -> None:
    sim.config.response_bytes = 4096
    async with http.get(f"{sim.url}/big") as resp:
        assert len(await resp.read()) == 4096


async def test_latency_lower_bound(sim: UpstreamSim, http: aiohttp.ClientSession) -> None:
    sim.config.latency_ms = 150.0
    sim.config.latency_distribution = "fixed"
    start = time.monotonic()
    async with http.get(f"{sim.url}/slow") as resp:
        assert resp.status == 200
    assert time.monotonic() - start >= 0.15


async def test_lognormal_latency_lower_bound_over_many(
    sim: UpstreamSim, http: aiohttp.ClientSession
) -> None:
    sim.config.apply_patch(
        {"latency_ms": 20.0, "latency_jitter_ms": 10.0, "latency_distribution": "lognormal"}
    )
    start = time.monotonic()
    for _ in range(10):
        async with http.get(f"{sim.url}/x") as resp:
            assert resp.status == 200
    # Mean 20 ms each; the total of 10 lognormal draws is far above 100 ms in practice.
    assert time.monotonic() - start >= 0.1


async def test_error_rate_one_gives_all_errors(
    sim: UpstreamSim, http: aiohttp.ClientSession
) -> None:
    sim.config.error_rate = 1.0
    statuses = []
    for _ in range(20):
        async with http.get(f"{sim.url}/x") as resp:
            statuses.append(resp.status)
    assert statuses == [503] * 20
    sim.config.error_status = 500
    async with http.get(f"{sim.url}/x") as resp:
        assert resp.status == 500


async def test_rate_429_carries_retry_after(sim: UpstreamSim, http: aiohttp.ClientSession) -> None:
    sim.config.apply_patch({"rate_429": 1.0, "retry_after_s": 2})
    async with http.get(f"{sim.url}/x") as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "2"
    sim.config.retry_after_s = 0.25
    async with http.get(f"{sim.url}/x") as resp:
        assert resp.headers["Retry-After"] == "0.25"


async def test_reset_gives_connection_error(sim: UpstreamSim, http: aiohttp.ClientSession) -> None:
    sim.config.reset_rate = 1.0
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(f"{sim.url}/x") as resp:
            await resp.read()
    stats = sim.stats.snapshot()
    assert stats["by_outcome"]["reset"] >= 1
    assert stats["by_status"] == {}


async def test_hang_makes_client_time_out(sim: UpstreamSim, http: aiohttp.ClientSession) -> None:
    sim.config.hang_rate = 1.0
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        async with http.get(f"{sim.url}/x", timeout=aiohttp.ClientTimeout(total=0.3)) as resp:
            await resp.read()
    assert time.monotonic() - start >= 0.3
    assert sim.stats.by_path["/x"] == 1


async def test_hang_ends_after_hang_s(sim: UpstreamSim, http: aiohttp.ClientSession) -> None:
    sim.config.apply_patch({"hang_rate": 1.0, "hang_s": 0.2})
    start = time.monotonic()
    async with http.get(f"{sim.url}/x") as resp:
        assert resp.status == 200
    assert time.monotonic() - start >= 0.2


async def test_slowloris_trickles_the_head_within_a_read_timeout(
    sim: UpstreamSim, http: aiohttp.ClientSession
) -> None:
    """Each byte comes before a 0.5 s read timeout, so only a total deadline ends it."""
    sim.config.apply_patch({"slowloris_rate": 1.0, "slowloris_interval_s": 0.05})
    start = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=0.6, sock_read=0.5)
    with pytest.raises(TimeoutError):
        async with http.get(f"{sim.url}/x", timeout=timeout) as resp:
            await resp.read()
    assert time.monotonic() - start >= 0.6
    assert sim.stats.by_path["/x"] == 1


async def test_endless_body_never_ends_within_a_size_bound(
    sim: UpstreamSim, http: aiohttp.ClientSession
) -> None:
    sim.config.endless_body_rate = 1.0
    size = 0
    async with http.get(f"{sim.url}/x") as resp:
        assert resp.status == 200 and resp.headers["X-Sim-Outcome"] == "endless_body"
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > 64 * 1024:
                break
    assert size > 64 * 1024


async def test_gzip_bomb_is_small_on_the_wire_and_huge_inflated(
    sim: UpstreamSim, http: aiohttp.ClientSession
) -> None:
    sim.config.gzip_bomb_rate = 1.0
    async with http.get(f"{sim.url}/x", auto_decompress=False) as resp:
        wire = await resp.read()
        assert resp.headers["Content-Encoding"] == "gzip"
    assert len(wire) < 256 * 1024
    assert len(gzip.decompress(wire)) == GZIP_BOMB_INFLATED_BYTES


async def test_redirect_points_at_another_host(
    sim: UpstreamSim, http: aiohttp.ClientSession
) -> None:
    sim.config.apply_patch({"redirect_rate": 1.0, "redirect_location": "http://10.0.0.1/x"})
    async with http.get(f"{sim.url}/x", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "http://10.0.0.1/x"
    assert sim.stats.by_outcome["redirect"] == 1


async def test_stats_count_traffic_not_control(
    sim: UpstreamSim, http: aiohttp.ClientSession
) -> None:
    before = time.time()
    for i in range(3):
        headers = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01", "Idempotency-Key": f"k{i}"}
        async with http.get(f"{sim.url}/a?i={i}", headers=headers) as resp:
            assert resp.status == 200
    async with http.delete(f"{sim.url}/b") as resp:
        assert resp.status == 200
    async with http.get(f"{sim.url}/_sim/config") as resp:
        assert resp.status == 200
    async with http.get(f"{sim.url}/_sim/stats") as resp:
        stats = await resp.json()
    assert stats["total"] == 4
    assert stats["by_path"] == {"/a": 3, "/b": 1}
    assert stats["by_status"] == {"200": 4}
    assert stats["by_outcome"] == {"ok": 4}
    arrivals = stats["recent_arrivals"]
    assert len(arrivals) == 4
    assert arrivals == sorted(arrivals) and arrivals[0] >= before - 1
    assert [e["headers"]["idempotency-key"] for e in stats["recent"][:3]] == ["k0", "k1", "k2"]
    assert stats["recent"][0]["headers"]["traceparent"].startswith("00-111")
    assert sim.stats.arrivals("/a") == arrivals[:3]
    assert len(sim.stats.headers("/b")) == 1

    async with http.post(f"{sim.url}/_sim/reset-stats") as resp:
        assert resp.status == 200
    async with http.get(f"{sim.url}/_sim/stats") as resp:
        stats = await resp.json()
    assert stats["total"] == 0 and stats["recent"] == []


async def test_history_is_bounded(http: aiohttp.ClientSession) -> None:
    async with UpstreamSim(SimConfig(latency_ms=0), history_size=3) as s:
        for i in range(5):
            async with http.get(f"{s.url}/p{i}") as resp:
                assert resp.status == 200
        snap = s.stats.snapshot()
    assert snap["total"] == 5
    assert [e["path"] for e in snap["recent"]] == ["/p2", "/p3", "/p4"]


async def test_put_config_applies_live(sim: UpstreamSim, http: aiohttp.ClientSession) -> None:
    async with http.put(
        f"{sim.url}/_sim/config", json={"error_rate": 1.0, "error_status": 502}
    ) as r:
        assert r.status == 200
        assert (await r.json())["error_status"] == 502
    assert sim.config.error_rate == 1.0
    async with http.get(f"{sim.url}/x") as resp:
        assert resp.status == 502
    async with http.get(f"{sim.url}/_sim/config") as resp:
        assert (await resp.json())["error_rate"] == 1.0


@pytest.mark.parametrize(
    "patch",
    [
        {"no_such_knob": 1},
        {"error_rate": 1.5},
        {"error_rate": "high"},
        {"latency_ms": -1},
        {"error_status": 200},
        {"error_status": True},
        {"latency_distribution": "pareto"},
        {"response_bytes": 1.5},
        {"seed": "abc"},
    ],
)
async def test_put_config_rejects_bad_fields(
    sim: UpstreamSim, http: aiohttp.ClientSession, patch: dict[str, object]
) -> None:
    before = sim.config.to_dict()
    # A valid field alongside the bad one must not be applied either (all or nothing).
    async with http.put(f"{sim.url}/_sim/config", json={"hang_rate": 0.5, **patch}) as resp:
        assert resp.status == 400
        assert "error" in await resp.json()
    assert sim.config.to_dict() == before


async def test_put_config_rejects_non_object(sim: UpstreamSim, http: aiohttp.ClientSession) -> None:
    async with http.put(f"{sim.url}/_sim/config", data=b"[1]") as resp:
        assert resp.status == 400
    async with http.put(f"{sim.url}/_sim/config", data=b"{nope") as resp:
        assert resp.status == 400


def test_constructor_validates_config() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        UpstreamSim(SimConfig(error_rate=2.0))
