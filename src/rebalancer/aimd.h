/* aimd.h — the rebalancer's period controller (additive increase, multiplicative decrease).
 *
 * A pure function of its inputs, so tests can drive it step by step. Each rebalancer cycle
 * reports how many reactive evictions (evictions the vCPUs had to do themselves in the fault
 * path, for want of a free frame) happened since the previous cycle:
 *  - more than pressure_threshold: pressure. period = max(period_min, period * decrease),
 *    the calm count restarts at 0, pressure_events++ (every pressure cycle counts, including
 *    one that finds the period already at its minimum).
 *  - otherwise the cycle is calm: calm++; at `cooldown` calm cycles the count restarts and
 *    period = min(period_max, period + increase); relax_events++ when the period grew.
 * A cooldown of 0 behaves as 1 (every calm cycle may increase the period).
 */
#ifndef LETHE_AIMD_H
#define LETHE_AIMD_H

#include <stdint.h>

#include "core/config.h"

struct lethe_aimd_params {
    uint64_t period_min_us;
    uint64_t period_max_us;
    uint64_t period_initial_us;
    uint64_t additive_increase_us;
    double multiplicative_decrease; /* in (0, 1) */
    unsigned pressure_threshold;
    unsigned cooldown;
};

struct lethe_aimd_state {
    uint64_t period_us;
    unsigned calm;
    uint64_t pressure_events;
    uint64_t relax_events;
};

void lethe_aimd_params_from_config(const struct lethe_config *c, struct lethe_aimd_params *p);
/* period = period_initial clamped to [min, max]; counters zero. */
void lethe_aimd_init(const struct lethe_aimd_params *p, struct lethe_aimd_state *s);
/* One cycle's step; returns the new period (also in s->period_us). */
uint64_t lethe_aimd_next(const struct lethe_aimd_params *p, struct lethe_aimd_state *s,
                         uint64_t reactive_evictions_in_cycle);

#endif
