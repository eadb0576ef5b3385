/*
 * sharded.c - MG_SHARDED: the engine split by hash into shards, each an
 * engine map behind its own reader-writer lock.
 *
 * A key's shard is given by the top bits of the mode's own hash (its own
 * seed, independent of the engine maps' seeds, so a shard's keys are not
 * skewed inside its engine).  Each shard (lock + map pointer) sits on its
 * own MG_PAD bytes, so two threads working in different shards never write
 * the same cache line.  The lock is one word (mg_rwspin): a read is one
 * atomic add to take it and one to drop it, with no system call ever.
 *
 * Why not optimistic (sequence-checked) reads: a reader that runs while a
 * writer changes the engine can follow a bucket array or a byte key that
 * the writer frees, so every engine free would have to be deferred past a
 * grace period and every engine read made tolerant of torn state: a data
 * race in C11 terms, which ThreadSanitizer would have to be told to ignore
 * in the engine's hot paths.  docs/modes.md gives the measured cost of the
 * locked read instead.
 *
 * Guarantees (docs/modes.md):
 *   - every single-key call is linearizable;
 *   - mg_len and mg_stats_get sum the shards one at a time (each exact at
 *     its instant; the sum may mix instants while others write);
 *   - mg_range and iterators walk shard after shard, each step under that
 *     shard's read lock: sync.Map's Range guarantee;
 *   - mg_batch takes every shard's write lock, in shard order: atomic.
 * Progress: blocking, per shard.
 */
#include "modes.h"

#include <errno.h>
#include <unistd.h>

typedef struct {
    mg_rwspin lock;
    mg_map *e;
    char pad_[MG_PAD - sizeof(mg_rwspin) - sizeof(mg_map *)];
} shard;

typedef struct {
    mg_mmap base;
    unsigned nshards, shift; /* shard = hash >> shift (nshards > 1) */
    shard *shards;           /* MG_PAD-aligned, inside raw */
    void *raw;
} sh_map;

static inline sh_map *SH(mg_mmap *mm)
{
    return (sh_map *)mm;
}

static size_t raw_bytes(const sh_map *s)
{
    return (size_t)s->nshards * sizeof(shard) + MG_PAD;
}

static inline shard *shard_of(sh_map *s, const mg_kref *k)
{
    if (s->nshards == 1)
        return &s->shards[0];
    return &s->shards[mg__mode_hash(&s->base, k) >> s->shift];
}

static int sh_read(sh_map *s, int op, const mg_kref *k, uint64_t *out)
{
    shard *sh = shard_of(s, k);
    if (mg__excl == &s->base)
        return mg__eng_do(sh->e, s->base.bytes, op, k, 0, 0, out, NULL);
    mg_rwspin_rdlock(&sh->lock);
    int rc = mg__eng_do(sh->e, s->base.bytes, op, k, 0, 0, out, NULL);
    mg_rwspin_rdunlock(&sh->lock);
    return rc;
}

static int sh_write(sh_map *s, int op, const mg_kref *k, uint64_t val, uint64_t old,
                    uint64_t *out, bool *loaded)
{
    shard *sh = shard_of(s, k);
    if (mg__excl == &s->base)
        return mg__eng_do(sh->e, s->base.bytes, op, k, val, old, out, loaded);
    mg_rwspin_wrlock(&sh->lock);
    int rc = mg__eng_do(sh->e, s->base.bytes, op, k, val, old, out, loaded);
    mg_rwspin_wrunlock(&sh->lock);
    return rc;
}

static int sh_put(mg_mmap *mm, const mg_kref *k, uint64_t val)
{
    return sh_write(SH(mm), MG_OP_PUT, k, val, 0, NULL, NULL);
}

static bool sh_get(mg_mmap *mm, const mg_kref *k, uint64_t *val)
{
    return sh_read(SH(mm), MG_OP_GET, k, val) != 0;
}

static bool sh_del(mg_mmap *mm, const mg_kref *k)
{
    return sh_write(SH(mm), MG_OP_DEL, k, 0, 0, NULL, NULL) != 0;
}

static int sh_rmw(mg_mmap *mm, int op, const mg_kref *k, uint64_t val, uint64_t old,
                  uint64_t *out, bool *loaded)
{
    return sh_write(SH(mm), op, k, val, old, out, loaded);
}

static void lock_rd(sh_map *s, shard *sh)
{
    if (mg__excl != &s->base)
        mg_rwspin_rdlock(&sh->lock);
}
static void unlock_rd(sh_map *s, shard *sh)
{
    if (mg__excl != &s->base)
        mg_rwspin_rdunlock(&sh->lock);
}
static void lock_wr(sh_map *s, shard *sh)
{
    if (mg__excl != &s->base)
        mg_rwspin_wrlock(&sh->lock);
}
static void unlock_wr(sh_map *s, shard *sh)
{
    if (mg__excl != &s->base)
        mg_rwspin_wrunlock(&sh->lock);
}

static size_t sh_len(mg_mmap *mm)
{
    sh_map *s = SH(mm);
    size_t n = 0;
    for (unsigned i = 0; i < s->nshards; i++) {
        shard *sh = &s->shards[i];
        lock_rd(s, sh);
        n += mg_len(sh->e);
        unlock_rd(s, sh);
    }
    return n;
}

static void sh_clear(mg_mmap *mm)
{
    sh_map *s = SH(mm);
    for (unsigned i = 0; i < s->nshards; i++) {
        shard *sh = &s->shards[i];
        lock_wr(s, sh);
        mg_clear(sh->e);
        unlock_wr(s, sh);
    }
}

/* Iterator words: aux[0] the shard being walked, aux[1] 1 once finished. */
static void start_shard(sh_map *s, mg_miter *it, unsigned i)
{
    shard *sh = &s->shards[i];
    it->aux[0] = i;
    lock_wr(s, sh);
    mg__eng_iter_init(mg__miter_engine(it), sh->e);
    unlock_wr(s, sh);
}

static void end_shard(sh_map *s, mg_miter *it)
{
    shard *sh = &s->shards[it->aux[0]];
    lock_wr(s, sh);
    mg__eng_iter_done(mg__miter_engine(it));
    unlock_wr(s, sh);
}

static void sh_iter_init(mg_mmap *mm, mg_miter *it)
{
    start_shard(SH(mm), it, 0);
}

static bool sh_iter_next(mg_mmap *mm, mg_miter *it, const void **key, size_t *len,
                         uint64_t *val)
{
    sh_map *s = SH(mm);
    while (!it->aux[1]) {
        shard *sh = &s->shards[it->aux[0]];
        lock_rd(s, sh);
        bool ok = mg__eng_iter_next(mg__miter_engine(it), key, len, val);
        unlock_rd(s, sh);
        if (ok)
            return true;
        end_shard(s, it);
        if (it->aux[0] + 1 >= s->nshards)
            it->aux[1] = 1;
        else
            start_shard(s, it, (unsigned)it->aux[0] + 1);
    }
    return false;
}

static void sh_iter_done(mg_mmap *mm, mg_miter *it)
{
    if (!it->aux[1]) {
        end_shard(SH(mm), it);
        it->aux[1] = 1;
    }
}

static int sh_stats(mg_mmap *mm, mg_stats *out)
{
    sh_map *s = SH(mm);
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < s->nshards; i++) {
        shard *sh = &s->shards[i];
        mg_stats one;
        lock_rd(s, sh);
        mg_stats_get(sh->e, &one);
        unlock_rd(s, sh);
        mg__stats_add(out, &one);
    }
    out->bytes += sizeof *s + raw_bytes(s);
    return MG_OK;
}

static int sh_batch(mg_mmap *mm, mg_batch_fn fn, void *arg)
{
    sh_map *s = SH(mm);
    for (unsigned i = 0; i < s->nshards; i++)
        mg_rwspin_wrlock(&s->shards[i].lock);
    mg__excl = mm;
    int rc = fn(&mm->hdr, arg);
    mg__excl = NULL;
    for (unsigned i = s->nshards; i-- > 0;)
        mg_rwspin_wrunlock(&s->shards[i].lock);
    return rc;
}

static void sh_destroy(mg_mmap *mm)
{
    sh_map *s = SH(mm);
    if (s->shards)
        for (unsigned i = 0; i < s->nshards; i++)
            mg_free(s->shards[i].e);
    if (s->raw)
        mg__mfree(mm, s->raw, raw_bytes(s));
    mg__mode_fini(mm, sizeof *s);
}

static const mg_mops sh_ops = {
    .name = "sharded",
    .destroy = sh_destroy,
    .put = sh_put,
    .get = sh_get,
    .del = sh_del,
    .rmw = sh_rmw,
    .len = sh_len,
    .clear = sh_clear,
    .iter_init = sh_iter_init,
    .iter_next = sh_iter_next,
    .iter_done = sh_iter_done,
    .stats = sh_stats,
    .batch = sh_batch,
};

#define MG_SHARDS_PER_CPU 16
#define MG_SHARDS_MAX 65536u

mg_mmap *mg__sharded_new(const mg_options *o, size_t *size)
{
    unsigned want = o->shards;
    if (want == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        want = (unsigned)(cpus > 0 ? cpus : 1) * MG_SHARDS_PER_CPU;
    }
    if (want > MG_SHARDS_MAX) {
        errno = EINVAL;
        return NULL;
    }
    unsigned n = 1, bits = 0;
    while (n < want) {
        n <<= 1;
        bits++;
    }
    const mg_allocator *a = o->alloc ? o->alloc : &mg__sys_alloc;
    sh_map *s = a->malloc(a->ctx, sizeof *s);
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    memset(s, 0, sizeof *s);
    *size = sizeof *s;
    s->nshards = n;
    s->shift = 64 - bits;
    if (mg__mode_init(&s->base, o, a, &sh_ops) != 0)
        goto nomem;
    s->raw = mg__mmalloc(&s->base, raw_bytes(s));
    if (!s->raw)
        goto nomem;
    memset(s->raw, 0, raw_bytes(s));
    s->shards = (shard *)(((uintptr_t)s->raw + MG_PAD - 1) & ~(uintptr_t)(MG_PAD - 1));
    size_t hint = o->hint / n + (o->hint % n != 0);
    for (unsigned i = 0; i < n; i++) {
        mg_rwspin_init(&s->shards[i].lock);
        s->shards[i].e = mg__eng_new(&s->base, hint);
        if (!s->shards[i].e)
            goto nomem;
    }
    return &s->base;
nomem:
    sh_destroy(&s->base);
    errno = ENOMEM;
    return NULL;
}
