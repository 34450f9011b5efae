/* app_sync.c — threads that sleep on heap condition variables, semaphores and locks while the
 * heap is churned.
 *
 * Usage: app_sync MIB
 *
 * For each kind of wait (a semaphore, a condition variable with its mutex, a timed mutex lock,
 * a read lock, a barrier, a C11 condition variable) the object is allocated on the heap in a
 * page of its own and a waiter thread goes to sleep on it. The main thread then, three times,
 * writes MIB MiB of other heap memory (under Lethe with a small cache the object's page goes
 * cold and is swapped out) and interrupts the waiter with SIGUSR1, whose handler is installed
 * with SA_RESTART: the kernel restarts the futex wait and reads the futex word again, with no
 * user-mode access to it in between. Then it releases the waiter and joins it. Each waiter
 * checks what it was woken for. A futex wait that met a swapped-out page would make glibc
 * abort the process. It prints one line per kind and the heap's checksum, the same with and
 * without Lethe; a failed check prints what went wrong and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#define PAGE   4096u
#define ROUNDS 3

enum kind { SEM, COND, TIMEDLOCK, RDLOCK, BARRIER, C11COND, KINDS };
static const char *const kind_name[KINDS] = {"semaphore", "condvar", "timedlock",
                                             "rwlock",    "barrier", "c11 condvar"};

struct shared {
    sem_t sem;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    pthread_rwlock_t rwlock;
    pthread_barrier_t barrier;
    mtx_t c11_mutex;
    cnd_t c11_cond;
    int ready; /* under the mutex */
    int woken;
};

static volatile sig_atomic_t interrupts;
static uint64_t *churn;
static size_t churn_words;

static void on_usr1(int sig)
{
    (void)sig;
    interrupts++;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "app_sync: %s: %s\n", what, strerror(err));
    exit(1);
}

/* Both sides of the barrier: one of them is told it is the serial thread. */
static void barrier_wait_or_die(pthread_barrier_t *b)
{
    int rc = pthread_barrier_wait(b);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD)
        die("pthread_barrier_wait", rc);
}

static struct timespec far_deadline(clockid_t clk)
{
    struct timespec t;
    clock_gettime(clk, &t);
    t.tv_sec += 120;
    return t;
}

struct waiter {
    enum kind kind;
    struct shared *s;
    pid_t tid;
};

static void *wait_on(void *arg)
{
    struct waiter *w = arg;
    struct shared *s = w->s;
    __atomic_store_n(&w->tid, gettid(), __ATOMIC_RELEASE);
    int rc = 0;
    switch (w->kind) {
    case SEM:
        while ((rc = sem_wait(&s->sem)) != 0 && errno == EINTR)
            ;
        if (rc != 0)
            die("sem_wait", errno);
        break;
    case COND:
        pthread_mutex_lock(&s->mutex);
        while (!s->ready)
            if ((rc = pthread_cond_wait(&s->cond, &s->mutex)) != 0)
                die("pthread_cond_wait", rc);
        pthread_mutex_unlock(&s->mutex);
        break;
    case TIMEDLOCK: {
        struct timespec t = far_deadline(CLOCK_REALTIME);
        if ((rc = pthread_mutex_timedlock(&s->mutex, &t)) != 0)
            die("pthread_mutex_timedlock", rc);
        pthread_mutex_unlock(&s->mutex);
        break;
    }
    case RDLOCK:
        if ((rc = pthread_rwlock_rdlock(&s->rwlock)) != 0)
            die("pthread_rwlock_rdlock", rc);
        pthread_rwlock_unlock(&s->rwlock);
        break;
    case BARRIER:
        barrier_wait_or_die(&s->barrier);
        break;
    case C11COND:
        mtx_lock(&s->c11_mutex);
        while (!s->ready)
            if (cnd_wait(&s->c11_cond, &s->c11_mutex) != thrd_success)
                die("cnd_wait", EINVAL);
        mtx_unlock(&s->c11_mutex);
        break;
    default:
        break;
    }
    __atomic_store_n(&s->woken, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Whether thread tid sleeps (state S in /proc): it has reached its futex wait. */
static int sleeping(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'S';
}

static void churn_heap(uint64_t round)
{
    for (size_t i = 0; i < churn_words; i += PAGE / 8)
        churn[i] = (i * 0x9e3779b97f4a7c15ULL) ^ round;
}

static uint64_t churn_sum(void)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < churn_words; i += PAGE / 8)
        sum += churn[i];
    return sum;
}

static void run_kind(enum kind k, uint64_t *round)
{
    struct shared *s = aligned_alloc(PAGE, PAGE);
    if (!s)
        die("aligned_alloc", ENOMEM);
    memset(s, 0, PAGE);
    sem_init(&s->sem, 0, 0);
    pthread_mutex_init(&s->mutex, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_rwlock_init(&s->rwlock, NULL);
    pthread_barrier_init(&s->barrier, NULL, 2);
    mtx_init(&s->c11_mutex, mtx_plain);
    cnd_init(&s->c11_cond);
    if (k == TIMEDLOCK)
        pthread_mutex_lock(&s->mutex);
    if (k == RDLOCK)
        pthread_rwlock_wrlock(&s->rwlock);

    struct waiter w = {.kind = k, .s = s};
    pthread_t t;
    int rc = pthread_create(&t, NULL, wait_on, &w);
    if (rc != 0)
        die("pthread_create", rc);
    pid_t tid;
    while ((tid = __atomic_load_n(&w.tid, __ATOMIC_ACQUIRE)) == 0)
        sched_yield();
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < 2000 && !sleeping(tid); i++)
            usleep(1000);
        churn_heap(++*round);
        if ((rc = pthread_kill(t, SIGUSR1)) != 0)
            die("pthread_kill", rc);
    }
    for (int i = 0; i < 2000 && !sleeping(tid); i++)
        usleep(1000);
    churn_heap(++*round);
    if (__atomic_load_n(&s->woken, __ATOMIC_ACQUIRE)) {
        fprintf(stderr, "app_sync: the %s waiter woke before it was released\n", kind_name[k]);
        exit(1);
    }
    switch (k) {
    case SEM:
        sem_post(&s->sem);
        break;
    case COND:
        pthread_mutex_lock(&s->mutex);
        s->ready = 1;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mutex);
        break;
    case TIMEDLOCK:
        pthread_mutex_unlock(&s->mutex);
        break;
    case RDLOCK:
        pthread_rwlock_unlock(&s->rwlock);
        break;
    case BARRIER:
        barrier_wait_or_die(&s->barrier);
        break;
    case C11COND:
        mtx_lock(&s->c11_mutex);
        s->ready = 1;
        cnd_broadcast(&s->c11_cond);
        mtx_unlock(&s->c11_mutex);
        break;
    default:
        break;
    }
    pthread_join(t, NULL);
    printf("%s: woken once released\n", kind_name[k]);
    pthread_barrier_destroy(&s->barrier);
    free(s);
}

int main(int argc, char **argv)
{
    if (argc != 2 || atoi(argv[1]) <= 0) {
        fprintf(stderr, "usage: app_sync MIB\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    churn_words = (size_t)atoi(argv[1]) * 1024 * 1024 / 8;
    churn = malloc(churn_words * 8);
    if (!churn)
        die("malloc", ENOMEM);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    uint64_t round = 0;
    for (int k = 0; k < KINDS; k++)
        run_kind((enum kind)k, &round);
    if (interrupts != KINDS * ROUNDS) {
        fprintf(stderr, "app_sync: %d interrupts handled, %d sent\n", (int)interrupts,
                KINDS * ROUNDS);
        return 1;
    }
    printf("interrupts %d, heap checksum %016llx\n", (int)interrupts,
           (unsigned long long)churn_sum());
    return 0;
}
