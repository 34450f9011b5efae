/* region.c — the memory a node lends: one region per client, sized at ALLOC.
 *
 * A region is a memfd (pages allocated lazily by the kernel, on first touch), sealed against
 * shrinking and growing so that a shm client holding the fd cannot truncate it under the
 * node's own mapping (which would turn the node's next access into SIGBUS), and mapped
 * MAP_SHARED in the node so that the same pages serve shm (the fd is handed over), TCP
 * (the node copies) and RDMA (the mapping is registered). On a node whose RDMA device
 * cannot page on demand, a region that needs no fd of its own (tcp, verbs) is a span of the
 * arena instead (arena.h): pages allocated and locked at start-up, zeroed when they come
 * back. An ALLOC_RDMA region gets its MR here, before the ALLOC reply, so that a channel's
 * connect has nothing slow left to do. Capacity is accounted in region bytes, not in touched
 * pages: a client gets what it asked for, up front.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "node_impl.h"
#include "rdma/proto.h"

uint64_t mn_capacity_left(const struct lethe_memnode *n)
{
    return n->cfg.capacity - n->st.bytes_lent;
}

/* A memfd of `bytes`, sealed, mapped MAP_SHARED. */
static int region_memfd(struct mn_region *r, uint64_t bytes, char *why, size_t whylen)
{
    char name[40];
    snprintf(name, sizeof(name), "lethe-region-%llu", (unsigned long long)r->id);
    const char *step;
    r->memfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (r->memfd < 0) {
        step = "memfd_create";
        goto fail;
    }
    if (ftruncate(r->memfd, (off_t)bytes) < 0) {
        step = "ftruncate";
        goto fail;
    }
    if (fcntl(r->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        step = "sealing the memfd";
        goto fail;
    }
    r->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, r->memfd, 0);
    if (r->base == MAP_FAILED) {
        step = "mmap";
        goto fail;
    }
    madvise(r->base, bytes, MADV_DONTDUMP);
    return 0;
fail:;
    int err = errno;
    snprintf(why, whylen, "%s (%llu bytes): %s", step, (unsigned long long)bytes, strerror(err));
    return -err;
}

/* Frees the region's memory (its MR must be gone); returns how long zeroing it took. */
static uint64_t region_memory_free(struct lethe_memnode *n, struct mn_region *r)
{
    uint64_t zeroing = 0;
    if (r->span) {
        /* Zeroed before another client gets them; not when the node stops. */
        zeroing = mn_arena_give(n->arena, r->span, !n->stopping);
        r->span = NULL;
        r->base = MAP_FAILED;
    }
    if (r->base != MAP_FAILED)
        munmap(r->base, r->bytes);
    if (r->memfd >= 0)
        close(r->memfd);
    return zeroing;
}

int mn_region_create(struct lethe_memnode *n, uint64_t bytes, uint16_t flags,
                     struct mn_region **out, char *why, size_t whylen)
{
    struct mn_region *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    r->memfd = -1;
    r->base = MAP_FAILED;
    r->bytes = bytes;
    r->id = ++n->next_region_id;
    int rc;
    if (n->arena && !(flags & LETHE_F_ALLOC_SHM)) {
        rc = mn_arena_take(n->arena, bytes, &r->span, why, whylen);
        if (rc == 0)
            r->base = r->span->base;
    } else {
        rc = region_memfd(r, bytes, why, whylen);
    }
    if (rc < 0)
        goto fail;
    rc = lethe_random_bytes(r->key, sizeof(r->key));
    if (rc < 0) {
        snprintf(why, whylen, "getrandom: %s", strerror(-rc));
        goto fail;
    }
    if ((flags & LETHE_F_ALLOC_RDMA) && (rc = mn_rdma_region_register(n, r, why, whylen)) < 0)
        goto fail;
    r->pages = bytes / LETHE_PAGE_SIZE;
    r->next = n->regions;
    if (n->regions)
        n->regions->prev = r;
    n->regions = r;
    n->nregions++;
    mn_count(&n->st.bytes_lent, (int64_t)bytes);
    mn_count(&n->st.clients, 1);
    mn_count(&n->st.clients_total, 1);
    *out = r;
    return 0;
fail:
    if (r->span) { /* nobody reached it: its pages are still zero */
        mn_arena_give(n->arena, r->span, false);
        r->span = NULL;
        r->base = MAP_FAILED;
    }
    region_memory_free(n, r);
    free(r);
    return rc;
}

void mn_region_destroy(struct lethe_memnode *n, struct mn_region *r)
{
    /* The region's connections go first: none may touch the memory once it is unmapped. */
    while (r->conns)
        mn_conn_free(r->conns);
    mn_rdma_region_release(n, r);
    uint64_t zeroing = region_memory_free(n, r);
    if (r->prev)
        r->prev->next = r->next;
    else
        n->regions = r->next;
    if (r->next)
        r->next->prev = r->prev;
    n->nregions--;
    mn_count(&n->st.bytes_lent, -(int64_t)r->bytes);
    mn_count(&n->st.clients, -1);
    char size[32], zeroed[48] = "";
    lethe_format_size(r->bytes, size, sizeof(size));
    if (zeroing)
        snprintf(zeroed, sizeof(zeroed), " (its pages zeroed in %.2f s)", zeroing / 1e9);
    lethe_info("region %llu released: %s returned%s, %llu clients remain",
               (unsigned long long)r->id, size, zeroed, (unsigned long long)n->nregions);
    free(r);
}

struct mn_region *mn_region_find(struct lethe_memnode *n, uint64_t id)
{
    for (struct mn_region *r = n->regions; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}
