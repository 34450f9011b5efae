/* workload.c — YCSB workloads, key choice and the acknowledged insert counter (workload.h).
 *
 * The acknowledged counter: an insert claims key `next++`, links it, then sets its flag in
 * a ring of BENCH_ACK_WINDOW flags. Whoever wins `advancing` moves `limit` over the run of
 * set flags and clears them; an acknowledgement that loses that race is picked up by the
 * winner before it returns (see advance()), so the limit is exact once inserts stop. The ring
 * cannot wrap onto a flag still in use because a claim waits until its key is within the
 * window of the limit.
 */
#include "workload.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

static const struct bench_workload workloads[] = {
    {'A', 50, 50, 0, "50% read, 50% update"},
    {'B', 95, 5, 0, "95% read, 5% update"},
    {'C', 100, 0, 0, "100% read"},
    {'D', 95, 0, 5, "95% read (latest), 5% insert"},
};

const struct bench_workload *bench_workload_get(char name)
{
    for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
        if (workloads[i].name == name)
            return &workloads[i];
    return NULL;
}

const char *bench_op_name(enum bench_op op)
{
    switch (op) {
    case BENCH_OP_READ:
        return "read";
    case BENCH_OP_UPDATE:
        return "update";
    case BENCH_OP_INSERT:
        return "insert";
    default:
        return "?";
    }
}

uint64_t bench_workload_max_inserts(const struct bench_workload *w, uint64_t ops)
{
    if (!w->insert_pct)
        return 0;
    /* the mean plus a generous margin: 5% of ops +- a few standard deviations */
    uint64_t mean = ops / 100 * w->insert_pct + ops % 100 * w->insert_pct / 100;
    return mean + mean / 10 + 1024 < ops ? mean + mean / 10 + 1024 : ops;
}

int bench_inserts_init(struct bench_inserts *c, uint64_t first_key)
{
    c->window = calloc(BENCH_ACK_WINDOW, sizeof(*c->window));
    if (!c->window)
        return -ENOMEM;
    atomic_init(&c->next, first_key);
    atomic_init(&c->limit, first_key);
    atomic_init(&c->advancing, 0);
    return 0;
}

void bench_inserts_destroy(struct bench_inserts *c)
{
    free((void *)c->window);
    c->window = NULL;
}

/* Moves the limit over acknowledged keys. The flag stores, the `advancing` exchange and
 * the re-check below are sequentially consistent: an acknowledgement that loses the race
 * for `advancing` is then always seen by the winner's re-check after it lets go, so the
 * limit never lags behind a finished insert once everyone is done. */
static void advance(struct bench_inserts *c)
{
    for (;;) {
        if (atomic_exchange(&c->advancing, 1))
            return;
        uint64_t limit = atomic_load_explicit(&c->limit, memory_order_relaxed);
        for (;;) {
            _Atomic uint8_t *flag = &c->window[limit & (BENCH_ACK_WINDOW - 1)];
            if (!atomic_load(flag))
                break;
            atomic_store_explicit(flag, 0, memory_order_relaxed);
            limit++;
        }
        atomic_store_explicit(&c->limit, limit, memory_order_release);
        atomic_store(&c->advancing, 0);
        if (!atomic_load(&c->window[limit & (BENCH_ACK_WINDOW - 1)]))
            return;
    }
}

uint64_t bench_inserts_claim(struct bench_inserts *c)
{
    uint64_t key = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
    while (key >= atomic_load_explicit(&c->limit, memory_order_acquire) + BENCH_ACK_WINDOW) {
        advance(c);
        sched_yield();
    }
    return key;
}

void bench_inserts_ack(struct bench_inserts *c, uint64_t key)
{
    atomic_store(&c->window[key & (BENCH_ACK_WINDOW - 1)], 1);
    advance(c);
}

uint64_t bench_inserts_limit(struct bench_inserts *c)
{
    return atomic_load_explicit(&c->limit, memory_order_acquire);
}

uint64_t bench_inserts_claimed(struct bench_inserts *c, uint64_t first_key)
{
    return atomic_load_explicit(&c->next, memory_order_relaxed) - first_key;
}

int bench_keygen_init(struct bench_keygen *g, const struct bench_workload *w, enum bench_dist dist,
                      double theta, uint64_t keys, struct bench_inserts *inserts)
{
    g->w = w;
    g->dist = dist;
    g->keys = keys;
    g->inserts = inserts;
    return bench_zipf_init(&g->zipf, keys, theta);
}

uint64_t bench_next_key(const struct bench_keygen *g, struct bench_rng *r)
{
    if (g->inserts) {
        uint64_t newest = bench_inserts_limit(g->inserts) - 1;
        if (g->dist == BENCH_DIST_ZIPFIAN)
            return bench_zipf_latest(&g->zipf, r, newest);
        return bench_rng_below(r, newest + 1);
    }
    if (g->dist == BENCH_DIST_ZIPFIAN)
        return bench_zipf_scrambled(&g->zipf, r);
    return bench_rng_below(r, g->keys);
}
