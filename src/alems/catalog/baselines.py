"""How long an idle baseline stands for the machine: a batch re-measures an older one
(the default of --baseline-max-age) and the summary warns about runs that used one
measured longer before them (idle power drifts with temperature and background load)."""

from __future__ import annotations

BASELINE_MAX_AGE_S = 3600.0
