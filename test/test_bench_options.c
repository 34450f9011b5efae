/* test_bench_options.c — lethe-bench's command line: the reference client's flags and
 * defaults, the long forms, Lethe's own flags, and the rejection of bad values with a message
 * that names the option. The parser is compiled in from bench/lethe-bench. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/lethe-bench/options.c"

/* Parses a NULL-terminated list of arguments; the messages land in *msg (caller frees). */
static int parse(struct bench_options *o, char **msg, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "lethe-bench";
    va_list ap;
    va_start(ap, msg);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 63;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    bench_options_defaults(o);
    size_t len;
    FILE *err = open_memstream(msg, &len);
    FILE *out = fopen("/dev/null", "w");
    int rc = bench_options_parse(o, argc, argv, out, err);
    fclose(err);
    fclose(out);
    return rc;
}

static void expect_rejected(const char *needle, ...)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = "lethe-bench";
    va_list ap;
    va_start(ap, needle);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 15;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    struct bench_options o;
    bench_options_defaults(&o);
    char *msg = NULL;
    size_t len;
    FILE *err = open_memstream(&msg, &len);
    int rc = bench_options_parse(&o, argc, argv, stdout, err);
    fclose(err);
    cr_assert_eq(rc, -EINVAL, "'%s ...' should be rejected", argv[1]);
    cr_assert(strstr(msg, needle), "message '%s' should mention '%s'", msg, needle);
    free(msg);
}

Test(bench_options, defaults_are_the_reference_clients)
{
    struct bench_options o;
    bench_options_defaults(&o);
    cr_assert_eq(o.threads, 1);
    cr_assert_eq(o.keys, 60000000ULL);
    cr_assert_eq(o.ops, 20000000ULL);
    cr_assert_eq(o.dist, BENCH_DIST_ZIPFIAN);
    cr_assert_eq(o.workload, 'A');
    cr_assert_eq(o.cache_bytes, 1850ULL << 20);
    cr_assert_eq(o.mode, BENCH_MODE_DIRECT);
    cr_assert_eq(o.sample_every, 16);
    cr_assert(o.progress && o.final_check && !o.json);
}

Test(bench_options, short_flags_set_every_field)
{
    struct bench_options o;
    char *msg = NULL;
    cr_assert_eq(parse(&o, &msg, "-t", "4", "-k", "1000", "-o", "2k", "-d", "uniform", "-w", "b",
                       "-m", "100", "-a", "10.0.0.2", "-p", "7500", NULL),
                 0, "%s", msg);
    cr_assert_eq(o.threads, 4);
    cr_assert_eq(o.keys, 1000);
    cr_assert_eq(o.ops, 2000);
    cr_assert_eq(o.dist, BENCH_DIST_UNIFORM);
    cr_assert_eq(o.workload, 'B');
    cr_assert_eq(o.cache_bytes, 100ULL << 20);
    cr_assert(o.cache_given);
    cr_assert_str_eq(o.addr, "10.0.0.2");
    cr_assert_eq(o.port, 7500);
    free(msg);
}

Test(bench_options, long_forms_match_the_short_ones)
{
    struct bench_options o;
    char *msg = NULL;
    cr_assert_eq(parse(&o, &msg, "--threads", "3", "--keys=5m", "--ops", "1g", "--dist", "zipfian",
                       "--workload", "D", "--cache-gb", "1.5", "--addr", "/tmp/x.sock", "--port",
                       "1", NULL),
                 0, "%s", msg);
    cr_assert_eq(o.threads, 3);
    cr_assert_eq(o.keys, 5000000ULL);
    cr_assert_eq(o.ops, 1000000000ULL);
    cr_assert_eq(o.dist, BENCH_DIST_ZIPFIAN);
    cr_assert_eq(o.workload, 'D');
    cr_assert_eq(o.cache_bytes, 3ULL << 29, "1.5 GiB");
    cr_assert_str_eq(o.addr, "/tmp/x.sock");
    cr_assert_eq(o.port, 1);
    free(msg);
}

Test(bench_options, lethe_flags_are_recorded_as_given)
{
    struct bench_options o;
    char *msg = NULL;
    cr_assert_eq(parse(&o, &msg, "--mode", "direct", "--transport", "tcp", "--memnode",
                       "127.0.0.1:7401", "--reclaim", "direct", "--delivery", "signal", "-C",
                       "conf/lethe.conf", "--json", "--seed", "0x10", "--no-progress", "--sample",
                       "64", "--theta", "0.5", "--no-final-check", "--shm-delay", "3", NULL),
                 0, "%s", msg);
    cr_assert(o.mode_given && o.mode == BENCH_MODE_DIRECT);
    cr_assert(o.transport_given && o.transport == LETHE_TRANSPORT_TCP);
    cr_assert_str_eq(o.memnode, "127.0.0.1:7401");
    cr_assert(o.reclaim_given && o.reclaim == LETHE_RECLAIM_DIRECT);
    cr_assert(o.delivery_given && o.delivery == LETHE_DELIVERY_SIGNAL);
    cr_assert_str_eq(o.config_file, "conf/lethe.conf");
    cr_assert(o.json && !o.progress && !o.final_check);
    cr_assert_eq(o.seed, 16);
    cr_assert_eq(o.sample_every, 64);
    cr_assert_float_eq(o.theta, 0.5, 1e-12);
    cr_assert(o.shm_delay_given && o.shm_delay_us == 3);
    cr_assert(!o.cache_given, "no cache flag: the config file's value stands");
    free(msg);
}

Test(bench_options, help_prints_usage_and_asks_to_exit)
{
    struct bench_options o;
    bench_options_defaults(&o);
    char *argv[] = {"lethe-bench", "--help", NULL};
    char *text = NULL;
    size_t len;
    FILE *out = open_memstream(&text, &len);
    cr_assert_eq(bench_options_parse(&o, 2, argv, out, stderr), 1);
    fclose(out);
    cr_assert(strstr(text, "--cache-mb") && strstr(text, "--workload"), "usage lists flags");
    free(text);
}

Test(bench_options, bad_values_name_the_option)
{
    expect_rejected("--threads", "-t", "0", NULL);
    expect_rejected("--threads", "-t", "257", NULL);
    expect_rejected("--keys", "-k", "ten", NULL);
    expect_rejected("--keys", "-k", "-5", NULL);
    expect_rejected("--ops", "--ops", "99999999999999999999999", NULL);
    expect_rejected("--dist", "-d", "normal", NULL);
    expect_rejected("--workload", "-w", "E", NULL);
    expect_rejected("--workload", "-w", "AB", NULL);
    expect_rejected("--cache-mb", "-m", "1.5", NULL);
    expect_rejected("--cache-gb", "-c", "lots", NULL);
    expect_rejected("--cache-gb", "-c", "-1", NULL);
    expect_rejected("--port", "-p", "70000", NULL);
    expect_rejected("--port", "-p", "8k", NULL);
    expect_rejected("--mode", "--mode", "kernel", NULL);
    expect_rejected("--transport", "--transport", "carrier-pigeon", NULL);
    expect_rejected("--reclaim", "--reclaim", "lazy", NULL);
    expect_rejected("--delivery", "--delivery", "mail", NULL);
    expect_rejected("--sample", "--sample", "3", NULL);
    expect_rejected("--theta", "--theta", "1.0", NULL);
    expect_rejected("--seed", "--seed", "x", NULL);
}

Test(bench_options, unknown_options_missing_values_and_stray_words_are_errors)
{
    expect_rejected("unknown option", "--frobnicate", NULL);
    expect_rejected("unknown option", "-z", NULL);
    expect_rejected("needs a value", "-k", NULL);
    expect_rejected("unexpected argument", "-k", "10", "extra", NULL);
}

Test(bench_options, plain_mode_refuses_lethe_only_flags)
{
    expect_rejected("apply to --mode direct", "--mode", "plain", "--transport", "shm", NULL);
    expect_rejected("apply to --mode direct", "--mode", "plain", "--reclaim", "direct", NULL);
}

Test(bench_options, parsing_twice_in_one_process_starts_afresh)
{
    struct bench_options o;
    char *msg = NULL;
    cr_assert_eq(parse(&o, &msg, "-k", "7", NULL), 0);
    free(msg);
    cr_assert_eq(parse(&o, &msg, "-o", "9", NULL), 0);
    free(msg);
    cr_assert_eq(o.ops, 9);
    cr_assert_eq(o.keys, BENCH_DEFAULT_KEYS, "the second parse starts from the defaults");
}

Test(bench_options, counts_take_decimal_suffixes_and_overflow_is_erange)
{
    uint64_t v;
    cr_assert_eq(bench_parse_count("60m", &v), 0);
    cr_assert_eq(v, 60000000ULL);
    cr_assert_eq(bench_parse_count("3K", &v), 0);
    cr_assert_eq(v, 3000);
    cr_assert_eq(bench_parse_count("18446744073709551615", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    cr_assert_eq(bench_parse_count("18446744073709551616", &v), -ERANGE);
    cr_assert_eq(bench_parse_count("18446744073709552g", &v), -ERANGE);
    cr_assert_eq(bench_parse_count("5mm", &v), -EINVAL);
    cr_assert_eq(bench_parse_count("", &v), -EINVAL);
    cr_assert_eq(bench_parse_count("1.5m", &v), -EINVAL);
}
