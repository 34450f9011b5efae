/* workload.h — YCSB's core workloads A-D: which operation comes next, and on which key.
 *
 *   A  50% read, 50% update       request distribution: uniform or scrambled Zipfian
 *   B  95% read,  5% update       idem
 *   C 100% read                   idem
 *   D  95% read,  5% insert       reads: "latest" (Zipfian) or uniform over inserted keys
 *
 * Keys are the integers 0 .. keys-1 after the load; workload D inserts keys, keys+1, ...
 * A key is readable once its insert is acknowledged: struct bench_inserts is YCSB's
 * acknowledged counter, so a read never picks a key another thread has claimed but not yet
 * linked into the map, and every read must therefore find its key.
 *
 * A struct bench_keygen is shared read-only by all threads; each thread brings its own rng.
 */
#ifndef BENCH_WORKLOAD_H
#define BENCH_WORKLOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "options.h"
#include "rng.h"
#include "zipf.h"

enum bench_op {
    BENCH_OP_READ = 0,
    BENCH_OP_UPDATE = 1,
    BENCH_OP_INSERT = 2,
    BENCH_OP_KINDS = 3,
};

struct bench_workload {
    char name;
    unsigned read_pct;
    unsigned update_pct;
    unsigned insert_pct;
    const char *describe;
};

/* NULL for an unknown name. */
const struct bench_workload *bench_workload_get(char name);
const char *bench_op_name(enum bench_op op);

/* Keys a workload inserts at most during `ops` operations (0 but for D). */
uint64_t bench_workload_max_inserts(const struct bench_workload *w, uint64_t ops);

#define BENCH_ACK_WINDOW (1u << 16)

/* YCSB's acknowledged counter. Keys below `limit` are all in the map. */
struct bench_inserts {
    _Atomic uint64_t next;  /* next key to claim */
    _Atomic uint64_t limit; /* every key < limit is acknowledged */
    _Atomic uint32_t advancing;
    _Atomic uint8_t *window; /* BENCH_ACK_WINDOW flags: key acknowledged, not yet counted */
};

int bench_inserts_init(struct bench_inserts *c, uint64_t first_key);
void bench_inserts_destroy(struct bench_inserts *c);
/* A fresh key to insert. Waits (yielding) while BENCH_ACK_WINDOW keys are outstanding. */
uint64_t bench_inserts_claim(struct bench_inserts *c);
/* The key is in the map. */
void bench_inserts_ack(struct bench_inserts *c, uint64_t key);
/* Every key below this one is in the map. */
uint64_t bench_inserts_limit(struct bench_inserts *c);
/* Keys claimed so far beyond first_key (after all threads stopped: keys inserted). */
uint64_t bench_inserts_claimed(struct bench_inserts *c, uint64_t first_key);

struct bench_keygen {
    const struct bench_workload *w;
    enum bench_dist dist;
    uint64_t keys;                 /* keys loaded */
    struct bench_zipf zipf;        /* over `keys` items */
    struct bench_inserts *inserts; /* workload D */
};

/* Returns 0 or -EINVAL (bad theta). */
int bench_keygen_init(struct bench_keygen *g, const struct bench_workload *w, enum bench_dist dist,
                      double theta, uint64_t keys, struct bench_inserts *inserts);

static inline enum bench_op bench_next_op(const struct bench_workload *w, struct bench_rng *r)
{
    uint64_t p = bench_rng_below(r, 100);
    if (p < w->read_pct)
        return BENCH_OP_READ;
    return w->insert_pct ? BENCH_OP_INSERT : BENCH_OP_UPDATE;
}

/* The key a read or update goes to. */
uint64_t bench_next_key(const struct bench_keygen *g, struct bench_rng *r);

#endif
