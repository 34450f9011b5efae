/* app_reserve.c — a program that manages its heap the way JVMs and V8 do, for the preload
 * tests: reserve address space first, commit and uncommit parts of it later.
 *
 *   app_reserve MIB
 *
 * Reserves MIB MiB (+ 2 MiB of slack, trimmed away so that the reservation is 2 MiB aligned)
 * PROT_NONE and MAP_NORESERVE with an address hint; keeps its first page as a guard page
 * (an access must die of SIGSEGV, caught here); commits the first half with mprotect and the
 * second half with mmap(MAP_FIXED) in 1 MiB pieces; fills and verifies everything; uncommits
 * 4 MiB with mmap(MAP_FIXED, PROT_NONE) (guarded again) and 1 MiB with madvise(MADV_DONTNEED),
 * both of which must read back as zeros when committed again; maps a file (MAP_PRIVATE) and
 * shared anonymous memory with MAP_FIXED over pieces of the heap, checks them, writes them, and
 * puts fresh private memory back over them (zeros again); finally verifies every byte and
 * prints a checksum. Exit status 0, or 1 with a message on a mismatch.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MIB   (1UL << 20)
#define ALIGN (2 * MIB)
#define PAGE  4096UL

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* Each 8-byte word of the heap holds mix(seed of its MiB + index): seeds change on refills. */
static uint64_t *heap;
static size_t heap_mib;
static uint64_t *seeds;

static void fill_mib(size_t m, uint64_t seed)
{
    uint64_t *p = heap + m * (MIB / 8);
    for (size_t i = 0; i < MIB / 8; i++)
        p[i] = mix(seed + i);
    seeds[m] = seed;
}

static int check_mib(size_t m, uint64_t *sum)
{
    const uint64_t *p = heap + m * (MIB / 8);
    for (size_t i = 0; i < MIB / 8; i++) {
        uint64_t want = seeds[m] ? mix(seeds[m] + i) : 0;
        if (p[i] != want) {
            fprintf(stderr, "app_reserve: MiB %zu word %zu is %#llx, not %#llx\n", m, i,
                    (unsigned long long)p[i], (unsigned long long)want);
            return -1;
        }
        *sum = mix(*sum ^ p[i]);
    }
    return 0;
}

static int check_all(uint64_t *sum)
{
    for (size_t m = 0; m < heap_mib; m++)
        if (check_mib(m, sum) < 0)
            return -1;
    return 0;
}

static sigjmp_buf guard_jump;

static void on_segv(int sig)
{
    (void)sig;
    siglongjmp(guard_jump, 1);
}

/* Whether reading addr dies of SIGSEGV (caught). */
static int faults(volatile const char *addr)
{
    struct sigaction sa = {.sa_handler = on_segv}, old;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old);
    int hit = 1;
    if (sigsetjmp(guard_jump, 1) == 0) {
        (void)*addr;
        hit = 0;
    }
    sigaction(SIGSEGV, &old, NULL);
    return hit;
}

static int fail(const char *what)
{
    fprintf(stderr, "app_reserve: %s\n", what);
    return 1;
}

int main(int argc, char **argv)
{
    heap_mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    if (heap_mib < 16)
        return fail("at least 16 MiB");
    seeds = calloc(heap_mib, sizeof(*seeds));

    /* Reserve with a hint and slack, then trim to an aligned range, as V8 does. */
    size_t size = heap_mib * MIB + PAGE, slack = ALIGN;
    char *raw = mmap((void *)(uintptr_t)0x200000000000ULL, size + slack, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return fail("cannot reserve");
    char *base = (char *)(((uintptr_t)raw + ALIGN - 1) & ~(ALIGN - 1));
    if (base > raw && munmap(raw, (size_t)(base - raw)) != 0)
        return fail("cannot trim the head");
    size_t tail = (size_t)(raw + size + slack - (base + size));
    if (tail && munmap(base + size, tail) != 0)
        return fail("cannot trim the tail");
    char *guard = base;
    heap = (uint64_t *)(base + PAGE);

    if (!faults(guard))
        return fail("a reserved page could be read");
    size_t half = heap_mib / 2;
    if (mprotect(heap, half * MIB, PROT_READ | PROT_WRITE) != 0)
        return fail("cannot commit with mprotect");
    for (size_t m = half; m < heap_mib; m++)
        if (mmap((char *)heap + m * MIB, MIB, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
            return fail("cannot commit with MAP_FIXED");
    madvise(base, size, MADV_HUGEPAGE); /* advice a managed heap may ignore */
    if (!faults(guard))
        return fail("the guard page could be read after the commits");

    for (size_t m = 0; m < heap_mib; m++)
        fill_mib(m, 1000 + m);
    uint64_t sum = 0;
    if (check_all(&sum) < 0)
        return 1;

    /* Uncommit 4 MiB as a JVM does (PROT_NONE over it), and 1 MiB with MADV_DONTNEED. */
    char *mid = (char *)heap + (heap_mib / 4) * MIB;
    if (mmap(mid, 4 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1,
             0) == MAP_FAILED)
        return fail("cannot uncommit");
    if (!faults(mid + MIB))
        return fail("an uncommitted page could be read");
    if (mprotect(mid, 4 * MIB, PROT_READ | PROT_WRITE) != 0)
        return fail("cannot commit again");
    for (size_t m = heap_mib / 4; m < heap_mib / 4 + 4; m++)
        seeds[m] = 0; /* zeros */
    size_t dn = heap_mib - 3;
    if (madvise((char *)heap + dn * MIB, MIB, MADV_DONTNEED) != 0)
        return fail("cannot discard");
    seeds[dn] = 0;
    sum = 0;
    if (check_all(&sum) < 0)
        return 1;
    fill_mib(heap_mib / 4 + 1, 7777);

    /* A file mapped privately over 1 MiB of the heap: its content, then written. */
    char path[] = "/tmp/app_reserve.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return fail("cannot create a file");
    unlink(path);
    uint64_t *block = malloc(MIB);
    for (size_t i = 0; i < MIB / 8; i++)
        block[i] = mix(4242 + i);
    if (write(fd, block, MIB) != (ssize_t)MIB)
        return fail("cannot write the file");
    size_t fm = half + 1;
    char *fp = (char *)heap + fm * MIB;
    if (mmap(fp, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED)
        return fail("cannot map the file over the heap");
    if (memcmp(fp, block, MIB) != 0)
        return fail("the file mapped over the heap reads wrong");
    memset(fp, 0x5a, PAGE);
    /* Shared anonymous memory over 1 MiB of the heap. */
    size_t sm = half + 3;
    char *sp = (char *)heap + sm * MIB;
    if (mmap(sp, MIB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
        MAP_FAILED)
        return fail("cannot map shared memory over the heap");
    for (size_t i = 0; i < MIB; i++)
        if (sp[i] != 0)
            return fail("fresh shared memory is not zeros");
    memset(sp, 0x33, MIB);
    /* churn the rest of the heap through the cache while those stay */
    sum = 0;
    for (size_t m = 0; m < heap_mib; m++)
        if (m != fm && m != sm && check_mib(m, &sum) < 0)
            return 1;
    if (fp[0] != 0x5a || memcmp(fp + PAGE, (char *)block + PAGE, MIB - PAGE) != 0)
        return fail("the file mapping changed while the heap swapped");
    if (sp[100] != 0x33)
        return fail("the shared mapping changed while the heap swapped");
    /* Give both back: fresh private memory over them, and an munmap + MAP_FIXED. */
    if (mmap(sp, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
        MAP_FAILED)
        return fail("cannot put private memory back over the shared mapping");
    if (munmap(fp, MIB) != 0)
        return fail("cannot unmap the file mapping");
    if (mmap(fp, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
        MAP_FAILED)
        return fail("cannot commit where the file was");
    seeds[fm] = 0;
    for (size_t i = 0; i < MIB; i++)
        if (sp[i] != 0)
            return fail("the MiB that held the shared mapping is not zeros");
    seeds[sm] = 0;
    fill_mib(fm, 9191);
    fill_mib(sm, 9292);

    sum = 0;
    if (check_all(&sum) < 0)
        return 1;
    if (!faults(guard))
        return fail("the guard page could be read at the end");
    printf("app_reserve %zu MiB: checksum %016llx\n", heap_mib, (unsigned long long)sum);
    close(fd);
    free(block);
    if (munmap(base, size) != 0)
        return fail("cannot unmap the heap");
    free(seeds);
    return 0;
}
