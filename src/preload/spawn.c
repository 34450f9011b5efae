/* spawn.c — running programs from heap command lines, made safe for signal delivery.
 *
 * execve reads its path, its argv and envp arrays and every string in them from user memory
 * in the kernel; in signal mode a missing region page there fails the call with EFAULT, and
 * a program that builds its command line on the heap (a shell, a build tool, a job runner)
 * cannot start anything. The kernel copies all of them before the point of no return, so a
 * call that failed with EFAULT left the process as it was and can be made again. In signal
 * mode only:
 *
 *  - execve, execv, execvp, execvpe and fexecve read the path and every argv and envp
 *    string from user mode first (the arrays with them) and retry after an EFAULT. glibc's
 *    execv and the execl forms call its internal execve, where the wrapper never sees them,
 *    so execv and execl/execle go through the execve wrapper here, and execlp through the
 *    execvp one (the execl forms gather their arguments into an array on the stack first,
 *    as glibc does);
 *  - posix_spawn and posix_spawnp the same, retried while they return EFAULT (glibc has
 *    reaped the child that failed to exec by then; file actions run again in the next
 *    child, and paths inside file actions are not touched: their strings are glibc's);
 *  - system reads its command line first. It cannot retry: glibc reports a child that
 *    failed to exec as exit status 127, as a shell does for an unknown command, so the
 *    window between the touch and the child's exec (a few microseconds) stays.
 * In both modes the exec wrappers also pass the stats segment's descriptor on to the new
 * image when the managed process execs itself (stats.c).
 * A child spawned with posix_spawn shares the memory until it execs and runs with every
 * signal blocked: if it touches a page that has gone in that window (posix_spawnp's path
 * search reads the file name from user mode) it dies of SIGBUS. The touch just before the
 * call makes that unlikely, not impossible.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "preload/preload.h"

#define RETRIES 8

extern char **environ;

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execvp_fn)(const char *, char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                        const posix_spawnattr_t *, char *const[], char *const[]);
typedef int (*system_fn)(const char *);

PRELOAD_REAL(execve, execve_fn)
PRELOAD_REAL(execvp, execvp_fn)
PRELOAD_REAL(execvpe, execve_fn)
PRELOAD_REAL(fexecve, fexecve_fn)
PRELOAD_REAL(posix_spawn, spawn_fn)
PRELOAD_REAL(posix_spawnp, spawn_fn)
PRELOAD_REAL(system, system_fn)

void spawn_init(void)
{
    get_execve();
    get_execvp();
    get_execvpe();
    get_fexecve();
    get_posix_spawn();
    get_posix_spawnp();
    get_system();
}

/* Reads a NULL-terminated array of strings and every string in it from user mode. */
static void touch_vector(struct lethe *l, char *const v[])
{
    if (!v)
        return;
    for (size_t i = 0; v[i]; i++)
        io_touch_string(l, v[i]);
}

static void touch_command(struct lethe *l, const char *path, char *const argv[], char *const envp[])
{
    io_touch_string(l, path);
    touch_vector(l, argv);
    touch_vector(l, envp);
}

/* Runs CALL (an exec, which returns only on failure) with the stats segment's descriptor
 * passed on (in both delivery modes); in signal mode after touching path, argv and envp, and
 * again while it fails with EFAULT. */
#define EXECED(path, argv, envp, CALL)                                                             \
    do {                                                                                           \
        struct lethe *l = io_signal_mode();                                                        \
        stats_before_exec();                                                                       \
        int rc_ = -1;                                                                              \
        for (int try_ = 0; try_ < (l ? RETRIES : 1); try_++) {                                     \
            if (l)                                                                                 \
                touch_command(l, (path), (argv), (envp));                                          \
            rc_ = (CALL);                                                                          \
            if (errno != EFAULT)                                                                   \
                break;                                                                             \
        }                                                                                          \
        int err_ = errno;                                                                          \
        stats_after_failed_exec();                                                                 \
        errno = err_;                                                                              \
        return rc_;                                                                                \
    } while (0)

int execve(const char *path, char *const argv[], char *const envp[])
{
    EXECED(path, argv, envp, get_execve()(path, argv, envp));
}

int execv(const char *path, char *const argv[])
{
    return execve(path, argv, environ);
}

int execvp(const char *file, char *const argv[])
{
    EXECED(file, argv, environ, get_execvp()(file, argv));
}

int execvpe(const char *file, char *const argv[], char *const envp[])
{
    EXECED(file, argv, envp, get_execvpe()(file, argv, envp));
}

int fexecve(int fd, char *const argv[], char *const envp[])
{
    EXECED(NULL, argv, envp, get_fexecve()(fd, argv, envp));
}

/* The arguments of an execl form after the first, up to the terminating NULL (the first is
 * never NULL: glibc declares it nonnull and counts the same way). */
static size_t count_args(va_list ap)
{
    size_t n = 0;
    while (va_arg(ap, const char *))
        n++;
    return n;
}

/* Fills argv (n + 2 entries) with first, the n arguments in ap and NULL. */
static void gather_args(char **argv, const char *first, size_t n, va_list ap)
{
    argv[0] = (char *)first;
    for (size_t i = 1; i <= n; i++)
        argv[i] = va_arg(ap, char *);
    argv[n + 1] = NULL;
}

int execl(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    size_t n = count_args(ap);
    va_end(ap);
    char *argv[n + 2];
    va_start(ap, arg);
    gather_args(argv, arg, n, ap);
    va_end(ap);
    return execve(path, argv, environ);
}

int execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    size_t n = count_args(ap);
    va_end(ap);
    char *argv[n + 2];
    va_start(ap, arg);
    gather_args(argv, arg, n, ap);
    va_end(ap);
    return execvp(file, argv);
}

int execle(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    size_t n = count_args(ap);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    char *argv[n + 2];
    va_start(ap, arg);
    gather_args(argv, arg, n, ap);
    va_end(ap);
    return execve(path, argv, envp);
}

/* Runs a posix_spawn form (CALL) after touching path, argv and envp, again while it returns
 * EFAULT. */
#define SPAWNED(path, argv, envp, CALL)                                                            \
    do {                                                                                           \
        struct lethe *l = io_signal_mode();                                                        \
        if (!l)                                                                                    \
            return (CALL);                                                                         \
        int rc_ = 0;                                                                               \
        for (int try_ = 0; try_ < RETRIES; try_++) {                                               \
            touch_command(l, (path), (argv), (envp));                                              \
            rc_ = (CALL);                                                                          \
            if (rc_ != EFAULT)                                                                     \
                break;                                                                             \
        }                                                                                          \
        return rc_;                                                                                \
    } while (0)

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
                const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    SPAWNED(path, argv, envp, get_posix_spawn()(pid, path, actions, attr, argv, envp));
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
                 const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    SPAWNED(file, argv, envp, get_posix_spawnp()(pid, file, actions, attr, argv, envp));
}

int system(const char *command)
{
    struct lethe *l = io_signal_mode();
    if (l)
        touch_command(l, command, NULL, environ);
    return get_system()(command);
}
