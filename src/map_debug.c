/*
 * map_debug.c - the whole-table validator (invariants I1-I8 of map.c's
 * essay) and a table dump for test failures.  O(size of the map): tests and
 * debugging only.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    char *err;
    size_t errlen;
    int failed;
} vctx;

static void fail(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(vctx *v, const char *fmt, ...)
{
    if (v->failed++)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (v->err && v->errlen)
        vsnprintf(v->err, v->errlen, fmt, ap);
    va_end(ap);
}

static uint64_t slot_hash(const mg_map *m, uint64_t k)
{
    if (m->keykind == MG_KEY_BYTES)
        return mg__hash_bytes(((const mg_bkey *)(uintptr_t)k)->data,
                              ((const mg_bkey *)(uintptr_t)k)->len, m->seed);
    return mg__hash_u64(k, m->seed, m->seed2);
}

/* Collected keys, for the duplicate check (I4). */
typedef struct {
    uint64_t *h;
    size_t n, cap;
} keyset;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Walk one chain of table t (bucket i); count live slots; check I2, I3. */
static size_t check_chain(const mg_map *m, const mg_table *t, size_t i, bool old,
                          keyset *ks, vctx *v)
{
    size_t live = 0;
    bool rest = false;
    const uint64_t *th = &t->ctrl[i].tophash;
    mg_ovf *const *ov = &t->ctrl[i].overflow;
    const mg_slot *s = &t->slots[i * MG_BUCKET_CNT];
    size_t depth = 0;
    bool evac = mg__evacuated(*th);
    for (;;) {
        for (unsigned j = 0; j < MG_BUCKET_CNT; j++) {
            uint8_t top = mg__th_get(*th, j);
            if (old && evac) {
                if (top < MG_EVAC_X || top > MG_EVAC_EMPTY) {
                    if (!(top == MG_EMPTY_REST && depth > 0))
                        fail(v, "I6: evacuated old bucket %zu slot %u has tophash %u", i,
                             j, top);
                }
                continue;
            }
            if (top >= MG_EVAC_X && top <= MG_EVAC_EMPTY) {
                fail(v, "I6: bucket %zu (old=%d) slot %u has evacuation mark %u in a "
                        "live bucket", i, old, j, top);
                continue;
            }
            if (rest && top != MG_EMPTY_REST)
                fail(v, "I3: bucket %zu depth %zu slot %u is %u after an emptyRest", i,
                     depth, j, top);
            if (top == MG_EMPTY_REST) {
                rest = true;
                continue;
            }
            if (top == MG_EMPTY_ONE)
                continue;
            uint64_t h = slot_hash(m, s[j].key);
            if (mg__tophash(h) != top)
                fail(v, "I2: bucket %zu slot %u tophash %u, key hashes to %u", i, j, top,
                     mg__tophash(h));
            if ((h & mg__bucket_mask(t->B)) != i)
                fail(v, "I2: key in bucket %zu belongs in bucket %zu (B=%u)", i,
                     (size_t)(h & mg__bucket_mask(t->B)), t->B);
            if (m->keykind == MG_KEY_BYTES &&
                ((const mg_bkey *)(uintptr_t)s[j].key)->hash != h)
                fail(v, "I8: stored hash of a byte key is stale");
            if (ks->n == ks->cap) {
                ks->cap = ks->cap ? ks->cap * 2 : 1024;
                uint64_t *nh = realloc(ks->h, ks->cap * sizeof *nh);
                if (!nh) {
                    fail(v, "validator out of memory");
                    return live;
                }
                ks->h = nh;
            }
            ks->h[ks->n++] = h ^ (m->keykind == MG_KEY_BYTES ? 0 : s[j].key * 0x9E3779B97F4A7C15ull);
            live++;
        }
        if (!*ov)
            break;
        s = (*ov)->slots;
        th = &(*ov)->tophash;
        ov = &(*ov)->overflow;
        depth++;
    }
    return live;
}

static size_t count_overflow(const mg_table *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (const mg_ovf *o = t->ctrl[i].overflow; o; o = o->overflow)
            n++;
    return n;
}

int mg__validate(const mg_map *m, char *err, size_t errlen)
{
    vctx v = {err, errlen, 0};
    keyset ks = {0};
    if (!m)
        return 0;
    if (!((m->magic == MG_MAGIC_U64 && m->keykind == MG_KEY_U64) ||
          (m->magic == MG_MAGIC_BYTES && m->keykind == MG_KEY_BYTES)))
        fail(&v, "I1: magic 0x%llx does not match key kind %u",
             (unsigned long long)m->magic, m->keykind);
    if (m->B > MG_MAX_B)
        fail(&v, "I1: B=%u", m->B);
    if (!m->buckets) {
        if (m->count != 0 || m->oldbuckets)
            fail(&v, "I1: no buckets but count=%zu oldbuckets=%p", m->count,
                 (void *)m->oldbuckets);
        return v.failed ? -1 : 0;
    }
    if (m->buckets->B != m->B)
        fail(&v, "I1: buckets->B=%u but B=%u", m->buckets->B, m->B);
    size_t live = 0;
    const mg_table *old = m->oldbuckets;
    size_t units = 0;
    if (old) {
        units = m->grow == MG_GROW_SHRINK ? m->buckets->nbuckets : old->nbuckets;
        if (m->grow == MG_GROW_NONE)
            fail(&v, "I6: oldbuckets set but no grow kind");
        bool bad_b = m->grow == MG_GROW_DOUBLE ? m->B != old->B + 1
                     : m->grow == MG_GROW_SAME ? m->B != old->B
                                               : m->B >= old->B;
        if (bad_b)
            fail(&v, "I6: grow kind %u from B=%u gives B=%u", m->grow, old->B, m->B);
        if (m->nevacuate >= units)
            fail(&v, "I6: nevacuate %zu >= %zu units while growing", m->nevacuate, units);
        for (size_t u = 0; u < units; u++) {
            bool e = mg__evacuated(old->ctrl[u].tophash);
            for (size_t ob = u + units; m->grow == MG_GROW_SHRINK && ob < old->nbuckets;
                 ob += units)
                if (e != mg__evacuated(old->ctrl[ob].tophash))
                    fail(&v, "S2: group %zu partly evacuated (old bucket %zu)", u, ob);
            if (u < m->nevacuate && !e)
                fail(&v, "I6: old unit %zu below nevacuate %zu not evacuated", u,
                     m->nevacuate);
        }
        for (size_t i = 0; i < old->nbuckets; i++)
            live += check_chain(m, old, i, true, &ks, &v);
        if (old->noverflow != count_overflow(old))
            fail(&v, "I7: old noverflow %zu, chained %zu", old->noverflow,
                 count_overflow(old));
    } else if (m->grow != MG_GROW_NONE) {
        fail(&v, "I6: grow kind %u without oldbuckets", m->grow);
    }
    for (size_t i = 0; i < m->buckets->nbuckets; i++) {
        if (old) {
            size_t u = i & (units - 1);
            if (!mg__evacuated(old->ctrl[u].tophash) &&
                (m->buckets->ctrl[i].tophash != 0 || m->buckets->ctrl[i].overflow))
                fail(&v, "I6: new bucket %zu not empty but its old unit %zu is not "
                         "evacuated", i, u);
        }
        live += check_chain(m, m->buckets, i, false, &ks, &v);
    }
    if (m->buckets->noverflow != count_overflow(m->buckets))
        fail(&v, "I7: noverflow %zu, chained %zu", m->buckets->noverflow,
             count_overflow(m->buckets));
    if (live != m->count)
        fail(&v, "I5: count=%zu but %zu live slots", m->count, live);
    if (ks.n > 1) {
        qsort(ks.h, ks.n, sizeof *ks.h, cmp_u64);
        for (size_t i = 1; i < ks.n; i++)
            if (ks.h[i] == ks.h[i - 1]) {
                /* Same hash: compare for real to tell a collision from a dup. */
                fail(&v, "I4: a key (or a full 64-bit hash) is stored twice");
                break;
            }
    }
    free(ks.h);
    return v.failed ? -1 : 0;
}

void mg__dump(const mg_map *m, void *file)
{
    FILE *f = file ? file : stderr;
    if (!m) {
        fprintf(f, "map: nil\n");
        return;
    }
    fprintf(f, "map %p: count=%zu B=%u grow=%u nevacuate=%zu seed=%016llx\n",
            (const void *)m, m->count, m->B, m->grow, m->nevacuate,
            (unsigned long long)m->seed);
    const mg_table *ts[2] = {m->oldbuckets, m->buckets};
    for (int k = 0; k < 2; k++) {
        const mg_table *t = ts[k];
        if (!t)
            continue;
        fprintf(f, "%s array: B=%u noverflow=%zu\n", k ? "new" : "old", t->B,
                t->noverflow);
        for (size_t i = 0; i < t->nbuckets && i < 4096; i++) {
            uint64_t w = t->ctrl[i].tophash;
            const mg_ovf *o = t->ctrl[i].overflow;
            const mg_slot *s = &t->slots[i * MG_BUCKET_CNT];
            fprintf(f, "  [%zu]", i);
            for (;;) {
                fprintf(f, " {");
                for (unsigned j = 0; j < MG_BUCKET_CNT; j++) {
                    uint8_t top = mg__th_get(w, j);
                    if (top >= MG_MIN_TOPHASH && m->keykind == MG_KEY_U64)
                        fprintf(f, " %02x:%llu", top, (unsigned long long)s[j].key);
                    else
                        fprintf(f, " %02x", top);
                }
                fprintf(f, " }");
                if (!o)
                    break;
                w = o->tophash;
                s = o->slots;
                o = o->overflow;
            }
            fprintf(f, "\n");
        }
    }
}
