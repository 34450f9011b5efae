/* sockets.c — socket addresses and options on the heap, made safe for signal delivery.
 *
 * A server that keeps its listening address, or the peer address accept fills, in a heap
 * struct hands the kernel region memory; in signal mode a missing page fails the call with
 * EFAULT. Retrying is not always harmless here: accept has taken the connection off the
 * queue before it copies the peer's address out, and when that copy fails the kernel closes
 * the new socket, so the connection is lost. So these wrappers never let the kernel see
 * region memory at all: the address or option goes through a buffer on the stack, copied in
 * and out from user mode, where a missing page faults in like any other access.
 *
 *  - bind and connect: the address copied to the stack first;
 *  - accept, accept4, getsockname and getpeername: the address received on the stack and
 *    copied out (as the kernel would: at most the caller's length, and the length set to
 *    the address's full size);
 *  - setsockopt and getsockopt: the option value through the stack, up to OPT_MAX bytes;
 *    a longer one is made present first and the call retried after an EFAULT (the kernel
 *    reads or writes an option before it acts or after, as with paths).
 * An address longer than a sockaddr_storage (never for the families Linux has) passes
 * through. In thread delivery mode the wrappers pass straight through after one check.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "preload/preload.h"

#define RETRIES 8
#define OPT_MAX 512

typedef int (*addr_in_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);
typedef int (*addr_out_fn)(int, struct sockaddr *, socklen_t *);
typedef int (*setsockopt_fn)(int, int, int, const void *, socklen_t);
typedef int (*getsockopt_fn)(int, int, int, void *, socklen_t *);

PRELOAD_REAL(bind, addr_in_fn)
PRELOAD_REAL(connect, addr_in_fn)
PRELOAD_REAL(accept, addr_out_fn)
PRELOAD_REAL(accept4, accept4_fn)
PRELOAD_REAL(getsockname, addr_out_fn)
PRELOAD_REAL(getpeername, addr_out_fn)
PRELOAD_REAL(setsockopt, setsockopt_fn)
PRELOAD_REAL(getsockopt, getsockopt_fn)

void sockets_init(void)
{
    get_bind();
    get_connect();
    get_accept();
    get_accept4();
    get_getsockname();
    get_getpeername();
    get_setsockopt();
    get_getsockopt();
}

/* The runtime when an address of len bytes at addr, or the length at lenp, lies in the
 * region (signal mode only), else NULL. */
static struct lethe *heap_address(const void *addr, socklen_t len, const socklen_t *lenp)
{
    struct lethe *l = io_signal_mode();
    if (!l)
        return NULL;
    if (io_touches_region(l, addr, len) || io_touches_region(l, lenp, sizeof(*lenp)))
        return l;
    return NULL;
}

/* bind and connect: the address copied to the stack first. */
static int address_in_via_stack(addr_in_fn call, int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!heap_address(addr, len, NULL) || len > sizeof(struct sockaddr_storage))
        return call(fd, addr, len);
    struct sockaddr_storage copy;
    memcpy(&copy, addr, len);
    return call(fd, (struct sockaddr *)&copy, len);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    return address_in_via_stack(get_bind(), fd, addr, len);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    return address_in_via_stack(get_connect(), fd, addr, len);
}

/* Copies an address the kernel gave (got bytes in copy) out to the caller's addr and
 * *lenp, the way the kernel does: at most *lenp bytes, *lenp set to got. */
static void address_out(struct sockaddr *addr, socklen_t *lenp, const struct sockaddr_storage *copy,
                        socklen_t got)
{
    socklen_t room = *lenp;
    memcpy(addr, copy, got < room ? got : room);
    *lenp = got;
}

/* Whether the caller's address (addr, *lenp) must go through the stack. */
static bool through_stack(struct sockaddr *addr, socklen_t *lenp)
{
    if (!addr || !lenp)
        return false;
    socklen_t room = *lenp;
    return heap_address(addr, room, lenp) != NULL;
}

/* accept, getsockname and getpeername (one signature): the address received on the stack
 * and copied out on success. */
static int address_via_stack(addr_out_fn call, int fd, struct sockaddr *addr, socklen_t *lenp)
{
    if (!through_stack(addr, lenp))
        return call(fd, addr, lenp);
    struct sockaddr_storage copy;
    socklen_t got = sizeof(copy);
    int rc = call(fd, (struct sockaddr *)&copy, &got);
    if (rc >= 0)
        address_out(addr, lenp, &copy, got);
    return rc;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *lenp, int flags)
{
    if (!through_stack(addr, lenp))
        return get_accept4()(fd, addr, lenp, flags);
    struct sockaddr_storage copy;
    socklen_t got = sizeof(copy);
    int rc = get_accept4()(fd, (struct sockaddr *)&copy, &got, flags);
    if (rc >= 0)
        address_out(addr, lenp, &copy, got);
    return rc;
}

int accept(int fd, struct sockaddr *addr, socklen_t *lenp)
{
    return address_via_stack(get_accept(), fd, addr, lenp);
}

int getsockname(int fd, struct sockaddr *addr, socklen_t *lenp)
{
    return address_via_stack(get_getsockname(), fd, addr, lenp);
}

int getpeername(int fd, struct sockaddr *addr, socklen_t *lenp)
{
    return address_via_stack(get_getpeername(), fd, addr, lenp);
}

int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    struct lethe *l = heap_address(value, len, NULL);
    if (!l)
        return get_setsockopt()(fd, level, name, value, len);
    if (len <= OPT_MAX) {
        unsigned char copy[OPT_MAX];
        memcpy(copy, value, len);
        return get_setsockopt()(fd, level, name, copy, len);
    }
    int rc = -1;
    for (int try = 0; try < RETRIES; try++) {
        io_prefault(l, value, len);
        rc = get_setsockopt()(fd, level, name, value, len);
        if (!(rc < 0 && errno == EFAULT))
            break;
    }
    return rc;
}

int getsockopt(int fd, int level, int name, void *value, socklen_t *lenp)
{
    if (!value || !lenp)
        return get_getsockopt()(fd, level, name, value, lenp);
    socklen_t room = *lenp;
    struct lethe *l = heap_address(value, room, lenp);
    if (!l)
        return get_getsockopt()(fd, level, name, value, lenp);
    if (room <= OPT_MAX) {
        unsigned char copy[OPT_MAX];
        memcpy(copy, value, room); /* a few options read the buffer as input too */
        socklen_t got = room;
        int rc = get_getsockopt()(fd, level, name, copy, &got);
        if (rc == 0) {
            memcpy(value, copy, got < room ? got : room);
            *lenp = got;
        }
        return rc;
    }
    int rc = -1;
    for (int try = 0; try < RETRIES; try++) {
        io_prefault(l, lenp, sizeof(*lenp));
        io_prefault(l, value, room);
        rc = get_getsockopt()(fd, level, name, value, lenp);
        if (!(rc < 0 && errno == EFAULT))
            break;
    }
    return rc;
}
