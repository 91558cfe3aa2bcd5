#!/usr/bin/env bash
# One short check on a machine that may expose real RAPL and hardware counters:
# what is readable there, and the C core at 1000 Hz on a CPU load next to `perf stat`.
# Needs only a C compiler; runs `alems doctor` / `alems sample` too where the Python
# stack (numpy, pyarrow, cffi, typer, rich) is importable.
#
#   OUT=/tmp/alems-device bash benchmarks/device_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/alems-device}
mkdir -p "$OUT"
exec > >(tee "$OUT/device_check.txt") 2>&1
SECS=${SECS:-5}
LOAD_PROCS=${LOAD_PROCS:-4}

echo "== host"; uname -r; nproc; grep -m1 'model name' /proc/cpuinfo; echo "uid $(id -u)"
echo "== kernel.perf_event_paranoid = $(cat /proc/sys/kernel/perf_event_paranoid)"
echo "== powercap"
for z in /sys/class/powercap/*; do
    [ -e "$z/energy_uj" ] && echo "$(basename "$z") name=$(cat "$z/name") energy_uj=$(cat "$z/energy_uj" 2>&1) max=$(cat "$z/max_energy_range_uj" 2>&1)"
done
echo "== PMUs: $(ls /sys/bus/event_source/devices/ | tr '\n' ' ')"
echo "== power PMU events: $(ls /sys/bus/event_source/devices/power/events 2>&1 | tr '\n' ' ')"
echo "== msr: $(ls -l /dev/cpu/0/msr 2>&1)"
echo "== tools: $(command -v perf cc python3 | tr '\n' ' ') $(python3 -V 2>&1)"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
PYOK=1
for m in numpy pyarrow _cffi_backend typer rich psutil; do
    python3 -c "import $m" 2>/dev/null && echo "python: $m ok" || { echo "python: $m MISSING"; PYOK=0; }
done

cc -O2 -Icsrc benchmarks/native_probe.c csrc/alems_sampler.c -lpthread -o "$OUT/native_probe" || exit 1
FILES=$(ls /sys/class/powercap/intel-rapl:*/energy_uj 2>/dev/null)

# A load whose workers fork after the counters attach (inherit follows them).
sh -c "sleep 0.5; for i in \$(seq $LOAD_PROCS); do (while :; do :; done) & done; wait" &
LOAD=$!
sleep 0.1
PERF_EVENTS=$(ls /sys/bus/event_source/devices/power/events 2>/dev/null | grep -E '^energy-(pkg|ram|cores|psys)$' | sed 's#^#power/#; s#$#/#' | paste -sd, -)
if command -v perf >/dev/null; then
    [ -n "$PERF_EVENTS" ] && perf stat -a -e "$PERF_EVENTS" -o "$OUT/perf_stat_power.txt" -- sleep "$SECS" &
    perf stat -p "$LOAD" -e instructions,cycles,task-clock,context-switches -o "$OUT/perf_stat_load.txt" -- sleep "$SECS" &
fi
echo "== native_probe 1000 Hz for $SECS s on $LOAD_PROCS busy processes (pid $LOAD)"
"$OUT/native_probe" 1000 "$SECS" "$LOAD" $FILES
wait_for=$(jobs -p | grep -v "^$LOAD\$")
for j in $wait_for; do wait "$j"; done
kill -- -"$LOAD" 2>/dev/null; pkill -P "$LOAD" 2>/dev/null; kill "$LOAD" 2>/dev/null
echo "== perf stat (same window)"; cat "$OUT"/perf_stat_*.txt 2>/dev/null

if [ "$PYOK" = 1 ]; then
    echo "== alems doctor"
    python3 -m alems doctor
    echo "== alems sample --hz 1000 on $LOAD_PROCS busy processes for $SECS s"
    python3 -m alems sample --hz 1000 -o "$OUT/sample.parquet" \
        --summary-json "$OUT/sample_summary.json" -- \
        sh -c "for i in \$(seq $LOAD_PROCS); do timeout $SECS sh -c 'while :; do :; done' & done; wait"
    echo "exit $?"
fi
