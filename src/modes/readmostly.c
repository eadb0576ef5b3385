/*
 * readmostly.c - MG_READMOSTLY: Go's sync.Map algorithm (Go 1.19's
 * sync/map.go, with Go 1.20's Swap, CompareAndSwap and CompareAndDelete and
 * Go 1.23's Clear), on engine maps.
 *
 * Terms are Go's:
 *   read      the read-only map (struct rm_read): an engine map from key to
 *             entry, never written after it is published, plus `amended`,
 *             true when dirty holds a key that read lacks.  Loaded with
 *             one atomic pointer read and walked with no lock.
 *   dirty     an engine map from key to entry, guarded by mu: every entry
 *             of read that is not expunged, plus the new keys.  NULL is
 *             Go's nil dirty map.
 *   entry     a value cell shared by read and dirty.  Its states are Go's:
 *             live, nil (deleted; dirty is nil or holds it) and expunged
 *             (deleted and left out of a non-nil dirty).
 *   misses    loads that had to take mu; when misses reach len(dirty),
 *             dirty is promoted: it becomes read, and dirty becomes nil.
 *
 * The algorithm follows sync/map.go call by call (the line references in
 * ../shared/reference/go-map-semantics.md, section 2): the lock-free fast
 * paths on read's entries (tryStore, tryLoadOrStore, delete, trySwap,
 * tryCompareAndSwap), the locked slow paths with their double check of
 * read, unexpunging, dirtyLocked's copy that expunges nil entries, and
 * missLocked's promotion.  A test runs the same operations on Go 1.19's
 * sync.Map and compares (len(read), amended, len(dirty), misses) after each.
 *
 * Where C differs from Go:
 *   - An entry holds its value itself, not a pointer to a boxed value, so
 *     a store does not allocate.  The entry's control word (state, a busy
 *     bit, a version) works as a one-entry sequence lock: a writer of the
 *     entry sets busy with a CAS (entry writers exclude each other for two
 *     stores), readers read the control word, the value, and the control
 *     word again, and retry if it moved.  A load writes nothing.
 *   - Go's garbage collector frees what nobody references; here read maps
 *     and entries that leave both maps are retired to reclaim.c and freed
 *     after an RCU grace period (liburcu).  Every operation that touches
 *     read runs inside an RCU read-side section, which writes only the
 *     thread's own counter.
 *   - mu is a spinning lock (lock.h), like Go's Mutex before it parks.
 *   - Go has no Len.  mg_len returns a count of live entries kept by the
 *     entry transitions (under the entry's busy bit); it may be stale while
 *     others write.
 *   - Clear (Go 1.23) publishes an empty read; the old entries are marked
 *     expunged, so a thread still holding the old read falls to the slow
 *     path and sees the new, empty map.
 *
 * Guarantees: single-key calls are linearizable; loads of keys in read
 * are lock-free and write no shared memory (they retry only while a store
 * to the same entry is between its two stores); mg_range and iterators
 * have sync.Map's Range guarantee and, like Range, promote dirty first;
 * mg_batch is not supported (MG_ENOTSUP).
 */
#include "modes.h"
#include "introspect.h"

#include <errno.h>

/* ---- entries ------------------------------------------------------------ */

#define E_LIVE 0u
#define E_NIL 1u
#define E_EXP 2u
#define E_STATE 3u
#define E_BUSY 4u
#define E_VER 8u

typedef struct {
    _Atomic uint64_t ctl; /* version * E_VER | E_BUSY | state */
    _Atomic uint64_t val;
} entry;

typedef struct rm_read {
    mg_map *m;            /* key -> entry pointer; never written once published */
    atomic_bool amended;  /* set under mu (Go stores a new readOnly instead) */
    atomic_int pins;      /* iterators walking this read */
    bool cleared;         /* retired by Clear: all its entries go with it */
    mg_map *dirty_also;   /* retired by Clear: the dirty map of that time */
    struct rm_read *successor; /* retired by promotion: the read that replaced it */
} rm_read;

typedef struct {
    mg_mmap base;
    mg_spin mu;
    _Atomic(rm_read *) read;
    mg_map *dirty;   /* under mu */
    size_t misses;   /* under mu */
    uint64_t misses_total, promotions_total; /* under mu; sampled relaxed */
    rm_read *spare;  /* under mu: the rm_read the next promotion publishes */
    atomic_long live;
    mg_limbo *limbo;
} rm_map;

static inline rm_map *RM(mg_mmap *mm)
{
    return (rm_map *)mm;
}

/* Set the busy bit; returns the control word from before. */
static uint64_t claim(entry *e)
{
    unsigned n = 0;
    uint64_t c = atomic_load_explicit(&e->ctl, memory_order_relaxed);
    for (;;) {
        if (c & E_BUSY) {
            mg__backoff(&n);
            c = atomic_load_explicit(&e->ctl, memory_order_relaxed);
        } else if (atomic_compare_exchange_weak_explicit(&e->ctl, &c, c | E_BUSY,
                                                         memory_order_acquire,
                                                         memory_order_relaxed)) {
            /* Orders the claim before the value stores that follow, for a
             * reader's acquire fence (see e_load). */
            atomic_thread_fence(memory_order_release);
            return c;
        }
    }
}
/* Drop the claim with nothing changed. */
static void unclaim(entry *e, uint64_t c)
{
    atomic_store_explicit(&e->ctl, c, memory_order_release);
}
/* Drop the claim with a new state (the version moves on). */
static void publish(entry *e, uint64_t c, unsigned state)
{
    atomic_store_explicit(&e->ctl, ((c & ~(uint64_t)(E_VER - 1)) + E_VER) | state,
                          memory_order_release);
}
static inline uint64_t val_of(entry *e)
{
    return atomic_load_explicit(&e->val, memory_order_relaxed);
}
static inline void set_val(entry *e, uint64_t v)
{
    atomic_store_explicit(&e->val, v, memory_order_relaxed);
}

/* Go: e.load().  The sequence-lock read: writes nothing. */
static bool e_load(entry *e, uint64_t *v)
{
    unsigned n = 0;
    for (;;) {
        uint64_t c1 = atomic_load_explicit(&e->ctl, memory_order_acquire);
        if (c1 & E_BUSY) {
            mg__backoff(&n);
            continue;
        }
        if ((c1 & E_STATE) != E_LIVE)
            return false;
        uint64_t x = atomic_load_explicit(&e->val, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&e->ctl, memory_order_relaxed) == c1) {
            *v = x;
            return true;
        }
    }
}

/* Store v into a claimed entry in state `from`, counting a new live one. */
static void store_claimed(rm_map *r, entry *e, uint64_t c, uint64_t v)
{
    set_val(e, v);
    if ((c & E_STATE) != E_LIVE)
        atomic_fetch_add_explicit(&r->live, 1, memory_order_relaxed);
    publish(e, c, E_LIVE);
}

/* Go: tryStore / trySwap.  false if the entry is expunged.  *prev and
 * *was_live describe the value replaced. */
static bool try_swap(rm_map *r, entry *e, uint64_t v, uint64_t *prev, bool *was_live)
{
    uint64_t c = claim(e);
    if ((c & E_STATE) == E_EXP) {
        unclaim(e, c);
        return false;
    }
    *was_live = (c & E_STATE) == E_LIVE;
    *prev = val_of(e);
    store_claimed(r, e, c, v);
    return true;
}

/* Go: tryLoadOrStore.  false if expunged. */
static bool try_load_or_store(rm_map *r, entry *e, uint64_t v, uint64_t *actual,
                              bool *loaded)
{
    if (e_load(e, actual)) { /* Go loads first: a hit writes nothing */
        *loaded = true;
        return true;
    }
    uint64_t c = claim(e);
    switch (c & E_STATE) {
    case E_EXP:
        unclaim(e, c);
        return false;
    case E_LIVE:
        *actual = val_of(e);
        *loaded = true;
        unclaim(e, c);
        return true;
    default:
        store_claimed(r, e, c, v);
        *actual = v;
        *loaded = false;
        return true;
    }
}

/* Go: e.delete() (LoadAndDelete).  true and *old if it was live. */
static bool e_delete(rm_map *r, entry *e, uint64_t *old)
{
    uint64_t c = atomic_load_explicit(&e->ctl, memory_order_relaxed);
    if (!(c & E_BUSY) && (c & E_STATE) != E_LIVE)
        return false;
    c = claim(e);
    if ((c & E_STATE) != E_LIVE) {
        unclaim(e, c);
        return false;
    }
    *old = val_of(e);
    atomic_fetch_sub_explicit(&r->live, 1, memory_order_relaxed);
    publish(e, c, E_NIL);
    return true;
}

/* Go 1.20: tryCompareAndSwap (del == false) and CompareAndDelete's loop. */
static bool try_compare(rm_map *r, entry *e, uint64_t old, uint64_t v, bool del)
{
    uint64_t cur;
    if (!e_load(e, &cur) || cur != old) /* a failing compare writes nothing */
        return false;
    uint64_t c = claim(e);
    if ((c & E_STATE) != E_LIVE || val_of(e) != old) {
        unclaim(e, c);
        return false;
    }
    if (del) {
        atomic_fetch_sub_explicit(&r->live, 1, memory_order_relaxed);
        publish(e, c, E_NIL);
    } else {
        set_val(e, v);
        publish(e, c, E_LIVE);
    }
    return true;
}

/* Go: tryExpungeLocked.  true if the entry is (now) expunged. */
static bool try_expunge_locked(entry *e)
{
    uint64_t c = claim(e);
    switch (c & E_STATE) {
    case E_NIL:
        publish(e, c, E_EXP);
        return true;
    case E_EXP:
        unclaim(e, c);
        return true;
    default:
        unclaim(e, c);
        return false;
    }
}

/* Go: unexpungeLocked.  true if it was expunged (now nil). */
static bool unexpunge_locked(entry *e)
{
    uint64_t c = claim(e);
    if ((c & E_STATE) != E_EXP) {
        unclaim(e, c);
        return false;
    }
    publish(e, c, E_NIL);
    return true;
}

/* Force an entry to expunged (Clear, and undoing a failed dirtyLocked is
 * the opposite: expunged back to nil). */
static void set_state_locked(rm_map *r, entry *e, unsigned state)
{
    uint64_t c = claim(e);
    if ((c & E_STATE) == E_LIVE)
        atomic_fetch_sub_explicit(&r->live, 1, memory_order_relaxed);
    publish(e, c, state);
}

/* ---- maps of entries ------------------------------------------------------ */

static entry *lookup(rm_map *r, mg_map *m, const mg_kref *k)
{
    uint64_t v;
    if (mg__eng_do(m, mg__mm_bytes(&r->base), MG_OP_GET, k, 0, 0, &v, NULL))
        return (entry *)(uintptr_t)v;
    return NULL;
}

static int insert(rm_map *r, mg_map *m, const mg_kref *k, entry *e)
{
    return mg__eng_do(m, mg__mm_bytes(&r->base), MG_OP_PUT, k, (uint64_t)(uintptr_t)e, 0, NULL, NULL);
}

static entry *new_entry(rm_map *r, uint64_t v)
{
    entry *e = mg__mmalloc(&r->base, sizeof *e);
    if (e) {
        atomic_init(&e->ctl, E_LIVE);
        atomic_init(&e->val, v);
    }
    return e;
}

static void free_entry(mg_mmap *mm, void *p, size_t size)
{
    mg__mfree(mm, p, size);
}

/* A key from an engine iterator, as a kref. */
static mg_kref key_of(const rm_map *r, const void *k, size_t len)
{
    mg_kref kr = {0};
    if (mg__mm_bytes(&r->base)) {
        kr.p = k;
        kr.len = len;
    } else {
        memcpy(&kr.u, k, sizeof kr.u);
    }
    return kr;
}

static inline rm_read *load_read(rm_map *r)
{
    return atomic_load_explicit(&r->read, memory_order_acquire);
}

static inline bool amended(rm_read *rd)
{
    return atomic_load_explicit(&rd->amended, memory_order_acquire);
}

/* Free a retired read (reclaim.c calls this after the grace period).
 * Promotion: the entries that were expunged when it was replaced are in no
 * map any more and go with it.  They are the expunged ones that its
 * successor lacks: an entry the successor holds may have been expunged
 * since, by a later dirtyLocked, and lives on.  (Reads are freed in
 * retirement order, so the successor is still there.)  Clear: all of its
 * entries, and those of the dirty map of that time. */
static void free_read(mg_mmap *mm, void *p, size_t size)
{
    rm_map *r = RM(mm);
    rm_read *rd = p;
    mg_iter it;
    const void *k;
    size_t len;
    uint64_t ev;
    mg_iter_init(&it, rd->m);
    while (mg_iter_next(&it, &k, &len, &ev)) {
        entry *e = (entry *)(uintptr_t)ev;
        bool mine = rd->cleared;
        if (!mine && (atomic_load(&e->ctl) & E_STATE) == E_EXP) {
            mg_kref kr = key_of(r, k, len);
            mine = lookup(r, rd->successor->m, &kr) != e;
        }
        if (mine)
            free_entry(mm, e, sizeof *e);
    }
    mg_iter_done(&it);
    if (rd->dirty_also) {
        mg_iter_init(&it, rd->dirty_also);
        while (mg_iter_next(&it, &k, &len, &ev)) {
            mg_kref kr = key_of(r, k, len);
            if (!lookup(r, rd->m, &kr))
                free_entry(mm, (void *)(uintptr_t)ev, sizeof(entry));
        }
        mg_iter_done(&it);
        mg_free(rd->dirty_also);
    }
    mg_free(rd->m);
    mg__mfree(mm, rd, size);
}

static rm_read *new_read(rm_map *r, mg_map *m)
{
    rm_read *rd = mg__mmalloc(&r->base, sizeof *rd);
    if (!rd)
        return NULL;
    memset(rd, 0, sizeof *rd);
    rd->m = m;
    atomic_init(&rd->amended, false);
    atomic_init(&rd->pins, 0);
    return rd;
}

/* Go: the promotion in missLocked and Range: read = readOnly{m: dirty}. */
static void promote_locked(rm_map *r)
{
    rm_read *old = load_read(r);
    rm_read *nr = r->spare; /* allocated by dirty_locked with the dirty map */
    r->spare = NULL;
    nr->m = r->dirty;
    atomic_store_explicit(&nr->amended, false, memory_order_relaxed);
    atomic_store_explicit(&r->read, nr, memory_order_release);
    r->dirty = NULL;
    r->misses = 0;
    MG_PUB(r->promotions_total, r->promotions_total + 1);
    MG_EV_PROMOTE(&r->base.hdr, mg_len(nr->m));
    old->successor = nr;
    mg__limbo_retire(r->limbo, old, sizeof *old, free_read, &old->pins);
}

/* Go: missLocked. */
static void miss_locked(rm_map *r)
{
    r->misses++;
    MG_PUB(r->misses_total, r->misses_total + 1);
    if (r->misses < mg_len(r->dirty))
        return;
    promote_locked(r);
}

/* Go: dirtyLocked.  Copies read into a new dirty map, expunging nil
 * entries and leaving them out.  MG_ENOMEM leaves everything as it was. */
static int dirty_locked(rm_map *r)
{
    if (r->dirty)
        return MG_OK;
    rm_read *rd = load_read(r);
    if (!r->spare && !(r->spare = new_read(r, NULL)))
        return MG_ENOMEM;
    mg_map *d = mg__eng_new(&r->base, mg_len(rd->m));
    if (!d)
        return MG_ENOMEM;
    mg_iter it;
    const void *k;
    size_t len;
    uint64_t ev;
    int rc = MG_OK;
    mg_iter_init(&it, rd->m);
    while (rc == MG_OK && mg_iter_next(&it, &k, &len, &ev)) {
        entry *e = (entry *)(uintptr_t)ev;
        if (!try_expunge_locked(e)) {
            mg_kref kr = key_of(r, k, len);
            rc = insert(r, d, &kr, e);
        }
    }
    mg_iter_done(&it);
    if (rc == MG_OK) {
        r->dirty = d;
        return MG_OK;
    }
    /* Undo: with dirty nil no entry may be expunged. */
    mg_free(d);
    mg_iter_init(&it, rd->m);
    while (mg_iter_next(&it, &k, &len, &ev))
        unexpunge_locked((entry *)(uintptr_t)ev);
    mg_iter_done(&it);
    return MG_ENOMEM;
}

/* A new key under mu (the last branch of Store, Swap and LoadOrStore). */
static int add_locked(rm_map *r, rm_read *rd, const mg_kref *k, uint64_t v)
{
    entry *e = new_entry(r, v);
    if (!e)
        return MG_ENOMEM;
    int rc = MG_OK;
    if (!amended(rd))
        rc = dirty_locked(r);
    if (rc == MG_OK)
        rc = insert(r, r->dirty, k, e);
    if (rc != MG_OK) {
        free_entry(&r->base, e, sizeof *e);
        return rc;
    }
    atomic_fetch_add_explicit(&r->live, 1, memory_order_relaxed);
    if (!amended(rd))
        atomic_store_explicit(&rd->amended, true, memory_order_release);
    return MG_OK;
}

/* Unexpunge an entry found in read and put it back in dirty. */
static int unexpunge_into_dirty(rm_map *r, entry *e, const mg_kref *k)
{
    if (!unexpunge_locked(e))
        return MG_OK;
    int rc = insert(r, r->dirty, k, e);
    if (rc != MG_OK)
        try_expunge_locked(e); /* back as it was */
    return rc;
}

/* ---- operations ------------------------------------------------------------ */

/* Every operation runs inside one RCU read-side section; the slow path
 * takes mu inside it (mu's holders never wait for a grace period). */
static void leave(rm_map *r)
{
    mg__rcu_read_unlock();
    mg__limbo_poll(r->limbo);
}

static bool rm_get(mg_mmap *mm, const mg_kref *k, uint64_t *val)
{
    rm_map *r = RM(mm);
    mg__rcu_read_lock();
    rm_read *rd = load_read(r);
    entry *e = lookup(r, rd->m, k);
    bool slow = !e && amended(rd);
    if (slow) {
        mg_spin_lock(&r->mu);
        rd = load_read(r);
        e = lookup(r, rd->m, k);
        if (!e && amended(rd)) {
            e = lookup(r, r->dirty, k);
            miss_locked(r); /* a miss whether or not dirty has it */
        }
        mg_spin_unlock(&r->mu);
    }
    uint64_t v;
    bool ok = e && e_load(e, &v);
    if (ok && val)
        *val = v;
    if (slow)
        leave(r);
    else
        mg__rcu_read_unlock();
    return ok;
}

/* Store (Go 1.19) and Swap (Go 1.20): the same state changes. */
static int store(rm_map *r, const mg_kref *k, uint64_t v, uint64_t *prev, bool *loaded)
{
    uint64_t p = 0;
    bool was = false;
    mg__rcu_read_lock();
    rm_read *rd = load_read(r);
    entry *e = lookup(r, rd->m, k);
    if (e && try_swap(r, e, v, &p, &was)) {
        mg__rcu_read_unlock();
        *prev = p;
        *loaded = was;
        return MG_OK;
    }
    int rc = MG_OK;
    mg_spin_lock(&r->mu);
    rd = load_read(r);
    if ((e = lookup(r, rd->m, k))) {
        rc = unexpunge_into_dirty(r, e, k);
        if (rc == MG_OK)
            try_swap(r, e, v, &p, &was); /* not expunged now: cannot fail */
    } else if (r->dirty && (e = lookup(r, r->dirty, k))) {
        try_swap(r, e, v, &p, &was);
    } else {
        rc = add_locked(r, rd, k, v);
    }
    mg_spin_unlock(&r->mu);
    leave(r);
    *prev = p;
    *loaded = was;
    return rc;
}

static int rm_put(mg_mmap *mm, const mg_kref *k, uint64_t val)
{
    uint64_t p;
    bool l;
    return store(RM(mm), k, val, &p, &l);
}

/* Go: LoadOrStore. */
static int load_or_store(rm_map *r, const mg_kref *k, uint64_t v, uint64_t *actual,
                         bool *loaded)
{
    mg__rcu_read_lock();
    rm_read *rd = load_read(r);
    entry *e = lookup(r, rd->m, k);
    if (e && try_load_or_store(r, e, v, actual, loaded)) {
        mg__rcu_read_unlock();
        return MG_OK;
    }
    int rc = MG_OK;
    mg_spin_lock(&r->mu);
    rd = load_read(r);
    if ((e = lookup(r, rd->m, k))) {
        rc = unexpunge_into_dirty(r, e, k);
        if (rc == MG_OK)
            try_load_or_store(r, e, v, actual, loaded);
    } else if (r->dirty && (e = lookup(r, r->dirty, k))) {
        try_load_or_store(r, e, v, actual, loaded);
        miss_locked(r);
    } else {
        rc = add_locked(r, rd, k, v);
        *actual = v;
        *loaded = false;
    }
    mg_spin_unlock(&r->mu);
    leave(r);
    return rc;
}

/* The lookup of LoadAndDelete and CompareAndDelete: read, then (amended)
 * under mu read again and dirty, counting a miss.  LoadAndDelete also
 * removes the key from dirty; the entry, now in no map, is retired. */
static entry *find_for_delete(rm_map *r, const mg_kref *k, bool remove, bool *slow)
{
    rm_read *rd = load_read(r);
    entry *e = lookup(r, rd->m, k);
    *slow = false;
    if (!e && amended(rd)) {
        *slow = true;
        mg_spin_lock(&r->mu);
        rd = load_read(r);
        e = lookup(r, rd->m, k);
        if (!e && amended(rd)) {
            e = lookup(r, r->dirty, k);
            if (e && remove) {
                mg__eng_do(r->dirty, mg__mm_bytes(&r->base), MG_OP_DEL, k, 0, 0, NULL, NULL);
                mg__limbo_retire(r->limbo, e, sizeof *e, free_entry, NULL);
            }
            miss_locked(r);
        }
        mg_spin_unlock(&r->mu);
    }
    return e;
}

static bool load_and_delete(rm_map *r, const mg_kref *k, uint64_t *old)
{
    bool slow;
    mg__rcu_read_lock();
    entry *e = find_for_delete(r, k, true, &slow);
    bool ok = e && e_delete(r, e, old);
    if (slow)
        leave(r);
    else
        mg__rcu_read_unlock();
    return ok;
}

static bool rm_del(mg_mmap *mm, const mg_kref *k)
{
    uint64_t old;
    return load_and_delete(RM(mm), k, &old);
}

/* Go 1.20: CompareAndSwap. */
static bool compare_and_swap(rm_map *r, const mg_kref *k, uint64_t old, uint64_t v)
{
    mg__rcu_read_lock();
    rm_read *rd = load_read(r);
    entry *e = lookup(r, rd->m, k);
    if (e || !amended(rd)) {
        bool ok = e && try_compare(r, e, old, v, false);
        mg__rcu_read_unlock();
        return ok;
    }
    bool ok = false;
    mg_spin_lock(&r->mu);
    rd = load_read(r);
    if ((e = lookup(r, rd->m, k))) {
        ok = try_compare(r, e, old, v, false);
    } else if (r->dirty && (e = lookup(r, r->dirty, k))) {
        ok = try_compare(r, e, old, v, false);
        miss_locked(r);
    }
    mg_spin_unlock(&r->mu);
    leave(r);
    return ok;
}

/* Go 1.20: CompareAndDelete. */
static bool compare_and_delete(rm_map *r, const mg_kref *k, uint64_t old)
{
    bool slow;
    mg__rcu_read_lock();
    entry *e = find_for_delete(r, k, false, &slow);
    bool ok = e && try_compare(r, e, old, 0, true);
    if (slow)
        leave(r);
    else
        mg__rcu_read_unlock();
    return ok;
}

static int rm_rmw(mg_mmap *mm, int op, const mg_kref *k, uint64_t val, uint64_t old,
                  uint64_t *out, bool *loaded)
{
    rm_map *r = RM(mm);
    switch (op) {
    case MG_RMW_GET_OR_PUT:
        return load_or_store(r, k, val, out, loaded);
    case MG_RMW_SWAP:
        return store(r, k, val, out, loaded);
    case MG_RMW_GET_AND_DEL:
        return *loaded = load_and_delete(r, k, out);
    case MG_RMW_CAS:
        return compare_and_swap(r, k, old, val);
    case MG_RMW_CAD:
        return compare_and_delete(r, k, old);
    default:
        return 0;
    }
}

static size_t rm_len(mg_mmap *mm)
{
    long n = atomic_load_explicit(&RM(mm)->live, memory_order_relaxed);
    return n > 0 ? (size_t)n : 0;
}

/* Go 1.23: Clear. */
static void rm_clear(mg_mmap *mm)
{
    rm_map *r = RM(mm);
    mg_spin_lock(&r->mu);
    rm_read *rd = load_read(r);
    if (mg_len(rd->m) == 0 && !amended(rd)) {
        mg_spin_unlock(&r->mu);
        return;
    }
    mg_map *m = mg__eng_new(&r->base, 0);
    rm_read *nr = m ? new_read(r, m) : NULL;
    mg_iter it;
    const void *k;
    size_t len;
    uint64_t ev;
    /* With a new read: every old entry becomes expunged, so a thread that
     * still holds the old read falls through to the slow path and finds
     * the new one.  Without (no memory): read stays, every entry of it nil
     * (deleted) and dirty nil, which is an empty sync.Map too; the entries
     * only dirty held are retired. */
    unsigned state = nr ? E_EXP : E_NIL;
    mg_iter_init(&it, rd->m);
    while (mg_iter_next(&it, &k, &len, &ev))
        set_state_locked(r, (entry *)(uintptr_t)ev, state);
    mg_iter_done(&it);
    if (r->dirty) {
        mg_iter_init(&it, r->dirty);
        while (mg_iter_next(&it, &k, &len, &ev)) {
            mg_kref kr = key_of(r, k, len);
            if (lookup(r, rd->m, &kr))
                continue;
            set_state_locked(r, (entry *)(uintptr_t)ev, E_EXP);
            if (!nr)
                mg__limbo_retire(r->limbo, (void *)(uintptr_t)ev, sizeof(entry),
                                 free_entry, NULL);
        }
        mg_iter_done(&it);
    }
    if (!nr) {
        if (m)
            mg_free(m);
        if (r->dirty)
            mg_free(r->dirty); /* only ever read under mu: no grace needed */
        r->dirty = NULL;
        atomic_store(&rd->amended, false);
    } else {
        rd->cleared = true;
        rd->dirty_also = r->dirty;
        r->dirty = NULL;
        atomic_store_explicit(&r->read, nr, memory_order_release);
        mg__limbo_retire(r->limbo, rd, sizeof *rd, free_read, &rd->pins);
    }
    r->misses = 0;
    atomic_store(&r->live, 0);
    mg_spin_unlock(&r->mu);
    mg__limbo_poll(r->limbo);
}

/* Iterators (Go: Range): promote an amended dirty first, then walk read,
 * pinned, with no lock.  aux[0] holds the pinned read. */
static void rm_iter_init(mg_mmap *mm, mg_miter *it)
{
    rm_map *r = RM(mm);
    mg__rcu_read_lock();
    rm_read *rd = load_read(r);
    if (amended(rd)) {
        mg_spin_lock(&r->mu);
        if (amended(load_read(r)))
            promote_locked(r);
        mg_spin_unlock(&r->mu);
        rd = load_read(r);
    }
    atomic_fetch_add_explicit(&rd->pins, 1, memory_order_acq_rel);
    leave(r);
    it->aux[0] = (uint64_t)(uintptr_t)rd;
    mg__eng_iter_init(mg__miter_engine(it), rd->m);
}

static bool rm_iter_next(mg_mmap *mm, mg_miter *it, const void **key, size_t *len,
                         uint64_t *val)
{
    (void)mm;
    uint64_t ev;
    while (it->aux[0] && mg__eng_iter_next(mg__miter_engine(it), key, len, &ev))
        if (e_load((entry *)(uintptr_t)ev, val))
            return true;
    return false;
}

static void rm_iter_done(mg_mmap *mm, mg_miter *it)
{
    (void)mm;
    rm_read *rd = (rm_read *)(uintptr_t)it->aux[0];
    if (!rd)
        return;
    mg__eng_iter_done(mg__miter_engine(it));
    it->aux[0] = 0;
    atomic_fetch_sub_explicit(&rd->pins, 1, memory_order_acq_rel);
}

static int rm_stats(mg_mmap *mm, mg_stats *out)
{
    rm_map *r = RM(mm);
    mg_stats s;
    memset(out, 0, sizeof *out);
    mg_spin_lock(&r->mu);
    rm_read *rd = load_read(r);
    mg_stats_get(rd->m, &s);
    mg__stats_add(out, &s);
    if (r->dirty) {
        mg_stats_get(r->dirty, &s);
        mg__stats_add(out, &s);
    }
    size_t nentries = mg_len(rd->m) + (r->dirty ? mg_len(r->dirty) : 0);
    mg_spin_unlock(&r->mu);
    out->count = rm_len(mm);
    out->load_factor = out->buckets ? (double)out->count / (double)out->buckets : 0.0;
    /* Entries shared by both maps are counted twice: an upper bound. */
    out->bytes += sizeof *r + 2 * sizeof(rm_read) + nentries * sizeof(entry);
    return MG_OK;
}

static void rm_sample(mg_mmap *mm, mg_metric_sample *out)
{
    rm_map *r = RM(mm);
    rm_stats(mm, &out->st); /* mu is never held around user code */
    out->has_readmostly = true;
    out->misses_total = MG_PUB_LOAD(r->misses_total);
    out->promotions_total = MG_PUB_LOAD(r->promotions_total);
}

int mg__rm_state(mg_map *m, mg_rm_state *out)
{
    if (!m || !mg__is_mode(m) || mg_mode_of(m) != MG_READMOSTLY)
        return -1;
    rm_map *r = (rm_map *)(uintptr_t)m;
    mg_spin_lock(&r->mu);
    rm_read *rd = load_read(r);
    out->read_len = mg_len(rd->m);
    out->amended = amended(rd);
    out->dirty_len = r->dirty ? (long)mg_len(r->dirty) : -1;
    out->misses = r->misses;
    mg_spin_unlock(&r->mu);
    return 0;
}

static void rm_destroy(mg_mmap *mm)
{
    rm_map *r = RM(mm);
    mg__limbo_destroy(r->limbo);
    r->limbo = NULL;
    rm_read *rd = load_read(r);
    if (rd) {
        rd->cleared = true; /* free_read: every entry of read and dirty */
        rd->dirty_also = r->dirty;
        free_read(mm, rd, sizeof *rd);
    }
    if (r->spare)
        mg__mfree(mm, r->spare, sizeof *r->spare);
    mg__mode_fini(mm, sizeof *r);
}

static const mg_mops rm_ops = {
    .destroy = rm_destroy,
    .put = rm_put,
    .get = rm_get,
    .del = rm_del,
    .rmw = rm_rmw,
    .len = rm_len,
    .clear = rm_clear,
    .iter_init = rm_iter_init,
    .iter_next = rm_iter_next,
    .iter_done = rm_iter_done,
    .stats = rm_stats,
    .sample = rm_sample,
    .batch = NULL,
};

mg_mmap *mg__readmostly_new(const mg_options *o)
{
    rm_map *r = (rm_map *)mg__mode_alloc(o, sizeof *r, &rm_ops);
    if (!r)
        return NULL;
    mg_spin_init(&r->mu);
    atomic_init(&r->live, 0);
    r->limbo = mg__limbo_new(&r->base);
    mg_map *m = r->limbo ? mg__eng_new(&r->base, 0) : NULL;
    rm_read *rd = m ? new_read(r, m) : NULL;
    if (!rd) {
        if (m)
            mg_free(m);
        goto nomem;
    }
    atomic_init(&r->read, rd);
    return &r->base;
nomem:
    if (r->limbo)
        mg__limbo_destroy(r->limbo);
    r->limbo = NULL;
    mg__mode_fini(&r->base, sizeof *r);
    errno = ENOMEM;
    return NULL;
}
