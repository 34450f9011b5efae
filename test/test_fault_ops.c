/* test_fault_ops.c — the guest runtime's page operations: install, install_zero(_run),
 * soft_unmap / map_back, drop_slot, scan_dirty, wake, their error answers, and the copy
 * fallbacks (force_fallback_move / force_fallback_dirty) with the same content checks.
 */
#include "test_fault_stub.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static struct stub_core *start_thread_core(bool fallback_move, bool fallback_dirty)
{
    struct lethe_region_params p = stub_params(LETHE_DELIVERY_THREAD, 2);
    p.force_fallback_move = fallback_move;
    p.force_fallback_dirty = fallback_dirty;
    struct stub_core *c = stub_start(&p);
    cr_assert_not_null(c, "region_create failed: %s", strerror(errno));
    return c;
}

static void *page_buf(uint64_t vpn)
{
    void *b = aligned_alloc(LETHE_PAGE_SIZE, LETHE_PAGE_SIZE);
    stub_pattern(vpn, b);
    return b;
}

Test(fault_ops, paths_name_the_active_mechanisms)
{
    struct stub_core *c = start_thread_core(false, false);
    const char *paths = lethe_region_paths(c->r);
    cr_assert(strstr(paths, "delivery=thread") != NULL, "%s", paths);
    if (lethe_region_has_move(c->r))
        cr_assert(strstr(paths, "move=UFFDIO_MOVE") != NULL, "%s", paths);
    if (lethe_region_has_dirty_tracking(c->r))
        cr_assert(strstr(paths, "dirty=PAGEMAP_SCAN") != NULL, "%s", paths);
    stub_stop(c);

    c = start_thread_core(true, false);
    cr_assert_not(lethe_region_has_move(c->r));
    cr_assert_not(lethe_region_has_dirty_tracking(c->r), "copy fallback implies no async WP");
    cr_assert(strstr(lethe_region_paths(c->r), "move=copy") != NULL, "%s",
              lethe_region_paths(c->r));
    stub_stop(c);

    c = start_thread_core(false, true);
    cr_assert_not(lethe_region_has_dirty_tracking(c->r));
    cr_assert(strstr(lethe_region_paths(c->r), "dirty=none") != NULL, "%s",
              lethe_region_paths(c->r));
    stub_stop(c);
}

Test(fault_ops, create_rejects_bad_parameters)
{
    struct lethe_region *r;
    struct lethe_region_params p = stub_params(LETHE_DELIVERY_THREAD, 1);
    p.region_size = 12345;
    cr_assert_eq(lethe_region_create(&p, &stub_ops, NULL, &r), -EINVAL);
    p = stub_params(LETHE_DELIVERY_THREAD, 0);
    cr_assert_eq(lethe_region_create(&p, &stub_ops, NULL, &r), -EINVAL);
    p = stub_params(LETHE_DELIVERY_THREAD, 1);
    p.staging_pages = 0;
    cr_assert_eq(lethe_region_create(&p, &stub_ops, NULL, &r), -EINVAL);
}

Test(fault_ops, region_geometry_and_address_translation)
{
    struct stub_core *c = start_thread_core(false, false);
    struct lethe_region *r = c->r;
    char *base = lethe_region_base(r);
    cr_assert_eq(lethe_region_pages(r), (64ULL << 20) / LETHE_PAGE_SIZE);
    cr_assert_eq(lethe_region_vcpus(r), 2);
    cr_assert_eq(lethe_region_vpn(r, base + 5 * LETHE_PAGE_SIZE + 7), 5);
    cr_assert_eq(lethe_region_vpn(r, base - 1), UINT64_MAX);
    cr_assert_eq(lethe_region_vpn(r, base + (64ULL << 20)), UINT64_MAX);
    cr_assert_eq(lethe_region_addr(r, 3), base + 3 * LETHE_PAGE_SIZE);
    struct lethe_vcpu *v = lethe_region_vcpu(r, 1);
    cr_assert_eq(v->id, 1);
    cr_assert_eq(v->core, c, "vcpu_init ran on every vCPU");
    cr_assert_not_null(v->staging);
    cr_assert_null(lethe_region_vcpu(r, 2));
    cr_assert_eq((uintptr_t)v % 64, 0, "vCPU contexts are cache-line aligned");
    cr_assert_eq(atomic_load(&c->vcpu_inits), 2);
    stub_stop(c);
}

static void check_first_touch_serves_content(bool fb_move, bool fb_dirty)
{
    struct stub_core *c = start_thread_core(fb_move, fb_dirty);
    for (uint64_t vpn = 0; vpn < 64; vpn++)
        cr_assert(stub_check(vpn, stub_page(c, vpn)), "page %llu content", (unsigned long long)vpn);
    cr_assert_eq(atomic_load(&c->faults), 64);
    cr_assert_eq(atomic_load(&c->read_faults), 64);
    stub_page(c, 100)[0] = 1; /* a write fault */
    cr_assert_eq(atomic_load(&c->write_faults), 1);
    struct lethe_fault_stats st;
    lethe_region_get_stats(c->r, &st);
    cr_assert_eq(st.faults, 65);
    stub_stop(c);
}

Test(fault_ops, first_touch_is_served_with_the_cores_content)
{
    check_first_touch_serves_content(false, false);
}

Test(fault_ops, first_touch_is_served_in_copy_fallbacks)
{
    check_first_touch_serves_content(true, false);
    check_first_touch_serves_content(false, true);
}

Test(fault_ops, install_zero_reads_zeros_and_is_write_clean)
{
    struct stub_core *c = start_thread_core(false, false);
    c->zero_fill = true;
    for (uint64_t vpn = 0; vpn < 8; vpn++)
        for (unsigned i = 0; i < LETHE_PAGE_SIZE; i += 512)
            cr_assert_eq(stub_page(c, vpn)[i], 0);
    cr_assert_eq(atomic_load(&c->zero_fills), 8);
    if (lethe_region_has_dirty_tracking(c->r)) {
        uint64_t bm[1];
        cr_assert_eq(lethe_page_scan_dirty(c->r, 0, 8, bm), 0, "zero pages start clean");
        stub_page(c, 3)[10] = 5;
        cr_assert_eq(lethe_page_scan_dirty(c->r, 0, 8, bm), 1);
        cr_assert_eq(bm[0], 1u << 3);
        cr_assert_eq(stub_page(c, 3)[10], 5);
    }
    stub_stop(c);
}

Test(fault_ops, install_on_a_present_page_is_eexist)
{
    struct stub_core *c = start_thread_core(false, false);
    void *buf = page_buf(9);
    cr_assert_eq(lethe_page_install(c->r, 9, buf), 0);
    cr_assert(stub_check(9, stub_page(c, 9)));
    cr_assert_eq(atomic_load(&c->faults), 0, "installed ahead of any fault");
    cr_assert_eq(lethe_page_install(c->r, 9, buf), -EEXIST);
    cr_assert_eq(lethe_page_install_zero(c->r, 9), -EEXIST);
    cr_assert(stub_check(9, stub_page(c, 9)), "an EEXIST install leaves the page alone");
    cr_assert_eq(lethe_page_install(c->r, lethe_region_pages(c->r), buf), -EINVAL);
    free(buf);
    stub_stop(c);
}

Test(fault_ops, install_range_installs_every_page_and_skips_present_ones)
{
    struct stub_core *c = start_thread_core(false, false);
    char *src = aligned_alloc(LETHE_PAGE_SIZE, 16 * LETHE_PAGE_SIZE);
    for (uint64_t i = 0; i < 16; i++)
        stub_pattern(200 + i, src + i * LETHE_PAGE_SIZE);
    cr_assert_eq(lethe_page_install(c->r, 205, src + 5 * LETHE_PAGE_SIZE), 0);
    cr_assert_eq(lethe_page_install_range(c->r, 200, src, 16), -EEXIST);
    for (uint64_t i = 0; i < 16; i++)
        cr_assert(stub_check(200 + i, stub_page(c, 200 + i)), "page %llu",
                  (unsigned long long)(200 + i));
    cr_assert_eq(atomic_load(&c->faults), 0);
    if (lethe_region_has_dirty_tracking(c->r)) {
        uint64_t bm[1];
        cr_assert_eq(lethe_page_scan_dirty(c->r, 200, 16, bm), 0, "installs are write-clean");
    }
    free(src);
    stub_stop(c);
}

static void check_zero_run(bool fb_dirty)
{
    struct stub_core *c = start_thread_core(false, fb_dirty);
    void *buf = page_buf(310);
    cr_assert_eq(lethe_page_install(c->r, 310, buf), 0);
    /* 300..309 go in, the run stops at the present page 310 */
    cr_assert_eq(lethe_page_install_zero_run(c->r, 300, 16), 10);
    cr_assert(stub_check(310, stub_page(c, 310)), "the present page is left alone");
    cr_assert_eq(lethe_page_install_zero_run(c->r, 400, LETHE_ZERO_RUN), LETHE_ZERO_RUN);
    cr_assert_eq(lethe_page_install_zero_run(c->r, 500, 0), -EINVAL);
    cr_assert_eq(lethe_page_install_zero_run(c->r, 500, LETHE_ZERO_RUN + 1), -EINVAL);
    cr_assert_eq(lethe_page_install_zero_run(c->r, lethe_region_pages(c->r) - 1, 2), -EINVAL);
    if (lethe_region_has_dirty_tracking(c->r)) {
        uint64_t bm[1];
        cr_assert_eq(lethe_page_scan_dirty(c->r, 300, 10, bm), 0, "the run starts write-clean");
    }
    for (uint64_t vpn = 300; vpn < 310; vpn++)
        cr_assert(stub_page(c, vpn)[vpn % LETHE_PAGE_SIZE] == 0, "page %llu",
                  (unsigned long long)vpn);
    for (uint64_t vpn = 400; vpn < 400 + LETHE_ZERO_RUN; vpn++) {
        cr_assert_eq(stub_page(c, vpn)[LETHE_PAGE_SIZE - 1], 0);
        stub_page(c, vpn)[7] = 1;
    }
    cr_assert_eq(atomic_load(&c->faults), 0, "no page of the runs faulted");
    if (lethe_region_has_dirty_tracking(c->r)) {
        uint64_t bm[1];
        cr_assert_eq(lethe_page_scan_dirty(c->r, 400, 64, bm), 64, "every write is seen");
    }
    free(buf);
    stub_stop(c);
}

Test(fault_ops, install_zero_run_installs_a_run_and_stops_at_a_present_page)
{
    check_zero_run(false);
}

Test(fault_ops, install_zero_run_without_dirty_tracking)
{
    check_zero_run(true);
}

static void check_soft_unmap_roundtrip(bool fb_move, bool fb_dirty)
{
    struct stub_core *c = start_thread_core(fb_move, fb_dirty);
    for (uint64_t vpn = 0; vpn < 16; vpn++)
        cr_assert(stub_check(vpn, stub_page(c, vpn)));
    for (uint64_t vpn = 0; vpn < 16; vpn++)
        cr_assert_eq(stub_park(c, vpn, 100 + vpn), 0, "soft_unmap %llu", (unsigned long long)vpn);
    cr_assert(stub_check(3, lethe_region_slot(c->r, 103)), "the slot holds the page");
    uint64_t before = atomic_load(&c->faults);
    for (uint64_t vpn = 0; vpn < 16; vpn += 2)
        cr_assert(stub_check(vpn, stub_page(c, vpn)), "page %llu after map_back",
                  (unsigned long long)vpn);
    cr_assert_eq(atomic_load(&c->faults) - before, 8, "each touch of a parked page faults");
    cr_assert_eq(atomic_load(&c->map_backs), 8);
    for (uint64_t vpn = 0; vpn < 16; vpn++)
        cr_assert_eq(atomic_load(&c->referenced[vpn]), vpn % 2 == 0);
    /* a written, mapped-back page keeps its content through a second round trip */
    stub_page(c, 4)[100] ^= 0x5a;
    cr_assert_eq(stub_park(c, 4, 104), 0);
    cr_assert_eq(stub_page(c, 4)[100], (char)(stub_word(4, 100 / 8) >> (8 * (100 % 8)) ^ 0x5a));
    stub_stop(c);
}

Test(fault_ops, soft_unmapped_page_faults_and_map_back_restores_it)
{
    check_soft_unmap_roundtrip(false, false);
}

Test(fault_ops, soft_unmap_roundtrip_in_copy_fallbacks)
{
    check_soft_unmap_roundtrip(true, false);
    check_soft_unmap_roundtrip(false, true);
}

Test(fault_ops, soft_unmap_batch_moves_runs_and_reports_each_page)
{
    struct stub_core *c = start_thread_core(false, false);
    for (uint64_t vpn = 0; vpn < 80; vpn++)
        cr_assert(stub_check(vpn, stub_page(c, vpn)));
    uint64_t vpns[80], frames[80];
    int status[80];
    for (unsigned i = 0; i < 80; i++) {
        vpns[i] = i;
        frames[i] = i < 64 ? 1000 + i : 2000 + 3 * i; /* a run of 64, then scattered */
    }
    vpns[70] = 5000; /* never touched: not present */
    int moved = lethe_page_soft_unmap_batch_status(c->r, vpns, frames, 80, status);
    cr_assert_eq(moved, 79);
    cr_assert_eq(status[70], -ENOENT, "a missing page reports -ENOENT, got %d", status[70]);
    for (unsigned i = 0; i < 80; i++) {
        if (i == 70)
            continue;
        cr_assert_eq(status[i], 0, "page %u: %d", i, status[i]);
        stub_lock(c, vpns[i]); /* the vCPU that installed it may still be in its fault */
        c->frame[vpns[i]] = frames[i];
        atomic_store(&c->state[vpns[i]], STUB_PARKED);
        stub_unlock(c, vpns[i]);
    }
    for (unsigned i = 0; i < 80; i++)
        if (i != 70)
            cr_assert(stub_check(vpns[i], stub_page(c, vpns[i])), "page %u", i);
    cr_assert_eq(lethe_page_soft_unmap_batch(c->r, vpns, frames, 1), 0);
    stub_stop(c);
}

static void check_soft_unmap_errors(bool fb_move)
{
    struct stub_core *c = start_thread_core(fb_move, false);
    cr_assert(stub_check(1, stub_page(c, 1)));
    cr_assert(stub_check(2, stub_page(c, 2)));
    cr_assert_eq(lethe_page_soft_unmap(c->r, 7, 5), -ENOENT, "untouched page");
    cr_assert_eq(stub_park(c, 1, 5), 0);
    cr_assert_eq(lethe_page_soft_unmap(c->r, 2, 5), -EEXIST, "slot 5 still holds page 1");
    cr_assert(stub_check(2, stub_page(c, 2)), "a refused soft_unmap leaves the page mapped");
    cr_assert_eq(lethe_page_soft_unmap(c->r, 2, 4096), -EINVAL, "frame out of range");
    cr_assert_eq(lethe_page_map_back(c->r, 2, 5), -EEXIST, "page 2 is present");
    cr_assert(stub_check(1, lethe_region_slot(c->r, 5)), "slot 5 keeps its page");
    cr_assert(stub_check(2, stub_page(c, 2)));
    cr_assert_eq(lethe_page_map_back(c->r, 9, 6), -ENOENT, "slot 6 is empty");
    cr_assert_eq(lethe_page_drop_slot(c->r, 5), 0);
    cr_assert_eq(lethe_page_map_back(c->r, 9, 5), -ENOENT, "the dropped slot 5 is empty");
    cr_assert_eq(lethe_page_soft_unmap(c->r, 2, 5), 0, "the dropped slot is free again");
    cr_assert_eq(lethe_page_map_back(c->r, 2, 5), 0);
    cr_assert(stub_check(2, stub_page(c, 2)), "page 2 came back from slot 5");
    cr_assert_eq(lethe_page_map_back(c->r, 9, 5), -ENOENT, "map_back emptied slot 5");
    cr_assert_eq(lethe_page_soft_unmap(c->r, 2, 5), 0, "and left it free");
    cr_assert(stub_check(2, lethe_region_slot(c->r, 5)));
    cr_assert_eq(lethe_page_map_back(c->r, 2, 5), 0);
    /* batches answer per page, the refused page staying where it was */
    cr_assert(stub_check(3, stub_page(c, 3)));
    cr_assert(stub_check(4, stub_page(c, 4)));
    cr_assert_eq(stub_park(c, 3, 20), 0);
    uint64_t vpns[] = {2, 4}, frames[] = {20, 21};
    int status[2];
    cr_assert_eq(lethe_page_soft_unmap_batch_status(c->r, vpns, frames, 2, status), 1);
    cr_assert_eq(status[0], -EEXIST, "slot 20 holds page 3, got %d", status[0]);
    cr_assert_eq(status[1], 0);
    cr_assert(stub_check(2, stub_page(c, 2)));
    cr_assert(stub_check(3, lethe_region_slot(c->r, 20)), "slot 20 keeps page 3");
    cr_assert(stub_check(4, lethe_region_slot(c->r, 21)));
    cr_assert_eq(lethe_page_map_back(c->r, 4, 21), 0);
    stub_stop(c);
}

Test(fault_ops, soft_unmap_error_answers)
{
    check_soft_unmap_errors(false);
}

/* The copy fallback (Linux < 6.8) keeps slot occupancy itself; the answers must not differ. */
Test(fault_ops, soft_unmap_error_answers_in_copy_fallback)
{
    check_soft_unmap_errors(true);
}

Test(fault_ops, map_back_of_a_page_shared_with_a_forked_child_works)
{
    struct stub_core *c = start_thread_core(false, false);
    if (!lethe_region_has_move(c->r)) {
        stub_stop(c);
        cr_skip_test("no UFFDIO_MOVE");
    }
    for (uint64_t vpn = 0; vpn < 4; vpn++)
        cr_assert(stub_check(vpn, stub_page(c, vpn)));
    cr_assert_eq(stub_park(c, 1, 11), 0);
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    cr_assert_eq(waitpid(pid, NULL, 0), pid);
    /* both the region page and the slot page are no longer exclusive: MOVE says EBUSY and
     * the runtime makes them exclusive first */
    cr_assert_eq(stub_park(c, 2, 12), 0);
    cr_assert(stub_check(1, stub_page(c, 1)));
    cr_assert(stub_check(2, stub_page(c, 2)));
    stub_stop(c);
}

static bool resident(const void *page)
{
    unsigned char v = 0;
    return mincore((void *)page, LETHE_PAGE_SIZE, &v) == 0 && (v & 1);
}

Test(fault_ops, read_only_and_locked_pages_stay_and_come_back_by_copy)
{
    struct stub_core *c = start_thread_core(false, false);
    if (!lethe_region_has_move(c->r)) {
        stub_stop(c);
        cr_skip_test("no UFFDIO_MOVE: the copy fallback never moves pages");
    }
    for (uint64_t vpn = 0; vpn < 4; vpn++)
        cr_assert(stub_check(vpn, stub_page(c, vpn)));
    cr_assert_eq(stub_park(c, 1, 11), 0);
    char *base = stub_page(c, 0);
    cr_assert_eq(mprotect(base, 4 * LETHE_PAGE_SIZE, PROT_READ), 0);
    /* UFFDIO_MOVE refuses a read-only range both ways: the parked page is copied back in and
     * its slot emptied; a present page cannot be parked and stays */
    cr_assert(stub_check(1, stub_page(c, 1)), "the parked page reads back, read-only");
    cr_assert_eq(atomic_load(&c->map_backs), 1);
    /* the copy woke this thread before the handler emptied the slot: wait for the handler,
     * which holds the page's stub lock until map_back has returned */
    stub_lock(c, 1);
    stub_unlock(c, 1);
    cr_assert_not(resident(lethe_region_slot(c->r, 11)), "its slot was emptied");
    uint64_t faults = atomic_load(&c->faults);
    cr_assert_eq(stub_park(c, 0, 10), -EINVAL);
    cr_assert(stub_check(0, stub_page(c, 0)));
    cr_assert_eq(atomic_load(&c->faults), faults, "the page never left");
    cr_assert_eq(mprotect(base, 4 * LETHE_PAGE_SIZE, PROT_READ | PROT_WRITE), 0);
    cr_assert_eq(stub_park(c, 0, 10), 0, "writable again, it moves");
    cr_assert(stub_check(0, stub_page(c, 0)));
    /* locked: the same (the system call itself: ASan's mlock does nothing) */
    cr_assert_eq(syscall(SYS_mlock, stub_page(c, 3), LETHE_PAGE_SIZE), 0);
    cr_assert_eq(stub_park(c, 3, 13), -EINVAL);
    cr_assert(stub_check(3, stub_page(c, 3)));
    cr_assert_eq(syscall(SYS_munlock, stub_page(c, 3), LETHE_PAGE_SIZE), 0);
    cr_assert_eq(stub_park(c, 3, 13), 0);
    cr_assert(stub_check(3, stub_page(c, 3)));
    stub_stop(c);
}

static void check_dirty_scan(bool fb_move, bool fb_dirty)
{
    struct stub_core *c = start_thread_core(fb_move, fb_dirty);
    struct lethe_region *r = c->r;
    const uint64_t n = 300;
    for (uint64_t vpn = 0; vpn < n; vpn++)
        cr_assert(stub_check(vpn, stub_page(c, vpn)));
    uint64_t bm[(300 + 63) / 64];
    if (!lethe_region_has_dirty_tracking(r)) {
        cr_assert_eq(lethe_page_scan_dirty(r, 0, n + 10, (uint64_t[6]){0}), (int64_t)n,
                     "without tracking every present page scans as written");
        stub_stop(c);
        return;
    }
    cr_assert_eq(lethe_page_scan_dirty(r, 0, n, bm), 0, "fresh installs are clean");
    const uint64_t written[] = {0, 1, 63, 64, 65, 128, 200, 201, 202, 299};
    for (unsigned i = 0; i < sizeof(written) / sizeof(written[0]); i++)
        stub_page(c, written[i])[17] = 1;
    cr_assert_eq(lethe_page_scan_dirty(r, 0, n, bm), 10);
    for (uint64_t vpn = 0; vpn < n; vpn++) {
        bool want = false;
        for (unsigned i = 0; i < 10; i++)
            want |= written[i] == vpn;
        cr_assert_eq(!!(bm[vpn / 64] & (1ULL << (vpn % 64))), want, "page %llu",
                     (unsigned long long)vpn);
    }
    cr_assert_eq(lethe_page_scan_dirty(r, 0, n, bm), 0, "the scan re-armed the pages");
    stub_page(c, 64)[0] = 2;
    cr_assert_eq(lethe_page_scan_dirty(r, 60, 10, bm), 1, "sub-range scans are relative");
    cr_assert_eq(bm[0], 1u << 4);
    /* mapped back pages are clean; parked pages are not reported */
    cr_assert_eq(stub_park(c, 10, 10), 0);
    cr_assert_eq(lethe_page_scan_dirty(r, 0, n, bm), 0);
    cr_assert(stub_check(10, stub_page(c, 10)));
    cr_assert_eq(lethe_page_scan_dirty(r, 0, n, bm), 0, "map_back is write-clean");
    stub_page(c, 10)[1] = 3;
    cr_assert_eq(lethe_page_scan_dirty(r, 0, n, bm), 1);
    /* scanning holes plants nothing that would stop a later map_back or zero install */
    cr_assert_eq(lethe_page_scan_dirty(r, 1000, 2000, (uint64_t[32]){0}), 0);
    cr_assert_eq(lethe_page_install_zero(r, 1500), 0);
    stub_stop(c);
}

Test(fault_ops, dirty_scan_reports_exactly_the_written_pages)
{
    check_dirty_scan(false, false);
}

Test(fault_ops, dirty_scan_without_tracking_reports_every_present_page)
{
    check_dirty_scan(false, true);
    check_dirty_scan(true, false);
}

Test(fault_ops, drop_gives_pages_back_without_an_application_event)
{
    struct stub_core *c = start_thread_core(false, false);
    for (uint64_t vpn = 0; vpn < 600; vpn++)
        cr_assert(stub_check(vpn, stub_page(c, vpn)));
    cr_assert_eq(stub_park(c, 3, 40), 0, "a parked page inside the range is a hole there");
    stub_release(c, 2, 520); /* the core forgets the pages first, as lethe.c does */
    uint64_t releases = atomic_load(&c->release_calls);
    cr_assert_eq(lethe_page_drop(c->r, 2, 520), 0);
    usleep(10000);
    cr_assert_eq(atomic_load(&c->release_calls), releases, "no release() event for a drop");
    struct lethe_fault_stats st;
    lethe_region_get_stats(c->r, &st);
    if (lethe_region_has_move(c->r))
        cr_assert_eq(st.events, 0);
    uint64_t f = atomic_load(&c->faults);
    cr_assert(stub_check(2, stub_page(c, 2)), "refilled on the next touch");
    cr_assert(stub_check(521, stub_page(c, 521)));
    cr_assert(stub_check(522, stub_page(c, 522)), "the page after the range stays");
    cr_assert_eq(atomic_load(&c->faults), f + 2);
    cr_assert_eq(lethe_page_drop(c->r, 0, 0), -EINVAL);
    stub_stop(c);
}

Test(fault_ops, drop_in_copy_fallback_gives_pages_back)
{
    struct stub_core *c = start_thread_core(true, false);
    for (uint64_t vpn = 0; vpn < 8; vpn++)
        cr_assert(stub_check(vpn, stub_page(c, vpn)));
    stub_release(c, 2, 3);
    cr_assert_eq(lethe_page_drop(c->r, 2, 3), 0);
    uint64_t f = atomic_load(&c->faults);
    cr_assert(stub_check(3, stub_page(c, 3)));
    cr_assert_eq(atomic_load(&c->faults), f + 1);
    stub_stop(c);
}

Test(fault_ops, wake_rejects_ranges_outside_the_region)
{
    struct stub_core *c = start_thread_core(false, false);
    cr_assert_eq(lethe_page_wake(c->r, 0, 1), 0);
    cr_assert_eq(lethe_page_wake(c->r, lethe_region_pages(c->r) - 1, 2), -EINVAL);
    stub_stop(c);
}

/* With UFFDIO_MOVE the parking area is on a SIGBUS userfaultfd, so a touch of an empty slot
 * (a runtime bug) is caught, logged and aborted. The touch runs in a forked child that makes
 * its own region (a child of this process would get the parking area unregistered); the
 * test asserts how the child died and what it logged. The copy fallback's parking area is
 * plain memory with nothing to catch there: its guard is the slot bitmap (map_back of an
 * empty slot is -ENOENT), pinned down by soft_unmap_error_answers_in_copy_fallback. */
Test(fault_ops, touching_an_empty_parking_slot_aborts)
{
    struct stub_core *probe = start_thread_core(false, false);
    bool has_move = lethe_region_has_move(probe->r);
    stub_stop(probe);
    if (!has_move)
        cr_skip_test("no UFFDIO_MOVE: the copy fallback's parking area is plain memory");
    int logpipe[2];
    cr_assert_eq(pipe(logpipe), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(logpipe[0]);
        setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0});
        lethe_log_set_fd(logpipe[1]);
        lethe_log_set_level(LETHE_LOG_ERROR);
        struct lethe_region_params p = stub_params(LETHE_DELIVERY_THREAD, 1);
        struct stub_core *c = stub_start(&p);
        if (!c || !lethe_region_has_move(c->r))
            _exit(3);
        volatile char *slot = lethe_region_slot(c->r, 3);
        (void)*slot;
        _exit(4); /* the touch went unnoticed */
    }
    close(logpipe[1]);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    char log[4096];
    size_t len = 0;
    ssize_t got;
    while (len < sizeof(log) - 1 && (got = read(logpipe[0], log + len, sizeof(log) - 1 - len)) > 0)
        len += (size_t)got;
    log[len] = 0;
    close(logpipe[0]);
    cr_assert(WIFSIGNALED(status), "the child exited with %d instead of aborting",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    cr_assert_eq(WTERMSIG(status), SIGABRT, "killed by signal %d", WTERMSIG(status));
    cr_assert(strstr(log, "touch of parking slot 3") != NULL, "log: %s", log);
}
