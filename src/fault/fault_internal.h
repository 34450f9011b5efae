/* fault_internal.h — the guest runtime's private state, shared by the files of src/fault.
 *
 * Thread model (see docs/RUNTIME.md):
 *  - thread delivery: vCPU i is a handler thread; it reads faults and application events
 *    from the region's userfaultfd (uffd A) and serves them;
 *  - signal delivery: application threads serve their own faults in the SIGBUS handler, on
 *    the vCPU context their thread slot maps to (one thread at a time per context, `busy`);
 *    one event thread reads application events from uffd A;
 *  - the parking area is registered with a second userfaultfd (uffd B, MISSING only, no
 *    events, SIGBUS): soft-unmap is a UFFDIO_MOVE issued on B, map-back one issued on A,
 *    dropping slots raises no event, and a touch of an empty slot raises SIGBUS (a bug).
 * Fields of struct lethe_region are written by lethe_region_create() and then only read,
 * except `stopping` and the fork fields, written by the child handler in a one-thread child.
 * Everything here lives in mmap'd memory: nothing comes from the managed heap.
 */
#ifndef LETHE_FAULT_INTERNAL_H
#define LETHE_FAULT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "fault/fault.h"
#include "fault/uffd_compat.h"

#define FAULT_MAX_REGIONS  8
#define FAULT_MAX_DEFERRED 64   /* faults a handler thread holds back while mmap_changing */
#define FAULT_MAX_FOREIGN  128  /* ranges of the region the program mapped something else over */
#define FAULT_STRIPES      1024 /* soft-unmap/WP locks of the copy fallback (no UFFDIO_MOVE) */
#define FAULT_CAPTURE_PIPES 8    /* batch parking: captures in flight at once */
#define FAULT_CAPTURE_CHUNK 64   /* pages a capture pipe holds (its size is set to this) */
#define FAULT_SCRATCH_PAGES                                                                        \
    256 /* parking pages after the slots: lethe_page_drop moves region                             \
           pages there and drops them, raising no application event */

struct fault_vcpu {
    struct lethe_vcpu pub; /* handed to the callbacks: must stay first */
    struct lethe_region *r;
    pthread_t thread;
    bool thread_started;
    bool initialized; /* vcpu_init succeeded */
    atomic_uint busy; /* signal delivery: 1 while a thread serves a fault on it */
    /* counters: written by the context's current user only, read relaxed by anyone */
    atomic_uint_fast64_t faults;
    atomic_uint_fast64_t retries;
    atomic_uint_fast64_t wp_faults;
    /* thread delivery: faults answered -EAGAIN, woken once the events are drained */
    uint64_t deferred[FAULT_MAX_DEFERRED];
    unsigned ndeferred;
} __attribute__((aligned(64)));

struct lethe_region {
    char *base;
    uint64_t size;
    uint64_t pages;
    char *park;
    uint64_t park_size; /* slots and scratch */
    uint64_t nframes;
    pthread_mutex_t scratch_lock;

    int uffd;          /* A: the region */
    int park_uffd;     /* B: the parking area; -1 without UFFDIO_MOVE */
    int pagemap_fd;    /* /proc/self/pagemap, for PAGEMAP_SCAN; -1 without dirty tracking */
    int stop_fd;       /* eventfd: tells handler/event threads to exit */
    uint64_t features; /* granted on A */
    bool has_move;
    bool has_dirty;  /* WP_ASYNC + PAGEMAP_SCAN */
    bool sync_wp;    /* copy fallback: soft-unmap write-protects (sync) while it copies */
    bool app_events; /* subscribed to EVENT_REMOVE / EVENT_UNMAP */
    bool batch;      /* batch parking: capture + one process_madvise per batch, copy back */
    /* batch parking: the process has forked, so region pages may be shared copy-on-write
     * (lethe_region_note_fork; never cleared: a page stays non-exclusive until written) */
    atomic_bool shared;
    int pidfd;       /* batch parking: this process, for process_madvise (-1: none) */
    /* batch parking: pipes the captures go through, each taken by one caller at a time */
    int cap_pipe[FAULT_CAPTURE_PIPES][2];
    atomic_uint cap_busy[FAULT_CAPTURE_PIPES];
    unsigned ncap_pipes;
    enum lethe_delivery delivery;
    bool pin_vcpus;

    const struct lethe_fault_ops *ops;
    void *core;

    unsigned nvcpus;
    struct fault_vcpu *vcpus;
    size_t vcpus_len;
    void *staging;
    size_t staging_len;
    void *zero_page;      /* LETHE_ZERO_RUN pages of zeros: source of zero installs */
    atomic_uint *stripes; /* FAULT_STRIPES locks, sync_wp only */
    /* Copy fallback only (NULL with UFFDIO_MOVE): bit f set while parking slot f holds a
     * page. The slots are plain memory there, so nothing else says a slot is taken: the
     * bitmap makes soft_unmap answer -EEXIST and map_back -ENOENT as UFFDIO_MOVE does. */
    _Atomic uint64_t *slot_used;
    size_t slot_used_len;

    atomic_uint_fast64_t events; /* application events handled (any thread) */
    /* Thread delivery: held by a vCPU across read() of uffd A and, when it read an event,
     * across handling it, so events are handled one at a time in the order the kernel
     * queued them (an munmap's UNMAP before the REMAP of the mremap that caused it). */
    pthread_mutex_t read_lock;
    /* Signal delivery: 1 while the event thread reads and handles an event. uffd A queues
     * only events in that mode, and the kernel goes on with the madvise/munmap/mremap once
     * the event is read, so a fault raised after that waits here until release()/remap()
     * has run, and never sees the state from before the event. */
    atomic_uint event_busy;
    pthread_t event_thread;
    /* start-up handshake of the vCPU threads */
    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    unsigned start_count;
    int start_err;
    bool event_thread_started;
    atomic_bool stopping;

    /* uffd A's registration mode (MISSING, with WP when dirty tracking or the copy fallback
     * needs it): ranges given back to the region are registered again with it (foreign.c) */
    uint64_t register_mode;
    /* foreign.c: ranges the program mapped over with a file or shared mapping (MAP_FIXED),
     * which the kernel then holds instead of the region; sorted by vpn, not overlapping.
     * nforeign is read without the lock for the common case of none. */
    pthread_mutex_t foreign_lock;
    atomic_uint nforeign;
    struct {
        uint64_t vpn, n;
    } foreign[FAULT_MAX_FOREIGN];

    /* fork: set in the child by fork.c */
    atomic_bool child;
    int registry_slot;
    char paths[192];
};

/* region.c */
extern struct lethe_region *_Atomic fault_regions[FAULT_MAX_REGIONS];
struct lethe_region *fault_region_of(const void *addr);
struct lethe_region *fault_region_of_parking(const void *addr, uint64_t *frame);
void fault_build_paths(struct lethe_region *r);
int fault_register_range(int uffd, void *addr, uint64_t len, uint64_t mode, uint64_t *ioctls);

/* foreign.c */
/* Registers the region with uffd, leaving out its foreign ranges (a file mapping cannot be
 * registered for MISSING faults: one in the range would fail the whole registration). */
int fault_register_region(struct lethe_region *r, int uffd, uint64_t mode);

/* ops.c */
int fault_wake_range(struct lethe_region *r, uint64_t vpn, uint64_t n);
/* Lifts a synchronous write-protect fault at vpn (copy fallback). */
int fault_resolve_wp(struct lethe_region *r, uint64_t vpn);
void fault_stripe_lock(struct lethe_region *r, uint64_t vpn);
void fault_stripe_unlock(struct lethe_region *r, uint64_t vpn);

/* delivery_thread.c */
int fault_threads_start(struct lethe_region *r);
void fault_threads_stop(struct lethe_region *r);

/* delivery_signal.c */
int fault_signal_install(void);
int fault_signal_start(struct lethe_region *r);
void fault_signal_stop(struct lethe_region *r);
/* A fault the core could not serve: logs it and aborts. */
_Noreturn void fault_die(struct lethe_region *r, uint64_t vpn, enum lethe_access access, int err);

/* events.c */
/* Handles one application event read from uffd A. */
void fault_handle_event(struct lethe_region *r, struct fault_vcpu *v, const struct uffd_msg *m);
int fault_event_thread_start(struct lethe_region *r);
/* 1 when the mapping holding addr is registered for MISSING faults with some userfaultfd
 * ("um" in its smaps VmFlags), 0 when not, -1 when unknown. Async-signal-safe. */
int fault_mapping_is_uffd_missing(uint64_t addr);
void fault_event_thread_stop(struct lethe_region *r);

/* fork.c */
int fault_fork_install(void);

static inline uint64_t fault_vpn(const struct lethe_region *r, uint64_t addr)
{
    return (addr - (uint64_t)(uintptr_t)r->base) >> LETHE_PAGE_SHIFT;
}

static inline uint64_t fault_addr(const struct lethe_region *r, uint64_t vpn)
{
    return (uint64_t)(uintptr_t)r->base + (vpn << LETHE_PAGE_SHIFT);
}

static inline uint64_t fault_slot_addr(const struct lethe_region *r, uint64_t frame)
{
    return (uint64_t)(uintptr_t)r->park + (frame << LETHE_PAGE_SHIFT);
}

#endif
