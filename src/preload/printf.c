/* printf.c — formatted output made safe for signal delivery.
 *
 * glibc's vfprintf hands each formatted item to the stream as it goes, and the stream writes
 * an item at least as long as its buffer straight from where the item lies: printf of a long
 * heap string is a write() out of the region. With fault_delivery = signal the kernel cannot
 * fault a missing page in (io.c), the write fails with EFAULT, printf returns -1 and the
 * output is lost. dprintf does the same through a stream of its own.
 *
 * In signal mode the printf family (printf, fprintf, vprintf, vfprintf, dprintf, vdprintf and
 * the _FORTIFY_SOURCE entry points __printf_chk and the like, which fortified programs call
 * instead) therefore formats into memory outside the region first — vsnprintf, reading the
 * arguments from user mode, where the SIGBUS handler serves every page — and hands the result
 * to fwrite or write, whose wrappers (stdio.c, io.c) carry out a long transfer safely. The
 * formatting happens on the stack for up to STACK_OUT bytes and in a block from jemalloc's
 * arena 0 (heap_runtime_alloc) beyond that; a result that does not fit the stack is formatted
 * a second time into the block (a %n is then stored twice). The stream
 * sees one fwrite, so the output stays one operation for other threads. What the program
 * gets back is what glibc gives: the number of bytes written, or -1 with errno set when the
 * formatting failed (EOVERFLOW beyond INT_MAX bytes) or the output could not all be written.
 *
 * Left to glibc: every call outside signal mode, a wide-oriented stream (vfprintf refuses it
 * anyway), and the wide-character family (wprintf and the like), which is not wrapped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <wchar.h>

#include "preload/preload.h"

#define STACK_OUT 1024

/* A _FORTIFY_SOURCE flag meaning "no fortify checks": the plain functions format with it. */
#define NO_CHECKS (-1)

/* glibc's fortified formatter: like vsnprintf, with the %n check that flag > 0 asks for. */
extern int __vsnprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *format,
                           va_list ap);

typedef int (*vfprintf_fn)(FILE *, const char *, va_list);
typedef int (*vdprintf_fn)(int, const char *, va_list);
typedef int (*vfprintf_chk_fn)(FILE *, int, const char *, va_list);
typedef int (*vdprintf_chk_fn)(int, int, const char *, va_list);

PRELOAD_REAL(vfprintf, vfprintf_fn)
PRELOAD_REAL(vdprintf, vdprintf_fn)
PRELOAD_REAL(__vfprintf_chk, vfprintf_chk_fn)
PRELOAD_REAL(__vdprintf_chk, vdprintf_chk_fn)

void printf_init(void)
{
    get_vfprintf();
    get_vdprintf();
    get___vfprintf_chk();
    get___vdprintf_chk();
}

static int format_into(char *buf, size_t size, int flag, const char *fmt, va_list ap)
{
    if (flag == NO_CHECKS)
        return vsnprintf(buf, size, fmt, ap);
    return __vsnprintf_chk(buf, size, flag, size, fmt, ap);
}

/* Formats fmt with ap into *out: stack (STACK_OUT bytes, the caller's) or, when longer, a
 * block outside the region that the caller frees with heap_runtime_free unless it is stack.
 * Returns the length, or -1 with errno set. */
static int format_out(char *stack, char **out, int flag, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = format_into(stack, STACK_OUT, flag, fmt, ap);
    *out = stack;
    char *block = NULL;
    /* A second pass can come out longer than the first when another thread changes a string
     * argument meanwhile: the block then grows and the pass is repeated. */
    for (int tries = 0; n >= STACK_OUT; tries++) {
        heap_runtime_free(block);
        block = tries < 4 ? heap_runtime_alloc((uint64_t)n + 1) : NULL;
        if (!block) {
            n = -1;
            errno = ENOMEM;
            break;
        }
        va_list pass;
        va_copy(pass, again);
        int m = format_into(block, (size_t)n + 1, flag, fmt, pass);
        va_end(pass);
        if (m >= 0 && m <= n) {
            *out = block;
            n = m;
            break;
        }
        n = m;
    }
    va_end(again);
    if (n < 0 && block) {
        heap_runtime_free(block);
        *out = stack;
    }
    return n;
}

static void out_free(char *stack, char *out)
{
    if (out != stack)
        heap_runtime_free(out);
}

static int to_stream(FILE *f, int flag, const char *fmt, va_list ap)
{
    char stack[STACK_OUT], *out;
    int n = format_out(stack, &out, flag, fmt, ap);
    if (n < 0)
        return -1;
    size_t done = fwrite(out, 1, (size_t)n, f); /* stdio.c's: safe for any buffer */
    out_free(stack, out);
    return done == (size_t)n ? n : -1;
}

static int to_fd(int fd, int flag, const char *fmt, va_list ap)
{
    char stack[STACK_OUT], *out;
    int n = format_out(stack, &out, flag, fmt, ap);
    if (n < 0)
        return -1;
    size_t done = 0;
    while (done < (size_t)n) {
        ssize_t w = write(fd, out + done, (size_t)n - done); /* io.c's */
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    out_free(stack, out);
    return done == (size_t)n ? n : -1;
}

/* Whether f's output must be formatted here: signal mode, and a stream that is not wide. */
static bool ours(FILE *f)
{
    return io_signal_mode() && fwide(f, 0) <= 0;
}

int vfprintf(FILE *f, const char *fmt, va_list ap)
{
    if (!ours(f))
        return get_vfprintf()(f, fmt, ap);
    return to_stream(f, NO_CHECKS, fmt, ap);
}

int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap)
{
    if (!ours(f))
        return get___vfprintf_chk()(f, flag, fmt, ap);
    return to_stream(f, flag, fmt, ap);
}

int vprintf(const char *fmt, va_list ap)
{
    return vfprintf(stdout, fmt, ap);
}

int __vprintf_chk(int flag, const char *fmt, va_list ap)
{
    return __vfprintf_chk(stdout, flag, fmt, ap);
}

int fprintf(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(f, fmt, ap);
    va_end(ap);
    return n;
}

int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = __vfprintf_chk(f, flag, fmt, ap);
    va_end(ap);
    return n;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(stdout, fmt, ap);
    va_end(ap);
    return n;
}

int __printf_chk(int flag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = __vfprintf_chk(stdout, flag, fmt, ap);
    va_end(ap);
    return n;
}

int vdprintf(int fd, const char *fmt, va_list ap)
{
    if (!io_signal_mode())
        return get_vdprintf()(fd, fmt, ap);
    return to_fd(fd, NO_CHECKS, fmt, ap);
}

int __vdprintf_chk(int fd, int flag, const char *fmt, va_list ap)
{
    if (!io_signal_mode())
        return get___vdprintf_chk()(fd, flag, fmt, ap);
    return to_fd(fd, flag, fmt, ap);
}

int dprintf(int fd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vdprintf(fd, fmt, ap);
    va_end(ap);
    return n;
}

int __dprintf_chk(int fd, int flag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = __vdprintf_chk(fd, flag, fmt, ap);
    va_end(ap);
    return n;
}
