/* preload.c — liblethe.so's entry and exit: start-up from the environment, fork, exit.
 *
 * The constructor runs before the program's main (and before its own constructors). It
 * starts Lethe only when LETHE_CONFIG names a configuration and, if LETHE_PID is set, only
 * in the process with that pid: lethed sets it to the program it launched, so the programs
 * that one execs (a shell from system(), a child of fork+exec) inherit LD_PRELOAD but stay
 * dormant (plain jemalloc, nothing redirected). A program that execs itself keeps its pid
 * and starts Lethe again in the new image.
 *
 * Environment (lethed sets the first five; all can be used by hand):
 *   LETHE_CONFIG     path of a lethe.conf (lethed writes the effective configuration to a
 *                    private file); required, else Lethe stays dormant
 *   LETHE_MEMNODE    overrides [transport] memnode (lethed: the embedded node's address)
 *   LETHE_TOKEN_FILE overrides [transport] token_file
 *   LETHE_STATS_SHM  the stats segment: fd:N (an inherited memfd) or /name (shm_open)
 *   LETHE_PID        start only in the process with this pid
 *   LETHE_OPTIONS    more overrides, whitespace-separated section.key=value words
 *   LETHE_LOG        log level (debug, info, warn, error); wins over [log] level
 * A configuration that fails to load or a runtime that fails to start ends the process
 * with status 125 before main, after saying why on standard error (and in the stats
 * segment): a program that asked for Lethe does not silently run without it.
 *
 * Exit: an atexit handler registered by the constructor runs after the program's own exit
 * handlers and destructors, on whichever thread called exit(). It publishes the final stats
 * and prints the summary (lethe_print_summary) to stderr, to the file named by [log]
 * summary (appended), or nowhere (summary = off). "stderr" means the standard error the
 * program started with: the constructor keeps a close-on-exec duplicate of it, since many
 * programs close their own at exit. The runtime is not stopped: other threads
 * may still touch managed memory until the process is gone. _exit() and fatal signals skip
 * it; lethed still has the stats of the last publication.
 *
 * fork: the child handler marks the child, which then never publishes stats nor prints a
 * summary, and moves its allocations out of the region (heap.c); the fault runtime
 * prepares its own side of the child in src/fault/fork.c. A forked child reads the pages
 * resident at fork time; one that touches a page then swapped out is stopped by the
 * runtime (docs/RUNTIME.md): fork+exec and fork+_exit are what Lethe supports.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/lethe.h"
#include "core/log.h"
#include "fault/fault.h"
#include "preload/preload.h"

#define EXIT_START_FAILED 125

static struct lethe *the_lethe;
static struct lethe_config the_config;
static uintptr_t own_lo, own_hi;
static bool forked_child;
static pid_t started_pid;   /* the process Lethe started in */
static int summary_fd = -1; /* close-on-exec duplicate of the initial standard error */

struct lethe *preload_lethe(void)
{
    return __atomic_load_n(&the_lethe, __ATOMIC_ACQUIRE);
}

bool preload_in_started_process(void)
{
    return preload_lethe() && !forked_child && getpid() == started_pid;
}

bool preload_in_forked_child(void)
{
    return preload_lethe() && forked_child;
}

bool preload_in_vforked_child(void)
{
    return preload_lethe() && !forked_child && getpid() != started_pid;
}

const struct lethe_config *preload_config(void)
{
    return preload_lethe() ? &the_config : NULL;
}

bool preload_is_own_code(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    return a >= own_lo && a < own_hi;
}

static int find_own_code_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    uintptr_t probe = (uintptr_t)data;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    bool mine = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr, end = start + ph->p_memsz;
        if (probe >= start && probe < end)
            mine = true;
        if (ph->p_flags & PF_X) {
            if (start < lo)
                lo = start;
            if (end > hi)
                hi = end;
        }
    }
    if (!mine)
        return 0;
    own_lo = lo;
    own_hi = hi;
    return 1;
}

void preload_find_own_code(void)
{
    dl_iterate_phdr(find_own_code_cb, (void *)(uintptr_t)&preload_find_own_code);
}

/* Applies one "section.key=value" override; returns 0 or -EINVAL after reporting it. */
static int apply_override(const char *origin, const char *item)
{
    char buf[LETHE_COMMAND_MAX];
    snprintf(buf, sizeof(buf), "%s", item);
    char *eq = strchr(buf, '=');
    char *dot = strchr(buf, '.');
    if (!eq || !dot || dot > eq) {
        fprintf(stderr, "liblethe: %s: '%s' is not section.key=value\n", origin, item);
        return -EINVAL;
    }
    *dot = '\0';
    *eq = '\0';
    char err[256] = "";
    int rc = lethe_config_set(&the_config, buf, dot + 1, eq + 1, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "liblethe: %s: %s.%s: %s\n", origin, buf, dot + 1,
                err[0] ? err : strerror(-rc));
        return rc;
    }
    return 0;
}

/* Loads LETHE_CONFIG, then the overrides. Returns the number of problems reported. */
static int load_configuration(const char *path)
{
    lethe_config_defaults(&the_config);
    int problems = lethe_config_load(&the_config, path, stderr);
    if (problems < 0) {
        fprintf(stderr, "liblethe: cannot read %s (LETHE_CONFIG): %s\n", path, strerror(-problems));
        return 1;
    }
    const char *v;
    char item[LETHE_COMMAND_MAX];
    if ((v = getenv("LETHE_MEMNODE")) && *v) {
        snprintf(item, sizeof(item), "transport.memnode=%s", v);
        problems += apply_override("LETHE_MEMNODE", item) < 0;
    }
    if ((v = getenv("LETHE_TOKEN_FILE")) && *v) {
        snprintf(item, sizeof(item), "transport.token_file=%s", v);
        problems += apply_override("LETHE_TOKEN_FILE", item) < 0;
    }
    if ((v = getenv("LETHE_OPTIONS"))) {
        while (*v) {
            while (isspace((unsigned char)*v))
                v++;
            size_t n = 0;
            while (v[n] && !isspace((unsigned char)v[n]))
                n++;
            if (n == 0)
                break;
            snprintf(item, sizeof(item), "%.*s", (int)n, v);
            problems += apply_override("LETHE_OPTIONS", item) < 0;
            v += n;
        }
    }
    if (problems == 0)
        problems = lethe_config_validate(&the_config, path, stderr);
    return problems;
}

static _Noreturn void fail(const char *why)
{
    stats_report_failure(why);
    lethe_error("Lethe could not start: %s; the program is not run", why);
    _exit(EXIT_START_FAILED);
}

static void at_fork_child(void)
{
    forked_child = true;
    stats_forget();
    heap_enter_fork_child();
}

static void print_summary(struct lethe *l)
{
    const char *dest = the_config.summary;
    if (strcmp(dest, "off") == 0)
        return;
    FILE *out = NULL;
    if (strcmp(dest, "stderr") == 0) {
        /* The standard error the program started with: by now it may have closed its own
         * (gnulib's close_stdout does, in an exit handler that runs before this one). */
        if (summary_fd >= 0) {
            out = fdopen(summary_fd, "w");
            if (out)
                summary_fd = -1;
        }
    } else {
        out = fopen(dest, "ae");
        if (!out)
            lethe_warn("cannot open %s for the summary: %s", dest, strerror(errno));
    }
    if (!out)
        return;
    lethe_print_summary(l, out);
    fclose(out);
}

static void at_exit(void)
{
    struct lethe *l = preload_lethe();
    if (!l || forked_child)
        return;
    stats_final(l);
    print_summary(l);
}

__attribute__((constructor)) static void preload_init(void)
{
    preload_find_own_code();
    io_init();
    calls_init();
    spawn_init();
    sockets_init();
    structs_init();
    signals_init();
    sync_init();
    stdio_init();
    libc_safe_init();
    const char *path = getenv("LETHE_CONFIG");
    if (!path || !*path)
        return;
    const char *pid = getenv("LETHE_PID");
    if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
        return;

    lethe_log_init("liblethe");
    const char *shm = getenv("LETHE_STATS_SHM");
    if (shm && *shm) {
        int rc = stats_attach(shm);
        if (rc < 0)
            lethe_warn("LETHE_STATS_SHM=%s: cannot use the stats segment: %s", shm, strerror(-rc));
    }
    int problems = load_configuration(path);
    if (problems != 0) {
        char why[LETHE_PATH_MAX + 64];
        snprintf(why, sizeof(why), "%s: %d configuration problem%s", path, problems,
                 problems == 1 ? "" : "s");
        fail(why);
    }
    lethe_log_set_level((enum lethe_log_level)the_config.log_level);
    if (strcmp(the_config.summary, "stderr") == 0)
        summary_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);

    struct lethe *l;
    int rc = lethe_start(&the_config, &l);
    if (rc < 0) {
        char why[128];
        snprintf(why, sizeof(why), "the runtime did not start (%s)", strerror(-rc));
        fail(why);
    }
    rc = heap_init(l);
    if (rc < 0)
        fail("the managed heap could not be set up");
    started_pid = getpid();
    __atomic_store_n(&the_lethe, l, __ATOMIC_RELEASE);
    heap_enter_program_thread();
    stdio_start();
    pthread_atfork(NULL, NULL, at_fork_child);
    atexit(at_exit);
    rc = stats_start(l);
    if (rc < 0)
        lethe_warn("no stats for lethed: %s", strerror(-rc));
    lethe_debug("Lethe is up: %s", lethe_paths(l));
}
