/* direct.c — reclaim in the fault path (reclaim = direct, and the rebalancer mode's reactive
 * evictions), after Linux's pre-MGLRU reclaim.
 *
 * A vCPU that finds no free frame shrinks the inactive list of its page's shard from the tail,
 * one batch (reclaim_batch pages), keeping one freed frame for itself and putting the rest on
 * the shard's freelist. Before that it refills the inactive list from the active tail when the
 * inactive list is short of inactive_pct of the shard's resident pages plus one batch, so that
 * a demoted page stays parked for a while — and gets its chance to be mapped back — before it
 * reaches the inactive tail. Refill gives referenced pages (mapped back since they were last
 * looked at) a second chance: REF cleared, back to the active head. A shard with nothing to
 * evict sends the vCPU on to the next shard. When remote memory is full, dirty pages without a
 * slot stay parked and reclaim keeps demoting until a clean or fresh page comes by; it fails
 * only once every resident page has had its turn. The shard lock is held only to pick victims and
 * to put frames back (lethe_demote / lethe_evict), never across I/O, so several vCPUs reclaim
 * at once, each from its own batch of victims.
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <time.h>

#include "core/log.h"
#include "rebalancer/rebalancer.h"

/* One batch from shard si. `starved`: the last batch here found only dirty pages that
 * remote memory has no room for; demote a batch anyway so that other pages (clean or fresh
 * ones, which need no slot) reach the inactive tail. */
static int reclaim_shard(struct lethe *l, struct lethe_worker *w, unsigned si, bool starved,
                         uint32_t *out)
{
    struct lethe_shard *s = &l->shards[si];
    uint64_t act = lethe_list_count(&s->active), inact = lethe_list_count(&s->inactive);
    uint64_t target = (act + inact) * l->cfg.inactive_pct / 100 + l->batch;
    uint64_t want = inact < target ? target - inact : starved ? l->batch : 0;
    /* Under batch parking a demotion costs one TLB flush whatever its size (up to a capture
     * chunk): a refill takes LETHE_BG_BATCH pages at once, so that it comes once every
     * LETHE_BG_BATCH / reclaim_batch reclaims instead of every one */
    unsigned chunk = l->batch;
    if (l->batch_park && want > 0 && chunk < LETHE_BG_BATCH) {
        chunk = LETHE_BG_BATCH;
        if (want < chunk)
            want = chunk;
    }
    while (want > 0) {
        int d = lethe_demote(l, w, si, want < chunk ? (unsigned)want : chunk, false);
        if (d <= 0)
            break;
        want -= (uint64_t)d < want ? (uint64_t)d : want;
    }
    return lethe_evict(l, w, si, l->batch, false, out);
}

int lethe_reclaim(struct lethe *l, struct lethe_worker *w, unsigned si, uint32_t *out)
{
    *out = LETHE_NIL;
    /* With remote memory full, every resident page passes the inactive tail within this many
     * rounds; if none of them could go, the fault fails. */
    uint64_t full_rounds = lethe_load64(&l->frames_target) / l->batch + 4, full = 0;
    for (unsigned round = 0;; round++) {
        int err = 0;
        for (unsigned i = 0; i < l->nshards; i++) {
            int n = reclaim_shard(l, w, (si + i) % l->nshards, full > 0, out);
            if (n == -ENOSPC) { /* remote memory full: try other pages, other shards */
                err = n;
                continue;
            }
            if (n < 0)
                return n;
            if (n > 0) {
                LETHE_COUNT(&w->cnt, reactive_evictions, (uint64_t)n);
                lethe_rebalancer_kick(l);
            }
            if (*out != LETHE_NIL)
                return 0;
        }
        /* Nothing evictable: other threads hold every resident page in flight, or have
         * just freed frames. */
        uint32_t f = lethe_frame_take_any(l);
        if (f != LETHE_NIL) {
            *out = f;
            return 0;
        }
        /* Every resident page refused, several times over, since anything was demoted: the
         * program holds the whole cache read-only or locked. Waiting would never end. */
        uint64_t frames = lethe_load64(&l->frames_target);
        if (__atomic_load_n(&l->held_streak, __ATOMIC_RELAXED) > 4 * frames) {
            lethe_error("vCPU %u: no page can leave the cache: the program made all %llu "
                        "resident pages %s (mprotect, mlock); cache_size is too small for what "
                        "it holds so",
                        w->id, (unsigned long long)frames,
                        l->batch_park ? "inaccessible (PROT_NONE) or locked them"
                                      : "read-only or locked them");
            return -ENOMEM;
        }
        if (err) {
            if (++full > full_rounds) {
                lethe_error("vCPU %u: no frame to evict into: remote memory (%s) is full and "
                            "no resident page is clean",
                            w->id, lethe_transport_describe(l->transport));
                return err;
            }
            continue;
        }
        full = 0;
        if (round == 5000)
            lethe_warn("vCPU %u: no frame to reclaim for a while (every resident page is in "
                       "flight; cache_size may be too small for %u vCPUs)",
                       w->id, l->vcpus);
        if (round < 16) {
            sched_yield();
        } else {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}
