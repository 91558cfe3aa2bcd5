"""What one sampling run produced: SampleResult (samples as an Arrow table, phases,
summary, file metadata); how raw C slots become its columns is alems.measure.columns,
numpy <-> Arrow conversion alems.measure.arrow.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alems.atomic_io import write_parquet_atomic
from alems.errors import AlemsError
from alems.measure.arrow import arrow_to_masked, arrow_to_numpy
from alems.measure.gaps import gap_reason, gaps_within
from alems.measure.names import DOMAINS, PHASES_METADATA_KEY
from alems.measure.phases import PARENT_SPAN_ID, SPAN_ID, Phase
from alems import arrowfile

# Instantaneous columns: not summed as counters in the summary.
GAUGES = ("procs_running", "package_temp_c")


def _first_last(v: np.ndarray) -> tuple:
    """A column's first non-null value and its last value (None where null)."""
    if not isinstance(v, np.ma.MaskedArray):
        return v[0].item(), v[-1].item()
    mask = np.ma.getmaskarray(v)
    valid = np.flatnonzero(~mask)
    data = np.ma.getdata(v)
    return (data[valid[0]].item() if valid.size else None,
            None if mask[-1] else data[-1].item())


# ------------------------------------------------------------------ phases

def phase_rows(result, t_end_ns: int | None = None) -> list[dict]:
    """A result's phases as rows: seq, name, kind, parent_seq (a traced span's parent span,
    else by containment), start_ns,
    end_ns, duration_ns, energy_uj (pkg, as the store keeps it), domains_energy_uj (every
    domain), detail. An unclosed phase ends at t_end_ns (default: the last sample).
    Energy is null outside the samples or across a gap that could hide a counter wrap."""
    end_default = t_end_ns if t_end_ns is not None else result.t_end_ns
    marks = []
    for ph in result.phases or []:
        end = ph.end_ns if ph.end_ns is not None else end_default
        marks.append((int(ph.start_ns), int(end), ph))
    marks.sort(key=lambda m: (m[0], -m[1]))
    energy = _energies(result, [m[0] for m in marks], [m[1] for m in marks])
    rows: list[dict] = []
    stack: list[dict] = []
    span_seq: dict = {}  # a traced span's id -> its seq
    for seq, (start, end, ph) in enumerate(marks, start=1):
        while stack and not (stack[-1]["start_ns"] <= start and end <= stack[-1]["end_ns"]):
            stack.pop()
        per_domain = {d: v[seq - 1] for d, v in energy.items()}
        detail = dict(ph.detail or {})
        row = {"seq": seq, "name": ph.name, "kind": ph.kind,
               "parent_seq": stack[-1]["seq"] if stack else None,
               "start_ns": start, "end_ns": end, "duration_ns": end - start,
               "energy_uj": per_domain.get("pkg"), "domains_energy_uj": per_domain,
               "detail": detail}
        rows.append(row)
        if detail.get(SPAN_ID) is None:
            stack.append(row)
            continue
        # A traced span knows its parent: containment would mix up overlapping threads.
        span_seq[detail[SPAN_ID]] = seq
        row["parent_seq"] = span_seq.get(detail.get(PARENT_SPAN_ID), row["parent_seq"])
    return rows


def _energies(result, starts: list[int], ends: list[int]) -> dict[str, list[float | None]]:
    """Energy (µJ) of each [start, end] per domain, interpolated on the samples (clamped
    at their ends, as SampleResult.energy_uj); None where SampleResult says it is unknown
    (fewer than 2 samples, a wrap-hiding gap)."""
    domains = list(getattr(result, "domains", []) or [])
    out: dict[str, list[float | None]] = {d: [None] * len(starts) for d in domains}
    if not starts or not domains:
        return out
    try:
        table = result.table
    except AlemsError:  # a summary-only run: no samples to put phases on
        return out
    if table is None or table.num_rows < 2:
        return out
    t = arrow_to_numpy(table.column("t_ns")).astype(np.float64)
    s, e = np.asarray(starts, np.float64), np.asarray(ends, np.float64)
    for d in domains:
        y = arrow_to_numpy(table.column(f"{d}_energy_uj")).astype(np.float64)
        vals = np.interp(e, t, y) - np.interp(s, t, y)
        out[d] = [None if result.energy_null_reason(d, a, b) is not None else float(v)
                  for a, b, v in zip(starts, ends, vals, strict=True)]
    return out


# ------------------------------------------------------------------ result

def _interp(t: np.ndarray, y: np.ndarray, at: int) -> float:
    return float(np.interp(float(at), t.astype(np.float64), y.astype(np.float64)))


@dataclass
class Ends:
    """What the summary needs of the samples, kept while they stream by: the count, the
    first and last time, and every column's first non-null value and last value (None
    where null: a perf counter that has not run)."""

    schema: pa.Schema
    samples: int = 0
    first: dict = field(default_factory=dict)
    last: dict = field(default_factory=dict)
    # Gaps between consecutive samples: the longest, and every (start_ns, end_ns) at least
    # gap_floor_ns long (those that could hide a counter wrap: alems.measure.gaps).
    gap_floor_ns: int | None = None
    max_gap_ns: int | None = None
    gaps: list = field(default_factory=list)

    def update(self, cols: dict[str, np.ndarray]) -> None:
        n = len(cols["t_ns"])
        if not n:
            return
        t = np.asarray(cols["t_ns"], dtype=np.int64)
        if self.samples:
            t = np.concatenate(([int(self.last["t_ns"])], t))
        if len(t) >= 2:
            d = np.diff(t)
            self.max_gap_ns = max(self.max_gap_ns or 0, int(d.max()))
            if self.gap_floor_ns is not None:
                self.gaps += [(int(t[i]), int(t[i + 1]))
                              for i in np.flatnonzero(d >= self.gap_floor_ns)]
        for k, v in cols.items():
            first, last = _first_last(v)
            if self.first.get(k) is None:
                self.first[k] = first
            self.last[k] = last
        self.samples += n

    @classmethod
    def of_table(cls, table: pa.Table, gap_floor_ns: int | None = None) -> Ends:
        ends = cls(table.schema, gap_floor_ns=gap_floor_ns)
        if table.num_rows:
            ends.update({n: arrow_to_masked(table.column(n)) for n in table.column_names})
        return ends


class SampleResult:
    """Samples (Arrow table), phases, summary and file metadata of one sampling run.

    `table` is a pa.Table, or a callable that loads it (a streamed run: the samples are
    on disk, `ends` was kept while they streamed, so the summary never reads them);
    `partial_path` is then the Arrow IPC stream they are in until `write_parquet`."""

    def __init__(self, table, phases: list[Phase], energy_source: str,
                 requested_hz: float, stats: dict | None = None,
                 metadata: dict[str, str] | None = None, extra_summary: dict | None = None,
                 *, ends: Ends | None = None, partial_path: str | None = None):
        self._table = table if isinstance(table, pa.Table) else None
        self._load = None if isinstance(table, pa.Table) else table
        self.partial_path = partial_path
        ends = ends if ends is not None else Ends.of_table(table)
        self._ends = ends
        self.phases = [Phase(**p.to_dict()) for p in phases]
        self.energy_source = energy_source
        self.domains = [d for d in DOMAINS if f"{d}_energy_uj" in ends.schema.names]
        self.requested_hz = float(requested_hz)
        self.t_start_ns = int(ends.first.get("t_ns", 0))
        self.t_end_ns = int(ends.last.get("t_ns", 0))
        # Gaps that could hide a whole counter wrap (alems.measure.gaps), from the sampler.
        self.wrap_gaps = list((extra_summary or {}).get("wrap_gaps") or [])
        self.summary = self._summarize(stats or {}, extra_summary or {})
        self.metadata = dict(metadata or {})
        self.metadata["energy_source"] = energy_source
        self.metadata["summary"] = json.dumps(self.summary, default=str, sort_keys=True)

    def update_summary(self, **items) -> None:
        """Add to the summary (and to the copy that goes into the file's metadata)."""
        self.summary.update(items)
        self.metadata["summary"] = json.dumps(self.summary, default=str, sort_keys=True)

    @property
    def table(self) -> pa.Table:
        if self._table is None and self._load is not None:
            self._table = self._load()
        return self._table

    @property
    def _t(self) -> np.ndarray:
        if not self._ends.samples:
            return np.zeros(0, np.int64)
        return arrow_to_numpy(self.table.column("t_ns"))

    # -------------------------------------------------------------- queries
    def _col(self, name: str) -> np.ndarray:
        """A column of the samples (KeyError if there is none: callers check the schema)."""
        return arrow_to_numpy(self.table.column(name))

    def _bounds(self, t0_ns, t1_ns) -> tuple[int, int]:
        t0 = self.t_start_ns if t0_ns is None else int(t0_ns)
        t1 = self.t_end_ns if t1_ns is None else int(t1_ns)
        return t0, t1

    def energy_uj(self, t0_ns: int | None = None,
                  t1_ns: int | None = None) -> dict[str, float | None]:
        """Energy per canonical domain between t0 and t1, interpolated at the bounds; None
        (see `energy_null_reason`) with fewer than 2 samples or across a gap that could
        hide a whole counter wrap. The whole run needs no sample read back."""
        whole = t0_ns is None and t1_ns is None
        t0, t1 = self._bounds(t0_ns, t1_ns)
        t = np.zeros(0) if whole else self._t
        out: dict[str, float | None] = {}
        for d in self.domains:
            if self.energy_null_reason(d, t0, t1) is not None:
                out[d] = None
                continue
            if whole:
                out[d] = self._delta(f"{d}_energy_uj")
                continue
            y = self._col(f"{d}_energy_uj")
            out[d] = _interp(t, y, t1) - _interp(t, y, t0)
        return out

    def energy_null_reason(self, domain: str, t0_ns: int | None = None,
                           t1_ns: int | None = None) -> str | None:
        """Why the energy of `domain` between t0 and t1 is unknown (None: it is known)."""
        if self._ends.samples < 2:
            return (f"only {self._ends.samples} sample(s): energy needs two (the run was shorter "
                    "than one sampling period, or the sampler failed)")
        t0, t1 = self._bounds(t0_ns, t1_ns)
        hit = gaps_within(self.wrap_gaps, domain, t0, t1)
        return gap_reason(max(hit, key=lambda g: g["gap_s"])) if hit else None

    def counter_delta(self, name: str, t0_ns: int | None = None, t1_ns: int | None = None):
        """Increase of a cumulative counter column between t0 and t1, over its non-null
        samples (a perf counter counts from its first value). None if absent, or unknown:
        null at the span's end, or fewer than 2 non-null samples in it (a perf counter
        that never ran)."""
        if name not in self._ends.schema.names or not self._ends.samples:
            return None
        if t0_ns is None and t1_ns is None:
            return self._delta(name)
        t, y = self._t, self._col(name)
        t0, t1 = self._bounds(t0_ns, t1_ns)
        null = np.isnan(y) if y.dtype.kind == "f" else None  # nulls read back as NaN
        if null is not None and null.any():
            end = np.searchsorted(t, t1, side="right") - 1  # the span's last sample
            if end < 0 or null[end] or np.count_nonzero(~null & (t >= t0) & (t <= t1)) < 2:
                return None
            t, y = t[~null], y[~null]
        return _interp(t, y, t1) - _interp(t, y, t0)

    def _delta(self, name: str):
        """Last minus first non-null value of a column, from the ends (never reads the
        samples); None when the last is null (a perf counter that never ran)."""
        first, last = self._ends.first.get(name), self._ends.last.get(name)
        return None if first is None or last is None else last - first

    # -------------------------------------------------------------- summary
    def counter_columns(self) -> list[str]:
        names = []
        for f in self._ends.schema:
            if f.name == "t_ns" or f.name.endswith("_energy_uj") or f.name in GAUGES:
                continue
            if pa.types.is_integer(f.type):
                names.append(f.name)
        return names

    def _summarize(self, stats: dict, extra: dict) -> dict:
        n = self._ends.samples
        duration_s = (self.t_end_ns - self.t_start_ns) / 1e9 if n >= 2 else 0.0
        energy_j: dict[str, float | None] = {}
        warnings: list[str] = []
        counters = {c: self.counter_delta(c) for c in self.counter_columns()}
        for d in self.domains:
            why = self.energy_null_reason(d)
            energy_j[d] = None if why else float(self._delta(f"{d}_energy_uj")) / 1e6
            if why:
                warnings.append(f"energy_j.{d} is null: {why}")
        summary = {
            "duration_s": duration_s,
            "samples": n,
            "requested_hz": self.requested_hz,
            "achieved_hz": (n - 1) / duration_s if duration_s > 0 else 0.0,
            "late_samples": int(stats.get("late", 0)),
            "max_lateness_ns": int(stats.get("max_lateness_ns", 0)),
            "dropped_samples": int(stats.get("dropped", 0)),
            "skipped_deadlines": int(stats.get("skipped", 0)),
            "energy_source": self.energy_source,
            "energy_j": energy_j,
            "avg_power_w": {d: (e / duration_s if duration_s > 0 and e is not None else None)
                            for d, e in energy_j.items()},
            "max_gap_ns": self._ends.max_gap_ns,
            "warnings": warnings,
            "counters": counters,
        }
        warnings += [f"counters.{c} is null: the perf counter has no value at the run's end "
                     "(it never ran: time_running = 0, no free hardware counter for it)"
                     for c, v in counters.items() if v is None]
        if "thread_cpu_ns" in stats:
            summary["sampler_cpu_s"] = stats["thread_cpu_ns"] / 1e9
            summary["read_ns_per_sample"] = (stats["read_ns_total"] / stats["samples"]
                                             if stats.get("samples") else None)
        summary.update(extra)
        return summary

    # -------------------------------------------------------------- output
    def file_metadata(self) -> dict[str, str]:
        meta = dict(self.metadata)
        meta[PHASES_METADATA_KEY] = json.dumps(phase_rows(self), default=str)
        return meta

    def write_parquet(self, path) -> None:
        """Atomic: write a temporary file in the same folder, fsync, rename."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise AlemsError(f"cannot write {path}: folder {folder} does not exist; create it")
        if self.partial_path is not None:  # streamed: convert the stream, batch by batch
            from alems.measure.stream import stream_to_parquet

            try:
                stream_to_parquet(self.partial_path, path, self.file_metadata())
            except OSError as exc:
                raise AlemsError(f"cannot write {path}: {exc.strerror or exc}; the samples "
                                 f"stay in {self.partial_path}") from None
            self.partial_path, self._table = None, None
            self._load = lambda: pq.read_table(arrowfile.source(path))
            return
        meta = {**(self.table.schema.metadata or {}),
                **{k.encode(): str(v).encode() for k, v in self.file_metadata().items()}}
        table = self.table.replace_schema_metadata(meta)
        try:
            write_parquet_atomic(table, path)
        except OSError as exc:
            raise AlemsError(f"cannot write {path}: {exc.strerror or exc}; "
                             "choose a writable location") from None
