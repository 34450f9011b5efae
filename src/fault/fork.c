/* fork.c — what a forked child of a Lethe process gets.
 *
 * The runtime does not subscribe to UFFD_EVENT_FORK (it would make the parent serve the
 * child's faults and stall the parent's fork on the event). Without it the kernel hands the
 * child the region and the parking area unregistered, and the child's view of uffd A and
 * B (inherited descriptors) still acts on the parent's address space. So the pthread_atfork
 * child handler, before fork() returns in the child:
 *  - closes the inherited uffds, the pagemap descriptor and the stop eventfd (all of them
 *    the parent's: using them would act on the parent);
 *  - registers the region with a fresh userfaultfd in SIGBUS mode, MISSING only (no events:
 *    nothing in a one-thread child could read them; no dirty tracking);
 *  - calls ops->forked_child; from then on faults in the child go to ops->child_fault, in
 *    the faulting thread's SIGBUS handler, on vCPU context 0, with no locks taken.
 * Page operations keep working in the child on the new uffd; map_back copies from the slot
 * (the slots are the parent's pages, shared copy-on-write).
 *
 * The semantics the core gives the child are in docs/RUNTIME.md ("Fork"). A child that
 * execs or _exits is unaffected: exec drops the whole address space.
 */
#define _GNU_SOURCE
#include "fault/fault_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/log.h"

static atomic_bool fork_installed;
static pthread_mutex_t fork_install_lock = PTHREAD_MUTEX_INITIALIZER;

/* The system call itself: liblethe's close() keeps these descriptors open in a child that
 * has not been through the fork handlers yet (it takes it for a vforked child). */
static void close_fd(int *fd)
{
    if (*fd >= 0)
        syscall(SYS_close, *fd);
    *fd = -1;
}

static void child_setup(struct lethe_region *r)
{
    close_fd(&r->uffd);
    close_fd(&r->park_uffd);
    close_fd(&r->pagemap_fd);
    close_fd(&r->stop_fd);
    atomic_store(&r->child, true);
    r->has_dirty = false;
    r->sync_wp = false;
    r->app_events = false;
    r->event_thread_started = false;
    atomic_store(&r->event_busy, 0);
    for (unsigned i = 0; i < r->nvcpus; i++) {
        atomic_store(&r->vcpus[i].busy, 0);
        r->vcpus[i].thread_started = false;
        r->vcpus[i].ndeferred = 0;
    }
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_SIGBUS};
    if (fd < 0 || ioctl(fd, UFFDIO_API, &api) != 0) {
        lethe_error("forked child: no userfaultfd (%s): pages evicted by the parent would read "
                    "as zeros; the region is made inaccessible",
                    strerror(errno));
        if (fd >= 0)
            close(fd);
        mprotect(r->base, r->size, PROT_NONE);
        return;
    }
    r->uffd = fd;
    r->register_mode = UFFDIO_REGISTER_MODE_MISSING;
    /* a parent thread may have held it at the fork: nobody else is left to */
    pthread_mutex_init(&r->foreign_lock, NULL);
    int rc = fault_register_region(r, r->uffd, r->register_mode);
    if (rc < 0) {
        lethe_error("forked child: cannot register the region (%s); it is made inaccessible",
                    strerror(-rc));
        mprotect(r->base, r->size, PROT_NONE);
        return;
    }
    fault_build_paths(r);
    if (r->ops->forked_child)
        r->ops->forked_child(r->core);
}

static void fork_child(void)
{
    for (unsigned i = 0; i < FAULT_MAX_REGIONS; i++) {
        struct lethe_region *r = atomic_load(&fault_regions[i]);
        if (r && !atomic_load(&r->stopping))
            child_setup(r);
    }
}

int fault_fork_install(void)
{
    if (atomic_load(&fork_installed))
        return 0;
    pthread_mutex_lock(&fork_install_lock);
    int rc = 0;
    if (!atomic_load(&fork_installed)) {
        rc = -pthread_atfork(NULL, NULL, fork_child);
        if (rc == 0)
            atomic_store(&fork_installed, true);
    }
    pthread_mutex_unlock(&fork_install_lock);
    return rc;
}
