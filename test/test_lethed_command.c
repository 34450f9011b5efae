/* test_lethed_command.c — how lethed turns [app] command into a program and an environment:
 * shell-like splitting without expansion, the display form, PATH lookup, and the variables
 * handed to liblethe.so. lethed's command.c is compiled in. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/lethed/command.c"

static char **split_ok(const char *line, int want)
{
    char **argv;
    int n = lethed_split_command(line, &argv);
    cr_assert_eq(n, want, "'%s' splits into %d words, not %d", line, want, n);
    cr_assert_null(argv[n], "NULL-terminated");
    return argv;
}

Test(command, splits_on_blanks_and_keeps_quoted_text_together)
{
    char **a = split_ok("  sort  -k 2\t'my file.txt' \"a b\"  ", 5);
    cr_assert_str_eq(a[0], "sort");
    cr_assert_str_eq(a[1], "-k");
    cr_assert_str_eq(a[2], "2");
    cr_assert_str_eq(a[3], "my file.txt");
    cr_assert_str_eq(a[4], "a b");
    lethed_free_words(a);
}

Test(command, does_no_expansion_and_honours_escapes)
{
    char **a = split_ok("echo $HOME '*' \"\\$x \\\"q\\\" \\n\" a\\ b ''", 6);
    cr_assert_str_eq(a[1], "$HOME", "no variable expansion");
    cr_assert_str_eq(a[2], "*", "no globbing");
    cr_assert_str_eq(a[3], "$x \"q\" \\n", "in double quotes only \\$ \\\" \\\\ \\` escape");
    cr_assert_str_eq(a[4], "a b");
    cr_assert_str_eq(a[5], "", "an empty quoted word is a word");
    lethed_free_words(a);
}

Test(command, blank_line_has_no_words)
{
    char **a = split_ok(" \t ", 0);
    lethed_free_words(a);
}

Test(command, unterminated_quotes_are_refused)
{
    char **a;
    cr_assert_eq(lethed_split_command("echo 'oops", &a), -EINVAL);
    cr_assert_eq(lethed_split_command("echo \"oops", &a), -EINVAL);
    cr_assert_eq(lethed_split_command("echo oops\\", &a), -EINVAL);
}

Test(command, display_form_quotes_what_needs_it)
{
    char *argv[] = {"sort", "-o", "out file", "it's", "", NULL};
    char buf[256];
    lethed_format_command(argv, buf, sizeof(buf));
    cr_assert_str_eq(buf, "sort -o 'out file' 'it'\\''s' ''");
    /* and it splits back into the same words */
    char **back;
    cr_assert_eq(lethed_split_command(buf, &back), 5);
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(back[i], argv[i]);
    lethed_free_words(back);
}

Test(command, finds_executables_like_execvp)
{
    char path[512];
    cr_assert_eq(lethed_find_executable("sh", path, sizeof(path)), 0);
    cr_assert(strchr(path, '/') && access(path, X_OK) == 0, "%s", path);
    cr_assert_eq(lethed_find_executable("/bin/sh", path, sizeof(path)), 0);
    cr_assert_str_eq(path, "/bin/sh");
    cr_assert_eq(lethed_find_executable("no-such-program-lethe", path, sizeof(path)), -ENOENT);
    cr_assert_eq(lethed_find_executable("/etc/passwd", path, sizeof(path)), -EACCES);
    cr_assert_eq(lethed_find_executable("/etc", path, sizeof(path)), -EACCES);
    cr_assert_eq(lethed_find_executable("", path, sizeof(path)), -ENOENT);
}

Test(command, environment_replaces_lethe_variables_and_prepends_the_preload)
{
    char *base[] = {"HOME=/root",  "LD_PRELOAD=/x/other.so", "LETHE_OPTIONS=cache.shards=1",
                    "LETHE_PID=7", "LETHE_CONFIG=/old.conf", "LETHE_LOG=debug",
                    NULL};
    struct lethed_env_vars v = {.preload = "/opt/lib/liblethe.so",
                                .config = "/run/lethe.conf",
                                .memnode = "/run/memnode.sock",
                                .token_file = "/run/token",
                                .stats_shm = "fd:5",
                                .control = NULL};
    char *slot;
    char **env = lethed_build_env(base, &v, &slot);
    cr_assert_not_null(env);
    lethed_env_set_pid(slot, 31337);
    const char *want[] = {"HOME=/root",
                          "LETHE_LOG=debug",
                          "LD_PRELOAD=/opt/lib/liblethe.so:/x/other.so",
                          "LETHE_CONFIG=/run/lethe.conf",
                          "LETHE_STATS_SHM=fd:5",
                          "LETHE_MEMNODE=/run/memnode.sock",
                          "LETHE_TOKEN_FILE=/run/token",
                          "LETHE_PID=31337",
                          NULL};
    int n = 0;
    for (; env[n]; n++) {
        cr_assert_not_null(want[n], "unexpected extra variable %s", env[n]);
        cr_assert_str_eq(env[n], want[n]);
    }
    cr_assert_null(want[n], "missing %s", want[n]);
    lethed_free_words(env);
}

Test(command, environment_without_a_previous_preload)
{
    char *base[] = {"PATH=/bin", NULL};
    struct lethed_env_vars v = {.preload = "/l/liblethe.so", .config = "/c", .stats_shm = "fd:3"};
    char *slot;
    char **env = lethed_build_env(base, &v, &slot);
    cr_assert_str_eq(env[1], "LD_PRELOAD=/l/liblethe.so");
    lethed_env_set_pid(slot, 0);
    cr_assert(strcmp(env[4], "LETHE_PID=0") == 0, "%s", env[4]);
    lethed_free_words(env);
}
