/* rdma_uffd_probe.c — what userfaultfd can do on the running kernel, checked by doing it.
 *
 * Run inside rdma-vm (Linux 6.1) by test/rdma/guest-suite.sh, and usable on any machine. It
 * prints one line naming the kernel and the features Lethe's guest runtime probes for, in a
 * fixed form the suite greps:
 *     uffd-probe: kernel 6.1.0-56-amd64: WP=yes WP_ASYNC=no MOVE=no PAGEMAP_SCAN=no
 * then exercises the operations the runtime's fallback paths rely on, each on a real fault
 * served by a handler thread:
 *   - MISSING fault resolved with UFFDIO_COPY (content verified by the faulting thread);
 *   - UFFDIO_ZEROPAGE;
 *   - synchronous write-protect: a write to a protected page raises a WP fault, the handler
 *     clears the protection, the write lands;
 *   - MADV_DONTNEED on a registered page: the next touch faults again (the drop fallback
 *     for a kernel without UFFDIO_MOVE).
 * Exit status: 0 when every operation behaved, 1 otherwise (the failing step is named),
 * 2 when userfaultfd itself is unavailable (not root, ENOSYS).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "fault/uffd_compat.h"

#define PAGE   4096UL
#define NPAGES 4

static int uffd = -1;
static char *area;
static char *source;                    /* the page UFFDIO_COPY copies from */
static int handled_missing, handled_wp; /* faults seen by the handler */

static int seen(int *count)
{
    return __atomic_load_n(count, __ATOMIC_SEQ_CST);
}

static int fail(const char *step, int err)
{
    fprintf(stderr, "uffd-probe: FAIL: %s: %s\n", step, strerror(err));
    return 1;
}

/* Serves faults until the area is done with: MISSING with a copy of `source`, WP by
 * clearing the protection of the page. */
static void *handler(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd pfd = {.fd = uffd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) <= 0)
            return NULL;
        struct uffd_msg msg;
        if (read(uffd, &msg, sizeof msg) != sizeof msg)
            return NULL;
        if (msg.event != UFFD_EVENT_PAGEFAULT)
            continue;
        /* Counted before resolving: resolving wakes the faulting thread, which then reads
         * the counts. */
        uint64_t page = msg.arg.pagefault.address & ~(PAGE - 1);
        if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
            __atomic_add_fetch(&handled_wp, 1, __ATOMIC_SEQ_CST);
            struct uffdio_writeprotect wp = {.range = {page, PAGE}, .mode = 0};
            if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0)
                perror("uffd-probe: UFFDIO_WRITEPROTECT (clear)");
        } else {
            __atomic_add_fetch(&handled_missing, 1, __ATOMIC_SEQ_CST);
            struct uffdio_copy copy = {.dst = page, .src = (uint64_t)source, .len = PAGE};
            if (ioctl(uffd, UFFDIO_COPY, &copy) != 0)
                perror("uffd-probe: UFFDIO_COPY");
        }
    }
}

static int pagemap_scan_works(void)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0)
        return 0;
    struct page_region vec[4];
    struct pm_scan_arg arg = {
        .size = sizeof arg,
        .start = (uint64_t)area,
        .end = (uint64_t)area + PAGE,
        .vec = (uint64_t)vec,
        .vec_len = 4,
        .category_anyof_mask = PAGE_IS_PRESENT,
        .return_mask = PAGE_IS_PRESENT,
    };
    int rc = ioctl(fd, PAGEMAP_SCAN, &arg);
    close(fd);
    return rc >= 0;
}

int main(void)
{
    struct utsname u;
    uname(&u);
    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) {
        fprintf(stderr, "uffd-probe: userfaultfd unavailable on %s: %s\n", u.release,
                strerror(errno));
        return 2;
    }
    /* First handshake with no features: the kernel answers with every feature it has. */
    struct uffdio_api api = {.api = UFFD_API, .features = 0};
    if (ioctl(uffd, UFFDIO_API, &api) != 0)
        return fail("UFFDIO_API", errno);
    uint64_t have = api.features;
    close(uffd);

    area = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    source = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED || source == MAP_FAILED)
        return fail("mmap", errno);
    for (unsigned i = 0; i < PAGE; i++)
        source[i] = (char)(i * 7 + 3);

    int wp = !!(have & UFFD_FEATURE_PAGEFAULT_FLAG_WP);
    int wp_async = !!(have & UFFD_FEATURE_WP_ASYNC);
    int move_feature = !!(have & UFFD_FEATURE_MOVE);
    int scan = pagemap_scan_works();

    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0)
        return fail("userfaultfd (second)", errno);
    api = (struct uffdio_api){.api = UFFD_API, .features = wp ? UFFD_FEATURE_PAGEFAULT_FLAG_WP : 0};
    if (ioctl(uffd, UFFDIO_API, &api) != 0)
        return fail("UFFDIO_API with WP", errno);
    struct uffdio_register reg = {
        .range = {(uint64_t)area, NPAGES * PAGE},
        .mode = UFFDIO_REGISTER_MODE_MISSING | (wp ? UFFDIO_REGISTER_MODE_WP : 0),
    };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0)
        return fail("UFFDIO_REGISTER", errno);
    int move_ioctl = !!(reg.ioctls & (1ULL << _UFFDIO_MOVE));

    printf("uffd-probe: kernel %s: WP=%s WP_ASYNC=%s MOVE=%s PAGEMAP_SCAN=%s\n", u.release,
           wp ? "yes" : "no", wp_async ? "yes" : "no", (move_feature && move_ioctl) ? "yes" : "no",
           scan ? "yes" : "no");
    fflush(stdout);

    pthread_t th;
    if (pthread_create(&th, NULL, handler, NULL) != 0)
        return fail("pthread_create", EAGAIN);

    int bad = 0;
    /* 1. MISSING fault served with UFFDIO_COPY. */
    if (memcmp(area, source, PAGE) != 0 || seen(&handled_missing) != 1)
        bad |= fail("missing fault + UFFDIO_COPY: content or count wrong", EIO);
    else
        printf("uffd-probe: missing fault + UFFDIO_COPY: ok\n");

    /* 2. UFFDIO_ZEROPAGE on page 1, no fault expected. */
    struct uffdio_zeropage zp = {.range = {(uint64_t)area + PAGE, PAGE}};
    if (ioctl(uffd, UFFDIO_ZEROPAGE, &zp) != 0)
        bad |= fail("UFFDIO_ZEROPAGE", errno);
    else if (area[PAGE] != 0 || area[2 * PAGE - 1] != 0 || seen(&handled_missing) != 1)
        bad |= fail("UFFDIO_ZEROPAGE: page not zero or it faulted", EIO);
    else
        printf("uffd-probe: UFFDIO_ZEROPAGE: ok\n");

    /* 3. Synchronous write-protect on page 0. */
    if (wp) {
        struct uffdio_writeprotect p = {.range = {(uint64_t)area, PAGE},
                                        .mode = UFFDIO_WRITEPROTECT_MODE_WP};
        if (ioctl(uffd, UFFDIO_WRITEPROTECT, &p) != 0) {
            bad |= fail("UFFDIO_WRITEPROTECT", errno);
        } else {
            area[10] = 42;
            if (area[10] != 42 || seen(&handled_wp) != 1)
                bad |= fail("write-protect fault: write lost or no WP fault seen", EIO);
            else
                printf("uffd-probe: write-protect fault + UFFDIO_WRITEPROTECT: ok\n");
        }
    }

    /* 4. MADV_DONTNEED drops page 0; the next touch faults again and gets the source. */
    if (madvise(area, PAGE, MADV_DONTNEED) != 0) {
        bad |= fail("MADV_DONTNEED", errno);
    } else {
        int before = seen(&handled_missing);
        if (area[10] != source[10] || seen(&handled_missing) != before + 1)
            bad |= fail("MADV_DONTNEED then touch: no new MISSING fault", EIO);
        else
            printf("uffd-probe: MADV_DONTNEED + refault: ok\n");
    }

    /* Unregistering wakes nothing that waits; the handler leaves on its poll timeout, so
     * close the fd to end it promptly. */
    struct uffdio_range all = {(uint64_t)area, NPAGES * PAGE};
    ioctl(uffd, UFFDIO_UNREGISTER, &all);
    pthread_cancel(th);
    pthread_join(th, NULL);
    close(uffd);
    printf("uffd-probe: %s\n", bad ? "FAILED" : "all operations ok");
    return bad ? 1 : 0;
}
