/* core_fork.c — fork while the swapper works: threads churn pages through a small cache while
 * the main thread forks children again and again, in both deliveries and both reclaim modes.
 *
 * Half of the region's pages are written once before the churn and never again ("stable"):
 * with a cache of a tenth of the pages most of them are out, so every child (which execs
 * nothing) swaps them in from the parent's slots and checks each one. The churners keep
 * checking their own pages in the parent, whose write-backs go to fresh slots while a child
 * may read (core/fork.c). A fork must wait for no page in flight and never for itself; the
 * children's slots must be released once they are gone. Exit status 0 when every check held,
 * 1 otherwise. A plain program, so that it runs under ThreadSanitizer too;
 * LETHE_STRESS_SECONDS sets the time per case. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core_test.h"

#ifdef LETHE_TSAN
#define DEFAULT_SECONDS 1.0
#else
#define DEFAULT_SECONDS 0.4
#endif

#define STABLE_PAGES 384
#define CHURN_PAGES  384
#define CHURNERS     2

struct run {
    struct lethe *l;
    char *base;               /* STABLE_PAGES stable pages, then CHURN_PAGES churned ones */
    int stop;                 /* atomic */
    unsigned long mismatches; /* atomic adds */
};

struct churner {
    struct run *r;
    unsigned id;
    uint64_t seed;
    uint64_t version[CHURN_PAGES];
};

static void *churn(void *arg)
{
    struct churner *c = arg;
    struct run *r = c->r;
    char *base = r->base + STABLE_PAGES * PG;
    while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED))
        if (!core_test_churn(base, CHURN_PAGES, CHURNERS, c->id, &c->seed, c->version))
            __atomic_add_fetch(&r->mismatches, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* In the child: every stable page, read through the parent's slots. */
static int child_checks(const struct run *r)
{
    for (unsigned p = 0; p < STABLE_PAGES; p++)
        if (core_test_check(r->base + (uint64_t)p * PG, p, 1) != 0)
            return 1;
    return 0;
}

static int run_case(enum lethe_delivery d, enum lethe_reclaim rc, double seconds)
{
    struct lethe_config cfg =
        core_test_config(d, rc, 80 * PG, 4ULL << 20); /* 80 frames, 1024 region pages */
    /* while a child may read, every write-back takes a fresh slot: room for that */
    cfg.remote_size = 64ULL << 20;
    struct run r = {0};
    int err = lethe_start(&cfg, &r.l);
    if (err < 0) {
        printf("core_fork: SKIPPED: the runtime does not start here (%d)\n", err);
        return 77;
    }
    r.base = lethe_extent_alloc(r.l, (STABLE_PAGES + CHURN_PAGES) * PG, 0);
    for (unsigned p = 0; p < STABLE_PAGES; p++)
        core_test_fill(r.base + (uint64_t)p * PG, p, 1);
    struct churner c[CHURNERS];
    pthread_t th[CHURNERS];
    for (unsigned i = 0; i < CHURNERS; i++) {
        c[i] = (struct churner){.r = &r, .id = i, .seed = 0x9e3779b97f4a7c15ULL + i};
        pthread_create(&th[i], NULL, churn, &c[i]);
    }
    unsigned forks = 0, failed_children = 0;
    double deadline = (double)time(NULL) + seconds + 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        pid_t pid = fork();
        if (pid < 0) {
            perror("core_fork: fork");
            break;
        }
        if (pid == 0)
            _exit(child_checks(&r));
        int st;
        waitpid(pid, &st, 0);
        forks++;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed_children++;
        lethe_fork_reap(r.l);
        clock_gettime(CLOCK_MONOTONIC, &t1);
    } while ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9 < seconds &&
             (double)time(NULL) < deadline);
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < CHURNERS; i++)
        pthread_join(th[i], NULL);
    struct lethe_stats st;
    lethe_get_stats(r.l, &st);
    /* the parent's own view is intact too */
    unsigned bad_stable = 0;
    for (unsigned p = 0; p < STABLE_PAGES; p++)
        bad_stable += core_test_check(r.base + (uint64_t)p * PG, p, 1) != 0;
    lethe_stop(r.l);
    const char *dn = d == LETHE_DELIVERY_SIGNAL ? "signal" : "thread";
    const char *rn = rc == LETHE_RECLAIM_DIRECT ? "direct" : "rebalancer";
    bool ok = forks > 0 && failed_children == 0 && r.mismatches == 0 && bad_stable == 0 &&
              st.swap_ins > 0;
    printf("core_fork %s/%s: %u forks, %u children failed, %lu mismatches, %u stable pages "
           "wrong, %llu swap-ins: %s\n",
           dn, rn, forks, failed_children, r.mismatches, bad_stable,
           (unsigned long long)st.swap_ins, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

int main(void)
{
    return core_test_cases("core_fork", DEFAULT_SECONDS, run_case);
}
