/* rebalancer.h — reclaim policy: the background rebalancer and direct reclaim (internal to
 * src/core and src/rebalancer).
 *
 * reclaim = rebalancer: one thread visits the shards every `period` (AIMD-tuned, aimd.h),
 * demotes pages to keep the inactive list at inactive_pct of the resident pages, and evicts
 * ahead of demand while free frames are below reserve_pct of the frames (proactive
 * evictions). A vCPU that finds no free frame evicts for itself (reactive eviction), which
 * counts as pressure and kicks the rebalancer awake at once.
 * reclaim = direct: no thread; the faulting vCPU reclaims a batch (lethe_reclaim) when no
 * frame is free, Linux-style. Both use lethe_demote / lethe_evict (core.h) for the mechanics.
 */
#ifndef LETHE_REBALANCER_H
#define LETHE_REBALANCER_H

#include <stdint.h>

#include "core/core.h"

int lethe_rebalancer_start(struct lethe *l);
void lethe_rebalancer_stop(struct lethe *l);
/* Asks for a cycle now (cheap when one is already pending). */
void lethe_rebalancer_kick(struct lethe *l);
/* One full cycle over the shards, as the thread runs it (tests drive it directly). */
void lethe_rebalancer_cycle(struct lethe *l, struct lethe_worker *w);

/* Direct reclaim for a vCPU that found no free frame (both modes): evicts a batch, starting
 * with shard si, refilling the inactive list from the active tail when it is short, and
 * hands one freed frame to the caller (*out, isolated). Counts the evictions as reactive.
 * Returns 0, or a negative errno when eviction failed (transport error, remote full). */
int lethe_reclaim(struct lethe *l, struct lethe_worker *w, unsigned si, uint32_t *out);

#endif
