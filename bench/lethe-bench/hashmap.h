/* hashmap.h — lethe-bench's key-value store: a chained hash map on the benchmark's heap.
 *
 * Layout (all of it on the heap under test, so all of it can be swapped):
 *  - buckets: one array of nbuckets node pointers (8 B each), nbuckets = the keys the map
 *    will hold (load factor 1, chains of 1.5 nodes on average for a hit);
 *  - nodes: 48 B each, carved by a per-thread bump allocator (struct bench_arena), so a node
 *    costs exactly 48 B: key, value, next, and three check words (tag, payload[2]) derived
 *    from the key, which stand in for a record's payload and catch a page that came back
 *    with someone else's bytes.
 * Bytes per entry: 48 + 8 = 56 B at load factor 1, against about 60 B in the reference.
 *
 * Values are verifiable: value = version << 32 | check(key, version), so any read can tell a
 * right value from a wrong one without a side table. Updates bump the version.
 *
 * Concurrency: reads take no lock: they load the bucket head (acquire) and walk the chain;
 * a node's key and next never change after it is published, and its value word is read
 * atomically. Inserts and updates take the stripe lock of their bucket (BENCH_MAP_STRIPES
 * spinlocks, outside the heap under test, so a lock never waits on a swap-in of its own
 * page, and never uses a futex on managed memory). A spinlock that spins too long yields:
 * the holder may be blocked in a fault.
 */
#ifndef BENCH_HASHMAP_H
#define BENCH_HASHMAP_H

#include <stdatomic.h>
#include <stdint.h>

#include "heap.h"
#include "rng.h"

#define BENCH_MAP_STRIPES 1024u

struct bench_node {
    uint64_t key;
    _Atomic uint64_t value;
    struct bench_node *next;
    uint64_t tag;
    uint64_t payload[2];
};

_Static_assert(sizeof(struct bench_node) == 48, "a node is 48 bytes");

struct bench_stripe {
    _Atomic uint32_t held;
} __attribute__((aligned(64)));

struct bench_map {
    struct bench_node *_Atomic *buckets;
    uint64_t nbuckets;
    struct bench_stripe *stripes;
    _Atomic uint64_t count;
};

/* Verification failures (the swapper returned wrong bytes, or the map is broken). */
#define BENCH_EBADVALUE 1000 /* value's check bits do not match its key and version */
#define BENCH_EBADNODE  1001 /* node's tag or payload does not match its key */

static inline uint32_t bench_value_check(uint64_t key, uint32_t version)
{
    return (uint32_t)(bench_mix64(key * 0x9e3779b97f4a7c15ULL + version + 1) >> 32);
}

static inline uint64_t bench_value_encode(uint64_t key, uint32_t version)
{
    return (uint64_t)version << 32 | bench_value_check(key, version);
}

/* Allocates the bucket array from the heap. Returns 0 or -ENOMEM. */
int bench_map_init(struct bench_map *m, struct bench_heap *heap, uint64_t nbuckets);
/* Frees the locks (the heap owns buckets and nodes). */
void bench_map_destroy(struct bench_map *m);

/* Inserts key at version 0. 0, -EEXIST, -ENOMEM, or -BENCH_EBADNODE. */
int bench_map_insert(struct bench_map *m, struct bench_arena *a, uint64_t key);
/* Reads key's value and verifies it. 0 (version in *version), -ENOENT, -BENCH_EBADVALUE
 * or -BENCH_EBADNODE; *value gets the raw value word in every case it was found. */
int bench_map_read(struct bench_map *m, uint64_t key, uint32_t *version, uint64_t *value);
/* Verifies the current value and writes the next version. Same returns as a read. */
int bench_map_update(struct bench_map *m, uint64_t key, uint32_t *new_version, uint64_t *value);

struct bench_map_scan {
    uint64_t nodes;       /* nodes found */
    uint64_t version_sum; /* sum of all versions: must equal the updates done */
    uint64_t bad;         /* nodes that failed verification */
    uint64_t first_bad_key;
};

/* Walks every bucket and node, verifying each one. Single-threaded, no writers running. */
void bench_map_scan(struct bench_map *m, struct bench_map_scan *out);

uint64_t bench_map_count(const struct bench_map *m);
uint64_t bench_map_bucket_of(const struct bench_map *m, uint64_t key);

#endif
