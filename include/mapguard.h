/*
 * mapguard.h - Go's runtime map for C: fast, incremental, and loud on misuse.
 *
 * This is the one public header of libmapguard.  Everything here is stable
 * API; everything else (src/) is internal.
 *
 * Conventions used in the contracts below:
 *   Returns:       what the call gives back.
 *   Thread safety: what the caller must guarantee.  In MG_UNSYNC mode a map
 *                  follows Go's rule: any number of concurrent readers, or one
 *                  writer and nobody else.  Breaking it is misuse.
 *   Fatal:         misuse that prints a report to stderr and calls abort().
 *                  As in Go, a race that never overlaps in time is not seen
 *                  (use TSan for that).  Two writes that overlap are always
 *                  caught (the writer is claimed with an atomic exchange);
 *                  a read overlapping a write is caught on a best-effort
 *                  check, like Go's.
 *
 * Copyright (c) the mapguard authors.  MIT licensed.
 */
#ifndef MAPGUARD_H
#define MAPGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(MG_STATIC_BUILD)
#define MG_API __attribute__((visibility("default")))
#else
#define MG_API
#endif

#define MG_VERSION_MAJOR 0
#define MG_VERSION_MINOR 1
#define MG_VERSION_PATCH 0
#define MG_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------ */
/* Status codes: one table, one source of truth (enum, names, messages).    */
/* ------------------------------------------------------------------------ */

/* XX(name, value, message) */
#define MG_STATUS_MAP(XX)                                                     \
    XX(MG_OK, 0, "success")                                                   \
    XX(MG_ENOMEM, -1, "out of memory; the map is unchanged")                  \
    XX(MG_EINVAL, -2, "invalid argument")                                     \
    XX(MG_ENOTSUP, -3, "operation not supported by this map's mode")          \
    XX(MG_EKEYLEN, -4, "key too long (more than MG_KEY_MAX bytes)")           \
    XX(MG_ENOENT, -5, "no such key")                                          \
    XX(MG_EOVERFLOW, -6, "size would overflow")                               \
    XX(MG_EIO, -7, "input/output error (see errno)")                          \
    XX(MG_EBUSY, -8, "already running")

typedef enum {
#define MG__STATUS_ENUM(name, value, msg) name = (value),
    MG_STATUS_MAP(MG__STATUS_ENUM)
#undef MG__STATUS_ENUM
} mg_status;

/* Returns: a static, human-readable message for a status code ("unknown
 * status" for anything else).  Thread safety: any thread. */
MG_API const char *mg_strerror(int status);
/* Returns: the enumerator's name ("MG_ENOMEM"), or NULL if unknown. */
MG_API const char *mg_status_name(int status);

/* The longest byte key a map accepts. */
#define MG_KEY_MAX ((size_t)1 << 30)

/* ------------------------------------------------------------------------ */
/* Maps                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct mg_map mg_map; /* opaque */

typedef enum {
    MG_UNSYNC,     /* Go's map: one writer xor many readers, misuse is fatal */
    MG_RWLOCK,     /* the engine behind one reader-writer lock */
    MG_SHARDED,    /* the engine split by hash into shards, a lock each */
    MG_READMOSTLY, /* Go's sync.Map algorithm: lock-free loads of stable keys */
    MG_SNAPSHOT,   /* copy-on-write snapshots: readers never block or retry */
    MG_ACTOR       /* one owner thread; callers send requests on a channel */
} mg_mode;
/* The concurrent modes (docs/modes.md compares them, with measurements).
 *
 * Thread safety: every mode but MG_UNSYNC accepts any call from any number
 *   of threads, with no misuse fatal; only mg_free must not overlap or
 *   precede another call on the map.  The "Thread safety" lines of the
 *   calls below describe MG_UNSYNC.  (NULL maps, freed maps, corrupted
 *   headers and the wrong key kind stay fatal in every mode.)
 * Ordering: in the concurrent modes each single-key call (get, put, del and
 *   the read-modify-write calls) is linearizable, and a write synchronizes
 *   with every read that observes it (acquire/release: data written before
 *   a put is visible to a thread whose get returns that value).
 * What the rest means, per mode:
 *             mg_len, mg_stats_get      mg_range / iterators      progress
 *   RWLOCK    exact, under the lock     Go's range (*)            blocking
 *   SHARDED   sum of per-shard counts   (*), shard by shard       reads
 *                                                                 lock-free
 *                                                                 (**)
 *   READMOSTLY may be stale             sync.Map's Range (***),   loads of
 *                                       after promoting dirty     stable keys
 *                                                                 lock-free
 *   SNAPSHOT  exact for one snapshot    exactly one snapshot      reads
 *                                                                 wait-free
 *   ACTOR     exact                     range: atomic, fn runs    blocking
 *                                       on the owner thread;
 *                                       iterators: (*)
 *   (*) Go's guarantees for a map changed during a range (see mg_range),
 *       with other threads' writes landing between two steps: no entry
 *       twice; a key present and never deleted is produced once, with a
 *       value it held during the walk.  A key another thread deletes and
 *       puts back is a new entry and may be produced again.
 *   (**) a read retries while a write to its shard runs, then locks.
 *   (***) no key twice; a key present and unchanged for the whole walk is
 *       produced; a value produced is one the key held during the walk.
 *   In every mode fn may call anything on the map (no lock is held while
 *   it runs; in ACTOR's range it runs on the owner thread).  A byte key
 *   produced by an iterator stays valid until mg_iter_done.
 * mg_free of a concurrent map waits for its owner thread (ACTOR) and for
 * RCU grace periods (READMOSTLY, SNAPSHOT, SHARDED): no thread is left
 * and nothing leaks. */

/* Returns: the mode's name ("sharded"), or NULL for a value out of range. */
MG_API const char *mg_mode_name(mg_mode mode);

typedef enum {
    MG_KEY_U64,  /* keys are uint64_t, used with the *_u64 calls */
    MG_KEY_BYTES /* keys are byte strings (copied), used with mg_put/get/del */
} mg_keykind;

/* A custom allocator.  All three functions are required.
 *   malloc(ctx, size):  like malloc(3); NULL on failure.
 *   calloc(ctx, size):  zeroed memory; NULL on failure.  Large bucket arrays
 *                       come from here, so an allocator that gets zero pages
 *                       lazily (mmap, glibc calloc) keeps growth free of any
 *                       up-front pass over the new memory.
 *   free(ctx, p, size): releases p, which had the given size.
 * A failing allocator never corrupts a map: the call that needed memory
 * returns MG_ENOMEM and the map is exactly as it was. */
typedef struct mg_allocator {
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t size);
    void (*free)(void *ctx, void *p, size_t size);
    void *ctx;
} mg_allocator;

typedef struct {
    mg_mode mode;    /* default MG_UNSYNC */
    mg_keykind key;  /* default MG_KEY_U64 */
    size_t hint;     /* expected entries, like make(map[K]V, hint); 0 = none */
    const char *name; /* shown in reports, metrics and probes; may be NULL;
                         copied */
    const mg_allocator *alloc; /* NULL: the C library's allocator; the
                                  struct is copied */
    unsigned shards; /* MG_SHARDED: shard count, rounded up to a power of
                        two (max 65536); 0 = 64 per online CPU */
    unsigned queue;  /* MG_ACTOR: channel capacity in requests (max 2^20);
                        0 = 256 */
} mg_options;

/* Create a map.
 * Returns: the map, or NULL with errno set: EINVAL (bad options: an unknown
 *   mode or key kind, an incomplete allocator), ENOMEM, or EAGAIN (MG_ACTOR
 *   could not start its thread).
 * Thread safety: any thread.
 * A zeroed mg_options (or opt == NULL) gives an unsync uint64_t map.  hint
 * picks the same B as Go's make(map, hint); an absurd hint is treated as 0,
 * as in Go.  Each map draws a fresh random hash seed (getrandom). */
MG_API mg_map *mg_new(const mg_options *opt);

/* Free a map and everything it holds.  NULL is a no-op.
 * Thread safety: no other call on m may be running or follow.
 * Fatal: a map already freed or a corrupted header ("use of freed map",
 *   "corrupted map header"), while a write runs ("concurrent map writes"). */
MG_API void mg_free(mg_map *m);

/* Insert or update key -> val.
 * Returns: MG_OK; MG_ENOMEM (the map is unchanged).
 * Thread safety: no other call on m may overlap (Go's single writer rule).
 * Fatal: m == NULL ("assignment to entry in nil map"); an overlapping write
 *   ("concurrent map writes"); a byte-key map ("wrong key kind");
 *   a freed or corrupted map. */
MG_API int mg_put_u64(mg_map *m, uint64_t key, uint64_t val);

/* Look up key.
 * Returns: true and *val (if val != NULL) when present; false otherwise.
 *   A NULL map behaves as an empty map.
 * Thread safety: concurrent with other readers; not with a writer.
 * Fatal: an overlapping write ("concurrent map read and map write"); a
 *   byte-key map; a freed or corrupted map. */
MG_API bool mg_get_u64(mg_map *m, uint64_t key, uint64_t *val);

/* Delete key.
 * Returns: true if it was present.  A NULL map is an empty map.
 * Thread safety and Fatal: as mg_put_u64 (but NULL is not fatal). */
MG_API bool mg_del_u64(mg_map *m, uint64_t key);

/* Byte-key variants: the key (len bytes, 0 allowed, at most MG_KEY_MAX) is
 * copied into the map.  Same contracts as the u64 calls; mg_put can also
 * return MG_EKEYLEN or MG_EINVAL (key == NULL with len > 0).
 * Fatal: using them on a MG_KEY_U64 map ("wrong key kind"). */
MG_API int mg_put(mg_map *m, const void *key, size_t len, uint64_t val);
MG_API bool mg_get(mg_map *m, const void *key, size_t len, uint64_t *val);
MG_API bool mg_del(mg_map *m, const void *key, size_t len);

/* Returns: the number of entries (0 for NULL).  Like Go's len(m), this reads
 * the count without any check. Thread safety: any, the answer may be stale. */
MG_API size_t mg_len(const mg_map *m);

/* Remove every entry, re-randomise the seed and return the bucket array to
 * the size the hint asked for.  Iterators open on m end at their next step.
 * NULL is a no-op.  Thread safety and Fatal: as mg_put_u64. */
MG_API void mg_clear(mg_map *m);

/* Call fn for every entry, in Go's randomised order.  For u64 maps key
 * points at the uint64_t.  fn returns non-zero to stop; mg_range returns that
 * value (0 if it ran to the end).  fn may put, update and delete on m from
 * this thread, with Go's guarantees: no entry is produced twice, an entry
 * deleted before it is reached is not produced, every key present at the
 * start and never deleted is produced exactly once, the value produced is
 * current; entries inserted during the range may or may not be produced
 * (so a key deleted and put back is a new entry: it may be produced again).
 * Thread safety: concurrent with other readers; not with a writer.
 * Fatal: a write by another thread during the range ("concurrent map
 *   iteration and map write"). */
MG_API int mg_range(mg_map *m,
                    int (*fn)(const void *key, size_t len, uint64_t val,
                              void *arg),
                    void *arg);

/* ------------------------------------------------------------------------ */
/* Iterators: for-style loops with the same guarantees as mg_range.         */
/*                                                                          */
/*     mg_iter it;                                                          */
/*     const void *k; size_t klen; uint64_t v;                              */
/*     for (mg_iter_init(&it, m); mg_iter_next(&it, &k, &klen, &v);) {...}  */
/*     mg_iter_done(&it);                                                   */
/*                                                                          */
/* mg_iter_done must be called (even after next returned false): an         */
/* iterator keeps the bucket array it walks alive across growth.            */
/* ------------------------------------------------------------------------ */
typedef struct mg_iter {
    uint64_t opaque_[20]; /* storage only: do not touch */
} mg_iter;

/* Start iterating m (NULL: an empty iteration).  Thread safety: as mg_range. */
MG_API void mg_iter_init(mg_iter *it, mg_map *m);
/* Returns: true and the next entry; false at the end.  *key stays valid
 * until the next call on this iterator (a u64 key points into the iterator)
 * or the next write to the map, whichever comes first.  Any out pointer may
 * be NULL.  Fatal: as mg_range. */
MG_API bool mg_iter_next(mg_iter *it, const void **key, size_t *len,
                         uint64_t *val);
/* Release the iterator.  Idempotent. */
MG_API void mg_iter_done(mg_iter *it);

/* ------------------------------------------------------------------------ */
/* Atomic read-modify-write: Go's sync.Map extras, in every mode.           */
/*                                                                          */
/* Each call is one atomic step in the concurrent modes (Ordering: it is    */
/* linearizable; a write synchronizes with every later read that sees it,   */
/* as Go's memory model says of sync.Map).  In MG_UNSYNC they are plain     */
/* writes (claim the map, Fatal as mg_put_u64), except that a call that    */
/* only reads (a failed CAS, a hit of get-or-put) still claims the map.    */
/* The byte-key forms take (key, len) and have the byte-key contracts.      */
/* ------------------------------------------------------------------------ */

/* LoadOrStore: if key is present, *actual = its value and *loaded = true;
 * otherwise store val, *actual = val, *loaded = false.  actual and loaded
 * may be NULL.  Returns: MG_OK, MG_ENOMEM (nothing stored). */
MG_API int mg_get_or_put_u64(mg_map *m, uint64_t key, uint64_t val,
                             uint64_t *actual, bool *loaded);
/* LoadAndDelete: delete key, giving its value in *old.
 * Returns: true if it was present.  NULL map: false. */
MG_API bool mg_get_and_del_u64(mg_map *m, uint64_t key, uint64_t *old);
/* Swap: store val, giving the previous value in *old and *loaded = true, or
 * *loaded = false for a new key.  Returns: MG_OK, MG_ENOMEM (unchanged). */
MG_API int mg_swap_u64(mg_map *m, uint64_t key, uint64_t val, uint64_t *old,
                       bool *loaded);
/* CompareAndSwap: if key is present with value old, store val.
 * Returns: true if swapped.  An absent key is never inserted (Go 1.20). */
MG_API bool mg_cas_u64(mg_map *m, uint64_t key, uint64_t old, uint64_t val);
/* CompareAndDelete: if key is present with value old, delete it.
 * Returns: true if deleted. */
MG_API bool mg_cad_u64(mg_map *m, uint64_t key, uint64_t old);

MG_API int mg_get_or_put(mg_map *m, const void *key, size_t len, uint64_t val,
                         uint64_t *actual, bool *loaded);
MG_API bool mg_get_and_del(mg_map *m, const void *key, size_t len, uint64_t *old);
MG_API int mg_swap(mg_map *m, const void *key, size_t len, uint64_t val,
                   uint64_t *old, bool *loaded);
MG_API bool mg_cas(mg_map *m, const void *key, size_t len, uint64_t old,
                   uint64_t val);
MG_API bool mg_cad(mg_map *m, const void *key, size_t len, uint64_t old);

/* Run fn(m, arg) as one atomic step: no other call on m (from another
 * thread) is seen in the middle of it, and fn may call any function on m
 * (reads see fn's own writes).  How, per mode:
 *   MG_UNSYNC    fn runs here; the caller owns the map anyway.
 *   MG_RWLOCK    fn runs under the write lock.
 *   MG_SHARDED   fn runs holding every shard's lock (in order).
 *   MG_SNAPSHOT  fn's writes build one new snapshot, published when fn
 *                returns: readers see all of them or none.  The batch
 *                operation: N writes cost one publish.
 *   MG_ACTOR     fn runs on the owner thread, between two requests.
 *   MG_READMOSTLY is not supported (MG_ENOTSUP): sync.Map's lock-free
 *                stores cannot be held off; use the CAS calls above.
 * fn must not block on another thread that uses m, and must not call
 * mg_free(m); an mg_batch(m) inside fn just calls its function.
 * Returns: fn's return value; MG_EINVAL (fn == NULL or m == NULL),
 *   MG_ENOTSUP (MG_READMOSTLY). */
typedef int (*mg_batch_fn)(mg_map *m, void *arg);
MG_API int mg_batch(mg_map *m, mg_batch_fn fn, void *arg);

/* ------------------------------------------------------------------------ */
/* Stats                                                                    */
/* ------------------------------------------------------------------------ */
typedef struct {
    size_t count, buckets, overflow_buckets;
    unsigned B;         /* log2 of the bucket count, as Go's hmap.B */
    double load_factor; /* count / buckets */
    bool growing, same_size_grow;
    size_t evacuated, old_buckets;
    uint64_t grows_total, same_size_grows_total;
    size_t bytes;          /* memory held by the map */
    bool shrinking;        /* an incremental shrink is in progress */
    uint64_t shrinks_total; /* shrinks started (beyond Go) */
} mg_stats;

/* Fill *out with a consistent picture of m.
 * Returns: MG_OK; MG_EINVAL if out == NULL.  A NULL map reports all zeros.
 * Thread safety: as a read.  Fatal: as mg_get_u64. */
MG_API int mg_stats_get(const mg_map *m, mg_stats *out);

/* Returns: the map's mode (MG_UNSYNC for NULL). */
MG_API mg_mode mg_mode_of(const mg_map *m);

/* Returns: the map's name ("" when none was given); NULL for a NULL map. */
MG_API const char *mg_name(const mg_map *m);
/* Returns: the map's key kind.  Thread safety: any. */
MG_API mg_keykind mg_key_kind(const mg_map *m);

/* ------------------------------------------------------------------------ */
/* Fatal reports                                                            */
/* ------------------------------------------------------------------------ */

/* A misuse prints Go's report to stderr ("fatal error: <msg>", a blank
 * line, the map, then the stack of the thread that detected it and of the
 * thread that held the map), runs the hook, and calls abort().  The
 * environment shapes it (read once): MAPGUARD_TRACEBACK=none|single|all|
 * crash (all by default), MAPGUARD_REPORT_DIR=dir (also write it as an
 * OTLP/JSON log record), MAPGUARD_CATCH_FAULTS=0 (no SIGSEGV/SIGBUS catch
 * of faulting reads).  The first mg_new installs that catch; at fatal time
 * the reporter takes SIGRTMIN+3 (to capture the other thread's stack) and
 * SIGRTMIN+4 (its own watchdog timer).
 * Format, JSON and limits: docs/fatal-report.md. */

/* The kinds of fatal error.  XX(name, first line after "fatal error: ") */
#define MG_FATAL_MAP(XX)                                                      \
    XX(MG_FATAL_CONCURRENT_WRITES, "concurrent map writes")                   \
    XX(MG_FATAL_CONCURRENT_READ_WRITE, "concurrent map read and map write")   \
    XX(MG_FATAL_CONCURRENT_ITER_WRITE, "concurrent map iteration and map write") \
    XX(MG_FATAL_NIL_MAP, "assignment to entry in nil map")                    \
    XX(MG_FATAL_FREED_MAP, "use of freed map")                                \
    XX(MG_FATAL_CORRUPT_MAP, "corrupted map header")                          \
    XX(MG_FATAL_WRONG_KEY_KIND, "wrong key kind for map")                     \
    XX(MG_FATAL_INTERNAL, "mapguard internal error")

typedef enum {
#define MG__FATAL_ENUM(name, msg) name,
    MG_FATAL_MAP(MG__FATAL_ENUM)
#undef MG__FATAL_ENUM
        MG_FATAL_KIND_COUNT
} mg_fatal_kind;

/* Returns: the message of a fatal kind ("concurrent map writes"). */
MG_API const char *mg_fatal_message(mg_fatal_kind kind);

/* What a fatal hook is told.  Every pointer is valid only during the call. */
typedef struct {
    mg_fatal_kind kind;
    const char *msg;         /* the line after "fatal error: " */
    const void *map;         /* may be NULL, or not safe to read */
    const char *map_name;    /* NULL when unknown or unnamed */
    long tid;                /* the thread that detected the misuse */
    long other_tid;          /* the thread that held the map; 0 if none */
    const char *traceparent; /* the detecting thread's W3C traceparent, or NULL */
    const char *report;      /* the whole text report, as printed */
    const char *json;        /* the report as one JSON object (OpenTelemetry
                                exception attributes) */
} mg_fatal_info;

/* Called once, after the report is printed (and its JSON written) and
 * before abort(), from the thread that detected the misuse.  It may flush
 * logs or emit a span event; it cannot cancel the abort, and must not use
 * the map.  A fatal or a fault inside the hook aborts at once, without a
 * second report or hook call; a hook still running after 10 s is cut
 * short the same way. */
typedef void (*mg_fatal_hook)(const mg_fatal_info *info, void *arg);

/* Install (or, with hook == NULL, remove) the process-wide fatal hook.
 * Returns: the previous hook.  Thread safety: any thread. */
MG_API mg_fatal_hook mg_on_fatal(mg_fatal_hook hook, void *arg);

/* Set the calling thread's W3C trace context (a `traceparent` header value,
 * "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"), carried by
 * that thread's fatal report, JSON and hook.  NULL clears it.
 * Returns: MG_OK; MG_EINVAL for a malformed value, which is not used (the
 *   previous context stays).  Thread safety: any thread (per thread). */
MG_API int mg_set_traceparent(const char *traceparent);

/* ------------------------------------------------------------------------ */
/* Metrics and tracing                                                      */
/* ------------------------------------------------------------------------ */

/* Render every named map (maps register themselves in mg_new when given a
 * name, and leave in mg_free) in the Prometheus text exposition format
 * 0.0.4 into buf: at most cap bytes, always NUL-terminated when cap > 0.
 * Returns: the length the whole text needs (without the NUL), like
 *   snprintf: a result >= cap means the text was cut; call again with a
 *   larger buffer.  Thread safety: any thread, while maps are in use. */
MG_API size_t mg_metrics_render(char *buf, size_t cap);

/* Write the growth timeline (grow, evacuation, shrink, promotion and
 * snapshot events of every map) to path as Chrome Trace Event JSON, which
 * Perfetto and chrome://tracing open.  MAPGUARD_TRACE=path in the
 * environment does the same from the first mg_new.
 * Returns: MG_OK; MG_EINVAL (NULL path); MG_EBUSY (a trace is running);
 *   MG_EIO (the file cannot be created); MG_ENOTSUP in a build with the
 *   observability layer compiled out (-DMG_OBSERVE=OFF).
 * Thread safety: any thread. */
MG_API int mg_trace_start(const char *path);
/* Finish the trace file (it is valid JSON after this).  Returns: MG_OK;
 *   MG_EINVAL when no trace runs; MG_EIO when a write failed. */
MG_API int mg_trace_stop(void);

#ifdef __cplusplus
}
#endif
#endif /* MAPGUARD_H */
