/* app_calls.c — a program for lethed's tests: system calls given heap memory that has gone
 * cold, beyond read/write and stdio.
 *
 *   app_calls MIB DIR [basic|more]
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
 * With "more" (instead of the default "basic"), the calls past those:
 *  - scandir and scandirat (SCANS times) of a directory of LISTED long heap-built names (a
 *    listing longer than the DIR's buffer, so it takes several refills), readdir_r into a
 *    cold heap entry;
 *  - select and pselect on cold heap fd_sets, and select on a heap set sized for 1501
 *    descriptors (when the descriptor limit can be raised that far);
 *  - symlink, readlink, realpath, link, chown, lchown, fchownat, fchmodat, utimensat and
 *    utimes (cold heap time arrays), statvfs and statfs into cold heap structs, mkstemp and
 *    mkdtemp of cold heap templates, setxattr/getxattr/listxattr/removexattr (where the file
 *    system has user xattrs), remove;
 *  - a TCP connection on 127.0.0.1 whose addresses and options are cold heap memory:
 *    setsockopt, bind, getsockname, connect, accept and accept4, getpeername, getsockopt;
 *  - getrandom into a fresh 1 MiB heap buffer and 8 of 4 MiB, getentropy,
 *    pipe/pipe2/socketpair into a cold heap array, waitpid/wait4/waitid/wait into cold heap
 *    statuses, sigprocmask and pthread_sigmask with cold heap sets, sched_get/setaffinity
 *    and pthread_getaffinity_np with a CPU_ALLOC'd mask, uname, getrusage, get/set/prlimit,
 *    nanosleep and clock_nanosleep on cold heap structs; fcntl record locks (F_SETLK,
 *    F_GETLK, F_OFD_SETLK, F_OFD_GETLK) and F_SETOWN_EX/F_GETOWN_EX through cold heap structs;
 *  - one blocking write of 1 MiB of cold heap memory to a pipe a thread drains: all of it;
 *  - writev, pwritev, preadv and readv of 1 MiB of cold heap memory in uneven vectors to and
 *    from a file, and writev of it to a pipe a thread drains: all of it each time;
 *  - DGRAMS datagrams sent by a thread from cold heap memory (send, sendmmsg), received by
 *    recv, recvfrom, recvmsg and recvmmsg into cold heap memory: each whole, in order (a
 *    datagram whose copy fails is dropped by the kernel);
 *  - posix_spawn, posix_spawnp and system of cold heap command lines and argv arrays, and at
 *    last execv of this program from a cold heap path and argv ("exec-child MIB"), which
 *    execs it once more with execl ("exec-last"), each printing one line.
 * Every result is checked; a failure prints what went wrong to stderr and exits 1. The output
 * on stdout is the same with and without Lethe.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define CHUNK  (1u << 20)
#define FILES  12
#define POLLS  8192
#define EVENTS 8192
#define LISTED 300
#define SCANS  12

extern char **environ;

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

static int not_dots(const struct dirent *e)
{
    return strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
}

/* A name of about 200 bytes: LISTED of them outgrow a DIR's 32 KiB buffer, and the first
 * entry of a refill crosses onto the buffer's second page more often (glibc's scandir then
 * meets a missing page at once and fails with EFAULT, where a later entry would only make
 * the refill short). */
static char *listed_name(const char *sub, unsigned i)
{
    char name[256];
    snprintf(name, sizeof(name), "an-entry-%0190u", i);
    return heap_path(sub, name, i);
}

static void listings(const char *dir)
{
    char *sub = heap_path(dir, "listing", 0);
    if (mkdir(sub, 0700) != 0)
        die("mkdir of the listing directory failed", 0);
    for (unsigned i = 0; i < LISTED; i++) {
        char *name = listed_name(sub, i);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0)
            die("creating a listed file failed", i);
        close(fd);
        free(name);
    }
    for (unsigned round = 0; round < SCANS; round++) {
        churn(1100 + round);
        struct dirent **list = NULL;
        int n = round % 2 == 0 ? scandir(sub, &list, not_dots, alphasort)
                               : scandirat(AT_FDCWD, sub, &list, not_dots, alphasort);
        if (n != LISTED)
            die(round % 2 == 0 ? "scandir missed entries" : "scandirat missed entries",
                (unsigned)n);
        for (int i = 0; i < n; i++) {
            if (i > 0 && strcmp(list[i - 1]->d_name, list[i]->d_name) >= 0)
                die("scandir's list is not sorted", (unsigned)i);
            if (strncmp(list[i]->d_name, "an-entry-", 9) != 0)
                die("scandir returned a name that is not in the directory", (unsigned)i);
        }
        for (int i = 0; i < n; i++)
            free(list[i]);
        free(list);
    }
    struct dirent *entry = malloc(sizeof(*entry));
    if (!entry)
        die("malloc of a dirent failed", 0);
    for (unsigned round = 0; round < 2; round++) {
        DIR *d = opendir(sub);
        if (!d)
            die("opendir of the listing directory failed", round);
        unsigned seen = 0;
        for (;;) {
            if (seen % 100 == 0)
                churn(1200 + seen + round);
            struct dirent *got = NULL;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
            int rc = readdir_r(d, entry, &got); /* deprecated, still used */
#pragma GCC diagnostic pop
            if (rc != 0) {
                errno = rc;
                die("readdir_r into a cold heap entry failed", seen);
            }
            if (!got)
                break;
            seen++;
        }
        closedir(d);
        if (seen != LISTED + 2)
            die("readdir_r missed entries", seen);
    }
    for (unsigned i = 0; i < LISTED; i++) {
        char *name = listed_name(sub, i);
        if (unlink(name) != 0)
            die("unlink of a listed file failed", i);
        free(name);
    }
    if (rmdir(sub) != 0)
        die("rmdir of the listing directory failed", 0);
    free(entry);
    free(sub);
    printf("listings ok %u\n", LISTED);
}

static void selects(void)
{
    int p[2];
    if (pipe(p) != 0 || write(p[1], "ready", 5) != 5)
        die("pipe failed", 0);
    fd_set *rd = malloc(sizeof(*rd)), *wr = malloc(sizeof(*wr)), *ex = malloc(sizeof(*ex));
    struct timeval *tv = malloc(sizeof(*tv));
    struct timespec *ts = malloc(sizeof(*ts));
    if (!rd || !wr || !ex || !tv || !ts)
        die("malloc of the fd_sets failed", 0);
    int top = (p[0] > p[1] ? p[0] : p[1]) + 1;
    for (unsigned round = 0; round < 4; round++) {
        FD_ZERO(rd);
        FD_ZERO(wr);
        FD_ZERO(ex);
        FD_SET(p[0], rd);
        FD_SET(p[1], wr);
        FD_SET(p[0], ex);
        *tv = (struct timeval){.tv_sec = 5};
        *ts = (struct timespec){.tv_sec = 5};
        settled(rd);
        settled(wr);
        settled(ex);
        settled(tv);
        settled(ts);
        churn(1300 + round);
        int n = round % 2 == 0 ? select(top, rd, wr, ex, tv) : pselect(top, rd, wr, ex, ts, NULL);
        if (n != 2 || !FD_ISSET(p[0], rd) || !FD_ISSET(p[1], wr) || FD_ISSET(p[0], ex))
            die(round % 2 == 0 ? "select on cold heap fd_sets failed"
                               : "pselect on cold heap fd_sets failed",
                round);
        if (round % 2 == 0 && (tv->tv_sec > 5 || tv->tv_sec < 0))
            die("select left a timeout that is not what remained", round);
    }
    /* more descriptors than an fd_set holds: sets the program sized itself, on the heap */
    struct rlimit lim;
    int high = 1500;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_max > (rlim_t)high + 1) {
        if (lim.rlim_cur <= (rlim_t)high) {
            lim.rlim_cur = (rlim_t)high + 1;
            if (setrlimit(RLIMIT_NOFILE, &lim) != 0)
                die("setrlimit failed", 0);
        }
        if (dup2(p[0], high) != high)
            die("dup2 to a high descriptor failed", 0);
        size_t bytes = (size_t)(high + 64) / 8;
        unsigned char *big = calloc(1, bytes);
        if (!big)
            die("malloc of a large fd_set failed", 0);
        for (unsigned round = 0; round < 2; round++) {
            memset(big, 0, bytes);
            big[high / 8] = (unsigned char)(1u << (high % 8));
            settled(big);
            churn(1310 + round);
            *tv = (struct timeval){.tv_sec = 5};
            int n = select(high + 1, (fd_set *)(void *)big, NULL, NULL, tv);
            if (n != 1 || !(big[high / 8] & (1u << (high % 8))))
                die("select on a cold heap fd_set beyond FD_SETSIZE failed", round);
        }
        close(high);
        free(big);
    }
    close(p[0]);
    close(p[1]);
    free(ts);
    free(tv);
    free(ex);
    free(wr);
    free(rd);
    printf("selects ok\n");
}

/* stat's size and mode of path, or die. */
static struct stat stat_of(const char *path, const char *what)
{
    struct stat st;
    if (stat(path, &st) != 0)
        die(what, 0);
    return st;
}

static void links(const char *dir)
{
    char *target = heap_path(dir, "target", 0), *sym = heap_path(dir, "symlink", 0);
    char *hard = heap_path(dir, "hardlink", 0), *buf = malloc(4096);
    if (!buf)
        die("malloc of a buffer failed", 0);
    int fd = open(target, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, "abc", 3) != 3)
        die("creating the target failed", 0);
    close(fd);
    churn(1400);
    if (symlink(target, sym) != 0)
        die("symlink of cold heap paths failed", 0);
    churn(1401);
    ssize_t len = readlink(sym, buf, 4096);
    if (len != (ssize_t)strlen(target) || memcmp(buf, target, (size_t)len) != 0)
        die("readlink of the symlink failed", 0);
    char plain[PATH_MAX], expect[PATH_MAX];
    snprintf(plain, sizeof(plain), "%s", sym);
    if (!realpath(plain, expect))
        die("realpath of a stack path failed", 0);
    churn(1419);
    char *resolved = realpath(sym, NULL);
    if (!resolved || strcmp(resolved, expect) != 0)
        die("realpath of a cold heap path failed", 0);
    free(resolved);
    churn(1402);
    if (link(target, hard) != 0)
        die("link of cold heap paths failed", 0);
    if (stat_of(hard, "stat of the hard link failed").st_nlink != 2)
        die("the hard link does not count", 0);
    churn(1403);
    if (chown(target, getuid(), getgid()) != 0)
        die("chown of a cold heap path failed", 0);
    churn(1404);
    if (lchown(sym, getuid(), getgid()) != 0)
        die("lchown of a cold heap path failed", 0);
    churn(1405);
    if (fchownat(AT_FDCWD, hard, getuid(), getgid(), 0) != 0)
        die("fchownat of a cold heap path failed", 0);
    churn(1406);
    if (fchmodat(AT_FDCWD, target, 0640, 0) != 0 ||
        (stat_of(target, "stat after fchmodat failed").st_mode & 0777) != 0640)
        die("fchmodat of a cold heap path failed", 0);
    struct timespec *times = malloc(2 * sizeof(*times));
    struct timeval *tvs = malloc(2 * sizeof(*tvs));
    if (!times || !tvs)
        die("malloc of the time arrays failed", 0);
    times[0] = times[1] = (struct timespec){.tv_sec = 1000000000};
    settled(times);
    churn(1407);
    if (utimensat(AT_FDCWD, target, times, 0) != 0 ||
        stat_of(target, "stat after utimensat failed").st_mtime != 1000000000)
        die("utimensat of a cold heap path and times failed", 0);
    tvs[0] = tvs[1] = (struct timeval){.tv_sec = 1100000000};
    settled(tvs);
    churn(1408);
    if (utimes(target, tvs) != 0 ||
        stat_of(target, "stat after utimes failed").st_mtime != 1100000000)
        die("utimes of a cold heap path and times failed", 0);
    struct statvfs *vfs = malloc(sizeof(*vfs));
    struct statfs *sfs = malloc(sizeof(*sfs));
    if (!vfs || !sfs)
        die("malloc of the statfs buffers failed", 0);
    churn(1409);
    if (statvfs(target, vfs) != 0 || vfs->f_bsize == 0)
        die("statvfs into a cold heap struct failed", 0);
    churn(1410);
    if (statfs(target, sfs) != 0 || sfs->f_bsize == 0)
        die("statfs into a cold heap struct failed", 0);
    char *tmpl = heap_path(dir, "temp", 0);
    strcat(tmpl, "XXXXXX");
    churn(1411);
    fd = mkstemp(tmpl);
    if (fd < 0)
        die("mkstemp of a cold heap template failed", 0);
    close(fd);
    if (unlink(tmpl) != 0)
        die("unlink of mkstemp's file failed", 0);
    strcpy(tmpl + strlen(tmpl) - 6, "XXXXXX");
    churn(1412);
    if (!mkdtemp(tmpl))
        die("mkdtemp of a cold heap template failed", 0);
    if (rmdir(tmpl) != 0)
        die("rmdir of mkdtemp's directory failed", 0);
    char *xname = malloc(32), *xvalue = malloc(64);
    if (!xname || !xvalue)
        die("malloc of the xattr strings failed", 0);
    strcpy(xname, "user.lethe");
    strcpy(xvalue, "a value kept in an extended attribute");
    churn(1413);
    if (setxattr(target, xname, xvalue, strlen(xvalue), 0) == 0) {
        memset(buf, 0, 4096);
        churn(1414);
        ssize_t got = getxattr(target, xname, buf, 4096);
        if (got != (ssize_t)strlen(xvalue) || memcmp(buf, xvalue, (size_t)got) != 0)
            die("getxattr into a cold heap buffer failed", 0);
        churn(1415);
        got = listxattr(target, buf, 4096);
        if (got <= 0 || !memmem(buf, (size_t)got, xname, strlen(xname) + 1))
            die("listxattr into a cold heap buffer failed", 0);
        churn(1416);
        if (removexattr(target, xname) != 0)
            die("removexattr of cold heap strings failed", 0);
    } else if (errno != ENOTSUP && errno != EPERM) {
        die("setxattr of cold heap strings failed", 0);
    }
    churn(1417);
    if (unlink(sym) != 0 || unlink(hard) != 0)
        die("unlink of the links failed", 0);
    churn(1418);
    if (remove(target) != 0)
        die("remove of a cold heap path failed", 0);
    free(xvalue);
    free(xname);
    free(tmpl);
    free(sfs);
    free(vfs);
    free(tvs);
    free(times);
    free(buf);
    free(hard);
    free(sym);
    free(target);
    printf("links ok\n");
}

/* A TCP listener and a client on 127.0.0.1, every address and option in cold heap memory. */
static void sockets(void)
{
    struct sockaddr_in *addr = malloc(sizeof(*addr)), *peer = malloc(sizeof(*peer));
    struct sockaddr_in *local = malloc(sizeof(*local));
    socklen_t *len = malloc(sizeof(*len));
    int *opt = malloc(sizeof(*opt));
    if (!addr || !peer || !local || !len || !opt)
        die("malloc of the socket structs failed", 0);
    for (unsigned round = 0; round < 2; round++) {
        int lis = socket(AF_INET, SOCK_STREAM, 0), cli = socket(AF_INET, SOCK_STREAM, 0);
        if (lis < 0 || cli < 0)
            die("socket failed", round);
        *opt = 1;
        settled(opt);
        churn(1700 + round);
        if (setsockopt(lis, SOL_SOCKET, SO_REUSEADDR, opt, sizeof(*opt)) != 0)
            die("setsockopt of a cold heap value failed", round);
        *addr =
            (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        settled(addr);
        churn(1702 + round);
        if (bind(lis, (struct sockaddr *)addr, sizeof(*addr)) != 0 || listen(lis, 4) != 0)
            die("bind to a cold heap address failed", round);
        *len = sizeof(*addr);
        settled(len);
        churn(1704 + round);
        if (getsockname(lis, (struct sockaddr *)addr, len) != 0 || *len != sizeof(*addr) ||
            addr->sin_port == 0)
            die("getsockname into a cold heap address failed", round);
        churn(1706 + round);
        if (connect(cli, (struct sockaddr *)addr, sizeof(*addr)) != 0)
            die("connect to a cold heap address failed", round);
        *len = sizeof(*peer);
        memset(peer, 0, sizeof(*peer));
        settled(peer);
        churn(1708 + round);
        int conn = round == 0 ? accept(lis, (struct sockaddr *)peer, len)
                              : accept4(lis, (struct sockaddr *)peer, len, SOCK_CLOEXEC);
        if (conn < 0 || *len != sizeof(*peer) || peer->sin_addr.s_addr != htonl(INADDR_LOOPBACK))
            die("accept into a cold heap address failed", round);
        *len = sizeof(*local);
        churn(1710 + round);
        if (getpeername(conn, (struct sockaddr *)local, len) != 0 ||
            local->sin_port != peer->sin_port)
            die("getpeername into a cold heap address failed", round);
        *opt = 0;
        *len = sizeof(*opt);
        churn(1712 + round);
        if (getsockopt(lis, SOL_SOCKET, SO_REUSEADDR, opt, len) != 0 || *opt == 0 ||
            *len != sizeof(*opt))
            die("getsockopt into a cold heap value failed", round);
        if (write(cli, "ping", 4) != 4)
            die("write to the connection failed", round);
        char got[4];
        if (read(conn, got, 4) != 4 || memcmp(got, "ping", 4) != 0)
            die("the connection lost its data", round);
        close(conn);
        close(cli);
        close(lis);
    }
    free(opt);
    free(len);
    free(local);
    free(peer);
    free(addr);
    printf("sockets ok\n");
}

/* A child that exits with code at once (its exit status is what the waits must report). */
static pid_t child_exiting(int code)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork failed", (unsigned)code);
    if (pid == 0)
        _exit(code);
    return pid;
}

/* Small structs and arrays the kernel fills or reads, each in cold heap memory. */
static void structs(void)
{
    /* getrandom into a fresh 1 MiB heap buffer (none of its pages ever touched), then 8 times
     * into 4 MiB ones, larger than the tests' cache: pages the wrapper makes present go cold
     * again before the kernel writes them (getrandom then returns a short count); getentropy */
    size_t rlen = 1u << 20;
    unsigned char *random = malloc(rlen), *entropy = malloc(64);
    if (!random || !entropy)
        die("malloc of the random buffers failed", 0);
    for (unsigned round = 0; round <= 8; round++) {
        unsigned char *b = round ? malloc(4 * rlen) : random;
        size_t blen = round ? 4 * rlen : rlen;
        if (!b)
            die("malloc of a random buffer failed", round);
        if (getrandom(b, blen, 0) != (ssize_t)blen)
            die("getrandom into a fresh heap buffer failed", round);
        size_t zeros = 0;
        for (size_t i = 0; i < blen; i++)
            zeros += b[i] == 0;
        if (zeros > blen / 128)
            die("getrandom left its buffer mostly zero", (unsigned)zeros);
        if (round)
            free(b);
    }
    churn(1800);
    if (getentropy(entropy, 64) != 0)
        die("getentropy into a cold heap buffer failed", 0);
    /* descriptors written into heap arrays */
    int *fds = malloc(6 * sizeof(*fds));
    if (!fds)
        die("malloc of the descriptor array failed", 0);
    churn(1801);
    if (pipe(fds) != 0)
        die("pipe into a cold heap array failed", 0);
    churn(1802);
    if (pipe2(fds + 2, O_CLOEXEC) != 0)
        die("pipe2 into a cold heap array failed", 0);
    churn(1803);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds + 4) != 0)
        die("socketpair into a cold heap array failed", 0);
    for (unsigned i = 0; i < 6; i += 2) {
        char got = 0;
        if (write(fds[i + 1], "p", 1) != 1 || read(fds[i], &got, 1) != 1 || got != 'p')
            die("a heap-returned descriptor pair does not connect", i);
        close(fds[i]);
        close(fds[i + 1]);
    }
    /* exit statuses, a rusage and a siginfo in cold heap memory */
    int *status = malloc(sizeof(*status));
    struct rusage *usage = malloc(sizeof(*usage));
    siginfo_t *info = malloc(sizeof(*info));
    if (!status || !usage || !info)
        die("malloc of the wait structs failed", 0);
    pid_t pid = child_exiting(7);
    churn(1804);
    if (waitpid(pid, status, 0) != pid || !WIFEXITED(*status) || WEXITSTATUS(*status) != 7)
        die("waitpid into a cold heap status failed", 0);
    pid = child_exiting(8);
    churn(1805);
    if (wait4(pid, status, 0, usage) != pid || WEXITSTATUS(*status) != 8)
        die("wait4 into a cold heap status and rusage failed", 0);
    memset(info, 0, sizeof(*info));
    settled(info);
    pid = child_exiting(9);
    churn(1806);
    if (waitid(P_PID, (id_t)pid, info, WEXITED) != 0 || info->si_pid != pid || info->si_status != 9)
        die("waitid into a cold heap siginfo failed", 0);
    pid = child_exiting(10);
    churn(1807);
    if (wait(status) != pid || WEXITSTATUS(*status) != 10)
        die("wait into a cold heap status failed", 0);
    /* signal sets */
    /* the old set on pages of its own (16 KiB: a large block), away from the new one, which
     * glibc reads from user mode before the call */
    sigset_t *set = malloc(sizeof(*set)), *old = malloc(16384);
    if (!set || !old)
        die("malloc of the signal sets failed", 0);
    sigemptyset(set);
    sigaddset(set, SIGUSR1);
    settled(set);
    churn(1808);
    if (sigprocmask(SIG_BLOCK, set, old) != 0 || sigismember(old, SIGUSR1))
        die("sigprocmask with cold heap sets failed", 0);
    churn(1809);
    if (pthread_sigmask(SIG_SETMASK, old, set) != 0 || !sigismember(set, SIGUSR1))
        die("pthread_sigmask with cold heap sets failed", 0);
    /* a CPU mask sized at run time, as CPU_ALLOC makes them */
    size_t mask_size = CPU_ALLOC_SIZE(4096);
    cpu_set_t *mask = CPU_ALLOC(4096);
    if (!mask)
        die("CPU_ALLOC failed", 0);
    churn(1810);
    if (sched_getaffinity(0, mask_size, mask) != 0 || CPU_COUNT_S(mask_size, mask) < 1)
        die("sched_getaffinity into a cold heap mask failed", 0);
    churn(1811);
    if (sched_setaffinity(0, mask_size, mask) != 0)
        die("sched_setaffinity from a cold heap mask failed", 0);
    churn(1812);
    if (pthread_getaffinity_np(pthread_self(), mask_size, mask) != 0 ||
        CPU_COUNT_S(mask_size, mask) < 1)
        die("pthread_getaffinity_np into a cold heap mask failed", 0);
    /* uname, getrusage, rlimits, sleeps */
    struct utsname *uts = malloc(sizeof(*uts));
    struct rlimit *lim = malloc(sizeof(*lim));
    struct timespec *req = malloc(sizeof(*req)), *rem = malloc(sizeof(*rem));
    if (!uts || !lim || !req || !rem)
        die("malloc of the small structs failed", 0);
    churn(1813);
    if (uname(uts) != 0 || strcmp(uts->sysname, "Linux") != 0)
        die("uname into a cold heap struct failed", 0);
    churn(1814);
    if (getrusage(RUSAGE_SELF, usage) != 0 || usage->ru_maxrss <= 0)
        die("getrusage into a cold heap struct failed", 0);
    churn(1815);
    if (getrlimit(RLIMIT_NOFILE, lim) != 0 || lim->rlim_cur == 0)
        die("getrlimit into a cold heap struct failed", 0);
    churn(1816);
    if (setrlimit(RLIMIT_NOFILE, lim) != 0)
        die("setrlimit from a cold heap struct failed", 0);
    churn(1817);
    if (prlimit(0, RLIMIT_NOFILE, NULL, lim) != 0 || lim->rlim_cur == 0)
        die("prlimit into a cold heap struct failed", 0);
    *req = (struct timespec){.tv_nsec = 1000};
    settled(req);
    churn(1818);
    if (nanosleep(req, rem) != 0)
        die("nanosleep of a cold heap timespec failed", 0);
    churn(1819);
    if (clock_nanosleep(CLOCK_MONOTONIC, 0, req, rem) != 0)
        die("clock_nanosleep of a cold heap timespec failed", 0);
    /* record locks and an owner through fcntl, on an unnamed file and a second open file
     * description of it (OFD locks of one description conflict with the other's) */
    struct flock *lk = malloc(sizeof(*lk));
    struct f_owner_ex *owner = malloc(sizeof(*owner));
    FILE *tmp = tmpfile();
    if (!lk || !owner || !tmp)
        die("malloc of the lock structs or tmpfile failed", 0);
    int lfd = fileno(tmp);
    char proc_path[64];
    snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", lfd);
    int lfd2 = open(proc_path, O_RDWR);
    if (lfd2 < 0)
        die("reopening the unnamed file failed", 0);
    *lk = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100};
    settled(lk);
    churn(1820);
    if (fcntl(lfd, F_SETLK, lk) != 0)
        die("fcntl F_SETLK from a cold heap struct failed", 0);
    churn(1821);
    if (fcntl(lfd, F_GETLK, lk) != 0 || lk->l_type != F_UNLCK)
        die("fcntl F_GETLK into a cold heap struct failed", 0);
    *lk = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 200, .l_len = 50};
    settled(lk);
    churn(1822);
    if (fcntl(lfd, F_OFD_SETLK, lk) != 0)
        die("fcntl F_OFD_SETLK from a cold heap struct failed", 0);
    /* from 150 on: the process's own POSIX lock on 0-99 would conflict with lfd2's too */
    *lk = (struct flock){.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 150, .l_len = 0};
    settled(lk);
    churn(1823);
    if (fcntl(lfd2, F_OFD_GETLK, lk) != 0 || lk->l_type != F_WRLCK || lk->l_start != 200 ||
        lk->l_len != 50)
        die("fcntl F_OFD_GETLK into a cold heap struct failed", 0);
    *owner = (struct f_owner_ex){.type = F_OWNER_PID, .pid = getpid()};
    settled(owner);
    churn(1824);
    if (fcntl(lfd, F_SETOWN_EX, owner) != 0)
        die("fcntl F_SETOWN_EX from a cold heap struct failed", 0);
    memset(owner, 0, sizeof(*owner));
    settled(owner);
    churn(1825);
    if (fcntl(lfd, F_GETOWN_EX, owner) != 0 || owner->type != F_OWNER_PID || owner->pid != getpid())
        die("fcntl F_GETOWN_EX into a cold heap struct failed", 0);
    close(lfd2);
    fclose(tmp);
    free(owner);
    free(lk);
    free(rem);
    free(req);
    free(lim);
    free(uts);
    CPU_FREE(mask);
    free(old);
    free(set);
    free(info);
    free(usage);
    free(status);
    free(fds);
    free(entropy);
    free(random);
    printf("structs ok\n");
}

static char *heap_string(const char *s)
{
    char *p = strdup(s);
    if (!p)
        die("strdup failed", 0);
    return p;
}

static int exit_status(pid_t pid, const char *what)
{
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        die(what, 0);
    return WEXITSTATUS(status);
}

static void spawns(void)
{
    char **args = malloc(4 * sizeof(*args));
    if (!args)
        die("malloc of an argv failed", 0);
    for (unsigned round = 0; round < 4; round++) {
        char code[32];
        snprintf(code, sizeof(code), "exit %u", 10 + round);
        args[0] = heap_string("sh");
        args[1] = heap_string("-c");
        args[2] = heap_string(code);
        args[3] = NULL;
        char *path = heap_string("/bin/sh");
        settled(args);
        churn(1500 + round);
        pid_t pid;
        int rc = round % 2 == 0 ? posix_spawn(&pid, path, NULL, NULL, args, environ)
                                : posix_spawnp(&pid, args[0], NULL, NULL, args, environ);
        if (rc != 0) {
            errno = rc;
            die(round % 2 == 0 ? "posix_spawn of a cold heap argv failed"
                               : "posix_spawnp of a cold heap argv failed",
                round);
        }
        if (exit_status(pid, "waiting for a spawned shell failed") != (int)(10 + round))
            die("a spawned shell did not run its command", round);
        for (int i = 0; i < 3; i++)
            free(args[i]);
        free(path);
        char *line = heap_string(code);
        churn(1510 + round);
        int status = system(line);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != (int)(10 + round))
            die("system of a cold heap command line failed", round);
        free(line);
    }
    free(args);
    printf("spawns ok\n");
}

/* Replaces this program with itself, running `stage`: the path and argv are cold heap
 * memory. execv's argv is built on the heap; execl's arguments are heap strings. */
static _Noreturn void exec_self(const char *stage, bool by_execl)
{
    char **args = malloc(4 * sizeof(*args));
    if (!args)
        die("malloc of an argv failed", 0);
    char mib[32];
    snprintf(mib, sizeof(mib), "%zu", churn_mib);
    args[0] = heap_string("app_calls");
    args[1] = heap_string(stage);
    args[2] = heap_string(mib);
    args[3] = NULL;
    char *self = heap_string("/proc/self/exe");
    settled(args);
    churn(1600);
    fflush(stdout);
    if (by_execl)
        execl(self, args[0], args[1], args[2], (char *)NULL);
    else
        execv(self, args);
    die(by_execl ? "execl of a cold heap path and arguments failed"
                 : "execv of a cold heap path and argv failed",
        0);
}

/* The reader of pipes(): drains the pipe into a buffer outside the heap and sums it. */
static unsigned char pipe_sink[65536];
struct drain {
    int fd;
    size_t total;
    uint64_t sum;
};

static void *drain(void *arg)
{
    struct drain *d = arg;
    ssize_t n;
    while ((n = read(d->fd, pipe_sink, sizeof(pipe_sink))) > 0) {
        for (ssize_t i = 0; i < n; i++)
            d->sum = d->sum * 31 + pipe_sink[i];
        d->total += (size_t)n;
    }
    return NULL;
}

/* Writes v[0..n) (len bytes in all, whose running sum is want) to a pipe a thread drains, in
 * one blocking call: write for one element, writev for more. The kernel writes all of it, and
 * so must the wrapper, which cuts it into budget-sized pieces. */
static void to_drained_pipe(const struct iovec *v, int n, size_t len, uint64_t want)
{
    int p[2];
    if (pipe(p) != 0)
        die("pipe for the blocking write failed", (unsigned)n);
    struct drain d = {.fd = p[0]};
    pthread_t t;
    if (pthread_create(&t, NULL, drain, &d) != 0)
        die("pthread_create of the pipe reader failed", (unsigned)n);
    ssize_t w = n == 1 ? write(p[1], v[0].iov_base, v[0].iov_len) : writev(p[1], v, n);
    if (w != (ssize_t)len)
        die(n == 1 ? "a blocking write of cold heap memory to a pipe came back short"
                   : "a blocking writev of cold heap memory to a pipe came back short",
            (unsigned)w);
    close(p[1]);
    pthread_join(t, NULL);
    close(p[0]);
    if (d.total != len || d.sum != want)
        die("the pipe's reader got other bytes than were written", (unsigned)d.total);
}

/* One blocking write of 1 MiB of cold heap memory to a pipe that a thread drains: all of it
 * (before, the wrapper returned the first piece's count). */
static void pipes(void)
{
    size_t len = 1u << 20;
    unsigned char *b = malloc(len);
    if (!b)
        die("malloc of the pipe buffer failed", 0);
    uint64_t want = 0;
    for (size_t i = 0; i < len; i++) {
        b[i] = (unsigned char)mix(7000 + i / 8);
        want = want * 31 + b[i];
    }
    settled(b);
    churn(1900);
    struct iovec v = {b, len};
    to_drained_pipe(&v, 1, len, want);
    free(b);
}

/* writev, pwritev, preadv and readv of 1 MiB of cold heap memory in vectors of uneven
 * elements (an empty one among them) to and from a file, and writev of it to a pipe a thread
 * drains: every call must move all of it (under signal delivery the wrapper carries a vector
 * out piece by piece, as the kernel would on a file or a blocking pipe). */
static void vectors(const char *dir)
{
    size_t len = 1u << 20;
    unsigned char *b = malloc(len), *c = malloc(len);
    if (!b || !c)
        die("malloc of the vector buffers failed", 0);
    uint64_t want = 0;
    for (size_t i = 0; i < len; i++) {
        b[i] = (unsigned char)mix(8000 + i / 8);
        want = want * 31 + b[i];
    }
    memset(c, 0xa5, len);
    settled(b);
    settled(c);
    char *path = heap_path(dir, "vectors", 0);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("open of the vector file failed", 0);
    struct iovec out[4] = {{b, 300000}, {b + 300000, 0}, {b + 300000, 400000},
                           {b + 700000, len - 700000}};
    struct iovec in[3] = {{c, 4096 * 3 + 5}, {c + 4096 * 3 + 5, 500000},
                          {c + 4096 * 3 + 5 + 500000, len - (4096 * 3 + 5 + 500000)}};
    churn(2000);
    if (writev(fd, out, 4) != (ssize_t)len)
        die("a writev of cold heap memory to a file came back short", 0);
    churn(2001);
    if (pwritev(fd, out, 4, (off_t)len) != (ssize_t)len)
        die("a pwritev of cold heap memory to a file came back short", 0);
    churn(2002);
    if (preadv(fd, in, 3, (off_t)len) != (ssize_t)len || memcmp(b, c, len) != 0)
        die("a preadv into cold heap memory came back short or other", 0);
    memset(c, 0x5a, len);
    settled(c);
    churn(2003);
    if (lseek(fd, 0, SEEK_SET) != 0 || readv(fd, in, 3) != (ssize_t)len || memcmp(b, c, len) != 0)
        die("a readv into cold heap memory came back short or other", 0);
    close(fd);
    unlink(path);
    free(path);

    churn(2004);
    to_drained_pipe(out, 4, len, want);
    free(c);
    free(b);
    printf("vectors ok\n");
}

/* The sender of datagrams(): DGRAMS datagrams of DGRAM bytes from cold heap memory (each
 * starting with its sequence number), in groups of 4: by send, then by one sendmmsg. */
#define DGRAMS 384
#define DGRAM  (12 * 1024)
struct dgrams {
    int fd;
    unsigned char *src;
};

static void *send_dgrams(void *arg)
{
    struct dgrams *d = arg;
    for (uint32_t seq = 0; seq < DGRAMS; seq += 4) {
        if (seq % 8 == 0) {
            for (uint32_t i = seq; i < seq + 4; i++)
                if (send(d->fd, d->src + (size_t)i * DGRAM, DGRAM, 0) != DGRAM)
                    die("send of a datagram from cold heap memory failed", i);
            continue;
        }
        struct iovec iov[4];
        struct mmsghdr m[4];
        memset(m, 0, sizeof(m));
        for (int i = 0; i < 4; i++) {
            iov[i] = (struct iovec){d->src + (size_t)(seq + i) * DGRAM, DGRAM};
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
        }
        for (int sent = 0; sent < 4;) {
            int n = sendmmsg(d->fd, m + sent, 4 - sent, 0);
            if (n <= 0)
                die("sendmmsg of datagrams from cold heap memory failed", seq);
            for (int i = sent; i < sent + n; i++)
                if (m[i].msg_len != DGRAM)
                    die("sendmmsg sent part of a datagram", seq + i);
            sent += n;
        }
    }
    return NULL;
}

static void check_dgram(const unsigned char *b, uint32_t seq)
{
    uint32_t got;
    memcpy(&got, b, sizeof(got));
    if (got != seq)
        die("a datagram received into cold heap memory was lost (the next one came)", seq);
    for (size_t i = sizeof(got); i < DGRAM; i++)
        if (b[i] != (unsigned char)mix(seq * 131 + i / 8))
            die("a datagram received into cold heap memory has other bytes", seq);
}

/* DGRAMS datagrams sent from cold heap memory by a thread and received, by recv, recvfrom,
 * recvmsg and recvmmsg in turn (groups of 4), into cold heap memory: each lands in a part of
 * an area twice the cache's size not touched since it was filled. A datagram whose copy fails
 * is gone (the kernel drops it), so every one must arrive whole, in order, and none twice. */
static void datagrams(void)
{
    size_t area_len = 4u << 20;
    unsigned char *area = malloc(area_len), *src = malloc((size_t)DGRAMS * DGRAM);
    if (!area || !src)
        die("malloc of the datagram areas failed", 0);
    for (uint32_t seq = 0; seq < DGRAMS; seq++) {
        unsigned char *d = src + (size_t)seq * DGRAM;
        for (size_t i = 0; i < DGRAM; i++)
            d[i] = (unsigned char)mix(seq * 131 + i / 8);
        memcpy(d, &seq, sizeof(seq));
    }
    memset(area, 0x5a, area_len);
    settled(area);
    settled(src);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0)
        die("socketpair for the datagrams failed", 0);
    struct dgrams d = {.fd = sv[1], .src = src};
    pthread_t t;
    if (pthread_create(&t, NULL, send_dgrams, &d) != 0)
        die("pthread_create of the datagram sender failed", 0);
    size_t slots = area_len / DGRAM;
    for (uint32_t seq = 0; seq < DGRAMS;) {
        unsigned char *b[4];
        for (uint32_t i = 0; i < 4; i++)
            b[i] = area + (size_t)((seq + i) * 7 % slots) * DGRAM;
        unsigned kind = seq / 4 % 4;
        if (kind == 3) {
            struct iovec iov[4][2];
            struct mmsghdr m[4];
            memset(m, 0, sizeof(m));
            for (int i = 0; i < 4; i++) {
                iov[i][0] = (struct iovec){b[i], DGRAM / 3};
                iov[i][1] = (struct iovec){b[i] + DGRAM / 3, DGRAM - DGRAM / 3};
                m[i].msg_hdr.msg_iov = iov[i];
                m[i].msg_hdr.msg_iovlen = 2;
            }
            for (int got = 0; got < 4;) {
                int n = recvmmsg(sv[0], m + got, 4 - got, MSG_WAITFORONE, NULL);
                if (n <= 0)
                    die("recvmmsg into cold heap memory failed", seq + got);
                for (int i = got; i < got + n; i++) {
                    if (m[i].msg_len != DGRAM)
                        die("a datagram received by recvmmsg came back short", seq + i);
                    check_dgram(b[i], seq + i);
                }
                got += n;
            }
            seq += 4;
            continue;
        }
        for (uint32_t i = 0; i < 4; i++, seq++) {
            ssize_t n;
            if (kind == 0) {
                n = recv(sv[0], b[i], DGRAM, 0);
            } else if (kind == 1) {
                n = recvfrom(sv[0], b[i], DGRAM, 0, NULL, NULL);
            } else {
                struct iovec iov[2] = {{b[i], DGRAM / 2}, {b[i] + DGRAM / 2, DGRAM / 2}};
                struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
                n = recvmsg(sv[0], &m, 0);
            }
            if (n != DGRAM)
                die("a datagram received into cold heap memory came back short or failed", seq);
            check_dgram(b[i], seq);
        }
    }
    pthread_join(t, NULL);
    close(sv[0]);
    close(sv[1]);
    free(src);
    free(area);
    printf("datagrams ok\n");
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "exec-child") == 0) {
        churn_mib = strtoull(argv[2], NULL, 10);
        printf("execv ok\n");
        exec_self("exec-last", true);
    }
    if (argc == 3 && strcmp(argv[1], "exec-last") == 0) {
        /* the image lethed reports on at the end (it found the stats segment again): its
         * heap is managed too */
        churn_mib = strtoull(argv[2], NULL, 10);
        churn(1601);
        printf("execl ok\n");
        return 0;
    }
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: app_calls MIB DIR [basic|more]\n");
        return 2;
    }
    churn_mib = strtoull(argv[1], NULL, 10);
    if (argc == 4 && strcmp(argv[3], "more") == 0) {
        listings(argv[2]);
        selects();
        links(argv[2]);
        sockets();
        structs();
        pipes();
        vectors(argv[2]);
        datagrams();
        spawns();
        printf("done\n");
        exec_self("exec-child", false);
    }
    polls();
    paths(argv[2]);
    printf("done\n");
    return 0;
}
