/* region.c — the memory a node lends: one memfd per client, sized at ALLOC.
 *
 * A region is a memfd (pages allocated lazily by the kernel, on first touch), sealed against
 * shrinking and growing so that a shm client holding the fd cannot truncate it under the
 * node's own mapping (which would turn the node's next access into SIGBUS), and mapped
 * MAP_SHARED in the node so that the same pages serve shm (the fd is handed over), TCP
 * (the node copies) and RDMA (the mapping is registered). Capacity is accounted in region
 * bytes, not in touched pages: a client gets what it asked for, up front.
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

uint64_t mn_capacity_left(const struct lethe_memnode *n)
{
    return n->cfg.capacity - n->st.bytes_lent;
}

int mn_region_create(struct lethe_memnode *n, uint64_t bytes, struct mn_region **out, char *why,
                     size_t whylen)
{
    struct mn_region *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    r->memfd = -1;
    r->base = MAP_FAILED;
    int rc;
    char name[40];
    r->id = ++n->next_region_id;
    snprintf(name, sizeof(name), "lethe-region-%llu", (unsigned long long)r->id);
    r->memfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (r->memfd < 0) {
        rc = -errno;
        snprintf(why, whylen, "memfd_create: %s", strerror(errno));
        goto fail;
    }
    if (ftruncate(r->memfd, (off_t)bytes) < 0) {
        rc = -errno;
        snprintf(why, whylen, "ftruncate to %llu bytes: %s", (unsigned long long)bytes,
                 strerror(errno));
        goto fail;
    }
    if (fcntl(r->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        rc = -errno;
        snprintf(why, whylen, "sealing the memfd: %s", strerror(errno));
        goto fail;
    }
    r->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, r->memfd, 0);
    if (r->base == MAP_FAILED) {
        rc = -errno;
        snprintf(why, whylen, "mmap of %llu bytes: %s", (unsigned long long)bytes, strerror(errno));
        goto fail;
    }
    madvise(r->base, bytes, MADV_DONTDUMP);
    rc = lethe_random_bytes(r->key, sizeof(r->key));
    if (rc < 0) {
        snprintf(why, whylen, "getrandom: %s", strerror(-rc));
        goto fail;
    }
    r->bytes = bytes;
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
    if (r->base != MAP_FAILED)
        munmap(r->base, bytes);
    if (r->memfd >= 0)
        close(r->memfd);
    free(r);
    return rc;
}

void mn_region_destroy(struct lethe_memnode *n, struct mn_region *r)
{
    /* The region's connections go first: none may touch the memory once it is unmapped. */
    while (r->conns)
        mn_conn_free(r->conns);
    mn_rdma_region_release(n, r);
    munmap(r->base, r->bytes);
    close(r->memfd);
    if (r->prev)
        r->prev->next = r->next;
    else
        n->regions = r->next;
    if (r->next)
        r->next->prev = r->prev;
    n->nregions--;
    mn_count(&n->st.bytes_lent, -(int64_t)r->bytes);
    mn_count(&n->st.clients, -1);
    char size[32];
    lethe_format_size(r->bytes, size, sizeof(size));
    lethe_info("region %llu released: %s returned, %llu clients remain", (unsigned long long)r->id,
               size, (unsigned long long)n->nregions);
    free(r);
}

struct mn_region *mn_region_find(struct lethe_memnode *n, uint64_t id)
{
    for (struct mn_region *r = n->regions; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}
