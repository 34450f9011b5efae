/* test_bench_stats.c — lethe-bench's latency histogram: every value lands in a bucket that
 * contains it, buckets are within 1/32 of their values, percentiles pick the right rank, and
 * merging per-thread histograms equals recording everything in one. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "../bench/lethe-bench/histogram.c"

Test(bench_stats, every_value_lands_in_a_bucket_that_contains_it)
{
    uint64_t samples[] = {0,
                          1,
                          31,
                          32,
                          33,
                          63,
                          64,
                          65,
                          1000,
                          4095,
                          4096,
                          123456789,
                          1ULL << 40,
                          (1ULL << 40) + 12345,
                          UINT64_MAX - 1,
                          UINT64_MAX};
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        uint64_t v = samples[i];
        unsigned idx = bench_hist_index(v);
        cr_assert_lt(idx, BENCH_HIST_BUCKETS);
        cr_assert(bench_hist_bucket_low(idx) <= v && v <= bench_hist_bucket_high(idx),
                  "%lu in [%lu, %lu]", v, bench_hist_bucket_low(idx), bench_hist_bucket_high(idx));
        /* relative width: at most 1/32 of the bucket's low end */
        uint64_t width = bench_hist_bucket_high(idx) - bench_hist_bucket_low(idx);
        cr_assert(width <= bench_hist_bucket_low(idx) / BENCH_HIST_SUB, "bucket of %lu", v);
    }
}

Test(bench_stats, buckets_tile_the_line_without_gaps)
{
    for (unsigned i = 1; i < BENCH_HIST_BUCKETS; i++)
        cr_assert_eq(bench_hist_bucket_low(i), bench_hist_bucket_high(i - 1) + 1, "bucket %u", i);
    cr_assert_eq(bench_hist_bucket_high(BENCH_HIST_BUCKETS - 1), UINT64_MAX);
}

Test(bench_stats, percentiles_pick_the_rank)
{
    struct bench_hist h;
    bench_hist_init(&h);
    cr_assert_eq(bench_hist_percentile(&h, 50), 0, "empty histogram");
    /* 1..1000 ns: p50 is 500, p99 990, p99.9 999, all within one bucket's width */
    for (uint64_t v = 1000; v >= 1; v--)
        bench_hist_record(&h, v);
    cr_assert_eq(h.count, 1000);
    cr_assert_eq(h.min, 1);
    cr_assert_eq(h.max, 1000);
    struct {
        double p;
        uint64_t want;
    } cases[] = {{50, 500}, {99, 990}, {99.9, 999}, {100, 1000}};
    for (unsigned i = 0; i < 4; i++) {
        uint64_t got = bench_hist_percentile(&h, cases[i].p);
        cr_assert(got >= cases[i].want && got <= cases[i].want + cases[i].want / 32,
                  "p%g = %lu, want %lu", cases[i].p, got, cases[i].want);
    }
    cr_assert_float_eq(bench_hist_mean(&h), 500.5, 1e-9);
}

Test(bench_stats, a_rare_slow_tail_shows_in_p999_not_p50)
{
    struct bench_hist h;
    bench_hist_init(&h);
    for (unsigned i = 0; i < 9980; i++)
        bench_hist_record(&h, 200);
    for (unsigned i = 0; i < 20; i++)
        bench_hist_record(&h, 50000);
    cr_assert_lt(bench_hist_percentile(&h, 50), 210);
    cr_assert_lt(bench_hist_percentile(&h, 99), 210);
    cr_assert_geq(bench_hist_percentile(&h, 99.9), 50000 - 50000 / 32);
    cr_assert_eq(bench_hist_percentile(&h, 100), 50000, "never above the maximum");
}

Test(bench_stats, merging_equals_recording_in_one)
{
    struct bench_hist a, b, all;
    bench_hist_init(&a);
    bench_hist_init(&b);
    bench_hist_init(&all);
    srand(1);
    for (unsigned i = 0; i < 20000; i++) {
        uint64_t v = (uint64_t)rand() * (uint64_t)(rand() % 1000);
        bench_hist_record(i % 3 ? &a : &b, v);
        bench_hist_record(&all, v);
    }
    bench_hist_merge(&a, &b);
    cr_assert_eq(a.count, all.count);
    cr_assert_eq(a.sum, all.sum);
    cr_assert_eq(a.min, all.min);
    cr_assert_eq(a.max, all.max);
    cr_assert_arr_eq(a.buckets, all.buckets, sizeof(a.buckets));
}
