/* sync.c — heap futex words kept mapped while glibc waits on them (signal delivery).
 *
 * A condition variable, semaphore, read-write lock or barrier that a program keeps in a heap
 * object lives in the region. glibc waits on it with a futex, and the kernel reads the futex
 * word itself: under signal delivery a word in a demoted or swapped-out page makes the wait
 * fail with EFAULT, and glibc then aborts the process ("The futex facility returned an
 * unexpected error code."). Touching the word first is not enough: the rebalancer may demote
 * the page again before the kernel looks, and a wait lasts as long as it lasts.
 *
 * So in signal mode these calls pin the object's pages (lethe_pin: made present, never
 * demoted) for the length of the call, cancellation included:
 *  - pthread_cond_wait, pthread_cond_timedwait, pthread_cond_clockwait (the condition
 *    variable and the mutex), pthread_cond_signal, pthread_cond_broadcast (a signal may wait
 *    for an old group of waiters to leave);
 *  - sem_wait, sem_timedwait, sem_clockwait;
 *  - pthread_rwlock_rdlock, _wrlock and their timed and clock forms;
 *  - pthread_mutex_timedlock, pthread_mutex_clocklock, and pthread_mutex_lock once a
 *    pthread_mutex_trylock has found the mutex taken (a plain mutex's wait survives EFAULT,
 *    a priority-inheriting one's does not);
 *  - pthread_barrier_wait, pthread_once;
 *  - C11's cnd_wait, cnd_timedwait, cnd_signal, cnd_broadcast, mtx_timedlock, and mtx_lock
 *    after a busy mtx_trylock (glibc implements them over the pthread calls without going
 *    through these wrappers).
 * An object outside the region costs one range check. In thread delivery mode, before
 * start-up and in dormant processes the calls pass straight through.
 *
 * Not covered: pthread_join waits on the thread's descriptor, which is on the thread's stack
 * (outside the region unless the program gave the thread a heap stack); futex words that
 * glibc keeps elsewhere in heap objects (a FILE's lock waits with a call that survives
 * EFAULT); the program's own futex system calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <threads.h>
#include <time.h>

#include "core/config.h"
#include "core/log.h"
#include "preload/preload.h"

typedef int (*cond_wait_fn)(pthread_cond_t *, pthread_mutex_t *);
typedef int (*cond_timedwait_fn)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
typedef int (*cond_clockwait_fn)(pthread_cond_t *, pthread_mutex_t *, clockid_t,
                                 const struct timespec *);
typedef int (*cond_fn)(pthread_cond_t *);
typedef int (*sem_fn)(sem_t *);
typedef int (*sem_timedwait_fn)(sem_t *, const struct timespec *);
typedef int (*sem_clockwait_fn)(sem_t *, clockid_t, const struct timespec *);
typedef int (*rwlock_fn)(pthread_rwlock_t *);
typedef int (*rwlock_timed_fn)(pthread_rwlock_t *, const struct timespec *);
typedef int (*rwlock_clock_fn)(pthread_rwlock_t *, clockid_t, const struct timespec *);
typedef int (*mutex_fn)(pthread_mutex_t *);
typedef int (*mutex_timed_fn)(pthread_mutex_t *, const struct timespec *);
typedef int (*mutex_clock_fn)(pthread_mutex_t *, clockid_t, const struct timespec *);
typedef int (*barrier_fn)(pthread_barrier_t *);
typedef int (*once_fn)(pthread_once_t *, void (*)(void));
typedef int (*cnd_wait_fn)(cnd_t *, mtx_t *);
typedef int (*cnd_timedwait_fn)(cnd_t *, mtx_t *, const struct timespec *);
typedef int (*cnd_fn)(cnd_t *);
typedef int (*mtx_fn)(mtx_t *);
typedef int (*mtx_timed_fn)(mtx_t *, const struct timespec *);

PRELOAD_REAL(pthread_cond_wait, cond_wait_fn)
PRELOAD_REAL(pthread_cond_timedwait, cond_timedwait_fn)
PRELOAD_REAL(pthread_cond_clockwait, cond_clockwait_fn)
PRELOAD_REAL(pthread_cond_signal, cond_fn)
PRELOAD_REAL(pthread_cond_broadcast, cond_fn)
PRELOAD_REAL(sem_wait, sem_fn)
PRELOAD_REAL(sem_timedwait, sem_timedwait_fn)
PRELOAD_REAL(sem_clockwait, sem_clockwait_fn)
PRELOAD_REAL(pthread_rwlock_rdlock, rwlock_fn)
PRELOAD_REAL(pthread_rwlock_wrlock, rwlock_fn)
PRELOAD_REAL(pthread_rwlock_timedrdlock, rwlock_timed_fn)
PRELOAD_REAL(pthread_rwlock_timedwrlock, rwlock_timed_fn)
PRELOAD_REAL(pthread_rwlock_clockrdlock, rwlock_clock_fn)
PRELOAD_REAL(pthread_rwlock_clockwrlock, rwlock_clock_fn)
PRELOAD_REAL(pthread_mutex_lock, mutex_fn)
PRELOAD_REAL(pthread_mutex_trylock, mutex_fn)
PRELOAD_REAL(pthread_mutex_timedlock, mutex_timed_fn)
PRELOAD_REAL(pthread_mutex_clocklock, mutex_clock_fn)
PRELOAD_REAL(pthread_barrier_wait, barrier_fn)
PRELOAD_REAL(pthread_once, once_fn)
PRELOAD_REAL(cnd_wait, cnd_wait_fn)
PRELOAD_REAL(cnd_timedwait, cnd_timedwait_fn)
PRELOAD_REAL(cnd_signal, cnd_fn)
PRELOAD_REAL(cnd_broadcast, cnd_fn)
PRELOAD_REAL(mtx_lock, mtx_fn)
PRELOAD_REAL(mtx_trylock, mtx_fn)
PRELOAD_REAL(mtx_timedlock, mtx_timed_fn)

void sync_init(void)
{
    get_pthread_cond_wait();
    get_pthread_cond_timedwait();
    get_pthread_cond_clockwait();
    get_pthread_cond_signal();
    get_pthread_cond_broadcast();
    get_sem_wait();
    get_sem_timedwait();
    get_sem_clockwait();
    get_pthread_rwlock_rdlock();
    get_pthread_rwlock_wrlock();
    get_pthread_rwlock_timedrdlock();
    get_pthread_rwlock_timedwrlock();
    get_pthread_rwlock_clockrdlock();
    get_pthread_rwlock_clockwrlock();
    get_pthread_mutex_lock();
    get_pthread_mutex_trylock();
    get_pthread_mutex_timedlock();
    get_pthread_mutex_clocklock();
    get_pthread_barrier_wait();
    get_pthread_once();
    get_cnd_wait();
    get_cnd_timedwait();
    get_cnd_signal();
    get_cnd_broadcast();
    get_mtx_lock();
    get_mtx_trylock();
    get_mtx_timedlock();
}

/* The pins one call holds: up to two objects of up to two pages each. */
struct pins {
    struct lethe *l;
    int token[4];
    unsigned n;
};

static void pin_page(struct pins *ps, const void *addr)
{
    int t = lethe_pin(ps->l, addr);
    if (t == -ENOSPC) {
        static int warned;
        if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
            lethe_warn("more than 512 heap futex words are waited on at once: the page at %p "
                       "is made present but not held (a wait on it may still fail)",
                       addr);
    }
    if (t >= 0)
        ps->token[ps->n++] = t;
}

static void pin_object(struct pins *ps, const void *obj, size_t size)
{
    if (!obj || !io_touches_region(ps->l, obj, size))
        return;
    uintptr_t first = (uintptr_t)obj, last = first + size - 1;
    pin_page(ps, obj);
    if (first >> LETHE_PAGE_SHIFT != last >> LETHE_PAGE_SHIFT)
        pin_page(ps, (const void *)last);
}

/* Pins obj and obj2 (either may be NULL) when in signal mode; true when anything is held. */
static bool pin_begin(struct pins *ps, const void *obj, size_t size, const void *obj2, size_t size2)
{
    ps->n = 0;
    ps->l = io_signal_mode();
    if (!ps->l)
        return false;
    pin_object(ps, obj, size);
    pin_object(ps, obj2, size2);
    return ps->n > 0;
}

/* Also the cancellation cleanup handler of the waits that are cancellation points. */
static void pin_end(void *arg)
{
    struct pins *ps = arg;
    for (unsigned i = 0; i < ps->n; i++)
        lethe_unpin(ps->l, ps->token[i]);
    ps->n = 0;
}

/* Runs CALL with obj (and obj2) pinned; CALL may be a cancellation point. */
#define PINNED(CALL, obj, size, obj2, size2)                                                       \
    do {                                                                                           \
        struct pins ps_;                                                                           \
        if (!pin_begin(&ps_, (obj), (size), (obj2), (size2)))                                      \
            return (CALL);                                                                         \
        int rc_;                                                                                   \
        pthread_cleanup_push(pin_end, &ps_);                                                       \
        rc_ = (CALL);                                                                              \
        pthread_cleanup_pop(1);                                                                    \
        return rc_;                                                                                \
    } while (0)

int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    PINNED(get_pthread_cond_wait()(c, m), c, sizeof(*c), m, sizeof(*m));
}

int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *t)
{
    PINNED(get_pthread_cond_timedwait()(c, m, t), c, sizeof(*c), m, sizeof(*m));
}

int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clk,
                           const struct timespec *t)
{
    PINNED(get_pthread_cond_clockwait()(c, m, clk, t), c, sizeof(*c), m, sizeof(*m));
}

int pthread_cond_signal(pthread_cond_t *c)
{
    PINNED(get_pthread_cond_signal()(c), c, sizeof(*c), NULL, 0);
}

int pthread_cond_broadcast(pthread_cond_t *c)
{
    PINNED(get_pthread_cond_broadcast()(c), c, sizeof(*c), NULL, 0);
}

int sem_wait(sem_t *s)
{
    PINNED(get_sem_wait()(s), s, sizeof(*s), NULL, 0);
}

int sem_timedwait(sem_t *s, const struct timespec *t)
{
    PINNED(get_sem_timedwait()(s, t), s, sizeof(*s), NULL, 0);
}

int sem_clockwait(sem_t *s, clockid_t clk, const struct timespec *t)
{
    PINNED(get_sem_clockwait()(s, clk, t), s, sizeof(*s), NULL, 0);
}

int pthread_rwlock_rdlock(pthread_rwlock_t *rw)
{
    PINNED(get_pthread_rwlock_rdlock()(rw), rw, sizeof(*rw), NULL, 0);
}

int pthread_rwlock_wrlock(pthread_rwlock_t *rw)
{
    PINNED(get_pthread_rwlock_wrlock()(rw), rw, sizeof(*rw), NULL, 0);
}

int pthread_rwlock_timedrdlock(pthread_rwlock_t *rw, const struct timespec *t)
{
    PINNED(get_pthread_rwlock_timedrdlock()(rw, t), rw, sizeof(*rw), NULL, 0);
}

int pthread_rwlock_timedwrlock(pthread_rwlock_t *rw, const struct timespec *t)
{
    PINNED(get_pthread_rwlock_timedwrlock()(rw, t), rw, sizeof(*rw), NULL, 0);
}

int pthread_rwlock_clockrdlock(pthread_rwlock_t *rw, clockid_t clk, const struct timespec *t)
{
    PINNED(get_pthread_rwlock_clockrdlock()(rw, clk, t), rw, sizeof(*rw), NULL, 0);
}

int pthread_rwlock_clockwrlock(pthread_rwlock_t *rw, clockid_t clk, const struct timespec *t)
{
    PINNED(get_pthread_rwlock_clockwrlock()(rw, clk, t), rw, sizeof(*rw), NULL, 0);
}

int pthread_mutex_lock(pthread_mutex_t *m)
{
    /* the uncontended lock stays as cheap as without Lethe: only a wait pins */
    if (!io_signal_mode() || !io_touches_region(io_signal_mode(), m, sizeof(*m)))
        return get_pthread_mutex_lock()(m);
    int rc = get_pthread_mutex_trylock()(m);
    if (rc != EBUSY)
        return rc;
    PINNED(get_pthread_mutex_lock()(m), m, sizeof(*m), NULL, 0);
}

int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *t)
{
    PINNED(get_pthread_mutex_timedlock()(m, t), m, sizeof(*m), NULL, 0);
}

int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t clk, const struct timespec *t)
{
    PINNED(get_pthread_mutex_clocklock()(m, clk, t), m, sizeof(*m), NULL, 0);
}

int pthread_barrier_wait(pthread_barrier_t *b)
{
    PINNED(get_pthread_barrier_wait()(b), b, sizeof(*b), NULL, 0);
}

int pthread_once(pthread_once_t *once, void (*init)(void))
{
    PINNED(get_pthread_once()(once, init), once, sizeof(*once), NULL, 0);
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    PINNED(get_cnd_wait()(c, m), c, sizeof(*c), m, sizeof(*m));
}

int cnd_timedwait(cnd_t *c, mtx_t *m, const struct timespec *t)
{
    PINNED(get_cnd_timedwait()(c, m, t), c, sizeof(*c), m, sizeof(*m));
}

int cnd_signal(cnd_t *c)
{
    PINNED(get_cnd_signal()(c), c, sizeof(*c), NULL, 0);
}

int cnd_broadcast(cnd_t *c)
{
    PINNED(get_cnd_broadcast()(c), c, sizeof(*c), NULL, 0);
}

int mtx_lock(mtx_t *m)
{
    if (!io_signal_mode() || !io_touches_region(io_signal_mode(), m, sizeof(*m)))
        return get_mtx_lock()(m);
    int rc = get_mtx_trylock()(m);
    if (rc != thrd_busy)
        return rc;
    PINNED(get_mtx_lock()(m), m, sizeof(*m), NULL, 0);
}

int mtx_timedlock(mtx_t *m, const struct timespec *t)
{
    PINNED(get_mtx_timedlock()(m, t), m, sizeof(*m), NULL, 0);
}
