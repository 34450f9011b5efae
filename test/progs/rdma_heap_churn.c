/* rdma_heap_churn.c — a heap-heavy program whose output says whether its memory stayed right.
 *
 *   rdma_heap_churn [MIB [ROUNDS [THREADS]]]     defaults: 32 MiB, 3 rounds, 2 threads
 *
 * Each thread allocates its share of MIB in blocks of mixed sizes (malloc, calloc,
 * posix_memalign; small ones, medium ones and ones of 1-3 MiB, which glibc and Lethe's
 * preload place in their own mappings), fills every block with a pattern derived from
 * (thread, block, generation), then for ROUNDS rounds walks the blocks in a pseudo-random
 * order: verifies each, rewrites a quarter of them with a new generation, frees and
 * reallocates some, grows some with realloc (large ones move with mremap), and passes one
 * block through the kernel (write() it to a file, read() it back into another block: kernel
 * accesses to heap pages). Finally every block is verified once more.
 *
 * It prints one line per thread and a last line
 *     heap-churn: ok: 2 threads, 32 MiB, 3 rounds, 1234 blocks, checksum 0123456789abcdef
 * The checksum depends only on the arguments, never on where the pages were, so a run under
 * Lethe must print the same line as a run without it. On the first wrong byte it prints the
 * block, the offset, what it read and what it expected, and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct block {
    uint64_t *p;
    size_t words;
    uint64_t gen;
};

struct churn {
    pthread_t th;
    unsigned id;
    size_t bytes;
    unsigned rounds;
    struct block *blocks;
    unsigned nblocks;
    uint64_t rng;
    uint64_t checksum;
    int failed;
};

static unsigned g_rounds;

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t next(struct churn *c)
{
    c->rng = mix(c->rng);
    return c->rng;
}

static uint64_t word_of(unsigned thread, unsigned block, uint64_t gen, size_t k)
{
    return mix(((uint64_t)thread << 48) ^ ((uint64_t)block << 24) ^ (gen << 8)) +
           k * 0x100000001b3ULL;
}

static void fill(struct churn *c, unsigned i)
{
    struct block *b = &c->blocks[i];
    for (size_t k = 0; k < b->words; k++)
        b->p[k] = word_of(c->id, i, b->gen, k);
}

static int verify(struct churn *c, unsigned i, const char *when)
{
    struct block *b = &c->blocks[i];
    for (size_t k = 0; k < b->words; k++) {
        uint64_t want = word_of(c->id, i, b->gen, k);
        if (b->p[k] != want) {
            fprintf(stderr,
                    "heap-churn: thread %u: WRONG DATA %s: block %u (%zu bytes at %p) word %zu "
                    "reads %#" PRIx64 ", expected %#" PRIx64 "\n",
                    c->id, when, i, b->words * 8, (void *)b->p, k, b->p[k], want);
            c->failed = 1;
            return -1;
        }
    }
    c->checksum = mix(c->checksum ^ b->p[b->words / 2] ^ b->words);
    return 0;
}

/* Sizes: mostly small and medium blocks, one in 16 a large one of 1-3 MiB. */
static size_t pick_size(struct churn *c)
{
    uint64_t r = next(c);
    if (r % 16 == 0)
        return (1 + r / 16 % 3) << 20;
    if (r % 4 == 0)
        return 4096 * (1 + r / 4 % 64);
    return 64 + 8 * (r / 3 % 512);
}

static void *allocate(struct churn *c, size_t size)
{
    uint64_t how = next(c) % 3;
    void *p = NULL;
    if (how == 0) {
        p = malloc(size);
    } else if (how == 1) {
        p = calloc(1, size);
        /* calloc must hand out zeros, wherever its pages came from. */
        const unsigned char *z = p;
        for (size_t k = 0; p && k < size; k += 4093)
            if (z[k]) {
                fprintf(stderr, "heap-churn: thread %u: calloc(%zu) byte %zu is %u\n", c->id, size,
                        k, z[k]);
                c->failed = 1;
            }
    } else if (posix_memalign(&p, 4096, size) != 0) {
        p = NULL;
    }
    if (!p) {
        fprintf(stderr, "heap-churn: thread %u: allocating %zu bytes failed\n", c->id, size);
        exit(1);
    }
    return p;
}

/* One block through the kernel: write() it to a file, read() the file into block j. */
static int through_kernel(struct churn *c, unsigned i, unsigned j)
{
    struct block *a = &c->blocks[i], *b = &c->blocks[j];
    size_t n = (a->words < b->words ? a->words : b->words) * 8;
    char path[64];
    snprintf(path, sizeof path, "/tmp/heap-churn-%d-%u", getpid(), c->id);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -errno;
    unlink(path);
    int rc = 0;
    if (write(fd, a->p, n) != (ssize_t)n || lseek(fd, 0, SEEK_SET) != 0 ||
        read(fd, b->p, n) != (ssize_t)n)
        rc = -EIO;
    close(fd);
    if (rc == 0 && memcmp(a->p, b->p, n) != 0)
        rc = -EILSEQ;
    if (rc < 0) {
        fprintf(stderr, "heap-churn: thread %u: write()/read() of %zu heap bytes: %s\n", c->id, n,
                strerror(-rc));
        c->failed = 1;
        return rc;
    }
    fill(c, j); /* b gets its own pattern back */
    return 0;
}

static void *run(void *arg)
{
    struct churn *c = arg;
    size_t cap = 1024, used = 0;
    c->blocks = calloc(cap, sizeof *c->blocks);
    while (used < c->bytes) {
        if (c->nblocks == cap) {
            cap *= 2;
            c->blocks = realloc(c->blocks, cap * sizeof *c->blocks);
        }
        size_t size = pick_size(c);
        struct block *b = &c->blocks[c->nblocks];
        b->p = allocate(c, size);
        b->words = size / 8;
        b->gen = 1;
        fill(c, c->nblocks++);
        used += size;
    }
    for (unsigned r = 0; r < c->rounds && !c->failed; r++) {
        for (unsigned n = 0; n < c->nblocks && !c->failed; n++) {
            unsigned i = (unsigned)(next(c) % c->nblocks);
            if (verify(c, i, "in a round") < 0)
                break;
            uint64_t what = next(c) % 16;
            struct block *b = &c->blocks[i];
            if (what < 4) {
                b->gen++;
                fill(c, i);
            } else if (what == 4) {
                free(b->p);
                size_t size = pick_size(c);
                b->p = allocate(c, size);
                b->words = size / 8;
                b->gen++;
                fill(c, i);
            } else if (what == 5) {
                size_t grow = b->words * 8 + (next(c) % 2 ? 4096 : (1u << 20));
                uint64_t *p = realloc(b->p, grow);
                if (!p) {
                    fprintf(stderr, "heap-churn: realloc to %zu failed\n", grow);
                    exit(1);
                }
                b->p = p;
                if (verify(c, i, "after realloc") < 0)
                    break;
                b->words = grow / 8;
                fill(c, i);
            } else if (what == 6) {
                through_kernel(c, i, (unsigned)(next(c) % c->nblocks));
            }
        }
    }
    for (unsigned i = 0; i < c->nblocks && !c->failed; i++)
        verify(c, i, "at the end");
    size_t total = 0;
    for (unsigned i = 0; i < c->nblocks; i++) {
        total += c->blocks[i].words * 8;
        free(c->blocks[i].p);
    }
    printf("heap-churn: thread %u: %u blocks, %zu KiB at the end, checksum %016" PRIx64 "%s\n",
           c->id, c->nblocks, total / 1024, c->checksum, c->failed ? " (FAILED)" : "");
    free(c->blocks);
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned mib = argc > 1 ? (unsigned)atoi(argv[1]) : 32;
    g_rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 3;
    unsigned nthreads = argc > 3 ? (unsigned)atoi(argv[3]) : 2;
    if (mib < 1 || nthreads < 1 || nthreads > 64) {
        fprintf(stderr, "usage: rdma_heap_churn [MIB [ROUNDS [THREADS]]]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct churn *cs = calloc(nthreads, sizeof *cs);
    for (unsigned t = 0; t < nthreads; t++) {
        cs[t].id = t;
        cs[t].bytes = ((size_t)mib << 20) / nthreads;
        cs[t].rounds = g_rounds;
        cs[t].rng = mix(0x1e7e + t);
        pthread_create(&cs[t].th, NULL, run, &cs[t]);
    }
    uint64_t sum = 0;
    unsigned blocks = 0;
    int failed = 0;
    for (unsigned t = 0; t < nthreads; t++) {
        pthread_join(cs[t].th, NULL);
        sum = mix(sum ^ cs[t].checksum);
        blocks += cs[t].nblocks;
        failed |= cs[t].failed;
    }
    if (failed) {
        printf("heap-churn: FAILED\n");
        return 1;
    }
    printf("heap-churn: ok: %u threads, %u MiB, %u rounds, %u blocks, checksum %016" PRIx64 "\n",
           nthreads, mib, g_rounds, blocks, sum);
    free(cs);
    return 0;
}
