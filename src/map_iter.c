/*
 * map_iter.c - iteration with Go's guarantees (rules R1-R6 in map.c's essay).
 *
 * This follows Go 1.19's mapiterinit/mapiternext (runtime/map.go:815-990),
 * with two additions a C map needs: the iterator holds references on the
 * bucket arrays it reads (Go's garbage collector does that job), and it
 * knows shrinking, where a group of old buckets feeds one new bucket.
 */
#include "internal.h"

#include <assert.h>

enum { CHECK_NONE = 0, CHECK_FILTER, CHECK_GROUP };

typedef struct {
    mg_map *m;
    mg_table *tab;     /* it.buckets: the array this iteration walks (R2) */
    mg_table *cur;     /* the array c/s point into, referenced (tab or an old one) */
    uint64_t clearseq;
    size_t start, bucket, check_bucket, group_next; /* next old bucket of a group */
    uint64_t *th;      /* it.bptr: the bucket's tophash word; NULL: next bucket */
    mg_ovf **ov;       /* its overflow link */
    mg_slot *s;        /* its slots */
    uint64_t keybuf;   /* the produced u64 key, so its address stays valid */
    uint8_t B, offset, i, wrapped, check, done, bytes, pad_;
} iter_state;

/* A mode iterator (src/modes/modes.h) keeps an engine iterator in its
 * first 15 words and marks its last word with MG_MITER_TAG. */
static_assert(sizeof(iter_state) <= 15 * sizeof(uint64_t),
              "mg_iter too small for the iterator state");
bool mg__mode_iter_next(mg_iter *it, const void **key, size_t *len, uint64_t *val);
void mg__mode_iter_done(mg_iter *it);
static inline bool is_mode_iter(const mg_iter *it)
{
    return it->opaque_[19] == MG_MITER_TAG;
}

static inline iter_state *state(mg_iter *it)
{
    return (iter_state *)(void *)it->opaque_;
}

MG_READ_TEXT static void set_cur(iter_state *st, mg_table *t)
{
    if (st->cur == t)
        return;
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    mg__table_unref(st->m, st->cur);
    st->cur = t;
}

void mg_iter_init(mg_iter *it, mg_map *m)
{
    if (m && mg__is_mode(m)) {
        mg__mode_iter_init(it, m);
        return;
    }
    memset(it, 0, sizeof *it);
    mg__eng_iter_init(it, m);
}

/* The engine part only: the modes keep their own words after it. */
void mg__eng_iter_init(mg_iter *it, mg_map *m)
{
    iter_state *st = state(it);
    memset(st, 0, sizeof *st);
    if (m)
        mg__check_header(m, m->magic == MG_MAGIC_BYTES);
    if (!m || m->count == 0 || !m->buckets) {
        st->done = 1;
        return;
    }
    if (MG_UNLIKELY(atomic_load_explicit(&m->writer, memory_order_relaxed) != 0))
        mg__fatal(MG_FATAL_CONCURRENT_ITER_WRITE, m);
    st->m = m;
    st->bytes = m->keykind == MG_KEY_BYTES;
    st->tab = m->buckets;
    atomic_fetch_add_explicit(&st->tab->refs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->iterators, 1, memory_order_acq_rel);
    st->B = (uint8_t)m->B;
    st->clearseq = m->clearseq;
    /* R1: random start bucket and slot offset (Go: map.go:845-852). */
    uint64_t r = mg__fastrand();
    st->start = (size_t)(r & mg__bucket_mask(st->B));
    st->offset = (uint8_t)((r >> st->B) & (MG_BUCKET_CNT - 1));
    st->bucket = st->start;
}

void mg_iter_done(mg_iter *it)
{
    if (is_mode_iter(it))
        mg__mode_iter_done(it);
    else
        mg__eng_iter_done(it);
}

void mg__eng_iter_done(mg_iter *it)
{
    iter_state *st = state(it);
    if (st->done == 2 || !st->m) {
        st->done = 2;
        return;
    }
    mg_map *m = st->m;
    mg__table_unref(m, st->cur);
    mg__table_unref(m, st->tab);
    st->cur = st->tab = NULL;
    st->done = 2;
    if (atomic_fetch_sub_explicit(&m->iterators, 1, memory_order_acq_rel) == 1)
        mg__iterators_done(m);
}


MG_READ_TEXT static void enter_bucket(iter_state *st, mg_table *t, size_t i)
{
    set_cur(st, t);
    st->th = &t->ctrl[i].tophash;
    st->ov = &t->ctrl[i].overflow;
    st->s = &t->slots[i * MG_BUCKET_CNT];
    st->i = 0;
}

bool mg_iter_next(mg_iter *it, const void **key, size_t *len, uint64_t *val)
{
    if (MG_UNLIKELY(is_mode_iter(it)))
        return mg__mode_iter_next(it, key, len, val);
    return mg__eng_iter_next(it, key, len, val);
}

MG_READ_TEXT bool mg__eng_iter_next(mg_iter *it, const void **key, size_t *len, uint64_t *val)
{
    iter_state *st = state(it);
    if (st->done)
        return false;
    mg_map *m = st->m;
    if (MG_UNLIKELY(atomic_load_explicit(&m->writer, memory_order_relaxed) != 0))
        mg__fatal(MG_FATAL_CONCURRENT_ITER_WRITE, m);
    if (st->clearseq != m->clearseq) { /* R6 */
        st->done = 1;
        return false;
    }
    for (;;) {
        if (st->th == NULL) {
            if (st->bucket == st->start && st->wrapped) {
                st->done = 1;
                return false;
            }
            mg_table *old = m->oldbuckets;
            if (old && st->B == m->B) {
                /* R4: started during a grow that is still running. */
                if (m->grow == MG_GROW_SHRINK) {
                    /* Old buckets bucket, bucket + 2^B, ... feed this one. */
                    if (!mg__evacuated(old->ctrl[st->bucket].tophash)) {
                        enter_bucket(st, old, st->bucket);
                        st->check = CHECK_GROUP;
                        st->group_next = st->bucket + ((size_t)1 << st->B);
                    } else {
                        enter_bucket(st, st->tab, st->bucket);
                        st->check = CHECK_NONE;
                    }
                } else {
                    size_t ob = st->bucket & mg__bucket_mask(old->B);
                    if (!mg__evacuated(old->ctrl[ob].tophash)) {
                        enter_bucket(st, old, ob);
                        st->check = m->grow == MG_GROW_SAME ? CHECK_NONE : CHECK_FILTER;
                        st->check_bucket = st->bucket;
                    } else {
                        enter_bucket(st, st->tab, st->bucket);
                        st->check = CHECK_NONE;
                    }
                }
            } else {
                enter_bucket(st, st->tab, st->bucket);
                st->check = CHECK_NONE;
            }
            st->bucket++;
            if (st->bucket == ((size_t)1 << st->B)) {
                st->bucket = 0;
                st->wrapped = 1;
            }
        }
        for (; st->i < MG_BUCKET_CNT; st->i++) {
            unsigned off = (st->i + st->offset) & (MG_BUCKET_CNT - 1);
            uint8_t top = mg__th_get(*st->th, off);
            if (mg__is_empty(top) || top == MG_EVAC_EMPTY)
                continue;
            uint64_t k = st->s[off].key;
            if (st->check == CHECK_FILTER &&
                (mg__stored_hash(m, k) & mg__bucket_mask(st->B)) != st->check_bucket)
                continue; /* headed for the other half */
            uint64_t v;
            if (top != MG_EVAC_X && top != MG_EVAC_Y) {
                v = st->s[off].val; /* the golden data */
            } else {
                /* R3: the array moved on; the live map has the truth. */
                mg_slot *live;
                const mg_bkey *bk = st->bytes ? (const mg_bkey *)(uintptr_t)k : NULL;
                if (!mg__lookup_slot(m, mg__stored_hash(m, k), k, bk ? bk->data : NULL,
                                     bk ? bk->len : 0, &live))
                    continue; /* deleted */
                k = live->key;
                v = live->val;
            }
            st->i++;
            if (st->bytes) {
                const mg_bkey *bk = (const mg_bkey *)(uintptr_t)k;
                if (key)
                    *key = bk->data;
                if (len)
                    *len = bk->len;
            } else {
                st->keybuf = k;
                if (key)
                    *key = &st->keybuf;
                if (len)
                    *len = sizeof(uint64_t);
            }
            if (val)
                *val = v;
            return true;
        }
        mg_ovf *o = *st->ov;
        if (o) {
            st->th = &o->tophash;
            st->ov = &o->overflow;
            st->s = o->slots;
            st->i = 0;
        } else if (st->check == CHECK_GROUP && st->group_next < st->cur->nbuckets) {
            /* The next old bucket of the group feeding this new bucket. */
            enter_bucket(st, st->cur, st->group_next);
            st->group_next += (size_t)1 << st->B;
        } else {
            st->th = NULL;
        }
    }
}

typedef int (*range_fn)(const void *key, size_t len, uint64_t val, void *arg);

int mg_range(mg_map *m, range_fn fn, void *arg)
{
    mg_iter it;
    const void *k;
    size_t len;
    uint64_t v;
    int rc = 0;
    if (!fn)
        return 0;
    if (m && mg__is_mode(m) && mg__mode_range(m, fn, arg, &rc))
        return rc;
    mg_iter_init(&it, m);
    while (mg_iter_next(&it, &k, &len, &v))
        if ((rc = fn(k, len, v, arg)) != 0)
            break;
    mg_iter_done(&it);
    return rc;
}
