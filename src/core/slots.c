/* slots.c — remote slot allocator: bitmap + next-fit cursor, one mutex, and the checksum of
 * each slot's content (see slots.h). */
#include "core/slots.h"

#include <errno.h>
#include <sys/mman.h>

#include "core/log.h"

int lethe_slots_init(struct lethe_slots *s, uint64_t nslots)
{
    if (nslots == 0)
        return -EINVAL;
    s->nslots = nslots;
    s->nwords = (nslots + 63) / 64;
    s->bytes = (size_t)s->nwords * sizeof(uint64_t);
    void *m = mmap(NULL, s->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -errno;
    s->bitmap = m;
    /* 8 bytes per slot; MAP_NORESERVE: only the slots in use cost memory */
    s->sums_bytes = (size_t)nslots * sizeof(uint64_t);
    void *sums = mmap(NULL, s->sums_bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (sums == MAP_FAILED) {
        int err = -errno;
        munmap(m, s->bytes);
        s->bitmap = NULL;
        return err;
    }
    s->sums = sums;
    /* Bits past the last slot are permanently "in use". */
    if (nslots % 64)
        s->bitmap[s->nwords - 1] = ~0ULL << (nslots % 64);
    s->used = 0;
    s->cursor = 0;
    s->readers = 0;
    s->zombies = NULL;
    s->nzombies = 0;
    pthread_mutex_init(&s->lock, NULL);
    return 0;
}

void lethe_slots_destroy(struct lethe_slots *s)
{
    if (s->bitmap) {
        munmap(s->bitmap, s->bytes);
        munmap(s->sums, s->sums_bytes);
        if (s->zombies)
            munmap(s->zombies, s->bytes);
        s->zombies = NULL;
        s->bitmap = NULL;
        s->sums = NULL;
        pthread_mutex_destroy(&s->lock);
    }
}

int lethe_slots_alloc(struct lethe_slots *s, uint64_t *out, unsigned n)
{
    pthread_mutex_lock(&s->lock);
    if (s->nslots - s->used < n) {
        pthread_mutex_unlock(&s->lock);
        return -ENOSPC;
    }
    unsigned got = 0;
    uint64_t w = s->cursor;
    while (got < n) {
        uint64_t free_bits = ~s->bitmap[w];
        while (free_bits && got < n) {
            unsigned b = (unsigned)__builtin_ctzll(free_bits);
            free_bits &= free_bits - 1;
            s->bitmap[w] |= 1ULL << b;
            out[got++] = w * 64 + b;
        }
        if (got < n)
            w = (w + 1 == s->nwords) ? 0 : w + 1;
    }
    s->cursor = w;
    __atomic_store_n(&s->used, s->used + n, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void lethe_slots_free(struct lethe_slots *s, const uint64_t *slots, unsigned n)
{
    if (n == 0)
        return;
    pthread_mutex_lock(&s->lock);
    uint64_t freed = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t slot = slots[i];
        uint64_t bit = 1ULL << (slot % 64);
        if (slot >= s->nslots || !(s->bitmap[slot / 64] & bit)) {
            lethe_error("remote slot %llu freed but not allocated (bug)", (unsigned long long)slot);
            continue;
        }
        if (s->readers) { /* a forked child may still read it: keep it */
            if (!(s->zombies[slot / 64] & bit)) {
                s->zombies[slot / 64] |= bit;
                __atomic_store_n(&s->nzombies, s->nzombies + 1, __ATOMIC_RELAXED);
            }
            continue;
        }
        s->bitmap[slot / 64] &= ~bit;
        lethe_slot_set_sum(s, slot, 0); /* what it holds belongs to nobody now */
        freed++;
    }
    __atomic_store_n(&s->used, s->used - freed, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&s->lock);
}

uint64_t lethe_slots_used(const struct lethe_slots *s)
{
    return __atomic_load_n(&s->used, __ATOMIC_RELAXED);
}

int lethe_slots_hold(struct lethe_slots *s)
{
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    if (!s->zombies) {
        void *m = mmap(NULL, s->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            rc = -ENOMEM;
        else
            s->zombies = m;
    }
    if (rc == 0)
        __atomic_store_n(&s->readers, s->readers + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void lethe_slots_unhold(struct lethe_slots *s)
{
    pthread_mutex_lock(&s->lock);
    if (s->readers == 0) {
        pthread_mutex_unlock(&s->lock);
        lethe_error("remote slots released by more children than held them (bug)");
        return;
    }
    __atomic_store_n(&s->readers, s->readers - 1, __ATOMIC_RELEASE);
    if (s->readers == 0 && s->nzombies) {
        uint64_t freed = 0;
        for (uint64_t w = 0; w < s->nwords; w++) {
            uint64_t z = s->zombies[w];
            if (!z)
                continue;
            s->bitmap[w] &= ~z;
            for (uint64_t bits = z; bits; bits &= bits - 1)
                lethe_slot_set_sum(s, w * 64 + (uint64_t)__builtin_ctzll(bits), 0);
            freed += (uint64_t)__builtin_popcountll(z);
            s->zombies[w] = 0;
        }
        __atomic_store_n(&s->nzombies, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->used, s->used - freed, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&s->lock);
}

uint64_t lethe_slots_zombies(const struct lethe_slots *s)
{
    return __atomic_load_n(&s->nzombies, __ATOMIC_RELAXED);
}
