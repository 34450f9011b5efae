/* test_remote_failure.c — what an application swapping to a memory node sees when the node
 * fails, and how lethe_start() turns [transport] into a connection.
 *
 * Failures mid-run (suite remote_failure): the application — the stress engine of
 * core_stress.h, swapping to a real `memnode` (test/memnode_harness.h) — runs in a forked
 * child with its standard error in a file. Once it is really swapping (pages out and back),
 * the test breaks the node: SIGKILL, SIGTERM, its pages overwritten in its memory, or, for
 * tcp, a relay between the application and the node that closes every connection, corrupts
 * the pages of READ replies, or garbles reply headers. The application must then stop (a
 * signal or a non-zero exit; a hang is caught by a 20 s watchdog) and say why on standard
 * error in one line naming the page (its vpn), the node as configured (`shm SOCKET` or
 * `tcp HOST:PORT`) and the cause. It must never carry on with zeros or stale data: the
 * child checks every page it reads and exits 3 on the first wrong one, which fails the test.
 *
 * Start-up (suite remote_start): each key of [transport] reaches the transport — the node's
 * address, the token read from token_file as the node reads it, remote_size against the
 * node's capacity, connect_timeout — and each refusal is a failed lethe_start() whose log
 * line names the node.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "core_stress.h"
#include "stress_app.h"
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

/* Waits (2 s at most) until the node holds no client: it learns of a closed connection
 * asynchronously, after lethe_stop() returned. */
static void node_wait_idle(void)
{
    for (int i = 0; i < 200; i++) {
        struct lethe_mnc c;
        char err[LETHE_MNC_ERR];
        uint64_t f[LETHE_STAT_NFIELDS];
        unsigned got = 0;
        cr_assert_eq(lethe_mnc_connect(&c, node.tcp, 2000000, err), 0, "%s", err);
        cr_assert_eq(lethe_mnc_handshake(&c, node.token, 2000000, err), 0, "%s", err);
        cr_assert_eq(lethe_mnc_stats(&c, f, LETHE_STAT_NFIELDS, &got, err), 0, "%s", err);
        lethe_mnc_close(&c);
        if (f[LETHE_STAT_CLIENTS] == 0)
            return;
        mn_sleep_ms(10);
    }
    cr_assert_fail("the node still holds a client 2 s after lethe_stop()");
}

TestSuite(remote_failure, .init = start_node, .fini = stop_node);
TestSuite(remote_start, .init = start_node, .fini = stop_node);

/* --- the application, in a child process (stress_app.h) --- */

/* The line of out that names a page (vpn), the node and one of the causes, or NULL. */
static const char *line_naming(const char *out, const char *nodedesc, const char *const *causes)
{
    for (const char *line = out; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof(buf), "%.*s", (int)(len < sizeof(buf) - 1 ? len : sizeof(buf) - 1),
                 line);
        if (strstr(buf, "(vpn ") && strstr(buf, nodedesc)) {
            for (unsigned i = 0; causes[i]; i++)
                if (strstr(buf, causes[i]))
                    return line;
        }
        line = eol ? eol + 1 : NULL;
    }
    return NULL;
}

/* The child must have stopped, never with wrong data, and said why. */
static void app_assert_clear_death(struct app *a, int status, const char *nodedesc,
                                   const char *const *causes)
{
    char *out = app_output(a);
    bool exited = WIFEXITED(status);
    bool wrong_data = exited && WEXITSTATUS(status) == APP_MISMATCH;
    bool stopped = WIFSIGNALED(status) ||
                   (exited && WEXITSTATUS(status) != 0 && !wrong_data &&
                    WEXITSTATUS(status) != APP_RUN_ENDED && WEXITSTATUS(status) != APP_NO_START);
    const char *line = line_naming(out, nodedesc, causes);
    char said[512] = "";
    if (line)
        snprintf(said, sizeof(said), "%.*s", (int)strcspn(line, "\n"), line);
    if (wrong_data || !stopped || !line)
        cr_log_error("the application's output:\n%s", out);
    free(out);
    app_cleanup(a);
    cr_assert(!wrong_data, "the application read wrong data after its node failed");
    cr_assert(stopped, "the application did not stop (wait status 0x%x)", status);
    cr_assert(line, "no line names the page (vpn), the node '%s' and the cause ('%s'...)", nodedesc,
              causes[0]);
    cr_log_info("application stopped (%s %d); it said: %s", exited ? "exit" : "signal",
                exited ? WEXITSTATUS(status) : WTERMSIG(status), said);
}

static struct lethe_config app_config(enum lethe_transport_kind kind, const char *addr,
                                      enum lethe_delivery d, enum lethe_reclaim r)
{
    return stress_remote_config(kind, addr, node.token_file, 32UL << 20, d, r);
}

static void node_desc(enum lethe_transport_kind kind, const char *addr, char *out, size_t len)
{
    snprintf(out, len, "%s %s", lethe_transport_name(kind), addr);
}

static const char *const closed_causes[] = {"closed", "reset", NULL};
static const char *const corrupt_causes[] = {"checksum mismatch", NULL};

/* The node dies (signal sig) while the application swaps through it. */
static void node_dies_mid_run(enum lethe_transport_kind kind, enum lethe_delivery d,
                              enum lethe_reclaim r, int sig)
{
    const char *addr = kind == LETHE_TRANSPORT_SHM ? node.sock : node.tcp;
    struct lethe_config c = app_config(kind, addr, d, r);
    struct app a;
    app_start(&a, &c, 2, 20.0, "remote-app");
    app_wait_swapping(&a);
    mn_signal_wait(&node, sig);
    int status = app_wait_end(&a, 20, "the application hung for 20 s after its memory node failed");
    char desc[200];
    node_desc(kind, addr, desc, sizeof(desc));
    app_assert_clear_death(&a, status, desc, closed_causes);
}

Test(remote_failure, shm_node_killed_mid_run_stops_the_app_naming_page_and_node_thread_delivery,
     .timeout = 60)
{
    node_dies_mid_run(LETHE_TRANSPORT_SHM, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_REBALANCER,
                      SIGKILL);
}

Test(remote_failure, shm_node_killed_mid_run_stops_the_app_naming_page_and_node_signal_delivery,
     .timeout = 60)
{
    node_dies_mid_run(LETHE_TRANSPORT_SHM, LETHE_DELIVERY_SIGNAL, LETHE_RECLAIM_DIRECT, SIGKILL);
}

Test(remote_failure, tcp_node_killed_mid_run_stops_the_app_naming_page_and_node_thread_delivery,
     .timeout = 60)
{
    node_dies_mid_run(LETHE_TRANSPORT_TCP, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT, SIGKILL);
}

Test(remote_failure, tcp_node_killed_mid_run_stops_the_app_naming_page_and_node_signal_delivery,
     .timeout = 60)
{
    node_dies_mid_run(LETHE_TRANSPORT_TCP, LETHE_DELIVERY_SIGNAL, LETHE_RECLAIM_REBALANCER,
                      SIGKILL);
}

Test(remote_failure, shm_node_stopped_mid_run_stops_the_app_naming_page_and_node, .timeout = 60)
{
    node_dies_mid_run(LETHE_TRANSPORT_SHM, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT, SIGTERM);
}

/* Overwrites every region the node lends (its memfds, reached through /proc) with garbage:
 * what a node with failing memory, or a stray writer, would leave. Returns how many. */
static int corrupt_node_memory(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
    DIR *d = opendir(dir);
    cr_assert(d, "cannot list %s", dir);
    int regions = 0;
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
        int fd = open(path, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0, "cannot open %s (%s)", path, target);
        struct stat st;
        cr_assert_eq(fstat(fd, &st), 0);
        static uint8_t junk[1 << 16];
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (uint8_t)(i * 131 + 7);
        for (off_t off = 0; off < st.st_size; off += (off_t)sizeof(junk))
            cr_assert_eq(pwrite(fd, junk, sizeof(junk), off), (ssize_t)sizeof(junk));
        close(fd);
        regions++;
    }
    closedir(d);
    return regions;
}

Test(remote_failure, shm_pages_corrupted_in_the_node_stop_the_app_with_a_checksum_error,
     .timeout = 60)
{
    struct lethe_config c =
        app_config(LETHE_TRANSPORT_SHM, node.sock, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT);
    struct app a;
    app_start(&a, &c, 2, 20.0, "remote-app");
    app_wait_swapping(&a);
    cr_assert_eq(corrupt_node_memory(node.pid), 1, "the node lends one region");
    int status = app_wait_end(&a, 20, "the application hung for 20 s after its memory node failed");
    char desc[200];
    node_desc(LETHE_TRANSPORT_SHM, node.sock, desc, sizeof(desc));
    app_assert_clear_death(&a, status, desc, corrupt_causes);
}

/* --- a relay between the application and a tcp node, which misbehaves on request --- */

enum relay_mode {
    RELAY_PASS,       /* bytes pass unchanged */
    RELAY_CORRUPT,    /* the page data of READ replies is garbled, framing kept */
    RELAY_GARBLE_HDR, /* reply headers are garbled */
};

#define RELAY_MAX_PAIRS 32

struct relay_pump {
    struct relay *r;
    int from, to;
    bool from_node;
    pthread_t thread;
    /* reply framing, from_node only */
    uint8_t hdr[24];
    unsigned hdr_have;
    uint32_t payload_left;
    bool garble_hdr, garble_payload;
};

struct relay {
    int lfd;
    char addr[64];
    const char *upstream;
    atomic_int mode;
    atomic_bool stopping;
    pthread_t acceptor;
    pthread_mutex_t lock;
    unsigned npairs;
    int fds[RELAY_MAX_PAIRS][2]; /* application side, node side */
    struct relay_pump pumps[RELAY_MAX_PAIRS][2];
};

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Garbles node -> application bytes as the mode says, following the reply framing
 * (docs/PROTOCOL.md: 24-byte header, payload length at offset 16). */
static void relay_filter(struct relay_pump *p, uint8_t *buf, size_t n)
{
    size_t pos = 0;
    while (pos < n) {
        if (p->payload_left == 0) {
            if (p->hdr_have == 0)
                p->garble_hdr = atomic_load(&p->r->mode) == RELAY_GARBLE_HDR;
            p->hdr[p->hdr_have++] = buf[pos];
            if (p->garble_hdr)
                buf[pos] ^= 0xa5;
            pos++;
            if (p->hdr_have < sizeof(p->hdr))
                continue;
            p->hdr_have = 0;
            uint8_t type = p->hdr[5];
            uint16_t flags = (uint16_t)(p->hdr[6] | p->hdr[7] << 8);
            p->payload_left = le32(p->hdr + 16);
            p->garble_payload = atomic_load(&p->r->mode) == RELAY_CORRUPT && type == 5 /* READ */ &&
                                (flags & 1) && le32(p->hdr + 20) == 0;
            continue;
        }
        size_t k = n - pos < p->payload_left ? n - pos : p->payload_left;
        if (p->garble_payload)
            for (size_t i = 0; i < k; i++)
                buf[pos + i] ^= 0x3c;
        pos += k;
        p->payload_left -= (uint32_t)k;
    }
}

static void *relay_pump_main(void *arg)
{
    struct relay_pump *p = arg;
    uint8_t buf[1 << 16];
    for (;;) {
        ssize_t n = read(p->from, buf, sizeof(buf));
        if (n <= 0)
            break;
        if (p->from_node)
            relay_filter(p, buf, (size_t)n);
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(p->to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    /* one end gone: the whole pair goes, as a node's connection would */
    shutdown(p->from, SHUT_RDWR);
    shutdown(p->to, SHUT_RDWR);
    return NULL;
}

static int tcp_connect(const char *addr)
{
    struct lethe_mnc c;
    char err[LETHE_MNC_ERR];
    if (lethe_mnc_connect(&c, addr, 2000000, err) < 0)
        return -1;
    return c.fd;
}

static void *relay_accept_main(void *arg)
{
    struct relay *r = arg;
    while (!atomic_load(&r->stopping)) {
        int cfd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
            break;
        int nfd = tcp_connect(r->upstream);
        pthread_mutex_lock(&r->lock);
        if (nfd < 0 || r->npairs == RELAY_MAX_PAIRS || atomic_load(&r->stopping)) {
            pthread_mutex_unlock(&r->lock);
            close(cfd);
            if (nfd >= 0)
                close(nfd);
            continue;
        }
        unsigned i = r->npairs++;
        r->fds[i][0] = cfd;
        r->fds[i][1] = nfd;
        r->pumps[i][0] = (struct relay_pump){.r = r, .from = cfd, .to = nfd};
        r->pumps[i][1] = (struct relay_pump){.r = r, .from = nfd, .to = cfd, .from_node = true};
        pthread_create(&r->pumps[i][0].thread, NULL, relay_pump_main, &r->pumps[i][0]);
        pthread_create(&r->pumps[i][1].thread, NULL, relay_pump_main, &r->pumps[i][1]);
        pthread_mutex_unlock(&r->lock);
    }
    return NULL;
}

/* Listens (a free port on loopback); relay_run() starts relaying. Separate so that the
 * application can be forked before the relay has threads: a fork while another thread is
 * inside the allocator leaves the child a held lock (ASan's allocator has no fork handler). */
static void relay_listen(struct relay *r, const char *upstream)
{
    memset(r, 0, sizeof(*r));
    r->upstream = upstream;
    pthread_mutex_init(&r->lock, NULL);
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(r->lfd, 64), 0);
    socklen_t len = sizeof(sa);
    getsockname(r->lfd, (struct sockaddr *)&sa, &len);
    snprintf(r->addr, sizeof(r->addr), "127.0.0.1:%u", ntohs(sa.sin_port));
}

static void relay_run(struct relay *r)
{
    pthread_create(&r->acceptor, NULL, relay_accept_main, r);
}

/* Closes every connection it relays (the node "closes the connection"). */
static void relay_cut(struct relay *r)
{
    pthread_mutex_lock(&r->lock);
    for (unsigned i = 0; i < r->npairs; i++) {
        shutdown(r->fds[i][0], SHUT_RDWR);
        shutdown(r->fds[i][1], SHUT_RDWR);
    }
    pthread_mutex_unlock(&r->lock);
}

static void relay_stop(struct relay *r)
{
    atomic_store(&r->stopping, true);
    shutdown(r->lfd, SHUT_RDWR);
    pthread_join(r->acceptor, NULL);
    relay_cut(r);
    for (unsigned i = 0; i < r->npairs; i++) {
        pthread_join(r->pumps[i][0].thread, NULL);
        pthread_join(r->pumps[i][1].thread, NULL);
        close(r->fds[i][0]);
        close(r->fds[i][1]);
    }
    close(r->lfd);
    pthread_mutex_destroy(&r->lock);
}

/* The application swaps through the relay; once it swaps, the relay misbehaves. */
static void relay_misbehaves(enum relay_mode mode, bool cut, const char *const *causes,
                             enum lethe_delivery d, enum lethe_reclaim rc)
{
    static struct relay r;
    relay_listen(&r, node.tcp);
    struct lethe_config c = app_config(LETHE_TRANSPORT_TCP, r.addr, d, rc);
    struct app a;
    app_start(&a, &c, 2, 20.0, "remote-app");
    relay_run(&r);
    app_wait_swapping(&a);
    atomic_store(&r.mode, (int)mode);
    if (cut)
        relay_cut(&r);
    int status = app_wait_end(&a, 20, "the application hung for 20 s after its memory node failed");
    relay_stop(&r);
    char desc[200];
    node_desc(LETHE_TRANSPORT_TCP, r.addr, desc, sizeof(desc));
    app_assert_clear_death(&a, status, desc, causes);
}

Test(remote_failure, tcp_node_closing_its_connections_mid_run_stops_the_app_naming_page_and_node,
     .timeout = 60)
{
    relay_misbehaves(RELAY_PASS, true, closed_causes, LETHE_DELIVERY_THREAD,
                     LETHE_RECLAIM_REBALANCER);
}

Test(remote_failure, tcp_node_returning_corrupt_pages_stops_the_app_with_a_checksum_error,
     .timeout = 60)
{
    relay_misbehaves(RELAY_CORRUPT, false, corrupt_causes, LETHE_DELIVERY_SIGNAL,
                     LETHE_RECLAIM_DIRECT);
}

Test(remote_failure, tcp_node_answering_garbage_headers_stops_the_app_naming_page_and_node,
     .timeout = 60)
{
    static const char *const causes[] = {"malformed", "magic", "reply", NULL};
    relay_misbehaves(RELAY_GARBLE_HDR, false, causes, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT);
}

/* The relay itself is transparent: with it passing bytes, the stress run is intact. */
Test(remote_failure, a_passing_relay_changes_nothing, .timeout = 60)
{
    static struct relay r;
    relay_listen(&r, node.tcp);
    relay_run(&r);
    struct lethe_config c =
        app_config(LETHE_TRANSPORT_TCP, r.addr, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT);
    struct stress_result res = stress_run_config(&c, 2, 0.3, -1);
    relay_stop(&r);
    cr_assert_eq(res.start_rc, 0);
    cr_assert_eq(res.mismatches, 0, "%s", res.error);
    cr_assert_gt(res.stats.swap_ins, 0);
}

/* --- start-up: [transport] reaches the transport --- */

/* lethe_start() with this process's log captured; returns its result, log in log[len]. */
static int start_logged(const struct lethe_config *c, char *log, size_t len, double *seconds)
{
    char path[96];
    snprintf(path, sizeof(path), "/tmp/lethe-e2e-%d-start.log", getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    lethe_log_set_fd(fd);
    struct lethe *l = NULL;
    double t0 = stress_now();
    int rc = lethe_start(c, &l);
    if (seconds)
        *seconds = stress_now() - t0;
    if (rc == 0)
        lethe_stop(l);
    lethe_log_set_fd(2);
    ssize_t n = pread(fd, log, len - 1, 0);
    log[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

Test(remote_start, a_wrong_token_is_refused_naming_the_node)
{
    char tf[96], log[8192];
    snprintf(tf, sizeof(tf), "/tmp/lethe-e2e-%d.token", getpid());
    FILE *f = fopen(tf, "w");
    fprintf(f, "not-the-token\n");
    fclose(f);
    const enum lethe_transport_kind kinds[] = {LETHE_TRANSPORT_SHM, LETHE_TRANSPORT_TCP};
    for (unsigned i = 0; i < 2; i++) {
        const char *addr = kinds[i] == LETHE_TRANSPORT_SHM ? node.sock : node.tcp;
        struct lethe_config c =
            app_config(kinds[i], addr, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT);
        snprintf(c.token_file, sizeof(c.token_file), "%s", tf);
        cr_assert_lt(start_logged(&c, log, sizeof(log), NULL), 0);
        cr_assert(strstr(log, addr), "the log names the node: %s", log);
    }
    unlink(tf);
}

Test(remote_start, a_missing_token_file_is_refused_naming_the_file)
{
    char log[8192];
    struct lethe_config c =
        app_config(LETHE_TRANSPORT_SHM, node.sock, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT);
    snprintf(c.token_file, sizeof(c.token_file), "/tmp/lethe-e2e-%d-none.token", getpid());
    cr_assert_eq(start_logged(&c, log, sizeof(log), NULL), -ENOENT);
    cr_assert(strstr(log, c.token_file), "%s", log);
    c.token_file[0] = '\0';
    cr_assert_eq(start_logged(&c, log, sizeof(log), NULL), -EINVAL);
    cr_assert(strstr(log, "token_file"), "%s", log);
}

Test(remote_start, no_node_address_is_refused_with_a_reason)
{
    char log[8192];
    struct lethe_config c =
        app_config(LETHE_TRANSPORT_TCP, node.tcp, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT);
    c.memnode_embedded = true;
    c.n_memnodes = 0;
    memset(c.memnodes, 0, sizeof(c.memnodes));
    cr_assert_eq(start_logged(&c, log, sizeof(log), NULL), -EINVAL);
    cr_assert(strstr(log, "memnode"), "%s", log);
}

Test(remote_start, an_unreachable_node_is_refused_naming_it)
{
    char log[8192], path[96];
    snprintf(path, sizeof(path), "/tmp/lethe-e2e-%d-nobody.sock", getpid());
    struct lethe_config c =
        app_config(LETHE_TRANSPORT_SHM, path, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT);
    cr_assert_lt(start_logged(&c, log, sizeof(log), NULL), 0);
    cr_assert(strstr(log, path), "%s", log);
}

Test(remote_start, remote_size_beyond_the_node_capacity_is_refused)
{
    char log[8192];
    const enum lethe_transport_kind kinds[] = {LETHE_TRANSPORT_SHM, LETHE_TRANSPORT_TCP};
    for (unsigned i = 0; i < 2; i++) {
        const char *addr = kinds[i] == LETHE_TRANSPORT_SHM ? node.sock : node.tcp;
        struct lethe_config c =
            app_config(kinds[i], addr, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT);
        c.remote_size = 128UL << 20; /* the node lends 64M */
        cr_assert_lt(start_logged(&c, log, sizeof(log), NULL), 0);
        cr_assert(strstr(log, addr), "%s", log);
        c.remote_size = 64UL << 20;
        cr_assert_eq(start_logged(&c, log, sizeof(log), NULL), 0, "%s", log);
        node_wait_idle();
    }
}

/* A node that accepts but never speaks: lethe_start gives up after connect_timeout. */
Test(remote_start, connect_timeout_bounds_the_wait_for_a_silent_node, .timeout = 30)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(lfd, 16), 0);
    socklen_t len = sizeof(sa);
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    char addr[64], log[8192];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
    struct lethe_config c =
        app_config(LETHE_TRANSPORT_TCP, addr, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT);
    c.connect_timeout_us = 300000;
    double took = 0;
    cr_assert_lt(start_logged(&c, log, sizeof(log), &took), 0);
    cr_assert(strstr(log, addr), "%s", log);
    cr_assert_geq(took, 0.25, "gave up after %.3f s", took);
    cr_assert_lt(took, 2.0, "gave up after %.3f s, connect_timeout is 300 ms", took);
    close(lfd);
}

/* Restarts the node (same config) after rewriting its token file with `text`. */
static void node_restart_with_token(const char *text)
{
    mn_signal_wait(&node, SIGTERM);
    FILE *f = fopen(node.token_file, "w");
    fputs(text, f);
    fclose(f);
    f = fopen(node.log, "w"); /* truncated here: the old node's "ready" line must not count */
    fclose(f);
    node.pid = fork();
    if (node.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(node.log, O_WRONLY | O_APPEND);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(LETHE_BUILD_DIR "/bin/memnode", "memnode", "-c", node.conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !mn_log_has(&node, "ready: "); i++)
        mn_sleep_ms(10);
    if (!mn_log_has(&node, "ready: "))
        mn_dump_log(&node);
    cr_assert(mn_log_has(&node, "ready: "), "memnode did not restart");
}

/* The runtime reads the token file as the node does (its line without the newline; spaces
 * belong to the token), so one file serves both. */
Test(remote_start, the_token_file_reads_the_same_for_the_runtime_and_the_node)
{
    char log[8192];
    node_restart_with_token("  token with spaces at both ends  \n");
    struct lethe_config c =
        app_config(LETHE_TRANSPORT_SHM, node.sock, LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT);
    cr_assert_eq(start_logged(&c, log, sizeof(log), NULL), 0, "%s", log);
}
