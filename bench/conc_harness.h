/*
 * conc_harness.h - what the concurrent benchmark programs share: the
 * command line, the mixes, the threads (start barrier, stop flag, timing),
 * the per-thread loop, the checks and the result lines.  The workload is
 * the section "Concurrent phases" of /work/shared/workload.md; its
 * generators are in workload.h.  bench/go/conc_go.go mirrors this file.
 *
 * A program supplies its map and a table of map calls (cc_ops), then
 * calls cc_main().  Its thread function is one line,
 *
 *     static void *worker(void *arg) { cc_loop(arg, &OPS); return NULL; }
 *
 * with OPS a `static const cc_ops`: cc_loop is forced inline, so the
 * compiler sees constant function pointers and the timed loop makes direct
 * (usually inlined) calls, as harness.h asks of the single-thread programs.
 *
 * Command line (identical for every program):
 *   PROG [--mode NAME] [--threads 1,2] [--seconds 1] [--n 1000000]
 *        [--mixes r100,r90w10,r50w50,churn90] [--verify]
 *
 * The run: preload key(0..N-1) with value i + 1 (one thread), read each
 * once (every value must be i + 1) and check the length; where the map
 * offers an exclusive step (cc_ops.exclusive: mapguard's mg_batch) this
 * untimed pass runs inside one.  Then for each mix and each thread
 * count: T threads wait on a barrier, run CC_BATCH ops at a time until a
 * stop flag the main thread sets after --seconds, and count their ops
 * locally; the totals are summed after the join.  Throughput is all ops
 * over the span from the first thread's start to the last one's stop.
 *
 * Checks, always on: every read must hit (a miss is a lost key), and its
 * value must be one some writer could have stored (i + 1, or a draw r
 * whose key index is this key's); every put must succeed and every churn
 * delete must find the key this thread inserted just before.  --verify
 * adds, after each run, a single-thread pass over every preloaded key and
 * a check of the map's length (N: each churn thread deletes its last
 * insert, untimed, before it stops).  Any failure: "PROG: error: ..." on
 * stderr, exit 1.
 *
 * Output, one line per (mix, threads), in the order run:
 *   result impl=I mode=M mix=X threads=T n=N value=V unit=Mops/s ops=OPS seconds=S
 * A mode this build does not provide (mapguard's mg_new() failing with
 * ENOTSUP) prints instead, and exits 0:
 *   unavailable impl=I mode=M reason=WORD
 * Errors go to stderr; exit 1 for a failed check, 2 for a bad command line.
 *
 * Valid C11 and C++17.  The including file asks for _GNU_SOURCE (or POSIX)
 * before its first system header.
 */
#ifndef MG_BENCH_CONC_HARNESS_H
#define MG_BENCH_CONC_HARNESS_H

#include "workload.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Ops between two looks at the stop flag (and two quiescent states). */
#define CC_BATCH 64
/* Most thread counts on one command line, and most threads in a run. */
#define CC_MAX_COUNTS 16
#define CC_MAX_THREADS 1024
/* Defaults of the command line: the workload's. */
#define CC_DEFAULT_N 1000000u
#define CC_DEFAULT_SECONDS 1.0

#if defined(__GNUC__)
#define CC_ALWAYS_INLINE static inline __attribute__((always_inline))
#define CC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define CC_NORETURN __attribute__((noreturn))
#else
#define CC_ALWAYS_INLINE static inline
#define CC_PRINTF(f, a)
#define CC_NORETURN
#endif

/* A mix: its name, its number in the seed, its read share, and whether its
 * writes are churn (insert/delete of fresh keys) rather than updates. */
typedef struct {
    const char *name;
    unsigned id;
    unsigned read_percent;
    bool churn;
} cc_mix;

static const cc_mix cc_mixes[WL_NMIX] = {
    {"r100", WL_MIX_R100, 100, false},
    {"r90w10", WL_MIX_R90W10, 90, false},
    {"r50w50", WL_MIX_R50W50, 50, false},
    {"churn90", WL_MIX_CHURN90, 90, true},
};

/* The map calls a program provides.  get, put, del and len are required;
 * the hooks may be NULL. */
typedef struct {
    /* true and *val when key is present */
    bool (*get)(void *map, uint64_t key, uint64_t *val);
    /* insert or update; false if the map refused (out of memory) */
    bool (*put)(void *map, uint64_t key, uint64_t val);
    /* true if key was present */
    bool (*del)(void *map, uint64_t key);
    /* the entry count; called with no other thread on the map */
    size_t (*len)(void *map);
    /* a worker thread starts / stops using the map (register with RCU) */
    void (*thread_enter)(void *map);
    void (*thread_exit)(void *map);
    /* every CC_BATCH ops of a worker (an RCU quiescent state) */
    void (*quiesce)(void *map);
    /* the main thread stops / starts using the map around each run */
    void (*main_offline)(void *map);
    void (*main_online)(void *map);
    /* run fn(arg) as one atomic step in which fn may use the calls above
     * (mapguard's mg_batch); false if the map cannot, and fn did not run */
    bool (*exclusive)(void *map, void (*fn)(void *arg), void *arg);
} cc_ops;

typedef struct {
    const char *impl; /* "mapguard" */
    const char *prog; /* "conc_mapguard", for messages */
    const char *mode;
    size_t n;
    double seconds;
    bool verify;
    int ncounts;
    unsigned counts[CC_MAX_COUNTS]; /* thread counts, in order */
    int nmixes;
    const cc_mix *mixes[WL_NMIX]; /* in order */
} cc_args;

typedef struct cc_run cc_run;

/* One worker: its inputs and its tally. */
typedef struct {
    cc_run *run;
    unsigned t;
    uint64_t ops, misses, wrong, failed;
    uint64_t t_start, t_end;
} cc_thread;

struct cc_run {
    void *map;
    const cc_mix *mix;
    uint64_t n;
    unsigned nthreads;
    int stop; /* set once by the main thread; read with __atomic */
    pthread_barrier_t barrier;
    cc_thread *th;
};

static inline void cc_usage(FILE *f, const char *prog, const char *const *modes,
                            int nmodes)
{
    int i;
    fprintf(f,
            "usage: %s [--mode NAME] [--threads 1,2] [--seconds 1] "
            "[--n 1000000]\n"
            "          [--mixes r100,r90w10,r50w50,churn90] [--verify]\n"
            "  --mode     one of:",
            prog);
    for (i = 0; i < nmodes; i++)
        fprintf(f, " %s%s", modes[i], i == 0 ? " (default)" : "");
    fputs("\n"
          "  --threads  comma list of thread counts, each run in turn\n"
          "  --seconds  measured seconds per mix and thread count\n"
          "  --n        preloaded keys\n"
          "  --mixes    comma list, run in the order given\n"
          "  --verify   after each run, check every preloaded key and the "
          "length\n",
          f);
}

/* Print "PROG: error: ..." to stderr and exit 1. */
CC_PRINTF(2, 3) CC_NORETURN static inline void
cc_fail(const cc_args *a, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: error: ", a->prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static inline const cc_mix *cc_find_mix(const char *s, size_t len)
{
    int i;
    for (i = 0; i < WL_NMIX; i++)
        if (strlen(cc_mixes[i].name) == len &&
            strncmp(s, cc_mixes[i].name, len) == 0)
            return &cc_mixes[i];
    return NULL;
}

/* Whether the list holds a mix that writes. */
static inline bool cc_any_writes(const cc_args *a)
{
    int i;
    for (i = 0; i < a->nmixes; i++)
        if (a->mixes[i]->read_percent < 100)
            return true;
    return false;
}

static inline unsigned cc_max_threads(const cc_args *a)
{
    unsigned m = 0;
    int i;
    for (i = 0; i < a->ncounts; i++)
        if (a->counts[i] > m)
            m = a->counts[i];
    return m;
}

/* Parse the command line.  modes[0] is the default mode.  Returns 0, or
 * the exit status to leave with. */
static inline int cc_parse(cc_args *a, const char *impl, const char *prog,
                           const char *const *modes, int nmodes, int argc,
                           char **argv)
{
    int i;
    memset(a, 0, sizeof *a);
    a->impl = impl;
    a->prog = prog;
    a->mode = modes[0];
    a->n = CC_DEFAULT_N;
    a->seconds = CC_DEFAULT_SECONDS;
    a->ncounts = 2;
    a->counts[0] = 1;
    a->counts[1] = 2;
    for (i = 0; i < WL_NMIX; i++)
        a->mixes[i] = &cc_mixes[i];
    a->nmixes = WL_NMIX;
    for (i = 1; i < argc; i++) {
        const char *s = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;
        if (strcmp(s, "--verify") == 0) {
            a->verify = true;
            continue;
        }
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            cc_usage(stdout, prog, modes, nmodes);
            exit(0);
        }
        if (val == NULL)
            goto bad;
        i++;
        if (strcmp(s, "--mode") == 0) {
            int k;
            for (k = 0; k < nmodes; k++)
                if (strcmp(val, modes[k]) == 0)
                    break;
            if (k == nmodes) {
                fprintf(stderr, "%s: unknown mode '%s'\n", prog, val);
                goto usage;
            }
            a->mode = modes[k];
        } else if (strcmp(s, "--n") == 0) {
            unsigned long long v;
            errno = 0;
            v = strtoull(val, &end, 10);
            /* 2N + (t << 32) must not wrap the key index: N < 2^31. */
            if (errno != 0 || *end != '\0' || end == val || v < 1 ||
                v > UINT32_MAX / 2) {
                fprintf(stderr, "%s: bad --n '%s'\n", prog, val);
                goto usage;
            }
            a->n = (size_t)v;
        } else if (strcmp(s, "--seconds") == 0) {
            double v;
            errno = 0;
            v = strtod(val, &end);
            if (errno != 0 || *end != '\0' || end == val || !(v > 0) ||
                v > 3600) {
                fprintf(stderr, "%s: bad --seconds '%s'\n", prog, val);
                goto usage;
            }
            a->seconds = v;
        } else if (strcmp(s, "--threads") == 0) {
            const char *p = val;
            a->ncounts = 0;
            while (*p != '\0') {
                unsigned long v;
                errno = 0;
                v = strtoul(p, &end, 10);
                if (errno != 0 || end == p || v < 1 || v > CC_MAX_THREADS ||
                    (*end != ',' && *end != '\0') ||
                    a->ncounts == CC_MAX_COUNTS) {
                    fprintf(stderr, "%s: bad --threads '%s'\n", prog, val);
                    goto usage;
                }
                a->counts[a->ncounts++] = (unsigned)v;
                p = end + (*end == ',');
            }
            if (a->ncounts == 0) {
                fprintf(stderr, "%s: empty --threads\n", prog);
                goto usage;
            }
        } else if (strcmp(s, "--mixes") == 0) {
            const char *p = val;
            a->nmixes = 0;
            while (*p != '\0') {
                size_t len = strcspn(p, ",");
                const cc_mix *m = cc_find_mix(p, len);
                if (m == NULL || a->nmixes == WL_NMIX) {
                    fprintf(stderr, "%s: bad mix '%.*s' in --mixes\n", prog,
                            (int)len, p);
                    goto usage;
                }
                a->mixes[a->nmixes++] = m;
                p += len + (p[len] == ',');
            }
            if (a->nmixes == 0) {
                fprintf(stderr, "%s: empty --mixes\n", prog);
                goto usage;
            }
        } else {
            i--;
            goto bad;
        }
    }
    return 0;
bad:
    fprintf(stderr, "%s: bad or incomplete argument '%s'\n", prog, argv[i]);
usage:
    cc_usage(stderr, prog, modes, nmodes);
    return 2;
}

/* The mode is not in this build: say so and leave (exit 0). */
CC_NORETURN static inline void cc_unavailable(const cc_args *a,
                                              const char *reason)
{
    printf("unavailable impl=%s mode=%s reason=%s\n", a->impl, a->mode,
           reason);
    fflush(stdout);
    exit(0);
}

/* Whether v is a value key index idx can hold: its preloaded i + 1, or a
 * draw r that a writer of this key stored (r's low half picks idx). */
CC_ALWAYS_INLINE bool cc_value_ok(uint64_t v, uint64_t idx, uint64_t n)
{
    return v == idx + 1 || wl_conc_index(v, n) == idx;
}

/* The body of a worker thread: see the top of this file. */
CC_ALWAYS_INLINE void cc_loop(void *arg, const cc_ops *ops)
{
    cc_thread *th = (cc_thread *)arg;
    cc_run *run = th->run;
    void *map = run->map;
    const uint64_t n = run->n;
    const unsigned read_percent = run->mix->read_percent;
    const bool churn = run->mix->churn;
    const unsigned t = th->t;
    uint64_t done = 0, misses = 0, wrong = 0, failed = 0, w = 0;
    wl_rng rng;
    int i;

    wl_rng_seed(&rng, wl_conc_seed(run->mix->id, t));
    if (ops->thread_enter != NULL)
        ops->thread_enter(map);
    pthread_barrier_wait(&run->barrier);
    th->t_start = wl_now_ns();
    do {
        for (i = 0; i < CC_BATCH; i++) {
            const uint64_t r = wl_rng_next(&rng);
            const uint64_t idx = wl_conc_index(r, n);
            if (wl_conc_is_read(r, read_percent)) {
                uint64_t v = 0;
                if (!ops->get(map, wl_key(idx), &v))
                    misses++;
                else if (!cc_value_ok(v, idx, n))
                    wrong++;
            } else if (!churn) {
                failed += !ops->put(map, wl_key(idx), r);
            } else {
                const uint64_t k = wl_churn_key(n, t, w);
                if (w & 1)
                    failed += !ops->del(map, k);
                else
                    failed += !ops->put(map, k, r);
                w++;
            }
        }
        done += CC_BATCH;
        if (ops->quiesce != NULL)
            ops->quiesce(map);
    } while (!__atomic_load_n(&run->stop, __ATOMIC_RELAXED));
    th->t_end = wl_now_ns();
    /* Untimed: take back this thread's last fresh key, so that the map
     * holds exactly the preloaded keys again. */
    if (churn && (w & 1))
        failed += !ops->del(map, wl_churn_key(n, t, w));
    if (ops->thread_exit != NULL)
        ops->thread_exit(map);
    th->ops = done;
    th->misses = misses;
    th->wrong = wrong;
    th->failed = failed;
}

/* Sleep until the monotonic clock reads deadline_ns. */
static inline void cc_sleep_until(uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = wl_now_ns();
        struct timespec ts;
        if (now >= deadline_ns)
            return;
        ts.tv_sec = (time_t)((deadline_ns - now) / 1000000000u);
        ts.tv_nsec = (long)((deadline_ns - now) % 1000000000u);
        nanosleep(&ts, NULL); /* EINTR: go round */
    }
}

/* A pass of the main thread alone: the preload (put key(i) -> i + 1), or
 * not, then a read of every preloaded key and the length. */
typedef struct {
    const cc_args *a;
    void *map;
    const cc_ops *ops;
    bool preload, pristine;
    uint64_t failed, lost, bad;
    size_t len;
} cc_pass;

static inline void cc_pass_body(void *arg)
{
    cc_pass *p = (cc_pass *)arg;
    uint64_t i, n = p->a->n;
    if (p->preload)
        for (i = 0; i < n; i++)
            p->failed += !p->ops->put(p->map, wl_key(i), i + 1);
    for (i = 0; i < n; i++) {
        uint64_t v = 0;
        if (!p->ops->get(p->map, wl_key(i), &v))
            p->lost++;
        else if (p->pristine ? v != i + 1 : !cc_value_ok(v, i, n))
            p->bad++;
    }
    p->len = p->ops->len(p->map);
}

/* Run a pass, as one exclusive step where the map offers it (a mapguard
 * actor then preloads on its own thread instead of a million round trips,
 * a snapshot publishes once), and fail on what it found: a key missing,
 * a value no writer stored (exactly i + 1 while pristine), a wrong length. */
static inline void cc_pass_run(const cc_args *a, void *map, const cc_ops *ops,
                               bool preload, bool pristine, const char *after)
{
    cc_pass p;
    memset(&p, 0, sizeof p);
    p.a = a;
    p.map = map;
    p.ops = ops;
    p.preload = preload;
    p.pristine = pristine;
    if (ops->exclusive == NULL || !ops->exclusive(map, cc_pass_body, &p))
        cc_pass_body(&p);
    if (p.failed != 0)
        cc_fail(a, "preload: %llu puts failed", (unsigned long long)p.failed);
    if (p.lost != 0 || p.bad != 0)
        cc_fail(a, "after %s: %llu preloaded keys missing, %llu wrong values",
                after, (unsigned long long)p.lost, (unsigned long long)p.bad);
    if (p.len != a->n)
        cc_fail(a, "after %s: length %zu, want %zu", after, p.len, a->n);
}

/* One measured run: T workers on one mix.  Prints the result line. */
static inline void cc_measure(const cc_args *a, void *map, const cc_ops *ops,
                              void *(*worker)(void *), const cc_mix *mix,
                              unsigned nthreads)
{
    cc_run run;
    unsigned t;
    uint64_t ops_total = 0, misses = 0, wrong = 0, failed = 0;
    uint64_t first = UINT64_MAX, last = 0;
    pthread_t *tid;
    double secs;
    int rc;

    memset(&run, 0, sizeof run);
    run.map = map;
    run.mix = mix;
    run.n = a->n;
    run.nthreads = nthreads;
    run.th = (cc_thread *)calloc(nthreads, sizeof *run.th);
    tid = (pthread_t *)calloc(nthreads, sizeof *tid);
    if (run.th == NULL || tid == NULL)
        cc_fail(a, "out of memory");
    if (pthread_barrier_init(&run.barrier, NULL, nthreads + 1) != 0)
        cc_fail(a, "pthread_barrier_init failed");
    if (ops->main_offline != NULL)
        ops->main_offline(map);
    for (t = 0; t < nthreads; t++) {
        run.th[t].run = &run;
        run.th[t].t = t;
        rc = pthread_create(&tid[t], NULL, worker, &run.th[t]);
        if (rc != 0)
            cc_fail(a, "pthread_create: %s", strerror(rc));
    }
    pthread_barrier_wait(&run.barrier);
    cc_sleep_until(wl_now_ns() + (uint64_t)(a->seconds * 1e9));
    __atomic_store_n(&run.stop, 1, __ATOMIC_RELEASE);
    for (t = 0; t < nthreads; t++) {
        rc = pthread_join(tid[t], NULL);
        if (rc != 0)
            cc_fail(a, "pthread_join: %s", strerror(rc));
    }
    if (ops->main_online != NULL)
        ops->main_online(map);
    pthread_barrier_destroy(&run.barrier);
    for (t = 0; t < nthreads; t++) {
        const cc_thread *th = &run.th[t];
        ops_total += th->ops;
        misses += th->misses;
        wrong += th->wrong;
        failed += th->failed;
        if (th->t_start < first)
            first = th->t_start;
        if (th->t_end > last)
            last = th->t_end;
    }
    free(run.th);
    free(tid);
    if (misses != 0 || wrong != 0 || failed != 0)
        cc_fail(a,
                "%s, %u threads: %llu reads of preloaded keys missed, %llu "
                "read impossible values, %llu writes failed",
                mix->name, nthreads, (unsigned long long)misses,
                (unsigned long long)wrong, (unsigned long long)failed);
    secs = (double)(last - first) / 1e9;
    printf("result impl=%s mode=%s mix=%s threads=%u n=%zu value=%.3f "
           "unit=Mops/s ops=%llu seconds=%.3f\n",
           a->impl, a->mode, mix->name, nthreads, a->n,
           secs > 0 ? (double)ops_total / secs / 1e6 : 0.0,
           (unsigned long long)ops_total, secs);
    fflush(stdout);
}

/* The whole program after the map is made: preload, read once, every mix
 * at every thread count, with the checks.  The caller frees the map. */
static inline void cc_main(const cc_args *a, void *map, const cc_ops *ops,
                           void *(*worker)(void *))
{
    int m, c;
    bool pristine = true;
    char after[64];

    /* The preload and the read-once pass. */
    cc_pass_run(a, map, ops, true, true, "preload");
    for (m = 0; m < a->nmixes; m++) {
        const cc_mix *mix = a->mixes[m];
        for (c = 0; c < a->ncounts; c++) {
            cc_measure(a, map, ops, worker, mix, a->counts[c]);
            if (mix->read_percent < 100 && !mix->churn)
                pristine = false;
            if (a->verify) {
                snprintf(after, sizeof after, "%s with %u threads", mix->name,
                         a->counts[c]);
                cc_pass_run(a, map, ops, false, pristine, after);
            }
        }
    }
}

#ifdef __cplusplus
}
#endif
#endif /* MG_BENCH_CONC_HARNESS_H */
