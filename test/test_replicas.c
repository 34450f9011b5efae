/* test_replicas.c — several memory nodes and replicas (src/rdma/multi.c), against real
 * `memnode` processes (test/memnode_harness.h).
 *
 * Suite replicas: the transport alone. Pages written through a transport over two or three
 * nodes are read back after a node is killed (SIGKILL), after a byte of a copy is flipped in
 * a node's memory (shm: the node's memfd, reached through /proc), and, with three nodes, after
 * the lost copies were re-created and a second node was killed. A node restarted on the same
 * address rejoins, empty. Pages are spread over the nodes in proportion to what they lent.
 *
 * Suite replicas_app: the stress engine of core_stress.h (several threads, cache a quarter of
 * the working set, every value verified) in a child process, while a node is killed, stopped
 * (SIGSTOP: tcp with a short node_timeout) or restarted. With replicas = 2 the run ends with
 * every value right; with replicas = 1 the child stops and names the page and the node.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>

#include "core/checksum.h"
#include "core/log.h"
#include "core_stress.h"
#include "stress_app.h"
#include "transport_checks.h"

#define NODES_MAX 3
static struct mn_proc nodes[NODES_MAX];

static void start_nodes(unsigned n, const char *capacity)
{
    for (unsigned i = 0; i < n; i++) {
        struct mn_opts o = {.capacity = capacity};
        if (mn_start(&nodes[i], &o) < 0) {
            mn_dump_log(&nodes[i]);
            cr_assert_fail("memnode %u did not start", i);
        }
    }
}

static void stop_nodes(void)
{
    for (unsigned i = 0; i < NODES_MAX; i++)
        mn_cleanup(&nodes[i]);
}

TestSuite(replicas, .fini = stop_nodes, .timeout = 60);
TestSuite(replicas_app, .fini = stop_nodes, .timeout = 90);

static const char *addr_of(enum lethe_transport_kind kind, unsigned i)
{
    return kind == LETHE_TRANSPORT_SHM ? nodes[i].sock : nodes[i].tcp;
}

static struct lethe_transport_params params(enum lethe_transport_kind kind, unsigned n,
                                            unsigned replicas, uint64_t remote_size)
{
    struct lethe_transport_params p;
    memset(&p, 0, sizeof(p));
    p.kind = kind;
    p.remote_size = remote_size;
    p.connect_timeout_us = 2000000;
    p.node_timeout_us = 1000000;
    p.max_batch = 64;
    p.n_nodes = n;
    p.replicas = replicas;
    p.repair_rate = 256ull << 20;
    for (unsigned i = 0; i < n; i++) {
        snprintf(p.nodes[i], sizeof(p.nodes[i]), "%.200s", addr_of(kind, i));
        snprintf(p.tokens[i], sizeof(p.tokens[i]), "%.120s", nodes[i].token);
    }
    return p;
}

#define PAGES 1024u /* 16 chunks */

static void write_all(struct lethe_channel *ch, uint8_t *buf, uint64_t *sums, unsigned gen)
{
    for (unsigned s = 0; s < PAGES; s += 64) {
        uint64_t slots[64];
        const void *pages[64];
        for (unsigned k = 0; k < 64; k++) {
            slots[k] = s + k;
            tc_fill(buf + (size_t)k * TC_PAGE, s + k, gen);
            sums[s + k] = lethe_page_checksum(buf + (size_t)k * TC_PAGE);
            pages[k] = buf + (size_t)k * TC_PAGE;
        }
        cr_assert_eq(lethe_channel_write_batch(ch, slots, pages, 64), 0, "%s",
                     lethe_channel_error(ch));
    }
}

static void check_all(struct lethe_channel *ch, uint8_t *page, const uint64_t *sums, unsigned gen)
{
    for (unsigned s = 0; s < PAGES; s++) {
        int rc = lethe_channel_read_checked(ch, s, page, sums[s]);
        cr_assert_eq(rc, 0, "slot %u: %s", s, lethe_channel_error(ch));
        cr_assert(tc_check(page, s, gen), "slot %u holds the wrong bytes", s);
    }
}

static struct lethe_replica_stats replica_stats(struct lethe_transport *t,
                                                struct lethe_node_stats *ns)
{
    struct lethe_replica_stats rs;
    lethe_transport_node_stats(t, ns, NODES_MAX, &rs);
    return rs;
}

/* Waits (10 s at most) until every chunk has its copies again. */
static void wait_redundant(struct lethe_transport *t, unsigned live)
{
    struct lethe_node_stats ns[NODES_MAX];
    struct lethe_replica_stats rs;
    for (int i = 0; i < 1000; i++) {
        rs = replica_stats(t, ns);
        if (rs.live_nodes == live && rs.degraded_chunks == 0 && rs.repaired_pages > 0 &&
            rs.repair_pages_per_s > 0)
            return;
        mn_sleep_ms(10);
    }
    cr_assert_fail("redundancy not restored in 10 s: %llu live nodes, %llu chunks degraded, "
                   "%llu pages repaired",
                   (unsigned long long)rs.live_nodes, (unsigned long long)rs.degraded_chunks,
                   (unsigned long long)rs.repaired_pages);
}

static void node_lost_then_another(enum lethe_transport_kind kind)
{
    start_nodes(3, "16M");
    struct lethe_transport_params p = params(kind, 3, 2, PAGES * TC_PAGE);
    struct lethe_transport *t = NULL;
    cr_assert_eq(lethe_transport_open(&p, &t), 0);
    cr_assert_eq(lethe_transport_pages(t), PAGES);
    struct lethe_channel *ch = NULL;
    cr_assert_eq(lethe_channel_open(t, 0, &ch), 0);
    uint8_t *buf = tc_pages(64);
    uint64_t sums[PAGES];
    write_all(ch, buf, sums, 1);
    /* each node holds two thirds of the pages' copies, plus room for a third */
    struct lethe_node_stats ns[NODES_MAX];
    struct lethe_replica_stats rs = replica_stats(t, ns);
    cr_assert_eq(rs.nodes, 3);
    cr_assert_eq(rs.replicas, 2);
    for (unsigned i = 0; i < 3; i++) {
        cr_assert(ns[i].live, "node %u", i);
        cr_assert(ns[i].placed_pages >= 640 && ns[i].placed_pages <= 704,
                  "node %u holds %llu copies, expected about 683", i,
                  (unsigned long long)ns[i].placed_pages);
        cr_assert_geq(ns[i].granted_pages, 1024, "node %u lent room for a lost node's copies", i);
        cr_assert_gt(ns[i].writes, 0);
    }
    mn_signal_wait(&nodes[0], SIGKILL);
    check_all(ch, buf, sums, 1);
    wait_redundant(t, 2);
    rs = replica_stats(t, ns);
    cr_assert(!ns[0].live);
    cr_assert_eq(ns[0].failures, 1);
    cr_assert_eq(ns[1].placed_pages + ns[2].placed_pages, 2 * PAGES,
                 "every page on both survivors");
    /* with the copies re-created, a second node may go too */
    mn_signal_wait(&nodes[1], SIGKILL);
    check_all(ch, buf, sums, 1);
    /* and the pages can be rewritten to the last one */
    write_all(ch, buf, sums, 2);
    check_all(ch, buf, sums, 2);
    lethe_channel_close(ch);
    lethe_transport_close(t);
    free(buf);
}

Test(replicas, shm_three_nodes_lose_one_recreate_its_copies_then_lose_another)
{
    node_lost_then_another(LETHE_TRANSPORT_SHM);
}

Test(replicas, tcp_three_nodes_lose_one_recreate_its_copies_then_lose_another)
{
    node_lost_then_another(LETHE_TRANSPORT_TCP);
}

/* The memfd of the one region node `pid` lends, opened read-write (through /proc). */
static int node_memfd(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
    DIR *d = opendir(dir);
    cr_assert(d);
    int fd = -1, found = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[340], target[256];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strncmp(target, "/memfd:", 7) != 0)
            continue;
        found++;
        fd = open(path, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0);
    }
    closedir(d);
    cr_assert_eq(found, 1, "the node lends one region");
    return fd;
}

static uint8_t node_byte(pid_t pid, off_t off)
{
    int fd = node_memfd(pid);
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, off), 1);
    close(fd);
    return b;
}

static void flip_byte(pid_t pid, off_t off)
{
    int fd = node_memfd(pid);
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, off), 1);
    b ^= 0x40;
    cr_assert_eq(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

Test(replicas, shm_a_flipped_byte_is_read_from_the_other_copy_and_repaired)
{
    start_nodes(2, "16M");
    struct lethe_transport_params p = params(LETHE_TRANSPORT_SHM, 2, 2, PAGES * TC_PAGE);
    struct lethe_transport *t = NULL;
    cr_assert_eq(lethe_transport_open(&p, &t), 0);
    struct lethe_channel *ch = NULL;
    cr_assert_eq(lethe_channel_open(t, 0, &ch), 0);
    uint8_t *buf = tc_pages(64);
    uint64_t sums[PAGES];
    write_all(ch, buf, sums, 1);
    /* Two nodes, two copies: each node holds every chunk, in order (its slot = the program's
     * slot). Flip a byte of page 5 on node 0 and of page 9 on node 1: whichever copy the
     * reads prefer, one of them is found bad. */
    const off_t off[2] = {5 * TC_PAGE + 100, 9 * TC_PAGE + 7};
    uint8_t good[2];
    for (unsigned i = 0; i < 2; i++) {
        good[i] = node_byte(nodes[i].pid, off[i]);
        flip_byte(nodes[i].pid, off[i]);
    }
    check_all(ch, buf, sums, 1);
    struct lethe_node_stats ns[NODES_MAX];
    struct lethe_replica_stats rs = replica_stats(t, ns);
    cr_assert_geq(rs.bad_copies, 1, "a bad copy was seen");
    cr_assert_eq(rs.live_nodes, 2, "a bad copy does not lose its node");
    for (unsigned i = 0; i < 2; i++)
        if (ns[i].bad_copies)
            cr_assert_eq(node_byte(nodes[i].pid, off[i]), good[i],
                         "the bad copy on node %u was rewritten", i);
    lethe_channel_close(ch);
    lethe_transport_close(t);
    free(buf);
}

Test(replicas, a_restarted_node_rejoins_empty_and_takes_copies_again)
{
    start_nodes(2, "16M");
    struct lethe_transport_params p = params(LETHE_TRANSPORT_TCP, 2, 2, PAGES * TC_PAGE);
    struct lethe_transport *t = NULL;
    cr_assert_eq(lethe_transport_open(&p, &t), 0);
    struct lethe_channel *ch = NULL;
    cr_assert_eq(lethe_channel_open(t, 0, &ch), 0);
    uint8_t *buf = tc_pages(64);
    uint64_t sums[PAGES];
    write_all(ch, buf, sums, 1);
    /* restart node 1 on the same port with the same token */
    char port[16], token[LETHE_TOKEN_MAX + 1];
    snprintf(port, sizeof(port), "%s", strrchr(nodes[1].tcp, ':') + 1);
    snprintf(token, sizeof(token), "%s", nodes[1].token);
    char logpath[64];
    snprintf(logpath, sizeof(logpath), "/tmp/lethe-replicas-%d.log", (int)getpid());
    int logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(logfd, 0);
    lethe_log_set_fd(logfd);
    mn_signal_wait(&nodes[1], SIGKILL);
    check_all(ch, buf, sums, 1); /* all from node 0 */
    mn_sleep_ms(3500);           /* three tries or more to reconnect, all refused */
    lethe_log_set_fd(2);
    close(logfd);
    /* the first refused try is logged with its reason, the others only at debug */
    unsigned refused = 0, not_back = 0;
    FILE *lf = fopen(logpath, "r");
    cr_assert(lf);
    char line[1024];
    while (fgets(line, sizeof(line), lf)) {
        fputs(line, stderr);
        if (strstr(line, nodes[1].tcp) && strstr(line, " error: "))
            refused++;
        if (strstr(line, "is not back"))
            not_back++;
    }
    fclose(lf);
    unlink(logpath);
    cr_assert_eq(refused, 1, "the lost node's refused reconnects logged %u errors, not 1", refused);
    cr_assert_eq(not_back, 1);
    struct mn_proc again;
    struct mn_opts o = {.capacity = "16M", .port = port, .token = token};
    cr_assert_eq(mn_start(&again, &o), 0);
    struct lethe_node_stats ns[NODES_MAX];
    struct lethe_replica_stats rs;
    int i;
    for (i = 0; i < 1000; i++) {
        rs = replica_stats(t, ns);
        if (ns[1].live && ns[1].rejoins == 1 && rs.degraded_chunks == 0 && ns[1].placed_pages)
            break;
        mn_sleep_ms(10);
    }
    if (i == 1000)
        mn_dump_log(&again);
    cr_assert_lt(i, 1000, "node 1 did not rejoin and take copies in 10 s (live %llu, rejoins "
                          "%llu, degraded %llu)",
                 (unsigned long long)ns[1].live, (unsigned long long)ns[1].rejoins,
                 (unsigned long long)rs.degraded_chunks);
    cr_assert_eq(ns[1].placed_pages, PAGES, "a copy of every page on the rejoined node");
    /* the rejoined node's copies are right: lose node 0 and read */
    mn_signal_wait(&nodes[0], SIGKILL);
    check_all(ch, buf, sums, 1);
    lethe_channel_close(ch);
    lethe_transport_close(t);
    free(buf);
    mn_cleanup(&again);
}

Test(replicas, pages_go_to_the_nodes_in_proportion_to_what_they_lend)
{
    /* two nodes, one copy: a 3 MiB program over 2 MiB nodes needs both */
    start_nodes(2, "2M");
    struct lethe_transport_params p = params(LETHE_TRANSPORT_SHM, 2, 1, 3u << 20);
    struct lethe_transport *t = NULL;
    cr_assert_eq(lethe_transport_open(&p, &t), 0);
    cr_assert_eq(lethe_transport_pages(t), 768);
    struct lethe_node_stats ns[NODES_MAX];
    replica_stats(t, ns);
    cr_assert_eq(ns[0].placed_pages, 384);
    cr_assert_eq(ns[1].placed_pages, 384);
    lethe_transport_close(t);
}

Test(replicas, too_few_nodes_for_the_replicas_is_refused)
{
    start_nodes(1, "16M");
    struct lethe_transport_params p = params(LETHE_TRANSPORT_SHM, 1, 2, PAGES * TC_PAGE);
    struct lethe_transport *t = NULL;
    cr_assert_eq(lethe_transport_open(&p, &t), -EINVAL);
}

/* --- the application, in a child process (as in test_remote_failure.c) --- */

static struct lethe_config app_config(enum lethe_transport_kind kind, unsigned n, unsigned r,
                                      enum lethe_delivery d, enum lethe_reclaim rc)
{
    struct lethe_config c =
        stress_remote_config(kind, addr_of(kind, 0), nodes[0].token_file, 32UL << 20, d, rc);
    c.n_memnodes = n;
    c.replicas = r;
    c.node_timeout_us = 1000000;
    c.token_file[0] = '\0';
    size_t off = 0;
    for (unsigned i = 0; i < n; i++) {
        snprintf(c.memnodes[i], sizeof(c.memnodes[i]), "%.200s", addr_of(kind, i));
        off += (size_t)snprintf(c.token_file + off, sizeof(c.token_file) - off, "%s%s",
                                i ? "," : "", nodes[i].token_file);
    }
    return c;
}

/* A node is broken (signal sig) while the application swaps with `replicas` copies. */
static void break_node_mid_run(enum lethe_transport_kind kind, unsigned n, unsigned r, int sig,
                               enum lethe_delivery d, enum lethe_reclaim rc)
{
    start_nodes(n, "128M");
    struct lethe_config c = app_config(kind, n, r, d, rc);
    struct app a;
    app_start(&a, &c, 4, 4.0, "replica-app");
    app_wait_swapping(&a);
    mn_sleep_ms(300);
    if (sig == SIGSTOP)
        kill(nodes[1].pid, SIGSTOP);
    else
        mn_signal_wait(&nodes[1], sig);
    int status = app_wait_end(&a, 40, "the application hung for 40 s");
    char *out = app_output(&a);
    app_cleanup(&a);
    if (sig == SIGSTOP)
        kill(nodes[1].pid, SIGCONT);
    bool ended = WIFEXITED(status) && WEXITSTATUS(status) == APP_RUN_ENDED;
    bool wrong = WIFEXITED(status) && WEXITSTATUS(status) == APP_MISMATCH;
    if (r >= 2) {
        if (!ended || !strstr(out, " lost: "))
            cr_log_error("the application's output:\n%s", out);
        cr_assert(!wrong, "wrong data after a node failed with %u replicas", r);
        cr_assert(ended, "the run did not finish with %u replicas (wait status 0x%x)", r, status);
        cr_assert(strstr(out, " lost: "), "the loss of the node was reported");
        cr_assert(strstr(out, ", 0 mismatches"), "every value verified");
        const char *end = strstr(out, "run ended");
        const char *lost = strstr(out, "memnode ");
        cr_log_info("%.*s ... %.*s", (int)strcspn(lost, "\n"), lost, (int)strcspn(end, "\n"), end);
    } else {
        /* one copy: the documented fatal error naming page and node */
        bool named = false;
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
            if (strstr(line, "(vpn ") && strstr(line, addr_of(kind, 1)))
                named = true;
        cr_assert(!wrong, "wrong data after the node died");
        cr_assert(!ended && (WIFSIGNALED(status) || WEXITSTATUS(status) != 0),
                  "the application went on without its pages (status 0x%x)", status);
        cr_assert(named, "no line names the page and node %s", addr_of(kind, 1));
    }
    free(out);
}

Test(replicas_app, shm_two_nodes_two_replicas_one_killed_mid_run_nothing_lost)
{
    break_node_mid_run(LETHE_TRANSPORT_SHM, 2, 2, SIGKILL, LETHE_DELIVERY_THREAD,
                       LETHE_RECLAIM_DIRECT);
}

Test(replicas_app, tcp_three_nodes_two_replicas_one_killed_mid_run_nothing_lost)
{
    break_node_mid_run(LETHE_TRANSPORT_TCP, 3, 2, SIGKILL, LETHE_DELIVERY_SIGNAL,
                       LETHE_RECLAIM_REBALANCER);
}

Test(replicas_app, shm_three_nodes_two_replicas_one_killed_mid_run_nothing_lost)
{
    break_node_mid_run(LETHE_TRANSPORT_SHM, 3, 2, SIGKILL, LETHE_DELIVERY_SIGNAL,
                       LETHE_RECLAIM_DIRECT);
}

Test(replicas_app, tcp_two_replicas_a_stalled_node_is_lost_after_node_timeout_nothing_lost)
{
    break_node_mid_run(LETHE_TRANSPORT_TCP, 2, 2, SIGSTOP, LETHE_DELIVERY_THREAD,
                       LETHE_RECLAIM_DIRECT);
}

Test(replicas_app, shm_one_replica_a_killed_node_stops_the_app_naming_page_and_node)
{
    break_node_mid_run(LETHE_TRANSPORT_SHM, 2, 1, SIGKILL, LETHE_DELIVERY_THREAD,
                       LETHE_RECLAIM_DIRECT);
}

Test(replicas_app, tcp_one_replica_a_killed_node_stops_the_app_naming_page_and_node)
{
    break_node_mid_run(LETHE_TRANSPORT_TCP, 2, 1, SIGKILL, LETHE_DELIVERY_SIGNAL,
                       LETHE_RECLAIM_DIRECT);
}
