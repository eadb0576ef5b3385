/*
 * analyze.c - `mapguard analyze FILE|-`: read a crash and explain it.
 *
 * Inputs (docs/analyze.md has examples of each):
 *   - Go's crash output: `fatal error: <msg>` or `panic: <msg>`, then one
 *     block per goroutine, `goroutine <id> [<state>[, N minutes]...]:`,
 *     two lines per frame (`pkg.func(args)`, `\tfile:line +0xoff`) and a
 *     `created by` frame; a SIGQUIT dump (`SIGQUIT: quit`); or a plain
 *     dump of goroutine blocks with no header (debug.Stack, pprof
 *     goroutine?debug=2).
 *   - mapguard's own fatal report: `fatal error: <msg>`, a `map "name"
 *     0x...: count=...` line, then `thread <tid> [<state>]:` blocks whose
 *     frames are Go's two lines, raw `\tmodule+0xoff` lines or
 *     backtrace_symbols() lines; and its JSON report (one object with the
 *     OpenTelemetry attributes exception.type, exception.message,
 *     exception.stacktrace, thread.id, flat or as OTLP key/value pairs).
 *
 * The text is read as a stream, one line at a time: a line is kept up to
 * LINE_MAX_KEEP bytes (the rest is dropped), at most --max-bytes bytes are
 * read, and what is kept of the goroutines is bounded: GROUP_MAX groups of
 * identical stacks (a stack's identity is its state without the wait and
 * the func and file:line of each frame, hashed), CAND_MAX goroutines kept
 * whole as candidates for "involved".  JSON is the one exception: an input
 * whose first byte (after white space) is '{' is also kept whole, up to
 * JSON_MAX bytes, and parsed when the lines gave nothing.
 *
 * Exit status: 0 a crash (or a goroutine dump) was recognised and
 * explained; 1 the input is text but holds nothing recognisable; 2 bad
 * usage or bad input: unreadable, empty, binary, truncated (the partial
 * analysis is still printed), or larger than --max-bytes.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_KEEP (64u * 1024u)  /* longer lines are cut */
#define CHUNK (64u * 1024u)          /* read size; also the binary sniff */
#define JSON_MAX (16u * 1024u * 1024u)
#define DEFAULT_MAX_BYTES (256ull * 1024u * 1024u)
#define GROUP_MAX 4096               /* distinct stacks kept */
#define CAND_MAX 8                   /* running goroutines kept whole */
#define TOP_FRAMES 6                 /* frames kept per stack */
#define IDS_KEPT 5                   /* goroutine ids kept per group */
#define JSON_DEPTH 64
#define DEFAULT_LEAK_MIN 10          /* goroutines in one group to flag a leak */

#define FUNC_LEN 160
#define FILE_LEN 224
#define STATE_LEN 96

/* ------------------------------------------------------------------------ */
/* What a crash is: the table of known messages.                           */
/* ------------------------------------------------------------------------ */

typedef enum { SRC_NONE, SRC_GO, SRC_MG } an_source;

typedef struct {
    const char *id;      /* stable name in --json */
    const char *msg;     /* the message, or its prefix when prefix */
    bool prefix;
    bool map_race;       /* two parties touched one map */
    const char *cause;   /* %s: "goroutines" or "threads" */
    const char *fix_go;
    const char *fix_mg;  /* NULL: not a mapguard message */
    const char *mg_type; /* mapguard's exception.type, if any */
} an_known;

static const an_known known[] = {
    {"concurrent-map-writes", "concurrent map writes", false, true,
     "concurrent map writes: two %s wrote one map at the same time",
     "guard the map with a sync.Mutex (a sync.RWMutex if reads dominate); use "
     "sync.Map for a read-mostly map whose keys are written once; or confine "
     "the map to one goroutine that owns it and takes updates over a channel",
     "create the map in a thread-safe mode (MG_RWLOCK, MG_SHARDED; "
     "MG_READMOSTLY for read-mostly keys; MG_ACTOR to confine it to one owner "
     "thread), or hold one mutex around every call on it",
     "mapguard.ConcurrentMapWrites"},
    {"concurrent-map-read-write", "concurrent map read and map write", false, true,
     "concurrent map read and map write: one of the %s read the map while another "
     "wrote it",
     "guard the map with a sync.RWMutex (RLock around reads, Lock around "
     "writes); sync.Map for read-mostly maps; or confine the map to one goroutine",
     "create the map in a thread-safe mode (MG_RWLOCK; MG_READMOSTLY or "
     "MG_SNAPSHOT when reads dominate), or guard every call with a pthread_rwlock",
     "mapguard.ConcurrentMapReadAndMapWrite"},
    {"concurrent-map-iteration-write", "concurrent map iteration and map write", false,
     true,
     "concurrent map iteration and map write: one of the %s ranged over the map while "
     "another wrote it",
     "hold the lock (RLock) for the whole range loop, or range over a copy taken "
     "under the lock; or confine the map to one goroutine",
     "create the map as MG_SNAPSHOT (a range sees one snapshot) or MG_RWLOCK, or "
     "hold the lock for the whole iteration, or iterate over a copy",
     "mapguard.ConcurrentMapIterationAndMapWrite"},
    {"nil-map", "assignment to entry in nil map", false, false,
     "assignment to entry in nil map: a write to a map that was never created "
     "(reads of a nil map return zero values; writes are fatal)",
     "make() the map before the first write: m = make(map[K]V), e.g. in the "
     "constructor of the struct that holds it",
     "create the map with mg_new() before the first write and check its result "
     "(NULL means the allocation failed)",
     "mapguard.NilMapAssignment"},
    {"freed-map", "use of freed map", false, false,
     "use of freed map: a call on a map after mg_free() released it", NULL,
     "stop every thread that uses the map (join it) before mg_free(), and set the "
     "pointer to NULL afterwards",
     "mapguard.UseOfFreedMap"},
    {"corrupted-map", "corrupted map header", false, false,
     "corrupted map header: the pointer does not lead to a live map (a wild or "
     "dangling pointer, or memory overwritten)",
     NULL,
     "run the program under AddressSanitizer (-fsanitize=address) to find the "
     "write that corrupted it or the stale pointer",
     "mapguard.CorruptedMapHeader"},
    {"wrong-key-kind", "wrong key kind for map", false, false,
     "wrong key kind for map: a u64-key call (mg_*_u64) on a byte-key map, or a "
     "byte-key call on a u64-key map",
     NULL,
     "use the calls that match the map's .key option (MG_KEY_U64: mg_*_u64; "
     "MG_KEY_BYTES: mg_put/mg_get/mg_del)",
     "mapguard.WrongKeyKind"},
    {"mapguard-internal", "mapguard internal error", false, false,
     "mapguard internal error: a bug in mapguard itself, not in the program", NULL,
     "report it with the whole report and the mapguard version",
     "mapguard.InternalError"},
    {"deadlock", "all goroutines are asleep - deadlock!", false, false,
     "deadlock: every goroutine is blocked (channel, mutex, WaitGroup) and none "
     "can wake the others",
     "read the blocked stacks below: a send or receive with no partner, a "
     "channel never closed, a WaitGroup whose Add and Done do not match",
     NULL, NULL},
    {"nil-dereference", "runtime error: invalid memory address or nil pointer "
     "dereference", true, false,
     "nil pointer dereference: a nil pointer was dereferenced (a nil *T, or a "
     "method called on a nil interface)",
     "check the value for nil where the first frame below uses it", NULL, NULL},
    {"index-out-of-range", "runtime error: index out of range", true, false,
     "index out of range: a slice or array index beyond its length",
     "check the index against len() where the first frame below indexes", NULL, NULL},
    {"send-on-closed-channel", "send on closed channel", false, false,
     "send on closed channel: a goroutine sent on a channel another one closed",
     "let only the sender close a channel, after its last send", NULL, NULL},
    {"close-of-closed-channel", "close of closed channel", false, false,
     "close of closed channel: a channel was closed twice",
     "close each channel in one place (sync.Once if several may)", NULL, NULL},
    {"negative-waitgroup", "sync: negative WaitGroup counter", false, false,
     "negative WaitGroup counter: Done was called more often than Add",
     "call Add before starting each goroutine, and Done once per Add", NULL, NULL},
    {"unlock-of-unlocked-mutex", "sync: unlock of unlocked mutex", false, false,
     "unlock of unlocked mutex: Unlock without a matching Lock",
     "pair every Unlock with a Lock (defer mu.Unlock() right after Lock)", NULL, NULL},
};
#define N_KNOWN (sizeof known / sizeof known[0])

/* ------------------------------------------------------------------------ */
/* Parsed state.                                                            */
/* ------------------------------------------------------------------------ */

typedef struct {
    char func[FUNC_LEN];
    char file[FILE_LEN];
    long line;
} an_frame;

typedef enum { BLK_NONE, BLK_GOROUTINE, BLK_THREAD } an_blk_kind;

/* One goroutine (or thread) block while it is read, and the copy kept of
 * a candidate. */
typedef struct {
    an_blk_kind kind;
    long long id;
    char state[STATE_LEN];      /* as printed */
    char state_base[STATE_LEN]; /* without ", N minutes" and "locked to thread" */
    long minutes;               /* -1: not printed */
    bool synthetic;             /* made up for a JSON stacktrace */
    uint64_t hash;
    int nframes;
    int ntop;
    an_frame top[TOP_FRAMES];
    an_frame pend;              /* a func line waiting for its location */
    bool has_pend;
    an_frame where;             /* first frame outside the runtime */
    int where_rank;             /* 0 none, 1 any frame, 2 library, 3 user */
    an_frame created;
    bool has_created, created_pend, created_runtime;
    bool unavailable;
    bool seen_api;              /* mapguard: an mg_ frame was seen */
} an_block;

typedef struct {
    uint64_t hash;
    an_blk_kind kind;
    long count;
    long waiting;               /* members blocked >= 1 minute */
    long min_minutes, max_minutes;
    char state_base[STATE_LEN];
    long long ids[IDS_KEPT];
    int nids;
    int nframes;
    an_frame where;
    int where_rank;
    an_frame created;
    bool has_created;
    bool runtime_only;
    bool unavailable;
} an_group;

typedef struct {
    /* header */
    bool have_header;
    char header_kind[16];        /* "fatal error", "panic", "signal" */
    char msg[512];
    char detail[512];
    bool after_header_no_block;  /* for the detail line */
    /* mapguard map line */
    bool have_map;
    bool json_report;            /* read from mapguard's JSON report */
    char map_line[512];
    char map_name[128];
    char trace[128];             /* mapguard: the W3C traceparent */
    /* blocks */
    an_block cur;
    long blocks;                 /* goroutine + thread blocks */
    long go_blocks, mg_blocks;
    an_block crash;              /* the first block after the header */
    bool have_crash;
    an_block cand[CAND_MAX];
    int ncand;
    an_group *groups;
    size_t ngroups, groups_cap;
    long groups_dropped;         /* goroutines not grouped (GROUP_MAX) */
    int32_t *slots;              /* open addressing over groups */
    char goroot_src[FILE_LEN];   /* ".../src/", learned from runtime frames */
    /* input facts */
    unsigned long long bytes;
    unsigned long long lines;
    unsigned long long long_lines;
    unsigned long long nul_bytes;
    bool truncated;
    char trunc_why[160];
    bool oom;
} an_state;

typedef struct {
    bool json;
    long leak_min;
    unsigned long long max_bytes;
    int top;
    const char *path;
} an_opts;

/* ------------------------------------------------------------------------ */
/* Small string helpers.                                                    */
/* ------------------------------------------------------------------------ */

/* Copy at most n bytes of s into dst (cap bytes), replacing control bytes
 * with '?', so nothing read can move a terminal's cursor. */
static void keep(char *dst, size_t cap, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && s[i] && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[k++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    dst[k] = '\0';
}

static void keeps(char *dst, size_t cap, const char *s)
{
    keep(dst, cap, s, strlen(s));
}

static bool starts(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    h ^= 0xff; /* separator */
    h *= 0x100000001b3ull;
    return h;
}

/* ------------------------------------------------------------------------ */
/* Frames: which are the runtime's (or mapguard's) and which are the user's. */
/* ------------------------------------------------------------------------ */

static bool go_runtime_frame(const an_frame *f)
{
    return starts(f->func, "runtime.") || strcmp(f->func, "panic") == 0 ||
           strstr(f->file, "/src/runtime/") != NULL;
}

/* A Go standard library frame: under the GOROOT learned from runtime
 * frames, or (before that) a package path without a dot in its first
 * element whose file lies in .../src/<package path>/. */
static bool go_std_frame(const an_state *st, const an_frame *f)
{
    if (st->goroot_src[0] && starts(f->file, st->goroot_src))
        return true;
    const char *slash = strrchr(f->func, '/');
    const char *dot = strchr(slash ? slash : f->func, '.');
    if (!dot)
        return false;
    size_t plen = (size_t)(dot - f->func);
    const char *first_end = strchr(f->func, '/');
    size_t flen = first_end && first_end < dot ? (size_t)(first_end - f->func) : plen;
    if (memchr(f->func, '.', flen) || (plen == 4 && starts(f->func, "main")))
        return false;
    char pat[FUNC_LEN + 8];
    snprintf(pat, sizeof pat, "/src/%.*s/", (int)plen, f->func);
    return strstr(f->file, pat) != NULL;
}

static bool mg_internal_frame(const an_frame *f)
{
    static const char *const libc[] = {
        "abort", "raise", "gsignal", "__GI_raise", "__GI_abort", "pthread_kill",
        "__pthread_kill_implementation", "__pthread_kill_internal", "start_thread",
        "clone", "clone3", "__libc_start_main", "__libc_start_call_main", "_start",
        "backtrace", "report", "die", "report_stack", "out", "??"};
    if (!f->func[0] || starts(f->func, "mg_") || starts(f->func, "__") ||
        strstr(f->file, "libmapguard") || strstr(f->file, "libc.so") ||
        strstr(f->file, "libpthread") || starts(f->file, "./nptl/") ||
        starts(f->file, "../sysdeps/"))
        return true;
    for (size_t i = 0; i < sizeof libc / sizeof libc[0]; i++)
        if (strcmp(f->func, libc[i]) == 0)
            return true;
    return false;
}

static int frame_rank(const an_state *st, an_blk_kind kind, const an_frame *f)
{
    if (kind == BLK_THREAD)
        return mg_internal_frame(f) ? 1 : 3;
    if (go_runtime_frame(f))
        return 1;
    return go_std_frame(st, f) ? 2 : 3;
}

/* "file:line +0x9e fp=..." / "file:line" / "module+0x12" / "?? +0x1 (mod+0x2)" */
static void parse_location(an_frame *f, const char *s)
{
    s = skip_ws(s);
    size_t n = strcspn(s, " ");
    const char *colon = NULL;
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    f->line = 0;
    if (colon && colon + 1 < s + n && isdigit((unsigned char)colon[1])) {
        const char *d = colon + 1;
        while (d < s + n && isdigit((unsigned char)*d))
            d++;
        if (d == s + n) {
            char *e;
            errno = 0;
            long v = strtol(colon + 1, &e, 10);
            f->line = errno ? 0 : v;
            keep(f->file, sizeof f->file, s, (size_t)(colon - s));
            return;
        }
    }
    if (n == 2 && starts(s, "??")) { /* "?? +0x1a (module+0x1234)" */
        const char *open = strchr(s, '(');
        if (open) {
            size_t m = strcspn(open + 1, ")");
            keep(f->file, sizeof f->file, open + 1, m);
            return;
        }
    }
    keep(f->file, sizeof f->file, s, n);
}

/* A function line: "pkg.func(args)" (args dropped), or a backtrace_symbols
 * line "module(sym+0x3a) [0x55...]".  Returns false when the line is not a
 * frame (the name holds a space: "exit status 2"). */
static bool parse_func(an_frame *f, const char *s, bool *complete)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    *complete = false;
    memset(f, 0, sizeof *f);
    const char *br = n > 0 && s[n - 1] == ']' ? strstr(s, " [0x") : NULL;
    if (br) {
        const char *open = memchr(s, '(', (size_t)(br - s));
        if (open) {
            const char *close = memchr(open, ')', (size_t)(br - open));
            size_t m = close ? (size_t)(close - open - 1) : 0;
            const char *plus = memchr(open + 1, '+', m);
            keep(f->func, sizeof f->func, open + 1, plus ? (size_t)(plus - open - 1) : m);
            keep(f->file, sizeof f->file, s, (size_t)(open - s));
        } else {
            keep(f->file, sizeof f->file, s, (size_t)(br - s));
        }
        *complete = true;
        return true;
    }
    size_t name_end = n;
    if (n > 0 && s[n - 1] == ')') {
        int depth = 0;
        for (size_t i = n; i > 0; i--) {
            if (s[i - 1] == ')')
                depth++;
            else if (s[i - 1] == '(' && --depth == 0) {
                name_end = i - 1;
                break;
            }
        }
    }
    if (name_end == 0 || memchr(s, ' ', name_end))
        return false;
    keep(f->func, sizeof f->func, s, name_end);
    return true;
}

/* ------------------------------------------------------------------------ */
/* Blocks and groups.                                                       */
/* ------------------------------------------------------------------------ */

static void add_frame(an_state *st, an_block *b, const an_frame *f)
{
    /* Learn GOROOT from the runtime's own files. */
    if (b->kind == BLK_GOROUTINE && !st->goroot_src[0] && starts(f->func, "runtime.")) {
        const char *r = strstr(f->file, "/src/runtime/");
        if (r)
            keep(st->goroot_src, sizeof st->goroot_src, f->file, (size_t)(r - f->file) + 5);
    }
    b->hash = fnv(b->hash, f->func);
    b->hash = fnv(b->hash, f->file);
    char ln[24];
    snprintf(ln, sizeof ln, "%ld", f->line);
    b->hash = fnv(b->hash, ln);
    if (b->ntop < TOP_FRAMES)
        b->top[b->ntop++] = *f;
    b->nframes++;
    int r = frame_rank(st, b->kind, f);
    if (b->kind == BLK_THREAD && starts(f->func, "mg_") && !b->seen_api) {
        /* mapguard's own static functions sit above the first mg_ call
         * (evacuate, grow_work): whatever came before it is internal. */
        b->seen_api = true;
        if (b->where_rank > 1)
            b->where_rank = 1;
        b->where = *f;
    }
    if (r > b->where_rank) {
        if (b->where_rank < 3)
            b->where = *f;
        b->where_rank = r;
    }
}

static void flush_pend(an_state *st, an_block *b)
{
    if (b->has_pend) {
        add_frame(st, b, &b->pend);
        b->has_pend = false;
    }
}

static bool grow_groups(an_state *st)
{
    if (st->ngroups < st->groups_cap)
        return true;
    size_t cap = st->groups_cap ? st->groups_cap * 2 : 64;
    if (cap > GROUP_MAX)
        cap = GROUP_MAX;
    if (cap <= st->ngroups)
        return false;
    an_group *g = realloc(st->groups, cap * sizeof *g);
    if (!g) {
        st->oom = true;
        return false;
    }
    st->groups = g;
    st->groups_cap = cap;
    return true;
}

#define SLOTS (GROUP_MAX * 2)

static void group_block(an_state *st, const an_block *b)
{
    if (!st->slots) {
        st->slots = malloc(SLOTS * sizeof *st->slots);
        if (!st->slots) {
            st->oom = true;
            st->groups_dropped++;
            return;
        }
        for (size_t i = 0; i < SLOTS; i++)
            st->slots[i] = -1;
    }
    uint64_t h = fnv(b->hash, b->state_base);
    size_t i = (size_t)(h % SLOTS);
    while (st->slots[i] >= 0 && st->groups[st->slots[i]].hash != h)
        i = (i + 1) % SLOTS;
    an_group *g;
    if (st->slots[i] < 0) {
        if (!grow_groups(st)) {
            st->groups_dropped++;
            return;
        }
        g = &st->groups[st->ngroups];
        memset(g, 0, sizeof *g);
        g->hash = h;
        g->kind = b->kind;
        g->min_minutes = LONG_MAX;
        g->max_minutes = -1;
        keeps(g->state_base, sizeof g->state_base, b->state_base);
        g->nframes = b->nframes;
        g->where = b->where;
        g->where_rank = b->where_rank;
        g->created = b->created;
        g->has_created = b->has_created;
        g->runtime_only = b->where_rank <= 1 && (!b->has_created || b->created_runtime);
        g->unavailable = b->unavailable && b->nframes == 0;
        st->slots[i] = (int32_t)st->ngroups++;
    } else {
        g = &st->groups[st->slots[i]];
    }
    g->count++;
    if (b->minutes >= 0) {
        if (b->minutes < g->min_minutes)
            g->min_minutes = b->minutes;
        if (b->minutes > g->max_minutes)
            g->max_minutes = b->minutes;
        if (b->minutes >= 1)
            g->waiting++;
    }
    if (g->nids < IDS_KEPT)
        g->ids[g->nids++] = b->id;
}

/* A SIGQUIT dump: every goroutine, none of them crashed. */
static bool is_dump(const an_state *st)
{
    return strcmp(st->header_kind, "signal") == 0 && starts(st->msg, "SIGQUIT");
}

static void finish_block(an_state *st, bool at_eof)
{
    an_block *b = &st->cur;
    if (b->kind == BLK_NONE)
        return;
    /* Go prints a location line after every function line, and at least
     * one frame (or "stack unavailable"): anything less at the end of the
     * input is a cut log.  A mapguard thread may have no frames. */
    bool cut = b->has_pend || b->created_pend || (b->nframes == 0 && !b->unavailable);
    flush_pend(st, b);
    b->created_pend = false;
    if (at_eof && b->kind == BLK_GOROUTINE && cut) {
        st->truncated = true;
        snprintf(st->trunc_why, sizeof st->trunc_why,
                 "the input ends inside goroutine %lld's stack", b->id);
    }
    if (b->synthetic && b->nframes == 0) {
        b->kind = BLK_NONE;
        return;
    }
    st->blocks++;
    if (b->kind == BLK_GOROUTINE)
        st->go_blocks++;
    else
        st->mg_blocks++;
    if (st->have_header && !st->have_crash && !is_dump(st)) {
        st->crash = *b;
        st->have_crash = true;
    } else if (st->ncand < CAND_MAX &&
               (b->kind == BLK_THREAD ||
                ((strcmp(b->state_base, "running") == 0 ||
                  strcmp(b->state_base, "runnable") == 0) &&
                 (b->where_rank >= 2 || b->unavailable)))) {
        st->cand[st->ncand++] = *b;
    }
    group_block(st, b);
    b->kind = BLK_NONE;
}

/* "goroutine 17 [running]:" / "goroutine 1 gp=0x.. m=0 [chan receive, 5
 * minutes, locked to thread]:" / "thread 4242 [writing map 0x.. "m"]" */
static bool parse_block_header(an_state *st, const char *s, an_blk_kind kind)
{
    const char *p = s + (kind == BLK_GOROUTINE ? 10 : 7);
    if (!isdigit((unsigned char)*p))
        return false;
    char *e;
    errno = 0;
    long long id = strtoll(p, &e, 10);
    if (errno || (*e != ' ' && *e != '\0' && *e != ':'))
        return false;
    /* the state in brackets ends the line, with Go's ':' */
    const char *open = strchr(e, '[');
    const char *close = open ? strrchr(open, ']') : NULL;
    if (!open || !close || strspn(close + 1, ": \t") != strlen(close + 1))
        return false;
    finish_block(st, false);
    an_block *b = &st->cur;
    memset(b, 0, sizeof *b);
    b->kind = kind;
    b->id = id;
    b->minutes = -1;
    b->hash = 0xcbf29ce484222325ull;
    {
        keep(b->state, sizeof b->state, open + 1, (size_t)(close - open - 1));
        /* split on ", ": the first part is the state, then "N minutes",
         * "locked to thread" (Go); mapguard's states keep their commas. */
        size_t base_len = strlen(b->state);
        if (kind == BLK_GOROUTINE) {
            const char *c = strstr(b->state, ", ");
            if (c)
                base_len = (size_t)(c - b->state);
            for (; c; c = strstr(c + 2, ", ")) {
                const char *q = c + 2;
                if (isdigit((unsigned char)*q) && strstr(q, " minute") ==
                                                      q + strspn(q, "0123456789"))
                    b->minutes = strtol(q, NULL, 10);
            }
        } else {
            const char *c = strstr(b->state, ", detected");
            if (c)
                base_len = (size_t)(c - b->state);
        }
        keep(b->state_base, sizeof b->state_base, b->state, base_len);
    }
    st->after_header_no_block = false;
    return true;
}

static void start_synthetic(an_state *st, long long id)
{
    finish_block(st, false);
    an_block *b = &st->cur;
    memset(b, 0, sizeof *b);
    b->kind = BLK_THREAD;
    b->id = id;
    b->minutes = -1;
    b->synthetic = true;
    b->hash = 0xcbf29ce484222325ull;
    keeps(b->state, sizeof b->state, "running, detected the misuse");
    keeps(b->state_base, sizeof b->state_base, "running");
}

/* ------------------------------------------------------------------------ */
/* Lines.                                                                   */
/* ------------------------------------------------------------------------ */

static void set_header(an_state *st, const char *kind, const char *msg)
{
    if (st->have_header)
        return;
    finish_block(st, false);
    st->have_header = true;
    keeps(st->header_kind, sizeof st->header_kind, kind);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == ' ' || msg[n - 1] == '\t'))
        n--;
    if (n >= 12 && memcmp(msg + n - 12, " [recovered]", 12) == 0)
        n -= 12;
    keep(st->msg, sizeof st->msg, msg, n);
    st->after_header_no_block = true;
}

static void map_line(an_state *st, const char *s)
{
    st->have_map = true;
    keeps(st->map_line, sizeof st->map_line, s);
    const char *q = strchr(s, '"');
    if (q) {
        const char *q2 = strchr(q + 1, '"');
        if (q2)
            keep(st->map_name, sizeof st->map_name, q + 1, (size_t)(q2 - q - 1));
    }
}

static void process_line(an_state *st, char *s)
{
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '\r')
        s[--n] = '\0';
    st->lines++;
    an_block *b = &st->cur;

    if (starts(s, "goroutine ") && parse_block_header(st, s, BLK_GOROUTINE))
        return;
    if (starts(s, "thread ") && parse_block_header(st, s, BLK_THREAD))
        return;
    if (starts(s, "fatal error: ")) {
        set_header(st, "fatal error", s + 13);
        return;
    }
    if (starts(s, "panic: ")) {
        set_header(st, "panic", s + 7);
        return;
    }
    if (starts(s, "SIG")) {
        const char *c = strstr(s, ": ");
        size_t k = strspn(s + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        if (c && c == s + 3 + k && k > 0) {
            set_header(st, "signal", s);
            return;
        }
    }
    if (st->have_header && st->blocks == 0 &&
        (starts(s, "map \"") || starts(s, "map 0x") || starts(s, "map: "))) {
        finish_block(st, false);
        map_line(st, s);
        return;
    }
    if (s[0] == '\0') {
        finish_block(st, false);
        return;
    }
    if (b->kind == BLK_NONE && st->have_header && starts(s, "trace: ")) {
        keeps(st->trace, sizeof st->trace, s + 7);
        return;
    }
    if (b->kind != BLK_NONE) {
        const char *t = skip_ws(s);
        if (starts(t, "#") && isdigit((unsigned char)t[1])) { /* "#0  frame" */
            t++;
            while (isdigit((unsigned char)*t))
                t++;
            t = skip_ws(t);
        }
        if (starts(t, "created by ")) {
            flush_pend(st, b);
            memset(&b->created, 0, sizeof b->created);
            const char *name = t + 11;
            size_t m = strlen(name);
            const char *in = strstr(name, " in goroutine ");
            if (in)
                m = (size_t)(in - name);
            keep(b->created.func, sizeof b->created.func, name, m);
            b->has_created = true;
            b->created_pend = true;
            b->created_runtime = b->kind == BLK_GOROUTINE && go_runtime_frame(&b->created);
            b->hash = fnv(b->hash, b->created.func);
            return;
        }
        if (strstr(t, "stack unavailable") || starts(t, "(stack ") || starts(t, "...")) {
            b->unavailable = b->unavailable || !starts(t, "...");
            return;
        }
        if (s[0] == '\t' || s[0] == ' ') {
            if (b->created_pend) {
                parse_location(&b->created, t);
                b->created_pend = false;
                if (b->kind == BLK_GOROUTINE && go_runtime_frame(&b->created))
                    b->created_runtime = true;
                b->hash = fnv(b->hash, b->created.file);
                return;
            }
            if (b->has_pend) {
                parse_location(&b->pend, t);
                flush_pend(st, b);
                return;
            }
            /* a raw "\tmodule+0xoff" frame with no function line */
            an_frame f;
            memset(&f, 0, sizeof f);
            parse_location(&f, t);
            add_frame(st, b, &f);
            return;
        }
        an_frame f;
        bool complete;
        if (parse_func(&f, t, &complete)) {
            flush_pend(st, b);
            if (complete) {
                add_frame(st, b, &f);
            } else {
                b->pend = f;
                b->has_pend = true;
            }
            return;
        }
        finish_block(st, false); /* not a frame: the block is over */
    }
    if (st->have_header && st->after_header_no_block && !st->detail[0]) {
        const char *t = skip_ws(s);
        if (*t)
            keeps(st->detail, sizeof st->detail, t);
    }
}

/* ------------------------------------------------------------------------ */
/* The JSON report.                                                         */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *p, *end;
    int depth;
    bool eof; /* ran out of input: truncated */
    bool bad;
    char *type, *message, *stacktrace, *thread_id, *map_name, *detail, *trace;
} an_json;

static void jws(an_json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool jfail(an_json *j)
{
    if (j->p >= j->end)
        j->eof = true;
    else
        j->bad = true;
    return false;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool jhex4(an_json *j, unsigned *v)
{
    if (j->end - j->p < 4) {
        j->p = j->end;
        return jfail(j);
    }
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexv(j->p[i]);
        if (h < 0)
            return jfail(j);
        *v = *v * 16 + (unsigned)h;
    }
    j->p += 4;
    return true;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string at j->p (on its '"').  With out, the unescaped value is
 * malloc'd there (NUL bytes become '?'). */
static bool jstring(an_json *j, char **out)
{
    if (j->p >= j->end || *j->p != '"')
        return jfail(j);
    j->p++;
    const char *start = j->p;
    /* The unescaped text is never longer than the escaped one. */
    char *o = NULL;
    size_t k = 0;
    if (out) {
        const char *q = start;
        while (q < j->end && *q != '"')
            q += (*q == '\\' && q + 1 < j->end) ? 2 : 1;
        o = malloc((size_t)(q - start) + 4);
        if (!o)
            return jfail(j);
    }
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if ((unsigned char)c < 0x20) {
            free(o);
            j->p--;
            return jfail(j);
        }
        if (c != '\\') {
            if (o)
                o[k++] = c;
            continue;
        }
        if (j->p >= j->end)
            break;
        char e = *j->p++;
        unsigned cp;
        switch (e) {
        case '"': case '\\': case '/': cp = (unsigned char)e; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (!jhex4(j, &cp)) {
                free(o);
                return false;
            }
            if (cp >= 0xd800 && cp < 0xdc00 && j->end - j->p >= 6 && j->p[0] == '\\' &&
                j->p[1] == 'u') {
                unsigned lo;
                j->p += 2;
                if (!jhex4(j, &lo)) {
                    free(o);
                    return false;
                }
                cp = (lo >= 0xdc00 && lo < 0xe000)
                         ? 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00)
                         : 0xfffd;
            } else if (cp >= 0xd800 && cp < 0xe000) {
                cp = 0xfffd;
            }
            break;
        default:
            free(o);
            j->p--;
            return jfail(j);
        }
        if (o) {
            if (cp == 0)
                cp = '?';
            k += put_utf8(o + k, cp);
        }
    }
    if (j->p >= j->end) {
        free(o);
        return jfail(j);
    }
    j->p++; /* the closing quote */
    if (o) {
        o[k] = '\0';
        *out = o;
    }
    return true;
}

static char **jslot(an_json *j, const char *key)
{
    if (!key)
        return NULL;
    if (strcmp(key, "exception.type") == 0)
        return &j->type;
    if (strcmp(key, "exception.message") == 0)
        return &j->message;
    if (strcmp(key, "exception.stacktrace") == 0)
        return &j->stacktrace;
    if (strcmp(key, "thread.id") == 0)
        return &j->thread_id;
    if (strcmp(key, "mapguard.map.name") == 0)
        return &j->map_name;
    if (strcmp(key, "mapguard.fatal.detail") == 0)
        return &j->detail;
    if (strcmp(key, "mapguard.traceparent") == 0)
        return &j->trace;
    return NULL;
}

static bool jvalue(an_json *j, const char *key);

static bool jobject(an_json *j, const char *ctx)
{
    j->p++; /* '{' */
    jws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return true;
    }
    char *pair_key = NULL; /* OTLP: {"key": K, "value": {"stringValue": V}} */
    for (;;) {
        jws(j);
        char *name = NULL;
        if (!jstring(j, &name))
            break;
        jws(j);
        if (j->p >= j->end || *j->p != ':') {
            free(name);
            jfail(j);
            break;
        }
        j->p++;
        jws(j);
        const char *eff = name;
        if (strcmp(name, "value") == 0 && pair_key)
            eff = pair_key;
        else if (ctx && strlen(name) > 5 && strcmp(name + strlen(name) - 5, "Value") == 0)
            eff = ctx;
        bool ok;
        if (strcmp(name, "key") == 0 && j->p < j->end && *j->p == '"' && !pair_key) {
            ok = jstring(j, &pair_key);
        } else {
            ok = jvalue(j, eff);
        }
        free(name);
        if (!ok)
            break;
        jws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            free(pair_key);
            return true;
        }
        jfail(j);
        break;
    }
    free(pair_key);
    return false;
}

static bool jvalue(an_json *j, const char *key)
{
    jws(j);
    if (j->p >= j->end)
        return jfail(j);
    if (++j->depth > JSON_DEPTH) {
        j->bad = true;
        return false;
    }
    bool ok = true;
    char c = *j->p;
    if (c == '{') {
        ok = jobject(j, key);
    } else if (c == '[') {
        j->p++;
        jws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
        } else {
            for (;;) {
                if (!jvalue(j, key)) {
                    ok = false;
                    break;
                }
                jws(j);
                if (j->p < j->end && *j->p == ',') {
                    j->p++;
                    continue;
                }
                if (j->p < j->end && *j->p == ']') {
                    j->p++;
                    break;
                }
                ok = jfail(j);
                break;
            }
        }
    } else if (c == '"') {
        char **slot = jslot(j, key);
        char *v = NULL;
        ok = jstring(j, slot && !*slot ? &v : NULL);
        if (ok && v)
            *slot = v;
    } else {
        const char *s = j->p;
        while (j->p < j->end && strchr("+-0123456789.eEtruefalsn", *j->p))
            j->p++;
        size_t n = (size_t)(j->p - s);
        bool num = n > 0 && (isdigit((unsigned char)*s) || *s == '-');
        if (!(num || (n == 4 && (!memcmp(s, "true", 4) || !memcmp(s, "null", 4))) ||
              (n == 5 && !memcmp(s, "false", 5)))) {
            ok = jfail(j);
        } else if (num) {
            char **slot = jslot(j, key);
            if (slot && !*slot) {
                *slot = malloc(n + 1);
                if (*slot) {
                    memcpy(*slot, s, n);
                    (*slot)[n] = '\0';
                }
            }
        }
    }
    j->depth--;
    return ok;
}

static void json_free(an_json *j)
{
    free(j->type);
    free(j->message);
    free(j->stacktrace);
    free(j->thread_id);
    free(j->map_name);
    free(j->detail);
    free(j->trace);
}

/* Parse a JSON report into st.  Returns 0 (a report), 1 (JSON, but not a
 * report), 2 (not valid JSON; *eof when it ended too early). */
static int parse_json(an_state *st, const char *buf, size_t len, bool *eof)
{
    an_json j = {.p = buf, .end = buf + len};
    bool ok = jvalue(&j, NULL);
    if (ok) {
        jws(&j);
        if (j.p != j.end)
            ok = false; /* more than one object: a JSON-lines log, not a report */
    }
    *eof = j.eof;
    int rc;
    if (!ok) {
        rc = 2;
    } else if (!j.message && !j.type) {
        rc = 1;
    } else {
        rc = 0;
        long long tid = j.thread_id ? strtoll(j.thread_id, NULL, 10) : 0;
        const char *msg = j.message;
        for (size_t i = 0; !msg && i < N_KNOWN; i++)
            if (known[i].mg_type && strcmp(j.type, known[i].mg_type) == 0)
                msg = known[i].msg;
        set_header(st, "fatal error", msg ? msg : j.type);
        st->json_report = true;
        if (j.map_name)
            keeps(st->map_name, sizeof st->map_name, j.map_name);
        if (j.detail)
            keeps(st->detail, sizeof st->detail, j.detail);
        if (j.trace)
            keeps(st->trace, sizeof st->trace, j.trace);
        if (j.stacktrace) {
            start_synthetic(st, tid);
            char *s = j.stacktrace;
            while (s) {
                char *nl = strchr(s, '\n');
                if (nl)
                    *nl = '\0';
                process_line(st, s);
                s = nl ? nl + 1 : NULL;
            }
            finish_block(st, false);
        }
    }
    json_free(&j);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Explaining.                                                              */
/* ------------------------------------------------------------------------ */

typedef struct {
    an_source src;
    const an_known *k;
    const char *kind_id;
    char cause[640];
    const char *fix;
    const an_block *involved[1 + CAND_MAX];
    const char *role[1 + CAND_MAX];
    int ninv;
    an_group **sorted;
    size_t nsorted;
    long leaks;
} an_result;

static const an_known *lookup(const char *msg)
{
    for (size_t i = 0; i < N_KNOWN; i++) {
        const an_known *k = &known[i];
        if (k->prefix ? starts(msg, k->msg) : strcmp(msg, k->msg) == 0)
            return k;
    }
    return NULL;
}

static bool chan_state(const char *s)
{
    return starts(s, "chan receive") || starts(s, "chan send") || starts(s, "select");
}

static bool is_leak(const an_group *g, long leak_min)
{
    return g->kind == BLK_GOROUTINE && chan_state(g->state_base) && g->waiting >= leak_min;
}

static int cmp_group(const void *a, const void *b)
{
    const an_group *x = *(an_group *const *)a, *y = *(an_group *const *)b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    if (x->runtime_only != y->runtime_only)
        return x->runtime_only ? 1 : -1;
    return x->ids[0] < y->ids[0] ? -1 : x->ids[0] > y->ids[0];
}

static void explain(an_state *st, const an_opts *o, an_result *r)
{
    memset(r, 0, sizeof *r);
    r->src = st->mg_blocks > 0 || st->have_map || st->json_report ? SRC_MG
             : st->go_blocks > 0               ? SRC_GO
                                               : SRC_NONE;
    const char *who = r->src == SRC_MG ? "threads" : "goroutines";
    if (st->have_header && strcmp(st->header_kind, "signal") != 0) {
        r->k = lookup(st->msg);
        if (r->src == SRC_NONE) /* no stacks: GOTRACEBACK=none or the JSON */
            r->src = r->k && !r->k->fix_go ? SRC_MG : SRC_GO;
        if (r->k) {
            r->kind_id = r->k->id;
            snprintf(r->cause, sizeof r->cause, r->k->cause, who);
            r->fix = r->src == SRC_MG && r->k->fix_mg ? r->k->fix_mg
                     : r->k->fix_go                   ? r->k->fix_go
                                                      : r->k->fix_mg;
        } else {
            bool panic = strcmp(st->header_kind, "panic") == 0;
            r->kind_id = panic ? "go-panic" : "fatal-error";
            snprintf(r->cause, sizeof r->cause, "%s: %s (not a map misuse)",
                     panic ? "a Go panic" : "a fatal error", st->msg);
            r->fix = "start at the first frame of the crashing goroutine below";
        }
    } else if (st->have_header && st->blocks > 0 && !is_dump(st)) {
        r->kind_id = "signal";
        snprintf(r->cause, sizeof r->cause,
                 "the process died of a signal: %s (Go prints this for a fault outside "
                 "Go code, e.g. in cgo, or for a signal it does not handle)",
                 st->msg);
        r->fix = "start at the first goroutine below and any C code it called";
        if (r->src == SRC_NONE)
            r->src = SRC_GO;
    } else if (st->have_header && st->blocks > 0) {
        r->kind_id = "goroutine-dump";
        snprintf(r->cause, sizeof r->cause,
                 "a goroutine dump (%s), not a crash: the process was asked to print "
                 "its goroutines",
                 st->msg);
        if (r->src == SRC_NONE)
            r->src = SRC_GO;
    } else if (st->blocks > 0) {
        r->kind_id = "goroutine-dump";
        snprintf(r->cause, sizeof r->cause,
                 "a %s dump with no crash line (debug.Stack, pprof debug=2, or a cut "
                 "log)",
                 r->src == SRC_MG ? "thread" : "goroutine");
    }
    /* involved: the crashing goroutine, then the likely other party */
    if (st->have_crash) {
        const char *role = "crashed";
        if (r->k && r->k->map_race)
            role = "detected the misuse";
        else if (r->k && strcmp(r->k->id, "deadlock") == 0)
            role = "blocked, as all are";
        else if (strcmp(r->kind_id ? r->kind_id : "", "signal") == 0)
            role = "got the signal";
        r->involved[r->ninv] = &st->crash;
        r->role[r->ninv++] = role;
    }
    if (r->k && r->k->map_race) {
        const char *other = strstr(r->k->id, "writes") ? "probably the other writer"
                                                       : "probably the other party";
        /* same function as the crash first, then the rest */
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < st->ncand && r->ninv < 3; i++) {
                bool same = st->have_crash &&
                            strcmp(st->cand[i].where.func, st->crash.where.func) == 0;
                if ((pass == 0) != same)
                    continue;
                r->involved[r->ninv] = &st->cand[i];
                r->role[r->ninv++] =
                    st->cand[i].kind == BLK_THREAD ? "the other party" : other;
            }
    }
    if (st->ngroups) {
        r->sorted = malloc(st->ngroups * sizeof *r->sorted);
        if (r->sorted) {
            for (size_t i = 0; i < st->ngroups; i++)
                r->sorted[i] = &st->groups[i];
            qsort(r->sorted, st->ngroups, sizeof *r->sorted, cmp_group);
            r->nsorted = st->ngroups;
        }
    }
    for (size_t i = 0; i < st->ngroups; i++)
        r->leaks += is_leak(&st->groups[i], o->leak_min);
}

/* ------------------------------------------------------------------------ */
/* Output.                                                                  */
/* ------------------------------------------------------------------------ */

static void text_frame(const an_frame *f)
{
    printf("%s", f->func[0] ? f->func : "??");
    if (f->file[0]) {
        printf("  %s", f->file);
        if (f->line)
            printf(":%ld", f->line);
    }
}

static void text_state(const char *base, long lo, long hi)
{
    printf("[%s", base);
    if (hi >= 0 && lo != LONG_MAX) {
        if (lo == hi)
            printf(", %ld minutes", hi);
        else
            printf(", %ld-%ld minutes", lo, hi);
    }
    printf("]");
}

static void print_text(const an_state *st, const an_opts *o, const an_result *r)
{
    const char *unit = r->src == SRC_MG ? "thread" : "goroutine";
    printf("%s crash report", r->src == SRC_MG ? "mapguard" : "Go");
    if (st->have_header)
        printf(": %s: %s", st->header_kind, st->msg);
    printf("\n\nroot cause: %s\n", r->cause);
    if (st->detail[0])
        printf("  detail: %s\n", st->detail);
    if (st->have_map)
        printf("  %s\n", st->map_line);
    else if (st->map_name[0])
        printf("  map: \"%s\"\n", st->map_name);
    if (st->trace[0])
        printf("  trace: %s\n", st->trace);
    if (r->k && r->k->map_race)
        printf("  (detection is best effort: the check caught one side of the race in "
               "the act)\n");
    if (r->ninv) {
        printf("\ninvolved:\n");
        for (int i = 0; i < r->ninv; i++) {
            const an_block *b = r->involved[i];
            printf("  %s %lld [%s] - %s\n", b->kind == BLK_THREAD ? "thread" : "goroutine",
                   b->id, b->state, r->role[i]);
            if (b->where_rank) {
                printf("    at ");
                text_frame(&b->where);
                printf("\n");
            } else if (b->unavailable) {
                printf("    (stack unavailable: it was running on another thread)\n");
            }
            if (b->has_created) {
                printf("    created by ");
                text_frame(&b->created);
                printf("\n");
            }
        }
    }
    if (r->fix)
        printf("\nfix: %s\n", r->fix);
    if (r->nsorted && r->src != SRC_MG) { /* mapguard prints two threads at most */
        printf("\n%ss: %ld in %zu group%s of identical stacks", unit, st->blocks,
               st->ngroups, st->ngroups == 1 ? "" : "s");
        if (st->groups_dropped)
            printf(" (%ld more not grouped: over %d groups)", st->groups_dropped, GROUP_MAX);
        printf("\n");
        size_t shown = r->nsorted < (size_t)o->top ? r->nsorted : (size_t)o->top;
        for (size_t i = 0; i < shown; i++) {
            const an_group *g = r->sorted[i];
            printf("  %ld %s%s ", g->count, unit, g->count == 1 ? "" : "s");
            text_state(g->state_base, g->min_minutes, g->max_minutes);
            printf(": ");
            if (g->where_rank)
                text_frame(&g->where);
            else
                printf(g->unavailable ? "(stack unavailable)" : "(no frames)");
            if (g->has_created) {
                printf("  created by ");
                text_frame(&g->created);
            }
            printf("\n");
        }
        if (shown < r->nsorted)
            printf("  ... %zu more groups (--top N shows more)\n", r->nsorted - shown);
    }
    for (size_t i = 0; i < r->nsorted; i++) {
        const an_group *g = r->sorted[i];
        if (!is_leak(g, o->leak_min))
            continue;
        printf("\nLEAK? %ld goroutines blocked on [%s] for ", g->waiting, g->state_base);
        if (g->min_minutes == g->max_minutes)
            printf("%ld minutes at ", g->max_minutes);
        else
            printf("%ld-%ld minutes at ", g->min_minutes, g->max_minutes);
        text_frame(&g->where);
        printf("\n");
        if (g->has_created) {
            printf("  created by ");
            text_frame(&g->created);
            printf("\n");
        }
        printf("  goroutines parked for minutes on one channel operation usually never "
               "wake: nothing sends, or the channel is never closed. Give them a way "
               "out (close the channel, select on ctx.Done()).\n");
    }
}

/* A JSON string: escapes, and invalid UTF-8 as U+FFFD. */
static void jout(const char *s)
{
    putchar('"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            putchar(c);
            p++;
        } else {
            int n = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
            bool ok = n > 0 && c < 0xf5;
            for (int i = 1; ok && i < n; i++)
                ok = (p[i] & 0xc0) == 0x80;
            if (ok && n == 3)
                ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
            if (ok && n == 4)
                ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
            if (ok) {
                fwrite(p, 1, (size_t)n, stdout);
                p += n;
            } else {
                printf("\\ufffd");
                p++;
            }
        }
    }
    putchar('"');
}

static void json_frame(const char *name, const an_frame *f)
{
    printf("\"%s\": {\"func\": ", name);
    jout(f->func);
    printf(", \"file\": ");
    jout(f->file);
    printf(", \"line\": %ld}", f->line);
}

static void print_json(const an_state *st, const an_opts *o, const an_result *r,
                       const char *error)
{
    printf("{\"ok\": %s", error ? "false" : "true");
    printf(", \"source\": \"%s\"",
           r->src == SRC_MG ? "mapguard" : r->src == SRC_GO ? "go" : "unknown");
    printf(", \"kind\": ");
    jout(r->kind_id ? r->kind_id : "");
    printf(", \"header\": ");
    jout(st->header_kind);
    printf(", \"message\": ");
    jout(st->msg);
    printf(", \"cause\": ");
    jout(r->cause);
    printf(", \"detail\": ");
    jout(st->detail);
    printf(", \"map\": ");
    jout(st->have_map ? st->map_line : st->map_name);
    printf(", \"trace\": ");
    jout(st->trace);
    printf(", \"fix\": ");
    jout(r->fix ? r->fix : "");
    printf(",\n \"involved\": [");
    for (int i = 0; i < r->ninv; i++) {
        const an_block *b = r->involved[i];
        printf("%s\n  {\"%s\": %lld, \"state\": ", i ? "," : "",
               b->kind == BLK_THREAD ? "thread" : "goroutine", b->id);
        jout(b->state);
        printf(", \"role\": ");
        jout(r->role[i]);
        printf(", \"stack_unavailable\": %s, ",
               b->unavailable && b->nframes == 0 ? "true" : "false");
        json_frame("at", &b->where);
        if (b->has_created) {
            printf(", ");
            json_frame("created_by", &b->created);
        }
        printf("}");
    }
    printf("],\n \"unit\": \"%s\", \"stacks\": %ld, \"groups_total\": %zu, "
           "\"groups_dropped\": %ld,\n \"groups\": [",
           r->src == SRC_MG ? "thread" : "goroutine", st->blocks, st->ngroups,
           st->groups_dropped);
    size_t shown = r->nsorted < (size_t)o->top ? r->nsorted : (size_t)o->top;
    for (size_t i = 0; i < shown; i++) {
        const an_group *g = r->sorted[i];
        printf("%s\n  {\"count\": %ld, \"state\": ", i ? "," : "", g->count);
        jout(g->state_base);
        printf(", \"min_minutes\": %ld, \"max_minutes\": %ld, \"waiting\": %ld, "
               "\"leak\": %s, \"ids\": [",
               g->max_minutes >= 0 ? g->min_minutes : -1, g->max_minutes, g->waiting,
               is_leak(g, o->leak_min) ? "true" : "false");
        for (int k = 0; k < g->nids; k++)
            printf("%s%lld", k ? ", " : "", g->ids[k]);
        printf("], ");
        json_frame("at", &g->where);
        if (g->has_created) {
            printf(", ");
            json_frame("created_by", &g->created);
        }
        printf("}");
    }
    printf("],\n \"leaks\": %ld, \"leak_threshold\": %ld, \"truncated\": %s, "
           "\"bytes\": %llu, \"lines\": %llu, \"long_lines\": %llu",
           r->leaks, o->leak_min, st->truncated ? "true" : "false", st->bytes, st->lines,
           st->long_lines);
    printf(", \"error\": ");
    if (error)
        jout(error);
    else
        printf("null");
    printf("}\n");
}

/* ------------------------------------------------------------------------ */
/* The command.                                                             */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mapguard analyze [--json] [--top N] [--leak-threshold N]\n"
            "                        [--max-bytes N] FILE|-\n"
            "Read a crash (Go's fatal error or panic output, a goroutine dump, or\n"
            "mapguard's fatal report, text or JSON) and name the root cause, the\n"
            "goroutines or threads involved and the fix; group identical stacks and\n"
            "flag goroutine leaks.  docs/analyze.md has the details.\n"
            "  --json               one JSON object on stdout\n"
            "  --top N              groups of stacks to list (default 10)\n"
            "  --leak-threshold N   goroutines blocked for minutes on one channel\n"
            "                       operation that make a leak (default %d)\n"
            "  --max-bytes N        read at most N bytes (default %llu MiB)\n"
            "Exit status: 0 explained, 1 nothing recognisable, 2 bad usage or bad\n"
            "input (unreadable, empty, binary, truncated, over --max-bytes).\n",
            DEFAULT_LEAK_MIN, DEFAULT_MAX_BYTES >> 20);
}

static bool num_arg(const char *s, unsigned long long lo, unsigned long long hi,
                    unsigned long long *v)
{
    if (!s || !isdigit((unsigned char)*s))
        return false;
    char *e;
    errno = 0;
    unsigned long long x = strtoull(s, &e, 10);
    if (errno || *e || x < lo || x > hi)
        return false;
    *v = x;
    return true;
}

/* Fail before any analysis: report on stderr (and as JSON). */
static int fail_input(const an_opts *o, const char *fmt, const char *a)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a);
    fprintf(stderr, "mapguard analyze: %s\n", msg);
    if (o->json) {
        an_state st;
        memset(&st, 0, sizeof st);
        an_result r;
        memset(&r, 0, sizeof r);
        print_json(&st, o, &r, msg);
    }
    return 2;
}

typedef struct {
    char *line;        /* LINE_MAX_KEEP + 1 */
    size_t len;
    bool cut;
    char *jbuf;        /* the whole input while it may be JSON */
    size_t jlen;
    bool jmaybe, jdecided, jtoo_big;
    unsigned long long ctrl; /* control bytes in the first CHUNK */
    unsigned long long sniffed;
    long long first_bad;
    unsigned long long nonws; /* bytes other than white space */
} an_reader;

static void end_line(an_state *st, an_reader *rd)
{
    rd->line[rd->len] = '\0';
    if (rd->cut)
        st->long_lines++;
    process_line(st, rd->line);
    rd->len = 0;
    rd->cut = false;
}

static void feed(an_state *st, an_reader *rd, char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!strchr(" \t\r\n\f\v", c) || c == 0)
            rd->nonws++;
        if (c == 0) {
            st->nul_bytes++;
            p[i] = '?';
        }
        if (rd->sniffed < CHUNK) {
            rd->sniffed++;
            if (c == 0 || (c < 0x20 && !strchr("\t\n\r\f\v\x1b", c)) || c == 0x7f) {
                rd->ctrl++;
                if (rd->first_bad < 0)
                    rd->first_bad = (long long)(st->bytes + i);
            }
        }
    }
    if (!rd->jdecided) {
        size_t i = 0;
        while (i < n && strchr(" \t\r\n", p[i]))
            i++;
        if (i < n) {
            rd->jdecided = true;
            rd->jmaybe = p[i] == '{';
        }
    }
    if (rd->jmaybe && !rd->jtoo_big) {
        if (rd->jlen + n > JSON_MAX) {
            rd->jtoo_big = true;
            free(rd->jbuf);
            rd->jbuf = NULL;
        } else {
            char *nb = realloc(rd->jbuf, rd->jlen + n + 1);
            if (!nb) {
                rd->jtoo_big = true;
                free(rd->jbuf);
                rd->jbuf = NULL;
            } else {
                rd->jbuf = nb;
                memcpy(rd->jbuf + rd->jlen, p, n);
                rd->jlen += n;
                rd->jbuf[rd->jlen] = '\0';
            }
        }
    }
    st->bytes += n;
    while (n > 0) {
        char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        size_t room = LINE_MAX_KEEP - rd->len;
        size_t take = k < room ? k : room;
        memcpy(rd->line + rd->len, p, take);
        rd->len += take;
        if (take < k)
            rd->cut = true;
        if (!nl)
            break;
        end_line(st, rd);
        p += k + 1;
        n -= k + 1;
    }
}

int mg_cli_analyze(int argc, char **argv)
{
    an_opts o = {.leak_min = DEFAULT_LEAK_MIN, .max_bytes = DEFAULT_MAX_BYTES, .top = 10};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        unsigned long long v;
        if (strcmp(a, "--json") == 0) {
            o.json = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--top") == 0 && num_arg(i + 1 < argc ? argv[i + 1] : NULL,
                                                       1, 1000000, &v)) {
            o.top = (int)v;
            i++;
        } else if (strcmp(a, "--leak-threshold") == 0 &&
                   num_arg(i + 1 < argc ? argv[i + 1] : NULL, 1, 100000000, &v)) {
            o.leak_min = (long)v;
            i++;
        } else if (strcmp(a, "--max-bytes") == 0 &&
                   num_arg(i + 1 < argc ? argv[i + 1] : NULL, 1, ULLONG_MAX, &v)) {
            o.max_bytes = v;
            i++;
        } else if ((a[0] != '-' || strcmp(a, "-") == 0) && !o.path) {
            o.path = a;
        } else {
            fprintf(stderr, "mapguard analyze: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.path) {
        fprintf(stderr, "mapguard analyze: no input (a FILE, or - for stdin)\n");
        usage(stderr);
        return 2;
    }
    bool is_stdin = strcmp(o.path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(o.path, "rb");
    if (!f) {
        char m[PATH_MAX + 64];
        snprintf(m, sizeof m, "%s: %s", o.path, strerror(errno));
        return fail_input(&o, "%s", m);
    }

    an_state *st = calloc(1, sizeof *st);
    an_reader rd = {.first_bad = -1};
    rd.line = malloc(LINE_MAX_KEEP + 1);
    char *chunk = malloc(CHUNK);
    int rc = 2;
    if (!st || !rd.line || !chunk) {
        fprintf(stderr, "mapguard analyze: out of memory\n");
        goto out;
    }
    bool huge = false, read_err = false;
    int err = 0;
    for (;;) {
        size_t want = CHUNK;
        if (st->bytes + want > o.max_bytes)
            want = (size_t)(o.max_bytes - st->bytes);
        if (want == 0) {
            int c = getc(f);
            if (c != EOF)
                huge = true;
            break;
        }
        size_t n = fread(chunk, 1, want, f);
        if (n > 0)
            feed(st, &rd, chunk, n);
        if (n < want) {
            if (ferror(f)) {
                read_err = true;
                err = errno;
            }
            break;
        }
        if (rd.sniffed >= CHUNK && rd.ctrl * 10 > rd.sniffed)
            break; /* binary: stop early */
    }
    bool no_newline_at_end = rd.len > 0;
    if (rd.len > 0 || rd.cut)
        end_line(st, &rd);
    bool binary = rd.sniffed > 0 && (rd.ctrl * 10 > rd.sniffed ||
                                     (st->nul_bytes > 0 && !st->have_header && !st->blocks));

    char emsg[PATH_MAX + 160];
    const char *name = is_stdin ? "<stdin>" : o.path;
    if (read_err) {
        snprintf(emsg, sizeof emsg, "%s: read error: %s", name, strerror(err));
        rc = fail_input(&o, "%s", emsg);
        goto out;
    }
    if (rd.nonws == 0) {
        snprintf(emsg, sizeof emsg, "%s: empty input: expected a crash log or a mapguard "
                 "JSON report", name);
        rc = fail_input(&o, "%s", emsg);
        goto out;
    }
    if (binary) {
        snprintf(emsg, sizeof emsg,
                 "%s: binary input (%llu NUL and control bytes, the first at offset %lld): "
                 "expected a crash log (text) or a mapguard JSON report",
                 name, rd.ctrl, rd.first_bad);
        rc = fail_input(&o, "%s", emsg);
        goto out;
    }
    finish_block(st, true);
    if (!st->have_header && !st->blocks && rd.jmaybe) {
        if (rd.jtoo_big) {
            snprintf(emsg, sizeof emsg, "%s: JSON input larger than %u MiB", name,
                     JSON_MAX >> 20);
            rc = fail_input(&o, "%s", emsg);
            goto out;
        }
        bool eof = false;
        int jr = rd.jbuf ? parse_json(st, rd.jbuf, rd.jlen, &eof) : 2;
        if (jr == 2 && (eof || huge)) {
            st->truncated = true;
            snprintf(st->trunc_why, sizeof st->trunc_why, "the JSON report ends early");
        }
    }
    an_result r;
    explain(st, &o, &r);
    const char *error = NULL;
    if (huge) {
        snprintf(emsg, sizeof emsg,
                 "%s: input larger than --max-bytes (%llu bytes); analysed only the "
                 "first %llu bytes",
                 name, o.max_bytes, st->bytes);
        error = emsg;
    } else if (st->truncated) {
        snprintf(emsg, sizeof emsg, "%s: truncated input: %s%s", name, st->trunc_why,
                 no_newline_at_end ? " (no newline at the end)" : "");
        error = emsg;
    } else if (st->oom) {
        snprintf(emsg, sizeof emsg, "%s: out of memory while grouping stacks", name);
        error = emsg;
    }
    if (!r.kind_id) {
        if (!error) {
            snprintf(emsg, sizeof emsg,
                     "%s: nothing recognisable in %llu lines: no `fatal error:`, "
                     "`panic:`, goroutine or thread block, or mapguard JSON report",
                     name, st->lines);
            error = emsg;
        }
        rc = huge || st->truncated || st->oom ? 2 : 1;
        fprintf(stderr, "mapguard analyze: %s\n", error);
        if (o.json)
            print_json(st, &o, &r, error);
        else
            printf("no crash found\n");
    } else {
        if (o.json)
            print_json(st, &o, &r, error);
        else
            print_text(st, &o, &r);
        fflush(stdout);
        if (error)
            fprintf(stderr, "mapguard analyze: %s\n", error);
        rc = error ? 2 : 0;
    }
    free(r.sorted);
out:
    if (f && !is_stdin)
        fclose(f);
    free(chunk);
    free(rd.line);
    free(rd.jbuf);
    if (st) {
        free(st->groups);
        free(st->slots);
    }
    free(st);
    return rc;
}
