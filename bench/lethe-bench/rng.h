/* rng.h — lethe-bench's random numbers and hashes, all inline and lock-free.
 *
 *  - bench_mix64(): a 64-bit finalizer (xor-shift-multiply rounds): a bijection on 64-bit
 *    words with full avalanche. It places keys in buckets, scrambles Zipfian ranks, derives
 *    value check bits and seeds the generators.
 *  - struct bench_rng: xoshiro256** seeded through splitmix64, one per thread. Fast, 2^256
 *    period, good enough for workload generation (not for cryptography).
 */
#ifndef BENCH_RNG_H
#define BENCH_RNG_H

#include <stdint.h>

static inline uint64_t bench_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Maps a uniformly distributed 64-bit word onto [0, n) without division (Lemire's
 * multiply-high reduction; the bias is below n / 2^64). */
static inline uint64_t bench_reduce(uint64_t word, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)word * n) >> 64);
}

struct bench_rng {
    uint64_t s[4];
};

static inline uint64_t bench_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline void bench_rng_seed(struct bench_rng *r, uint64_t seed)
{
    /* splitmix64 expands the seed, so nearby seeds give unrelated streams */
    for (int i = 0; i < 4; i++) {
        seed += 0x9e3779b97f4a7c15ULL;
        r->s[i] = bench_mix64(seed);
    }
}

static inline uint64_t bench_rng_next(struct bench_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = bench_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = bench_rotl(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double bench_rng_unit(struct bench_rng *r)
{
    return (double)(bench_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n). */
static inline uint64_t bench_rng_below(struct bench_rng *r, uint64_t n)
{
    return bench_reduce(bench_rng_next(r), n);
}

#endif
