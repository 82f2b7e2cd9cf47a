"""A local Prometheus server for development and metric/alert integration tests.

Why: dashboards and alert rules are only trustworthy if every PromQL expression runs
against a real Prometheus scraping the real service. The server runs with
`--web.enable-lifecycle` so tests can point it at new scrape targets, rule files and
Alertmanagers and `POST /-/reload` instead of restarting it. What was set last is kept: a
test that sets scrape targets does not drop the rule files another one set.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netscope.devservices.base import (
    Daemon,
    PromStyleDaemon,
    ServiceError,
    require_binary,
)

_INSTALL_HINT = "install it with scripts/install-system-deps.sh (Debian: prometheus)"


@dataclass(frozen=True)
class PrometheusConfig:
    data_dir: Path
    port: int = 19090
    start_timeout_s: float = 30.0
    stop_grace_s: float = 10.0
    http_timeout_s: float = 5.0


@dataclass
class Prometheus(PromStyleDaemon):
    """Launcher and handle: scrape-target control and PromQL queries."""

    config: PrometheusConfig
    _daemon: Daemon = field(init=False, repr=False)
    # What the config file says; each setter changes one part and rewrites the whole file.
    _targets: list[str] = field(init=False, default_factory=list)
    _interval_s: float = field(init=False, default=15)
    _rule_files: list[str] = field(init=False, default_factory=list)
    _alertmanagers: list[str] = field(init=False, default_factory=list)

    name = "prometheus"

    def __post_init__(self) -> None:
        self._daemon = Daemon(
            name=self.name,
            pid_file=self.data_dir / "pids" / "prometheus.pid",
            log_file=self.data_dir / "log" / "prometheus.log",
            binary_hint="prometheus",
        )

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir.resolve()

    @property
    def config_file(self) -> Path:
        return self.data_dir / "prometheus" / "prometheus.yml"

    @staticmethod
    def check_binaries() -> None:
        require_binary("prometheus", _INSTALL_HINT)

    def up(self) -> None:
        binary = require_binary("prometheus", _INSTALL_HINT)
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.config_file.exists():
            self._write_config()
        self._start_and_wait(
            [
                binary,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.data_dir / 'prometheus' / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.config.port}",
                "--web.enable-lifecycle",
            ]
        )

    # --- test helpers --------------------------------------------------------------------

    def set_scrape_targets(self, targets: list[str], interval_s: float = 1) -> None:
        """Scrape exactly `targets` ("host:port") as job "netscope", then reload."""
        self._targets, self._interval_s = list(targets), interval_s
        self._write_config()
        self._post("/-/reload")

    def set_alerting(
        self, rule_files: list[Path | str], alertmanagers: list[str] | None = None
    ) -> None:
        """Evaluate these rule files and send alerts to these Alertmanagers ("host:port"),
        then reload. Empty lists turn both off. A rule file Prometheus rejects fails the
        reload: ServiceError with Prometheus' reason."""
        self._rule_files = [str(Path(f).resolve()) for f in rule_files]
        self._alertmanagers = list(alertmanagers or [])
        self._write_config()
        self._post("/-/reload")

    def alerts(self) -> list[dict[str, Any]]:
        """`GET /api/v1/alerts`: the pending and firing alerts, with labels and state."""
        body = self._get("/api/v1/alerts")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise ServiceError("prometheus: non-JSON answer to /api/v1/alerts") from exc
        return list(doc.get("data", {}).get("alerts", []))

    def rule_groups(self) -> list[dict[str, Any]]:
        """`GET /api/v1/rules`: the loaded rule groups with each rule's health and error."""
        doc = json.loads(self._get("/api/v1/rules"))
        return list(doc.get("data", {}).get("groups", []))

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; returns `data.result` (raises on a PromQL or HTTP error)."""
        qs = urllib.parse.urlencode({"query": promql})
        return self._parse(self._get(f"/api/v1/query?{qs}"), promql)

    async def aquery(self, promql: str) -> list[dict[str, Any]]:
        """`query` for async callers, without blocking their event loop."""
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.config.http_timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp,
        ):
            body = await resp.read()
        return self._parse(body, promql)

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout_s: float = 15.0,
        interval_s: float = 0.25,
    ) -> list[dict[str, Any]]:
        """Poll `promql` until `predicate(result)` holds; returns that result."""
        deadline = time.monotonic() + timeout_s
        last: list[dict[str, Any]] | str = "no answer yet"
        while True:
            try:
                result = self.query(promql)
                if predicate(result):
                    return result
                last = result
            except ServiceError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"prometheus: {promql!r} did not satisfy the predicate within "
                    f"{timeout_s} s; last result: {last}"
                )
            time.sleep(interval_s)

    def _write_config(self) -> None:
        # JSON is valid YAML: no YAML library needed to write the config.
        interval_s = self._interval_s
        config: dict[str, Any] = {
            "global": {"scrape_interval": f"{interval_s:g}s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "netscope",
                    "scrape_interval": f"{interval_s:g}s",
                    "scrape_timeout": f"{min(interval_s, 10):g}s",
                    "static_configs": [{"targets": list(self._targets)}],
                }
            ],
        }
        if self._rule_files:
            config["rule_files"] = list(self._rule_files)
        if self._alertmanagers:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": list(self._alertmanagers)}]}]
            }
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2))
        tmp.replace(self.config_file)

    def _get(self, path: str) -> bytes:
        try:
            with urllib.request.urlopen(
                f"{self.url}{path}", timeout=self.config.http_timeout_s
            ) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return bytes(exc.read())
        except OSError as exc:
            raise ServiceError(f"prometheus GET {path}: {exc}") from exc

    def _post(self, path: str) -> None:
        request = urllib.request.Request(f"{self.url}{path}", method="POST", data=b"")
        try:
            with urllib.request.urlopen(request, timeout=self.config.http_timeout_s):
                return
        except urllib.error.HTTPError as exc:
            raise ServiceError(
                f"prometheus POST {path}: {exc.code} {exc.read().decode(errors='replace')}"
            ) from exc
        except OSError as exc:
            raise ServiceError(f"prometheus POST {path}: {exc}") from exc

    @staticmethod
    def _parse(body: bytes, promql: str) -> list[dict[str, Any]]:
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise ServiceError(f"prometheus: non-JSON answer to {promql!r}") from exc
        if doc.get("status") != "success":
            raise ServiceError(
                f"prometheus: {promql!r} failed: {doc.get('errorType')}: {doc.get('error')}"
            )
        return list(doc["data"]["result"])
