"""Message generation and loadgen config parsing, without a broker."""

from __future__ import annotations

import base64
import random
import re
import uuid

import orjson
import pytest

from netscope.contract.request import CallRequest, InvalidMessage, parse_request
from netscope.tools.loadgen import LoadgenConfig, _Generator, parse_mix
from netscope.tools.messages import (
    INVALID_KINDS,
    MAX_BODY_BYTES,
    SMALL_INVALID_KINDS,
    encode,
    make_invalid,
    make_request,
)

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}


def _assert_valid(doc: dict[str, object]) -> None:
    assert doc["schema_version"] == 1
    assert uuid.UUID(str(doc["request_id"])).version == 4
    assert isinstance(doc["idempotency_key"], str) and doc["idempotency_key"]
    assert TRACEPARENT.match(str(doc["traceparent"]))
    assert doc["method"] in METHODS
    path = str(doc["path"])
    assert path.startswith("/") and not path.startswith("//") and "://" not in path
    assert isinstance(doc["headers"], dict)
    assert not {"host", "connection", "transfer-encoding"} & {
        h.lower()
        for h in doc["headers"]  # type: ignore[union-attr]
    }
    assert not ("body" in doc and "body_b64" in doc)
    assert str(doc["created_at"]).endswith("Z")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_make_request_is_valid_json(method: str) -> None:
    rand = random.Random(1)
    doc = orjson.loads(encode(make_request("payments", method=method, rand=rand)))
    _assert_valid(doc)
    assert doc["upstream"] == "payments"
    assert doc["method"] == method
    assert doc["idempotency_key"] == doc["request_id"]
    assert ("body" in doc) == (method in {"POST", "PUT", "PATCH"})


def test_make_request_options() -> None:
    doc = make_request(
        "search", path="/q?x=1", rand=random.Random(2), idempotency_key="k", timeout_ms=2500
    )
    assert doc["path"] == "/q?x=1"
    assert doc["idempotency_key"] == "k"
    assert doc["timeout_ms"] == 2500


def test_make_request_is_reproducible_and_unique() -> None:
    a = [make_request("p", rand=random.Random(5)) for _ in range(2)]
    assert a[0]["request_id"] == a[1]["request_id"]
    rand = random.Random(5)
    ids = {make_request("p", rand=rand)["request_id"] for _ in range(500)}
    assert len(ids) == 500


def test_invalid_kinds_are_distinct_and_invalid() -> None:
    # Same seed for every kind, so any difference comes from the violation itself.
    produced = {kind: make_invalid(kind, random.Random(3)) for kind in INVALID_KINDS}
    assert len(set(produced.values())) == len(INVALID_KINDS)

    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(produced["garbage"])
    assert isinstance(orjson.loads(produced["json_array"]), list)

    docs = {k: orjson.loads(v) for k, v in produced.items() if k not in {"garbage", "json_array"}}
    assert "request_id" not in docs["missing_request_id"]
    assert docs["wrong_types"]["method"] == 5
    assert docs["path_with_scheme"]["path"].startswith("http://")
    assert docs["path_network_relative"]["path"].startswith("//")
    assert "Host" in docs["forbidden_header_host"]["headers"]
    assert "Connection" in docs["forbidden_header_connection"]["headers"]
    assert "Transfer-Encoding" in docs["forbidden_header_transfer_encoding"]["headers"]
    assert len(docs["oversize_body"]["body"]) > MAX_BODY_BYTES
    assert docs["unknown_schema_version"]["schema_version"] != 1
    both = docs["body_and_body_b64"]
    assert "body" in both and base64.b64decode(both["body_b64"])

    # Apart from its one violation, each is a well-formed request, so a validator that
    # rejects it is rejecting for the named reason.
    fixed = dict(docs["missing_request_id"], request_id=str(uuid.uuid4()))
    _assert_valid(fixed)
    _assert_valid(dict(docs["unknown_schema_version"], schema_version=1))


def test_make_invalid_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown invalid kind"):
        make_invalid("nope", random.Random())


def test_small_invalid_kinds_exclude_oversize() -> None:
    assert "oversize_body" not in SMALL_INVALID_KINDS
    assert set(SMALL_INVALID_KINDS) < set(INVALID_KINDS)


def test_parse_mix() -> None:
    assert parse_mix("payments=0.7,search=0.3") == {"payments": 0.7, "search": 0.3}
    assert parse_mix(" payments = 2 , search=1 ") == {"payments": 2.0, "search": 1.0}
    assert parse_mix("payments") == {"payments": 1.0}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty entry"),
        ("payments=0.7,", "empty entry"),
        ("=0.5", "missing upstream name"),
        ("payments=abc", "not a number"),
        ("payments=-1", ">= 0"),
        ("payments=nan", ">= 0"),
        ("payments=1,payments=2", "twice"),
        ("payments=0,search=0", "no positive weight"),
    ],
)
def test_parse_mix_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_mix(text)


def test_generator_mix_keys_and_invalid_share() -> None:
    cfg = LoadgenConfig(
        bootstrap="unused:9092",
        upstreams={"payments": 0.7, "search": 0.3},
        invalid_share=0.2,
        invalid_kinds=SMALL_INVALID_KINDS,
        key_cardinality=10,
        seed=42,
    )
    cfg.validate()
    gen = _Generator(cfg)
    metas = [gen.next() for _ in range(2000)]
    keys = {k for k, _, _ in metas}
    assert len(keys) == 10
    invalid = [m for _, _, m in metas if not m.valid]
    assert 0.15 < len(invalid) / len(metas) < 0.25
    assert {m.invalid_kind for m in invalid} == set(SMALL_INVALID_KINDS)
    valid = [(v, m) for _, v, m in metas if m.valid]
    payments = sum(m.upstream == "payments" for _, m in valid)
    assert 0.65 < payments / len(valid) < 0.75
    for value, meta in valid[:50]:
        doc = orjson.loads(value)
        _assert_valid(doc)
        assert doc["request_id"] == meta.request_id
        assert doc["traceparent"].split("-")[1] == meta.trace_id


def test_generator_is_reproducible() -> None:
    def values(seed: int) -> list[bytes]:
        gen = _Generator(LoadgenConfig(bootstrap="x", invalid_share=0.5, seed=seed))
        return [gen.next()[0] for _ in range(50)]

    assert values(1) == values(1)
    assert values(1) != values(2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_per_s": 0},
        {"invalid_share": 1.5},
        {"key_cardinality": 0},
        {"upstreams": {}},
        {"methods": {"GET": -1}},
        {"invalid_kinds": ("nope",)},
        {"count": -1},
    ],
)
def test_loadgen_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LoadgenConfig(bootstrap="x", **kwargs).validate()  # type: ignore[arg-type]


def test_contract_parser_agrees() -> None:
    """The ingest contract accepts every generated request and rejects every invalid kind."""
    upstreams = {"payments", "search"}
    rand = random.Random(11)
    for method in sorted(METHODS):
        raw = encode(make_request("search", method=method, rand=rand))
        assert isinstance(parse_request(raw, upstreams=upstreams), CallRequest), method
    for kind in INVALID_KINDS:
        result = parse_request(make_invalid(kind, rand), upstreams=upstreams)
        assert isinstance(result, InvalidMessage), kind
