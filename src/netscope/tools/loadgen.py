"""Produce call-request messages to Kafka at a steady, reproducible rate.

Used by the demo, integration tests, benchmarks and game days. Pacing follows an absolute
schedule (message i is due at t0 + i / rate_per_s) rather than sleeping a fixed interval
after each send, so slow sends or event-loop hiccups do not make the achieved rate drift
below the asked one; at high rates all messages due in a tick are sent together. Kafka keys
come from a bounded set so per-key ordering is actually exercised by the consumer side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
import typer
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from netscope.runtime import wait_event
from netscope.tools.hostile import HostileConfig, HostileStream
from netscope.tools.messages import INVALID_KINDS, encode, make_invalid, make_request, trace_id_of

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "netscope.requests"
DEFAULT_UPSTREAM_MIX = "payments=0.7,search=0.3"
# Below this the loop does not wake more often; at high rates each wake sends a batch.
MIN_TICK_S = 0.005
# Room for the oversize_body invalid kind (just over 1 MiB of body plus the envelope).
MAX_REQUEST_BYTES = 4 * 1024 * 1024


def _default_upstreams() -> dict[str, float]:
    return {"payments": 0.7, "search": 0.3}


def _default_methods() -> dict[str, float]:
    return {"GET": 0.7, "POST": 0.2, "PUT": 0.05, "DELETE": 0.05}


@dataclass
class LoadgenConfig:
    bootstrap: str
    topic: str = DEFAULT_TOPIC
    rate_per_s: float = 50.0
    # Stops at whichever of duration_s / count comes first; with neither, runs until `stop`.
    duration_s: float | None = None
    count: int | None = None
    upstreams: dict[str, float] = field(default_factory=_default_upstreams)
    invalid_share: float = 0.0
    invalid_kinds: tuple[str, ...] = INVALID_KINDS
    # Shapes of tools/hostile/ (its huge and hand-built ones left out: tests produce those).
    hostile_share: float = 0.0
    methods: dict[str, float] = field(default_factory=_default_methods)
    key_cardinality: int = 100
    seed: int | None = None
    linger_ms: int = 5

    def validate(self) -> None:
        if not (self.rate_per_s > 0 and math.isfinite(self.rate_per_s)):
            raise ValueError(f"rate_per_s must be > 0, got {self.rate_per_s!r}")
        if self.duration_s is not None and self.duration_s < 0:
            raise ValueError(f"duration_s must be >= 0, got {self.duration_s!r}")
        if self.count is not None and self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count!r}")
        if not 0.0 <= self.invalid_share <= 1.0:
            raise ValueError(f"invalid_share must be in [0, 1], got {self.invalid_share!r}")
        if not 0.0 <= self.hostile_share <= 1.0:
            raise ValueError(f"hostile_share must be in [0, 1], got {self.hostile_share!r}")
        if self.key_cardinality < 1:
            raise ValueError(f"key_cardinality must be >= 1, got {self.key_cardinality!r}")
        _check_weights("upstreams", self.upstreams)
        _check_weights("methods", self.methods)
        unknown = set(self.invalid_kinds) - set(INVALID_KINDS)
        if unknown or (self.invalid_share > 0 and not self.invalid_kinds):
            raise ValueError(f"invalid_kinds must be a non-empty subset of {INVALID_KINDS}")


def _check_weights(what: str, weights: dict[str, float]) -> None:
    if not weights:
        raise ValueError(f"{what} must not be empty")
    if any(not (w >= 0 and math.isfinite(w)) for w in weights.values()):
        raise ValueError(f"{what} weights must be finite and >= 0: {weights!r}")
    if sum(weights.values()) <= 0:
        raise ValueError(f"{what} weights must not all be zero: {weights!r}")


@dataclass(frozen=True)
class SentMessage:
    """One message the broker acknowledged. Invalid ones may lack request_id / upstream."""

    request_id: str | None
    trace_id: str | None
    key: str
    valid: bool
    upstream: str | None
    invalid_kind: str | None = None
    partition: int | None = None
    offset: int | None = None


@dataclass
class LoadgenReport:
    sent: int = 0  # acknowledged by the broker, valid and invalid
    invalid_sent: int = 0
    errors: int = 0  # failed to produce (not acknowledged)
    elapsed_s: float = 0.0
    actual_rate_per_s: float = 0.0
    by_upstream: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"loadgen: sent={self.sent} invalid_sent={self.invalid_sent} errors={self.errors} "
            f"elapsed_s={self.elapsed_s:.2f} rate_per_s={self.actual_rate_per_s:.1f}"
        )


def parse_mix(text: str) -> dict[str, float]:
    """Parse "payments=0.7,search=0.3" into weights; a bare "payments" means weight 1."""
    mix: dict[str, float] = {}
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise ValueError(f"empty entry in mix {text!r}; expected name=weight,name=weight")
        name, sep, weight_text = part.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"missing upstream name in {part!r} of mix {text!r}")
        if name in mix:
            raise ValueError(f"upstream {name!r} appears twice in mix {text!r}")
        if not sep:
            mix[name] = 1.0
            continue
        try:
            weight = float(weight_text)
        except ValueError:
            raise ValueError(
                f"weight {weight_text.strip()!r} for {name!r} is not a number"
            ) from None
        if not (weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"weight for {name!r} must be finite and >= 0, got {weight_text!r}")
        mix[name] = weight
    if sum(mix.values()) <= 0:
        raise ValueError(f"mix {text!r} has no positive weight")
    return mix


class _Generator:
    """Draws the next (key, value, SentMessage-to-be) from the config's distributions."""

    def __init__(self, cfg: LoadgenConfig) -> None:
        self.cfg = cfg
        self.rand = random.Random(cfg.seed)
        self._upstreams = list(cfg.upstreams)
        self._upstream_w = list(cfg.upstreams.values())
        self._methods = list(cfg.methods)
        self._method_w = list(cfg.methods.values())
        self._key_width = len(str(cfg.key_cardinality - 1))
        self._hostile = None
        if cfg.hostile_share:
            shapes = HostileConfig(upstreams=tuple(cfg.upstreams), hand_built=False, huge=False)
            self._hostile = HostileStream(shapes, self.rand, hostile_share=1.0)
        self.last_headers: list[tuple[str, bytes | None]] | None = None  # of the last next()

    def next(self) -> tuple[bytes, bytes, SentMessage]:
        rand = self.rand
        key = f"cust-{rand.randrange(self.cfg.key_cardinality):0{self._key_width}d}"
        upstream = rand.choices(self._upstreams, self._upstream_w)[0]
        self.last_headers = None
        if self._hostile is not None and rand.random() < self.cfg.hostile_share:
            hostile = self._hostile.next()
            self.last_headers = list(hostile.headers) or None
            meta = SentMessage(
                request_id=hostile.request_id,
                trace_id=None,
                key=key,
                valid=hostile.valid,
                upstream=None,
                invalid_kind=None if hostile.valid else f"hostile:{hostile.kind}",
            )
            return hostile.key, hostile.value, meta  # type: ignore[return-value]
        if self.cfg.invalid_share and rand.random() < self.cfg.invalid_share:
            kind = rand.choice(self.cfg.invalid_kinds)
            value = make_invalid(kind, rand, upstream=upstream)
            doc = _try_parse(value)
            tp = doc.get("traceparent") if doc else None
            meta = SentMessage(
                request_id=_str_or_none(doc.get("request_id")) if doc else None,
                trace_id=trace_id_of(tp) if isinstance(tp, str) else None,
                key=key,
                valid=False,
                upstream=_str_or_none(doc.get("upstream")) if doc else None,
                invalid_kind=kind,
            )
            return key.encode(), value, meta
        method = rand.choices(self._methods, self._method_w)[0]
        msg = make_request(upstream, method=method, rand=rand)
        meta = SentMessage(
            request_id=msg["request_id"],
            trace_id=trace_id_of(msg["traceparent"]),
            key=key,
            valid=True,
            upstream=upstream,
        )
        return key.encode(), encode(msg), meta


def _try_parse(value: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


async def run_loadgen(
    cfg: LoadgenConfig,
    *,
    on_sent: Callable[[SentMessage], None] | None = None,
    stop: asyncio.Event | None = None,
) -> LoadgenReport:
    """Produce messages per ``cfg`` until count / duration is reached or ``stop`` is set.

    Returns once every produced message is acknowledged (acks=all) or has failed.
    ``on_sent`` is called for each acknowledged message, from the event loop.
    """
    cfg.validate()
    gen = _Generator(cfg)
    report = LoadgenReport()
    by_upstream: Counter[str] = Counter()
    pending: set[asyncio.Future[RecordMetadata]] = set()
    loop = asyncio.get_running_loop()

    def delivered(meta: SentMessage, fut: asyncio.Future[RecordMetadata]) -> None:
        pending.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            report.errors += 1
            if not fut.cancelled():
                log.warning("produce failed for key %s: %r", meta.key, fut.exception())
            return
        report.sent += 1
        if not meta.valid:
            report.invalid_sent += 1
        if meta.upstream is not None:
            by_upstream[meta.upstream] += 1
        if on_sent is not None:
            record = fut.result()
            on_sent(_with_position(meta, record))

    producer = AIOKafkaProducer(
        bootstrap_servers=cfg.bootstrap,
        acks="all",
        linger_ms=cfg.linger_ms,
        max_request_size=MAX_REQUEST_BYTES,
    )
    await producer.start()
    t0 = loop.time()
    try:
        limit = cfg.count
        if cfg.duration_s is not None:
            # Message i is due at i / rate; only those due strictly before the end count.
            by_duration = math.ceil(cfg.duration_s * cfg.rate_per_s)
            limit = by_duration if limit is None else min(limit, by_duration)
        issued = 0
        while limit is None or issued < limit:
            if stop is not None and stop.is_set():
                break
            due = math.floor((loop.time() - t0) * cfg.rate_per_s) + 1
            if limit is not None:
                due = min(due, limit)
            while issued < due:
                key, value, meta = gen.next()
                issued += 1
                try:
                    fut = await producer.send(
                        cfg.topic, value=value, key=key, headers=gen.last_headers
                    )
                except Exception as exc:
                    # e.g. MessageSizeTooLargeError: rejected before it reached the broker.
                    report.errors += 1
                    log.warning("produce rejected for key %s: %r", meta.key, exc)
                    continue
                pending.add(fut)
                fut.add_done_callback(lambda f, m=meta: delivered(m, f))
            if limit is not None and issued >= limit:
                break
            wake_at = max(t0 + issued / cfg.rate_per_s, loop.time() + MIN_TICK_S)
            await _sleep_until(loop, wake_at, stop)
        await producer.flush()
        if pending:
            await asyncio.wait(set(pending))
    finally:
        await producer.stop()
    report.elapsed_s = loop.time() - t0
    report.actual_rate_per_s = report.sent / report.elapsed_s if report.elapsed_s > 0 else 0.0
    report.by_upstream = dict(by_upstream)
    return report


def _with_position(meta: SentMessage, record: RecordMetadata) -> SentMessage:
    return SentMessage(
        request_id=meta.request_id,
        trace_id=meta.trace_id,
        key=meta.key,
        valid=meta.valid,
        upstream=meta.upstream,
        invalid_kind=meta.invalid_kind,
        partition=record.partition,
        offset=record.offset,
    )


async def _sleep_until(
    loop: asyncio.AbstractEventLoop, wake_at: float, stop: asyncio.Event | None
) -> None:
    delay = max(0.0, wake_at - loop.time())
    if stop is None:
        await asyncio.sleep(delay)
        return
    await wait_event(stop, delay)


async def _run_until_signalled(cfg: LoadgenConfig) -> LoadgenReport:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return await run_loadgen(cfg, stop=stop)


def loadgen_command(
    bootstrap: Annotated[str, typer.Option(help="Kafka bootstrap servers.")] = "127.0.0.1:9092",
    topic: Annotated[str, typer.Option(help="Topic to produce to.")] = DEFAULT_TOPIC,
    rate: Annotated[float, typer.Option(help="Messages per second.")] = 50.0,
    duration_s: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
    upstream_mix: Annotated[
        str, typer.Option(help="Upstream names and weights, e.g. payments=0.7,search=0.3.")
    ] = DEFAULT_UPSTREAM_MIX,
    invalid_share: Annotated[
        float, typer.Option(help="Share of deliberately invalid messages, 0..1.")
    ] = 0.0,
    hostile_share: Annotated[
        float, typer.Option(help="Share of hostile messages (tools/hostile/ shapes), 0..1.")
    ] = 0.0,
    key_cardinality: Annotated[int, typer.Option(help="Number of distinct Kafka keys.")] = 100,
    seed: Annotated[int | None, typer.Option(help="Seed for a reproducible stream.")] = None,
) -> None:
    """Produce call-request messages to Kafka; runs until --count/--duration-s or Ctrl-C."""
    try:
        cfg = LoadgenConfig(
            bootstrap=bootstrap,
            topic=topic,
            rate_per_s=rate,
            duration_s=duration_s,
            count=count,
            upstreams=parse_mix(upstream_mix),
            invalid_share=invalid_share,
            hostile_share=hostile_share,
            key_cardinality=key_cardinality,
            seed=seed,
        )
        cfg.validate()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    report = asyncio.run(_run_until_signalled(cfg))
    typer.echo(report.summary())
    if report.errors:
        raise typer.Exit(code=1)
