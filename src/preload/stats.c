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
 *
 * A program that execs itself keeps its pid, and its new image starts Lethe again and must
 * find the segment again (`sh -c 'exec prog'` is the way to run a program through a shell).
 * So the inherited "fd:N" descriptor is not closed once mapped: it is kept, close-on-exec,
 * and the exec wrappers (spawn.c) clear the flag just before an exec in this process and set
 * it again if the exec fails. Only while it is still the descriptor inherited (the program
 * may have closed it or put something else there), never in a forked or vforked child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
/* the inherited "fd:N" descriptor, kept for an exec of this process (-1: none), what it
 * was when attached, and the process that attached it */
static int kept_fd = -1;
static dev_t kept_dev;
static ino_t kept_ino;
static pid_t kept_pid;

/* For "fd:N": keeps N (close-on-exec) and returns in spec_out a spec naming a duplicate,
 * which the attach closes once mapped. Anything else is left to the attach as it is. */
static const char *keep_inherited(const char *spec, char *spec_out, size_t size)
{
    if (strncmp(spec, "fd:", 3) != 0)
        return spec;
    char *end;
    errno = 0;
    long n = strtol(spec + 3, &end, 10);
    struct stat st;
    if (errno || end == spec + 3 || *end || n < 0 || n > INT_MAX || fstat((int)n, &st) != 0)
        return spec;
    int dup_fd = fcntl((int)n, F_DUPFD_CLOEXEC, 3);
    if (dup_fd < 0)
        return spec;
    fcntl((int)n, F_SETFD, FD_CLOEXEC);
    kept_fd = (int)n;
    kept_dev = st.st_dev;
    kept_ino = st.st_ino;
    kept_pid = getpid();
    snprintf(spec_out, size, "fd:%d", dup_fd);
    return spec_out;
}

/* Whether kept_fd is still the descriptor inherited, in the process that attached it. */
static bool kept_is_ours(void)
{
    struct stat st;
    return kept_fd >= 0 && getpid() == kept_pid && fstat(kept_fd, &st) == 0 &&
           st.st_dev == kept_dev && st.st_ino == kept_ino;
}

static void forget_kept(void)
{
    if (kept_is_ours())
        close(kept_fd);
    kept_fd = -1;
}

void stats_before_exec(void)
{
    if (!__atomic_load_n(&forgotten, __ATOMIC_RELAXED) && kept_is_ours())
        fcntl(kept_fd, F_SETFD, 0);
}

void stats_after_failed_exec(void)
{
    if (kept_is_ours())
        fcntl(kept_fd, F_SETFD, FD_CLOEXEC);
}

int stats_attach(const char *spec)
{
    struct lethe_stats_shm *s;
    char dup_spec[32];
    int rc = lethe_stats_shm_attach(keep_inherited(spec, dup_spec, sizeof(dup_spec)), &s);
    if (rc < 0) {
        forget_kept();
        return rc;
    }
    snap = heap_runtime_alloc(sizeof(*snap));
    if (!snap) {
        lethe_stats_shm_detach(s);
        forget_kept();
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
    lethe_get_ranges(l, &snap->region_base, &snap->region_size, &snap->park_base,
                     &snap->park_size);
    snprintf(snap->paths, sizeof(snap->paths), "%s", lethe_paths(l));
    snap->error[0] = '\0';
    snap->nnodes = lethe_get_node_stats(l, snap->nodes, LETHE_MAX_MEMNODES, &snap->replicas);
    if (snap->nnodes > LETHE_MAX_MEMNODES)
        snap->nnodes = LETHE_MAX_MEMNODES;
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
        lethe_fork_reap(l); /* forked children that are gone release the slots they kept */
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
    /* the child's copy of the descriptor: its own execs must not pass it on. kept_pid is
     * still the parent's, so compare by hand (fstat and close are async-signal-safe) */
    struct stat st;
    if (kept_fd >= 0 && fstat(kept_fd, &st) == 0 && st.st_dev == kept_dev && st.st_ino == kept_ino)
        close(kept_fd);
    kept_fd = -1;
}
