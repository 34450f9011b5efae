/* spawn.c — running programs from heap command lines, made safe for signal delivery.
 *
 * execve reads its path, its argv and envp arrays and every string in them from user memory
 * in the kernel; in signal mode a missing region page there fails the call with EFAULT, and
 * a program that builds its command line on the heap (a shell, a build tool, a job runner)
 * cannot start anything. So in signal mode the command line is copied out of the region
 * first: new argv and envp arrays, and a copy of every string (and the path) that lies in
 * the region, in one block of memory outside it (jemalloc's arena 0), read from user mode
 * where a missing page faults in like any other access. The kernel then never sees region
 * memory, and nothing can go missing between the copy and the exec:
 *
 *  - execve, execv, execvp, execvpe and fexecve; glibc's execv and execl forms call its
 *    internal execve, where the wrapper never sees them, so execv, execl and execle go
 *    through the execve wrapper here and execvp and execlp through execvpe (the execl forms
 *    gather their arguments into an array on the stack first, as glibc does). The block is
 *    freed if the exec fails. In a vforked child (which shares the parent's memory, so the
 *    block would never be freed) and if the block cannot be had, the strings are read from
 *    user mode instead and the exec retried after an EFAULT: the kernel copies all of them
 *    before the point of no return, so a failed exec left the process as it was;
 *  - posix_spawn and posix_spawnp: the child reads the copy until it execs, and the parent
 *    frees it when the call returns (the paths inside file actions are glibc's own copies,
 *    in the region, and not covered);
 *  - system: its command line;
 *  - close, close_range and closefrom in a vforked child in signal mode leave the runtime's
 *    own descriptors open (the userfaultfds that serving a fault needs; all close-on-exec, so
 *    the exec closes them anyway) and report success for them. Python's subprocess closes
 *    every descriptor in its vforked child and then reads the command line from the
 *    parent's heap: each fault on it failed with EBADF and killed the child.
 * In both modes the exec wrappers also pass the stats segment's descriptor on to the new
 * image when the managed process execs itself (stats.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/close_range.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault/fault.h"
#include "preload/preload.h"

#define RETRIES 8

extern char **environ;

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                        const posix_spawnattr_t *, char *const[], char *const[]);
typedef int (*system_fn)(const char *);
typedef int (*close_fn)(int);
typedef int (*close_range_fn)(unsigned, unsigned, int);
typedef void (*closefrom_fn)(int);

PRELOAD_REAL(execve, execve_fn)
PRELOAD_REAL(execvpe, execve_fn)
PRELOAD_REAL(fexecve, fexecve_fn)
PRELOAD_REAL(posix_spawn, spawn_fn)
PRELOAD_REAL(posix_spawnp, spawn_fn)
PRELOAD_REAL(system, system_fn)
PRELOAD_REAL(close, close_fn)
PRELOAD_REAL(close_range, close_range_fn)
PRELOAD_REAL(closefrom, closefrom_fn)

void spawn_init(void)
{
    get_execve();
    get_execvpe();
    get_fexecve();
    get_posix_spawn();
    get_posix_spawnp();
    get_system();
    get_close();
    get_close_range();
    get_closefrom();
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

/* A command line with everything that lay in the region copied out of it (block: the copy,
 * NULL when nothing was copied). */
struct command {
    const char *path;
    char *const *argv;
    char *const *envp;
    void *block;
};

static size_t vector_len(char *const v[])
{
    size_t n = 0;
    if (v)
        while (v[n])
            n++;
    return n;
}

/* The bytes a copy of s takes: strlen + 1 when s lies in the region, else 0. */
static size_t copied_len(struct lethe *l, const char *s)
{
    return s && lethe_in_region(l, s) ? strlen(s) + 1 : 0;
}

/* s itself, or a copy at *cursor when it lies in the region. */
static char *place(struct lethe *l, const char *s, char **cursor)
{
    size_t len = copied_len(l, s);
    if (len == 0)
        return (char *)s;
    char *copy = *cursor;
    memcpy(copy, s, len);
    *cursor += len;
    return copy;
}

/* Fills the array at out with v (n entries and NULL), the strings placed as above. */
static void place_vector(struct lethe *l, char *const v[], size_t n, char **out, char **cursor)
{
    for (size_t i = 0; i < n; i++)
        out[i] = place(l, v[i], cursor);
    out[n] = NULL;
}

/* Copies path, argv and envp out of the region into c. Returns false when the block cannot
 * be allocated (c is then the command as given). */
static bool copy_command(struct lethe *l, const char *path, char *const argv[], char *const envp[],
                         struct command *c)
{
    *c = (struct command){.path = path, .argv = argv, .envp = envp};
    size_t na = vector_len(argv), ne = vector_len(envp);
    size_t slots = (argv ? na + 1 : 0) + (envp ? ne + 1 : 0);
    size_t bytes = slots * sizeof(char *) + copied_len(l, path);
    for (size_t i = 0; i < na; i++)
        bytes += copied_len(l, argv[i]);
    for (size_t i = 0; i < ne; i++)
        bytes += copied_len(l, envp[i]);
    char **block = heap_runtime_alloc(bytes);
    if (!block)
        return false;
    char **new_argv = block, **new_envp = block + (argv ? na + 1 : 0);
    char *cursor = (char *)(block + slots);
    if (argv) {
        place_vector(l, argv, na, new_argv, &cursor);
        c->argv = new_argv;
    }
    if (envp) {
        place_vector(l, envp, ne, new_envp, &cursor);
        c->envp = new_envp;
    }
    c->path = place(l, path, &cursor);
    c->block = block;
    return true;
}

enum exec_form { EXEC_PATH, EXEC_SEARCH, EXEC_FD };

static int exec_as(enum exec_form form, int fd, const char *path, char *const argv[],
                   char *const envp[])
{
    switch (form) {
    case EXEC_PATH:
        return get_execve()(path, argv, envp);
    case EXEC_SEARCH:
        return get_execvpe()(path, argv, envp);
    default:
        return get_fexecve()(fd, argv, envp);
    }
}

/* Every exec goes through here: the stats descriptor passed on (both modes); in signal mode
 * the command line copied out of the region, or touched and retried. Returns -1 with errno
 * (an exec returns only when it failed). */
static int run_exec(enum exec_form form, int fd, const char *path, char *const argv[],
                    char *const envp[])
{
    struct lethe *l = io_signal_mode();
    stats_before_exec();
    int rc = -1;
    struct command c;
    if (!l) {
        rc = exec_as(form, fd, path, argv, envp);
    } else if (preload_in_started_process() && copy_command(l, path, argv, envp, &c)) {
        rc = exec_as(form, fd, c.path, c.argv, c.envp);
        int err = errno;
        heap_runtime_free(c.block);
        errno = err;
    } else {
        for (int try = 0; try < RETRIES; try++) {
            touch_command(l, path, argv, envp);
            rc = exec_as(form, fd, path, argv, envp);
            if (errno != EFAULT)
                break;
        }
    }
    int err = errno;
    stats_after_failed_exec();
    errno = err;
    return rc;
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    return run_exec(EXEC_PATH, -1, path, argv, envp);
}

int execv(const char *path, char *const argv[])
{
    return run_exec(EXEC_PATH, -1, path, argv, environ);
}

int execvp(const char *file, char *const argv[])
{
    return run_exec(EXEC_SEARCH, -1, file, argv, environ);
}

int execvpe(const char *file, char *const argv[], char *const envp[])
{
    return run_exec(EXEC_SEARCH, -1, file, argv, envp);
}

int fexecve(int fd, char *const argv[], char *const envp[])
{
    return run_exec(EXEC_FD, fd, NULL, argv, envp);
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
    return run_exec(EXEC_PATH, -1, path, argv, environ);
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
    return run_exec(EXEC_SEARCH, -1, file, argv, environ);
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
    return run_exec(EXEC_PATH, -1, path, argv, envp);
}

/* posix_spawn and posix_spawnp: in signal mode the command line copied out of the region
 * (freed when the call returns: the child has exec'd or failed by then), or touched and the
 * call retried while it returns EFAULT (glibc has reaped the child that failed to exec). */
static int run_spawn(spawn_fn spawn, pid_t *pid, const char *path,
                     const posix_spawn_file_actions_t *actions, const posix_spawnattr_t *attr,
                     char *const argv[], char *const envp[])
{
    struct lethe *l = io_signal_mode();
    if (!l)
        return spawn(pid, path, actions, attr, argv, envp);
    struct command c;
    if (copy_command(l, path, argv, envp, &c)) {
        int rc = spawn(pid, c.path, actions, attr, c.argv, c.envp);
        heap_runtime_free(c.block);
        return rc;
    }
    int rc = 0;
    for (int try = 0; try < RETRIES; try++) {
        touch_command(l, path, argv, envp);
        rc = spawn(pid, path, actions, attr, argv, envp);
        if (rc != EFAULT)
            break;
    }
    return rc;
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
                const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    return run_spawn(get_posix_spawn(), pid, path, actions, attr, argv, envp);
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
                 const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    return run_spawn(get_posix_spawnp(), pid, file, actions, attr, argv, envp);
}

/* system: the command line copied out of the region (glibc reports a child that failed to
 * exec as status 127, like an unknown command, so a failure could not be told and retried).
 * The environment cannot be swapped for a copy (glibc's system passes environ itself): its
 * strings are read from user mode just before, which leaves a short window for one that a
 * program set on the heap (setenv). */
int system(const char *command)
{
    struct lethe *l = io_signal_mode();
    size_t len = l ? copied_len(l, command) : 0;
    char *copy = len ? heap_runtime_alloc(len) : NULL;
    if (!copy) {
        if (l)
            touch_command(l, command, NULL, environ);
        return get_system()(command);
    }
    memcpy(copy, command, len);
    if (l)
        touch_vector(l, environ);
    int rc = get_system()(copy);
    heap_runtime_free(copy);
    return rc;
}

/* The runtime's descriptors that the caller must keep, sorted: in a forked child the one that
 * keeps the parent's remote slots for it; in a vforked child in signal mode the runtime's
 * own. 0 when there are none (then nothing is kept). */
static unsigned kept_fds(int *fds, unsigned max)
{
    unsigned n = 0;
    /* a forked child's hold on the parent's remote slots (core/fork.c) */
    int keeper = lethe_fork_keeper(preload_lethe());
    if (keeper >= 0)
        fds[n++] = keeper;
    if (io_signal_mode() && preload_in_vforked_child())
        n += lethe_fault_own_fds(fds + n, max - n);
    for (unsigned i = 1; i < n; i++) /* insertion sort: a handful of entries */
        for (unsigned j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
    return n;
}

#define KEPT_MAX 24

int close(int fd)
{
    int kept[KEPT_MAX];
    unsigned n = kept_fds(kept, KEPT_MAX);
    for (unsigned i = 0; i < n; i++)
        if (kept[i] == fd)
            return 0;
    return get_close()(fd);
}

/* close_range over [first, last] in pieces around the kept descriptors. */
int close_range(unsigned first, unsigned last, int flags)
{
    int kept[KEPT_MAX];
    unsigned n = kept_fds(kept, KEPT_MAX);
    if (!n || (flags & CLOSE_RANGE_CLOEXEC) || first > last)
        return get_close_range()(first, last, flags);
    unsigned from = first;
    for (unsigned i = 0; i < n && from <= last; i++) {
        unsigned k = (unsigned)kept[i];
        if (k < from || k > last)
            continue;
        if (k > from && get_close_range()(from, k - 1, flags) != 0)
            return -1;
        if (k == UINT_MAX)
            return 0;
        from = k + 1;
    }
    return from <= last ? get_close_range()(from, last, flags) : 0;
}

void closefrom(int lowfd)
{
    int kept[KEPT_MAX];
    if (!kept_fds(kept, KEPT_MAX) || lowfd < 0) {
        get_closefrom()(lowfd);
        return;
    }
    close_range((unsigned)lowfd, UINT_MAX, 0);
}
