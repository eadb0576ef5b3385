/*
 * diff_readmostly.c - MG_READMOSTLY against real Go 1.19 sync.Map.
 *
 * This program generates op sequences (from one seed, printed), writes them
 * as a trace (format in readmostly_go.go), runs the trace through the Go
 * program and applies it here to MG_READMOSTLY maps with u64 keys:
 *
 *   Load -> mg_get_u64           Store -> mg_put_u64
 *   LoadOrStore -> mg_get_or_put_u64    LoadAndDelete -> mg_get_and_del_u64
 *   Delete -> mg_del_u64         Range -> mg_range (to the end, or stopped)
 *
 * After every op both sides print the op's result and the map's state in
 * sync.Map's terms (len(read.m), amended, len(dirty) or -1, misses; here
 * from mg__rm_state).  The lines must be equal.  The first difference of a
 * sequence is printed with the op index, the ops before it and both lines,
 * and the sequence up to it is saved as a trace that --replay runs again.
 *
 * Mixes (one Go run each):
 *   fixed     the state sequence of go-map-semantics.md section 2.1 and a
 *             few hand-written ones (promotion by misses and by Range,
 *             delete in read, expunge on the dirty copy, unexpunge)
 *   small     sequences over 1-8 keys: every op, promotions all the time
 *   medium    16-64 keys, longer sequences
 *   loads     mostly loads of absent and dirty keys: promotion by misses
 *   deletes   mostly deletes and re-stores: expunge and unexpunge
 * The random mixes must reach promotions, dirty copies, expunged entries
 * and unexpunges (counted by the Go side), or they fail.
 *
 * Usage: diff_readmostly GOPROG [--seed N] [--mix NAME] [--keep DIR] [-v]
 *        diff_readmostly GOPROG --replay FILE
 *        diff_readmostly GOPROG --check-mixes NAME...
 * Exit status 0 only if every line matched.
 */
#define _POSIX_C_SOURCE 200809L

#include "mapguard.h"
#include "modes/introspect.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

_Noreturn static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("diff_readmostly: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die("out of memory");
    return q;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------------ */
/* Traces                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum { OP_NEW, OP_LOAD, OP_STORE, OP_LOS, OP_LAD, OP_DEL, OP_RANGE, OP_RANGESTOP } opkind;
static const char *const op_names[] = {"new", "load", "store", "los", "lad", "del",
                                       "range", "rangestop"};

typedef struct {
    opkind kind;
    uint64_t k, v; /* v: the value, or for rangestop the call that stops */
} op;

typedef struct {
    op *ops;
    size_t n, cap;
} trace;

static void push(trace *t, opkind kind, uint64_t k, uint64_t v)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 1024;
        t->ops = xrealloc(t->ops, t->cap * sizeof *t->ops);
    }
    t->ops[t->n++] = (op){kind, k, v};
}

static int op_format(const op *o, char *buf, size_t cap)
{
    switch (o->kind) {
    case OP_NEW:
    case OP_RANGE:
        return snprintf(buf, cap, "%s", op_names[o->kind]);
    case OP_LOAD:
    case OP_LAD:
    case OP_DEL:
        return snprintf(buf, cap, "%s %" PRIu64, op_names[o->kind], o->k);
    case OP_RANGESTOP:
        return snprintf(buf, cap, "%s %" PRIu64, op_names[o->kind], o->v);
    default:
        return snprintf(buf, cap, "%s %" PRIu64 " %" PRIu64, op_names[o->kind], o->k, o->v);
    }
}

static void trace_write(const trace *t, size_t from, size_t to, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s: %s", path, strerror(errno));
    char buf[96];
    for (size_t i = from; i < to; i++) {
        op_format(&t->ops[i], buf, sizeof buf);
        fprintf(f, "%s\n", buf);
    }
    if (fclose(f) != 0)
        die("writing %s: %s", path, strerror(errno));
}

static void trace_read(trace *t, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot read %s: %s", path, strerror(errno));
    char line[256], name[32];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        uint64_t a = 0, b = 0;
        int n = sscanf(line, "%31s %" SCNu64 " %" SCNu64, name, &a, &b);
        size_t kind = 0;
        while (kind < sizeof op_names / sizeof op_names[0] && strcmp(op_names[kind], name))
            kind++;
        if (n < 1 || kind == sizeof op_names / sizeof op_names[0])
            die("%s: bad line: %s", path, line);
        if (kind == OP_RANGESTOP)
            push(t, OP_RANGESTOP, 0, a);
        else
            push(t, (opkind)kind, a, b);
    }
    fclose(f);
    if (t->n == 0 || t->ops[0].kind != OP_NEW)
        die("%s: a trace starts with new", path);
}

/* ------------------------------------------------------------------------ */
/* Mixes                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int nseq, len;
    unsigned kmin, kmax;
    /* weights: load store los lad del range rangestop */
    unsigned w[7];
} mix;

static const mix mixes[] = {
    {"fixed", 0, 0, 0, 0, {0}},
    {"small", 150, 1500, 1, 8, {30, 22, 12, 8, 10, 3, 2}},
    {"medium", 40, 4000, 16, 64, {35, 25, 12, 8, 10, 1, 1}},
    {"loads", 60, 2500, 4, 32, {70, 10, 6, 4, 5, 1, 1}},
    {"deletes", 60, 2500, 2, 24, {20, 25, 15, 15, 22, 2, 1}},
};
#define N_MIXES (sizeof mixes / sizeof mixes[0])

/* The hand-written sequences: section 2.1's, then promotion by LoadOrStore
 * and LoadAndDelete misses, and the expunge paths of each write. */
static void gen_fixed(trace *t)
{
    static const char *const seq =
        /* go-map-semantics.md 2.1, keys a=1 b=2 c=3 n=14 zz=26 */
        "new;store 1 1;load 1;store 2 2;store 1 10;load 26;load 26;los 1 99;"
        "los 3 3;los 3 4;store 14 0;load 14;"
        "new;store 1 1;store 2 2;range;del 1;store 3 3;store 1 11;"
        /* misses counted by LoadOrStore and LoadAndDelete hits in dirty */
        "new;store 1 1;store 2 2;store 3 3;los 1 5;lad 2;los 3 6;load 3;range;"
        /* delete in read, then each write kind meets the expunged entry */
        "new;store 1 1;store 2 2;store 3 3;range;del 1;lad 2;store 4 4;load 1;"
        "lad 1;del 2;los 1 7;los 2 8;store 5 5;range;"
        /* a stopped Range promotes too; an empty map's range and misses */
        "new;range;load 1;lad 1;del 1;store 9 9;rangestop 1;load 9;store 8 8;"
        "rangestop 1;range;del 9;del 8;load 9;load 8;load 8;store 8 1;range";
    char buf[64];
    for (const char *p = seq; *p;) {
        size_t n = strcspn(p, ";");
        memcpy(buf, p, n);
        buf[n] = '\0';
        p += n + (p[n] == ';');
        char name[16];
        uint64_t a = 0, b = 0;
        if (sscanf(buf, "%15s %" SCNu64 " %" SCNu64, name, &a, &b) < 1)
            die("bad fixed op %s", buf);
        size_t kind = 0;
        while (strcmp(op_names[kind], name))
            kind++;
        if (kind == OP_RANGESTOP)
            push(t, OP_RANGESTOP, 0, a);
        else
            push(t, (opkind)kind, a, b);
    }
}

static void gen_mix(trace *t, const mix *mx, uint64_t seed)
{
    uint64_t s = seed ^ (0x5851F42D4C957F2Dull * (uint64_t)(mx - mixes + 1));
    for (int q = 0; q < mx->nseq; q++) {
        unsigned K = mx->kmin + (unsigned)(rng_next(&s) % (mx->kmax - mx->kmin + 1));
        bool big = q % 2; /* odd sequences use big keys */
        push(t, OP_NEW, 0, 0);
        unsigned total = 0;
        for (int j = 0; j < 7; j++)
            total += mx->w[j];
        for (int j = 0; j < mx->len; j++) {
            /* every other 300 ops, mostly loads: misses promote */
            unsigned r = (unsigned)(rng_next(&s) % total);
            if ((j / 300) % 2 == 1 && rng_next(&s) % 2 == 0)
                r = 0;
            uint64_t i = rng_next(&s) % K;
            uint64_t k = big ? (i + 1) * 0x9E3779B97F4A7C15ull : i;
            uint64_t v = rng_next(&s);
            if (v % 8 == 0)
                v = 0;
            else if (v % 8 < 6)
                v %= 1000;
            unsigned kind = 0;
            while (r >= mx->w[kind])
                r -= mx->w[kind++];
            static const opkind kinds[] = {OP_LOAD, OP_STORE, OP_LOS, OP_LAD, OP_DEL,
                                           OP_RANGE, OP_RANGESTOP};
            opkind kd = kinds[kind];
            if (kd == OP_RANGESTOP)
                v = 1 + rng_next(&s) % (K + 1);
            push(t, kd, k, v);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The two sides                                                            */
/* ------------------------------------------------------------------------ */

typedef struct {
    char **line;
    size_t n;
    char *buf;
} lines;

static void run_go(const char *goprog, const char *in, const char *out)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, in, O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out, O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    char *argv[] = {(char *)goprog, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, goprog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        die("cannot run %s: %s", goprog, strerror(rc));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die("waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("%s failed on the trace %s (status %d)", goprog, in, st);
}

static lines read_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot read %s: %s", path, strerror(errno));
    lines l = {0};
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 65536 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            l.buf = xrealloc(l.buf, cap);
        }
        size_t got = fread(l.buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    l.buf[len] = '\0';
    size_t lcap = 0;
    for (char *p = l.buf; *p;) {
        char *e = strchr(p, '\n');
        if (e)
            *e = '\0';
        if (l.n == lcap) {
            lcap = lcap ? lcap * 2 : 1024;
            l.line = xrealloc(l.line, lcap * sizeof *l.line);
        }
        l.line[l.n++] = p;
        if (!e)
            break;
        p = e + 1;
    }
    return l;
}

typedef struct {
    uint64_t n, sk, sv, stop;
} rng_acc;

static int range_fn(const void *key, size_t len, uint64_t val, void *arg)
{
    rng_acc *a = arg;
    uint64_t k;
    if (len != sizeof k)
        die("mg_range gave a %zu-byte key on a u64 map", len);
    memcpy(&k, key, sizeof k);
    a->n++;
    a->sk += k;
    a->sv += val;
    return a->stop && a->n == a->stop ? 1 : 0;
}

/* Apply one op to *m and write its line as the Go side would. */
static void c_apply(mg_map **m, const op *o, char *buf, size_t cap)
{
    uint64_t v = 0;
    bool f = false;
    int n = 0;
    switch (o->kind) {
    case OP_NEW: {
        mg_free(*m);
        mg_options opt = {.mode = MG_READMOSTLY, .key = MG_KEY_U64, .name = "diff"};
        *m = mg_new(&opt);
        if (!*m)
            die("mg_new(MG_READMOSTLY): NULL, errno %d (%s)", errno, strerror(errno));
        n = snprintf(buf, cap, "new");
        break;
    }
    case OP_LOAD:
        f = mg_get_u64(*m, o->k, &v);
        n = snprintf(buf, cap, "load %d %" PRIu64, f, f ? v : 0);
        break;
    case OP_STORE: {
        int rc = mg_put_u64(*m, o->k, o->v);
        n = rc == MG_OK ? snprintf(buf, cap, "store") : snprintf(buf, cap, "store rc=%d", rc);
        break;
    }
    case OP_LOS: {
        bool loaded = false;
        int rc = mg_get_or_put_u64(*m, o->k, o->v, &v, &loaded);
        if (rc != MG_OK)
            n = snprintf(buf, cap, "los rc=%d", rc);
        else
            n = snprintf(buf, cap, "los %d %" PRIu64, loaded, v);
        break;
    }
    case OP_LAD:
        f = mg_get_and_del_u64(*m, o->k, &v);
        n = snprintf(buf, cap, "lad %d %" PRIu64, f, f ? v : 0);
        break;
    case OP_DEL:
        mg_del_u64(*m, o->k);
        n = snprintf(buf, cap, "del");
        break;
    case OP_RANGE: {
        rng_acc a = {0, 0, 0, 0};
        int rc = mg_range(*m, range_fn, &a);
        n = snprintf(buf, cap, "range %" PRIu64 " %" PRIu64 " %" PRIu64 "%s", a.n, a.sk, a.sv,
                     rc ? " (returned non-zero)" : "");
        break;
    }
    case OP_RANGESTOP: {
        rng_acc a = {0, 0, 0, o->v};
        int rc = mg_range(*m, range_fn, &a);
        bool ok = rc == (a.n == o->v ? 1 : 0);
        n = snprintf(buf, cap, "rangestop %" PRIu64 "%s", a.n,
                     ok ? "" : " (mg_range returned the wrong value)");
        break;
    }
    }
    mg_rm_state st;
    if (mg__rm_state(*m, &st) != 0)
        snprintf(buf + n, cap - (size_t)n, " | mg__rm_state failed");
    else
        snprintf(buf + n, cap - (size_t)n, " | r=%zu a=%d d=%ld m=%zu", st.read_len,
                 st.amended ? 1 : 0, st.dirty_len, st.misses);
}

/* ------------------------------------------------------------------------ */
/* Comparing                                                                */
/* ------------------------------------------------------------------------ */

static bool verbose;
static const char *keep_dir;

/* Run trace t on both sides.  Returns the number of sequences that
 * diverged; *ev gets the Go side's event line. */
static int compare(const char *goprog, const char *label, uint64_t seed, const trace *t,
                   char *ev, size_t evcap)
{
    char dir[512], in[600], out[600];
    snprintf(dir, sizeof dir, "%s/diff_readmostly.XXXXXX", keep_dir ? keep_dir : "/tmp");
    if (!mkdtemp(dir))
        die("mkdtemp %s: %s", dir, strerror(errno));
    snprintf(in, sizeof in, "%s/trace", dir);
    snprintf(out, sizeof out, "%s/go.out", dir);
    trace_write(t, 0, t->n, in);
    run_go(goprog, in, out);
    lines go = read_lines(out);
    if (go.n != t->n + 1 || strncmp(go.line[t->n], "# events", 8) != 0)
        die("%s: the Go side printed %zu lines for %zu ops", label, go.n, t->n);
    snprintf(ev, evcap, "%s", go.line[t->n] + 2);

    mg_map *m = NULL;
    char mine[256], opbuf[96];
    int failed = 0, seqno = -1;
    size_t seq_start = 0;
    bool skip = false; /* rest of a sequence after its first divergence */
    for (size_t i = 0; i < t->n; i++) {
        const op *o = &t->ops[i];
        if (o->kind == OP_NEW) {
            seqno++;
            seq_start = i;
            skip = false;
        }
        if (skip)
            continue;
        c_apply(&m, o, mine, sizeof mine);
        if (strcmp(mine, go.line[i]) == 0)
            continue;
        failed++;
        skip = true;
        fprintf(stderr, "\n%s, seed %" PRIu64 ": sequence %d diverges at its op %zu "
                        "(trace op %zu)\n", label, seed, seqno, i - seq_start, i);
        size_t from = i - seq_start > 12 ? i - 12 : seq_start;
        for (size_t j = from; j < i; j++) {
            op_format(&t->ops[j], opbuf, sizeof opbuf);
            fprintf(stderr, "  %6zu  %-28s %s\n", j - seq_start, opbuf, go.line[j]);
        }
        op_format(o, opbuf, sizeof opbuf);
        fprintf(stderr, "  %6zu  %-28s\n          go:       %s\n          mapguard: %s\n",
                i - seq_start, opbuf, go.line[i], mine);
        char path[700];
        snprintf(path, sizeof path, "%s/readmostly-%s-seed%" PRIu64 "-seq%d.trace",
                 keep_dir ? keep_dir : dir, label, seed, seqno);
        trace_write(t, seq_start, i + 1, path);
        fprintf(stderr, "  saved: %s (%zu ops; rerun: diff_readmostly %s --replay %s)\n", path,
                i + 1 - seq_start, goprog, path);
        if (failed >= 3) {
            fprintf(stderr, "  (stopping after 3 diverging sequences)\n");
            break;
        }
    }
    mg_free(m);
    if (verbose || failed)
        fprintf(stderr, "%s: %zu ops, %d sequences diverged; Go: %s\n", label, t->n, failed,
                ev);
    if (!failed) {
        remove(in);
        remove(out);
        rmdir(dir);
    }
    free(go.buf);
    free(go.line);
    return failed;
}

/* Every path a random mix must reach. */
static bool events_ok(const char *label, const char *ev)
{
    static const char *const need[] = {"promotions", "copies", "expunged", "unexpunged"};
    bool ok = true;
    for (size_t i = 0; i < 4; i++) {
        const char *p = strstr(ev, need[i]);
        long n = p ? strtol(p + strlen(need[i]) + 1, NULL, 10) : 0;
        if (n <= 0) {
            fprintf(stderr, "%s: the trace never reached sync.Map's %s (%s)\n", label, need[i],
                    ev);
            ok = false;
        }
    }
    return ok;
}

int main(int argc, char **argv)
{
    setvbuf(stderr, NULL, _IOLBF, 0);
    if (argc < 2)
        die("usage: diff_readmostly GOPROG [--seed N] [--mix NAME] [--keep DIR] [-v] "
            "| --replay FILE | --check-mixes NAME...");
    const char *goprog = argv[1];
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    const char *only = NULL, *replay = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--mix") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--keep") == 0 && i + 1 < argc) {
            keep_dir = argv[++i];
        } else if (strcmp(argv[i], "--replay") == 0 && i + 1 < argc) {
            replay = argv[++i];
        } else if (strcmp(argv[i], "-v") == 0) {
            verbose = true;
        } else if (strcmp(argv[i], "--check-mixes") == 0) {
            int bad = argc - i - 1 != (int)N_MIXES;
            for (size_t j = 0; j < N_MIXES; j++)
                if (i + 1 + (int)j >= argc || strcmp(argv[i + 1 + j], mixes[j].name) != 0)
                    bad = 1;
            if (bad) {
                fprintf(stderr, "the build's mixes differ from this program's:");
                for (size_t j = 0; j < N_MIXES; j++)
                    fprintf(stderr, " %s", mixes[j].name);
                fprintf(stderr, "\n");
            }
            return bad;
        } else {
            die("unknown argument %s", argv[i]);
        }
    }
    char ev[256];
    if (replay) {
        trace t = {0};
        trace_read(&t, replay);
        int failed = compare(goprog, "replay", 0, &t, ev, sizeof ev);
        printf("replay %s: %s\n", replay, failed ? "DIVERGES" : "matches");
        free(t.ops);
        return failed ? 1 : 0;
    }
    printf("diff_readmostly: seed %" PRIu64 "\n", seed);
    fflush(stdout);
    int failed = 0, ran = 0;
    for (size_t j = 0; j < N_MIXES; j++) {
        const mix *mx = &mixes[j];
        if (only && strcmp(only, mx->name) != 0)
            continue;
        trace t = {0};
        if (mx->nseq == 0)
            gen_fixed(&t);
        else
            gen_mix(&t, mx, seed);
        int f = compare(goprog, mx->name, seed, &t, ev, sizeof ev);
        if (mx->nseq > 0 && !events_ok(mx->name, ev))
            f++;
        printf("%-8s %7zu ops: %s (Go: %s)\n", mx->name, t.n, f ? "FAILED" : "ok", ev);
        failed += f != 0;
        ran++;
        free(t.ops);
    }
    if (ran == 0)
        die("no mix named %s", only ? only : "");
    if (failed)
        fprintf(stderr, "seed %" PRIu64 ": %d mixes failed (rerun: --seed %" PRIu64 ")\n", seed,
                failed, seed);
    return failed ? 1 : 0;
}
