"""The idempotency ledger's contract, one suite for every backend (ledger/model.py is the spec).

A backend's test module subclasses ``LedgerContract`` and provides ``ledger_factory``: a
callable returning a new, unopened ledger on that test's store (a fresh file, a fresh
database). Two objects from one factory are two processes sharing the store, which is how
the concurrency tests get real lock contention rather than one connection's serial order.

Times are the caller's: every test passes ``now`` explicitly and moves it by hand.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from netscope.ledger.model import (
    ClaimRequest,
    ClaimResult,
    Completion,
    EntryState,
    Ledger,
    LedgerKey,
    LedgerUnavailable,
    Settle,
)

T0 = 1_750_000_000.25  # an epoch second with a fraction, as time.time() gives
LEASE_S = 30.0
TTL_S = 3_600.0


def key(name: str, upstream: str = "billing") -> LedgerKey:
    return LedgerKey(upstream, name)


def request(
    k: LedgerKey,
    token: str | None = None,
    *,
    lease_s: float = LEASE_S,
    ttl_s: float = TTL_S,
    ref: str | None = None,
) -> ClaimRequest:
    return ClaimRequest(k, token or uuid.uuid4().hex, lease_s, ttl_s, audit_ref=ref)


def completion(
    at: float,
    *,
    outcome: str = "success",
    status: int | None = 200,
    audit_ref: str = "calls/3/1042",
) -> Completion:
    return Completion(outcome, status, attempts=2, audit_ref=audit_ref, completed_at=at)


def complete(r: ClaimRequest, at: float, **kw: object) -> Settle:
    return Settle(r.key, r.token, completion(at, **kw), r.ttl_s)  # type: ignore[arg-type]


def refusal(at: float, ref: str | None) -> Completion:
    return Completion("http_error", 429, attempts=1, audit_ref=ref or "calls/3/7", completed_at=at)


def release(r: ClaimRequest, at: float = T0) -> Settle:
    """The claim's call was refused (429): released, kept with the refusal under its ref."""
    return Settle(r.key, r.token, refusal(at, r.audit_ref), r.ttl_s, done=False)


class LedgerContract:
    """Behaviour every ``Ledger`` must have; subclass it and define ``ledger_factory``."""

    @pytest.fixture
    async def ledger(self, ledger_factory: Callable[[], Ledger]) -> AsyncIterator[Ledger]:
        store = ledger_factory()
        await store.open()
        yield store
        await store.close()

    @pytest.fixture
    async def other_ledger(self, ledger_factory: Callable[[], Ledger]) -> AsyncIterator[Ledger]:
        """A second ledger object on the same store: another process, as far as it knows."""
        store = ledger_factory()
        await store.open()
        yield store
        await store.close()

    # -- exchange: settles then claims, one transaction ----------------------------------

    async def test_exchange_settles_before_it_claims(self, ledger: Ledger) -> None:
        done, released = request(key("done")), request(key("released"))
        await ledger.claim([done, released], T0)
        fresh = request(key("fresh"))
        applied, claims = await ledger.exchange(
            [complete(done, T0 + 1), release(released)],
            [request(key("done")), request(key("released")), fresh],
            T0 + 2,
        )
        assert applied == [True, True]
        assert [c.result for c in claims] == [
            ClaimResult.COMPLETED,  # completed by this very exchange
            ClaimResult.CLAIMED,  # released by it: free again
            ClaimResult.CLAIMED,
        ]
        assert claims[2].request == fresh and claims[2].entry is not None
        assert claims[2].entry.token == fresh.token

    async def test_exchange_with_one_side_empty(self, ledger: Ledger) -> None:
        r = request(key("k1"))
        assert await ledger.exchange([], [], T0) == ([], [])
        applied, claims = await ledger.exchange([], [r], T0)
        assert applied == [] and [c.result for c in claims] == [ClaimResult.CLAIMED]
        applied, claims = await ledger.exchange([complete(r, T0 + 1)], [], T0 + 1)
        assert applied == [True] and claims == []

    # -- claim: each transition ----------------------------------------------------------

    async def test_a_new_key_is_claimed(self, ledger: Ledger) -> None:
        r = request(key("k1"))
        [claim] = await ledger.claim([r], T0)
        assert claim.request == r
        assert claim.result is ClaimResult.CLAIMED
        entry = claim.entry
        assert entry is not None
        assert entry.key == r.key and entry.token == r.token
        assert entry.state is EntryState.IN_PROGRESS
        assert entry.created_at == T0
        assert entry.lease_until == T0 + LEASE_S
        assert entry.expires_at is None and entry.completion is None
        assert entry.takeovers == 0
        assert await ledger.get([r.key]) == {r.key: entry}

    async def test_a_live_lease_answers_in_progress_with_the_holder(self, ledger: Ledger) -> None:
        holder = request(key("k1"))
        [first] = await ledger.claim([holder], T0)
        [second] = await ledger.claim([request(key("k1"))], T0 + LEASE_S - 0.001)
        assert second.result is ClaimResult.IN_PROGRESS
        assert second.entry == first.entry
        assert second.entry is not None and second.entry.token == holder.token

    async def test_a_completed_key_answers_completed(self, ledger: Ledger) -> None:
        r = request(key("k1"))
        await ledger.claim([r], T0)
        assert await ledger.settle([complete(r, T0 + 1.5)], T0 + 2) == [True]
        [again] = await ledger.claim([request(key("k1"))], T0 + 100)
        assert again.result is ClaimResult.COMPLETED
        entry = again.entry
        assert entry is not None
        assert entry.state is EntryState.COMPLETED
        assert entry.token == r.token
        assert entry.lease_until is None
        assert entry.expires_at == T0 + 2 + TTL_S  # settle's now + ttl
        assert entry.completion == completion(T0 + 1.5)

    async def test_an_expired_lease_is_taken_over(self, ledger: Ledger) -> None:
        crashed = request(key("k1"))
        await ledger.claim([crashed], T0)
        second = request(key("k1"), lease_s=5.0)
        [claim] = await ledger.claim([second], T0 + LEASE_S)  # lease_until <= now: expired
        assert claim.result is ClaimResult.TAKEN_OVER
        entry = claim.entry
        assert entry is not None
        assert entry.token == second.token
        assert entry.created_at == T0  # the key's history is kept
        assert entry.lease_until == T0 + LEASE_S + 5.0
        assert entry.takeovers == 1
        [third] = await ledger.claim([request(key("k1"))], T0 + LEASE_S + 5.0)
        assert third.result is ClaimResult.TAKEN_OVER
        assert third.entry is not None and third.entry.takeovers == 2

    async def test_a_completed_key_past_its_ttl_is_claimed_afresh(self, ledger: Ledger) -> None:
        r = request(key("k1"), ttl_s=60.0)
        await ledger.claim([r], T0)
        await ledger.settle([complete(r, T0 + 1)], T0 + 1)
        [still] = await ledger.claim([request(key("k1"))], T0 + 1 + 59.999)
        assert still.result is ClaimResult.COMPLETED
        fresh = request(key("k1"))
        [claim] = await ledger.claim([fresh], T0 + 61)  # expires_at <= now
        assert claim.result is ClaimResult.CLAIMED
        entry = claim.entry
        assert entry is not None
        assert entry.state is EntryState.IN_PROGRESS and entry.token == fresh.token
        assert entry.created_at == T0 + 61 and entry.takeovers == 0
        assert entry.completion is None and entry.expires_at is None

    async def test_a_taken_over_key_claimed_again_after_its_ttl_resets_takeovers(
        self, ledger: Ledger
    ) -> None:
        await ledger.claim([request(key("k1"))], T0)
        taker = request(key("k1"), ttl_s=10.0)
        [taken] = await ledger.claim([taker], T0 + LEASE_S)
        assert taken.result is ClaimResult.TAKEN_OVER
        await ledger.settle([complete(taker, T0 + 31)], T0 + 31)
        [claim] = await ledger.claim([request(key("k1"))], T0 + 41)
        assert claim.result is ClaimResult.CLAIMED
        assert claim.entry is not None and claim.entry.takeovers == 0

    async def test_a_claim_retried_with_its_own_token_finds_the_key_its_own(
        self, ledger: Ledger
    ) -> None:
        # The answer to a claim can be lost after it committed (timeout, dropped connection);
        # the gate asks again with the same token and must not wait out its own lease.
        r = request(key("k1"))
        [first] = await ledger.claim([r], T0)
        [retry] = await ledger.claim([r], T0 + 1)
        assert retry.result is ClaimResult.CLAIMED
        assert retry.entry == first.entry

    async def test_upstreams_are_separate_keys(self, ledger: Ledger) -> None:
        a, b = request(key("same", "billing")), request(key("same", "shipping"))
        claims = await ledger.claim([a, b], T0)
        assert [c.result for c in claims] == [ClaimResult.CLAIMED, ClaimResult.CLAIMED]

    # -- claim: batches ----------------------------------------------------------------------

    async def test_a_batch_answers_in_order_with_mixed_results(self, ledger: Ledger) -> None:
        done, held, crashed = request(key("done")), request(key("held")), request(key("crashed"))
        await ledger.claim([done, held], T0)
        await ledger.claim([crashed], T0 - LEASE_S)
        await ledger.settle([complete(done, T0)], T0)
        batch = [request(key(n)) for n in ("new", "done", "held", "crashed", "new2")]
        claims = await ledger.claim(batch, T0 + 1)
        assert [c.request for c in claims] == batch
        assert [c.result for c in claims] == [
            ClaimResult.CLAIMED,
            ClaimResult.COMPLETED,
            ClaimResult.IN_PROGRESS,
            ClaimResult.TAKEN_OVER,
            ClaimResult.CLAIMED,
        ]
        assert all(c.entry is not None and c.entry.key == c.request.key for c in claims)

    async def test_a_key_twice_in_a_batch_is_claimed_by_its_first_request(
        self, ledger: Ledger
    ) -> None:
        first, dup, other, dup2 = (request(key(n)) for n in ("k1", "k1", "k2", "k1"))
        claims = await ledger.claim([first, dup, other, dup2], T0)
        assert [c.result for c in claims] == [
            ClaimResult.CLAIMED,
            ClaimResult.IN_PROGRESS,
            ClaimResult.CLAIMED,
            ClaimResult.IN_PROGRESS,
        ]
        assert [c.request for c in claims] == [first, dup, other, dup2]
        assert claims[1].entry == claims[0].entry == claims[3].entry
        assert claims[1].entry is not None and claims[1].entry.token == first.token
        stored = await ledger.get([first.key])
        assert stored[first.key].token == first.token

    async def test_batch_duplicates_of_a_taken_over_key_wait_for_the_taker(
        self, ledger: Ledger
    ) -> None:
        await ledger.claim([request(key("k1"))], T0)
        taker, dup = request(key("k1")), request(key("k1"))
        claims = await ledger.claim([taker, dup], T0 + LEASE_S)
        assert [c.result for c in claims] == [ClaimResult.TAKEN_OVER, ClaimResult.IN_PROGRESS]
        assert claims[1].entry is not None and claims[1].entry.token == taker.token

    async def test_batch_duplicates_of_a_completed_key_answer_completed(
        self, ledger: Ledger
    ) -> None:
        r = request(key("k1"))
        await ledger.claim([r], T0)
        await ledger.settle([complete(r, T0)], T0)
        claims = await ledger.claim([request(key("k1")), request(key("k1"))], T0 + 1)
        assert [c.result for c in claims] == [ClaimResult.COMPLETED, ClaimResult.COMPLETED]
        assert claims[0].entry == claims[1].entry

    async def test_batch_duplicates_of_a_held_key_all_wait(self, ledger: Ledger) -> None:
        holder = request(key("k1"))
        await ledger.claim([holder], T0)
        claims = await ledger.claim([request(key("k1")), request(key("k1"))], T0 + 1)
        assert [c.result for c in claims] == [ClaimResult.IN_PROGRESS, ClaimResult.IN_PROGRESS]
        assert all(c.entry is not None and c.entry.token == holder.token for c in claims)

    async def test_a_large_batch(self, ledger: Ledger) -> None:
        batch = [request(key(f"k{i:04d}", f"up{i % 3}")) for i in range(1_200)]
        claims = await ledger.claim(batch, T0)
        assert Counter(c.result for c in claims) == {ClaimResult.CLAIMED: 1_200}
        settled = await ledger.settle([complete(r, T0 + 1) for r in batch], T0 + 1)
        assert settled == [True] * 1_200
        again = await ledger.claim(batch, T0 + 2)
        assert Counter(c.result for c in again) == {ClaimResult.COMPLETED: 1_200}

    async def test_empty_batches(self, ledger: Ledger) -> None:
        assert await ledger.claim([], T0) == []
        assert await ledger.settle([], T0) == []
        assert await ledger.get([]) == {}

    async def test_keys_are_stored_verbatim(self, ledger: Ledger) -> None:
        names = ["quote'\"", "uni\u00e9\u4e2d\U0001f600", " spaced ", "x" * 512, "a,b;c", "[1]"]
        batch = [request(key(n, "up/\u00e9")) for n in names]
        claims = await ledger.claim(batch, T0)
        assert all(c.result is ClaimResult.CLAIMED for c in claims)
        stored = await ledger.get([r.key for r in batch])
        assert set(stored) == {r.key for r in batch}
        assert [e.key for e in await ledger.find(names[1])] == [batch[1].key]

    # -- concurrency -------------------------------------------------------------------------

    async def test_concurrent_claims_from_two_ledgers_have_one_winner_per_key(
        self, ledger: Ledger, other_ledger: Ledger
    ) -> None:
        names = [f"k{i:03d}" for i in range(100)]
        for round_ in range(5):
            now = T0 + round_ * 1_000  # each round: every lease of the last one has expired
            mine = [request(key(n)) for n in names]
            theirs = [request(key(n)) for n in reversed(names)]  # opposite lock order
            a, b = await asyncio.gather(ledger.claim(mine, now), other_ledger.claim(theirs, now))
            by_key = {c.request.key: [c] for c in a}
            for c in b:
                by_key[c.request.key].append(c)
            winning = (ClaimResult.CLAIMED, ClaimResult.TAKEN_OVER)
            for k, (x, y) in by_key.items():
                assert (x.result in winning) != (y.result in winning), (k, x.result, y.result)
                winner, loser = (x, y) if x.result in winning else (y, x)
                assert loser.result is ClaimResult.IN_PROGRESS
                assert loser.entry is not None and loser.entry.token == winner.request.token

    async def test_many_concurrent_claims_of_one_key_have_one_winner(
        self, ledger: Ledger, other_ledger: Ledger
    ) -> None:
        for round_ in range(5):
            now = T0 + round_ * 1_000
            contenders = [request(key("hot")) for _ in range(16)]
            claims = await asyncio.gather(
                *(
                    (ledger if i % 2 else other_ledger).claim([r], now)
                    for i, r in enumerate(contenders)
                )
            )
            results = Counter(c.result for [c] in claims)
            assert results[ClaimResult.IN_PROGRESS] == 15, results
            [winner] = [c for [c] in claims if c.result is not ClaimResult.IN_PROGRESS]
            assert all(
                c.entry is not None and c.entry.token == winner.request.token for [c] in claims
            )

    async def test_a_completion_is_seen_by_the_other_ledger(
        self, ledger: Ledger, other_ledger: Ledger
    ) -> None:
        r = request(key("k1"))
        await ledger.claim([r], T0)
        await ledger.settle([complete(r, T0)], T0)
        [seen] = await other_ledger.claim([request(key("k1"))], T0 + 1)
        assert seen.result is ClaimResult.COMPLETED
        assert seen.entry is not None and seen.entry.completion == completion(T0)

    async def test_claims_racing_releases_always_answer_consistently(
        self, ledger: Ledger, other_ledger: Ledger
    ) -> None:
        # A key released (free for any other claim) between another claim's upsert and its
        # read of the row must still get a true answer: the claim asks again rather than
        # answering nothing or waiting on it.
        async def worker(store: Ledger, n: int) -> Counter[ClaimResult]:
            seen: Counter[ClaimResult] = Counter()
            for _ in range(n):
                r = request(key("hot"))
                [claim] = await store.claim([r], T0)
                seen[claim.result] += 1
                assert claim.entry is not None and claim.entry.key == r.key
                mine = claim.entry.token == r.token
                assert mine == (claim.result is ClaimResult.CLAIMED), claim
                if mine:
                    assert await store.settle([release(r)], T0) == [True]
            return seen

        totals = await asyncio.gather(*(worker(s, 60) for s in (ledger, other_ledger) * 3))
        assert sum(t[ClaimResult.CLAIMED] for t in totals) > 0

    # -- settle ------------------------------------------------------------------------------

    async def test_settle_completes_and_the_entry_records_it(self, ledger: Ledger) -> None:
        r = request(key("k1"), ttl_s=86_400.0)
        await ledger.claim([r], T0)
        done = complete(r, T0 + 3, outcome="http_error", status=404)
        assert await ledger.settle([done], T0 + 4) == [True]
        entry = (await ledger.get([r.key]))[r.key]
        assert entry.state is EntryState.COMPLETED
        assert entry.completion == completion(T0 + 3, outcome="http_error", status=404)
        assert entry.expires_at == T0 + 4 + 86_400.0
        assert entry.lease_until is None and entry.created_at == T0

    async def test_a_completion_without_status_is_kept(self, ledger: Ledger) -> None:
        r = request(key("k1"))
        await ledger.claim([r], T0)
        await ledger.settle([complete(r, T0, outcome="timeout", status=None)], T0)
        entry = (await ledger.get([r.key]))[r.key]
        assert entry.completion is not None and entry.completion.status is None

    async def test_release_keeps_the_refusal_under_its_ref(self, ledger: Ledger) -> None:
        r = request(key("k1"), ref="calls/0/17", ttl_s=600.0)
        await ledger.claim([r], T0)
        assert await ledger.settle([release(r, T0 + 0.5)], T0 + 1) == [True]
        entry = (await ledger.get([r.key]))[r.key]
        assert entry.state is EntryState.RELEASED
        assert entry.completion == refusal(T0 + 0.5, "calls/0/17")
        assert entry.token == r.token and entry.created_at == T0
        assert entry.lease_until is None and entry.expires_at == T0 + 1 + 600.0
        assert await ledger.find("k1") == [entry]

    async def test_a_released_key_claimed_with_its_own_ref_is_released_here(
        self, ledger: Ledger
    ) -> None:
        # The same message handled again (a redelivery): not called, the refusal answers.
        r = request(key("k1"), ref="calls/0/17")
        await ledger.claim([r], T0)
        await ledger.settle([release(r)], T0 + 1)
        stored = await ledger.get([r.key])
        for at in (T0 + 2, T0 + 1 + TTL_S - 0.001):
            [again] = await ledger.claim([request(key("k1"), ref="calls/0/17")], at)
            assert again.result is ClaimResult.RELEASED_HERE
            assert again.entry == stored[r.key]
        assert await ledger.get([r.key]) == stored  # answered without a write

    async def test_a_released_key_claimed_with_another_ref_is_claimed_afresh(
        self, ledger: Ledger
    ) -> None:
        # Another message with the key, a replay of this one (its ref names the run), or a
        # claim without a ref: called again, that is what releasing means.
        for other_ref in ("calls/0/18", "replay=r1:calls/0/17", None):
            r = request(key("k1"), ref="calls/0/17")
            await ledger.claim([r], T0)
            assert await ledger.settle([release(r)], T0 + 1) == [True]
            fresh = request(key("k1"), ref=other_ref)
            [claim] = await ledger.claim([fresh], T0 + 2)
            assert claim.result is ClaimResult.CLAIMED, other_ref
            entry = claim.entry
            assert entry is not None
            assert entry.state is EntryState.IN_PROGRESS and entry.token == fresh.token
            assert entry.created_at == T0 + 2 and entry.lease_until == T0 + 2 + LEASE_S
            assert entry.takeovers == 0 and entry.completion is None
            assert entry.expires_at is None
            assert await ledger.get([r.key]) == {r.key: entry}
            # The new holder settles; the old ref is no longer "here".
            assert await ledger.settle([complete(fresh, T0 + 3)], T0 + 3) == [True]
            [late] = await ledger.claim([request(key("k1"), ref="calls/0/17")], T0 + 4)
            assert late.result is ClaimResult.COMPLETED
            await ledger.sweep(T0 + 4 + TTL_S)  # next round starts from nothing

    async def test_a_released_key_past_its_ttl_is_claimed_afresh_even_here(
        self, ledger: Ledger
    ) -> None:
        r = request(key("k1"), ref="calls/0/17", ttl_s=60.0)
        await ledger.claim([r], T0)
        await ledger.settle([release(r)], T0 + 1)
        mine = request(key("k1"), ref="calls/0/17")
        [claim] = await ledger.claim([mine], T0 + 61)  # expires_at <= now
        assert claim.result is ClaimResult.CLAIMED
        assert claim.entry is not None and claim.entry.token == mine.token

    async def test_a_released_key_answers_its_ref_within_a_batch(self, ledger: Ledger) -> None:
        r = request(key("k1"), ref="calls/0/17")
        await ledger.claim([r], T0)
        await ledger.settle([release(r)], T0 + 1)
        here, here_too, other = (request(key("k1"), ref=x) for x in ("calls/0/17",) * 2 + (None,))
        claims = await ledger.claim([here, here_too, other], T0 + 2)
        assert [c.result for c in claims] == [
            ClaimResult.RELEASED_HERE,
            ClaimResult.RELEASED_HERE,
            ClaimResult.IN_PROGRESS,  # decided by the first: ask again
        ]
        [retry] = await ledger.claim([other], T0 + 2.2)
        assert retry.result is ClaimResult.CLAIMED
        # Claimed afresh by the first of a batch: the later same-ref requests wait on it.
        await ledger.settle([release(other)], T0 + 3)
        twice = [request(key("k1"), ref="calls/0/17") for _ in range(2)]
        claims = await ledger.claim(twice, T0 + 4)
        assert [c.result for c in claims] == [ClaimResult.CLAIMED, ClaimResult.IN_PROGRESS]

    async def test_a_released_key_has_one_winner_among_other_refs(
        self, ledger: Ledger, other_ledger: Ledger
    ) -> None:
        for round_ in range(5):
            now = T0 + round_ * 10_000  # past every lease and TTL of the round before
            first = request(key("hot"), ref=f"calls/0/{round_}")  # the refused message
            await ledger.claim([first], now)
            assert await ledger.settle([release(first)], now) == [True]
            ref = f"calls/0/{round_}"
            contenders = [request(key("hot"), ref=f"replay=r{i}:{ref}") for i in range(8)]
            mine = [request(key("hot"), ref=ref) for _ in range(4)]
            claims = await asyncio.gather(
                *(
                    (ledger if i % 2 else other_ledger).claim([r], now + 1)
                    for i, r in enumerate(contenders + mine)
                )
            )
            results = Counter(c.result for [c] in claims[:8])
            assert results[ClaimResult.CLAIMED] == 1, results
            assert results[ClaimResult.IN_PROGRESS] == 7, results
            # The refused message's own redeliveries: its refusal, or the new holder's claim.
            for [c] in claims[8:]:
                assert c.result in (ClaimResult.RELEASED_HERE, ClaimResult.IN_PROGRESS), c

    async def test_a_stale_token_cannot_complete_or_release(self, ledger: Ledger) -> None:
        crashed = request(key("k1"))
        await ledger.claim([crashed], T0)
        taker = request(key("k1"))
        [taken] = await ledger.claim([taker], T0 + LEASE_S)
        assert taken.result is ClaimResult.TAKEN_OVER
        assert await ledger.settle([complete(crashed, T0 + 31)], T0 + 31) == [False]
        assert await ledger.settle([release(crashed)], T0 + 31) == [False]
        assert (await ledger.get([taker.key]))[taker.key] == taken.entry
        assert await ledger.settle([complete(taker, T0 + 32)], T0 + 32) == [True]

    async def test_settle_after_the_lease_ran_out_but_before_a_takeover_applies(
        self, ledger: Ledger
    ) -> None:
        r = request(key("k1"))
        await ledger.claim([r], T0)
        assert await ledger.settle([complete(r, T0 + 100)], T0 + 100) == [True]

    async def test_settling_twice_or_an_unknown_key_answers_false(self, ledger: Ledger) -> None:
        r = request(key("k1"))
        await ledger.claim([r], T0)
        assert await ledger.settle([complete(r, T0)], T0) == [True]
        assert await ledger.settle([complete(r, T0)], T0) == [False]
        assert await ledger.settle([release(r)], T0) == [False]  # a completed key stays
        assert (await ledger.get([r.key]))[r.key].state is EntryState.COMPLETED
        assert await ledger.settle([release(request(key("never")))], T0) == [False]
        released = request(key("k2"))
        await ledger.claim([released], T0)
        assert await ledger.settle([release(released)], T0) == [True]
        assert await ledger.settle([release(released)], T0) == [False]
        assert await ledger.settle([complete(released, T0)], T0) == [False]
        assert (await ledger.get([released.key]))[released.key].state is EntryState.RELEASED

    async def test_a_settle_batch_answers_per_item(self, ledger: Ledger) -> None:
        a, b, c = request(key("a")), request(key("b")), request(key("c"))
        await ledger.claim([a, b, c], T0)
        stale = request(key("b"))  # never held b
        answers = await ledger.settle(
            [complete(a, T0), release(b), complete(a, T0), complete(stale, T0), release(c)],
            T0 + 1,
        )
        assert answers == [True, True, False, False, True]
        stored = await ledger.get([a.key, b.key, c.key])
        assert {k: e.state for k, e in stored.items()} == {
            a.key: EntryState.COMPLETED,
            b.key: EntryState.RELEASED,
            c.key: EntryState.RELEASED,
        }
        assert stored[b.key].token == b.token  # the stale settle of b changed nothing

    async def test_stale_and_current_settles_of_one_key_in_one_batch(self, ledger: Ledger) -> None:
        crashed = request(key("k1"))
        await ledger.claim([crashed], T0)
        taker = request(key("k1"))
        await ledger.claim([taker], T0 + LEASE_S)
        answers = await ledger.settle(
            [complete(crashed, T0 + 31), complete(taker, T0 + 31)], T0 + 31
        )
        assert answers == [False, True]
        entry = (await ledger.get([taker.key]))[taker.key]
        assert entry.token == taker.token and entry.state is EntryState.COMPLETED

    # -- reads and maintenance ---------------------------------------------------------------

    async def test_get_returns_only_stored_keys(self, ledger: Ledger) -> None:
        a, b = request(key("a")), request(key("b", "shipping"))
        await ledger.claim([a, b], T0)
        got = await ledger.get([a.key, key("missing"), b.key, key("a", "shipping")])
        assert set(got) == {a.key, b.key}
        assert got[b.key].token == b.token

    async def test_find_returns_every_upstream_of_a_key(self, ledger: Ledger) -> None:
        batch = [request(key("order-7", up)) for up in ("shipping", "billing", "crm")]
        await ledger.claim([*batch, request(key("order-8", "billing"))], T0)
        await ledger.settle([complete(batch[0], T0)], T0)
        found = await ledger.find("order-7")
        assert sorted(e.key.upstream for e in found) == ["billing", "crm", "shipping"]
        states = {e.key.upstream: e.state for e in found}
        assert states["shipping"] is EntryState.COMPLETED
        assert states["billing"] is EntryState.IN_PROGRESS
        assert await ledger.find("order-9") == []

    async def test_stats(self, ledger: Ledger) -> None:
        empty = await ledger.stats(T0)
        assert (empty.in_progress, empty.completed, empty.released) == (0, 0, 0)
        assert empty.expired_leases == 0 and empty.oldest_completed_at is None
        assert empty.backend == ledger.description
        rs = [request(key(f"k{i}")) for i in range(6)]
        await ledger.claim(rs[:3], T0)  # leases until T0 + 30
        await ledger.claim(rs[3:], T0 + 20)  # leases until T0 + 50
        await ledger.settle(
            [complete(rs[0], T0 + 5), complete(rs[3], T0 + 21), release(rs[5], T0 + 1)], T0 + 22
        )
        stats = await ledger.stats(T0 + 40)
        assert stats.in_progress == 3 and stats.completed == 2 and stats.released == 1
        assert stats.expired_leases == 2  # k1, k2; k4 holds until T0 + 50
        assert stats.oldest_completed_at == T0 + 5  # completed keys only

    async def test_sweep_deletes_only_settled_keys_past_their_ttl(self, ledger: Ledger) -> None:
        short = [request(key(f"s{i}"), ttl_s=10.0) for i in range(4)]
        long = [request(key(f"l{i}"), ttl_s=1_000.0) for i in range(2)]
        crashed = request(key("crashed"))
        await ledger.claim([*short, *long, crashed], T0)
        await ledger.settle(
            [complete(r, T0) for r in [*short[:2], long[0]]]
            + [release(r) for r in [*short[2:], long[1]]],
            T0,
        )
        assert await ledger.sweep(T0 + 9.9) == 0
        assert await ledger.sweep(T0 + 10) == 4  # expires_at <= now: 2 completed, 2 released
        assert await ledger.sweep(T0 + 10) == 0
        left = await ledger.get([r.key for r in [*short, *long, crashed]])
        assert set(left) == {long[0].key, long[1].key, crashed.key}  # a crashed lease stays
        assert (await ledger.stats(T0 + 10)).released == 1

    async def test_sweep_deletes_a_backlog_larger_than_one_chunk(self, ledger: Ledger) -> None:
        batch = [request(key(f"k{i:05d}"), ttl_s=1.0) for i in range(6_000)]
        for i in range(0, len(batch), 1_000):
            await ledger.claim(batch[i : i + 1_000], T0)
            await ledger.settle([complete(r, T0) for r in batch[i : i + 1_000]], T0)
        assert await ledger.sweep(T0 + 2) == 6_000
        assert (await ledger.stats(T0 + 2)).completed == 0

    async def test_purge_deletes_settled_keys_settled_before(self, ledger: Ledger) -> None:
        rs = [request(key(f"k{i}")) for i in range(5)]
        await ledger.claim(rs, T0)
        await ledger.settle(
            [complete(rs[0], T0 + 1), complete(rs[1], T0 + 2), release(rs[2], T0 + 3),
             complete(rs[3], T0 + 3)],
            T0 + 3,
        )  # fmt: skip
        assert await ledger.purge(T0 + 2) == 1  # strictly before
        assert await ledger.purge(T0 + 3.5) == 3  # the released key too
        left = await ledger.get([r.key for r in rs])
        assert set(left) == {rs[4].key}  # in progress: never purged

    # -- lifecycle ---------------------------------------------------------------------------

    async def test_open_is_idempotent_and_the_data_outlives_the_object(
        self, ledger_factory: Callable[[], Ledger]
    ) -> None:
        first = ledger_factory()
        await first.open()
        await first.open()
        await first.ping()
        r = request(key("k1"))
        await first.claim([r], T0)
        await first.settle([complete(r, T0)], T0)
        await first.close()
        await first.close()
        second = ledger_factory()
        await second.open()  # the schema exists: open again must not fail
        try:
            [claim] = await second.claim([request(key("k1"))], T0 + 1)
            assert claim.result is ClaimResult.COMPLETED
        finally:
            await second.close()

    async def test_calls_on_a_closed_ledger_are_unavailable(
        self, ledger_factory: Callable[[], Ledger]
    ) -> None:
        store = ledger_factory()
        with pytest.raises(LedgerUnavailable, match="not open"):
            await store.claim([request(key("k1"))], T0)
        await store.open()
        await store.close()
        with pytest.raises(LedgerUnavailable):
            await store.ping()

    async def test_description_names_the_store(self, ledger: Ledger) -> None:
        assert ledger.description
        assert (await ledger.stats(T0)).backend == ledger.description
