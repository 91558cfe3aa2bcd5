/* perf counters of one target opened as one group and read with one read() of the
 * leader per tick (see alems_sampler.h); whatever the kernel refuses to group is opened
 * and read on its own, and the first refusal becomes alems_start's note. */
#include "internal.h"

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

void close_inputs(alems_sampler *s)
{
    for (int i = 0; i < s->n; i++) {
        if (s->st[i].fd >= 0)
            close(s->st[i].fd);
        s->st[i].fd = -1;
        s->st[i].group = -1;
        s->st[i].next = -1;
        s->st[i].nmemb = 0;
        s->st[i].no_value = 0;
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
    for (int m = leader; m >= 0 && k < nr; m = s->st[m].next, k++) {
        int64_t v;
        s->st[m].no_value = perf_value(&s->inputs[leader], s->groupbuf[3 + k], enabled,
                                       running, &v) == READ_NO_VALUE;
        if (!s->st[m].no_value)
            s->st[m].last = v;
    }
    return 0;
}

/* Read input i (a group leader reads its whole group; a member reads nothing: its value
 * came with its leader's read, which precedes it in input order). */
int read_one(alems_sampler *s, int i)
{
    const input_state *st = &s->st[i];
    if (st->group == i)
        return read_group(s, i);
    if (st->group >= 0 || st->fd < 0) /* member, or a thread that exited before opening */
        return 0;
    int64_t v;
    int rc = read_input(&s->inputs[i], st->fd, s->textbuf, &v);
    if (rc == 0)
        s->st[i].last = v;
    if (rc >= 0)
        s->st[i].no_value = rc == READ_NO_VALUE;
    return rc;
}

static void add_note(alems_sampler *s, const alems_channel *ch, const char *what, int e)
{
    if (s->note[0]) /* the first refusal says what happened */
        return;
    if (e == ESRCH && (ch->perf_flags & ALEMS_PERF_THREAD))
        return; /* a thread that exited meanwhile: not a grouping refusal */
    snprintf(s->note, sizeof s->note,
             "perf counter %.200s (pid=%d cpu=%d) %s (%s); it is read on its own", ch->path,
             ch->pid, ch->cpu, what, strerror(e));
}

/* Open input i: perf counters join the group of the first earlier counter with the same
 * target, or lead a new group when a later one will join; anything the kernel refuses
 * to group is opened on its own, exactly as without grouping. */
int open_one(alems_sampler *s, int i, char *err, size_t errlen)
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
    if ((ch->perf_flags & ALEMS_PERF_THREAD) &&
        ((ch->kind == ALEMS_CH_PERF && fd == -ESRCH) ||
         (ch->kind == ALEMS_CH_TEXT_FILE && (fd == -ENOENT || fd == -ESRCH)))) {
        st->last = 0; /* the thread exited between listing and opening: it counts nothing */
        st->no_value = 0;
        return 0;
    }
    return fd;
}
