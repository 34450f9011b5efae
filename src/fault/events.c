/* events.c — the application's changes to its mappings, as uffd A reports them.
 *
 *  EVENT_REMOVE (madvise DONTNEED / FREE / REMOVE) -> ops->release
 *  EVENT_UNMAP  (munmap, mremap shrinking)         -> ops->release
 *  EVENT_REMAP  (mremap) within the region          -> ops->remap
 *  EVENT_REMAP  out of the region                   -> logged as an error naming the range;
 *               the moved range is unregistered (it is no longer ours: pages whose content
 *               was not local are zeros there) and its pages are released
 *
 * The kernel lets the madvise/munmap that raised an event proceed as soon as the event is
 * read, so release() runs concurrently with (or after) the kernel's zap of the range.
 * While the event is queued, uffd A is "mmap_changing" and UFFDIO_COPY/MOVE on it fail
 * with EAGAIN. REMOVE/UNMAP are subscribed only with UFFDIO_MOVE (the copy fallback drops
 * region pages with MADV_DONTNEED itself and must not see its own drops).
 *
 * In thread delivery every vCPU reads events, under the read lock, and handles them before
 * releasing it; in signal delivery the event thread does, with event_busy set. Either way a
 * fault raised after the kernel let the madvise/munmap/mremap go on is served only after
 * release()/remap() returned: it sees the new state.
 */
#define _GNU_SOURCE
#include "fault/fault_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* Clamps [start, end) to the region; false when they do not overlap. */
static bool clamp_to_region(const struct lethe_region *r, uint64_t *start, uint64_t *end)
{
    uint64_t lo = (uint64_t)(uintptr_t)r->base, hi = lo + r->size;
    if (*end <= lo || *start >= hi)
        return false;
    if (*start < lo)
        *start = lo;
    if (*end > hi)
        *end = hi;
    return *start < *end;
}

static bool overlaps_parking(const struct lethe_region *r, uint64_t start, uint64_t end)
{
    uint64_t lo = (uint64_t)(uintptr_t)r->park, hi = lo + r->park_size;
    return start < hi && end > lo;
}

static void release_range(struct lethe_region *r, uint64_t start, uint64_t end, const char *why)
{
    if (overlaps_parking(r, start, end))
        lethe_error("%s of %#llx..%#llx touches the parking area: a runtime bug", why,
                    (unsigned long long)start, (unsigned long long)end);
    start &= ~(LETHE_PAGE_SIZE - 1);
    end = (end + LETHE_PAGE_SIZE - 1) & ~(LETHE_PAGE_SIZE - 1);
    if (!clamp_to_region(r, &start, &end))
        return;
    uint64_t vpn = fault_vpn(r, start), n = (end - start) >> LETHE_PAGE_SHIFT;
    lethe_debug("%s: pages %llu..%llu released", why, (unsigned long long)vpn,
                (unsigned long long)(vpn + n));
    if (r->ops->release)
        r->ops->release(r->core, vpn, n);
}

/* Calls fn(line, arg) for each line of a /proc file; stops when fn returns true. No
 * allocation and only async-signal-safe calls: the SIGBUS handler uses it. */
static void for_each_line(const char *path, bool (*fn)(char *line, void *arg), void *arg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[4096];
    size_t have = 0;
    bool done = false;
    while (!done) {
        ssize_t got = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (got <= 0)
            break;
        have += (size_t)got;
        buf[have] = 0;
        char *line = buf, *nl;
        while (!done && (nl = strchr(line, '\n')) != NULL) {
            *nl = 0;
            done = fn(line, arg);
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
        if (have == sizeof(buf) - 1) /* a line longer than the buffer: drop it */
            have = 0;
    }
    close(fd);
}

static uint64_t parse_hex(const char *s, const char **end)
{
    uint64_t v = 0;
    for (;; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9')
            d = (unsigned)(*s - '0');
        else if (*s >= 'a' && *s <= 'f')
            d = (unsigned)(*s - 'a' + 10);
        else
            break;
        v = v * 16 + d;
    }
    *end = s;
    return v;
}

/* "lo-hi perms ..." of /proc/self/maps and smaps: does it contain addr? */
static bool mapping_line_contains(const char *line, uint64_t addr, uint64_t *hi)
{
    const char *p;
    uint64_t lo = parse_hex(line, &p);
    if (*p != '-')
        return false;
    *hi = parse_hex(p + 1, &p);
    return *p == ' ' && addr >= lo && addr < *hi;
}

struct smaps_query {
    uint64_t addr;
    bool in_mapping;
    int result;
};

static bool smaps_line(char *line, void *arg)
{
    struct smaps_query *q = arg;
    uint64_t hi;
    if (!q->in_mapping) {
        q->in_mapping = mapping_line_contains(line, q->addr, &hi);
        return false;
    }
    if (strncmp(line, "VmFlags:", 8) != 0)
        return false;
    q->result = strstr(line, " um") != NULL;
    return true;
}

int fault_mapping_is_uffd_missing(uint64_t addr)
{
    struct smaps_query q = {.addr = addr, .result = -1};
    for_each_line("/proc/self/smaps", smaps_line, &q);
    return q.result;
}

struct maps_query {
    uint64_t addr;
    uint64_t end;
};

static bool maps_line(char *line, void *arg)
{
    struct maps_query *q = arg;
    uint64_t hi;
    if (!mapping_line_contains(line, q->addr, &hi))
        return false;
    q->end = hi;
    return true;
}

/* End of the mapping that contains addr, from /proc/self/maps (0 if none). */
static uint64_t mapping_end(uint64_t addr)
{
    struct maps_query q = {.addr = addr};
    for_each_line("/proc/self/maps", maps_line, &q);
    return q.end;
}

static void handle_remap(struct lethe_region *r, uint64_t from, uint64_t to, uint64_t len)
{
    uint64_t start = from, end = from + len;
    if (!clamp_to_region(r, &start, &end)) {
        lethe_warn("mremap event for %#llx..%#llx outside the region: ignored",
                   (unsigned long long)from, (unsigned long long)(from + len));
        return;
    }
    uint64_t dst = to + (start - from), n = (end - start) >> LETHE_PAGE_SHIFT;
    uint64_t dlo = dst, dhi = dst + (end - start);
    uint64_t rlo = (uint64_t)(uintptr_t)r->base, rhi = rlo + r->size;
    if (dlo >= rlo && dhi <= rhi) {
        if (r->ops->remap)
            r->ops->remap(r->core, fault_vpn(r, start), fault_vpn(r, dst), n);
        return;
    }
    lethe_error("mremap moved region pages %llu..%llu (%#llx..%#llx) out of the region to "
                "%#llx: Lethe no longer manages them; pages that were not resident read as "
                "zeros there (return region memory through liblethe's mremap instead)",
                (unsigned long long)fault_vpn(r, start),
                (unsigned long long)fault_vpn(r, start) + n, (unsigned long long)start,
                (unsigned long long)end, (unsigned long long)dst);
    /* The mapping at dst keeps uffd A's registration, and a grown mremap makes it longer
     * than the event says: unregister all of it, so its faults are the kernel's again. */
    uint64_t mend = mapping_end(dlo);
    if (mend > dhi)
        dhi = mend;
    struct uffdio_range range = {.start = dlo, .len = dhi - dlo};
    if (ioctl(r->uffd, UFFDIO_UNREGISTER, &range) != 0)
        lethe_warn("cannot unregister %#llx..%#llx: %s", (unsigned long long)dlo,
                   (unsigned long long)dhi, strerror(errno));
    if (r->ops->release)
        r->ops->release(r->core, fault_vpn(r, start), n);
}

void fault_handle_event(struct lethe_region *r, struct fault_vcpu *v, const struct uffd_msg *m)
{
    (void)v;
    atomic_fetch_add_explicit(&r->events, 1, memory_order_relaxed);
    switch (m->event) {
    case UFFD_EVENT_REMOVE:
        release_range(r, m->arg.remove.start, m->arg.remove.end, "madvise");
        break;
    case UFFD_EVENT_UNMAP:
        release_range(r, m->arg.remove.start, m->arg.remove.end, "munmap");
        break;
    case UFFD_EVENT_REMAP:
        handle_remap(r, m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
        break;
    case UFFD_EVENT_PAGEFAULT: {
        /* Signal delivery never queues faults; wake the thread rather than leave it stuck. */
        lethe_error("unexpected queued fault at %#llx in signal delivery",
                    (unsigned long long)m->arg.pagefault.address);
        struct uffdio_range range = {.start = m->arg.pagefault.address & ~(LETHE_PAGE_SIZE - 1),
                                     .len = LETHE_PAGE_SIZE};
        ioctl(r->uffd, UFFDIO_WAKE, &range);
        break;
    }
    default:
        lethe_warn("userfaultfd event %#x ignored", m->event);
        break;
    }
}

static void *event_main(void *arg)
{
    struct lethe_region *r = arg;
    lethe_log_set_role("uffd events");
    struct pollfd pfd[2] = {{.fd = r->uffd, .events = POLLIN},
                            {.fd = r->stop_fd, .events = POLLIN}};
    while (!atomic_load_explicit(&r->stopping, memory_order_relaxed)) {
        int n = poll(pfd, 2, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            lethe_error("event thread: poll failed: %s", strerror(errno));
            abort();
        }
        if (pfd[1].revents)
            break;
        struct uffd_msg m;
        atomic_store(&r->event_busy, 1);
        ssize_t got = read(r->uffd, &m, sizeof(m));
        if (got == (ssize_t)sizeof(m))
            fault_handle_event(r, NULL, &m);
        atomic_store(&r->event_busy, 0);
        if (got < 0 && errno != EAGAIN && errno != EINTR) {
            lethe_error("event thread: reading the userfaultfd failed: %s", strerror(errno));
            abort();
        }
    }
    return NULL;
}

int fault_event_thread_start(struct lethe_region *r)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = -pthread_create(&r->event_thread, &attr, event_main, r);
    pthread_attr_destroy(&attr);
    if (rc < 0) {
        lethe_error("cannot start the event thread: %s", strerror(-rc));
        return rc;
    }
    r->event_thread_started = true;
    pthread_setname_np(r->event_thread, "lethe-events");
    return 0;
}

void fault_event_thread_stop(struct lethe_region *r)
{
    if (r->event_thread_started) {
        pthread_join(r->event_thread, NULL);
        r->event_thread_started = false;
    }
}
