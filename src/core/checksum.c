/* checksum.c — the page checksum (contract and miss probability in checksum.h) and the zero
 * test.
 *
 * Speed: the lanes are independent chains of xor, multiply, rotate, so the work is bound by
 * multiply throughput, not latency. With AVX-512 one vpmullq multiplies 8 lanes; four
 * registers keep 32 lanes in flight and a page takes 64 vector steps (44 ns on the development
 * machine's AMD EPYC, about a 4 KiB memcpy). The portable code runs the same 32 lanes 8 at a
 * time (eight locals stay in registers), a quarter of the page's words per pass (285 ns there).
 * The implementation is picked once, on first use, from __builtin_cpu_supports (which also
 * checks that the OS saves the AVX-512 state).
 */
#include "core/checksum.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define WORDS 512 /* 64-bit words in a page */
#define LANES 32
#define MUL   0x9e3779b97f4a7c15ULL /* odd: multiplying by it is a bijection mod 2^64 */
#define ROT   31

/* One seed per lane, so that lanes are different functions (swapping the words of two lanes
 * changes the result). SplitMix64 outputs of a fixed start. */
static const uint64_t seeds[LANES] __attribute__((aligned(64))) = {
    0x00dd5380345fa7e1ULL, 0x7b18f582d52c2f96ULL, 0xa7b1ab51e29382d1ULL, 0xaa70c336f72271c6ULL,
    0x3f7dae9fda5354bcULL, 0x06a2dbfc023c98aaULL, 0xf80b6cefb0db32bdULL, 0x674da108737bbdaeULL,
    0x02d36d281519db41ULL, 0x56b5bf9a76ccaa1cULL, 0x17ad574da1394b5aULL, 0xa218e63dec8c0140ULL,
    0x1f069ae9da91f530ULL, 0x3d7848e1c66263bfULL, 0x75bd2e5e9823556fULL, 0x10af777660fb0f10ULL,
    0x50eda8c6a1fe444dULL, 0xa6936d3677a6eed1ULL, 0x5d8ba5b69aab8b95ULL, 0xfccecf6c9b6651a4ULL,
    0x7b502651f9ec3096ULL, 0xa2f3562425a4ee39ULL, 0xa664722086e2db79ULL, 0xbbf16a00b7a6e1d0ULL,
    0xad5aa344ebb86d1eULL, 0xeffafd87a587d185ULL, 0x4d702fa9a085fb09ULL, 0x735323ae82fbbaa1ULL,
    0xb7bc9cf55c27a240ULL, 0xe9ace27b0f2bcdafULL, 0x9a443757150a23dbULL, 0xf033deef31febe2cULL,
};

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

#define FIN_SHIFT1 31
#define FIN_MUL1   0xbf58476d1ce4e5b9ULL
#define FIN_SHIFT2 27
#define FIN_MUL2   0x94d049bb133111ebULL
#define FIN_SHIFT3 31

/* Finishes a lane: a bijection that spreads every bit of the lane over the whole result. A
 * lane's last step (xor, multiply, rotate) maps a flip of a word's top bit to one fixed bit of
 * the lane, whatever the data; without this mix, the same flip in the last words of two lanes
 * cancelled in the XOR of the lanes. */
static inline uint64_t finish(uint64_t x)
{
    x ^= x >> FIN_SHIFT1;
    x *= FIN_MUL1;
    x ^= x >> FIN_SHIFT2;
    x *= FIN_MUL2;
    x ^= x >> FIN_SHIFT3;
    return x;
}

#define STEP(h, word) h = rotl64(((h) ^ (word)) * MUL, ROT)

uint64_t lethe_page_checksum_portable(const void *page)
{
    const uint64_t *w = page;
    uint64_t x = 0;
    for (unsigned base = 0; base < LANES; base += 8) {
        const uint64_t *s = &seeds[base];
        uint64_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
        for (unsigned i = base; i < WORDS; i += LANES) {
            STEP(a, w[i]);
            STEP(b, w[i + 1]);
            STEP(c, w[i + 2]);
            STEP(d, w[i + 3]);
            STEP(e, w[i + 4]);
            STEP(f, w[i + 5]);
            STEP(g, w[i + 6]);
            STEP(h, w[i + 7]);
        }
        x ^= finish(a) ^ finish(b) ^ finish(c) ^ finish(d) ^ finish(e) ^ finish(f) ^ finish(g) ^
             finish(h);
    }
    return x;
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512dq"))) static inline __m512i finish8(__m512i x)
{
    x = _mm512_xor_si512(x, _mm512_srli_epi64(x, FIN_SHIFT1));
    x = _mm512_mullo_epi64(x, _mm512_set1_epi64((long long)FIN_MUL1));
    x = _mm512_xor_si512(x, _mm512_srli_epi64(x, FIN_SHIFT2));
    x = _mm512_mullo_epi64(x, _mm512_set1_epi64((long long)FIN_MUL2));
    return _mm512_xor_si512(x, _mm512_srli_epi64(x, FIN_SHIFT3));
}

__attribute__((target("avx512f,avx512dq"))) static uint64_t checksum_avx512(const void *page)
{
    const __m512i *v = page;
    const __m512i k = _mm512_set1_epi64((long long)MUL);
    __m512i a = _mm512_load_si512(&seeds[0]), b = _mm512_load_si512(&seeds[8]);
    __m512i c = _mm512_load_si512(&seeds[16]), d = _mm512_load_si512(&seeds[24]);
    for (unsigned i = 0; i < WORDS / 8; i += 4) {
        a = _mm512_rol_epi64(_mm512_mullo_epi64(_mm512_xor_si512(a, _mm512_loadu_si512(v + i)), k),
                             ROT);
        b = _mm512_rol_epi64(
            _mm512_mullo_epi64(_mm512_xor_si512(b, _mm512_loadu_si512(v + i + 1)), k), ROT);
        c = _mm512_rol_epi64(
            _mm512_mullo_epi64(_mm512_xor_si512(c, _mm512_loadu_si512(v + i + 2)), k), ROT);
        d = _mm512_rol_epi64(
            _mm512_mullo_epi64(_mm512_xor_si512(d, _mm512_loadu_si512(v + i + 3)), k), ROT);
    }
    a = _mm512_xor_si512(_mm512_xor_si512(finish8(a), finish8(b)),
                         _mm512_xor_si512(finish8(c), finish8(d)));
    __m256i y = _mm256_xor_si256(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
    __m128i z = _mm_xor_si128(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
    return (uint64_t)_mm_cvtsi128_si64(z) ^ (uint64_t)_mm_extract_epi64(z, 1);
}
#endif

typedef uint64_t (*checksum_fn)(const void *page);
static checksum_fn chosen; /* resolved on first use; every thread resolves to the same */

static checksum_fn choose(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init(); /* we may run before libgcc's constructor (an LD_PRELOAD runtime) */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
        return checksum_avx512;
#endif
    return lethe_page_checksum_portable;
}

static checksum_fn impl(void)
{
    checksum_fn f = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
    if (!f) {
        f = choose();
        __atomic_store_n(&chosen, f, __ATOMIC_RELAXED);
    }
    return f;
}

uint64_t lethe_page_checksum(const void *page)
{
    return impl()(page);
}

const char *lethe_page_checksum_impl(void)
{
    return impl() == lethe_page_checksum_portable ? "portable" : "avx512";
}

bool lethe_page_is_zero(const void *page)
{
    const uint64_t *w = page;
    for (unsigned i = 0; i < WORDS; i += 8) {
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
            return false;
    }
    return true;
}
