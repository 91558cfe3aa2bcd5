"""`alems export`: the spec's archiver.

- runs joined with their experiment, baseline and tax-pair rows (tax_*: the spec's agentic
  pair; arm_pair_*: every non-linear run's pair with the linear run of its repetition, so
  react and custom arms have theirs), one file: CSV (header row,
  RFC 4180 quoting with CRLF line ends, ISO-8601 dates as stored), Parquet (pyarrow; read by
  pandas, polars and DuckDB), JSON (an array of records: one object per run) or an Excel
  workbook (.xlsx, openpyxl: sheet `runs`, text always stored as text);
- `--samples`: one hive-partitioned Parquet dataset of the full-rate samples,
  <output>/group_id=<g>/exp_id=<e>/run_id=<r>/part-0.parquet, every file with the same
  (unified) schema; the partition keys are in the paths, not inside the files.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import math
import sqlite3
from pathlib import Path

import pandas as pd

from alems.errors import AlemsError, UsageError
from alems.analysis.frames import FOOTPRINT_COLUMNS, run_footprints
from alems.analysis.groups import Group
from alems.analysis.samples import samples_file
from alems.atomic_io import atomic_target
from alems.store import reads
from alems import arrowfile

FORMATS = ("csv", "parquet", "json", "xlsx")
EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json",
              ".xlsx": "xlsx"}
XLSX_CELL_MAX_CHARS = 32_767   # Excel's limit per cell; longer text is cut, ending in "…"
DEFAULT_FORMAT = "csv"   # a name without a known extension
# Spreadsheet names a CSV must not hide behind (a program would open them as a workbook).
OTHER_SPREADSHEETS = (".xls", ".xlsm", ".xlsb", ".ods", ".numbers")
UNITS_TEXT = ("*_uj: microjoules; *_ns: nanoseconds; *_ms: milliseconds; *_w/*_watts: watts; "
              "carbon_g: g CO2; water_ml: ml; methane_mg: mg CH4")


def choose_format(output: Path, fmt: str | None, samples: bool) -> str:
    """The export format: --format if given, else the output's extension, else CSV;
    --samples is always Parquet. A --format the extension contradicts is refused."""
    if fmt is not None and fmt.lower() not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    fmt = fmt.lower() if fmt else None
    if samples:
        if fmt not in (None, "parquet"):
            raise UsageError("--samples writes a Parquet dataset; drop --format or use "
                             "--format parquet")
        return "parquet"
    suffix = Path(output).suffix.lower()
    if suffix in OTHER_SPREADSHEETS and fmt is None:
        raise UsageError(f"--output {Path(output).name}: {suffix} is not written; give a name "
                         "ending in .xlsx (a workbook), .csv, .parquet or .json")
    by_ext = EXTENSIONS.get(suffix)
    if fmt and by_ext and fmt != by_ext:
        raise UsageError(f"--format {fmt} does not match --output {Path(output).name} "
                         f"({by_ext}); rename the file or drop --format")
    return fmt or by_ext or DEFAULT_FORMAT


def runs_export_frame(conn: sqlite3.Connection, group: Group, *, country: str | None = None,
                      factors=None) -> pd.DataFrame:
    df = reads.export_runs_frame(conn, group.group_id)
    if df.empty:
        raise AlemsError(f"group {group.group_id!r} has no runs to export yet")
    # sustainability: fill missing (or, with --country, recompute) from the factor table
    df[FOOTPRINT_COLUMNS] = run_footprints(df, country, factors)
    if country is not None:
        df["country"] = country.upper()
    return df


def parquet_metadata(group: Group) -> dict:
    """The key-value metadata of an exported runs file: its group and the units."""
    return {b"alems.group_id": group.group_id.encode(), b"alems.units": UNITS_TEXT.encode()}


def _json_value(v):
    if v is None:
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
    return v


def write_runs(df: pd.DataFrame, fmt: str, output: Path, group: Group) -> Path:
    if fmt not in FORMATS:
        raise AlemsError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    output = Path(output)
    if output.is_dir():
        raise AlemsError(f"--output {output} is a folder; give a file name, e.g. "
                         f"{output / ('results.' + fmt)}")
    if fmt == "xlsx":
        _need_openpyxl()
    with atomic_target(output) as tmp:
        if fmt == "xlsx":
            _write_xlsx(df, tmp, group)
        elif fmt == "csv":
            df.to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n",
                      encoding="utf-8")
        elif fmt == "json":
            records = [{k: _json_value(v) for k, v in rec.items()}
                       for rec in df.astype(object).to_dict(orient="records")]
            tmp.write_text(json.dumps(records, indent=1, ensure_ascii=False), encoding="utf-8")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            # all-NULL columns come out as the null type; give them a concrete one
            fields = [pa.field(f.name, pa.float64()) if pa.types.is_null(f.type) else f
                      for f in table.schema]
            table = table.cast(pa.schema(fields))
            table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                   **parquet_metadata(group)})
            with arrowfile.sink(tmp) as fh:
                pq.write_table(table, fh)
    return output


def _need_openpyxl() -> None:
    import importlib.util

    if importlib.util.find_spec("openpyxl") is None:
        raise AlemsError("writing .xlsx needs openpyxl; install it with "
                         "`pip install 'alems[reports]'`, or write .csv")


# characters an XLSX file cannot hold (XML 1.0 forbids them); dropped from text cells
_XML_ILLEGAL = dict.fromkeys(c for c in range(32) if c not in (9, 10, 13))


def _xlsx_cell(ws, v):
    """A cell: numbers as numbers, text always as text (a value such as "=HYPERLINK(…)" from
    a model's answer must never become a formula), missing values empty."""
    from openpyxl.cell import WriteOnlyCell

    v = _json_value(v)
    if v is None or isinstance(v, (bool, int, float)):
        return WriteOnlyCell(ws, value=v)
    text = str(v).translate(_XML_ILLEGAL)
    if len(text) > XLSX_CELL_MAX_CHARS:
        text = text[:XLSX_CELL_MAX_CHARS - 1] + "…"
    cell = WriteOnlyCell(ws, value=text)
    cell.data_type = "s"
    return cell


def _write_xlsx(df: pd.DataFrame, tmp: Path, group: Group) -> None:
    """A workbook: sheet `runs` (header row, one row per run, the columns of the CSV) and
    sheet `about` (the group and the units of the column names)."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("runs")
    ws.append([_xlsx_cell(ws, c) for c in df.columns])
    for rec in df.astype(object).itertuples(index=False, name=None):
        ws.append([_xlsx_cell(ws, v) for v in rec])
    about = wb.create_sheet("about")
    for row in (("group_id", group.group_id), ("runs", len(df)), ("units", UNITS_TEXT)):
        about.append([_xlsx_cell(about, v) for v in row])
    wb.save(tmp)


def write_samples_dataset(conn: sqlite3.Connection, db_path: Path, group: Group,
                          output: Path) -> dict:
    """Copy every run's samples into one hive-partitioned dataset under `output`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise AlemsError(f"--output {output} exists and is not an empty folder; the samples "
                         "dataset needs a new or empty folder")
    rows = reads.run_sample_paths(conn, group.group_id)
    if not rows:
        raise AlemsError(f"group {group.group_id!r} has no runs to export yet")
    found: list[tuple] = []
    missing: list[tuple] = []
    for run_id, exp_id, rel in rows:
        path = samples_file(db_path, rel)
        (found if path is not None and path.is_file() else missing).append((run_id, exp_id, path))
    if not found:
        raise AlemsError(f"none of group {group.group_id!r}'s runs has a samples file next to "
                         f"{db_path}; nothing to export")
    partition_keys = {"group_id", "exp_id", "run_id"}
    schemas = [pq.read_schema(arrowfile.source(p)) for _, _, p in found]
    fields: dict[str, pa.Field] = {}
    for s in schemas:
        for f in s:
            if f.name not in partition_keys and f.name not in fields:
                fields[f.name] = f.with_nullable(True)
    unified = pa.schema(list(fields.values()))
    total_rows = 0
    for run_id, exp_id, path in found:
        table = pq.read_table(arrowfile.source(path))
        cols = [table[f.name].cast(f.type) if f.name in table.column_names
                else pa.nulls(table.num_rows, f.type) for f in unified]
        out_table = pa.Table.from_arrays(cols, schema=unified)
        target = output / f"group_id={group.group_id}" / f"exp_id={exp_id}" / f"run_id={run_id}"
        target.mkdir(parents=True, exist_ok=True)
        with arrowfile.sink(target / "part-0.parquet") as fh:
            pq.write_table(out_table, fh)
        total_rows += out_table.num_rows
    return {"output": str(output), "runs": len(found), "rows": total_rows,
            "missing_runs": [r for r, _, _ in missing]}


def write_runs_streamed(conn: sqlite3.Connection, group: Group, fmt: str, output: Path, *,
                        country: str | None = None, factors=None) -> tuple[Path, int]:
    """`write_runs(runs_export_frame(…))` for CSV and Parquet, batch by batch
    (reads.export_runs_batches): the same file, in memory independent of the number of
    runs (the whole frame took ~0.5 GB at 2·10⁴ runs, issue 23). Returns (path, runs)."""
    if fmt not in ("csv", "parquet"):
        raise AlemsError(f"internal: streamed export writes csv or parquet, not {fmt!r}")
    output = Path(output)
    if output.is_dir():
        raise AlemsError(f"--output {output} is a folder; give a file name, e.g. "
                         f"{output / ('results.' + fmt)}")
    kinds, batches = reads.export_runs_batches(conn, group.group_id)
    first = next(batches, None)
    if first is None:
        raise AlemsError(f"group {group.group_id!r} has no runs to export yet")
    count = 0
    with atomic_target(output) as tmp:
        writer = None
        with open(tmp, "w", encoding="utf-8", newline="") if fmt == "csv" else \
                contextlib.nullcontext() as text:
            for df in itertools.chain([first], batches):
                df[FOOTPRINT_COLUMNS] = run_footprints(df, country, factors)
                if country is not None:
                    df["country"] = country.upper()
                if fmt == "csv":
                    df.to_csv(text, index=False, header=count == 0, quoting=csv.QUOTE_MINIMAL,
                              lineterminator="\r\n")
                else:
                    writer = _parquet_batch(writer, df, tmp, group, kinds)
                count += len(df)
            if writer is not None:
                writer[0].close()
                writer[1].close()
    return output, count


def _parquet_batch(writer, df: pd.DataFrame, tmp: Path, group: Group, kinds: dict):
    """Append `df` to the Parquet file at `tmp`, opening it at the first batch with the
    schema write_runs gives the whole frame (a column NULL in every run: float64); returns
    (writer, sink, schema)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if writer is None:
        table = pa.Table.from_pandas(df, preserve_index=False)
        fields = [pa.field(f.name, pa.float64()) if kinds.get(f.name) == "null" or
                  (f.name not in kinds and pa.types.is_null(f.type))
                  else pa.field(f.name, pa.large_string()) if kinds.get(f.name) == "text"
                  else f
                  for f in table.schema]
        schema = pa.schema(fields).with_metadata({**(table.schema.metadata or {}),
                                                  **parquet_metadata(group)})
        sink = arrowfile.sink(tmp)
        writer = (pq.ParquetWriter(sink, schema), sink, schema)
    pw, _, schema = writer
    pw.write_table(pa.Table.from_pandas(df, preserve_index=False).cast(schema))
    return writer
