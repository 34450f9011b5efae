/* checksum.h — what a page holds, in 64 bits: the checksum that vouches for every remote copy
 * (internal to src/core and src/rebalancer).
 *
 * The swapper keeps one checksum per remote slot (slots.h). It is computed from the bytes sent
 * when a page is written back, verified against the bytes received at every swap-in (a
 * mismatch fails the fault: the remote copy is corrupted or stale), and compared with a parked
 * page before the page is dropped without a write (a write that slipped past the dirty scan
 * changes it; docs/SWAPPER.md, "Late writes").
 *
 * The function: 32 independent lanes, lane j hashing words j, j+32, j+64, ... of the page with
 * h = rotl64((h ^ w) * K, 31) (K odd) from its own seed; each lane is finished by a bijective
 * mix (SplitMix64's finalizer) and the lanes are XORed together. For a fixed page everywhere
 * else, the checksum is a bijection of any one 64-bit word (each step is a bijection of the
 * state and of the word; the finishing mix and the XOR are bijections), hence:
 *   - a change of one word always changes the checksum;
 *   - when a change leaves at least one word uniformly random (given the rest of the page), the
 *     new checksum is uniform over 2^64 values: it equals the old one with probability exactly
 *     2^-64. That is the miss probability for a random change.
 * It is not a MAC: someone who can write the remote memory and knows the function can forge it.
 *
 * Two implementations compute the same function: AVX-512 (F + DQ: 64-bit vector multiply and
 * rotate, four 8-lane registers) where the CPU has it, checked at run time, and portable C.
 */
#ifndef LETHE_CHECKSUM_H
#define LETHE_CHECKSUM_H

#include <stdbool.h>
#include <stdint.h>

/* Checksum of one 4 KiB page, with the fastest implementation this CPU runs. */
uint64_t lethe_page_checksum(const void *page);
/* The same function in portable C (tests compare the two; the benchmark times both). */
uint64_t lethe_page_checksum_portable(const void *page);
/* "avx512" or "portable": the implementation lethe_page_checksum uses on this CPU. */
const char *lethe_page_checksum_impl(void);

/* Whether a page holds only zero bytes (a never-written page must: "Late writes"). */
bool lethe_page_is_zero(const void *page);

#endif
