/*
 * A-LEMS native sampler core: I/O and timing only.
 *
 * Python discovers the sources and hands this core a list of input channels (files,
 * MSRs, perf events).  One pthread per sampler opens each input once, then on absolute
 * CLOCK_MONOTONIC deadlines preads every input and writes one fixed-size record per tick
 * into a lock-free single-producer/single-consumer ring that Python drains in bulk.
 *
 * Several inputs may feed the same value slot (summed), so e.g. one cpuidle state summed
 * over all CPUs costs one slot.  Every public function returns 0 or -errno; the core
 * never aborts or exits.
 *
 * Software perf counters of one target (same pid, cpu, perf_flags and slow flag) are
 * opened as one perf group (the
 * first one is the leader) and read together with one read() of the leader per tick,
 * PERF_FORMAT_GROUP: one cross-CPU call instead of one per counter when the target runs
 * on another CPU.  enable_on_exec/disabled go on the leader only; the multiplexing
 * scaling uses the group's enabled/running times.  A counter the kernel will not group
 * (or a leader refused PERF_FORMAT_GROUP) is opened and read on its own, and said so in
 * alems_start's note.  Hardware counters and other PMUs (e.g. `power`) are read one by
 * one: a hardware group is scheduled all-or-nothing and could read 0 without running.
 *
 * Capacities and layouts are declared here only; Python reads them through cffi.
 */
#ifndef ALEMS_SAMPLER_H
#define ALEMS_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#define ALEMS_MAX_CHANNELS 64     /* value slots per record */
#define ALEMS_MAX_INPUTS 4096     /* opened inputs per sampler (a server: counters x threads) */
#define ALEMS_PATH_LEN 256
#define ALEMS_KEY_LEN 32
#define ALEMS_ERRMSG_LEN 320
#define ALEMS_TEXT_BUF 262144     /* largest text file read (/proc/stat on big machines) */

/* Input kinds */
#define ALEMS_CH_TEXT_FILE 1  /* first integer in the file (energy_uj, temp, cpuidle time) */
#define ALEMS_CH_TEXT_KEYED 2 /* first integer after the line starting with `key` */
#define ALEMS_CH_MSR 3        /* 8 bytes at offset = register, then & mask */
#define ALEMS_CH_PERF 4       /* perf_event_open counter, scaled for multiplexing (grouped
                                 per target, see above); null until it first runs */
#define ALEMS_CH_PID_STAT 5   /* /proc/<pid>/stat: utime+stime+cutime+cstime (ticks) */

/* perf flags (alems_channel.perf_flags) */
#define ALEMS_PERF_INHERIT 1
#define ALEMS_PERF_ENABLE_ON_EXEC 2 /* also starts disabled */
#define ALEMS_PERF_EXCLUDE_KERNEL 4
#define ALEMS_PERF_EXCLUDE_HV 8
/* The target is one thread that may exit before the counter (or its /proc/<pid>/task/<tid>
 * text file) opens: it then counts nothing and reads as 0, instead of failing the start;
 * after it exits its last value stays. */
#define ALEMS_PERF_THREAD 16
/* Test only (fault injection, never set by the sampler itself): the core treats this
 * counter as one the kernel refuses to add to a group (EINVAL), so the read-on-its-own
 * fallback and alems_start's note can be tested on any machine. */
#define ALEMS_PERF_TEST_NO_JOIN 256
/* Test only (fault injection, never set by the sampler itself): the core takes this
 * counter's time_running as 0 (enabled but never scheduled: no value, a null), or as
 * half its time_enabled (multiplexed: the count is scaled x2). */
#define ALEMS_PERF_TEST_NEVER_RAN 512
#define ALEMS_PERF_TEST_HALF_RUNNING 1024

/* record flags */
#define ALEMS_REC_SLOW 1 /* slow inputs were read on this tick */
#define ALEMS_REC_FINAL 2 /* last record, taken at stop */

typedef struct {
    int32_t kind;
    int32_t slot;        /* value slot in the record, < ALEMS_MAX_CHANNELS */
    int32_t slow;        /* read only every slow_every-th tick, carried forward otherwise */
    int32_t pid;         /* perf: target pid (-1 = all); */
    int32_t cpu;         /* perf: cpu (-1 = any) */
    uint32_t perf_type;
    uint64_t perf_config;
    uint32_t perf_flags;
    uint64_t offset;     /* MSR register */
    uint64_t mask;       /* MSR value mask (0 = none) */
    char path[ALEMS_PATH_LEN];
    char key[ALEMS_KEY_LEN];
} alems_channel;

typedef struct {
    int64_t t_ns;        /* CLOCK_MONOTONIC, taken just before the inputs are read */
    uint64_t tick;       /* deadline index (skipped deadlines leave gaps) */
    uint32_t flags;      /* ALEMS_REC_* */
    uint32_t reserved;   /* 0; keeps values 8-byte aligned */
    uint64_t nulls;      /* bit k set: slot k has no value (values[k] is 0): a perf counter
                            in it was enabled but has not run yet (time_running == 0) */
    int64_t values[ALEMS_MAX_CHANNELS];
} alems_record;

typedef struct {
    uint64_t samples;         /* records produced */
    uint64_t late;            /* wake-ups later than late_threshold_ns */
    int64_t max_lateness_ns;
    uint64_t dropped;         /* records lost because the ring was full (never the final
                                 one: the last slot is kept for it) */
    uint64_t skipped;         /* deadlines skipped because we were > 1 period behind */
    uint64_t slow_reads;
    int64_t read_ns_total;    /* time spent reading inputs (all ticks) */
    int64_t thread_cpu_ns;    /* sampler thread CPU time */
    int32_t error_errno;      /* first read error during sampling (sticky), 0 = none */
    int32_t error_input;      /* index of the input that failed, -1 = none */
    int32_t running;
    int32_t rt_errno;         /* SCHED_FIFO requested but refused: its errno, else 0 */
    int32_t thread_tid;       /* the sampling thread's kernel thread id (gettid), from start */
} alems_stats;

typedef struct alems_sampler alems_sampler;

/* Allocate a sampler.  ring_capacity must be a power of two. */
int alems_create(alems_sampler **out, const alems_channel *inputs, int n_inputs,
                 int64_t period_ns, int32_t slow_every, uint32_t ring_capacity,
                 int64_t late_threshold_ns, char *err, size_t errlen);
/* Best effort: run the sampler thread SCHED_FIFO at this priority (0 = normal
 * scheduling). Call before alems_start; a refusal is reported in stats.rt_errno. */
int alems_set_rt_priority(alems_sampler *s, int32_t priority);
/* Start the thread; returns after every input was opened (0) or one failed (-errno,
 * message in err naming the file/event).  On success err holds "" or a note (the first
 * perf counter that could not be read in its group and is read on its own). */
int alems_start(alems_sampler *s, char *err, size_t errlen);
/* Ask the thread to take a final record and exit; join it and close the inputs. */
int alems_stop(alems_sampler *s);
/* Copy up to max records out of the ring; returns how many. */
int64_t alems_drain(alems_sampler *s, alems_record *out, int64_t max);
void alems_get_stats(alems_sampler *s, alems_stats *out);
void alems_destroy(alems_sampler *s);

/* Open, read once, close one input (probing and doctor). */
int alems_probe(const alems_channel *ch, int64_t *value, char *err, size_t errlen);
/* CLOCK_MONOTONIC in ns: the samples' clock. */
int64_t alems_now_ns(void);

#endif
