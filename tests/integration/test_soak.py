"""The soak's short variant (issue 15, item 5): bench/soak.py's schedule for two minutes.

Mixed traffic and mixed faults (slots 1 and 2 join, are SIGKILLed / SIGTERMed and leave; RGW
down; a ledger restart; upstream chaos) against a slot 0 that is never signalled, sampled
every 2 s from its /metrics. A two-minute run is too short for an RSS slope, so the verdict is
the short one (bench/soak.py, ``SHORT``): open fds and asyncio tasks back to the baseline
within a margin once the faults have healed (keep-alive connections to the upstream aside:
they are the transport's pool, judged against its bound), RSS in the tail within a margin
of the baseline and under a ceiling, the spool empty, one PID; plus the fault run's strict
checks (0 missing, 0 doubled, every invalid message dead-lettered, no call beyond the ledger,
no unclean exit).
Samples, verdict and plot: test-artifacts/soak/ci-<seed>.{json,png}.

The full 30 minutes: ``.venv/bin/python bench/soak.py --minutes 30`` (or here with
``SOAK_LONG=1``, marked slow). Figures: docs/reliability.md, "Soak".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bench.soak import ARTIFACTS, FULL, SHORT, SoakSpec, plot, run_soak, summary, write_json

pytestmark = pytest.mark.integration


async def _soak(spec: SoakSpec, name: str, broker, rgw, bucket, postgres, dsn, root: Path) -> None:
    thresholds = FULL if spec.minutes >= 20 else SHORT
    doc = await run_soak(spec, broker=broker, rgw=rgw, bucket=bucket, postgres=postgres,
                         dsn=dsn, root=root, thresholds=thresholds)  # fmt: skip
    write_json(doc, ARTIFACTS / f"{name}.json")
    plot(doc, ARTIFACTS / f"{name}.png")
    text = summary(doc)
    print(text)
    assert doc["verdict"]["ok"], text


@pytest.mark.timeout(900)
async def test_soak_short(
    tansu_broker, rgw_faults, rgw_bucket, postgres, postgres_dsn, tmp_path: Path
) -> None:
    seed = int(os.environ.get("SOAK_SEED", 1515))
    spec = SoakSpec(seed=seed, minutes=2.0, sample_s=2.0)
    await _soak(spec, f"ci-{seed}", tansu_broker, rgw_faults, rgw_bucket, postgres,
                postgres_dsn, tmp_path)  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not os.environ.get("SOAK_LONG"), reason="30-minute soak: set SOAK_LONG=1")
async def test_soak_long(
    tansu_broker, rgw_faults, rgw_bucket, postgres, postgres_dsn, tmp_path: Path
) -> None:
    seed = int(os.environ.get("SOAK_SEED", 1505))
    spec = SoakSpec(seed=seed, minutes=float(os.environ.get("SOAK_MINUTES", 30)))
    await _soak(spec, f"long-{seed}", tansu_broker, rgw_faults, rgw_bucket, postgres,
                postgres_dsn, tmp_path)  # fmt: skip
