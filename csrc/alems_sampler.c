/* A-LEMS native sampler core: lifecycle, ring consumer and stats; see alems_sampler.h
 * for the contract and internal.h for how the parts fit. */
#include "internal.h"

/* Free the sampler and its buffers (any of which may be NULL). */
static void free_sampler(alems_sampler *s)
{
    free(s->inputs);
    free(s->st);
    free(s->ring);
    free(s->textbuf);
    free(s->groupbuf);
    free(s);
}

int alems_create(alems_sampler **out, const alems_channel *inputs, int n_inputs,
                 int64_t period_ns, int32_t slow_every, uint32_t ring_capacity,
                 int64_t late_threshold_ns, char *err, size_t errlen)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (n_inputs < 0 || n_inputs > ALEMS_MAX_INPUTS || (n_inputs && !inputs)) {
        set_err(err, errlen, "too many inputs (%s): %s", "max ALEMS_MAX_INPUTS", EINVAL);
        return -EINVAL;
    }
    if (period_ns <= 0 || slow_every <= 0 || ring_capacity < 2 ||
        (ring_capacity & (ring_capacity - 1))) {
        set_err(err, errlen, "bad period, slow_every or ring capacity (%s): %s",
                "capacity must be a power of two", EINVAL);
        return -EINVAL;
    }
    alems_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    for (int k = 0; k < ALEMS_MAX_CHANNELS; k++)
        s->slot_slow[k] = -1;
    for (int i = 0; i < n_inputs; i++) {
        int rc = check_channel(&inputs[i], err, errlen);
        if (rc < 0) {
            free(s);
            return rc;
        }
        int slot = inputs[i].slot, slow = inputs[i].slow ? 1 : 0;
        if (s->slot_slow[slot] >= 0 && s->slot_slow[slot] != slow) {
            set_err(err, errlen, "slot mixes slow and fast inputs (%s): %s", inputs[i].path,
                    EINVAL);
            free(s);
            return -EINVAL;
        }
        s->slot_slow[slot] = slow;
    }
    s->n = n_inputs;
    s->inputs = calloc((size_t)(n_inputs ? n_inputs : 1), sizeof *s->inputs);
    s->st = calloc((size_t)(n_inputs ? n_inputs : 1), sizeof *s->st);
    s->ring = calloc(ring_capacity, sizeof *s->ring);
    s->textbuf = malloc(ALEMS_TEXT_BUF);
    s->groupbuf = calloc((size_t)n_inputs + 3, sizeof *s->groupbuf);
    if (!s->inputs || !s->st || !s->ring || !s->textbuf || !s->groupbuf) {
        free_sampler(s);
        return -ENOMEM;
    }
    if (n_inputs)
        memcpy(s->inputs, inputs, (size_t)n_inputs * sizeof *inputs);
    for (int i = 0; i < n_inputs; i++) {
        s->st[i].fd = -1;
        s->st[i].group = -1;
        s->st[i].next = -1;
    }
    s->period_ns = period_ns;
    s->slow_every = slow_every;
    s->late_threshold_ns = late_threshold_ns > 0 ? late_threshold_ns : period_ns / 2;
    s->cap = ring_capacity;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    atomic_store(&s->error_input, -1);
    *out = s;
    return 0;
}

int alems_set_rt_priority(alems_sampler *s, int32_t priority)
{
    if (!s || priority < 0)
        return -EINVAL;
    int hi = sched_get_priority_max(SCHED_FIFO);
    s->rt_priority = priority > hi ? hi : priority;
    return 0;
}

int alems_start(alems_sampler *s, char *err, size_t errlen)
{
    if (!s)
        return -EINVAL;
    if (s->thread_live) {
        set_err(err, errlen, "sampler already started (%s): %s", "call stop first", EBUSY);
        return -EBUSY;
    }
    atomic_store(&s->stop_flag, 0);
    s->start_state = 0;
    s->start_err[0] = 0;
    int rc = pthread_create(&s->thread, NULL, sampler_main, s);
    if (rc != 0) {
        set_err(err, errlen, "cannot create the sampler thread (%s): %s", "pthread_create", rc);
        return -rc;
    }
    s->thread_live = 1;
    pthread_mutex_lock(&s->mu);
    while (s->start_state == 0)
        pthread_cond_wait(&s->cv, &s->mu);
    int state = s->start_state;
    pthread_mutex_unlock(&s->mu);
    if (state < 0) {
        pthread_join(s->thread, NULL);
        s->thread_live = 0;
    }
    /* start_err: the failure on failure, else the note ("" or a grouping fallback). */
    if (err && errlen)
        snprintf(err, errlen, "%s", s->start_err);
    return state < 0 ? state : 0;
}

int alems_stop(alems_sampler *s)
{
    if (!s)
        return -EINVAL;
    if (!s->thread_live)
        return 0;
    atomic_store_explicit(&s->stop_flag, 1, memory_order_release);
    int rc = pthread_join(s->thread, NULL);
    s->thread_live = 0;
    return -rc;
}

int64_t alems_drain(alems_sampler *s, alems_record *out, int64_t max)
{
    if (!s || !out || max <= 0)
        return 0;
    uint64_t tail = atomic_load_explicit(&s->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&s->head, memory_order_acquire);
    uint64_t n = head - tail;
    if (n > (uint64_t)max)
        n = (uint64_t)max;
    uint64_t first = tail & (s->cap - 1);
    uint64_t part = s->cap - first;
    if (part > n)
        part = n;
    memcpy(out, &s->ring[first], part * sizeof *out);
    if (n > part)
        memcpy(out + part, &s->ring[0], (n - part) * sizeof *out);
    atomic_store_explicit(&s->tail, tail + n, memory_order_release);
    return (int64_t)n;
}

void alems_get_stats(alems_sampler *s, alems_stats *o)
{
    if (!s || !o)
        return;
    o->samples = atomic_load(&s->samples);
    o->late = atomic_load(&s->late);
    o->max_lateness_ns = atomic_load(&s->max_lateness_ns);
    o->dropped = atomic_load(&s->dropped);
    o->skipped = atomic_load(&s->skipped);
    o->slow_reads = atomic_load(&s->slow_reads);
    o->read_ns_total = atomic_load(&s->read_ns_total);
    o->error_errno = atomic_load(&s->error_errno);
    o->error_input = atomic_load(&s->error_input);
    o->running = atomic_load(&s->running);
    o->rt_errno = atomic_load(&s->rt_errno);
    o->thread_tid = atomic_load(&s->thread_tid);
    o->thread_cpu_ns = atomic_load(&s->thread_cpu_ns);
    if (o->running && s->thread_live) {
        clockid_t cid;
        struct timespec ts;
        if (pthread_getcpuclockid(s->thread, &cid) == 0 && clock_gettime(cid, &ts) == 0)
            o->thread_cpu_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
}

void alems_destroy(alems_sampler *s)
{
    if (!s)
        return;
    alems_stop(s);
    close_inputs(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free_sampler(s);
}
