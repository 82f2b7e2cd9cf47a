"""Control events in the audit (audit/control.py): breaker transitions, throttles, degraded
mode and an instance's start and stop become control records, written by the real audit
writer to a real local store, under ``control/instance=<id>/`` keys of their own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from netscope.audit.batch import decode
from netscope.audit.control import ControlAudit, config_digest
from netscope.audit.keys import CONTROL_TOPIC, parse_key
from netscope.audit.store import AuditStore
from netscope.audit.writer import AuditWriter
from netscope.config import AuditConfig, Settings
from netscope.observability.events import (
    BreakerTransitioned,
    DegradedModeChanged,
    EventBus,
    IngestRateChanged,
    InstanceStarted,
    InstanceStopping,
    SpoolDrainPassed,
)
from netscope.status import SpoolStatus


async def read_all(store: AuditStore, prefix: str) -> dict[str, list[dict[str, Any]]]:
    return {key: list(decode(await store.get(key))) async for key in store.list_keys(prefix)}


@pytest.fixture
def audit_cfg(tmp_path: Path) -> AuditConfig:
    return AuditConfig(backend="local", local={"path": tmp_path / "audit"})


async def test_control_events_are_audited_under_their_own_keys(audit_cfg: AuditConfig) -> None:
    store = AuditStore.from_config(audit_cfg)
    events = EventBus()
    writer = AuditWriter(audit_cfg, store, events, instance_id="host-a-1")
    spool = SpoolStatus(bytes=4096, pending_entries=3, oldest_pending_age_s=12.5)
    control = ControlAudit(writer, instance_id="host-a-1", spool=lambda: spool)
    events.subscribe(control.on_event)

    events.publish(InstanceStarted("sha256:abc", "0.1.0"))
    events.publish(BreakerTransitioned("payments", "closed", "open",
                                       "failure_rate 0.60 >= 0.50 over 50 calls"))  # fmt: skip
    events.publish(BreakerTransitioned("payments", "open", "forced_closed",
                                       "forced by admin token (cli:alice@ops-1)"))  # fmt: skip
    events.publish(IngestRateChanged(0.0, "admin token (cli:alice@ops-1)"))
    events.publish(IngestRateChanged(float("inf"), "admin token"))
    events.publish(DegradedModeChanged(True, "StoreTimeout: no answer in 5s"))
    events.publish(SpoolDrainPassed(batches=3, records=120, complete=True,
                                    pending_batches_after=0))  # fmt: skip
    events.publish(InstanceStopping(1234, detail={"abandoned_in_flight": 0}))
    await writer.flush()

    objects = await read_all(store, audit_cfg.prefix + "/")
    assert len(objects) == 1
    (key, records), = objects.items()
    parsed = parse_key(key)
    assert parsed is not None and parsed.topic == CONTROL_TOPIC
    assert parsed.instance_id == "host-a-1" and "/control/instance=host-a-1/" in key
    assert [r["record_type"] for r in records] == ["control"] * 8
    assert [r["event"] for r in records] == [
        "instance_started", "breaker_transition", "breaker_transition", "throttle_changed",
        "throttle_changed", "degraded_mode", "spool_drained", "instance_stopping",
    ]  # fmt: skip
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == 8
    started, opened, forced, paused, lifted, degraded, drained, stopping = records
    assert started["data"] == {"config_digest": "sha256:abc", "version": "0.1.0"}
    assert opened["upstream"] == "payments" and opened["actor"] is None
    assert opened["data"]["reason"] == "failure_rate 0.60 >= 0.50 over 50 calls"
    assert forced["actor"] == "admin token (cli:alice@ops-1)"
    assert forced["data"]["to"] == "forced_closed"
    assert paused["data"] == {"rate_per_s": 0.0} and paused["actor"].endswith("ops-1)")
    assert lifted["data"] == {"rate_per_s": None}  # unlimited
    assert degraded["data"]["degraded"] is True
    assert degraded["data"]["spool_pending_batches"] == 3
    assert degraded["data"]["spool_oldest_pending_age_s"] == 12.5
    assert drained["data"] == {
        "batches": 3, "records": 120, "complete": True, "spool_pending_batches": 0
    }
    assert stopping["data"] == {"processed": 1234, "abandoned_in_flight": 0}
    assert all(r["instance_id"] == "host-a-1" for r in records)
    assert writer.committable() == {(CONTROL_TOPIC, 0): seqs[-1] + 1}  # the committer skips it


async def test_a_restarted_instance_never_reuses_a_control_key(audit_cfg: AuditConfig) -> None:
    store = AuditStore.from_config(audit_cfg)
    for _ in range(2):  # the same instance id, twice: two processes one after the other
        events = EventBus()
        writer = AuditWriter(audit_cfg, store, events, instance_id="same")
        events.subscribe(ControlAudit(writer, instance_id="same").on_event)
        events.publish(InstanceStarted("sha256:x", "0.1.0"))
        await writer.flush()
        await asyncio.sleep(0.001)  # a later process starts at a later microsecond
    keys = [key async for key in store.list_keys(audit_cfg.prefix + "/")]
    assert len(keys) == 2  # both written: the second did not collide with the first


def test_the_config_digest_changes_with_the_config_and_never_shows_a_secret() -> None:
    base = {"upstreams": {"payments": {"base_url": "https://pay.example"}}}
    a = Settings(**base, api={"admin_token": "s3cret-one"})
    b = Settings(**base, api={"admin_token": "s3cret-two"})
    c = Settings(**base, pipeline={"max_in_flight": 8})
    assert config_digest(a) == config_digest(b)  # secrets are masked before hashing
    assert config_digest(a) != config_digest(c)
    assert config_digest(a).startswith("sha256:") and "s3cret" not in config_digest(a)
