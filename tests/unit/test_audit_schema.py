"""The shipped JSON Schema of an audit line (``schema/audit.v1.json``) against the real code.

Records are made by the real builders (audit/record.py, the handler's ledger recovery,
audit/control.py), written by a real ``AuditWriter`` to a real local store and read back with
``netscope.audit.batch.decode``: what is validated is what a reader of the store gets. The
schema's enums and field lists are compared with the Python definitions, so a new outcome,
error class, control event or record field cannot ship without the schema.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from jsonschema import Draft202012Validator

from netscope.audit.batch import decode
from netscope.audit.control import ControlAudit, config_digest
from netscope.audit.record import (
    call_record,
    internal_error_record,
    invalid_record,
    kafka_position,
    not_called_record,
)
from netscope.audit.store import AuditStore
from netscope.audit.writer import AuditWriter
from netscope.config import AuditConfig, Settings
from netscope.contract.outcomes import ErrorClass, Outcome
from netscope.contract.records import (
    AUDIT_SCHEMA_VERSION,
    Attempt,
    AuditRecord,
    ControlEvent,
    ControlRecord,
    KafkaPosition,
)
from netscope.contract.request import CallRequest, InvalidMessage, parse_request
from netscope.handler import MessageHandler
from netscope.ledger.gate import position_ref
from netscope.ledger.model import Completion
from netscope.observability.events import (
    BreakerTransitioned,
    DegradedModeChanged,
    EventBus,
    IngestRateChanged,
    InstanceStarted,
    InstanceStopping,
    SpoolDrainPassed,
)
from netscope.outbound.caller import CallResult
from netscope.replay.runner import new_run_id
from netscope.resilience.breaker import BreakerState
from netscope.status import SpoolStatus

TOPIC = "netscope.requests"
TS_MS = 1_714_564_800_123  # 2024-05-01T12:00:00.123Z
UPSTREAMS = {"payments"}


def shipped_schema() -> dict[str, Any]:
    text = (
        resources.files("netscope.contract")
        .joinpath("schema/audit.v1.json")
        .read_text(encoding="utf-8")
    )
    return json.loads(text)


SCHEMA = shipped_schema()
VALIDATOR = Draft202012Validator(SCHEMA)


def problems(instance: Any) -> list[str]:
    """Every reason the schema gives, down into the ``oneOf`` branches: ``path: message``."""
    found: list[str] = []
    stack = list(VALIDATOR.iter_errors(instance))
    while stack:
        error = stack.pop()
        found.append(f"{error.json_path}: {error.message}")
        stack.extend(error.context or ())
    return found


def assert_valid(record: dict[str, Any]) -> None:
    assert not problems(record), (record, problems(record))


# --------------------------------------------------------------------------- real records


@pytest.fixture
def audit_cfg(tmp_path: Path) -> AuditConfig:
    return AuditConfig(backend="local", local={"path": tmp_path / "audit"})


async def read_all(store: AuditStore, prefix: str) -> list[dict[str, Any]]:
    return [r async for key in store.list_keys(prefix) for r in decode(await store.get(key))]


def consumer_record(offset: int, value: bytes, key: bytes | None = b"cust-42") -> ConsumerRecord:
    return ConsumerRecord(
        topic=TOPIC, partition=3, offset=offset, timestamp=TS_MS, timestamp_type=0,
        key=key, value=value, checksum=None, serialized_key_size=len(key or b""),
        serialized_value_size=len(value), headers=[],
    )  # fmt: skip


def request(offset: int, **fields: Any) -> tuple[CallRequest, KafkaPosition]:
    body = {
        "request_id": f"req-{offset}",
        "upstream": "payments",
        "method": "POST",
        "path": "/v1/charges?token=abc&amount=5",
        "created_at": "2024-05-01T12:00:00Z",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        **fields,
    }
    parsed = parse_request(json.dumps(body).encode(), upstreams=UPSTREAMS)
    assert isinstance(parsed, CallRequest), parsed
    return parsed, kafka_position(consumer_record(offset, b"{}"))


def real_call_records() -> list[AuditRecord]:
    """One record per interesting shape, each from the builder the handler uses."""
    now = time.time()
    times = {"received_at": now - 0.5, "completed_at": now, "instance_id": "netscope-a"}
    records: list[AuditRecord] = []

    req, pos = request(0)  # success after a retried 503
    success = CallResult(
        outcome=Outcome.SUCCESS,
        attempts=[
            Attempt(n=1, started_at=now - 0.4, duration_s=0.01, status=503, retry_delay_s=0.1),
            Attempt(n=2, started_at=now - 0.2, duration_s=0.02, status=201),
        ],
        status=201,
    )
    records.append(call_record(req, success, pos, latency_s=0.5, queued_s=0.01, **times))

    req, pos = request(1, idempotency_key="charge-1", traceparent=None)  # timeouts, retried
    timeout = CallResult(
        outcome=Outcome.TIMEOUT_READ,
        attempts=[
            Attempt(
                n=n,
                started_at=now - 0.4 + n / 10,
                duration_s=0.05,
                error_class=ErrorClass.TIMEOUT_READ,
                retry_delay_s=0.05 if n < 3 else None,
            )
            for n in (1, 2, 3)
        ],
        error_class=ErrorClass.TIMEOUT_READ,
        detail="no response in 0.05s",
    )
    record = call_record(req, timeout, pos, latency_s=0.5, queued_s=0.0, **times)
    record.attempt_after_lease_expiry = True  # the handler sets it from the ledger ticket
    record.replay_run_id = new_run_id()  # as written by a replay
    records.append(record)

    invalid = parse_request(b'{"request_id": 7}', upstreams=UPSTREAMS)  # invalid: dead-lettered
    assert isinstance(invalid, InvalidMessage)
    records.append(invalid_record(
        invalid, kafka_position(consumer_record(2, b"{}", key=b"\xff\xfe")), **times
    ))  # fmt: skip
    unreadable = parse_request(b"\x00not json", upstreams=UPSTREAMS)
    assert isinstance(unreadable, InvalidMessage)
    records.append(invalid_record(
        unreadable, kafka_position(consumer_record(3, b"{}", key=None)), **times
    ))  # fmt: skip

    req, pos = request(4)  # the ledger says done before
    original = KafkaPosition(TOPIC, 3, 0, TS_MS)
    records.append(not_called_record(
        req, pos, outcome=Outcome.DUPLICATE_SKIPPED, status=201,
        detail="idempotency key completed before as success",
        duplicate_of=position_ref(original, None), **times,
    ))  # fmt: skip
    req, pos = request(5)
    records.append(not_called_record(
        req, pos, outcome=Outcome.DUPLICATE_IN_PROGRESS, detail="claimed elsewhere", **times
    ))  # fmt: skip
    req, pos = request(6, created_at=None)
    records.append(not_called_record(
        req, pos, outcome=Outcome.LEDGER_UNAVAILABLE, detail="ledger timed out", **times
    ))  # fmt: skip

    req, pos = request(7)  # called before a crash: rebuilt from the ledger
    done = Completion(outcome="http_error", status=503, attempts=3,
                      audit_ref=position_ref(pos, None), completed_at=now - 60)  # fmt: skip
    recovered = MessageHandler._recovered(req, pos, done, times)
    assert recovered.outcome_from_ledger and recovered.attempts == []
    records.append(recovered)

    req, pos = request(8)  # a bug while handling it
    records.append(internal_error_record(req, pos, detail="RuntimeError: boom", **times))
    return records


async def write_and_read_calls(audit_cfg: AuditConfig) -> list[dict[str, Any]]:
    store = AuditStore.from_config(audit_cfg)
    writer = AuditWriter(audit_cfg, store, EventBus(), instance_id="netscope-a")
    for record in real_call_records():
        lane = writer.track(record.kafka.topic, record.kafka.partition, record.kafka.offset)
        assert writer.complete(lane, record)
    await writer.flush()
    return await read_all(store, audit_cfg.prefix + "/")


async def write_and_read_controls(audit_cfg: AuditConfig) -> list[dict[str, Any]]:
    """Every control event, through ControlAudit and a real writer (test_control_audit.py)."""
    store = AuditStore.from_config(audit_cfg)
    events = EventBus()
    writer = AuditWriter(audit_cfg, store, events, instance_id="host-a-1")
    spool = SpoolStatus(bytes=4096, pending_entries=3, oldest_pending_age_s=12.5)
    control = ControlAudit(writer, instance_id="host-a-1", spool=lambda: spool)
    events.subscribe(control.on_event)
    digest = config_digest(Settings(upstreams={"payments": {"base_url": "https://pay.example"}}))
    run_id = new_run_id()

    events.publish(InstanceStarted(digest, "0.1.0"))
    window = {"topic": TOPIC, "from_ms": TS_MS, "to_ms": TS_MS + 3_600_000,
              "rate_per_s": None, "upstream": "payments"}  # fmt: skip
    events.publish(InstanceStarted(digest, "0.1.0", run_id, window))  # a replay's start
    events.publish(BreakerTransitioned("payments", "closed", "open",
                                       "failure_rate 0.60 >= 0.50 over 50 calls"))  # fmt: skip
    events.publish(BreakerTransitioned("payments", "open", "forced_closed",
                                       "forced by admin token (cli:alice@ops-1)"))  # fmt: skip
    events.publish(BreakerTransitioned("payments", "open", "half_open", "wait 30s elapsed"))
    events.publish(IngestRateChanged(0.0, "admin token (cli:alice@ops-1)"))
    events.publish(IngestRateChanged(float("inf"), "admin token"))
    events.publish(IngestRateChanged(250.0))
    events.publish(DegradedModeChanged(True, "StoreTimeout: no answer in 5s"))
    spool = SpoolStatus()  # back: an empty spool has no oldest entry
    events.publish(DegradedModeChanged(False, "store write succeeded"))
    events.publish(SpoolDrainPassed(batches=3, records=120, complete=True,
                                    pending_batches_after=0))  # fmt: skip
    events.publish(SpoolDrainPassed(batches=1, records=40, complete=False,
                                    pending_batches_after=None))  # fmt: skip
    events.publish(InstanceStopping(1234, detail={"abandoned_in_flight": 0}))
    events.publish(InstanceStopping(
        99, run_id,
        {"abandoned_in_flight": 2, "interrupted": True, "totals": {"read": 100, "called": 99}},
    ))  # fmt: skip
    await writer.flush()
    return await read_all(store, audit_cfg.prefix + "/")


async def test_real_call_records_validate(audit_cfg: AuditConfig) -> None:
    records = await write_and_read_calls(audit_cfg)
    assert {r["outcome"] for r in records} >= {
        "success", "timeout_read", "invalid", "duplicate_skipped", "duplicate_in_progress",
        "ledger_unavailable", "http_error", "protocol_error",
    }  # fmt: skip
    assert any(r["duplicate_of"] for r in records)
    assert any(r["outcome_from_ledger"] for r in records)
    assert any(r["replay_run_id"] for r in records)
    assert any(r["kafka"]["key"] is None for r in records)
    assert any(len(r["attempts"]) == 3 for r in records)
    for record in records:
        assert record["record_type"] == "call"
        assert_valid(record)


async def test_a_call_record_without_record_type_is_read_as_a_call(
    audit_cfg: AuditConfig,
) -> None:
    record = (await write_and_read_calls(audit_cfg))[0]
    del record["record_type"]  # written before control records existed
    assert_valid(record)


async def test_every_control_event_validates(audit_cfg: AuditConfig) -> None:
    records = await write_and_read_controls(audit_cfg)
    assert {r["event"] for r in records} == {e.value for e in ControlEvent}
    assert len(records) == 14
    for record in records:
        assert record["record_type"] == "control"
        assert_valid(record)


# --------------------------------------------------------------------------- wrong records


async def call_line(audit_cfg: AuditConfig) -> dict[str, Any]:
    return (await write_and_read_calls(audit_cfg))[0]


async def breaker_line(audit_cfg: AuditConfig) -> dict[str, Any]:
    records = await write_and_read_controls(audit_cfg)
    return next(r for r in records if r["event"] == "breaker_transition")


async def test_an_unknown_outcome_is_refused(audit_cfg: AuditConfig) -> None:
    record = await call_line(audit_cfg)
    record["outcome"] = "teleported"
    found = problems(record)
    assert any(p.startswith("$.outcome: 'teleported' is not one of") for p in found), found


async def test_a_call_record_without_trace_id_is_refused(audit_cfg: AuditConfig) -> None:
    record = await call_line(audit_cfg)
    del record["trace_id"]
    found = problems(record)
    assert "$: 'trace_id' is a required property" in found, found


async def test_a_call_record_with_a_field_the_code_never_writes_is_refused(
    audit_cfg: AuditConfig,
) -> None:
    record = await call_line(audit_cfg)
    record["retries"] = 1
    found = problems(record)
    assert any("'retries' was unexpected" in p for p in found), found


async def test_an_unknown_control_event_is_refused(audit_cfg: AuditConfig) -> None:
    record = await breaker_line(audit_cfg)
    record["event"] = "moon_landing"
    found = problems(record)
    assert any(p.startswith("$.event: 'moon_landing' is not one of") for p in found), found


async def test_a_breaker_transition_without_to_is_refused(audit_cfg: AuditConfig) -> None:
    record = await breaker_line(audit_cfg)
    del record["data"]["to"]
    found = problems(record)
    assert "$.data: 'to' is a required property" in found, found


async def test_a_breaker_transition_without_upstream_is_refused(audit_cfg: AuditConfig) -> None:
    record = await breaker_line(audit_cfg)
    record["upstream"] = None
    found = problems(record)
    assert any(p.startswith("$.upstream: None is not of type 'string'") for p in found), found


async def test_per_event_data_is_checked(audit_cfg: AuditConfig) -> None:
    records = {r["event"]: r for r in await write_and_read_controls(audit_cfg)}
    cases = [
        ("degraded_mode", "degraded", "$.data: 'degraded' is a required property"),
        ("spool_drained", "spool_pending_batches",
         "$.data: 'spool_pending_batches' is a required property"),
        ("throttle_changed", "rate_per_s", "$.data: 'rate_per_s' is a required property"),
        ("instance_started", "config_digest", "$.data: 'config_digest' is a required property"),
        ("instance_stopping", "processed", "$.data: 'processed' is a required property"),
    ]  # fmt: skip
    for event, field, expected in cases:
        record = copy.deepcopy(records[event])
        del record["data"][field]
        assert expected in problems(record), (event, problems(record))


# --------------------------------------------------------------------------- schema == code


def defs(name: str) -> dict[str, Any]:
    return SCHEMA["$defs"][name]


@pytest.mark.parametrize(
    ("definition", "enum"),
    [
        ("outcome", Outcome),
        ("error_class", ErrorClass),
        ("control_event", ControlEvent),
        ("breaker_state", BreakerState),
    ],
)
def test_schema_enums_are_the_code_enums(definition: str, enum: type) -> None:
    assert defs(definition)["enum"] == [member.value for member in enum], (
        f"schema/audit.v1.json $defs/{definition} differs from {enum.__name__}: update it"
    )


@pytest.mark.parametrize(
    ("definition", "cls"),
    [
        ("call_record", AuditRecord),
        ("control_record", ControlRecord),
        ("attempt", Attempt),
        ("kafka", KafkaPosition),
    ],
)
def test_schema_fields_are_the_record_fields(definition: str, cls: type) -> None:
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(defs(definition)["properties"]) == fields
    # orjson writes every field: all are required, except those older call records lack
    added_later = {"record_type", "queued_s", "replay_run_id", "duplicate_of",
                   "attempt_after_lease_expiry", "outcome_from_ledger"}  # fmt: skip
    optional = added_later if cls is AuditRecord else set()
    assert set(defs(definition)["required"]) == fields - optional


def test_every_control_event_has_its_data_rule() -> None:
    rules = defs("control_record")["allOf"]
    events = [rule["if"]["properties"]["event"]["const"] for rule in rules]
    assert sorted(events) == sorted(e.value for e in ControlEvent)


def test_schema_is_draft_2020_12_and_version_1() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for definition in ("call_record", "control_record"):
        assert defs(definition)["properties"]["schema_version"]["const"] == AUDIT_SCHEMA_VERSION
    assert defs("call_record")["properties"]["record_type"]["const"] == "call"
    assert defs("control_record")["properties"]["record_type"]["const"] == "control"
