"""The idempotency gate in the handler, on a real SQLite ledger (ledger/gate.py, handler.py).

The guard is a stand-in counting calls (what is tested is the claim/settle protocol around
it); the ledger is the real embedded backend in a temp file. A ``Flaky`` wrapper makes that
real ledger refuse to answer, for the fail-closed cases.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from netscope.config import IdempotencyConfig, LedgerConfig
from netscope.contract.outcomes import ErrorClass, Outcome
from netscope.contract.records import AuditRecord
from netscope.contract.request import CallRequest
from netscope.handler import MessageHandler
from netscope.ledger.gate import IdempotencyGate
from netscope.ledger.model import (
    ClaimRequest,
    Completion,
    EntryState,
    LedgerKey,
    LedgerUnavailable,
    Settle,
)
from netscope.ledger.sqlite import SqliteLedger
from netscope.observability.events import (
    EventBus,
    LeaseExpired,
    LedgerAvailabilityChanged,
    LedgerRoundTrip,
)
from netscope.outbound.caller import CallResult
from netscope.tools.messages import encode, make_request
from tests.unit.test_handler import DeadLetters, Writer, work

RAND = random.Random(11)
DEADLINE_S = 1.0


class Guard:
    def __init__(self, result: CallResult) -> None:
        self.result = result
        self.calls: list[CallRequest] = []

    async def call(self, req: CallRequest, consumed_at: float | None = None) -> CallResult:
        self.calls.append(req)
        return self.result

    def budget_s(self, req: CallRequest) -> float:
        return DEADLINE_S


class Flaky:
    """The real ledger, or LedgerUnavailable while ``down``."""

    def __init__(self, inner: SqliteLedger) -> None:
        self.inner = inner
        self.down = False
        self.description = inner.description

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any) -> Any:
            if self.down:
                raise LedgerUnavailable("refused (test)")
            return await method(*args)

        return call


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Flaky]:
    inner = SqliteLedger(tmp_path / "ledger.sqlite3")
    await inner.open()
    yield Flaky(inner)
    await inner.close()


def build(
    ledger: Any,
    result: CallResult,
    *,
    completed_on: Sequence[str] = ("success", "http_4xx"),
    listener: Any = None,
    replay_run_id: str | None = None,
) -> tuple[MessageHandler, IdempotencyGate, Guard, Writer, list[Any]]:
    events = EventBus()
    seen: list[Any] = []
    events.subscribe(seen.append)
    if listener is not None:
        events.subscribe(listener)
    cfg = LedgerConfig(retry_interval_s=0.05, lease_margin_s=0.5)
    policy = IdempotencyConfig(completed_on=frozenset(completed_on))
    gate = IdempotencyGate(ledger, cfg, {"payments": policy}, {"payments": DEADLINE_S}, events)
    guard = Guard(result)
    writer = Writer()
    handler = MessageHandler(
        guards={"payments": guard},
        max_request_bytes={"payments": 1 << 20},
        max_message_bytes=1 << 20,
        writer=writer,
        dead_letters=DeadLetters([]),
        events=events,
        instance_id="i-1",
        gate=gate,
        replay_run_id=replay_run_id,
    )
    return handler, gate, guard, writer, seen


def message(key: str) -> bytes:
    return encode(make_request("payments", rand=RAND, idempotency_key=key))


def now_work(value: bytes, offset: int) -> Any:
    w = work(value, offset=offset)
    w.consumed_mono = time.monotonic()  # the deadline counts from now
    return w


def records(writer: Writer) -> list[AuditRecord]:
    return [r for _, r in writer.completed]


async def handle(handler: MessageHandler, value: bytes, offset: int) -> None:
    """One message to its record: the record reaches the writer once its key is settled."""
    await handler(now_work(value, offset))
    await handler.settled()


OK = CallResult(Outcome.SUCCESS, status=200)


async def test_a_completed_key_is_not_called_again_and_points_at_the_original(ledger) -> None:
    handler, _, guard, writer, _ = build(ledger, OK)
    await handle(handler, message("k-1"), 10)
    await handle(handler, message("k-1"), 11)  # a redelivery, or a replay

    assert len(guard.calls) == 1
    first, second = records(writer)
    assert first.outcome is Outcome.SUCCESS and not first.attempt_after_lease_expiry
    assert second.outcome is Outcome.DUPLICATE_SKIPPED
    assert second.duplicate_of == "t/2/10" and second.status == 200
    entry = (await ledger.get([LedgerKey("payments", "k-1")]))[LedgerKey("payments", "k-1")]
    assert entry.state is EntryState.COMPLETED and entry.completion.audit_ref == "t/2/10"


async def test_a_5xx_releases_the_key_so_another_message_calls_it_again(ledger) -> None:
    handler, _, guard, writer, seen = build(ledger, CallResult(Outcome.HTTP_ERROR, status=503))
    await handle(handler, message("k-5xx"), 1)
    entry = (await ledger.get([LedgerKey("payments", "k-5xx")]))[LedgerKey("payments", "k-5xx")]
    assert entry.state is EntryState.RELEASED
    assert entry.completion.audit_ref == "t/2/1" and entry.completion.status == 503
    await handle(handler, message("k-5xx"), 2)  # the same key in another message
    assert len(guard.calls) == 2
    assert [r.outcome for r in records(writer)] == [Outcome.HTTP_ERROR] * 2
    assert not any(r.outcome_from_ledger for r in records(writer))
    settles = [e for e in seen if isinstance(e, LedgerRoundTrip) and e.op == "settle"]
    assert [dict(e.results) for e in settles] == [{"released": 1}] * 2


async def test_a_refused_message_handled_again_is_not_called_again_but_a_replay_is(
    ledger,
) -> None:
    """The fault run's ``redelivery_after_release``: a 429 released the key, then the process
    died (or lost the partition) before the offset was committed. The redelivered message is
    that same refused call: rebuilt from the ledger, not sent a second time. A replay of the
    position is another run: called again, as releasing means."""
    handler, _, guard, writer, seen = build(ledger, CallResult(Outcome.HTTP_ERROR, status=429))
    value = message("k-429")
    await handle(handler, value, 7)
    await handle(handler, value, 7)  # redelivered: same position, same (live) run
    assert len(guard.calls) == 1
    first, again = records(writer)
    assert first.outcome is Outcome.HTTP_ERROR and not first.outcome_from_ledger
    assert again.outcome is Outcome.HTTP_ERROR and again.status == 429
    assert again.error_class is ErrorClass.HTTP_ERROR
    assert again.outcome_from_ledger and again.attempts == [] and again.duplicate_of is None
    assert again.request_id == first.request_id and again.kafka.offset == 7
    assert "refused before" in (again.error_detail or "")
    claims = [e for e in seen if isinstance(e, LedgerRoundTrip) and e.op == "claim"]
    assert [dict(e.results) for e in claims] == [{"claimed": 1}, {"released_here": 1}]
    # Still released under the same ref: a third delivery answers the same.
    entry = (await ledger.get([LedgerKey("payments", "k-429")]))[LedgerKey("payments", "k-429")]
    assert entry.state is EntryState.RELEASED and entry.completion.audit_ref == "t/2/7"

    replay, _, replay_guard, replay_writer, _ = build(
        ledger, CallResult(Outcome.SUCCESS, status=200), replay_run_id="r-1"
    )
    await handle(replay, value, 7)
    assert len(replay_guard.calls) == 1
    (replayed,) = records(replay_writer)
    assert replayed.outcome is Outcome.SUCCESS and replayed.replay_run_id == "r-1"
    assert not replayed.outcome_from_ledger
    entry = (await ledger.get([LedgerKey("payments", "k-429")]))[LedgerKey("payments", "k-429")]
    assert entry.state is EntryState.COMPLETED
    assert entry.completion.audit_ref == "replay=r-1:t/2/7"
    # The live message handled yet again now finds the key completed by the replay.
    await handle(handler, value, 7)
    assert len(guard.calls) == 1
    assert records(writer)[-1].outcome is Outcome.DUPLICATE_SKIPPED
    assert records(writer)[-1].duplicate_of == "replay=r-1:t/2/7"


async def test_a_refusal_before_any_attempt_is_kept_with_its_class(ledger) -> None:
    rejected = CallResult(Outcome.REJECTED_CIRCUIT_OPEN, error_class=ErrorClass.CIRCUIT_OPEN)
    handler, _, guard, writer, _ = build(ledger, rejected)
    await handle(handler, message("k-open"), 3)
    await handle(handler, message("k-open"), 3)
    assert len(guard.calls) == 1
    first, again = records(writer)
    assert again.outcome is Outcome.REJECTED_CIRCUIT_OPEN and again.outcome_from_ledger
    assert again.error_class is first.error_class is ErrorClass.CIRCUIT_OPEN


async def test_a_4xx_counts_as_done_by_default_and_the_policy_decides(ledger) -> None:
    handler, _, guard, _, _ = build(ledger, CallResult(Outcome.HTTP_ERROR, status=422))
    await handle(handler, message("k-4xx"), 1)
    await handle(handler, message("k-4xx"), 2)
    assert len(guard.calls) == 1

    handler, _, guard, _, _ = build(
        ledger, CallResult(Outcome.HTTP_ERROR, status=422), completed_on=["success"]
    )
    await handle(handler, message("k-4xx-strict"), 1)
    await handle(handler, message("k-4xx-strict"), 2)
    assert len(guard.calls) == 2


async def test_a_key_held_by_another_claim_waits_then_is_a_duplicate(ledger) -> None:
    told_in_progress = asyncio.Event()

    def listener(ev: Any) -> None:
        if isinstance(ev, LedgerRoundTrip) and ("in_progress", 1) in ev.results:
            told_in_progress.set()

    handler, _, guard, writer, _ = build(ledger, OK, listener=listener)
    other = ClaimRequest(LedgerKey("payments", "k-busy"), "other-instance", 30.0, 3600.0)
    await ledger.claim([other], time.time())

    async def other_instance_finishes() -> None:
        await told_in_progress.wait()  # our claim was told "in progress": now it completes
        done = Completion("success", 201, 1, "t/0/99", time.time())
        await ledger.settle([Settle(other.key, other.token, done, 3600.0)], time.time())

    await asyncio.gather(handle(handler, message("k-busy"), 3), other_instance_finishes())
    assert guard.calls == []
    (record,) = records(writer)
    assert record.outcome is Outcome.DUPLICATE_SKIPPED and record.duplicate_of == "t/0/99"


async def test_a_key_held_past_the_deadline_is_not_called(ledger) -> None:
    handler, _, guard, writer, _ = build(ledger, OK)
    other = ClaimRequest(LedgerKey("payments", "k-held"), "other-instance", 30.0, 3600.0)
    await ledger.claim([other], time.time())
    await handle(handler, message("k-held"), 4)
    assert guard.calls == []
    (record,) = records(writer)
    assert record.outcome is Outcome.DUPLICATE_IN_PROGRESS and record.attempts == []


async def test_an_expired_lease_is_called_again_marked_and_counted(ledger) -> None:
    handler, _, guard, writer, seen = build(ledger, OK)
    crashed = ClaimRequest(LedgerKey("payments", "k-crash"), "dead-instance", 1.0, 3600.0)
    await ledger.claim([crashed], time.time() - 5)  # its lease ran out 4 s ago
    await handle(handler, message("k-crash"), 5)
    assert len(guard.calls) == 1
    (record,) = records(writer)
    assert record.outcome is Outcome.SUCCESS and record.attempt_after_lease_expiry
    assert [type(e) for e in seen if isinstance(e, LeaseExpired)] == [LeaseExpired]


async def down_past_the_deadline(
    handler: MessageHandler, gate: IdempotencyGate, ledger: Flaky, writer: Writer, value: bytes
) -> asyncio.Task[None]:
    """The message handled while the ledger is down, until its deadline has passed: by then
    it has no record (it waits to read its key), then the ledger comes back."""
    ledger.down = True
    task = asyncio.create_task(handle(handler, value, 6))
    past = time.monotonic() + DEADLINE_S + 0.2  # the scenario: an outage outlasting it
    while time.monotonic() < past or gate.available:
        assert not task.done() and records(writer) == []
        await asyncio.sleep(0.02)
    assert not task.done() and records(writer) == [], "ended blind, without reading its key"
    ledger.down = False
    return task


async def test_a_ledger_down_calls_nothing_and_ends_once_the_key_can_be_read(ledger) -> None:
    handler, gate, guard, writer, seen = build(ledger, OK)
    task = await down_past_the_deadline(handler, gate, ledger, writer, message("k-down"))
    await asyncio.wait_for(task, 5)
    assert guard.calls == []
    (record,) = records(writer)
    assert record.outcome is Outcome.LEDGER_UNAVAILABLE
    assert record.error_class is ErrorClass.LEDGER_UNAVAILABLE
    assert "past this message's deadline" in (record.error_detail or "")
    changes = [e for e in seen if isinstance(e, LedgerAvailabilityChanged)]
    assert [c.available for c in changes] == [False]

    watcher = asyncio.create_task(gate.watch())
    try:
        deadline = time.monotonic() + 5
        while not gate.available:
            assert time.monotonic() < deadline, "the gate never saw the ledger come back"
            await asyncio.sleep(0.02)
    finally:
        watcher.cancel()
    await handle(handler, message("k-down"), 7)
    assert len(guard.calls) == 1


async def test_a_redelivery_in_an_outage_is_not_audited_as_never_called(ledger) -> None:
    """Its first holder claimed (and may have called) and died unsettled; the redelivery
    meets the ledger down past its deadline. Its record says the key was held, not
    ``ledger_unavailable`` (which would claim the upstream was never called), and the dead
    claim is left for a later takeover."""
    handler, gate, guard, writer, _ = build(ledger, OK)
    crashed = ClaimRequest(LedgerKey("payments", "k-held"), "dead-instance", 1.0, 3600.0)
    await ledger.claim([crashed], time.time() - 5)  # its lease ran out 4 s ago
    task = await down_past_the_deadline(handler, gate, ledger, writer, message("k-held"))
    await asyncio.wait_for(task, 5)
    assert guard.calls == []
    (record,) = records(writer)
    assert record.outcome is Outcome.DUPLICATE_IN_PROGRESS
    assert "run out" in (record.error_detail or "")
    (entry,) = (await ledger.get([crashed.key])).values()
    assert entry.state is EntryState.IN_PROGRESS and entry.token == "dead-instance"


async def test_a_key_completed_during_the_outage_ends_as_its_duplicate(ledger) -> None:
    handler, gate, guard, writer, _ = build(ledger, OK)
    other = ClaimRequest(LedgerKey("payments", "k-done"), "other-instance", 30.0, 3600.0)
    await ledger.claim([other], time.time())
    done = Completion("success", 201, 1, "t/0/3", time.time())
    await ledger.settle([Settle(other.key, other.token, done, 3600.0)], time.time())
    task = await down_past_the_deadline(handler, gate, ledger, writer, message("k-done"))
    await asyncio.wait_for(task, 5)
    assert guard.calls == []
    (record,) = records(writer)
    assert record.outcome is Outcome.DUPLICATE_SKIPPED and record.duplicate_of == "t/0/3"


async def test_claims_of_one_fetch_share_one_round_trip(ledger) -> None:
    handler, _, guard, _, seen = build(ledger, OK)
    await asyncio.gather(*(handle(handler, message(f"k-{i}"), i) for i in range(50)))
    claims = [e for e in seen if isinstance(e, LedgerRoundTrip) and e.op == "claim"]
    assert len(guard.calls) == 50
    assert len(claims) == 1 and claims[0].items == 50
    assert dict(claims[0].results) == {"claimed": 50}


async def test_a_call_whose_record_was_lost_is_recorded_from_the_ledger_not_as_a_duplicate(
    ledger,
) -> None:
    """The process settled the key, then died before the record was durable: the redelivered
    message is that call, not a duplicate of itself."""
    handler, _, guard, writer, _ = build(ledger, OK)
    crashed = ClaimRequest(LedgerKey("payments", "k-lost"), "dead-instance", 30.0, 3600.0)
    await ledger.claim([crashed], time.time())
    done = Completion("success", 201, 2, "t/2/42", time.time())  # this message's position
    await ledger.settle([Settle(crashed.key, crashed.token, done, 3600.0)], time.time())

    await handle(handler, message("k-lost"), 42)  # redelivered: same offset

    assert guard.calls == []
    (record,) = records(writer)
    assert record.outcome is Outcome.SUCCESS and record.status == 201
    assert record.outcome_from_ledger and record.duplicate_of is None
    assert "2 attempt(s)" in (record.error_detail or "")


class AnswerLost(Flaky):
    """The ledger writes the first claim (an exchange with a claim in it), then goes down
    before answering it."""

    def __init__(self, inner: SqliteLedger) -> None:
        super().__init__(inner)
        self.lose_next_claim = True
        self.lost = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        call = super().__getattr__(name)
        if name != "exchange":
            return call

        async def exchange(settles: Any, claims: Any, now: float) -> Any:
            answer = await call(settles, claims, now)
            if claims and self.lose_next_claim:
                self.lose_next_claim = False
                self.down = True
                self.lost.set()
                raise LedgerUnavailable("connection lost while answering (test)")
            return answer

        return exchange


@pytest.fixture
async def answer_lost(tmp_path: Path) -> AsyncIterator[AnswerLost]:
    inner = SqliteLedger(tmp_path / "ledger.sqlite3")
    await inner.open()
    yield AnswerLost(inner)
    await inner.close()


async def test_its_own_claim_unanswered_in_an_outage_is_not_someone_elses(answer_lost) -> None:
    """Found by CI (test_ledger_faults): a claim reached PostgreSQL as it stopped, its answer
    was lost; past the deadline the gate read the key, found a claim unsettled and audited
    ``duplicate_in_progress`` for a key nobody had called. It was its own claim."""
    handler, _, guard, writer, _ = build(answer_lost, OK)
    task = asyncio.create_task(handle(handler, message("k-lost"), 6))
    past = time.monotonic() + DEADLINE_S + 0.2
    while time.monotonic() < past:
        assert not task.done()
        await asyncio.sleep(0.02)
    answer_lost.down = False
    await asyncio.wait_for(task, 5)
    assert guard.calls == []
    (record,) = records(writer)
    assert record.outcome is Outcome.LEDGER_UNAVAILABLE, record
    assert "its own claim" in (record.error_detail or "")


async def test_its_own_claim_unanswered_is_its_lease_when_the_ledger_returns(answer_lost) -> None:
    """The same lost answer within the deadline: the retry finds the key held by its own
    token, and the message is called once, as the holder of its own claim."""
    handler, _, guard, writer, _ = build(answer_lost, OK)
    task = asyncio.create_task(handle(handler, message("k-back"), 6))
    await asyncio.wait_for(answer_lost.lost.wait(), 5)
    answer_lost.down = False  # back well within the deadline
    await asyncio.wait_for(task, 5)
    assert len(guard.calls) == 1
    (record,) = records(writer)
    assert record.outcome is Outcome.SUCCESS
    assert not record.attempt_after_lease_expiry
