"""parse_time: the `--from` / `--to` of `netscope replay`.

Why strict: an incident window typed in the wrong zone or unit replays the wrong hours, so
ambiguous input (no zone, epoch seconds) is refused with a message saying what to write.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscope.replay.window import format_ms, parse_time

NOON_UTC = 1_714_564_800_000  # 2024-05-01T12:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", NOON_UTC),
        ("2024-05-01T14:00:00+02:00", NOON_UTC),
        ("2024-05-01T07:30:00-04:30", NOON_UTC),
        ("2024-05-01t12:00:00z", NOON_UTC),
        ("2024-05-01 12:00:00Z", NOON_UTC),
        ("2024-05-01T12:00Z", NOON_UTC),
        ("2024-05-01T12:00:00.250Z", NOON_UTC + 250),
        ("2024-05-01T12:00:00.1Z", NOON_UTC + 100),
        ("2024-05-01T12:00:00.123999999Z", NOON_UTC + 123),  # truncated, never rounded up
        ("  2024-05-01T12:00:00Z\n", NOON_UTC),
        (str(NOON_UTC), NOON_UTC),
        (f" {NOON_UTC} ", NOON_UTC),
    ],
)
def test_parses_rfc3339_and_epoch_ms(text: str, expected: int) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2024-05-01T12:00:00", "no time zone: add Z"),
        ("2024-05-01 12:00", "no time zone"),
        ("1714564800", "if it is epoch seconds, use 1714564800000"),
        ("-5", "cannot be negative"),
        ("", "empty time"),
        ("yesterday", "neither RFC 3339"),
        ("2024-05-01", "neither RFC 3339"),
        ("2024-05-01T12:00:00 UTC", "neither RFC 3339"),
        ("2024-02-30T00:00:00Z", "not a valid date-time"),
        ("2024-05-01T24:00:00Z", "not a valid date-time"),
        ("2024-05-01T12:00:00+24:00", "out of range"),
        ("1969-12-31T23:59:59Z", "before 1970"),
    ],
)
def test_refuses_ambiguous_or_invalid_input(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time(text)


def test_offsets_name_the_same_instant() -> None:
    assert parse_time("2024-12-31T23:30:00-01:00") == parse_time("2025-01-01T00:30:00Z")


@given(st.integers(min_value=10**11, max_value=253_402_300_799_999))  # to 9999-12-31
def test_format_ms_round_trips(ms: int) -> None:
    assert parse_time(format_ms(ms)) == ms


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.timezones(),
    )
)
def test_agrees_with_datetime_on_isoformat(moment: datetime) -> None:
    # Python's own ISO output (any zone, microseconds) parses to the same instant, in ms.
    offset = moment.utcoffset()
    if offset is None or offset.seconds % 60 or offset.microseconds:
        return  # RFC 3339 offsets are whole minutes
    expected = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert parse_time(moment.isoformat()) == expected
