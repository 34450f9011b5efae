/* preload_bench.c — bin/preload-bench: what running under liblethe.so costs a program whose
 * memory fits in the cache.
 *
 *   preload-bench [--rounds N] [--quick] [--conf FILE]   the comparison (below), one table
 *   preload-bench malloc OPS                  workload 1 alone (prints ns per op)
 *   preload-bench fits MIB OPS                workload 2 alone (prints seconds)
 *
 * Workloads, each run as a child process in three setups side by side, in alternation,
 * N rounds (default 3), medians reported:
 *  1. malloc: malloc/free of small objects (16..512 bytes) with 4096 live ones, replaced
 *     in a pseudo-random order; everything stays resident. Timed after a warm-up.
 *  2. fits: a program whose whole heap (64 MiB of 64..1024-byte objects) fits in the cache:
 *     it builds the heap, then does OPS random read-modify-write operations over it. Timed
 *     from start to end, page faults included.
 * Setups: plain (glibc malloc), jemalloc (LD_PRELOAD=libjemalloc.so.2) and Lethe (lethed
 * next to this program, cache 512M, embedded node over shm, so nothing is ever evicted;
 * every other setting at its default, or the lethe.conf given with --conf).
 * The ratios are Lethe's speed over the others' (1.0 = as fast).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

#define LIVE 4096

static int run_malloc(long ops)
{
    static void *live[LIVE];
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < LIVE; i++)
        live[i] = malloc(16 + rng(&s) % 497);
    for (long i = 0; i < ops / 4; i++) { /* warm-up: faults, thread cache */
        unsigned k = (unsigned)(rng(&s) % LIVE);
        free(live[k]);
        live[k] = malloc(16 + rng(&s) % 497);
    }
    double t0 = now_s();
    for (long i = 0; i < ops; i++) {
        unsigned k = (unsigned)(rng(&s) % LIVE);
        free(live[k]);
        live[k] = malloc(16 + rng(&s) % 497);
        *(volatile char *)live[k] = (char)i;
    }
    double t = now_s() - t0;
    printf("%.3f\n", t / (double)ops * 1e9);
    return 0;
}

static int run_fits(long mib, long ops)
{
    double t0 = now_s();
    size_t total = (size_t)mib << 20, bytes = 0, n = 0, cap = 1 << 16;
    uint64_t **obj = malloc(cap * sizeof(*obj));
    uint32_t *words = malloc(cap * sizeof(*words));
    uint64_t s = 88172645463325252ULL;
    while (bytes < total) {
        if (n == cap) {
            cap *= 2;
            obj = realloc(obj, cap * sizeof(*obj));
            words = realloc(words, cap * sizeof(*words));
        }
        words[n] = (uint32_t)(8 + rng(&s) % 121);
        obj[n] = malloc(words[n] * 8);
        for (uint32_t w = 0; w < words[n]; w++)
            obj[n][w] = n + w;
        bytes += words[n] * 8;
        n++;
    }
    uint64_t sum = 0;
    for (long i = 0; i < ops; i++) {
        size_t k = rng(&s) % n;
        uint32_t w = (uint32_t)(rng(&s) % words[k]);
        obj[k][w] += (uint64_t)i;
        sum += obj[k][w];
    }
    double t = now_s() - t0;
    printf("%.4f %llu\n", t, (unsigned long long)(sum & 0xff));
    return 0;
}

/* Runs argv (with env extras), returns the first number it printed, or -1. */
static double child(char *const argv[], char *const env[])
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        fprintf(stderr, "preload-bench: cannot run %s: %s\n", argv[0], strerror(rc));
        return -1;
    }
    char buf[256] = "";
    size_t len = 0;
    ssize_t got;
    while (len + 1 < sizeof(buf) && (got = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)got;
    buf[len] = '\0';
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "preload-bench: %s failed (status %#x)\n", argv[0], st);
        return -1;
    }
    return atof(buf);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The environment plus one variable (or none). */
static char **env_with(const char *extra)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
            env[k++] = environ[i];
    if (extra)
        env[k++] = (char *)extra;
    env[k] = NULL;
    return env;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "malloc") == 0)
        return run_malloc(atol(argv[2]));
    if (argc >= 4 && strcmp(argv[1], "fits") == 0)
        return run_fits(atol(argv[2]), atol(argv[3]));

    int rounds = 3;
    bool quick = false;
    const char *user_conf = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--conf") == 0 && i + 1 < argc)
            user_conf = argv[++i];
        else {
            fprintf(stderr, "usage: preload-bench [--rounds N] [--quick] [--conf FILE] | "
                            "malloc OPS | fits MIB OPS\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > 50)
        rounds = 3;
    char self[PATH_MAX], lethed[PATH_MAX + 16], conf[] = "/tmp/preload-bench-XXXXXX";
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0)
        return 1;
    self[n] = '\0';
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", self);
    snprintf(lethed, sizeof(lethed), "%s/lethed", dirname(dir));
    if (access(lethed, X_OK) != 0) {
        fprintf(stderr, "preload-bench: %s not found (build lethed)\n", lethed);
        return 1;
    }
    int fd = mkstemp(conf);
    if (fd < 0)
        return 1;
    const char *text = "[cache]\ncache_size = 512M\nregion_size = 4G\n"
                       "[transport]\nremote_size = 1G\n[control]\nlisten = off\n"
                       "[log]\nlevel = warn\nsummary = off\n";
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        return 1;
    close(fd);

    const char *malloc_ops = quick ? "2000000" : "20000000";
    const char *fits_ops = quick ? "3000000" : "30000000";
    char **plain_env = env_with(NULL);
    char **jemalloc_env = env_with("LD_PRELOAD=libjemalloc.so.2");
    struct {
        const char *name;
        char *argv[12];
    } work[2] = {
        {"malloc/free, ns per op", {self, "malloc", (char *)malloc_ops, NULL}},
        {"64 MiB heap that fits, s", {self, "fits", "64", (char *)fits_ops, NULL}},
    };
    printf("preload-bench: %d rounds, medians; Lethe = lethed -c %s\n", rounds,
           user_conf ? user_conf : "(cache 512M, shm, nothing evicted, other keys default)");
    printf("%-28s %12s %12s %12s %10s %10s\n", "workload", "plain", "jemalloc", "lethe", "vs plain",
           "vs jemalloc");
    int status = 0;
    for (int w = 0; w < 2; w++) {
        double plain[50], jem[50], lethe[50];
        char *under[16] = {lethed, "-c", user_conf ? (char *)user_conf : conf, "--"};
        for (int i = 0; work[w].argv[i]; i++)
            under[4 + i] = work[w].argv[i];
        for (int r = 0; r < rounds; r++) {
            plain[r] = child(work[w].argv, plain_env);
            jem[r] = child(work[w].argv, jemalloc_env);
            lethe[r] = child(under, plain_env);
            if (plain[r] < 0 || jem[r] < 0 || lethe[r] < 0)
                status = 1;
        }
        double p = median(plain, rounds), j = median(jem, rounds), l = median(lethe, rounds);
        printf("%-28s %12.4f %12.4f %12.4f %9.3fx %9.3fx\n", work[w].name, p, j, l, p / l, j / l);
    }
    unlink(conf);
    free(plain_env);
    free(jemalloc_env);
    return status;
}
