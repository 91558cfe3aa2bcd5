"""`alems sample` end to end: the real CLI in a subprocess, the real C sampler, fake roots.

Each test points the sampler at fake sysfs/proc/MSR roots (tests/fakehw.py or an empty
folder), so nothing depends on this machine's hardware.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import fakehw
from conftest import unprivileged_prefix
from inproc import alems_inproc

REPO = Path(__file__).resolve().parents[1]
SUMMARY_KEYS = {
    "duration_s", "samples", "requested_hz", "achieved_hz", "late_samples",
    "dropped_samples", "energy_source", "energy_j", "avg_power_w", "counters",
}
ENERGY_DOMAINS = ("pkg", "core", "uncore", "dram", "psys")


def alems_env(sysfs: Path, proc: str = "/proc", msr: str | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["ALEMS_SYSFS_ROOT"] = str(sysfs)
    env["ALEMS_PROC_ROOT"] = str(proc)
    env["ALEMS_MSR_PATH"] = msr or str(sysfs / "no-msr" / "{cpu}")
    env.pop("ALEMS_ESTIMATE_W_PER_CORE", None)
    return env


def alems_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "from alems.cli import main; main()", *args]


def run_alems(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(alems_argv(*args), env=env, capture_output=True, text=True,
                          timeout=timeout)


def refused(env: dict, *args: str) -> subprocess.CompletedProcess:
    """`alems ARGS` in-process (run_app, as `alems` runs it): for a command line that is
    refused before anything runs."""
    return alems_inproc(*args, env=env)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def assert_one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, f"expected one line, got: {proc.stderr!r}"
    assert lines[0].startswith("alems: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def empty_roots(tmp_path) -> dict:
    """No energy hardware at all: the sampler must fall back to the labelled estimate."""
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    return alems_env(sysfs)


# ---------------------------------------------------------------- exit codes


def test_exit_code_of_the_command_propagates(empty_roots, tmp_path):
    proc = run_alems(empty_roots, "sample", "-q", "--", "sh", "-c", "exit 3")
    assert proc.returncode == 3, proc.stderr


@pytest.mark.signals
def test_command_killed_by_a_signal_gives_128_plus_signal(empty_roots):
    proc = run_alems(empty_roots, "sample", "-q", "--", "sh", "-c", "kill -TERM $$")
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr


def test_options_after_double_dash_go_to_the_command_and_stdout_stays_clean(empty_roots):
    proc = run_alems(empty_roots, "sample", "--", "sh", "-c", 'echo "$@"', "sh", "--hz", "0",
                     "-o", "x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "--hz 0 -o x\n"  # the summary table went to stderr
    assert "energy_source" in proc.stderr


# ---------------------------------------------------------------- bad input: one clear line


def test_nonexistent_command_exits_127_with_one_line(empty_roots):
    proc = run_alems(empty_roots, "sample", "--", "no-such-command-alems-test")
    assert proc.returncode == 127
    assert_one_error_line(proc, "command not found", "no-such-command-alems-test")


@pytest.mark.parametrize("hz", ["0", "-5", "1e9"])
def test_bad_rate_exits_2_with_one_line(empty_roots, hz):
    proc = refused(empty_roots, "sample", "--hz", hz, "--", "true")
    assert proc.returncode == 2
    assert_one_error_line(proc, "--hz")


def test_unknown_source_exits_2_with_one_line(empty_roots):
    proc = refused(empty_roots, "sample", "--sources", "powercap,bogus", "--", "true")
    assert proc.returncode == 2
    assert_one_error_line(proc, "bogus", "powercap, perf-power, msr")


def test_unwritable_output_fails_before_the_command_runs(empty_roots, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    marker = tmp_path / "ran"
    proc = run_alems(empty_roots, "sample", "-o", str(not_a_dir / "out.parquet"), "--",
                     "touch", str(marker))
    assert proc.returncode != 0
    assert_one_error_line(proc, "--output", "not a directory")
    assert not marker.exists(), "the command ran although the output could not be written"


def test_unwritable_summary_json_fails_before_the_command_runs(empty_roots, tmp_path):
    marker = tmp_path / "ran"
    proc = refused(empty_roots, "sample", "--summary-json", str(tmp_path / "nope" / "s.json"),
                   "--", "touch", str(marker))
    assert proc.returncode != 0
    assert_one_error_line(proc, "--summary-json", "does not exist")
    assert not marker.exists()


def test_output_that_is_a_directory_is_refused(empty_roots, tmp_path):
    proc = refused(empty_roots, "sample", "-o", str(tmp_path), "--", "true")
    assert proc.returncode != 0
    assert_one_error_line(proc, "is a directory")


def test_requested_powercap_missing_says_why_and_how_to_fix(empty_roots, tmp_path):
    marker = tmp_path / "ran"
    proc = refused(empty_roots, "sample", "--sources", "powercap", "--",
                   "touch", str(marker))
    assert proc.returncode != 0
    line = assert_one_error_line(proc, "powercap")
    assert "fix" in line.lower()
    assert not marker.exists()


@pytest.fixture
def fake_env(fake_roots) -> dict:
    env = alems_env(Path(fake_roots["sysfs_root"]), fake_roots["proc_root"],
                    fake_roots["msr_path"])
    return env


def test_unreadable_counter_gives_one_line_and_the_command_never_runs(fake_env, fake_roots,
                                                                      tmp_path):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    for t in tree.targets:  # root reads any file; a directory in its place fails for all
        Path(t.path).unlink()
        Path(t.path).mkdir()
    marker = tmp_path / "ran"
    proc = run_alems(fake_env, "sample", "--sources", "powercap", "--", "touch", str(marker))
    assert proc.returncode == 1
    assert_one_error_line(proc, "source 'powercap' is not readable here", "fix:")
    assert not marker.exists()


def test_root_only_counters_name_the_reason_and_the_fix(fake_env, fake_roots, tmp_path):
    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("cannot drop the right to read any file here (no setpriv)")
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    for t in tree.targets:
        os.chmod(t.path, 0)  # as energy_uj is on a patched kernel, for us too
    marker = tmp_path / "ran"
    proc = subprocess.run(
        [*prefix, *alems_argv("sample", "--sources", "powercap", "--", "touch", str(marker))],
        env=fake_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert_one_error_line(proc, "PLATYPUS", "fix:", "chmod")
    assert not marker.exists()


def test_parquet_and_summary_from_a_fake_rapl_tree(fake_env, fake_roots, tmp_path):
    """Real C sampler on a fake powercap tree driven by a writer with a known profile:
    the file has the required columns and metadata, and the energy matches the truth."""
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=True)
    out = tmp_path / "run.parquet"
    summary_path = tmp_path / "s.json"
    with fakehw.EnergyWriter(tree.targets) as writer:
        proc = run_alems(fake_env, "sample", "--hz", "1000", "-o", str(out),
                         "--summary-json", str(summary_path), "--", "sleep", "1")
        assert proc.returncode == 0, proc.stderr
        table = pq.read_table(out)
        t_ns = table.column("t_ns").to_pylist()
        truth_pkg_j = writer.energy_j("pkg", t_ns[0], t_ns[-1])
    schema = table.schema
    assert schema.field("t_ns").type == "int64"
    for domain in ("pkg", "core", "dram"):
        assert schema.field(f"{domain}_energy_uj").type == "double"
    assert "uncore_energy_uj" not in schema.names  # not in this tree: no invented column
    assert all(b > a for a, b in zip(t_ns, t_ns[1:]))
    meta = {k.decode(): v.decode() for k, v in pq.read_metadata(out).metadata.items()}
    for key in ("sources", "rate_hz", "host", "kernel", "units", "roots"):
        assert meta.get(key), key
    assert json.loads(meta["roots"])["sysfs_root"] == fake_roots["sysfs_root"]
    assert "powercap" in json.loads(meta["sources"])
    assert float(meta["rate_hz"]) == 1000.0

    summary = json.loads(summary_path.read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["energy_source"] == "powercap"
    assert summary["samples"] == table.num_rows
    assert summary["requested_hz"] == 1000
    assert summary["dropped_samples"] == 0
    assert summary["achieved_hz"] > 900
    assert summary["exit_code"] == 0
    assert summary["command"] == ["sleep", "1"]
    assert set(summary["energy_j"]) == {"pkg", "core", "dram"}
    # the mmio mirror is not counted twice: package energy matches the writer's truth
    assert summary["energy_j"]["pkg"] == pytest.approx(truth_pkg_j, rel=0.02)
    assert summary["avg_power_w"]["pkg"] == pytest.approx(
        summary["energy_j"]["pkg"] / summary["duration_s"], rel=1e-6)
    assert "task_clock_ns" in summary["counters"] or "perf" not in json.loads(meta["sources"])
    assert "powercap" in proc.stderr and "not a measurement" not in proc.stderr


def test_energy_counters_that_never_advance_are_flagged(fake_env, fake_roots, tmp_path):
    """A counter that is readable but frozen (as a virtual PMU may be) gives 0 J: when it
    is forced with --sources anyway, every run says so."""
    fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)  # no writer
    summary_path = tmp_path / "s.json"
    proc = run_alems(fake_env, "sample", "-q", "--sources", "powercap",
                     "--summary-json", str(summary_path), "--", "sleep", "0.3")
    assert proc.returncode == 0
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("alems: warning: "), proc.stderr
    assert "did not advance" in lines[0]
    summary = json.loads(summary_path.read_text())
    assert summary["energy_source"] == "powercap"
    assert summary["energy_j"]["pkg"] == 0
    assert len(summary["warnings"]) == 1


def test_perf_counters_follow_the_command_not_alems(empty_roots, tmp_path):
    summary_path = tmp_path / "s.json"
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"
    proc = run_alems(empty_roots, "sample", "-q", "--summary-json", str(summary_path), "--",
                     sys.executable, "-c", busy)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(summary_path.read_text())
    if "task_clock_ns" not in summary["counters"]:
        pytest.skip("software perf counters are not available here")
    task_s = summary["counters"]["task_clock_ns"] / 1e9
    assert 0.4 <= task_s < 0.4 + 1.0  # the command's CPU time, start-up included
    # the estimate comes from the command's CPU time, at 10 W/core by default
    assert summary["energy_j"]["pkg"] == pytest.approx(task_s * 10.0, rel=0.05)


def test_a_frozen_counter_is_not_chosen_automatically(fake_env, fake_roots, tmp_path):
    fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)  # no writer
    summary_path = tmp_path / "s.json"
    proc = run_alems(fake_env, "sample", "--summary-json", str(summary_path), "--", "true")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(summary_path.read_text())["energy_source"] == "estimate"
    assert "not a measurement" in proc.stderr


# ---------------------------------------------------------------- estimate is labelled


def test_estimate_is_labelled_not_a_measurement(empty_roots, tmp_path):
    summary_path = tmp_path / "s.json"
    proc = run_alems(empty_roots, "sample", "--summary-json", str(summary_path), "--",
                     sys.executable, "-c", "sum(range(3_000_000))")
    assert proc.returncode == 0, proc.stderr
    assert "not a measurement" in proc.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["energy_source"] == "estimate"
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["energy_j"]["pkg"] > 0


def test_quiet_prints_nothing_on_success(empty_roots):
    proc = run_alems(empty_roots, "sample", "--quiet", "--", "true")
    assert proc.returncode == 0
    assert proc.stderr == ""


# ---------------------------------------------------------------- Ctrl-C keeps the samples


def _wait_for_child(parent_pid: int, name: str, timeout: float = 20) -> None:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = psutil.Process(parent_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for child in children:
            try:
                if child.cmdline()[:1] == [name] or child.name() == name:
                    return
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise AssertionError(f"{name} never started under alems (pid {parent_pid})")


@pytest.mark.signals
def test_ctrl_c_keeps_samples_so_far_in_a_readable_parquet(empty_roots, tmp_path):
    out = tmp_path / "run.parquet"
    summary_path = tmp_path / "s.json"
    proc = subprocess.Popen(
        alems_argv("sample", "--hz", "500", "-o", str(out), "--summary-json",
                   str(summary_path), "--", "sleep", "30"),
        env=empty_roots, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_child(proc.pid, "sleep")
        time.sleep(0.6)
        t_sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - t_sent < 15, "sleep 30 was not stopped by the forwarded SIGINT"
    assert proc.returncode == 128 + signal.SIGINT, stderr
    table = pq.read_table(out)
    assert table.num_rows > 0
    t_ns = table.column("t_ns").to_pylist()
    assert all(b > a for a, b in zip(t_ns, t_ns[1:]))
    summary = json.loads(summary_path.read_text())
    assert summary["samples"] == table.num_rows
    assert summary["exit_code"] == 130
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left"


@pytest.mark.signals
def test_sigterm_is_forwarded_to_the_command(empty_roots, tmp_path):
    out = tmp_path / "run.parquet"
    proc = subprocess.Popen(
        alems_argv("sample", "-q", "-o", str(out), "--", "sleep", "30"),
        env=empty_roots, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_child(proc.pid, "sleep")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert pq.read_table(out).num_rows > 0


@pytest.mark.signals
def test_ctrl_c_at_a_terminal_reaches_both_and_keeps_the_samples(empty_roots, tmp_path):
    """A terminal's Ctrl-C signals the whole foreground group: the command gets SIGINT
    from the terminal and from alems; the outcome must be the same."""
    out = tmp_path / "run.parquet"
    proc = subprocess.Popen(
        alems_argv("sample", "-q", "-o", str(out), "--", "sleep", "30"),
        env=empty_roots, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        _wait_for_child(proc.pid, "sleep")
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr
    assert pq.read_table(out).num_rows > 0
