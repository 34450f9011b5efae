/* frame.c — taking and giving back frames, and resizing the cache.
 *
 * Frames [0, frames_target) start on the shard freelists, round-robin; the frame table and
 * the parking area are sized for LETHE_CACHE_GROWTH times the initial cache (never more than
 * the region's pages), so the cache can grow at run time without moving anything. Shrinking
 * sets a retire debt: every frame given back while the debt is positive is retired instead
 * of freed, and lethe_cache_resize pays the debt down at once from the freelists and by
 * evicting. A vCPU that takes a frame links it at the head of its page's active list in the
 * same critical section, so a fault costs one shard lock when a frame is free.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/log.h"
#include "rebalancer/rebalancer.h"

static bool take_debt(struct lethe *l)
{
    int64_t d = __atomic_load_n(&l->retire_debt, __ATOMIC_RELAXED);
    while (d > 0) {
        if (__atomic_compare_exchange_n(&l->retire_debt, &d, d - 1, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return true;
    }
    return false;
}

static void retire(struct lethe *l, uint32_t f)
{
    /* A frame out of service holds no memory. This is a kernel call under the shard lock, on
     * the cache-shrink path only. */
    lethe_frame_empty_slot(l, f);
    pthread_mutex_lock(&l->retire_lock);
    lethe_list_push_head(l->frames, &l->retired, f, LETHE_FL_RETIRED);
    pthread_mutex_unlock(&l->retire_lock);
}

/* Called with s->lock held. */
void lethe_frame_free_locked(struct lethe *l, struct lethe_shard *s, uint32_t f)
{
    lethe_shard_assert_locked(s);
    lethe_assert(lethe_frame_list(&l->frames[f]) == LETHE_FL_ISOLATED);
    if (__atomic_load_n(&l->retire_debt, __ATOMIC_RELAXED) > 0 && take_debt(l)) {
        retire(l, f);
        return;
    }
    lethe_list_push_head(l->frames, &s->free, f, LETHE_FL_FREE);
}

/* Called with s->lock held. A cold page goes to the tail of the active list, the next to be
 * demoted: it must be touched again while parked to stay. */
static void link_active(struct lethe *l, struct lethe_shard *s, uint32_t f, uint64_t vpn, bool cold)
{
    lethe_shard_assert_locked(s);
    lethe_frame_set(&l->frames[f], vpn, LETHE_FL_ISOLATED);
    if (cold)
        lethe_list_push_tail(l->frames, &s->active, f, LETHE_FL_ACTIVE);
    else
        lethe_list_push_head(l->frames, &s->active, f, LETHE_FL_ACTIVE);
}

uint32_t lethe_frame_take_any(struct lethe *l)
{
    for (unsigned i = 0; i < l->nshards; i++) {
        struct lethe_shard *t = &l->shards[i];
        if (lethe_list_count(&t->free) == 0)
            continue;
        lethe_shard_lock(t);
        uint32_t f = lethe_list_pop_head(l->frames, &t->free);
        lethe_shard_unlock(t);
        if (f != LETHE_NIL)
            return f;
    }
    return LETHE_NIL;
}

/* Takes a free frame for vpn without reclaiming: the page's shard freelist, else another
 * shard's. Returns the frame, isolated, or LETHE_NIL; *linked says whether it is already
 * on the page's active list (taken from its own shard). */
static uint32_t take_free(struct lethe *l, uint64_t vpn, bool cold, bool *linked)
{
    unsigned si = lethe_shard_of(l, vpn);
    struct lethe_shard *s = &l->shards[si];
    uint32_t f = LETHE_NIL;
    *linked = false;
    if (lethe_list_count(&s->free) > 0) {
        lethe_shard_lock(s);
        f = lethe_list_pop_head(l->frames, &s->free);
        if (f != LETHE_NIL) {
            link_active(l, s, f, vpn, cold);
            lethe_shard_unlock(s);
            *linked = true;
            return f;
        }
        lethe_shard_unlock(s);
    }
    for (unsigned i = 1; i < l->nshards && f == LETHE_NIL; i++) {
        struct lethe_shard *t = &l->shards[(si + i) % l->nshards];
        if (lethe_list_count(&t->free) == 0)
            continue;
        lethe_shard_lock(t);
        f = lethe_list_pop_head(l->frames, &t->free);
        lethe_shard_unlock(t);
    }
    return f;
}

bool lethe_frame_try_get(struct lethe *l, uint64_t vpn, uint32_t *out)
{
    bool linked;
    uint32_t f = take_free(l, vpn, false, &linked);
    if (f == LETHE_NIL)
        return false;
    if (!linked) {
        struct lethe_shard *s = &l->shards[lethe_shard_of(l, vpn)];
        lethe_shard_lock(s);
        link_active(l, s, f, vpn, false);
        lethe_shard_unlock(s);
    }
    *out = f;
    return true;
}

int lethe_frame_get(struct lethe *l, struct lethe_worker *w, uint64_t vpn, bool cold, uint32_t *out)
{
    unsigned si = lethe_shard_of(l, vpn);
    struct lethe_shard *s = &l->shards[si];
    bool linked;
    uint32_t f = take_free(l, vpn, cold, &linked);
    if (linked) {
        *out = f;
        return 0;
    }
    if (f == LETHE_NIL) {
        if (!__atomic_load_n(&l->cache_filled, __ATOMIC_RELAXED))
            __atomic_store_n(&l->cache_filled, true, __ATOMIC_RELAXED);
        int rc = lethe_reclaim(l, w, si, &f);
        if (rc < 0)
            return rc;
    }
    lethe_shard_lock(s);
    link_active(l, s, f, vpn, cold);
    lethe_shard_unlock(s);
    *out = f;
    return 0;
}

unsigned lethe_park_take(struct lethe *l, uint32_t *out, unsigned n)
{
    struct lethe_region *r = lethe_rgn(l);
    unsigned got = 0;
    pthread_mutex_lock(&l->park_lock);
    while (got < n && l->park_free) {
        uint32_t b = l->park_free - 1;
        l->park_free = *(const uint32_t *)lethe_region_slot(r, b);
        out[got++] = b;
    }
    while (got < n && l->park_bump < l->frame_cap)
        out[got++] = l->park_bump++;
    pthread_mutex_unlock(&l->park_lock);
    return got;
}

void lethe_park_give(struct lethe *l, const uint32_t *slots, unsigned n)
{
    if (n == 0)
        return;
    struct lethe_region *r = lethe_rgn(l);
    pthread_mutex_lock(&l->park_lock);
    for (unsigned i = 0; i < n; i++) {
        *(uint32_t *)lethe_region_slot(r, slots[i]) = l->park_free;
        l->park_free = slots[i] + 1;
    }
    pthread_mutex_unlock(&l->park_lock);
}

void *lethe_parked_page(struct lethe *l, uint64_t vpn, uint32_t f)
{
    if (!l->batch_park)
        return lethe_region_slot(lethe_rgn(l), f);
    uint32_t b = lethe_pte_park(lethe_pte_of(l, vpn));
    lethe_assert(b != LETHE_NO_PARK);
    return lethe_region_slot(lethe_rgn(l), b);
}

void lethe_park_release(struct lethe *l, struct lethe_pte *p)
{
    if (!l->batch_park)
        return;
    uint32_t b = lethe_pte_park(p);
    if (b == LETHE_NO_PARK)
        return;
    lethe_pte_set_park(p, LETHE_NO_PARK);
    lethe_park_give(l, &b, 1);
}

int lethe_frame_install(struct lethe *l, struct lethe_worker *w, uint32_t f, uint64_t vpn,
                        const void *src, uint64_t *flags)
{
    if (l->batch_park) {
        /* by copy, unprotected: the page is judged by content at eviction */
        if (!src)
            return lethe_page_install_zero(lethe_rgn(l), vpn);
        int rc = lethe_page_install_unprotected(lethe_rgn(l), vpn, src);
        if (rc == 0)
            *flags |= LETHE_PTE_UNPROT;
        return rc;
    }
    if (!l->slot_full[f])
        return src ? lethe_page_install(lethe_rgn(l), vpn, src)
                   : lethe_page_install_zero(lethe_rgn(l), vpn);
    int rc = lethe_page_install_recycled(lethe_rgn(l), vpn, f, src);
    if (rc == 0 || rc == -EEXIST)
        l->slot_full[f] = 0;
    if (rc == 0) {
        *flags |= LETHE_PTE_UNPROT;
        LETHE_COUNT(&w->cnt, recycled, 1);
    }
    return rc;
}

void lethe_frame_empty_slot(struct lethe *l, uint32_t f)
{
    if (!l->slot_full[f])
        return;
    int rc = lethe_page_drop_slot(lethe_rgn(l), f);
    if (rc < 0)
        lethe_error("cannot drop parking slot %u: %s", f, strerror(-rc));
    l->slot_full[f] = 0;
}

uint64_t lethe_free_frames(const struct lethe *l)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < l->nshards; i++)
        n += lethe_list_count(&l->shards[i].free);
    return n;
}

/* Well above the most the rebalancer keeps free: a frame spent now cannot make a fault
 * reclaim soon. */
bool lethe_frames_plentiful(struct lethe *l, uint64_t extra)
{
    uint64_t reserve = lethe_load64(&l->frames_target) * l->cfg.reserve_pct / 100;
    return lethe_free_frames(l) >= 2 * reserve + l->batch + extra;
}

static void grow(struct lethe *l, uint64_t n)
{
    /* Cancel what a previous shrink has not retired yet. */
    int64_t d = __atomic_load_n(&l->retire_debt, __ATOMIC_RELAXED);
    while (n > 0 && d > 0) {
        int64_t take = (uint64_t)d < n ? d : (int64_t)n;
        if (__atomic_compare_exchange_n(&l->retire_debt, &d, d - take, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            n -= (uint64_t)take;
    }
    unsigned next_shard = 0;
    while (n > 0) {
        uint32_t batch[64];
        unsigned k = 0;
        pthread_mutex_lock(&l->retire_lock);
        while (k < 64 && k < n) {
            uint32_t f = lethe_list_pop_head(l->frames, &l->retired);
            if (f == LETHE_NIL && l->frames_hw < l->frame_cap)
                f = l->frames_hw++;
            if (f == LETHE_NIL)
                break;
            batch[k++] = f;
        }
        pthread_mutex_unlock(&l->retire_lock);
        if (k == 0)
            break;
        for (unsigned i = 0; i < k; i++) {
            struct lethe_shard *s = &l->shards[next_shard++ % l->nshards];
            lethe_shard_lock(s);
            lethe_frame_set(&l->frames[batch[i]], 0, LETHE_FL_ISOLATED);
            lethe_list_push_head(l->frames, &s->free, batch[i], LETHE_FL_FREE);
            lethe_shard_unlock(s);
        }
        n -= k;
    }
}

/* Pays the retire debt from the freelists; returns whether any was paid. */
static bool retire_free(struct lethe *l)
{
    bool paid = false;
    for (unsigned i = 0; i < l->nshards; i++) {
        struct lethe_shard *s = &l->shards[i];
        lethe_shard_lock(s);
        while (lethe_list_count(&s->free) > 0 && take_debt(l)) {
            retire(l, lethe_list_pop_head(l->frames, &s->free));
            paid = true;
        }
        lethe_shard_unlock(s);
        if (__atomic_load_n(&l->retire_debt, __ATOMIC_RELAXED) <= 0)
            break;
    }
    return paid;
}

static void shrink(struct lethe *l, uint64_t n)
{
    __atomic_fetch_add(&l->retire_debt, (int64_t)n, __ATOMIC_RELAXED);
    struct lethe_worker *w = &l->workers[l->vcpus + 1];
    unsigned idle_rounds = 0;
    while (__atomic_load_n(&l->retire_debt, __ATOMIC_RELAXED) > 0) {
        bool progress = retire_free(l);
        int64_t debt = __atomic_load_n(&l->retire_debt, __ATOMIC_RELAXED);
        if (debt <= 0)
            break;
        pthread_mutex_lock(&l->control_lock);
        for (unsigned i = 0; i < l->nshards && debt > 0; i++) {
            unsigned nr = debt < (int64_t)l->batch ? (unsigned)debt : l->batch;
            int got = lethe_evict(l, w, i, nr, false, NULL);
            if (got == 0)
                got = lethe_demote(l, w, i, nr, false) > 0 ? lethe_evict(l, w, i, nr, false, NULL)
                                                           : 0;
            if (got > 0) {
                progress = true;
                LETHE_COUNT(&w->cnt, proactive_evictions, (uint64_t)got);
            } else if (got < 0) {
                break;
            }
            debt = __atomic_load_n(&l->retire_debt, __ATOMIC_RELAXED);
        }
        pthread_mutex_unlock(&l->control_lock);
        if (progress) {
            idle_rounds = 0;
            continue;
        }
        /* Every page is in flight or the transport fails: the debt is paid later, as frames
         * come back through lethe_frame_free_locked. */
        if (++idle_rounds > 200) {
            lethe_warn("cache shrink: %lld frames still to retire; they are retired as they "
                       "are freed",
                       (long long)__atomic_load_n(&l->retire_debt, __ATOMIC_RELAXED));
            break;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

int lethe_cache_resize(struct lethe *l, uint64_t frames)
{
    if (frames < LETHE_MIN_FRAMES || frames > l->frame_cap)
        return -EINVAL;
    pthread_mutex_lock(&l->resize_lock);
    lethe_op_begin(l);
    uint64_t cur = lethe_load64(&l->frames_target);
    lethe_store64(&l->frames_target, frames);
    if (frames > cur)
        grow(l, frames - cur);
    else if (frames < cur)
        shrink(l, cur - frames);
    lethe_op_end(l);
    pthread_mutex_unlock(&l->resize_lock);
    return 0;
}
