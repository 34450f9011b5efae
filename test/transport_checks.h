/* transport_checks.h — checks every remote transport must pass against a real memnode
 * (test/memnode_harness.h), written once and run by test_transport_shm.c,
 * test_transport_tcp.c and (where an RDMA device exists) test_transport_verbs.c. Pages carry
 * a pattern derived from (slot, generation), so a page read back from the wrong slot, a
 * stale page or a zero page is caught. Header-only.
 */
#ifndef LETHE_TEST_TRANSPORT_CHECKS_H
#define LETHE_TEST_TRANSPORT_CHECKS_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memnode_harness.h"
#include "rdma/client.h"
#include "rdma/transport.h"

#define TC_PAGE LETHE_PAGE_SIZE

static inline void tc_fill(uint8_t *page, uint64_t slot, unsigned gen)
{
    uint64_t *w = (uint64_t *)page;
    for (unsigned i = 0; i < TC_PAGE / 8; i++)
        w[i] = (slot << 32) ^ ((uint64_t)gen << 16) ^ i ^ 0x5bd1e995u;
}

static inline bool tc_check(const uint8_t *page, uint64_t slot, unsigned gen)
{
    const uint64_t *w = (const uint64_t *)page;
    for (unsigned i = 0; i < TC_PAGE / 8; i++)
        if (w[i] != ((slot << 32) ^ ((uint64_t)gen << 16) ^ i ^ 0x5bd1e995u))
            return false;
    return true;
}

static inline uint8_t *tc_pages(unsigned n)
{
    uint8_t *p = aligned_alloc(TC_PAGE, (size_t)n * TC_PAGE);
    cr_assert(p);
    memset(p, 0xee, (size_t)n * TC_PAGE);
    return p;
}

static inline struct lethe_transport_params
tc_params(enum lethe_transport_kind kind, const char *addr, const char *token, uint64_t bytes)
{
    struct lethe_transport_params p;
    memset(&p, 0, sizeof(p));
    p.kind = kind;
    snprintf(p.node, sizeof(p.node), "%s", addr);
    snprintf(p.token, sizeof(p.token), "%s", token);
    p.remote_size = bytes;
    p.connect_timeout_us = 2000000;
    p.max_batch = 1024;
    return p;
}

static inline struct lethe_transport *tc_open(const struct lethe_transport_params *p)
{
    struct lethe_transport *t = NULL;
    int rc = lethe_transport_open(p, &t);
    cr_assert_eq(rc, 0, "transport open failed: %d", rc);
    cr_assert_eq(lethe_transport_pages(t), p->remote_size / TC_PAGE);
    return t;
}

static inline struct lethe_channel *tc_channel(struct lethe_transport *t, unsigned vcpu)
{
    struct lethe_channel *ch = NULL;
    cr_assert_eq(lethe_channel_open(t, vcpu, &ch), 0, "channel %u", vcpu);
    return ch;
}

/* Single pages and batches (larger than one request and than the pipelining window),
 * written then read back and verified; never-written slots read as zeros. */
static inline void tc_round_trips(struct lethe_transport *t)
{
    cr_assert_geq(lethe_transport_pages(t), 1024, "tc_round_trips needs a 4 MiB region");
    struct lethe_channel *ch = tc_channel(t, 0);
    uint8_t *page = tc_pages(1);
    for (uint64_t s = 0; s < 8; s++) {
        tc_fill(page, s, 1);
        cr_assert_eq(lethe_channel_write(ch, s, page), 0, "%s", lethe_channel_error(ch));
    }
    for (uint64_t s = 0; s < 8; s++) {
        memset(page, 0, TC_PAGE);
        cr_assert_eq(lethe_channel_read(ch, s, page), 0, "%s", lethe_channel_error(ch));
        cr_assert(tc_check(page, s, 1), "slot %llu read back wrong", (unsigned long long)s);
    }
    cr_assert_eq(lethe_channel_read(ch, 100, page), 0, "%s", lethe_channel_error(ch));
    for (unsigned i = 0; i < TC_PAGE; i++)
        cr_assert_eq(page[i], 0, "a never-written slot reads as zeros");

    enum { N = 600 }; /* > 16 requests of 32 pages in flight: the window must slide */
    uint8_t *buf = tc_pages(N);
    uint64_t slots[N];
    void *ptrs[N];
    for (unsigned i = 0; i < N; i++) {
        slots[i] = (i * 7919u) % (lethe_transport_pages(t) - 8) + 8; /* scattered */
        ptrs[i] = buf + (size_t)i * TC_PAGE;
    }
    /* distinct slots only, so each has one expected content */
    bool distinct = true;
    for (unsigned i = 0; i < N; i++)
        for (unsigned j = 0; j < i; j++)
            distinct &= slots[i] != slots[j];
    cr_assert(distinct);
    for (unsigned i = 0; i < N; i++)
        tc_fill(ptrs[i], slots[i], 2);
    cr_assert_eq(lethe_channel_write_batch(ch, slots, (const void *const *)ptrs, N), 0, "%s",
                 lethe_channel_error(ch));
    memset(buf, 0, (size_t)N * TC_PAGE);
    cr_assert_eq(lethe_channel_read_batch(ch, slots, ptrs, N), 0, "%s", lethe_channel_error(ch));
    for (unsigned i = 0; i < N; i++)
        cr_assert(tc_check(ptrs[i], slots[i], 2), "batch page %u (slot %llu) wrong", i,
                  (unsigned long long)slots[i]);
    /* the same slot twice in one batch is two reads of the same page */
    uint64_t twice[2] = {slots[0], slots[0]};
    cr_assert_eq(lethe_channel_read_batch(ch, twice, ptrs, 2), 0);
    cr_assert(tc_check(ptrs[1], slots[0], 2));
    free(buf);
    free(page);
    lethe_channel_close(ch);
}

struct tc_worker {
    struct lethe_transport *t;
    unsigned vcpu, nvcpus;
    unsigned rounds;
    int failed;
    char why[300];
};

/* Each vCPU owns slots s with s % nvcpus == vcpu: writes a generation, reads it back; at the
 * end reads its neighbour's slots too (written over another channel). */
static inline void *tc_worker_run(void *arg)
{
    struct tc_worker *w = arg;
    struct lethe_channel *ch;
    if (lethe_channel_open(w->t, w->vcpu, &ch) < 0) {
        w->failed = 1;
        snprintf(w->why, sizeof(w->why), "channel open failed");
        return NULL;
    }
    uint64_t pages = lethe_transport_pages(w->t);
    enum { B = 24 };
    uint8_t *buf = aligned_alloc(TC_PAGE, B * TC_PAGE);
    uint64_t slots[B];
    void *ptrs[B];
    for (unsigned r = 1; r <= w->rounds && !w->failed; r++) {
        unsigned n = 0;
        for (uint64_t s = w->vcpu; s < pages && n < B; s += w->nvcpus) {
            slots[n] = s;
            ptrs[n] = buf + (size_t)n * TC_PAGE;
            tc_fill(ptrs[n], s, r);
            n++;
        }
        if (lethe_channel_write_batch(ch, slots, (const void *const *)ptrs, n) < 0 ||
            (memset(buf, 0, B * TC_PAGE), lethe_channel_read_batch(ch, slots, ptrs, n) < 0)) {
            w->failed = 1;
            snprintf(w->why, sizeof(w->why), "%s", lethe_channel_error(ch));
            break;
        }
        for (unsigned i = 0; i < n; i++)
            if (!tc_check(ptrs[i], slots[i], r)) {
                w->failed = 2;
                snprintf(w->why, sizeof(w->why), "vCPU %u round %u slot %llu wrong", w->vcpu, r,
                         (unsigned long long)slots[i]);
                break;
            }
    }
    free(buf);
    lethe_channel_close(ch);
    return NULL;
}

/* n channels on n threads at once, each with its own slots. */
static inline void tc_concurrent_channels(struct lethe_transport *t, unsigned n, unsigned rounds)
{
    pthread_t th[16];
    struct tc_worker w[16];
    cr_assert_leq(n, 16);
    for (unsigned i = 0; i < n; i++) {
        w[i] = (struct tc_worker){.t = t, .vcpu = i, .nvcpus = n, .rounds = rounds};
        pthread_create(&th[i], NULL, tc_worker_run, &w[i]);
    }
    for (unsigned i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(w[i].failed, 0, "vCPU %u: %s", i, w[i].why);
    /* every vCPU's last generation is visible over a fresh channel */
    struct lethe_channel *ch = tc_channel(t, n);
    uint8_t *page = tc_pages(1);
    for (unsigned i = 0; i < n; i++) {
        cr_assert_eq(lethe_channel_read(ch, i, page), 0, "%s", lethe_channel_error(ch));
        cr_assert(tc_check(page, i, rounds), "slot %u not the last generation", i);
    }
    free(page);
    lethe_channel_close(ch);
}

/* STATS over a fresh authenticated connection to the node. */
static inline uint64_t tc_node_stat(const struct mn_proc *m, unsigned field)
{
    struct lethe_mnc c;
    char err[LETHE_MNC_ERR];
    uint64_t f[LETHE_STAT_NFIELDS] = {0};
    unsigned got;
    cr_assert_eq(lethe_mnc_connect(&c, m->tcp, 2000000, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_handshake(&c, m->token, 2000000, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_stats(&c, f, LETHE_STAT_NFIELDS, &got, err), 0, "%s", err);
    lethe_mnc_close(&c);
    return f[field];
}

static inline void tc_wait_stat(const struct mn_proc *m, unsigned field, uint64_t v)
{
    uint64_t now = 0;
    for (int i = 0; i < 200; i++) {
        now = tc_node_stat(m, field);
        if (now == v)
            return;
        mn_sleep_ms(10);
    }
    cr_assert_fail("node stat %u is %llu, expected %llu", field, (unsigned long long)now,
                   (unsigned long long)v);
}

/* Waits until the kernel shows the node stopped (state T), so that it cannot answer. */
static inline void tc_wait_stopped(const struct mn_proc *m)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)m->pid);
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(path, "r");
        cr_assert(f, "no %s", path);
        size_t got = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[got] = 0;
        const char *close = strrchr(buf, ')');
        if (close && close[1] == ' ' && close[2] == 'T')
            return;
        mn_sleep_ms(10);
    }
    cr_assert_fail("memnode %d did not stop in 5 s", (int)m->pid);
}

/* lethe_channel_write_post hands the pages over without waiting for the node: it returns
 * while the node is stopped (a post that waited for the answer would fail after the 2 s I/O
 * timeout, as the node answers nothing while stopped), the wait after the node goes on
 * succeeds, and the pages read back. A write_post/write_wait pair is also what
 * lethe_channel_write_batch is for a transport without the halves (shm). */
static inline void tc_write_post_returns_before_the_answer(struct mn_proc *m,
                                                           struct lethe_transport_params *p)
{
    p->node_timeout_us = 2000000;
    struct lethe_transport *t = tc_open(p);
    struct lethe_channel *ch = tc_channel(t, 0);
    enum { N = 8 }; /* 32 KiB: fits in the sockets' buffers while nobody reads */
    uint8_t *buf = tc_pages(N);
    uint64_t slots[N];
    const void *pages[N];
    for (unsigned k = 0; k < N; k++) {
        slots[k] = 3 * k + 1;
        tc_fill(buf + (size_t)k * TC_PAGE, slots[k], 7);
        pages[k] = buf + (size_t)k * TC_PAGE;
    }
    cr_assert_eq(kill(m->pid, SIGSTOP), 0);
    tc_wait_stopped(m);
    int rc = lethe_channel_write_post(ch, slots, pages, N);
    cr_assert_eq(kill(m->pid, SIGCONT), 0);
    cr_assert_eq(rc, 0, "%s", lethe_channel_error(ch));
    cr_assert_eq(lethe_channel_write_wait(ch), 0, "%s", lethe_channel_error(ch));
    memset(buf, 0, (size_t)N * TC_PAGE);
    for (unsigned k = 0; k < N; k++) {
        cr_assert_eq(lethe_channel_read(ch, slots[k], buf), 0, "%s", lethe_channel_error(ch));
        cr_assert(tc_check(buf, slots[k], 7), "slot %llu holds the wrong bytes",
                  (unsigned long long)slots[k]);
    }
    /* and a post to a broken channel reports at the wait, naming the slot */
    mn_signal_wait(m, SIGKILL);
    for (int i = 0; i < 250 && rc == 0; i++) {
        mn_sleep_ms(20);
        lethe_channel_write_post(ch, slots, pages, N);
        rc = lethe_channel_write_wait(ch);
    }
    cr_assert_lt(rc, 0, "writes keep succeeding 5 s after the node died");
    free(buf);
    lethe_channel_close(ch);
    lethe_transport_close(t);
}

/* The node is killed with SIGKILL mid-run: the next operation fails, naming the node, and
 * the page is not reported as read. */
static inline void tc_node_killed_fails_next_op(struct mn_proc *m, struct lethe_transport *t,
                                                const char *name)
{
    struct lethe_channel *ch = tc_channel(t, 0);
    uint8_t *page = tc_pages(1);
    tc_fill(page, 3, 9);
    cr_assert_eq(lethe_channel_write(ch, 3, page), 0, "%s", lethe_channel_error(ch));
    cr_assert_eq(lethe_channel_read(ch, 3, page), 0, "%s", lethe_channel_error(ch));
    uint8_t *want = tc_pages(1);
    tc_fill(want, 3, 9);
    mn_signal_wait(m, SIGKILL);
    /* The kernel closes the node's sockets as it dies; the transport notices asynchronously
     * (shm: its watcher thread). Until it does, a read may still succeed, but only with the
     * page's true content (shm's pages outlive the node in the client's mapping); within a
     * few seconds, even on a loaded machine, reads must fail. */
    int rc = 0;
    for (int i = 0; i < 250; i++) {
        mn_sleep_ms(i == 0 ? 50 : 20);
        memset(page, 0xab, TC_PAGE);
        rc = lethe_channel_read(ch, 3, page);
        if (rc < 0)
            break;
        cr_assert(memcmp(page, want, TC_PAGE) == 0,
                  "a read after the node died returned something else than the page");
    }
    free(want);
    cr_assert_lt(rc, 0, "reads keep succeeding 5 s after the node died");
    const char *err = lethe_channel_error(ch);
    cr_assert(strstr(err, name), "error names the node (%s): %s", name, err);
    cr_assert(strstr(err, "slot 3"), "error names the slot: %s", err);
    cr_assert(strstr(err, "memnode"), "error says the memnode is the cause: %s", err);
    cr_assert_lt(lethe_channel_write(ch, 4, page), 0, "and so does every later operation");
    free(page);
    lethe_channel_close(ch);
}

#endif
