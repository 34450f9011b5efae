/* test_fault_stub.h — a minimal swapper core for the guest runtime's tests.
 *
 * It implements struct lethe_fault_ops with a page table of its own: each page is
 * untouched, resident, parked (soft-unmapped into a frame's slot) or remote. Untouched pages
 * are served with content derived from their vpn (stub_pattern), or with zeros when
 * `zero_fill` is set; remote pages are served from the same pattern (the stub's "memory
 * node"), except in a forked child, where touching one is fatal as the core's contract says.
 * Per-page spin locks; counters are atomics. Everything is plain test code: it may use the
 * libc heap, which is never the region here.
 */
#ifndef LETHE_TEST_FAULT_STUB_H
#define LETHE_TEST_FAULT_STUB_H

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "fault/fault.h"

/* Debugging hook: a test may define it to trace each page's history. */
#ifndef STUB_TRACE
#define STUB_TRACE(vpn, what, rc) ((void)0)
#endif

enum stub_state {
    STUB_UNTOUCHED = 0,
    STUB_RESIDENT = 1,
    STUB_PARKED = 2,
    STUB_REMOTE = 3,
};

struct stub_core {
    struct lethe_region *r;
    uint64_t pages;
    _Atomic uint8_t *state;
    uint64_t *frame; /* parked: which slot */
    atomic_uint *lock;
    atomic_bool *referenced;
    bool zero_fill;
    /* a gate the fault path waits on for one vpn (EAGAIN tests) */
    _Atomic int64_t gate_vpn; /* -1: none */
    atomic_bool gate_open;
    atomic_bool in_gate;
    /* counters */
    atomic_uint_fast64_t faults, fills, zero_fills, map_backs, write_faults, read_faults;
    atomic_uint_fast64_t again, released, release_calls, remaps, vcpu_inits, vcpu_finis;
    atomic_uint_fast64_t child_faults;
    atomic_uint_fast64_t resident_faults; /* faults on a page the stub thinks is mapped */
    _Atomic uint64_t last_release_vpn, last_release_n, last_remap_from, last_remap_to, last_remap_n;
    atomic_uint vcpu_seen; /* bitmask of vCPU ids that served faults (ids < 32) */
};

static inline uint64_t stub_word(uint64_t vpn, uint64_t i)
{
    return (vpn + 1) * 0x9E3779B97F4A7C15ULL ^ (i * 0x100000001B3ULL);
}

static inline void stub_pattern(uint64_t vpn, void *page)
{
    uint64_t *w = page;
    for (uint64_t i = 0; i < LETHE_PAGE_SIZE / 8; i++)
        w[i] = stub_word(vpn, i);
}

/* Does the page at p hold vpn's pattern? */
static inline bool stub_check(uint64_t vpn, const void *p)
{
    const volatile uint64_t *w = p;
    for (uint64_t i = 0; i < LETHE_PAGE_SIZE / 8; i++)
        if (w[i] != stub_word(vpn, i))
            return false;
    return true;
}

static inline void stub_lock(struct stub_core *c, uint64_t vpn)
{
    while (atomic_exchange_explicit(&c->lock[vpn], 1, memory_order_acquire))
        sched_yield();
}

static inline void stub_unlock(struct stub_core *c, uint64_t vpn)
{
    atomic_store_explicit(&c->lock[vpn], 0, memory_order_release);
}

static inline void stub_count(atomic_uint_fast64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static int stub_vcpu_init(void *core, struct lethe_vcpu *v)
{
    struct stub_core *c = core;
    v->core = c;
    stub_count(&c->vcpu_inits);
    return 0;
}

static void stub_vcpu_fini(void *core, struct lethe_vcpu *v)
{
    stub_count(&((struct stub_core *)core)->vcpu_finis);
}

static int stub_fill(struct stub_core *c, struct lethe_vcpu *v, uint64_t vpn)
{
    if (c->zero_fill) {
        stub_count(&c->zero_fills);
        return lethe_page_install_zero(c->r, vpn);
    }
    stub_count(&c->fills);
    stub_pattern(vpn, v->staging);
    return lethe_page_install(c->r, vpn, v->staging);
}

static int stub_fault(void *core, struct lethe_vcpu *v, uint64_t vpn, enum lethe_access access)
{
    struct stub_core *c = core;
    stub_count(&c->faults);
    stub_count(access == LETHE_ACCESS_WRITE ? &c->write_faults : &c->read_faults);
    if (v->id < 32)
        atomic_fetch_or(&c->vcpu_seen, 1u << v->id);
    if (atomic_load(&c->gate_vpn) == (int64_t)vpn) {
        atomic_store(&c->in_gate, true);
        while (!atomic_load(&c->gate_open))
            usleep(100);
        atomic_store(&c->gate_vpn, -1);
    }
    stub_lock(c, vpn);
    int rc = 0;
    /* State and counters change before the operation that wakes the faulting thread (and
     * are undone if it fails), so the woken thread sees them. */
    uint8_t old = atomic_load(&c->state[vpn]);
    switch (old) {
    case STUB_UNTOUCHED:
    case STUB_REMOTE:
        atomic_store(&c->state[vpn], STUB_RESIDENT);
        rc = stub_fill(c, v, vpn);
        if (rc == -EEXIST)
            rc = 0;
        break;
    case STUB_RESIDENT:
        /* Either a stale fault (another vCPU installed the page since: -EEXIST, wake) or the
         * page was zapped after its install by an application madvise whose release() ran
         * first: then it is given back, and served like a fresh page. */
        stub_count(&c->resident_faults);
        rc = stub_fill(c, v, vpn);
        if (rc == -EEXIST)
            rc = lethe_page_wake(c->r, vpn, 1);
        break;
    case STUB_PARKED:
        stub_count(&c->map_backs);
        atomic_store(&c->referenced[vpn], true);
        atomic_store(&c->state[vpn], STUB_RESIDENT);
        rc = lethe_page_map_back(c->r, vpn, c->frame[vpn]);
        if (rc < 0) {
            atomic_fetch_sub(&c->map_backs, 1);
            atomic_store(&c->referenced[vpn], false);
        }
        break;
    }
    if (rc < 0)
        atomic_store(&c->state[vpn], old);
    STUB_TRACE(vpn, old == STUB_PARKED ? "map_back" : old == STUB_RESIDENT ? "wake" : "fill", rc);
    stub_unlock(c, vpn);
    if (rc == -EAGAIN)
        stub_count(&c->again);
    return rc;
}

static void stub_release(void *core, uint64_t vpn, uint64_t n)
{
    struct stub_core *c = core;
    stub_count(&c->release_calls);
    atomic_fetch_add(&c->released, n);
    atomic_store(&c->last_release_vpn, vpn);
    atomic_store(&c->last_release_n, n);
    for (uint64_t i = vpn; i < vpn + n && i < c->pages; i++) {
        STUB_TRACE(i, "release", 0);
        stub_lock(c, i);
        if (atomic_load(&c->state[i]) == STUB_PARKED)
            lethe_page_drop_slot(c->r, c->frame[i]);
        atomic_store(&c->state[i], STUB_UNTOUCHED);
        stub_unlock(c, i);
    }
}

static void stub_remap(void *core, uint64_t from, uint64_t to, uint64_t n)
{
    struct stub_core *c = core;
    stub_count(&c->remaps);
    atomic_store(&c->last_remap_from, from);
    atomic_store(&c->last_remap_to, to);
    atomic_store(&c->last_remap_n, n);
    for (uint64_t i = 0; i < n; i++) {
        c->frame[to + i] = c->frame[from + i];
        atomic_store(&c->state[to + i], atomic_load(&c->state[from + i]));
        atomic_store(&c->state[from + i], STUB_UNTOUCHED);
    }
}

static void stub_forked_child(void *core)
{
    struct stub_core *c = core;
    for (uint64_t i = 0; i < c->pages; i++)
        atomic_store(&c->lock[i], 0);
}

static int stub_child_fault(void *core, struct lethe_vcpu *v, uint64_t vpn,
                            enum lethe_access access)
{
    struct stub_core *c = core;
    stub_count(&c->child_faults);
    switch (atomic_load(&c->state[vpn])) {
    case STUB_UNTOUCHED:
        return lethe_page_install_zero(c->r, vpn);
    case STUB_PARKED: {
        int rc = lethe_page_map_back(c->r, vpn, c->frame[vpn]);
        if (rc == 0)
            atomic_store(&c->state[vpn], STUB_RESIDENT);
        return rc;
    }
    case STUB_REMOTE:
        lethe_error("forked child touched page %llu whose only copy is on the memory node: a "
                    "forked child cannot reach the parent's remote memory",
                    (unsigned long long)vpn);
        return -EIO;
    default:
        return lethe_page_wake(c->r, vpn, 1);
    }
}

static const struct lethe_fault_ops stub_ops = {
    .vcpu_init = stub_vcpu_init,
    .vcpu_fini = stub_vcpu_fini,
    .fault = stub_fault,
    .release = stub_release,
    .remap = stub_remap,
    .forked_child = stub_forked_child,
    .child_fault = stub_child_fault,
};

static inline struct lethe_region_params stub_params(enum lethe_delivery d, unsigned vcpus)
{
    struct lethe_region_params p = {
        .region_size = 64ULL << 20,
        .nframes = 4096,
        .vcpus = vcpus,
        .pin_vcpus = true,
        .delivery = d,
        .staging_pages = 1,
    };
    return p;
}

/* Creates a stub core and its region; returns NULL (with errno) on failure. */
static inline struct stub_core *stub_start(const struct lethe_region_params *p)
{
    struct stub_core *c = calloc(1, sizeof(*c));
    uint64_t pages = p->region_size / LETHE_PAGE_SIZE;
    c->pages = pages;
    c->state = calloc(pages, 1);
    c->frame = calloc(pages, sizeof(uint64_t));
    c->lock = calloc(pages, sizeof(atomic_uint));
    c->referenced = calloc(pages, sizeof(atomic_bool));
    atomic_store(&c->gate_vpn, -1);
    lethe_log_set_level(LETHE_LOG_WARN);
    int rc = lethe_region_create(p, &stub_ops, c, &c->r);
    if (rc < 0) {
        free(c);
        errno = -rc;
        return NULL;
    }
    return c;
}

static inline void stub_stop(struct stub_core *c)
{
    if (!c)
        return;
    lethe_region_destroy(c->r);
    free((void *)c->state);
    free(c->frame);
    free(c->lock);
    free(c->referenced);
    free(c);
}

/* Soft-unmaps vpn into frame, as the core's demotion would. */
static inline int stub_park(struct stub_core *c, uint64_t vpn, uint64_t frame)
{
    stub_lock(c, vpn);
    int rc = lethe_page_soft_unmap(c->r, vpn, frame);
    if (rc == 0) {
        c->frame[vpn] = frame;
        atomic_store(&c->referenced[vpn], false);
        atomic_store(&c->state[vpn], STUB_PARKED);
    }
    stub_unlock(c, vpn);
    return rc;
}

/* Waits up to ~2 s for an asynchronous counter (event handling) to reach want. */
static inline bool stub_wait_for(atomic_uint_fast64_t *counter, uint64_t want)
{
    for (int i = 0; i < 20000; i++) {
        if (atomic_load(counter) >= want)
            return true;
        usleep(100);
    }
    return false;
}

static inline char *stub_page(struct stub_core *c, uint64_t vpn)
{
    return lethe_region_addr(c->r, vpn);
}

#endif
