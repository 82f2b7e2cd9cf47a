"""The configured ledger backend, built from ``[ledger]`` (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

from netscope.config import Settings
from netscope.ledger.model import Ledger


def sqlite_path(settings: Settings) -> Path:
    """The SQLite file: as configured, or beside the spool (both are this host's state)."""
    configured = settings.ledger.path
    return configured or Path(settings.audit.spool.path).parent / "ledger.sqlite3"


def build_ledger(settings: Settings) -> Ledger | None:
    """None when the ledger is off (``backend = "none"``) or no upstream uses it."""
    cfg = settings.ledger
    if cfg.backend == "none" or not any(
        u.idempotency.enabled for u in settings.upstreams.values()
    ):
        return None
    if cfg.backend == "sqlite":
        from netscope.ledger.sqlite import SqliteLedger

        return SqliteLedger(sqlite_path(settings), statement_timeout_s=cfg.statement_timeout_s)
    from netscope.ledger.postgres import PostgresLedger

    return PostgresLedger(
        cfg.dsn,
        password=cfg.password.get_secret_value() if cfg.password else None,
        pool_max_size=cfg.pool_max_size,
        statement_timeout_s=cfg.statement_timeout_s,
        connect_timeout_s=cfg.connect_timeout_s,
    )
