/* shm.c — the `shm` transport: a memory node on the same host hands over the client's region
 * as a memfd on its Unix socket; reads and writes are memcpy, with no node CPU in the data
 * path (the one-sided model of RDMA, on one machine).
 *
 * open: connect to params.node (the socket path), authenticate, ALLOC with LETHE_F_ALLOC_SHM,
 * receive the memfd (SCM_RIGHTS) and map it MAP_SHARED. All channels share that mapping.
 * The connection stays open for the life of the transport: the node frees the region when
 * it closes. A watcher thread sleeps in poll() on that connection; when the node goes away
 * (killed, stopped) it marks the transport dead and every later operation fails with an
 * error naming the node, rather than carrying on with memory the node no longer lends.
 *
 * shm_delay_us > 0 busy-waits that long once per call (per batch, not per page): a batch
 * stands for a chain of RDMA work requests posted together, which completes in about one
 * network latency.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "rdma/client.h"
#include "rdma/transport_impl.h"

struct shm_remote {
    struct lethe_mnc ctl;
    uint8_t *base;
    size_t bytes;
    uint64_t region_id;
    uint64_t delay_ns;
    struct lethe_mnc_watch watch;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int shm_kind_open(struct lethe_transport *t)
{
    const struct lethe_transport_params *p = &t->params;
    size_t bytes = p->remote_size & ~(LETHE_PAGE_SIZE - 1);
    if (bytes == 0) {
        lethe_error("%s: remote_size %llu is less than a page", t->describe,
                    (unsigned long long)p->remote_size);
        return -EINVAL;
    }
    struct shm_remote *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->base = MAP_FAILED;
    r->delay_ns = p->shm_delay_us * 1000;
    char err[LETHE_MNC_ERR];
    struct lethe_mnc_region reg = {.memfd = -1};
    /* lethe_mnc_connect() takes an address with a '/' for a socket path */
    char path[LETHE_ADDR_MAX + 2];
    snprintf(path, sizeof(path), "%s%s", strchr(p->node, '/') ? "" : "./", p->node);
    int rc = lethe_mnc_connect(&r->ctl, path, p->connect_timeout_us, err);
    if (rc == 0)
        rc = lethe_mnc_handshake(&r->ctl, p->token, p->connect_timeout_us, err);
    if (rc == 0)
        rc = lethe_mnc_alloc(&r->ctl, bytes, LETHE_F_ALLOC_SHM, &reg, err);
    if (rc < 0) {
        lethe_error("%s: %s", t->describe, err);
        goto fail;
    }
    r->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, reg.memfd, 0);
    rc = -errno;
    close(reg.memfd);
    if (r->base == MAP_FAILED) {
        lethe_error("%s: cannot map the region's memfd (%zu bytes): %s", t->describe, bytes,
                    strerror(-rc));
        goto fail;
    }
    r->bytes = bytes;
    r->region_id = reg.id;
    rc = lethe_mnc_watch_start(&r->watch, r->ctl.fd);
    if (rc < 0) {
        lethe_error("%s: cannot start the watcher thread: %s", t->describe, strerror(-rc));
        goto fail;
    }
    t->priv = r;
    t->pages = reg.pages;
    lethe_info("%s: region %llu of %zu bytes mapped (%llu pages)%s", t->describe,
               (unsigned long long)reg.id, bytes, (unsigned long long)reg.pages,
               r->delay_ns ? ", with an injected delay per operation" : "");
    return 0;
fail:
    if (r->base != MAP_FAILED)
        munmap(r->base, bytes);
    lethe_mnc_close(&r->ctl);
    free(r);
    return rc;
}

static void shm_kind_close(struct lethe_transport *t)
{
    struct shm_remote *r = t->priv;
    lethe_mnc_watch_stop(&r->watch);
    munmap(r->base, r->bytes);
    lethe_mnc_close(&r->ctl); /* the node returns the region's capacity */
    free(r);
}

static int shm_channel_open(struct lethe_channel *ch)
{
    ch->priv = ch->t->priv;
    return 0;
}

static void shm_channel_close(struct lethe_channel *ch)
{
}

static int shm_enter(struct lethe_channel *ch, const char *op, uint64_t slot)
{
    struct shm_remote *r = ch->priv;
    const char *gone = lethe_mnc_watch_gone(&r->watch);
    if (gone) {
        lethe_channel_set_error(ch, "%s while %s slot %llu", gone, op, (unsigned long long)slot);
        return -ECONNRESET;
    }
    if (r->delay_ns) {
        uint64_t until = now_ns() + r->delay_ns;
        while (now_ns() < until)
            __builtin_ia32_pause();
    }
    return 0;
}

static int shm_read_batch(struct lethe_channel *ch, const uint64_t *slots, void *const *pages,
                          unsigned n)
{
    struct shm_remote *r = ch->priv;
    int rc = shm_enter(ch, "reading", slots[0]);
    if (rc < 0)
        return rc;
    for (unsigned i = 0; i < n; i++)
        memcpy(pages[i], r->base + slots[i] * LETHE_PAGE_SIZE, LETHE_PAGE_SIZE);
    return 0;
}

static int shm_write_batch(struct lethe_channel *ch, const uint64_t *slots,
                           const void *const *pages, unsigned n)
{
    struct shm_remote *r = ch->priv;
    int rc = shm_enter(ch, "writing", slots[0]);
    if (rc < 0)
        return rc;
    for (unsigned i = 0; i < n; i++)
        memcpy(r->base + slots[i] * LETHE_PAGE_SIZE, pages[i], LETHE_PAGE_SIZE);
    return 0;
}

static const char *shm_gone(struct lethe_transport *t)
{
    struct shm_remote *r = t->priv;
    return lethe_mnc_watch_gone(&r->watch);
}

const struct lethe_transport_ops lethe_transport_shm_ops = {
    .gone = shm_gone,
    .name = "shm",
    .fork_readable = true,
    .open = shm_kind_open,
    .close = shm_kind_close,
    .channel_open = shm_channel_open,
    .channel_close = shm_channel_close,
    .read_batch = shm_read_batch,
    .write_batch = shm_write_batch,
};
