/*
 * compare.c - mapguard-bench-compare: run mapguard, absl::flat_hash_map and
 * Go's map through the standard workload (/work/shared/workload.md),
 * alternating, and print the medians side by side with the targets.
 *
 *   mapguard-bench-compare [--runs R] [--sizes 1000000,10000000] [--quick]
 *                          [--only u64,str,latency] [--bindir DIR]
 *                          [--csv FILE]
 *
 * For each size and each phase group it runs bench_mapguard, bench_absl,
 * bench_go, bench_mapguard, ... R times, one process per run, so that every
 * memory figure starts from a fresh process and the machine's drift is shared
 * by all three.  Which groups run at which size follows the workload: u64 at
 * every size, str at the sizes up to STR_MAX_N (or the smallest one), latency
 * at the largest size.
 *
 * Targets, judged on the medians:
 *   every ns/op phase   mapguard <= absl, and mapguard at least 2x faster
 *                       than Go
 *   lat_worst_batch     mapguard <= absl / 100
 *   mem at >= 10M       mapguard <= 32 B/entry
 * A missed target is reported, not an error.  Exit status: 0 when every run
 * worked, 1 when a program failed (crashed, exited non-zero, or printed
 * fewer results than its phases promise), 2 for a bad command line.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DRV_PROG "mapguard-bench-compare"
#include "driver.h"

#define NIMPL 3
#define NGROUP 3
#define MAX_SIZES 16
/* The string phases run at sizes up to this (the workload: 1,000,000). */
#define STR_MAX_N 1000000u
/* --quick: one small size, one run. */
#define QUICK_N 200000u
#define DEFAULT_RUNS 3
/* The targets. */
#define TARGET_GO_SPEEDUP 2.0
#define TARGET_WORST_BATCH_DIV 100.0
#define TARGET_MEM_B 32.0
#define TARGET_MEM_MIN_N 10000000u

static const char *const impl_name[NIMPL] = {"mapguard", "absl", "go"};
static const char *const impl_prog[NIMPL] = {"bench_mapguard", "bench_absl",
                                             "bench_go"};
static const char *const group_name[NGROUP] = {"u64", "str", "latency"};
/* Result lines each group prints (bench/harness.h). */
static const int group_results[NGROUP] = {6, 2, 4};

typedef struct {
    int impl;
    char keys[8];
    size_t n;
    char phase[24];
    char unit[16];
    double value;
} record;

static record *recs;
static size_t nrecs, caprecs;

static void usage(FILE *f)
{
    fputs("usage: mapguard-bench-compare [--runs R] [--sizes N,N...] [--quick]\n"
          "           [--only u64,str,latency] [--bindir DIR] [--csv FILE]\n"
          "  --runs R     runs per program, size and phase group (default 3)\n"
          "  --sizes LIST key counts, k/M suffixes allowed\n"
          "               (default 1000000,10000000)\n"
          "  --quick      smoke test: --sizes 200000 --runs 1\n"
          "  --only LIST  phase groups to run (default all)\n"
          "  --bindir DIR where bench_mapguard, bench_absl, bench_go are\n"
          "               (default: this program's directory)\n"
          "  --csv FILE   also write the table (and every sample) as CSV\n",
          f);
}

static void add_record(const record *r)
{
    if (nrecs == caprecs) {
        size_t cap = caprecs ? caprecs * 2 : 256;
        record *p = realloc(recs, cap * sizeof *p);
        if (p == NULL)
            drv_die("out of memory");
        recs = p;
        caprecs = cap;
    }
    recs[nrecs++] = *r;
}

/* Run one program; add its results.  Returns 0, or -1 if it failed. */
static int run_one(const char *bindir, int impl, size_t n, int group)
{
    char path[PATH_MAX], nbuf[32];
    char *argv[6];
    int status, got = 0;
    pid_t pid;
    FILE *f;
    char line[512];

    if (snprintf(path, sizeof path, "%s/%s", bindir, impl_prog[impl]) >=
        (int)sizeof path)
        drv_die("path too long");
    snprintf(nbuf, sizeof nbuf, "%zu", n);
    argv[0] = path;
    argv[1] = (char *)"--n";
    argv[2] = nbuf;
    argv[3] = (char *)"--phases";
    argv[4] = (char *)group_name[group];
    argv[5] = NULL;

    f = drv_spawn(path, argv, 0, &pid);
    while (fgets(line, sizeof line, f) != NULL) {
        record r;
        char implbuf[16];
        memset(&r, 0, sizeof r);
        if (strncmp(line, "result ", 7) != 0) {
            fputs(line, stderr); /* pass anything else through */
            continue;
        }
        if (sscanf(line,
                   "result impl=%15s keys=%7s n=%zu phase=%23s value=%lf "
                   "unit=%15s",
                   implbuf, r.keys, &r.n, r.phase, &r.value, r.unit) != 6 ||
            strcmp(implbuf, impl_name[impl]) != 0 || r.n != n) {
            fprintf(stderr, "mapguard-bench-compare: %s: bad line: %s",
                    impl_prog[impl], line);
            continue;
        }
        r.impl = impl;
        add_record(&r);
        got++;
    }
    fclose(f);
    status = drv_wait(pid);
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "mapguard-bench-compare: %s --n %zu --phases %s: "
                        "killed by signal %d\n",
                impl_prog[impl], n, group_name[group], WTERMSIG(status));
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "mapguard-bench-compare: %s --n %zu --phases %s: "
                        "exit status %d\n",
                impl_prog[impl], n, group_name[group],
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    if (got != group_results[group]) {
        fprintf(stderr, "mapguard-bench-compare: %s --n %zu --phases %s: "
                        "%d results, want %d\n",
                impl_prog[impl], n, group_name[group], got,
                group_results[group]);
        return -1;
    }
    return 0;
}

/* A table row: one (keys, n, phase). */
typedef struct {
    const record *first;
    double med[NIMPL];
    int count[NIMPL];
} row;

static int same_row(const record *a, const record *b)
{
    return a->n == b->n && strcmp(a->keys, b->keys) == 0 &&
           strcmp(a->phase, b->phase) == 0;
}

static void fill_medians(row *w)
{
    int i;
    double *v = malloc((nrecs > 0 ? nrecs : 1) * sizeof *v);
    if (v == NULL)
        drv_die("out of memory");
    for (i = 0; i < NIMPL; i++) {
        size_t k, c = 0;
        for (k = 0; k < nrecs; k++)
            if (recs[k].impl == i && same_row(&recs[k], w->first))
                v[c++] = recs[k].value;
        w->count[i] = (int)c;
        if (c == 0) {
            w->med[i] = -1;
            continue;
        }
        qsort(v, c, sizeof *v, drv_cmp_double);
        w->med[i] = c % 2 ? v[c / 2] : (v[c / 2 - 1] + v[c / 2]) / 2;
    }
    free(v);
}

static int is_ns_op(const record *r) { return strcmp(r->unit, "ns/op") == 0; }

/* Judge a row.  Writes the verdict text; returns 1 held, 0 missed, -1 no
 * target (or a peer is missing). */
static int judge(const row *w, char *buf, size_t len)
{
    const record *r = w->first;
    double mg = w->med[0], ab = w->med[1], go = w->med[2];
    if (is_ns_op(r)) {
        int ok_absl, ok_go;
        if (w->count[0] == 0 || w->count[1] == 0 || w->count[2] == 0) {
            snprintf(buf, len, "-");
            return -1;
        }
        ok_absl = mg <= ab;
        ok_go = mg * TARGET_GO_SPEEDUP <= go;
        if (ok_absl && ok_go) {
            snprintf(buf, len, "ok");
            return 1;
        }
        snprintf(buf, len, "MISS:%s%s", ok_absl ? "" : " >absl",
                 ok_go ? "" : " <2x-go");
        return 0;
    }
    if (strcmp(r->phase, "lat_worst_batch") == 0) {
        if (w->count[0] == 0 || w->count[1] == 0) {
            snprintf(buf, len, "-");
            return -1;
        }
        if (mg <= ab / TARGET_WORST_BATCH_DIV) {
            snprintf(buf, len, "ok");
            return 1;
        }
        snprintf(buf, len, "MISS: >absl/100");
        return 0;
    }
    if (strcmp(r->phase, "mem") == 0 && r->n >= TARGET_MEM_MIN_N &&
        w->count[0] > 0) {
        if (mg <= TARGET_MEM_B) {
            snprintf(buf, len, "ok");
            return 1;
        }
        snprintf(buf, len, "MISS: >32B");
        return 0;
    }
    snprintf(buf, len, "-");
    return -1;
}

static void fmt_value(char *buf, size_t len, const row *w, int i)
{
    if (w->count[i] == 0)
        snprintf(buf, len, "n/a");
    else
        snprintf(buf, len, "%.1f", w->med[i]);
}

static void fmt_ratio(char *buf, size_t len, const row *w, int i)
{
    if (w->count[0] == 0 || w->count[i] == 0 || w->med[i] <= 0)
        snprintf(buf, len, "n/a");
    else
        snprintf(buf, len, "%.2f", w->med[0] / w->med[i]);
}

static void csv_samples(FILE *f, const row *w, int impl)
{
    size_t k;
    int first = 1;
    for (k = 0; k < nrecs; k++) {
        if (recs[k].impl != impl || !same_row(&recs[k], w->first))
            continue;
        fprintf(f, "%s%.3f", first ? "" : ";", recs[k].value);
        first = 0;
    }
}

static void report(const char *csv)
{
    row *rows = malloc((nrecs > 0 ? nrecs : 1) * sizeof *rows);
    size_t nrows = 0, k, j;
    int held = 0, missed = 0;
    FILE *cf = NULL;
    if (rows == NULL)
        drv_die("out of memory");
    for (k = 0; k < nrecs; k++) {
        for (j = 0; j < nrows; j++)
            if (same_row(rows[j].first, &recs[k]))
                break;
        if (j == nrows) {
            memset(&rows[nrows], 0, sizeof rows[nrows]);
            rows[nrows++].first = &recs[k];
        }
    }
    if (csv != NULL) {
        cf = fopen(csv, "w");
        if (cf == NULL)
            drv_die("cannot write %s: %s", csv, strerror(errno));
        fprintf(cf, "keys,n,phase,unit,mapguard,absl,go,mapguard_over_absl,"
                    "mapguard_over_go,target,mapguard_samples,absl_samples,"
                    "go_samples\n");
    }
    printf("\nmedians (lower is better); ratios are mapguard / peer\n");
    printf("%-4s %9s %-16s %-8s %13s %13s %13s %8s %8s  %s\n", "keys", "n",
           "phase", "unit", "mapguard", "absl", "go", "mg/absl", "mg/go",
           "target");
    for (j = 0; j < nrows; j++) {
        row *w = &rows[j];
        char v[NIMPL][32], ra[16], rg[16], verdict[48];
        int i, t;
        fill_medians(w);
        for (i = 0; i < NIMPL; i++)
            fmt_value(v[i], sizeof v[i], w, i);
        fmt_ratio(ra, sizeof ra, w, 1);
        fmt_ratio(rg, sizeof rg, w, 2);
        t = judge(w, verdict, sizeof verdict);
        held += t == 1;
        missed += t == 0;
        printf("%-4s %9zu %-16s %-8s %13s %13s %13s %8s %8s  %s\n",
               w->first->keys, w->first->n, w->first->phase, w->first->unit,
               v[0], v[1], v[2], ra, rg, verdict);
        if (cf != NULL) {
            fprintf(cf, "%s,%zu,%s,%s,%s,%s,%s,%s,%s,%s,", w->first->keys,
                    w->first->n, w->first->phase, w->first->unit, v[0], v[1],
                    v[2], ra, rg, verdict);
            for (i = 0; i < NIMPL; i++) {
                csv_samples(cf, w, i);
                fputc(i + 1 < NIMPL ? ',' : '\n', cf);
            }
        }
    }
    printf("\ntargets: %d held, %d missed (mapguard <= absl and >= 2x faster "
           "than Go on every ns/op phase; worst batch <= absl/100; mem <= 32 "
           "B/entry at 10M)\n",
           held, missed);
    if (cf != NULL && fclose(cf) != 0)
        drv_die("writing %s: %s", csv, strerror(errno));
    free(rows);
}

int main(int argc, char **argv)
{
    size_t sizes[MAX_SIZES], nsizes = 0, s;
    int runs = -1, quick = 0, only[NGROUP] = {1, 1, 1}, i, g, r, failed = 0;
    int total = 0, done = 0;
    const char *bindir_opt = NULL, *csv = NULL, *sizes_opt = NULL;
    char bindir[PATH_MAX], quick_sizes[32];
    double t_start = drv_now_s();

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--quick") == 0) {
            quick = 1;
        } else if (val == NULL) {
            usage(stderr);
            drv_die("bad or incomplete argument '%s'", a);
        } else if (strcmp(a, "--runs") == 0) {
            char *end;
            long v = strtol(val, &end, 10);
            if (*end != '\0' || v < 1 || v > 1000)
                drv_die("bad --runs '%s'", val);
            runs = (int)v;
            i++;
        } else if (strcmp(a, "--sizes") == 0) {
            sizes_opt = val;
            i++;
        } else if (strcmp(a, "--only") == 0) {
            const char *p = val;
            only[0] = only[1] = only[2] = 0;
            while (*p != '\0') {
                size_t len = strcspn(p, ",");
                for (g = 0; g < NGROUP; g++)
                    if (strlen(group_name[g]) == len &&
                        strncmp(p, group_name[g], len) == 0)
                        break;
                if (g == NGROUP)
                    drv_die("unknown phase group '%.*s' in --only", (int)len, p);
                only[g] = 1;
                p += len + (p[len] == ',');
            }
            i++;
        } else if (strcmp(a, "--bindir") == 0) {
            bindir_opt = val;
            i++;
        } else if (strcmp(a, "--csv") == 0) {
            csv = val;
            i++;
        } else {
            usage(stderr);
            drv_die("bad argument '%s'", a);
        }
    }
    if (runs < 0)
        runs = quick ? 1 : DEFAULT_RUNS;
    if (sizes_opt == NULL) {
        snprintf(quick_sizes, sizeof quick_sizes, "%u", QUICK_N);
        sizes_opt = quick ? quick_sizes : "1000000,10000000";
    }
    for (const char *p = sizes_opt; *p != '\0';) {
        size_t len = strcspn(p, ",");
        if (nsizes == MAX_SIZES)
            drv_die("too many sizes");
        if (drv_parse_count(p, len, &sizes[nsizes]) != 0)
            drv_die("bad size '%.*s' in --sizes", (int)len, p);
        nsizes++;
        p += len + (p[len] == ',');
    }
    if (nsizes == 0)
        drv_die("no sizes");

    if (bindir_opt != NULL) {
        if (strlen(bindir_opt) >= sizeof bindir)
            drv_die("--bindir too long");
        strcpy(bindir, bindir_opt);
    } else {
        ssize_t len = readlink("/proc/self/exe", bindir, sizeof bindir - 1);
        char *slash;
        if (len < 0)
            drv_die("readlink /proc/self/exe: %s", strerror(errno));
        bindir[len] = '\0';
        slash = strrchr(bindir, '/');
        if (slash == NULL)
            drv_die("cannot tell this program's directory");
        *slash = '\0';
    }
    for (i = 0; i < NIMPL; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", bindir, impl_prog[i]);
        if (access(path, X_OK) != 0) {
            fprintf(stderr, "mapguard-bench-compare: %s: %s\n", path,
                    strerror(errno));
            return 1;
        }
    }

    /* Which groups at which size: u64 everywhere, str up to STR_MAX_N (or
     * at the smallest size if all are larger), latency at the largest. */
    {
        size_t smallest = sizes[0], largest = sizes[0];
        int plan[MAX_SIZES][NGROUP];
        for (s = 1; s < nsizes; s++) {
            if (sizes[s] < smallest)
                smallest = sizes[s];
            if (sizes[s] > largest)
                largest = sizes[s];
        }
        for (s = 0; s < nsizes; s++) {
            plan[s][0] = only[0];
            plan[s][1] = only[1] && (sizes[s] <= STR_MAX_N ||
                                     (smallest > STR_MAX_N &&
                                      sizes[s] == smallest));
            plan[s][2] = only[2] && sizes[s] == largest;
            for (g = 0; g < NGROUP; g++)
                total += plan[s][g] * runs * NIMPL;
        }
        for (s = 0; s < nsizes; s++)
            for (g = 0; g < NGROUP; g++)
                if (plan[s][g])
                    for (r = 0; r < runs; r++)
                        for (i = 0; i < NIMPL; i++) {
                            double t0 = drv_now_s();
                            int rc = run_one(bindir, i, sizes[s], g);
                            done++;
                            fprintf(stderr,
                                    "[%3d/%d] %-14s --n %-9zu --phases %-7s "
                                    "run %d/%d  %6.1f s%s\n",
                                    done, total, impl_prog[i], sizes[s],
                                    group_name[g], r + 1, runs, drv_now_s() - t0,
                                    rc != 0 ? "  FAILED" : "");
                            failed += rc != 0;
                        }
    }
    report(csv);
    printf("%d runs, %d failed, %.1f s\n", total, failed, drv_now_s() - t_start);
    return failed ? 1 : 0;
}
