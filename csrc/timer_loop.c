/* The sampling thread: opens every input, then on absolute CLOCK_MONOTONIC deadlines
 * reads them all and writes one record per tick into the ring (single producer). */
#include "internal.h"

#define STOP_SLICE_NS 50000000LL /* longest uninterrupted sleep (stop latency bound) */

static void take_sample(alems_sampler *s, uint64_t tick, int64_t t_ns, int slow, uint32_t flags)
{
    for (int k = 0; k < ALEMS_MAX_CHANNELS; k++)
        if (s->slot_slow[k] == 0 || (slow && s->slot_slow[k] == 1)) {
            s->slot_val[k] = 0;
            s->slot_nulls &= ~(1ULL << k);
        }
    for (int i = 0; i < s->n; i++) {
        const alems_channel *ch = &s->inputs[i];
        if (ch->slow && !slow)
            continue;
        int rc = read_one(s, i);
        if (rc < 0 && !(ch->kind == ALEMS_CH_PID_STAT && (rc == -ESRCH || rc == -ENOENT)) &&
            !thread_gone(ch, rc)) {
            /* A vanished process or thread is not an error: its last value stays. */
            int32_t zero = 0;
            if (atomic_compare_exchange_strong(&s->error_errno, &zero, -rc))
                atomic_store(&s->error_input, i);
        }
        if (s->st[i].no_value) /* one input without a value leaves its slot without one */
            s->slot_nulls |= 1ULL << ch->slot;
        else /* summed modulo 2^64: raw counters wrap, and signed overflow would be UB */
            s->slot_val[ch->slot] =
                (int64_t)((uint64_t)s->slot_val[ch->slot] + (uint64_t)s->st[i].last);
    }
    if (slow)
        atomic_fetch_add_explicit(&s->slow_reads, 1, memory_order_relaxed);

    uint64_t head = atomic_load_explicit(&s->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&s->tail, memory_order_acquire);
    /* One slot stays free for the final record: an energy integral cannot lose the
     * run's end, so when the ring is full the newest ordinary record is dropped. */
    uint64_t room = (flags & ALEMS_REC_FINAL) ? s->cap : s->cap - 1;
    if (head - tail >= room) {
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
    } else {
        alems_record *r = &s->ring[head & (s->cap - 1)];
        r->t_ns = t_ns;
        r->tick = tick;
        r->flags = flags | (slow ? ALEMS_REC_SLOW : 0);
        r->nulls = s->slot_nulls;
        memcpy(r->values, s->slot_val, sizeof r->values);
        atomic_store_explicit(&s->head, head + 1, memory_order_release);
    }
    atomic_fetch_add_explicit(&s->samples, 1, memory_order_relaxed);
}

void *sampler_main(void *arg)
{
    alems_sampler *s = arg;
    char err[ALEMS_ERRMSG_LEN] = "";
    int rc = 0;
    if (s->rt_priority > 0) {
        struct sched_param sp = {.sched_priority = s->rt_priority};
        int e = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
        atomic_store(&s->rt_errno, e);
    }
    pthread_setname_np(pthread_self(), "alems-sampler");
    /* Published before start returns: callers exclude this thread from the workload's
     * counts (e.g. its context switches). */
    atomic_store(&s->thread_tid, (int32_t)syscall(SYS_gettid));
    s->note[0] = 0;
    for (int i = 0; i < s->n && rc == 0; i++) {
        int fd = open_one(s, i, err, sizeof err);
        if (fd < 0)
            rc = fd;
    }
    /* Read everything once (all group members are open by now). */
    for (int i = 0; i < s->n && rc == 0; i++) {
        int r = read_one(s, i);
        if (r < 0 && !thread_gone(&s->inputs[i], r)) {
            read_err(err, sizeof err, s->inputs[i].path, -r);
            rc = r;
        }
    }
    if (rc < 0) {
        close_inputs(s);
    } else {
        snprintf(err, sizeof err, "%s", s->note);
        atomic_store(&s->running, 1);
    }
    pthread_mutex_lock(&s->mu);
    s->start_state = rc < 0 ? rc : 1;
    memcpy(s->start_err, err, sizeof err);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (rc < 0)
        return NULL;

    const int64_t period = s->period_ns;
    int64_t base = alems_now_ns();
    uint64_t k = 0;
    for (;;) {
        int64_t deadline = base + (int64_t)k * period;
        /* Sleep to the absolute deadline, in slices of at most STOP_SLICE_NS so that a
         * low-rate sampler still stops promptly. */
        while (k > 0 && !atomic_load_explicit(&s->stop_flag, memory_order_acquire)) {
            int64_t wake = deadline;
            if (period > STOP_SLICE_NS) {
                int64_t now = alems_now_ns();
                if (now >= deadline)
                    break;
                if (deadline - now > STOP_SLICE_NS)
                    wake = now + STOP_SLICE_NS;
            }
            struct timespec ts = {wake / 1000000000LL, wake % 1000000000LL};
            int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            if (r == EINTR)
                continue;
            if (wake == deadline)
                break;
        }
        if (atomic_load_explicit(&s->stop_flag, memory_order_acquire))
            break;
        int64_t now = alems_now_ns();
        int64_t lateness = now - deadline;
        if (lateness > s->late_threshold_ns) {
            atomic_fetch_add_explicit(&s->late, 1, memory_order_relaxed);
            if (lateness > atomic_load_explicit(&s->max_lateness_ns, memory_order_relaxed))
                atomic_store_explicit(&s->max_lateness_ns, lateness, memory_order_relaxed);
        }
        if (lateness >= period) { /* missed whole periods: skip forward, never burst */
            uint64_t n = (uint64_t)(lateness / period);
            k += n;
            atomic_fetch_add_explicit(&s->skipped, n, memory_order_relaxed);
        }
        int slow = (k % (uint64_t)s->slow_every) == 0;
        take_sample(s, k, now, slow, 0);
        atomic_fetch_add_explicit(&s->read_ns_total, alems_now_ns() - now,
                                  memory_order_relaxed);
        k++;
    }
    /* Final record so the run's end is covered, slow inputs included. */
    take_sample(s, k, alems_now_ns(), 1, ALEMS_REC_FINAL);
    struct timespec cpu;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0)
        atomic_store(&s->thread_cpu_ns, (int64_t)cpu.tv_sec * 1000000000LL + cpu.tv_nsec);
    close_inputs(s);
    atomic_store(&s->running, 0);
    return NULL;
}
