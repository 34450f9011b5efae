/* test_transport_verbs.c — the verbs transport and the memnode's RDMA CM listener.
 *
 * Without an RDMA device (these machines): both sides fail at start-up with a message that
 * says so. With one (rdma-vm, soft-RoCE; the node must listen on the device's address, taken
 * from RDMA_VM_IP): the checks every transport passes, run end to end over RDMA, plus a
 * connect with a forged region proof, refused by the node, a released region's pages zeroed
 * before the next client gets them, and a node that cannot pin its capacity refusing to
 * start. Anywhere: the arena (memnode/arena.h) a node without on-demand paging lends from. */
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "arena.h"
#include "core/log.h"
#include "transport_checks.h"

static bool have_rdma_device(void)
{
    int n = 0;
    struct ibv_device **l = ibv_get_device_list(&n);
    if (l)
        ibv_free_device_list(l);
    return l && n > 0;
}

static char logpath[128];

/* Sends this process's log lines to a file the test can read. */
static void capture_log(void)
{
    snprintf(logpath, sizeof(logpath), "/tmp/lethe-verbs-test-%d.log", getpid());
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    lethe_log_set_fd(fd);
}

static bool log_has(const char *needle)
{
    FILE *f = fopen(logpath, "r");
    char line[1024];
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return found;
}

static void drop_log(void)
{
    lethe_log_set_fd(2);
    unlink(logpath);
}

Test(verbs_no_device, opening_the_transport_fails_saying_there_is_no_rdma_device,
     .init = capture_log, .fini = drop_log)
{
    if (have_rdma_device())
        cr_skip_test("an RDMA device exists here; the end-to-end tests cover it");
    struct lethe_transport_params p =
        tc_params(LETHE_TRANSPORT_VERBS, "127.0.0.1:7400", "token", 1 << 20);
    struct lethe_transport *t;
    cr_assert_eq(lethe_transport_open(&p, &t), -ENODEV);
    cr_assert(log_has("verbs: no RDMA device found (ibv_get_device_list returned none); "
                      "use transport = shm or tcp"));
    cr_assert(log_has("verbs 127.0.0.1:7400"), "the message names the node");
}

Test(verbs_no_device, a_memnode_with_rdma_listen_fails_to_start_saying_why)
{
    if (have_rdma_device())
        cr_skip_test("an RDMA device exists here; the end-to-end tests cover it");
    struct mn_proc m;
    struct mn_opts o = {.extra = "rdma_listen = 127.0.0.1:0\n"};
    cr_assert_lt(mn_start(&m, &o), 0, "the node must not start");
    cr_assert(mn_log_has(&m, "verbs: no RDMA device found (ibv_get_device_list returned none)"));
    cr_assert(mn_log_has(&m, "rdma_listen = off"), "the message says what to do");
    cr_assert_eq(access(m.sock, F_OK), -1, "no socket left behind");
    mn_cleanup(&m);
}

/* ---- the arena, anywhere ---- */

#define MiB (1ull << 20)

static struct mn_arena *arena_of(uint64_t bytes)
{
    struct mn_arena *a;
    struct mn_arena_info info;
    char why[256] = "";
    cr_assert_eq(mn_arena_create(bytes, &a, &info, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(info.bytes, bytes);
    cr_assert_geq(info.threads, 1);
    cr_assert_eq(mn_arena_free_bytes(a), bytes);
    return a;
}

static struct mn_arena_span *take(struct mn_arena *a, uint64_t bytes)
{
    struct mn_arena_span *s;
    char why[256] = "";
    cr_assert_eq(mn_arena_take(a, bytes, &s, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(s->bytes, bytes);
    return s;
}

static bool all_zero(const uint8_t *p, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

Test(verbs_arena, a_span_is_zero_and_is_zero_again_for_the_next_taker_after_it_is_given_back)
{
    struct mn_arena *a = arena_of(4 * MiB);
    struct mn_arena_span *s = take(a, 4 * MiB);
    cr_assert_not(s->own_mapping, "one free run is long enough: a piece of the arena's view");
    cr_assert(all_zero(s->base, s->bytes), "a fresh arena is zero");
    memset(s->base, 0xa5, s->bytes);
    cr_assert_eq(mn_arena_free_bytes(a), 0);
    mn_arena_give(a, s, true);
    cr_assert_eq(mn_arena_free_bytes(a), 4 * MiB);
    s = take(a, 4 * MiB);
    cr_assert(all_zero(s->base, s->bytes), "the previous taker's bytes were zeroed");
    mn_arena_give(a, s, true);
    mn_arena_destroy(a);
}

Test(verbs_arena, a_span_larger_than_any_free_run_is_the_runs_mapped_side_by_side)
{
    struct mn_arena *a = arena_of(4 * MiB);
    struct mn_arena_span *q[4];
    for (int i = 0; i < 4; i++)
        q[i] = take(a, MiB);
    cr_assert_eq(q[1]->base, q[0]->base + MiB, "first fit takes the view in order");
    mn_arena_give(a, q[0], true);
    mn_arena_give(a, q[2], true);
    cr_assert_eq(mn_arena_free_runs(a), 2, "two holes");
    struct mn_arena_span *s = take(a, 2 * MiB);
    cr_assert(s->own_mapping, "no run holds 2 MiB: the two holes at an address of their own");
    cr_assert_eq(s->nruns, 2);
    cr_assert_eq(mn_arena_free_bytes(a), 0);
    cr_assert(all_zero(s->base, s->bytes));
    /* The mapping is the arena's pages: what it writes is where its runs are. Given back
     * without zeroing, a one-run taker of the first hole finds it. */
    memset(s->base, 0x11, MiB);
    memset(s->base + MiB, 0x22, MiB);
    mn_arena_give(a, s, false);
    struct mn_arena_span *first = take(a, MiB);
    cr_assert_eq(first->base, q[1]->base - MiB, "the first hole");
    cr_assert_eq(first->base[0], 0x11);
    cr_assert_eq(first->base[MiB - 1], 0x11);
    struct mn_arena_span *second = take(a, MiB);
    cr_assert_eq(second->base[0], 0x22);
    mn_arena_give(a, first, true);
    mn_arena_give(a, second, true);
    mn_arena_give(a, q[1], true);
    mn_arena_give(a, q[3], true);
    cr_assert_eq(mn_arena_free_runs(a), 1, "every run merged back into one");
    cr_assert_eq(mn_arena_free_bytes(a), 4 * MiB);
    struct mn_arena_span *all = take(a, 4 * MiB);
    cr_assert_not(all->own_mapping);
    cr_assert(all_zero(all->base, all->bytes), "everything given back with scrub is zero");
    mn_arena_give(a, all, true);
    mn_arena_destroy(a);
}

Test(verbs_arena, a_take_beyond_what_is_free_fails_saying_how_much_is_free)
{
    struct mn_arena *a = arena_of(2 * MiB);
    struct mn_arena_span *s = take(a, MiB);
    struct mn_arena_span *t;
    char why[256] = "";
    cr_assert_eq(mn_arena_take(a, 2 * MiB, &t, why, sizeof(why)), -ENOSPC);
    cr_assert(strstr(why, "the arena has 1M free, asked for 2M"), "%s", why);
    mn_arena_give(a, s, true);
    mn_arena_destroy(a);
}

Test(verbs_arena, an_arena_larger_than_the_memory_is_refused_at_once_naming_memavailable)
{
    struct mn_arena *a;
    char why[256] = "";
    cr_assert_eq(mn_arena_create(1ull << 50, &a, NULL, why, sizeof(why)), -ENOMEM);
    cr_assert(strstr(why, "MemAvailable"), "%s", why);
    cr_assert_eq(mn_mem_check_pinnable(MiB, why, sizeof(why)), 0, "a megabyte can be pinned");
}

/* ---- end to end, where a device exists ---- */

static struct mn_proc node;

static void start_rdma_node(void)
{
    if (!have_rdma_device())
        return;
    const char *ip = getenv("RDMA_VM_IP");
    char extra[128];
    snprintf(extra, sizeof(extra), "rdma_listen = %s:0\n", ip ? ip : "0.0.0.0");
    struct mn_opts o = {.capacity = "32M", .extra = extra, .host = ip ? ip : "127.0.0.1"};
    if (mn_start(&node, &o) < 0) {
        mn_dump_log(&node);
        cr_assert_fail("memnode with rdma_listen did not start");
    }
}

static void stop_rdma_node(void)
{
    mn_cleanup(&node);
}

TestSuite(verbs_e2e, .init = start_rdma_node, .fini = stop_rdma_node, .timeout = 120);

Test(verbs_e2e, pages_and_batches_round_trip_over_rdma)
{
    if (!have_rdma_device())
        cr_skip_test("no RDMA device (run in rdma-vm)");
    struct lethe_transport_params p =
        tc_params(LETHE_TRANSPORT_VERBS, node.tcp, node.token, 4 << 20);
    struct lethe_transport *t = tc_open(&p);
    tc_round_trips(t);
    lethe_transport_close(t);
}

Test(verbs_e2e, concurrent_channels_over_rdma)
{
    if (!have_rdma_device())
        cr_skip_test("no RDMA device (run in rdma-vm)");
    struct lethe_transport_params p =
        tc_params(LETHE_TRANSPORT_VERBS, node.tcp, node.token, 1 << 20);
    struct lethe_transport *t = tc_open(&p);
    tc_concurrent_channels(t, 3, 5);
    lethe_transport_close(t);
}

Test(verbs_e2e, a_connect_with_a_forged_proof_is_rejected)
{
    if (!have_rdma_device())
        cr_skip_test("no RDMA device (run in rdma-vm)");
    /* Hold a region legitimately, then connect RDMA CM with a proof from the wrong key. */
    struct lethe_mnc c;
    struct lethe_mnc_region r;
    char err[LETHE_MNC_ERR];
    cr_assert_eq(lethe_mnc_connect(&c, node.tcp, 2000000, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_handshake(&c, node.token, 2000000, err), 0, "%s", err);
    cr_assert_eq(lethe_mnc_alloc(&c, 1 << 20, LETHE_F_ALLOC_RDMA, &r, err), 0, "%s", err);
    cr_assert_neq(r.rdma_port, 0);

    struct rdma_event_channel *ec = rdma_create_event_channel();
    struct rdma_cm_id *id;
    cr_assert_eq(rdma_create_id(ec, &id, NULL, RDMA_PS_TCP), 0);
    char host[64], port[16];
    cr_assert_eq(lethe_split_hostport(node.tcp, host, sizeof(host), port, sizeof(port)), 0);
    snprintf(port, sizeof(port), "%u", r.rdma_port);
    struct rdma_addrinfo hints = {.ai_port_space = RDMA_PS_TCP}, *res;
    cr_assert_eq(rdma_getaddrinfo(host, port, &hints, &res), 0);
    cr_assert_eq(rdma_resolve_addr(id, NULL, res->ai_dst_addr, 2000), 0);
    rdma_freeaddrinfo(res);
    struct rdma_cm_event *ev;
    cr_assert_eq(rdma_get_cm_event(ec, &ev), 0);
    cr_assert_eq(ev->event, RDMA_CM_EVENT_ADDR_RESOLVED);
    rdma_ack_cm_event(ev);
    cr_assert_eq(rdma_resolve_route(id, 2000), 0);
    cr_assert_eq(rdma_get_cm_event(ec, &ev), 0);
    cr_assert_eq(ev->event, RDMA_CM_EVENT_ROUTE_RESOLVED);
    rdma_ack_cm_event(ev);
    struct ibv_qp_init_attr qa = {
        .cap = {.max_send_wr = 1, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1},
        .qp_type = IBV_QPT_RC};
    cr_assert_eq(rdma_create_qp(id, NULL, &qa), 0);
    uint8_t key[LETHE_REGION_KEY_LEN];
    memcpy(key, r.key, sizeof(key));
    key[3] ^= 0x40;
    struct lethe_verbs_connect vc = {.region_id = r.id, .seq = 1};
    lethe_auth_verbs_proof(key, r.id, 1, vc.proof);
    uint8_t pd[LETHE_VERBS_CONNECT_LEN];
    lethe_verbs_put_connect(pd, &vc);
    struct rdma_conn_param cp = {.private_data = pd,
                                 .private_data_len = sizeof(pd),
                                 .initiator_depth = 1,
                                 .responder_resources = 1,
                                 .retry_count = 3};
    cr_assert_eq(rdma_connect(id, &cp), 0);
    cr_assert_eq(rdma_get_cm_event(ec, &ev), 0);
    cr_assert_eq(ev->event, RDMA_CM_EVENT_REJECTED, "got %s", rdma_event_str(ev->event));
    cr_assert_eq(
        lethe_verbs_get_reject(ev->param.conn.private_data, ev->param.conn.private_data_len),
        EPERM);
    rdma_ack_cm_event(ev);
    rdma_destroy_qp(id);
    rdma_destroy_id(id);
    rdma_destroy_event_channel(ec);
    lethe_mnc_close(&c);
    cr_assert_geq(tc_node_stat(&node, LETHE_STAT_AUTH_FAILURES), 1);
}

Test(verbs_e2e, a_node_killed_mid_run_fails_the_next_operation)
{
    if (!have_rdma_device())
        cr_skip_test("no RDMA device (run in rdma-vm)");
    struct lethe_transport_params p =
        tc_params(LETHE_TRANSPORT_VERBS, node.tcp, node.token, 1 << 20);
    struct lethe_transport *t = tc_open(&p);
    char name[80];
    snprintf(name, sizeof(name), "verbs %s", node.tcp);
    tc_node_killed_fails_next_op(&node, t, name);
    lethe_transport_close(t);
}

Test(verbs_e2e, a_posted_write_returns_before_the_node_answers_and_the_wait_finishes_it)
{
    if (!have_rdma_device())
        cr_skip_test("no RDMA device (run in rdma-vm)");
    struct lethe_transport_params p =
        tc_params(LETHE_TRANSPORT_VERBS, node.tcp, node.token, 1 << 20);
    tc_write_post_returns_before_the_answer(&node, &p);
}

/* Without on-demand paging the node lends from pages it allocated at start-up: a region's
 * pages, written by one client, are the next client's, and must reach it as zeros. */
Test(verbs_e2e, a_released_region_is_zeroed_before_the_next_client_gets_its_pages)
{
    if (!have_rdma_device())
        cr_skip_test("no RDMA device (run in rdma-vm)");
    enum { PAGES = 1024, BATCH = 256 };
    struct lethe_transport_params p =
        tc_params(LETHE_TRANSPORT_VERBS, node.tcp, node.token, (uint64_t)PAGES * TC_PAGE);
    uint8_t *buf = tc_pages(BATCH);
    uint64_t slots[BATCH];
    void *ptrs[BATCH];
    for (unsigned i = 0; i < BATCH; i++)
        ptrs[i] = buf + (size_t)i * TC_PAGE;

    struct lethe_transport *a = tc_open(&p);
    struct lethe_channel *ch = tc_channel(a, 0);
    for (unsigned base = 0; base < PAGES; base += BATCH) {
        for (unsigned i = 0; i < BATCH; i++) {
            slots[i] = base + i;
            tc_fill(ptrs[i], slots[i], 7);
        }
        cr_assert_eq(lethe_channel_write_batch(ch, slots, (const void *const *)ptrs, BATCH), 0,
                     "%s", lethe_channel_error(ch));
    }
    lethe_channel_close(ch);
    lethe_transport_close(a);
    for (int i = 0; i < 200 && tc_node_stat(&node, LETHE_STAT_BYTES_LENT) != 0; i++)
        usleep(10000);
    cr_assert_eq(tc_node_stat(&node, LETHE_STAT_BYTES_LENT), 0, "the first region was released");

    struct lethe_transport *b = tc_open(&p);
    ch = tc_channel(b, 0);
    for (unsigned base = 0; base < PAGES; base += BATCH) {
        for (unsigned i = 0; i < BATCH; i++)
            slots[i] = base + i;
        cr_assert_eq(lethe_channel_read_batch(ch, slots, ptrs, BATCH), 0, "%s",
                     lethe_channel_error(ch));
        for (unsigned i = 0; i < BATCH; i++)
            cr_assert(all_zero(ptrs[i], TC_PAGE), "slot %llu of the second client holds data",
                      (unsigned long long)slots[i]);
    }
    lethe_channel_close(ch);
    lethe_transport_close(b);
    free(buf);
}

static bool device_pages_on_demand(void)
{
    int n = 0;
    struct ibv_device **l = ibv_get_device_list(&n);
    bool odp = false;
    struct ibv_context *ctx = l && n > 0 ? ibv_open_device(l[0]) : NULL;
    if (ctx) {
        struct ibv_device_attr_ex ax;
        memset(&ax, 0, sizeof(ax));
        odp = ibv_query_device_ex(ctx, NULL, &ax) == 0 &&
              (ax.odp_caps.general_caps & IBV_ODP_SUPPORT);
        ibv_close_device(ctx);
    }
    if (l)
        ibv_free_device_list(l);
    return odp;
}

Test(verbs_e2e, a_node_that_cannot_pin_its_capacity_refuses_to_start_saying_why)
{
    if (!have_rdma_device())
        cr_skip_test("no RDMA device (run in rdma-vm)");
    if (device_pages_on_demand())
        cr_skip_test("the device pages on demand: the node pins nothing at start-up");
    const char *ip = getenv("RDMA_VM_IP");
    char extra[128];
    snprintf(extra, sizeof(extra), "rdma_listen = %s:0\n", ip ? ip : "0.0.0.0");
    struct mn_proc m;
    struct mn_opts o = {.capacity = "64T", .extra = extra, .host = ip ? ip : "127.0.0.1"};
    cr_assert_lt(mn_start(&m, &o), 0, "the node must not start");
    cr_assert(mn_log_has(&m, "has no on-demand paging, so the node pins the 64T it lends"));
    cr_assert(mn_log_has(&m, "MemAvailable"), "the message names the limit");
    cr_assert(mn_log_has(&m, "lower capacity"), "the message says what to do");
    mn_cleanup(&m);
}
