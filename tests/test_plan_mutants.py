"""Exact rules of batch planning that mutation testing found unguarded (docs/TESTING.md):
number bounds (inclusive, one line each), counterbalancing, the resume rule, pairs and
shards."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from alems.errors import AlemsError, UsageError
from alems.experiment import plan
from alems.experiment.plan import BatchConfig, RunKey


def _cfg(**kw) -> BatchConfig:
    return BatchConfig(**dict(dict(tasks=["t1"], providers=["p"]), **kw))


def test_split_list():
    assert plan.split_list(" a, b ,,c ", "tasks") == ["a", "b", "c"]
    with pytest.raises(UsageError) as ei:
        plan.split_list(" , ", "tasks")
    assert str(ei.value) == "--tasks is empty; give a comma-separated list"
    with pytest.raises(UsageError) as ei:
        plan.split_list(None, "providers")
    assert str(ei.value) == "--providers is empty; give a comma-separated list"
    with pytest.raises(UsageError) as ei:
        plan.split_list("a,b,a", "tasks")
    assert str(ei.value) == "--tasks names 'a' twice"


@pytest.mark.parametrize("flag", list(plan.NUMBER_RANGES))
def test_every_number_bound_is_inclusive(flag):
    attr, low, high = plan.NUMBER_RANGES[flag]
    extra = {"start_from": 1}
    for ok in (low, high):
        plan.validate_numbers(_cfg(**{attr: ok}, **extra))
    step = 1 if isinstance(low, int) and isinstance(high, int) else 1e-6 * max(1.0, high)
    for bad in (low - step, high + step):
        with pytest.raises(UsageError) as ei:
            plan.validate_numbers(_cfg(**{attr: bad}, **extra))
        shown = f"{bad:g}" if isinstance(bad, float) else str(bad)
        assert str(ei.value) == f"{flag} must be between {low:g} and {high:g}, got {shown}"


def test_non_finite_numbers_are_refused():
    with pytest.raises(UsageError) as ei:
        plan.validate_numbers(_cfg(temperature=float("nan")))
    assert str(ei.value) == "--temperature must be a finite number between 0 and 2, got nan"
    with pytest.raises(UsageError, match="--cool-down must be a finite number"):
        plan.validate_numbers(_cfg(cool_down_s=float("inf")))


def test_dependent_numbers():
    plan.validate_numbers(_cfg(repetitions=3, start_from=3))
    with pytest.raises(UsageError) as ei:
        plan.validate_numbers(_cfg(repetitions=3, start_from=4))
    assert str(ei.value) == "--start-from must be between 1 and --repetitions (3), got 4"
    with pytest.raises(UsageError, match="--start-from"):
        plan.validate_numbers(_cfg(start_from=0))
    plan.validate_numbers(_cfg(threads=plan.max_threads()))
    with pytest.raises(UsageError, match=f"--threads must be between 1 and {plan.max_threads()}"):
        plan.validate_numbers(_cfg(threads=plan.max_threads() + 1))
    with pytest.raises(UsageError, match="--threads"):
        plan.validate_numbers(_cfg(threads=0))
    plan.validate_numbers(_cfg(baseline_every_s=6.0))        # 0.1 min: the lower bound
    plan.validate_numbers(_cfg(baseline_every_s=30 * 1440 * 60.0))
    with pytest.raises(UsageError) as ei:
        plan.validate_numbers(_cfg(baseline_every_s=5.9))
    assert str(ei.value) == "--baseline-every must be between 0.1 and 43200, got 0.0983333"
    with pytest.raises(UsageError) as ei:
        plan.validate_numbers(_cfg(shard=(1, 2)))
    assert str(ei.value).startswith("--shard needs --group-id G")
    plan.validate_numbers(_cfg(shard=(1, 2), group_id="g.1_x-2"))
    with pytest.raises(AlemsError, match="group id 'a/b' may only hold"):
        plan.validate_numbers(_cfg(group_id="a/b"))
    with pytest.raises(UsageError) as ei:
        plan.validate_numbers(_cfg(workflows=["linear", "chain"]))
    assert str(ei.value) == ("unknown workflow 'chain'; choose from: linear, agentic, react, "
                             "or name your own agent as module:callable (docs/AGENTS.md)")


def test_planned_runs_limit_is_inclusive():
    # 10 tasks x 2 providers x 2 workflows x 5000 repetitions = 200 000: the limit itself
    tasks = [f"t{i}" for i in range(10)]
    plan.validate_numbers(_cfg(tasks=tasks, providers=["a", "b"], repetitions=5000))
    with pytest.raises(UsageError) as ei:
        plan.validate_numbers(_cfg(tasks=tasks + ["t10"], providers=["a", "b"],
                                   repetitions=5000))
    assert str(ei.value) == ("the batch plans 220,000 runs, more than 200,000; split it "
                             "into several batches")


def test_max_threads_is_the_affinity():
    import os

    assert plan.max_threads() == len(os.sched_getaffinity(0))


def test_arm_orders_are_a_balanced_latin_square():
    rng = random.Random(5)
    arms = ["linear", "agentic", "react"]
    orders = plan.arm_orders(arms, 8, rng)
    rotations = [("linear", "agentic", "react"), ("agentic", "react", "linear"),
                 ("react", "linear", "agentic")]
    counts = Counter(orders)
    assert set(counts) <= set(rotations) and len(orders) == 8
    assert sorted(counts.values()) == [2, 3, 3]         # 8 = 2 x 3 + 2 distinct extras
    assert plan.arm_orders(arms, 0, rng) == []
    assert Counter(plan.arm_orders(["a", "b"], 6, rng)) == {("a", "b"): 3, ("b", "a"): 3}


def test_plan_order_is_exact():
    keys = plan.plan_order(["t1", "t2"], ["p"], ["agentic", "linear"], 3, seed=9)
    assert [k.order_index for k in keys] == list(range(12))
    assert [k.pair_order for k in keys] == [0, 1] * 6
    for a, b in zip(keys[::2], keys[1::2], strict=True):
        assert (a.task, a.provider, a.rep) == (b.task, b.provider, b.rep)
        assert {a.workflow, b.workflow} == {"linear", "agentic"}
    assert sorted((k.task, k.workflow, k.rep) for k in keys) == sorted(
        (t, w, r) for t in ("t1", "t2") for w in ("linear", "agentic") for r in (1, 2, 3))
    assert keys == plan.plan_order(["t1", "t2"], ["p"], ["linear", "agentic"], 3, seed=9)
    assert keys != plan.plan_order(["t1", "t2"], ["p"], ["linear", "agentic"], 3, seed=10)
    # the stratum's first arms: 3 pairs -> linear first once or twice, never 0 or 3 times
    for t in ("t1", "t2"):
        firsts = [k.workflow for k in keys if k.task == t and k.pair_order == 0]
        assert sorted(Counter(firsts).values()) == [1, 2]
    single = plan.plan_order(["t"], ["p"], ["linear"], 2, seed=1)
    assert [k.pair_order for k in single] == [None, None]
    assert [k.order_index for k in single] == [0, 1]
    assert sorted(k.rep for k in single) == [1, 2]
    custom = plan.plan_order(["t"], ["p"], ["mine", "linear"], 1, seed=1)
    assert {k.workflow for k in custom} == {"mine", "linear"}
    assert RunKey("t", "p", "linear", 2, 7, 1, 3).as_list() == ["t", "p", "linear", 2]


def _session(cfg, group_id, **over):
    settings = dict(cfg.settings(), **over)
    return {"group_id": group_id, "settings_json": json.dumps(settings)}


def test_choose_session_resume_rule():
    cfg = _cfg(repetitions=2)
    assert plan.choose_session(_cfg(group_id="G"), None, []) == ("G", False)
    named = _cfg(group_id="G", repetitions=9)            # repetitions may grow
    assert plan.choose_session(named, _session(cfg, "G"), []) == ("G", True)
    with pytest.raises(AlemsError) as ei:
        plan.choose_session(_cfg(group_id="G", seed=5), _session(cfg, "G"), [])
    assert str(ei.value) == ("group 'G' was started with different settings (seed=42); "
                             "repeat them to resume it, or pass a new --group-id")
    other = _session(cfg, "old-other", seed=1)
    fewer = _session(cfg, "old-fewer", repetitions=1)
    same = _session(cfg, "old-same")
    assert plan.choose_session(cfg, None, [other, fewer, same, _session(cfg, "older")]) == (
        "old-same", True)
    gid, resumed = plan.choose_session(cfg, None, [other, fewer])
    assert not resumed and re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", gid)
    gid, resumed = plan.choose_session(_cfg(repetitions=2, new_session=True), None, [same])
    assert not resumed and gid != "old-same"


def test_a_cloud_session_never_resumes_on_another_api():
    """`cloud` is Anthropic or Groq by the keys set (providers.resolve_cloud); a session
    stored before that choice existed (no cloud_backend) ran on Anthropic."""
    on = {b: _cfg(providers=["cloud"], cloud_backend=b) for b in ("anthropic", "groq")}
    legacy = _session(on["anthropic"], "legacy")
    legacy_settings = json.loads(legacy["settings_json"])
    del legacy_settings["cloud_backend"]
    legacy["settings_json"] = json.dumps(legacy_settings)
    assert plan.choose_session(on["anthropic"], None, [legacy]) == ("legacy", True)
    assert plan.choose_session(on["groq"], None, [legacy])[1] is False
    with pytest.raises(AlemsError, match="cloud_backend='anthropic'"):
        plan.choose_session(_cfg(providers=["cloud"], cloud_backend="groq", group_id="legacy"),
                            legacy, [])
    groq = _session(on["groq"], "on-groq")
    assert plan.choose_session(on["anthropic"], None, [groq])[1] is False
    local_only = _session(_cfg(), "local")   # no `cloud`: nothing to choose
    stored = json.loads(local_only["settings_json"])
    del stored["cloud_backend"]
    local_only["settings_json"] = json.dumps(stored)
    assert plan.choose_session(_cfg(), None, [local_only]) == ("local", True)


def test_design_and_settings():
    cfg = _cfg(shard=(2, 3), repetitions=4)
    design = cfg.design()
    assert "repetitions" not in design and design["workflows"] == ["linear", "agentic"]
    assert design["seed"] == 42 and design["max_tokens"] == 256 and design["n_ctx"] == 2048
    s = cfg.settings()
    assert s["shard"] == [2, 3] and s["repetitions"] == 4 and s["warm_up"] is True
    assert "shard" not in _cfg().settings()
    pids = [41, 42]                                  # a server the counters also cover
    withpids = _cfg(server_pids=pids).settings()
    pids.append(43)                                  # a copy is stored, not the caller's list
    assert withpids["server_pids"] == [41, 42]
    assert "server_pids" not in _cfg().settings()
    assert _cfg(repetitions=4, start_from=3).settings()["start_from"] == 3
    assert "start_from" not in _cfg(repetitions=4, start_from=1).settings()
    assert plan.has_tax_pair(["agentic", "linear", "react"])
    assert not plan.has_tax_pair(["linear", "react"])


def test_planned_runs_runs_to_do_pairs_and_shards():
    keys = plan.plan_order(["t"], ["p"], ["linear", "agentic"], 3, seed=2)
    assert {k.rep for k in plan.planned_runs(keys, 2)} == {2, 3}
    assert len(plan.planned_runs(keys, 1)) == 6
    done = {(k.task, k.provider, k.workflow, k.rep): 1 for k in keys[:3]}
    assert plan.runs_to_do(keys, 1, done) == keys[3:]
    assert [k.pair_index for k in keys] == [0, 0, 1, 1, 2, 2]
    three = plan.plan_order(["t"], ["p"], ["linear", "agentic", "react"], 2, seed=1)
    assert [k.pair_index for k in three] == [0, 0, 0, 1, 1, 1]      # a pair of three arms
    assert [[k.rep for k in u] for u in plan.pair_units(three)] == [[three[0].rep] * 3,
                                                                     [three[3].rep] * 3]
    units = plan.pair_units(reversed(keys))
    assert units == [keys[0:2], keys[2:4], keys[4:6]]
    assert plan.shard_runs(keys, None) == keys
    assert plan.shard_runs(keys, (1, 2)) == keys[0:2] + keys[4:6]
    assert plan.shard_runs(keys, (2, 2)) == keys[2:4]
    assert plan.parse_shard(None) is None
    assert plan.parse_shard("1/1") == (1, 1) and plan.parse_shard("3/8") == (3, 8)
    with pytest.raises(UsageError) as ei:
        plan.parse_shard("9/8")
    assert str(ei.value) == "--shard must be K/N with 1 <= K <= N (e.g. 2/8), got '9/8'"


def test_design_and_settings_are_exactly_what_a_session_stores():
    cfg = _cfg(tasks=["a", "b"], providers=["p"], workflows=["linear", "react"], seed=3,
               temperature=0.5, max_tokens=9, model="m", cloud_model="c", hz=50.0, threads=2,
               n_ctx=128, sources=["rapl"], gpus=[0], gpu_layers=4, max_steps=6,
               max_tool_calls=7, repetitions=8, cool_down_s=1.5, country="DE",
               clip_negative=True, baseline_duration_s=2.5, baseline_reps=4,
               baseline_max_age_s=60.0, baseline_every_s=120.0, require_quiet=True,
               quiet_timeout_s=9.0, warm_up=False, shard=(1, 2), base_url="http://h/v1",
               cloud_backend="groq")
    design = {"tasks": ["a", "b"], "providers": ["p"], "workflows": ["linear", "react"],
              "seed": 3, "temperature": 0.5, "max_tokens": 9, "model": "m",
              "cloud_model": "c", "base_url": "http://h/v1", "cloud_backend": "groq",
              "hz": 50.0, "threads": 2, "n_ctx": 128,
              "sources": ["rapl"], "gpus": [0], "gpu_layers": 4, "max_steps": 6,
              "max_tool_calls": 7}
    assert cfg.design() == design
    assert cfg.settings() == dict(design, repetitions=8, cool_down_s=1.5, country="DE",
                                  clip_negative=True, baseline_duration_s=2.5,
                                  baseline_reps=4, baseline_max_age_s=60.0,
                                  baseline_every_s=120.0, require_quiet=True,
                                  quiet_timeout_s=9.0, warm_up=False, shard=[1, 2])
    assert plan.has_tax_pair(["linear", "agentic"]) and plan.has_tax_pair(("agentic", "linear"))


def test_plan_order_is_reproducible_across_versions():
    """A stored session resumes by this order: the same seed must give the same plan."""
    keys = plan.plan_order(["t1", "t2"], ["p", "q"], ["linear", "agentic"], 2, seed=42)
    assert [(k.task, k.provider, k.workflow, k.rep) for k in keys] == [
        ("t2", "q", "agentic", 1), ("t2", "q", "linear", 1), ("t1", "p", "linear", 1),
        ("t1", "p", "agentic", 1), ("t2", "q", "linear", 2), ("t2", "q", "agentic", 2),
        ("t1", "q", "agentic", 2), ("t1", "q", "linear", 2), ("t2", "p", "linear", 1),
        ("t2", "p", "agentic", 1), ("t1", "p", "agentic", 2), ("t1", "p", "linear", 2),
        ("t1", "q", "linear", 1), ("t1", "q", "agentic", 1), ("t2", "p", "agentic", 2),
        ("t2", "p", "linear", 2)]


def test_max_threads_fallbacks(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert plan.max_threads() == 1

    def no_affinity(pid):
        raise OSError("not here")
    monkeypatch.setattr(os, "sched_getaffinity", no_affinity)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert plan.max_threads() == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert plan.max_threads() == 1


def test_resume_refusal_names_every_difference():
    stored = _session(_cfg(repetitions=2), "G")
    with pytest.raises(AlemsError) as ei:
        plan.choose_session(_cfg(group_id="G", seed=5, max_tokens=7), stored, [])
    assert str(ei.value) == ("group 'G' was started with different settings (seed=42, "
                             "max_tokens=256); repeat them to resume it, or pass a new "
                             "--group-id")
    with pytest.raises(UsageError) as ei:
        plan.validate_numbers(_cfg(shard=(1, 2)))
    assert str(ei.value) == ("--shard needs --group-id G, the same on every shard, so that "
                             "`alems merge` joins the shards into one session")


def test_custom_arms_are_workflows_and_their_timeout_and_sources_are_stored():
    sources = {"mod:agent": {"file": "/x/mod.py", "sha256": "ab", "qualname": "agent"}}
    cfg = _cfg(workflows=["linear", "mod:agent"], arm_timeout_s=12.5, arm_sources=sources)
    plan.validate_numbers(cfg)                       # `module:callable` is a workflow
    settings = cfg.settings()
    assert settings["arm_timeout_s"] == 12.5 and settings["arm_sources"] == sources
    assert not {"arm_timeout_s", "arm_sources"} & set(_cfg(arm_timeout_s=12.5).settings())


def test_base_url_must_be_http_or_https_with_a_host():
    for url in ("http://127.0.0.1:8080/v1", "https://h", "http://h:1"):
        plan.validate_numbers(_cfg(base_url=url))
    for url in ("ftp://h/v1", "http:///v1", "127.0.0.1:8080", "HTTP://h", " http://h"):
        with pytest.raises(UsageError) as ei:
            plan.validate_numbers(_cfg(base_url=url))
        assert str(ei.value) == (f"--base-url must be an http(s) URL, got {url!r}; e.g. "
                                 "http://127.0.0.1:8080/v1")


def test_a_session_stored_without_providers_or_cloud_backend_is_not_resumed():
    stored = _cfg().settings()
    del stored["providers"], stored["cloud_backend"]
    old = {"group_id": "old", "settings_json": json.dumps(stored)}
    gid, resumed = plan.choose_session(_cfg(), None, [old])
    assert not resumed and gid != "old"
