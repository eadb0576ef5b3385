/*
 * internal.h - the engine's data structures, shared by the files in src/ only.
 *
 * The words used here (bucket, slot, tophash, overflow, evacuate,
 * oldbuckets) are defined in the design essay at the top of src/map.c.
 */
#ifndef MG_INTERNAL_H
#define MG_INTERNAL_H

#include "mapguard.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MG_LIKELY(x) __builtin_expect(!!(x), 1)
#define MG_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MG_NOINLINE __attribute__((noinline))
/* For the per-operation paths: left to itself gcc keeps find/assign/
 * delete_key out of line (several callers), and their register saves and
 * restores cost ~16 instructions per lookup (callgrind). */
#define MG_HOT_INLINE inline __attribute__((always_inline))

/* The engine's read paths (lookups, iteration steps, stats) are placed in
 * their own text section, so a fault there can be told apart from any
 * other: a read that overlaps a write may touch memory the writer just
 * freed, and guard.c's SIGSEGV/SIGBUS handler turns such a fault into the
 * "concurrent map read and map write" report instead of a bare crash.
 * The linker defines the bounds below; the hot path pays nothing. */
#define MG_READ_TEXT __attribute__((section("mapguard_read")))
extern const char __start_mapguard_read[] __attribute__((visibility("hidden")));
extern const char __stop_mapguard_read[] __attribute__((visibility("hidden")));

/* Cheap assertions: checked in debug builds, type-checked always. */
#ifdef MG_DEBUG
#define MG_ASSERT(x) ((x) ? (void)0 : mg__internal_error(#x, __FILE__, __LINE__))
#else
#define MG_ASSERT(x) ((void)sizeof(!(x)))
#endif

/* ---- bucket geometry (Go: bucketCntBits, bucketCnt, loadFactorNum/Den) -- */
#define MG_BUCKET_BITS 3
#define MG_BUCKET_CNT (1u << MG_BUCKET_BITS)
#define MG_LOAD_NUM 13
#define MG_LOAD_DEN 2
/* Shrink when count <= loadmax(B) / MG_SHRINK_DIV, to the smallest B' with
 * count <= loadmax(B') / MG_SHRINK_ROOM (see the essay, S1-S3). */
#define MG_SHRINK_DIV 16
#define MG_SHRINK_ROOM 4
/* Never shrink to fewer than 2^MG_SHRINK_MIN_B buckets (nor below the hint). */
#define MG_SHRINK_MIN_B 4
/* Largest B we accept; anything above is a corrupted header. */
#define MG_MAX_B 58

/* ---- tophash values (Go: map.go emptyRest .. minTopHash) ---------------- */
enum {
    MG_EMPTY_REST = 0,  /* empty, and nothing at higher slots or overflows */
    MG_EMPTY_ONE = 1,   /* empty */
    MG_EVAC_X = 2,      /* entry evacuated to the first half (or same index) */
    MG_EVAC_Y = 3,      /* entry evacuated to the second half */
    MG_EVAC_EMPTY = 4,  /* empty slot of an evacuated bucket */
    MG_MIN_TOPHASH = 5  /* smallest tophash of a live entry */
};

/* A slot: key and value side by side, so a hit touches one cache line.
 * For MG_KEY_BYTES maps key holds an mg_bkey pointer. */
typedef struct {
    uint64_t key;
    uint64_t val;
} mg_slot;

typedef struct mg_ovf mg_ovf;

/* A bucket's control word: its 8 tophash bytes (byte j = slot j, little
 * endian) and its overflow link, side by side so that a lookup that must
 * follow the chain finds the link in the cache line it already has. */
typedef struct {
    uint64_t tophash;
    mg_ovf *overflow;
} mg_ctrl;

/* An overflow bucket: tophash word, link and slots together (they are rare).
 * The buckets of a bucket array keep their control words (mg_ctrl) in one
 * dense array and their slots in another. */
struct mg_ovf {
    uint64_t tophash; /* byte i = tophash of slot i (little endian) */
    mg_ovf *overflow;
    mg_slot slots[MG_BUCKET_CNT];
};

/* A stored byte key.  hash is the full hash under the map's seed, kept so
 * evacuation and comparison never rehash.  dead links keys deleted while an
 * iterator may still read them (freed when the last iterator ends); it is
 * part of every key so that a delete never needs to allocate. */
typedef struct mg_bkey {
    uint64_t hash;
    size_t len;
    struct mg_bkey *dead;
    unsigned char data[];
} mg_bkey;

/* A chunk of overflow buckets, handed out one by one (Go: extra.nextOverflow). */
typedef struct mg_chunk {
    struct mg_chunk *next;
    size_t bytes;
    size_t pad_[2]; /* keeps b[] 16-byte aligned: no slot straddles a cache line */
    mg_ovf b[];
} mg_chunk;

/* A bucket array ("table") with its overflow buckets.  Reference counted:
 * the map holds one reference for buckets/oldbuckets, each live iterator
 * one for the array it walks. */
typedef struct mg_table {
    mg_ctrl *ctrl;      /* nbuckets control words: tophash word + overflow link */
    mg_slot *slots;     /* nbuckets * MG_BUCKET_CNT slots, 64-byte aligned */
    void *slots_raw; /* as allocated */
    size_t mask;     /* nbuckets - 1 */
    size_t grow_at;  /* an insert at this count checks for growth */
    size_t shrink_at; /* a delete to this count checks for a shrink (0: never) */
    size_t nbuckets;
    unsigned B;
    size_t noverflow;  /* overflow buckets in use (Go: hmap.noverflow) */
    mg_chunk *chunks;  /* every chunk this table allocated */
    mg_ovf *pool;      /* next free overflow bucket of the newest chunk */
    size_t pool_n;     /* how many are in pool */
    size_t bytes;      /* memory held by this table */
    atomic_int refs;
} mg_table;

/* Growth kinds (Go: sameSizeGrow flag; shrinking is ours). */
enum { MG_GROW_NONE = 0, MG_GROW_DOUBLE, MG_GROW_SAME, MG_GROW_SHRINK };

/* Header magic: one value per key kind, so a single compare on the hot path
 * catches a freed map, a corrupted header and the wrong key kind. */
#define MG_MAGIC_U64 0x4d47553634u   /* "MGU64" */
#define MG_MAGIC_BYTES 0x4d47425954u /* "MGBYT" */
#define MG_MAGIC_FREED 0x46524545u   /* "FREE" */
/* A map of a concurrent mode (src/modes/): its header is a struct mg_map
 * whose magic says so; the calls dispatch to the mode on the slow path of
 * the header check, so MG_UNSYNC pays nothing for the modes. */
#define MG_MAGIC_MODE 0x4d474d4f44u /* "MGMOD" */


struct mg_map {
    /* Hot: read by every operation, one cache line. */
    uint64_t seed;          /* 0: Go's hash0 */
    uint64_t seed2;         /* 8: second secret of the u64 hash, odd */
    uint64_t magic;         /* 16: past glibc's tcache words, so "freed" survives free() */
    size_t count;           /* 24 */
    mg_table *buckets;      /* 32 */
    mg_table *oldbuckets;   /* 40: non-NULL while evacuating */
    _Atomic uintptr_t writer; /* 48: token of the writing thread, 0 when none */
    uint8_t B;              /* 56: == buckets->B (0 before the first insert) */
    uint8_t grow;           /* MG_GROW_* while oldbuckets != NULL */
    uint8_t keykind;
    uint8_t hintB;          /* B asked for by the hint: the shrink floor */
    uint8_t oldB;           /* B of oldbuckets while growing (for samples) */
    uint8_t pad8_;
    uint16_t pad16_;
    size_t nevacuate;       /* 64: old buckets (groups when shrinking) below are done */
    /* Cold. */
    atomic_uint iterators;  /* live iterators (Go: iterator|oldIterator flags) */
    uint64_t clearseq;      /* bumped by mg_clear: iterators stop */
    mg_bkey *dead;          /* byte keys deleted while iterators were live */
    struct mg_retired *retire; /* big blocks being unmapped piece by piece */
    size_t keybytes;        /* bytes held by byte keys */
    uint64_t grows_total, same_size_grows_total, shrinks_total;
    /* Published for samples (see MG_PUB): overflow buckets and bytes of the
     * bucket arrays (buckets + oldbuckets), kept by mg__pub_tables. */
    size_t pub_noverflow, pub_tablebytes;
    mg_allocator alloc;
    bool custom_alloc;
    char *name;
    /* The name events and probes carry: the map's own name, or, for an
     * engine map a mode keeps inside, the mode map's (not owned). */
    const char *label;
};

/* Fields a metrics sample reads while the map's writer runs (count, B,
 * grow, oldB, nevacuate, the *_total counters, keybytes, pub_*) are stored
 * by the writer with relaxed atomic stores and loaded by the sampler with
 * relaxed loads (mg__eng_sample): on x86-64 and arm64 the store is a plain
 * mov, and no line a reader uses is written.  The writer's own reads of
 * them stay plain (nobody else writes them). */
/* Relaxed in every build, MG_NO_OBSERVE included: the registry and
 * mg_metrics_render are there too, and a scrape must never race a writer. */
#define MG_PUB(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)
#define MG_PUB_LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* ---- memory ------------------------------------------------------------ */
extern const mg_allocator mg__sys_alloc; /* the C library's (large blocks: mmap) */
void *mg__malloc(const mg_map *m, size_t size);
void *mg__calloc(const mg_map *m, size_t size);
void mg__free(const mg_map *m, void *p, size_t size);

/* ---- hashing (hash.c / hash.h) ------------------------------------------ */
uint64_t mg__random_seed(void);
/* Draw fresh secrets for m (Go: h.hash0 = fastrand()). */
static inline void mg__reseed(mg_map *m)
{
    m->seed = mg__random_seed();
    m->seed2 = mg__random_seed() | 1;
}
uint64_t mg__fastrand(void);

/* ---- tables (map.c) ------------------------------------------------------- */
void mg__table_unref(mg_map *m, mg_table *t);
void mg__iterators_done(mg_map *m);
bool mg__lookup_slot(mg_map *m, uint64_t hash, uint64_t key, const void *kb,
                     size_t klen, mg_slot **out);

/* A mode map's metrics sample (modes/mode.c; obs/obs.h). */
struct mg_metric_sample;
void mg__mode_sample(const mg_map *m, struct mg_metric_sample *s);
/* Stats of an engine map from any thread, while it is in use (map.c). */
void mg__eng_sample(const mg_map *m, mg_stats *out);

/* Lookup racing a writer; see map.c.  1 found, 0 absent, -1 retry locked. */
int mg__find_optimistic(const mg_map *m, uint64_t key, const void *kb, size_t klen,
                        uint64_t *val);

/* ---- guards (guard.c) ------------------------------------------------------ */
/* A thread's identity for the writer word: the address of its record, which
 * also holds its kernel thread id for reports.  initial-exec TLS keeps the
 * access to one instruction, shared library included. */
typedef struct {
    long tid;
} mg_thread_rec;
extern _Thread_local mg_thread_rec mg__self_rec __attribute__((tls_model("initial-exec")));
void mg__thread_init(void);
static inline uintptr_t mg__self_token(void)
{
    if (MG_UNLIKELY(mg__self_rec.tid == 0))
        mg__thread_init();
    return (uintptr_t)&mg__self_rec;
}
long mg__token_tid(uintptr_t token);
_Noreturn void mg__fatal(mg_fatal_kind kind, const mg_map *m);
/* The same, naming the thread whose token `other` is as the map's writer. */
_Noreturn void mg__fatal_writer(mg_fatal_kind kind, const mg_map *m, uintptr_t other);
_Noreturn void mg__internal_error(const char *what, const char *file, int line);
/* Check a header that failed the fast magic test and report why. */
_Noreturn void mg__bad_header(const mg_map *m, uint64_t want_magic);
/* Put guard.c's SIGSEGV/SIGBUS handler in front of the current one (once
 * per process; called by mg_new): a fault inside the read paths becomes
 * the "concurrent map read and map write" report. */
void mg__crash_handler_install(void);

/* ---- debug (map_debug.c) -------------------------------------------------- */
/* Check every invariant of the essay; 0 when all hold, else -1 with a
 * description in err. */
int mg__validate(const mg_map *m, char *err, size_t errlen);
/* Print the table (for test failures). */
void mg__dump(const mg_map *m, void *file);

/* ---- tophash word helpers ----------------------------------------------- */
#define MG_LSB 0x0101010101010101ull
#define MG_MSB 0x8080808080808080ull
#define MG_LOW7 0x7f7f7f7f7f7f7f7full

/* High bit of each byte of w that is exactly zero (no false positives). */
static inline uint64_t mg__zero_bytes(uint64_t w)
{
    uint64_t t = (w & MG_LOW7) + MG_LOW7;
    return ~(t | w | MG_LOW7);
}
/* Non-zero iff some byte of w is zero (which bytes it flags is not exact,
 * only whether any is: cheaper than mg__zero_bytes for that question). */
static inline uint64_t mg__has_zero(uint64_t w)
{
    return (w - MG_LSB) & ~w & MG_MSB;
}
/* Slots whose tophash equals top. */
static inline uint64_t mg__match(uint64_t w, uint8_t top)
{
    return mg__zero_bytes(w ^ (MG_LSB * top));
}
/* Slots that are empty (emptyRest or emptyOne). */
static inline uint64_t mg__match_empty(uint64_t w)
{
    return mg__zero_bytes(w & (MG_LSB * 0xfe));
}
static inline unsigned mg__first_slot(uint64_t mask)
{
    return (unsigned)__builtin_ctzll(mask) >> 3;
}
static inline uint8_t mg__th_get(uint64_t w, unsigned i)
{
    return (uint8_t)(w >> (8 * i));
}
static inline uint64_t mg__th_set(uint64_t w, unsigned i, uint8_t v)
{
    return (w & ~(0xffull << (8 * i))) | ((uint64_t)v << (8 * i));
}
static inline bool mg__is_empty(uint8_t th)
{
    return th <= MG_EMPTY_ONE;
}
/* Go: evacuated(b), judged by the first slot of the first bucket. */
static inline bool mg__evacuated(uint64_t tophash_word)
{
    uint8_t h = (uint8_t)tophash_word;
    return h > MG_EMPTY_ONE && h < MG_MIN_TOPHASH;
}
static inline uint8_t mg__tophash(uint64_t hash)
{
    uint8_t top = (uint8_t)(hash >> 56);
    return top < MG_MIN_TOPHASH ? (uint8_t)(top + MG_MIN_TOPHASH) : top;
}
static inline size_t mg__bucket_mask(unsigned B)
{
    return ((size_t)1 << B) - 1;
}
/* Go: overLoadFactor (hint -> B; tables precompute it as grow_at). */
static inline bool mg__over_load(size_t count, unsigned B)
{
    return count > MG_BUCKET_CNT &&
           count > (size_t)MG_LOAD_NUM * (((size_t)1 << B) / MG_LOAD_DEN);
}
/* Go: tooManyOverflowBuckets, "about as many overflow buckets as buckets".
 * Go counts noverflow exactly while B < 16 and for larger B samples it with
 * probability 2^-(B-15) against a threshold of 2^15, which expects 2^B real
 * overflow buckets.  We count exactly, so the threshold is 2^B for every B. */
static inline bool mg__too_many_overflow(size_t noverflow, unsigned B)
{
    return noverflow >= ((size_t)1 << B);
}

/* ---- checks and hashes shared by map.c and map_iter.c ------------------ */
#include "hash.h"

static inline uint64_t mg__want_magic(bool bytes)
{
    return bytes ? MG_MAGIC_BYTES : MG_MAGIC_U64;
}

/* Bad magic (freed, corrupted or the other key kind), impossible B, or a
 * count with its top bit set (a negative count): report, never follow. */
static inline __attribute__((always_inline)) void mg__check_header(const mg_map *m,
                                                                  bool bytes)
{
    if (MG_UNLIKELY(m->magic != mg__want_magic(bytes) || m->B > MG_MAX_B ||
                    m->count > SIZE_MAX / 2))
        mg__bad_header(m, mg__want_magic(bytes));
}

/* The header check's fast test alone: true when the slow path must run
 * (a mode map, or one of the faults mg__check_header reports). */
static inline __attribute__((always_inline)) bool mg__header_bad(const mg_map *m, bool bytes)
{
    return MG_UNLIKELY(m->magic != mg__want_magic(bytes) || m->B > MG_MAX_B ||
                       m->count > SIZE_MAX / 2);
}
static inline bool mg__is_mode(const mg_map *m)
{
    return m->magic == MG_MAGIC_MODE;
}

/* ---- the concurrent modes (src/modes/mode.c) -------------------------- */
/* A key as the mode layer passes it around: u64, or bytes (p, len). */
typedef struct {
    uint64_t u;
    const void *p;
    size_t len;
} mg_kref;
enum { MG_RMW_GET_OR_PUT, MG_RMW_GET_AND_DEL, MG_RMW_SWAP, MG_RMW_CAS, MG_RMW_CAD };
/* The read-modify-write calls on an engine map (MG_UNSYNC), one writer
 * claim each.  get_or_put/swap return a status, the others 1 or 0;
 * *out gets the value loaded (or stored by get_or_put), *loaded whether
 * the key was present. */
int mg__e_rmw(mg_map *m, int op, const mg_kref *k, uint64_t val, uint64_t old,
              uint64_t *out, bool *loaded);
/* The same, and put and delete, without the writer claim: for the modes,
 * whose own lock (or owner thread) already excludes every other access. */
int mg__e_rmw_excl(mg_map *m, int op, const mg_kref *k, uint64_t val, uint64_t old,
                   uint64_t *out, bool *loaded);
int mg__e_put_excl(mg_map *m, const mg_kref *k, uint64_t val);
bool mg__e_del_excl(mg_map *m, const mg_kref *k);
mg_map *mg__mode_new(const mg_options *o);
/* Each takes a mode map (mg__is_mode(m)); `bytes` is the key kind the
 * call was made for (a mismatch is the wrong-key-kind fatal). */
void mg__mode_free(mg_map *m);
int mg__mode_put(mg_map *m, bool bytes, const mg_kref *k, uint64_t val);
bool mg__mode_get(mg_map *m, bool bytes, const mg_kref *k, uint64_t *val);
bool mg__mode_del(mg_map *m, bool bytes, const mg_kref *k);
int mg__mode_rmw(mg_map *m, bool bytes, int op, const mg_kref *k, uint64_t val,
                 uint64_t old, uint64_t *out, bool *loaded);
size_t mg__mode_len(const mg_map *m);
void mg__mode_clear(mg_map *m);
/* A mode's own mg_range (MG_ACTOR's runs on the owner): true and *rc if
 * the mode has one; false: mg_range walks the mode's iterator. */
bool mg__mode_range(mg_map *m, int (*fn)(const void *, size_t, uint64_t, void *),
                    void *arg, int *rc);
void mg__mode_iter_init(mg_iter *it, mg_map *m);
int mg__mode_stats(const mg_map *m, mg_stats *out);
int mg__mode_batch(mg_map *m, mg_batch_fn fn, void *arg);
mg_mode mg__mode_of(const mg_map *m);
/* A mode iterator keeps an engine iterator in the first 15 words of its
 * mg_iter and this tag in the last (src/modes/modes.h, mg_miter). */
#define MG_MITER_TAG 0x4d474d4954455221ull /* "MGMITER!" */
/* The engine's iterator on the first words of an mg_iter (map_iter.c). */
void mg__eng_iter_init(mg_iter *it, mg_map *m);
bool mg__eng_iter_next(mg_iter *it, const void **key, size_t *len, uint64_t *val);
void mg__eng_iter_done(mg_iter *it);

/* The hash of a stored key under the map's secrets (byte keys keep it). */
static inline uint64_t mg__stored_hash(const mg_map *m, uint64_t stored)
{
    if (m->keykind == MG_KEY_BYTES)
        return ((const mg_bkey *)(uintptr_t)stored)->hash;
    return mg__hash_u64(stored, m->seed, m->seed2);
}

#endif
