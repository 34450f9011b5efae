/* app_forkexec.c — a program that forks and execs, for lethed's tests.
 *
 *   app_forkexec MIB
 *
 * Builds MIB MiB of heap (filled with a pattern), then:
 *  - fork(): the child allocates, uses and frees memory of its own, then _exits with 0
 *    (ok) or 1;
 *  - fork() + execv() of itself as "app_forkexec --child": a fresh program that allocates,
 *    verifies and prints a line;
 *  - system("echo system: ok") and popen("echo popen: ok", "r");
 *  - the parent checks its whole heap again and prints a checksum.
 * The output is the same with and without Lethe; the exit status is 0 when every step
 * succeeded.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static int check_chunk(uint64_t *c, size_t k, uint64_t *sum)
{
    for (size_t i = 0; i < CHUNK / 8; i++) {
        if (c[i] != mix(k * CHUNK + i))
            return -1;
        if (sum)
            *sum = mix(*sum ^ c[i]);
    }
    return 0;
}

static int child_program(void)
{
    size_t n = 256;
    uint64_t **c = malloc(n * sizeof(*c)), sum = 0;
    for (size_t k = 0; k < n; k++) {
        c[k] = malloc(CHUNK);
        for (size_t i = 0; i < CHUNK / 8; i++)
            c[k][i] = mix(k * CHUNK + i);
    }
    for (size_t k = 0; k < n; k++)
        if (check_chunk(c[k], k, &sum) != 0)
            return 1;
    printf("exec child: %zu chunks ok %016llx\n", n, (unsigned long long)sum);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--child") == 0)
        return child_program();
    if (argc < 2) {
        fprintf(stderr, "usage: app_forkexec MIB\n");
        return 2;
    }
    size_t n = (strtoull(argv[1], NULL, 10) << 20) / CHUNK;
    uint64_t **c = malloc(n * sizeof(*c));
    for (size_t k = 0; k < n; k++) {
        c[k] = malloc(CHUNK);
        for (size_t i = 0; i < CHUNK / 8; i++)
            c[k][i] = mix(k * CHUNK + i);
    }
    int failures = 0;
    fflush(stdout);

    pid_t pid = fork();
    if (pid == 0) {
        /* What a child does between fork and exec or _exit: allocate, use, free. (It does
         * not read the parent's heap: under Lethe a forked child cannot swap pages in.) */
        int bad = 0;
        for (int round = 0; round < 16; round++) {
            uint64_t *mine = malloc(CHUNK);
            for (size_t i = 0; i < CHUNK / 8; i++)
                mine[i] = mix(round * CHUNK + i);
            bad |= check_chunk(mine, (size_t)round, NULL) != 0;
            free(mine);
        }
        char *big = malloc(4 << 20);
        memset(big, 0x5a, 4 << 20);
        bad |= big[12345] != 0x5a;
        _exit(bad);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("fork child: FAILED\n");
        failures++;
    } else {
        printf("fork child: ok\n");
    }
    fflush(stdout);

    pid = fork();
    if (pid == 0) {
        char *args[] = {argv[0], "--child", NULL};
        execv("/proc/self/exe", args);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("exec child: FAILED\n");
        failures++;
    }
    fflush(stdout);

    if (system("echo system: ok") != 0) {
        printf("system: FAILED\n");
        failures++;
    }
    fflush(stdout);
    FILE *p = popen("echo popen: ok", "r");
    char line[64] = "";
    if (!p || !fgets(line, sizeof(line), p) || pclose(p) != 0) {
        printf("popen: FAILED\n");
        failures++;
    } else {
        printf("read from %s", line);
    }

    uint64_t sum = 0;
    for (size_t k = 0; k < n; k++) {
        if (check_chunk(c[k], k, &sum) != 0) {
            printf("parent heap: chunk %zu CORRUPT\n", k);
            failures++;
            break;
        }
    }
    printf("parent heap: %zu chunks %016llx\n", n, (unsigned long long)sum);
    return failures ? 1 : 0;
}
