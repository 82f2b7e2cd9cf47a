"""Property tests: ``parse_request`` is total and its two outcomes are well formed."""

from __future__ import annotations

import base64
import json
from datetime import UTC
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from netscope.contract.request import CallRequest, InvalidMessage, parse_request

UPSTREAMS = frozenset({"payments", "search"})
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_outcome(result: object) -> CallRequest | InvalidMessage:
    assert isinstance(result, CallRequest | InvalidMessage), type(result)
    if isinstance(result, InvalidMessage):
        assert len(result.errors) >= 1
        for error in result.errors:
            assert isinstance(error.field, str) and error.field
            assert isinstance(error.reason, str) and error.reason
        assert result.field == result.errors[0].field
        assert result.reason
    else:
        assert result.idempotency_key
        assert len(result.trace.trace_id) == 32 and len(result.trace.span_id) == 16
        assert (result.body_bytes is None) == (result.content_type is None) or (
            result.body_bytes is not None
            and any(k.lower() == "content-type" for k in result.message.headers)
        )
    return result


# ----------------------------------------------------------------------- arbitrary bytes


@FUZZ
@given(raw=st.binary(max_size=2048), header=st.none() | st.binary(max_size=80))
@example(raw=b'{"request_id":"r","upstream":"payments","method":"GET","path":"/","body":1e999}',
         header=None)  # fmt: skip
@example(raw=b'{"request_id":"r","upstream":"payments","method":"GET","path":"/","body":'
             b"18446744073709551616}", header=None)  # fmt: skip
@example(raw=b"[" * 5000, header=None)
@example(raw=b"\xef\xbb\xbf{}", header=b"\xff")
def test_any_bytes_give_a_result_never_an_exception(raw: bytes, header: bytes | None) -> None:
    check_outcome(
        parse_request(raw, upstreams=UPSTREAMS, header_traceparent=header, max_message_bytes=1024)
    )


# ----------------------------------------------------------------------- structured JSON

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**64, 2**64 - 1, -(2**63), -(2**63) - 1])  # the 64-bit edges
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)


def nested(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=12,
    )


# Any JSON value, including integers no 64-bit encoder can carry (invalid as a body).
json_values = nested(json_scalars)
# What a body may hold: integers within orjson's range.
body_values = nested(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.sampled_from([2**64 - 1, -(2**63)])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)

request_ids = st.from_regex(r"\A[\x21-\x7e]{1,40}\Z")
good_paths = st.from_regex(r"\A/[a-z0-9/_.-]{0,30}(\?[a-z0-9=&]{0,20})?\Z").filter(
    lambda p: ".." not in p.split("?")[0].split("/") and not p.startswith("//")
)
good_headers = st.dictionaries(
    st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z"), st.from_regex(r"\A[ -~]{0,30}\Z"), max_size=5
)
good_fields: dict[str, st.SearchStrategy[Any]] = {
    "request_id": request_ids,
    "idempotency_key": st.none() | request_ids,
    "traceparent": st.none()
    | st.builds(
        lambda t, s, f: f"00-{t}-{s}-{f}",
        st.from_regex(r"\A[0-9a-f]{32}\Z").filter(lambda v: v != "0" * 32),
        st.from_regex(r"\A[0-9a-f]{16}\Z").filter(lambda v: v != "0" * 16),
        st.sampled_from(["00", "01"]),
    ),
    "upstream": st.sampled_from(sorted(UPSTREAMS)),
    "method": st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    "path": good_paths,
    "headers": good_headers,
    "timeout_ms": st.none() | st.integers(min_value=1, max_value=600_000),
    "created_at": st.none() | st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
}
REQUIRED = ("request_id", "upstream", "method", "path")

bad_fields: dict[str, st.SearchStrategy[Any]] = {
    "request_id": st.sampled_from(["", "a b", "é", 5, None, ["x"]]),
    "idempotency_key": st.sampled_from(["", "a b", 3.5]),
    "traceparent": st.sampled_from(["", "00-x", f"ff-{'a' * 32}-{'b' * 16}-01", 1]),
    "upstream": st.sampled_from(["unknown", "Payments", "http://evil", "", 7]),
    "method": st.sampled_from(["get", "TRACE", "", None]),
    "path": st.sampled_from(
        ["http://evil/x", "//evil/x", "evil.com/x", "/a/../b", "/a#b", "/a b", "", 1, "/%2e%2e/"]
    ),
    "headers": st.sampled_from(
        [{"Host": "x"}, {"X-A": "a\r\nb"}, {"X-A": 1}, ["X-A"], {f"X-{i}": "v" for i in range(40)}]
    ),
    "body_b64": st.sampled_from(["!!", "AAA", 5]),
    "timeout_ms": st.sampled_from([0, -1, 600_001, "5", True, 1.5]),
    "schema_version": st.sampled_from([0, 2, "1", None]),
    "created_at": st.sampled_from(["yesterday", 12, ""]),
}


@st.composite
def valid_messages(draw: st.DrawFn, bodies: st.SearchStrategy[Any] = body_values) -> dict[str, Any]:
    message = {name: draw(good_fields[name]) for name in REQUIRED}
    for name in ("idempotency_key", "traceparent", "headers", "timeout_ms", "created_at"):
        if draw(st.booleans()):
            message[name] = draw(good_fields[name])
    body_mode = draw(st.sampled_from(["none", "body", "b64"]))
    if body_mode == "body":
        message["body"] = draw(bodies)
    elif body_mode == "b64":
        message["body_b64"] = base64.b64encode(draw(st.binary(max_size=64))).decode()
    return message


@st.composite
def mixed_messages(draw: st.DrawFn) -> Any:
    """A valid message with 0-3 mutations (bad value, missing field, unknown field, both
    bodies), or now and then any JSON value at all. Mutating a valid message keeps most
    examples one mistake away from valid, where validation bugs hide."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    # json_values: the body may hold integers beyond 64 bits, which must be rejected.
    message = draw(valid_messages(bodies=json_values))
    for _ in range(draw(st.integers(0, 3))):
        mutation = draw(st.sampled_from(["bad", "bad", "delete", "unknown", "both_bodies"]))
        if mutation == "bad":
            name = draw(st.sampled_from(sorted(bad_fields)))
            message[name] = draw(bad_fields[name])
        elif mutation == "delete" and message:
            del message[draw(st.sampled_from(sorted(message)))]
        elif mutation == "unknown":
            message[draw(st.text(min_size=1, max_size=10))] = draw(json_scalars)
        elif mutation == "both_bodies":
            message["body"] = draw(json_values)
            message["body_b64"] = "aGk="
    return message


@FUZZ
@given(message=mixed_messages())
def test_structured_json_gives_a_result_never_an_exception(message: Any) -> None:
    raw = json.dumps(message).encode()
    result = check_outcome(parse_request(raw, upstreams=UPSTREAMS))
    if isinstance(result, CallRequest):
        # Whatever passed really was a complete message.
        assert isinstance(message, dict)
        assert all(name in message for name in REQUIRED)
        assert result.request_id == message["request_id"]


@FUZZ
@given(message=valid_messages(), as_bytes=st.booleans())
def test_valid_generated_message_always_parses(message: dict[str, Any], as_bytes: bool) -> None:
    raw = json.dumps(message, ensure_ascii=as_bytes).encode()
    result = check_outcome(parse_request(raw, upstreams=UPSTREAMS))
    assert isinstance(result, CallRequest), result
    assert result.request_id == message["request_id"]
    assert result.upstream == message["upstream"]
    assert result.idempotency_key == (message.get("idempotency_key") or message["request_id"])
    if message.get("traceparent"):
        assert result.trace.trace_id == message["traceparent"][3:35]
    if "body_b64" in message:
        assert result.body_bytes == base64.b64decode(message["body_b64"])
    elif message.get("body") is not None:
        assert result.body_bytes is not None
        assert json.loads(result.body_bytes) == message["body"]
