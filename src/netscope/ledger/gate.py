"""The handler's door to the idempotency ledger: claim before the call, settle after it.

    admit(request, ref) -> Ticket     call the upstream (after_lease_expiry: again, after a
                                      crash)
                        -> Duplicate  completed before: no call, record duplicate_skipped; or
                                      released by this very message (same ref: a
                                      redelivery): no call, its record rebuilt from the entry
                        -> NotCalled  another claim kept the key past our deadline, or the
                                      ledger could not be asked before it (fail closed;
                                      the record waits until the key can be read)
    settle(ticket, record)            completed (the upstream policy says the outcome counts)
                                      or released (kept ttl_s with the refusal and the
                                      record's ref: another message or a replay calls it
                                      again, this message handled again does not)

Claims and settles from every worker are batched per loop turn (ledger/batching.py) and
sent together (``Ledger.exchange``: the calls that ended and the calls about to start, one
transaction, one commit): one round trip per fetch, not per message. While the ledger cannot
answer, ``available`` is False (the fetcher pauses ingest on it, readiness names it) and
admissions retry every ``retry_interval_s`` within their message's deadline; nothing is
called without a claim.

Past that deadline an admission still waits for the ledger, to read the key, before its
message ends: the message may be a redelivery whose earlier holder claimed and called and
then died unsettled (found by the long fault run). Ended blind, its record would say
``ledger_unavailable``, not called, and be committed, while the upstream had the call. Read
once the ledger answers, the key says what happened: completed (``duplicate_skipped``, or
this message's own refusal), held by a claim that never settled (``duplicate_in_progress``,
as for a live holder past the deadline: that holder may have called), or nobody's
(``ledger_unavailable``). Ingest is paused meanwhile and the offset is not committed, so a
stop abandons the message to its redelivery.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from netscope.config import IdempotencyConfig, LedgerConfig
from netscope.contract.outcomes import Outcome
from netscope.contract.records import AuditRecord, KafkaPosition
from netscope.contract.request import CallRequest
from netscope.ledger.batching import MicroBatcher
from netscope.ledger.model import (
    Claim,
    ClaimRequest,
    ClaimResult,
    Completion,
    Entry,
    EntryState,
    Ledger,
    LedgerKey,
    LedgerUnavailable,
    Settle,
)
from netscope.observability.events import (
    EventBus,
    LeaseExpired,
    LedgerAvailabilityChanged,
    LedgerOp,
    LedgerRoundTrip,
)

log = logging.getLogger(__name__)

IN_PROGRESS_POLL_S = 0.2  # how often a key held by another claim is asked again


@dataclass(slots=True, frozen=True)
class Ticket:
    key: LedgerKey
    token: str
    ttl_s: float
    lease_until: float  # wall clock: settling after this is moot (the key may be taken)
    after_lease_expiry: bool


@dataclass(slots=True, frozen=True)
class Duplicate:
    """No call: the entry is completed, or released by this very message (its
    ``completion.audit_ref`` is then the claim's ref)."""

    entry: Entry


@dataclass(slots=True, frozen=True)
class NotCalled:
    outcome: Outcome  # DUPLICATE_IN_PROGRESS or LEDGER_UNAVAILABLE
    detail: str


Admission = Ticket | Duplicate | NotCalled


def completion_class(record: AuditRecord) -> str:
    """The name ``completed_on`` matches: the outcome, with http_error split by status."""
    if record.outcome is Outcome.HTTP_ERROR and record.status is not None:
        if record.status in (408, 429):
            return "http_408_429"
        return "http_5xx" if record.status >= 500 else "http_4xx"
    return record.outcome.value


def audit_ref(record: AuditRecord) -> str:
    """Where a record is, for a duplicate's ``duplicate_of`` (docs/audit-format.md)."""
    return position_ref(record.kafka, record.replay_run_id)


def position_ref(k: KafkaPosition, replay_run_id: str | None) -> str:
    ref = f"{k.topic}/{k.partition}/{k.offset}"
    return f"replay={replay_run_id}:{ref}" if replay_run_id else ref


class IdempotencyGate:
    def __init__(
        self,
        ledger: Ledger,
        cfg: LedgerConfig,
        policies: Mapping[str, IdempotencyConfig],
        deadlines_s: Mapping[str, float],
        events: EventBus,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self._cfg = cfg
        self._policies = policies
        self._lease_s = {n: d + cfg.lease_margin_s for n, d in deadlines_s.items()}
        self._events = events
        self._wall = wall
        self._monotonic = monotonic
        self._batcher: MicroBatcher[ClaimRequest | Settle, Claim | bool] = MicroBatcher(
            self._exchange, max_batch=cfg.max_batch
        )
        self.available = True
        self.detail = ""
        self._opened = False
        # Claim tokens: unique per claim across instances. A random prefix once and a counter,
        # not uuid4() per message (os.urandom cost ~18 us a call here: ~10 % of the ledger's).
        self._token_prefix = uuid.uuid4().hex[:16]
        self._tokens = itertools.count()

    async def open(self) -> None:
        """Open the ledger; if it cannot be reached, start unavailable (ingest paused) and
        let :meth:`watch` open it once it answers, rather than refuse to start."""
        try:
            await self.ledger.open()
        except LedgerUnavailable as exc:
            log.warning("ledger %s unavailable at start: %s", self.ledger.description, exc)
            self._set_available(False, str(exc))
        else:
            self._opened = True

    def enabled_for(self, upstream: str) -> bool:
        policy = self._policies.get(upstream)
        return policy is not None and policy.enabled

    # -- claim -------------------------------------------------------------------------------

    async def admit(self, req: CallRequest, deadline_mono: float, ref: str) -> Admission:
        """Claim the request's key, waiting (within ``deadline_mono``) on a live lease or on
        an unreachable ledger. ``ref`` is where this message's record goes
        (:func:`position_ref`): a key released under that same ref is this message's own
        refusal, not called again. Never raises for the ledger's sake."""
        upstream = req.upstream
        policy = self._policies[upstream]
        request = ClaimRequest(
            LedgerKey(upstream, req.idempotency_key),
            token=f"{self._token_prefix}-{next(self._tokens)}",
            lease_s=self._lease_s[upstream],
            ttl_s=policy.ttl_s,
            audit_ref=ref,
        )
        while True:
            try:
                claim = await self._batcher.submit(request)
                assert isinstance(claim, Claim)
            except LedgerUnavailable as exc:
                left = deadline_mono - self._monotonic()
                if left <= self._cfg.retry_interval_s:
                    return await self._past_deadline(request, str(exc))
                await asyncio.sleep(self._cfg.retry_interval_s)
                continue
            result, entry = claim.result, claim.entry
            if result is ClaimResult.IN_PROGRESS and entry is not None and _ours(entry, request):
                # An earlier try of this very claim reached the ledger and its answer was lost
                # (the ledger went down as it answered): the lease is ours already.
                result = ClaimResult.CLAIMED
            if result is ClaimResult.CLAIMED or result is ClaimResult.TAKEN_OVER:
                taken_over = result is ClaimResult.TAKEN_OVER
                if taken_over:
                    self._events.publish(
                        LeaseExpired(upstream, req.idempotency_key, entry.takeovers if entry else 0)
                    )
                return Ticket(
                    request.key,
                    request.token,
                    policy.ttl_s,
                    lease_until=self._wall() + request.lease_s,
                    after_lease_expiry=taken_over,
                )
            if (
                result is ClaimResult.COMPLETED or result is ClaimResult.RELEASED_HERE
            ) and entry is not None:
                return Duplicate(entry)
            # IN_PROGRESS: another claim is calling it (or, within one batch, released it for
            # itself only). Ask again until it settles, its lease runs out (then it is ours:
            # TAKEN_OVER), or our own deadline passes.
            left = deadline_mono - self._monotonic()
            if left <= 0:
                holder = entry.lease_until if entry and entry.lease_until else None
                until = f" (lease until {holder:.3f})" if holder else ""
                return NotCalled(
                    Outcome.DUPLICATE_IN_PROGRESS,
                    f"key held by another claim past this message's deadline{until}",
                )
            wait = IN_PROGRESS_POLL_S
            if entry is not None and entry.lease_until is not None:
                wait = min(wait, max(0.01, entry.lease_until - self._wall()))
            await asyncio.sleep(min(wait, left))

    async def _past_deadline(self, request: ClaimRequest, why: str) -> Duplicate | NotCalled:
        """No call any more: wait until the ledger can be read, then say what the key is."""
        while True:
            try:
                entry = (await self.ledger.get([request.key])).get(request.key)
                break
            except LedgerUnavailable:
                await asyncio.sleep(self._cfg.retry_interval_s)
        unavailable = f"ledger unavailable until past this message's deadline: {why}"
        if entry is None:
            return NotCalled(Outcome.LEDGER_UNAVAILABLE, unavailable)
        if _ours(entry, request):
            # This message's own claim, written as the ledger went down, its answer lost:
            # nothing was called. Its lease runs out on its own (a later claim takes it over).
            return NotCalled(
                Outcome.LEDGER_UNAVAILABLE,
                f"{unavailable}; its own claim had reached the ledger unanswered (not called)",
            )
        if entry.state is EntryState.IN_PROGRESS:
            until = entry.lease_until or 0.0
            ran_out = " (run out: its holder stopped unsettled, maybe after calling)"
            return NotCalled(
                Outcome.DUPLICATE_IN_PROGRESS,
                f"{unavailable}; then the key was held by another claim, lease until "
                f"{until:.3f}{ran_out if until <= self._wall() else ''}",
            )
        live = entry.expires_at is None or entry.expires_at > self._wall()
        done = entry.completion
        if live and done is not None and (
            entry.state is EntryState.COMPLETED or done.audit_ref == request.audit_ref
        ):
            return Duplicate(entry)
        return NotCalled(Outcome.LEDGER_UNAVAILABLE, unavailable)

    # -- settle ------------------------------------------------------------------------------

    async def settle(self, ticket: Ticket, record: AuditRecord) -> None:
        """Complete or release the key, with the record's outcome and ref either way. Retried
        while the ledger is down, until the lease runs out (after that another claim may
        hold the key: settling would be wrong)."""
        policy = self._policies[ticket.key.upstream]
        completion = Completion(
            outcome=record.outcome.value,
            status=record.status,
            attempts=len(record.attempts),
            audit_ref=audit_ref(record),
            completed_at=record.completed_at,
        )
        done = completion_class(record) in policy.completed_on
        settle = Settle(ticket.key, ticket.token, completion, ticket.ttl_s, done=done)
        while True:
            try:
                await self._batcher.submit(settle)
                return
            except LedgerUnavailable as exc:
                if self._wall() + self._cfg.retry_interval_s >= ticket.lease_until:
                    log.warning(
                        "ledger: could not settle %s/%s before its lease ran out (%s): a "
                        "redelivery will call it again",
                        ticket.key.upstream,
                        ticket.key.idempotency_key,
                        exc,
                    )
                    return
                await asyncio.sleep(self._cfg.retry_interval_s)

    async def _exchange(self, ops: Sequence[ClaimRequest | Settle]) -> list[Claim | bool]:
        settles = [op for op in ops if isinstance(op, Settle)]
        claims = [op for op in ops if isinstance(op, ClaimRequest)]
        t0 = time.perf_counter()
        try:
            applied, answers = await self.ledger.exchange(settles, claims, self._wall())
        except LedgerUnavailable as exc:
            for op, n in ((LedgerOp.SETTLE, len(settles)), (LedgerOp.CLAIM, len(claims))):
                if n:
                    self._round_trip(op, n, t0, error=exc)
            raise
        if settles:
            counts: Counter[str] = Counter()
            for s, ok in zip(settles, applied, strict=True):
                if not ok:
                    counts["lease_lost"] += 1
                else:
                    counts["completed" if s.done else "released"] += 1
            self._round_trip(LedgerOp.SETTLE, len(settles), t0, counts=counts)
        if claims:
            claimed = Counter(c.result.value for c in answers)
            self._round_trip(LedgerOp.CLAIM, len(claims), t0, counts=claimed)
        settled, claimed_it = iter(applied), iter(answers)
        return [next(settled) if isinstance(op, Settle) else next(claimed_it) for op in ops]

    async def watch(self) -> None:
        """While the ledger is down, ping it: with ingest paused and no claim in flight,
        nothing else would notice it is back. Also sweeps expired keys now and then."""
        next_sweep = self._monotonic() + self._cfg.sweep_interval_s
        while True:
            if not self.available:
                try:
                    if self._opened:
                        await self.ledger.ping()
                    else:
                        await self.ledger.open()
                        self._opened = True
                except LedgerUnavailable as exc:
                    self.detail = str(exc)
                else:
                    self._set_available(True, "")
            elif self._monotonic() >= next_sweep:
                next_sweep = self._monotonic() + self._cfg.sweep_interval_s
                try:
                    swept = await self.ledger.sweep(self._wall())
                except LedgerUnavailable as exc:
                    self._set_available(False, str(exc))
                else:
                    if swept:
                        log.info("ledger: swept %d keys past their TTL", swept)
            await asyncio.sleep(self._cfg.retry_interval_s)

    # -- signals -----------------------------------------------------------------------------

    def _round_trip(
        self,
        op: LedgerOp,
        items: int,
        t0: float,
        *,
        counts: Counter[str] | None = None,
        error: Exception | None = None,
    ) -> None:
        self._events.publish(
            LedgerRoundTrip(
                op,
                items,
                time.perf_counter() - t0,
                tuple(sorted((counts or {}).items())),
                error=None if error is None else str(error),
            )
        )
        self._set_available(error is None, "" if error is None else str(error))

    def _set_available(self, available: bool, detail: str) -> None:
        if available == self.available:
            return
        self.available, self.detail = available, detail
        self._events.publish(
            LedgerAvailabilityChanged(available, self.ledger.description, detail)
        )


def _ours(entry: Entry, request: ClaimRequest) -> bool:
    """The key is held by this very claim (tokens are unique per message handling)."""
    return entry.state is EntryState.IN_PROGRESS and entry.token == request.token
