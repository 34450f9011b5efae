/* test_core_parts.c — the swapper's pure building blocks: page-table entry packing, the
 * index-linked frame lists, the remote slot allocator and its per-slot checksums, the region
 * extent allocator and the page checksum. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/checksum.h"
#include "core/extent.h"
#include "core/list.h"
#include "core/pagetable.h"
#include "core/slots.h"

/* --- page-table entries --- */

Test(pte, an_entry_is_16_bytes_and_zero_means_untouched)
{
    cr_assert_eq(sizeof(struct lethe_pte), 16);
    struct lethe_pte p = {0, 0};
    cr_assert_eq(lethe_pte_state(lethe_pte_load(&p)), LETHE_PS_UNTOUCHED);
    cr_assert_eq(lethe_pte_slot(&p), LETHE_NO_SLOT);
}

Test(pte, state_flags_and_frame_pack_without_overlap)
{
    uint64_t w = lethe_pte_make(LETHE_PS_PARKED, LETHE_PTE_DIRTY | LETHE_PTE_REF, 0xfffffffeu);
    cr_assert_eq(lethe_pte_state(w), LETHE_PS_PARKED);
    cr_assert_eq(lethe_pte_frame(w), 0xfffffffeu);
    cr_assert(w & LETHE_PTE_DIRTY);
    cr_assert(w & LETHE_PTE_REF);
    cr_assert_not(w & (LETHE_PTE_FRESH | LETHE_PTE_RVALID | LETHE_PTE_WAITERS));
    uint64_t in = lethe_pte_with_state(w, LETHE_PS_IN);
    cr_assert_eq(lethe_pte_state(in), LETHE_PS_IN);
    cr_assert_eq(lethe_pte_frame(in), 0xfffffffeu);
    cr_assert_eq(in & LETHE_PTE_FLAGS, w & LETHE_PTE_FLAGS);
    /* every state fits the state field, every flag sits in the futex half */
    cr_assert_lt(LETHE_PS_REMOTE, 8);
    cr_assert_lt(LETHE_PTE_WAITERS, 1ULL << 32);
    /* make never sets WAITERS, even when asked to */
    cr_assert_not(lethe_pte_make(LETHE_PS_MAPPED, ~0ULL, 1) & LETHE_PTE_WAITERS);
}

Test(pte, the_slot_word_holds_a_40_bit_slot_and_leaves_bits_40_to_63_free)
{
    struct lethe_pte p = {0, 0};
    lethe_pte_set_slot(&p, 0);
    cr_assert_eq(lethe_pte_slot(&p), 0, "slot 0 is a real slot");
    cr_assert_eq(p.slot, 1);
    lethe_pte_set_slot(&p, (1ULL << 40) - 2);
    cr_assert_eq(lethe_pte_slot(&p), (1ULL << 40) - 2);
    cr_assert_eq(p.slot >> 40, 0, "bits 40..63 stay zero");
    lethe_pte_set_slot(&p, LETHE_NO_SLOT);
    cr_assert_eq(lethe_pte_slot(&p), LETHE_NO_SLOT);
    cr_assert_eq(p.slot, 0);
}

Test(pte, cas_claims_only_from_the_expected_word)
{
    struct lethe_pte p = {lethe_pte_make(LETHE_PS_MAPPED, 0, 7), 0};
    uint64_t seen = lethe_pte_make(LETHE_PS_PARKED, 0, 7);
    cr_assert_not(lethe_pte_cas(&p, &seen, lethe_pte_make(LETHE_PS_OUT, 0, 7)));
    cr_assert_eq(lethe_pte_state(seen), LETHE_PS_MAPPED, "a failed CAS refreshes the word");
    cr_assert(lethe_pte_cas(&p, &seen, lethe_pte_with_state(seen, LETHE_PS_OUT)));
    cr_assert_eq(lethe_pte_state(lethe_pte_load(&p)), LETHE_PS_OUT);
}

struct waiter_arg {
    struct lethe_pte *p;
    uint64_t seen;
    uint64_t after;
};

static void *waiter(void *arg)
{
    struct waiter_arg *a = arg;
    a->after = lethe_pte_wait(a->p, a->seen);
    return NULL;
}

Test(pte, a_waiter_sleeps_until_the_owner_publishes)
{
    struct lethe_pte p = {lethe_pte_make(LETHE_PS_OUT, 0, 3), 0};
    struct waiter_arg a = {&p, lethe_pte_load(&p), 0};
    pthread_t t;
    pthread_create(&t, NULL, waiter, &a);
    /* wait until it sleeps (WAITERS set), then publish */
    for (int i = 0; i < 2000 && !(lethe_pte_load(&p) & LETHE_PTE_WAITERS); i++)
        usleep(1000);
    cr_assert(lethe_pte_load(&p) & LETHE_PTE_WAITERS, "the waiter announced itself");
    lethe_pte_publish(&p, lethe_pte_make(LETHE_PS_REMOTE, LETHE_PTE_RVALID, 0));
    pthread_join(t, NULL);
    cr_assert_eq(lethe_pte_state(a.after), LETHE_PS_REMOTE);
    cr_assert_not(lethe_pte_load(&p) & LETHE_PTE_WAITERS, "publish clears WAITERS");
}

/* --- frame lists --- */

static struct lethe_frame ft[8];

static void expect_list(struct lethe_list *l, const uint32_t *want, unsigned n)
{
    cr_assert_eq(lethe_list_count(l), n);
    uint32_t f = l->head, prev = LETHE_NIL;
    for (unsigned i = 0; i < n; i++) {
        cr_assert_eq(f, want[i], "position %u", i);
        cr_assert_eq(ft[f].prev, prev);
        prev = f;
        f = ft[f].next;
    }
    cr_assert_eq(f, LETHE_NIL);
    cr_assert_eq(l->tail, n ? want[n - 1] : LETHE_NIL);
}

Test(list, push_remove_pop_and_move_keep_both_directions_consistent)
{
    struct lethe_list a, b;
    lethe_list_init(&a);
    lethe_list_init(&b);
    for (uint32_t f = 0; f < 5; f++) {
        lethe_frame_set(&ft[f], 100 + f, LETHE_FL_ISOLATED);
        lethe_list_push_head(ft, &a, f, LETHE_FL_ACTIVE);
    }
    expect_list(&a, (uint32_t[]){4, 3, 2, 1, 0}, 5);
    cr_assert_eq(lethe_frame_list(&ft[2]), LETHE_FL_ACTIVE);
    cr_assert_eq(lethe_frame_vpn(&ft[2]), 102, "the tag does not disturb the vpn");

    lethe_list_remove(ft, &a, 2); /* middle */
    expect_list(&a, (uint32_t[]){4, 3, 1, 0}, 4);
    cr_assert_eq(lethe_frame_list(&ft[2]), LETHE_FL_ISOLATED);
    lethe_list_remove(ft, &a, 0); /* tail */
    lethe_list_remove(ft, &a, 4); /* head */
    expect_list(&a, (uint32_t[]){3, 1}, 2);

    lethe_list_move_head(ft, &a, &b, 1, LETHE_FL_INACTIVE);
    expect_list(&a, (uint32_t[]){3}, 1);
    expect_list(&b, (uint32_t[]){1}, 1);
    cr_assert_eq(lethe_frame_list(&ft[1]), LETHE_FL_INACTIVE);

    cr_assert_eq(lethe_list_pop_head(ft, &a), 3);
    expect_list(&a, NULL, 0);
    cr_assert_eq(lethe_list_pop_head(ft, &a), LETHE_NIL);
}

Test(list, moving_the_tail_to_its_own_head_rotates)
{
    struct lethe_list a;
    lethe_list_init(&a);
    for (uint32_t f = 0; f < 3; f++)
        lethe_list_push_head(ft, &a, f, LETHE_FL_ACTIVE);
    lethe_list_move_head(ft, &a, &a, a.tail, LETHE_FL_ACTIVE);
    expect_list(&a, (uint32_t[]){0, 2, 1}, 3);
}

Test(list, frame_entries_are_16_bytes_and_hold_56_bit_vpns)
{
    cr_assert_eq(sizeof(struct lethe_frame), 16);
    struct lethe_frame f;
    lethe_frame_set(&f, (1ULL << 56) - 1, LETHE_FL_RETIRED);
    cr_assert_eq(lethe_frame_vpn(&f), (1ULL << 56) - 1);
    cr_assert_eq(lethe_frame_list(&f), LETHE_FL_RETIRED);
}

/* --- remote slots --- */

Test(slots, allocation_is_contiguous_and_all_or_nothing)
{
    struct lethe_slots s;
    cr_assert_eq(lethe_slots_init(&s, 100), 0);
    uint64_t got[100];
    cr_assert_eq(lethe_slots_alloc(&s, got, 70), 0);
    for (unsigned i = 0; i < 70; i++)
        cr_assert_eq(got[i], i);
    cr_assert_eq(lethe_slots_alloc(&s, got, 31), -ENOSPC, "only 30 left");
    cr_assert_eq(lethe_slots_used(&s), 70, "a failed allocation takes nothing");
    cr_assert_eq(lethe_slots_alloc(&s, got, 30), 0);
    for (unsigned i = 0; i < 30; i++)
        cr_assert_lt(got[i], 100, "never beyond the slots granted");
    cr_assert_eq(lethe_slots_alloc(&s, got, 1), -ENOSPC);
    lethe_slots_destroy(&s);
}

Test(slots, freed_slots_are_reused_and_counted)
{
    struct lethe_slots s;
    cr_assert_eq(lethe_slots_init(&s, 130), 0);
    uint64_t got[130];
    cr_assert_eq(lethe_slots_alloc(&s, got, 130), 0);
    uint64_t back[3] = {5, 64, 129};
    lethe_slots_free(&s, back, 3);
    cr_assert_eq(lethe_slots_used(&s), 127);
    uint64_t again[3];
    cr_assert_eq(lethe_slots_alloc(&s, again, 3), 0);
    uint64_t seen = 0;
    for (unsigned i = 0; i < 3; i++)
        for (unsigned j = 0; j < 3; j++)
            seen += again[i] == back[j];
    cr_assert_eq(seen, 3, "exactly the freed slots come back");
    lethe_slots_destroy(&s);
}

Test(slots, a_childs_slots_are_kept_while_it_lives_and_later_ones_are_not)
{
    struct lethe_slots s;
    cr_assert_eq(lethe_slots_init(&s, 8), 0);
    uint64_t got[4];
    cr_assert_eq(lethe_slots_alloc(&s, got, 4), 0);
    for (unsigned i = 0; i < 4; i++) {
        lethe_slot_set_sum(&s, got[i], 100 + i);
        lethe_slot_stamp(&s, got[i]);
    }
    cr_assert_not(lethe_slot_kept(&s, got[0]), "no child yet");
    int64_t g1 = lethe_slots_hold(&s);
    cr_assert_eq(g1, 1);
    cr_assert(lethe_slot_kept(&s, got[0]), "written before the fork: the child may read it");
    lethe_slots_free(&s, got, 2);
    cr_assert_eq(lethe_slots_used(&s), 4, "a child may still read them");
    cr_assert_eq(lethe_slots_zombies(&s), 2);
    cr_assert_eq(lethe_slot_sum(&s, got[0]), 100, "their content is still known");
    /* written after the fork: the parent's own, rewritten and freed as usual */
    uint64_t late;
    cr_assert_eq(lethe_slots_alloc(&s, &late, 1), 0);
    lethe_slot_set_sum(&s, late, 7);
    lethe_slot_stamp(&s, late);
    cr_assert_not(lethe_slot_kept(&s, late));
    lethe_slots_free(&s, &late, 1);
    cr_assert_eq(lethe_slots_used(&s), 4, "freed at once");
    int64_t g2 = lethe_slots_hold(&s);
    cr_assert_eq(g2, 2, "a second child");
    uint64_t more[5];
    cr_assert_eq(lethe_slots_alloc(&s, more, 5), -ENOSPC, "zombies are not handed out");
    lethe_slots_unhold(&s, (uint32_t)g1);
    cr_assert_eq(lethe_slots_zombies(&s), 2, "the second child was forked after they were written");
    lethe_slots_unhold(&s, (uint32_t)g2);
    cr_assert_not(lethe_slot_kept(&s, got[2]));
    cr_assert_eq(lethe_slots_zombies(&s), 0);
    cr_assert_eq(lethe_slots_used(&s), 2);
    cr_assert_eq(lethe_slot_sum(&s, got[0]), 0, "freed for good: content forgotten");
    cr_assert_eq(lethe_slots_alloc(&s, more, 5), 0);
    lethe_slots_destroy(&s);
}

Test(slots, freeing_a_free_slot_is_reported_and_ignored)
{
    struct lethe_slots s;
    cr_assert_eq(lethe_slots_init(&s, 10), 0);
    uint64_t got[2];
    cr_assert_eq(lethe_slots_alloc(&s, got, 2), 0);
    uint64_t bad[2] = {got[0], 7};
    lethe_slots_free(&s, bad, 2);
    cr_assert_eq(lethe_slots_used(&s), 1);
    lethe_slots_destroy(&s);
}

Test(slots, each_slot_keeps_a_checksum_that_freeing_forgets)
{
    struct lethe_slots s;
    cr_assert_eq(lethe_slots_init(&s, 130), 0);
    cr_assert_eq(s.sums_bytes, 130 * sizeof(uint64_t), "8 bytes per remote page");
    uint64_t got[130];
    cr_assert_eq(lethe_slots_alloc(&s, got, 130), 0);
    for (uint64_t i = 0; i < 130; i++) {
        cr_assert_eq(lethe_slot_sum(&s, i), 0, "a slot never written has no known content");
        lethe_slot_set_sum(&s, i, 0x9e3779b97f4a7c15ULL * (i + 1));
    }
    uint64_t back[3] = {5, 64, 129};
    lethe_slots_free(&s, back, 3);
    for (uint64_t i = 0; i < 130; i++) {
        bool freed = i == 5 || i == 64 || i == 129;
        cr_assert_eq(lethe_slot_sum(&s, i), freed ? 0 : 0x9e3779b97f4a7c15ULL * (i + 1), "slot %lu",
                     (unsigned long)i);
    }
    uint64_t again[3];
    cr_assert_eq(lethe_slots_alloc(&s, again, 3), 0);
    for (unsigned i = 0; i < 3; i++)
        cr_assert_eq(lethe_slot_sum(&s, again[i]), 0,
                     "a reused slot does not vouch for its previous owner's content");
    lethe_slots_destroy(&s);
}

/* --- extents --- */

Test(extent, first_fit_splits_and_free_coalesces_both_sides)
{
    struct lethe_extents e;
    cr_assert_eq(lethe_extents_init(&e, 100, 0), 0);
    cr_assert_eq(lethe_extents_alloc(&e, 10, 0), 0);
    cr_assert_eq(lethe_extents_alloc(&e, 10, 1), 10);
    cr_assert_eq(lethe_extents_alloc(&e, 10, 0), 20);
    cr_assert_eq(lethe_extents_free_pages(&e), 70);
    cr_assert_eq(lethe_extents_free(&e, 0, 10), 0);
    cr_assert_eq(lethe_extents_free(&e, 20, 10), 0);
    cr_assert_eq(e.nruns, 2, "[0,10) and [20,100)");
    cr_assert_eq(lethe_extents_alloc(&e, 5, 0), 0, "first fit takes the lowest hole");
    cr_assert_eq(lethe_extents_free(&e, 0, 5), 0);
    cr_assert_eq(lethe_extents_free(&e, 10, 10), 0);
    cr_assert_eq(e.nruns, 1, "everything coalesced");
    cr_assert_eq(lethe_extents_free_pages(&e), 100);
    cr_assert_eq(lethe_extents_alloc(&e, 100, 0), 0);
    cr_assert_eq(lethe_extents_alloc(&e, 1, 0), -ENOMEM);
    lethe_extents_destroy(&e);
}

Test(extent, alignment_is_of_the_absolute_page_number)
{
    struct lethe_extents e;
    cr_assert_eq(lethe_extents_init(&e, 1024, 3), 0); /* the region starts at page 3 */
    int64_t a = lethe_extents_alloc(&e, 4, 512);
    cr_assert_eq(a, 509, "3 + 509 = 512");
    int64_t b = lethe_extents_alloc(&e, 1, 0);
    cr_assert_eq(b, 0, "the padding before an aligned extent stays free");
    cr_assert_eq(lethe_extents_alloc(&e, 600, 512), -ENOMEM, "1024 + 3 leaves no second 600");
    cr_assert_eq(lethe_extents_free_pages(&e), 1024 - 5);
    lethe_extents_destroy(&e);
}

Test(extent, double_and_overlapping_frees_are_refused_without_change)
{
    struct lethe_extents e;
    cr_assert_eq(lethe_extents_init(&e, 64, 0), 0);
    cr_assert_eq(lethe_extents_alloc(&e, 16, 0), 0);
    cr_assert(lethe_extents_allocated(&e, 0, 16));
    cr_assert_eq(lethe_extents_free(&e, 0, 16), 0);
    cr_assert_not(lethe_extents_allocated(&e, 0, 1));
    cr_assert_eq(lethe_extents_free(&e, 0, 16), -EINVAL);
    cr_assert_eq(lethe_extents_alloc(&e, 8, 0), 0);
    cr_assert_eq(lethe_extents_free(&e, 4, 8), -EINVAL, "half of it is free");
    cr_assert_eq(lethe_extents_free(&e, 60, 8), -EINVAL, "beyond the region");
    cr_assert_eq(lethe_extents_free_pages(&e), 56);
    lethe_extents_destroy(&e);
}

Test(extent, claim_takes_the_free_pages_of_a_range_and_leaves_the_rest)
{
    struct lethe_extents e;
    cr_assert_eq(lethe_extents_init(&e, 100, 0), 0);
    cr_assert_eq(lethe_extents_alloc(&e, 10, 0), 0);
    cr_assert_eq(lethe_extents_alloc(&e, 10, 0), 10);
    cr_assert_eq(lethe_extents_free(&e, 0, 10), 0); /* free: [0,10) [20,100) */
    cr_assert_eq(lethe_extents_claim(&e, 5, 20), 10, "[5,10) and [20,25) were free");
    cr_assert(lethe_extents_allocated(&e, 5, 20));
    cr_assert_not(lethe_extents_allocated(&e, 4, 1));
    cr_assert_not(lethe_extents_allocated(&e, 25, 1));
    cr_assert_eq(lethe_extents_claim(&e, 5, 20), 0, "nothing left to take");
    cr_assert_eq(lethe_extents_claim(&e, 40, 10), 10, "the middle of a run splits it");
    cr_assert_eq(e.nruns, 3, "[0,5) [25,40) [50,100)");
    cr_assert_eq(lethe_extents_free_pages(&e), 5 + 15 + 50);
    cr_assert_eq(lethe_extents_claim(&e, 95, 10), -EINVAL, "beyond the region");
    cr_assert_eq(lethe_extents_free(&e, 5, 20), 0, "a claimed range is freed like any extent");
    cr_assert_eq(lethe_extents_free_pages(&e), 90);
    lethe_extents_destroy(&e);
}

Test(extent, many_holes_grow_the_run_array)
{
    struct lethe_extents e;
    cr_assert_eq(lethe_extents_init(&e, 20000, 0), 0);
    cr_assert_eq(lethe_extents_alloc(&e, 20000, 0), 0);
    for (uint64_t i = 0; i < 20000; i += 2)
        cr_assert_eq(lethe_extents_free(&e, i, 1), 0);
    cr_assert_eq(e.nruns, 10000);
    for (uint64_t i = 1; i < 20000; i += 2)
        cr_assert_eq(lethe_extents_free(&e, i, 1), 0);
    cr_assert_eq(e.nruns, 1);
    lethe_extents_destroy(&e);
}

/* --- page checksum --- */

static uint64_t rng_next(uint64_t *x)
{
    *x += 0x9e3779b97f4a7c15ULL;
    uint64_t z = *x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t page_a[512] __attribute__((aligned(4096)));

static void random_page(uint64_t *page, uint64_t *seed)
{
    for (unsigned i = 0; i < 512; i++)
        page[i] = rng_next(seed);
}

Test(checksum, any_change_of_one_word_changes_it)
{
    uint64_t seed = 1;
    random_page(page_a, &seed);
    uint64_t base = lethe_page_checksum(page_a);
    for (unsigned i = 0; i < 512; i++) {
        uint64_t keep = page_a[i];
        const uint64_t changes[] = {keep ^ 1, keep ^ (1ULL << 63), keep ^ ~0ULL, 0,
                                    rng_next(&seed)};
        for (unsigned c = 0; c < sizeof(changes) / sizeof(changes[0]); c++) {
            if (changes[c] == keep)
                continue;
            page_a[i] = changes[c];
            cr_assert_neq(lethe_page_checksum(page_a), base, "word %u, change %u", i, c);
        }
        page_a[i] = keep;
    }
    cr_assert_eq(lethe_page_checksum(page_a), base, "same content, same checksum");
}

Test(checksum, paired_top_bit_flips_that_fooled_the_old_fingerprint_are_caught)
{
    /* The 24-bit fingerprint's lanes were (h ^ w) * odd: flipping bit 63 of two words of one
     * lane cancelled exactly. Here a lane rotates after each multiply. */
    memset(page_a, 0, sizeof(page_a));
    uint64_t base = lethe_page_checksum(page_a);
    for (unsigned i = 0; i < 512; i++) {
        for (unsigned d = 1; d <= 32 && i + d < 512; d *= 2) {
            page_a[i] ^= 1ULL << 63;
            page_a[i + d] ^= 1ULL << 63;
            cr_assert_neq(lethe_page_checksum(page_a), base, "words %u and %u", i, i + d);
            page_a[i] ^= 1ULL << 63;
            page_a[i + d] ^= 1ULL << 63;
        }
    }
}

Test(checksum, random_two_bit_changes_change_it)
{
    uint64_t seed = 5;
    random_page(page_a, &seed);
    uint64_t base = lethe_page_checksum(page_a);
    for (unsigned n = 0; n < 20000; n++) {
        uint64_t r = rng_next(&seed);
        unsigned w1 = r % 512, w2 = (r >> 9) % 512, b1 = (r >> 18) % 64, b2 = (r >> 24) % 64;
        if (w1 == w2 && b1 == b2)
            continue;
        page_a[w1] ^= 1ULL << b1;
        page_a[w2] ^= 1ULL << b2;
        cr_assert_neq(lethe_page_checksum(page_a), base, "word %u bit %u, word %u bit %u", w1, b1,
                      w2, b2);
        page_a[w1] ^= 1ULL << b1;
        page_a[w2] ^= 1ULL << b2;
    }
}

Test(checksum, swapping_the_words_of_two_lanes_changes_it)
{
    uint64_t seed = 2;
    random_page(page_a, &seed);
    uint64_t base = lethe_page_checksum(page_a);
    for (unsigned i = 0; i < 512; i += 32) {
        uint64_t t = page_a[i];
        page_a[i] = page_a[i + 1];
        page_a[i + 1] = t;
    }
    cr_assert_neq(lethe_page_checksum(page_a), base, "lanes have their own seeds");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(checksum, distinct_pages_give_distinct_checksums_with_balanced_bits)
{
    /* 8192 pages: half random, half nearly empty (one small counter in word 0 or word 511).
     * A 64-bit checksum should never collide on so few, and each output bit should be set in
     * about half of them (binomial: 4096 +- 64 standard deviation; allow 5 of them). */
    enum { N = 8192 };
    static uint64_t sums[N];
    unsigned ones[64] = {0};
    uint64_t seed = 3;
    for (unsigned n = 0; n < N; n++) {
        if (n < N / 2) {
            random_page(page_a, &seed);
        } else {
            memset(page_a, 0, sizeof(page_a));
            page_a[n % 2 ? 511 : 0] = n;
        }
        sums[n] = lethe_page_checksum(page_a);
        for (unsigned b = 0; b < 64; b++)
            ones[b] += (sums[n] >> b) & 1;
    }
    for (unsigned b = 0; b < 64; b++)
        cr_assert(ones[b] > N / 2 - 320 && ones[b] < N / 2 + 320, "bit %u set in %u of %u", b,
                  ones[b], N);
    qsort(sums, N, sizeof(sums[0]), cmp_u64);
    for (unsigned i = 1; i < N; i++)
        cr_assert_neq(sums[i - 1], sums[i], "two pages share the checksum %#lx",
                      (unsigned long)sums[i]);
}

Test(checksum, the_fast_implementation_computes_the_portable_function)
{
    if (strcmp(lethe_page_checksum_impl(), "portable") == 0)
        cr_skip_test("this CPU has no AVX-512: only the portable implementation runs");
    uint64_t seed = 4;
    for (unsigned n = 0; n < 2000; n++) {
        random_page(page_a, &seed);
        if (n % 4 == 1)
            memset(page_a, 0, sizeof(page_a) / 2);
        cr_assert_eq(lethe_page_checksum(page_a), lethe_page_checksum_portable(page_a), "page %u",
                     n);
    }
    memset(page_a, 0, sizeof(page_a));
    cr_assert_eq(lethe_page_checksum(page_a), lethe_page_checksum_portable(page_a));
}

Test(checksum, zero_detection)
{
    memset(page_a, 0, sizeof(page_a));
    cr_assert(lethe_page_is_zero(page_a));
    for (unsigned i = 0; i < 512; i += 73) {
        page_a[i] = 1ULL << (i % 64);
        cr_assert_not(lethe_page_is_zero(page_a), "word %u", i);
        page_a[i] = 0;
    }
    page_a[511] = 1;
    cr_assert_not(lethe_page_is_zero(page_a));
}
