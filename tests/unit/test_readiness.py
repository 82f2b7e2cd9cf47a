"""Readiness logic (api/app.py): the Kafka verdict from the status model, the cached RGW probe."""

from __future__ import annotations

import asyncio

import pytest

from netscope.api.app import StoreProbe, kafka_check
from netscope.status import KafkaStatus


def kafka(**changes) -> KafkaStatus:
    base = dict(
        connected=True,
        joined=True,
        broker_reachable=True,
        broker_detail="broker answers",
        assigned=(("t", 0), ("t", 1)),
    )
    return KafkaStatus(**(base | changes))


@pytest.mark.parametrize(
    ("status", "ready", "detail"),
    [
        (kafka(), True, "2 partitions assigned"),
        (kafka(connected=False), False, "consumer not started"),
        (kafka(joined=False, assigned=()), False, "has not joined"),
        (
            kafka(broker_reachable=False, broker_detail="broker did not answer: TimeoutError"),
            False,
            "broker did not answer",
        ),
        (kafka(assigned=()), True, "no partition assigned"),
    ],
)
def test_kafka_readiness(status: KafkaStatus, ready: bool, detail: str) -> None:
    ok, text = kafka_check(status)
    assert ok is ready and detail in text


async def test_the_store_probe_is_cached_and_single_flight() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def probe() -> None:
        started.set()
        await release.wait()

    cached = StoreProbe(probe, ttl_s=60)
    waiters = [asyncio.create_task(cached.check()) for _ in range(50)]
    await started.wait()
    release.set()
    results = await asyncio.gather(*waiters)
    assert results == [(True, "answers a signed request")] * 50
    assert await cached.check() == (True, "answers a signed request")
    assert cached.probes == 1  # a scrape storm sent one signed request


async def test_a_failing_store_is_reported_and_probed_again_after_the_ttl() -> None:
    calls = 0

    async def probe() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("rgw down")

    cached = StoreProbe(probe, ttl_s=0)
    ok, detail = await cached.check()
    assert not ok and "ConnectionRefusedError: rgw down" in detail
    assert await cached.check() == (True, "answers a signed request")
    assert cached.probes == 2
