"""Hostile shapes of the value as a whole: not JSON, not UTF-8, not an object, too deep,
too large, numbers JSON has no room for, duplicated keys."""

from __future__ import annotations

import random

import orjson

from netscope.tools.hostile.model import (
    SUCCESS,
    Hostile,
    HostileConfig,
    accepted,
    base,
    filler,
    nested,
    raw_json,
    register,
    rejected,
)

# -- not JSON, not UTF-8, not an object ---------------------------------------------------


@register("random_bytes")
def _random_bytes(rand: random.Random, cfg: HostileConfig) -> Hostile:
    return Hostile("random_bytes", rand.randbytes(rand.randrange(0, 2048)))


@register("invalid_utf8")
def _invalid_utf8(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    bad = rand.choice((b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"))
    field_name = rand.choice(("path", "upstream", "method"))
    raw = orjson.dumps(msg)
    marker = orjson.dumps(msg[field_name])
    return rejected("invalid_utf8", msg, raw.replace(marker, marker[:-1] + bad + b'"', 1))


@register("not_utf8_encoding")
def _not_utf8_encoding(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    encoding = rand.choice(("utf-16", "utf-32", "utf-8-sig"))  # BOMs included
    return rejected("not_utf8_encoding", msg, orjson.dumps(msg).decode().encode(encoding))


@register("not_an_object")
def _not_an_object(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    value = rand.choice((b"", b"null", b"1", b'"x"', b"true", b"[]", orjson.dumps([msg])))
    return rejected("not_an_object", msg, value)


@register("tombstone")
def _tombstone(rand: random.Random, cfg: HostileConfig) -> Hostile:
    return Hostile("tombstone", None, key=b"tombstone-%d" % rand.randrange(1000))


@register("keyless_tombstone")
def _keyless_tombstone(rand: random.Random, cfg: HostileConfig) -> Hostile:
    """Neither key nor value: legal in Kafka, refused by aiokafka's producer (and, until
    issue 15, retried forever by NetScope's dead-letter producer)."""
    return Hostile("keyless_tombstone", None, key=None, hand_built=True)


@register("broken_json")
def _broken_json(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    raw = orjson.dumps(msg)
    value = rand.choice(
        (
            raw[: rand.randrange(1, len(raw) - 1)],  # truncated
            raw + b" x",
            raw + raw,  # two objects
            raw[:-1] + b",}",  # trailing comma
            raw.replace(b'"', b"'"),
            b"/* c */" + raw,
            raw.replace(b'"request_id"', b"request_id", 1),  # unquoted key
        )
    )
    return rejected("broken_json", msg, value)


@register("deep_nesting")
def _deep_nesting(rand: random.Random, cfg: HostileConfig) -> Hostile:
    depth = rand.choice((256, 1000, 20_000, 100_000))
    if rand.random() < 0.5:
        return Hostile("deep_nesting", nested(depth, rand).encode())
    msg = base(rand, cfg, "POST")
    del msg["body"]
    return rejected("deep_nesting", msg, raw_json(msg, f'"body":{nested(depth, rand)}'))


# -- huge ---------------------------------------------------------------------------------


@register(
    "over_max_message_bytes",
    huge=True,
    weight=0.05,
    possible=lambda cfg: cfg.max_message_bytes + 16384 < cfg.broker_max_value_bytes,
)
def _over_max_message_bytes(rand: random.Random, cfg: HostileConfig) -> Hostile:
    """Past pipeline.max_message_bytes, within what the broker takes (and its copy too)."""
    msg = base(rand, cfg, "POST")
    top = min(cfg.broker_max_value_bytes - 8192, 4 * cfg.max_message_bytes)
    size = rand.randrange(cfg.max_message_bytes + 1, top)
    msg["body"] = filler(size - len(orjson.dumps(msg)))
    return rejected("over_max_message_bytes", msg)


@register(
    "over_max_request_bytes",
    huge=True,
    weight=0.05,
    possible=lambda cfg: cfg.max_request_bytes + 4096 < cfg.max_message_bytes,
)
def _over_max_request_bytes(rand: random.Random, cfg: HostileConfig) -> Hostile:
    """Within the message limit, but the body is larger than the upstream takes."""
    msg = base(rand, cfg, "POST")
    envelope = len(orjson.dumps(msg)) + 64
    room = cfg.max_message_bytes - envelope
    msg["body"] = filler(rand.randrange(cfg.max_request_bytes + 1, room))
    return rejected("over_max_request_bytes", msg)


@register("dead_letter_too_large", huge=True, weight=0.01)
def _dead_letter_too_large(rand: random.Random, cfg: HostileConfig) -> Hostile:
    """A value the broker takes whose dead-letter copy (ours added) it cannot take."""
    size = cfg.broker_max_value_bytes - 32
    return Hostile("dead_letter_too_large", b"{" + b" " * (size - 1), key=None, dlq_omitted=True)


@register("big_body_accepted", huge=True, weight=0.05)
def _big_body_accepted(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg, "PUT")
    room = min(cfg.max_request_bytes, cfg.max_message_bytes - len(orjson.dumps(msg)) - 64)
    msg["body"] = filler(room - 64)
    return accepted("big_body_accepted", msg)


# -- JSON values JSON has no room for -----------------------------------------------------


@register("nan_infinity")
def _nan_infinity(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg, "POST")
    del msg["body"]
    special = rand.choice(("NaN", "Infinity", "-Infinity", "1e999", "-1e999"))
    body = rand.choice((special, f"[1,{special}]", f'{{"amount":{special}}}'))
    return rejected("nan_infinity", msg, raw_json(msg, f'"body":{body}'))


@register("big_integer")
def _big_integer(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg, "POST")
    del msg["body"]
    number = rand.choice((str(1 << 64), str(-(1 << 63) - 1), "1" + "0" * 400))
    return rejected("big_integer", msg, raw_json(msg, f'"body":{{"amount":{number}}}'))


@register("duplicate_keys_last_invalid")
def _duplicate_keys_last_invalid(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    name, bad = rand.choice(
        (
            ("method", '"TRACE"'),
            ("path", '"//' + cfg.canary + '/x"'),
            ("upstream", '"http://169.254.169.254"'),
            ("headers", '{"Host":"169.254.169.254"}'),
            ("schema_version", "2"),
        )
    )
    return rejected("duplicate_keys_last_invalid", msg, raw_json(msg, f'"{name}":{bad}'))


@register("duplicate_keys_last_valid")
def _duplicate_keys_last_valid(rand: random.Random, cfg: HostileConfig) -> Hostile:
    """The contract says the last of duplicated keys wins: a valid last one is called."""
    msg = base(rand, cfg, "GET")
    raw = orjson.dumps(msg)[1:]  # the valid members come last
    first = rand.choice(
        ('"method":"TRACE"', '"path":"http://169.254.169.254/"', '"request_id":"a b"')
    )
    value = b"{" + first.encode() + b"," + raw
    return Hostile(
        "duplicate_keys_last_valid", value, valid=True, request_id=msg["request_id"],
        outcomes=SUCCESS,
    )  # fmt: skip
