/* test_aimd.c — the rebalancer's AIMD period controller, driven step by step with scripted
 * reactive-eviction counts; every period is checked exactly. */
#include <criterion/criterion.h>

#include "rebalancer/aimd.h"

static struct lethe_aimd_params params(void)
{
    /* the documented defaults: 10 ms .. 2 s, start 100 ms, +10 ms after 6 calm cycles,
     * x0.5 above 3 reactive evictions a cycle */
    struct lethe_aimd_params p = {
        .period_min_us = 10000,
        .period_max_us = 2000000,
        .period_initial_us = 100000,
        .additive_increase_us = 10000,
        .multiplicative_decrease = 0.5,
        .pressure_threshold = 3,
        .cooldown = 6,
    };
    return p;
}

Test(aimd, starts_at_the_initial_period_clamped_into_range)
{
    struct lethe_aimd_params p = params();
    struct lethe_aimd_state s;
    lethe_aimd_init(&p, &s);
    cr_assert_eq(s.period_us, 100000);
    p.period_initial_us = 5;
    lethe_aimd_init(&p, &s);
    cr_assert_eq(s.period_us, 10000);
    p.period_initial_us = 9000000;
    lethe_aimd_init(&p, &s);
    cr_assert_eq(s.period_us, 2000000);
    cr_assert_eq(s.pressure_events, 0);
    cr_assert_eq(s.relax_events, 0);
}

Test(aimd, more_reactive_evictions_than_the_threshold_halve_the_period)
{
    struct lethe_aimd_params p = params();
    struct lethe_aimd_state s;
    lethe_aimd_init(&p, &s);
    cr_assert_eq(lethe_aimd_next(&p, &s, 4), 50000);
    cr_assert_eq(s.pressure_events, 1);
    cr_assert_eq(lethe_aimd_next(&p, &s, 1000), 25000);
    cr_assert_eq(s.pressure_events, 2);
    cr_assert_eq(s.relax_events, 0);
}

Test(aimd, exactly_the_threshold_is_a_calm_cycle)
{
    struct lethe_aimd_params p = params();
    struct lethe_aimd_state s;
    lethe_aimd_init(&p, &s);
    cr_assert_eq(lethe_aimd_next(&p, &s, 3), 100000);
    cr_assert_eq(s.calm, 1);
    cr_assert_eq(s.pressure_events, 0);
}

Test(aimd, the_period_grows_by_the_increase_after_cooldown_calm_cycles)
{
    struct lethe_aimd_params p = params();
    struct lethe_aimd_state s;
    lethe_aimd_init(&p, &s);
    static const uint64_t expect[] = {100000, 100000, 100000, 100000, 100000, 110000,
                                      110000, 110000, 110000, 110000, 110000, 120000};
    for (unsigned i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        cr_assert_eq(lethe_aimd_next(&p, &s, 0), expect[i], "step %u", i);
    cr_assert_eq(s.relax_events, 2);
    cr_assert_eq(s.calm, 0);
}

Test(aimd, pressure_restarts_the_calm_count)
{
    struct lethe_aimd_params p = params();
    struct lethe_aimd_state s;
    lethe_aimd_init(&p, &s);
    /* 5 calm, pressure, 5 calm (no increase yet), the 6th calm increases */
    static const uint64_t script[] = {0, 1, 2, 3, 0, 9, 0, 0, 0, 0, 0, 0};
    static const uint64_t expect[] = {100000, 100000, 100000, 100000, 100000, 50000,
                                      50000,  50000,  50000,  50000,  50000,  60000};
    for (unsigned i = 0; i < sizeof(script) / sizeof(script[0]); i++)
        cr_assert_eq(lethe_aimd_next(&p, &s, script[i]), expect[i], "step %u", i);
    cr_assert_eq(s.pressure_events, 1);
    cr_assert_eq(s.relax_events, 1);
}

Test(aimd, the_period_never_drops_below_the_minimum)
{
    struct lethe_aimd_params p = params();
    struct lethe_aimd_state s;
    lethe_aimd_init(&p, &s);
    static const uint64_t expect[] = {50000, 25000, 12500, 10000, 10000};
    for (unsigned i = 0; i < 5; i++)
        cr_assert_eq(lethe_aimd_next(&p, &s, 50), expect[i], "step %u", i);
    cr_assert_eq(s.pressure_events, 5, "a pressure cycle at the floor still counts");
}

Test(aimd, the_period_never_exceeds_the_maximum_and_a_capped_cycle_is_no_relax_event)
{
    struct lethe_aimd_params p = params();
    p.period_initial_us = 1995000;
    p.cooldown = 1;
    struct lethe_aimd_state s;
    lethe_aimd_init(&p, &s);
    cr_assert_eq(lethe_aimd_next(&p, &s, 0), 2000000);
    cr_assert_eq(lethe_aimd_next(&p, &s, 0), 2000000);
    cr_assert_eq(lethe_aimd_next(&p, &s, 0), 2000000);
    cr_assert_eq(s.relax_events, 1);
}

Test(aimd, a_cooldown_of_zero_increases_on_every_calm_cycle)
{
    struct lethe_aimd_params p = params();
    p.cooldown = 0;
    struct lethe_aimd_state s;
    lethe_aimd_init(&p, &s);
    cr_assert_eq(lethe_aimd_next(&p, &s, 0), 110000);
    cr_assert_eq(lethe_aimd_next(&p, &s, 0), 120000);
}

Test(aimd, other_decrease_factors_apply_exactly)
{
    struct lethe_aimd_params p = params();
    p.multiplicative_decrease = 0.75;
    p.pressure_threshold = 0;
    struct lethe_aimd_state s;
    lethe_aimd_init(&p, &s);
    cr_assert_eq(lethe_aimd_next(&p, &s, 1), 75000);
    cr_assert_eq(lethe_aimd_next(&p, &s, 1), 56250);
    cr_assert_eq(lethe_aimd_next(&p, &s, 0), 56250, "0 is not above a threshold of 0");
}
