/*
 * Standalone driver of the C core for machines without the Python stack (device checks):
 * samples the given energy_uj files plus perf counters of PID at HZ for SECONDS and prints
 * what the core saw: rate, lateness, drops, its own CPU time, read cost, and per-file
 * wrap-corrected energy and average power.
 *
 *   cc -O2 -Icsrc benchmarks/native_probe.c csrc/alems_sampler.c -lpthread -o native_probe
 *   ./native_probe 1000 5 <pid> /sys/class/powercap/intel-rapl:0/energy_uj ...
 */
#include "alems_sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_FILES 32

static long long read_range(const char *energy_path)
{
    char path[ALEMS_PATH_LEN];
    snprintf(path, sizeof path, "%s", energy_path);
    char *slash = strrchr(path, '/');
    if (!slash)
        return 0;
    snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "max_energy_range_uj");
    FILE *f = fopen(path, "r");
    long long v = 0;
    if (f) {
        if (fscanf(f, "%lld", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s HZ SECONDS PID [energy_uj files...]\n", argv[0]);
        return 2;
    }
    double hz = atof(argv[1]), secs = atof(argv[2]);
    int pid = atoi(argv[3]);
    int nfiles = argc - 4 > MAX_FILES ? MAX_FILES : argc - 4;
    static const struct { const char *name; unsigned type; unsigned long long config; } perf[] = {
        {"instructions", 0, 1}, {"cycles", 0, 0}, {"cache_misses", 0, 3},
        {"task_clock_ns", 1, 1}, {"context_switches", 1, 3}, {"page_faults", 1, 2},
    };
    alems_channel ch[MAX_FILES + 8];
    const char *label[MAX_FILES + 8];
    long long range[MAX_FILES + 8];
    int n = 0;
    char err[ALEMS_ERRMSG_LEN];
    for (int i = 0; i < nfiles; i++) {
        memset(&ch[n], 0, sizeof ch[n]);
        ch[n].kind = ALEMS_CH_TEXT_FILE;
        ch[n].slot = n;
        snprintf(ch[n].path, sizeof ch[n].path, "%s", argv[4 + i]);
        int64_t v;
        if (alems_probe(&ch[n], &v, err, sizeof err) < 0) {
            printf("skip %s: %s\n", argv[4 + i], err);
            continue;
        }
        label[n] = argv[4 + i];
        range[n] = read_range(argv[4 + i]);
        n++;
    }
    for (size_t i = 0; i < sizeof perf / sizeof perf[0]; i++) {
        memset(&ch[n], 0, sizeof ch[n]);
        ch[n].kind = ALEMS_CH_PERF;
        ch[n].slot = n;
        ch[n].pid = pid;
        ch[n].cpu = -1;
        ch[n].perf_type = perf[i].type;
        ch[n].perf_config = perf[i].config;
        ch[n].perf_flags = ALEMS_PERF_INHERIT;
        snprintf(ch[n].path, sizeof ch[n].path, "%s", perf[i].name);
        int64_t v;
        if (alems_probe(&ch[n], &v, err, sizeof err) < 0) {
            printf("skip perf %s: %s\n", perf[i].name, err);
            continue;
        }
        label[n] = perf[i].name;
        range[n] = 0;
        n++;
    }
    alems_sampler *s;
    uint32_t cap = 1;
    while (cap < (uint32_t)(hz * secs) + 64)
        cap <<= 1;
    if (alems_create(&s, ch, n, (int64_t)(1e9 / hz), 1, cap, 0, err, sizeof err) < 0 ||
        alems_start(s, err, sizeof err) < 0) {
        fprintf(stderr, "native_probe: %s\n", err);
        return 1;
    }
    struct timespec ts = {(time_t)secs, (long)((secs - (time_t)secs) * 1e9)};
    nanosleep(&ts, NULL);
    alems_stop(s);
    alems_record *rec = calloc(cap, sizeof *rec);
    int64_t got = alems_drain(s, rec, cap);
    alems_stats st;
    alems_get_stats(s, &st);
    double dur = got > 1 ? (rec[got - 1].t_ns - rec[0].t_ns) / 1e9 : 0;
    printf("inputs %d, samples %lld over %.3f s = %.1f Hz (requested %.0f), late %llu, "
           "max lateness %.1f us, skipped %llu, dropped %llu\n",
           n, (long long)got, dur, got > 1 ? (got - 1) / dur : 0.0, hz,
           (unsigned long long)st.late, st.max_lateness_ns / 1e3,
           (unsigned long long)st.skipped, (unsigned long long)st.dropped);
    printf("sampler thread CPU %.2f %% of one core; reads %.0f ns per sample\n",
           dur > 0 ? 100.0 * st.thread_cpu_ns / (dur * 1e9) : 0.0,
           st.samples ? (double)st.read_ns_total / (double)st.samples : 0.0);
    for (int c = 0; c < n; c++) {
        long double total = 0;
        for (int64_t k = 1; k < got; k++) {
            long long d = rec[k].values[c] - rec[k - 1].values[c];
            if (d < 0 && range[c] > 0)
                d += range[c] + 1;
            total += d;
        }
        if (range[c] > 0 || strstr(label[c], "energy"))
            printf("  %-60s %10.3f J  %8.2f W\n", label[c], (double)(total / 1e6),
                   dur > 0 ? (double)(total / 1e6) / dur : 0.0);
        else
            printf("  %-60s %14.0Lf\n", label[c], total);
    }
    free(rec);
    alems_destroy(s);
    return 0;
}
