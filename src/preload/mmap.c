/* mmap.c — large anonymous mappings in the region: mmap, munmap, mremap, madvise; mprotect,
 * mlock, mlock2 (noted) and mlockall (refused).
 *
 * Once the runtime is up, an mmap the program makes of at least fault.mmap_threshold bytes
 * that is private, anonymous, readable and writable, with no address hint and no flag
 * beyond MAP_NORESERVE or MAP_POPULATE (ignored), is served from the region
 * (lethe_extent_alloc: zero-filled, like fresh anonymous memory). Anything else goes to the
 * kernel, and so does every call made by code inside liblethe.so (jemalloc's own mappings,
 * the runtime's): those are never redirected.
 *
 * On region memory:
 *  - munmap gives the pages back (lethe_extent_free); a range that runs out of the region is
 *    split at the region's edge, and its outside part goes to the kernel;
 *  - mremap shrinks in place (the tail is freed), and grows by moving: a new extent, a copy
 *    of the old content, the old extent freed (MREMAP_MAYMOVE needed, else ENOMEM, which is
 *    what the kernel answers when there is no room to grow in place). MREMAP_FIXED moves the
 *    content to a fresh private mapping at the given address outside the region.
 *    MREMAP_DONTUNMAP is refused (EINVAL);
 *  - madvise DONTNEED, FREE and REMOVE discard the content (lethe_extent_purge: the next
 *    touch reads zeros); the fork and core-dump advice goes to the kernel; other advice
 *    (HUGEPAGE, WILLNEED, COLD, PAGEOUT, MERGEABLE...) is accepted and ignored, since the
 *    region's paging is Lethe's business.
 * The kernel's own calls go through syscall(2) so that nothing here depends on glibc's
 * wrappers, which this file replaces.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/log.h"
#include "preload/preload.h"

#define PAGE_MASK_LOW ((uintptr_t)LETHE_PAGE_SIZE - 1)

static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

static int sys_munmap(void *addr, size_t len)
{
    return (int)syscall(SYS_munmap, addr, len);
}

static int sys_madvise(void *addr, size_t len, int advice)
{
    return (int)syscall(SYS_madvise, addr, len, advice);
}

static void *sys_mremap(void *old, size_t old_size, size_t new_size, int flags, void *new_addr)
{
    return (void *)syscall(SYS_mremap, old, old_size, new_size, flags, new_addr);
}

static size_t page_round_up(size_t n)
{
    return (n + PAGE_MASK_LOW) & ~PAGE_MASK_LOW;
}

/* The runtime, when this call should consider the region; NULL when it goes to the kernel. */
static struct lethe *managing(const void *caller)
{
    struct lethe *l = preload_lethe();
    if (!l || preload_is_own_code(caller))
        return NULL;
    return l;
}

static bool wants_region(void *addr, size_t len, int prot, int flags)
{
    uint64_t threshold = preload_config()->mmap_threshold;
    if (threshold == 0 || len < threshold || addr != NULL)
        return false;
    if (prot != (PROT_READ | PROT_WRITE))
        return false;
    if ((flags & MAP_TYPE) != MAP_PRIVATE || !(flags & MAP_ANONYMOUS))
        return false;
    int other = flags & ~(MAP_TYPE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_POPULATE);
    return other == 0;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    struct lethe *l = managing(__builtin_return_address(0));
    if (l && len && wants_region(addr, len, prot, flags)) {
        void *p = lethe_extent_alloc(l, page_round_up(len), 0);
        if (p)
            return p;
        static int warned;
        if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
            lethe_warn("the region is full: mmap of %zu bytes left to the kernel (unmanaged; "
                       "raise cache.region_size)",
                       len);
    }
    return sys_mmap(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
    __attribute__((alias("mmap")));

/* The largest n <= len such that [addr, addr+n) lies in the region (addr in the region). */
static size_t region_prefix(struct lethe *l, char *addr, size_t len)
{
    if (lethe_in_region(l, addr + len - 1))
        return len;
    size_t lo = LETHE_PAGE_SIZE, hi = len; /* lo pages are in, the page at hi is out */
    while (hi - lo > LETHE_PAGE_SIZE) {
        size_t mid = ((lo + hi) / 2) & ~PAGE_MASK_LOW;
        if (lethe_in_region(l, addr + mid - 1))
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int munmap(void *addr, size_t len)
{
    struct lethe *l = managing(__builtin_return_address(0));
    if (!l || len == 0 || ((uintptr_t)addr & PAGE_MASK_LOW))
        return sys_munmap(addr, len);
    size_t total = page_round_up(len);
    char *p = addr;
    if (!lethe_in_region(l, p)) {
        if (!lethe_in_region(l, p + total - 1))
            return sys_munmap(addr, len);
        /* Starts outside, ends inside: find where the region begins. */
        size_t lo = 0, hi = total - LETHE_PAGE_SIZE; /* p+lo is out, p+hi is in */
        while (hi - lo > LETHE_PAGE_SIZE) {
            size_t mid = ((lo + hi) / 2) & ~PAGE_MASK_LOW;
            if (lethe_in_region(l, p + mid))
                hi = mid;
            else
                lo = mid;
        }
        if (sys_munmap(p, hi) != 0)
            return -1;
        p += hi;
        total -= hi;
    }
    size_t in = region_prefix(l, p, total);
    lethe_extent_free(l, p, in);
    if (in < total)
        return sys_munmap(p + in, total - in);
    return 0;
}

static void *mremap_region(struct lethe *l, char *old, size_t old_size, size_t new_size, int flags,
                           void *new_addr)
{
    if (((uintptr_t)old & PAGE_MASK_LOW) || old_size == 0 || new_size == 0 ||
        (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED)) ||
        ((flags & MREMAP_FIXED) && !(flags & MREMAP_MAYMOVE))) {
        errno = EINVAL;
        return MAP_FAILED;
    }
    size_t osz = page_round_up(old_size), nsz = page_round_up(new_size);
    if (flags & MREMAP_FIXED) {
        if (((uintptr_t)new_addr & PAGE_MASK_LOW) || lethe_in_region(l, new_addr) ||
            lethe_in_region(l, (char *)new_addr + nsz - 1)) {
            errno = EINVAL;
            return MAP_FAILED;
        }
        void *dst = sys_mmap(new_addr, nsz, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (dst == MAP_FAILED)
            return MAP_FAILED;
        memcpy(dst, old, osz < nsz ? osz : nsz);
        lethe_extent_free(l, old, osz);
        return dst;
    }
    if (nsz == osz)
        return old;
    if (nsz < osz) {
        lethe_extent_free(l, old + nsz, osz - nsz);
        return old;
    }
    if (!(flags & MREMAP_MAYMOVE)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    char *dst = lethe_extent_alloc(l, nsz, 0);
    if (!dst) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    memcpy(dst, old, osz);
    lethe_extent_free(l, old, osz);
    return dst;
}

void *mremap(void *old, size_t old_size, size_t new_size, int flags, ...)
{
    void *new_addr = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        new_addr = va_arg(ap, void *);
        va_end(ap);
    }
    struct lethe *l = managing(__builtin_return_address(0));
    if (!l || !lethe_in_region(l, old))
        return sys_mremap(old, old_size, new_size, flags, new_addr);
    return mremap_region(l, old, old_size, new_size, flags, new_addr);
}

/* mprotect goes to the kernel as it is; a protection other than read-write on region pages is
 * noted, so that the range becomes read-write again when it is freed (an munmap of region
 * memory keeps the range, which the next mmap or malloc may hand out: it must be fresh). */
int mprotect(void *addr, size_t len, int prot)
{
    struct lethe *l = managing(__builtin_return_address(0));
    if (l && prot != (PROT_READ | PROT_WRITE) && lethe_in_region(l, addr))
        lethe_note_protection(l);
    return (int)syscall(SYS_mprotect, addr, len, prot);
}

/* mlock and mlock2 go to the kernel as they are; locking region pages is noted like a
 * protection (the range must be unlocked when it is freed). */
int mlock(const void *addr, size_t len)
{
    struct lethe *l = managing(__builtin_return_address(0));
    if (l && lethe_in_region(l, addr))
        lethe_note_protection(l);
    return (int)syscall(SYS_mlock, addr, len);
}

int mlock2(const void *addr, size_t len, unsigned int flags)
{
    struct lethe *l = managing(__builtin_return_address(0));
    if (l && lethe_in_region(l, addr))
        lethe_note_protection(l);
    return (int)syscall(SYS_mlock2, addr, len, flags);
}

/* mlockall(MCL_CURRENT) would lock, and so bring in, every page of the region (far larger
 * than the cache, by design) and of the parking area, whose missing pages nobody serves: the
 * program would hang in the call. It is refused with ENOMEM, as when the locked total would
 * exceed RLIMIT_MEMLOCK, and said once; MCL_FUTURE alone goes to the kernel (the region is
 * mapped already). */
int mlockall(int flags)
{
    struct lethe *l = managing(__builtin_return_address(0));
    if (!l || !(flags & MCL_CURRENT))
        return (int)syscall(SYS_mlockall, flags);
    static int warned;
    if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        lethe_warn("mlockall(MCL_CURRENT) refused (ENOMEM): the managed heap is larger than the "
                   "cache and cannot all be locked; mlock of smaller ranges works");
    errno = ENOMEM;
    return -1;
}

int madvise(void *addr, size_t len, int advice)
{
    struct lethe *l = managing(__builtin_return_address(0));
    if (!l || len == 0 || ((uintptr_t)addr & PAGE_MASK_LOW) || !lethe_in_region(l, addr))
        return sys_madvise(addr, len, advice);
    size_t total = page_round_up(len);
    size_t in = region_prefix(l, addr, total);
    switch (advice) {
    case MADV_DONTNEED:
    case MADV_FREE:
    case MADV_REMOVE:
        lethe_extent_purge(l, addr, in);
        break;
    case MADV_DONTFORK:
    case MADV_DOFORK:
    case MADV_WIPEONFORK:
    case MADV_KEEPONFORK:
    case MADV_DONTDUMP:
    case MADV_DODUMP:
        return sys_madvise(addr, len, advice);
    default:
        break;
    }
    if (in < total)
        return sys_madvise((char *)addr + in, total - in, advice);
    return 0;
}
