"""A local Alertmanager (Debian's prometheus-alertmanager) for alert end-to-end tests.

Why: an alert rule is only proven when a real Prometheus evaluates it on a real NetScope and
the notification, firing then resolved, reaches a receiver through a real Alertmanager
(grouping, send_resolved, the webhook payload operators' tools consume). Bound to 127.0.0.1,
its cluster listener off (`--cluster.listen-address=`: a single node must not gossip on a
fixed port), and reconfigured with `POST /-/reload` like the Prometheus launcher.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netscope.devservices.base import (
    Daemon,
    PromStyleDaemon,
    ServiceError,
    require_binary,
)

BINARY = "prometheus-alertmanager"  # Debian's name for the alertmanager binary
_INSTALL_HINT = (
    "install it with scripts/install-system-deps.sh (Debian: prometheus-alertmanager)"
)


@dataclass(frozen=True)
class AlertmanagerConfig:
    data_dir: Path
    port: int = 19093
    start_timeout_s: float = 30.0
    stop_grace_s: float = 10.0
    http_timeout_s: float = 5.0


@dataclass
class Alertmanager(PromStyleDaemon):
    """Launcher and handle: point every alert at one webhook, read what it holds."""

    config: AlertmanagerConfig
    _daemon: Daemon = field(init=False, repr=False)

    name = "alertmanager"

    def __post_init__(self) -> None:
        self._daemon = Daemon(
            name=self.name,
            pid_file=self.data_dir / "pids" / "alertmanager.pid",
            log_file=self.data_dir / "log" / "alertmanager.log",
            binary_hint=BINARY,
        )

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir.resolve()

    @property
    def address(self) -> str:
        """host:port, as Prometheus' alerting config wants it."""
        return f"127.0.0.1:{self.config.port}"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "alertmanager" / "alertmanager.yml"

    @staticmethod
    def check_binaries() -> None:
        require_binary(BINARY, _INSTALL_HINT)

    def up(self) -> None:
        binary = require_binary(BINARY, _INSTALL_HINT)
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.config_file.exists():
            self._write_config(None)
        self._start_and_wait(
            [
                binary,
                f"--config.file={self.config_file}",
                f"--storage.path={self.data_dir / 'alertmanager' / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.config.port}",
                "--cluster.listen-address=",
            ]
        )

    # --- test helpers --------------------------------------------------------------------

    def set_webhook(
        self,
        url: str | None,
        *,
        group_wait_s: float = 1,
        group_interval_s: float = 1,
        repeat_interval_s: float = 3600,
    ) -> None:
        """Route every alert, one group per alert name and label set, to `url` with
        send_resolved (None: to a receiver that drops them); then reload."""
        self._write_config(
            url,
            group_wait_s=group_wait_s,
            group_interval_s=group_interval_s,
            repeat_interval_s=repeat_interval_s,
        )
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST", data=b"")
        try:
            with urllib.request.urlopen(request, timeout=self.config.http_timeout_s):
                return
        except urllib.error.HTTPError as exc:
            raise ServiceError(
                f"alertmanager reload: {exc.code} {exc.read().decode(errors='replace')}"
            ) from exc
        except OSError as exc:
            raise ServiceError(f"alertmanager reload: {exc}") from exc

    def alerts(self) -> list[dict[str, Any]]:
        """`GET /api/v2/alerts`: the alerts Alertmanager holds (active, silenced, inhibited)."""
        try:
            with urllib.request.urlopen(
                f"{self.url}/api/v2/alerts", timeout=self.config.http_timeout_s
            ) as resp:
                return list(json.loads(resp.read()))
        except (OSError, ValueError) as exc:
            raise ServiceError(f"alertmanager GET /api/v2/alerts: {exc}") from exc

    def _write_config(
        self,
        webhook_url: str | None,
        *,
        group_wait_s: float = 1,
        group_interval_s: float = 1,
        repeat_interval_s: float = 3600,
    ) -> None:
        receiver: dict[str, Any] = {"name": "test"}
        if webhook_url is not None:
            receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
        config = {
            "route": {
                "receiver": "test",
                # "...": one group per distinct label set, so each alert is notified alone.
                "group_by": ["..."],
                "group_wait": f"{group_wait_s:g}s",
                "group_interval": f"{group_interval_s:g}s",
                "repeat_interval": f"{repeat_interval_s:g}s",
            },
            "receivers": [receiver],
        }
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
        tmp.replace(self.config_file)
