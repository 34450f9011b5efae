/* test_stress.c — many threads read and write a working set four times the cache, and every
 * page always holds exactly what was last written to it (engine: core_stress.h). Cases: 1, 2
 * and 8 threads, for both reclaim modes and both delivery modes, 0.75 s each
 * (LETHE_STRESS_SECONDS overrides). Zero mismatches; a hang trips Criterion's timeout. The
 * same cases run under ThreadSanitizer as test/stress/core_swapper.c. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "core_stress.h"

static void stress(enum lethe_delivery d, enum lethe_reclaim rc, unsigned threads)
{
    const char *env = getenv("LETHE_STRESS_SECONDS");
    struct stress_result r = stress_run(d, rc, threads, env ? atof(env) : 0.75);
    cr_assert_eq(r.start_rc, 0, "lethe_start: %d", r.start_rc);
    cr_assert_eq(r.mismatches, 0, "%lu mismatches; first: %s", r.mismatches, r.error);
    cr_assert_eq(r.idle_threads, 0, "every thread made progress");
    cr_assert_gt(r.stats.swap_ins, 0, "the working set did not fit: pages came back");
    cr_assert_gt(r.stats.swap_outs, 0);
    cr_assert_leq(r.stats.active_pages + r.stats.inactive_pages, r.stats.frames);
    cr_log_info("%u threads, %s, %s: %lu ops, %lu faults, %lu swap-ins, %lu soft hits, %lu "
                "waits, %lu late writes, %lu churn rounds",
                threads, lethe_delivery_name(d), lethe_reclaim_name(rc), r.ops,
                (unsigned long)r.stats.faults, (unsigned long)r.stats.swap_ins,
                (unsigned long)r.stats.soft_hits, (unsigned long)r.stats.fault_waits,
                (unsigned long)r.stats.late_writes, r.churn_rounds);
}

#define STRESS(d, r, n)                                                                            \
    Test(stress, content_is_intact_##d##_##r##_##n##_threads, .timeout = 120)                      \
    {                                                                                              \
        stress(LETHE_DELIVERY_##d, LETHE_RECLAIM_##r, n);                                          \
    }

STRESS(THREAD, REBALANCER, 1)
STRESS(THREAD, REBALANCER, 2)
STRESS(THREAD, REBALANCER, 8)
STRESS(THREAD, DIRECT, 1)
STRESS(THREAD, DIRECT, 2)
STRESS(THREAD, DIRECT, 8)
STRESS(SIGNAL, REBALANCER, 1)
STRESS(SIGNAL, REBALANCER, 2)
STRESS(SIGNAL, REBALANCER, 8)
STRESS(SIGNAL, DIRECT, 1)
STRESS(SIGNAL, DIRECT, 2)
STRESS(SIGNAL, DIRECT, 8)
