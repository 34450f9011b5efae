/* test_control.c — lethed's control port while a real program runs under it: /health,
 * /stats (valid JSON with every counter), /metrics (valid Prometheus text), PUT /cache_size
 * resizing the running program, and the 4xx answers to bad requests. */
#include "test_lethed_util.h"

TestSuite(control, .init = tl_setup, .fini = tl_teardown, .timeout = 60);

struct held {
    pid_t pid;
    int in, out;
    char addr[64];
};

/* lethed running app_mixed (32 MiB against an 8 MiB cache, 16 shards), holding its heap. */
static void hold(struct held *h)
{
    const char *conf = tl_config("c.conf", "8M", "[cache]\nshards = 16\n");
    int in[2], out[2];
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    int err = open(tl_file("err"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    char *argv[] = {TL_LETHED, "-c",     (char *)conf, "--", TL_PROG("app_mixed"),
                    "32",      "--hold", NULL};
    h->pid = tl_spawn(argv, NULL, in[0], out[1], err);
    close(in[0]);
    close(out[1]);
    close(err);
    h->in = in[1];
    h->out = out[0];
    bool ready = tl_read_until(h->out, "ready", 30);
    bool addr = tl_control_address(tl_file("err"), h->addr, sizeof(h->addr), 5);
    if (!ready || !addr) {
        kill(h->pid, SIGKILL);
        tl_wait(h->pid, 10);
        char *log = tl_read_file(tl_file("err"));
        size_t len = log ? strlen(log) : 0;
        cr_assert_fail("lethed did not come up (ready %d, control address %d); its log ends:\n%s",
                       ready, addr, log ? log + (len > 3000 ? len - 3000 : 0) : "(none)");
    }
}

static void release(struct held *h)
{
    close(h->in); /* EOF: the program finishes */
    int status = tl_wait(h->pid, 30);
    close(h->out);
    cr_assert_eq(status, 0, "the program ends normally after the checks");
}

/* GET until /health says ok and a publication made after the heap was built has arrived
 * (the stats thread publishes every 100 ms; on a loaded machine it may be late). */
static void wait_healthy(const struct held *h)
{
    for (int i = 0; i < 500; i++) {
        struct tl_http r;
        uint64_t swap_ins = 0;
        bool healthy = tl_http(h->addr, "GET", "/health", NULL, &r) == 0 && r.status == 200;
        tl_http_free(&r);
        if (healthy && tl_http(h->addr, "GET", "/stats", NULL, &r) == 0 &&
            tl_json_u64(r.body, "swap_ins", &swap_ins) && swap_ins > 0) {
            tl_http_free(&r);
            return;
        }
        tl_http_free(&r);
        usleep(20000);
    }
    cr_assert_fail("/health never became 200 with the heap's stats published");
}

Test(control, health_is_ok_while_the_program_runs)
{
    struct held h;
    hold(&h);
    wait_healthy(&h);
    struct tl_http r;
    cr_assert_eq(tl_http(h.addr, "GET", "/health", NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok\n");
    tl_http_free(&r);
    release(&h);
}

Test(control, stats_is_valid_json_with_every_counter_and_shard)
{
    static const char *const counters[] = {"faults",
                                           "demand_zero",
                                           "swap_ins",
                                           "soft_hits",
                                           "fault_waits",
                                           "fault_retries",
                                           "swap_outs",
                                           "clean_drops",
                                           "fresh_discards",
                                           "reactive_evictions",
                                           "proactive_evictions",
                                           "promotions",
                                           "demotions",
                                           "released_pages",
                                           "rebalancer_cycles",
                                           "shard_skips",
                                           "period_us",
                                           "pressure_events",
                                           "relax_events",
                                           "frames",
                                           "free_frames",
                                           "active_pages",
                                           "inactive_pages",
                                           "remote_pages",
                                           "remote_slots_used",
                                           "region_pages",
                                           "metadata_bytes",
                                           "swap_in_ns_total",
                                           "late_writes",
                                           "prefilled",
                                           "reserve_target"};
    struct held h;
    hold(&h);
    wait_healthy(&h);
    struct tl_http r;
    cr_assert_eq(tl_http(h.addr, "GET", "/stats", NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.headers, "application/json"), "%s", r.headers);
    cr_assert(tl_json_valid(r.body), "not valid JSON:\n%s", r.body);
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        uint64_t v;
        cr_assert(tl_json_u64(r.body, counters[i], &v), "no counter %s in /stats", counters[i]);
    }
    uint64_t faults = 0, swap_ins = 0, frames = 0;
    tl_json_u64(r.body, "faults", &faults);
    tl_json_u64(r.body, "swap_ins", &swap_ins);
    tl_json_u64(r.body, "frames", &frames);
    cr_assert_gt(faults, 0);
    cr_assert_gt(swap_ins, 0, "32 MiB through an 8 MiB cache swaps");
    cr_assert_eq(frames, (8u << 20) / 4096);
    unsigned shards = 0;
    for (const char *p = r.body; (p = strstr(p, "{\"shard\": ")); p++)
        shards++;
    cr_assert_eq(shards, 16, "one entry per shard (16 configured)");
    cr_assert(strstr(r.body, "\"fault_delivery\": \"thread\""), "config summary present");
    cr_assert(strstr(r.body, "\"paths\": \"delivery=thread"), "runtime paths present");
    tl_http_free(&r);
    release(&h);
}

Test(control, metrics_parse_as_prometheus_text)
{
    struct held h;
    hold(&h);
    wait_healthy(&h);
    struct tl_http r;
    cr_assert_eq(tl_http(h.addr, "GET", "/metrics", NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.headers, "text/plain; version=0.0.4"), "%s", r.headers);
    char why[256] = "";
    unsigned samples;
    cr_assert(tl_prom_check(r.body, why, sizeof(why), &samples), "%s\n%s", why, r.body);
    cr_assert_gt(samples, 28 + 4 * 16, "every counter and per-shard series (%u)", samples);
    cr_assert_eq(tl_prom_value(r.body, "lethe_up"), 1.0);
    cr_assert_gt(tl_prom_value(r.body, "lethe_faults_total"), 0.0);
    cr_assert_eq(tl_prom_value(r.body, "lethe_cache_size_bytes"), (double)(8u << 20));
    cr_assert(strstr(r.body, "lethe_shard_faults_total{shard=\"15\"} "), "per-shard series");
    /* Counters end in _total. */
    for (const char *p = r.body; (p = strstr(p, "# TYPE ")); p++) {
        char name[128], type[32];
        cr_assert_eq(sscanf(p, "# TYPE %127s %31s", name, type), 2);
        if (strcmp(type, "counter") == 0) {
            size_t n = strlen(name);
            cr_assert(n > 6 && strcmp(name + n - 6, "_total") == 0, "counter %s", name);
        }
    }
    tl_http_free(&r);
    release(&h);
}

Test(control, put_cache_size_grows_and_shrinks_the_running_program)
{
    struct held h;
    hold(&h);
    wait_healthy(&h);
    struct tl_http r;
    cr_assert_eq(tl_http(h.addr, "PUT", "/cache_size", "16M\n", &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"cache_size\": 16777216"), "%s", r.body);
    tl_http_free(&r);
    cr_assert_eq(tl_http(h.addr, "GET", "/cache_size", NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "\"cache_size\": 16777216"), "%s", r.body);
    tl_http_free(&r);
    cr_assert_eq(tl_http(h.addr, "GET", "/metrics", NULL, &r), 0);
    cr_assert_eq(tl_prom_value(r.body, "lethe_frames"), 4096.0);
    tl_http_free(&r);
    cr_assert_eq(tl_http(h.addr, "PUT", "/cache_size", "4M", &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"cache_size\": 4194304"), "%s", r.body);
    tl_http_free(&r);
    release(&h); /* and the program still verifies its whole heap */
}

Test(control, bad_requests_get_4xx)
{
    struct held h;
    hold(&h);
    wait_healthy(&h);
    struct {
        const char *method, *path, *body;
        int status;
    } cases[] = {
        {"PUT", "/cache_size", "12X", 400},  /* not a size */
        {"PUT", "/cache_size", "", 400},     /* no size */
        {"PUT", "/cache_size", "1000", 400}, /* not a multiple of the page size */
        {"PUT", "/cache_size", "0", 400},
        {"PUT", "/cache_size", "99999999999999999999999", 400},
        {"PUT", "/cache_size", "1T", 409}, /* beyond what the runtime was sized for */
        {"POST", "/stats", "x", 405},
        {"PUT", "/metrics", "x", 405},
        {"DELETE", "/cache_size", NULL, 405},
        {"GET", "/no/such/thing", NULL, 404},
        {"GET", "/statsx", NULL, 404},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tl_http r;
        cr_assert_eq(tl_http(h.addr, cases[i].method, cases[i].path, cases[i].body, &r), 0);
        cr_assert_eq(r.status, cases[i].status, "%s %s '%s': %d %s", cases[i].method, cases[i].path,
                     cases[i].body ? cases[i].body : "", r.status, r.body);
        if (r.status == 405)
            cr_assert(strstr(r.headers, "Allow: GET"), "405 names what is allowed");
        tl_http_free(&r);
    }
    /* Not HTTP at all. */
    struct tl_http r;
    const char *junk = "BLAH\r\n\r\n";
    int rc = tl_http_raw(h.addr, junk, strlen(junk), &r);
    cr_assert(rc != 0 || (r.status >= 400 && r.status < 500), "junk gets no 2xx (%d)", r.status);
    tl_http_free(&r);
    /* The port still works afterwards, and the cache size did not change. */
    cr_assert_eq(tl_http(h.addr, "GET", "/cache_size", NULL, &r), 0);
    cr_assert(strstr(r.body, "\"cache_size\": 8388608"), "%s", r.body);
    tl_http_free(&r);
    release(&h);
}

Test(control, index_lists_the_endpoints)
{
    struct held h;
    hold(&h);
    struct tl_http r;
    cr_assert_eq(tl_http(h.addr, "GET", "/", NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "/metrics") && strstr(r.body, "/cache_size"), "%s", r.body);
    tl_http_free(&r);
    release(&h);
}
