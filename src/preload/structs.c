/* structs.c — small structs and arrays the kernel fills or reads, made safe for signal
 * delivery.
 *
 * Beyond paths and I/O buffers, many system calls take a few bytes of the caller's memory: a
 * pipe's two descriptors, a child's exit status, a signal set, a CPU mask, a timespec. Kept
 * in a heap object (a struct member, a CPU_ALLOC'd mask) they are region memory, and in
 * signal mode a missing page fails the call with EFAULT. A retry would not always be
 * harmless: waitpid has reaped the child before it writes the status out, and pipe has made
 * the descriptors before it writes them out (and closes them when that fails). So these
 * wrappers never let the kernel see region memory: the struct goes through a copy on the
 * stack, read in and written out from user mode, where a missing page faults in like any
 * other access.
 *
 *  - pipe, pipe2, socketpair: the two descriptors;
 *  - wait, waitpid, wait4, waitid: the status, the rusage, the siginfo;
 *  - sched_getaffinity, sched_setaffinity, pthread_getaffinity_np, pthread_setaffinity_np:
 *    the CPU mask up to MASK_MAX bytes (a larger one is made present and the call retried
 *    after an EFAULT; reading or setting a mask has no effect that a retry repeats wrongly);
 *  - uname, getrusage, getrlimit, setrlimit, prlimit, nanosleep, clock_nanosleep: their
 *    structs;
 *  - getentropy (at most 256 bytes) through the stack; getrandom into a heap buffer in
 *    budget-sized pieces, each made present first; after an EFAULT or a short count (the
 *    kernel stops at a page demoted again, or at a pending signal) the rest goes through a
 *    page on the stack (random bytes have no position to lose);
 *  - fcntl and fcntl64: the struct flock of the record locks (F_GETLK, F_SETLK, F_SETLKW and
 *    their F_OFD_ forms), the struct f_owner_ex of F_GETOWN_EX/F_SETOWN_EX and the 64-bit
 *    hint of F_GET_RW_HINT/F_SET_RW_HINT and the file forms; every other command passes its
 *    argument through unread (an int, or a pointer the wrapper knows nothing of).
 * In thread delivery mode the wrappers pass straight through after one check.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "preload/preload.h"

#define RETRIES  8
#define MASK_MAX 1024

typedef int (*pipe_fn)(int[2]);
typedef int (*pipe2_fn)(int[2], int);
typedef int (*socketpair_fn)(int, int, int, int[2]);
typedef pid_t (*wait_fn)(int *);
typedef pid_t (*waitpid_fn)(pid_t, int *, int);
typedef pid_t (*wait4_fn)(pid_t, int *, int, struct rusage *);
typedef int (*waitid_fn)(idtype_t, id_t, siginfo_t *, int);
typedef int (*sched_getaffinity_fn)(pid_t, size_t, cpu_set_t *);
typedef int (*sched_setaffinity_fn)(pid_t, size_t, const cpu_set_t *);
typedef int (*pthread_getaffinity_fn)(pthread_t, size_t, cpu_set_t *);
typedef int (*pthread_setaffinity_fn)(pthread_t, size_t, const cpu_set_t *);
typedef int (*uname_fn)(struct utsname *);
typedef int (*getrusage_fn)(int, struct rusage *);
typedef int (*getrlimit_fn)(__rlimit_resource_t, struct rlimit *);
typedef int (*setrlimit_fn)(__rlimit_resource_t, const struct rlimit *);
typedef int (*prlimit_fn)(pid_t, __rlimit_resource_t, const struct rlimit *, struct rlimit *);
typedef int (*nanosleep_fn)(const struct timespec *, struct timespec *);
typedef int (*clock_nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);
typedef int (*getentropy_fn)(void *, size_t);
typedef ssize_t (*getrandom_fn)(void *, size_t, unsigned);
typedef int (*fcntl_fn)(int, int, ...);

PRELOAD_REAL(pipe, pipe_fn)
PRELOAD_REAL(pipe2, pipe2_fn)
PRELOAD_REAL(socketpair, socketpair_fn)
PRELOAD_REAL(wait, wait_fn)
PRELOAD_REAL(waitpid, waitpid_fn)
PRELOAD_REAL(wait4, wait4_fn)
PRELOAD_REAL(waitid, waitid_fn)
PRELOAD_REAL(sched_getaffinity, sched_getaffinity_fn)
PRELOAD_REAL(sched_setaffinity, sched_setaffinity_fn)
PRELOAD_REAL(pthread_getaffinity_np, pthread_getaffinity_fn)
PRELOAD_REAL(pthread_setaffinity_np, pthread_setaffinity_fn)
PRELOAD_REAL(uname, uname_fn)
PRELOAD_REAL(getrusage, getrusage_fn)
PRELOAD_REAL(getrlimit, getrlimit_fn)
PRELOAD_REAL(setrlimit, setrlimit_fn)
PRELOAD_REAL(prlimit, prlimit_fn)
PRELOAD_REAL(nanosleep, nanosleep_fn)
PRELOAD_REAL(clock_nanosleep, clock_nanosleep_fn)
PRELOAD_REAL(getentropy, getentropy_fn)
PRELOAD_REAL(getrandom, getrandom_fn)
PRELOAD_REAL(fcntl, fcntl_fn)
PRELOAD_REAL(fcntl64, fcntl_fn)

void structs_init(void)
{
    get_pipe();
    get_pipe2();
    get_socketpair();
    get_wait();
    get_waitpid();
    get_wait4();
    get_waitid();
    get_sched_getaffinity();
    get_sched_setaffinity();
    get_pthread_getaffinity_np();
    get_pthread_setaffinity_np();
    get_uname();
    get_getrusage();
    get_getrlimit();
    get_setrlimit();
    get_prlimit();
    get_nanosleep();
    get_clock_nanosleep();
    get_getentropy();
    get_getrandom();
    get_fcntl();
    get_fcntl64();
}

/* Whether any of up to two objects (p, len) lies in the region, in signal mode. It looks at
 * the addresses only: access(none) tells GCC so, or a write-only buffer (getentropy's) passed in
 * would count as read before it was written. */
#if defined(__GNUC__) && !defined(__clang__)
static bool in_heap(const void *p, size_t len, const void *q, size_t qlen)
    __attribute__((access(none, 1), access(none, 3)));
#endif
static bool in_heap(const void *p, size_t len, const void *q, size_t qlen)
{
    struct lethe *l = io_signal_mode();
    return l && (io_touches_region(l, p, len) || io_touches_region(l, q, qlen));
}

/* The stack copy of an object that may be NULL: copy_in reads *p into *copy (when p is
 * not NULL) and returns copy, or NULL for NULL. */
#define COPY_IN(p, copy) ((p) ? (memcpy(&(copy), (p), sizeof(copy)), &(copy)) : NULL)
#define COPY_OUT(p, copy)                                                                          \
    do {                                                                                           \
        if (p)                                                                                     \
            memcpy((p), &(copy), sizeof(copy));                                                    \
    } while (0)

int pipe(int fds[2])
{
    if (!in_heap(fds, 2 * sizeof(int), NULL, 0))
        return get_pipe()(fds);
    int copy[2];
    int rc = get_pipe()(copy);
    if (rc == 0)
        memcpy(fds, copy, sizeof(copy));
    return rc;
}

int pipe2(int fds[2], int flags)
{
    if (!in_heap(fds, 2 * sizeof(int), NULL, 0))
        return get_pipe2()(fds, flags);
    int copy[2];
    int rc = get_pipe2()(copy, flags);
    if (rc == 0)
        memcpy(fds, copy, sizeof(copy));
    return rc;
}

int socketpair(int domain, int type, int protocol, int fds[2])
{
    if (!in_heap(fds, 2 * sizeof(int), NULL, 0))
        return get_socketpair()(domain, type, protocol, fds);
    int copy[2];
    int rc = get_socketpair()(domain, type, protocol, copy);
    if (rc == 0)
        memcpy(fds, copy, sizeof(copy));
    return rc;
}

pid_t wait(int *status)
{
    if (!in_heap(status, sizeof(*status), NULL, 0))
        return get_wait()(status);
    int copy = 0;
    pid_t rc = get_wait()(&copy);
    if (rc > 0)
        *status = copy;
    return rc;
}

pid_t waitpid(pid_t pid, int *status, int options)
{
    if (!in_heap(status, sizeof(*status), NULL, 0))
        return get_waitpid()(pid, status, options);
    int copy = 0;
    pid_t rc = get_waitpid()(pid, &copy, options);
    if (rc > 0)
        *status = copy;
    return rc;
}

pid_t wait4(pid_t pid, int *status, int options, struct rusage *usage)
{
    if (!in_heap(status, status ? sizeof(*status) : 0, usage, usage ? sizeof(*usage) : 0))
        return get_wait4()(pid, status, options, usage);
    int status_copy = 0;
    struct rusage usage_copy;
    pid_t rc = get_wait4()(pid, status ? &status_copy : NULL, options, usage ? &usage_copy : NULL);
    if (rc > 0) {
        COPY_OUT(status, status_copy);
        COPY_OUT(usage, usage_copy);
    }
    return rc;
}

int waitid(idtype_t type, id_t id, siginfo_t *info, int options)
{
    if (!in_heap(info, sizeof(*info), NULL, 0))
        return get_waitid()(type, id, info, options);
    siginfo_t copy;
    memset(&copy, 0, sizeof(copy));
    int rc = get_waitid()(type, id, &copy, options);
    if (rc == 0)
        *info = copy;
    return rc;
}

/* CPU masks: through the stack up to MASK_MAX bytes; a larger one made present and the call
 * retried after an EFAULT (FAILED tells a failure: -1 with errno or an error number). */
#define MASK_CALL(size, mask, CALL_ON, IS_EFAULT, WRITES)                                          \
    do {                                                                                           \
        if (!in_heap((mask), (size), NULL, 0))                                                     \
            return CALL_ON(mask);                                                                  \
        if ((size) <= MASK_MAX) {                                                                  \
            unsigned char copy_[MASK_MAX];                                                         \
            memcpy(copy_, (mask), (size));                                                         \
            int rc_ = CALL_ON((cpu_set_t *)(void *)copy_);                                         \
            if (WRITES && rc_ == 0)                                                                \
                memcpy((void *)(mask), copy_, (size));                                             \
            return rc_;                                                                            \
        }                                                                                          \
        struct lethe *l_ = io_signal_mode();                                                       \
        int rc_ = 0;                                                                               \
        for (int try_ = 0; try_ < RETRIES; try_++) {                                               \
            io_prefault(l_, (mask), (size));                                                       \
            rc_ = CALL_ON(mask);                                                                   \
            if (!(IS_EFAULT(rc_)))                                                                 \
                break;                                                                             \
        }                                                                                          \
        return rc_;                                                                                \
    } while (0)

#define ERRNO_EFAULT(rc)  ((rc) < 0 && errno == EFAULT)
#define RESULT_EFAULT(rc) ((rc) == EFAULT)

int sched_getaffinity(pid_t pid, size_t size, cpu_set_t *mask)
{
#define CALL_ON(m) get_sched_getaffinity()(pid, size, (m))
    MASK_CALL(size, mask, CALL_ON, ERRNO_EFAULT, true);
#undef CALL_ON
}

int sched_setaffinity(pid_t pid, size_t size, const cpu_set_t *mask)
{
#define CALL_ON(m) get_sched_setaffinity()(pid, size, (m))
    MASK_CALL(size, mask, CALL_ON, ERRNO_EFAULT, false);
#undef CALL_ON
}

int pthread_getaffinity_np(pthread_t thread, size_t size, cpu_set_t *mask)
{
#define CALL_ON(m) get_pthread_getaffinity_np()(thread, size, (m))
    MASK_CALL(size, mask, CALL_ON, RESULT_EFAULT, true);
#undef CALL_ON
}

int pthread_setaffinity_np(pthread_t thread, size_t size, const cpu_set_t *mask)
{
#define CALL_ON(m) get_pthread_setaffinity_np()(thread, size, (m))
    MASK_CALL(size, mask, CALL_ON, RESULT_EFAULT, false);
#undef CALL_ON
}

int uname(struct utsname *out)
{
    if (!in_heap(out, sizeof(*out), NULL, 0))
        return get_uname()(out);
    struct utsname copy;
    int rc = get_uname()(&copy);
    if (rc == 0)
        *out = copy;
    return rc;
}

int getrusage(int who, struct rusage *out)
{
    if (!in_heap(out, sizeof(*out), NULL, 0))
        return get_getrusage()(who, out);
    struct rusage copy;
    int rc = get_getrusage()(who, &copy);
    if (rc == 0)
        *out = copy;
    return rc;
}

int getrlimit(__rlimit_resource_t resource, struct rlimit *out)
{
    if (!in_heap(out, sizeof(*out), NULL, 0))
        return get_getrlimit()(resource, out);
    struct rlimit copy;
    int rc = get_getrlimit()(resource, &copy);
    if (rc == 0)
        *out = copy;
    return rc;
}

int setrlimit(__rlimit_resource_t resource, const struct rlimit *in)
{
    if (!in_heap(in, sizeof(*in), NULL, 0))
        return get_setrlimit()(resource, in);
    struct rlimit copy = *in;
    return get_setrlimit()(resource, &copy);
}

int prlimit(pid_t pid, __rlimit_resource_t resource, const struct rlimit *in, struct rlimit *old)
{
    if (!in_heap(in, in ? sizeof(*in) : 0, old, old ? sizeof(*old) : 0))
        return get_prlimit()(pid, resource, in, old);
    struct rlimit in_copy, old_copy;
    int rc = get_prlimit()(pid, resource, COPY_IN(in, in_copy), old ? &old_copy : NULL);
    if (rc == 0)
        COPY_OUT(old, old_copy);
    return rc;
}

/* The remaining time is written out when a sleep is interrupted (-1 with EINTR). */
int nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (!in_heap(req, sizeof(*req), rem, rem ? sizeof(*rem) : 0))
        return get_nanosleep()(req, rem);
    struct timespec req_copy = *req, rem_copy;
    int rc = get_nanosleep()(&req_copy, rem ? &rem_copy : NULL);
    if (rc != 0 && errno == EINTR)
        COPY_OUT(rem, rem_copy);
    return rc;
}

/* clock_nanosleep returns an error number, EINTR with the remaining time written out. */
int clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem)
{
    if (!in_heap(req, sizeof(*req), rem, rem ? sizeof(*rem) : 0))
        return get_clock_nanosleep()(clock, flags, req, rem);
    struct timespec req_copy = *req, rem_copy;
    int rc = get_clock_nanosleep()(clock, flags, &req_copy, rem ? &rem_copy : NULL);
    if (rc == EINTR)
        COPY_OUT(rem, rem_copy);
    return rc;
}

int getentropy(void *buf, size_t len)
{
    if (len > 256 || !in_heap(buf, len, NULL, 0))
        return get_getentropy()(buf, len);
    unsigned char copy[256];
    int rc = get_getentropy()(copy, len);
    if (rc == 0)
        memcpy(buf, copy, len);
    return rc;
}

ssize_t getrandom(void *buf, size_t len, unsigned flags)
{
    struct lethe *l = io_signal_mode();
    if (!l || !io_touches_region(l, buf, len))
        return get_getrandom()(buf, len, flags);
    size_t budget = io_budget(), done = 0;
    while (done < len) {
        size_t want = len - done < budget ? len - done : budget;
        io_prefault(l, (char *)buf + done, want);
        ssize_t got = get_getrandom()((char *)buf + done, want, flags);
        if (got < 0 && errno != EFAULT)
            return done ? (ssize_t)done : -1;
        if (got == (ssize_t)want) {
            done += want;
            continue;
        }
        /* EFAULT, or a short count: the kernel stops at a page it cannot write (demoted again
         * since io_prefault: a page just read back is the first the rebalancer demotes) or at a
         * pending signal. Random bytes have no position to lose: keep what came and finish
         * through a page on the stack, copied out from user mode. */
        if (got > 0)
            done += (size_t)got;
        unsigned char bounce[LETHE_PAGE_SIZE];
        while (done < len) {
            size_t piece = len - done < sizeof(bounce) ? len - done : sizeof(bounce);
            got = get_getrandom()(bounce, piece, flags);
            if (got <= 0)
                return done ? (ssize_t)done : -1;
            memcpy((char *)buf + done, bounce, (size_t)got);
            done += (size_t)got;
        }
    }
    return (ssize_t)done;
}

/* The size of the struct that fcntl command cmd reads or writes through its argument, or 0
 * when the argument is not a pointer to one (the command passes through untouched). */
static size_t fcntl_struct_size(int cmd)
{
    switch (cmd) {
    case F_GETLK:
    case F_SETLK:
    case F_SETLKW:
    case F_OFD_GETLK:
    case F_OFD_SETLK:
    case F_OFD_SETLKW:
        return sizeof(struct flock);
    case F_GETOWN_EX:
    case F_SETOWN_EX:
        return sizeof(struct f_owner_ex);
    case F_GET_RW_HINT:
    case F_SET_RW_HINT:
    case F_GET_FILE_RW_HINT:
    case F_SET_FILE_RW_HINT:
        return sizeof(uint64_t);
    default:
        return 0;
    }
}

/* The struct goes through the stack both ways: in for every command, out only when the call
 * succeeded (a GETLK's answer; the SET forms leave it as it was). A lock request is not
 * retried after an EFAULT, so F_SETLKW never waits twice. */
static int fcntl_via_stack(fcntl_fn real, int fd, int cmd, void *arg)
{
    size_t size = fcntl_struct_size(cmd);
    if (!size || !in_heap(arg, size, NULL, 0))
        return real(fd, cmd, arg);
    union {
        struct flock lock;
        struct f_owner_ex owner;
        uint64_t hint;
    } copy;
    memcpy(&copy, arg, size);
    int rc = real(fd, cmd, &copy);
    if (rc != -1)
        memcpy(arg, &copy, size);
    return rc;
}

/* The argument is read as a pointer whatever the command, as glibc's own fcntl does: an int
 * passed in its place arrives in the same register and the kernel reads only its low half. */
int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_via_stack(get_fcntl(), fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_via_stack(get_fcntl64(), fd, cmd, arg);
}
