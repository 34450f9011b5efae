/* test_core.c — the swapper end to end on the `local` transport: real userfaultfd faults
 * through the real runtime, in both delivery modes. Each test states one behaviour of the
 * fault paths, the extent calls, the application's own madvise/mremap, cache resizing, a
 * forked child and the failure reports. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "core_test.h"
#include "rdma/local.h"

#define MiB (1024UL * 1024UL)

static struct lethe *start(enum lethe_delivery d, enum lethe_reclaim r, uint64_t cache,
                           uint64_t region)
{
    struct lethe_config c = core_test_config(d, r, cache, region);
    struct lethe *l = NULL;
    int rc = lethe_start(&c, &l);
    cr_assert_eq(rc, 0, "lethe_start: %s", strerror(-rc));
    return l;
}

/* With thread delivery the faulting thread resumes as soon as its page is installed, a
 * moment before the vCPU counts it, and the rebalancer may still be evicting (a write-back's
 * slot is taken before its swap-out is counted): wait until the counters stop moving. */
static struct lethe_stats stats(struct lethe *l)
{
    struct lethe_stats s, t;
    lethe_get_stats(l, &s);
    for (int i = 0; i < 100; i++) {
        usleep(2000);
        lethe_get_stats(l, &t);
        if (t.faults == s.faults && t.demand_zero == s.demand_zero && t.swap_ins == s.swap_ins &&
            t.soft_hits == s.soft_hits && t.released_pages == s.released_pages &&
            t.active_pages == s.active_pages && t.free_frames == s.free_frames &&
            t.swap_outs == s.swap_outs && t.remote_slots_used == s.remote_slots_used)
            break;
        s = t;
    }
    return t;
}

static void fresh_extents_read_as_zeros(enum lethe_delivery d)
{
    struct lethe *l = start(d, LETHE_RECLAIM_REBALANCER, 1 * MiB, 16 * MiB);
    char *p = lethe_extent_alloc(l, 64 * PG, 0);
    cr_assert_not_null(p);
    cr_assert(lethe_in_region(l, p));
    for (unsigned i = 0; i < 64; i++)
        cr_assert(core_test_is_zero(p + i * PG), "page %u", i);
    struct lethe_stats s = stats(l);
    /* the cache is nearly empty: first touches fill the rest of their blocks */
    cr_assert_geq(s.demand_zero + s.prefilled, 64,
                  "%lu demand-zero faults, %lu pages filled around", (unsigned long)s.demand_zero,
                  (unsigned long)s.prefilled);
    cr_assert_lt(s.demand_zero, 64, "fault-around spared faults (%lu)",
                 (unsigned long)s.demand_zero);
    cr_assert_eq(s.swap_ins, 0);
    cr_assert_geq(s.faults, s.demand_zero);
    cr_assert_eq(s.active_pages + s.inactive_pages + s.free_frames, s.frames);
    lethe_stop(l);
}

static unsigned state_of(struct lethe *l, const void *addr);

/* The page's state once no vCPU is installing it (thread delivery resumes the faulting
 * thread a moment before the vCPU publishes the page). */
static unsigned settled_state(struct lethe *l, const void *addr)
{
    unsigned st = state_of(l, addr);
    for (int i = 0; i < 10000 && st == LETHE_PS_IN; i++) {
        usleep(100);
        st = state_of(l, addr);
    }
    return st;
}

/* Fault-around, deterministic: one vCPU, signal delivery (the access returns once served). */
static struct lethe *start_around(unsigned around, uint64_t cache)
{
    struct lethe_config c =
        core_test_config(LETHE_DELIVERY_SIGNAL, LETHE_RECLAIM_DIRECT, cache, 8 * MiB);
    c.vcpus = 1;
    c.shards = 2;
    c.fault_around = around;
    struct lethe *l = NULL;
    cr_assert_eq(lethe_start(&c, &l), 0);
    return l;
}

/* An extent of 64 pages starting on a 16-page block (extents are page-aligned only). */
static char *block_aligned(struct lethe *l, char **extent)
{
    *extent = lethe_extent_alloc(l, 80 * PG, 0);
    cr_assert_not_null(*extent);
    uint64_t vpn = lethe_region_vpn(l->region, *extent);
    return *extent + ((16 - vpn % 16) % 16) * PG;
}

Test(core, a_first_touch_fills_the_rest_of_its_block_while_frames_are_plentiful)
{
    struct lethe *l = start_around(16, 1 * MiB);
    char *ext, *p = block_aligned(l, &ext);
    struct lethe_stats before = stats(l);
    p[5 * PG] = 1; /* page 5 of the first block: pages 6..15 come with it, 0..4 do not */
    struct lethe_stats s = stats(l);
    cr_assert_eq(s.demand_zero - before.demand_zero, 1);
    cr_assert_eq(s.prefilled - before.prefilled, 10);
    for (unsigned i = 6; i < 16; i++)
        cr_assert_eq(state_of(l, p + i * PG), LETHE_PS_MAPPED, "page %u", i);
    for (unsigned i = 0; i < 5; i++)
        cr_assert_eq(state_of(l, p + i * PG), LETHE_PS_UNTOUCHED, "page %u", i);
    cr_assert_eq(state_of(l, p + 16 * PG), LETHE_PS_UNTOUCHED, "the next block is not touched");
    /* the filled pages read as zeros and take writes without a fault */
    for (unsigned i = 6; i < 16; i++)
        cr_assert(core_test_is_zero(p + i * PG), "page %u", i);
    for (unsigned i = 6; i < 16; i++)
        core_test_fill(p + i * PG, i, 3);
    struct lethe_stats t = stats(l);
    cr_assert_eq(t.faults, s.faults, "no fault on a filled page");
    for (unsigned i = 6; i < 16; i++)
        cr_assert_eq(core_test_check(p + i * PG, i, 3), 0, "page %u", i);
    cr_assert_eq(t.active_pages + t.inactive_pages + t.free_frames, t.frames);
    /* a block already partly touched fills only up to the first touched page */
    p[16 * PG + 9] = 1; /* page 16: fills 17..31 */
    p[40 * PG] = 1;     /* page 40: fills 41..47 */
    p[32 * PG] = 1;     /* page 32: fills 33..39, stops at 40 */
    struct lethe_stats u = stats(l);
    cr_assert_eq(u.demand_zero - t.demand_zero, 3);
    cr_assert_eq(u.prefilled - t.prefilled, 15 + 7 + 7);
    lethe_extent_free(l, ext, 80 * PG);
    struct lethe_stats v = stats(l);
    cr_assert_eq(v.free_frames, v.frames, "freeing the extent gave back every filled page");
    lethe_stop(l);
}

Test(core, fault_around_stops_when_frames_run_short_and_when_it_is_off)
{
    /* 16 frames, reserve 20% (3), batch 4: plentiful means at least 2 * 3 + 4 + 15 free */
    struct lethe *l = start_around(16, 16 * PG);
    char *ext, *p = block_aligned(l, &ext);
    p[0] = 1;
    struct lethe_stats s = stats(l);
    cr_assert_eq(s.prefilled, 0, "16 frames are not plentiful: %lu filled",
                 (unsigned long)s.prefilled);
    lethe_stop(l);

    l = start_around(0, 1 * MiB);
    p = block_aligned(l, &ext);
    for (unsigned i = 0; i < 32; i++)
        p[i * PG] = 1;
    s = stats(l);
    cr_assert_eq(s.prefilled, 0);
    cr_assert_eq(s.demand_zero, 32);
    lethe_stop(l);
}

Test(core, filled_pages_never_written_are_discarded_at_eviction)
{
    /* 1 MiB cache; touch one page per block of a 4 MiB extent, then everything: the filled
     * pages that were never written leave as fresh discards, and the rest reads back intact */
    struct lethe *l = start_around(16, 1 * MiB);
    char *ext = lethe_extent_alloc(l, 1024 * PG, 0);
    cr_assert_not_null(ext);
    for (unsigned i = 0; i < 1024; i += 16)
        ext[i * PG] = (char)(i / 16 + 1);
    for (unsigned i = 0; i < 1024; i += 16)
        cr_assert_eq(ext[i * PG], (char)(i / 16 + 1), "page %u", i);
    for (unsigned i = 0; i < 1024; i++)
        if (i % 16)
            cr_assert(core_test_is_zero(ext + i * PG), "page %u", i);
    struct lethe_stats s = stats(l);
    cr_assert_gt(s.prefilled, 0);
    cr_assert_gt(s.fresh_discards, 0, "untouched filled pages were discarded, not written");
    cr_assert_leq(s.swap_outs, 64 + s.late_writes, "only written pages went out (%lu)",
                  (unsigned long)s.swap_outs);
    lethe_stop(l);
}

Test(core, fresh_extents_read_as_zeros_thread_delivery)
{
    fresh_extents_read_as_zeros(LETHE_DELIVERY_THREAD);
}

Test(core, fresh_extents_read_as_zeros_signal_delivery)
{
    fresh_extents_read_as_zeros(LETHE_DELIVERY_SIGNAL);
}

static void round_trip(enum lethe_delivery d, enum lethe_reclaim r)
{
    struct lethe *l = start(d, r, 1 * MiB, 32 * MiB);
    const unsigned n = 1024; /* 4x the cache */
    char *p = lethe_extent_alloc(l, n * PG, 0);
    cr_assert_not_null(p);
    for (unsigned i = 0; i < n; i++)
        core_test_fill(p + i * PG, i, 1);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(core_test_check(p + i * PG, i, 1), 0, "page %u", i);
    struct lethe_stats s = stats(l);
    cr_assert_geq(s.swap_outs, n - 256, "what did not fit was written back (%lu)",
                  (unsigned long)s.swap_outs);
    cr_assert_geq(s.swap_ins, n - 256, "and read back (%lu)", (unsigned long)s.swap_ins);
    cr_assert_leq(s.active_pages + s.inactive_pages, s.frames);
    cr_assert_leq(s.remote_slots_used, n, "at most one slot per page");
    /* Each page is written once, so it is written back once — plus, at most, once more for a
     * write caught late (a late write on a fresh page is its first write-back). */
    cr_assert(s.remote_slots_used <= s.swap_outs &&
                  s.swap_outs <= s.remote_slots_used + s.late_writes,
              "%lu slots, %lu swap-outs, %lu late writes", (unsigned long)s.remote_slots_used,
              (unsigned long)s.swap_outs, (unsigned long)s.late_writes);
    lethe_stop(l);
}

Test(core, pages_survive_eviction_and_come_back_thread_rebalancer)
{
    round_trip(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_REBALANCER);
}

Test(core, pages_survive_eviction_and_come_back_signal_direct)
{
    round_trip(LETHE_DELIVERY_SIGNAL, LETHE_RECLAIM_DIRECT);
}

/* One vCPU, one shard, direct reclaim, signal delivery (the faulting thread serves its own
 * fault, so everything is done when the access returns): the lists are deterministic. */
/* 16 frames, scripted list states: with parking = move a refill demotes one batch (under
 * batch parking it takes 64 pages, the whole cache here; test_evict_classes scripts that) */
static struct lethe *start_small(enum lethe_delivery d)
{
    struct lethe_config c = core_test_config(d, LETHE_RECLAIM_DIRECT, 16 * PG, 4 * MiB);
    c.parking = LETHE_PARKING_MOVE;
    c.vcpus = 1;
    c.shards = 1;
    c.reclaim_batch = 4;
    c.inactive_pct = 30;
    struct lethe *l = NULL;
    cr_assert_eq(lethe_start(&c, &l), 0);
    return l;
}

static unsigned state_of(struct lethe *l, const void *addr)
{
    return lethe_pte_state(lethe_pte_load(&l->pt[lethe_region_vpn(l->region, addr)]));
}

Test(core, a_parked_page_touched_again_is_a_soft_hit_and_goes_back_to_the_active_list)
{
    struct lethe *l = start_small(LETHE_DELIVERY_SIGNAL);
    char *p = lethe_extent_alloc(l, 17 * PG, 0);
    for (unsigned i = 0; i < 16; i++)
        core_test_fill(p + i * PG, i, 7);
    /* page 16 needs a frame: pages 0..7 are demoted, 0..3 evicted, 4..7 stay parked */
    core_test_fill(p + 16 * PG, 16, 7);
    cr_assert_eq(state_of(l, p + 0 * PG), LETHE_PS_REMOTE);
    cr_assert_eq(state_of(l, p + 5 * PG), LETHE_PS_PARKED);
    struct lethe_stats before = stats(l);
    cr_assert_eq(before.inactive_pages, 4);
    cr_assert_eq(core_test_check(p + 5 * PG, 5, 7), 0, "the parked content comes back");
    struct lethe_stats s = stats(l);
    cr_assert_eq(s.soft_hits - before.soft_hits, 1);
    cr_assert_eq(s.promotions - before.promotions, 1);
    cr_assert_eq(s.swap_ins, before.swap_ins, "a soft hit reads nothing remote");
    cr_assert_eq(s.inactive_pages, 3);
    uint64_t w = lethe_pte_load(&l->pt[lethe_region_vpn(l->region, p + 5 * PG)]);
    cr_assert_eq(lethe_pte_state(w), LETHE_PS_MAPPED);
    cr_assert(w & LETHE_PTE_REF, "marked referenced");
    cr_assert(w & LETHE_PTE_DIRTY, "the dirty bit read at demotion survives the round trip");
    cr_assert(w & LETHE_PTE_UNPROT, "mapped back by a move, without write protection");
    cr_assert_eq(lethe_frame_list(&l->frames[lethe_pte_frame(w)]), LETHE_FL_ACTIVE);
    lethe_stop(l);
}

Test(core, a_clean_page_written_after_a_soft_hit_is_written_back)
{
    /* Page 5 goes out and comes back clean (a valid remote copy), is parked and mapped back
     * unprotected, then written: no dirty bit can show that write; eviction's content check
     * must, or the remote copy would be stale. */
    struct lethe *l = start_small(LETHE_DELIVERY_SIGNAL);
    char *p = lethe_extent_alloc(l, 128 * PG, 0);
    core_test_fill(p + 5 * PG, 5, 1);
    for (unsigned i = 32; i < 64; i++)
        (void)*(volatile char *)(p + i * PG);
    cr_assert_eq(state_of(l, p + 5 * PG), LETHE_PS_REMOTE);
    cr_assert_eq(core_test_check(p + 5 * PG, 5, 1), 0, "read back");
    unsigned next = 64;
    while (state_of(l, p + 5 * PG) != LETHE_PS_PARKED && next < 128)
        (void)*(volatile char *)(p + next++ * PG);
    cr_assert_eq(state_of(l, p + 5 * PG), LETHE_PS_PARKED);
    (void)*(volatile char *)(p + 5 * PG); /* soft hit */
    uint64_t w = lethe_pte_load(&l->pt[lethe_region_vpn(l->region, p + 5 * PG)]);
    cr_assert_eq(lethe_pte_state(w), LETHE_PS_MAPPED);
    cr_assert((w & LETHE_PTE_RVALID) && (w & LETHE_PTE_UNPROT) && !(w & LETHE_PTE_DIRTY));
    core_test_fill(p + 5 * PG, 5, 2);
    while (state_of(l, p + 5 * PG) != LETHE_PS_REMOTE && next < 128)
        (void)*(volatile char *)(p + next++ * PG);
    cr_assert_eq(state_of(l, p + 5 * PG), LETHE_PS_REMOTE);
    cr_assert_eq(core_test_check(p + 5 * PG, 5, 2), 0, "the write reached the remote copy");
    lethe_stop(l);
}

Test(core, a_referenced_page_gets_a_second_chance_at_refill)
{
    struct lethe *l = start_small(LETHE_DELIVERY_SIGNAL);
    char *p = lethe_extent_alloc(l, 64 * PG, 0);
    for (unsigned i = 0; i < 17; i++)
        (void)*(volatile char *)(p + i * PG);
    /* 4..7 parked; touch 4: mapped back, REF, active head */
    (void)*(volatile char *)(p + 4 * PG);
    cr_assert_eq(state_of(l, p + 4 * PG), LETHE_PS_MAPPED);
    /* Enough new pages to cycle every other page of the first 17 out: page 4 is passed over
     * once (REF cleared) and survives while its contemporaries are evicted. */
    for (unsigned i = 17; i < 30; i++)
        (void)*(volatile char *)(p + i * PG);
    cr_assert_eq(state_of(l, p + 5 * PG), LETHE_PS_UNTOUCHED, "fresh page 5 was discarded");
    cr_assert_eq(state_of(l, p + 8 * PG), LETHE_PS_UNTOUCHED);
    unsigned st = state_of(l, p + 4 * PG);
    cr_assert(st == LETHE_PS_MAPPED || st == LETHE_PS_PARKED, "page 4 is still resident (%u)", st);
    cr_assert_not(lethe_pte_load(&l->pt[lethe_region_vpn(l->region, p + 4 * PG)]) & LETHE_PTE_REF,
                  "its second chance is used up");
    lethe_stop(l);
}

/* A FUTEX_WAIT that expects a value the word does not hold: EAGAIN when the kernel could
 * read the word, EFAULT when its page is missing (signal delivery: the kernel cannot fault
 * it in). */
static int futex_probe(const void *word)
{
    uint32_t v = *(const volatile uint32_t *)word;
    long rc = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, v + 1, NULL, NULL, 0);
    return rc == 0 ? 0 : errno;
}

static int futex_probe_cold(const void *word)
{
    long rc = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 12345u, NULL, NULL, 0);
    return rc == 0 ? 0 : errno;
}

Test(core, a_pinned_page_stays_mapped_for_the_kernel_until_unpinned)
{
    struct lethe *l = start_small(LETHE_DELIVERY_SIGNAL);
    char *p = lethe_extent_alloc(l, 128 * PG, 0);
    char *word = p + 3 * PG + 64;
    int t = lethe_pin(l, word);
    cr_assert_geq(t, 0, "pinned: %d", t);
    cr_assert_eq(state_of(l, word), LETHE_PS_MAPPED, "the pin made the untouched page present");
    /* 60 other pages through a 16-frame cache: every other page is demoted and evicted */
    for (unsigned i = 4; i < 64; i++)
        core_test_fill(p + i * PG, i, 1);
    cr_assert_eq(state_of(l, p + 4 * PG), LETHE_PS_REMOTE);
    cr_assert_eq(state_of(l, word), LETHE_PS_MAPPED, "the pinned page was never demoted");
    cr_assert_eq(futex_probe_cold(word), EAGAIN, "the kernel reads the pinned word");
    lethe_unpin(l, t);
    for (unsigned i = 64; i < 128; i++)
        core_test_fill(p + i * PG, i, 1);
    cr_assert_neq(state_of(l, word), LETHE_PS_MAPPED, "unpinned, it goes out like the others");
    cr_assert_eq(futex_probe_cold(word), EFAULT, "and the kernel cannot read it");
    cr_assert_eq(futex_probe(word), EAGAIN, "until a user-mode access brings it back");
    for (unsigned i = 4; i < 128; i++)
        cr_assert_eq(core_test_check(p + i * PG, i, 1), 0, "page %u", i);
    lethe_stop(l);
}

Test(core, pins_nest_and_have_a_bounded_table)
{
    struct lethe *l = start_small(LETHE_DELIVERY_SIGNAL);
    char *p = lethe_extent_alloc(l, 64 * PG, 0);
    static int tokens[LETHE_PIN_SLOTS];
    int outside = 0;
    cr_assert_eq(lethe_pin(l, &outside), -1, "outside the region: nothing to hold");
    for (unsigned i = 0; i < LETHE_PIN_SLOTS; i++) {
        tokens[i] = lethe_pin(l, p + (i % 2) * PG);
        cr_assert_geq(tokens[i], 0, "pin %u: %d", i, tokens[i]);
    }
    cr_assert_eq(lethe_pin(l, p + 2 * PG), -ENOSPC, "the table is full");
    cr_assert_eq(state_of(l, p + 2 * PG), LETHE_PS_MAPPED, "the page was made present anyway");
    for (unsigned i = 0; i < LETHE_PIN_SLOTS - 1; i++)
        lethe_unpin(l, tokens[i]);
    /* page 1 is still held once (the last pin), page 0 is not */
    for (unsigned i = 3; i < 64; i++)
        core_test_fill(p + i * PG, i, 1);
    cr_assert_eq(state_of(l, p + 1 * PG), LETHE_PS_MAPPED);
    cr_assert_neq(state_of(l, p + 0 * PG), LETHE_PS_MAPPED);
    lethe_unpin(l, tokens[LETHE_PIN_SLOTS - 1]);
    cr_assert_geq(lethe_pin(l, p + 2 * PG), 0, "slots are reused");
    lethe_stop(l);
}

Test(core, extent_free_gives_back_frames_and_remote_slots)
{
    struct lethe *l = start(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT, 1 * MiB, 32 * MiB);
    const unsigned n = 768;
    char *p = lethe_extent_alloc(l, n * PG, 0);
    for (unsigned i = 0; i < n; i++)
        core_test_fill(p + i * PG, i, 3);
    struct lethe_stats s = stats(l);
    cr_assert_gt(s.remote_slots_used, 0);
    cr_assert_gt(s.remote_pages, 0);
    lethe_extent_free(l, p, n * PG);
    s = stats(l);
    cr_assert_eq(s.remote_slots_used, 0);
    cr_assert_eq(s.remote_pages, 0);
    cr_assert_eq(s.free_frames, s.frames, "every frame is free again");
    cr_assert_eq(s.active_pages + s.inactive_pages, 0);
    cr_assert_eq(s.released_pages, n);
    /* the same range, allocated again, reads as zeros */
    char *q = lethe_extent_alloc(l, n * PG, 0);
    cr_assert_eq(q, p, "first fit returns the same range");
    for (unsigned i = 0; i < n; i++)
        cr_assert(core_test_is_zero(q + i * PG), "page %u", i);
    lethe_stop(l);
}

Test(core, purge_discards_the_content_and_keeps_the_extent_usable)
{
    struct lethe *l = start(LETHE_DELIVERY_SIGNAL, LETHE_RECLAIM_REBALANCER, 1 * MiB, 32 * MiB);
    const unsigned n = 512;
    char *p = lethe_extent_alloc(l, n * PG, 0);
    for (unsigned i = 0; i < n; i++)
        core_test_fill(p + i * PG, i, 9);
    lethe_extent_purge(l, p, n * PG);
    for (unsigned i = 0; i < n; i++)
        cr_assert(core_test_is_zero(p + i * PG), "page %u", i);
    core_test_fill(p, 0, 10);
    cr_assert_eq(core_test_check(p, 0, 10), 0);
    lethe_stop(l);
}

Test(core, the_applications_madvise_dontneed_releases_pages_wherever_they_are)
{
    /* the runtime hears of a raw madvise only when subscribed to the application's events,
     * which it is with parking = move; batch parking leaves them to liblethe.so's wrapper */
    struct lethe_config c =
        core_test_config(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT, 1 * MiB, 32 * MiB);
    c.parking = LETHE_PARKING_MOVE;
    struct lethe *l = NULL;
    cr_assert_eq(lethe_start(&c, &l), 0);
    const unsigned n = 768; /* some mapped, some parked, most remote */
    char *p = lethe_extent_alloc(l, n * PG, 0);
    for (unsigned i = 0; i < n; i++)
        core_test_fill(p + i * PG, i, 4);
    cr_assert_eq(madvise(p, n * PG, MADV_DONTNEED), 0);
    /* madvise returns once the runtime has read the event, maybe before release() is done
     * with the range: give it that moment. */
    usleep(100000);
    for (unsigned i = 0; i < n; i++)
        cr_assert(core_test_is_zero(p + i * PG), "page %u", i);
    struct lethe_stats s = stats(l);
    cr_assert_geq(s.released_pages, n, "released %lu of %u", s.released_pages, n);
    cr_assert_eq(s.remote_slots_used, 0, "no slot outlives its page");
    lethe_stop(l);
}

static void zapped_behind_our_back(enum lethe_delivery d)
{
    /* Batch parking: pages zapped by a raw madvise the swapper does not hear of, then
     * demoted. The capture finds nothing mapped: under thread delivery its own fault is
     * answered with a zero page (it must not wait for itself), under signal delivery it
     * fails with EFAULT. Either way the demotion finishes and the pages read as zeros, what
     * the kernel's zap left. */
    struct lethe_config c = core_test_config(d, LETHE_RECLAIM_DIRECT, 1 * MiB, 32 * MiB);
    c.vcpus = 2;
    struct lethe *l = NULL;
    cr_assert_eq(lethe_start(&c, &l), 0);
    if (!strstr(lethe_paths(l), "parking=batch")) {
        lethe_stop(l);
        cr_skip_test("no batch parking on this kernel (process_madvise(MADV_DONTNEED))");
    }
    const unsigned n = 64, more = 1024;
    char *p = lethe_extent_alloc(l, (n + more) * PG, 0);
    for (unsigned i = 0; i < n; i++)
        core_test_fill(p + i * PG, i, 7);
    cr_assert_eq(syscall(SYS_madvise, p, n * PG, MADV_DONTNEED), 0);
    for (unsigned i = n; i < n + more; i++) /* 4 MiB through a 1 MiB cache: demotes 0..63 */
        core_test_fill(p + i * PG, i, 7);
    for (unsigned i = 0; i < n; i++)
        cr_assert(core_test_is_zero(p + i * PG), "page %u", i);
    for (unsigned i = n; i < n + more; i++)
        cr_assert_eq(core_test_check(p + i * PG, i, 7), 0, "page %u", i);
    lethe_stop(l);
}

Test(core, a_page_zapped_behind_the_swappers_back_does_not_stop_demotion_thread_delivery,
     .timeout = 60)
{
    zapped_behind_our_back(LETHE_DELIVERY_THREAD);
}

Test(core, a_page_zapped_behind_the_swappers_back_does_not_stop_demotion_signal_delivery,
     .timeout = 60)
{
    zapped_behind_our_back(LETHE_DELIVERY_SIGNAL);
}

Test(core, mremap_within_the_region_moves_the_page_state_with_the_pages)
{
    struct lethe *l = start(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT, 1 * MiB, 32 * MiB);
    const unsigned n = 512;
    char *p = lethe_extent_alloc(l, n * PG, 0);
    char *q = lethe_extent_alloc(l, n * PG, 0);
    for (unsigned i = 0; i < n; i++)
        core_test_fill(p + i * PG, i, 5);
    void *m = mremap(p, n * PG, n * PG, MREMAP_MAYMOVE | MREMAP_FIXED, q);
    cr_assert_eq(m, (void *)q, "mremap: %s", strerror(errno));
    /* The runtime calls remap() once it has read the event; give it that moment (faults on
     * the destination before remap() has run would be served as untouched pages). */
    usleep(100000);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(core_test_check(q + i * PG, i, 5), 0, "page %u", i);
    lethe_stop(l);
}

Test(core, the_cache_grows_and_shrinks_at_run_time_without_losing_pages)
{
    struct lethe *l = start(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_REBALANCER, 1 * MiB, 32 * MiB);
    /* 2.7x the cache; fits the grown cache (1024 frames) with its reserve (at most 20%: 204)
     * and the pages fault-around may fill past the extent's end (at most 63) */
    const unsigned n = 700;
    char *p = lethe_extent_alloc(l, n * PG, 0);
    for (unsigned i = 0; i < n; i++)
        core_test_fill(p + i * PG, i, 1);
    cr_assert_eq(lethe_set_cache_size(l, 5 * MiB), -EINVAL, "beyond 4x the initial cache");
    cr_assert_eq(lethe_set_cache_size(l, 4 * MiB), 0);
    struct lethe_stats s = stats(l);
    cr_assert_eq(s.frames, 1024);
    /* a rebalancer cycle that measured its deficit before the growth may still be evicting:
     * let two cycles pass */
    for (int i = 0; i < 5000 && stats(l).rebalancer_cycles < s.rebalancer_cycles + 2; i++)
        usleep(2000);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(core_test_check(p + i * PG, i, 1), 0, "page %u", i);
    /* everything fits now: every page is mapped, so reading them again cannot fault (the
     * page table says so directly; a counter snapshot can miss a count a descheduled vCPU
     * has yet to add, and a page stays IN for a moment after its thread resumed) */
    for (unsigned i = 0; i < n; i++) {
        unsigned st = settled_state(l, p + i * PG);
        cr_assert_eq(st, LETHE_PS_MAPPED, "page %u is resident (state %u)", i, st);
    }
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(core_test_check(p + i * PG, i, 1), 0, "page %u", i);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(settled_state(l, p + i * PG), LETHE_PS_MAPPED, "page %u stayed", i);

    cr_assert_eq(lethe_set_cache_size(l, 512 * 1024), 0);
    s = stats(l);
    cr_assert_eq(s.frames, 128);
    cr_assert_leq(s.active_pages + s.inactive_pages + s.free_frames, 128,
                  "retired frames hold nothing");
    for (unsigned i = 0; i < n; i++)
        core_test_fill(p + i * PG, i, 2);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(core_test_check(p + i * PG, i, 2), 0, "page %u", i);
    s = stats(l);
    cr_assert_leq(s.active_pages + s.inactive_pages, 128);
    cr_assert_eq(lethe_set_cache_size(l, 1 * MiB), 0);
    cr_assert_eq(stats(l).frames, 256);
    cr_assert_eq(lethe_set_cache_size(l, 8 * PG), -EINVAL, "below the minimum");
    lethe_stop(l);
}

/* Pages out at the fork are read from the parent's slots, which the parent leaves as they were
 * while the child may read them: its own later writes and evictions go to fresh slots. */
static int child_checks(char *p, unsigned n, uint64_t version)
{
    for (unsigned i = 0; i < n; i++)
        if (core_test_check(p + i * PG, i, version) != 0)
            return 10 + (int)i;
    return 0;
}

Test(core, a_forked_child_reads_every_page_as_of_the_fork)
{
    struct lethe *l = start_small(LETHE_DELIVERY_SIGNAL);
    char *p = lethe_extent_alloc(l, 17 * PG, 0);
    for (unsigned i = 0; i < 17; i++)
        core_test_fill(p + i * PG, i, 11);
    /* 0..3 remote, 4..7 parked, 8..16 mapped */
    cr_assert_eq(state_of(l, p + 1 * PG), LETHE_PS_REMOTE);
    cr_assert_eq(state_of(l, p + 6 * PG), LETHE_PS_PARKED);
    cr_assert_eq(state_of(l, p + 9 * PG), LETHE_PS_MAPPED);
    int go[2];
    cr_assert_eq(pipe(go), 0);
    fflush(NULL);
    pid_t c = fork();
    if (c == 0) {
        char b;
        close(go[1]);
        if (read(go[0], &b, 1) != 0) /* wait until the parent has rewritten everything */
            _exit(2);
        _exit(child_checks(p, 17, 11));
    }
    close(go[0]);
    for (unsigned round = 12; round < 15; round++) /* written back, swapped in, again */
        for (unsigned i = 0; i < 17; i++)
            core_test_fill(p + i * PG, i, round);
    close(go[1]);
    int status;
    cr_assert_eq(waitpid(c, &status, 0), c);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    cr_assert_eq(child_checks(p, 17, 14), 0, "the parent's own content");
    lethe_fork_reap(l);
    fflush(NULL);
    c = fork();
    if (c == 0)
        _exit(child_checks(p, 17, 14));
    cr_assert_eq(waitpid(c, &status, 0), c);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "second child status %#x", status);
    lethe_stop(l);
}

/* Runs `body` in a child process with stderr captured; returns the child's wait status. */
static int in_child(void (*body)(void), char *log, size_t len)
{
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    fflush(NULL);
    pid_t c = fork();
    if (c == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        alarm(20);
        body();
        _exit(0);
    }
    close(pipefd[1]);
    size_t n = 0;
    ssize_t got;
    while (n < len - 1 && (got = read(pipefd[0], log + n, len - 1 - n)) > 0)
        n += (size_t)got;
    log[n] = '\0';
    close(pipefd[0]);
    int status;
    waitpid(c, &status, 0);
    return status;
}

static void read_failure_body(void)
{
    struct lethe *l = start(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT, 256 * 1024, 8 * MiB);
    char *p = lethe_extent_alloc(l, 256 * PG, 0);
    for (unsigned i = 0; i < 256; i++)
        core_test_fill(p + i * PG, i, 1);
    lethe_local_inject_failure(l->transport, LETHE_LOCAL_FAIL_READ);
    (void)*(volatile char *)p; /* page 0 is remote by now */
}

Test(core, a_page_that_cannot_be_read_is_reported_and_kills_the_process)
{
    char log[8192];
    int status = in_child(read_failure_body, log, sizeof(log));
    cr_assert_not(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    cr_assert(!WIFSIGNALED(status) || WTERMSIG(status) != SIGALRM, "it must not hang");
    cr_assert_not_null(strstr(log, "(vpn "), "log: %s", log);
    cr_assert_not_null(strstr(log, "cannot read from local: injected failure reading slot"),
                       "log: %s", log);
}

static void write_failure_body(void)
{
    struct lethe *l = start(LETHE_DELIVERY_SIGNAL, LETHE_RECLAIM_DIRECT, 256 * 1024, 8 * MiB);
    lethe_local_inject_failure(l->transport, LETHE_LOCAL_FAIL_WRITE);
    char *p = lethe_extent_alloc(l, 256 * PG, 0);
    for (unsigned i = 0; i < 256; i++)
        core_test_fill(p + i * PG, i, 1);
}

Test(core, a_page_that_cannot_be_written_back_is_reported_and_kills_the_process)
{
    char log[8192];
    int status = in_child(write_failure_body, log, sizeof(log));
    cr_assert_not(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    cr_assert(!WIFSIGNALED(status) || WTERMSIG(status) != SIGALRM, "it must not hang");
    cr_assert_not_null(strstr(log, "cannot write to local: injected failure writing slot"),
                       "log: %s", log);
}

/* Prints to stderr the line the swapper must log when page p (remote by now) is read back from
 * a remote copy that does not match its checksum; the test looks for it after "EXPECT: ". */
static void expect_mismatch(struct lethe *l, char *p, uint64_t slot)
{
    dprintf(2,
            "EXPECT: page 0x%llx (vpn %llu): checksum mismatch reading slot %llu from local: "
            "remote copy corrupted or stale\n",
            (unsigned long long)(uintptr_t)p, (unsigned long long)lethe_region_vpn(l->region, p),
            (unsigned long long)slot);
}

static void corrupt_body(void)
{
    struct lethe *l = start(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT, 256 * 1024, 8 * MiB);
    char *p = lethe_extent_alloc(l, 256 * PG, 0);
    for (unsigned i = 0; i < 256; i++)
        core_test_fill(p + i * PG, i, 1);
    struct lethe_pte *e = &l->pt[lethe_region_vpn(l->region, p)];
    if (lethe_pte_state(lethe_pte_load(e)) != LETHE_PS_REMOTE)
        _exit(3);
    uint64_t slot = lethe_pte_slot(e);
    unsigned char *remote = lethe_local_slot_memory(l->transport, slot);
    /* the remote copy must be intact before we break it */
    if (!remote || core_test_check(remote, 0, 1) != 0)
        _exit(4);
    remote[1000] ^= 0x20; /* one bit */
    expect_mismatch(l, p, slot);
    (void)*(volatile char *)p;
    _exit(core_test_check(p, 0, 1) == 0 ? 5 : 6); /* served at all: the check missed it */
}

/* The log a child wrote holds the line it announced after "EXPECT: ", logged by the swapper. */
static void assert_logged_as_announced(const char *log)
{
    const char *ann = strstr(log, "EXPECT: ");
    cr_assert_not_null(ann, "log: %s", log);
    ann += strlen("EXPECT: ");
    size_t len = strcspn(ann, "\n");
    char want[512];
    cr_assert_lt(len, sizeof(want));
    memcpy(want, ann, len);
    want[len] = '\0';
    const char *hit = strstr(ann + len, want);
    cr_assert_not_null(hit, "expected \"%s\" in the log: %s", want, log);
    const char *line = hit;
    while (line > log && line[-1] != '\n')
        line--;
    cr_assert_not_null(memmem(line, (size_t)(hit - line), " error: ", 8),
                       "logged at error level: %.*s", (int)(strcspn(line, "\n")), line);
}

Test(core, a_corrupted_remote_copy_is_detected_at_swap_in_and_kills_the_process)
{
    char log[8192];
    int status = in_child(corrupt_body, log, sizeof(log));
    cr_assert_not(WIFEXITED(status), "status %#x (exit 3/4: set-up failed, 5/6: page served)",
                  status);
    cr_assert(!WIFSIGNALED(status) || WTERMSIG(status) != SIGALRM, "it must not hang");
    assert_logged_as_announced(log);
}

static void stale_body(void)
{
    struct lethe *l = start(LETHE_DELIVERY_SIGNAL, LETHE_RECLAIM_DIRECT, 256 * 1024, 8 * MiB);
    char *p = lethe_extent_alloc(l, 256 * PG, 0);
    for (unsigned i = 0; i < 256; i++)
        core_test_fill(p + i * PG, i, 1);
    struct lethe_pte *e = &l->pt[lethe_region_vpn(l->region, p)];
    uint64_t slot = lethe_pte_slot(e);
    unsigned char *remote = lethe_local_slot_memory(l->transport, slot);
    if (lethe_pte_state(lethe_pte_load(e)) != LETHE_PS_REMOTE || !remote)
        _exit(3);
    static unsigned char old[PG];
    memcpy(old, remote, PG); /* version 1, as written back */
    core_test_fill(p, 0, 2);
    for (unsigned i = 1; i < 256; i++)
        (void)*(volatile char *)(p + i * PG); /* push page 0 out again */
    /* version 2 must be in the same slot */
    if (lethe_pte_state(lethe_pte_load(e)) != LETHE_PS_REMOTE || lethe_pte_slot(e) != slot ||
        core_test_check(remote, 0, 2) != 0)
        _exit(4);
    /* the write of version 2 "lost": the slot holds version 1 again */
    memcpy(remote, old, PG);
    expect_mismatch(l, p, slot);
    (void)*(volatile char *)p;
    _exit(core_test_check(p, 0, 1) == 0 ? 5 : 6);
}

Test(core, a_stale_remote_copy_is_detected_at_swap_in_and_kills_the_process)
{
    char log[8192];
    int status = in_child(stale_body, log, sizeof(log));
    cr_assert_not(WIFEXITED(status), "status %#x (exit 3/4: set-up failed, 5/6: page served)",
                  status);
    cr_assert(!WIFSIGNALED(status) || WTERMSIG(status) != SIGALRM, "it must not hang");
    assert_logged_as_announced(log);
}

static void remote_full_body(void)
{
    struct lethe_config c =
        core_test_config(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT, 64 * PG, 8 * MiB);
    c.remote_size = 32 * PG;
    struct lethe *l = NULL;
    if (lethe_start(&c, &l) != 0)
        _exit(3);
    char *p = lethe_extent_alloc(l, 256 * PG, 0);
    for (unsigned i = 0; i < 256; i++)
        core_test_fill(p + i * PG, i, 1);
}

Test(core, running_out_of_remote_memory_is_reported_and_kills_the_process)
{
    char log[8192];
    int status = in_child(remote_full_body, log, sizeof(log));
    cr_assert_not(WIFEXITED(status), "status %#x", status);
    cr_assert(!WIFSIGNALED(status) || WTERMSIG(status) != SIGALRM, "it must not hang");
    cr_assert_not_null(strstr(log, "remote memory is full"), "log: %s", log);
}

Test(core, a_full_remote_memory_still_lets_clean_and_fresh_pages_go)
{
    /* 64 frames, 96 remote slots, 128 pages written: once 96 pages have a slot, the 32 dirty
     * pages without one stay resident and everything else cycles through the other frames. */
    struct lethe_config c =
        core_test_config(LETHE_DELIVERY_SIGNAL, LETHE_RECLAIM_DIRECT, 64 * PG, 8 * MiB);
    c.vcpus = 1;
    c.shards = 1;
    c.reclaim_batch = 4;
    c.remote_size = 96 * PG;
    struct lethe *l = NULL;
    cr_assert_eq(lethe_start(&c, &l), 0);
    char *p = lethe_extent_alloc(l, 256 * PG, 0);
    for (unsigned i = 0; i < 128; i++)
        core_test_fill(p + i * PG, i, 1);
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < 128; i++)
            cr_assert_eq(core_test_check(p + i * PG, i, 1), 0, "round %u page %u", round, i);
        for (unsigned i = 128; i < 256; i++)
            cr_assert(core_test_is_zero(p + i * PG), "fresh pages come and go");
    }
    /* rewritten while full: pages with a slot are written back in batches from which the
     * pages without one were taken out; each must carry its own content */
    for (unsigned round = 2; round < 4; round++) {
        for (unsigned i = 0; i < 128; i++)
            core_test_fill(p + i * PG, i, round);
        for (unsigned i = 0; i < 128; i++)
            cr_assert_eq(core_test_check(p + i * PG, i, round), 0, "version %u page %u", round, i);
    }
    struct lethe_stats s = stats(l);
    cr_assert_eq(s.remote_slots_used, 96, "remote memory is full");
    cr_assert_gt(s.clean_drops, 0);
    cr_assert_gt(s.fresh_discards, 0);
    lethe_stop(l);
}

Test(core, start_refuses_a_cache_below_the_minimum)
{
    struct lethe_config c =
        core_test_config(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT, 4 * PG, 8 * MiB);
    struct lethe *l = NULL;
    cr_assert_eq(lethe_start(&c, &l), -EINVAL);
}

Test(core, the_summary_names_the_paths_and_the_metadata_share)
{
    struct lethe *l = start(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_REBALANCER, 1 * MiB, 64 * MiB);
    char *p = lethe_extent_alloc(l, 16 * PG, 0);
    p[0] = 1;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    lethe_print_summary(l, f);
    fclose(f);
    cr_assert_not_null(strstr(text, "hit rate"), "%s", text);
    cr_assert_not_null(strstr(text, "transport=local"), "%s", text);
    cr_assert_not_null(strstr(text, "delivery=thread"), "%s", text);
    cr_assert_not_null(strstr(text, "% of 64 MiB managed"), "%s", text);
    free(text);
    cr_assert_eq(lethe_shard_count(l), 4);
    unsigned long faults = 0;
    for (unsigned i = 0; i < 4; i++) {
        struct lethe_shard_stats ss;
        lethe_get_shard_stats(l, i, &ss);
        faults += ss.faults;
    }
    cr_assert_eq(faults, stats(l).faults, "per-shard faults add up");
    lethe_stop(l);
}

Test(core, automatic_shards_follow_the_cpus_and_keep_shards_long)
{
    cpu_set_t allowed;
    cr_assert_eq(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    long online = CPU_COUNT(&allowed);
    uint64_t per_cpus = online > 1 ? (uint64_t)online / 2 : 1;
    if (per_cpus > 16)
        per_cpus = 16;
    const uint64_t caches[] = {1 * MiB, 16 * MiB, 256 * MiB};
    for (unsigned i = 0; i < 3; i++) {
        struct lethe_config c =
            core_test_config(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_DIRECT, caches[i], 512 * MiB);
        c.shards = 0;
        struct lethe *l = NULL;
        cr_assert_eq(lethe_start(&c, &l), 0);
        uint64_t want = per_cpus, by_size = caches[i] / PG / 2048;
        if (want > by_size)
            want = by_size;
        if (want == 0)
            want = 1;
        cr_assert_eq(l->nshards, want, "cache %llu MiB, %ld CPUs: %u shards",
                     (unsigned long long)(caches[i] / MiB), online, l->nshards);
        cr_assert(strstr(lethe_paths(l), "shards="), "%s", lethe_paths(l));
        lethe_stop(l);
    }
}

/* Threads of this process whose name starts with prefix: their count, and the first `max`
 * thread ids in tids. */
static unsigned threads_named(const char *prefix, pid_t *tids, unsigned max)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], name[32] = "";
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* the thread ended meanwhile */
        bool got = fgets(name, sizeof(name), f) != NULL;
        fclose(f);
        if (!got || strncmp(name, prefix, strlen(prefix)) != 0)
            continue;
        if (n < max)
            tids[n] = (pid_t)atoi(e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static unsigned count_threads_named(const char *prefix)
{
    return threads_named(prefix, NULL, 0);
}

/* Lethe's own threads are named, so that `top -H`, `ps -L` and `taskset -p` can tell them
 * from the application's: lethe-vcpuN per handler (thread delivery), lethe-events (signal
 * delivery's reader of the application's mapping events), lethe-rebal. */
Test(core, lethes_threads_carry_their_names)
{
    struct lethe *l = start(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_REBALANCER, 1 * MiB, 16 * MiB);
    char *p = lethe_extent_alloc(l, 4 * PG, 0);
    p[0] = 1;
    cr_assert_eq(count_threads_named("lethe-rebal"), 1);
    cr_assert_eq(count_threads_named("lethe-vcpu"), 2, "one per vCPU (the test config has 2)");
    cr_assert_eq(count_threads_named("lethe-events"), 0);
    lethe_stop(l);
    cr_assert_eq(count_threads_named("lethe-"), 0, "all gone after lethe_stop");

    l = start(LETHE_DELIVERY_SIGNAL, LETHE_RECLAIM_DIRECT, 1 * MiB, 16 * MiB);
    p = lethe_extent_alloc(l, 4 * PG, 0);
    p[0] = 1;
    cr_assert_eq(count_threads_named("lethe-events"), 1);
    cr_assert_eq(count_threads_named("lethe-rebal"), 0, "direct reclaim has no rebalancer");
    cr_assert_eq(count_threads_named("lethe-vcpu"), 0);
    lethe_stop(l);
}

/* CPU that thread t is allowed on when it is allowed on exactly one, else -1. */
static int only_cpu_of(pid_t tid)
{
    cpu_set_t s;
    cr_assert_eq(sched_getaffinity(tid, sizeof(s), &s), 0);
    if (CPU_COUNT(&s) != 1)
        return -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &s))
            return cpu;
    return -1;
}

/* Started from a thread restricted to some CPUs (`taskset`, a cpuset), Lethe counts those, not
 * the online ones, and its vCPUs and rebalancer stay on them: vCPU i on the (i mod n)-th. */
Test(core, lethe_stays_on_the_cpus_it_was_started_on)
{
    cpu_set_t before;
    cr_assert_eq(sched_getaffinity(0, sizeof(before), &before), 0);
    int last = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &before))
            last = cpu;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(last, &one);
    cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0);

    struct lethe_config c =
        core_test_config(LETHE_DELIVERY_THREAD, LETHE_RECLAIM_REBALANCER, 1 * MiB, 16 * MiB);
    c.vcpus = 0;
    c.pin_vcpus = true;
    struct lethe *l = NULL;
    cr_assert_eq(lethe_start(&c, &l), 0);
    cr_assert_eq(l->vcpus, 1, "one vCPU per usable CPU, not per online CPU");
    char *p = lethe_extent_alloc(l, 4 * PG, 0);
    p[0] = 1;

    pid_t tids[8];
    unsigned seen = threads_named("lethe-", tids, 8);
    for (unsigned i = 0; i < seen && i < 8; i++)
        cr_assert_eq(only_cpu_of(tids[i]), last, "thread %d left CPU %d", (int)tids[i], last);
    cr_assert_eq(seen, 2, "lethe-vcpu0 and lethe-rebal");
    lethe_stop(l);
    sched_setaffinity(0, sizeof(before), &before);
}
