/* delivery_thread.c — fault_delivery = thread: one handler thread per vCPU.
 *
 * vCPU i is pinned (pin_vcpus) to the (i mod n)-th of the n CPUs it may use. Every vCPU
 * polls uffd A and its stop eventfd and reads one message at a time, so a slow fault
 * (transport I/O) never holds back the others. A message is a fault (served by ops->fault on
 * this vCPU, outside any runtime lock) or an application event (events.c), handled under the
 * read lock so that events are handled in the kernel's order. Kernel-mode accesses to missing
 * pages block in the kernel and arrive here like user accesses.
 *
 * -EAGAIN from ops->fault means uffd A is in its mmap_changing state: an application event
 * is queued and not yet read. The kernel hands out queued faults before queued events, so
 * waking the faulting thread at once could refault and win over the event indefinitely.
 * The vCPU instead holds the fault back (deferred[]) and wakes it when the uffd has nothing
 * readable any more, i.e. once the event has been read (by this vCPU or another).
 */
#define _GNU_SOURCE
#include "fault/fault_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

/* vCPU i runs on the (i mod n)-th of the n CPUs that the thread which started Lethe may use
 * (a vCPU inherits its mask): with `taskset -c 2,3` vCPU 0 runs on CPU 2, vCPU 1 on CPU 3,
 * and Lethe never leaves the CPUs it was given. */
static void pin_to_cpu(unsigned id)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return;
    int count = CPU_COUNT(&allowed);
    if (count <= 0)
        return;
    unsigned want = id % (unsigned)count, seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
            continue;
        if (seen++ == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
            return;
        }
    }
}

static void wake_deferred(struct fault_vcpu *v)
{
    for (unsigned i = 0; i < v->ndeferred; i++)
        fault_wake_range(v->r, v->deferred[i], 1);
    v->ndeferred = 0;
}

static void serve_fault(struct fault_vcpu *v, const struct uffd_msg *m)
{
    struct lethe_region *r = v->r;
    uint64_t addr = m->arg.pagefault.address;
    if (addr - (uint64_t)(uintptr_t)r->base >= r->size) {
        /* A mapping mremap'd out of the region whose REMAP event is not handled yet: give
         * this page back to the kernel (unregister it, which wakes the thread). */
        struct uffdio_range range = {.start = addr & ~(LETHE_PAGE_SIZE - 1),
                                     .len = LETHE_PAGE_SIZE};
        if (ioctl(r->uffd, UFFDIO_UNREGISTER, &range) != 0)
            ioctl(r->uffd, UFFDIO_WAKE, &range);
        return;
    }
    uint64_t vpn = fault_vpn(r, addr);
    if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
        atomic_store_explicit(&v->wp_faults,
                              atomic_load_explicit(&v->wp_faults, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        fault_resolve_wp(r, vpn);
        return;
    }
    enum lethe_access access = (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE)
                                   ? LETHE_ACCESS_WRITE
                                   : LETHE_ACCESS_READ;
    atomic_store_explicit(&v->faults, atomic_load_explicit(&v->faults, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    int rc = r->ops->fault(r->core, &v->pub, vpn, access);
    if (rc == 0)
        return;
    if (rc != -EAGAIN)
        fault_die(r, vpn, access, rc);
    atomic_store_explicit(&v->retries, atomic_load_explicit(&v->retries, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (v->ndeferred < FAULT_MAX_DEFERRED)
        v->deferred[v->ndeferred++] = vpn;
    else
        fault_wake_range(r, vpn, 1);
}

static void report_started(struct lethe_region *r, int err)
{
    pthread_mutex_lock(&r->start_lock);
    if (err && !r->start_err)
        r->start_err = err;
    r->start_count++;
    pthread_cond_broadcast(&r->start_cond);
    pthread_mutex_unlock(&r->start_lock);
}

static void *vcpu_main(void *arg)
{
    struct fault_vcpu *v = arg;
    struct lethe_region *r = v->r;
    lethe_log_set_role("vCPU %u", v->pub.id);
    char name[16];
    snprintf(name, sizeof(name), "lethe-vcpu%u", v->pub.id);
    pthread_setname_np(pthread_self(), name);
    if (r->pin_vcpus)
        pin_to_cpu(v->pub.id);
    int rc = r->ops->vcpu_init ? r->ops->vcpu_init(r->core, &v->pub) : 0;
    v->initialized = rc == 0;
    report_started(r, rc);
    if (rc < 0)
        return NULL;

    struct pollfd pfd[2] = {{.fd = r->uffd, .events = POLLIN},
                            {.fd = r->stop_fd, .events = POLLIN}};
    const struct timespec retry_wait = {.tv_sec = 0, .tv_nsec = 50 * 1000};
    while (!atomic_load_explicit(&r->stopping, memory_order_relaxed)) {
        int n = ppoll(pfd, 2, v->ndeferred ? &retry_wait : NULL, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            lethe_error("vCPU %u: poll on the userfaultfd failed: %s", v->pub.id, strerror(errno));
            abort();
        }
        if (pfd[1].revents)
            break;
        struct uffd_msg m;
        ssize_t got = -1;
        if (n > 0) {
            pthread_mutex_lock(&r->read_lock);
            got = read(r->uffd, &m, sizeof(m));
            if (got == (ssize_t)sizeof(m) && m.event != UFFD_EVENT_PAGEFAULT) {
                fault_handle_event(r, v, &m);
                m.event = 0;
            }
            pthread_mutex_unlock(&r->read_lock);
        }
        if (got != (ssize_t)sizeof(m)) {
            if (got < 0 && n > 0 && errno != EAGAIN && errno != EINTR) {
                lethe_error("vCPU %u: reading the userfaultfd failed: %s", v->pub.id,
                            strerror(errno));
                abort();
            }
            if (v->ndeferred) /* nothing queued: the events are read, retry held faults */
                wake_deferred(v);
            continue;
        }
        if (m.event == UFFD_EVENT_PAGEFAULT)
            serve_fault(v, &m);
    }
    wake_deferred(v);
    if (v->initialized && r->ops->vcpu_fini)
        r->ops->vcpu_fini(r->core, &v->pub);
    return NULL;
}

int fault_threads_start(struct lethe_region *r)
{
    pthread_mutex_init(&r->read_lock, NULL);
    pthread_mutex_init(&r->start_lock, NULL);
    pthread_cond_init(&r->start_cond, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    unsigned created = 0;
    int rc = 0;
    for (unsigned i = 0; i < r->nvcpus; i++) {
        struct fault_vcpu *v = &r->vcpus[i];
        rc = -pthread_create(&v->thread, &attr, vcpu_main, v);
        if (rc < 0) {
            lethe_error("cannot start vCPU %u: %s", i, strerror(-rc));
            break;
        }
        v->thread_started = true;
        created++;
    }
    pthread_attr_destroy(&attr);
    pthread_mutex_lock(&r->start_lock);
    while (r->start_count < created)
        pthread_cond_wait(&r->start_cond, &r->start_lock);
    if (!rc)
        rc = r->start_err;
    pthread_mutex_unlock(&r->start_lock);
    if (rc < 0)
        return rc;
    return 0;
}

void fault_threads_stop(struct lethe_region *r)
{
    for (unsigned i = 0; i < r->nvcpus; i++) {
        struct fault_vcpu *v = &r->vcpus[i];
        if (v->thread_started) {
            pthread_join(v->thread, NULL);
            v->thread_started = false;
        }
    }
}
