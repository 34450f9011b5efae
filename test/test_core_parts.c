/* test_core_parts.c — the swapper's pure building blocks: page-table entry packing, the
 * index-linked frame lists, the remote slot allocator, the region extent allocator and the
 * page fingerprint. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

Test(pte, the_slot_word_holds_a_40_bit_slot_and_a_24_bit_fingerprint)
{
    struct lethe_pte p = {0, 0};
    lethe_pte_set_slot(&p, 0, 0xabcdef);
    cr_assert_eq(lethe_pte_slot(&p), 0, "slot 0 is a real slot");
    cr_assert_eq(lethe_pte_fingerprint_of(&p), 0xabcdef);
    lethe_pte_set_slot(&p, (1ULL << 40) - 2, 0x123456);
    cr_assert_eq(lethe_pte_slot(&p), (1ULL << 40) - 2);
    cr_assert_eq(lethe_pte_fingerprint_of(&p), 0x123456);
    lethe_pte_set_slot(&p, LETHE_NO_SLOT, 0);
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

/* --- fingerprint --- */

Test(fingerprint, any_single_word_change_changes_it)
{
    static uint64_t page[512] __attribute__((aligned(4096)));
    for (unsigned i = 0; i < 512; i++)
        page[i] = i * 0x9e3779b97f4a7c15ULL;
    uint32_t base = lethe_page_fingerprint(page);
    cr_assert_leq(base, 0xffffff);
    for (unsigned i = 0; i < 512; i++) {
        page[i] ^= 1;
        cr_assert_neq(lethe_page_fingerprint(page), base, "word %u", i);
        page[i] ^= 1;
    }
    cr_assert_eq(lethe_page_fingerprint(page), base);
}

Test(fingerprint, zero_detection)
{
    static uint64_t page[512] __attribute__((aligned(4096)));
    memset(page, 0, sizeof(page));
    cr_assert(lethe_page_is_zero(page));
    page[511] = 1;
    cr_assert_not(lethe_page_is_zero(page));
}
