/*
 * doctor.c - `mapguard doctor`: reproduce each root cause of a map crash or
 * slowdown in a child process, show what happened, what caught or
 * prevented it, and the fix.  docs/root-causes.md is the playbook.
 *
 * Every cause runs in its own forked child so a fatal report (which ends in
 * abort()) cannot take the doctor down; the parent reads the child's output
 * and exit status and judges the outcome against what mapguard promises:
 *   - a misuse cause (1-5) must end in abort() with Go's first line, and
 *     cause 1's report must show both racing call sites;
 *   - a measured cause (6-12) prints its numbers and exits 0 when its
 *     verdict held.  It tells the parent its numbers in lines
 *     "@num NAME VALUE" (the JSON's "numbers") and what prevented the
 *     cause in a line "@by TEXT"; every other line is shown as it is.
 * Verdicts rest on facts that do not depend on the machine's speed
 * (counts, bytes, counters after a fixed number of operations) or on
 * ratios with wide margins taken on CPU time: CI machines are noisy.
 * Timings are shown, never judged against a tight bound.
 */
#include "cli.h"
#include "internal.h" /* the corrupted-header and flood scenarios look inside */
#include "mapguard.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Scenarios: each runs in the child.  Misuse scenarios are expected to die */
/* in a fatal report; the others exit 0 when the promise held.              */
/* ------------------------------------------------------------------------ */

#define RACE_KEYS 1000000u

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

typedef struct {
    mg_map *m;
    uint64_t base;
} race_arg;

static void *writer_thread(void *p)
{
    race_arg *a = p;
    for (uint64_t i = 0; i < RACE_KEYS; i++)
        mg_put_u64(a->m, mix(a->base + i), i);
    return NULL;
}

static void *reader_thread(void *p)
{
    race_arg *a = p;
    uint64_t v, sum = 0;
    for (uint64_t i = 0; i < 50u * RACE_KEYS; i++)
        sum += mg_get_u64(a->m, mix(i % 1000), &v);
    return (void *)(uintptr_t)sum;
}

static void *iter_thread(void *p)
{
    race_arg *a = p;
    uint64_t n = 0;
    for (int r = 0; r < 1000000; r++) {
        mg_iter it;
        mg_iter_init(&it, a->m);
        while (mg_iter_next(&it, NULL, NULL, NULL))
            n++;
        mg_iter_done(&it);
    }
    return (void *)(uintptr_t)n;
}

static mg_map *named_map(const char *name)
{
    mg_options o = {.name = name};
    mg_map *m = mg_new(&o);
    if (!m) {
        perror("mg_new");
        exit(3);
    }
    return m;
}

static int run_two(void *(*a)(void *), void *(*b)(void *), mg_map *m)
{
    pthread_t t1, t2;
    race_arg r1 = {m, 0}, r2 = {m, 1u << 30};
    if (pthread_create(&t1, NULL, a, &r1) || pthread_create(&t2, NULL, b, &r2)) {
        fprintf(stderr, "pthread_create failed\n");
        return 3;
    }
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    return 0;
}

static int sc_concurrent_writes(void)
{
    mg_map *m = named_map("sessions");
    return run_two(writer_thread, writer_thread, m);
}

static int sc_read_during_write(void)
{
    mg_map *m = named_map("cache");
    for (uint64_t i = 0; i < 1000; i++)
        mg_put_u64(m, mix(i), i);
    return run_two(reader_thread, writer_thread, m);
}

static int sc_iter_during_write(void)
{
    mg_map *m = named_map("routes");
    for (uint64_t i = 0; i < 64; i++)
        mg_put_u64(m, mix(i), i);
    return run_two(iter_thread, writer_thread, m);
}

static int sc_nil_map(void)
{
    mg_map *m = NULL; /* a map that was never created */
    uint64_t v;
    /* Reads, len, delete and range on NULL behave as an empty map ... */
    if (mg_get_u64(m, 1, &v) || mg_len(m) != 0 || mg_del_u64(m, 1) ||
        mg_range(m, NULL, NULL) != 0)
        return 4;
    /* ... a write is fatal, as in Go. */
    mg_put_u64(m, 1, 1);
    return 0;
}

static int sc_freed_map(void)
{
    mg_map *m = named_map("users");
    mg_put_u64(m, 1, 1);
    mg_free(m);
    uint64_t v;
    /* A use after free: mapguard checks the header's magic first. */
    (void)mg_get_u64(m, 1, &v);
    return 0;
}

/* Mutation during iteration across growth: the owner thread deletes keys it
 * has not reached, inserts new ones (forcing the map to grow mid-range) and
 * updates keys it has not reached; Go's guarantees must hold. */
typedef struct {
    mg_map *m;
    size_t n;            /* keys at the start: 0 .. n-1 */
    unsigned char *seen; /* per key */
    unsigned char *gone; /* deleted before it was reached */
    uint64_t *want;      /* current value */
    size_t produced, dups, stale, ghosts, next_new, deleted, updated;
} mut_state;

static int mut_fn(const void *key, size_t len, uint64_t val, void *arg)
{
    mut_state *s = arg;
    (void)len;
    uint64_t k = *(const uint64_t *)key;
    s->produced++;
    if (k < s->n) {
        if (s->seen[k])
            s->dups++;
        if (s->gone[k])
            s->ghosts++;
        if (val != s->want[k])
            s->stale++;
        s->seen[k] = 1;
    }
    /* Delete one unvisited key, insert two new ones, update one unvisited. */
    uint64_t d = mix(s->produced) % s->n;
    if (!s->seen[d] && !s->gone[d]) {
        mg_del_u64(s->m, d);
        s->gone[d] = 1;
        s->deleted++;
    }
    for (int i = 0; i < 2; i++)
        mg_put_u64(s->m, s->n + s->next_new++, 7);
    uint64_t u = mix(s->produced + 99) % s->n;
    if (!s->seen[u] && !s->gone[u]) {
        s->want[u] = s->want[u] + 1000;
        mg_put_u64(s->m, u, s->want[u]);
        s->updated++;
    }
    return 0;
}

static int sc_mutate_during_range(void)
{
    mut_state s = {0};
    s.n = 20000;
    s.m = named_map("inventory");
    s.seen = calloc(s.n, 1);
    s.gone = calloc(s.n, 1);
    s.want = calloc(s.n, sizeof *s.want);
    if (!s.seen || !s.gone || !s.want)
        return 3;
    for (uint64_t i = 0; i < s.n; i++) {
        s.want[i] = i;
        mg_put_u64(s.m, i, i);
    }
    mg_stats before, after;
    mg_stats_get(s.m, &before);
    mg_range(s.m, mut_fn, &s);
    mg_stats_get(s.m, &after);
    size_t missed = 0;
    for (size_t i = 0; i < s.n; i++)
        if (!s.seen[i] && !s.gone[i])
            missed++;
    printf("keys at start %zu; range produced %zu; during the range: %zu deleted "
           "before reached, %zu updated, %zu inserted; B %u -> %u (%llu grows)\n",
           s.n, s.produced, s.deleted, s.updated, s.next_new, before.B, after.B,
           (unsigned long long)(after.grows_total - before.grows_total));
    printf("duplicates %zu, missed %zu, deleted-yet-produced %zu, stale values %zu\n",
           s.dups, missed, s.ghosts, s.stale);
    printf("@num keys_at_start %zu\n@num produced %zu\n@num deleted %zu\n@num updated "
           "%zu\n@num inserted %zu\n@num grows %llu\n@num duplicates %zu\n@num missed "
           "%zu\n@num deleted_yet_produced %zu\n@num stale_values %zu\n", s.n,
           s.produced, s.deleted, s.updated, s.next_new,
           (unsigned long long)(after.grows_total - before.grows_total), s.dups, missed,
           s.ghosts, s.stale);
    printf("@by Go's iteration rules, kept across growth (src/map.c R2-R4): the "
           "iterator keeps the array it started on and looks evacuated keys up in the "
           "live map\n");
    bool ok = s.dups == 0 && missed == 0 && s.ghosts == 0 && s.stale == 0 &&
              after.grows_total > before.grows_total;
    mg_free(s.m);
    free(s.seen);
    free(s.gone);
    free(s.want);
    return ok ? 0 : 1;
}

/* A wild write: something scribbles over a live map's header (a buffer
 * overrun from a neighbouring object, a stale pointer written through).
 * The next call must refuse the header, not follow its pointers. */
static int sc_corrupt_header(void)
{
    mg_map *m = named_map("orders");
    mg_put_u64(m, 1, 1);
    memset(&m->magic, 'A', sizeof m->magic); /* a string overran into it */
    uint64_t v;
    (void)mg_get_u64(m, 1, &v);
    return 0;
}

/* ---- what the measured scenarios tell the parent (see the top) ---------- */

static void num(const char *name, double v)
{
    if (!(v > -1e300 && v < 1e300))
        v = -1; /* JSON has no NaN or infinity */
    if (v < 1e15 && v > -1e15 && v == (double)(long long)v)
        printf("@num %s %lld\n", name, (long long)v);
    else
        printf("@num %s %.6g\n", name, v);
}

static void by(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void by(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("@by ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static mg_map *new_map(mg_mode mode, size_t hint, const char *name)
{
    mg_options o = {.mode = mode, .hint = hint, .name = name};
    mg_map *m = mg_new(&o);
    if (!m) {
        perror("mg_new");
        exit(3);
    }
    return m;
}

/* The rendered metrics line of one series for one map, or NULL. */
static char *metric_line(const char *series, const char *map, char *out, size_t n)
{
    size_t cap = 1 << 16;
    char *buf = NULL;
    for (;;) {
        char *nb = realloc(buf, cap);
        if (!nb) {
            free(buf);
            return NULL;
        }
        buf = nb;
        size_t need = mg_metrics_render(buf, cap);
        if (need < cap)
            break;
        cap = need + 1;
    }
    char pre[160];
    snprintf(pre, sizeof pre, "%s{map=\"%s\"", series, map);
    char *res = NULL;
    for (char *p = buf; p && *p;) {
        char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (strncmp(p, pre, strlen(pre)) == 0 && len < n) {
            memcpy(out, p, len);
            out[len] = '\0';
            res = out;
            break;
        }
        p = e ? e + 1 : NULL;
    }
    free(buf);
    return res;
}

/* The value at the end of a metrics line; -1 when there is none. */
static double metric_value(const char *series, const char *map)
{
    char line[512];
    if (!metric_line(series, map, line, sizeof line))
        return -1;
    const char *sp = strrchr(line, ' ');
    return sp ? strtod(sp + 1, NULL) : -1;
}

/* ---- 7: a growth stall -------------------------------------------------- */

/* The rehash-everything table: linear probing over one array that doubles
 * by re-inserting every entry in the insert that crosses half full, the
 * way most hand-written and textbook tables grow.  Key 0 is never used. */
typedef struct {
    uint64_t key, val;
} rh_slot;
typedef struct {
    rh_slot *s;
    size_t cap, n;
} rh_table;

/* Returns: true if k was not there. */
static bool rh_place(rh_slot *s, size_t cap, uint64_t k, uint64_t v)
{
    size_t i = (size_t)mix(k) & (cap - 1);
    while (s[i].key != 0 && s[i].key != k)
        i = (i + 1) & (cap - 1);
    bool fresh = s[i].key == 0;
    s[i].key = k;
    s[i].val = v;
    return fresh;
}

static int rh_put(void *p, uint64_t k, uint64_t v)
{
    rh_table *t = p;
    if ((t->n + 1) * 2 > t->cap) { /* the stall: every entry moves, now */
        size_t ncap = t->cap ? t->cap * 2 : 16;
        rh_slot *ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return MG_ENOMEM;
        for (size_t i = 0; i < t->cap; i++)
            if (t->s[i].key)
                rh_place(ns, ncap, t->s[i].key, t->s[i].val);
        free(t->s);
        t->s = ns;
        t->cap = ncap;
    }
    if (rh_place(t->s, t->cap, k, v))
        t->n++;
    return 0;
}

static int mg_put_fn(void *m, uint64_t k, uint64_t v)
{
    return mg_put_u64(m, k, v);
}

typedef struct {
    double total_s, worst_us, worst_cpu_us, p999_us, p50_us;
} lat_result;

/* k-th smallest of a[0..n) (in place). */
static uint32_t select_kth(uint32_t *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t pivot = a[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                uint32_t t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return a[k];
    }
    return a[k];
}

/* Insert keys 1..n, timing every insert on the monotonic clock.  Inserts
 * run in groups of STALL_GROUP; each group is also timed on the thread's
 * CPU clock, and the wall time the group spent off the CPU (preempted on a
 * busy machine) is taken off its slowest insert: worst_cpu_us is the
 * worst insert with the scheduler's delays removed, which is what the
 * verdict compares.  lat (n entries) receives each insert's ns. */
#define STALL_GROUP 256
static int timed_inserts(int (*put)(void *, uint64_t, uint64_t), void *t, size_t n,
                         uint32_t *lat, lat_result *r)
{
    uint64_t start = wall_ns();
    double worst = 0, worst_cpu = 0;
    for (size_t g = 0; g < n; g += STALL_GROUP) {
        size_t end = g + STALL_GROUP < n ? g + STALL_GROUP : n;
        uint64_t c0 = cpu_ns(), w0 = wall_ns(), prev = w0, gmax = 0;
        for (size_t i = g; i < end; i++) {
            if (put(t, i + 1, i) != 0)
                return -1;
            uint64_t now = wall_ns(), d = now - prev;
            prev = now;
            lat[i] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
            if (d > gmax)
                gmax = d;
        }
        double off = (double)(prev - w0) - (double)(cpu_ns() - c0);
        double adj = (double)gmax - (off > 0 ? off : 0);
        if ((double)gmax > worst)
            worst = (double)gmax;
        if (adj > worst_cpu)
            worst_cpu = adj;
    }
    r->total_s = (double)(wall_ns() - start) / 1e9;
    r->worst_us = worst / 1e3;
    r->worst_cpu_us = worst_cpu / 1e3;
    r->p999_us = select_kth(lat, n, n - n / 1000) / 1e3;
    r->p50_us = select_kth(lat, n, n / 2) / 1e3;
    return 0;
}

static size_t count_lines_with(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[1024];
    size_t n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, a) && strstr(line, b))
            n++;
    fclose(f);
    return n;
}

#define STALL_KEYS (2u << 20)

static int sc_growth_stall(void)
{
    uint32_t *lat = malloc(STALL_KEYS * sizeof *lat);
    if (!lat)
        return 3;
    /* The timeline is written by this child (a trace belongs to the
     * process that started it), to a file of its own, then renamed over
     * the last run's: one file is kept, and doctors run side by side never
     * write into each other's. */
    const char *tmp = getenv("TMPDIR");
    char path[512], part_path[540];
    snprintf(path, sizeof path, "%s/mapguard-doctor-timeline.json",
             tmp && *tmp ? tmp : "/tmp");
    snprintf(part_path, sizeof part_path, "%s.%ld", path, (long)getpid());
    int trc = mg_trace_start(part_path), stop_rc = trc;

    /* A busy machine can still charge a single insert with CPU time that
     * is not its own (an interrupt storm, a hypervisor's steal counted as
     * ours): when mapguard's worst misses the bound, it is measured again,
     * at most twice, and every attempt is shown. */
    lat_result g, h;
    mg_stats st;
    double tried[3];
    int attempts = 0;
    do {
        mg_map *m = new_map(MG_UNSYNC, 0, "stall");
        if (timed_inserts(mg_put_fn, m, STALL_KEYS, lat, &g) != 0)
            return 3;
        mg_stats_get(m, &st);
        mg_free(m);
        if (attempts == 0) {
            stop_rc = trc == MG_OK ? mg_trace_stop() : trc;
            rh_table rt = {0};
            if (timed_inserts(rh_put, &rt, STALL_KEYS, lat, &h) != 0)
                return 3;
            free(rt.s);
        }
        tried[attempts++] = g.worst_cpu_us;
    } while (attempts < 3 && !(g.worst_cpu_us * 10 < h.worst_cpu_us));
    free(lat);
    printf("%u keys inserted one by one, no hint, each insert timed:\n", STALL_KEYS);
    printf("  %-28s %10s %10s %10s %14s %9s\n", "", "median", "p99.9", "worst",
           "worst on CPU", "total");
    printf("  %-28s %8.2f us %7.2f us %7.0f us %11.0f us %7.2f s\n",
           "mapguard (incremental)", g.p50_us, g.p999_us, g.worst_us, g.worst_cpu_us,
           g.total_s);
    printf("  %-28s %8.2f us %7.2f us %7.0f us %11.0f us %7.2f s\n",
           "rehash-everything table", h.p50_us, h.p999_us, h.worst_us, h.worst_cpu_us,
           h.total_s);
    printf("  (worst on CPU: the worst insert less the time its group of %d spent "
           "preempted)\n", STALL_GROUP);
    if (attempts > 1) {
        printf("  (mapguard measured %d times: worst on CPU", attempts);
        for (int i = 0; i < attempts; i++)
            printf("%s %.0f us", i ? "," : "", tried[i]);
        printf("; the last run is shown)\n");
    }
    printf("mapguard grew %llu times to B=%u, each grow spread over the writes that "
           "followed it (two old buckets evacuated per write)\n",
           (unsigned long long)st.grows_total, st.B);
    num("keys", STALL_KEYS);
    num("mapguard_worst_us", g.worst_us);
    num("mapguard_worst_cpu_us", g.worst_cpu_us);
    num("mapguard_p999_us", g.p999_us);
    num("mapguard_total_s", g.total_s);
    num("rehash_worst_us", h.worst_us);
    num("rehash_worst_cpu_us", h.worst_cpu_us);
    num("rehash_p999_us", h.p999_us);
    num("rehash_total_s", h.total_s);
    num("grows_total", (double)st.grows_total);
    num("mapguard_attempts", attempts);
    if (trc == MG_OK && stop_rc == MG_OK) {
        size_t spans = count_lines_with(part_path, "\"name\":\"grow\"", "\"ph\":\"B\"");
        size_t ends = count_lines_with(part_path, "\"name\":\"grow\"", "\"ph\":\"E\"");
        const char *shown = rename(part_path, path) == 0 ? path : part_path;
        printf("growth timeline: %s: %zu grow spans (%zu ended), one per grow; open it "
               "in https://ui.perfetto.dev\n", shown, spans, ends);
        num("timeline_grow_events", (double)spans);
    } else {
        int bad = trc != MG_OK ? trc : stop_rc;
        const char *st_name = mg_status_name(bad);
        printf("growth timeline: not written: %s returned %s%s\n",
               trc != MG_OK ? "mg_trace_start" : "mg_trace_stop",
               st_name ? st_name : "an unknown status",
               bad == MG_ENOTSUP ? " (a build with -DMG_OBSERVE=OFF)" : "");
        num("timeline_grow_events", -1);
    }
    double ratio = g.worst_cpu_us > 0 ? h.worst_cpu_us / g.worst_cpu_us : 1e9;
    num("worst_ratio", ratio);
    by("incremental evacuation: the worst insert on CPU was %.0f us against the "
       "rehash table's %.0f us (%.0fx)", g.worst_cpu_us, h.worst_cpu_us, ratio);
    return g.worst_cpu_us * 10 < h.worst_cpu_us ? 0 : 1;
}

/* ---- 8: overflow-bucket pile-up from a hash flood ----------------------- */

#define FLOOD_KEYS 100000u
#define FLOOD_SHIFT 20

/* Longest chain (bucket plus its overflow buckets) of the current array. */
static size_t max_chain(const mg_map *m)
{
    const mg_table *t = m->buckets;
    size_t worst = 0;
    for (size_t i = 0; t && i < t->nbuckets; i++) {
        size_t len = 1;
        for (const mg_ovf *o = t->ctrl[i].overflow; o; o = o->overflow)
            len++;
        if (len > worst)
            worst = len;
    }
    return worst;
}

static int sc_hash_flood(void)
{
    /* Keys i << 20: under a fixed hash whose low bits pick the bucket
     * (identity, or k * an odd constant) they all share bucket 0. */
    unsigned B = 0; /* Go's B for that many keys: the load factor's bound */
    while ((uint64_t)FLOOD_KEYS * MG_LOAD_DEN > (uint64_t)MG_LOAD_NUM << B)
        B++;
    size_t nb = (size_t)1 << B, *fill = calloc(nb, sizeof *fill);
    if (!fill)
        return 3;
    for (uint64_t i = 1; i <= FLOOD_KEYS; i++)
        fill[(size_t)((i << FLOOD_SHIFT) * 0x9E3779B97F4A7C15ull) & (nb - 1)]++;
    size_t model_max = 0, model_ovf = 0;
    for (size_t b = 0; b < nb; b++) {
        size_t chain = fill[b] ? (fill[b] + MG_BUCKET_CNT - 1) / MG_BUCKET_CNT : 1;
        model_ovf += chain - 1;
        if (chain > model_max)
            model_max = chain;
    }
    free(fill);

    mg_map *m = new_map(MG_UNSYNC, 0, "flood");
    for (uint64_t i = 1; i <= FLOOD_KEYS; i++)
        mg_put_u64(m, i << FLOOD_SHIFT, i);
    mg_stats st;
    mg_stats_get(m, &st);
    size_t chain = max_chain(m);
    /* Churn: the attacker's keys come and go; deleted slots leave overflow
     * buckets behind, and a same-size grow compacts them. */
    for (uint64_t r = 0; r < 5; r++)
        for (uint64_t i = 1; i <= FLOOD_KEYS; i++) {
            mg_del_u64(m, i << FLOOD_SHIFT);
            mg_put_u64(m, (i + (r + 1) * FLOOD_KEYS) << FLOOD_SHIFT, i);
        }
    mg_stats st2;
    mg_stats_get(m, &st2);
    size_t chain2 = max_chain(m);
    char line[512];
    bool have_metric = metric_line("mapguard_overflow_buckets", "flood", line, sizeof line);

    printf("%u keys k = i << %d, all equal in their low %d bits\n", FLOOD_KEYS,
           FLOOD_SHIFT, FLOOD_SHIFT);
    printf("  fixed hash (k * 0x9E3779B97F4A7C15, low B bits pick the bucket), B=%u: "
           "%zu overflow buckets, longest chain %zu buckets (a lookup scans up to %zu "
           "slots)\n", B, model_ovf, model_max, model_max * MG_BUCKET_CNT);
    printf("  mapguard (per-map random seed), B=%u: %zu overflow buckets for %zu "
           "buckets (%.2f per bucket), longest chain %zu bucket(s)\n", st.B,
           st.overflow_buckets, st.buckets,
           (double)st.overflow_buckets / (double)st.buckets, chain);
    printf("  after 5 rounds of deleting and re-inserting them all: %zu overflow "
           "buckets, longest chain %zu, same-size grows %llu\n", st2.overflow_buckets,
           chain2, (unsigned long long)st2.same_size_grows_total);
    if (have_metric)
        printf("  metric: %s\n", line);
    else
        printf("  metric: mapguard_overflow_buckets not rendered (metrics unavailable "
               "in this build)\n");
    num("keys", FLOOD_KEYS);
    num("fixed_hash_overflow_buckets", (double)model_ovf);
    num("fixed_hash_longest_chain", (double)model_max);
    num("overflow_buckets", (double)st.overflow_buckets);
    num("buckets", (double)st.buckets);
    num("longest_chain", (double)chain);
    num("overflow_buckets_after_churn", (double)st2.overflow_buckets);
    num("longest_chain_after_churn", (double)chain2);
    num("same_size_grows_total", (double)st2.same_size_grows_total);
    by("the per-map seed (and same-size grows under churn): %.2f overflow buckets per "
       "bucket (%.2f after the churn), chains of at most %zu bucket(s) against %zu "
       "under the fixed hash", (double)st.overflow_buckets / (double)st.buckets,
       (double)st2.overflow_buckets / (double)st2.buckets,
       chain > chain2 ? chain : chain2, model_max);
    /* The flood is stopped when no chain grows with the key count: the
     * bound is 1/100 of the fixed hash's chain.  The overflow counts are
     * shown, not judged: for keys that share their low bits the u64 hash
     * (one folded multiply) spreads them unevenly under a few seeds (in
     * 300 runs: 0.58 overflow buckets per bucket at most, chains of 4;
     * after churn, 7 runs above one per bucket, since a same-size grow
     * keeps the seed; once, a chain of 15). */
    bool ok = chain * 100 <= model_max && chain2 * 100 <= model_max;
    if (chain > 3 || chain2 > 3 || st.overflow_buckets * 2 > st.buckets ||
        st2.overflow_buckets > st2.buckets)
        printf("  note: this map's seed spread these keys unevenly (a folded-multiply "
               "hash and keys equal in their low bits): bounded, but not a random "
               "spread\n");
    mg_free(m);
    return ok ? 0 : 1;
}

/* ---- 9: read-mostly promotion thrash ------------------------------------ */

typedef struct {
    mg_map *m;
    unsigned wfrac_pm; /* new-key writes per 10000 ops */
    _Atomic uint64_t *next;
    uint64_t ops, seed;
} thrash_arg;

static void *thrash_thread(void *p)
{
    thrash_arg *a = p;
    uint64_t x = a->seed | 1, v;
    for (uint64_t i = 0; i < a->ops; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x % 10000 < a->wfrac_pm) {
            uint64_t k = atomic_fetch_add_explicit(a->next, 1, memory_order_relaxed);
            mg_put_u64(a->m, k, k);
        } else {
            uint64_t hi = atomic_load_explicit(a->next, memory_order_relaxed);
            mg_get_u64(a->m, (x >> 16) % hi, &v);
        }
    }
    return NULL;
}

#define THRASH_PRELOAD 20000u
#define THRASH_OPS 400000u /* per thread and run: a count, not a time, so the
                              misses and promotions do not depend on speed */

/* ops/s of two threads on a fresh map of the given mode. */
static double thrash_run(mg_mode mode, unsigned wfrac_pm, const char *name,
                         double *misses, double *promotions)
{
    mg_map *m = new_map(mode, 0, name);
    for (uint64_t k = 0; k < THRASH_PRELOAD; k++)
        mg_put_u64(m, k, k);
    uint64_t v;
    for (int r = 0; r < 2; r++) /* settle: promote the preload to the read map */
        for (uint64_t k = 0; k < THRASH_PRELOAD; k++)
            mg_get_u64(m, k, &v);
    double m0 = metric_value("mapguard_readmostly_misses_total", name);
    double p0 = metric_value("mapguard_readmostly_promotions_total", name);
    _Atomic uint64_t next = THRASH_PRELOAD;
    thrash_arg a[2] = {{m, wfrac_pm, &next, THRASH_OPS, 0x9E3779B97F4A7C15ull},
                       {m, wfrac_pm, &next, THRASH_OPS, 0xBF58476D1CE4E5B9ull}};
    pthread_t t[2];
    uint64_t t0 = wall_ns();
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, thrash_thread, &a[i]) != 0)
            exit(3);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    double secs = (double)(wall_ns() - t0) / 1e9;
    double m1 = metric_value("mapguard_readmostly_misses_total", name);
    double p1 = metric_value("mapguard_readmostly_promotions_total", name);
    *misses = m0 >= 0 && m1 >= 0 ? m1 - m0 : -1;
    *promotions = p0 >= 0 && p1 >= 0 ? p1 - p0 : -1;
    mg_free(m);
    return (double)(a[0].ops + a[1].ops) / secs;
}

static int sc_readmostly_thrash(void)
{
    static const unsigned fr[] = {0, 100, 500, 1000, 2500}; /* per 10000 */
    enum { NF = sizeof fr / sizeof fr[0] };
    double rm[NF], sh[NF], mi[NF], pr[NF], dummy;
    int switch_at = -1;
    for (int i = 0; i < NF; i++) {
        char name[32];
        snprintf(name, sizeof name, "doctor-rm-%u", fr[i]);
        /* Best of two alternating runs each: a run is short, and one
         * preemption would otherwise decide the comparison. */
        rm[i] = thrash_run(MG_READMOSTLY, fr[i], name, &mi[i], &pr[i]);
        sh[i] = thrash_run(MG_SHARDED, fr[i], "doctor-sharded", &dummy, &dummy);
        double r2 = thrash_run(MG_READMOSTLY, fr[i], name, &dummy, &dummy);
        double s2 = thrash_run(MG_SHARDED, fr[i], "doctor-sharded", &dummy, &dummy);
        rm[i] = r2 > rm[i] ? r2 : rm[i];
        sh[i] = s2 > sh[i] ? s2 : sh[i];
        if (switch_at < 0 && sh[i] > 1.1 * rm[i]) /* 10%: beyond the noise */
            switch_at = i;
    }
    bool have = mi[0] >= 0 && pr[0] >= 0;
    printf("2 threads x %u ops per run, %u preloaded keys; reads pick any key "
           "written so far, writes add a new key; best of 2 runs\n", THRASH_OPS,
           THRASH_PRELOAD);
    printf("  %-15s %18s %16s %12s %12s\n", "new-key writes", "READMOSTLY Mops/s",
           "SHARDED Mops/s", "misses", "promotions");
    for (int i = 0; i < NF; i++) {
        printf("  %13.0f%% %18.2f %16.2f %12.0f %12.0f\n", fr[i] / 100.0, rm[i] / 1e6,
               sh[i] / 1e6, mi[i], pr[i]);
        char key[48];
        snprintf(key, sizeof key, "readmostly_mops_w%u", fr[i] / 100);
        num(key, rm[i] / 1e6);
        snprintf(key, sizeof key, "sharded_mops_w%u", fr[i] / 100);
        num(key, sh[i] / 1e6);
        snprintf(key, sizeof key, "misses_w%u", fr[i] / 100);
        num(key, mi[i]);
        snprintf(key, sizeof key, "promotions_w%u", fr[i] / 100);
        num(key, pr[i]);
    }
    if (switch_at < 0)
        printf("switch point: MG_SHARDED was not 10%% faster up to %.0f%% new-key "
               "writes on this machine, this run\n", fr[NF - 1] / 100.0);
    else
        printf("switch point: MG_SHARDED is more than 10%% faster from %.0f%% new-key "
               "writes on this machine, this run\n", fr[switch_at] / 100.0);
    num("switch_point_pct", switch_at < 0 ? -1 : fr[switch_at] / 100.0);
    if (!have) {
        printf("(mapguard_readmostly_* metrics not rendered in this build: timing "
               "only)\n");
        by("timing only: the metrics are not available in this build");
        return 0;
    }
    double mlo = mi[1], mhi = mi[1], plo = pr[1], phi = pr[1];
    for (int i = 2; i < NF; i++) {
        mlo = mi[i] < mlo ? mi[i] : mlo;
        mhi = mi[i] > mhi ? mi[i] : mhi;
        plo = pr[i] < plo ? pr[i] : plo;
        phi = pr[i] > phi ? pr[i] : phi;
    }
    char prange[64];
    if (plo == phi)
        snprintf(prange, sizeof prange, "%.0f", plo);
    else
        snprintf(prange, sizeof prange, "%.0f to %.0f", plo, phi);
    by("mapguard_readmostly_misses_total and mapguard_readmostly_promotions_total: "
       "%.0f misses and %.0f promotions with no new keys; %.0f to %.0f misses and "
       "%s promotions (each a copy of the map) per run with them",
       mi[0], pr[0], mlo, mhi, prange);
    bool thrash = mi[0] == 0 && pr[0] == 0;
    for (int i = 1; i < NF; i++)
        thrash = thrash && mi[i] > 0 && pr[i] > 0;
    return thrash ? 0 : 1;
}

/* ---- 10: lost updates from a hand-rolled copy-on-write map -------------- */

#define COW_ENTRIES 128u
#define COW_ITERS 3000u
enum { K_TOTAL = 2 }; /* keys 0 and 1: each writer's counter; 2: shared total */

static _Atomic(mg_map *) cow_cur;

typedef struct {
    int id;
    mg_map **made; /* every copy this writer made (freed at the end) */
    mg_map *snap;  /* MG_SNAPSHOT round */
} cow_arg;

static int copy_entry(const void *key, size_t len, uint64_t val, void *arg)
{
    (void)len;
    return mg_put_u64(arg, *(const uint64_t *)key, val);
}

static void *cow_writer(void *p)
{
    cow_arg *a = p;
    for (unsigned j = 0; j < COW_ITERS; j++) {
        mg_map *old = atomic_load(&cow_cur); /* copy, modify, swap: no lock */
        mg_options o = {.hint = COW_ENTRIES};
        mg_map *c = mg_new(&o);
        if (!c)
            exit(3);
        mg_range(old, copy_entry, c);
        uint64_t v = 0;
        mg_get_u64(c, (uint64_t)a->id, &v);
        mg_put_u64(c, (uint64_t)a->id, v + 1);
        mg_get_u64(c, K_TOTAL, &v);
        mg_put_u64(c, K_TOTAL, v + 1);
        atomic_store(&cow_cur, c);
        a->made[j] = c; /* the old copy may still be read: freed at the end */
    }
    return NULL;
}

static int bump_both(mg_map *m, void *arg)
{
    uint64_t v = 0, id = (uint64_t)(uintptr_t)arg;
    mg_get_u64(m, id, &v);
    mg_put_u64(m, id, v + 1);
    mg_get_u64(m, K_TOTAL, &v);
    return mg_put_u64(m, K_TOTAL, v + 1);
}

static void cas_add(mg_map *m, uint64_t k)
{
    uint64_t v;
    do
        mg_get_u64(m, k, &v);
    while (!mg_cas_u64(m, k, v, v + 1));
}

static void *snap_writer(void *p)
{
    cow_arg *a = p;
    for (unsigned j = 0; j < COW_ITERS; j++) {
        if (a->id == 0) { /* writer 0: CompareAndSwap loops */
            cas_add(a->snap, 0);
            cas_add(a->snap, K_TOTAL);
        } else { /* writer 1: both increments as one snapshot */
            mg_batch(a->snap, bump_both, (void *)(uintptr_t)1);
        }
    }
    return NULL;
}

static void fill_config(mg_map *m)
{
    for (uint64_t k = 0; k < COW_ENTRIES; k++)
        mg_put_u64(m, k, k <= K_TOTAL ? 0 : mix(k));
}

static int sc_cow_lost_updates(void)
{
    uint64_t want = 2u * COW_ITERS, lost = 0, c0 = 0, c1 = 0, tot = 0;
    int rounds = 0;
    mg_map **made = malloc(2u * COW_ITERS * sizeof *made);
    if (!made)
        return 3;
    while (rounds < 5 && lost == 0) {
        rounds++;
        mg_map *first = mg_new(NULL);
        if (!first)
            return 3;
        fill_config(first);
        atomic_store(&cow_cur, first);
        cow_arg a[2] = {{0, made, NULL}, {1, made + COW_ITERS, NULL}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            if (pthread_create(&t[i], NULL, cow_writer, &a[i]) != 0)
                return 3;
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        mg_map *fin = atomic_load(&cow_cur);
        mg_get_u64(fin, 0, &c0);
        mg_get_u64(fin, 1, &c1);
        mg_get_u64(fin, K_TOTAL, &tot);
        lost = want - tot;
        mg_free(first);
        for (unsigned j = 0; j < 2u * COW_ITERS; j++)
            mg_free(made[j]);
    }
    free(made);

    mg_map *s = new_map(MG_SNAPSHOT, 0, "doctor-snapshot");
    fill_config(s);
    cow_arg b[2] = {{0, NULL, s}, {1, NULL, s}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, snap_writer, &b[i]) != 0)
            return 3;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    uint64_t s0 = 0, s1 = 0, stot = 0;
    mg_get_u64(s, 0, &s0);
    mg_get_u64(s, 1, &s1);
    mg_get_u64(s, K_TOTAL, &stot);
    mg_free(s);
    uint64_t slost = 2 * want - (s0 + s1 + stot); /* c0 + c1 + total */
    uint64_t nlost = 2 * want - (c0 + c1 + tot);

    printf("a %u-entry map, 2 writer threads, %u increments each of its own counter "
           "and of a shared total\n", COW_ENTRIES, COW_ITERS);
    printf("  hand-rolled copy-on-write (copy, change, swap the pointer; no writer "
           "lock), round %d: counters %llu + %llu, total %llu of %llu: %llu "
           "of %llu increments lost\n", rounds, (unsigned long long)c0, (unsigned long long)c1,
           (unsigned long long)tot, (unsigned long long)want,
           (unsigned long long)nlost, (unsigned long long)(2 * want));
    if (nlost == 0)
        printf("  (not reproduced this run: no two copies overlapped in %d rounds)\n",
               rounds);
    printf("  MG_SNAPSHOT (writer 0: mg_cas_u64 loops, writer 1: mg_batch): counters "
           "%llu + %llu, total %llu of %llu: %llu of %llu lost\n",
           (unsigned long long)s0, (unsigned long long)s1, (unsigned long long)stot,
           (unsigned long long)want, (unsigned long long)slost,
           (unsigned long long)(2 * want));
    num("increments", (double)(2 * want));
    num("naive_lost", (double)nlost);
    num("naive_rounds", rounds);
    num("snapshot_lost", (double)slost);
    by("MG_SNAPSHOT serialises writers and publishes each CAS or batch as one "
       "snapshot: %llu of %llu increments lost (the hand-rolled map lost %llu)",
       (unsigned long long)slost, (unsigned long long)(2 * want),
       (unsigned long long)nlost);
    return slost == 0 ? 0 : 1;
}

/* ---- 11: a cold-start growth storm -------------------------------------- */

#define COLD_KEYS 1000000u

static int sc_cold_start(void)
{
    uint32_t *lat = malloc(COLD_KEYS * sizeof *lat);
    if (!lat)
        return 3;
    lat_result r[2];
    mg_stats st[2];
    for (int h = 0; h < 2; h++) {
        mg_map *m = new_map(MG_UNSYNC, h ? COLD_KEYS : 0, h ? "cold-hint" : "cold");
        if (timed_inserts(mg_put_fn, m, COLD_KEYS, lat, &r[h]) != 0)
            return 3;
        mg_stats_get(m, &st[h]);
        mg_free(m);
    }
    free(lat);
    printf("%u keys into a new map:\n", COLD_KEYS);
    for (int h = 0; h < 2; h++)
        printf("  %-12s grows %2llu, B %u, total %.0f ms, p99.9 %.2f us, worst %.0f us\n",
               h ? "hint = N" : "no hint", (unsigned long long)st[h].grows_total,
               st[h].B, r[h].total_s * 1e3, r[h].p999_us, r[h].worst_us);
    num("keys", COLD_KEYS);
    num("grows_no_hint", (double)st[0].grows_total);
    num("grows_hint", (double)st[1].grows_total);
    num("total_ms_no_hint", r[0].total_s * 1e3);
    num("total_ms_hint", r[1].total_s * 1e3);
    num("worst_us_no_hint", r[0].worst_us);
    num("worst_us_hint", r[1].worst_us);
    by("mg_options.hint (Go's make(map, hint)): %llu grows with the hint, %llu "
       "without", (unsigned long long)st[1].grows_total,
       (unsigned long long)st[0].grows_total);
    return st[1].grows_total == 0 && st[0].grows_total > 0 && st[0].B == st[1].B ? 0 : 1;
}

/* ---- 12: memory kept after mass deletes --------------------------------- */

#define SHRINK_KEYS 1000000u
#define SHRINK_KEEP 1000u

static int sc_shrink(void)
{
    mg_map *m = new_map(MG_UNSYNC, 0, "doctor-shrink");
    for (uint64_t i = 0; i < SHRINK_KEYS; i++)
        mg_put_u64(m, mix(i), i);
    mg_stats peak, after;
    mg_stats_get(m, &peak);
    for (uint64_t i = SHRINK_KEEP; i < SHRINK_KEYS; i++)
        mg_del_u64(m, mix(i));
    /* A shrink evacuates on writes, like a grow: a few more finish it. */
    size_t extra = 0;
    for (;;) {
        mg_stats_get(m, &after);
        if (!after.shrinking && !after.growing)
            break;
        mg_put_u64(m, 0, 0);
        mg_del_u64(m, 0);
        extra++;
    }
    printf("%u keys inserted, then all but %u deleted:\n", SHRINK_KEYS, SHRINK_KEEP);
    printf("  peak:  B=%u, %zu bytes held\n", peak.B, peak.bytes);
    printf("  after: B=%u, %zu bytes held (%llu shrinks; %zu extra writes finished the "
           "last one)\n", after.B, after.bytes,
           (unsigned long long)after.shrinks_total, extra);
    printf("  Go's map keeps its peak: its buckets never shrink (about %zu bytes "
           "here)\n", peak.bytes);
    num("peak_bytes", (double)peak.bytes);
    num("after_bytes", (double)after.bytes);
    num("shrinks_total", (double)after.shrinks_total);
    num("peak_B", peak.B);
    num("after_B", after.B);
    by("mapguard's shrink (beyond Go): %.2f%% of the peak held after the deletes",
       100.0 * (double)after.bytes / (double)peak.bytes);
    bool ok = after.bytes * 10 < peak.bytes && after.count == SHRINK_KEEP;
    mg_free(m);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* The table of causes                                                      */
/* ------------------------------------------------------------------------ */

/* One child run: a scenario and what must come of it. */
typedef struct {
    const char *label; /* NULL for a cause with one part */
    int (*run)(void);
    const char *expect_fatal; /* first line expected, or NULL: expect exit 0 */
} part;

typedef struct {
    const char *name;
    const char *title;
    const char *what;
    part parts[2]; /* parts[1].run == NULL: one part */
    const char *expect; /* for the measured causes: what the verdict checks */
    /* An extra judgement of a fatal part's report; writes a note. */
    bool (*check)(const char *out, char *note, size_t n);
    const char *fix;
} cause;

static bool both_call_sites(const char *out, char *note, size_t n);

static const cause causes[] = {
    {"concurrent-writes", "concurrent writes",
     "two threads each put 10^6 keys into one MG_UNSYNC map",
     {{NULL, sc_concurrent_writes, "fatal error: concurrent map writes"}}, NULL,
     both_call_sites,
     "an MG_UNSYNC map has Go's rule: one writer and nobody else. Give the map one "
     "owner thread, or guard every call with a mutex (pthread_mutex_t around put/get/"
     "del), as Go code does with sync.Mutex; or pick a thread-safe mode (MG_SHARDED for "
     "mixed reads and writes, docs/modes.md)."},
    {"read-during-write", "a read overlapping a write",
     "one thread reads while another writes",
     {{NULL, sc_read_during_write, "fatal error: concurrent map read and map write"}},
     NULL, NULL,
     "readers need the writer excluded too: a pthread_rwlock_t (readers share, the "
     "writer is alone), MG_RWLOCK, or one owner thread that does all access."},
    {"iter-during-write", "an iteration overlapping a write",
     "one thread ranges over the map while another writes",
     {{NULL, sc_iter_during_write, "fatal error: concurrent map iteration and map write"}},
     NULL, NULL,
     "hold the lock for the whole range, or copy the entries out under the lock and "
     "iterate the copy; MG_SNAPSHOT ranges over one consistent snapshot without "
     "blocking writers."},
    {"nil-map", "a write through a NULL map",
     "mg_put_u64(NULL, ...) after reads, len, delete and range on NULL",
     {{NULL, sc_nil_map, "fatal error: assignment to entry in nil map"}}, NULL, NULL,
     "create the map before the first write (mg_new), and check mg_new's result: it "
     "returns NULL with errno on failure. Reads on NULL act as an empty map, as in Go."},
    {"freed-map", "a freed or corrupted map header",
     "mg_get_u64 on a map after mg_free; mg_get_u64 on a live map whose header a "
     "stray write overran",
     {{"freed", sc_freed_map, "fatal error: use of freed map"},
      {"corrupted", sc_corrupt_header, "fatal error: corrupted map header"}},
     NULL, NULL,
     "set the pointer to NULL after mg_free and give the map one owner who frees it "
     "last; find the stale pointer or the overrunning write with ASan (the report's "
     "detail line gives the bad header's address and magic)."},
    {"mutate-during-range", "the owner mutating its map while ranging, across growth",
     "mg_range's callback deletes keys not yet reached, inserts new keys (the map "
     "grows mid-range) and updates keys not yet reached",
     {{NULL, sc_mutate_during_range, NULL}},
     "no key twice, none missed, none deleted-yet-produced, values current, and the "
     "map grew during the range", NULL,
     "nothing to fix: this is allowed from the owning thread. Keys inserted during the "
     "range may or may not be produced; rely only on the guarantees above."},
    {"growth-stall", "a growth stall",
     "2M inserts with no hint, each timed, into mapguard and into a table that "
     "rehashes everything when it doubles; mapguard's growth timeline recorded",
     {{NULL, sc_growth_stall, NULL}},
     "mapguard's worst insert (on CPU) under 1/10 of the rehash table's", NULL,
     "nothing to do with mapguard: a growth moves two old buckets per write, so no "
     "insert pays for the whole table. If a latency budget matters, also give the "
     "expected size as mg_options.hint (see cold-start), and watch the timeline "
     "(MAPGUARD_TRACE=file) or the grow probes (tools/bpftrace/grow_latency.bt)."},
    {"hash-flood", "overflow-bucket pile-up from a hash-flooding key set",
     "10^5 keys crafted to collide under a fixed hash, into mapguard, then deleted "
     "and re-inserted 5 times",
     {{NULL, sc_hash_flood, NULL}},
     "the longest chain, before and after the churn, under 1/100 of the fixed "
     "hash's (bounded, not growing with the keys)", NULL,
     "keep the per-map seed (every mg_new draws one; never replace the hash with a "
     "fixed one for untrusted keys). Alert on mapguard_overflow_buckets outnumbering "
     "mapguard_buckets (MapguardOverflowBucketsGrowingFast) and on a steady rate of "
     "mapguard_grows_total{kind=\"same_size\"}."},
    {"readmostly-thrash", "read-mostly promotion thrash when new keys are written",
     "MG_READMOSTLY (Go's sync.Map) and MG_SHARDED under 2 threads at 0-25% new-key "
     "writes; misses and promotions read from the metrics",
     {{NULL, sc_readmostly_thrash, NULL}},
     "no miss and no promotion without new keys; misses and promotions at every "
     "new-key write fraction", NULL,
     "MG_READMOSTLY is for keys written once and read many times. When new keys keep "
     "arriving (mapguard_readmostly_promotions_total rising, MapguardPromotionsThrashing "
     "firing), switch the map to MG_SHARDED (or MG_RWLOCK for very rare writes)."},
    {"cow-lost-updates", "lost updates from a hand-rolled copy-on-write map",
     "two threads increment counters in a copy-on-write map that swaps a pointer with "
     "no writer lock; then the same on MG_SNAPSHOT",
     {{NULL, sc_cow_lost_updates, NULL}},
     "MG_SNAPSHOT loses no increment (the hand-rolled map's losses are shown)", NULL,
     "serialise the writers: use MG_SNAPSHOT (readers still never block), and make "
     "each read-modify-write one step: mg_cas_u64 in a loop, or mg_batch for several "
     "keys at once."},
    {"cold-start", "a cold-start growth storm without a size hint",
     "10^6 inserts into a new map, with no hint and with hint = 10^6",
     {{NULL, sc_cold_start, NULL}},
     "no grow at all with the hint, the same final B", NULL,
     "when the size is known (loading a snapshot, a batch, a config), pass it as "
     "mg_options.hint, as Go code does with make(map[K]V, n)."},
    {"shrink", "memory kept after mass deletes (Go maps never shrink)",
     "10^6 inserts, then all but 1000 deleted",
     {{NULL, sc_shrink, NULL}},
     "bytes held after the deletes under 1/10 of the peak", NULL,
     "nothing to do with mapguard: it shrinks incrementally after mass deletes. In Go, "
     "copy the survivors into a new map (or recreate it); watch mapguard_memory_bytes "
     "and MapguardMapOnlyGrows."},
};
#define NCAUSES (sizeof causes / sizeof causes[0])

/* ------------------------------------------------------------------------ */
/* Running a cause in a child                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    int status;        /* waitpid status */
    bool timed_out;
    double seconds;
    char *out;         /* stdout+stderr of the child */
    size_t outlen;
} child_result;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_child(const part *c, double timeout, child_result *r)
{
    int fd[2];
    memset(r, 0, sizeof *r);
    if (pipe(fd) != 0)
        return -1;
    fflush(NULL);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], STDOUT_FILENO);
        dup2(fd[1], STDERR_FILENO);
        close(fd[1]);
        setvbuf(stdout, NULL, _IONBF, 0);
        signal(SIGPIPE, SIG_DFL);
        /* No core file for the expected aborts. */
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        /* The whole report, whatever the caller's environment asks: cause
         * 1 is judged on both threads' stacks (read at the first mg_new,
         * which the parent never calls). */
        setenv("MAPGUARD_TRACEBACK", "all", 1);
        _exit(c->run());
    }
    close(fd[1]);
    size_t cap = 4096;
    r->out = malloc(cap);
    if (!r->out)
        return -1;
    for (;;) {
        struct pollfd p = {fd[0], POLLIN, 0};
        double left = timeout - (now_s() - t0);
        if (left <= 0) {
            kill(pid, SIGKILL);
            r->timed_out = true;
            break;
        }
        int pr = poll(&p, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        if (r->outlen + 1024 > cap) {
            char *n = realloc(r->out, cap * 2);
            if (!n)
                break;
            r->out = n;
            cap *= 2;
        }
        ssize_t n = read(fd[0], r->out + r->outlen, cap - r->outlen - 1);
        if (n <= 0)
            break;
        r->outlen += (size_t)n;
    }
    close(fd[0]);
    r->out[r->outlen] = '\0';
    waitpid(pid, &r->status, 0);
    r->seconds = now_s() - t0;
    return 0;
}

static const char *first_line(const char *s, char *buf, size_t n)
{
    size_t i = 0;
    while (s[i] && s[i] != '\n' && i + 1 < n) {
        buf[i] = s[i];
        i++;
    }
    buf[i] = '\0';
    return buf;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* A growing string. */
typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s)
            return; /* keep what we have */
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *p)
{
    sb_add(b, p, strlen(p));
}

static const char *sb_get(const sbuf *b)
{
    return b->s ? b->s : "";
}

/* Cause 1: the report must show both racing call sites, the detecting
 * writer's and the writer that held the map (found from its writer word):
 * two thread blocks, each with a writer_thread frame. */
static bool both_call_sites(const char *out, char *note, size_t n)
{
    size_t blocks = 0, with_site = 0;
    bool in_block = false, seen_site = false;
    for (const char *p = out; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 7 && strncmp(p, "thread ", 7) == 0 && p[len - 1] == ':') {
            if (in_block && seen_site)
                with_site++;
            blocks++;
            in_block = true;
            seen_site = false;
        } else if (len == 0) {
            if (in_block && seen_site)
                with_site++;
            in_block = false;
            seen_site = false;
        } else if (in_block && len >= 14 && strncmp(p, "writer_thread(", 14) == 0) {
            seen_site = true;
        }
        if (!e)
            break;
        p = e + 1;
    }
    if (in_block && seen_site)
        with_site++;
    bool raw = strstr(out, "(symbolisation failed") != NULL;
    if (blocks >= 2 && with_site >= 2) {
        snprintf(note, n, "the report names both call sites: %zu thread blocks, "
                 "writer_thread in both (the detecting writer and the one holding "
                 "the map)", blocks);
        return true;
    }
    if (blocks >= 2 && raw) {
        snprintf(note, n, "the report has both threads' blocks (%zu), as raw "
                 "module+offset frames: symbolisation failed", blocks);
        return true;
    }
    snprintf(note, n, "the report does not show both call sites: %zu thread blocks, "
             "%zu with a writer_thread frame", blocks, with_site);
    return false;
}

/* Show a fatal report briefly: its first line and context (the detail,
 * the map's line), each thread's header, and its first frame in this file:
 * the call site. */
static void show_report(const char *out)
{
    const char *prev = NULL;
    size_t prevlen = 0, shown = 0;
    bool context = true, block_has_site = false;
    for (const char *p = out; *p && shown < 16;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (strncmp(p, "thread ", 7) == 0)
            context = block_has_site = false;
        bool site = !block_has_site && len > 1 && p[0] == '\t' &&
                    memmem(p, len, "/doctor.c:", 10) != NULL;
        block_has_site = block_has_site || site;
        bool show = (context && len > 0) || strncmp(p, "thread ", 7) == 0 ||
                    strncmp(p, "(stack", 6) == 0 || strncmp(p, "(symbolisation", 14) == 0;
        if (site && prev) {
            printf("      |   %.*s\n", (int)prevlen, prev);
            shown++;
        }
        if (show || site) {
            printf("      | %s%.*s\n", site ? "  " : "", (int)len, p);
            shown++;
        }
        prev = p;
        prevlen = len;
        if (!e)
            break;
        p = e + 1;
    }
}

/* The outcome of one part. */
typedef struct {
    bool ok;
    char happened[256];
    char caught[512];
    sbuf shown, numbers, by;
    char *out;
} part_result;

static void judge_part(const cause *c, const part *pt, part_result *pr)
{
    child_result r;
    memset(pr, 0, sizeof *pr);
    if (run_child(pt, 60.0, &r) != 0) {
        snprintf(pr->happened, sizeof pr->happened, "cannot run the child: %s",
                 strerror(errno));
        pr->out = calloc(1, 1);
        return;
    }
    pr->out = r.out;
    char line[256];
    first_line(r.out, line, sizeof line);
    bool aborted = WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT;
    bool clean = WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0;
    if (r.timed_out)
        snprintf(pr->happened, sizeof pr->happened,
                 "the child hung and was killed after %.1f s", r.seconds);
    else if (WIFSIGNALED(r.status))
        snprintf(pr->happened, sizeof pr->happened,
                 "the child was stopped by signal %d (%s) after %.2f s",
                 WTERMSIG(r.status), strsignal(WTERMSIG(r.status)), r.seconds);
    else
        snprintf(pr->happened, sizeof pr->happened,
                 "the child exited with status %d after %.2f s", WEXITSTATUS(r.status),
                 r.seconds);
    if (pt->expect_fatal) {
        char n[96];
        snprintf(n, sizeof n, "\"%s%sseconds\": %.3f", pt->label ? pt->label : "",
                 pt->label ? "_" : "", r.seconds);
        sb_str(&pr->numbers, n);
        pr->ok = aborted && strcmp(line, pt->expect_fatal) == 0;
        snprintf(pr->caught, sizeof pr->caught, "%s",
                 aborted ? line : "(nothing: no fatal report)");
        if (pr->ok && c->check) {
            char note[384];
            pr->ok = c->check(r.out, note, sizeof note);
            sb_str(&pr->by, note);
        }
        return;
    }
    pr->ok = clean;
    /* Split the protocol lines from what is shown. */
    for (const char *p = r.out; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 5 && strncmp(p, "@num ", 5) == 0) {
            const char *sp = memchr(p + 5, ' ', len - 5);
            if (sp) {
                sb_str(&pr->numbers, pr->numbers.len ? ", " : "");
                sb_str(&pr->numbers, "\"");
                sb_add(&pr->numbers, p + 5, (size_t)(sp - (p + 5)));
                sb_str(&pr->numbers, "\": ");
                sb_add(&pr->numbers, sp + 1, (size_t)(p + len - sp - 1));
            }
        } else if (len > 4 && strncmp(p, "@by ", 4) == 0) {
            sb_add(&pr->by, p + 4, len - 4);
        } else {
            sb_add(&pr->shown, p, len);
            sb_str(&pr->shown, "\n");
        }
        if (!e)
            break;
        p = e + 1;
    }
}

static void free_part(part_result *pr)
{
    free(pr->shown.s);
    free(pr->numbers.s);
    free(pr->by.s);
    free(pr->out);
}

static void indent(const char *text, size_t max_lines)
{
    size_t lines = 0;
    const char *p = text;
    while (*p && lines < max_lines) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        printf("      | %.*s\n", (int)n, p);
        lines++;
        if (!e)
            break;
        p = e + 1;
    }
}

/* Run one cause; print it; return true when mapguard behaved as promised. */
static bool doctor_one(const cause *c, size_t idx, size_t total, bool json, bool first)
{
    size_t np = c->parts[1].run ? 2 : 1;
    part_result pr[2];
    bool ok = true, fatal = c->parts[0].expect_fatal != NULL;
    for (size_t i = 0; i < np; i++) {
        judge_part(c, &c->parts[i], &pr[i]);
        ok = ok && pr[i].ok;
    }
    const char *verdict = ok ? (fatal ? "CAUGHT as expected" : "PREVENTED as promised")
                             : "NOT AS EXPECTED";
    if (json) {
        sbuf happened = {0}, caught = {0}, expected = {0}, output = {0}, numbers = {0};
        for (size_t i = 0; i < np; i++) {
            const part *pt = &c->parts[i];
            const char *sep = i ? "; " : "";
            char lab[64] = "";
            if (pt->label)
                snprintf(lab, sizeof lab, "%s: ", pt->label);
            sb_str(&happened, sep);
            sb_str(&happened, lab);
            sb_str(&happened, pr[i].happened);
            sb_str(&expected, sep);
            sb_str(&expected, pt->expect_fatal ? pt->expect_fatal : c->expect);
            if (pt->expect_fatal) {
                sb_str(&caught, sep);
                sb_str(&caught, pr[i].caught);
            }
            if (pr[i].by.len) {
                sb_str(&caught, caught.len ? "; " : "");
                sb_str(&caught, sb_get(&pr[i].by));
            }
            sb_str(&output, pt->expect_fatal ? pr[i].out : sb_get(&pr[i].shown));
            if (pr[i].numbers.len) {
                sb_str(&numbers, numbers.len ? ", " : "");
                sb_str(&numbers, sb_get(&pr[i].numbers));
            }
        }
        printf("%s\n  {\"cause\": ", first ? "" : ",");
        json_str(stdout, c->name);
        printf(", \"index\": %zu, \"title\": ", (size_t)(c - causes) + 1);
        json_str(stdout, c->title);
        printf(", \"scenario\": ");
        json_str(stdout, c->what);
        printf(", \"happened\": ");
        json_str(stdout, sb_get(&happened));
        printf(", \"expected\": ");
        json_str(stdout, sb_get(&expected));
        printf(", \"caught_by\": ");
        json_str(stdout, sb_get(&caught));
        printf(", \"numbers\": {%s}", sb_get(&numbers));
        printf(", \"output\": ");
        json_str(stdout, sb_get(&output));
        printf(", \"fix\": ");
        json_str(stdout, c->fix);
        printf(", \"verdict\": ");
        json_str(stdout, verdict);
        printf(", \"ok\": %s}", ok ? "true" : "false");
        free(happened.s);
        free(caught.s);
        free(expected.s);
        free(output.s);
        free(numbers.s);
    } else {
        printf("[%zu/%zu] %s: %s\n", idx, total, c->name, c->title);
        printf("  scenario:  %s\n", c->what);
        for (size_t i = 0; i < np; i++) {
            const part *pt = &c->parts[i];
            if (pt->label)
                printf("  -- %s --\n", pt->label);
            printf("  happened:  %s\n", pr[i].happened);
            if (pt->expect_fatal) {
                printf("  caught by: %s\n", pr[i].caught);
                if (pr[i].by.len)
                    printf("             %s\n", sb_get(&pr[i].by));
                show_report(pr[i].out);
            } else {
                printf("  shown:\n");
                indent(sb_get(&pr[i].shown), 30);
                printf("  prevented by: %s\n",
                       pr[i].by.len ? sb_get(&pr[i].by) : "(see above)");
            }
        }
        printf("  fix:       %s\n", c->fix);
        printf("  verdict:   %s%s%s\n\n", verdict, c->expect ? ": " : "",
               c->expect ? c->expect : "");
    }
    for (size_t i = 0; i < np; i++)
        free_part(&pr[i]);
    return ok;
}

static void usage_causes(FILE *f)
{
    fprintf(f, "causes:\n");
    for (size_t i = 0; i < NCAUSES; i++)
        fprintf(f, "  %2zu %-22s %s\n", i + 1, causes[i].name, causes[i].title);
}

int mg_cli_doctor(int argc, char **argv)
{
    bool json = false;
    const char *only = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--list") == 0) {
            usage_causes(stdout);
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: mapguard doctor [--json] [--list] [CAUSE]\n"
                   "Reproduces each root cause of a map crash or slowdown in a child "
                   "process and shows what happened, what caught or prevented it, and "
                   "the fix (docs/root-causes.md).\nCAUSE is a name or a number. Exit "
                   "status 1 if any cause was not caught or prevented as expected.\n");
            usage_causes(stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "mapguard doctor: unknown option %s\n", argv[i]);
            return 2;
        } else if (only) {
            fprintf(stderr, "mapguard doctor: one cause at a time\n");
            return 2;
        } else {
            only = argv[i];
        }
    }
    /* A cause by name or by its number in the list. */
    size_t pick = 0;
    if (only) {
        char *end;
        unsigned long k = strtoul(only, &end, 10);
        if (*only && *end == '\0' && k >= 1 && k <= NCAUSES)
            pick = (size_t)k;
        for (size_t i = 0; !pick && i < NCAUSES; i++)
            if (strcmp(only, causes[i].name) == 0)
                pick = i + 1;
        if (!pick) {
            fprintf(stderr, "mapguard doctor: no such cause: %s\n", only);
            usage_causes(stderr);
            return 2;
        }
    }
    size_t total = pick ? 1 : NCAUSES;
    if (json)
        printf("[");
    else
        printf("mapguard doctor: %zu root cause%s of map crashes and slowdowns, each "
               "reproduced in a child process\n\n", total, total == 1 ? "" : "s");
    size_t bad = 0, k = 0;
    for (size_t i = 0; i < NCAUSES; i++) {
        if (pick && pick != i + 1)
            continue;
        k++;
        if (!doctor_one(&causes[i], k, total, json, k == 1))
            bad++;
    }
    if (json)
        printf("\n]\n");
    else
        printf("%zu of %zu causes caught or prevented as expected%s\n", total - bad, total,
               bad ? "; see NOT AS EXPECTED above" : "");
    return bad ? 1 : 0;
}
