/* A-LEMS native sampler core; see alems_sampler.h for the contract. */
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
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define STOP_SLICE_NS 50000000LL /* longest uninterrupted sleep (stop latency bound) */

typedef struct {
    int fd;
    int64_t last; /* last good value, carried forward on a read error */
    int group;    /* perf group: index of its leader (== own index for the leader), -1 none */
    int next;     /* next member of the group in read order, -1 = last */
    int nmemb;    /* leader only: members including the leader */
} input_state;

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
    int slot_slow[ALEMS_MAX_CHANNELS]; /* -1 unused, 0 fast, 1 slow */

    _Atomic uint64_t samples, late, dropped, skipped, slow_reads;
    _Atomic int64_t max_lateness_ns, read_ns_total, thread_cpu_ns;
    _Atomic int32_t error_errno, error_input, running, rt_errno;
    int32_t rt_priority;
};

int64_t alems_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *a, int e)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, strerror(e));
}

/* ------------------------------------------------------------------ parsing */

static int parse_int(const char *p, const char *end, int64_t *out)
{
    while (p < end && !((*p >= '0' && *p <= '9') ||
                        (*p == '-' && p + 1 < end && p[1] >= '0' && p[1] <= '9')))
        p++;
    if (p >= end)
        return -ENODATA;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    int64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (*p++ - '0');
    *out = neg ? -v : v;
    return 0;
}

static int parse_keyed(const char *buf, size_t n, const char *key, int64_t *out)
{
    size_t klen = strlen(key);
    const char *end = buf + n;
    const char *line = buf;
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *lend = nl ? nl : end;
        if ((size_t)(lend - line) >= klen && memcmp(line, key, klen) == 0)
            return parse_int(line + klen, lend, out);
        line = nl ? nl + 1 : end;
    }
    return -ENODATA;
}

/* /proc/<pid>/stat: fields after the last ')' start at field 3; utime is field 14. */
static int parse_pid_stat(const char *buf, size_t n, int64_t *out)
{
    const char *end = buf + n;
    const char *p = NULL;
    for (const char *q = buf; q < end; q++)
        if (*q == ')')
            p = q;
    if (!p)
        return -ENODATA;
    p++;
    int field = 2;
    int64_t sum = 0;
    while (p < end && field < 17) {
        while (p < end && *p == ' ')
            p++;
        if (p >= end)
            break;
        field++;
        const char *tok = p;
        while (p < end && *p != ' ' && *p != '\n')
            p++;
        if (field >= 14 && field <= 17) {
            int64_t v;
            if (parse_int(tok, p, &v) < 0)
                return -ENODATA;
            sum += v;
        }
    }
    if (field < 17)
        return -ENODATA;
    *out = sum;
    return 0;
}

/* ------------------------------------------------------------------ inputs */

/* Open one perf counter: on its own (group_fd < 0, grouped = 0), as a group leader
 * (group_fd < 0, grouped = 1) or as a member of group_fd's group.  Members start enabled
 * and follow their leader, which alone carries disabled/enable_on_exec. */
static int perf_open(const alems_channel *ch, int group_fd, int grouped)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = ch->perf_type;
    attr.config = ch->perf_config;
    attr.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
    if (grouped || group_fd >= 0)
        attr.read_format |= PERF_FORMAT_GROUP;
    attr.inherit = (ch->perf_flags & ALEMS_PERF_INHERIT) ? 1 : 0;
    if ((ch->perf_flags & ALEMS_PERF_ENABLE_ON_EXEC) && group_fd < 0) {
        attr.disabled = 1;
        attr.enable_on_exec = 1;
    }
    attr.exclude_kernel = (ch->perf_flags & ALEMS_PERF_EXCLUDE_KERNEL) ? 1 : 0;
    attr.exclude_hv = (ch->perf_flags & ALEMS_PERF_EXCLUDE_HV) ? 1 : 0;
    long fd = syscall(SYS_perf_event_open, &attr, (pid_t)ch->pid, ch->cpu, group_fd,
                      PERF_FLAG_FD_CLOEXEC);
    return fd < 0 ? -errno : (int)fd;
}

/* Only software counters are grouped. A hardware group is scheduled all-or-nothing: one
 * that never fits beside the NMI watchdog would read 0 with running = 0 instead of being
 * multiplexed, a made-up value. Software counters always run. */
static int perf_groupable(const alems_channel *ch)
{
    return ch->kind == ALEMS_CH_PERF && ch->perf_type == PERF_TYPE_SOFTWARE;
}

/* Same target, same flags, same PMU type, same rate: one group. */
static int perf_same_group(const alems_channel *a, const alems_channel *b)
{
    return a->perf_type == b->perf_type && a->pid == b->pid && a->cpu == b->cpu &&
           a->perf_flags == b->perf_flags && (a->slow != 0) == (b->slow != 0);
}

/* Multiplexed counter: scale up to the enabled time. */
static int64_t perf_scale(uint64_t val, uint64_t enabled, uint64_t running)
{
    if (running > 0 && running < enabled)
        val = (uint64_t)((unsigned __int128)val * enabled / running);
    return (int64_t)val;
}

/* Read one input into *v.  textbuf holds ALEMS_TEXT_BUF bytes. */
static int read_input(const alems_channel *ch, int fd, char *textbuf, int64_t *v)
{
    ssize_t r;
    switch (ch->kind) {
    case ALEMS_CH_TEXT_FILE:
    case ALEMS_CH_TEXT_KEYED:
    case ALEMS_CH_PID_STAT:
        r = pread(fd, textbuf, ALEMS_TEXT_BUF - 1, 0);
        if (r < 0)
            return -errno;
        textbuf[r] = 0;
        if (ch->kind == ALEMS_CH_TEXT_FILE)
            return parse_int(textbuf, textbuf + r, v);
        if (ch->kind == ALEMS_CH_TEXT_KEYED)
            return parse_keyed(textbuf, (size_t)r, ch->key, v);
        return parse_pid_stat(textbuf, (size_t)r, v);
    case ALEMS_CH_MSR: {
        uint64_t raw;
        r = pread(fd, &raw, sizeof raw, (off_t)ch->offset);
        if (r < 0)
            return -errno;
        if (r != sizeof raw)
            return -EIO;
        if (ch->mask)
            raw &= ch->mask;
        *v = (int64_t)raw;
        return 0;
    }
    case ALEMS_CH_PERF: {
        uint64_t d[3]; /* value, time enabled, time running */
        r = read(fd, d, sizeof d);
        if (r < 0)
            return -errno;
        if (r != sizeof d)
            return -EIO;
        *v = perf_scale(d[0], d[1], d[2]);
        return 0;
    }
    }
    return -EINVAL;
}

static int open_input(const alems_channel *ch, char *err, size_t errlen)
{
    int fd;
    if (ch->kind == ALEMS_CH_PERF) {
        fd = perf_open(ch, -1, 0);
        if (fd < 0 && err && errlen)
            snprintf(err, errlen,
                     "perf_event_open %s (type=%u config=0x%llx pid=%d cpu=%d): %s",
                     ch->path, ch->perf_type, (unsigned long long)ch->perf_config, ch->pid,
                     ch->cpu, strerror(-fd));
        return fd;
    }
    fd = open(ch->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        set_err(err, errlen, "cannot open %s: %s", ch->path, e);
        return -e;
    }
    return fd;
}

static int check_channel(const alems_channel *ch, char *err, size_t errlen)
{
    if (ch->kind < ALEMS_CH_TEXT_FILE || ch->kind > ALEMS_CH_PID_STAT) {
        set_err(err, errlen, "unknown input kind for %s (%s)", ch->path, EINVAL);
        return -EINVAL;
    }
    if (ch->slot < 0 || ch->slot >= ALEMS_MAX_CHANNELS) {
        set_err(err, errlen, "value slot out of range for %s (%s)", ch->path, EINVAL);
        return -EINVAL;
    }
    if (memchr(ch->path, 0, ALEMS_PATH_LEN) == NULL || memchr(ch->key, 0, ALEMS_KEY_LEN) == NULL) {
        set_err(err, errlen, "unterminated path or key (%s%s)", "", EINVAL);
        return -EINVAL;
    }
    return 0;
}

int alems_probe(const alems_channel *ch, int64_t *value, char *err, size_t errlen)
{
    int rc = check_channel(ch, err, errlen);
    if (rc < 0)
        return rc;
    char *buf = malloc(ALEMS_TEXT_BUF);
    if (!buf)
        return -ENOMEM;
    int fd = open_input(ch, err, errlen);
    if (fd < 0) {
        free(buf);
        return fd;
    }
    int64_t v = 0;
    rc = read_input(ch, fd, buf, &v);
    if (rc < 0)
        set_err(err, errlen, "cannot read %s: %s", ch->path, -rc);
    else if (value)
        *value = v;
    close(fd);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ sampler */

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

static void close_inputs(alems_sampler *s)
{
    for (int i = 0; i < s->n; i++) {
        if (s->st[i].fd >= 0)
            close(s->st[i].fd);
        s->st[i].fd = -1;
        s->st[i].group = -1;
        s->st[i].next = -1;
        s->st[i].nmemb = 0;
    }
}

/* Read a whole perf group with one read() of its leader; every member's value goes to
 * its own st[].last (carried forward, untouched, on an error). */
static int read_group(alems_sampler *s, int leader)
{
    size_t nr = (size_t)s->st[leader].nmemb;
    size_t want = (nr + 3) * sizeof *s->groupbuf;
    ssize_t r = read(s->st[leader].fd, s->groupbuf, want);
    if (r < 0)
        return -errno;
    if ((size_t)r != want || s->groupbuf[0] != nr)
        return -EIO;
    uint64_t enabled = s->groupbuf[1], running = s->groupbuf[2];
    size_t k = 0;
    for (int m = leader; m >= 0 && k < nr; m = s->st[m].next, k++)
        s->st[m].last = perf_scale(s->groupbuf[3 + k], enabled, running);
    return 0;
}

/* Read input i (a group leader reads its whole group; a member reads nothing: its value
 * came with its leader's read, which precedes it in input order). */
static int read_one(alems_sampler *s, int i)
{
    const input_state *st = &s->st[i];
    if (st->group == i)
        return read_group(s, i);
    if (st->group >= 0)
        return 0;
    int64_t v;
    int rc = read_input(&s->inputs[i], st->fd, s->textbuf, &v);
    if (rc == 0)
        s->st[i].last = v;
    return rc;
}

static void add_note(alems_sampler *s, const alems_channel *ch, const char *what, int e)
{
    if (s->note[0]) /* the first refusal says what happened */
        return;
    snprintf(s->note, sizeof s->note,
             "perf counter %.200s (pid=%d cpu=%d) %s (%s); it is read on its own", ch->path,
             ch->pid, ch->cpu, what, strerror(e));
}

/* Open input i: perf counters join the group of the first earlier counter with the same
 * target, or lead a new group when a later one will join; anything the kernel refuses
 * to group is opened on its own, exactly as without grouping. */
static int open_one(alems_sampler *s, int i, char *err, size_t errlen)
{
    const alems_channel *ch = &s->inputs[i];
    input_state *st = &s->st[i];
    st->group = -1;
    st->next = -1;
    st->nmemb = 0;
    if (perf_groupable(ch)) {
        int leader = -1;
        for (int j = 0; j < i && leader < 0; j++)
            if (s->st[j].group == j && perf_same_group(ch, &s->inputs[j]))
                leader = j;
        if (leader >= 0) {
            int fd = perf_open(ch, s->st[leader].fd, 1);
            if (fd >= 0) {
                int last = leader;
                while (s->st[last].next >= 0)
                    last = s->st[last].next;
                s->st[last].next = i;
                s->st[leader].nmemb++;
                st->group = leader;
                st->fd = fd;
                return fd;
            }
            add_note(s, ch, "could not join its group", -fd);
        } else {
            int later = 0;
            for (int j = i + 1; j < s->n && !later; j++)
                later = perf_groupable(&s->inputs[j]) && perf_same_group(ch, &s->inputs[j]);
            if (later) {
                int fd = perf_open(ch, -1, 1);
                if (fd >= 0) {
                    st->group = i;
                    st->nmemb = 1;
                    st->fd = fd;
                    return fd;
                }
                add_note(s, ch, "could not lead a group", -fd);
            }
        }
    }
    int fd = open_input(ch, err, errlen);
    if (fd >= 0)
        st->fd = fd;
    return fd;
}

static void take_sample(alems_sampler *s, uint32_t tick, int64_t t_ns, int slow, uint32_t flags)
{
    for (int k = 0; k < ALEMS_MAX_CHANNELS; k++)
        if (s->slot_slow[k] == 0 || (slow && s->slot_slow[k] == 1))
            s->slot_val[k] = 0;
    for (int i = 0; i < s->n; i++) {
        const alems_channel *ch = &s->inputs[i];
        if (ch->slow && !slow)
            continue;
        int rc = read_one(s, i);
        if (rc < 0 && !(ch->kind == ALEMS_CH_PID_STAT && (rc == -ESRCH || rc == -ENOENT))) {
            /* A vanished process is not an error: its last CPU time stays. */
            int32_t zero = 0;
            if (atomic_compare_exchange_strong(&s->error_errno, &zero, -rc))
                atomic_store(&s->error_input, i);
        }
        s->slot_val[ch->slot] += s->st[i].last;
    }
    if (slow)
        atomic_fetch_add_explicit(&s->slow_reads, 1, memory_order_relaxed);

    uint64_t head = atomic_load_explicit(&s->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&s->tail, memory_order_acquire);
    if (head - tail >= s->cap) {
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
    } else {
        alems_record *r = &s->ring[head & (s->cap - 1)];
        r->t_ns = t_ns;
        r->tick = tick;
        r->flags = flags | (slow ? ALEMS_REC_SLOW : 0);
        memcpy(r->values, s->slot_val, sizeof r->values);
        atomic_store_explicit(&s->head, head + 1, memory_order_release);
    }
    atomic_fetch_add_explicit(&s->samples, 1, memory_order_relaxed);
}

static void *sampler_main(void *arg)
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
    s->note[0] = 0;
    for (int i = 0; i < s->n && rc == 0; i++) {
        int fd = open_one(s, i, err, sizeof err);
        if (fd < 0)
            rc = fd;
    }
    /* Read everything once (all group members are open by now). */
    for (int i = 0; i < s->n && rc == 0; i++) {
        int r = read_one(s, i);
        if (r < 0) {
            set_err(err, sizeof err, "cannot read %s: %s", s->inputs[i].path, -r);
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
        take_sample(s, (uint32_t)k, now, slow, 0);
        atomic_fetch_add_explicit(&s->read_ns_total, alems_now_ns() - now,
                                  memory_order_relaxed);
        k++;
    }
    /* Final record so the run's end is covered, slow inputs included. */
    take_sample(s, (uint32_t)k, alems_now_ns(), 1, ALEMS_REC_FINAL);
    struct timespec cpu;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0)
        atomic_store(&s->thread_cpu_ns, (int64_t)cpu.tv_sec * 1000000000LL + cpu.tv_nsec);
    close_inputs(s);
    atomic_store(&s->running, 0);
    return NULL;
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
        if (err && errlen)
            snprintf(err, errlen, "%s", s->start_err);
        return state;
    }
    return 0;
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
