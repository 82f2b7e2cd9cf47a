"""The audit series (observability/metrics.py), fed events directly: pure, no pipeline.

An operator reads "RGW is being written" from the store series and "the audit is failing"
from the error series; both must say so during a long outage and while the spool drains.
"""

from __future__ import annotations

import pytest

from netscope.observability.events import (
    AuditBatchDurable,
    AuditTarget,
    AuditWriteFailed,
    SpoolBatchUploaded,
    WriteResult,
)
from netscope.observability.metrics import Metrics


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def durable(target: AuditTarget, result: WriteResult, records: int = 10) -> AuditBatchDurable:
    return AuditBatchDurable(
        topic="t",
        partition=0,
        records=records,
        bytes=1000,
        target=target,
        result=result,
        write_s=0.02,
        oldest_received_at=0.0,
        created=0.3,
    )


def uploaded(result: WriteResult) -> SpoolBatchUploaded:
    return SpoolBatchUploaded(key="k", records=10, bytes=1000, result=result, spooled_for_s=60)


def test_write_and_error_series_exist_at_zero_from_start() -> None:
    m = Metrics()
    writes = "netscope_audit_writes_total"
    assert value(m, writes, target="store", result="created") == 0
    assert value(m, writes, target="store", result="already_present") == 0
    assert value(m, writes, target="spool", result="created") == 0
    errors = "netscope_audit_write_errors_total"
    assert value(m, errors, target="store", reason="StoreTimeout") == 0
    assert value(m, "netscope_audit_spool_drained_total") == 0


def test_durable_batches_count_by_target_and_result() -> None:
    m = Metrics()
    m.on_event(durable(AuditTarget.STORE, WriteResult.CREATED))
    m.on_event(durable(AuditTarget.STORE, WriteResult.ALREADY_PRESENT))
    m.on_event(durable(AuditTarget.SPOOL, WriteResult.CREATED, records=5))
    m.on_event(durable(AuditTarget.SPOOL, WriteResult.CREATED, records=5))
    writes = "netscope_audit_writes_total"
    assert value(m, writes, target="store", result="created") == 1
    assert value(m, writes, target="store", result="already_present") == 1
    assert value(m, writes, target="spool", result="created") == 2
    assert value(m, "netscope_audit_records_total") == 30
    assert value(m, "netscope_audit_write_duration_seconds_count") == 4
    assert value(m, "netscope_audit_durable_latency_seconds_sum") == pytest.approx(0.3 * 4)


def test_a_drained_upload_counts_as_a_store_write_and_a_drained_batch() -> None:
    m = Metrics()
    m.on_event(durable(AuditTarget.SPOOL, WriteResult.CREATED))
    m.on_event(uploaded(WriteResult.CREATED))
    m.on_event(uploaded(WriteResult.ALREADY_PRESENT))
    writes = "netscope_audit_writes_total"
    assert value(m, writes, target="store", result="created") == 1
    assert value(m, writes, target="store", result="already_present") == 1
    assert value(m, "netscope_audit_spool_drained_total") == 2
    # The records were made durable once, by the spool: not counted again.
    assert value(m, "netscope_audit_records_total") == 10
    assert value(m, "netscope_audit_write_duration_seconds_count") == 1


def test_every_failed_write_counts_with_its_target_and_reason_drainer_included() -> None:
    m = Metrics()
    m.on_event(AuditWriteFailed(AuditTarget.STORE, "StoreTimeout", "no answer in 2s"))
    m.on_event(AuditWriteFailed(AuditTarget.SPOOL, "SpoolFull", "capacity"))
    for _ in range(3):  # a long outage: degraded, only the drainer still tries the store
        m.on_event(AuditWriteFailed(AuditTarget.STORE, "GenericError", "refused", draining=True))
    errors = "netscope_audit_write_errors_total"
    assert value(m, errors, target="store", reason="StoreTimeout") == 1
    assert value(m, errors, target="spool", reason="SpoolFull") == 1
    assert value(m, errors, target="store", reason="GenericError") == 3
