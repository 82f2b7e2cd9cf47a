"""What both ledger backends decide the same way: one claim's answer, batch duplicates, rows.

Kept out of the backends so SQLite and PostgreSQL cannot drift apart on the rules the
contract suite (tests/ledger_contract.py) checks: SQLite decides every key here inside its
write transaction; PostgreSQL decides in SQL (``ON CONFLICT ... WHERE``) and uses ``decide``
only to answer for the rows its upsert left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netscope.ledger.model import (
    Claim,
    ClaimRequest,
    ClaimResult,
    Completion,
    Entry,
    EntryState,
    LedgerKey,
    Settle,
)

TABLE = "netscope_idempotency"

# Column order of every SELECT; ``entry_from_row`` reads them by name. ``audit_ref`` is the
# record of the claim the row is about: an ``in_progress`` row holds its claimant's
# (``ClaimRequest.audit_ref``, which PostgreSQL's upsert compares with a released row's
# through ``excluded``), a settle writes the record's (the same ref). ``Entry`` shows it
# once settled, in ``completion``.
COLUMNS = (
    "upstream",
    "idempotency_key",
    "state",
    "token",
    "created_at",
    "lease_until",
    "expires_at",
    "takeovers",
    "outcome",
    "status",
    "attempts",
    "audit_ref",
    "completed_at",
)
SELECT_COLUMNS = ", ".join(f"t.{c}" for c in COLUMNS)

# Sweep and purge delete this many rows per statement: a backlog of millions must not hold
# locks (SQLite: the one write lock every claim needs) for longer than a statement's bound.
DELETE_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Decision:
    result: ClaimResult
    entry: Entry
    write: bool  # the entry is new and must be stored; False: answer with the stored one


def decide(existing: Entry | None, request: ClaimRequest, now: float) -> Decision:
    """The claim rules of ledger/model.py for one key, given its stored entry.

    One addition to them: an ``in_progress`` entry that still holds *this request's* token
    (lease live) answers as claimed without a write. That is a claim retried after its answer
    was lost (a timeout after the commit, a dropped connection): the gate retries with the
    same token, and it must find the key its own, not wait a whole lease on itself.

    A released entry (TTL live) is ``RELEASED_HERE`` for a request with its ``audit_ref``
    (both set and equal: PostgreSQL's upsert tests the same), claimed afresh for any other.
    """
    if existing is None or settled_and_expired(existing, now):
        return Decision(ClaimResult.CLAIMED, fresh_entry(request, now), write=True)
    if existing.state is EntryState.COMPLETED:
        return Decision(ClaimResult.COMPLETED, existing, write=False)
    if existing.state is EntryState.RELEASED:
        if released_here(existing, request):
            return Decision(ClaimResult.RELEASED_HERE, existing, write=False)
        return Decision(ClaimResult.CLAIMED, fresh_entry(request, now), write=True)
    if existing.lease_until is None or existing.lease_until <= now:
        taken = Entry(
            key=request.key,
            state=EntryState.IN_PROGRESS,
            token=request.token,
            created_at=existing.created_at,
            lease_until=now + request.lease_s,
            expires_at=None,
            takeovers=existing.takeovers + 1,
            completion=None,
        )
        return Decision(ClaimResult.TAKEN_OVER, taken, write=True)
    if existing.token == request.token:
        return Decision(ours(existing), existing, write=False)
    return Decision(ClaimResult.IN_PROGRESS, existing, write=False)


def fresh_entry(request: ClaimRequest, now: float) -> Entry:
    """A key claimed from scratch: new, past its TTL, or released by another message."""
    return Entry(
        key=request.key,
        state=EntryState.IN_PROGRESS,
        token=request.token,
        created_at=now,
        lease_until=now + request.lease_s,
        expires_at=None,
        takeovers=0,
        completion=None,
    )


def settled_and_expired(entry: Entry, now: float) -> bool:
    """A completed or released entry past its TTL: as good as absent."""
    return (
        entry.state is not EntryState.IN_PROGRESS
        and entry.expires_at is not None
        and entry.expires_at <= now
    )


def released_here(entry: Entry, request: ClaimRequest) -> bool:
    """The released entry is this request's own message's (same position, same run)."""
    done = entry.completion
    return (
        entry.state is EntryState.RELEASED
        and done is not None
        and request.audit_ref is not None
        and done.audit_ref == request.audit_ref
    )


def ours(entry: Entry) -> ClaimResult:
    """How a claim that holds ``entry`` answers: takeovers > 0 only after a takeover (a
    claim of a new or expired key resets them to 0)."""
    return ClaimResult.TAKEN_OVER if entry.takeovers else ClaimResult.CLAIMED


def unique_claims(requests: Sequence[ClaimRequest]) -> tuple[list[ClaimRequest], list[int]]:
    """The first request of each key, and for every request the index of its key's first.

    Both stores need it: an upsert cannot touch one row twice in a statement (PostgreSQL
    refuses), and the rule "the first request decides" is easiest to keep by never sending
    the others.
    """
    first: dict[LedgerKey, int] = {}
    unique: list[ClaimRequest] = []
    slots: list[int] = []
    for request in requests:
        slot = first.setdefault(request.key, len(unique))
        if slot == len(unique):
            unique.append(request)
        slots.append(slot)
    return unique, slots


def fan_out(
    requests: Sequence[ClaimRequest], slots: Sequence[int], answers: Sequence[Decision]
) -> list[Claim]:
    """One claim per request, in order. A later request of a key answers ``IN_PROGRESS``
    with its first's entry (the first holds it, or another claim does, or the key is
    released for the first only: ask again), ``COMPLETED`` when the key is completed for
    everyone, ``RELEASED_HERE`` when it is released and the request has the same ref."""
    claims: list[Claim] = []
    seen: set[int] = set()
    for request, slot in zip(requests, slots, strict=True):
        answer = answers[slot]
        if slot not in seen:
            seen.add(slot)
            claims.append(Claim(request, answer.result, answer.entry))
        elif answer.result is ClaimResult.COMPLETED:
            claims.append(Claim(request, ClaimResult.COMPLETED, answer.entry))
        elif answer.result is ClaimResult.RELEASED_HERE and released_here(answer.entry, request):
            claims.append(Claim(request, ClaimResult.RELEASED_HERE, answer.entry))
        else:
            claims.append(Claim(request, ClaimResult.IN_PROGRESS, answer.entry))
    return claims


def unique_settles(settles: Sequence[Settle]) -> list[int]:
    """Indexes of the settles to send: the first of each (key, token).

    Settling is sequential in meaning: once a token completed or released its key it no longer
    holds it (only an ``in_progress`` entry is held), so a repeat of the same (key, token)
    answers False. Settles of one key with different tokens are all sent: at most one token
    matches the stored entry.
    """
    seen: set[tuple[LedgerKey, str]] = set()
    keep: list[int] = []
    for i, settle in enumerate(settles):
        ident = (settle.key, settle.token)
        if ident not in seen:
            seen.add(ident)
            keep.append(i)
    return keep


def entry_from_row(row: Mapping[str, Any]) -> Entry:
    state = EntryState(row["state"])
    completion = None
    if state is not EntryState.IN_PROGRESS:
        completion = Completion(
            outcome=row["outcome"],
            status=row["status"],
            attempts=row["attempts"],
            audit_ref=row["audit_ref"],
            completed_at=row["completed_at"],
        )
    return Entry(
        key=LedgerKey(row["upstream"], row["idempotency_key"]),
        state=state,
        token=row["token"],
        created_at=row["created_at"],
        lease_until=row["lease_until"],
        expires_at=row["expires_at"],
        takeovers=row["takeovers"],
        completion=completion,
    )
