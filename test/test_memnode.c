/* test_memnode.c — the memnode program end to end, spoken to in its own protocol over real
 * sockets: authentication, every malformed-request class (each gets an error reply or a
 * closed connection, and a good client is served afterwards), isolation between clients,
 * capacity and max_clients accounting, shm memfd passing, STATS, and a clean SIGTERM. */
#include <criterion/criterion.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "memnode_harness.h"
#include "rdma/client.h"
#include "rdma/proto.h"

static struct mn_proc node;

static void start_with(const struct mn_opts *o)
{
    if (mn_start(&node, o) < 0) {
        mn_dump_log(&node);
        cr_assert_fail("memnode did not start");
    }
}

static void start_default(void)
{
    struct mn_opts o = {0};
    start_with(&o);
}

static void stop_node(void)
{
    mn_cleanup(&node);
}

/* A connection that authenticated with the node's token. */
static void authed(struct lethe_mnc *c, const char *addr)
{
    char err[LETHE_MNC_ERR];
    cr_assert_eq(lethe_mnc_connect(c, addr, 2000000, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_handshake(c, node.token, 2000000, err), 0, "%s", err);
}

/* A connection that has read HELLO and nothing else. */
static void hello_only(struct lethe_mnc *c)
{
    char err[LETHE_MNC_ERR];
    struct lethe_proto_hdr h;
    uint8_t hello[LETHE_HELLO_LEN];
    cr_assert_eq(lethe_mnc_connect(c, node.tcp, 2000000, err), 0, "%s", err);
    lethe_mnc_set_timeout(c, 3000000);
    cr_assert_eq(lethe_mnc_recv_hdr(c, &h, err), 0, "%s", err);
    cr_assert_eq(h.type, LETHE_MSG_HELLO);
    cr_assert_eq(h.length, LETHE_HELLO_LEN);
    cr_assert_eq(lethe_mnc_recv(c, hello, sizeof(hello), err), 0, "%s", err);
    memcpy(c->ns, hello, LETHE_NONCE_LEN);
}

static void send_raw(struct lethe_mnc *c, const void *buf, size_t len)
{
    char err[LETHE_MNC_ERR];
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    cr_assert_eq(lethe_mnc_send(c, &iov, 1, err), 0, "%s", err);
}

/* Reads one reply; returns 0 or the node's -errno, with the text in err. */
static int reply(struct lethe_mnc *c, struct lethe_proto_hdr *h, char *err)
{
    return lethe_mnc_recv_hdr(c, h, err);
}

static void expect_error(struct lethe_mnc *c, int err_no, const char *text)
{
    struct lethe_proto_hdr h;
    char err[LETHE_MNC_ERR];
    int rc = reply(c, &h, err);
    cr_assert_eq(rc, -err_no, "expected -%d (%s), got %d: %s", err_no, text, rc, err);
    if (text)
        cr_assert(strstr(err, text), "error text '%s' lacks '%s'", err, text);
}

static void expect_closed(struct lethe_mnc *c)
{
    char err[LETHE_MNC_ERR];
    uint8_t b;
    int rc = lethe_mnc_recv(c, &b, 1, err);
    cr_assert_eq(rc, -ECONNRESET, "the node should have closed the connection (%d: %s)", rc, err);
}

static void send_io(struct lethe_mnc *c, uint8_t type, uint64_t id, const uint64_t *slots,
                    uint32_t n, const uint8_t *pages)
{
    uint8_t fixed[LETHE_PROTO_HDR_LEN + LETHE_IO_FIXED + 8 * 16];
    size_t len = lethe_proto_put_io(fixed, type, id, slots, n);
    send_raw(c, fixed, len);
    if (type == LETHE_MSG_WRITE)
        send_raw(c, pages, (size_t)n * LETHE_PROTO_PAGE);
}

static void write_page(struct lethe_mnc *c, uint64_t slot, int fill)
{
    uint8_t page[LETHE_PROTO_PAGE];
    memset(page, fill, sizeof(page));
    send_io(c, LETHE_MSG_WRITE, 100 + slot, &slot, 1, page);
    struct lethe_proto_hdr h;
    char err[LETHE_MNC_ERR];
    cr_assert_eq(reply(c, &h, err), 0, "%s", err);
    cr_assert_eq(h.type, LETHE_MSG_WRITE);
    cr_assert_eq(h.req_id, 100 + slot);
    cr_assert_eq(h.length, 0);
}

/* Reads a page and returns its first byte after checking the page is uniform. */
static int read_page(struct lethe_mnc *c, uint64_t slot)
{
    uint8_t page[LETHE_PROTO_PAGE];
    send_io(c, LETHE_MSG_READ, 200 + slot, &slot, 1, NULL);
    struct lethe_proto_hdr h;
    char err[LETHE_MNC_ERR];
    cr_assert_eq(reply(c, &h, err), 0, "%s", err);
    cr_assert_eq(h.req_id, 200 + slot);
    cr_assert_eq(h.length, LETHE_PROTO_PAGE);
    cr_assert_eq(lethe_mnc_recv(c, page, sizeof(page), err), 0, "%s", err);
    for (unsigned i = 1; i < sizeof(page); i++)
        cr_assert_eq(page[i], page[0], "page %llu not uniform at byte %u", (unsigned long long)slot,
                     i);
    return page[0];
}

static void stats(struct lethe_mnc *c, uint64_t *f)
{
    char err[LETHE_MNC_ERR];
    unsigned got;
    cr_assert_eq(lethe_mnc_stats(c, f, LETHE_STAT_NFIELDS, &got, err), 0, "%s", err);
    cr_assert_geq(got, LETHE_STAT_NFIELDS);
}

/* A fresh client authenticates, gets a region, writes and reads back a page. */
static void assert_node_serves(void)
{
    struct lethe_mnc c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    authed(&c, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&c, 16 * LETHE_PROTO_PAGE, 0, &r, err), 0, "%s", err);
    write_page(&c, 3, 0x3c);
    cr_assert_eq(read_page(&c, 3), 0x3c);
    lethe_mnc_close(&c);
}

/* Polls STATS until field f has value v (the node releases a region when it notices the
 * connection closed, which is asynchronous to the client's close). */
static void wait_stat(unsigned f, uint64_t v)
{
    uint64_t s[LETHE_STAT_NFIELDS] = {0};
    for (int i = 0; i < 200; i++) {
        struct lethe_mnc c;
        authed(&c, node.tcp);
        stats(&c, s);
        lethe_mnc_close(&c);
        if (s[f] == v)
            return;
        mn_sleep_ms(10);
    }
    cr_assert_fail("stat %u stayed %llu, expected %llu", f, (unsigned long long)s[f],
                   (unsigned long long)v);
}

TestSuite(memnode_cli);

static int run(const char *cmd, char *out, size_t outlen)
{
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(memnode_cli, version_help_and_check_exit_as_documented)
{
    char out[4096];
    cr_assert_eq(run(LETHE_BUILD_DIR "/bin/memnode --version", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "memnode " LETHE_VERSION "\n");
    cr_assert_eq(run(LETHE_BUILD_DIR "/bin/memnode --help", out, sizeof(out)), 0);
    cr_assert(strstr(out, "--check"));
    cr_assert_eq(run(LETHE_BUILD_DIR "/bin/memnode --bogus 2>&1", out, sizeof(out)), 2);

    char dir[64], cmd[256];
    snprintf(dir, sizeof(dir), "/tmp/lethe-mn-cli-%d", getpid());
    mkdir(dir, 0700);
    char conf[128];
    snprintf(conf, sizeof(conf), "%s/ok.conf", dir);
    FILE *f = fopen(conf, "w");
    fprintf(f, "[memnode]\ncapacity = 1G\nmax_clients = 3\n");
    fclose(f);
    snprintf(cmd, sizeof(cmd), LETHE_BUILD_DIR "/bin/memnode -c %s --check", conf);
    cr_assert_eq(run(cmd, out, sizeof(out)), 0);
    cr_assert(strstr(out, "capacity = 1G"), "effective config printed: %s", out);
    cr_assert(strstr(out, "max_clients = 3"));
    f = fopen(conf, "w");
    fprintf(f, "[memnode]\ncapacity = lots\n");
    fclose(f);
    snprintf(cmd, sizeof(cmd), LETHE_BUILD_DIR "/bin/memnode -c %s --check 2>&1", conf);
    cr_assert_eq(run(cmd, out, sizeof(out)), 2);
    cr_assert(strstr(out, "capacity"), "the problem names the key: %s", out);
    snprintf(cmd, sizeof(cmd), LETHE_BUILD_DIR "/bin/memnode -c %s/missing.conf 2>&1", dir);
    cr_assert_eq(run(cmd, out, sizeof(out)), 2);
    unlink(conf);
    rmdir(dir);
}

Test(memnode_cli, a_second_node_on_the_same_socket_fails_to_start, .init = start_default,
     .fini = stop_node)
{
    /* Same Unix socket, live node: refused with exit status 1 and a reason. */
    char conf[200], cmd[400], out[4096];
    snprintf(conf, sizeof(conf), "%s/second.conf", node.dir);
    FILE *f = fopen(conf, "w");
    fprintf(f, "[memnode]\ntcp_listen = off\nunix_socket = %s\ntoken_file = %s\n", node.sock,
            node.token_file);
    fclose(f);
    snprintf(cmd, sizeof(cmd), LETHE_BUILD_DIR "/bin/memnode -c %s 2>&1", conf);
    cr_assert_eq(run(cmd, out, sizeof(out)), 1);
    cr_assert(strstr(out, "another memory node is listening"), "%s", out);
    unlink(conf);
    assert_node_serves();
}

Test(memnode_cli, a_missing_token_file_is_created_0600_and_logged, .fini = stop_node)
{
    struct mn_opts o = {.no_token_file = true};
    start_with(&o);
    struct stat st;
    cr_assert_eq(stat(node.token_file, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert(mn_log_has(&node, "created it (mode 0600)"));
    assert_node_serves();
}

Test(memnode_cli, sigterm_stops_cleanly_with_stats_and_unlinks_the_socket, .init = start_default,
     .fini = stop_node)
{
    assert_node_serves();
    struct lethe_mnc c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    authed(&c, node.tcp); /* a client still connected at shutdown */
    cr_assert_eq(lethe_mnc_alloc(&c, 4 * LETHE_PROTO_PAGE, 0, &r, err), 0, "%s", err);
    int st = mn_signal_wait(&node, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    cr_assert(mn_log_has(&node, "SIGTERM received"));
    cr_assert(mn_log_has(&node, "stopped: clients 1 (2 since start)"), "stats logged at stop");
    cr_assert(mn_log_has(&node, "writes 1 (1 pages)"));
    cr_assert_eq(access(node.sock, F_OK), -1, "socket unlinked");
    expect_closed(&c);
    lethe_mnc_close(&c);
}

Test(memnode_cli, sigint_stops_cleanly_too, .init = start_default, .fini = stop_node)
{
    int st = mn_signal_wait(&node, SIGINT);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    cr_assert(mn_log_has(&node, "SIGINT received"));
    cr_assert_eq(access(node.sock, F_OK), -1, "socket unlinked");
}

TestSuite(memnode_auth, .init = start_default, .fini = stop_node);

Test(memnode_auth, wrong_token_is_refused_and_the_node_serves_on)
{
    struct lethe_mnc c;
    char err[LETHE_MNC_ERR];
    cr_assert_eq(lethe_mnc_connect(&c, node.tcp, 2000000, err), 0, "%s", err);
    int rc = lethe_mnc_handshake(&c, "not-the-token", 2000000, err);
    cr_assert_eq(rc, -EACCES, "%d: %s", rc, err);
    cr_assert(strstr(err, "authentication failed"), "%s", err);
    expect_closed(&c);
    lethe_mnc_close(&c);
    assert_node_serves();
    uint64_t s[LETHE_STAT_NFIELDS];
    authed(&c, node.tcp);
    stats(&c, s);
    cr_assert_eq(s[LETHE_STAT_AUTH_FAILURES], 1);
    lethe_mnc_close(&c);
}

Test(memnode_auth, wrong_token_over_the_unix_socket_is_refused_too)
{
    struct lethe_mnc c;
    char err[LETHE_MNC_ERR];
    cr_assert_eq(lethe_mnc_connect(&c, node.sock, 2000000, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_handshake(&c, "x", 2000000, err), -EACCES, "%s", err);
    lethe_mnc_close(&c);
    authed(&c, node.sock);
    lethe_mnc_close(&c);
}

Test(memnode_auth, a_request_before_auth_is_refused_and_closed)
{
    struct lethe_mnc c;
    hello_only(&c);
    uint8_t sz[8];
    lethe_put_le64(sz, LETHE_PROTO_PAGE);
    uint8_t msg[LETHE_PROTO_HDR_LEN + 8];
    lethe_proto_put_hdr(msg, LETHE_MSG_ALLOC, 0, 5, 8, 0);
    memcpy(msg + LETHE_PROTO_HDR_LEN, sz, 8);
    send_raw(&c, msg, sizeof(msg));
    expect_error(&c, EACCES, "authenticate first");
    expect_closed(&c);
    lethe_mnc_close(&c);
    assert_node_serves();
}

Test(memnode_auth, a_replayed_proof_fails_on_a_new_connection)
{
    /* Proofs bind the node's nonce: a proof made for one connection is useless on another. */
    struct lethe_mnc a, b;
    hello_only(&a);
    hello_only(&b);
    uint8_t auth[LETHE_AUTH_LEN], msg[LETHE_PROTO_HDR_LEN + LETHE_AUTH_LEN];
    memset(auth, 1, LETHE_NONCE_LEN);
    lethe_auth_client_proof(node.token, a.ns, auth, auth + LETHE_NONCE_LEN);
    lethe_proto_put_hdr(msg, LETHE_MSG_AUTH, 0, 1, LETHE_AUTH_LEN, 0);
    memcpy(msg + LETHE_PROTO_HDR_LEN, auth, sizeof(auth));
    send_raw(&b, msg, sizeof(msg));
    expect_error(&b, EACCES, NULL);
    send_raw(&a, msg, sizeof(msg)); /* on its own connection, the same proof is good */
    struct lethe_proto_hdr h;
    char err[LETHE_MNC_ERR];
    cr_assert_eq(reply(&a, &h, err), 0, "%s", err);
    cr_assert_eq(h.length, LETHE_MAC_LEN);
    lethe_mnc_close(&a);
    lethe_mnc_close(&b);
}

Test(memnode_auth, auth_twice_is_an_error_but_keeps_the_connection)
{
    struct lethe_mnc c;
    authed(&c, node.tcp);
    uint8_t msg[LETHE_PROTO_HDR_LEN + LETHE_AUTH_LEN] = {0};
    lethe_proto_put_hdr(msg, LETHE_MSG_AUTH, 0, 9, LETHE_AUTH_LEN, 0);
    send_raw(&c, msg, sizeof(msg));
    expect_error(&c, EINVAL, "already authenticated");
    uint64_t s[LETHE_STAT_NFIELDS];
    stats(&c, s);
    lethe_mnc_close(&c);
}

TestSuite(memnode_malformed, .init = start_default, .fini = stop_node);

Test(memnode_malformed, bad_magic_gets_an_error_and_a_closed_connection)
{
    struct lethe_mnc c;
    authed(&c, node.tcp);
    send_raw(&c, "GET / HTTP/1.0\r\n\r\nxxxxxxxxxx", 28);
    expect_error(&c, EPROTO, "bad magic");
    expect_closed(&c);
    lethe_mnc_close(&c);
    assert_node_serves();
}

Test(memnode_malformed, bad_magic_before_auth_is_refused_too)
{
    struct lethe_mnc c;
    hello_only(&c);
    send_raw(&c, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24);
    expect_error(&c, EPROTO, NULL);
    expect_closed(&c);
    lethe_mnc_close(&c);
    assert_node_serves();
}

Test(memnode_malformed, bad_version_gets_an_error_and_a_closed_connection)
{
    struct lethe_mnc c;
    authed(&c, node.tcp);
    uint8_t msg[LETHE_PROTO_HDR_LEN];
    lethe_proto_put_hdr(msg, LETHE_MSG_STATS, 0, 1, 0, 0);
    msg[4] = 7;
    send_raw(&c, msg, sizeof(msg));
    expect_error(&c, EPROTONOSUPPORT, "version");
    expect_closed(&c);
    lethe_mnc_close(&c);
    assert_node_serves();
}

Test(memnode_malformed, unknown_type_gets_an_error_and_the_connection_goes_on)
{
    struct lethe_mnc c;
    authed(&c, node.tcp);
    uint8_t msg[LETHE_PROTO_HDR_LEN + 5];
    lethe_proto_put_hdr(msg, 77, 0, 1, 5, 0);
    memcpy(msg + LETHE_PROTO_HDR_LEN, "hello", 5);
    send_raw(&c, msg, sizeof(msg));
    expect_error(&c, ENOSYS, "unknown message type");
    uint64_t s[LETHE_STAT_NFIELDS];
    stats(&c, s);
    cr_assert_geq(s[LETHE_STAT_ERRORS], 1);
    lethe_mnc_close(&c);
}

Test(memnode_malformed, truncated_header_then_hangup_leaves_the_node_serving)
{
    struct lethe_mnc c;
    authed(&c, node.tcp);
    uint8_t msg[LETHE_PROTO_HDR_LEN];
    lethe_proto_put_hdr(msg, LETHE_MSG_STATS, 0, 1, 0, 0);
    send_raw(&c, msg, 11);
    lethe_mnc_close(&c);
    /* and a truncated payload then hangup */
    authed(&c, node.tcp);
    uint64_t slot = 0;
    uint8_t fixed[64];
    size_t n = lethe_proto_put_io(fixed, LETHE_MSG_WRITE, 1, &slot, 1);
    send_raw(&c, fixed, n);
    send_raw(&c, "partial page", 12);
    lethe_mnc_close(&c);
    assert_node_serves();
}

Test(memnode_malformed, truncated_payload_gets_an_error_and_the_connection_goes_on)
{
    struct lethe_mnc c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    authed(&c, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&c, 8 * LETHE_PROTO_PAGE, 0, &r, err), 0, "%s", err);
    /* READ that says 3 pages but carries 2 slots */
    uint8_t msg[LETHE_PROTO_HDR_LEN + 8 + 16];
    lethe_proto_put_hdr(msg, LETHE_MSG_READ, 0, 1, 8 + 16, 0);
    lethe_put_le32(msg + LETHE_PROTO_HDR_LEN, 3);
    lethe_put_le32(msg + LETHE_PROTO_HDR_LEN + 4, 0);
    lethe_put_le64(msg + LETHE_PROTO_HDR_LEN + 8, 0);
    lethe_put_le64(msg + LETHE_PROTO_HDR_LEN + 16, 1);
    send_raw(&c, msg, sizeof(msg));
    expect_error(&c, EBADMSG, "truncated payload");
    write_page(&c, 1, 0x11);
    cr_assert_eq(read_page(&c, 1), 0x11);
    lethe_mnc_close(&c);
}

Test(memnode_malformed, oversized_length_gets_an_error_and_a_closed_connection)
{
    struct lethe_mnc c;
    authed(&c, node.tcp);
    uint8_t msg[LETHE_PROTO_HDR_LEN];
    lethe_proto_put_hdr(msg, LETHE_MSG_WRITE, 0, 1, 0x40000000, 0);
    send_raw(&c, msg, sizeof(msg));
    expect_error(&c, EMSGSIZE, "exceeds");
    expect_closed(&c);
    lethe_mnc_close(&c);
    assert_node_serves();
}

Test(memnode_malformed, out_of_range_slot_is_refused_whole_and_the_connection_goes_on)
{
    struct lethe_mnc c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    authed(&c, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&c, 4 * LETHE_PROTO_PAGE, 0, &r, err), 0, "%s", err);
    write_page(&c, 0, 0x22);
    /* a WRITE of slots 0 and 4 (beyond 4 pages): nothing is written, not even slot 0 */
    uint64_t slots[2] = {0, 4};
    uint8_t pages[2 * LETHE_PROTO_PAGE];
    memset(pages, 0x99, sizeof(pages));
    send_io(&c, LETHE_MSG_WRITE, 7, slots, 2, pages);
    expect_error(&c, ERANGE, "slot 4 is beyond this client's region of 4 pages");
    cr_assert_eq(read_page(&c, 0), 0x22, "slot 0 untouched by the refused request");
    uint64_t huge = ~0ULL;
    send_io(&c, LETHE_MSG_READ, 8, &huge, 1, NULL);
    expect_error(&c, ERANGE, NULL);
    cr_assert_eq(read_page(&c, 0), 0x22);
    lethe_mnc_close(&c);
}

Test(memnode_malformed, io_before_alloc_is_an_error)
{
    struct lethe_mnc c;
    authed(&c, node.tcp);
    uint64_t slot = 0;
    send_io(&c, LETHE_MSG_READ, 1, &slot, 1, NULL);
    expect_error(&c, EINVAL, "ALLOC or ATTACH first");
    lethe_mnc_close(&c);
}

Test(memnode_malformed, alloc_twice_is_refused)
{
    struct lethe_mnc c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    authed(&c, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&c, 4 * LETHE_PROTO_PAGE, 0, &r, err), 0, "%s", err);
    int rc = lethe_mnc_alloc(&c, 4 * LETHE_PROTO_PAGE, 0, &r, err);
    cr_assert_eq(rc, -EEXIST, "%d: %s", rc, err);
    cr_assert(strstr(err, "already holds region"), "%s", err);
    write_page(&c, 2, 0x42);
    lethe_mnc_close(&c);
}

Test(memnode_malformed, alloc_over_capacity_is_refused_with_a_clear_reason)
{
    struct lethe_mnc c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    authed(&c, node.tcp);
    int rc = lethe_mnc_alloc(&c, 65ULL << 20, 0, &r, err);
    cr_assert_eq(rc, -ENOSPC, "%d: %s", rc, err);
    cr_assert(strstr(err, "not enough capacity: asked for 65M, 64M of the node's 64M left"), "%s",
              err);
    cr_assert_eq(lethe_mnc_alloc(&c, 64ULL << 20, 0, &r, err), 0, "all of it is fine: %s", err);
    lethe_mnc_close(&c);
}

Test(memnode_malformed, shm_alloc_over_tcp_is_refused)
{
    struct lethe_mnc c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    authed(&c, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&c, LETHE_PROTO_PAGE, LETHE_F_ALLOC_SHM, &r, err), -EINVAL, "%s",
                 err);
    cr_assert_eq(lethe_mnc_alloc(&c, LETHE_PROTO_PAGE, LETHE_F_ALLOC_RDMA, &r, err), -ENOTSUP, "%s",
                 err);
    cr_assert(strstr(err, "no RDMA listener"), "%s", err);
    lethe_mnc_close(&c);
}

Test(memnode_malformed, a_storm_of_garbage_connections_leaves_the_node_serving)
{
    /* Random bytes after HELLO, many times over: every one ends in an error or a close. */
    uint8_t junk[512];
    for (int i = 0; i < 40; i++) {
        struct lethe_mnc c;
        char err[LETHE_MNC_ERR];
        cr_assert_eq(lethe_mnc_connect(&c, i % 2 ? node.tcp : node.sock, 2000000, err), 0);
        lethe_random_bytes(junk, sizeof(junk));
        if (i % 3 == 0)
            memcpy(junk, "LTH1\x01", 5); /* good magic and version, garbage after */
        struct iovec iov = {.iov_base = junk, .iov_len = (size_t)(i * 13) % sizeof(junk) + 1};
        lethe_mnc_send(&c, &iov, 1, err);
        lethe_mnc_close(&c);
    }
    assert_node_serves();
}

TestSuite(memnode_clients, .fini = stop_node);

Test(memnode_clients, two_clients_cannot_reach_each_others_pages, .init = start_default)
{
    struct lethe_mnc a, b;
    struct lethe_mnc_region ra, rb;
    char err[LETHE_MNC_ERR];
    authed(&a, node.tcp);
    authed(&b, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&a, 8 * LETHE_PROTO_PAGE, 0, &ra, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_alloc(&b, 4 * LETHE_PROTO_PAGE, 0, &rb, err), 0, "%s", err);
    cr_assert_neq(ra.id, rb.id);
    for (uint64_t s = 0; s < 8; s++)
        write_page(&a, s, 0xa0 + (int)s);
    for (uint64_t s = 0; s < 4; s++)
        cr_assert_eq(read_page(&b, s), 0, "B sees zeros, not A's data, at its slot %llu",
                     (unsigned long long)s);
    uint64_t slot = 5; /* exists in A's region, not in B's */
    send_io(&b, LETHE_MSG_READ, 1, &slot, 1, NULL);
    expect_error(&b, ERANGE, NULL);
    write_page(&b, 0, 0xbb);
    for (uint64_t s = 0; s < 8; s++)
        cr_assert_eq(read_page(&a, s), 0xa0 + (int)s, "A's data intact");
    lethe_mnc_close(&a);
    lethe_mnc_close(&b);
}

Test(memnode_clients, attach_needs_the_region_key, .init = start_default)
{
    struct lethe_mnc owner, other, good, thief;
    struct lethe_mnc_region r, r2;
    char err[LETHE_MNC_ERR];
    uint64_t pages;
    authed(&owner, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&owner, 8 * LETHE_PROTO_PAGE, 0, &r, err), 0, "%s", err);
    write_page(&owner, 6, 0x66);

    authed(&thief, node.tcp);
    uint8_t forged[LETHE_REGION_KEY_LEN];
    memcpy(forged, r.key, sizeof(forged));
    forged[0] ^= 1;
    int rc = lethe_mnc_attach(&thief, r.id, forged, &pages, err);
    cr_assert_eq(rc, -EPERM, "%d: %s", rc, err);
    expect_closed(&thief);
    lethe_mnc_close(&thief);

    /* another client's own key does not open this region either */
    authed(&other, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&other, 4 * LETHE_PROTO_PAGE, 0, &r2, err), 0, "%s", err);
    authed(&thief, node.tcp);
    cr_assert_eq(lethe_mnc_attach(&thief, r.id, r2.key, &pages, err), -EPERM, "%s", err);
    lethe_mnc_close(&thief);

    authed(&good, node.tcp);
    cr_assert_eq(lethe_mnc_attach(&good, r.id, r.key, &pages, err), 0, "%s", err);
    cr_assert_eq(pages, 8);
    cr_assert_eq(read_page(&good, 6), 0x66, "an attached channel sees the owner's pages");
    cr_assert_eq(lethe_mnc_attach(&good, r.id, r.key, &pages, err), -EEXIST, "%s", err);

    uint64_t s[LETHE_STAT_NFIELDS];
    stats(&good, s);
    cr_assert_eq(s[LETHE_STAT_AUTH_FAILURES], 2);
    /* The owner leaves: the region goes, and the attached connection with it. */
    lethe_mnc_close(&owner);
    expect_closed(&good);
    lethe_mnc_close(&good);
    lethe_mnc_close(&other);
}

Test(memnode_clients, capacity_is_returned_when_a_client_leaves, .init = start_default)
{
    struct lethe_mnc a, b, c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    authed(&a, node.tcp);
    authed(&b, node.tcp);
    authed(&c, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&a, 40ULL << 20, 0, &r, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_alloc(&b, 24ULL << 20, 0, &r, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_alloc(&c, 4ULL << 20, 0, &r, err), -ENOSPC, "%s", err);
    uint64_t s[LETHE_STAT_NFIELDS];
    stats(&c, s);
    cr_assert_eq(s[LETHE_STAT_BYTES_LENT], 64ULL << 20);
    cr_assert_eq(s[LETHE_STAT_CLIENTS], 2);
    lethe_mnc_close(&a);
    wait_stat(LETHE_STAT_BYTES_LENT, 24ULL << 20);
    cr_assert_eq(lethe_mnc_alloc(&c, 40ULL << 20, 0, &r, err), 0, "%s", err);
    lethe_mnc_close(&b);
    lethe_mnc_close(&c);
    wait_stat(LETHE_STAT_BYTES_LENT, 0);
    wait_stat(LETHE_STAT_CLIENTS, 0);
}

static void start_two_clients(void)
{
    struct mn_opts o = {.max_clients = 2};
    start_with(&o);
}

Test(memnode_clients, max_clients_is_enforced_and_freed_on_leave, .init = start_two_clients)
{
    struct lethe_mnc a, b, c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    authed(&a, node.tcp);
    authed(&b, node.sock);
    authed(&c, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&a, LETHE_PROTO_PAGE, 0, &r, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_alloc(&b, LETHE_PROTO_PAGE, 0, &r, err), 0, "%s", err);
    int rc = lethe_mnc_alloc(&c, LETHE_PROTO_PAGE, 0, &r, err);
    cr_assert_eq(rc, -EUSERS, "%d: %s", rc, err);
    cr_assert(strstr(err, "max_clients (2)"), "%s", err);
    lethe_mnc_close(&b);
    wait_stat(LETHE_STAT_CLIENTS, 1);
    cr_assert_eq(lethe_mnc_alloc(&c, LETHE_PROTO_PAGE, 0, &r, err), 0, "%s", err);
    lethe_mnc_close(&a);
    lethe_mnc_close(&c);
}

Test(memnode_clients, a_reconnecting_client_gets_a_fresh_zeroed_region, .init = start_default)
{
    struct lethe_mnc c;
    struct lethe_mnc_region r1, r2;
    char err[LETHE_MNC_ERR];
    authed(&c, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&c, 4 * LETHE_PROTO_PAGE, 0, &r1, err), 0, "%s", err);
    write_page(&c, 1, 0x77);
    lethe_mnc_close(&c);
    authed(&c, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&c, 4 * LETHE_PROTO_PAGE, 0, &r2, err), 0, "%s", err);
    cr_assert_neq(r1.id, r2.id);
    cr_assert_eq(read_page(&c, 1), 0, "no data is kept across connections");
    lethe_mnc_close(&c);
}

Test(memnode_clients, pipelined_requests_are_answered_in_order_with_their_ids,
     .init = start_default)
{
    struct lethe_mnc c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    authed(&c, node.tcp);
    cr_assert_eq(lethe_mnc_alloc(&c, 16 * LETHE_PROTO_PAGE, 0, &r, err), 0, "%s", err);
    /* WRITE 1, WRITE 2, READ 1+2, STATS, READ beyond, READ 2: all sent before any reply */
    uint8_t p1[LETHE_PROTO_PAGE], p2[LETHE_PROTO_PAGE], back[2 * LETHE_PROTO_PAGE];
    memset(p1, 1, sizeof(p1));
    memset(p2, 2, sizeof(p2));
    uint64_t s1 = 1, s2 = 2, both[2] = {1, 2}, bad = 99;
    send_io(&c, LETHE_MSG_WRITE, 1001, &s1, 1, p1);
    send_io(&c, LETHE_MSG_WRITE, 1002, &s2, 1, p2);
    send_io(&c, LETHE_MSG_READ, 1003, both, 2, NULL);
    uint8_t st[LETHE_PROTO_HDR_LEN];
    lethe_proto_put_hdr(st, LETHE_MSG_STATS, 0, 1004, 0, 0);
    send_raw(&c, st, sizeof(st));
    send_io(&c, LETHE_MSG_READ, 1005, &bad, 1, NULL);
    send_io(&c, LETHE_MSG_READ, 1006, &s2, 1, NULL);
    struct lethe_proto_hdr h;
    cr_assert_eq(reply(&c, &h, err), 0);
    cr_assert_eq(h.req_id, 1001);
    cr_assert_eq(reply(&c, &h, err), 0);
    cr_assert_eq(h.req_id, 1002);
    cr_assert_eq(reply(&c, &h, err), 0);
    cr_assert_eq(h.req_id, 1003);
    cr_assert_eq(lethe_mnc_recv(&c, back, sizeof(back), err), 0);
    cr_assert_eq(back[0], 1);
    cr_assert_eq(back[LETHE_PROTO_PAGE + 5], 2);
    cr_assert_eq(reply(&c, &h, err), 0);
    cr_assert_eq(h.req_id, 1004);
    uint8_t sb[8 + 8 * LETHE_STAT_NFIELDS];
    cr_assert_eq(h.length, sizeof(sb));
    cr_assert_eq(lethe_mnc_recv(&c, sb, sizeof(sb), err), 0);
    cr_assert_eq(lethe_le64(sb + 8 + 8 * LETHE_STAT_PAGES_WRITTEN), 2);
    cr_assert_eq(reply(&c, &h, err), -ERANGE);
    cr_assert_eq(h.req_id, 1005);
    cr_assert_eq(reply(&c, &h, err), 0);
    cr_assert_eq(h.req_id, 1006);
    cr_assert_eq(lethe_mnc_recv(&c, back, LETHE_PROTO_PAGE, err), 0);
    cr_assert_eq(back[100], 2);
    lethe_mnc_close(&c);
}

Test(memnode_clients, shm_alloc_hands_over_a_sealed_memfd_of_the_region, .init = start_default)
{
    struct lethe_mnc c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    authed(&c, node.sock);
    cr_assert_eq(lethe_mnc_alloc(&c, 8 * LETHE_PROTO_PAGE, LETHE_F_ALLOC_SHM, &r, err), 0, "%s",
                 err);
    cr_assert_geq(r.memfd, 0);
    uint8_t *map = mmap(NULL, 8 * LETHE_PROTO_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, r.memfd, 0);
    cr_assert_neq(map, MAP_FAILED);
    memset(map + 3 * LETHE_PROTO_PAGE, 0x5e, LETHE_PROTO_PAGE);
    cr_assert_eq(read_page(&c, 3), 0x5e, "the node serves what the client wrote to the memfd");
    write_page(&c, 4, 0x4f);
    cr_assert_eq(map[4 * LETHE_PROTO_PAGE + 17], 0x4f, "and the client sees what the node wrote");
    /* The seal keeps the client from shrinking the memfd under the node's mapping. */
    cr_assert_eq(ftruncate(r.memfd, 0), -1);
    cr_assert_eq(errno, EPERM);
    cr_assert_eq(read_page(&c, 7), 0);
    munmap(map, 8 * LETHE_PROTO_PAGE);
    close(r.memfd);
    lethe_mnc_close(&c);
    assert_node_serves();
}

static void start_many_clients(void)
{
    struct mn_opts o = {.max_clients = 64};
    start_with(&o);
}

Test(memnode_clients, thirty_two_clients_at_once_each_get_their_own_region,
     .init = start_many_clients)
{
    enum { N = 32 };
    struct lethe_mnc c[N];
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    for (int i = 0; i < N; i++) {
        authed(&c[i], i % 2 ? node.tcp : node.sock);
        cr_assert_eq(lethe_mnc_alloc(&c[i], LETHE_PROTO_PAGE * 4, 0, &r, err), 0, "%s", err);
        write_page(&c[i], 2, i + 1);
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(read_page(&c[i], 2), i + 1);
    uint64_t s[LETHE_STAT_NFIELDS];
    stats(&c[0], s);
    cr_assert_eq(s[LETHE_STAT_CLIENTS], N);
    cr_assert_eq(s[LETHE_STAT_CONNECTIONS], N);
    for (int i = 0; i < N; i++)
        lethe_mnc_close(&c[i]);
    wait_stat(LETHE_STAT_CLIENTS, 0);
}
