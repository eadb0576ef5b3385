/*
 * harness.h - what the C and C++ benchmark programs share besides the
 * workload: the command line, the pre-generated key arrays, the result lines
 * and the latency percentiles.  The map calls themselves live in each
 * program, written out in full, so that no indirect call sits in a timed
 * loop.  bench/go/bench_go.go mirrors this file.
 *
 * Command line (identical for every program):
 *   PROG --n N --phases LIST [--verify]
 *   LIST: comma list of u64, str, latency, run in the order given.
 *
 * Output, one line per result:
 *   result impl=I keys=K n=N phase=P value=V unit=U
 * Errors go to stderr, and the program exits 1 (2 for a bad command line).
 */
#ifndef MG_BENCH_HARNESS_H
#define MG_BENCH_HARNESS_H

#include "workload.h"

#include <errno.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Inserts per timed batch in the latency phase. */
#define BH_BATCH 64
#define BH_MAX_PHASES 8

typedef enum { BH_PHASE_U64, BH_PHASE_STR, BH_PHASE_LATENCY } bh_phase;

typedef struct {
    const char *impl; /* "mapguard", "absl", "go" */
    size_t n;
    int verify;
    int nphases;
    bh_phase phases[BH_MAX_PHASES];
} bh_args;

static inline void bh_usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s --n N --phases LIST [--verify]\n"
            "  LIST  comma list of: u64 (insert, hit, miss, delete, mem),\n"
            "        str (string insert, hit), latency (growth latency)\n"
            "  --verify  also check the map's length after every phase\n",
            prog);
}

/* Print "PROG: error: ..." to stderr and exit 1. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3), noreturn))
#endif
static inline void
bh_fail(const bh_args *a, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "bench_%s: error: ", a->impl);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static inline int bh_parse_phases(bh_args *a, const char *list)
{
    const char *p = list;
    a->nphases = 0;
    while (*p != '\0') {
        const char *e = strchr(p, ',');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        bh_phase ph;
        if (len == 3 && strncmp(p, "u64", 3) == 0)
            ph = BH_PHASE_U64;
        else if (len == 3 && strncmp(p, "str", 3) == 0)
            ph = BH_PHASE_STR;
        else if (len == 7 && strncmp(p, "latency", 7) == 0)
            ph = BH_PHASE_LATENCY;
        else {
            fprintf(stderr, "bench_%s: unknown phase '%.*s'\n", a->impl,
                    (int)len, p);
            return -1;
        }
        if (a->nphases == BH_MAX_PHASES) {
            fprintf(stderr, "bench_%s: too many phases\n", a->impl);
            return -1;
        }
        a->phases[a->nphases++] = ph;
        p += len;
        if (*p == ',')
            p++;
    }
    return a->nphases > 0 ? 0 : -1;
}

/* Parse the command line.  Returns 0, or the exit status to leave with. */
static inline int bh_parse(bh_args *a, const char *impl, int argc, char **argv)
{
    int i;
    const char *nval = NULL, *phases = NULL;
    memset(a, 0, sizeof *a);
    a->impl = impl;
    for (i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--verify") == 0) {
            a->verify = 1;
        } else if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            bh_usage(stdout, argv[0]);
            exit(0);
        } else if (strcmp(s, "--n") == 0 && i + 1 < argc) {
            nval = argv[++i];
        } else if (strncmp(s, "--n=", 4) == 0) {
            nval = s + 4;
        } else if (strcmp(s, "--phases") == 0 && i + 1 < argc) {
            phases = argv[++i];
        } else if (strncmp(s, "--phases=", 9) == 0) {
            phases = s + 9;
        } else {
            fprintf(stderr, "bench_%s: bad argument '%s'\n", impl, s);
            bh_usage(stderr, argv[0]);
            return 2;
        }
    }
    if (nval == NULL || phases == NULL) {
        bh_usage(stderr, argv[0]);
        return 2;
    }
    {
        char *end;
        unsigned long long v;
        errno = 0;
        v = strtoull(nval, &end, 10);
        if (errno != 0 || *end != '\0' || v < 1 || v > UINT32_MAX / 2) {
            fprintf(stderr, "bench_%s: bad --n '%s'\n", impl, nval);
            return 2;
        }
        a->n = (size_t)v;
    }
    if (bh_parse_phases(a, phases) != 0) {
        bh_usage(stderr, argv[0]);
        return 2;
    }
    return 0;
}

static inline void bh_result(const bh_args *a, const char *keys,
                             const char *phase, double value, const char *unit)
{
    printf("result impl=%s keys=%s n=%zu phase=%s value=%.3f unit=%s\n",
           a->impl, keys, a->n, phase, value, unit);
    fflush(stdout);
}

static inline void *bh_alloc(const bh_args *a, size_t count, size_t size)
{
    void *p = calloc(count, size);
    if (p == NULL)
        bh_fail(a, "out of memory (%zu x %zu bytes)", count, size);
    return p;
}

/* The u64 keys, generated before anything is timed.
 *   keys[i]   = key(i), inserted with value i + 1, in this order
 *   miss[i]   = key(N + i)
 *   order[j]  = the shuffled order; hkeys[j] = keys[order[j]] */
typedef struct {
    size_t n;
    uint64_t *keys, *miss, *hkeys;
    uint32_t *order;
} bh_u64_data;

static inline void bh_u64_data_make(const bh_args *a, bh_u64_data *d)
{
    size_t i, n = a->n;
    d->n = n;
    d->keys = (uint64_t *)bh_alloc(a, n, sizeof(uint64_t));
    d->miss = (uint64_t *)bh_alloc(a, n, sizeof(uint64_t));
    d->hkeys = (uint64_t *)bh_alloc(a, n, sizeof(uint64_t));
    d->order = (uint32_t *)bh_alloc(a, n, sizeof(uint32_t));
    for (i = 0; i < n; i++) {
        d->keys[i] = wl_key(i);
        d->miss[i] = wl_key(n + i);
    }
    wl_shuffled_order(d->order, n);
    for (i = 0; i < n; i++)
        d->hkeys[i] = d->keys[d->order[i]];
}

static inline void bh_u64_data_free(bh_u64_data *d)
{
    free(d->keys);
    free(d->miss);
    free(d->hkeys);
    free(d->order);
    memset(d, 0, sizeof *d);
}

/* The string keys, WL_STR_LEN bytes each, back to back:
 *   skeys + i*WL_STR_LEN   the key of index i (insertion order)
 *   hskeys + j*WL_STR_LEN  the key of index order[j] (shuffled order)
 *   hval[j]                the value a lookup of hskeys[j] must find
 * key(i) % 10^12 is not one-to-one: at N = 1,000,000 two indices share a
 * string (the birthday bound says about N^2 / 2e12 pairs).  The later insert
 * updates the earlier one's value, so a key's expected value is the last
 * index with that string, plus one, and the map holds `distinct` entries. */
typedef struct {
    size_t n, distinct;
    char *skeys, *hskeys;
    uint32_t *hval;
    uint64_t hsum; /* sum of hval[], the hit phase's checksum */
} bh_str_data;

typedef struct {
    char k[WL_STR_LEN];
    uint32_t i;
} bh_str_idx;

static inline int bh_cmp_str_idx(const void *x, const void *y)
{
    const bh_str_idx *a = (const bh_str_idx *)x, *b = (const bh_str_idx *)y;
    int c = memcmp(a->k, b->k, WL_STR_LEN);
    if (c != 0)
        return c;
    return (a->i > b->i) - (a->i < b->i);
}

static inline void bh_str_data_make(const bh_args *a, bh_str_data *d)
{
    size_t i, g, n = a->n;
    uint32_t *order = (uint32_t *)bh_alloc(a, n, sizeof(uint32_t));
    uint32_t *val = (uint32_t *)bh_alloc(a, n, sizeof(uint32_t));
    bh_str_idx *idx = (bh_str_idx *)bh_alloc(a, n, sizeof(bh_str_idx));
    d->n = n;
    d->skeys = (char *)bh_alloc(a, n, WL_STR_LEN);
    d->hskeys = (char *)bh_alloc(a, n, WL_STR_LEN);
    d->hval = (uint32_t *)bh_alloc(a, n, sizeof(uint32_t));
    for (i = 0; i < n; i++) {
        wl_str_key(d->skeys + i * WL_STR_LEN, i);
        memcpy(idx[i].k, d->skeys + i * WL_STR_LEN, WL_STR_LEN);
        idx[i].i = (uint32_t)i;
    }
    /* Group equal strings; each group's last index gives the value. */
    qsort(idx, n, sizeof *idx, bh_cmp_str_idx);
    d->distinct = 0;
    for (i = 0; i < n; i = g) {
        for (g = i + 1; g < n && memcmp(idx[g].k, idx[i].k, WL_STR_LEN) == 0;)
            g++;
        d->distinct++;
        while (i < g)
            val[idx[i++].i] = idx[g - 1].i + 1;
    }
    free(idx);
    wl_shuffled_order(order, n);
    d->hsum = 0;
    for (i = 0; i < n; i++) {
        memcpy(d->hskeys + i * WL_STR_LEN,
               d->skeys + (size_t)order[i] * WL_STR_LEN, WL_STR_LEN);
        d->hval[i] = val[order[i]];
        d->hsum += val[order[i]];
    }
    free(order);
    free(val);
}

static inline void bh_str_data_free(bh_str_data *d)
{
    free(d->skeys);
    free(d->hskeys);
    free(d->hval);
    memset(d, 0, sizeof *d);
}

static inline int bh_cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* Nearest-rank percentile p (0 < p <= 1) of sorted[0..n-1]. */
static inline uint64_t bh_percentile(const uint64_t *sorted, size_t n, double p)
{
    double r = p * (double)n;
    size_t k = (size_t)r;
    if ((double)k < r)
        k++; /* ceil */
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return sorted[k - 1];
}

/* Report the latency phase from the batch times (ns per BH_BATCH inserts):
 * per-insert p50, p99, p99.9 (batch time / BH_BATCH) and the worst batch.
 * Sorts batch_ns in place. */
static inline void bh_latency_report(const bh_args *a, uint64_t *batch_ns,
                                     size_t nbatches)
{
    if (nbatches == 0)
        bh_fail(a, "latency: --n must be at least %d", BH_BATCH);
    qsort(batch_ns, nbatches, sizeof *batch_ns, bh_cmp_u64);
    bh_result(a, "u64", "lat_p50",
              (double)bh_percentile(batch_ns, nbatches, 0.50) / BH_BATCH, "ns");
    bh_result(a, "u64", "lat_p99",
              (double)bh_percentile(batch_ns, nbatches, 0.99) / BH_BATCH, "ns");
    bh_result(a, "u64", "lat_p999",
              (double)bh_percentile(batch_ns, nbatches, 0.999) / BH_BATCH,
              "ns");
    bh_result(a, "u64", "lat_worst_batch", (double)batch_ns[nbatches - 1],
              "ns");
}

/* Bytes per entry from an RSS difference (negative growth reads as 0). */
static inline double bh_per_entry(uint64_t after, uint64_t before, size_t n)
{
    return after > before ? (double)(after - before) / (double)n : 0.0;
}

#ifdef __cplusplus
}
#endif
#endif /* MG_BENCH_HARNESS_H */
