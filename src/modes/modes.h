/*
 * modes.h - the concurrent modes' shared frame (see docs/modes.md).
 *
 * A mode map is a struct mg_map header whose magic is MG_MAGIC_MODE
 * followed by the mode's own state.  The public calls in map.c test the
 * magic on the path they already take for a bad header, and come here; so
 * an MG_UNSYNC map pays nothing for the modes.  Each mode keeps its entries
 * in engine maps (MG_UNSYNC) that it guards in its own way, except
 * MG_SNAPSHOT, which has its own persistent structure (snapshot.c).
 */
#ifndef MG_MODES_H
#define MG_MODES_H

#include "../internal.h"
#include "lock.h"
#include "../obs/events.h"
#include "../obs/obs.h"

#include <stdbool.h>

/* The engine calls the locked modes make, as one enumeration so one
 * function (mg__eng_do) runs any of them (the writes without the engine's
 * writer claim: the caller must hold the mode's exclusion): the RMW ops of
 * internal.h plus
 * these. */
enum { MG_OP_GET = 16, MG_OP_PUT, MG_OP_DEL };

typedef struct mg_mmap mg_mmap;

/* An iterator of a mode map: the engine's iterator state first (modes that
 * walk an engine map keep it there), the mode's words at the end. */
typedef struct {
    uint64_t engine[15]; /* an engine iterator's state (map_iter.c) */
    uint64_t aux[2];     /* the mode's own */
    uint64_t pos;        /* the mode's own */
    mg_mmap *mm;
    uint64_t tag; /* MG_MITER_TAG */
} mg_miter;

typedef int (*mg_range_fn)(const void *key, size_t len, uint64_t val, void *arg);

typedef struct {
    void (*destroy)(mg_mmap *mm);
    int (*put)(mg_mmap *mm, const mg_kref *k, uint64_t val);
    bool (*get)(mg_mmap *mm, const mg_kref *k, uint64_t *val);
    bool (*del)(mg_mmap *mm, const mg_kref *k);
    int (*rmw)(mg_mmap *mm, int op, const mg_kref *k, uint64_t val, uint64_t old,
               uint64_t *out, bool *loaded);
    size_t (*len)(mg_mmap *mm);
    void (*clear)(mg_mmap *mm);
    /* NULL: mg_range walks the iterator below (map_iter.c), calling fn with
     * no lock held. */
    int (*range)(mg_mmap *mm, mg_range_fn fn, void *arg);
    void (*iter_init)(mg_mmap *mm, mg_miter *it);
    bool (*iter_next)(mg_mmap *mm, mg_miter *it, const void **key, size_t *len,
                      uint64_t *val);
    void (*iter_done)(mg_mmap *mm, mg_miter *it);
    int (*stats)(mg_mmap *mm, mg_stats *out);
    int (*batch)(mg_mmap *mm, mg_batch_fn fn, void *arg);
    /* A metrics sample (obs.h): s->st and the mode's extras.  Called from
     * any thread while the map is in use, holding the registry lock: it must
     * not wait for anything user code can hold (a mode lock around a batch
     * or range callback, the actor's owner), or a callback that creates or
     * frees a named map would deadlock with the scrape. */
    void (*sample)(mg_mmap *mm, struct mg_metric_sample *s);
} mg_mops;

struct mg_mmap {
    struct mg_map hdr; /* magic MG_MAGIC_MODE; keykind, name, alloc as usual */
    mg_mode mode;
    const mg_mops *ops;
    mg_options inner; /* options for the engine maps the mode creates */
    uint64_t seed, seed2; /* the mode's own hash secrets (sharding) */
};

/* Whether the map has byte keys (the header's key kind says it). */
static inline bool mg__mm_bytes(const mg_mmap *mm)
{
    return mm->hdr.keykind == MG_KEY_BYTES;
}

/* The map the calling thread holds exclusively inside mg_batch (or that the
 * actor's owner thread is serving): calls on it skip the mode's locking. */
extern _Thread_local mg_mmap *mg__excl __attribute__((tls_model("initial-exec")));

/* Allocate a mode's struct (size bytes, an mg_mmap first) through the
 * options' allocator, zeroed, with the header every mode map carries.
 * NULL with errno ENOMEM if there is no memory. */
mg_mmap *mg__mode_alloc(const mg_options *o, size_t size, const mg_mops *ops);
/* The common part of each destructor: frees the name and the struct. */
void mg__mode_fini(mg_mmap *mm, size_t size);

/* Create an engine map for the mode's entries. NULL: ENOMEM. */
mg_map *mg__eng_new(mg_mmap *mm, size_t hint);
/* Run op (MG_OP_* or MG_RMW_*) on engine map e: the return convention of
 * mg__e_rmw; get and del return 1 or 0, put a status. */
int mg__eng_do(mg_map *e, bool bytes, int op, const mg_kref *k, uint64_t val,
               uint64_t old, uint64_t *out, bool *loaded);
/* The hash a mode uses for its own purposes (shards, the snapshot trie):
 * defined at the end of this file. */
static inline uint64_t mg__mode_hash(const mg_mmap *mm, const mg_kref *k);
/* Engine stats added into *acc (counts, buckets, bytes; the flags OR-ed). */
void mg__stats_add(mg_stats *acc, const mg_stats *s);
/* Engine iterator helpers on the first words of a mode iterator. */
static inline mg_iter *mg__miter_engine(mg_miter *it)
{
    return (mg_iter *)(void *)it;
}

/* Allocation through the mode map's allocator. */
static inline void *mg__mmalloc(mg_mmap *mm, size_t n)
{
    return mg__malloc(&mm->hdr, n);
}
static inline void mg__mfree(mg_mmap *mm, void *p, size_t n)
{
    mg__free(&mm->hdr, p, n);
}

/* Each mode's constructor.  Returns the map or NULL with errno set. */
mg_mmap *mg__rwlock_new(const mg_options *o);
mg_mmap *mg__sharded_new(const mg_options *o);
mg_mmap *mg__readmostly_new(const mg_options *o);
mg_mmap *mg__snapshot_new(const mg_options *o);
mg_mmap *mg__actor_new(const mg_options *o);

/* ---- deferred reclamation (reclaim.c) ---------------------------------- */
/* Memory a lock-free reader may still hold is retired, not freed: it is
 * freed after an RCU grace period (liburcu, the bulletproof flavour: no
 * thread registration) and once no pin older than it is held.  Items are
 * freed in retirement order. */
typedef struct mg_retired mg_retired_item;
typedef void (*mg_free_fn)(mg_mmap *mm, void *p, size_t size);
typedef struct mg_limbo mg_limbo;
mg_limbo *mg__limbo_new(mg_mmap *mm);
/* Queue p for fn(mm, p, size) after a grace period.  pins, if not NULL, is
 * the pin count of the version p belongs to: while it is non-zero neither
 * p nor anything retired after it is freed.  Never fails: when no memory
 * is left for the queue, it waits for a grace period and frees at once
 * (pins permitting; a pinned item then waits in a fixed slot). */
void mg__limbo_retire(mg_limbo *l, void *p, size_t size, mg_free_fn fn, atomic_int *pins);
/* Free what can be freed if the queue holds more than its threshold; waits
 * for a grace period.  Must not be called inside an RCU read-side section
 * or holding a lock that a reader inside one may wait for. */
void mg__limbo_poll(mg_limbo *l);
/* Wait for readers and free everything (pins must be zero). */
void mg__limbo_destroy(mg_limbo *l);
/* The RCU read-side section (urcu-bp), with the ThreadSanitizer edge. */
void mg__rcu_read_lock(void);
void mg__rcu_read_unlock(void);

static inline uint64_t mg__mode_hash(const mg_mmap *mm, const mg_kref *k)
{
    if (mg__mm_bytes(mm))
        return mg__hash_bytes(k->p, k->len, mm->seed);
    return mg__hash_u64(k->u, mm->seed, mm->seed2);
}

#endif
