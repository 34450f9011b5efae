/* pagetable.h — the swapper's per-page state: one 16-byte entry per region page (internal to
 * src/core and src/rebalancer).
 *
 * An entry is two 64-bit words (layout in docs/SWAPPER.md, "Page table"):
 *
 *   word  bits  0..2   state (enum lethe_page_state)
 *         bit   3      REF      mapped back from the inactive list (second chance at refill)
 *         bit   4      DIRTY    written since the remote copy was made (or never copied)
 *         bit   5      FRESH    demand-zero page never written: discarded, not written back
 *         bit   6      RVALID   the remote slot holds this page's current content
 *         bit   7      WAITERS  a thread sleeps on the futex of this word
 *         bits  8..31  zero
 *         bits 32..63  frame number (resident and in-flight states)
 *   slot  bits  0..39  remote slot + 1 (0: no slot); kept while the page lives
 *         bits 40..63  batch parking: the parking slot that holds the page + 1 while it is
 *                      PARKED (or OUT from PARKED), else 0 (the checksum of the remote copy
 *                      is kept per slot: slots.h)
 *
 * A zero entry is an untouched page, so the table is a plain MAP_NORESERVE mapping that the
 * kernel fills with zeros on first use. Concurrency: the state is changed only by atomic
 * compare-and-swap. Moving a page into IN or OUT makes the mover its *owner*: only the owner
 * writes the frame, flags and slot word until it stores a stable state again with
 * lethe_pte_publish(), which wakes the sleepers. The futex is the low 32 bits of `word`
 * (x86-64 is little endian), which hold the state: a state change always changes the futex
 * word. Which list a resident page's frame is on is protected by its shard's lock
 * (docs/SWAPPER.md, "Locking").
 */
#ifndef LETHE_PAGETABLE_H
#define LETHE_PAGETABLE_H

#include <stdbool.h>
#include <stdint.h>

enum lethe_page_state {
    LETHE_PS_UNTOUCHED = 0, /* never used, or released: the next touch is demand-zero */
    LETHE_PS_MAPPED = 1,    /* resident and mapped: its frame is on the active list */
    LETHE_PS_PARKED = 2,    /* resident, soft-unmapped into its frame's parking slot: inactive */
    LETHE_PS_IN = 3,        /* in flight: being installed (zero, swap-in, map-back) */
    LETHE_PS_OUT = 4,       /* in flight: being demoted, evicted, released or moved */
    LETHE_PS_REMOTE = 5,    /* only copy is remote */
};

#define LETHE_PTE_STATE       0x7ULL
#define LETHE_PTE_REF         (1ULL << 3)
#define LETHE_PTE_DIRTY       (1ULL << 4)
#define LETHE_PTE_FRESH       (1ULL << 5)
#define LETHE_PTE_RVALID      (1ULL << 6)
#define LETHE_PTE_WAITERS     (1ULL << 7)
/* installed without write protection (a recycled page): its dirty scans say nothing, and
 * eviction decides by content alone */
#define LETHE_PTE_UNPROT      (1ULL << 8)
/* batch parking under thread delivery: set on an OUT page while its capture (vmsplice) may
 * fault on it, which happens only when something zapped the page behind the swapper's back
 * (a raw madvise): that fault is answered with a zero page instead of waiting for the
 * capture, which waits for it (lethe_core_fault) */
#define LETHE_PTE_CAPTURE     (1ULL << 9)
#define LETHE_PTE_FLAGS                                                                            \
    (LETHE_PTE_REF | LETHE_PTE_DIRTY | LETHE_PTE_FRESH | LETHE_PTE_RVALID | LETHE_PTE_UNPROT)
#define LETHE_PTE_FRAME_SHIFT 32
#define LETHE_NO_FRAME        UINT32_MAX

#define LETHE_SLOT_BITS 40
#define LETHE_SLOT_MASK ((1ULL << LETHE_SLOT_BITS) - 1)
#define LETHE_NO_SLOT   UINT64_MAX

struct lethe_pte {
    uint64_t word;
    uint64_t slot;
} __attribute__((aligned(16)));

_Static_assert(sizeof(struct lethe_pte) == 16, "a page-table entry is 16 bytes");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "futex on the low half of the word");

static inline unsigned lethe_pte_state(uint64_t w)
{
    return (unsigned)(w & LETHE_PTE_STATE);
}

static inline uint32_t lethe_pte_frame(uint64_t w)
{
    return (uint32_t)(w >> LETHE_PTE_FRAME_SHIFT);
}

/* A word in `state` with `flags` (no WAITERS) and frame. */
static inline uint64_t lethe_pte_make(unsigned state, uint64_t flags, uint32_t frame)
{
    return ((uint64_t)frame << LETHE_PTE_FRAME_SHIFT) | (flags & LETHE_PTE_FLAGS) | state;
}

/* Same word with another state (flags, frame and WAITERS kept). */
static inline uint64_t lethe_pte_with_state(uint64_t w, unsigned state)
{
    return (w & ~LETHE_PTE_STATE) | state;
}

static inline bool lethe_pte_busy(uint64_t w)
{
    unsigned s = lethe_pte_state(w);
    return s == LETHE_PS_IN || s == LETHE_PS_OUT;
}

static inline uint64_t lethe_pte_load(const struct lethe_pte *p)
{
    return __atomic_load_n(&p->word, __ATOMIC_ACQUIRE);
}

/* Claims or changes the state: true when *expected was current (then `desired` is stored). On
 * failure *expected is refreshed. */
static inline bool lethe_pte_cas(struct lethe_pte *p, uint64_t *expected, uint64_t desired)
{
    return __atomic_compare_exchange_n(&p->word, expected, desired, false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE);
}

/* The slot word: written by the page's owner, read by the owner (or a one-thread child). */
static inline uint64_t lethe_pte_slot(const struct lethe_pte *p)
{
    uint64_t s = __atomic_load_n(&p->slot, __ATOMIC_RELAXED) & LETHE_SLOT_MASK;
    return s ? s - 1 : LETHE_NO_SLOT;
}

static inline void lethe_pte_set_slot(struct lethe_pte *p, uint64_t slot)
{
    uint64_t v = slot == LETHE_NO_SLOT ? 0 : ((slot + 1) & LETHE_SLOT_MASK);
    uint64_t old = __atomic_load_n(&p->slot, __ATOMIC_RELAXED);
    __atomic_store_n(&p->slot, (old & ~LETHE_SLOT_MASK) | v, __ATOMIC_RELAXED);
}

/* Batch parking: the parking slot holding the page (LETHE_NO_PARK: none). Owner only. */
#define LETHE_NO_PARK UINT32_MAX
#define LETHE_PARK_MAX ((1U << (64 - LETHE_SLOT_BITS)) - 1) /* parking slots it can name */
static inline uint32_t lethe_pte_park(const struct lethe_pte *p)
{
    uint64_t b = __atomic_load_n(&p->slot, __ATOMIC_RELAXED) >> LETHE_SLOT_BITS;
    return b ? (uint32_t)(b - 1) : LETHE_NO_PARK;
}

static inline void lethe_pte_set_park(struct lethe_pte *p, uint32_t park)
{
    uint64_t b = park == LETHE_NO_PARK ? 0 : (uint64_t)park + 1;
    uint64_t old = __atomic_load_n(&p->slot, __ATOMIC_RELAXED);
    __atomic_store_n(&p->slot, (old & LETHE_SLOT_MASK) | (b << LETHE_SLOT_BITS), __ATOMIC_RELAXED);
}

/* Ends ownership: stores `w` (a stable state, or another busy state) and wakes the threads
 * sleeping on the page. Only the owner calls it. */
void lethe_pte_publish(struct lethe_pte *p, uint64_t w);

/* Sleeps until the page leaves the busy state seen in `seen` (spins first). Returns the new
 * word. Callers loop: the page may be busy again by the time they look. */
uint64_t lethe_pte_wait(struct lethe_pte *p, uint64_t seen);

/* Clears REF on a mapped page (refill's second chance); any thread, atomic. */
static inline void lethe_pte_clear_ref(struct lethe_pte *p)
{
    __atomic_fetch_and(&p->word, ~LETHE_PTE_REF, __ATOMIC_RELAXED);
}

#endif
