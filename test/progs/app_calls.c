/* app_calls.c — a program for lethed's tests: system calls given heap memory that has gone
 * cold, beyond read/write and stdio.
 *
 *   app_calls MIB DIR
 *
 * It keeps its paths in heap strings and its results in heap structs, and between uses churns
 * MIB MiB of fresh memory (filled and checked twice), so that under Lethe with a smaller cache
 * those pages have been evicted when the kernel reads or writes them:
 *  - poll on a cold heap array of pollfds (a pipe with data: every entry must report POLLIN),
 *    ppoll likewise;
 *  - epoll_wait and epoll_pwait into a cold heap array of events (one ready pipe);
 *  - FILES files named by heap strings: created, then stat, lstat, fstatat, statx, access,
 *    faccessat from cold heap paths into cold heap structs (sizes checked), renamed,
 *    unlinked; a heap-named directory made, opened with opendir, listed, removed; fstat into
 *    a cold heap struct.
 * Every result is checked; a failure prints what went wrong to stderr and exits 1. The output
 * on stdout is the same with and without Lethe.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK  (1u << 20)
#define FILES  12
#define POLLS  8192
#define EVENTS 8192

static size_t churn_mib;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static _Noreturn void die(const char *what, unsigned i)
{
    fprintf(stderr, "app_calls: %s (item %u, errno %d: %s)\n", what, i, errno, strerror(errno));
    exit(1);
}

/* Fills churn_mib MiB of fresh memory, checks it twice and unmaps it. A fresh mapping each
 * time (under Lethe a fresh region extent, its pages new to the cache): freed and reused heap
 * blocks would come back as swap-ins, which enter the cache's active list at its cold end and
 * mostly evict each other, leaving the program's other pages where they are. */
static void churn(uint64_t seed)
{
    size_t len = churn_mib * CHUNK;
    unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        die("mmap of the churn area failed", 0);
    for (size_t j = 0; j < len; j += 512)
        m[j] = (unsigned char)mix(seed + j);
    for (int round = 0; round < 2; round++)
        for (size_t j = 0; j < len; j += 512)
            if (m[j] != (unsigned char)mix(seed + j))
                die("churn area corrupt", (unsigned)(j / CHUNK));
    munmap(m, len);
}

/* Makes the stores to p happen here, before the churn: without it the compiler may sink
 * them past churn(), which cannot see memory that p has not been handed to. */
static void settled(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static char *heap_path(const char *dir, const char *name, unsigned i)
{
    size_t len = strlen(dir) + strlen(name) + 16;
    char *p = malloc(len);
    if (!p)
        die("malloc of a path failed", i);
    snprintf(p, len, "%s/%s-%u", dir, name, i);
    return p;
}

static void paths(const char *dir)
{
    char *names[FILES], *renamed[FILES];
    for (unsigned i = 0; i < FILES; i++) {
        names[i] = heap_path(dir, "file", i);
        renamed[i] = heap_path(dir, "renamed", i);
        int fd = open(names[i], O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0)
            die("creating a file failed", i);
        for (unsigned k = 0; k <= i; k++)
            if (write(fd, "x", 1) != 1)
                die("writing a file failed", i);
        close(fd);
    }
    struct stat *st = malloc(sizeof(*st));
    struct statx *stx = malloc(sizeof(*stx));
    if (!st || !stx)
        die("malloc of the stat buffers failed", 0);
    /* one churn per file; the call that comes first after it (the one that meets the cold
     * path and struct) rotates, so each kind is first FILES / 6 times */
    for (unsigned i = 0; i < FILES; i++) {
        churn(100 + i);
        for (unsigned k = 0; k < 6; k++) {
            unsigned which = (i + k) % 6;
            int rc = 0;
            long long size = -1;
            switch (which) {
            case 0:
                rc = stat(names[i], st);
                size = st->st_size;
                break;
            case 1:
                rc = lstat(names[i], st);
                size = st->st_size;
                break;
            case 2:
                rc = fstatat(AT_FDCWD, names[i], st, 0);
                size = st->st_size;
                break;
            case 3:
                rc = statx(AT_FDCWD, names[i], 0, STATX_SIZE, stx);
                size = (long long)stx->stx_size;
                break;
            case 4:
                rc = access(names[i], R_OK | W_OK);
                size = i + 1;
                break;
            default:
                rc = faccessat(AT_FDCWD, names[i], R_OK, 0);
                size = i + 1;
                break;
            }
            if (rc != 0 || size != (long long)i + 1) {
                static const char *const what[] = {"stat",  "lstat",  "fstatat",
                                                   "statx", "access", "faccessat"};
                char msg[96];
                snprintf(msg, sizeof(msg), "%s of a cold heap path into a cold heap struct failed",
                         what[which]);
                die(msg, i);
            }
        }
    }
    churn(500);
    for (unsigned i = 0; i < FILES; i++) {
        if (rename(names[i], renamed[i]) != 0)
            die("rename of heap paths failed", i);
        if (i % 8 == 0)
            churn(600 + i);
    }
    churn(700);
    for (unsigned i = 0; i < FILES; i++) {
        if (unlink(renamed[i]) != 0)
            die("unlink of a heap path failed", i);
        if (access(names[i], F_OK) == 0 || errno != ENOENT)
            die("a renamed file is still under its old name", i);
    }
    char *sub = heap_path(dir, "subdir", 0);
    churn(800);
    if (mkdir(sub, 0700) != 0)
        die("mkdir of a heap path failed", 0);
    churn(801);
    DIR *d = opendir(sub);
    if (!d)
        die("opendir of a heap path failed", 0);
    unsigned entries = 0;
    while (readdir(d))
        entries++;
    closedir(d);
    if (entries != 2)
        die("the new directory is not empty", entries);
    int fd = open(sub, O_RDONLY | O_DIRECTORY);
    churn(802);
    if (fd < 0 || fstat(fd, st) != 0 || !S_ISDIR(st->st_mode))
        die("fstat into a cold heap struct failed", 0);
    close(fd);
    churn(803);
    if (rmdir(sub) != 0)
        die("rmdir of a heap path failed", 0);
    for (unsigned i = 0; i < FILES; i++) {
        free(names[i]);
        free(renamed[i]);
    }
    free(sub);
    free(stx);
    free(st);
    printf("paths ok %u\n", FILES);
}

static void polls(void)
{
    int p[2];
    if (pipe(p) != 0 || write(p[1], "ready", 5) != 5)
        die("pipe failed", 0);
    /* 64 and 96 KiB: jemalloc's large sizes, extents of their own, which nothing else keeps
     * warm */
    struct pollfd *fds = malloc(POLLS * sizeof(*fds));
    struct epoll_event *events = malloc(EVENTS * sizeof(*events));
    if (!fds || !events)
        die("malloc of the arrays failed", 0);
    for (unsigned round = 0; round < 4; round++) {
        for (unsigned i = 0; i < POLLS; i++)
            fds[i] = (struct pollfd){.fd = p[0], .events = POLLIN};
        settled(fds);
        churn(900 + round);
        int n;
        if (round % 2 == 0) {
            n = poll(fds, POLLS, 5000);
        } else {
            struct timespec ts = {.tv_sec = 5};
            n = ppoll(fds, POLLS, &ts, NULL);
        }
        if (n != POLLS)
            die("poll on a cold heap array did not report every entry", round);
        for (unsigned i = 0; i < POLLS; i++)
            if (!(fds[i].revents & POLLIN))
                die("a pollfd did not report POLLIN", i);
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1234};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) != 0)
        die("epoll set-up failed", 0);
    for (unsigned round = 0; round < 4; round++) {
        memset(events, 0, EVENTS * sizeof(*events));
        settled(events);
        churn(1000 + round);
        sigset_t none;
        sigemptyset(&none);
        int n = round % 2 == 0 ? epoll_wait(ep, events, EVENTS, 5000)
                               : epoll_pwait(ep, events, EVENTS, 5000, &none);
        if (n != 1 || events[0].data.u64 != 0x1234 || !(events[0].events & EPOLLIN))
            die("epoll_wait into a cold heap array failed", round);
    }
    close(ep);
    close(p[0]);
    close(p[1]);
    free(events);
    free(fds);
    printf("polls ok\n");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: app_calls MIB DIR\n");
        return 2;
    }
    churn_mib = strtoull(argv[1], NULL, 10);
    polls();
    paths(argv[2]);
    printf("done\n");
    return 0;
}
