"""Keep secrets out of the audit and the logs: redact query values that look like credentials."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_PARAM = re.compile(
    r"(token|secret|password|passwd|pwd|api[-_]?key|apikey|key|auth|signature|sig|session|credential)",
    re.IGNORECASE,
)
REDACTED = "REDACTED"


def redact_path(path: str) -> str:
    """``/pay?user=1&api_key=abc`` -> ``/pay?user=1&api_key=REDACTED``."""
    query_at = path.find("?")
    # Fast path: most paths carry no query, or no parameter name that looks like a secret.
    if query_at < 0 or not _SECRET_PARAM.search(path, query_at):
        return path
    parts = urlsplit(path)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    safe = [(k, REDACTED if _SECRET_PARAM.search(k) else v) for k, v in pairs]
    return urlunsplit(("", "", parts.path, urlencode(safe, safe="/"), ""))
