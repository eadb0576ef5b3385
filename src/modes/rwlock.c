/*
 * rwlock.c - MG_RWLOCK: one engine map behind one reader-writer lock.
 *
 * Go's answer to "concurrent map writes" in its simplest form: sync.RWMutex
 * around a map.  The lock is a big-reader lock (lock.h): each reader counts
 * itself on its own cache line, so concurrent reads do not bounce a shared
 * line between cores, and a conflicting thread spins briefly and then
 * yields instead of sleeping in the kernel.
 *
 * Guarantees (docs/modes.md):
 *   - every call is linearizable; a write excludes everything else;
 *   - mg_len and mg_stats_get read under the read lock (exact at that
 *     instant);
 *   - mg_range and iterators take the read lock for each step only, so fn
 *     may call anything on the map; they have sync.Map's Range guarantee
 *     (no key twice; a key present for the whole walk is produced; a value
 *     is one the key held at some point during the walk);
 *   - mg_batch runs fn under the write lock: atomic.
 * Progress: blocking (a reader waits for a writer, a writer for readers).
 */
#include "modes.h"

#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
    mg_mmap base;
    mg_bigrw lock;
    mg_map *e;
} rw_map;


static atomic_uint next_slot;
static _Thread_local unsigned my_slot; /* slot + 1; 0: not assigned yet */

unsigned mg__bigrw_slot(void)
{
    if (MG_UNLIKELY(my_slot == 0))
        my_slot = atomic_fetch_add_explicit(&next_slot, 1, memory_order_relaxed) + 1;
    return my_slot - 1;
}

void mg__rw_wait(atomic_uint *w, unsigned *n)
{
    if (*n < MG_RW_SPIN_STEPS) {
        mg__backoff(n);
        return;
    }
    unsigned v = atomic_load_explicit(w, memory_order_relaxed);
    if (!(v & MG_RW_WRITER))
        return;
    if (!(v & MG_RW_WAITERS)) {
        if (!atomic_compare_exchange_strong_explicit(w, &v, v | MG_RW_WAITERS,
                                                     memory_order_relaxed,
                                                     memory_order_relaxed))
            return; /* the word moved: look again */
        v |= MG_RW_WAITERS;
    }
    /* Sleeps only if the word still holds v (a reader's transient count
     * change makes it return at once: the caller looks again). */
    syscall(SYS_futex, (void *)w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

void mg__rw_wake(atomic_uint *w)
{
    syscall(SYS_futex, (void *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static inline rw_map *RW(mg_mmap *mm)
{
    return (rw_map *)mm;
}

static int do_read(rw_map *r, int op, const mg_kref *k, uint64_t *out)
{
    if (mg__excl == &r->base)
        return mg__eng_do(r->e, mg__mm_bytes(&r->base), op, k, 0, 0, out, NULL);
    mg_rslot *s = mg_bigrw_rdlock(&r->lock);
    int rc = mg__eng_do(r->e, mg__mm_bytes(&r->base), op, k, 0, 0, out, NULL);
    mg_bigrw_rdunlock(&r->lock, s);
    return rc;
}

static int do_write(rw_map *r, int op, const mg_kref *k, uint64_t val, uint64_t old,
                    uint64_t *out, bool *loaded)
{
    if (mg__excl == &r->base)
        return mg__eng_do(r->e, mg__mm_bytes(&r->base), op, k, val, old, out, loaded);
    mg_bigrw_wrlock(&r->lock);
    int rc = mg__eng_do(r->e, mg__mm_bytes(&r->base), op, k, val, old, out, loaded);
    mg_bigrw_wrunlock(&r->lock);
    return rc;
}

static int rw_put(mg_mmap *mm, const mg_kref *k, uint64_t val)
{
    return do_write(RW(mm), MG_OP_PUT, k, val, 0, NULL, NULL);
}

static bool rw_get(mg_mmap *mm, const mg_kref *k, uint64_t *val)
{
    return do_read(RW(mm), MG_OP_GET, k, val) != 0;
}

static bool rw_del(mg_mmap *mm, const mg_kref *k)
{
    return do_write(RW(mm), MG_OP_DEL, k, 0, 0, NULL, NULL) != 0;
}

static int rw_rmw(mg_mmap *mm, int op, const mg_kref *k, uint64_t val, uint64_t old,
                  uint64_t *out, bool *loaded)
{
    return do_write(RW(mm), op, k, val, old, out, loaded);
}

static size_t rw_len(mg_mmap *mm)
{
    rw_map *r = RW(mm);
    if (mg__excl == mm)
        return mg_len(r->e);
    mg_rslot *s = mg_bigrw_rdlock(&r->lock);
    size_t n = mg_len(r->e);
    mg_bigrw_rdunlock(&r->lock, s);
    return n;
}

static void rw_clear(mg_mmap *mm)
{
    rw_map *r = RW(mm);
    if (mg__excl == mm) {
        mg_clear(r->e);
        return;
    }
    mg_bigrw_wrlock(&r->lock);
    mg_clear(r->e);
    mg_bigrw_wrunlock(&r->lock);
}

/* Iterators: the engine iterator, stepped under the read lock.  Between
 * steps other threads write; to the engine that is the owner mutating the
 * map during a range, which keeps Go's guarantees.  Starting and ending an
 * iterator touch the engine's iterator bookkeeping (the list of byte keys
 * kept for live iterators), so they take the write lock. */
static void rw_iter_init(mg_mmap *mm, mg_miter *it)
{
    rw_map *r = RW(mm);
    if (mg__excl == mm) {
        mg__eng_iter_init(mg__miter_engine(it), r->e);
        return;
    }
    mg_bigrw_wrlock(&r->lock);
    mg__eng_iter_init(mg__miter_engine(it), r->e);
    mg_bigrw_wrunlock(&r->lock);
}

static bool rw_iter_next(mg_mmap *mm, mg_miter *it, const void **key, size_t *len,
                         uint64_t *val)
{
    rw_map *r = RW(mm);
    if (mg__excl == mm)
        return mg__eng_iter_next(mg__miter_engine(it), key, len, val);
    mg_rslot *s = mg_bigrw_rdlock(&r->lock);
    bool ok = mg__eng_iter_next(mg__miter_engine(it), key, len, val);
    mg_bigrw_rdunlock(&r->lock, s);
    return ok;
}

static void rw_iter_done(mg_mmap *mm, mg_miter *it)
{
    rw_map *r = RW(mm);
    if (mg__excl == mm) {
        mg__eng_iter_done(mg__miter_engine(it));
        return;
    }
    mg_bigrw_wrlock(&r->lock);
    mg__eng_iter_done(mg__miter_engine(it));
    mg_bigrw_wrunlock(&r->lock);
}

static int rw_stats(mg_mmap *mm, mg_stats *out)
{
    rw_map *r = RW(mm);
    int rc;
    if (mg__excl == mm)
        return mg_stats_get(r->e, out);
    mg_rslot *s = mg_bigrw_rdlock(&r->lock);
    rc = mg_stats_get(r->e, out);
    mg_bigrw_rdunlock(&r->lock, s);
    out->bytes += sizeof *r + (size_t)r->lock.nslots * sizeof(mg_rslot);
    return rc;
}

/* Without the lock: the engine publishes what a sample reads (MG_PUB). */
static void rw_sample(mg_mmap *mm, mg_metric_sample *s)
{
    rw_map *r = RW(mm);
    mg__eng_sample(r->e, &s->st);
    s->st.bytes += sizeof *r + (size_t)r->lock.nslots * sizeof(mg_rslot);
}

static int rw_batch(mg_mmap *mm, mg_batch_fn fn, void *arg)
{
    rw_map *r = RW(mm);
    mg_bigrw_wrlock(&r->lock);
    mg__excl = mm;
    int rc = fn(&mm->hdr, arg);
    mg__excl = NULL;
    mg_bigrw_wrunlock(&r->lock);
    return rc;
}

/* The slot array with room to align it to MG_PAD. */
static size_t slots_bytes(const rw_map *r)
{
    return (size_t)r->lock.nslots * sizeof(mg_rslot) + MG_PAD;
}

static void rw_destroy(mg_mmap *mm)
{
    rw_map *r = RW(mm);
    mg_free(r->e);
    mg__mfree(mm, r->lock.slots_raw, slots_bytes(r));
    mg__mode_fini(mm, sizeof *r);
}

static const mg_mops rw_ops = {
    .destroy = rw_destroy,
    .put = rw_put,
    .get = rw_get,
    .del = rw_del,
    .rmw = rw_rmw,
    .len = rw_len,
    .clear = rw_clear,
    .iter_init = rw_iter_init,
    .iter_next = rw_iter_next,
    .iter_done = rw_iter_done,
    .stats = rw_stats,
    .sample = rw_sample,
    .batch = rw_batch,
};

/* Reader slots: two per online CPU (threads beyond that share), a power of
 * two between 4 and 64, so a writer's scan stays short. */
static unsigned reader_slots(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want = n > 0 ? (unsigned)n * 2 : 4, s = 4;
    while (s < want && s < 64)
        s <<= 1;
    return s;
}

mg_mmap *mg__rwlock_new(const mg_options *o)
{
    rw_map *r = (rw_map *)mg__mode_alloc(o, sizeof *r, &rw_ops);
    if (!r)
        return NULL;
    r->lock.nslots = reader_slots();
    r->lock.slots_raw = mg__mmalloc(&r->base, slots_bytes(r));
    if (!r->lock.slots_raw)
        goto nomem;
    memset(r->lock.slots_raw, 0, slots_bytes(r));
    atomic_init(&r->lock.word, 0);
    r->lock.slots = (mg_rslot *)(((uintptr_t)r->lock.slots_raw + MG_PAD - 1) &
                                 ~(uintptr_t)(MG_PAD - 1));
    r->e = mg__eng_new(&r->base, o->hint);
    if (!r->e)
        goto nomem;
    return &r->base;
nomem:
    if (r->lock.slots_raw)
        mg__mfree(&r->base, r->lock.slots_raw, slots_bytes(r));
    mg__mode_fini(&r->base, sizeof *r);
    errno = ENOMEM;
    return NULL;
}
