/* pagetable.c — waiting on an in-flight page, and the page fingerprint.
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

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

/* Four independent multiply-xor lanes over the page's 512 words. Each step (h ^ w) * odd is a
 * bijection of h, so changing any one word always changes its lane's result; the final mix is
 * a bijection too, leaving the 24-bit truncation as the only source of collisions. */
uint32_t lethe_page_fingerprint(const void *page)
{
    const uint64_t *w = page;
    const uint64_t m = 0x9e3779b97f4a7c15ULL;
    uint64_t a = 0x243f6a8885a308d3ULL, b = 0x13198a2e03707344ULL;
    uint64_t c = 0xa4093822299f31d0ULL, d = 0x082efa98ec4e6c89ULL;
    for (unsigned i = 0; i < 4096 / 8; i += 4) {
        a = (a ^ w[i]) * m;
        b = (b ^ w[i + 1]) * m;
        c = (c ^ w[i + 2]) * m;
        d = (d ^ w[i + 3]) * m;
    }
    uint64_t h = a ^ rotl64(b, 17) ^ rotl64(c, 31) ^ rotl64(d, 47);
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return (uint32_t)(h & LETHE_FP_MASK);
}

bool lethe_page_is_zero(const void *page)
{
    const uint64_t *w = page;
    for (unsigned i = 0; i < 4096 / 8; i += 8) {
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
            return false;
    }
    return true;
}
