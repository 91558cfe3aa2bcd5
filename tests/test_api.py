"""The Python API (alems.api): `alems.measure` as a context manager and a decorator,
nested phases, results, save() in `alems sample`'s format, no signal handlers; and
OpenTelemetry spans as phases (alems.otel) with the real opentelemetry-sdk.

The real C sampler runs in this process against an empty fake sysfs (the labelled
estimate) or a fake powercap tree driven by a writer with a known profile (measured).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import alems
import fakehw
from alems.errors import AlemsError
from alems.store.samples import read_phases

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_rapl(tmp_path) -> dict:
    sysfs = tmp_path / "empty-sys"
    sysfs.mkdir()
    return {"sysfs_root": str(sysfs), "msr_path": str(tmp_path / "no-msr" / "{cpu}")}


def busy(n: int = 300_000) -> int:
    return sum(i * i for i in range(n))


# ---------------------------------------------------------------- the README's example

def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- api-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no api-example block"
    return m.group(1)


def test_readme_api_example_runs_as_written_and_prints_energy_per_phase(tmp_path):
    (tmp_path / "sys").mkdir()
    env = {**os.environ, "ALEMS_SYSFS_ROOT": str(tmp_path / "sys"),
           "ALEMS_MSR_PATH": str(tmp_path / "no-msr" / "{cpu}"),
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("ALEMS_ESTIMATE_W_PER_CORE", None)
    proc = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "energy estimated (source: estimate)" in out
    for name, indent in (("build", 2), ("sort", 4), ("sum", 2)):
        assert re.search(rf"^ {{{indent}}}{name} \([0-9.]+ s\)  pkg [0-9.]+ J$", out, re.M), out
    phases = read_phases(tmp_path / "demo.parquet")
    by_name = {p["name"]: p for p in phases}
    assert set(by_name) == {"build", "sort", "sum"}
    assert by_name["sort"]["parent_seq"] == by_name["build"]["seq"]
    assert all(p["energy_uj"] > 0 for p in phases)


# ---------------------------------------------------------------- phases and results

def test_nested_phases_from_the_block_and_a_thread_with_energy(no_rapl):
    with alems.measure("nest", hz=500, **no_rapl) as m:
        with m.phase("outer", step=1):
            busy()
            with m.phase("inner"):
                busy()
        t = threading.Thread(target=lambda: m.mark("from-thread") and busy())
        t.start()
        t.join()
    assert m.energy_source == "estimate" and m.energy_label == "estimated"
    by_name = {p.name: p for p in m.phases}
    assert set(by_name) == {"outer", "inner", "from-thread"}
    outer, inner = by_name["outer"], by_name["inner"]
    assert inner.parent_seq == outer.seq and outer.parent_seq is None
    assert outer.start_ns <= inner.start_ns < inner.end_ns <= outer.end_ns
    assert outer.detail == {"step": 1}
    assert 0 < inner.energy_j["pkg"] < outer.energy_j["pkg"] <= m.energy_j["pkg"]
    assert by_name["from-thread"].kind == "mark"
    assert by_name["from-thread"].end_ns == m.samples.column("t_ns")[-1].as_py()
    samples = m.samples
    assert samples.column_names[0] == "t_ns" and samples.num_rows == m.summary["samples"]


def test_results_before_the_end_and_phases_after_it_are_refused(no_rapl):
    m = alems.measure("early", **no_rapl)
    with pytest.raises(AlemsError, match="not running"):
        m.phase("x")
    with m:
        with pytest.raises(AlemsError, match="no result yet"):
            _ = m.energy_j
    with pytest.raises(AlemsError, match="not running"):
        m.mark("late")
    with pytest.raises(AlemsError, match="label"):
        alems.measure("")


def test_decorator_forms_measure_each_call(no_rapl):
    @alems.measured("deco", hz=500, **no_rapl)
    def work(n):
        with alems.measure("inner-not-used", **no_rapl):  # nesting measurements is fine
            pass
        alems.mark("half")
        return busy(n)

    @alems.measure("as-decorator", hz=500, **no_rapl)
    def twice(x):
        return 2 * x

    @alems.measured
    def plain():
        raise ValueError("boom")

    assert work(1000) == busy(1000)
    first = work.last
    work(2000)
    assert work.last is not first and first.label == "deco"
    assert [p.name for p in work.last.phases] == ["half"]
    assert twice(21) == 42 and twice.last.label == "as-decorator"
    assert twice.last.summary["requested_hz"] == 500
    with pytest.raises(ValueError, match="boom"):
        plain()
    assert plain.last.label.endswith("plain") and plain.last.result is not None


def test_no_signal_handler_is_installed_and_a_worker_thread_can_measure(no_rapl):
    """A notebook kernel owns its signals: nothing may change them (signal.signal
    would also fail outright in a thread that is not the main one)."""
    sigs = [s for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP)]
    before = {s: signal.getsignal(s) for s in sigs}
    seen: dict = {}

    def worker():
        with alems.measure("thread", hz=200, **no_rapl) as m:
            with m.phase("p"):
                busy()
            seen["during"] = {s: signal.getsignal(s) for s in sigs}
        seen["m"] = m

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["during"] == before
    with alems.measure("main thread", hz=200, **no_rapl):
        assert {s: signal.getsignal(s) for s in sigs} == before
    assert {s: signal.getsignal(s) for s in sigs} == before
    assert seen["m"].phases[0].name == "p"


# ---------------------------------------------------------------- save() = alems sample

def test_save_writes_alems_samples_file_and_summary(no_rapl, tmp_path):
    with alems.measure("saved", hz=500, **no_rapl) as m:
        with m.phase("work"):
            busy()
    m.save(tmp_path / "api.parquet", summary_json=tmp_path / "api.json")

    env = {**os.environ, "ALEMS_SYSFS_ROOT": no_rapl["sysfs_root"],
           "ALEMS_MSR_PATH": no_rapl["msr_path"],
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("ALEMS_ESTIMATE_W_PER_CORE", None)
    proc = subprocess.run(
        [sys.executable, "-c", "from alems.cli import main; main()", "sample", "-q", "--hz",
         "500", "-o", str(tmp_path / "cli.parquet"), "--summary-json",
         str(tmp_path / "cli.json"), "--", sys.executable, "-c", "pass"],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

    api_t, cli_t = pq.read_table(tmp_path / "api.parquet"), pq.read_table(tmp_path / "cli.parquet")
    assert api_t.schema.remove_metadata() == cli_t.schema.remove_metadata()
    api_meta, cli_meta = (pq.read_metadata(tmp_path / f).metadata
                          for f in ("api.parquet", "cli.parquet"))
    assert set(api_meta) == set(cli_meta)
    file_summary = json.loads(api_meta[b"summary"])
    assert file_summary["energy_source"] == "estimate" and file_summary["samples"] == api_t.num_rows
    api_json = json.loads((tmp_path / "api.json").read_text())
    cli_json = json.loads((tmp_path / "cli.json").read_text())
    assert set(api_json) == set(cli_json) | {"label"}
    assert api_json["output"] == str(tmp_path / "api.parquet") and api_json["label"] == "saved"
    [work] = read_phases(tmp_path / "api.parquet")  # the project's reader
    assert work["name"] == "work" and work["energy_uj"] == pytest.approx(
        m.phases[0].energy_j["pkg"] * 1e6)
    assert api_json["phases"][0]["energy_j"] == m.phases[0].energy_j


def test_measured_energy_per_phase_matches_the_fake_counters_exactly(fake_roots):
    """A fake powercap tree advanced by a writer with a known power profile: the
    energy of each phase is the profile's integral over it (within interpolation)."""
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    with fakehw.EnergyWriter(tree.targets) as writer:
        with alems.measure("fake", hz=1000, sources=["powercap"], **fake_roots) as m:
            for name in ("a", "b"):
                with m.phase(name):
                    busy(600_000)
    assert m.energy_source == "powercap" and m.energy_label == "measured"
    for ph in m.phases:
        truth = writer.energy_j("pkg", ph.start_ns, ph.end_ns)
        assert ph.energy_j["pkg"] == pytest.approx(truth, rel=0.03, abs=0.01), ph.name
    t = m.samples.column("t_ns").to_pylist()
    assert m.energy_j["pkg"] == pytest.approx(writer.energy_j("pkg", t[0], t[-1]), rel=0.02)


# ---------------------------------------------------------------- OpenTelemetry

def test_otel_nested_spans_from_threads_become_phases_with_attributes(no_rapl):
    from opentelemetry.sdk.trace import TracerProvider

    from alems.otel import PhaseSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(PhaseSpanProcessor())
    tracer = provider.get_tracer("test")

    def agent(i: int) -> None:
        with tracer.start_as_current_span(f"invoke_agent a{i}", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": f"a{i}"}):
            with tracer.start_as_current_span("chat m", attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}) as span:
                busy(50_000)
                span.set_attribute("gen_ai.usage.input_tokens", 10 + i)
                span.set_attribute("gen_ai.usage.output_tokens", 3)
            with tracer.start_as_current_span("execute_tool calc", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "calc"}):
                busy(20_000)

    with tracer.start_as_current_span("before the measurement"):
        pass
    straddle = tracer.start_span("starts before, ends during the measurement")
    with alems.measure("otel", hz=500, **no_rapl) as m:
        straddle.end()
        threads = [threading.Thread(target=agent, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with tracer.start_as_current_span("after the measurement"):
        pass

    phases = m.phases
    assert len(phases) == 9  # 3 agents × (step, model call, tool call); no outside span
    by_seq = {p.seq: p for p in phases}
    for i in range(3):
        [step] = [p for p in phases if p.name == f"invoke_agent a{i}"]
        assert step.kind == "agent_step" and step.detail["gen_ai.agent.name"] == f"a{i}"
        children = [p for p in phases if p.parent_seq == step.seq]
        kinds = {p.kind: p for p in children}
        assert set(kinds) == {"model_call", "tool_call"}
        call = kinds["model_call"]
        assert call.detail["gen_ai.request.model"] == "m"
        assert call.detail["gen_ai.usage.input_tokens"] == 10 + i
        assert call.detail["parent_span_id"] == step.detail["span_id"]
        assert kinds["tool_call"].detail["gen_ai.tool.name"] == "calc"
        for child in children:
            assert step.start_ns <= child.start_ns < child.end_ns <= step.end_ns
            assert by_seq[child.parent_seq] is step
        assert step.energy_j["pkg"] > 0


def test_import_alems_stays_light_and_alems_measure_is_still_the_package():
    """`alems.mark` runs in every measured child: importing alems must not load numpy,
    pyarrow or the C extension; and the callable `alems.measure` is the subpackage."""
    code = ("import sys, alems\n"
            "heavy = [m for m in ('numpy', 'pyarrow', 'alems.measure._native') if m in sys.modules]\n"
            "print(heavy, callable(alems.measure), alems.measure.__name__)\n"
            "from alems.measure import Sampler\n"
            "print(alems.measure.Sampler is Sampler)\n")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[] True alems.measure", "True"]


def test_a_forked_child_does_not_mark_into_its_copy_of_the_measurement(no_rapl, monkeypatch):
    from alems.config import MARK_ENV

    monkeypatch.delenv(MARK_ENV, raising=False)
    with alems.measure("fork", hz=200, **no_rapl) as m:
        pid = os.fork()
        if pid == 0:  # the child: not measured, so the mark is a no-op (None)
            os._exit(0 if alems.mark("in-child") is None else 1)
        _, status = os.waitpid(pid, 0)
        assert alems.mark("in-parent") is True
    assert os.waitstatus_to_exitcode(status) == 0
    assert [p.name for p in m.phases] == ["in-parent"]
