/*
 * test_metrics.c - mg_metrics_render against its contract (mapguard.h) and
 * docs/metrics.md: exact text for known maps, snprintf-like truncation,
 * escaping, duplicate names, every mode's families, thread safety.
 */
#include "mapguard.h"
#include "obs/obs.h"
#include "../test.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdatomic.h>

/* The whole exposition, malloc'd. */
static char *render_all(void)
{
    size_t n = mg_metrics_render(NULL, 0);
    char *buf = malloc(n + 1);
    T_ASSERT(buf);
    size_t n2 = mg_metrics_render(buf, n + 1);
    T_EQ_U(n2, n);
    T_EQ_U(strlen(buf), n);
    return buf;
}

/* The block of family `name`, from its HELP line to the next HELP (or the
 * end), malloc'd; NULL when the family is absent. */
static char *family_block(const char *text, const char *name)
{
    char head[128];
    snprintf(head, sizeof head, "# HELP %s ", name);
    const char *p = strstr(text, head);
    if (!p)
        return NULL;
    const char *end = strstr(p + 1, "\n# HELP ");
    size_t n = end ? (size_t)(end - p) + 1 : strlen(p);
    char *b = malloc(n + 1);
    T_ASSERT(b);
    memcpy(b, p, n);
    b[n] = '\0';
    return b;
}

/* Every sample line of the family is exactly `want` (HELP line skipped). */
static void expect_family(const char *text, const char *name, const char *want)
{
    char *b = family_block(text, name);
    if (!b)
        T_FAIL("family %s missing in:\n%s", name, text);
    const char *body = strchr(b, '\n') + 1; /* after HELP */
    if (strcmp(body, want) != 0)
        T_FAIL("family %s:\n--- got\n%s--- want\n%s", name, body, want);
    free(b);
}

static void expect_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    T_FAIL("line not found: %s\nin:\n%s", line, text);
}

/* The value of the sample whose name and labels are `series`. */
static unsigned long sample_value(const char *text, const char *series)
{
    char pat[256];
    snprintf(pat, sizeof pat, "\n%s ", series);
    const char *p = strstr(text, pat);
    if (!p)
        T_FAIL("no sample %s", series);
    return strtoul(p + strlen(pat), NULL, 10);
}

static void expect_no(const char *text, const char *sub)
{
    if (strstr(text, sub))
        T_FAIL("unexpected \"%s\" in:\n%s", sub, text);
}

/* Each line is a comment or a sample; no series twice; ends in \n. */
static void check_well_formed(const char *text)
{
    size_t n = strlen(text);
    T_ASSERT(n > 0 && text[n - 1] == '\n');
    char **keys = NULL;
    size_t nk = 0;
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        T_ASSERT(e);
        if (*p != '#') {
            if (strncmp(p, "mapguard_", 9) != 0)
                T_FAIL("not a sample line: %.*s", (int)(e - p), p);
            const char *sp = e;
            while (sp > p && sp[-1] != ' ')
                sp--;
            T_ASSERT(sp > p + 1);
            size_t kl = (size_t)(sp - 1 - p);
            for (size_t i = 0; i < nk; i++)
                if (strlen(keys[i]) == kl && memcmp(keys[i], p, kl) == 0)
                    T_FAIL("duplicate series: %.*s", (int)kl, p);
            keys = realloc(keys, (nk + 1) * sizeof *keys);
            T_ASSERT(keys);
            keys[nk] = strndup(p, kl);
            nk++;
        }
        p = e + 1;
    }
    for (size_t i = 0; i < nk; i++)
        free(keys[i]);
    free(keys);
}

static mg_map *named(const char *name, mg_mode mode, mg_keykind kk)
{
    mg_options o = {.mode = mode, .key = kk, .name = name};
    if (mode == MG_SHARDED)
        o.shards = 8;
    if (mode == MG_ACTOR)
        o.queue = 64;
    mg_map *m = mg_new(&o);
    T_ASSERT(m);
    return m;
}

static void fill_u64(mg_map *m, uint64_t n)
{
    for (uint64_t k = 0; k < n; k++)
        T_EQ_I(mg_put_u64(m, k, k * 3), MG_OK);
}

static void expect_stats(mg_map *m, size_t count, size_t buckets, double lf)
{
    mg_stats st;
    T_EQ_I(mg_stats_get(m, &st), MG_OK);
    T_EQ_U(st.count, count);
    T_EQ_U(st.buckets, buckets);
    T_ASSERT(st.load_factor == lf);
}

/* Known maps, exact text of a few families.  8 entries fit in B=0; the
 * 9th starts a doubling grow (Go: count > 8 and > 6.5 * 2^B); 13 entries
 * in B=1 are exactly at 6.5. */
static void c_exact(void)
{
    mg_map *e = named("empty", MG_UNSYNC, MG_KEY_U64);
    mg_map *a = named("eight", MG_UNSYNC, MG_KEY_U64);
    mg_map *b = named("thirteen", MG_UNSYNC, MG_KEY_BYTES);
    mg_map *r = named("rw", MG_RWLOCK, MG_KEY_U64);
    mg_map *anon = mg_new(NULL); /* unnamed: not rendered */
    fill_u64(a, 8);
    for (int i = 0; i < 13; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        T_EQ_I(mg_put(b, k, strlen(k), 1), MG_OK);
    }
    fill_u64(r, 9);
    fill_u64(anon, 100);
    /* the engine agrees with what the text below says */
    expect_stats(e, 0, 1, 0);
    expect_stats(a, 8, 1, 8);
    expect_stats(b, 13, 2, 6.5);
    expect_stats(r, 9, 2, 4.5);

    char *t = render_all();
    check_well_formed(t);
    T_ASSERT(strncmp(t, "# HELP mapguard_build_info ", 27) == 0);
    expect_family(t, "mapguard_build_info",
                  "# TYPE mapguard_build_info gauge\n"
                  "mapguard_build_info{version=\"" MG_VERSION_STRING "\"} 1\n");
    expect_family(t, "mapguard_maps", "# TYPE mapguard_maps gauge\nmapguard_maps 4\n");
    expect_family(t, "mapguard_entries",
                  "# TYPE mapguard_entries gauge\n"
                  "mapguard_entries{map=\"empty\",mode=\"unsync\"} 0\n"
                  "mapguard_entries{map=\"eight\",mode=\"unsync\"} 8\n"
                  "mapguard_entries{map=\"thirteen\",mode=\"unsync\"} 13\n"
                  "mapguard_entries{map=\"rw\",mode=\"rwlock\"} 9\n");
    expect_family(t, "mapguard_buckets",
                  "# TYPE mapguard_buckets gauge\n"
                  "mapguard_buckets{map=\"empty\",mode=\"unsync\"} 1\n"
                  "mapguard_buckets{map=\"eight\",mode=\"unsync\"} 1\n"
                  "mapguard_buckets{map=\"thirteen\",mode=\"unsync\"} 2\n"
                  "mapguard_buckets{map=\"rw\",mode=\"rwlock\"} 2\n");
    expect_family(t, "mapguard_buckets_log2",
                  "# TYPE mapguard_buckets_log2 gauge\n"
                  "mapguard_buckets_log2{map=\"empty\",mode=\"unsync\"} 0\n"
                  "mapguard_buckets_log2{map=\"eight\",mode=\"unsync\"} 0\n"
                  "mapguard_buckets_log2{map=\"thirteen\",mode=\"unsync\"} 1\n"
                  "mapguard_buckets_log2{map=\"rw\",mode=\"rwlock\"} 1\n");
    expect_family(t, "mapguard_load_factor",
                  "# TYPE mapguard_load_factor gauge\n"
                  "mapguard_load_factor{map=\"empty\",mode=\"unsync\"} 0\n"
                  "mapguard_load_factor{map=\"eight\",mode=\"unsync\"} 8\n"
                  "mapguard_load_factor{map=\"thirteen\",mode=\"unsync\"} 6.5\n"
                  "mapguard_load_factor{map=\"rw\",mode=\"rwlock\"} 4.5\n");
    expect_family(t, "mapguard_map_info",
                  "# TYPE mapguard_map_info gauge\n"
                  "mapguard_map_info{map=\"empty\",mode=\"unsync\",keys=\"u64\"} 1\n"
                  "mapguard_map_info{map=\"eight\",mode=\"unsync\",keys=\"u64\"} 1\n"
                  "mapguard_map_info{map=\"thirteen\",mode=\"unsync\",keys=\"bytes\"} 1\n"
                  "mapguard_map_info{map=\"rw\",mode=\"rwlock\",keys=\"u64\"} 1\n");
    /* "rw" grew once, from B=0 to B=1; nobody else grew */
    expect_line(t, "mapguard_grows_total{map=\"rw\",mode=\"rwlock\",kind=\"double\"} 1");
    expect_line(t, "mapguard_grows_total{map=\"rw\",mode=\"rwlock\",kind=\"same_size\"} 0");
    expect_line(t, "mapguard_grows_total{map=\"eight\",mode=\"unsync\",kind=\"double\"} 0");
    expect_line(t, "# TYPE mapguard_grows_total counter");
    /* no map of these modes: their families are left out */
    expect_no(t, "mapguard_readmostly_");
    expect_no(t, "mapguard_snapshots_");
    expect_no(t, "mapguard_actor_");
    expect_no(t, "mapguard_shard");
    free(t);
    mg_free(e);
    mg_free(a);
    mg_free(b);
    mg_free(r);
    mg_free(anon);
}

static void check_cut(const char *full, size_t n, size_t cap)
{
    char *buf = malloc(cap + 8);
    T_ASSERT(buf);
    memset(buf, 'X', cap + 8);
    size_t got = mg_metrics_render(buf, cap);
    T_EQ_U(got, n);
    size_t kept = n < cap ? n : cap - 1;
    T_EQ_U(strlen(buf), kept);          /* NUL-terminated at the cut */
    T_ASSERT(memcmp(buf, full, kept) == 0); /* a prefix of the whole */
    for (size_t i = cap; i < cap + 8; i++)  /* nothing written past cap */
        T_ASSERT(buf[i] == 'X');
    free(buf);
}

static void c_truncation(void)
{
    mg_map *m = named("trunc", MG_UNSYNC, MG_KEY_U64);
    fill_u64(m, 100);
    char *full = render_all();
    size_t n = strlen(full);
    T_ASSERT(n > 100);
    size_t caps[] = {1, 2, 7, n / 3, n / 2, n - 1, n, n + 1, n + 100};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        check_cut(full, n, caps[i]);
    /* cap 0: buf is not touched, even when it is not NULL */
    char one = 'X';
    T_EQ_U(mg_metrics_render(&one, 0), n);
    T_ASSERT(one == 'X');
    T_EQ_U(mg_metrics_render(NULL, 0), n);
    /* a cut render, then a retry with the size it asked for: same text */
    char small[64];
    size_t need = mg_metrics_render(small, sizeof small);
    T_EQ_U(need, n);
    char *again = malloc(need + 1);
    T_ASSERT(again);
    T_EQ_U(mg_metrics_render(again, need + 1), need);
    T_STREQ(again, full);
    free(again);
    free(full);
    mg_free(m);
}

static void c_escaping(void)
{
    mg_map *m = named("we\"ird\\na\nme", MG_UNSYNC, MG_KEY_U64);
    fill_u64(m, 3);
    char *t = render_all();
    check_well_formed(t);
    expect_line(t, "mapguard_entries{map=\"we\\\"ird\\\\na\\nme\",mode=\"unsync\"} 3");
    expect_line(t, "mapguard_map_info{map=\"we\\\"ird\\\\na\\nme\",mode=\"unsync\",keys=\"u64\"} 1");
    /* no raw newline inside a sample: every line starts as it should */
    for (const char *p = t; *p; p = strchr(p, '\n') + 1)
        T_ASSERT(*p == '#' || strncmp(p, "mapguard_", 9) == 0);
    /* HELP lines: no raw backslash that is not an escape */
    for (const char *p = t; (p = strstr(p, "# HELP ")); p++) {
        const char *e = strchr(p, '\n');
        for (const char *q = p; q < e; q++)
            if (*q == '\\') {
                T_ASSERT(q[1] == '\\' || q[1] == 'n');
                q++;
            }
    }
    free(t);
    mg_free(m);
}

/* A name that is not valid UTF-8: Prometheus rejects such a label value
 * (and with it the whole scrape), so each maximal ill-formed subpart
 * becomes U+FFFD: a stray byte, C0/C1/F5.. leads, an overlong, a
 * surrogate, a code point above U+10FFFF, a sequence cut by the end.  Two
 * names equal after that are duplicates (id="2"). */
#define R "\xef\xbf\xbd" /* U+FFFD */
static void c_utf8(void)
{
    mg_map *a = named("ok\xc3\xa9|bad\xff|over\xc0\xaf|e0\xe0\x80\xaf|sur\xed\xa0\x80"
                      "|f4\xf4\x90\x80\x80|f5\xf5\x80|cut\xe2\x82",
                      MG_UNSYNC, MG_KEY_U64);
    mg_map *b = named("ok\xc3\xa9|bad\xfe|over\xc1\xbf|e0\xe0\x9f\xbf|sur\xed\xbf\xbf"
                      "|f4\xf4\xbf\xbf\xbf|f5\xfd\xbf|cut\xf0\x9f\x98",
                      MG_RWLOCK, MG_KEY_U64);
    mg_map *ok = named("emoji\xf0\x9f\x98\x80 max\xf4\x8f\xbf\xbf", MG_UNSYNC, MG_KEY_U64);
    fill_u64(a, 1);
    fill_u64(b, 2);
    fill_u64(ok, 3);
    char *t = render_all();
    check_well_formed(t);
    expect_family(t, "mapguard_entries",
                  "# TYPE mapguard_entries gauge\n"
                  "mapguard_entries{map=\"ok\xc3\xa9|bad" R "|over" R R "|e0" R R R "|sur" R R R
                  "|f4" R R R R "|f5" R R "|cut" R "\",mode=\"unsync\"} 1\n"
                  "mapguard_entries{map=\"ok\xc3\xa9|bad" R "|over" R R "|e0" R R R "|sur" R R R
                  "|f4" R R R R "|f5" R R "|cut" R "\",mode=\"rwlock\",id=\"2\"} 2\n"
                  "mapguard_entries{map=\"emoji\xf0\x9f\x98\x80 max\xf4\x8f\xbf\xbf\","
                  "mode=\"unsync\"} 3\n");
    /* the whole text is valid UTF-8 */
    for (const unsigned char *p = (const unsigned char *)t; *p;) {
        int n = *p < 0x80 ? 1 : *p >= 0xc2 && *p <= 0xdf ? 2 : *p >= 0xe0 && *p <= 0xef ? 3
                : *p >= 0xf0 && *p <= 0xf4 ? 4 : 0;
        if (n == 0)
            T_FAIL("byte 0x%02x at offset %zu is not a UTF-8 lead", *p, (size_t)(p - (const unsigned char *)t));
        for (int j = 1; j < n; j++)
            if ((p[j] & 0xc0) != 0x80)
                T_FAIL("offset %zu: cut sequence", (size_t)(p - (const unsigned char *)t));
        p += n;
    }
    free(t);
    mg_free(a);
    mg_free(b);
    mg_free(ok);
}
#undef R

/* Names should be unique; the 2nd, 3rd... map with a name gets id="2"... */
static void c_duplicates(void)
{
    mg_map *d1 = named("dup", MG_UNSYNC, MG_KEY_U64);
    mg_map *s = named("solo", MG_UNSYNC, MG_KEY_U64);
    mg_map *d2 = named("dup", MG_UNSYNC, MG_KEY_U64);
    mg_map *d3 = named("dup", MG_RWLOCK, MG_KEY_U64);
    fill_u64(d1, 1);
    fill_u64(d2, 2);
    fill_u64(d3, 3);
    char *t = render_all();
    check_well_formed(t);
    expect_family(t, "mapguard_entries",
                  "# TYPE mapguard_entries gauge\n"
                  "mapguard_entries{map=\"dup\",mode=\"unsync\"} 1\n"
                  "mapguard_entries{map=\"solo\",mode=\"unsync\"} 0\n"
                  "mapguard_entries{map=\"dup\",mode=\"unsync\",id=\"2\"} 2\n"
                  "mapguard_entries{map=\"dup\",mode=\"rwlock\",id=\"3\"} 3\n");
    free(t);
    /* the first leaves: the others move up */
    mg_free(d1);
    t = render_all();
    check_well_formed(t);
    expect_family(t, "mapguard_entries",
                  "# TYPE mapguard_entries gauge\n"
                  "mapguard_entries{map=\"solo\",mode=\"unsync\"} 0\n"
                  "mapguard_entries{map=\"dup\",mode=\"unsync\"} 2\n"
                  "mapguard_entries{map=\"dup\",mode=\"rwlock\",id=\"2\"} 3\n");
    expect_line(t, "mapguard_maps 3");
    free(t);
    mg_free(s);
    mg_free(d2);
    mg_free(d3);
}

/* A map of every mode, 1000 keys each: every family is there, with the
 * values the contract gives. */
static void c_every_mode(void)
{
    static const struct {
        const char *name;
        mg_mode mode;
    } ms[] = {{"m_unsync", MG_UNSYNC},         {"m_rwlock", MG_RWLOCK},
              {"m_sharded", MG_SHARDED},       {"m_readmostly", MG_READMOSTLY},
              {"m_snapshot", MG_SNAPSHOT},     {"m_actor", MG_ACTOR}};
    enum { N = sizeof ms / sizeof ms[0] };
    mg_map *m[N];
    for (int i = 0; i < N; i++) {
        m[i] = named(ms[i].name, ms[i].mode, MG_KEY_U64);
        fill_u64(m[i], 1000);
    }
    /* READMOSTLY: loads of keys only in the dirty map miss, and enough
     * misses promote it (sync.Map). */
    uint64_t v;
    for (int round = 0; round < 3; round++)
        for (uint64_t k = 0; k < 1000; k++)
            T_ASSERT(mg_get_u64(m[3], k, &v) && v == k * 3);
    char *t = render_all();
    check_well_formed(t);
    char line[256];
    for (int i = 0; i < N; i++) {
        snprintf(line, sizeof line, "mapguard_entries{map=\"%s\",mode=\"%s\"} 1000",
                 ms[i].name, mg_mode_name(ms[i].mode));
        expect_line(t, line);
        static const char *const every[] = {
            "mapguard_map_info",        "mapguard_buckets",
            "mapguard_buckets_log2",    "mapguard_load_factor",
            "mapguard_overflow_buckets", "mapguard_shrinks_total",
            "mapguard_old_buckets",     "mapguard_evacuated_buckets",
            "mapguard_evacuation_progress_ratio", "mapguard_memory_bytes"};
        for (size_t f = 0; f < sizeof every / sizeof every[0]; f++) {
            snprintf(line, sizeof line, "\n%s{map=\"%s\",mode=\"%s\"", every[f],
                     ms[i].name, mg_mode_name(ms[i].mode));
            if (!strstr(t, line))
                T_FAIL("missing %s for %s", every[f], ms[i].name);
        }
    }
    /* every map grew from B=0 to hold 1000 entries */
    expect_no(t, "mapguard_grows_total{map=\"m_unsync\",mode=\"unsync\",kind=\"double\"} 0\n");
    expect_no(t, "mapguard_memory_bytes{map=\"m_unsync\",mode=\"unsync\"} 0\n");
    expect_line(t, "mapguard_shards{map=\"m_sharded\",mode=\"sharded\"} 8");
    expect_line(t, "mapguard_actor_queue_capacity{map=\"m_actor\",mode=\"actor\"} 64");
    expect_line(t, "# TYPE mapguard_readmostly_misses_total counter");
    expect_line(t, "# TYPE mapguard_readmostly_promotions_total counter");
    expect_line(t, "# TYPE mapguard_snapshots_published_total counter");
    expect_line(t, "# TYPE mapguard_snapshots_retired_total counter");
    expect_line(t, "# TYPE mapguard_actor_queue_depth gauge");
    expect_line(t, "# TYPE mapguard_shard_entries_min gauge");
    expect_line(t, "# TYPE mapguard_shard_entries_max gauge");
    expect_no(t, "mapguard_readmostly_promotions_total{map=\"m_readmostly\",mode=\"readmostly\"} 0\n");
    expect_no(t, "mapguard_readmostly_misses_total{map=\"m_readmostly\",mode=\"readmostly\"} 0\n");
    expect_no(t, "mapguard_snapshots_published_total{map=\"m_snapshot\",mode=\"snapshot\"} 0\n");
    /* mode-only families appear for their mode only */
    expect_no(t, "mapguard_shards{map=\"m_unsync\"");
    expect_no(t, "mapguard_readmostly_misses_total{map=\"m_sharded\"");
    expect_no(t, "mapguard_actor_queue_depth{map=\"m_snapshot\"");
    expect_no(t, "mapguard_snapshots_published_total{map=\"m_actor\"");
    /* 1000 keys over 8 shards: min <= 1000/8 <= max */
    unsigned long lo = sample_value(t, "mapguard_shard_entries_min{map=\"m_sharded\",mode=\"sharded\"}");
    unsigned long hi = sample_value(t, "mapguard_shard_entries_max{map=\"m_sharded\",mode=\"sharded\"}");
    T_ASSERT(lo <= 125 && hi >= 125 && hi <= 1000);
    free(t);
    for (int i = 0; i < N; i++)
        mg_free(m[i]);
}

/* Unnamed maps are not rendered; freed maps leave; with no map only the
 * process-wide families remain. */
static void c_unnamed(void)
{
    mg_map *a = mg_new(NULL);
    mg_options o = {.mode = MG_SHARDED, .name = NULL};
    mg_map *b = mg_new(&o);
    mg_map *c = named("gone", MG_READMOSTLY, MG_KEY_BYTES);
    T_ASSERT(a && b);
    mg_free(c);
    char *t = render_all();
    check_well_formed(t);
    expect_line(t, "mapguard_maps 0");
    expect_no(t, "mapguard_entries");
    expect_no(t, "gone");
    T_ASSERT(strstr(t, "mapguard_build_info{"));
    T_ASSERT(strstr(t, "mapguard_fatal_errors_total{"));
    free(t);
    mg_free(a);
    mg_free(b);
}

static void c_fatal_kinds(void)
{
    char *t = render_all();
    expect_family(t, "mapguard_fatal_errors_total",
                  "# TYPE mapguard_fatal_errors_total counter\n"
                  "mapguard_fatal_errors_total{kind=\"concurrent_map_writes\"} 0\n"
                  "mapguard_fatal_errors_total{kind=\"concurrent_map_read_and_map_write\"} 0\n"
                  "mapguard_fatal_errors_total{kind=\"concurrent_map_iteration_and_map_write\"} 0\n"
                  "mapguard_fatal_errors_total{kind=\"assignment_to_entry_in_nil_map\"} 0\n"
                  "mapguard_fatal_errors_total{kind=\"use_of_freed_map\"} 0\n"
                  "mapguard_fatal_errors_total{kind=\"corrupted_map_header\"} 0\n"
                  "mapguard_fatal_errors_total{kind=\"wrong_key_kind_for_map\"} 0\n"
                  "mapguard_fatal_errors_total{kind=\"mapguard_internal_error\"} 0\n");
    free(t);
    /* what guard.c counts before it aborts */
    mg__fatal_count_inc(MG_FATAL_NIL_MAP);
    mg__fatal_count_inc(MG_FATAL_NIL_MAP);
    mg__fatal_count_inc(MG_FATAL_CONCURRENT_WRITES);
    t = render_all();
    expect_line(t, "mapguard_fatal_errors_total{kind=\"assignment_to_entry_in_nil_map\"} 2");
    expect_line(t, "mapguard_fatal_errors_total{kind=\"concurrent_map_writes\"} 1");
    expect_line(t, "mapguard_fatal_errors_total{kind=\"use_of_freed_map\"} 0");
    free(t);
}

/* A real fatal is counted before the hook runs: a scrape from the hook
 * (what docs/metrics.md suggests) sees it.  The misuse runs in a child. */
static void fatal_hook(const mg_fatal_info *info, void *arg)
{
    (void)info, (void)arg;
    static char buf[1 << 16];
    mg_metrics_render(buf, sizeof buf);
    const char *p = strstr(buf, "\nmapguard_fatal_errors_total{kind=\"assignment_to_entry_in_nil_map\"} ");
    if (p) {
        const char *e = strchr(p + 1, '\n');
        (void)!write(1, p + 1, (size_t)(e - p));
    }
}

static void c_fatal_counted(void)
{
    int fds[2];
    T_EQ_I(pipe(fds), 0);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2); /* the report itself is not what we check */
        mg_on_fatal(fatal_hook, NULL);
        mg_put_u64(NULL, 1, 1);
        _exit(0); /* not reached */
    }
    close(fds[1]);
    char out[512] = {0};
    size_t n = 0;
    ssize_t r;
    while (n < sizeof out - 1 && (r = read(fds[0], out + n, sizeof out - 1 - n)) > 0)
        n += (size_t)r;
    close(fds[0]);
    int st;
    T_EQ_I(waitpid(pid, &st, 0), pid);
    T_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    T_STREQ(out, "mapguard_fatal_errors_total{kind=\"assignment_to_entry_in_nil_map\"} 1\n");
}

/* Render from one thread while others write to maps, and create and free
 * named maps (ASan/TSan builds find what a plain build cannot). */
static atomic_bool stop_flag;

static void *writer(void *arg)
{
    mg_map *m = arg;
    for (uint64_t i = 0; !atomic_load(&stop_flag); i++) {
        T_EQ_I(mg_put_u64(m, i % 5000, i), MG_OK);
        if (i % 3 == 0)
            mg_del_u64(m, (i * 7) % 5000);
    }
    return NULL;
}

static void *churner(void *arg)
{
    (void)arg;
    static const mg_mode modes[] = {MG_UNSYNC, MG_RWLOCK, MG_SHARDED,
                                    MG_READMOSTLY, MG_SNAPSHOT, MG_ACTOR};
    for (unsigned i = 0; !atomic_load(&stop_flag); i++) {
        mg_map *m = named("churn", modes[i % 6], MG_KEY_U64);
        fill_u64(m, 50);
        mg_free(m);
    }
    return NULL;
}

static void c_concurrent(void)
{
    mg_map *ms[] = {named("c_rw", MG_RWLOCK, MG_KEY_U64), named("c_sh", MG_SHARDED, MG_KEY_U64),
                    named("c_rm", MG_READMOSTLY, MG_KEY_U64),
                    named("c_sn", MG_SNAPSHOT, MG_KEY_U64), named("c_ac", MG_ACTOR, MG_KEY_U64)};
    enum { N = sizeof ms / sizeof ms[0] };
    pthread_t th[N + 1];
    for (int i = 0; i < N; i++)
        T_EQ_I(pthread_create(&th[i], NULL, writer, ms[i]), 0);
    T_EQ_I(pthread_create(&th[N], NULL, churner, NULL), 0);
    char *buf = malloc(1 << 16);
    T_ASSERT(buf);
    for (int r = 0; r < 300; r++) {
        size_t n = mg_metrics_render(buf, 1 << 16);
        T_ASSERT(n < (1 << 16));
        check_well_formed(buf);
        T_ASSERT(strstr(buf, "mapguard_entries{map=\"c_rw\",mode=\"rwlock\"} "));
    }
    atomic_store(&stop_flag, true);
    for (int i = 0; i <= N; i++)
        pthread_join(th[i], NULL);
    free(buf);
    for (int i = 0; i < N; i++)
        mg_free(ms[i]);
}

/* Callbacks that run while a map holds its lock or its owner thread may
 * call anything, mg_new and mg_free of named maps included (which take the
 * registry lock), while another thread renders (which samples that map):
 * neither may wait for the other.  An ACTOR map's range runs fn on the
 * owner thread; RWLOCK and SHARDED run a batch's fn under the write
 * lock(s).  A deadlock ends in SIGALRM. */
static atomic_uint renders;

static void *render_loop(void *arg)
{
    (void)arg;
    char *buf = malloc(1 << 16);
    T_ASSERT(buf);
    while (!atomic_load(&stop_flag)) {
        (void)mg_metrics_render(buf, 1 << 16);
        atomic_fetch_add(&renders, 1);
    }
    free(buf);
    return NULL;
}

static void new_and_free_named(void)
{
    mg_map *m = named("inner", MG_UNSYNC, MG_KEY_U64);
    mg_free(m);
}

static int range_fn(const void *key, size_t len, uint64_t val, void *arg)
{
    (void)key, (void)len, (void)val, (void)arg;
    new_and_free_named();
    return 0;
}

static int batch_fn(mg_map *m, void *arg)
{
    (void)arg;
    for (uint64_t k = 0; k < 8; k++) {
        T_EQ_I(mg_put_u64(m, k, k), MG_OK);
        new_and_free_named();
    }
    return 0;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] =
        "FAIL: deadlock: mg_metrics_render vs. a callback that creates a named map\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

static void lock_order(mg_mode mode, bool range)
{
    signal(SIGALRM, on_alarm);
    alarm(20);
    mg_map *a = named("outer", mode, MG_KEY_U64);
    fill_u64(a, 64);
    pthread_t th;
    T_EQ_I(pthread_create(&th, NULL, render_loop, NULL), 0);
    while (atomic_load(&renders) < 10)
        sched_yield();
    /* until the renderer has run many times alongside */
    unsigned start = atomic_load(&renders);
    for (int i = 0; i < 300 || atomic_load(&renders) - start < 2000; i++)
        T_EQ_I(range ? mg_range(a, range_fn, NULL) : mg_batch(a, batch_fn, NULL), 0);
    atomic_store(&stop_flag, true);
    pthread_join(th, NULL);
    mg_free(a);
    alarm(0);
}

static void c_actor_range(void) { lock_order(MG_ACTOR, true); }
static void c_actor_batch(void) { lock_order(MG_ACTOR, false); }
static void c_rwlock_batch(void) { lock_order(MG_RWLOCK, false); }
static void c_sharded_batch(void) { lock_order(MG_SHARDED, false); }
static void c_snapshot_batch(void) { lock_order(MG_SNAPSHOT, false); }

int main(int argc, char **argv)
{
    static const t_case cases[] = {
        {"exact", c_exact},           {"truncation", c_truncation},
        {"escaping", c_escaping},     {"utf8", c_utf8},
        {"duplicates", c_duplicates},
        {"every_mode", c_every_mode}, {"unnamed", c_unnamed},
        {"fatal_kinds", c_fatal_kinds}, {"concurrent", c_concurrent},
        {"fatal_counted", c_fatal_counted}, {"actor_range", c_actor_range}, {"actor_batch", c_actor_batch},
        {"rwlock_batch", c_rwlock_batch}, {"sharded_batch", c_sharded_batch},
        {"snapshot_batch", c_snapshot_batch},
        {NULL, NULL}};
    return t_main(cases, argc, argv);
}
