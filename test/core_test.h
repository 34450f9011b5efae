/* core_test.h — helpers shared by the swapper's tests (test_core*.c, test_evict*.c,
 * test_stress*.c, test_reserve*.c): a small config on the `local` transport, and page
 * contents that are a function of (page number, version). */
#ifndef LETHE_CORE_TEST_H
#define LETHE_CORE_TEST_H

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/lethe.h"
#include "core/log.h"

#define PG 4096UL

static inline struct lethe_config core_test_config(enum lethe_delivery delivery,
                                                   enum lethe_reclaim reclaim, uint64_t cache,
                                                   uint64_t region)
{
    struct lethe_config c;
    lethe_config_defaults(&c);
    c.transport = LETHE_TRANSPORT_LOCAL;
    c.cache_size = cache;
    c.region_size = region;
    c.remote_size = region;
    c.fault_delivery = delivery;
    c.reclaim = reclaim;
    c.vcpus = 2;
    c.shards = 4;
    c.pin_vcpus = false;
    c.memnode_embedded = false;
    c.log_level = LETHE_LOG_WARN;
    return c;
}

static inline uint64_t core_test_word(uint64_t page, uint64_t version, uint64_t i)
{
    uint64_t x = (page * 0x9e3779b97f4a7c15ULL) ^ (version * 0xc2b2ae3d27d4eb4fULL) ^ (i + 1);
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    return x ^ (x >> 29);
}

/* Word 0 is the page number, word 1 the version, the rest depends on both. */
static inline void core_test_fill(void *p, uint64_t page, uint64_t version)
{
    uint64_t *w = p;
    __atomic_store_n(&w[0], page, __ATOMIC_RELAXED); /* other threads may peek at word 0 */
    w[1] = version;
    for (uint64_t i = 2; i < PG / 8; i++)
        w[i] = core_test_word(page, version, i);
}

/* 0 when the page holds (page, version); else the index of the first wrong word + 1. */
static inline unsigned core_test_check(const void *p, uint64_t page, uint64_t version)
{
    const volatile uint64_t *w = p;
    if (w[0] != page)
        return 1;
    if (w[1] != version)
        return 2;
    for (uint64_t i = 2; i < PG / 8; i++)
        if (w[i] != core_test_word(page, version, i))
            return (unsigned)i + 1;
    return 0;
}

/* xorshift64: the stress programs' random numbers (the seed must not be 0). */
static inline uint64_t core_test_rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* One step of churner `id` of `ways`, which owns the pages p of the n at base with
 * p % ways == id: a random page of its own is checked against its last version (version[p],
 * the churner's own array; 0: never written) and written with the next. Returns whether the
 * check held. */
static inline bool core_test_churn(char *base, unsigned n, unsigned ways, unsigned id,
                                   uint64_t *seed, uint64_t *version)
{
    unsigned pg = (unsigned)(core_test_rnd(seed) % (n / ways)) * ways + id;
    char *page = base + (uint64_t)pg * PG;
    bool ok = version[pg] == 0 || core_test_check(page, pg, version[pg]) == 0;
    core_test_fill(page, pg, ++version[pg]);
    return ok;
}

static const char *core_test_program = "stress";

static inline void core_test_watchdog(int sig)
{
    (void)sig;
    static const char msg[] = ": hung (watchdog)\n";
    if (write(2, core_test_program, strlen(core_test_program)) < 0 ||
        write(2, msg, sizeof(msg) - 1) < 0) {
    }
    _exit(2);
}

/* A stress program's main: one case per fault delivery × reclaim mode, each under a watchdog,
 * LETHE_STRESS_SECONDS (else `seconds`) long. A case answers 0 (passed), 1 (failed) or 77
 * (skipped, with its reason printed: the program stops there and answers 77). */
static inline int core_test_cases(const char *program, double seconds,
                                  int (*run_case)(enum lethe_delivery, enum lethe_reclaim, double))
{
    core_test_program = program;
    lethe_log_init(program);
    signal(SIGALRM, core_test_watchdog);
    const char *env = getenv("LETHE_STRESS_SECONDS");
    if (env)
        seconds = atof(env);
    static const enum lethe_delivery deliveries[] = {LETHE_DELIVERY_SIGNAL, LETHE_DELIVERY_THREAD};
    static const enum lethe_reclaim reclaims[] = {LETHE_RECLAIM_REBALANCER, LETHE_RECLAIM_DIRECT};
    int failed = 0;
    for (unsigned d = 0; d < 2; d++)
        for (unsigned rc = 0; rc < 2; rc++) {
            alarm((unsigned)(seconds * 20) + 60);
            int res = run_case(deliveries[d], reclaims[rc], seconds);
            alarm(0);
            if (res == 77)
                return 77;
            failed |= res;
        }
    return failed;
}

static inline int core_test_is_zero(const void *p)
{
    const volatile uint64_t *w = p;
    for (uint64_t i = 0; i < PG / 8; i++)
        if (w[i])
            return 0;
    return 1;
}

#endif
