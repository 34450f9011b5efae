/* arena.h — the memory an RDMA memory node lends when its device cannot page on demand
 * (internal to memnode/).
 *
 * An RDMA NIC without on-demand paging (soft-RoCE before Linux 6.10, most older NICs) reaches
 * only pinned memory: every page of a region must exist before its MR does. Allocating and
 * zeroing a client's pages when it asks for them would put that cost in the client's wait
 * (5.5 s per GiB in the soft-RoCE guest, more than the client's 5 s connect timeout for a
 * 1 GiB region), so such a node takes all the memory it lends (its capacity) once, at
 * start-up: one memfd, populated by several threads and locked, mapped once (the arena's
 * *view*). Regions that need no memfd of their own are cut from it, as *spans*: one run of
 * the view when a free run is long enough (its pages already mapped there: registering the
 * MR only pins them), else several runs mapped side by side at an address of their own.
 *
 * Invariant: free arena pages are zero. mn_arena_give() zeroes a span's pages before they
 * go back, so a client never reads another's data; scrub = false is for a failed take and
 * for the node's shutdown, when nobody can have written them or nobody will read them.
 *
 * Called from the node thread only (and from start-up, before it runs); the populating and
 * zeroing threads are the caller's helpers and are joined before the call returns.
 */
#ifndef LETHE_MEMNODE_ARENA_H
#define LETHE_MEMNODE_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mn_arena;

struct mn_arena_run {
    uint64_t off, len; /* bytes into the arena's memfd; page multiples */
};

struct mn_arena_span {
    uint8_t *base; /* where the region's pages are, contiguous */
    uint64_t bytes;
    bool own_mapping; /* base is a mapping of several runs (unmapped by mn_arena_give) */
    unsigned nruns;
    struct mn_arena_run runs[];
};

/* What start-up took: for the log line. */
struct mn_arena_info {
    uint64_t bytes;
    unsigned threads;     /* threads that populated it */
    uint64_t populate_ns; /* allocation and zeroing of every page */
    uint64_t lock_ns;     /* mlock of the populated view */
};

/* Creates an arena of `bytes` (a page multiple), populated and locked. Fails with -ENOMEM
 * and a sentence in why when the machine cannot hold it (mn_mem_check_pinnable), or with
 * the errno of the step that failed. */
int mn_arena_create(uint64_t bytes, struct mn_arena **out, struct mn_arena_info *info, char *why,
                    size_t whylen);
void mn_arena_destroy(struct mn_arena *a);
/* Takes `bytes` (a page multiple, > 0) of zeroed pages. -ENOSPC when fewer are free. */
int mn_arena_take(struct mn_arena *a, uint64_t bytes, struct mn_arena_span **out, char *why,
                  size_t whylen);
/* Gives a span back (zeroing its pages first when scrub) and frees it; returns the time the
 * zeroing took, in ns. The span's pages must be unreachable by then: its MR deregistered,
 * its channels gone. */
uint64_t mn_arena_give(struct mn_arena *a, struct mn_arena_span *s, bool scrub);
uint64_t mn_arena_free_bytes(const struct mn_arena *a);
/* Free runs, for the tests: a long-lived node fragments into at most one per hole. */
unsigned mn_arena_free_runs(const struct mn_arena *a);

/* 0 when `bytes` more can be pinned by this process: the kernel's MemAvailable minus a
 * reserve (1/16 of the RAM, at least 64 MiB), and RLIMIT_MEMLOCK unless the process has
 * CAP_IPC_LOCK. Else -ENOMEM with a sentence in why naming the limit. */
int mn_mem_check_pinnable(uint64_t bytes, char *why, size_t whylen);

#endif
