/* lethe.c — starting and stopping the swapper, and the public calls of lethe.h that are not
 * statistics.
 *
 * lethe_start() builds, in this order: the page table (one 16-byte entry per region page,
 * MAP_NORESERVE: untouched entries cost nothing), the frame table and the shards (frames on
 * the freelists round-robin), the transport and its slot allocator, one worker per vCPU plus
 * the rebalancer's and the control worker (each with its own transport channel: vCPU i uses
 * channel i, the rebalancer channel `vcpus`, control calls `vcpus + 1`), the region (which
 * starts delivering faults and calls vcpu_init on every vCPU), the extent allocator, and the
 * rebalancer thread. Everything is mmap'd: nothing comes from the heap the region may back.
 * The page checksum's implementation is resolved here (logged), before any fault needs it.
 *
 * Sizing: the frame table and the parking area hold LETHE_CACHE_GROWTH (4) times the initial
 * cache_size, capped at the region's pages, so lethe_set_cache_size() can grow the cache to
 * that without moving anything.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/core.h"
#include "core/log.h"
#include "rdma/auth.h"
#include "rebalancer/rebalancer.h"

/* The CPUs the calling thread may run on (what `taskset` or a cpuset gave the program), or the
 * online CPUs where that cannot be read. Lethe's threads inherit this mask. */
static unsigned usable_cpus(void)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0 && CPU_COUNT(&allowed) > 0)
        return (unsigned)CPU_COUNT(&allowed);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (unsigned)online : 1;
}

/* shards = 0: one shard per two usable CPUs (the threads that may fault at once), at most
 * 16, and at least LETHE_AUTO_SHARD_FRAMES frames each: every shard keeps its own lists, and
 * eviction order is only as good as the lists are long. */
static unsigned auto_shards(unsigned cpus, uint64_t frames)
{
    uint64_t n = cpus > 1 ? cpus / 2 : 1;
    if (n > 16)
        n = 16;
    if (n > frames / LETHE_AUTO_SHARD_FRAMES)
        n = frames / LETHE_AUTO_SHARD_FRAMES;
    return n ? (unsigned)n : 1;
}

static void *map_zero(size_t bytes, bool noreserve)
{
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0), -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

static void unmap(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes);
}

static int core_vcpu_init(void *core, struct lethe_vcpu *v)
{
    struct lethe *l = core;
    if (v->id >= l->vcpus)
        return -EINVAL;
    struct lethe_worker *w = &l->workers[v->id];
    if (!w->ch) {
        int rc = lethe_channel_open(l->transport, v->id, &w->ch);
        if (rc < 0)
            return rc;
    }
    w->vcpu = v;
    v->core = w;
    return 0;
}

static void core_vcpu_fini(void *core, struct lethe_vcpu *v)
{
    struct lethe_worker *w = v->core;
    (void)core;
    if (w && w->ch) {
        lethe_channel_close(w->ch);
        w->ch = NULL;
    }
}

static const struct lethe_fault_ops core_ops = {
    .vcpu_init = core_vcpu_init,
    .vcpu_fini = core_vcpu_fini,
    .fault = lethe_core_fault,
    .release = lethe_core_release,
    .remap = lethe_core_remap,
    .forked_child = lethe_core_forked_child,
    .child_fault = lethe_core_child_fault,
};

/* --- start / stop --- */

/* The transport's parameters from [transport]. The token is read with lethe_token_load(), the
 * function the memory node reads its own copy with, so that both sides see the same text
 * (the file's one line without its trailing newline: spaces are part of the token). */
static int transport_params(const struct lethe_config *cfg, unsigned max_batch,
                            struct lethe_transport_params *tp)
{
    memset(tp, 0, sizeof(*tp));
    tp->kind = cfg->transport;
    tp->remote_size = cfg->remote_size;
    tp->shm_delay_us = cfg->shm_delay_us;
    tp->connect_timeout_us = cfg->connect_timeout_us;
    tp->max_batch = max_batch;
    if (cfg->transport == LETHE_TRANSPORT_LOCAL)
        return 0;
    const char *kind = lethe_transport_name(cfg->transport);
    if (!cfg->memnodes[0][0]) {
        lethe_error("transport %s: no memory node address in [transport] memnode (an embedded "
                    "node is started by lethed, which then passes its address)",
                    kind);
        return -EINVAL;
    }
    snprintf(tp->node, sizeof(tp->node), "%s", cfg->memnodes[0]);
    tp->node_timeout_us = cfg->node_timeout_us;
    tp->replicas = cfg->replicas;
    tp->repair_rate = cfg->repair_rate;
    tp->n_nodes = cfg->n_memnodes;
    if (!cfg->token_file[0]) {
        lethe_error("transport %s: token_file is not set: memory node %s needs its shared "
                    "secret",
                    kind, cfg->memnodes[0]);
        return -EINVAL;
    }
    /* token_file: one file for every node, or one per node, comma-separated */
    unsigned nfiles = 1;
    for (const char *q = cfg->token_file; *q; q++)
        nfiles += *q == ',';
    if (nfiles > 1 && nfiles != cfg->n_memnodes) {
        lethe_error("token_file lists %u files for %u memory nodes", nfiles, cfg->n_memnodes);
        return -EINVAL;
    }
    for (unsigned i = 0; i < cfg->n_memnodes; i++) {
        char f[LETHE_PATH_MAX];
        const char *q = cfg->token_file;
        for (unsigned k = 0; nfiles > 1 && k < i; k++)
            q = strchr(q, ',') + 1;
        size_t len = strcspn(q, ",");
        snprintf(f, sizeof(f), "%.*s", (int)len, q);
        char err[128];
        int rc = lethe_token_load(f, false, tp->tokens[i], sizeof(tp->tokens[i]), NULL, err,
                                  sizeof(err));
        if (rc < 0) {
            lethe_error("token_file %s: %s", f, err);
            return rc;
        }
        snprintf(tp->nodes[i], sizeof(tp->nodes[i]), "%s", cfg->memnodes[i]);
    }
    memcpy(tp->token, tp->tokens[0], sizeof(tp->token));
    return 0;
}

static void teardown(struct lethe *l)
{
    lethe_fork_fini(l);
    lethe_rebalancer_stop(l);
    if (l->region)
        lethe_region_destroy(l->region);
    l->region = NULL;
    for (unsigned i = 0; l->workers && i < l->nworkers; i++) {
        if (l->workers[i].ch)
            lethe_channel_close(l->workers[i].ch);
        l->workers[i].ch = NULL;
    }
    if (l->transport)
        lethe_transport_close(l->transport);
    lethe_slots_destroy(&l->slots);
    lethe_extents_destroy(&l->extents);
    unmap(l->workers, l->workers_bytes);
    if (l->shards) {
        for (unsigned i = 0; i < l->nshards; i++)
            pthread_mutex_destroy(&l->shards[i].lock);
    }
    unmap(l->shards, l->shards_bytes);
    unmap(l->frames, l->frames_bytes);
    unmap(l->slot_full, l->frame_cap);
    unmap(l->pt, l->pt_bytes);
    pthread_mutex_destroy(&l->retire_lock);
    pthread_mutex_destroy(&l->park_lock);
    pthread_mutex_destroy(&l->resize_lock);
    pthread_mutex_destroy(&l->control_lock);
    munmap(l, sizeof(*l));
}

int lethe_start(const struct lethe_config *cfg, struct lethe **out)
{
    struct lethe *l = map_zero(sizeof(*l), false);
    if (!l)
        return -ENOMEM;
    l->cfg = *cfg;
    lethe_log_set_level((enum lethe_log_level)cfg->log_level);
    pthread_mutex_init(&l->retire_lock, NULL);
    pthread_mutex_init(&l->park_lock, NULL);
    pthread_mutex_init(&l->resize_lock, NULL);
    pthread_mutex_init(&l->control_lock, NULL);
    pthread_mutex_init(&l->fork_lock, NULL);
    l->keeper_fd = l->fork_pipe[0] = l->fork_pipe[1] = -1;
    lethe_list_init(&l->retired);
    int rc = -EINVAL;

    unsigned cpus = usable_cpus();
    l->vcpus = cfg->vcpus ? cfg->vcpus : cpus;
    if (l->vcpus > LETHE_MAX_VCPUS)
        l->vcpus = LETHE_MAX_VCPUS;
    l->region_pages = cfg->region_size >> LETHE_PAGE_SHIFT;
    uint64_t frames = cfg->cache_size >> LETHE_PAGE_SHIFT;
    if (frames > l->region_pages)
        frames = l->region_pages;
    if (frames < LETHE_MIN_FRAMES) {
        lethe_error("cache_size: %llu bytes is below the minimum of %u pages",
                    (unsigned long long)cfg->cache_size, LETHE_MIN_FRAMES);
        goto fail;
    }
    l->batch = cfg->reclaim_batch == 0                ? 1
               : cfg->reclaim_batch > LETHE_MAX_BATCH ? LETHE_MAX_BATCH
                                                      : cfg->reclaim_batch;
    l->nshards = cfg->shards == 0                 ? auto_shards(cpus, frames)
                 : cfg->shards > LETHE_MAX_SHARDS ? LETHE_MAX_SHARDS
                                                  : cfg->shards;
    uint64_t cap = frames * LETHE_CACHE_GROWTH;
    if (cap > l->region_pages)
        cap = l->region_pages;
    if (cap >= LETHE_NIL)
        cap = LETHE_NIL - 1;
    l->frame_cap = (uint32_t)cap;
    l->thread_delivery = cfg->fault_delivery == LETHE_DELIVERY_THREAD;

    rc = -ENOMEM;
    l->pt_bytes = l->region_pages * sizeof(struct lethe_pte);
    l->pt = map_zero(l->pt_bytes, true);
    l->frames_bytes = (size_t)cap * sizeof(struct lethe_frame);
    l->frames = map_zero(l->frames_bytes, true);
    l->slot_full = map_zero(cap, true);
    l->shards_bytes = l->nshards * sizeof(struct lethe_shard) + l->nshards * sizeof(uint32_t);
    l->shards = map_zero(l->shards_bytes, false);
    if (!l->pt || !l->frames || !l->slot_full || !l->shards) {
        lethe_error("cannot map %zu bytes of page table and frame table",
                    l->pt_bytes + l->frames_bytes);
        goto fail;
    }
    l->shard_order = (uint32_t *)(void *)(l->shards + l->nshards);
    for (unsigned i = 0; i < l->nshards; i++) {
        struct lethe_shard *s = &l->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        lethe_list_init(&s->free);
        lethe_list_init(&s->active);
        lethe_list_init(&s->inactive);
    }
    for (uint64_t f = frames; f-- > 0;) {
        struct lethe_shard *s = &l->shards[f % l->nshards];
        lethe_frame_set(&l->frames[f], 0, LETHE_FL_ISOLATED);
        lethe_list_push_head(l->frames, &s->free, (uint32_t)f, LETHE_FL_FREE);
    }
    l->frames_hw = (uint32_t)frames;
    l->frames_target = frames;

    struct lethe_transport_params tp;
    /* the rebalancer and a refill work in batches of up to LETHE_BG_BATCH (batch parking) */
    rc = transport_params(cfg, l->batch < LETHE_BG_BATCH ? LETHE_BG_BATCH : l->batch, &tp);
    if (rc < 0)
        goto fail;
    rc = lethe_transport_open(&tp, &l->transport);
    memset(tp.token, 0, sizeof(tp.token));
    if (rc < 0) {
        l->transport = NULL;
        goto fail;
    }
    rc = lethe_slots_init(&l->slots, lethe_transport_pages(l->transport));
    if (rc < 0) {
        lethe_error("cannot set up %llu remote slots: %s",
                    (unsigned long long)lethe_transport_pages(l->transport), strerror(-rc));
        goto fail;
    }

    rc = -ENOMEM;
    l->nworkers = l->vcpus + 2;
    l->workers_bytes = l->nworkers * sizeof(struct lethe_worker);
    l->workers = map_zero(l->workers_bytes, false);
    if (!l->workers)
        goto fail;
    for (unsigned i = 0; i < l->nworkers; i++) {
        l->workers[i].id = i;
        l->workers[i].rng = 0x9e3779b97f4a7c15ULL * (i + 1) ^ (uint64_t)getpid();
    }
    if (cfg->reclaim == LETHE_RECLAIM_REBALANCER) {
        rc = lethe_channel_open(l->transport, l->vcpus, &l->workers[l->vcpus].ch);
        if (rc < 0)
            goto fail;
    }
    rc = lethe_channel_open(l->transport, l->vcpus + 1, &l->workers[l->vcpus + 1].ch);
    if (rc < 0)
        goto fail;

    /* resolved before faults can come, so that none pays for it */
    const char *checksum = lethe_page_checksum_impl();
    struct lethe_region_params rp = {
        .region_size = l->region_pages << LETHE_PAGE_SHIFT,
        .nframes = cap,
        .vcpus = l->vcpus,
        .pin_vcpus = cfg->pin_vcpus,
        .delivery = cfg->fault_delivery,
        .staging_pages = 1,
        /* a parked page names its slot in 24 bits of its entry */
        .batch_parking = cfg->parking == LETHE_PARKING_BATCH && cap <= LETHE_PARK_MAX,
    };
    struct lethe_region *region = NULL;
    rc = lethe_region_create(&rp, &core_ops, l, &region);
    if (rc < 0) {
        lethe_error("cannot create the managed region: %s", strerror(-rc));
        goto fail;
    }
    l->batch_park = lethe_region_batch_parking(region);
    l->recycle = lethe_region_has_move(region) && !l->batch_park;
    if (cfg->parking == LETHE_PARKING_BATCH && !l->batch_park)
        lethe_info("parking = batch unavailable (%s): one UFFDIO_MOVE per page instead",
                   cap > LETHE_PARK_MAX ? "cache too large for it"
                   : !lethe_region_has_move(region) ? "no UFFDIO_MOVE"
                                                    : "no process_madvise(MADV_DONTNEED)");
    __atomic_store_n(&l->region, region, __ATOMIC_RELEASE);
    if ((rc = lethe_fork_init(l)) < 0) /* after the region's: its child handler runs first */
        goto fail;
    rc = lethe_extents_init(&l->extents, l->region_pages,
                            (uint64_t)(uintptr_t)lethe_region_base(l->region) >> LETHE_PAGE_SHIFT);
    if (rc < 0)
        goto fail;

    snprintf(l->paths, sizeof(l->paths), "%s transport=%s reclaim=%s shards=%u vcpus=%u",
             lethe_region_paths(l->region), lethe_transport_describe(l->transport),
             lethe_reclaim_name(cfg->reclaim), l->nshards, l->vcpus);
    if (cfg->reclaim == LETHE_RECLAIM_REBALANCER) {
        rc = lethe_rebalancer_start(l);
        if (rc < 0)
            goto fail;
    }
    lethe_info("swapper started: %llu frames (%llu MiB cache, up to %u), region %llu MiB, %s, "
               "page checksum %s",
               (unsigned long long)frames, (unsigned long long)(frames >> 8), l->frame_cap,
               (unsigned long long)(l->region_pages >> 8), l->paths, checksum);
    *out = l;
    return 0;

fail:
    teardown(l);
    return rc;
}

void lethe_stop(struct lethe *l)
{
    if (l)
        teardown(l);
}

/* --- extents --- */

void *lethe_extent_alloc(struct lethe *l, size_t size, size_t align)
{
    if (!l || size == 0)
        return NULL;
    uint64_t n = (size + LETHE_PAGE_SIZE - 1) >> LETHE_PAGE_SHIFT;
    uint64_t a = (align + LETHE_PAGE_SIZE - 1) >> LETHE_PAGE_SHIFT;
    int64_t vpn = lethe_extents_alloc(&l->extents, n, a);
    if (vpn < 0)
        return NULL;
    return lethe_region_addr(l->region, (uint64_t)vpn);
}

static bool extent_range(struct lethe *l, void *addr, size_t size, uint64_t *vpn, uint64_t *n)
{
    *vpn = lethe_region_vpn(l->region, addr);
    *n = (size + LETHE_PAGE_SIZE - 1) >> LETHE_PAGE_SHIFT;
    if (*vpn == UINT64_MAX || ((uintptr_t)addr & (LETHE_PAGE_SIZE - 1)) || *n == 0 ||
        *n > l->region_pages - *vpn) {
        lethe_error("extent %p (+%zu bytes) is not a page range of the region", addr, size);
        return false;
    }
    return true;
}

/* Forgets the pages' content and drops what the kernel still maps. lethe_page_drop raises a
 * release event for the range, which finds the pages untouched already. */
static void discard(struct lethe *l, uint64_t vpn, uint64_t n)
{
    uint64_t first, end;
    lethe_release_range(l, vpn, n, &first, &end);
    if (end > first) {
        int rc = lethe_page_drop(l->region, first, end - first);
        if (rc < 0)
            lethe_warn("cannot drop pages %llu..%llu: %s", (unsigned long long)first,
                       (unsigned long long)end - 1, strerror(-rc));
    }
}

/* A freed range gets the read-write, unlocked state of fresh memory back, once the program
 * has changed the protection of region pages. */
static void reset_access(struct lethe *l, void *addr, size_t size, uint64_t vpn, uint64_t n)
{
    if (!__atomic_load_n(&l->protection_changed, __ATOMIC_RELAXED))
        return;
    int rc = lethe_page_reset_access(l->region, vpn, n);
    if (rc < 0)
        lethe_warn("extent %p (+%zu bytes): cannot make it read-write again: %s", addr, size,
                   strerror(-rc));
}

void lethe_note_protection(struct lethe *l)
{
    if (l && !__atomic_load_n(&l->protection_changed, __ATOMIC_RELAXED))
        __atomic_store_n(&l->protection_changed, true, __ATOMIC_RELAXED);
}

void lethe_extent_free(struct lethe *l, void *addr, size_t size)
{
    uint64_t vpn, n;
    if (!l || !extent_range(l, addr, size, &vpn, &n))
        return;
    /* a file or shared mapping the program put there becomes region memory again */
    if (lethe_page_unforeign(l->region, vpn, n) < 0)
        return; /* logged; the range stays allocated rather than hand out those pages */
    /* read-write and unlocked first: the drop cannot move pages out of a read-only or locked
     * range, and MADV_DONTNEED refuses locked pages (they would stay, with their content) */
    reset_access(l, addr, size, vpn, n);
    if (!l->child) /* a forked child keeps no page state: it only gives the range back */
        discard(l, vpn, n);
    if (lethe_extents_free(&l->extents, vpn, n) < 0)
        lethe_error("extent %p (+%zu bytes) freed but not allocated", addr, size);
}

void lethe_extent_purge(struct lethe *l, void *addr, size_t size)
{
    uint64_t vpn, n;
    if (!l || l->child || !extent_range(l, addr, size, &vpn, &n))
        return;
    discard(l, vpn, n);
}

void lethe_extent_purge_free(struct lethe *l, void *addr, size_t size)
{
    uint64_t vpn, n;
    if (!l || l->child || !extent_range(l, addr, size, &vpn, &n))
        return;
    reset_access(l, addr, size, vpn, n); /* first, as in lethe_extent_free */
    discard(l, vpn, n);
}

/* Checks a range the program maps by address and takes its free pages (the rest it owns
 * already). */
static int claim(struct lethe *l, void *addr, size_t size, uint64_t *vpn, uint64_t *n)
{
    if (!l || !extent_range(l, addr, size, vpn, n))
        return -EINVAL;
    int64_t taken = lethe_extents_claim(&l->extents, *vpn, *n);
    if (taken < 0) {
        lethe_error("mmap of %p (+%zu bytes) in the region: cannot claim it: %s", addr, size,
                    strerror((int)-taken));
        return (int)taken;
    }
    return 0;
}

int lethe_extent_map_fresh(struct lethe *l, void *addr, size_t size, int prot)
{
    uint64_t vpn, n;
    int rc = claim(l, addr, size, &vpn, &n);
    if (rc < 0)
        return rc;
    /* A forked child cannot forget pages (their state is the parent's, read through the
     * slots): it takes the kernel's fresh memory, kept as a foreign range. */
    if (l->child)
        return lethe_page_map_foreign(l->region, vpn, n, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if ((rc = lethe_page_unforeign(l->region, vpn, n)) < 0)
        return rc;
    reset_access(l, addr, size, vpn, n);
    discard(l, vpn, n);
    if (prot != (PROT_READ | PROT_WRITE)) {
        lethe_note_protection(l);
        if (syscall(SYS_mprotect, addr, n << LETHE_PAGE_SHIFT, prot) != 0)
            return -errno;
    }
    return 0;
}

int lethe_extent_map_foreign(struct lethe *l, void *addr, size_t size, int prot, int flags, int fd,
                             off_t off)
{
    uint64_t vpn, n;
    int rc = claim(l, addr, size, &vpn, &n);
    if (rc < 0)
        return rc;
    if (!l->child) {
        reset_access(l, addr, size, vpn, n);
        discard(l, vpn, n);
    }
    return lethe_page_map_foreign(l->region, vpn, n, prot, flags, fd, off);
}

size_t lethe_extent_foreign_span(struct lethe *l, void *addr, size_t size, bool *foreign)
{
    uint64_t vpn, n;
    *foreign = false;
    if (!l || !extent_range(l, addr, size, &vpn, &n))
        return size;
    uint64_t span = lethe_page_foreign_span(l->region, vpn, n, foreign);
    return span == n ? size : span << LETHE_PAGE_SHIFT;
}

void lethe_get_ranges(const struct lethe *l, uint64_t *region, uint64_t *region_size,
                      uint64_t *park, uint64_t *park_size)
{
    *region = *region_size = *park = *park_size = 0;
    if (l && l->region)
        lethe_region_ranges(l->region, region, region_size, park, park_size);
}

int lethe_in_region(const struct lethe *l, const void *addr)
{
    return l && l->region && lethe_region_vpn(l->region, addr) != UINT64_MAX;
}

int lethe_set_cache_size(struct lethe *l, uint64_t bytes)
{
    return lethe_cache_resize(l, bytes >> LETHE_PAGE_SHIFT);
}

unsigned lethe_get_node_stats(const struct lethe *l, struct lethe_node_stats *out, unsigned max,
                              struct lethe_replica_stats *rs)
{
    return lethe_transport_node_stats(l->transport, out, max, rs);
}

const char *lethe_paths(const struct lethe *l)
{
    return l->paths;
}

unsigned lethe_shard_count(const struct lethe *l)
{
    return l->nshards;
}
