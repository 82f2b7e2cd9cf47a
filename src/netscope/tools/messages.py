"""Build call-request messages (schema_version 1), valid ones and deliberately broken ones.

The load generator, tests and game days all need the same shapes: realistic valid requests
and one example of every way a producer can get the contract wrong, so the ingest path's
rejection (dead-letter) handling is exercised as routinely as the happy path. Everything is
drawn from a caller-supplied ``random.Random`` so a seed reproduces a run.
"""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

SCHEMA_VERSION = 1
MAX_BODY_BYTES = 1024 * 1024
METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})

# One entry per way of breaking the contract; each make_invalid() kind violates exactly
# the rule its name says and is otherwise a valid request.
INVALID_KINDS: tuple[str, ...] = (
    "garbage",  # not JSON at all
    "json_array",  # JSON, but an array instead of an object
    "missing_request_id",
    "wrong_types",  # method is a number
    "path_with_scheme",  # "http://evil/x"
    "path_network_relative",  # "//evil/x"
    "forbidden_header_host",
    "forbidden_header_connection",
    "forbidden_header_transfer_encoding",
    "oversize_body",  # body larger than 1 MiB
    "unknown_schema_version",
    "body_and_body_b64",  # both body forms at once
)

# Kinds that are cheap to produce; oversize_body is a 1 MiB message, which benchmarks at
# high rate usually want to leave out.
SMALL_INVALID_KINDS: tuple[str, ...] = tuple(k for k in INVALID_KINDS if k != "oversize_body")


def new_request_id(rand: random.Random) -> str:
    return str(uuid.UUID(int=rand.getrandbits(128), version=4))


def new_traceparent(rand: random.Random) -> str:
    """A W3C traceparent with a fresh random trace id and span id, sampled."""
    trace_id = f"{rand.getrandbits(128) or 1:032x}"  # all-zero ids are invalid in W3C
    span_id = f"{rand.getrandbits(64) or 1:016x}"
    return f"00-{trace_id}-{span_id}-01"


def trace_id_of(traceparent: str) -> str:
    return traceparent.split("-")[1]


def _default_path(upstream: str, rand: random.Random) -> str:
    item = rand.randrange(10_000)
    return rand.choice(
        (
            f"/v1/{upstream}/items/{item}",
            f"/v1/{upstream}/items?page={item % 50}&limit=20",
            f"/v1/{upstream}/search?q=term{item % 97}",
        )
    )


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_request(
    upstream: str,
    *,
    method: str = "GET",
    path: str | None = None,
    rand: random.Random,
    idempotency_key: str | None = None,
    timeout_ms: int | None = None,
    body: Any = None,
) -> dict[str, Any]:
    """A valid request message as a dict (serialise with ``encode``).

    Bodies are generated for POST/PUT/PATCH when ``body`` is None; an explicit
    ``idempotency_key`` lets callers make retried duplicates on purpose.
    """
    request_id = new_request_id(rand)
    msg: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "request_id": request_id,
        "idempotency_key": idempotency_key if idempotency_key is not None else request_id,
        "traceparent": new_traceparent(rand),
        "upstream": upstream,
        "method": method,
        "path": path if path is not None else _default_path(upstream, rand),
        "headers": {"x-netscope-loadgen": "1"},
        "created_at": _now_rfc3339(),
    }
    if timeout_ms is not None:
        msg["timeout_ms"] = timeout_ms
    if body is not None:
        msg["body"] = body
    elif method in METHODS_WITH_BODY:
        msg["body"] = {"amount": rand.randrange(1, 100_000), "currency": "EUR", "note": "loadgen"}
    return msg


def encode(msg: dict[str, Any]) -> bytes:
    return orjson.dumps(msg)


def make_invalid(kind: str, rand: random.Random, *, upstream: str = "payments") -> bytes:
    """Serialized message bytes violating the contract in the way ``kind`` names."""
    if kind not in INVALID_KINDS:
        raise ValueError(f"unknown invalid kind {kind!r}; expected one of {INVALID_KINDS}")
    if kind == "garbage":
        # Not UTF-8 either, so a lenient decoder cannot accidentally accept it.
        return b"\xff\xfe not json {" + rand.randbytes(16)
    msg: Any = make_request(upstream, rand=rand)
    if kind == "json_array":
        msg = [msg]
    elif kind == "missing_request_id":
        del msg["request_id"]
    elif kind == "wrong_types":
        msg["method"] = 5
    elif kind == "path_with_scheme":
        msg["path"] = "http://evil.example/x"
    elif kind == "path_network_relative":
        msg["path"] = "//evil.example/x"
    elif kind == "forbidden_header_host":
        msg["headers"] = {"Host": "evil.example"}
    elif kind == "forbidden_header_connection":
        msg["headers"] = {"Connection": "close"}
    elif kind == "forbidden_header_transfer_encoding":
        msg["headers"] = {"Transfer-Encoding": "chunked"}
    elif kind == "oversize_body":
        msg["method"] = "POST"
        msg["body"] = "x" * (MAX_BODY_BYTES + 1)
    elif kind == "unknown_schema_version":
        msg["schema_version"] = 99
    elif kind == "body_and_body_b64":
        msg["method"] = "POST"
        msg["body"] = {"a": 1}
        msg["body_b64"] = base64.b64encode(b'{"a": 1}').decode()
    return orjson.dumps(msg)
