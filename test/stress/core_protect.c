/* core_protect.c — pages the program protects and locks while the swapper moves them: threads
 * make one of their pages read-only (or lock it), read it, make it writable again and write
 * it, again and again, while others churn the region through a small cache, in both
 * deliveries and both reclaim modes (locks under thread delivery only: under signal delivery
 * mlock cannot bring a page in).
 *
 * A page at rest is writable and goes out like any other; protected or locked, a parked one
 * comes back by copy (UFFDIO_MOVE refuses such ranges: -EINVAL), an evicted one by its usual
 * copy, and demotion has to keep it while it is so (`held`); mprotect and mlock race with the
 * moves. Every page holds (page, version) as in the core stress tests and is checked at every
 * read. Exit status 0 when every check held, 1 otherwise, 77 when the kernel has no
 * UFFDIO_MOVE. A plain program, so that it runs under ThreadSanitizer too;
 * LETHE_STRESS_SECONDS sets the time per case. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core_test.h"

#ifdef LETHE_TSAN
#define DEFAULT_SECONDS 1.0
#else
#define DEFAULT_SECONDS 0.3
#endif

#define PROTECTED_PAGES 32
#define CHURN_PAGES     512
#define PROTECTORS      2
#define CHURNERS        2

struct run {
    struct lethe *l;
    char *base; /* PROTECTED_PAGES toggled pages, then CHURN_PAGES churned ones */
    bool may_lock; /* thread delivery: under signal delivery mlock cannot bring pages in */
    int stop;      /* atomic */
    unsigned long rounds, mismatches, syscall_errors; /* atomic adds */
};

struct thread {
    struct run *r;
    unsigned id;
    uint64_t seed;
};

static void *protector(void *arg)
{
    struct thread *t = arg;
    struct run *r = t->r;
    /* protector k owns the protected pages p with p % PROTECTORS == k */
    uint64_t version[PROTECTED_PAGES] = {0};
    while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
        unsigned pg =
            (unsigned)(core_test_rnd(&t->seed) % (PROTECTED_PAGES / PROTECTORS)) * PROTECTORS +
            t->id;
        char *page = r->base + pg * PG;
        bool lock = r->may_lock && core_test_rnd(&t->seed) % 4 == 0;
        /* At rest the page is writable, and goes out like any other. Protected (or locked)
         * first and read then, it comes back into a range UFFDIO_MOVE refuses, and stays
         * while it is read. */
        /* the system calls themselves: the sanitizers' mlock and munlock do nothing */
        if (lock ? syscall(SYS_mlock, page, PG) != 0 : mprotect(page, PG, PROT_READ) != 0)
            __atomic_add_fetch(&r->syscall_errors, 1, __ATOMIC_RELAXED);
        for (unsigned k = 0; k < 4 && version[pg]; k++) {
            if (core_test_check(page, pg, version[pg]) != 0)
                __atomic_add_fetch(&r->mismatches, 1, __ATOMIC_RELAXED);
            usleep(20);
        }
        if (lock ? syscall(SYS_munlock, page, PG) != 0
                 : mprotect(page, PG, PROT_READ | PROT_WRITE) != 0)
            __atomic_add_fetch(&r->syscall_errors, 1, __ATOMIC_RELAXED);
        core_test_fill(page, pg, ++version[pg]);
        __atomic_add_fetch(&r->rounds, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *churner(void *arg)
{
    struct thread *t = arg;
    struct run *r = t->r;
    static __thread uint64_t version[CHURN_PAGES];
    while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED))
        if (!core_test_churn(r->base + PROTECTED_PAGES * PG, CHURN_PAGES, CHURNERS, t->id, &t->seed,
                             version))
            __atomic_add_fetch(&r->mismatches, 1, __ATOMIC_RELAXED);
    return NULL;
}

static enum lethe_parking parking; /* each case runs once per parking mode */

static int run_case(enum lethe_delivery d, enum lethe_reclaim rc, double seconds)
{
    struct lethe_config c = core_test_config(d, rc, 64 * PG, 8 * 1024 * 1024);
    c.parking = parking;
    struct run r = {0};
    int err = lethe_start(&c, &r.l);
    if (err != 0) {
        printf("FAIL: lethe_start: %s\n", strerror(-err));
        return 1;
    }
    if (!strstr(lethe_paths(r.l), "UFFDIO_MOVE")) {
        lethe_stop(r.l);
        printf("SKIP: no UFFDIO_MOVE in this kernel: the copy fallback never moves pages\n");
        return 77;
    }
    bool batch = strstr(lethe_paths(r.l), "parking=batch") != NULL;
    r.may_lock = d == LETHE_DELIVERY_THREAD;
    r.base = lethe_extent_alloc(r.l, (PROTECTED_PAGES + CHURN_PAGES) * PG, 0);
    pthread_t tids[PROTECTORS + CHURNERS];
    struct thread th[PROTECTORS + CHURNERS];
    for (unsigned i = 0; i < PROTECTORS + CHURNERS; i++) {
        th[i] = (struct thread){.r = &r,
                                .id = i < PROTECTORS ? i : i - PROTECTORS,
                                .seed = 0x9e3779b97f4a7c15ULL * (i + 1)};
        pthread_create(&tids[i], NULL, i < PROTECTORS ? protector : churner, &th[i]);
    }
    usleep((useconds_t)(seconds * 1e6));
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < PROTECTORS + CHURNERS; i++)
        pthread_join(tids[i], NULL);
    mprotect(r.base, PROTECTED_PAGES * PG, PROT_READ | PROT_WRITE);
    struct lethe_stats s;
    lethe_get_stats(r.l, &s);
    lethe_stop(r.l);
    /* With one move per page a read-only page cannot leave; with batch parking it can (the
     * unmap and the copy back both work on read-only ranges): only locked pages are held. */
    bool expect_held = !batch || r.may_lock;
    int ok = r.rounds > 0 && r.mismatches == 0 && r.syscall_errors == 0 &&
             (s.held > 0 || !expect_held) && s.swap_ins > 0 && s.demotions > 0;
    printf("%s: parking=%s, %s, %s: %lu rounds, %lu mismatches, %lu failed mprotect/mlock, %lu held, "
           "%lu swap-ins, %lu demotions\n",
           ok ? "ok" : "FAIL", batch ? "batch" : "move", lethe_delivery_name(d),
           lethe_reclaim_name(rc), r.rounds,
           r.mismatches, r.syscall_errors, (unsigned long)s.held, (unsigned long)s.swap_ins,
           (unsigned long)s.demotions);
    fflush(stdout);
    return ok ? 0 : 1;
}

int main(void)
{
    parking = LETHE_PARKING_BATCH;
    int rc = core_test_cases("core_protect", DEFAULT_SECONDS, run_case);
    parking = LETHE_PARKING_MOVE;
    int rc2 = core_test_cases("core_protect", DEFAULT_SECONDS, run_case);
    return rc ? rc : rc2;
}
