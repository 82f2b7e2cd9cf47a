"""The report's plots, drawn from its JSON data as static SVG (no browser, no network).

matplotlib with the Agg backend, chosen by measurement (bench/report_plot_bench.py, which
says why over pygal, faster and smaller, and Altair + vl-convert): shaded incident and
degraded periods, a legible log axis, one panel per upstream, the same bytes run after run;
the five plots take about 1.4 s and 82 MiB for three hours of three upstreams. Its SVG has no
script and no external reference once its metadata is dropped, so the HTML report opens
offline and prints. Text stays text (``svg.fonttype = none``): smaller, searchable.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

STATE_LEVEL = {"closed": 0, "forced_closed": 0, "half_open": 1, "open": 2, "forced_open": 2}
OUTCOME_COLOURS = {
    "success": "#2e7d32",
    "http_error": "#c62828",
    "timeout_connect": "#ef6c00",
    "timeout_read": "#f9a825",
    "deadline_exceeded": "#8e24aa",
    "connect_error": "#6d4c41",
    "protocol_error": "#455a64",
    "rejected_circuit_open": "#1565c0",
    "rejected_rate_limited": "#00838f",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkit
    matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "netscope",
                                "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})  # fmt: skip
    import matplotlib.pyplot as plt

    return plt


def _times(isos: list[str]) -> list[datetime]:
    return [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in isos]


def _edges(data: dict[str, Any]) -> list[datetime]:
    """Each bin's start, then the last bin's end: a step drawn "post" covers every bin,
    the last one included (``_held`` repeats the last value for that edge)."""
    t = _times(data["series"]["bins"])
    if t:
        t.append(datetime.fromtimestamp(t[-1].timestamp() + data["window"]["bin_s"], UTC))
    return t


def _held(values: list[Any]) -> list[Any]:
    return [*values, values[-1]] if values else values


def _svg(fig: Any) -> str:
    out = io.StringIO()
    # No RDF block: its defaults name purl.org, creativecommons.org and matplotlib.org.
    none = {"Creator": None, "Date": None, "Format": None, "Type": None}
    fig.savefig(out, format="svg", bbox_inches="tight", metadata=none)
    _pyplot().close(fig)
    text = out.getvalue()
    return text[text.index("<svg") :]  # inline in HTML: no XML declaration or doctype


def _figure(rows: int = 1, height: float = 2.6) -> tuple[Any, Any]:
    plt = _pyplot()
    fig, axes = plt.subplots(rows, 1, figsize=(9, height * rows), sharex=True, squeeze=False)
    return fig, [a[0] for a in axes]


def _shade(ax: Any, data: dict[str, Any]) -> None:
    """The detected incident and the degraded periods, behind every time plot."""
    det = data["detected"]
    if det["start"]:
        start, end = _times([det["start"], det["end"]])
        ax.axvspan(start, end, color="#ffcdd2", alpha=0.35, lw=0, label="_detected")
    for p in data["degraded_periods"]:
        start = datetime.fromtimestamp(p["start_at"], UTC)
        end = datetime.fromtimestamp(p["end_at"], UTC)
        ax.axvspan(start, end, color="#90a4ae", alpha=0.3, lw=0, label="_degraded")


def _finish(fig: Any, axes: list[Any], title: str, data: dict[str, Any]) -> str:
    import matplotlib.dates as mdates

    axes[0].set_title(title, loc="left", fontsize=10)
    t = _edges(data) or _times([data["window"]["from"], data["window"]["to"]])
    start, end = _times([data["window"]["from"], data["window"]["to"]])
    axes[-1].set_xlim(min(start, t[0]), max(end, t[-1]))  # every plot on the same axis
    short = (end - start).total_seconds() < 600  # minutes alone would repeat one label
    fmt = "%H:%M:%S" if short else "%H:%M" if (end - start).days < 2 else "%m-%d %H:%M"
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz="UTC"))
    axes[-1].set_xlabel("UTC")
    return _svg(fig)


def outcomes_per_bin(data: dict[str, Any]) -> str:
    series = data["series"]
    t = _edges(data)
    # Invalid messages have no upstream: the DLQ count is in the impact table, not here.
    ups = [up for up in series["outcomes"] if up != "(invalid)"] or ["(no call)"]
    fig, axes = _figure(len(ups), 2.0)
    for ax, up in zip(axes, ups, strict=True):
        got = series["outcomes"].get(up, {})
        # Failures at the bottom, where a few of them stay visible under the successes.
        by_outcome = {o: got[o] for o in sorted(got, key=lambda o: (o == "success", o))}
        if by_outcome:
            # One stacked polygon per outcome, not a bar per bin: the SVG stays small (a day
            # of minutes would be thousands of rectangles).
            colours = [OUTCOME_COLOURS.get(o, "#9e9e9e") for o in by_outcome]
            ax.stackplot(t, [_held(v) for v in by_outcome.values()], labels=list(by_outcome),
                         step="post",
                         colors=colours)  # fmt: skip
        _shade(ax, data)
        ax.set_ylabel(f"{up}\ncalls / bin")
        if by_outcome:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _finish(fig, axes, "Outcomes per bin, per upstream", data)


def latency(data: dict[str, Any]) -> str:
    series = data["series"]
    t = _edges(data)
    ups = list(series["latency_s"]) or ["(no call)"]
    fig, axes = _figure(len(ups), 1.8)
    styles = {"p50": ("#90caf9", ":"), "p95": ("#1e88e5", "--"), "p99": ("#0d47a1", "-")}
    for ax, up in zip(axes, ups, strict=True):
        for q, values in series["latency_s"].get(up, {}).items():
            colour, style = styles[q]
            ax.plot(t, [v if v is not None else float("nan") for v in _held(values)], style,
                    color=colour, label=q, drawstyle="steps-post", lw=1.2)  # fmt: skip
        _shade(ax, data)
        ax.set_yscale("log")
        ax.set_ylabel(f"{up}\nseconds (log)")
        if up in series["latency_s"]:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    title = "Latency p50 / p95 / p99 per bin (calls that reached the upstream)"
    return _finish(fig, axes, title, data)


def timeouts(data: dict[str, Any]) -> str:
    series = data["series"]
    t = _edges(data)
    fig, axes = _figure(1, 2.4)
    ax = axes[0]
    for kind, counts in series["timeouts"].items():
        ax.plot(t, _held(counts), label=kind, color=OUTCOME_COLOURS.get(kind),
                drawstyle="steps-post")
    _shade(ax, data)
    ax.set_ylabel("attempts / bin")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _finish(fig, axes, "Timeouts by kind (every attempt)", data)


def _legend_or_say(
    fig: Any, ax: Any, data: dict[str, Any], drawn: bool, empty: str, title: str
) -> str:
    """The shaded periods, then a legend for what was drawn, or a sentence saying why the
    plot is empty (an empty frame would look like a rendering failure)."""
    _shade(ax, data)
    if drawn:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center")
    return _finish(fig, [ax], title, data)


def breakers(data: dict[str, Any]) -> str:
    fig, axes = _figure(1, 2.4)
    ax = axes[0]
    by_breaker: dict[str, list[dict[str, Any]]] = {}
    for iv in data["breakers"]:
        name = iv["upstream"] + (f" @ {iv['instance_id']}" if iv["instance_id"] else "")
        by_breaker.setdefault(name, []).append(iv)
    for name, ivs in by_breaker.items():
        xs, ys = [], []
        for iv in ivs:
            xs += [datetime.fromtimestamp(iv["start_at"], UTC),
                   datetime.fromtimestamp(iv["end_at"], UTC)]  # fmt: skip
            ys += [STATE_LEVEL.get(iv["state"], 0)] * 2
        ax.plot(xs, ys, label=name, lw=2)
    ax.set_yticks([0, 1, 2], ["closed", "half_open", "open"])
    ax.set_ylim(-0.3, 2.3)
    return _legend_or_say(fig, ax, data, bool(by_breaker), "no breaker transition in this period",
                          "Circuit breaker state")  # fmt: skip


def backlog(data: dict[str, Any]) -> str:
    fig, axes = _figure(1, 2.2)
    ax = axes[0]
    by_instance: dict[str, list[dict[str, Any]]] = {}
    for point in data["backlog"]:
        by_instance.setdefault(point["instance_id"] or "", []).append(point)
    for instance, points in by_instance.items():
        xs = [datetime.fromtimestamp(p["at_s"], UTC) for p in points]
        ax.plot(xs, [p["pending_batches"] for p in points], "o-", label=instance or "instance",
                drawstyle="steps-post")  # fmt: skip
    ax.set_ylabel("spooled batches")
    return _legend_or_say(fig, ax, data, bool(by_instance),
                          "no degraded period: the store took every batch",
                          "Audit backlog in the local spool (grey: degraded mode)")  # fmt: skip


PLOTS = {
    "outcomes": outcomes_per_bin,
    "latency": latency,
    "timeouts": timeouts,
    "breakers": breakers,
    "backlog": backlog,
}


def render_all(data: dict[str, Any]) -> dict[str, str]:
    """Every plot as an inline SVG string, by name."""
    return {name: draw(data) for name, draw in PLOTS.items()}
