"""Thin factory for the Kafka clients the pipeline uses (aiokafka), from validated config.

Kept in one place so every client gets the same security settings and the same
at-least-once stance: auto-commit is always off; the pipeline commits what the audit made
durable, nothing else. Every consumer reads record batches through ``ingest/records.py``, so a
header key that is not UTF-8 cannot stop a partition.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from netscope.config import KafkaConfig
from netscope.ingest import records
from netscope.observability import payload_logs


def _common(cfg: KafkaConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap_servers,
        "client_id": cfg.client_id,
        "security_protocol": cfg.security_protocol,
    }
    if cfg.sasl_mechanism:
        kwargs["sasl_mechanism"] = cfg.sasl_mechanism
        kwargs["sasl_plain_username"] = cfg.sasl_username
        if cfg.sasl_password is not None:
            kwargs["sasl_plain_password"] = cfg.sasl_password.get_secret_value()
    return kwargs


def make_consumer(cfg: KafkaConfig, **overrides: Any) -> AIOKafkaConsumer:
    records.install()
    session_ms = int(cfg.session_timeout_s * 1000)
    kwargs = _common(cfg) | {
        "group_id": cfg.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": cfg.auto_offset_reset,
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": max(500, session_ms // 4),
        "max_poll_records": cfg.max_poll_records,
        "isolation_level": "read_committed",
    }
    kwargs.update(overrides)
    return AIOKafkaConsumer(**kwargs)


def make_producer(cfg: KafkaConfig, **overrides: Any) -> AIOKafkaProducer:
    payload_logs.install()  # it sends dead letters: their values must not reach a DEBUG log
    kwargs = _common(cfg) | {"acks": "all", "linger_ms": 5, "max_request_size": 4 << 20}
    kwargs.update(overrides)
    return AIOKafkaProducer(**kwargs)
