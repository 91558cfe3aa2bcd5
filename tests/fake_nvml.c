/* A fake NVML for tests: the real function names and signatures (nvml.h). Its readings are
 * computed at each call from CLOCK_MONOTONIC (the sampler's clock) and a power schedule, so
 * they are exact at the instant of the read however loaded the machine is: no writer
 * process, nothing that has to keep up with wall-clock time.
 *
 * $FAKE_NVML_FILE, re-read on every call (a test may change the future of a schedule):
 *     line 1:        t0_ns                      (CLOCK_MONOTONIC origin of the schedules)
 *     one per GPU:   name  uuid  energy_rc  power_rc  frozen  lost_after_ns  n  off_1 mW_1 … off_n mW_n
 *                    (tab-separated; off_i in ns from t0, power mW_i from off_i to off_i+1)
 * energy_mJ = 1e6 + ∫ power from t0 (5000, and 0 mW, when frozen).
 * energy_rc/power_rc: the nvmlReturn_t that call returns (0 = success; 3 = not supported).
 * lost_after_ns >= 0: from then on the GPU is gone (its line is dropped, so its calls
 * return NVML_ERROR_GPU_IS_LOST, 15).
 * $FAKE_NVML_INIT_RC: what nvmlInit_v2 returns (default 0).
 * $FAKE_NVML_DELAY_US: each energy/power read takes at least this long (a slow driver).
 * $FAKE_NVML_LOG: each energy/power read appends "index t_ns value rc\n" (t_ns: the
 * instant the value was computed for), so a test knows exactly what was read when. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int nvmlReturn_t;
typedef struct fake_device *nvmlDevice_t;

#define MAXDEV 16
#define MAXSTEP 16
struct fake_gpu {
    char name[96], uuid[96];
    int erc, prc, frozen;
    long long lost_after_ns;
    int nstep;
    long long off_ns[MAXSTEP];
    double mw[MAXSTEP];
};

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The GPUs present at `now` (lost ones dropped), or -1 when the file is unreadable. */
static int read_gpus(struct fake_gpu *out, long long now, long long *t0) {
    const char *path = getenv("FAKE_NVML_FILE");
    FILE *f = path ? fopen(path, "r") : NULL;
    char buf[2048];
    int n = 0;
    if (!f) return -1;
    if (!fgets(buf, sizeof buf, f) || sscanf(buf, "%lld", t0) != 1) {
        fclose(f);
        return -1;
    }
    while (n < MAXDEV && fgets(buf, sizeof buf, f)) {
        struct fake_gpu *g = &out[n];
        int used = 0;
        if (sscanf(buf, "%95[^\t]\t%95[^\t]\t%d\t%d\t%d\t%lld\t%d%n", g->name, g->uuid, &g->erc,
                   &g->prc, &g->frozen, &g->lost_after_ns, &g->nstep, &used) != 7 ||
            g->nstep < 1 || g->nstep > MAXSTEP)
            continue;
        char *p = buf + used;
        int ok = 1;
        for (int i = 0; i < g->nstep && ok; i++) {
            int k = 0;
            ok = sscanf(p, "%lld %lf%n", &g->off_ns[i], &g->mw[i], &k) == 2;
            p += k;
        }
        if (!ok) continue;
        if (g->lost_after_ns >= 0 && now - *t0 >= g->lost_after_ns) continue;
        n++;
    }
    fclose(f);
    return n;
}

static double energy_mj(const struct fake_gpu *g, long long dt) {
    double e_mw_ns = 0.0;
    if (g->frozen) return 5000.0;
    for (int i = 0; i < g->nstep; i++) {
        long long start = g->off_ns[i];
        long long end = i + 1 < g->nstep ? g->off_ns[i + 1] : dt;
        if (end > dt) end = dt;
        if (end > start) e_mw_ns += g->mw[i] * (double)(end - start);
    }
    return 1e6 + e_mw_ns / 1e9; /* mW·ns = 1e-12 J = 1e-9 mJ */
}

static unsigned int power_mw(const struct fake_gpu *g, long long dt) {
    double mw = g->mw[0];
    if (g->frozen) return 0;
    for (int i = 0; i < g->nstep; i++)
        if (dt >= g->off_ns[i]) mw = g->mw[i];
    return (unsigned int)mw;
}

static void slow_driver(void) {
    const char *d = getenv("FAKE_NVML_DELAY_US");
    long us = d ? atol(d) : 0;
    if (us > 0) {
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) != 0) {}
    }
}

static void log_read(long index, long long t, unsigned long long value, int rc) {
    const char *path = getenv("FAKE_NVML_LOG");
    char line[128];
    int fd, len;
    if (!path) return;
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    len = snprintf(line, sizeof line, "%ld %lld %llu %d\n", index, t, value, rc);
    if (write(fd, line, (size_t)len) != len) {} /* best effort: the test sees a short log */
    close(fd);
}

/* One reading (energy or power) of `dev` at this instant. */
static int reading(nvmlDevice_t dev, int energy, unsigned long long *value) {
    struct fake_gpu all[MAXDEV];
    long i = (long)dev - 1;
    long long t0 = 0, now;
    int n, rc = 0;
    slow_driver();
    now = now_ns();
    n = read_gpus(all, now, &t0);
    *value = 0;
    if (n < 0) rc = 999;
    else if (i < 0 || i >= n) rc = 15; /* NVML_ERROR_GPU_IS_LOST */
    else if (energy ? all[i].erc : all[i].prc) rc = energy ? all[i].erc : all[i].prc;
    else *value = energy ? (unsigned long long)energy_mj(&all[i], now - t0)
                         : power_mw(&all[i], now - t0);
    log_read(i, now, *value, rc);
    return rc;
}

static int get(nvmlDevice_t dev, struct fake_gpu *g) {
    struct fake_gpu all[MAXDEV];
    long i = (long)dev - 1;
    long long t0;
    int n = read_gpus(all, now_ns(), &t0);
    if (n < 0) return 999;
    if (i < 0 || i >= n) return 15;
    *g = all[i];
    return 0;
}

nvmlReturn_t nvmlInit_v2(void) {
    const char *rc = getenv("FAKE_NVML_INIT_RC");
    return rc ? atoi(rc) : 0;
}
nvmlReturn_t nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case 0: return "Success";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 9: return "Driver Not Loaded";
    case 15: return "GPU is lost";
    default: return "Unknown Error";
    }
}
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    struct fake_gpu all[MAXDEV];
    long long t0;
    int n = read_gpus(all, now_ns(), &t0);
    if (n < 0) return 999;
    *count = (unsigned int)n;
    return 0;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *dev) {
    unsigned int n;
    if (nvmlDeviceGetCount_v2(&n) || index >= n) return 2; /* INVALID_ARGUMENT */
    *dev = (nvmlDevice_t)(long)(index + 1);
    return 0;
}
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t dev, char *name, unsigned int length) {
    struct fake_gpu g;
    int rc = get(dev, &g);
    if (rc) return rc;
    if (strlen(g.name) + 1 > length) return 7; /* INSUFFICIENT_SIZE */
    strcpy(name, g.name);
    return 0;
}
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t dev, char *uuid, unsigned int length) {
    struct fake_gpu g;
    int rc = get(dev, &g);
    if (rc) return rc;
    if (strlen(g.uuid) + 1 > length) return 7;
    strcpy(uuid, g.uuid);
    return 0;
}
nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t dev, unsigned long long *energy) {
    return reading(dev, 1, energy);
}
nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t dev, unsigned int *power) {
    unsigned long long v;
    int rc = reading(dev, 0, &v);
    if (rc == 0) *power = (unsigned int)v;
    return rc;
}
