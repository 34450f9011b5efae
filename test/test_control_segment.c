/* test_control_segment.c — the shared stats segment (core/stats_shm.h): attaching, the
 * seqlock snapshot under concurrent writers and readers, and the command slot. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/stats_shm.h"

static struct lethe_stats_shm *create(int *fd)
{
    struct lethe_stats_shm *s;
    cr_assert_eq(lethe_stats_shm_create(&s, fd), 0);
    return s;
}

static void fill(struct lethe_stats_snapshot *snap, uint64_t k, uint64_t nshards)
{
    memset(snap, 0, sizeof(*snap));
    snap->state = LETHE_STATS_RUNNING;
    snap->pid = k;
    snap->cache_size = k;
    snap->nshards = nshards;
    uint64_t *w = (uint64_t *)&snap->stats;
    for (size_t i = 0; i < sizeof(snap->stats) / 8; i++)
        w[i] = k;
    for (uint64_t i = 0; i < nshards; i++)
        snap->shards[i] = (struct lethe_shard_stats){k, k, k, k};
    snprintf(snap->paths, sizeof(snap->paths), "k=%llu", (unsigned long long)k);
}

/* A snapshot written by fill(k) read back whole: every word says the same k. */
static void assert_consistent(const struct lethe_stats_snapshot *snap)
{
    uint64_t k = snap->pid;
    cr_assert_eq(snap->cache_size, k);
    const uint64_t *w = (const uint64_t *)&snap->stats;
    for (size_t i = 0; i < sizeof(snap->stats) / 8; i++)
        cr_assert_eq(w[i], k, "torn snapshot: stats word %zu is %llu, pid says %llu", i,
                     (unsigned long long)w[i], (unsigned long long)k);
    for (uint64_t i = 0; i < snap->nshards; i++)
        cr_assert_eq(snap->shards[i].inactive, k, "torn snapshot in shard %llu",
                     (unsigned long long)i);
    char want[64];
    snprintf(want, sizeof(want), "k=%llu", (unsigned long long)k);
    cr_assert_str_eq(snap->paths, want);
}

Test(segment, attach_by_fd_sees_what_was_published)
{
    int fd;
    struct lethe_stats_shm *w = create(&fd);
    int dupfd = dup(fd);
    char spec[32];
    snprintf(spec, sizeof(spec), "fd:%d", dupfd);
    struct lethe_stats_shm *r;
    cr_assert_eq(lethe_stats_shm_attach(spec, &r), 0);
    cr_assert_eq(fcntl(dupfd, F_GETFD), -1, "the fd is closed once mapped");
    struct lethe_stats_snapshot *snap = calloc(1, sizeof(*snap));
    fill(snap, 42, 16);
    lethe_stats_shm_publish(w, snap);
    memset(snap, 0, sizeof(*snap));
    cr_assert_eq(lethe_stats_shm_read(r, snap), 0);
    assert_consistent(snap);
    cr_assert_eq(snap->nshards, 16);
    cr_assert_eq(snap->seq, 1, "publications are numbered");
    cr_assert_gt(snap->updated_ns, 0);
    lethe_stats_shm_detach(r);
    lethe_stats_shm_detach(w);
    close(fd);
    free(snap);
}

Test(segment, a_fresh_segment_reads_as_starting)
{
    int fd;
    struct lethe_stats_shm *s = create(&fd);
    struct lethe_stats_snapshot *snap = calloc(1, sizeof(*snap));
    cr_assert_eq(lethe_stats_shm_read(s, snap), 0);
    cr_assert_eq(snap->state, LETHE_STATS_STARTING);
    cr_assert_eq(snap->seq, 0);
    lethe_stats_shm_detach(s);
    close(fd);
    free(snap);
}

Test(segment, attach_refuses_bad_specs_and_foreign_segments)
{
    struct lethe_stats_shm *s;
    cr_assert_eq(lethe_stats_shm_attach("", &s), -EINVAL);
    cr_assert_eq(lethe_stats_shm_attach("fd:", &s), -EINVAL);
    cr_assert_eq(lethe_stats_shm_attach("fd:x1", &s), -EINVAL);
    cr_assert_eq(lethe_stats_shm_attach("stats", &s), -EINVAL);
    cr_assert_eq(lethe_stats_shm_attach("fd:999999", &s), -EBADF);
    char name[64];
    snprintf(name, sizeof(name), "/lethe-test-none-%d", (int)getpid());
    cr_assert_eq(lethe_stats_shm_attach(name, &s), -ENOENT);
    /* Right size, no header: not a Lethe segment. */
    int fd = memfd_create("foreign", MFD_CLOEXEC);
    cr_assert_eq(ftruncate(fd, (off_t)lethe_stats_shm_size()), 0);
    char spec[32];
    snprintf(spec, sizeof(spec), "fd:%d", fd);
    cr_assert_eq(lethe_stats_shm_attach(spec, &s), -EINVAL);
    /* Too small. */
    fd = memfd_create("small", MFD_CLOEXEC);
    cr_assert_eq(ftruncate(fd, 4096), 0);
    snprintf(spec, sizeof(spec), "fd:%d", fd);
    cr_assert_eq(lethe_stats_shm_attach(spec, &s), -EINVAL);
}

Test(segment, attach_by_shm_name)
{
    char name[64];
    snprintf(name, sizeof(name), "/lethe-test-%d", (int)getpid());
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)lethe_stats_shm_size()), 0);
    /* Copy a real header into it from a created segment. */
    int cfd;
    struct lethe_stats_shm *src = create(&cfd);
    void *dst = mmap(NULL, lethe_stats_shm_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    memcpy(dst, src, lethe_stats_shm_size());
    struct lethe_stats_shm *s;
    int rc = lethe_stats_shm_attach(name, &s);
    shm_unlink(name);
    cr_assert_eq(rc, 0);
    lethe_stats_shm_detach(s);
    munmap(dst, lethe_stats_shm_size());
    lethe_stats_shm_detach(src);
    close(fd);
    close(cfd);
}

struct stress {
    struct lethe_stats_shm *s;
    atomic_bool stop;
    atomic_ulong reads;
    unsigned first_k;
    uint64_t nshards;
};

static void *writer(void *arg)
{
    struct stress *st = arg;
    struct lethe_stats_snapshot *snap = malloc(sizeof(*snap));
    for (uint64_t k = st->first_k; !atomic_load(&st->stop); k += 2) {
        fill(snap, k, st->nshards);
        lethe_stats_shm_publish(st->s, snap);
    }
    free(snap);
    return NULL;
}

static void *reader(void *arg)
{
    struct stress *st = arg;
    struct lethe_stats_snapshot *snap = malloc(sizeof(*snap));
    while (!atomic_load(&st->stop)) {
        if (lethe_stats_shm_read(st->s, snap) == 0 && snap->seq > 0) {
            assert_consistent(snap);
            atomic_fetch_add(&st->reads, 1);
        }
    }
    free(snap);
    return NULL;
}

/* Two writers (the stats thread and an exiting thread) and two readers: every snapshot a
 * reader gets is one a writer published, never a mix. */
Test(segment, readers_never_see_a_torn_snapshot_under_two_writers, .timeout = 30)
{
    int fd;
    struct stress st = {.nshards = 64};
    st.s = create(&fd);
    struct stress st2 = st;
    pthread_t w1, w2, r1, r2;
    st.first_k = 1;
    pthread_create(&w1, NULL, writer, &st);
    pthread_create(&r1, NULL, reader, &st);
    pthread_create(&r2, NULL, reader, &st);
    st2.first_k = 2;
    st2.s = st.s;
    pthread_create(&w2, NULL, writer, &st2);
    usleep(400 * 1000);
    atomic_store(&st.stop, true);
    atomic_store(&st2.stop, true);
    pthread_join(w1, NULL);
    pthread_join(w2, NULL);
    pthread_join(r1, NULL);
    pthread_join(r2, NULL);
    cr_assert_gt(atomic_load(&st.reads), 10, "readers got snapshots (%lu)",
                 (unsigned long)atomic_load(&st.reads));
    lethe_stats_shm_detach(st.s);
    close(fd);
}

Test(segment, a_new_writer_repairs_a_sequence_left_odd)
{
    int fd;
    struct lethe_stats_shm *s = create(&fd);
    /* A writer that died inside publish leaves the sequence odd: readers give up... */
    uint64_t *seq = (uint64_t *)((char *)s + 16);
    *seq = 1;
    struct lethe_stats_snapshot *snap = calloc(1, sizeof(*snap));
    cr_assert_eq(lethe_stats_shm_read(s, snap), -EAGAIN);
    /* ...until the next program image claims the segment. */
    lethe_stats_shm_claim_writer(s);
    fill(snap, 7, 4);
    lethe_stats_shm_publish(s, snap);
    cr_assert_eq(lethe_stats_shm_read(s, snap), 0);
    assert_consistent(snap);
    free(snap);
    lethe_stats_shm_detach(s);
    close(fd);
}

Test(segment, command_slot_carries_one_request_and_its_answer)
{
    int fd;
    struct lethe_stats_shm *s = create(&fd);
    uint64_t ticket, bytes;
    int result;
    uint64_t value;
    cr_assert_not(lethe_stats_shm_take_request(s, &ticket, &bytes), "no request yet");
    uint64_t t1 = lethe_stats_shm_request_cache_size(s, 16 << 20);
    cr_assert_gt(t1, 0);
    cr_assert_not(lethe_stats_shm_poll_reply(s, t1, &result, &value), "not answered yet");
    cr_assert(lethe_stats_shm_take_request(s, &ticket, &bytes));
    cr_assert_eq(ticket, t1);
    cr_assert_eq(bytes, 16 << 20);
    lethe_stats_shm_reply(s, ticket, 0, 16 << 20);
    cr_assert(lethe_stats_shm_poll_reply(s, t1, &result, &value));
    cr_assert_eq(result, 0);
    cr_assert_eq(value, 16 << 20);
    cr_assert_not(lethe_stats_shm_take_request(s, &ticket, &bytes), "answered: nothing waits");

    /* A refused request carries its errno; a later request has a new ticket, and the old
     * answer is not taken for it. */
    uint64_t t2 = lethe_stats_shm_request_cache_size(s, 1ULL << 40);
    cr_assert_neq(t2, t1);
    cr_assert_not(lethe_stats_shm_poll_reply(s, t2, &result, &value));
    cr_assert(lethe_stats_shm_take_request(s, &ticket, &bytes));
    lethe_stats_shm_reply(s, ticket, -EINVAL, 16 << 20);
    cr_assert(lethe_stats_shm_poll_reply(s, t2, &result, &value));
    cr_assert_eq(result, -EINVAL);
    cr_assert_eq(value, 16 << 20);
    lethe_stats_shm_detach(s);
    close(fd);
}

struct slot_stress {
    struct lethe_stats_shm *s;
    atomic_bool stop;
};

static void *program_side(void *arg)
{
    struct slot_stress *st = arg;
    while (!atomic_load(&st->stop)) {
        uint64_t ticket, bytes;
        if (lethe_stats_shm_take_request(st->s, &ticket, &bytes))
            lethe_stats_shm_reply(st->s, ticket, 0, bytes);
    }
    return NULL;
}

/* lethed posts requests one after another; each answer is the one for its own request. */
Test(segment, every_answer_matches_its_request_under_concurrency, .timeout = 30)
{
    int fd;
    struct slot_stress st = {.s = create(&fd)};
    pthread_t t;
    pthread_create(&t, NULL, program_side, &st);
    for (uint64_t i = 1; i <= 2000; i++) {
        uint64_t ticket = lethe_stats_shm_request_cache_size(st.s, i * 4096);
        int result;
        uint64_t value;
        while (!lethe_stats_shm_poll_reply(st.s, ticket, &result, &value))
            sched_yield();
        cr_assert_eq(value, i * 4096);
    }
    atomic_store(&st.stop, true);
    pthread_join(t, NULL);
    lethe_stats_shm_detach(st.s);
    close(fd);
}
