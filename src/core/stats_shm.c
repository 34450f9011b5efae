/* stats_shm.c — see stats_shm.h. The segment is a fixed header, the command slot on its own
 * cache line, then the snapshot as an array of 64-bit words. Every access to the shared words
 * is atomic, and the seqlock needs no fence (ThreadSanitizer does not model fences): the
 * writer makes the sequence odd, stores every word with release, then makes the sequence
 * even with release; the reader loads the sequence with acquire, every word with acquire,
 * then the sequence again. A reader that saw any word of an update thereby sees the odd
 * sequence stored before it, so a torn copy always fails the final comparison. On x86 these
 * are plain moves.
 *
 * The request of the command slot is one word, (ticket << 40) | pages, so that a request is
 * never read half old, half new.
 */
#define _GNU_SOURCE
#include "core/stats_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SNAP_WORDS  (sizeof(struct lethe_stats_snapshot) / sizeof(uint64_t))
#define READ_TRIES  10000
#define REQ_SHIFT   40
#define REQ_PAGES   ((1ULL << REQ_SHIFT) - 1)
#define REQ_TICKETS ((1ULL << (64 - REQ_SHIFT)) - 1)

_Static_assert(sizeof(struct lethe_stats_snapshot) % sizeof(uint64_t) == 0,
               "the snapshot is copied in 64-bit words");
_Static_assert(offsetof(struct lethe_stats_snapshot, shards) % sizeof(uint64_t) == 0,
               "the shard array starts on a word");

struct lethe_stats_shm {
    uint64_t magic;
    uint32_t version;
    uint32_t layout_size; /* sizeof(struct lethe_stats_shm): catches layout drift */
    uint64_t seq;         /* seqlock: odd while a writer is inside */
    uint64_t publications;
    uint64_t pad0[4];
    /* command slot (lethed writes req_*, the program writes rep_*) */
    uint64_t request; /* (ticket << REQ_SHIFT) | pages */
    uint64_t pad_req;
    uint64_t rep_ticket;
    uint64_t rep_result; /* int64_t stored as its bits */
    uint64_t rep_value;
    uint64_t pad1[3];
    uint64_t words[SNAP_WORDS];
};

uint64_t lethe_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t lethe_stats_shm_size(void)
{
    uint64_t n = sizeof(struct lethe_stats_shm);
    return (n + LETHE_PAGE_SIZE - 1) & ~(uint64_t)(LETHE_PAGE_SIZE - 1);
}

static uint64_t load(const uint64_t *p, int order)
{
    return __atomic_load_n(p, order);
}

static void store(uint64_t *p, uint64_t v, int order)
{
    __atomic_store_n(p, v, order);
}

int lethe_stats_shm_create(struct lethe_stats_shm **out, int *fd_out)
{
    int fd = memfd_create("lethe-stats", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint64_t size = lethe_stats_shm_size();
    if (ftruncate(fd, (off_t)size) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    struct lethe_stats_shm *s = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (s == MAP_FAILED) {
        int err = -errno;
        close(fd);
        return err;
    }
    /* ftruncate zero-filled it: state STARTING, no snapshot yet. */
    s->version = LETHE_STATS_SHM_VERSION;
    s->layout_size = (uint32_t)sizeof(*s);
    store(&s->magic, LETHE_STATS_SHM_MAGIC, __ATOMIC_RELEASE);
    *out = s;
    *fd_out = fd;
    return 0;
}

static int parse_fd(const char *s, int *fd)
{
    if (!*s)
        return -EINVAL;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 1000000)
            return -EINVAL;
        v = v * 10 + (*s - '0');
    }
    *fd = (int)v;
    return 0;
}

int lethe_stats_shm_attach(const char *spec, struct lethe_stats_shm **out)
{
    int fd;
    bool close_fd = true;
    if (strncmp(spec, "fd:", 3) == 0) {
        if (parse_fd(spec + 3, &fd) < 0)
            return -EINVAL;
    } else if (spec[0] == '/') {
        fd = shm_open(spec, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
    } else {
        return -EINVAL;
    }
    uint64_t size = lethe_stats_shm_size();
    struct stat st;
    int err = 0;
    if (fstat(fd, &st) != 0)
        err = -errno;
    else if ((uint64_t)st.st_size < size)
        err = -EINVAL;
    struct lethe_stats_shm *s = MAP_FAILED;
    if (!err) {
        s = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (s == MAP_FAILED)
            err = -errno;
    }
    if (close_fd)
        close(fd);
    if (err)
        return err;
    if (load(&s->magic, __ATOMIC_ACQUIRE) != LETHE_STATS_SHM_MAGIC ||
        s->version != LETHE_STATS_SHM_VERSION || s->layout_size != sizeof(*s)) {
        munmap(s, size);
        return -EINVAL;
    }
    *out = s;
    return 0;
}

void lethe_stats_shm_detach(struct lethe_stats_shm *s)
{
    if (s)
        munmap(s, lethe_stats_shm_size());
}

static uint64_t snapshot_words(uint64_t nshards)
{
    if (nshards > LETHE_MAX_SHARDS)
        nshards = LETHE_MAX_SHARDS;
    return (offsetof(struct lethe_stats_snapshot, shards) +
            nshards * sizeof(struct lethe_shard_stats)) /
           sizeof(uint64_t);
}

void lethe_stats_shm_claim_writer(struct lethe_stats_shm *s)
{
    uint64_t seq = load(&s->seq, __ATOMIC_RELAXED);
    if (seq & 1)
        store(&s->seq, seq + 1, __ATOMIC_RELEASE);
}

void lethe_stats_shm_publish(struct lethe_stats_shm *s, struct lethe_stats_snapshot *snap)
{
    /* Enter: turn an even sequence odd. Another writer inside keeps it odd: wait it out. */
    uint64_t seq = load(&s->seq, __ATOMIC_RELAXED);
    for (;;) {
        if (!(seq & 1) && __atomic_compare_exchange_n(&s->seq, &seq, seq + 1, false,
                                                      __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            break;
        sched_yield();
        seq = load(&s->seq, __ATOMIC_RELAXED);
    }
    uint64_t pubs = load(&s->publications, __ATOMIC_RELAXED) + 1;
    store(&s->publications, pubs, __ATOMIC_RELAXED);
    snap->seq = pubs;
    snap->updated_ns = lethe_monotonic_ns();
    const uint64_t *src = (const uint64_t *)snap;
    uint64_t n = snapshot_words(snap->nshards);
    for (uint64_t i = 0; i < n; i++)
        store(&s->words[i], src[i], __ATOMIC_RELEASE);
    store(&s->seq, seq + 2, __ATOMIC_RELEASE);
}

int lethe_stats_shm_read(const struct lethe_stats_shm *s, struct lethe_stats_snapshot *out)
{
    uint64_t *dst = (uint64_t *)out;
    const uint64_t nshards_word = offsetof(struct lethe_stats_snapshot, nshards) / sizeof(uint64_t);
    for (unsigned tries = 0; tries < READ_TRIES; tries++) {
        uint64_t seq = load(&s->seq, __ATOMIC_ACQUIRE);
        if (seq & 1) {
            sched_yield();
            continue;
        }
        uint64_t nshards = load(&s->words[nshards_word], __ATOMIC_ACQUIRE);
        uint64_t n = snapshot_words(nshards);
        for (uint64_t i = 0; i < n; i++)
            dst[i] = load(&s->words[i], __ATOMIC_ACQUIRE);
        if (load(&s->seq, __ATOMIC_ACQUIRE) == seq) {
            if (out->nshards > LETHE_MAX_SHARDS)
                out->nshards = LETHE_MAX_SHARDS;
            out->paths[sizeof(out->paths) - 1] = '\0';
            out->error[sizeof(out->error) - 1] = '\0';
            return 0;
        }
    }
    return -EAGAIN;
}

uint64_t lethe_stats_shm_request_cache_size(struct lethe_stats_shm *s, uint64_t bytes)
{
    uint64_t ticket = (load(&s->request, __ATOMIC_RELAXED) >> REQ_SHIFT) % REQ_TICKETS + 1;
    uint64_t pages = bytes >> LETHE_PAGE_SHIFT;
    if (pages > REQ_PAGES)
        pages = REQ_PAGES;
    store(&s->request, (ticket << REQ_SHIFT) | pages, __ATOMIC_RELEASE);
    return ticket;
}

bool lethe_stats_shm_poll_reply(const struct lethe_stats_shm *s, uint64_t ticket, int *result,
                                uint64_t *value)
{
    if (load(&s->rep_ticket, __ATOMIC_ACQUIRE) != ticket)
        return false;
    *result = (int)(int64_t)load(&s->rep_result, __ATOMIC_RELAXED);
    *value = load(&s->rep_value, __ATOMIC_RELAXED);
    /* A newer answer cannot have overwritten these: lethed posts one request at a time. */
    return true;
}

bool lethe_stats_shm_take_request(const struct lethe_stats_shm *s, uint64_t *ticket,
                                  uint64_t *bytes)
{
    uint64_t req = load(&s->request, __ATOMIC_ACQUIRE);
    uint64_t t = req >> REQ_SHIFT;
    if (t == 0 || t == load(&s->rep_ticket, __ATOMIC_RELAXED))
        return false;
    *ticket = t;
    *bytes = (req & REQ_PAGES) << LETHE_PAGE_SHIFT;
    return true;
}

void lethe_stats_shm_reply(struct lethe_stats_shm *s, uint64_t ticket, int result, uint64_t value)
{
    store(&s->rep_result, (uint64_t)(int64_t)result, __ATOMIC_RELAXED);
    store(&s->rep_value, value, __ATOMIC_RELAXED);
    store(&s->rep_ticket, ticket, __ATOMIC_RELEASE);
}
