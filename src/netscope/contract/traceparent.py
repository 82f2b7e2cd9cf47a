"""W3C Trace Context ``traceparent`` (https://www.w3.org/TR/trace-context/).

Hand-written because the whole format is one regular expression and a new span id: pulling in
the OpenTelemetry SDK for that would add a heavy dependency to the hot path.
"""

from __future__ import annotations

import random
import re
import secrets
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str = "01"

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """The context of a call NetScope makes on behalf of this one: same trace, new span."""
        return TraceContext(self.trace_id, new_span_id(), self.flags)


_span_rand = random.Random(secrets.randbits(128))


def new_span_id() -> str:
    # Span ids need uniqueness, not secrecy (W3C trace-context section 3.2.2.4): a seeded PRNG
    # avoids a getrandom() syscall per message. Trace ids we start stay on `secrets`.
    span = _span_rand.getrandbits(64)
    while span == 0:
        span = _span_rand.getrandbits(64)
    return f"{span:016x}"


def new_trace() -> TraceContext:
    return TraceContext(secrets.token_hex(16), new_span_id(), "01")


def parse_traceparent(value: str) -> TraceContext | None:
    """Parse a traceparent header; None when it is not valid per the spec."""
    match = _TRACEPARENT.match(value.strip())
    if not match:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    # Version ff is forbidden; version 00 allows nothing after the flags.
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, flags)
