"""What `alems batch` shows while it runs and when it ends: the progress bar (a terminal),
the count/ETA and per-run lines (--verbose, or no terminal) and the closing summary."""

from __future__ import annotations

import shlex
import time

from alems.analysis.precision import fmt_value
from alems.analysis.views import ESTIMATE_TAG
from alems.experiment.batch import BatchProgress, BatchSummary
from alems.catalog.arms import ordered_arms
from alems.experiment.plan import RunKey


# Below this share of correct answers the closing lines say the tax compares failing arms.
LOW_ACCURACY = 0.5


def eta_s(remaining: list[RunKey], durations_s: dict[str, list[float]]) -> float | None:
    """Seconds left: each remaining run costs the running mean of its own arm (workflow),
    or, before that arm has finished a run, the mean of all finished runs; None before
    any run finished. The first pair thus already gives both arms their own cost."""
    every = [d for ds in durations_s.values() for d in ds]
    if not every:
        return None
    overall = sum(every) / len(every)
    return sum(sum(durations_s[k.workflow]) / len(durations_s[k.workflow])
               if durations_s.get(k.workflow) else overall for k in remaining)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def count_eta(done: int, total: int, left_s: float | None) -> str:
    """'[3/18 ETA 2m10s]'; '?' until a run has finished."""
    return f"[{done}/{total} ETA {fmt_duration(left_s)}]"


def node_counts(per_node: dict) -> str:
    """'nodes: vm-a/1a2b3c4d 4, vm-b/5e6f7a8b 3' (runs stored per fleet node)."""
    return "nodes: " + ", ".join(f"{label} {n}" for label, n in sorted(per_node.items()))


def run_line(key: RunKey, row: dict) -> str:
    energy = row.get("total_energy_uj")
    energy_txt = "n/a" if energy is None else f"{fmt_value(energy / 1e6)} J"
    dyn = row.get("dynamic_energy_uj")
    dyn_txt = "" if dyn is None else f" (dynamic {fmt_value(dyn / 1e6)} J)"
    dur = (row.get("duration_ns") or 0) / 1e9
    success = row.get("success")
    verdict = ("correct" if success == 1 else "wrong" if success == 0
               else "error" if row.get("error") else "n/a")
    return (f"{key.task} {key.provider} {key.workflow} rep {key.rep}: "
            f"{energy_txt}{dyn_txt} [{row.get('energy_source')}] {dur:.2f} s {verdict}"
            + (f" — {row['error']}" if row.get("error") else ""))


class RunState:
    """What the bar shows of the batch: the current run, its phase and elapsed time, and
    the ETA from finished runs' durations by arm."""

    def __init__(self) -> None:
        self.key: RunKey | None = None
        self.phases: tuple[str, ...] = ()
        self.cooling_s: float | None = None
        self.t_run_s = 0.0
        self.remaining: list[RunKey] = []
        self.durations_s: dict[str, list[float]] = {}
        self.cool_down_s = 0.0   # idle before each further run
        self.finished = False

    def current(self) -> str:
        if self.cooling_s is not None:
            return f"cool-down {self.cooling_s:g} s"
        if self.key is None:
            return "done" if self.finished else "starting"
        k = self.key
        phase = " › ".join(self.phases) or "between phases"
        return (f"{k.task}/{k.provider}/{k.workflow} rep {k.rep} · {phase} · "
                f"{fmt_duration(time.monotonic() - self.t_run_s)}")

    def eta(self) -> str:
        left = eta_s(self.remaining, self.durations_s)
        if left is None:
            return "ETA after the first run"
        left += self.cool_down_s * len(self.remaining)
        if self.key is not None and self.cooling_s is None:   # time already spent on it
            left = max(left - (time.monotonic() - self.t_run_s), 0.0)
        return f"ETA {fmt_duration(left)}"


def make_progress(enabled: bool, state: RunState):
    from alems.cli import tables
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Live(ProgressColumn):
        """Re-rendered by rich's refresh thread: the run's elapsed time moves."""

        def __init__(self, text) -> None:
            super().__init__()
            self.text = text

        def render(self, task) -> Text:
            return Text(self.text(), overflow="fold")

    console = tables.console(stderr=True)
    return Progress(BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
                    Live(state.eta), Live(state.current), console=console,
                    disable=not enabled or not console.is_terminal, transient=False)


class RichBatchProgress(BatchProgress):
    """A rich progress bar on a terminal (current run, its phase and elapsed time, ETA);
    without one, each run prints its count and ETA (with --verbose: and the run line)."""

    def __init__(self, *, enabled: bool = True, verbose: bool = False):
        self.enabled = enabled
        self.verbose = verbose
        self.state = RunState()
        self._bar = make_progress(enabled, self.state)
        self._task = None
        self._done = 0
        self._total = 0
        self._per_node: dict = {}    # fleet: node label -> runs stored

    def planned(self, keys: list[RunKey]) -> None:
        self.state.remaining = list(keys)

    def begin(self, total: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task("runs", total=total)
        self._done, self._total = 0, total

    def cooling(self, seconds: float) -> None:
        self.state.cooling_s = self.state.cool_down_s = seconds

    def running(self, key: RunKey) -> None:
        st = self.state
        st.key, st.phases, st.cooling_s, st.t_run_s = key, (), None, time.monotonic()
        if key in st.remaining:
            st.remaining.remove(key)

    def phase(self, key: RunKey, names: tuple[str, ...]) -> None:
        self.state.phases = names

    def finished(self, key: RunKey, row: dict) -> None:
        st = self.state
        st.durations_s.setdefault(key.workflow, []).append(time.monotonic() - st.t_run_s)
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
            self._done, self._total, self._eta_s()) + " " + (f"[{nodes}] " if nodes else "")
        if self.verbose and row:
            self._bar.console.print(counter + run_line(key, row), markup=False,
                                    highlight=False, soft_wrap=True)
        elif counter and self.enabled:
            self._bar.console.print(counter.strip(), markup=False, highlight=False)

    def _eta_s(self) -> float | None:
        """The per-arm ETA; a fleet runs one measurement per node at once."""
        eta = eta_s(self.state.remaining, self.state.durations_s)
        if eta is not None and self._per_node:
            eta /= len(self._per_node)
        return eta

    def end(self, completed: bool) -> None:
        self.state.key, self.state.cooling_s = None, None
        self.state.finished = completed
        self._bar.stop()


def format_summary(s: BatchSummary) -> str:
    if s.already_complete:
        head = (f"batch {s.group_id} was already complete: nothing ran; {s.ok} ok and "
                f"{s.errors} failed stored (add --new-session to run it again)")
    else:
        head = f"batch {s.group_id}: {s.ran} run(s) now, {s.ok} ok and {s.errors} failed in total"
    lines = [head + (f"; energy source {s.energy_source}" if s.energy_source else "")]
    low = []
    if s.per_workflow:
        width = max(9, *(len(wf) for wf in s.per_workflow))
        lines.append(f"  {'workflow':<{width}} {'runs':>5} {'mean dynamic energy':>21} "
                     f"{'accuracy':>14}")
        for wf in ordered_arms(s.per_workflow):
            if wf in s.per_workflow:
                n, mean_j = s.per_workflow[wf]
                val = "n/a" if mean_j is None else f"{fmt_value(mean_j)} J"
                right, scored = s.accuracy.get(wf, (0, 0))
                acc = f"{right}/{scored} {100 * right / scored:.0f} %" if scored else "n/a"
                if scored and right / scored < LOW_ACCURACY:
                    low.append(wf)
                lines.append(f"  {wf:<{width}} {n:>5} {val:>21} {acc:>14}")
    tag = ESTIMATE_TAG if s.estimate else ""
    if s.headline_text:  # the same headlines and caveats as `alems summary` and the report
        lines.append(f"  {s.headline_text}{tag}")
    for line in s.arm_headlines.values():
        lines.append(f"  {line}{tag}")
    for caveat in s.headline_caveats:
        lines.append(f"  warning: {caveat}")
    if low:
        lines.append(f"  note: accuracy below {LOW_ACCURACY * 100:.0f} % ({', '.join(low)}): the "
                     "tax "
                     "compares arms that mostly fail; for research numbers pass --model PATH "
                     "(a 1-8 B instruct GGUF) or --providers cloud")
    if s.tax_pairs:
        lines.append(f"  (mean of per-pair tax percentages: {s.mean_tax_percent:+.1f} % over "
                     f"{s.tax_pairs} pair(s))")
    if s.saved:
        from alems.store.samples import group_dir

        lines.append(f"  data: {s.db_path} (group_id = '{s.group_id}'); "
                     f"samples: {group_dir(s.db_path, s.group_id)}")
        lines.append(f"  next: alems summary --db {shlex.quote(str(s.db_path))} "
                     f"--group-id {s.group_id}")
    else:
        lines.append("  data: not saved (pass --save-db to keep the database)")
    return "\n".join(lines)
