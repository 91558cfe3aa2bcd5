/* Drives the C core (csrc/) for tests/test_sanitize.py, which builds it together with
 * every csrc file under AddressSanitizer and UndefinedBehaviorSanitizer: parse edge cases, a
 * sampler over a fake powercap/MSR tree whose counters wrap (tests/fakehw.py writes them),
 * a ring that wraps and fills up, start/stop cycles, a counter file that overflows
 * mid-run, error paths and, where perf_event_open is allowed, perf groups with the
 * test-only fault injection. Exits 0 when every check holds; a sanitizer report aborts.
 *
 * usage: sanitize_driver PKG_UJ CORE_UJ DRAM_UJ RANGE_UJ MSR_FILE SCRATCH_DIR
 */
#define _GNU_SOURCE
#include "alems_sampler.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            failures++;                                                                    \
            fprintf(stderr, "FAIL line %d: %s: ", __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

#define WAIT_LIMIT_NS (30 * 1000000000LL) /* a condition not met by then is a failure */
#define MSR_BIG_REG 0x700                 /* a register the fake writer never touches */

static alems_channel chan(int kind, int slot, const char *path)
{
    alems_channel c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.slot = slot;
    c.pid = -1;
    c.cpu = -1;
    snprintf(c.path, sizeof c.path, "%s", path);
    return c;
}

static void write_file(const char *path, const char *text, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len) {
        perror(path);
        exit(2);
    }
    close(fd);
}

static void pause_1ms(void)
{
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ parsing */

static void parse_edges(const char *dir)
{
    static const struct {
        const char *text;
        int kind;
        const char *key;
        int rc;
        int64_t value;
    } cases[] = {
        {"9223372036854775807\n", ALEMS_CH_TEXT_FILE, "", 0, INT64_MAX},
        {"-9223372036854775808\n", ALEMS_CH_TEXT_FILE, "", 0, INT64_MIN},
        {"9223372036854775808\n", ALEMS_CH_TEXT_FILE, "", -ERANGE, 0},
        {"-9223372036854775809", ALEMS_CH_TEXT_FILE, "", -ERANGE, 0},
        {"99999999999999999999999999999999", ALEMS_CH_TEXT_FILE, "", -ERANGE, 0},
        {"", ALEMS_CH_TEXT_FILE, "", -ENODATA, 0},
        {"-", ALEMS_CH_TEXT_FILE, "", -ENODATA, 0},
        {"abc -", ALEMS_CH_TEXT_FILE, "", -ENODATA, 0},
        {"--5x", ALEMS_CH_TEXT_FILE, "", 0, -5},
        {"-0", ALEMS_CH_TEXT_FILE, "", 0, 0},
        {"intr 1\nctxt", ALEMS_CH_TEXT_KEYED, "ctxt", -ENODATA, 0},
        {"intr 1\nctxt 18446744073709551616", ALEMS_CH_TEXT_KEYED, "ctxt ", -ERANGE, 0},
        {"int", ALEMS_CH_TEXT_KEYED, "intr ", -ENODATA, 0},
        {"a 1\nintr 42", ALEMS_CH_TEXT_KEYED, "intr ", 0, 42},
        {"1 (a) b) S 0 0 0 0 0 0 0 0 0 0 1 2 3 4 0 0", ALEMS_CH_PID_STAT, "", 0, 10},
        {"1 (x) S 0 0 0 0 0 0 0 0 0 0 4611686018427387904 4611686018427387904 "
         "4611686018427387904 4611686018427387904",
         ALEMS_CH_PID_STAT, "", -ERANGE, 0},
        {"1 (x) S 0 0 0 0 0 0 0 0 0 0 -9223372036854775808 -1 0 0", ALEMS_CH_PID_STAT, "",
         -ERANGE, 0},
        {"1 (x S 1 2", ALEMS_CH_PID_STAT, "", -ENODATA, 0},
        {"1 (x) S 1 2 3", ALEMS_CH_PID_STAT, "", -ENODATA, 0},
        {"1 (x) S 0 0 0 0 0 0 0 0 0 0 99999999999999999999 0 0 0", ALEMS_CH_PID_STAT, "",
         -ERANGE, 0},
    };
    char path[ALEMS_PATH_LEN];
    snprintf(path, sizeof path, "%s/parse", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(path, cases[i].text, strlen(cases[i].text));
        alems_channel c = chan(cases[i].kind, 0, path);
        snprintf(c.key, sizeof c.key, "%s", cases[i].key);
        int64_t v = 12345;
        char err[ALEMS_ERRMSG_LEN] = "";
        int rc = alems_probe(&c, &v, err, sizeof err);
        CHECK(rc == cases[i].rc, "case %zu (%s): rc %d, want %d (%s)", i, cases[i].text, rc,
              cases[i].rc, err);
        if (rc == 0)
            CHECK(v == cases[i].value, "case %zu: %" PRId64 ", want %" PRId64, i, v,
                  cases[i].value);
        else
            CHECK(strstr(err, path) != NULL, "case %zu: error names no file: %s", i, err);
    }
    /* Files longer than the text buffer: the read is bounded and still NUL-terminated. */
    size_t big = ALEMS_TEXT_BUF + 4096;
    char *text = malloc(big);
    if (!text)
        exit(2);
    memset(text, '7', big);
    write_file(path, text, big);
    alems_channel c = chan(ALEMS_CH_TEXT_FILE, 0, path);
    int64_t v;
    CHECK(alems_probe(&c, &v, NULL, 0) == -ERANGE, "a buffer of digits is out of range");
    memset(text, ' ', big);
    memcpy(text + ALEMS_TEXT_BUF - 4, "123456", 6); /* the number straddles the buffer end */
    write_file(path, text, big);
    CHECK(alems_probe(&c, &v, NULL, 0) == 0 && v == 123, "cut at the buffer: %" PRId64, v);
    free(text);
}

/* ------------------------------------------------------------------ sampling */

static int64_t now_plus_limit(void) { return alems_now_ns() + WAIT_LIMIT_NS; }

/* One start/stop cycle over the fake tree; drains a few records at a time so the ring's
 * wrap-around copy runs. Returns when the package and MSR counters were both seen to wrap. */
static void sample_cycle(alems_sampler *s, int64_t range_uj, int cycle, alems_stats *prev)
{
    char err[ALEMS_ERRMSG_LEN];
    int rc = alems_start(s, err, sizeof err);
    CHECK(rc == 0, "cycle %d: start %d: %s", cycle, rc, err);
    if (rc != 0)
        return;
    alems_record recs[3];
    int64_t last_pkg = -1, last_msr = -1, last_t = 0, got = 0;
    uint64_t last_tick = 0;
    int pkg_wraps = 0, msr_wraps = 0, final = 0;
    int64_t limit = now_plus_limit();
    for (int stopping = 0;;) {
        int64_t n = alems_drain(s, recs, 3);
        for (int64_t i = 0; i < n; i++, got++) {
            const alems_record *r = &recs[i];
            CHECK(got == 0 || r->tick > last_tick, "tick %" PRIu64 " after %" PRIu64, r->tick,
                  last_tick);
            CHECK(r->t_ns >= last_t, "time went back");
            CHECK(r->nulls == 0, "no perf input, yet nulls %" PRIx64, r->nulls);
            CHECK(r->values[0] >= 0 && r->values[0] <= range_uj, "pkg %" PRId64, r->values[0]);
            CHECK(r->values[1] >= 0 && r->values[1] <= 2 * range_uj, "core+dram");
            CHECK(r->values[2] >= 0 && r->values[2] <= 0xFFFFFFFFLL, "msr %" PRId64,
                  r->values[2]);
            CHECK(r->values[3] == -2, "INT64_MAX + INT64_MAX wraps to -2: %" PRId64,
                  r->values[3]);
            CHECK(r->values[4] >= 0, "pid stat ticks");
            pkg_wraps += last_pkg >= 0 && r->values[0] < last_pkg;
            msr_wraps += last_msr >= 0 && r->values[2] < last_msr;
            last_pkg = r->values[0];
            last_msr = r->values[2];
            last_tick = r->tick;
            last_t = r->t_ns;
            final = (r->flags & ALEMS_REC_FINAL) != 0;
        }
        if (stopping && n == 0)
            break;
        if (!stopping && ((pkg_wraps && msr_wraps && got >= 200) || alems_now_ns() > limit)) {
            CHECK(alems_stop(s) == 0, "stop");
            stopping = 1;
        } else if (n < 3) {
            pause_1ms();
        }
    }
    alems_stats st;
    alems_get_stats(s, &st);
    CHECK(pkg_wraps > 0 && msr_wraps > 0, "cycle %d: wraps seen: pkg %d msr %d", cycle,
          pkg_wraps, msr_wraps);
    CHECK(final, "cycle %d: the last record is the final one", cycle);
    CHECK(st.running == 0 && st.error_errno == 0, "cycle %d: stats", cycle);
    /* The counts run on across cycles: every record of this one was drained or dropped. */
    CHECK(st.samples - prev->samples == (uint64_t)got + st.dropped - prev->dropped,
          "cycle %d: %" PRIu64 " records, %" PRId64 " drained, %" PRIu64 " dropped", cycle,
          st.samples - prev->samples, got, st.dropped - prev->dropped);
    *prev = st;
}

static void sample_tree(char **argv)
{
    const char *msr = argv[5];
    int fd = open(msr, O_WRONLY);
    uint64_t big = INT64_MAX;
    if (fd < 0 || pwrite(fd, &big, sizeof big, MSR_BIG_REG) != sizeof big) {
        perror(msr);
        exit(2);
    }
    close(fd);
    alems_channel in[8];
    int n = 0;
    in[n++] = chan(ALEMS_CH_TEXT_FILE, 0, argv[1]);
    in[n++] = chan(ALEMS_CH_TEXT_FILE, 1, argv[2]);
    in[n++] = chan(ALEMS_CH_TEXT_FILE, 1, argv[3]); /* two inputs summed in one slot */
    in[n] = chan(ALEMS_CH_MSR, 2, msr);
    in[n].offset = 0x611;
    in[n++].mask = 0xFFFFFFFF;
    for (int k = 0; k < 2; k++) { /* their sum overflows int64: it wraps, defined */
        in[n] = chan(ALEMS_CH_MSR, 3, msr);
        in[n].offset = MSR_BIG_REG;
        in[n++].slow = 1;
    }
    in[n] = chan(ALEMS_CH_PID_STAT, 4, "/proc/self/stat");
    in[n++].slow = 1;
    alems_sampler *s = NULL;
    char err[ALEMS_ERRMSG_LEN];
    int rc = alems_create(&s, in, n, 200000, 3, 8, 0, err, sizeof err);
    CHECK(rc == 0, "create: %s", err);
    if (rc != 0)
        return;
    CHECK(alems_set_rt_priority(s, 0) == 0, "rt priority");
    int64_t range = strtoll(argv[4], NULL, 10);
    alems_stats prev;
    memset(&prev, 0, sizeof prev);
    for (int cycle = 0; cycle < 3; cycle++)
        sample_cycle(s, range, cycle, &prev);
    alems_record r;
    CHECK(alems_drain(s, &r, 1) == 0, "nothing left after the last cycle");
    CHECK(alems_stop(s) == 0, "a second stop is harmless");
    alems_destroy(s);
}

/* A counter file that starts holding a number beyond 64 bits mid-run: a sticky ERANGE,
 * its last good value carried forward. */
static void overflow_mid_run(const char *dir)
{
    char path[ALEMS_PATH_LEN];
    snprintf(path, sizeof path, "%s/ovf", dir);
    write_file(path, "5\n", 2);
    alems_channel c = chan(ALEMS_CH_TEXT_FILE, 0, path);
    alems_sampler *s = NULL;
    char err[ALEMS_ERRMSG_LEN];
    if (alems_create(&s, &c, 1, 500000, 1, 64, 0, err, sizeof err) != 0 ||
        alems_start(s, err, sizeof err) != 0) {
        CHECK(0, "overflow sampler: %s", err);
        return;
    }
    int fd = open(path, O_WRONLY);
    const char *huge = "99999999999999999999\n";
    if (fd < 0 || pwrite(fd, huge, strlen(huge), 0) != (ssize_t)strlen(huge))
        exit(2);
    close(fd);
    alems_stats st;
    int64_t limit = now_plus_limit();
    do {
        pause_1ms();
        alems_get_stats(s, &st);
    } while (st.error_errno == 0 && alems_now_ns() < limit);
    alems_stop(s);
    alems_record recs[64];
    int64_t n = alems_drain(s, recs, 64);
    CHECK(st.error_errno == ERANGE && st.error_input == 0, "errno %d", st.error_errno);
    CHECK(n > 0 && recs[n - 1].values[0] == 5, "carried forward");
    alems_destroy(s);
}

static void error_paths(const char *dir)
{
    char err[ALEMS_ERRMSG_LEN], path[ALEMS_PATH_LEN];
    snprintf(path, sizeof path, "%s/missing", dir);
    alems_channel c = chan(ALEMS_CH_TEXT_FILE, 0, path);
    alems_sampler *s = NULL;
    CHECK(alems_create(&s, &c, 1, 1000000, 1, 3, 0, err, sizeof err) == -EINVAL, "ring 3");
    CHECK(alems_create(&s, &c, ALEMS_MAX_INPUTS + 1, 1000000, 1, 4, 0, err, sizeof err) ==
              -EINVAL, "too many inputs");
    alems_channel bad = c;
    bad.slot = ALEMS_MAX_CHANNELS;
    CHECK(alems_create(&s, &bad, 1, 1000000, 1, 4, 0, err, sizeof err) == -EINVAL, "slot");
    bad = c;
    memset(bad.path, 'x', sizeof bad.path); /* unterminated */
    CHECK(alems_create(&s, &bad, 1, 1000000, 1, 4, 0, err, sizeof err) == -EINVAL, "path");
    CHECK(alems_create(&s, &c, 1, 1000000, 1, 4, 0, err, sizeof err) == 0, "create");
    CHECK(alems_start(s, err, sizeof err) == -ENOENT && strstr(err, "missing"), "%s", err);
    alems_destroy(s);
    CHECK(alems_create(&s, NULL, 0, 1000000, 1, 4, 0, err, sizeof err) == 0, "no inputs");
    CHECK(alems_start(s, err, sizeof err) == 0, "start");
    CHECK(alems_start(s, err, sizeof err) == -EBUSY, "started twice");
    alems_destroy(s); /* stops it */
    alems_destroy(NULL);
    CHECK(alems_drain(NULL, NULL, 5) == 0 && alems_stop(NULL) == -EINVAL, "NULL sampler");
    alems_get_stats(NULL, NULL);
}

/* Software counters of this process, grouped, alone, and with each fault injected. */
static void perf_counters(void)
{
    alems_channel probe = chan(ALEMS_CH_PERF, 0, "sw:task_clock");
    probe.perf_type = 1; /* PERF_TYPE_SOFTWARE */
    probe.perf_config = 1;
    probe.pid = getpid();
    probe.perf_flags = ALEMS_PERF_INHERIT;
    char err[ALEMS_ERRMSG_LEN];
    int64_t v;
    int rc = alems_probe(&probe, &v, err, sizeof err);
    if (rc == -EACCES || rc == -EPERM || rc == -ENOENT || rc == -ENOSYS) {
        printf("perf: not allowed here (%s): skipped\n", err);
        return;
    }
    static const uint32_t flags[] = {0, ALEMS_PERF_TEST_NEVER_RAN, ALEMS_PERF_TEST_NO_JOIN,
                                     ALEMS_PERF_TEST_HALF_RUNNING};
    alems_channel in[8];
    int n = 0;
    for (int g = 0; g < 4; g++)
        for (int k = 0; k < 2; k++) { /* task clock and page faults: a group per flag */
            in[n] = probe;
            in[n].slot = n;
            in[n].perf_config = 1 + (uint64_t)k;
            in[n++].perf_flags |= flags[g];
        }
    alems_sampler *s = NULL;
    CHECK(alems_create(&s, in, n, 1000000, 1, 1024, 0, err, sizeof err) == 0, "%s", err);
    rc = alems_start(s, err, sizeof err);
    CHECK(rc == 0 && strstr(err, "could not join its group"), "perf start %d: %s", rc, err);
    alems_stats st;
    int64_t limit = now_plus_limit();
    volatile uint64_t spin = 0;
    do { /* the main thread runs, so its counters are enabled */
        for (int i = 0; i < 100000; i++)
            spin = spin + (uint64_t)i;
        alems_get_stats(s, &st);
    } while (st.samples < 20 && alems_now_ns() < limit);
    alems_stop(s);
    alems_record recs[1024];
    int64_t got = alems_drain(s, recs, 1024);
    CHECK(got > 0, "perf records");
    if (got > 0) {
        const alems_record *r = &recs[got - 1];
        CHECK(r->nulls == 0xC, "never-ran pair is null: %" PRIx64, r->nulls);
        CHECK(r->values[0] > 0 && r->values[4] > 0 && r->values[6] > 0, "counted");
        CHECK(r->values[2] == 0 && r->values[3] == 0, "a null reads as 0 in values");
    }
    alems_destroy(s);
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s PKG_UJ CORE_UJ DRAM_UJ RANGE_UJ MSR_FILE SCRATCH_DIR\n",
                argv[0]);
        return 2;
    }
    parse_edges(argv[6]);
    sample_tree(argv);
    overflow_mid_run(argv[6]);
    error_paths(argv[6]);
    perf_counters();
    if (failures) {
        fprintf(stderr, "sanitize_driver: %d check(s) failed\n", failures);
        return 1;
    }
    printf("sanitize_driver: all checks passed\n");
    return 0;
}
