"""A replay's progress as Prometheus series, read from its summary at scrape time.

``netscope replay --metrics-port N`` serves them on 127.0.0.1:N next to the replay's own
pipeline series (``netscope_requests_total``, ``netscope_ledger_*``, ...), so a Prometheus
scraping it (or an operator with curl) sees the replay like the live service.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netscope.replay.runner import ReplaySummary

RESULTS = ("read", "called", "succeeded", "skipped", "failed", "invalid", "filtered")


class ReplayCollector(Collector):
    def __init__(self, summary: ReplaySummary) -> None:
        self._summary = summary

    def collect(self) -> Iterator[Metric]:
        s = self._summary
        labels = {"run_id": s.run_id}
        messages = CounterMetricFamily(
            "netscope_replay_messages",
            "Replayed messages by partition and what happened to them (read: taken from the "
            "window; skipped: the ledger held the key as done).",
            labels=["run_id", "partition", "result"],
        )
        planned = GaugeMetricFamily(
            "netscope_replay_planned_messages",
            "Offsets in the window per partition (an upper bound on messages).",
            labels=["run_id", "partition"],
        )
        for p, tally in sorted(s.partitions.items()):
            planned.add_metric([s.run_id, str(p)], tally.planned)
            for result in RESULTS:
                messages.add_metric([s.run_id, str(p), result], getattr(tally, result))
        limit = GaugeMetricFamily(
            "netscope_replay_rate_limit_per_second",
            "The replay's --rate (+Inf: unlimited).",
            labels=list(labels),
        )
        limit.add_metric([s.run_id], s.rate_per_s or float("inf"))
        yield from (messages, planned, limit)
