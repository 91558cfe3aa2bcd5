"""Hostile input, by class (issue 24, "Tracebacks"): text that is not valid Unicode, numbers
from outside at their extremes, odd paths and streams, dashboard URLs and databases. Every
case ends in one `alems: error:` line (or a clear page) and never in a traceback."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import subprocess

import pytest

import fakehw
from _hardening_util import alems as run_alems, batch_args, env_for, one_error_line
from alems import config
from alems.cli import app
from alems.cli._common import run_app
from alems.errors import AlemsError, UsageError
from alems.catalog import tasks as tasks_mod

# Every number from outside is tried at these: zero, negative, not a number, infinite and
# one past the signed and unsigned 64-bit ranges.
EXTREMES = ["0", "-1", "nan", "inf", "-inf", str(2**63), str(2**64), "1e-300", "1e300"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = run_app(app, [str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def assert_one_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("alems: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ------------------------------------------------------------------------------ text

SURROGATE_RECORDS = [
    {"prompt": "what is \ud800?", "answer": "1"},
    {"prompt": "2+2?", "answer": "4\udfff"},
    {"prompt": "2+2?", "answer": "4", "id": "x\ud800"},
    {"prompt": "2+2?", "answer": "4", "aliases": ["four\ud800"]},
    {"question": "q\udc80", "answer": "step\n#### 4"},
]


@pytest.mark.parametrize("record", SURROGATE_RECORDS)
def test_a_lone_surrogate_in_any_task_field_is_refused_at_load(tmp_path, record):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="ascii")   # JSON keeps "\ud800"
    with pytest.raises(AlemsError, match="lone surrogate"):
        tasks_mod.load_task_set(str(path))


@pytest.mark.parametrize("final", ["1e5000", "3/0", "0/0", "9" * 200, "1/" + "9" * 200])
def test_gsm8k_answers_no_one_can_check_are_refused_per_line(tmp_path, final):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": f"work\n#### {final}"}) + "\n")
    with pytest.raises(AlemsError, match=r"g\.jsonl:1: the value after '####'"):
        tasks_mod.load_task_set(str(path))


def test_gsm8k_answers_at_the_digit_limit_still_load(tmp_path):
    path = tmp_path / "g.jsonl"
    big = "9" * tasks_mod.MAX_ANSWER_DIGITS
    path.write_text(json.dumps({"question": "q", "answer": f"w\n#### {big}"}) + "\n"
                    + json.dumps({"question": "q2", "answer": "w\n#### 6/4"}) + "\n")
    items = tasks_mod.load_task_set(str(path)).items
    assert [i.answer for i in items] == [big, "6/4"]


# ---------------------------------------------------------------- numbers from outside

@pytest.mark.parametrize("name,reader,low,high", [
    ("ALEMS_RT_PRIORITY", config.rt_priority, 0, config.RT_PRIORITY_MAX),
    ("ALEMS_MSR_STRIDE", config.msr_stride, 1, config.MSR_STRIDE_MAX),
])
@pytest.mark.parametrize("raw", EXTREMES + ["12", " 7 ", "x"])
def test_integer_variables_are_in_range_or_one_usage_error(monkeypatch, name, reader, low, high,
                                                           raw):
    monkeypatch.setenv(name, raw)
    try:
        value = reader()
    except UsageError as exc:
        assert name in str(exc)
        return
    assert low <= value <= high and value == int(raw)


@pytest.mark.parametrize("raw", EXTREMES)
def test_the_estimate_watts_are_finite_and_positive_or_one_usage_error(monkeypatch, raw):
    monkeypatch.setenv("ALEMS_ESTIMATE_W_PER_CORE", raw)
    try:
        value = config.estimate_w_per_core()
    except UsageError:
        return
    assert math.isfinite(value) and value > 0


@pytest.mark.parametrize("template", ["/x/{cpu}/{y}", "/x/{cpu}/{", "/x/{cpu}/}", "/x/{cpu}{0}"])
def test_msr_path_braces_other_than_cpu_are_literal(monkeypatch, template):
    monkeypatch.setenv("ALEMS_MSR_PATH", template)
    assert config.msr_device_path(config.msr_path_template(), 3) == template.replace("{cpu}", "3")


@pytest.mark.parametrize("raw,width", [("0", config.MIN_COLUMNS), ("1", config.MIN_COLUMNS),
                                       ("99999999", config.MAX_COLUMNS),
                                       pytest.param("9" * 5000, config.MAX_COLUMNS, id="5000-digits"), ("120", 120),
                                       ("abc", None), ("-5", None)])
def test_columns_is_clamped_for_every_console(monkeypatch, raw, width):
    from alems.cli import tables

    monkeypatch.setenv("COLUMNS", raw)
    assert config.terminal_columns() == width
    if width is not None:
        assert tables.console().width == width
        assert tables.console(stderr=True).width == width


@pytest.mark.parametrize("flag", ["--effect-size", "--power", "--alpha"])
@pytest.mark.parametrize("raw", EXTREMES)
def test_plan_reps_numbers_at_their_extremes(capsys, flag, raw):
    code, out, err = cli(capsys, "plan-reps", flag, raw)
    if code == 0:
        assert "repetitions" in out
    else:
        assert code == 2
        assert_one_error(err, flag)


@pytest.mark.parametrize("raw", EXTREMES)
def test_status_watch_interval_at_its_extremes(capsys, tmp_path, raw):
    code, _, err = cli(capsys, "status", "--db", tmp_path / "none.db", "--watch", "--interval", raw)
    assert code in (1, 2)   # 2: the interval; 1: no database (only for an interval in range)
    if code == 2:
        assert_one_error(err, "--interval")
    else:
        assert 0.1 <= float(raw) <= 3600


def test_a_powercap_range_beyond_64_bits_skips_that_zone_with_its_reason(tmp_path):
    from alems.measure.sources import powercap
    from alems.measure.sources.base import Roots

    fakehw.make_powercap_tree(tmp_path / "sys", mmio_mirror=False)
    zone = tmp_path / "sys" / "class" / "powercap" / "intel-rapl:0" / "intel-rapl:0:1"
    (zone / "max_energy_range_uj").write_text(f"{2**63}\n")
    disc = powercap.discover(Roots.resolve(str(tmp_path / "sys"), "/proc", None))
    assert {c.zone for c in disc.columns} == {"intel-rapl:0", "intel-rapl:0:0"}
    reasons = dict(disc.skipped)
    assert "outside [0, 2^63)" in reasons["intel-rapl:0:1"].reason


# ----------------------------------------------------------------- options and streams

def test_an_unknown_option_before_the_command_is_a_usage_error(capsys):
    code, _, err = cli(capsys, "sample", "-q", "--no-such-flag", "5")
    assert code == 2
    assert_one_error(err, "--no-such-flag")


@pytest.mark.parametrize("args", [["doctor"], ["plan-reps"], ["query", "--db", "{db}", "SELECT 1"]])
def test_a_full_stdout_is_one_error_line(tmp_path, args):
    db = tmp_path / "e.db"
    sqlite3.connect(db).close()
    with open("/dev/full", "w") as full:
        proc = subprocess.run([a.replace("{db}", str(db)) for a in
                               ["python3", "-m", "alems", *args]], cwd=tmp_path,
                              env=env_for(tmp_path), stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    assert proc.returncode == 1
    one_error_line(proc, "standard output")


def test_a_closed_stdout_is_no_traceback(tmp_path):
    proc = subprocess.run("exec python3 -m alems plan-reps >&-", shell=True, cwd=tmp_path,
                          env=env_for(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_a_folder_name_that_is_not_utf8_works_for_every_command(tmp_path):
    odd = tmp_path / "runs-\udcff-\udc80"        # bytes 0xff and 0x80 in the folder's name
    odd.mkdir()
    db = odd / "e.db"
    for args in (batch_args(db, reps=1), ["summary", "--db", db, "--group-id", "latest"],
                 ["query", "--db", db, "SELECT COUNT(*) AS n FROM runs"],
                 ["export", "--db", db, "--group-id", "latest", "--output", odd / "x.parquet",
                  "--samples"],
                 ["sample", "-q", "-o", odd / "s.parquet", "--", "true"]):
        proc = run_alems(tmp_path, *args, errors="surrogateescape")   # it prints the path
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stderr)
    assert (odd / "s.parquet").is_file() and (odd / "x.parquet").exists()


# --------------------------------------------------------------------------- dashboard

@pytest.fixture(scope="module")
def dash_db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dash")
    proc = run_alems(folder, *batch_args(folder / "e.db", reps=1))
    assert proc.returncode == 0, proc.stderr
    return folder / "e.db"


def _client(db):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app

    return TestClient(create_app(db), raise_server_exceptions=False,
                      base_url="http://127.0.0.1")  # a loopback Host: answered without a token


def _copy(db, tmp_path):
    target = tmp_path / "e.db"
    shutil.copy(db, target)
    if (db.parent / "samples").is_dir():
        shutil.copytree(db.parent / "samples", tmp_path / "samples")
    return target


@pytest.mark.parametrize("url", ["/run/99999999999999999999999", "/run/9223372036854775808",
                                 "/api/run/99999999999999999999999/power?t0=0&t1=1"])
def test_run_ids_beyond_sqlite_integers_are_not_found(dash_db, capfd, url):
    resp = _client(dash_db).get(url)
    assert resp.status_code == 404
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("window", ["t0=nan&t1=1", "t0=0&t1=inf", "t0=-inf&t1=0", "t0=2&t1=1",
                                    "t0=x&t1=1", "t0=1"])
def test_zoom_windows_that_are_not_finite_are_bad_requests(dash_db, capfd, window):
    resp = _client(dash_db).get(f"/api/run/1/power?{window}")
    assert resp.status_code == 400 and "t0" in resp.json()["error"]
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("column,value", [("duration_ns", "x<b>"), ("dynamic_energy_uj", "12 J"),
                                          ("run_number", 1.5), ("host", b"\x00\xff")])
def test_a_value_of_the_wrong_type_is_a_clear_page(dash_db, tmp_path, capfd, column, value):
    db = _copy(dash_db, tmp_path)
    conn = sqlite3.connect(db)
    try:
        conn.execute(f"UPDATE runs SET {column} = ? WHERE run_id = 1", (value,))
    except sqlite3.IntegrityError:
        pytest.skip(f"the schema's CHECK refuses {value!r} in {column} already")
    conn.commit()
    conn.close()
    client = _client(db)
    for url in ("/", "/run/1", "/api/live"):
        resp = client.get(url)
        assert resp.status_code == 503, url
        assert f"runs.{column} of row 1" in resp.text
    assert "Traceback" not in capfd.readouterr().err


def test_an_older_schema_is_named_not_a_500(dash_db, tmp_path, capfd):
    db = _copy(dash_db, tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_info SET value = '2' WHERE key = 'version'")
    conn.commit()
    conn.close()
    resp = _client(db).get("/")
    assert resp.status_code == 503 and "schema version 2" in resp.text
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("target", ["../../../etc/hostname", "/etc/hostname", "e.db",
                                    "samples/../e.db"])
def test_a_samples_path_outside_the_samples_folder_is_never_read(dash_db, tmp_path, capsys,
                                                                 target):
    db = _copy(dash_db, tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET samples_path = ? WHERE run_id = 1", (target,))
    conn.commit()
    conn.close()
    resp = _client(db).get("/run/1")
    assert resp.status_code == 404 and "outside the samples folder" in resp.text
    code, _, err = cli(capsys, "export", "--db", db, "--group-id", "latest", "--output",
                       tmp_path / "out.parquet", "--samples")
    assert code == 1
    assert_one_error(err, "outside the samples folder")
    assert not (tmp_path / "out.parquet").exists()


def test_garbage_in_every_proc_file_is_no_traceback(tmp_path):
    """Every file of a fake /proc (stat, loadavg, cpuinfo, perf_event_paranoid, …) holds
    garbage: the batch still runs (quiet and counter figures NULL with reasons)."""
    proc = tmp_path / "proc"
    fakehw.make_proc(proc)
    for name in ("loadavg", "interrupts", "uptime", "meminfo"):
        (proc / name).write_text("")
    for path in [p for p in proc.rglob("*") if p.is_file()]:
        path.write_bytes(b"garbage \xff -1 nan 99999999999999999999999999\n\n x:y:z\n")
    env = env_for(tmp_path)
    env["ALEMS_PROC_ROOT"] = str(proc)
    result = subprocess.run(["python3", "-m", "alems", *batch_args(tmp_path / "e.db", reps=1)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), result.stderr
    if result.returncode == 1:
        one_error_line(result)


def _numeric_flags(command: str) -> list[str]:
    from alems.cli._common import build_command

    import typing

    def numeric(annotation) -> bool:
        kinds = typing.get_args(annotation) or (annotation,)
        return any(k in (int, float) for k in kinds)

    cmd = build_command(app).commands[command]
    return sorted(p.opts[0] for p in cmd.params
                  if hasattr(p, "type_descriptor") and numeric(p.type_descriptor.annotation))


@pytest.mark.parametrize("flag", _numeric_flags("batch"))
@pytest.mark.parametrize("raw", EXTREMES)
def test_every_numeric_batch_flag_at_its_extremes_is_checked_before_any_work(capsys, tmp_path,
                                                                             flag, raw):
    # --shard without --group-id is refused right after the numbers are checked: an
    # in-range value ends there (exit 2, naming --shard), so no batch ever starts.
    code, _, err = cli(capsys, "batch", "--tasks", "gsm8k_basic", "--providers", "scripted",
                       "--db", tmp_path / "e.db", "--shard", "1/2", flag, raw)
    assert code == 2, err
    assert_one_error(err)
    assert flag in err or "--shard" in err, err
    assert not (tmp_path / "e.db").exists()
    from alems.experiment.plan import NUMBER_RANGES

    if flag in NUMBER_RANGES:
        _, low, high = NUMBER_RANGES[flag]
        if not low <= float(raw) <= high:      # nan and ±inf compare False: out of range too
            assert flag in err, err
