/* calls.c — more system calls given heap memory, made safe for signal delivery.
 *
 * io.c covers the calls that move data through a buffer; this file the other common ones
 * where a program hands the kernel a heap path or a heap struct, which in signal mode fail
 * with EFAULT when a page has gone (a stat of a path built in a heap string then reads as
 * "no such file" to most programs), and the event waits that write into heap arrays:
 *
 *  - paths: stat, lstat, stat64, lstat64, fstatat, fstatat64, statx, access, faccessat,
 *    unlink, unlinkat, rmdir, mkdir, mkdirat, rename, renameat, renameat2, chdir, chroot,
 *    truncate, truncate64, chmod, fchmodat, chown, lchown, fchownat, readlink, readlinkat,
 *    opendir, symlink, symlinkat, link, linkat, creat, creat64, mknod, mknodat, mkfifo,
 *    mkfifoat, remove, utimensat, utimes, lutimes, utime, statfs, statfs64, statvfs,
 *    statvfs64, and the extended attributes (getxattr, setxattr, listxattr, removexattr and
 *    their l- forms) — every path string read from user mode first, every struct or buffer
 *    the kernel reads or fills made present first, and the call retried (up to RETRIES
 *    times) after an EFAULT. The kernel copies paths and arguments in before it does
 *    anything, and writes a result out after it is all done, so a call that failed with
 *    EFAULT changed nothing;
 *  - fstat, fstat64, fstatfs, fstatfs64, fstatvfs, fstatvfs64, fgetxattr, fsetxattr,
 *    flistxattr and fremovexattr on heap structs and strings, the same way;
 *  - mkstemp, mkostemp, mkstemps, mkostemps and mkdtemp of a heap template: glibc writes
 *    its guess into the template and has the kernel read it as a path; the template's
 *    XXXXXX are put back before a retry (glibc leaves its last guess there);
 *  - getcwd: into a heap buffer the same way; with no buffer (glibc then mallocs one, in
 *    the region, fresh, and has the kernel fill it) into a stack buffer, copied to a
 *    malloc'd one of the size glibc would return;
 *  - poll, ppoll, epoll_wait, epoll_pwait: the array made present first (at most io.c's
 *    budget of it), and after an EFAULT the call made again with what is left of its
 *    timeout. poll and ppoll report levels, so asking again gives the answer lost; epoll
 *    puts an event it could not copy out back on its ready list (edge-triggered ones
 *    included), so the next wait returns it;
 *  - select and pselect on heap fd_sets (and a heap timeout): the sets are copied to the
 *    stack, the call made on the copies, and the results copied back, all from user mode,
 *    so the kernel never sees region memory (sets for more than FD_SETSIZE descriptors are
 *    made present and the call retried after an EFAULT instead: select reports levels).
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
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

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
typedef int (*renameat2_fn)(int, const char *, int, const char *, unsigned);
typedef int (*truncate64_fn)(const char *, off64_t);
typedef int (*at_path_mode_int_fn)(int, const char *, mode_t, int);
typedef int (*chown_fn)(const char *, uid_t, gid_t);
typedef int (*fchownat_fn)(int, const char *, uid_t, gid_t, int);
typedef ssize_t (*readlinkat_fn)(int, const char *, char *, size_t);
typedef int (*symlinkat_fn)(const char *, int, const char *);
typedef int (*linkat_fn)(int, const char *, int, const char *, int);
typedef int (*mknod_fn)(const char *, mode_t, dev_t);
typedef int (*mknodat_fn)(int, const char *, mode_t, dev_t);
typedef int (*utimensat_fn)(int, const char *, const struct timespec *, int);
typedef int (*utimes_fn)(const char *, const struct timeval *);
typedef int (*utime_fn)(const char *, const struct utimbuf *);
typedef int (*statfs_fn)(const char *, struct statfs *);
typedef int (*statfs64_fn)(const char *, struct statfs64 *);
typedef int (*fstatfs_fn)(int, struct statfs *);
typedef int (*fstatfs64_fn)(int, struct statfs64 *);
typedef int (*statvfs_fn)(const char *, struct statvfs *);
typedef int (*statvfs64_fn)(const char *, struct statvfs64 *);
typedef int (*fstatvfs_fn)(int, struct statvfs *);
typedef int (*fstatvfs64_fn)(int, struct statvfs64 *);
typedef ssize_t (*getxattr_fn)(const char *, const char *, void *, size_t);
typedef ssize_t (*fgetxattr_fn)(int, const char *, void *, size_t);
typedef int (*setxattr_fn)(const char *, const char *, const void *, size_t, int);
typedef int (*fsetxattr_fn)(int, const char *, const void *, size_t, int);
typedef ssize_t (*listxattr_fn)(const char *, char *, size_t);
typedef ssize_t (*flistxattr_fn)(int, char *, size_t);
typedef int (*removexattr_fn)(const char *, const char *);
typedef int (*fremovexattr_fn)(int, const char *);
typedef int (*mkstemp_fn)(char *);
typedef int (*mkostemp_fn)(char *, int);
typedef int (*mkstemps_fn)(char *, int);
typedef int (*mkostemps_fn)(char *, int, int);
typedef char *(*mkdtemp_fn)(char *);
typedef int (*select_fn)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
typedef int (*pselect_fn)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
                          const sigset_t *);

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
PRELOAD_REAL(renameat2, renameat2_fn)
PRELOAD_REAL(chroot, path_fn)
PRELOAD_REAL(truncate64, truncate64_fn)
PRELOAD_REAL(fchmodat, at_path_mode_int_fn)
PRELOAD_REAL(chown, chown_fn)
PRELOAD_REAL(lchown, chown_fn)
PRELOAD_REAL(fchownat, fchownat_fn)
PRELOAD_REAL(readlinkat, readlinkat_fn)
PRELOAD_REAL(symlink, two_paths_fn)
PRELOAD_REAL(symlinkat, symlinkat_fn)
PRELOAD_REAL(link, two_paths_fn)
PRELOAD_REAL(linkat, linkat_fn)
PRELOAD_REAL(creat, path_mode_fn)
PRELOAD_REAL(creat64, path_mode_fn)
PRELOAD_REAL(mknod, mknod_fn)
PRELOAD_REAL(mknodat, mknodat_fn)
PRELOAD_REAL(mkfifo, path_mode_fn)
PRELOAD_REAL(mkfifoat, at_path_mode_fn)
PRELOAD_REAL(remove, path_fn)
PRELOAD_REAL(utimensat, utimensat_fn)
PRELOAD_REAL(utimes, utimes_fn)
PRELOAD_REAL(lutimes, utimes_fn)
PRELOAD_REAL(utime, utime_fn)
PRELOAD_REAL(statfs, statfs_fn)
PRELOAD_REAL(statfs64, statfs64_fn)
PRELOAD_REAL(fstatfs, fstatfs_fn)
PRELOAD_REAL(fstatfs64, fstatfs64_fn)
PRELOAD_REAL(statvfs, statvfs_fn)
PRELOAD_REAL(statvfs64, statvfs64_fn)
PRELOAD_REAL(fstatvfs, fstatvfs_fn)
PRELOAD_REAL(fstatvfs64, fstatvfs64_fn)
PRELOAD_REAL(getxattr, getxattr_fn)
PRELOAD_REAL(lgetxattr, getxattr_fn)
PRELOAD_REAL(fgetxattr, fgetxattr_fn)
PRELOAD_REAL(setxattr, setxattr_fn)
PRELOAD_REAL(lsetxattr, setxattr_fn)
PRELOAD_REAL(fsetxattr, fsetxattr_fn)
PRELOAD_REAL(listxattr, listxattr_fn)
PRELOAD_REAL(llistxattr, listxattr_fn)
PRELOAD_REAL(flistxattr, flistxattr_fn)
PRELOAD_REAL(removexattr, removexattr_fn)
PRELOAD_REAL(lremovexattr, removexattr_fn)
PRELOAD_REAL(fremovexattr, fremovexattr_fn)
PRELOAD_REAL(mkstemp, mkstemp_fn)
PRELOAD_REAL(mkostemp, mkostemp_fn)
PRELOAD_REAL(mkstemps, mkstemps_fn)
PRELOAD_REAL(mkostemps, mkostemps_fn)
PRELOAD_REAL(mkdtemp, mkdtemp_fn)
PRELOAD_REAL(select, select_fn)
PRELOAD_REAL(pselect, pselect_fn)

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
    get_renameat2();
    get_chroot();
    get_truncate64();
    get_fchmodat();
    get_chown();
    get_lchown();
    get_fchownat();
    get_readlinkat();
    get_symlink();
    get_symlinkat();
    get_link();
    get_linkat();
    get_creat();
    get_creat64();
    get_mknod();
    get_mknodat();
    get_mkfifo();
    get_mkfifoat();
    get_remove();
    get_utimensat();
    get_utimes();
    get_lutimes();
    get_utime();
    get_statfs();
    get_statfs64();
    get_fstatfs();
    get_fstatfs64();
    get_statvfs();
    get_statvfs64();
    get_fstatvfs();
    get_fstatvfs64();
    get_getxattr();
    get_lgetxattr();
    get_fgetxattr();
    get_setxattr();
    get_lsetxattr();
    get_fsetxattr();
    get_listxattr();
    get_llistxattr();
    get_flistxattr();
    get_removexattr();
    get_lremovexattr();
    get_fremovexattr();
    get_mkstemp();
    get_mkostemp();
    get_mkstemps();
    get_mkostemps();
    get_mkdtemp();
    get_select();
    get_pselect();
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

int renameat2(int from_dir, const char *from, int to_dir, const char *to, unsigned flags)
{
    RETRIED(int, (PATH(from), PATH(to)), get_renameat2()(from_dir, from, to_dir, to, flags),
            NEGATIVE);
}

int chroot(const char *path)
{
    RETRIED(int, PATH(path), get_chroot()(path), NEGATIVE);
}

int truncate64(const char *path, off64_t len)
{
    RETRIED(int, PATH(path), get_truncate64()(path, len), NEGATIVE);
}

int fchmodat(int dir, const char *path, mode_t mode, int flags)
{
    RETRIED(int, PATH(path), get_fchmodat()(dir, path, mode, flags), NEGATIVE);
}

int chown(const char *path, uid_t uid, gid_t gid)
{
    RETRIED(int, PATH(path), get_chown()(path, uid, gid), NEGATIVE);
}

int lchown(const char *path, uid_t uid, gid_t gid)
{
    RETRIED(int, PATH(path), get_lchown()(path, uid, gid), NEGATIVE);
}

int fchownat(int dir, const char *path, uid_t uid, gid_t gid, int flags)
{
    RETRIED(int, PATH(path), get_fchownat()(dir, path, uid, gid, flags), NEGATIVE);
}

ssize_t readlinkat(int dir, const char *path, char *buf, size_t len)
{
    RETRIED(ssize_t, (PATH(path), present(l, buf, len)), get_readlinkat()(dir, path, buf, len),
            NEGATIVE);
}

int symlink(const char *target, const char *path)
{
    RETRIED(int, (PATH(target), PATH(path)), get_symlink()(target, path), NEGATIVE);
}

int symlinkat(const char *target, int dir, const char *path)
{
    RETRIED(int, (PATH(target), PATH(path)), get_symlinkat()(target, dir, path), NEGATIVE);
}

int link(const char *from, const char *to)
{
    RETRIED(int, (PATH(from), PATH(to)), get_link()(from, to), NEGATIVE);
}

int linkat(int from_dir, const char *from, int to_dir, const char *to, int flags)
{
    RETRIED(int, (PATH(from), PATH(to)), get_linkat()(from_dir, from, to_dir, to, flags), NEGATIVE);
}

int creat(const char *path, mode_t mode)
{
    RETRIED(int, PATH(path), get_creat()(path, mode), NEGATIVE);
}

int creat64(const char *path, mode_t mode)
{
    RETRIED(int, PATH(path), get_creat64()(path, mode), NEGATIVE);
}

int mknod(const char *path, mode_t mode, dev_t dev)
{
    RETRIED(int, PATH(path), get_mknod()(path, mode, dev), NEGATIVE);
}

int mknodat(int dir, const char *path, mode_t mode, dev_t dev)
{
    RETRIED(int, PATH(path), get_mknodat()(dir, path, mode, dev), NEGATIVE);
}

int mkfifo(const char *path, mode_t mode)
{
    RETRIED(int, PATH(path), get_mkfifo()(path, mode), NEGATIVE);
}

int mkfifoat(int dir, const char *path, mode_t mode)
{
    RETRIED(int, PATH(path), get_mkfifoat()(dir, path, mode), NEGATIVE);
}

int remove(const char *path)
{
    RETRIED(int, PATH(path), get_remove()(path), NEGATIVE);
}

/* The time arrays are read by the kernel: made present like a struct it fills. */
int utimensat(int dir, const char *path, const struct timespec times[2], int flags)
{
    RETRIED(int, (PATH(path), present(l, times, times ? 2 * sizeof(*times) : 0)),
            get_utimensat()(dir, path, times, flags), NEGATIVE);
}

int utimes(const char *path, const struct timeval times[2])
{
    RETRIED(int, (PATH(path), present(l, times, times ? 2 * sizeof(*times) : 0)),
            get_utimes()(path, times), NEGATIVE);
}

int lutimes(const char *path, const struct timeval times[2])
{
    RETRIED(int, (PATH(path), present(l, times, times ? 2 * sizeof(*times) : 0)),
            get_lutimes()(path, times), NEGATIVE);
}

int utime(const char *path, const struct utimbuf *times)
{
    RETRIED(int, (PATH(path), present(l, times, times ? sizeof(*times) : 0)),
            get_utime()(path, times), NEGATIVE);
}

int statfs(const char *path, struct statfs *st)
{
    RETRIED(int, (PATH(path), present(l, st, sizeof(*st))), get_statfs()(path, st), NEGATIVE);
}

int statfs64(const char *path, struct statfs64 *st)
{
    RETRIED(int, (PATH(path), present(l, st, sizeof(*st))), get_statfs64()(path, st), NEGATIVE);
}

int fstatfs(int fd, struct statfs *st)
{
    RETRIED(int, present(l, st, sizeof(*st)), get_fstatfs()(fd, st), NEGATIVE);
}

int fstatfs64(int fd, struct statfs64 *st)
{
    RETRIED(int, present(l, st, sizeof(*st)), get_fstatfs64()(fd, st), NEGATIVE);
}

int statvfs(const char *path, struct statvfs *st)
{
    RETRIED(int, (PATH(path), present(l, st, sizeof(*st))), get_statvfs()(path, st), NEGATIVE);
}

int statvfs64(const char *path, struct statvfs64 *st)
{
    RETRIED(int, (PATH(path), present(l, st, sizeof(*st))), get_statvfs64()(path, st), NEGATIVE);
}

int fstatvfs(int fd, struct statvfs *st)
{
    RETRIED(int, present(l, st, sizeof(*st)), get_fstatvfs()(fd, st), NEGATIVE);
}

int fstatvfs64(int fd, struct statvfs64 *st)
{
    RETRIED(int, present(l, st, sizeof(*st)), get_fstatvfs64()(fd, st), NEGATIVE);
}

ssize_t getxattr(const char *path, const char *name, void *value, size_t size)
{
    RETRIED(ssize_t, (PATH(path), PATH(name), present(l, value, size)),
            get_getxattr()(path, name, value, size), NEGATIVE);
}

ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size)
{
    RETRIED(ssize_t, (PATH(path), PATH(name), present(l, value, size)),
            get_lgetxattr()(path, name, value, size), NEGATIVE);
}

ssize_t fgetxattr(int fd, const char *name, void *value, size_t size)
{
    RETRIED(ssize_t, (PATH(name), present(l, value, size)), get_fgetxattr()(fd, name, value, size),
            NEGATIVE);
}

int setxattr(const char *path, const char *name, const void *value, size_t size, int flags)
{
    RETRIED(int, (PATH(path), PATH(name), present(l, value, size)),
            get_setxattr()(path, name, value, size, flags), NEGATIVE);
}

int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)
{
    RETRIED(int, (PATH(path), PATH(name), present(l, value, size)),
            get_lsetxattr()(path, name, value, size, flags), NEGATIVE);
}

int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)
{
    RETRIED(int, (PATH(name), present(l, value, size)),
            get_fsetxattr()(fd, name, value, size, flags), NEGATIVE);
}

ssize_t listxattr(const char *path, char *list, size_t size)
{
    RETRIED(ssize_t, (PATH(path), present(l, list, size)), get_listxattr()(path, list, size),
            NEGATIVE);
}

ssize_t llistxattr(const char *path, char *list, size_t size)
{
    RETRIED(ssize_t, (PATH(path), present(l, list, size)), get_llistxattr()(path, list, size),
            NEGATIVE);
}

ssize_t flistxattr(int fd, char *list, size_t size)
{
    RETRIED(ssize_t, present(l, list, size), get_flistxattr()(fd, list, size), NEGATIVE);
}

int removexattr(const char *path, const char *name)
{
    RETRIED(int, (PATH(path), PATH(name)), get_removexattr()(path, name), NEGATIVE);
}

int lremovexattr(const char *path, const char *name)
{
    RETRIED(int, (PATH(path), PATH(name)), get_lremovexattr()(path, name), NEGATIVE);
}

int fremovexattr(int fd, const char *name)
{
    RETRIED(int, PATH(name), get_fremovexattr()(fd, name), NEGATIVE);
}

/* Runs CALL (a mkstemp-like call on the template tmpl) and retries it after an EFAULT with
 * the template as it was given: glibc leaves its last guess in place of the XXXXXX. */
#define TEMPLATED(type, tmpl, CALL, FAILED)                                                        \
    do {                                                                                           \
        struct lethe *l = io_signal_mode();                                                        \
        if (!l || !lethe_in_region(l, (tmpl)))                                                     \
            return (CALL);                                                                         \
        char saved_[PATH_MAX];                                                                     \
        size_t len_ = strnlen((tmpl), sizeof(saved_));                                             \
        if (len_ == sizeof(saved_))                                                                \
            return (CALL);                                                                         \
        memcpy(saved_, (tmpl), len_ + 1);                                                          \
        type rc_ = (type)0;                                                                        \
        for (int try_ = 0; try_ < RETRIES; try_++) {                                               \
            if (try_ > 0)                                                                          \
                memcpy((tmpl), saved_, len_ + 1);                                                  \
            rc_ = (CALL);                                                                          \
            if (!(FAILED(rc_) && errno == EFAULT))                                                 \
                break;                                                                             \
        }                                                                                          \
        return rc_;                                                                                \
    } while (0)

int mkstemp(char *tmpl)
{
    TEMPLATED(int, tmpl, get_mkstemp()(tmpl), NEGATIVE);
}

int mkostemp(char *tmpl, int flags)
{
    TEMPLATED(int, tmpl, get_mkostemp()(tmpl, flags), NEGATIVE);
}

int mkstemps(char *tmpl, int suffix)
{
    TEMPLATED(int, tmpl, get_mkstemps()(tmpl, suffix), NEGATIVE);
}

int mkostemps(char *tmpl, int suffix, int flags)
{
    TEMPLATED(int, tmpl, get_mkostemps()(tmpl, suffix, flags), NEGATIVE);
}

char *mkdtemp(char *tmpl)
{
    TEMPLATED(char *, tmpl, get_mkdtemp()(tmpl), IS_NULL);
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

/* The bytes of an fd_set that select looks at for n descriptors (the kernel's own rounding). */
static size_t set_bytes(int n)
{
    return ((size_t)n + 8 * sizeof(long) - 1) / (8 * sizeof(long)) * sizeof(long);
}

static bool sets_touch_region(struct lethe *l, int n, fd_set *r, fd_set *w, fd_set *e,
                              const void *timeout, size_t timeout_len)
{
    size_t len = set_bytes(n);
    return io_touches_region(l, r, len) || io_touches_region(l, w, len) ||
           io_touches_region(l, e, len) || io_touches_region(l, timeout, timeout_len);
}

/* Copies set (len bytes) into copy from user mode; NULL stays NULL. */
static fd_set *set_in(const fd_set *set, fd_set *copy, size_t len)
{
    if (!set)
        return NULL;
    memcpy(copy, set, len);
    return copy;
}

static void set_out(fd_set *set, const fd_set *copy, size_t len)
{
    if (set)
        memcpy(set, copy, len);
}

/* Makes the sets of a select on more than FD_SETSIZE descriptors present. */
static void sets_present(struct lethe *l, int n, fd_set *r, fd_set *w, fd_set *e)
{
    size_t len = set_bytes(n);
    present(l, r, r ? len : 0);
    present(l, w, w ? len : 0);
    present(l, e, e ? len : 0);
}

int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
    struct lethe *l = io_signal_mode();
    if (!l || n <= 0 || !sets_touch_region(l, n, r, w, e, tv, sizeof(*tv)))
        return get_select()(n, r, w, e, tv);
    if (n > FD_SETSIZE) {
        int rc = -1;
        for (int try = 0; try < RETRIES; try++) {
            sets_present(l, n, r, w, e);
            present(l, tv, tv ? sizeof(*tv) : 0);
            rc = get_select()(n, r, w, e, tv);
            if (!(rc < 0 && errno == EFAULT))
                break;
        }
        return rc;
    }
    size_t len = set_bytes(n);
    fd_set cr, cw, ce;
    struct timeval ctv;
    if (tv)
        ctv = *tv;
    int rc = get_select()(n, set_in(r, &cr, len), set_in(w, &cw, len), set_in(e, &ce, len),
                          tv ? &ctv : NULL);
    int saved = errno;
    if (rc >= 0) {
        set_out(r, &cr, len);
        set_out(w, &cw, len);
        set_out(e, &ce, len);
    }
    if (tv)
        *tv = ctv; /* Linux leaves what remained of the timeout, also after an error */
    errno = saved;
    return rc;
}

int pselect(int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts, const sigset_t *mask)
{
    struct lethe *l = io_signal_mode();
    if (!l || n <= 0 || !sets_touch_region(l, n, r, w, e, ts, sizeof(*ts)))
        return get_pselect()(n, r, w, e, ts, mask);
    if (n > FD_SETSIZE) {
        int rc = -1;
        for (int try = 0; try < RETRIES; try++) {
            sets_present(l, n, r, w, e);
            present(l, ts, ts ? sizeof(*ts) : 0);
            rc = get_pselect()(n, r, w, e, ts, mask);
            if (!(rc < 0 && errno == EFAULT))
                break;
        }
        return rc;
    }
    size_t len = set_bytes(n);
    fd_set cr, cw, ce;
    struct timespec cts;
    if (ts)
        cts = *ts;
    int rc = get_pselect()(n, set_in(r, &cr, len), set_in(w, &cw, len), set_in(e, &ce, len),
                           ts ? &cts : NULL, mask);
    int saved = errno;
    if (rc >= 0) {
        set_out(r, &cr, len);
        set_out(w, &cw, len);
        set_out(e, &ce, len);
    }
    errno = saved;
    return rc;
}
