/* core_stress.h — the swapper's stress engine, shared by test/test_stress.c (Criterion) and
 * test/stress/core_swapper.c (a plain program: the ThreadSanitizer run, where Criterion cannot
 * start).
 *
 * Many threads read and write a working set four times the cache, and every page must always
 * hold exactly what was last written to it. Each page holds a function of (page number,
 * version) (core_test.h). A page's version lives in test memory beside a per-page spin lock:
 * a writer takes the lock, checks the page still holds the version it expects and writes the
 * next one; a reader takes the lock and checks. Between those, lock-free "peeks" read the
 * page's first word (its page number, which never changes) from any thread, so several
 * threads fault on the same page at once. Accesses mix random pages with sequential runs.
 * A churn thread allocates, purges and frees extents of its own meanwhile (release paths).
 * Cache 2 MiB, working set 8 MiB.
 *
 * stress_run() runs a case over the `local` transport; stress_run_config() runs it over any
 * config (test/test_remote_stress.c and test/stress/remote_swapper.c point it at a real
 * memory node with stress_remote_config()).
 */
#ifndef LETHE_CORE_STRESS_H
#define LETHE_CORE_STRESS_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core_test.h"

#define STRESS_PAGES       2048 /* 8 MiB */
#define STRESS_MAX_THREADS 8

struct stress_shared {
    struct lethe *l;
    char *base;
    atomic_uchar locks[STRESS_PAGES];
    uint32_t versions[STRESS_PAGES];
    double seconds;
    atomic_ulong mismatches;
    char first_error[256];
    atomic_int error_claimed;
    atomic_bool stop_churn;
    atomic_bool churn_started; /* the churn thread is in its first round */
    unsigned long churn_rounds;
};

struct stress_worker {
    struct stress_shared *sh;
    unsigned id;
    unsigned long ops;
};

struct stress_result {
    int start_rc;             /* lethe_start's result */
    unsigned long mismatches; /* during the run and in the final sweep */
    unsigned long ops;
    unsigned idle_threads;      /* threads that made no progress */
    unsigned long churn_rounds; /* extent alloc/purge/free rounds of the churn thread */
    struct lethe_stats stats;
    char error[256];
    char paths[256]; /* lethe_paths(): delivery, transport (with its node), ... */
};

static inline void stress_page_lock(struct stress_shared *sh, unsigned pg)
{
    unsigned char expect = 0;
    unsigned spins = 0;
    while (!atomic_compare_exchange_weak_explicit(&sh->locks[pg], &expect, 1, memory_order_acquire,
                                                  memory_order_relaxed)) {
        expect = 0;
        if (++spins > 64)
            sched_yield();
    }
}

static inline void stress_page_unlock(struct stress_shared *sh, unsigned pg)
{
    atomic_store_explicit(&sh->locks[pg], 0, memory_order_release);
}

static inline void stress_report(struct stress_shared *sh, const char *what, unsigned pg,
                                 uint64_t version, unsigned where)
{
    atomic_fetch_add(&sh->mismatches, 1);
    if (atomic_exchange(&sh->error_claimed, 1) == 0) {
        const volatile uint64_t *w =
            (const volatile uint64_t *)(void *)(sh->base + (size_t)pg * PG);
        snprintf(sh->first_error, sizeof(sh->first_error),
                 "%s: page %u version %llu: word %u wrong (holds page %llu version %llu)", what, pg,
                 (unsigned long long)version, where ? where - 1 : 0, (unsigned long long)w[0],
                 (unsigned long long)w[1]);
    }
}

static inline uint64_t stress_rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static inline double stress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void stress_op(struct stress_shared *sh, unsigned pg, uint64_t r)
{
    char *page = sh->base + (size_t)pg * PG;
    unsigned kind = (unsigned)(r % 20);
    if (kind < 2) { /* peek, no lock */
        uint64_t w0 = __atomic_load_n((uint64_t *)(void *)page, __ATOMIC_RELAXED);
        if (w0 != pg)
            stress_report(sh, "peek", pg, 0, 1);
        return;
    }
    stress_page_lock(sh, pg);
    uint32_t v = sh->versions[pg];
    unsigned bad = core_test_check(page, pg, v);
    if (bad)
        stress_report(sh, kind < 11 ? "before write" : "read", pg, v, bad);
    if (kind < 11) {
        core_test_fill(page, pg, v + 1);
        sh->versions[pg] = v + 1;
    }
    stress_page_unlock(sh, pg);
}

static inline void *stress_worker_main(void *arg)
{
    struct stress_worker *a = arg;
    struct stress_shared *sh = a->sh;
    uint64_t s = 0x9e3779b97f4a7c15ULL * (a->id + 1) + (uint64_t)time(NULL);
    double end = stress_now() + sh->seconds;
    unsigned long ops = 0;
    while (stress_now() < end && atomic_load(&sh->mismatches) == 0) {
        if (stress_rnd(&s) % 4 == 0) { /* a sequential run */
            unsigned start = (unsigned)(stress_rnd(&s) % STRESS_PAGES);
            for (unsigned i = 0; i < 32; i++, ops++)
                stress_op(sh, (start + i) % STRESS_PAGES, stress_rnd(&s));
        } else {
            for (unsigned i = 0; i < 32; i++, ops++)
                stress_op(sh, (unsigned)(stress_rnd(&s) % STRESS_PAGES), stress_rnd(&s));
        }
    }
    a->ops = ops;
    return NULL;
}

/* Beside the workers, one thread churns extents of its own: allocate, check they read as
 * zeros, fill, purge (zeros again), fill, free — so that releases race the rebalancer, the
 * evictions and the faults of the other threads. */
static inline void *stress_churn_main(void *arg)
{
    struct stress_shared *sh = arg;
    const unsigned n = 64;
    unsigned long rounds = 0;
    atomic_store(&sh->churn_started, true);
    for (;;) {
        /* the first round always runs: the workers start only once it has begun */
        if (rounds > 0 && atomic_load(&sh->stop_churn))
            break;
        char *p = lethe_extent_alloc(sh->l, n * PG, 0);
        if (!p) {
            stress_report(sh, "churn: extent_alloc failed", 0, 0, 0);
            break;
        }
        for (unsigned i = 0; i < n; i++) {
            if (!core_test_is_zero(p + i * PG))
                stress_report(sh, "churn: fresh extent not zero", i, 0, 0);
            core_test_fill(p + i * PG, 100000 + i, rounds);
        }
        for (unsigned i = 0; i < n; i++)
            if (core_test_check(p + i * PG, 100000 + i, rounds))
                stress_report(sh, "churn: before purge", i, rounds, 0);
        lethe_extent_purge(sh->l, p, n * PG);
        for (unsigned i = 0; i < n; i++) {
            if (!core_test_is_zero(p + i * PG))
                stress_report(sh, "churn: purged page not zero", i, 0, 0);
            core_test_fill(p + i * PG, 200000 + i, rounds);
        }
        lethe_extent_free(sh->l, p, n * PG);
        rounds++;
    }
    sh->churn_rounds = rounds;
    return NULL;
}

/* The stress config (cache 2 MiB, region 32 MiB, 8 shards) over a memory node: `kind` shm
 * (node = its Unix socket path) or tcp (node = host:port), authenticated with the token in
 * token_file, asking the node for remote_size bytes. */
static inline struct lethe_config stress_remote_config(enum lethe_transport_kind kind,
                                                       const char *node, const char *token_file,
                                                       uint64_t remote_size, enum lethe_delivery d,
                                                       enum lethe_reclaim rc)
{
    struct lethe_config c = core_test_config(d, rc, 2UL << 20, 32UL << 20);
    c.shards = 8;
    c.transport = kind;
    c.memnode_embedded = false;
    c.n_memnodes = 1;
    snprintf(c.memnodes[0], sizeof(c.memnodes[0]), "%s", node);
    snprintf(c.token_file, sizeof(c.token_file), "%s", token_file);
    c.remote_size = remote_size;
    c.connect_timeout_us = 2000000;
    return c;
}

/* Waits (at most `seconds`) until pages have gone out and come back, then writes one byte to
 * ready_fd: a test that breaks the memory node waits for that, so that it breaks a run that
 * is really swapping. */
static inline void stress_signal_swapping(struct lethe *l, int ready_fd, double seconds)
{
    double end = stress_now() + seconds;
    while (stress_now() < end) {
        struct lethe_stats st;
        lethe_get_stats(l, &st);
        if (st.swap_ins > 0 && st.swap_outs > 0) {
            if (write(ready_fd, "s", 1) < 0) {
            }
            return;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

/* One case over config c: `threads` application threads for `seconds`. ready_fd: -1, or where
 * to write one byte once the run swaps (stress_signal_swapping). */
static inline struct stress_result stress_run_config(const struct lethe_config *c, unsigned threads,
                                                     double seconds, int ready_fd)
{
    struct stress_result res;
    memset(&res, 0, sizeof(res));
    struct lethe *l = NULL;
    res.start_rc = lethe_start(c, &l);
    if (res.start_rc != 0)
        return res;
    snprintf(res.paths, sizeof(res.paths), "%s", lethe_paths(l));
    struct stress_shared *sh = calloc(1, sizeof(*sh));
    sh->seconds = seconds;
    sh->l = l;
    sh->base = lethe_extent_alloc(l, STRESS_PAGES * PG, 0);
    for (unsigned pg = 0; pg < STRESS_PAGES; pg++)
        core_test_fill(sh->base + (size_t)pg * PG, pg, 0);

    if (threads > STRESS_MAX_THREADS)
        threads = STRESS_MAX_THREADS;
    pthread_t t[STRESS_MAX_THREADS];
    struct stress_worker args[STRESS_MAX_THREADS];
    pthread_t churn;
    atomic_init(&sh->stop_churn, false);
    atomic_init(&sh->churn_started, false);
    pthread_create(&churn, NULL, stress_churn_main, sh);
    /* On a loaded machine (2 CPUs, sanitizers, 8 workers) the churn thread was once not
     * scheduled before the workers' 0.15 s were over: no round, a failed run. The workers
     * start once it runs; the caller's alarm catches a churn thread that never does. */
    while (!atomic_load(&sh->churn_started))
        sched_yield();
    for (unsigned i = 0; i < threads; i++) {
        args[i] = (struct stress_worker){sh, i, 0};
        pthread_create(&t[i], NULL, stress_worker_main, &args[i]);
    }
    if (ready_fd >= 0)
        stress_signal_swapping(l, ready_fd, seconds);
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        res.ops += args[i].ops;
        res.idle_threads += args[i].ops == 0;
    }
    atomic_store(&sh->stop_churn, true);
    pthread_join(churn, NULL);
    res.churn_rounds = sh->churn_rounds;
    res.idle_threads += sh->churn_rounds == 0;
    /* a final sweep: every page holds its last version */
    for (unsigned pg = 0; pg < STRESS_PAGES; pg++) {
        unsigned bad = core_test_check(sh->base + (size_t)pg * PG, pg, sh->versions[pg]);
        if (bad)
            stress_report(sh, "final sweep", pg, sh->versions[pg], bad);
    }
    res.mismatches = atomic_load(&sh->mismatches);
    snprintf(res.error, sizeof(res.error), "%s", sh->first_error);
    lethe_get_stats(l, &res.stats);
    lethe_stop(l);
    free(sh);
    return res;
}

/* One case over the `local` transport: `threads` application threads for `seconds`. */
static inline struct stress_result stress_run(enum lethe_delivery d, enum lethe_reclaim rc,
                                              unsigned threads, double seconds)
{
    struct lethe_config c = core_test_config(d, rc, 2UL << 20, 32UL << 20);
    c.shards = 8;
    return stress_run_config(&c, threads, seconds, -1);
}

#endif
