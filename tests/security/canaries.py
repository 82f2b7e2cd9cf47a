"""Canary secrets and the grep that looks for them.

Every canary is ``NSCANARY`` + what it stands for + random hex: distinctive enough that a
hit is never a coincidence, and one marker finds every one of them, truncated, upper- or
lower-cased, wherever it surfaces. ``leaks`` reports each hit with its surroundings.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

MARKER = "NSCANARY"
_HIT = re.compile(MARKER, re.IGNORECASE)


def canary(kind: str) -> str:
    """``NSCANARY<KIND><16 hex>``: letters and digits only, so no encoding alters it."""
    return f"{MARKER}{kind.upper()}{secrets.token_hex(8).upper()}"


@dataclass
class Canaries:
    s3_access_key: str = field(default_factory=lambda: canary("S3AK"))
    s3_secret_key: str = field(default_factory=lambda: canary("S3SK"))
    admin_token: str = field(default_factory=lambda: canary("ADMIN"))
    ws_token: str = field(default_factory=lambda: canary("WS"))
    ledger_password: str = field(default_factory=lambda: canary("PGPW"))
    upstream_secret: str = field(default_factory=lambda: canary("UPHDR"))
    message_bearer: str = field(default_factory=lambda: canary("MSGAUTH"))
    message_query: str = field(default_factory=lambda: canary("QUERY"))
    kafka_header: str = field(default_factory=lambda: canary("KHDR"))
    wrong_token: str = field(default_factory=lambda: canary("GUESS"))

    def all(self) -> dict[str, str]:
        return dict(vars(self))


def leaks(source: str, text: str, *, context: int = 80) -> list[str]:
    """Every place ``text`` holds a canary (or a piece of one), as ``source: ...context...``."""
    found = []
    for hit in _HIT.finditer(text):
        start, end = max(0, hit.start() - context), min(len(text), hit.end() + context)
        found.append(f"{source}: ...{text[start:end]!r}...")
    return found
