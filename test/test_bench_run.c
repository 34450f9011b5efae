/* test_bench_run.c — lethe-bench end to end: a tiny run in plain mode and in direct mode
 * (Lethe over the local transport, with a cache smaller than the map so that pages really
 * go out and come back) exits 0, prints one valid JSON document on stdout, and that
 * document says every value verified. JSON is checked with python3's json module. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BENCH LETHE_BUILD_DIR "/bin/lethe-bench"

static char out_path[128], err_path[128];

static void paths(const char *tag)
{
    snprintf(out_path, sizeof(out_path), "/tmp/lethe-test-bench-%d-%s.json", getpid(), tag);
    snprintf(err_path, sizeof(err_path), "/tmp/lethe-test-bench-%d-%s.err", getpid(), tag);
}

static void cleanup(void)
{
    unlink(out_path);
    unlink(err_path);
}

static void show_stderr(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "tail -n 20 %s >&2", err_path);
    if (system(cmd) != 0)
        fprintf(stderr, "(no stderr)\n");
}

/* Runs lethe-bench with `args`; returns its exit status. */
static int run_bench(const char *tag, const char *args)
{
    paths(tag);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s' %s --json --no-progress >%s 2>%s", BENCH, args, out_path,
             err_path);
    int st = system(cmd);
    cr_assert(WIFEXITED(st), "lethe-bench did not exit normally");
    return WEXITSTATUS(st);
}

/* Asserts that the JSON output parses and that each Python expression over it (`d`) holds. */
static void check_json(const char *checks)
{
    /* the checks travel in the environment: no shell quoting to get wrong */
    setenv("LETHE_TEST_CHECKS", checks, 1);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import json, os, sys\n"
             "d = json.load(open(sys.argv[1]))\n"
             "for c in os.environ[\"LETHE_TEST_CHECKS\"].split(\";\"):\n"
             "    assert eval(c), c + \" does not hold in \" + json.dumps(d)[:3000]\n' %s",
             out_path);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "JSON check failed: %s", checks);
}

static bool can_use_userfaultfd(void)
{
    if (geteuid() == 0)
        return true;
    FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
    int v = 0;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v == 1;
}

Test(bench_run, plain_mode_runs_every_workload_and_verifies)
{
    const char *w[] = {"A", "B", "C", "D"};
    for (unsigned i = 0; i < 4; i++) {
        char args[256];
        snprintf(args, sizeof(args), "--mode plain -k 20k -o 50k -t 2 -w %s -d %s", w[i],
                 i % 2 ? "uniform" : "zipfian");
        int rc = run_bench("plain", args);
        if (rc != 0)
            show_stderr();
        cr_assert_eq(rc, 0, "%s: exit status", args);
        check_json("d['verify']['ok'];d['run']['ops']==50000;d['load']['keys']==20000;"
                   "d['verify']['final_check']['done'];d['mode']=='plain';"
                   "d['working_set_bytes']>=20000*56;d['run']['ops_per_sec']>0;"
                   "d['run']['latency_ns']['all']['samples']>=50000//16;"
                   "d['run']['latency_ns']['all']['p50']<=d['run']['latency_ns']['all']['p99']");
        cleanup();
    }
}

Test(bench_run, bad_flags_exit_2_and_print_size_answers_without_running)
{
    cr_assert_eq(run_bench("usage", "-w Z"), 2);
    cleanup();
    paths("size");
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s' -k 1000 --print-size >%s", BENCH, out_path);
    cr_assert_eq(system(cmd), 0);
    FILE *f = fopen(out_path, "r");
    unsigned long long bytes = 0;
    cr_assert(f && fscanf(f, "%llu", &bytes) == 1);
    fclose(f);
    /* 1000 nodes of 48 B and a page of buckets */
    cr_assert_eq(bytes, 1000 * 48 + 8192);
    cleanup();
}

static void direct_run(const char *tag, const char *extra)
{
    if (!can_use_userfaultfd())
        cr_skip_test("userfaultfd needs root (or vm.unprivileged_userfaultfd=1)");
    char args[256];
    /* the map is about 1.7 MiB and the cache 1 MiB: Lethe must swap to keep it */
    snprintf(args, sizeof(args), "--mode direct --transport local -m 1 -k 30k -o 60k %s", extra);
    int rc = run_bench(tag, args);
    if (rc != 0)
        show_stderr();
    cr_assert_eq(rc, 0, "%s: exit status", args);
    check_json("d['verify']['ok'];d['mode']=='direct';d['transport']=='local';"
               "d['cache_bytes']==1<<20;d['run']['ops']==60000;"
               "d['lethe']['faults']>0;d['lethe']['swap_outs']+d['lethe']['clean_drops']>0;"
               "d['lethe']['swap_ins']>0");
    cleanup();
}

Test(bench_run, direct_mode_swaps_and_verifies_with_the_defaults)
{
    direct_run("direct", "-w A -t 2");
}

Test(bench_run, direct_mode_with_direct_reclaim_and_signal_delivery_verifies)
{
    direct_run("direct-signal", "-w D --reclaim direct --delivery signal");
}
