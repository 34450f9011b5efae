/* heap.h — where lethe-bench's hash map lives, and the bump allocator that carves it.
 *
 *  - direct mode: bench_heap_open() builds a lethe_config (defaults, then -C FILE, then the
 *    flags), starts Lethe with lethe_start() (and an embedded memory node when shm or tcp
 *    has no address and the memory-node library is built), and hands out extents from
 *    lethe_extent_alloc(): every byte of the map is on Lethe's managed heap.
 *  - plain mode: calloc(). Under kernel swap that is ordinary anonymous memory; under lethed
 *    (liblethe.so preloaded) calloc itself is served from the managed heap. The preloaded
 *    case is detected from LD_PRELOAD and named in the description.
 *
 * Extents are page multiples and read as zeros. bench_heap_alloc() is thread-safe.
 * struct bench_arena is one thread's bump allocator over chunks of the heap: no per-object
 * header, no free, no lock (the slab of the hash map's fixed-size nodes).
 */
#ifndef BENCH_HEAP_H
#define BENCH_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "options.h"

struct bench_heap;
struct lethe;

/* working_set: the bytes the map will take (sizes Lethe's region and remote memory).
 * Returns 0 or a negative errno, with the reason on stderr. */
int bench_heap_open(const struct bench_options *o, uint64_t working_set, struct bench_heap **out);
void bench_heap_close(struct bench_heap *h);

/* `bytes` rounded up to pages, zero-filled; NULL when the heap is exhausted. */
void *bench_heap_alloc(struct bench_heap *h, size_t bytes);

/* NULL in plain mode. */
struct lethe *bench_heap_lethe(const struct bench_heap *h);
/* "direct: transport shm /tmp/..., cache 512M, reclaim rebalancer, delivery thread", or
 * "plain: malloc" / "plain: malloc, liblethe.so preloaded (under lethed)". */
const char *bench_heap_describe(const struct bench_heap *h);
bool bench_heap_preloaded(const struct bench_heap *h);
/* Bytes handed out so far (the working set once the load is done). */
uint64_t bench_heap_allocated(const struct bench_heap *h);
/* Direct mode: the local cache Lethe runs with, and the transport's name; 0 / "" in plain. */
uint64_t bench_heap_cache_bytes(const struct bench_heap *h);
const char *bench_heap_transport(const struct bench_heap *h);
const char *bench_heap_reclaim(const struct bench_heap *h);
const char *bench_heap_delivery(const struct bench_heap *h);
/* True when the embedded memory node was started because no address was given. */
bool bench_heap_embedded_memnode(const struct bench_heap *h);

struct bench_arena {
    struct bench_heap *heap;
    char *cur;
    char *end;
    size_t chunk;
};

void bench_arena_init(struct bench_arena *a, struct bench_heap *h, size_t chunk);
/* size: a multiple of 8, at most the chunk size. NULL when the heap is exhausted. */
void *bench_arena_alloc(struct bench_arena *a, size_t size);

#endif
