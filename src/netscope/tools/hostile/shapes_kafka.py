"""Hostile shapes of the Kafka record around a message: keys and headers."""

from __future__ import annotations

import random
from dataclasses import replace

from netscope.tools.hostile.model import (
    Hostile,
    HostileConfig,
    RawHeaderKey,
    accepted,
    base,
    register,
    rejected,
)
from netscope.tools.messages import new_traceparent

# -- Kafka keys and headers -----------------------------------------------------------------


@register("kafka_headers_garbage")
def _kafka_headers_garbage(rand: random.Random, cfg: HostileConfig) -> Hostile:
    """Valid messages under binary, null, many and huge Kafka headers: NetScope reads only
    ``traceparent`` there, so they are called like any other."""
    headers = rand.choice(
        (
            tuple((f"h{i}", rand.randbytes(8)) for i in range(1000)),
            (("bin", rand.randbytes(64)), ("null", None), ("", b""), ("\u00e9\u2028", b"x")),
            (("huge", rand.randbytes(64 * 1024)),),
            (("netscope-dlq-reason", b"forged"), ("netscope-dlq-source", b"x/0/0")),
        )
    )
    return replace(accepted("kafka_headers_garbage", base(rand, cfg)), headers=headers)


@register("header_key_not_utf8")
def _header_key_not_utf8(rand: random.Random, cfg: HostileConfig) -> Hostile:
    """A header key that is not UTF-8 (librdkafka or Go producers can write one). Before
    ingest/records.py it stopped the whole partition; half of them carry an invalid value."""
    raw = rand.choice((b"\xff\xfe", b"\xc3", b"k\x80ey", b"\xed\xa0\x80"))
    headers = ((RawHeaderKey(raw), b"v"), ("traceparent", new_traceparent(rand).encode()))
    if rand.random() < 0.5:
        hostile = accepted("header_key_not_utf8", base(rand, cfg))
    else:
        msg = base(rand, cfg)
        msg["method"] = "TRACE"
        hostile = rejected("header_key_not_utf8", msg)
    return replace(hostile, headers=headers, hand_built=True)


@register("oversized_kafka_key")
def _oversized_kafka_key(rand: random.Random, cfg: HostileConfig) -> Hostile:
    key = rand.randbytes(rand.choice((1024, 16 * 1024, 100 * 1024)))
    if rand.random() < 0.5:
        hostile = accepted("oversized_kafka_key", base(rand, cfg))
    else:
        hostile = rejected("oversized_kafka_key", {}, rand.randbytes(64))
    return replace(hostile, key=key)


@register("no_kafka_key")
def _no_kafka_key(rand: random.Random, cfg: HostileConfig) -> Hostile:
    return replace(accepted("no_kafka_key", base(rand, cfg)), key=None)
