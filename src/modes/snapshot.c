/*
 * snapshot.c - MG_SNAPSHOT: copy-on-write snapshots that share structure.
 *
 * Readers load the current snapshot (a root) through one atomic pointer
 * and walk it with no lock and no retry: a published snapshot never
 * changes.  A writer builds the next snapshot and publishes it with one
 * atomic store (Go's atomic.Value pattern).  Go's pattern copies the whole
 * map per write; here a write copies only the path it changes.
 *
 * The structure is a hash trie:
 *   inner node   SN_FAN child pointers, indexed by the next SN_BITS bits of
 *                the key's hash, from the top bits down; NULL is empty.
 *   leaf         up to SN_LEAF_MAX entries in a small open-addressing table
 *                (a tag byte per slot, linear probing, at most 3/4 full),
 *                indexed by the hash's low bits.  A leaf that would pass
 *                SN_LEAF_MAX splits into an inner node of leaves.
 * A write copies the leaf it changes and the inner nodes above it (a path
 * of a few hundred bytes plus one leaf), links the copies into a new root
 * and publishes it.  Everything else is shared with older snapshots.
 *
 * A node records the version that created it.  While a write (or an
 * mg_batch) builds version v, nodes of version v are not yet visible to
 * anyone and are changed in place; so a batch of N writes copies each
 * path once, and publishes once.
 *
 * Replaced nodes (and deleted byte keys) are retired, with the snapshot
 * they belonged to, to reclaim.c: freed after an RCU grace period, once no
 * iterator pins an older snapshot.
 *
 * Guarantees (docs/modes.md): reads (get, len, stats) are wait-free apart
 * from the RCU read-side section, which writes only the thread's own
 * counter; every read sees one snapshot; mg_len, mg_range and iterators see
 * exactly one snapshot, the one current when they start; writers are
 * serialized by a lock; mg_batch publishes all of fn's writes at once.
 * Inside mg_batch, reads, mg_range and iterators see fn's writes (an
 * iterator walks the batch's state as it was when it started).  A write
 * that cannot allocate its
 * copies leaves the map unchanged (mg_del then returns false).
 */
#include "modes.h"

#include <errno.h>

#define SN_BITS 6
#define SN_FAN (1u << SN_BITS)
#define SN_LEAF_MAX 512u
#define SN_LEAF_MIN_CAP 16u
/* Inner levels use hash bits from the top: at most this many levels. */
#define SN_MAX_DEPTH 9
#define SN_TAG_SHIFT 10

typedef struct {
    uint32_t cap;   /* leaf: slot count (a power of two); inner: 0 */
    uint32_t count; /* leaf: entries */
    uint64_t ver;   /* the version that created it */
} sn_head;

typedef struct {
    sn_head h;
    sn_head *child[SN_FAN];
} sn_inner;

typedef struct {
    uint64_t key; /* u64 key, or an sn_blob pointer */
    uint64_t val;
} sn_slot;

/* A byte key, shared by every snapshot that holds it. */
typedef struct {
    uint64_t hash;
    size_t len;
    unsigned char data[];
} sn_blob;

typedef struct {
    uint64_t ver;
    size_t count, bytes;
    sn_head *top;
    atomic_int pins;
} sn_root;

typedef struct {
    void *p;
    size_t size;
    mg_free_fn fn;
} sn_pending;

typedef struct {
    mg_mmap base;
    mg_spin wmu;              /* writers */
    _Atomic(sn_root *) cur;   /* the published snapshot */
    sn_root *work;            /* under wmu: the snapshot being built */
    sn_pending *pend;         /* under wmu: what the built one replaces */
    size_t npend, cappend;
    mg_limbo *limbo;
    uint64_t published; /* under wmu; sampled relaxed */
    _Atomic uint64_t retired; /* old snapshots freed after their readers */
} sn_map;

static inline sn_map *SN(mg_mmap *mm)
{
    return (sn_map *)mm;
}

static inline bool is_leaf(const sn_head *n)
{
    return n->cap != 0;
}
static inline uint8_t *tags(sn_head *l)
{
    return (uint8_t *)(l + 1);
}
static inline sn_slot *slots(sn_head *l)
{
    return (sn_slot *)(void *)((uint8_t *)(l + 1) + l->cap);
}
static inline size_t leaf_size(uint32_t cap)
{
    return sizeof(sn_head) + cap + (size_t)cap * sizeof(sn_slot);
}
static inline size_t node_size(const sn_head *n)
{
    return is_leaf(n) ? leaf_size(n->cap) : sizeof(sn_inner);
}
static inline uint8_t tag_of(uint64_t h)
{
    return (uint8_t)(0x80u | ((h >> SN_TAG_SHIFT) & 0x7fu));
}
static inline unsigned child_index(uint64_t h, int depth)
{
    return (unsigned)(h >> (64 - SN_BITS * (depth + 1))) & (SN_FAN - 1);
}
static inline size_t blob_size(size_t len)
{
    return sizeof(sn_blob) + len;
}

/* Child pointers (and a root's top) are tagged: a leaf's pointer carries
 * log2(cap) - 3 in its low bits (nodes are 16-byte aligned), an inner
 * node's carries 0.  So a lookup knows a leaf's size from the pointer and
 * can fetch its tag byte and its slot at once, without first reading the
 * leaf's header (one cache miss fewer). */
#define SN_TAG_MASK ((uintptr_t)15)
static inline sn_head *untag(const sn_head *r)
{
    return (sn_head *)((uintptr_t)r & ~SN_TAG_MASK);
}
static inline bool ref_is_leaf(const sn_head *r)
{
    return ((uintptr_t)r & SN_TAG_MASK) != 0;
}
static inline sn_head *ref_of(sn_head *n)
{
    if (!n || !is_leaf(n))
        return n;
    return (sn_head *)((uintptr_t)n | (uintptr_t)(__builtin_ctz(n->cap) - 3));
}

static uint64_t slot_hash(const sn_map *s, uint64_t key)
{
    if (mg__mm_bytes(&s->base))
        return ((const sn_blob *)(uintptr_t)key)->hash;
    return mg__mode_hash(&s->base, &(mg_kref){.u = key});
}

static inline bool key_eq(const sn_map *s, uint64_t stored, uint64_t h, const mg_kref *k)
{
    if (!mg__mm_bytes(&s->base))
        return stored == k->u;
    const sn_blob *b = (const sn_blob *)(uintptr_t)stored;
    return b->hash == h && b->len == k->len && (k->len == 0 || memcmp(b->data, k->p, k->len) == 0);
}

/* The slot holding k in leaf l, or -1. */
static long leaf_find(const sn_map *s, sn_head *l, uint64_t h, const mg_kref *k)
{
    uint32_t mask = l->cap - 1;
    uint8_t t = tag_of(h);
    const uint8_t *tg = tags(l);
    const sn_slot *sl = slots(l);
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        if (tg[i] == 0)
            return -1;
        if (tg[i] == t && key_eq(s, sl[i].key, h, k))
            return (long)i;
    }
}

/* Place an entry known to be absent (the leaf has room). */
static void leaf_place(sn_head *l, uint64_t h, uint64_t key, uint64_t val)
{
    uint32_t mask = l->cap - 1;
    uint8_t *tg = tags(l);
    uint32_t i = (uint32_t)h & mask;
    while (tg[i] != 0)
        i = (i + 1) & mask;
    tg[i] = tag_of(h);
    slots(l)[i] = (sn_slot){key, val};
    l->count++;
}

static uint32_t cap_for(uint32_t n)
{
    uint32_t c = SN_LEAF_MIN_CAP;
    while (c * 3 < n * 4 + 4) /* at most 3/4 full, with room for one more */
        c <<= 1;
    return c;
}

static sn_head *leaf_new(sn_map *s, uint32_t cap, uint64_t ver)
{
    sn_head *l = mg__mmalloc(&s->base, leaf_size(cap));
    if (l) {
        l->cap = cap;
        l->count = 0;
        l->ver = ver;
        memset(tags(l), 0, cap);
    }
    return l;
}

static sn_inner *inner_new(sn_map *s, uint64_t ver)
{
    sn_inner *n = mg__mmalloc(&s->base, sizeof *n);
    if (n) {
        memset(n, 0, sizeof *n);
        n->h.ver = ver;
    }
    return n;
}

/* Lookup in a tree (published or being built), from its top reference. */
static MG_HOT_INLINE sn_slot *tree_find(const sn_map *s, const sn_head *r, uint64_t h,
                                     const mg_kref *k)
{
    for (int depth = 0; r && !ref_is_leaf(r); depth++)
        r = ((const sn_inner *)r)->child[child_index(h, depth)];
    if (!r)
        return NULL;
    sn_head *l = untag(r);
    uint32_t cap = 1u << (((uintptr_t)r & SN_TAG_MASK) + 3);
    uint32_t mask = cap - 1;
    const uint8_t *tg = (const uint8_t *)(l + 1);
    sn_slot *sl = (sn_slot *)(void *)((uint8_t *)(l + 1) + cap);
    uint32_t i = (uint32_t)h & mask;
    __builtin_prefetch(&sl[i]);
    uint8_t t = tag_of(h);
    for (;; i = (i + 1) & mask) {
        if (tg[i] == 0)
            return NULL;
        if (tg[i] == t && key_eq(s, sl[i].key, h, k))
            return &sl[i];
    }
}

/* ---- freeing ---------------------------------------------------------- */

static void free_mem(mg_mmap *mm, void *p, size_t size)
{
    mg__mfree(mm, p, size);
}

static void free_tree_rec(mg_mmap *mm, sn_head *n)
{
    n = untag(n);
    if (!n)
        return;
    if (is_leaf(n)) {
        if (mg__mm_bytes(mm))
            for (uint32_t i = 0; i < n->cap; i++)
                if (tags(n)[i]) {
                    sn_blob *b = (sn_blob *)(uintptr_t)slots(n)[i].key;
                    mg__mfree(mm, b, blob_size(b->len));
                }
    } else {
        for (unsigned i = 0; i < SN_FAN; i++)
            free_tree_rec(mm, ((sn_inner *)n)->child[i]);
    }
    mg__mfree(mm, n, node_size(n));
}

static void free_tree(mg_mmap *mm, void *p, size_t size)
{
    (void)size;
    free_tree_rec(mm, p);
}

static void free_root(mg_mmap *mm, void *p, size_t size)
{
    atomic_fetch_add_explicit(&SN(mm)->retired, 1, memory_order_relaxed);
    mg__mfree(mm, p, size);
}

/* ---- building the next snapshot (under wmu) --------------------------- */

static bool pend_reserve(sn_map *s, size_t more)
{
    if (s->npend + more <= s->cappend)
        return true;
    size_t cap = s->cappend ? s->cappend : 16;
    while (cap < s->npend + more)
        cap *= 2;
    sn_pending *p = mg__mmalloc(&s->base, cap * sizeof *p);
    if (!p)
        return false;
    if (s->npend)
        memcpy(p, s->pend, s->npend * sizeof *p);
    if (s->pend)
        mg__mfree(&s->base, s->pend, s->cappend * sizeof *p);
    s->pend = p;
    s->cappend = cap;
    return true;
}

/* Retire node n of the published tree, or free it now if this version
 * made it (nobody has seen it). */
static void drop_node(sn_map *s, sn_head *n)
{
    sn_root *w = s->work;
    w->bytes -= node_size(n);
    if (n->ver == w->ver)
        mg__mfree(&s->base, n, node_size(n));
    else
        s->pend[s->npend++] = (sn_pending){n, node_size(n), free_mem};
}

static int begin(sn_map *s)
{
    if (s->work)
        return MG_OK;
    sn_root *cur = atomic_load_explicit(&s->cur, memory_order_relaxed);
    sn_root *w = mg__mmalloc(&s->base, sizeof *w);
    if (!w)
        return MG_ENOMEM;
    w->ver = cur->ver + 1;
    w->count = cur->count;
    w->bytes = cur->bytes;
    w->top = cur->top;
    atomic_init(&w->pins, 0);
    s->work = w;
    s->npend = 0;
    return MG_OK;
}

/* Publish the built snapshot (or drop it when nothing changed). */
static void commit(sn_map *s)
{
    sn_root *w = s->work, *old = atomic_load_explicit(&s->cur, memory_order_relaxed);
    s->work = NULL;
    if (w->top == old->top && s->npend == 0) {
        mg__mfree(&s->base, w, sizeof *w);
        return;
    }
    atomic_store_explicit(&s->cur, w, memory_order_release);
    MG_PUB(s->published, s->published + 1);
    MG_EV_PUBLISH(&s->base.hdr, w->ver);
    /* The replaced nodes first, the old root (whose pin count they use) last. */
    for (size_t i = 0; i < s->npend; i++)
        mg__limbo_retire(s->limbo, s->pend[i].p, s->pend[i].size, s->pend[i].fn, &old->pins);
    mg__limbo_retire(s->limbo, old, sizeof *old, free_root, &old->pins);
    s->npend = 0;
}

enum { W_PUT, W_DEL };

/* Apply one write to the snapshot being built.  All memory is allocated
 * before anything changes, so MG_ENOMEM leaves it as it was.  *loaded says
 * whether the key was there and *old gives its value. */
static int apply(sn_map *s, int op, const mg_kref *k, uint64_t val, uint64_t *old,
                 bool *loaded)
{
    sn_root *w = s->work;
    uint64_t h = mg__mode_hash(&s->base, k);
    sn_inner *path[SN_MAX_DEPTH];
    int depth = 0;
    sn_head *n = w->top;
    while (n && !ref_is_leaf(n)) {
        path[depth] = (sn_inner *)n;
        n = ((sn_inner *)n)->child[child_index(h, depth)];
        depth++;
    }
    n = untag(n);
    /* n: the leaf (or NULL) below path[0 .. depth-1]. */
    long at = n ? leaf_find(s, n, h, k) : -1;
    *loaded = at >= 0;
    if (at >= 0)
        *old = slots(n)[at].val;
    if (op == W_DEL && at < 0)
        return MG_OK;
    bool mine = n && n->ver == w->ver; /* made by this version: unseen */
    if (op == W_PUT && at >= 0 && mine) {
        slots(n)[at].val = val;
        return MG_OK;
    }
    bool insert = op == W_PUT && at < 0;
    uint32_t newcount = (n ? n->count : 0) + (insert ? 1 : 0) - (op == W_DEL ? 1 : 0);
    bool split = insert && newcount > SN_LEAF_MAX && depth < SN_MAX_DEPTH;
    bool in_place = insert && mine && !split && newcount * 4 <= n->cap * 3;

    /* 1. Allocate. */
    sn_inner *copies[SN_MAX_DEPTH] = {0};
    sn_inner *splitnode = NULL;
    sn_head *parts[SN_FAN] = {0};
    sn_head *leaf = NULL;
    sn_blob *blob = NULL;
    bool ok = pend_reserve(s, (size_t)depth + 3);
    for (int d = 0; ok && d < depth; d++)
        if (path[d]->h.ver != w->ver)
            ok = (copies[d] = inner_new(s, w->ver)) != NULL;
    if (ok && insert && mg__mm_bytes(&s->base)) {
        ok = (blob = mg__mmalloc(&s->base, blob_size(k->len))) != NULL;
        if (ok) {
            w->bytes += blob_size(k->len);
            blob->hash = h;
            blob->len = k->len;
            if (k->len)
                memcpy(blob->data, k->p, k->len);
        }
    }
    if (ok && split) {
        uint32_t cnt[SN_FAN] = {0};
        for (uint32_t i = 0; i < n->cap; i++)
            if (tags(n)[i])
                cnt[child_index(slot_hash(s, slots(n)[i].key), depth)]++;
        cnt[child_index(h, depth)]++;
        ok = (splitnode = inner_new(s, w->ver)) != NULL;
        for (unsigned c = 0; ok && c < SN_FAN; c++)
            if (cnt[c])
                ok = (parts[c] = leaf_new(s, cap_for(cnt[c]), w->ver)) != NULL;
    } else if (ok && !in_place && newcount > 0) {
        ok = (leaf = leaf_new(s, at >= 0 && op == W_PUT ? n->cap : cap_for(newcount),
                              w->ver)) != NULL;
    }
    if (!ok) {
        for (int d = 0; d < depth; d++)
            if (copies[d])
                mg__mfree(&s->base, copies[d], sizeof(sn_inner));
        if (blob)
            mg__mfree(&s->base, blob, blob_size(k->len));
        for (unsigned c = 0; c < SN_FAN; c++)
            if (parts[c])
                mg__mfree(&s->base, parts[c], node_size(parts[c]));
        if (splitnode)
            mg__mfree(&s->base, splitnode, sizeof *splitnode);
        if (leaf)
            mg__mfree(&s->base, leaf, node_size(leaf));
        return MG_ENOMEM;
    }

    /* 2. Build what replaces n (repl); nothing can fail from here on. */
    uint64_t newkey = blob ? (uint64_t)(uintptr_t)blob : k->u;
    sn_head *repl;
    if (op == W_DEL && mg__mm_bytes(&s->base)) { /* the deleted key goes with this version */
        sn_blob *b = (sn_blob *)(uintptr_t)slots(n)[at].key;
        w->bytes -= blob_size(b->len);
        s->pend[s->npend++] = (sn_pending){b, blob_size(b->len), free_mem};
    }
    if (in_place) {
        leaf_place(n, h, newkey, val);
        repl = n;
    } else if (split) {
        for (uint32_t i = 0; i < n->cap; i++)
            if (tags(n)[i]) {
                sn_slot *sl = &slots(n)[i];
                uint64_t sh = slot_hash(s, sl->key);
                leaf_place(parts[child_index(sh, depth)], sh, sl->key, sl->val);
            }
        leaf_place(parts[child_index(h, depth)], h, newkey, val);
        for (unsigned c = 0; c < SN_FAN; c++) {
            splitnode->child[c] = ref_of(parts[c]);
            if (parts[c])
                w->bytes += node_size(parts[c]);
        }
        w->bytes += sizeof *splitnode;
        drop_node(s, n);
        repl = &splitnode->h;
    } else {
        if (leaf) {
            for (uint32_t i = 0; n && i < n->cap; i++) {
                if (!tags(n)[i] || (long)i == at)
                    continue;
                sn_slot *sl = &slots(n)[i];
                leaf_place(leaf, slot_hash(s, sl->key), sl->key, sl->val);
            }
            if (op == W_PUT)
                leaf_place(leaf, h, at >= 0 ? slots(n)[at].key : newkey, val);
            w->bytes += node_size(leaf);
        }
        if (n)
            drop_node(s, n);
        repl = leaf; /* NULL when the leaf emptied */
    }
    repl = ref_of(repl);

    /* 3. Link it in bottom-up, copying the inner nodes that are not ours;
     * an inner node left with no child disappears. */
    for (int d = depth - 1; d >= 0; d--) {
        sn_inner *p = path[d], *q = copies[d] ? copies[d] : p;
        if (q != p) {
            memcpy(q->child, p->child, sizeof q->child);
            w->bytes += sizeof *q;
            drop_node(s, &p->h);
        }
        q->child[child_index(h, d)] = repl;
        bool empty = true;
        for (unsigned c = 0; empty && c < SN_FAN; c++)
            empty = q->child[c] == NULL;
        if (empty) {
            drop_node(s, &q->h); /* ours: freed at once */
            repl = NULL;
        } else {
            repl = &q->h;
        }
    }
    w->top = repl;
    if (insert)
        w->count++;
    else if (op == W_DEL)
        w->count--;
    return MG_OK;
}

/* ---- operations --------------------------------------------------------- */

static inline sn_root *load_cur(sn_map *s)
{
    return atomic_load_explicit(&s->cur, memory_order_acquire);
}

/* Run one write: inside mg_batch on the batch's snapshot; otherwise under
 * wmu on a new one, published at once. */
static int write_op(sn_map *s, int op, const mg_kref *k, uint64_t val, uint64_t *old,
                    bool *loaded)
{
    if (mg__excl == &s->base)
        return apply(s, op, k, val, old, loaded);
    mg_spin_lock(&s->wmu);
    int rc = begin(s);
    if (rc == MG_OK) {
        rc = apply(s, op, k, val, old, loaded);
        commit(s);
    }
    mg_spin_unlock(&s->wmu);
    mg__limbo_poll(s->limbo);
    return rc;
}

static bool sn_get(mg_mmap *mm, const mg_kref *k, uint64_t *val)
{
    sn_map *s = SN(mm);
    uint64_t h = mg__mode_hash(mm, k);
    if (mg__excl == mm) {
        sn_slot *sl = tree_find(s, s->work->top, h, k);
        if (sl && val)
            *val = sl->val;
        return sl != NULL;
    }
    mg__rcu_read_lock();
    sn_slot *sl = tree_find(s, load_cur(s)->top, h, k);
    bool ok = sl != NULL;
    if (ok && val)
        *val = sl->val;
    mg__rcu_read_unlock();
    return ok;
}

static int sn_put(mg_mmap *mm, const mg_kref *k, uint64_t val)
{
    uint64_t old;
    bool loaded;
    return write_op(SN(mm), W_PUT, k, val, &old, &loaded);
}

static bool sn_del(mg_mmap *mm, const mg_kref *k)
{
    uint64_t old;
    bool loaded = false;
    return write_op(SN(mm), W_DEL, k, 0, &old, &loaded) == MG_OK && loaded;
}

/* The read-modify-write calls: a read of the snapshot being built, then
 * maybe a write, all under wmu (or inside the batch). */
typedef struct {
    int op;
    const mg_kref *k;
    uint64_t val, old, out;
    bool loaded;
    int rc;
} rmw_req;

static int rmw_fn(mg_map *m, void *arg)
{
    sn_map *s = (sn_map *)(uintptr_t)m;
    rmw_req *r = arg;
    uint64_t h = mg__mode_hash(&s->base, r->k);
    sn_slot *sl = tree_find(s, s->work->top, h, r->k);
    uint64_t prev;
    bool was;
    r->loaded = sl != NULL;
    if (sl)
        r->out = sl->val;
    switch (r->op) {
    case MG_RMW_GET_OR_PUT:
        if (!sl) {
            r->rc = apply(s, W_PUT, r->k, r->val, &prev, &was);
            if (r->rc == MG_OK)
                r->out = r->val;
        }
        break;
    case MG_RMW_SWAP:
        r->rc = apply(s, W_PUT, r->k, r->val, &prev, &was);
        break;
    case MG_RMW_GET_AND_DEL:
        r->rc = sl && apply(s, W_DEL, r->k, 0, &prev, &was) == MG_OK;
        break;
    case MG_RMW_CAS:
        r->rc = sl && sl->val == r->old && apply(s, W_PUT, r->k, r->val, &prev, &was) == MG_OK;
        break;
    case MG_RMW_CAD:
        r->rc = sl && sl->val == r->old && apply(s, W_DEL, r->k, 0, &prev, &was) == MG_OK;
        break;
    default:
        break;
    }
    return r->rc;
}

static int sn_batch(mg_mmap *mm, mg_batch_fn fn, void *arg);

static int sn_rmw(mg_mmap *mm, int op, const mg_kref *k, uint64_t val, uint64_t old,
                  uint64_t *out, bool *loaded)
{
    rmw_req r = {.op = op, .k = k, .val = val, .old = old};
    if (mg__excl == mm) {
        rmw_fn(&mm->hdr, &r);
    } else {
        /* A CAS or CompareAndDelete that fails changes nothing: check the
         * published snapshot first, without the lock. */
        if (op == MG_RMW_CAS || op == MG_RMW_CAD) {
            uint64_t cur;
            if (!sn_get(mm, k, &cur) || cur != old)
                return 0;
        }
        int rc = sn_batch(mm, rmw_fn, &r);
        if (rc == MG_ENOMEM && r.rc == 0 && (op == MG_RMW_GET_OR_PUT || op == MG_RMW_SWAP))
            r.rc = MG_ENOMEM;
    }
    if (r.loaded || op == MG_RMW_GET_OR_PUT)
        *out = r.out;
    *loaded = r.loaded;
    return r.rc;
}

static size_t sn_len(mg_mmap *mm)
{
    sn_map *s = SN(mm);
    if (mg__excl == mm)
        return s->work->count;
    mg__rcu_read_lock();
    size_t n = load_cur(s)->count;
    mg__rcu_read_unlock();
    return n;
}

static void sn_clear(mg_mmap *mm)
{
    sn_map *s = SN(mm);
    bool excl = mg__excl == mm;
    if (!excl)
        mg_spin_lock(&s->wmu);
    if (excl || begin(s) == MG_OK) {
        sn_root *w = s->work;
        /* The pending list always has room for one more (apply reserves
         * depth + 3 and uses at most depth + 2), or is grown here. */
        if (w->top && pend_reserve(s, 1)) {
            s->pend[s->npend++] = (sn_pending){w->top, 0, free_tree};
            w->top = NULL;
            w->count = 0;
            w->bytes = 0;
        }
        if (!excl)
            commit(s);
    }
    if (!excl) {
        mg_spin_unlock(&s->wmu);
        mg__limbo_poll(s->limbo);
    }
}

/* Iterators walk one pinned snapshot, leaf by leaf in hash order.  Words:
 *   aux[0]     the pinned root          aux[1]  the current leaf
 *   pos        the hash prefix of the next leaf to find
 *   engine[0]  the next slot of the leaf
 *   engine[1]  1 once the walk is over  engine[2] the produced u64 key
 *   engine[3]  inside mg_batch: the frozen top of the batch's snapshot
 *   engine[4]  1 when engine[3] is used
 * Inside mg_batch an iterator walks the snapshot being built as it is when
 * the iterator starts: the version being built moves on, so from then on
 * fn's writes copy the nodes the iterator walks instead of changing them
 * (the copies' originals are retired with the published snapshot, which
 * the iterator pins). */
static void sn_iter_init(mg_mmap *mm, mg_miter *it)
{
    sn_map *s = SN(mm);
    if (mg__excl == mm) {
        sn_root *cur = load_cur(s); /* we hold wmu: it stays current */
        atomic_fetch_add_explicit(&cur->pins, 1, memory_order_acq_rel);
        s->work->ver++;
        it->aux[0] = (uint64_t)(uintptr_t)cur;
        it->engine[3] = (uint64_t)(uintptr_t)s->work->top;
        it->engine[4] = 1;
        it->engine[1] = s->work->top == NULL;
        return;
    }
    mg__rcu_read_lock();
    sn_root *r = load_cur(s);
    atomic_fetch_add_explicit(&r->pins, 1, memory_order_acq_rel);
    mg__rcu_read_unlock();
    it->aux[0] = (uint64_t)(uintptr_t)r;
    it->aux[1] = 0;
    it->pos = 0;
    it->engine[1] = r->top == NULL;
}

/* The leaf holding hash prefix *pos, or the next one after it; moves *pos
 * past that leaf.  NULL when none is left. */
static sn_head *next_leaf(sn_head *top, uint64_t *pos, bool *end)
{
    for (;;) {
        sn_head *n = top;
        int depth = 0;
        while (n && !ref_is_leaf(n)) {
            sn_head *c = ((sn_inner *)n)->child[child_index(*pos, depth)];
            if (!c) {
                /* Skip this empty child's span. */
                int bits = 64 - SN_BITS * (depth + 1);
                uint64_t next = ((*pos >> bits) + 1) << bits;
                if (next == 0 || (*pos >> bits) + 1 == ((uint64_t)1 << (64 - bits))) {
                    *end = true;
                    return NULL;
                }
                *pos = next;
                n = NULL;
                break;
            }
            n = c;
            depth++;
        }
        if (!n) {
            if (top == NULL) {
                *end = true;
                return NULL;
            }
            continue;
        }
        n = untag(n);
        /* A leaf at `depth` spans the low 64 - SN_BITS*depth bits. */
        int bits = 64 - SN_BITS * depth;
        if (bits >= 64 || (*pos >> bits) + 1 == ((uint64_t)1 << (64 - bits)))
            *end = true;
        else
            *pos = ((*pos >> bits) + 1) << bits;
        return n;
    }
}

static bool sn_iter_next(mg_mmap *mm, mg_miter *it, const void **key, size_t *len,
                         uint64_t *val)
{
    sn_map *s = SN(mm);
    sn_root *r = (sn_root *)(uintptr_t)it->aux[0];
    if (!r)
        return false;
    for (;;) {
        sn_head *l = (sn_head *)(uintptr_t)it->aux[1];
        if (l) {
            for (uint64_t i = it->engine[0]; i < l->cap; i++) {
                if (!tags(l)[i])
                    continue;
                sn_slot *sl = &slots(l)[i];
                it->engine[0] = i + 1;
                if (mg__mm_bytes(&s->base)) {
                    sn_blob *b = (sn_blob *)(uintptr_t)sl->key;
                    *key = b->data;
                    *len = b->len;
                } else {
                    it->engine[2] = sl->key;
                    *key = &it->engine[2];
                    *len = sizeof(uint64_t);
                }
                *val = sl->val;
                return true;
            }
            it->aux[1] = 0;
        }
        if (it->engine[1])
            return false;
        bool end = false;
        uint64_t pos = it->pos;
        l = next_leaf(it->engine[4] ? (sn_head *)(uintptr_t)it->engine[3] : r->top, &pos,
                      &end);
        it->pos = pos;
        it->engine[1] = end;
        it->aux[1] = (uint64_t)(uintptr_t)l;
        it->engine[0] = 0;
        if (!l)
            return false;
    }
}

static void sn_iter_done(mg_mmap *mm, mg_miter *it)
{
    (void)mm;
    sn_root *r = (sn_root *)(uintptr_t)it->aux[0];
    if (!r)
        return;
    it->aux[0] = 0;
    atomic_fetch_sub_explicit(&r->pins, 1, memory_order_acq_rel);
}

static int sn_stats(mg_mmap *mm, mg_stats *out)
{
    sn_map *s = SN(mm);
    memset(out, 0, sizeof *out);
    if (mg__excl == mm) {
        out->count = s->work->count;
        out->bytes = s->work->bytes;
    } else {
        mg__rcu_read_lock();
        sn_root *r = load_cur(s);
        out->count = r->count;
        out->bytes = r->bytes;
        mg__rcu_read_unlock();
    }
    out->bytes += sizeof *s + sizeof(sn_root);
    return MG_OK;
}

static int sn_batch(mg_mmap *mm, mg_batch_fn fn, void *arg)
{
    sn_map *s = SN(mm);
    mg_spin_lock(&s->wmu);
    int rc = begin(s);
    if (rc == MG_OK) {
        mg__excl = mm;
        rc = fn(&mm->hdr, arg);
        mg__excl = NULL;
        commit(s);
    }
    mg_spin_unlock(&s->wmu);
    mg__limbo_poll(s->limbo);
    return rc;
}

static void sn_sample(mg_mmap *mm, mg_metric_sample *out)
{
    sn_map *s = SN(mm);
    sn_stats(mm, &out->st); /* lock-free: the published snapshot */
    out->has_snapshot = true;
    out->snapshots_published_total = MG_PUB_LOAD(s->published);
    out->snapshots_retired_total =
        atomic_load_explicit(&s->retired, memory_order_relaxed);
}

static void sn_destroy(mg_mmap *mm)
{
    sn_map *s = SN(mm);
    mg__limbo_destroy(s->limbo);
    sn_root *r = atomic_load(&s->cur);
    if (r) {
        free_tree_rec(mm, r->top);
        mg__mfree(mm, r, sizeof *r);
    }
    if (s->pend)
        mg__mfree(mm, s->pend, s->cappend * sizeof *s->pend);
    mg__mode_fini(mm, sizeof *s);
}

static const mg_mops sn_ops = {
    .destroy = sn_destroy,
    .put = sn_put,
    .get = sn_get,
    .del = sn_del,
    .rmw = sn_rmw,
    .len = sn_len,
    .clear = sn_clear,
    .iter_init = sn_iter_init,
    .iter_next = sn_iter_next,
    .iter_done = sn_iter_done,
    .stats = sn_stats,
    .sample = sn_sample,
    .batch = sn_batch,
};

mg_mmap *mg__snapshot_new(const mg_options *o)
{
    sn_map *s = (sn_map *)mg__mode_alloc(o, sizeof *s, &sn_ops);
    if (!s)
        return NULL;
    mg_spin_init(&s->wmu);
    s->limbo = mg__limbo_new(&s->base);
    sn_root *r = s->limbo ? mg__mmalloc(&s->base, sizeof *r) : NULL;
    if (!r)
        goto nomem;
    memset(r, 0, sizeof *r);
    atomic_init(&r->pins, 0);
    atomic_init(&s->cur, r);
    return &s->base;
nomem:
    if (s->limbo)
        mg__limbo_destroy(s->limbo);
    mg__mode_fini(&s->base, sizeof *s);
    errno = ENOMEM;
    return NULL;
}
