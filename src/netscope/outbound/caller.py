"""Executes one validated request against its upstream under every protection, never raising.

Order of the guards for each attempt, and why:
1. global deadline  - the caller's time is the hard bound (I1); nothing starts past it;
2. rate limit       - cheapest check, protects the upstream from bursts;
3. circuit breaker  - no call to an upstream known to be failing (only half-open probes);
4. bulkhead         - bounds concurrent calls so one slow upstream cannot take every slot;
5. the HTTP attempt, then the retry decision (policy + budget + deadline).

The attempt goes through a ``Transport`` (outbound/transport.py), chosen per upstream by
``transport``: this module knows no HTTP client library.

Saturation (limit or bulkhead) either rejects at once or waits a bounded time, per upstream
(``on_saturation``), as runbook INC-03 asks ("rejet explicite / file limitee").

What happened is published, typed, never as prose to parse: ``AttemptFinished`` after every
attempt, ``RetryScheduled`` before each retry, ``RetryDenied`` only for the refusals an operator
alerts on (``RetryReason.BUDGET``, ``RetryReason.DEADLINE``), breaker transitions as
``BreakerTransitioned``. The terminal outcome comes from ``ATTEMPT_OUTCOME``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from netscope.config import UpstreamConfig
from netscope.contract.outcomes import ATTEMPT_OUTCOME, ErrorClass, Outcome
from netscope.contract.records import Attempt
from netscope.contract.request import CallRequest
from netscope.observability.events import (
    AttemptFinished,
    BreakerTransitioned,
    EventBus,
    RetryDenied,
    RetryScheduled,
)
from netscope.outbound.transport import AttemptResult, Transport, make_transport
from netscope.resilience.breaker import BreakerConfig, CircuitBreaker, Transition
from netscope.resilience.budget import RetryBudget, RetryBudgetConfig
from netscope.resilience.bulkhead import Bulkhead
from netscope.resilience.clock import Clock, SystemClock
from netscope.resilience.limiter import TokenBucket
from netscope.resilience.retry import FailedAttempt, RetryPolicy, RetryReason, decide

_REFUSED: Any = object()  # _admit's "no attempt": its outcome is already on the result
# The refusals an operator alerts on (retries_denied_total); the others are the policy working.
_ALERTED_DENIALS = frozenset({RetryReason.BUDGET, RetryReason.DEADLINE})


def _time_out(slot: asyncio.Future[None]) -> None:
    if not slot.done():
        slot.set_exception(TimeoutError())


@dataclass(slots=True)
class CallResult:
    outcome: Outcome
    attempts: list[Attempt] = field(default_factory=list)
    status: int | None = None
    error_class: ErrorClass | None = None  # None when the status says it all
    detail: str | None = None
    upstream_time_s: float = 0.0  # inside attempts and retry waits: not NetScope's overhead
    queued_s: float = 0.0  # waiting for a rate-limit token or a bulkhead slot: not overhead


class UpstreamGuard:
    """The protections of one upstream, sharing state across all its calls."""

    def __init__(
        self,
        name: str,
        cfg: UpstreamConfig,
        events: EventBus,
        clock: Clock | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.clock = clock or SystemClock()
        # Started and closed by the owner (pipeline.py), like a pool.
        self.client: Transport = transport or make_transport(cfg.transport, name, cfg)
        self.policy = RetryPolicy(**cfg.retry.model_dump())
        self.budget = RetryBudget(RetryBudgetConfig(**cfg.retry_budget.model_dump()), self.clock)
        breaker_cfg = cfg.breaker.model_dump()
        self.breaker_enabled = breaker_cfg.pop("enabled")
        self.breaker = CircuitBreaker(
            name, BreakerConfig(**breaker_cfg), self.clock, on_transition=self._on_transition
        )
        rate = cfg.rate_limit.rate_per_s
        self.limiter = TokenBucket(
            rate if rate > 0 else float("inf"), cfg.rate_limit.burst, self.clock
        )
        self.bulkhead = Bulkhead(cfg.bulkhead.max_concurrent)
        self._bulkhead_waiters: deque[asyncio.Future[None]] = deque()
        self._events = events
        self._rand = random.random
        self._in_progress = 0

    def calls_in_progress(self) -> int:
        """Calls between entry and terminal outcome, retries and waits included."""
        return self._in_progress

    def _on_transition(self, t: Transition) -> None:
        self._events.publish(
            BreakerTransitioned(
                upstream=self.name,
                from_state=str(t.from_state),
                to_state=str(t.to_state),
                reason=t.reason,
            )
        )

    async def _admit_rate(self, deadline: float, result: CallResult) -> bool:
        if self.limiter.try_acquire():
            return True
        if self.cfg.on_saturation == "reject":
            return False
        limit = min(self.cfg.max_saturation_wait_s, deadline - self.clock.monotonic())
        wait = self.limiter.wait_time_s()
        if wait > limit:
            return False
        t0 = time.perf_counter()
        await asyncio.sleep(wait)
        result.queued_s += time.perf_counter() - t0
        return self.limiter.try_acquire()

    async def _admit_bulkhead(self, deadline: float, result: CallResult) -> bool:
        # Newcomers queue behind waiters: first come, first served.
        if not self._bulkhead_waiters and self.bulkhead.try_acquire():
            return True
        if self.cfg.on_saturation == "reject":
            return False
        limit = min(self.cfg.max_saturation_wait_s, deadline - self.clock.monotonic())
        if limit <= 0:
            return False
        # A future per waiter, handed a slot by _release_bulkhead: no task, no lock, no
        # thundering herd. The wait's bound is a bare timer failing that future: about half
        # of all calls wait here at saturation, and asyncio.timeout costs several times more.
        loop = asyncio.get_running_loop()
        slot = loop.create_future()
        self._bulkhead_waiters.append(slot)
        timer = loop.call_later(limit, _time_out, slot)
        t0 = time.perf_counter()
        try:
            await slot
        except TimeoutError:
            self._abandon_wait(slot)
            return False
        except asyncio.CancelledError:
            self._abandon_wait(slot)
            raise
        finally:
            timer.cancel()
            result.queued_s += time.perf_counter() - t0
        return True

    def _abandon_wait(self, slot: asyncio.Future[None]) -> None:
        if slot.done() and not slot.cancelled() and slot.exception() is None:
            # Handed a slot just as the wait ended: pass it on, never leak it.
            self._release_bulkhead()
            return
        slot.cancel()
        with contextlib.suppress(ValueError):
            self._bulkhead_waiters.remove(slot)

    def _release_bulkhead(self) -> None:
        self.bulkhead.release()
        waiters = self._bulkhead_waiters
        while waiters and self.bulkhead.available:
            slot = waiters.popleft()
            if not slot.done():
                self.bulkhead.try_acquire()
                slot.set_result(None)

    async def call(self, req: CallRequest, consumed_at: float | None = None) -> CallResult:
        """Run the request to a terminal outcome. Total: never raises (except cancellation).

        ``consumed_at`` (this guard's monotonic clock) starts the deadline when the message was
        consumed, so time spent queued behind the same key counts against it (invariant I1).
        """
        self._in_progress += 1
        try:
            return await self._call(req, consumed_at)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must still end in an audited outcome
            return CallResult(
                Outcome.PROTOCOL_ERROR,
                error_class=ErrorClass.INTERNAL_ERROR,
                detail=f"{type(exc).__name__}: {exc}"[:300],
            )
        finally:
            self._in_progress -= 1

    def budget_s(self, req: CallRequest) -> float:
        """The request's whole time budget: the upstream's deadline, or the message's shorter
        ``timeout_ms``."""
        if req.message.timeout_ms is not None:
            return min(self.cfg.deadline_s, req.message.timeout_ms / 1000)
        return self.cfg.deadline_s

    async def _call(self, req: CallRequest, consumed_at: float | None) -> CallResult:
        start = self.clock.monotonic() if consumed_at is None else consumed_at
        budget_s = self.budget_s(req)
        deadline = start + budget_s
        result = CallResult(Outcome.SUCCESS)
        self.budget.record_request()
        attempt_no = 0
        while True:
            attempt_no += 1
            permit = await self._admit(deadline, result)
            if permit is _REFUSED:
                break
            res = await self._timed_attempt(req, deadline, result)
            attempt = self._record(attempt_no, res, permit, result)
            if result.outcome is Outcome.SUCCESS or res.error_class is ErrorClass.DEADLINE_EXCEEDED:
                break
            delay_s = self._retry_delay(req, attempt_no, res, deadline, budget_s)
            if delay_s is None:
                break
            attempt.retry_delay_s = round(delay_s, 6)
            t0 = time.perf_counter()
            await asyncio.sleep(delay_s)
            result.upstream_time_s += time.perf_counter() - t0
        return result

    async def _admit(self, deadline: float, result: CallResult) -> Any:
        """The guards before an attempt, in order; a breaker permit (None when the breaker is
        disabled) or ``_REFUSED`` with the refusal's outcome set on ``result``."""
        if deadline - self.clock.monotonic() <= 0:
            result.outcome = Outcome.DEADLINE_EXCEEDED
            result.error_class = ErrorClass.DEADLINE_EXCEEDED
            return _REFUSED
        if not await self._admit_rate(deadline, result):
            result.outcome = Outcome.REJECTED_RATE_LIMITED
            result.error_class = ErrorClass.RATE_LIMITED
            return _REFUSED
        permit = self.breaker.try_acquire() if self.breaker_enabled else None
        if self.breaker_enabled and permit is None:
            result.outcome = Outcome.REJECTED_CIRCUIT_OPEN
            result.error_class = ErrorClass.CIRCUIT_OPEN
            return _REFUSED
        if not await self._admit_bulkhead(deadline, result):
            if permit is not None:
                self.breaker.record_ignored(permit)
            result.outcome = Outcome.REJECTED_RATE_LIMITED
            result.error_class = ErrorClass.BULKHEAD_FULL
            return _REFUSED
        return permit

    async def _timed_attempt(
        self, req: CallRequest, deadline: float, result: CallResult
    ) -> AttemptResult:
        """One attempt holding the bulkhead slot ``_admit`` took; its time is the upstream's."""
        t0 = time.perf_counter()
        try:
            res = await self._attempt(req, deadline - self.clock.monotonic())
        finally:
            self._release_bulkhead()
        result.upstream_time_s += time.perf_counter() - t0
        self._events.publish(
            AttemptFinished(self.name, res.status, res.error_class, res.duration_s)
        )
        return res

    def _record(
        self, attempt_no: int, res: AttemptResult, permit: Any, result: CallResult
    ) -> Attempt:
        """The attempt into the result and the breaker; the result's outcome as of now."""
        attempt = Attempt(
            n=attempt_no,
            started_at=res.started_at,
            duration_s=round(res.duration_s, 6),
            status=res.status,
            error_class=res.error_class,
        )
        result.attempts.append(attempt)
        result.status, result.error_class, result.detail = res.status, res.error_class, res.detail
        if permit is not None:
            if res.status == 429:
                self.breaker.record_ignored(permit)  # pushback, not ill health
            elif res.error_class is None and res.status is not None and res.status < 500:
                self.breaker.record_success(permit, res.duration_s)
            else:
                self.breaker.record_failure(permit, res.duration_s)
        if res.error_class is not None:
            result.outcome = ATTEMPT_OUTCOME.get(res.error_class, Outcome.PROTOCOL_ERROR)
        elif res.status is not None and res.status < 400:
            result.outcome = Outcome.SUCCESS
        else:
            result.outcome = Outcome.HTTP_ERROR
        return attempt

    def _retry_delay(
        self,
        req: CallRequest,
        attempt_no: int,
        res: AttemptResult,
        deadline: float,
        budget_s: float,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None: ask ``decide()``, publish."""
        decision = decide(
            self.policy,
            attempt=attempt_no,
            failure=FailedAttempt(
                error_class=res.error_class, status=res.status, retry_after_s=res.retry_after_s
            ),
            method=req.message.method,
            has_idempotency_key=req.message.idempotency_key is not None,
            now=self.clock.monotonic(),
            deadline=deadline,
            per_try_timeout_s=min(self.cfg.per_try_timeout_s, budget_s),
            budget=self.budget,
            rand=self._rand,
        )
        if not decision.retry:
            if decision.reason in _ALERTED_DENIALS:
                self._events.publish(
                    RetryDenied(self.name, reason=decision.reason, detail=decision.detail)
                )
            return None
        self._events.publish(
            RetryScheduled(
                upstream=self.name,
                request_id=req.request_id,
                trace_id=req.trace.trace_id,
                attempt=attempt_no,
                reason=decision.reason,
                detail=decision.detail,
                delay_s=decision.delay_s,
            )
        )
        return decision.delay_s

    async def _attempt(self, req: CallRequest, remaining_s: float) -> AttemptResult:
        """One try, cut short by the global deadline (reported as deadline_exceeded).

        The deadline rides on the transport's own total timeout rather than an asyncio.timeout
        around the call: one timer per attempt instead of two, on the hottest path.
        """
        connect_s = min(self.cfg.connect_timeout_s, remaining_s)
        read_s = min(self.cfg.read_timeout_s, remaining_s)
        res = await self.client.send(
            req, connect_timeout_s=connect_s, read_timeout_s=read_s, total_timeout_s=remaining_s
        )
        # The per-try timeout fired only because the deadline clipped it: say so. Only the
        # timeout that fired counts: a genuine connect timeout stays one when just the read
        # timeout was clipped (and vice versa).
        if (res.error_class is ErrorClass.TIMEOUT_READ and read_s < self.cfg.read_timeout_s) or (
            res.error_class is ErrorClass.TIMEOUT_CONNECT and connect_s < self.cfg.connect_timeout_s
        ):
            res.error_class = ErrorClass.DEADLINE_EXCEEDED
        return res
