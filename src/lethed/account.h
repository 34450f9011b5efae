/* account.h — what the program holds resident, and how much of it Lethe manages (internal to
 * src/lethed).
 *
 * lethed reads the program's /proc/PID/smaps (the kernel's own figures) about once a second
 * while it runs, never in the program's fault path, and splits its resident memory (Rss):
 *  - cache: Rss of the region and the parking area (the runtime publishes where they lie);
 *  - node: Rss of the memory node's shared memory that the shm transport maps
 *    ("/memfd:lethe-region-*"): the node's pages, standing in for another machine's DRAM;
 *  - outside: everything else (thread stacks, libraries, shared and file mappings, memory the
 *    kernel keeps because liblethe does not place it in the region: docs/PRELOAD.md).
 * The managed share of the program's anonymous memory is
 *     (cache + remote pages) / (cache + remote pages + anonymous memory outside the region),
 * remote pages counted at 4 KiB each from the runtime's stats. Once, when more than half of
 * the program's resident memory (node's left out) is outside the cache and that is at least
 * LETHED_ACCOUNT_WARN_FLOOR, lethed warns and names the three largest unmanaged mappings.
 */
#ifndef LETHED_ACCOUNT_H
#define LETHED_ACCOUNT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/stats_shm.h"

#define LETHED_ACCOUNT_TOP         3
#define LETHED_ACCOUNT_WARN_FLOOR  (16ULL << 20)
#define LETHED_ACCOUNT_INTERVAL_NS (1000ULL * 1000 * 1000)

struct lethed_mapping {
    uint64_t start, end, rss; /* bytes */
    char name[96];            /* "[heap]", "[stack]", a path, or "[anon]" */
};

/* One reading of smaps, in bytes. */
struct lethed_account_sample {
    uint64_t rss, cache, node, outside, anon_outside;
    struct lethed_mapping top[LETHED_ACCOUNT_TOP]; /* largest outside, by Rss; rss 0: none */
};

struct lethed_account {
    bool valid; /* at least one sample */
    struct lethed_account_sample last;
    uint64_t rss_peak, outside_peak;
    double managed_share; /* of the last sample, 0..1 */
    uint64_t sampled_ns;  /* CLOCK_MONOTONIC of the last sample */
    uint64_t first_ns;    /* and of the first: no warning in the program's first second */
    bool warned;
};

/* Parses smaps text against the region [region, +region_size) and the parking area. Returns 0,
 * or -EINVAL when no mapping could be read. */
int lethed_account_parse(FILE *smaps, uint64_t region, uint64_t region_size, uint64_t park,
                         uint64_t park_size, struct lethed_account_sample *out);
/* Samples pid's smaps (when the last sample is older than LETHED_ACCOUNT_INTERVAL_NS, or
 * force), updates the peaks and the share, and warns once (see above). A vanished process is
 * not an error: the last sample stands. */
void lethed_account_update(struct lethed_account *a, int pid,
                           const struct lethe_stats_snapshot *snap, const char *command,
                           bool force);

#endif
