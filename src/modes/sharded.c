/*
 * sharded.c - MG_SHARDED: the engine split by hash into shards, each an
 * engine map behind its own reader-writer lock.
 *
 * A key's shard is given by the top bits of the mode's own hash (its own
 * seed, independent of the engine maps' seeds, so a shard's keys are not
 * skewed inside its engine).  Each shard (lock, sequence count, map
 * pointer) sits on its own MG_PAD bytes, so two threads working in
 * different shards never write the same cache line.
 *
 * Reads are optimistic: a reader writes nothing.  It reads the shard's
 * sequence count (even: no write in progress), looks the key up while a
 * writer may be changing the engine (mg__find_optimistic in map.c), and
 * keeps the answer only if the count is unchanged; otherwise it retries,
 * and after MG_OPT_TRIES failures it takes the shard's lock.  A writer
 * takes the shard's spin lock and makes the count odd for the length of
 * the write.  What makes the racing lookup safe: it runs inside an RCU
 * read-side section, and the shard engines allocate through an allocator
 * whose free() retires memory to reclaim.c, freed only after a grace
 * period; so nothing the lookup can reach is unmapped under it.
 * A locked read would cost two atomic read-modify-writes on the shard's
 * line, which bounce between cores and, being full barriers on x86, stop
 * the next lookups' cache misses from overlapping this one's.
 *
 * Guarantees (docs/modes.md):
 *   - every single-key call is linearizable (a read at its final sequence
 *     check);
 *   - reads are lock-free in the common case (they retry only while a
 *     write to the same shard is in progress, then wait for its lock);
 *   - mg_len and mg_stats_get sum the shards one at a time (each exact at
 *     its instant; the sum may mix instants while others write);
 *   - mg_range and iterators walk shard after shard, each step under that
 *     shard's lock: sync.Map's Range guarantee;
 *   - mg_batch takes every shard's lock, in shard order: atomic.
 * Progress: writers block per shard.
 */
#include "modes.h"

#include <errno.h>
#include <unistd.h>

typedef struct {
    mg_spin lock;
    atomic_uint seq; /* odd while a write is in progress */
    mg_map *e;
    char pad_[MG_PAD - 2 * sizeof(atomic_uint) - sizeof(mg_map *)];
} shard;

/* Optimistic attempts before a read takes the lock. */
#define MG_OPT_TRIES 4

typedef struct {
    mg_mmap base;
    unsigned nshards, shift; /* shard = hash >> shift (nshards > 1) */
    shard *shards;           /* MG_PAD-aligned, inside raw */
    void *raw;
    mg_limbo *limbo;
    mg_allocator under;  /* the caller's allocator (or the C library's) */
    mg_allocator engine; /* the shard engines': frees go through limbo */
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

/* The writer's side of a shard: lock, count odd ... count even, unlock. */
static void wr_lock(shard *sh)
{
    mg_spin_lock(&sh->lock);
    unsigned q = atomic_load_explicit(&sh->seq, memory_order_relaxed);
    atomic_store_explicit(&sh->seq, q + 1, memory_order_relaxed);
    /* The odd count is visible before any store of the write (a reader
     * that sees one of them sees the count move: its acquire fence). */
    atomic_thread_fence(memory_order_release);
}
static void wr_unlock(shard *sh)
{
    unsigned q = atomic_load_explicit(&sh->seq, memory_order_relaxed);
    atomic_store_explicit(&sh->seq, q + 1, memory_order_release);
    mg_spin_unlock(&sh->lock);
}

static bool sh_get(mg_mmap *mm, const mg_kref *k, uint64_t *val)
{
    sh_map *s = SH(mm);
    shard *sh = shard_of(s, k);
    uint64_t v;
    if (mg__excl == mm)
        return mg__eng_do(sh->e, mg__mm_bytes(mm), MG_OP_GET, k, 0, 0, val, NULL) != 0;
    unsigned n = 0;
    for (int tries = 0; tries < MG_OPT_TRIES; tries++) {
        unsigned q = atomic_load_explicit(&sh->seq, memory_order_acquire);
        if (q & 1) {
            mg__backoff(&n);
            continue;
        }
        mg__rcu_read_lock();
        int rc = mg__find_optimistic(sh->e, k->u, k->p, k->len, &v);
        mg__rcu_read_unlock();
        atomic_thread_fence(memory_order_acquire);
        if (rc >= 0 && atomic_load_explicit(&sh->seq, memory_order_relaxed) == q) {
            if (rc && val)
                *val = v;
            return rc != 0;
        }
    }
    mg_spin_lock(&sh->lock);
    int rc = mg__eng_do(sh->e, mg__mm_bytes(mm), MG_OP_GET, k, 0, 0, val, NULL);
    mg_spin_unlock(&sh->lock);
    return rc != 0;
}

static int sh_write(sh_map *s, int op, const mg_kref *k, uint64_t val, uint64_t old,
                    uint64_t *out, bool *loaded)
{
    shard *sh = shard_of(s, k);
    if (mg__excl == &s->base)
        return mg__eng_do(sh->e, mg__mm_bytes(&s->base), op, k, val, old, out, loaded);
    wr_lock(sh);
    int rc = mg__eng_do(sh->e, mg__mm_bytes(&s->base), op, k, val, old, out, loaded);
    wr_unlock(sh);
    mg__limbo_poll(s->limbo);
    return rc;
}

static int sh_put(mg_mmap *mm, const mg_kref *k, uint64_t val)
{
    return sh_write(SH(mm), MG_OP_PUT, k, val, 0, NULL, NULL);
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

/* Everything but get and the writes: under the shard's lock (a reader of
 * the engine; no sequence change) or, for the iterator's start and end and
 * for clear, as a writer. */
static void lock_rd(sh_map *s, shard *sh)
{
    if (mg__excl != &s->base)
        mg_spin_lock(&sh->lock);
}
static void unlock_rd(sh_map *s, shard *sh)
{
    if (mg__excl != &s->base)
        mg_spin_unlock(&sh->lock);
}
static void lock_wr(sh_map *s, shard *sh)
{
    if (mg__excl != &s->base)
        wr_lock(sh);
}
static void unlock_wr(sh_map *s, shard *sh)
{
    if (mg__excl != &s->base)
        wr_unlock(sh);
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

/* Stats and entries per shard, without the shard locks (each engine's
 * published fields): a skewed spread means a hot or adversarial key set. */
static void sh_sample(mg_mmap *mm, mg_metric_sample *out)
{
    sh_map *s = SH(mm);
    size_t lo = SIZE_MAX, hi = 0;
    memset(&out->st, 0, sizeof out->st);
    for (unsigned i = 0; i < s->nshards; i++) {
        mg_stats one;
        mg__eng_sample(s->shards[i].e, &one);
        mg__stats_add(&out->st, &one);
        lo = one.count < lo ? one.count : lo;
        hi = one.count > hi ? one.count : hi;
    }
    out->st.bytes += sizeof *s + raw_bytes(s);
    out->has_shards = true;
    out->shards = s->nshards;
    out->shard_entries_min = s->nshards ? lo : 0;
    out->shard_entries_max = hi;
}

static int sh_batch(mg_mmap *mm, mg_batch_fn fn, void *arg)
{
    sh_map *s = SH(mm);
    for (unsigned i = 0; i < s->nshards; i++)
        wr_lock(&s->shards[i]);
    mg__excl = mm;
    int rc = fn(&mm->hdr, arg);
    mg__excl = NULL;
    for (unsigned i = s->nshards; i-- > 0;)
        wr_unlock(&s->shards[i]);
    mg__limbo_poll(s->limbo);
    return rc;
}

static void sh_destroy(mg_mmap *mm)
{
    sh_map *s = SH(mm);
    if (s->shards)
        for (unsigned i = 0; i < s->nshards; i++)
            mg_free(s->shards[i].e);
    if (s->limbo)
        mg__limbo_destroy(s->limbo); /* what the engines freed, after a grace period */
    if (s->raw)
        mg__mfree(mm, s->raw, raw_bytes(s));
    mg__mode_fini(mm, sizeof *s);
}

static const mg_mops sh_ops = {
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
    .sample = sh_sample,
};

/* The shard engines' allocator: the caller's, except that a free waits
 * for the optimistic readers (reclaim.c). */
static void *eng_malloc(void *ctx, size_t n)
{
    sh_map *s = ctx;
    return s->under.malloc(s->under.ctx, n);
}
static void *eng_calloc(void *ctx, size_t n)
{
    sh_map *s = ctx;
    return s->under.calloc(s->under.ctx, n);
}
static void under_free(mg_mmap *mm, void *p, size_t n)
{
    sh_map *s = SH(mm);
    s->under.free(s->under.ctx, p, n);
}
static void eng_free(void *ctx, void *p, size_t n)
{
    sh_map *s = ctx;
    mg__limbo_retire(s->limbo, p, n, under_free, NULL);
}

#define MG_SHARDS_PER_CPU 64
#define MG_SHARDS_MAX 65536u

mg_mmap *mg__sharded_new(const mg_options *o)
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
    sh_map *s = (sh_map *)mg__mode_alloc(o, sizeof *s, &sh_ops);
    if (!s)
        return NULL;
    s->nshards = n;
    s->shift = 64 - bits;
    s->raw = mg__mmalloc(&s->base, raw_bytes(s));
    if (!s->raw)
        goto nomem;
    memset(s->raw, 0, raw_bytes(s));
    s->shards = (shard *)(((uintptr_t)s->raw + MG_PAD - 1) & ~(uintptr_t)(MG_PAD - 1));
    s->limbo = mg__limbo_new(&s->base);
    if (!s->limbo)
        goto nomem;
    s->under = s->base.hdr.alloc;
    s->engine = (mg_allocator){eng_malloc, eng_calloc, eng_free, s};
    s->base.inner.alloc = &s->engine;
    size_t hint = o->hint / n + (o->hint % n != 0);
    for (unsigned i = 0; i < n; i++) {
        mg_spin_init(&s->shards[i].lock);
        atomic_init(&s->shards[i].seq, 0);
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
