"""Object keys of audit batches: where a record lives is a pure function of where it came from.

    {prefix}/dt=YYYY-MM-DD/hour=HH/topic={topic}/partition={p}/{first_offset:020d}.jsonl[.gz]
    {prefix}/dt=YYYY-MM-DD/hour=HH/topic={topic}/partition={p}/run={run_id}/{first:020d}...

The second form holds what ``netscope replay`` wrote: a replay's records never land on (or
collide with) the live objects' keys, and one listing of an hour finds both.

    {prefix}/dt=YYYY-MM-DD/hour=HH/control/instance={id}[/run={run_id}]/{first_seq:020d}...

holds control events (breaker transitions, throttles, degraded mode, start and stop): not
Kafka messages, so no topic; numbered by a per-process sequence that starts at the process's
start time in microseconds, so a restarted instance never reuses a key.

The hour is the event hour (Kafka record timestamp, UTC) of the batch's records: a batch never
spans two hours. A batch always starts at a partition's committed offset or right after the
previous batch, so a batch redelivered after a crash gets the same key as the object already
written, and ``If-None-Match: *`` turns the rewrite into a no-op (see writer.py). Zero-padded
offsets make a prefix listing come back in offset order.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime

# Not a valid Kafka topic name (':' is not allowed there): control lanes cannot collide.
CONTROL_TOPIC = "netscope:control"

_CONTROL_KEY = re.compile(
    r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/control/instance=([^/]+)/"
    r"(?:run=([^/]+)/)?(\d{20})\.jsonl(\.gz)?$"
)
_KEY = re.compile(
    r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/topic=([^/]+)/partition=(\d+)/"
    r"(?:run=([^/]+)/)?(\d{20})\.jsonl(\.gz)?$"
)


def event_hour(timestamp_ms: int) -> str:
    """``YYYY-MM-DD/HH`` of an event time, UTC."""
    return _hour_of(timestamp_ms // 3_600_000)


@functools.lru_cache(maxsize=64)
def _hour_of(hour_index: int) -> str:
    # Called once per record: formatting a datetime costs more than the rest of the audit path.
    return datetime.fromtimestamp(hour_index * 3600, UTC).strftime("%Y-%m-%d/%H")


def hour_prefix(prefix: str, hour: str) -> str:
    day, hh = hour.split("/")
    return f"{prefix}/dt={day}/hour={hh}/"


def object_key(
    prefix: str,
    hour: str,
    topic: str,
    partition: int,
    first_offset: int,
    *,
    gzip: bool,
    run_id: str | None = None,
    instance_id: str | None = None,
) -> str:
    suffix = ".jsonl.gz" if gzip else ".jsonl"
    folder = f"{hour_prefix(prefix, hour)}topic={topic}/partition={partition}"
    if topic == CONTROL_TOPIC:
        folder = f"{hour_prefix(prefix, hour)}control/instance={instance_id}"
    if run_id is not None:
        folder = f"{folder}/run={run_id}"
    return f"{folder}/{first_offset:020d}{suffix}"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    day: str
    hour: str
    topic: str
    partition: int
    first_offset: int
    gzip: bool
    run_id: str | None = None  # a replay's objects (None: live)
    instance_id: str | None = None  # control objects only (topic is CONTROL_TOPIC)


def parse_key(key: str) -> ParsedKey | None:
    match = _KEY.search(key)
    if not match:
        control = _CONTROL_KEY.search(key)
        if not control:
            return None
        day, hour, instance, run_id, first, gz = control.groups()
        return ParsedKey(
            day, hour, CONTROL_TOPIC, 0, int(first), gz is not None, run_id, instance
        )
    day, hour, topic, partition, run_id, first, gz = match.groups()
    return ParsedKey(day, hour, topic, int(partition), int(first), gz is not None, run_id)
