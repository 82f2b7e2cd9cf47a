"""The incident journal's data (runbook section 9), folded from a period's audit records.

``IncidentFold`` takes records one at a time, in any order, and keeps only per-minute
counters, log-bucket latency histograms (forensics/sketch.py) and the control records, so
its memory does not grow with the number of calls: ten million records fold in the same
space as ten thousand. ``result()`` gives the JSON document the report renders (and that
tests and tools read): the detected start and end, the impact by upstream, the invariants
touched with their evidence, the control-event timeline, breaker states and degraded
periods over time, and the per-minute series the plots draw.

Series are binned by ``completed_at`` (when the outcome happened at NetScope, the clock the
control events use); the window selects calls by event time (``kafka.timestamp_ms``) like
every ``netscope audit`` command. Replayed records (``replay_run_id``) are counted apart and
left out of the series: a replay of last night's window happens now, not then.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from netscope.contract.outcomes import (
    DUPLICATE_OUTCOMES,
    ERROR_OUTCOMES,
    NO_UPSTREAM_LATENCY_OUTCOMES,
    REJECTED_OUTCOMES,
    TIMEOUT_OUTCOMES,
    Outcome,
)
from netscope.forensics.sketch import LogHistogram

REPORT_SCHEMA = "netscope.report.v1"
ERROR_RATE_THRESHOLD = 0.02  # runbook section 8: errors / requests > 2 % is an alert
MIN_FAILED = 3  # failures in a bin before its ratio can call it abnormal
GAP_BINS = 5  # abnormal bins this close belong to one period
I1_SLACK_S = 0.5  # docs/invariants.md, I1: deadline + 0.5 s
EXAMPLES = 3  # request_ids kept as evidence per finding
TIMEOUT_KINDS = tuple(str(o) for o in sorted(TIMEOUT_OUTCOMES))
# Failures a caller sees, whoever caused them (input errors are the DLQ, counted apart).
FAILED = frozenset(ERROR_OUTCOMES) - {Outcome.INVALID}
NOT_CLOSED = {"open", "half_open", "forced_open"}


def iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Finding:
    """A count with a few example request_ids: the evidence behind an invariant line."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, request_id: str | None) -> None:
        self.count += 1
        if request_id and len(self.examples) < EXAMPLES:
            self.examples.append(request_id)


class _Partition:
    """The offsets a partition's records had, as a bitmap from the lowest seen: one bit an
    offset (ten million records: about a megabyte), where a set would take hundreds."""

    __slots__ = ("base", "bits", "distinct", "records")

    def __init__(self) -> None:
        self.records = 0
        self.distinct = 0
        self.base: int | None = None
        self.bits = bytearray()

    def add(self, offset: int) -> bool:
        """False when this offset already had a record (a duplicate)."""
        self.records += 1
        if self.base is None:
            self.base = offset
        elif offset < self.base:  # rare (objects are read roughly in offset order): rebase
            shift = (self.base - offset + 7) // 8
            self.bits[:0] = bytes(shift)
            self.base -= shift * 8
        i = offset - self.base
        if i // 8 >= len(self.bits):
            self.bits.extend(bytes(max(i // 8 + 1 - len(self.bits), len(self.bits) // 2)))
        byte, mask = i // 8, 1 << (i % 8)
        if self.bits[byte] & mask:
            return False
        self.bits[byte] |= mask
        self.distinct += 1
        return True

    def span(self) -> tuple[int, int] | None:
        """The lowest and highest offsets seen."""
        if self.base is None:
            return None
        lo = next(i for i, byte in enumerate(self.bits) if byte)
        hi = next(i for i in range(len(self.bits) - 1, -1, -1) if self.bits[i])
        low = self.base + lo * 8 + (self.bits[lo] & -self.bits[lo]).bit_length() - 1
        high = self.base + hi * 8 + self.bits[hi].bit_length() - 1
        return low, high


class IncidentFold:
    """Fold a period's records into the journal's data. Memory: per bin and upstream
    counters and histograms, the control records, and a bitmap of offsets per partition."""

    def __init__(
        self,
        from_ms: int,
        to_ms: int,
        *,
        deadlines_s: dict[str, float] | None = None,
        bin_s: int = 60,
    ) -> None:
        self.from_ms, self.to_ms, self.bin_s = from_ms, to_ms, bin_s
        self.deadlines_s = deadlines_s or {}
        self.calls = 0
        self.replayed = 0
        self.outcomes: Counter[str] = Counter()
        self.per_bin: dict[tuple[int, str, str], int] = {}  # (bin, upstream, outcome)
        self.latency: dict[tuple[int, str], LogHistogram] = {}
        self.timeouts: dict[tuple[int, str], int] = {}  # (bin, kind), over every attempt
        self.impact: dict[str, Counter[str]] = {}
        self.controls: list[dict[str, Any]] = []
        self.partitions: dict[tuple[str, int], _Partition] = {}  # for I2: gaps, duplicates
        self.findings: dict[str, Finding] = {}
        self.attempts = 0
        self.retries = 0
        self.replay_runs: Counter[str] = Counter()

    # -- folding ----------------------------------------------------------------------------

    def add(self, record: dict[str, Any]) -> None:
        if record.get("record_type") == "control":
            self.controls.append(record)
            return
        kafka = record["kafka"]
        if not self.from_ms <= kafka["timestamp_ms"] < self.to_ms:
            return
        run = record.get("replay_run_id")
        if run:
            self.replayed += 1
            self.replay_runs[run] += 1
            return
        self.calls += 1
        outcome = record["outcome"]
        upstream = record.get("upstream") or "(invalid)"
        rid = record.get("request_id")
        self.outcomes[outcome] += 1
        b = int(record["completed_at"] // self.bin_s)
        key = (b, upstream, outcome)
        self.per_bin[key] = self.per_bin.get(key, 0) + 1
        latency = record.get("latency_s") or 0.0
        if outcome not in NO_UPSTREAM_LATENCY_OUTCOMES:
            hist = self.latency.get((b, upstream))
            if hist is None:
                hist = self.latency[(b, upstream)] = LogHistogram()
            hist.add(latency)
        attempts = record.get("attempts") or []
        self.attempts += len(attempts)
        self.retries += max(0, len(attempts) - 1)
        for attempt in attempts:
            kind = attempt.get("error_class")
            if kind in TIMEOUT_KINDS:
                tb = int(attempt["started_at"] // self.bin_s)
                self.timeouts[(tb, kind)] = self.timeouts.get((tb, kind), 0) + 1
        self._impact(upstream, outcome, latency, rid)
        self._evidence(record, outcome, upstream, latency, rid)
        part = self.partitions.get((kafka["topic"], kafka["partition"]))
        if part is None:
            part = self.partitions[(kafka["topic"], kafka["partition"])] = _Partition()
        if not part.add(kafka["offset"]):
            self._find("i2_duplicate_record", rid)

    def _impact(self, upstream: str, outcome: str, latency: float, rid: str | None) -> None:
        if outcome == Outcome.INVALID:
            self._find("dead_lettered", rid)
            return
        c = self.impact.get(upstream)
        if c is None:
            c = self.impact[upstream] = Counter()
        c["calls"] += 1
        if outcome in FAILED:
            c["failed"] += 1
        if outcome in REJECTED_OUTCOMES:
            c["rejected"] += 1
        if outcome in TIMEOUT_OUTCOMES:
            c["timeouts"] += 1
        deadline = self.deadlines_s.get(upstream)
        if outcome == Outcome.DEADLINE_EXCEEDED or (deadline is not None and latency > deadline):
            c["past_deadline"] += 1

    def _evidence(
        self, record: dict[str, Any], outcome: str, upstream: str, latency: float,
        rid: str | None,
    ) -> None:  # fmt: skip
        if outcome in TIMEOUT_OUTCOMES:
            self._find("i1_timeout_outcome", rid)
        deadline = self.deadlines_s.get(upstream)
        if deadline is not None and latency > deadline + I1_SLACK_S:
            self._find("i1_past_deadline_slack", rid)
        if outcome in DUPLICATE_OUTCOMES:
            self._find("i3_duplicate_kept_from_upstream", rid)
        if record.get("attempt_after_lease_expiry"):
            self._find("i3_attempt_after_lease_expiry", rid)
        if record.get("outcome_from_ledger"):
            self._find("i2_outcome_from_ledger", rid)
        trace = record.get("trace_id")
        if not (isinstance(trace, str) and len(trace) == 32):
            self._find("i4_no_trace_id", rid)
        if outcome in REJECTED_OUTCOMES:
            self._find(f"i5_{outcome}", rid)

    def _find(self, name: str, rid: str | None) -> None:
        finding = self.findings.get(name)
        if finding is None:
            finding = self.findings[name] = Finding()
        finding.add(rid)

    # -- the journal's data -----------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        controls = sorted(self.controls, key=lambda r: (r["at"], r.get("seq", 0)))
        window_s = (self.from_ms / 1000, self.to_ms / 1000)
        in_window = [r for r in controls if window_s[0] <= r["at"] < window_s[1] + self.bin_s]
        breakers = _breaker_intervals(in_window, *window_s)
        degraded = _degraded_periods(in_window, window_s[1])
        bins = self._bins()
        series = self._series(bins)
        abnormal = self._abnormal(bins, series, breakers, degraded)
        periods = _periods(abnormal, self.bin_s)
        main = max(periods, key=lambda p: p[2]) if periods else None
        return {
            "schema": REPORT_SCHEMA,
            "window": {"from": iso(window_s[0]), "to": iso(window_s[1]),
                       "from_ms": self.from_ms, "to_ms": self.to_ms, "bin_s": self.bin_s},
            "detected": {
                "start": iso(main[0]) if main else None,
                "end": iso(main[1]) if main else None,
                "periods": [
                    {"start": iso(a), "end": iso(b), "abnormal_bins": n} for a, b, n in periods
                ],
                "abnormal_bins": [iso(at) for at in abnormal],
                "rule": (
                    f"a {self.bin_s} s bin is abnormal when an upstream's failed calls "
                    f"(at least {MIN_FAILED}) exceed {ERROR_RATE_THRESHOLD:.0%} of its calls "
                    "and twice its median ratio over the window, a breaker was not closed, "
                    "or the audit was in degraded mode; the incident is the longest run of "
                    f"such bins (gaps up to {GAP_BINS} bins)"
                ),
            },
            "totals": {
                "calls": self.calls,
                "by_outcome": dict(self.outcomes.most_common()),
                "dead_lettered": self.outcomes.get(Outcome.INVALID, 0),
                "attempts": self.attempts,
                "retries": self.retries,
                "replayed_records": self.replayed,
                "replay_runs": dict(self.replay_runs),
            },
            "impact": {up: dict(c) for up, c in sorted(self.impact.items())},
            "invariants": self._invariants(breakers, degraded, controls),
            "control_events": [_control_row(r) for r in in_window],
            "breakers": breakers,
            "degraded_periods": degraded,
            "backlog": _backlog_points(in_window),
            "series": series,
            "partitions": self._partitions(),
        }

    def _bins(self) -> list[int]:
        first = self.from_ms // 1000 // self.bin_s
        last = (self.to_ms // 1000 - 1) // self.bin_s
        seen = [b for b, _, _ in self.per_bin]
        if seen:  # a call consumed in the window may complete just after it
            last = max(last, min(max(seen), last + 60))
        return list(range(first, last + 1))

    def _series(self, bins: list[int]) -> dict[str, Any]:
        index = {b: i for i, b in enumerate(bins)}
        n = len(bins)
        outcomes: dict[str, dict[str, list[int]]] = {}
        for (b, up, outcome), count in self.per_bin.items():
            if b in index:
                outcomes.setdefault(up, {}).setdefault(outcome, [0] * n)[index[b]] += count
        latency: dict[str, dict[str, list[float | None]]] = {}
        for (b, up), hist in self.latency.items():
            if b not in index:
                continue
            row = latency.setdefault(up, {q: [None] * n for q in ("p50", "p95", "p99")})
            for q, v in zip(("p50", "p95", "p99"), hist.quantiles((0.5, 0.95, 0.99)), strict=True):
                row[q][index[b]] = v
        timeouts = {kind: [0] * n for kind in TIMEOUT_KINDS}
        for (b, kind), count in self.timeouts.items():
            if b in index:
                timeouts[kind][index[b]] += count
        return {
            "bins": [iso(b * self.bin_s) for b in bins],
            "outcomes": {up: dict(sorted(v.items())) for up, v in sorted(outcomes.items())},
            "latency_s": dict(sorted(latency.items())),
            "timeouts": timeouts,
        }

    def _abnormal(
        self, bins: list[int], series: dict[str, Any], breakers: list[dict[str, Any]],
        degraded: list[dict[str, Any]],
    ) -> list[float]:  # fmt: skip
        """Bins where something was wrong: an upstream failing more than usual, a breaker
        not closed, the audit degraded. "More than usual" is above the runbook's 2 % and
        above twice the upstream's median failure ratio over the window, with at least
        ``MIN_FAILED`` failures in the bin (a steady background of errors is not an
        incident; one failure among three calls is not a spike)."""
        ratios: dict[str, list[tuple[int, int]]] = {}
        for up, by_outcome in series["outcomes"].items():
            totals = [sum(v[i] for v in by_outcome.values()) for i in range(len(bins))]
            failed = [sum(v[i] for o, v in by_outcome.items() if o in FAILED)
                      for i in range(len(bins))]  # fmt: skip
            ratios[up] = list(zip(failed, totals, strict=True))
        limits = {}
        for up, pairs in ratios.items():
            observed = sorted(f / t for f, t in pairs if t)
            median = observed[len(observed) // 2] if observed else 0.0
            limits[up] = max(ERROR_RATE_THRESHOLD, 2 * median)
        out = []
        for i, b in enumerate(bins):
            start, end = b * self.bin_s, (b + 1) * self.bin_s
            bad = any(
                f >= MIN_FAILED and f / t > limits[up]
                for up, pairs in ratios.items()
                for f, t in (pairs[i],)
            )
            bad = bad or any(
                iv["state"] in NOT_CLOSED and iv["start_at"] < end and iv["end_at"] > start
                for iv in breakers
            )
            bad = bad or any(p["start_at"] < end and p["end_at"] > start for p in degraded)
            if bad:
                out.append(float(start))
        return out

    def _partitions(self) -> list[dict[str, Any]]:
        out = []
        for (topic, partition), p in sorted(self.partitions.items()):
            span = p.span()
            first, last = span if span else (None, None)
            missing = (last - first + 1) - p.distinct if span else 0  # type: ignore[operator]
            out.append({"topic": topic, "partition": partition, "records": p.records,
                        "first_offset": first, "last_offset": last, "missing_offsets": missing,
                        "duplicate_records": p.records - p.distinct})  # fmt: skip
        return out

    def _invariants(
        self, breakers: list[dict[str, Any]], degraded: list[dict[str, Any]],
        controls: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:  # fmt: skip
        f = self.findings
        return [
            _i1(f, self.deadlines_s),
            _i2(f, degraded, controls, self._partitions()),
            _i3(f),
            _i4(f, self.calls),
            _i5(f, breakers, self.retries, self.attempts),
        ]


def _periods(abnormal: list[float], bin_s: int) -> list[tuple[float, float, int]]:
    """Abnormal bins as periods (start, end, bins): bins up to ``GAP_BINS`` apart are one
    period. The detected incident is the period with the most abnormal bins; stray bins
    elsewhere stay listed, not stretched into it."""
    out: list[tuple[float, float, int]] = []
    for at in abnormal:
        if out and at - out[-1][1] <= GAP_BINS * bin_s:
            start, _, n = out[-1]
            out[-1] = (start, at + bin_s, n + 1)
        else:
            out.append((at, at + bin_s, 1))
    return out


# -- invariants: each a status and its evidence (docs/invariants.md defines them) ------------

HELD, TOUCHED, CHECK, VIOLATED = "held", "touched", "check", "violated"


def _line(finding: Finding | None, text: str) -> str:
    if finding is None:
        return ""
    ex = f" (e.g. {', '.join(finding.examples)})" if finding.examples else ""
    return f"{finding.count} {text}{ex}"


def _invariant(id_: str, name: str, status: str, evidence: list[str]) -> dict[str, Any]:
    return {"id": id_, "name": name, "status": status, "evidence": [e for e in evidence if e]}


def _i1(f: dict[str, Finding], deadlines: dict[str, float]) -> dict[str, Any]:
    late = f.get("i1_past_deadline_slack")
    timeouts = f.get("i1_timeout_outcome")
    status = VIOLATED if late else TOUCHED if timeouts else HELD
    evidence = [
        _line(late, f"calls ended later than their upstream's deadline_s + {I1_SLACK_S} s"),
        _line(timeouts, "calls ended by a timeout (the deadline bounded them)"),
    ]
    if not deadlines:
        evidence.append("no upstream deadline known (no configuration): latencies not checked")
    return _invariant("I1", "Bounded time", status, evidence)


def _i2(
    f: dict[str, Finding], degraded: list[dict[str, Any]], controls: list[dict[str, Any]],
    partitions: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    dup = f.get("i2_duplicate_record")
    missing = [p for p in partitions if p["missing_offsets"]]
    abandoned = sum(
        int(r.get("data", {}).get("abandoned_in_flight") or 0)
        for r in controls if r.get("event") == "instance_stopping"
    )  # fmt: skip
    status = HELD
    evidence = []
    if degraded or abandoned or f.get("i2_outcome_from_ledger"):
        status = TOUCHED
    if degraded:
        evidence.append(f"{len(degraded)} degraded period(s): the audit went to the local spool")
    if abandoned:
        evidence.append(f"{abandoned} calls abandoned in flight at a stop (redelivered by Kafka)")
    evidence.append(_line(f.get("i2_outcome_from_ledger"),
                          "records rebuilt from the ledger after a crash (outcome_from_ledger)"))
    if missing:
        status = CHECK
        evidence.append(
            f"{sum(p['missing_offsets'] for p in missing)} offsets without a record in "
            f"{len(missing)} partition(s) (a message whose event time is outside the window "
            "shows here too: widen the window before concluding)"
        )
    if dup:
        status = VIOLATED
        evidence.append(_line(dup, "offsets with more than one live terminal record"))
    if partitions and not missing and not dup:
        evidence.append(f"every offset of {len(partitions)} partition(s) has exactly one record")
    return _invariant("I2", "No loss", status, evidence)


def _i3(f: dict[str, Finding]) -> dict[str, Any]:
    kept = f.get("i3_duplicate_kept_from_upstream")
    expired = f.get("i3_attempt_after_lease_expiry")
    status = CHECK if expired else TOUCHED if kept else HELD
    return _invariant("I3", "No duplicate side effect", status, [
        _line(kept, "duplicates kept from the upstream by the idempotency ledger"),
        _line(expired, "calls made after an earlier claim's lease ran out (same Idempotency-Key;"
                       " check the upstream honours it)"),
    ])  # fmt: skip


def _i4(f: dict[str, Finding], calls: int) -> dict[str, Any]:
    missing = f.get("i4_no_trace_id")
    if missing:
        return _invariant("I4", "End-to-end correlation", VIOLATED,
                          [_line(missing, "records without a valid trace_id")])  # fmt: skip
    return _invariant("I4", "End-to-end correlation", HELD,
                      [f"all {calls} records carry a trace_id"] if calls else [])  # fmt: skip


def _i5(
    f: dict[str, Finding], breakers: list[dict[str, Any]], retries: int, attempts: int
) -> dict[str, Any]:
    opened = [iv for iv in breakers if iv["state"] in NOT_CLOSED]
    rejected = [_line(f.get(f"i5_{o}"), f"calls rejected ({o})") for o in sorted(REJECTED_OUTCOMES)]
    status = TOUCHED if opened or any(rejected) else HELD
    evidence = []
    if opened:
        which = sorted({f"{iv['upstream']} {iv['state']}" for iv in opened})
        evidence.append(f"{len(opened)} breaker period(s) not closed: " + ", ".join(which))
    evidence += rejected
    if attempts:
        evidence.append(f"{retries} retries over {attempts} attempts")
    return _invariant("I5", "Upstream protection", status, evidence)


# -- control records into intervals -----------------------------------------------------------


def _control_row(r: dict[str, Any]) -> dict[str, Any]:
    data = r.get("data") or {}
    what = r["event"]
    if what == "breaker_transition":
        what = f"breaker {data.get('from')} -> {data.get('to')}"
    elif what == "degraded_mode":
        what = "degraded mode entered" if data.get("degraded") else "degraded mode left"
    elif what == "throttle_changed":
        rate = data.get("rate_per_s")
        what = "ingest unlimited" if rate is None else "ingest paused" if rate == 0 else (
            f"ingest limited to {rate:g}/s")  # fmt: skip
    return {
        "at": iso(r["at"]), "at_s": r["at"], "event": r["event"], "what": what,
        "upstream": r.get("upstream"), "instance_id": r.get("instance_id"),
        "actor": r.get("actor"), "run": r.get("replay_run_id") or "live", "data": data,
    }  # fmt: skip


def _breaker_intervals(
    controls: list[dict[str, Any]], start: float, end: float
) -> list[dict[str, Any]]:
    """Each (upstream, instance)'s breaker states as intervals covering the window; the
    state before the first transition is that transition's ``from``."""
    by_breaker: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in controls:
        if r["event"] == "breaker_transition" and r.get("upstream"):
            by_breaker.setdefault((r["upstream"], r.get("instance_id") or ""), []).append(r)
    out = []
    for (upstream, instance), moves in sorted(by_breaker.items()):
        at, state = start, moves[0]["data"].get("from", "closed")
        for move in moves:
            out.append({"upstream": upstream, "instance_id": instance, "state": state,
                        "start_at": at, "end_at": move["at"], "start": iso(at)})  # fmt: skip
            at, state = move["at"], move["data"].get("to", "closed")
        out.append({"upstream": upstream, "instance_id": instance, "state": state,
                    "start_at": at, "end_at": max(at, end), "start": iso(at)})  # fmt: skip
    return [iv for iv in out if iv["end_at"] > iv["start_at"] or iv["state"] in NOT_CLOSED]


def _degraded_periods(controls: list[dict[str, Any]], end: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    for r in controls:
        if r["event"] != "degraded_mode":
            continue
        data, instance = r.get("data") or {}, r.get("instance_id") or ""
        if data.get("degraded"):
            open_.setdefault(instance, {
                "instance_id": instance, "start_at": r["at"], "start": iso(r["at"]),
                "reason": data.get("reason"),
                "backlog_batches_at_start": data.get("spool_pending_batches"),
            })  # fmt: skip
        elif instance in open_:
            period = open_.pop(instance)
            period.update(end_at=r["at"], end=iso(r["at"]), ongoing=False,
                          backlog_batches_at_end=data.get("spool_pending_batches"))  # fmt: skip
            out.append(period)
    for period in open_.values():
        period.update(end_at=end, end=None, ongoing=True, backlog_batches_at_end=None)
        out.append(period)
    out.sort(key=lambda p: p["start_at"])
    for i, period in enumerate(out):
        period["duration_s"] = round(period["end_at"] - period["start_at"], 3)
        later = [p["start_at"] for p in out[i + 1 :] if p["instance_id"] == period["instance_id"]]
        until = later[0] if later else float("inf")  # the next period's drain is its own
        drained = [
            r for r in controls
            if r["event"] == "spool_drained" and period["start_at"] <= r["at"] < until
            and (r.get("instance_id") or "") == period["instance_id"]
        ]  # fmt: skip
        period["drained_batches"] = sum(int(r["data"].get("batches") or 0) for r in drained)
        period["drained_records"] = sum(int(r["data"].get("records") or 0) for r in drained)
        emptied = [r for r in drained if r["data"].get("spool_pending_batches") == 0]
        period["backlog_empty_at"] = iso(emptied[0]["at"]) if emptied else None
    return out


def _backlog_points(controls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spool backlog (batches) each time a control record sampled it."""
    return [
        {"at": iso(r["at"]), "at_s": r["at"], "instance_id": r.get("instance_id"),
         "event": r["event"], "pending_batches": r["data"].get("spool_pending_batches")}
        for r in controls
        if r["event"] in ("degraded_mode", "spool_drained")
        and r["data"].get("spool_pending_batches") is not None
    ]  # fmt: skip
