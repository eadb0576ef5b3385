/*
 * bench_mapguard.c - the standard workload (/work/shared/workload.md) on
 * mapguard, through the public header only.
 *
 *   bench_mapguard --n N --phases u64,str,latency [--verify]
 *
 * Its twins bench_absl.cc and go/bench_go.go take the same command line and
 * print the same lines; mapguard-bench-compare runs the three alternately.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <mapguard.h>

static const char *const IMPL = "mapguard";

static mg_map *new_map(const bh_args *a, mg_keykind kind)
{
    mg_options o;
    mg_map *m;
    memset(&o, 0, sizeof o);
    o.mode = MG_UNSYNC;
    o.key = kind;
    o.hint = 0; /* the workload: no size hint */
    o.name = "bench";
    m = mg_new(&o);
    if (m == NULL)
        bh_fail(a, "mg_new failed");
    return m;
}

static void check_len(const bh_args *a, const mg_map *m, size_t want,
                      const char *after)
{
    size_t got = mg_len(m);
    if (got != want)
        bh_fail(a, "len after %s is %zu, want %zu", after, got, want);
}

/* u64 keys: insert, lookup-hit (shuffled), lookup-miss, delete, memory. */
static void phase_u64(const bh_args *a, const bh_u64_data *d)
{
    const size_t n = d->n;
    const uint64_t *keys = d->keys, *miss = d->miss, *hkeys = d->hkeys;
    const uint32_t *order = d->order;
    uint64_t rss0, rss1, peak1, t0, t1, sum, want_sum;
    size_t i, bad;
    mg_map *m;

    wl_reset_peak_rss();
    rss0 = wl_rss_bytes();
    m = new_map(a, MG_KEY_U64);

    /* 1. insert */
    bad = 0;
    t0 = wl_now_ns();
    for (i = 0; i < n; i++)
        bad += mg_put_u64(m, keys[i], (uint64_t)i + 1) != MG_OK;
    t1 = wl_now_ns();
    rss1 = wl_rss_bytes();
    peak1 = wl_peak_rss_bytes();
    if (bad != 0)
        bh_fail(a, "u64 insert: %zu puts failed", bad);
    if (a->verify)
        check_len(a, m, n, "u64 insert");
    bh_result(a, "u64", "insert", (double)(t1 - t0) / (double)n, "ns/op");
    bh_result(a, "u64", "mem", bh_per_entry(rss1, rss0, n), "B/entry");
    bh_result(a, "u64", "mempeak", bh_per_entry(peak1, rss0, n), "B/entry");

    /* 2. lookup-hit, shuffled: every key hits with value i + 1 */
    bad = 0;
    sum = 0;
    t0 = wl_now_ns();
    for (i = 0; i < n; i++) {
        uint64_t v = 0;
        bool found = mg_get_u64(m, hkeys[i], &v);
        sum += v;
        bad += (size_t)(!found | (v != (uint64_t)order[i] + 1));
    }
    t1 = wl_now_ns();
    want_sum = (uint64_t)n * ((uint64_t)n + 1) / 2;
    if (bad != 0 || sum != want_sum)
        bh_fail(a, "u64 hit: %zu wrong lookups, checksum %llu want %llu", bad,
                (unsigned long long)sum, (unsigned long long)want_sum);
    if (a->verify)
        check_len(a, m, n, "u64 hit");
    bh_result(a, "u64", "hit", (double)(t1 - t0) / (double)n, "ns/op");

    /* 3. lookup-miss: every absent key misses */
    bad = 0;
    sum = 0;
    t0 = wl_now_ns();
    for (i = 0; i < n; i++) {
        uint64_t v = 0;
        bad += mg_get_u64(m, miss[i], &v);
        sum += v;
    }
    t1 = wl_now_ns();
    if (bad != 0 || sum != 0)
        bh_fail(a, "u64 miss: %zu absent keys found", bad);
    if (a->verify)
        check_len(a, m, n, "u64 miss");
    bh_result(a, "u64", "miss", (double)(t1 - t0) / (double)n, "ns/op");

    /* 4. delete, in insertion order: every delete finds its key */
    bad = 0;
    t0 = wl_now_ns();
    for (i = 0; i < n; i++)
        bad += !mg_del_u64(m, keys[i]);
    t1 = wl_now_ns();
    if (bad != 0)
        bh_fail(a, "u64 delete: %zu deletes found no key", bad);
    if (a->verify) {
        check_len(a, m, 0, "u64 delete");
        for (i = 0; i < n; i++)
            if (mg_get_u64(m, keys[i], NULL))
                bh_fail(a, "u64 delete: key %zu still present", i);
    }
    bh_result(a, "u64", "delete", (double)(t1 - t0) / (double)n, "ns/op");
    mg_free(m);
}

/* String keys: insert, lookup-hit (shuffled). */
static void phase_str(const bh_args *a, const bh_str_data *d)
{
    const size_t n = d->n;
    const char *skeys = d->skeys, *hskeys = d->hskeys;
    const uint32_t *hval = d->hval;
    uint64_t t0, t1, sum;
    size_t i, bad;
    mg_map *m = new_map(a, MG_KEY_BYTES);

    bad = 0;
    t0 = wl_now_ns();
    for (i = 0; i < n; i++)
        bad += mg_put(m, skeys + i * WL_STR_LEN, WL_STR_LEN,
                      (uint64_t)i + 1) != MG_OK;
    t1 = wl_now_ns();
    if (bad != 0)
        bh_fail(a, "str insert: %zu puts failed", bad);
    if (a->verify)
        check_len(a, m, d->distinct, "str insert");
    bh_result(a, "str", "insert", (double)(t1 - t0) / (double)n, "ns/op");

    bad = 0;
    sum = 0;
    t0 = wl_now_ns();
    for (i = 0; i < n; i++) {
        uint64_t v = 0;
        bool found = mg_get(m, hskeys + i * WL_STR_LEN, WL_STR_LEN, &v);
        sum += v;
        bad += (size_t)(!found | (v != (uint64_t)hval[i]));
    }
    t1 = wl_now_ns();
    if (bad != 0 || sum != d->hsum)
        bh_fail(a, "str hit: %zu wrong lookups, checksum %llu want %llu", bad,
                (unsigned long long)sum, (unsigned long long)d->hsum);
    if (a->verify)
        check_len(a, m, d->distinct, "str hit");
    bh_result(a, "str", "hit", (double)(t1 - t0) / (double)n, "ns/op");
    mg_free(m);
}

/* Latency during growth: N inserts, no hint, each batch of BH_BATCH timed.
 * A last partial batch is inserted but not timed. */
static void phase_latency(const bh_args *a, const bh_u64_data *d)
{
    const size_t n = d->n, nb = n / BH_BATCH;
    const uint64_t *keys = d->keys;
    uint64_t *batch = (uint64_t *)bh_alloc(a, nb > 0 ? nb : 1, sizeof *batch);
    uint64_t t, t2;
    size_t b, i, bad = 0;
    mg_map *m = new_map(a, MG_KEY_U64);

    t = wl_now_ns();
    for (b = 0; b < nb; b++) {
        const size_t base = b * BH_BATCH;
        for (i = base; i < base + BH_BATCH; i++)
            bad += mg_put_u64(m, keys[i], (uint64_t)i + 1) != MG_OK;
        t2 = wl_now_ns();
        batch[b] = t2 - t;
        t = t2;
    }
    for (i = nb * BH_BATCH; i < n; i++)
        bad += mg_put_u64(m, keys[i], (uint64_t)i + 1) != MG_OK;
    if (bad != 0)
        bh_fail(a, "latency: %zu puts failed", bad);
    if (a->verify) {
        check_len(a, m, n, "latency insert");
        for (i = 0; i < n; i++) {
            uint64_t v = 0;
            if (!mg_get_u64(m, keys[i], &v) || v != (uint64_t)i + 1)
                bh_fail(a, "latency: key %zu lost or wrong", i);
        }
    }
    mg_free(m);
    bh_latency_report(a, batch, nb);
    free(batch);
}

int main(int argc, char **argv)
{
    bh_args a;
    bh_u64_data u64;
    int rc = bh_parse(&a, IMPL, argc, argv), p;
    if (rc != 0)
        return rc;
    memset(&u64, 0, sizeof u64);
    for (p = 0; p < a.nphases; p++) {
        switch (a.phases[p]) {
        case BH_PHASE_U64:
            if (u64.keys == NULL)
                bh_u64_data_make(&a, &u64);
            phase_u64(&a, &u64);
            break;
        case BH_PHASE_STR: {
            bh_str_data s;
            bh_str_data_make(&a, &s);
            phase_str(&a, &s);
            bh_str_data_free(&s);
            break;
        }
        case BH_PHASE_LATENCY:
            if (u64.keys == NULL)
                bh_u64_data_make(&a, &u64);
            phase_latency(&a, &u64);
            break;
        }
    }
    bh_u64_data_free(&u64);
    return 0;
}
