/* evict.c — the mechanics of demotion (active -> inactive) and eviction (inactive -> free),
 * shared by the rebalancer, direct reclaim and cache shrinking.
 *
 * Both follow the same three steps, so that no shard lock is held across I/O or a kernel
 * call: (1) under the shard lock, take victims off the list tail and claim each page by
 * moving it to OUT (isolating its frame); (2) without any lock, do the work; (3) under the
 * lock again, put the frames where they belong and publish each page's new state, which wakes
 * the faults that waited on it.
 *
 * Demotion reads each victim's dirty bit (lethe_page_scan_dirty, one call per run of
 * consecutive vpns) and ORs it into DIRTY before the soft-unmap, which loses it. A write that
 * lands between the scan and the move is not lost: eviction checks every page it would not
 * write back — a FRESH page must still be all zeros, a clean page's checksum must still equal
 * its remote slot's (slots.h) — and writes back the ones that changed (late_writes).
 *
 * Eviction classes: DIRTY (or no valid remote copy and not fresh) -> written back to its
 * remote slot, allocated at its first write-back and kept while the page lives (swap_outs);
 * clean with a valid remote copy -> dropped without a write (clean_drops); FRESH -> discarded,
 * the page becomes untouched again and reads as zeros next time (fresh_discards). The page
 * is published REMOTE (or UNTOUCHED), then the frame returns to a freelist with the page's
 * memory still in its parking slot (slot_full), for the next page installed there
 * (lethe_frame_install); without UFFDIO_MOVE the slots are emptied first. A page marked
 * UNPROT (installed or mapped back without write protection) would always scan as written: it
 * is not scanned, eviction judges it by content, and its change is a swap-out, not a late
 * write.
 * A write-back records the checksum of the bytes sent as its slot's; a failed write leaves
 * the slot's content unknown (checksum reset, pages put back dirty).
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/log.h"

static bool is_write(uint8_t c)
{
    return c == LETHE_EVICT_WRITE || c == LETHE_EVICT_WRITE_LATE;
}

enum lethe_evict_class lethe_evict_classify(uint64_t word, const void *page, uint64_t slot_sum,
                                            uint64_t *sum)
{
    if ((word & LETHE_PTE_DIRTY) || !(word & (LETHE_PTE_FRESH | LETHE_PTE_RVALID))) {
        *sum = lethe_page_checksum(page);
        return LETHE_EVICT_WRITE;
    }
    if (word & LETHE_PTE_FRESH) {
        /* never written by its flags: it must still read as zeros (exact test) */
        if (lethe_page_is_zero(page))
            return LETHE_EVICT_DISCARD;
        *sum = lethe_page_checksum(page);
        return LETHE_EVICT_WRITE_LATE;
    }
    *sum = lethe_page_checksum(page);
    return *sum == slot_sum ? LETHE_EVICT_CLEAN : LETHE_EVICT_WRITE_LATE;
}

static bool lock_shard(struct lethe_shard *s, bool trylock)
{
    if (trylock)
        return lethe_shard_trylock(s);
    lethe_shard_lock(s);
    return true;
}

/* Sorts the first n victims of w by vpn (insertion sort: batches are small and the active
 * tail is often already in order). */
static void sort_by_vpn(struct lethe_worker *w, unsigned n)
{
    for (unsigned i = 1; i < n; i++) {
        uint64_t vpn = w->vpns[i], word = w->words[i];
        uint32_t f = w->frames[i];
        unsigned j = i;
        while (j > 0 && w->vpns[j - 1] > vpn) {
            w->vpns[j] = w->vpns[j - 1];
            w->words[j] = w->words[j - 1];
            w->frames[j] = w->frames[j - 1];
            j--;
        }
        w->vpns[j] = vpn;
        w->words[j] = word;
        w->frames[j] = f;
    }
}

static void sort_u64(uint64_t *a, unsigned n)
{
    for (unsigned i = 1; i < n; i++) {
        uint64_t v = a[i];
        unsigned j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

/* Called with s->lock held: claims up to nr mapped pages from the active tail. */
static unsigned isolate_active(struct lethe *l, struct lethe_shard *s, struct lethe_worker *w,
                               unsigned nr)
{
    lethe_shard_assert_locked(s);
    unsigned n = 0;
    uint32_t budget = lethe_list_count(&s->active);
    uint32_t f = s->active.tail;
    while (f != LETHE_NIL && n < nr && budget-- > 0) {
        uint32_t prev = l->frames[f].prev;
        uint64_t vpn = lethe_frame_vpn(&l->frames[f]);
        struct lethe_pte *p = lethe_pte_of(l, vpn);
        uint64_t wd = lethe_pte_load(p);
        lethe_assert(lethe_pte_state(wd) != LETHE_PS_MAPPED || lethe_pte_frame(wd) == f);
        if (lethe_pte_state(wd) == LETHE_PS_MAPPED) {
            if (wd & LETHE_PTE_REF) {
                /* second chance: it was mapped back from the inactive list since it last
                 * came by here */
                lethe_pte_clear_ref(p);
                lethe_list_move_head(l->frames, &s->active, &s->active, f, LETHE_FL_ACTIVE);
            } else {
                uint64_t out = lethe_pte_with_state(wd, LETHE_PS_OUT) & ~LETHE_PTE_WAITERS;
                if (!lethe_pte_cas(p, &wd, out)) {
                    /* changed under us: look again next time */
                } else if (lethe_pinned(l, vpn)) {
                    /* held by lethe_pin (the kernel reads it): still mapped, give it back */
                    lethe_pte_publish(p, wd);
                    lethe_list_move_head(l->frames, &s->active, &s->active, f, LETHE_FL_ACTIVE);
                } else {
                    lethe_list_remove(l->frames, &s->active, f);
                    w->frames[n] = f;
                    w->vpns[n] = vpn;
                    w->words[n] = out;
                    n++;
                }
            }
        }
        /* IN: a fault is installing it; leave it where it is */
        f = prev;
    }
    return n;
}

/* Said once per process: which page, and what it means. The count is in the stats (held). */
static void report_held(struct lethe *l, uint64_t vpn)
{
    static bool said;
    if (__atomic_exchange_n(&said, true, __ATOMIC_RELAXED))
        return;
    lethe_warn("page 0x%llx (vpn %llu) cannot leave the cache: the program made it %s "
               "(mprotect, mlock); such pages stay resident and count against cache_size while "
               "so (said once; see the held counter)",
               (unsigned long long)(uintptr_t)lethe_region_addr(lethe_rgn(l), vpn),
               (unsigned long long)vpn,
               l->batch_park ? "inaccessible (PROT_NONE) or locked it"
                             : "read-only or locked it");
}

/* Batch parking, thread delivery: the capture of these pages is done; a fault on one of them
 * now waits for it like any fault on an OUT page. Faults being answered with a zero page
 * (lethe_core_fault) finish before the pages are unmapped, so none lands after the unmap. */
static void end_capture(void *arg, const uint64_t *vpns, unsigned n)
{
    struct lethe *l = arg;
    for (unsigned k = 0; k < n; k++)
        __atomic_fetch_and(&lethe_pte_of(l, vpns[k])->word, ~LETHE_PTE_CAPTURE, __ATOMIC_SEQ_CST);
    unsigned spins = 0;
    while (__atomic_load_n(&l->capture_installs, __ATOMIC_SEQ_CST))
        if (++spins > 64)
            sched_yield();
}

int lethe_demote(struct lethe *l, struct lethe_worker *w, unsigned si, unsigned nr, bool trylock)
{
    struct lethe_shard *s = &l->shards[si];
    if (nr > LETHE_MAX_BATCH)
        nr = LETHE_MAX_BATCH;
    if (nr == 0)
        return 0;
    if (!lock_shard(s, trylock))
        return -EBUSY;
    unsigned n = isolate_active(l, s, w, nr);
    lethe_shard_unlock(s);
    if (n == 0)
        return 0;

    sort_by_vpn(w, n);
    for (unsigned i = 0; i < n;) {
        /* An unprotected page would always scan as written: it is not scanned, its content
         * decides at eviction. The others are scanned in runs of consecutive vpns. */
        if (w->words[i] & LETHE_PTE_UNPROT) {
            i++;
            continue;
        }
        unsigned j = i + 1;
        while (j < n && w->vpns[j] == w->vpns[j - 1] + 1 && !(w->words[j] & LETHE_PTE_UNPROT))
            j++;
        int64_t rc = lethe_page_scan_dirty(lethe_rgn(l), w->vpns[i], j - i, w->bitmap);
        for (unsigned k = i; k < j; k++) {
            unsigned b = k - i;
            bool written = rc < 0 || ((w->bitmap[b / 64] >> (b % 64)) & 1);
            if (written)
                w->words[k] =
                    (w->words[k] | LETHE_PTE_DIRTY) & ~(LETHE_PTE_FRESH | LETHE_PTE_RVALID);
        }
        if (rc < 0)
            lethe_warn("dirty scan of pages %llu..%llu failed (%s): treating them as written",
                       (unsigned long long)w->vpns[i], (unsigned long long)w->vpns[j - 1],
                       strerror((int)-rc));
        i = j;
    }
    unsigned got = n;
    if (l->batch_park) {
        /* one capture and one unmap for the batch (one TLB flush), into pool slots */
        got = lethe_park_take(l, w->parks, n);
        for (unsigned k = 0; k < got; k++)
            w->bufs[k] = lethe_region_slot(lethe_rgn(l), w->parks[k]);
        if (l->thread_delivery)
            for (unsigned k = 0; k < got; k++)
                __atomic_fetch_or(&lethe_pte_of(l, w->vpns[k])->word, LETHE_PTE_CAPTURE,
                                  __ATOMIC_SEQ_CST);
        lethe_page_capture_batch(lethe_rgn(l), w->vpns, w->bufs, got, w->status,
                                 l->thread_delivery ? end_capture : NULL, l);
        for (unsigned k = got; k < n; k++)
            w->status[k] = -EAGAIN;
    } else {
        for (unsigned k = 0; k < n; k++)
            w->status[k] = lethe_page_soft_unmap(lethe_rgn(l), w->vpns[k], w->frames[k]);
    }

    unsigned demoted = 0, nfree = 0, held = 0, nback = 0;
    lethe_shard_lock(s);
    for (unsigned k = 0; k < n; k++) {
        struct lethe_pte *p = lethe_pte_of(l, w->vpns[k]);
        uint32_t f = w->frames[k];
        int st = w->status[k];
        if (l->batch_park && k < got) {
            if (st == 0)
                lethe_pte_set_park(p, w->parks[k]);
            else
                w->parks[nback++] = w->parks[k]; /* compacts: nback <= k */
        }
        if (st == 0) {
            lethe_list_push_head(l->frames, &s->inactive, f, LETHE_FL_INACTIVE);
            lethe_pte_publish(p, lethe_pte_with_state(w->words[k], LETHE_PS_PARKED));
            demoted++;
        } else if (st == -ENOENT) {
            /* Nothing was mapped there: the application dropped the page (its release
             * event is on its way or waits for us). Its content is gone. */
            uint64_t slot = lethe_pte_slot(p);
            if (slot != LETHE_NO_SLOT)
                w->newslots[nfree++] = slot;
            lethe_pte_set_slot(p, LETHE_NO_SLOT);
            lethe_frame_free_locked(l, s, f);
            lethe_pte_publish(p, 0);
        } else {
            /* -EAGAIN (mappings changing), -EBUSY (pinned page), -EINVAL (read-only or
             * locked by the application: UFFDIO_MOVE moves only between writable, unlocked
             * ranges): keep it mapped, and try again at its next turn */
            if (st == -EINVAL && held++ == 0) {
                report_held(l, w->vpns[k]);
                lethe_note_protection(l); /* also when the program called mprotect directly */
            } else if (st != -EAGAIN && st != -EBUSY && st != -EINVAL)
                lethe_warn("page %llu: soft-unmap failed: %s", (unsigned long long)w->vpns[k],
                           strerror(-st));
            lethe_list_push_head(l->frames, &s->active, f, LETHE_FL_ACTIVE);
            lethe_pte_publish(p, lethe_pte_with_state(w->words[k], LETHE_PS_MAPPED));
        }
    }
    lethe_shard_unlock(s);
    lethe_park_give(l, w->parks, nback);
    if (nfree)
        lethe_slots_free(&l->slots, w->newslots, nfree);
    LETHE_COUNT(&w->cnt, demotions, demoted);
    LETHE_COUNT(&w->cnt, held, held);
    if (demoted) {
        if (__atomic_load_n(&l->held_streak, __ATOMIC_RELAXED)) /* no shared write if 0 */
            __atomic_store_n(&l->held_streak, 0, __ATOMIC_RELAXED);
    } else if (held) {
        __atomic_fetch_add(&l->held_streak, held, __ATOMIC_RELAXED);
    }
    return (int)demoted;
}

/* Called with s->lock held: claims up to nr parked pages from the inactive tail. */
static unsigned isolate_inactive(struct lethe *l, struct lethe_shard *s, struct lethe_worker *w,
                                 unsigned nr)
{
    lethe_shard_assert_locked(s);
    unsigned n = 0;
    uint32_t budget = lethe_list_count(&s->inactive);
    uint32_t f = s->inactive.tail;
    while (f != LETHE_NIL && n < nr && budget-- > 0) {
        uint32_t prev = l->frames[f].prev;
        uint64_t vpn = lethe_frame_vpn(&l->frames[f]);
        struct lethe_pte *p = lethe_pte_of(l, vpn);
        uint64_t wd = lethe_pte_load(p);
        uint64_t out = lethe_pte_with_state(wd, LETHE_PS_OUT) & ~LETHE_PTE_WAITERS;
        lethe_assert(lethe_pte_state(wd) != LETHE_PS_PARKED || lethe_pte_frame(wd) == f);
        if (lethe_pte_state(wd) == LETHE_PS_PARKED && lethe_pte_cas(p, &wd, out)) {
            lethe_list_remove(l->frames, &s->inactive, f);
            w->frames[n] = f;
            w->vpns[n] = vpn;
            w->words[n] = out;
            n++;
        }
        f = prev;
    }
    return n;
}

/* Puts victims back on the inactive list as they were (the eviction failed). */
static void restore_parked(struct lethe *l, struct lethe_shard *s, struct lethe_worker *w,
                           unsigned n)
{
    lethe_shard_lock(s);
    for (unsigned k = 0; k < n; k++) {
        lethe_list_push_head(l->frames, &s->inactive, w->frames[k], LETHE_FL_INACTIVE);
        lethe_pte_publish(lethe_pte_of(l, w->vpns[k]),
                          lethe_pte_with_state(w->words[k], LETHE_PS_PARKED));
    }
    lethe_shard_unlock(s);
}

/* Puts back on the inactive list the victims that need a new remote slot, and compacts the
 * others to the front of the batch; returns how many are left. */
static unsigned keep_evictable(struct lethe *l, struct lethe_shard *s, struct lethe_worker *w,
                               unsigned n)
{
    unsigned kept = 0;
    lethe_shard_lock(s);
    for (unsigned k = 0; k < n; k++) {
        if (is_write(w->cls[k]) && w->slots[k] == LETHE_NO_SLOT) {
            lethe_list_push_head(l->frames, &s->inactive, w->frames[k], LETHE_FL_INACTIVE);
            lethe_pte_publish(lethe_pte_of(l, w->vpns[k]),
                              lethe_pte_with_state(w->words[k], LETHE_PS_PARKED));
            continue;
        }
        w->frames[kept] = w->frames[k];
        w->vpns[kept] = w->vpns[k];
        w->words[kept] = w->words[k];
        w->cls[kept] = w->cls[k];
        w->slots[kept] = w->slots[k];
        w->sums[kept] = w->sums[k];
        w->bufs[kept] = w->bufs[k];
        kept++;
    }
    lethe_shard_unlock(s);
    return kept;
}

/* Logged at most once a second: reclaim retries (and the rebalancer repeats every cycle)
 * while remote memory stays full. */
static void report_full(struct lethe *l, struct lethe_worker *w)
{
    static uint64_t last_ns;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
    uint64_t prev = __atomic_load_n(&last_ns, __ATOMIC_RELAXED);
    if (prev && now - prev < 1000000000ULL)
        return;
    __atomic_store_n(&last_ns, now, __ATOMIC_RELAXED);
    lethe_warn("page 0x%llx (vpn %llu): cannot write to %s: remote memory is full (%llu slots "
               "in use)",
               (unsigned long long)(uintptr_t)lethe_region_addr(lethe_rgn(l), w->vpns[0]),
               (unsigned long long)w->vpns[0], lethe_transport_describe(l->transport),
               (unsigned long long)lethe_slots_used(&l->slots));
}

int lethe_evict(struct lethe *l, struct lethe_worker *w, unsigned si, unsigned nr, bool trylock,
                uint32_t *keep)
{
    struct lethe_shard *s = &l->shards[si];
    if (nr > LETHE_MAX_BATCH)
        nr = LETHE_MAX_BATCH;
    if (nr == 0)
        return 0;
    if (!lock_shard(s, trylock))
        return -EBUSY;
    unsigned n = isolate_inactive(l, s, w, nr);
    lethe_shard_unlock(s);
    if (n == 0)
        return 0;

    /* Classify, checking the pages we would not write for writes the dirty scan missed.
     * A page written back whose slot a forked child may read leaves it as it is (the child's
     * copy of the page) and takes a fresh one. */
    unsigned need = 0, late = 0, nold = 0;
    for (unsigned k = 0; k < n; k++) {
        uint64_t wd = w->words[k];
        uint64_t slot = lethe_pte_slot(lethe_pte_of(l, w->vpns[k]));
        lethe_assert(!(wd & LETHE_PTE_RVALID) || slot != LETHE_NO_SLOT);
        uint64_t slot_sum =
            (wd & LETHE_PTE_RVALID) && slot != LETHE_NO_SLOT ? lethe_slot_sum(&l->slots, slot) : 0;
        w->bufs[k] = lethe_parked_page(l, w->vpns[k], w->frames[k]);
        enum lethe_evict_class c = lethe_evict_classify(wd, w->bufs[k], slot_sum, &w->sums[k]);
        /* an unprotected page's write is found by content: not late */
        late += c == LETHE_EVICT_WRITE_LATE && !(wd & LETHE_PTE_UNPROT);
        w->cls[k] = (uint8_t)c;
        if (is_write(c) && slot != LETHE_NO_SLOT && lethe_slot_kept(&l->slots, slot)) {
            w->oldslots[nold++] = slot;
            slot = LETHE_NO_SLOT;
        }
        w->slots[k] = slot;
        if (is_write(c) && slot == LETHE_NO_SLOT)
            need++;
    }

    unsigned nw = 0;
    if (need) {
        int rc = lethe_slots_alloc(&l->slots, w->newslots, need);
        if (rc < 0 && lethe_slots_zombies(&l->slots)) {
            lethe_fork_reap(l); /* children that are gone may free what they kept */
            rc = lethe_slots_alloc(&l->slots, w->newslots, need);
        }
        if (rc < 0) {
            /* Remote memory is full: the pages that need a new slot stay parked; the clean
             * and fresh ones can still go. */
            n = keep_evictable(l, s, w, n);
            need = 0;
            nold = 0; /* the pages that would have left them stay, with their old slots */
            if (n == 0) {
                report_full(l, w);
                return rc;
            }
        } else {
            unsigned next = 0;
            for (unsigned k = 0; k < n; k++)
                if (is_write(w->cls[k]) && w->slots[k] == LETHE_NO_SLOT)
                    w->slots[k] = w->newslots[next++];
        }
    }
    for (unsigned k = 0; k < n; k++) {
        if (!is_write(w->cls[k]))
            continue;
        w->wslots[nw] = w->slots[k];
        w->pages[nw] = w->bufs[k];
        nw++;
    }
    if (nw) {
        int rc = lethe_channel_write_batch(w->ch, w->wslots, w->pages, nw);
        if (rc < 0) {
            unsigned k = 0;
            while (!is_write(w->cls[k]))
                k++;
            lethe_error("page 0x%llx (vpn %llu): cannot write to %s",
                        (unsigned long long)(uintptr_t)lethe_region_addr(lethe_rgn(l), w->vpns[k]),
                        (unsigned long long)w->vpns[k], lethe_channel_error(w->ch));
            /* Part of the batch may have reached its slots: their content is unknown now, and
             * the pages are dirty whatever their flags said (reset before the new slots are
             * freed: a freed slot may be someone else's at once). */
            for (k = 0; k < n; k++) {
                if (!is_write(w->cls[k]))
                    continue;
                lethe_slot_set_sum(&l->slots, w->slots[k], 0);
                w->words[k] =
                    (w->words[k] | LETHE_PTE_DIRTY) & ~(LETHE_PTE_FRESH | LETHE_PTE_RVALID);
            }
            if (need)
                lethe_slots_free(&l->slots, w->newslots, need);
            restore_parked(l, s, w, n);
            return rc;
        }
    }

    /* The remote side is done: publish, then empty the parking slots, then free the frames. */
    unsigned nfree = 0, outs = 0, cleans = 0, discards = 0;
    for (unsigned k = 0; k < n; k++) {
        struct lethe_pte *p = lethe_pte_of(l, w->vpns[k]);
        if (l->batch_park) {
            w->parks[k] = lethe_pte_park(p);
            lethe_pte_set_park(p, LETHE_NO_PARK);
        }
        switch (w->cls[k]) {
        case LETHE_EVICT_WRITE:
        case LETHE_EVICT_WRITE_LATE:
            lethe_slot_set_sum(&l->slots, w->slots[k], w->sums[k]);
            lethe_slot_stamp(&l->slots, w->slots[k]);
            lethe_pte_set_slot(p, w->slots[k]);
            lethe_pte_publish(p, lethe_pte_make(LETHE_PS_REMOTE, LETHE_PTE_RVALID, 0));
            outs++;
            break;
        case LETHE_EVICT_CLEAN:
            lethe_pte_publish(p, lethe_pte_make(LETHE_PS_REMOTE, LETHE_PTE_RVALID, 0));
            cleans++;
            break;
        default:
            if (w->slots[k] != LETHE_NO_SLOT)
                w->newslots[nfree++] = w->slots[k];
            lethe_pte_set_slot(p, LETHE_NO_SLOT);
            lethe_pte_publish(p, 0);
            discards++;
            break;
        }
        w->frames64[k] = w->frames[k];
    }
    int rc = 0;
    if (l->batch_park) {
        /* the pool's slots keep their memory: the next capture overwrites it */
        lethe_park_give(l, w->parks, n);
    } else if (l->recycle) {
        /* the pages stay in their slots, for the next pages installed in these frames */
        for (unsigned k = 0; k < n; k++)
            l->slot_full[w->frames[k]] = 1;
    } else {
        sort_u64(w->frames64, n);
        rc = lethe_page_drop_slots(lethe_rgn(l), w->frames64, n);
    }
    if (rc < 0)
        lethe_error("cannot drop %u parking slots: %s", n, strerror(-rc));
    if (nfree)
        lethe_slots_free(&l->slots, w->newslots, nfree);
    if (nold) /* kept while a forked child may read them (zombies) */
        lethe_slots_free(&l->slots, w->oldslots, nold);

    lethe_shard_lock(s);
    for (unsigned k = 0; k < n; k++) {
        if (keep && *keep == LETHE_NIL) {
            *keep = w->frames[k]; /* isolated, handed to the caller */
            continue;
        }
        lethe_frame_free_locked(l, s, w->frames[k]);
    }
    lethe_shard_unlock(s);

    LETHE_COUNT(&w->cnt, swap_outs, outs);
    LETHE_COUNT(&w->cnt, clean_drops, cleans);
    LETHE_COUNT(&w->cnt, fresh_discards, discards);
    LETHE_COUNT(&w->cnt, late_writes, late);
    LETHE_COUNT(&w->cnt, remote_gain, outs + cleans);
    return (int)n;
}
