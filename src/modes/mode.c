/*
 * mode.c - the public calls on a mode map: checks, then the mode's op.
 *
 * map.c sends every call on a map whose magic is MG_MAGIC_MODE here.  This
 * file checks the key kind and the key, and calls the mode's function
 * table.  It also holds what the modes share: engine maps for their
 * entries, one function that runs any engine op, the mode hash.
 */
#include "modes.h"
#include "../obs/obs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

_Thread_local mg_mmap *mg__excl __attribute__((tls_model("initial-exec")));

static const char *const mode_names[] = {"unsync", "rwlock", "sharded",
                                         "readmostly", "snapshot", "actor"};

const char *mg_mode_name(mg_mode mode)
{
    if ((unsigned)mode >= sizeof mode_names / sizeof mode_names[0])
        return NULL;
    return mode_names[mode];
}

static inline mg_mmap *mm_of(const mg_map *m)
{
    return (mg_mmap *)(uintptr_t)m;
}

/* The key kind of the call against the map's. */
static inline mg_mmap *check(mg_map *m, bool bytes)
{
    mg_mmap *mm = mm_of(m);
    if (MG_UNLIKELY(mg__mm_bytes(mm) != bytes))
        mg__bad_header(m, mg__want_magic(bytes));
    return mm;
}

static inline bool bad_key(bool bytes, const mg_kref *k)
{
    return bytes && (k->len > MG_KEY_MAX || (!k->p && k->len > 0));
}

mg_map *mg__mode_new(const mg_options *o)
{
    mg_mmap *(*make)(const mg_options *) = NULL;
    switch (o->mode) {
    case MG_RWLOCK: make = mg__rwlock_new; break;
    case MG_SHARDED: make = mg__sharded_new; break;
    case MG_READMOSTLY: make = mg__readmostly_new; break;
    case MG_SNAPSHOT: make = mg__snapshot_new; break;
    case MG_ACTOR: make = mg__actor_new; break;
    default: errno = EINVAL; return NULL;
    }
    mg_mmap *mm = make(o);
    if (!mm)
        return NULL;
    if (mm->hdr.name)
        mg__registry_add(&mm->hdr);
    return &mm->hdr;
}

mg_mmap *mg__mode_alloc(const mg_options *o, size_t size, const mg_mops *ops)
{
    const mg_allocator *a = o->alloc ? o->alloc : &mg__sys_alloc;
    mg_mmap *mm = a->malloc(a->ctx, size);
    if (!mm) {
        errno = ENOMEM;
        return NULL;
    }
    memset(mm, 0, size);
    mm->hdr.magic = MG_MAGIC_MODE;
    mm->hdr.keykind = (uint8_t)o->key;
    mm->hdr.alloc = *a;
    mm->hdr.custom_alloc = o->alloc != NULL;
    mm->mode = o->mode;
    mm->ops = ops;
    mm->inner = *o;
    /* The engine maps the mode makes later use the header's copy of the
     * allocator: the caller's struct may be gone after mg_new. */
    mm->inner.alloc = o->alloc ? &mm->hdr.alloc : NULL;
    mm->inner.mode = MG_UNSYNC;
    mm->inner.name = NULL;
    mm->inner.hint = 0;
    mm->seed = mg__random_seed();
    mm->seed2 = mg__random_seed() | 1;
    if (o->name) {
        size_t n = strlen(o->name) + 1;
        mm->hdr.name = mg__malloc(&mm->hdr, n);
        if (!mm->hdr.name) {
            a->free(a->ctx, mm, size);
            errno = ENOMEM;
            return NULL;
        }
        memcpy(mm->hdr.name, o->name, n);
        mm->hdr.label = mm->hdr.name;
    }
    return mm;
}

void mg__mode_fini(mg_mmap *mm, size_t size)
{
    if (mm->hdr.name)
        mg__free(&mm->hdr, mm->hdr.name, strlen(mm->hdr.name) + 1);
    mm->hdr.name = NULL;
    mm->hdr.magic = MG_MAGIC_FREED;
    mg_allocator a = mm->hdr.alloc;
    a.free(a.ctx, mm, size);
}

mg_map *mg__eng_new(mg_mmap *mm, size_t hint)
{
    mg_options o = mm->inner;
    o.hint = hint;
    mg_map *e = mg_new(&o);
    if (e) /* its events carry the mode map's name */
        e->label = mm->hdr.name;
    return e;
}

int mg__eng_do(mg_map *e, bool bytes, int op, const mg_kref *k, uint64_t val,
               uint64_t old, uint64_t *out, bool *loaded)
{
    switch (op) {
    case MG_OP_GET:
        return bytes ? mg_get(e, k->p, k->len, out) : mg_get_u64(e, k->u, out);
    case MG_OP_PUT:
        return mg__e_put_excl(e, k, val);
    case MG_OP_DEL:
        return mg__e_del_excl(e, k);
    default:
        return mg__e_rmw_excl(e, op, k, val, old, out, loaded);
    }
}


void mg__stats_add(mg_stats *acc, const mg_stats *s)
{
    acc->count += s->count;
    acc->buckets += s->buckets;
    acc->overflow_buckets += s->overflow_buckets;
    if (s->B > acc->B)
        acc->B = s->B;
    acc->growing |= s->growing;
    acc->same_size_grow |= s->same_size_grow;
    acc->shrinking |= s->shrinking;
    acc->evacuated += s->evacuated;
    acc->old_buckets += s->old_buckets;
    acc->grows_total += s->grows_total;
    acc->same_size_grows_total += s->same_size_grows_total;
    acc->shrinks_total += s->shrinks_total;
    acc->bytes += s->bytes;
    acc->load_factor = acc->buckets ? (double)acc->count / (double)acc->buckets : 0.0;
}

/* ---- the public calls --------------------------------------------------- */

void mg__mode_free(mg_map *m)
{
    mg_mmap *mm = mm_of(m);
    if (mm->hdr.name) /* first: a scrape may be sampling it */
        mg__registry_remove(m);
    mm->ops->destroy(mm);
}

int mg__mode_put(mg_map *m, bool bytes, const mg_kref *k, uint64_t val)
{
    mg_mmap *mm = check(m, bytes);
    if (bad_key(bytes, k))
        return k->len > MG_KEY_MAX ? MG_EKEYLEN : MG_EINVAL;
    return mm->ops->put(mm, k, val);
}

bool mg__mode_get(mg_map *m, bool bytes, const mg_kref *k, uint64_t *val)
{
    mg_mmap *mm = check(m, bytes);
    if (bad_key(bytes, k))
        return false;
    return mm->ops->get(mm, k, val);
}

bool mg__mode_del(mg_map *m, bool bytes, const mg_kref *k)
{
    mg_mmap *mm = check(m, bytes);
    if (bad_key(bytes, k))
        return false;
    return mm->ops->del(mm, k);
}

int mg__mode_rmw(mg_map *m, bool bytes, int op, const mg_kref *k, uint64_t val,
                 uint64_t old, uint64_t *out, bool *loaded)
{
    mg_mmap *mm = check(m, bytes);
    if (bad_key(bytes, k)) {
        if (op == MG_RMW_GET_OR_PUT || op == MG_RMW_SWAP)
            return k->len > MG_KEY_MAX ? MG_EKEYLEN : MG_EINVAL;
        return 0;
    }
    return mm->ops->rmw(mm, op, k, val, old, out, loaded);
}

size_t mg__mode_len(const mg_map *m)
{
    mg_mmap *mm = mm_of(m);
    return mm->ops->len(mm);
}

void mg__mode_clear(mg_map *m)
{
    mg_mmap *mm = mm_of(m);
    mm->ops->clear(mm);
}

bool mg__mode_range(mg_map *m, mg_range_fn fn, void *arg, int *rc)
{
    mg_mmap *mm = mm_of(m);
    if (!mm->ops->range)
        return false;
    *rc = mm->ops->range(mm, fn, arg);
    return true;
}

void mg__mode_iter_init(mg_iter *it, mg_map *m)
{
    mg_mmap *mm = mm_of(m);
    mg_miter *mi = (mg_miter *)(void *)it;
    memset(it, 0, sizeof *it);
    mm->ops->iter_init(mm, mi);
    mi->mm = mm;
    mi->tag = MG_MITER_TAG;
}

bool mg__mode_iter_next(mg_iter *it, const void **key, size_t *len, uint64_t *val);
bool mg__mode_iter_next(mg_iter *it, const void **key, size_t *len, uint64_t *val)
{
    mg_miter *mi = (mg_miter *)(void *)it;
    if (!mi->mm)
        return false;
    const void *k;
    size_t l;
    uint64_t v;
    if (!mi->mm->ops->iter_next(mi->mm, mi, &k, &l, &v))
        return false;
    if (key)
        *key = k;
    if (len)
        *len = l;
    if (val)
        *val = v;
    return true;
}

void mg__mode_iter_done(mg_iter *it);
void mg__mode_iter_done(mg_iter *it)
{
    mg_miter *mi = (mg_miter *)(void *)it;
    if (mi->mm)
        mi->mm->ops->iter_done(mi->mm, mi);
    mi->mm = NULL;
}

int mg__mode_stats(const mg_map *m, mg_stats *out)
{
    mg_mmap *mm = mm_of(m);
    return mm->ops->stats(mm, out);
}

int mg__mode_batch(mg_map *m, mg_batch_fn fn, void *arg)
{
    mg_mmap *mm = mm_of(m);
    if (!mm->ops->batch)
        return MG_ENOTSUP;
    if (mg__excl == mm) /* already exclusive: a nested batch is just a call */
        return fn(m, arg);
    return mm->ops->batch(mm, fn, arg);
}

mg_mode mg__mode_of(const mg_map *m)
{
    return mm_of(m)->mode;
}

void mg__mode_sample(const mg_map *m, mg_metric_sample *s)
{
    mg_mmap *mm = mm_of(m);
    mm->ops->sample(mm, s);
}
