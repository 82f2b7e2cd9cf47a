"""The hostile-message generator (tools/hostile/): declared verdicts, coverage, replay.

The integration run trusts each kind's declared verdict (rejected or called); here every kind
is drawn many times and checked against the validator, so a generator mistake (or a
validator change) shows up as a named disagreement, not as a puzzling end-to-end failure.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from netscope.contract.request import CallRequest, InvalidMessage, parse_request
from netscope.tools.hostile import (
    Hostile,
    HostileConfig,
    HostileStream,
    RawHeaderKey,
    kinds,
    make,
)
from netscope.tools.loadgen import LoadgenConfig, _Generator

TEST_RUN = HostileConfig(max_message_bytes=256 * 1024, max_request_bytes=64 * 1024)
DEFAULTS = HostileConfig()


def verdict(hostile: Hostile, cfg: HostileConfig) -> tuple[bool, str]:
    """What NetScope's handler decides: parse, then the upstream's body limit."""
    header_tp = next((v for k, v in hostile.headers if k == "traceparent"), None)
    result = parse_request(
        hostile.value,
        upstreams=set(cfg.upstreams),
        header_traceparent=header_tp,
        max_message_bytes=cfg.max_message_bytes,
    )
    if isinstance(result, InvalidMessage):
        return False, result.reason
    assert isinstance(result, CallRequest)
    if result.body_bytes is not None and len(result.body_bytes) > cfg.max_request_bytes:
        return False, "body larger than max_request_bytes"
    return True, ""


@pytest.mark.parametrize("cfg", [TEST_RUN, DEFAULTS], ids=["test-run-limits", "defaults"])
@pytest.mark.parametrize("kind", kinds(TEST_RUN))
def test_each_kind_gets_the_verdict_it_declares(kind: str, cfg: HostileConfig) -> None:
    if kind not in kinds(cfg):
        pytest.skip(f"{kind}: these limits leave no room for it (kinds() leaves it out)")
    rand = random.Random(f"{kind}-{cfg.max_message_bytes}")
    draws = 3 if kind in {"over_max_message_bytes", "dead_letter_too_large"} else 60
    for _ in range(draws):
        hostile = make(kind, rand, cfg)
        valid, reason = verdict(hostile, cfg)
        assert valid == hostile.valid, f"{kind}: declared valid={hostile.valid}, got {reason!r}"
        if hostile.valid:
            assert hostile.request_id and hostile.outcomes
        assert hostile.kind == kind


def test_the_brief_s_shapes_are_all_there() -> None:
    names = set(kinds(TEST_RUN))
    for wanted in (
        "random_bytes", "invalid_utf8", "deep_nesting", "over_max_message_bytes",
        "nan_infinity", "duplicate_keys_last_invalid", "duplicate_keys_last_valid",
        "ssrf_path", "ssrf_lookalike_path", "ssrf_upstream", "control_chars_in_path",
        "control_chars_in_header", "forbidden_header", "odd_method", "extreme_timeout",
        "broken_traceparent", "oversized_ids", "oversized_headers", "oversized_kafka_key",
        "kafka_headers_garbage", "header_key_not_utf8", "keyless_tombstone",
    ):  # fmt: skip
        assert wanted in names
    assert len(names) >= 40
    # NetScope's defaults leave no value past max_message_bytes that a 1 MiB broker takes.
    assert "over_max_message_bytes" not in kinds(DEFAULTS)


def test_the_canary_is_what_ssrf_shapes_aim_at() -> None:
    cfg = HostileConfig(canary="127.0.0.1:4242")
    rand = random.Random(5)
    paths = {make("ssrf_path", rand, cfg).value for _ in range(300)}
    assert any(b"127.0.0.1:4242" in (p or b"") for p in paths)
    assert any(b"169.254.169.254" in (p or b"") for p in paths)
    assert any(b"[::1]:4242" in (p or b"") for p in paths)


def test_a_seed_replays_the_stream_byte_for_byte() -> None:
    def draw(seed: int) -> list[tuple[str, bytes | None, bytes | None]]:
        stream = HostileStream(TEST_RUN, random.Random(seed), 0.5)
        return [(h.kind, h.key, h.value) for h in (stream.next() for _ in range(400))]

    assert draw(11) == draw(11)
    assert draw(11) != draw(12)


def test_the_stream_interleaves_valid_traffic_at_the_asked_share() -> None:
    stream = HostileStream(TEST_RUN, random.Random(3), 0.3)
    drawn = [stream.next() for _ in range(5000)]
    share = sum(h.kind != "valid" for h in drawn) / len(drawn)
    assert 0.27 < share < 0.33
    assert all(h.valid and h.outcomes == {"success"} for h in drawn if h.kind == "valid")
    ids = Counter(h.request_id for h in drawn if h.valid)
    assert set(ids.values()) == {1}, "every called message has its own Idempotency-Key"


def test_every_kind_comes_once_among_the_first_hostile_draws() -> None:
    stream = HostileStream(TEST_RUN, random.Random(8), 1.0)
    first = [stream.next().kind for _ in range(len(kinds(TEST_RUN)))]
    assert sorted(first) == sorted(kinds(TEST_RUN))


def test_huge_and_hand_built_kinds_can_be_left_out() -> None:
    light = HostileConfig(huge=False, hand_built=False)
    names = set(kinds(light))
    assert "over_max_message_bytes" not in names and "header_key_not_utf8" not in names
    assert "keyless_tombstone" not in names and "ssrf_path" in names


def test_a_raw_header_key_encodes_to_its_bytes() -> None:
    key = RawHeaderKey(b"\xff\xfe")
    assert key.encode("utf-8") == b"\xff\xfe" and isinstance(key, str)


def test_loadgen_hostile_share_draws_hostile_shapes_with_their_headers() -> None:
    gen = _Generator(LoadgenConfig(bootstrap="x", hostile_share=0.5, seed=9))
    drawn = [(gen.next()[2], gen.last_headers) for _ in range(600)]
    hostile = [m for m, _ in drawn if m.trace_id is None]  # loadgen's own carry their trace
    assert 0.42 < len(hostile) / len(drawn) < 0.58
    rejected = {m.invalid_kind for m in hostile if not m.valid}
    assert len(rejected) > 10 and all(k.startswith("hostile:") for k in rejected)
    assert any(headers for _, headers in drawn), "Kafka headers travel with the message"


def test_loadgen_streams_without_hostile_share_are_unchanged() -> None:
    """Adding the option must not change what an existing seed produces."""
    gen = _Generator(LoadgenConfig(bootstrap="x", invalid_share=0.2, seed=4))
    first = [gen.next()[2].request_id for _ in range(20)]
    gen = _Generator(LoadgenConfig(bootstrap="x", invalid_share=0.2, seed=4, hostile_share=0.0))
    assert [gen.next()[2].request_id for _ in range(20)] == first
