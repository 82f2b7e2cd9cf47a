"""The named set of dev services, built from one data dir and one port plan.

Why: the CLI and the pytest fixtures must agree on names, ports and directory layout, so
both build services here instead of wiring launchers themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from netscope.devservices.base import ServiceStatus
from netscope.devservices.ceph import CephRgw, RgwConfig
from netscope.devservices.kafka import BrokerConfig, NoidaBroker, TansuBroker
from netscope.devservices.postgres import Postgres, PostgresConfig
from netscope.devservices.prometheus import Prometheus, PrometheusConfig

SERVICE_NAMES: tuple[str, ...] = ("rgw", "tansu", "noida", "prometheus", "postgres")


class DevService(Protocol):
    """What the CLI needs from every launcher."""

    name: str

    def up(self) -> None: ...

    def down(self) -> None: ...

    def status(self) -> ServiceStatus: ...

    def env_lines(self) -> list[str]: ...


@dataclass(frozen=True)
class PortPlan:
    """Default ports sit away from the well-known ones so a real local stack can coexist."""

    rgw_port: int = 7480
    mon_port: int = 16789
    tansu_port: int = 19092
    noida_port: int = 19093
    prometheus_port: int = 19090
    postgres_port: int = 15432


def build_service(name: str, data_dir: Path, ports: PortPlan | None = None) -> DevService:
    """One launcher; each service gets its own sub-directory of `data_dir`."""
    ports = ports or PortPlan()
    root = data_dir.resolve()
    if name == "rgw":
        return CephRgw(
            RgwConfig(data_dir=root / "rgw", rgw_port=ports.rgw_port, mon_port=ports.mon_port)
        )
    if name == "tansu":
        return TansuBroker(BrokerConfig(data_dir=root / "tansu", port=ports.tansu_port))
    if name == "noida":
        return NoidaBroker(BrokerConfig(data_dir=root / "noida", port=ports.noida_port))
    if name == "prometheus":
        return Prometheus(
            PrometheusConfig(data_dir=root / "prometheus", port=ports.prometheus_port)
        )
    if name == "postgres":
        return Postgres(PostgresConfig(data_dir=root / "postgres", port=ports.postgres_port))
    raise ValueError(f"unknown dev service {name!r}; choose from {', '.join(SERVICE_NAMES)}")
