"""NetScope's memory under one hostile shape at a time (issue 15, item 3). Not a test.

Why: the hostile-input test (tests/integration/test_hostile_input.py) mixes 40 shapes into
valid traffic and bounds RSS for the mix; a shape that costs memory in proportion to its size
(a huge Kafka key is copied into the audit record, a huge value waits in the fetch buffer)
is diluted there. This runs a `netscope run` on a fresh tansu broker with a chosen share of
chosen shapes and prints RSS when each quarter of the stream is committed, and its peak.

    .venv/bin/python bench/hostile_bench.py --messages 20000 --kinds oversized_kafka_key \\
        --hostile-share 1.0
    .venv/bin/python bench/hostile_bench.py --messages 100000          # the test's mix

Figures and how they were read: docs/reliability.md, "Hostile input".
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import committed_offsets, settings_for, wait_for
from tests.integration.test_hostile_input import (
    BROKER_MAX_VALUE,
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_BYTES,
    netscope_run,
    write_config,
)

from netscope.devservices.base import free_port
from netscope.devservices.kafka import BrokerConfig, TansuBroker
from netscope.tools.hostile import HostileConfig, HostileStream, kinds, new_seed
from netscope.tools.hostile import kafka as hostile_kafka
from netscope.tools.upstream_sim import SimConfig, UpstreamSim


class OnlyKinds(HostileStream):
    """The test's stream with its hostile draws restricted to some kinds."""

    def __init__(self, cfg: HostileConfig, rand: random.Random, share: float, only: list[str]):
        super().__init__(cfg, rand, share)
        unknown = set(only) - set(self._kinds)
        if unknown:
            raise SystemExit(f"unknown kinds {sorted(unknown)}; known: {', '.join(self._kinds)}")
        pairs = zip(self._kinds, self._weights, strict=True)
        self._weights = [w if k in only else 0.0 for k, w in pairs]
        self._first = [k for k in self._first if k in only]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--hostile-share", type=float, default=0.5)
    parser.add_argument("--kinds", default="all", help="comma list of hostile kinds, or all")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = new_seed() if args.seed is None else args.seed
    work = Path(tempfile.mkdtemp(prefix="ns-hostile-"))
    broker = TansuBroker(BrokerConfig(data_dir=work / "tansu", port=free_port()))
    await asyncio.to_thread(broker.up)
    try:
        topic = f"hostile-bench-{seed}"
        await broker.create_topic(topic, 4)
        async with UpstreamSim(SimConfig(latency_ms=1.0)) as sim, UpstreamSim() as canary:
            settings = settings_for(broker=broker, topic=topic, tmp_path=work, group_id=topic,
                                    upstreams={"payments": sim.url, "search": sim.url})  # fmt: skip
            port = free_port()
            config = write_config(work / "netscope.toml", settings, port)
            cfg = HostileConfig(
                max_message_bytes=MAX_MESSAGE_BYTES, max_request_bytes=MAX_REQUEST_BYTES,
                broker_max_value_bytes=BROKER_MAX_VALUE["tansu"],
                canary=canary.url.removeprefix("http://"),
            )  # fmt: skip
            rand = random.Random(seed)
            only = list(kinds(cfg)) if args.kinds == "all" else args.kinds.split(",")
            stream = OnlyKinds(cfg, rand, args.hostile_share, only)
            print(f"seed={seed} messages={args.messages} share={args.hostile_share} "
                  f"kinds={args.kinds}", flush=True)  # fmt: skip
            t0 = time.monotonic()
            async with netscope_run(config, port, work / "netscope.log") as child:
                producer = hostile_kafka.make_producer(broker.bootstrap)
                await producer.start()
                ends: dict[int, int] = {}
                try:
                    for quarter in range(4):
                        n = args.messages // 4
                        part = await hostile_kafka.produce(
                            producer, topic, (stream.next() for _ in range(n))
                        )
                        for p in part:
                            ends[p.partition] = max(ends.get(p.partition, 0), p.offset + 1)
                        want = dict(ends)

                        async def done(want: dict[int, int] = want) -> bool:
                            got = await committed_offsets(broker.bootstrap, topic, topic)
                            return all(got.get(p, 0) >= e for p, e in want.items())

                        await wait_for(done, timeout_s=1800, interval_s=1.0, what="committed")
                        print(f"  quarter {quarter + 1}: rss_mb={child.sampler.read_mb():.0f} "
                              f"t={time.monotonic() - t0:.1f}s", flush=True)  # fmt: skip
                finally:
                    await producer.stop()
            peak = max(mb for _, mb in child.sampler.samples)
            print(f"exit={child.code} rss_peak_mb={peak:.0f} calls={sim.stats.total} "
                  f"canary={canary.stats.total} seconds={time.monotonic() - t0:.1f}")  # fmt: skip
    finally:
        await asyncio.to_thread(broker.down)


if __name__ == "__main__":
    asyncio.run(main())
