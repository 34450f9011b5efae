/* threads.c — the pthread_create wrapper: sorts new threads into program and runtime threads.
 *
 * A thread created by code inside liblethe.so (the runtime's vCPUs, event thread and
 * rebalancer, the stats thread) is a runtime thread: it stays on jemalloc's automatic arenas
 * with its thread cache off, so nothing it allocates or caches is region memory (a vCPU that
 * touched region memory could wait on its own fault), and in the "C" locale (libc_safe.c). Any
 * other thread is a program thread: once the runtime is up it is moved onto the managed arena, and
 * in signal delivery mode it gets an alternate signal stack for the SIGBUS handler
 * (lethe_fault_thread_init()).
 *
 * Before start-up and in dormant processes the call goes straight to glibc. Threads that
 * glibc creates internally (timer_create's SIGEV_THREAD, AIO) and threads created before
 * start-up stay on the automatic arenas: their allocations are not managed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include "core/log.h"
#include "fault/fault.h"
#include "preload/preload.h"

typedef int (*pthread_create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

static pthread_create_fn real_pthread_create;

struct thread_start {
    void *(*fn)(void *);
    void *arg;
    bool runtime;
};

static void *thread_begin(void *p)
{
    struct thread_start s = *(struct thread_start *)p;
    heap_runtime_free(p);
    if (s.runtime) {
        heap_enter_runtime_thread();
        libc_safe_enter_runtime_thread();
    } else {
        heap_enter_program_thread();
        const struct lethe_config *cfg = preload_config();
        if (cfg && cfg->fault_delivery == LETHE_DELIVERY_SIGNAL)
            lethe_fault_thread_init();
    }
    return s.fn(s.arg);
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    pthread_create_fn real = __atomic_load_n(&real_pthread_create, __ATOMIC_ACQUIRE);
    if (!real) {
        real = (pthread_create_fn)dlsym(RTLD_NEXT, "pthread_create");
        if (!real)
            return EAGAIN;
        __atomic_store_n(&real_pthread_create, real, __ATOMIC_RELEASE);
    }
    bool runtime = preload_is_own_code(__builtin_return_address(0));
    if (!preload_lethe() && !runtime)
        return real(thread, attr, fn, arg);
    struct thread_start *s = heap_runtime_alloc(sizeof(*s));
    if (!s)
        return EAGAIN;
    *s = (struct thread_start){.fn = fn, .arg = arg, .runtime = runtime};
    int rc = real(thread, attr, thread_begin, s);
    if (rc != 0)
        heap_runtime_free(s);
    return rc;
}
