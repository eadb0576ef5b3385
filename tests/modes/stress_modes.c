/*
 * stress_modes.c - threads racing on every concurrent mode, one ctest test
 * per case and mode (label stress; the ASan build runs them under ASan and
 * LSan, `make test-tsan` under ThreadSanitizer).  Run one by hand with
 *     stress_modes CASE_MODE [SEED]       e.g. stress_modes counters_sharded
 *     stress_modes list                   every case name
 * MG_STRESS_MS (default 1500) is how long the timed cases run;
 * MG_STRESS_SCALE (default 1) scales the shutdown case's rounds (the
 * valgrind test runs it at 0.2).  Nothing is asserted about time: the
 * duration only bounds how much work is done, every check is on results.
 *
 * Cases:
 *   mixed          4 threads, every call of the API on a u64 and a byte-key
 *                  map over 32 hot keys: every value read must be one some
 *                  thread stored for that key; a range or iteration never
 *                  gives a key twice; afterwards len, stats, range and get
 *                  agree
 *   counters       no lost update: 4 threads increment 8 counters with
 *                  get + CAS (get_or_put for an absent counter) while others
 *                  drain them with get_and_del, CAD and swap(0); at the end
 *                  counter + drained == increments, per counter, exactly
 *   batch_counters (modes with mg_batch) half the threads increment inside
 *                  mg_batch (get + put, sometimes two counters), half with
 *                  CAS; the sums are exact
 *   readers        2 writers, each the only writer of its keys, check every
 *                  result of their own calls exactly (swap's old value, CAS,
 *                  get_and_del...); 2 readers check every value they see was
 *                  stored by the key's writer (never torn, never from the
 *                  future) and that get never goes back to an older value
 *   shutdown       maps of the mode created, used by threads, freed (after
 *                  those threads are joined), again and again, also several
 *                  alive at once: no thread is left behind (/proc/self/task)
 *                  and, under LSan or valgrind, nothing leaks
 */
#include "modes_common.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static uint64_t base_seed = 1;
static unsigned stress_ms = 1500;
static double stress_scale = 1.0;

#define NTHREADS 4

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Start n threads on fn(arg[i]); let them run stress_ms (they poll *stop);
 * stop and join them. */
static void run_timed(int n, void *(*fn)(void *), void *args, size_t argsize,
                      atomic_int *stop)
{
    pthread_t th[16];
    T_ASSERT(n <= 16);
    for (int i = 0; i < n; i++)
        T_EQ_I(pthread_create(&th[i], NULL, fn, (char *)args + (size_t)i * argsize), 0);
    sleep_ms(stress_ms);
    atomic_store(stop, 1);
    for (int i = 0; i < n; i++)
        T_EQ_I(pthread_join(th[i], NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* mixed                                                                    */
/* ------------------------------------------------------------------------ */

#define MX_K 32

typedef struct {
    const mode_info *mi;
    mg_map *map[2]; /* u64, bytes */
    atomic_int stop;
} mx_shared;

typedef struct {
    mx_shared *sh;
    int tid;
    uint64_t rng, cnt;
    unsigned long ops;
    bool bytes; /* the map of the current op */
} mx_thread;

/* The index of a key an mg_range or mg_iter produced; fails on a key no
 * thread stored, and on a key produced twice unless the mode allows it (a
 * key another thread deleted and put back is a new entry: mapguard.h, the
 * (*) rows).  *again says it was seen before. */
static uint64_t visit_key(const mode_info *mi, bool bytes, const char *how,
                          unsigned char *seen, uint64_t nkeys, const void *k, size_t klen,
                          bool *again)
{
    uint64_t i = key_index(bytes, k, klen);
    if (i >= nkeys)
        T_FAIL("%s: %s produced a key no thread stored", mi->name, how);
    *again = seen[i] != 0;
    unsigned bit = strcmp(how, "mg_iter") == 0 ? 2u : 1u;
    if (*again && !(mi->conc_reinsert & bit))
        T_FAIL("%s %s map: %s produced key %llu twice", mi->name, bytes ? "byte-key" : "u64",
               how, (unsigned long long)i);
    seen[i] = 1;
    return i;
}

/* Values stored for key i carry i in their high half. */
static uint64_t mx_val(mx_thread *t, uint64_t i)
{
    return (i << 32) | ((uint64_t)t->tid << 24) | (t->cnt++ & 0xffffff);
}
static void mx_check(const mx_thread *t, const char *how, uint64_t i, uint64_t v)
{
    if (v >> 32 != i)
        T_FAIL("%s %s map: %s of key %llu gave %#llx, which no thread stored for it",
               t->sh->mi->name, t->bytes ? "byte-key" : "u64", how, (unsigned long long)i,
               (unsigned long long)v);
}

typedef struct {
    const mx_thread *t;
    const char *how; /* "mg_range" or "mg_iter" */
    unsigned char seen[MX_K];
    size_t n;
} mx_visit;

static void mx_visit_one(mx_visit *vs, const void *k, size_t klen, uint64_t v)
{
    bool again;
    uint64_t i = visit_key(vs->t->sh->mi, vs->t->bytes, vs->how, vs->seen, MX_K, k, klen,
                           &again);
    vs->n += !again;
    mx_check(vs->t, vs->how, i, v);
}
static int mx_range_fn(const void *k, size_t klen, uint64_t v, void *arg)
{
    mx_visit_one(arg, k, klen, v);
    return 0;
}

static void mx_len_ok(const mx_thread *t, size_t n, const char *how)
{
    /* A stale answer is still one that was true once: never above the key
     * space (plus one per thread, for a count updated beside the table). */
    if (n > MX_K + NTHREADS)
        T_FAIL("%s: %s %zu with only %d keys", t->sh->mi->name, how, n, MX_K);
}

static void mx_op(mx_thread *t, mg_map *m, bool inside_batch);

static int mx_batch_fn(mg_map *m, void *arg)
{
    mx_thread *t = arg;
    for (int j = 0; j < 3; j++)
        mx_op(t, m, true);
    return 5;
}

static void mx_op(mx_thread *t, mg_map *m, bool inside_batch)
{
    bool b = t->bytes;
    uint64_t i = rng_below(&t->rng, MX_K), v = 0, old = 0;
    bool loaded = false;
    unsigned r = (unsigned)rng_below(&t->rng, 1000);
    if (r < 150) {
        T_EQ_I(op_put(m, b, i, mx_val(t, i)), MG_OK);
    } else if (r < 350) {
        if (op_get(m, b, i, &v))
            mx_check(t, "get", i, v);
    } else if (r < 420) {
        op_del(m, b, i);
    } else if (r < 500) {
        T_EQ_I(op_get_or_put(m, b, i, mx_val(t, i), &v, &loaded), MG_OK);
        mx_check(t, "get_or_put", i, v);
    } else if (r < 560) {
        if (op_get_and_del(m, b, i, &old))
            mx_check(t, "get_and_del", i, old);
    } else if (r < 620) {
        T_EQ_I(op_swap(m, b, i, mx_val(t, i), &old, &loaded), MG_OK);
        if (loaded)
            mx_check(t, "swap", i, old);
    } else if (r < 720) {
        if (op_get(m, b, i, &v)) {
            mx_check(t, "get", i, v);
            op_cas(m, b, i, v, mx_val(t, i));
        } else {
            op_cas(m, b, i, 0, mx_val(t, i)); /* absent: never inserts */
        }
    } else if (r < 760) {
        if (op_get(m, b, i, &v))
            op_cad(m, b, i, v);
    } else if (r < 780) {
        mx_len_ok(t, mg_len(m), "mg_len");
    } else if (r < 800) {
        mg_stats s;
        T_EQ_I(mg_stats_get(m, &s), MG_OK);
        mx_len_ok(t, s.count, "stats.count");
    } else if (r < 815) {
        mx_visit vs = {.t = t, .how = "mg_range"};
        T_EQ_I(mg_range(m, mx_range_fn, &vs), 0);
        mx_len_ok(t, vs.n, "a range's key count");
    } else if (r < 830) {
        mx_visit vs = {.t = t, .how = "mg_iter"};
        mg_iter it;
        const void *k;
        size_t klen;
        unsigned char kc[BKEY_MAX + 8];
        mg_iter_init(&it, m);
        while (mg_iter_next(&it, &k, &klen, &v)) {
            if (klen > sizeof kc)
                T_FAIL("iterator produced a %zu-byte key", klen);
            memcpy(kc, k, klen);
            mx_visit_one(&vs, kc, klen, v);
        }
        mg_iter_done(&it);
    } else if (r < 860 && !inside_batch) {
        int rc = mg_batch(m, mx_batch_fn, t);
        T_EQ_I(rc, t->sh->mi->batch ? 5 : MG_ENOTSUP);
    } else if (r == 860 && rng_below(&t->rng, 8) == 0) {
        mg_clear(m);
    } else {
        if (op_get(m, b, i, &v))
            mx_check(t, "get", i, v);
    }
    t->ops++;
}

static void *mx_worker(void *arg)
{
    mx_thread *t = arg;
    while (!atomic_load_explicit(&t->sh->stop, memory_order_relaxed)) {
        t->bytes = rng_below(&t->rng, 2);
        mx_op(t, t->sh->map[t->bytes], false);
    }
    return NULL;
}

/* With no thread running: range, len, stats and get agree. */
static void quiet_check(const mode_info *mi, mg_map *m, bool bytes, uint64_t K)
{
    uint64_t *vals = calloc(K, sizeof *vals);
    unsigned char *seen = calloc(K, 1);
    T_ASSERT(vals && seen);
    size_t n = 0;
    mg_iter it;
    const void *k;
    size_t klen;
    uint64_t v;
    for (mg_iter_init(&it, m); mg_iter_next(&it, &k, &klen, &v);) {
        uint64_t i = key_index(bytes, k, klen);
        if (i >= K || seen[i])
            T_FAIL("%s: final iteration: bad or repeated key", mi->name);
        seen[i] = 1;
        vals[i] = v;
        n++;
    }
    mg_iter_done(&it);
    T_EQ_U(mg_len(m), n);
    mg_stats s;
    T_EQ_I(mg_stats_get(m, &s), MG_OK);
    T_EQ_U(s.count, n);
    for (uint64_t i = 0; i < K; i++) {
        bool f = op_get(m, bytes, i, &v);
        if (f != (bool)seen[i] || (f && v != vals[i]))
            T_FAIL("%s: final check, key %llu: get says %d/%llu, iteration %d/%llu",
                   mi->name, (unsigned long long)i, f, (unsigned long long)v, seen[i],
                   (unsigned long long)vals[i]);
    }
    free(vals);
    free(seen);
}

static void c_mixed(const mode_info *mi)
{
    mx_shared sh = {.mi = mi};
    sh.map[0] = mode_map(mi, false, "mixed-u64");
    sh.map[1] = mode_map(mi, true, "mixed-bytes");
    mx_thread th[NTHREADS];
    memset(th, 0, sizeof th);
    for (int i = 0; i < NTHREADS; i++) {
        th[i].sh = &sh;
        th[i].tid = i;
        th[i].rng = base_seed * 100 + (uint64_t)i;
    }
    run_timed(NTHREADS, mx_worker, th, sizeof th[0], &sh.stop);
    unsigned long ops = 0;
    for (int i = 0; i < NTHREADS; i++)
        ops += th[i].ops;
    fprintf(stderr, "   %lu operations\n", ops);
    quiet_check(mi, sh.map[0], false, MX_K);
    quiet_check(mi, sh.map[1], true, MX_K);
    mg_free(sh.map[0]);
    mg_free(sh.map[1]);
}

/* ------------------------------------------------------------------------ */
/* counters: no lost update                                                 */
/* ------------------------------------------------------------------------ */

#define CT_K 8

typedef struct {
    const mode_info *mi;
    mg_map *map[2];
    atomic_int stop;
} ct_shared;

typedef struct {
    ct_shared *sh;
    uint64_t rng;
    bool use_batch;
    uint64_t incr[2][CT_K], drained[2][CT_K];
    unsigned long retries;
} ct_thread;

/* Add one to counter i with get + CAS, or get_or_put when it is absent. */
static void ct_incr_cas(ct_thread *t, mg_map *m, bool b, uint64_t i)
{
    for (;;) {
        uint64_t v;
        if (op_get(m, b, i, &v)) {
            if (op_cas(m, b, i, v, v + 1))
                return;
        } else {
            uint64_t act;
            bool loaded;
            T_EQ_I(op_get_or_put(m, b, i, 1, &act, &loaded), MG_OK);
            if (!loaded)
                return;
        }
        t->retries++;
    }
}

typedef struct {
    bool bytes;
    uint64_t i, j; /* j == i: one counter */
} ct_batch_arg;

static int ct_batch_fn(mg_map *m, void *arg)
{
    ct_batch_arg *a = arg;
    uint64_t v = 0;
    if (!op_get(m, a->bytes, a->i, &v))
        v = 0;
    T_EQ_I(op_put(m, a->bytes, a->i, v + 1), MG_OK);
    /* reads inside see the write */
    uint64_t w = 0;
    T_ASSERT(op_get(m, a->bytes, a->i, &w));
    T_EQ_U(w, v + 1);
    if (a->j != a->i) {
        bool loaded;
        uint64_t old = 0;
        if (op_get(m, a->bytes, a->j, &v))
            T_ASSERT(op_cas(m, a->bytes, a->j, v, v + 1));
        else {
            T_EQ_I(op_swap(m, a->bytes, a->j, 1, &old, &loaded), MG_OK);
            T_ASSERT(!loaded); /* absent a moment ago, inside the same batch */
        }
    }
    return 0;
}

static void *ct_worker(void *arg)
{
    ct_thread *t = arg;
    while (!atomic_load_explicit(&t->sh->stop, memory_order_relaxed)) {
        bool b = rng_below(&t->rng, 2);
        mg_map *m = t->sh->map[b];
        uint64_t i = rng_below(&t->rng, CT_K), v, old;
        bool loaded;
        unsigned r = (unsigned)rng_below(&t->rng, 100);
        if (r < 80) {
            if (t->use_batch) {
                ct_batch_arg a = {b, i, rng_below(&t->rng, 3) ? i : rng_below(&t->rng, CT_K)};
                T_EQ_I(mg_batch(m, ct_batch_fn, &a), 0);
                t->incr[b][a.i]++;
                if (a.j != a.i)
                    t->incr[b][a.j]++;
            } else {
                ct_incr_cas(t, m, b, i);
                t->incr[b][i]++;
            }
        } else if (r < 88) {
            if (op_get_and_del(m, b, i, &old))
                t->drained[b][i] += old;
        } else if (r < 94) {
            if (op_get(m, b, i, &v) && op_cad(m, b, i, v))
                t->drained[b][i] += v;
        } else {
            T_EQ_I(op_swap(m, b, i, 0, &old, &loaded), MG_OK);
            if (loaded)
                t->drained[b][i] += old;
        }
    }
    return NULL;
}

static void counters_run(const mode_info *mi, bool with_batch)
{
    ct_shared sh = {.mi = mi};
    sh.map[0] = mode_map(mi, false, "counters-u64");
    sh.map[1] = mode_map(mi, true, "counters-bytes");
    ct_thread th[NTHREADS];
    memset(th, 0, sizeof th);
    for (int i = 0; i < NTHREADS; i++) {
        th[i].sh = &sh;
        th[i].rng = base_seed * 1000 + (uint64_t)i;
        th[i].use_batch = with_batch && i % 2 == 0;
    }
    run_timed(NTHREADS, ct_worker, th, sizeof th[0], &sh.stop);
    uint64_t total = 0;
    unsigned long retries = 0;
    for (int b = 0; b < 2; b++) {
        for (uint64_t i = 0; i < CT_K; i++) {
            uint64_t incr = 0, drained = 0, v = 0;
            for (int t = 0; t < NTHREADS; t++) {
                incr += th[t].incr[b][i];
                drained += th[t].drained[b][i];
            }
            if (!op_get(sh.map[b], b, i, &v))
                v = 0;
            if (v + drained != incr)
                T_FAIL("%s %s map, counter %llu: %llu in the map + %llu drained != %llu "
                       "increments: %s", mi->name, b ? "byte-key" : "u64",
                       (unsigned long long)i, (unsigned long long)v,
                       (unsigned long long)drained, (unsigned long long)incr,
                       v + drained < incr ? "lost updates" : "updates from nowhere");
            total += incr;
        }
    }
    for (int t = 0; t < NTHREADS; t++)
        retries += th[t].retries;
    fprintf(stderr, "   %llu increments, %lu CAS retries\n", (unsigned long long)total,
            retries);
    T_ASSERT(total > 0);
    quiet_check(mi, sh.map[0], false, CT_K);
    quiet_check(mi, sh.map[1], true, CT_K);
    mg_free(sh.map[0]);
    mg_free(sh.map[1]);
}

static void c_counters(const mode_info *mi)
{
    counters_run(mi, false);
}
static void c_batch_counters(const mode_info *mi)
{
    counters_run(mi, true);
}

/* ------------------------------------------------------------------------ */
/* readers: every value seen was stored by the key's writer                 */
/* ------------------------------------------------------------------------ */

#define RD_K 64
#define RD_W 2
#define RD_R 2

typedef struct {
    const mode_info *mi;
    mg_map *map[2];
    _Atomic uint64_t pub[2][RD_K]; /* highest generation a writer may have stored */
    atomic_int stop;
} rd_shared;

/* The value of generation g of key i: g, i and a check byte. */
static uint8_t rd_chk(uint64_t i, uint64_t g)
{
    uint64_t z = (i * 0x9E3779B97F4A7C15ull) ^ (g * 0xC2B2AE3D27D4EB4Full);
    z ^= z >> 29;
    z *= 0xBF58476D1CE4E5B9ull;
    return (uint8_t)(z >> 56);
}
static uint64_t rd_enc(uint64_t i, uint64_t g)
{
    return (g << 24) | (i << 8) | rd_chk(i, g);
}

typedef struct {
    rd_shared *sh;
    int id;
    uint64_t rng;
    bool bytes; /* the map being read or written now */
    /* writers: each key's last value, and whether it is present */
    uint64_t gen[2][RD_K], last[2][RD_K];
    bool present[2][RD_K];
    /* readers: the newest generation get has shown, per key */
    uint64_t seen_gen[2][RD_K];
    unsigned long ops;
} rd_thread;

/* A value v read for key i: stored by i's writer, not yet overwritten at
 * the time the writer announced it.  Returns its generation. */
static uint64_t rd_check(const rd_thread *t, const char *how, uint64_t i, uint64_t v)
{
    uint64_t g = v >> 24;
    if (((v >> 8) & 0xffff) != i || (v & 0xff) != rd_chk(i, g) || g == 0)
        T_FAIL("%s %s map: %s of key %llu gave %#llx: not a value its writer stored "
               "(torn or garbage)", t->sh->mi->name, t->bytes ? "byte-key" : "u64", how,
               (unsigned long long)i, (unsigned long long)v);
    uint64_t pub = atomic_load_explicit(&t->sh->pub[t->bytes][i], memory_order_acquire);
    if (g > pub)
        T_FAIL("%s %s map: %s of key %llu gave generation %llu, its writer is only at "
               "%llu", t->sh->mi->name, t->bytes ? "byte-key" : "u64", how,
               (unsigned long long)i, (unsigned long long)g, (unsigned long long)pub);
    return g;
}

static void rd_writer_op(rd_thread *t)
{
    bool b = t->bytes;
    mg_map *m = t->sh->map[b];
    /* this writer's keys: i % RD_W == id */
    uint64_t i = rng_below(&t->rng, RD_K / RD_W) * RD_W + (uint64_t)t->id;
    uint64_t g = ++t->gen[b][i], nv = rd_enc(i, g), old = 0, act = 0, v = 0;
    bool loaded = false, pres = t->present[b][i];
    uint64_t last = t->last[b][i];
    atomic_store_explicit(&t->sh->pub[b][i], g, memory_order_release);
    const char *mn = t->sh->mi->name;
    unsigned r = (unsigned)rng_below(&t->rng, 100);
    if (r < 25) {
        T_EQ_I(op_put(m, b, i, nv), MG_OK);
    } else if (r < 45) {
        T_EQ_I(op_swap(m, b, i, nv, &old, &loaded), MG_OK);
        if (loaded != pres || (pres && old != last))
            T_FAIL("%s: the only writer of key %llu swapped: loaded %d old %#llx, want "
                   "%d %#llx", mn, (unsigned long long)i, loaded, (unsigned long long)old,
                   pres, (unsigned long long)last);
    } else if (r < 65) {
        bool ok = op_cas(m, b, i, last, nv);
        if (ok != pres)
            T_FAIL("%s: the only writer of key %llu: cas(%#llx) gave %d, key present %d",
                   mn, (unsigned long long)i, (unsigned long long)last, ok, pres);
        if (!ok) {
            T_EQ_I(op_get_or_put(m, b, i, nv, &act, &loaded), MG_OK);
            if (loaded || act != nv)
                T_FAIL("%s: key %llu, absent, get_or_put: loaded %d actual %#llx", mn,
                       (unsigned long long)i, loaded, (unsigned long long)act);
        }
    } else if (r < 72) {
        bool f = op_get_and_del(m, b, i, &old);
        if (f != pres || (pres && old != last))
            T_FAIL("%s: the only writer of key %llu: get_and_del %d %#llx, want %d %#llx",
                   mn, (unsigned long long)i, f, (unsigned long long)old, pres,
                   (unsigned long long)last);
        t->present[b][i] = false;
        return;
    } else if (r < 78) {
        bool f = op_cad(m, b, i, last);
        if (f != pres)
            T_FAIL("%s: the only writer of key %llu: cad gave %d, present %d", mn,
                   (unsigned long long)i, f, pres);
        t->present[b][i] = false;
        return;
    } else if (r < 82) {
        bool f = op_del(m, b, i);
        if (f != pres)
            T_FAIL("%s: the only writer of key %llu: del gave %d, present %d", mn,
                   (unsigned long long)i, f, pres);
        t->present[b][i] = false;
        return;
    } else if (r < 90) {
        T_EQ_I(op_get_or_put(m, b, i, nv, &act, &loaded), MG_OK);
        if (loaded != pres || act != (pres ? last : nv))
            T_FAIL("%s: the only writer of key %llu: get_or_put loaded %d actual %#llx, "
                   "want %d %#llx", mn, (unsigned long long)i, loaded,
                   (unsigned long long)act, pres, (unsigned long long)(pres ? last : nv));
        if (pres)
            return; /* nothing stored */
    } else {
        bool f = op_get(m, b, i, &v);
        if (f != pres || (pres && v != last))
            T_FAIL("%s: the only writer of key %llu reads %d %#llx, it wrote %d %#llx", mn,
                   (unsigned long long)i, f, (unsigned long long)v, pres,
                   (unsigned long long)last);
        return;
    }
    t->present[b][i] = true;
    t->last[b][i] = nv;
}

typedef struct {
    rd_thread *t;
    const char *how;
    unsigned char seen[RD_K];
} rd_visit;

static void rd_visit_one(rd_visit *vs, const void *k, size_t klen, uint64_t v)
{
    bool again;
    uint64_t i = visit_key(vs->t->sh->mi, vs->t->bytes, vs->how, vs->seen, RD_K, k, klen,
                           &again);
    rd_check(vs->t, vs->how, i, v);
}
static int rd_range_fn(const void *k, size_t klen, uint64_t v, void *arg)
{
    rd_visit_one(arg, k, klen, v);
    return 0;
}
static int rd_batch_fn(mg_map *m, void *arg)
{
    rd_thread *t = arg;
    for (uint64_t i = 0; i < RD_K; i++) {
        uint64_t v;
        if (op_get(m, t->bytes, i, &v))
            rd_check(t, "get in a batch", i, v);
    }
    return 0;
}

static void rd_reader_op(rd_thread *t)
{
    bool b = t->bytes;
    mg_map *m = t->sh->map[b];
    unsigned r = (unsigned)rng_below(&t->rng, 100);
    if (r < 70) {
        uint64_t i = rng_below(&t->rng, RD_K), v;
        if (op_get(m, b, i, &v)) {
            uint64_t g = rd_check(t, "get", i, v);
            if (g < t->seen_gen[b][i])
                T_FAIL("%s %s map: get of key %llu went back from generation %llu to "
                       "%llu", t->sh->mi->name, b ? "byte-key" : "u64",
                       (unsigned long long)i, (unsigned long long)t->seen_gen[b][i],
                       (unsigned long long)g);
            t->seen_gen[b][i] = g;
        }
    } else if (r < 80) {
        rd_visit vs = {.t = t, .how = "mg_range"};
        T_EQ_I(mg_range(m, rd_range_fn, &vs), 0);
    } else if (r < 90) {
        rd_visit vs = {.t = t, .how = "mg_iter"};
        mg_iter it;
        const void *k;
        size_t klen;
        uint64_t v;
        unsigned char kc[BKEY_MAX + 8];
        for (mg_iter_init(&it, m); mg_iter_next(&it, &k, &klen, &v);) {
            if (klen > sizeof kc)
                T_FAIL("iterator produced a %zu-byte key", klen);
            memcpy(kc, k, klen);
            rd_visit_one(&vs, kc, klen, v);
        }
        mg_iter_done(&it);
    } else if (r < 95) {
        size_t n = mg_len(m);
        if (n > RD_K + RD_W)
            T_FAIL("%s: mg_len %zu with %d keys", t->sh->mi->name, n, RD_K);
        mg_stats s;
        T_EQ_I(mg_stats_get(m, &s), MG_OK);
        if (s.count > RD_K + RD_W)
            T_FAIL("%s: stats.count %zu with %d keys", t->sh->mi->name, s.count, RD_K);
    } else {
        int rc = mg_batch(m, rd_batch_fn, t);
        T_EQ_I(rc, t->sh->mi->batch ? 0 : MG_ENOTSUP);
    }
}

static void *rd_worker(void *arg)
{
    rd_thread *t = arg;
    while (!atomic_load_explicit(&t->sh->stop, memory_order_relaxed)) {
        t->bytes = rng_below(&t->rng, 2);
        if (t->id < RD_W)
            rd_writer_op(t);
        else
            rd_reader_op(t);
        t->ops++;
    }
    return NULL;
}

static void c_readers(const mode_info *mi)
{
    rd_shared *sh = calloc(1, sizeof *sh);
    rd_thread *th = calloc(RD_W + RD_R, sizeof *th);
    T_ASSERT(sh && th);
    sh->mi = mi;
    sh->map[0] = mode_map(mi, false, "readers-u64");
    sh->map[1] = mode_map(mi, true, "readers-bytes");
    for (int i = 0; i < RD_W + RD_R; i++) {
        th[i].sh = sh;
        th[i].id = i;
        th[i].rng = base_seed * 10000 + (uint64_t)i;
    }
    run_timed(RD_W + RD_R, rd_worker, th, sizeof th[0], &sh->stop);
    unsigned long wops = 0, rops = 0;
    for (int i = 0; i < RD_W + RD_R; i++)
        *(i < RD_W ? &wops : &rops) += th[i].ops;
    fprintf(stderr, "   %lu writer and %lu reader operations\n", wops, rops);
    /* Quiet now: each key holds exactly what its writer last left. */
    for (int b = 0; b < 2; b++) {
        for (uint64_t i = 0; i < RD_K; i++) {
            const rd_thread *w = &th[i % RD_W];
            uint64_t v = 0;
            bool f = op_get(sh->map[b], b, i, &v);
            if (f != w->present[b][i] || (f && v != w->last[b][i]))
                T_FAIL("%s: at the end key %llu is %d %#llx, its writer left %d %#llx",
                       mi->name, (unsigned long long)i, f, (unsigned long long)v,
                       w->present[b][i], (unsigned long long)w->last[b][i]);
        }
        quiet_check(mi, sh->map[b], b, RD_K);
    }
    mg_free(sh->map[0]);
    mg_free(sh->map[1]);
    free(sh);
    free(th);
}

/* ------------------------------------------------------------------------ */
/* shutdown: no thread and no byte left behind                              */
/* ------------------------------------------------------------------------ */

static int count_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        T_FAIL("opendir /proc/self/task: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

typedef struct {
    const mode_info *mi;
    mg_map *m;
    bool bytes;
    uint64_t rng;
    int nops;
} sd_arg;

static int sd_batch_fn(mg_map *m, void *arg)
{
    sd_arg *a = arg;
    for (uint64_t i = 0; i < 20; i++)
        T_EQ_I(op_put(m, a->bytes, 500 + i, i), MG_OK);
    return 0;
}
static int sd_range_fn(const void *k, size_t klen, uint64_t v, void *arg)
{
    (void)k;
    (void)klen;
    (void)v;
    return ++*(int *)arg == 50; /* stop early now and then */
}

static void *sd_worker(void *arg)
{
    sd_arg *a = arg;
    for (int n = 0; n < a->nops; n++) {
        uint64_t i = rng_below(&a->rng, 600), v;
        bool loaded;
        switch (rng_below(&a->rng, 12)) {
        case 0: case 1: case 2:
            T_EQ_I(op_put(a->m, a->bytes, i, i), MG_OK);
            break;
        case 3:
            op_get(a->m, a->bytes, i, &v);
            break;
        case 4:
            op_del(a->m, a->bytes, i);
            break;
        case 5:
            T_EQ_I(op_swap(a->m, a->bytes, i, i, &v, &loaded), MG_OK);
            break;
        case 6:
            op_get_and_del(a->m, a->bytes, i, &v);
            break;
        case 7:
            T_EQ_I(op_get_or_put(a->m, a->bytes, i, i, &v, &loaded), MG_OK);
            break;
        case 8: {
            int c = 0;
            mg_range(a->m, sd_range_fn, &c);
            break;
        }
        case 9: {
            mg_iter it;
            int c = 0;
            mg_iter_init(&it, a->m);
            while (c++ < 30 && mg_iter_next(&it, NULL, NULL, NULL))
                ;
            mg_iter_done(&it);
            break;
        }
        case 10:
            T_EQ_I(mg_batch(a->m, sd_batch_fn, a), a->mi->batch ? 0 : MG_ENOTSUP);
            break;
        default:
            if (rng_below(&a->rng, 20) == 0)
                mg_clear(a->m);
            else
                op_cas(a->m, a->bytes, i, i, i + 1);
            break;
        }
    }
    return NULL;
}

/* Use m from nthreads threads, join them. */
static void sd_use(const mode_info *mi, mg_map *m, bool bytes, int nthreads, int nops,
                   uint64_t seed)
{
    pthread_t th[4];
    sd_arg a[4];
    for (int t = 0; t < nthreads; t++) {
        a[t] = (sd_arg){mi, m, bytes, seed * 7 + (uint64_t)t, nops};
        T_EQ_I(pthread_create(&th[t], NULL, sd_worker, &a[t]), 0);
    }
    for (int t = 0; t < nthreads; t++)
        T_EQ_I(pthread_join(th[t], NULL), 0);
}

static void c_shutdown(const mode_info *mi)
{
    int rounds = (int)(20 * stress_scale), quick = (int)(60 * stress_scale);
    if (rounds < 2)
        rounds = 2;
    if (quick < 4)
        quick = 4;
    /* Warm up first: a library may start one thread per process (an RCU
     * callback thread) the first time any map needs it.  Only threads
     * that outlive their map count as left behind. */
    for (int bytes = 0; bytes < 2; bytes++) {
        mg_map *w = mode_map(mi, bytes, "warmup");
        sd_use(mi, w, bytes, 3, 300, base_seed + 99);
        mg_free(w);
    }
    int base = count_tasks();
    fprintf(stderr, "   %d tasks after warm-up\n", base);
    uint64_t seed = base_seed;
    for (int r = 0; r < rounds; r++) {
        for (int bytes = 0; bytes < 2; bytes++) {
            mg_map *m = mode_map(mi, bytes, "shutdown");
            sd_use(mi, m, bytes, 3, 300, seed++);
            mg_free(m); /* with whatever the threads left in it */
        }
    }
    /* created and freed at once, or after one call */
    for (int r = 0; r < quick; r++) {
        mg_map *m = mode_map(mi, r % 2, "quick");
        if (r % 3 == 1)
            T_EQ_I(op_put(m, r % 2, 1, 1), MG_OK);
        mg_free(m);
    }
    /* several alive at once, each used by two threads */
    mg_map *many[8];
    for (int j = 0; j < 8; j++)
        many[j] = mode_map(mi, j % 2, "many");
    for (int j = 0; j < 8; j++)
        sd_use(mi, many[j], j % 2, 2, 100, seed++);
    for (int j = 0; j < 8; j++)
        mg_free(many[j]);
    /* A joined thread's task can stay in /proc for a moment after the join
     * returns (the kernel reaps it asynchronously): wait for it, but not
     * for ever. */
    int now = count_tasks();
    for (int waited = 0; now > base && waited < 10000; waited += 10) {
        sleep_ms(10);
        now = count_tasks();
    }
    if (now != base)
        T_FAIL("%s: %d tasks after freeing every map, %d before: threads left behind",
               mi->name, now, base);
    fprintf(stderr, "   %d rounds, %d quick maps: %d tasks at the end\n", rounds, quick, now);
}

/* ------------------------------------------------------------------------ */
/* Cases                                                                    */
/* ------------------------------------------------------------------------ */

#define M_RWLOCK (1u << 1)
#define M_SHARDED (1u << 2)
#define M_READMOSTLY (1u << 3)
#define M_SNAPSHOT (1u << 4)
#define M_ACTOR (1u << 5)
#define M_CONC (M_RWLOCK | M_SHARDED | M_READMOSTLY | M_SNAPSHOT | M_ACTOR)
#define M_BATCH (M_RWLOCK | M_SHARDED | M_SNAPSHOT | M_ACTOR)


static const mode_case cases[] = {
    {"mixed", c_mixed, M_CONC},
    {"counters", c_counters, M_CONC},
    {"batch_counters", c_batch_counters, M_BATCH},
    {"readers", c_readers, M_CONC},
    {"shutdown", c_shutdown, M_CONC},
    {NULL, NULL, 0},
};

int main(int argc, char **argv)
{
    setvbuf(stderr, NULL, _IOLBF, 0);
    if (argc > 2)
        base_seed = strtoull(argv[2], NULL, 10);
    const char *e = getenv("MG_STRESS_MS");
    if (e && *e)
        stress_ms = (unsigned)strtoul(e, NULL, 10);
    e = getenv("MG_STRESS_SCALE");
    if (e && *e)
        stress_scale = strtod(e, NULL);
    char banner[96];
    snprintf(banner, sizeof banner, "(seed %llu, %u ms)", (unsigned long long)base_seed,
             stress_ms);
    return mode_cases_main(cases, "stress_modes", banner, argc, argv);
}
