/* runner.c — load, run and check phases (see runner.h for the contract).
 *
 * Workers share nothing writable on the hot path but the map itself: counters, histograms
 * and the arena are per worker, and the progress counter is bumped every 256 operations on
 * the worker's own cache line. A shared `stop` flag, checked at the same cadence, ends all
 * workers early after a fatal error.
 */
#include "runner.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "progress.h"

#define PROGRESS_EVERY 256u
#define REPORT_ERRORS  10u

struct worker {
    struct bench_ctx *c;
    unsigned id;
    uint64_t begin; /* load: first key; run: unused */
    uint64_t end;   /* load: one past the last key; run: operations to do */
    struct bench_rng rng;
    struct bench_arena arena;
    struct bench_counter *counter;
    _Atomic bool *stop;
    _Atomic unsigned *reported;
    int rc;
    uint64_t done;
    uint64_t counts[BENCH_OP_KINDS];
    uint64_t updates_applied;
    uint64_t not_found;
    uint64_t bad_value;
    uint64_t bad_node;
    struct bench_hist hist[BENCH_OP_KINDS];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t bench_map_buckets(const struct bench_options *o)
{
    const struct bench_workload *w = bench_workload_get(o->workload);
    return o->keys + (w ? bench_workload_max_inserts(w, o->ops) : 0);
}

size_t bench_arena_chunk(const struct bench_options *o)
{
    /* about a quarter of a thread's share, between one page and 1 MiB: big enough to keep
     * the heap's allocator off the hot path, small enough that the slack does not count */
    uint64_t share = bench_map_buckets(o) * sizeof(struct bench_node) / o->threads / 4;
    if (share > (1u << 20))
        share = 1u << 20;
    share = (share + LETHE_PAGE_SIZE - 1) & ~(uint64_t)(LETHE_PAGE_SIZE - 1);
    return share ? share : LETHE_PAGE_SIZE;
}

uint64_t bench_working_set_estimate(const struct bench_options *o)
{
    uint64_t nb = bench_map_buckets(o);
    uint64_t buckets = (nb * 8 + LETHE_PAGE_SIZE - 1) & ~(uint64_t)(LETHE_PAGE_SIZE - 1);
    return buckets + nb * sizeof(struct bench_node);
}

int bench_ctx_init(struct bench_ctx *c, const struct bench_options *o, struct bench_heap *heap)
{
    memset(c, 0, sizeof(*c));
    c->o = o;
    c->heap = heap;
    c->w = bench_workload_get(o->workload);
    if (!c->w)
        return -EINVAL;
    c->arena_chunk = bench_arena_chunk(o);
    int rc = bench_map_init(&c->map, heap, bench_map_buckets(o));
    if (rc < 0) {
        fprintf(stderr, "lethe-bench: cannot allocate %" PRIu64 " buckets on the heap\n",
                bench_map_buckets(o));
        return rc;
    }
    if (c->w->insert_pct) {
        rc = bench_inserts_init(&c->inserts, o->keys);
        if (rc < 0) {
            bench_map_destroy(&c->map);
            return rc;
        }
        c->has_inserts = true;
    }
    rc = bench_keygen_init(&c->keygen, c->w, o->dist, o->theta, o->keys,
                           c->has_inserts ? &c->inserts : NULL);
    if (rc < 0) {
        bench_ctx_destroy(c);
        return rc;
    }
    return 0;
}

void bench_ctx_destroy(struct bench_ctx *c)
{
    if (c->has_inserts)
        bench_inserts_destroy(&c->inserts);
    c->has_inserts = false;
    bench_map_destroy(&c->map);
}

static void report_error(struct worker *wk, const char *what, uint64_t key, int rc, uint64_t value)
{
    if (atomic_fetch_add_explicit(wk->reported, 1, memory_order_relaxed) >= REPORT_ERRORS)
        return;
    const char *why = rc == -ENOENT            ? "key not found"
                      : rc == -BENCH_EBADVALUE ? "value does not match its key and version"
                      : rc == -BENCH_EBADNODE  ? "node's check words are corrupt"
                                               : strerror(-rc);
    if (rc == -ENOENT)
        fprintf(stderr, "lethe-bench: verify: %s of key %" PRIu64 ": %s\n", what, key, why);
    else
        fprintf(stderr,
                "lethe-bench: verify: %s of key %" PRIu64 ": %s (value 0x%016" PRIx64
                ", version %" PRIu32 ")\n",
                what, key, why, value, (uint32_t)(value >> 32));
}

static void count_failure(struct worker *wk, int rc)
{
    if (rc == -ENOENT)
        wk->not_found++;
    else if (rc == -BENCH_EBADVALUE)
        wk->bad_value++;
    else
        wk->bad_node++;
}

static void *load_main(void *arg)
{
    struct worker *wk = arg;
    struct bench_map *m = &wk->c->map;
    for (uint64_t k = wk->begin; k < wk->end; k++) {
        int rc = bench_map_insert(m, &wk->arena, k);
        if (rc == -ENOMEM) {
            fprintf(stderr, "lethe-bench: load: the heap is exhausted at key %" PRIu64 "\n", k);
            wk->rc = rc;
            atomic_store(wk->stop, true);
            break;
        }
        if (rc < 0) {
            count_failure(wk, rc == -EEXIST ? -BENCH_EBADNODE : rc);
            report_error(wk, "insert", k, rc, 0);
        }
        if (++wk->done % PROGRESS_EVERY == 0) {
            atomic_fetch_add_explicit(&wk->counter->done, PROGRESS_EVERY, memory_order_relaxed);
            if (atomic_load_explicit(wk->stop, memory_order_relaxed))
                break;
        }
    }
    return NULL;
}

static int do_op(struct worker *wk, enum bench_op op)
{
    struct bench_ctx *c = wk->c;
    uint32_t version;
    uint64_t value = 0;
    int rc;
    if (op == BENCH_OP_INSERT) {
        uint64_t key = bench_inserts_claim(&c->inserts);
        rc = bench_map_insert(&c->map, &wk->arena, key);
        if (rc == -ENOMEM) {
            fprintf(stderr, "lethe-bench: run: the heap is exhausted at key %" PRIu64 "\n", key);
            return rc;
        }
        bench_inserts_ack(&c->inserts, key);
        if (rc < 0) {
            count_failure(wk, -BENCH_EBADNODE);
            report_error(wk, "insert", key, rc, 0);
        }
        return 0;
    }
    uint64_t key = bench_next_key(&c->keygen, &wk->rng);
    if (op == BENCH_OP_READ) {
        rc = bench_map_read(&c->map, key, &version, &value);
    } else {
        rc = bench_map_update(&c->map, key, &version, &value);
        if (rc == 0)
            wk->updates_applied++;
    }
    if (rc < 0) {
        count_failure(wk, rc);
        report_error(wk, bench_op_name(op), key, rc, value);
    }
    return 0;
}

static void *run_main(void *arg)
{
    struct worker *wk = arg;
    const struct bench_workload *w = wk->c->w;
    uint64_t sample_mask = wk->c->o->sample_every - 1;
    for (uint64_t i = 0; i < wk->end; i++) {
        enum bench_op op = bench_next_op(w, &wk->rng);
        int rc;
        if ((i & sample_mask) == 0) {
            uint64_t t0 = now_ns();
            rc = do_op(wk, op);
            bench_hist_record(&wk->hist[op], now_ns() - t0);
        } else {
            rc = do_op(wk, op);
        }
        if (rc < 0) {
            wk->rc = rc;
            atomic_store(wk->stop, true);
            break;
        }
        wk->counts[op]++;
        if (++wk->done % PROGRESS_EVERY == 0) {
            atomic_fetch_add_explicit(&wk->counter->done, PROGRESS_EVERY, memory_order_relaxed);
            if (atomic_load_explicit(wk->stop, memory_order_relaxed))
                break;
        }
    }
    return NULL;
}

struct phase {
    struct worker *workers;
    struct bench_counter *counters;
    _Atomic bool stop;
    _Atomic unsigned reported;
};

static int phase_alloc(struct bench_ctx *c, struct phase *p)
{
    unsigned n = c->o->threads;
    p->workers = aligned_alloc(64, ((n * sizeof(struct worker) + 63) / 64) * 64);
    p->counters = aligned_alloc(64, n * sizeof(struct bench_counter));
    if (!p->workers || !p->counters) {
        free(p->workers);
        free(p->counters);
        return -ENOMEM;
    }
    memset(p->workers, 0, n * sizeof(struct worker));
    atomic_init(&p->stop, false);
    atomic_init(&p->reported, 0);
    for (unsigned i = 0; i < n; i++) {
        struct worker *wk = &p->workers[i];
        atomic_init(&p->counters[i].done, 0);
        wk->c = c;
        wk->id = i;
        wk->counter = &p->counters[i];
        wk->stop = &p->stop;
        wk->reported = &p->reported;
        for (unsigned k = 0; k < BENCH_OP_KINDS; k++)
            bench_hist_init(&wk->hist[k]);
    }
    return 0;
}

/* Runs fn on every worker, with the progress bar; returns the elapsed seconds. */
static int phase_run(struct bench_ctx *c, struct phase *p, const char *name, uint64_t total,
                     void *(*fn)(void *), double *seconds)
{
    unsigned n = c->o->threads;
    pthread_t *tids = calloc(n, sizeof(*tids));
    if (!tids)
        return -ENOMEM;
    struct bench_progress bar;
    bench_progress_start(&bar, c->o->progress, name, total, p->counters, n);
    int rc = 0;
    unsigned started = 0;
    uint64_t t0 = now_ns();
    for (; started < n; started++) {
        int e = pthread_create(&tids[started], NULL, fn, &p->workers[started]);
        if (e) {
            fprintf(stderr, "lethe-bench: cannot start a worker thread: %s\n", strerror(e));
            atomic_store(&p->stop, true);
            rc = -e;
            break;
        }
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    *seconds = (double)(now_ns() - t0) / 1e9;
    bench_progress_stop(&bar);
    free(tids);
    for (unsigned i = 0; i < n && rc == 0; i++)
        if (p->workers[i].rc < 0)
            rc = p->workers[i].rc;
    return rc;
}

static void phase_collect(struct phase *p, unsigned n, struct bench_result *r)
{
    for (unsigned i = 0; i < n; i++) {
        struct worker *wk = &p->workers[i];
        r->not_found += wk->not_found;
        r->bad_value += wk->bad_value;
        r->bad_node += wk->bad_node;
    }
}

static void phase_free(struct phase *p)
{
    free(p->workers);
    free(p->counters);
}

int bench_load(struct bench_ctx *c, struct bench_result *r)
{
    struct phase p;
    int rc = phase_alloc(c, &p);
    if (rc < 0)
        return rc;
    unsigned n = c->o->threads;
    uint64_t keys = c->o->keys;
    for (unsigned i = 0; i < n; i++) {
        struct worker *wk = &p.workers[i];
        wk->begin = keys * i / n;
        wk->end = keys * (i + 1) / n;
        bench_arena_init(&wk->arena, c->heap, c->arena_chunk);
    }
    rc = phase_run(c, &p, "load", keys, load_main, &r->load_s);
    r->loaded = bench_map_count(&c->map);
    phase_collect(&p, n, r);
    phase_free(&p);
    return rc;
}

int bench_run(struct bench_ctx *c, struct bench_result *r)
{
    struct phase p;
    int rc = phase_alloc(c, &p);
    if (rc < 0)
        return rc;
    unsigned n = c->o->threads;
    uint64_t ops = c->o->ops;
    for (unsigned i = 0; i < n; i++) {
        struct worker *wk = &p.workers[i];
        wk->end = ops * (i + 1) / n - ops * i / n;
        bench_rng_seed(&wk->rng, c->o->seed * 0x100000001b3ULL + i);
        bench_arena_init(&wk->arena, c->heap, c->has_inserts ? c->arena_chunk : LETHE_PAGE_SIZE);
    }
    rc = phase_run(c, &p, "run", ops, run_main, &r->run_s);
    for (unsigned k = 0; k < BENCH_OP_KINDS; k++)
        bench_hist_init(&r->hist[k]);
    bench_hist_init(&r->all);
    for (unsigned i = 0; i < n; i++) {
        struct worker *wk = &p.workers[i];
        r->ops_done += wk->done;
        r->updates_applied += wk->updates_applied;
        for (unsigned k = 0; k < BENCH_OP_KINDS; k++) {
            r->counts[k] += wk->counts[k];
            bench_hist_merge(&r->hist[k], &wk->hist[k]);
            bench_hist_merge(&r->all, &wk->hist[k]);
        }
    }
    if (c->has_inserts)
        r->inserted = bench_inserts_claimed(&c->inserts, c->o->keys);
    phase_collect(&p, n, r);
    phase_free(&p);
    return rc;
}

void bench_check(struct bench_ctx *c, struct bench_result *r)
{
    uint64_t t0 = now_ns();
    bench_map_scan(&c->map, &r->scan);
    r->check_s = (double)(now_ns() - t0) / 1e9;
    r->checked = true;
    r->expected_nodes = r->loaded + r->inserted;
}

bool bench_result_ok(const struct bench_result *r)
{
    if (r->not_found || r->bad_value || r->bad_node)
        return false;
    if (r->checked && (r->scan.bad || r->scan.nodes != r->expected_nodes ||
                       r->scan.version_sum != r->updates_applied))
        return false;
    return true;
}
