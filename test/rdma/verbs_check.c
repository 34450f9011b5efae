/* verbs_check.c — drives a transport (verbs by default) against a running memory node and
 * checks every page it reads back. Run by test/rdma/guest-suite.sh inside rdma-vm; with
 * --kind tcp or shm it runs anywhere, which is how the checks themselves were tested.
 *
 *   verbs_check [OPTIONS] MODE
 *     --node ADDR          the memory node (host:port, or a Unix socket path for shm)
 *     --token-file FILE    the shared secret
 *     --kind KIND          verbs (default), tcp or shm
 *     --vcpus N            channels, one thread each (default 4)
 *     --pages P            remote slots per channel (default 64)
 *     --rounds R           write/read/verify rounds in verify mode (default 2)
 *     --seconds S          until-error: give up after S seconds (default 60)
 *     --remote-size SIZE   verify: the region asked of the node (default: the slots used
 *                          and 64 more); with a larger one, its last slot round-trips too
 *     --connect-timeout MS the transport's connect_timeout (default 10000)
 *
 * Modes (exit 0 when the behaviour is the expected one, 1 otherwise, with the reason):
 *   verify       each vCPU writes patterned pages to its own slots (single pages and
 *                batches), reads them back and verifies every byte, then reads a neighbour's
 *                slots (written over another channel) and verifies those; never-written
 *                slots read as zeros; a slot beyond the region is refused. Prints latency
 *                medians per operation kind.
 *   isolation    two clients of the same node: the second reads none of the first one's
 *                data (its fresh region is zeros), and its writes leave the first one's
 *                pages intact.
 *   bad-token    connecting with a wrong token fails (and nothing is granted).
 *   until-error  every vCPU writes, reads and verifies its slots in a loop and prints
 *                "until-error: ready" after the first full round; when an operation fails
 *                it prints the channel's error and exits 3. Exit 4: a page read back wrong
 *                (zeros or stale data returned as success); 5: no error within --seconds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "rdma/transport.h"

#define PAGE  LETHE_PAGE_SIZE
#define WORDS (PAGE / 8)
#define BATCH 16u

static struct {
    enum lethe_transport_kind kind;
    char node[LETHE_ADDR_MAX];
    char token[128];
    unsigned vcpus, pages, rounds, seconds;
    uint64_t remote_size;
    unsigned connect_timeout_ms;
} opt = {.kind = LETHE_TRANSPORT_VERBS,
         .vcpus = 4,
         .pages = 64,
         .rounds = 2,
         .seconds = 60,
         .connect_timeout_ms = 10000};

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The content of `slot` written by client `tag` in generation `gen`: no two (tag, slot, gen)
 * share a page, and no pattern page is all zeros. */
static void fill(void *page, unsigned tag, uint64_t slot, uint64_t gen)
{
    uint64_t *w = page;
    uint64_t seed = mix(((uint64_t)tag << 56) ^ (slot << 20) ^ gen);
    for (unsigned k = 0; k < WORDS; k++)
        w[k] = mix(seed + k) | 1;
}

/* 0 when page holds fill(tag, slot, gen); else prints what it holds and returns -1. */
static int check(const void *page, unsigned tag, uint64_t slot, uint64_t gen, const char *who)
{
    uint64_t want[WORDS];
    fill(want, tag, slot, gen);
    if (memcmp(page, want, PAGE) == 0)
        return 0;
    const uint64_t *w = page;
    unsigned k = 0, zeros = 0;
    while (k < WORDS && w[k] == want[k])
        k++;
    for (unsigned i = 0; i < WORDS; i++)
        zeros += w[i] == 0;
    fprintf(stderr,
            "verbs_check: %s: DATA MISMATCH at slot %" PRIu64 " (client %u, gen %" PRIu64
            "): word %u is %#" PRIx64 ", want %#" PRIx64 "; %u of %lu words are zero%s\n",
            who, slot, tag, gen, k, w[k], want[k], zeros, WORDS,
            zeros == WORDS ? " (an all-zeros page)" : "");
    return -1;
}

static bool all_zero(const void *page)
{
    const uint64_t *w = page;
    for (unsigned k = 0; k < WORDS; k++)
        if (w[k])
            return false;
    return true;
}

static void *page_buffer(unsigned n)
{
    void *p =
        mmap(NULL, (size_t)n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

static int open_client(const char *token, uint64_t pages, struct lethe_transport **t)
{
    struct lethe_transport_params p = {
        .kind = opt.kind,
        .remote_size = pages * PAGE,
        .connect_timeout_us = (uint64_t)opt.connect_timeout_ms * 1000,
        .max_batch = BATCH,
    };
    snprintf(p.node, sizeof p.node, "%s", opt.node);
    snprintf(p.token, sizeof p.token, "%s", token);
    return lethe_transport_open(&p, t);
}

/* ---------------------------------------------------------------- latency samples */

#define MAX_SAMPLES 4096
struct samples {
    double v[MAX_SAMPLES];
    unsigned n;
};

static void sample(struct samples *s, double us)
{
    if (s->n < MAX_SAMPLES)
        s->v[s->n++] = us;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------- verify */

struct worker {
    pthread_t th;
    unsigned id;
    struct lethe_transport *t;
    struct lethe_channel *ch;
    int rc;
    double open_us;                    /* lethe_channel_open: the RDMA CM connect */
    struct samples wr1, rd1, wrb, rdb; /* single write/read, batch write/read (per page) */
};

static atomic_uint workers_opened;

/* Prints the latency distribution of one kind of operation over every worker; `at` is the
 * offset of that kind's samples in struct worker. */
static void report(const char *what, const struct worker *ws, size_t at)
{
    static double v[MAX_SAMPLES * 8];
    unsigned n = 0;
    for (unsigned i = 0; i < opt.vcpus; i++) {
        const struct samples *s = (const struct samples *)((const char *)&ws[i] + at);
        for (unsigned j = 0; j < s->n && n < MAX_SAMPLES * 8; j++)
            v[n++] = s->v[j];
    }
    if (!n)
        return;
    qsort(v, n, sizeof v[0], cmp_double);
    printf("verbs_check: %-24s n=%-5u median %8.1f us  p90 %8.1f us  max %8.1f us\n", what, n,
           v[n / 2], v[n * 9 / 10], v[n - 1]);
}

static int fail_op(struct worker *w, const char *op, uint64_t slot, int rc)
{
    fprintf(stderr, "verbs_check: vCPU %u: %s slot %" PRIu64 " failed (%s): %s\n", w->id, op, slot,
            strerror(-rc), lethe_channel_error(w->ch));
    return -1;
}

static int verify_own(struct worker *w, void *buf)
{
    uint64_t base = (uint64_t)w->id * opt.pages;
    for (unsigned r = 0; r < opt.rounds; r++) {
        uint64_t gen = r + 1;
        /* The first round moves pages one by one, the next in batches, and so on. */
        for (unsigned i = 0; i < opt.pages;) {
            unsigned n = (r % 2 == 0) ? 1 : (opt.pages - i < BATCH ? opt.pages - i : BATCH);
            uint64_t slots[BATCH];
            void *src[BATCH];
            for (unsigned j = 0; j < n; j++) {
                slots[j] = base + i + j;
                src[j] = (char *)buf + (size_t)j * PAGE;
                fill(src[j], 0, slots[j], gen);
            }
            double t0 = now_us();
            int rc = n == 1 ? lethe_channel_write(w->ch, slots[0], src[0])
                            : lethe_channel_write_batch(w->ch, slots, (const void *const *)src, n);
            double dt = now_us() - t0;
            if (rc < 0)
                return fail_op(w, "write", slots[0], rc);
            if (n == 1)
                sample(&w->wr1, dt);
            else
                sample(&w->wrb, dt / n);
            i += n;
        }
        for (unsigned i = 0; i < opt.pages;) {
            unsigned n = (r % 2 == 0) ? 1 : (opt.pages - i < BATCH ? opt.pages - i : BATCH);
            uint64_t slots[BATCH];
            void *dst[BATCH];
            memset(buf, 0xa5, (size_t)n * PAGE); /* stale bytes must not pass as data */
            for (unsigned j = 0; j < n; j++) {
                slots[j] = base + i + j;
                dst[j] = (char *)buf + (size_t)j * PAGE;
            }
            double t0 = now_us();
            int rc = n == 1 ? lethe_channel_read(w->ch, slots[0], dst[0])
                            : lethe_channel_read_batch(w->ch, slots, dst, n);
            double dt = now_us() - t0;
            if (rc < 0)
                return fail_op(w, "read", slots[0], rc);
            if (n == 1)
                sample(&w->rd1, dt);
            else
                sample(&w->rdb, dt / n);
            for (unsigned j = 0; j < n; j++)
                if (check(dst[j], 0, slots[j], gen, "own slots") < 0)
                    return -1;
            i += n;
        }
    }
    return 0;
}

static void *verify_worker(void *arg)
{
    struct worker *w = arg;
    void *buf = page_buffer(BATCH);
    double t0 = now_us();
    w->rc = lethe_channel_open(w->t, w->id, &w->ch);
    w->open_us = now_us() - t0;
    if (w->rc < 0) {
        fprintf(stderr, "verbs_check: vCPU %u: channel open failed: %s\n", w->id, strerror(-w->rc));
        return NULL;
    }
    atomic_fetch_add(&workers_opened, 1);
    w->rc = verify_own(w, buf);
    munmap(buf, (size_t)BATCH * PAGE);
    return NULL;
}

/* After the workers: each channel reads the slots another channel wrote (its neighbour's),
 * which proves the channels share one region. */
static int verify_cross(struct worker *ws)
{
    void *buf = page_buffer(1);
    for (unsigned i = 0; i < opt.vcpus; i++) {
        struct worker *w = &ws[i];
        unsigned other = (i + 1) % opt.vcpus;
        for (unsigned k = 0; k < opt.pages; k += 7) {
            uint64_t slot = (uint64_t)other * opt.pages + k;
            int rc = lethe_channel_read(w->ch, slot, buf);
            if (rc < 0)
                return fail_op(w, "cross read", slot, rc);
            if (check(buf, 0, slot, opt.rounds, "neighbour's slots") < 0)
                return -1;
        }
    }
    printf("verbs_check: each channel read its neighbour's pages correctly\n");
    munmap(buf, PAGE);
    return 0;
}

static int mode_verify(void)
{
    struct lethe_transport *t;
    uint64_t used = (uint64_t)opt.vcpus * opt.pages;
    uint64_t total = used + 64; /* 64 slots never written */
    uint64_t asked = opt.remote_size / PAGE > total ? opt.remote_size / PAGE : total;
    double t0 = now_us();
    int rc = open_client(opt.token, asked, &t);
    if (rc < 0) {
        fprintf(stderr, "verbs_check: cannot open %s: %s\n", opt.node, strerror(-rc));
        return 1;
    }
    printf("verbs_check: opened %s: %" PRIu64 " slots granted in %.1f ms\n",
           lethe_transport_describe(t), lethe_transport_pages(t), (now_us() - t0) / 1000);
    if (lethe_transport_pages(t) < asked) {
        fprintf(stderr, "verbs_check: asked %" PRIu64 " slots, granted %" PRIu64 "\n", asked,
                lethe_transport_pages(t));
        return 1;
    }
    struct worker *ws = calloc(opt.vcpus, sizeof *ws);
    t0 = now_us();
    for (unsigned i = 0; i < opt.vcpus; i++) {
        ws[i].id = i;
        ws[i].t = t;
        pthread_create(&ws[i].th, NULL, verify_worker, &ws[i]);
    }
    int bad = 0;
    for (unsigned i = 0; i < opt.vcpus; i++) {
        pthread_join(ws[i].th, NULL);
        bad |= ws[i].rc < 0;
    }
    double wall = now_us() - t0;
    double open_max = 0;
    for (unsigned i = 0; i < opt.vcpus; i++)
        open_max = ws[i].open_us > open_max ? ws[i].open_us : open_max;
    printf("verbs_check: channel set-up (RDMA CM connect) took at most %.1f ms over %u "
           "channels\n",
           open_max / 1000, opt.vcpus);
    if (!bad) {
        printf("verbs_check: %u channels in parallel, %u slots each, %u rounds: all pages "
               "verified (%.2f s, channel set-up included)\n",
               opt.vcpus, opt.pages, opt.rounds, wall / 1e6);
        bad |= verify_cross(ws) < 0;
    }
    if (!bad) {
        /* Never-written slots: a fresh region reads as zeros. */
        void *buf = page_buffer(1);
        for (uint64_t s = used; s < total && !bad; s += 9) {
            memset(buf, 0xa5, PAGE);
            rc = lethe_channel_read(ws[0].ch, s, buf);
            if (rc < 0)
                bad |= fail_op(&ws[0], "read of a never-written slot", s, rc) < 0;
            else if (!all_zero(buf)) {
                fprintf(stderr, "verbs_check: never-written slot %" PRIu64 " is not zeros\n", s);
                bad = 1;
            }
        }
        if (!bad)
            printf("verbs_check: never-written slots read as zeros\n");
        /* A region larger than the slots used: its far end is registered too. */
        uint64_t last = lethe_transport_pages(t) - 1;
        if (!bad && last >= total) {
            fill(buf, 0, last, 99);
            rc = lethe_channel_write(ws[0].ch, last, buf);
            memset(buf, 0, PAGE);
            if (rc == 0)
                rc = lethe_channel_read(ws[0].ch, last, buf);
            if (rc < 0)
                bad |= fail_op(&ws[0], "round trip of the region's last slot", last, rc) < 0;
            else if (check(buf, 0, last, 99, "the region's last slot") < 0)
                bad = 1;
            else
                printf("verbs_check: the region's last slot (%" PRIu64 ", at %.1f GiB) "
                       "round-trips\n",
                       last, (double)last * PAGE / (1 << 30));
        }
        /* Beyond the region: refused, and the channel stays usable. */
        uint64_t beyond = lethe_transport_pages(t);
        rc = lethe_channel_read(ws[0].ch, beyond, buf);
        if (rc >= 0) {
            fprintf(stderr, "verbs_check: read of slot %" PRIu64 " beyond the region succeeded\n",
                    beyond);
            bad = 1;
        } else {
            printf("verbs_check: slot beyond the region refused: %s\n",
                   lethe_channel_error(ws[0].ch));
            rc = lethe_channel_read(ws[0].ch, 0, buf);
            if (rc < 0 || check(buf, 0, 0, opt.rounds, "after a refused slot") < 0) {
                fprintf(stderr, "verbs_check: channel unusable after a refused slot\n");
                bad = 1;
            }
        }
        munmap(buf, PAGE);
    }
    if (!bad) {
        report("write, 1 page", ws, offsetof(struct worker, wr1));
        report("read, 1 page", ws, offsetof(struct worker, rd1));
        report("write, batch (per page)", ws, offsetof(struct worker, wrb));
        report("read, batch (per page)", ws, offsetof(struct worker, rdb));
    }
    for (unsigned i = 0; i < opt.vcpus; i++)
        lethe_channel_close(ws[i].ch);
    lethe_transport_close(t);
    free(ws);
    printf("verbs_check: verify %s\n", bad ? "FAILED" : "passed");
    return bad;
}

/* ---------------------------------------------------------------- isolation */

static int mode_isolation(void)
{
    const unsigned n = 32;
    struct lethe_transport *a, *b;
    struct lethe_channel *ca, *cb;
    int rc = open_client(opt.token, n, &a);
    if (rc < 0 || (rc = lethe_channel_open(a, 0, &ca)) < 0) {
        fprintf(stderr, "verbs_check: client A: %s\n", strerror(-rc));
        return 1;
    }
    void *buf = page_buffer(1);
    for (uint64_t s = 0; s < n; s++) {
        fill(buf, 1, s, 1);
        if ((rc = lethe_channel_write(ca, s, buf)) < 0) {
            fprintf(stderr, "verbs_check: client A write: %s\n", lethe_channel_error(ca));
            return 1;
        }
    }
    rc = open_client(opt.token, n, &b);
    if (rc < 0 || (rc = lethe_channel_open(b, 0, &cb)) < 0) {
        fprintf(stderr, "verbs_check: client B: %s\n", strerror(-rc));
        return 1;
    }
    printf("verbs_check: two clients: A %s, B %s\n", lethe_transport_describe(a),
           lethe_transport_describe(b));
    int bad = 0;
    for (uint64_t s = 0; s < n && !bad; s++) {
        memset(buf, 0xa5, PAGE);
        if ((rc = lethe_channel_read(cb, s, buf)) < 0) {
            fprintf(stderr, "verbs_check: client B read: %s\n", lethe_channel_error(cb));
            bad = 1;
        } else if (!all_zero(buf)) {
            fprintf(stderr, "verbs_check: client B's slot %" PRIu64 " is not zeros%s\n", s,
                    check(buf, 1, s, 1, "B reading") == 0 ? ": it holds client A's page!" : "");
            bad = 1;
        }
    }
    if (!bad)
        printf("verbs_check: client B's slots are zeros: none of A's pages reach B\n");
    for (uint64_t s = 0; s < n && !bad; s++) {
        fill(buf, 2, s, 1);
        if ((rc = lethe_channel_write(cb, s, buf)) < 0) {
            fprintf(stderr, "verbs_check: client B write: %s\n", lethe_channel_error(cb));
            bad = 1;
        }
    }
    for (uint64_t s = 0; s < n && !bad; s++) {
        if ((rc = lethe_channel_read(ca, s, buf)) < 0) {
            fprintf(stderr, "verbs_check: client A read: %s\n", lethe_channel_error(ca));
            bad = 1;
        } else if (check(buf, 1, s, 1, "A after B wrote") < 0) {
            bad = 1;
        }
    }
    if (!bad)
        printf("verbs_check: client A's pages are intact after B wrote all its slots\n");
    lethe_channel_close(cb);
    lethe_transport_close(b);
    lethe_channel_close(ca);
    lethe_transport_close(a);
    printf("verbs_check: isolation %s\n", bad ? "FAILED" : "passed");
    return bad;
}

/* ---------------------------------------------------------------- bad token */

static int mode_bad_token(void)
{
    char wrong[128];
    snprintf(wrong, sizeof wrong, "%.100s-not-the-token", opt.token);
    struct lethe_transport *t;
    double t0 = now_us();
    int rc = open_client(wrong, 16, &t);
    if (rc >= 0) {
        struct lethe_channel *ch;
        rc = lethe_channel_open(t, 0, &ch);
        if (rc >= 0) {
            fprintf(stderr,
                    "verbs_check: a wrong token was accepted: %" PRIu64
                    " slots granted and a channel opened\n",
                    lethe_transport_pages(t));
            lethe_channel_close(ch);
            lethe_transport_close(t);
            return 1;
        }
        lethe_transport_close(t);
        printf("verbs_check: wrong token: channel refused (%s) in %.1f ms\n", strerror(-rc),
               (now_us() - t0) / 1000);
        return 0;
    }
    printf("verbs_check: wrong token refused (%s) in %.1f ms\n", strerror(-rc),
           (now_us() - t0) / 1000);
    return 0;
}

/* ---------------------------------------------------------------- until error */

static atomic_bool stop;
static atomic_uint rounds_done;
static atomic_int mismatches;

static void *until_error_worker(void *arg)
{
    struct worker *w = arg;
    void *buf = page_buffer(BATCH);
    uint64_t base = (uint64_t)w->id * opt.pages;
    for (uint64_t gen = 1; !atomic_load(&stop); gen++) {
        for (unsigned i = 0; i < opt.pages && !atomic_load(&stop); i += BATCH) {
            unsigned n = opt.pages - i < BATCH ? opt.pages - i : BATCH;
            uint64_t slots[BATCH];
            void *pages[BATCH];
            for (unsigned j = 0; j < n; j++) {
                slots[j] = base + i + j;
                pages[j] = (char *)buf + (size_t)j * PAGE;
                fill(pages[j], 0, slots[j], gen);
            }
            int rc = lethe_channel_write_batch(w->ch, slots, (const void *const *)pages, n);
            if (rc == 0) {
                memset(buf, 0, (size_t)n * PAGE); /* a read that "succeeds" with nothing */
                rc = lethe_channel_read_batch(w->ch, slots, pages, n);
            }
            if (rc < 0) {
                printf("until-error: vCPU %u stopped after %" PRIu64 " rounds: %s (%s)\n", w->id,
                       gen - 1, lethe_channel_error(w->ch), strerror(-rc));
                fflush(stdout);
                w->rc = rc;
                atomic_store(&stop, true);
                break;
            }
            for (unsigned j = 0; j < n; j++) {
                if (check(pages[j], 0, slots[j], gen, "until-error") < 0) {
                    atomic_fetch_add(&mismatches, 1);
                    atomic_store(&stop, true);
                    break;
                }
            }
        }
        if (gen == 1 && atomic_fetch_add(&rounds_done, 1) + 1 == opt.vcpus) {
            printf("until-error: ready (every vCPU verified one round)\n");
            fflush(stdout);
        }
    }
    munmap(buf, (size_t)BATCH * PAGE);
    return NULL;
}

static int mode_until_error(void)
{
    struct lethe_transport *t;
    int rc = open_client(opt.token, (uint64_t)opt.vcpus * opt.pages, &t);
    if (rc < 0) {
        fprintf(stderr, "verbs_check: cannot open %s: %s\n", opt.node, strerror(-rc));
        return 1;
    }
    struct worker *ws = calloc(opt.vcpus, sizeof *ws);
    for (unsigned i = 0; i < opt.vcpus; i++) {
        ws[i].id = i;
        if ((rc = lethe_channel_open(t, i, &ws[i].ch)) < 0) {
            fprintf(stderr, "verbs_check: channel %u: %s\n", i, strerror(-rc));
            return 1;
        }
    }
    double t0 = now_us();
    for (unsigned i = 0; i < opt.vcpus; i++)
        pthread_create(&ws[i].th, NULL, until_error_worker, &ws[i]);
    while (!atomic_load(&stop) && now_us() - t0 < opt.seconds * 1e6)
        usleep(10000);
    atomic_store(&stop, true);
    int failed = 0;
    for (unsigned i = 0; i < opt.vcpus; i++) {
        pthread_join(ws[i].th, NULL);
        failed += ws[i].rc < 0;
    }
    /* The channels and the transport are not closed: the node is gone and closing is not
     * what this mode checks. */
    if (atomic_load(&mismatches)) {
        printf("until-error: FAILED: a page was read back wrong\n");
        return 4;
    }
    if (!failed) {
        printf("until-error: no operation failed within %u s\n", opt.seconds);
        return 5;
    }
    return 3;
}

/* ---------------------------------------------------------------- main */

static int read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f || !fgets(opt.token, sizeof opt.token, f)) {
        fprintf(stderr, "verbs_check: cannot read token file %s: %s\n", path, strerror(errno));
        return -1;
    }
    fclose(f);
    opt.token[strcspn(opt.token, "\r\n")] = 0;
    return 0;
}

__attribute__((noreturn)) static void usage(void)
{
    fprintf(stderr, "usage: verbs_check --node ADDR --token-file FILE [--kind verbs|tcp|shm]\n"
                    "       [--vcpus N] [--pages P] [--rounds R] [--seconds S]\n"
                    "       [--remote-size SIZE] [--connect-timeout MS]\n"
                    "       verify|isolation|bad-token|until-error\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"node", required_argument, NULL, 'n'},
        {"token-file", required_argument, NULL, 't'},
        {"kind", required_argument, NULL, 'k'},
        {"vcpus", required_argument, NULL, 'v'},
        {"pages", required_argument, NULL, 'p'},
        {"rounds", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 's'},
        {"remote-size", required_argument, NULL, 'R'},
        {"connect-timeout", required_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    const char *token_file = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            snprintf(opt.node, sizeof opt.node, "%s", optarg);
            break;
        case 't':
            token_file = optarg;
            break;
        case 'k':
            if (!strcmp(optarg, "verbs"))
                opt.kind = LETHE_TRANSPORT_VERBS;
            else if (!strcmp(optarg, "tcp"))
                opt.kind = LETHE_TRANSPORT_TCP;
            else if (!strcmp(optarg, "shm"))
                opt.kind = LETHE_TRANSPORT_SHM;
            else
                usage();
            break;
        case 'v':
            opt.vcpus = (unsigned)atoi(optarg);
            break;
        case 'p':
            opt.pages = (unsigned)atoi(optarg);
            break;
        case 'r':
            opt.rounds = (unsigned)atoi(optarg);
            break;
        case 's':
            opt.seconds = (unsigned)atoi(optarg);
            break;
        case 'R':
            if (lethe_parse_size(optarg, &opt.remote_size) < 0)
                usage();
            break;
        case 'T':
            opt.connect_timeout_ms = (unsigned)atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (optind != argc - 1 || !opt.node[0] || !token_file || opt.vcpus < 1 || opt.vcpus > 64 ||
        opt.pages < 1 || opt.rounds < 1)
        usage();
    lethe_log_init("verbs_check");
    lethe_log_set_role("main");
    if (read_token(token_file) < 0)
        return 1;
    const char *mode = argv[optind];
    if (!strcmp(mode, "verify"))
        return mode_verify();
    if (!strcmp(mode, "isolation"))
        return mode_isolation();
    if (!strcmp(mode, "bad-token"))
        return mode_bad_token();
    if (!strcmp(mode, "until-error"))
        return mode_until_error();
    usage();
}
