/* swap.c — the fault paths (ops->fault), the forked child's fault path, and the application
 * events that change the page table (release, remap).
 *
 * A fault looks at its page's state and claims the page with a compare-and-swap before doing
 * anything, so that exactly one thread brings a page in and nobody reads a page twice:
 *   UNTOUCHED -> IN: take a frame, install a zero page: MAPPED, FRESH.            (demand_zero)
 *                    While frames are plentiful, the untouched pages after it in its block
 *                    of fault_around pages are zero-filled too, in one call.     (prefilled)
 *   REMOTE    -> IN: take a frame, read the remote slot with no lock held (into the page
 *                    the frame's slot kept from an eviction, else the vCPU's staging),
 *                    verify its checksum against the slot's (a mismatch fails the fault
 *                    with -EIO: never install wrong data), install it: MAPPED, RVALID
 *                    (and UNPROT when recycled).                                  (swap_ins)
 *   PARKED    -> IN: under the shard lock, move the frame to the active head
 *                    (promotion), then map the page back from its slot without write
 *                    protection: MAPPED, REF, UNPROT.                            (soft_hits)
 *   MAPPED    -> IN: a stale fault (queued before the install) or a page the kernel zapped:
 *                    install_zero tells which; -EEXIST: it is there, wake and return.
 *   IN:  thread delivery returns at once (the installer's ioctl wakes every thread waiting on
 *        the page); signal delivery waits, then lets the access retry.
 *   OUT: wait until it settles (parked, remote or untouched), then start over.
 * On -EAGAIN from an operation (the application is changing its mappings) the fault restores
 * the state it claimed, wakes the page and returns -EAGAIN; the runtime retries later.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/log.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static unsigned long long page_addr(const struct lethe *l, uint64_t vpn)
{
    return (unsigned long long)(uintptr_t)lethe_region_addr(lethe_rgn(l), vpn);
}

/* Gives back the frame of a page that could not be installed (it is on the active list of
 * its shard, where lethe_frame_get put it). */
static void undo_frame(struct lethe *l, uint64_t vpn, uint32_t f)
{
    struct lethe_shard *s = &l->shards[lethe_shard_of(l, vpn)];
    lethe_shard_lock(s);
    lethe_assert(lethe_frame_list(&l->frames[f]) == LETHE_FL_ACTIVE);
    lethe_list_remove(l->frames, &s->active, f);
    lethe_frame_free_locked(l, s, f);
    lethe_shard_unlock(s);
}

static int install_failed(struct lethe *l, struct lethe_worker *w, uint64_t vpn, int rc,
                          const char *what)
{
    lethe_page_wake(lethe_rgn(l), vpn, 1);
    if (rc == -EAGAIN) {
        LETHE_COUNT(&w->cnt, fault_retries, 1);
        return rc;
    }
    lethe_error("page 0x%llx (vpn %llu): cannot %s: %s", page_addr(l, vpn), (unsigned long long)vpn,
                what, strerror(-rc));
    return rc;
}

_Static_assert(LETHE_ZERO_RUN >= 64, "fault_around goes up to 64 pages");

/* Fault-around: after the first touch of vpn, zero-fills the untouched pages that follow it
 * in its aligned block of fault_around pages, in one call, while frames are plentiful — the
 * next touches of a growing heap find their pages there. Each page is claimed (UNTOUCHED ->
 * IN) and given a free frame first; the run stops at the first page that is not untouched or
 * finds no frame. Pages the call could not install go back to untouched, and are woken: a
 * thread may have faulted on one meanwhile and wait for it. */
static void fault_around(struct lethe *l, struct lethe_worker *w, uint64_t vpn)
{
    uint64_t n = l->cfg.fault_around;
    uint64_t end = (vpn / n + 1) * n;
    if (end > l->region_pages)
        end = l->region_pages;
    if (vpn + 1 >= end || !lethe_frames_plentiful(l, end - vpn))
        return;
    uint64_t got = 0;
    for (uint64_t v = vpn + 1; v < end; v++) {
        struct lethe_pte *q = lethe_pte_of(l, v);
        uint64_t wd = lethe_pte_load(q);
        if (lethe_pte_state(wd) != LETHE_PS_UNTOUCHED ||
            !lethe_pte_cas(q, &wd, lethe_pte_make(LETHE_PS_IN, 0, 0)))
            break;
        if (!lethe_frame_try_get(l, v, &w->frames[got])) {
            lethe_pte_publish(q, 0);
            lethe_page_wake(lethe_rgn(l), v, 1);
            break;
        }
        /* rare: fault-around runs while frames are plentiful, before evictions fill slots */
        lethe_frame_empty_slot(l, w->frames[got]);
        got++;
    }
    if (got == 0)
        return;
    int64_t done = lethe_page_install_zero_run(lethe_rgn(l), vpn + 1, got);
    if (done < 0)
        done = 0;
    for (uint64_t k = 0; k < got; k++) {
        uint64_t v = vpn + 1 + k;
        struct lethe_pte *q = lethe_pte_of(l, v);
        if (k < (uint64_t)done) {
            lethe_pte_publish(q, lethe_pte_make(LETHE_PS_MAPPED, LETHE_PTE_FRESH, w->frames[k]));
            continue;
        }
        undo_frame(l, v, w->frames[k]);
        lethe_pte_publish(q, 0);
        lethe_page_wake(lethe_rgn(l), v, 1);
    }
    LETHE_COUNT(&w->cnt, prefilled, (uint64_t)done);
}

static int fault_zero(struct lethe *l, struct lethe_worker *w, uint64_t vpn, struct lethe_pte *p)
{
    uint32_t f;
    int rc = lethe_frame_get(l, w, vpn, false, &f);
    if (rc < 0) {
        lethe_pte_publish(p, 0);
        lethe_page_wake(lethe_rgn(l), vpn, 1);
        return rc;
    }
    uint64_t flags = LETHE_PTE_FRESH;
    rc = lethe_frame_install(l, w, f, vpn, NULL, &flags);
    if (rc == 0) {
        lethe_pte_publish(p, lethe_pte_make(LETHE_PS_MAPPED, flags, f));
        LETHE_COUNT(&w->cnt, demand_zero, 1);
        if (l->cfg.fault_around > 1)
            fault_around(l, w, vpn);
        return 0;
    }
    if (rc == -EEXIST) {
        /* Present although untouched: the kernel has yet to zap a page the application just
         * released. Account for it (content unknown: dirty); if the zap follows, the next
         * fault finds it missing and zero-fills it. */
        lethe_pte_publish(p, lethe_pte_make(LETHE_PS_MAPPED, LETHE_PTE_DIRTY, f));
        lethe_page_wake(lethe_rgn(l), vpn, 1);
        return 0;
    }
    undo_frame(l, vpn, f);
    lethe_pte_publish(p, 0);
    return install_failed(l, w, vpn, rc, "install a zero page");
}

static int fault_remote(struct lethe *l, struct lethe_worker *w, struct lethe_vcpu *v, uint64_t vpn,
                        struct lethe_pte *p, uint64_t remote)
{
    uint64_t slot = lethe_pte_slot(p);
    uint32_t f;
    int rc = lethe_frame_get(l, w, vpn, true, &f);
    if (rc < 0) {
        lethe_pte_publish(p, remote);
        lethe_page_wake(lethe_rgn(l), vpn, 1);
        return rc;
    }
    uint64_t t0 = now_ns();
    /* into the page an eviction left in the frame, if any: no staging copy */
    void *buf = l->slot_full[f] ? lethe_region_slot(lethe_rgn(l), f) : v->staging;
    rc = lethe_channel_read_checked(w->ch, slot, buf, lethe_slot_sum(&l->slots, slot));
    if (rc < 0) {
        lethe_error("page 0x%llx (vpn %llu): cannot read from %s", page_addr(l, vpn),
                    (unsigned long long)vpn, lethe_channel_error(w->ch));
        undo_frame(l, vpn, f);
        lethe_pte_publish(p, remote);
        lethe_page_wake(lethe_rgn(l), vpn, 1);
        return rc;
    }
    if (lethe_page_checksum(buf) != lethe_slot_sum(&l->slots, slot)) {
        lethe_error("page 0x%llx (vpn %llu): checksum mismatch reading slot %llu from %s: remote "
                    "copy corrupted or stale",
                    page_addr(l, vpn), (unsigned long long)vpn, (unsigned long long)slot,
                    lethe_transport_describe(l->transport));
        undo_frame(l, vpn, f);
        lethe_pte_publish(p, remote);
        lethe_page_wake(lethe_rgn(l), vpn, 1);
        return -EIO;
    }
    uint64_t flags = LETHE_PTE_RVALID;
    rc = lethe_frame_install(l, w, f, vpn, buf, &flags);
    if (rc == 0 || rc == -EEXIST) {
        if (rc == -EEXIST) {
            lethe_warn("page 0x%llx (vpn %llu): present while remote; keeping what is mapped",
                       page_addr(l, vpn), (unsigned long long)vpn);
            flags = LETHE_PTE_DIRTY;
            lethe_page_wake(lethe_rgn(l), vpn, 1);
        }
        lethe_pte_publish(p, lethe_pte_make(LETHE_PS_MAPPED, flags, f));
        LETHE_COUNT(&w->cnt, swap_ins, 1);
        LETHE_COUNT(&w->cnt, remote_loss, 1);
        LETHE_COUNT(&w->cnt, swap_in_ns_total, now_ns() - t0);
        return 0;
    }
    undo_frame(l, vpn, f);
    lethe_pte_publish(p, remote);
    return install_failed(l, w, vpn, rc, "install the page read from remote memory");
}

/* Returns 1 when the page was no longer parked (the caller looks again). */
static int fault_parked(struct lethe *l, struct lethe_worker *w, uint64_t vpn, struct lethe_pte *p)
{
    struct lethe_shard *s = &l->shards[lethe_shard_of(l, vpn)];
    lethe_shard_lock(s);
    uint64_t wd = lethe_pte_load(p);
    uint64_t in = lethe_pte_with_state(wd, LETHE_PS_IN) & ~LETHE_PTE_WAITERS;
    if (lethe_pte_state(wd) != LETHE_PS_PARKED || !lethe_pte_cas(p, &wd, in)) {
        lethe_shard_unlock(s);
        return 1;
    }
    uint32_t f = lethe_pte_frame(wd);
    lethe_assert(lethe_frame_list(&l->frames[f]) == LETHE_FL_INACTIVE &&
                 lethe_frame_vpn(&l->frames[f]) == vpn);
    lethe_list_move_head(l->frames, &s->inactive, &s->active, f, LETHE_FL_ACTIVE);
    lethe_shard_unlock(s);

    /* Unprotected (no write-protect, no TLB flush for it): from now on the page is judged
     * by content at eviction, its dirty bit kept as it is. */
    int rc;
    if (l->batch_park) {
        rc = lethe_page_install_unprotected(lethe_rgn(l), vpn, lethe_parked_page(l, vpn, f));
        if (rc == 0 || rc == -EEXIST)
            lethe_park_release(l, p);
    } else {
        rc = lethe_page_map_back_unprotected(lethe_rgn(l), vpn, f);
    }
    if (rc == 0) {
        lethe_pte_publish(
            p, lethe_pte_with_state(in | LETHE_PTE_REF | LETHE_PTE_UNPROT, LETHE_PS_MAPPED));
        LETHE_COUNT(&w->cnt, soft_hits, 1);
        LETHE_COUNT(&w->cnt, promotions, 1);
        return 0;
    }
    if (rc == -EEXIST) {
        /* A page is mapped there although ours was parked: the application has been using
         * the mapped one, so it wins; the parked copy is stale. Content unknown: dirty. */
        lethe_warn("page 0x%llx (vpn %llu): mapped while parked; keeping the mapped page",
                   page_addr(l, vpn), (unsigned long long)vpn);
        if (!l->batch_park)
            lethe_page_drop_slot(lethe_rgn(l), f);
        lethe_pte_publish(p, lethe_pte_make(LETHE_PS_MAPPED, LETHE_PTE_DIRTY, f));
        lethe_page_wake(lethe_rgn(l), vpn, 1);
        return 0;
    }
    lethe_shard_lock(s);
    lethe_list_move_head(l->frames, &s->active, &s->inactive, f, LETHE_FL_INACTIVE);
    lethe_pte_publish(p, lethe_pte_with_state(in, LETHE_PS_PARKED));
    lethe_shard_unlock(s);
    return install_failed(l, w, vpn, rc, "map the page back from its parking slot");
}

static int fault_mapped(struct lethe *l, struct lethe_worker *w, uint64_t vpn, struct lethe_pte *p,
                        uint64_t in)
{
    int rc = lethe_page_install_zero(lethe_rgn(l), vpn);
    if (rc == -EEXIST) {
        lethe_pte_publish(p, lethe_pte_with_state(in, LETHE_PS_MAPPED));
        lethe_page_wake(lethe_rgn(l), vpn, 1);
        return 0;
    }
    if (rc == 0) {
        /* Its content was really gone (zapped by the kernel): it is a demand-zero page now.
         * The remote slot stays with the page; its copy is stale. */
        lethe_pte_publish(p, lethe_pte_make(LETHE_PS_MAPPED, LETHE_PTE_FRESH, lethe_pte_frame(in)));
        LETHE_COUNT(&w->cnt, demand_zero, 1);
        return 0;
    }
    lethe_pte_publish(p, lethe_pte_with_state(in, LETHE_PS_MAPPED));
    return install_failed(l, w, vpn, rc, "install a zero page");
}

static int serve_fault(struct lethe *l, struct lethe_vcpu *v, uint64_t vpn);

int lethe_core_fault(void *core, struct lethe_vcpu *v, uint64_t vpn, enum lethe_access access)
{
    struct lethe *l = core;
    (void)access;
    /* (l->batch_park is written before the region is published: read it after lethe_rgn) */
    if (lethe_rgn(l) && l->batch_park && l->thread_delivery && vpn < l->region_pages) {
        /* A capture's own fault on a page that was zapped behind our back: answer it with a
         * zero page (what the page holds after a zap) instead of waiting for the capture,
         * which waits for this fault. end_capture() waits for us before the unmap. */
        struct lethe_pte *p = lethe_pte_of(l, vpn);
        if (__atomic_load_n(&p->word, __ATOMIC_RELAXED) & LETHE_PTE_CAPTURE) {
            __atomic_fetch_add(&l->capture_installs, 1, __ATOMIC_SEQ_CST);
            uint64_t wd = __atomic_load_n(&p->word, __ATOMIC_SEQ_CST);
            int rc = 1;
            if ((wd & LETHE_PTE_CAPTURE) && lethe_pte_state(wd) == LETHE_PS_OUT) {
                rc = lethe_page_install_zero(lethe_rgn(l), vpn);
                if (rc == -EEXIST)
                    rc = 0;
            }
            __atomic_fetch_sub(&l->capture_installs, 1, __ATOMIC_SEQ_CST);
            if (rc != 1)
                return rc;
        }
    }
    lethe_op_begin(l);
    int rc = serve_fault(l, v, vpn);
    lethe_op_end(l);
    return rc;
}

static int serve_fault(struct lethe *l, struct lethe_vcpu *v, uint64_t vpn)
{
    struct lethe_worker *w = v->core;
    if (vpn >= l->region_pages)
        return -EFAULT;
    LETHE_COUNT(&w->cnt, faults, 1);
    __atomic_fetch_add(&l->shards[lethe_shard_of(l, vpn)].faults, 1, __ATOMIC_RELAXED);
    struct lethe_pte *p = lethe_pte_of(l, vpn);
    bool waited = false;
    for (;;) {
        uint64_t wd = lethe_pte_load(p);
        uint64_t in = lethe_pte_with_state(wd, LETHE_PS_IN) & ~LETHE_PTE_WAITERS;
        switch (lethe_pte_state(wd)) {
        case LETHE_PS_UNTOUCHED:
            if (lethe_pte_cas(p, &wd, lethe_pte_make(LETHE_PS_IN, 0, 0)))
                return fault_zero(l, w, vpn, p);
            break;
        case LETHE_PS_REMOTE:
            if (lethe_pte_cas(p, &wd, in))
                return fault_remote(l, w, v, vpn, p, wd);
            break;
        case LETHE_PS_PARKED: {
            int rc = fault_parked(l, w, vpn, p);
            if (rc != 1)
                return rc;
            break;
        }
        case LETHE_PS_MAPPED:
            if (waited && !l->thread_delivery)
                return 0; /* it arrived while we slept: let the access retry */
            if (lethe_pte_cas(p, &wd, in))
                return fault_mapped(l, w, vpn, p, in);
            break;
        case LETHE_PS_IN:
            if (l->thread_delivery) {
                if (!waited)
                    LETHE_COUNT(&w->cnt, fault_waits, 1);
                return 0;
            }
            /* a signal handler must not return before the page is there */
            __attribute__((fallthrough));
        default:
            if (!waited)
                LETHE_COUNT(&w->cnt, fault_waits, 1);
            waited = true;
            lethe_pte_wait(p, wd);
            break;
        }
    }
}

/* --- the forked child: one thread, no locks, nothing remote --- */

void lethe_core_forked_child(void *core)
{
    struct lethe *l = core;
    l->child = true;
    /* The extent allocator stays usable in the child (jemalloc may allocate before exec); a
     * thread of the parent may have held its lock at fork time. */
    pthread_mutex_init(&l->extents.lock, NULL);
}

/* A page that was out at the fork, read from its slot, which the parent keeps as it was for
 * as long as this child (or a child of it) lives (fork.c). */
static int child_swap_in(struct lethe *l, struct lethe_vcpu *v, uint64_t vpn)
{
    struct lethe_worker *w = v->core;
    struct lethe_channel *ch = w->ch;
    bool own = false;
    lethe_transport_fork_readable(l->transport, &own);
    if (own) { /* tcp: the parent's connections are not ours; attach one to the region */
        if (!l->child_channel) {
            int rc = lethe_channel_open(l->transport, 0, &l->child_channel);
            if (rc < 0) {
                lethe_error("page 0x%llx (vpn %llu): a forked child cannot connect to %s to "
                            "read it (logged above)",
                            page_addr(l, vpn), (unsigned long long)vpn,
                            lethe_transport_describe(l->transport));
                return rc;
            }
        }
        ch = l->child_channel;
    }
    uint64_t slot = lethe_pte_slot(lethe_pte_of(l, vpn));
    int rc = lethe_channel_read_checked(ch, slot, v->staging, lethe_slot_sum(&l->slots, slot));
    if (rc < 0) {
        lethe_error("page 0x%llx (vpn %llu): forked child cannot read slot %llu: %s",
                    page_addr(l, vpn), (unsigned long long)vpn, (unsigned long long)slot,
                    lethe_channel_error(ch));
        return rc;
    }
    if (lethe_page_checksum(v->staging) != lethe_slot_sum(&l->slots, slot)) {
        lethe_error("page 0x%llx (vpn %llu): forked child read slot %llu from %s: checksum "
                    "mismatch, remote copy corrupted or changed",
                    page_addr(l, vpn), (unsigned long long)vpn, (unsigned long long)slot,
                    lethe_transport_describe(l->transport));
        return -EIO;
    }
    return lethe_page_install(lethe_rgn(l), vpn, v->staging);
}

int lethe_core_child_fault(void *core, struct lethe_vcpu *v, uint64_t vpn, enum lethe_access access)
{
    struct lethe *l = core;
    (void)v;
    (void)access;
    if (vpn >= l->region_pages)
        return -EFAULT;
    uint64_t wd = lethe_pte_load(lethe_pte_of(l, vpn));
    int rc;
    switch (lethe_pte_state(wd)) {
    case LETHE_PS_UNTOUCHED:
    case LETHE_PS_MAPPED:
        rc = lethe_page_install_zero(lethe_rgn(l), vpn);
        break;
    case LETHE_PS_PARKED:
        /* The slot's page is COW-shared with the parent: copy it, never move it. */
        rc = lethe_page_install(lethe_rgn(l), vpn, lethe_parked_page(l, vpn, lethe_pte_frame(wd)));
        break;
    case LETHE_PS_REMOTE:
        if (l->child_remote) {
            rc = child_swap_in(l, v, vpn);
            break;
        }
        lethe_error("page 0x%llx (vpn %llu): a forked child cannot reach remote memory over %s "
                    "(%s); exec or _exit after fork, or use transport = shm or tcp",
                    page_addr(l, vpn), (unsigned long long)vpn,
                    lethe_transport_describe(l->transport),
                    lethe_transport_fork_readable(l->transport, NULL)
                        ? "too many children were reading it at the fork"
                        : "an RDMA connection does not survive a fork");
        return -EFAULT;
    default:
        lethe_error("page 0x%llx (vpn %llu): was in flight when the process forked; a forked "
                    "child cannot finish its move (%s)",
                    page_addr(l, vpn), (unsigned long long)vpn,
                    lethe_transport_describe(l->transport));
        return -EFAULT;
    }
    if (rc == -EEXIST) {
        lethe_page_wake(lethe_rgn(l), vpn, 1);
        return 0;
    }
    return rc;
}

/* --- application events --- */

struct slot_buf {
    uint64_t slots[64];
    unsigned n;
};

static void slot_buf_add(struct lethe *l, struct slot_buf *b, uint64_t slot)
{
    b->slots[b->n++] = slot;
    if (b->n == 64) {
        lethe_slots_free(&l->slots, b->slots, b->n);
        b->n = 0;
    }
}

/* Claims a page as OUT, whatever it holds, waiting while it is in flight. Its frame is taken
 * off its list (and returned in *frame); the caller publishes the new state. Returns the
 * claimed word's previous state. */
static unsigned claim_out(struct lethe *l, uint64_t vpn, uint64_t *word, uint32_t *frame)
{
    struct lethe_pte *p = lethe_pte_of(l, vpn);
    for (;;) {
        uint64_t wd = lethe_pte_load(p);
        unsigned st = lethe_pte_state(wd);
        uint64_t out = lethe_pte_with_state(wd, LETHE_PS_OUT) & ~LETHE_PTE_WAITERS;
        if (st == LETHE_PS_IN || st == LETHE_PS_OUT) {
            lethe_pte_wait(p, wd);
            continue;
        }
        if (st == LETHE_PS_UNTOUCHED || st == LETHE_PS_REMOTE) {
            if (!lethe_pte_cas(p, &wd, out))
                continue;
            *word = out;
            *frame = LETHE_NIL;
            return st;
        }
        struct lethe_shard *s = &l->shards[lethe_shard_of(l, vpn)];
        lethe_shard_lock(s);
        if (!lethe_pte_cas(p, &wd, out)) {
            lethe_shard_unlock(s);
            continue;
        }
        uint32_t f = lethe_pte_frame(wd);
        lethe_assert(lethe_frame_list(&l->frames[f]) ==
                         (st == LETHE_PS_MAPPED ? LETHE_FL_ACTIVE : LETHE_FL_INACTIVE) &&
                     lethe_frame_vpn(&l->frames[f]) == vpn);
        lethe_list_remove(l->frames, st == LETHE_PS_MAPPED ? &s->active : &s->inactive, f);
        lethe_shard_unlock(s);
        *word = out;
        *frame = f;
        return st;
    }
}

/* Frees an isolated frame of page vpn; a parked page's slot is emptied first. */
static void free_frame(struct lethe *l, uint64_t vpn, uint32_t f, bool parked)
{
    if (parked && !l->batch_park) /* batch parking: the caller gave the pool slot back */
        lethe_page_drop_slot(lethe_rgn(l), f);
    struct lethe_shard *s = &l->shards[lethe_shard_of(l, vpn)];
    lethe_shard_lock(s);
    lethe_frame_free_locked(l, s, f);
    lethe_shard_unlock(s);
}

void lethe_release_range(struct lethe *l, uint64_t vpn, uint64_t n, uint64_t *first, uint64_t *end)
{
    *first = *end = 0;
    if (vpn >= l->region_pages)
        return;
    if (n > l->region_pages - vpn)
        n = l->region_pages - vpn;
    struct slot_buf sb = {.n = 0};
    uint64_t released = 0, remote = 0;
    for (uint64_t i = vpn; i < vpn + n; i++) {
        struct lethe_pte *p = lethe_pte_of(l, i);
        if (lethe_pte_load(p) == 0)
            continue; /* untouched: the common case for large ranges */
        uint64_t wd;
        uint32_t f;
        unsigned st = claim_out(l, i, &wd, &f);
        if (st == LETHE_PS_PARKED)
            lethe_park_release(l, p);
        uint64_t slot = lethe_pte_slot(p);
        if (slot != LETHE_NO_SLOT)
            slot_buf_add(l, &sb, slot);
        lethe_pte_set_slot(p, LETHE_NO_SLOT);
        lethe_pte_publish(p, 0);
        if (f != LETHE_NIL)
            free_frame(l, i, f, st == LETHE_PS_PARKED);
        if (st == LETHE_PS_MAPPED) {
            if (*first == *end)
                *first = i;
            *end = i + 1;
        }
        remote += st == LETHE_PS_REMOTE;
        released += st != LETHE_PS_UNTOUCHED;
    }
    if (sb.n)
        lethe_slots_free(&l->slots, sb.slots, sb.n);
    LETHE_COUNT_SHARED(&l->misc, released_pages, released);
    LETHE_COUNT_SHARED(&l->misc, remote_loss, remote);
}

void lethe_core_release(void *core, uint64_t vpn, uint64_t n)
{
    struct lethe *l = core;
    if (l->child)
        return;
    uint64_t first, end;
    lethe_op_begin(l);
    lethe_release_range(l, vpn, n, &first, &end);
    lethe_op_end(l);
}

/* Moves one entry: the destination is made untouched first, then takes the source's state,
 * slot and frame (relinked on the destination's shard). */
static void remap_one(struct lethe *l, uint64_t src, uint64_t dst, struct slot_buf *sb)
{
    struct lethe_pte *ps = lethe_pte_of(l, src), *pd = lethe_pte_of(l, dst);
    uint64_t dw;
    uint32_t df;
    unsigned dst_state = claim_out(l, dst, &dw, &df);
    if (dst_state == LETHE_PS_PARKED)
        lethe_park_release(l, pd);
    if (dst_state == LETHE_PS_REMOTE)
        LETHE_COUNT_SHARED(&l->misc, remote_loss, 1);
    uint64_t dslot = lethe_pte_slot(pd);
    if (dslot != LETHE_NO_SLOT)
        slot_buf_add(l, sb, dslot);
    if (df != LETHE_NIL)
        free_frame(l, dst, df, dst_state == LETHE_PS_PARKED);

    uint64_t sw;
    uint32_t f;
    unsigned st = claim_out(l, src, &sw, &f);
    __atomic_store_n(&pd->slot, __atomic_load_n(&ps->slot, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    lethe_pte_set_slot(ps, LETHE_NO_SLOT);
    lethe_pte_set_park(ps, LETHE_NO_PARK); /* a parked page's pool slot went with it */
    if (f != LETHE_NIL) {
        struct lethe_shard *s = &l->shards[lethe_shard_of(l, dst)];
        lethe_shard_lock(s);
        lethe_frame_set(&l->frames[f], dst, LETHE_FL_ISOLATED);
        lethe_list_push_head(l->frames, st == LETHE_PS_MAPPED ? &s->active : &s->inactive, f,
                             st == LETHE_PS_MAPPED ? LETHE_FL_ACTIVE : LETHE_FL_INACTIVE);
        lethe_pte_publish(pd, lethe_pte_with_state(sw, st));
        lethe_shard_unlock(s);
    } else {
        lethe_pte_publish(pd, lethe_pte_with_state(sw, st));
    }
    lethe_pte_publish(ps, 0);
}

void lethe_core_remap(void *core, uint64_t from, uint64_t to, uint64_t n)
{
    struct lethe *l = core;
    if (l->child || from == to || n == 0)
        return;
    if (from >= l->region_pages || to >= l->region_pages || n > l->region_pages - from ||
        n > l->region_pages - to)
        return;
    struct slot_buf sb = {.n = 0};
    lethe_op_begin(l);
    if (to > from) {
        for (uint64_t i = n; i-- > 0;)
            remap_one(l, from + i, to + i, &sb);
    } else {
        for (uint64_t i = 0; i < n; i++)
            remap_one(l, from + i, to + i, &sb);
    }
    if (sb.n)
        lethe_slots_free(&l->slots, sb.slots, sb.n);
    lethe_op_end(l);
}
