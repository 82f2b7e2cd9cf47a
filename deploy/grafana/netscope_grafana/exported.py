"""The series NetScope exports, read from its own registries.

Why from the registries and not from docs/metrics.md or a list here: a panel must break the
build the day a metric is renamed in the code, whether or not someone updated a document.
Three sources make up everything a NetScope process can serve on ``/metrics``: the pipeline's
``Metrics``, the WebSocket hub's series (same registry in ``netscope run``), and a replay's
progress collector (``netscope replay --metrics-port``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

# A family's type -> the sample names Prometheus stores for it (``_created`` left out: the
# dashboard never reads it, and docs/metrics.md does not list it).
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "untyped": ("",),
}


@cache
def exported_series() -> dict[str, frozenset[str]]:
    """Every sample name NetScope can export -> the label names it carries (``le`` included)."""
    from netscope.api.hub import EventHub
    from netscope.observability.events import EventBus
    from netscope.observability.metrics import Metrics

    metrics = Metrics()
    hub = EventHub(EventBus(), registry=metrics.registry)
    out: dict[str, frozenset[str]] = {}
    for wrapper in _wrappers(vars(metrics).values(), vars(hub.metrics).values()):
        # prometheus_client keeps a wrapper's label names in _labelnames: the only place they
        # exist before a child is created (several families have none until first use).
        labels = frozenset(wrapper._labelnames)
        for family in wrapper.collect():
            for suffix in _SUFFIXES[family.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                out[family.name + suffix] = labels | extra
    out.update(_replay_series())
    return out


def _wrappers(*groups: Iterable[object]) -> list[MetricWrapperBase]:
    return [w for group in groups for w in group if isinstance(w, MetricWrapperBase)]


def _replay_series() -> dict[str, frozenset[str]]:
    """The replay's progress series, collected from a summary with one partition."""
    from netscope.replay.metrics import ReplayCollector
    from netscope.replay.runner import ReplaySummary, Tally

    summary = ReplaySummary(
        run_id="r", topic="t", from_ms=0, to_ms=1, rate_per_s=None, upstream=None,
        partitions={0: Tally()},
    )  # fmt: skip
    registry = CollectorRegistry()
    registry.register(ReplayCollector(summary))
    out: dict[str, frozenset[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, frozenset()) | frozenset(sample.labels)
    return out
