/* transport_bench.c — bin/transport-bench: what the remote-memory transports cost, measured
 * side by side in one run (docs/MEMNODE.md "Performance").
 *
 *   transport-bench shm     [--ops N]        shm page read vs a 4 KiB memcpy (same pages)
 *   transport-bench tcp     [--seconds S] [--batch B] [--channels C]
 *                                            page reads/s over loopback, C channels on C
 *                                            threads, batches of B pages (pipelined), and
 *                                            single-page reads for comparison
 *   transport-bench clients [--clients N] [--pages P] [--kind tcp|shm]
 *                                            N clients connected at once, each writing and
 *                                            reading P pages; the node's memory beyond the
 *                                            DRAM it lends (from /proc/PID/status)
 *
 * shm and tcp run the memory node embedded (memnode.h, its own thread); clients
 * runs the real bin/memnode so that its RSS is the node's alone. (The concurrency stress test
 * is test/stress/memnode_clients.c.) Exit status 0, or 1 when a check failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "memnode.h"
#include "rdma/auth.h"
#include "rdma/transport.h"

#define PAGE LETHE_PAGE_SIZE

static struct {
    unsigned long ops;
    double seconds;
    unsigned batch;
    unsigned channels;
    unsigned clients;
    unsigned pages;
    enum lethe_transport_kind kind;
} opt = {.ops = 200000,
         .seconds = 3,
         .batch = 32,
         .channels = 2,
         .clients = 64,
         .pages = 64,
         .kind = LETHE_TRANSPORT_TCP};

static char dir[96];
static char token[LETHE_TOKEN_MAX + 1];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "transport-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/lethe-tbench-%d", getpid());
    mkdir(dir, 0700);
}

static void cleanup_dir(void)
{
    char p[160];
    const char *files[] = {"token", "node.sock", "memnode.conf", "memnode.log"};
    for (unsigned i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static struct lethe_memnode *embedded_node(uint64_t capacity)
{
    struct lethe_memnode_config cfg;
    lethe_memnode_config_defaults(&cfg);
    cfg.capacity = capacity;
    snprintf(cfg.tcp_listen, sizeof(cfg.tcp_listen), "127.0.0.1:0");
    snprintf(cfg.unix_socket, sizeof(cfg.unix_socket), "%s/node.sock", dir);
    snprintf(cfg.token_file, sizeof(cfg.token_file), "%s/token", dir);
    cfg.max_clients = 256;
    struct lethe_memnode *n;
    if (lethe_memnode_start(&cfg, &n) < 0)
        die("cannot start the embedded memory node");
    char err[128];
    if (lethe_token_load(cfg.token_file, false, token, sizeof(token), NULL, err, sizeof(err)) < 0)
        die("token: %s", err);
    return n;
}

static struct lethe_transport *open_transport(enum lethe_transport_kind kind, const char *addr,
                                              uint64_t bytes)
{
    struct lethe_transport_params p;
    memset(&p, 0, sizeof(p));
    p.kind = kind;
    snprintf(p.node, sizeof(p.node), "%s", addr);
    snprintf(p.token, sizeof(p.token), "%s", token);
    p.remote_size = bytes;
    p.connect_timeout_us = 5000000;
    p.max_batch = 256;
    struct lethe_transport *t;
    if (lethe_transport_open(&p, &t) < 0)
        die("cannot open the %s transport to %s", lethe_transport_name(kind), addr);
    return t;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- shm: a page read through the transport vs a 4 KiB memcpy, same run, same pages ---- */

static void bench_shm(void)
{
    struct lethe_memnode *n = embedded_node(1ULL << 30);
    const uint64_t bytes = 256ULL << 20, pages = bytes / PAGE;
    struct lethe_transport *t =
        open_transport(LETHE_TRANSPORT_SHM, lethe_memnode_unix_path(n), bytes);
    struct lethe_channel *ch;
    if (lethe_channel_open(t, 0, &ch) < 0)
        die("channel");
    /* the memcpy baseline reads from a mapping of the same size, equally populated */
    uint8_t *src = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    uint8_t *dst = aligned_alloc(PAGE, PAGE);
    uint64_t *order = malloc(opt.ops * sizeof(*order));
    uint64_t x = 88172645463325252ULL;
    for (unsigned long i = 0; i < opt.ops; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        order[i] = x % pages;
    }
    memset(src, 1, bytes);
    memset(dst, 2, PAGE);
    for (uint64_t s = 0; s < pages; s += 256) { /* populate the region */
        uint64_t sl[256];
        const void *pp[256];
        for (unsigned i = 0; i < 256; i++) {
            sl[i] = s + i;
            pp[i] = src;
        }
        if (lethe_channel_write_batch(ch, sl, pp, 256) < 0)
            die("%s", lethe_channel_error(ch));
    }
    /* Cold: random pages of 256 MiB (cache and TLB misses, as a swap-in sees them). Hot: the
     * same 16 pages over and over (in cache: the transport's own overhead shows). */
    for (int hot = 0; hot < 2; hot++) {
        double best_t = 1e9, best_m = 1e9;
        uint64_t mask = hot ? 15 : ~0ULL;
        for (int rep = 0; rep < 5; rep++) { /* interleaved repetitions; best of each */
            double t0 = now_s();
            for (unsigned long i = 0; i < opt.ops; i++)
                if (lethe_channel_read(ch, order[i] & mask, dst) < 0)
                    die("%s", lethe_channel_error(ch));
            double t1 = now_s();
            for (unsigned long i = 0; i < opt.ops; i++) {
                memcpy(dst, src + (order[i] & mask) * PAGE, PAGE);
                __asm__ volatile("" : : "r"(dst) : "memory");
            }
            double t2 = now_s();
            best_t = (t1 - t0) < best_t ? (t1 - t0) : best_t;
            best_m = (t2 - t1) < best_m ? (t2 - t1) : best_m;
        }
        double per_t = best_t / (double)opt.ops * 1e6, per_m = best_m / (double)opt.ops * 1e6;
        printf("shm, %s: %lu page reads %s, best of 5\n", hot ? "hot" : "cold", opt.ops,
               hot ? "cycling over 16 pages" : "at random slots of a 256 MiB region");
        printf("  memcpy 4 KiB           %.3f us/page\n", per_m);
        printf("  lethe_channel_read     %.3f us/page  (%.2fx memcpy, %+.3f us)\n", per_t,
               per_t / per_m, per_t - per_m);
        printf("  target <= 1.5 x memcpy + 0.5 us = %.3f us: %s\n", 1.5 * per_m + 0.5,
               per_t <= 1.5 * per_m + 0.5 ? "met" : "NOT met");
    }
    free(order);
    free(dst);
    munmap(src, bytes);
    lethe_channel_close(ch);
    lethe_transport_close(t);
    lethe_memnode_stop(n);
}

/* ---- tcp: page reads/s over loopback, several channels, pipelined batches ---- */

struct reader {
    struct lethe_transport *t;
    unsigned vcpu, batch;
    double until;
    unsigned long pages;
    double *lat;
    unsigned long nlat, maxlat;
};

static void *reader_run(void *arg)
{
    struct reader *r = arg;
    struct lethe_channel *ch;
    if (lethe_channel_open(r->t, r->vcpu, &ch) < 0)
        die("channel %u", r->vcpu);
    uint64_t pages = lethe_transport_pages(r->t);
    uint8_t *buf = aligned_alloc(PAGE, (size_t)r->batch * PAGE);
    uint64_t slots[256];
    void *ptrs[256];
    uint64_t x = 0x9e3779b97f4a7c15ULL * (r->vcpu + 1);
    for (unsigned i = 0; i < r->batch; i++)
        ptrs[i] = buf + (size_t)i * PAGE;
    while (now_s() < r->until) {
        for (unsigned i = 0; i < r->batch; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            slots[i] = x % pages;
        }
        double t0 = now_s();
        if (lethe_channel_read_batch(ch, slots, ptrs, r->batch) < 0)
            die("%s", lethe_channel_error(ch));
        if (r->nlat < r->maxlat)
            r->lat[r->nlat++] = now_s() - t0;
        r->pages += r->batch;
    }
    free(buf);
    lethe_channel_close(ch);
    return NULL;
}

static void run_readers(struct lethe_transport *t, unsigned channels, unsigned batch)
{
    pthread_t th[64];
    struct reader r[64];
    double start = now_s();
    for (unsigned i = 0; i < channels; i++) {
        r[i] = (struct reader){
            .t = t, .vcpu = i, .batch = batch, .until = start + opt.seconds, .maxlat = 1u << 20};
        r[i].lat = malloc(r[i].maxlat * sizeof(double));
        pthread_create(&th[i], NULL, reader_run, &r[i]);
    }
    unsigned long total = 0, nlat = 0;
    double *all = malloc(channels * (1u << 20) * sizeof(double));
    for (unsigned i = 0; i < channels; i++) {
        pthread_join(th[i], NULL);
        total += r[i].pages;
        memcpy(all + nlat, r[i].lat, r[i].nlat * sizeof(double));
        nlat += r[i].nlat;
        free(r[i].lat);
    }
    double elapsed = now_s() - start;
    qsort(all, nlat, sizeof(double), cmp_double);
    printf("  %u channel%s, batches of %3u pages: %9.0f pages/s  (%.1f MB/s), "
           "batch latency median %.1f us, p99 %.1f us\n",
           channels, channels == 1 ? " " : "s", batch, (double)total / elapsed,
           (double)total * PAGE / elapsed / 1e6, nlat ? all[nlat / 2] * 1e6 : 0,
           nlat ? all[nlat * 99 / 100] * 1e6 : 0);
    free(all);
}

static void bench_tcp(void)
{
    struct lethe_memnode *n = embedded_node(1ULL << 30);
    struct lethe_transport *t =
        open_transport(LETHE_TRANSPORT_TCP, lethe_memnode_tcp_address(n), 64ULL << 20);
    printf("tcp over loopback, embedded memnode, %.1f s per line\n", opt.seconds);
    run_readers(t, 1, 1);
    run_readers(t, opt.channels, 1);
    run_readers(t, opt.channels, opt.batch);
    lethe_transport_close(t);
    lethe_memnode_stop(n);
}

/* ---- clients: many clients at once; the node's memory beyond what it lends ---- */

static pid_t spawn_node(char *tcp, size_t tcplen, const char *capacity)
{
    char conf[160], log[160], tokf[160];
    snprintf(conf, sizeof(conf), "%s/memnode.conf", dir);
    snprintf(log, sizeof(log), "%s/memnode.log", dir);
    snprintf(tokf, sizeof(tokf), "%s/token", dir);
    FILE *f = fopen(conf, "w");
    fprintf(f,
            "[memnode]\ncapacity = %s\ntcp_listen = 127.0.0.1:0\nunix_socket = %s/node.sock\n"
            "token_file = %s\nmax_clients = %u\n",
            capacity, dir, tokf, opt.clients + 8);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        execl(LETHE_BUILD_DIR "/bin/memnode", "memnode", "-c", conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        FILE *l = fopen(log, "r");
        char line[512];
        while (l && fgets(line, sizeof(line), l)) {
            char *p = strstr(line, "ready: tcp=");
            if (p) {
                sscanf(p + 11, "%63s", tcp);
                (void)tcplen;
                fclose(l);
                char err[128];
                if (lethe_token_load(tokf, false, token, sizeof(token), NULL, err, sizeof(err)))
                    die("token: %s", err);
                return pid;
            }
        }
        if (l)
            fclose(l);
        usleep(10000);
    }
    die("bin/memnode did not start (see %s)", log);
}

static long status_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, strlen(key)) == 0)
            v = atol(line + strlen(key));
    if (f)
        fclose(f);
    return v;
}

static void bench_clients(void)
{
    char tcp[64] = "", sockpath[160];
    snprintf(sockpath, sizeof(sockpath), "%s/node.sock", dir);
    char cap[32];
    snprintf(cap, sizeof(cap), "%uM", opt.clients * 8 + 64);
    pid_t pid = spawn_node(tcp, sizeof(tcp), cap);
    long rss0 = status_kb(pid, "VmRSS:");
    struct lethe_transport **t = calloc(opt.clients, sizeof(*t));
    struct lethe_channel **ch = calloc(opt.clients * 2, sizeof(*ch));
    const char *addr = opt.kind == LETHE_TRANSPORT_SHM ? sockpath : tcp;
    uint8_t *page = aligned_alloc(PAGE, PAGE);
    double t0 = now_s();
    for (unsigned i = 0; i < opt.clients; i++) {
        t[i] = open_transport(opt.kind, addr, 8ULL << 20);
        for (unsigned c = 0; c < 2; c++)
            if (lethe_channel_open(t[i], c, &ch[2 * i + c]) < 0)
                die("channel");
    }
    /* every client swaps a little: P pages written, then read back and checked */
    for (unsigned i = 0; i < opt.clients; i++)
        for (unsigned s = 0; s < opt.pages; s++) {
            memset(page, (int)(i + s), PAGE);
            if (lethe_channel_write(ch[2 * i + s % 2], s, page) < 0)
                die("%s", lethe_channel_error(ch[2 * i]));
        }
    for (unsigned i = 0; i < opt.clients; i++)
        for (unsigned s = 0; s < opt.pages; s++) {
            if (lethe_channel_read(ch[2 * i + (s + 1) % 2], s, page) < 0)
                die("%s", lethe_channel_error(ch[2 * i]));
            if (page[PAGE - 1] != (uint8_t)(i + s))
                die("client %u slot %u read back wrong", i, s);
        }
    double el = now_s() - t0;
    long rss = status_kb(pid, "VmRSS:"), anon = status_kb(pid, "RssAnon:"),
         file = status_kb(pid, "RssFile:"), shmem = status_kb(pid, "RssShmem:");
    printf("clients: %u %s clients connected at once (2 channels each), each wrote and read "
           "back %u pages (%.2f s)\n",
           opt.clients, lethe_transport_name(opt.kind), opt.pages, el);
    printf("  memnode RSS %ld KiB (before: %ld KiB): anon %ld KiB + file %ld KiB + lent pages "
           "touched (shmem) %ld KiB\n",
           rss, rss0, anon, file, shmem);
    printf("  beyond the lent DRAM: %.1f MiB (target < 64 MiB): %s\n", (anon + file) / 1024.0,
           (anon + file) < 64 * 1024 ? "met" : "NOT met");
    for (unsigned i = 0; i < opt.clients; i++) {
        lethe_channel_close(ch[2 * i]);
        lethe_channel_close(ch[2 * i + 1]);
        lethe_transport_close(t[i]);
    }
    free(page);
    free(t);
    free(ch);
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: transport-bench shm|tcp|clients [--ops N] [--seconds S] "
                 "[--batch B] [--channels C] [--clients N] [--pages P] [--kind tcp|shm]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ops", required_argument, NULL, 'o'},
        {"seconds", required_argument, NULL, 's'},
        {"batch", required_argument, NULL, 'b'},
        {"channels", required_argument, NULL, 'c'},
        {"clients", required_argument, NULL, 'n'},
        {"pages", required_argument, NULL, 'p'},
        {"kind", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "o:s:b:c:n:p:k:h", opts, NULL)) != -1) {
        switch (o) {
        case 'o':
            opt.ops = strtoul(optarg, NULL, 0);
            break;
        case 's':
            opt.seconds = atof(optarg);
            break;
        case 'b':
            opt.batch = (unsigned)atoi(optarg);
            break;
        case 'c':
            opt.channels = (unsigned)atoi(optarg);
            break;
        case 'n':
            opt.clients = (unsigned)atoi(optarg);
            break;
        case 'p':
            opt.pages = (unsigned)atoi(optarg);
            break;
        case 'k':
            opt.kind = strcmp(optarg, "shm") == 0 ? LETHE_TRANSPORT_SHM : LETHE_TRANSPORT_TCP;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || opt.batch < 1 || opt.batch > 256 || opt.channels < 1 ||
        opt.channels > 64 || opt.ops < 1) {
        usage(stderr);
        return 2;
    }
    lethe_log_init("transport-bench");
    lethe_log_set_level(LETHE_LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    make_dir();
    const char *mode = argv[optind];
    int rc = 0;
    if (strcmp(mode, "shm") == 0)
        bench_shm();
    else if (strcmp(mode, "tcp") == 0)
        bench_tcp();
    else if (strcmp(mode, "clients") == 0)
        bench_clients();
    else {
        usage(stderr);
        rc = 2;
    }
    cleanup_dir();
    return rc;
}
