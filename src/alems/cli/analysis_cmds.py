"""`alems summary | plan-reps | export | report | status`: from recorded runs to results.

The work is in alems.analysis.*; this module only parses options and prints."""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from alems.analysis.precision import DEFAULT_CONFIDENCE
from alems.errors import AlemsError, UsageError
from alems.cli._common import DB_DEFAULT_TEXT, handle_errors
from alems.catalog.arms import AGENTIC

DbOpt = Annotated[Path, typer.Option("--db", help="Results database (SQLite).",
                                     show_default=DB_DEFAULT_TEXT)]
GroupOpt = Annotated[str, typer.Option("--group-id", help="Batch session id, or 'latest'.")]
CountryOpt = Annotated[str | None, typer.Option(
    "--country", help="Country whose grid factors give carbon/water/methane; default: the "
    "country stored with each run (else ALEMS_COUNTRY / US).")]
FactorsOpt = Annotated[Path | None, typer.Option(
    "--factors", help="CSV of grid factors overriding the shipped table "
    "(columns: country, carbon_g_per_kwh, water_ml_per_kwh, methane_mg_per_kwh, source).",
    envvar="ALEMS_FACTORS")]


def _default_db() -> Path:
    from alems.config import default_db_path

    return default_db_path()


def _need(*modules: str) -> None:
    """One clear line when an optional dependency of the analysis commands is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise AlemsError(f"this command needs {', '.join(missing)}; install them with "
                         "`pip install 'alems[reports]'`")


def _choice(value: str, allowed: tuple[str, ...], flag: str) -> str:
    v = value.lower()
    if v not in allowed:
        raise UsageError(f"{flag} {value!r}: choose one of {', '.join(allowed)}")
    return v


def _clean_json(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_json(v) for v in obj]
    if hasattr(obj, "item"):
        return _clean_json(obj.item())
    return obj


def _print_json(obj) -> None:
    print(json.dumps(_clean_json(obj), indent=2, ensure_ascii=False))


def _num(v, fmt=".3f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, fmt)


def _factors_arg(factors: Path | None):
    if factors is None:
        return None
    from alems.catalog.sustainability import load_factors

    return load_factors(factors)


# ----------------------------------------------------------------------------- summary
def _console():
    from alems.cli.tables import console

    return console()


def _mean_sd_ci(d: dict) -> tuple[str, str]:
    """('mean ± sd', '[low, high]') as every surface prints them (precision.mean_sd_ci)."""
    from alems.analysis.precision import mean_sd_ci

    return mean_sd_ci(d)


def _summary_tables(s: dict) -> None:
    from alems.analysis.precision import fmt_interval, fmt_value
    from alems.analysis.views import (ESTIMATE_TAG, HOST_COLUMNS, headline_lines,
                                      host_tax_rows, phase_arms, phase_subject, tax_columns,
                                      tax_table)
    from alems.cli.tables import print_table
    from rich.markup import escape

    con = _console()
    est = ESTIMATE_TAG if s["estimate"] else ""
    pct = int(round(s["confidence"] * 100))
    # every arm (the batch's closing lines' strings); runs measured GPUs: both, labelled
    for line in headline_lines(s):
        con.print(line + est, highlight=False, markup=False)
    for w in s["headline_caveats"]:  # what qualifies the headline, right under it
        con.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    rows = []
    daggers = False
    for w in s["workflows"]:
        e_ms, e_ci = _mean_sd_ci(w["dynamic_energy_j"])
        daggers = daggers or e_ci.endswith("†")
        dur, pw = w["duration_s"], w["avg_power_w"]
        rows.append([w["task"], w["provider"], w["workflow"], str(w["n_runs"]),
                     f"{w['n_correct']}/{w['n_runs']}", e_ms, e_ci,
                     fmt_interval(dur["mean"], dur["ci_low"], dur["ci_high"])[0],
                     fmt_interval(pw["mean"], pw["ci_low"], pw["ci_high"])[0],
                     fmt_value(w["epg_j"]) if w["epg_j"] is not None
                     else f"– ({w['epg_null_reason']})",
                     _num(w["carbon_g_total"], ".3g")])
    print_table(con, f"Batch {s['group_id']} ({s['status']}): per workflow — dynamic "
                     f"energy{est}",
                ["task", "provider", "workflow", "n", "success", "energy J mean±sd",
                 f"{pct}% CI (t)", "duration s", "power W", "EpG J", "carbon g"], rows)
    if daggers:
        from alems.analysis.precision import dagger_note

        con.print(dagger_note(pct), highlight=False)
    arms = "each non-linear arm" if s.get("arm_tax") else AGENTIC
    print_table(con, f"Orchestration tax = Σ {arms} ÷ Σ linear dynamic energy over complete "
                     f"pairs ({pct}% CI: t on the log ratio, jackknife SE){est}",
                tax_columns(s, pct), tax_table(s), keys=("arm", "task", "provider"))
    if host_tax_rows(s):   # more than one host: each host's tax, then pooled by host
        print_table(con, f"Tax per host, and pooled with the host as a block{est}",
                    HOST_COLUMNS, host_tax_rows(s), keys=("host", "task", "provider"))
    if s["phases"]:   # every non-linear arm's, each row naming its arm when several
        arm = ["arm"] if len(phase_arms(s["phases"])) > 1 else []
        print_table(con, f"Share of {phase_subject(s['phases'])} package energy per phase{est}",
                    [*arm, "task", "provider", "basis", "phase", "energy J", "share"],
                    [[*([p["arm"]] if arm else []), p["task"], p["provider"], p["basis"],
                      p["label"], fmt_value(p["energy_j"]), f"{p['share']:.1%}"]
                     for p in s["phases"]], keys=(*arm, "task", "provider"))
    shown = set(s["headline_caveats"])     # printed under the headline already
    for w in s["warnings"]:                 # grouped by kind (summary_warnings.warning_groups)
        if w in shown:
            continue
        con.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)


# `status --watch` refresh period: faster floods the terminal, slower is never refreshed.
STATUS_INTERVAL_MIN_S, STATUS_INTERVAL_MAX_S = 0.1, 3600.0


def register(app: typer.Typer) -> None:
    @app.command("summary", help="The orchestration tax with its CI, then statistics per "
                 "task × provider × workflow, EpG, phase shares and warnings (methods: "
                 "docs/METHODS.md).")
    @handle_errors
    def summary_cmd(
        group_id: GroupOpt = "latest",
        db: DbOpt = None,  # type: ignore[assignment]
        fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
        confidence: Annotated[float, typer.Option(
            help="Confidence level of the intervals.")] = DEFAULT_CONFIDENCE,
        country: CountryOpt = None,
        factors: FactorsOpt = None,
    ) -> None:
        _need("pandas", "scipy")
        from alems.analysis.groups import open_db, resolve_group
        from alems.analysis.summary import build_summary, workflow_table

        fmt = _choice(fmt, ("table", "csv", "json"), "--format")
        if not 0 < confidence < 1:
            raise UsageError(f"--confidence must be between 0 and 1 (got {confidence})")
        db = db or _default_db()
        conn = open_db(db)
        group = resolve_group(conn, group_id)
        kept = None
        if confidence == DEFAULT_CONFIDENCE and country is None and factors is None:
            from alems.analysis.stored_summary import stored

            kept = stored(conn, group.group_id)   # kept by its batch or merge, if still valid
        if kept is None:
            s = build_summary(conn, db, group, confidence=confidence, country=country,
                              factors=_factors_arg(factors))
        elif kept[0] is None:
            raise AlemsError(kept[1] or "no summary")
        else:
            s = kept[0]
        if fmt == "json":
            _print_json(s)
        elif fmt == "csv":
            rows = workflow_table(s)
            cols: list[str] = []
            for r in rows:
                cols.extend(k for k in r if k not in cols)
            w = csv.DictWriter(sys.stdout, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if v is None else v) for k, v in r.items()})
            from alems.analysis.views import ESTIMATE_TAG, headline_lines

            for line in headline_lines(s):
                print(line + (ESTIMATE_TAG if s["estimate"] else ""), file=sys.stderr)
            for msg in s["warnings"]:
                print(f"warning: {msg}", file=sys.stderr)
        else:
            _summary_tables(s)

    @app.command("plan-reps")
    @handle_errors
    def plan_reps_cmd(
        effect_size: Annotated[float, typer.Option(
            "--effect-size", help="Effect to detect: standardised (mean pair difference ÷ sd of "
                                  "the "
            "differences; paired design) in formula "
            "mode; relative to the mean (0.1 = 10 %) with --from-group.")] = 0.1,
        power: Annotated[float, typer.Option(help="Statistical power, e.g. 0.8.")] = 0.8,
        alpha: Annotated[float, typer.Option(help="Significance level (two-sided).")] = 0.05,
        from_group: Annotated[str | None, typer.Option(
            "--from-group", "--group-id", help="Pilot batch (id or 'latest') whose observed "
                                               "variance sets "
            "the needed repetitions.")] = None,
        db: DbOpt = None,  # type: ignore[assignment]
        fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
    ) -> None:
        """Repetitions needed: the spec's sample-size formula, or from a pilot batch."""
        _need("scipy")
        from alems.analysis.plan_reps import plan_formula, plan_from_group

        fmt = _choice(fmt, ("table", "json"), "--format")
        if from_group is None:
            plan = plan_formula(effect_size, power, alpha)
        else:
            from alems.analysis.groups import open_db, resolve_group

            _need("pandas")
            conn = open_db(db or _default_db())
            plan = plan_from_group(conn, resolve_group(conn, from_group), effect_size, power, alpha)
        if fmt == "json":
            _print_json(plan)
            return
        if plan["mode"] == "formula":
            print(f"repetitions (pairs) per workflow: {plan['repetitions']} by the spec's "
                  f"z formula, n = {plan['formula']}; {plan['repetitions_t']} by the paired "
                  f"t-test's exact power (a t-test on the data needs these)")
            print(f"  assumes a {plan['design']} (effect size {effect_size}, power {power}, "
                  f"alpha {alpha}, two-sided)")
            return
        from alems.analysis.precision import fmt_value
        from alems.cli.tables import print_table

        rows = []
        for r in plan["rows"]:
            spread = r["cv"] if r["metric"] == "energy" else r["sd"]
            mean = ("–" if r["mean"] is None else f"{fmt_value(r['mean'])}×" if
                    r["metric"] != "energy" else f"{fmt_value(r['mean'])} J")
            rows.append([r["metric"], r["task"], r["provider"], r["workflow"], r["test_label"],
                         str(r["pilot_n"]), mean, fmt_value(spread),
                         str(r["repetitions"]) if r["repetitions"] is not None
                         else f"– ({r['note']})",
                         str(r["repetitions_z"]) if r["repetitions_z"] is not None else "–"])
        print_table(_console(), f"Pilot {plan['group_id']} ({plan['pilot_repetitions']} reps): "
                    f"repetitions to detect a {effect_size:.0%} change (power {power}, alpha "
                    f"{alpha}; t-test, spec's z formula beside)",
                    ["metric", "task", "provider", "workflow", "test", "pilot n",
                     "mean (tax: geometric)", "CV / sd(log)", "reps (t)",
                     "reps (z, spec)"], rows)
        print(f"repetitions needed for the full batch: "
              f"{plan['repetitions'] if plan['repetitions'] is not None else 'unknown'}  "
              f"({plan['design']}; n = {plan['formula']})")
        for w in plan["warnings"]:
            print(f"warning: {w}")

    @app.command("export")
    @handle_errors
    def export_cmd(
        output: Annotated[Path, typer.Option("--output", "-o", help="File to write (or, with "
                                             "--samples, a new folder for the dataset).")],
        group_id: GroupOpt = "latest",
        fmt: Annotated[str | None, typer.Option(
            "--format", help="csv | parquet | json | xlsx; default: from the --output "
            "extension (.csv, .parquet, .json, .xlsx), else csv.", show_default=False)] = None,
        samples: Annotated[bool, typer.Option(
            "--samples", help="Export the full-rate samples as one partitioned Parquet dataset "
            "(group_id=/exp_id=/run_id=) instead of the runs table.")] = False,
        db: DbOpt = None,  # type: ignore[assignment]
        country: CountryOpt = None,
        factors: FactorsOpt = None,
    ) -> None:
        """Archive a batch: runs joined with experiment and tax rows (one file), or samples."""
        _need("pandas")
        from alems.analysis.export import (choose_format, runs_export_frame, write_runs,
                                           write_runs_streamed, write_samples_dataset)
        from alems.analysis.groups import open_db, resolve_group
        from alems.outputs import check_output_path

        fmt = choose_format(output, fmt, samples)
        output = check_output_path(output, "--output", folder=samples)
        db = db or _default_db()
        conn = open_db(db)
        group = resolve_group(conn, group_id)
        if samples:
            info = write_samples_dataset(conn, Path(db), group, output)
            print(f"wrote {info['rows']} samples of {info['runs']} runs to {info['output']}")
            if info["missing_runs"]:
                print(f"alems: warning: no samples file for run(s) {info['missing_runs']}",
                      file=sys.stderr)
            return
        if fmt in ("json", "xlsx"):   # whole documents: built in memory
            df = runs_export_frame(conn, group, country=country, factors=_factors_arg(factors))
            path, n_runs = write_runs(df, fmt, output, group), len(df)
        else:   # streamed: memory independent of the number of runs
            path, n_runs = write_runs_streamed(conn, group, fmt, output, country=country,
                                               factors=_factors_arg(factors))
        print(f"wrote {n_runs} runs of group {group.group_id} to {path} ({fmt})")

    @app.command("status")
    @handle_errors
    def status_cmd(
        db: DbOpt = None,  # type: ignore[assignment]
        group_id: Annotated[str | None, typer.Option(
            "--group-id", help="Batch to show; default: the running one, else the last.")] = None,
        watch: Annotated[bool, typer.Option("--watch", help="Refresh until the batch is done "
                                            "(Ctrl-C to stop).")] = False,
        interval: Annotated[float, typer.Option(
            help="Seconds between refreshes with --watch.")] = 5.0,
        fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
    ) -> None:
        """Progress of the running or last batch: runs done per workflow, failures, ETA."""
        from alems.analysis.groups import open_db
        from alems.analysis.status import batch_status, pick_group, require_runs_table, status_lines

        fmt = _choice(fmt, ("table", "json"), "--format")
        if not STATUS_INTERVAL_MIN_S <= interval <= STATUS_INTERVAL_MAX_S:
            raise UsageError(f"--interval must be between {STATUS_INTERVAL_MIN_S:g} and "
                             f"{STATUS_INTERVAL_MAX_S:g} seconds (got {interval})")
        db = db or _default_db()
        while True:
            conn = open_db(db)
            try:
                require_runs_table(conn)
                st = batch_status(conn, pick_group(conn, group_id), db_path=db)
            finally:
                conn.close()
            if fmt == "json":
                _print_json(st)
            else:
                if watch and sys.stdout.isatty():
                    print("\033[2J\033[H", end="")
                print("\n".join(status_lines(st)), flush=True)
            if not watch or st["finished"]:
                break
            time.sleep(interval)
