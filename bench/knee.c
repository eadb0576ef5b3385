/*
 * knee.c - mapguard-bench-knee: at which write share does each concurrency
 * strategy stop paying off?  Runs the workload's concurrent phases
 * (/work/shared/workload.md, "Concurrent phases") on every mapguard mode
 * and on the peers, alternating, and prints the medians, the mode to use
 * per mix, and the targets.
 *
 *   mapguard-bench-knee [--threads 1,2] [--runs 3] [--seconds 1]
 *                       [--n 1000000] [--mixes LIST] [--only LIST]
 *                       [--quick] [--verify] [--csv knee.csv]
 *                       [--png knee.png] [--bindir DIR]
 *
 * One process per (implementation, mode) and run: it preloads N keys once
 * and runs every mix at every thread count (bench/conc_harness.h).  Each
 * round runs all of them in turn, so the machine's drift is shared; the
 * figure is the median over the rounds.  A mapguard mode this build does
 * not provide yet reads "n/a" and is not an error.
 *
 * Output (stdout): a table of Mops/s per implementation/mode and mix, one
 * block per thread count; the recommended mapguard mode per mix (the best
 * one at the largest thread count, and its ratio to the best peer); the
 * targets, judged at 2 threads, as held or missed.  Files: --csv (default
 * knee.csv) with every median and sample, and --png (default knee.png),
 * throughput against write share at the largest thread count, drawn with
 * gnuplot if it is on PATH (else a note, and no PNG).  "none" turns either
 * file off.  Progress goes to stderr.
 *
 * Exit status: 0 when every program run worked (a missed target is
 * reported, not an error), 1 when one failed (crashed, exited non-zero,
 * timed out, printed fewer results than asked) or gnuplot failed, 2 for a
 * bad command line.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROG "mapguard-bench-knee"
#define DRV_PROG PROG
#include "driver.h"
#define NMIX 4
#define MAX_COUNTS 16
#define MAX_THREADS 1024
#define DEFAULT_RUNS 3
#define DEFAULT_N 1000000u
#define DEFAULT_SECONDS 1.0
/* --quick: a smoke run. */
#define QUICK_N 20000u
#define QUICK_SECONDS 0.05
/* The targets: judged at TARGET_THREADS (or the largest count run). */
#define TARGET_THREADS 2u
#define TARGET_R100_MOPS 25.0
/* A program gets this long, plus its preload and measured time, before it
 * is killed as hung. */
#define GRACE_S 30.0
#define PRELOAD_S_PER_MILLION 20.0

/* The mixes, in the workload's order; their write share for the plot. */
static const char *const mix_name[NMIX] = {"r100", "r90w10", "r50w50",
                                           "churn90"};
static const int mix_write_pct[NMIX] = {0, 10, 50, 10};
enum { MIX_R100, MIX_R90W10, MIX_R50W50, MIX_CHURN90 };

typedef enum { KIND_MODE, KIND_CEILING, KIND_PEER } kind;

/* What runs: one row of the table each. */
typedef struct {
    const char *impl, *mode, *prog;
    kind kind;
    const char *color; /* in the plot */
} entry;

static const entry entries[] = {
    {"mapguard", "rwlock", "conc_mapguard", KIND_MODE, "#1f77b4"},
    {"mapguard", "sharded", "conc_mapguard", KIND_MODE, "#2ca02c"},
    {"mapguard", "readmostly", "conc_mapguard", KIND_MODE, "#d62728"},
    {"mapguard", "snapshot", "conc_mapguard", KIND_MODE, "#9467bd"},
    {"mapguard", "actor", "conc_mapguard", KIND_MODE, "#8c564b"},
    {"mapguard", "unsync-read", "conc_mapguard", KIND_CEILING, "#7f7f7f"},
    {"go", "syncmap", "conc_go", KIND_PEER, "#ff7f0e"},
    {"go", "rwmutex", "conc_go", KIND_PEER, "#e377c2"},
    {"libcuckoo", "default", "conc_cuckoo", KIND_PEER, "#17becf"},
    {"urcu-lfht", "qsbr", "conc_lfht", KIND_PEER, "#bcbd22"},
    {"absl", "mutex64", "conc_absl", KIND_PEER, "#000000"},
    {"absl", "rwlock", "conc_absl", KIND_PEER, "#aec7e8"},
};
#define NENT ((int)(sizeof entries / sizeof entries[0]))

/* The command line. */
static struct {
    int runs;
    size_t n;
    double seconds;
    bool verify;
    int ncounts;
    unsigned counts[MAX_COUNTS];
    bool mix_on[NMIX];
    bool ent_on[NENT];
    const char *csv, *png;
    char bindir[PATH_MAX];
} opt;

/* What came back. */
static struct {
    bool unavailable; /* the mode is not in this build */
    int failed;       /* runs that failed */
    int nsamp[NMIX][MAX_COUNTS];
    double *samp[NMIX][MAX_COUNTS]; /* opt.runs each */
} res[NENT];

static volatile sig_atomic_t timed_out;
static volatile pid_t child_pid;

static void usage(FILE *f)
{
    fputs("usage: " PROG " [options]\n"
          "  --threads LIST  thread counts (default 1,2)\n"
          "  --runs R        rounds; the figure is the median (default 3)\n"
          "  --seconds S     measured seconds per mix and thread count "
          "(default 1)\n"
          "  --n N           preloaded keys, k/M suffixes allowed "
          "(default 1000000)\n"
          "  --mixes LIST    of r100,r90w10,r50w50,churn90 (default all)\n"
          "  --only LIST     implementations to run: impl or impl/mode, e.g.\n"
          "                  mapguard,go/syncmap (default all)\n"
          "  --quick         smoke run: --n 20000 --seconds 0.05 --runs 1\n"
          "  --verify        the programs also check every key after each run\n"
          "  --csv FILE      medians and samples as CSV (default knee.csv;\n"
          "                  none: no file)\n"
          "  --png FILE      the plot, if gnuplot is on PATH (default "
          "knee.png;\n"
          "                  none: no plot)\n"
          "  --bindir DIR    where the conc_* programs are (default: this\n"
          "                  program's directory)\n"
          "implementations:",
          f);
    for (int e = 0; e < NENT; e++)
        fprintf(f, "%s %s/%s", e % 4 == 0 ? "\n " : "", entries[e].impl,
                entries[e].mode);
    fputc('\n', f);
}

static int find_mix(const char *s, size_t len)
{
    for (int m = 0; m < NMIX; m++)
        if (strlen(mix_name[m]) == len && strncmp(s, mix_name[m], len) == 0)
            return m;
    return -1;
}

static int count_index(unsigned threads)
{
    for (int c = 0; c < opt.ncounts; c++)
        if (opt.counts[c] == threads)
            return c;
    return -1;
}

static unsigned max_count(void)
{
    unsigned m = 0;
    for (int c = 0; c < opt.ncounts; c++)
        if (opt.counts[c] > m)
            m = opt.counts[c];
    return m;
}

/* The mixes entry e runs: the ceiling runs r100 only. */
static bool runs_mix(int e, int m)
{
    return opt.mix_on[m] && (entries[e].kind != KIND_CEILING || m == MIX_R100);
}

static int nmixes_of(int e)
{
    int k = 0;
    for (int m = 0; m < NMIX; m++)
        k += runs_mix(e, m);
    return k;
}

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    if (child_pid > 0)
        kill(child_pid, SIGKILL);
}

/* Parse one "result ..." line of entry e into res[e].  Returns 1 if it was
 * a valid result, 0 otherwise (reported). */
static int take_result(int e, const char *line)
{
    char impl[32], mode[32], mix[16], unit[16];
    unsigned threads;
    size_t n;
    double v;
    int m, c;
    if (sscanf(line,
               "result impl=%31s mode=%31s mix=%15s threads=%u n=%zu "
               "value=%lf unit=%15s",
               impl, mode, mix, &threads, &n, &v, unit) != 7 ||
        strcmp(impl, entries[e].impl) != 0 ||
        strcmp(mode, entries[e].mode) != 0 || n != opt.n ||
        strcmp(unit, "Mops/s") != 0 || (m = find_mix(mix, strlen(mix))) < 0 ||
        !runs_mix(e, m) || (c = count_index(threads)) < 0 ||
        res[e].nsamp[m][c] >= opt.runs) {
        fprintf(stderr, PROG ": %s: unexpected line: %s", entries[e].prog,
                line);
        return 0;
    }
    res[e].samp[m][c][res[e].nsamp[m][c]++] = v;
    return 1;
}

/* Run entry e once.  Returns 0 (worked or n/a), -1 if it failed. */
static int run_one(int e)
{
    const entry *en = &entries[e];
    char path[PATH_MAX + 64], nbuf[32], sbuf[32], tbuf[MAX_COUNTS * 8];
    char mbuf[64], line[512];
    char *argv[16];
    int argc = 0, status, got = 0, want, m;
    size_t tl = 0;
    pid_t pid;
    FILE *f;
    double limit;

    snprintf(path, sizeof path, "%s/%s", opt.bindir, en->prog);
    snprintf(nbuf, sizeof nbuf, "%zu", opt.n);
    snprintf(sbuf, sizeof sbuf, "%g", opt.seconds);
    for (int c = 0; c < opt.ncounts; c++)
        tl += (size_t)snprintf(tbuf + tl, sizeof tbuf - tl, "%s%u",
                               c ? "," : "", opt.counts[c]);
    mbuf[0] = '\0';
    for (m = 0; m < NMIX; m++)
        if (runs_mix(e, m)) {
            if (mbuf[0] != '\0')
                strcat(mbuf, ",");
            strcat(mbuf, mix_name[m]);
        }
    argv[argc++] = path;
    argv[argc++] = (char *)"--mode";
    argv[argc++] = (char *)en->mode;
    argv[argc++] = (char *)"--threads";
    argv[argc++] = tbuf;
    argv[argc++] = (char *)"--seconds";
    argv[argc++] = sbuf;
    argv[argc++] = (char *)"--n";
    argv[argc++] = nbuf;
    argv[argc++] = (char *)"--mixes";
    argv[argc++] = mbuf;
    if (opt.verify)
        argv[argc++] = (char *)"--verify";
    argv[argc] = NULL;
    want = nmixes_of(e) * opt.ncounts;

    f = drv_spawn(path, argv, 0, &pid);
    /* A hung program is killed: its preload, its measured time three
     * times over, and a grace period. */
    limit = GRACE_S + PRELOAD_S_PER_MILLION * (double)opt.n / 1e6 +
            3.0 * opt.seconds * want;
    timed_out = 0;
    child_pid = pid;
    alarm((unsigned)limit + 1);
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "result ", 7) == 0) {
            got += take_result(e, line);
        } else if (strncmp(line, "unavailable ", 12) == 0) {
            res[e].unavailable = true;
        } else {
            fputs(line, stderr); /* pass anything else through */
        }
    }
    fclose(f);
    status = drv_wait(pid);
    alarm(0);
    child_pid = 0;
    if (timed_out) {
        fprintf(stderr, PROG ": %s --mode %s: killed after %.0f s (hung?)\n",
                en->prog, en->mode, limit);
        return -1;
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, PROG ": %s --mode %s: killed by signal %d\n",
                en->prog, en->mode, WTERMSIG(status));
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, PROG ": %s --mode %s: exit status %d\n", en->prog,
                en->mode, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    if (res[e].unavailable)
        return 0;
    if (got != want) {
        fprintf(stderr, PROG ": %s --mode %s: %d results, want %d\n",
                en->prog, en->mode, got, want);
        return -1;
    }
    return 0;
}

/* The median of entry e at (mix, count index), or -1 when there is none. */
static double median(int e, int m, int c)
{
    double v[1024];
    int k = res[e].nsamp[m][c];
    if (k == 0)
        return -1;
    memcpy(v, res[e].samp[m][c], (size_t)k * sizeof v[0]);
    qsort(v, (size_t)k, sizeof v[0], drv_cmp_double);
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

/* A table cell: the median, or why there is none. */
static void cell(char *buf, size_t len, int e, int m, int c)
{
    double v = median(e, m, c);
    if (!runs_mix(e, m))
        snprintf(buf, len, "-");
    else if (res[e].unavailable)
        snprintf(buf, len, "n/a");
    else if (v < 0)
        snprintf(buf, len, "failed");
    else
        snprintf(buf, len, "%.2f", v);
}

static const char *label(int e)
{
    static char buf[NENT][48];
    snprintf(buf[e], sizeof buf[e], "%s/%s", entries[e].impl,
             entries[e].mode);
    return buf[e];
}

/* Why entry e has no figure. */
static const char *why(int e)
{
    if (!opt.ent_on[e])
        return "not run";
    return res[e].unavailable ? "n/a in this build" : "failed";
}

/* The best entry of a kind at (mix, count index): its index, or -1. */
static int best_of(kind k, int m, int c)
{
    int best = -1;
    double bv = -1;
    for (int e = 0; e < NENT; e++) {
        double v;
        if (!opt.ent_on[e] || entries[e].kind != k)
            continue;
        v = median(e, m, c);
        if (v >= 0 && v > bv) {
            bv = v;
            best = e;
        }
    }
    return best;
}

static int find_entry(const char *impl, const char *mode)
{
    for (int e = 0; e < NENT; e++)
        if (strcmp(entries[e].impl, impl) == 0 &&
            strcmp(entries[e].mode, mode) == 0)
            return e;
    return -1;
}

static void print_table(void)
{
    printf("\nMops/s (all threads together), median of %d run%s; n = %zu, "
           "%g s per mix and thread count\n",
           opt.runs, opt.runs == 1 ? "" : "s", opt.n, opt.seconds);
    for (int c = 0; c < opt.ncounts; c++) {
        char h[32];
        snprintf(h, sizeof h, "%u thread%s", opt.counts[c],
                 opt.counts[c] == 1 ? "" : "s");
        printf("\n%-24s", h);
        for (int m = 0; m < NMIX; m++)
            if (opt.mix_on[m])
                printf(" %9s", mix_name[m]);
        putchar('\n');
        for (int e = 0; e < NENT; e++) {
            if (!opt.ent_on[e])
                continue;
            printf("%-24s", label(e));
            for (int m = 0; m < NMIX; m++) {
                char b[32];
                if (!opt.mix_on[m])
                    continue;
                cell(b, sizeof b, e, m, c);
                printf(" %9s", b);
            }
            putchar('\n');
        }
    }
}

static void print_recommendations(void)
{
    int c = count_index(max_count());
    printf("\nrecommended mapguard mode per mix (%u thread%s; ratio to the "
           "best peer):\n",
           max_count(), max_count() == 1 ? "" : "s");
    for (int m = 0; m < NMIX; m++) {
        int bm, bp;
        if (!opt.mix_on[m])
            continue;
        bm = best_of(KIND_MODE, m, c);
        bp = best_of(KIND_PEER, m, c);
        printf("  %-8s ", mix_name[m]);
        if (bm < 0) {
            printf("none: no mapguard mode ran\n");
            continue;
        }
        printf("%-10s %8.2f Mops/s", entries[bm].mode, median(bm, m, c));
        if (bp >= 0)
            printf("  %5.2fx the best peer (%s, %.2f)\n",
                   median(bm, m, c) / median(bp, m, c), label(bp),
                   median(bp, m, c));
        else
            printf("  (no peer ran)\n");
    }
}

/* The targets. */
static int held, missed, unjudged;

static void verdict(int ok, const char *fmt, ...)
{
    va_list ap;
    printf("  %-9s ", ok > 0 ? "[held]" : ok == 0 ? "[MISSED]" : "[n/a]");
    held += ok > 0;
    missed += ok == 0;
    unjudged += ok < 0;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* "X > Y" (strict) or "X >= Y" on every mix, for two named entries. */
static void judge_pair(int c, const char *mode, const char *pimpl,
                       const char *pmode)
{
    int e = find_entry("mapguard", mode), p = find_entry(pimpl, pmode);
    for (int m = 0; m < NMIX; m++) {
        double a, b;
        if (!opt.mix_on[m])
            continue;
        a = opt.ent_on[e] ? median(e, m, c) : -1;
        b = opt.ent_on[p] ? median(p, m, c) : -1;
        if (a < 0 || b < 0)
            verdict(-1, "%-8s %s > %s: not judged (%s %s)", mix_name[m],
                    label(e), label(p), label(a < 0 ? e : p),
                    why(a < 0 ? e : p));
        else
            verdict(a > b, "%-8s %s > %s: %.2f vs %.2f (%.2fx)", mix_name[m],
                    label(e), label(p), a, b, a / b);
    }
}

static void print_targets(void)
{
    unsigned tt = count_index(TARGET_THREADS) >= 0 ? TARGET_THREADS
                                                   : max_count();
    int c = count_index(tt);
    printf("\ntargets at %u thread%s%s:\n", tt, tt == 1 ? "" : "s",
           tt != TARGET_THREADS ? " (2 threads were not run)" : "");
    /* 1. The best mode beats the best peer on every mix. */
    for (int m = 0; m < NMIX; m++) {
        int bm, bp;
        if (!opt.mix_on[m])
            continue;
        bm = best_of(KIND_MODE, m, c);
        bp = best_of(KIND_PEER, m, c);
        if (bm < 0 || bp < 0)
            verdict(-1, "%-8s best mapguard mode >= best peer: not judged "
                        "(no %s ran)",
                    mix_name[m], bm < 0 ? "mapguard mode" : "peer");
        else
            verdict(median(bm, m, c) >= median(bp, m, c),
                    "%-8s best mapguard mode >= best peer: %s %.2f vs %s "
                    "%.2f (%.2fx)",
                    mix_name[m], entries[bm].mode, median(bm, m, c),
                    label(bp), median(bp, m, c),
                    median(bm, m, c) / median(bp, m, c));
    }
    /* 2. readmostly or snapshot reach TARGET_R100_MOPS on r100. */
    if (opt.mix_on[MIX_R100]) {
        int rm = find_entry("mapguard", "readmostly");
        int sn = find_entry("mapguard", "snapshot");
        int ce = find_entry("mapguard", "unsync-read");
        double vr = opt.ent_on[rm] ? median(rm, MIX_R100, c) : -1;
        double vs = opt.ent_on[sn] ? median(sn, MIX_R100, c) : -1;
        double vc = opt.ent_on[ce] ? median(ce, MIX_R100, c) : -1;
        int b = vr >= vs ? rm : sn;
        double vb = vr >= vs ? vr : vs;
        char ceil[96] = "";
        if (vc > 0 && vb >= 0)
            snprintf(ceil, sizeof ceil,
                     "; %.0f%% of the unsync-read ceiling %.2f", 100 * vb / vc,
                     vc);
        else if (vc > 0)
            snprintf(ceil, sizeof ceil, "; unsync-read ceiling %.2f", vc);
        if (vb < 0)
            verdict(-1, "r100     readmostly or snapshot >= %.0f Mops/s: not "
                        "judged (readmostly %s, snapshot %s)%s",
                    TARGET_R100_MOPS, why(rm), why(sn), ceil);
        else
            verdict(vb >= TARGET_R100_MOPS,
                    "r100     readmostly or snapshot >= %.0f Mops/s: %s %.2f%s",
                    TARGET_R100_MOPS, entries[b].mode, vb, ceil);
    }
    /* 3, 4. Each mode against the Go design it follows. */
    judge_pair(c, "readmostly", "go", "syncmap");
    judge_pair(c, "rwlock", "go", "rwmutex");
    printf("targets: %d held, %d missed, %d not judged\n", held, missed,
           unjudged);
}

static void write_csv(void)
{
    FILE *f = fopen(opt.csv, "w");
    if (f == NULL) {
        fprintf(stderr, PROG ": cannot write %s: %s\n", opt.csv,
                strerror(errno));
        exit(1);
    }
    fputs("impl,mode,mix,threads,mops_median", f);
    for (int r = 0; r < opt.runs; r++)
        fprintf(f, ",run%d", r + 1);
    fputc('\n', f);
    for (int e = 0; e < NENT; e++) {
        if (!opt.ent_on[e])
            continue;
        for (int m = 0; m < NMIX; m++) {
            if (!runs_mix(e, m))
                continue;
            for (int c = 0; c < opt.ncounts; c++) {
                char b[32];
                cell(b, sizeof b, e, m, c);
                fprintf(f, "%s,%s,%s,%u,%s", entries[e].impl, entries[e].mode,
                        mix_name[m], opt.counts[c], b);
                for (int r = 0; r < opt.runs; r++) {
                    if (r < res[e].nsamp[m][c])
                        fprintf(f, ",%.3f", res[e].samp[m][c][r]);
                    else
                        fputc(',', f);
                }
                fputc('\n', f);
            }
        }
    }
    if (fclose(f) != 0) {
        fprintf(stderr, PROG ": writing %s: %s\n", opt.csv, strerror(errno));
        exit(1);
    }
    printf("wrote %s\n", opt.csv);
}

/* The full path of an executable on PATH, or NULL. */
static const char *on_path(const char *name, char *buf, size_t len)
{
    const char *p = getenv("PATH");
    if (p == NULL)
        return NULL;
    while (*p != '\0') {
        size_t l = strcspn(p, ":");
        struct stat st;
        if (l > 0 && (size_t)snprintf(buf, len, "%.*s/%s", (int)l, p, name) <
                         len &&
            stat(buf, &st) == 0 && S_ISREG(st.st_mode) &&
            access(buf, X_OK) == 0)
            return buf;
        p += l + (p[l] == ':');
    }
    return NULL;
}

/* Throughput against write share at the largest thread count: one line
 * per implementation through r100 (0%), r90w10 (10%) and r50w50 (50%);
 * churn90 (10% writes, all inserts and deletes of fresh keys) as an open
 * marker of the same colour; the unsync-read ceiling as a dotted level.
 * Returns 0, or -1 if gnuplot failed. */
static int write_png(void)
{
    char gp[PATH_MAX];
    int c = count_index(max_count()), status, plotted = 0;
    pid_t pid;
    FILE *f;
    bool first = true;

    if (on_path("gnuplot", gp, sizeof gp) == NULL) {
        printf("gnuplot not found on PATH: no plot written (install "
               "gnuplot-nox for %s)\n",
               opt.png);
        return 0;
    }
    for (int e = 0; e < NENT; e++)
        for (int m = 0; m < NMIX; m++)
            plotted += opt.ent_on[e] && median(e, m, c) > 0;
    if (plotted == 0) {
        printf("nothing to plot: no plot written\n");
        return 0;
    }
    char *gp_argv[] = {(char *)"gnuplot", NULL};
    f = drv_spawn(gp, gp_argv, 1, &pid);
    fputs("if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
          "  set terminal pngcairo size 1200,720 noenhanced font ',10'\n"
          "} else {\n"
          "  set terminal png size 1200,720 noenhanced\n"
          "}\n",
          f);
    fputs("set output '", f);
    for (const char *q = opt.png; *q != '\0'; q++) {
        if (*q == '\'')
            fputc('\'', f); /* gnuplot: '' in '...' is one quote */
        fputc(*q, f);
    }
    fputs("'\n", f);
    fprintf(f,
            "set title 'Throughput against write share, %u thread%s "
            "(n = %zu, median of %d run%s, %g s each)'\n",
            max_count(), max_count() == 1 ? "" : "s", opt.n, opt.runs,
            opt.runs == 1 ? "" : "s", opt.seconds);
    fputs("set xlabel 'write share (filled: puts of existing keys; open: "
          "churn90, inserts and deletes of fresh keys)'\n"
          "set ylabel 'Mops/s, all threads (log scale)'\n"
          "set logscale y\n"
          "set xrange [-4:56]\n"
          /* gnuplot reads tic labels as formats: %% is a percent sign */
          "set xtics ('0%%  r100' 0, '10%%  r90w10, churn90' 10, "
          "'50%%  r50w50' 50)\n"
          "set grid\n"
          "set key outside right top\n",
          f);
    /* The data, one block per entry: x y, then the churn point. */
    for (int e = 0; e < NENT; e++) {
        if (!opt.ent_on[e] || entries[e].kind == KIND_CEILING)
            continue;
        fprintf(f, "$d%d << EOD\n", e);
        for (int m = 0; m < NMIX; m++)
            if (m != MIX_CHURN90 && median(e, m, c) > 0)
                fprintf(f, "%d %.4f\n", mix_write_pct[m], median(e, m, c));
        fprintf(f, "EOD\n$c%d << EOD\n", e);
        if (median(e, MIX_CHURN90, c) > 0)
            fprintf(f, "%d %.4f\n", mix_write_pct[MIX_CHURN90],
                    median(e, MIX_CHURN90, c));
        fputs("EOD\n", f);
    }
    fputs("plot ", f);
    for (int e = 0; e < NENT; e++) {
        double ce;
        if (!opt.ent_on[e])
            continue;
        if (entries[e].kind == KIND_CEILING) {
            ce = median(e, MIX_R100, c);
            if (ce > 0) {
                fprintf(f,
                        "%s%.4f with lines dt 3 lw 2 lc rgb '%s' title "
                        "'%s (r100 ceiling)'",
                        first ? "" : ", \\\n     ", ce, entries[e].color,
                        label(e));
                first = false;
            }
            continue;
        }
        {
            bool any = false;
            for (int m = 0; m < NMIX; m++)
                any = any || median(e, m, c) > 0;
            if (!any)
                continue;
        }
        fprintf(f,
                "%s$d%d with linespoints lw 2 pt 7 ps 1.3 dt %d lc rgb '%s' "
                "title '%s'",
                first ? "" : ", \\\n     ", e,
                entries[e].kind == KIND_PEER ? 2 : 1, entries[e].color,
                label(e));
        first = false;
        if (median(e, MIX_CHURN90, c) > 0)
            fprintf(f,
                    ", \\\n     $c%d with points pt 6 ps 2.2 lw 2 lc rgb "
                    "'%s' notitle",
                    e, entries[e].color);
    }
    fputs("\n", f);
    if (fclose(f) != 0)
        fprintf(stderr, PROG ": writing to gnuplot: %s\n", strerror(errno));
    status = drv_wait(pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, PROG ": gnuplot failed (status %d): no plot\n",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    printf("wrote %s\n", opt.png);
    return 0;
}

static void parse_args(int argc, char **argv)
{
    bool quick = false;
    int runs = -1;
    double seconds = -1;
    size_t n = 0;
    const char *bindir = NULL;

    opt.ncounts = 2;
    opt.counts[0] = 1;
    opt.counts[1] = 2;
    opt.csv = "knee.csv";
    opt.png = "knee.png";
    for (int m = 0; m < NMIX; m++)
        opt.mix_on[m] = true;
    for (int e = 0; e < NENT; e++)
        opt.ent_on[e] = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--quick") == 0) {
            quick = true;
            continue;
        } else if (strcmp(a, "--verify") == 0) {
            opt.verify = true;
            continue;
        } else if (val == NULL) {
            usage(stderr);
            drv_die("bad or incomplete argument '%s'", a);
        }
        i++;
        if (strcmp(a, "--runs") == 0) {
            long v = strtol(val, &end, 10);
            if (*end != '\0' || end == val || v < 1 || v > 1000)
                drv_die("bad --runs '%s'", val);
            runs = (int)v;
        } else if (strcmp(a, "--seconds") == 0) {
            double v;
            errno = 0;
            v = strtod(val, &end);
            if (errno != 0 || *end != '\0' || end == val || !(v > 0) ||
                v > 3600)
                drv_die("bad --seconds '%s'", val);
            seconds = v;
        } else if (strcmp(a, "--n") == 0) {
            if (drv_parse_count(val, strlen(val), &n) != 0)
                drv_die("bad --n '%s'", val);
        } else if (strcmp(a, "--threads") == 0) {
            const char *p = val;
            opt.ncounts = 0;
            while (*p != '\0') {
                unsigned long v;
                errno = 0;
                v = strtoul(p, &end, 10);
                if (errno != 0 || end == p || v < 1 || v > MAX_THREADS ||
                    (*end != ',' && *end != '\0'))
                    drv_die("bad --threads '%s'", val);
                if (opt.ncounts == MAX_COUNTS)
                    drv_die("at most %d thread counts", MAX_COUNTS);
                if (count_index((unsigned)v) >= 0)
                    drv_die("thread count %lu twice in --threads", v);
                opt.counts[opt.ncounts++] = (unsigned)v;
                p = end + (*end == ',');
            }
            if (opt.ncounts == 0)
                drv_die("empty --threads");
        } else if (strcmp(a, "--mixes") == 0) {
            const char *p = val;
            for (int m = 0; m < NMIX; m++)
                opt.mix_on[m] = false;
            while (*p != '\0') {
                size_t len = strcspn(p, ",");
                int m = find_mix(p, len);
                if (m < 0)
                    drv_die("unknown mix '%.*s' in --mixes", (int)len, p);
                opt.mix_on[m] = true;
                p += len + (p[len] == ',');
            }
        } else if (strcmp(a, "--only") == 0) {
            const char *p = val;
            for (int e = 0; e < NENT; e++)
                opt.ent_on[e] = false;
            while (*p != '\0') {
                size_t len = strcspn(p, ",");
                bool any = false;
                for (int e = 0; e < NENT; e++) {
                    const char *l = label(e);
                    size_t il = strlen(entries[e].impl);
                    if ((strlen(l) == len && strncmp(p, l, len) == 0) ||
                        (il == len && strncmp(p, entries[e].impl, len) == 0)) {
                        opt.ent_on[e] = true;
                        any = true;
                    }
                }
                if (!any)
                    drv_die("unknown implementation '%.*s' in --only (see "
                        "--help)",
                        (int)len, p);
                p += len + (p[len] == ',');
            }
        } else if (strcmp(a, "--csv") == 0) {
            opt.csv = val;
        } else if (strcmp(a, "--png") == 0) {
            opt.png = val;
        } else if (strcmp(a, "--bindir") == 0) {
            bindir = val;
        } else {
            usage(stderr);
            drv_die("bad argument '%s'", a);
        }
    }
    opt.runs = runs > 0 ? runs : quick ? 1 : DEFAULT_RUNS;
    opt.seconds = seconds > 0 ? seconds : quick ? QUICK_SECONDS
                                                : DEFAULT_SECONDS;
    opt.n = n > 0 ? n : quick ? QUICK_N : DEFAULT_N;
    if (strcmp(opt.csv, "none") == 0)
        opt.csv = NULL;
    if (strcmp(opt.png, "none") == 0)
        opt.png = NULL;
    {
        bool any = false;
        for (int m = 0; m < NMIX; m++)
            any = any || opt.mix_on[m];
        if (!any)
            drv_die("no mixes");
    }
    if (bindir != NULL) {
        if (strlen(bindir) >= sizeof opt.bindir)
            drv_die("--bindir too long");
        strcpy(opt.bindir, bindir);
    } else {
        ssize_t len = readlink("/proc/self/exe", opt.bindir,
                               sizeof opt.bindir - 1);
        char *slash;
        if (len < 0)
            drv_die("readlink /proc/self/exe: %s", strerror(errno));
        opt.bindir[len] = '\0';
        slash = strrchr(opt.bindir, '/');
        if (slash == NULL)
            drv_die("cannot tell this program's directory");
        *slash = '\0';
    }
}

int main(int argc, char **argv)
{
    int failed = 0, plot_failed = 0, total = 0, done = 0, na = 0;
    double t_start = drv_now_s();
    struct sigaction sa;

    parse_args(argc, argv);
    for (int e = 0; e < NENT; e++) {
        char path[PATH_MAX + 64];
        if (nmixes_of(e) == 0) /* the ceiling, without r100 */
            opt.ent_on[e] = false;
        if (!opt.ent_on[e])
            continue;
        snprintf(path, sizeof path, "%s/%s", opt.bindir, entries[e].prog);
        if (access(path, X_OK) != 0) {
            fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
            return 1;
        }
        for (int m = 0; m < NMIX; m++)
            for (int c = 0; c < opt.ncounts; c++) {
                res[e].samp[m][c] = calloc((size_t)opt.runs, sizeof(double));
                if (res[e].samp[m][c] == NULL)
                    drv_die("out of memory");
            }
        total += opt.runs;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);

    /* Each round runs every implementation once, in turn. */
    for (int r = 0; r < opt.runs; r++)
        for (int e = 0; e < NENT; e++) {
            double t0 = drv_now_s();
            int rc;
            if (!opt.ent_on[e])
                continue;
            done++;
            if (res[e].unavailable) /* known from an earlier round */
                continue;
            rc = run_one(e);
            failed += rc != 0;
            res[e].failed += rc != 0;
            fprintf(stderr, "[%3d/%d] %-13s --mode %-11s run %d/%d %6.1f s%s\n",
                    done, total, entries[e].prog, entries[e].mode, r + 1,
                    opt.runs, drv_now_s() - t0,
                    rc != 0                ? "  FAILED"
                    : res[e].unavailable ? "  n/a (not in this build)"
                                         : "");
        }
    for (int e = 0; e < NENT; e++)
        na += opt.ent_on[e] && res[e].unavailable;

    print_table();
    print_recommendations();
    print_targets();
    putchar('\n');
    if (opt.csv != NULL)
        write_csv();
    if (opt.png != NULL && write_png() != 0)
        plot_failed = 1;
    printf("%d runs, %d failed, %d implementation%s n/a, %.1f s\n", total,
           failed, na, na == 1 ? "" : "s", drv_now_s() - t_start);
    return failed || plot_failed ? 1 : 0;
}
