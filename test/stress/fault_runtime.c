/* fault_runtime.c — the guest runtime under concurrency, as a plain program so that it also
 * runs under ThreadSanitizer (where Criterion cannot start).
 *
 * For each delivery mode and move/dirty path: reader threads touch random pages and check
 * each page's content (the stub core serves vpn-derived content); a writer thread owns a
 * range and checks that its own writes survive; a demoter thread soft-unmaps random
 * resident pages (and parked pages are mapped back on touch); a releaser madvises random
 * pages of the readers' range away (the stub refills them on the next touch); a scanner
 * runs dirty scans over everything. In signal mode a chainer thread also swaps the handler
 * that a SIGBUS outside the region is chained to (lethe_fault_sigbus_chain, as liblethe's
 * sigaction wrapper does) between two counting ones, while a sender thread raises SIGBUS at
 * itself: every raised SIGBUS must reach one of them, never the default action. Exit status
 * 0 when no thread ever saw wrong content and no SIGBUS was lost, 1 otherwise; a watchdog
 * turns a hang into a failure (2).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../test_fault_stub.h"

#ifdef LETHE_TSAN
#define DEFAULT_SECONDS 0.6
#else
#define DEFAULT_SECONDS 0.25
#endif

#define READ_PAGES  1024 /* pages [0, READ_PAGES): readers, demoter, releaser */
#define WRITE_BASE  2048 /* pages [WRITE_BASE, +WRITE_PAGES): the writer's own */
#define WRITE_PAGES 256

struct run {
    struct stub_core *c;
    atomic_bool stop;
    atomic_uint_fast64_t bad;
    atomic_uint_fast64_t reads, writes, parks, releases, scans;
    bool events; /* application events are subscribed: the releaser may madvise */
    atomic_uint_fast64_t raised, chains;
};

static atomic_uint_fast64_t chained_caught;

static void caught_info(int sig, siginfo_t *si, void *uc)
{
    atomic_fetch_add(&chained_caught, 1);
}

static void caught_plain(int sig)
{
    atomic_fetch_add(&chained_caught, 1);
}

/* Swaps the chained SIGBUS handler between the two counting ones. */
static void *chainer(void *arg)
{
    struct run *run = arg;
    for (unsigned i = 0; !atomic_load(&run->stop); i++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof(sa));
        if (i % 2) {
            sa.sa_sigaction = caught_info;
            sa.sa_flags = SA_SIGINFO;
        } else {
            sa.sa_handler = caught_plain;
        }
        if (lethe_fault_sigbus_chain(&sa, &old) != 0 ||
            ((old.sa_flags & SA_SIGINFO) ? (void *)old.sa_sigaction : (void *)old.sa_handler) ==
                (void *)SIG_DFL)
            atomic_fetch_add(&run->bad, 1);
        atomic_fetch_add(&run->chains, 1);
    }
    return NULL;
}

/* Raises SIGBUS at itself: each one is delivered before raise returns. */
static void *sender(void *arg)
{
    struct run *run = arg;
    while (!atomic_load(&run->stop)) {
        raise(SIGBUS);
        atomic_fetch_add(&run->raised, 1);
        usleep(50);
    }
    return NULL;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *reader(void *arg)
{
    struct run *run = arg;
    uint64_t seed = (uint64_t)(uintptr_t)&seed | 1;
    lethe_fault_thread_init();
    while (!atomic_load(&run->stop)) {
        uint64_t vpn = next_rand(&seed) % READ_PAGES;
        if (!stub_check(vpn, stub_page(run->c, vpn))) {
            fprintf(stderr, "reader: page %llu has wrong content\n", (unsigned long long)vpn);
            atomic_fetch_add(&run->bad, 1);
        }
        atomic_fetch_add_explicit(&run->reads, 1, memory_order_relaxed);
    }
    return NULL;
}

static void *writer(void *arg)
{
    struct run *run = arg;
    uint64_t seed = 88172645463325252ULL;
    uint64_t value[WRITE_PAGES] = {0};
    lethe_fault_thread_init();
    for (uint64_t i = 0; i < WRITE_PAGES; i++) /* first touch: the stub's content */
        value[i] = stub_word(WRITE_BASE + i, 0);
    while (!atomic_load(&run->stop)) {
        uint64_t i = next_rand(&seed) % WRITE_PAGES;
        volatile uint64_t *w = (volatile uint64_t *)stub_page(run->c, WRITE_BASE + i);
        if (*w != value[i]) {
            fprintf(stderr, "writer: page %llu lost a write\n",
                    (unsigned long long)(WRITE_BASE + i));
            atomic_fetch_add(&run->bad, 1);
        }
        value[i] = next_rand(&seed);
        *w = value[i];
        atomic_fetch_add_explicit(&run->writes, 1, memory_order_relaxed);
    }
    return NULL;
}

/* Demotes random resident pages of both ranges (as the core's rebalancer would), with the
 * stub's page lock held across the move, and frees the slot of a page it finds mapped back. */
static void *demoter(void *arg)
{
    struct run *run = arg;
    struct stub_core *c = run->c;
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    while (!atomic_load(&run->stop)) {
        uint64_t k = next_rand(&seed) % (READ_PAGES + WRITE_PAGES);
        uint64_t vpn = k < READ_PAGES ? k : WRITE_BASE + (k - READ_PAGES);
        stub_lock(c, vpn);
        if (atomic_load(&c->state[vpn]) == STUB_RESIDENT) {
            uint64_t bm[1];
            lethe_page_scan_dirty(c->r, vpn, 1, bm); /* read the dirty bit before the move */
            int rc = lethe_page_soft_unmap(c->r, vpn, vpn);
            if (rc == 0) {
                c->frame[vpn] = vpn;
                atomic_store(&c->state[vpn], STUB_PARKED);
                atomic_fetch_add_explicit(&run->parks, 1, memory_order_relaxed);
            } else if (rc != -ENOENT) {
                fprintf(stderr, "demoter: soft_unmap %llu: %s\n", (unsigned long long)vpn,
                        strerror(-rc));
                atomic_fetch_add(&run->bad, 1);
            }
        }
        stub_unlock(c, vpn);
    }
    return NULL;
}

static void *releaser(void *arg)
{
    struct run *run = arg;
    uint64_t seed = 0xDEADBEEFCAFEULL;
    while (!atomic_load(&run->stop)) {
        uint64_t vpn = next_rand(&seed) % (READ_PAGES - 4);
        madvise(stub_page(run->c, vpn), 4 * LETHE_PAGE_SIZE, MADV_DONTNEED);
        atomic_fetch_add_explicit(&run->releases, 1, memory_order_relaxed);
        usleep(200);
    }
    return NULL;
}

static void *scanner(void *arg)
{
    struct run *run = arg;
    static uint64_t bm[(WRITE_BASE + WRITE_PAGES) / 64];
    while (!atomic_load(&run->stop)) {
        int64_t n = lethe_page_scan_dirty(run->c->r, 0, WRITE_BASE + WRITE_PAGES, bm);
        if (n < 0) {
            fprintf(stderr, "scanner: %s\n", strerror((int)-n));
            atomic_fetch_add(&run->bad, 1);
        }
        atomic_fetch_add_explicit(&run->scans, 1, memory_order_relaxed);
        usleep(500);
    }
    return NULL;
}

static int run_case(enum lethe_delivery d, unsigned vcpus, unsigned readers, bool fb_move,
                    bool fb_dirty, double seconds)
{
    struct lethe_region_params p = stub_params(d, vcpus);
    p.force_fallback_move = fb_move;
    p.force_fallback_dirty = fb_dirty;
    struct run run = {0};
    run.c = stub_start(&p);
    if (!run.c) {
        fprintf(stderr, "region_create: %s\n", strerror(errno));
        return 1;
    }
    /* The copy fallback needs pages to stay present while it copies them: no madvise. */
    run.events = lethe_region_has_move(run.c->r);
    pthread_t t[14];
    unsigned n = 0;
    for (unsigned i = 0; i < readers; i++)
        pthread_create(&t[n++], NULL, reader, &run);
    pthread_create(&t[n++], NULL, writer, &run);
    pthread_create(&t[n++], NULL, demoter, &run);
    pthread_create(&t[n++], NULL, scanner, &run);
    if (run.events)
        pthread_create(&t[n++], NULL, releaser, &run);
    bool chaining = d == LETHE_DELIVERY_SIGNAL;
    struct sigaction first = {.sa_handler = caught_plain}, before;
    if (chaining) {
        atomic_store(&chained_caught, 0);
        if (lethe_fault_sigbus_chain(&first, &before) != 0) {
            fprintf(stderr, "the runtime's SIGBUS handler is not installed\n");
            return 1;
        }
        pthread_create(&t[n++], NULL, chainer, &run);
        pthread_create(&t[n++], NULL, sender, &run);
    }
    usleep((useconds_t)(seconds * 1e6));
    /* Progress is checked below, not speed: on a loaded machine a thread may not have been
     * scheduled (or finished its first fault) yet, so give it up to 10 s more. */
    for (unsigned waited = 0;
         (atomic_load(&run.reads) == 0 || atomic_load(&run.writes) == 0) && waited < 1000; waited++)
        usleep(10000);
    atomic_store(&run.stop, true);
    for (unsigned i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    struct lethe_fault_stats st;
    lethe_region_get_stats(run.c->r, &st);
    int ok = run.bad == 0 && run.reads > 0 && run.writes > 0;
    if (chaining) {
        lethe_fault_sigbus_chain(&before, NULL);
        uint64_t raised = atomic_load(&run.raised), caught = atomic_load(&chained_caught);
        printf("  chained SIGBUS: %lu raised, %lu caught, %lu handler swaps\n",
               (unsigned long)raised, (unsigned long)caught, (unsigned long)run.chains);
        ok = ok && raised > 0 && caught == raised && run.chains > 0;
    }
    printf("%s: %s, %u vCPUs, %u readers, %s: %lu reads, %lu writes, %lu parks, %lu map-backs, "
           "%lu releases, %lu scans, %lu faults, %lu retries, %lu events\n",
           ok ? "ok" : "FAIL", lethe_delivery_name(d), vcpus, readers, lethe_region_paths(run.c->r),
           (unsigned long)run.reads, (unsigned long)run.writes, (unsigned long)run.parks,
           (unsigned long)atomic_load(&run.c->map_backs), (unsigned long)run.releases,
           (unsigned long)run.scans, (unsigned long)st.faults, (unsigned long)st.retries,
           (unsigned long)st.events);
    fflush(stdout);
    stub_stop(run.c);
    return ok ? 0 : 1;
}

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "fault_runtime: hung (watchdog)\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) {
    }
    _exit(2);
}

int main(void)
{
    lethe_log_init("fault_runtime");
    signal(SIGALRM, watchdog);
    const char *env = getenv("LETHE_STRESS_SECONDS");
    double seconds = env ? atof(env) : DEFAULT_SECONDS;
    int failed = 0;
    alarm((unsigned)(seconds * 8 * 20) + 60);
    for (int d = 0; d < 2; d++) {
        enum lethe_delivery delivery = d ? LETHE_DELIVERY_SIGNAL : LETHE_DELIVERY_THREAD;
        failed |= run_case(delivery, 2, 1, false, false, seconds);
        failed |= run_case(delivery, 2, 6, false, false, seconds);
        failed |= run_case(delivery, 1, 4, true, false, seconds);
        failed |= run_case(delivery, 2, 4, false, true, seconds);
    }
    return failed;
}
