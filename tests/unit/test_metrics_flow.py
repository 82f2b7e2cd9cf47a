"""Gauges that follow the pipeline's state (observability/metrics.py), fed by events only."""

from __future__ import annotations

from netscope.observability.events import (
    CommitFailed,
    IngestRateChanged,
    MessageSkipped,
    OffsetsCommitted,
    PauseReason,
    StatusSampled,
)
from netscope.observability.metrics import Metrics
from netscope.status import KafkaStatus, PipelineStatus, SpoolStatus


def status(lag: dict[tuple[str, int], int], *, spool_full: bool = False) -> PipelineStatus:
    return PipelineStatus(
        instance_id="i",
        queue_depth=7,
        queue_capacity=100,
        in_flight=3,
        processed=10,
        paused_reason=None,
        ingest_rate_per_s=float("inf"),
        audit_degraded=False,
        audit_store="local",
        spool=SpoolStatus(bytes=2048, pending_entries=2, oldest_pending_age_s=4.0, full=spool_full),
        kafka=KafkaStatus(True, True, True, "broker answers", tuple(lag), lag),
        breakers={},
    )


def value(m: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return m.registry.get_sample_value(name, labels or {})


def test_series_alerts_read_exist_from_start_with_honest_values() -> None:
    m = Metrics()
    assert value(m, "netscope_ingest_rate_limit_per_second") == float("inf")  # not "paused"
    for reason in PauseReason:
        assert value(m, "netscope_ingest_paused", {"reason": reason.value}) == 0


def test_a_status_sample_sets_the_gauges_and_lag_follows_the_assignment() -> None:
    m = Metrics()
    m.on_event(StatusSampled(status({("t", 0): 5, ("t", 1): 0}, spool_full=True)))
    assert value(m, "netscope_queue_depth") == 7
    assert value(m, "netscope_queue_capacity") == 100
    assert value(m, "netscope_audit_spool_bytes") == 2048
    assert value(m, "netscope_audit_spool_pending_batches") == 2
    assert value(m, "netscope_audit_backlog_oldest_age_seconds") == 4.0
    assert value(m, "netscope_audit_spool_full") == 1
    assert value(m, "netscope_assigned_partitions") == 2
    assert value(m, "netscope_consumer_lag", {"topic": "t", "partition": "0"}) == 5
    m.on_event(StatusSampled(status({("t", 1): 9})))  # partition 0 left this process
    assert value(m, "netscope_consumer_lag", {"topic": "t", "partition": "0"}) is None
    assert value(m, "netscope_consumer_lag", {"topic": "t", "partition": "1"}) == 9


def test_kafka_side_counters() -> None:
    m = Metrics()
    m.on_event(OffsetsCommitted({("t", 0): 3}))
    m.on_event(CommitFailed("KafkaConnectionError"))
    m.on_event(MessageSkipped("t", 0, 4))
    m.on_event(IngestRateChanged(0.0))
    assert value(m, "netscope_kafka_commits_total") == 1
    assert value(m, "netscope_kafka_commit_errors_total") == 1
    assert value(m, "netscope_revoked_skipped_total") == 1
    assert value(m, "netscope_ingest_rate_limit_per_second") == 0
