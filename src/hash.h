/*
 * hash.h - seeded hashing, inlined into the engine's hot paths.
 *
 * Byte keys go through XXH3 (Debian's libxxhash-dev, header-only with
 * XXH_INLINE_ALL) with the map's 64-bit random seed.
 *
 * uint64_t keys use a folded multiply: the 128-bit product of (key ^ seed)
 * and a second random odd 64-bit secret, high half xor low half.  Every
 * output bit depends on every key bit (the tophash takes the top byte, the
 * bucket the low bits), and without both per-map secrets an attacker cannot
 * choose keys that collide; it costs one multiply, where XXH3's 8-byte path
 * costs two plus a dozen shifts and rotates, and on a lookup that waits for
 * memory every instruction saved lets more lookups overlap.
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
    mg_u128 r = (mg_u128)(key ^ seed) * seed2;
    return (uint64_t)(r >> 64) ^ (uint64_t)r;
}

static inline uint64_t mg__hash_bytes(const void *key, size_t len, uint64_t seed)
{
    return XXH3_64bits_withSeed(key, len, seed);
}

#endif
