"""The SQLite index: one connection factory for every part of A-LEMS.

`connect(path)` opens the database in WAL mode with foreign keys on, creates or migrates
the schema (``schema.sql``, version in ``schema_info``), and registers the SQL functions the
spec's queries need but SQLite lacks: the aggregates ``STDDEV``/``STDEV`` (sample standard
deviation), ``VARIANCE`` (sample), ``STDDEV_POP``, ``VAR_POP``, ``MEDIAN`` and the scalars
``SQRT``, ``POWER``, ``LN``, ``EXP``. All return NULL where the value is undefined (fewer
than two values for a sample deviation, the square root or log of a negative number).

Migration is additive: a table or column named in ``schema.sql`` but missing from an older
database is added; nothing is dropped or renamed. One constraint was widened in place
(`_widen_arm_check`: runs.workflow_type also takes custom arms). A column that older rows
can be given from what they stored is filled (``runs.pair_index``: `store.runs.derive_pair_index`).
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import stat
from pathlib import Path
from collections.abc import Iterable, Iterator
from urllib.parse import quote

from alems.errors import AlemsError
from alems.atomic_io import refuse_untrusted_link
from alems.store.runs import derive_pair_index

# 3: runs.host/node_id/cpu_model (fleet), runs.gpu_* (GPU energy), run conditions (gaps,
# quiet, baseline SE); 4: runs.pair_index (arm set); 5: runs.counted_pids (server processes);
# 6: group_labels (`alems tag`); 7: runs.workflow_type also takes a custom arm's name
# (`_widen_arm_check`); 8: indexes for a pair's arms and a run's tax row (an older
# database gets them from schema.sql's CREATE INDEX IF NOT EXISTS on migration); 9:
# group_summaries (a group's summary stored for the dashboard and `alems summary`)
SCHEMA_VERSION = 9
SCHEMA_PATH = Path(__file__).with_name("schema.sql")
BUSY_TIMEOUT_MS = 30_000


# ---------------------------------------------------------------- SQL functions

def _number(value) -> float | None:
    """A SQL value as a float; NULL, text that is no number and NaN are skipped (None)."""
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


class _Moments:
    """Welford's running mean/variance (numerically stable in one pass). Subclasses pick
    the divisor (`ddof`: 1 sample, 0 population) and whether to take the square root."""

    ddof = 1
    root = False

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def step(self, value) -> None:
        x = _number(value)
        if x is None:
            return
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def finalize(self):
        if self.n - self.ddof <= 0:
            return None
        var = max(self.m2, 0.0) / (self.n - self.ddof)
        return math.sqrt(var) if self.root else var


class _SampleVariance(_Moments):
    ddof, root = 1, False


class _SampleStddev(_Moments):
    ddof, root = 1, True


class _PopVariance(_Moments):
    ddof, root = 0, False


class _PopStddev(_Moments):
    ddof, root = 0, True


class _Median:
    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value) -> None:
        x = _number(value)
        if x is not None:
            self.values.append(x)

    def finalize(self):
        if not self.values:
            return None
        v = sorted(self.values)
        mid = len(v) // 2
        return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2.0


def _scalar(fn):
    def wrapped(*args):
        if any(a is None for a in args):
            return None
        try:
            result = fn(*(float(a) for a in args))
        except (ValueError, OverflowError, ZeroDivisionError, TypeError):
            return None
        if isinstance(result, complex) or (isinstance(result, float) and math.isnan(result)):
            return None
        return result
    return wrapped


def _sqrt(x: float):
    return None if x < 0 else math.sqrt(x)


def _ln(x: float):
    return None if x <= 0 else math.log(x)


AGGREGATES: dict[str, type[_Moments] | type[_Median]] = {
    "STDDEV": _SampleStddev,
    "STDEV": _SampleStddev,
    "STDDEV_SAMP": _SampleStddev,
    "VARIANCE": _SampleVariance,
    "VAR_SAMP": _SampleVariance,
    "STDDEV_POP": _PopStddev,
    "VAR_POP": _PopVariance,
    "MEDIAN": _Median,
}
SCALARS = {
    "SQRT": (1, _scalar(_sqrt)),
    "POWER": (2, _scalar(math.pow)),
    "POW": (2, _scalar(math.pow)),
    "LN": (1, _scalar(_ln)),
    "EXP": (1, _scalar(math.exp)),
}


def register_functions(conn: sqlite3.Connection) -> None:
    for name, cls in AGGREGATES.items():
        conn.create_aggregate(name, 1, cls)
    for name, (nargs, fn) in SCALARS.items():
        conn.create_function(name, nargs, fn, deterministic=True)


# ---------------------------------------------------------------- connect / schema

def check_database_file(path) -> None:
    """A database is a regular file (or a new name): SQLite writes `<name>-journal` and
    `-wal` beside it, which must never appear beside a device (`--db /dev/null` in /dev)
    or a FIFO (whose open would block). UsageError: one line, exit 2."""
    from alems.errors import UsageError
    from alems.atomic_io import kind_of as _kind

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # a new database, or a folder problem the open reports
    if not stat.S_ISREG(mode):
        raise UsageError(f"--db {path} is {_kind(mode)}; a database is a regular file "
                         "(give a file name such as data/experiments.db)")


def connect(path, *, create: bool = True) -> sqlite3.Connection:
    """Open the index at `path` (WAL, foreign keys, functions, schema up to date).

    create=False: the file must exist (a query never makes an empty database), and the
    schema is left as found.
    """
    path = Path(path)
    check_database_file(path)
    if not create and not path.is_file():
        raise AlemsError(f"database not found: {path}; run `alems batch --save-db` first "
                         "or pass --db PATH")
    refuse_untrusted_link(path, "database")   # never written through another user's link
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AlemsError(f"cannot create the folder for database {path}: "
                             f"{exc.strerror or exc}") from None
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if create:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as exc:
        raise AlemsError(f"cannot open database {path}: {exc}{_read_only_hint(path)}") from None
    register_functions(conn)
    if create:
        try:
            init_schema(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise AlemsError(f"cannot initialise database {path}: {exc}"
                             f"{_read_only_hint(path)}") from None
    return conn


def _read_only_hint(path: Path) -> str:
    """Why a database cannot be written, when its folder is read-only (a read-only mount)."""
    if os.access(path.parent, os.W_OK):
        return ""
    return (" (its folder is read-only: a batch needs a writable --db; the analysis "
            "commands and `alems query` read it as it is)")


class DatabaseBusy(AlemsError):
    """The database is locked or half-created by a writer; a moment later it will read."""


def _wal_frames_unreadable(path: Path) -> Path | None:
    """The -wal file of `path` when it holds commits (any bytes: SQLite removes or empties
    it once everything is checkpointed), else None."""
    wal = path.with_name(path.name + "-wal")
    try:
        return wal if wal.stat().st_size > 0 else None
    except OSError:
        return None


def connect_readonly(path, *, check_same_thread: bool = True,
                     busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """Open an existing index for reading only — the one way A-LEMS does (analysis
    commands, `alems query`/`status`, the dashboard, merge inputs): nothing is created or
    changed. The name goes into a `file:` URI percent-quoted, so `%41`, `#` or `?` in a
    path are that file's name, never URI syntax.

    A WAL database whose folder cannot hold the -shm index (a read-only mount) is opened
    immutable only when its -wal file is empty; with commits still in the -wal it is
    refused in one line, as reading it would show a stale state."""
    path = Path(path)
    if not path.is_file():
        raise AlemsError(f"database not found: {path}; run `alems batch --save-db` first "
                         "or pass --db PATH")
    path = path.resolve()
    base = "file:" + quote(os.fsencode(path), safe="/")   # bytes: any byte of a name
    last: sqlite3.Error | None = None
    for suffix in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(base + suffix, uri=True, timeout=busy_timeout_ms / 1000,
                                   check_same_thread=check_same_thread)
        except sqlite3.Error as exc:
            last = exc
            continue
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            conn.close()
            last = exc
            if "locked" in str(exc) or "busy" in str(exc):
                raise DatabaseBusy(f"database {path} is being written right now ({exc}); "
                                   "try again in a moment") from None
            if suffix == "?mode=ro" and not os.access(path.parent, os.W_OK):
                wal = _wal_frames_unreadable(path)
                if wal is not None:
                    raise AlemsError(
                        f"cannot read database {path}: it has commits in {wal.name} that "
                        f"cannot be read from this read-only folder ({path.name}-shm is "
                        "missing); reading only the main file would show a stale state. "
                        "Open it where its folder is writable, or checkpoint it where it "
                        f"is written (sqlite3 {path.name} 'PRAGMA wal_checkpoint(TRUNCATE)')"
                    ) from None
                continue  # read-only folder, nothing in the WAL: the file is the state
            break
        except sqlite3.DatabaseError:  # not a database at all: the caller's check says so
            pass
        register_functions(conn)
        return conn
    raise AlemsError(f"cannot open database {path} for reading: {last}")


def schema_version(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute("SELECT value FROM schema_info WHERE key = 'version'").fetchone()
    except sqlite3.OperationalError:
        return None
    try:
        return int(row[0]) if row else None
    except (TypeError, ValueError):
        return None  # a foreign or damaged schema_info: no version this code knows


# Storage classes each declared column type may hold (NULL always may): a value of another
# class was written by hand or by something else, and would break the code reading it.
_ALLOWED_CLASSES = {"INTEGER": ("integer",), "REAL": ("integer", "real"), "TEXT": ("text",)}


def mistyped_value(conn: sqlite3.Connection, tables: Iterable[str]) -> str | None:
    """The first stored value whose storage class its column's declared type does not allow,
    described for an error line (None when every value fits)."""
    for table in tables:
        checks = []
        for _, name, decl, *_ in conn.execute(f"PRAGMA table_info({table})"):
            allowed = _ALLOWED_CLASSES.get((decl or "").split("(")[0].strip().upper())
            if allowed:
                listed = ", ".join(f"'{c}'" for c in (*allowed, "null"))
                checks.append((name, decl, f"typeof({name}) NOT IN ({listed})"))
        # one scan of the table for all its columns (a scan per column took seconds at
        # 10⁵ runs, issue 23); only a table with a bad value is searched column by column
        if not checks or conn.execute(f"SELECT 1 FROM {table} WHERE "
                                      + " OR ".join(c for _, _, c in checks)
                                      + " LIMIT 1").fetchone() is None:
            continue
        for name, decl, cond in checks:
            row = conn.execute(f"SELECT rowid, typeof({name}), substr(CAST({name} AS TEXT), 1, 40) "
                               f"FROM {table} WHERE {cond} LIMIT 1").fetchone()
            if row is not None:
                return (f"{table}.{name} of row {row[0]} holds a {row[1]} value ({row[2]!r}) "
                        f"where the schema wants {decl}")
    return None


def _schema_columns(sql: str) -> dict[str, list[tuple[str, str]]]:
    """table -> [(column, declared type)] of the schema text, via an in-memory database."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(sql)
        tables = [r[0] for r in mem.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {t: [(r[1], r[2]) for r in mem.execute(f"PRAGMA table_info({t})")]
                for t in tables}
    finally:
        mem.close()


def init_schema(conn: sqlite3.Connection) -> None:
    """Create missing tables/indexes, add missing columns, record the version."""
    found = schema_version(conn)
    if found is not None and found > SCHEMA_VERSION:
        raise AlemsError(f"database schema version {found} is newer than this A-LEMS "
                         f"({SCHEMA_VERSION}); upgrade alems")
    if found == SCHEMA_VERSION:
        return
    sql = SCHEMA_PATH.read_text(encoding="utf-8")
    # executescript commits on its own; it is idempotent (IF NOT EXISTS everywhere).
    conn.executescript(sql)
    wanted = _schema_columns(sql)
    with transaction(conn):
        for table, columns in wanted.items():
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns:
                if name not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        derive_pair_index(conn)
        _widen_arm_check(conn, sql)
        conn.execute("INSERT INTO schema_info (key, value) VALUES ('version', ?) "
                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                     (str(SCHEMA_VERSION),))


def _check_clause(text: str, start: int) -> str:
    """The `CHECK (…)` clause beginning at `start`, up to its matching parenthesis."""
    depth = 0
    for i in range(text.index("(", start), len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i + 1]
    raise AlemsError("internal: unbalanced CHECK clause in schema.sql")


def _widen_arm_check(conn: sqlite3.Connection, schema_sql: str) -> None:
    """Give an older database's runs.workflow_type the CHECK of schema.sql (built-in arms
    or a custom arm's name). SQLite cannot alter a constraint; loosening a CHECK does not
    change how rows are stored, so the table's stored definition is rewritten in place, the
    way https://sqlite.org/lang_altertable.html#otheralter describes for removing one."""
    marker = "CHECK (workflow_type IN"
    wanted = _check_clause(schema_sql, schema_sql.index(marker))
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'")\
        .fetchone()
    if row is None or marker not in row[0]:
        return
    have = _check_clause(row[0], row[0].index(marker))
    if have == wanted:
        return
    version = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'runs'",
                     (row[0].replace(have, wanted),))
        conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, *,
                immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """BEGIN [IMMEDIATE] … COMMIT, ROLLBACK on any exception (also KeyboardInterrupt)."""
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    else:
        conn.commit()
