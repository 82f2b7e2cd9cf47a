"""The fault run's checker (tests/faults/checker.py): every rule can fail, on evidence built
by hand the way the harness reads it from the broker, the store and the simulator."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.faults.checker import Produced, check

T = "requests"


def rec(offset: int, key: str, attempts: int = 1, **extra: Any) -> dict[str, Any]:
    return {"kafka": {"topic": T, "partition": 0, "offset": offset}, "idempotency_key": key,
            "outcome": extra.pop("outcome", "success"), "record_type": "call",
            "attempts": [{"n": i + 1} for i in range(attempts)], **extra}  # fmt: skip


def produced(n: int, invalid: tuple[int, ...] = ()) -> list[Produced]:
    return [Produced((T, 0, i), None if i in invalid else f"k{i}", i not in invalid)
            for i in range(n)]  # fmt: skip


def test_a_clean_run_is_ok() -> None:
    audit = [rec(0, "k0"), rec(1, "k1", attempts=3), rec(2, "", outcome="invalid")]
    report = check(produced(3, invalid=(2,)), audit, [(T, 0, 2)], {(T, 0): 3},
                   Counter({"k0": 1, "k1": 3}), max_attempts=3)  # fmt: skip
    assert report.ok, report.to_dict()
    assert (report.produced, report.audited) == (3, 3)


def test_missing_doubled_and_committed_past_unaudited_are_named() -> None:
    audit = [rec(0, "k0"), rec(0, "k0", attempts=0, outcome="duplicate_skipped"), rec(2, "k2")]
    report = check(produced(3), audit, [], {(T, 0): 3}, Counter({"k0": 1, "k2": 1}),
                   max_attempts=3)  # fmt: skip
    assert report.missing == [(T, 0, 1)] and report.doubled == [(T, 0, 0)]
    assert report.committed_past_unaudited == [(T, 0, 1)]
    assert not report.ok
    # Not yet committed past it: missing (redelivery will come), but no commit violation.
    report = check(produced(3), audit, [], {(T, 0): 1}, Counter({"k0": 1, "k2": 1}),
                   max_attempts=3)  # fmt: skip
    assert report.committed_past_unaudited == []


def test_an_invalid_message_needs_its_dead_letter() -> None:
    audit = [rec(0, "", outcome="invalid")]
    report = check(produced(1, invalid=(0,)), audit, [], {(T, 0): 1}, Counter(), max_attempts=3)
    assert report.not_dead_lettered == [(T, 0, 0)] and not report.ok


def test_calls_per_key_exact_unless_a_crashed_process_may_have_called() -> None:
    audit = [rec(0, "k0", attempts=2), rec(1, "k1", attempt_after_lease_expiry=True)]
    calls = Counter({"k0": 3, "k1": 4})  # k0: one call no record explains; k1: within 1 + 3
    report = check(produced(2), audit, [], {(T, 0): 2}, calls, max_attempts=3)
    assert report.calls_beyond_allowed == {"k0": (3, 2)}
    calls = Counter({"k0": 2, "k1": 5})
    report = check(produced(2), audit, [], {(T, 0): 2}, calls, max_attempts=3)
    assert report.calls_beyond_allowed == {"k1": (5, 4)}
    # Rebuilt from the ledger: its attempts are gone, its calls were the crashed process's.
    audit = [rec(0, "k0", attempts=0, outcome_from_ledger=True)]
    report = check(produced(1), audit, [], {(T, 0): 1}, Counter({"k0": 2}), max_attempts=3)
    assert report.ok, report.to_dict()
    # Held by another claim that never settled: that holder may have called before dying.
    # Not called, as the ledger told: a ledger_unavailable record allows no call at all.
    for outcome, allowed in (("duplicate_in_progress", True), ("ledger_unavailable", False)):
        audit = [rec(0, "k0", attempts=0, outcome=outcome)]
        report = check(produced(1), audit, [], {(T, 0): 1}, Counter({"k0": 1}), max_attempts=3)
        assert report.ok is allowed, (outcome, report.to_dict())


def test_replay_and_control_records_are_not_the_live_runs() -> None:
    audit = [rec(0, "k0"), rec(0, "k0", replay_run_id="r1"), {"record_type": "control"}]
    report = check(produced(1), audit, [], {(T, 0): 1}, Counter({"k0": 1}), max_attempts=3)
    assert report.ok and report.audited == 1
