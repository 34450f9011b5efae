/* extent.h — page-granular extents of the managed region (internal; lethe_extent_alloc()
 * and friends in lethe.h are built on it).
 *
 * The free space is a sorted array of disjoint, non-adjacent runs [start, start+n) of page
 * numbers; allocation is first fit (lowest address) honouring an alignment of the absolute
 * address, and freeing coalesces with both neighbours. The array lives in its own mmap'd
 * memory, never in the region, and grows with mremap: the allocator is usable by the
 * malloc that the region itself backs. One mutex.
 */
#ifndef LETHE_EXTENT_H
#define LETHE_EXTENT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct lethe_extent_run {
    uint64_t start, n;
};

struct lethe_extents {
    pthread_mutex_t lock;
    struct lethe_extent_run *runs;
    size_t nruns, cap;
    size_t bytes;      /* size of the runs mapping */
    uint64_t pages;    /* region pages */
    uint64_t base_pfn; /* region base address >> page shift: alignment is absolute */
    uint64_t free_pages;
};

/* Manages pages [0, pages) of a region whose first page is at page frame base_pfn. */
int lethe_extents_init(struct lethe_extents *e, uint64_t pages, uint64_t base_pfn);
void lethe_extents_destroy(struct lethe_extents *e);
/* n pages whose absolute page number is a multiple of align_pages (0 or 1: any). Returns the
 * first page index, or -ENOMEM when no free run fits (-EINVAL for n == 0). */
int64_t lethe_extents_alloc(struct lethe_extents *e, uint64_t n, uint64_t align_pages);
/* Gives [start, start+n) back. -EINVAL when any page of it is already free or out of range
 * (nothing is changed then). */
int lethe_extents_free(struct lethe_extents *e, uint64_t start, uint64_t n);
/* Takes every free page of [start, start+n) (pages already allocated stay so): for memory
 * the program claims by address, mmap with MAP_FIXED. Returns the pages taken, or a negative
 * errno (-EINVAL out of range, -ENOMEM when a run cannot be split: nothing changed then). */
int64_t lethe_extents_claim(struct lethe_extents *e, uint64_t start, uint64_t n);
/* Whether [start, start+n) is entirely allocated. */
int lethe_extents_allocated(struct lethe_extents *e, uint64_t start, uint64_t n);
uint64_t lethe_extents_free_pages(struct lethe_extents *e);

#endif
