"""Contract gaps the hostile-input run found, each pinned here (contract/request.py and the
audit record's Kafka key, audit/record.py).

- ``schema_version``: ``Literal[1]`` matched ``true``, ``1.0`` and ``1e0`` (equal to 1 in
  Python); the contract and the JSON Schema (``{"const": 1}``) accept only the integer.
- C1 control characters (U+0080-U+009F, NEL among them) passed the "no control characters"
  rule for paths and header values, which covered only C0 and DEL.
- A field path (the producer's own key names) was unbounded and became a dead-letter header.
- The audit record copied the whole Kafka key: 100 KB keys took a `netscope run` from 200 MB
  to 1.1 GB RSS (records wait in memory until durable). Keys are now cut at 1024 characters.
"""

from __future__ import annotations

import orjson
import pytest

from netscope.audit.record import KEY_MAX_CHARS, audit_key
from netscope.contract.request import (
    MAX_FIELD_PATH_CHARS,
    CallRequest,
    InvalidMessage,
    parse_request,
)

UPSTREAMS = frozenset({"payments"})
BASE = {"request_id": "r-1", "upstream": "payments", "method": "GET", "path": "/v1/x"}


def parse(raw: bytes) -> CallRequest | InvalidMessage:
    return parse_request(raw, upstreams=UPSTREAMS)


@pytest.mark.parametrize("literal", [b"true", b"1.0", b"1e0", b"false", b'"1"', b"null", b"2"])
def test_schema_version_is_the_integer_one_and_nothing_equal_to_it(literal: bytes) -> None:
    raw = orjson.dumps(BASE)[:-1] + b',"schema_version":' + literal + b"}"
    result = parse(raw)
    assert isinstance(result, InvalidMessage)
    assert result.reason == "schema_version: Input should be 1"


@pytest.mark.parametrize("raw", [orjson.dumps(BASE | {"schema_version": 1}), orjson.dumps(BASE)])
def test_schema_version_one_or_absent_is_accepted(raw: bytes) -> None:
    assert isinstance(parse(raw), CallRequest)


@pytest.mark.parametrize("char", ["\x80", "\x85", "\x9b", "\x9f"])
def test_c1_control_characters_are_control_characters(char: str) -> None:
    in_path = parse(orjson.dumps(BASE | {"path": f"/v1/x{char}y"}))
    assert isinstance(in_path, InvalidMessage) and in_path.field == "path"
    in_header = parse(orjson.dumps(BASE | {"headers": {"X-Note": f"a{char}b"}}))
    assert isinstance(in_header, InvalidMessage)
    assert in_header.reason == "headers: header 'X-Note' value contains control characters"


@pytest.mark.parametrize("text", ["caf\u00e9", "\u00a0", "a\u2028b", "\tv"])
def test_other_non_ascii_header_values_stay_legal(text: str) -> None:
    assert isinstance(parse(orjson.dumps(BASE | {"headers": {"X-Note": text}})), CallRequest)


def test_a_huge_unknown_key_gives_a_bounded_field_path() -> None:
    name = "n" * 300_000
    result = parse(orjson.dumps({name: 1} | BASE))
    assert isinstance(result, InvalidMessage)
    assert len(result.field) == MAX_FIELD_PATH_CHARS and result.field.endswith("...")
    assert len(result.reason) < 1000


def test_an_ordinary_kafka_key_is_audited_as_it_is() -> None:
    assert audit_key(b"cust-042") == "cust-042"
    assert audit_key(None) is None
    assert audit_key(b"\xff" + b"k" * (KEY_MAX_CHARS - 1)) == "\ufffd" + "k" * (KEY_MAX_CHARS - 1)


def test_a_huge_kafka_key_is_cut_and_says_how_long_it_was() -> None:
    cut = audit_key(b"k" * 100_000)
    assert cut == "k" * KEY_MAX_CHARS + "...(100000 bytes)"
    binary = audit_key(bytes(range(256)) * 400)
    assert binary is not None and binary.endswith("...(102400 bytes)")
    assert len(binary) <= KEY_MAX_CHARS + len("...(102400 bytes)")
