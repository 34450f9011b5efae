/* core_pins.c — pins under demotion pressure: threads pin and unpin pages while others churn
 * the region through a small cache, in both deliveries and both reclaim modes.
 *
 * While a pin is held the kernel must be able to read the pinned word: a FUTEX_WAIT that
 * expects another value returns EAGAIN, never EFAULT (under signal delivery a missing page
 * gives EFAULT; under thread delivery a vCPU would serve it, so there the check is weaker).
 * Pinned pages are written only by the threads that pin them, each its own word, and read
 * back; churned pages hold (page, version) as in the core stress tests. Exit status 0 when
 * every check held, 1 otherwise. A plain program, so that it runs under ThreadSanitizer too;
 * LETHE_STRESS_SECONDS sets the time per case. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core_test.h"

#ifdef LETHE_TSAN
#define DEFAULT_SECONDS 1.0
#else
#define DEFAULT_SECONDS 0.3
#endif

#define PINNED_PAGES 16
#define CHURN_PAGES  512
#define PINNERS      4
#define CHURNERS     2
#define HOLD_PROBES  20 /* futex reads per pin, 50 us apart */

struct run {
    struct lethe *l;
    char *base; /* PINNED_PAGES pinned pages, then CHURN_PAGES churned ones */
    int stop;   /* atomic */
    unsigned long pins, efaults, wrong, mismatches, table_full; /* atomic adds */
};

struct thread {
    struct run *r;
    unsigned id;
    uint64_t seed;
};

static void *pinner(void *arg)
{
    struct thread *t = arg;
    struct run *r = t->r;
    uint64_t count = 0;
    while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
        unsigned pg = (unsigned)(core_test_rnd(&t->seed) % PINNED_PAGES);
        /* each pinner has its own word in every pinned page */
        uint32_t *word = (uint32_t *)(r->base + pg * PG) + t->id * 16;
        int tok = lethe_pin(r->l, word);
        if (tok == -ENOSPC) {
            __atomic_add_fetch(&r->table_full, 1, __ATOMIC_RELAXED);
            continue;
        }
        /* the kernel reads the word, again and again while the churners run, with no
         * user-mode access in between: only the pin keeps the page mapped */
        for (unsigned k = 0; k < HOLD_PROBES; k++) {
            long rc = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 0xdeadbeefu, NULL, NULL, 0);
            if (rc != 0 && errno == EFAULT)
                __atomic_add_fetch(&r->efaults, 1, __ATOMIC_RELAXED);
            else if (rc == 0 || errno != EAGAIN)
                __atomic_add_fetch(&r->wrong, 1, __ATOMIC_RELAXED);
            usleep(50);
        }
        uint32_t v = __atomic_load_n(word, __ATOMIC_RELAXED);
        if (v != 0 && (v >> 24) != t->id + 1)
            __atomic_add_fetch(&r->mismatches, 1, __ATOMIC_RELAXED);
        __atomic_store_n(word, ((t->id + 1) << 24) | (uint32_t)(++count & 0xffffff),
                         __ATOMIC_RELAXED);
        lethe_unpin(r->l, tok);
        __atomic_add_fetch(&r->pins, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *churner(void *arg)
{
    struct thread *t = arg;
    struct run *r = t->r;
    static __thread uint64_t version[CHURN_PAGES];
    while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED))
        if (!core_test_churn(r->base + PINNED_PAGES * PG, CHURN_PAGES, CHURNERS, t->id, &t->seed,
                             version))
            __atomic_add_fetch(&r->mismatches, 1, __ATOMIC_RELAXED);
    return NULL;
}

static int run_case(enum lethe_delivery d, enum lethe_reclaim rc, double seconds)
{
    struct lethe_config c = core_test_config(d, rc, 64 * PG, 8 * 1024 * 1024);
    struct run r = {0};
    int err = lethe_start(&c, &r.l);
    if (err != 0) {
        printf("FAIL: lethe_start: %s\n", strerror(-err));
        return 1;
    }
    r.base = lethe_extent_alloc(r.l, (PINNED_PAGES + CHURN_PAGES) * PG, 0);
    pthread_t tids[PINNERS + CHURNERS];
    struct thread th[PINNERS + CHURNERS];
    for (unsigned i = 0; i < PINNERS + CHURNERS; i++) {
        th[i] = (struct thread){
            .r = &r, .id = i < PINNERS ? i : i - PINNERS, .seed = 0x9e3779b97f4a7c15ULL * (i + 1)};
        pthread_create(&tids[i], NULL, i < PINNERS ? pinner : churner, &th[i]);
    }
    usleep((useconds_t)(seconds * 1e6));
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < PINNERS + CHURNERS; i++)
        pthread_join(tids[i], NULL);
    struct lethe_stats s;
    lethe_get_stats(r.l, &s);
    lethe_stop(r.l);
    int ok = r.pins > 0 && r.efaults == 0 && r.wrong == 0 && r.mismatches == 0 && s.swap_ins > 0 &&
             s.demotions > 0;
    printf("%s: %s, %s: %lu pins, %lu EFAULT, %lu other futex results, %lu mismatches, "
           "%lu table full, %lu swap-ins, %lu demotions\n",
           ok ? "ok" : "FAIL", lethe_delivery_name(d), lethe_reclaim_name(rc), r.pins, r.efaults,
           r.wrong, r.mismatches, r.table_full, (unsigned long)s.swap_ins,
           (unsigned long)s.demotions);
    fflush(stdout);
    return ok ? 0 : 1;
}

int main(void)
{
    return core_test_cases("core_pins", DEFAULT_SECONDS, run_case);
}
