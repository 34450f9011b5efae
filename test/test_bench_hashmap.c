/* test_bench_hashmap.c — lethe-bench's hash map on the plain heap: inserts, reads and updates
 * behave like a map, every read verifies its value, corrupted bytes are reported as such, the
 * closing scan adds up, and concurrent writers and readers (striped locks, lock-free reads)
 * lose no update. Also the acknowledged insert counter under concurrent claims. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "../bench/lethe-bench/embedded.c"
#include "../bench/lethe-bench/hashmap.c"
#include "../bench/lethe-bench/heap.c"
#include "../bench/lethe-bench/options.c"
#include "../bench/lethe-bench/workload.c"
#include "../bench/lethe-bench/zipf.c"

static struct bench_heap *heap;
static struct bench_map map;
static struct bench_arena arena;

static void setup_map(uint64_t nbuckets)
{
    struct bench_options o;
    bench_options_defaults(&o);
    o.mode = BENCH_MODE_PLAIN;
    cr_assert_eq(bench_heap_open(&o, 0, &heap), 0);
    cr_assert_eq(bench_map_init(&map, heap, nbuckets), 0);
    bench_arena_init(&arena, heap, 64 * 1024);
}

static void teardown_map(void)
{
    bench_map_destroy(&map);
    bench_heap_close(heap);
}

static struct bench_node *node_of(uint64_t key)
{
    for (struct bench_node *n = map.buckets[bench_map_bucket_of(&map, key)]; n; n = n->next)
        if (n->key == key)
            return n;
    return NULL;
}

Test(bench_hashmap, inserted_keys_read_back_at_version_0)
{
    setup_map(100);
    for (uint64_t k = 0; k < 1000; k++)
        cr_assert_eq(bench_map_insert(&map, &arena, k * 7919), 0);
    cr_assert_eq(bench_map_count(&map), 1000);
    for (uint64_t k = 0; k < 1000; k++) {
        uint32_t version = 99;
        uint64_t value;
        cr_assert_eq(bench_map_read(&map, k * 7919, &version, &value), 0, "key %lu", k);
        cr_assert_eq(version, 0);
        cr_assert_eq(value, bench_value_encode(k * 7919, 0));
    }
    teardown_map();
}

Test(bench_hashmap, missing_and_duplicate_keys_are_reported)
{
    setup_map(16);
    cr_assert_eq(bench_map_insert(&map, &arena, 5), 0);
    cr_assert_eq(bench_map_insert(&map, &arena, 5), -EEXIST);
    uint32_t version;
    uint64_t value;
    cr_assert_eq(bench_map_read(&map, 6, &version, &value), -ENOENT);
    cr_assert_eq(bench_map_update(&map, 6, &version, &value), -ENOENT);
    cr_assert_eq(bench_map_count(&map), 1);
    teardown_map();
}

Test(bench_hashmap, updates_bump_the_version_that_reads_then_see)
{
    setup_map(64);
    cr_assert_eq(bench_map_insert(&map, &arena, 42), 0);
    uint32_t version;
    uint64_t value;
    for (uint32_t i = 1; i <= 5; i++) {
        cr_assert_eq(bench_map_update(&map, 42, &version, &value), 0);
        cr_assert_eq(version, i);
    }
    cr_assert_eq(bench_map_read(&map, 42, &version, &value), 0);
    cr_assert_eq(version, 5);
    teardown_map();
}

Test(bench_hashmap, a_wrong_value_or_a_damaged_node_is_caught)
{
    setup_map(64);
    for (uint64_t k = 0; k < 10; k++)
        cr_assert_eq(bench_map_insert(&map, &arena, k), 0);
    uint32_t version;
    uint64_t value;
    /* a stale or foreign value: right shape, wrong check bits for this key */
    atomic_store(&node_of(3)->value, bench_value_encode(4, 0));
    cr_assert_eq(bench_map_read(&map, 3, &version, &value), -BENCH_EBADVALUE);
    cr_assert_eq(bench_map_update(&map, 3, &version, &value), -BENCH_EBADVALUE);
    /* a zeroed payload, as from a page that came back as zeros */
    node_of(7)->payload[0] = 0;
    cr_assert_eq(bench_map_read(&map, 7, &version, &value), -BENCH_EBADNODE);
    struct bench_map_scan s;
    bench_map_scan(&map, &s);
    cr_assert_eq(s.nodes, 10);
    cr_assert_eq(s.bad, 2);
    teardown_map();
}

Test(bench_hashmap, scan_counts_nodes_and_sums_versions)
{
    setup_map(1000);
    for (uint64_t k = 0; k < 3000; k++)
        cr_assert_eq(bench_map_insert(&map, &arena, k), 0);
    uint32_t version;
    uint64_t value;
    for (uint64_t k = 0; k < 3000; k += 3)
        cr_assert_eq(bench_map_update(&map, k, &version, &value), 0);
    struct bench_map_scan s;
    bench_map_scan(&map, &s);
    cr_assert_eq(s.nodes, 3000);
    cr_assert_eq(s.version_sum, 1000);
    cr_assert_eq(s.bad, 0);
    teardown_map();
}

/* ---- concurrency --------------------------------------------------------------------- */

#define STRESS_THREADS 4
#define STRESS_KEYS    512
#define STRESS_OPS     40000

struct stress {
    unsigned id;
    struct bench_arena arena;
    uint64_t updates;
    uint64_t failures;
    uint64_t inserted;
};

static void *stress_main(void *arg)
{
    struct stress *s = arg;
    struct bench_rng r;
    bench_rng_seed(&r, s->id);
    for (unsigned i = 0; i < STRESS_OPS; i++) {
        uint64_t key = bench_rng_below(&r, STRESS_KEYS);
        uint32_t version;
        uint64_t value;
        unsigned what = (unsigned)bench_rng_below(&r, 10);
        int rc;
        if (what < 5) {
            rc = bench_map_read(&map, key, &version, &value);
        } else if (what < 9) {
            rc = bench_map_update(&map, key, &version, &value);
            s->updates += rc == 0;
        } else {
            /* fresh keys, disjoint per thread, landing in the same chains as the readers */
            rc = bench_map_insert(&map, &s->arena, STRESS_KEYS + s->id + STRESS_THREADS * i);
            s->inserted += rc == 0;
        }
        s->failures += rc != 0;
    }
    return NULL;
}

Test(bench_hashmap, concurrent_writers_lose_no_update_and_readers_see_no_torn_value)
{
    setup_map(STRESS_KEYS / 4); /* long chains: more sharing between readers and writers */
    for (uint64_t k = 0; k < STRESS_KEYS; k++)
        cr_assert_eq(bench_map_insert(&map, &arena, k), 0);
    pthread_t t[STRESS_THREADS];
    struct stress s[STRESS_THREADS] = {0};
    for (unsigned i = 0; i < STRESS_THREADS; i++) {
        s[i].id = i;
        bench_arena_init(&s[i].arena, heap, 16 * 1024);
        cr_assert_eq(pthread_create(&t[i], NULL, stress_main, &s[i]), 0);
    }
    uint64_t updates = 0, inserted = 0;
    for (unsigned i = 0; i < STRESS_THREADS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(s[i].failures, 0, "thread %u saw %lu failures", i, s[i].failures);
        updates += s[i].updates;
        inserted += s[i].inserted;
    }
    struct bench_map_scan sc;
    bench_map_scan(&map, &sc);
    cr_assert_eq(sc.bad, 0);
    cr_assert_eq(sc.nodes, STRESS_KEYS + inserted);
    cr_assert_eq(sc.version_sum, updates, "every update is counted once");
    cr_assert_gt(updates, STRESS_THREADS * STRESS_OPS / 3);
    teardown_map();
}

#define CLAIM_THREADS 4
#define CLAIMS        20000

static struct bench_inserts ins;
static _Atomic uint8_t *claimed;

static _Atomic unsigned claim_errors;

static void *claim_main(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < CLAIMS; i++) {
        uint64_t key = bench_inserts_claim(&ins);
        if (key < 1000 || key >= 1000 + CLAIM_THREADS * CLAIMS ||
            atomic_fetch_add(&claimed[key - 1000], 1) != 0)
            atomic_fetch_add(&claim_errors, 1); /* out of range, or handed out twice */
        /* every key below the limit is acknowledged, and this one is not yet */
        if (bench_inserts_limit(&ins) > key)
            atomic_fetch_add(&claim_errors, 1);
        bench_inserts_ack(&ins, key);
    }
    return NULL;
}

Test(bench_hashmap, acknowledged_counter_hands_out_unique_keys_and_reaches_the_end)
{
    cr_assert_eq(bench_inserts_init(&ins, 1000), 0);
    claimed = calloc(CLAIM_THREADS * CLAIMS, 1);
    pthread_t t[CLAIM_THREADS];
    for (unsigned i = 0; i < CLAIM_THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, claim_main, NULL), 0);
    for (unsigned i = 0; i < CLAIM_THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(claim_errors, 0);
    cr_assert_eq(bench_inserts_limit(&ins), 1000 + CLAIM_THREADS * CLAIMS);
    cr_assert_eq(bench_inserts_claimed(&ins, 1000), CLAIM_THREADS * CLAIMS);
    free((void *)claimed);
    bench_inserts_destroy(&ins);
}
