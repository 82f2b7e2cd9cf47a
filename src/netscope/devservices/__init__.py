"""Real local services for development and integration tests (no Docker, no systemd).

Ceph RGW (S3), two Kafka-protocol brokers (tansu, noida-db), Prometheus and PostgreSQL,
each with idempotent up/down/status, pid and log files under one data dir, and bounded
readiness waits whose errors carry the daemon's log tail. Used by `netscope dev` and
tests/conftest.py.
"""

from netscope.devservices.base import MissingBinaryError, ServiceError, ServiceStatus, free_port
from netscope.devservices.ceph import CephRgw, RgwConfig
from netscope.devservices.kafka import (
    DURABLE,
    EXACT_END_OFFSETS,
    IDEMPOTENT_PRODUCER,
    TIME_OFFSETS,
    BrokerConfig,
    KafkaBroker,
    NoidaBroker,
    TansuBroker,
)
from netscope.devservices.postgres import Postgres, PostgresConfig
from netscope.devservices.prometheus import Prometheus, PrometheusConfig
from netscope.devservices.registry import SERVICE_NAMES, PortPlan, build_service

__all__ = [
    "DURABLE",
    "EXACT_END_OFFSETS",
    "IDEMPOTENT_PRODUCER",
    "SERVICE_NAMES",
    "TIME_OFFSETS",
    "BrokerConfig",
    "CephRgw",
    "KafkaBroker",
    "MissingBinaryError",
    "NoidaBroker",
    "PortPlan",
    "Postgres",
    "PostgresConfig",
    "Prometheus",
    "PrometheusConfig",
    "RgwConfig",
    "ServiceError",
    "ServiceStatus",
    "TansuBroker",
    "build_service",
    "free_port",
]
