/* test_bench_zipf.c — lethe-bench's key distributions: the Zipfian generator draws ranks
 * with the probabilities of Zipf's law (theta 0.99 as in YCSB), its zeta shortcut agrees with
 * the exact sum, scrambling moves the hot keys away from the low keys without changing the
 * skew, "latest" makes the newest keys hot, and the operation mixes are YCSB's. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/lethe-bench/workload.c"
#include "../bench/lethe-bench/zipf.c"

#define DRAWS 1000000u

static int by_count_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

Test(bench_zipf, zeta_shortcut_matches_the_exact_sum)
{
    for (uint64_t n = (1u << 20) + 1; n < 8000000; n = n * 3 + 17) {
        double exact = bench_zeta_exact(n, 0.99);
        double fast = bench_zeta(n, 0.99);
        cr_assert(fabs(fast - exact) / exact < 1e-10, "n=%lu: %.15g vs %.15g", n, fast, exact);
    }
    /* small n is the exact sum itself */
    cr_assert_float_eq(bench_zeta(2, 0.99), 1.0 + pow(2.0, -0.99), 1e-15);
}

Test(bench_zipf, init_rejects_empty_key_space_and_theta_outside_0_1)
{
    struct bench_zipf z;
    cr_assert_eq(bench_zipf_init(&z, 0, 0.99), -EINVAL);
    cr_assert_eq(bench_zipf_init(&z, 10, 1.0), -EINVAL);
    cr_assert_eq(bench_zipf_init(&z, 10, 0.0), -EINVAL);
    cr_assert_eq(bench_zipf_init(&z, 10, 0.99), 0);
}

Test(bench_zipf, ranks_follow_zipfs_law)
{
    const uint64_t n = 10000;
    struct bench_zipf z;
    cr_assert_eq(bench_zipf_init(&z, n, 0.99), 0);
    uint32_t *count = calloc(n, sizeof(*count));
    struct bench_rng r;
    bench_rng_seed(&r, 42);
    for (unsigned i = 0; i < DRAWS; i++) {
        uint64_t k = bench_zipf_next(&z, &r);
        cr_assert_lt(k, n);
        count[k]++;
    }
    double zn = bench_zeta(n, 0.99);
    /* the head, rank by rank: p(i) = (i+1)^-theta / zeta(n) */
    for (unsigned i = 0; i < 2; i++) {
        double expect = pow(i + 1.0, -0.99) / zn;
        double got = (double)count[i] / DRAWS;
        cr_assert(fabs(got - expect) / expect < 0.02, "rank %u: %.5f vs %.5f", i, got, expect);
    }
    /* the body, by mass: the top 1% of ranks take zeta(n/100)/zeta(n) of the draws (the
     * continuous approximation beyond rank 1 is YCSB's too; allow it 3%) */
    uint64_t head = 0;
    for (unsigned i = 0; i < n / 100; i++)
        head += count[i];
    double expect = bench_zeta(n / 100, 0.99) / zn;
    double got = (double)head / DRAWS;
    cr_assert(fabs(got - expect) / expect < 0.03, "top 1%%: %.4f vs %.4f", got, expect);
    /* and it is skewed: the top 1% get more than half of the accesses, the tail still some */
    cr_assert_gt(got, 0.5);
    uint64_t tail = 0;
    for (uint64_t i = n / 2; i < n; i++)
        tail += count[i];
    cr_assert_gt(tail, 0, "the coldest half is still drawn sometimes");
    free(count);
}

Test(bench_zipf, scrambling_spreads_hot_keys_and_keeps_the_skew)
{
    const uint64_t n = 100000;
    struct bench_zipf z;
    cr_assert_eq(bench_zipf_init(&z, n, 0.99), 0);
    uint32_t *count = calloc(n, sizeof(*count));
    struct bench_rng r;
    bench_rng_seed(&r, 7);
    for (unsigned i = 0; i < DRAWS; i++) {
        uint64_t k = bench_zipf_scrambled(&z, &r);
        cr_assert_lt(k, n);
        count[k]++;
    }
    /* the hot keys are spread over the key space: of the 20 hottest, not all in one tenth */
    uint64_t hottest = 0;
    for (uint64_t k = 1; k < n; k++)
        if (count[k] > count[hottest])
            hottest = k;
    cr_assert_eq(hottest, bench_reduce(bench_mix64(0), n), "the hottest key is rank 0's");
    unsigned low = 0;
    uint32_t *sorted = malloc(n * sizeof(*sorted));
    memcpy(sorted, count, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), by_count_desc);
    for (uint64_t k = 0; k < n; k++)
        if (count[k] >= sorted[19] && k < n / 10)
            low++;
    cr_assert_lt(low, 10, "%u of the 20 hottest keys are in the first tenth", low);
    /* the skew survives: the hottest key has rank 0's share, the top 1% most of the mass */
    double zn = bench_zeta(n, 0.99);
    cr_assert(fabs((double)sorted[0] / DRAWS - 1.0 / zn) / (1.0 / zn) < 0.03);
    uint64_t head = 0;
    for (unsigned i = 0; i < n / 100; i++)
        head += sorted[i];
    cr_assert_gt((double)head / DRAWS, 0.5);
    free(sorted);
    free(count);
}

Test(bench_zipf, uniform_keys_fill_every_decile_evenly)
{
    struct bench_keygen g;
    const struct bench_workload *w = bench_workload_get('C');
    cr_assert_eq(bench_keygen_init(&g, w, BENCH_DIST_UNIFORM, 0.99, 1000, NULL), 0);
    unsigned decile[10] = {0};
    struct bench_rng r;
    bench_rng_seed(&r, 3);
    for (unsigned i = 0; i < DRAWS; i++) {
        uint64_t k = bench_next_key(&g, &r);
        cr_assert_lt(k, 1000);
        decile[k / 100]++;
    }
    for (unsigned d = 0; d < 10; d++)
        cr_assert(abs((int)decile[d] - (int)(DRAWS / 10)) < (int)(DRAWS / 100), "decile %u: %u", d,
                  decile[d]);
}

Test(bench_zipf, latest_makes_the_newest_keys_hot)
{
    struct bench_inserts ins;
    cr_assert_eq(bench_inserts_init(&ins, 1000), 0);
    for (unsigned i = 0; i < 500; i++)
        bench_inserts_ack(&ins, bench_inserts_claim(&ins));
    cr_assert_eq(bench_inserts_limit(&ins), 1500);
    struct bench_keygen g;
    cr_assert_eq(
        bench_keygen_init(&g, bench_workload_get('D'), BENCH_DIST_ZIPFIAN, 0.99, 1000, &ins), 0);
    struct bench_rng r;
    bench_rng_seed(&r, 11);
    unsigned newest = 0, recent = 0;
    for (unsigned i = 0; i < 100000; i++) {
        uint64_t k = bench_next_key(&g, &r);
        cr_assert_lt(k, 1500, "reads only acknowledged keys");
        newest += k == 1499;
        recent += k >= 1400;
    }
    double p0 = 1.0 / bench_zeta(1000, 0.99);
    cr_assert(fabs(newest / 100000.0 - p0) / p0 < 0.05, "newest key share %u", newest);
    cr_assert_gt(recent, 60000, "the 100 newest keys take most reads (%u)", recent);
    bench_inserts_destroy(&ins);
}

Test(bench_zipf, operation_mixes_are_ycsbs)
{
    static const struct {
        char name;
        unsigned read, update, insert;
    } want[] = {{'A', 50, 50, 0}, {'B', 95, 5, 0}, {'C', 100, 0, 0}, {'D', 95, 0, 5}};
    struct bench_rng r;
    bench_rng_seed(&r, 5);
    for (unsigned i = 0; i < 4; i++) {
        const struct bench_workload *w = bench_workload_get(want[i].name);
        cr_assert_not_null(w);
        unsigned n[BENCH_OP_KINDS] = {0};
        for (unsigned j = 0; j < 200000; j++)
            n[bench_next_op(w, &r)]++;
        unsigned expect[] = {want[i].read, want[i].update, want[i].insert};
        for (unsigned k = 0; k < BENCH_OP_KINDS; k++)
            cr_assert(fabs(n[k] / 2000.0 - expect[k]) < 0.5, "workload %c %s: %.2f%%", want[i].name,
                      bench_op_name(k), n[k] / 2000.0);
    }
    cr_assert_null(bench_workload_get('E'));
}

Test(bench_zipf, same_seed_same_sequence)
{
    struct bench_zipf z;
    bench_zipf_init(&z, 1000000, 0.99);
    struct bench_rng a, b, c;
    bench_rng_seed(&a, 99);
    bench_rng_seed(&b, 99);
    bench_rng_seed(&c, 100);
    unsigned differ = 0;
    for (unsigned i = 0; i < 1000; i++) {
        uint64_t x = bench_zipf_scrambled(&z, &a);
        cr_assert_eq(x, bench_zipf_scrambled(&z, &b));
        differ += x != bench_zipf_scrambled(&z, &c);
    }
    cr_assert_gt(differ, 500, "another seed gives another sequence");
}
