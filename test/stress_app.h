/* stress_app.h — the stress engine of core_stress.h as an application in a forked child,
 * for the tests that break its memory nodes (test_remote_failure.c, test_replicas.c): its
 * standard output and error go to a file, one byte arrives on a pipe once it swaps (pages
 * out and back), and its exit status says how the run ended. The parent reads the output,
 * waits for the end with a watchdog, and cleans up. Header-only.
 */
#ifndef LETHE_TEST_STRESS_APP_H
#define LETHE_TEST_STRESS_APP_H

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "core_stress.h"
#include "memnode_harness.h"

/* the child's exit status */
#define APP_MISMATCH  3 /* it read a page that did not hold what it last wrote */
#define APP_NO_START  4 /* lethe_start failed */
#define APP_RUN_ENDED 5 /* the run ended with no wrong value */

struct app {
    pid_t pid;
    int ready_fd; /* one byte arrives once the child swaps */
    char err_path[128];
};

/* Starts the stress engine with c on threads threads for secs seconds in a child whose log
 * lines are tagged `name`; its last line says `run ended: lethe_start RC, N ops, M mismatches`. */
static inline void app_start(struct app *a, const struct lethe_config *c, unsigned threads,
                             double secs, const char *name)
{
    static int seq;
    snprintf(a->err_path, sizeof(a->err_path), "/tmp/lethe-%s-%d-%d.err", name, getpid(), seq++);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    fflush(stdout);
    fflush(stderr);
    a->pid = fork();
    cr_assert_geq(a->pid, 0);
    if (a->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        const int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGALRM, SIGTERM};
        for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
            signal(sigs[i], SIG_DFL);
        close(p[0]);
        int fd = open(a->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        lethe_log_init(name);
        struct stress_result r = stress_run_config(c, threads, secs, p[1]);
        fprintf(stderr, "%s: run ended: lethe_start %d, %lu ops, %lu mismatches%s%s\n", name,
                r.start_rc, r.ops, r.mismatches, r.error[0] ? ": " : "", r.error);
        fflush(stderr);
        _exit(r.start_rc ? APP_NO_START : r.mismatches ? APP_MISMATCH : APP_RUN_ENDED);
    }
    close(p[1]);
    a->ready_fd = p[0];
}

/* The child's output so far (at most 1 MiB), malloc'd. */
static inline char *app_output(const struct app *a)
{
    FILE *f = fopen(a->err_path, "r");
    if (!f)
        return strdup("(no output file)");
    size_t cap = 1 << 20;
    char *buf = malloc(cap + 1);
    size_t len = fread(buf, 1, cap, f);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* Kills the child if it still runs, and removes what app_start made. */
static inline void app_cleanup(struct app *a)
{
    if (a->pid > 0) {
        kill(a->pid, SIGKILL);
        waitpid(a->pid, NULL, 0);
        a->pid = 0;
    }
    if (a->ready_fd >= 0)
        close(a->ready_fd);
    a->ready_fd = -1;
    unlink(a->err_path);
}

/* Fails the test with the child's output after killing it. */
static inline void app_fail(struct app *a, const char *why)
{
    char *out = app_output(a);
    app_cleanup(a);
    cr_log_error("the application's output:\n%s", out);
    free(out);
    cr_assert_fail("%s", why);
}

/* Waits (15 s at most) until the child swaps. */
static inline void app_wait_swapping(struct app *a)
{
    struct pollfd pfd = {.fd = a->ready_fd, .events = POLLIN};
    char b = 0;
    if (poll(&pfd, 1, 15000) == 1 && read(a->ready_fd, &b, 1) == 1)
        return;
    app_fail(a, "the application never swapped");
}

/* Waits (secs at most) for the child to end and returns its wait status; a child still
 * running then is killed and fails the test with `hung`. */
static inline int app_wait_end(struct app *a, unsigned secs, const char *hung)
{
    for (unsigned i = 0; i < secs * 100; i++) {
        int status;
        if (waitpid(a->pid, &status, WNOHANG) == a->pid) {
            a->pid = 0;
            return status;
        }
        mn_sleep_ms(10);
    }
    app_fail(a, hung);
    return -1;
}

#endif
