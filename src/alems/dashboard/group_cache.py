"""What the dashboard keeps per group beside its summary (issue 23: a study of 10⁵ runs, a
list of 1 000 batches): the groups list's quick headline, and the group page's energy
figure, each kept until the group's runs change (store.dashboard_reads.group_stamp)."""

from __future__ import annotations

from pathlib import Path

from alems.dashboard import figures
from alems.store import dashboard_reads as reads

# groups whose entries each of these caches (and pages._summaries) keeps; above it the
# cache is emptied
CACHE_MAX = 4096

# quick_headline's answers, kept like the summaries until the group's runs change (by pages)
QUICK: dict[tuple[str, str], tuple[tuple, tuple]] = {}


def quick_headline(conn, group) -> tuple[dict | None, list[dict], str | None]:
    """What the groups list shows of a group whose summary is not cached, without building
    it (1 000 batches: 1 000 summaries, ~2 min on a first visit, issue 23): the summary's
    headline row (`tax.headline_tax`: the same pairs, the same tax rows), its runs,
    correct answers and failures per arm (its workflow rows added up), or why the group
    has no summary (`summary_refusal`)."""
    from alems.analysis.summary import summary_refusal
    from alems.analysis.tax import headline_tax

    counts = reads.arm_counts(conn, group.group_id)
    why = summary_refusal(group.group_id, {wf for wf, *_ in counts})
    if why:
        return None, [], why
    accuracy = [{"workflow": wf, "n_runs": n, "n_correct": int(ok or 0),
                 "n_errors": int(err or 0), "accuracy": int(ok or 0) / n if n else None}
                for wf, n, ok, err in counts]
    return headline_tax(conn, group.group_id), accuracy, None


FIGURES: dict[tuple[str, str], tuple[tuple, tuple[int, list[str], str | None]]] = {}


def group_figure(conn, db_path: Path, group, stamp: tuple) -> tuple[int, list[str], str | None]:
    """(runs, energy sources, energy figure JSON or None without runs) of the group, kept
    like its summary until its runs change: the figure reads every completed run (10⁵
    runs: ~1.5 s a request, issue 23)."""
    key = (str(db_path), group.group_id)
    hit = FIGURES.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    n_runs, sources = reads.group_run_facts(conn, group.group_id)
    fig = figures.to_json(figures.energy_distribution_figure(
        reads.group_run_energies(conn, group.group_id))) if n_runs else None
    if len(FIGURES) >= CACHE_MAX:
        FIGURES.clear()
    FIGURES[key] = (stamp, (n_runs, sources, fig))
    return n_runs, sources, fig
