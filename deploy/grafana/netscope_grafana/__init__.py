"""NetScope's Grafana dashboard, as code (grafana-foundation-sdk, pinned ==0.0.21).

Why a package beside the JSON: the JSON is generated, so what a reviewer reads and edits is
the panel catalogue (``panels.py``); ``build.py`` turns it into a dashboard with the SDK,
``promql.py`` writes and checks its queries, ``exported.py`` says which series NetScope
really exports (from its own registries, not from a list kept by hand), and ``schema.py``
validates the result against Grafana's dashboard schema kept in ``deploy/grafana/schema/``.
Regenerate with ``.venv/bin/python deploy/grafana/generate.py`` (README.md beside it).
"""

import warnings

# The SDK marks the classic dashboard model deprecated in favour of dashboardv2, which only
# Grafana 12+ reads behind a feature flag; file provisioning in Grafana 11 (deploy/compose.yaml)
# takes the classic JSON model, so this dashboard uses it on purpose.
warnings.filterwarnings(
    "ignore", message="Prefer using dashboardv2.Dashboard instead.", category=DeprecationWarning
)
