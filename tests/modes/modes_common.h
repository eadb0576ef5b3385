/*
 * modes_common.h - what test_modes.c and stress_modes.c share: the table of
 * modes, a seeded generator, key numbering for both key kinds (a key found
 * by a range can be turned back into its number), and small wrappers that
 * call the u64 or the byte-key form of each operation.
 */
#ifndef MG_TEST_MODES_COMMON_H
#define MG_TEST_MODES_COMMON_H

#include "mapguard.h"
#include "../test.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Modes                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    mg_mode mode;
    const char *name; /* the name mg_mode_name must give */
    bool batch;       /* mg_batch is supported (atomic) */
    bool snapshot;    /* range/iter/len see exactly one snapshot */
    bool atomic_range; /* mg_range runs as one atomic step */
    /* A range over the engine itself, so fn's own writes get Go's
     * iteration semantics: a key fn deletes after it was produced and then
     * puts back is a new entry, which Go may produce again (unsync,
     * rwlock, sharded, actor).  readmostly promises sync.Map's "no key
     * will be visited more than once"; snapshot walks one snapshot. */
    bool go_reinsert;
    /* The same for other threads' writes between two steps (the header's
     * (*) rows): a key another thread deletes and puts back may come
     * again.  Bit 0: mg_range; bit 1: mg_iter. */
    unsigned conc_reinsert;
} mode_info;

static const mode_info modes_all[] = {
    {MG_UNSYNC, "unsync", true, false, false, true, 0},
    {MG_RWLOCK, "rwlock", true, false, false, true, 3},
    {MG_SHARDED, "sharded", true, false, false, true, 3},
    {MG_READMOSTLY, "readmostly", false, false, false, false, 0},
    {MG_SNAPSHOT, "snapshot", true, true, true, false, 0},
    {MG_ACTOR, "actor", true, false, true, true, 2},
};
#define N_MODES (sizeof modes_all / sizeof modes_all[0])

static inline const mode_info *mode_by_name(const char *name)
{
    for (size_t i = 0; i < N_MODES; i++)
        if (strcmp(modes_all[i].name, name) == 0)
            return &modes_all[i];
    T_FAIL("no mode named %s", name);
}

/* A map of the given mode and key kind; fails the test if mg_new does. */
static inline mg_map *mode_map(const mode_info *mi, bool bytes, const char *name)
{
    mg_options o = {.mode = mi->mode, .key = bytes ? MG_KEY_BYTES : MG_KEY_U64,
                    .name = name};
    if (mi->mode == MG_SHARDED)
        o.shards = 8; /* several shards even on a small machine */
    if (mi->mode == MG_ACTOR)
        o.queue = 16; /* small: callers wait on a full channel */
    errno = 0;
    mg_map *m = mg_new(&o);
    if (!m)
        T_FAIL("mg_new(mode=%s, key=%s) returned NULL, errno %d (%s)", mi->name,
               bytes ? "bytes" : "u64", errno, strerror(errno));
    return m;
}

/* ------------------------------------------------------------------------ */
/* A seeded generator (splitmix64); one state per thread.                    */
/* ------------------------------------------------------------------------ */

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

/* ------------------------------------------------------------------------ */
/* Keys: number i <-> a u64 key or a byte key, both ways.                    */
/* ------------------------------------------------------------------------ */

/* u64 key i is i times an odd constant: a bijection, so any key a range
 * produces maps back to exactly one number (0 stays 0). */
#define KEY_MUL 0xD6E8FEB86659FD93ull
static inline uint64_t key_u64(uint64_t i)
{
    return i * KEY_MUL;
}
static inline uint64_t key_u64_index(uint64_t k)
{
    uint64_t inv = KEY_MUL; /* Newton's iteration for the inverse mod 2^64 */
    for (int j = 0; j < 6; j++)
        inv *= 2 - KEY_MUL * inv;
    return k * inv;
}

/* Byte key i: number 0 is the empty key; any other is its number in four
 * little-endian bytes followed by 0..36 filler bytes (NULs among them), so
 * keys differ in length and contain NULs. */
#define BKEY_MAX 40
static inline size_t key_bytes(uint64_t i, unsigned char *buf)
{
    if (i == 0)
        return 0;
    size_t len = 4 + (size_t)((i * 7) % 37);
    uint32_t n = (uint32_t)i;
    memcpy(buf, &n, 4);
    for (size_t j = 4; j < len; j++)
        buf[j] = (unsigned char)((j % 3 == 0) ? 0 : (i * 31 + j * 17));
    return len;
}
/* The number of a byte key, or UINT64_MAX when it is no key of ours. */
static inline uint64_t key_bytes_index(const void *k, size_t len)
{
    if (len == 0)
        return 0;
    if (len < 4 || len > BKEY_MAX)
        return UINT64_MAX;
    uint32_t n;
    memcpy(&n, k, 4);
    unsigned char buf[BKEY_MAX];
    size_t l2 = key_bytes(n, buf);
    if (n == 0 || l2 != len || memcmp(buf, k, len) != 0)
        return UINT64_MAX;
    return n;
}
/* The number of any key a range or iterator produced. */
static inline uint64_t key_index(bool bytes, const void *k, size_t len)
{
    if (!bytes) {
        if (len != 8)
            return UINT64_MAX;
        uint64_t u;
        memcpy(&u, k, 8);
        return key_u64_index(u);
    }
    return key_bytes_index(k, len);
}

/* ------------------------------------------------------------------------ */
/* One call per operation, u64 or byte key by the map's kind.               */
/* ------------------------------------------------------------------------ */

#define KB(i)                                                                 \
    unsigned char kb_[BKEY_MAX] = {0};                                        \
    size_t kl_ = key_bytes((i), kb_)

static inline int op_put(mg_map *m, bool bytes, uint64_t i, uint64_t v)
{
    if (!bytes)
        return mg_put_u64(m, key_u64(i), v);
    KB(i);
    return mg_put(m, kb_, kl_, v);
}
static inline bool op_get(mg_map *m, bool bytes, uint64_t i, uint64_t *v)
{
    if (!bytes)
        return mg_get_u64(m, key_u64(i), v);
    KB(i);
    return mg_get(m, kb_, kl_, v);
}
static inline bool op_del(mg_map *m, bool bytes, uint64_t i)
{
    if (!bytes)
        return mg_del_u64(m, key_u64(i));
    KB(i);
    return mg_del(m, kb_, kl_);
}
static inline int op_get_or_put(mg_map *m, bool bytes, uint64_t i, uint64_t v,
                                uint64_t *actual, bool *loaded)
{
    if (!bytes)
        return mg_get_or_put_u64(m, key_u64(i), v, actual, loaded);
    KB(i);
    return mg_get_or_put(m, kb_, kl_, v, actual, loaded);
}
static inline bool op_get_and_del(mg_map *m, bool bytes, uint64_t i, uint64_t *old)
{
    if (!bytes)
        return mg_get_and_del_u64(m, key_u64(i), old);
    KB(i);
    return mg_get_and_del(m, kb_, kl_, old);
}
static inline int op_swap(mg_map *m, bool bytes, uint64_t i, uint64_t v,
                          uint64_t *old, bool *loaded)
{
    if (!bytes)
        return mg_swap_u64(m, key_u64(i), v, old, loaded);
    KB(i);
    return mg_swap(m, kb_, kl_, v, old, loaded);
}
static inline bool op_cas(mg_map *m, bool bytes, uint64_t i, uint64_t old, uint64_t v)
{
    if (!bytes)
        return mg_cas_u64(m, key_u64(i), old, v);
    KB(i);
    return mg_cas(m, kb_, kl_, old, v);
}
static inline bool op_cad(mg_map *m, bool bytes, uint64_t i, uint64_t old)
{
    if (!bytes)
        return mg_cad_u64(m, key_u64(i), old);
    KB(i);
    return mg_cad(m, kb_, kl_, old);
}

/* ------------------------------------------------------------------------ */
/* A counting allocator, safe from any thread: every block's size is kept,  */
/* so a free with the wrong size or of an unknown pointer fails the test.   */
/* ------------------------------------------------------------------------ */
#include <pthread.h>

typedef struct cblock {
    void *p;
    size_t size;
    struct cblock *next;
} cblock;
typedef struct {
    pthread_mutex_t mu;
    cblock *blocks[1024];
    size_t live_blocks, live_bytes, calls;
} calloc_counter;

static inline size_t cc_slot(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    return (size_t)((x >> 4) ^ (x >> 14)) % 1024;
}
static inline void *cc_track(calloc_counter *c, void *p, size_t size)
{
    if (!p)
        return NULL;
    cblock *b = malloc(sizeof *b);
    if (!b) {
        free(p);
        return NULL;
    }
    pthread_mutex_lock(&c->mu);
    b->p = p;
    b->size = size;
    b->next = c->blocks[cc_slot(p)];
    c->blocks[cc_slot(p)] = b;
    c->live_blocks++;
    c->live_bytes += size;
    c->calls++;
    pthread_mutex_unlock(&c->mu);
    return p;
}
static inline void *cc_malloc(void *ctx, size_t size)
{
    return cc_track(ctx, malloc(size ? size : 1), size);
}
static inline void *cc_calloc(void *ctx, size_t size)
{
    return cc_track(ctx, calloc(1, size ? size : 1), size);
}
static inline void cc_free(void *ctx, void *p, size_t size)
{
    calloc_counter *c = ctx;
    if (!p)
        return;
    pthread_mutex_lock(&c->mu);
    cblock **pp = &c->blocks[cc_slot(p)];
    while (*pp && (*pp)->p != p)
        pp = &(*pp)->next;
    cblock *b = *pp;
    if (!b) {
        pthread_mutex_unlock(&c->mu);
        T_FAIL("allocator: free of %p, which it never gave out", p);
    }
    if (b->size != size) {
        size_t want = b->size;
        pthread_mutex_unlock(&c->mu);
        T_FAIL("allocator: free of %p with size %zu, allocated with %zu", p, size, want);
    }
    *pp = b->next;
    c->live_blocks--;
    c->live_bytes -= size;
    pthread_mutex_unlock(&c->mu);
    free(b);
    free(p);
}

/* ---- the case table and command line, shared by both programs ---------- */
/* A case runs once per mode in its `modes` mask (bit i: modes_all[i]); its
 * ctest name is NAME_MODE. */
typedef struct {
    const char *name;
    void (*fn)(const mode_info *);
    unsigned modes;
} mode_case;

/* --check NAME...: the build's list of cases is exactly ours. */
static inline int mode_cases_check(const mode_case *cases, const char *prog, int n,
                                   char **names)
{
    int bad = 0, ours = 0;
    for (const mode_case *c = cases; c->name; c++) {
        for (size_t mi = 0; mi < N_MODES; mi++) {
            if (!(c->modes & (1u << mi)))
                continue;
            char full[64];
            snprintf(full, sizeof full, "%s_%s", c->name, modes_all[mi].name);
            ours++;
            int found = 0;
            for (int j = 0; j < n; j++)
                found += strcmp(names[j], full) == 0;
            if (found != 1) {
                fprintf(stderr, "case %s is listed %d times in the build\n", full, found);
                bad = 1;
            }
        }
    }
    if (n != ours) {
        fprintf(stderr, "the build lists %d cases, %s has %d\n", n, prog, ours);
        bad = 1;
    }
    return bad;
}

/* PROG [CASE|all|list|--check NAME...]: run one case, all, or list them.
 * `banner` is printed after the case's name when it starts. */
static inline int mode_cases_main(const mode_case *cases, const char *prog,
                                  const char *banner, int argc, char **argv)
{
    const char *want = argc > 1 ? argv[1] : "all";
    if (strcmp(want, "--check") == 0)
        return mode_cases_check(cases, prog, argc - 2, argv + 2);
    int ran = 0;
    for (const mode_case *c = cases; c->name; c++) {
        for (size_t mi = 0; mi < N_MODES; mi++) {
            if (!(c->modes & (1u << mi)))
                continue;
            char full[64];
            snprintf(full, sizeof full, "%s_%s", c->name, modes_all[mi].name);
            if (strcmp(want, "list") == 0) {
                printf("%s\n", full);
                continue;
            }
            if (strcmp(want, "all") != 0 && strcmp(want, full) != 0)
                continue;
            fprintf(stderr, "-- %s %s\n", full, banner);
            c->fn(&modes_all[mi]);
            ran++;
        }
    }
    if (ran == 0 && strcmp(want, "list") != 0) {
        fprintf(stderr, "no such case: %s (try: %s list)\n", want, prog);
        return 2;
    }
    return 0;
}

#endif
