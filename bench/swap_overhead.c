/* swap_overhead.c — bin/swap-overhead: what a swap-in costs beyond the bare fault round trip.
 *
 * For each delivery mode (thread, signal) and reclaim mode (rebalancer, direct), on the
 * `local` transport (a remote read is one memcpy, so what remains is Lethe's own cost):
 *  1. baseline: first touches of fresh pages while frames are free — the fault round trip of
 *     that delivery mode plus Lethe's cheapest path (take a free frame, install a zero page);
 *  2. steady state: a working set twice the cache (cache = 50% of it), uniformly random
 *     accesses, half reads and half writes. Before each access the page's state is peeked
 *     from the page table, so each faulting access is classed as a swap-in (the page was
 *     remote) or a soft hit (it was parked).
 * Swap-in overhead = median swap-in latency - median first-touch latency, both measured in
 * the same run. It includes the share of eviction the vCPU does itself (reactive) and the
 * remote read and install; the rebalancer's own work runs on the other CPU.
 * Also prints the metadata (page table, frame table, shards, ...) as a share of the managed
 * bytes, for this run's sizes and for the default configuration (16 GiB region, 512 MiB cache),
 * and first, what the page checksum costs (verified at every swap-in, computed at every
 * write-back and clean drop): ns per 4 KiB page for the implementation this CPU runs and for the
 * portable one, beside a 4 KiB memcpy: the fastest and the median of 21 rounds of 20000 pages
 * (on a loaded machine the fastest round is the cost, the median shows the load).
 *
 * Usage: swap-overhead [accesses (default 200000)] [cache MiB (default 32)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/log.h"

#define PG 4096UL

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

struct samples {
    uint32_t *ns;
    size_t n, cap;
};

static void add(struct samples *s, uint64_t ns)
{
    if (s->n < s->cap)
        s->ns[s->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static double pctl(struct samples *s, double q)
{
    if (s->n == 0)
        return 0;
    qsort(s->ns, s->n, sizeof(s->ns[0]), cmp_u32);
    size_t i = (size_t)(q * (double)(s->n - 1));
    return s->ns[i] / 1000.0;
}

static double mean(const struct samples *s)
{
    double t = 0;
    for (size_t i = 0; i < s->n; i++)
        t += s->ns[i];
    return s->n ? t / (double)s->n / 1000.0 : 0;
}

struct cost {
    double min, median;
};

/* Fastest and median round of the mean ns per call of fn over pages of a 64-page
 * (L2-resident) buffer; each page is changed before it is hashed, as a freshly read page
 * would be. */
static struct cost checksum_ns(uint64_t (*fn)(const void *), uint64_t *buf)
{
    enum { ROUNDS = 21, CALLS = 20000 };
    double r[ROUNDS];
    uint64_t sink = 0;
    for (unsigned k = 0; k < ROUNDS; k++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < CALLS; i++) {
            uint64_t *page = buf + (i % 64) * (PG / 8);
            page[i % (PG / 8)] += i;
            sink += fn(page);
        }
        r[k] = (double)(now_ns() - t0) / CALLS;
    }
    for (unsigned i = 1; i < ROUNDS; i++) /* insertion sort */
        for (unsigned j = i; j > 0 && r[j - 1] > r[j]; j--) {
            double t = r[j];
            r[j] = r[j - 1];
            r[j - 1] = t;
        }
    __atomic_store_n(&buf[0], buf[0] + (sink & 1), __ATOMIC_RELAXED); /* keep the calls */
    return (struct cost){r[0], r[ROUNDS / 2]};
}

static uint64_t copy_page(const void *page)
{
    static uint64_t dst[PG / 8] __attribute__((aligned(64)));
    memcpy(dst, page, PG);
    __asm__ volatile("" : : "r"(dst) : "memory");
    return dst[0];
}

static void checksum_cost(void)
{
    uint64_t *buf = aligned_alloc(PG, 64 * PG);
    if (!buf)
        return;
    for (size_t i = 0; i < 64 * PG / 8; i++)
        buf[i] = i * 0x9e3779b97f4a7c15ULL;
    struct cost fast = checksum_ns(lethe_page_checksum, buf);
    struct cost portable = checksum_ns(lethe_page_checksum_portable, buf);
    struct cost copy = checksum_ns(copy_page, buf);
    printf("page checksum, ns per 4 KiB page, fastest (median) round: %.1f (%.1f) %s, %.1f (%.1f) "
           "portable; 4 KiB memcpy %.1f (%.1f)\n",
           fast.min, fast.median, lethe_page_checksum_impl(), portable.min, portable.median,
           copy.min, copy.median);
    free(buf);
}

static struct lethe_config config(enum lethe_delivery d, enum lethe_reclaim r, uint64_t cache,
                                  uint64_t region)
{
    struct lethe_config c;
    lethe_config_defaults(&c);
    c.transport = LETHE_TRANSPORT_LOCAL;
    c.memnode_embedded = false;
    c.cache_size = cache;
    c.region_size = region;
    c.remote_size = region;
    c.fault_delivery = d;
    c.reclaim = r;
    c.log_level = LETHE_LOG_WARN;
    return c;
}

static int run(enum lethe_delivery d, enum lethe_reclaim r, uint64_t cache, size_t accesses)
{
    uint64_t ws_pages = 2 * cache / PG;
    uint64_t base_pages = 4096;
    struct lethe_config c = config(d, r, cache, (ws_pages + base_pages) * PG * 2);
    struct lethe *l = NULL;
    int rc = lethe_start(&c, &l);
    if (rc < 0) {
        fprintf(stderr, "lethe_start: %s\n", strerror(-rc));
        return 1;
    }
    struct samples zero = {calloc(base_pages, 4), 0, base_pages};
    struct samples swapin = {calloc(accesses, 4), 0, accesses};
    struct samples soft = {calloc(accesses, 4), 0, accesses};

    /* 1. first touches with free frames (fewer pages than frames) */
    char *fresh = lethe_extent_alloc(l, base_pages * PG, 0);
    uint64_t nzero = base_pages < cache / PG / 2 ? base_pages : cache / PG / 2;
    for (uint64_t i = 0; i < nzero; i++) {
        uint64_t t0 = now_ns();
        (void)*(volatile char *)(fresh + i * PG);
        add(&zero, now_ns() - t0);
    }
    lethe_extent_free(l, fresh, base_pages * PG);

    /* 2. working set twice the cache, filled, then uniform random accesses */
    char *ws = lethe_extent_alloc(l, ws_pages * PG, 0);
    for (uint64_t i = 0; i < ws_pages; i++)
        *(uint64_t *)(void *)(ws + i * PG) = i;
    struct lethe_stats before;
    lethe_get_stats(l, &before);
    uint64_t seed = 0x853c49e6748fea9bULL, bad = 0;
    uint64_t t_start = now_ns();
    for (size_t k = 0; k < accesses; k++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        uint64_t pg = (seed >> 1) % ws_pages;
        unsigned st =
            lethe_pte_state(lethe_pte_load(&l->pt[lethe_region_vpn(l->region, ws + pg * PG)]));
        uint64_t *w = (uint64_t *)(void *)(ws + pg * PG);
        uint64_t t0 = now_ns();
        if (seed & 1)
            w[1] = k;
        else
            bad += *(volatile uint64_t *)w != pg;
        uint64_t dt = now_ns() - t0;
        if (st == LETHE_PS_REMOTE)
            add(&swapin, dt);
        else if (st == LETHE_PS_PARKED)
            add(&soft, dt);
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    struct lethe_stats s;
    lethe_get_stats(l, &s);

    double z50 = pctl(&zero, 0.5), s50 = pctl(&swapin, 0.5), h50 = pctl(&soft, 0.5);
    printf("%-6s %-10s first touch %6.2f us | swap-in %6.2f us (mean %6.2f, p99 %7.2f, "
           "p99.9 %7.2f, max %8.2f) | "
           "soft hit %6.2f us | overhead/swap-in %5.2f us | %.0f accesses/s, %lu swap-ins, "
           "%lu soft hits, %lu reactive + %lu proactive evictions%s\n",
           lethe_delivery_name(d), lethe_reclaim_name(r), z50, s50, mean(&swapin),
           pctl(&swapin, 0.99), pctl(&swapin, 0.999), pctl(&swapin, 1.0), h50, s50 - z50,
           (double)accesses / secs, (unsigned long)(s.swap_ins - before.swap_ins),
           (unsigned long)(s.soft_hits - before.soft_hits),
           (unsigned long)(s.reactive_evictions - before.reactive_evictions),
           (unsigned long)(s.proactive_evictions - before.proactive_evictions),
           bad ? "  CONTENT MISMATCH" : "");
    printf("       metadata %llu KiB for %llu MiB managed = %.3f%%\n",
           (unsigned long long)(s.metadata_bytes >> 10),
           (unsigned long long)(s.region_pages * PG >> 20),
           100.0 * (double)s.metadata_bytes / (double)(s.region_pages * PG));
    free(zero.ns);
    free(swapin.ns);
    free(soft.ns);
    lethe_stop(l);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    lethe_log_init("swap-overhead");
    size_t accesses = argc > 1 ? strtoul(argv[1], NULL, 0) : 200000;
    uint64_t cache = (argc > 2 ? strtoull(argv[2], NULL, 0) : 32) << 20;
    printf("local transport, cache %llu MiB, working set %llu MiB (cache = 50%%), %zu uniform "
           "random accesses (half writes); medians\n",
           (unsigned long long)(cache >> 20), (unsigned long long)(2 * cache >> 20), accesses);
    checksum_cost();
    int failed = 0;
    static const enum lethe_delivery ds[] = {LETHE_DELIVERY_THREAD, LETHE_DELIVERY_SIGNAL};
    static const enum lethe_reclaim rs[] = {LETHE_RECLAIM_REBALANCER, LETHE_RECLAIM_DIRECT};
    for (unsigned i = 0; i < 2; i++)
        for (unsigned j = 0; j < 2; j++)
            failed |= run(ds[i], rs[j], cache, accesses);

    /* metadata share at the default sizes */
    struct lethe_config c =
        config(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT, 512UL << 20, 16UL << 30);
    c.remote_size = 4UL << 30;
    struct lethe *l = NULL;
    if (lethe_start(&c, &l) == 0) {
        struct lethe_stats s;
        lethe_get_stats(l, &s);
        printf("default sizes (16 GiB region, 512 MiB cache, 4 GiB remote, %u vCPUs): metadata "
               "%llu KiB = %.3f%% of managed bytes\n",
               l->vcpus, (unsigned long long)(s.metadata_bytes >> 10),
               100.0 * (double)s.metadata_bytes / (double)(s.region_pages * PG));
        lethe_stop(l);
    }
    return failed;
}
