/* histogram.h — log-linear latency histogram (nanoseconds), HdrHistogram-like.
 *
 * Values below 2^BENCH_HIST_SUB_BITS are counted exactly; above, each power of two is cut
 * into 2^BENCH_HIST_SUB_BITS equal sub-buckets, so any recorded value is known to within
 * 1/32 (about 3%) of itself, from 1 ns to 2^64 ns, in a fixed 15 KiB array. Recording is
 * a few shifts and one increment.
 *
 * One histogram belongs to one thread; merge per-thread histograms after the threads end.
 * Percentiles report the highest value of the bucket the rank falls in (never more than the
 * largest value recorded), as HdrHistogram's "highest equivalent value" does.
 */
#ifndef BENCH_HISTOGRAM_H
#define BENCH_HISTOGRAM_H

#include <stdint.h>

#define BENCH_HIST_SUB_BITS 5
#define BENCH_HIST_SUB      (1u << BENCH_HIST_SUB_BITS)
#define BENCH_HIST_BUCKETS  ((64 - BENCH_HIST_SUB_BITS + 1) * BENCH_HIST_SUB)

struct bench_hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t buckets[BENCH_HIST_BUCKETS];
};

void bench_hist_init(struct bench_hist *h);
void bench_hist_record(struct bench_hist *h, uint64_t value);
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/* p in [0, 100]; 0 when the histogram is empty. */
uint64_t bench_hist_percentile(const struct bench_hist *h, double p);
double bench_hist_mean(const struct bench_hist *h);

/* Bucket arithmetic, exposed for the tests. */
unsigned bench_hist_index(uint64_t value);
uint64_t bench_hist_bucket_low(unsigned index);
uint64_t bench_hist_bucket_high(unsigned index);

#endif
