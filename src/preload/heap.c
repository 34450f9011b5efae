/* heap.c — the managed heap: a jemalloc arena whose extents live in the region.
 *
 * jemalloc is linked into liblethe.so from its PIC archive, so the malloc, free, calloc,
 * realloc, posix_memalign, aligned_alloc, memalign, valloc and malloc_usable_size this
 * library exports are jemalloc's own, with no wrapper in between, and (liblethe.so being
 * preloaded) they are the process's: the program's calls, libc's internal calls and the C++
 * operators (libstdc++ calls malloc) all land here. pvalloc, which jemalloc lacks, is added
 * so no allocation ever reaches glibc's allocator.
 *
 * The managed arena is a manual arena (arenas.create) with extent hooks over the region;
 * jemalloc's automatic arenas keep their default hooks. Program threads are moved onto the
 * managed arena (thread.arena: the constructor's thread at start-up, later threads in the
 * pthread_create wrapper); runtime threads stay on the automatic arenas with their thread
 * cache off, so the runtime never receives region memory from malloc. Allocations made
 * before start-up stay where they are; free() takes both kinds. Allocations that jemalloc
 * makes while it runs our hooks (reentrant) go to arena 0, also outside the region.
 *
 * Hooks: alloc takes fresh extents (zeroed and committed) from lethe_extent_alloc; dalloc
 * and destroy give them back (lethe_extent_free accepts any allocated page range, so
 * jemalloc may split and merge freely); purge_forced discards content
 * (lethe_extent_purge_free: also read-write again, should the program have protected it); commit
 * always succeeds (region pages are always usable) and decommit and purge_lazy are declined, so
 * jemalloc purges instead. A request for a given address (in-place growth) is declined: jemalloc
 * then moves the allocation. The arena's metadata is mapped outside the region (see
 * METADATA_ALIGNMENT).
 *
 * In a forked child (which cannot swap pages in, see src/fault/fork.c) the forking thread is
 * moved to arena 0: what the child allocates is ordinary memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <limits.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "preload/preload.h"

/* Dirty pages of freed memory are purged after this long, giving their frames back to
 * the cache instead of letting them be written back when evicted (jemalloc's default: 10 s). */
#define MANAGED_DIRTY_DECAY_MS 1000

/* jemalloc 5.3 maps the metadata of an arena (its base blocks) through the arena's hooks,
 * always 2 MiB-aligned; with opt.retain its data extents are always asked for page-aligned
 * (it grows retained memory and splits). Metadata is kept outside the region: it is small,
 * touched on every allocation, and must stay readable in a forked child, which cannot
 * swap pages in. */
#define METADATA_ALIGNMENT (2UL << 20)

static bool metadata_outside;
static struct lethe *heap_lethe;
static unsigned managed_arena = UINT_MAX;
static bool heap_ready;

/* A mapping outside the region, aligned (for the arena's metadata). */
static void *map_outside(size_t size, size_t alignment)
{
    size_t span = size + alignment;
    char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t start = ((uintptr_t)p + alignment - 1) & ~(uintptr_t)(alignment - 1);
    size_t head = start - (uintptr_t)p, tail = span - head - size;
    if (head)
        munmap(p, head);
    if (tail)
        munmap((char *)start + size, tail);
    return (void *)start;
}

static void *hook_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t alignment,
                        bool *zero, bool *commit, unsigned arena_ind)
{
    if (new_addr)
        return NULL;
    lethe_debug("managed arena: extent of %zu bytes, alignment %zu%s", size, alignment,
                metadata_outside && alignment >= METADATA_ALIGNMENT ? " (metadata)" : "");
    if (metadata_outside && alignment >= METADATA_ALIGNMENT) {
        void *m = map_outside(size, alignment);
        if (m) {
            *zero = true;
            *commit = true;
        }
        return m;
    }
    void *p = lethe_extent_alloc(heap_lethe, size, alignment > LETHE_PAGE_SIZE ? alignment : 0);
    if (!p)
        return NULL;
    *zero = true;
    *commit = true;
    return p;
}

static bool hook_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed,
                        unsigned arena_ind)
{
    if (!lethe_in_region(heap_lethe, addr))
        return true; /* not ours: let jemalloc keep it */
    lethe_extent_free(heap_lethe, addr, size);
    return false;
}

static void hook_destroy(extent_hooks_t *h, void *addr, size_t size, bool committed,
                         unsigned arena_ind)
{
    if (lethe_in_region(heap_lethe, addr))
        lethe_extent_free(heap_lethe, addr, size);
}

static bool hook_commit(extent_hooks_t *h, void *addr, size_t size, size_t offset, size_t length,
                        unsigned arena_ind)
{
    return false;
}

static bool hook_decommit(extent_hooks_t *h, void *addr, size_t size, size_t offset, size_t length,
                          unsigned arena_ind)
{
    return true;
}

static bool hook_purge_forced(extent_hooks_t *h, void *addr, size_t size, size_t offset,
                              size_t length, unsigned arena_ind)
{
    if (!lethe_in_region(heap_lethe, addr))
        return true;
    lethe_extent_purge_free(heap_lethe, (char *)addr + offset, length);
    return false;
}

static bool hook_split(extent_hooks_t *h, void *addr, size_t size, size_t size_a, size_t size_b,
                       bool committed, unsigned arena_ind)
{
    return false;
}

static bool hook_merge(extent_hooks_t *h, void *addr_a, size_t size_a, void *addr_b, size_t size_b,
                       bool committed, unsigned arena_ind)
{
    return false;
}

static extent_hooks_t region_hooks = {
    .alloc = hook_alloc,
    .dalloc = hook_dalloc,
    .destroy = hook_destroy,
    .commit = hook_commit,
    .decommit = hook_decommit,
    .purge_lazy = NULL,
    .purge_forced = hook_purge_forced,
    .split = hook_split,
    .merge = hook_merge,
};

int heap_init(struct lethe *l)
{
    heap_lethe = l;
    bool retain = false;
    size_t bsz = sizeof(retain);
    if (mallctl("opt.retain", &retain, &bsz, NULL, 0) == 0 && retain)
        metadata_outside = true;
    else
        lethe_warn("jemalloc runs without opt.retain: its metadata goes in the region too");
    extent_hooks_t *hooks = &region_hooks;
    unsigned ind;
    size_t sz = sizeof(ind);
    int rc = mallctl("arenas.create", &ind, &sz, &hooks, sizeof(hooks));
    if (rc != 0) {
        lethe_error("cannot create the managed jemalloc arena: %s", strerror(rc));
        return -rc;
    }
    char name[64];
    ssize_t decay = MANAGED_DIRTY_DECAY_MS;
    snprintf(name, sizeof(name), "arena.%u.dirty_decay_ms", ind);
    rc = mallctl(name, NULL, NULL, &decay, sizeof(decay));
    if (rc != 0)
        lethe_warn("cannot set %s: %s", name, strerror(rc));
    managed_arena = ind;
    __atomic_store_n(&heap_ready, true, __ATOMIC_RELEASE);
    lethe_debug("managed heap: jemalloc arena %u over the region", ind);
    return 0;
}

void heap_enter_program_thread(void)
{
    if (!__atomic_load_n(&heap_ready, __ATOMIC_ACQUIRE))
        return;
    unsigned ind = managed_arena;
    int rc = mallctl("thread.arena", NULL, NULL, &ind, sizeof(ind));
    if (rc != 0) {
        lethe_warn("cannot move a thread onto the managed arena: %s", strerror(rc));
        return;
    }
    /* What the thread cache holds came from the arena the thread used before. */
    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
}

unsigned heap_outside_begin(void)
{
    if (!__atomic_load_n(&heap_ready, __ATOMIC_ACQUIRE))
        return UINT_MAX;
    unsigned cur;
    size_t size = sizeof(cur);
    if (mallctl("thread.arena", &cur, &size, NULL, 0) != 0 || cur != managed_arena)
        return UINT_MAX;
    /* The thread cache holds region blocks: emptied, so that none is handed out meanwhile. */
    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    unsigned zero_arena = 0;
    mallctl("thread.arena", NULL, NULL, &zero_arena, sizeof(zero_arena));
    return cur;
}

void heap_outside_end(unsigned saved)
{
    if (saved == UINT_MAX)
        return;
    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    mallctl("thread.arena", NULL, NULL, &saved, sizeof(saved));
}

void heap_enter_fork_child(void)
{
    if (!__atomic_load_n(&heap_ready, __ATOMIC_ACQUIRE))
        return;
    /* The child cannot bring back pages that were swapped out: its new allocations come
     * from arena 0, outside the region, and its thread cache, which may hold region
     * blocks, is emptied (freeing touches only metadata, never the block). */
    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    unsigned zero_arena = 0;
    mallctl("thread.arena", NULL, NULL, &zero_arena, sizeof(zero_arena));
}

void heap_enter_runtime_thread(void)
{
    bool off = false;
    mallctl("thread.tcache.enabled", NULL, NULL, &off, sizeof(off));
}

void *heap_runtime_alloc(uint64_t size)
{
    return mallocx(size ? size : 1, MALLOCX_ARENA(0) | MALLOCX_TCACHE_NONE);
}

void heap_runtime_free(void *p)
{
    if (p)
        dallocx(p, MALLOCX_TCACHE_NONE);
}

/* glibc has pvalloc and jemalloc does not: without this one, a pvalloc'd block would come
 * from glibc's allocator and crash jemalloc's free. */
void *pvalloc(size_t size)
{
    size_t page = (size_t)LETHE_PAGE_SIZE;
    if (size > SIZE_MAX - page) {
        errno = ENOMEM;
        return NULL;
    }
    size_t rounded = size ? (size + page - 1) & ~(page - 1) : page;
    void *p = NULL;
    int rc = posix_memalign(&p, page, rounded);
    if (rc != 0) {
        errno = rc;
        return NULL;
    }
    return p;
}
