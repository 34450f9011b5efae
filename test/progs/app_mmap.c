/* app_mmap.c — a program whose memory comes from mmap, not malloc, for the preload tests.
 *
 *   app_mmap MIB
 *
 * Maps MIB MiB in 4 MiB private anonymous mappings and fills them; then unmaps every fourth
 * (whole), unmaps the second half of every fourth+1 (partial munmap), grows every
 * fourth+2 with mremap (moving), discards a middle 1 MiB of every fourth+3 with
 * madvise(MADV_DONTNEED) (it must read back as zeros) and refills it; finally verifies
 * everything and prints a checksum. Exit status 0, or 1 with a message on a mismatch.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAP (4UL << 20)

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static void fill(uint64_t *p, size_t words, uint64_t seed)
{
    for (size_t i = 0; i < words; i++)
        p[i] = mix(seed + i);
}

static int check(const uint64_t *p, size_t words, uint64_t seed, uint64_t *sum)
{
    for (size_t i = 0; i < words; i++) {
        if (p[i] != mix(seed + i))
            return -1;
        *sum = mix(*sum ^ p[i]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    size_t n = (strtoull(argv[1], NULL, 10) << 20) / MAP;
    uint64_t **maps = calloc(n, sizeof(*maps));
    size_t *len = calloc(n, sizeof(*len));
    for (size_t k = 0; k < n; k++) {
        maps[k] = mmap(NULL, MAP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (maps[k] == MAP_FAILED)
            return 1;
        len[k] = MAP;
        fill(maps[k], MAP / 8, k << 32);
    }
    for (size_t k = 0; k < n; k++) {
        switch (k % 4) {
        case 0:
            munmap(maps[k], MAP);
            maps[k] = NULL;
            break;
        case 1:
            munmap((char *)maps[k] + MAP / 2, MAP / 2);
            len[k] = MAP / 2;
            break;
        case 2: {
            void *q = mremap(maps[k], MAP, 2 * MAP, MREMAP_MAYMOVE);
            if (q == MAP_FAILED) {
                fprintf(stderr, "app_mmap: mremap failed\n");
                return 1;
            }
            maps[k] = q;
            len[k] = 2 * MAP;
            for (size_t i = MAP / 8; i < 2 * MAP / 8; i++) {
                if (maps[k][i] != 0) {
                    fprintf(stderr, "app_mmap: grown part of %zu is not zero\n", k);
                    return 1;
                }
                maps[k][i] = mix((k << 32) + i);
            }
            break;
        }
        case 3: {
            uint64_t *mid = maps[k] + (1UL << 20) / 8;
            madvise(mid, 1UL << 20, MADV_DONTNEED);
            for (size_t i = 0; i < (1UL << 20) / 8; i++) {
                if (mid[i] != 0) {
                    fprintf(stderr, "app_mmap: discarded part of %zu is not zero\n", k);
                    return 1;
                }
            }
            fill(mid, (1UL << 20) / 8, (k << 32) + (1UL << 20) / 8);
            break;
        }
        }
    }
    uint64_t sum = 0;
    for (size_t k = 0; k < n; k++) {
        if (maps[k] && check(maps[k], len[k] / 8, k << 32, &sum) != 0) {
            fprintf(stderr, "app_mmap: mapping %zu corrupt\n", k);
            return 1;
        }
    }
    printf("mappings %zu checksum %016llx\n", n, (unsigned long long)sum);
    return 0;
}
