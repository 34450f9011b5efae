/* summary.c — lethe_print_summary(): the run in a dozen lines, for people. */
#include <stdio.h>

#include "core/core.h"

static double pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

void lethe_print_summary(struct lethe *l, FILE *out)
{
    struct lethe_stats s;
    lethe_get_stats(l, &s);
    /* A hit is a fault served from the local cache (a parked page mapped back); misses read
     * the memory node. First touches (demand zero) are neither. */
    uint64_t lookups = s.soft_hits + s.swap_ins;
    fprintf(out, "lethe summary\n");
    fprintf(out,
            "  faults          %llu: %llu demand-zero (+%llu pages filled around them), %llu "
            "swap-ins, %llu soft hits (hit rate %.1f%%), %llu waits, %llu retries\n",
            (unsigned long long)s.faults, (unsigned long long)s.demand_zero,
            (unsigned long long)s.prefilled, (unsigned long long)s.swap_ins,
            (unsigned long long)s.soft_hits, pct(s.soft_hits, lookups),
            (unsigned long long)s.fault_waits, (unsigned long long)s.fault_retries);
    if (s.swap_ins)
        fprintf(out, "  swap-in         %.2f us average (read + install)\n",
                (double)s.swap_in_ns_total / (double)s.swap_ins / 1000.0);
    if (s.recycled)
        fprintf(out,
                "  recycled        %llu pages installed into the page an eviction left in "
                "their frame\n",
                (unsigned long long)s.recycled);
    fprintf(out,
            "  evictions       %llu reactive, %llu proactive: %llu swap-outs, %llu clean "
            "drops, %llu fresh discards (%llu late writes caught)\n",
            (unsigned long long)s.reactive_evictions, (unsigned long long)s.proactive_evictions,
            (unsigned long long)s.swap_outs, (unsigned long long)s.clean_drops,
            (unsigned long long)s.fresh_discards, (unsigned long long)s.late_writes);
    fprintf(out,
            "  lists           %llu promotions, %llu demotions; now %llu active, %llu "
            "inactive, %llu free of %llu frames\n",
            (unsigned long long)s.promotions, (unsigned long long)s.demotions,
            (unsigned long long)s.active_pages, (unsigned long long)s.inactive_pages,
            (unsigned long long)s.free_frames, (unsigned long long)s.frames);
    fprintf(out,
            "  remote          %llu pages only remote, %llu slots in use; %llu pages "
            "released by the application\n",
            (unsigned long long)s.remote_pages, (unsigned long long)s.remote_slots_used,
            (unsigned long long)s.released_pages);
    if (l->cfg.reclaim == LETHE_RECLAIM_REBALANCER)
        fprintf(out,
                "  rebalancer      %llu cycles, %llu shard skips, period %llu us, %llu "
                "pressure events, %llu relax events, reserve target %llu frames\n",
                (unsigned long long)s.rebalancer_cycles, (unsigned long long)s.shard_skips,
                (unsigned long long)s.period_us, (unsigned long long)s.pressure_events,
                (unsigned long long)s.relax_events, (unsigned long long)s.reserve_target);
    else
        fprintf(out, "  reclaim         direct (no rebalancer thread)\n");
    uint64_t managed = s.region_pages * LETHE_PAGE_SIZE;
    fprintf(out, "  metadata        %llu KiB = %.3f%% of %llu MiB managed\n",
            (unsigned long long)(s.metadata_bytes >> 10), pct(s.metadata_bytes, managed),
            (unsigned long long)(managed >> 20));
    fprintf(out, "  paths           %s\n", l->paths);
}
