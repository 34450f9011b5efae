/* test_preload.c — liblethe.so on its own (LD_PRELOAD by hand, no lethed): when it starts
 * and when it stays dormant, how it takes its configuration, what it publishes, its mmap
 * handling, and the summary at exit. The local transport keeps memory nodes out of it. */
#include "test_lethed_util.h"

#include "core/stats_shm.h"

TestSuite(preload, .init = tl_setup, .fini = tl_teardown, .timeout = 60);

struct env {
    char *v[16];
    int n;
    char bufs[16][700];
};

static void env_add(struct env *e, const char *fmt, const char *value)
{
    snprintf(e->bufs[e->n], sizeof(e->bufs[e->n]), fmt, value);
    e->v[e->n] = e->bufs[e->n];
    e->v[++e->n] = NULL;
}

/* PATH, LD_PRELOAD=liblethe.so and LETHE_CONFIG=conf (when conf is not NULL). */
static void env_base(struct env *e, const char *conf)
{
    e->n = 0;
    env_add(e, "PATH=%s", "/usr/bin:/bin");
    env_add(e, "LD_PRELOAD=%s", TL_PRELOAD);
    if (conf)
        env_add(e, "LETHE_CONFIG=%s", conf);
}

static const char *local_config(const char *extra)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "[cache]\ncache_size = 8M\nregion_size = 2G\n"
             "[transport]\ntransport = local\nremote_size = 1G\n%s",
             extra);
    const char *path = tl_file("local.conf");
    tl_write_file(path, text);
    return path;
}

/* A stats segment the child inherits; returns its descriptor spec in e. */
static struct lethe_stats_shm *segment_for(struct env *e, int *fds)
{
    struct lethe_stats_shm *s;
    cr_assert_eq(lethe_stats_shm_create(&s, &fds[0]), 0);
    fds[1] = dup(fds[0]); /* without close-on-exec: the child inherits it */
    char spec[32];
    snprintf(spec, sizeof(spec), "fd:%d", fds[1]);
    env_add(e, "LETHE_STATS_SHM=%s", spec);
    return s;
}

static struct lethe_stats_snapshot *read_segment(struct lethe_stats_shm *s, int *fds)
{
    struct lethe_stats_snapshot *snap = calloc(1, sizeof(*snap));
    cr_assert_eq(lethe_stats_shm_read(s, snap), 0);
    lethe_stats_shm_detach(s);
    close(fds[0]);
    close(fds[1]);
    return snap;
}

Test(preload, without_lethe_config_it_stays_dormant)
{
    struct env e;
    env_base(&e, NULL);
    char *argv[] = {TL_PROG("app_mixed"), "8", NULL};
    cr_assert_eq(tl_run(argv, e.v, tl_file("out"), tl_file("err"), 30), 0);
    char *err = tl_read_file(tl_file("err"));
    cr_assert_str_eq(err, "", "a dormant liblethe says nothing: %s", err);
    free(err);
}

Test(preload, stays_dormant_in_a_process_that_is_not_lethe_pid)
{
    struct env e;
    env_base(&e, local_config(""));
    env_add(&e, "LETHE_PID=%s", "1");
    char *argv[] = {TL_PROG("app_mixed"), "8", NULL};
    cr_assert_eq(tl_run(argv, e.v, NULL, tl_file("err"), 30), 0);
    char *err = tl_read_file(tl_file("err"));
    cr_assert_null(strstr(err, "lethe summary"), "%s", err);
    free(err);
}

Test(preload, a_bad_configuration_stops_the_program_before_main_with_125)
{
    const char *conf = tl_file("bad.conf");
    tl_write_file(conf, "[cache]\ncache_size = lots\n");
    struct env e;
    env_base(&e, conf);
    char *argv[] = {TL_PROG("app_mixed"), "8", NULL};
    cr_assert_eq(tl_run(argv, e.v, tl_file("out"), tl_file("err"), 30), 125);
    char *out = tl_read_file(tl_file("out"));
    cr_assert_str_eq(out, "", "main never ran");
    free(out);
    char *err = tl_read_file(tl_file("err"));
    char want[600];
    snprintf(want, sizeof(want), "%s:2: cache_size:", conf);
    cr_assert(strstr(err, want), "%s", err);
    free(err);
}

Test(preload, a_missing_configuration_file_stops_the_program_with_125)
{
    struct env e;
    env_base(&e, tl_file("nowhere.conf"));
    char *argv[] = {TL_PROG("app_mixed"), "8", NULL};
    cr_assert_eq(tl_run(argv, e.v, NULL, tl_file("err"), 30), 125);
    char *err = tl_read_file(tl_file("err"));
    cr_assert(strstr(err, "cannot read"), "%s", err);
    free(err);
}

Test(preload, lethe_options_override_the_file)
{
    struct env e;
    env_base(&e, local_config(""));
    env_add(&e, "LETHE_OPTIONS=%s", "cache.shards=4  fault.vcpus=1");
    int fds[2];
    struct lethe_stats_shm *s = segment_for(&e, fds);
    char *argv[] = {TL_PROG("app_mixed"), "8", NULL};
    cr_assert_eq(tl_run(argv, e.v, NULL, tl_file("err"), 30), 0);
    struct lethe_stats_snapshot *snap = read_segment(s, fds);
    cr_assert_eq(snap->nshards, 4);
    cr_assert(strstr(snap->paths, "vcpus=1"), "%s", snap->paths);
    free(snap);
}

Test(preload, a_bad_override_stops_the_program_with_125)
{
    struct env e;
    env_base(&e, local_config(""));
    env_add(&e, "LETHE_OPTIONS=%s", "cache.shards=many");
    char *argv[] = {TL_PROG("app_mixed"), "8", NULL};
    cr_assert_eq(tl_run(argv, e.v, NULL, tl_file("err"), 30), 125);
    char *err = tl_read_file(tl_file("err"));
    cr_assert(strstr(err, "LETHE_OPTIONS: cache.shards"), "%s", err);
    free(err);
}

Test(preload, publishes_a_final_snapshot_at_exit)
{
    struct env e;
    env_base(&e, local_config("[cache]\nshards = 16\n"));
    int fds[2];
    struct lethe_stats_shm *s = segment_for(&e, fds);
    char *argv[] = {TL_PROG("app_mixed"), "32", NULL};
    cr_assert_eq(tl_run(argv, e.v, NULL, tl_file("err"), 30), 0);
    struct lethe_stats_snapshot *snap = read_segment(s, fds);
    cr_assert_eq(snap->state, LETHE_STATS_EXITED);
    cr_assert_eq(snap->cache_size, 8u << 20);
    cr_assert_gt(snap->stats.faults, 0);
    cr_assert_gt(snap->stats.swap_ins, 0, "32 MiB of heap through 8 MiB swaps");
    cr_assert_eq(snap->nshards, 16);
    cr_assert_gt(snap->seq, 0);
    free(snap);
}

Test(preload, large_anonymous_mmaps_are_managed)
{
    char *plain[] = {TL_PROG("app_mmap"), "48", NULL};
    cr_assert_eq(tl_run(plain, NULL, tl_file("plain.out"), NULL, 30), 0);
    struct env e;
    env_base(&e, local_config(""));
    int fds[2];
    struct lethe_stats_shm *s = segment_for(&e, fds);
    cr_assert_eq(tl_run(plain, e.v, tl_file("lethe.out"), tl_file("err"), 30), 0);
    cr_assert(tl_files_equal(tl_file("plain.out"), tl_file("lethe.out")));
    struct lethe_stats_snapshot *snap = read_segment(s, fds);
    cr_assert_gt(snap->stats.swap_ins, 0, "the mappings were in the region");
    cr_assert_gt(snap->stats.released_pages, 0, "munmap and madvise gave pages back");
    free(snap);
}

Test(preload, small_mmaps_and_threshold_zero_stay_with_the_kernel)
{
    struct env e;
    env_base(&e, local_config("[fault]\nmmap_threshold = 0\n"));
    int fds[2];
    struct lethe_stats_shm *s = segment_for(&e, fds);
    char *argv[] = {TL_PROG("app_mmap"), "48", NULL};
    cr_assert_eq(tl_run(argv, e.v, NULL, tl_file("err"), 30), 0);
    struct lethe_stats_snapshot *snap = read_segment(s, fds);
    cr_assert_eq(snap->stats.swap_ins, 0, "nothing of app_mmap's memory was managed");
    free(snap);
}

Test(preload, the_summary_reaches_stderr_even_when_the_program_closes_it)
{
    if (access("/usr/bin/sort", X_OK) != 0)
        cr_skip_test("no /usr/bin/sort");
    tl_write_file(tl_file("in.txt"), "b\na\nc\n");
    struct env e;
    env_base(&e, local_config(""));
    /* GNU sort closes its standard error in an exit handler. */
    char *argv[] = {"/usr/bin/sort", (char *)tl_file("in.txt"), NULL};
    cr_assert_eq(tl_run(argv, e.v, tl_file("out"), tl_file("err"), 30), 0);
    char *out = tl_read_file(tl_file("out"));
    cr_assert_str_eq(out, "a\nb\nc\n");
    free(out);
    char *err = tl_read_file(tl_file("err"));
    cr_assert(strstr(err, "lethe summary"), "%s", err);
    free(err);
}

Test(preload, only_the_process_itself_prints_a_summary)
{
    struct env e;
    env_base(&e, local_config(""));
    /* fork children, an exec'd copy, system() and popen(): one summary in all. The shell
     * gives app_forkexec its own pid as LETHE_PID, as lethed would. */
    char *argv[] = {"/bin/sh", "-c", "export LETHE_PID=$$; exec " TL_PROG("app_forkexec") " 16",
                    NULL};
    cr_assert_eq(tl_run(argv, e.v, tl_file("out"), tl_file("err"), 30), 0);
    char *err = tl_read_file(tl_file("err"));
    int n = 0;
    for (const char *p = err; (p = strstr(p, "lethe summary")); p++)
        n++;
    cr_assert_eq(n, 1, "%s", err);
    free(err);
}

Test(preload, descendants_stay_dormant_under_lethe_pid)
{
    struct env e;
    env_base(&e, local_config(""));
    /* The shell is the process Lethe manages; what it runs is not. */
    char *argv[] = {"/bin/sh", "-c",
                    "export LETHE_PID=$$; " TL_PROG("app_mixed") " 4 >/dev/null; echo done", NULL};
    cr_assert_eq(tl_run(argv, e.v, tl_file("out"), tl_file("err"), 30), 0);
    char *err = tl_read_file(tl_file("err"));
    cr_assert_null(strstr(err, "lethe summary"), "app_mixed stayed dormant: %s", err);
    free(err);
}
