/*
 * hash.h - seeded hashing, inlined into the engine's hot paths.
 *
 * Byte keys go through XXH3 (Debian's libxxhash-dev, header-only with
 * XXH_INLINE_ALL) with the map's 64-bit random seed.
 *
 * uint64_t keys use a folded multiply: the 128-bit product of (key ^ seed)
 * and (the key byte-swapped ^ seed2), high half xor low half.  Every output
 * bit depends on every key bit (the tophash takes the top byte, the bucket
 * the low bits), and without both per-map secrets an attacker cannot choose
 * keys that collide; it costs one multiply and a byte swap, where XXH3's
 * 8-byte path costs two multiplies plus a dozen shifts and rotates, and on
 * a lookup that waits for memory every instruction saved lets more lookups
 * overlap.
 *
 * Both factors depend on the key.  With a constant second factor (the
 * first version: (key ^ seed) * seed2) the product is linear in the key,
 * and structured keys (sequential ids, aligned pointers, ids shifted into
 * place) land on a Weyl sequence of buckets that some seeds spread badly.
 * Measured at 6.5 keys per bucket in 2^12 buckets, the fullest bucket over
 * 200 seeds, for keys i << s (s = 0, 3, 6, 12, 20, 32, 40, 44, 48):
 *   (key ^ seed) * seed2                    73 44 56 19 52 25 32 61 30
 *   (key ^ seed) * (rotl(key, 32) ^ seed2)  33 44 29 25 27 38 29 25 30
 *   (key ^ seed) * (bswap(key) ^ seed2)     22 23 27 30 25 35 26 23 22
 *   two multiplies (fold, then again)       22 22 21 22 22 21 23 21 22
 *   random keys                             23
 * The byte swap brings the high bytes (where shifted ids live) into the
 * low half of the second factor; a second multiply would be random-like
 * but adds its latency to every lookup.  tests/unit checks the bound.
 */
#ifndef MG_HASH_H
#define MG_HASH_H

#include <stddef.h>
#include <stdint.h>

#define XXH_INLINE_ALL
#define XXH_STATIC_LINKING_ONLY
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wshadow"
#endif
#include <xxhash.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

static inline uint64_t mg__hash_u64(uint64_t key, uint64_t seed, uint64_t seed2)
{
    __extension__ typedef unsigned __int128 mg_u128;
    mg_u128 r = (mg_u128)(key ^ seed) * (__builtin_bswap64(key) ^ seed2);
    return (uint64_t)(r >> 64) ^ (uint64_t)r;
}

static inline uint64_t mg__hash_bytes(const void *key, size_t len, uint64_t seed)
{
    return XXH3_64bits_withSeed(key, len, seed);
}

#endif
