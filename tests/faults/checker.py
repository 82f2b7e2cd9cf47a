"""The checker of a fault run (issue 15, item 1): what was produced against what was audited,
dead-lettered, committed and called.

Pure: the harness gathers the evidence (the requests topic read back, every terminal audit
record from the store, the DLQ, the group's committed offsets, the upstream simulator's
per-key call log) and this module judges it, so the rules are unit-tested without a broker
(tests/unit/test_fault_checker.py) and a failing run's report says exactly what broke:

- **missing**: a produced message with no live terminal record (I2);
- **doubled**: a position with more than one live terminal record (I2, exactly once);
- **undead-lettered**: an invalid message without its DLQ copy;
- **committed past unaudited**: a committed offset beyond a message that has no record (the
  at-least-once rule: commit only what is durably audited);
- **calls per key**: the upstream may see a key's calls only as its records allow. A key
  whose records are all first-hand gets exactly the sum of their attempts; a key whose call
  was made again after a lease expiry (``attempt_after_lease_expiry``) or whose record was
  rebuilt from the ledger (``outcome_from_ledger``) may have up to ``max_attempts`` more
  calls per such record, made by the process that crashed (I3, as the ledger allows).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Position = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True, slots=True)
class Produced:
    position: Position
    idempotency_key: str | None  # None for a message that cannot be parsed
    valid: bool


@dataclass(slots=True)
class Report:
    produced: int = 0
    audited: int = 0
    missing: list[Position] = field(default_factory=list)
    doubled: list[Position] = field(default_factory=list)
    not_dead_lettered: list[Position] = field(default_factory=list)
    committed_past_unaudited: list[Position] = field(default_factory=list)
    calls_beyond_allowed: dict[str, tuple[int, int]] = field(default_factory=dict)  # seen, max
    calls_short: dict[str, tuple[int, int]] = field(default_factory=dict)  # seen, expected

    @property
    def ok(self) -> bool:
        return not (self.missing or self.doubled or self.not_dead_lettered
                    or self.committed_past_unaudited or self.calls_beyond_allowed)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "produced": self.produced, "audited": self.audited,
            "missing": self.missing[:50], "missing_count": len(self.missing),
            "doubled": self.doubled[:50], "doubled_count": len(self.doubled),
            "not_dead_lettered": self.not_dead_lettered[:50],
            "committed_past_unaudited": self.committed_past_unaudited[:50],
            "calls_beyond_allowed": dict(list(self.calls_beyond_allowed.items())[:50]),
            "calls_short": dict(list(self.calls_short.items())[:50]),
        }  # fmt: skip


def _position(record: dict[str, Any]) -> Position:
    k = record["kafka"]
    return (k["topic"], int(k["partition"]), int(k["offset"]))


def check(
    produced: Iterable[Produced],
    audit: Iterable[dict[str, Any]],
    dead_lettered: Iterable[Position],
    committed: dict[tuple[str, int], int],
    upstream_calls: Counter[str],
    *,
    max_attempts: int,
) -> Report:
    """Judge one run; ``audit`` holds terminal call records (control records are skipped,
    replay records are not the live run's and are skipped too)."""
    report = Report()
    by_position: dict[Position, list[dict[str, Any]]] = defaultdict(list)
    for record in audit:
        if record.get("record_type") == "control" or record.get("replay_run_id"):
            continue
        by_position[_position(record)].append(record)
        report.audited += 1
    dlq = set(dead_lettered)
    messages = list(produced)
    report.produced = len(messages)
    for message in messages:
        records = by_position.get(message.position, [])
        if not records:
            report.missing.append(message.position)
        elif len(records) > 1:
            report.doubled.append(message.position)
        if not message.valid and message.position not in dlq:
            report.not_dead_lettered.append(message.position)
    missing = set(report.missing)
    for message in messages:
        topic, partition, offset = message.position
        if message.position in missing and committed.get((topic, partition), 0) > offset:
            report.committed_past_unaudited.append(message.position)
    _calls(report, by_position, upstream_calls, max_attempts)
    return report


def _calls(
    report: Report, by_position: dict[Position, list[dict[str, Any]]],
    upstream_calls: Counter[str], max_attempts: int,
) -> None:  # fmt: skip
    expected: Counter[str] = Counter()
    slack: Counter[str] = Counter()
    for records in by_position.values():
        for record in records:
            key = record.get("idempotency_key")
            if not key or record.get("outcome") == "invalid":
                continue
            expected[key] += len(record.get("attempts") or [])
            if (
                record.get("attempt_after_lease_expiry")
                or record.get("outcome_from_ledger")
                or record.get("outcome") == "duplicate_in_progress"
            ):
                slack[key] += max_attempts  # a crashed process's calls: not in any record
    for key in set(expected) | set(upstream_calls):
        seen, want = upstream_calls.get(key, 0), expected.get(key, 0)
        if seen > want + slack.get(key, 0):
            report.calls_beyond_allowed[key] = (seen, want + slack.get(key, 0))
        elif seen < want:  # a record claims attempts the upstream never saw: a log gap
            report.calls_short[key] = (seen, want)
