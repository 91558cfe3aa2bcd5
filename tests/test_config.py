"""Environment variables: read when used, never at import, and a bad value is one line
naming the variable, the value and a valid example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alems import config
from alems.errors import UsageError

REPO = Path(__file__).resolve().parents[1]

BAD = [
    ("ALEMS_ESTIMATE_W_PER_CORE", "abc", config.estimate_w_per_core),
    ("ALEMS_ESTIMATE_W_PER_CORE", "-3", config.estimate_w_per_core),
    ("ALEMS_ESTIMATE_W_PER_CORE", "nan", config.estimate_w_per_core),
    ("ALEMS_ESTIMATE_W_PER_CORE", "inf", config.estimate_w_per_core),
    ("ALEMS_RT_PRIORITY", "high", config.rt_priority),
    ("ALEMS_RT_PRIORITY", "-1", config.rt_priority),
    ("ALEMS_MSR_STRIDE", "0", config.msr_stride),
    ("ALEMS_MSR_STRIDE", "x", config.msr_stride),
    ("ALEMS_CPU_VENDOR", "via", config.cpu_vendor),
    ("ALEMS_COUNTRY", "U S!", config.default_country),
    ("ALEMS_MSR_PATH", "/dev/cpu/msr", config.msr_path_template),
    ("ANTHROPIC_BASE_URL", "localhost:8080", config.anthropic_base_url),
    ("ALEMS_DB", "   ", config.default_db_path),
]


@pytest.mark.parametrize("name,value,getter", BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_a_bad_value_names_the_variable_the_value_and_an_example(monkeypatch, name, value,
                                                                    getter):
    monkeypatch.setenv(name, value)
    with pytest.raises(UsageError) as ei:
        getter()
    msg = str(ei.value)
    assert "\n" not in msg and name in msg and repr(value) in msg and f"e.g. {name}=" in msg


def test_values_are_read_when_used(monkeypatch):
    for name in ("ALEMS_ESTIMATE_W_PER_CORE", "ALEMS_DB", "ALEMS_COUNTRY", "ALEMS_RT_PRIORITY",
                 "ALEMS_CPU_VENDOR", "ALEMS_MSR_STRIDE", "ALEMS_FACTORS", "ALEMS_CLOUD_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert config.estimate_w_per_core() == config.ESTIMATE_W_PER_CORE
    assert config.default_db_path() == config.DB_PATH
    assert config.default_country() == config.COUNTRY
    assert config.rt_priority() == config.RT_PRIORITY
    assert config.cpu_vendor() is None and config.msr_stride() == 1
    assert config.factors_path() is None and config.cloud_model() is None
    monkeypatch.setenv("ALEMS_ESTIMATE_W_PER_CORE", "4.5")
    monkeypatch.setenv("ALEMS_DB", "/tmp/x.db")
    monkeypatch.setenv("ALEMS_COUNTRY", "fr")
    monkeypatch.setenv("ALEMS_RT_PRIORITY", "0")
    monkeypatch.setenv("ALEMS_CPU_VENDOR", "AMD")
    assert config.estimate_w_per_core() == 4.5
    assert config.default_db_path() == Path("/tmp/x.db")
    assert config.default_country() == "fr"
    assert config.rt_priority() == 0
    assert config.cpu_vendor() == "amd"


def test_no_module_reads_the_environment_outside_config():
    hits = []
    for path in (REPO / "src" / "alems").rglob("*.py"):
        if path.name == "config.py":
            continue
        if "os.environ" in path.read_text(encoding="utf-8") or "os.getenv" in \
                path.read_text(encoding="utf-8"):
            hits.append(str(path.relative_to(REPO)))
    assert hits == []


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def test_bad_value_imports_and_helps_but_sample_says_one_line(tmp_path):
    env = _env(ALEMS_ESTIMATE_W_PER_CORE="abc", ALEMS_COUNTRY="!!", ALEMS_DB="  ",
               ALEMS_RT_PRIORITY="x")
    imp = subprocess.run([sys.executable, "-c", "import alems.cli, alems.measure, "
                          "alems.experiment.batch, alems.cli.batch_cmd"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert imp.returncode == 0, imp.stderr
    for args in (["--help"], ["sample", "--help"], ["batch", "--help"], ["query", "--help"]):
        h = subprocess.run([sys.executable, "-m", "alems", *args], env=env, capture_output=True,
                           text=True, timeout=60)
        assert h.returncode == 0 and "Traceback" not in h.stderr, (args, h.stderr)
    run = subprocess.run([sys.executable, "-m", "alems", "sample", "--", "true"],
                         env=_env(ALEMS_ESTIMATE_W_PER_CORE="abc"), capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("alems: error: "), run.stderr
    assert "ALEMS_ESTIMATE_W_PER_CORE='abc'" in lines[0] and "e.g." in lines[0]
