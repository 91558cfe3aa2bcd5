"""`alems report`: the HTML or PDF report of a batch, or the paper pack (--output DIR/).

The work is in alems.analysis.report*; this module only parses options and prints."""

from __future__ import annotations

import json

from pathlib import Path
from typing import Annotated

import typer

from alems.cli._common import handle_errors
from alems.cli.analysis_cmds import (CountryOpt, DbOpt, FactorsOpt, _clean_json, _default_db,
                                     _factors_arg, _need)
from alems.errors import UsageError


def _is_pack(output: str) -> bool:
    """--output names a folder for the paper pack: it ends with a separator or has no
    extension (a folder named like report.html is refused as before, not filled)."""
    import os

    return output.endswith(("/", os.sep)) or not Path(output).suffix


def register(app: typer.Typer) -> None:
    @app.command("report")
    @handle_errors
    def report_cmd(
        output: Annotated[str, typer.Option(
            "--output", "-o", help="report.html or report.pdf; or a folder (DIR/, or a name "
            "without extension: new or empty) for the paper pack: the report, every table as "
            "LaTeX (booktabs) and CSV, every figure as vector PDF and SVG, and methods.md.")],
        group_id: Annotated[str, typer.Option(
            "--group-id", "--exp-id", help="Batch session id, or 'latest' (--exp-id, the "
            "guide's spelling, also takes an experiment id: its batch).")] = "latest",
        db: DbOpt = None,  # type: ignore[assignment]
        confidence: Annotated[float, typer.Option(
            help="Confidence level of the intervals.")] = 0.95,
        country: CountryOpt = None,
        factors: FactorsOpt = None,
        pdf: Annotated[bool | None, typer.Option(
            "--pdf/--no-pdf", help="Paper pack: also typeset report.pdf (default: where "
            "WeasyPrint is installed).", show_default=False)] = None,
    ) -> None:
        """Self-contained HTML or PDF report: conditions, tables and figures; or the paper
        pack."""
        _need("pandas", "scipy", "matplotlib")
        import importlib.util

        from alems.analysis.groups import open_db, resolve_group_or_experiment
        from alems.analysis.report import build_report, write_report
        from alems.outputs import check_output_path

        if not 0 < confidence < 1:
            raise UsageError(f"--confidence must be between 0 and 1 (got {confidence})")
        pack = _is_pack(output)
        suffix = Path(output).suffix.lower()
        if not pack and suffix not in (".html", ".htm", ".pdf"):
            raise UsageError(f"--output {output}: give a name ending in .html or .pdf, or a "
                             "folder (DIR/) for the paper pack")
        if pdf is not None and not pack:
            raise UsageError("--pdf/--no-pdf go with a paper pack (--output DIR/); the file "
                             "name says whether a report is PDF")
        path = check_output_path(Path(output), "--output", folder=pack)
        if suffix == ".pdf" and not pack or pdf:
            _need("weasyprint")
        db = db or _default_db()
        conn = open_db(db)
        group = resolve_group_or_experiment(conn, group_id)
        blocks = build_report(conn, db, group, confidence=confidence, country=country,
                              factors=_factors_arg(factors))
        n_fig = sum(b.kind == "figure" for b in blocks)
        if not pack:
            path = write_report(blocks, path)
            print(f"wrote report of group {group.group_id} to {path} ({n_fig} figures)")
            return
        from alems.analysis.report_pack import write_pack

        why_no_pdf = "--no-pdf"
        if pdf is None:
            pdf = importlib.util.find_spec("weasyprint") is not None
            why_no_pdf = "WeasyPrint is not installed: pip install 'alems[reports]'"
        from alems.analysis.summary import build_summary

        # the unrounded figures beside the printed tables (as `alems summary --format json`)
        raw = build_summary(conn, db, group, confidence=confidence, country=country,
                            factors=_factors_arg(factors))
        made = write_pack(blocks, path, pdf=pdf, summary_json=json.dumps(
            _clean_json(raw), indent=2, ensure_ascii=False))
        print(f"wrote paper pack of group {group.group_id} to {path}/: "
              f"{', '.join(p.name for p in made['report'])}, {len(made['tables']) // 2} tables "
              f"(.tex, .csv), {len(made['figures']) // 2} figures (.pdf, .svg), methods.md, "
              "summary.json (unrounded)"
              + ("" if pdf else f"; no report.pdf ({why_no_pdf})"))

