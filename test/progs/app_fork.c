/* app_fork.c — fork without exec, for the preload tests.
 *
 *   app_fork MIB
 *
 * Fills a heap of MIB MiB (malloc'd 1 MiB blocks), then forks a child that does not exec.
 * While the child reads every block and checks it holds what it held at the fork, the
 * parent rewrites every block (so that its pages are written back and swapped in again) and
 * frees and reallocates a quarter of them. The child also writes its own pattern into half
 * of the blocks and reads it back (its writes are its own), forks a grandchild that checks
 * the child's view, and exits 0 when everything matched. The parent then checks its own
 * content, waits for the child, forks a second child that checks the parent's new content,
 * and prints a checksum. Exit status 0, or 1 with a message.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BLOCK (1UL << 20)

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static uint64_t **blocks;
static size_t nblocks;

static void fill(size_t b, uint64_t seed)
{
    for (size_t i = 0; i < BLOCK / 8; i++)
        blocks[b][i] = mix(seed * 1000003 + i);
}

static int check(size_t b, uint64_t seed, const char *who)
{
    for (size_t i = 0; i < BLOCK / 8; i++)
        if (blocks[b][i] != mix(seed * 1000003 + i)) {
            fprintf(stderr, "app_fork: %s: block %zu word %zu is %#llx, not %#llx\n", who, b, i,
                    (unsigned long long)blocks[b][i], (unsigned long long)mix(seed * 1000003 + i));
            return -1;
        }
    return 0;
}

/* Checks every block against seed base + b; returns 0 when all match. */
static int check_all(uint64_t base, const char *who)
{
    for (size_t b = 0; b < nblocks; b++)
        if (check(b, base + b, who) < 0)
            return -1;
    return 0;
}

static int wait_ok(pid_t pid, const char *who)
{
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "app_fork: the %s failed (status %#x)\n", who, st);
        return -1;
    }
    return 0;
}

static int child_main(void)
{
    if (check_all(1000, "child") < 0)
        return 1;
    for (size_t b = 0; b < nblocks; b += 2)
        fill(b, 5000 + b);
    pid_t g = fork();
    if (g < 0)
        return 1;
    if (g == 0) { /* grandchild: the child's view as of its fork */
        for (size_t b = 0; b < nblocks; b++)
            if (check(b, (b % 2 ? 1000 : 5000) + b, "grandchild") < 0)
                _exit(1);
        _exit(0);
    }
    for (size_t b = 0; b < nblocks; b++)
        if (check(b, (b % 2 ? 1000 : 5000) + b, "child, after its writes") < 0)
            return 1;
    return wait_ok(g, "grandchild") < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    nblocks = argc > 1 ? strtoul(argv[1], NULL, 10) : 32;
    blocks = calloc(nblocks, sizeof(*blocks));
    for (size_t b = 0; b < nblocks; b++) {
        blocks[b] = malloc(BLOCK);
        fill(b, 1000 + b);
    }
    fflush(stdout);
    pid_t c = fork();
    if (c < 0) {
        perror("app_fork: fork");
        return 1;
    }
    if (c == 0)
        _exit(child_main());
    /* The parent changes everything while the child reads. */
    for (size_t b = 0; b < nblocks; b++) {
        if (b % 4 == 3) {
            free(blocks[b]);
            blocks[b] = malloc(BLOCK);
        }
        fill(b, 2000 + b);
    }
    if (check_all(2000, "parent") < 0)
        return 1;
    if (wait_ok(c, "child") < 0)
        return 1;
    pid_t c2 = fork();
    if (c2 == 0)
        _exit(check_all(2000, "second child") < 0 ? 1 : 0);
    if (c2 < 0 || wait_ok(c2, "second child") < 0)
        return 1;
    uint64_t sum = 0;
    for (size_t b = 0; b < nblocks; b++)
        sum = mix(sum ^ blocks[b][b % (BLOCK / 8)]);
    printf("app_fork %zu MiB: children saw the heap as of their fork; checksum %016llx\n", nblocks,
           (unsigned long long)sum);
    return 0;
}
