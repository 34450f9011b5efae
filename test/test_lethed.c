/* test_lethed.c — lethed as a supervisor: the program's exit status, signals, the command,
 * configuration errors, the environment it hands over, the summary, its private files. */
#include "test_lethed_util.h"

TestSuite(lethed, .init = tl_setup, .fini = tl_teardown, .timeout = 60);

static int run_lethed(const char *conf, char *const cmd[], const char *out, const char *err)
{
    char *argv[32] = {TL_LETHED, "-c", (char *)conf, "--"};
    int n = 4;
    for (int i = 0; cmd[i] && n < 31; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    return tl_run(argv, NULL, out, err, 45);
}

Test(lethed, exits_with_the_program_exit_status)
{
    const char *conf = tl_config("a.conf", "8M", "");
    char *cmd[] = {TL_PROG("app_mixed"), "4", "--exit", "3", NULL};
    cr_assert_eq(run_lethed(conf, cmd, tl_file("out"), tl_file("err")), 3);
    char *err = tl_read_file(tl_file("err"));
    cr_assert(strstr(err, "exited with status 3"), "lethed's line names the status:\n%s", err);
    free(err);
}

Test(lethed, killed_program_gives_128_plus_the_signal)
{
    const char *conf = tl_config("a.conf", "8M", "");
    char *cmd[] = {"/bin/sh", "-c", "kill -KILL $$", NULL};
    cr_assert_eq(run_lethed(conf, cmd, NULL, tl_file("err")), 128 + SIGKILL);
    char *err = tl_read_file(tl_file("err"));
    cr_assert(strstr(err, "was killed by signal 9"), "%s", err);
    free(err);
}

/* Starts lethed on app_mixed --hold and waits for "ready"; returns lethed's pid. */
static pid_t start_held(const char *conf, int *stdin_w, int *stdout_r)
{
    int in[2], out[2];
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    int err = open(tl_file("err"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    char *argv[] = {TL_LETHED, "-c", (char *)conf, "--", TL_PROG("app_mixed"), "4", "--hold", NULL};
    pid_t pid = tl_spawn(argv, NULL, in[0], out[1], err);
    close(in[0]);
    close(out[1]);
    close(err);
    if (!tl_read_until(out[0], "ready", 30)) {
        kill(pid, SIGKILL);
        tl_wait(pid, 10);
        cr_assert_fail("the program never said ready");
    }
    *stdin_w = in[1];
    *stdout_r = out[0];
    return pid;
}

static void check_forwarded(int sig)
{
    const char *conf = tl_config("a.conf", "8M", "");
    int in, out;
    pid_t pid = start_held(conf, &in, &out);
    kill(pid, sig);
    int status = tl_wait(pid, 20);
    close(in);
    close(out);
    cr_assert_eq(status, 128 + sig, "lethed exits like the program killed by signal %d (got %d)",
                 sig, status);
    char *err = tl_read_file(tl_file("err"));
    cr_assert(strstr(err, "forwarding"), "lethed says it forwarded the signal:\n%s", err);
    free(err);
}

Test(lethed, sigterm_sent_to_lethed_reaches_the_program)
{
    check_forwarded(SIGTERM);
}

Test(lethed, sigint_and_sighup_sent_to_lethed_reach_the_program)
{
    check_forwarded(SIGINT);
    tl_teardown();
    tl_setup();
    check_forwarded(SIGHUP);
}

Test(lethed, program_that_ends_normally_while_held_exits_zero)
{
    const char *conf = tl_config("a.conf", "8M", "");
    int in, out;
    pid_t pid = start_held(conf, &in, &out);
    cr_assert_eq(write(in, "go\n", 3), 3);
    close(in);
    cr_assert(tl_read_until(out, "second-pass", 30));
    close(out);
    cr_assert_eq(tl_wait(pid, 20), 0);
}

Test(lethed, unknown_command_exits_127)
{
    const char *conf = tl_config("a.conf", "8M", "");
    char *cmd[] = {"no-such-command-for-lethe", NULL};
    cr_assert_eq(run_lethed(conf, cmd, NULL, tl_file("err")), 127);
    char *err = tl_read_file(tl_file("err"));
    cr_assert(strstr(err, "command not found"), "%s", err);
    free(err);
}

Test(lethed, non_executable_command_exits_126)
{
    const char *conf = tl_config("a.conf", "8M", "");
    tl_write_file(tl_file("plain.txt"), "not a program\n");
    char *cmd[] = {(char *)tl_file("plain.txt"), NULL};
    cr_assert_eq(run_lethed(conf, cmd, NULL, NULL), 126);
}

Test(lethed, configuration_problems_exit_2_naming_file_line_and_key)
{
    const char *conf = tl_file("bad.conf");
    tl_write_file(conf, "[cache]\ncache_size = 12X\n");
    char *cmd[] = {"/bin/true", NULL};
    cr_assert_eq(run_lethed(conf, cmd, NULL, tl_file("err")), 2);
    char *err = tl_read_file(tl_file("err"));
    char want[600];
    snprintf(want, sizeof(want), "%s:2: cache_size:", conf);
    cr_assert(strstr(err, want), "expected '%s' in:\n%s", want, err);
    free(err);
}

Test(lethed, runs_the_app_command_of_the_config_when_none_is_given)
{
    const char *conf =
        tl_config("a.conf", "8M", "[app]\ncommand = " TL_PROG("app_mixed") " 2 --exit 5\n");
    char *argv[] = {TL_LETHED, "-c", (char *)conf, NULL};
    cr_assert_eq(tl_run(argv, NULL, tl_file("out"), NULL, 45), 5);
    char *out = tl_read_file(tl_file("out"));
    cr_assert(strstr(out, "second-pass"), "%s", out);
    free(out);
}

Test(lethed, no_command_anywhere_is_a_usage_error)
{
    const char *conf = tl_config("a.conf", "8M", "");
    char *argv[] = {TL_LETHED, "-c", (char *)conf, NULL};
    cr_assert_eq(tl_run(argv, NULL, NULL, tl_file("err"), 45), 2);
    char *err = tl_read_file(tl_file("err"));
    cr_assert(strstr(err, "no command"), "%s", err);
    free(err);
}

Test(lethed, hands_the_runtime_its_environment)
{
    const char *conf = tl_config("a.conf", "8M", "");
    /* An LD_PRELOAD of our own is kept, after liblethe.so; LETHE_OPTIONS is not passed on. */
    char *env[] = {"PATH=/usr/bin:/bin", "LD_PRELOAD=libm.so.6", "LETHE_OPTIONS=cache.shards=1",
                   /* lethed itself sees this LD_PRELOAD too: in the ASan build its runtime
                    * then does not come first, which is harmless here */
                   "ASAN_OPTIONS=verify_asan_link_order=0", NULL};
    char *argv[] = {TL_LETHED,
                    "-c",
                    (char *)conf,
                    "--",
                    "/bin/sh",
                    "-c",
                    "echo \"$LD_PRELOAD|$LETHE_PID|$$|${LETHE_OPTIONS-unset}|$LETHE_CONFIG|"
                    "$LETHE_STATS_SHM|$LETHE_MEMNODE|$LETHE_CONTROL\"",
                    NULL};
    cr_assert_eq(tl_run(argv, env, tl_file("out"), tl_file("err"), 45), 0);
    char *out = tl_read_file(tl_file("out"));
    char preload[600], pid[32], self[32], options[64], config[600], shm[64], memnode[600],
        control[128];
    cr_assert_eq(sscanf(out, "%599[^|]|%31[^|]|%31[^|]|%63[^|]|%599[^|]|%63[^|]|%599[^|]|%127[^\n]",
                        preload, pid, self, options, config, shm, memnode, control),
                 8, "%s", out);
    char want[700];
    char real[512];
    cr_assert_not_null(realpath(TL_PRELOAD, real));
    snprintf(want, sizeof(want), "%s:libm.so.6", real);
    cr_assert_str_eq(preload, want);
    cr_assert_str_eq(pid, self, "LETHE_PID names the program itself");
    cr_assert_str_eq(options, "unset");
    cr_assert(strstr(config, "/lethe.conf"), "%s", config);
    cr_assert(strncmp(shm, "fd:", 3) == 0, "%s", shm);
    cr_assert(strstr(memnode, "memnode.sock"), "%s", memnode);
    cr_assert(strncmp(control, "http://127.0.0.1:", 17) == 0, "%s", control);
    free(out);
}

Test(lethed, summary_file_gets_the_program_summary_and_lethed_line)
{
    char extra[600];
    snprintf(extra, sizeof(extra), "[log]\nsummary = %s\n", tl_file("summary.txt"));
    const char *conf = tl_config("a.conf", "8M", extra);
    char *cmd[] = {TL_PROG("app_mixed"), "4", NULL};
    cr_assert_eq(run_lethed(conf, cmd, NULL, tl_file("err")), 0);
    char *sum = tl_read_file(tl_file("summary.txt"));
    cr_assert_not_null(sum);
    cr_assert(strstr(sum, "lethe summary"), "%s", sum);
    cr_assert(strstr(sum, "lethed: "), "%s", sum);
    free(sum);
    char *err = tl_read_file(tl_file("err"));
    cr_assert_null(strstr(err, "lethe summary"), "not on stderr too");
    free(err);
}

Test(lethed, summary_off_prints_no_summary)
{
    const char *conf = tl_config("a.conf", "8M", "[log]\nsummary = off\n");
    char *cmd[] = {TL_PROG("app_mixed"), "4", NULL};
    cr_assert_eq(run_lethed(conf, cmd, NULL, tl_file("err")), 0);
    char *err = tl_read_file(tl_file("err"));
    cr_assert_null(strstr(err, "lethe summary"), "%s", err);
    cr_assert_null(strstr(err, "lethed: `"), "%s", err);
    free(err);
}

Test(lethed, removes_its_run_directory)
{
    const char *conf = tl_config("a.conf", "8M", "");
    char tmpdir[600];
    snprintf(tmpdir, sizeof(tmpdir), "TMPDIR=%s", tl_dir);
    char *env[] = {"PATH=/usr/bin:/bin", tmpdir, NULL};
    char *argv[] = {
        TL_LETHED, "-c", (char *)conf, "--", "/bin/sh", "-c", "ls -d \"$TMPDIR\"/lethed-*", NULL};
    cr_assert_eq(tl_run(argv, env, tl_file("out"), NULL, 45), 0);
    char *out = tl_read_file(tl_file("out"));
    cr_assert(strstr(out, "/lethed-"), "the run directory exists while the program runs: %s", out);
    free(out);
    char pattern[600];
    snprintf(pattern, sizeof(pattern), "ls -d %s/lethed-* >/dev/null 2>&1", tl_dir);
    cr_assert_neq(system(pattern), 0, "the run directory is gone afterwards");
}

Test(lethed, runtime_that_cannot_reach_its_memory_node_stops_the_program_with_125)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "[cache]\ncache_size = 8M\nregion_size = 4G\n"
             "[transport]\nremote_size = 1G\nmemnode = %s/nobody.sock\nconnect_timeout = 100ms\n"
             "token_file = %s/token\n[control]\nlisten = off\n",
             tl_dir, tl_dir);
    tl_write_file(tl_file("b.conf"), text);
    tl_write_file(tl_file("token"), "0123456789abcdef\n");
    char *cmd[] = {TL_PROG("app_mixed"), "4", NULL};
    cr_assert_eq(run_lethed(tl_file("b.conf"), cmd, tl_file("out"), tl_file("err")), 125);
    char *out = tl_read_file(tl_file("out"));
    cr_assert_str_eq(out, "", "the program never ran");
    free(out);
    char *err = tl_read_file(tl_file("err"));
    cr_assert(strstr(err, "the runtime failed"), "lethed reports the failure:\n%s", err);
    free(err);
}

Test(lethed, control_port_off_still_runs_the_program)
{
    const char *conf = tl_file("c.conf");
    tl_write_file(conf, "[cache]\ncache_size = 8M\n[control]\nlisten = off\n");
    char *cmd[] = {TL_PROG("app_mixed"), "4", NULL};
    cr_assert_eq(run_lethed(conf, cmd, NULL, tl_file("err")), 0);
    char *err = tl_read_file(tl_file("err"));
    cr_assert_null(strstr(err, "control port listening"), "%s", err);
    free(err);
}

Test(lethed, starts_several_embedded_nodes_and_keeps_two_copies_of_each_page)
{
    char extra[600];
    snprintf(extra, sizeof(extra),
             "[transport]\nembedded_nodes = 3\nreplicas = 2\n[log]\nsummary = %s\n",
             tl_file("summary.txt"));
    const char *conf = tl_config("a.conf", "2M", extra);
    char *cmd[] = {TL_PROG("app_mixed"), "8", NULL};
    cr_assert_eq(run_lethed(conf, cmd, NULL, tl_file("err")), 0);
    char *sum = tl_read_file(tl_file("summary.txt"));
    cr_assert_not_null(sum);
    cr_assert(strstr(sum, "transport=shm, 3 memory nodes, 2 replicas"), "%s", sum);
    cr_assert(strstr(sum, "3 of 3 memory nodes live, 2 replicas"), "%s", sum);
    free(sum);
    char *err = tl_read_file(tl_file("err"));
    cr_assert(strstr(err, "memnode-2.sock"), "a third embedded node: %s", err);
    free(err);
}
