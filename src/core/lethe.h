/* lethe.h — the swapper, for programs that link Lethe directly (lethe-bench, the tests,
 * liblethe.so itself).
 *
 * lethe_start() builds everything from a config: the managed region and its vCPUs (src/fault),
 * the page table, the frames and shards, the transport channels (src/rdma) and, with
 * reclaim = rebalancer, the rebalancer thread. Memory from lethe_extent_alloc() lives in the
 * region: it may be swapped out at any time and is faulted back in on touch.
 *
 * Thread safety: every function may be called from any application thread, except
 * lethe_stop(), which must be the last call and must not race with other calls.
 */
#ifndef LETHE_LETHE_H
#define LETHE_LETHE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "core/config.h"

struct lethe;

/* Every counter Lethe keeps. Counted per vCPU (no shared cache lines) and summed on read. */
struct lethe_stats {
    /* fault path */
    uint64_t faults;             /* all faults served */
    uint64_t demand_zero;        /* first touch of a page: zero-filled */
    uint64_t swap_ins;           /* page read back from the memory node */
    uint64_t soft_hits;          /* soft-unmapped page mapped back ("cache hit") */
    uint64_t fault_waits;        /* faults on a page another vCPU was bringing in or out */
    uint64_t fault_retries;      /* faults retried because the application changed mappings */
    /* eviction */
    uint64_t swap_outs;          /* dirty pages written back */
    uint64_t clean_drops;        /* clean pages with a valid remote copy: dropped, no write */
    uint64_t fresh_discards;     /* pages never written: discarded */
    uint64_t reactive_evictions; /* evictions in the fault path (no free frame) */
    uint64_t proactive_evictions;/* evictions by the rebalancer under the reserve */
    uint64_t promotions;         /* inactive -> active (referenced while inactive) */
    uint64_t demotions;          /* active -> inactive (soft-unmapped) */
    uint64_t released_pages;     /* pages the application gave back */
    /* rebalancer */
    uint64_t rebalancer_cycles;
    uint64_t shard_skips;        /* shards found busy and skipped by the rebalancer */
    uint64_t period_us;          /* current period */
    uint64_t pressure_events;    /* cycles that halved the period */
    uint64_t relax_events;       /* increases of the period */
    /* cache state */
    uint64_t frames;             /* cache_size / page size */
    uint64_t free_frames;
    uint64_t active_pages;
    uint64_t inactive_pages;
    uint64_t remote_pages;       /* pages whose only copy is remote */
    uint64_t remote_slots_used;
    uint64_t region_pages;
    uint64_t metadata_bytes;     /* page table + frames + shards */
    /* transfer latency (swap-in, ns, from the transport's read to the page installed) */
    uint64_t swap_in_ns_total;
    /* evictions that found a page written after its dirty scan said clean (written back) */
    uint64_t late_writes;
    /* pages zero-filled beside a first touch while frames were plentiful (fault_around) */
    uint64_t prefilled;
    /* free frames the rebalancer aims at now (adaptive, at most reserve_pct of the frames) */
    uint64_t reserve_target;
    /* pages installed into the page an eviction left in their frame's slot (no allocation) */
    uint64_t recycled;
    /* demotions refused because the application made the page read-only or locked it
     * (mprotect, mlock): such a page stays resident while so */
    uint64_t held;
};

/* Per-shard view for /stats. */
struct lethe_shard_stats {
    uint64_t faults;
    uint64_t free_frames;
    uint64_t active;
    uint64_t inactive;
};

/* Starts the runtime. The config is copied. Returns 0 or a negative errno (logged). */
int lethe_start(const struct lethe_config *cfg, struct lethe **out);
/* Stops everything; region memory is gone afterwards. */
void lethe_stop(struct lethe *l);

/* Page-granular extents in the region (the jemalloc extent hooks and lethe-bench use these).
 * size and align are multiples of the page size (align may be 0). Returns NULL when the
 * region is exhausted. Fresh extents read as zeros. */
void *lethe_extent_alloc(struct lethe *l, size_t size, size_t align);
/* Gives an extent back: its pages lose their content, frames and remote slots, and (once the
 * program has changed the protection of region pages, lethe_note_protection) get back the
 * read-write, unlocked state of fresh memory, as an munmap would leave them. */
void lethe_extent_free(struct lethe *l, void *addr, size_t size);
/* The program made region pages other than read-write, or locked them: from now on freed
 * extents are made read-write and unlocked again (a system call per free). */
void lethe_note_protection(struct lethe *l);
/* Keeps the extent but discards its content (the next touch reads zeros). */
void lethe_extent_purge(struct lethe *l, void *addr, size_t size);
/* The same for an allocator's free memory: it also becomes read-write and unlocked again, as
 * lethe_extent_free leaves a range (after lethe_note_protection). */
void lethe_extent_purge_free(struct lethe *l, void *addr, size_t size);
/* mmap with MAP_FIXED of [addr, addr+size) in the region (the caller checked that it lies
 * there), as a JVM or V8 commits and uncommits parts of what it reserved. Pages of the range
 * still free in the allocator are taken: the range is the program's until it frees it.
 * lethe_extent_map_fresh: private anonymous memory, managed: the content is discarded (the
 * next touch reads zeros) and the range gets prot. lethe_extent_map_foreign: anything else
 * (a file, MAP_SHARED, MAP_LOCKED...): the content is discarded and the kernel maps the range
 * as asked; it stays unmanaged until it is freed or mapped fresh again (see fault.h,
 * "Foreign ranges"). Both return 0 or a negative errno. */
int lethe_extent_map_fresh(struct lethe *l, void *addr, size_t size, int prot);
int lethe_extent_map_foreign(struct lethe *l, void *addr, size_t size, int prot, int flags, int fd,
                             off_t off);
/* How many bytes from addr (at most size) are all foreign (*foreign true) or all managed. */
size_t lethe_extent_foreign_span(struct lethe *l, void *addr, size_t size, bool *foreign);
int lethe_in_region(const struct lethe *l, const void *addr);
#define LETHE_PIN_SLOTS 512 /* pages held by lethe_pin() at once, at most */
/* Holds the page that contains addr mapped (never demoted nor evicted) until lethe_unpin(),
 * after making it present from user mode: for memory the kernel must read without being able
 * to fault it in, such as a futex word under signal delivery. Pins nest and may come from any
 * thread. Returns a token >= 0 for lethe_unpin(); -1 when addr is outside the region (nothing
 * held); -ENOSPC when LETHE_PIN_SLOTS (512) pins are held already (the page was made present
 * but is not held). */
int lethe_pin(struct lethe *l, const void *addr);
/* Lets the page pinned under token go (a negative token is ignored). */
void lethe_unpin(struct lethe *l, int token);

/* Forked children (see docs/SWAPPER.md, "Fork"): lets go of the remote slots that children
 * which have exited or exec'd kept (any thread; cheap when there are none). */
void lethe_fork_reap(struct lethe *l);
/* In a forked child: the descriptor that keeps the parent's slots for it (to be left open by
 * close wrappers), else -1. */
int lethe_fork_keeper(const struct lethe *l);
/* Where the region and the parking area lie (for lethed's account of resident memory). */
void lethe_get_ranges(const struct lethe *l, uint64_t *region, uint64_t *region_size,
                      uint64_t *park, uint64_t *park_size);
void lethe_get_stats(struct lethe *l, struct lethe_stats *out);
unsigned lethe_shard_count(const struct lethe *l);
void lethe_get_shard_stats(struct lethe *l, unsigned shard, struct lethe_shard_stats *out);
/* Grows or shrinks the local cache while running; shrinking evicts down to the new size.
 * Returns 0 or a negative errno (-EINVAL below 16 pages or beyond the frames the parking area
 * was sized for: 4x the initial cache_size, at most the region). A shrink that finds every
 * page in flight returns early; the frames it still owes are retired as they are freed. */
int lethe_set_cache_size(struct lethe *l, uint64_t bytes);
/* "delivery=thread move=UFFDIO_MOVE dirty=PAGEMAP_SCAN transport=shm ..." */
const char *lethe_paths(const struct lethe *l);
struct lethe_node_stats;
struct lethe_replica_stats;
/* Per memory node figures and the replica totals (rdma/transport.h); returns the number of
 * nodes (1 for a single node or local). Any thread. */
unsigned lethe_get_node_stats(const struct lethe *l, struct lethe_node_stats *out, unsigned max,
                              struct lethe_replica_stats *rs);
/* The run's summary, human readable, several lines. */
void lethe_print_summary(struct lethe *l, FILE *out);

#endif
