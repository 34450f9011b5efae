/* app_mixed.c — a program for lethed's tests: a heap of mixed object sizes, verified.
 *
 *   app_mixed MIB [--hold] [--exit N] [--io FILE]
 *
 * Allocates about MIB MiB in objects from 16 bytes to 2 MiB (malloc, calloc,
 * posix_memalign, aligned_alloc, and a few direct anonymous mmaps of 4 MiB), fills each with
 * a pattern derived from its index, then verifies everything twice with a realloc round and
 * frees in between, and prints a checksum of the contents: the same output with and without
 * Lethe, whatever the cache size. With --hold it prints "ready" after the first pass and
 * waits for a line (or EOF) on stdin before the second, so a test can look at it while it
 * holds its heap. With --io FILE the heap buffers also go through write() and read() of
 * FILE (kernel accesses to managed memory). It exits with N (default 0), or 1 on a mismatch.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct object {
    unsigned char *p;
    size_t size;
    int mapped; /* came from mmap */
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static void fill(struct object *o, uint64_t seed)
{
    for (size_t i = 0; i < o->size; i += 8) {
        uint64_t v = mix(seed * 0x9e3779b97f4a7c15ULL + i);
        size_t n = o->size - i < 8 ? o->size - i : 8;
        memcpy(o->p + i, &v, n);
    }
}

static int check(const struct object *o, uint64_t seed, uint64_t *sum)
{
    for (size_t i = 0; i < o->size; i += 8) {
        uint64_t v = mix(seed * 0x9e3779b97f4a7c15ULL + i), got = 0;
        size_t n = o->size - i < 8 ? o->size - i : 8;
        memcpy(&got, o->p + i, n);
        if (n < 8)
            v &= (1ULL << (8 * n)) - 1;
        if (got != v)
            return -1;
        *sum = mix(*sum ^ got);
    }
    return 0;
}

static size_t size_for(uint64_t i)
{
    uint64_t r = mix(i);
    switch (r % 16) {
    case 0:
        return 256 * 1024 + r % (2 * 1024 * 1024);
    case 1:
    case 2:
        return 4096 + r % 65536;
    default:
        return 16 + r % 2048;
    }
}

static void *allocate(uint64_t i, size_t size, int *mapped)
{
    *mapped = 0;
    void *p = NULL;
    switch (mix(i + 7) % 5) {
    case 0:
        p = calloc(1, size);
        break;
    case 1:
        if (posix_memalign(&p, 64, size) != 0)
            p = NULL;
        break;
    case 2:
        p = aligned_alloc(4096, (size + 4095) & ~(size_t)4095);
        break;
    default:
        p = malloc(size);
    }
    return p;
}

static int io_round(const char *path, struct object *objs, size_t n)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += 7) {
        ssize_t w = pwrite(fd, objs[i].p, objs[i].size, 0);
        if (w != (ssize_t)objs[i].size) {
            fprintf(stderr, "app_mixed: pwrite of object %zu (%zu bytes) gave %zd (%s)\n", i,
                    objs[i].size, w, w < 0 ? strerror(errno) : "short");
            rc = -1;
        }
        memset(objs[i].p, 0, objs[i].size);
        size_t done = 0;
        while (rc == 0 && done < objs[i].size) {
            ssize_t got = pread(fd, objs[i].p + done, objs[i].size - done, (off_t)done);
            if (got <= 0) {
                fprintf(stderr, "app_mixed: pread of object %zu at %zu gave %zd (%s)\n", i,
                        done, got, got < 0 ? strerror(errno) : "end of file");
                rc = -1;
            } else {
                done += (size_t)got;
            }
        }
    }
    close(fd);
    unlink(path);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: app_mixed MIB [--hold] [--exit N] [--io FILE]\n");
        return 2;
    }
    size_t total = strtoull(argv[1], NULL, 10) << 20;
    int hold = 0, status = 0;
    const char *io_path = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--hold") == 0)
            hold = 1;
        else if (strcmp(argv[i], "--exit") == 0 && i + 1 < argc)
            status = atoi(argv[++i]);
        else if (strcmp(argv[i], "--io") == 0 && i + 1 < argc)
            io_path = argv[++i];
    }
    size_t cap = 1024, n = 0, bytes = 0;
    struct object *objs = malloc(cap * sizeof(*objs));
    while (bytes < total) {
        if (n == cap) {
            cap *= 2;
            objs = realloc(objs, cap * sizeof(*objs));
        }
        struct object *o = &objs[n];
        o->size = size_for(n);
        if (n % 97 == 96) { /* now and then a large anonymous mapping */
            o->size = 4 << 20;
            o->p = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            o->mapped = 1;
            if (o->p == MAP_FAILED)
                o->p = NULL;
        } else {
            o->p = allocate(n, o->size, &o->mapped);
        }
        if (!o->p) {
            fprintf(stderr, "app_mixed: allocation %zu of %zu bytes failed\n", n, o->size);
            return 1;
        }
        fill(o, n);
        bytes += o->size;
        n++;
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (check(&objs[i], i, &sum) != 0) {
            fprintf(stderr, "app_mixed: object %zu (%zu bytes) corrupt after filling\n", i,
                    objs[i].size);
            return 1;
        }
    }
    printf("objects %zu bytes %zu first-pass %016llx\n", n, bytes, (unsigned long long)sum);
    if (hold) {
        printf("ready\n");
        fflush(stdout);
        char line[64];
        if (!fgets(line, sizeof(line), stdin)) {
            /* EOF: go on */
        }
    }
    /* Free every third object, grow every fifth through realloc, refill both. */
    for (size_t i = 0; i < n; i++) {
        struct object *o = &objs[i];
        if (i % 3 == 0) {
            if (o->mapped)
                munmap(o->p, o->size);
            else
                free(o->p);
            o->size = size_for(i + n);
            o->p = malloc(o->size);
            o->mapped = 0;
            fill(o, i);
        } else if (i % 5 == 0 && !o->mapped) {
            size_t old = o->size;
            o->size = old + old / 2 + 1;
            o->p = realloc(o->p, o->size);
            if (!o->p)
                return 1;
            fill(o, i);
        } else if (o->mapped) {
            void *q = mremap(o->p, o->size, o->size * 2, MREMAP_MAYMOVE);
            if (q == MAP_FAILED)
                return 1;
            uint64_t s = 0;
            struct object half = {.p = q, .size = o->size};
            if (check(&half, i, &s) != 0) {
                fprintf(stderr, "app_mixed: mapping %zu corrupt after mremap\n", i);
                return 1;
            }
            o->p = q;
            o->size *= 2;
            fill(o, i);
        }
    }
    if (io_path && io_round(io_path, objs, n) != 0) {
        fprintf(stderr, "app_mixed: I/O through heap buffers failed\n");
        return 1;
    }
    sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (check(&objs[i], i, &sum) != 0) {
            fprintf(stderr, "app_mixed: object %zu (%zu bytes) corrupt in the second pass\n", i,
                    objs[i].size);
            return 1;
        }
    }
    printf("second-pass %016llx\n", (unsigned long long)sum);
    fflush(stdout);
    return status;
}
