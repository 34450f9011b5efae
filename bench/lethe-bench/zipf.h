/* zipf.h — YCSB's key distributions: Zipfian, scrambled Zipfian and "latest".
 *
 * The Zipfian generator is the algorithm of Gray et al., "Quickly Generating Billion-Record
 * Synthetic Databases" (SIGMOD 1994), as YCSB uses it: rank i (0-based) is drawn with
 * probability (i+1)^-theta / zeta(n, theta). zeta(n, theta) is computed once per generator;
 * after that a draw costs one pow(). Rank 0 is the most popular item.
 *
 *  - Scrambled Zipfian (YCSB's default): rank -> bench_mix64(rank) reduced to [0, n), so the
 *    popular items are spread over the key space (and over the hash map's pages) instead of
 *    being the first keys loaded. Distinct ranks may land on one key, as in YCSB.
 *  - Latest (workload D): key = newest - rank, so recently inserted keys are the hot ones.
 *    The rank distribution is fixed at the initial key count (YCSB grows it with every
 *    insert; with inserts at 5% of operations the difference is negligible).
 *
 * theta must lie in (0, 1); YCSB's constant is 0.99 (BENCH_ZIPF_THETA).
 * A generator is immutable after bench_zipf_init(): threads share it, each with its own rng.
 */
#ifndef BENCH_ZIPF_H
#define BENCH_ZIPF_H

#include <stdint.h>

#include "rng.h"

#define BENCH_ZIPF_THETA 0.99

struct bench_zipf {
    uint64_t n;
    double theta;
    double alpha; /* 1 / (1 - theta) */
    double zetan; /* zeta(n, theta) */
    double eta;
    double second_bound; /* 1 + 0.5^theta: the u*zetan below which rank 1 is drawn */
};

/* zeta(n, theta) = sum_{i=1..n} i^-theta: exact below 2^20 terms, Euler-Maclaurin for the
 * tail beyond (relative error below 1e-12), so a 60M-key generator starts at once. */
double bench_zeta(uint64_t n, double theta);
/* The plain sum, term by term (tests compare the two). */
double bench_zeta_exact(uint64_t n, double theta);

/* Returns 0, or -EINVAL for n == 0 or theta outside (0, 1). */
int bench_zipf_init(struct bench_zipf *z, uint64_t n, double theta);

/* The rank for a uniform u in [0, 1): 0 .. n-1. */
uint64_t bench_zipf_rank(const struct bench_zipf *z, double u);

static inline uint64_t bench_zipf_next(const struct bench_zipf *z, struct bench_rng *r)
{
    return bench_zipf_rank(z, bench_rng_unit(r));
}

/* Scrambled Zipfian key in [0, n). */
static inline uint64_t bench_zipf_scrambled(const struct bench_zipf *z, struct bench_rng *r)
{
    return bench_reduce(bench_mix64(bench_zipf_next(z, r)), z->n);
}

/* "Latest" key: newest - rank, clamped to 0 (only when newest < n - 1, i.e. never after a
 * full load of n keys). */
static inline uint64_t bench_zipf_latest(const struct bench_zipf *z, struct bench_rng *r,
                                         uint64_t newest)
{
    uint64_t rank = bench_zipf_next(z, r);
    return rank <= newest ? newest - rank : 0;
}

#endif
