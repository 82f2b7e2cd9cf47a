"""This host's clock offset, read from the NTP client's own report (chrony or timesyncd).

Why from the NTP client: it already measures the offset against its servers, continuously
and filtered; asking one NTP server ourselves would be a noisier, second opinion. The
parsers are pure so every format is unit-tested; ``probes.read_clock`` runs the tools.
(``timedatectl show-timesync`` is not used: it prints the last NTP exchange's timestamps
to the second, too coarse for an offset; ``timesync-status`` prints the offset itself.)

Sign convention of ``Clock.offset_s``: positive when this host's clock is **ahead** of true
time (chrony's "fast of NTP time"). Only the magnitude is judged.
"""

from __future__ import annotations

import re

from netscope.ops.figures import Clock

_CHRONY_SYSTEM = re.compile(r"^System time\s*:\s*([0-9.]+) seconds (fast|slow) of NTP time", re.M)
_CHRONY_LEAP = re.compile(r"^Leap status\s*:\s*(.+)$", re.M)
_TIMESYNC_OFFSET = re.compile(r"^\s*Offset:\s*([+-]?[0-9.]+)\s*(ns|us|µs|ms|s|min)\s*$", re.M)
_TIMESYNC_LEAP = re.compile(r"^\s*Leap:\s*(.+)$", re.M)
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0}


def parse_chronyc_tracking(text: str) -> Clock | None:
    """``chronyc tracking`` -> offset; None when the text is not a tracking report."""
    system = _CHRONY_SYSTEM.search(text)
    if system is None:
        return None
    magnitude = float(system.group(1))
    offset = magnitude if system.group(2) == "fast" else -magnitude
    leap = _CHRONY_LEAP.search(text)
    leap_status = leap.group(1).strip() if leap else "unknown"
    return Clock(
        source="chronyc",
        offset_s=offset,
        synchronised=leap_status.lower() != "not synchronised",
        detail=f"leap status {leap_status}",
    )


def parse_timesync_status(text: str) -> Clock | None:
    """``timedatectl timesync-status`` (systemd-timesyncd) -> offset.

    timesyncd prints the NTP offset theta (server minus local): a local clock ahead shows
    negative, hence the sign flip to this module's convention.
    """
    found = _TIMESYNC_OFFSET.search(text)
    if found is None:
        return None
    theta = float(found.group(1)) * _UNITS[found.group(2)]
    leap = _TIMESYNC_LEAP.search(text)
    leap_text = leap.group(1).strip() if leap else "unknown"
    return Clock(
        source="timedatectl",
        offset_s=-theta,
        synchronised=not leap_text.lower().startswith("not"),
        detail=f"leap {leap_text}",
    )
