"""Operating NetScope the way the runbook says (docs/runbook.md sections 2 and 5).

``netscope check`` runs section 5's health checklist; ``netscope check-config --connect``
runs section 2's prerequisites against what a configuration names. Pure judgement and
I/O are kept apart so every threshold is unit-tested without a network:

| module | one idea |
|---|---|
| ``verdict.py`` | pass / warn / fail / skip, one checked line, the exit code |
| ``figures.py`` | what was measured: the seam between the probes and the checklist |
| ``trend.py`` | is a series growing? (Burrow-style, over samples, no fixed threshold) |
| ``exposition.py`` | two scrapes of ``/metrics`` -> a window's counts and quantiles |
| ``promql.py`` | the PromQL the checklist asks, and its answers as figures |
| ``clock.py`` | the host's NTP offset from ``chronyc`` / ``timedatectl`` output |
| ``checklist.py`` | section 5 as pure functions: figures -> checked lines |
| ``probes.py`` | the I/O: NetScope's endpoints, Prometheus' HTTP API, clock tools |
| ``render.py`` | a rich table in a terminal, plain lines otherwise, or JSON |
| ``command.py`` | ``netscope check``: once, or ``--watch`` until Ctrl-C |
| ``s3probe.py`` | write, read, list and delete of a probe object, errors named |
| ``preflight.py`` | ``check-config --connect``: one line per dependency of a config |
"""
