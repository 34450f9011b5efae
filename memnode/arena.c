/* arena.c — the memory an RDMA memory node without on-demand paging lends (arena.h).
 *
 * The arena is one memfd the size of the node's capacity, mapped MAP_SHARED once (the view),
 * populated at start-up by up to MN_ARENA_THREADS threads (MADV_POPULATE_WRITE, chunk by
 * chunk: allocating and zeroing pages is what costs, and it scales with CPUs) and then
 * mlock'd, so that free pages stay resident and a region's MR pins pages that are there.
 * Free space is a sorted list of runs, coalesced on every give. A take is first fit: one run
 * when one is long enough (the span is a piece of the view), else the first runs until the
 * size is met, mapped side by side at a fresh address and faulted in by the same helpers
 * (ibv_reg_mr would fault them one by one). Pages are zeroed when they come back, with the
 * same helpers, not when they go out: a take stays fast, and a span is zero from the start.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "core/config.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define MN_ARENA_PAGE    4096u
#define MN_ARENA_CHUNK   (32ull << 20) /* one helper's unit of work */
#define MN_ARENA_THREADS 8
#define MN_ARENA_RESERVE (64ull << 20) /* left to everything else, at least */

struct mn_arena {
    int memfd;
    uint8_t *view;
    uint64_t bytes;
    unsigned threads;
    struct mn_arena_run *free; /* sorted by off, no two adjacent */
    unsigned nfree, capfree;
    uint64_t free_bytes;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- helpers over ranges */

enum mn_arena_op { OP_POPULATE, OP_ZERO };

struct piece {
    uint8_t *p;
    uint64_t len;
};

struct par_job {
    enum mn_arena_op op;
    const struct piece *pieces;
    unsigned npieces;
    uint64_t nchunks;
    uint64_t next; /* next chunk to do (atomic) */
    int err;       /* first failure, a positive errno (atomic) */
};

/* Faults pages in for writing; before Linux 5.14 (no MADV_POPULATE_WRITE), touches each. */
static int populate(uint8_t *p, uint64_t len)
{
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0)
        return 0;
    if (errno != EINVAL)
        return errno;
    for (uint64_t i = 0; i < len; i += MN_ARENA_PAGE) {
        volatile uint8_t *b = p + i;
        *b = *b;
    }
    return 0;
}

static void do_chunk(struct par_job *j, uint64_t c)
{
    uint64_t first = 0;
    for (unsigned k = 0; k < j->npieces; k++) {
        uint64_t n = (j->pieces[k].len + MN_ARENA_CHUNK - 1) / MN_ARENA_CHUNK;
        if (c < first + n) {
            uint64_t off = (c - first) * MN_ARENA_CHUNK;
            uint64_t len =
                j->pieces[k].len - off < MN_ARENA_CHUNK ? j->pieces[k].len - off : MN_ARENA_CHUNK;
            int err = 0;
            if (j->op == OP_POPULATE)
                err = populate(j->pieces[k].p + off, len);
            else
                memset(j->pieces[k].p + off, 0, len);
            if (err) {
                int none = 0;
                __atomic_compare_exchange_n(&j->err, &none, err, false, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED);
            }
            return;
        }
        first += n;
    }
}

static void *par_worker(void *arg)
{
    struct par_job *j = arg;
    uint64_t c;
    while ((c = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) < j->nchunks)
        do_chunk(j, c);
    return NULL;
}

/* Runs op over the pieces on up to `threads` threads, the caller being one of them.
 * Returns 0 or the first failure's positive errno. */
static int run_parallel(enum mn_arena_op op, const struct piece *pieces, unsigned npieces,
                        unsigned threads, unsigned *used)
{
    struct par_job j = {.op = op, .pieces = pieces, .npieces = npieces};
    for (unsigned k = 0; k < npieces; k++)
        j.nchunks += (pieces[k].len + MN_ARENA_CHUNK - 1) / MN_ARENA_CHUNK;
    if (threads > j.nchunks)
        threads = j.nchunks ? (unsigned)j.nchunks : 1;
    pthread_t tid[MN_ARENA_THREADS];
    unsigned started = 0;
    while (started + 1 < threads && pthread_create(&tid[started], NULL, par_worker, &j) == 0)
        started++;
    par_worker(&j);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    if (used)
        *used = started + 1;
    return j.err;
}

/* ---------------------------------------------------------------- limits */

static uint64_t meminfo_kib(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f)
        return 0;
    char line[128];
    size_t klen = strlen(key);
    unsigned long long kib = 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            kib = strtoull(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

static bool has_cap_ipc_lock(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return false;
    char line[128];
    unsigned long long eff = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "CapEff: %llx", &eff) == 1)
            break;
    fclose(f);
    return eff & (1ull << 14); /* CAP_IPC_LOCK */
}

int mn_mem_check_pinnable(uint64_t bytes, char *why, size_t whylen)
{
    char want[32];
    lethe_format_size(bytes, want, sizeof(want));
    uint64_t avail = meminfo_kib("MemAvailable") << 10;
    uint64_t total = meminfo_kib("MemTotal") << 10;
    uint64_t reserve = total / 16 > MN_ARENA_RESERVE ? total / 16 : MN_ARENA_RESERVE;
    if (avail && bytes + reserve > avail) {
        snprintf(why, whylen,
                 "pinning %s needs that much free memory and %llu MiB to spare, and the kernel "
                 "reports %llu MiB available (MemAvailable)",
                 want, (unsigned long long)(reserve >> 20), (unsigned long long)(avail >> 20));
        return -ENOMEM;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (uint64_t)rl.rlim_cur < bytes && !has_cap_ipc_lock()) {
        snprintf(why, whylen,
                 "pinning %s is over RLIMIT_MEMLOCK (ulimit -l: %llu KiB) and the process "
                 "lacks CAP_IPC_LOCK; raise the limit (systemd: LimitMEMLOCK=infinity)",
                 want, (unsigned long long)(rl.rlim_cur >> 10));
        return -ENOMEM;
    }
    return 0;
}

/* ---------------------------------------------------------------- the arena */

int mn_arena_create(uint64_t bytes, struct mn_arena **out, struct mn_arena_info *info, char *why,
                    size_t whylen)
{
    int rc = mn_mem_check_pinnable(bytes, why, whylen);
    if (rc < 0)
        return rc;
    struct mn_arena *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    a->memfd = -1;
    a->view = MAP_FAILED;
    a->bytes = bytes;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    a->threads = cpus < 1 ? 1 : cpus > MN_ARENA_THREADS ? MN_ARENA_THREADS : (unsigned)cpus;
    a->memfd = memfd_create("lethe-arena", MFD_CLOEXEC);
    if (a->memfd < 0 || ftruncate(a->memfd, (off_t)bytes) < 0) {
        rc = -errno;
        snprintf(why, whylen, "memfd of %llu bytes: %s", (unsigned long long)bytes,
                 strerror(errno));
        goto fail;
    }
    a->view = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, a->memfd, 0);
    if (a->view == MAP_FAILED) {
        rc = -errno;
        snprintf(why, whylen, "mmap of %llu bytes: %s", (unsigned long long)bytes, strerror(errno));
        goto fail;
    }
    madvise(a->view, bytes, MADV_DONTDUMP);
    uint64_t t0 = now_ns();
    struct piece all = {a->view, bytes};
    unsigned used = 1;
    int err = run_parallel(OP_POPULATE, &all, 1, a->threads, &used);
    uint64_t t1 = now_ns();
    if (err) {
        rc = -err;
        snprintf(why, whylen, "allocating its pages: %s", strerror(err));
        goto fail;
    }
    if (mlock(a->view, bytes) < 0) {
        rc = -errno;
        snprintf(why, whylen, "mlock: %s", strerror(errno));
        goto fail;
    }
    uint64_t t2 = now_ns();
    a->capfree = 16;
    a->free = malloc(a->capfree * sizeof(*a->free));
    if (!a->free) {
        rc = -ENOMEM;
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    a->free[0] = (struct mn_arena_run){0, bytes};
    a->nfree = 1;
    a->free_bytes = bytes;
    if (info)
        *info = (struct mn_arena_info){
            .bytes = bytes, .threads = used, .populate_ns = t1 - t0, .lock_ns = t2 - t1};
    *out = a;
    return 0;
fail:
    mn_arena_destroy(a);
    return rc;
}

void mn_arena_destroy(struct mn_arena *a)
{
    if (!a)
        return;
    if (a->view != MAP_FAILED)
        munmap(a->view, a->bytes);
    if (a->memfd >= 0)
        close(a->memfd);
    free(a->free);
    free(a);
}

uint64_t mn_arena_free_bytes(const struct mn_arena *a)
{
    return a->free_bytes;
}

unsigned mn_arena_free_runs(const struct mn_arena *a)
{
    return a->nfree;
}

/* Removes [off, off + len) from free run i, which holds it at its start. */
static void free_cut_front(struct mn_arena *a, unsigned i, uint64_t len)
{
    a->free[i].off += len;
    a->free[i].len -= len;
    a->free_bytes -= len;
    if (a->free[i].len == 0) {
        memmove(&a->free[i], &a->free[i + 1], (a->nfree - i - 1) * sizeof(*a->free));
        a->nfree--;
    }
}

/* Puts a run back, merging it with its neighbours. */
static int free_insert(struct mn_arena *a, struct mn_arena_run r)
{
    unsigned i = 0;
    while (i < a->nfree && a->free[i].off < r.off)
        i++;
    bool prev = i > 0 && a->free[i - 1].off + a->free[i - 1].len == r.off;
    bool next = i < a->nfree && r.off + r.len == a->free[i].off;
    a->free_bytes += r.len;
    if (prev && next) {
        a->free[i - 1].len += r.len + a->free[i].len;
        memmove(&a->free[i], &a->free[i + 1], (a->nfree - i - 1) * sizeof(*a->free));
        a->nfree--;
    } else if (prev) {
        a->free[i - 1].len += r.len;
    } else if (next) {
        a->free[i].off = r.off;
        a->free[i].len += r.len;
    } else {
        if (a->nfree == a->capfree) {
            struct mn_arena_run *f = realloc(a->free, 2 * a->capfree * sizeof(*f));
            if (!f) {
                a->free_bytes -= r.len; /* lost until restart, but never lent twice */
                return -ENOMEM;
            }
            a->free = f;
            a->capfree *= 2;
        }
        memmove(&a->free[i + 1], &a->free[i], (a->nfree - i) * sizeof(*a->free));
        a->free[i] = r;
        a->nfree++;
    }
    return 0;
}

int mn_arena_take(struct mn_arena *a, uint64_t bytes, struct mn_arena_span **out, char *why,
                  size_t whylen)
{
    if (bytes == 0 || bytes % MN_ARENA_PAGE || bytes > a->free_bytes) {
        char want[32], left[32];
        lethe_format_size(bytes, want, sizeof(want));
        lethe_format_size(a->free_bytes, left, sizeof(left));
        snprintf(why, whylen, "the arena has %s free, asked for %s", left, want);
        return bytes > a->free_bytes ? -ENOSPC : -EINVAL;
    }
    for (unsigned i = 0; i < a->nfree; i++) {
        if (a->free[i].len < bytes)
            continue;
        struct mn_arena_span *s = calloc(1, sizeof(*s) + sizeof(s->runs[0]));
        if (!s) {
            snprintf(why, whylen, "out of memory");
            return -ENOMEM;
        }
        s->runs[0] = (struct mn_arena_run){a->free[i].off, bytes};
        s->nruns = 1;
        s->bytes = bytes;
        s->base = a->view + a->free[i].off;
        free_cut_front(a, i, bytes);
        *out = s;
        return 0;
    }
    /* No run is long enough: the first runs, side by side at an address of their own. */
    unsigned n = 0;
    for (uint64_t got = 0; got < bytes; n++)
        got += a->free[n].len;
    struct mn_arena_span *s = calloc(1, sizeof(*s) + n * sizeof(s->runs[0]));
    struct piece *pieces = calloc(n, sizeof(*pieces));
    uint8_t *base = MAP_FAILED;
    if (s && pieces)
        base = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        snprintf(why, whylen, "reserving %llu bytes of address space: %s",
                 (unsigned long long)bytes, s && pieces ? strerror(errno) : "out of memory");
        free(s);
        free(pieces);
        return -ENOMEM;
    }
    uint64_t pos = 0;
    for (unsigned k = 0; k < n; k++) {
        uint64_t len = bytes - pos < a->free[k].len ? bytes - pos : a->free[k].len;
        s->runs[k] = (struct mn_arena_run){a->free[k].off, len};
        pieces[k] = (struct piece){base + pos, len};
        if (mmap(base + pos, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, a->memfd,
                 (off_t)a->free[k].off) == MAP_FAILED) {
            int err = errno;
            munmap(base, bytes);
            snprintf(why, whylen, "mapping %u runs of the arena side by side: %s", n,
                     strerror(err));
            free(s);
            free(pieces);
            return -err;
        }
        pos += len;
    }
    int err = run_parallel(OP_POPULATE, pieces, n, a->threads, NULL);
    free(pieces);
    if (err) {
        munmap(base, bytes);
        snprintf(why, whylen, "faulting in %u runs of the arena: %s", n, strerror(err));
        free(s);
        return -err;
    }
    madvise(base, bytes, MADV_DONTDUMP);
    for (unsigned k = 0; k < n; k++)
        free_cut_front(a, 0, s->runs[k].len); /* they were the first n: always index 0 */
    s->nruns = n;
    s->bytes = bytes;
    s->base = base;
    s->own_mapping = true;
    *out = s;
    return 0;
}

uint64_t mn_arena_give(struct mn_arena *a, struct mn_arena_span *s, bool scrub)
{
    if (!s)
        return 0;
    if (s->own_mapping)
        munmap(s->base, s->bytes);
    uint64_t t0 = now_ns();
    if (scrub) {
        struct piece stack[8], *pieces = s->nruns <= 8 ? stack : calloc(s->nruns, sizeof(*pieces));
        if (pieces) {
            for (unsigned k = 0; k < s->nruns; k++)
                pieces[k] = (struct piece){a->view + s->runs[k].off, s->runs[k].len};
            run_parallel(OP_ZERO, pieces, s->nruns, a->threads, NULL);
        } else {
            for (unsigned k = 0; k < s->nruns; k++)
                memset(a->view + s->runs[k].off, 0, s->runs[k].len);
        }
        if (pieces != stack)
            free(pieces);
    }
    uint64_t zeroing = scrub ? now_ns() - t0 : 0;
    for (unsigned k = 0; k < s->nruns; k++)
        free_insert(a, s->runs[k]);
    free(s);
    return zeroing;
}
