/* stdio.c — stdio streams (and readdir) made safe for signal delivery.
 *
 * With fault_delivery = signal a kernel access to a missing page of the region fails with
 * EFAULT (see io.c). stdio makes its system calls inside glibc, where io.c's wrappers never
 * see them, and glibc allocates a stream's buffer with malloc, that is in the region: a
 * printf'd line that waits in stdout's buffer while the program works through its heap is
 * flushed by a write() out of a page that has been evicted meanwhile, fails with EFAULT, and
 * the output is lost without a word (exit() does not report a failed flush). In signal mode
 * only:
 *
 *  - Stream buffers outside the region. Every stream created through fopen, fopen64, fdopen,
 *    freopen, freopen64, tmpfile, tmpfile64 or popen, and stdin and stdout at start-up, is
 *    given a buffer at once from jemalloc's arena 0 (outside the region), sized and
 *    line-buffered as glibc would have done it lazily (st_blksize up to BUFSIZ; line
 *    buffering on a terminal). It is handed over with glibc's _IO_setb as the stream's own
 *    buffer, so fclose and freopen free it as usual (free() takes blocks of both arenas).
 *    A stream that already has a buffer (one that did I/O before start-up, or one the
 *    program gave its own with setvbuf) and an unbuffered one (stderr) are left alone.
 *
 *  - fread (and __fread_chk, its fortified form), fwrite, fputs and puts with a buffer in the
 *    region: glibc moves a request at least as long as the stream's buffer straight between
 *    the program's memory and the file. These wrappers carry such a request out in
 *    budget-sized pieces (io.c's budget), each made present first and retried after an
 *    EFAULT (the bytes before it counted, the stream's error flag cleared), under the
 *    stream's lock so the request stays one operation for other threads.
 *
 *  - The path given to fopen and fopen64 and popen's command line are read from user mode
 *    first, and the call retried after an EFAULT (freopen's path is read, not retried:
 *    freopen has closed the stream by then).
 *
 *  - readdir and readdir64 make the DIR's block present first (below); readdir_r and
 *    readdir64_r read through them. scandir, scandirat and their 64 forms, whose DIR glibc
 *    opens and reads inside itself, are carried out here with those wrappers.
 *
 *  - The printf family formats outside the region first (printf.c).
 *
 * Not covered: the _unlocked variants, wide-character I/O of long strings, and what other
 * libc functions read or write into heap memory themselves (getaddrinfo, ...). Those need
 * fault_delivery = thread.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "preload/preload.h"

#define RETRIES 8

/* glibc's libio: hands a buffer to a stream; owned = 1 means the stream frees it. */
typedef void (*setb_fn)(FILE *, char *, char *, int);
/* The stream flag for an unbuffered stream (libio.h's _IO_UNBUFFERED). */
#define LIBIO_UNBUFFERED 0x0002

typedef FILE *(*fopen_fn)(const char *, const char *);
typedef FILE *(*fdopen_fn)(int, const char *);
typedef FILE *(*freopen_fn)(const char *, const char *, FILE *);
typedef FILE *(*tmpfile_fn)(void);
typedef size_t (*fread_fn)(void *, size_t, size_t, FILE *);
typedef size_t (*fwrite_fn)(const void *, size_t, size_t, FILE *);
typedef int (*fputs_fn)(const char *, FILE *);
typedef int (*puts_fn)(const char *);
typedef struct dirent *(*readdir_fn)(DIR *);
typedef struct dirent64 *(*readdir64_fn)(DIR *);
typedef int (*readdir_r_fn)(DIR *, struct dirent *, struct dirent **);
typedef int (*readdir64_r_fn)(DIR *, struct dirent64 *, struct dirent64 **);
typedef int (*dirent_filter)(const struct dirent *);
typedef int (*dirent_order)(const struct dirent **, const struct dirent **);
typedef int (*dirent64_filter)(const struct dirent64 *);
typedef int (*dirent64_order)(const struct dirent64 **, const struct dirent64 **);
typedef int (*scandir_fn)(const char *, struct dirent ***, dirent_filter, dirent_order);
typedef int (*scandir64_fn)(const char *, struct dirent64 ***, dirent64_filter, dirent64_order);
typedef int (*scandirat_fn)(int, const char *, struct dirent ***, dirent_filter, dirent_order);
typedef int (*scandirat64_fn)(int, const char *, struct dirent64 ***, dirent64_filter,
                              dirent64_order);

PRELOAD_REAL(_IO_setb, setb_fn)
PRELOAD_REAL(fopen, fopen_fn)
PRELOAD_REAL(fopen64, fopen_fn)
PRELOAD_REAL(popen, fopen_fn)
PRELOAD_REAL(fdopen, fdopen_fn)
PRELOAD_REAL(freopen, freopen_fn)
PRELOAD_REAL(freopen64, freopen_fn)
PRELOAD_REAL(tmpfile, tmpfile_fn)
PRELOAD_REAL(tmpfile64, tmpfile_fn)
PRELOAD_REAL(fread, fread_fn)
PRELOAD_REAL(fwrite, fwrite_fn)
PRELOAD_REAL(fputs, fputs_fn)
PRELOAD_REAL(puts, puts_fn)
PRELOAD_REAL(readdir, readdir_fn)
PRELOAD_REAL(readdir64, readdir64_fn)
PRELOAD_REAL(readdir_r, readdir_r_fn)
PRELOAD_REAL(readdir64_r, readdir64_r_fn)
PRELOAD_REAL(scandir, scandir_fn)
PRELOAD_REAL(scandir64, scandir64_fn)
PRELOAD_REAL(scandirat, scandirat_fn)
PRELOAD_REAL(scandirat64, scandirat64_fn)
typedef size_t (*fread_chk_fn)(void *, size_t, size_t, size_t, FILE *);
PRELOAD_REAL(__fread_chk, fread_chk_fn)

/* Gives f a buffer outside the region, unless it has one already or is unbuffered. */
static void give_buffer(FILE *f)
{
    if (!f || !get__IO_setb() || !io_signal_mode())
        return;
    if (f->_IO_buf_base || (f->_flags & LIBIO_UNBUFFERED))
        return;
    size_t size = BUFSIZ;
    bool terminal = false;
    int fd = fileno(f);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0) {
        terminal = S_ISCHR(st.st_mode) && isatty(fd);
        if (st.st_blksize > 0 && (size_t)st.st_blksize < size)
            size = (size_t)st.st_blksize;
    }
    char *b = heap_runtime_alloc(size);
    if (!b)
        return; /* glibc allocates one itself, in the region */
    flockfile(f);
    bool given = !f->_IO_buf_base;
    if (given) {
        get__IO_setb()(f, b, b + size, 1);
        if (terminal)
            setvbuf(f, NULL, _IOLBF, 0); /* keeps the buffer, sets line buffering */
    }
    funlockfile(f);
    if (!given)
        heap_runtime_free(b);
}

void stdio_init(void)
{
    /* Resolved now, while the process is single-threaded and not in a signal handler. */
    get__IO_setb();
    get_fopen();
    get_fopen64();
    get_popen();
    get_fdopen();
    get_freopen();
    get_freopen64();
    get_tmpfile();
    get_tmpfile64();
    get_fread();
    get_fwrite();
    get_fputs();
    get_puts();
    get_readdir();
    get_readdir64();
    get_readdir_r();
    get_readdir64_r();
    get_scandir();
    get_scandir64();
    get_scandirat();
    get_scandirat64();
    get___fread_chk();
    printf_init();
}

void stdio_start(void)
{
    if (!io_signal_mode())
        return;
    if (!get__IO_setb()) {
        lethe_warn("no _IO_setb in this libc: stdio buffers stay in the region, and a flush "
                   "of one that was evicted fails with EFAULT in signal delivery mode");
        return;
    }
    give_buffer(stdin);
    give_buffer(stdout);
}

/* Runs OPEN (an expression giving FILE *) with the string s made present (a path or a
 * command line, which the kernel copies in), retrying EFAULT; gives the stream a buffer. */
#define OPENED(s, OPEN)                                                                            \
    do {                                                                                           \
        struct lethe *l_ = io_signal_mode();                                                       \
        FILE *f_ = NULL;                                                                           \
        for (int try_ = 0; try_ < RETRIES; try_++) {                                               \
            if (l_)                                                                                \
                io_touch_string(l_, (s));                                                          \
            f_ = (OPEN);                                                                           \
            if (f_ || !l_ || errno != EFAULT)                                                      \
                break;                                                                             \
        }                                                                                          \
        give_buffer(f_);                                                                           \
        return f_;                                                                                 \
    } while (0)

FILE *fopen(const char *path, const char *mode)
{
    OPENED(path, get_fopen()(path, mode));
}

FILE *fopen64(const char *path, const char *mode)
{
    OPENED(path, get_fopen64()(path, mode));
}

FILE *popen(const char *command, const char *mode)
{
    OPENED(command, get_popen()(command, mode));
}

FILE *fdopen(int fd, const char *mode)
{
    FILE *f = get_fdopen()(fd, mode);
    give_buffer(f);
    return f;
}

/* freopen closes the stream first: a failed reopen cannot be retried, so the path is only
 * made present. */
static FILE *reopened(freopen_fn call, const char *path, const char *mode, FILE *stream)
{
    struct lethe *l = io_signal_mode();
    if (l)
        io_touch_string(l, path);
    FILE *f = call(path, mode, stream);
    give_buffer(f);
    return f;
}

FILE *freopen(const char *path, const char *mode, FILE *stream)
{
    return reopened(get_freopen(), path, mode, stream);
}

FILE *freopen64(const char *path, const char *mode, FILE *stream)
{
    return reopened(get_freopen64(), path, mode, stream);
}

FILE *tmpfile(void)
{
    FILE *f = get_tmpfile()();
    give_buffer(f);
    return f;
}

FILE *tmpfile64(void)
{
    FILE *f = get_tmpfile64()();
    give_buffer(f);
    return f;
}

/* Moves len bytes between buf and f, piece by piece, each piece made present first. An
 * EFAULT (a page lost between touch and copy: under pressure the rebalancer demotes pages
 * within milliseconds, and touching a budget of swapped-out pages takes about that long) is
 * retried from where it stopped, with the piece halved down to a page when nothing moved,
 * up to RETRIES times in a row without progress. Returns the bytes moved. The caller holds
 * f's lock. */
static size_t in_pieces(struct lethe *l, bool writing, char *buf, size_t len, FILE *f)
{
    size_t budget = io_budget(), chunk = budget, done = 0;
    bool had_error = ferror(f) != 0;
    int tries = 0;
    while (done < len) {
        size_t want = len - done < chunk ? len - done : chunk;
        io_prefault(l, buf + done, want);
        errno = 0;
        size_t got = writing ? get_fwrite()(buf + done, 1, want, f)
                             : get_fread()(buf + done, 1, want, f);
        done += got;
        if (got == want) {
            tries = 0;
            chunk = chunk * 2 < budget ? chunk * 2 : budget;
            continue;
        }
        if (errno != EFAULT || had_error || !ferror(f))
            break; /* end of file or a real error */
        clearerr(f);
        if (got > 0) {
            tries = 0;
            continue;
        }
        if (++tries >= RETRIES)
            break; /* a page that keeps going before the kernel gets to it */
        chunk = chunk / 2 > LETHE_PAGE_SIZE ? chunk / 2 : LETHE_PAGE_SIZE;
    }
    return done;
}

size_t fread(void *buf, size_t size, size_t n, FILE *f)
{
    struct lethe *l = io_signal_mode();
    size_t len;
    if (!l || __builtin_mul_overflow(size, n, &len) || !io_touches_region(l, buf, len))
        return get_fread()(buf, size, n, f);
    flockfile(f);
    size_t done = in_pieces(l, false, buf, len, f);
    funlockfile(f);
    return done / size;
}

/* fread as a program built with _FORTIFY_SOURCE calls it: one asking for more than its
 * buffer holds goes to glibc's, which reports the overflow and aborts. */
size_t __fread_chk(void *buf, size_t buflen, size_t size, size_t n, FILE *f)
{
    size_t len;
    if (__builtin_mul_overflow(size, n, &len) || len > buflen)
        return get___fread_chk()(buf, buflen, size, n, f);
    return fread(buf, size, n, f);
}

size_t fwrite(const void *buf, size_t size, size_t n, FILE *f)
{
    struct lethe *l = io_signal_mode();
    size_t len;
    if (!l || __builtin_mul_overflow(size, n, &len) || !io_touches_region(l, buf, len))
        return get_fwrite()(buf, size, n, f);
    flockfile(f);
    size_t done = in_pieces(l, true, (char *)buf, len, f);
    funlockfile(f);
    return done / size;
}

int fputs(const char *s, FILE *f)
{
    struct lethe *l = io_signal_mode();
    if (!l || !lethe_in_region(l, s))
        return get_fputs()(s, f);
    size_t len = strlen(s);
    flockfile(f);
    size_t done = in_pieces(l, true, (char *)s, len, f);
    funlockfile(f);
    return done == len ? 1 : EOF;
}

int puts(const char *s)
{
    struct lethe *l = io_signal_mode();
    if (!l || !lethe_in_region(l, s))
        return get_puts()(s);
    size_t len = strlen(s);
    flockfile(stdout);
    size_t done = in_pieces(l, true, (char *)s, len, stdout);
    int rc = done == len && putc_unlocked('\n', stdout) != EOF ? 1 : EOF;
    funlockfile(stdout);
    return rc;
}

/* readdir: glibc reads a directory with getdents into the DIR's own buffer, malloc'd by
 * opendir, hence in the region. The kernel stops at the first entry it cannot copy: a refill
 * whose pages went cold comes back short (what fits on the page of the DIR's header, which
 * every readdir touches) or, when the first entry already crosses onto a missing page (the
 * block starts anywhere in its page: jemalloc offsets large blocks by a random number of
 * cache lines), fails with EFAULT, and readdir returns NULL as if the directory had ended —
 * most programs never look at errno. So the DIR's block is made present before each call,
 * and the call retried after an EFAULT (glibc's refill leaves its state as it was).
 * Before the retry the directory goes back to where it was: getdents moves the directory's
 * position past every entry it copied, and when the last step of a call — storing the last
 * entry's d_off — fails because that page went meanwhile, it reports EFAULT although it
 * copied entries, which a plain retry would skip (1 run in 12 of app_stdio lost entries so,
 * with the rebalancer demoting pages during the listing). The position is read with lseek
 * before every call: a system call per entry, in signal mode only (where a directory cannot
 * tell its position, the retry goes on from where the kernel left it, as before). */
#define READ_DIR(d, CALL)                                                                          \
    do {                                                                                           \
        struct lethe *l_ = io_signal_mode();                                                       \
        if (!l_ || !lethe_in_region(l_, (d)))                                                      \
            return (CALL);                                                                         \
        size_t size_ = malloc_usable_size((d));                                                    \
        int saved_ = errno;                                                                        \
        off_t pos_ = lseek(dirfd((d)), 0, SEEK_CUR);                                               \
        for (int try_ = 0;; try_++) {                                                              \
            io_prefault(l_, (d), size_);                                                           \
            errno = 0;                                                                             \
            __typeof__(CALL) e_ = (CALL);                                                          \
            if (!e_ && errno == EFAULT && try_ + 1 < RETRIES) {                                    \
                if (pos_ < 0 || lseek(dirfd((d)), pos_, SEEK_SET) == pos_)                         \
                    continue;                                                                      \
                errno = EFAULT;                                                                    \
            }                                                                                      \
            if (e_ || errno == 0)                                                                  \
                errno = saved_;                                                                    \
            return e_;                                                                             \
        }                                                                                          \
    } while (0)

struct dirent *readdir(DIR *d)
{
    READ_DIR(d, get_readdir()(d));
}

struct dirent64 *readdir64(DIR *d)
{
    READ_DIR(d, get_readdir64()(d));
}

/* readdir_r reads through the readdir wrapper above and copies the entry out. glibc's own
 * readdir_r cannot be retried: a failed refill leaves its error in the DIR for good, so after
 * one EFAULT (retried with success) the end of the listing reported EFAULT too (seen in a CI
 * run, the listing's last call). glibc's readdir keeps no such state. */
static int read_dir_r(DIR *d, struct dirent *entry, struct dirent **result)
{
    int saved = errno;
    errno = 0;
    struct dirent *e = readdir(d);
    int err = e ? 0 : errno;
    errno = saved;
    if (!e) {
        *result = NULL;
        return err;
    }
    size_t len = e->d_reclen < sizeof(*entry) ? e->d_reclen : sizeof(*entry);
    memcpy(entry, e, len);
    *result = entry;
    return 0;
}

#define READ_DIR_R(d, entry, result, CALL)                                                         \
    do {                                                                                           \
        struct lethe *l_ = io_signal_mode();                                                       \
        if (!l_ || !lethe_in_region(l_, (d)))                                                      \
            return (CALL);                                                                         \
        return read_dir_r((d), (struct dirent *)(entry), (struct dirent **)(result));              \
    } while (0)

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
int readdir_r(DIR *d, struct dirent *entry, struct dirent **result)
{
    READ_DIR_R(d, entry, result, get_readdir_r()(d, entry, result));
}

int readdir64_r(DIR *d, struct dirent64 *entry, struct dirent64 **result)
{
    READ_DIR_R(d, entry, result, get_readdir64_r()(d, entry, result));
}
#pragma GCC diagnostic pop

/* scandir: glibc opens the directory and reads it with its own internal readdir, where the
 * wrapper above never sees it; a refill that meets a missing page of the DIR's block fails
 * with EFAULT, and scandir with it. In signal mode the listing is made here instead, as
 * glibc makes it: the directory opened with openat and fdopendir, each entry read with the
 * readdir wrapper, offered to the filter, copied (d_reclen bytes) into a malloc'd block,
 * the list grown with realloc, sorted with qsort, and on an error everything freed and -1
 * returned with errno. On x86_64 a dirent64 is a dirent, so the 64 forms share the code. */
_Static_assert(sizeof(struct dirent) == sizeof(struct dirent64) &&
                   offsetof(struct dirent, d_name) == offsetof(struct dirent64, d_name),
               "dirent and dirent64 differ");

static int scan_dir(struct lethe *l, int dir, const char *path, struct dirent ***out,
                    dirent_filter keep, dirent_order order)
{
    int fd = -1;
    for (int try = 0; try < RETRIES; try++) {
        io_touch_string(l, path);
        fd = openat(dir, path, O_RDONLY | O_NONBLOCK | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0 || errno != EFAULT)
            break;
    }
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    int saved = errno, err = 0;
    struct dirent **list = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            err = errno;
            break;
        }
        if (keep) {
            int wanted = keep(e);
            if (!wanted)
                continue;
        }
        if (n == cap) {
            size_t grown = cap ? 2 * cap : 16;
            struct dirent **bigger = realloc(list, grown * sizeof(*list));
            if (!bigger) {
                err = ENOMEM;
                break;
            }
            list = bigger;
            cap = grown;
        }
        struct dirent *copy = malloc(e->d_reclen);
        if (!copy) {
            err = ENOMEM;
            break;
        }
        memcpy(copy, e, e->d_reclen);
        list[n++] = copy;
        if (n > INT_MAX) {
            err = EOVERFLOW;
            break;
        }
    }
    closedir(d);
    if (err) {
        while (n > 0)
            free(list[--n]);
        free(list);
        errno = err;
        return -1;
    }
    if (order && n > 1)
        qsort(list, n, sizeof(*list), (int (*)(const void *, const void *))order);
    *out = list;
    errno = saved;
    return (int)n;
}

int scandir(const char *path, struct dirent ***out, dirent_filter keep, dirent_order order)
{
    struct lethe *l = io_signal_mode();
    if (!l)
        return get_scandir()(path, out, keep, order);
    return scan_dir(l, AT_FDCWD, path, out, keep, order);
}

int scandir64(const char *path, struct dirent64 ***out, dirent64_filter keep, dirent64_order order)
{
    struct lethe *l = io_signal_mode();
    if (!l)
        return get_scandir64()(path, out, keep, order);
    return scan_dir(l, AT_FDCWD, path, (struct dirent ***)out, (dirent_filter)keep,
                    (dirent_order)order);
}

int scandirat(int dir, const char *path, struct dirent ***out, dirent_filter keep,
              dirent_order order)
{
    struct lethe *l = io_signal_mode();
    if (!l)
        return get_scandirat()(dir, path, out, keep, order);
    return scan_dir(l, dir, path, out, keep, order);
}

int scandirat64(int dir, const char *path, struct dirent64 ***out, dirent64_filter keep,
                dirent64_order order)
{
    struct lethe *l = io_signal_mode();
    if (!l)
        return get_scandirat64()(dir, path, out, keep, order);
    return scan_dir(l, dir, path, (struct dirent ***)out, (dirent_filter)keep, (dirent_order)order);
}
