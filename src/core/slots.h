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
 * Forked children read the parent's slots (core/fork.c). While any child that may still read
 * them lives (lethe_slots_hold), no slot changes: a freed slot becomes a *zombie* (still in
 * use, content kept) and a page written back goes to a fresh slot (the write path asks
 * lethe_slots_held); the last lethe_slots_unhold frees the zombies.
 */
#ifndef LETHE_SLOTS_H
#define LETHE_SLOTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    unsigned readers;  /* forked children that may read the slots (atomic reads) */
    uint64_t *zombies; /* bit set: freed while readers > 0 (mapped at the first hold) */
    uint64_t nzombies;
};

int lethe_slots_init(struct lethe_slots *s, uint64_t nslots);
void lethe_slots_destroy(struct lethe_slots *s);
/* Allocates n slots into out[]: all of them, or none and -ENOSPC. */
int lethe_slots_alloc(struct lethe_slots *s, uint64_t *out, unsigned n);
/* Frees n slots (each must be allocated; a bad slot is reported and ignored). */
void lethe_slots_free(struct lethe_slots *s, const uint64_t *slots, unsigned n);
uint64_t lethe_slots_used(const struct lethe_slots *s);
/* A forked child may read the slots from now on: keep every slot's content. 0 or -ENOMEM. */
int lethe_slots_hold(struct lethe_slots *s);
/* That child is gone; the last one frees the zombies. */
void lethe_slots_unhold(struct lethe_slots *s);
/* Whether a child may read the slots: a write-back must then take a fresh slot. */
static inline bool lethe_slots_held(const struct lethe_slots *s)
{
    return __atomic_load_n(&s->readers, __ATOMIC_ACQUIRE) != 0;
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
