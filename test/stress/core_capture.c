/* core_capture.c — writers racing batch parking: no write may be lost between the moment a
 * page is captured and the moment it is unmapped.
 *
 * Writer threads (2 or 4, on every CPU) each own a share of the pages and store into them as
 * fast as they can: every round reads a page's three counters (its first, middle and last
 * word), checks that they hold the value it wrote last, and writes the next value into each,
 * one store at a time. The working set is 16 times a 64-frame cache; most rounds go to a
 * few hot pages per writer, which no fault marks as used, so that demotion keeps taking
 * pages that are being written at that moment, on another CPU, between the capture and the
 * unmap, between the three stores. A lost write shows as a counter behind its owner's last value; a torn capture
 * as counters that disagree. Every delivery and reclaim mode, parking = batch; a kernel
 * without batch parking skips (77). A plain program, so that it runs under ThreadSanitizer
 * too; LETHE_STRESS_SECONDS sets the time per case. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core_test.h"

#ifdef LETHE_TSAN
#define DEFAULT_SECONDS 1.0
#else
#define DEFAULT_SECONDS 0.4
#endif

#define PAGES       1024 /* 4 MiB */
#define CACHE_PAGES 64
#define MAX_WRITERS 4
#define HOT         4 /* hot pages per writer */

static const unsigned words[3] = {0, PG / 16, PG / 8 - 1};

struct run {
    char *base;
    unsigned writers;
    int stop;                          /* atomic */
    unsigned long rounds, mismatches; /* atomic adds */
    char first[200];
    int claimed; /* atomic */
};

struct writer {
    struct run *r;
    unsigned id;
    uint64_t seed;
    uint64_t last[PAGES / 2 + 1]; /* by page index within the writer's share */
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct run *r = w->r;
    unsigned share = PAGES / r->writers;
    unsigned long rounds = 0;
    while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
        /* mostly the writer's few hot pages, stored into without a pause: they are never
         * faulted on, so they drift to the active tail and are demoted mid-write; every
         * 64th round a page anywhere, whose fault makes the cache turn over */
        uint64_t x = core_test_rnd(&w->seed);
        unsigned k = rounds % 64 != 63 ? (unsigned)(x >> 8) % HOT : (unsigned)(x >> 8) % share;
        unsigned pg = k * r->writers + w->id;
        volatile uint64_t *page = (volatile uint64_t *)(void *)(r->base + (size_t)pg * PG);
        uint64_t want = w->last[k];
        for (unsigned i = 0; i < 3; i++) {
            uint64_t got = page[words[i]];
            if (got != want) {
                __atomic_add_fetch(&r->mismatches, 1, __ATOMIC_RELAXED);
                if (!__atomic_exchange_n(&r->claimed, 1, __ATOMIC_RELAXED))
                    snprintf(r->first, sizeof(r->first),
                             "page %u word %u holds %llu, its writer last wrote %llu", pg,
                             words[i], (unsigned long long)got, (unsigned long long)want);
            }
        }
        for (unsigned i = 0; i < 3; i++)
            page[words[i]] = want + 1;
        w->last[k] = want + 1;
        rounds++;
    }
    __atomic_add_fetch(&r->rounds, rounds, __ATOMIC_RELAXED);
    return NULL;
}

static unsigned writer_count = 2;

static int run_case(enum lethe_delivery d, enum lethe_reclaim rc, double seconds)
{
    struct lethe_config c = core_test_config(d, rc, CACHE_PAGES * PG, 16 * 1024 * 1024);
    c.parking = LETHE_PARKING_BATCH;
    c.fault_around = 0;
    struct lethe *l = NULL;
    int err = lethe_start(&c, &l);
    if (err != 0) {
        printf("FAIL: lethe_start: %s\n", strerror(-err));
        return 1;
    }
    if (!strstr(lethe_paths(l), "parking=batch")) {
        lethe_stop(l);
        printf("SKIP: no batch parking on this kernel (process_madvise(MADV_DONTNEED)): %s\n",
               "nothing to race");
        return 77;
    }
    static struct run r;
    memset(&r, 0, sizeof(r));
    r.writers = writer_count;
    r.base = lethe_extent_alloc(l, PAGES * PG, 0);
    static struct writer w[MAX_WRITERS];
    pthread_t t[MAX_WRITERS];
    for (unsigned i = 0; i < r.writers; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].r = &r;
        w[i].id = i;
        w[i].seed = 0x9e3779b97f4a7c15ULL * (i + 1) + (uint64_t)d * 7 + (uint64_t)rc;
        pthread_create(&t[i], NULL, writer_main, &w[i]);
    }
    usleep((useconds_t)(seconds * 1e6));
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < r.writers; i++)
        pthread_join(t[i], NULL);
    /* a final sweep: every page holds its writer's last value */
    for (unsigned pg = 0; pg < PAGES; pg++) {
        const volatile uint64_t *page = (const volatile uint64_t *)(void *)(r.base + pg * PG);
        uint64_t want = w[pg % r.writers].last[pg / r.writers];
        for (unsigned i = 0; i < 3; i++)
            if (page[words[i]] != want) {
                r.mismatches++;
                if (!r.claimed++)
                    snprintf(r.first, sizeof(r.first), "sweep: page %u word %u holds %llu, not %llu",
                             pg, words[i], (unsigned long long)page[words[i]],
                             (unsigned long long)want);
            }
    }
    struct lethe_stats s;
    lethe_get_stats(l, &s);
    lethe_stop(l);
    int ok = r.rounds > 0 && r.mismatches == 0 && s.demotions > 0 && s.swap_ins > 0;
    printf("%s: %u writers, %s, %s: %lu rounds, %lu demotions, %lu soft hits, %lu swap-ins, "
           "%lu late writes, %lu mismatches%s%s\n",
           ok ? "ok" : "FAIL", r.writers, lethe_delivery_name(d), lethe_reclaim_name(rc), r.rounds,
           (unsigned long)s.demotions, (unsigned long)s.soft_hits, (unsigned long)s.swap_ins,
           (unsigned long)s.late_writes, r.mismatches, r.first[0] ? ": " : "", r.first);
    fflush(stdout);
    return ok ? 0 : 1;
}

int main(void)
{
    writer_count = 2;
    int rc = core_test_cases("core_capture", DEFAULT_SECONDS, run_case);
    if (rc == 77)
        return 77;
    writer_count = 4;
    int rc2 = core_test_cases("core_capture", DEFAULT_SECONDS, run_case);
    return rc ? rc : rc2;
}
