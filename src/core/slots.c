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
    /* 4 bytes per slot, MAP_NORESERVE too */
    s->stamps_bytes = (size_t)nslots * sizeof(uint32_t);
    void *stamps = mmap(NULL, s->stamps_bytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stamps == MAP_FAILED) {
        int err = -errno;
        munmap(sums, s->sums_bytes);
        munmap(m, s->bytes);
        s->bitmap = NULL;
        return err;
    }
    s->stamps = stamps;
    /* Bits past the last slot are permanently "in use". */
    if (nslots % 64)
        s->bitmap[s->nwords - 1] = ~0ULL << (nslots % 64);
    s->used = 0;
    s->cursor = 0;
    s->generation = 0;
    s->newest_live = 0;
    s->nlive = 0;
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
        munmap(s->stamps, s->stamps_bytes);
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
        if (s->newest_live &&
            __atomic_load_n(&s->stamps[slot], __ATOMIC_RELAXED) < s->newest_live) {
            /* a live child forked after it was written may read it: keep it */
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

int64_t lethe_slots_hold(struct lethe_slots *s)
{
    pthread_mutex_lock(&s->lock);
    int64_t rc = 0;
    if (!s->zombies) {
        void *m = mmap(NULL, s->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            rc = -ENOMEM;
        else
            s->zombies = m;
    }
    if (rc == 0 && s->nlive == LETHE_SLOTS_MAX_HOLDS)
        rc = -ENOSPC;
    if (rc == 0) {
        /* what was written so far carries an older stamp than this generation */
        uint32_t g = s->generation + 1;
        __atomic_store_n(&s->generation, g, __ATOMIC_RELAXED);
        s->live[s->nlive++] = g;
        __atomic_store_n(&s->newest_live, g, __ATOMIC_RELEASE);
        rc = g;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void lethe_slots_unhold(struct lethe_slots *s, uint32_t generation)
{
    pthread_mutex_lock(&s->lock);
    unsigned i = 0;
    while (i < s->nlive && s->live[i] != generation)
        i++;
    if (i == s->nlive) {
        pthread_mutex_unlock(&s->lock);
        lethe_error("remote slots released for a child that held none (generation %u, bug)",
                    generation);
        return;
    }
    s->live[i] = s->live[--s->nlive];
    uint32_t newest = 0;
    for (unsigned k = 0; k < s->nlive; k++)
        newest = s->live[k] > newest ? s->live[k] : newest;
    __atomic_store_n(&s->newest_live, newest, __ATOMIC_RELEASE);
    /* a zombie stays while a live child was forked after it was written */
    uint64_t freed = 0, left = 0;
    for (uint64_t w = 0; s->nzombies && w < s->nwords; w++) {
        for (uint64_t bits = s->zombies[w]; bits; bits &= bits - 1) {
            uint64_t slot = w * 64 + (uint64_t)__builtin_ctzll(bits);
            if (newest && __atomic_load_n(&s->stamps[slot], __ATOMIC_RELAXED) < newest) {
                left++;
                continue;
            }
            uint64_t bit = 1ULL << (slot % 64);
            s->zombies[w] &= ~bit;
            s->bitmap[w] &= ~bit;
            lethe_slot_set_sum(s, slot, 0);
            freed++;
        }
    }
    __atomic_store_n(&s->nzombies, left, __ATOMIC_RELAXED);
    __atomic_store_n(&s->used, s->used - freed, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&s->lock);
}

uint64_t lethe_slots_zombies(const struct lethe_slots *s)
{
    return __atomic_load_n(&s->nzombies, __ATOMIC_RELAXED);
}
