"""The hostile-message model: what a shape is, what NetScope must do with it, the registry.

Kept apart from the shapes (``shapes_*.py``) so that each of those reads as a list of
attacks, and from the stream (``stream.py``) that mixes them into valid traffic.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from netscope.tools.messages import make_request

FIXED_CREATED_AT = "2026-01-01T00:00:00Z"  # not the clock: a seed reproduces every byte
SUCCESS = frozenset({"success"})


@dataclass(frozen=True)
class HostileConfig:
    """What the shapes are aimed at: NetScope's limits, the broker's, a host never to call."""

    upstreams: tuple[str, ...] = ("payments", "search")
    max_message_bytes: int = 1 << 20  # NetScope's pipeline.max_message_bytes
    max_request_bytes: int = 1 << 20  # the upstreams' max_request_bytes
    # Largest record value the broker takes (no key, no headers): noida refuses a record
    # batch over 1 MiB (1,048,516-byte value measured), tansu has no limit of its own.
    broker_max_value_bytes: int = 1_048_516
    canary: str = "127.0.0.1:9"  # host:port the SSRF shapes aim at: it must see no request
    # Shapes aiokafka's producer refuses to write (header keys that are not UTF-8, a record
    # with neither key nor value), which other clients write: batches built by hand.
    hand_built: bool = True
    huge: bool = True  # kinds of hundreds of KB to MB: drawn rarely, they move the most bytes


@dataclass(frozen=True, slots=True)
class Hostile:
    kind: str
    value: bytes | None
    key: bytes | None = b"hostile"
    headers: tuple[tuple[str, bytes | None], ...] = ()
    valid: bool = False
    # valid: the Idempotency-Key the upstream sees; invalid: an id it carries that the
    # upstream must never see (None when the message carries none that could be read).
    request_id: str | None = None
    outcomes: frozenset[str] = field(default_factory=frozenset)
    dlq_omitted: bool = False  # its dead letter cannot carry the original: too large
    hand_built: bool = False  # needs a record batch built by hand (see HostileConfig)


class RawHeaderKey(str):
    """A header key whose wire bytes are not UTF-8. aiokafka's pure-Python batch builder
    calls ``key.encode("utf-8")``, which here returns the raw bytes (kafka.py)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawHeaderKey:
        obj = super().__new__(cls, raw.decode("latin-1"))
        obj.raw = raw
        return obj

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


Maker = Callable[[random.Random, HostileConfig], Hostile]
Possible = Callable[[HostileConfig], bool]
_HAND_BUILT = frozenset({"header_key_not_utf8", "keyless_tombstone"})


@dataclass(frozen=True)
class _Kind:
    maker: Maker
    huge: bool
    weight: float
    possible: Possible


KINDS: dict[str, _Kind] = {}


def register(
    name: str, *, huge: bool = False, weight: float = 1.0, possible: Possible = lambda cfg: True
) -> Callable[[Maker], Maker]:
    """Register a shape (a decorator). ``weight`` is relative to the ordinary ones (1.0);
    ``possible`` says whether the limits of a configuration leave room for it."""

    def register(maker: Maker) -> Maker:
        KINDS[name] = _Kind(maker, huge, weight, possible)
        return maker

    return register


def kinds(cfg: HostileConfig) -> tuple[str, ...]:
    """The kinds this configuration draws (huge and hand-built ones can be left out)."""
    return tuple(
        name
        for name, kind in KINDS.items()
        if (cfg.huge or not kind.huge)
        and (cfg.hand_built or name not in _HAND_BUILT)
        and kind.possible(cfg)
    )


def make(kind: str, rand: random.Random, cfg: HostileConfig) -> Hostile:
    return KINDS[kind].maker(rand, cfg)


# -- building blocks ----------------------------------------------------------------------


def base(rand: random.Random, cfg: HostileConfig, method: str | None = None) -> dict[str, Any]:
    """A valid request: the envelope every targeted shape breaks in one place."""
    upstream = rand.choice(cfg.upstreams)
    msg = make_request(upstream, method=method or rand.choice(("GET", "POST")), rand=rand)
    msg["created_at"] = FIXED_CREATED_AT
    return msg


def rejected(kind: str, msg: dict[str, Any], value: bytes | None = None) -> Hostile:
    """``msg`` rejected; ``value`` its bytes when they are not ``orjson.dumps(msg)``. Its
    request_id (when it has one) is recorded: the upstream must never see it."""
    rid = msg.get("request_id")
    return Hostile(
        kind,
        orjson.dumps(msg) if value is None else value,
        request_id=rid if isinstance(rid, str) else None,
    )


def accepted(kind: str, msg: dict[str, Any], outcomes: frozenset[str] = SUCCESS) -> Hostile:
    return Hostile(
        kind, orjson.dumps(msg), valid=True, request_id=msg["request_id"], outcomes=outcomes
    )


def raw_json(msg: dict[str, Any], *extra: str) -> bytes:
    """``msg`` as JSON with raw ``"key": value`` members appended (duplicates, NaN...)."""
    body = orjson.dumps(msg)[:-1]
    return body + b"".join(b"," + part.encode() for part in extra) + b"}"


def nested(depth: int, rand: random.Random) -> str:
    if rand.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def filler(n: int) -> str:
    return "x" * max(0, n)
