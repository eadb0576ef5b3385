/*
 * metrics.c - mg_metrics_render: every named map in the Prometheus text
 * exposition format 0.0.4 (docs/metrics.md lists the series).
 *
 * How a render works:
 *   1. Collect.  One mg__registry_foreach pass copies each map's sample,
 *      and its name (which points into the map and is valid only under the
 *      registry lock), into memory of our own.  The lock is held only for
 *      the copy, never while formatting.
 *   2. Tell duplicates apart.  Names should be unique; when two registered
 *      maps share one, the second (in registration order) gets the label
 *      id="2", the third id="3", and so on, so no two series are equal.
 *   3. Format.  Family by family (HELP, TYPE, then every map's samples), as
 *      the format requires, into the caller's buffer.  Writing past cap is
 *      only counted, so the result is the whole text's length, like
 *      snprintf.
 *
 * Rules the output keeps:
 *   - Names are mapguard_<thing>_<unit>, base units, _total on counters; a
 *     family that no registered map has (say, no MG_ACTOR map) is left out.
 *   - Label values escape \\, \" and \n; HELP escapes \\ and \n (0.0.4).
 *   - Label values and HELP are valid UTF-8: an ill-formed sequence in a
 *     map's name becomes U+FFFD (Prometheus rejects a label value that is
 *     not UTF-8, and one such value fails the whole scrape).  Duplicates
 *     are told apart after that replacement, so two names that differ only
 *     in invalid bytes still get distinct series (id="2").
 *   - Doubles are written in the shortest form that reads back to the same
 *     value, in the C locale whatever the process's LC_NUMERIC; NaN, +Inf
 *     and -Inf as the format spells them.
 *   - The last line ends in \n.
 * If the copy in step 1 cannot get memory, that render leaves out the
 * per-map families (the process-wide ones are still there).
 *
 * Thread safety: any thread, while maps are in use: the samples are read
 * under the registry lock by registry.c, which never takes a map's locks.
 */
#include "obs/obs.h"
#include "obs/utf8.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- output: a buffer that counts what does not fit ------------------- */

typedef struct {
    char *buf;
    size_t cap; /* bytes of buf; the last one is kept for the NUL */
    size_t len; /* bytes the whole text needs so far */
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->cap > 0 && o->len < o->cap - 1) {
        size_t room = o->cap - 1 - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(out_t *o, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, tmp + i, sizeof tmp - i);
}

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD in UTF-8 */

/* s with every ill-formed UTF-8 sequence replaced by U+FFFD, into dst,
 * which has room for 3 * strlen(s) + 1 bytes; returns the bytes written,
 * NUL included. */
static size_t utf8_sanitize(char *dst, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    while (*p) {
        int n = *p < 0x80 ? 1 : mg__utf8_seq(p, (size_t)-1);
        if (n > 0) {
            memcpy(dst + o, p, (size_t)n);
            o += (size_t)n;
            p += n;
        } else {
            memcpy(dst + o, REPLACEMENT, 3);
            o += 3;
            p += -n;
        }
    }
    dst[o++] = '\0';
    return o;
}

/* esc_label: a label value (\\, \", \n); otherwise HELP text (\\, \n).
 * Ill-formed UTF-8 becomes U+FFFD in both. */
static void put_escaped(out_t *o, const char *s, bool esc_label)
{
    const char *run = s;
    while (*s) {
        const char *rep = NULL;
        size_t adv = 1;
        if ((unsigned char)*s >= 0x80) {
            int n = mg__utf8_seq((const unsigned char *)s, (size_t)-1);
            if (n > 0) {
                s += n;
                continue; /* part of the run */
            }
            rep = REPLACEMENT;
            adv = (size_t)-n;
        } else if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (*s == '"' && esc_label)
            rep = "\\\"";
        if (rep) {
            put(o, run, (size_t)(s - run));
            puts_(o, rep);
            run = s + adv;
        }
        s += adv;
    }
    put(o, run, (size_t)(s - run));
}

/* A C locale for number formatting, made once. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static void put_double(out_t *o, double v)
{
    if (isnan(v)) {
        puts_(o, "NaN");
        return;
    }
    if (isinf(v)) {
        puts_(o, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    pthread_once(&c_locale_once, c_locale_init);
    locale_t prev = c_locale ? uselocale(c_locale) : (locale_t)0;
    char tmp[40];
    /* The shortest of %.15g, %.16g, %.17g that reads back exactly; %.17g
     * always does. */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (prec == 17 || strtod(tmp, NULL) == v)
            break;
    }
    if (prev)
        uselocale(prev);
    /* Without a C locale object (newlocale failed), a locale's decimal
     * comma is the only thing that can differ; the format needs '.'. */
    for (char *p = tmp; *p; p++)
        if (*p == ',')
            *p = '.';
    puts_(o, tmp);
}

/* ---- step 1: collect ---------------------------------------------------- */

typedef struct {
    mg_metric_sample s; /* s.name points into collect_t.names once collected */
    size_t name_off;
    unsigned id; /* 0: the first map with this name; k >= 2: the k-th */
} msample;

typedef struct {
    msample *v;
    size_t n, cap;
    char *names;
    size_t names_len, names_cap;
    bool failed; /* out of memory: the per-map families are left out */
} collect_t;

static bool reserve(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*p, ncap * elem);
    if (!np)
        return false;
    *p = np;
    *cap = ncap;
    return true;
}

static void collect_one(const mg_metric_sample *s, void *arg)
{
    collect_t *c = arg;
    if (c->failed)
        return;
    const char *name = s->name ? s->name : "";
    size_t room = 3 * strlen(name) + 1; /* every byte may become U+FFFD */
    if (!reserve((void **)&c->v, &c->cap, c->n + 1, sizeof *c->v) ||
        !reserve((void **)&c->names, &c->names_cap, c->names_len + room, 1)) {
        c->failed = true;
        return;
    }
    msample *m = &c->v[c->n++];
    m->s = *s;
    m->s.name = NULL;
    /* mode and keykind are static strings (mg_mode_name, literals) */
    if (!m->s.mode)
        m->s.mode = "";
    if (!m->s.keykind)
        m->s.keykind = "";
    m->name_off = c->names_len;
    m->id = 0;
    /* valid UTF-8 from here on, so that step 2 compares the names as
     * Prometheus will see them */
    c->names_len += utf8_sanitize(c->names + c->names_len, name);
}

/* ---- step 2: duplicate names ------------------------------------------- */

static int by_name_then_order(const void *a, const void *b)
{
    const msample *x = *(const msample *const *)a, *y = *(const msample *const *)b;
    int r = strcmp(x->s.name, y->s.name);
    if (r)
        return r;
    return (x > y) - (x < y); /* registration order: the array's order */
}

static void number_duplicates(collect_t *c)
{
    if (c->n < 2)
        return;
    msample **ix = malloc(c->n * sizeof *ix);
    if (!ix) { /* fall back to the quadratic walk, which needs no memory */
        for (size_t i = 1; i < c->n; i++) {
            unsigned k = 1;
            for (size_t j = 0; j < i; j++)
                if (strcmp(c->v[j].s.name, c->v[i].s.name) == 0)
                    k++;
            c->v[i].id = k > 1 ? k : 0;
        }
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        ix[i] = &c->v[i];
    qsort(ix, c->n, sizeof *ix, by_name_then_order);
    unsigned k = 1;
    for (size_t i = 1; i < c->n; i++) {
        k = strcmp(ix[i]->s.name, ix[i - 1]->s.name) == 0 ? k + 1 : 1;
        ix[i]->id = k > 1 ? k : 0;
    }
    free(ix);
}

/* ---- step 3: the families ---------------------------------------------- */

typedef struct {
    bool is_double;
    uint64_t u;
    double d;
} value_t;

static value_t vu(uint64_t u)
{
    return (value_t){.u = u};
}

static value_t vd(double d)
{
    return (value_t){.is_double = true, .d = d};
}

typedef value_t (*getter)(const mg_metric_sample *s);

static value_t g_one(const mg_metric_sample *s)
{
    (void)s;
    return vu(1);
}
static value_t g_entries(const mg_metric_sample *s) { return vu(s->st.count); }
static value_t g_buckets(const mg_metric_sample *s) { return vu(s->st.buckets); }
static value_t g_B(const mg_metric_sample *s) { return vu(s->st.B); }
static value_t g_load(const mg_metric_sample *s) { return vd(s->st.load_factor); }
static value_t g_overflow(const mg_metric_sample *s) { return vu(s->st.overflow_buckets); }
static value_t g_grows(const mg_metric_sample *s) { return vu(s->st.grows_total); }
static value_t g_same(const mg_metric_sample *s) { return vu(s->st.same_size_grows_total); }
static value_t g_shrinks(const mg_metric_sample *s) { return vu(s->st.shrinks_total); }
static value_t g_old(const mg_metric_sample *s)
{
    return vu(s->st.growing ? s->st.old_buckets : 0);
}
static value_t g_evacuated(const mg_metric_sample *s)
{
    return vu(s->st.growing ? s->st.evacuated : 0);
}
static value_t g_progress(const mg_metric_sample *s)
{
    if (!s->st.growing || s->st.old_buckets == 0)
        return vu(1);
    double r = (double)s->st.evacuated / (double)s->st.old_buckets;
    return vd(r > 1 ? 1 : r);
}
static value_t g_bytes(const mg_metric_sample *s) { return vu(s->st.bytes); }
static value_t g_misses(const mg_metric_sample *s) { return vu(s->misses_total); }
static value_t g_promotions(const mg_metric_sample *s) { return vu(s->promotions_total); }
static value_t g_published(const mg_metric_sample *s) { return vu(s->snapshots_published_total); }
static value_t g_retired(const mg_metric_sample *s) { return vu(s->snapshots_retired_total); }
static value_t g_qdepth(const mg_metric_sample *s) { return vu(s->queue_depth); }
static value_t g_qcap(const mg_metric_sample *s) { return vu(s->queue_capacity); }
static value_t g_shards(const mg_metric_sample *s) { return vu(s->shards); }
static value_t g_shard_min(const mg_metric_sample *s) { return vu(s->shard_entries_min); }
static value_t g_shard_max(const mg_metric_sample *s) { return vu(s->shard_entries_max); }

/* Which maps a family covers. */
enum { ALL, READMOSTLY, SNAPSHOT, ACTOR, SHARDED };

typedef struct {
    const char *name, *type, *help;
    int which;
    /* up to two series per map: extra labels (or NULL) and a getter */
    struct {
        const char *labels;
        getter get;
    } series[2];
} family;

/* The per-map families; docs/metrics.md explains each one. */
static const family families[] = {
    {"mapguard_map_info", "gauge",
     "Always 1; labels: the map's name, mode and key kind (u64 or bytes).", ALL,
     {{NULL, g_one}}},
    {"mapguard_entries", "gauge", "Live entries in the map.", ALL, {{NULL, g_entries}}},
    {"mapguard_buckets", "gauge", "Buckets in the current bucket array (2^B).", ALL,
     {{NULL, g_buckets}}},
    {"mapguard_buckets_log2", "gauge", "B: log2 of the bucket count, as Go's hmap.B.", ALL,
     {{NULL, g_B}}},
    {"mapguard_load_factor", "gauge",
     "Entries per bucket (entries / buckets); a doubling grow starts above 6.5.", ALL,
     {{NULL, g_load}}},
    {"mapguard_overflow_buckets", "gauge",
     "Overflow buckets chained to the bucket arrays (old and new while evacuating).", ALL,
     {{NULL, g_overflow}}},
    {"mapguard_grows_total", "counter",
     "Grows started: kind=double (twice the buckets) or kind=same_size (too many overflow "
     "buckets).",
     ALL, {{"kind=\"double\"", g_grows}, {"kind=\"same_size\"", g_same}}},
    {"mapguard_shrinks_total", "counter", "Shrinks started (after many deletes).", ALL,
     {{NULL, g_shrinks}}},
    {"mapguard_old_buckets", "gauge",
     "Buckets of the old array still being evacuated; 0 when no grow or shrink runs.", ALL,
     {{NULL, g_old}}},
    {"mapguard_evacuated_buckets", "gauge",
     "Old buckets evacuated so far by the running grow or shrink; 0 when none runs.", ALL,
     {{NULL, g_evacuated}}},
    {"mapguard_evacuation_progress_ratio", "gauge",
     "Evacuated old buckets / old buckets, 0 to 1; 1 when no grow or shrink runs.", ALL,
     {{NULL, g_progress}}},
    {"mapguard_memory_bytes", "gauge",
     "Memory the map holds: header, bucket arrays (old and new), copied keys.", ALL,
     {{NULL, g_bytes}}},
    {"mapguard_readmostly_misses_total", "counter",
     "READMOSTLY: loads that missed the lock-free read map and took the lock.", READMOSTLY,
     {{NULL, g_misses}}},
    {"mapguard_readmostly_promotions_total", "counter",
     "READMOSTLY: promotions of the dirty map to the read map (each copies the map).",
     READMOSTLY, {{NULL, g_promotions}}},
    {"mapguard_snapshots_published_total", "counter",
     "SNAPSHOT: snapshots published (one per write or batch).", SNAPSHOT,
     {{NULL, g_published}}},
    {"mapguard_snapshots_retired_total", "counter",
     "SNAPSHOT: snapshots retired (freed after their readers left).", SNAPSHOT,
     {{NULL, g_retired}}},
    {"mapguard_actor_queue_depth", "gauge",
     "ACTOR: requests waiting in the owner thread's channel.", ACTOR, {{NULL, g_qdepth}}},
    {"mapguard_actor_queue_capacity", "gauge",
     "ACTOR: capacity of the owner thread's channel, in requests.", ACTOR,
     {{NULL, g_qcap}}},
    {"mapguard_shards", "gauge", "SHARDED: number of shards.", SHARDED, {{NULL, g_shards}}},
    {"mapguard_shard_entries_min", "gauge", "SHARDED: entries in the emptiest shard.",
     SHARDED, {{NULL, g_shard_min}}},
    {"mapguard_shard_entries_max", "gauge", "SHARDED: entries in the fullest shard.",
     SHARDED, {{NULL, g_shard_max}}},
};

static bool covers(const family *f, const mg_metric_sample *s)
{
    switch (f->which) {
    case READMOSTLY: return s->has_readmostly;
    case SNAPSHOT: return s->has_snapshot;
    case ACTOR: return s->has_actor;
    case SHARDED: return s->has_shards;
    default: return true;
    }
}

static void put_header(out_t *o, const char *name, const char *type, const char *help)
{
    puts_(o, "# HELP ");
    puts_(o, name);
    puts_(o, " ");
    put_escaped(o, help, false);
    puts_(o, "\n# TYPE ");
    puts_(o, name);
    puts_(o, " ");
    puts_(o, type);
    puts_(o, "\n");
}

static void put_value(out_t *o, value_t v)
{
    puts_(o, " ");
    if (v.is_double)
        put_double(o, v.d);
    else
        put_u64(o, v.u);
    puts_(o, "\n");
}

static void put_family(out_t *o, const family *f, const collect_t *c)
{
    bool any = false;
    for (size_t i = 0; i < c->n && !any; i++)
        any = covers(f, &c->v[i].s);
    if (!any)
        return;
    put_header(o, f->name, f->type, f->help);
    bool info = f->series[0].get == g_one;
    for (size_t i = 0; i < c->n; i++) {
        const msample *m = &c->v[i];
        if (!covers(f, &m->s))
            continue;
        for (size_t k = 0; k < 2 && f->series[k].get; k++) {
            puts_(o, f->name);
            puts_(o, "{map=\"");
            put_escaped(o, m->s.name, true);
            puts_(o, "\",mode=\"");
            put_escaped(o, m->s.mode, true);
            puts_(o, "\"");
            if (m->id) {
                puts_(o, ",id=\"");
                put_u64(o, m->id);
                puts_(o, "\"");
            }
            if (info) {
                puts_(o, ",keys=\"");
                put_escaped(o, m->s.keykind, true);
                puts_(o, "\"");
            }
            if (f->series[k].labels) {
                puts_(o, ",");
                puts_(o, f->series[k].labels);
            }
            puts_(o, "}");
            put_value(o, f->series[k].get(&m->s));
        }
    }
}

/* Fatal kinds as label values: the report's first line in snake_case
 * ("concurrent map writes" -> "concurrent_map_writes"). */
static const char *const fatal_msgs[] = {
#define MG__FATAL_MSG(name, msg) msg,
    MG_FATAL_MAP(MG__FATAL_MSG)
#undef MG__FATAL_MSG
};

static void snake_case(char *dst, size_t cap, const char *msg)
{
    size_t n = 0;
    bool sep = false;
    for (; *msg && n + 2 < cap; msg++) {
        char ch = *msg;
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) {
            if (sep && n > 0)
                dst[n++] = '_';
            dst[n++] = ch;
            sep = false;
        } else {
            sep = true;
        }
    }
    dst[n] = '\0';
}

static void put_process_families(out_t *o, size_t nmaps)
{
    put_header(o, "mapguard_build_info", "gauge", "Always 1; the label is libmapguard's version.");
    puts_(o, "mapguard_build_info{version=\"" MG_VERSION_STRING "\"} 1\n");

    put_header(o, "mapguard_maps", "gauge",
               "Named maps registered now (each one has the per-map series).");
    puts_(o, "mapguard_maps");
    put_value(o, vu(nmaps));

    put_header(o, "mapguard_fatal_errors_total", "counter",
               "Fatal errors this process reported, by kind (each one then aborts).");
    for (size_t k = 0; k < sizeof fatal_msgs / sizeof fatal_msgs[0]; k++) {
        char kind[96];
        snake_case(kind, sizeof kind, fatal_msgs[k]);
        puts_(o, "mapguard_fatal_errors_total{kind=\"");
        puts_(o, kind);
        puts_(o, "\"}");
        put_value(o, vu(mg__fatal_count((mg_fatal_kind)k)));
    }
}

size_t mg_metrics_render(char *buf, size_t cap)
{
    if (!buf)
        cap = 0;
    collect_t c = {0};
    size_t nmaps = mg__registry_foreach(collect_one, &c);
    if (c.failed)
        c.n = 0;
    for (size_t i = 0; i < c.n; i++)
        c.v[i].s.name = c.names + c.v[i].name_off;
    number_duplicates(&c);

    out_t o = {.buf = buf, .cap = cap, .len = 0};
    put_process_families(&o, nmaps);
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        put_family(&o, &families[f], &c);
    if (cap > 0)
        buf[o.len < cap ? o.len : cap - 1] = '\0';
    free(c.v);
    free(c.names);
    return o.len;
}
