"""Each rule is defined once and every user applies the same one: the arm names, the
median run a report shows, the colours of arms and phases, the baseline's maximum age."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pandas as pd

from alems.analysis import figures as report_figures
from alems.analysis import palette
from alems.analysis.report_examples import pick_example
from alems.analysis.summary_warnings import _baseline_warnings
from alems.catalog.arms import ARMS
from alems.catalog.baselines import BASELINE_MAX_AGE_S
from alems.dashboard import figures as dashboard_figures
from alems.experiment.plan import BatchConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "alems"


def test_arm_names_are_spelled_only_in_catalog_arms():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "catalog" / "arms.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ARMS:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
    assert offenders == [], offenders


def test_the_schema_checks_the_same_arms():
    schema = (SRC / "store" / "schema.sql").read_text()
    listed = re.search(r"CHECK \(workflow_type IN \(([^)]*)\)", schema).group(1)
    assert tuple(s.strip(" '") for s in listed.split(",")) == ARMS


def test_power_curve_and_example_show_the_same_median_run():
    """Four ok runs per arm: the two middle energies tie for 'closest to the median', so
    only one shared rule (lower median, ties by run id) makes both pick the same run."""
    rows = []
    for k, arm in enumerate(ARMS):
        for j, energy_j in enumerate((9.0, 10.0, 1.0, 2.0)):   # the higher middle first
            rows.append({"run_id": 10 * k + j, "task_name": "t", "provider": "p",
                         "workflow_type": arm, "status": "ok",
                         "dynamic_energy_uj": energy_j * 1e6, "samples_path": f"s{k}{j}"})
    runs = pd.DataFrame(rows)
    shown = {r["workflow_type"]: r["run_id"]
             for r in report_figures.representative_runs(runs, Path("unused.db"))}
    examples = {arm: pick_example(runs[runs["workflow_type"] == arm])["run_id"] for arm in ARMS}
    assert shown == examples == {arm: 10 * k + 3 for k, arm in enumerate(ARMS)}   # 2 J


def test_report_and_dashboard_share_one_palette():
    assert report_figures.PHASE_COLORS is dashboard_figures.PHASE_COLORS is palette.PHASE_COLORS
    assert report_figures.ARM_COLORS is dashboard_figures.ARM_COLORS is palette.ARM_COLORS
    assert set(ARMS) <= set(palette.ARM_COLORS)
    runs = [{"workflow_type": arm, "status": "ok", "dynamic_energy_uj": 1e6, "task_name": "t",
             "provider": "p", "run_id": i, "run_number": 1} for i, arm in enumerate(ARMS)]
    boxes = dashboard_figures.energy_distribution_figure(runs)["data"]
    assert {b["name"]: b["marker"]["color"] for b in boxes} == palette.ARM_COLORS


def test_baseline_max_age_is_one_rule_for_the_batch_and_the_summary():
    from alems.cli.batch_cmd import batch_command

    cli_default = inspect.signature(inspect.unwrap(batch_command)).parameters[
        "baseline_max_age"].default
    assert BatchConfig(tasks=["t"], providers=["p"]).baseline_max_age_s == BASELINE_MAX_AGE_S
    assert cli_default == BASELINE_MAX_AGE_S

    def warned(age_s: float) -> bool:
        measured = pd.Timestamp("2026-01-01T00:00:00+00:00")
        runs = pd.DataFrame([{
            "baseline_id": 1, "baseline_measured_at": measured.isoformat(),
            "started_at": (measured + pd.Timedelta(seconds=age_s)).isoformat(),
            "baseline_energy_source": "powercap", "energy_source": "powercap"}])
        return any("idle power may have drifted" in w for w in _baseline_warnings(runs))

    assert warned(BASELINE_MAX_AGE_S + 1) and not warned(BASELINE_MAX_AGE_S - 1)
