/* foreign.c — ranges of the region that the program mapped something else over.
 *
 * The region is one private anonymous mapping registered with uffd A. A program may map a
 * file or shared memory with MAP_FIXED over pages it owns there (a JVM maps its class-data
 * archive into the heap and class space it reserved; liblethe.so placed those reservations
 * in the region). The kernel replaces that part of the region's mapping with the new one,
 * which is not registered: its pages are the kernel's, and Lethe neither sees nor swaps them.
 * The table below remembers such ranges, for two reasons:
 *  - when the program gives the range back (munmap, or MAP_FIXED anonymous memory over it)
 *    the address range returns to the extent allocator, and whoever gets it next must find
 *    fresh, registered region memory there, not the old file pages: lethe_page_unforeign
 *    maps anonymous memory over it and registers it again, in one step each (MAP_FIXED
 *    replaces the foreign mapping atomically: no hole another thread's mmap could take);
 *  - a forked child registers the region with its own uffd, and a file mapping in the range
 *    would fail that registration as a whole: fault_register_region leaves them out.
 * The table is small and sorted; FAULT_MAX_FOREIGN ranges at most (a JVM makes about four).
 * Callers: any application thread (through liblethe's mmap/munmap/madvise), under
 * foreign_lock; nforeign is read without it for the common case of none.
 */
#define _GNU_SOURCE
#include "fault/fault_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/log.h"

#define PG LETHE_PAGE_SIZE

/* Called with foreign_lock held: removes [vpn, vpn+n) from the table, splitting ranges that
 * cover part of it. -ENOSPC when a split needs a slot the table does not have. */
static int forget(struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    unsigned count = atomic_load_explicit(&r->nforeign, memory_order_relaxed);
    uint64_t end = vpn + n;
    for (unsigned i = 0; i < count; i++) {
        uint64_t lo = r->foreign[i].vpn, hi = lo + r->foreign[i].n;
        if (hi <= vpn || lo >= end)
            continue;
        if (lo < vpn && hi > end) { /* the hole is inside: two ranges remain */
            if (count == FAULT_MAX_FOREIGN)
                return -ENOSPC;
            memmove(&r->foreign[i + 2], &r->foreign[i + 1],
                    (count - i - 1) * sizeof(r->foreign[0]));
            r->foreign[i].n = vpn - lo;
            r->foreign[i + 1].vpn = end;
            r->foreign[i + 1].n = hi - end;
            count++;
            break;
        }
        if (lo < vpn) {
            r->foreign[i].n = vpn - lo;
        } else if (hi > end) {
            r->foreign[i].vpn = end;
            r->foreign[i].n = hi - end;
        } else {
            memmove(&r->foreign[i], &r->foreign[i + 1], (count - i - 1) * sizeof(r->foreign[0]));
            count--;
            i--;
        }
    }
    atomic_store_explicit(&r->nforeign, count, memory_order_relaxed);
    return 0;
}

/* Called with foreign_lock held, after forget(): inserts [vpn, vpn+n) in order. */
static int record(struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    unsigned count = atomic_load_explicit(&r->nforeign, memory_order_relaxed);
    if (count == FAULT_MAX_FOREIGN)
        return -ENOSPC;
    unsigned i = 0;
    while (i < count && r->foreign[i].vpn < vpn)
        i++;
    memmove(&r->foreign[i + 1], &r->foreign[i], (count - i) * sizeof(r->foreign[0]));
    r->foreign[i].vpn = vpn;
    r->foreign[i].n = n;
    atomic_store_explicit(&r->nforeign, count + 1, memory_order_relaxed);
    return 0;
}

int lethe_page_map_foreign(struct lethe_region *r, uint64_t vpn, uint64_t n, int prot, int flags,
                           int fd, off_t off)
{
    if (n == 0 || vpn >= r->pages || n > r->pages - vpn)
        return -EINVAL;
    pthread_mutex_lock(&r->foreign_lock);
    int rc = 0;
    unsigned count = atomic_load_explicit(&r->nforeign, memory_order_relaxed);
    /* room for the new range and for one split of an old one it lands inside */
    if (count + 2 > FAULT_MAX_FOREIGN) {
        rc = -ENOSPC;
    } else {
        void *addr = (void *)(uintptr_t)fault_addr(r, vpn);
        flags = (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED;
        long p = syscall(SYS_mmap, addr, n * PG, prot, flags, fd, off);
        if (p == -1)
            rc = -errno;
        else if ((rc = forget(r, vpn, n)) == 0)
            rc = record(r, vpn, n);
    }
    pthread_mutex_unlock(&r->foreign_lock);
    return rc;
}

/* Called with foreign_lock held: [vpn, vpn+n) becomes region memory again. */
static int give_back(struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    void *addr = (void *)(uintptr_t)fault_addr(r, vpn);
    long p = syscall(SYS_mmap, addr, n * PG, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    if (p == -1)
        return -errno;
    syscall(SYS_madvise, addr, n * PG, MADV_NOHUGEPAGE);
    if (r->uffd < 0)
        return -EBADF;
    return fault_register_range(r->uffd, addr, n * PG, r->register_mode, NULL);
}

int lethe_page_unforeign(struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    if (atomic_load_explicit(&r->nforeign, memory_order_relaxed) == 0)
        return 0;
    if (n == 0 || vpn >= r->pages || n > r->pages - vpn)
        return -EINVAL;
    pthread_mutex_lock(&r->foreign_lock);
    int rc = 0;
    uint64_t end = vpn + n;
    unsigned count = atomic_load_explicit(&r->nforeign, memory_order_relaxed);
    for (unsigned i = 0; i < count && rc == 0; i++) {
        uint64_t lo = r->foreign[i].vpn, hi = lo + r->foreign[i].n;
        if (hi <= vpn || lo >= end)
            continue;
        lo = lo > vpn ? lo : vpn;
        hi = hi < end ? hi : end;
        rc = give_back(r, lo, hi - lo);
        if (rc < 0)
            lethe_error("cannot give pages %#llx..%#llx back to the region: %s; they stay "
                        "with the kernel (unmanaged)",
                        (unsigned long long)fault_addr(r, lo),
                        (unsigned long long)fault_addr(r, hi) - 1, strerror(-rc));
    }
    if (rc == 0)
        rc = forget(r, vpn, n);
    pthread_mutex_unlock(&r->foreign_lock);
    return rc;
}

uint64_t lethe_page_foreign_span(struct lethe_region *r, uint64_t vpn, uint64_t n, bool *foreign)
{
    *foreign = false;
    if (atomic_load_explicit(&r->nforeign, memory_order_relaxed) == 0)
        return n;
    pthread_mutex_lock(&r->foreign_lock);
    uint64_t span = n;
    unsigned count = atomic_load_explicit(&r->nforeign, memory_order_relaxed);
    for (unsigned i = 0; i < count; i++) {
        uint64_t lo = r->foreign[i].vpn, hi = lo + r->foreign[i].n;
        if (hi <= vpn)
            continue;
        if (lo <= vpn) {
            *foreign = true;
            span = hi - vpn;
        } else {
            span = lo - vpn;
        }
        break;
    }
    pthread_mutex_unlock(&r->foreign_lock);
    return span < n ? span : n;
}

int fault_register_region(struct lethe_region *r, int uffd, uint64_t mode)
{
    uint64_t at = 0;
    unsigned count = atomic_load_explicit(&r->nforeign, memory_order_relaxed);
    for (unsigned i = 0; i <= count; i++) {
        uint64_t next = i < count ? r->foreign[i].vpn : r->pages;
        if (next > at) {
            int rc = fault_register_range(uffd, r->base + at * PG, (next - at) * PG, mode, NULL);
            if (rc < 0)
                return rc;
        }
        if (i < count)
            at = r->foreign[i].vpn + r->foreign[i].n;
    }
    return 0;
}
