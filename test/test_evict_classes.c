/* test_evict_classes.c — eviction sorts pages into exactly three classes, and a scripted run
 * yields exact counts of each.
 *
 * Set-up: 16 frames, one vCPU, one shard, direct reclaim in batches of 4, inactive_pct 30.
 * Each reclaim refills the inactive list to 30% of the resident pages plus one batch
 * (16 * 30 / 100 + 4 = 8) from the active tail and evicts 4 pages from the inactive tail, so
 * pages leave in the order they came in. The script:
 *   1. write pages 0..7, read pages 8..15           16 demand-zero faults, cache full
 *   2. read pages 16..31                            evicts 0..7 (dirty: 8 swap-outs) and
 *                                                   8..15 (fresh: 8 discards)
 *   3. read pages 0..7 again                        8 swap-ins; evicts 16..23 (8 discards)
 *   4. read pages 32..47                            evicts 24..31 (8 discards), then 0..7
 *                                                   (clean with a remote copy: 8 clean drops)
 * Totals: 8 swap-outs, 8 clean drops, 24 fresh discards, 8 swap-ins, 40 reactive evictions;
 * each of the 40 pages installed after the cache filled goes into the page an eviction left
 * in its frame (40 recycled).

 *
 * The decision itself (lethe_evict_classify) is also tested alone, on words and pages built
 * by hand: that is where a write that slipped past the dirty scan (a late write) is caught.
 */
#include <criterion/criterion.h>
#include <unistd.h>

#include "core/core.h"
#include "core_test.h"

static struct lethe *start_script_parking(enum lethe_delivery d, enum lethe_parking parking)
{
    struct lethe_config c = core_test_config(d, LETHE_RECLAIM_DIRECT, 16 * PG, 1024 * PG);
    c.parking = parking;
    c.vcpus = 1;
    c.shards = 1;
    c.reclaim_batch = 4;
    c.inactive_pct = 30;
    struct lethe *l = NULL;
    cr_assert_eq(lethe_start(&c, &l), 0);
    return l;
}


/* Thread delivery resumes the application just before the vCPU finishes its bookkeeping. */
static struct lethe_stats settled(struct lethe *l, uint64_t faults)
{
    struct lethe_stats s;
    for (int i = 0; i < 1000; i++) {
        lethe_get_stats(l, &s);
        if (s.demand_zero + s.swap_ins + s.soft_hits >= faults)
            break;
        usleep(1000);
    }
    return s;
}

static void read_page(const char *p)
{
    (void)*(const volatile char *)p;
}

static void script(enum lethe_delivery d, enum lethe_parking parking)
{
    struct lethe *l = start_script_parking(d, parking);
    /* with batch parking installs copy from the pool: nothing is recycled */
    bool batch = l->batch_park;
    if (parking == LETHE_PARKING_MOVE)
        cr_assert_not(batch);
    char *p = lethe_extent_alloc(l, 48 * PG, 0);
    cr_assert_not_null(p);

    for (unsigned i = 0; i < 8; i++)
        core_test_fill(p + i * PG, i, 1);
    for (unsigned i = 8; i < 16; i++)
        read_page(p + i * PG);
    struct lethe_stats s = settled(l, 16);
    cr_assert_eq(s.demand_zero, 16);
    cr_assert_eq(s.free_frames, 0);
    cr_assert_eq(s.swap_outs + s.clean_drops + s.fresh_discards, 0);

    for (unsigned i = 16; i < 32; i++)
        read_page(p + i * PG);
    s = settled(l, 32);
    cr_assert_eq(s.swap_outs, 8, "the 8 written pages are written back");
    cr_assert_eq(s.fresh_discards, 8, "the 8 read-only first touches are discarded");
    cr_assert_eq(s.clean_drops, 0);

    for (unsigned i = 0; i < 8; i++)
        cr_assert_eq(core_test_check(p + i * PG, i, 1), 0, "page %u comes back intact", i);
    s = settled(l, 40);
    cr_assert_eq(s.swap_ins, 8);
    cr_assert_eq(s.fresh_discards, 16);
    cr_assert_eq(s.swap_outs, 8, "nothing new to write");

    for (unsigned i = 32; i < 48; i++)
        read_page(p + i * PG);
    s = settled(l, 56);
    cr_assert_eq(s.swap_outs, 8);
    cr_assert_eq(s.clean_drops, 8, "pages read back and not written are dropped, not written");
    cr_assert_eq(s.fresh_discards, 24);
    cr_assert_eq(s.late_writes, 0);
    cr_assert_eq(s.reactive_evictions, 40);
    cr_assert_eq(s.proactive_evictions, 0);
    cr_assert_eq(s.recycled, batch ? 0 : 40,
                 "every install after the cache filled reused an evicted page (move parking)");
    cr_assert_eq(s.demand_zero, 48);
    cr_assert_eq(s.remote_pages, 8, "pages 0..7 live only remotely");
    cr_assert_eq(s.remote_slots_used, 8, "a page keeps its slot across write-backs");

    /* the discarded pages read as zeros again: demand-zero, no remote read */
    for (unsigned i = 8; i < 12; i++)
        cr_assert(core_test_is_zero(p + i * PG));
    s = settled(l, 60);
    cr_assert_eq(s.swap_ins, 8);
    cr_assert_eq(s.demand_zero, 52);
    lethe_stop(l);
}

Test(evict_classes, a_scripted_run_gives_exact_counts_signal_delivery)
{
    script(LETHE_DELIVERY_SIGNAL, LETHE_PARKING_MOVE);
}

Test(evict_classes, a_scripted_run_gives_exact_counts_thread_delivery)
{
    script(LETHE_DELIVERY_THREAD, LETHE_PARKING_MOVE);
}

Test(evict_classes, a_scripted_run_gives_exact_counts_batch_parking_signal_delivery)
{
    script(LETHE_DELIVERY_SIGNAL, LETHE_PARKING_BATCH);
}

Test(evict_classes, a_scripted_run_gives_exact_counts_batch_parking_thread_delivery)
{
    script(LETHE_DELIVERY_THREAD, LETHE_PARKING_BATCH);
}

static void changed_behind_tracking(enum lethe_parking parking)
{
    /* White box: park a clean page (swapped in, never written), then change its parked
     * content behind the dirty tracking's back, as a write racing the demotion would. Read
     * back into the page its frame's last eviction left (recycled), it was installed without
     * write protection (UNPROT): eviction judges it by content, a plain swap-out. */
    struct lethe *l = start_script_parking(LETHE_DELIVERY_SIGNAL, parking);
    char *p = lethe_extent_alloc(l, 48 * PG, 0);
    for (unsigned i = 0; i < 8; i++)
        core_test_fill(p + i * PG, i, 1);
    for (unsigned i = 8; i < 32; i++)
        read_page(p + i * PG); /* 0..7 now remote */
    read_page(p);              /* page 0 back: clean, remote copy valid */
    struct lethe_pte *pte = &l->pt[lethe_region_vpn(l->region, p)];
    cr_assert(lethe_pte_load(pte) & LETHE_PTE_UNPROT,
              "page 0 went in unprotected (recycled, or copied by batch parking)");
    unsigned next = 32;
    while (lethe_pte_state(lethe_pte_load(pte)) == LETHE_PS_MAPPED && next < 48)
        read_page(p + next++ * PG); /* until page 0 is parked */
    uint64_t w = lethe_pte_load(pte);
    cr_assert_eq(lethe_pte_state(w), LETHE_PS_PARKED);
    cr_assert_not(w & LETHE_PTE_DIRTY, "its dirty scan was not believed");
    cr_assert(w & LETHE_PTE_RVALID);
    char *slot = lethe_parked_page(l, lethe_region_vpn(l->region, p), lethe_pte_frame(w));
    core_test_fill(slot, 0, 2);
    struct lethe_stats before;
    lethe_get_stats(l, &before);
    while (lethe_pte_state(lethe_pte_load(pte)) == LETHE_PS_PARKED && next < 48)
        read_page(p + next++ * PG); /* until page 0 is evicted */
    cr_assert_eq(lethe_pte_state(lethe_pte_load(pte)), LETHE_PS_REMOTE);
    struct lethe_stats s;
    lethe_get_stats(l, &s);
    cr_assert_eq(s.swap_outs - before.swap_outs, 1, "the changed page went out");
    cr_assert_eq(s.late_writes - before.late_writes, 0, "by content, not as a late write");
    cr_assert_eq(core_test_check(p, 0, 2), 0, "the change reached the remote copy");
    lethe_stop(l);
}

static void write_after_scan(enum lethe_parking parking)
{
    /* White box: park a write-protected page that was never written (demand zero, installed
     * by UFFDIO_COPY while frames were free), then change its parked content behind the dirty
     * tracking's back: eviction finds it is no longer all zeros, a late write. */
    struct lethe *l = start_script_parking(LETHE_DELIVERY_SIGNAL, parking);
    char *p = lethe_extent_alloc(l, 48 * PG, 0);
    for (unsigned i = 0; i < 16; i++)
        read_page(p + i * PG);
    struct lethe_pte *pte = &l->pt[lethe_region_vpn(l->region, p + 8 * PG)];
    uint64_t w = lethe_pte_load(pte);
    cr_assert((w & LETHE_PTE_FRESH) && !(w & LETHE_PTE_UNPROT), "page 8: fresh and protected");
    unsigned next = 16;
    while (lethe_pte_state(lethe_pte_load(pte)) == LETHE_PS_MAPPED && next < 48)
        read_page(p + next++ * PG); /* until page 8 is parked */
    w = lethe_pte_load(pte);
    cr_assert_eq(lethe_pte_state(w), LETHE_PS_PARKED);
    cr_assert(w & LETHE_PTE_FRESH);
    char *slot =
        lethe_parked_page(l, lethe_region_vpn(l->region, p + 8 * PG), lethe_pte_frame(w));
    core_test_fill(slot, 8, 3);
    struct lethe_stats before;
    lethe_get_stats(l, &before);
    while (lethe_pte_state(lethe_pte_load(pte)) == LETHE_PS_PARKED && next < 48)
        read_page(p + next++ * PG); /* until page 8 is evicted */
    cr_assert_eq(lethe_pte_state(lethe_pte_load(pte)), LETHE_PS_REMOTE,
                 "written back, not discarded");
    struct lethe_stats s;
    lethe_get_stats(l, &s);
    cr_assert_eq(s.late_writes - before.late_writes, 1);
    cr_assert_eq(s.swap_outs - before.swap_outs, 1);
    cr_assert_eq(core_test_check(p + 8 * PG, 8, 3), 0, "the late write reached the remote copy");
    lethe_stop(l);
}

Test(evict_classes, a_recycled_page_changed_behind_the_dirty_tracking_is_written_back)
{
    changed_behind_tracking(LETHE_PARKING_MOVE);
}

Test(evict_classes, a_copied_back_page_changed_behind_the_dirty_tracking_is_written_back)
{
    /* batch parking: a page read back is copied in without write protection (UNPROT) */
    changed_behind_tracking(LETHE_PARKING_BATCH);
}

Test(evict_classes, a_write_after_the_dirty_scan_is_caught_before_a_fresh_discard)
{
    write_after_scan(LETHE_PARKING_MOVE);
}

Test(evict_classes, a_write_after_the_dirty_scan_is_caught_before_a_fresh_discard_batch_parking)
{
    write_after_scan(LETHE_PARKING_BATCH);
}

/* --- the eviction decision, alone --- */

static uint64_t page_c[512] __attribute__((aligned(4096)));

static uint64_t parked_word(uint64_t flags)
{
    return lethe_pte_make(LETHE_PS_OUT, flags, 3);
}

Test(evict_decision, dirty_pages_and_pages_without_a_remote_copy_are_written_back)
{
    core_test_fill(page_c, 7, 1);
    uint64_t want = lethe_page_checksum(page_c), sum = 0;
    cr_assert_eq(lethe_evict_classify(parked_word(LETHE_PTE_DIRTY), page_c, 0, &sum),
                 LETHE_EVICT_WRITE);
    cr_assert_eq(sum, want, "the checksum of the bytes to be sent");
    sum = 0;
    cr_assert_eq(
        lethe_evict_classify(parked_word(LETHE_PTE_DIRTY | LETHE_PTE_RVALID), page_c, want, &sum),
        LETHE_EVICT_WRITE, "DIRTY wins even when the content matches the slot");
    cr_assert_eq(lethe_evict_classify(parked_word(0), page_c, want, &sum), LETHE_EVICT_WRITE,
                 "neither fresh nor a valid remote copy: its content exists only here");
    memset(page_c, 0, sizeof(page_c));
    cr_assert_eq(lethe_evict_classify(parked_word(0), page_c, 0, &sum), LETHE_EVICT_WRITE,
                 "a zero page that was written is still written back");
}

Test(evict_decision, a_fresh_page_is_discarded_only_while_it_is_all_zeros)
{
    memset(page_c, 0, sizeof(page_c));
    uint64_t sum = 0;
    cr_assert_eq(lethe_evict_classify(parked_word(LETHE_PTE_FRESH), page_c, 0, &sum),
                 LETHE_EVICT_DISCARD);
    page_c[511] = 1; /* a write the dirty scan did not see */
    cr_assert_eq(lethe_evict_classify(parked_word(LETHE_PTE_FRESH), page_c, 0, &sum),
                 LETHE_EVICT_WRITE_LATE);
    cr_assert_eq(sum, lethe_page_checksum(page_c));
}

Test(evict_decision, a_clean_page_is_dropped_only_while_its_checksum_matches_its_slot)
{
    core_test_fill(page_c, 9, 1);
    uint64_t slot_sum = lethe_page_checksum(page_c), sum = 0;
    cr_assert_eq(lethe_evict_classify(parked_word(LETHE_PTE_RVALID), page_c, slot_sum, &sum),
                 LETHE_EVICT_CLEAN);
    cr_assert_eq(sum, slot_sum);
    /* late writes of every size: one bit anywhere, one word, the whole page */
    for (unsigned i = 0; i < 512; i += 31) {
        page_c[i] ^= 1ULL << (i % 64);
        cr_assert_eq(lethe_evict_classify(parked_word(LETHE_PTE_RVALID), page_c, slot_sum, &sum),
                     LETHE_EVICT_WRITE_LATE, "bit flipped in word %u", i);
        cr_assert_eq(sum, lethe_page_checksum(page_c), "the checksum of what will be sent");
        page_c[i] ^= 1ULL << (i % 64);
    }
    core_test_fill(page_c, 9, 2);
    cr_assert_eq(lethe_evict_classify(parked_word(LETHE_PTE_RVALID), page_c, slot_sum, &sum),
                 LETHE_EVICT_WRITE_LATE);
    core_test_fill(page_c, 9, 1);
    cr_assert_eq(lethe_evict_classify(parked_word(LETHE_PTE_RVALID), page_c, 0, &sum),
                 LETHE_EVICT_WRITE_LATE, "a slot whose content is unknown vouches for nothing");
}
