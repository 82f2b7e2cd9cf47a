"""Runbook section 6's "Validation retour à la normale", checked against a report's data.

Each incident of the matrix (INC-01 timeouts, INC-02 RGW write errors, INC-03 a breaker open
for long) lists what says it is over. Those that the audit can show are evaluated here from
the report's JSON (forensics/incident.py), as pass / fail with the figure; the engineer
still signs the journal's "post-fix validation" by hand.
"""

from __future__ import annotations

from typing import Any

from netscope.forensics.incident import ERROR_RATE_THRESHOLD, FAILED, NOT_CLOSED

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
TAIL_BINS = 3  # "back to normal" is read over the window's last bins
INCIDENTS = {
    "INC-01": "Hausse brutale des timeouts sortants",
    "INC-02": "Erreurs d'écriture Ceph RGW",
    "INC-03": "Circuit breaker ouvert durablement",
}


def _check(what: str, status: str, evidence: str) -> dict[str, str]:
    return {"check": what, "status": status, "evidence": evidence}


def _active(data: dict[str, Any]) -> list[int]:
    """The indexes of the last ``TAIL_BINS`` bins that had calls: "at the end" means at the
    end of the traffic, not in the empty minutes a generous --to adds."""
    outcomes = data["series"]["outcomes"]
    n = len(data["series"]["bins"])
    busy = [i for i in range(n) if any(v[i] for o in outcomes.values() for v in o.values())]
    return busy[-TAIL_BINS:]


def _at(values: list[Any], indexes: list[int]) -> list[Any]:
    return [values[i] for i in indexes]


def _last_states(data: dict[str, Any]) -> dict[str, str]:
    last: dict[str, str] = {}
    for iv in data["breakers"]:  # in time order per breaker: the last one wins
        last[f"{iv['upstream']} @ {iv['instance_id']}"] = iv["state"]
    return last


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def _outside(data: dict[str, Any], values: list[Any]) -> list[Any]:
    """The values of the bins outside the detected incident (its baseline)."""
    det = data["detected"]
    return [v for t, v in zip(data["series"]["bins"], values, strict=True)
            if v is not None and not (det["start"] and det["start"] <= t < det["end"])]  # fmt: skip


def timeouts_back_to_base(data: dict[str, Any]) -> dict[str, str]:
    """Timed-out attempts per bin over the last bins at most their median outside the
    incident, doubled, plus one."""
    series = data["series"]["timeouts"]
    per_bin = [sum(col) for col in zip(*series.values(), strict=True)]
    tail = _at(per_bin, _active(data))
    base = _median(_outside(data, per_bin))
    ok = bool(tail) and max(tail) <= 2 * base + 1
    evidence = (f"{max(tail, default=0)} timed-out attempts a bin at most over the last "
                f"{TAIL_BINS} bins; {base:g} a bin outside the incident, "
                f"{max(per_bin, default=0)} at the peak")  # fmt: skip
    return _check("timeouts back to their base level", PASS if ok else FAIL, evidence)


def latency_back_down(data: dict[str, Any]) -> dict[str, str]:
    """Each upstream's p95 over the last bins (median) at most twice its median outside
    the incident, plus 50 ms."""
    verdicts = []
    tail = _active(data)
    for up, qs in data["series"]["latency_s"].items():
        p95 = qs["p95"]
        end = [v for v in _at(p95, tail) if v is not None]
        base = _outside(data, p95)
        if not end or not base:
            continue
        now, usual = _median(end), _median(base)
        peak = max(v for v in p95 if v is not None)
        verdicts.append((now <= 2 * usual + 0.05,
                         f"{up}: p95 {now:.3f} s at the end, {usual:.3f} s outside the "
                         f"incident, {peak:.3f} s at the peak"))  # fmt: skip
    if not verdicts:
        return _check("p95/p99 back down", UNKNOWN, "no call reached an upstream at the end")
    status = PASS if all(ok for ok, _ in verdicts) else FAIL
    return _check("p95/p99 back down", status, "; ".join(text for _, text in verdicts))


def breakers_closed(data: dict[str, Any]) -> dict[str, str]:
    last = _last_states(data)
    still = {name: s for name, s in last.items() if s in NOT_CLOSED}
    if not last:
        return _check("circuit back to closed", PASS, "no breaker transition in this period")
    return _check("circuit back to closed", FAIL if still else PASS,
                  ", ".join(f"{n}: {s}" for n, s in sorted(last.items())))  # fmt: skip


def transitions_conform(data: dict[str, Any]) -> dict[str, str]:
    moves = [(e["upstream"], e["data"].get("from"), e["data"].get("to"))
             for e in data["control_events"] if e["event"] == "breaker_transition"]  # fmt: skip
    seen = {(f, t) for _, f, t in moves}
    wanted = [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    missing = [f"{f} -> {t}" for f, t in wanted if (f, t) not in seen]
    evidence = ", ".join(f"{u}: {f} -> {t}" for u, f, t in moves) or "no transition"
    return _check("transitions open -> half_open -> closed", FAIL if missing else PASS,
                  evidence + (f" (missing: {', '.join(missing)})" if missing else ""))  # fmt: skip


def errors_under_threshold(data: dict[str, Any]) -> dict[str, str]:
    rates = []
    tail = _active(data)
    for up, by_outcome in data["series"]["outcomes"].items():
        total = sum(sum(_at(v, tail)) for v in by_outcome.values())
        failed = sum(sum(_at(v, tail)) for o, v in by_outcome.items() if o in FAILED)
        if total:
            rates.append((up, failed / total))
    if not rates:
        return _check("errors under threshold", UNKNOWN, "no call in the last bins")
    status = PASS if all(r <= ERROR_RATE_THRESHOLD for _, r in rates) else FAIL
    return _check(f"errors under {ERROR_RATE_THRESHOLD:.0%}", status,
                  ", ".join(f"{u} {r:.1%}" for u, r in rates))  # fmt: skip


def writes_resumed(data: dict[str, Any]) -> dict[str, str]:
    periods = data["degraded_periods"]
    ongoing = [p for p in periods if p["ongoing"]]
    if not periods:
        return _check("RGW writes resumed", PASS, "no degraded period in this window")
    evidence = f"{len(periods)} degraded period(s), {len(ongoing)} still open at the end"
    return _check("RGW writes resumed", FAIL if ongoing else PASS, evidence)


def backlog_purged(data: dict[str, Any]) -> dict[str, str]:
    periods = data["degraded_periods"]
    if not periods:
        return _check("audit backlog purged", PASS, "no backlog: no degraded period")
    pending = [p for p in periods if not p["backlog_empty_at"]]
    drained = sum(p["drained_records"] for p in periods)
    status = FAIL if pending else PASS
    when = ", ".join(str(p["backlog_empty_at"]) for p in periods)
    evidence = f"{drained} records drained; spool empty at {when}"
    return _check("audit backlog purged", status, evidence)


def nothing_lost(data: dict[str, Any]) -> dict[str, str]:
    i2 = next(i for i in data["invariants"] if i["id"] == "I2")
    status = PASS if i2["status"] in ("held", "touched") else FAIL
    return _check("no event lost", status, f"I2 {i2['status']}: " + "; ".join(i2["evidence"]))


CHECKS = {
    "INC-01": [latency_back_down, timeouts_back_to_base, breakers_closed],
    "INC-02": [writes_resumed, backlog_purged, nothing_lost],
    "INC-03": [transitions_conform, errors_under_threshold],
}


def validate(data: dict[str, Any], incident: str | None) -> list[dict[str, str]]:
    """The return-to-normal checks of ``incident`` when it is one of the runbook's matrix,
    otherwise (no ID, or an incident tracker's own) those of all three."""
    names = [incident] if incident in CHECKS else list(CHECKS)
    return [{"incident": name, **check(data)} for name in names for check in CHECKS[name]]
