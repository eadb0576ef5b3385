/*
 * diff_go.c - differential test of mapguard against real Go 1.19 maps.
 *
 * Each case is an op trace (format in gomap.go).  The trace is written to a
 * temporary file, run through the Go program (gomap, a real
 * map[uint64]uint64 or map[string]uint64) and applied to a mapguard map
 * here; the two output streams must agree line by line:
 *
 *   get K  -> "get FOUND VAL"     del K -> "del FOUND LEN"     len -> "len N"
 *   dump   -> every entry, sorted by key
 *   B      -> hmap.B / mg_stats.B, compared only while the trace has done no
 *             del and no clear: mapguard shrinks after deletes and returns
 *             to the hint's B on clear, Go does neither.
 *
 * The traces are generated from one seed (printed first, and again with
 * every failure), in mixes:
 *   insert      insert-only (plus updates) for many hints, B after each insert
 *   insert-long one long insert-only trace per key kind, B after each insert
 *   small       put/get/del/len/clear on a small key space (hits, updates)
 *   large       the same on a 64-bit key space
 *   waves       grow to thousands of keys, delete most, again and again
 *   strkeys     byte keys: the empty key, NUL bytes, shared prefixes, long keys
 *   churn       count held near a growth threshold: fifo insert/delete, or
 *               a few keys swung across the threshold again and again
 *   bigshrink   grow to hundreds of thousands of keys, then delete most
 *
 * The mapguard side of each trace runs in a child process, so a crash, an
 * abort (a fatal report) or a hang fails that trace, not the whole run.
 * On a mismatch it prints the first differing line with the ops before it,
 * saves the trace, shrinks it to a small trace that still fails (the first
 * three failures), saves and prints that too, and carries on (up to
 * --max-fail failures).  It exits 0 only if every trace matched, after
 * printing "N passed, N failed".
 *
 * Usage: diff_go GOMAP [--seed N] [--scale X] [--mix NAME [--only I]]
 *                      [--replay FILE] [--keep DIR] [--no-minimize]
 *                      [--max-fail N] [-v]
 *        diff_go GOMAP --check-mixes NAME...   (the build's list is current)
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS (POSIX only from 2024) */

#include "mapguard.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------------------ */
/* Small utilities                                                          */
/* ------------------------------------------------------------------------ */

static bool g_in_child;

_Noreturn static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("diff_go: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (g_in_child)
        _exit(2); /* not exit: the parent's exit handlers are not ours */
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die("out of memory (%zu bytes)", n);
    return q;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A growable string. */
struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_reserve(struct sbuf *s, size_t extra)
{
    if (s->len + extra + 1 > s->cap) {
        size_t c = s->cap ? s->cap : 256;
        while (c < s->len + extra + 1)
            c *= 2;
        s->p = xrealloc(s->p, c);
        s->cap = c;
    }
}

static void sb_clear(struct sbuf *s)
{
    s->len = 0;
    sb_reserve(s, 0);
    s->p[0] = '\0';
}

static void sb_printf(struct sbuf *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("vsnprintf failed");
    sb_reserve(s, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

static void sb_u64(struct sbuf *s, uint64_t v)
{
    char tmp[24];
    int i = (int)sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sb_reserve(s, sizeof tmp - (size_t)i);
    memcpy(s->p + s->len, tmp + i, sizeof tmp - (size_t)i);
    s->len += sizeof tmp - (size_t)i;
    s->p[s->len] = '\0';
}

static void sb_hexkey(struct sbuf *s, const unsigned char *k, size_t len)
{
    static const char hx[] = "0123456789abcdef";
    sb_reserve(s, 1 + 2 * len);
    s->p[s->len++] = 'x';
    for (size_t i = 0; i < len; i++) {
        s->p[s->len++] = hx[k[i] >> 4];
        s->p[s->len++] = hx[k[i] & 15];
    }
    s->p[s->len] = '\0';
}

/* splitmix64: small, fast, and good enough to drive the generators. */
typedef struct {
    uint64_t s;
} rng;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t rnd(rng *r) { return mix64(r->s += 0x9e3779b97f4a7c15u); }
static uint64_t below(rng *r, uint64_t n) { return n ? rnd(r) % n : 0; }
static bool chance(rng *r, unsigned per_mille) { return below(r, 1000) < per_mille; }

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* ------------------------------------------------------------------------ */
/* Traces                                                                   */
/* ------------------------------------------------------------------------ */

enum { OP_PUT, OP_GET, OP_DEL, OP_LEN, OP_DUMP, OP_B, OP_CLEAR };
static const char *const op_names[] = {"put", "get", "del", "len",
                                       "dump", "B", "clear"};

struct op {
    uint8_t code;
    uint32_t klen; /* str maps: key length */
    uint32_t gid;  /* minimising: which key group (ops on one key) */
    uint64_t k;    /* u64 maps: the key; str maps: offset in the pool */
    uint64_t v;
};

struct pool {
    unsigned char *p;
    size_t len, cap;
};

struct trace {
    bool str;
    uint64_t hint;
    struct op *ops;
    size_t n, cap;
    struct pool *pool; /* key bytes; may be shared by minimised copies */
    char desc[160];
};

static void t_init(struct trace *t, bool str, uint64_t hint)
{
    memset(t, 0, sizeof *t);
    t->str = str;
    t->hint = hint;
    t->pool = xrealloc(NULL, sizeof *t->pool);
    memset(t->pool, 0, sizeof *t->pool);
    t->pool->cap = 4096; /* never NULL: op_key adds offsets to it */
    t->pool->p = xrealloc(NULL, t->pool->cap);
}

static void t_free(struct trace *t, bool pool_too)
{
    free(t->ops);
    if (pool_too) {
        free(t->pool->p);
        free(t->pool);
    }
    t->ops = NULL;
}

static struct op *t_push(struct trace *t, int code)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 1024;
        t->ops = xrealloc(t->ops, t->cap * sizeof *t->ops);
    }
    struct op *o = &t->ops[t->n++];
    memset(o, 0, sizeof *o);
    o->code = (uint8_t)code;
    return o;
}

static const unsigned char *op_key(const struct trace *t, const struct op *o)
{
    return t->pool->p + o->k;
}

static void t_key_bytes(struct trace *t, struct op *o, const void *k, size_t len)
{
    struct pool *p = t->pool;
    if (p->len + len > p->cap) {
        size_t c = p->cap ? p->cap : 4096;
        while (c < p->len + len)
            c *= 2;
        p->p = xrealloc(p->p, c);
        p->cap = c;
    }
    if (len)
        memcpy(p->p + p->len, k, len);
    o->k = p->len;
    o->klen = (uint32_t)len;
    p->len += len;
}

static void fmt_op(struct sbuf *s, const struct trace *t, const struct op *o)
{
    sb_printf(s, "%s", op_names[o->code]);
    if (o->code == OP_PUT || o->code == OP_GET || o->code == OP_DEL) {
        sb_printf(s, " ");
        if (t->str)
            sb_hexkey(s, op_key(t, o), o->klen);
        else
            sb_u64(s, o->k);
    }
    if (o->code == OP_PUT) {
        sb_printf(s, " ");
        sb_u64(s, o->v);
    }
}

static void write_trace(FILE *f, const struct trace *t)
{
    struct sbuf s = {0};
    fprintf(f, "kind %s\nmake %" PRIu64 "\n", t->str ? "str" : "u64", t->hint);
    if (t->desc[0])
        fprintf(f, "# %s\n", t->desc);
    for (size_t i = 0; i < t->n; i++) {
        sb_clear(&s);
        fmt_op(&s, t, &t->ops[i]);
        fputs(s.p, f);
        fputc('\n', f);
    }
    free(s.p);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!*s)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Reads a trace file (the format gomap reads). */
static void read_trace(const char *path, struct trace *t)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int stage = 0;
    size_t lineno = 0;
    unsigned char *kb = NULL;
    bool str = false;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = '\0';
        if (got == 0 || line[0] == '#')
            continue;
        if (stage == 0) {
            if (strcmp(line, "kind u64") == 0)
                str = false;
            else if (strcmp(line, "kind str") == 0)
                str = true;
            else
                die("%s:%zu: want 'kind u64|str'", path, lineno);
            stage = 1;
            continue;
        }
        if (stage == 1) {
            uint64_t h;
            if (strncmp(line, "make ", 5) != 0 || !parse_u64(line + 5, &h))
                die("%s:%zu: want 'make HINT'", path, lineno);
            t_init(t, str, h);
            snprintf(t->desc, sizeof t->desc, "replay of %s", path);
            stage = 2;
            continue;
        }
        char *fld[4] = {0};
        int nf = 0;
        for (char *tok = strtok(line, " "); tok; tok = strtok(NULL, " ")) {
            if (nf == 4)
                die("%s:%zu: too many fields", path, lineno);
            fld[nf++] = tok;
        }
        int code = -1;
        for (int i = 0; i < (int)(sizeof op_names / sizeof op_names[0]); i++)
            if (strcmp(fld[0], op_names[i]) == 0)
                code = i;
        if (code < 0)
            die("%s:%zu: unknown op '%s'", path, lineno, fld[0]);
        int want = code == OP_PUT ? 3 : (code == OP_GET || code == OP_DEL) ? 2 : 1;
        if (nf != want)
            die("%s:%zu: wrong number of fields", path, lineno);
        struct op *o = t_push(t, code);
        if (nf >= 2) {
            if (str) {
                const char *h = fld[1];
                size_t hl = strlen(h);
                if (h[0] != 'x' || (hl - 1) % 2)
                    die("%s:%zu: bad str key", path, lineno);
                size_t kl = (hl - 1) / 2;
                kb = xrealloc(kb, kl + 1);
                for (size_t i = 0; i < kl; i++) {
                    int a = hexval(h[1 + 2 * i]), b = hexval(h[2 + 2 * i]);
                    if (a < 0 || b < 0)
                        die("%s:%zu: bad hex", path, lineno);
                    kb[i] = (unsigned char)(a * 16 + b);
                }
                t_key_bytes(t, o, kb, kl);
            } else if (!parse_u64(fld[1], &o->k)) {
                die("%s:%zu: bad key", path, lineno);
            }
        }
        if (nf == 3 && !parse_u64(fld[2], &o->v))
            die("%s:%zu: bad value", path, lineno);
    }
    if (stage < 2)
        die("%s: no 'kind' and 'make' header", path);
    free(kb);
    free(line);
    fclose(f);
}

/* ------------------------------------------------------------------------ */
/* Keys: generators work on 64-bit key ids; a per-trace pattern maps each id */
/* to a key, injectively, so distinct ids are distinct keys.                */
/* ------------------------------------------------------------------------ */

enum {
    KU_ID, KU_MUL, KU_ROT, KU_NOT, KU_BSWAP, KU_NPAT,
    KS_DEC = 0,  /* decimal digits */
    KS_RAW8,     /* 8 raw little-endian bytes: many NULs */
    KS_BASE256,  /* bijective base 256: "", "\0", ..., "\xff", "\0\0", ... */
    KS_BASE4,    /* bijective base 4 over {00, 01, 'a', ff}: prefixes */
    KS_LONG,     /* a long shared prefix, then base 256 */
    KS_PADDED,   /* "k" decimal, then id%70 NUL bytes */
    KS_NPAT
};

struct keygen {
    bool str;
    int pat;
    size_t prefix_len;
    unsigned char prefix[256];
};

static const char *const ku_names[] = {"id", "id*golden", "rotate32", "~id",
                                       "bswap"};
static const char *const ks_names[] = {"decimal", "raw8", "base256", "base4",
                                       "long-prefix", "nul-padded"};

static const char *kg_name(const struct keygen *kg)
{
    return kg->str ? ks_names[kg->pat] : ku_names[kg->pat];
}

static void kg_init(struct keygen *kg, rng *r, bool str, int pat)
{
    memset(kg, 0, sizeof *kg);
    kg->str = str;
    kg->pat = pat >= 0 ? pat : (int)below(r, str ? KS_NPAT : KU_NPAT);
    kg->prefix_len = 16 + below(r, 200);
    unsigned char c = (unsigned char)rnd(r);
    for (size_t i = 0; i < kg->prefix_len; i++)
        kg->prefix[i] = chance(r, 100) ? (unsigned char)rnd(r) : c;
}

static uint64_t kg_u64(const struct keygen *kg, uint64_t id)
{
    switch (kg->pat) {
    case KU_MUL:
        return id * 0x9e3779b97f4a7c15u;
    case KU_ROT:
        return id << 32 | id >> 32;
    case KU_NOT:
        return ~id;
    case KU_BSWAP: {
        uint64_t r = 0;
        for (int i = 0; i < 8; i++)
            r = r << 8 | ((id >> (8 * i)) & 0xff);
        return r;
    }
    default:
        return id;
    }
}

/* Writes the key for id into buf (at least 512 bytes); returns its length. */
static size_t kg_str(const struct keygen *kg, uint64_t id, unsigned char *buf)
{
    size_t n = 0;
    switch (kg->pat) {
    case KS_DEC:
        return (size_t)sprintf((char *)buf, "%" PRIu64, id);
    case KS_RAW8:
        for (int i = 0; i < 8; i++)
            buf[n++] = (unsigned char)(id >> (8 * i));
        return n;
    case KS_LONG:
        memcpy(buf, kg->prefix, kg->prefix_len);
        n = kg->prefix_len;
        /* fall through */
    case KS_BASE256: {
        /* bijective numeration: id 0 is "", then 1-byte strings, ... */
        unsigned char tmp[16];
        size_t m = 0;
        uint64_t x = id;
        while (x) {
            x--;
            tmp[m++] = (unsigned char)(x & 0xff);
            x >>= 8;
        }
        while (m)
            buf[n++] = tmp[--m];
        return n;
    }
    case KS_BASE4: {
        static const unsigned char alpha[4] = {0x00, 0x01, 'a', 0xff};
        unsigned char tmp[40];
        size_t m = 0;
        uint64_t x = id;
        while (x) {
            x--;
            tmp[m++] = alpha[x & 3];
            x >>= 2;
        }
        while (m)
            buf[n++] = tmp[--m];
        return n;
    }
    default: { /* KS_PADDED */
        n = (size_t)sprintf((char *)buf, "k%" PRIu64, id);
        size_t pad = (size_t)(id % 70);
        memset(buf + n, 0, pad);
        return n + pad;
    }
    }
}

static void emit_key(struct trace *t, const struct keygen *kg, int code,
                     uint64_t id, uint64_t v)
{
    struct op *o = t_push(t, code);
    o->v = v;
    if (t->str) {
        unsigned char buf[512];
        t_key_bytes(t, o, buf, kg_str(kg, id, buf));
    } else {
        o->k = kg_u64(kg, id);
    }
}

static void emit(struct trace *t, int code) { t_push(t, code); }

static uint64_t rand_val(rng *r)
{
    switch (below(r, 8)) {
    case 0:
        return 0;
    case 1:
        return UINT64_MAX;
    case 2:
        return below(r, 100);
    default:
        return rnd(r);
    }
}

/* A set of live key ids (what the generator believes is in the map). */
struct idset {
    uint64_t *v;
    size_t n, cap;
};

static void ids_add(struct idset *s, uint64_t id)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = id;
}

static uint64_t ids_take(struct idset *s, size_t i)
{
    uint64_t id = s->v[i];
    s->v[i] = s->v[--s->n];
    return id;
}

/* ------------------------------------------------------------------------ */
/* Mixes                                                                    */
/* ------------------------------------------------------------------------ */

static double g_scale = 1.0;

static size_t scaled(size_t n)
{
    double x = (double)n * g_scale;
    return x < 1 ? 1 : (size_t)x;
}

/* HINT_TOO_BIG: the smallest hint Go treats as 0 because its bucket memory
 * would exceed maxAlloc (1<<48 on linux/amd64); Go's buckets are 144 bytes
 * for map[uint64]uint64 and 208 for map[string]uint64.  (One less would
 * make Go allocate terabytes, so that side cannot be compared.) */
#define HINT_TOO_BIG (UINT64_MAX - 1) /* a marker in the list below */
static const uint64_t insert_hints[] = {
    0, 1, 8, 9, 13, 14, 26, 27, 52, 53, 100, 104, 105, 208, 209, 1000,
    1000000, HINT_TOO_BIG, (uint64_t)1 << 48, (uint64_t)1 << 62,
    (uint64_t)1 << 63, UINT64_MAX};
#define N_INSERT_HINTS (sizeof insert_hints / sizeof insert_hints[0])

/* Insert-only traces (plus updates and reads): B after every insert. */
static void gen_insert_n(struct trace *t, rng *r, bool str, uint64_t hint,
                         size_t n)
{
    struct keygen kg;
    kg_init(&kg, r, str, -1);
    t_init(t, str, hint);
    bool sequential = chance(r, 500);
    struct idset live = {0};
    uint64_t next = below(r, 3) == 0 ? 0 : rnd(r) >> 8;
    emit(t, OP_B);
    emit(t, OP_LEN);
    for (size_t i = 0; i < n;) {
        unsigned w = (unsigned)below(r, 100);
        if (w < 80 || live.n == 0) {
            uint64_t id = sequential ? next++ : rnd(r);
            emit_key(t, &kg, OP_PUT, id, rand_val(r));
            ids_add(&live, id);
            emit(t, OP_B);
            i++;
        } else if (w < 90) { /* update: must not grow */
            emit_key(t, &kg, OP_PUT, live.v[below(r, live.n)], rand_val(r));
            emit(t, OP_B);
        } else if (w < 95) {
            emit_key(t, &kg, OP_GET, live.v[below(r, live.n)], 0);
        } else if (w < 98) {
            emit_key(t, &kg, OP_GET, sequential ? next + 1 + below(r, 9) : rnd(r), 0);
        } else if (live.n <= 3000 && chance(r, 300)) {
            emit(t, OP_DUMP); /* often in the middle of a grow */
        } else {
            emit(t, OP_LEN);
        }
    }
    emit(t, OP_LEN);
    emit(t, OP_DUMP);
    emit(t, OP_B);
    snprintf(t->desc, sizeof t->desc,
             "insert-only, %s keys %s%s, hint %" PRIu64 ", %zu inserts",
             str ? "str" : "u64", kg_name(&kg), sequential ? " sequential" : " random",
             hint, n);
    free(live.v);
}

static void gen_insert(struct trace *t, rng *r, int idx)
{
    size_t nh = N_INSERT_HINTS;
    bool str = (size_t)idx / nh % 2 == 1;
    uint64_t hint;
    if ((size_t)idx < 2 * nh) {
        hint = insert_hints[(size_t)idx % nh];
        if (hint == HINT_TOO_BIG)
            hint = ((uint64_t)1 << 48) / (str ? 208 : 144) + 1;
    } else {
        hint = below(r, 3000);
    }
    size_t n = hint <= 1000 ? 3 * (size_t)hint + 200 + below(r, 200) : 3000;
    gen_insert_n(t, r, str, hint, scaled(n));
}

static void gen_insert_long(struct trace *t, rng *r, int idx)
{
    gen_insert_n(t, r, idx % 2 == 1, 0, scaled(idx % 2 ? 60000 : 120000));
}

/* Random put/get/del/len/B/clear.  keyspace 0 means 64-bit ids. */
static void gen_random_ops(struct trace *t, rng *r, bool str, int pat,
                           uint64_t keyspace, size_t nops, const char *what)
{
    struct keygen kg;
    kg_init(&kg, r, str, pat);
    uint64_t hint;
    switch (below(r, 5)) {
    case 0:
    case 1:
        hint = 0;
        break;
    case 2:
        hint = below(r, 64);
        break;
    case 3:
        hint = keyspace ? keyspace : below(r, 5000);
        break;
    default:
        hint = below(r, 2) ? 1000 : (uint64_t)1 << 62;
    }
    t_init(t, str, hint);
    /* per-trace weights, so some traces mostly grow and others churn */
    unsigned wput = 25 + (unsigned)below(r, 30), wget = 20 + (unsigned)below(r, 20);
    unsigned wdel = 10 + (unsigned)below(r, 30);
    unsigned total = wput + wget + wdel + 6;
    unsigned clear_pm = (unsigned)below(r, 4); /* per mille */
    size_t dump_every = nops / 12 + 1;
    struct idset live = {0};
    for (size_t i = 0; i < nops; i++) {
        if (i % dump_every == dump_every - 1) {
            emit(t, OP_DUMP);
            continue;
        }
        if (chance(r, clear_pm)) {
            emit(t, OP_CLEAR);
            emit(t, OP_LEN);
            live.n = 0;
            continue;
        }
        unsigned w = (unsigned)below(r, total);
        bool hit = live.n && chance(r, 600);
        uint64_t id;
        if (keyspace)
            id = below(r, keyspace);
        else if (hit)
            id = live.v[below(r, live.n)];
        else
            id = rnd(r);
        if (w < wput) {
            emit_key(t, &kg, OP_PUT, id, rand_val(r));
            if (!keyspace && !hit)
                ids_add(&live, id);
        } else if (w < wput + wget) {
            emit_key(t, &kg, OP_GET, id, 0);
        } else if (w < wput + wget + wdel) {
            if (!keyspace && hit) {
                for (size_t j = 0; j < live.n; j++)
                    if (live.v[j] == id) {
                        ids_take(&live, j);
                        break;
                    }
            }
            emit_key(t, &kg, OP_DEL, id, 0);
        } else if (w < total - 2) {
            emit(t, OP_LEN);
        } else {
            emit(t, OP_B);
        }
    }
    emit(t, OP_LEN);
    emit(t, OP_DUMP);
    snprintf(t->desc, sizeof t->desc,
             "%s, %s keys %s, keyspace %" PRIu64 ", hint %" PRIu64
             ", %zu ops, weights put %u get %u del %u",
             what, str ? "str" : "u64", kg_name(&kg), keyspace, hint, nops, wput, wget,
             wdel);
    free(live.v);
}

static void gen_small(struct trace *t, rng *r, int idx)
{
    static const uint64_t spaces[] = {1, 2, 3, 8, 9, 16, 64, 200, 1000, 5000};
    uint64_t ks = spaces[(size_t)idx / 2 % (sizeof spaces / sizeof spaces[0])];
    gen_random_ops(t, r, idx % 2 == 1, -1, ks, scaled(3000 + below(r, 12000)),
                   "small key space");
}

static void gen_large(struct trace *t, rng *r, int idx)
{
    gen_random_ops(t, r, idx % 2 == 1, -1, 0, scaled(20000 + below(r, 30000)),
                   "64-bit key space");
}

static void gen_strkeys(struct trace *t, rng *r, int idx)
{
    /* the patterns with the empty key, NUL bytes and shared prefixes */
    static const int pats[] = {KS_BASE256, KS_BASE4, KS_LONG, KS_PADDED, KS_RAW8};
    int pat = pats[(size_t)idx % 5];
    static const uint64_t spaces[] = {4, 20, 300, 1000, 0};
    uint64_t ks = spaces[(size_t)idx / 5 % 5];
    gen_random_ops(t, r, true, pat, ks, scaled(2000 + below(r, 8000)),
                   "byte keys");
}

/* Grow to a random size, delete most, repeat: shrink and regrow. */
static void gen_waves(struct trace *t, rng *r, int idx)
{
    bool str = idx % 2 == 1;
    struct keygen kg;
    kg_init(&kg, r, str, -1);
    t_init(t, str, below(r, 3) ? 0 : below(r, 2000));
    struct idset live = {0}, dead = {0};
    uint64_t next = 1;
    int waves = 3 + (int)below(r, 4);
    size_t peak_max = scaled(idx % 4 < 2 ? 3000 : 20000);
    for (int w = 0; w < waves; w++) {
        size_t peak = 1 + below(r, peak_max);
        while (live.n < peak) {
            uint64_t id = next++;
            emit_key(t, &kg, OP_PUT, id, rand_val(r));
            ids_add(&live, id);
            if (chance(r, 200))
                emit_key(t, &kg, OP_GET, live.v[below(r, live.n)], 0);
            if (chance(r, 50))
                emit(t, OP_B);
            if (dead.n && chance(r, 100))
                emit_key(t, &kg, OP_GET, dead.v[below(r, dead.n)], 0);
        }
        emit(t, OP_LEN);
        emit(t, OP_B);
        if (peak <= 20000 && chance(r, 500))
            emit(t, OP_DUMP);
        size_t low = below(r, 4) == 0 ? 0 : below(r, peak / 8 + 1);
        if (chance(r, 100)) {
            emit(t, OP_CLEAR);
            while (live.n)
                ids_add(&dead, ids_take(&live, 0));
        }
        while (live.n > low) {
            uint64_t id = ids_take(&live, below(r, live.n));
            emit_key(t, &kg, OP_DEL, id, 0);
            ids_add(&dead, id);
            if (chance(r, 150) && live.n)
                emit_key(t, &kg, OP_GET, live.v[below(r, live.n)], 0);
            if (chance(r, 100))
                emit_key(t, &kg, OP_GET, dead.v[below(r, dead.n)], 0);
            if (chance(r, 30)) /* a re-insert while shrinking */ {
                uint64_t back = ids_take(&dead, below(r, dead.n));
                emit_key(t, &kg, OP_PUT, back, rand_val(r));
                ids_add(&live, back);
            }
            if (chance(r, 20))
                emit(t, OP_LEN);
        }
        emit(t, OP_LEN);
        emit(t, OP_DUMP);
        for (size_t i = 0; i < live.n; i++)
            emit_key(t, &kg, OP_GET, live.v[i], 0);
    }
    snprintf(t->desc, sizeof t->desc,
             "waves, %s keys %s, hint %" PRIu64 ", %d waves up to %zu",
             str ? "str" : "u64", kg_name(&kg), t->hint, waves, peak_max);
    free(live.v);
    free(dead.v);
}

/* Grow to a few hundred thousand keys, delete most, check, regrow. */
static void gen_bigshrink(struct trace *t, rng *r, int idx)
{
    bool str = idx == 1;
    size_t n = scaled(str ? 120000 : idx == 0 ? 300000 : 200000);
    struct keygen kg;
    kg_init(&kg, r, str, str ? KS_DEC : -1);
    t_init(t, str, 0);
    struct idset live = {0}, dead = {0};
    for (size_t i = 0; i < n; i++) {
        emit_key(t, &kg, OP_PUT, i, i * 7 + 1);
        ids_add(&live, i);
        if (i % 1000 == 0)
            emit(t, OP_B);
    }
    emit(t, OP_LEN);
    emit(t, OP_B);
    emit(t, OP_DUMP);
    /* idx 2 deletes everything, the others keep 0.1% - 5% */
    size_t keep = idx == 2 ? 0 : 1 + below(r, n / 20);
    while (live.n > keep) {
        uint64_t id = ids_take(&live, below(r, live.n));
        emit_key(t, &kg, OP_DEL, id, 0);
        ids_add(&dead, id);
        if (below(r, 10) == 0 && live.n)
            emit_key(t, &kg, OP_GET, live.v[below(r, live.n)], 0);
        if (below(r, 20) == 0)
            emit_key(t, &kg, OP_GET, dead.v[below(r, dead.n)], 0);
        if (live.n % 5000 == 0)
            emit(t, OP_LEN);
    }
    emit(t, OP_LEN);
    emit(t, OP_DUMP);
    for (size_t i = 0; i < live.n; i++)
        emit_key(t, &kg, OP_GET, live.v[i], 0);
    for (size_t i = 0; i < n / 10; i++) {
        uint64_t id = below(r, 2) ? dead.v[below(r, dead.n)] : n + i;
        emit_key(t, &kg, OP_PUT, id, rand_val(r));
        if (i % 7 == 0)
            emit_key(t, &kg, OP_GET, below(r, n + i + 1), 0);
    }
    emit(t, OP_LEN);
    emit(t, OP_DUMP);
    snprintf(t->desc, sizeof t->desc,
             "bigshrink, %s keys %s, %zu inserts, keep %zu, regrow %zu",
             str ? "str" : "u64", kg_name(&kg), n, keep, n / 10);
    free(live.v);
    free(dead.v);
}

/* Hold the count near a growth threshold and churn: insert a new key, delete
 * an old one (Go's same-size-grow workload), or swing a few keys across the
 * threshold again and again (grow/shrink hysteresis). */
static void gen_churn(struct trace *t, rng *r, int idx)
{
    static const uint64_t sizes[] = {8, 9, 13, 14, 26, 27, 50, 52, 53, 104,
                                     105, 416, 417, 1000, 3328, 3329};
    size_t nsz = sizeof sizes / sizeof sizes[0];
    uint64_t n = sizes[(size_t)idx % nsz];
    bool str = (size_t)idx / nsz % 2 == 1;
    bool swing = (size_t)idx / (2 * nsz) % 2 == 1;
    struct keygen kg;
    kg_init(&kg, r, str, -1);
    t_init(t, str, below(r, 2) ? 0 : n);
    uint64_t lo = 0, hi = 0; /* live ids are [lo, hi) */
    while (hi < n) {
        emit_key(t, &kg, OP_PUT, hi++, rand_val(r));
        emit(t, OP_B);
    }
    size_t rounds = scaled(swing ? 250 : 20000);
    uint64_t amp = 1 + below(r, n / 4 + 2);
    for (size_t i = 0; i < rounds; i++) {
        if (swing) {
            for (uint64_t j = 0; j < amp; j++)
                emit_key(t, &kg, OP_PUT, hi++, rand_val(r));
            emit(t, OP_LEN);
            for (uint64_t j = 0; j < amp; j++)
                emit_key(t, &kg, OP_DEL, lo++, 0);
            emit(t, OP_B);
        } else {
            emit_key(t, &kg, OP_PUT, hi++, rand_val(r));
            emit_key(t, &kg, OP_DEL, lo++, 0);
        }
        if (chance(r, 100))
            emit_key(t, &kg, OP_GET, lo + below(r, hi - lo), 0);
        if (chance(r, 50))
            emit_key(t, &kg, OP_GET, below(r, lo + 1), 0);
        if (i % (rounds / 4 + 1) == rounds / 8)
            emit(t, OP_DUMP);
    }
    emit(t, OP_LEN);
    emit(t, OP_DUMP);
    snprintf(t->desc, sizeof t->desc,
             "churn, %s keys %s, hint %" PRIu64 ", size %" PRIu64 ", %s %zu rounds",
             str ? "str" : "u64", kg_name(&kg), t->hint, n,
             swing ? "swing" : "fifo", rounds);
    if (swing)
        snprintf(t->desc + strlen(t->desc), sizeof t->desc - strlen(t->desc),
                 " of +-%" PRIu64, amp);
}

struct mix {
    const char *name;
    int count;
    void (*gen)(struct trace *, rng *, int idx);
};

static const struct mix mixes[] = {
    {"insert", 2 * (int)N_INSERT_HINTS + 12, gen_insert},
    {"insert-long", 2, gen_insert_long},
    {"small", 40, gen_small},
    {"large", 10, gen_large},
    {"waves", 16, gen_waves},
    {"churn", 64, gen_churn},
    {"strkeys", 40, gen_strkeys},
    {"bigshrink", 3, gen_bigshrink},
};
#define N_MIXES (sizeof mixes / sizeof mixes[0])

static uint64_t trace_seed(uint64_t seed, const char *mix, int idx)
{
    return mix64(seed ^ mix64(str_hash(mix) + (uint64_t)idx));
}

/* ------------------------------------------------------------------------ */
/* Running a trace                                                          */
/* ------------------------------------------------------------------------ */

static const char *g_gomap, *g_argv0;
static char g_trace_path[4096], g_out_path[4096];
static bool g_verbose;

static void cleanup_tmp(void)
{
    if (g_trace_path[0])
        unlink(g_trace_path);
    if (g_out_path[0])
        unlink(g_out_path);
}

static void make_tmp(char *path, size_t size, const char *what)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    snprintf(path, size, "%s/diff_go-%s-XXXXXX", dir, what);
    int fd = mkstemp(path);
    if (fd < 0)
        die("mkstemp %s: %s", path, strerror(errno));
    close(fd);
}

/* Runs argv with stdin and stdout redirected; returns the wait status. */
static int spawn_wait(char *const argv[], const char *in, const char *out)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (in)
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, in, O_RDONLY, 0);
    if (out)
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out,
                                         O_WRONLY | O_TRUNC | O_CREAT, 0600);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        die("cannot run %s: %s", argv[0], strerror(rc));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die("waitpid: %s", strerror(errno));
    return st;
}

/* Runs the Go side: writes the trace, runs gomap, leaves its output in
 * g_out_path. */
static void run_go(const struct trace *t)
{
    FILE *f = fopen(g_trace_path, "w");
    if (!f)
        die("%s: %s", g_trace_path, strerror(errno));
    write_trace(f, t);
    if (fclose(f) != 0)
        die("writing %s failed", g_trace_path);
    char *argv[] = {(char *)g_gomap, NULL};
    int st = spawn_wait(argv, g_trace_path, g_out_path);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("%s failed on a trace (status %d); trace left in %s", g_gomap, st,
            g_trace_path);
}

/* Entries collected for a dump. */
struct ent {
    uint64_t ku, v;
    size_t off, len; /* str: bytes in the collector's arena */
};

struct collect {
    struct ent *e;
    size_t n, cap;
    unsigned char *arena;
    size_t alen, acap;
    bool str;
};

static void col_add(struct collect *c, const void *key, size_t len, uint64_t v)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->e = xrealloc(c->e, c->cap * sizeof *c->e);
    }
    struct ent *e = &c->e[c->n++];
    e->v = v;
    if (c->str) {
        if (c->alen + len > c->acap || !c->arena) {
            size_t cap = c->acap ? c->acap : 4096;
            while (cap < c->alen + len)
                cap *= 2;
            c->arena = xrealloc(c->arena, cap);
            c->acap = cap;
        }
        if (len)
            memcpy(c->arena + c->alen, key, len);
        e->off = c->alen;
        e->len = len;
        c->alen += len;
    } else {
        memcpy(&e->ku, key, sizeof e->ku);
    }
}

static int range_cb(const void *key, size_t len, uint64_t val, void *arg)
{
    col_add(arg, key, len, val);
    return 0;
}

static const unsigned char *g_sort_arena;

static int cmp_u64(const void *a, const void *b)
{
    const struct ent *x = a, *y = b;
    return x->ku < y->ku ? -1 : x->ku > y->ku;
}

static int cmp_str(const void *a, const void *b)
{
    const struct ent *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(g_sort_arena + x->off, g_sort_arena + y->off, n) : 0;
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* The C side's line for a dump; alternates mg_range and mg_iter. */
static void c_dump(mg_map *m, bool str, bool use_iter, struct collect *c,
                   struct sbuf *out)
{
    c->n = 0;
    c->alen = 0;
    c->str = str;
    if (use_iter) {
        mg_iter it;
        const void *k;
        size_t kl;
        uint64_t v;
        for (mg_iter_init(&it, m); mg_iter_next(&it, &k, &kl, &v);)
            col_add(c, k, kl, v);
        mg_iter_done(&it);
    } else {
        mg_range(m, range_cb, c);
    }
    g_sort_arena = c->arena;
    if (c->n > 1)
        qsort(c->e, c->n, sizeof *c->e, str ? cmp_str : cmp_u64);
    sb_printf(out, "dump ");
    sb_u64(out, c->n);
    for (size_t i = 0; i < c->n; i++) {
        sb_printf(out, " ");
        if (str)
            sb_hexkey(out, c->arena + c->e[i].off, c->e[i].len);
        else
            sb_u64(out, c->e[i].ku);
        sb_printf(out, ":");
        sb_u64(out, c->e[i].v);
    }
}

#define CTX 16

struct mismatch {
    size_t op;           /* index of the op whose line differed */
    struct sbuf want;    /* Go */
    struct sbuf got;     /* mapguard */
    size_t b_checked, b_skipped;
};

/* Prints a long line pair around their first difference, token-wise. */
static void show_diff(FILE *f, const char *want, const char *got)
{
    size_t wl = strlen(want), gl = strlen(got);
    if (wl <= 200 && gl <= 200) {
        fprintf(f, "    Go:       %s\n    mapguard: %s\n", want, got);
        return;
    }
    size_t i = 0;
    while (i < wl && i < gl && want[i] == got[i])
        i++;
    size_t start = i; /* back to the start of the token, and two more */
    for (int tok = 0; tok < 3 && start > 0; tok++) {
        start--;
        while (start > 0 && want[start - 1] != ' ')
            start--;
    }
    fprintf(f, "    (lines of %zu and %zu chars; first difference at char %zu)\n",
            wl, gl, i);
    fprintf(f, "    Go:       ...%.160s%s\n", want + start,
            wl - start > 160 ? "..." : "");
    fprintf(f, "    mapguard: ...%.160s%s\n", got + start,
            gl - start > 160 ? "..." : "");
}

/* The C side runs in a child process, so that a crash, an abort (a fatal
 * report) or a hang in mapguard fails one trace instead of the whole run.
 * The child says how far it got through this shared page. */
struct shared {
    volatile size_t cur_op;  /* the op being applied */
    volatile size_t fail_op; /* the first mismatching op */
    volatile int counting; /* count the lines below (not when minimising) */
    volatile uint64_t lines, b_checked, b_skipped;
};
static struct shared *g_shared;
static unsigned g_hang_s = 60; /* 5 after the first hang */

/* Applies t to a fresh mapguard map and compares with Go's output in
 * g_out_path.  Returns true if they match; otherwise fills *mm. */
static bool run_c(const struct trace *t, struct mismatch *mm, FILE *report)
{
    mg_options opt;
    memset(&opt, 0, sizeof opt);
    opt.key = t->str ? MG_KEY_BYTES : MG_KEY_U64;
    opt.hint = (size_t)t->hint;
    opt.name = "diff_go";
    mg_map *m = mg_new(&opt);
    if (!m)
        die("mg_new(hint %" PRIu64 ") failed: %s", t->hint, strerror(errno));
    FILE *go = fopen(g_out_path, "r");
    if (!go)
        die("%s: %s", g_out_path, strerror(errno));

    struct sbuf line = {0};
    struct collect col = {0};
    char *gl = NULL;
    size_t gcap = 0;
    bool tainted = false, ok = true;
    size_t ndumps = 0;
    /* context: the last CTX ops with the line each produced */
    size_t ring_op[CTX];
    char *ring_line[CTX] = {0};
    size_t ring_n = 0;
    mm->b_checked = mm->b_skipped = 0;

    for (size_t i = 0; i < t->n && ok; i++) {
        const struct op *o = &t->ops[i];
        g_shared->cur_op = i;
        const unsigned char *kb = t->str ? op_key(t, o) : NULL;
        uint64_t v = 0;
        bool found, has_line = true;
        sb_clear(&line);
        switch (o->code) {
        case OP_PUT: {
            int rc = t->str ? mg_put(m, kb, o->klen, o->v)
                            : mg_put_u64(m, o->k, o->v);
            has_line = false;
            if (rc != MG_OK) { /* Go's assignment cannot fail */
                ok = false;
                mm->op = i;
                sb_clear(&mm->want);
                sb_printf(&mm->want, "(put succeeds: no line)");
                sb_clear(&mm->got);
                sb_printf(&mm->got, "put returned %s", mg_status_name(rc));
            }
            break;
        }
        case OP_GET:
            found = t->str ? mg_get(m, kb, o->klen, &v) : mg_get_u64(m, o->k, &v);
            sb_printf(&line, "get %d ", found ? 1 : 0);
            sb_u64(&line, found ? v : 0);
            break;
        case OP_DEL:
            found = t->str ? mg_del(m, kb, o->klen) : mg_del_u64(m, o->k);
            sb_printf(&line, "del %d ", found ? 1 : 0);
            sb_u64(&line, mg_len(m));
            tainted = true;
            break;
        case OP_LEN: {
            mg_stats st;
            mg_stats_get(m, &st);
            sb_printf(&line, "len ");
            sb_u64(&line, mg_len(m));
            if (st.count != mg_len(m))
                sb_printf(&line, " (but mg_stats.count %zu)", st.count);
            break;
        }
        case OP_B: {
            mg_stats st;
            mg_stats_get(m, &st);
            sb_printf(&line, "B %u", st.B);
            break;
        }
        case OP_CLEAR:
            mg_clear(m);
            tainted = true;
            has_line = false;
            break;
        case OP_DUMP:
            c_dump(m, t->str, ndumps++ % 2 == 1, &col, &line);
            break;
        }
        if (!has_line)
            continue;
        ssize_t n = getline(&gl, &gcap, go);
        if (n < 0) {
            n = 0;
            gl = xrealloc(gl, 32);
            strcpy(gl, "(end of Go output)");
        } else if (n > 0 && gl[n - 1] == '\n') {
            gl[--n] = '\0';
        }
        bool same = strcmp(gl, line.p) == 0;
        if (o->code == OP_B && strncmp(gl, "B ", 2) == 0 && !same && tainted) {
            same = true; /* mapguard may shrink / reset B; Go never does */
            mm->b_skipped++;
            g_shared->b_skipped += g_shared->counting;
        } else if (o->code == OP_B) {
            mm->b_checked++;
            g_shared->b_checked += g_shared->counting && !tainted;
        }
        g_shared->lines += g_shared->counting;
        if (!same) {
            ok = false;
            mm->op = i;
            sb_clear(&mm->want);
            sb_printf(&mm->want, "%s", gl);
            sb_clear(&mm->got);
            sb_printf(&mm->got, "%s", line.p);
            break;
        }
        size_t slot = ring_n++ % CTX;
        ring_op[slot] = i;
        free(ring_line[slot]);
        ring_line[slot] = line.len > 120 ? NULL : strdup(line.p);
    }
    if (ok && getline(&gl, &gcap, go) >= 0) {
        ok = false;
        mm->op = t->n;
        sb_clear(&mm->want);
        sb_printf(&mm->want, "%s", gl);
        sb_clear(&mm->got);
        sb_printf(&mm->got, "(end of mapguard output)");
    }
    if (!ok && report) {
        struct sbuf s = {0};
        fprintf(report, "  first difference at op %zu of %zu", mm->op, t->n);
        if (mm->op < t->n) {
            fmt_op(&s, t, &t->ops[mm->op]);
            fprintf(report, ": %.300s%s", s.p, s.len > 300 ? "..." : "");
        }
        fprintf(report, "\n");
        show_diff(report, mm->want.p, mm->got.p);
        fprintf(report, "  B compared %s at this point (a del or clear %s)\n",
                tainted ? "no longer" : "still", tainted ? "happened" : "did not happen yet");
        fprintf(report, "  ops before it (with the line both sides agreed on):\n");
        size_t from = mm->op > 12 ? mm->op - 12 : 0;
        for (size_t i = from; i < mm->op && i < t->n; i++) {
            sb_clear(&s);
            fmt_op(&s, t, &t->ops[i]);
            const char *agreed = NULL;
            for (size_t k = 0; k < CTX && k < ring_n; k++)
                if (ring_op[k] == i)
                    agreed = ring_line[k] ? ring_line[k] : "(long line)";
            fprintf(report, "    #%zu %.200s%s%s%s\n", i, s.p,
                    s.len > 200 ? "..." : "", agreed ? "  -> " : "",
                    agreed ? agreed : "");
        }
        free(s.p);
    }
    for (size_t k = 0; k < CTX; k++)
        free(ring_line[k]);
    free(gl);
    free(line.p);
    free(col.e);
    free(col.arena);
    fclose(go);
    mg_free(m);
    return ok;
}

/* Runs the Go side, then the C side in a child.  Returns true if the
 * outputs matched; otherwise sets *fail_op (the first mismatching op, or
 * the op mapguard crashed or hung in) and, with a report stream, explains. */
static bool run_trace(const struct trace *t, size_t *fail_op, FILE *report)
{
    run_go(t);
    fflush(stdout);
    fflush(stderr);
    g_shared->cur_op = 0;
    g_shared->fail_op = t->n;
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        g_in_child = true;
        if (!report) { /* quiet: also hide mapguard's fatal reports */
            int fd = open("/dev/null", O_WRONLY);
            if (fd >= 0)
                dup2(fd, STDERR_FILENO);
        }
        alarm(g_hang_s);
        struct mismatch mm = {0};
        bool ok = run_c(t, &mm, report);
        g_shared->fail_op = mm.op;
        fflush(NULL);
        _exit(ok ? 0 : 1);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die("waitpid: %s", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return true;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 1) {
        *fail_op = g_shared->fail_op;
        return false;
    }
    if (WIFEXITED(st))
        die("the C side exited with status %d", WEXITSTATUS(st));
    /* killed by a signal: a crash, an abort, or our alarm */
    size_t at = g_shared->cur_op;
    *fail_op = at;
    if (WTERMSIG(st) == SIGALRM)
        g_hang_s = 5; /* one hang is enough to wait for in full */
    if (report) {
        struct sbuf s = {0};
        if (at < t->n)
            fmt_op(&s, t, &t->ops[at]);
        int sig = WTERMSIG(st);
        if (sig == SIGALRM)
            fprintf(report, "  mapguard hung (over %u s) at op %zu of %zu: %.300s\n",
                    g_hang_s, at, t->n, s.p ? s.p : "");
        else
            fprintf(report, "  mapguard died of signal %d (%s) at op %zu of %zu: %.300s\n",
                    sig, sig == SIGABRT ? "abort: see the report above" : "crash",
                    at, t->n, s.p ? s.p : "");
        free(s.p);
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Minimising a failing trace                                               */
/* ------------------------------------------------------------------------ */

/* Runs t up to `tries` times; it "fails" if at least `need` runs failed.
 * (mapguard draws a fresh hash seed per map, so a layout-dependent bug may
 * not show every time.) */
static bool fails(const struct trace *t, int tries, int need, size_t *fail_op)
{
    int nf = 0;
    for (int i = 0; i < tries; i++) {
        size_t fo;
        if (!run_trace(t, &fo, NULL)) {
            nf++;
            *fail_op = fo;
        }
        if (nf >= need || nf + (tries - i - 1) < need)
            break;
    }
    return nf >= need;
}

/* Tries t with ops[at, end) left out, and keep the candidate if it fails. */
static bool try_candidate(struct trace *t, struct op *cand, size_t cn,
                          int tries, int need)
{
    struct trace c = *t;
    c.ops = cand;
    c.n = cn;
    size_t fo;
    if (cn == 0 || !fails(&c, tries, need, &fo))
        return false;
    size_t keep = fo < cn ? fo + 1 : cn;
    memcpy(t->ops, cand, keep * sizeof *cand);
    t->n = keep;
    return true;
}

/* Numbers the keys of t's ops 0..n-1 (op.gid; UINT32_MAX for ops with no
 * key).  Returns n. */
static const struct trace *g_group_trace;

static int cmp_op_key(const void *a, const void *b)
{
    const struct trace *t = g_group_trace;
    const struct op *x = &t->ops[*(const size_t *)a], *y = &t->ops[*(const size_t *)b];
    if (!t->str)
        return x->k < y->k ? -1 : x->k > y->k;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = n ? memcmp(op_key(t, x), op_key(t, y), n) : 0;
    if (c)
        return c;
    return x->klen < y->klen ? -1 : x->klen > y->klen;
}

static uint32_t assign_groups(struct trace *t)
{
    size_t *idx = xrealloc(NULL, (t->n + 1) * sizeof *idx), m = 0;
    for (size_t i = 0; i < t->n; i++) {
        t->ops[i].gid = UINT32_MAX;
        int c = t->ops[i].code;
        if (c == OP_PUT || c == OP_GET || c == OP_DEL)
            idx[m++] = i;
    }
    g_group_trace = t;
    if (m > 1)
        qsort(idx, m, sizeof *idx, cmp_op_key);
    uint32_t g = 0;
    for (size_t j = 0; j < m; j++) {
        if (j > 0 && cmp_op_key(&idx[j - 1], &idx[j]) != 0)
            g++;
        t->ops[idx[j]].gid = g;
    }
    free(idx);
    return m ? g + 1 : 0;
}

/* Shrinks t in place (its ops; the pool is shared) while it still fails:
 * first everything after the failing op, then every read but the last op
 * (reads change no state), then every op on sets of keys, then runs of
 * ops, halving their size. */
static void minimise(struct trace *t, size_t fail_op, double budget_s)
{
    double t0 = now_s();
    int hits = 0;
    for (int i = 0; i < 5; i++) {
        size_t fo;
        if (!run_trace(t, &fo, NULL))
            hits++;
    }
    fprintf(stderr, "  reproduced %d/5 times", hits);
    if (hits == 0) {
        fprintf(stderr, "; not minimising\n");
        return;
    }
    /* reliable: a candidate must fail 3 times in a row, or the result
     * drifts towards traces that fail only for some hash seeds; flaky:
     * once in 4 */
    int tries = hits == 5 ? 3 : 4, need = hits == 5 ? 3 : 1;
    fprintf(stderr, "; minimising (up to %.0f s)...\n", budget_s);
    if (fail_op < t->n)
        t->n = fail_op + 1;
    struct op *cand = xrealloc(NULL, (t->n + 1) * sizeof *cand);
    size_t runs = 1, cn = 0;
    for (size_t i = 0; i < t->n; i++)
        if (i + 1 == t->n || t->ops[i].code == OP_PUT ||
            t->ops[i].code == OP_DEL || t->ops[i].code == OP_CLEAR)
            cand[cn++] = t->ops[i];
    if (cn < t->n)
        try_candidate(t, cand, cn, tries, need);
    /* every op on a set of keys, halving the set */
    uint32_t ngroups = assign_groups(t);
    for (uint32_t chunk = ngroups / 2; chunk >= 1; chunk /= 2) {
        for (uint32_t g0 = 0; g0 < ngroups && now_s() - t0 < budget_s; g0 += chunk) {
            cn = 0;
            for (size_t i = 0; i < t->n; i++)
                if (t->ops[i].gid < g0 || t->ops[i].gid - g0 >= chunk)
                    cand[cn++] = t->ops[i];
            if (cn == t->n)
                continue;
            runs++;
            try_candidate(t, cand, cn, tries, need);
        }
    }
    /* then runs of ops, halving their length */
    for (size_t chunk = t->n / 2; chunk >= 1; chunk /= 2) {
        for (size_t at = 0; at < t->n && now_s() - t0 < budget_s;) {
            size_t end = at + chunk < t->n ? at + chunk : t->n;
            cn = 0;
            for (size_t i = 0; i < t->n; i++)
                if (i < at || i >= end)
                    cand[cn++] = t->ops[i];
            runs++;
            if (!try_candidate(t, cand, cn, tries, need))
                at = end;
        }
        if (chunk > t->n)
            chunk = t->n;
        if (now_s() - t0 >= budget_s)
            break;
    }
    free(cand);
    int again = 0;
    for (int i = 0; i < 10; i++) {
        size_t fo;
        if (!run_trace(t, &fo, NULL))
            again++;
    }
    fprintf(stderr, "  minimised to %zu ops in %zu steps, %.1f s; it fails %d/10 runs\n",
            t->n, runs, now_s() - t0, again);
}

/* ------------------------------------------------------------------------ */
/* Driver                                                                   */
/* ------------------------------------------------------------------------ */

static const char *g_keep = ".";
static bool g_minimise = true;
static int g_minimise_left = 3; /* a broken build fails everything: cap it */

static void save_trace(const struct trace *t, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "  cannot save %s: %s\n", path, strerror(errno));
        return;
    }
    write_trace(f, t);
    fclose(f);
}

/* Runs one trace, reports a failure; returns true if it matched. */
static bool check(struct trace *t, const char *label, const char *replay)
{
    size_t fail_op = 0;
    double t0 = now_s();
    g_shared->counting = 1;
    bool ok = run_trace(t, &fail_op, NULL);
    g_shared->counting = 0;
    if (g_verbose || !ok)
        fprintf(stderr, "%s %s (%zu ops, %.2f s): %s\n", ok ? "ok  " : "FAIL",
                label, t->n, now_s() - t0, t->desc);
    if (ok)
        return true;
    /* re-run with the report (same trace; the hash seed is fresh, so a
     * layout-dependent failure may take a few runs to show again) */
    size_t fo2;
    int reruns = 0;
    while (reruns < 10 && run_trace(t, &fo2, stderr))
        reruns++;
    if (reruns)
        fprintf(stderr, "  (%d re-runs for the report matched: the failure "
                        "depends on the hash seed)\n", reruns);
    fprintf(stderr, "  replay: %s\n", replay);
    char path[4200];
    snprintf(path, sizeof path, "%s/diff_go-fail-%s.trace", g_keep, label);
    for (char *p = path + strlen(g_keep) + 1; *p; p++)
        if (*p == '/' || *p == ' ')
            *p = '_';
    save_trace(t, path);
    fprintf(stderr, "  trace saved: %s\n", path);
    if (g_minimise && g_minimise_left == 0)
        fprintf(stderr, "  (not minimised: only the first failures are)\n");
    if (g_minimise && g_minimise_left > 0) {
        g_minimise_left--;
        struct trace mt = *t;
        mt.ops = xrealloc(NULL, t->n * sizeof *t->ops);
        memcpy(mt.ops, t->ops, t->n * sizeof *t->ops);
        minimise(&mt, fail_op, 20.0);
        if (mt.n < t->n) {
            snprintf(mt.desc, sizeof mt.desc, "minimised from %.140s", label);
            char mpath[4300];
            snprintf(mpath, sizeof mpath, "%.*s.min.trace",
                     (int)(strlen(path) - strlen(".trace")), path);
            save_trace(&mt, mpath);
            fprintf(stderr, "  minimised trace saved: %s\n", mpath);
            fprintf(stderr, "  replay: %s %s --replay %s\n", g_argv0, g_gomap, mpath);
            if (mt.n <= 60) {
                fprintf(stderr, "  ---- minimised trace ----\n");
                write_trace(stderr, &mt);
                fprintf(stderr, "  ----\n");
            }
            reruns = 0;
            while (reruns < 10 && run_trace(&mt, &fo2, stderr))
                reruns++;
            if (reruns == 10)
                fprintf(stderr, "  (the minimised trace matched 10 times)\n");
        }
        t_free(&mt, false);
    }
    return false;
}

_Noreturn static void usage(void)
{
    fprintf(stderr,
            "usage: diff_go GOMAP [--seed N] [--scale X] [--mix NAME [--only I]]\n"
            "               [--replay FILE] [--keep DIR] [--no-minimize]\n"
            "               [--max-fail N] [-v]\n"
            "  GOMAP        the built tests/diff/gomap.go\n"
            "  --seed N     master seed (default: from the clock; always printed)\n"
            "  --scale X    multiply trace sizes by X (default 1)\n"
            "  --mix NAME   run only this mix; --only I: only its trace I\n"
            "  --replay F   run the trace file F (as saved on a failure)\n"
            "  --keep DIR   where failing traces are saved (default .)\n"
            "  --max-fail N stop after N failing traces (default 10)\n"
            "  --no-minimize  do not shrink failing traces\n"
            "  -v           a line for every trace\n"
            "  --check-mixes NAME...  exit 0 iff these are the mixes, in order\n"
            "mixes:");
    for (size_t i = 0; i < N_MIXES; i++)
        fprintf(stderr, " %s(%d)", mixes[i].name, mixes[i].count);
    fprintf(stderr, "\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    g_argv0 = argv[0];
    g_gomap = argv[1];
    uint64_t seed = 0;
    bool have_seed = false;
    const char *only_mix = NULL, *replay = NULL;
    int only = -1, max_fail = 10, check_mixes = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--seed") == 0 && val) {
            if (!parse_u64(val, &seed))
                usage();
            have_seed = true;
            i++;
        } else if (strcmp(a, "--scale") == 0 && val) {
            g_scale = atof(val);
            if (!(g_scale > 0))
                usage();
            i++;
        } else if (strcmp(a, "--mix") == 0 && val) {
            only_mix = val;
            i++;
        } else if (strcmp(a, "--only") == 0 && val) {
            only = atoi(val);
            i++;
        } else if (strcmp(a, "--max-fail") == 0 && val) {
            max_fail = atoi(val);
            if (max_fail < 1)
                usage();
            i++;
        } else if (strcmp(a, "--replay") == 0 && val) {
            replay = val;
            i++;
        } else if (strcmp(a, "--keep") == 0 && val) {
            g_keep = val;
            i++;
        } else if (strcmp(a, "--no-minimize") == 0) {
            g_minimise = false;
        } else if (strcmp(a, "--check-mixes") == 0) {
            check_mixes = i + 1; /* the rest of argv */
            break;
        } else if (strcmp(a, "-v") == 0) {
            g_verbose = true;
        } else {
            usage();
        }
    }
    if (check_mixes) { /* the build's list of mixes must be this list */
        bool same = argc - check_mixes == (int)N_MIXES;
        for (size_t i = 0; same && i < N_MIXES; i++)
            same = strcmp(argv[check_mixes + (int)i], mixes[i].name) == 0;
        if (!same) {
            fprintf(stderr, "diff_go: the build's mix list differs from:");
            for (size_t i = 0; i < N_MIXES; i++)
                fprintf(stderr, " %s", mixes[i].name);
            fprintf(stderr, "\n");
            return 1;
        }
        printf("mix list ok\n");
        return 0;
    }
    if (access(g_gomap, X_OK) != 0)
        die("%s: %s (build tests/diff/gomap.go first)", g_gomap, strerror(errno));
    make_tmp(g_trace_path, sizeof g_trace_path, "trace");
    make_tmp(g_out_path, sizeof g_out_path, "out");
    atexit(cleanup_tmp);
    g_shared = mmap(NULL, sizeof *g_shared, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_shared == MAP_FAILED)
        die("mmap: %s", strerror(errno));

    /* The Go side first checks that it reads hmap.B correctly. */
    char *st_argv[] = {(char *)g_gomap, (char *)"-selftest", NULL};
    int st = spawn_wait(st_argv, NULL, "/dev/null");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("%s -selftest failed: the Go side cannot be trusted", g_gomap);

    if (replay) {
        struct trace t;
        read_trace(replay, &t);
        char cmd[4300];
        snprintf(cmd, sizeof cmd, "%s %s --replay %s", argv[0], g_gomap, replay);
        bool ok = check(&t, "replay", cmd);
        t_free(&t, true);
        printf("%d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
        return ok ? 0 : 1;
    }

    if (!have_seed)
        seed = mix64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    printf("diff_go: seed %" PRIu64 " scale %g\n", seed, g_scale);
    fflush(stdout);

    double t0 = now_s();
    int passed = 0, failed = 0, skipped = 0;
    bool any_mix = false;
    for (size_t mi = 0; mi < N_MIXES; mi++) {
        const struct mix *mx = &mixes[mi];
        if (only_mix && strcmp(only_mix, mx->name) != 0)
            continue;
        any_mix = true;
        double m0 = now_s();
        int mpass = 0, mfail = 0;
        for (int idx = 0; idx < mx->count; idx++) {
            if (only >= 0 && idx != only)
                continue;
            if (failed + mfail >= max_fail) {
                skipped++;
                continue;
            }
            rng r = {trace_seed(seed, mx->name, idx)};
            struct trace t;
            mx->gen(&t, &r, idx);
            char label[64], cmd[4400];
            snprintf(label, sizeof label, "%s-%d-seed%" PRIu64, mx->name, idx, seed);
            snprintf(cmd, sizeof cmd, "%s %s --seed %" PRIu64 " --scale %g --mix %s --only %d",
                     argv[0], g_gomap, seed, g_scale, mx->name, idx);
            if (check(&t, label, cmd))
                mpass++;
            else
                mfail++;
            t_free(&t, true);
        }
        printf("  %-12s %3d passed, %d failed  (%.1f s)\n", mx->name, mpass, mfail,
               now_s() - m0);
        fflush(stdout);
        passed += mpass;
        failed += mfail;
    }
    if (!any_mix)
        usage();
    printf("  compared %" PRIu64 " lines; B compared %" PRIu64
           " times, %" PRIu64 " B lines differed after a del/clear (allowed)\n",
           g_shared->lines, g_shared->b_checked, g_shared->b_skipped);
    if (skipped)
        printf("  stopped after %d failures: %d traces not run\n", failed, skipped);
    printf("%d passed, %d failed  (seed %" PRIu64 ", %.1f s)\n", passed, failed,
           seed, now_s() - t0);
    return failed == 0 && passed > 0 ? 0 : 1;
}
