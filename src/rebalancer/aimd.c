/* aimd.c — the AIMD period controller (see aimd.h). */
#include "rebalancer/aimd.h"

static uint64_t clamp(const struct lethe_aimd_params *p, uint64_t v)
{
    uint64_t lo = p->period_min_us, hi = p->period_max_us < lo ? lo : p->period_max_us;
    return v < lo ? lo : v > hi ? hi : v;
}

void lethe_aimd_params_from_config(const struct lethe_config *c, struct lethe_aimd_params *p)
{
    p->period_min_us = c->period_min_us;
    p->period_max_us = c->period_max_us;
    p->period_initial_us = c->period_initial_us;
    p->additive_increase_us = c->additive_increase_us;
    p->multiplicative_decrease = c->multiplicative_decrease;
    p->pressure_threshold = c->pressure_threshold;
    p->cooldown = c->cooldown;
}

void lethe_aimd_init(const struct lethe_aimd_params *p, struct lethe_aimd_state *s)
{
    s->period_us = clamp(p, p->period_initial_us);
    s->calm = 0;
    s->pressure_events = 0;
    s->relax_events = 0;
}

uint64_t lethe_aimd_next(const struct lethe_aimd_params *p, struct lethe_aimd_state *s,
                         uint64_t reactive)
{
    if (reactive > p->pressure_threshold) {
        double md = p->multiplicative_decrease;
        if (!(md > 0.0 && md < 1.0))
            md = 0.5;
        s->period_us = clamp(p, (uint64_t)((double)s->period_us * md));
        s->calm = 0;
        s->pressure_events++;
        return s->period_us;
    }
    unsigned cooldown = p->cooldown ? p->cooldown : 1;
    if (++s->calm >= cooldown) {
        s->calm = 0;
        uint64_t before = s->period_us;
        s->period_us = clamp(p, s->period_us + p->additive_increase_us);
        if (s->period_us > before)
            s->relax_events++;
    }
    return s->period_us;
}
