/* histogram.c — the log-linear histogram of histogram.h.
 *
 * Index of v: below 2^S (S = BENCH_HIST_SUB_BITS) v itself; otherwise, with e the position
 * of v's highest set bit, the block e - S + 1 (each block 2^S wide) and, within it, the S
 * bits of v below the highest one. Block b >= 1 therefore covers [2^(b+S-1), 2^(b+S)).
 */
#include "histogram.h"

#include <string.h>

void bench_hist_init(struct bench_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

unsigned bench_hist_index(uint64_t value)
{
    if (value < BENCH_HIST_SUB)
        return (unsigned)value;
    unsigned e = 63u - (unsigned)__builtin_clzll(value);
    unsigned sub = (unsigned)(value >> (e - BENCH_HIST_SUB_BITS)) & (BENCH_HIST_SUB - 1);
    return (e - BENCH_HIST_SUB_BITS + 1) * BENCH_HIST_SUB + sub;
}

uint64_t bench_hist_bucket_low(unsigned index)
{
    if (index < BENCH_HIST_SUB)
        return index;
    unsigned block = index >> BENCH_HIST_SUB_BITS;
    unsigned sub = index & (BENCH_HIST_SUB - 1);
    unsigned shift = block - 1; /* e - S */
    return (uint64_t)(BENCH_HIST_SUB + sub) << shift;
}

uint64_t bench_hist_bucket_high(unsigned index)
{
    if (index < BENCH_HIST_SUB)
        return index;
    unsigned shift = (index >> BENCH_HIST_SUB_BITS) - 1;
    return bench_hist_bucket_low(index) + ((1ULL << shift) - 1);
}

void bench_hist_record(struct bench_hist *h, uint64_t value)
{
    h->buckets[bench_hist_index(value)]++;
    h->count++;
    h->sum += value;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t bench_hist_percentile(const struct bench_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p <= 0.0)
        return h->min;
    /* the rank-th smallest sample, 1-based, rounded up: p99 of 1000 samples is the 990th */
    double exact = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact)
        rank++;
    if (rank == 0)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t high = bench_hist_bucket_high(i);
            return high < h->max ? high : h->max;
        }
    }
    return h->max;
}

double bench_hist_mean(const struct bench_hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
