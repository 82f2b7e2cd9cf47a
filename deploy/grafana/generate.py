#!/usr/bin/env python3
"""Write NetScope's Grafana dashboard (dashboards/netscope.json) from the panel catalogue.

    .venv/bin/python deploy/grafana/generate.py            # write the dashboard JSON
    .venv/bin/python deploy/grafana/generate.py --check    # exit 1 if the file is stale
    .venv/bin/python deploy/grafana/generate.py --schema   # re-derive schema/ (needs npm)

Why a script and a checked-in file: Grafana provisioning reads JSON files, and reviewers read
diffs of the JSON; the generator is the only thing anyone edits, and a test regenerates the
JSON and compares. Before writing, the dashboard is validated (schema, PromQL, exported
metric names), so a broken dashboard is never written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE))

from netscope_grafana import checks, schema  # noqa: E402
from netscope_grafana.build import render  # noqa: E402

DASHBOARD = HERE / "dashboards" / "netscope.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--schema", action="store_true", help="re-derive schema/ from the SDK")
    args = parser.parse_args(argv)
    if args.schema:
        for path in schema.regenerate():
            print(f"wrote {path.relative_to(HERE)}")
        return 0
    text = render()
    problems = checks.problems(text)
    if problems:
        print("the generated dashboard is not valid:", *problems, sep="\n  ", file=sys.stderr)
        return 2
    if args.check:
        if not DASHBOARD.exists() or DASHBOARD.read_text() != text:
            print(f"{DASHBOARD.relative_to(HERE)} is stale: run {Path(__file__).name}")
            return 1
        print(f"{DASHBOARD.relative_to(HERE)} is up to date")
        return 0
    DASHBOARD.write_text(text)
    print(f"wrote {DASHBOARD.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
