#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the modules that decide numbers and safety, one module at
# a time, each against only the test files that exercise it (docs/TESTING.md).
#
#   scripts/mutation.sh                 # every module below
#   scripts/mutation.sh gaps quiet      # just these
#   MUTATION_JOBS=2 scripts/mutation.sh stats
#   scripts/mutation.sh --report gaps   # only collect the score of a finished run again
#
# Each module runs in its own scratch copy of the checkout (.mutation/<module>/, git-ignored)
# with a generated [tool.mutmut] section, so modules never share mutmut's cache and the
# checkout's pyproject.toml stays as it is. The copy includes the built C extension
# (src/alems/measure/_alems_native.abi3.so: build it first). Results: one line per module in
# .mutation/scores.txt, survivors in .mutation/<module>/survivors.txt (`cd .mutation/<module>
# && mutmut show NAME` prints a survivor's diff).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MUTATION_DIR:-$REPO/.mutation}
JOBS=${MUTATION_JOBS:-1}          # the project's dev machine has 2 shared cores
NATIVE=src/alems/measure/_alems_native.abi3.so

# module | file to mutate (under src/alems) | mutant-name globs ('' = every function) | tests
# (authorizer: `alems query`'s read-only gate; dashboard_*: the access gate and loopback check;
# atomic_io: the temporary-file rule, stale temporaries and safe_replace, moved out of outputs.py).
# Tests that run `python -m alems` in another folder are left out: mutmut's trampolines in
# the child look for its configuration in the child's working directory and fail.
MODULES=$(cat <<'EOF'
stats|analysis/stats.py||tests/test_analysis_stats.py tests/test_stats_mutants.py
tax|analysis/tax.py||tests/test_analysis_tax.py tests/test_tax_mutants.py tests/test_ratio_format.py tests/test_dashboard_pages.py::test_ratio_of_taxes_combines_the_two_log_variances tests/test_dashboard_pages.py::test_ratio_of_taxes_is_not_given_without_both_intervals tests/test_dashboard_pages.py::test_ratio_of_taxes_interval_covers_the_true_ratio
columns|measure/columns.py||tests/test_wrap_gaps.py tests/test_measure_mutants.py tests/test_native_edges.py tests/test_result_mutants.py
gaps|measure/gaps.py||tests/test_wrap_gaps.py tests/test_measure_mutants.py
result|measure/result.py||tests/test_wrap_gaps.py tests/test_measure_mutants.py tests/test_result_mutants.py tests/test_metrics.py tests/test_native_edges.py tests/test_stream.py::test_chunked_columns_equal_the_whole_run_wraps_across_chunks_included
quiet|measure/quiet.py||tests/test_measure_mutants.py tests/test_validity_batch.py::test_wait_for_quiet_times_out_with_the_reason
plan|experiment/plan.py||tests/test_plan_mutants.py tests/test_merge.py::test_shards_partition_the_plan_into_whole_pairs tests/test_merge.py::test_bad_shard_is_refused
baseline|experiment/baseline.py||tests/test_baseline_mutants.py tests/test_baseline.py
scoring|experiment/scoring.py||tests/test_scoring.py tests/test_scoring_mutants.py
merge|store/merge.py||tests/test_merge_mutants.py
authorizer|store/reads.py|alems.store.reads.x_read_only_authorizer* alems.store.reads.x_run_user_query* alems.store.reads.x__user_query*|tests/test_safety_mutants.py
outputs|outputs.py||tests/test_safety_mutants.py tests/test_hardening.py::test_safe_replace_refuses_a_non_regular_target
atomic_io|atomic_io.py||tests/test_safety_mutants.py tests/test_atomic_io_mutants.py tests/test_hardening.py::test_safe_replace_refuses_a_non_regular_target tests/test_adversarial_outputs.py::test_a_link_planted_after_the_checks_is_not_written_through tests/test_adversarial_outputs.py::test_a_link_planted_while_writing_is_not_replaced_through tests/test_adversarial_outputs.py::test_a_planted_link_to_a_device_is_not_written_in_place tests/test_adversarial_outputs.py::test_a_link_planted_at_the_temporary_name_is_never_followed tests/test_adversarial_outputs.py::test_own_links_and_root_links_are_still_followed
dashboard_access|dashboard/access.py||tests/test_safety_mutants.py tests/test_dashboard_safety.py tests/test_dashboard.py::test_token_is_asked_for_and_then_remembered
dashboard_host|cli/dashboard_cmd.py|alems.cli.dashboard_cmd.x_is_loopback*|tests/test_safety_mutants.py
EOF
)

command -v mutmut >/dev/null || { echo "mutation: install mutmut first: python3 -m pip install mutmut" >&2; exit 2; }
[ -f "$REPO/$NATIVE" ] || { echo "mutation: build the C extension first: python3 setup.py build_ext --inplace" >&2; exit 2; }

# A fresh scratch copy of the checkout with this module's [tool.mutmut] section; mutmut run.
run_one() {  # name file names tests
    local name=$1 file=$2 names=$3 tests=$4 dir="$WORK/$1" sel="" t
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$REPO" && git ls-files -co --exclude-standard | grep -v '^\.mutation/' \
        | tar -cf - -T - "$NATIVE") | tar -xf - -C "$dir"
    for t in $tests; do [ -f "$dir/${t%%::*}" ] && sel="$sel\"$t\", "; done
    cat >>"$dir/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["src/alems"]
only_mutate = ["src/alems/$file"]
pytest_add_cli_args = ["-p", "no:cacheprovider"]
pytest_add_cli_args_test_selection = [${sel%, }]
use_git_change_detection = false
EOF
    echo "== $name: mutating src/alems/$file${names:+ ($names)} against $tests"
    # shellcheck disable=SC2086  # names are glob patterns mutmut matches itself
    # ALEMS_MUTATION_BATCH_CACHE: tests/test_merge_mutants.py builds its input batches once
    # per run here, not once per mutant (the batch code is not the module mutated)
    mkdir -p "$dir/.batch-cache"
    (cd "$dir" && unset PYTHONPATH && export ALEMS_MUTATION_BATCH_CACHE="$dir/.batch-cache" \
        && nice -n 10 mutmut run --max-children "$JOBS" $names >mutmut.log 2>&1)
}

report_only=0
if [ "${1:-}" = --report ]; then report_only=1; shift; fi
want=" $* "
mkdir -p "$WORK"
echo "$MODULES" | while IFS='|' read -r name file filter tests; do
    [ -z "$name" ] && continue
    if [ "$#" -gt 0 ] && [[ "$want" != *" $name "* ]]; then continue; fi
    dir="$WORK/$name"
    names=$filter
    if [ "$report_only" = 0 ] && ! run_one "$name" "$file" "$names" "$tests"; then
        echo "mutation: $name: mutmut failed, see $dir/mutmut.log" >&2
        continue
    fi
    (cd "$dir" && mutmut results --all true >results.txt 2>&1) || true
    python3 - "$dir" "$name" "${names:-*}" "$WORK/scores.txt" <<'PY'
import fnmatch, sys
from pathlib import Path
d, name, pats, scores = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(), sys.argv[4]
status = {}
for line in (d / "results.txt").read_text().splitlines():
    key, sep, st = line.strip().rpartition(": ")
    if sep and "__mutmut_" in key and any(fnmatch.fnmatch(key, p) for p in pats):
        status[key] = st.strip()
killed = sum(s in ("killed", "timeout", "segfault") for s in status.values())
surv = sorted(k for k, s in status.items() if s not in ("killed", "timeout", "segfault"))
(d / "survivors.txt").write_text("".join(f"{k}: {status[k]}\n" for k in surv))
left = {st: sum(status[k] == st for k in surv) for st in sorted({status[k] for k in surv})}
line = (f"{name}: {killed}/{len(status)} killed"
        + "".join(f", {n} {st}" for st, n in left.items()) + f" ({d}/survivors.txt)")
print(line)
with open(scores, "a") as fh:
    fh.write(line + "\n")
PY
done
