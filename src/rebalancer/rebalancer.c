/* rebalancer.c — the background rebalancer (reclaim = rebalancer), Lethe's counterpart of
 * memcached's LRU maintainer: it keeps the lists in shape and frees frames ahead of the
 * faults that need them, so that a fault finds a free frame and touches one list once.
 *
 * It starts working the first time a fault finds no free frame (cache_filled): until then
 * the program fits in the cache, and ageing or evicting ahead of time would only cost it
 * faults. From then on, each cycle visits the shards in a freshly shuffled order. A shard
 * whose lock is taken (pthread_mutex_trylock fails) is skipped for this cycle (shard_skips):
 * a vCPU is working there, and the next cycle comes soon. In a shard it visits it
 *  - in a cycle with frames to free, demotes (soft-unmaps) pages from the active tail until
 *    the inactive list holds inactive_pct of the shard's resident pages plus its share of
 *    the evictions: aging costs the program a soft fault for each demoted page it still
 *    uses, so the lists are refilled only when pages must go — and
 *  - reaps: while the free frames (all shards) are below the reserve target, it evicts from
 *    the inactive tail an even share of what is still missing of the deficit measured at
 *    the start of the cycle (proactive evictions); a shard that cannot give its share
 *    leaves it to the next ones.
 * The reserve target adapts (reserve_target below): twice the frames the faults would take
 * in one period at the rate they took them since the last cycle, between two batches per
 * vCPU and reserve_pct of the frames.
 * Promotion needs no pass of its own: a parked page touched by the application faults, and
 * the fault moves it to the active head (swap.c).
 *
 * Between cycles it sleeps `period`, which the AIMD controller (aimd.h) adapts to the
 * reactive evictions the vCPUs counted since the previous cycle. A vCPU that had to evict
 * reactively also kicks it awake at once (a futex on l->kick), so under pressure cycles run
 * back to back while the period shrinks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "rebalancer/rebalancer.h"

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

void lethe_rebalancer_kick(struct lethe *l)
{
    if (!__atomic_load_n(&l->rebalancer_running, __ATOMIC_RELAXED))
        return;
    if (__atomic_load_n(&l->kick, __ATOMIC_RELAXED))
        return;
    if (__atomic_exchange_n(&l->kick, 1, __ATOMIC_RELEASE) == 0)
        syscall(SYS_futex, &l->kick, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void rebalancer_sleep(struct lethe *l, uint64_t us)
{
    if (__atomic_exchange_n(&l->kick, 0, __ATOMIC_ACQUIRE))
        return;
    struct timespec ts = {.tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000};
    syscall(SYS_futex, &l->kick, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
    __atomic_store_n(&l->kick, 0, __ATOMIC_RELAXED);
}

/* The rebalancer works off the fault path, so under batch parking it takes whole capture
 * chunks at a time (one TLB flush per 64 pages demoted); a fault's own reclaim keeps
 * reclaim_batch, which bounds what one fault waits for. */
static unsigned rebalancer_batch(const struct lethe *l)
{
    return l->batch_park && l->batch < LETHE_BG_BATCH ? LETHE_BG_BATCH : l->batch;
}

/* One shard's visit; returns false when its lock was found taken. *reaped counts the
 * proactive evictions. */
static bool visit(struct lethe *l, struct lethe_worker *w, unsigned si, bool age, uint64_t reap,
                  uint64_t *reaped)
{
    struct lethe_shard *s = &l->shards[si];
    if (!lethe_shard_trylock(s))
        return false;
    uint64_t act = lethe_list_count(&s->active), inact = lethe_list_count(&s->inactive);
    lethe_shard_unlock(s);

    uint64_t want_inactive = age ? (act + inact) * l->cfg.inactive_pct / 100 + reap : 0;
    uint64_t demote = want_inactive > inact ? want_inactive - inact : 0;
    unsigned batch = rebalancer_batch(l);
    while (demote > 0) {
        int d = lethe_demote(l, w, si, demote < batch ? (unsigned)demote : batch, true);
        if (d == -EBUSY)
            return false;
        if (d <= 0)
            break;
        demote -= (uint64_t)d < demote ? (uint64_t)d : demote;
    }
    while (reap > 0) {
        int e = lethe_evict(l, w, si, reap < batch ? (unsigned)reap : batch, true, NULL);
        if (e == -EBUSY)
            return false;
        if (e <= 0)
            break; /* nothing parked here, or the transport failed (logged) */
        LETHE_COUNT(&w->cnt, proactive_evictions, (uint64_t)e);
        *reaped += (uint64_t)e;
        reap -= (uint64_t)e < reap ? (uint64_t)e : reap;
    }
    return true;
}

/* Frames the faults have taken so far: first touches, pages filled around them, swap-ins. */
static uint64_t frames_taken(const struct lethe *l)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < l->vcpus; i++) {
        const struct lethe_counters *c = &l->workers[i].cnt;
        n += lethe_load64(&c->demand_zero) + lethe_load64(&c->prefilled) +
             lethe_load64(&c->swap_ins);
    }
    return n;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The free frames to aim at: what the faults will take before the next cycle, twice over
 * (the rate they took frames at since the last cycle, times the period), at least two
 * batches per vCPU, at most reserve_pct of the frames. A program that outgrows the cache a
 * little takes few frames, so little is evicted ahead of it; one that thrashes gets the
 * whole reserve. */
static uint64_t reserve_target(struct lethe *l, uint64_t frames)
{
    uint64_t most = frames * l->cfg.reserve_pct / 100;
    uint64_t least = 2ULL * l->batch * l->vcpus;
    uint64_t taken = frames_taken(l), when = now_ns();
    uint64_t want = most;
    if (l->rb_when_ns != 0 && when > l->rb_when_ns) {
        double rate = (double)(taken - l->rb_taken) / (double)(when - l->rb_when_ns);
        want = (uint64_t)(2.0 * rate * (double)lethe_load64(&l->period_us) * 1000.0);
    }
    l->rb_taken = taken;
    l->rb_when_ns = when;
    if (want < least)
        want = least;
    return want < most ? want : most;
}

void lethe_rebalancer_cycle(struct lethe *l, struct lethe_worker *w)
{
    unsigned n = l->nshards;
    uint32_t *order = l->shard_order;
    for (unsigned i = 0; i < n; i++)
        order[i] = i;
    for (unsigned i = n; i > 1; i--) {
        unsigned j = (unsigned)(xorshift(&w->rng) % i);
        uint32_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    if (!__atomic_load_n(&l->cache_filled, __ATOMIC_RELAXED)) {
        /* Until a fault has once found no free frame, the program fits: nothing to age or
         * to evict ahead of time (a program that fits is never slowed down by the reserve). */
        lethe_store64(&l->rebalancer_cycles, lethe_load64(&l->rebalancer_cycles) + 1);
        return;
    }
    uint64_t frames = lethe_load64(&l->frames_target);
    uint64_t reserve = reserve_target(l, frames);
    lethe_store64(&l->reserve_target, reserve);
    uint64_t free_frames = lethe_free_frames(l);
    uint64_t deficit = reserve > free_frames ? reserve - free_frames : 0;
    /* Aging costs the application a soft fault per demoted page it still uses: the lists
     * are refilled only in cycles that have frames to free, as direct reclaim refills them
     * only when it evicts. */
    bool age = deficit > 0;
    uint64_t skips = 0, reaped = 0;
    for (unsigned i = 0; i < n; i++) {
        /* an even share of what is still missing: a shard with too little to evict leaves
         * its share to the shards after it */
        uint64_t left = deficit > reaped ? deficit - reaped : 0;
        uint64_t quota = (left + (n - i) - 1) / (n - i);
        if (!visit(l, w, order[i], age, quota, &reaped))
            skips++;
    }
    lethe_store64(&l->shard_skips, lethe_load64(&l->shard_skips) + skips);
    lethe_store64(&l->rebalancer_cycles, lethe_load64(&l->rebalancer_cycles) + 1);
}

static uint64_t reactive_total(const struct lethe *l)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < l->vcpus; i++)
        n += lethe_load64(&l->workers[i].cnt.reactive_evictions);
    return n;
}

static void *rebalancer_main(void *arg)
{
    struct lethe *l = arg;
    lethe_log_set_role("rebalancer");
    struct lethe_worker *w = &l->workers[l->vcpus];
    struct lethe_aimd_state st;
    lethe_aimd_init(&l->aimd, &st);
    lethe_store64(&l->period_us, st.period_us);
    uint64_t last = reactive_total(l);
    while (!__atomic_load_n(&l->stopping, __ATOMIC_ACQUIRE)) {
        rebalancer_sleep(l, st.period_us);
        if (__atomic_load_n(&l->stopping, __ATOMIC_ACQUIRE))
            break;
        uint64_t now = reactive_total(l);
        lethe_aimd_next(&l->aimd, &st, now - last);
        last = now;
        lethe_store64(&l->period_us, st.period_us);
        lethe_store64(&l->pressure_events, st.pressure_events);
        lethe_store64(&l->relax_events, st.relax_events);
        lethe_op_begin(l);
        lethe_rebalancer_cycle(l, w);
        lethe_op_end(l);
    }
    return NULL;
}

int lethe_rebalancer_start(struct lethe *l)
{
    lethe_aimd_params_from_config(&l->cfg, &l->aimd);
    __atomic_store_n(&l->stopping, false, __ATOMIC_RELAXED);
    __atomic_store_n(&l->rebalancer_running, true, __ATOMIC_RELEASE);
    int rc = pthread_create(&l->rebalancer, NULL, rebalancer_main, l);
    if (rc != 0) {
        __atomic_store_n(&l->rebalancer_running, false, __ATOMIC_RELAXED);
        lethe_error("cannot start the rebalancer thread: %s", strerror(rc));
        return -rc;
    }
    pthread_setname_np(l->rebalancer, "lethe-rebal"); /* named before start returns */
    return 0;
}

void lethe_rebalancer_stop(struct lethe *l)
{
    if (!__atomic_load_n(&l->rebalancer_running, __ATOMIC_ACQUIRE))
        return;
    __atomic_store_n(&l->stopping, true, __ATOMIC_RELEASE);
    __atomic_store_n(&l->kick, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &l->kick, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    pthread_join(l->rebalancer, NULL);
    __atomic_store_n(&l->rebalancer_running, false, __ATOMIC_RELAXED);
}
