/*
 * test_unit.c - the public API, case by case: options, the u64 and byte-key
 * calls, NULL maps, clear, Go's exact growth points, same-size growth,
 * incremental evacuation, shrinking and its hysteresis, iteration order
 * and Go's iteration guarantees under mutation, names and messages, stats.
 *
 * Every case is its own ctest test (label unit); run one by hand with
 *     test_unit CASE
 * The whole-table validator (T_VALID) runs after every step that matters.
 */
#include "internal.h"
#include "mapguard.h"
#include "../test.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static mg_map *new_map(mg_keykind kind, size_t hint)
{
    mg_options o = {.key = kind, .hint = hint, .name = "unit"};
    mg_map *m = mg_new(&o);
    if (!m)
        T_FAIL("mg_new(kind=%d, hint=%zu) failed: errno %d", (int)kind, hint, errno);
    return m;
}

static mg_stats st(const mg_map *m)
{
    mg_stats s;
    int rc = mg_stats_get(m, &s);
    T_EQ_I(rc, MG_OK);
    return s;
}

/* Go's rule, written out independently of the engine: a map of B buckets
 * is over its load when count > 8 and count > 13 * 2^B / 2. */
static bool go_over_load(size_t count, unsigned B)
{
    return count > 8 && count > 13 * (((size_t)1 << B) / 2);
}
static unsigned go_B_for(size_t count)
{
    unsigned B = 0;
    while (go_over_load(count, B))
        B++;
    return B;
}

/* Byte key number i: "k<i>" with a NUL and the number's bytes after it, so
 * keys contain NULs and differ in length. */
static size_t bkey(uint64_t i, unsigned char *buf)
{
    int n = snprintf((char *)buf, 32, "k%llu", (unsigned long long)i);
    size_t len = (size_t)n;
    buf[len++] = 0;
    memcpy(buf + len, &i, sizeof i);
    len += sizeof i;
    return len;
}
static bool bkey_parse(const void *k, size_t len, uint64_t *i)
{
    if (len < 1 + 1 + sizeof(uint64_t))
        return false;
    memcpy(i, (const unsigned char *)k + len - sizeof(uint64_t), sizeof *i);
    unsigned char buf[64];
    return bkey(*i, buf) == len && memcmp(buf, k, len) == 0;
}

static void put_u(mg_map *m, uint64_t k, uint64_t v)
{
    int rc = mg_put_u64(m, k, v);
    if (rc != MG_OK)
        T_FAIL("mg_put_u64(%llu) = %d", (unsigned long long)k, rc);
}
static void put_b(mg_map *m, uint64_t i, uint64_t v)
{
    unsigned char b[64];
    size_t n = bkey(i, b);
    int rc = mg_put(m, b, n, v);
    if (rc != MG_OK)
        T_FAIL("mg_put(key %llu) = %d", (unsigned long long)i, rc);
}
static bool get_b(mg_map *m, uint64_t i, uint64_t *v)
{
    unsigned char b[64];
    size_t n = bkey(i, b);
    return mg_get(m, b, n, v);
}
static bool del_b(mg_map *m, uint64_t i)
{
    unsigned char b[64];
    size_t n = bkey(i, b);
    return mg_del(m, b, n);
}
static void expect_u(mg_map *m, uint64_t k, uint64_t want)
{
    uint64_t v = ~want;
    if (!mg_get_u64(m, k, &v))
        T_FAIL("key %llu missing", (unsigned long long)k);
    if (v != want)
        T_FAIL("key %llu = %llu, want %llu", (unsigned long long)k,
               (unsigned long long)v, (unsigned long long)want);
}

/* ------------------------------------------------------------------------ */
/* mg_new                                                                   */
/* ------------------------------------------------------------------------ */

static void t_new_defaults(void)
{
    mg_map *m = mg_new(NULL);
    T_ASSERT(m);
    T_EQ_I(mg_key_kind(m), MG_KEY_U64);
    T_STREQ(mg_name(m), "");
    T_EQ_U(mg_len(m), 0);
    mg_stats s = st(m);
    T_EQ_U(s.B, 0);
    T_EQ_U(s.count, 0);
    T_ASSERT(!s.growing);
    put_u(m, 1, 2);
    expect_u(m, 1, 2);
    T_VALID(m);
    mg_free(m);

    mg_options zero;
    memset(&zero, 0, sizeof zero);
    m = mg_new(&zero);
    T_ASSERT(m);
    T_EQ_I(mg_key_kind(m), MG_KEY_U64);
    T_STREQ(mg_name(m), "");
    mg_free(m);
    mg_free(NULL); /* a no-op */
}

static void t_new_name_copied(void)
{
    char name[32];
    strcpy(name, "sessions");
    mg_options o = {.name = name};
    mg_map *m = mg_new(&o);
    T_ASSERT(m);
    T_ASSERT(mg_name(m) != name);
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = 0;
    T_STREQ(mg_name(m), "sessions");
    mg_free(m);

    o.name = "";
    m = mg_new(&o);
    T_ASSERT(m);
    T_STREQ(mg_name(m), "");
    mg_free(m);
}

static void t_new_bad_mode(void)
{
    mg_options o = {.mode = (mg_mode)99};
    errno = 0;
    T_ASSERT(mg_new(&o) == NULL);
    T_EQ_I(errno, EINVAL);
    o.mode = (mg_mode)(MG_ACTOR + 1);
    errno = 0;
    T_ASSERT(mg_new(&o) == NULL);
    T_EQ_I(errno, EINVAL);
    o.mode = (mg_mode)-1;
    errno = 0;
    T_ASSERT(mg_new(&o) == NULL);
    T_EQ_I(errno, EINVAL);
}

static void t_new_every_mode(void)
{
    static const char *const names[] = {"unsync", "rwlock", "sharded",
                                        "readmostly", "snapshot", "actor"};
    for (int mode = MG_UNSYNC; mode <= MG_ACTOR; mode++) {
        T_ASSERT(strcmp(mg_mode_name((mg_mode)mode), names[mode]) == 0);
        for (int k = 0; k < 2; k++) {
            mg_options o = {.mode = (mg_mode)mode, .key = k ? MG_KEY_BYTES : MG_KEY_U64,
                            .name = "m"};
            mg_map *m = mg_new(&o);
            T_ASSERT(m != NULL);
            T_EQ_I(mg_mode_of(m), mode);
            T_EQ_I(mg_key_kind(m), o.key);
            T_ASSERT(strcmp(mg_name(m), "m") == 0);
            T_EQ_U(mg_len(m), 0);
            mg_free(m);
        }
    }
    T_ASSERT(mg_mode_name((mg_mode)6) == NULL);
    T_EQ_I(mg_mode_of(NULL), MG_UNSYNC);
    /* Options out of range are refused. */
    mg_options o = {.mode = MG_SHARDED, .shards = 65537};
    errno = 0;
    T_ASSERT(mg_new(&o) == NULL);
    T_EQ_I(errno, EINVAL);
    o = (mg_options){.mode = MG_ACTOR, .queue = (1u << 20) + 1};
    errno = 0;
    T_ASSERT(mg_new(&o) == NULL);
    T_EQ_I(errno, EINVAL);
}

static void t_new_bad_key_kind(void)
{
    mg_options o = {.key = (mg_keykind)2};
    errno = 0;
    T_ASSERT(mg_new(&o) == NULL);
    T_EQ_I(errno, EINVAL);
    o.key = (mg_keykind)-1;
    errno = 0;
    T_ASSERT(mg_new(&o) == NULL);
    T_EQ_I(errno, EINVAL);
}

/* A counting allocator that keeps each block's size in a header, so a free
 * with the wrong size is caught. */
typedef struct {
    size_t live_bytes, live_blocks, calls;
} counter;
#define HDR 16
static void *c_malloc(void *ctx, size_t size)
{
    counter *c = ctx;
    unsigned char *p = malloc(size + HDR);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    c->live_bytes += size;
    c->live_blocks++;
    c->calls++;
    return p + HDR;
}
static void *c_calloc(void *ctx, size_t size)
{
    void *p = c_malloc(ctx, size);
    if (p)
        memset(p, 0, size);
    return p;
}
static void c_free(void *ctx, void *p, size_t size)
{
    counter *c = ctx;
    if (!p)
        T_FAIL("free(NULL) reached the allocator");
    unsigned char *h = (unsigned char *)p - HDR;
    size_t was;
    memcpy(&was, h, sizeof was);
    if (was != size)
        T_FAIL("free of a %zu-byte block with size %zu", was, size);
    c->live_bytes -= size;
    c->live_blocks--;
    free(h);
}

static void t_new_bad_allocator(void)
{
    counter c = {0};
    mg_allocator a = {c_malloc, c_calloc, c_free, &c};
    for (int which = 0; which < 3; which++) {
        mg_allocator b = a;
        if (which == 0)
            b.malloc = NULL;
        else if (which == 1)
            b.calloc = NULL;
        else
            b.free = NULL;
        mg_options o = {.alloc = &b};
        errno = 0;
        T_ASSERT(mg_new(&o) == NULL);
        T_EQ_I(errno, EINVAL);
    }
    T_EQ_U(c.calls, 0);
}

static void t_custom_allocator(void)
{
    counter c = {0};
    for (int kind = 0; kind < 2; kind++) {
        mg_allocator a = {c_malloc, c_calloc, c_free, &c};
        mg_options o = {.key = kind ? MG_KEY_BYTES : MG_KEY_U64, .name = "counted",
                        .hint = 100, .alloc = &a};
        mg_map *m = mg_new(&o);
        T_ASSERT(m);
        /* The struct is copied: changing ours afterwards changes nothing. */
        memset(&a, 0, sizeof a);
        T_ASSERT(c.calls > 0);
        for (uint64_t i = 0; i < 5000; i++) {
            if (kind)
                put_b(m, i, i);
            else
                put_u(m, i, i);
        }
        for (uint64_t i = 0; i < 4990; i++)
            T_ASSERT(kind ? del_b(m, i) : mg_del_u64(m, i));
        T_VALID(m);
        T_ASSERT(c.live_bytes > 0);
        mg_free(m);
        T_EQ_U(c.live_bytes, 0);
        T_EQ_U(c.live_blocks, 0);
    }
}

/* Every mode copies the allocator struct too, including for the engine
 * maps it creates later (MG_READMOSTLY makes a dirty map after each
 * promotion): a struct that is gone after mg_new must not be used. */
static void t_custom_allocator_modes(void)
{
    static const mg_mode modes[] = {MG_RWLOCK, MG_SHARDED, MG_READMOSTLY, MG_SNAPSHOT,
                                    MG_ACTOR};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        counter c = {0};
        mg_allocator *a = malloc(sizeof *a);
        T_ASSERT(a);
        *a = (mg_allocator){c_malloc, c_calloc, c_free, &c};
        mg_options o = {.mode = modes[i], .shards = 4, .alloc = a};
        mg_map *m = mg_new(&o);
        T_ASSERT(m);
        memset(a, 0, sizeof *a); /* ours is gone: the map must not look */
        free(a);
        uint64_t v;
        for (uint64_t round = 0; round < 4; round++) {
            for (uint64_t k = round * 1000; k < (round + 1) * 1000; k++)
                T_EQ_I(mg_put_u64(m, k, k), MG_OK);
            for (uint64_t k = 0; k < (round + 1) * 1000; k++) /* misses: promote */
                T_ASSERT(mg_get_u64(m, k, &v) && v == k);
        }
        T_EQ_U(mg_len(m), 4000);
        T_ASSERT(c.calls > 0);
        mg_free(m);
        T_EQ_U(c.live_bytes, 0);
        T_EQ_U(c.live_blocks, 0);
    }
}

/* Structured u64 keys (sequential ids, aligned pointers, ids shifted into
 * place) spread nearly like random ones under every seed: at 6.5 keys per
 * bucket the fullest of 2^12 buckets, over 200 seeds, stays under 40
 * (random keys: 23; the first u64 hash, linear in the key, reached 73 for
 * sequential keys; see src/hash.h).  Fixed seeds: deterministic. */
static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void t_hash_structured_keys(void)
{
    enum { B = 12 };
    const size_t nb = (size_t)1 << B, n = nb * 13 / 2;
    static unsigned cnt[1 << B];
    static const int shifts[] = {0, 3, 6, 12, 20, 32, 40, 44, 48};
    uint64_t sm = 12345;
    unsigned worst = 0;
    for (int t = 0; t < 200; t++) {
        uint64_t seed = splitmix(&sm), seed2 = splitmix(&sm) | 1;
        for (size_t si = 0; si < sizeof shifts / sizeof shifts[0]; si++) {
            memset(cnt, 0, sizeof cnt);
            for (size_t i = 0; i < n; i++)
                cnt[mg__hash_u64((uint64_t)i << shifts[si], seed, seed2) & (nb - 1)]++;
            for (size_t b = 0; b < nb; b++)
                if (cnt[b] > worst)
                    worst = cnt[b];
        }
    }
    if (worst > 40)
        T_FAIL("a bucket got %u keys (random keys: at most about 23)", worst);
}

/* ------------------------------------------------------------------------ */
/* put / get / del                                                          */
/* ------------------------------------------------------------------------ */

static void t_u64_basic(void)
{
    mg_map *m = new_map(MG_KEY_U64, 0);
    uint64_t v = 77;
    T_ASSERT(!mg_get_u64(m, 0, &v));
    T_EQ_U(v, 77); /* untouched on a miss */
    T_ASSERT(!mg_del_u64(m, 0));
    put_u(m, 0, 10);
    put_u(m, UINT64_MAX, 20);
    put_u(m, 1, 30);
    T_EQ_U(mg_len(m), 3);
    expect_u(m, 0, 10);
    expect_u(m, UINT64_MAX, 20);
    expect_u(m, 1, 30);
    T_ASSERT(mg_get_u64(m, 1, NULL)); /* val may be NULL */
    T_ASSERT(!mg_get_u64(m, 2, NULL));
    /* Update keeps len. */
    put_u(m, 1, 31);
    T_EQ_U(mg_len(m), 3);
    expect_u(m, 1, 31);
    T_VALID(m);
    /* del returns found. */
    T_ASSERT(mg_del_u64(m, 1));
    T_ASSERT(!mg_del_u64(m, 1));
    T_ASSERT(!mg_get_u64(m, 1, NULL));
    T_EQ_U(mg_len(m), 2);
    T_VALID(m);
    /* Many keys, every value checked, then deleted in a different order. */
    for (uint64_t i = 0; i < 20000; i++)
        put_u(m, i * 0x9E3779B97F4A7C15ull, i);
    T_VALID(m);
    for (uint64_t i = 0; i < 20000; i++)
        expect_u(m, i * 0x9E3779B97F4A7C15ull, i);
    for (uint64_t i = 20000; i-- > 0;)
        if (i % 3)
            T_ASSERT(mg_del_u64(m, i * 0x9E3779B97F4A7C15ull));
    T_VALID(m);
    for (uint64_t i = 0; i < 20000; i++) {
        uint64_t k = i * 0x9E3779B97F4A7C15ull;
        if (i % 3)
            T_ASSERT(!mg_get_u64(m, k, NULL));
        else
            expect_u(m, k, i);
    }
    mg_free(m);
}

static void t_bytes_basic(void)
{
    mg_map *m = new_map(MG_KEY_BYTES, 0);
    uint64_t v = 5;
    /* The empty key, with and without a pointer. */
    T_ASSERT(!mg_get(m, "", 0, &v));
    T_EQ_I(mg_put(m, NULL, 0, 100), MG_OK);
    T_ASSERT(mg_get(m, "", 0, &v));
    T_EQ_U(v, 100);
    T_ASSERT(mg_get(m, NULL, 0, &v));
    T_EQ_I(mg_put(m, "x", 0, 101), MG_OK); /* same empty key */
    T_EQ_U(mg_len(m), 1);
    T_ASSERT(mg_get(m, NULL, 0, &v));
    T_EQ_U(v, 101);
    /* Keys with NUL bytes: all distinct, prefixes too. */
    const char a[] = {'a', 0, 'b'};
    const char b[] = {'a', 0, 'c'};
    const char c[] = {'a', 0};
    const char d[] = {'a'};
    const char z[] = {0, 0, 0, 0};
    T_EQ_I(mg_put(m, a, sizeof a, 1), MG_OK);
    T_EQ_I(mg_put(m, b, sizeof b, 2), MG_OK);
    T_EQ_I(mg_put(m, c, sizeof c, 3), MG_OK);
    T_EQ_I(mg_put(m, d, sizeof d, 4), MG_OK);
    T_EQ_I(mg_put(m, z, 1, 5), MG_OK);
    T_EQ_I(mg_put(m, z, 4, 6), MG_OK);
    T_EQ_U(mg_len(m), 7);
    T_ASSERT(mg_get(m, a, sizeof a, &v));
    T_EQ_U(v, 1);
    T_ASSERT(mg_get(m, b, sizeof b, &v));
    T_EQ_U(v, 2);
    T_ASSERT(mg_get(m, c, sizeof c, &v));
    T_EQ_U(v, 3);
    T_ASSERT(mg_get(m, d, sizeof d, &v));
    T_EQ_U(v, 4);
    T_ASSERT(mg_get(m, z, 1, &v));
    T_EQ_U(v, 5);
    T_ASSERT(mg_get(m, z, 4, &v));
    T_EQ_U(v, 6);
    T_ASSERT(!mg_get(m, z, 2, &v));
    T_ASSERT(!mg_get(m, z, 3, NULL));
    T_VALID(m);
    /* Long keys: 1 MiB and 1 MiB + 1 byte differing only at the end. */
    size_t L = (size_t)1 << 20;
    unsigned char *big = malloc(L + 1);
    T_ASSERT(big);
    memset(big, 'q', L + 1);
    T_EQ_I(mg_put(m, big, L, 7), MG_OK);
    T_EQ_I(mg_put(m, big, L + 1, 8), MG_OK);
    big[L - 1] = 'r';
    T_EQ_I(mg_put(m, big, L, 9), MG_OK);
    T_EQ_U(mg_len(m), 10);
    T_ASSERT(mg_get(m, big, L, &v));
    T_EQ_U(v, 9);
    big[L - 1] = 'q';
    T_ASSERT(mg_get(m, big, L, &v));
    T_EQ_U(v, 7);
    T_ASSERT(mg_get(m, big, L + 1, &v));
    T_EQ_U(v, 8);
    T_ASSERT(mg_del(m, big, L));
    T_ASSERT(!mg_del(m, big, L));
    T_ASSERT(!mg_get(m, big, L, NULL));
    T_VALID(m);
    /* Update keeps len. */
    size_t n = mg_len(m);
    T_EQ_I(mg_put(m, a, sizeof a, 11), MG_OK);
    T_EQ_U(mg_len(m), n);
    T_ASSERT(mg_get(m, a, sizeof a, &v));
    T_EQ_U(v, 11);
    /* del returns found. */
    T_ASSERT(mg_del(m, c, sizeof c));
    T_ASSERT(!mg_del(m, c, sizeof c));
    T_ASSERT(mg_get(m, a, sizeof a, NULL)); /* its neighbours survive */
    T_ASSERT(mg_get(m, d, sizeof d, NULL));
    T_ASSERT(mg_del(m, NULL, 0));
    T_ASSERT(!mg_get(m, "", 0, NULL));
    T_EQ_U(mg_len(m), n - 2);
    /* Bad arguments. */
    T_EQ_I(mg_put(m, NULL, 1, 1), MG_EINVAL);
    T_ASSERT(!mg_get(m, NULL, 1, &v));
    T_ASSERT(!mg_del(m, NULL, 1));
    T_EQ_I(mg_put(m, big, MG_KEY_MAX + 1, 1), MG_EKEYLEN);
    T_ASSERT(!mg_get(m, big, MG_KEY_MAX + 1, NULL));
    T_ASSERT(!mg_del(m, big, MG_KEY_MAX + 1));
    T_EQ_U(mg_len(m), n - 2);
    T_VALID(m);
    free(big);
    /* Many keys through growth. */
    for (uint64_t i = 0; i < 20000; i++)
        put_b(m, i, i * 3);
    T_VALID(m);
    for (uint64_t i = 0; i < 20000; i++) {
        T_ASSERT(get_b(m, i, &v));
        T_EQ_U(v, i * 3);
    }
    for (uint64_t i = 0; i < 20000; i += 2)
        T_ASSERT(del_b(m, i));
    for (uint64_t i = 0; i < 20000; i++)
        T_EQ_I(get_b(m, i, NULL), i % 2 == 1);
    T_VALID(m);
    mg_free(m);
}

static void t_bytes_key_copied(void)
{
    mg_map *m = new_map(MG_KEY_BYTES, 0);
    char buf[16];
    strcpy(buf, "alpha");
    T_EQ_I(mg_put(m, buf, 5, 1), MG_OK);
    strcpy(buf, "omega");
    T_ASSERT(!mg_get(m, buf, 5, NULL));
    T_ASSERT(mg_get(m, "alpha", 5, NULL));
    mg_iter it;
    const void *k;
    size_t len;
    mg_iter_init(&it, m);
    T_ASSERT(mg_iter_next(&it, &k, &len, NULL));
    T_EQ_U(len, 5);
    T_ASSERT(memcmp(k, "alpha", 5) == 0);
    T_ASSERT(!mg_iter_next(&it, &k, &len, NULL));
    mg_iter_done(&it);
    mg_free(m);
}

/* ------------------------------------------------------------------------ */
/* NULL maps                                                                */
/* ------------------------------------------------------------------------ */

static int count_fn(const void *k, size_t len, uint64_t v, void *arg)
{
    (void)k, (void)len, (void)v;
    (*(size_t *)arg)++;
    return 0;
}

static void t_nil_map(void)
{
    uint64_t v = 9;
    T_ASSERT(!mg_get_u64(NULL, 1, &v));
    T_EQ_U(v, 9);
    T_ASSERT(!mg_get(NULL, "a", 1, &v));
    T_ASSERT(!mg_del_u64(NULL, 1));
    T_ASSERT(!mg_del(NULL, "a", 1));
    T_EQ_U(mg_len(NULL), 0);
    size_t n = 0;
    T_EQ_I(mg_range(NULL, count_fn, &n), 0);
    T_EQ_U(n, 0);
    mg_iter it;
    memset(&it, 0xa5, sizeof it); /* init must not trust the old content */
    mg_iter_init(&it, NULL);
    T_ASSERT(!mg_iter_next(&it, NULL, NULL, NULL));
    T_ASSERT(!mg_iter_next(&it, NULL, NULL, NULL));
    mg_iter_done(&it);
    mg_iter_done(&it);
    mg_clear(NULL);
    mg_stats s;
    memset(&s, 0xff, sizeof s);
    T_EQ_I(mg_stats_get(NULL, &s), MG_OK);
    T_EQ_U(s.count, 0);
    T_EQ_U(s.B, 0);
    T_EQ_U(s.bytes, 0);
    T_EQ_U(s.buckets, 0);
    T_EQ_U(s.grows_total, 0);
    T_ASSERT(!s.growing);
    T_ASSERT(s.load_factor == 0.0);
    T_EQ_I(mg_stats_get(NULL, NULL), MG_EINVAL);
    T_ASSERT(mg_name(NULL) == NULL);
    T_EQ_I(mg_key_kind(NULL), MG_KEY_U64);
    mg_free(NULL);
}

/* ------------------------------------------------------------------------ */
/* mg_clear                                                                 */
/* ------------------------------------------------------------------------ */

static void clear_case(mg_keykind kind, size_t hint, unsigned hintB)
{
    mg_map *m = new_map(kind, hint);
    T_EQ_U(st(m).B, hintB);
    mg_clear(m); /* clearing an empty map */
    T_EQ_U(mg_len(m), 0);
    T_EQ_U(st(m).B, hintB);
    T_VALID(m);
    for (int round = 0; round < 3; round++) {
        uint64_t n = 3000 + (uint64_t)round * 1000;
        for (uint64_t i = 0; i < n; i++) {
            if (kind == MG_KEY_BYTES)
                put_b(m, i, i + 1);
            else
                put_u(m, i, i + 1);
        }
        T_ASSERT(st(m).B > hintB);
        /* Leave a grow half done sometimes. */
        mg_clear(m);
        T_EQ_U(mg_len(m), 0);
        mg_stats s = st(m);
        T_EQ_U(s.count, 0);
        T_EQ_U(s.B, hintB);
        T_ASSERT(!s.growing);
        T_VALID(m);
        for (uint64_t i = 0; i < n; i++)
            T_ASSERT(kind == MG_KEY_BYTES ? !get_b(m, i, NULL)
                                          : !mg_get_u64(m, i, NULL));
        size_t seen = 0;
        T_EQ_I(mg_range(m, count_fn, &seen), 0);
        T_EQ_U(seen, 0);
        /* Reuse after clear. */
        for (uint64_t i = 0; i < 50; i++) {
            if (kind == MG_KEY_BYTES)
                put_b(m, i + 7, i);
            else
                put_u(m, i + 7, i);
        }
        T_EQ_U(mg_len(m), 50);
        for (uint64_t i = 0; i < 50; i++) {
            uint64_t v = 0;
            T_ASSERT(kind == MG_KEY_BYTES ? get_b(m, i + 7, &v)
                                          : mg_get_u64(m, i + 7, &v));
            T_EQ_U(v, i);
        }
        T_VALID(m);
    }
    mg_free(m);
}

static void t_clear(void)
{
    clear_case(MG_KEY_U64, 0, 0);
    clear_case(MG_KEY_BYTES, 0, 0);
    clear_case(MG_KEY_U64, 1000, 8);
    clear_case(MG_KEY_BYTES, 1000, 8);
    clear_case(MG_KEY_U64, 14, 2);
}

/* ------------------------------------------------------------------------ */
/* Growth (Go's exact points), hints, same-size growth, evacuation          */
/* ------------------------------------------------------------------------ */

static void t_growth_points(void)
{
    static const struct {
        size_t nth;
        unsigned B;
    } pts[] = {{9, 1}, {14, 2}, {27, 3}, {53, 4}, {105, 5}, {209, 6}};
    for (int kind = 0; kind < 2; kind++) {
        mg_map *m = new_map(kind ? MG_KEY_BYTES : MG_KEY_U64, 0);
        size_t p = 0;
        unsigned B = 0;
        uint64_t grows = 0;
        for (uint64_t i = 1; i <= 50000; i++) {
            if (kind)
                put_b(m, i, i);
            else
                put_u(m, i, i);
            mg_stats s = st(m);
            if (p < sizeof pts / sizeof pts[0] && i == pts[p].nth) {
                if (s.B != pts[p].B)
                    T_FAIL("after insert %llu: B=%u, Go has %u", (unsigned long long)i,
                           s.B, pts[p].B);
                p++;
            }
            if (s.B != go_B_for(i))
                T_FAIL("after insert %llu: B=%u, Go has %u (kind %d)",
                       (unsigned long long)i, s.B, go_B_for(i), kind);
            if (s.B != B) {
                T_EQ_U(s.B, B + 1); /* one doubling at a time */
                grows++;
                B = s.B;
            }
            T_EQ_U(s.grows_total, grows);
            T_EQ_U(s.shrinks_total, 0);
            T_EQ_U(s.count, i);
            if (i < 300 || i % 4999 == 0)
                T_VALID(m);
        }
        T_EQ_U(p, sizeof pts / sizeof pts[0]);
        T_EQ_U(B, 13);
        mg_free(m);
    }
}

static void t_hint_B(void)
{
    static const struct {
        size_t hint;
        unsigned B;
    } h[] = {{0, 0},     {1, 0},      {8, 0},       {9, 1},
             {13, 1},    {14, 2},     {26, 2},      {27, 3},
             {1000, 8},  {1000000, 18}, {SIZE_MAX, 0}, {SIZE_MAX / 2, 0}};
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++) {
        for (int kind = 0; kind < 2; kind++) {
            mg_options o = {.hint = h[i].hint, .key = kind ? MG_KEY_BYTES : MG_KEY_U64};
            mg_map *m = mg_new(&o);
            if (!m)
                T_FAIL("hint %zu: mg_new failed, errno %d", h[i].hint, errno);
            mg_stats s = st(m);
            if (s.B != h[i].B)
                T_FAIL("hint %zu: B=%u, Go has %u", h[i].hint, s.B, h[i].B);
            T_EQ_U(s.buckets, (size_t)1 << h[i].B);
            T_EQ_U(s.count, 0);
            T_ASSERT(s.bytes > 0);
            T_VALID(m);
            /* A hinted map does not grow before the hint is reached. */
            if (h[i].hint > 0 && h[i].hint <= 1000) {
                for (uint64_t k = 0; k < h[i].hint; k++)
                    kind ? put_b(m, k, k) : put_u(m, k, k);
                s = st(m);
                T_EQ_U(s.B, h[i].B);
                T_EQ_U(s.grows_total, 0);
                T_VALID(m);
            }
            mg_free(m);
        }
    }
    /* Every small hint: B is the smallest that holds it (Go's makemap). */
    for (size_t hint = 0; hint <= 2000; hint++) {
        mg_options o = {.hint = hint};
        mg_map *m = mg_new(&o);
        T_ASSERT(m);
        unsigned want = hint <= 8 ? 0 : hint <= 13 ? 1 : hint <= 26 ? 2 : go_B_for(hint);
        if (st(m).B != want || want != go_B_for(hint))
            T_FAIL("hint %zu: B=%u, Go has %u", hint, st(m).B, want);
        mg_free(m);
    }
}

/* Keys for the churn test, scrambled.  The seeded XXH3 of small sequential
 * integers spreads them over buckets more evenly than chance (about half
 * the overflow buckets a random spread gives), which makes same-size grows
 * rarer than Go's for keys 0, 1, 2...; scrambled keys spread like Go's
 * hash, and Go 1.19 starts a same-size grow after about 300 ops here. */
static uint64_t scramble(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void t_same_size_grow(void)
{
    mg_map *m = new_map(MG_KEY_U64, 0);
    for (uint64_t i = 0; i < 50; i++)
        put_u(m, scramble(i), i);
    mg_stats s0 = st(m);
    T_EQ_U(s0.B, 3);
    uint64_t oldest = 0, next = 50, seen_same = 0;
    size_t max_ovf = 0;
    for (int op = 0; op < 20000; op++) {
        put_u(m, scramble(next), next);
        next++;
        T_ASSERT(mg_del_u64(m, scramble(oldest)));
        oldest++;
        mg_stats s = st(m);
        T_EQ_U(s.count, 50);
        T_EQ_U(s.B, 3); /* churn at a steady size never doubles or shrinks */
        if (s.overflow_buckets > max_ovf)
            max_ovf = s.overflow_buckets;
        if (s.same_size_grow) {
            T_ASSERT(s.growing);
            T_EQ_U(s.old_buckets, 8);
            seen_same = 1;
        }
        if (op % 97 == 0 || s.growing)
            T_VALID(m);
    }
    mg_stats s = st(m);
    if (s.same_size_grows_total == 0)
        T_FAIL("no same-size grow in 20000 churn ops (overflow buckets %zu)",
               s.overflow_buckets);
    T_ASSERT(seen_same);
    /* Same-size grows compact: overflow buckets stay bounded (old and new
     * array together, while a grow runs). */
    if (max_ovf > 24)
        T_FAIL("%zu overflow buckets under churn at 50 keys", max_ovf);
    T_EQ_U(s.grows_total, s0.grows_total);
    T_EQ_U(s.shrinks_total, 0);
    for (uint64_t k = oldest; k < next; k++)
        expect_u(m, scramble(k), k);
    for (uint64_t k = 0; k < oldest; k++)
        T_ASSERT(!mg_get_u64(m, scramble(k), NULL));
    T_VALID(m);
    mg_free(m);
}

static void t_evacuation(void)
{
    for (int kind = 0; kind < 2; kind++) {
        mg_map *m = new_map(kind ? MG_KEY_BYTES : MG_KEY_U64, 0);
        /* Fill to one below a growth point with B = 8 (1665th insert). */
        uint64_t n = 13 * 128;
        for (uint64_t i = 0; i < n; i++)
            kind ? put_b(m, i, i) : put_u(m, i, i);
        mg_stats s = st(m);
        T_EQ_U(s.B, 8);
        T_ASSERT(!s.growing);
        kind ? put_b(m, n, n) : put_u(m, n, n);
        n++;
        s = st(m);
        T_EQ_U(s.B, 9);
        T_ASSERT(s.growing);
        T_ASSERT(!s.same_size_grow);
        T_EQ_U(s.old_buckets, 256);
        if (!(s.evacuated < s.old_buckets))
            T_FAIL("evacuated %zu of %zu right after the trigger", s.evacuated,
                   s.old_buckets);
        T_ASSERT(s.evacuated <= 2); /* one growWork: at most two old buckets */
        T_VALID(m);
        /* Reads never evacuate. */
        size_t ev = s.evacuated;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t v;
            T_ASSERT(kind ? get_b(m, i, &v) : mg_get_u64(m, i, &v));
            T_EQ_U(v, i);
        }
        size_t seen = 0;
        mg_range(m, count_fn, &seen);
        T_EQ_U(seen, n);
        s = st(m);
        T_EQ_U(s.evacuated, ev);
        T_ASSERT(s.growing);
        /* Every write moves evacuation on; it ends within old_buckets
         * writes.  Alternate updates, inserts and deletes. */
        size_t writes = 0;
        while (s.growing) {
            uint64_t k = writes % 3 == 2 ? n + writes : writes;
            if (writes % 3 == 1)
                T_ASSERT(kind ? del_b(m, k) : mg_del_u64(m, k));
            else
                kind ? put_b(m, k, k) : put_u(m, k, k);
            writes++;
            mg_stats s2 = st(m);
            if (s2.growing && s2.evacuated <= s.evacuated)
                T_FAIL("write %zu did not advance evacuation (%zu)", writes,
                       s2.evacuated);
            s = s2;
            T_VALID(m);
            if (writes > 256)
                T_FAIL("evacuation not done after %zu writes", writes);
        }
        T_EQ_U(s.old_buckets, 0);
        T_EQ_U(s.evacuated, 0);
        T_EQ_U(s.B, 9);
        T_EQ_U(s.grows_total, 9);
        mg_free(m);
    }
}

/* ------------------------------------------------------------------------ */
/* Shrinking                                                                */
/* ------------------------------------------------------------------------ */

static void t_shrink(void)
{
    for (int kind = 0; kind < 2; kind++) {
        mg_map *m = new_map(kind ? MG_KEY_BYTES : MG_KEY_U64, 0);
        const uint64_t N = 100000;
        for (uint64_t i = 0; i < N; i++)
            kind ? put_b(m, i, i) : put_u(m, i, i);
        mg_stats big = st(m);
        T_EQ_U(big.B, go_B_for(N));
        T_EQ_U(big.shrinks_total, 0);
        for (uint64_t i = 100; i < N; i++) {
            T_ASSERT(kind ? del_b(m, i) : mg_del_u64(m, i));
            if (i % 10007 == 0)
                T_VALID(m);
        }
        mg_stats s = st(m);
        T_EQ_U(s.count, 100);
        if (s.B >= big.B)
            T_FAIL("B=%u after deleting down to 100 keys (was %u)", s.B, big.B);
        T_ASSERT(s.B <= 8);
        T_ASSERT(s.shrinks_total > 0);
        if (s.bytes * 20 > big.bytes)
            T_FAIL("bytes %zu after shrinking, %zu before", s.bytes, big.bytes);
        T_VALID(m);
        for (uint64_t i = 0; i < 100; i++) {
            uint64_t v;
            T_ASSERT(kind ? get_b(m, i, &v) : mg_get_u64(m, i, &v));
            T_EQ_U(v, i);
        }
        for (uint64_t i = 100; i < 1000; i++)
            T_ASSERT(kind ? !get_b(m, i, NULL) : !mg_get_u64(m, i, NULL));
        /* It still grows normally afterwards. */
        for (uint64_t i = 100; i < 5000; i++)
            kind ? put_b(m, i, i) : put_u(m, i, i);
        T_VALID(m);
        T_EQ_U(mg_len(m), 5000);
        mg_free(m);
    }
}

/* A shrink is incremental too: it starts on the delete that crosses the
 * shrink point, reads do not move it, and later writes finish it. */
static void t_shrink_incremental(void)
{
    for (int kind = 0; kind < 2; kind++) {
        mg_map *m = new_map(kind ? MG_KEY_BYTES : MG_KEY_U64, 0);
        const uint64_t N = 13 * 512; /* B = 10 */
        for (uint64_t i = 0; i < N; i++)
            kind ? put_b(m, i, i) : put_u(m, i, i);
        T_EQ_U(st(m).B, 10);
        uint64_t k = 0;
        mg_stats s;
        for (;;) {
            T_ASSERT(kind ? del_b(m, k) : mg_del_u64(m, k));
            k++;
            s = st(m);
            if (s.shrinks_total)
                break;
            T_ASSERT(!s.growing);
        }
        /* S1: count <= loadmax(B) / MG_SHRINK_DIV */
        T_EQ_U(s.count, 13 * 512 / MG_SHRINK_DIV);
        T_ASSERT(s.growing);
        T_ASSERT(s.shrinking);
        T_ASSERT(!s.same_size_grow);
        T_EQ_U(s.B, 8); /* S1: 416 <= loadmax(8) / MG_SHRINK_ROOM */
        T_EQ_U(s.old_buckets, 1024);
        T_ASSERT(s.evacuated < s.old_buckets);
        T_VALID(m);
        size_t ev = s.evacuated;
        for (uint64_t i = k; i < N; i++) {
            uint64_t v;
            T_ASSERT(kind ? get_b(m, i, &v) : mg_get_u64(m, i, &v));
            T_EQ_U(v, i);
        }
        s = st(m);
        T_EQ_U(s.evacuated, ev);
        size_t writes = 0;
        while (s.growing) {
            /* updates of present keys drive it as well as deletes */
            uint64_t key = k + writes % 100;
            if (writes % 2)
                kind ? put_b(m, key, key) : put_u(m, key, key);
            else
                T_ASSERT(kind ? del_b(m, N + writes) == false
                              : mg_del_u64(m, N + writes) == false);
            writes++;
            mg_stats s2 = st(m);
            if (writes % 2 && s2.growing && s2.evacuated <= s.evacuated)
                T_FAIL("write %zu did not advance the shrink (%zu)", writes,
                       s2.evacuated);
            s = s2;
            if (writes % 16 == 0)
                T_VALID(m);
            if (writes > 2048)
                T_FAIL("shrink not done after %zu writes", writes);
        }
        T_EQ_U(s.B, 8); /* S1: 416 <= loadmax(8) / MG_SHRINK_ROOM */
        T_ASSERT(!s.shrinking);
        T_EQ_U(s.shrinks_total, 1);
        T_VALID(m);
        for (uint64_t i = k; i < N; i++) {
            uint64_t v;
            T_ASSERT(kind ? get_b(m, i, &v) : mg_get_u64(m, i, &v));
            T_EQ_U(v, i);
        }
        mg_free(m);
    }
}

static void t_shrink_floor(void)
{
    /* Never below the hint's B (nor below 2^MG_SHRINK_MIN_B buckets). */
    mg_map *m = new_map(MG_KEY_U64, 1000);
    for (uint64_t i = 0; i < 50000; i++)
        put_u(m, i, i);
    for (uint64_t i = 10; i < 50000; i++)
        T_ASSERT(mg_del_u64(m, i));
    mg_stats s = st(m);
    T_ASSERT(s.shrinks_total > 0);
    T_EQ_U(s.B, 8);
    T_VALID(m);
    /* Deleting the last key returns to the hint's B. */
    for (uint64_t i = 0; i < 10; i++)
        T_ASSERT(mg_del_u64(m, i));
    s = st(m);
    T_EQ_U(s.B, 8);
    T_ASSERT(!s.growing);
    T_VALID(m);
    mg_free(m);

    m = new_map(MG_KEY_U64, 0);
    for (uint64_t i = 0; i < 5000; i++)
        put_u(m, i, i);
    for (uint64_t i = 1; i < 5000; i++)
        T_ASSERT(mg_del_u64(m, i));
    s = st(m);
    T_ASSERT(s.B >= 4);
    T_ASSERT(mg_del_u64(m, 0));
    s = st(m);
    T_EQ_U(s.B, 0); /* S4: an emptied map is back at the hint's B */
    T_ASSERT(!s.growing);
    T_VALID(m);
    put_u(m, 1, 1);
    expect_u(m, 1, 1);
    mg_free(m);
}

static void oscillate(mg_map *m, uint64_t key, int n, uint64_t *changes)
{
    mg_stats s0 = st(m);
    for (int i = 0; i < n; i++) {
        put_u(m, key, (uint64_t)i);
        T_ASSERT(mg_del_u64(m, key));
        if (i % 1000 == 0)
            T_VALID(m);
    }
    mg_stats s = st(m);
    *changes = (s.grows_total + s.shrinks_total + s.same_size_grows_total) -
               (s0.grows_total + s0.shrinks_total + s0.same_size_grows_total);
}

static void t_hysteresis_grow(void)
{
    /* Around each growth point: count - 1 keys, then +1 / -1 forever. */
    static const uint64_t pts[] = {105, 209, 417, 833, 1665, 13 * 512 + 1};
    for (size_t p = 0; p < sizeof pts / sizeof pts[0]; p++) {
        mg_map *m = new_map(MG_KEY_U64, 0);
        for (uint64_t i = 0; i < pts[p] - 1; i++)
            put_u(m, i, i);
        mg_stats s = st(m);
        unsigned B = s.B;
        uint64_t changes;
        oscillate(m, 1u << 30, 10000, &changes);
        s = st(m);
        if (changes > 1)
            T_FAIL("%llu grows/shrinks oscillating at %llu keys (B %u -> %u)",
                   (unsigned long long)changes, (unsigned long long)pts[p], B, s.B);
        T_EQ_U(s.B, B + 1);
        T_EQ_U(s.shrinks_total, 0);
        T_VALID(m);
        mg_free(m);
    }
}

static void t_hysteresis_shrink(void)
{
    /* Find where deletes start a shrink, then oscillate there. */
    static const uint64_t sizes[] = {500, 2000, 20000};
    for (size_t p = 0; p < sizeof sizes / sizeof sizes[0]; p++) {
        mg_map *m = new_map(MG_KEY_U64, 0);
        for (uint64_t i = 0; i < sizes[p]; i++)
            put_u(m, i, i);
        /* Delete until the first shrink starts; put the key back. */
        uint64_t k = 0;
        for (;;) {
            T_ASSERT(k < sizes[p]);
            T_ASSERT(mg_del_u64(m, k));
            if (st(m).shrinks_total > 0)
                break;
            k++;
        }
        put_u(m, k, k);
        mg_stats s0 = st(m);
        uint64_t changes;
        /* Now -1 / +1 around the point where the shrink began. */
        for (int i = 0; i < 10000; i++) {
            T_ASSERT(mg_del_u64(m, k));
            put_u(m, k, k);
            if (i % 1000 == 0)
                T_VALID(m);
        }
        mg_stats s = st(m);
        changes = (s.grows_total + s.shrinks_total + s.same_size_grows_total) -
                  (s0.grows_total + s0.shrinks_total + s0.same_size_grows_total);
        if (changes > 1)
            T_FAIL("%llu grows/shrinks oscillating at the shrink point of %llu keys",
                   (unsigned long long)changes, (unsigned long long)sizes[p]);
        T_ASSERT(!s.growing);
        T_VALID(m);
        mg_free(m);
    }
}

static void t_insert_only_never_shrinks(void)
{
    mg_map *m = new_map(MG_KEY_U64, 0);
    /* Inserts and updates, no deletes: B is exactly Go's throughout. */
    for (uint64_t i = 0; i < 200000; i++) {
        put_u(m, i, i);
        if (i % 7 == 0)
            put_u(m, i / 2, i); /* an update */
        if (i % 1024 == 0) {
            mg_stats s = st(m);
            T_EQ_U(s.shrinks_total, 0);
            T_EQ_U(s.B, go_B_for(i + 1));
        }
    }
    mg_stats s = st(m);
    T_EQ_U(s.shrinks_total, 0);
    T_ASSERT(!s.shrinking);
    T_EQ_U(s.B, go_B_for(200000));
    mg_free(m);
}

/* ------------------------------------------------------------------------ */
/* Iteration                                                                */
/* ------------------------------------------------------------------------ */

static void t_iter_order_8(void)
{
    mg_map *m = new_map(MG_KEY_U64, 0);
    for (uint64_t i = 0; i < 8; i++)
        put_u(m, 100 + i, i);
    T_EQ_U(st(m).B, 0);
    /* The insertion order is the slot order of the single bucket. */
    uint64_t orders[8][8];
    int norders = 0;
    for (int r = 0; r < 2000; r++) {
        uint64_t o[8];
        int n = 0;
        mg_iter it;
        const void *k;
        size_t len;
        uint64_t v;
        mg_iter_init(&it, m);
        while (mg_iter_next(&it, &k, &len, &v)) {
            T_ASSERT(n < 8);
            T_EQ_U(len, sizeof(uint64_t));
            uint64_t key;
            memcpy(&key, k, sizeof key);
            T_EQ_U(key, 100 + v);
            o[n++] = v;
        }
        mg_iter_done(&it);
        T_EQ_I(n, 8);
        /* A rotation of 0..7. */
        for (int j = 0; j < 8; j++)
            if (o[j] != (o[0] + (uint64_t)j) % 8)
                T_FAIL("iteration order is not a rotation of the slot order");
        int found = 0;
        for (int j = 0; j < norders; j++)
            if (memcmp(orders[j], o, sizeof o) == 0)
                found = 1;
        if (!found) {
            T_ASSERT(norders < 8);
            memcpy(orders[norders++], o, sizeof o);
        }
    }
    T_EQ_I(norders, 8);
    mg_free(m);
}

static void t_iter_order_9(void)
{
    mg_map *m = new_map(MG_KEY_U64, 0);
    for (uint64_t i = 0; i < 9; i++)
        put_u(m, i, i);
    uint64_t first[9];
    int distinct = 0;
    for (int r = 0; r < 200; r++) {
        uint64_t o[9];
        int n = 0;
        mg_iter it;
        uint64_t v;
        mg_iter_init(&it, m);
        while (mg_iter_next(&it, NULL, NULL, &v)) {
            T_ASSERT(n < 9);
            o[n++] = v;
        }
        mg_iter_done(&it);
        T_EQ_I(n, 9);
        if (r == 0)
            memcpy(first, o, sizeof o);
        else if (memcmp(first, o, sizeof o) != 0)
            distinct = 1;
    }
    T_ASSERT(distinct);
    mg_free(m);
}

typedef struct {
    uint8_t *seen;
    size_t n, max;
    bool bytes;
    int stop_at;
    int stop_rc;
} every_arg;

static int every_fn(const void *k, size_t len, uint64_t v, void *arg)
{
    every_arg *a = arg;
    uint64_t i;
    if (a->bytes) {
        if (!bkey_parse(k, len, &i))
            T_FAIL("range produced a key never inserted");
    } else {
        T_EQ_U(len, sizeof(uint64_t));
        memcpy(&i, k, sizeof i);
    }
    T_ASSERT(i < a->max);
    if (a->seen[i])
        T_FAIL("key %llu produced twice", (unsigned long long)i);
    a->seen[i] = 1;
    T_EQ_U(v, i * 7 + 1);
    a->n++;
    if (a->stop_at && (int)a->n == a->stop_at)
        return a->stop_rc;
    return 0;
}

static void t_range_every_key(void)
{
    static const size_t sizes[] = {0, 1, 8, 9, 100, 1665, 10000};
    for (int kind = 0; kind < 2; kind++) {
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
            size_t N = sizes[z];
            mg_map *m = new_map(kind ? MG_KEY_BYTES : MG_KEY_U64, 0);
            for (uint64_t i = 0; i < N; i++)
                kind ? put_b(m, i, i * 7 + 1) : put_u(m, i, i * 7 + 1);
            every_arg a = {calloc(N + 1, 1), 0, N, kind == 1, 0, 0};
            T_ASSERT(a.seen);
            T_EQ_I(mg_range(m, every_fn, &a), 0);
            T_EQ_U(a.n, N);
            /* The same with mg_iter and all out pointers. */
            memset(a.seen, 0, N + 1);
            a.n = 0;
            mg_iter it;
            const void *k;
            size_t len;
            uint64_t v;
            mg_iter_init(&it, m);
            while (mg_iter_next(&it, &k, &len, &v))
                every_fn(k, len, v, &a);
            T_ASSERT(!mg_iter_next(&it, &k, &len, &v)); /* stays at the end */
            mg_iter_done(&it);
            mg_iter_done(&it); /* idempotent */
            T_EQ_U(a.n, N);
            /* NULL out pointers. */
            size_t cnt = 0;
            mg_iter_init(&it, m);
            while (mg_iter_next(&it, NULL, NULL, NULL))
                cnt++;
            mg_iter_done(&it);
            T_EQ_U(cnt, N);
            /* Two iterators at once, interleaved. */
            mg_iter i1, i2;
            mg_iter_init(&i1, m);
            mg_iter_init(&i2, m);
            size_t c1 = 0, c2 = 0;
            for (;;) {
                bool b1 = mg_iter_next(&i1, NULL, NULL, NULL);
                bool b2 = mg_iter_next(&i2, NULL, NULL, NULL);
                c1 += b1;
                c2 += b2;
                if (!b1 && !b2)
                    break;
            }
            mg_iter_done(&i2);
            mg_iter_done(&i1);
            T_EQ_U(c1, N);
            T_EQ_U(c2, N);
            free(a.seen);
            T_VALID(m);
            mg_free(m);
        }
    }
}

static void t_range_stop(void)
{
    mg_map *m = new_map(MG_KEY_U64, 0);
    for (uint64_t i = 0; i < 1000; i++)
        put_u(m, i, i * 7 + 1);
    every_arg a = {calloc(1000, 1), 0, 1000, false, 5, 42};
    T_ASSERT(a.seen);
    T_EQ_I(mg_range(m, every_fn, &a), 42);
    T_EQ_U(a.n, 5);
    memset(a.seen, 0, 1000);
    a.n = 0;
    a.stop_at = 1;
    a.stop_rc = -7;
    T_EQ_I(mg_range(m, every_fn, &a), -7);
    T_EQ_U(a.n, 1);
    memset(a.seen, 0, 1000);
    a.n = 0;
    a.stop_at = 1000; /* stop on the last one: its value is still returned */
    a.stop_rc = 3;
    T_EQ_I(mg_range(m, every_fn, &a), 3);
    T_EQ_U(a.n, 1000);
    /* An early stop leaves no iterator behind: writes and frees work. */
    put_u(m, 5000, 1);
    T_ASSERT(mg_del_u64(m, 5000));
    T_VALID(m);
    free(a.seen);
    mg_free(m);
}

/* Go's guarantees while fn mutates the map (R3, R5): no key twice, a key
 * deleted before it is reached is not produced, every key present at the
 * start and not deleted is produced exactly once, values are current. */
typedef struct {
    mg_map *m;
    bool bytes;
    size_t K;
    uint8_t *present, *start, *seen, *deleted;
    uint64_t *val;
    uint64_t rng;
    size_t steps;
    uint64_t next_new;
} mut_arg;

static uint64_t mut_rnd(mut_arg *a)
{
    a->rng = a->rng * 6364136223846793005ull + 1442695040888963407ull;
    return a->rng >> 33;
}
static void mut_put(mut_arg *a, uint64_t i, uint64_t v)
{
    a->bytes ? put_b(a->m, i, v) : put_u(a->m, i, v);
    a->present[i] = 1;
    a->val[i] = v;
}
static void mut_del(mut_arg *a, uint64_t i)
{
    bool f = a->bytes ? del_b(a->m, i) : mg_del_u64(a->m, i);
    T_EQ_I(f, a->present[i]);
    a->present[i] = 0;
}

static int mut_fn(const void *k, size_t len, uint64_t v, void *arg)
{
    mut_arg *a = arg;
    uint64_t i;
    if (a->bytes) {
        if (!bkey_parse(k, len, &i))
            T_FAIL("range produced a key never inserted");
    } else {
        memcpy(&i, k, sizeof i);
    }
    T_ASSERT(i < a->K);
    if (a->seen[i])
        T_FAIL("key %llu produced twice", (unsigned long long)i);
    if (a->deleted[i])
        T_FAIL("key %llu produced after it was deleted", (unsigned long long)i);
    if (!a->present[i])
        T_FAIL("absent key %llu produced", (unsigned long long)i);
    if (v != a->val[i])
        T_FAIL("key %llu produced with a stale value", (unsigned long long)i);
    a->seen[i] = 1;
    a->steps++;
    /* Delete a key not reached yet. */
    uint64_t d = mut_rnd(a) % a->K;
    if (a->present[d] && !a->seen[d] && a->start[d]) {
        mut_del(a, d);
        a->deleted[d] = 1;
    }
    /* Insert brand-new keys (forcing growth). */
    for (int j = 0; j < 3 && a->next_new < a->K; j++) {
        mut_put(a, a->next_new, a->next_new * 5);
        a->next_new++;
    }
    /* Update a key not reached yet: its new value must be produced. */
    uint64_t u = mut_rnd(a) % a->K;
    if (a->present[u] && !a->seen[u])
        mut_put(a, u, a->val[u] + 1000003);
    return 0;
}

static void t_range_mutation(void)
{
    for (int kind = 0; kind < 2; kind++) {
        for (uint64_t seed = 1; seed <= 6; seed++) {
            size_t N = seed % 2 ? 1000 : 200, K = N * 6;
            mut_arg a = {0};
            a.m = new_map(kind ? MG_KEY_BYTES : MG_KEY_U64, 0);
            a.bytes = kind == 1;
            a.K = K;
            a.present = calloc(K, 1);
            a.start = calloc(K, 1);
            a.seen = calloc(K, 1);
            a.deleted = calloc(K, 1);
            a.val = calloc(K, sizeof *a.val);
            T_ASSERT(a.present && a.start && a.seen && a.deleted && a.val);
            a.rng = seed;
            for (uint64_t i = 0; i < N; i++)
                mut_put(&a, i, i);
            memcpy(a.start, a.present, K);
            a.next_new = N;
            T_EQ_I(mg_range(a.m, mut_fn, &a), 0);
            for (size_t i = 0; i < K; i++)
                if (a.start[i] && a.present[i] && !a.seen[i])
                    T_FAIL("seed %llu: key %zu present throughout was not produced",
                           (unsigned long long)seed, i);
            T_ASSERT(st(a.m).grows_total > 0);
            T_VALID(a.m);
            for (size_t i = 0; i < K; i++) {
                uint64_t v = 0;
                bool f = a.bytes ? get_b(a.m, i, &v) : mg_get_u64(a.m, i, &v);
                T_EQ_I(f, a.present[i]);
                if (f)
                    T_EQ_U(v, a.val[i]);
            }
            mg_free(a.m);
            free(a.present);
            free(a.start);
            free(a.seen);
            free(a.deleted);
            free(a.val);
        }
    }
}

/* fn deletes keys not reached yet, fast enough that the map shrinks (and
 * the shrink finishes) during the range. */
typedef struct {
    mg_map *m;
    uint8_t *seen, *gone;
    uint64_t N, cursor;
    size_t produced;
} shrink_arg;
static int shrink_fn(const void *k, size_t len, uint64_t v, void *arg)
{
    shrink_arg *a = arg;
    uint64_t i;
    T_EQ_U(len, sizeof i);
    memcpy(&i, k, sizeof i);
    T_ASSERT(i < a->N);
    if (a->seen[i] || a->gone[i])
        T_FAIL("key %llu produced twice or after its delete", (unsigned long long)i);
    T_EQ_U(v, i);
    a->seen[i] = 1;
    a->produced++;
    for (int j = 0; j < 40 && a->cursor < a->N; a->cursor++) {
        if (a->cursor % 50 == 0 || a->seen[a->cursor])
            continue;
        T_ASSERT(mg_del_u64(a->m, a->cursor));
        a->gone[a->cursor] = 1;
        j++;
    }
    return 0;
}
static void t_range_shrinking(void)
{
    const uint64_t N = 40000;
    mg_map *m = new_map(MG_KEY_U64, 0);
    for (uint64_t i = 0; i < N; i++)
        put_u(m, i, i);
    shrink_arg a = {m, calloc(N, 1), calloc(N, 1), N, 0, 0};
    T_ASSERT(a.seen && a.gone);
    T_EQ_I(mg_range(m, shrink_fn, &a), 0);
    mg_stats s = st(m);
    T_ASSERT(s.shrinks_total >= 1); /* B 13 -> 11, started and finished in the range */
    T_ASSERT(!s.shrinking);
    for (uint64_t i = 0; i < N; i++)
        if (!a.gone[i] && !a.seen[i])
            T_FAIL("key %llu, never deleted, was not produced", (unsigned long long)i);
    size_t ngone = 0;
    for (uint64_t i = 0; i < N; i++)
        ngone += a.gone[i];
    T_EQ_U(mg_len(m), N - ngone);
    T_VALID(m);
    free(a.seen);
    free(a.gone);
    mg_free(m);
}

static void t_iter_clear_ends(void)
{
    for (int kind = 0; kind < 2; kind++) {
        mg_map *m = new_map(kind ? MG_KEY_BYTES : MG_KEY_U64, 0);
        for (uint64_t i = 0; i < 1000; i++)
            kind ? put_b(m, i, i) : put_u(m, i, i);
        mg_iter it;
        mg_iter_init(&it, m);
        for (int i = 0; i < 10; i++)
            T_ASSERT(mg_iter_next(&it, NULL, NULL, NULL));
        mg_clear(m);
        T_ASSERT(!mg_iter_next(&it, NULL, NULL, NULL));
        /* Keys inserted after the clear do not revive it. */
        for (uint64_t i = 0; i < 100; i++)
            kind ? put_b(m, i, i) : put_u(m, i, i);
        T_ASSERT(!mg_iter_next(&it, NULL, NULL, NULL));
        mg_iter_done(&it);
        T_VALID(m);
        T_EQ_U(mg_len(m), 100);
        /* A range whose fn clears the map stops after that call. */
        size_t calls = 0;
        mg_iter_init(&it, m);
        while (mg_iter_next(&it, NULL, NULL, NULL)) {
            calls++;
            if (calls == 3)
                mg_clear(m);
        }
        mg_iter_done(&it);
        T_EQ_U(calls, 3);
        T_EQ_U(mg_len(m), 0);
        T_VALID(m);
        mg_free(m);
    }
}

/* An iterator started on a small array keeps it alive while the map goes
 * through two (and more) complete growths, and still produces every key
 * present at the start exactly once with its current value. */
static void t_iter_across_growths(void)
{
    for (int kind = 0; kind < 2; kind++) {
        for (int pre = 0; pre < 3; pre++) {
            mg_map *m = new_map(kind ? MG_KEY_BYTES : MG_KEY_U64, 0);
            const uint64_t N = 100, K = 3000;
            uint8_t *seen = calloc(K, 1);
            T_ASSERT(seen);
            for (uint64_t i = 0; i < N; i++)
                kind ? put_b(m, i, i) : put_u(m, i, i);
            mg_stats s0 = st(m);
            T_EQ_U(s0.B, 4);
            mg_iter it;
            const void *k;
            size_t len;
            uint64_t v;
            mg_iter_init(&it, m);
            size_t produced = 0;
            for (int j = 0; j < pre * 20; j++) {
                T_ASSERT(mg_iter_next(&it, &k, &len, &v));
                uint64_t i;
                if (kind)
                    T_ASSERT(bkey_parse(k, len, &i));
                else
                    memcpy(&i, k, sizeof i);
                T_ASSERT(i < N && !seen[i]);
                seen[i] = 1;
                produced++;
            }
            /* Update every original key, then grow through B=5, 6, 7, 8. */
            for (uint64_t i = 0; i < N; i++)
                kind ? put_b(m, i, i + 5000) : put_u(m, i, i + 5000);
            for (uint64_t i = N; i < K; i++)
                kind ? put_b(m, i, i + 5000) : put_u(m, i, i + 5000);
            mg_stats s = st(m);
            T_ASSERT(s.grows_total >= s0.grows_total + 2);
            T_ASSERT(!s.growing || s.grows_total >= s0.grows_total + 3);
            T_VALID(m);
            while (mg_iter_next(&it, &k, &len, &v)) {
                uint64_t i;
                if (kind)
                    T_ASSERT(bkey_parse(k, len, &i));
                else
                    memcpy(&i, k, sizeof i);
                T_ASSERT(i < K);
                if (seen[i])
                    T_FAIL("key %llu produced twice", (unsigned long long)i);
                seen[i] = 1;
                T_EQ_U(v, i + 5000);
                produced++;
            }
            mg_iter_done(&it);
            for (uint64_t i = 0; i < N; i++)
                if (!seen[i])
                    T_FAIL("original key %llu not produced", (unsigned long long)i);
            T_ASSERT(produced >= N);
            T_VALID(m);
            free(seen);
            mg_free(m);
        }
    }
}

/* Byte keys deleted while an iterator is live stay readable by it: the
 * iterator looks evacuated slots up again by the stored key (R3), which ASan
 * would flag if the key had been freed. */
static void t_iter_bytes_deleted(void)
{
    for (int variant = 0; variant < 3; variant++) {
        mg_map *m = new_map(MG_KEY_BYTES, 0);
        const uint64_t N = 200, K = 2000;
        uint8_t *seen = calloc(K, 1), *gone = calloc(K, 1);
        T_ASSERT(seen && gone);
        for (uint64_t i = 0; i < N; i++)
            put_b(m, i, i);
        mg_iter it;
        const void *k;
        size_t len;
        uint64_t v;
        mg_iter_init(&it, m);
        T_ASSERT(mg_iter_next(&it, &k, &len, &v));
        uint64_t first;
        T_ASSERT(bkey_parse(k, len, &first));
        seen[first] = 1;
        /* Grow the map (evacuating the array the iterator walks)... */
        for (uint64_t i = N; i < K; i++)
            put_b(m, i, i);
        /* ...then delete most original keys. */
        for (uint64_t i = 0; i < N; i++) {
            if (i == first || (variant == 1 && i % 2) || (variant == 2 && i % 10 == 0))
                continue;
            T_ASSERT(del_b(m, i));
            gone[i] = 1;
        }
        if (variant == 2) /* and shrink it too */
            for (uint64_t i = N; i < K; i++) {
                T_ASSERT(del_b(m, i));
                gone[i] = 1;
            }
        T_VALID(m);
        while (mg_iter_next(&it, &k, &len, &v)) {
            uint64_t i;
            T_ASSERT(bkey_parse(k, len, &i));
            if (gone[i])
                T_FAIL("deleted key %llu produced", (unsigned long long)i);
            if (seen[i])
                T_FAIL("key %llu produced twice", (unsigned long long)i);
            seen[i] = 1;
            T_EQ_U(v, i);
        }
        mg_iter_done(&it);
        for (uint64_t i = 0; i < N; i++)
            if (!gone[i] && !seen[i])
                T_FAIL("variant %d: kept key %llu not produced", variant,
                       (unsigned long long)i);
        /* After the iterator is done the deleted keys' memory is released:
         * the map's byte count drops back to what a fresh map would hold. */
        T_VALID(m);
        mg_free(m);
        free(seen);
        free(gone);
    }
}

/* A key deleted by fn and re-read through the stored slot: deleting the
 * key just produced (the common "filter" loop) is safe and complete. */
static int del_self_fn(const void *k, size_t len, uint64_t v, void *arg)
{
    mg_map *m = arg;
    (void)v;
    T_ASSERT(mg_del(m, k, len));
    return 0;
}
static void t_range_delete_self(void)
{
    mg_map *m = new_map(MG_KEY_BYTES, 0);
    for (uint64_t i = 0; i < 3000; i++)
        put_b(m, i, i);
    T_EQ_I(mg_range(m, del_self_fn, m), 0);
    T_EQ_U(mg_len(m), 0);
    T_VALID(m);
    mg_free(m);

    m = new_map(MG_KEY_U64, 0);
    for (uint64_t i = 0; i < 3000; i++)
        put_u(m, i, i);
    mg_iter it;
    const void *k;
    mg_iter_init(&it, m);
    size_t n = 0;
    while (mg_iter_next(&it, &k, NULL, NULL)) {
        uint64_t key;
        memcpy(&key, k, sizeof key);
        T_ASSERT(mg_del_u64(m, key));
        n++;
    }
    mg_iter_done(&it);
    T_EQ_U(n, 3000);
    T_EQ_U(mg_len(m), 0);
    T_VALID(m);
    mg_free(m);
}

/* ------------------------------------------------------------------------ */
/* Names, messages, stats                                                   */
/* ------------------------------------------------------------------------ */

static void t_status_strings(void)
{
    static const struct {
        int code;
        const char *name;
    } codes[] = {{MG_OK, "MG_OK"},         {MG_ENOMEM, "MG_ENOMEM"},
                 {MG_EINVAL, "MG_EINVAL"}, {MG_ENOTSUP, "MG_ENOTSUP"},
                 {MG_EKEYLEN, "MG_EKEYLEN"}, {MG_ENOENT, "MG_ENOENT"},
                 {MG_EOVERFLOW, "MG_EOVERFLOW"}, {MG_EIO, "MG_EIO"},
                 {MG_EBUSY, "MG_EBUSY"}};
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        T_STREQ(mg_status_name(codes[i].code), codes[i].name);
        const char *msg = mg_strerror(codes[i].code);
        T_ASSERT(msg && *msg);
        if (strcmp(msg, "unknown status") == 0)
            T_FAIL("%s has no message", codes[i].name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(msg, mg_strerror(codes[j].code)) == 0)
                T_FAIL("%s and %s share a message", codes[i].name, codes[j].name);
        if (i > 0)
            T_ASSERT(codes[i].code < 0);
    }
    T_STREQ(mg_strerror(MG_OK), "success");
    T_ASSERT(strstr(mg_strerror(MG_ENOMEM), "unchanged") != NULL);
    static const int unknown[] = {1, -9, -1000, 12345, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        T_STREQ(mg_strerror(unknown[i]), "unknown status");
        T_ASSERT(mg_status_name(unknown[i]) == NULL);
    }
}

static void t_fatal_messages(void)
{
    static const struct {
        mg_fatal_kind k;
        const char *msg;
    } f[] = {{MG_FATAL_CONCURRENT_WRITES, "concurrent map writes"},
             {MG_FATAL_CONCURRENT_READ_WRITE, "concurrent map read and map write"},
             {MG_FATAL_CONCURRENT_ITER_WRITE, "concurrent map iteration and map write"},
             {MG_FATAL_NIL_MAP, "assignment to entry in nil map"},
             {MG_FATAL_FREED_MAP, "use of freed map"},
             {MG_FATAL_CORRUPT_MAP, "corrupted map header"},
             {MG_FATAL_WRONG_KEY_KIND, "wrong key kind for map"},
             {MG_FATAL_INTERNAL, "mapguard internal error"}};
    T_EQ_U(sizeof f / sizeof f[0], MG_FATAL_KIND_COUNT);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        T_STREQ(mg_fatal_message(f[i].k), f[i].msg);
    T_STREQ(mg_fatal_message(MG_FATAL_KIND_COUNT), "unknown fatal error");
    T_STREQ(mg_fatal_message((mg_fatal_kind)-1), "unknown fatal error");
    T_STREQ(mg_fatal_message((mg_fatal_kind)1000), "unknown fatal error");
}

static void t_name_keykind(void)
{
    mg_options o = {.key = MG_KEY_BYTES, .name = "users by email"};
    mg_map *m = mg_new(&o);
    T_ASSERT(m);
    T_STREQ(mg_name(m), "users by email");
    T_EQ_I(mg_key_kind(m), MG_KEY_BYTES);
    mg_free(m);
    o.key = MG_KEY_U64;
    o.name = NULL;
    m = mg_new(&o);
    T_ASSERT(m);
    T_STREQ(mg_name(m), "");
    T_EQ_I(mg_key_kind(m), MG_KEY_U64);
    mg_free(m);
    /* A long name is copied whole. */
    char longname[600];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    o.name = longname;
    m = mg_new(&o);
    T_ASSERT(m);
    T_STREQ(mg_name(m), longname);
    mg_free(m);
}

static void t_stats(void)
{
    for (int kind = 0; kind < 2; kind++) {
        mg_map *m = new_map(kind ? MG_KEY_BYTES : MG_KEY_U64, 0);
        T_EQ_I(mg_stats_get(m, NULL), MG_EINVAL);
        mg_stats s = st(m);
        T_EQ_U(s.count, 0);
        T_EQ_U(s.B, 0);
        T_EQ_U(s.buckets, 1);
        T_ASSERT(s.load_factor == 0.0);
        T_ASSERT(s.bytes > 0);
        T_ASSERT(!s.growing && !s.same_size_grow && !s.shrinking);
        T_EQ_U(s.overflow_buckets, 0);
        size_t prev_bytes = s.bytes, quiet_bytes = s.bytes;
        unsigned prevB = 0;
        for (uint64_t i = 1; i <= 20000; i++) {
            kind ? put_b(m, i, i) : put_u(m, i, i);
            s = st(m);
            T_EQ_U(s.count, i);
            T_EQ_U(s.count, mg_len(m));
            T_EQ_U(s.buckets, (size_t)1 << s.B);
            double lf = (double)s.count / (double)s.buckets;
            if (fabs(s.load_factor - lf) > 1e-9)
                T_FAIL("load_factor %f, count/buckets %f", s.load_factor, lf);
            T_ASSERT(s.load_factor <= 6.5 || s.count <= 8);
            if (s.growing) {
                T_ASSERT(s.old_buckets > 0);
                T_ASSERT(s.evacuated < s.old_buckets);
            } else {
                T_EQ_U(s.old_buckets, 0);
                T_EQ_U(s.evacuated, 0);
            }
            /* Outside growth, bytes never drops while only inserting (a
             * finished grow gives the old array back, so compare the
             * quiet states); a grow adds the new array. */
            if (s.B > prevB)
                T_ASSERT(s.bytes > prev_bytes);
            if (!s.growing) {
                if (s.bytes < quiet_bytes)
                    T_FAIL("bytes fell from %zu to %zu on insert %llu", quiet_bytes,
                           s.bytes, (unsigned long long)i);
                if (kind) /* a byte map's bytes include its keys */
                    T_ASSERT(s.bytes > quiet_bytes);
                quiet_bytes = s.bytes;
            }
            prev_bytes = s.bytes;
            prevB = s.B;
        }
        /* At least the buckets' memory: 144 bytes per bucket. */
        T_ASSERT(s.bytes >= s.buckets * 144);
        T_EQ_U(s.grows_total, s.B);
        mg_free(m);
    }
}

/* Bytes of anonymous read-write mappings in this process. */
static size_t anon_mapped(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    T_ASSERT(f);
    char line[512];
    size_t total = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        int n = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s%n", &lo, &hi, perms, &n) < 3)
            continue;
        const char *rest = line + n;
        while (*rest == ' ')
            rest++;
        if (strncmp(perms, "rw", 2) == 0 && (*rest == '\n' || *rest == '\0'))
            total += hi - lo;
    }
    fclose(f);
    return total;
}

/* A grow that just finished leaves the old array's blocks on the retire
 * list (released a little per write); mg_free must release all of them,
 * and a map must give back its big blocks when it is freed. */
#if defined(__SANITIZE_ADDRESS__)
#define MG_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MG_TEST_ASAN 1
#endif
#endif
static void t_free_releases_retired(void)
{
#ifdef MG_TEST_ASAN
    /* ASan maps shadow memory as the test runs: the count means nothing. */
    fprintf(stderr, "skipped under AddressSanitizer\n");
    return;
#endif
    size_t before = anon_mapped();
    mg_map *m = new_map(MG_KEY_U64, 0);
    uint64_t i = 0;
    /* Grow past B = 14 (arrays of 256 KiB and more: mmapped blocks). */
    while (st(m).B < 15)
        put_u(m, i, i), i++;
    while (st(m).growing)
        put_u(m, i, i), i++;
    size_t during = anon_mapped();
    T_ASSERT(during > before + ((size_t)1 << 20));
    mg_free(m);
    size_t after = anon_mapped();
    if (after > before + (64u << 10))
        T_FAIL("mg_free left %zu bytes mapped (before %zu, after %zu)", after - before,
               before, after);
}

int main(int argc, char **argv)
{
    static const t_case cases[] = {
        {"new_defaults", t_new_defaults},
        {"new_name_copied", t_new_name_copied},
        {"new_bad_mode", t_new_bad_mode},
        {"new_every_mode", t_new_every_mode},
        {"new_bad_key_kind", t_new_bad_key_kind},
        {"new_bad_allocator", t_new_bad_allocator},
        {"custom_allocator", t_custom_allocator},
        {"custom_allocator_modes", t_custom_allocator_modes},
        {"hash_structured_keys", t_hash_structured_keys},
        {"u64_basic", t_u64_basic},
        {"bytes_basic", t_bytes_basic},
        {"bytes_key_copied", t_bytes_key_copied},
        {"nil_map", t_nil_map},
        {"clear", t_clear},
        {"growth_points", t_growth_points},
        {"hint_B", t_hint_B},
        {"same_size_grow", t_same_size_grow},
        {"evacuation", t_evacuation},
        {"shrink", t_shrink},
        {"shrink_incremental", t_shrink_incremental},
        {"shrink_floor", t_shrink_floor},
        {"hysteresis_grow", t_hysteresis_grow},
        {"hysteresis_shrink", t_hysteresis_shrink},
        {"insert_only_never_shrinks", t_insert_only_never_shrinks},
        {"iter_order_8", t_iter_order_8},
        {"iter_order_9", t_iter_order_9},
        {"range_every_key", t_range_every_key},
        {"range_stop", t_range_stop},
        {"range_mutation", t_range_mutation},
        {"range_delete_self", t_range_delete_self},
        {"range_shrinking", t_range_shrinking},
        {"iter_clear_ends", t_iter_clear_ends},
        {"iter_across_growths", t_iter_across_growths},
        {"iter_bytes_deleted", t_iter_bytes_deleted},
        {"status_strings", t_status_strings},
        {"fatal_messages", t_fatal_messages},
        {"name_keykind", t_name_keykind},
        {"stats", t_stats},
        {"free_releases_retired", t_free_releases_retired},
        {NULL, NULL}};
    return t_main(cases, argc, argv);
}
