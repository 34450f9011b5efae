/* region.c — creating and destroying the managed region: kernel feature probing, the two
 * userfaultfds (A for the region, B for the parking area), the vCPU contexts and staging
 * buffers, the process-wide registry of live regions that the SIGBUS handler and the fork
 * handler consult.
 *
 * Path choice, from what the kernel grants (and the force_fallback_* test switches):
 *  - move: UFFDIO_MOVE when UFFD_FEATURE_MOVE is granted, else the copy fallback;
 *  - dirty: PAGEMAP_SCAN over async write-protect when WP_ASYNC, WP_UNPOPULATED and the
 *    ioctl work and UFFDIO_MOVE is in use (the copy fallback write-protects pages
 *    synchronously while it copies them, which an async-WP userfaultfd cannot do), else
 *    none: every present page scans as written.
 */
#define _GNU_SOURCE
#include "fault/fault_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/log.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

struct lethe_region *_Atomic fault_regions[FAULT_MAX_REGIONS];
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

static int uffd_new(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0)
        return fd;
    int err = errno;
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0)
        return -err;
    fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    err = errno;
    close(dev);
    return fd >= 0 ? fd : -err;
}

/* Opens a userfaultfd with `features`; *granted gets what the kernel offers in all. */
static int uffd_open(uint64_t features, uint64_t *granted)
{
    int fd = uffd_new();
    if (fd < 0)
        return fd;
    struct uffdio_api api = {.api = UFFD_API, .features = features};
    if (ioctl(fd, UFFDIO_API, &api) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    if (granted)
        *granted = api.features;
    return fd;
}

int fault_register_range(int uffd, void *addr, uint64_t len, uint64_t mode, uint64_t *ioctls)
{
    struct uffdio_register reg = {
        .range = {.start = (uint64_t)(uintptr_t)addr, .len = len},
        .mode = mode,
    };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0)
        return -errno;
    if (ioctls)
        *ioctls = reg.ioctls;
    return 0;
}

static void *map_private(size_t len, int extra_flags)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | extra_flags, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Does PAGEMAP_SCAN with async-WP checking work on the first page of the region? */
static bool probe_pagemap_scan(struct lethe_region *r)
{
    struct page_region vec[1];
    struct pm_scan_arg arg = {
        .size = sizeof(arg),
        .flags = PM_SCAN_CHECK_WPASYNC,
        .start = (uint64_t)(uintptr_t)r->base,
        .end = (uint64_t)(uintptr_t)r->base + LETHE_PAGE_SIZE,
        .vec = (uint64_t)(uintptr_t)vec,
        .vec_len = 1,
        .category_mask = PAGE_IS_WRITTEN | PAGE_IS_PRESENT,
        .return_mask = PAGE_IS_WRITTEN,
    };
    return ioctl(r->pagemap_fd, PAGEMAP_SCAN, &arg) >= 0;
}

/* Batch parking needs process_madvise(MADV_DONTNEED) on this process (older kernels take only
 * a few advices there, such as COLD and PAGEOUT) and pipes that hold a capture chunk. */
static bool probe_batch(struct lethe_region *r)
{
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd < 0)
        return false;
    char *page = map_private(LETHE_PAGE_SIZE, 0);
    bool ok = false;
    if (page) {
        page[0] = 1;
        struct iovec iov = {.iov_base = page, .iov_len = LETHE_PAGE_SIZE};
        ssize_t got = syscall(SYS_process_madvise, pidfd, &iov, 1, MADV_DONTNEED, 0);
        ok = got == LETHE_PAGE_SIZE && ((volatile char *)page)[0] == 0;
        munmap(page, LETHE_PAGE_SIZE);
    }
    if (!ok) {
        close(pidfd);
        return false;
    }
    unsigned want = r->nvcpus + 2 < FAULT_CAPTURE_PIPES ? r->nvcpus + 2 : FAULT_CAPTURE_PIPES;
    for (r->ncap_pipes = 0; r->ncap_pipes < want; r->ncap_pipes++) {
        int *fd = r->cap_pipe[r->ncap_pipes];
        if (pipe2(fd, O_CLOEXEC) != 0)
            break;
        if (fcntl(fd[1], F_SETPIPE_SZ, FAULT_CAPTURE_CHUNK * LETHE_PAGE_SIZE) <
            (int)(FAULT_CAPTURE_CHUNK * LETHE_PAGE_SIZE)) {
            close(fd[0]);
            close(fd[1]);
            break;
        }
    }
    if (r->ncap_pipes == 0) {
        close(pidfd);
        return false;
    }
    r->pidfd = pidfd;
    return true;
}

void fault_build_paths(struct lethe_region *r)
{
    const char *move = r->has_move ? "UFFDIO_MOVE" : r->sync_wp ? "copy+WP" : "copy";
    const char *dirty = r->has_dirty ? "PAGEMAP_SCAN" : "none";
    snprintf(r->paths, sizeof(r->paths), "delivery=%s%s move=%s dirty=%s parking=%s",
             lethe_delivery_name(r->delivery), atomic_load(&r->child) ? "(forked child)" : "", move,
             dirty, r->batch ? "batch" : "move");
}

struct lethe_region *fault_region_of(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    for (unsigned i = 0; i < FAULT_MAX_REGIONS; i++) {
        struct lethe_region *r = atomic_load_explicit(&fault_regions[i], memory_order_acquire);
        if (r && a >= (uintptr_t)r->base && a - (uintptr_t)r->base < r->size)
            return r;
    }
    return NULL;
}

unsigned lethe_fault_own_fds(int *out, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < FAULT_MAX_REGIONS; i++) {
        struct lethe_region *r = atomic_load_explicit(&fault_regions[i], memory_order_acquire);
        if (!r)
            continue;
        int fds[4] = {r->uffd, r->park_uffd, r->pagemap_fd, r->pidfd};
        for (unsigned j = 0; j < 4; j++)
            if (fds[j] >= 0 && n < max)
                out[n++] = fds[j];
        for (unsigned j = 0; j < r->ncap_pipes; j++)
            for (unsigned k = 0; k < 2; k++)
                if (n < max)
                    out[n++] = r->cap_pipe[j][k];
    }
    return n;
}

struct lethe_region *fault_region_of_parking(const void *addr, uint64_t *frame)
{
    uintptr_t a = (uintptr_t)addr;
    for (unsigned i = 0; i < FAULT_MAX_REGIONS; i++) {
        struct lethe_region *r = atomic_load_explicit(&fault_regions[i], memory_order_acquire);
        if (r && a >= (uintptr_t)r->park && a - (uintptr_t)r->park < r->park_size) {
            *frame = (a - (uintptr_t)r->park) >> LETHE_PAGE_SHIFT;
            return r;
        }
    }
    return NULL;
}

static int registry_add(struct lethe_region *r)
{
    pthread_mutex_lock(&registry_lock);
    int slot = -ENOSPC;
    for (unsigned i = 0; i < FAULT_MAX_REGIONS; i++) {
        if (!atomic_load(&fault_regions[i])) {
            r->registry_slot = (int)i;
            atomic_store_explicit(&fault_regions[i], r, memory_order_release);
            slot = (int)i;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return slot < 0 ? slot : 0;
}

static void registry_remove(struct lethe_region *r)
{
    pthread_mutex_lock(&registry_lock);
    if (r->registry_slot >= 0)
        atomic_store_explicit(&fault_regions[r->registry_slot], NULL, memory_order_release);
    r->registry_slot = -1;
    pthread_mutex_unlock(&registry_lock);
}

static int check_params(const struct lethe_region_params *p, const struct lethe_fault_ops *ops)
{
    if (!p || !ops || !ops->fault)
        return -EINVAL;
    if (p->region_size == 0 || p->region_size % LETHE_PAGE_SIZE)
        return -EINVAL;
    if (p->nframes == 0 || p->vcpus == 0 || p->vcpus > LETHE_MAX_VCPUS || p->staging_pages == 0)
        return -EINVAL;
    if (p->delivery != LETHE_DELIVERY_THREAD && p->delivery != LETHE_DELIVERY_SIGNAL)
        return -EINVAL;
    return 0;
}

/* Opens uffd A and B with the features the chosen paths need and registers the ranges. */
static int setup_uffds(struct lethe_region *r, uint64_t avail)
{
    uint64_t fa = UFFD_FEATURE_EVENT_REMAP;
    if (r->delivery == LETHE_DELIVERY_SIGNAL)
        fa |= UFFD_FEATURE_SIGBUS;
    if (r->app_events)
        fa |= UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
    if (r->has_dirty)
        fa |= UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
    if (r->has_move)
        fa |= UFFD_FEATURE_MOVE;
    fa &= avail;
    int fd = uffd_open(fa, &r->features);
    if (fd < 0)
        return fd;
    r->uffd = fd;
    uint64_t mode = UFFDIO_REGISTER_MODE_MISSING;
    if (r->has_dirty || r->sync_wp)
        mode |= UFFDIO_REGISTER_MODE_WP;
    uint64_t ioctls = 0;
    r->register_mode = mode;
    int rc = fault_register_range(r->uffd, r->base, r->size, mode, &ioctls);
    if (rc < 0) {
        lethe_error("userfaultfd: cannot register the region (%s)", strerror(-rc));
        return rc;
    }
    if (r->has_move && !(ioctls & ((uint64_t)1 << _UFFDIO_MOVE))) {
        lethe_warn("userfaultfd: UFFDIO_MOVE offered but not allowed on the region: copying");
        r->has_move = false;
    }
    if (!r->has_move)
        return 0;
    fd = uffd_open(UFFD_FEATURE_MOVE | UFFD_FEATURE_SIGBUS, NULL);
    if (fd < 0)
        return fd;
    r->park_uffd = fd;
    /* With batch parking the slots are plain memory (pages are copied in and out of them);
     * only the scratch pages after them take moves. */
    uint64_t skip = r->batch ? r->nframes << LETHE_PAGE_SHIFT : 0;
    rc = fault_register_range(r->park_uffd, r->park + skip, r->park_size - skip,
                              UFFDIO_REGISTER_MODE_MISSING, NULL);
    if (rc < 0)
        lethe_error("userfaultfd: cannot register the parking area (%s)", strerror(-rc));
    return rc;
}

static int alloc_runtime_memory(struct lethe_region *r, const struct lethe_region_params *p)
{
    r->vcpus_len = (size_t)p->vcpus * sizeof(struct fault_vcpu);
    r->vcpus = map_private(r->vcpus_len, 0);
    r->staging_len = (size_t)p->vcpus * p->staging_pages * LETHE_PAGE_SIZE;
    r->staging = map_private(r->staging_len, MAP_POPULATE);
    r->zero_page = map_private(LETHE_ZERO_RUN * LETHE_PAGE_SIZE, MAP_POPULATE);
    if (!r->vcpus || !r->staging || !r->zero_page)
        return -ENOMEM;
    mprotect(r->zero_page, LETHE_ZERO_RUN * LETHE_PAGE_SIZE, PROT_READ);
    if (r->sync_wp) {
        r->stripes = map_private(FAULT_STRIPES * sizeof(atomic_uint), 0);
        if (!r->stripes)
            return -ENOMEM;
    }
    for (unsigned i = 0; i < p->vcpus; i++) {
        struct fault_vcpu *v = &r->vcpus[i];
        v->pub.id = i;
        v->pub.staging = (char *)r->staging + (size_t)i * p->staging_pages * LETHE_PAGE_SIZE;
        v->pub.staging_pages = p->staging_pages;
        v->r = r;
    }
    return 0;
}

int lethe_region_create(const struct lethe_region_params *p, const struct lethe_fault_ops *ops,
                        void *core, struct lethe_region **out)
{
    int rc = check_params(p, ops);
    if (rc < 0)
        return rc;
    uint64_t avail = 0;
    int probe = uffd_open(0, &avail);
    if (probe < 0) {
        lethe_error("userfaultfd unavailable (%s): Lethe needs it (run as root or set "
                    "vm.unprivileged_userfaultfd=1)",
                    strerror(-probe));
        return probe;
    }
    close(probe);
    if (p->delivery == LETHE_DELIVERY_SIGNAL && !(avail & UFFD_FEATURE_SIGBUS)) {
        lethe_error("userfaultfd: fault_delivery = signal needs UFFD_FEATURE_SIGBUS (Linux 4.14)");
        return -ENOTSUP;
    }

    struct lethe_region *r = map_private(sizeof(*r), 0);
    if (!r)
        return -ENOMEM;
    r->uffd = r->park_uffd = r->pagemap_fd = r->stop_fd = r->pidfd = -1;
    r->registry_slot = -1;
    r->ops = ops;
    r->core = core;
    r->delivery = p->delivery;
    r->pin_vcpus = p->pin_vcpus;
    r->nvcpus = p->vcpus;
    r->size = p->region_size;
    r->pages = p->region_size >> LETHE_PAGE_SHIFT;
    r->nframes = p->nframes;
    r->park_size = (p->nframes + FAULT_SCRATCH_PAGES) << LETHE_PAGE_SHIFT;
    pthread_mutex_init(&r->scratch_lock, NULL);
    pthread_mutex_init(&r->foreign_lock, NULL);
    r->has_move = (avail & UFFD_FEATURE_MOVE) && !p->force_fallback_move;
    r->has_dirty = r->has_move && !p->force_fallback_dirty && (avail & UFFD_FEATURE_WP_ASYNC) &&
                   (avail & UFFD_FEATURE_WP_UNPOPULATED);
    r->sync_wp = !r->has_move && (avail & UFFD_FEATURE_PAGEFAULT_FLAG_WP);
    r->app_events = r->has_move;
    /* Batch parking unmaps region pages with madvise, which must raise no event of its own:
     * the region is then not subscribed to them, and liblethe.so's madvise/munmap wrappers
     * are what tells the core about the program's releases. */
    r->batch = r->has_move && p->batch_parking && probe_batch(r);
    if (r->batch)
        r->app_events = false;

    rc = -ENOMEM;
    r->base = map_private(r->size, 0);
    r->park = map_private(r->park_size, 0);
    if (!r->base || !r->park)
        goto fail;
    madvise(r->base, r->size, MADV_NOHUGEPAGE);
    madvise(r->park, r->park_size, MADV_NOHUGEPAGE);
    if ((rc = alloc_runtime_memory(r, p)) < 0)
        goto fail;
    if ((rc = setup_uffds(r, avail)) < 0)
        goto fail;
    if (!r->has_move) { /* decided for good by setup_uffds() */
        r->slot_used_len = ((p->nframes + 63) / 64) * sizeof(uint64_t);
        r->slot_used = map_private(r->slot_used_len, 0);
        if (!r->slot_used) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    if (r->has_dirty) {
        r->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (r->pagemap_fd < 0 || !probe_pagemap_scan(r)) {
            lethe_warn("PAGEMAP_SCAN unavailable: no dirty tracking");
            r->has_dirty = false;
        }
    }
    r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->stop_fd < 0) {
        rc = -errno;
        goto fail;
    }
    fault_build_paths(r);
    if ((rc = fault_signal_install()) < 0 || (rc = fault_fork_install()) < 0)
        goto fail;
    if ((rc = registry_add(r)) < 0) {
        lethe_error("too many managed regions (at most %d)", FAULT_MAX_REGIONS);
        goto fail;
    }
    /* *out is set before the vCPUs start, so that they (and the callbacks they run) see the
     * core's pointer to the region written before them. */
    *out = r;
    rc = r->delivery == LETHE_DELIVERY_THREAD ? fault_threads_start(r) : fault_signal_start(r);
    if (rc < 0) {
        *out = NULL;
        goto fail;
    }
    lethe_info("region %p..%p (%llu pages), %llu parking slots, %u vCPUs: %s", (void *)r->base,
               (void *)(r->base + r->size), (unsigned long long)r->pages,
               (unsigned long long)r->nframes, r->nvcpus, r->paths);
    return 0;
fail:
    lethe_region_destroy(r);
    return rc;
}

void lethe_region_destroy(struct lethe_region *r)
{
    if (!r)
        return;
    atomic_store(&r->stopping, true);
    if (r->stop_fd >= 0) {
        uint64_t one = 1;
        if (write(r->stop_fd, &one, sizeof(one)) < 0)
            lethe_warn("region: cannot signal the vCPUs to stop: %s", strerror(errno));
    }
    if (!atomic_load(&r->child)) {
        if (r->delivery == LETHE_DELIVERY_THREAD)
            fault_threads_stop(r);
        else
            fault_signal_stop(r);
    }
    registry_remove(r);
    if (r->uffd >= 0)
        close(r->uffd);
    if (r->park_uffd >= 0)
        close(r->park_uffd);
    if (r->pagemap_fd >= 0)
        close(r->pagemap_fd);
    if (r->stop_fd >= 0)
        close(r->stop_fd);
    if (r->pidfd >= 0)
        close(r->pidfd);
    for (unsigned i = 0; i < r->ncap_pipes; i++) {
        close(r->cap_pipe[i][0]);
        close(r->cap_pipe[i][1]);
    }
    if (r->base)
        munmap(r->base, r->size);
    if (r->park)
        munmap(r->park, r->park_size);
    if (r->vcpus)
        munmap(r->vcpus, r->vcpus_len);
    if (r->staging)
        munmap(r->staging, r->staging_len);
    if (r->zero_page)
        munmap(r->zero_page, LETHE_ZERO_RUN * LETHE_PAGE_SIZE);
    if (r->stripes)
        munmap(r->stripes, FAULT_STRIPES * sizeof(atomic_uint));
    if (r->slot_used)
        munmap((void *)r->slot_used, r->slot_used_len);
    munmap(r, sizeof(*r));
}

void lethe_region_ranges(const struct lethe_region *r, uint64_t *base, uint64_t *size,
                         uint64_t *park, uint64_t *park_size)
{
    *base = (uint64_t)(uintptr_t)r->base;
    *size = r->size;
    *park = (uint64_t)(uintptr_t)r->park;
    *park_size = r->park_size;
}

void *lethe_region_base(const struct lethe_region *r)
{
    return r->base;
}

uint64_t lethe_region_pages(const struct lethe_region *r)
{
    return r->pages;
}

unsigned lethe_region_vcpus(const struct lethe_region *r)
{
    return r->nvcpus;
}

struct lethe_vcpu *lethe_region_vcpu(struct lethe_region *r, unsigned id)
{
    return id < r->nvcpus ? &r->vcpus[id].pub : NULL;
}

uint64_t lethe_region_vpn(const struct lethe_region *r, const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    if (a < (uintptr_t)r->base || a - (uintptr_t)r->base >= r->size)
        return UINT64_MAX;
    return (a - (uintptr_t)r->base) >> LETHE_PAGE_SHIFT;
}

void *lethe_region_addr(const struct lethe_region *r, uint64_t vpn)
{
    return r->base + (vpn << LETHE_PAGE_SHIFT);
}

void *lethe_region_slot(const struct lethe_region *r, uint64_t frame)
{
    return r->park + (frame << LETHE_PAGE_SHIFT);
}

const char *lethe_region_paths(const struct lethe_region *r)
{
    return r->paths;
}

bool lethe_region_has_move(const struct lethe_region *r)
{
    return r->has_move;
}

bool lethe_region_batch_parking(const struct lethe_region *r)
{
    return r->batch;
}

void lethe_region_note_fork(struct lethe_region *r)
{
    atomic_store(&r->shared, true);
}

bool lethe_region_has_dirty_tracking(const struct lethe_region *r)
{
    return r->has_dirty;
}

bool lethe_region_is_forked_child(const struct lethe_region *r)
{
    return atomic_load(&r->child);
}

void lethe_region_get_stats(const struct lethe_region *r, struct lethe_fault_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < r->nvcpus; i++) {
        const struct fault_vcpu *v = &r->vcpus[i];
        out->faults += atomic_load_explicit(&v->faults, memory_order_relaxed);
        out->retries += atomic_load_explicit(&v->retries, memory_order_relaxed);
        out->wp_faults += atomic_load_explicit(&v->wp_faults, memory_order_relaxed);
    }
    out->events = atomic_load_explicit(&r->events, memory_order_relaxed);
}
