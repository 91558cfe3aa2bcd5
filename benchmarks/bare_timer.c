/*
 * The floor of any periodic sampler: one thread waking on absolute CLOCK_MONOTONIC
 * deadlines with clock_nanosleep(TIMER_ABSTIME), doing nothing else. The benchmark
 * (test_bench_floor.py) builds it and runs it beside `alems sample` at the same rate.
 *
 *   cc -O2 benchmarks/bare_timer.c -o bare_timer && ./bare_timer 1000 10
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s HZ SECONDS\n", argv[0]);
        return 2;
    }
    double hz = atof(argv[1]), secs = atof(argv[2]);
    int64_t period = (int64_t)(1e9 / hz), n = (int64_t)(hz * secs);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t base = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    for (int64_t k = 1; k <= n; k++) {
        int64_t d = base + k * period;
        struct timespec dl = {d / 1000000000LL, d % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, NULL) != 0)
            ;
    }
    return 0;
}
