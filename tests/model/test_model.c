/*
 * test_model.c - the model test: seeded random sequences of put, get, del,
 * clear and range (with mutation during the range) against a trivially
 * correct reference (an array indexed by key number), with the whole-table
 * validator after every operation while the map is small and at intervals
 * when it is large.  Prints the seed on failure; rerun one with
 *     test_model SEED
 */
#include "internal.h"
#include "mapguard.h"
#include "../test.h"

#include <stdbool.h>

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct {
    size_t K;       /* key space */
    bool *present;
    uint64_t *val;
    size_t len;
    bool bytes;
    mg_map *m;
    uint64_t seed;
    size_t ops;
} model;

static uint64_t key_u64(size_t i)
{
    /* Spread but deterministic; key 0 and UINT64_MAX-like values too. */
    if (i == 0)
        return 0;
    if (i == 1)
        return UINT64_MAX;
    uint64_t z = i * 0x9E3779B97F4A7C15ull;
    return z ^ (z >> 29);
}

/* Byte key number i: lengths 0..40, NULs inside. */
static size_t key_bytes(size_t i, unsigned char *buf)
{
    if (i == 0)
        return 0;
    size_t len = 1 + (i * 7) % 40;
    uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
    for (size_t j = 0; j < len; j++) {
        buf[j] = (unsigned char)(x >> ((j % 8) * 8));
        if (j % 8 == 7)
            x = x * 6364136223846793005ull + i;
    }
    /* make it unique: encode i in the last 4 bytes when room */
    if (len >= 4)
        memcpy(buf + len - 4, &(uint32_t){(uint32_t)i}, 4);
    else
        len = 4, memcpy(buf, &(uint32_t){(uint32_t)i}, 4);
    return len;
}

#define FAILM(md, ...)                                                        \
    do {                                                                      \
        fprintf(stderr, "model seed=%llu op=%zu: ", (unsigned long long)(md)->seed, \
                (md)->ops);                                                   \
        T_FAIL(__VA_ARGS__);                                                  \
    } while (0)

static void m_put(model *md, size_t i, uint64_t v)
{
    int rc;
    if (md->bytes) {
        unsigned char b[64];
        size_t n = key_bytes(i, b);
        rc = mg_put(md->m, b, n, v);
    } else {
        rc = mg_put_u64(md->m, key_u64(i), v);
    }
    if (rc != MG_OK)
        FAILM(md, "put rc=%d", rc);
    if (!md->present[i])
        md->len++;
    md->present[i] = true;
    md->val[i] = v;
}

static bool m_get(model *md, size_t i, uint64_t *v)
{
    if (md->bytes) {
        unsigned char b[64];
        size_t n = key_bytes(i, b);
        return mg_get(md->m, b, n, v);
    }
    return mg_get_u64(md->m, key_u64(i), v);
}

static void m_del(model *md, size_t i)
{
    bool found;
    if (md->bytes) {
        unsigned char b[64];
        size_t n = key_bytes(i, b);
        found = mg_del(md->m, b, n);
    } else {
        found = mg_del_u64(md->m, key_u64(i));
    }
    if (found != md->present[i])
        FAILM(md, "del key %zu: found=%d want %d", i, found, md->present[i]);
    if (found)
        md->len--;
    md->present[i] = false;
}

static void m_check_get(model *md, size_t i)
{
    uint64_t v = 0xdeadbeef;
    bool f = m_get(md, i, &v);
    if (f != md->present[i])
        FAILM(md, "get key %zu: found=%d want %d", i, f, md->present[i]);
    if (f && v != md->val[i])
        FAILM(md, "get key %zu: val=%llu want %llu", i, (unsigned long long)v,
              (unsigned long long)md->val[i]);
}

/* Which key number is this? (inverse of key_u64 / key_bytes by search in a
 * side table built once) */
typedef struct {
    uint64_t h;
    size_t i;
} rev_ent;
static rev_ent *rev;
static size_t rev_n;
static int rev_cmp(const void *a, const void *b)
{
    uint64_t x = ((const rev_ent *)a)->h, y = ((const rev_ent *)b)->h;
    return x < y ? -1 : x > y;
}
static uint64_t fp(const void *k, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ len;
    const unsigned char *p = k;
    for (size_t j = 0; j < len; j++)
        h = (h ^ p[j]) * 1099511628211ull;
    return h;
}
static void rev_build(model *md)
{
    free(rev);
    rev = malloc(md->K * sizeof *rev);
    T_ASSERT(rev);
    rev_n = md->K;
    for (size_t i = 0; i < md->K; i++) {
        unsigned char b[64];
        if (md->bytes) {
            size_t n = key_bytes(i, b);
            rev[i].h = fp(b, n);
        } else {
            uint64_t k = key_u64(i);
            rev[i].h = fp(&k, 8);
        }
        rev[i].i = i;
    }
    qsort(rev, rev_n, sizeof *rev, rev_cmp);
}
static size_t rev_find(model *md, const void *k, size_t len)
{
    rev_ent e = {fp(k, len), 0};
    rev_ent *r = bsearch(&e, rev, rev_n, sizeof *rev, rev_cmp);
    if (!r)
        FAILM(md, "range produced a key never inserted");
    return r->i;
}

/* A range that mutates: at each step maybe delete an unvisited key, insert
 * new keys (forcing growth), update an unvisited key; then check Go's
 * guarantees (R1-R5). */
static void m_range(model *md, bool mutate)
{
    size_t K = md->K;
    unsigned char *start = calloc(K, 1);  /* present at start */
    unsigned char *seen = calloc(K, 1);
    unsigned char *deleted = calloc(K, 1); /* deleted during range before seen */
    T_ASSERT(start && seen && deleted);
    for (size_t i = 0; i < K; i++)
        start[i] = md->present[i];
    mg_iter it;
    const void *k;
    size_t len;
    uint64_t v;
    mg_iter_init(&it, md->m);
    size_t steps = 0;
    while (mg_iter_next(&it, &k, &len, &v)) {
        size_t i = rev_find(md, k, len);
        if (seen[i])
            FAILM(md, "range produced key %zu twice", i);
        if (deleted[i])
            FAILM(md, "range produced key %zu deleted before it was reached", i);
        if (!md->present[i])
            FAILM(md, "range produced absent key %zu", i);
        if (v != md->val[i])
            FAILM(md, "range produced key %zu with stale value %llu want %llu", i,
                  (unsigned long long)v, (unsigned long long)md->val[i]);
        seen[i] = 1;
        steps++;
        if (mutate) {
            size_t j = rnd() % K;
            if (md->present[j] && !seen[j] && rnd() % 3 == 0) {
                m_del(md, j);
                deleted[j] = 1;
            }
            for (int n = 0; n < 2; n++) {
                size_t a = rnd() % K;
                if (!md->present[a]) {
                    m_put(md, a, rnd());
                    deleted[a] = 0; /* a new key now: may or may not appear */
                    start[a] = 0;
                }
            }
            size_t u = rnd() % K;
            if (md->present[u] && !seen[u])
                m_put(md, u, rnd());
        }
    }
    mg_iter_done(&it);
    for (size_t i = 0; i < K; i++)
        if (start[i] && md->present[i] && !deleted[i] && !seen[i])
            FAILM(md, "range missed key %zu present at the start (mutate=%d, %zu steps)",
                  i, mutate, steps);
    free(start);
    free(seen);
    free(deleted);
}

static void m_full_check(model *md)
{
    T_EQ_U(mg_len(md->m), md->len);
    T_VALID(md->m);
}

static void run_model(uint64_t seed, size_t K, size_t nops, bool bytes, size_t hint,
                      size_t validate_every)
{
    model md = {0};
    md.K = K;
    md.bytes = bytes;
    md.seed = seed;
    rng_state = seed;
    md.present = calloc(K, sizeof *md.present);
    md.val = calloc(K, sizeof *md.val);
    T_ASSERT(md.present && md.val);
    mg_options o = {.key = bytes ? MG_KEY_BYTES : MG_KEY_U64, .hint = hint, .name = "model"};
    md.m = mg_new(&o);
    T_ASSERT(md.m);
    rev_build(&md);
    /* Phases alternate between filling and draining so the map grows,
     * shrinks and churns (same-size grows). */
    unsigned put_pct = 60;
    for (md.ops = 0; md.ops < nops; md.ops++) {
        if (md.ops % 20000 == 0)
            put_pct = (unsigned[]){80, 60, 30, 50, 10, 70}[(md.ops / 20000) % 6];
        unsigned r = (unsigned)(rnd() % 1000);
        size_t i = rnd() % K;
        if (r < put_pct * 7) {
            m_put(&md, i, rnd());
        } else if (r < 700) {
            m_del(&md, i);
        } else if (r < 995) {
            m_check_get(&md, i);
        } else if (r < 998) {
            /* A range costs O(len): keep big maps' ranges rare. */
            if (rnd() % (1 + md.len / 1000) == 0)
                m_range(&md, md.len < 5000 || rnd() % 4 == 0);
            else
                m_check_get(&md, i);
        } else if (r < 999 && rnd() % 8 == 0) {
            mg_clear(md.m);
            memset(md.present, 0, K * sizeof *md.present);
            md.len = 0;
        } else {
            m_check_get(&md, i);
        }
        if (mg_len(md.m) != md.len)
            FAILM(&md, "len %zu want %zu", mg_len(md.m), md.len);
        if (md.len < 300 || md.ops % validate_every == 0)
            m_full_check(&md);
    }
    for (size_t i = 0; i < K; i++)
        m_check_get(&md, i);
    m_full_check(&md);
    mg_free(md.m);
    free(md.present);
    free(md.val);
}

static uint64_t base_seed = 1;

static void t_small_u64(void)
{
    for (uint64_t s = 0; s < 20; s++)
        run_model(base_seed * 1000 + s, 64, 60000, false, 0, 1);
}
static void t_small_bytes(void)
{
    for (uint64_t s = 0; s < 10; s++)
        run_model(base_seed * 1000 + s, 64, 60000, true, 0, 1);
}
static void t_medium_u64(void)
{
    for (uint64_t s = 0; s < 4; s++)
        run_model(base_seed * 2000 + s, 4000, 400000, false, s == 1 ? 1000 : 0, 97);
}
static void t_medium_bytes(void)
{
    for (uint64_t s = 0; s < 2; s++)
        run_model(base_seed * 3000 + s, 4000, 300000, true, s == 1 ? 3000 : 0, 97);
}
static void t_large_u64(void)
{
    run_model(base_seed * 4000, 200000, 2000000, false, 0, 200000);
}

int main(int argc, char **argv)
{
    static const t_case cases[] = {{"small_u64", t_small_u64},
                                   {"small_bytes", t_small_bytes},
                                   {"medium_u64", t_medium_u64},
                                   {"medium_bytes", t_medium_bytes},
                                   {"large_u64", t_large_u64},
                                   {NULL, NULL}};
    if (argc > 2)
        base_seed = strtoull(argv[2], NULL, 10);
    return t_main(cases, argc, argv);
}
