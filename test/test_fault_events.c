/* test_fault_events.c — the application's changes to its mappings reach the core, in both
 * delivery modes: madvise(DONTNEED) and madvise(FREE) -> release, munmap of a part ->
 * release, mremap within the region -> remap (content follows, a parked page faults back at
 * its new place), mremap out of the region -> an error naming the range, and release.
 */
#include "test_fault_stub.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <sys/mman.h>

static struct stub_core *start(enum lethe_delivery d)
{
    struct lethe_region_params p = stub_params(d, 2);
    struct stub_core *c = stub_start(&p);
    cr_assert_not_null(c, "region_create: %s", strerror(errno));
    if (!lethe_region_has_move(c->r)) {
        stub_stop(c);
        cr_skip_test("application events are subscribed only with UFFDIO_MOVE");
    }
    return c;
}

static void touch_range(struct stub_core *c, uint64_t vpn, uint64_t n)
{
    for (uint64_t i = vpn; i < vpn + n; i++)
        cr_assert(stub_check(i, stub_page(c, i)), "page %llu", (unsigned long long)i);
}

static void check_madvise(enum lethe_delivery d, int advice)
{
    struct stub_core *c = start(d);
    touch_range(c, 0, 16);
    cr_assert_eq(madvise(stub_page(c, 4), 3 * LETHE_PAGE_SIZE, advice), 0);
    cr_assert(stub_wait_for(&c->release_calls, 1), "release() called");
    cr_assert_eq(atomic_load(&c->last_release_vpn), 4);
    cr_assert_eq(atomic_load(&c->last_release_n), 3);
    for (uint64_t i = 0; i < 16; i++)
        cr_assert_eq(atomic_load(&c->state[i]) == STUB_UNTOUCHED, i >= 4 && i < 7);
    if (advice == MADV_DONTNEED) {
        uint64_t f = atomic_load(&c->faults);
        touch_range(c, 4, 3); /* demand-served again */
        cr_assert_eq(atomic_load(&c->faults), f + 3);
    }
    touch_range(c, 7, 9);
    stub_stop(c);
}

Test(fault_events, madvise_dontneed_releases_the_range_thread_mode)
{
    check_madvise(LETHE_DELIVERY_THREAD, MADV_DONTNEED);
}

Test(fault_events, madvise_dontneed_releases_the_range_signal_mode)
{
    check_madvise(LETHE_DELIVERY_SIGNAL, MADV_DONTNEED);
}

Test(fault_events, madvise_free_releases_the_range)
{
    check_madvise(LETHE_DELIVERY_THREAD, MADV_FREE);
    check_madvise(LETHE_DELIVERY_SIGNAL, MADV_FREE);
}

static void check_munmap_part(enum lethe_delivery d)
{
    struct stub_core *c = start(d);
    touch_range(c, 0, 8);
    cr_assert_eq(munmap(stub_page(c, 2), 2 * LETHE_PAGE_SIZE), 0);
    cr_assert(stub_wait_for(&c->release_calls, 1));
    cr_assert_eq(atomic_load(&c->last_release_vpn), 2);
    cr_assert_eq(atomic_load(&c->last_release_n), 2);
    touch_range(c, 4, 4);
    stub_stop(c);
}

Test(fault_events, munmap_of_a_part_releases_it)
{
    check_munmap_part(LETHE_DELIVERY_THREAD);
    check_munmap_part(LETHE_DELIVERY_SIGNAL);
}

static void check_mremap_within(enum lethe_delivery d)
{
    struct stub_core *c = start(d);
    touch_range(c, 10, 4);
    cr_assert_eq(stub_park(c, 12, 7), 0, "a parked page moves with the range");
    void *to = stub_page(c, 100);
    void *got = mremap(stub_page(c, 10), 4 * LETHE_PAGE_SIZE, 4 * LETHE_PAGE_SIZE,
                       MREMAP_MAYMOVE | MREMAP_FIXED, to);
    cr_assert_eq(got, to, "mremap: %s", strerror(errno));
    cr_assert(stub_wait_for(&c->remaps, 1), "remap() called");
    cr_assert_eq(atomic_load(&c->last_remap_from), 10);
    cr_assert_eq(atomic_load(&c->last_remap_to), 100);
    cr_assert_eq(atomic_load(&c->last_remap_n), 4);
    for (uint64_t i = 0; i < 4; i++)
        cr_assert(stub_check(10 + i, stub_page(c, 100 + i)), "page %llu moved to %llu",
                  (unsigned long long)(10 + i), (unsigned long long)(100 + i));
    cr_assert_eq(atomic_load(&c->map_backs), 1, "the parked page was mapped back at its new vpn");
    touch_range(c, 200, 2); /* the region still serves faults */
    stub_stop(c);
}

Test(fault_events, mremap_within_the_region_is_reported_as_remap)
{
    check_mremap_within(LETHE_DELIVERY_THREAD);
    check_mremap_within(LETHE_DELIVERY_SIGNAL);
}

static void check_mremap_out(enum lethe_delivery d)
{
    struct stub_core *c = start(d);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/lethe-fault-log-%d", (int)getpid());
    int logfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(logfd, 0);
    unlink(path);
    lethe_log_set_fd(logfd);
    touch_range(c, 20, 2);
    /* growing forces a move: the page after the range is the region's */
    char *out = mremap(stub_page(c, 20), 2 * LETHE_PAGE_SIZE, 3 * LETHE_PAGE_SIZE, MREMAP_MAYMOVE);
    cr_assert_neq(out, MAP_FAILED);
    cr_assert(stub_wait_for(&c->release_calls, 1), "the pages moved out are released");
    cr_assert_eq(atomic_load(&c->last_release_vpn), 20);
    cr_assert_eq(atomic_load(&c->last_release_n), 2);
    cr_assert(stub_check(20, out), "resident content moved with the mapping");
    cr_assert(stub_check(21, out + LETHE_PAGE_SIZE));
    lethe_log_set_fd(2);
    char log[4096] = {0};
    cr_assert_gt(pread(logfd, log, sizeof(log) - 1, 0), 0);
    close(logfd);
    cr_assert(strstr(log, "out of the region") && strstr(log, "pages 20..22"), "log: %s", log);
    cr_assert_eq(out[2 * LETHE_PAGE_SIZE], 0, "the grown part is plain, unregistered memory");
    munmap(out, 3 * LETHE_PAGE_SIZE);
    stub_stop(c);
}

Test(fault_events, mremap_out_of_the_region_is_logged_and_released)
{
    check_mremap_out(LETHE_DELIVERY_THREAD);
    check_mremap_out(LETHE_DELIVERY_SIGNAL);
}

Test(fault_events, events_are_counted)
{
    struct stub_core *c = start(LETHE_DELIVERY_THREAD);
    touch_range(c, 0, 2);
    madvise(stub_page(c, 0), LETHE_PAGE_SIZE, MADV_DONTNEED);
    madvise(stub_page(c, 1), LETHE_PAGE_SIZE, MADV_DONTNEED);
    cr_assert(stub_wait_for(&c->release_calls, 2));
    struct lethe_fault_stats st;
    lethe_region_get_stats(c->r, &st);
    cr_assert_eq(st.events, 2);
    stub_stop(c);
}

Test(fault_events, memory_mremapped_out_is_usable_at_once_in_both_modes)
{
    /* The grown part of a mapping moved out of the region is touched right after mremap
     * returns, before (or while) the runtime unregisters it. */
    for (int mode = 0; mode < 2; mode++) {
        struct stub_core *c = start(mode ? LETHE_DELIVERY_SIGNAL : LETHE_DELIVERY_THREAD);
        int logfd = open("/dev/null", O_WRONLY);
        lethe_log_set_fd(logfd);
        for (uint64_t k = 0; k < 20; k++) {
            uint64_t vpn = 300 + 4 * k;
            touch_range(c, vpn, 2);
            char *out =
                mremap(stub_page(c, vpn), 2 * LETHE_PAGE_SIZE, 8 * LETHE_PAGE_SIZE, MREMAP_MAYMOVE);
            cr_assert_neq(out, MAP_FAILED);
            for (unsigned pg = 2; pg < 8; pg++)
                cr_assert_eq(out[pg * LETHE_PAGE_SIZE], 0);
            cr_assert(stub_check(vpn + 1, out + LETHE_PAGE_SIZE));
            munmap(out, 8 * LETHE_PAGE_SIZE);
        }
        lethe_log_set_fd(2);
        close(logfd);
        stub_stop(c);
    }
}

static void check_fault_after_madvise_sees_release(enum lethe_delivery d)
{
    struct stub_core *c = start(d);
    for (uint64_t k = 0; k < 300; k++) {
        uint64_t vpn = 1000 + k;
        touch_range(c, vpn, 1);
        cr_assert_eq(madvise(stub_page(c, vpn), LETHE_PAGE_SIZE, MADV_DONTNEED), 0);
        touch_range(c, vpn, 1); /* faults at once: release() must have run before it is served */
    }
    cr_assert_eq(atomic_load(&c->resident_faults), 0,
                 "%llu faults were served with the state from before the madvise",
                 (unsigned long long)atomic_load(&c->resident_faults));
    stub_stop(c);
}

Test(fault_events, a_fault_right_after_madvise_is_served_after_release)
{
    check_fault_after_madvise_sees_release(LETHE_DELIVERY_THREAD);
    check_fault_after_madvise_sees_release(LETHE_DELIVERY_SIGNAL);
}
