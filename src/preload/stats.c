/* stats.c — the stats thread of liblethe.so: publishes the runtime's counters to the shared
 * stats segment (core/stats_shm.h) and applies the cache size requests lethed posts there.
 *
 * Every 20 ms the thread looks for a request (and applies it with lethe_set_cache_size());
 * every 100 ms it publishes a snapshot: lethe_get_stats(), the per-shard stats and the
 * active paths. The fault path is never involved: it only bumps its per-vCPU counters.
 * At exit the thread that runs exit() publishes once more (state EXITED) and publications
 * stop. A forked child never publishes: the segment belongs to the parent.
 *
 * The snapshot buffer is allocated outside the region and guarded by publish_lock, which
 * the stats thread and the exiting thread take around collect + publish.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/stats_shm.h"
#include "preload/preload.h"

#define TICK_MS          20
#define TICKS_PER_UPDATE 5

static struct lethe_stats_shm *segment;
static struct lethe_stats_snapshot *snap;
static pthread_mutex_t publish_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t started_ns;
static bool finished;  /* final snapshot written: no more publications (publish_lock) */
static bool forgotten; /* forked child: never touch the segment again */

int stats_attach(const char *spec)
{
    struct lethe_stats_shm *s;
    int rc = lethe_stats_shm_attach(spec, &s);
    if (rc < 0)
        return rc;
    snap = heap_runtime_alloc(sizeof(*snap));
    if (!snap) {
        lethe_stats_shm_detach(s);
        return -ENOMEM;
    }
    memset(snap, 0, sizeof(*snap));
    lethe_stats_shm_claim_writer(s);
    segment = s;
    return 0;
}

void stats_report_failure(const char *why)
{
    if (!segment)
        return;
    pthread_mutex_lock(&publish_lock);
    memset(snap, 0, offsetof(struct lethe_stats_snapshot, shards));
    snap->state = LETHE_STATS_FAILED;
    snap->pid = (uint64_t)getpid();
    snprintf(snap->error, sizeof(snap->error), "%s", why);
    lethe_stats_shm_publish(segment, snap);
    finished = true;
    pthread_mutex_unlock(&publish_lock);
}

/* Called with publish_lock held. */
static void collect_and_publish(struct lethe *l, enum lethe_stats_state state)
{
    snap->state = state;
    snap->pid = (uint64_t)getpid();
    snap->started_ns = started_ns;
    lethe_get_stats(l, &snap->stats);
    snap->cache_size = snap->stats.frames * LETHE_PAGE_SIZE;
    unsigned n = lethe_shard_count(l);
    if (n > LETHE_MAX_SHARDS)
        n = LETHE_MAX_SHARDS;
    for (unsigned i = 0; i < n; i++)
        lethe_get_shard_stats(l, i, &snap->shards[i]);
    snap->nshards = n;
    snprintf(snap->paths, sizeof(snap->paths), "%s", lethe_paths(l));
    snap->error[0] = '\0';
    lethe_stats_shm_publish(segment, snap);
}

static void publish(struct lethe *l, enum lethe_stats_state state)
{
    pthread_mutex_lock(&publish_lock);
    if (!finished && !__atomic_load_n(&forgotten, __ATOMIC_RELAXED)) {
        collect_and_publish(l, state);
        if (state == LETHE_STATS_EXITED)
            finished = true;
    }
    pthread_mutex_unlock(&publish_lock);
}

static void serve_request(struct lethe *l)
{
    uint64_t ticket, bytes;
    if (!lethe_stats_shm_take_request(segment, &ticket, &bytes))
        return;
    int rc = lethe_set_cache_size(l, bytes);
    struct lethe_stats st;
    lethe_get_stats(l, &st);
    uint64_t now = st.frames * LETHE_PAGE_SIZE;
    if (rc == 0)
        lethe_info("cache size set to %llu bytes at lethed's request", (unsigned long long)now);
    else
        lethe_warn("cache size %llu refused: %s", (unsigned long long)bytes, strerror(-rc));
    /* Publish first, so that /stats shows the new size as soon as lethed sees the answer. */
    publish(l, LETHE_STATS_RUNNING);
    lethe_stats_shm_reply(segment, ticket, rc, now);
}

static void *stats_main(void *arg)
{
    struct lethe *l = arg;
    lethe_log_set_role("stats");
    pthread_setname_np(pthread_self(), "lethe-stats");
    unsigned tick = 0;
    for (;;) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = TICK_MS * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        if (__atomic_load_n(&forgotten, __ATOMIC_RELAXED))
            break;
        serve_request(l);
        if (++tick % TICKS_PER_UPDATE == 0)
            publish(l, LETHE_STATS_RUNNING);
    }
    return NULL;
}

int stats_start(struct lethe *l)
{
    if (!segment)
        return 0;
    started_ns = lethe_monotonic_ns();
    publish(l, LETHE_STATS_RUNNING);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&t, &attr, stats_main, l);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        lethe_error("cannot start the stats thread: %s", strerror(rc));
        return -rc;
    }
    return 0;
}

void stats_final(struct lethe *l)
{
    if (segment && !__atomic_load_n(&forgotten, __ATOMIC_RELAXED))
        publish(l, LETHE_STATS_EXITED);
}

void stats_forget(void)
{
    __atomic_store_n(&forgotten, true, __ATOMIC_RELAXED);
}
