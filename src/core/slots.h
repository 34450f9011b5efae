/* slots.h — the remote slot allocator (internal).
 *
 * The transport gives this process `n` page slots on the memory node; a page gets a slot at
 * its first write-back and keeps it while it lives (later write-backs overwrite it in place),
 * and gives it back when the application releases the page. A bitmap (one bit per slot,
 * mmap'd outside the region) with a next-fit cursor keeps successive allocations contiguous,
 * which suits transports that coalesce adjacent slots. One mutex; callers allocate and free
 * in batches to take it once per eviction batch.
 *
 * Beside the bitmap, the 64-bit checksum (checksum.h) of what each slot holds, in an array
 * indexed by slot (8 bytes per remote page, mmap'd outside the region). It is set when a page
 * is written back, from the bytes sent, and reset to 0 ("content unknown") when the slot is
 * freed or a write to it fails; a swap-in verifies the bytes it reads against it, and eviction
 * compares a clean page with it before dropping the page without a write. Nothing else makes
 * a slot's content known: a swap-in only reads it, and a page that moves (mremap) keeps its
 * slot. The checksum is accessed by the owner of the page that holds the slot (the page-table
 * claim and publish order those accesses), and reset under the mutex, which orders it before
 * the slot's next allocation.
 *
 * Forked children read the parent's slots (core/fork.c). Each fork takes a hold with a new
 * *generation* (1, 2, ...), and every write-back stamps its slot with the generation of the
 * newest fork so far. A slot written before a live child's fork (stamp < that child's
 * generation) is *kept*: a page written back leaves it for a fresh slot (the write path asks
 * lethe_slot_kept), and freeing it makes it a *zombie* (still in use, content kept). Slots
 * written after the newest live child's fork are rewritten and freed as usual, so a child that
 * lives long keeps only what the heap held remotely at its fork. lethe_slots_unhold frees the
 * zombies no live child needs any more.
 */
#ifndef LETHE_SLOTS_H
#define LETHE_SLOTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LETHE_SLOTS_MAX_HOLDS 64 /* forked children that read at once */

struct lethe_slots {
    pthread_mutex_t lock;
    uint64_t *bitmap; /* bit set: slot in use */
    uint64_t nslots;
    uint64_t nwords;
    uint64_t used;   /* written under lock, read racily */
    uint64_t cursor; /* word index where the next search starts */
    size_t bytes;    /* size of the bitmap mapping */
    uint64_t *sums;  /* per slot: checksum of its content (0: unknown) */
    size_t sums_bytes;
    uint32_t *stamps;  /* per slot: generation of the newest fork when it was last written */
    size_t stamps_bytes;
    uint32_t generation;          /* forks so far that took a hold */
    uint32_t newest_live;         /* largest generation of a live child; 0: none (atomic) */
    unsigned nlive;
    uint32_t live[LETHE_SLOTS_MAX_HOLDS]; /* generations of the live children */
    uint64_t *zombies; /* bit set: freed while kept (mapped at the first hold) */
    uint64_t nzombies;
};

int lethe_slots_init(struct lethe_slots *s, uint64_t nslots);
void lethe_slots_destroy(struct lethe_slots *s);
/* Allocates n slots into out[]: all of them, or none and -ENOSPC. */
int lethe_slots_alloc(struct lethe_slots *s, uint64_t *out, unsigned n);
/* Frees n slots (each must be allocated; a bad slot is reported and ignored). */
void lethe_slots_free(struct lethe_slots *s, const uint64_t *slots, unsigned n);
uint64_t lethe_slots_used(const struct lethe_slots *s);
/* A child is forked: every slot written until now is kept while it lives. Returns its
 * generation (> 0), or -ENOMEM, or -ENOSPC with LETHE_SLOTS_MAX_HOLDS children reading. Called
 * while no write-back runs (fork.c). */
int64_t lethe_slots_hold(struct lethe_slots *s);
/* The child of that generation is gone: zombies no live child needs are freed. */
void lethe_slots_unhold(struct lethe_slots *s, uint32_t generation);
/* Whether a live child may read `slot`: a write-back must then take a fresh slot. Called by
 * the owner of the page that holds the slot. */
static inline bool lethe_slot_kept(const struct lethe_slots *s, uint64_t slot)
{
    uint32_t newest = __atomic_load_n(&s->newest_live, __ATOMIC_ACQUIRE);
    return newest && __atomic_load_n(&s->stamps[slot], __ATOMIC_RELAXED) < newest;
}
/* Records that slot was written now (after lethe_slot_set_sum), for lethe_slot_kept. */
static inline void lethe_slot_stamp(struct lethe_slots *s, uint64_t slot)
{
    __atomic_store_n(&s->stamps[slot], __atomic_load_n(&s->generation, __ATOMIC_RELAXED),
                     __ATOMIC_RELAXED);
}
/* Slots freed while held, still kept. */
uint64_t lethe_slots_zombies(const struct lethe_slots *s);

/* The checksum of slot `slot`'s content (0 when unknown). Called by the owner of the page that
 * holds the slot. */
static inline uint64_t lethe_slot_sum(const struct lethe_slots *s, uint64_t slot)
{
    return __atomic_load_n(&s->sums[slot], __ATOMIC_RELAXED);
}

/* Records what slot `slot` now holds: the checksum of the bytes written there (or 0: the
 * content is unknown, as after a failed write). Called by the owner of the page that holds
 * the slot. */
static inline void lethe_slot_set_sum(struct lethe_slots *s, uint64_t slot, uint64_t sum)
{
    __atomic_store_n(&s->sums[slot], sum, __ATOMIC_RELAXED);
}

#endif
