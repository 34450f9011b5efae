/* test_transport_tcp.c — the tcp transport against a real memnode process: round trips and
 * batches with content checks, concurrent channels, the token and capacity refusals, the
 * capacity given back at close, and a node killed mid-run. */
#include "transport_checks.h"

static struct mn_proc node;

static void start(void)
{
    struct mn_opts o = {.capacity = "16M"};
    if (mn_start(&node, &o) < 0) {
        mn_dump_log(&node);
        cr_assert_fail("memnode did not start");
    }
}

static void stop(void)
{
    mn_cleanup(&node);
}

TestSuite(transport_tcp, .init = start, .fini = stop);

Test(transport_tcp, pages_and_batches_round_trip_with_their_content)
{
    struct lethe_transport_params p = tc_params(LETHE_TRANSPORT_TCP, node.tcp, node.token, 4 << 20);
    struct lethe_transport *t = tc_open(&p);
    cr_assert(strncmp(lethe_transport_describe(t), "tcp 127.0.0.1:", 14) == 0);
    tc_round_trips(t);
    lethe_transport_close(t);
}

Test(transport_tcp, four_channels_on_four_threads_see_each_others_writes)
{
    struct lethe_transport_params p = tc_params(LETHE_TRANSPORT_TCP, node.tcp, node.token, 1 << 20);
    struct lethe_transport *t = tc_open(&p);
    tc_concurrent_channels(t, 4, 20);
    lethe_transport_close(t);
}

Test(transport_tcp, a_wrong_token_is_refused_and_the_node_serves_on)
{
    struct lethe_transport_params p = tc_params(LETHE_TRANSPORT_TCP, node.tcp, "wrong", 4 << 20);
    struct lethe_transport *t;
    cr_assert_eq(lethe_transport_open(&p, &t), -EACCES);
    snprintf(p.token, sizeof(p.token), "%s", node.token);
    t = tc_open(&p);
    tc_round_trips(t);
    lethe_transport_close(t);
}

Test(transport_tcp, asking_more_than_the_capacity_left_fails_and_close_gives_it_back)
{
    struct lethe_transport_params p =
        tc_params(LETHE_TRANSPORT_TCP, node.tcp, node.token, 12 << 20);
    struct lethe_transport *a = tc_open(&p), *b;
    p.remote_size = 8 << 20;
    cr_assert_eq(lethe_transport_open(&p, &b), -ENOSPC);
    cr_assert_eq(tc_node_stat(&node, LETHE_STAT_BYTES_LENT), 12 << 20);
    lethe_transport_close(a);
    tc_wait_stat(&node, LETHE_STAT_BYTES_LENT, 0);
    b = tc_open(&p);
    lethe_transport_close(b);
}

Test(transport_tcp, a_slot_beyond_the_region_is_refused_before_any_io)
{
    struct lethe_transport_params p = tc_params(LETHE_TRANSPORT_TCP, node.tcp, node.token, 1 << 20);
    struct lethe_transport *t = tc_open(&p);
    struct lethe_channel *ch = tc_channel(t, 0);
    uint8_t *page = tc_pages(1);
    cr_assert_eq(lethe_channel_read(ch, 256, page), -ERANGE);
    cr_assert(strstr(lethe_channel_error(ch), "slot 256"), "%s", lethe_channel_error(ch));
    cr_assert_eq(lethe_channel_read(ch, 255, page), 0, "%s", lethe_channel_error(ch));
    free(page);
    lethe_channel_close(ch);
    lethe_transport_close(t);
}

Test(transport_tcp, channels_close_and_reopen)
{
    struct lethe_transport_params p = tc_params(LETHE_TRANSPORT_TCP, node.tcp, node.token, 1 << 20);
    struct lethe_transport *t = tc_open(&p);
    uint8_t *page = tc_pages(1);
    for (int i = 0; i < 10; i++) {
        struct lethe_channel *ch = tc_channel(t, (unsigned)i);
        tc_fill(page, (uint64_t)i, 4);
        cr_assert_eq(lethe_channel_write(ch, (uint64_t)i, page), 0);
        lethe_channel_close(ch);
    }
    struct lethe_channel *ch = tc_channel(t, 0);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(lethe_channel_read(ch, (uint64_t)i, page), 0);
        cr_assert(tc_check(page, (uint64_t)i, 4));
    }
    lethe_channel_close(ch);
    free(page);
    lethe_transport_close(t);
    tc_wait_stat(&node, LETHE_STAT_CONNECTIONS, 1); /* the STATS connection itself */
}

Test(transport_tcp, a_node_killed_mid_run_fails_the_next_operation_naming_the_node)
{
    struct lethe_transport_params p = tc_params(LETHE_TRANSPORT_TCP, node.tcp, node.token, 1 << 20);
    struct lethe_transport *t = tc_open(&p);
    char name[80];
    snprintf(name, sizeof(name), "tcp %s", node.tcp);
    tc_node_killed_fails_next_op(&node, t, name);
    lethe_transport_close(t);
}

Test(transport_tcp, an_unreachable_node_fails_open_with_a_reason)
{
    struct lethe_transport_params p =
        tc_params(LETHE_TRANSPORT_TCP, "127.0.0.1:1", node.token, 1 << 20);
    struct lethe_transport *t;
    cr_assert_lt(lethe_transport_open(&p, &t), 0);
    snprintf(p.node, sizeof(p.node), "no-port-here");
    cr_assert_eq(lethe_transport_open(&p, &t), -EINVAL);
}

Test(transport_tcp, a_posted_write_returns_before_the_node_answers_and_the_wait_finishes_it)
{
    struct lethe_transport_params p = tc_params(LETHE_TRANSPORT_TCP, node.tcp, node.token, 1 << 20);
    tc_write_post_returns_before_the_answer(&node, &p);
}
