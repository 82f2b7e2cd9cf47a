"""Who may read the live page's data: one rule for the event stream and every dashboard API.

Why one rule: the history, the drill-down and the report download expose what the stream
does, and more (audit records, from the store), so they must never be easier to reach than
``/ws/events``. The rule is the stream's, unchanged:

* with a viewer token configured (``api.ws_token``), a request presents it as ``?token=``
  (what a link or a WebSocket can carry) or ``Authorization: Bearer``, compared in constant
  time; otherwise it is refused as ``unauthorized``;
* a browser request whose ``Origin`` is not the host it was sent to (nor an allowed origin)
  is refused as ``origin``: a foreign page cannot read the data through a user's browser.
  Non-browser clients send no ``Origin``; same-origin GETs from the page send none either.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

UNAUTHORIZED = "unauthorized"
ORIGIN = "origin"


class ViewerAccess:
    """The stream's token and Origin rule, for WebSockets and HTTP requests alike."""

    def __init__(self, token: str | None = None, allow_origins: Iterable[str] = ()) -> None:
        self._token = token.encode() if token else None
        self._allow_origins = frozenset(o.rstrip("/") for o in allow_origins)

    @property
    def token_required(self) -> bool:
        return self._token is not None

    def refusal(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """Why this request may not read (``origin`` or ``unauthorized``), or None."""
        if not self.origin_allowed(headers):
            return ORIGIN
        if not self.authorized(headers, query):
            return UNAUTHORIZED
        return None

    def authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        if self._token is None:
            return True
        given = query.get("token")
        if given is None:
            scheme, _, value = headers.get("authorization", "").partition(" ")
            given = value.strip() if scheme.lower() == "bearer" else None
        return given is not None and hmac.compare_digest(given.encode(), self._token)

    def origin_allowed(self, headers: Mapping[str, str]) -> bool:
        origin = headers.get("origin")
        if origin is None or origin.rstrip("/") in self._allow_origins:
            return True
        return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()
