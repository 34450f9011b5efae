/* test_config.c — lethe.conf and memnode.conf: every key, the defaults, the print/load round
 * trip, the exact text of every kind of problem (FILE:LINE: KEY: REASON), and lethed --check.
 *
 * Each test writes its files under /tmp with the test program's pid in the name and removes
 * them; messages are compared with the file's path replaced by "FILE". */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"

/* ---- helpers ------------------------------------------------------------------------------- */

static char conf_path[256];

static const char *write_file(const char *name, const char *text)
{
    snprintf(conf_path, sizeof(conf_path), "/tmp/lethe-test-config-%d-%s", (int)getpid(), name);
    FILE *f = fopen(conf_path, "w");
    cr_assert_not_null(f, "cannot create %s", conf_path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    return conf_path;
}

/* Replaces every occurrence of path in text with "FILE". */
static char *anonymize(const char *text, const char *path)
{
    size_t plen = strlen(path);
    char *out = malloc(strlen(text) + 1);
    char *o = out;
    while (*text) {
        if (strncmp(text, path, plen) == 0) {
            memcpy(o, "FILE", 4);
            o += 4;
            text += plen;
        } else {
            *o++ = *text++;
        }
    }
    *o = '\0';
    return out;
}

struct loaded {
    int rc;
    char *errors; /* with the path as FILE */
};

/* Loads text as lethe.conf over the defaults (into *c when given). */
static struct loaded load_text(const char *text, struct lethe_config *c)
{
    struct lethe_config local;
    if (!c)
        c = &local;
    lethe_config_defaults(c);
    const char *path = write_file("lethe.conf", text);
    char *buf = NULL;
    size_t len = 0;
    FILE *errors = open_memstream(&buf, &len);
    struct loaded r;
    r.rc = lethe_config_load(c, path, errors);
    fclose(errors);
    r.errors = anonymize(buf, path);
    free(buf);
    unlink(path);
    return r;
}

static struct loaded load_memnode_text(const char *text, struct lethe_memnode_config *c)
{
    struct lethe_memnode_config local;
    if (!c)
        c = &local;
    lethe_memnode_config_defaults(c);
    const char *path = write_file("memnode.conf", text);
    char *buf = NULL;
    size_t len = 0;
    FILE *errors = open_memstream(&buf, &len);
    struct loaded r;
    r.rc = lethe_memnode_config_load(c, path, errors);
    fclose(errors);
    r.errors = anonymize(buf, path);
    free(buf);
    unlink(path);
    return r;
}

/* The file must produce exactly `expected` (one problem per line) and count them. */
static void expect_problems(const char *text, const char *expected)
{
    struct loaded r = load_text(text, NULL);
    cr_expect_str_eq(r.errors, expected, "for the file:\n%s", text);
    int lines = 0;
    for (const char *p = expected; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(r.rc, lines, "load returns the number of problems");
    free(r.errors);
}

/* One bad value: the whole message must be exactly "FILE:LINE: message\n". */
static void expect_problem(const char *text, const char *message)
{
    char expected[1024];
    snprintf(expected, sizeof(expected), "%s\n", message);
    expect_problems(text, expected);
}

static void assert_config_eq(const struct lethe_config *a, const struct lethe_config *b)
{
    /* Both start from lethe_config_defaults(), which clears the padding. */
    cr_assert_eq(memcmp(a, b, sizeof(*a)), 0, "configurations differ");
}

/* ---- defaults and every key ---------------------------------------------------------------- */

Test(config, defaults_are_the_documented_values)
{
    struct lethe_config c;
    memset(&c, 0xa5, sizeof(c));
    lethe_config_defaults(&c);
    cr_assert_eq(c.cache_size, 512ULL << 20);
    cr_assert_eq(c.region_size, 16ULL << 30);
    cr_assert_eq(c.shards, 0);
    cr_assert_eq(c.reclaim, LETHE_RECLAIM_DIRECT);
    cr_assert_eq(c.reserve_pct, 20);
    cr_assert_eq(c.inactive_pct, 2);
    cr_assert_eq(c.reclaim_batch, 4);
    cr_assert_eq(c.fault_delivery, LETHE_DELIVERY_THREAD);
    cr_assert_eq(c.vcpus, 0);
    cr_assert(c.pin_vcpus);
    cr_assert_eq(c.mmap_threshold, 256ULL << 10);
    cr_assert_eq(c.fault_around, 64);
    cr_assert_eq(c.parking, LETHE_PARKING_BATCH);
    cr_assert_eq(c.period_min_us, 10000);
    cr_assert_eq(c.period_max_us, 2000000);
    cr_assert_eq(c.period_initial_us, 100000);
    cr_assert_eq(c.additive_increase_us, 10000);
    cr_assert_float_eq(c.multiplicative_decrease, 0.5, 1e-12);
    cr_assert_eq(c.pressure_threshold, 3);
    cr_assert_eq(c.cooldown, 6);
    cr_assert_eq(c.transport, LETHE_TRANSPORT_SHM);
    cr_assert(c.memnode_embedded);
    cr_assert_eq(c.n_memnodes, 0);
    cr_assert_eq(c.remote_size, 4ULL << 30);
    cr_assert_str_eq(c.token_file, "");
    cr_assert_eq(c.shm_delay_us, 0);
    cr_assert_eq(c.connect_timeout_us, 5000000);
    cr_assert_str_eq(c.control_listen, "127.0.0.1:7070");
    cr_assert_eq(c.log_level, LETHE_LOG_INFO);
    cr_assert_str_eq(c.summary, "stderr");
    cr_assert_str_eq(c.command, "");
    cr_assert_eq(lethe_config_validate(&c, "defaults", stderr), 0, "the defaults are valid");
}

static const char every_key[] = "# every key, none at its default\n"
                                "[cache]\n"
                                "cache_size = 1G\n"
                                "region_size = 32G\n"
                                "shards = 64\n"
                                "reclaim = direct\n"
                                "reserve = 15%\n"
                                "inactive_ratio = 40\n"
                                "reclaim_batch = 64\n"
                                "[fault]\n"
                                "fault_delivery = signal\n"
                                "vcpus = 4\n"
                                "pin_vcpus = no\n"
                                "mmap_threshold = 0\n"
                                "fault_around = 4\n"
                                "parking = move\n"
                                "[rebalancer]\n"
                                "period_min = 500us\n"
                                "period_max = 3s\n"
                                "period_initial = 250ms\n"
                                "additive_increase = 20ms\n"
                                "multiplicative_decrease = 0.25\n"
                                "pressure_threshold = 7\n"
                                "cooldown = 2\n"
                                "[transport]\n"
                                "transport = tcp\n"
                                "memnode = 10.0.0.2:7400, 10.0.0.3:7401\n"
                                "remote_size = 64G\n"
                                "token_file = /etc/lethe/token\n"
                                "shm_delay = 3us\n"
                                "connect_timeout = 250ms\n"
                                "[control]\n"
                                "listen = off\n"
                                "[log]\n"
                                "level = debug\n"
                                "summary = /var/log/lethe-summary.txt\n"
                                "[app]\n"
                                "command = redis-server --port 6380 --save \"\"\n";

static void assert_every_key(const struct lethe_config *c)
{
    cr_assert_eq(c->cache_size, 1ULL << 30);
    cr_assert_eq(c->region_size, 32ULL << 30);
    cr_assert_eq(c->shards, 64);
    cr_assert_eq(c->reclaim, LETHE_RECLAIM_DIRECT);
    cr_assert_eq(c->reserve_pct, 15);
    cr_assert_eq(c->inactive_pct, 40);
    cr_assert_eq(c->reclaim_batch, 64);
    cr_assert_eq(c->fault_delivery, LETHE_DELIVERY_SIGNAL);
    cr_assert_eq(c->vcpus, 4);
    cr_assert_not(c->pin_vcpus);
    cr_assert_eq(c->mmap_threshold, 0);
    cr_assert_eq(c->fault_around, 4);
    cr_assert_eq(c->parking, LETHE_PARKING_MOVE);
    cr_assert_eq(c->period_min_us, 500);
    cr_assert_eq(c->period_max_us, 3000000);
    cr_assert_eq(c->period_initial_us, 250000);
    cr_assert_eq(c->additive_increase_us, 20000);
    cr_assert_float_eq(c->multiplicative_decrease, 0.25, 1e-12);
    cr_assert_eq(c->pressure_threshold, 7);
    cr_assert_eq(c->cooldown, 2);
    cr_assert_eq(c->transport, LETHE_TRANSPORT_TCP);
    cr_assert_not(c->memnode_embedded);
    cr_assert_eq(c->n_memnodes, 2);
    cr_assert_str_eq(c->memnodes[0], "10.0.0.2:7400");
    cr_assert_str_eq(c->memnodes[1], "10.0.0.3:7401");
    cr_assert_eq(c->remote_size, 64ULL << 30);
    cr_assert_str_eq(c->token_file, "/etc/lethe/token");
    cr_assert_eq(c->shm_delay_us, 3);
    cr_assert_eq(c->connect_timeout_us, 250000);
    cr_assert_str_eq(c->control_listen, "off");
    cr_assert_eq(c->log_level, LETHE_LOG_DEBUG);
    cr_assert_str_eq(c->summary, "/var/log/lethe-summary.txt");
    cr_assert_str_eq(c->command, "redis-server --port 6380 --save \"\"");
}

Test(config, every_key_is_parsed_into_its_field)
{
    struct lethe_config c;
    struct loaded r = load_text(every_key, &c);
    cr_assert_str_eq(r.errors, "");
    cr_assert_eq(r.rc, 0);
    free(r.errors);
    assert_every_key(&c);
}

Test(config, an_empty_file_leaves_the_defaults)
{
    struct lethe_config c, d;
    struct loaded r = load_text("", &c);
    cr_assert_eq(r.rc, 0);
    free(r.errors);
    lethe_config_defaults(&d);
    assert_config_eq(&c, &d);
}

Test(config, the_sample_lethe_conf_is_the_defaults)
{
    struct lethe_config c, d;
    lethe_config_defaults(&c);
    lethe_config_defaults(&d);
    cr_assert_eq(lethe_config_load(&c, LETHE_SOURCE_DIR "/conf/lethe.conf", stderr), 0);
    assert_config_eq(&c, &d);
}

Test(config, enums_booleans_and_comments_are_lenient_in_the_documented_ways)
{
    struct lethe_config c;
    struct loaded r = load_text("; comment\n"
                                "# comment\n"
                                "[ cache ]\n"
                                "  reclaim = DIRECT ; inline comment\n"
                                "\treserve=10\r\n"
                                "[fault]\n"
                                "pin_vcpus = Off\n"
                                "[log]\n"
                                "level = WARN\n",
                                &c);
    cr_assert_str_eq(r.errors, "");
    free(r.errors);
    cr_assert_eq(c.reclaim, LETHE_RECLAIM_DIRECT);
    cr_assert_eq(c.reserve_pct, 10);
    cr_assert_not(c.pin_vcpus);
    cr_assert_eq(c.log_level, LETHE_LOG_WARN);
}

Test(config, memnode_embedded_after_addresses_clears_them)
{
    struct lethe_config c;
    char err[256];
    lethe_config_defaults(&c);
    cr_assert_eq(
        lethe_config_set(&c, "transport", "memnode", "/tmp/a.sock,/tmp/b.sock", err, sizeof(err)),
        0);
    cr_assert_eq(c.n_memnodes, 2);
    cr_assert_not(c.memnode_embedded);
    cr_assert_eq(lethe_config_set(&c, "transport", "memnode", "embedded", err, sizeof(err)), 0);
    cr_assert(c.memnode_embedded);
    cr_assert_eq(c.n_memnodes, 0);
    cr_assert_str_eq(c.memnodes[0], "");
}

Test(config, a_long_command_line_is_accepted)
{
    char text[4200];
    int n = snprintf(text, sizeof(text), "[app]\ncommand = /bin/echo");
    while (n < 3000)
        n += snprintf(text + n, sizeof(text) - (size_t)n, " word");
    snprintf(text + n, sizeof(text) - (size_t)n, "\n");
    struct lethe_config c;
    struct loaded r = load_text(text, &c);
    cr_assert_str_eq(r.errors, "");
    free(r.errors);
    cr_assert_eq(strlen(c.command), (size_t)n - strlen("[app]\ncommand = "));
}

/* ---- print / load round trip ---------------------------------------------------------------- */

static void round_trip(const struct lethe_config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    lethe_config_print(c, out);
    fclose(out);
    struct lethe_config back;
    struct loaded r = load_text(text, &back);
    cr_assert_str_eq(r.errors, "", "printed:\n%s", text);
    cr_assert_eq(r.rc, 0);
    assert_config_eq(&back, c);
    free(r.errors);
    free(text);
}

Test(config, print_of_the_defaults_loads_back_the_same)
{
    struct lethe_config c;
    lethe_config_defaults(&c);
    round_trip(&c);
}

Test(config, print_of_every_key_loads_back_the_same)
{
    struct lethe_config c;
    struct loaded r = load_text(every_key, &c);
    cr_assert_eq(r.rc, 0);
    free(r.errors);
    round_trip(&c);
}

Test(config, print_keeps_odd_values_exact)
{
    struct lethe_config c;
    char err[256];
    lethe_config_defaults(&c);
    cr_assert_eq(lethe_config_set(&c, "cache", "cache_size", "1052672", err, sizeof(err)), 0);
    cr_assert_eq(lethe_config_set(&c, NULL, "multiplicative_decrease", "0.1", err, sizeof(err)), 0);
    cr_assert_eq(lethe_config_set(&c, NULL, "period_initial", "1500ms", err, sizeof(err)), 0);
    cr_assert_eq(lethe_config_set(&c, NULL, "transport", "shm", err, sizeof(err)), 0);
    cr_assert_eq(lethe_config_set(&c, NULL, "memnode", "/tmp/x.sock", err, sizeof(err)), 0);
    round_trip(&c);
}

Test(config, print_writes_units_and_every_section)
{
    struct lethe_config c;
    lethe_config_defaults(&c);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    lethe_config_print(&c, out);
    fclose(out);
    static const char *const want[] = {
        "[cache]\n",
        "[fault]\n",
        "[rebalancer]\n",
        "[transport]\n",
        "[control]\n",
        "[log]\n",
        "[app]\n",
        "cache_size = 512M\n",
        "region_size = 16G\n",
        "reserve = 20%\n",
        "period_max = 2s\n",
        "period_min = 10ms\n",
        "memnode = embedded\n",
        "token_file =\n",
        "listen = 127.0.0.1:7070\n",
        "level = info\n",
        "pin_vcpus = yes\n",
        "multiplicative_decrease = 0.5\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect_not_null(strstr(text, want[i]), "missing '%s' in:\n%s", want[i], text);
    free(text);
}

/* ---- lethe_config_set ---------------------------------------------------------------------- */

Test(config, set_applies_one_value)
{
    struct lethe_config c;
    char err[256] = "";
    lethe_config_defaults(&c);
    cr_assert_eq(lethe_config_set(&c, "cache", "cache_size", "256M", err, sizeof(err)), 0);
    cr_assert_eq(c.cache_size, 256ULL << 20);
    cr_assert_eq(lethe_config_set(&c, NULL, "level", "error", err, sizeof(err)), 0);
    cr_assert_eq(c.log_level, LETHE_LOG_ERROR);
}

Test(config, set_reports_key_and_reason_and_keeps_the_old_value)
{
    struct lethe_config c;
    char err[256];
    lethe_config_defaults(&c);
    cr_assert_eq(lethe_config_set(&c, "cache", "cache_size", "12X", err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "cache_size: '12X' is not a size (use K, M or G)");
    cr_assert_eq(c.cache_size, 512ULL << 20);
    cr_assert_eq(lethe_config_set(&c, "fault", "vcpus", "300", err, sizeof(err)), -ERANGE);
    cr_assert_str_eq(err, "vcpus: '300' is out of range (0..256)");
    cr_assert_eq(c.vcpus, 0);
    cr_assert_eq(lethe_config_set(&c, "cache", "nope", "1", err, sizeof(err)), -ENOENT);
    cr_assert_str_eq(err, "nope: unknown key");
    cr_assert_eq(lethe_config_set(&c, "fault", "cache_size", "1G", err, sizeof(err)), -ENOENT,
                 "a key is looked up in the section given");
    cr_assert_eq(lethe_config_set(&c, NULL, "memnode", "a:1,,b:2", err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "memnode: 'a:1,,b:2' has an empty address");
    cr_assert(c.memnode_embedded);
}

Test(config, set_checks_the_value_not_the_whole_config)
{
    struct lethe_config c;
    char err[256];
    lethe_config_defaults(&c);
    cr_assert_eq(lethe_config_set(&c, "cache", "cache_size", "32G", err, sizeof(err)), 0);
    cr_assert_eq(c.cache_size, 32ULL << 30);
    char *buf = NULL;
    size_t len = 0;
    FILE *errors = open_memstream(&buf, &len);
    cr_assert_eq(lethe_config_validate(&c, "runtime", errors), 1);
    fclose(errors);
    cr_assert_str_eq(buf, "runtime:0: cache_size: 32G is larger than region_size 16G\n");
    free(buf);
}

/* ---- malformed values: the exact message ------------------------------------------------- */

Test(config_errors, size_with_a_bad_unit)
{
    expect_problem("[cache]\ncache_size = 12X\n",
                   "FILE:2: cache_size: '12X' is not a size (use K, M or G)");
}

Test(config_errors, negative_size)
{
    expect_problem("[cache]\n\nregion_size = -5M\n", "FILE:3: region_size: '-5M' is negative");
}

Test(config_errors, size_that_overflows)
{
    expect_problem("[transport]\nremote_size = 99999999999T\n",
                   "FILE:2: remote_size: '99999999999T' is out of range (64K..64T)");
}

Test(config_errors, size_below_the_minimum)
{
    expect_problem("[cache]\ncache_size = 4K\n",
                   "FILE:2: cache_size: '4K' is out of range (64K..64T)");
}

Test(config_errors, size_not_a_whole_number_of_pages)
{
    expect_problem("[cache]\ncache_size = 1000000\n",
                   "FILE:2: cache_size: '1000000' is not a multiple of the page size (4K)");
}

Test(config_errors, duration_with_a_bad_unit)
{
    expect_problem("[rebalancer]\nperiod_min = 10x\n",
                   "FILE:2: period_min: '10x' is not a duration (use us, ms or s)");
}

Test(config_errors, duration_without_a_unit)
{
    expect_problem("[rebalancer]\nperiod_max = 2000\n",
                   "FILE:2: period_max: '2000' has no unit (use us, ms or s)");
}

Test(config_errors, duration_out_of_range)
{
    expect_problem("[transport]\nshm_delay = 2s\n",
                   "FILE:2: shm_delay: '2s' is out of range (0..1s)");
}

Test(config_errors, percent_that_is_not_a_number)
{
    expect_problem("[cache]\nreserve = lots\n", "FILE:2: reserve: 'lots' is not a percentage");
}

Test(config_errors, percent_above_100)
{
    expect_problem("[cache]\ninactive_ratio = 150%\n",
                   "FILE:2: inactive_ratio: '150%' is out of range (0%..100%)");
}

Test(config_errors, bad_boolean)
{
    expect_problem("[fault]\npin_vcpus = maybe\n",
                   "FILE:2: pin_vcpus: 'maybe' is not a boolean (use yes or no)");
}

Test(config_errors, bad_enum_value)
{
    expect_problem("[fault]\nfault_delivery = fast\n",
                   "FILE:2: fault_delivery: 'fast' is not one of thread, signal");
}

Test(config_errors, bad_transport)
{
    expect_problem("[transport]\ntransport = rdma\n",
                   "FILE:2: transport: 'rdma' is not one of local, shm, tcp, verbs");
}

Test(config_errors, bad_log_level)
{
    expect_problem("[log]\nlevel = loud\n",
                   "FILE:2: level: 'loud' is not one of debug, info, warn, error");
}

Test(config_errors, count_that_is_not_a_number)
{
    expect_problem("[cache]\nshards = 4K\n", "FILE:2: shards: '4K' is not a number");
}

Test(config_errors, vcpus_out_of_range)
{
    expect_problem("[fault]\nvcpus = 300\n", "FILE:2: vcpus: '300' is out of range (0..256)");
}

Test(config_errors, multiplicative_decrease_not_below_one)
{
    expect_problem("[rebalancer]\nmultiplicative_decrease = 1.5\n",
                   "FILE:2: multiplicative_decrease: '1.5' is not between 0 and 1 (exclusive)");
}

Test(config_errors, multiplicative_decrease_not_a_number)
{
    expect_problem("[rebalancer]\nmultiplicative_decrease = half\n",
                   "FILE:2: multiplicative_decrease: 'half' is not a number");
}

Test(config_errors, unknown_key)
{
    expect_problem("[cache]\ncache_sise = 1G\n", "FILE:2: cache_sise: unknown key");
}

Test(config_errors, key_in_the_wrong_section)
{
    expect_problem("[cache]\nvcpus = 4\n",
                   "FILE:2: vcpus: unknown key in [cache] (it belongs in [fault])");
}

Test(config_errors, key_before_any_section)
{
    expect_problem("shards = 4\n", "FILE:1: shards: outside any section (it belongs in [cache])");
}

Test(config_errors, unknown_section_is_reported_once)
{
    expect_problem("[cache]\nshards = 4\n[foo]\nbar = 1\nbaz = 2\n",
                   "FILE:3: [foo]: unknown section");
}

Test(config_errors, key_set_twice)
{
    expect_problem("[cache]\nshards = 4\n\nshards = 8\n",
                   "FILE:4: shards: set twice (first on line 2)");
}

Test(config_errors, empty_value)
{
    expect_problem("[cache]\nreclaim_batch =\n", "FILE:2: reclaim_batch: empty value");
}

Test(config_errors, line_without_equals)
{
    expect_problem("[cache]\nshards 4\n", "FILE:2: shards 4: expected KEY = VALUE");
}

Test(config_errors, line_without_a_key)
{
    expect_problem("[cache]\n = 5\n", "FILE:2: = 5: expected KEY = VALUE");
}

Test(config_errors, a_directory_is_not_a_config)
{
    struct lethe_config c;
    lethe_config_defaults(&c);
    cr_assert_eq(lethe_config_load(&c, "/tmp", stderr), -EISDIR);
}

Test(config_errors, section_header_without_bracket)
{
    expect_problem("[cache\n", "FILE:1: [cache: missing ']'");
}

Test(config_errors, bad_listen_address)
{
    expect_problem("[control]\nlisten = localhost\n",
                   "FILE:2: listen: 'localhost' is not host:port or off");
}

Test(config_errors, memnode_list_with_an_empty_address)
{
    expect_problem("[transport]\ntransport = tcp\nmemnode = a:1,,b:2\n",
                   "FILE:3: memnode: 'a:1,,b:2' has an empty address");
}

Test(config_errors, memnode_list_too_long)
{
    char text[1024];
    int n = snprintf(text, sizeof(text), "[transport]\ntransport = tcp\nmemnode = h:1");
    for (int i = 0; i < LETHE_MAX_MEMNODES; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, ",h:%d", i + 2);
    snprintf(text + n, sizeof(text) - (size_t)n, "\n");
    struct loaded r = load_text(text, NULL);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.errors, "' lists more than 16 memory nodes\n"), "got: %s", r.errors);
    cr_assert(strncmp(r.errors, "FILE:3: memnode: 'h:1,h:2,", 26) == 0, "got: %s", r.errors);
    free(r.errors);
}

Test(config_errors, line_too_long)
{
    size_t len = LETHE_COMMAND_MAX + 1000;
    char *text = malloc(len + 64);
    int n = sprintf(text, "[app]\ncommand = ");
    memset(text + n, 'x', len);
    strcpy(text + n + len, "\n[cache]\nshards = 4097\n");
    struct loaded r = load_text(text, NULL);
    cr_assert_str_eq(r.errors, "FILE:2: command: line is longer than 4350 characters\n"
                               "FILE:4: shards: '4097' is out of range (0..4096)\n");
    free(r.errors);
    free(text);
}

Test(config_errors, the_line_limit_is_4350_characters_and_long_comments_are_ignored)
{
    char *text = malloc(16000);
    int n = sprintf(text, "[app]\n#");
    memset(text + n, 'c', 5000); /* line 2: a long comment */
    n += 5000;
    n += sprintf(text + n, "\ncommand = ");
    memset(text + n, 'x', 4340); /* line 3: 4350 characters, too long only as a command */
    n += 4340;
    n += sprintf(text + n, "\ncommand = ");
    memset(text + n, 'y', 4341); /* line 4: 4351 characters */
    n += 4341;
    strcpy(text + n, "\n");
    struct loaded r = load_text(text, NULL);
    cr_assert_str_eq(r.errors,
                     "FILE:3: command: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is longer "
                     "than 4095 characters\n"
                     "FILE:4: command: line is longer than 4350 characters\n");
    free(r.errors);
    free(text);
}

/* ---- cross-key rules -------------------------------------------------------------------- */

Test(config_errors, more_shards_than_frames)
{
    expect_problem("[cache]\ncache_size = 64K\nregion_size = 1G\nshards = 64\n",
                   "FILE:4: shards: 64 shards but only 16 frames (cache_size 64K)");
}

Test(config_errors, reserve_of_100_percent)
{
    expect_problem("[cache]\n\n\n\n\n\nreserve = 100%\n",
                   "FILE:7: reserve: 100% leaves no frames to use (must be below 100%)");
}

Test(config_errors, cache_larger_than_region)
{
    expect_problem("[cache]\ncache_size = 32G\n",
                   "FILE:2: cache_size: 32G is larger than region_size 16G");
}

Test(config_errors, cross_key_problem_is_reported_at_the_last_key_involved)
{
    expect_problem("[cache]\nregion_size = 256M\n[fault]\nvcpus = 2\n",
                   "FILE:2: cache_size: 512M is larger than region_size 256M");
    expect_problem("[cache]\nregion_size = 1G\ncache_size = 2G\n",
                   "FILE:3: cache_size: 2G is larger than region_size 1G");
}

Test(config_errors, period_min_above_period_max)
{
    expect_problem("[rebalancer]\nperiod_min = 3s\n",
                   "FILE:2: period_min: 3s is above period_max 2s");
}

Test(config_errors, period_initial_outside_min_and_max)
{
    expect_problem("[rebalancer]\nperiod_initial = 5s\n",
                   "FILE:2: period_initial: 5s is outside period_min 10ms .. period_max 2s");
    expect_problem("[rebalancer]\nperiod_initial = 1ms\n",
                   "FILE:2: period_initial: 1ms is outside period_min 10ms .. period_max 2s");
}

Test(config_errors, transport_local_with_memnode_addresses)
{
    expect_problem("[transport]\ntransport = local\nmemnode = 10.0.0.1:7400\n",
                   "FILE:3: memnode: transport local keeps pages in-process and takes no "
                   "addresses (use memnode = embedded)");
}

Test(config_errors, memnode_address_must_fit_the_transport)
{
    expect_problem("[transport]\ntransport = tcp\nmemnode = /tmp/node.sock\n",
                   "FILE:3: memnode: '/tmp/node.sock' is not host:port (transport tcp)");
    expect_problem("[transport]\nmemnode = 10.0.0.1:7400\n",
                   "FILE:2: memnode: '10.0.0.1:7400' is not a Unix socket path (transport shm)");
}

Test(config_errors, a_bad_value_does_not_also_fail_the_rules_it_is_part_of)
{
    /* cache_size is rejected, so "shards > frames" is not judged on the default it kept */
    expect_problem("[cache]\ncache_size = 64Q\nshards = 4096\nregion_size = 64K\n",
                   "FILE:2: cache_size: '64Q' is not a size (use K, M or G)");
}

Test(config_errors, every_problem_in_a_file_is_reported_with_its_line)
{
    expect_problems("[cache]\n"                     /* 1 */
                    "cache_size = 12X\n"            /* 2 */
                    "shards = 8\n"                  /* 3 */
                    "reserve = 100%\n"              /* 4 */
                    "[fault]\n"                     /* 5 */
                    "vcpus = 300\n"                 /* 6 */
                    "pin_vcpus = perhaps\n"         /* 7 */
                    "[bogus]\n"                     /* 8 */
                    "x = 1\n"                       /* 9 */
                    "[rebalancer]\n"                /* 10 */
                    "period_min = 10\n"             /* 11 */
                    "period_max = 5ms\n"            /* 12 */
                    "multiplicative_decrease = 1\n" /* 13 */
                    "shards = 4\n",                 /* 14 */
                    "FILE:2: cache_size: '12X' is not a size (use K, M or G)\n"
                    "FILE:6: vcpus: '300' is out of range (0..256)\n"
                    "FILE:7: pin_vcpus: 'perhaps' is not a boolean (use yes or no)\n"
                    "FILE:8: [bogus]: unknown section\n"
                    "FILE:11: period_min: '10' has no unit (use us, ms or s)\n"
                    "FILE:13: multiplicative_decrease: '1' is not between 0 and 1 (exclusive)\n"
                    "FILE:14: shards: unknown key in [rebalancer] (it belongs in [cache])\n"
                    "FILE:4: reserve: 100% leaves no frames to use (must be below 100%)\n");
}

Test(config_errors, a_missing_file_is_enoent)
{
    struct lethe_config c;
    lethe_config_defaults(&c);
    char path[128];
    snprintf(path, sizeof(path), "/tmp/lethe-test-config-%d-missing.conf", (int)getpid());
    cr_assert_eq(lethe_config_load(&c, path, stderr), -ENOENT);
    struct lethe_memnode_config m;
    lethe_memnode_config_defaults(&m);
    cr_assert_eq(lethe_memnode_config_load(&m, path, stderr), -ENOENT);
}

/* ---- memnode.conf ---------------------------------------------------------------------------- */

Test(memnode_config, defaults_are_the_documented_values)
{
    struct lethe_memnode_config m;
    lethe_memnode_config_defaults(&m);
    cr_assert_eq(m.capacity, 8ULL << 30);
    cr_assert_str_eq(m.tcp_listen, "127.0.0.1:7400");
    cr_assert_str_eq(m.rdma_listen, "off");
    cr_assert_str_eq(m.unix_socket, "/tmp/lethe-memnode.sock");
    cr_assert_eq(m.max_clients, 64);
    cr_assert_str_eq(m.token_file, "/tmp/lethe-memnode.token");
    cr_assert_eq(m.log_level, LETHE_LOG_INFO);
}

Test(memnode_config, the_sample_memnode_conf_is_the_defaults)
{
    struct lethe_memnode_config m, d;
    lethe_memnode_config_defaults(&m);
    lethe_memnode_config_defaults(&d);
    cr_assert_eq(lethe_memnode_config_load(&m, LETHE_SOURCE_DIR "/conf/memnode.conf", stderr), 0);
    cr_assert_eq(memcmp(&m, &d, sizeof(m)), 0);
}

Test(memnode_config, every_key_is_parsed_and_round_trips)
{
    struct lethe_memnode_config m;
    struct loaded r = load_memnode_text("[memnode]\n"
                                        "capacity = 2G\n"
                                        "tcp_listen = 0.0.0.0:9000\n"
                                        "rdma_listen = 192.168.1.5:7471\n"
                                        "unix_socket = off\n"
                                        "max_clients = 8\n"
                                        "token_file = /run/lethe/token\n"
                                        "[log]\n"
                                        "level = warn\n",
                                        &m);
    cr_assert_str_eq(r.errors, "");
    free(r.errors);
    cr_assert_eq(m.capacity, 2ULL << 30);
    cr_assert_str_eq(m.tcp_listen, "0.0.0.0:9000");
    cr_assert_str_eq(m.rdma_listen, "192.168.1.5:7471");
    cr_assert_str_eq(m.unix_socket, "off");
    cr_assert_eq(m.max_clients, 8);
    cr_assert_str_eq(m.token_file, "/run/lethe/token");
    cr_assert_eq(m.log_level, LETHE_LOG_WARN);

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    lethe_memnode_config_print(&m, out);
    fclose(out);
    struct lethe_memnode_config back;
    r = load_memnode_text(text, &back);
    cr_assert_str_eq(r.errors, "", "printed:\n%s", text);
    cr_assert_eq(memcmp(&m, &back, sizeof(m)), 0);
    free(r.errors);
    free(text);
}

/* 120 characters: longer than a Unix socket path can be */
#define LONG_SOCKET                                                                                \
    "/tmp/"                                                                                        \
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"    \
    "aaaaaaaaaaaaaaaaaaaaaaaaaa"

Test(memnode_config, problems_use_the_same_format)
{
    cr_assert_eq(strlen(LONG_SOCKET), 120);
    struct loaded r = load_memnode_text("[memnode]\n"
                                        "capacity = 8X\n"
                                        "max_clients = 0\n"
                                        "cache_size = 1G\n"
                                        "unix_socket = " LONG_SOCKET "\n"
                                        "token_file =\n"
                                        "[cache]\n",
                                        NULL);
    cr_assert_str_eq(r.errors, "FILE:2: capacity: '8X' is not a size (use K, M or G)\n"
                               "FILE:3: max_clients: '0' is out of range (1..4096)\n"
                               "FILE:4: cache_size: unknown key\n"
                               "FILE:5: unix_socket: '" LONG_SOCKET "' is longer than 107 "
                               "characters (the limit of a Unix socket path)\n"
                               "FILE:6: token_file: empty value\n"
                               "FILE:7: [cache]: unknown section\n");
    cr_assert_eq(r.rc, 6);
    free(r.errors);
}

Test(memnode_config, a_node_with_every_listener_off_is_rejected)
{
    struct loaded r = load_memnode_text("[memnode]\n"
                                        "tcp_listen = off\n"
                                        "unix_socket = off\n",
                                        NULL);
    cr_assert_str_eq(r.errors, "FILE:3: unix_socket: tcp_listen, rdma_listen and unix_socket "
                               "are all off: no client can connect\n");
    cr_assert_eq(r.rc, 1);
    free(r.errors);
}

/* ---- lethed --check ------------------------------------------------------------------------ */

struct run {
    int status; /* exit status, or -1 */
    char *out;
    char *err;
};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&buf, &cap, '\0', f);
    fclose(f);
    if (n < 0) {
        free(buf);
        buf = strdup("");
    }
    return buf;
}

/* Runs lethed with args (already shell-quoted), capturing its output. */
static struct run run_lethed(const char *args)
{
    char out[128], err[128], cmd[1024];
    snprintf(out, sizeof(out), "/tmp/lethe-test-config-%d.out", (int)getpid());
    snprintf(err, sizeof(err), "/tmp/lethe-test-config-%d.err", (int)getpid());
    snprintf(cmd, sizeof(cmd), "'%s/bin/lethed' %s >'%s' 2>'%s' </dev/null", LETHE_BUILD_DIR, args,
             out, err);
    int st = system(cmd);
    struct run r;
    r.status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    unlink(out);
    unlink(err);
    return r;
}

static void free_run(struct run *r)
{
    free(r->out);
    free(r->err);
}

Test(lethed, check_of_the_sample_config_prints_it_and_exits_0)
{
    struct run r = run_lethed("--check -c '" LETHE_SOURCE_DIR "/conf/lethe.conf'");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_not_null(strstr(r.out, "cache_size = 512M\n"), "stdout: %s", r.out);
    cr_assert_str_eq(r.err, "");
    free_run(&r);
}

Test(lethed, check_of_a_bad_config_names_the_line_and_exits_2)
{
    char *sample = slurp(LETHE_SOURCE_DIR "/conf/lethe.conf");
    char *at = strstr(sample, "\ncache_size = 512M\n");
    cr_assert_not_null(at, "the sample sets cache_size = 512M");
    int line = 2;
    for (char *p = sample; p < at; p++)
        line += *p == '\n';
    memcpy(at + strlen("\ncache_size = "), "12X ", 4); /* same length: lines stay put */

    char path[128];
    snprintf(path, sizeof(path), "/tmp/lethe-test-config-%d-bad.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(sample, f);
    fclose(f);
    free(sample);

    char args[256], want[256];
    snprintf(args, sizeof(args), "--check -c '%s'", path);
    struct run r = run_lethed(args);
    unlink(path);
    snprintf(want, sizeof(want), "%s:%d: cache_size: '12X' is not a size (use K, M or G)\n", path,
             line);
    cr_assert_eq(r.status, 2);
    cr_assert_not_null(strstr(r.err, want), "want '%s' in stderr: %s", want, r.err);
    cr_assert_str_eq(r.out, "", "nothing on stdout when the config has problems");
    free_run(&r);
}

Test(lethed, version_and_help)
{
    struct run r = run_lethed("--version");
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.out, "lethed " LETHE_VERSION "\n");
    free_run(&r);
    r = run_lethed("--help");
    cr_assert_eq(r.status, 0);
    cr_assert_not_null(strstr(
        r.out, "usage: lethed -c FILE [--set SECTION.KEY=VALUE]... [--check] [--] [command args...]"));
    cr_assert_not_null(strstr(r.out, "--config FILE"));
    free_run(&r);
}

Test(lethed, set_overrides_a_key_and_is_validated)
{
    char args[512];
    snprintf(args, sizeof(args), "--check -c '%s/conf/lethe.conf' --set cache.cache_size=64M",
             LETHE_SOURCE_DIR);
    struct run r = run_lethed(args);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_not_null(strstr(r.out, "cache_size = 64M"), "stdout: %s", r.out);
    free_run(&r);

    snprintf(args, sizeof(args), "--check -c '%s/conf/lethe.conf' --set cache.cache_size=64X",
             LETHE_SOURCE_DIR);
    r = run_lethed(args);
    cr_assert_eq(r.status, 2);
    cr_assert_not_null(
        strstr(r.err, "--set cache.cache_size=64X: cache_size: '64X' is not a size (use K, M or G)"),
        "stderr: %s", r.err);
    free_run(&r);

    snprintf(args, sizeof(args), "--check -c '%s/conf/lethe.conf' --set cache.cache_size=64G",
             LETHE_SOURCE_DIR);
    r = run_lethed(args);
    cr_assert_eq(r.status, 2);
    cr_assert_not_null(strstr(r.err, "cache_size: 64G is larger than region_size 16G"),
                       "stderr: %s", r.err);
    free_run(&r);

    snprintf(args, sizeof(args), "--check -c '%s/conf/lethe.conf' --set cache_size=1M",
             LETHE_SOURCE_DIR);
    r = run_lethed(args);
    cr_assert_eq(r.status, 2);
    cr_assert_not_null(strstr(r.err, "--set cache_size=1M: expected SECTION.KEY=VALUE"),
                       "stderr: %s", r.err);
    free_run(&r);
}

Test(lethed, usage_errors_exit_2)
{
    static const char *const bad[] = {"--check", "--bogus", "-c", "-x -c /dev/null"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct run r = run_lethed(bad[i]);
        cr_assert_eq(r.status, 2, "lethed %s", bad[i]);
        cr_assert_not_null(strstr(r.err, "usage: lethed"), "lethed %s: %s", bad[i], r.err);
        free_run(&r);
    }
}

Test(lethed, check_of_a_missing_file_exits_2)
{
    char args[256];
    snprintf(args, sizeof(args), "--check -c /tmp/lethe-test-config-%d-none.conf", (int)getpid());
    struct run r = run_lethed(args);
    cr_assert_eq(r.status, 2);
    cr_assert_not_null(strstr(r.err, "No such file or directory"), "stderr: %s", r.err);
    free_run(&r);
}
