"""The idempotency ledger's vocabulary: what a claim asks, what it answers, what is stored.

One key per (upstream, idempotency_key): the same key sent to two upstreams is two side
effects. An entry is ``in_progress`` under a lease while one claim calls the upstream, then
``completed`` with the outcome and a pointer to the audit record (kept ``ttl_s``), or
``released`` when the outcome does not count as done (a 429, a 5xx, a connect error...): kept
``ttl_s`` too, with the refusal and the position ref of its record. A released key is free
for any other claim (a new message with the key, a replay: called again, that is what
releasing means), but not for the message that was refused: handled again at the same
position (a redelivery after a crash or a rebalance before its offset was committed) it is
answered ``released_here`` and audited from the entry, not called a second time behind the
back of the record its first handling wrote. Pattern: AWS Lambda Powertools' idempotency
(INPROGRESS + lease, COMPLETED, takeover after expiry; it deletes on failure, which loses
the refusal) and Stripe's 24 h key retention.

Times are epoch seconds given by the caller (an injectable clock), never read by a backend:
the two backends behave the same and tests can move time. Instances sharing a PostgreSQL
ledger must keep their clocks in sync (NTP); leases carry a margin of seconds for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class LedgerUnavailable(RuntimeError):
    """The ledger could not answer (unreachable, timed out, locked): fail closed, retry later."""


class ClaimResult(StrEnum):
    CLAIMED = "claimed"  # unknown, released by another message, or past its TTL: ours to call
    COMPLETED = "completed"  # done before: do not call, point at the original
    IN_PROGRESS = "in_progress"  # another claim holds a live lease: wait for it
    TAKEN_OVER = "taken_over"  # its lease ran out (a crash mid-call): ours to call again
    # Released by this very message before (same audit_ref: a redelivery): do not call, its
    # record is the refusal the entry holds.
    RELEASED_HERE = "released_here"


class EntryState(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    RELEASED = "released"  # the outcome did not count as done; kept ttl_s for its audit_ref


@dataclass(frozen=True, slots=True)
class LedgerKey:
    upstream: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    key: LedgerKey
    token: str  # unique per claim (per message handling): who holds the lease
    lease_s: float  # the call's deadline plus a margin
    ttl_s: float  # how long a completed key is kept
    # Where this claim's record goes (ledger/gate.py ``position_ref``: the Kafka position,
    # and the replay run for a replay). Stored with the claim; a released entry with the
    # same ref answers RELEASED_HERE. None matches nothing (the claim is never "here").
    audit_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """How a claim's call ended, kept by the settle whether it completed or released it."""

    outcome: str
    status: int | None
    attempts: int
    audit_ref: str  # where the original terminal record is (see docs/audit-format.md)
    completed_at: float


@dataclass(frozen=True, slots=True)
class Entry:
    key: LedgerKey
    state: EntryState
    token: str
    created_at: float
    lease_until: float | None  # in_progress only
    expires_at: float | None  # completed or released: settled at + ttl_s
    takeovers: int  # times a lease ran out and another claim took the key
    completion: Completion | None  # completed or released


@dataclass(frozen=True, slots=True)
class Claim:
    request: ClaimRequest
    result: ClaimResult
    entry: Entry | None  # the entry as it stands after the claim (None never for a result)


@dataclass(frozen=True, slots=True)
class Settle:
    """A claim's end and how its call ended: ``done`` (the upstream policy counts the
    outcome) -> completed; not done -> released. Either is kept ``ttl_s`` with ``completion``
    (a released entry's ``audit_ref`` tells its own message, handled again, from others)."""

    key: LedgerKey
    token: str
    completion: Completion
    ttl_s: float
    done: bool = True


@dataclass(frozen=True, slots=True)
class LedgerStats:
    backend: str  # e.g. "sqlite:/var/lib/netscope/ledger.sqlite3", "postgresql://host:5432/db"
    in_progress: int
    completed: int
    released: int  # kept with a refusal: only their own message is not called again
    expired_leases: int  # in_progress entries whose lease has run out (crashes)
    oldest_completed_at: float | None


class Ledger(Protocol):
    """Both backends (ledger/sqlite.py, ledger/postgres.py): one schema, one behaviour.

    Every method is one round trip whatever the batch size, raises ``LedgerUnavailable``
    when the store cannot answer within its bound, and never blocks the event loop.
    """

    description: str  # where it is, without secrets

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def claim(self, requests: Sequence[ClaimRequest], now: float) -> list[Claim]:
        """One answer per request, in order. Within one batch a key asked twice is decided
        by its first request; the later ones answer ``IN_PROGRESS`` with the first's entry
        (ask again), or as the first did when it is ``COMPLETED``, or ``RELEASED_HERE`` for
        the same ``audit_ref``."""
        ...

    async def settle(self, settles: Sequence[Settle], now: float) -> list[bool]:
        """Complete or release each; False where the token no longer holds the key (its
        lease ran out and another claim took it): that entry is left alone."""
        ...

    async def exchange(
        self, settles: Sequence[Settle], requests: Sequence[ClaimRequest], now: float
    ) -> tuple[list[bool], list[Claim]]:
        """``settle(settles)`` then ``claim(requests)`` in one transaction: what the gate
        sends each round trip (the calls that ended, the calls about to start)."""
        ...

    async def get(self, keys: Sequence[LedgerKey]) -> dict[LedgerKey, Entry]: ...

    async def find(self, idempotency_key: str) -> list[Entry]:
        """Every upstream's entry for this key (``netscope ledger lookup``)."""
        ...

    async def stats(self, now: float) -> LedgerStats: ...

    async def purge(self, completed_before: float) -> int:
        """Delete completed and released entries settled (``completed_at``) before this
        time; returns how many."""
        ...

    async def sweep(self, now: float) -> int:
        """Delete completed and released entries past ``expires_at``; returns how many."""
        ...
