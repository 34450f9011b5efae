/* test_control_unit.c — the control port and its renderers against a fake program: a
 * session and a stats segment made by the test, no lethed process, no runtime. Covers the
 * states a live run rarely shows (starting, failed, stale, not running), the cache size
 * protocol from the program's side, and the metric table. lethed's sources are compiled in. */
#include "test_lethed_util.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>

#include "../src/lethed/control.c"
#include "../src/lethed/report.c"
#include "../src/lethed/account.c"

struct fake {
    struct lethed_session s;
    struct lethe_config cfg;
    struct lethed_control *c;
    struct event *stop_ev;
    int stop_fd;
    pthread_t loop;
    struct lethe_stats_snapshot snap;
};

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static void *loop_main(void *arg)
{
    struct fake *f = arg;
    event_base_dispatch(f->s.base);
    return NULL;
}

/* A session whose program is (or is not) running, with its port on a free port. */
static struct fake *fake_start(bool running)
{
    struct fake *f = calloc(1, sizeof(*f));
    lethe_config_defaults(&f->cfg);
    f->s.cfg = &f->cfg;
    snprintf(f->s.command, sizeof(f->s.command), "fake \"program\"\nwith\ttabs\\");
    f->s.started_ns = lethe_monotonic_ns();
    f->s.pid = running ? getpid() : 0;
    f->s.running = running;
    f->s.launched_ns = f->s.started_ns;
    cr_assert_eq(lethe_stats_shm_create(&f->s.shm, &f->s.shm_fd), 0);
    f->s.base = event_base_new();
    cr_assert_eq(lethed_control_start(&f->s, "127.0.0.1:0", &f->c), 0);
    f->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    f->stop_ev = event_new(f->s.base, f->stop_fd, EV_READ, on_stop, f->s.base);
    event_add(f->stop_ev, NULL);
    pthread_create(&f->loop, NULL, loop_main, f);
    return f;
}

static void fake_stop(struct fake *f)
{
    uint64_t one = 1;
    cr_assert_eq(write(f->stop_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
    pthread_join(f->loop, NULL);
    lethed_control_stop(f->c);
    event_free(f->stop_ev);
    close(f->stop_fd);
    event_base_free(f->s.base);
    lethe_stats_shm_detach(f->s.shm);
    close(f->s.shm_fd);
    free(f);
}

static void publish(struct fake *f, enum lethe_stats_state state, uint64_t cache)
{
    memset(&f->snap, 0, sizeof(f->snap));
    f->snap.state = state;
    f->snap.pid = 4242;
    f->snap.cache_size = cache;
    f->snap.stats.frames = cache / 4096;
    f->snap.stats.faults = 12345;
    f->snap.stats.period_us = 250000;
    f->snap.stats.swap_in_ns_total = 1500000000;
    f->snap.nshards = 3;
    f->snap.shards[2].faults = 77;
    snprintf(f->snap.paths, sizeof(f->snap.paths), "delivery=thread \"quoted\"");
    if (state == LETHE_STATS_FAILED)
        snprintf(f->snap.error, sizeof(f->snap.error), "the runtime did not start (EFAULT)");
    lethe_stats_shm_publish(f->s.shm, &f->snap);
}

static int get_status(struct fake *f, const char *method, const char *path, const char *body,
                      char *text, size_t len)
{
    struct tl_http r;
    cr_assert_eq(tl_http(f->s.control_address, method, path, body, &r), 0);
    if (text)
        snprintf(text, len, "%s", r.body);
    int status = r.status;
    tl_http_free(&r);
    return status;
}

Test(control_unit, health_follows_the_runtime_state)
{
    struct fake *f = fake_start(true);
    char text[256];
    cr_assert_eq(get_status(f, "GET", "/health", NULL, text, sizeof(text)), 503);
    cr_assert_str_eq(text, "the runtime is starting\n");
    publish(f, LETHE_STATS_RUNNING, 8 << 20);
    cr_assert_eq(get_status(f, "GET", "/health", NULL, text, sizeof(text)), 200);
    cr_assert_str_eq(text, "ok\n");
    cr_assert_eq(get_status(f, "HEAD", "/health", NULL, NULL, 0), 200);
    publish(f, LETHE_STATS_FAILED, 0);
    cr_assert_eq(get_status(f, "GET", "/health", NULL, text, sizeof(text)), 503);
    cr_assert_str_eq(text, "the runtime failed to start\n");
    publish(f, LETHE_STATS_EXITED, 8 << 20);
    cr_assert_eq(get_status(f, "GET", "/health", NULL, NULL, 0), 503);
    fake_stop(f);
}

Test(control_unit, stale_stats_are_unhealthy)
{
    struct lethed_session s = {.running = true, .pid = 1};
    struct lethe_stats_snapshot *snap = calloc(1, sizeof(*snap));
    snap->state = LETHE_STATS_RUNNING;
    snap->updated_ns = lethe_monotonic_ns();
    const char *why;
    cr_assert_eq(lethed_health(&s, snap, true, &why), 200);
    snap->updated_ns = lethe_monotonic_ns() - LETHE_STATS_FRESH_NS - 1000000;
    cr_assert_eq(lethed_health(&s, snap, true, &why), 503);
    cr_assert_str_eq(why, "the program's stats are stale");
    cr_assert_eq(lethed_health(&s, snap, false, &why), 503);
    free(snap);
}

Test(control_unit, nothing_to_resize_when_the_program_is_not_running)
{
    struct fake *f = fake_start(false);
    char text[256];
    cr_assert_eq(get_status(f, "GET", "/health", NULL, text, sizeof(text)), 503);
    cr_assert_str_eq(text, "the program has not been started\n");
    cr_assert_eq(get_status(f, "PUT", "/cache_size", "64M", NULL, 0), 503);
    cr_assert_eq(get_status(f, "GET", "/cache_size", NULL, NULL, 0), 503);
    /* A bad size is still a bad request. */
    cr_assert_eq(get_status(f, "PUT", "/cache_size", "lots", NULL, 0), 400);
    fake_stop(f);
}

struct fake_program {
    struct fake *f;
    int answer;     /* result to give */
    atomic_bool go; /* answer only once set */
    atomic_bool done;
};

static void *program_main(void *arg)
{
    struct fake_program *p = arg;
    while (!atomic_load(&p->done)) {
        uint64_t ticket, bytes;
        if (atomic_load(&p->go) && lethe_stats_shm_take_request(p->f->s.shm, &ticket, &bytes)) {
            lethe_stats_shm_reply(p->f->s.shm, ticket, p->answer, p->answer == 0 ? bytes : 8 << 20);
            atomic_store(&p->done, true);
        }
        usleep(1000);
    }
    return NULL;
}

struct put_result {
    struct fake *f;
    int status;
    char body[256];
};

static void *put_main(void *arg)
{
    struct put_result *r = arg;
    r->status = get_status(r->f, "PUT", "/cache_size", "32M", r->body, sizeof(r->body));
    return NULL;
}

Test(control_unit, put_waits_for_the_program_and_returns_the_new_size)
{
    struct fake *f = fake_start(true);
    publish(f, LETHE_STATS_RUNNING, 8 << 20);
    struct fake_program p = {.f = f, .answer = 0};
    pthread_t prog, put;
    pthread_create(&prog, NULL, program_main, &p);
    struct put_result r = {.f = f};
    pthread_create(&put, NULL, put_main, &r);
    /* Wait until the first PUT has posted its request: it then waits for the program. */
    uint64_t ticket, bytes;
    for (int i = 0; i < 5000 && !lethe_stats_shm_take_request(f->s.shm, &ticket, &bytes); i++)
        usleep(1000);
    cr_assert(lethe_stats_shm_take_request(f->s.shm, &ticket, &bytes), "the PUT never posted");
    char text[256];
    cr_assert_eq(get_status(f, "PUT", "/cache_size", "16M", text, sizeof(text)), 409,
                 "one change at a time: %s", text);
    atomic_store(&p.go, true);
    pthread_join(put, NULL);
    pthread_join(prog, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"cache_size\": 33554432, \"human\": \"32M\"}\n");
    fake_stop(f);
}

Test(control_unit, put_refused_by_the_runtime_is_a_conflict)
{
    struct fake *f = fake_start(true);
    publish(f, LETHE_STATS_RUNNING, 8 << 20);
    struct fake_program p = {.f = f, .answer = -EINVAL};
    atomic_store(&p.go, true);
    pthread_t prog;
    pthread_create(&prog, NULL, program_main, &p);
    char text[256];
    cr_assert_eq(get_status(f, "PUT", "/cache_size", "32M", text, sizeof(text)), 409);
    cr_assert(strstr(text, "stays at 8388608 bytes"), "%s", text);
    pthread_join(prog, NULL);
    fake_stop(f);
}

Test(control_unit, stats_and_metrics_render_valid_documents)
{
    struct fake *f = fake_start(true);
    publish(f, LETHE_STATS_RUNNING, 8 << 20);
    struct tl_http r;
    cr_assert_eq(tl_http(f->s.control_address, "GET", "/stats", NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(tl_json_valid(r.body), "%s", r.body);
    cr_assert(strstr(r.body, "\"command\": \"fake \\\"program\\\"\\nwith\\ttabs\\\\\""),
              "the command is escaped: %s", r.body);
    uint64_t v;
    cr_assert(tl_json_u64(r.body, "faults", &v) && v == 12345);
    tl_http_free(&r);
    cr_assert_eq(tl_http(f->s.control_address, "GET", "/metrics", NULL, &r), 0);
    char why[256];
    unsigned samples;
    cr_assert(tl_prom_check(r.body, why, sizeof(why), &samples), "%s\n%s", why, r.body);
    cr_assert_eq(tl_prom_value(r.body, "lethe_faults_total"), 12345.0);
    cr_assert_eq(tl_prom_value(r.body, "lethe_rebalancer_period_seconds"), 0.25,
                 "microseconds become seconds");
    cr_assert_eq(tl_prom_value(r.body, "lethe_swap_in_seconds_total"), 1.5);
    cr_assert(strstr(r.body, "lethe_shard_faults_total{shard=\"2\"} 77\n"), "%s", r.body);
    tl_http_free(&r);
    fake_stop(f);
}

Test(control_unit, metrics_before_any_stats_are_still_valid)
{
    struct fake *f = fake_start(true);
    struct tl_http r;
    cr_assert_eq(tl_http(f->s.control_address, "GET", "/metrics", NULL, &r), 0);
    char why[256];
    unsigned samples;
    cr_assert(tl_prom_check(r.body, why, sizeof(why), &samples), "%s\n%s", why, r.body);
    cr_assert_eq(tl_prom_value(r.body, "lethe_up"), 0.0);
    tl_http_free(&r);
    cr_assert_eq(tl_http(f->s.control_address, "GET", "/stats", NULL, &r), 0);
    cr_assert(tl_json_valid(r.body), "%s", r.body);
    tl_http_free(&r);
    fake_stop(f);
}

Test(control_unit, the_metric_table_covers_every_runtime_counter)
{
    cr_assert_eq(lethed_stat_field_count() * sizeof(uint64_t), sizeof(struct lethe_stats),
                 "struct lethe_stats gained or lost a field: update the table in report.c");
    for (size_t i = 0; i < N_FIELDS; i++)
        for (size_t j = 0; j < i; j++)
            cr_assert_neq(fields[i].offset, fields[j].offset, "%s listed twice", fields[i].field);
}

Test(control_unit, a_port_in_use_is_an_error)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(fd, 1), 0);
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char listen_addr[64];
    snprintf(listen_addr, sizeof(listen_addr), "127.0.0.1:%u", ntohs(sa.sin_port));
    struct lethed_session s = {0};
    s.base = event_base_new();
    struct lethed_control *c;
    cr_assert_lt(lethed_control_start(&s, listen_addr, &c), 0);
    cr_assert_eq(lethed_control_start(&s, "no-port", &c), -EINVAL);
    event_base_free(s.base);
    close(fd);
}

/* --- the account of resident memory (account.c) --- */

Test(control_unit, smaps_are_split_into_cache_node_memory_and_the_rest)
{
    static const char smaps[] =
        "55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]\n"
        "Size:                132 kB\n"
        "Rss:                 100 kB\n"
        "Anonymous:           100 kB\n"
        "7f0000000000-7f0100000000 rw-p 00000000 00:00 0 \n"
        "Rss:                8192 kB\n"
        "Anonymous:          8192 kB\n"
        "7f0200000000-7f0200100000 rw-p 00000000 00:00 0 \n"
        "Rss:                 512 kB\n"
        "Anonymous:           512 kB\n"
        "7f0300000000-7f0400000000 rw-s 00000000 00:01 1234                       "
        "/memfd:lethe-region-1 (deleted)\n"
        "Rss:               40960 kB\n"
        "Anonymous:             0 kB\n"
        "7f0500000000-7f0504000000 rw-s 00000000 00:01 99                         "
        "/dev/zero (deleted)\n"
        "Rss:               65536 kB\n"
        "Anonymous:             0 kB\n"
        "7f0600000000-7f0600200000 r-xp 00000000 08:01 77                         "
        "/usr/lib/libx.so\n"
        "Rss:                1024 kB\n"
        "Anonymous:             0 kB\n"
        "VmFlags: rd ex mr mw me sd\n";
    FILE *f = fmemopen((void *)smaps, sizeof(smaps) - 1, "r");
    struct lethed_account_sample s;
    /* region 0x7f0000000000 (4 GiB), parking 0x7f0200000000 (1 MiB) */
    cr_assert_eq(
        lethed_account_parse(f, 0x7f0000000000ULL, 4ULL << 30, 0x7f0200000000ULL, 1ULL << 20, &s),
        0);
    fclose(f);
    cr_assert_eq(s.cache, (8192 + 512) * 1024ULL, "region and parking");
    cr_assert_eq(s.node, 40960 * 1024ULL, "the memory node's shared memory");
    cr_assert_eq(s.outside, (100 + 65536 + 1024) * 1024ULL);
    cr_assert_eq(s.anon_outside, 100 * 1024ULL, "only the heap is anonymous outside");
    cr_assert_eq(s.rss, s.cache + s.node + s.outside);
    cr_assert_str_eq(s.top[0].name, "/dev/zero (deleted)", "the largest unmanaged mapping first");
    cr_assert_eq(s.top[0].start, 0x7f0500000000ULL);
    cr_assert_str_eq(s.top[1].name, "/usr/lib/libx.so");
    cr_assert_str_eq(s.top[2].name, "[heap]");
}

Test(control_unit, smaps_without_a_mapping_are_refused)
{
    static const char junk[] = "nothing here\nRss: 4 kB\n";
    FILE *f = fmemopen((void *)junk, sizeof(junk) - 1, "r");
    struct lethed_account_sample s;
    cr_assert_eq(lethed_account_parse(f, 0, 0, 0, 0, &s), -EINVAL);
    fclose(f);
}
