"""The request message contract: what parses, what is rejected, and with which field and reason."""

from __future__ import annotations

import base64
import json
from importlib import resources
from typing import Any

import jsonschema
import orjson
import pytest

from netscope.contract.records import (
    DLQ_FIELD,
    DLQ_REASON,
    DLQ_SCHEMA,
    DLQ_SOURCE,
    Attempt,
    AuditRecord,
    KafkaPosition,
    Outcome,
    dead_letter_headers,
    record_from_json,
)
from netscope.contract.request import (
    MAX_HEADERS,
    CallRequest,
    InvalidMessage,
    json_schema,
    parse_request,
)

UPSTREAMS = frozenset({"payments", "search"})
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
OTHER_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def minimal(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "request_id": "req-1",
        "upstream": "payments",
        "method": "POST",
        "path": "/v1/charges?currency=EUR",
    }
    message.update(overrides)
    return message


def parse(message: dict[str, Any] | bytes | None, **kwargs: Any) -> CallRequest | InvalidMessage:
    raw = message if message is None or isinstance(message, bytes) else json.dumps(message).encode()
    kwargs.setdefault("upstreams", UPSTREAMS)
    return parse_request(raw, **kwargs)


def ok(message: dict[str, Any] | bytes, **kwargs: Any) -> CallRequest:
    result = parse(message, **kwargs)
    assert isinstance(result, CallRequest), result
    return result


def invalid(message: dict[str, Any] | bytes | None, **kwargs: Any) -> InvalidMessage:
    result = parse(message, **kwargs)
    assert isinstance(result, InvalidMessage), result
    assert result.errors, "an InvalidMessage always carries at least one error"
    return result


# --------------------------------------------------------------------------- valid messages


def test_minimal_message_applies_defaults() -> None:
    req = ok(minimal())
    assert req.request_id == "req-1"
    assert req.upstream == "payments"
    assert req.message.schema_version == 1
    assert req.message.method == "POST"
    assert req.message.path == "/v1/charges?currency=EUR"
    assert req.message.headers == {}
    assert req.message.timeout_ms is None
    assert req.message.created_at is None
    assert req.body_bytes is None
    assert req.content_type is None


def test_idempotency_key_defaults_to_request_id() -> None:
    assert ok(minimal()).idempotency_key == "req-1"
    assert ok(minimal(idempotency_key="charge-42")).idempotency_key == "charge-42"


def test_traceparent_field_continues_the_trace_in_a_child_span() -> None:
    req = ok(minimal(traceparent=TRACEPARENT))
    assert req.trace.trace_id == TRACE_ID
    assert req.trace.span_id != PARENT_SPAN
    assert len(req.trace.span_id) == 16
    assert req.trace.flags == "01"
    assert req.trace.header == f"00-{TRACE_ID}-{req.trace.span_id}-01"


def test_traceparent_from_kafka_header_when_field_absent() -> None:
    req = ok(minimal(), header_traceparent=TRACEPARENT.encode())
    assert req.trace.trace_id == TRACE_ID
    assert req.trace.span_id != PARENT_SPAN


def test_traceparent_field_wins_over_kafka_header() -> None:
    req = ok(minimal(traceparent=TRACEPARENT), header_traceparent=OTHER_TRACEPARENT.encode())
    assert req.trace.trace_id == TRACE_ID


@pytest.mark.parametrize("header", [None, b"", b"not-a-traceparent", b"\xff\xfe"])
def test_new_trace_when_no_usable_traceparent(header: bytes | None) -> None:
    first = ok(minimal(), header_traceparent=header)
    second = ok(minimal(), header_traceparent=header)
    for req in (first, second):
        assert len(req.trace.trace_id) == 32
        assert req.trace.trace_id != "0" * 32
        assert len(req.trace.span_id) == 16
    assert first.trace.trace_id != second.trace.trace_id


def test_json_body_becomes_compact_json_bytes() -> None:
    body = {"amount": 1250, "currency": "EUR", "tags": ["a", "é"], "ok": True, "none": None}
    req = ok(minimal(body=body))
    assert req.body_bytes is not None
    assert orjson.loads(req.body_bytes) == body
    assert req.content_type == "application/json"


@pytest.mark.parametrize(("body", "raw"), [(0, b"0"), (False, b"false"), ("", b'""'), ([], b"[]")])
def test_falsy_json_bodies_are_still_bodies(body: Any, raw: bytes) -> None:
    req = ok(minimal(body=body))
    assert req.body_bytes == raw
    assert req.content_type == "application/json"


def test_explicit_null_body_means_no_body() -> None:
    req = ok(minimal(body=None, body_b64=None))
    assert req.body_bytes is None
    assert req.content_type is None


def test_body_b64_is_decoded_to_raw_bytes() -> None:
    raw = bytes(range(256))
    req = ok(minimal(body_b64=base64.b64encode(raw).decode()))
    assert req.body_bytes == raw
    assert req.content_type == "application/octet-stream"


def test_caller_content_type_header_is_kept() -> None:
    req = ok(minimal(body={"a": 1}, headers={"Content-Type": "application/merge-patch+json"}))
    assert req.body_bytes == b'{"a":1}'
    assert req.content_type is None  # NetScope does not add a second Content-Type
    assert req.message.headers == {"Content-Type": "application/merge-patch+json"}


def test_full_message_round_trips() -> None:
    req = ok(
        minimal(
            schema_version=1,
            idempotency_key="idem-1",
            traceparent=TRACEPARENT,
            method="PUT",
            headers={"Accept": "application/json", "X-Tenant": "acme"},
            body={"x": [1, 2.5, "s"]},
            timeout_ms=2500,
            created_at="2024-05-01T12:00:00Z",
        )
    )
    assert req.message.headers["X-Tenant"] == "acme"
    assert req.message.timeout_ms == 2500
    assert req.message.created_at is not None
    assert req.message.created_at.year == 2024


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_every_method_is_accepted(method: str) -> None:
    assert ok(minimal(method=method)).message.method == method


@pytest.mark.parametrize("path", ["/", "/a/b", "/a/b/", "/q?x=1&y=..", "/a/.../b", "/%20x", "/a:b"])
def test_unusual_but_safe_paths_are_accepted(path: str) -> None:
    assert ok(minimal(path=path)).message.path == path


def test_message_at_exactly_the_size_limit_is_accepted() -> None:
    raw = json.dumps(minimal()).encode()
    assert isinstance(parse(raw, max_message_bytes=len(raw)), CallRequest)


# --------------------------------------------------------------------------- invalid messages


def error_for(result: InvalidMessage, field: str) -> str:
    reasons = [e.reason for e in result.errors if e.field == field]
    assert reasons, f"no error on {field!r}: {result.errors}"
    return reasons[0]


@pytest.mark.parametrize("raw", [b"not json", b"{", b"", b"\xff\xfe", b'{"a":1} trailing'])
def test_non_json_is_rejected_at_message_level(raw: bytes) -> None:
    result = invalid(raw)
    assert result.field == "(message)"
    assert "Invalid JSON" in result.errors[0].reason


@pytest.mark.parametrize("raw", [b"[]", b"[1]", b'"s"', b"42", b"null", b"true"])
def test_non_object_json_is_rejected(raw: bytes) -> None:
    result = invalid(raw)
    assert result.field == "(message)"
    assert "object" in result.errors[0].reason


def test_tombstone_is_rejected() -> None:
    result = invalid(None)
    assert result.field == "(message)"
    assert "tombstone" in result.reason


def test_missing_fields_are_each_reported() -> None:
    result = invalid({"upstream": "payments"})
    assert {e.field for e in result.errors} == {"request_id", "method", "path"}
    assert all(e.reason == "required field is missing" for e in result.errors)
    assert result.reason.startswith("request_id: required field is missing")


@pytest.mark.parametrize(
    ("field", "value", "reason_part"),
    [
        ("request_id", 5, "valid string"),
        ("request_id", "", "printable ASCII"),
        ("request_id", "has space", "printable ASCII"),
        ("request_id", "x" * 257, "printable ASCII"),
        ("idempotency_key", "é", "printable ASCII"),
        ("method", "get", "'GET'"),
        ("method", "TRACE", "'GET'"),
        ("upstream", ["payments"], "valid string"),
        ("upstream", "Payments", "pattern"),
        ("path", 1, "valid string"),
        ("timeout_ms", "5000", "valid integer"),
        ("timeout_ms", True, "valid integer"),
        ("timeout_ms", 1.5, "valid integer"),
        ("timeout_ms", 0, "greater than or equal to 1"),
        ("timeout_ms", 600_001, "less than or equal to 600000"),
        ("created_at", "yesterday", "datetime"),
        ("created_at", 1_714_560_000, "datetime"),
        ("headers", ["X-A", "1"], "object"),
        ("traceparent", "garbage", "W3C traceparent"),
        ("traceparent", 7, "valid string"),
        ("body_b64", 12, "valid string"),
        ("schema_version", 2, "1"),
        ("schema_version", "1", "1"),
    ],
)
def test_wrong_values_name_their_field(field: str, value: Any, reason_part: str) -> None:
    result = invalid(minimal(**{field: value}))
    assert [e.field for e in result.errors] == [field]
    assert reason_part in result.errors[0].reason


def test_header_value_of_wrong_type_names_the_header() -> None:
    result = invalid(minimal(headers={"X-Count": 3}))
    assert result.field == "headers.X-Count"
    assert "valid string" in result.errors[0].reason


def test_unknown_field_is_rejected() -> None:
    result = invalid(minimal(url="http://evil/x"))
    assert result.field == "url"
    assert result.errors[0].reason == "unknown field"


def test_unknown_schema_version_is_rejected() -> None:
    result = invalid(minimal(schema_version=2))
    assert result.field == "schema_version"
    assert result.errors[0].reason == "Input should be 1"


def test_oversize_message_is_rejected_before_parsing() -> None:
    raw = json.dumps(minimal(body="x" * 5000)).encode()
    result = invalid(raw, max_message_bytes=1024)
    assert result.field == "(message)"
    assert result.errors[0].reason == f"{len(raw)} bytes, limit is 1024"
    # Not parsed at all, so nothing is salvaged from it.
    assert result.request_id is None


@pytest.mark.parametrize(
    "name",
    ["Host", "host", "Connection", "Transfer-Encoding", "traceparent", "Traceparent",
     "Content-Length", "Idempotency-Key", "Upgrade", "TE"],
)  # fmt: skip
def test_forbidden_headers_are_rejected(name: str) -> None:
    result = invalid(minimal(headers={"X-Ok": "1", name: "x"}))
    assert result.field == "headers"
    assert f"header {name!r} is not allowed" in result.errors[0].reason


def test_too_many_headers() -> None:
    headers = {f"X-H{i}": "v" for i in range(MAX_HEADERS + 1)}
    result = invalid(minimal(headers=headers))
    assert result.field == "headers"
    assert result.errors[0].reason == f"{MAX_HEADERS + 1} headers, at most {MAX_HEADERS}"
    assert isinstance(
        parse(minimal(headers=dict(list(headers.items())[:MAX_HEADERS]))), CallRequest
    )


def test_headers_total_size_is_bounded() -> None:
    result = invalid(minimal(headers={"X-Big": "v" * 9000}))
    assert result.field == "headers"
    assert "at most 8192" in result.errors[0].reason


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "a\x7fb"])
def test_header_value_with_control_characters_is_rejected(value: str) -> None:
    result = invalid(minimal(headers={"X-Note": value}))
    assert result.field == "headers"
    assert result.errors[0].reason == "header 'X-Note' value contains control characters"


@pytest.mark.parametrize("name", ["Bad Name", "X:Y", "", "X\r\nY", "é"])
def test_invalid_header_names_are_rejected(name: str) -> None:
    result = invalid(minimal(headers={name: "v"}))
    assert result.field == "headers"
    assert "is not a valid header name" in result.errors[0].reason


@pytest.mark.parametrize(
    "path",
    [
        "http://evil/x",
        "https://evil.com/x",
        "//evil/x",
        "evil.com/x",
        "",
        "x",
        "?a=1",
        "\\\\evil/x",
    ],
)
def test_path_with_scheme_or_host_is_rejected(path: str) -> None:
    result = invalid(minimal(path=path))
    assert result.field == "path"
    assert "never a URL or a host" in result.errors[0].reason


@pytest.mark.parametrize(
    "path",
    ["/..", "/a/../b", "/a/..", "/../etc/passwd", "/a/%2e%2e/admin", "/a/%2E%2e", "/a%2f..%2fb"],
)
def test_path_with_dot_dot_segment_is_rejected(path: str) -> None:
    result = invalid(minimal(path=path))
    assert result.field == "path"
    assert result.errors[0].reason == "must not contain '..' segments"


@pytest.mark.parametrize("path", ["/a#frag", "/a b", "/a\\b", "/a\tb", "/a\nb"])
def test_path_with_fragment_space_or_control_is_rejected(path: str) -> None:
    result = invalid(minimal(path=path))
    assert result.field == "path"
    assert result.errors[0].reason == "must not contain spaces, control characters, '\\' or '#'"


def test_overlong_path_is_rejected() -> None:
    result = invalid(minimal(path="/" + "a" * 2048))
    assert result.field == "path"
    assert "longer than 2048" in result.errors[0].reason


def test_body_and_body_b64_are_exclusive() -> None:
    result = invalid(minimal(body={"a": 1}, body_b64="AA=="))
    assert result.field == "(message)"
    assert result.errors[0].reason == "body and body_b64 are exclusive"


@pytest.mark.parametrize("value", ["!!!", "AAA", "A", "aGk=\n", "aGk"])
def test_bad_base64_is_rejected(value: str) -> None:
    result = invalid(minimal(body_b64=value))
    assert result.field == "body_b64"
    assert result.errors[0].reason == "not valid base64"


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        (b"NaN", "NaN and Infinity are not JSON"),
        (b"Infinity", "NaN and Infinity are not JSON"),
        (b"[1, -Infinity]", "NaN and Infinity are not JSON"),
        (b"1e999", "NaN and Infinity are not JSON"),
        (b'{"n": 18446744073709551616}', "integer outside the 64-bit range"),
        (b"-9223372036854775809", "integer outside the 64-bit range"),
    ],
)
def test_body_values_json_cannot_carry_are_rejected(literal: bytes, reason: str) -> None:
    raw = json.dumps(minimal(body=0)).encode().replace(b'"body": 0', b'"body": ' + literal)
    result = invalid(raw)
    assert result.field == "body"
    assert result.errors[0].reason == reason


def test_64_bit_limits_are_still_accepted() -> None:
    req = ok(minimal(body=[18446744073709551615, -9223372036854775808, 1.5e308]))
    assert req.body_bytes is not None
    assert orjson.loads(req.body_bytes) == [18446744073709551615, -9223372036854775808, 1.5e308]


def test_unknown_upstream_is_rejected_but_keeps_correlation() -> None:
    result = invalid(minimal(upstream="billing", traceparent=TRACEPARENT))
    assert result.field == "upstream"
    assert result.errors[0].reason == "'billing' is not a configured upstream"
    assert result.request_id == "req-1"
    assert result.trace is not None and result.trace.trace_id == TRACE_ID
    assert isinstance(parse(minimal(upstream="billing"), upstreams={"billing"}), CallRequest)


def test_invalid_message_salvages_request_id_and_trace() -> None:
    result = invalid(minimal(method="BREW", traceparent=TRACEPARENT))
    assert result.request_id == "req-1"
    assert result.trace is not None and result.trace.trace_id == TRACE_ID


def test_salvage_ignores_insane_request_id() -> None:
    result = invalid(minimal(request_id="bad id", method="BREW"))
    assert result.request_id is None
    assert {e.field for e in result.errors} == {"request_id", "method"}


def test_several_errors_are_all_reported() -> None:
    result = invalid(minimal(method="get", path="http://x/", extra=1))
    assert {e.field for e in result.errors} == {"method", "path", "extra"}
    assert result.reason.count("; ") == 2


# --------------------------------------------------------------------------- JSON Schema


def shipped_schema_text() -> str:
    return (
        resources.files("netscope.contract")
        .joinpath("schema/request.v1.json")
        .read_text(encoding="utf-8")
    )


def test_shipped_schema_is_the_generated_schema() -> None:
    generated = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    assert shipped_schema_text() == generated, (
        "schema/request.v1.json is stale: regenerate it from "
        "netscope.contract.request.json_schema()"
    )


def test_shipped_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(shipped_schema_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


FULL_EXAMPLE: dict[str, Any] = minimal(
    schema_version=1,
    idempotency_key="idem-1",
    traceparent=TRACEPARENT,
    headers={"Accept": "application/json"},
    body={"amount": 1250},
    timeout_ms=2000,
    created_at="2024-05-01T12:00:00Z",
)


@pytest.mark.parametrize("example", [minimal(), FULL_EXAMPLE, minimal(body_b64="aGk=")])
def test_schema_accepts_valid_examples(example: dict[str, Any]) -> None:
    jsonschema.validate(example, json.loads(shipped_schema_text()), jsonschema.Draft202012Validator)
    assert isinstance(parse(example), CallRequest)


@pytest.mark.parametrize(
    "example",
    [
        {"upstream": "payments", "method": "GET", "path": "/"},  # no request_id
        minimal(method="get"),
        minimal(upstream="Payments"),
        minimal(timeout_ms="5"),
        minimal(timeout_ms=0),
        minimal(schema_version=2),
        minimal(headers={"X-A": 1}),
        minimal(unknown=True),
    ],
)
def test_schema_and_parser_both_reject_invalid_examples(example: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            example, json.loads(shipped_schema_text()), jsonschema.Draft202012Validator
        )
    assert isinstance(parse(example), InvalidMessage)


# --------------------------------------------------------------------------- records


def test_audit_record_serialises_every_documented_field() -> None:
    record = AuditRecord(
        request_id="req-1",
        idempotency_key="req-1",
        trace_id=TRACE_ID,
        span_id=PARENT_SPAN,
        upstream="payments",
        method="POST",
        path="/v1/charges",
        kafka=KafkaPosition("netscope.requests", 3, 42, 1_714_560_000_000, key="k"),
        outcome=Outcome.HTTP_ERROR,
        received_at=1.0,
        completed_at=2.0,
        latency_s=1.0,
        status=503,
        attempts=[Attempt(1, 1.0, 0.4, status=503, retry_delay_s=0.1), Attempt(2, 1.5, 0.5, 503)],
    )
    data = record_from_json(record.to_json())
    assert data["outcome"] == "http_error"
    assert data["schema_version"] == 1
    assert data["kafka"] == {
        "topic": "netscope.requests",
        "partition": 3,
        "offset": 42,
        "timestamp_ms": 1_714_560_000_000,
        "key": "k",
    }
    assert data["attempts"][0] == {
        "n": 1,
        "started_at": 1.0,
        "duration_s": 0.4,
        "status": 503,
        "error_class": None,
        "retry_delay_s": 0.1,
    }
    assert set(data) == {
        "request_id", "idempotency_key", "trace_id", "span_id", "upstream", "method", "path",
        "kafka", "outcome", "received_at", "completed_at", "latency_s", "queued_s", "status",
        "error_class", "error_detail", "attempts", "created_at", "instance_id",
        "replay_run_id", "duplicate_of", "attempt_after_lease_expiry", "outcome_from_ledger",
        "record_type", "schema_version",
    }  # fmt: skip
    assert record.event_time_ms == 1_714_560_000_000


def test_outcome_values_are_stable() -> None:
    assert {o.value for o in Outcome} == {
        "success", "http_error", "timeout_connect", "timeout_read", "deadline_exceeded",
        "connect_error", "protocol_error", "rejected_circuit_open", "rejected_rate_limited",
        "invalid", "duplicate_skipped", "duplicate_in_progress", "ledger_unavailable",
    }  # fmt: skip


def test_dead_letter_headers() -> None:
    headers = dict(dead_letter_headers("x" * 2000, "headers", "netscope.requests", 2, 17))
    assert set(headers) == {DLQ_REASON, DLQ_FIELD, DLQ_SOURCE, DLQ_SCHEMA}
    assert headers["netscope-dlq-reason"] == b"x" * 1000  # truncated
    assert headers["netscope-dlq-field"] == b"headers"
    assert headers["netscope-dlq-source"] == b"netscope.requests/2/17"
    assert headers["netscope-dlq-schema-version"] == b"1"


def test_invalid_message_keeps_the_kafka_header_trace() -> None:
    header = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    result = parse_request(b"not json", upstreams={"payments"}, header_traceparent=header)
    assert isinstance(result, InvalidMessage)
    assert result.trace is not None
    assert result.trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_an_audit_line_costs_its_length_not_a_json_encoder_buffer() -> None:
    """Thousands of lines wait in memory for their batch: each must hold only its own bytes."""
    import time
    import tracemalloc

    from netscope.contract.records import AuditRecord, KafkaPosition, Outcome

    record = AuditRecord(
        request_id="r-1", idempotency_key="r-1", trace_id="0" * 32, span_id="0" * 16,
        upstream="payments", method="GET", path="/v1/items",
        kafka=KafkaPosition(topic="t", partition=0, offset=1, timestamp_ms=0, key="k"),
        outcome=Outcome.SUCCESS, received_at=time.time(), completed_at=time.time(),
        latency_s=0.01,
    )
    tracemalloc.start()
    try:
        lines = [record.to_json() for _ in range(200)]
        traced, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert traced < 200 * (len(lines[0]) + 200), traced / 200
