/* stats.c — reading the counters. Every counter is kept per worker (vCPU, rebalancer,
 * control) on the worker's own cache lines, plus one shared block for the release paths; a
 * read sums them with relaxed loads, so the figures are a consistent-enough snapshot, not an
 * atomic one. List sizes come from the shards' list counts, read without their locks.
 */
#include <string.h>

#include "core/core.h"

static void add_counters(struct lethe_stats *o, const struct lethe_counters *c, uint64_t *gain,
                         uint64_t *loss)
{
    o->faults += lethe_load64(&c->faults);
    o->demand_zero += lethe_load64(&c->demand_zero);
    o->swap_ins += lethe_load64(&c->swap_ins);
    o->soft_hits += lethe_load64(&c->soft_hits);
    o->fault_waits += lethe_load64(&c->fault_waits);
    o->fault_retries += lethe_load64(&c->fault_retries);
    o->swap_outs += lethe_load64(&c->swap_outs);
    o->clean_drops += lethe_load64(&c->clean_drops);
    o->fresh_discards += lethe_load64(&c->fresh_discards);
    o->late_writes += lethe_load64(&c->late_writes);
    o->prefilled += lethe_load64(&c->prefilled);
    o->recycled += lethe_load64(&c->recycled);
    o->held += lethe_load64(&c->held);
    o->reactive_evictions += lethe_load64(&c->reactive_evictions);
    o->proactive_evictions += lethe_load64(&c->proactive_evictions);
    o->promotions += lethe_load64(&c->promotions);
    o->demotions += lethe_load64(&c->demotions);
    o->released_pages += lethe_load64(&c->released_pages);
    o->swap_in_ns_total += lethe_load64(&c->swap_in_ns_total);
    *gain += lethe_load64(&c->remote_gain);
    *loss += lethe_load64(&c->remote_loss);
}

size_t lethe_metadata_bytes(const struct lethe *l)
{
    return l->pt_bytes + l->frames_bytes + l->shards_bytes + l->workers_bytes + l->slots.bytes +
           l->slots.sums_bytes + l->extents.bytes + l->frame_cap + sizeof(*l);
}

void lethe_get_stats(struct lethe *l, struct lethe_stats *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t gain = 0, loss = 0;
    for (unsigned i = 0; i < l->nworkers; i++)
        add_counters(out, &l->workers[i].cnt, &gain, &loss);
    add_counters(out, &l->misc, &gain, &loss);
    out->rebalancer_cycles = lethe_load64(&l->rebalancer_cycles);
    out->shard_skips = lethe_load64(&l->shard_skips);
    out->period_us = lethe_load64(&l->period_us);
    out->reserve_target = lethe_load64(&l->reserve_target);
    out->pressure_events = lethe_load64(&l->pressure_events);
    out->relax_events = lethe_load64(&l->relax_events);
    out->frames = lethe_load64(&l->frames_target);
    for (unsigned i = 0; i < l->nshards; i++) {
        const struct lethe_shard *s = &l->shards[i];
        out->free_frames += lethe_list_count(&s->free);
        out->active_pages += lethe_list_count(&s->active);
        out->inactive_pages += lethe_list_count(&s->inactive);
    }
    out->remote_pages = gain > loss ? gain - loss : 0;
    out->remote_slots_used = lethe_slots_used(&l->slots);
    out->region_pages = l->region_pages;
    out->metadata_bytes = lethe_metadata_bytes(l);
}

void lethe_get_shard_stats(struct lethe *l, unsigned shard, struct lethe_shard_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (shard >= l->nshards)
        return;
    const struct lethe_shard *s = &l->shards[shard];
    out->faults = __atomic_load_n(&s->faults, __ATOMIC_RELAXED);
    out->free_frames = lethe_list_count(&s->free);
    out->active = lethe_list_count(&s->active);
    out->inactive = lethe_list_count(&s->inactive);
}
