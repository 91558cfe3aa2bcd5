"""Two small services of the batch runner, kept apart from its main loop: reporting the
current run's phases to the progress display, and recognising a batch already done."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from alems.experiment.plan import BatchConfig, RunKey, runs_to_do
from alems.store import sessions as store_sessions


def watch_phases(sampler, on_phase: Callable[[tuple[str, ...]], None]) -> None:
    """Make `sampler.phase(...)` also report the open phases (outermost first) to
    `on_phase`; the marks themselves are unchanged."""
    inner, stack = sampler.phase, []

    @contextlib.contextmanager
    def phase(name, kind=None, **detail):
        stack.append(str(name))
        on_phase(tuple(stack))
        try:
            with inner(name, kind, **detail) as ph:
                yield ph
        finally:
            stack.pop()
            on_phase(tuple(stack))
    sampler.phase = phase


def completed_twin(cfg: BatchConfig, plan: list[RunKey], conn) -> str | None:
    """The newest completed session of this very batch (same design and repetitions,
    every planned run stored), so that rerunning a finished command says so instead of
    silently starting an empty session that then hides those results. None with
    --group-id, --new-session or a temporary database."""
    if cfg.group_id or cfg.new_session or not cfg.save_db:
        return None
    design = json.dumps(cfg.design(), sort_keys=True)
    for sess in store_sessions.completed_sessions(conn):
        old = json.loads(sess.get("settings_json") or "{}")
        if (json.dumps({k: old.get(k) for k in cfg.design()}, sort_keys=True) == design
                and old.get("repetitions") == cfg.repetitions
                and not runs_to_do(plan, cfg.start_from,
                                   store_sessions.completed_runs(conn, sess["group_id"]))):
            return sess["group_id"]
    return None
