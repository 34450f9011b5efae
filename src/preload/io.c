/* io.c — system calls that hand a buffer to the kernel, made safe for signal delivery.
 *
 * With fault_delivery = signal the region is registered with UFFD_FEATURE_SIGBUS: a user
 * access to a missing page raises SIGBUS and is served, but a kernel access (read() copying
 * into a heap buffer, write() copying out of one) fails with EFAULT instead. These wrappers
 * close that gap for the calls a program makes itself: when the buffer lies in the region, they
 * pin its pages (lethe_pin: never demoted nor evicted until io_unpin, which is also the
 * cancellation cleanup), make them present by touching them from user mode (an atomic add of
 * zero to one byte per page: a write access that changes nothing, even with another thread
 * writing the same byte, and lifts write protection), then make the call. Pins are limited (64
 * pages a call; a quarter of the cache and half the pin table for all threads together, sends
 * half of that: a pinned page keeps its frame, also while its thread blocks in the call), so
 * the pages left unpinned keep the older safeguards: such a page demoted or evicted between the
 * touch and the kernel's copy makes the call fail with EFAULT before any data moved, and it is
 * retried (up to 8 times, the piece halved each time down to one page: under pressure the
 * rebalancer demotes pages within milliseconds, about what touching a budget of swapped-out
 * pages takes; a page just read back is the first it demotes), or cuts the copy short: a short
 * count. read, write, pread and pwrite then move one page through a page on the stack, copied
 * to or from the heap in user mode, which cannot fail that way. Where the kernel cannot undo a
 * failed copy (a datagram whose receive fails is dropped) only the pin protects.
 *
 * At most a budget of bytes (an eighth of the cache, between 64 and 128 KiB) is touched before
 * each system call: the rebalancer may demote a touched page again at any time, so the window
 * between touch and copy must stay short (and pins are few). read, write, pread, pwrite and
 * their vector forms (readv, writev, preadv, pwritev) on a regular file or block device, and
 * write and writev on a blocking pipe, stream socket or terminal, carry out a request of any
 * length budget by budget, going on after a short count, as the kernel would (a file never
 * blocks part-way, and a blocking write returns early only for a signal: the wrapper goes on
 * after one, as if it had come between two writes). A read from a pipe, socket or terminal, a
 * write to a datagram socket, any call on a non-blocking descriptor, and the socket calls
 * (send, recv, sendmsg...) are cut to the budget and may return a short count (a datagram
 * longer than the budget, 64 KiB at least, is cut: not covered).
 *
 * The path given to open, open64, openat and openat64 is read from user mode first, and the
 * call retried after an EFAULT, the same way.
 *
 * Wrapped: read, pread, pread64, readv, preadv, preadv64, write, pwrite, pwrite64, writev,
 * pwritev, pwritev64, recv, recvfrom, recvmsg, recvmmsg, send, sendto, sendmsg, sendmmsg, open,
 * open64, openat, openat64, and the _FORTIFY_SOURCE forms a fortified program calls instead
 * (__read_chk, __pread_chk, __pread64_chk, __recv_chk, __recvfrom_chk, __open_2, __open64_2,
 * __openat_2, __openat64_2). stdio.c covers the stdio streams and directory listings, printf.c
 * formatted output, calls.c heap paths and structs (stat, access, unlink, rename, mkdir,
 * symlink, chown, xattrs...) and event waits (poll, epoll_wait, select), spawn.c the exec
 * family, posix_spawn and system, sockets.c socket addresses and options, structs.c small
 * structs (pipe, waitpid, sigprocmask...) and getrandom. Not covered: calls libc makes
 * internally elsewhere (getaddrinfo, ...), other system calls given heap buffers or heap paths
 * (futex on a heap word, the path calls calls.c leaves out, io_uring, O_DIRECT), and a datagram
 * received into pages the limits left unpinned may fail with EFAULT and be dropped by the
 * kernel. In thread delivery mode none of this is needed (the vCPUs serve kernel accesses too)
 * and the wrappers pass straight through.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload/preload.h"

#define RETRIES        8
#define MIN_BUDGET     (64 * 1024)
#define MAX_BUDGET     (128 * 1024)
#define MAX_IOV_COPIED 1024

/* The runtime when the calling thread's buffers need care: signal delivery, runtime up; or a
 * forked child, whose region is served by SIGBUS whatever the parent's delivery (fork.c). */
struct lethe *io_signal_mode(void)
{
    struct lethe *l = preload_lethe();
    if (!l)
        return NULL;
    if (preload_config()->fault_delivery != LETHE_DELIVERY_SIGNAL && !preload_in_forked_child())
        return NULL;
    return l;
}

/* Bytes touched before one system call. Small, because the window between the touch and the
 * kernel's copy is what lets the rebalancer demote (soft-unmap) a page again: touching 128 KiB
 * that must be swapped in takes about a millisecond. */
size_t io_budget(void)
{
    uint64_t b = preload_config()->cache_size / 8;
    return b < MIN_BUDGET ? MIN_BUDGET : b > MAX_BUDGET ? MAX_BUDGET : (size_t)b;
}

/* Touches every page of [buf, buf+len) that lies in the region. */
void io_prefault(struct lethe *l, const void *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    uintptr_t p = (uintptr_t)buf & ~(uintptr_t)(LETHE_PAGE_SIZE - 1);
    uintptr_t end = (uintptr_t)buf + len;
    for (; p < end; p += LETHE_PAGE_SIZE) {
        char *c = (char *)(p < (uintptr_t)buf ? (uintptr_t)buf : p);
        if (lethe_in_region(l, c))
            __atomic_fetch_add(c, 0, __ATOMIC_RELAXED);
    }
}

void io_touch_string(struct lethe *l, const char *s)
{
    if (!s || !lethe_in_region(l, s))
        return;
    /* strlen reads every page of the string from user mode; volatile so that it is done */
    volatile size_t n = strlen(s);
    (void)n;
}

bool io_touches_region(struct lethe *l, const void *buf, size_t len)
{
    return buf && len &&
           (lethe_in_region(l, buf) || lethe_in_region(l, (const char *)buf + len - 1));
}

/* Pages held by io_pin, all threads together. */
static unsigned io_pins_live;

static unsigned io_pin_limit(void)
{
    uint64_t quarter = preload_config()->cache_size / LETHE_PAGE_SIZE / 4;
    return quarter < LETHE_PIN_SLOTS / 2 ? (unsigned)quarter : LETHE_PIN_SLOTS / 2;
}

bool io_pin(struct io_pins *ps, const void *buf, size_t len)
{
    if (!buf || len == 0)
        return true;
    /* Sends get half: a receive needs its pins more (a datagram whose copy fails is lost,
     * while a send that fails with EFAULT has sent nothing and is retried). */
    unsigned limit = ps->sending ? io_pin_limit() / 2 : io_pin_limit();
    uintptr_t p = (uintptr_t)buf & ~(uintptr_t)(LETHE_PAGE_SIZE - 1);
    uintptr_t end = (uintptr_t)buf + len;
    for (; p < end; p += LETHE_PAGE_SIZE) {
        const char *c = (const char *)(p < (uintptr_t)buf ? (uintptr_t)buf : p);
        if (!lethe_in_region(ps->l, c))
            continue;
        if (ps->n == IO_PIN_PAGES)
            return false;
        unsigned live = __atomic_load_n(&io_pins_live, __ATOMIC_RELAXED);
        do {
            if (live >= limit)
                return false;
        } while (!__atomic_compare_exchange_n(&io_pins_live, &live, live + 1, true,
                                              __ATOMIC_RELAXED, __ATOMIC_RELAXED));
        /* a write touch first, as io_prefault's: lethe_pin's own touch is a read, which would
         * map a fresh page write-protected and leave the kernel's write a second fault */
        __atomic_fetch_add((char *)c, 0, __ATOMIC_RELAXED);
        int t = lethe_pin(ps->l, c);
        if (t < 0) {
            __atomic_sub_fetch(&io_pins_live, 1, __ATOMIC_RELAXED);
            return false; /* the table is full (futex waits hold the rest) */
        }
        ps->token[ps->n++] = t;
    }
    return true;
}

void io_unpin(void *arg)
{
    struct io_pins *ps = arg;
    for (unsigned i = 0; i < ps->n; i++)
        lethe_unpin(ps->l, ps->token[i]);
    __atomic_sub_fetch(&io_pins_live, ps->n, __ATOMIC_RELAXED);
    ps->n = 0;
}

static bool iov_touches_region(struct lethe *l, const struct iovec *iov, int n)
{
    for (int i = 0; i < n; i++)
        if (io_touches_region(l, iov[i].iov_base, iov[i].iov_len))
            return true;
    return false;
}

/* Copies iov from element `first`, byte `skip` of it, into out (room for `max` elements), cut
 * to *left bytes (less what it took on return), and pins what it can of it; returns the new
 * count and whether all of it was pinned (*pinned, when not NULL). Out of line: inlined next
 * to a pthread_cleanup_push (a setjmp), its locals draw -Wclobbered at -O3. */
static __attribute__((noinline)) int cut_iov_within(struct io_pins *ps, const struct iovec *iov,
                                                    int n, int first, size_t skip,
                                                    struct iovec *out, int max, size_t *left,
                                                    bool *pinned)
{
    int k = 0;
    bool all = true;
    size_t room = *left;
    for (int i = first; i < n && k < max && room > 0; i++) {
        out[k] = iov[i];
        if (i == first) {
            out[k].iov_base = (char *)out[k].iov_base + skip;
            out[k].iov_len -= skip;
        }
        if (out[k].iov_len > room)
            out[k].iov_len = room;
        room -= out[k].iov_len;
        all &= io_pin(ps, out[k].iov_base, out[k].iov_len);
        k++;
    }
    *left = room;
    if (pinned)
        *pinned = all;
    return k;
}

/* The same from a whole budget. */
static int cut_iov_from(struct io_pins *ps, const struct iovec *iov, int n, int first, size_t skip,
                        struct iovec *out)
{
    size_t left = io_budget();
    return cut_iov_within(ps, iov, n, first, skip, out, MAX_IOV_COPIED, &left, NULL);
}

static int cut_iov(struct io_pins *ps, const struct iovec *iov, int n, struct iovec *out)
{
    return cut_iov_from(ps, iov, n, 0, 0, out);
}

/* len cut to the budget */
static size_t cut_len(size_t len)
{
    size_t b = io_budget();
    return len < b ? len : b;
}

static void prefault_iov(struct lethe *l, const struct iovec *v, int k)
{
    for (int i = 0; i < k; i++)
        io_prefault(l, v[i].iov_base, v[i].iov_len);
}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*readv_fn)(int, const struct iovec *, int);
typedef ssize_t (*preadv_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*recv_fn)(int, void *, size_t, int);
typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*recvfrom_fn)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
typedef ssize_t (*sendto_fn)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);
typedef int (*recvmmsg_fn)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
typedef int (*sendmmsg_fn)(int, struct mmsghdr *, unsigned int, int);

PRELOAD_REAL(open, open_fn)
PRELOAD_REAL(open64, open_fn)
PRELOAD_REAL(openat, openat_fn)
PRELOAD_REAL(openat64, openat_fn)
PRELOAD_REAL(read, read_fn)
PRELOAD_REAL(write, write_fn)
PRELOAD_REAL(pread, pread_fn)
PRELOAD_REAL(pread64, pread_fn)
PRELOAD_REAL(pwrite, pwrite_fn)
PRELOAD_REAL(pwrite64, pwrite_fn)
PRELOAD_REAL(readv, readv_fn)
PRELOAD_REAL(writev, readv_fn)
PRELOAD_REAL(preadv, preadv_fn)
PRELOAD_REAL(preadv64, preadv_fn)
PRELOAD_REAL(pwritev, preadv_fn)
PRELOAD_REAL(pwritev64, preadv_fn)
PRELOAD_REAL(recv, recv_fn)
PRELOAD_REAL(send, send_fn)
PRELOAD_REAL(recvfrom, recvfrom_fn)
PRELOAD_REAL(sendto, sendto_fn)
PRELOAD_REAL(recvmsg, recvmsg_fn)
PRELOAD_REAL(sendmsg, sendmsg_fn)
PRELOAD_REAL(recvmmsg, recvmmsg_fn)
PRELOAD_REAL(sendmmsg, sendmmsg_fn)

/* The _FORTIFY_SOURCE entry points (bits/unistd.h, bits/fcntl2.h, bits/socket2.h). */
typedef ssize_t (*read_chk_fn)(int, void *, size_t, size_t);
typedef ssize_t (*pread_chk_fn)(int, void *, size_t, off_t, size_t);
typedef ssize_t (*recv_chk_fn)(int, void *, size_t, size_t, int);
typedef ssize_t (*recvfrom_chk_fn)(int, void *, size_t, size_t, int, struct sockaddr *,
                                   socklen_t *);
typedef int (*open_2_fn)(const char *, int);
typedef int (*openat_2_fn)(int, const char *, int);
PRELOAD_REAL(__read_chk, read_chk_fn)
PRELOAD_REAL(__pread_chk, pread_chk_fn)
PRELOAD_REAL(__pread64_chk, pread_chk_fn)
PRELOAD_REAL(__recv_chk, recv_chk_fn)
PRELOAD_REAL(__recvfrom_chk, recvfrom_chk_fn)
PRELOAD_REAL(__open_2, open_2_fn)
PRELOAD_REAL(__open64_2, open_2_fn)
PRELOAD_REAL(__openat_2, openat_2_fn)
PRELOAD_REAL(__openat64_2, openat_2_fn)

/* Runs CALL (an expression giving ssize_t) with buf's pages pinned (ps, set up by the caller,
 * may hold others already) and made present, retrying EFAULT. len is at most the budget
 * (cut_len). */
#define WITH_PREFAULT(ps, buf, len, CALL)                                                          \
    do {                                                                                           \
        io_pin((ps), (buf), (len));                                                                \
        ssize_t rc_ = -1;                                                                          \
        pthread_cleanup_push(io_unpin, (ps));                                                      \
        for (int try_ = 0; try_ < RETRIES; try_++) {                                               \
            io_prefault((ps)->l, (buf), (len));                                                    \
            rc_ = (CALL);                                                                          \
            if (!(rc_ < 0 && errno == EFAULT))                                                     \
                break;                                                                             \
        }                                                                                          \
        pthread_cleanup_pop(1);                                                                    \
        return rc_;                                                                                \
    } while (0)

void io_init(void)
{
    /* Resolved now, while the process is single-threaded and not in a signal handler. */
    get_open();
    get_open64();
    get_openat();
    get_openat64();
    get_read();
    get_write();
    get_pread();
    get_pread64();
    get_pwrite();
    get_pwrite64();
    get_readv();
    get_writev();
    get_preadv();
    get_preadv64();
    get_pwritev();
    get_pwritev64();
    get_recv();
    get_send();
    get_recvfrom();
    get_sendto();
    get_recvmsg();
    get_sendmsg();
    get_recvmmsg();
    get_sendmmsg();
    get___read_chk();
    get___pread_chk();
    get___pread64_chk();
    get___recv_chk();
    get___recvfrom_chk();
    get___open_2();
    get___open64_2();
    get___openat_2();
    get___openat64_2();
}

/* One budget-sized piece of a read or write at buf+done (offset off+done when positional). */
enum piece_kind {
    PIECE_READ,
    PIECE_WRITE,
    PIECE_PREAD,
    PIECE_PWRITE,
    PIECE_PREAD64,
    PIECE_PWRITE64
};

static ssize_t piece(enum piece_kind kind, int fd, char *buf, size_t len, off_t off)
{
    switch (kind) {
    case PIECE_READ:
        return get_read()(fd, buf, len);
    case PIECE_WRITE:
        return get_write()(fd, buf, len);
    case PIECE_PREAD:
        return get_pread()(fd, buf, len, off);
    case PIECE_PWRITE:
        return get_pwrite()(fd, buf, len, off);
    case PIECE_PREAD64:
        return get_pread64()(fd, buf, len, off);
    case PIECE_PWRITE64:
        return get_pwrite64()(fd, buf, len, off);
    }
    errno = EINVAL;
    return -1;
}

/* A socket whose every send is one message (datagram, sequenced packet, raw). */
static bool is_datagram(const struct stat *st, int fd)
{
    if (!S_ISSOCK(st->st_mode))
        return false;
    int type = 0;
    socklen_t tlen = sizeof(type);
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM;
}

/* Files and block devices never block part-way, so a request longer than the budget is
 * carried out piece by piece, as one call; so is a write to a blocking pipe, stream socket or
 * terminal, which the kernel also completes unless a signal interrupts it. A read from one of
 * those, a write to a datagram socket (each piece would be a message of its own), or any call
 * on a non-blocking descriptor gets one piece (a short count). */
static bool goes_on(enum piece_kind kind, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return false;
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
        return true;
    if (kind != PIECE_WRITE || is_datagram(&st, fd))
        return false;
    int flags = fcntl(fd, F_GETFL);
    return flags >= 0 && !(flags & O_NONBLOCK);
}

static bool is_write(enum piece_kind kind)
{
    return kind == PIECE_WRITE || kind == PIECE_PWRITE || kind == PIECE_PWRITE64;
}

/* One page at most of the piece at buf, through a page on the stack: the heap side is copied
 * from user mode, where a fault is served. For when the kernel's own copy kept failing; not
 * for a datagram socket, whose message one page could cut (the EFAULT stands). */
static ssize_t bounced(enum piece_kind kind, int fd, char *buf, size_t len, off_t off)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || is_datagram(&st, fd)) {
        errno = EFAULT;
        return -1;
    }
    char page[LETHE_PAGE_SIZE];
    if (len > sizeof(page))
        len = sizeof(page);
    if (is_write(kind)) {
        memcpy(page, buf, len);
        return piece(kind, fd, page, len, off);
    }
    ssize_t rc = piece(kind, fd, page, len, off);
    if (rc > 0)
        memcpy(buf, page, (size_t)rc);
    return rc;
}

static ssize_t prefaulted(struct lethe *l, enum piece_kind kind, int fd, char *buf, size_t len,
                          off_t off)
{
    size_t chunk = io_budget();
    int more = -1; /* whether to go on after a piece: asked once a piece leaves something */
    size_t done = 0;
    do {
        size_t n = len - done < chunk ? len - done : chunk;
        ssize_t rc = -1;
        struct io_pins ps = {.l = l, .sending = is_write(kind)};
        io_pin(&ps, buf + done, n);
        pthread_cleanup_push(io_unpin, &ps);
        for (int t = 0; t < RETRIES; t++) {
            io_prefault(l, buf + done, n);
            rc = piece(kind, fd, buf + done, n, off + (off_t)done);
            if (!(rc < 0 && errno == EFAULT))
                break;
            /* nothing moved: a smaller piece leaves less time between touch and copy */
            n = n / 2 > LETHE_PAGE_SIZE ? n / 2 : LETHE_PAGE_SIZE;
            n = n < len - done ? n : len - done;
        }
        pthread_cleanup_pop(1);
        if (rc < 0 && errno == EFAULT) /* a page at buf+done demoted again each time */
            rc = bounced(kind, fd, buf + done, n, off + (off_t)done);
        if (rc < 0)
            return done ? (ssize_t)done : rc;
        if (rc == 0)
            break; /* end of file */
        done += (size_t)rc;
        /* A short count here is a page lost between touch and copy (or the end of a file,
         * which the next piece tells), or a write cut to the budget: go on where the kernel
         * would have, whatever the request's length. */
        if (done < len && more < 0)
            more = goes_on(kind, fd);
    } while (more == 1 && done < len);
    return (ssize_t)done;
}

static ssize_t vector(enum piece_kind kind, int fd, const struct iovec *v, int k, off_t off)
{
    switch (kind) {
    case PIECE_READ:
        return get_readv()(fd, v, k);
    case PIECE_WRITE:
        return get_writev()(fd, v, k);
    case PIECE_PREAD:
        return get_preadv()(fd, v, k, off);
    case PIECE_PWRITE:
        return get_pwritev()(fd, v, k, off);
    case PIECE_PREAD64:
        return get_preadv64()(fd, v, k, off);
    case PIECE_PWRITE64:
        return get_pwritev64()(fd, v, k, off);
    }
    errno = EINVAL;
    return -1;
}

/* One piece of a vector call: iov from element `first`, byte `skip` of it, cut to the budget,
 * pinned and made present, EFAULT retried (out of line, as recvmsg_pinned). */
static __attribute__((noinline)) ssize_t vector_piece(struct lethe *l, enum piece_kind kind, int fd,
                                                      const struct iovec *iov, int n, int first,
                                                      size_t skip, off_t off)
{
    struct iovec v[MAX_IOV_COPIED];
    struct io_pins ps = {.l = l, .sending = is_write(kind)};
    int k = cut_iov_from(&ps, iov, n, first, skip, v);
    ssize_t rc = -1;
    pthread_cleanup_push(io_unpin, &ps);
    for (int t = 0; t < RETRIES; t++) {
        prefault_iov(l, v, k);
        rc = vector(kind, fd, v, k, off);
        if (!(rc < 0 && errno == EFAULT))
            break;
    }
    pthread_cleanup_pop(1);
    return rc;
}

/* The vector calls, piece by piece: on a file, a block device, or for a write on a blocking
 * pipe, stream socket or terminal, until all of it is done, as in prefaulted; else one
 * piece. */
static ssize_t prefaulted_iov(struct lethe *l, enum piece_kind kind, int fd,
                              const struct iovec *iov, int n, off_t off)
{
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len > SSIZE_MAX - total)
            return vector(kind, fd, iov, n, off); /* the kernel's EINVAL */
        total += iov[i].iov_len;
    }
    if (n > MAX_IOV_COPIED)
        return vector(kind, fd, iov, n, off); /* likewise */
    int first = 0, more = -1;
    size_t skip = 0, done = 0;
    do {
        ssize_t rc = vector_piece(l, kind, fd, iov, n, first, skip, off + (off_t)done);
        if (rc < 0)
            return done ? (ssize_t)done : rc;
        if (rc == 0)
            break; /* end of file, or nothing asked */
        done += (size_t)rc;
        for (size_t left = (size_t)rc; left > 0 || (first < n && iov[first].iov_len == skip);) {
            size_t room = iov[first].iov_len - skip;
            size_t step = left < room ? left : room;
            skip += step;
            left -= step;
            if (skip == iov[first].iov_len) {
                first++;
                skip = 0;
                if (first == n)
                    break;
            }
        }
        if (done < total && more < 0)
            more = goes_on(kind, fd);
    } while (more == 1 && done < total);
    return (ssize_t)done;
}

/* The mode argument open and openat take when they create a file. */
#define MODE_ARG(flags, mode)                                                                      \
    do {                                                                                           \
        if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE) {                           \
            va_list ap;                                                                            \
            va_start(ap, flags);                                                                   \
            (mode) = va_arg(ap, mode_t);                                                           \
            va_end(ap);                                                                            \
        }                                                                                          \
    } while (0)

/* Runs CALL (an expression giving int) with the path made present, retrying EFAULT. */
#define WITH_PATH(path, CALL)                                                                      \
    do {                                                                                           \
        struct lethe *l_ = io_signal_mode();                                                       \
        int rc_ = -1;                                                                              \
        for (int try_ = 0; try_ < RETRIES; try_++) {                                               \
            if (l_)                                                                                \
                io_touch_string(l_, (path));                                                       \
            rc_ = (CALL);                                                                          \
            if (!l_ || !(rc_ < 0 && errno == EFAULT))                                              \
                break;                                                                             \
        }                                                                                          \
        return rc_;                                                                                \
    } while (0)

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    WITH_PATH(path, get_open()(path, flags, mode));
}

int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    WITH_PATH(path, get_open64()(path, flags, mode));
}

int openat(int dir, const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    WITH_PATH(path, get_openat()(dir, path, flags, mode));
}

int openat64(int dir, const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    WITH_PATH(path, get_openat64()(dir, path, flags, mode));
}

ssize_t read(int fd, void *buf, size_t len)
{
    struct lethe *l = io_signal_mode();
    if (!l || !io_touches_region(l, buf, len))
        return get_read()(fd, buf, len);
    return prefaulted(l, PIECE_READ, fd, buf, len, 0);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    struct lethe *l = io_signal_mode();
    if (!l || !io_touches_region(l, buf, len))
        return get_write()(fd, buf, len);
    return prefaulted(l, PIECE_WRITE, fd, (char *)buf, len, 0);
}

ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
    struct lethe *l = io_signal_mode();
    if (!l || !io_touches_region(l, buf, len))
        return get_pread()(fd, buf, len, off);
    return prefaulted(l, PIECE_PREAD, fd, buf, len, off);
}

ssize_t pread64(int fd, void *buf, size_t len, off_t off)
{
    struct lethe *l = io_signal_mode();
    if (!l || !io_touches_region(l, buf, len))
        return get_pread64()(fd, buf, len, off);
    return prefaulted(l, PIECE_PREAD64, fd, buf, len, off);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    struct lethe *l = io_signal_mode();
    if (!l || !io_touches_region(l, buf, len))
        return get_pwrite()(fd, buf, len, off);
    return prefaulted(l, PIECE_PWRITE, fd, (char *)buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    struct lethe *l = io_signal_mode();
    if (!l || !io_touches_region(l, buf, len))
        return get_pwrite64()(fd, buf, len, off);
    return prefaulted(l, PIECE_PWRITE64, fd, (char *)buf, len, off);
}

ssize_t readv(int fd, const struct iovec *iov, int n)
{
    struct lethe *l = io_signal_mode();
    if (!l || n <= 0 || !iov_touches_region(l, iov, n))
        return get_readv()(fd, iov, n);
    return prefaulted_iov(l, PIECE_READ, fd, iov, n, 0);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    struct lethe *l = io_signal_mode();
    if (!l || n <= 0 || !iov_touches_region(l, iov, n))
        return get_writev()(fd, iov, n);
    return prefaulted_iov(l, PIECE_WRITE, fd, iov, n, 0);
}

ssize_t preadv(int fd, const struct iovec *iov, int n, off_t off)
{
    struct lethe *l = io_signal_mode();
    if (!l || n <= 0 || !iov_touches_region(l, iov, n))
        return get_preadv()(fd, iov, n, off);
    return prefaulted_iov(l, PIECE_PREAD, fd, iov, n, off);
}

ssize_t preadv64(int fd, const struct iovec *iov, int n, off_t off)
{
    struct lethe *l = io_signal_mode();
    if (!l || n <= 0 || !iov_touches_region(l, iov, n))
        return get_preadv64()(fd, iov, n, off);
    return prefaulted_iov(l, PIECE_PREAD64, fd, iov, n, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    struct lethe *l = io_signal_mode();
    if (!l || n <= 0 || !iov_touches_region(l, iov, n))
        return get_pwritev()(fd, iov, n, off);
    return prefaulted_iov(l, PIECE_PWRITE, fd, iov, n, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off)
{
    struct lethe *l = io_signal_mode();
    if (!l || n <= 0 || !iov_touches_region(l, iov, n))
        return get_pwritev64()(fd, iov, n, off);
    return prefaulted_iov(l, PIECE_PWRITE64, fd, iov, n, off);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    struct lethe *l = io_signal_mode();
    if (!l || !io_touches_region(l, buf, len))
        return get_recv()(fd, buf, len, flags);
    struct io_pins ps = {.l = l};
    const size_t n = cut_len(len);
    WITH_PREFAULT(&ps, buf, n, get_recv()(fd, buf, n, flags));
}

/* The last resort of a send whose tries all failed with EFAULT: sends get half the pins, so
 * pages beyond them are only touched, and under heavy eviction every try can find one gone
 * again (`app_calls more` under a 256 KiB cache: 1 run in 4 on a KVM host, by send and by
 * sendmmsg). The data of m's vector is gathered into one copy outside the region, in user
 * mode, where a fault is served, and sent as one message with m's address and ancillary
 * data. A send that failed with EFAULT sent nothing, so the copy sends it once. */
static ssize_t send_copied(int fd, const struct msghdr *m, int flags)
{
    size_t len = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++)
        len += m->msg_iov[i].iov_len;
    char *copy = heap_runtime_alloc(len ? len : 1);
    if (!copy) {
        errno = EFAULT;
        return -1;
    }
    for (size_t i = 0, at = 0; i < m->msg_iovlen; at += m->msg_iov[i].iov_len, i++)
        memcpy(copy + at, m->msg_iov[i].iov_base, m->msg_iov[i].iov_len);
    struct iovec one = {.iov_base = copy, .iov_len = len};
    struct msghdr h = *m;
    h.msg_iov = &one;
    h.msg_iovlen = 1;
    ssize_t rc = -1;
    int err = 0;
    pthread_cleanup_push(heap_runtime_free, copy);
    rc = get_sendmsg()(fd, &h, flags);
    err = errno;
    pthread_cleanup_pop(1);
    errno = err;
    return rc;
}

/* send (to_given false) or sendto with buf's pages pinned (ps, which may hold others already)
 * and made present, EFAULT retried, then sent from a copy. */
static ssize_t send_pinned(struct io_pins *ps, int fd, const void *buf, size_t n, int flags,
                           bool to_given, const struct sockaddr *to, socklen_t tolen)
{
    io_pin(ps, buf, n);
    ssize_t rc = -1;
    pthread_cleanup_push(io_unpin, ps);
    for (int t = 0; t < RETRIES; t++) {
        io_prefault(ps->l, buf, n);
        rc = to_given ? get_sendto()(fd, buf, n, flags, to, tolen) : get_send()(fd, buf, n, flags);
        if (!(rc < 0 && errno == EFAULT))
            break;
    }
    if (rc < 0 && errno == EFAULT) {
        struct iovec v = {.iov_base = (void *)buf, .iov_len = n};
        struct msghdr m = {.msg_name = to_given ? (void *)to : NULL,
                           .msg_namelen = to_given ? tolen : 0,
                           .msg_iov = &v,
                           .msg_iovlen = 1};
        rc = send_copied(fd, &m, flags);
    }
    pthread_cleanup_pop(1);
    return rc;
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    struct lethe *l = io_signal_mode();
    if (!l || !io_touches_region(l, buf, len))
        return get_send()(fd, buf, len, flags);
    struct io_pins ps = {.l = l, .sending = true};
    return send_pinned(&ps, fd, buf, cut_len(len), flags, false, NULL, 0);
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
                 socklen_t *fromlen)
{
    struct lethe *l = io_signal_mode();
    if (!l || !io_touches_region(l, buf, len))
        return get_recvfrom()(fd, buf, len, flags, from, fromlen);
    /* the address is copied out after the data: pinned too (a datagram whose address
     * cannot be written is dropped like one whose data cannot) */
    struct io_pins ps = {.l = l};
    io_pin(&ps, fromlen, sizeof(*fromlen));
    if (from && fromlen) {
        io_pin(&ps, from, *fromlen);
        io_prefault(l, from, *fromlen);
    }
    io_prefault(l, fromlen, sizeof(*fromlen));
    const size_t n = cut_len(len);
    WITH_PREFAULT(&ps, buf, n, get_recvfrom()(fd, buf, n, flags, from, fromlen));
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
               socklen_t tolen)
{
    struct lethe *l = io_signal_mode();
    if (!l || !io_touches_region(l, buf, len))
        return get_sendto()(fd, buf, len, flags, to, tolen);
    struct io_pins ps = {.l = l, .sending = true};
    io_pin(&ps, to, tolen);
    io_prefault(l, to, tolen);
    return send_pinned(&ps, fd, buf, cut_len(len), flags, true, to, tolen);
}

/* The small buffers of a msghdr besides its data: the header, address and ancillary data. */
static void pin_msghdr(struct io_pins *ps, const struct msghdr *m)
{
    io_pin(ps, m, sizeof(*m));
    io_pin(ps, m->msg_name, m->msg_namelen);
    io_pin(ps, m->msg_control, m->msg_controllen);
}

static void prefault_msghdr(struct lethe *l, const struct msghdr *m)
{
    io_prefault(l, m, sizeof(*m));
    io_prefault(l, m->msg_name, m->msg_namelen);
    io_prefault(l, m->msg_control, m->msg_controllen);
}

static bool msghdr_touches_region(struct lethe *l, const struct msghdr *m, int n)
{
    return iov_touches_region(l, m->msg_iov, n) || io_touches_region(l, m, sizeof(*m)) ||
           io_touches_region(l, m->msg_name, m->msg_namelen) ||
           io_touches_region(l, m->msg_control, m->msg_controllen);
}

/* The part of recvmsg that pins, out of line (so are the others' below): its buffers stay
 * off the stack of a call that passes straight through, as in thread delivery. */
static __attribute__((noinline)) ssize_t recvmsg_pinned(struct lethe *l, int fd, struct msghdr *msg,
                                                        int flags, int n)
{
    struct iovec v[MAX_IOV_COPIED];
    struct iovec *orig = msg->msg_iov;
    size_t orig_len = msg->msg_iovlen;
    struct io_pins ps = {.l = l};
    pin_msghdr(&ps, msg);
    int k = cut_iov(&ps, orig, n, v);
    ssize_t rc = -1;
    pthread_cleanup_push(io_unpin, &ps);
    for (int t = 0; t < RETRIES; t++) {
        prefault_msghdr(l, msg);
        prefault_iov(l, v, k);
        msg->msg_iov = v;
        msg->msg_iovlen = (size_t)k;
        rc = get_recvmsg()(fd, msg, flags);
        int err = errno;
        msg->msg_iov = orig;
        msg->msg_iovlen = orig_len;
        errno = err;
        if (!(rc < 0 && errno == EFAULT))
            break;
    }
    pthread_cleanup_pop(1);
    return rc;
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct lethe *l = io_signal_mode();
    if (!l || !msg || msg->msg_iovlen == 0 || msg->msg_iovlen > INT_MAX)
        return get_recvmsg()(fd, msg, flags);
    int n = (int)msg->msg_iovlen;
    if (!msghdr_touches_region(l, msg, n))
        return get_recvmsg()(fd, msg, flags);
    return recvmsg_pinned(l, fd, msg, flags, n);
}

static __attribute__((noinline)) ssize_t sendmsg_pinned(struct lethe *l, int fd,
                                                        const struct msghdr *msg, int flags, int n)
{
    struct iovec v[MAX_IOV_COPIED];
    struct io_pins ps = {.l = l, .sending = true};
    pin_msghdr(&ps, msg);
    int k = cut_iov(&ps, msg->msg_iov, n, v);
    struct msghdr copy = *msg;
    copy.msg_iov = v;
    copy.msg_iovlen = (size_t)k;
    ssize_t rc = -1;
    pthread_cleanup_push(io_unpin, &ps);
    for (int t = 0; t < RETRIES; t++) {
        prefault_msghdr(l, msg);
        prefault_iov(l, v, k);
        rc = get_sendmsg()(fd, &copy, flags);
        if (!(rc < 0 && errno == EFAULT))
            break;
    }
    if (rc < 0 && errno == EFAULT)
        rc = send_copied(fd, &copy, flags);
    pthread_cleanup_pop(1);
    return rc;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct lethe *l = io_signal_mode();
    if (!l || !msg || msg->msg_iovlen == 0 || msg->msg_iovlen > INT_MAX)
        return get_sendmsg()(fd, msg, flags);
    int n = (int)msg->msg_iovlen;
    if (!msghdr_touches_region(l, msg, n))
        return get_sendmsg()(fd, msg, flags);
    return sendmsg_pinned(l, fd, msg, flags, n);
}

/* recvmmsg and sendmmsg: the messages that fit in one budget (the first one always, cut to
 * it; at most MAX_MMSG), each message's vector copied and cut, its buffers pinned; a message
 * whose pages could not all be pinned ends the batch, unless it is the first. The kernel gets
 * copies of the headers, whose results (msg_len, and the lengths and flags recvmsg writes) go
 * back to the program's. */
#define MAX_MMSG 64

struct mmsg_batch {
    struct mmsghdr h[MAX_MMSG];
    struct iovec v[MAX_IOV_COPIED];
    struct io_pins ps;
    unsigned m;
};

static bool mmsg_touches_region(struct lethe *l, const struct mmsghdr *vec, unsigned vlen)
{
    if (io_touches_region(l, vec, (size_t)vlen * sizeof(*vec)))
        return true;
    for (unsigned i = 0; i < vlen; i++) {
        const struct msghdr *m = &vec[i].msg_hdr;
        if (m->msg_iovlen <= INT_MAX && msghdr_touches_region(l, m, (int)m->msg_iovlen))
            return true;
    }
    return false;
}

/* Fills b from vec; returns false when a header is one the kernel will refuse (then the call
 * goes to it as it is). */
static bool mmsg_prepare(struct mmsg_batch *b, struct mmsghdr *vec, unsigned vlen)
{
    size_t left = io_budget();
    int used = 0;
    b->m = 0;
    for (unsigned i = 0; i < vlen && i < MAX_MMSG; i++) {
        const struct msghdr *m = &vec[i].msg_hdr;
        if (m->msg_iovlen > MAX_IOV_COPIED)
            return false;
        if (i > 0 && (left == 0 || used + (int)m->msg_iovlen > MAX_IOV_COPIED))
            break;
        b->h[i] = vec[i];
        bool all = io_pin(&b->ps, m->msg_name, m->msg_namelen);
        all &= io_pin(&b->ps, m->msg_control, m->msg_controllen);
        bool iov_all;
        int k = cut_iov_within(&b->ps, m->msg_iov, (int)m->msg_iovlen, 0, 0, b->v + used,
                               MAX_IOV_COPIED - used, &left, &iov_all);
        if (i > 0 && !(all && iov_all))
            break;
        b->h[i].msg_hdr.msg_iov = b->v + used;
        b->h[i].msg_hdr.msg_iovlen = (size_t)k;
        used += k;
        b->m = i + 1;
    }
    return true;
}

static void mmsg_prefault(struct lethe *l, struct mmsg_batch *b)
{
    for (unsigned i = 0; i < b->m; i++) {
        prefault_msghdr(l, &b->h[i].msg_hdr);
        prefault_iov(l, b->h[i].msg_hdr.msg_iov, (int)b->h[i].msg_hdr.msg_iovlen);
    }
}

/* The kernel's results for the first n messages, back into the program's headers: the byte
 * counts, and for a receive what recvmsg writes into a header. */
static void mmsg_results(const struct mmsg_batch *b, struct mmsghdr *vec, int n, bool received)
{
    for (int i = 0; i < n; i++) {
        vec[i].msg_len = b->h[i].msg_len;
        if (!received)
            continue;
        vec[i].msg_hdr.msg_namelen = b->h[i].msg_hdr.msg_namelen;
        vec[i].msg_hdr.msg_controllen = b->h[i].msg_hdr.msg_controllen;
        vec[i].msg_hdr.msg_flags = b->h[i].msg_hdr.msg_flags;
    }
}

static __attribute__((noinline)) int recvmmsg_pinned(struct lethe *l, int fd, struct mmsghdr *vec,
                                                     unsigned int vlen, int flags,
                                                     struct timespec *timeout)
{
    struct mmsg_batch b = {.ps = {.l = l}};
    if (!mmsg_prepare(&b, vec, vlen)) {
        io_unpin(&b.ps);
        return get_recvmmsg()(fd, vec, vlen, flags, timeout);
    }
    io_pin(&b.ps, timeout, sizeof(*timeout));
    int rc = -1;
    pthread_cleanup_push(io_unpin, &b.ps);
    for (int t = 0; t < RETRIES; t++) {
        mmsg_prefault(l, &b);
        io_prefault(l, timeout, timeout ? sizeof(*timeout) : 0);
        rc = get_recvmmsg()(fd, b.h, b.m, flags, timeout);
        if (!(rc < 0 && errno == EFAULT))
            break;
    }
    if (rc > 0)
        mmsg_results(&b, vec, rc, true);
    pthread_cleanup_pop(1);
    return rc;
}

int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags, struct timespec *timeout)
{
    struct lethe *l = io_signal_mode();
    if (!l || !vec || vlen == 0 || !mmsg_touches_region(l, vec, vlen))
        return get_recvmmsg()(fd, vec, vlen, flags, timeout);
    return recvmmsg_pinned(l, fd, vec, vlen, flags, timeout);
}

static __attribute__((noinline)) int sendmmsg_pinned(struct lethe *l, int fd, struct mmsghdr *vec,
                                                     unsigned int vlen, int flags)
{
    struct mmsg_batch b = {.ps = {.l = l, .sending = true}};
    if (!mmsg_prepare(&b, vec, vlen)) {
        io_unpin(&b.ps);
        return get_sendmmsg()(fd, vec, vlen, flags);
    }
    int rc = -1;
    pthread_cleanup_push(io_unpin, &b.ps);
    for (int t = 0; t < RETRIES; t++) {
        mmsg_prefault(l, &b);
        rc = get_sendmmsg()(fd, b.h, b.m, flags);
        if (!(rc < 0 && errno == EFAULT))
            break;
    }
    if (rc < 0 && errno == EFAULT) { /* the first message alone, from a copy */
        ssize_t sent = send_copied(fd, &b.h[0].msg_hdr, flags);
        if (sent >= 0) {
            b.h[0].msg_len = (unsigned)sent;
            rc = 1;
        }
    }
    if (rc > 0)
        mmsg_results(&b, vec, rc, false);
    pthread_cleanup_pop(1);
    return rc;
}

int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
    struct lethe *l = io_signal_mode();
    if (!l || !vec || vlen == 0 || !mmsg_touches_region(l, vec, vlen))
        return get_sendmmsg()(fd, vec, vlen, flags);
    return sendmmsg_pinned(l, fd, vec, vlen, flags);
}

/* The fortified forms, which programs built with _FORTIFY_SOURCE (as distributions build
 * them) call instead wherever the compiler knows the buffer's size. A request longer than the
 * buffer goes to glibc's own, which reports the overflow and aborts; any other is the plain
 * call above. __open_2 and the like (open without a mode, flags not known at compile time)
 * check their flags in glibc's own, with the path made present first. */
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
    if (len > buflen)
        return get___read_chk()(fd, buf, len, buflen);
    return read(fd, buf, len);
}

ssize_t __pread_chk(int fd, void *buf, size_t len, off_t off, size_t buflen)
{
    if (len > buflen)
        return get___pread_chk()(fd, buf, len, off, buflen);
    return pread(fd, buf, len, off);
}

ssize_t __pread64_chk(int fd, void *buf, size_t len, off_t off, size_t buflen)
{
    if (len > buflen)
        return get___pread64_chk()(fd, buf, len, off, buflen);
    return pread64(fd, buf, len, off);
}

ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
    if (len > buflen)
        return get___recv_chk()(fd, buf, len, buflen, flags);
    return recv(fd, buf, len, flags);
}

ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
                       struct sockaddr *from, socklen_t *fromlen)
{
    if (len > buflen)
        return get___recvfrom_chk()(fd, buf, len, buflen, flags, from, fromlen);
    return recvfrom(fd, buf, len, flags, from, fromlen);
}

int __open_2(const char *path, int flags)
{
    WITH_PATH(path, get___open_2()(path, flags));
}

int __open64_2(const char *path, int flags)
{
    WITH_PATH(path, get___open64_2()(path, flags));
}

int __openat_2(int dir, const char *path, int flags)
{
    WITH_PATH(path, get___openat_2()(dir, path, flags));
}

int __openat64_2(int dir, const char *path, int flags)
{
    WITH_PATH(path, get___openat64_2()(dir, path, flags));
}
