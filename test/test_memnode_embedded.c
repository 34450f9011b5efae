/* test_memnode_embedded.c — the memory node as a library (memnode.h), as lethed and the
 * benchmarks embed it: start on ephemeral ports, the addresses it reports, start-up
 * failures, stats read from other threads while many clients on many threads swap through
 * it (the concurrency stress test; run it under TSan), and stop with clients connected. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "memnode.h"
#include "transport_checks.h"

static char dir[96];
static struct lethe_memnode_config cfg;
static char token[LETHE_TOKEN_MAX + 1];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/lethe-mn-emb-%d", getpid());
    mkdir(dir, 0700);
    lethe_memnode_config_defaults(&cfg);
    cfg.capacity = 256ULL << 20;
    snprintf(cfg.tcp_listen, sizeof(cfg.tcp_listen), "127.0.0.1:0");
    snprintf(cfg.unix_socket, sizeof(cfg.unix_socket), "%s/node.sock", dir);
    snprintf(cfg.token_file, sizeof(cfg.token_file), "%s/token", dir);
    cfg.max_clients = 64;
    lethe_log_set_level(LETHE_LOG_WARN);
}

static void teardown(void)
{
    char p[160];
    snprintf(p, sizeof(p), "%s/token", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/node.sock", dir);
    unlink(p);
    rmdir(dir);
}

TestSuite(memnode_lib, .init = setup, .fini = teardown);

static void load_token(void)
{
    char err[128];
    cr_assert_eq(
        lethe_token_load(cfg.token_file, false, token, sizeof(token), NULL, err, sizeof(err)), 0,
        "%s", err);
}

Test(memnode_lib, starts_on_an_ephemeral_port_and_reports_its_addresses)
{
    struct lethe_memnode *n;
    cr_assert_eq(lethe_memnode_start(&cfg, &n), 0);
    const char *tcp = lethe_memnode_tcp_address(n);
    cr_assert(strncmp(tcp, "127.0.0.1:", 10) == 0, "%s", tcp);
    cr_assert_neq(atoi(tcp + 10), 0, "a real port, not 0: %s", tcp);
    cr_assert_str_eq(lethe_memnode_unix_path(n), cfg.unix_socket);
    cr_assert_str_eq(lethe_memnode_rdma_address(n), "");
    struct stat st;
    cr_assert_eq(stat(cfg.token_file, &st), 0, "token file created");
    cr_assert_eq(st.st_mode & 0777, 0600);
    struct lethe_memnode_stats s;
    lethe_memnode_get_stats(n, &s);
    cr_assert_eq(s.capacity, 256ULL << 20);
    cr_assert_eq(s.clients, 0);
    lethe_memnode_stop(n);
    cr_assert_eq(access(cfg.unix_socket, F_OK), -1, "socket unlinked at stop");
}

Test(memnode_lib, a_taken_port_or_no_listener_fails_start)
{
    struct lethe_memnode *a, *b;
    cr_assert_eq(lethe_memnode_start(&cfg, &a), 0);
    struct lethe_memnode_config c2 = cfg;
    snprintf(c2.tcp_listen, sizeof(c2.tcp_listen), "%s", lethe_memnode_tcp_address(a));
    snprintf(c2.unix_socket, sizeof(c2.unix_socket), "off");
    cr_assert_lt(lethe_memnode_start(&c2, &b), 0, "port in use");
    snprintf(c2.tcp_listen, sizeof(c2.tcp_listen), "off");
    cr_assert_eq(lethe_memnode_start(&c2, &b), -EINVAL, "nothing to listen on");
    c2 = cfg;
    cr_assert_eq(lethe_memnode_start(&c2, &b), -EADDRINUSE, "socket of a live node");
    lethe_memnode_stop(a);
    c2 = cfg;
    snprintf(c2.token_file, sizeof(c2.token_file), "/nonexistent-dir/token");
    cr_assert_lt(lethe_memnode_start(&c2, &b), 0, "token file cannot be created");
}

Test(memnode_lib, a_stale_socket_file_is_replaced)
{
    struct lethe_memnode *n;
    cr_assert_eq(lethe_memnode_start(&cfg, &n), 0);
    lethe_memnode_stop(n);
    /* leave a socket file with no listener behind, as a killed node would */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%.100s", cfg.unix_socket);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(fd);
    cr_assert_eq(lethe_memnode_start(&cfg, &n), 0);
    lethe_memnode_stop(n);
}

struct client {
    const char *addr;
    enum lethe_transport_kind kind;
    unsigned rounds;
    int failed;
    char why[256];
};

static void *client_run(void *arg)
{
    struct client *c = arg;
    for (unsigned r = 0; r < c->rounds && !c->failed; r++) {
        struct lethe_transport_params p = tc_params(c->kind, c->addr, token, 256 << 10);
        struct lethe_transport *t;
        if (lethe_transport_open(&p, &t) < 0) {
            c->failed = 1;
            snprintf(c->why, sizeof(c->why), "open failed");
            break;
        }
        struct lethe_channel *ch[2];
        lethe_channel_open(t, 0, &ch[0]);
        lethe_channel_open(t, 1, &ch[1]);
        uint8_t *page = aligned_alloc(4096, 4096);
        for (uint64_t s = 0; s < 64 && !c->failed; s++) {
            tc_fill(page, s, r);
            if (lethe_channel_write(ch[s % 2], s, page) < 0 ||
                lethe_channel_read(ch[(s + 1) % 2], s, page) < 0) {
                c->failed = 1;
                snprintf(c->why, sizeof(c->why), "%s", lethe_channel_error(ch[0]));
            } else if (!tc_check(page, s, r)) {
                c->failed = 2;
                snprintf(c->why, sizeof(c->why), "slot %llu wrong", (unsigned long long)s);
            }
        }
        free(page);
        lethe_channel_close(ch[0]);
        lethe_channel_close(ch[1]);
        lethe_transport_close(t);
    }
    return NULL;
}

static volatile int stop_polling;

static void *stats_poller(void *arg)
{
    struct lethe_memnode *n = arg;
    struct lethe_memnode_stats s;
    while (!__atomic_load_n(&stop_polling, __ATOMIC_RELAXED)) {
        lethe_memnode_get_stats(n, &s);
        cr_assert_leq(s.bytes_lent, s.capacity);
        cr_assert_leq(s.clients, 64);
    }
    return NULL;
}

Test(memnode_lib, many_clients_on_many_threads_swap_through_one_node, .timeout = 120)
{
    struct lethe_memnode *n;
    cr_assert_eq(lethe_memnode_start(&cfg, &n), 0);
    load_token();
    enum { N = 8 };
    pthread_t th[N], poller;
    struct client c[N];
    for (int i = 0; i < N; i++) {
        c[i] = (struct client){.addr = i % 2 ? lethe_memnode_tcp_address(n) : cfg.unix_socket,
                               .kind = i % 2 ? LETHE_TRANSPORT_TCP : LETHE_TRANSPORT_SHM,
                               .rounds = 6};
        pthread_create(&th[i], NULL, client_run, &c[i]);
    }
    pthread_create(&poller, NULL, stats_poller, n);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    __atomic_store_n(&stop_polling, 1, __ATOMIC_RELAXED);
    pthread_join(poller, NULL);
    for (int i = 0; i < N; i++)
        cr_assert_eq(c[i].failed, 0, "client %d: %s", i, c[i].why);
    struct lethe_memnode_stats s;
    for (int i = 0; i < 200; i++) {
        lethe_memnode_get_stats(n, &s);
        if (s.clients == 0 && s.connections == 0)
            break;
        mn_sleep_ms(10);
    }
    cr_assert_eq(s.clients, 0);
    cr_assert_eq(s.bytes_lent, 0);
    cr_assert_eq(s.clients_total, N * 6);
    cr_assert_eq(s.pages_written, (N / 2) * 6 * 64,
                 "the tcp clients' writes went through the node");
    lethe_memnode_stop(n);
}

Test(memnode_lib, stop_with_clients_connected_cuts_them_off_cleanly)
{
    struct lethe_memnode *n;
    cr_assert_eq(lethe_memnode_start(&cfg, &n), 0);
    load_token();
    struct lethe_transport_params p =
        tc_params(LETHE_TRANSPORT_TCP, lethe_memnode_tcp_address(n), token, 1 << 20);
    struct lethe_transport *t = tc_open(&p);
    struct lethe_channel *ch = tc_channel(t, 0);
    uint8_t *page = tc_pages(1);
    cr_assert_eq(lethe_channel_write(ch, 1, page), 0);
    lethe_memnode_stop(n);
    cr_assert_lt(lethe_channel_read(ch, 1, page), 0);
    cr_assert(strstr(lethe_channel_error(ch), "memnode"), "%s", lethe_channel_error(ch));
    free(page);
    lethe_channel_close(ch);
    lethe_transport_close(t);
}
