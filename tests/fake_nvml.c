/* A fake NVML for tests: the real function names and signatures (nvml.h), its values read
 * from a text file on every call, so a writer process drives the counters.
 *
 * $FAKE_NVML_FILE: one line per GPU, tab-separated:
 *     name  uuid  energy_mJ  power_mW  energy_rc  power_rc
 * energy_rc/power_rc: the nvmlReturn_t that call returns (0 = success; 3 = not supported).
 * A line that disappears makes that GPU's calls return NVML_ERROR_GPU_IS_LOST (15).
 * $FAKE_NVML_INIT_RC: what nvmlInit_v2 returns (default 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct fake_device *nvmlDevice_t;

#define MAXDEV 16
struct fake_line { char name[96]; char uuid[96]; unsigned long long energy; unsigned int power;
                   int erc, prc; };

static int read_lines(struct fake_line *out) {
    const char *path = getenv("FAKE_NVML_FILE");
    FILE *f = path ? fopen(path, "r") : NULL;
    char buf[512];
    int n = 0;
    if (!f) return -1;
    while (n < MAXDEV && fgets(buf, sizeof buf, f)) {
        struct fake_line *l = &out[n];
        if (sscanf(buf, "%95[^\t]\t%95[^\t]\t%llu\t%u\t%d\t%d", l->name, l->uuid, &l->energy,
                   &l->power, &l->erc, &l->prc) == 6) n++;
    }
    fclose(f);
    return n;
}

static int get(nvmlDevice_t dev, struct fake_line *l) {
    struct fake_line all[MAXDEV];
    long i = (long)dev - 1;
    int n = read_lines(all);
    if (n < 0) return 999;
    if (i < 0 || i >= n) return 15; /* NVML_ERROR_GPU_IS_LOST */
    *l = all[i];
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
    struct fake_line all[MAXDEV];
    int n = read_lines(all);
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
    struct fake_line l;
    int rc = get(dev, &l);
    if (rc) return rc;
    if (strlen(l.name) + 1 > length) return 7; /* INSUFFICIENT_SIZE */
    strcpy(name, l.name);
    return 0;
}
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t dev, char *uuid, unsigned int length) {
    struct fake_line l;
    int rc = get(dev, &l);
    if (rc) return rc;
    if (strlen(l.uuid) + 1 > length) return 7;
    strcpy(uuid, l.uuid);
    return 0;
}
nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t dev, unsigned long long *energy) {
    struct fake_line l;
    int rc = get(dev, &l);
    if (rc) return rc;
    if (l.erc) return l.erc;
    *energy = l.energy;
    return 0;
}
nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t dev, unsigned int *power) {
    struct fake_line l;
    int rc = get(dev, &l);
    if (rc) return rc;
    if (l.prc) return l.prc;
    *power = l.power;
    return 0;
}
