/* test_reserve.c — the rebalancer keeps a reserve of free frames, and its AIMD period adapts
 * to the pressure the vCPUs report. Timing-dependent by nature: the assertions are on
 * counters, with generous margins, and the loads are throttled so that a busy machine still
 * passes. Cache 2 MiB (512 frames), reserve 20% (102 frames): the most the rebalancer keeps
 * free; it aims at twice what the faults take in one period, at least 2 batches per vCPU.
 * The rebalancer works only once a fault has found the cache full: a program that fits is
 * left alone.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "core_test.h"

#define MiB (1024UL * 1024UL)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct lethe_stats stats(struct lethe *l)
{
    struct lethe_stats s;
    lethe_get_stats(l, &s);
    return s;
}

/* Cache 2 MiB, region 32 MiB, thread delivery, the rebalancer with the given periods (µs). */
static struct lethe *start_rebalancer(uint64_t initial, uint64_t min, uint64_t max)
{
    struct lethe_config c =
        core_test_config(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_REBALANCER, 2 * MiB, 32 * MiB);
    c.period_initial_us = initial;
    c.period_min_us = min;
    c.period_max_us = max;
    struct lethe *l = NULL;
    cr_assert_eq(lethe_start(&c, &l), 0);
    return l;
}

Test(reserve, free_frames_recover_to_the_reserve_between_bursts, .timeout = 60)
{
    struct lethe *l = start_rebalancer(20000, 5000, 100000);
    const unsigned pages = 2048;
    char *p = lethe_extent_alloc(l, pages * PG, 0);
    const uint64_t most = 512 * 20 / 100, least = 2 * 4 * 2; /* 2 batches of 4 per vCPU */
    uint64_t seed = 88172645463325252ULL, top = 0;
    for (unsigned burst = 0; burst < 3; burst++) {
        /* a burst: 600 distinct pages (an odd stride over 2048 pages never comes back
         * early) touched as fast as the faults go, more than the cache holds, so the first
         * burst always fills it; the rebalancer's target is sampled meanwhile */
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        for (unsigned i = 0; i < 600; i++) {
            p[((seed + i * 613ULL) % pages) * PG] = (char)burst;
            uint64_t target = i % 50 == 0 ? stats(l).reserve_target : 0;
            if (target > top)
                top = target;
        }
        /* the target is set by the rebalancer's cycles: wait for two that began after the
         * burst (the burst can be over before the first cycle since the cache filled) */
        double deadline = now_s() + 10.0;
        struct lethe_stats s = stats(l);
        const uint64_t cycles0 = s.rebalancer_cycles;
        while ((s.rebalancer_cycles < cycles0 + 2 || s.free_frames < s.reserve_target) &&
               now_s() < deadline) {
            usleep(5000);
            if (s.reserve_target > top)
                top = s.reserve_target;
            s = stats(l);
        }
        cr_assert_geq(s.free_frames, s.reserve_target, "burst %u: %lu free frames, target %lu",
                      burst, (unsigned long)s.free_frames, (unsigned long)s.reserve_target);
        cr_assert(s.reserve_target >= least && s.reserve_target <= most,
                  "the target stays within [%lu, %lu]: %lu", (unsigned long)least,
                  (unsigned long)most, (unsigned long)s.reserve_target);
    }
    struct lethe_stats s = stats(l);
    cr_assert_gt(s.proactive_evictions, 0, "the rebalancer evicted ahead of demand");
    cr_assert_gt(s.rebalancer_cycles, 0);
    cr_assert_gt(top, least, "the target rose with the bursts (highest seen %lu)",
                 (unsigned long)top);
    lethe_stop(l);
}

Test(reserve, a_program_that_fits_is_neither_aged_nor_evicted, .timeout = 60)
{
    struct lethe *l = start_rebalancer(1000, 1000, 2000);
    /* 90% of the cache: well inside the reserve the rebalancer would keep free */
    const unsigned pages = 460;
    char *p = lethe_extent_alloc(l, 1024 * PG, 0);
    for (unsigned i = 0; i < pages; i++)
        p[i * PG] = (char)i;
    uint64_t cycles0 = stats(l).rebalancer_cycles;
    double deadline = now_s() + 10.0;
    while (stats(l).rebalancer_cycles < cycles0 + 20 && now_s() < deadline)
        usleep(2000);
    for (unsigned round = 0; round < 3; round++)
        for (unsigned i = 0; i < pages; i++)
            cr_assert_eq(p[i * PG], (char)i, "page %u", i);
    struct lethe_stats s = stats(l);
    cr_assert_geq(s.rebalancer_cycles, cycles0 + 20, "the rebalancer ran");
    cr_assert_eq(s.demotions, 0, "nothing aged");
    cr_assert_eq(s.soft_hits, 0, "so no soft fault");
    cr_assert_eq(s.proactive_evictions + s.reactive_evictions, 0, "nothing evicted");
    /* once the program outgrows the cache, the rebalancer takes over */
    for (unsigned i = pages; i < 1024; i++)
        p[i * PG] = (char)i;
    deadline = now_s() + 10.0;
    while (stats(l).proactive_evictions == 0 && now_s() < deadline) {
        for (unsigned i = 0; i < 1024; i += 7)
            cr_assert_eq(p[i * PG], (char)i, "page %u", i);
        usleep(2000);
    }
    s = stats(l);
    cr_assert_gt(s.reactive_evictions, 0, "the cache filled up");
    cr_assert_gt(s.proactive_evictions, 0, "then the rebalancer evicted ahead of demand");
    cr_assert_gt(s.demotions, 0);
    lethe_stop(l);
}

struct load {
    char *base;
    unsigned pages;
    atomic_bool stop;
};

/* A steady fault load, about 4000 first-touch faults a second: 20 untouched pages, then a
 * 5 ms pause. The pages are only read, so evicting them is a cheap discard and each comes
 * back untouched for the next lap. */
static void *steady(void *arg)
{
    struct load *ld = arg;
    unsigned next = 0;
    while (!atomic_load(&ld->stop)) {
        for (unsigned i = 0; i < 20; i++) {
            (void)*(volatile char *)(ld->base + (size_t)next * PG);
            next = (next + 1) % ld->pages;
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

Test(reserve, reactive_evictions_fall_as_the_aimd_period_shortens, .timeout = 60)
{
    struct lethe_config c =
        core_test_config(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_REBALANCER, 2 * MiB, 64 * MiB);
    /* A period far too long for the load to start with; a slow additive increase so the
     * period stays short once the controller has found it. */
    c.period_initial_us = 1000000;
    c.period_max_us = 2000000;
    c.period_min_us = 2000;
    c.additive_increase_us = 500;
    c.cooldown = 50;
    c.pressure_threshold = 3;
    c.fault_around = 0;   /* one fault per page: the load below is counted in faults */
    c.reclaim_batch = 32; /* reactive evictions come in batches big enough to count */
    struct lethe *l = NULL;
    cr_assert_eq(lethe_start(&c, &l), 0);
    struct load ld = {.pages = 8192};
    ld.base = lethe_extent_alloc(l, ld.pages * PG, 0);
    atomic_init(&ld.stop, false);
    pthread_t t;
    pthread_create(&t, NULL, steady, &ld);

    /* Reactive evictions in the first second, then in each later second until one shows
     * them halved (at most 12 s: a loaded 2-CPU machine can delay the rebalancer's wake-ups,
     * so the test waits for the fall rather than timing it). */
    double t0 = now_s();
    uint64_t at0 = stats(l).reactive_evictions, prev, first = 0, last = 0;
    while (now_s() < t0 + 1)
        usleep(10000);
    prev = stats(l).reactive_evictions;
    first = prev - at0;
    for (unsigned i = 2; i <= 12; i++) {
        while (now_s() < t0 + i)
            usleep(10000);
        uint64_t cur = stats(l).reactive_evictions;
        last = cur - prev;
        prev = cur;
        if (i >= 4 && last * 2 < first)
            break;
    }
    atomic_store(&ld.stop, true);
    pthread_join(t, NULL);
    struct lethe_stats s = stats(l);
    cr_log_info("reactive evictions: first second %lu, last second %lu; period %lu us, %lu "
                "pressure events, %lu proactive evictions",
                (unsigned long)first, (unsigned long)last, (unsigned long)s.period_us,
                (unsigned long)s.pressure_events, (unsigned long)s.proactive_evictions);
    cr_assert_gt(first, 0, "a 1 s period cannot keep up: the vCPUs evict for themselves");
    cr_assert_geq(s.pressure_events, 1);
    cr_assert_leq(s.period_us, c.period_initial_us / 4, "the period came down (%lu us)",
                  (unsigned long)s.period_us);
    cr_assert_lt(last * 2, first, "reactive evictions fell: first second %lu, last second %lu",
                 (unsigned long)first, (unsigned long)last);
    cr_assert_gt(s.proactive_evictions, 0);
    lethe_stop(l);
}
