/* fault_latency.c — bin/fault-latency: what the guest runtime costs, side by side with the
 * bare mechanisms it is built on, in one run (ratios from one run are what to compare on
 * these machines; absolute times move with the host).
 *
 * Per-fault round trip (the faulting thread's clock_gettime around one write to a fresh
 * page: fault -> resolved -> resumed), median and p99, for:
 *   kernel        first-touch write fault on plain anonymous memory
 *   bare thread   a minimal handler thread (poll + read + UFFDIO_ZEROPAGE), on the other
 *                 CPU and on the same CPU as the faulting thread
 *   bare signal   a minimal SIGBUS handler doing UFFDIO_ZEROPAGE
 *   lethe thread  the runtime, fault_delivery = thread, one vCPU on the other / same CPU,
 *                 a stub core whose fault callback is lethe_page_install_zero()
 *   lethe signal  the runtime, fault_delivery = signal, same stub
 * Lethe runs without dirty tracking for these rows, so install_zero is the same
 * UFFDIO_ZEROPAGE as the bare handlers; the "+dirty" rows add dirty tracking, where
 * install_zero is UFFDIO_COPY of a zero page with MODE_WP, and compare with bare handlers
 * doing that same ioctl. Last, as a program runs: the faulting thread unpinned, signal
 * delivery, and thread delivery with one pinned vCPU per CPU (the shipped vcpus = 0,
 * pin_vcpus = yes), whose ratio to signal delivery is what issue 21 bounds.
 * Then handler-side costs per page: install_zero variants, soft_unmap in batches of
 * 1/8/64/512 contiguous pages, map_back, scan_dirty over 64/512/100k pages.
 *
 * Usage: fault-latency [-n SAMPLES]   (default 20000 faults per row)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "fault/fault.h"
#include "fault/uffd_compat.h"

#define PG LETHE_PAGE_SIZE

static unsigned samples = 20000;
#define ROUNDS 5
static int ncpus;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu % ncpus, &s);
    pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct result {
    double median_us;
    double p99_us;
};

static struct result summarize(uint64_t *ns, unsigned n)
{
    qsort(ns, n, sizeof(*ns), cmp_u64);
    struct result r = {ns[n / 2] / 1000.0, ns[(size_t)n * 99 / 100] / 1000.0};
    return r;
}

/* Writes one byte to each of n fresh pages, timing each write into ns[]. */
static void time_touches(char *base, unsigned n, uint64_t *ns)
{
    for (unsigned i = 0; i < n; i++) {
        volatile char *p = base + (size_t)i * PG;
        uint64_t t0 = now_ns();
        *p = 1;
        ns[i] = now_ns() - t0;
    }
}

static void *map_anon(size_t len)
{
    void *p =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    madvise(p, len, MADV_NOHUGEPAGE);
    return p;
}

static void bench_kernel(unsigned n, uint64_t *ns)
{
    char *m = map_anon((size_t)n * PG);
    pin(0);
    time_touches(m, n, ns);
    munmap(m, (size_t)n * PG);
}

/* --- bare userfaultfd handlers --- */

static char *zero_src;
static int bare_uffd = -1;
static bool bare_copy_wp; /* install with COPY_MODE_WP of a zero page instead of ZEROPAGE */

static int bare_install(uint64_t page)
{
    if (bare_copy_wp) {
        struct uffdio_copy c = {.dst = page,
                                .src = (uint64_t)(uintptr_t)zero_src,
                                .len = PG,
                                .mode = UFFDIO_COPY_MODE_WP};
        return ioctl(bare_uffd, UFFDIO_COPY, &c);
    }
    struct uffdio_zeropage z = {.range = {.start = page, .len = PG}};
    return ioctl(bare_uffd, UFFDIO_ZEROPAGE, &z);
}

static int bare_setup(char *m, size_t len, uint64_t features)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    struct uffdio_api api = {.api = UFFD_API, .features = features};
    if (fd < 0 || ioctl(fd, UFFDIO_API, &api) != 0) {
        perror("userfaultfd");
        exit(1);
    }
    uint64_t mode = UFFDIO_REGISTER_MODE_MISSING;
    if (features & UFFD_FEATURE_WP_ASYNC)
        mode |= UFFDIO_REGISTER_MODE_WP;
    struct uffdio_register reg = {.range = {.start = (uint64_t)(uintptr_t)m, .len = len},
                                  .mode = mode};
    if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) {
        perror("UFFDIO_REGISTER");
        exit(1);
    }
    return fd;
}

struct bare_thread {
    int uffd;
    int stop_fd;
    int cpu;
};

static void *bare_handler(void *arg)
{
    struct bare_thread *b = arg;
    pin(b->cpu);
    struct pollfd pfd[2] = {{.fd = b->uffd, .events = POLLIN},
                            {.fd = b->stop_fd, .events = POLLIN}};
    for (;;) {
        if (poll(pfd, 2, -1) < 0 && errno != EINTR)
            break;
        if (pfd[1].revents)
            break;
        struct uffd_msg m;
        if (read(b->uffd, &m, sizeof(m)) != sizeof(m))
            continue;
        if (m.event == UFFD_EVENT_PAGEFAULT)
            bare_install(m.arg.pagefault.address & ~(PG - 1));
    }
    return NULL;
}

static void bench_bare_thread(unsigned n, uint64_t *ns, int handler_cpu, bool copy_wp)
{
    size_t len = (size_t)n * PG;
    char *m = map_anon(len);
    uint64_t feat = copy_wp ? UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED : 0;
    bare_uffd = bare_setup(m, len, feat);
    bare_copy_wp = copy_wp;
    struct bare_thread b = {
        .uffd = bare_uffd, .stop_fd = eventfd(0, EFD_CLOEXEC), .cpu = handler_cpu};
    pthread_t t;
    pthread_create(&t, NULL, bare_handler, &b);
    pin(0);
    usleep(2000);
    time_touches(m, n, ns);
    uint64_t one = 1;
    if (write(b.stop_fd, &one, sizeof(one)) < 0)
        perror("write");
    pthread_join(t, NULL);
    close(b.stop_fd);
    close(bare_uffd);
    munmap(m, len);
}

static void bare_sigbus(int sig, siginfo_t *si, void *uc)
{
    bare_install((uint64_t)(uintptr_t)si->si_addr & ~(PG - 1));
}

static void bench_bare_signal(unsigned n, uint64_t *ns, bool copy_wp)
{
    size_t len = (size_t)n * PG;
    char *m = map_anon(len);
    uint64_t feat = UFFD_FEATURE_SIGBUS;
    if (copy_wp)
        feat |= UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
    bare_uffd = bare_setup(m, len, feat);
    bare_copy_wp = copy_wp;
    struct sigaction sa = {0}, old;
    sa.sa_sigaction = bare_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, &old);
    pin(0);
    time_touches(m, n, ns);
    sigaction(SIGBUS, &old, NULL);
    close(bare_uffd);
    munmap(m, len);
}

/* --- Lethe's runtime with a zero-filling stub core --- */

static int zero_fault(void *core, struct lethe_vcpu *v, uint64_t vpn, enum lethe_access a)
{
    int rc = lethe_page_install_zero(core, vpn);
    return rc == -EEXIST ? 0 : rc;
}

/* The stub's core pointer is the region itself, set once create returns (nothing faults
 * before). */
static struct lethe_region *_Atomic bench_region;

static int zero_fault_region(void *core, struct lethe_vcpu *v, uint64_t vpn, enum lethe_access a)
{
    return zero_fault(atomic_load_explicit(&bench_region, memory_order_relaxed), v, vpn, a);
}

static const struct lethe_fault_ops zero_ops = {.fault = zero_fault_region};

static struct lethe_region *lethe_start_bench(enum lethe_delivery d, bool dirty, uint64_t pages,
                                              uint64_t frames, unsigned vcpus)
{
    struct lethe_region_params p = {
        .region_size = pages * PG,
        .nframes = frames,
        .vcpus = vcpus,
        .pin_vcpus = true, /* vCPU 0 on CPU 0 */
        .delivery = d,
        .staging_pages = 1,
        .force_fallback_dirty = !dirty,
    };
    /* vCPUs are pinned within the creating thread's CPUs: give it all of them first */
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int cpu = 0; cpu < ncpus; cpu++)
        CPU_SET(cpu, &all);
    pthread_setaffinity_np(pthread_self(), sizeof(all), &all);
    struct lethe_region *r;
    int rc = lethe_region_create(&p, &zero_ops, NULL, &r);
    if (rc < 0) {
        fprintf(stderr, "lethe_region_create: %s\n", strerror(-rc));
        exit(1);
    }
    atomic_store(&bench_region, r);
    return r;
}

static void bench_lethe(unsigned n, uint64_t *ns, enum lethe_delivery d, int fault_cpu, bool dirty)
{
    struct lethe_region *r = lethe_start_bench(d, dirty, n, 16, 1);
    if (dirty && !lethe_region_has_dirty_tracking(r))
        fprintf(stderr, "warning: no dirty tracking on this kernel\n");
    pin(fault_cpu);
    if (d == LETHE_DELIVERY_SIGNAL)
        lethe_fault_thread_init();
    usleep(2000);
    time_touches(lethe_region_base(r), n, ns);
    lethe_region_destroy(r);
}

/* As a program runs: the faulting thread free to run on any CPU, and (thread delivery) one
 * vCPU pinned on each CPU, as vcpus = 0 and pin_vcpus = yes give. */
static void bench_lethe_unpinned(unsigned n, uint64_t *ns, enum lethe_delivery d)
{
    unsigned vcpus = d == LETHE_DELIVERY_THREAD && ncpus > 1 ? (unsigned)ncpus : 1;
    struct lethe_region *r = lethe_start_bench(d, false, n, 16, vcpus);
    if (d == LETHE_DELIVERY_SIGNAL)
        lethe_fault_thread_init();
    usleep(2000);
    time_touches(lethe_region_base(r), n, ns);
    lethe_region_destroy(r);
}

/* --- handler-side costs per page --- */

static double per_page_us(uint64_t ns, uint64_t pages)
{
    return pages ? ns / 1000.0 / (double)pages : 0;
}

static void bench_install_zero_variants(void)
{
    const uint64_t n = samples;
    size_t len = n * PG;
    char *m = map_anon(len);
    int fd = bare_setup(m, len, UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED);
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n / 2; i++) {
        struct uffdio_zeropage z = {.range = {.start = (uint64_t)(uintptr_t)m + i * PG, .len = PG}};
        ioctl(fd, UFFDIO_ZEROPAGE, &z);
        struct uffdio_writeprotect w = {.range = z.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
        ioctl(fd, UFFDIO_WRITEPROTECT, &w);
    }
    uint64_t t1 = now_ns();
    for (uint64_t i = n / 2; i < n; i++) {
        struct uffdio_copy c = {.dst = (uint64_t)(uintptr_t)m + i * PG,
                                .src = (uint64_t)(uintptr_t)zero_src,
                                .len = PG,
                                .mode = UFFDIO_COPY_MODE_WP};
        ioctl(fd, UFFDIO_COPY, &c);
    }
    uint64_t t2 = now_ns();
    close(fd);
    munmap(m, len);
    printf("  install_zero, write-clean: ZEROPAGE+WRITEPROTECT %.2f us/page, COPY_MODE_WP of a "
           "zero page %.2f us/page (Lethe uses the latter: it is atomic)\n",
           per_page_us(t1 - t0, n / 2), per_page_us(t2 - t1, n - n / 2));
}

static void bench_soft_unmap(void)
{
    const uint64_t total = 16384;
    struct lethe_region *r = lethe_start_bench(LETHE_DELIVERY_THREAD, true, total, total, 1);
    char *src = map_anon(total * PG);
    memset(src, 0x5a, total * PG);
    uint64_t *vpns = malloc(total * sizeof(uint64_t)), *frames = malloc(total * sizeof(uint64_t));
    for (uint64_t i = 0; i < total; i++)
        vpns[i] = frames[i] = i;
    static const unsigned batches[] = {1, 8, 64, 512};
    printf("  soft_unmap (UFFDIO_MOVE region -> slot), %llu pages in batches of contiguous "
           "runs:\n",
           (unsigned long long)total);
    for (unsigned b = 0; b < 4; b++) {
        lethe_page_install_range(r, 0, src, total);
        uint64_t t0 = now_ns();
        for (uint64_t i = 0; i < total; i += batches[b])
            lethe_page_soft_unmap_batch(r, vpns + i, frames + i, batches[b]);
        uint64_t t1 = now_ns();
        if (b == 3) {
            /* map_back one page at a time (move back, protect, wake) */
            uint64_t t2 = now_ns();
            for (uint64_t i = 0; i < total; i++)
                lethe_page_map_back(r, i, i);
            uint64_t t3 = now_ns();
            printf("    batch %3u: %.3f us/page\n", batches[b], per_page_us(t1 - t0, total));
            printf("  map_back, one page a call: %.2f us/page\n", per_page_us(t3 - t2, total));
            lethe_page_drop(r, 0, total);
        } else {
            printf("    batch %3u: %.3f us/page\n", batches[b], per_page_us(t1 - t0, total));
            lethe_page_drop_slots(r, frames, (unsigned)total);
        }
    }
    uint64_t t0 = now_ns();
    lethe_page_install_range(r, 0, src, total);
    uint64_t t1 = now_ns();
    lethe_page_drop(r, 0, total);
    uint64_t t2 = now_ns();
    printf("  install_range (UFFDIO_COPY, MODE_WP) of %llu pages: %.2f us/page; drop (move to "
           "scratch + DONTNEED): %.2f us/page\n",
           (unsigned long long)total, per_page_us(t1 - t0, total), per_page_us(t2 - t1, total));
    free(vpns);
    free(frames);
    munmap(src, total * PG);
    lethe_region_destroy(r);
}

static void bench_scan_dirty(void)
{
    const uint64_t total = 100000;
    struct lethe_region *r = lethe_start_bench(LETHE_DELIVERY_THREAD, true, total, 16, 1);
    if (!lethe_region_has_dirty_tracking(r)) {
        printf("  scan_dirty: no dirty tracking on this kernel\n");
        lethe_region_destroy(r);
        return;
    }
    char *src = map_anon(4096 * PG);
    for (uint64_t v = 0; v < total; v += 4096)
        lethe_page_install_range(r, v, src, total - v < 4096 ? total - v : 4096);
    char *base = lethe_region_base(r);
    uint64_t *bm = calloc((total + 63) / 64, sizeof(uint64_t));
    static const uint64_t sizes[] = {64, 512, 100000};
    static const unsigned pct[] = {0, 10, 100};
    printf("  scan_dirty (PAGEMAP_SCAN, report + re-protect), per page scanned:\n");
    for (unsigned s = 0; s < 3; s++) {
        printf("    %6llu pages:", (unsigned long long)sizes[s]);
        for (unsigned k = 0; k < 3; k++) {
            uint64_t reps = sizes[s] >= 100000 ? 3 : 200, ns = 0;
            for (uint64_t rep = 0; rep < reps; rep++) {
                for (uint64_t i = 0; i < sizes[s]; i++)
                    if (pct[k] == 100 || (pct[k] == 10 && i % 10 == 0))
                        base[i * PG] = 1;
                uint64_t t0 = now_ns();
                lethe_page_scan_dirty(r, 0, sizes[s], bm);
                ns += now_ns() - t0;
            }
            printf("  %3u%% written %.3f us", pct[k], per_page_us(ns, sizes[s] * reps));
        }
        printf("\n");
    }
    free(bm);
    munmap(src, 4096 * PG);
    lethe_region_destroy(r);
}

static void row(const char *name, struct result r, const struct result *bare)
{
    printf("  %-44s median %6.2f us   p99 %7.2f us", name, r.median_us, r.p99_us);
    if (bare)
        printf("   x%.2f of bare (median)", r.median_us / bare->median_us);
    printf("\n");
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "n:")) != -1) {
        if (opt == 'n')
            samples = (unsigned)strtoul(optarg, NULL, 10);
        else {
            fprintf(stderr, "usage: %s [-n SAMPLES]\n", argv[0]);
            return 2;
        }
    }
    if (samples < 100 * ROUNDS)
        samples = 100 * ROUNDS;
    lethe_log_init("fault-latency");
    lethe_log_set_level(LETHE_LOG_WARN);
    ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    zero_src = map_anon(PG);
    memset(zero_src, 0, PG);
    int other = ncpus > 1 ? 1 : 0;

    printf("fault round trip, %u faults per row in %u alternating rounds (faulting thread on "
           "CPU 0 unless noted; vCPU 0 runs on CPU 0):\n",
           samples, ROUNDS);
    enum { KERNEL, BT_OTHER, BT_SAME, BS, LT_OTHER, LT_SAME, LS, BTW, BSW, LTW, LSW, LT_FREE,
           LS_FREE, NROWS };
    uint64_t *ns[NROWS];
    for (unsigned k = 0; k < NROWS; k++)
        ns[k] = malloc((size_t)samples * sizeof(uint64_t));
    unsigned per = samples / ROUNDS;
    for (unsigned round = 0; round < ROUNDS; round++) {
        size_t at = (size_t)round * per;
        bench_kernel(per, ns[KERNEL] + at);
        bench_bare_thread(per, ns[BT_OTHER] + at, other, false);
        bench_lethe(per, ns[LT_OTHER] + at, LETHE_DELIVERY_THREAD, other, false);
        bench_bare_thread(per, ns[BT_SAME] + at, 0, false);
        bench_lethe(per, ns[LT_SAME] + at, LETHE_DELIVERY_THREAD, 0, false);
        bench_bare_signal(per, ns[BS] + at, false);
        bench_lethe(per, ns[LS] + at, LETHE_DELIVERY_SIGNAL, 0, false);
        bench_bare_thread(per, ns[BTW] + at, other, true);
        bench_lethe(per, ns[LTW] + at, LETHE_DELIVERY_THREAD, other, true);
        bench_bare_signal(per, ns[BSW] + at, true);
        bench_lethe(per, ns[LSW] + at, LETHE_DELIVERY_SIGNAL, 0, true);
        bench_lethe_unpinned(per, ns[LT_FREE] + at, LETHE_DELIVERY_THREAD);
        bench_lethe_unpinned(per, ns[LS_FREE] + at, LETHE_DELIVERY_SIGNAL);
    }
    unsigned total = per * ROUNDS;
    struct result res[NROWS];
    for (unsigned k = 0; k < NROWS; k++)
        res[k] = summarize(ns[k], total);
    row("kernel first-touch write", res[KERNEL], NULL);
    row("bare uffd thread, other CPU, ZEROPAGE", res[BT_OTHER], NULL);
    row("lethe thread, other CPU (install_zero)", res[LT_OTHER], &res[BT_OTHER]);
    row("bare uffd thread, same CPU, ZEROPAGE", res[BT_SAME], NULL);
    row("lethe thread, same CPU (install_zero)", res[LT_SAME], &res[BT_SAME]);
    row("bare SIGBUS, ZEROPAGE", res[BS], NULL);
    row("lethe signal (install_zero)", res[LS], &res[BS]);
    printf("with dirty tracking (write-clean zero page: UFFDIO_COPY MODE_WP of a zero page):\n");
    row("bare uffd thread, other CPU, COPY_WP", res[BTW], NULL);
    row("lethe thread +dirty, other CPU", res[LTW], &res[BTW]);
    row("bare SIGBUS, COPY_WP", res[BSW], NULL);
    row("lethe signal +dirty", res[LSW], &res[BSW]);
    printf("as a program runs (faulting thread unpinned; thread delivery: one pinned vCPU per "
           "CPU):\n");
    row("lethe signal, unpinned", res[LS_FREE], NULL);
    printf("  %-44s median %6.2f us   p99 %7.2f us   x%.2f of signal (median)\n",
           "lethe thread, vCPU per CPU, unpinned", res[LT_FREE].median_us, res[LT_FREE].p99_us,
           res[LT_FREE].median_us / res[LS_FREE].median_us);
    for (unsigned k = 0; k < NROWS; k++)
        free(ns[k]);

    printf("handler-side operations:\n");
    bench_install_zero_variants();
    bench_soft_unmap();
    bench_scan_dirty();
    return 0;
}
