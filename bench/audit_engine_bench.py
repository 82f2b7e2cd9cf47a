"""Which engine reads the audit back: DuckDB, Polars, or obstore + orjson in plain Python.

    .venv/bin/python bench/audit_engine_bench.py [--records 1000000] [--rgw]
        [--engines duckdb,polars,python] [--jobs timeline,timeline-hour,...] [--repeat 3]

Issue 13 (`netscope audit ls|timeline|errors`, `netscope report`) needs the audit read back
where it lies, as gzip JSON Lines objects under the key layout of docs/audit-format.md, in a
local folder or on Ceph RGW. This bench writes one data set exactly as NetScope does (its own
``AuditRecord`` / ``Attempt`` / ``KafkaPosition``, ``audit.batch.encode`` and
``audit.keys.object_key``), once to a local folder and, with ``--rgw``, to a bucket on a local
RGW that it starts, and times the same questions with each engine, each run in a process of
its own (so peak RSS is that engine's alone):

- ``timeline``: every record of one trace id over the whole data set (the trace chosen has a
  live record, a timeout during the incident, and a replay record under ``run=``);
- ``timeline-hour``: the same, listing only the trace's hour prefix (the key layout files
  objects by event hour, so a reader that knows the hour, or gets ``--from/--to``, lists and
  reads only those prefixes);
- ``timeline-window``: the same over the hour prefixes of a ``--from/--to`` window
  (default 04:00-07:00, 3 of the 12 hours), records filtered by ``kafka.timestamp_ms``;
- ``errors``: upstream x outcome x status x error_class over the error outcomes, with counts,
  attempts and first/last ``completed_at``;
- ``minute``: outcome counts per minute per upstream (the report's main plot);
- ``latency``: latency p50/p95/p99 per minute per upstream (calls that reached the upstream);
- ``report``: errors + minute + latency in one process, as `netscope report` needs them.

The data: ``--records`` live records (default 1,000,000) over 12 hours of 2024-05-01, 4
partitions, 3 upstreams (payments 50 %, inventory 30 %, notifications 20 %), about 95 %
success and a realistic tail of http_error (retried 5xx with 3 attempts, 4xx with 1),
timeouts (1-3 attempts), connect errors, rejections, duplicates and invalid messages, one
incident (payments, 05:00-05:20: 40 % read timeouts, 20 % open circuit) whose failures a
replay run rewrote under ``run=``, unique trace ids. Batches hold ``--batch-records`` (1000)
records and never span an hour, as the writer seals them. Every engine's answer is checked
against the ground truth the generator kept (the ``ok`` column).

Engines (each reads with its own reader, lazily, and with its own listing/globbing):

- ``duckdb``: ``read_json(glob, format='newline_delimited', compression='gzip', columns=...)``
  with the record schema given (no sampling); S3 through the ``httpfs`` extension loaded from
  the ``duckdb-extension-httpfs`` Python package (autoinstall/autoload off: nothing is fetched
  at run time), a ``CREATE SECRET`` with path-style URLs over http;
- ``polars``: ``scan_ndjson(glob, schema=...)`` + ``collect(engine="streaming")`` (the report's
  three queries in one ``collect_all``); S3 through Polars' own object-store reader with
  ``storage_options`` (endpoint, path-style, allow http);
- ``python``: obstore lists and GETs the objects (16 in flight), zlib + orjson in one Python
  thread; the timeline first looks for the trace id's bytes in each body and parses only the
  lines that hold them. The baseline a hand-written reader gets;
- ``obs+duckdb`` (RGW only; locally it is ``duckdb``): obstore, NetScope's own store client,
  copies the window's objects to a local folder (emptied first, so the figures are cold), then
  DuckDB reads them there: no httpfs extension, so no pin to the version its wheel exists for.

The timeline jobs run in two phases in DuckDB and Polars: find the objects that hold the trace
(only ``trace_id`` is parsed), then read those objects whole. ``timeline-1q`` is the same
question as one query (Polars then parses every row's nested ``attempts``: 4-5x slower).

Columns: ``query s`` is the engine's time from "imported" to "answer in Python objects"
(connection, extension load, listing included), ``process s`` the whole subprocess as a CLI
user waits for it (interpreter start and imports included), ``CPU s`` its user + system time
(all threads), ``RSS`` its peak resident set (``VmHWM``). Medians over ``--repeat`` runs
(RSS: the largest). Local files are in the page cache (written just before); RGW runs on the
same 2 cores as the reader.

Measured 2026-12-04 (2 cores shared with other test runs, ±30 %; 1,009,025 records in 1,020
objects; query seconds, medians of 3). Local: timeline DuckDB 1.97, Polars 2.22, plain 2.54;
report (errors + per-minute + latency) 4.81 / 8.47 / 6.68 s at 114 / 291 / 101 MiB. RGW:
timeline 4.56 / 3.45 / 3.60 s, obs+duckdb 2.74 s; report 9.62 / 11.10 / 7.80 s, obs+duckdb
5.36 s at 131 MiB. 10,000,000 records, local: report DuckDB 44 s / 277 MiB, Polars 81 s /
1,595 MiB (misses 1 GiB). With 20-record objects (a low-rate writer: 50,470 objects), RGW
serves 1,100-1,500 GETs/s here and the object count decides: a whole-set timeline takes
36-122 s whatever the engine, the trace's hour alone 2.8-8.9 s.

Choice: `netscope audit timeline` and `errors` use the plain reader (every 1M target met,
least memory, no dependency, a byte pre-filter on the id: forensics/reader.py), and list
only the window's hours. `netscope report` uses it too, feeding its streaming fold
(forensics/incident.py), measured as the ``netscope`` engine, which runs the shipped code
end to end (read, fold, the five plots, the HTML written). 2026-12-05, 1,000,000 records,
medians of 2, 2 cores shared with other test runs: report 14.98 s local / 15.94 s RGW at
215-219 MiB (target < 30 s: met); timeline --trace-id 3.06 s local / 4.17 s RGW (targets
< 5 s / < 15 s: met), against 2.52 / 3.19 s for the bare loop, the difference being the
import of NetScope and the timeline's rows. DuckDB computes the three aggregates faster
(4.8 s locally), but the journal needs more than aggregates: per-partition offset bitmaps
for I2, breaker intervals and degraded periods from control records, evidence with request
ids, log-histogram percentiles per bin; keeping it in one Python fold costs about 9 s per
million records and buys one reader, one dependency fewer, and memory that does not grow
with the period: 10,000,000 records (10,124 objects, 1.3 GiB gzip, local) in 158 s at
219 MiB peak RSS (target < 1 GiB: met), the same peak as for one million.
Install the engines with ``.venv/bin/pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from netscope.audit.batch import encode
from netscope.audit.keys import event_hour, object_key
from netscope.contract.outcomes import ERROR_OUTCOMES, NO_UPSTREAM_LATENCY_OUTCOMES
from netscope.contract.records import Attempt, AuditRecord, KafkaPosition

# --- the data set ----------------------------------------------------------------------------

BASE_S = 1_714_521_600  # 2024-05-01T00:00:00Z
HOURS = 12
TOPIC = "netscope.requests"
PARTITIONS = 4
FIRST_OFFSET = 7_000_000
PREFIX = "audit"
INCIDENT = (BASE_S + 5 * 3600, BASE_S + 5 * 3600 + 20 * 60)  # payments degraded 05:00-05:20
REPLAY_RUN = "20240501T093000Z-3fa9c1"
REPLAY_AT = BASE_S + 9 * 3600 + 30 * 60
UPSTREAMS = (  # name, share, method, path, typical latency (s)
    ("payments", 0.5, "POST", "/v1/charges?token=REDACTED", 0.045),
    ("inventory", 0.3, "GET", "/v2/items/{}", 0.020),
    ("notifications", 0.2, "POST", "/v1/notify?api_key=REDACTED", 0.080),
)
NORMAL_MIX = (  # outcome, probability; the rest is success
    ("http_error", 0.020),
    ("timeout_read", 0.008),
    ("timeout_connect", 0.003),
    ("connect_error", 0.002),
    ("deadline_exceeded", 0.001),
    ("protocol_error", 0.0005),
    ("rejected_rate_limited", 0.002),
    ("rejected_circuit_open", 0.0005),
    ("duplicate_skipped", 0.004),
    ("duplicate_in_progress", 0.0005),
    ("ledger_unavailable", 0.0002),
    ("invalid", 0.001),
)
INCIDENT_MIX = (
    ("timeout_read", 0.40), ("rejected_circuit_open", 0.20), ("deadline_exceeded", 0.05)
)
INCIDENT_FAILED = {name for name, _ in INCIDENT_MIX}

ERRORS = sorted(str(o) for o in ERROR_OUTCOMES)
NO_LATENCY = sorted(str(o) for o in NO_UPSTREAM_LATENCY_OUTCOMES)
QUANTILES = (0.5, 0.95, 0.99)
_ERROR_SET, _NO_LATENCY_SET = frozenset(ERRORS), frozenset(NO_LATENCY)


def _cumulative(mix: tuple[tuple[str, float], ...]) -> list[tuple[float, str]]:
    out, acc = [], 0.0
    for name, p in mix:
        acc += p
        out.append((acc, name))
    return out


_NORMAL = _cumulative(NORMAL_MIX)
_INCIDENT = _cumulative(INCIDENT_MIX)


def _pick(rnd: random.Random, table: list[tuple[float, str]]) -> str:
    r = rnd.random()
    for bound, name in table:
        if r < bound:
            return name
    return "success"


@functools.lru_cache(maxsize=8192)
def _second(sec: int) -> str:
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _hex(rnd: random.Random, bits: int) -> str:
    return f"{rnd.getrandbits(bits):0{bits // 4}x}"


def _uuid(rnd: random.Random) -> str:
    h = _hex(rnd, 128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def _call(
    rnd: random.Random, outcome: str, t0: float, lat: float
) -> tuple[list[Attempt], int | None, str | None, str | None, float]:
    """Attempts of one message ending in ``outcome``: (attempts, status, error_class, detail,
    end time)."""
    attempts: list[Attempt] = []
    t = t0

    def attempt(dur: float, status: int | None = None, err: str | None = None,
                delay: float | None = None) -> None:
        nonlocal t
        attempts.append(Attempt(len(attempts) + 1, round(t, 6), round(dur, 6), status, err,
                                delay))  # type: ignore[arg-type]
        t += dur + (delay or 0.0)

    def tries(n: int, dur: float, status: int | None, err: str) -> None:
        for i in range(n):
            attempt(dur * rnd.uniform(0.98, 1.02), status, err,
                    0.1 * 2**i if i < n - 1 else None)

    if outcome == "success":
        if rnd.random() < 0.03:  # recovered after one retried failure
            if rnd.random() < 0.5:
                attempt(lat * rnd.uniform(0.8, 1.5), 503, "http_error", 0.1)
            else:
                attempt(2.0, None, "timeout_read", 0.1)
        attempt(lat * rnd.lognormvariate(0, 0.4), 200)
        return attempts, 200, None, None, t
    if outcome == "http_error":
        if rnd.random() < 0.6:
            status = rnd.choice((500, 502, 503, 429))
            tries(3, lat * 1.2, status, "http_error")
        else:
            status = rnd.choice((400, 404, 409, 422))
            tries(1, lat, status, "http_error")
        return attempts, status, "http_error", f"HTTP {status}", t
    if outcome in ("timeout_read", "timeout_connect"):
        limit = 2.0 if outcome == "timeout_read" else 1.0
        tries(rnd.choice((1, 2, 3)), limit, None, outcome)
        kind = outcome.split("_")[1]
        return attempts, None, outcome, f"{kind} timeout after {limit} s", t
    if outcome == "connect_error":
        err = rnd.choice(("connect_error", "connection_reset"))
        tries(rnd.choice((1, 2, 3)), 0.003, None, err)
        return attempts, None, err, "connection refused", t
    if outcome == "deadline_exceeded":
        attempt(2.0, None, "timeout_read", 0.1)
        attempt(0.9, None, "deadline_exceeded")
        return attempts, None, "deadline_exceeded", "deadline 3.0 s exceeded", t
    if outcome == "protocol_error":
        attempt(lat, None, "protocol_error")
        return attempts, None, "protocol_error", "malformed response", t
    no_call = {
        "rejected_circuit_open": (None, "circuit_open", "circuit open"),
        "rejected_rate_limited": (None, "rate_limited", "rate limit 200/s"),
        "duplicate_skipped": (200, None, "idempotency key completed before as success"),
        "duplicate_in_progress": (None, None, "key held by another claim past this message's "
                                               "deadline (lease until 2024-05-01T00:00:00Z)"),
        "ledger_unavailable": (None, "ledger_unavailable", "ledger unavailable: timeout"),
        "invalid": (None, "invalid", "field 'upstream': missing"),
    }
    status, err, detail = no_call[outcome]
    return attempts, status, err, detail, t + rnd.uniform(0.0001, 0.001)


def _record(rnd: random.Random, p: int, offset: int, ts_ms: int) -> AuditRecord:
    r = rnd.random()
    if r < 0.5:
        upstream, _, method, path, lat = UPSTREAMS[0]
    elif r < 0.8:
        upstream, _, method, path, lat = UPSTREAMS[1]
        path = path.format(rnd.randrange(100_000))
    else:
        upstream, _, method, path, lat = UPSTREAMS[2]
    ts = ts_ms / 1000
    incident = upstream == "payments" and INCIDENT[0] <= ts < INCIDENT[1]
    outcome = _pick(rnd, _INCIDENT if incident else _NORMAL)
    received = ts + rnd.uniform(0.002, 0.05)
    queued = rnd.uniform(0.0, 0.02) if rnd.random() < 0.1 else 0.0
    attempts, status, err, detail, end = _call(rnd, outcome, received + queued + 0.0004,
                                               lat * (8 if incident else 1))
    completed = round(end + 0.0003, 6)
    received = round(received, 6)
    rid = _uuid(rnd)
    valid = outcome != "invalid"
    return AuditRecord(
        request_id=rid if valid else None,
        idempotency_key=rid if valid else None,
        trace_id=_hex(rnd, 128) if valid else None,
        span_id=_hex(rnd, 64) if valid else None,
        upstream=upstream if valid else None,
        method=method if valid else None,
        path=path if valid else None,
        kafka=KafkaPosition(TOPIC, p, offset, ts_ms, f"cust-{rnd.randrange(100_000)}"),
        outcome=outcome,  # type: ignore[arg-type]
        received_at=received,
        completed_at=completed,
        latency_s=round(completed - received, 6),
        queued_s=round(queued, 6),
        status=status,
        error_class=err,  # type: ignore[arg-type]
        error_detail=detail,
        attempts=attempts,
        created_at=f"{_second(ts_ms // 1000)}.{ts_ms % 1000:03d}Z",
        instance_id=f"netscope-{'ab'[p % 2]}",
        duplicate_of=f"{TOPIC}/{p}/{offset}" if outcome == "duplicate_skipped" else None,
    )


class _Truth:
    """What every engine must answer, kept while generating."""

    def __init__(self) -> None:
        self.records = 0
        self.objects = 0
        self.bytes = 0
        self.error_groups: Counter[tuple] = Counter()
        self.minute_groups: Counter[tuple] = Counter()
        self.latency_groups: set[tuple] = set()

    def add(self, rec: AuditRecord) -> None:
        self.records += 1
        minute = math.floor(rec.completed_at / 60)
        self.minute_groups[(rec.upstream, minute, rec.outcome)] += 1
        if rec.outcome in _ERROR_SET:
            self.error_groups[(rec.upstream, rec.outcome, rec.status, rec.error_class)] += 1
        if rec.outcome not in _NO_LATENCY_SET:
            self.latency_groups.add((rec.upstream, minute))


def _write(root: Path, truth: _Truth, hour: str, p: int, first: int, lines: list[bytes],
           run_id: str | None = None) -> None:
    body = encode(lines, compress=True)
    path = root / object_key(PREFIX, hour, TOPIC, p, first, gzip=True, run_id=run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    truth.objects += 1
    truth.bytes += len(body)


def generate_partition(job: tuple[str, int, int, int, int]) -> dict[str, Any]:
    """Write one partition's objects (live, then the replay run's); return its ground truth."""
    root_s, p, n_p, seed, batch_records = job
    root = Path(root_s)
    rnd = random.Random(seed * 1000 + p)
    truth = _Truth()
    span_ms = HOURS * 3_600_000
    replay: list[AuditRecord] = []
    target: list[AuditRecord] = []
    lines: list[bytes] = []
    hour, first = "", 0
    for i in range(n_p):
        # Monotone event times with jitter: offsets of a partition follow its timestamps.
        ts_ms = BASE_S * 1000 + int((i + rnd.random()) * span_ms / n_p)
        offset = FIRST_OFFSET + i
        rec = _record(rnd, p, offset, ts_ms)
        h = event_hour(ts_ms)
        if lines and (h != hour or len(lines) >= batch_records):
            _write(root, truth, hour, p, first, lines)
            lines = []
        if not lines:
            hour, first = h, offset
        lines.append(rec.to_json())
        truth.add(rec)
        if (rec.upstream == "payments" and rec.outcome in INCIDENT_FAILED
                and INCIDENT[0] * 1000 <= ts_ms < INCIDENT[1] * 1000):
            replay.append(rec)
            if p == 1 and not target and ts_ms >= (INCIDENT[0] + 600) * 1000:
                target.append(rec)
        elif p == 1 and not target and i == n_p - 1:  # tiny data sets: any record will do
            target.append(rec)
    if lines:
        _write(root, truth, hour, p, first, lines)
    # The replay run re-called the incident's failures: same positions, its own run= folder.
    lines = []
    for j, old in enumerate(replay):
        start = REPLAY_AT + p * 0.001 + j * 0.01
        lat = round(0.045 * rnd.lognormvariate(0, 0.3), 6)
        rec = AuditRecord(
            old.request_id, old.idempotency_key, old.trace_id, _hex(rnd, 64), old.upstream,
            old.method, old.path, old.kafka, "success",  # type: ignore[arg-type]
            received_at=round(start, 6), completed_at=round(start + lat + 0.0007, 6),
            latency_s=round(lat + 0.0007, 6), status=200,
            attempts=[Attempt(1, round(start + 0.0004, 6), lat, 200)],
            created_at=old.created_at, instance_id=old.instance_id, replay_run_id=REPLAY_RUN,
        )
        h = event_hour(rec.kafka.timestamp_ms)
        if lines and (h != hour or len(lines) >= batch_records):
            _write(root, truth, hour, p, first, lines, REPLAY_RUN)
            lines = []
        if not lines:
            hour, first = h, rec.kafka.offset
        lines.append(rec.to_json())
        truth.add(rec)
        if target and rec.trace_id == target[0].trace_id:
            target.append(rec)
    if lines:
        _write(root, truth, hour, p, first, lines, REPLAY_RUN)
    return {
        "records": truth.records,
        "objects": truth.objects,
        "bytes": truth.bytes,
        "error_groups": list(truth.error_groups.items()),
        "minute_groups": list(truth.minute_groups.items()),
        "latency_groups": list(truth.latency_groups),
        "target": [
            {"trace_id": r.trace_id, "position": _position(r.kafka.partition, r.kafka.offset,
                                                           r.replay_run_id),
             "hour": event_hour(r.kafka.timestamp_ms)}
            for r in target
        ],
    }


def _position(partition: Any, offset: Any, run: Any) -> str:
    return f"{partition}/{offset}/{run or 'live'}"


def generate(root: Path, records: int, seed: int, batch_records: int) -> dict[str, Any]:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    share = [records // PARTITIONS + (p < records % PARTITIONS) for p in range(PARTITIONS)]
    jobs = [(str(root), p, share[p], seed, batch_records) for p in range(PARTITIONS)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(PARTITIONS, os.cpu_count() or 1)) as pool:
        parts = list(pool.map(generate_partition, jobs))
    errors: Counter[tuple] = Counter()
    minutes: Counter[tuple] = Counter()
    latency: set[tuple] = set()
    for part in parts:
        errors.update({tuple(k): v for k, v in part["error_groups"]})
        minutes.update({tuple(k): v for k, v in part["minute_groups"]})
        latency.update(tuple(k) for k in part["latency_groups"])
    target = parts[1]["target"]
    manifest = {
        "records": sum(p["records"] for p in parts),
        "live_records": records,
        "objects": sum(p["objects"] for p in parts),
        "bytes": sum(p["bytes"] for p in parts),
        "batch_records": batch_records,
        "seed": seed,
        "generate_s": round(time.perf_counter() - t0, 1),
        "trace_id": target[0]["trace_id"],
        "trace_hour": target[0]["hour"],
        "truth": {
            "timeline": " ".join(sorted(t["position"] for t in target)),
            "errors": _agg_check(len(errors), sum(errors.values())),
            "minute": _agg_check(len(minutes), sum(minutes.values())),
            "latency": f"{len(latency)} groups",
        },
    }
    manifest["truth"]["report"] = " | ".join(
        manifest["truth"][k] for k in ("errors", "minute", "latency"))
    manifest["truth"]["timeline-hour"] = manifest["truth"]["timeline"]
    manifest["truth"]["timeline-window"] = manifest["truth"]["timeline"]
    manifest["truth"]["timeline-1q"] = manifest["truth"]["timeline"]
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _agg_check(groups: int, n: int) -> str:
    return f"{groups} groups / {n} rec"


# --- the engines (run in a worker process each) ----------------------------------------------

DUCKDB_COLUMNS = {
    "request_id": "VARCHAR", "idempotency_key": "VARCHAR", "trace_id": "VARCHAR",
    "span_id": "VARCHAR", "upstream": "VARCHAR", "method": "VARCHAR", "path": "VARCHAR",
    "kafka": 'STRUCT(topic VARCHAR, "partition" INTEGER, "offset" BIGINT, '
             "timestamp_ms BIGINT, key VARCHAR)",
    "outcome": "VARCHAR", "received_at": "DOUBLE", "completed_at": "DOUBLE",
    "latency_s": "DOUBLE", "queued_s": "DOUBLE", "status": "INTEGER",
    "error_class": "VARCHAR", "error_detail": "VARCHAR",
    "attempts": "STRUCT(n INTEGER, started_at DOUBLE, duration_s DOUBLE, status INTEGER, "
                "error_class VARCHAR, retry_delay_s DOUBLE)[]",
    "created_at": "VARCHAR", "instance_id": "VARCHAR", "replay_run_id": "VARCHAR",
    "duplicate_of": "VARCHAR", "attempt_after_lease_expiry": "BOOLEAN",
    "outcome_from_ledger": "BOOLEAN", "schema_version": "INTEGER",
}


def _hours(spec: dict[str, Any]) -> list[str] | None:
    """The ``YYYY-MM-DD/HH`` hours a job may read, or None for the whole store."""
    if spec["job"] == "timeline-hour":
        return [spec["trace_hour"]]
    if spec["job"] == "timeline-window":
        start, end = spec["window_ms"]
        return [event_hour(h * 3_600_000) for h in range(start // 3_600_000,
                                                         (end - 1) // 3_600_000 + 1)]
    return None


def _globs(spec: dict[str, Any]) -> list[str]:
    base = f"s3://{spec['s3']['bucket']}" if spec["source"] == "rgw" else spec["root"]
    hours = _hours(spec)
    if hours is None:
        return [f"{base}/{PREFIX}/**/*.jsonl.gz"]
    return [f"{base}/{PREFIX}/dt={h[:10]}/hour={h[11:]}/**/*.jsonl.gz" for h in hours]


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def run_duckdb(spec: dict[str, Any]) -> tuple[int, str]:
    import duckdb

    # Nothing may be downloaded at run time: json is built into the wheel, httpfs comes from
    # the duckdb-extension-httpfs package.
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    con.execute("SET enable_progress_bar = false")
    if spec["source"] == "rgw":
        import duckdb_extension_httpfs

        ext = (Path(duckdb_extension_httpfs.__file__).parent / "extensions"
               / f"v{duckdb.__version__}" / "httpfs.duckdb_extension")
        con.load_extension(str(ext))
        s3 = spec["s3"]
        con.execute(
            "CREATE SECRET rgw (TYPE s3, KEY_ID $k, SECRET $s, REGION $r, ENDPOINT $e, "
            "URL_STYLE 'path', USE_SSL false)".replace("$k", f"'{s3['access_key']}'")
            .replace("$s", f"'{s3['secret_key']}'").replace("$r", f"'{s3['region']}'")
            .replace("$e", f"'{s3['endpoint'].split('://', 1)[1]}'")
        )
    # S3 reads wait on the network: more threads than cores overlap GETs with parsing.
    con.execute(f"SET threads = {spec['duckdb_threads']}")

    def source(paths: list[str], columns: dict[str, str], **extra: str) -> str:
        cols = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
        more = "".join(f", {k} = {v}" for k, v in extra.items())
        return (f"read_json({_sql_list(paths)}, format = 'newline_delimited', "
                f"compression = 'gzip', columns = {cols}{more})")

    job = spec["job"]
    if job.startswith("timeline"):
        where = "trace_id = $trace"
        params: dict[str, Any] = {"trace": spec["trace_id"]}
        if job == "timeline-window":
            where += " AND kafka.timestamp_ms >= $t0 AND kafka.timestamp_ms < $t1"
            params |= {"t0": spec["window_ms"][0], "t1": spec["window_ms"][1]}
        paths = _globs(spec)
        if job != "timeline-1q":
            # Two phases: find the objects that hold the trace (only the filter's columns are
            # parsed), then read those objects whole.
            found = con.execute(
                f"SELECT DISTINCT filename FROM {source(paths, DUCKDB_COLUMNS, filename='true')}"
                f" WHERE {where}", params).fetchall()
            paths = [row[0] for row in found]
        rows = con.execute(
            f"SELECT * FROM {source(paths, DUCKDB_COLUMNS)} WHERE {where} ORDER BY completed_at",
            params).fetchall() if paths else []
        cols = list(DUCKDB_COLUMNS)
        kafka, run = cols.index("kafka"), cols.index("replay_run_id")
        return len(rows), " ".join(sorted(
            _position(r[kafka]["partition"], r[kafka]["offset"], r[run]) for r in rows))
    # The aggregations count attempts and need nothing else of them: declaring only `n` spares
    # parsing the rest of the nested list.
    src = source(_globs(spec), {**DUCKDB_COLUMNS, "attempts": "STRUCT(n INTEGER)[]"})
    queries = {
        "errors": f"""SELECT upstream, outcome, status, error_class, count(*) AS n,
                        sum(len(attempts)) AS attempts, min(completed_at) AS first,
                        max(completed_at) AS last
                      FROM {src} WHERE outcome IN {tuple(ERRORS)} GROUP BY ALL""",
        "minute": f"""SELECT upstream, floor(completed_at / 60)::BIGINT AS minute, outcome,
                        count(*) AS n
                      FROM {src} GROUP BY ALL""",
        "latency": f"""SELECT upstream, floor(completed_at / 60)::BIGINT AS minute,
                         quantile_cont(latency_s, {list(QUANTILES)}) AS q
                       FROM {src} WHERE outcome NOT IN {tuple(NO_LATENCY)} GROUP BY ALL""",
    }
    names = ["errors", "minute", "latency"] if job == "report" else [job]
    results = {name: con.execute(queries[name]).fetchall() for name in names}
    return _agg_result(results)


def _agg_result(results: dict[str, list]) -> tuple[int, str]:
    checks = []
    for name, rows in results.items():
        if name == "latency":
            checks.append(f"{len(rows)} groups")
        else:
            n_col = 4 if name == "errors" else 3
            checks.append(_agg_check(len(rows), sum(r[n_col] for r in rows)))
    return sum(len(r) for r in results.values()), " | ".join(checks)


def _polars_schema() -> dict[str, Any]:
    import polars as pl

    s, i32, i64, f, b = pl.String, pl.Int32, pl.Int64, pl.Float64, pl.Boolean
    return {
        "request_id": s, "idempotency_key": s, "trace_id": s, "span_id": s, "upstream": s,
        "method": s, "path": s,
        "kafka": pl.Struct({"topic": s, "partition": i32, "offset": i64, "timestamp_ms": i64,
                            "key": s}),
        "outcome": s, "received_at": f, "completed_at": f, "latency_s": f, "queued_s": f,
        "status": i32, "error_class": s, "error_detail": s,
        "attempts": pl.List(pl.Struct({"n": i32, "started_at": f, "duration_s": f,
                                       "status": i32, "error_class": s, "retry_delay_s": f})),
        "created_at": s, "instance_id": s, "replay_run_id": s, "duplicate_of": s,
        "attempt_after_lease_expiry": b, "outcome_from_ledger": b, "schema_version": i32,
    }


def run_polars(spec: dict[str, Any]) -> tuple[int, str]:
    import polars as pl

    options = None
    if spec["source"] == "rgw":
        s3 = spec["s3"]
        options = {
            "aws_endpoint_url": s3["endpoint"], "aws_access_key_id": s3["access_key"],
            "aws_secret_access_key": s3["secret_key"], "aws_region": s3["region"],
            "aws_allow_http": "true", "aws_virtual_hosted_style_request": "false",
        }
    schema = _polars_schema()
    job = spec["job"]
    if job.startswith("timeline"):
        cond = pl.col("trace_id") == spec["trace_id"]
        if job == "timeline-window":
            cond &= pl.col("kafka").struct.field("timestamp_ms").is_between(
                *spec["window_ms"], closed="left")
        paths = _globs(spec)
        if job != "timeline-1q":
            # Two phases: find the objects that hold the trace (only the filter's columns are
            # parsed), then read those objects whole.
            paths = pl.scan_ndjson(
                paths, schema=schema, storage_options=options, credential_provider=None,
                include_file_paths="_object",
            ).filter(cond).select("_object").unique().collect(engine="streaming")[
                "_object"].to_list()
        df = pl.scan_ndjson(
            paths, schema=schema, storage_options=options, credential_provider=None
        ).filter(cond).sort("completed_at").collect(engine="streaming") if paths else None
        rows = [] if df is None else list(df.iter_rows(named=True))
        return len(rows), " ".join(sorted(
            _position(r["kafka"]["partition"], r["kafka"]["offset"], r["replay_run_id"])
            for r in rows))
    # The aggregations count attempts and need nothing else of them: declaring only `n` spares
    # parsing the rest of the nested list.
    schema["attempts"] = pl.List(pl.Struct({"n": pl.Int32}))
    lf = pl.scan_ndjson(_globs(spec), schema=schema, storage_options=options,
                        credential_provider=None)
    minute = (pl.col("completed_at") / 60).floor().cast(pl.Int64).alias("minute")
    queries = {
        "errors": lf.filter(pl.col("outcome").is_in(ERRORS))
        .group_by("upstream", "outcome", "status", "error_class")
        .agg(n=pl.len(), attempts=pl.col("attempts").list.len().sum(),
             first=pl.col("completed_at").min(), last=pl.col("completed_at").max()),
        "minute": lf.group_by("upstream", minute, "outcome").agg(n=pl.len()),
        "latency": lf.filter(~pl.col("outcome").is_in(NO_LATENCY))
        .group_by("upstream", minute)
        .agg(*(pl.col("latency_s").quantile(q, "linear").alias(f"p{round(q * 100)}")
               for q in QUANTILES)),
    }
    names = ["errors", "minute", "latency"] if job == "report" else [job]
    frames = pl.collect_all([queries[n] for n in names], engine="streaming")
    return _agg_result({n: df.rows() for n, df in zip(names, frames, strict=True)})


def run_python(spec: dict[str, Any]) -> tuple[int, str]:
    import obstore
    import orjson
    from obstore.store import LocalStore

    store = _s3_store(spec["s3"]) if spec["source"] == "rgw" else LocalStore(spec["root"])
    hours = _hours(spec)
    prefixes = [f"{PREFIX}/"] if hours is None else [
        f"{PREFIX}/dt={h[:10]}/hour={h[11:]}/" for h in hours]
    keys = [meta["path"] for prefix in prefixes
            for chunk in obstore.list(store, prefix, chunk_size=1000) for meta in chunk
            if meta["path"].endswith(".jsonl.gz")]

    async def each_body(handle: Any) -> None:
        sem = asyncio.Semaphore(16)

        async def one(key: str) -> None:
            async with sem:
                got = await obstore.get_async(store, key)
                body = await got.bytes_async()
            handle(zlib.decompress(bytes(body), 31))

        await asyncio.gather(*(one(k) for k in keys))

    job = spec["job"]
    if job.startswith("timeline"):
        needle = b'"trace_id":"' + spec["trace_id"].encode() + b'"'
        t0, t1 = spec.get("window_ms") or (0, 2**63)
        rows: list[dict] = []

        def find(body: bytes) -> None:
            if needle in body:
                for line in body.split(b"\n"):
                    if needle in line:
                        rec = orjson.loads(line)
                        if t0 <= rec["kafka"]["timestamp_ms"] < t1:
                            rows.append(rec)

        asyncio.run(each_body(find))
        rows.sort(key=lambda r: r["completed_at"])
        return len(rows), " ".join(sorted(
            _position(r["kafka"]["partition"], r["kafka"]["offset"], r["replay_run_id"])
            for r in rows))
    names = ["errors", "minute", "latency"] if job == "report" else [job]
    errors: dict[tuple, list] = {}
    minutes: Counter[tuple] = Counter()
    latencies: dict[tuple, list[float]] = {}
    err_set, nolat = set(ERRORS), set(NO_LATENCY)

    def aggregate(body: bytes) -> None:
        for line in body.splitlines():
            r = orjson.loads(line)
            up, out, done = r["upstream"], r["outcome"], r["completed_at"]
            minute = math.floor(done / 60)
            if "minute" in names:
                minutes[(up, minute, out)] += 1
            if "errors" in names and out in err_set:
                key = (up, out, r["status"], r["error_class"])
                acc = errors.get(key)
                if acc is None:
                    errors[key] = [1, len(r["attempts"]), done, done]
                else:
                    acc[0] += 1
                    acc[1] += len(r["attempts"])
                    acc[2] = min(acc[2], done)
                    acc[3] = max(acc[3], done)
            if "latency" in names and out not in nolat:
                latencies.setdefault((up, minute), []).append(r["latency_s"])

    asyncio.run(each_body(aggregate))
    results: dict[str, list] = {}
    if "errors" in names:
        results["errors"] = [(*k, *v) for k, v in errors.items()]
    if "minute" in names:
        results["minute"] = [(*k, v) for k, v in minutes.items()]
    if "latency" in names:
        results["latency"] = [
            (*k, statistics.quantiles(v, n=100, method="inclusive") if len(v) > 1 else v)
            for k, v in latencies.items()]
    return _agg_result(results)


def _s3_store(s3: dict[str, str]) -> Any:
    from obstore.store import S3Store

    return S3Store(s3["bucket"], endpoint=s3["endpoint"], access_key_id=s3["access_key"],
                   secret_access_key=s3["secret_key"], region=s3["region"],
                   virtual_hosted_style_request=False, client_options={"allow_http": True})


def run_obstore_duckdb(spec: dict[str, Any]) -> tuple[int, str]:
    """obstore copies the objects of the window to a local folder (cold: emptied first), then
    DuckDB reads them there; no httpfs. Locally this is plain ``duckdb``."""
    if spec["source"] == "rgw":
        import obstore

        cache = Path(spec["cache_dir"])
        shutil.rmtree(cache, ignore_errors=True)
        store = _s3_store(spec["s3"])
        hours = _hours(spec)
        prefixes = [f"{PREFIX}/"] if hours is None else [
            f"{PREFIX}/dt={h[:10]}/hour={h[11:]}/" for h in hours]
        keys = [meta["path"] for prefix in prefixes
                for chunk in obstore.list(store, prefix, chunk_size=1000) for meta in chunk
                if meta["path"].endswith(".jsonl.gz")]
        for folder in {str(Path(k).parent) for k in keys}:
            (cache / folder).mkdir(parents=True, exist_ok=True)

        async def copy() -> None:
            sem = asyncio.Semaphore(32)

            async def one(key: str) -> None:
                async with sem:
                    got = await obstore.get_async(store, key)
                    body = await got.bytes_async()
                (cache / key).write_bytes(bytes(body))

            await asyncio.gather(*(one(k) for k in keys))

        asyncio.run(copy())
        spec = {**spec, "source": "local", "root": str(cache), "duckdb_threads": os.cpu_count()}
    return run_duckdb(spec)


def run_netscope(spec: dict[str, Any]) -> tuple[int, str]:
    """What NetScope ships: `netscope audit timeline` (forensics/reader.py + timeline.py) and
    `netscope report` (report.build: the streaming fold, then the journal and its five plots
    written to a file), over the whole period or the --from/--to window."""
    import tempfile

    from netscope.audit.store import AuditStore
    from netscope.config import AuditConfig
    from netscope.forensics import report
    from netscope.forensics.reader import read_period
    from netscope.forensics.timeline import Filters, build

    if spec["source"] == "rgw":
        s3 = spec["s3"]
        cfg = AuditConfig(backend="s3", prefix=PREFIX, s3={
            "endpoint": s3["endpoint"], "bucket": s3["bucket"], "region": s3["region"],
            "access_key_id": s3["access_key"], "secret_access_key": s3["secret_key"]})
    else:
        cfg = AuditConfig(backend="local", prefix=PREFIX, local={"path": spec["root"]})
    store = AuditStore.from_config(cfg)
    whole = (_parse_time("2024-05-01T00:00:00"), _parse_time("2024-05-02T00:00:00"))
    job = spec["job"]
    if job == "timeline-hour":
        hour = datetime.strptime(spec["trace_hour"], "%Y-%m-%d/%H").replace(tzinfo=UTC)
        start = int(hour.timestamp() * 1000)
        window = (start, start + 3_600_000)
    elif job == "timeline-window":
        window = tuple(spec["window_ms"])
    else:
        window = whole
    if job.startswith("timeline"):
        filters = Filters(trace_id=spec["trace_id"])

        async def collect() -> list[dict[str, Any]]:
            return [r async for r in read_period(store, PREFIX, *window,
                                                 needles=filters.needles())]

        rows = [r for r in build(asyncio.run(collect()), filters, *window) if r.kind == "call"]
        return len(rows), " ".join(sorted(
            _position(r.detail["kafka"].split("/")[1], r.detail["kafka"].split("/")[2],
                      None if r.run == "live" else r.run) for r in rows))
    data = asyncio.run(report.build(store, PREFIX, *window, deadlines_s={}))
    with tempfile.TemporaryDirectory() as tmp:
        report.write(data, Path(tmp) / "report.html", "html")
    return data["totals"]["calls"], f"{data['totals']['calls']} calls"


ENGINES = {"duckdb": run_duckdb, "polars": run_polars, "python": run_python,
           "obs+duckdb": run_obstore_duckdb, "netscope": run_netscope}
IMPORTS = {"duckdb": "duckdb", "polars": "polars", "python": "obstore", "obs+duckdb": "duckdb",
           "netscope": "netscope.forensics.report"}
NETSCOPE_JOBS = ("timeline", "timeline-hour", "timeline-window", "report")


def worker(spec: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    __import__(IMPORTS[spec["engine"]])
    t1 = time.perf_counter()
    rows, check = ENGINES[spec["engine"]](spec)
    t2 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "rows": rows, "check": check, "import_s": t1 - t0, "query_s": t2 - t1,
        "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": _peak_rss_kib() / 1024,
    }))


def _peak_rss_kib() -> int:
    """This process's own peak RSS. Not ``ru_maxrss``: Linux carries the parent's peak across
    the vfork + exec that subprocess uses, so a small worker would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --- orchestration ---------------------------------------------------------------------------


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        return {"error": f"exit {proc.returncode}: {tail}", "process_s": wall}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return out


def upload(root: Path, s3: dict[str, str]) -> tuple[int, float]:
    import obstore

    store = _s3_store(s3)
    files = sorted((root / PREFIX).rglob("*.jsonl.gz"))

    async def go() -> None:
        sem = asyncio.Semaphore(16)

        async def one(path: Path) -> None:
            async with sem:
                await obstore.put_async(store, str(path.relative_to(root)), path.read_bytes())

        await asyncio.gather(*(one(f) for f in files))

    t0 = time.perf_counter()
    asyncio.run(go())
    return len(files), time.perf_counter() - t0


def versions() -> str:
    out = []
    for name in ("duckdb", "duckdb-extension-httpfs", "polars", "polars-runtime-32",
                 "obstore", "orjson"):
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{name} {version(name)}")
    return ", ".join(out)


def _parse_time(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def print_table(results: list[dict[str, Any]], manifest: dict[str, Any]) -> None:
    print(f"\n{manifest['records']:,} records ({manifest['live_records']:,} live + replay), "
          f"{manifest['objects']:,} objects, {manifest['bytes'] / 2**20:.0f} MiB gzip; "
          f"{versions()}")
    head = (f"{'source':<6} {'job':<16} {'engine':<10} {'query s':>8} {'process s':>9} "
            f"{'CPU s':>7} {'RSS MiB':>8}  ok  rows  answer")
    print(head)
    print("-" * len(head))
    for r in results:
        if "error" in r:
            print(f"{r['source']:<6} {r['job']:<16} {r['engine']:<10} FAILED {r['error']}")
            continue
        ok = "yes" if r["check"] == _truth(manifest, r) else "NO"
        print(f"{r['source']:<6} {r['job']:<16} {r['engine']:<10} {r['query_s']:>8.2f} "
              f"{r['process_s']:>9.2f} {r['cpu_s']:>7.2f} {r['rss_mib']:>8.0f}  {ok:<3} "
              f"{r['rows']:>4}  {r['check'][:60]}")


def _truth(manifest: dict[str, Any], r: dict[str, Any]) -> str:
    if r["engine"] == "netscope" and r["job"] == "report":  # the report's own answer
        return f"{manifest['live_records']} calls"
    return manifest["truth"][r["job"]]


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["source"], r["job"], r["engine"]), []).append(r)
    out = []
    for (source, job, engine), rs in groups.items():
        good = [r for r in rs if "error" not in r]
        if not good:
            out.append({**rs[-1], "source": source, "job": job, "engine": engine})
            continue
        med = {k: statistics.median(r[k] for r in good)
               for k in ("query_s", "process_s", "cpu_s", "import_s")}
        checks = {r["check"] for r in good}
        out.append({"source": source, "job": job, "engine": engine, **med,
                    "rss_mib": max(r["rss_mib"] for r in good), "rows": good[0]["rows"],
                    "check": good[0]["check"] if len(checks) == 1 else "unstable"})
    return out


def targets(summary: list[dict[str, Any]], manifest: dict[str, Any]) -> None:
    n = manifest["live_records"]
    print(f"\nIssue 13 targets: times are set for 1,000,000 records, peak RSS for 10,000,000 "
          f"(this run: {n:,}):")
    rules = [("local", "timeline", "query_s", 5.0, "timeline --trace-id, local < 5 s", 10**6),
             ("rgw", "timeline", "query_s", 15.0, "timeline --trace-id, RGW < 15 s", 10**6),
             ("local", "report", "query_s", 30.0, "report, local < 30 s", 10**6),
             ("rgw", "report", "query_s", 30.0, "report, RGW < 30 s", 10**6),
             ("local", "report", "rss_mib", 1024.0, "report peak RSS < 1 GiB", 10**7)]
    for source, job, key, limit, label, size in rules:
        for r in summary:
            if r["source"] == source and r["job"] == job and "error" not in r:
                unit = " MiB" if key == "rss_mib" else " s"
                verdict = "met" if r[key] < limit else "MISSED"
                if n != size:
                    verdict += f" (target set for {size:,} records)"
                print(f"  {label:<34} {r['engine']:<10} {r[key]:>8.2f}{unit}  {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--batch-records", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/netscope-audit-bench"))
    ap.add_argument("--engines", default="duckdb,polars,python,obs+duckdb,netscope")
    ap.add_argument("--jobs", default="timeline,timeline-1q,timeline-hour,timeline-window,"
                                      "errors,minute,latency,report")
    ap.add_argument("--rgw", action="store_true", help="also read from a local RGW")
    ap.add_argument("--no-local", action="store_true", help="RGW only")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--from", dest="start", default="2024-05-01T04:00:00")
    ap.add_argument("--to", dest="end", default="2024-05-01T07:00:00")
    ap.add_argument("--duckdb-s3-threads", type=int, default=4,
                    help="DuckDB threads when reading from RGW (locally: one per core)")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return

    root = args.work / f"data-{args.records}-{args.batch_records}-s{args.seed}"
    manifest_path = root / "manifest.json"
    if args.regenerate or not manifest_path.exists():
        print(f"generating {args.records:,} records into {root} ...", flush=True)
        manifest = generate(root, args.records, args.seed, args.batch_records)
    else:
        manifest = json.loads(manifest_path.read_text())
    manifest["truth"].setdefault("timeline-1q", manifest["truth"]["timeline"])
    print(f"data: {manifest['records']:,} records, {manifest['objects']:,} objects, "
          f"{manifest['bytes'] / 2**20:.1f} MiB (generated in {manifest['generate_s']} s); "
          f"trace {manifest['trace_id']} in hour {manifest['trace_hour']}", flush=True)

    base = {"root": str(root), "trace_id": manifest["trace_id"],
            "trace_hour": manifest["trace_hour"],
            "window_ms": [_parse_time(args.start), _parse_time(args.end)]}
    sources = [] if args.no_local else ["local"]
    rgw = None
    runs: list[dict[str, Any]] = []
    try:
        if args.rgw:
            from netscope.devservices.base import free_port
            from netscope.devservices.ceph import CephRgw, RgwConfig

            rgw_dir = args.work / "rgw"
            shutil.rmtree(rgw_dir, ignore_errors=True)
            rgw = CephRgw(RgwConfig(data_dir=rgw_dir, rgw_port=free_port(),
                                    mon_port=free_port()))
            t0 = time.perf_counter()
            rgw.up()
            print(f"RGW up at {rgw.endpoint} in {time.perf_counter() - t0:.1f} s", flush=True)
            base["s3"] = {"endpoint": rgw.endpoint, "bucket": rgw.bucket,
                          "access_key": rgw.access_key, "secret_key": rgw.secret_key,
                          "region": rgw.region}
            count, took = upload(root, base["s3"])
            print(f"uploaded {count:,} objects to RGW in {took:.1f} s", flush=True)
            sources.append("rgw")
        for rep in range(args.repeat):
            for source in sources:
                for job in args.jobs.split(","):
                    for engine in args.engines.split(","):
                        if engine == "python" and job == "timeline-1q":
                            continue  # its timeline is one pass already
                        if engine == "obs+duckdb" and source == "local":
                            continue  # that is plain duckdb
                        if engine == "netscope" and job not in NETSCOPE_JOBS:
                            continue
                        threads = args.duckdb_s3_threads if source == "rgw" else os.cpu_count()
                        spec = {**base, "engine": engine, "source": source, "job": job,
                                "duckdb_threads": threads, "cache_dir": str(args.work / "cache")}
                        result = {**run_one(spec), "engine": engine, "source": source,
                                  "job": job, "rep": rep}
                        runs.append(result)
                        shown = (f"{result['query_s']:.2f} s query, "
                                 f"{result['rss_mib']:.0f} MiB, {result['check'][:50]}"
                                 if "error" not in result else result["error"])
                        print(f"  [{rep + 1}/{args.repeat}] {source} {job} {engine}: {shown}",
                              flush=True)
    finally:
        if rgw is not None:
            rgw.down()
    summary = summarise(runs)
    print_table(summary, manifest)
    targets(summary, manifest)
    if args.json_out:
        args.json_out.write_text(json.dumps({"manifest": manifest, "runs": runs,
                                             "summary": summary, "versions": versions()},
                                            indent=1, default=str))


if __name__ == "__main__":
    main()
