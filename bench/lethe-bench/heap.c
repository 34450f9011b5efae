/* heap.c — the map's memory in direct and plain mode (see heap.h for the contract).
 *
 * Direct mode's config is layered: lethe_config_defaults(), then the -C file, then the
 * command line. Without -C, the bench's own defaults stand in for the file (cache 1850 MiB
 * as in the reference client). The region and the remote memory are grown to fit the
 * working set, since a benchmark that runs out of either measures nothing; the summary is
 * printed by lethe-bench itself, so Lethe's own end-of-run summary is turned off.
 */
#include "heap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/lethe.h"
#include "embedded.h"

struct bench_heap {
    enum bench_mode mode;
    struct lethe *lethe;
    struct bench_embedded *memnode; /* embedded memory node, or NULL */
    bool preloaded;
    uint64_t cache_bytes;
    char transport[16];
    char reclaim[16];
    char delivery[16];
    char describe[LETHE_ADDR_MAX + 160];
    _Atomic uint64_t allocated;

    /* plain mode: every block, to free them at close */
    pthread_mutex_t lock;
    void **blocks;
    size_t nblocks;
    size_t cap;
};

static uint64_t round_up(uint64_t v, uint64_t unit)
{
    return (v + unit - 1) / unit * unit;
}

/* LD_PRELOAD names liblethe.so when lethed (or a user) injected the runtime. */
static bool detect_preload(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "liblethe");
}

/* Fills cfg->memnodes from --memnode or -a/-p; returns 1 when an address was given. */
static int address_from_flags(const struct bench_options *o, struct lethe_config *cfg)
{
    char addr[LETHE_ADDR_MAX];
    if (o->memnode[0]) {
        snprintf(addr, sizeof(addr), "%s", o->memnode);
    } else if (o->addr[0]) {
        bool has_port = strchr(o->addr, ':') != NULL;
        if (cfg->transport == LETHE_TRANSPORT_SHM || has_port)
            snprintf(addr, sizeof(addr), "%s", o->addr);
        else if (snprintf(addr, sizeof(addr), "%s:%u", o->addr, o->port) >= (int)sizeof(addr))
            return -ENAMETOOLONG;
    } else {
        return 0;
    }
    cfg->memnode_embedded = false;
    cfg->n_memnodes = 1;
    snprintf(cfg->memnodes[0], sizeof(cfg->memnodes[0]), "%s", addr);
    return 1;
}

static int build_config(const struct bench_options *o, uint64_t working_set,
                        struct lethe_config *cfg)
{
    lethe_config_defaults(cfg);
    if (o->config_file[0]) {
        int n = lethe_config_load(cfg, o->config_file, stderr);
        if (n < 0) {
            fprintf(stderr, "lethe-bench: %s: %s\n", o->config_file, strerror(-n));
            return n;
        }
        if (n > 0)
            return -EINVAL;
    } else {
        cfg->cache_size = o->cache_bytes;
        cfg->transport = o->transport;
        cfg->reclaim = o->reclaim;
        cfg->fault_delivery = o->delivery;
    }
    if (o->cache_given)
        cfg->cache_size = o->cache_bytes;
    if (o->transport_given)
        cfg->transport = o->transport;
    if (o->reclaim_given)
        cfg->reclaim = o->reclaim;
    if (o->delivery_given)
        cfg->fault_delivery = o->delivery;
    if (o->shm_delay_given)
        cfg->shm_delay_us = o->shm_delay_us;
    if (o->token_file[0])
        snprintf(cfg->token_file, sizeof(cfg->token_file), "%s", o->token_file);
    int rc = address_from_flags(o, cfg);
    if (rc < 0) {
        fprintf(stderr, "lethe-bench: --addr: too long\n");
        return rc;
    }

    cfg->cache_size = round_up(cfg->cache_size, LETHE_PAGE_SIZE);
    /* room for the map with slack for chunk rounding; VA is cheap, remote DRAM less so */
    uint64_t need = round_up(working_set + working_set / 4 + (64ULL << 20), 1ULL << 20);
    /* the page table is sized by the region: without a config file, no bigger than needed */
    if (cfg->region_size < 2 * need || !o->config_file[0])
        cfg->region_size = round_up(2 * need, 1ULL << 30);
    if (cfg->region_size < cfg->cache_size)
        cfg->region_size = round_up(cfg->cache_size, 1ULL << 30);
    if (cfg->remote_size < need)
        cfg->remote_size = need;
    snprintf(cfg->summary, sizeof(cfg->summary), "off");
    snprintf(cfg->control_listen, sizeof(cfg->control_listen), "off");
    return lethe_config_validate(cfg, o->config_file[0] ? o->config_file : "lethe-bench", stderr)
               ? -EINVAL
               : 0;
}

static int open_direct(struct bench_heap *h, const struct bench_options *o, uint64_t working_set)
{
    struct lethe_config cfg;
    int rc = build_config(o, working_set, &cfg);
    if (rc < 0)
        return rc;

    bool needs_node = cfg.transport != LETHE_TRANSPORT_LOCAL;
    if (needs_node && (cfg.memnode_embedded || cfg.n_memnodes == 0)) {
        rc = bench_embedded_start(&cfg, &h->memnode);
        if (rc < 0) {
            if (rc == -ENOTSUP)
                fprintf(stderr,
                        "lethe-bench: transport %s needs a memory node: give --memnode ADDR "
                        "(or -a/-p), or use --transport local (this build has no embedded "
                        "memory node)\n",
                        lethe_transport_name(cfg.transport));
            else
                fprintf(stderr, "lethe-bench: cannot start the embedded memory node: %s\n",
                        strerror(-rc));
            return rc;
        }
    }

    rc = lethe_start(&cfg, &h->lethe);
    if (rc < 0) {
        fprintf(stderr, "lethe-bench: lethe_start failed: %s\n", strerror(-rc));
        h->lethe = NULL;
        return rc;
    }
    h->cache_bytes = cfg.cache_size;
    snprintf(h->transport, sizeof(h->transport), "%s", lethe_transport_name(cfg.transport));
    snprintf(h->reclaim, sizeof(h->reclaim), "%s", lethe_reclaim_name(cfg.reclaim));
    snprintf(h->delivery, sizeof(h->delivery), "%s", lethe_delivery_name(cfg.fault_delivery));
    char cache[32];
    lethe_format_size(cfg.cache_size, cache, sizeof(cache));
    char node[LETHE_ADDR_MAX + 32] = "";
    if (cfg.transport != LETHE_TRANSPORT_LOCAL)
        snprintf(node, sizeof(node), " %s%s", cfg.n_memnodes ? cfg.memnodes[0] : "?",
                 h->memnode ? " (embedded memory node)" : "");
    snprintf(h->describe, sizeof(h->describe),
             "direct: transport %s%s, cache %s, reclaim %s, delivery %s", h->transport, node, cache,
             h->reclaim, h->delivery);
    return 0;
}

int bench_heap_open(const struct bench_options *o, uint64_t working_set, struct bench_heap **out)
{
    struct bench_heap *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->mode = o->mode;
    h->preloaded = detect_preload();
    pthread_mutex_init(&h->lock, NULL);
    if (o->mode == BENCH_MODE_DIRECT) {
        int rc = open_direct(h, o, working_set);
        if (rc < 0) {
            bench_heap_close(h);
            return rc;
        }
    } else {
        snprintf(h->describe, sizeof(h->describe), "plain: malloc%s",
                 h->preloaded ? ", liblethe.so preloaded (under lethed)" : "");
    }
    *out = h;
    return 0;
}

void bench_heap_close(struct bench_heap *h)
{
    if (!h)
        return;
    if (h->lethe)
        lethe_stop(h->lethe);
    if (h->memnode)
        bench_embedded_stop(h->memnode);
    for (size_t i = 0; i < h->nblocks; i++)
        free(h->blocks[i]);
    free(h->blocks);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

static int remember_block(struct bench_heap *h, void *p)
{
    int rc = 0;
    pthread_mutex_lock(&h->lock);
    if (h->nblocks == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        void **blocks = realloc(h->blocks, cap * sizeof(*blocks));
        if (blocks) {
            h->blocks = blocks;
            h->cap = cap;
        } else {
            rc = -ENOMEM;
        }
    }
    if (rc == 0)
        h->blocks[h->nblocks++] = p;
    pthread_mutex_unlock(&h->lock);
    return rc;
}

void *bench_heap_alloc(struct bench_heap *h, size_t bytes)
{
    size_t size = round_up(bytes, LETHE_PAGE_SIZE);
    void *p;
    if (h->lethe) {
        p = lethe_extent_alloc(h->lethe, size, 0);
    } else {
        /* large calloc() is fresh anonymous memory: zero without being touched */
        p = calloc(1, size);
        if (p && remember_block(h, p) < 0) {
            free(p);
            p = NULL;
        }
    }
    if (p)
        atomic_fetch_add_explicit(&h->allocated, size, memory_order_relaxed);
    return p;
}

struct lethe *bench_heap_lethe(const struct bench_heap *h)
{
    return h->lethe;
}

const char *bench_heap_describe(const struct bench_heap *h)
{
    return h->describe;
}

bool bench_heap_preloaded(const struct bench_heap *h)
{
    return h->preloaded;
}

uint64_t bench_heap_allocated(const struct bench_heap *h)
{
    return atomic_load_explicit(&h->allocated, memory_order_relaxed);
}

uint64_t bench_heap_cache_bytes(const struct bench_heap *h)
{
    return h->cache_bytes;
}

const char *bench_heap_transport(const struct bench_heap *h)
{
    return h->transport;
}

const char *bench_heap_reclaim(const struct bench_heap *h)
{
    return h->reclaim;
}

const char *bench_heap_delivery(const struct bench_heap *h)
{
    return h->delivery;
}

bool bench_heap_embedded_memnode(const struct bench_heap *h)
{
    return h->memnode != NULL;
}

void bench_arena_init(struct bench_arena *a, struct bench_heap *h, size_t chunk)
{
    a->heap = h;
    a->cur = NULL;
    a->end = NULL;
    a->chunk = round_up(chunk ? chunk : LETHE_PAGE_SIZE, LETHE_PAGE_SIZE);
}

void *bench_arena_alloc(struct bench_arena *a, size_t size)
{
    if ((size_t)(a->end - a->cur) < size || !a->cur) {
        if (size > a->chunk)
            return NULL;
        char *c = bench_heap_alloc(a->heap, a->chunk);
        if (!c)
            return NULL;
        a->cur = c;
        a->end = c + a->chunk;
    }
    void *p = a->cur;
    a->cur += size;
    return p;
}
