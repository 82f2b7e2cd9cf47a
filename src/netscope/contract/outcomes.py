"""The closed vocabularies every module shares: outcome, error class, and where an error came from.

One definition each, as ``StrEnum`` so they serialise as the strings the audit format and the
metric labels document. The caller decides them, the audit records them, metrics, the hub and
the config read them; nothing matches on prose.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """Final outcome of one message. Exactly one per consumed message."""

    SUCCESS = "success"  # 2xx/3xx from the upstream
    HTTP_ERROR = "http_error"  # final non-success status after any retries
    TIMEOUT_CONNECT = "timeout_connect"
    TIMEOUT_READ = "timeout_read"
    DEADLINE_EXCEEDED = "deadline_exceeded"  # the global deadline ran out across attempts
    CONNECT_ERROR = "connect_error"  # refused, reset, DNS: the call never got an answer
    PROTOCOL_ERROR = "protocol_error"  # malformed or oversize response
    REJECTED_CIRCUIT_OPEN = "rejected_circuit_open"
    REJECTED_RATE_LIMITED = "rejected_rate_limited"  # rate limit or bulkhead saturated
    INVALID = "invalid"  # failed validation: dead-lettered
    DUPLICATE_SKIPPED = "duplicate_skipped"  # the idempotency ledger holds it as done: no call
    # Not called: another claim held the key (under a live lease) past this message's
    # deadline; that claim's own message carries the call.
    DUPLICATE_IN_PROGRESS = "duplicate_in_progress"
    # Not called: the ledger could not be asked before the deadline (it fails closed).
    LEDGER_UNAVAILABLE = "ledger_unavailable"


TIMEOUT_OUTCOMES = frozenset(
    {Outcome.TIMEOUT_CONNECT, Outcome.TIMEOUT_READ, Outcome.DEADLINE_EXCEEDED}
)
# Outcomes that only say another message already carries the key's call.
DUPLICATE_OUTCOMES = frozenset({Outcome.DUPLICATE_SKIPPED, Outcome.DUPLICATE_IN_PROGRESS})
ERROR_OUTCOMES = frozenset(Outcome) - {Outcome.SUCCESS} - DUPLICATE_OUTCOMES
REJECTED_OUTCOMES = frozenset({Outcome.REJECTED_CIRCUIT_OPEN, Outcome.REJECTED_RATE_LIMITED})
# Outcomes whose latency says nothing about the upstream (no call was made): the latency
# histogram and the dashboard's percentiles leave them out, so an open circuit does not pull
# p95 down.
NO_UPSTREAM_LATENCY_OUTCOMES = (
    REJECTED_OUTCOMES | DUPLICATE_OUTCOMES | {Outcome.INVALID, Outcome.LEDGER_UNAVAILABLE}
)


class ErrorClass(StrEnum):
    """Why an attempt or a message failed: the ``error_class`` of the audit and the metrics."""

    TIMEOUT_CONNECT = "timeout_connect"
    TIMEOUT_READ = "timeout_read"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CONNECT_ERROR = "connect_error"
    CONNECTION_RESET = "connection_reset"
    PROTOCOL_ERROR = "protocol_error"
    RESPONSE_TOO_LARGE = "response_too_large"
    HTTP_ERROR = "http_error"  # the upstream answered with a non-success status
    RATE_LIMITED = "rate_limited"
    BULKHEAD_FULL = "bulkhead_full"
    CIRCUIT_OPEN = "circuit_open"
    INVALID = "invalid"
    INTERNAL_ERROR = "internal_error"
    LEDGER_UNAVAILABLE = "ledger_unavailable"


class ErrorOrigin(StrEnum):
    """Who a terminal error is about, so the runbook's ``errors / requests > 2 %`` rule can
    count the upstream's failures apart from bad input and NetScope's own refusals."""

    UPSTREAM = "upstream"  # it answered badly or not at all (status, timeout, reset, ...)
    LOCAL = "local"  # NetScope refused to call (open circuit, rate limit, bulkhead) or a bug
    INPUT = "input"  # the message itself was invalid (dead-lettered)


class TimeoutKind(StrEnum):
    CONNECT = "connect"
    READ = "read"
    DEADLINE = "deadline"


# Error classes an attempt can end with -> the terminal outcome when it is the last one.
ATTEMPT_OUTCOME: dict[ErrorClass, Outcome] = {
    ErrorClass.TIMEOUT_CONNECT: Outcome.TIMEOUT_CONNECT,
    ErrorClass.TIMEOUT_READ: Outcome.TIMEOUT_READ,
    ErrorClass.DEADLINE_EXCEEDED: Outcome.DEADLINE_EXCEEDED,
    ErrorClass.CONNECT_ERROR: Outcome.CONNECT_ERROR,
    ErrorClass.CONNECTION_RESET: Outcome.CONNECT_ERROR,
    ErrorClass.PROTOCOL_ERROR: Outcome.PROTOCOL_ERROR,
    ErrorClass.RESPONSE_TOO_LARGE: Outcome.PROTOCOL_ERROR,
}

TIMEOUT_KIND: dict[ErrorClass, TimeoutKind] = {
    ErrorClass.TIMEOUT_CONNECT: TimeoutKind.CONNECT,
    ErrorClass.TIMEOUT_READ: TimeoutKind.READ,
    ErrorClass.DEADLINE_EXCEEDED: TimeoutKind.DEADLINE,
}

_LOCAL = frozenset(
    {
        ErrorClass.RATE_LIMITED,
        ErrorClass.BULKHEAD_FULL,
        ErrorClass.CIRCUIT_OPEN,
        ErrorClass.INTERNAL_ERROR,
        ErrorClass.LEDGER_UNAVAILABLE,
    }
)


def error_origin(error_class: ErrorClass) -> ErrorOrigin:
    if error_class is ErrorClass.INVALID:
        return ErrorOrigin.INPUT
    if error_class in _LOCAL:
        return ErrorOrigin.LOCAL
    return ErrorOrigin.UPSTREAM


def status_class(status: int) -> str:
    """``2xx``-style class of an HTTP status, the label of the per-status-class counter."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"
