"""The log listener (observability/log_events.py): one line per state change, at its level."""

from __future__ import annotations

import logging

import pytest

from netscope.observability.events import (
    AuditTarget,
    AuditWriteFailed,
    BackpressureChanged,
    BreakerTransitioned,
    CallCompleted,
    CommitFailed,
    DegradedModeChanged,
    EventBus,
    IngestRateChanged,
    PauseReason,
)
from netscope.observability.log_events import log_event


@pytest.mark.parametrize(
    ("event", "level", "text"),
    [
        (BreakerTransitioned("pay", "closed", "open", "failure_rate 0.6"), "WARNING",
         "circuit pay: closed -> open (failure_rate 0.6)"),
        (DegradedModeChanged(True, "StoreTimeout"), "WARNING", "degraded mode ON"),
        (DegradedModeChanged(False, "store accepted"), "WARNING", "degraded mode OFF"),
        (BackpressureChanged(True, PauseReason.QUEUE_FULL), "INFO", "ingest paused: queue_full"),
        (IngestRateChanged(float("inf")), "WARNING", "ingest rate limit set to unlimited"),
        (IngestRateChanged(5.0), "WARNING", "ingest rate limit set to 5.0/s"),
        (CommitFailed("KafkaError: x"), "WARNING", "offset commit failed"),
        (AuditWriteFailed(AuditTarget.SPOOL, "SpoolFull", "floor"), "ERROR", "spool refused"),
        (AuditWriteFailed(AuditTarget.STORE, "StoreTimeout", "", draining=True), "WARNING",
         "spool drain upload failed"),
        (AuditWriteFailed(AuditTarget.SPOOL, "OSError", "", draining=True), "WARNING",
         "spool drain spool read/ack failed"),
    ],
)
def test_each_state_change_is_one_line_at_its_level(
    event: object, level: str, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="netscope.events")
    log_event(event)
    (record,) = caplog.records
    assert record.levelname == level and text in record.getMessage()


def test_per_message_events_stay_out_of_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    log_event(CallCompleted(record=None, upstream_time_s=0.0))  # type: ignore[arg-type]
    log_event(AuditWriteFailed(AuditTarget.STORE, "StoreTimeout", "live write"))
    assert caplog.records == []


def test_degraded_mode_is_logged_once_per_change_through_the_bus(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bus = EventBus()
    bus.subscribe(log_event)
    bus.publish(DegradedModeChanged(True, "StoreTimeout"))
    assert [r.getMessage().count("degraded mode ON") for r in caplog.records] == [1]
