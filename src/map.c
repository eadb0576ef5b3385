/*
 * map.c - the engine: Go 1.19's runtime map, in C.
 *
 * ==========================================================================
 * Design
 * ==========================================================================
 *
 * Terminology (the only words used for these things, here and elsewhere)
 *   bucket      8 slots, their 8 tophash bytes and an overflow link.  A map
 *               has 2^B buckets in its bucket array; a key lives in bucket
 *               hash & (2^B - 1) or in that bucket's overflow chain.
 *   slot        one key and one value (mg_slot, 16 bytes).
 *   tophash     one byte per slot: the top byte of the key's hash (bumped
 *               by MG_MIN_TOPHASH when smaller), or a small marker value.
 *   overflow    an extra bucket chained to a full bucket (mg_ovf).
 *   evacuate    move the entries of one bucket of the old bucket array
 *               (oldbuckets) into the new one, during growth.
 *   oldbuckets  the bucket array being evacuated; NULL when not growing.
 *
 * A bucket array, as laid out in memory (bucket i shown)
 *
 *   ctrl[]   (16 B per bucket)   | ... | th0 th1 .. th7 | mg_ovf * | ... |
 *                                        one uint64_t,      |
 *                                        byte j = slot j    |
 *   slots[] (128 B per bucket)   | ... |k v|k v| .. |k v| ... |    |
 *                                       slot 0  1      7          v
 *   an overflow bucket (mg_ovf):   | th0..th7 | next | k v | .. | k v |
 *
 *   Go keeps tophash, keys, values and the overflow pointer together in one
 *   bmap.  We keep Go's bucket (8 slots, the same tophash encoding, the
 *   same overflow chains, the same B and the same growth points) but split
 *   the bucket array in two: a dense control array of tophash words and
 *   overflow links, and a slot array with each key next to its value.  A
 *   lookup reads one control word (four share a cache line; the array is
 *   1/9 of the table and stays in cache far better than the slots),
 *   compares all 8 tophash bytes with one word-wide operation, and reads a
 *   slot only on a match (false positives: about 1 in 250 per occupied
 *   slot).  It prefetches the bucket's first slot line while the control
 *   word loads, so a hit usually waits for one memory access, not two in a
 *   row.  The overflow link sits next to the tophash word because a lookup
 *   in a full bucket must follow it: in a separate array it cost a second
 *   dependent miss (measured: misses at 10M keys 70 -> 58 ns when joined).
 *   Memory is Go's: 144 bytes per bucket.  Overflow buckets keep their
 *   three parts together (they are rare) and come from per-array chunks.
 *
 * Hashing (hash.h)
 *   Secrets drawn from getrandom() per map (Go: hash0): byte keys hash with
 *   XXH3 and a 64-bit seed, u64 keys with a folded 128-bit multiply of
 *   (key ^ secret) by (bswap(key) ^ secret2): both factors depend on the
 *   key, so structured keys do not land on a lattice of buckets.  They are
 *   re-drawn when the map is cleared or a delete
 *   empties it (Go does the same, issue 25237), never during growth: an old
 *   bucket must split into exactly two new ones.  Byte keys store their
 *   full hash next to the bytes, so evacuation and comparison never rehash.
 *
 * Load factor and growth (Go: map.go overLoadFactor, hashGrow)
 *   The map doubles when an insert of a new key would make
 *   count > MG_BUCKET_CNT and count > MG_LOAD_NUM/MG_LOAD_DEN * 2^B, i.e.
 *   at the (13*2^(B-1)+1)-th key for B >= 1 and at the 9th for B = 0.  A
 *   hint picks the smallest B that is not over that load.  When overflow
 *   buckets reach about as many as buckets (Go: 2^min(B,15), with the count
 *   sampled at 2^-(B-15) for B >= 16; we count exactly against 2^B, which is
 *   what Go's sampled test approximates) the map instead starts a same-size
 *   grow, which compacts chains thinned by deletes.  Growth is checked
 *   only when an insert adds a key, and never while a grow is running.
 *
 * Incremental evacuation (Go: growWork, evacuate, advanceEvacuationMark)
 *   Starting a grow only allocates the new bucket array (zeroed lazily by
 *   the allocator: no pass over its memory) and moves the current array to
 *   oldbuckets.  Every later write (put or delete) first evacuates the old
 *   bucket that feeds the bucket it is about to touch, then the old bucket
 *   at nevacuate.  Reads never evacuate: a read of a key whose old bucket
 *   is not evacuated yet reads the old bucket.  Evacuating old bucket i of
 *   a doubling sends each key to new bucket i (X) or i + 2^oldB (Y) by the
 *   hash bit 2^oldB, and marks each old slot evacuatedX/Y/Empty.  No single
 *   operation pays for more than two old buckets (plus their chains).  When
 *   the grow ends, the old array's big blocks are unmapped at most
 *   MG_RETIRE_STEP bytes per write: one munmap of a big array would stall
 *   its caller for milliseconds.
 *
 * Shrinking (beyond Go, which never gives memory back: golang/go#20135)
 *   S1. After a delete, if no grow runs, B > max(hint's B, MG_SHRINK_MIN_B)
 *       and count <= loadmax(B) / MG_SHRINK_DIV, a shrink starts to the
 *       smallest B' (not below that floor) with count <= loadmax(B') /
 *       MG_SHRINK_ROOM: usually B-2, so a map emptied from large sizes moves
 *       each entry and allocates a fresh array half as often as halving
 *       would (fresh pages cost ~1.6 us each on the machines we measured).
 *   S2. A shrink is a grow in reverse: old buckets i, i + 2^B', i + 2*2^B',
 *       ... all feed new bucket i, and are evacuated together as a group,
 *       so a new bucket is either untouched or complete.  Their slots are
 *       marked evacuatedX.  An insert evacuates its own group first (as in
 *       a grow); a delete acts in place and evacuates only at nevacuate,
 *       walking the old array in order rather than jumping to random groups.
 *   S3. Hysteresis: a shrink leaves the map MG_SHRINK_ROOM times below its
 *       next growth point, and a grow leaves it MG_SHRINK_DIV / 4 times
 *       above its next shrink point (a grow halves the load), so a map
 *       hovering around either threshold does not flip.  A map that only ever receives inserts
 *       never shrinks: its B is exactly Go's.
 *   S4. A delete that empties the map, and mg_clear, drop every bucket
 *       array and return to the hint's B (Go keeps B; its clear keeps the
 *       memory too).
 *
 * Out of memory
 *   Every allocation a write may need is made before the write changes
 *   anything: the new bucket array of a grow, the overflow buckets the
 *   evacuations of this write can need (bounded by the chain lengths of
 *   the old buckets it will evacuate), one overflow bucket for the insert,
 *   the copy of a byte key.  If one fails the write returns MG_ENOMEM and
 *   the map is exactly as before.  A grow that cannot get its new array is
 *   not an error: the key goes into the current array (into the overflow
 *   bucket reserved for it) and the next insert tries to grow again.  A
 *   delete never fails: if it cannot reserve memory for evacuation it
 *   deletes in place, in the old bucket.
 *
 * Iteration (map_iter.c), after Go's mapiterinit/mapiternext
 *   R1. An iterator MUST start at a random bucket and a random slot offset.
 *   R2. It MUST walk the bucket array that was current when it started,
 *       and keep that array alive (a reference) until mg_iter_done.
 *   R3. For a slot marked evacuatedX/Y it MUST look the key up again in the
 *       live map and produce the current value, or skip the key if it is
 *       gone.  Old arrays are therefore never cleared by evacuation.
 *   R4. If it started during a grow and the old bucket feeding the bucket
 *       it reaches is not evacuated, it MUST walk that old bucket instead,
 *       producing only the keys that belong to its bucket (doubling) or both
 *       old buckets of the group (shrink).
 *   R5. It MAY produce keys inserted after it started.
 *   R6. After mg_clear it MUST stop at its next step.
 *   Byte keys deleted while an iterator is live are freed only when the
 *   last iterator finishes, so R3's lookups never read freed memory.
 *
 * Misuse detection (guard.c), after Go's hashWriting flag
 *   Every write swaps its thread's token into the header's writer word on
 *   entry (an atomic exchange: it must find 0) and checks, on exit, that
 *   the token is still its own; a read and every iteration step check that
 *   the word is 0.  Two overlapping writers always see each other: the
 *   second to enter finds the first one's token and stops before touching
 *   the table, reporting "concurrent map writes" (Go's plain flag is best
 *   effort here, ours is not).  A reader that overlaps a writer reports
 *   "concurrent map read and map write"; that check, like Go's, is best
 *   effort: a read and a write that never overlap in time are not seen.  The word holds a token rather
 *   than Go's toggled bit so the report can name the writing thread.  The
 *   header also carries a magic number per key kind: one compare catches a
 *   freed map, a corrupted header and a call with the wrong key kind.
 *
 * The concurrent modes (src/modes/, docs/modes.md)
 *   A mode map's header has its own magic (MG_MAGIC_MODE), so it fails the
 *   one compare above and the public calls dispatch to the mode on that
 *   slow path: MG_UNSYNC pays nothing for the modes.  The modes keep their
 *   entries in engine maps, which they call in three ways of their own:
 *   M1. Under the mode's exclusion (a lock, the owner thread) writes go
 *       through mg__e_put_excl / mg__e_del_excl / mg__e_rmw_excl, which do
 *       not claim the writer word: the mode already excludes every other
 *       access, and an update then writes no header line.
 *   M2. MG_SHARDED reads with mg__find_optimistic while a writer may be
 *       changing the map, and validates with its own sequence count.  So
 *       that this read stays inside memory that is still mapped: every
 *       pointer to a bucket array or an overflow bucket is made reachable
 *       with a release store (MG_PUBLISH), the lookup reads each shared
 *       word once, and the sharded mode's allocator defers every free past
 *       an RCU grace period.
 *   M3. MG_READMOSTLY reads its read-only maps (never written once
 *       published) from many threads at once, which MG_UNSYNC allows.
 *
 * Invariants (checked by mg__validate in map_debug.c)
 *   I1. magic matches keykind; B <= MG_MAX_B; buckets == NULL implies
 *       count == 0 and oldbuckets == NULL; buckets->B == B.
 *   I2. A slot with tophash >= MG_MIN_TOPHASH holds a key whose hash gives
 *       that tophash and whose bucket in that array is the one it sits in.
 *   I3. Once a slot of a chain is emptyRest, every later slot of the chain
 *       (and of its overflow buckets) is emptyRest.
 *   I4. No key is stored twice (counting old buckets not yet evacuated).
 *   I5. count equals the number of live slots in the bucket array plus
 *       those in old buckets not yet evacuated.
 *   I6. While growing: old buckets (groups when shrinking) below nevacuate
 *       are evacuated; an evacuated old bucket has only evacuated* tophash
 *       values; a new bucket fed by an unevacuated old bucket is empty.
 *   I7. A table's noverflow equals the overflow buckets chained in it.
 *   I8. The stored hash of a byte key is the hash of its bytes.
 */
#include "internal.h"
#include "obs/events.h"
#include "obs/obs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Go's 144 bytes per bucket, split as the essay describes. */
_Static_assert(sizeof(mg_ctrl) + MG_BUCKET_CNT * sizeof(mg_slot) == 144, "bucket size");
_Static_assert(sizeof(mg_ovf) == 144, "overflow bucket size");
_Static_assert(offsetof(mg_chunk, b) % 16 == 0, "overflow slots must not straddle lines");

/* ---------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------ */

/* Allocations at least this big go straight to mmap: zero pages come
 * lazily (no pass over the memory when a grow starts), they go back to the
 * kernel when freed, and a retired one can be unmapped piece by piece.
 * No transparent huge pages: with MADV_HUGEPAGE lookups gained 5-20%,
 * but the first touch of each 2 MB page zeroes all of it, and the first
 * writes of a grow touch pages all over the new array: the worst batch of
 * 64 inserts went from under 1 ms to 5-60 ms (10M keys), the very stall
 * incremental evacuation exists to avoid. */
#define MG_MMAP_MIN ((size_t)128 << 10)

static void *sys_malloc(void *ctx, size_t size)
{
    (void)ctx;
    if (size >= MG_MMAP_MIN) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        return p;
    }
    return malloc(size);
}
static void *sys_calloc(void *ctx, size_t size)
{
    if (size >= MG_MMAP_MIN)
        return sys_malloc(ctx, size); /* anonymous mappings are zero */
    return calloc(1, size);
}
static void sys_free(void *ctx, void *p, size_t size)
{
    (void)ctx;
    if (!p)
        return;
    if (size >= MG_MMAP_MIN)
        munmap(p, size);
    else
        free(p);
}

const mg_allocator mg__sys_alloc = {sys_malloc, sys_calloc, sys_free, NULL};

void *mg__malloc(const mg_map *m, size_t size)
{
    return m->alloc.malloc(m->alloc.ctx, size);
}
void *mg__calloc(const mg_map *m, size_t size)
{
    return m->alloc.calloc(m->alloc.ctx, size);
}
void mg__free(const mg_map *m, void *p, size_t size)
{
    if (p)
        m->alloc.free(m->alloc.ctx, p, size);
}

/* At most this much of retired arrays is released per write (see below):
 * a few microseconds of munmap here. */
#define MG_RETIRE_STEP ((size_t)64 << 10)

/* ---------------------------------------------------------------------------
 * Bucket arrays
 * ------------------------------------------------------------------------ */

/* Stores that make a bucket array or an overflow bucket reachable: release
 * stores, so that an optimistic reader (mg__find_optimistic) that loads the
 * pointer finds the memory behind it initialised.  A plain store on x86. */
#define MG_PUBLISH(lhs, rhs) __atomic_store_n(&(lhs), (rhs), __ATOMIC_RELEASE)

/* A cursor over one bucket of a chain: its tophash word, its overflow link
 * and its slots. */
typedef struct {
    uint64_t *th;
    mg_ovf **ov;
    mg_slot *s;
} bref;

static MG_HOT_INLINE bref bucket_at(const mg_table *t, size_t i)
{
    return (bref){&t->ctrl[i].tophash, &t->ctrl[i].overflow, &t->slots[i * MG_BUCKET_CNT]};
}
static MG_HOT_INLINE bool bucket_next(bref *b)
{
    mg_ovf *o = *b->ov;
    if (!o)
        return false;
    b->th = &o->tophash;
    b->ov = &o->overflow;
    b->s = o->slots;
    return true;
}

/* The largest count that is not over the load factor at B (Go's rule). */
static size_t load_max(unsigned B)
{
    return B == 0 ? MG_BUCKET_CNT : (size_t)MG_LOAD_NUM * (((size_t)1 << B) / MG_LOAD_DEN);
}

/* S1: never shrink below 2^MG_SHRINK_MIN_B buckets nor below the hint. */
static unsigned floor_B(const mg_map *m)
{
    return m->hintB > MG_SHRINK_MIN_B ? m->hintB : MG_SHRINK_MIN_B;
}

static size_t chunk_size(const mg_table *t)
{
    size_t n = t->nbuckets / 256;
    return n < 4 ? 4 : n;
}

static mg_table *table_new(mg_map *m, unsigned B)
{
    if (B > MG_MAX_B)
        return NULL;
    size_t n = (size_t)1 << B;
    if (n > SIZE_MAX / (16 + MG_BUCKET_CNT * sizeof(mg_slot)) / 2)
        return NULL;
    mg_table *t = mg__malloc(m, sizeof *t);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    size_t cbytes = n * sizeof(mg_ctrl);
    size_t sbytes = n * MG_BUCKET_CNT * sizeof(mg_slot) + 64;
    /* Zeroed: every tophash is emptyRest, every link NULL. */
    t->ctrl = mg__calloc(m, cbytes);
    t->slots_raw = t->ctrl ? mg__malloc(m, sbytes) : NULL;
    if (!t->slots_raw) {
        mg__free(m, t->ctrl, cbytes);
        mg__free(m, t, sizeof *t);
        return NULL;
    }
    t->slots = (mg_slot *)(((uintptr_t)t->slots_raw + 63) & ~(uintptr_t)63);
    t->nbuckets = n;
    t->mask = n - 1;
    t->B = B;
    t->grow_at = load_max(B);
    /* S1: a delete to this count starts a shrink (never below the floor). */
    t->shrink_at = B > floor_B(m) ? load_max(B) / MG_SHRINK_DIV : 0;
    t->bytes = sizeof *t + cbytes + sbytes;
    atomic_init(&t->refs, 1);
    return t;
}

/* ---------------------------------------------------------------------------
 * Retiring big blocks
 *
 * Unmapping a big bucket array at once stalls its caller for milliseconds
 * (151 MB took 6-9 ms here), which would put back the very pause that
 * incremental evacuation removes, and so would freeing its dozens of
 * overflow chunks in one go.  So when a grow finishes, the old array's
 * blocks go on the map's retire list, threaded through the blocks
 * themselves, and each later write releases at most MG_RETIRE_STEP bytes
 * of them: blocks we mmapped are unmapped piece by piece from the tail,
 * smaller ones are freed whole.  A custom allocator's blocks are freed at
 * once: it cannot free part of a block.
 * ------------------------------------------------------------------------ */

/* The page size, for unmapping a retired block piece by piece. */
static size_t page_size(void)
{
    /* Relaxed atomics: maps in different threads may ask first at once;
     * they all compute the same value. */
    static atomic_size_t ps;
    size_t v = atomic_load_explicit(&ps, memory_order_relaxed);
    if (!v) {
        long r = sysconf(_SC_PAGESIZE);
        v = r > 0 ? (size_t)r : 4096;
        atomic_store_explicit(&ps, v, memory_order_relaxed);
    }
    return v;
}

typedef struct mg_retired {
    struct mg_retired *next;
    size_t size;  /* bytes still held (a multiple of the page size when mapped) */
    bool mapped;  /* ours from mmap: unmapped piece by piece; else free() */
} mg_retired;

static void block_free(mg_map *m, void *p, size_t size, bool defer)
{
    if (!p)
        return;
    if (defer && !m->custom_alloc && size >= sizeof(mg_retired)) {
        mg_retired *r = p;
        size_t ps = page_size();
        r->mapped = size >= MG_MMAP_MIN;
        r->size = r->mapped ? (size + ps - 1) & ~(ps - 1) : size;
        r->next = m->retire;
        m->retire = r;
        return;
    }
    mg__free(m, p, size);
}

/* Release up to `budget` bytes of retired blocks (SIZE_MAX: all of them). */
static MG_NOINLINE void retire_step(mg_map *m, size_t budget)
{
    size_t ps = page_size();
    while (m->retire && budget > 0) {
        mg_retired *r = m->retire;
        size_t keep = 0;
        if (r->mapped && r->size > budget)
            keep = (r->size - budget) & ~(ps - 1);
        if (keep == 0) { /* the whole block goes */
            m->retire = r->next;
            budget = r->size < budget ? budget - r->size : 0;
            if (r->mapped)
                munmap(r, r->size);
            else
                free(r);
        } else { /* unmap its tail, keep the head (it holds the list link) */
            munmap((char *)r + keep, r->size - keep);
            r->size = keep;
            budget = 0;
        }
    }
}

static void table_free(mg_map *m, mg_table *t, bool defer)
{
    mg_chunk *c = t->chunks;
    while (c) {
        mg_chunk *next = c->next;
        block_free(m, c, c->bytes, defer);
        c = next;
    }
    block_free(m, t->ctrl, t->nbuckets * sizeof(mg_ctrl), defer);
    block_free(m, t->slots_raw, t->nbuckets * MG_BUCKET_CNT * sizeof(mg_slot) + 64, defer);
    mg__free(m, t, sizeof *t);
}

/* Drop a reference.  Iterators call this (concurrent readers may): they
 * free at once.  The writer passes defer = true to retire big blocks. */
static void table_unref(mg_map *m, mg_table *t, bool defer)
{
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        table_free(m, t, defer);
}

void mg__table_unref(mg_map *m, mg_table *t)
{
    table_unref(m, t, false);
}

/* Publish the bucket arrays' overflow count and bytes for samples. */
static void pub_tables(mg_map *m)
{
    size_t n = 0, bytes = 0;
    if (m->buckets) {
        n += m->buckets->noverflow;
        bytes += m->buckets->bytes;
    }
    if (m->oldbuckets) {
        n += m->oldbuckets->noverflow;
        bytes += m->oldbuckets->bytes;
    }
    MG_PUB(m->pub_noverflow, n);
    MG_PUB(m->pub_tablebytes, bytes);
}

/* Make sure t can hand out `need` overflow buckets without allocating. */
static bool pool_reserve(mg_map *m, mg_table *t, size_t need)
{
    if (t->pool_n >= need)
        return true;
    size_t n = chunk_size(t);
    if (n < need)
        n = need;
    size_t bytes = sizeof(mg_chunk) + n * sizeof(mg_ovf);
    mg_chunk *c = mg__malloc(m, bytes);
    if (!c)
        return false;
    c->next = t->chunks;
    c->bytes = bytes;
    t->chunks = c;
    t->bytes += bytes;
    /* The unused rest of the previous chunk is abandoned (it is small). */
    t->pool = c->b;
    t->pool_n = n;
    pub_tables(m);
    return true;
}

/* Go: newoverflow.  The caller reserved it. */
static inline mg_ovf *pool_take(mg_table *t)
{
    MG_ASSERT(t->pool_n > 0);
    mg_ovf *o = t->pool++;
    t->pool_n--;
    o->tophash = 0;
    o->overflow = NULL;
    t->noverflow++;
    return o;
}

static size_t chain_len(const mg_table *t, size_t i)
{
    size_t n = 1;
    for (const mg_ovf *o = t->ctrl[i].overflow; o; o = o->overflow)
        n++;
    return n;
}

/* ---------------------------------------------------------------------------
 * Keys
 * ------------------------------------------------------------------------ */

/* Equal byte strings of length n.  Keys of up to 16 bytes (the common
 * case) compare with two overlapping word loads each side, no call. */
static MG_HOT_INLINE bool bytes_eq(const unsigned char *a, const unsigned char *b, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, a, 8);
        memcpy(&b0, b, 8);
        memcpy(&a1, a + n - 8, 8);
        memcpy(&b1, b + n - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    return n == 0 || memcmp(a, b, n) == 0;
}

static MG_HOT_INLINE bool key_eq(uint64_t stored, uint64_t hash, uint64_t key,
                          const void *kb, size_t klen, bool bytes)
{
    if (!bytes)
        return stored == key;
    const mg_bkey *bk = (const mg_bkey *)(uintptr_t)stored;
    return bk->hash == hash && bk->len == klen && bytes_eq(bk->data, kb, klen);
}

static size_t bkey_size(size_t len)
{
    return sizeof(mg_bkey) + len;
}

static void bkey_release(mg_map *m, uint64_t stored)
{
    mg_bkey *bk = (mg_bkey *)(uintptr_t)stored;
    if (atomic_load_explicit(&m->iterators, memory_order_acquire) > 0) {
        /* An iterator may still read it from an old bucket (R3). */
        bk->dead = m->dead;
        m->dead = bk;
        return;
    }
    MG_PUB(m->keybytes, m->keybytes - bkey_size(bk->len));
    mg__free(m, bk, bkey_size(bk->len));
}

/* Free the byte keys deleted while iterators were live (none is now). */
static void dead_flush(mg_map *m)
{
    mg_bkey *d = m->dead;
    m->dead = NULL;
    while (d) {
        mg_bkey *next = d->dead;
        MG_PUB(m->keybytes, m->keybytes - bkey_size(d->len));
        mg__free(m, d, bkey_size(d->len));
        d = next;
    }
}

/* ---------------------------------------------------------------------------
 * Guards (the fast half; the reports live in guard.c)
 * ------------------------------------------------------------------------ */



/* Claim the map for a write.  The claim is one atomic exchange: of two
 * writers that overlap, the second always sees the first one's token and
 * stops before touching anything, so a write race is reported, never
 * turned into a corrupted table that crashes first (a plain load-then-store,
 * Go's way, let 1 run in ~1000 of the two-writer repro segfault before
 * either side noticed).  It costs one uncontended locked instruction. */
static MG_HOT_INLINE uintptr_t write_begin(mg_map *m)
{
    uintptr_t self = mg__self_token();
    uintptr_t prev = atomic_exchange_explicit(&m->writer, self, memory_order_acquire);
    if (MG_UNLIKELY(prev != 0))
        mg__fatal_writer(MG_FATAL_CONCURRENT_WRITES, m, prev);
    return self;
}

static MG_NOINLINE void retire_step(mg_map *m, size_t budget);

static MG_HOT_INLINE void write_end(mg_map *m, uintptr_t self)
{
    if (MG_UNLIKELY(m->retire != NULL))
        retire_step(m, MG_RETIRE_STEP);
    uintptr_t now = atomic_load_explicit(&m->writer, memory_order_relaxed);
    if (MG_UNLIKELY(now != self))
        mg__fatal_writer(MG_FATAL_CONCURRENT_WRITES, m, now);
    atomic_store_explicit(&m->writer, 0, memory_order_release);
}

static MG_HOT_INLINE void read_check(const mg_map *m)
{
    if (MG_UNLIKELY(atomic_load_explicit(&((mg_map *)m)->writer,
                                         memory_order_relaxed) != 0))
        mg__fatal(MG_FATAL_CONCURRENT_READ_WRITE, m);
}

/* ---------------------------------------------------------------------------
 * Growth and evacuation
 * ------------------------------------------------------------------------ */

/* Number of evacuation units: old buckets, or, when shrinking, groups of
 * old buckets (u, u + units, u + 2 units, ...) that feed new bucket u. */
static inline size_t evac_units(const mg_map *m)
{
    return m->grow == MG_GROW_SHRINK ? m->buckets->nbuckets : m->oldbuckets->nbuckets;
}

/* Overflow buckets the evacuation of unit u can need in the new array. */
static size_t evac_need(const mg_map *m, size_t u)
{
    const mg_table *old = m->oldbuckets;
    if (mg__evacuated(old->ctrl[u].tophash))
        return 0;
    if (m->grow != MG_GROW_SHRINK)
        return chain_len(old, u);
    size_t n = 0, units = evac_units(m);
    for (size_t ob = u; ob < old->nbuckets; ob += units)
        n += chain_len(old, ob);
    return n;
}

typedef struct {
    bref b;
    unsigned i;
    uint64_t th;
} dest;

static inline void dest_init(dest *d, mg_table *t, size_t i)
{
    d->b = bucket_at(t, i);
    d->i = 0;
    d->th = 0;
    MG_ASSERT(*d->b.th == 0 && *d->b.ov == NULL);
}

static inline void dest_put(mg_table *t, dest *d, const mg_slot *src, uint8_t top)
{
    if (d->i == MG_BUCKET_CNT) {
        *d->b.th = d->th;
        MG_PUBLISH(*d->b.ov, pool_take(t));
        bucket_next(&d->b);
        d->i = 0;
        d->th = 0;
    }
    d->b.s[d->i] = *src;
    d->th |= (uint64_t)top << (8 * d->i);
    d->i++;
}

static inline void dest_finish(dest *d)
{
    *d->b.th = d->th;
}

/* Move one old chain into x (and y when doubling), marking the old slots. */
static void evacuate_chain(mg_map *m, mg_table *old, size_t ob, dest *x, dest *y,
                           uint64_t newbit)
{
    mg_table *t = m->buckets;
    bref b = bucket_at(old, ob);
    do {
        uint64_t w = *b.th, nw = 0;
        for (unsigned i = 0; i < MG_BUCKET_CNT; i++) {
            uint8_t top = mg__th_get(w, i);
            uint8_t mark = MG_EVAC_EMPTY;
            if (!mg__is_empty(top)) {
                bool useY = y && (mg__stored_hash(m, b.s[i].key) & newbit);
                mark = useY ? MG_EVAC_Y : MG_EVAC_X;
                dest_put(t, useY ? y : x, &b.s[i], top);
            }
            nw |= (uint64_t)mark << (8 * i);
        }
        *b.th = nw;
    } while (bucket_next(&b));
}

static void grow_finish(mg_map *m)
{
    mg_table *old = m->oldbuckets;
    m->oldbuckets = NULL;
    MG_PUB(m->grow, MG_GROW_NONE);
    MG_PUB(m->nevacuate, 0);
    table_unref(m, old, true);
    pub_tables(m);
    MG_EV_GROW_DONE(m, m->B);
}

/* Go: advanceEvacuationMark. */
static size_t next_mark(const mg_map *m, size_t from);
static void advance_mark(mg_map *m)
{
    MG_PUB(m->nevacuate, next_mark(m, m->nevacuate));
    if (m->nevacuate == evac_units(m))
        grow_finish(m);
}

/* Go: evacuate.  The caller reserved evac_need(u) overflow buckets. */
static void evacuate(mg_map *m, size_t u)
{
    mg_table *old = m->oldbuckets;
    if (!mg__evacuated(old->ctrl[u].tophash)) {
        dest x, y;
        switch (m->grow) {
        case MG_GROW_DOUBLE:
            dest_init(&x, m->buckets, u);
            dest_init(&y, m->buckets, u + old->nbuckets);
            evacuate_chain(m, old, u, &x, &y, old->nbuckets);
            dest_finish(&x);
            dest_finish(&y);
            break;
        case MG_GROW_SAME:
            dest_init(&x, m->buckets, u);
            evacuate_chain(m, old, u, &x, NULL, 0);
            dest_finish(&x);
            break;
        default: /* MG_GROW_SHRINK: the group u, u + units, ... */
            dest_init(&x, m->buckets, u);
            for (size_t ob = u; ob < old->nbuckets; ob += m->buckets->nbuckets)
                evacuate_chain(m, old, ob, &x, NULL, 0);
            dest_finish(&x);
            break;
        }
        pub_tables(m); /* evacuation may have taken overflow buckets */
        MG_EV_EVACUATE(m, u);
    }
    if (u == m->nevacuate)
        advance_mark(m);
}

/* Where advance_mark would leave nevacuate after evacuating unit `from`. */
static size_t next_mark(const mg_map *m, size_t from)
{
    size_t units = evac_units(m), j = from + 1;
    size_t stop = j + 1024 < units ? j + 1024 : units;
    while (j != stop && mg__evacuated(m->oldbuckets->ctrl[j].tophash))
        j++;
    return j;
}

/* The first unit growWork evacuates for a write to new bucket b. */
static inline size_t work_unit(const mg_map *m, size_t b, bool insert)
{
    if (m->grow == MG_GROW_SHRINK && !insert)
        return m->nevacuate;
    return b & (evac_units(m) - 1);
}

/* Reserve what growWork for new bucket b needs, plus `extra`. */
static bool grow_reserve(mg_map *m, size_t b, size_t extra, bool insert)
{
    size_t units = evac_units(m);
    size_t u = work_unit(m, b, insert);
    size_t need = evac_need(m, u) + extra;
    size_t second = u == m->nevacuate ? next_mark(m, u) : m->nevacuate;
    if (second < units && second != u)
        need += evac_need(m, second);
    return pool_reserve(m, m->buckets, need);
}

/* Go: growWork.  A delete during a shrink (ours) evacuates the group at
 * nevacuate instead of the group it touches: a delete can act on an old
 * bucket that is not evacuated yet, and walking the old array in order
 * costs far less than jumping to a random group.  An insert must evacuate
 * its own group first, as in Go. */
static void grow_work(mg_map *m, size_t b, bool insert)
{
    size_t u = work_unit(m, b, insert);
    evacuate(m, u);
    if (m->oldbuckets)
        evacuate(m, m->nevacuate);
}

/* Go: hashGrow, followed by what the first growWork needs.  Nothing
 * changes unless every allocation succeeded. */
static int hash_grow(mg_map *m, uint64_t hash)
{
    mg_table *t = m->buckets;
    bool same = m->count < t->grow_at; /* not over the load: overflows did it */
    unsigned nb = same ? m->B : m->B + 1u;
    mg_table *nt = table_new(m, nb);
    if (!nt)
        return MG_ENOMEM;
    uint8_t oldB = m->B;
    MG_PUBLISH(m->oldbuckets, t);
    MG_PUBLISH(m->buckets, nt);
    MG_PUB(m->oldB, oldB);
    MG_PUB(m->B, (uint8_t)nb);
    MG_PUB(m->nevacuate, 0);
    MG_PUB(m->grow, same ? MG_GROW_SAME : MG_GROW_DOUBLE);
    /* What the first growWork and the insert need, or undo. */
    if (!grow_reserve(m, hash & mg__bucket_mask(nb), 1, true)) {
        MG_PUBLISH(m->oldbuckets, NULL);
        MG_PUBLISH(m->buckets, t);
        MG_PUB(m->B, oldB);
        MG_PUB(m->grow, MG_GROW_NONE);
        table_free(m, nt, false);
        return MG_ENOMEM;
    }
    if (same)
        MG_PUB(m->same_size_grows_total, m->same_size_grows_total + 1);
    else
        MG_PUB(m->grows_total, m->grows_total + 1);
    pub_tables(m);
    MG_EV_GROW_START(m, oldB, nb, same);
    return MG_OK;
}

/* S1: start a shrink; the caller saw count reach the array's shrink_at. */
static void maybe_shrink(mg_map *m)
{
    if (m->oldbuckets)
        return;
    unsigned nb = floor_B(m);
    while (m->count > load_max(nb) / MG_SHRINK_ROOM)
        nb++;
    mg_table *nt = table_new(m, nb);
    if (!nt)
        return; /* no memory: stay big, try again on a later delete */
    MG_PUBLISH(m->oldbuckets, m->buckets);
    MG_PUBLISH(m->buckets, nt);
    uint8_t oldB = m->B;
    MG_PUB(m->oldB, oldB);
    MG_PUB(m->B, (uint8_t)nb);
    MG_PUB(m->nevacuate, 0);
    MG_PUB(m->grow, MG_GROW_SHRINK);
    MG_PUB(m->shrinks_total, m->shrinks_total + 1);
    pub_tables(m);
    MG_EV_SHRINK(m, oldB, nb);
}

/* S4: drop every bucket array; the next insert allocates at the hint's B. */
static void reset_tables(mg_map *m)
{
    if (m->oldbuckets) /* a clear ends the growth under way */
        MG_EV_GROW_DONE(m, m->hintB);
    table_unref(m, m->oldbuckets, true);
    table_unref(m, m->buckets, true);
    m->oldbuckets = NULL;
    m->buckets = NULL;
    MG_PUB(m->grow, MG_GROW_NONE);
    MG_PUB(m->nevacuate, 0);
    MG_PUB(m->B, m->hintB);
    pub_tables(m);
}

/* ---------------------------------------------------------------------------
 * Lookup
 * ------------------------------------------------------------------------ */

/* Start loading a bucket's first slot line (slots 0-3, where most keys sit:
 * slots fill from 0) while its control word loads, so a hit usually waits
 * for one memory access, not two in a row.  Measured at 1M / 10M keys,
 * ns per hit and miss: no prefetch 48 / 16 and 94 / 45, this 28 / 16 and
 * 73 / 59; prefetching the second line too made misses pay for two
 * useless lines. */
static MG_HOT_INLINE void prefetch_slots(const mg_slot *s, int write)
{
    if (write)
        __builtin_prefetch(s, 1);
    else
        __builtin_prefetch(s, 0);
}

/* The chain a key lives in right now: its old bucket while that is not
 * evacuated, else its bucket in the current array. */
static MG_HOT_INLINE bref home_bucket(const mg_map *m, uint64_t hash)
{
    const mg_table *old = m->oldbuckets;
    if (MG_UNLIKELY(old != NULL)) {
        size_t ob = hash & mg__bucket_mask(old->B);
        if (!mg__evacuated(old->ctrl[ob].tophash))
            return bucket_at(old, ob);
    }
    return bucket_at(m->buckets, hash & m->buckets->mask);
}

static MG_HOT_INLINE mg_slot *find(const mg_map *m, uint64_t hash, uint64_t key,
                            const void *kb, size_t klen, bool bytes)
{
    if (MG_UNLIKELY(m->buckets == NULL))
        return NULL;
    bref b = home_bucket(m, hash);
    prefetch_slots(b.s, 0);
    uint8_t top = mg__tophash(hash);
    for (;;) {
        uint64_t w = *b.th;
        for (uint64_t mm = mg__match(w, top); mm; mm &= mm - 1) {
            mg_slot *s = &b.s[mg__first_slot(mm)];
            if (MG_LIKELY(key_eq(s->key, hash, key, kb, klen, bytes)))
                return s;
        }
        if (mg__has_zero(w) || !bucket_next(&b))
            return NULL;
    }
}

/* ---------------------------------------------------------------------------
 * Optimistic lookup (MG_SHARDED's sequence-checked reads)
 *
 * Runs while a writer may be changing the map.  The caller validates the
 * answer with a sequence count the writer bumps around every write and
 * discards it if a write overlapped; this function only has to be safe:
 *   - every shared word is read once (__atomic loads), so an index is
 *     always masked by the mask of the very array it indexes;
 *   - memory it can reach stays mapped: the caller's allocator defers every
 *     free past an RCU grace period and the caller is in a read-side
 *     section, and arrays, chunks and byte keys never change after they are
 *     filled except for the words read here atomically;
 *   - chains are walked for at most MG_OPT_MAX_STEPS buckets (a chain
 *     caught half-built ends in a NULL link or zero tophash anyway);
 *   - a slot whose key pointer is still NULL (byte keys) is a mismatch.
 * Returns 1 (found, *val set), 0 (absent) or -1 (gave up: retry locked).
 * ThreadSanitizer sees these loads race with the writer's plain stores:
 * tests/tsan.supp names this function, and only it.
 * ------------------------------------------------------------------------ */
#define MG_OPT_MAX_STEPS 4096
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

int mg__find_optimistic(const mg_map *m, uint64_t key, const void *kb, size_t klen,
                        uint64_t *val)
{
    bool bytes = m->keykind == MG_KEY_BYTES;
    uint64_t hash = bytes ? mg__hash_bytes(kb, klen, LOAD(m->seed))
                          : mg__hash_u64(key, LOAD(m->seed), LOAD(m->seed2));
    mg_table *t = LOAD(m->buckets);
    if (!t)
        return 0;
    mg_table *old = LOAD(m->oldbuckets);
    const mg_ctrl *c;
    const mg_slot *sl;
    if (old) {
        size_t ob = hash & old->mask;
        if (!mg__evacuated(LOAD(old->ctrl[ob].tophash)))
            t = old;
    }
    size_t bi = hash & t->mask;
    c = &t->ctrl[bi];
    sl = &t->slots[bi * MG_BUCKET_CNT];
    __builtin_prefetch(sl);
    uint64_t w = LOAD(c->tophash);
    mg_ovf *next = LOAD(c->overflow);
    uint8_t top = mg__tophash(hash);
    for (unsigned steps = 0; steps < MG_OPT_MAX_STEPS; steps++) {
        for (uint64_t mm = mg__match(w, top); mm; mm &= mm - 1) {
            const mg_slot *s = &sl[mg__first_slot(mm)];
            uint64_t stored = LOAD(s->key);
            bool eq;
            if (bytes) {
                const mg_bkey *bk = (const mg_bkey *)(uintptr_t)stored;
                eq = bk && bk->hash == hash && bk->len == klen &&
                     bytes_eq(bk->data, kb, klen);
            } else {
                eq = stored == key;
            }
            if (eq) {
                *val = LOAD(s->val);
                return 1;
            }
        }
        if (mg__has_zero(w) || !next)
            return 0;
        w = LOAD(next->tophash);
        sl = next->slots;
        next = LOAD(next->overflow);
    }
    return -1;
}
#undef LOAD

bool mg__lookup_slot(mg_map *m, uint64_t hash, uint64_t key, const void *kb,
                     size_t klen, mg_slot **out)
{
    bool bytes = m->keykind == MG_KEY_BYTES;
    *out = find(m, hash, key, kb, klen, bytes);
    return *out != NULL;
}

/* ---------------------------------------------------------------------------
 * Insert
 * ------------------------------------------------------------------------ */

/* Go: mapassign.  For byte maps `key` is the new mg_bkey (or 0 when the
 * caller knows the key is present). */
static MG_HOT_INLINE int assign(mg_map *m, uint64_t hash, uint64_t key, const void *kb,
                         size_t klen, uint64_t val, bool bytes)
{
    mg_table *t = m->buckets;
    if (MG_UNLIKELY(t == NULL)) {
        t = table_new(m, m->B);
        if (!t)
            return MG_ENOMEM;
        MG_PUBLISH(m->buckets, t);
        pub_tables(m);
    }
    uint8_t top = mg__tophash(hash);
again:;
    size_t bi = hash & mg__bucket_mask(m->B);
    if (MG_UNLIKELY(m->oldbuckets != NULL)) {
        if (!grow_reserve(m, bi, 1, true))
            return MG_ENOMEM;
        grow_work(m, bi, true);
    }
    t = m->buckets;
    bref b = bucket_at(t, bi);
    prefetch_slots(b.s, 1);
    uint64_t *insth = NULL;
    mg_slot *inss = NULL;
    unsigned insi = 0;
    for (;;) {
        uint64_t w = *b.th;
        for (uint64_t mm = mg__match(w, top); mm; mm &= mm - 1) {
            mg_slot *s = &b.s[mg__first_slot(mm)];
            if (key_eq(s->key, hash, bytes ? 0 : key, kb, klen, bytes)) {
                s->val = val;
                return 1; /* updated */
            }
        }
        if (!insth) {
            uint64_t e = mg__match_empty(w);
            if (e) {
                insth = b.th;
                inss = b.s;
                insi = mg__first_slot(e);
            }
        }
        if (mg__has_zero(w) || !bucket_next(&b))
            break;
    }
    /* A new key.  Go: grow if over the load factor or too many overflows. */
    if (MG_UNLIKELY(m->count >= t->grow_at || mg__too_many_overflow(t->noverflow, t->B)) &&
        !m->oldbuckets) {
        if (hash_grow(m, hash) == MG_OK)
            goto again;
        /* No memory to grow.  This write may already have evacuated (and
         * finished a grow), so failing now would not leave the map exactly
         * as it was: place the key in the current array instead (one
         * overflow bucket at most, reserved above when evacuating) and let
         * the next insert try to grow again. */
    }
    if (bytes && key == 0)
        mg__internal_error("byte key absent at insert", __FILE__, __LINE__);
    if (!insth) {
        if (!pool_reserve(m, t, 1))
            return MG_ENOMEM;
        mg_ovf *o = pool_take(t);
        MG_PUBLISH(*b.ov, o);
        pub_tables(m);
        MG_EV_OVERFLOW(m, m->pub_noverflow);
        insth = &o->tophash;
        inss = o->slots;
        insi = 0;
    }
    inss[insi].key = key;
    inss[insi].val = val;
    *insth = mg__th_set(*insth, insi, top);
    MG_PUB(m->count, m->count + 1);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Delete
 * ------------------------------------------------------------------------ */

/* Go: mapdelete's emptyRest fix-up: slot i of bucket b was just cleared and
 * nothing follows it, so it and the run of emptyOne slots before it (back
 * into earlier buckets of the chain) become emptyRest. */
static MG_NOINLINE void clear_rest(bref orig, bref b, unsigned i)
{
    for (;;) {
        *b.th = mg__th_set(*b.th, i, MG_EMPTY_REST);
        if (i == 0) {
            if (b.th == orig.th)
                break;
            /* Find the previous bucket; continue at its last slot. */
            uint64_t *target = b.th;
            bref p = orig;
            while (&(*p.ov)->tophash != target)
                bucket_next(&p);
            b = p;
            i = MG_BUCKET_CNT - 1;
        } else {
            i--;
        }
        if (mg__th_get(*b.th, i) != MG_EMPTY_ONE)
            break;
    }
}

/* Go: mapdelete's slot clearing. */
static MG_HOT_INLINE void clear_slot(bref orig, bref b, unsigned i)
{
    uint64_t w = mg__th_set(*b.th, i, MG_EMPTY_ONE);
    *b.th = w;
    bool more;
    if (i < MG_BUCKET_CNT - 1)
        more = mg__th_get(w, i + 1) != MG_EMPTY_REST;
    else
        more = *b.ov && (uint8_t)(*b.ov)->tophash != MG_EMPTY_REST;
    if (!more)
        clear_rest(orig, b, i);
}

static MG_HOT_INLINE bool delete_key(mg_map *m, uint64_t hash, uint64_t key,
                              const void *kb, size_t klen, bool bytes)
{
    size_t bi = hash & mg__bucket_mask(m->B);
    if (MG_UNLIKELY(m->oldbuckets != NULL) && grow_reserve(m, bi, 0, false))
        grow_work(m, bi, false);
    bref orig = home_bucket(m, hash), b = orig;
    prefetch_slots(b.s, 1);
    uint8_t top = mg__tophash(hash);
    for (;;) {
        uint64_t w = *b.th;
        for (uint64_t mm = mg__match(w, top); mm; mm &= mm - 1) {
            unsigned i = mg__first_slot(mm);
            mg_slot *s = &b.s[i];
            if (key_eq(s->key, hash, key, kb, klen, bytes)) {
                if (bytes)
                    bkey_release(m, s->key);
                clear_slot(orig, b, i);
                MG_PUB(m->count, m->count - 1);
                if (m->count == 0) {
                    mg__reseed(m); /* Go: map.go:796-800 */
                    if (m->B > m->hintB || m->oldbuckets)
                        reset_tables(m);
                } else if (MG_UNLIKELY(m->count <= m->buckets->shrink_at)) {
                    maybe_shrink(m);
                }
                return true;
            }
        }
        if (mg__has_zero(w) || !bucket_next(&b))
            return false;
    }
}

/* ---------------------------------------------------------------------------
 * Walking every live key (clear, free, debug)
 * ------------------------------------------------------------------------ */

typedef void (*slot_fn)(mg_map *m, mg_slot *s, void *arg);

static void walk_chain(mg_map *m, const mg_table *t, size_t i, slot_fn fn, void *arg)
{
    bref b = bucket_at(t, i);
    do {
        for (unsigned j = 0; j < MG_BUCKET_CNT; j++)
            if (mg__th_get(*b.th, j) >= MG_MIN_TOPHASH)
                fn(m, &b.s[j], arg);
    } while (bucket_next(&b));
}

static void walk_live(mg_map *m, slot_fn fn, void *arg)
{
    if (m->oldbuckets)
        for (size_t i = 0; i < m->oldbuckets->nbuckets; i++)
            if (!mg__evacuated(m->oldbuckets->ctrl[i].tophash))
                walk_chain(m, m->oldbuckets, i, fn, arg);
    if (m->buckets)
        for (size_t i = 0; i < m->buckets->nbuckets; i++)
            walk_chain(m, m->buckets, i, fn, arg);
}

static void release_slot_key(mg_map *m, mg_slot *s, void *arg)
{
    (void)arg;
    bkey_release(m, s->key);
}

/* ---------------------------------------------------------------------------
 * Public API
 * ------------------------------------------------------------------------ */

static unsigned hint_to_B(size_t hint, mg_keykind kind)
{
    /* Go: makemap treats a hint whose bucket memory would overflow or
     * exceed maxAlloc (2^48 on linux/amd64) as 0.  The bucket sizes are
     * Go's for map[uint64]uint64 and map[string]uint64. */
    size_t bucketsize = kind == MG_KEY_BYTES ? 208 : 144;
    if (hint > ((size_t)1 << 48) / bucketsize)
        hint = 0;
    unsigned B = 0;
    while (mg__over_load(hint, B))
        B++;
    return B;
}

mg_map *mg_new(const mg_options *opt)
{
    mg__crash_handler_install(); /* racing reads' faults: once per process */
    mg__trace_env_init();        /* MAPGUARD_TRACE: once per process */
    mg_options o = {0};
    if (opt)
        o = *opt;
    if ((unsigned)o.mode > MG_ACTOR || (unsigned)o.key > MG_KEY_BYTES) {
        errno = EINVAL;
        return NULL;
    }
    if (o.alloc && (!o.alloc->malloc || !o.alloc->calloc || !o.alloc->free)) {
        errno = EINVAL;
        return NULL;
    }
    if (o.mode != MG_UNSYNC)
        return mg__mode_new(&o);
    const mg_allocator *a = o.alloc ? o.alloc : &mg__sys_alloc;
    mg_map *m = a->malloc(a->ctx, sizeof *m);
    if (!m) {
        errno = ENOMEM;
        return NULL;
    }
    memset(m, 0, sizeof *m);
    m->alloc = *a;
    m->custom_alloc = o.alloc != NULL;
    m->keykind = (uint8_t)o.key;
    m->magic = mg__want_magic(o.key == MG_KEY_BYTES);
    mg__reseed(m);
    m->hintB = (uint8_t)hint_to_B(o.hint, o.key);
    m->B = m->hintB;
    atomic_init(&m->writer, 0);
    atomic_init(&m->iterators, 0);
    if (o.name) {
        size_t n = strlen(o.name) + 1;
        m->name = mg__malloc(m, n);
        if (!m->name)
            goto nomem;
        memcpy(m->name, o.name, n);
        m->label = m->name;
    }
    if (m->B > 0) { /* Go allocates eagerly when the hint asks for buckets */
        MG_PUBLISH(m->buckets, table_new(m, m->B));
        if (!m->buckets)
            goto nomem;
        pub_tables(m);
    }
    if (m->name)
        mg__registry_add(m);
    return m;
nomem:
    if (m->name)
        mg__free(m, m->name, strlen(m->name) + 1);
    a->free(a->ctx, m, sizeof *m);
    errno = ENOMEM;
    return NULL;
}

void mg_free(mg_map *m)
{
    if (!m)
        return;
    if (mg__is_mode(m)) {
        mg__mode_free(m);
        return;
    }
    mg__check_header(m, m->magic == MG_MAGIC_BYTES);
    if (m->name) /* first: a scrape may be sampling it */
        mg__registry_remove(m);
    uintptr_t self = write_begin(m);
    (void)self;
    if (m->keykind == MG_KEY_BYTES) {
        atomic_store(&m->iterators, 0); /* no iterator may outlive the map */
        walk_live(m, release_slot_key, NULL);
        dead_flush(m);
    }
    mg__table_unref(m, m->oldbuckets);
    mg__table_unref(m, m->buckets);
    retire_step(m, SIZE_MAX);
    if (m->name)
        mg__free(m, m->name, strlen(m->name) + 1);
    m->magic = MG_MAGIC_FREED;
    atomic_store_explicit(&m->writer, 0, memory_order_relaxed);
    mg_allocator a = m->alloc;
    a.free(a.ctx, m, sizeof *m);
}

int mg_put_u64(mg_map *m, uint64_t key, uint64_t val)
{
    if (MG_UNLIKELY(m == NULL))
        mg__fatal(MG_FATAL_NIL_MAP, NULL);
    MG_EV_ASSIGN(m, key);
    if (mg__header_bad(m, false)) {
        if (mg__is_mode(m))
            return mg__mode_put(m, false, &(mg_kref){.u = key}, val);
        mg__bad_header(m, MG_MAGIC_U64);
    }
    uint64_t hash = mg__hash_u64(key, m->seed, m->seed2);
    uintptr_t self = write_begin(m);
    int rc = assign(m, hash, key, NULL, 0, val, false);
    write_end(m, self);
    return rc < 0 ? rc : MG_OK;
}

MG_READ_TEXT bool mg_get_u64(mg_map *m, uint64_t key, uint64_t *val)
{
    if (MG_UNLIKELY(m == NULL))
        return false;
    MG_EV_ACCESS(m, key);
    if (mg__header_bad(m, false)) {
        if (mg__is_mode(m))
            return mg__mode_get(m, false, &(mg_kref){.u = key}, val);
        mg__bad_header(m, MG_MAGIC_U64);
    }
    read_check(m);
    const mg_slot *s = find(m, mg__hash_u64(key, m->seed, m->seed2), key, NULL, 0, false);
    if (!s)
        return false;
    if (val)
        *val = s->val;
    return true;
}

bool mg_del_u64(mg_map *m, uint64_t key)
{
    if (m == NULL)
        return false;
    if (mg__header_bad(m, false)) {
        if (mg__is_mode(m))
            return mg__mode_del(m, false, &(mg_kref){.u = key});
        mg__bad_header(m, MG_MAGIC_U64);
    }
    if (m->count == 0) /* Go: no check on an empty map */
        return false;
    uint64_t hash = mg__hash_u64(key, m->seed, m->seed2);
    uintptr_t self = write_begin(m);
    bool found = delete_key(m, hash, key, NULL, 0, false);
    write_end(m, self);
    return found;
}

/* Insert or update a byte key; the caller holds the writer claim.
 * Returns assign's result: 0 inserted, 1 updated, or MG_ENOMEM. */
static int put_bytes(mg_map *m, uint64_t hash, const void *key, size_t len, uint64_t val)
{
    /* Copy the key before changing anything, so an allocation failure
     * leaves the map as it was; skip the copy for an update. */
    mg_bkey *bk = NULL;
    if (!find(m, hash, 0, key, len, true)) {
        bk = mg__malloc(m, bkey_size(len));
        if (!bk)
            return MG_ENOMEM;
        bk->hash = hash;
        bk->len = len;
        bk->dead = NULL;
        if (len)
            memcpy(bk->data, key, len);
    }
    int rc = assign(m, hash, (uint64_t)(uintptr_t)bk, key, len, val, true);
    if (rc == 0)
        MG_PUB(m->keybytes, m->keybytes + bkey_size(len));
    else if (bk)
        mg__free(m, bk, bkey_size(len)); /* MG_ENOMEM, or found after all */
    return rc;
}

int mg_put(mg_map *m, const void *key, size_t len, uint64_t val)
{
    if (MG_UNLIKELY(m == NULL))
        mg__fatal(MG_FATAL_NIL_MAP, NULL);
    MG_EV_ASSIGN(m, 0);
    if (mg__header_bad(m, true)) {
        if (mg__is_mode(m))
            return mg__mode_put(m, true, &(mg_kref){.p = key, .len = len}, val);
        mg__bad_header(m, MG_MAGIC_BYTES);
    }
    if (len > MG_KEY_MAX)
        return MG_EKEYLEN;
    if (!key && len > 0)
        return MG_EINVAL;
    uint64_t hash = mg__hash_bytes(key, len, m->seed);
    uintptr_t self = write_begin(m);
    int rc = put_bytes(m, hash, key, len, val);
    write_end(m, self);
    return rc < 0 ? rc : MG_OK;
}

MG_READ_TEXT bool mg_get(mg_map *m, const void *key, size_t len, uint64_t *val)
{
    if (MG_UNLIKELY(m == NULL))
        return false;
    MG_EV_ACCESS(m, 0);
    if (mg__header_bad(m, true)) {
        if (mg__is_mode(m))
            return mg__mode_get(m, true, &(mg_kref){.p = key, .len = len}, val);
        mg__bad_header(m, MG_MAGIC_BYTES);
    }
    read_check(m);
    if (len > MG_KEY_MAX || (!key && len > 0))
        return false;
    const mg_slot *s = find(m, mg__hash_bytes(key, len, m->seed), 0, key, len, true);
    if (!s)
        return false;
    if (val)
        *val = s->val;
    return true;
}

bool mg_del(mg_map *m, const void *key, size_t len)
{
    if (m == NULL)
        return false;
    if (mg__header_bad(m, true)) {
        if (mg__is_mode(m))
            return mg__mode_del(m, true, &(mg_kref){.p = key, .len = len});
        mg__bad_header(m, MG_MAGIC_BYTES);
    }
    if (m->count == 0 || len > MG_KEY_MAX || (!key && len > 0))
        return false;
    uint64_t hash = mg__hash_bytes(key, len, m->seed);
    uintptr_t self = write_begin(m);
    bool found = delete_key(m, hash, 0, key, len, true);
    write_end(m, self);
    return found;
}

size_t mg_len(const mg_map *m)
{
    if (m && MG_UNLIKELY(mg__is_mode(m)))
        return mg__mode_len(m);
    return m ? m->count : 0;
}

/* ---------------------------------------------------------------------------
 * Read-modify-write (Go's sync.Map extras) on the engine
 * ------------------------------------------------------------------------ */

int mg__e_rmw(mg_map *m, int op, const mg_kref *k, uint64_t val, uint64_t old,
              uint64_t *out, bool *loaded)
{
    uintptr_t self = write_begin(m);
    int rc = mg__e_rmw_excl(m, op, k, val, old, out, loaded);
    write_end(m, self);
    return rc;
}

/* The engine calls of the concurrent modes, made while the mode's own lock
 * (or owner thread) already excludes every other access: no writer claim.
 * The claim is an atomic exchange on the header's line; skipping it keeps
 * an update from writing a line that MG_SHARDED's optimistic readers of
 * the same map read, and saves a full barrier per write. */
int mg__e_put_excl(mg_map *m, const mg_kref *k, uint64_t val)
{
    int rc;
    if (m->keykind == MG_KEY_BYTES)
        rc = put_bytes(m, mg__hash_bytes(k->p, k->len, m->seed), k->p, k->len, val);
    else
        rc = assign(m, mg__hash_u64(k->u, m->seed, m->seed2), k->u, NULL, 0, val, false);
    if (MG_UNLIKELY(m->retire != NULL))
        retire_step(m, MG_RETIRE_STEP);
    return rc < 0 ? rc : MG_OK;
}

bool mg__e_del_excl(mg_map *m, const mg_kref *k)
{
    if (m->count == 0)
        return false;
    bool bytes = m->keykind == MG_KEY_BYTES;
    uint64_t hash = bytes ? mg__hash_bytes(k->p, k->len, m->seed)
                          : mg__hash_u64(k->u, m->seed, m->seed2);
    bool found = delete_key(m, hash, k->u, k->p, k->len, bytes);
    if (MG_UNLIKELY(m->retire != NULL))
        retire_step(m, MG_RETIRE_STEP);
    return found;
}

int mg__e_rmw_excl(mg_map *m, int op, const mg_kref *k, uint64_t val, uint64_t old,
                   uint64_t *out, bool *loaded)
{
    bool bytes = m->keykind == MG_KEY_BYTES;
    uint64_t hash = bytes ? mg__hash_bytes(k->p, k->len, m->seed)
                          : mg__hash_u64(k->u, m->seed, m->seed2);
    mg_slot *s = find(m, hash, k->u, k->p, k->len, bytes);
    int rc = 0;
    *loaded = s != NULL;
    if (s)
        *out = s->val;
    switch (op) {
    case MG_RMW_GET_OR_PUT:
    case MG_RMW_SWAP:
        if (s) {
            /* An update in place cannot fail (assign could, reserving
             * memory for evacuation), and the slot is current. */
            if (op == MG_RMW_SWAP)
                s->val = val;
            break;
        }
        /* A new key: through assign, which does its share of evacuation. */
        rc = bytes ? put_bytes(m, hash, k->p, k->len, val)
                   : assign(m, hash, k->u, NULL, 0, val, false);
        rc = rc < 0 ? rc : MG_OK;
        if (rc == MG_OK && op == MG_RMW_GET_OR_PUT)
            *out = val;
        break;
    case MG_RMW_GET_AND_DEL:
        rc = s && delete_key(m, hash, k->u, k->p, k->len, bytes);
        break;
    case MG_RMW_CAS:
        if (s && s->val == old) {
            s->val = val;
            rc = 1;
        }
        break;
    case MG_RMW_CAD:
        rc = s && s->val == old && delete_key(m, hash, k->u, k->p, k->len, bytes);
        break;
    default:
        mg__internal_error("unknown read-modify-write op", __FILE__, __LINE__);
    }
    if (MG_UNLIKELY(m->retire != NULL))
        retire_step(m, MG_RETIRE_STEP);
    return rc;
}

/* Validate a public read-modify-write call and route it: engine or mode. */
static int rmw(mg_map *m, bool bytes, int op, const mg_kref *k, uint64_t val,
               uint64_t old, uint64_t *out, bool *loaded)
{
    uint64_t tmp;
    bool ld;
    if (!out)
        out = &tmp;
    if (!loaded)
        loaded = &ld;
    *loaded = false;
    bool writes_absent = op == MG_RMW_GET_OR_PUT || op == MG_RMW_SWAP;
    if (m == NULL) {
        if (writes_absent)
            mg__fatal(MG_FATAL_NIL_MAP, NULL);
        return 0; /* a NULL map is an empty map */
    }
    if (mg__header_bad(m, bytes)) {
        if (mg__is_mode(m))
            return mg__mode_rmw(m, bytes, op, k, val, old, out, loaded);
        mg__bad_header(m, mg__want_magic(bytes));
    }
    if (bytes && (k->len > MG_KEY_MAX || (!k->p && k->len > 0)))
        return !writes_absent ? 0 : k->len > MG_KEY_MAX ? MG_EKEYLEN : MG_EINVAL;
    return mg__e_rmw(m, op, k, val, old, out, loaded);
}

int mg_get_or_put_u64(mg_map *m, uint64_t key, uint64_t val, uint64_t *actual,
                      bool *loaded)
{
    return rmw(m, false, MG_RMW_GET_OR_PUT, &(mg_kref){.u = key}, val, 0, actual, loaded);
}
bool mg_get_and_del_u64(mg_map *m, uint64_t key, uint64_t *old)
{
    return rmw(m, false, MG_RMW_GET_AND_DEL, &(mg_kref){.u = key}, 0, 0, old, NULL) == 1;
}
int mg_swap_u64(mg_map *m, uint64_t key, uint64_t val, uint64_t *old, bool *loaded)
{
    return rmw(m, false, MG_RMW_SWAP, &(mg_kref){.u = key}, val, 0, old, loaded);
}
bool mg_cas_u64(mg_map *m, uint64_t key, uint64_t old, uint64_t val)
{
    return rmw(m, false, MG_RMW_CAS, &(mg_kref){.u = key}, val, old, NULL, NULL) == 1;
}
bool mg_cad_u64(mg_map *m, uint64_t key, uint64_t old)
{
    return rmw(m, false, MG_RMW_CAD, &(mg_kref){.u = key}, 0, old, NULL, NULL) == 1;
}
int mg_get_or_put(mg_map *m, const void *key, size_t len, uint64_t val,
                  uint64_t *actual, bool *loaded)
{
    return rmw(m, true, MG_RMW_GET_OR_PUT, &(mg_kref){.p = key, .len = len}, val, 0,
               actual, loaded);
}
bool mg_get_and_del(mg_map *m, const void *key, size_t len, uint64_t *old)
{
    return rmw(m, true, MG_RMW_GET_AND_DEL, &(mg_kref){.p = key, .len = len}, 0, 0, old,
               NULL) == 1;
}
int mg_swap(mg_map *m, const void *key, size_t len, uint64_t val, uint64_t *old,
            bool *loaded)
{
    return rmw(m, true, MG_RMW_SWAP, &(mg_kref){.p = key, .len = len}, val, 0, old, loaded);
}
bool mg_cas(mg_map *m, const void *key, size_t len, uint64_t old, uint64_t val)
{
    return rmw(m, true, MG_RMW_CAS, &(mg_kref){.p = key, .len = len}, val, old, NULL,
               NULL) == 1;
}
bool mg_cad(mg_map *m, const void *key, size_t len, uint64_t old)
{
    return rmw(m, true, MG_RMW_CAD, &(mg_kref){.p = key, .len = len}, 0, old, NULL,
               NULL) == 1;
}

int mg_batch(mg_map *m, mg_batch_fn fn, void *arg)
{
    if (!m || !fn)
        return MG_EINVAL;
    if (mg__is_mode(m))
        return mg__mode_batch(m, fn, arg);
    mg__check_header(m, m->magic == MG_MAGIC_BYTES);
    return fn(m, arg);
}

mg_mode mg_mode_of(const mg_map *m)
{
    if (m && mg__is_mode(m))
        return mg__mode_of(m);
    return MG_UNSYNC;
}

void mg_clear(mg_map *m)
{
    if (!m)
        return;
    if (mg__is_mode(m)) {
        mg__mode_clear(m);
        return;
    }
    mg__check_header(m, m->magic == MG_MAGIC_BYTES);
    uintptr_t self = write_begin(m);
    if (m->keykind == MG_KEY_BYTES) {
        walk_live(m, release_slot_key, NULL);
        if (atomic_load(&m->iterators) == 0)
            dead_flush(m);
    }
    reset_tables(m);
    MG_PUB(m->count, 0);
    mg__reseed(m);
    m->clearseq++;
    if (m->B > 0) /* like mg_new: the hint's buckets are there */
        MG_PUBLISH(m->buckets, table_new(m, m->B)); /* NULL is fine: allocated lazily */
    pub_tables(m);
    write_end(m, self);
}

/* Called by the iterator when the last one finishes. */
void mg__iterators_done(mg_map *m)
{
    /* Only the writer may touch the dead list; if none is writing now and no
     * iterator is live, free it.  (A new iterator or writer after this check
     * is the single-writer rule's business.) */
    if (m->dead && atomic_load(&m->iterators) == 0 &&
        atomic_load_explicit(&m->writer, memory_order_relaxed) == 0)
        dead_flush(m);
}

MG_READ_TEXT int mg_stats_get(const mg_map *m, mg_stats *out)
{
    if (!out)
        return MG_EINVAL;
    memset(out, 0, sizeof *out);
    if (!m)
        return MG_OK;
    if (mg__is_mode(m))
        return mg__mode_stats(m, out);
    mg__check_header(m, m->magic == MG_MAGIC_BYTES);
    read_check(m);
    out->count = m->count;
    out->B = m->B;
    out->buckets = (size_t)1 << m->B;
    out->load_factor = (double)m->count / (double)out->buckets;
    out->growing = m->oldbuckets != NULL;
    out->same_size_grow = m->grow == MG_GROW_SAME;
    out->shrinking = m->grow == MG_GROW_SHRINK;
    out->grows_total = m->grows_total;
    out->same_size_grows_total = m->same_size_grows_total;
    out->shrinks_total = m->shrinks_total;
    size_t bytes = sizeof *m + (m->name ? strlen(m->name) + 1 : 0) + m->keybytes;
    if (m->buckets) {
        out->overflow_buckets += m->buckets->noverflow;
        bytes += m->buckets->bytes;
    }
    if (m->oldbuckets) {
        out->overflow_buckets += m->oldbuckets->noverflow;
        out->old_buckets = m->oldbuckets->nbuckets;
        out->evacuated = m->grow == MG_GROW_SHRINK
                             ? m->nevacuate << (m->oldbuckets->B - m->B)
                             : m->nevacuate;
        bytes += m->oldbuckets->bytes;
    }
    out->bytes = bytes;
    return MG_OK;
}

/* A sample of an engine map that its writer may be changing right now:
 * only header fields, each loaded once with a relaxed load (see MG_PUB);
 * never a bucket array, which the writer may be freeing. */
void mg__eng_sample(const mg_map *m, mg_stats *out)
{
    memset(out, 0, sizeof *out);
    size_t count = MG_PUB_LOAD(((mg_map *)m)->count);
    unsigned B = MG_PUB_LOAD(((mg_map *)m)->B);
    unsigned grow = MG_PUB_LOAD(((mg_map *)m)->grow);
    unsigned oldB = MG_PUB_LOAD(((mg_map *)m)->oldB);
    size_t nevac = MG_PUB_LOAD(((mg_map *)m)->nevacuate);
    if (B > MG_MAX_B)
        B = MG_MAX_B;
    if (oldB > MG_MAX_B)
        oldB = MG_MAX_B;
    out->count = count;
    out->B = B;
    out->buckets = (size_t)1 << B;
    out->load_factor = (double)count / (double)out->buckets;
    out->growing = grow != MG_GROW_NONE;
    out->same_size_grow = grow == MG_GROW_SAME;
    out->shrinking = grow == MG_GROW_SHRINK;
    if (out->growing) {
        out->old_buckets = (size_t)1 << oldB;
        /* nevacuate counts groups of old buckets when shrinking */
        out->evacuated = grow == MG_GROW_SHRINK && oldB >= B ? nevac << (oldB - B) : nevac;
        if (out->evacuated > out->old_buckets)
            out->evacuated = out->old_buckets;
    }
    out->grows_total = MG_PUB_LOAD(((mg_map *)m)->grows_total);
    out->same_size_grows_total = MG_PUB_LOAD(((mg_map *)m)->same_size_grows_total);
    out->shrinks_total = MG_PUB_LOAD(((mg_map *)m)->shrinks_total);
    out->overflow_buckets = MG_PUB_LOAD(((mg_map *)m)->pub_noverflow);
    out->bytes = sizeof *m + (m->name ? strlen(m->name) + 1 : 0) +
                 MG_PUB_LOAD(((mg_map *)m)->keybytes) +
                 MG_PUB_LOAD(((mg_map *)m)->pub_tablebytes);
}

const char *mg_name(const mg_map *m)
{
    if (!m)
        return NULL;
    return m->name ? m->name : "";
}

mg_keykind mg_key_kind(const mg_map *m)
{
    return m && m->keykind == MG_KEY_BYTES ? MG_KEY_BYTES : MG_KEY_U64;
}
