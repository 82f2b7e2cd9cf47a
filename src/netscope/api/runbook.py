"""The runbook behind the dashboard's links: which section answers which state, and the page.

Why the page links its tiles to sections: at 3 a.m. the next step matters more than the
figure. An open breaker leads to INC-03, timeouts to INC-01, an audit backlog or degraded
mode to INC-02, anything else to the five-minute health checklist. The anchors are the ones
GitHub and GitLab give the headings of ``docs/runbook.md``, so ``runbook_url`` may point to a
rendered copy anywhere (a wiki, the repository) and the same fragments still land.

By default the links go to ``/dashboard/runbook``, which renders ``docs/runbook.md`` of the
source tree NetScope runs from (markdown-it, raw HTML escaped), or says where to find it when
the package was installed without its docs.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

SECTIONS = {
    "INC-01": "inc-01--outbound-timeouts-surge",
    "INC-02": "inc-02--ceph-rgw-write-errors",
    "INC-03": "inc-03--circuit-breaker-open-for-long",
    "health": "5-health-checklist-every-5-minutes",
    "slo": "8-operational-slos-and-alert-thresholds",
    "replay": "7-replay-and-reconstruction",
}
DEFAULT_URL = "dashboard/runbook"  # relative to the page, like its assets
SOURCE = Path(__file__).resolve().parents[3] / "docs" / "runbook.md"
_NOT_SLUG = re.compile(r"[^\w\- ]", re.UNICODE)


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, each space a hyphen."""
    return _NOT_SLUG.sub("", heading.strip().lower()).replace(" ", "-")


def find(path: Path | None = None) -> Path | None:
    candidate = path or SOURCE
    return candidate if candidate.is_file() else None


def render(markdown: str, *, stylesheet: str = "static/style.css") -> str:
    """The runbook as one HTML page, every heading with its anchor."""
    from markdown_it import MarkdownIt  # rich's dependency: always installed with NetScope

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and i + 1 < len(tokens):
            anchor = slug(tokens[i + 1].content)
            n = seen.get(anchor, 0)
            seen[anchor] = n + 1
            token.attrSet("id", anchor if n == 0 else f"{anchor}-{n}")
    body = md.renderer.render(tokens, md.options, {})
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer"><title>NetScope runbook</title>'
        f'<link rel="stylesheet" href="{html.escape(stylesheet)}"></head>'
        f'<body class="doc"><main class="doc">{body}</main></body></html>'
    )


def missing_page(expected: Path) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Runbook</title>'
        '<link rel="stylesheet" href="static/style.css"></head><body class="doc"><main class="doc">'
        "<h1>Runbook not installed</h1><p>This NetScope was installed without its docs "
        f"(looked for <code>{html.escape(str(expected))}</code>). Read "
        "<code>docs/runbook.md</code> in the source, or point the dashboard's runbook links "
        "at a rendered copy.</p></main></body></html>"
    )
