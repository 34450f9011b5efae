/* runner.h — lethe-bench's two timed phases and the closing check.
 *
 *  - load: threads insert keys 0..keys-1 (thread i the i-th slice), each from its own arena.
 *  - run: threads split `ops` operations of the workload; each draws its operations and
 *    keys from its own rng (seed + thread), times one operation in `sample_every` with
 *    clock_gettime(CLOCK_MONOTONIC) into per-thread histograms, and verifies every value it
 *    reads or updates. A missing or wrong value is counted and the first ones are printed
 *    with the key and the bytes found.
 *  - check: a single-threaded scan that every node is intact, that the map holds exactly
 *    the keys loaded and inserted, and that the versions add up to the updates done (a lost
 *    write-back shows as a smaller sum).
 * Fatal errors (heap exhausted) stop all workers early and are returned as negative errnos.
 */
#ifndef BENCH_RUNNER_H
#define BENCH_RUNNER_H

#include <stdbool.h>
#include <stdint.h>

#include "hashmap.h"
#include "heap.h"
#include "histogram.h"
#include "options.h"
#include "workload.h"

struct bench_ctx {
    const struct bench_options *o;
    struct bench_heap *heap;
    struct bench_map map;
    const struct bench_workload *w;
    struct bench_keygen keygen;
    struct bench_inserts inserts;
    bool has_inserts;
    size_t arena_chunk;
};

struct bench_result {
    /* load */
    uint64_t loaded;
    double load_s;
    /* run */
    uint64_t ops_done;
    double run_s;
    uint64_t counts[BENCH_OP_KINDS];
    struct bench_hist hist[BENCH_OP_KINDS];
    struct bench_hist all;
    uint64_t updates_applied; /* successful updates: the expected version sum */
    uint64_t inserted;
    /* verification */
    uint64_t not_found;
    uint64_t bad_value;
    uint64_t bad_node;
    /* closing check */
    bool checked;
    double check_s;
    struct bench_map_scan scan;
    uint64_t expected_nodes;
};

/* Sets up the map and generators. 0 or a negative errno (reported on stderr). */
int bench_ctx_init(struct bench_ctx *c, const struct bench_options *o, struct bench_heap *heap);
void bench_ctx_destroy(struct bench_ctx *c);

int bench_load(struct bench_ctx *c, struct bench_result *r);
int bench_run(struct bench_ctx *c, struct bench_result *r);
void bench_check(struct bench_ctx *c, struct bench_result *r);

/* The verification verdict: no wrong or missing value, and a clean closing check if run. */
bool bench_result_ok(const struct bench_result *r);

/* Node and bucket bytes for these options (the working set before chunk slack), and the
 * chunk size each thread's arena takes from the heap. */
uint64_t bench_map_buckets(const struct bench_options *o);
uint64_t bench_working_set_estimate(const struct bench_options *o);
size_t bench_arena_chunk(const struct bench_options *o);

#endif
