/* app_signals.c — a program that takes SIGBUS for itself and blocks every signal.
 *
 * Usage: app_signals MIB DIR
 *
 * It fills MIB MiB of heap blocks with a pattern, then, as programs do:
 *  - installs its own SIGBUS handler with sigaction (and once more with signal), checking
 *    that the old handler it is told of is the default one, then its own, and that a
 *    sigaction on SIGKILL still fails with EINVAL;
 *  - blocks every signal with sigfillset + pthread_sigmask in the main thread and with
 *    sigprocmask in a second thread, and in that state reads every block back (under Lethe
 *    with a small cache most are swapped out: the faults must still be served);
 *  - installs a handler whose sa_mask is full and reads every block back inside it (raised
 *    with raise(SIGUSR1));
 *  - touches a page of a file mapping beyond the file's end, a real SIGBUS outside the heap,
 *    which must reach its own handler (it jumps out with siglongjmp);
 *  - puts the default action back with signal(SIGBUS, SIG_DFL) and checks sigaction reports
 *    it.
 * Every check failure prints what went wrong to stderr and exits 1; on success it prints a
 * few lines, the same with and without Lethe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BLOCK (64u * 1024)

static uint64_t **blocks;
static size_t nblocks;
static sigjmp_buf jump;
static volatile sig_atomic_t bus_errors, usr1_checked;

static _Noreturn void die(const char *what, size_t i)
{
    fprintf(stderr, "app_signals: %s (item %zu, errno %d: %s)\n", what, i, errno, strerror(errno));
    exit(1);
}

static uint64_t word(size_t b, size_t w)
{
    uint64_t x = (b + 1) * 0x9e3779b97f4a7c15ULL ^ (w + 1) * 0xbf58476d1ce4e5b9ULL;
    return x ^ (x >> 29);
}

static void fill(void)
{
    blocks = malloc(nblocks * sizeof(*blocks));
    if (!blocks)
        die("malloc of the block table failed", 0);
    for (size_t b = 0; b < nblocks; b++) {
        blocks[b] = malloc(BLOCK);
        if (!blocks[b])
            die("malloc of a block failed", b);
        for (size_t w = 0; w < BLOCK / 8; w++)
            blocks[b][w] = word(b, w);
    }
}

/* 0 when every block still holds its pattern, else 1 + the first bad block. */
static size_t check(void)
{
    for (size_t b = 0; b < nblocks; b++)
        for (size_t w = 0; w < BLOCK / 8; w++)
            if (blocks[b][w] != word(b, w))
                return b + 1;
    return 0;
}

static void on_bus(int sig, siginfo_t *si, void *uc)
{
    bus_errors++;
    siglongjmp(jump, 1);
}

static void on_bus_plain(int sig)
{
    bus_errors++;
    siglongjmp(jump, 1);
}

static void on_usr1(int sig)
{
    usr1_checked = check() == 0 ? 1 : 2;
}

static void *blocked_thread(void *arg)
{
    sigset_t all;
    sigfillset(&all);
    if (sigprocmask(SIG_BLOCK, &all, NULL) != 0)
        die("sigprocmask in the thread failed", 0);
    return (void *)check();
}

/* A real SIGBUS: a page of a shared file mapping beyond the file's end. */
static void touch_past_eof(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/short-file", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0)
        die("creating the short file failed", 0);
    volatile char *m = mmap(NULL, 2 * 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        die("mmap of the short file failed", 0);
    int before = bus_errors;
    if (sigsetjmp(jump, 1) == 0) {
        (void)m[4096];
        die("a read beyond the end of a file mapping did not raise SIGBUS", 0);
    }
    if (bus_errors != before + 1)
        die("the program's own SIGBUS handler did not run", (size_t)bus_errors);
    munmap((void *)m, 2 * 4096);
    close(fd);
    unlink(path);
}

int main(int argc, char **argv)
{
    if (argc != 3)
        die("usage: app_signals MIB DIR", 0);
    nblocks = (size_t)strtoul(argv[1], NULL, 10) * (1024 * 1024 / BLOCK);
    fill();

    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_bus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &old) != 0)
        die("sigaction(SIGBUS) failed", 0);
    if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
        die("the old SIGBUS handler is not the default one", 0);
    if (sigaction(SIGBUS, NULL, &old) != 0 || !(old.sa_flags & SA_SIGINFO) ||
        old.sa_sigaction != on_bus)
        die("sigaction(SIGBUS) does not report the program's handler", 0);
    errno = 0;
    if (sigaction(SIGKILL, &sa, NULL) != -1 || errno != EINVAL)
        die("sigaction(SIGKILL) did not fail with EINVAL", 0);
    printf("own SIGBUS handler installed\n");

    sigset_t all, before;
    sigfillset(&all);
    if (pthread_sigmask(SIG_BLOCK, &all, &before) != 0)
        die("pthread_sigmask failed", 0);
    size_t bad = check();
    if (bad)
        die("a block read back with every signal blocked differs", bad - 1);
    pthread_t t;
    void *thread_bad;
    if (pthread_create(&t, NULL, blocked_thread, NULL) != 0 || pthread_join(t, &thread_bad) != 0)
        die("the blocking thread failed", 0);
    if (thread_bad)
        die("a block read back by a thread with every signal blocked differs",
            (size_t)thread_bad - 1);
    if (pthread_sigmask(SIG_SETMASK, &before, NULL) != 0)
        die("pthread_sigmask restore failed", 0);
    printf("blocks intact with every signal blocked\n");

    struct sigaction usr1;
    memset(&usr1, 0, sizeof(usr1));
    usr1.sa_handler = on_usr1;
    sigfillset(&usr1.sa_mask);
    if (sigaction(SIGUSR1, &usr1, NULL) != 0 || raise(SIGUSR1) != 0 || usr1_checked != 1)
        die("blocks read back in a handler with a full sa_mask differ", (size_t)usr1_checked);
    printf("blocks intact inside a handler that blocks every signal\n");

    touch_past_eof(argv[2]);
    if (signal(SIGBUS, on_bus_plain) == SIG_ERR)
        die("signal(SIGBUS) failed", 0);
    touch_past_eof(argv[2]);
    printf("SIGBUS beyond a file's end reached the program's handler %d times\n", bus_errors);

    if (signal(SIGBUS, SIG_DFL) != on_bus_plain)
        die("signal(SIGBUS) did not return the program's handler", 0);
    if (sigaction(SIGBUS, NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) ||
        old.sa_handler != SIG_DFL)
        die("sigaction(SIGBUS) does not report the default action", 0);
    bad = check();
    if (bad)
        die("a block read back at the end differs", bad - 1);
    printf("done\n");
    return 0;
}
