/* app_protect.c — heap memory the program protects itself, while the rest of its heap goes
 * out and comes back:
 *   - a 1 MiB block written, pushed out to the memory node, then made read-only and read
 *     back (the pages come back into a read-only range); read again while more heap churns
 *     past it; a write to it must still fault (SIGSEGV); made writable again, changed, and
 *     read back after more churn;
 *   - a PROT_NONE guard page at the end of a heap block: the data before it survives the
 *     churn, and touching the guard page faults;
 *   - 2 MiB mappings, half made read-only or PROT_NONE, unmapped: the mappings and allocations
 *     made next (which may get the same addresses) must be writable;
 *   - with "lock": a 64 KiB locked block (mlock) stays resident through the churn, and
 *     mappings unmapped while partly locked leave zeros for the next ones;
 *   - with "lockall": mlockall(MCL_CURRENT | MCL_FUTURE), whose result is printed.
 * usage: app_protect CHURN_MIB [lock|lockall]. Prints one line per step (checksums, which must
 * match a run without Lethe) and exits 0 when every check passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL

static sigjmp_buf segv_jump;

static void on_segv(int sig)
{
    (void)sig;
    siglongjmp(segv_jump, 1);
}

/* Whether writing (or reading) *p raises SIGSEGV. */
static int faults(volatile unsigned char *p, int write)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, &old);
    int faulted = 0;
    if (sigsetjmp(segv_jump, 1) == 0) {
        if (write)
            *p = 1;
        else
            (void)*p;
    } else {
        faulted = 1;
    }
    sigaction(SIGSEGV, &old, NULL);
    return faulted;
}

static unsigned char pattern(size_t i, unsigned salt)
{
    return (unsigned char)(i * 131 + salt + (i >> 12));
}

static void fill(unsigned char *p, size_t n, unsigned salt)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pattern(i, salt);
}

/* Counts the bytes that differ from the pattern; adds every byte to *sum. */
static size_t check(const unsigned char *p, size_t n, unsigned salt, uint64_t *sum)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        bad += p[i] != pattern(i, salt);
        *sum = *sum * 31 + p[i];
    }
    return bad;
}

/* Writes the whole churn area, twice: every earlier page of the heap is pushed out. */
static void churn(unsigned char *c, size_t n, unsigned round)
{
    for (unsigned k = 0; k < 2; k++)
        for (size_t i = 0; i < n; i += PAGE / 4)
            c[i] = (unsigned char)(round + k + i);
}

/* A fresh private anonymous mapping (placed in the managed region under Lethe); exits on
 * failure. */
static unsigned char *fresh_mapping(size_t n)
{
    void *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CHURN_MIB [lock|lockall]\n", argv[0]);
        return 2;
    }
    size_t churn_bytes = (size_t)atoi(argv[1]) << 20;
    int lock = argc > 2 && strcmp(argv[2], "lock") == 0;
    int lockall = argc > 2 && strcmp(argv[2], "lockall") == 0;
    unsigned char *c = malloc(churn_bytes);
    size_t ro_bytes = 1UL << 20, g_bytes = 64 * 1024, lk_bytes = 64 * 1024;
    unsigned char *ro = aligned_alloc(PAGE, ro_bytes);
    unsigned char *g = aligned_alloc(PAGE, g_bytes);
    unsigned char *lk = lock ? aligned_alloc(PAGE, lk_bytes) : NULL;
    if (!c || !ro || !g || (lock && !lk)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    size_t bad = 0;
    uint64_t sum = 0;

    /* read-only after it went out */
    fill(ro, ro_bytes, 1);
    churn(c, churn_bytes, 1);
    if (mprotect(ro, ro_bytes, PROT_READ) != 0) {
        perror("mprotect read-only");
        return 1;
    }
    bad += check(ro, ro_bytes, 1, &sum);
    printf("read-only, read back: %zu bad, sum %016llx\n", bad, (unsigned long long)sum);
    for (unsigned r = 2; r < 5; r++) {
        churn(c, churn_bytes, r);
        bad += check(ro, ro_bytes, 1, &sum);
    }
    printf("read-only, read through churn: %zu bad, sum %016llx\n", bad, (unsigned long long)sum);
    int wf = faults(ro + 12345, 1);
    printf("read-only, a write faults: %s\n", wf ? "yes" : "NO");
    bad += !wf;

    /* writable again */
    if (mprotect(ro, ro_bytes, PROT_READ | PROT_WRITE) != 0) {
        perror("mprotect read-write");
        return 1;
    }
    for (size_t i = 0; i < ro_bytes; i++)
        ro[i] = pattern(i, 1) ^ 0x5a;
    churn(c, churn_bytes, 5);
    size_t changed = 0;
    for (size_t i = 0; i < ro_bytes; i++)
        changed += ro[i] != (unsigned char)(pattern(i, 1) ^ 0x5a);
    bad += changed;
    printf("writable again, changed and read back: %zu bad\n", changed);

    /* a guard page */
    unsigned char *guard = g + g_bytes - PAGE;
    fill(g, g_bytes - PAGE, 2);
    if (mprotect(guard, PAGE, PROT_NONE) != 0) {
        perror("mprotect guard");
        return 1;
    }
    churn(c, churn_bytes, 6);
    size_t gbad = check(g, g_bytes - PAGE, 2, &sum);
    int gf = faults(guard, 0);
    bad += gbad + !gf;
    printf("guard page: %zu bad before it, a read of it faults: %s\n", gbad, gf ? "yes" : "NO");
    mprotect(guard, PAGE, PROT_READ | PROT_WRITE);

    /* mappings protected, then unmapped: the next mappings and allocations get that address
     * range back and must find it read-write, as fresh memory is */
    for (unsigned r = 0; r < 4; r++) {
        size_t mb = 2UL << 20;
        unsigned char *m = fresh_mapping(mb);
        fill(m, mb, 4 + r);
        if (mprotect(m, mb / 2, r % 2 ? PROT_NONE : PROT_READ) != 0) {
            perror("mprotect mapping");
            return 1;
        }
        munmap(m, mb);
        unsigned char *n = fresh_mapping(mb);
        unsigned char *h = malloc(mb);
        if (!h) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        fill(n, mb, 8 + r);
        fill(h, mb, 12 + r);
        bad += check(n, mb, 8 + r, &sum) + check(h, mb, 12 + r, &sum);
        munmap(n, mb);
        free(h);
    }
    printf("protected mappings unmapped, then fresh mappings written: %zu bad so far\n", bad);

    if (lockall) {
        /* under Lethe refused (the managed heap cannot all be locked), never hung */
        int rc = mlockall(MCL_CURRENT | MCL_FUTURE);
        printf("mlockall: %s\n", rc == 0 ? "ok" : strerror(errno));
        if (rc == 0)
            munlockall();
    }

    if (lock) {
        fill(lk, lk_bytes, 3);
        if (mlock(lk, lk_bytes) != 0) {
            perror("mlock");
            return 1;
        }
        churn(c, churn_bytes, 7);
        unsigned char vec[16];
        size_t resident = 0;
        if (mincore(lk, lk_bytes, vec) == 0)
            for (size_t i = 0; i < lk_bytes / PAGE; i++)
                resident += vec[i] & 1;
        size_t lbad = check(lk, lk_bytes, 3, &sum);
        bad += lbad + (resident != lk_bytes / PAGE);
        printf("locked block: %zu of %zu pages resident after the churn, %zu bad\n", resident,
               lk_bytes / PAGE, lbad);
        munlock(lk, lk_bytes);
        free(lk);
        /* a mapping unmapped while partly locked: the next mappings must read zeros (a
         * locked page cannot be dropped; it must be unlocked first) */
        size_t nonzero = 0;
        for (unsigned r = 0; r < 4; r++) {
            size_t mb = 2UL << 20;
            unsigned char *m = fresh_mapping(mb);
            for (size_t i = 0; i < mb; i++)
                nonzero += m[i] != 0;
            memset(m, 0xab, mb);
            if (mlock(m, 256 * 1024) != 0) {
                perror("mlock mapping");
                return 1;
            }
            munmap(m, mb);
        }
        bad += nonzero;
        printf("mappings unmapped while locked, fresh ones read zeros: %zu bytes not\n", nonzero);
    }

    printf("sum %016llx, %s\n", (unsigned long long)sum, bad ? "FAILED" : "ok");
    free(g);
    free(ro);
    free(c);
    return bad ? 1 : 0;
}
