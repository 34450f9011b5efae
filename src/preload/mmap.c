/* mmap.c — large anonymous mappings in the region: mmap, munmap, mremap, madvise; mprotect,
 * mlock, mlock2 (noted) and mlockall (refused).
 *
 * Once the runtime is up, an mmap the program makes of at least fault.mmap_threshold bytes
 * that is private and anonymous, read-write, read-only or PROT_NONE (a reservation the
 * program commits later, as JVMs and V8 do), with no flag beyond MAP_NORESERVE or
 * MAP_POPULATE (ignored), is served from the region (lethe_extent_alloc: zero-filled, like
 * fresh anonymous memory) with the protection asked for; an address hint is not followed.
 * Anything else goes to the kernel, and so does every call made by code inside liblethe.so
 * (jemalloc's own mappings, the runtime's): those are never redirected.
 *
 * mmap with MAP_FIXED over region memory: private anonymous, not executable, stays region
 * memory (lethe_extent_map_fresh: zeros, the protection asked for); anything else (a file,
 * MAP_SHARED, PROT_EXEC...) is mapped by the kernel as a foreign range until it is given back
 * (lethe_extent_map_foreign). Parts of the range outside the region go to the kernel.
 *
 * On region memory:
 *  - munmap gives the pages back (lethe_extent_free); a range that runs out of the region is
 *    split at the region's edge, and its outside part goes to the kernel;
 *  - mremap shrinks in place (the tail is freed), and grows by moving: a new extent, a copy
 *    of the old content, the old extent freed (MREMAP_MAYMOVE needed, else ENOMEM, which is
 *    what the kernel answers when there is no room to grow in place). MREMAP_FIXED moves the
 *    content to a fresh private mapping at the given address outside the region.
 *    MREMAP_DONTUNMAP is refused (EINVAL);
 *  - madvise of a foreign range goes to the kernel, mremap of one is refused (EINVAL);
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

static size_t region_prefix(struct lethe *l, char *addr, size_t len);

/* The runtime, when this call should consider the region; NULL when it goes to the kernel. */
static struct lethe *managing(const void *caller)
{
    struct lethe *l = preload_lethe();
    if (!l || preload_is_own_code(caller))
        return NULL;
    return l;
}

/* A mapping the region takes: private anonymous memory of at least the threshold, readable,
 * writable or neither (a reservation that the program commits later with mprotect or
 * MAP_FIXED, as JVMs, V8 and Go-style allocators do), never executable. An address hint is
 * not followed: the region decides where its memory lies (the kernel may ignore hints too). */
static bool wants_region(size_t len, int prot, int flags)
{
    uint64_t threshold = preload_config()->mmap_threshold;
    if (threshold == 0 || len < threshold)
        return false;
    if (prot & ~(PROT_READ | PROT_WRITE))
        return false;
    if ((flags & MAP_TYPE) != MAP_PRIVATE || !(flags & MAP_ANONYMOUS))
        return false;
    int other = flags & ~(MAP_TYPE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_POPULATE);
    return other == 0;
}

/* Of [p, p+total): *head bytes before the region, then *in bytes in it (the rest after it).
 * *in is 0 when the range misses the region. */
static void split_at_region(struct lethe *l, char *p, size_t total, size_t *head, size_t *in)
{
    *head = 0;
    *in = 0;
    if (!lethe_in_region(l, p)) {
        if (!lethe_in_region(l, p + total - 1))
            return; /* the region is far larger than any range that could straddle it */
        size_t lo = 0, hi = total - LETHE_PAGE_SIZE; /* p+lo is out, p+hi is in */
        while (hi - lo > LETHE_PAGE_SIZE) {
            size_t mid = ((lo + hi) / 2) & ~PAGE_MASK_LOW;
            if (lethe_in_region(l, p + mid))
                hi = mid;
            else
                lo = mid;
        }
        *head = hi;
    }
    *in = region_prefix(l, p + *head, total - *head);
}

/* Whether a MAP_FIXED mapping stays region memory: private anonymous, not executable, no
 * flag the region cannot honour (MAP_LOCKED, MAP_HUGETLB, MAP_GROWSDOWN...). */
static bool fresh_region_memory(int prot, int flags)
{
    if (prot & ~(PROT_READ | PROT_WRITE))
        return false;
    if ((flags & MAP_TYPE) != MAP_PRIVATE || !(flags & MAP_ANONYMOUS))
        return false;
    int other =
        flags & ~(MAP_TYPE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE | MAP_POPULATE | MAP_STACK);
    return other == 0;
}

/* mmap with MAP_FIXED (or MAP_FIXED_NOREPLACE) over region memory. */
static void *mmap_fixed(struct lethe *l, char *addr, size_t len, int prot, int flags, int fd,
                        off_t off)
{
    size_t total = page_round_up(len), head, in;
    split_at_region(l, addr, total, &head, &in);
    if (in == 0)
        return sys_mmap(addr, len, prot, flags, fd, off);
    if (flags & MAP_FIXED_NOREPLACE) { /* the region is mapped, all of it */
        errno = EEXIST;
        return MAP_FAILED;
    }
    if (head && sys_mmap(addr, head, prot, flags, fd, off) == MAP_FAILED)
        return MAP_FAILED;
    char *p = addr + head;
    int rc = fresh_region_memory(prot, flags)
                 ? lethe_extent_map_fresh(l, p, in, prot)
                 : lethe_extent_map_foreign(l, p, in, prot, flags, fd, off + (off_t)head);
    if (rc < 0) {
        errno = rc == -ENOSPC ? ENOMEM : -rc;
        return MAP_FAILED;
    }
    size_t tail = total - head - in;
    if (tail && sys_mmap(p + in, tail, prot, flags, fd, off + (off_t)(head + in)) == MAP_FAILED)
        return MAP_FAILED;
    return addr;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    struct lethe *l = managing(__builtin_return_address(0));
    if (l && len && (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) &&
        !((uintptr_t)addr & PAGE_MASK_LOW))
        return mmap_fixed(l, addr, len, prot, flags, fd, off);
    if (l && len && wants_region(len, prot, flags)) {
        void *p = lethe_extent_alloc(l, page_round_up(len), 0);
        if (p && prot != (PROT_READ | PROT_WRITE)) {
            lethe_note_protection(l); /* before: the range must be reset when it is freed */
            if (syscall(SYS_mprotect, p, page_round_up(len), prot) != 0) {
                int e = errno;
                lethe_extent_free(l, p, page_round_up(len));
                errno = e;
                return MAP_FAILED;
            }
        }
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
    size_t total = page_round_up(len), head, in;
    char *p = addr;
    split_at_region(l, p, total, &head, &in);
    if (in == 0)
        return sys_munmap(addr, len);
    if (head && sys_munmap(p, head) != 0)
        return -1;
    lethe_extent_free(l, p + head, in);
    if (head + in < total)
        return sys_munmap(p + head + in, total - head - in);
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
    bool foreign;
    if (lethe_extent_foreign_span(l, old, osz, &foreign) < osz || foreign) {
        errno = EINVAL; /* a file or shared mapping placed over region memory stays put */
        return MAP_FAILED;
    }
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

/* Advice for region pages the program owns as region memory (not foreign ones). */
static int madvise_region(struct lethe *l, char *addr, size_t len, int advice)
{
    switch (advice) {
    case MADV_DONTNEED:
    case MADV_FREE:
    case MADV_REMOVE:
        lethe_extent_purge(l, addr, len);
        return 0;
    case MADV_DONTFORK:
    case MADV_DOFORK:
    case MADV_WIPEONFORK:
    case MADV_KEEPONFORK:
    case MADV_DONTDUMP:
    case MADV_DODUMP:
        return sys_madvise(addr, len, advice);
    default:
        return 0;
    }
}

int madvise(void *addr, size_t len, int advice)
{
    struct lethe *l = managing(__builtin_return_address(0));
    if (!l || len == 0 || ((uintptr_t)addr & PAGE_MASK_LOW) || !lethe_in_region(l, addr))
        return sys_madvise(addr, len, advice);
    size_t total = page_round_up(len);
    size_t in = region_prefix(l, addr, total);
    int rc = 0;
    for (size_t done = 0; done < in && rc == 0;) {
        bool foreign;
        char *p = (char *)addr + done;
        size_t span = lethe_extent_foreign_span(l, p, in - done, &foreign);
        rc = foreign ? sys_madvise(p, span, advice) : madvise_region(l, p, span, advice);
        done += span;
    }
    if (rc == 0 && in < total)
        rc = sys_madvise((char *)addr + in, total - in, advice);
    return rc;
}
