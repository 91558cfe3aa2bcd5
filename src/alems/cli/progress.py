"""What `alems batch` shows while it runs and when it ends: the progress bar (a terminal),
the count/ETA and per-run lines (--verbose, or no terminal) and the closing summary."""

from __future__ import annotations

import time

from alems.experiment.batch import BatchProgress, BatchSummary
from alems.experiment.plan import WORKFLOWS, RunKey


# Below this share of correct answers the closing lines say the tax compares failing arms.
LOW_ACCURACY = 0.5

def make_progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, disable=not enabled or not console.is_terminal,
                    transient=False)


def count_eta(done: int, total: int, elapsed_s: float) -> str:
    """'[3/18 ETA 2m10s]' from the mean time per run so far."""
    left_s = elapsed_s / done * (total - done) if done else 0.0
    minutes, seconds = divmod(int(round(left_s)), 60)
    return f"[{done}/{total} ETA {minutes}m{seconds:02d}s]"


def node_counts(per_node: dict) -> str:
    """'nodes: vm-a/1a2b3c4d 4, vm-b/5e6f7a8b 3' (runs stored per fleet node)."""
    return "nodes: " + ", ".join(f"{label} {n}" for label, n in sorted(per_node.items()))


def run_line(key: RunKey, row: dict) -> str:
    energy = row.get("total_energy_uj")
    energy_txt = "n/a" if energy is None else f"{energy / 1e6:.3f} J"
    dyn = row.get("dynamic_energy_uj")
    dyn_txt = "" if dyn is None else f" (dynamic {dyn / 1e6:.3f} J)"
    dur = (row.get("duration_ns") or 0) / 1e9
    success = row.get("success")
    verdict = {1: "correct", 0: "wrong"}.get(success, "error" if row.get("error") else "n/a")
    return (f"{key.task} {key.provider} {key.workflow} rep {key.rep}: "
            f"{energy_txt}{dyn_txt} [{row.get('energy_source')}] {dur:.2f} s {verdict}"
            + (f" — {row['error']}" if row.get("error") else ""))


class RichBatchProgress(BatchProgress):
    """A rich progress bar on a terminal; without one, each run prints its count and ETA
    (with --verbose: followed by the run line)."""

    def __init__(self, *, enabled: bool = True, verbose: bool = False):
        self.enabled = enabled
        self.verbose = verbose
        self._bar = make_progress(enabled)
        self._task = None
        self._done = 0
        self._total = 0
        self._t_start_s = 0.0
        self._per_node: dict = {}    # fleet: node label -> runs stored

    def begin(self, total: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task("runs", total=total)
        self._done, self._total = 0, total
        self._t_start_s = time.monotonic()

    def cooling(self, seconds: float) -> None:
        self._bar.update(self._task, description=f"cool-down {seconds:g} s")

    def running(self, key: RunKey) -> None:
        if self._per_node:   # a fleet runs several at once: the bar shows the nodes
            return
        self._bar.update(self._task, description=f"{key.task}/{key.provider}/"
                                                 f"{key.workflow} rep {key.rep}")

    def finished(self, key: RunKey, row: dict) -> None:
        self._bar.advance(self._task)
        self._done += 1
        nodes = ""
        if row.get("node_id"):     # a fleet: the ETA is the whole fleet's (runs/s of all)
            from alems.experiment.fleet import node_label

            label = node_label(row)
            self._per_node[label] = self._per_node.get(label, 0) + 1
            nodes = node_counts(self._per_node)
            self._bar.update(self._task, description=nodes)
        # Without a terminal the bar is off: each run line carries the count and ETA.
        counter = "" if self._bar.live.is_started else count_eta(
            self._done, self._total, time.monotonic() - self._t_start_s) + " " + (
            f"[{nodes}] " if nodes else "")
        if self.verbose and row:
            self._bar.console.print(counter + run_line(key, row), markup=False,
                                    highlight=False, soft_wrap=True)
        elif counter and self.enabled:
            self._bar.console.print(counter.strip(), markup=False, highlight=False)

    def end(self, completed: bool) -> None:
        if completed:
            self._bar.update(self._task, description="runs done")
        self._bar.stop()


def format_summary(s: BatchSummary) -> str:
    lines = [f"batch {s.group_id}: {s.ran} run(s) now, {s.ok} ok and {s.errors} failed "
             f"in total" + (f"; energy source {s.energy_source}" if s.energy_source else "")]
    low = []
    if s.per_workflow:
        lines.append(f"  {'workflow':<9} {'runs':>5} {'mean dynamic energy':>21} {'accuracy':>14}")
        for wf in WORKFLOWS:
            if wf in s.per_workflow:
                n, mean_j = s.per_workflow[wf]
                val = "n/a" if mean_j is None else f"{mean_j:.4f} J"
                right, scored = s.accuracy.get(wf, (0, 0))
                acc = f"{right}/{scored} {100 * right / scored:.0f} %" if scored else "n/a"
                if scored and right / scored < LOW_ACCURACY:
                    low.append(wf)
                lines.append(f"  {wf:<9} {n:>5} {val:>21} {acc:>14}")
    if s.headline_text:  # the same headline as `alems summary` and the report
        lines.append(f"  {s.headline_text}")
    for line in s.arm_headlines.values():
        lines.append(f"  {line}")
    if low:
        lines.append(f"  note: accuracy below {LOW_ACCURACY * 100:.0f} % ({', '.join(low)}): the tax "
                     "compares arms that mostly fail; for research numbers pass --model PATH "
                     "(a 1-8 B instruct GGUF) or --providers cloud")
    if s.tax_pairs:
        lines.append(f"  (mean of per-pair tax percentages: {s.mean_tax_percent:+.1f} % over "
                     f"{s.tax_pairs} pair(s))")
    if s.saved:
        from alems.store.samples import group_dir

        lines.append(f"  data: {s.db_path} (group_id = '{s.group_id}'); "
                     f"samples: {group_dir(s.db_path, s.group_id)}")
    else:
        lines.append("  data: not saved (pass --save-db to keep the database)")
    return "\n".join(lines)
