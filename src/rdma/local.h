/* local.h — test hooks of the `local` transport (src/rdma/local.c).
 *
 * The local transport never fails on its own; tests make it fail to check that a page which
 * cannot be read or written is reported (naming the page and the cause) and kills the
 * process rather than being served as zeros, and reach its memory to check that a corrupted
 * or stale remote copy is detected.
 */
#ifndef LETHE_LOCAL_H
#define LETHE_LOCAL_H

#include "rdma/transport.h"

enum lethe_local_fail {
    LETHE_LOCAL_FAIL_NONE = 0,
    LETHE_LOCAL_FAIL_READ = 1,
    LETHE_LOCAL_FAIL_WRITE = 2,
};

/* From now on, every operation of the kinds in `mask` on any channel of t fails with -EIO
 * and "injected failure" as its error text. t must be a local transport. */
void lethe_local_inject_failure(struct lethe_transport *t, unsigned mask);

/* The memory that holds remote slot `slot` of local transport t (one page), or NULL when the
 * slot is out of range: tests corrupt or replace a remote copy behind the swapper's back to
 * check that a swap-in detects it. */
void *lethe_local_slot_memory(struct lethe_transport *t, uint64_t slot);

#endif
