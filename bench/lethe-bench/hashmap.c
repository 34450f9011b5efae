/* hashmap.c — the chained hash map of hashmap.h.
 *
 * Publication order: a new node is filled completely, then linked at the head of its chain
 * with a release store; readers load the head with acquire and so see a filled node. Chains
 * only grow at the head and nodes are never removed, so a reader walking an old head still
 * walks a valid chain. Updates hold the stripe lock so that two writers never lose a version;
 * they store the value word with release so a reader sees key, check bits and version from
 * the same write.
 */
#include "hashmap.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#define TAG_SALT     0x6c657468652d6d70ULL /* "lethe-mp" */
#define PAYLOAD_SALT 0xa0761d6478bd642fULL

static inline uint64_t node_tag(uint64_t key)
{
    return bench_mix64(key ^ TAG_SALT);
}

uint64_t bench_map_bucket_of(const struct bench_map *m, uint64_t key)
{
    return bench_reduce(bench_mix64(key), m->nbuckets);
}

static struct bench_stripe *stripe_of(struct bench_map *m, uint64_t bucket)
{
    return &m->stripes[bucket % BENCH_MAP_STRIPES];
}

static void stripe_lock(struct bench_stripe *s)
{
    unsigned spins = 0;
    while (atomic_exchange_explicit(&s->held, 1, memory_order_acquire)) {
        while (atomic_load_explicit(&s->held, memory_order_relaxed)) {
            if (++spins > 128)
                sched_yield(); /* the holder may be waiting on a fault */
            else
                __builtin_ia32_pause();
        }
    }
}

static void stripe_unlock(struct bench_stripe *s)
{
    atomic_store_explicit(&s->held, 0, memory_order_release);
}

int bench_map_init(struct bench_map *m, struct bench_heap *heap, uint64_t nbuckets)
{
    m->nbuckets = nbuckets ? nbuckets : 1;
    atomic_init(&m->count, 0);
    m->stripes = aligned_alloc(64, BENCH_MAP_STRIPES * sizeof(struct bench_stripe));
    if (!m->stripes)
        return -ENOMEM;
    for (unsigned i = 0; i < BENCH_MAP_STRIPES; i++)
        atomic_init(&m->stripes[i].held, 0);
    m->buckets = bench_heap_alloc(heap, m->nbuckets * sizeof(*m->buckets));
    if (!m->buckets) {
        free(m->stripes);
        m->stripes = NULL;
        return -ENOMEM;
    }
    return 0;
}

void bench_map_destroy(struct bench_map *m)
{
    free(m->stripes);
    m->stripes = NULL;
    m->buckets = NULL;
}

static int check_node(const struct bench_node *n)
{
    if (n->tag != node_tag(n->key) || n->payload[0] != (n->key ^ PAYLOAD_SALT) ||
        n->payload[1] != ~n->tag)
        return -BENCH_EBADNODE;
    return 0;
}

static int check_value(uint64_t key, uint64_t value)
{
    uint32_t version = (uint32_t)(value >> 32);
    return (uint32_t)value == bench_value_check(key, version) ? 0 : -BENCH_EBADVALUE;
}

static struct bench_node *find(struct bench_node *head, uint64_t key)
{
    for (struct bench_node *n = head; n; n = n->next)
        if (n->key == key)
            return n;
    return NULL;
}

int bench_map_insert(struct bench_map *m, struct bench_arena *a, uint64_t key)
{
    uint64_t b = bench_map_bucket_of(m, key);
    struct bench_stripe *s = stripe_of(m, b);
    stripe_lock(s);
    struct bench_node *head = atomic_load_explicit(&m->buckets[b], memory_order_relaxed);
    if (find(head, key)) {
        stripe_unlock(s);
        return -EEXIST;
    }
    struct bench_node *n = bench_arena_alloc(a, sizeof(*n));
    if (!n) {
        stripe_unlock(s);
        return -ENOMEM;
    }
    n->key = key;
    atomic_store_explicit(&n->value, bench_value_encode(key, 0), memory_order_relaxed);
    n->next = head;
    n->tag = node_tag(key);
    n->payload[0] = key ^ PAYLOAD_SALT;
    n->payload[1] = ~n->tag;
    atomic_store_explicit(&m->buckets[b], n, memory_order_release);
    stripe_unlock(s);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
    return 0;
}

int bench_map_read(struct bench_map *m, uint64_t key, uint32_t *version, uint64_t *value)
{
    uint64_t b = bench_map_bucket_of(m, key);
    struct bench_node *n = find(atomic_load_explicit(&m->buckets[b], memory_order_acquire), key);
    if (!n)
        return -ENOENT;
    uint64_t v = atomic_load_explicit(&n->value, memory_order_acquire);
    *value = v;
    int rc = check_node(n);
    if (rc == 0)
        rc = check_value(key, v);
    *version = (uint32_t)(v >> 32);
    return rc;
}

int bench_map_update(struct bench_map *m, uint64_t key, uint32_t *new_version, uint64_t *value)
{
    uint64_t b = bench_map_bucket_of(m, key);
    struct bench_stripe *s = stripe_of(m, b);
    stripe_lock(s);
    struct bench_node *n = find(atomic_load_explicit(&m->buckets[b], memory_order_relaxed), key);
    if (!n) {
        stripe_unlock(s);
        return -ENOENT;
    }
    uint64_t v = atomic_load_explicit(&n->value, memory_order_relaxed);
    *value = v;
    int rc = check_node(n);
    if (rc == 0)
        rc = check_value(key, v);
    if (rc == 0) {
        uint32_t next = (uint32_t)(v >> 32) + 1;
        atomic_store_explicit(&n->value, bench_value_encode(key, next), memory_order_release);
        *new_version = next;
    }
    stripe_unlock(s);
    return rc;
}

void bench_map_scan(struct bench_map *m, struct bench_map_scan *out)
{
    out->nodes = 0;
    out->version_sum = 0;
    out->bad = 0;
    out->first_bad_key = 0;
    for (uint64_t b = 0; b < m->nbuckets; b++) {
        for (struct bench_node *n = atomic_load_explicit(&m->buckets[b], memory_order_acquire); n;
             n = n->next) {
            uint64_t v = atomic_load_explicit(&n->value, memory_order_acquire);
            out->nodes++;
            if (check_node(n) < 0 || check_value(n->key, v) < 0 ||
                bench_map_bucket_of(m, n->key) != b) {
                if (out->bad++ == 0)
                    out->first_bad_key = n->key;
                continue;
            }
            out->version_sum += v >> 32;
        }
    }
}

uint64_t bench_map_count(const struct bench_map *m)
{
    return atomic_load_explicit(&m->count, memory_order_relaxed);
}
