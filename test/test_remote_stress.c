/* test_remote_stress.c — the swapper end to end over a real memory node: the stress engine of
 * core_stress.h (a working set four times the cache, random and sequential reads and writes,
 * every page checked against the version the test last wrote) with lethe_start() pointed at
 * a `memnode` process (test/memnode_harness.h: its own Unix socket, a free TCP port, a token
 * file) through the shm and the tcp transport.
 *
 * Every combination of delivery (thread, signal), reclaim (rebalancer, direct) and 1, 2 or 8
 * application threads runs over each transport, 0.4 s each (LETHE_STRESS_SECONDS overrides).
 * A case passes with zero mismatches, every thread making progress, pages really written out
 * and read back (swap_outs, swap_ins > 0), the runtime naming the node it used, and, over tcp,
 * the node itself counting the pages it served. A hang trips the test's timeout.
 * The same cases run as a plain program, under ThreadSanitizer too: test/stress/remote_swapper.c.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "core_stress.h"
#include "memnode_harness.h"
#include "rdma/client.h"

static struct mn_proc node;

static void start_node(void)
{
    struct mn_opts o = {.capacity = "64M"};
    if (mn_start(&node, &o) < 0) {
        mn_dump_log(&node);
        cr_assert_fail("memnode did not start");
    }
}

static void stop_node(void)
{
    mn_cleanup(&node);
}

TestSuite(remote_stress, .init = start_node, .fini = stop_node);

/* The node's own counters, asked over a fresh authenticated connection. */
static void node_stats(uint64_t f[LETHE_STAT_NFIELDS])
{
    struct lethe_mnc c;
    char err[LETHE_MNC_ERR];
    unsigned got = 0;
    memset(f, 0, LETHE_STAT_NFIELDS * sizeof(f[0]));
    cr_assert_eq(lethe_mnc_connect(&c, node.tcp, 2000000, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_handshake(&c, node.token, 2000000, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_stats(&c, f, LETHE_STAT_NFIELDS, &got, err), 0, "%s", err);
    lethe_mnc_close(&c);
}

/* Waits (2 s at most) until the node has no client left: it learns of a closed connection
 * asynchronously, after lethe_stop() returned. */
static void node_stats_when_idle(uint64_t f[LETHE_STAT_NFIELDS])
{
    for (int i = 0; i < 200; i++) {
        node_stats(f);
        if (f[LETHE_STAT_CLIENTS] == 0)
            return;
        mn_sleep_ms(10);
    }
}

static void stress(enum lethe_transport_kind kind, enum lethe_delivery d, enum lethe_reclaim rc,
                   unsigned threads)
{
    const char *env = getenv("LETHE_STRESS_SECONDS");
    const char *addr = kind == LETHE_TRANSPORT_SHM ? node.sock : node.tcp;
    struct lethe_config c = stress_remote_config(kind, addr, node.token_file, 32UL << 20, d, rc);
    uint64_t before[LETHE_STAT_NFIELDS], after[LETHE_STAT_NFIELDS];
    node_stats(before);
    struct stress_result r = stress_run_config(&c, threads, env ? atof(env) : 0.4, -1);
    if (r.start_rc != 0)
        mn_dump_log(&node);
    cr_assert_eq(r.start_rc, 0, "lethe_start over %s %s: %s", lethe_transport_name(kind), addr,
                 strerror(-r.start_rc));
    cr_assert_eq(r.mismatches, 0, "%lu mismatches; first: %s", r.mismatches, r.error);
    cr_assert_eq(r.idle_threads, 0, "every thread made progress");
    cr_assert_gt(r.stats.swap_outs, 0, "pages were written to the node");
    cr_assert_gt(r.stats.swap_ins, 0, "pages were read back from the node");
    cr_assert_leq(r.stats.active_pages + r.stats.inactive_pages, r.stats.frames);
    char want[200];
    snprintf(want, sizeof(want), "transport=%s %s ", lethe_transport_name(kind), addr);
    cr_assert(strstr(r.paths, want), "the runtime used %s: %s", want, r.paths);
    node_stats_when_idle(after);
    if (kind == LETHE_TRANSPORT_TCP) {
        /* over tcp every page moved goes through the node's CPU: it counted them */
        cr_assert_geq(after[LETHE_STAT_PAGES_WRITTEN] - before[LETHE_STAT_PAGES_WRITTEN],
                      r.stats.swap_outs);
        cr_assert_geq(after[LETHE_STAT_PAGES_READ] - before[LETHE_STAT_PAGES_READ],
                      r.stats.swap_ins);
    }
    /* the runtime stopped: its region went back to the node */
    cr_assert_eq(after[LETHE_STAT_CLIENTS_TOTAL] - before[LETHE_STAT_CLIENTS_TOTAL], 1);
    cr_assert_eq(after[LETHE_STAT_BYTES_LENT], 0);
    cr_assert_eq(after[LETHE_STAT_ERRORS], before[LETHE_STAT_ERRORS], "the node saw no errors");
    cr_log_info("%s, %u threads, %s, %s: %lu ops, %lu faults, %lu swap-outs, %lu swap-ins, "
                "%lu soft hits, %lu waits, %lu churn rounds",
                lethe_transport_name(kind), threads, lethe_delivery_name(d), lethe_reclaim_name(rc),
                r.ops, (unsigned long)r.stats.faults, (unsigned long)r.stats.swap_outs,
                (unsigned long)r.stats.swap_ins, (unsigned long)r.stats.soft_hits,
                (unsigned long)r.stats.fault_waits, r.churn_rounds);
}

#define STRESS(k, d, r, n)                                                                         \
    Test(remote_stress, content_is_intact_over_##k##_##d##_##r##_##n##_threads, .timeout = 60)     \
    {                                                                                              \
        stress(LETHE_TRANSPORT_##k, LETHE_DELIVERY_##d, LETHE_RECLAIM_##r, n);                     \
    }

STRESS(SHM, THREAD, REBALANCER, 1)
STRESS(SHM, THREAD, REBALANCER, 2)
STRESS(SHM, THREAD, REBALANCER, 8)
STRESS(SHM, THREAD, DIRECT, 1)
STRESS(SHM, THREAD, DIRECT, 2)
STRESS(SHM, THREAD, DIRECT, 8)
STRESS(SHM, SIGNAL, REBALANCER, 1)
STRESS(SHM, SIGNAL, REBALANCER, 2)
STRESS(SHM, SIGNAL, REBALANCER, 8)
STRESS(SHM, SIGNAL, DIRECT, 1)
STRESS(SHM, SIGNAL, DIRECT, 2)
STRESS(SHM, SIGNAL, DIRECT, 8)
STRESS(TCP, THREAD, REBALANCER, 1)
STRESS(TCP, THREAD, REBALANCER, 2)
STRESS(TCP, THREAD, REBALANCER, 8)
STRESS(TCP, THREAD, DIRECT, 1)
STRESS(TCP, THREAD, DIRECT, 2)
STRESS(TCP, THREAD, DIRECT, 8)
STRESS(TCP, SIGNAL, REBALANCER, 1)
STRESS(TCP, SIGNAL, REBALANCER, 2)
STRESS(TCP, SIGNAL, REBALANCER, 8)
STRESS(TCP, SIGNAL, DIRECT, 1)
STRESS(TCP, SIGNAL, DIRECT, 2)
STRESS(TCP, SIGNAL, DIRECT, 8)

/* shm_delay from the config reaches the transport: every swap-in takes at least that long. */
Test(remote_stress, shm_delay_from_the_config_slows_every_swap_in, .timeout = 60)
{
    struct lethe_config c =
        stress_remote_config(LETHE_TRANSPORT_SHM, node.sock, node.token_file, 32UL << 20,
                             LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT);
    c.shm_delay_us = 300;
    struct stress_result r = stress_run_config(&c, 1, 0.3, -1);
    cr_assert_eq(r.start_rc, 0);
    cr_assert_eq(r.mismatches, 0, "%s", r.error);
    cr_assert_gt(r.stats.swap_ins, 0);
    uint64_t mean = r.stats.swap_in_ns_total / r.stats.swap_ins;
    cr_assert_geq(mean, 300000, "mean swap-in %llu ns with shm_delay = 300us",
                  (unsigned long long)mean);
}

/* remote_size from the config is what the runtime asks of the node, and holds while it runs. */
Test(remote_stress, the_node_lends_exactly_remote_size_while_the_swapper_runs)
{
    uint64_t f[LETHE_STAT_NFIELDS];
    const enum lethe_transport_kind kinds[] = {LETHE_TRANSPORT_SHM, LETHE_TRANSPORT_TCP};
    for (unsigned i = 0; i < 2; i++) {
        struct lethe_config c = stress_remote_config(
            kinds[i], kinds[i] == LETHE_TRANSPORT_SHM ? node.sock : node.tcp, node.token_file,
            24UL << 20, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_REBALANCER);
        struct lethe *l = NULL;
        cr_assert_eq(lethe_start(&c, &l), 0);
        node_stats(f);
        cr_assert_eq(f[LETHE_STAT_BYTES_LENT], 24UL << 20, "%s: %llu bytes lent",
                     lethe_transport_name(kinds[i]), (unsigned long long)f[LETHE_STAT_BYTES_LENT]);
        cr_assert_eq(f[LETHE_STAT_CLIENTS], 1);
        lethe_stop(l);
        node_stats_when_idle(f);
        cr_assert_eq(f[LETHE_STAT_BYTES_LENT], 0);
        cr_assert_eq(f[LETHE_STAT_CLIENTS], 0);
    }
}
