/*
 * fuzz_map.c - coverage-guided fuzzing of the engine against a trivially
 * correct model (Go's FuzzTable idea).
 *
 * The input is a program.  Its first byte picks the key kind and the hint;
 * then each op byte picks one of: put, get, del, clear, a plain iteration
 * (possibly stopped early), a range whose callback deletes, inserts and
 * updates (Go's guarantees are checked), bulk inserts and deletes (to cross
 * growth and shrink points), and re-creating the map with another hint.
 * Keys come from a small key space (u64 keys: sequential and scattered;
 * byte keys: 0 to 36 bytes, the empty key included).  After every op the
 * map must agree with the model, and the whole-table validator must pass;
 * any mismatch aborts with a message.
 *
 * Built two ways:
 *   fuzz_map     clang -fsanitize=fuzzer (MG_FUZZ=ON): LLVMFuzzerTestOneInput
 *   fuzz_replay  any compiler, -DMG_FUZZ_STANDALONE: a main that runs
 *                seeded pseudo-random inputs and every file named on the
 *                command line:  fuzz_replay [-n COUNT] [-seed S] [FILE...]
 */
#include "internal.h"
#include "mapguard.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K 4096 /* key space; a key's number is recoverable from the key */

/* Which program runs (fuzz_replay fills it in, for the failure message). */
static char where[96];

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_map: %s", where);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* ---- keys ---------------------------------------------------------------- */

static uint64_t scramble(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* u64 key number i: even numbers as themselves, odd ones with scattered
 * high bits; the low 12 bits are always i. */
static uint64_t u64_key(unsigned i)
{
    return (i & 1) ? (scramble(i) << 12) | i : i;
}

/* Byte key number i: key 0 is the empty key; others are 2 + i % 35 bytes,
 * starting with i (little endian), then a pattern with NULs. */
static size_t bytes_key(unsigned i, unsigned char *b)
{
    if (i == 0)
        return 0;
    size_t len = 2 + i % 35;
    b[0] = (unsigned char)i;
    b[1] = (unsigned char)(i >> 8);
    for (size_t j = 2; j < len; j++)
        b[j] = (unsigned char)((j % 3 == 0) ? 0 : i * 7 + j);
    return len;
}

/* ---- the model and the map under test ------------------------------------ */

typedef struct {
    mg_map *m;
    bool bytes;
    bool present[K];
    uint64_t val[K];
    size_t len;
    size_t ops;
} state;

static int put(state *s, unsigned i, uint64_t v)
{
    int rc;
    if (s->bytes) {
        unsigned char b[40];
        size_t n = bytes_key(i, b);
        rc = mg_put(s->m, n ? b : NULL, n, v);
    } else {
        rc = mg_put_u64(s->m, u64_key(i), v);
    }
    if (rc != MG_OK)
        die("op %zu: put %u returned %d", s->ops, i, rc);
    if (!s->present[i])
        s->len++;
    s->present[i] = true;
    s->val[i] = v;
    return rc;
}

static void get(state *s, unsigned i)
{
    uint64_t v = 0;
    bool f;
    if (s->bytes) {
        unsigned char b[40];
        size_t n = bytes_key(i, b);
        f = mg_get(s->m, b, n, &v);
    } else {
        f = mg_get_u64(s->m, u64_key(i), &v);
    }
    if (f != s->present[i])
        die("op %zu: get %u found=%d, model %d", s->ops, i, f, s->present[i]);
    if (f && v != s->val[i])
        die("op %zu: get %u = %llu, model %llu", s->ops, i, (unsigned long long)v,
            (unsigned long long)s->val[i]);
}

static void del(state *s, unsigned i)
{
    bool f;
    if (s->bytes) {
        unsigned char b[40];
        size_t n = bytes_key(i, b);
        f = mg_del(s->m, b, n);
    } else {
        f = mg_del_u64(s->m, u64_key(i));
    }
    if (f != s->present[i])
        die("op %zu: del %u found=%d, model %d", s->ops, i, f, s->present[i]);
    if (f)
        s->len--;
    s->present[i] = false;
}

/* The number of a key the map produced; dies on a key never inserted. */
static unsigned key_number(const state *s, const void *k, size_t len)
{
    if (s->bytes) {
        if (len == 0)
            return 0;
        const unsigned char *p = k;
        if (len < 2)
            die("op %zu: produced a %zu-byte key", s->ops, len);
        unsigned i = p[0] | (unsigned)p[1] << 8;
        unsigned char b[40];
        if (i >= K || bytes_key(i, b) != len || memcmp(b, k, len) != 0)
            die("op %zu: produced a key never inserted", s->ops);
        return i;
    }
    if (len != sizeof(uint64_t))
        die("op %zu: produced a u64 key of length %zu", s->ops, len);
    uint64_t key;
    memcpy(&key, k, sizeof key);
    unsigned i = (unsigned)(key & (K - 1));
    if (u64_key(i) != key)
        die("op %zu: produced key %llu never inserted", s->ops, (unsigned long long)key);
    return i;
}

static void check(state *s, bool full)
{
    if (mg_len(s->m) != s->len)
        die("op %zu: len %zu, model %zu", s->ops, mg_len(s->m), s->len);
    mg_stats st;
    if (mg_stats_get(s->m, &st) != MG_OK)
        die("op %zu: mg_stats_get failed", s->ops);
    if (st.count != s->len || st.buckets != ((size_t)1 << st.B))
        die("op %zu: stats count=%zu buckets=%zu B=%u", s->ops, st.count, st.buckets,
            st.B);
    if (!full)
        return;
    char err[512];
    if (mg__validate(s->m, err, sizeof err) != 0) {
        if (s->len < 2000)
            mg__dump(s->m, stderr);
        die("op %zu: invariant broken: %s", s->ops, err);
    }
}

/* ---- the program reader --------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n, at;
} reader;

static bool more(const reader *r)
{
    return r->at < r->n;
}
static unsigned byte(reader *r)
{
    return r->at < r->n ? r->p[r->at++] : 0;
}
static unsigned key(reader *r)
{
    /* Mostly a small key space (collisions, updates, deletes that hit). */
    unsigned b = byte(r);
    if (b < 224)
        return b % 64;
    return ((b - 224) << 8 | byte(r)) % K;
}

/* ---- iteration ----------------------------------------------------------- */

static void iterate(state *s, unsigned stop)
{
    static uint8_t seen[K];
    memset(seen, 0, sizeof seen);
    mg_iter it;
    const void *k;
    size_t len;
    uint64_t v;
    size_t n = 0;
    mg_iter_init(&it, s->m);
    while (mg_iter_next(&it, &k, &len, &v)) {
        unsigned i = key_number(s, k, len);
        if (seen[i])
            die("op %zu: iteration produced key %u twice", s->ops, i);
        if (!s->present[i])
            die("op %zu: iteration produced absent key %u", s->ops, i);
        if (v != s->val[i])
            die("op %zu: iteration produced key %u with a stale value", s->ops, i);
        seen[i] = 1;
        if (++n == stop)
            break;
    }
    mg_iter_done(&it);
    if (stop == 0 && n != s->len)
        die("op %zu: iteration produced %zu keys of %zu", s->ops, n, s->len);
}

typedef struct {
    state *s;
    uint8_t *start, *seen, *deleted;
    uint64_t rng;
    unsigned mode;
    size_t steps, stop;
} range_arg;

static unsigned rng(range_arg *a)
{
    a->rng = a->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(a->rng >> 33);
}

static int range_fn(const void *k, size_t len, uint64_t v, void *arg)
{
    range_arg *a = arg;
    state *s = a->s;
    unsigned i = key_number(s, k, len);
    if (a->seen[i])
        die("op %zu: range produced key %u twice", s->ops, i);
    if (a->deleted[i])
        die("op %zu: range produced key %u deleted before it was reached", s->ops, i);
    if (!s->present[i])
        die("op %zu: range produced absent key %u", s->ops, i);
    if (v != s->val[i])
        die("op %zu: range produced key %u with a stale value", s->ops, i);
    a->seen[i] = 1;
    a->steps++;
    if (a->mode & 1) { /* delete a key (maybe this one, maybe one not reached) */
        unsigned d = (a->mode & 8) ? i : rng(a) % K;
        if (s->present[d]) {
            del(s, d);
            if (!a->seen[d])
                a->deleted[d] = 1;
        }
    }
    if (a->mode & 2) { /* insert new keys: they may or may not be produced */
        unsigned n = 1 + rng(a) % 4;
        for (unsigned j = 0; j < n; j++) {
            unsigned w = rng(a) % K;
            if (!s->present[w]) {
                /* A new entry (even for a key produced and deleted
                 * earlier): it may be produced, once more at most. */
                put(s, w, rng(a));
                a->start[w] = 0;
                a->deleted[w] = 0;
                a->seen[w] = 0;
            }
        }
    }
    if (a->mode & 4) { /* update a key not reached: the new value shows */
        unsigned u = rng(a) % K;
        if (s->present[u] && !a->seen[u])
            put(s, u, s->val[u] + 1);
    }
    if (a->stop && a->steps == a->stop)
        return 7;
    return 0;
}

static void range_mutating(state *s, unsigned mode, unsigned seed, unsigned stop)
{
    static uint8_t start[K], seen[K], deleted[K];
    for (unsigned i = 0; i < K; i++)
        start[i] = s->present[i];
    memset(seen, 0, sizeof seen);
    memset(deleted, 0, sizeof deleted);
    range_arg a = {s, start, seen, deleted, seed + 1, mode, 0, stop};
    int rc = mg_range(s->m, range_fn, &a);
    if (rc != (a.stop && a.steps == a.stop ? 7 : 0))
        die("op %zu: mg_range returned %d after %zu steps", s->ops, rc, a.steps);
    if (rc == 0)
        for (unsigned i = 0; i < K; i++)
            if (start[i] && s->present[i] && !deleted[i] && !seen[i])
                die("op %zu: range missed key %u (present throughout)", s->ops, i);
}

/* An iterator left open while the map is written to (Go allows this from
 * the iterating goroutine): every key present throughout is produced. */
static void iterate_across_writes(state *s, reader *r)
{
    static uint8_t start[K], seen[K], touched[K];
    for (unsigned i = 0; i < K; i++)
        start[i] = s->present[i];
    memset(seen, 0, sizeof seen);
    memset(touched, 0, sizeof touched);
    mg_iter it;
    const void *k;
    size_t len;
    uint64_t v;
    mg_iter_init(&it, s->m);
    unsigned nw = byte(r) % 8;
    while (mg_iter_next(&it, &k, &len, &v)) {
        unsigned i = key_number(s, k, len);
        if (seen[i])
            die("op %zu: open iterator produced key %u twice", s->ops, i);
        if (!s->present[i])
            die("op %zu: open iterator produced absent key %u", s->ops, i);
        if (v != s->val[i])
            die("op %zu: open iterator produced a stale value for %u", s->ops, i);
        seen[i] = 1;
        /* Some writes between steps, from the program. */
        for (unsigned j = 0; j < nw && more(r); j++) {
            unsigned w = key(r), what = byte(r) % 3;
            touched[w] = 1;
            if (what == 0) {
                if (!s->present[w])
                    seen[w] = 0; /* a new entry: may be produced again */
                put(s, w, s->ops * 1000 + j);
            }
            else if (what == 1)
                del(s, w);
            else
                get(s, w);
        }
        if (!more(r))
            nw = 0;
    }
    mg_iter_done(&it);
    for (unsigned i = 0; i < K; i++)
        if (start[i] && !touched[i] && !seen[i])
            die("op %zu: open iterator missed untouched key %u", s->ops, i);
}

/* ---- the interpreter ---------------------------------------------------- */

static const size_t hints[8] = {0, 1, 8, 9, 14, 100, 1000, 5000};

static mg_map *make(state *s, unsigned h)
{
    mg_options o = {.key = s->bytes ? MG_KEY_BYTES : MG_KEY_U64,
                    .hint = hints[h % 8],
                    .name = "fuzz"};
    mg_map *m = mg_new(&o);
    if (!m)
        die("mg_new failed");
    return m;
}

static void run_program(const uint8_t *data, size_t size)
{
    static state s;
    reader r = {data, size, 0};
    unsigned head = byte(&r);
    memset(&s, 0, sizeof s);
    s.bytes = head & 1;
    s.m = make(&s, head >> 1);
    while (more(&r)) {
        unsigned op = byte(&r);
        s.ops++;
        switch (op % 16) {
        case 0: case 1: case 2: case 3:
            put(&s, key(&r), byte(&r));
            break;
        case 4: case 5:
            get(&s, key(&r));
            break;
        case 6: case 7: case 8:
            del(&s, key(&r));
            break;
        case 9: /* bulk insert: up to 2040 keys from some point */
        {
            unsigned n = byte(&r) * 8, from = key(&r);
            for (unsigned j = 0; j < n; j++)
                put(&s, (from + j) % K, j);
            break;
        }
        case 10: /* bulk delete: a stretch, or all but a few */
        {
            unsigned n = byte(&r) * 16, from = key(&r);
            for (unsigned j = 0; j < n && j < K; j++)
                if (s.present[(from + j) % K])
                    del(&s, (from + j) % K);
            break;
        }
        case 11:
            if (op & 0x10) {
                mg_clear(s.m);
                memset(s.present, 0, sizeof s.present);
                s.len = 0;
            } else {
                mg_free(s.m);
                memset(s.present, 0, sizeof s.present);
                s.len = 0;
                s.m = make(&s, byte(&r));
            }
            break;
        case 12:
            iterate(&s, (op & 0x10) ? byte(&r) % 16 : 0);
            break;
        case 13:
        case 14: {
            unsigned mode = byte(&r), seed = byte(&r);
            range_mutating(&s, mode, seed, (op & 0x10) ? byte(&r) : 0);
            break;
        }
        case 15:
            iterate_across_writes(&s, &r);
            break;
        }
        check(&s, s.len < 600 || s.ops % 32 == 0);
    }
    for (unsigned i = 0; i < K; i++)
        if (s.present[i] || (i % 61) == 0)
            get(&s, i);
    check(&s, true);
    mg_free(s.m);
    s.m = NULL;
}

#ifndef MG_FUZZ_STANDALONE
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_program(data, size);
    return 0;
}
#else
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        die("out of memory");
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf)
                die("out of memory");
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    snprintf(where, sizeof where, "%.80s: ", path);
    run_program(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long count = 2000;
    uint64_t seed = 1;
    int files = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            count = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "-seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else {
            rc |= run_file(argv[i]);
            files++;
        }
    }
    /* Pseudo-random programs: mostly short, some long; the op bytes are
     * drawn with a bias towards the cheap ops so programs stay quick. */
    uint8_t buf[2048];
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (unsigned long t = 0; t < count; t++) {
        x = scramble(x);
        size_t len = 1 + (x % 8 == 0 ? x % sizeof buf : x % 256);
        for (size_t j = 0; j < len; j++) {
            x = scramble(x);
            buf[j] = (uint8_t)x;
        }
        snprintf(where, sizeof where, "random program %lu (-seed %llu, %zu bytes): ", t,
                 (unsigned long long)seed, len);
        run_program(buf, len);
    }
    fprintf(stderr, "fuzz_replay: %lu random programs and %d files passed\n", count,
            files);
    return rc;
}
#endif
