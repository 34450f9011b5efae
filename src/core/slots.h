/* slots.h — the remote slot allocator (internal).
 *
 * The transport gives this process `n` page slots on the memory node; a page gets a slot at
 * its first write-back and keeps it while it lives (later write-backs overwrite it in place),
 * and gives it back when the application releases the page. A bitmap (one bit per slot,
 * mmap'd outside the region) with a next-fit cursor keeps successive allocations contiguous,
 * which suits transports that coalesce adjacent slots. One mutex; callers allocate and free
 * in batches to take it once per eviction batch.
 */
#ifndef LETHE_SLOTS_H
#define LETHE_SLOTS_H

#include <pthread.h>
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
};

int lethe_slots_init(struct lethe_slots *s, uint64_t nslots);
void lethe_slots_destroy(struct lethe_slots *s);
/* Allocates n slots into out[]: all of them, or none and -ENOSPC. */
int lethe_slots_alloc(struct lethe_slots *s, uint64_t *out, unsigned n);
/* Frees n slots (each must be allocated; a bad slot is reported and ignored). */
void lethe_slots_free(struct lethe_slots *s, const uint64_t *slots, unsigned n);
uint64_t lethe_slots_used(const struct lethe_slots *s);

#endif
