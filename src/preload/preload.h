/* preload.h — the parts of liblethe.so and what they share (internal to src/preload).
 *
 * liblethe.so is the runtime injected into an unmodified program with LD_PRELOAD (usually
 * by lethed). Its constructor (preload.c) starts the swapper from the configuration lethed
 * hands over in the environment; from then on:
 *  - heap.c: the program's malloc family (jemalloc, linked into this library, so its malloc
 *    is the process's malloc) allocates from a jemalloc arena whose extents come from the
 *    managed region (extent hooks over lethe_extent_alloc/free/purge);
 *  - threads.c: pthread_create is wrapped: program threads are put on the managed arena,
 *    runtime threads (those this library creates: vCPUs, rebalancer, stats) stay on
 *    jemalloc's automatic arenas, outside the region;
 *  - mmap.c: large private anonymous mmaps go in the region, and munmap/mremap/madvise of
 *    region memory are translated;
 *  - io.c: in signal delivery mode, the I/O calls that hand a buffer to the kernel make the
 *    buffer's pages present first (the kernel cannot fault them in itself there);
 *  - calls.c: in signal delivery mode, calls given a heap path, a heap struct or a heap array
 *    (stat, access, unlink, rename, mkdir, opendir, getcwd, poll, epoll_wait...) make it
 *    present first and retry EFAULT;
 *  - stdio.c: in signal delivery mode, stdio streams get their buffers outside the region,
 *    fread/fwrite/fputs/puts of heap memory go piece by piece, made present first, and
 *    readdir makes its DIR's buffer present first;
 *  - printf.c: in signal delivery mode, the printf family formats outside the region and
 *    writes the result with fwrite or write;
 *  - sync.c: in signal delivery mode, waits on heap condition variables, semaphores and
 *    locks pin the object's pages, so the kernel's futex never meets a missing page;
 *  - libc_safe.c: strerror and the locale, made safe for runtime threads;
 *  - stats.c: the stats thread publishes to the shared stats segment and applies lethed's
 *    cache size requests.
 * "Own code" is code inside this library (jemalloc, the runtime): its mmaps and threads are
 * never redirected, whatever they do.
 */
#ifndef LETHE_PRELOAD_H
#define LETHE_PRELOAD_H

#include <dlfcn.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/lethe.h"

/* The runtime once it is up (NULL before, and in processes where Lethe stays dormant). */
struct lethe *preload_lethe(void);
/* Whether the caller is the process Lethe started in (not a forked or vforked child). */
bool preload_in_started_process(void);
/* Whether the caller is a child that shares the started process's memory without having run
 * the fork handlers (vfork, posix_spawn, clone with CLONE_VM). */
/* In a child forked without exec (the region is then served by SIGBUS). */
bool preload_in_forked_child(void);
bool preload_in_vforked_child(void);
/* The configuration in effect (valid once preload_lethe() is non-NULL). */
const struct lethe_config *preload_config(void);
/* Whether a return address lies in this library's code. */
bool preload_is_own_code(const void *addr);
/* Finds this library's code range; first thing the constructor does. */
void preload_find_own_code(void);

/* heap.c */
/* Creates the managed arena over the region (hooks call into l). Returns 0 or -errno. */
int heap_init(struct lethe *l);
/* Moves the calling (program) thread onto the managed arena. No-op before heap_init(). */
void heap_enter_program_thread(void);
/* Until heap_outside_end(the value returned), the calling program thread allocates from
 * arena 0, outside the region (for libc state that must never be swapped out). Nests as a
 * no-op; returns UINT_MAX where nothing was changed. */
unsigned heap_outside_begin(void);
void heap_outside_end(unsigned saved);
/* In a forked child: new allocations from arena 0, thread cache emptied. */
void heap_enter_fork_child(void);
/* Keeps the calling (runtime) thread off the managed arena: automatic arena, no tcache. */
void heap_enter_runtime_thread(void);
/* Memory outside the region, for runtime bookkeeping created on any thread. */
void *heap_runtime_alloc(uint64_t size);
void heap_runtime_free(void *p);

/* stats.c */
/* Maps the segment named by LETHE_STATS_SHM (if any). Returns 0, or -errno when the variable
 * is set but the segment cannot be used. */
int stats_attach(const char *spec);
/* Reports a runtime that failed to start (state FAILED, with the reason). */
void stats_report_failure(const char *why);
/* Starts the stats thread (publishes every ~100 ms, serves cache size requests). */
int stats_start(struct lethe *l);
/* Final publication (state EXITED); further publications stop. */
void stats_final(struct lethe *l);
/* In a forked child: this process must never publish (the segment is the parent's). */
void stats_forget(void);
/* Around an exec of this process: the segment's inherited descriptor is passed on to the
 * new image, and kept close-on-exec again when the exec failed. */
void stats_before_exec(void);
void stats_after_failed_exec(void);

/* io.c: resolves glibc's versions of the wrapped calls (the constructor calls it first). */
void io_init(void);
/* The runtime when buffers handed to the kernel need care (signal delivery, runtime up), else
 * NULL: what every wrapper of io.c, calls.c, spawn.c, sockets.c, structs.c, stdio.c and
 * printf.c asks first. */
struct lethe *io_signal_mode(void);
/* Bytes made present before one system call (an eighth of the cache, 64..128 KiB). */
size_t io_budget(void);
/* Touches every page of [buf, buf+len) that lies in the region, from user mode. */
void io_prefault(struct lethe *l, const void *buf, size_t len);
/* Reads the NUL-terminated string s from user mode when it starts in the region, so its
 * pages are present when the kernel copies it (a path, a command line). */
void io_touch_string(struct lethe *l, const char *s);
/* Whether [buf, buf+len) touches the region. */
bool io_touches_region(struct lethe *l, const void *buf, size_t len);

/* Region pages one call holds with lethe_pin while the kernel copies to or from them, so that
 * no demotion can take them between the touch and the copy. At most IO_PIN_PAGES per call,
 * and all threads together at most a quarter of the cache's pages and half the pin table
 * (sends, which the kernel only reads, stop at half of that): the pages a call could not pin
 * are only touched, as before (io.c). */
#define IO_PIN_PAGES 64
struct io_pins {
    struct lethe *l;
    bool sending; /* the kernel only reads these buffers (write, send...) */
    unsigned n;
    int token[IO_PIN_PAGES];
};
/* Pins the region pages of [buf, buf+len) while the limits allow; adds to ps. Returns whether
 * every region page of it is pinned now. */
bool io_pin(struct io_pins *ps, const void *buf, size_t len);
/* Lets every page of ps go (takes a struct io_pins *: also a cancellation cleanup handler). */
void io_unpin(void *ps);

/* calls.c: resolves glibc's versions of the path, stat and event-wait calls it wraps. */
void calls_init(void);

/* spawn.c: resolves glibc's exec, posix_spawn and system. */
void spawn_init(void);

/* sockets.c: resolves glibc's socket address and option calls. */
void sockets_init(void);

/* structs.c: resolves glibc's calls on small structs (pipe, waitpid, uname...). */
void structs_init(void);

/* signals.c: resolves glibc's sigaction, signal and signal mask calls. */
void signals_init(void);

/* sync.c: resolves glibc's condition variable, semaphore and lock waits. */
void sync_init(void);

/* stdio.c: resolves glibc's versions of the wrapped stdio calls (with io_init), then, once
 * the runtime is up, gives stdin and stdout buffers outside the region (signal mode). */
void stdio_init(void);
void stdio_start(void);

/* printf.c: resolves glibc's formatted-output calls (stdio_init calls it). */
void printf_init(void);

/* The next definition of `name` (glibc's) as a function of `type`, resolved on first use:
 * defines real_<name> and get_<name>(). */
#define PRELOAD_REAL(name, type)                                                                   \
    static type real_##name;                                                                       \
    static type get_##name(void)                                                                   \
    {                                                                                              \
        type f = __atomic_load_n(&real_##name, __ATOMIC_ACQUIRE);                                  \
        if (!f) {                                                                                  \
            f = (type)dlsym(RTLD_NEXT, #name);                                                     \
            __atomic_store_n(&real_##name, f, __ATOMIC_RELEASE);                                   \
        }                                                                                          \
        return f;                                                                                  \
    }
/* libc_safe.c: the "C" locale object for runtime threads (the constructor calls init). */
void libc_safe_init(void);
void libc_safe_enter_runtime_thread(void);

/* mmap.c has nothing to initialise: it acts once preload_lethe() is non-NULL. */

#endif
