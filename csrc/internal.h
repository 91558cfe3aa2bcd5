/*
 * Private to the C core: the sampler's state and the functions its parts share.
 * The public contract and every layout Python sees stay in alems_sampler.h (the cffi
 * cdef is derived from that header only).
 *
 *   inputs.c        opening, reading and parsing one input (files, MSRs, one perf counter)
 *   perf_group.c    perf counters of one target opened and read as one group (built on
 *                   inputs.c; inputs.c never calls into it: no cycle between the parts)
 *   timer_loop.c    the sampling thread: absolute deadlines, one record per tick
 *   alems_sampler.c lifecycle (create/start/stop/destroy), the ring's consumer side, stats
 */
#ifndef ALEMS_INTERNAL_H
#define ALEMS_INTERNAL_H

#define _GNU_SOURCE
#include "alems_sampler.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int64_t last; /* last good value, carried forward on a read error */
    int group;    /* perf group: index of its leader (== own index for the leader), -1 none */
    int next;     /* next member of the group in read order, -1 = last */
    int nmemb;    /* leader only: members including the leader */
    int no_value; /* perf: enabled but not run yet (time_running == 0); carried like last */
} input_state;

/* alems_record.nulls holds one bit per value slot. */
_Static_assert(ALEMS_MAX_CHANNELS <= 64, "alems_record.nulls has 64 bits");

/* read_input/read_one: read fine, but there is no value (a perf counter that has not run). */
#define READ_NO_VALUE 1

struct alems_sampler {
    alems_channel *inputs;
    input_state *st;
    int n;
    int64_t period_ns;
    int32_t slow_every;
    int64_t late_threshold_ns;

    alems_record *ring;
    uint32_t cap;
    _Atomic uint64_t head; /* written by the producer only */
    _Atomic uint64_t tail; /* written by the consumer only */

    pthread_t thread;
    int thread_live; /* created and not yet joined */
    _Atomic int stop_flag;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int start_state; /* 0 pending, 1 running, <0 -errno */
    char start_err[ALEMS_ERRMSG_LEN];

    char *textbuf;
    uint64_t *groupbuf; /* one PERF_FORMAT_GROUP read: nr, enabled, running, values[] */
    char note[ALEMS_ERRMSG_LEN]; /* start note (perf grouping fallbacks) */
    int64_t slot_val[ALEMS_MAX_CHANNELS];
    uint64_t slot_nulls; /* bit k: slot k has no value (alems_record.nulls) */
    int slot_slow[ALEMS_MAX_CHANNELS]; /* -1 unused, 0 fast, 1 slow */

    _Atomic uint64_t samples, late, dropped, skipped, slow_reads;
    _Atomic int64_t max_lateness_ns, read_ns_total, thread_cpu_ns;
    _Atomic int32_t error_errno, error_input, running, rt_errno, thread_tid;
    int32_t rt_priority;
};

/* Shared between the parts only: never exported from the extension. */
#pragma GCC visibility push(hidden)

/* inputs.c */
void set_err(char *err, size_t errlen, const char *fmt, const char *a, int e);
void read_err(char *err, size_t errlen, const char *path, int e);
int read_input(const alems_channel *ch, int fd, char *textbuf, int64_t *v);
int open_input(const alems_channel *ch, char *err, size_t errlen);
int check_channel(const alems_channel *ch, char *err, size_t errlen);
int perf_open(const alems_channel *ch, int group_fd, int grouped);
int perf_value(const alems_channel *ch, uint64_t val, uint64_t enabled, uint64_t running,
               int64_t *out);

/* perf_group.c */
int open_one(alems_sampler *s, int i, char *err, size_t errlen);
int read_one(alems_sampler *s, int i);

/* A per-thread input (ALEMS_PERF_THREAD on a perf counter, or on a text file under
 * /proc/<pid>/task/<tid>/) whose thread has exited reads ESRCH/ECHILD: not an error, the
 * thread's last value stays (counts since the last read of that thread are lost). */
static inline int thread_gone(const alems_channel *ch, int rc)
{
    return (ch->kind == ALEMS_CH_PERF || ch->kind == ALEMS_CH_TEXT_FILE) &&
           (ch->perf_flags & ALEMS_PERF_THREAD) && (rc == -ESRCH || rc == -ECHILD);
}
void close_inputs(alems_sampler *s);

/* timer_loop.c */
void *sampler_main(void *arg);

#pragma GCC visibility pop

#endif
