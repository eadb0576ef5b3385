/*
 * test_sample.c - the metrics' data source (src/obs/registry.c): which maps
 * are registered, and that a sample taken from another thread tells the
 * truth about a map in use without racing its writer.
 */
#include "internal.h"
#include "modes/introspect.h"
#include "obs/obs.h"
#include "../test.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct {
    const char *name;
    mg_metric_sample s;
    int seen;
} find_ctx;

static void find_cb(const mg_metric_sample *s, void *arg)
{
    find_ctx *f = arg;
    if (strcmp(s->name, f->name) == 0) {
        f->s = *s;
        f->s.name = NULL; /* valid only during the callback */
        f->seen++;
    }
}

/* The sample of the registered map called name; fails unless exactly one. */
static mg_metric_sample sample_of(const char *name)
{
    find_ctx f = {.name = name};
    mg__registry_foreach(find_cb, &f);
    if (f.seen != 1)
        T_FAIL("map \"%s\" registered %d times", name, f.seen);
    return f.s;
}

static int count_named(const char *name)
{
    find_ctx f = {.name = name};
    mg__registry_foreach(find_cb, &f);
    return f.seen;
}

static mg_map *named(const char *name, mg_mode mode, mg_keykind key)
{
    mg_options o = {.name = name, .mode = mode, .key = key};
    mg_map *m = mg_new(&o);
    T_ASSERT(m != NULL);
    return m;
}

/* A quiet engine map's sample equals mg_stats_get field by field, at every
 * step: before the first insert, through each growth (mid-evacuation too),
 * overflow buckets, shrinks and a clear. */
static void check_same(mg_map *m, const char *name)
{
    mg_stats want;
    T_EQ_I(mg_stats_get(m, &want), MG_OK);
    mg_metric_sample s = sample_of(name);
    const mg_stats *got = &s.st;
    T_EQ_U(got->count, want.count);
    T_EQ_U(got->B, want.B);
    T_EQ_U(got->buckets, want.buckets);
    T_ASSERT(got->load_factor == want.load_factor);
    T_EQ_U(got->overflow_buckets, want.overflow_buckets);
    T_EQ_U(got->growing, want.growing);
    T_EQ_U(got->same_size_grow, want.same_size_grow);
    T_EQ_U(got->shrinking, want.shrinking);
    T_EQ_U(got->old_buckets, want.old_buckets);
    T_EQ_U(got->evacuated, want.evacuated);
    T_EQ_U(got->grows_total, want.grows_total);
    T_EQ_U(got->same_size_grows_total, want.same_size_grows_total);
    T_EQ_U(got->shrinks_total, want.shrinks_total);
    T_EQ_U(got->bytes, want.bytes);
}

static void engine_matches_stats(mg_keykind key)
{
    const char *name = key == MG_KEY_BYTES ? "eng-bytes" : "eng-u64";
    mg_map *m = named(name, MG_UNSYNC, key);
    check_same(m, name);
    mg_metric_sample s = sample_of(name);
    T_STREQ(s.mode, "unsync");
    bool mid_growth = false;
    for (uint64_t i = 0; i < 50000; i++) {
        if (key == MG_KEY_BYTES)
            T_EQ_I(mg_put(m, &i, sizeof i, i), MG_OK);
        else
            T_EQ_I(mg_put_u64(m, i * 0x9E3779B97F4A7C15ull, i), MG_OK);
        if ((i & 1023) == 0 || (i > 100 && (i & (i - 1)) == 0)) {
            check_same(m, name);
            mg_stats st;
            mg_stats_get(m, &st);
            mid_growth |= st.growing && st.evacuated > 0;
        }
    }
    T_ASSERT(mid_growth); /* the checks saw an evacuation under way */
    check_same(m, name);
    for (uint64_t i = 0; i < 49990; i++) {
        if (key == MG_KEY_BYTES)
            T_ASSERT(mg_del(m, &i, sizeof i));
        else
            T_ASSERT(mg_del_u64(m, i * 0x9E3779B97F4A7C15ull));
        if ((i & 4095) == 0)
            check_same(m, name);
    }
    check_same(m, name);
    T_ASSERT(sample_of(name).st.shrinks_total > 0);
    mg_clear(m);
    check_same(m, name);
    mg_free(m);
    T_EQ_I(count_named(name), 0);
}

static void t_engine_u64(void)
{
    engine_matches_stats(MG_KEY_U64);
}

static void t_engine_bytes(void)
{
    engine_matches_stats(MG_KEY_BYTES);
}

/* Overflow buckets are published as they are taken: insert until the
 * map holds some (a bucket past 8 keys), then the sample must show the
 * same count. */
static void t_overflow(void)
{
    mg_map *m = named("ovf", MG_UNSYNC, MG_KEY_U64);
    mg_stats st = {0};
    uint64_t i = 0;
    for (; i < 100000 && st.overflow_buckets == 0; i++) {
        mg_put_u64(m, i, i);
        mg_stats_get(m, &st);
    }
    T_ASSERT(st.overflow_buckets > 0);
    check_same(m, "ovf");
    T_EQ_U(sample_of("ovf").st.overflow_buckets, st.overflow_buckets);
    mg_free(m);
}

/* Only named maps register; mg_free unregisters; names may repeat. */
static void t_registry(void)
{
    mg_map *anon = mg_new(NULL);
    mg_map *a = named("reg-a", MG_UNSYNC, MG_KEY_U64);
    mg_map *b1 = named("reg-b", MG_RWLOCK, MG_KEY_U64);
    mg_map *b2 = named("reg-b", MG_SNAPSHOT, MG_KEY_BYTES);
    T_EQ_I(count_named("reg-a"), 1);
    T_EQ_I(count_named("reg-b"), 2);
    T_EQ_I(count_named(""), 0);
    mg_free(b1);
    T_EQ_I(count_named("reg-b"), 1);
    T_STREQ(sample_of("reg-b").mode, "snapshot");
    T_STREQ(sample_of("reg-b").keykind, "bytes");
    mg_free(b2);
    mg_free(a);
    mg_free(anon);
    T_EQ_I(count_named("reg-a") + count_named("reg-b"), 0);
}

/* Every mode: entries and its own extras. */
static void t_modes(void)
{
    static const mg_mode modes[] = {MG_RWLOCK, MG_SHARDED, MG_READMOSTLY, MG_SNAPSHOT,
                                    MG_ACTOR};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        const char *name = mg_mode_name(modes[i]);
        mg_options o = {.name = name, .mode = modes[i], .shards = 8, .queue = 64};
        mg_map *m = mg_new(&o);
        T_ASSERT(m != NULL);
        for (uint64_t k = 0; k < 3000; k++)
            T_EQ_I(mg_put_u64(m, k, k), MG_OK);
        mg_metric_sample s = sample_of(name);
        T_STREQ(s.mode, name);
        T_EQ_U(s.st.count, 3000);
        T_ASSERT(s.st.buckets > 0 || modes[i] == MG_SNAPSHOT);
        T_ASSERT(s.st.bytes > 3000 * 16);
        T_EQ_U(s.has_shards, modes[i] == MG_SHARDED);
        T_EQ_U(s.has_readmostly, modes[i] == MG_READMOSTLY);
        T_EQ_U(s.has_snapshot, modes[i] == MG_SNAPSHOT);
        T_EQ_U(s.has_actor, modes[i] == MG_ACTOR);
        if (modes[i] == MG_SHARDED) {
            T_EQ_U(s.shards, 8);
            T_ASSERT(s.shard_entries_min <= 3000 / 8);
            T_ASSERT(s.shard_entries_max >= 3000 / 8);
            T_ASSERT(s.shard_entries_max < 3000 / 8 * 2);
        }
        if (modes[i] == MG_SNAPSHOT)
            T_EQ_U(s.snapshots_published_total, 3000); /* one per write */
        if (modes[i] == MG_ACTOR) {
            T_EQ_U(s.queue_capacity, 64);
            T_EQ_U(s.queue_depth, 0); /* every put above was answered */
        }
        mg_free(m);
    }
}

/* READMOSTLY: misses and promotions, as Go's sync.Map counts them: a load
 * of a key only in dirty is a miss, and len(dirty) misses promote. */
static void t_readmostly_counters(void)
{
    mg_map *m = named("rm", MG_READMOSTLY, MG_KEY_U64);
    T_EQ_I(mg_put_u64(m, 1, 1), MG_OK); /* dirty = {1}, amended */
    T_EQ_I(mg_put_u64(m, 2, 2), MG_OK); /* dirty = {1, 2} */
    uint64_t v;
    T_ASSERT(mg_get_u64(m, 1, &v)); /* miss 1 */
    mg_metric_sample s = sample_of("rm");
    T_EQ_U(s.misses_total, 1);
    T_EQ_U(s.promotions_total, 0);
    T_ASSERT(mg_get_u64(m, 2, &v)); /* miss 2 == len(dirty): promote */
    s = sample_of("rm");
    T_EQ_U(s.misses_total, 2);
    T_EQ_U(s.promotions_total, 1);
    mg_rm_state st;
    T_EQ_I(mg__rm_state(m, &st), 0);
    T_EQ_I(st.dirty_len, -1);
    T_ASSERT(mg_get_u64(m, 1, &v)); /* now in read: no miss */
    T_EQ_U(sample_of("rm").misses_total, 2);
    mg_free(m);
}

/* A sampler thread reads an MG_UNSYNC map while its owner writes: no race
 * (ThreadSanitizer runs this case), and every value is one the map had. */
typedef struct {
    mg_map *m;
    atomic_bool stop;
    uint64_t samples;
} race_ctx;

static void *sampler(void *arg)
{
    race_ctx *c = arg;
    while (!atomic_load(&c->stop)) {
        mg_metric_sample s = sample_of("racy");
        if (s.st.count > 200000 || s.st.B > 20 || s.st.buckets != (size_t)1 << s.st.B)
            T_FAIL("impossible sample: count=%zu B=%u", s.st.count, s.st.B);
        if (s.st.evacuated > s.st.old_buckets)
            T_FAIL("evacuated %zu of %zu", s.st.evacuated, s.st.old_buckets);
        c->samples++;
    }
    return NULL;
}

static void t_sample_while_writing(void)
{
    race_ctx c = {.m = named("racy", MG_UNSYNC, MG_KEY_U64)};
    atomic_init(&c.stop, false);
    pthread_t t;
    T_EQ_I(pthread_create(&t, NULL, sampler, &c), 0);
    for (int round = 0; round < 3; round++) {
        for (uint64_t i = 0; i < 200000; i++)
            mg_put_u64(c.m, i * 0x9E3779B97F4A7C15ull, i);
        for (uint64_t i = 0; i < 200000; i++)
            mg_del_u64(c.m, i * 0x9E3779B97F4A7C15ull);
    }
    atomic_store(&c.stop, true);
    pthread_join(t, NULL);
    T_ASSERT(c.samples > 0);
    check_same(c.m, "racy");
    mg_free(c.m);
}

int main(int argc, char **argv)
{
    static const t_case cases[] = {
        {"engine_u64", t_engine_u64},
        {"engine_bytes", t_engine_bytes},
        {"overflow", t_overflow},
        {"registry", t_registry},
        {"modes", t_modes},
        {"readmostly_counters", t_readmostly_counters},
        {"sample_while_writing", t_sample_while_writing},
        {NULL, NULL},
    };
    return t_main(cases, argc, argv);
}
