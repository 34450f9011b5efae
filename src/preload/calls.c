/* calls.c — more system calls given heap memory, made safe for signal delivery.
 *
 * io.c covers the calls that move data through a buffer; this file the other common ones
 * where a program hands the kernel a heap path or a heap struct, which in signal mode fail
 * with EFAULT when a page has gone (a stat of a path built in a heap string then reads as
 * "no such file" to most programs), and the event waits that write into heap arrays:
 *
 *  - paths: stat, lstat, stat64, lstat64, fstatat, fstatat64, statx, access, faccessat,
 *    unlink, unlinkat, rmdir, mkdir, mkdirat, rename, renameat, chdir, truncate, chmod,
 *    readlink, opendir — every path string read from user mode first, every struct or
 *    buffer the kernel fills made present first, and the call retried (up to RETRIES times)
 *    after an EFAULT. The kernel copies paths in before it does anything, and writes a
 *    result out after it is all done, so a call that failed with EFAULT changed nothing;
 *  - fstat and fstat64 into a heap struct, the same way;
 *  - getcwd: into a heap buffer the same way; with no buffer (glibc then mallocs one, in
 *    the region, fresh, and has the kernel fill it) into a stack buffer, copied to a
 *    malloc'd one of the size glibc would return;
 *  - poll, ppoll, epoll_wait, epoll_pwait: the array made present first (at most io.c's
 *    budget of it), and after an EFAULT the call made again with what is left of its
 *    timeout. poll and ppoll report levels, so asking again gives the answer lost; epoll
 *    puts an event it could not copy out back on its ready list (edge-triggered ones
 *    included), so the next wait returns it.
 * In thread delivery mode (and before the runtime is up) every wrapper passes straight
 * through after one check.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "preload/preload.h"

#define RETRIES 8

/* Makes len bytes at p present (at most a budget: a larger struct the kernel fills is rare). */
static void present(struct lethe *l, const void *p, size_t len)
{
    size_t budget = io_budget();
    io_prefault(l, p, len < budget ? len : budget);
}

/* Runs CALL (an expression) with PREPARE done first, in signal mode retrying it while it
 * fails with EFAULT; FAILED(rc) tells a failure. Returns CALL's result. */
#define RETRIED(type, PREPARE, CALL, FAILED)                                                       \
    do {                                                                                           \
        struct lethe *l = io_signal_mode();                                                        \
        if (!l)                                                                                    \
            return (CALL);                                                                         \
        type rc_ = (type)0;                                                                        \
        for (int try_ = 0; try_ < RETRIES; try_++) {                                               \
            PREPARE;                                                                               \
            rc_ = (CALL);                                                                          \
            if (!(FAILED(rc_) && errno == EFAULT))                                                 \
                break;                                                                             \
        }                                                                                          \
        return rc_;                                                                                \
    } while (0)

#define NEGATIVE(rc) ((rc) < 0)
#define IS_NULL(rc)  ((rc) == NULL)
#define PATH(p)      io_touch_string(l, (p))

typedef int (*stat_fn)(const char *, struct stat *);
typedef int (*stat64_fn)(const char *, struct stat64 *);
typedef int (*fstat_fn)(int, struct stat *);
typedef int (*fstat64_fn)(int, struct stat64 *);
typedef int (*fstatat_fn)(int, const char *, struct stat *, int);
typedef int (*fstatat64_fn)(int, const char *, struct stat64 *, int);
typedef int (*statx_fn)(int, const char *, int, unsigned, struct statx *);
typedef int (*path_fn)(const char *);
typedef int (*path_int_fn)(const char *, int);
typedef int (*path_mode_fn)(const char *, mode_t);
typedef int (*at_path_int_fn)(int, const char *, int);
typedef int (*at_path_mode_fn)(int, const char *, mode_t);
typedef int (*faccessat_fn)(int, const char *, int, int);
typedef int (*two_paths_fn)(const char *, const char *);
typedef int (*renameat_fn)(int, const char *, int, const char *);
typedef int (*truncate_fn)(const char *, off_t);
typedef ssize_t (*readlink_fn)(const char *, char *, size_t);
typedef DIR *(*opendir_fn)(const char *);
typedef char *(*getcwd_fn)(char *, size_t);
typedef int (*poll_fn)(struct pollfd *, nfds_t, int);
typedef int (*ppoll_fn)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
typedef int (*epoll_wait_fn)(int, struct epoll_event *, int, int);
typedef int (*epoll_pwait_fn)(int, struct epoll_event *, int, int, const sigset_t *);

PRELOAD_REAL(stat, stat_fn)
PRELOAD_REAL(lstat, stat_fn)
PRELOAD_REAL(stat64, stat64_fn)
PRELOAD_REAL(lstat64, stat64_fn)
PRELOAD_REAL(fstat, fstat_fn)
PRELOAD_REAL(fstat64, fstat64_fn)
PRELOAD_REAL(fstatat, fstatat_fn)
PRELOAD_REAL(fstatat64, fstatat64_fn)
PRELOAD_REAL(statx, statx_fn)
PRELOAD_REAL(access, path_int_fn)
PRELOAD_REAL(faccessat, faccessat_fn)
PRELOAD_REAL(unlink, path_fn)
PRELOAD_REAL(unlinkat, at_path_int_fn)
PRELOAD_REAL(rmdir, path_fn)
PRELOAD_REAL(mkdir, path_mode_fn)
PRELOAD_REAL(mkdirat, at_path_mode_fn)
PRELOAD_REAL(rename, two_paths_fn)
PRELOAD_REAL(renameat, renameat_fn)
PRELOAD_REAL(chdir, path_fn)
PRELOAD_REAL(truncate, truncate_fn)
PRELOAD_REAL(chmod, path_mode_fn)
PRELOAD_REAL(readlink, readlink_fn)
PRELOAD_REAL(opendir, opendir_fn)
PRELOAD_REAL(getcwd, getcwd_fn)
PRELOAD_REAL(poll, poll_fn)
PRELOAD_REAL(ppoll, ppoll_fn)
PRELOAD_REAL(epoll_wait, epoll_wait_fn)
PRELOAD_REAL(epoll_pwait, epoll_pwait_fn)

void calls_init(void)
{
    /* Resolved now, while the process is single-threaded and not in a signal handler. */
    get_stat();
    get_lstat();
    get_stat64();
    get_lstat64();
    get_fstat();
    get_fstat64();
    get_fstatat();
    get_fstatat64();
    get_statx();
    get_access();
    get_faccessat();
    get_unlink();
    get_unlinkat();
    get_rmdir();
    get_mkdir();
    get_mkdirat();
    get_rename();
    get_renameat();
    get_chdir();
    get_truncate();
    get_chmod();
    get_readlink();
    get_opendir();
    get_getcwd();
    get_poll();
    get_ppoll();
    get_epoll_wait();
    get_epoll_pwait();
}

int stat(const char *path, struct stat *st)
{
    RETRIED(int, (PATH(path), present(l, st, sizeof(*st))), get_stat()(path, st), NEGATIVE);
}

int lstat(const char *path, struct stat *st)
{
    RETRIED(int, (PATH(path), present(l, st, sizeof(*st))), get_lstat()(path, st), NEGATIVE);
}

int stat64(const char *path, struct stat64 *st)
{
    RETRIED(int, (PATH(path), present(l, st, sizeof(*st))), get_stat64()(path, st), NEGATIVE);
}

int lstat64(const char *path, struct stat64 *st)
{
    RETRIED(int, (PATH(path), present(l, st, sizeof(*st))), get_lstat64()(path, st), NEGATIVE);
}

int fstat(int fd, struct stat *st)
{
    RETRIED(int, present(l, st, sizeof(*st)), get_fstat()(fd, st), NEGATIVE);
}

int fstat64(int fd, struct stat64 *st)
{
    RETRIED(int, present(l, st, sizeof(*st)), get_fstat64()(fd, st), NEGATIVE);
}

int fstatat(int dir, const char *path, struct stat *st, int flags)
{
    RETRIED(int, (PATH(path), present(l, st, sizeof(*st))), get_fstatat()(dir, path, st, flags),
            NEGATIVE);
}

int fstatat64(int dir, const char *path, struct stat64 *st, int flags)
{
    RETRIED(int, (PATH(path), present(l, st, sizeof(*st))), get_fstatat64()(dir, path, st, flags),
            NEGATIVE);
}

int statx(int dir, const char *path, int flags, unsigned mask, struct statx *stx)
{
    RETRIED(int, (PATH(path), present(l, stx, sizeof(*stx))),
            get_statx()(dir, path, flags, mask, stx), NEGATIVE);
}

int access(const char *path, int mode)
{
    RETRIED(int, PATH(path), get_access()(path, mode), NEGATIVE);
}

int faccessat(int dir, const char *path, int mode, int flags)
{
    RETRIED(int, PATH(path), get_faccessat()(dir, path, mode, flags), NEGATIVE);
}

int unlink(const char *path)
{
    RETRIED(int, PATH(path), get_unlink()(path), NEGATIVE);
}

int unlinkat(int dir, const char *path, int flags)
{
    RETRIED(int, PATH(path), get_unlinkat()(dir, path, flags), NEGATIVE);
}

int rmdir(const char *path)
{
    RETRIED(int, PATH(path), get_rmdir()(path), NEGATIVE);
}

int mkdir(const char *path, mode_t mode)
{
    RETRIED(int, PATH(path), get_mkdir()(path, mode), NEGATIVE);
}

int mkdirat(int dir, const char *path, mode_t mode)
{
    RETRIED(int, PATH(path), get_mkdirat()(dir, path, mode), NEGATIVE);
}

int rename(const char *from, const char *to)
{
    RETRIED(int, (PATH(from), PATH(to)), get_rename()(from, to), NEGATIVE);
}

int renameat(int from_dir, const char *from, int to_dir, const char *to)
{
    RETRIED(int, (PATH(from), PATH(to)), get_renameat()(from_dir, from, to_dir, to), NEGATIVE);
}

int chdir(const char *path)
{
    RETRIED(int, PATH(path), get_chdir()(path), NEGATIVE);
}

int truncate(const char *path, off_t len)
{
    RETRIED(int, PATH(path), get_truncate()(path, len), NEGATIVE);
}

int chmod(const char *path, mode_t mode)
{
    RETRIED(int, PATH(path), get_chmod()(path, mode), NEGATIVE);
}

ssize_t readlink(const char *path, char *buf, size_t len)
{
    RETRIED(ssize_t, (PATH(path), present(l, buf, len)), get_readlink()(path, buf, len), NEGATIVE);
}

DIR *opendir(const char *path)
{
    RETRIED(DIR *, PATH(path), get_opendir()(path), IS_NULL);
}

char *getcwd(char *buf, size_t size)
{
    struct lethe *l = io_signal_mode();
    if (!l)
        return get_getcwd()(buf, size);
    if (buf) {
        char *rc = NULL;
        for (int try = 0; try < RETRIES; try++) {
            present(l, buf, size);
            rc = get_getcwd()(buf, size);
            if (rc || errno != EFAULT)
                break;
        }
        return rc;
    }
    /* glibc's own way with no buffer: a malloc'd one, size bytes or (size 0) as long as the
     * path; filled here from the stack instead of by the kernel */
    char tmp[PATH_MAX];
    if (!get_getcwd()(tmp, sizeof(tmp)))
        return errno == ERANGE ? get_getcwd()(NULL, size) : NULL;
    size_t need = strlen(tmp) + 1;
    if (size && size < need) {
        errno = ERANGE;
        return NULL;
    }
    char *out = malloc(size ? size : need);
    if (out)
        memcpy(out, tmp, need);
    return out;
}

/* Milliseconds left of a poll timeout of ms that started at start (-1 stays -1). */
static int ms_left(int ms, const struct timespec *start)
{
    if (ms < 0)
        return ms;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long spent =
        (now.tv_sec - start->tv_sec) * 1000LL + (now.tv_nsec - start->tv_nsec) / 1000000;
    return spent >= ms ? 0 : (int)(ms - spent);
}

/* What is left of the timeout *ts that started at start (NULL stays NULL). */
static const struct timespec *ts_left(const struct timespec *ts, const struct timespec *start,
                                      struct timespec *left)
{
    if (!ts)
        return NULL;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long total = ts->tv_sec * 1000000000LL + ts->tv_nsec;
    long long spent = (now.tv_sec - start->tv_sec) * 1000000000LL + (now.tv_nsec - start->tv_nsec);
    long long rest = spent >= total ? 0 : total - spent;
    left->tv_sec = rest / 1000000000LL;
    left->tv_nsec = rest % 1000000000LL;
    return left;
}

/* Runs a wait (CALL) on an array of len bytes at array, made present first, and again after
 * an EFAULT: CALL passes its timeout through ms_left or ts_left (with start_ and left_) when
 * try_ > 0. */
#define WAITED(array, len, CALL)                                                                   \
    do {                                                                                           \
        struct timespec start_, left_;                                                             \
        clock_gettime(CLOCK_MONOTONIC, &start_);                                                   \
        int rc_ = -1;                                                                              \
        for (int try_ = 0; try_ < RETRIES; try_++) {                                               \
            present(l, (array), (len));                                                            \
            rc_ = (CALL);                                                                          \
            if (!(rc_ < 0 && errno == EFAULT))                                                     \
                break;                                                                             \
        }                                                                                          \
        (void)left_;                                                                               \
        return rc_;                                                                                \
    } while (0)

int poll(struct pollfd *fds, nfds_t n, int ms)
{
    struct lethe *l = io_signal_mode();
    if (!l || n == 0 || !io_touches_region(l, fds, n * sizeof(*fds)))
        return get_poll()(fds, n, ms);
    WAITED(fds, n * sizeof(*fds), get_poll()(fds, n, try_ ? ms_left(ms, &start_) : ms));
}

int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
    struct lethe *l = io_signal_mode();
    if (!l || n == 0 || !io_touches_region(l, fds, n * sizeof(*fds)))
        return get_ppoll()(fds, n, ts, mask);
    WAITED(fds, n * sizeof(*fds),
           get_ppoll()(fds, n, try_ ? ts_left(ts, &start_, &left_) : ts, mask));
}

int epoll_wait(int ep, struct epoll_event *events, int max, int ms)
{
    struct lethe *l = io_signal_mode();
    if (!l || max <= 0 || !io_touches_region(l, events, (size_t)max * sizeof(*events)))
        return get_epoll_wait()(ep, events, max, ms);
    WAITED(events, (size_t)max * sizeof(*events),
           get_epoll_wait()(ep, events, max, try_ ? ms_left(ms, &start_) : ms));
}

int epoll_pwait(int ep, struct epoll_event *events, int max, int ms, const sigset_t *mask)
{
    struct lethe *l = io_signal_mode();
    if (!l || max <= 0 || !io_touches_region(l, events, (size_t)max * sizeof(*events)))
        return get_epoll_pwait()(ep, events, max, ms, mask);
    WAITED(events, (size_t)max * sizeof(*events),
           get_epoll_pwait()(ep, events, max, try_ ? ms_left(ms, &start_) : ms, mask));
}
