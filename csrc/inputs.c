/* One input of the C core: open, read, parse (text files, MSRs, a perf counter on its
 * own), and the probe used by discovery and `alems doctor`. */
#include "internal.h"

int64_t alems_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void set_err(char *err, size_t errlen, const char *fmt, const char *a, int e)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, strerror(e));
}

/* "cannot read <path>: <why>", saying what ERANGE means for a counter file. */
void read_err(char *err, size_t errlen, const char *path, int e)
{
    if (e == ERANGE)
        set_err(err, errlen, "cannot read %s: its number does not fit in 64 bits (%s)", path, e);
    else
        set_err(err, errlen, "cannot read %s: %s", path, e);
}

/* ------------------------------------------------------------------ parsing */

/* The first integer in [p, end) into *out: 0, -ENODATA (none there) or -ERANGE (it does
 * not fit in int64_t: an error, never a wrapped or clamped value). */
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
    /* Accumulate the magnitude unsigned, checked against the signed type's limit. */
    const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        uint64_t d = (uint64_t)(*p++ - '0');
        if (v > (limit - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    /* -(v - 1) - 1 reaches INT64_MIN without negating an out-of-range value. */
    *out = neg && v ? -(int64_t)(v - 1) - 1 : (int64_t)v;
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
            int rc = parse_int(tok, p, &v);
            if (rc < 0)
                return rc;
            if (__builtin_add_overflow(sum, v, &sum))
                return -ERANGE;
        }
    }
    if (field < 17)
        return -ENODATA;
    *out = sum;
    return 0;
}

/* ------------------------------------------------------------------ one perf counter */

/* Open one perf counter: on its own (group_fd < 0, grouped = 0), as a group leader
 * (group_fd < 0, grouped = 1) or as a member of group_fd's group.  Members start enabled
 * and follow their leader, which alone carries disabled/enable_on_exec. */
int perf_open(const alems_channel *ch, int group_fd, int grouped)
{
    if (group_fd >= 0 && (ch->perf_flags & ALEMS_PERF_TEST_NO_JOIN))
        return -EINVAL; /* fault injection: refused as a kernel would refuse it */
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

/* One perf read (value, time enabled, time running) as a count into *out, scaled up to
 * the enabled time when multiplexed. A counter enabled but never scheduled (running == 0)
 * has no count (READ_NO_VALUE: a null, not 0); one not enabled yet (enabled == 0, e.g.
 * before enable_on_exec's exec) has counted nothing: 0. */
int perf_value(const alems_channel *ch, uint64_t val, uint64_t enabled, uint64_t running,
               int64_t *out)
{
    if (ch->perf_flags & ALEMS_PERF_TEST_NEVER_RAN) /* fault injection, tests only */
        running = 0;
    else if (ch->perf_flags & ALEMS_PERF_TEST_HALF_RUNNING)
        running = enabled / 2;
    if (running == 0 && enabled > 0)
        return READ_NO_VALUE;
    if (running > 0 && running < enabled)
        val = (uint64_t)((unsigned __int128)val * enabled / running);
    *out = (int64_t)val;
    return 0;
}

/* ------------------------------------------------------------------ inputs */

/* Read one input into *v.  textbuf holds ALEMS_TEXT_BUF bytes. */
int read_input(const alems_channel *ch, int fd, char *textbuf, int64_t *v)
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
        return perf_value(ch, d[0], d[1], d[2], v);
    }
    }
    return -EINVAL;
}

int open_input(const alems_channel *ch, char *err, size_t errlen)
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
    /* O_NONBLOCK: a FIFO planted in place of a counter file must not block the open
     * (nor the reads: it is refused below). Every input is a regular file (sysfs,
     * procfs), or a character device for an MSR. */
    fd = open(ch->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        set_err(err, errlen, "cannot open %s: %s", ch->path, e);
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        set_err(err, errlen, "cannot open %s: %s", ch->path, e);
        return -e;
    }
    if (!(S_ISREG(st.st_mode) || (ch->kind == ALEMS_CH_MSR && S_ISCHR(st.st_mode)))) {
        close(fd);
        if (err && errlen)
            snprintf(err, errlen, "cannot read %s: not a regular file (%s)", ch->path,
                     S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISDIR(st.st_mode) ? "a directory"
                     : S_ISSOCK(st.st_mode) ? "a socket" : "a device");
        return -EINVAL;
    }
    /* Back to blocking reads for the counter itself (an MSR driver may rely on it). */
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

int check_channel(const alems_channel *ch, char *err, size_t errlen)
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
    if (rc == READ_NO_VALUE) { /* a perf counter not scheduled yet: no value to give */
        rc = -ENODATA;
        set_err(err, errlen, "cannot read %s: the perf counter has not run yet "
                "(time_running = 0; %s)", ch->path, ENODATA);
    } else if (rc < 0) {
        read_err(err, errlen, ch->path, -rc);
    } else if (value) {
        *value = v;
    }
    close(fd);
    free(buf);
    return rc;
}
