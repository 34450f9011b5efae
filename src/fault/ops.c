/* ops.c — the page operations VoliMem gave the reference design, on userfaultfd.
 *
 *  install        UFFDIO_COPY (MODE_WP with dirty tracking: the page starts write-clean)
 *  install_zero   UFFDIO_COPY of a zero page with MODE_WP under dirty tracking (atomic: a
 *                 ZEROPAGE + WRITEPROTECT pair leaves a window where a write goes unseen),
 *                 UFFDIO_ZEROPAGE otherwise
 *  install_zero_run  one UFFDIO_COPY of up to LETHE_ZERO_RUN zero pages (fault-around)
 *  soft_unmap     UFFDIO_MOVE region -> parking slot, issued on uffd B (only the destination
 *                 must be registered with the uffd the ioctl goes to); runs of consecutive
 *                 vpns and frames move in one call
 *  map_back       UFFDIO_MOVE slot -> region on uffd A without waking, write-protect, wake
 *  drop_slot(s)   MADV_DONTNEED on the parking area: B has no events, so it never blocks
 *  scan_dirty     PAGEMAP_SCAN: present and written, re-protect what it reports
 *
 * Copy fallback (no UFFDIO_MOVE): the parking area is plain memory. soft_unmap
 * write-protects the page (synchronous WP, when the kernel has it), copies it into the slot
 * and drops it with MADV_DONTNEED, all under the page's stripe lock; a write that hits the
 * protection waits in fault_resolve_wp() for that lock, and after the drop it faults as
 * missing like any other access. map_back copies the slot in with UFFDIO_COPY and drops the
 * slot. Plain memory does not say whether a slot holds a page (an empty slot reads as
 * zeros), so a bitmap outside the region does: soft_unmap claims the slot's bit first
 * (-EEXIST when it is taken, as UFFDIO_MOVE onto a populated slot), map_back refuses a
 * slot whose bit is clear (-ENOENT, as MOVE from a hole) and clears it once the slot is
 * dropped, drop_slot(s) clear it. One atomic per operation, next to a page copy.
 */
#define _GNU_SOURCE
#include "fault/fault_internal.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/log.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PG LETHE_PAGE_SIZE

static inline bool vpn_range_ok(const struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    return vpn < r->pages && n <= r->pages - vpn;
}

void fault_stripe_lock(struct lethe_region *r, uint64_t vpn)
{
    atomic_uint *s = &r->stripes[vpn % FAULT_STRIPES];
    unsigned spins = 0;
    while (atomic_exchange_explicit(s, 1, memory_order_acquire)) {
        if (++spins > 64)
            sched_yield();
    }
}

void fault_stripe_unlock(struct lethe_region *r, uint64_t vpn)
{
    atomic_store_explicit(&r->stripes[vpn % FAULT_STRIPES], 0, memory_order_release);
}

static bool page_present(const void *addr)
{
    unsigned char vec = 0;
    if (mincore((void *)addr, PG, &vec) != 0)
        return false;
    return vec & 1;
}

int fault_wake_range(struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    /* With UFFD_FEATURE_SIGBUS no thread ever sleeps on the region's faults: nothing to wake. */
    if (r->delivery == LETHE_DELIVERY_SIGNAL)
        return 0;
    struct uffdio_range range = {.start = fault_addr(r, vpn), .len = n * PG};
    return ioctl(r->uffd, UFFDIO_WAKE, &range) == 0 ? 0 : -errno;
}

int lethe_page_wake(struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    if (!vpn_range_ok(r, vpn, n) || n == 0)
        return -EINVAL;
    return fault_wake_range(r, vpn, n);
}

static int write_protect(struct lethe_region *r, uint64_t vpn, uint64_t n, bool wp)
{
    struct uffdio_writeprotect w = {
        .range = {.start = fault_addr(r, vpn), .len = n * PG},
        .mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
    };
    return ioctl(r->uffd, UFFDIO_WRITEPROTECT, &w) == 0 ? 0 : -errno;
}

int fault_resolve_wp(struct lethe_region *r, uint64_t vpn)
{
    fault_stripe_lock(r, vpn);
    int rc = write_protect(r, vpn, 1, false); /* lifts the protection and wakes the writer */
    fault_stripe_unlock(r, vpn);
    return rc;
}

/* Copies n pages from src to vpn (write-clean under dirty tracking unless `plain`). Pages
 * already present are skipped (and woken). */
static int copy_in_mode(struct lethe_region *r, uint64_t vpn, const void *src, uint64_t n,
                        size_t src_stride, bool plain)
{
    uint64_t mode = r->has_dirty && !plain ? UFFDIO_COPY_MODE_WP : 0;
    int result = 0;
    uint64_t done = 0;
    while (done < n) {
        struct uffdio_copy c = {
            .dst = fault_addr(r, vpn + done),
            .src = (uint64_t)(uintptr_t)src + done * src_stride,
            .len = (src_stride ? n - done : 1) * PG,
            .mode = mode,
        };
        if (ioctl(r->uffd, UFFDIO_COPY, &c) == 0) {
            done += c.len / PG;
            continue;
        }
        if (c.copy > 0) { /* partial: carry on after the pages it installed */
            done += (uint64_t)c.copy / PG;
            continue;
        }
        int err = c.copy < 0 ? (int)-c.copy : errno;
        if (err == EEXIST) {
            fault_wake_range(r, vpn + done, 1);
            result = -EEXIST;
            done++;
            continue;
        }
        return -err;
    }
    return result;
}

static int copy_in(struct lethe_region *r, uint64_t vpn, const void *src, uint64_t n,
                   size_t src_stride)
{
    return copy_in_mode(r, vpn, src, n, src_stride, false);
}

int lethe_page_install(struct lethe_region *r, uint64_t vpn, const void *src)
{
    if (!vpn_range_ok(r, vpn, 1))
        return -EINVAL;
    return copy_in(r, vpn, src, 1, PG);
}

int lethe_page_install_unprotected(struct lethe_region *r, uint64_t vpn, const void *src)
{
    if (!vpn_range_ok(r, vpn, 1))
        return -EINVAL;
    return copy_in_mode(r, vpn, src, 1, PG, true);
}

int lethe_page_install_range(struct lethe_region *r, uint64_t vpn, const void *src, uint64_t n)
{
    if (!vpn_range_ok(r, vpn, n) || n == 0)
        return -EINVAL;
    return copy_in(r, vpn, src, n, PG);
}

int lethe_page_install_zero(struct lethe_region *r, uint64_t vpn)
{
    if (!vpn_range_ok(r, vpn, 1))
        return -EINVAL;
    if (r->has_dirty)
        return copy_in(r, vpn, r->zero_page, 1, 0);
    struct uffdio_zeropage z = {.range = {.start = fault_addr(r, vpn), .len = PG}};
    if (ioctl(r->uffd, UFFDIO_ZEROPAGE, &z) == 0)
        return 0;
    int err = z.zeropage < 0 ? (int)-z.zeropage : errno;
    if (err == EEXIST)
        fault_wake_range(r, vpn, 1);
    return -err;
}

int64_t lethe_page_install_zero_run(struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    if (n == 0 || n > LETHE_ZERO_RUN || !vpn_range_ok(r, vpn, n))
        return -EINVAL;
    struct uffdio_copy c = {
        .dst = fault_addr(r, vpn),
        .src = (uint64_t)(uintptr_t)r->zero_page,
        .len = n * PG,
        .mode = r->has_dirty ? UFFDIO_COPY_MODE_WP : 0,
    };
    if (ioctl(r->uffd, UFFDIO_COPY, &c) == 0)
        return (int64_t)n;
    /* A partial copy reports the bytes it installed (and fails with EAGAIN). */
    return c.copy > 0 ? c.copy / (int64_t)PG : 0;
}

/* Moves len bytes from src to dst with UFFDIO_MOVE on uffd; returns bytes moved (> 0) or a
 * negative errno for the first page. */
static int64_t move_pages(int uffd, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode)
{
    struct uffdio_move m = {.dst = dst, .src = src, .len = len, .mode = mode};
    if (ioctl(uffd, UFFDIO_MOVE, &m) == 0)
        return (int64_t)len;
    if (m.move > 0)
        return m.move;
    return m.move < 0 ? m.move : -errno;
}

/* Linux 6.18 can report -EEXIST for a page it did move (seen under concurrent writes to the
 * source page: the move is retried internally and finds its own result at the destination).
 * The source gone and the destination present means the page moved. */
static bool moved_anyway(uint64_t src, uint64_t dst)
{
    return !page_present((void *)(uintptr_t)src) && page_present((void *)(uintptr_t)dst);
}

/* -EFAULT from UFFDIO_MOVE on a hole: the source pte is a write-protect marker (planted by a
 * protect that raced with an application madvise). Clear it; the page is not present. */
static bool clear_marker(struct lethe_region *r, uint64_t vpn)
{
    if (page_present((void *)(uintptr_t)fault_addr(r, vpn)))
        return false;
    write_protect(r, vpn, 1, false);
    return true;
}

/* EBUSY from UFFDIO_MOVE: the page is not exclusive to this process (COW-shared with a
 * forked child, or left shared after the child exited) or pinned. A write fault makes it
 * exclusive without changing its content (reuse, or copy-on-write); pinned pages stay busy. */
static bool make_exclusive(uint64_t addr)
{
    return madvise((void *)(uintptr_t)addr, PG, MADV_POPULATE_WRITE) == 0;
}

/* Copy fallback's slot occupancy (r->slot_used); no-ops where it is not kept. */
static inline uint64_t slot_bit(uint64_t frame)
{
    return (uint64_t)1 << (frame & 63);
}

/* Takes frame's slot; false when it already holds a page. */
static bool slot_claim(struct lethe_region *r, uint64_t frame)
{
    if (!r->slot_used)
        return true;
    uint64_t old =
        atomic_fetch_or_explicit(&r->slot_used[frame >> 6], slot_bit(frame), memory_order_acq_rel);
    return !(old & slot_bit(frame));
}

static bool slot_held(struct lethe_region *r, uint64_t frame)
{
    if (!r->slot_used)
        return true;
    return atomic_load_explicit(&r->slot_used[frame >> 6], memory_order_acquire) & slot_bit(frame);
}

static void slot_free(struct lethe_region *r, uint64_t frame)
{
    if (r->slot_used)
        atomic_fetch_and_explicit(&r->slot_used[frame >> 6], ~slot_bit(frame),
                                  memory_order_release);
}

static int soft_unmap_copy(struct lethe_region *r, uint64_t vpn, uint64_t frame)
{
    void *page = (void *)(uintptr_t)fault_addr(r, vpn);
    void *slot = (void *)(uintptr_t)fault_slot_addr(r, frame);
    if (!slot_claim(r, frame))
        return -EEXIST;
    if (r->sync_wp) {
        fault_stripe_lock(r, vpn);
        write_protect(r, vpn, 1, true);
    }
    int rc = 0;
    if (!page_present(page)) {
        rc = -ENOENT;
    } else {
        memcpy(slot, page, PG);
        if (madvise(page, PG, MADV_DONTNEED) != 0)
            rc = -errno;
    }
    if (r->sync_wp)
        fault_stripe_unlock(r, vpn);
    if (rc < 0)
        slot_free(r, frame);
    return rc;
}

int lethe_page_soft_unmap_batch_status(struct lethe_region *r, const uint64_t *vpns,
                                       const uint64_t *frames, unsigned n, int *status)
{
    int moved = 0;
    unsigned i = 0;
    while (i < n) {
        if (!vpn_range_ok(r, vpns[i], 1) || frames[i] >= r->nframes) {
            if (status)
                status[i] = -EINVAL;
            i++;
            continue;
        }
        if (!r->has_move) {
            int rc = soft_unmap_copy(r, vpns[i], frames[i]);
            if (status)
                status[i] = rc;
            moved += rc == 0;
            i++;
            continue;
        }
        unsigned run = 1;
        while (i + run < n && vpns[i + run] == vpns[i] + run &&
               frames[i + run] == frames[i] + run && vpn_range_ok(r, vpns[i + run], 1) &&
               frames[i + run] < r->nframes)
            run++;
        int64_t got =
            move_pages(r->park_uffd, fault_slot_addr(r, frames[i]), fault_addr(r, vpns[i]),
                       (uint64_t)run * PG, UFFDIO_MOVE_MODE_DONTWAKE);
        uint64_t src = fault_addr(r, vpns[i]), dst = fault_slot_addr(r, frames[i]);
        if (got == -EBUSY && make_exclusive(src))
            got = move_pages(r->park_uffd, dst, src, PG, UFFDIO_MOVE_MODE_DONTWAKE);
        if (got == -EEXIST && moved_anyway(src, dst))
            got = PG;
        if (got == -EFAULT && clear_marker(r, vpns[i]))
            got = -ENOENT;
        if (got > 0) {
            unsigned pages = (unsigned)((uint64_t)got / PG);
            if (status)
                for (unsigned k = 0; k < pages; k++)
                    status[i + k] = 0;
            moved += (int)pages;
            i += pages;
            continue;
        }
        if (status)
            status[i] = (int)got;
        i++;
    }
    return moved;
}

int lethe_page_soft_unmap_batch(struct lethe_region *r, const uint64_t *vpns,
                                const uint64_t *frames, unsigned n)
{
    int status_buf[64];
    int first_err = 0;
    for (unsigned off = 0; off < n; off += 64) {
        unsigned k = n - off < 64 ? n - off : 64;
        lethe_page_soft_unmap_batch_status(r, vpns + off, frames + off, k, status_buf);
        for (unsigned j = 0; j < k && !first_err; j++)
            first_err = status_buf[j];
    }
    return first_err;
}

int lethe_page_soft_unmap(struct lethe_region *r, uint64_t vpn, uint64_t frame)
{
    int status = 0;
    lethe_page_soft_unmap_batch_status(r, &vpn, &frame, 1, &status);
    return status;
}

/* UFFDIO_MOVE moves only between VMAs of the same protection, both writable and both
 * unlocked: where the application made region pages read-only (mprotect) or locked them
 * (mlock), the page is copied in from its slot instead (UFFDIO_COPY, which wakes) and the
 * slot is emptied. */
static int copy_back(struct lethe_region *r, uint64_t vpn, uint64_t frame)
{
    void *slot = (void *)(uintptr_t)fault_slot_addr(r, frame);
    int rc = copy_in(r, vpn, slot, 1, PG);
    if (rc == 0) {
        madvise(slot, PG, MADV_DONTNEED);
        slot_free(r, frame);
    }
    return rc;
}

static int map_back_move(struct lethe_region *r, uint64_t vpn, uint64_t frame, bool protect)
{
    uint64_t dst = fault_addr(r, vpn), src = fault_slot_addr(r, frame);
    protect = protect && r->has_dirty;
    uint64_t mode = protect ? UFFDIO_MOVE_MODE_DONTWAKE : 0;
    int64_t got = move_pages(r->uffd, dst, src, PG, mode);
    if (got == -EBUSY && make_exclusive(src))
        got = move_pages(r->uffd, dst, src, PG, mode);
    if (got == -EEXIST && !page_present((void *)(uintptr_t)dst)) {
        /* a write-protect marker on the hole, not a page: lift it and move again */
        write_protect(r, vpn, 1, false);
        got = move_pages(r->uffd, dst, src, PG, mode);
    }
    /* The kernel wakes the waiters only when the move reports success without DONTWAKE; a
     * page that moved although the call said -EEXIST is woken here like the others. */
    bool woken = got >= 0 && !protect;
    if (got == -EEXIST && moved_anyway(src, dst))
        got = PG;
    if (got == -EEXIST)
        fault_wake_range(r, vpn, 1);
    if (got == -EINVAL)
        return copy_back(r, vpn, frame);
    if (got < 0)
        return (int)got;
    if (protect) {
        /* The moved page arrives writable and unprotected: protect it before the waiters run. */
        int rc = write_protect(r, vpn, 1, true);
        if (rc < 0 && rc != -EAGAIN)
            lethe_warn("map_back: cannot write-protect page %llu (%s): it will scan as written",
                       (unsigned long long)vpn, strerror(-rc));
    }
    if (!woken)
        fault_wake_range(r, vpn, 1);
    return 0;
}

int lethe_page_map_back(struct lethe_region *r, uint64_t vpn, uint64_t frame)
{
    if (!vpn_range_ok(r, vpn, 1) || frame >= r->nframes)
        return -EINVAL;
    if (r->has_move && !atomic_load_explicit(&r->child, memory_order_relaxed))
        return map_back_move(r, vpn, frame, true);
    void *slot = (void *)(uintptr_t)fault_slot_addr(r, frame);
    if (!slot_held(r, frame))
        return -ENOENT;
    int rc = copy_in(r, vpn, slot, 1, PG);
    if (rc == 0) {
        madvise(slot, PG, MADV_DONTNEED);
        slot_free(r, frame);
    }
    return rc;
}

int lethe_page_map_back_unprotected(struct lethe_region *r, uint64_t vpn, uint64_t frame)
{
    if (!vpn_range_ok(r, vpn, 1) || frame >= r->nframes)
        return -EINVAL;
    if (r->has_move && !atomic_load_explicit(&r->child, memory_order_relaxed))
        return map_back_move(r, vpn, frame, false);
    return lethe_page_map_back(r, vpn, frame);
}

int lethe_page_install_recycled(struct lethe_region *r, uint64_t vpn, uint64_t frame,
                                const void *src)
{
    if (!vpn_range_ok(r, vpn, 1) || frame >= r->nframes || !r->has_move)
        return -EINVAL;
    void *slot = (void *)(uintptr_t)fault_slot_addr(r, frame);
    if (!src)
        memset(slot, 0, PG);
    else if (src != slot)
        memcpy(slot, src, PG);
    int rc;
    if (!atomic_load_explicit(&r->child, memory_order_relaxed)) {
        rc = map_back_move(r, vpn, frame, false);
    } else {
        /* the slot's page may be COW-shared with a forked child: copy it (write-clean) */
        rc = copy_in(r, vpn, slot, 1, PG);
        if (rc == 0) {
            madvise(slot, PG, MADV_DONTNEED);
            slot_free(r, frame);
        }
    }
    if (rc == -EEXIST) {
        madvise(slot, PG, MADV_DONTNEED);
        slot_free(r, frame);
    }
    return rc;
}

/* --- batch parking ---
 *
 * A capture takes up to FAULT_CAPTURE_CHUNK pages at a time through one pipe:
 *  1. vmsplice the pages into the pipe: it takes a reference on each page (no copy), so the
 *     pipe holds the very pages the program writes;
 *  2. process_madvise(MADV_DONTNEED) of all of them: one call, one TLB flush for the chunk
 *     (a UFFDIO_MOVE flushes once per page, and with another thread of the process running
 *     on the other CPU each flush is an interrupt there);
 *  3. read the pipe into the slots.
 * A write before step 2 lands in the page the pipe holds, so step 3 copies it; a write after
 * step 2 faults on the missing page and waits until the caller publishes the page. Nothing
 * written can be lost between the capture and the unmap, provided the write lands in the page
 * captured: a page shared copy-on-write is made exclusive first (step 0). */

static int take_pipe(struct lethe_region *r)
{
    for (unsigned spins = 0;; spins++) {
        for (unsigned i = 0; i < r->ncap_pipes; i++)
            if (!atomic_load_explicit(&r->cap_busy[i], memory_order_relaxed) &&
                !atomic_exchange_explicit(&r->cap_busy[i], 1, memory_order_acquire))
                return (int)i;
        if (spins > 16)
            sched_yield();
    }
}

static void give_pipe(struct lethe_region *r, int i)
{
    atomic_store_explicit(&r->cap_busy[i], 0, memory_order_release);
}

/* A page vmsplice could not take: gone (nothing mapped: its content is lost) or refused
 * (PROT_NONE; a read fault that signal delivery answers with EFAULT is "gone"). */
static int refused_status(struct lethe_region *r, uint64_t vpn)
{
    return page_present((void *)(uintptr_t)fault_addr(r, vpn)) ? -EINVAL : -ENOENT;
}

/* One chunk (n <= FAULT_CAPTURE_CHUNK). Returns the pages parked. */
static int capture_chunk(struct lethe_region *r, const int fd[2], const uint64_t *vpns,
                         void *const *bufs, unsigned n, int *status,
                         void (*before_unmap)(void *, const uint64_t *, unsigned), void *arg)
{
    struct iovec src[FAULT_CAPTURE_CHUNK], dst[FAULT_CAPTURE_CHUNK];
    unsigned idx[FAULT_CAPTURE_CHUNK];
    unsigned m = 0; /* pages in the pipe, in order: idx[0..m) */

    /* 0: a page shared copy-on-write (with a forked child, or the zero page that
     * UFFDIO_ZEROPAGE maps without dirty tracking) would be replaced by the kernel at the
     * next write, and that write would land in a page the pipe does not hold: make each page
     * exclusive first (a write fault that changes nothing). Read-only ranges refuse it; the
     * program cannot write there anyway. */
    if (atomic_load_explicit(&r->shared, memory_order_relaxed) || !r->has_dirty)
        for (unsigned i = 0; i < n; i++)
            if (status[i] == 0)
                make_exclusive(fault_addr(r, vpns[i]));

    /* 1: capture */
    for (unsigned i = 0; i < n;) {
        unsigned k = 0;
        while (i + k < n && status[i + k] == 0) {
            src[k].iov_base = (void *)(uintptr_t)fault_addr(r, vpns[i + k]);
            src[k].iov_len = PG;
            k++;
        }
        if (k == 0) {
            i++;
            continue;
        }
        ssize_t got = vmsplice(fd[1], src, k, 0);
        if (got < 0 && errno == EINTR)
            continue;
        unsigned took = got > 0 ? (unsigned)((size_t)got / PG) : 0;
        if (got > 0 && (size_t)got % PG) {
            /* part of a page: cannot happen with a pipe sized for the chunk; drop the
             * partial page from the pipe and leave that page mapped */
            char trash[PG];
            ssize_t rest = read(fd[0], trash, (size_t)got % PG);
            (void)rest;
            status[i + took] = -EIO;
        }
        for (unsigned j = 0; j < took; j++)
            idx[m++] = i + j;
        i += took;
        if (got <= 0 && i < n) {
            status[i] = errno == EFAULT ? refused_status(r, vpns[i]) : -errno;
            i++;
        } else if (got > 0 && (size_t)got % PG) {
            i++;
        }
    }
    if (before_unmap)
        before_unmap(arg, vpns, n);
    if (m == 0)
        return 0;

    /* 2: unmap them all at once */
    for (unsigned j = 0; j < m; j++) {
        src[j].iov_base = (void *)(uintptr_t)fault_addr(r, vpns[idx[j]]);
        src[j].iov_len = PG;
        dst[j].iov_base = bufs[idx[j]];
        dst[j].iov_len = PG;
    }
    for (unsigned j = 0; j < m;) {
        ssize_t got = syscall(SYS_process_madvise, r->pidfd, src + j, (size_t)(m - j),
                              MADV_DONTNEED, 0);
        if (got < 0 && errno == EINTR)
            continue;
        unsigned done = got > 0 ? (unsigned)((size_t)got / PG) : 0;
        j += done;
        if (j < m && got <= 0) {
            /* the page at j could not be dropped (mlock): it stays mapped */
            status[idx[j]] = errno == EINVAL ? -EINVAL : -errno;
            j++;
        }
    }

    /* 3: the pipe into the slots (all of it, also the pages that stay mapped) */
    for (unsigned j = 0; j < m;) {
        ssize_t got = readv(fd[0], dst + j, (int)(m - j));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            /* cannot happen: the pipe holds what vmsplice put there */
            lethe_error("capture: reading the pipe failed (%s): %u pages lost",
                        got < 0 ? strerror(errno) : "end of file", m - j);
            abort();
        }
        size_t left = (size_t)got;
        while (left >= PG) {
            left -= PG;
            j++;
        }
        if (left) { /* a short read inside a page: finish that page */
            char *at = (char *)dst[j].iov_base + left;
            size_t want = PG - left;
            while (want) {
                ssize_t more = read(fd[0], at, want);
                if (more < 0 && errno == EINTR)
                    continue;
                if (more <= 0) {
                    lethe_error("capture: reading the pipe failed mid-page");
                    abort();
                }
                at += more;
                want -= (size_t)more;
            }
            j++;
        }
    }
    int parked = 0;
    for (unsigned j = 0; j < m; j++)
        parked += status[idx[j]] == 0;
    return parked;
}

int lethe_page_capture_batch(struct lethe_region *r, const uint64_t *vpns, void *const *bufs,
                             unsigned n, int *status,
                             void (*before_unmap)(void *arg, const uint64_t *vpns, unsigned n),
                             void *arg)
{
    for (unsigned i = 0; i < n; i++)
        status[i] = vpn_range_ok(r, vpns[i], 1) ? 0 : -EINVAL;
    if (!r->batch || atomic_load_explicit(&r->child, memory_order_relaxed)) {
        for (unsigned i = 0; i < n; i++)
            status[i] = -EOPNOTSUPP;
        return 0;
    }
    int p = take_pipe(r);
    int parked = 0;
    for (unsigned off = 0; off < n; off += FAULT_CAPTURE_CHUNK) {
        unsigned k = n - off < FAULT_CAPTURE_CHUNK ? n - off : FAULT_CAPTURE_CHUNK;
        parked += capture_chunk(r, r->cap_pipe[p], vpns + off, bufs + off, k, status + off,
                                before_unmap, arg);
    }
    give_pipe(r, p);
    return parked;
}

int lethe_page_drop_slots(struct lethe_region *r, const uint64_t *frames, unsigned n)
{
    unsigned i = 0;
    while (i < n) {
        if (frames[i] >= r->nframes)
            return -EINVAL;
        unsigned run = 1;
        while (i + run < n && frames[i + run] == frames[i] + run && frames[i + run] < r->nframes)
            run++;
        if (madvise((void *)(uintptr_t)fault_slot_addr(r, frames[i]), (size_t)run * PG,
                    MADV_DONTNEED) != 0)
            return -errno;
        for (unsigned k = 0; k < run; k++)
            slot_free(r, frames[i + k]);
        i += run;
    }
    return 0;
}

int lethe_page_drop_slot(struct lethe_region *r, uint64_t frame)
{
    return lethe_page_drop_slots(r, &frame, 1);
}

static int drop_with_madvise(struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    if (madvise((void *)(uintptr_t)fault_addr(r, vpn), n * PG, MADV_DONTNEED) != 0)
        return -errno;
    return 0;
}

/* Moves [vpn, vpn+n) (holes allowed) into the scratch pages after the slots and drops them
 * there: the region's uffd sees no madvise, so no release event comes back and the caller
 * never waits for an event reader. Pages UFFDIO_MOVE cannot take (pinned; a write-protect
 * marker on a hole) are dropped with MADV_DONTNEED, which does raise the event. */
static int drop_by_move(struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    uint64_t scratch = fault_slot_addr(r, r->nframes);
    int rc = 0;
    pthread_mutex_lock(&r->scratch_lock);
    uint64_t done = 0;
    while (done < n && rc == 0) {
        uint64_t k = n - done < FAULT_SCRATCH_PAGES ? n - done : FAULT_SCRATCH_PAGES;
        uint64_t moved = 0;
        while (moved < k) {
            uint64_t src = fault_addr(r, vpn + done + moved);
            int64_t got = move_pages(r->park_uffd, scratch + moved * PG, src, (k - moved) * PG,
                                     UFFDIO_MOVE_MODE_DONTWAKE | UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES);
            if (got > 0) {
                moved += (uint64_t)got / PG;
                continue;
            }
            uint64_t dst = scratch + moved * PG;
            if (got == -EBUSY && make_exclusive(src))
                got = move_pages(r->park_uffd, dst, src, PG, UFFDIO_MOVE_MODE_DONTWAKE);
            if ((got == -EEXIST && moved_anyway(src, dst)) ||
                (got == -EFAULT && clear_marker(r, vpn + done + moved)))
                got = PG;
            if (got <= 0 && (rc = drop_with_madvise(r, vpn + done + moved, 1)) < 0)
                break;
            moved++;
        }
        if (madvise((void *)(uintptr_t)scratch, k * PG, MADV_DONTNEED) != 0 && rc == 0)
            rc = -errno;
        done += k;
    }
    pthread_mutex_unlock(&r->scratch_lock);
    return rc;
}

int lethe_page_reset_access(struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    if (!vpn_range_ok(r, vpn, n) || n == 0)
        return -EINVAL;
    void *addr = (void *)(uintptr_t)fault_addr(r, vpn);
    if (syscall(SYS_mprotect, addr, n * PG, PROT_READ | PROT_WRITE) != 0 ||
        syscall(SYS_munlock, addr, n * PG) != 0)
        return -errno;
    return 0;
}

int lethe_page_drop(struct lethe_region *r, uint64_t vpn, uint64_t n)
{
    if (!vpn_range_ok(r, vpn, n) || n == 0)
        return -EINVAL;
    if (r->has_move && r->app_events && !atomic_load_explicit(&r->child, memory_order_relaxed))
        return drop_by_move(r, vpn, n);
    return drop_with_madvise(r, vpn, n);
}

static inline void set_bits(uint64_t *bm, uint64_t from, uint64_t to)
{
    for (uint64_t i = from; i < to; i++)
        bm[i >> 6] |= (uint64_t)1 << (i & 63);
}

/* No dirty tracking: every present page counts as written. */
static int64_t scan_present(struct lethe_region *r, uint64_t vpn, uint64_t n, uint64_t *written)
{
    unsigned char vec[4096];
    int64_t count = 0;
    for (uint64_t off = 0; off < n; off += sizeof(vec)) {
        uint64_t k = n - off < sizeof(vec) ? n - off : sizeof(vec);
        if (mincore((void *)(uintptr_t)fault_addr(r, vpn + off), k * PG, vec) != 0)
            return -errno;
        for (uint64_t i = 0; i < k; i++) {
            if (vec[i] & 1) {
                written[(off + i) >> 6] |= (uint64_t)1 << ((off + i) & 63);
                count++;
            }
        }
    }
    return count;
}

int64_t lethe_page_scan_dirty(struct lethe_region *r, uint64_t vpn, uint64_t n, uint64_t *written)
{
    if (!vpn_range_ok(r, vpn, n))
        return -EINVAL;
    memset(written, 0, ((n + 63) / 64) * sizeof(uint64_t));
    if (n == 0)
        return 0;
    if (!r->has_dirty)
        return scan_present(r, vpn, n, written);
    /* Requiring PRESENT keeps the scan off holes: it neither reports them nor plants
     * write-protect markers in them (a marker would make UFFDIO_MOVE into the hole fail). */
    struct page_region vec[128];
    uint64_t start = fault_addr(r, vpn), end = fault_addr(r, vpn + n);
    int64_t count = 0;
    while (start < end) {
        struct pm_scan_arg arg = {
            .size = sizeof(arg),
            .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            .start = start,
            .end = end,
            .vec = (uint64_t)(uintptr_t)vec,
            .vec_len = sizeof(vec) / sizeof(vec[0]),
            .category_mask = PAGE_IS_WRITTEN | PAGE_IS_PRESENT,
            .return_mask = PAGE_IS_WRITTEN,
        };
        int got = ioctl(r->pagemap_fd, PAGEMAP_SCAN, &arg);
        if (got < 0)
            return -errno;
        for (int i = 0; i < got; i++) {
            uint64_t from = fault_vpn(r, vec[i].start) - vpn;
            uint64_t to = fault_vpn(r, vec[i].end) - vpn;
            set_bits(written, from, to);
            count += (int64_t)(to - from);
        }
        if (arg.walk_end <= start)
            break;
        start = arg.walk_end;
    }
    return count;
}
