"""The request message contract (Kafka value, JSON, ``schema_version`` 1) and its validation.

``parse_request`` is total: any bytes in, a :class:`CallRequest` or an :class:`InvalidMessage`
out, never an exception. Errors carry a field path and a reason so a dead-letter record tells the
producer exactly what to fix. The JSON Schema shipped in ``schema/request.v1.json`` is generated
from :class:`RequestMessage` (a test keeps them identical).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import re
from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from netscope.contract.traceparent import TraceContext, new_trace, parse_traceparent

SCHEMA_VERSION = 1
MAX_HEADERS = 32
MAX_HEADER_BYTES = 8192
MAX_PATH_CHARS = 2048

# Set by NetScope itself or meaningless across a proxy hop (RFC 9110 section 7.6.1).
FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "traceparent",
        "tracestate",
        "idempotency-key",
    }
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
# Control characters are C0, DEL and C1 (U+0080-U+009F: NEL among them, a line break to some
# parsers); the C1 range was let through until the hostile-input run (issue 15) sent it.
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_ID = re.compile(r"^[\x21-\x7e]{1,256}$")
_PATH_BAD = re.compile(r"[\x00-\x20\x7f-\x9f\\#]")
# A field path names the producer's own keys: an unknown key of 500 KB must not become a
# 500 KB dead-letter header (the copy could then pass the topic's size limit).
MAX_FIELD_PATH_CHARS = 256

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class RequestMessage(BaseModel):
    """A call request as producers write it. Field docs end up in the JSON Schema."""

    # strict: no coercion ("5" -> 5, true -> 1, 1234 -> datetime), so the parser accepts exactly
    # what the shipped JSON Schema accepts.
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, title="NetScope call request"
    )

    schema_version: Literal[1] = Field(1, description="Contract version; only 1 exists.")
    request_id: str = Field(description="Unique id of this request (printable ASCII, <= 256).")
    idempotency_key: str | None = Field(
        None, description="Sent upstream as Idempotency-Key; defaults to request_id."
    )
    traceparent: str | None = Field(
        None, description="W3C traceparent; also read from the Kafka header of that name."
    )
    upstream: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="Name of a configured upstream. Never a URL.",
    )
    method: Method
    path: str = Field(description="Absolute path with optional query: no scheme, no host.")
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = Field(None, description="JSON body (sent as application/json).")
    body_b64: str | None = Field(None, description="Raw body, base64. Exclusive with body.")
    timeout_ms: Annotated[int, Field(ge=1, le=600_000)] | None = Field(
        None, description="Caller's deadline; capped by the upstream's deadline_s."
    )
    created_at: datetime | None = Field(None, description="RFC 3339 time the producer made it.")

    @field_validator("schema_version", mode="before")
    @classmethod
    def _the_integer_one(cls, value: Any) -> Any:
        # Literal[1] also matches true, 1.0 and 1e0 (equal to 1 in Python); the contract and
        # the JSON Schema ({"const": 1}) do not. Found by the hostile-input generator.
        if type(value) is not int:
            raise ValueError("Input should be 1")
        return value

    @field_validator("request_id", "idempotency_key")
    @classmethod
    def _printable_id(cls, value: str | None) -> str | None:
        if value is not None and not _ID.match(value):
            raise ValueError("must be 1-256 printable ASCII characters without spaces")
        return value

    @field_validator("traceparent")
    @classmethod
    def _w3c(cls, value: str | None) -> str | None:
        if value is not None and parse_traceparent(value) is None:
            raise ValueError("not a valid W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)")
        return value

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        if len(value) > MAX_PATH_CHARS:
            raise ValueError(f"longer than {MAX_PATH_CHARS} characters")
        if not value.startswith("/") or value.startswith("//"):
            raise ValueError("must start with a single '/': a path, never a URL or a host")
        if _PATH_BAD.search(value):
            raise ValueError("must not contain spaces, control characters, '\\' or '#'")
        path = value.partition("?")[0]
        if ".." not in path and "%" not in path:
            return value  # the common case: nothing that could decode to a '..' segment
        parts = urlsplit(value)
        if parts.scheme or parts.netloc:
            raise ValueError("must not carry a scheme or a host")
        # Decoded first: "%2e%2e" is ".." to most servers (and to yarl, which requotes it).
        if ".." in unquote(parts.path).replace("\\", "/").split("/"):
            raise ValueError("must not contain '..' segments")
        return value

    @field_validator("headers")
    @classmethod
    def _safe_headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_HEADERS:
            raise ValueError(f"{len(value)} headers, at most {MAX_HEADERS}")
        size = 0
        for name, header_value in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in FORBIDDEN_HEADERS:
                raise ValueError(f"header {name!r} is not allowed (set by NetScope or hop-by-hop)")
            if _HEADER_VALUE_BAD.search(header_value):
                raise ValueError(f"header {name!r} value contains control characters")
            size += len(name) + len(header_value)
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"headers total {size} bytes, at most {MAX_HEADER_BYTES}")
        return value

    @field_validator("body")
    @classmethod
    def _plain_json(cls, value: Any) -> Any:
        # The JSON parser accepts NaN/Infinity and arbitrarily large integers. orjson would send
        # the former as null (silently changing the body) and raise on the latter (breaking
        # parse_request's totality), so both are rejected here.
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError("NaN and Infinity are not JSON")
            if type(item) is int and not -(1 << 63) <= item < (1 << 64):
                raise ValueError("integer outside the 64-bit range")
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return value

    @field_validator("body_b64")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("not valid base64") from None
        return value

    @model_validator(mode="after")
    def _one_body(self) -> RequestMessage:
        if self.body is not None and self.body_b64 is not None:
            raise ValueError("body and body_b64 are exclusive")
        return self


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class InvalidMessage:
    """Why a message cannot be processed. ``errors`` is never empty."""

    errors: tuple[FieldError, ...]
    # Best effort, so the audit and DLQ can still correlate a half-valid message.
    request_id: str | None = None
    trace: TraceContext | None = None

    @property
    def reason(self) -> str:
        return "; ".join(f"{e.field}: {e.reason}" for e in self.errors)

    @property
    def field(self) -> str:
        return self.errors[0].field


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A validated request, with defaults applied and the trace context resolved."""

    message: RequestMessage
    trace: TraceContext
    idempotency_key: str
    body_bytes: bytes | None
    content_type: str | None

    @property
    def request_id(self) -> str:
        return self.message.request_id

    @property
    def upstream(self) -> str:
        return self.message.upstream


def _field_path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if len(path) > MAX_FIELD_PATH_CHARS:
        path = path[: MAX_FIELD_PATH_CHARS - 3] + "..."
    return path or "(message)"


def _errors(exc: ValidationError) -> tuple[FieldError, ...]:
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        reason = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            reason = "required field is missing"
        elif error["type"] == "extra_forbidden":
            reason = "unknown field"
        out.append(FieldError(_field_path(error["loc"]), reason))
    return tuple(out)


def _salvage(raw: bytes) -> tuple[str | None, TraceContext | None]:
    """Pull request_id and traceparent out of an invalid message, if they are there and sane."""
    try:
        import orjson

        data = orjson.loads(raw)
    except Exception:
        return None, None
    if not isinstance(data, dict):
        return None, None
    rid = data.get("request_id")
    tp = data.get("traceparent")
    request_id = rid if isinstance(rid, str) and _ID.match(rid) else None
    trace = parse_traceparent(tp) if isinstance(tp, str) else None
    return request_id, trace


def parse_request(
    raw: bytes | None,
    *,
    upstreams: Container[str],
    header_traceparent: bytes | None = None,
    max_message_bytes: int = 1 << 20,
) -> CallRequest | InvalidMessage:
    """Validate one Kafka value. Total: never raises, whatever the bytes.

    An invalid message keeps the producer's trace when it has one, from its body or from the
    Kafka ``traceparent`` header, so the dead letter and its audit record stay correlated.
    """
    result = _parse(raw, upstreams, header_traceparent, max_message_bytes)
    if isinstance(result, InvalidMessage) and result.trace is None and header_traceparent:
        header_trace = parse_traceparent(header_traceparent.decode("ascii", "replace"))
        if header_trace is not None:
            result = dataclasses.replace(result, trace=header_trace)
    return result


def _parse(
    raw: bytes | None,
    upstreams: Container[str],
    header_traceparent: bytes | None,
    max_message_bytes: int,
) -> CallRequest | InvalidMessage:
    if raw is None:
        return InvalidMessage((FieldError("(message)", "empty value (tombstone)"),))
    if len(raw) > max_message_bytes:
        return InvalidMessage(
            (FieldError("(message)", f"{len(raw)} bytes, limit is {max_message_bytes}"),)
        )
    try:
        message = RequestMessage.model_validate_json(raw)
    except ValidationError as exc:
        request_id, trace = _salvage(raw)
        return InvalidMessage(_errors(exc), request_id, trace)
    except Exception as exc:  # defensive: totality matters more than the exact class
        return InvalidMessage((FieldError("(message)", f"undecodable: {type(exc).__name__}"),))

    trace_in = message.traceparent
    if trace_in is None and header_traceparent:
        trace_in = header_traceparent.decode("ascii", "replace")
    parent = parse_traceparent(trace_in) if trace_in else None
    trace = parent.child() if parent else new_trace()

    if message.upstream not in upstreams:
        return InvalidMessage(
            (FieldError("upstream", f"{message.upstream!r} is not a configured upstream"),),
            message.request_id,
            trace,
        )

    body_bytes: bytes | None = None
    content_type: str | None = None
    if message.body_b64 is not None:
        body_bytes = base64.b64decode(message.body_b64)
        content_type = "application/octet-stream"
    elif message.body is not None:
        import orjson

        body_bytes = orjson.dumps(message.body)
        content_type = "application/json"
    if content_type and any(k.lower() == "content-type" for k in message.headers):
        content_type = None

    return CallRequest(
        message=message,
        trace=trace,
        idempotency_key=message.idempotency_key or message.request_id,
        body_bytes=body_bytes,
        content_type=content_type,
    )


def json_schema() -> dict[str, Any]:
    schema = RequestMessage.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://netscope.dev/schema/request.v1.json"
    return schema
