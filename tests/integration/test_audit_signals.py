"""The audit signals an on-call engineer reads during an RGW outage, on a real RGW and broker.

- ``netscope_audit_write_errors_total{target="store"}`` keeps counting for as long as the
  store is down, degraded mode included (the drainer's failed uploads count): a long outage
  must not look healed because live batches stopped trying the store.
- ``netscope_audit_writes_total{target="store"}`` is "RGW is being written": it rises as the
  spool drains after the outage, not only when live batches reach the store again.

Faults and load as in test_audit_faults.py (its helpers are reused).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netscope.observability.events import DegradedModeChanged, SpoolDrainPassed
from netscope.service import Service
from netscope.tools.upstream_sim import SimConfig, UpstreamSim
from tests.harness import metric, running, wait_for
from tests.integration.test_audit_faults import (
    assert_exactly_once,
    committed_to_end,
    fault_settings,
    heal_and_settle,
    new_topic,
    steady_load,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def sim():
    async with UpstreamSim(SimConfig(latency_ms=1.0)) as s:
        yield s


def audit_sum(service: Service, name: str, **labels: str) -> float:
    """Sum of a counter's samples whose labels include ``labels``."""
    return sum(
        sample.value
        for family in service.pipeline.metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def store_errors(service: Service) -> float:
    return audit_sum(service, "netscope_audit_write_errors_total", target="store")


def store_writes(service: Service) -> float:
    return audit_sum(service, "netscope_audit_writes_total", target="store")


async def _first_store_writes_then_kill(service: Service, rgw: Any) -> None:
    await wait_for(lambda: store_writes(service) > 0, timeout_s=30, what="first batches in RGW")
    rgw.kill_rgw()
    await wait_for(
        lambda: (
            service.pipeline.writer.degraded and service.pipeline.spool.stats().pending_entries > 0
        ),
        timeout_s=20,
        what="degraded mode with spooled batches",
    )


async def test_store_write_errors_keep_counting_while_degraded(
    tansu_broker, rgw_faults, rgw_bucket, sim, tmp_path: Path
):
    topic = await new_topic(tansu_broker, "errs")
    settings = fault_settings(tansu_broker, topic, rgw_faults, rgw_bucket, sim, tmp_path)
    service = Service(settings)
    async with running(service):
        load = steady_load(tansu_broker.bootstrap, topic).start()
        try:
            await _first_store_writes_then_kill(service, rgw_faults)
            # Degraded: live batches go to the spool without trying the store; only the
            # drainer still does (backoff capped at 3 s). Its failures must keep counting.
            at_degraded = store_errors(service)
            await wait_for(
                lambda: store_errors(service) >= at_degraded + 5,
                timeout_s=40,
                what="store write errors to keep increasing while degraded",
            )
            assert service.pipeline.writer.degraded, "still degraded: RGW is still down"
            assert metric(service, "netscope_audit_degraded") == 1
        finally:
            rgw_faults.start_rgw()
        ends = await heal_and_settle(service, load, topic)
    assert service.summary is not None and service.summary.clean, service.summary
    assert await assert_exactly_once(settings, topic, ends) == load.sent


async def test_store_writes_rise_as_the_spool_drains(
    tansu_broker, rgw_faults, rgw_bucket, sim, tmp_path: Path
):
    topic = await new_topic(tansu_broker, "drainw")
    settings = fault_settings(tansu_broker, topic, rgw_faults, rgw_bucket, sim, tmp_path)
    service = Service(settings)
    pipeline = service.pipeline
    async with running(service):
        load = steady_load(tansu_broker.bootstrap, topic).start()
        try:
            await _first_store_writes_then_kill(service, rgw_faults)
            # No traffic from here on: whatever the store gets now comes from the spool.
            ends = await load.stop()
            await wait_for(
                lambda: (
                    committed_to_end(service, topic, ends) and pipeline.writer.pending_records == 0
                ),
                timeout_s=60,
                what="everything durable in the spool and committed",
            )
            spooled = pipeline.spool.stats().pending_entries
            assert spooled > 0
            writes_before = store_writes(service)
            drained_before = metric(service, "netscope_audit_spool_drained_total")
            # The control records the recovery writes: "degraded mode left", then one
            # "spool_drained" per drain pass that moved batches.
            control: list[Any] = []
            pipeline.events.subscribe(
                lambda e: (
                    control.append(e)
                    if isinstance(e, SpoolDrainPassed)
                    or (isinstance(e, DegradedModeChanged) and not e.degraded)
                    else None
                )
            )
        finally:
            rgw_faults.start_rgw()
        await wait_for(
            lambda: (
                pipeline.spool.stats().pending_entries == 0
                and not pipeline.writer.degraded
                and pipeline.writer.pending_records == 0
                and any(isinstance(e, DegradedModeChanged) for e in control)
                and any(
                    isinstance(e, SpoolDrainPassed) and e.pending_batches_after == 0
                    for e in control
                )
                and pipeline.writer.pending_control_records == 0  # those two, audited
            ),
            timeout_s=60,
            what="spool drained, degraded mode left, both audited",
        )
        drained = metric(service, "netscope_audit_spool_drained_total") - drained_before
        assert drained == spooled
        # Each drained batch is a write to RGW and counts in the store series; so does each
        # batch of control records (one record or several together: nothing else arrives).
        assert 1 <= store_writes(service) - writes_before - spooled <= len(control)
    assert service.summary is not None and service.summary.clean, service.summary
    assert await assert_exactly_once(settings, topic, ends) == load.sent
