/* fork.c — forked children that read the parent's remote pages.
 *
 * A child forked without exec must see the parent's memory as of the fork, also the pages
 * whose only copy was on the memory node. The kernel gives it the parent's page table (ours,
 * struct lethe_pte, private memory) copy-on-write, so the child knows which slot holds which
 * page; three things make reading those slots from the child safe:
 *
 *  - Nothing is in flight at the fork. Every swapper operation runs between lethe_op_begin
 *    and lethe_op_end (a counter); the prepare handler raises `forking`, which holds new
 *    operations back, and waits until the counter is zero, so the child inherits no page
 *    half-read or half-written. The parent handler lowers it again. The forking thread itself
 *    may still fault (another atfork handler touching the heap): its own operations, and any
 *    that waited 100 ms, go ahead, so a fork can never wait on itself.
 *  - No slot the child may read changes. The prepare handler takes a hold on the slots
 *    (lethe_slots_hold: a new generation) after the drain, before the fork: from then on a page whose slot was
 *    written before this fork goes to a fresh slot when it is written back, and such a slot
 *    the parent frees is kept as a zombie (slots.h). Slots written later are the parent's.
 *  - The hold lasts as long as the child or anything it forked may read. The prepare handler
 *    makes a pipe; the child keeps the write end (close-on-exec: an exec ends the need, and
 *    liblethe's close wrappers leave it open), the parent the read end. When the child and
 *    all its heirs have exited or exec'd, the read end sees EOF: lethe_fork_reap (the stats
 *    thread, each fork, a full remote memory) closes it and lets go of the hold; the last one
 *    frees the zombies. A grandchild inherits the write end and so keeps the hold too.
 *
 * The child reads through the parent's channels where the remote memory is mapped in the
 * process (local, shm), and over tcp through a connection of its own, opened at its first
 * remote page and attached to the parent's region (the region key is in the inherited
 * transport); the region lives as long as the parent's own connection, so over tcp a child
 * that outlives its parent loses the pages that were out (it dies, saying why). Over verbs a
 * child that touches a page that was out dies with a message naming the page, the node and
 * the reason. The child's own memory is not managed:
 * it is an ordinary private copy, which grows by what the child touches (docs/SWAPPER.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "core/log.h"
#include "rdma/transport.h"

#define FORK_WAIT_NS (100ULL * 1000 * 1000) /* an operation waits this long for a fork */

static struct lethe *fork_lethe; /* the process's runtime (one per process) */
/* initial-exec: read in SIGBUS handlers, where __tls_get_addr could allocate (from the heap) */
static __thread unsigned op_depth __attribute__((tls_model("initial-exec")));
/* this thread is in fork(), between the prepare and the parent handler */
static __thread bool fork_owner __attribute__((tls_model("initial-exec")));

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void lethe_op_begin(struct lethe *l)
{
    if (op_depth++ > 0)
        return;
    __atomic_fetch_add(&l->fork_inflight, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&l->forking, __ATOMIC_SEQ_CST) || fork_owner)
        return;
    /* A fork is waiting for the operations to drain: step back until it is done. */
    __atomic_fetch_sub(&l->fork_inflight, 1, __ATOMIC_SEQ_CST);
    uint64_t until = clock_ns() + FORK_WAIT_NS;
    while (__atomic_load_n(&l->forking, __ATOMIC_SEQ_CST) && clock_ns() < until)
        sched_yield();
    __atomic_fetch_add(&l->fork_inflight, 1, __ATOMIC_SEQ_CST);
}

void lethe_op_end(struct lethe *l)
{
    if (--op_depth == 0)
        __atomic_fetch_sub(&l->fork_inflight, 1, __ATOMIC_RELEASE);
}

static void close_fd(int fd)
{
    if (fd >= 0)
        syscall(SYS_close, fd); /* not liblethe's close, which may keep the keeper */
}

void lethe_fork_reap(struct lethe *l)
{
    if (!l || l->child || __atomic_load_n(&l->nkeepers, __ATOMIC_RELAXED) == 0)
        return;
    if (pthread_mutex_trylock(&l->fork_lock) != 0)
        return; /* another thread is at it */
    struct pollfd pfd[LETHE_MAX_FORK_READERS];
    unsigned n = l->nkeepers;
    for (unsigned i = 0; i < n; i++)
        pfd[i] = (struct pollfd){.fd = l->keepers[i], .events = POLLIN};
    unsigned kept = 0, gone = 0;
    if (poll(pfd, n, 0) >= 0) {
        for (unsigned i = 0; i < n; i++) {
            if (pfd[i].revents & (POLLHUP | POLLIN | POLLERR | POLLNVAL)) {
                close_fd(l->keepers[i]);
                lethe_slots_unhold(&l->slots, l->keeper_gens[i]);
                gone++;
            } else {
                l->keeper_gens[kept] = l->keeper_gens[i];
                l->keepers[kept++] = l->keepers[i];
            }
        }
        __atomic_store_n(&l->nkeepers, kept, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&l->fork_lock);
    if (gone)
        lethe_debug("%u forked children gone: their remote slots are released (%llu zombies "
                    "left)",
                    gone, (unsigned long long)lethe_slots_zombies(&l->slots));
}

static void fork_prepare(void)
{
    struct lethe *l = fork_lethe;
    if (!l)
        return;
    l->fork_pipe[0] = l->fork_pipe[1] = -1;
    if (l->child) /* a grandchild inherits the child's keeper and the frozen slots */
        return;
    /* the heap's pages are about to be shared copy-on-write: captures make them exclusive */
    if (lethe_rgn(l))
        lethe_region_note_fork(lethe_rgn(l));
    bool readable = lethe_transport_fork_readable(l->transport, NULL);
    if (readable)
        lethe_fork_reap(l);
    /* Drain first, then take the hold: a write-back still running would otherwise stamp its
     * slot with the new generation although the child inherits what it wrote. Drained also
     * when the child gets no hold: no capture may run across the fork (the pages it holds
     * become shared copy-on-write). The parent and child handlers end `forking`. */
    fork_owner = true;
    __atomic_store_n(&l->forking, true, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&l->fork_inflight, __ATOMIC_SEQ_CST) != 0)
        sched_yield();
    if (!readable)
        return;
    pthread_mutex_lock(&l->fork_lock);
    bool room = l->nkeepers < LETHE_MAX_FORK_READERS;
    pthread_mutex_unlock(&l->fork_lock);
    if (!room) {
        lethe_warn("%d forked children already read remote memory: the next one cannot "
                   "(pages that are out kill it)",
                   LETHE_MAX_FORK_READERS);
        return;
    }
    int fds[2];
    if (syscall(SYS_pipe2, fds, O_CLOEXEC) != 0) {
        lethe_warn("fork: no pipe (%s): the child cannot read pages that are out", strerror(errno));
        return;
    }
    int64_t gen = lethe_slots_hold(&l->slots);
    if (gen < 0) {
        __atomic_store_n(&l->forking, false, __ATOMIC_SEQ_CST);
        fork_owner = false;
        close_fd(fds[0]);
        close_fd(fds[1]);
        return;
    }
    l->fork_gen = (uint32_t)gen;
    l->fork_pipe[0] = fds[0];
    l->fork_pipe[1] = fds[1];
}

static void fork_parent(void)
{
    struct lethe *l = fork_lethe;
    if (!l || l->child)
        return;
    __atomic_store_n(&l->forking, false, __ATOMIC_SEQ_CST);
    fork_owner = false;
    if (l->fork_pipe[0] < 0)
        return;
    close_fd(l->fork_pipe[1]); /* a failed fork: the read end sees EOF at once */
    pthread_mutex_lock(&l->fork_lock);
    l->keepers[l->nkeepers] = l->fork_pipe[0];
    l->keeper_gens[l->nkeepers] = l->fork_gen;
    __atomic_store_n(&l->nkeepers, l->nkeepers + 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&l->fork_lock);
    l->fork_pipe[0] = l->fork_pipe[1] = -1;
}

static void fork_child(void)
{
    struct lethe *l = fork_lethe;
    if (!l)
        return;
    fork_owner = false;
    op_depth = 0;
    /* a child's own connection (tcp) is its parent's now: a grandchild opens another */
    l->child_channel = NULL;
    if (l->keeper_fd >= 0) /* a grandchild: the inherited keeper holds for it too */
        return;
    /* the parent's other children are the parent's business */
    for (unsigned i = 0; i < l->nkeepers; i++)
        close_fd(l->keepers[i]);
    l->nkeepers = 0;
    pthread_mutex_init(&l->fork_lock, NULL);
    l->forking = false;
    l->fork_inflight = 0;
    if (l->fork_pipe[0] >= 0) {
        close_fd(l->fork_pipe[0]);
        l->keeper_fd = l->fork_pipe[1];
        l->child_remote = true;
    }
    l->fork_pipe[0] = l->fork_pipe[1] = -1;
}

int lethe_fork_keeper(const struct lethe *l)
{
    return l ? l->keeper_fd : -1;
}

int lethe_fork_init(struct lethe *l)
{
    static bool installed;
    __atomic_store_n(&fork_lethe, l, __ATOMIC_RELEASE);
    if (installed)
        return 0;
    int rc = pthread_atfork(fork_prepare, fork_parent, fork_child);
    if (rc != 0) {
        lethe_error("cannot install the fork handlers: %s", strerror(rc));
        return -rc;
    }
    installed = true;
    return 0;
}

void lethe_fork_fini(struct lethe *l)
{
    struct lethe *expected = l;
    __atomic_compare_exchange_n(&fork_lethe, &expected, NULL, false, __ATOMIC_ACQ_REL,
                                __ATOMIC_RELAXED);
    if (l->child)
        return;
    pthread_mutex_lock(&l->fork_lock);
    for (unsigned i = 0; i < l->nkeepers; i++)
        close_fd(l->keepers[i]);
    __atomic_store_n(&l->nkeepers, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&l->fork_lock);
}
