"""W3C Trace Context ``traceparent`` parsing (https://www.w3.org/TR/trace-context/#traceparent-header)."""

from __future__ import annotations

import pytest

from netscope.contract.traceparent import (
    TraceContext,
    new_span_id,
    new_trace,
    parse_traceparent,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"


def test_spec_example_parses() -> None:
    assert parse_traceparent(VALID) == TraceContext(TRACE_ID, SPAN_ID, "01")


@pytest.mark.parametrize("flags", ["00", "01", "ff", "03"])
def test_flags_are_kept(flags: str) -> None:
    ctx = parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-{flags}")
    assert ctx is not None and ctx.flags == flags


def test_surrounding_whitespace_is_tolerated() -> None:
    assert parse_traceparent(f"  {VALID}\t") == TraceContext(TRACE_ID, SPAN_ID, "01")


def test_version_ff_is_rejected() -> None:
    assert parse_traceparent(f"ff-{TRACE_ID}-{SPAN_ID}-01") is None


@pytest.mark.parametrize(
    "value",
    [f"00-{'0' * 32}-{SPAN_ID}-01", f"00-{TRACE_ID}-{'0' * 16}-01", f"00-{'0' * 32}-{'0' * 16}-01"],
)
def test_all_zero_ids_are_rejected(value: str) -> None:
    assert parse_traceparent(value) is None


@pytest.mark.parametrize(
    "value",
    [
        VALID.upper(),
        f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID.upper()}-01",
        f"0A-{TRACE_ID}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID}-0A",
    ],
)
def test_uppercase_hex_is_rejected(value: str) -> None:
    assert parse_traceparent(value) is None


@pytest.mark.parametrize("suffix", ["-what-the-future-holds", "-x", "-"])
def test_future_version_with_extra_fields_is_accepted(suffix: str) -> None:
    ctx = parse_traceparent(f"cc-{TRACE_ID}-{SPAN_ID}-01{suffix}")
    assert ctx == TraceContext(TRACE_ID, SPAN_ID, "01")
    # It is re-emitted as version 00: the only version NetScope writes.
    assert ctx is not None and ctx.header == VALID


def test_future_version_without_extra_fields_is_accepted() -> None:
    assert parse_traceparent(f"01-{TRACE_ID}-{SPAN_ID}-01") == TraceContext(TRACE_ID, SPAN_ID)


@pytest.mark.parametrize("suffix", ["-extra", "-", "-00"])
def test_version_00_with_extra_fields_is_rejected(suffix: str) -> None:
    assert parse_traceparent(f"{VALID}{suffix}") is None


def test_future_version_extra_data_must_start_with_a_dash() -> None:
    assert parse_traceparent(f"cc-{TRACE_ID}-{SPAN_ID}-01x") is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"00-{TRACE_ID}-{SPAN_ID}",  # no flags
        f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",  # trace id too short
        f"00-{TRACE_ID}0-{SPAN_ID}-01",  # trace id too long
        f"00-{TRACE_ID}-{SPAN_ID[:-1]}-01",
        f"00-{TRACE_ID}-{SPAN_ID}-1",
        f"0-{TRACE_ID}-{SPAN_ID}-01",
        f"00_{TRACE_ID}_{SPAN_ID}_01",
        f"00-{TRACE_ID[:-1]}g-{SPAN_ID}-01",  # not hex
        f"00-{TRACE_ID}-{SPAN_ID}-01\n00-{TRACE_ID}-{SPAN_ID}-01",
    ],
)
def test_malformed_values_are_rejected(value: str) -> None:
    assert parse_traceparent(value) is None


def test_header_round_trips() -> None:
    ctx = TraceContext(TRACE_ID, SPAN_ID, "00")
    assert ctx.header == f"00-{TRACE_ID}-{SPAN_ID}-00"
    assert parse_traceparent(ctx.header) == ctx


def test_child_keeps_trace_and_flags_with_a_new_span() -> None:
    parent = TraceContext(TRACE_ID, SPAN_ID, "00")
    child = parent.child()
    assert child.trace_id == TRACE_ID
    assert child.flags == "00"
    assert child.span_id != SPAN_ID
    assert parse_traceparent(child.header) == child


def test_new_trace_is_valid_and_sampled() -> None:
    ctx = new_trace()
    assert parse_traceparent(ctx.header) == ctx
    assert ctx.flags == "01"
    assert len({new_trace().trace_id for _ in range(50)}) == 50


def test_new_span_id_is_16_lowercase_hex() -> None:
    span = new_span_id()
    assert len(span) == 16 and span == span.lower()
    int(span, 16)
