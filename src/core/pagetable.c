/* pagetable.c — waiting on an in-flight page.
 *
 * A thread that finds a page in flight (IN or OUT) and must wait for it spins briefly (the
 * owner is usually a few microseconds from done), then sets WAITERS in the word and sleeps on
 * the futex of the word's low half. The owner publishes the next state with an exchange and
 * issues FUTEX_WAKE only when WAITERS was set, so the common case costs no system call.
 */
#define _GNU_SOURCE
#include "core/pagetable.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPINS 256

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint32_t *futex_word(struct lethe_pte *p)
{
    return (uint32_t *)(void *)&p->word;
}

void lethe_pte_publish(struct lethe_pte *p, uint64_t w)
{
    uint64_t old = __atomic_exchange_n(&p->word, w & ~LETHE_PTE_WAITERS, __ATOMIC_ACQ_REL);
    if (old & LETHE_PTE_WAITERS)
        syscall(SYS_futex, futex_word(p), FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

uint64_t lethe_pte_wait(struct lethe_pte *p, uint64_t seen)
{
    unsigned state = lethe_pte_state(seen);
    for (unsigned i = 0; i < SPINS; i++) {
        uint64_t w = lethe_pte_load(p);
        if (lethe_pte_state(w) != state)
            return w;
        cpu_relax();
    }
    for (;;) {
        uint64_t w = lethe_pte_load(p);
        if (lethe_pte_state(w) != state)
            return w;
        if (!(w & LETHE_PTE_WAITERS)) {
            if (!lethe_pte_cas(p, &w, w | LETHE_PTE_WAITERS))
                continue;
            w |= LETHE_PTE_WAITERS;
        }
        syscall(SYS_futex, futex_word(p), FUTEX_WAIT_PRIVATE, (uint32_t)w, NULL, NULL, 0);
    }
}
