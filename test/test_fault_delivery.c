/* test_fault_delivery.c — fault delivery in both modes: 1, 2 and 8 application threads
 * faulting on the same and on different pages, content checked; kernel-mode accesses
 * (read() into missing pages) in thread mode, and their EFAULT in signal mode; threads with
 * and without lethe_fault_thread_init(); -EAGAIN while an application event is unread.
 */
#include "test_fault_stub.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGES_PER_THREAD 200

struct worker {
    struct stub_core *c;
    unsigned index;
    unsigned nthreads;
    bool same_pages;
    bool thread_init;
    bool parked_round; /* second pass: pages were soft-unmapped */
    atomic_int *go;
    unsigned bad;
    int init_rc;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (w->thread_init)
        w->init_rc = lethe_fault_thread_init();
    while (!atomic_load(w->go))
        sched_yield();
    for (unsigned i = 0; i < PAGES_PER_THREAD; i++) {
        uint64_t vpn = w->same_pages ? i : (uint64_t)w->index * PAGES_PER_THREAD + i;
        if (!stub_check(vpn, stub_page(w->c, vpn)))
            w->bad++;
    }
    return NULL;
}

static void run_workers(struct stub_core *c, unsigned nthreads, bool same_pages, bool init)
{
    pthread_t t[8];
    struct worker w[8];
    atomic_int go = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        w[i] = (struct worker){.c = c,
                               .index = i,
                               .nthreads = nthreads,
                               .same_pages = same_pages,
                               .thread_init = init,
                               .go = &go};
        cr_assert_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    atomic_store(&go, 1);
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(w[i].bad, 0, "thread %u saw %u pages with wrong content", i, w[i].bad);
        cr_assert_eq(w[i].init_rc, 0);
    }
}

/* Faults from n threads, then soft-unmaps every touched page and faults them all back. */
static void check_threads(enum lethe_delivery d, unsigned vcpus, unsigned nthreads, bool same)
{
    struct lethe_region_params p = stub_params(d, vcpus);
    struct stub_core *c = stub_start(&p);
    cr_assert_not_null(c, "region_create: %s", strerror(errno));
    run_workers(c, nthreads, same, d == LETHE_DELIVERY_SIGNAL);
    uint64_t touched = same ? PAGES_PER_THREAD : (uint64_t)nthreads * PAGES_PER_THREAD;
    uint64_t faults = atomic_load(&c->faults);
    cr_assert_geq(faults, touched, "every page faulted once at least");
    if (!same)
        cr_assert_eq(faults, touched, "one fault per page when threads touch different pages");
    for (uint64_t vpn = 0; vpn < touched; vpn++)
        cr_assert_eq(atomic_load(&c->state[vpn]), STUB_RESIDENT);
    for (uint64_t vpn = 0; vpn < touched; vpn++)
        cr_assert_eq(stub_park(c, vpn, vpn), 0, "park %llu", (unsigned long long)vpn);
    run_workers(c, nthreads, same, false);
    cr_assert_eq(atomic_load(&c->map_backs), touched, "each parked page mapped back once");
    stub_stop(c);
}

Test(fault_delivery, thread_mode_one_thread)
{
    check_threads(LETHE_DELIVERY_THREAD, 2, 1, false);
}

Test(fault_delivery, thread_mode_two_threads_same_and_different_pages)
{
    check_threads(LETHE_DELIVERY_THREAD, 2, 2, true);
    check_threads(LETHE_DELIVERY_THREAD, 2, 2, false);
}

Test(fault_delivery, thread_mode_eight_threads_same_and_different_pages)
{
    check_threads(LETHE_DELIVERY_THREAD, 4, 8, true);
    check_threads(LETHE_DELIVERY_THREAD, 4, 8, false);
}

Test(fault_delivery, signal_mode_one_thread)
{
    check_threads(LETHE_DELIVERY_SIGNAL, 2, 1, false);
}

Test(fault_delivery, signal_mode_two_threads_same_and_different_pages)
{
    check_threads(LETHE_DELIVERY_SIGNAL, 2, 2, true);
    check_threads(LETHE_DELIVERY_SIGNAL, 2, 2, false);
}

Test(fault_delivery, signal_mode_eight_threads_share_fewer_vcpu_contexts)
{
    check_threads(LETHE_DELIVERY_SIGNAL, 3, 8, true);
    check_threads(LETHE_DELIVERY_SIGNAL, 3, 8, false);
}

Test(fault_delivery, single_vcpu_serves_many_threads)
{
    check_threads(LETHE_DELIVERY_THREAD, 1, 8, true);
    check_threads(LETHE_DELIVERY_SIGNAL, 1, 8, false);
}

Test(fault_delivery, signal_mode_reports_the_access_type)
{
    struct lethe_region_params p = stub_params(LETHE_DELIVERY_SIGNAL, 1);
    struct stub_core *c = stub_start(&p);
    cr_assert_not_null(c);
    volatile char *a = stub_page(c, 1), *b = stub_page(c, 2);
    (void)a[0];
    b[0] = 1;
    cr_assert_eq(atomic_load(&c->read_faults), 1);
    cr_assert_eq(atomic_load(&c->write_faults), 1);
    stub_stop(c);
}

Test(fault_delivery, signal_mode_thread_without_altstack_still_works)
{
    struct lethe_region_params p = stub_params(LETHE_DELIVERY_SIGNAL, 2);
    struct stub_core *c = stub_start(&p);
    cr_assert_not_null(c);
    run_workers(c, 2, false, false);
    stub_stop(c);
}

Test(fault_delivery, thread_init_gives_an_alternate_signal_stack)
{
    stack_t ss;
    cr_assert_eq(lethe_fault_thread_init(), 0, "replaces none, or a small one (ASan's)");
    cr_assert_eq(sigaltstack(NULL, &ss), 0);
    cr_assert_eq(ss.ss_flags & SS_DISABLE, 0);
    cr_assert_geq(ss.ss_size, 64 * 1024);
    void *sp = ss.ss_sp;
    cr_assert_eq(lethe_fault_thread_init(), 0, "a second call keeps the stack");
    cr_assert_eq(sigaltstack(NULL, &ss), 0);
    cr_assert_eq(ss.ss_sp, sp);
}

static void check_read_into_missing_pages(int fd_in, struct stub_core *c, uint64_t vpn, size_t len)
{
    char *dst = stub_page(c, vpn);
    ssize_t got = read(fd_in, dst, len);
    cr_assert_eq(got, (ssize_t)len, "read() into missing pages: %zd (%s)", got, strerror(errno));
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(dst[i], (char)(i * 7 + 3), "byte %zu", i);
}

Test(fault_delivery, thread_mode_serves_kernel_accesses_from_a_pipe_and_a_file)
{
    struct lethe_region_params p = stub_params(LETHE_DELIVERY_THREAD, 2);
    struct stub_core *c = stub_start(&p);
    cr_assert_not_null(c);
    char data[3 * LETHE_PAGE_SIZE];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7 + 3);

    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    cr_assert_eq(write(pfd[1], data, 8192), 8192);
    check_read_into_missing_pages(pfd[0], c, 10, 8192);
    close(pfd[0]);
    close(pfd[1]);

    char path[64];
    snprintf(path, sizeof(path), "/tmp/lethe-fault-read-%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    unlink(path);
    cr_assert_eq(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
    lseek(fd, 0, SEEK_SET);
    check_read_into_missing_pages(fd, c, 20, sizeof(data));
    /* and a write() from a soft-unmapped page */
    cr_assert_eq(stub_park(c, 20, 1), 0);
    lseek(fd, 0, SEEK_SET);
    cr_assert_eq(write(fd, stub_page(c, 20), LETHE_PAGE_SIZE), LETHE_PAGE_SIZE);
    close(fd);
    cr_assert_geq(atomic_load(&c->faults), 6);
    stub_stop(c);
}

Test(fault_delivery, signal_mode_kernel_access_to_a_missing_page_is_efault)
{
    struct lethe_region_params p = stub_params(LETHE_DELIVERY_SIGNAL, 1);
    struct stub_core *c = stub_start(&p);
    cr_assert_not_null(c);
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    cr_assert_eq(write(pfd[1], "hello", 5), 5);
    errno = 0;
    cr_assert_eq(read(pfd[0], stub_page(c, 3), 5), -1);
    cr_assert_eq(errno, EFAULT);
    cr_assert_eq(atomic_load(&c->faults), 0, "no signal for a kernel-mode access");
    /* once present (touched by the thread itself) the same read works */
    cr_assert(stub_check(3, stub_page(c, 3)));
    cr_assert_eq(read(pfd[0], stub_page(c, 3), 5), 5);
    cr_assert_eq(memcmp(stub_page(c, 3), "hello", 5), 0);
    close(pfd[0]);
    close(pfd[1]);
    stub_stop(c);
}

struct madviser {
    void *addr;
    int advice;
    atomic_int tid;
    atomic_int done;
};

/* Waits (up to 5 s) until thread tid of this process sleeps in the kernel: 'D' in its stat
 * (an event's wait for its reader is killable, hence uninterruptible), or 'S'. */
static bool thread_sleeps(int tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    for (int i = 0; i < 5000; i++) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = 0;
        const char *end = strrchr(buf, ')'); /* "tid (comm) S ..." */
        if (end && end[1] == ' ' && (end[2] == 'D' || end[2] == 'S'))
            return true;
        usleep(1000);
    }
    return false;
}

static void *madvise_main(void *arg)
{
    struct madviser *m = arg;
    atomic_store(&m->tid, (int)syscall(SYS_gettid));
    madvise(m->addr, LETHE_PAGE_SIZE, m->advice);
    atomic_store(&m->done, 1);
    return NULL;
}

static void *touch_main(void *arg)
{
    struct stub_core *c = arg;
    return (void *)(uintptr_t)stub_check(0, stub_page(c, 0));
}

Test(fault_delivery, ioctls_answer_eagain_while_an_event_is_unread_and_faults_retry)
{
    /* One vCPU, held inside the fault of page 0: nobody reads the madvise event, so the
     * region's uffd stays in its mmap_changing state. */
    struct lethe_region_params p = stub_params(LETHE_DELIVERY_THREAD, 1);
    struct stub_core *c = stub_start(&p);
    cr_assert_not_null(c);
    if (!lethe_region_has_move(c->r)) {
        stub_stop(c);
        cr_skip_test("application events need UFFDIO_MOVE");
    }
    cr_assert(stub_check(5, stub_page(c, 5)));
    atomic_store(&c->gate_vpn, 0);
    pthread_t toucher, adviser;
    cr_assert_eq(pthread_create(&toucher, NULL, touch_main, c), 0);
    while (!atomic_load(&c->in_gate))
        usleep(100);
    struct madviser m = {.addr = stub_page(c, 5), .advice = MADV_DONTNEED};
    cr_assert_eq(pthread_create(&adviser, NULL, madvise_main, &m), 0);
    /* Probe only once the adviser sleeps in madvise: on a loaded machine it may not even have
     * started 20 ms after pthread_create. */
    while (!atomic_load(&m.tid))
        usleep(100);
    cr_assert(thread_sleeps(atomic_load(&m.tid)), "the adviser never went to sleep");
    usleep(20000);
    cr_assert_eq(atomic_load(&m.done), 0, "madvise waits for its event to be read");
    void *buf = aligned_alloc(LETHE_PAGE_SIZE, LETHE_PAGE_SIZE);
    stub_pattern(7, buf);
    cr_assert_eq(lethe_page_install(c->r, 7, buf), -EAGAIN);
    cr_assert_eq(lethe_page_install_zero(c->r, 8), -EAGAIN);
    atomic_store(&c->gate_open, true); /* the vCPU's own install now fails: EAGAIN, retry */
    void *ok;
    pthread_join(toucher, &ok);
    pthread_join(adviser, NULL);
    cr_assert(ok != NULL, "page 0 served after the retry");
    cr_assert_geq(atomic_load(&c->again), 1, "the core saw -EAGAIN");
    struct lethe_fault_stats st;
    lethe_region_get_stats(c->r, &st);
    cr_assert_geq(st.retries, 1);
    cr_assert(stub_wait_for(&c->release_calls, 1));
    cr_assert_eq(atomic_load(&c->last_release_vpn), 5);
    cr_assert_eq(lethe_page_install(c->r, 7, buf), 0, "ioctls work again");
    free(buf);
    stub_stop(c);
}
