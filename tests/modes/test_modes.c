/*
 * test_modes.c - every map mode against its contract, one ctest test per
 * case and mode (label modes).  Run one by hand with
 *     test_modes CASE_MODE [SEED]        e.g. test_modes model_snapshot 7
 *     test_modes all                     every case of every mode
 * Modes: unsync (the engine, the harness's control), rwlock, sharded,
 * readmostly, snapshot, actor.
 *
 * Cases:
 *   model         seeded random put/get/del/get_or_put/get_and_del/swap/cas/
 *                 cad/len/clear/stats/range/iter/batch, u64 and byte keys,
 *                 against a trivially correct model (an array indexed by key
 *                 number), single-threaded; prints the seed on failure.  A
 *                 seed fixes the operations, not the map's random hash seed,
 *                 so a failure that depends on the layout may need a few
 *                 reruns of its seed.  Ranges mutate from inside fn (also
 *                 deleting the key just produced and putting it back): no
 *                 key twice, except that unsync and actor, which range over
 *                 the engine, may produce such a re-put key once more (Go's
 *                 "new entry"); a value produced is one the key held during
 *                 the range; keys present and untouched are produced
 *   extras        Go 1.20 semantics of LoadOrStore, LoadAndDelete, Swap,
 *                 CompareAndSwap, CompareAndDelete, through sequences that
 *                 reach every state of sync.Map's read/dirty entries
 *   batch         mg_batch: return values, fn called once, reads inside fn
 *                 see fn's writes (len and range too); MG_ENOTSUP for
 *                 readmostly (fn never called); MG_EINVAL for bad arguments
 *   range         mg_range/mg_iter with mutation from inside: no key twice,
 *                 keys present and untouched are visited with their value;
 *                 exactly the starting contents for snapshot; early stop
 *   stats         mg_stats_get/mg_len against what was stored
 *   badinput      NULL keys with len > 0, keys over MG_KEY_MAX, NULL fn, bad
 *                 options: status codes, no fatal, the map unchanged
 *   free_live     mg_free of a map full of u64 and byte keys: every byte the
 *                 map took from a counting allocator is given back (and
 *                 LSan/valgrind see no leak of anything else)
 *   names         mg_mode_name, mg_mode_of, mg_name, mg_key_kind
 *   batch_atomic  (modes with mg_batch, not unsync) a writer moves amounts
 *                 between keys and renames keys in batches keeping the sum
 *                 and the count; concurrent readers total the map with a
 *                 read-only batch, and, where range is atomic or a
 *                 snapshot, with mg_range (and mg_iter, mg_len for snapshot)
 *   snapshot_prefix (snapshot, actor) a writer rewrites keys 0..N-1 in
 *                 order with single puts; every range must see one state
 *                 that existed: a prefix of generation g, the rest g-1
 */
#include "modes_common.h"

#include <pthread.h>
#include <stdatomic.h>

/* ------------------------------------------------------------------------ */
/* The model                                                                */
/* ------------------------------------------------------------------------ */

typedef struct rchk rchk;

typedef struct {
    const mode_info *mi;
    mg_map *m;
    bool bytes;
    uint64_t K; /* key numbers 0..K-1 */
    bool *present;
    uint64_t *val;
    size_t len;
    uint64_t seed, rng;
    size_t op;
    const char *what; /* the operation running, for the failure report */
    rchk *rc;         /* the range in progress, if any */
    int batch_depth;
} model;

#define FAILM(md, ...)                                                        \
    do {                                                                      \
        fprintf(stderr, "model mode=%s key=%s seed=%llu op=%zu (%s): ",       \
                (md)->mi->name, (md)->bytes ? "bytes" : "u64",                \
                (unsigned long long)(md)->seed, (md)->op, (md)->what);        \
        T_FAIL(__VA_ARGS__);                                                  \
    } while (0)

static void mo_random_op(model *md, bool inside_range);
static void mo_del(model *md, uint64_t i);
static void mo_put(model *md, uint64_t i);

/* What a range in progress must know: the contents when it started and
 * every value each key has had since (weak modes may show any of them). */
struct rchk {
    unsigned char *start_present, *changed, *seen;
    unsigned char *gone; /* deleted after it was produced (go_reinsert) */
    uint64_t *start_val;
    size_t *head; /* per key: first log entry + 1 (0: none) */
    uint64_t *log_val;
    size_t *log_next; /* + 1 */
    size_t nlog, caplog;
    bool strict; /* exactly the starting contents (a snapshot) */
    size_t visits;
};

static void note_store(model *md, uint64_t i, uint64_t v)
{
    rchk *rc = md->rc;
    if (!rc)
        return;
    rc->changed[i] = 1;
    if (rc->nlog == rc->caplog) {
        rc->caplog = rc->caplog ? rc->caplog * 2 : 256;
        rc->log_val = realloc(rc->log_val, rc->caplog * sizeof *rc->log_val);
        rc->log_next = realloc(rc->log_next, rc->caplog * sizeof *rc->log_next);
        T_ASSERT(rc->log_val && rc->log_next);
    }
    rc->log_val[rc->nlog] = v;
    rc->log_next[rc->nlog] = rc->head[i];
    rc->head[i] = ++rc->nlog;
}
static void note_del(model *md, uint64_t i)
{
    if (md->rc) {
        md->rc->changed[i] = 1;
        if (md->rc->seen[i])
            md->rc->gone[i] = 1;
    }
}

static void set_val(model *md, uint64_t i, uint64_t v)
{
    if (!md->present[i])
        md->len++;
    md->present[i] = true;
    md->val[i] = v;
    note_store(md, i, v);
}
static void unset(model *md, uint64_t i)
{
    if (md->present[i])
        md->len--;
    md->present[i] = false;
    note_del(md, i);
}

static uint64_t mrand(model *md)
{
    return rng_next(&md->rng);
}

static void mo_put(model *md, uint64_t i)
{
    md->what = "put";
    uint64_t v = mrand(md);
    int rc = op_put(md->m, md->bytes, i, v);
    if (rc != MG_OK)
        FAILM(md, "put key %llu: rc %d", (unsigned long long)i, rc);
    set_val(md, i, v);
}

static void mo_get(model *md, uint64_t i)
{
    md->what = "get";
    uint64_t v = 0;
    bool with_val = mrand(md) % 8 != 0; /* val may be NULL */
    bool f = op_get(md->m, md->bytes, i, with_val ? &v : NULL);
    if (f != md->present[i])
        FAILM(md, "get key %llu: found %d, want %d", (unsigned long long)i, f,
              md->present[i]);
    if (f && with_val && v != md->val[i])
        FAILM(md, "get key %llu: value %llu, want %llu", (unsigned long long)i,
              (unsigned long long)v, (unsigned long long)md->val[i]);
}

static void mo_del(model *md, uint64_t i)
{
    md->what = "del";
    bool f = op_del(md->m, md->bytes, i);
    if (f != md->present[i])
        FAILM(md, "del key %llu: found %d, want %d", (unsigned long long)i, f,
              md->present[i]);
    unset(md, i);
}

static void mo_get_or_put(model *md, uint64_t i)
{
    md->what = "get_or_put";
    uint64_t v = mrand(md), actual = 0;
    bool loaded = false;
    bool with_out = mrand(md) % 4 != 0; /* actual and loaded may be NULL */
    int rc = op_get_or_put(md->m, md->bytes, i, v, with_out ? &actual : NULL,
                           with_out ? &loaded : NULL);
    if (rc != MG_OK)
        FAILM(md, "get_or_put key %llu: rc %d", (unsigned long long)i, rc);
    if (with_out) {
        if (loaded != md->present[i])
            FAILM(md, "get_or_put key %llu: loaded %d, want %d", (unsigned long long)i,
                  loaded, md->present[i]);
        uint64_t want = md->present[i] ? md->val[i] : v;
        if (actual != want)
            FAILM(md, "get_or_put key %llu: actual %llu, want %llu",
                  (unsigned long long)i, (unsigned long long)actual,
                  (unsigned long long)want);
    }
    if (!md->present[i])
        set_val(md, i, v);
}

static void mo_get_and_del(model *md, uint64_t i)
{
    md->what = "get_and_del";
    uint64_t old = 0;
    bool f = op_get_and_del(md->m, md->bytes, i, &old);
    if (f != md->present[i])
        FAILM(md, "get_and_del key %llu: found %d, want %d", (unsigned long long)i, f,
              md->present[i]);
    if (f && old != md->val[i])
        FAILM(md, "get_and_del key %llu: old %llu, want %llu", (unsigned long long)i,
              (unsigned long long)old, (unsigned long long)md->val[i]);
    unset(md, i);
}

static void mo_swap(model *md, uint64_t i)
{
    md->what = "swap";
    uint64_t v = mrand(md), old = 0;
    bool loaded = !md->present[i];
    int rc = op_swap(md->m, md->bytes, i, v, &old, &loaded);
    if (rc != MG_OK)
        FAILM(md, "swap key %llu: rc %d", (unsigned long long)i, rc);
    if (loaded != md->present[i])
        FAILM(md, "swap key %llu: loaded %d, want %d", (unsigned long long)i, loaded,
              md->present[i]);
    if (loaded && old != md->val[i])
        FAILM(md, "swap key %llu: old %llu, want %llu", (unsigned long long)i,
              (unsigned long long)old, (unsigned long long)md->val[i]);
    set_val(md, i, v);
}

/* An expected old value: the current one half the time when present. */
static uint64_t pick_old(model *md, uint64_t i)
{
    uint64_t r = mrand(md);
    if (md->present[i] && r % 2 == 0)
        return md->val[i];
    if (r % 7 == 1)
        return 0; /* Go's "even if old is the zero value" case */
    return mrand(md);
}

static void mo_cas(model *md, uint64_t i)
{
    md->what = "cas";
    uint64_t old = pick_old(md, i), v = mrand(md);
    bool want = md->present[i] && md->val[i] == old;
    bool got = op_cas(md->m, md->bytes, i, old, v);
    if (got != want)
        FAILM(md, "cas key %llu old %llu: swapped %d, want %d (present %d)",
              (unsigned long long)i, (unsigned long long)old, got, want, md->present[i]);
    if (want)
        set_val(md, i, v);
}

static void mo_cad(model *md, uint64_t i)
{
    md->what = "cad";
    uint64_t old = pick_old(md, i);
    bool want = md->present[i] && md->val[i] == old;
    bool got = op_cad(md->m, md->bytes, i, old);
    if (got != want)
        FAILM(md, "cad key %llu old %llu: deleted %d, want %d (present %d)",
              (unsigned long long)i, (unsigned long long)old, got, want, md->present[i]);
    if (want)
        unset(md, i);
}

static void mo_clear(model *md)
{
    md->what = "clear";
    mg_clear(md->m);
    for (uint64_t i = 0; i < md->K; i++)
        if (md->present[i])
            unset(md, i);
}

static void check_len(model *md)
{
    size_t n = mg_len(md->m);
    if (n != md->len)
        FAILM(md, "mg_len %zu, want %zu", n, md->len);
}

static void mo_stats(model *md)
{
    md->what = "stats";
    mg_stats s;
    int rc = mg_stats_get(md->m, &s);
    if (rc != MG_OK)
        FAILM(md, "mg_stats_get rc %d", rc);
    if (s.count != md->len)
        FAILM(md, "stats.count %zu, want %zu", s.count, md->len);
}

/* ---- ranges ---- */

static rchk *rchk_begin(model *md, bool strict)
{
    rchk *rc = calloc(1, sizeof *rc);
    T_ASSERT(rc);
    size_t K = (size_t)md->K;
    rc->start_present = calloc(K, 1);
    rc->changed = calloc(K, 1);
    rc->seen = calloc(K, 1);
    rc->gone = calloc(K, 1);
    rc->start_val = calloc(K, sizeof *rc->start_val);
    rc->head = calloc(K, sizeof *rc->head);
    T_ASSERT(rc->start_present && rc->changed && rc->seen && rc->gone && rc->start_val &&
             rc->head);
    for (size_t i = 0; i < K; i++) {
        rc->start_present[i] = md->present[i];
        rc->start_val[i] = md->val[i];
    }
    rc->strict = strict;
    return rc;
}

static uint64_t rchk_visit(model *md, rchk *rc, const void *k, size_t klen, uint64_t v)
{
    uint64_t i = key_index(md->bytes, k, klen);
    if (i >= md->K)
        FAILM(md, "range produced a key that was never stored (len %zu)", klen);
    bool again = false;
    if (rc->seen[i]) {
        /* Go: a key deleted after it was produced and put back is a new
         * entry, which may be produced (once more). */
        if (!md->mi->go_reinsert || !rc->gone[i] || rc->strict)
            FAILM(md, "range produced key %llu twice", (unsigned long long)i);
        rc->gone[i] = 0;
        again = true;
    }
    rc->seen[i] = 1;
    rc->visits++;
    bool start_ok = !again && rc->start_present[i] && v == rc->start_val[i];
    if (rc->strict) {
        if (!start_ok)
            FAILM(md, "snapshot range produced key %llu = %llu; at the start it was %s %llu",
                  (unsigned long long)i, (unsigned long long)v,
                  rc->start_present[i] ? "present," : "absent", (unsigned long long)rc->start_val[i]);
        return i;
    }
    if (start_ok)
        return i;
    if (!rc->changed[i])
        FAILM(md, "range produced key %llu = %llu, but it was %s %llu and untouched",
              (unsigned long long)i, (unsigned long long)v,
              rc->start_present[i] ? "present," : "absent", (unsigned long long)rc->start_val[i]);
    for (size_t e = rc->head[i]; e; e = rc->log_next[e - 1])
        if (rc->log_val[e - 1] == v)
            return i;
    FAILM(md, "range produced key %llu = %llu, a value it never had during the range",
          (unsigned long long)i, (unsigned long long)v);
}

/* Mutation from inside a range: random operations, and now and then the
 * key just produced deleted and put back after another delete (so it may
 * land in a slot the range has not reached). */
static void range_mutate(model *md, uint64_t cur)
{
    size_t n = (size_t)(mrand(md) % 4);
    for (size_t j = 0; j < n; j++)
        mo_random_op(md, true);
    if (mrand(md) % 4 == 0) {
        mo_del(md, mrand(md) % md->K);
        mo_del(md, cur);
        mo_put(md, cur);
    }
}

/* complete: the range ran to its end (not stopped by fn). */
static void rchk_end(model *md, rchk *rc, bool complete)
{
    if (complete) {
        for (uint64_t i = 0; i < md->K; i++) {
            if (rc->strict && rc->start_present[i] && !rc->seen[i])
                FAILM(md, "snapshot range missed key %llu, present at the start",
                      (unsigned long long)i);
            if (!rc->strict && rc->start_present[i] && !rc->changed[i] && !rc->seen[i])
                FAILM(md, "range missed key %llu, present and untouched throughout",
                      (unsigned long long)i);
        }
    }
    free(rc->start_present);
    free(rc->changed);
    free(rc->seen);
    free(rc->gone);
    free(rc->start_val);
    free(rc->head);
    free(rc->log_val);
    free(rc->log_next);
    free(rc);
}

typedef struct {
    model *md;
    bool mutate;
    size_t stop_at; /* 0: never stop */
    int stop_ret;
} rarg;

static int range_fn(const void *k, size_t klen, uint64_t v, void *arg)
{
    rarg *ra = arg;
    model *md = ra->md;
    md->what = "range";
    uint64_t i = rchk_visit(md, md->rc, k, klen, v);
    if (ra->mutate)
        range_mutate(md, i);
    if (ra->stop_at && md->rc->visits == ra->stop_at)
        return ra->stop_ret;
    return 0;
}

/* A range or an iteration, maybe mutating from inside, maybe stopping
 * early; checked against the contents at its start. */
static void mo_range(model *md)
{
    if (md->rc)
        return; /* no range inside a range */
    uint64_t r = mrand(md);
    bool iter = r % 2;
    bool mutate = (r >> 1) % 3 != 0;
    bool stop = (r >> 4) % 5 == 0 && md->len > 0;
    /* A snapshot range sees exactly its starting contents, except inside
     * a batch, where the map is the batch's own work in progress. */
    bool strict = md->mi->snapshot && md->batch_depth == 0;
    md->what = iter ? "iter" : "range";
    rchk *rc = rchk_begin(md, strict);
    md->rc = rc;
    bool complete = true;
    if (!iter) {
        rarg ra = {md, mutate, stop ? 1 + (size_t)(mrand(md) % md->len) : 0,
                   (int)(mrand(md) % 100) + 1};
        int ret = mg_range(md->m, range_fn, &ra);
        md->what = "range";
        if (ra.stop_at && rc->visits == ra.stop_at) {
            complete = false;
            if (ret != ra.stop_ret)
                FAILM(md, "mg_range returned %d, fn stopped it with %d", ret, ra.stop_ret);
        } else if (ret != 0) {
            FAILM(md, "mg_range returned %d, fn never stopped it", ret);
        }
    } else {
        size_t stop_at = stop ? 1 + (size_t)(mrand(md) % md->len) : 0;
        mg_iter it;
        const void *k;
        size_t klen;
        uint64_t v;
        unsigned char kcopy[BKEY_MAX + 8];
        mg_iter_init(&it, md->m);
        while (mg_iter_next(&it, &k, &klen, &v)) {
            md->what = "iter";
            if (klen > sizeof kcopy)
                FAILM(md, "iterator produced a %zu-byte key", klen);
            memcpy(kcopy, k, klen); /* valid until the next write */
            uint64_t i = rchk_visit(md, rc, kcopy, klen, v);
            if (stop_at && rc->visits == stop_at) {
                complete = false;
                break;
            }
            if (mutate)
                range_mutate(md, i);
        }
        mg_iter_done(&it);
        mg_iter_done(&it); /* idempotent */
    }
    md->rc = NULL;
    rchk_end(md, rc, complete);
    md->what = iter ? "iter" : "range";
    check_len(md);
}

/* ---- batches ---- */

typedef struct {
    model *md;
    int calls;
    int ret;
} barg;

static int batch_fn(mg_map *m, void *arg)
{
    barg *ba = arg;
    model *md = ba->md;
    ba->calls++;
    if (m != md->m)
        FAILM(md, "batch fn got map %p, want %p", (void *)m, (void *)md->m);
    md->batch_depth++;
    size_t n = 1 + (size_t)(mrand(md) % 10);
    for (size_t j = 0; j < n; j++) {
        mo_random_op(md, md->rc != NULL);
        md->what = "inside batch";
        check_len(md); /* reads inside fn see fn's writes */
    }
    md->batch_depth--;
    return ba->ret;
}

static void mo_batch(model *md)
{
    if (md->batch_depth || md->rc)
        return; /* never nested: fn must not call mg_batch */
    md->what = "batch";
    barg ba = {md, 0, (int)(mrand(md) % 2001) - 1000};
    int ret = mg_batch(md->m, batch_fn, &ba);
    md->what = "batch";
    if (!md->mi->batch) {
        if (ret != MG_ENOTSUP || ba.calls != 0)
            FAILM(md, "mg_batch on %s: returned %d after %d calls of fn, want MG_ENOTSUP "
                  "and no call", md->mi->name, ret, ba.calls);
        return;
    }
    if (ba.calls != 1)
        FAILM(md, "mg_batch called fn %d times", ba.calls);
    if (ret != ba.ret)
        FAILM(md, "mg_batch returned %d, fn returned %d", ret, ba.ret);
}

/* Every key, a plain range, len and stats against the model. */
static void full_check(model *md)
{
    for (uint64_t i = 0; i < md->K; i++) {
        uint64_t v = 0;
        md->what = "full check get";
        bool f = op_get(md->m, md->bytes, i, &v);
        if (f != md->present[i] || (f && v != md->val[i]))
            FAILM(md, "key %llu: found %d value %llu, want %d %llu", (unsigned long long)i,
                  f, (unsigned long long)v, md->present[i],
                  (unsigned long long)md->val[i]);
    }
    md->what = "full check range";
    rchk *rc = rchk_begin(md, true); /* nothing changes: exact contents */
    md->rc = rc;
    rarg ra = {md, false, 0, 0};
    int ret = mg_range(md->m, range_fn, &ra);
    if (ret != 0)
        FAILM(md, "mg_range returned %d", ret);
    md->rc = NULL;
    rchk_end(md, rc, true);
    check_len(md);
    mo_stats(md);
}

static void mo_random_op(model *md, bool inside_range)
{
    uint64_t i = mrand(md) % md->K;
    unsigned r = (unsigned)(mrand(md) % 1000);
    /* Phases: fill, churn, drain, so the map grows and shrinks. */
    unsigned phase = (unsigned)((md->op / 4000) % 3);
    unsigned put_w = phase == 0 ? 300 : phase == 1 ? 180 : 60;
    if (r < put_w) {
        if (r % 3 == 0)
            mo_get_or_put(md, i);
        else
            mo_put(md, i);
    } else if (r < 400) {
        mo_get(md, i);
    } else if (r < 520) {
        switch (r % 3) {
        case 0: mo_del(md, i); break;
        case 1: mo_get_and_del(md, i); break;
        default: mo_cad(md, i); break;
        }
    } else if (r < 600) {
        mo_swap(md, i);
    } else if (r < 720) {
        mo_cas(md, i);
    } else if (r < 780) {
        mo_cad(md, i);
    } else if (r < 800) {
        mo_stats(md);
    } else if (r < 803 && !inside_range) {
        /* a range costs O(len): keep ranges of big maps rare */
        if (mrand(md) % (1 + md->len / 256) == 0)
            mo_range(md);
    } else if (r < 830 && !inside_range) {
        mo_batch(md);
    } else if (r == 830 && mrand(md) % (inside_range ? 40 : 4) == 0) {
        mo_clear(md);
    } else {
        mo_get(md, i);
    }
    md->what = "len";
    check_len(md);
}

static void run_model(const mode_info *mi, bool bytes, uint64_t seed, uint64_t K,
                      size_t nops, size_t check_every)
{
    model md = {0};
    md.mi = mi;
    md.bytes = bytes;
    md.K = K;
    md.seed = seed;
    md.rng = seed;
    md.present = calloc((size_t)K, sizeof *md.present);
    md.val = calloc((size_t)K, sizeof *md.val);
    T_ASSERT(md.present && md.val);
    md.m = mode_map(mi, bytes, "model");
    md.what = "start";
    for (md.op = 0; md.op < nops; md.op++) {
        mo_random_op(&md, false);
        if (md.op % check_every == 0 || (md.len < 8 && md.op % 64 == 0))
            full_check(&md);
    }
    full_check(&md);
    mg_free(md.m);
    free(md.present);
    free(md.val);
}

static uint64_t base_seed = 1;

static void c_model(const mode_info *mi)
{
    for (int bytes = 0; bytes < 2; bytes++) {
        for (uint64_t s = 0; s < 3; s++)
            run_model(mi, bytes, base_seed * 1000 + s, 48, 8000, 500);
        /* big enough to grow, shrink and split over shards */
        run_model(mi, bytes, base_seed * 1000 + 100, 2000, 30000, 10000);
    }
}

/* ------------------------------------------------------------------------ */
/* extras: Go 1.20 semantics, through every state of a sync.Map entry       */
/* ------------------------------------------------------------------------ */

static void want_get(mg_map *m, bool bytes, uint64_t i, bool present, uint64_t v)
{
    uint64_t got = 0;
    bool f = op_get(m, bytes, i, &got);
    if (f != present)
        T_FAIL("key %llu: found %d, want %d", (unsigned long long)i, f, present);
    if (f && got != v)
        T_FAIL("key %llu: value %llu, want %llu", (unsigned long long)i,
               (unsigned long long)got, (unsigned long long)v);
}

static void extras_on(const mode_info *mi, bool bytes)
{
    fprintf(stderr, "   %s map\n", bytes ? "byte-key" : "u64");
    mg_map *m = mode_map(mi, bytes, "extras");
    uint64_t old = 0, act = 0;
    bool loaded = false;
    enum { A = 1, B = 2, C = 3, Z = 0 /* the empty byte key */ };

    /* Absent keys: CAS never inserts (even with old == 0), CAD is false,
     * LoadAndDelete is false. */
    T_ASSERT(!op_cas(m, bytes, A, 0, 5));
    T_ASSERT(!op_cas(m, bytes, A, 7, 5));
    want_get(m, bytes, A, false, 0);
    T_ASSERT(!op_cad(m, bytes, A, 0));
    T_ASSERT(!op_get_and_del(m, bytes, A, &old));
    T_EQ_U(mg_len(m), 0);

    /* Swap on a new key: loaded false, stored. */
    loaded = true;
    T_EQ_I(op_swap(m, bytes, A, 1, &old, &loaded), MG_OK);
    T_ASSERT(!loaded);
    want_get(m, bytes, A, true, 1);
    /* Swap on a present key: the previous value. */
    T_EQ_I(op_swap(m, bytes, A, 10, &old, &loaded), MG_OK);
    T_ASSERT(loaded);
    T_EQ_U(old, 1);
    want_get(m, bytes, A, true, 10);

    /* LoadOrStore returns the existing value and stores nothing. */
    T_EQ_I(op_get_or_put(m, bytes, A, 99, &act, &loaded), MG_OK);
    T_ASSERT(loaded);
    T_EQ_U(act, 10);
    want_get(m, bytes, A, true, 10);
    /* ... and stores on an absent key. */
    T_EQ_I(op_get_or_put(m, bytes, C, 3, &act, &loaded), MG_OK);
    T_ASSERT(!loaded);
    T_EQ_U(act, 3);
    T_EQ_I(op_get_or_put(m, bytes, C, 4, &act, &loaded), MG_OK);
    T_ASSERT(loaded);
    T_EQ_U(act, 3);
    T_EQ_I(op_get_or_put(m, bytes, C, 5, NULL, NULL), MG_OK); /* outs may be NULL */
    want_get(m, bytes, C, true, 3);
    T_EQ_U(mg_len(m), 2);

    /* CAS with the wrong old value changes nothing; the right one swaps. */
    T_ASSERT(!op_cas(m, bytes, A, 11, 12));
    want_get(m, bytes, A, true, 10);
    T_ASSERT(op_cas(m, bytes, A, 10, 12));
    want_get(m, bytes, A, true, 12);
    T_ASSERT(op_cas(m, bytes, A, 12, 12)); /* same value: still swapped */
    /* CAD likewise. */
    T_ASSERT(!op_cad(m, bytes, C, 4));
    want_get(m, bytes, C, true, 3);
    T_ASSERT(op_cad(m, bytes, C, 3));
    want_get(m, bytes, C, false, 0);
    T_ASSERT(!op_cad(m, bytes, C, 3));
    T_EQ_U(mg_len(m), 1);

    /* A stored zero is a value like any other. */
    T_EQ_I(op_put(m, bytes, B, 0), MG_OK);
    want_get(m, bytes, B, true, 0);
    T_ASSERT(op_cas(m, bytes, B, 0, 20));
    want_get(m, bytes, B, true, 20);
    T_EQ_I(op_swap(m, bytes, B, 0, &old, &loaded), MG_OK);
    T_ASSERT(loaded);
    T_EQ_U(old, 20);
    T_ASSERT(op_cad(m, bytes, B, 0));
    want_get(m, bytes, B, false, 0);

    /* The sync.Map entry states, in the order sync.Map reaches them:
     * a key promoted into read, deleted there (p = nil), then expunged when
     * a new key makes a dirty copy, then brought back; the extras must see
     * "absent" in each deleted state and never resurrect a key. */
    for (int round = 0; round < 3; round++) {
        uint64_t k = 10 + (uint64_t)round, nk = 20 + (uint64_t)round;
        T_EQ_I(op_put(m, bytes, k, 1), MG_OK);
        for (int j = 0; j < 4; j++) /* misses promote dirty to read */
            want_get(m, bytes, 1000 + (uint64_t)j, false, 0);
        want_get(m, bytes, k, true, 1);
        T_ASSERT(op_get_and_del(m, bytes, k, &old)); /* deleted in read */
        T_EQ_U(old, 1);
        T_ASSERT(!op_cas(m, bytes, k, 1, 2));
        T_ASSERT(!op_cas(m, bytes, k, 0, 2));
        T_ASSERT(!op_cad(m, bytes, k, 1));
        T_ASSERT(!op_cad(m, bytes, k, 0));
        T_ASSERT(!op_get_and_del(m, bytes, k, &old));
        want_get(m, bytes, k, false, 0);
        T_EQ_I(op_put(m, bytes, nk, 7), MG_OK); /* a dirty copy: k expunged */
        T_ASSERT(!op_cas(m, bytes, k, 0, 2));
        T_ASSERT(!op_cad(m, bytes, k, 0));
        want_get(m, bytes, k, false, 0);
        switch (round) { /* bring it back three ways */
        case 0:
            T_EQ_I(op_get_or_put(m, bytes, k, 5, &act, &loaded), MG_OK);
            T_ASSERT(!loaded);
            T_EQ_U(act, 5);
            break;
        case 1:
            loaded = true;
            T_EQ_I(op_swap(m, bytes, k, 5, &old, &loaded), MG_OK);
            T_ASSERT(!loaded);
            break;
        default:
            T_EQ_I(op_put(m, bytes, k, 5), MG_OK);
            break;
        }
        want_get(m, bytes, k, true, 5);
        T_ASSERT(op_cas(m, bytes, k, 5, 6));
        want_get(m, bytes, k, true, 6);
        /* the new key, still only in dirty: CAS/CAD find it */
        T_ASSERT(!op_cas(m, bytes, nk, 8, 9));
        T_ASSERT(op_cas(m, bytes, nk, 7, 9));
        T_ASSERT(op_cad(m, bytes, nk, 9));
        T_ASSERT(!op_get_and_del(m, bytes, nk, &old));
    }
    /* The empty byte key (u64 key 0) takes part like any other. */
    T_ASSERT(!op_cas(m, bytes, Z, 0, 1));
    T_EQ_I(op_get_or_put(m, bytes, Z, 42, &act, &loaded), MG_OK);
    T_ASSERT(!loaded);
    T_ASSERT(op_cas(m, bytes, Z, 42, 43));
    T_ASSERT(op_get_and_del(m, bytes, Z, &old));
    T_EQ_U(old, 43);
    T_EQ_U(mg_len(m), 4); /* A, and the three keys brought back */

    /* After a clear, nothing is found and nothing is resurrected. */
    mg_clear(m);
    T_EQ_U(mg_len(m), 0);
    T_ASSERT(!op_cas(m, bytes, A, 12, 1));
    T_ASSERT(!op_cad(m, bytes, A, 12));
    want_get(m, bytes, A, false, 0);
    T_EQ_I(op_swap(m, bytes, A, 2, &old, &loaded), MG_OK);
    T_ASSERT(!loaded);
    T_EQ_U(mg_len(m), 1);
    mg_free(m);
}

static void c_extras(const mode_info *mi)
{
    extras_on(mi, false);
    extras_on(mi, true);
    /* LoadAndDelete on a NULL map: false. */
    uint64_t old = 5;
    T_ASSERT(!mg_get_and_del_u64(NULL, 1, &old));
}

/* ------------------------------------------------------------------------ */
/* batch                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    bool bytes;
    int calls;
    int ret;
    bool fail_inside;
} bctx;

static int b_count(const void *k, size_t klen, uint64_t v, void *arg)
{
    (void)k;
    (void)klen;
    (void)v;
    (*(size_t *)arg)++;
    return 0;
}

static int batch_reads_own_writes(mg_map *m, void *arg)
{
    bctx *b = arg;
    b->calls++;
    size_t n0 = mg_len(m);
    for (uint64_t i = 100; i < 200; i++)
        T_EQ_I(op_put(m, b->bytes, i, i * 3), MG_OK);
    T_EQ_U(mg_len(m), n0 + 100);
    for (uint64_t i = 100; i < 200; i++)
        want_get(m, b->bytes, i, true, i * 3);
    size_t seen = 0;
    T_EQ_I(mg_range(m, b_count, &seen), 0);
    T_EQ_U(seen, n0 + 100);
    mg_iter it;
    seen = 0;
    for (mg_iter_init(&it, m); mg_iter_next(&it, NULL, NULL, NULL);)
        seen++;
    mg_iter_done(&it);
    T_EQ_U(seen, n0 + 100);
    mg_stats st;
    T_EQ_I(mg_stats_get(m, &st), MG_OK);
    T_EQ_U(st.count, n0 + 100);
    /* the extras see them too */
    uint64_t old = 0, act = 0;
    bool loaded = false;
    T_ASSERT(op_cas(m, b->bytes, 100, 300, 1));
    T_ASSERT(op_cad(m, b->bytes, 101, 303));
    T_ASSERT(op_get_and_del(m, b->bytes, 102, &old));
    T_EQ_U(old, 306);
    T_EQ_I(op_swap(m, b->bytes, 103, 7, &old, &loaded), MG_OK);
    T_ASSERT(loaded);
    T_EQ_U(old, 309);
    T_EQ_I(op_get_or_put(m, b->bytes, 104, 9, &act, &loaded), MG_OK);
    T_ASSERT(loaded);
    T_EQ_U(act, 312);
    T_ASSERT(op_del(m, b->bytes, 105));
    T_EQ_U(mg_len(m), n0 + 97);
    want_get(m, b->bytes, 100, true, 1);
    want_get(m, b->bytes, 101, false, 0);
    /* a clear inside the batch, then puts after it */
    mg_clear(m);
    T_EQ_U(mg_len(m), 0);
    want_get(m, b->bytes, 100, false, 0);
    for (uint64_t i = 0; i < 10; i++)
        T_EQ_I(op_put(m, b->bytes, i, i + 1000), MG_OK);
    T_EQ_U(mg_len(m), 10);
    return b->ret;
}

static int batch_nop(mg_map *m, void *arg)
{
    (void)m;
    bctx *b = arg;
    b->calls++;
    return b->ret;
}

static void c_batch(const mode_info *mi)
{
    for (int bytes = 0; bytes < 2; bytes++) {
        mg_map *m = mode_map(mi, bytes, "batch");
        for (uint64_t i = 0; i < 50; i++)
            T_EQ_I(op_put(m, bytes, i, i), MG_OK);
        bctx b = {bytes, 0, 12345, false};
        int rc = mg_batch(m, batch_reads_own_writes, &b);
        if (!mi->batch) {
            T_EQ_I(rc, MG_ENOTSUP);
            T_EQ_I(b.calls, 0);
            T_EQ_U(mg_len(m), 50); /* nothing ran */
            b.ret = 0;
            T_EQ_I(mg_batch(m, batch_nop, &b), MG_ENOTSUP);
            T_EQ_I(b.calls, 0);
        } else {
            T_EQ_I(rc, 12345);
            T_EQ_I(b.calls, 1);
            /* After the batch: exactly what fn left. */
            T_EQ_U(mg_len(m), 10);
            for (uint64_t i = 0; i < 10; i++)
                want_get(m, bytes, i, true, i + 1000);
            for (uint64_t i = 10; i < 200; i++)
                want_get(m, bytes, i, false, 0);
            size_t seen = 0;
            T_EQ_I(mg_range(m, b_count, &seen), 0);
            T_EQ_U(seen, 10);
            /* fn's value comes back whatever it is: 0, negative, a status. */
            const int rets[] = {0, -1, MG_ENOMEM, MG_ENOTSUP, 1 << 30, -(1 << 30)};
            for (size_t j = 0; j < sizeof rets / sizeof rets[0]; j++) {
                b.calls = 0;
                b.ret = rets[j];
                T_EQ_I(mg_batch(m, batch_nop, &b), rets[j]);
                T_EQ_I(b.calls, 1);
            }
        }
        /* Bad arguments: MG_EINVAL, fn not called, no fatal. */
        /* (readmostly: either status is the contract's) */
        int nrc = mg_batch(m, NULL, &b);
        if (mi->batch ? nrc != MG_EINVAL : nrc != MG_EINVAL && nrc != MG_ENOTSUP)
            T_FAIL("mg_batch(m, NULL, arg) on %s returned %d", mi->name, nrc);
        b.calls = 0;
        T_EQ_I(mg_batch(NULL, batch_nop, &b), MG_EINVAL);
        T_EQ_I(b.calls, 0);
        mg_free(m);
    }
}

/* ------------------------------------------------------------------------ */
/* range and iter with mutation, and early stops                            */
/* ------------------------------------------------------------------------ */

/* A range whose fn deletes the odd keys on its first call and puts a new
 * key on every call (drange); or stops at a given call. */
typedef struct {
    mg_map *m;
    bool bytes, mutate;
    unsigned char seen[2000];
    size_t calls, stop_at;
    int stop_ret;
} drange;

static int dr_fn(const void *k, size_t klen, uint64_t v, void *arg)
{
    drange *d = arg;
    uint64_t i = key_index(d->bytes, k, klen);
    if (i >= 2000)
        T_FAIL("range produced a key that was never stored");
    if (d->seen[i])
        T_FAIL("range produced key %llu twice", (unsigned long long)i);
    if (v != i)
        T_FAIL("range produced key %llu with value %llu (only %llu was ever stored)",
               (unsigned long long)i, (unsigned long long)v, (unsigned long long)i);
    d->seen[i] = 1;
    d->calls++;
    if (d->stop_at && d->calls > d->stop_at)
        T_FAIL("fn called again after it returned %d", d->stop_ret);
    if (d->mutate) {
        if (d->calls == 1)
            for (uint64_t j = 1; j < 300; j += 2)
                if (!op_del(d->m, d->bytes, j))
                    T_FAIL("deleting key %llu from inside the range: absent",
                           (unsigned long long)j);
        uint64_t nk = 1000 + d->calls;
        T_EQ_I(op_put(d->m, d->bytes, nk, nk), MG_OK);
    }
    if (d->stop_at && d->calls == d->stop_at)
        return d->stop_ret;
    return 0;
}

static void c_range(const mode_info *mi)
{
    for (int bytes = 0; bytes < 2; bytes++) {
        /* The model's range checks, on purpose-built maps: many keys (so a
         * mutating fn grows and shrinks the map), every kind of mutation. */
        for (uint64_t s = 0; s < 6; s++) {
            model md = {0};
            md.mi = mi;
            md.bytes = bytes;
            md.K = 1200;
            md.seed = base_seed * 5000 + s;
            md.rng = md.seed;
            md.present = calloc(md.K, sizeof *md.present);
            md.val = calloc(md.K, sizeof *md.val);
            T_ASSERT(md.present && md.val);
            md.m = mode_map(mi, bytes, "range");
            md.what = "fill";
            for (uint64_t i = 0; i < md.K; i += 1 + (s % 2))
                mo_put(&md, i);
            for (int r = 0; r < 30; r++) {
                md.op = (size_t)r;
                mo_range(&md);
            }
            full_check(&md);
            mg_free(md.m);
            free(md.present);
            free(md.val);
        }

        /* Deterministic: the first call deletes every odd key, each call
         * puts a new key.  Every even key is present and untouched
         * throughout, so it must come, once, with its value. */
        mg_map *m = mode_map(mi, bytes, "range2");
        for (uint64_t i = 0; i < 300; i++)
            T_EQ_I(op_put(m, bytes, i, i), MG_OK);
        drange d = {.m = m, .bytes = bytes, .mutate = true};
        T_EQ_I(mg_range(m, dr_fn, &d), 0);
        for (uint64_t i = 0; i < 300; i += 2)
            if (!d.seen[i])
                T_FAIL("range missed key %llu, present and untouched throughout",
                       (unsigned long long)i);
        if (mi->snapshot) { /* exactly the 300 keys of the start */
            T_EQ_U(d.calls, 300);
            for (uint64_t i = 0; i < 300; i++)
                T_ASSERT(d.seen[i]);
        }
        T_EQ_U(mg_len(m), 150 + d.calls);

        /* Early stop: mg_range returns fn's value; fn is not called again. */
        drange e = {.m = m, .bytes = bytes, .stop_at = 17, .stop_ret = -42};
        T_EQ_I(mg_range(m, dr_fn, &e), -42);
        T_EQ_U(e.calls, 17);
        drange e2 = {.m = m, .bytes = bytes, .stop_at = 1, .stop_ret = 1};
        T_EQ_I(mg_range(m, dr_fn, &e2), 1);
        T_EQ_U(e2.calls, 1);
        /* An iterator left early, then done; a second one runs to the end. */
        mg_iter it;
        size_t n = 0;
        mg_iter_init(&it, m);
        while (n < 5 && mg_iter_next(&it, NULL, NULL, NULL))
            n++;
        mg_iter_done(&it);
        T_EQ_U(n, 5);
        n = 0;
        for (mg_iter_init(&it, m); mg_iter_next(&it, NULL, NULL, NULL);)
            n++;
        T_ASSERT(!mg_iter_next(&it, NULL, NULL, NULL)); /* stays at the end */
        mg_iter_done(&it);
        T_EQ_U(n, mg_len(m));

        /* Empty map: no call, no entry. */
        mg_clear(m);
        drange z = {.m = m, .bytes = bytes};
        T_EQ_I(mg_range(m, dr_fn, &z), 0);
        T_EQ_U(z.calls, 0);
        mg_iter_init(&it, m);
        T_ASSERT(!mg_iter_next(&it, NULL, NULL, NULL));
        mg_iter_done(&it);
        mg_free(m);
    }
}

/* ------------------------------------------------------------------------ */
/* stats and len                                                            */
/* ------------------------------------------------------------------------ */

static void want_stats(mg_map *m, size_t count)
{
    mg_stats s;
    memset(&s, 0xa5, sizeof s);
    T_EQ_I(mg_stats_get(m, &s), MG_OK);
    T_EQ_U(s.count, count);
    T_EQ_U(mg_len(m), count);
    if (count > 0)
        T_ASSERT(s.bytes > 0);
    if (s.buckets > 0) {
        double lf = (double)s.count / (double)s.buckets;
        if (!(s.load_factor > lf - 1e-9 && s.load_factor < lf + 1e-9))
            T_FAIL("load_factor %g, count/buckets %zu/%zu = %g", s.load_factor, s.count,
                   s.buckets, lf);
    }
}

static void c_stats(const mode_info *mi)
{
    for (int bytes = 0; bytes < 2; bytes++) {
        mg_map *m = mode_map(mi, bytes, "stats");
        want_stats(m, 0);
        for (uint64_t i = 0; i < 5000; i++)
            T_EQ_I(op_put(m, bytes, i, i), MG_OK);
        want_stats(m, 5000);
        for (uint64_t i = 0; i < 5000; i++) /* updates add nothing */
            T_EQ_I(op_put(m, bytes, i, i + 1), MG_OK);
        want_stats(m, 5000);
        for (uint64_t i = 0; i < 4000; i++)
            T_ASSERT(op_del(m, bytes, i));
        want_stats(m, 1000);
        uint64_t old;
        for (uint64_t i = 4000; i < 4500; i++)
            T_ASSERT(op_get_and_del(m, bytes, i, &old));
        want_stats(m, 500);
        for (uint64_t i = 4500; i < 4600; i++)
            T_ASSERT(op_cad(m, bytes, i, i + 1));
        want_stats(m, 400);
        for (uint64_t i = 0; i < 100; i++)
            T_EQ_I(op_get_or_put(m, bytes, i, i, NULL, NULL), MG_OK);
        want_stats(m, 500);
        mg_clear(m);
        want_stats(m, 0);
        T_EQ_I(mg_stats_get(m, NULL), MG_EINVAL);
        mg_free(m);
    }
    mg_stats s;
    T_EQ_I(mg_stats_get(NULL, &s), MG_OK);
    T_EQ_U(s.count, 0);
}

/* ------------------------------------------------------------------------ */
/* bad input                                                                */
/* ------------------------------------------------------------------------ */

static void c_badinput(const mode_info *mi)
{
    mg_map *m = mode_map(mi, true, "bad");
    for (uint64_t i = 1; i <= 3; i++)
        T_EQ_I(op_put(m, true, i, i * 10), MG_OK);
    uint64_t v = 0, old = 0, act = 0;
    bool loaded = false;
    /* key == NULL with len > 0 */
    T_EQ_I(mg_put(m, NULL, 5, 1), MG_EINVAL);
    T_ASSERT(!mg_get(m, NULL, 5, &v));
    T_ASSERT(!mg_del(m, NULL, 5));
    T_EQ_I(mg_get_or_put(m, NULL, 5, 1, &act, &loaded), MG_EINVAL);
    T_ASSERT(!mg_get_and_del(m, NULL, 5, &old));
    T_EQ_I(mg_swap(m, NULL, 5, 1, &old, &loaded), MG_EINVAL);
    T_ASSERT(!mg_cas(m, NULL, 5, 0, 1));
    T_ASSERT(!mg_cad(m, NULL, 5, 0));
    /* a key over MG_KEY_MAX: refused before a byte of it is read (the
     * buffer is small; ASan would see a read past it) */
    char small[4] = "abc";
    size_t huge = MG_KEY_MAX + 1;
    T_EQ_I(mg_put(m, small, huge, 1), MG_EKEYLEN);
    T_ASSERT(!mg_get(m, small, huge, &v));
    T_ASSERT(!mg_del(m, small, huge));
    T_EQ_I(mg_get_or_put(m, small, huge, 1, &act, &loaded), MG_EKEYLEN);
    T_ASSERT(!mg_get_and_del(m, small, huge, &old));
    T_EQ_I(mg_swap(m, small, huge, 1, &old, &loaded), MG_EKEYLEN);
    T_ASSERT(!mg_cas(m, small, huge, 0, 1));
    T_ASSERT(!mg_cad(m, small, huge, 0));
    /* nothing changed */
    T_EQ_U(mg_len(m), 3);
    for (uint64_t i = 1; i <= 3; i++)
        want_get(m, true, i, true, i * 10);
    /* NULL with len 0 is the empty key, a key like any other */
    T_EQ_I(mg_put(m, NULL, 0, 9), MG_OK);
    T_ASSERT(mg_get(m, "", 0, &v));
    T_EQ_U(v, 9);
    T_ASSERT(mg_cas(m, NULL, 0, 9, 8));
    T_EQ_I(mg_get_or_put(m, NULL, 0, 1, &act, &loaded), MG_OK);
    T_ASSERT(loaded);
    T_EQ_U(act, 8);
    T_ASSERT(mg_get_and_del(m, "x", 0, &old));
    T_EQ_U(old, 8);
    T_EQ_U(mg_len(m), 3);
    mg_free(m);

    /* Bad options for this mode: NULL and EINVAL. */
    mg_allocator half = {cc_malloc, NULL, cc_free, NULL};
    mg_options o = {.mode = mi->mode, .alloc = &half};
    errno = 0;
    T_ASSERT(mg_new(&o) == NULL);
    T_EQ_I(errno, EINVAL);
    mg_options o2 = {.mode = mi->mode, .key = (mg_keykind)2};
    errno = 0;
    T_ASSERT(mg_new(&o2) == NULL);
    T_EQ_I(errno, EINVAL);
}

/* ------------------------------------------------------------------------ */
/* free with live data                                                      */
/* ------------------------------------------------------------------------ */

static int fl_batch(mg_map *m, void *arg)
{
    bool bytes = *(bool *)arg;
    for (uint64_t i = 50000; i < 50100; i++)
        T_EQ_I(op_put(m, bytes, i, i), MG_OK);
    return 0;
}

static void c_free_live(const mode_info *mi)
{
    for (int bytes = 0; bytes < 2; bytes++) {
        calloc_counter c;
        memset(&c, 0, sizeof c);
        pthread_mutex_init(&c.mu, NULL);
        mg_allocator a = {cc_malloc, cc_calloc, cc_free, &c};
        mg_options o = {.mode = mi->mode, .key = bytes ? MG_KEY_BYTES : MG_KEY_U64,
                        .name = "free_live", .alloc = &a, .shards = 4, .queue = 8};
        mg_map *m = mg_new(&o);
        if (!m)
            T_FAIL("mg_new(%s) with an allocator: NULL, errno %d", mi->name, errno);
        bool b = bytes;
        uint64_t n = bytes ? 6000 : 20000;
        for (uint64_t i = 0; i < n; i++)
            T_EQ_I(op_put(m, b, i, i), MG_OK);
        for (uint64_t i = 0; i < n; i += 3)
            T_ASSERT(op_del(m, b, i));
        for (uint64_t i = 1; i < n; i += 3) {
            uint64_t old;
            T_ASSERT(op_get_and_del(m, b, i, &old));
        }
        for (uint64_t i = n; i < n + 500; i++)
            T_EQ_I(op_get_or_put(m, b, i, i, NULL, NULL), MG_OK);
        mg_iter it;
        int steps = 0;
        mg_iter_init(&it, m);
        while (steps < 10 && mg_iter_next(&it, NULL, NULL, NULL))
            steps++;
        mg_iter_done(&it);
        if (mi->batch)
            T_EQ_I(mg_batch(m, fl_batch, &b), 0);
        T_ASSERT(mg_len(m) > 0);
        /* The map takes its memory from the allocator it was given. */
        pthread_mutex_lock(&c.mu);
        size_t calls = c.calls, live = c.live_bytes;
        pthread_mutex_unlock(&c.mu);
        if (calls == 0 || live == 0)
            T_FAIL("%s map: the allocator given in mg_options was not used", mi->name);
        mg_free(m);
        /* ... and gives every byte back before mg_free returns. */
        pthread_mutex_lock(&c.mu);
        size_t lb = c.live_bytes, lk = c.live_blocks;
        pthread_mutex_unlock(&c.mu);
        if (lb != 0 || lk != 0)
            T_FAIL("%s map (%s keys): after mg_free, %zu bytes in %zu blocks still "
                   "allocated", mi->name, bytes ? "byte" : "u64", lb, lk);
        pthread_mutex_destroy(&c.mu);
    }
}

/* ------------------------------------------------------------------------ */
/* names                                                                    */
/* ------------------------------------------------------------------------ */

static void c_names(const mode_info *mi)
{
    T_STREQ(mg_mode_name(mi->mode), mi->name);
    T_ASSERT(mg_mode_name((mg_mode)(MG_ACTOR + 1)) == NULL);
    T_ASSERT(mg_mode_name((mg_mode)-1) == NULL);
    T_EQ_I(mg_mode_of(NULL), MG_UNSYNC);
    for (int bytes = 0; bytes < 2; bytes++) {
        mg_map *m = mode_map(mi, bytes, "named-map");
        T_EQ_I(mg_mode_of(m), mi->mode);
        T_STREQ(mg_name(m), "named-map");
        T_EQ_I(mg_key_kind(m), bytes ? MG_KEY_BYTES : MG_KEY_U64);
        mg_free(m);
        mg_options o = {.mode = mi->mode, .key = bytes ? MG_KEY_BYTES : MG_KEY_U64};
        m = mg_new(&o);
        T_ASSERT(m);
        T_STREQ(mg_name(m), "");
        T_EQ_I(mg_mode_of(m), mi->mode);
        mg_free(m);
    }
    mg_options bad = {.mode = (mg_mode)(MG_ACTOR + 1)};
    errno = 0;
    T_ASSERT(mg_new(&bad) == NULL);
    T_EQ_I(errno, EINVAL);
}

/* ------------------------------------------------------------------------ */
/* batch_atomic: concurrent readers never see half a batch                  */
/* ------------------------------------------------------------------------ */

#define BA_K 32        /* keys present at any time */
#define BA_SPACE 64    /* key numbers used */
#define BA_START 1000  /* every key's first value */
#define BA_BATCHES 3000

typedef struct {
    const mode_info *mi;
    mg_map *m;
    atomic_int done;
    atomic_ulong checks;
} ba_shared;

typedef struct {
    mg_map *m;
    uint64_t sum;
    size_t count;
} ba_total;

static int ba_total_fn(mg_map *m, void *arg)
{
    ba_total *t = arg;
    t->sum = 0;
    t->count = 0;
    for (uint64_t i = 0; i < BA_SPACE; i++) {
        uint64_t v;
        if (mg_get_u64(m, key_u64(i), &v)) {
            t->sum += v;
            t->count++;
        }
    }
    return 7;
}

static int ba_range_fn(const void *k, size_t klen, uint64_t v, void *arg)
{
    (void)k;
    (void)klen;
    ba_total *t = arg;
    t->sum += v;
    t->count++;
    return 0;
}

static void ba_want(const ba_shared *sh, const char *how, uint64_t sum, size_t count,
                    unsigned long check)
{
    if (sum != (uint64_t)BA_K * BA_START || count != BA_K)
        T_FAIL("%s: %s saw sum %llu over %zu keys, want %llu over %d (check %lu): "
               "half a batch", sh->mi->name, how, (unsigned long long)sum, count,
               (unsigned long long)BA_K * BA_START, BA_K, check);
}

static void *ba_reader(void *arg)
{
    ba_shared *sh = arg;
    unsigned long n = 0;
    for (;;) {
        int last = atomic_load(&sh->done);
        ba_total t = {sh->m, 0, 0};
        T_EQ_I(mg_batch(sh->m, ba_total_fn, &t), 7);
        ba_want(sh, "a read-only batch", t.sum, t.count, n);
        if (sh->mi->atomic_range) {
            t.sum = 0;
            t.count = 0;
            T_EQ_I(mg_range(sh->m, ba_range_fn, &t), 0);
            ba_want(sh, "mg_range", t.sum, t.count, n);
        }
        if (sh->mi->snapshot) {
            mg_iter it;
            uint64_t v;
            t.sum = 0;
            t.count = 0;
            for (mg_iter_init(&it, sh->m); mg_iter_next(&it, NULL, NULL, &v);) {
                t.sum += v;
                t.count++;
            }
            mg_iter_done(&it);
            ba_want(sh, "mg_iter", t.sum, t.count, n);
            size_t len = mg_len(sh->m);
            if (len != BA_K)
                T_FAIL("snapshot: mg_len %zu, want %d: half a batch", len, BA_K);
            mg_stats s;
            T_EQ_I(mg_stats_get(sh->m, &s), MG_OK);
            if (s.count != BA_K)
                T_FAIL("snapshot: stats.count %zu, want %d: half a batch", s.count, BA_K);
        }
        n++;
        if (last)
            break;
    }
    atomic_fetch_add(&sh->checks, n);
    return NULL;
}

typedef struct {
    uint64_t rng;
    bool present[BA_SPACE];
    int kind;
    uint64_t a, b; /* key numbers */
} ba_writer;

static uint64_t ba_pick(ba_writer *w, bool present)
{
    for (;;) {
        uint64_t i = rng_below(&w->rng, BA_SPACE);
        if (w->present[i] == present)
            return i;
    }
}

static int ba_write_fn(mg_map *m, void *arg)
{
    ba_writer *w = arg;
    uint64_t va, vb, old;
    bool loaded;
    switch (w->kind) {
    case 0: /* move an amount from a to b with put */
        T_ASSERT(mg_get_u64(m, key_u64(w->a), &va));
        T_ASSERT(mg_get_u64(m, key_u64(w->b), &vb));
        {
            uint64_t amt = rng_below(&w->rng, va + 1);
            T_EQ_I(mg_put_u64(m, key_u64(w->a), va - amt), MG_OK);
            T_EQ_I(mg_put_u64(m, key_u64(w->b), vb + amt), MG_OK);
        }
        break;
    case 1: /* the same with swap and cas */
        T_ASSERT(mg_get_u64(m, key_u64(w->a), &va));
        T_EQ_I(mg_swap_u64(m, key_u64(w->a), 0, &old, &loaded), MG_OK);
        T_ASSERT(loaded);
        T_EQ_U(old, va);
        T_ASSERT(mg_get_u64(m, key_u64(w->b), &vb));
        T_ASSERT(mg_cas_u64(m, key_u64(w->b), vb, vb + va));
        break;
    case 2: /* rename a to b (b absent) */
        T_ASSERT(mg_get_and_del_u64(m, key_u64(w->a), &va));
        T_EQ_I(mg_get_or_put_u64(m, key_u64(w->b), va, &old, &loaded), MG_OK);
        T_ASSERT(!loaded);
        break;
    default: { /* clear and put everything back */
        uint64_t vals[BA_SPACE];
        for (uint64_t i = 0; i < BA_SPACE; i++)
            if (w->present[i])
                T_ASSERT(mg_get_u64(m, key_u64(i), &vals[i]));
        mg_clear(m);
        T_EQ_U(mg_len(m), 0);
        for (uint64_t i = 0; i < BA_SPACE; i++)
            if (w->present[i])
                T_EQ_I(mg_put_u64(m, key_u64(i), vals[i]), MG_OK);
        break;
    }
    }
    return 0;
}

static void c_batch_atomic(const mode_info *mi)
{
    ba_shared sh = {.mi = mi};
    sh.m = mode_map(mi, false, "batch_atomic");
    ba_writer w = {.rng = base_seed};
    for (uint64_t i = 0; i < BA_K; i++) {
        T_EQ_I(mg_put_u64(sh.m, key_u64(i), BA_START), MG_OK);
        w.present[i] = true;
    }
    pthread_t rd[2];
    for (int t = 0; t < 2; t++)
        T_EQ_I(pthread_create(&rd[t], NULL, ba_reader, &sh), 0);
    for (int n = 0; n < BA_BATCHES; n++) {
        uint64_t r = rng_below(&w.rng, 100);
        w.kind = r < 45 ? 0 : r < 75 ? 1 : r < 98 ? 2 : 3;
        w.a = ba_pick(&w, true);
        do
            w.b = ba_pick(&w, w.kind != 2);
        while (w.b == w.a);
        T_EQ_I(mg_batch(sh.m, ba_write_fn, &w), 0);
        if (w.kind == 2) {
            w.present[w.a] = false;
            w.present[w.b] = true;
        }
    }
    atomic_store(&sh.done, 1);
    for (int t = 0; t < 2; t++)
        T_EQ_I(pthread_join(rd[t], NULL), 0);
    ba_total t = {sh.m, 0, 0};
    T_EQ_I(mg_batch(sh.m, ba_total_fn, &t), 7);
    ba_want(&sh, "the final check", t.sum, t.count, 0);
    fprintf(stderr, "   %d batches, %lu reader checks\n", BA_BATCHES,
            (unsigned long)atomic_load(&sh.checks));
    mg_free(sh.m);
}

/* ------------------------------------------------------------------------ */
/* snapshot_prefix: a range sees one state that existed                     */
/* ------------------------------------------------------------------------ */

#define SP_N 64
#define SP_ROUNDS 400

typedef struct {
    const mode_info *mi;
    mg_map *m;
    bool bytes;
    atomic_int done;
    atomic_ulong checks;
} sp_shared;

typedef struct {
    bool bytes;
    uint64_t v[SP_N];
    unsigned char seen[SP_N];
    size_t n;
} sp_view;

static void sp_add(sp_view *sv, const void *k, size_t klen, uint64_t v)
{
    uint64_t i = key_index(sv->bytes, k, klen);
    if (i >= SP_N)
        T_FAIL("a key that was never stored");
    if (sv->seen[i])
        T_FAIL("key %llu twice", (unsigned long long)i);
    sv->seen[i] = 1;
    sv->v[i] = v;
    sv->n++;
}

static int sp_range_fn(const void *k, size_t klen, uint64_t v, void *arg)
{
    sp_add(arg, k, klen, v);
    return 0;
}

/* The writer puts generation g into keys 0..N-1 in order, so every state
 * that ever existed is: keys 0..j-1 hold g, keys j..N-1 hold g-1. */
static void sp_want(const sp_shared *sh, const char *how, const sp_view *sv)
{
    if (sv->n != SP_N)
        T_FAIL("%s: %s saw %zu keys, want %d", sh->mi->name, how, sv->n, SP_N);
    uint64_t g = sv->v[0];
    size_t j = 0;
    while (j < SP_N && sv->v[j] == g)
        j++;
    for (size_t k = j; k < SP_N; k++) {
        if (sv->v[k] + 1 != g) {
            fprintf(stderr, "values by key:");
            for (size_t x = 0; x < SP_N; x++)
                fprintf(stderr, " %llu", (unsigned long long)sv->v[x]);
            fprintf(stderr, "\n");
            T_FAIL("%s: %s saw a state that never existed: keys 0..%zu hold %llu, then "
                   "key %zu holds %llu (every state is g for a prefix of keys, g-1 after)",
                   sh->mi->name, how, j - 1, (unsigned long long)g, k,
                   (unsigned long long)sv->v[k]);
        }
    }
}

static void *sp_reader(void *arg)
{
    sp_shared *sh = arg;
    unsigned long n = 0;
    for (;;) {
        int last = atomic_load(&sh->done);
        sp_view sv;
        memset(&sv, 0, sizeof sv);
        sv.bytes = sh->bytes;
        T_EQ_I(mg_range(sh->m, sp_range_fn, &sv), 0);
        sp_want(sh, "mg_range", &sv);
        if (sh->mi->snapshot) {
            memset(&sv, 0, sizeof sv);
            sv.bytes = sh->bytes;
            mg_iter it;
            const void *k;
            size_t klen;
            uint64_t v;
            for (mg_iter_init(&it, sh->m); mg_iter_next(&it, &k, &klen, &v);)
                sp_add(&sv, k, klen, v);
            mg_iter_done(&it);
            sp_want(sh, "mg_iter", &sv);
        }
        n++;
        if (last)
            break;
    }
    atomic_fetch_add(&sh->checks, n);
    return NULL;
}

static void c_snapshot_prefix(const mode_info *mi)
{
    for (int bytes = 0; bytes < 2; bytes++) {
        sp_shared sh = {.mi = mi, .bytes = bytes};
        sh.m = mode_map(mi, bytes, "prefix");
        for (uint64_t i = 0; i < SP_N; i++)
            T_EQ_I(op_put(sh.m, bytes, i, 0), MG_OK);
        pthread_t rd[2];
        for (int t = 0; t < 2; t++)
            T_EQ_I(pthread_create(&rd[t], NULL, sp_reader, &sh), 0);
        for (uint64_t g = 1; g <= SP_ROUNDS; g++)
            for (uint64_t i = 0; i < SP_N; i++)
                T_EQ_I(op_put(sh.m, bytes, i, g), MG_OK);
        atomic_store(&sh.done, 1);
        for (int t = 0; t < 2; t++)
            T_EQ_I(pthread_join(rd[t], NULL), 0);
        fprintf(stderr, "   %s keys: %d rounds, %lu reader checks\n", bytes ? "byte" : "u64",
                SP_ROUNDS, (unsigned long)atomic_load(&sh.checks));
        mg_free(sh.m);
    }
}

/* ------------------------------------------------------------------------ */
/* Cases                                                                    */
/* ------------------------------------------------------------------------ */

#define M_UNSYNC (1u << 0)
#define M_RWLOCK (1u << 1)
#define M_SHARDED (1u << 2)
#define M_READMOSTLY (1u << 3)
#define M_SNAPSHOT (1u << 4)
#define M_ACTOR (1u << 5)
#define M_ALL 0x3fu
#define M_BATCH (M_RWLOCK | M_SHARDED | M_SNAPSHOT | M_ACTOR)


static const mode_case cases[] = {
    {"model", c_model, M_ALL},
    {"extras", c_extras, M_ALL},
    {"batch", c_batch, M_ALL},
    {"range", c_range, M_ALL},
    {"stats", c_stats, M_ALL},
    {"badinput", c_badinput, M_ALL},
    {"free_live", c_free_live, M_ALL},
    {"names", c_names, M_ALL},
    {"batch_atomic", c_batch_atomic, M_BATCH},
    {"snapshot_prefix", c_snapshot_prefix, M_SNAPSHOT | M_ACTOR},
    {NULL, NULL, 0},
};

int main(int argc, char **argv)
{
    setvbuf(stderr, NULL, _IOLBF, 0);
    if (argc > 2)
        base_seed = strtoull(argv[2], NULL, 10);
    char banner[64];
    snprintf(banner, sizeof banner, "(seed %llu)", (unsigned long long)base_seed);
    return mode_cases_main(cases, "test_modes", banner, argc, argv);
}
