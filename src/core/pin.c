/* pin.c — pages held mapped while the kernel reads them (lethe_pin, lethe_unpin).
 *
 * Under signal delivery the kernel cannot fault a missing region page in for itself: a futex
 * wait on a word in a demoted page fails with EFAULT, and glibc's condition variables,
 * semaphores and read-write locks abort the process on that error. The preload's wrappers of
 * those calls (src/preload/sync.c) pin the object's pages for the length of the call.
 *
 * A pin is a slot of l->pins holding vpn + 1. The demoter (evict.c, isolate_active) first
 * claims a mapped page (MAPPED -> OUT, the page still mapped), then asks lethe_pinned(); a
 * pinned page goes back to MAPPED untouched. lethe_pin() stores the slot, then reads the
 * page's state and waits, or touches the page, until it reads MAPPED. Between its write and
 * its read each side does a read-modify-write of pins_live (the pinner adds 1, the demoter
 * adds 0), and one of the two comes first in that word's modification order: if the
 * pinner's does, the demoter's reads it (or a later one) and sees the slot; if the demoter's
 * does, the pinner's reads from it, so the claim happened before the pinner's read, which sees
 * OUT (or PARKED after it) and brings the page back before lethe_pin returns. Pages only leave
 * MAPPED through a claim to OUT (demotion, or the application's own release and mremap), so a page
 * read MAPPED after the store stays mapped until the unpin, unless the program itself frees it.
 */
#include <errno.h>
#include <sched.h>

#include "core/core.h"

/* Rounds of waiting or touching before lethe_pin gives up making the page present (it then
 * returns its token all the same: the pin holds from the next mapping on). */
#define PIN_ROUNDS 1000

static void make_present(struct lethe *l, uint64_t vpn, const void *addr)
{
    struct lethe_pte *p = lethe_pte_of(l, vpn);
    for (unsigned round = 0; round < PIN_ROUNDS; round++) {
        uint64_t w = lethe_pte_load(p);
        unsigned st = lethe_pte_state(w);
        if (st == LETHE_PS_MAPPED)
            return;
        if (st == LETHE_PS_IN || st == LETHE_PS_OUT) {
            lethe_pte_wait(p, w);
            continue;
        }
        /* untouched, parked or remote: a user-mode read faults it in (a vCPU or the SIGBUS
         * handler serves it as for any access of the program) */
        (void)*(const volatile char *)addr;
        if (round > 8)
            sched_yield();
    }
}

int lethe_pin(struct lethe *l, const void *addr)
{
    if (!l || l->child)
        return -1;
    struct lethe_region *r = lethe_rgn(l);
    uint64_t vpn = r ? lethe_region_vpn(r, addr) : UINT64_MAX;
    if (vpn == UINT64_MAX)
        return -1;
    int token = -ENOSPC;
    for (unsigned i = 0; i < LETHE_PIN_SLOTS; i++) {
        uint64_t free_slot = 0;
        if (__atomic_load_n(&l->pins[i], __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(&l->pins[i], &free_slot, vpn + 1, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED)) {
            token = (int)i;
            break;
        }
    }
    if (token >= 0) {
        uint32_t hw = __atomic_load_n(&l->pins_hw, __ATOMIC_RELAXED);
        while (hw < (uint32_t)token + 1 &&
               !__atomic_compare_exchange_n(&l->pins_hw, &hw, (uint32_t)token + 1, false,
                                            __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
            ;
        /* the RMW demotion's check reads (or follows): see the header */
        __atomic_add_fetch(&l->pins_live, 1, __ATOMIC_ACQ_REL);
    }
    make_present(l, vpn, addr);
    return token;
}

void lethe_unpin(struct lethe *l, int token)
{
    if (!l || token < 0 || token >= LETHE_PIN_SLOTS)
        return;
    __atomic_sub_fetch(&l->pins_live, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&l->pins[token], 0, __ATOMIC_RELEASE);
}

bool lethe_pinned(struct lethe *l, uint64_t vpn)
{
    /* a read-modify-write, not a load: it is ordered with lethe_pin's increment */
    if (__atomic_fetch_add(&l->pins_live, 0, __ATOMIC_ACQ_REL) == 0)
        return false;
    uint32_t hw = __atomic_load_n(&l->pins_hw, __ATOMIC_ACQUIRE);
    if (hw > LETHE_PIN_SLOTS)
        hw = LETHE_PIN_SLOTS;
    for (uint32_t i = 0; i < hw; i++)
        if (__atomic_load_n(&l->pins[i], __ATOMIC_ACQUIRE) == vpn + 1)
            return true;
    return false;
}
