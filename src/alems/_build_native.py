"""cffi build script (out-of-line API mode) for the C sampler core in csrc/.

The cdef names the header's types and functions but leaves every capacity as `...`,
so the compiler fills them in from csrc/alems_sampler.h: one source of truth.
"""
import os
from pathlib import Path

from cffi import FFI

# setuptools rejects absolute source paths, so name them relative to where the build runs.
_CSRC = os.path.relpath(Path(__file__).resolve().parents[2] / "csrc")

CDEF = """
#define ALEMS_MAX_CHANNELS ...
#define ALEMS_MAX_INPUTS ...
#define ALEMS_PATH_LEN ...
#define ALEMS_KEY_LEN ...
#define ALEMS_ERRMSG_LEN ...
#define ALEMS_TEXT_BUF ...
#define ALEMS_CH_TEXT_FILE ...
#define ALEMS_CH_TEXT_KEYED ...
#define ALEMS_CH_MSR ...
#define ALEMS_CH_PERF ...
#define ALEMS_CH_PID_STAT ...
#define ALEMS_PERF_INHERIT ...
#define ALEMS_PERF_ENABLE_ON_EXEC ...
#define ALEMS_PERF_EXCLUDE_KERNEL ...
#define ALEMS_PERF_EXCLUDE_HV ...
#define ALEMS_REC_SLOW ...
#define ALEMS_REC_FINAL ...

typedef struct {
    int32_t kind; int32_t slot; int32_t slow; int32_t pid; int32_t cpu;
    uint32_t perf_type; uint64_t perf_config; uint32_t perf_flags;
    uint64_t offset; uint64_t mask;
    char path[...]; char key[...];
    ...;
} alems_channel;

typedef struct {
    int64_t t_ns; uint32_t tick; uint32_t flags; int64_t values[...];
    ...;
} alems_record;

typedef struct {
    uint64_t samples; uint64_t late; int64_t max_lateness_ns; uint64_t dropped;
    uint64_t skipped; uint64_t slow_reads; int64_t read_ns_total; int64_t thread_cpu_ns;
    int32_t error_errno; int32_t error_input; int32_t running; int32_t rt_errno;
    ...;
} alems_stats;

typedef struct alems_sampler alems_sampler;

int alems_create(alems_sampler **out, const alems_channel *inputs, int n_inputs,
                 int64_t period_ns, int32_t slow_every, uint32_t ring_capacity,
                 int64_t late_threshold_ns, char *err, size_t errlen);
int alems_set_rt_priority(alems_sampler *s, int32_t priority);
int alems_start(alems_sampler *s, char *err, size_t errlen);
int alems_stop(alems_sampler *s);
int64_t alems_drain(alems_sampler *s, alems_record *out, int64_t max);
void alems_get_stats(alems_sampler *s, alems_stats *out);
void alems_destroy(alems_sampler *s);
int alems_probe(const alems_channel *ch, int64_t *value, char *err, size_t errlen);
int64_t alems_now_ns(void);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "alems._alems_native",
    '#include "alems_sampler.h"',
    sources=[os.path.join(_CSRC, "alems_sampler.c")],
    include_dirs=[_CSRC],
    extra_compile_args=["-O2", "-pthread", "-std=gnu11", "-Wall"],
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
