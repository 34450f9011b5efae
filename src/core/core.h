/* core.h — the swapper's internals, shared by the files of src/core and src/rebalancer (and by
 * their unit tests); nothing outside these two modules includes it.
 *
 * One `struct lethe` per running instance: the page table (pagetable.h), the frame table and
 * its lists (list.h), the shards (below), the remote slot allocator (slots.h), the region's
 * extent allocator (extent.h), one worker per vCPU plus one for the rebalancer and one for
 * control calls (lethe_set_cache_size), and the rebalancer's state. Thread model and the
 * lock that protects each field: docs/SWAPPER.md, "Locking".
 */
#ifndef LETHE_CORE_H
#define LETHE_CORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/checksum.h"
#include "core/extent.h"
#include "core/lethe.h"
#include "core/list.h"
#include "core/pagetable.h"
#include "core/slots.h"
#include "fault/fault.h"
#include "rdma/transport.h"
#include "rebalancer/aimd.h"

#define LETHE_MAX_BATCH         256 /* reclaim_batch is clamped to this */
#define LETHE_BG_BATCH          64  /* batch parking: the rebalancer's batches, and a refill's */
#define LETHE_SHARD_CHUNK_SHIFT 4   /* 16 consecutive pages (64 KiB) share a shard */
#define LETHE_CACHE_GROWTH      4   /* the frame table holds 4x the initial cache_size */
#define LETHE_MIN_FRAMES        16
#define LETHE_AUTO_SHARD_FRAMES 2048 /* shards = 0: frames per shard at least */

/* Per-thread counters, summed on read. A worker's block has one writer (its thread); the
 * shared block (`misc`) is written by any thread with atomic adds. */
struct lethe_counters {
    uint64_t faults, demand_zero, swap_ins, soft_hits, fault_waits, fault_retries, prefilled;
    uint64_t recycled, held;
    uint64_t swap_outs, clean_drops, fresh_discards, late_writes;
    uint64_t reactive_evictions, proactive_evictions, promotions, demotions, released_pages;
    uint64_t swap_in_ns_total;
    uint64_t remote_gain, remote_loss; /* transitions into and out of REMOTE */
} __attribute__((aligned(64)));

/* Single-writer increment: relaxed load and store, no locked instruction. */
#define LETHE_COUNT(c, field, n)                                                                   \
    __atomic_store_n(&(c)->field, __atomic_load_n(&(c)->field, __ATOMIC_RELAXED) + (n),            \
                     __ATOMIC_RELAXED)
#define LETHE_COUNT_SHARED(c, field, n) __atomic_fetch_add(&(c)->field, (n), __ATOMIC_RELAXED)

/* A thread that faults pages in or evicts them: a vCPU, the rebalancer, or the control worker
 * (used under control_lock). Its scratch arrays carry one batch; they live here, not on the
 * stack, because signal-mode vCPUs run on a small alternate signal stack. */
#define LETHE_MAX_FORK_READERS 64 /* forked children reading the parent's pages at once */

struct lethe_worker {
    struct lethe_counters cnt;
    struct lethe_channel *ch;
    struct lethe_vcpu *vcpu; /* NULL for the rebalancer and control workers */
    unsigned id;
    uint64_t rng;
    uint32_t frames[LETHE_MAX_BATCH];
    uint64_t frames64[LETHE_MAX_BATCH];
    uint64_t vpns[LETHE_MAX_BATCH];
    uint64_t words[LETHE_MAX_BATCH];
    uint64_t slots[LETHE_MAX_BATCH];    /* per victim: its remote slot */
    uint64_t wslots[LETHE_MAX_BATCH];   /* the write batch: slots, compact */
    uint64_t newslots[LETHE_MAX_BATCH]; /* freshly allocated, or to be freed */
    uint64_t oldslots[LETHE_MAX_BATCH]; /* slots a forked child may read, left for new ones */
    uint64_t sums[LETHE_MAX_BATCH];     /* per victim: its checksum (unless discarded) */
    const void *pages[LETHE_MAX_BATCH];
    void *bufs[LETHE_MAX_BATCH];        /* batch parking: where each victim's content goes */
    uint32_t parks[LETHE_MAX_BATCH];    /* batch parking: the parking slot of each victim */
    int status[LETHE_MAX_BATCH];
    uint8_t cls[LETHE_MAX_BATCH];
    uint64_t bitmap[LETHE_MAX_BATCH / 64];
} __attribute__((aligned(64)));

/* A shard: an independently locked partition of the cache. Its lock protects its three lists
 * and the links of the frames on them. */
struct lethe_shard {
    pthread_mutex_t lock;
    struct lethe_list free, active, inactive;
    uint64_t faults; /* atomic adds */
    pthread_t owner; /* debug builds: holder of `lock` */
} __attribute__((aligned(64)));

struct lethe {
    struct lethe_config cfg;
    struct lethe_region *region; /* published (release) once lethe_region_create returns:
                                    read it through lethe_rgn() */
    struct lethe_transport *transport;
    unsigned vcpus;
    unsigned batch; /* reclaim_batch, clamped to [1, LETHE_MAX_BATCH] */
    bool child;     /* set in a forked child by forked_child */
    bool protection_changed; /* lethe_note_protection (atomic) */
    bool thread_delivery;

    /* page table: region_pages entries, MAP_NORESERVE */
    struct lethe_pte *pt;
    uint64_t region_pages;
    size_t pt_bytes;

    /* frames */
    struct lethe_frame *frames;
    uint32_t frame_cap; /* entries in the frame table = parking slots */
    /* slot_full[f]: free frame f's parking slot still holds the page last evicted from it,
     * to be reused by the next page installed in f (lethe_frame_install). Written only by the
     * thread that holds f isolated, or under f's shard lock; one byte per frame_cap entry. */
    uint8_t *slot_full;
    bool recycle; /* evictions leave their pages in the slots (needs UFFDIO_MOVE) */
    /* Batch parking (lethe_region_batch_parking): a parked page lives in any parking slot,
     * taken from this pool and named in its page-table entry (lethe_pte_park). Free slots
     * form a stack linked through their first word, so the slots in use are always the
     * lowest ones ever touched: the memory they hold is the most pages ever parked at once,
     * never the whole parking area. Slots [park_bump, frame_cap) were never used. */
    bool batch_park;
    pthread_mutex_t park_lock;
    uint32_t park_free; /* top of the free stack + 1; 0: empty */
    uint32_t park_bump;
    /* thread delivery: faults on LETHE_PTE_CAPTURE pages being answered now (atomic) */
    uint32_t capture_installs;
    size_t frames_bytes;
    uint64_t frames_target;      /* current cache size in frames (atomic) */
    int64_t retire_debt;         /* frames still to take out of use after a shrink (atomic) */
    pthread_mutex_t retire_lock; /* protects `retired` and frames_hw */
    struct lethe_list retired;
    uint32_t frames_hw;          /* frames [0, hw) have been put in service at least once */
    pthread_mutex_t resize_lock; /* serialises lethe_set_cache_size */

    struct lethe_shard *shards;
    unsigned nshards;
    size_t shards_bytes;
    uint32_t *shard_order; /* the rebalancer's visiting order (after the shards) */

    struct lethe_slots slots;
    struct lethe_extents extents;

    /* fork.c: forked children that read the parent's remote pages */
    unsigned fork_inflight;       /* swapper operations running (atomic) */
    bool forking;                 /* a fork() is between its prepare and parent handlers */
    pthread_mutex_t fork_lock;    /* protects keepers[] */
    int keepers[LETHE_MAX_FORK_READERS]; /* read ends: EOF once a child and its heirs are gone */
    uint32_t keeper_gens[LETHE_MAX_FORK_READERS]; /* each child's hold (lethe_slots_hold) */
    uint32_t fork_gen;            /* prepare -> parent handler: this fork's hold */
    unsigned nkeepers;
    int fork_pipe[2];             /* prepare -> parent/child handlers; -1: none this fork */
    int keeper_fd;                /* in a child: the write end it holds; -1 elsewhere */
    bool child_remote;            /* in a child: remote pages can be read (shm, local, tcp) */
    struct lethe_channel *child_channel; /* in a child over tcp: its own, opened at first use */

    struct lethe_worker *workers; /* vcpus + 2: [vcpus] rebalancer, [vcpus+1] control */
    unsigned nworkers;
    size_t workers_bytes;
    pthread_mutex_t control_lock; /* protects the control worker */
    struct lethe_counters misc;   /* release paths, any thread: atomic adds */

    /* rebalancer (reclaim = rebalancer) */
    pthread_t rebalancer;
    bool rebalancer_running;
    bool stopping; /* atomic */
    uint32_t kick; /* futex word: 1 = a vCPU asked for an early cycle */
    bool cache_filled; /* a fault has found no free frame once: the rebalancer works from then on */
    struct lethe_aimd_params aimd;
    uint64_t period_us, rebalancer_cycles, shard_skips; /* rebalancer writes, atomic */
    uint64_t reserve_target; /* free frames the rebalancer aims at now (rebalancer writes) */
    uint64_t rb_taken, rb_when_ns; /* the rebalancer's own: frames taken, and when, last cycle */
    uint64_t pressure_events, relax_events;
    /* pages refused by demotion (read-only or locked by the application) since the last page
     * demoted, by any thread (atomic): reclaim gives up once every resident page has been
     * refused several times over */
    uint64_t held_streak;

    /* pins (pin.c): pins[i] is vpn + 1 of a page held mapped, 0 when free; slots [0, pins_hw)
     * may be in use; pins_live counts the held ones. All atomic. */
    uint64_t pins[LETHE_PIN_SLOTS];
    uint32_t pins_hw, pins_live;

    char paths[512];
};

static inline unsigned lethe_shard_of(const struct lethe *l, uint64_t vpn)
{
    uint64_t chunk = vpn >> LETHE_SHARD_CHUNK_SHIFT;
    return (unsigned)(((chunk * 0x9e3779b97f4a7c15ULL) >> 32) % l->nshards);
}

/* The region. vCPU threads start inside lethe_region_create, before it hands the region back;
 * no fault can reach them before then, but the store/load pair makes that ordering explicit
 * (and visible to ThreadSanitizer). */
static inline struct lethe_region *lethe_rgn(const struct lethe *l)
{
    return __atomic_load_n(&l->region, __ATOMIC_ACQUIRE);
}

static inline struct lethe_pte *lethe_pte_of(const struct lethe *l, uint64_t vpn)
{
    return &l->pt[vpn];
}

/* Debug and sanitizer builds check internal invariants; release builds compile them out. */
#ifdef LETHE_DEBUG
void lethe_assert_failed(const char *expr, const char *file, int line);
#define lethe_assert(e) ((e) ? (void)0 : lethe_assert_failed(#e, __FILE__, __LINE__))
#else
#define lethe_assert(e) ((void)0)
#endif

/* --- pins (pin.c) --- */
/* Whether a pin holds page vpn. The demoter asks after it has claimed the page (MAPPED ->
 * OUT); the check's read-modify-write of pins_live pairs with lethe_pin's (pin.c). */
bool lethe_pinned(struct lethe *l, uint64_t vpn);

/* --- shard locks (shard.c) --- */
void lethe_shard_lock(struct lethe_shard *s);
bool lethe_shard_trylock(struct lethe_shard *s);
void lethe_shard_unlock(struct lethe_shard *s);
#ifdef LETHE_DEBUG
void lethe_shard_assert_locked(struct lethe_shard *s);
#else
static inline void lethe_shard_assert_locked(struct lethe_shard *s)
{
    (void)s;
}
#endif

/* --- frames (frame.c) --- */
/* A frame for page vpn, linked at the head of its shard's active list with the page's vpn —
 * at the tail when `cold` (a page read back from remote memory: it was evicted as cold, and
 * stays only if touched again while parked): the page's shard freelist, else another
 * shard's, else reclaim (a reactive eviction). */
int lethe_frame_get(struct lethe *l, struct lethe_worker *w, uint64_t vpn, bool cold,
                    uint32_t *out);
/* The same without reclaim: false when no frame is free. */
bool lethe_frame_try_get(struct lethe *l, uint64_t vpn, uint32_t *out);
/* Whether at least 2 * reserve_pct of the frames + one batch + extra frames are free. */
bool lethe_frames_plentiful(struct lethe *l, uint64_t extra);
/* Installs page vpn in frame f, just taken: src (NULL: zeros). When an eviction left its page
 * in f's slot, the content goes into that page, which is moved in unprotected (no page
 * allocated, no write-protect; `recycled`; LETHE_PTE_UNPROT is ORed into *flags); else
 * UFFDIO_COPY, write-clean. Returns like lethe_page_install: on 0 and -EEXIST f's slot is
 * empty. */
int lethe_frame_install(struct lethe *l, struct lethe_worker *w, uint32_t f, uint64_t vpn,
                        const void *src, uint64_t *flags);
/* Batch parking: takes n parking slots (fewer when the pool runs dry; it holds frame_cap,
 * so it cannot while every parked page has a frame); gives slots back. */
unsigned lethe_park_take(struct lethe *l, uint32_t *out, unsigned n);
void lethe_park_give(struct lethe *l, const uint32_t *slots, unsigned n);
/* Where the content of parked page vpn (frame f) is: its pool slot under batch parking, else
 * f's parking slot. The page's owner only. */
void *lethe_parked_page(struct lethe *l, uint64_t vpn, uint32_t f);
/* Batch parking: gives back the parking slot page p holds, if any (owner only; before the
 * page is published in a state that another thread could claim). */
void lethe_park_release(struct lethe *l, struct lethe_pte *p);
/* Drops the page an eviction left in f's slot, if any: f is about to hold a page installed
 * some other way. */
void lethe_frame_empty_slot(struct lethe *l, uint32_t f);
/* Called with s->lock held: puts an isolated frame on s's freelist (its slot empty, or holding
 * the evicted page when slot_full[f] says so), or retires it while a cache shrink is in
 * progress (dropping that page). */
void lethe_frame_free_locked(struct lethe *l, struct lethe_shard *s, uint32_t f);
/* Takes any free frame off any freelist (LETHE_NIL when none). */
uint32_t lethe_frame_take_any(struct lethe *l);
uint64_t lethe_free_frames(const struct lethe *l);
int lethe_cache_resize(struct lethe *l, uint64_t frames);

/* --- demotion and eviction (evict.c) --- */
/* What eviction does with a parked page. LATE: the flags said clean (or fresh) but the content
 * says otherwise: a write slipped past the dirty scan, so the page is written back. */
enum lethe_evict_class {
    LETHE_EVICT_WRITE,      /* dirty, or no valid remote copy: written back */
    LETHE_EVICT_WRITE_LATE, /* clean or fresh by its flags, changed all the same: written back */
    LETHE_EVICT_CLEAN,      /* its remote copy holds what it holds: dropped without a write */
    LETHE_EVICT_DISCARD,    /* fresh and still all zeros: forgotten, reads as zeros again */
};
/* Classifies a victim from its page-table word, its parked content, and the checksum of its
 * remote slot (used only when the word has RVALID). *sum receives the page's checksum unless
 * the page is discarded. Pure: reads `page` only. */
enum lethe_evict_class lethe_evict_classify(uint64_t word, const void *page, uint64_t slot_sum,
                                            uint64_t *sum);
/* lethe_demote and lethe_evict return -EBUSY when `trylock` finds the shard locked, or the
 * number of pages handled. */
/* Soft-unmaps up to nr mapped pages from the tail of shard si's active list onto its inactive
 * list; a page with REF gets it cleared and goes back to the active head instead. */
int lethe_demote(struct lethe *l, struct lethe_worker *w, unsigned si, unsigned nr, bool trylock);
/* Evicts up to nr parked pages from the tail of shard si's inactive list: dirty ones written
 * back, clean ones with a valid remote copy dropped, fresh ones discarded. Freed frames go to
 * the shard's freelist, except one handed to the caller through *keep when keep != NULL. A
 * transport failure is logged and returned (negative errno). */
int lethe_evict(struct lethe *l, struct lethe_worker *w, unsigned si, unsigned nr, bool trylock,
                uint32_t *keep);

/* --- fault paths and application events (swap.c) --- */
int lethe_core_fault(void *core, struct lethe_vcpu *v, uint64_t vpn, enum lethe_access access);
int lethe_core_child_fault(void *core, struct lethe_vcpu *v, uint64_t vpn,
                           enum lethe_access access);
void lethe_core_forked_child(void *core);

/* fork.c. The swapper's operations (a fault served, a rebalancer cycle, a release or remap,
 * a resize) run between lethe_op_begin and lethe_op_end; a fork waits until none runs, so a
 * child never inherits a page in flight. Nested calls count once. */
void lethe_op_begin(struct lethe *l);
void lethe_op_end(struct lethe *l);
/* Registers the fork handlers (lethe_start); lethe_fork_fini forgets l (teardown). */
int lethe_fork_init(struct lethe *l);
void lethe_fork_fini(struct lethe *l);
void lethe_core_release(void *core, uint64_t vpn, uint64_t n);
void lethe_core_remap(void *core, uint64_t from, uint64_t to, uint64_t n);
/* Forgets [vpn, vpn+n): frames and slots freed, pages untouched. Returns the span of pages
 * that were mapped ([*first, *end), empty when none): they still need lethe_page_drop. */
void lethe_release_range(struct lethe *l, uint64_t vpn, uint64_t n, uint64_t *first, uint64_t *end);

/* --- statistics (stats.c) --- */
size_t lethe_metadata_bytes(const struct lethe *l);

static inline uint64_t lethe_load64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void lethe_store64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

#endif
