"""Structured logs (structlog) for NetScope and for the libraries it uses.

Standard-library loggers (aiokafka, uvicorn, NetScope's own modules) are routed through
structlog's ProcessorFormatter so that every line has the same shape: JSON for machines,
or a readable console rendering for a human at 3 a.m.
"""

from __future__ import annotations

import logging
import sys

import structlog


def setup_logging(level: str = "info", fmt: str = "json") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks as plain text, never with local variables: a library's frame may hold a
    # DSN, a password or a message's Authorization header (rich's default shows locals; the
    # fault run caught asyncpg's reconnect warnings printing its connect arguments).
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    render: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info, renderer] if fmt == "json" else [renderer]
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about every group join; keep warnings.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
