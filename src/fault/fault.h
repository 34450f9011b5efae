/* fault.h — Lethe's guest runtime on userfaultfd: the stand-in for VoliMem.
 *
 * The runtime owns one managed region (a reserved virtual range, MADV_NOHUGEPAGE, registered
 * with one userfaultfd for MISSING faults and, where the kernel has UFFD_FEATURE_WP_ASYNC,
 * for asynchronous write-protect dirty tracking) and a parking area of `nframes` page slots,
 * registered with a second userfaultfd (MISSING only, no events: UFFDIO_MOVE needs only its
 * destination registered with the uffd it is issued on, and dropping a slot then raises no
 * event) and never handed to the application. It delivers every fault on the region to one
 * callback of the swapper core, on a vCPU context, and offers the page operations VoliMem
 * gave the reference design. It never decides policy:
 * which page to evict, demote or fetch is the core's business. The core never issues a
 * userfaultfd ioctl itself.
 *
 * Pages are named by their vpn: the page index within the region (0 .. region pages - 1).
 * Parking slots are named by frame number (0 .. nframes - 1): frame f's slot is where the
 * content of the page holding frame f lives while that page is soft-unmapped.
 *
 * Delivery (fault_delivery):
 *  - thread: vCPU i is a handler thread that reads the userfaultfd (when pin_vcpus, pinned to
 *    the (i mod n)-th of the n CPUs the creating thread may use). Kernel-mode accesses
 *    (read() into the region, futex, O_DIRECT) are served like user accesses.
 *  - signal: UFFD_FEATURE_SIGBUS; the faulting thread runs the callback in its SIGBUS handler
 *    on an alternate stack, on a vCPU context taken from the pool (vCPU = thread slot; a
 *    context is used by one thread at a time). Kernel-mode accesses to a missing page fail
 *    with EFAULT (see docs/RUNTIME.md for what liblethe.so does about it). One event thread
 *    still reads the userfaultfd for application events.
 *
 * Callbacks run on a vCPU (thread or signal handler) and must never touch region memory nor
 * allocate from the managed heap. They may block briefly (a lock, transport I/O).
 *
 * Operations return 0 or a negative errno. Every operation that makes a page present wakes
 * the threads waiting on it. -EAGAIN means the application is changing its mappings
 * (madvise/munmap/mremap in flight): nothing was done; the caller undoes its own state change
 * and lets the fault be retried. -EEXIST from an install means the page is already present.
 *
 * Kernel features are probed at start-up; missing ones have slower fallbacks, named by
 * lethe_region_paths():
 *  - no UFFDIO_MOVE (Linux < 6.8): soft-unmap copies the page into its slot and drops it
 *    (write-protected meanwhile); map-back copies it in with UFFDIO_COPY. That needs
 *    synchronous write-protect, so dirty tracking is off too; the runtime then does not
 *    subscribe to madvise/munmap events (liblethe.so's wrappers report them).
 *  - no WP_ASYNC / PAGEMAP_SCAN (Linux < 6.7): no dirty tracking; every page scans as
 *    written (so every evicted page is written back: correct, slower).
 */
#ifndef LETHE_FAULT_H
#define LETHE_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/config.h"

struct lethe_region;

/* One per vCPU, allocated by the runtime outside the region, on its own cache lines. */
struct lethe_vcpu {
    unsigned id;            /* 0 .. vcpus-1 */
    void *staging;          /* staging_pages pages of plain, populated memory outside the
                               region: transfer buffers for swap-in and write-back */
    unsigned staging_pages;
    void *core;             /* the core's per-vCPU state (channel, counters), set by vcpu_init */
} __attribute__((aligned(64)));

enum lethe_access {
    LETHE_ACCESS_READ = 0,
    LETHE_ACCESS_WRITE = 1,
};

/* What the core must know about the application's mappings. */
struct lethe_fault_ops {
    /* On each vCPU before it serves a fault (in signal mode: on the thread that creates the
     * pool, once per context). Sets v->core. */
    int (*vcpu_init)(void *core, struct lethe_vcpu *v);
    void (*vcpu_fini)(void *core, struct lethe_vcpu *v);
    /* A fault on page vpn. Return 0 when the page is present, or will be made present and
     * woken by whoever is bringing it in; -EAGAIN to have the access retried; another
     * negative errno when the page cannot be served: the runtime then reports it and the
     * process dies (the core has already logged which page, which node and why).
     * A fault on a page the core holds mapped is either stale (installed since the fault was
     * raised: an install answers -EEXIST, then wake) or the page is really missing: release()
     * runs when the madvise event is read, which may be before the kernel's zap, so a page
     * installed in between is zapped afterwards. Serve that as the released page it is
     * (install_zero); answering "present" would make the access fault forever. */
    int (*fault)(void *core, struct lethe_vcpu *v, uint64_t vpn, enum lethe_access access);
    /* Pages [vpn, vpn+n) were given back by the application (madvise DONTNEED/FREE/REMOVE,
     * munmap): their content is gone; the next touch is demand-zero. Called from the thread
     * that read the event, as soon as it is read; reading it lets the kernel go on, so the
     * zap of the range runs concurrently with (or after) this call: an install into the
     * range racing with it may be zapped again. No fault raised after the event was read
     * is served before this returns. With MADV_FREE the kernel may leave pages present for
     * a while (liblethe.so's madvise wrapper turns MADV_FREE on region memory into a purge).
     * Also called for a range mremap'd out of the region (and for pinned pages that
     * lethe_page_drop() had to madvise). */
    void (*release)(void *core, uint64_t vpn, uint64_t n);
    /* mremap moved [from, from+n) to [to, to+n) within the region. */
    void (*remap)(void *core, uint64_t from, uint64_t to, uint64_t n);
    /* In a forked child, before fork() returns there: the process has one thread, the
     * core's locks may be held by threads that no longer exist. After this, faults in the
     * child go to child_fault (signal delivery, no locks). */
    void (*forked_child)(void *core);
    int (*child_fault)(void *core, struct lethe_vcpu *v, uint64_t vpn, enum lethe_access access);
};

struct lethe_region_params {
    uint64_t region_size;            /* bytes, multiple of the page size */
    uint64_t nframes;                /* parking slots */
    unsigned vcpus;                  /* >= 1 */
    bool pin_vcpus;
    enum lethe_delivery delivery;
    unsigned staging_pages;          /* per vCPU, >= 1 */
    bool force_fallback_move;        /* tests: behave as if UFFDIO_MOVE were missing */
    bool force_fallback_dirty;       /* tests: behave as if WP_ASYNC/PAGEMAP_SCAN were missing */
    bool batch_parking;              /* lethe_page_capture_batch, where the kernel has it */
};

/* Creates the region and the parking area, probes the kernel, starts delivery. Faults are
 * served from the moment this returns. *out is written before the vCPUs start (so a core
 * that keeps it in its own struct sees it from the callbacks), and reset to NULL on error. */
int lethe_region_create(const struct lethe_region_params *p, const struct lethe_fault_ops *ops,
                        void *core, struct lethe_region **out);
/* Stops delivery, joins the vCPUs, unmaps region and parking. Region memory must no longer
 * be touched. */
void lethe_region_destroy(struct lethe_region *r);

void *lethe_region_base(const struct lethe_region *r);
/* The two big mappings: the region, and the parking area (slots and scratch pages). */
void lethe_region_ranges(const struct lethe_region *r, uint64_t *base, uint64_t *size,
                         uint64_t *park, uint64_t *park_size);
uint64_t lethe_region_pages(const struct lethe_region *r);
unsigned lethe_region_vcpus(const struct lethe_region *r);
struct lethe_vcpu *lethe_region_vcpu(struct lethe_region *r, unsigned id);
/* vpn of an address in the region, or UINT64_MAX when outside. */
uint64_t lethe_region_vpn(const struct lethe_region *r, const void *addr);
void *lethe_region_addr(const struct lethe_region *r, uint64_t vpn);
/* Pointer to frame f's parking slot; valid to read or write only while the slot holds a
 * page (between soft_unmap and map_back/drop_slot). */
void *lethe_region_slot(const struct lethe_region *r, uint64_t frame);
/* Which paths are active, e.g. "delivery=thread move=UFFDIO_MOVE dirty=PAGEMAP_SCAN". */
const char *lethe_region_paths(const struct lethe_region *r);
bool lethe_region_has_move(const struct lethe_region *r);
bool lethe_region_has_dirty_tracking(const struct lethe_region *r);
/* Batch parking is on: pages leave the region by lethe_page_capture_batch (one TLB flush a
 * batch) and come back by copy; the parking slots are plain memory, any of which may hold
 * any page (the core hands them out), and the region is not subscribed to the application's
 * madvise/munmap events (liblethe.so's wrappers handle those calls). */
bool lethe_region_batch_parking(const struct lethe_region *r);
/* The process is about to fork (called before it, with no capture in flight): from now on a
 * capture first makes each page exclusive to this process, since a write to a page still
 * shared copy-on-write with a child would land in a new page, not in the one captured. */
void lethe_region_note_fork(struct lethe_region *r);

/* --- page operations (callable from any thread; batched forms take arrays) --- */

/* Copies one page from src (outside the region) to vpn, write-clean: a later dirty scan
 * reports it only if written after this. */
int lethe_page_install(struct lethe_region *r, uint64_t vpn, const void *src);
/* n pages, contiguous from vpn, from n contiguous pages at src. Pages already present are
 * skipped (and woken) and the call returns -EEXIST after installing the others; -EAGAIN may
 * come after a prefix of the range was installed. */
int lethe_page_install_range(struct lethe_region *r, uint64_t vpn, const void *src, uint64_t n);
/* Copies one page from src to vpn without write protection (a dirty scan says "written"):
 * for pages whose eviction judges them by content. Wakes the waiters. */
int lethe_page_install_unprotected(struct lethe_region *r, uint64_t vpn, const void *src);
/* Batch parking: takes n mapped pages out of the region with one TLB flush for the batch and
 * leaves each page's content at bufs[i] (a parking slot, lethe_region_slot). Each page is
 * first captured (vmsplice into a pipe: the pipe holds the page itself, not a copy), then
 * all are unmapped with one process_madvise(MADV_DONTNEED), then the pipe is read into the
 * slots. A write that lands before the unmap lands in the captured page and reaches the slot;
 * one after it faults on the missing page. status[i]: 0 parked; -ENOENT nothing was mapped
 * (signal delivery only: the content is gone); -EINVAL the page cannot leave (PROT_NONE,
 * mlock: it stays mapped, bufs[i] unspecified); other errors leave it mapped too. Returns how
 * many were parked. Pages must be claimed by the caller; not in a forked child. */
int lethe_page_capture_batch(struct lethe_region *r, const uint64_t *vpns, void *const *bufs,
                             unsigned n, int *status,
                             void (*before_unmap)(void *arg, const uint64_t *vpns, unsigned n),
                             void *arg);
/* before_unmap (may be NULL) runs after each chunk's pages are captured and before they are
 * unmapped, with that chunk's vpns: the caller's moment to stop answering faults that the
 * capture itself raised. */
/* Demand-zero: vpn reads as zeros, write-clean. */
int lethe_page_install_zero(struct lethe_region *r, uint64_t vpn);
/* The longest run lethe_page_install_zero_run takes. */
#define LETHE_ZERO_RUN 64
/* Demand-zero for n (1..LETHE_ZERO_RUN) pages from vpn in one call, write-clean; stops at the
 * first page it cannot install (present already, or any other error). Returns how many pages
 * from vpn on it installed (0..n), or a negative errno for a bad range. */
int64_t lethe_page_install_zero_run(struct lethe_region *r, uint64_t vpn, uint64_t n);
/* Soft-unmap: moves the page at vpn into frame's parking slot. The next touch of vpn faults.
 * The page's dirty state is lost by the move: scan it first. Errors: -ENOENT the page is not
 * present (given back by the application meanwhile); -EEXIST the slot still holds a page;
 * -EBUSY the page is pinned (RDMA-registered, io_uring buffer; pages merely shared with a
 * forked child are made exclusive and moved); -EINVAL the application made the page
 * read-only or locked it (mprotect, mlock: UFFDIO_MOVE moves only between writable, unlocked
 * ranges), and it stays where it is. The batch form coalesces runs of consecutive
 * vpns with consecutive frames into one UFFDIO_MOVE (the cheap case: allocate frames in
 * runs); it tries every page and returns the first error (see ..._batch_status below for
 * the outcome of each page). Copy fallback: the page must stay present during the call
 * (liblethe.so's madvise wrapper calls release() before dropping region pages). */
int lethe_page_soft_unmap(struct lethe_region *r, uint64_t vpn, uint64_t frame);
int lethe_page_soft_unmap_batch(struct lethe_region *r, const uint64_t *vpns,
                                const uint64_t *frames, unsigned n);
/* Maps a soft-unmapped page back from its slot, write-clean, and wakes its waiters.
 * -EEXIST: vpn is already present (woken; the slot still holds its page); -ENOENT: the slot
 * is empty; -EAGAIN: nothing done. With UFFDIO_MOVE this is MOVE (no wake), write-protect,
 * wake: a write by a thread that did not fault, landing between the move and the protect,
 * is not seen by the next scan (see docs/RUNTIME.md). Into a range the application made
 * read-only or locked (mprotect, mlock), which UFFDIO_MOVE refuses, the slot is copied in
 * instead (UFFDIO_COPY, write-clean, which wakes) and then emptied; so for the other forms
 * below. */
int lethe_page_map_back(struct lethe_region *r, uint64_t vpn, uint64_t frame);
/* The same without the write-protect (one UFFDIO_MOVE, which wakes): the page arrives writable
 * and unprotected, like a recycled install, and must be judged by content. */
int lethe_page_map_back_unprotected(struct lethe_region *r, uint64_t vpn, uint64_t frame);
/* Installs src (NULL: zeros) at vpn in the page that frame's parking slot still holds from an
 * eviction: the content is copied into that page (src may be that page itself:
 * lethe_region_slot, then nothing is copied), which is then moved in (one UFFDIO_MOVE,
 * which wakes the waiters). So an eviction need not free the page and an install need not
 * allocate one. The page arrives writable and NOT write-protected: dirty scans report it
 * written until a scan re-arms it, so the caller must judge it by content (the core's UNPROT
 * flag). With a forked child alive it is a write-clean copy instead. The caller knows the
 * slot holds a page. 0: installed, the slot is empty; -EEXIST: vpn was already present
 * (woken), the slot's page was dropped, the slot is empty; -EINVAL without UFFDIO_MOVE; other
 * errors: nothing installed, the slot still holds its page. */
int lethe_page_install_recycled(struct lethe_region *r, uint64_t vpn, uint64_t frame,
                                const void *src);
/* Frees the page held in a parking slot (after eviction). */
int lethe_page_drop_slot(struct lethe_region *r, uint64_t frame);
int lethe_page_drop_slots(struct lethe_region *r, const uint64_t *frames, unsigned n);
/* Makes [vpn, vpn+n) of the region read-write and unlocked again (mprotect, munlock), as
 * fresh memory is: for ranges given back after the application changed them. */
int lethe_page_reset_access(struct lethe_region *r, uint64_t vpn, uint64_t n);
/* Foreign ranges: the program maps a file, shared memory or anything but private anonymous
 * memory over region pages it owns (mmap with MAP_FIXED, as a JVM maps its class-data
 * archive into its reserved heap). The kernel then holds that range, unregistered: no fault
 * of it reaches Lethe. lethe_page_map_foreign makes the mapping (the caller has discarded
 * the pages' state) and records the range; -ENOSPC when FAULT_MAX_FOREIGN ranges are
 * recorded (nothing mapped then), else 0 or the kernel's negative errno. */
int lethe_page_map_foreign(struct lethe_region *r, uint64_t vpn, uint64_t n, int prot, int flags,
                           int fd, off_t off);
/* Gives the foreign parts of [vpn, vpn+n) back to the region: fresh private anonymous
 * memory, registered again (their next touch faults to Lethe and reads zeros). 0 when the
 * range holds none; else 0 or a negative errno (logged). */
int lethe_page_unforeign(struct lethe_region *r, uint64_t vpn, uint64_t n);
/* The number of pages from vpn (at most n) that are all foreign (*foreign true) or all
 * region pages (*foreign false). */
uint64_t lethe_page_foreign_span(struct lethe_region *r, uint64_t vpn, uint64_t n, bool *foreign);
/* Drops the present pages of [vpn, vpn+n) of the region; the next touch faults. The core
 * releases its own state for the range before calling this. With UFFDIO_MOVE the pages are
 * moved to scratch parking pages and dropped there, so no application event is raised, no
 * release() follows, and the call never waits for an event reader (callable from a vCPU).
 * Only pages UFFDIO_MOVE refuses (pinned) are dropped with MADV_DONTNEED, which raises a
 * release() for them and waits until the event is read. Without UFFDIO_MOVE it is
 * MADV_DONTNEED, and the region is not subscribed to those events. */
int lethe_page_drop(struct lethe_region *r, uint64_t vpn, uint64_t n);
/* Dirty bits: for each page of [vpn, vpn+n) present and written since it was installed or
 * last scanned, sets bit i of `written` (bitmap of n bits, caller-sized) and write-protects
 * it again. Without dirty tracking every present page reports written. Returns the number
 * of written pages or a negative errno. */
int64_t lethe_page_scan_dirty(struct lethe_region *r, uint64_t vpn, uint64_t n,
                              uint64_t *written);
/* Wakes threads waiting on a fault at vpn (for pages made present by another route). */
int lethe_page_wake(struct lethe_region *r, uint64_t vpn, uint64_t n);

/* --- additions by the guest runtime (additive; see docs/RUNTIME.md) --- */

/* Gives the calling thread an alternate signal stack (64 KiB plus a guard page, freed at
 * thread exit) so the SIGBUS handler of signal delivery never runs on a stack that could be
 * in the region; keeps one of at least that size the thread already has (a smaller one,
 * e.g. ASan's, is replaced). lethe_region_create() calls it for the creating thread;
 * liblethe.so calls it in every thread its pthread_create wrapper starts.
 * A thread without one still works: the handler then runs on the thread's own stack, which
 * is never in the region unless the program puts thread stacks in heap memory. */
int lethe_fault_thread_init(void);

/* Whether the runtime's SIGBUS handler is the process's (the first region installs it, in
 * both delivery modes, and it stays for the life of the process). */
bool lethe_fault_sigbus_installed(void);
/* sigaction() for SIGBUS, once the runtime's handler is installed: act (if not NULL) becomes
 * the handler that a SIGBUS outside every region is passed to, called from the runtime's
 * handler with its siginfo and context (its sa_mask is not applied; SA_RESETHAND makes it
 * run once); *old (if not NULL) gets the one before. The runtime's handler stays the
 * process's. Returns 0, or -ENOENT when the runtime's handler is not installed. */
struct sigaction;
int lethe_fault_sigbus_chain(const struct sigaction *act, struct sigaction *old);
/* The descriptors that serving a fault uses (each live region's userfaultfds and pagemap
 * descriptor, all close-on-exec): up to max of them into out. Returns how many. */
unsigned lethe_fault_own_fds(int *out, unsigned max);

/* lethe_page_soft_unmap_batch() with each page's outcome: status[i] = 0 (moved) or the
 * negative errno lethe_page_soft_unmap() would give. Returns the number of pages moved. */
int lethe_page_soft_unmap_batch_status(struct lethe_region *r, const uint64_t *vpns,
                                       const uint64_t *frames, unsigned n, int *status);

/* True in a forked child (after forked_child() ran): faults go to child_fault. */
bool lethe_region_is_forked_child(const struct lethe_region *r);

/* The runtime's own counters, summed over the vCPUs. */
struct lethe_fault_stats {
    uint64_t faults;    /* faults handed to ops->fault */
    uint64_t retries;   /* of which answered -EAGAIN and retried */
    uint64_t wp_faults; /* synchronous write-protect faults (copy fallback only) */
    uint64_t events;    /* application events read (remove, unmap, remap) */
};
void lethe_region_get_stats(const struct lethe_region *r, struct lethe_fault_stats *out);

#endif
