/*
 * trace.c - the growth timeline: grow, evacuation, shrink, promotion and
 * snapshot events of every map, as Chrome Trace Event JSON (the JSON Array
 * Format), which Perfetto (ui.perfetto.dev) and chrome://tracing open.
 * The `go tool trace` view of a map.  docs/tracing.md shows a file.
 *
 * Layout of a trace:
 *   - one process (pid = getpid()), named "mapguard: <program>";
 *   - one track per map: tid = a small number given in order of first
 *     event (1, 2, ...), named by an "M" thread_name event: the map's name,
 *     or "map 0x..." (its address) when unnamed;
 *   - a growth is a duration on its map's track: "B" at MG_EV_GROW_START /
 *     MG_EV_SHRINK (name "grow" or "shrink", args oldB, newB, kind
 *     double|same-size|shrink, entries), "E" at MG_EV_GROW_DONE (args B,
 *     entries, units evacuated).  A growth still running when the trace
 *     stops is closed there, with args.unfinished = true;
 *   - evacuation progress is a counter ("C") per map, named
 *     "evacuated <track name>", value fraction in [0, 1]: 0 at the start,
 *     then a sample each time the fraction of units evacuated crosses a
 *     multiple of 1/TR_STEPS, 0 again at the end.  So a growth writes at
 *     most TR_STEPS + 4 events, whatever its size;
 *   - promotions (MG_READMOSTLY) and snapshot publishes are instant events
 *     ("i", thread scope) named "promote" (args.entries) and "publish"
 *     (args.version); a fatal report is a process-scoped instant "fatal"
 *     (args.message), after which the file is finished at once.
 * Timestamps ("ts") are CLOCK_MONOTONIC in microseconds (nanosecond
 * digits after the point), the clock bpftrace's nsecs uses.
 *
 * Concurrency: the events come from the rare paths of every map of every
 * thread; one mutex orders them into a 64 KiB buffer that is written out
 * when full and when the trace stops.  Events test mg__trace_active (a
 * relaxed load) before calling in here; the truth is tr.on, under the
 * lock, so an event racing mg_trace_stop is either written or dropped,
 * never torn.
 *
 * Tracks are found by the map's address.  A map freed and another created
 * at the same address with the same name share a track; a different name
 * starts a new track (and closes any growth the old one left open).
 *
 * A trace ends by mg_trace_stop, at exit (atexit, registered on the first
 * start), or at a fatal report.
 *
 * Fork: a forked child writes nothing; the file is the parent's.  The
 * fork handlers (registry.c, installed by the first mg_trace_start) take
 * tr.lock before the fork, so no other thread's event can leave it held in
 * the child, and turn the trace off in the child.  The child never closes
 * tr.fd: the descriptor is the parent's (O_CLOEXEC drops it at exec), and
 * by the time a child's map logs an event that number may well be a file
 * of the child's own (close every descriptor, then open a log).  Its
 * buffered bytes are dropped, never written twice.
 */
#include "internal.h"
#include "obs/events.h"
#include "obs/obs.h"
#include "obs/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef MG_NO_OBSERVE

atomic_int mg__trace_active;

enum {
    TR_BUF = 64 * 1024,    /* write buffer */
    TR_EVENT_MAX = 1024,   /* room one event needs (labels are bounded) */
    TR_LABEL_MAX = 256,    /* escaped name bytes kept for a track */
    TR_STEPS = 64,         /* evacuation counter resolution per growth */
    TR_TRACKS_MIN = 64,
    TR_FATAL_WAIT_MS = 200 /* how long a fatal report waits for the lock */
};

typedef struct {
    const void *map; /* NULL: a free slot */
    char *name;      /* the map's name when the track started (NULL: none) */
    char *label;     /* the track's name, JSON-escaped */
    uint32_t tid;
    bool open;       /* a growth is in progress */
    const char *what; /* "grow" or "shrink" */
    uint64_t units, done;
    uint64_t step;   /* last counter sample, in 1/TR_STEPS */
} track;

static struct {
    pthread_mutex_t lock;
    bool on;
    bool atexit_done;
    bool failed; /* a write failed: mg_trace_stop reports MG_EIO */
    int fd;
    pid_t pid;
    size_t len;
    track *tracks;
    size_t cap, n;
    uint32_t next_tid;
    uint64_t dropped; /* events lost to a failed allocation */
    char buf[TR_BUF];
} tr = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

/* ---- output --------------------------------------------------------------- */

static void flush_buf(void)
{
    size_t off = 0;
    while (off < tr.len) {
        ssize_t w = write(tr.fd, tr.buf + off, tr.len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            tr.failed = true;
            break;
        }
        off += (size_t)w;
    }
    tr.len = 0;
}

/* Append one formatted event (or any text) to the buffer. */
__attribute__((format(printf, 1, 2))) static void out(const char *fmt, ...)
{
    if (tr.len + TR_EVENT_MAX > TR_BUF)
        flush_buf();
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tr.buf + tr.len, TR_BUF - tr.len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < TR_BUF - tr.len)
        tr.len += (size_t)n;
}

/* JSON string body of s (without quotes) into dst[cap]: escapes quotes,
 * backslashes and control bytes; an ill-formed UTF-8 sequence becomes
 * U+FFFD (mg__utf8_seq), so the file is always valid UTF-8 and valid JSON.
 * Stops (at a character boundary) when full. */
static void json_escape(char *dst, size_t cap, const char *s)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        char tmp[8];
        size_t k = 0, adv = 1;
        if (c == '"' || c == '\\') {
            tmp[k++] = '\\';
            tmp[k++] = (char)c;
        } else if (c < 0x20) {
            k = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", c);
        } else if (c < 0x80) {
            tmp[k++] = (char)c;
        } else {
            int n = mg__utf8_seq(p, (size_t)-1);
            if (n > 0) {
                memcpy(tmp, p, (size_t)n);
                k = adv = (size_t)n;
            } else {
                memcpy(tmp, "\xef\xbf\xbd", 3); /* U+FFFD */
                k = 3;
                adv = (size_t)-n;
            }
        }
        if (o + k + 1 > cap)
            break;
        memcpy(dst + o, tmp, k);
        o += k;
        p += adv;
    }
    dst[o] = '\0';
}

/* CLOCK_MONOTONIC as "<us>.<ns digits>". */
typedef struct {
    char s[32];
} tstamp;
static tstamp now_ts(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    uint64_t ns = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
    tstamp r;
    snprintf(r.s, sizeof r.s, "%llu.%03u", (unsigned long long)(ns / 1000),
             (unsigned)(ns % 1000));
    return r;
}

/* The fields every event starts with, for track t (tid 0: the process). */
#define EV_HEAD ",\n{\"name\":\"%s\",\"cat\":\"mapguard\",\"ph\":\"%s\",\"ts\":%s,\"pid\":%ld,\"tid\":%u"

/* Counter events are scoped to the process, not the thread: each map's
 * counter is told apart by its name, "evacuated <track name>". */
#define EV_COUNTER ",\n{\"name\":\"evacuated %s\",\"cat\":\"mapguard\",\"ph\":\"C\",\"ts\":%s,\"pid\":%ld,\"tid\":%u,\"args\":{\"fraction\":%.6g}}"

/* ---- tracks ----------------------------------------------------------------- */

static size_t slot_of(const void *map, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)map * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 32) & (cap - 1);
}

static bool tracks_grow(void)
{
    size_t cap = tr.cap ? tr.cap * 2 : TR_TRACKS_MIN;
    track *nt = calloc(cap, sizeof *nt);
    if (!nt)
        return false;
    for (size_t i = 0; i < tr.cap; i++) {
        if (!tr.tracks[i].map)
            continue;
        size_t j = slot_of(tr.tracks[i].map, cap);
        while (nt[j].map)
            j = (j + 1) & (cap - 1);
        nt[j] = tr.tracks[i];
    }
    free(tr.tracks);
    tr.tracks = nt;
    tr.cap = cap;
    return true;
}

static void tracks_free(void)
{
    for (size_t i = 0; i < tr.cap; i++) {
        free(tr.tracks[i].name);
        free(tr.tracks[i].label);
    }
    free(tr.tracks);
    tr.tracks = NULL;
    tr.cap = tr.n = 0;
}

static void close_growth(track *t, const char *why)
{
    if (!t->open)
        return;
    out(EV_HEAD ",\"args\":{\"%s\":true,\"units\":%llu,\"evacuated\":%llu}}", t->what, "E",
        now_ts().s, (long)tr.pid, t->tid, why, (unsigned long long)t->units,
        (unsigned long long)t->done);
    out(EV_COUNTER, t->label, now_ts().s, (long)tr.pid, t->tid, 0.0);
    t->open = false;
}

/* (Re)start the track in slot t for map m: a fresh tid and its name. */
static bool track_start(track *t, const mg_map *m)
{
    const char *name = m->label;
    char *nm = name ? strdup(name) : NULL;
    char *label = malloc(TR_LABEL_MAX);
    if ((name && !nm) || !label) {
        free(nm);
        free(label);
        return false;
    }
    if (name) {
        json_escape(label, TR_LABEL_MAX, name);
    } else {
        snprintf(label, TR_LABEL_MAX, "map %p", (const void *)m);
    }
    free(t->name);
    free(t->label);
    t->map = m;
    t->name = nm;
    t->label = label;
    t->tid = ++tr.next_tid;
    t->open = false;
    out(",\n{\"name\":\"thread_name\",\"cat\":\"__metadata\",\"ph\":\"M\",\"ts\":0,"
        "\"pid\":%ld,\"tid\":%u,\"args\":{\"name\":\"%s\"}}",
        (long)tr.pid, t->tid, label);
    out(",\n{\"name\":\"thread_sort_index\",\"cat\":\"__metadata\",\"ph\":\"M\",\"ts\":0,"
        "\"pid\":%ld,\"tid\":%u,\"args\":{\"sort_index\":%u}}",
        (long)tr.pid, t->tid, t->tid);
    return true;
}

static bool same_name(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The track of m, made on first use; NULL when memory ran out. */
static track *track_of(const mg_map *m)
{
    if ((tr.n + 1) * 2 > tr.cap && !tracks_grow()) {
        tr.dropped++;
        return NULL;
    }
    size_t j = slot_of(m, tr.cap);
    while (tr.tracks[j].map && tr.tracks[j].map != (const void *)m)
        j = (j + 1) & (tr.cap - 1);
    track *t = &tr.tracks[j];
    if (t->map && same_name(t->name, m->label))
        return t;
    if (t->map)
        close_growth(t, "interrupted"); /* the map there before was freed */
    else
        tr.n++;
    if (!track_start(t, m)) {
        if (!t->label) { /* never started: give the slot back */
            t->map = NULL;
            tr.n--;
        }
        tr.dropped++;
        return NULL;
    }
    return t;
}

/* ---- events ------------------------------------------------------------------ */

/* In a forked child: the trace is the parent's.  Turn it off here without
 * closing tr.fd (see the top of the file); under the lock. */
static void disown(void)
{
    tr.on = false;
    tr.fd = -1;
    tr.len = 0;
    atomic_store_explicit(&mg__trace_active, 0, memory_order_relaxed);
}

/* Take the lock; false (unlocked) when no trace runs in this process. */
static bool enter(void)
{
    pthread_mutex_lock(&tr.lock);
    if (tr.on && getpid() == tr.pid)
        return true;
    if (tr.on) /* a child the fork handlers missed (a raw clone) */
        disown();
    pthread_mutex_unlock(&tr.lock);
    return false;
}

static void leave(void)
{
    pthread_mutex_unlock(&tr.lock);
}

static void growth_begin(const mg_map *m, const char *what, const char *kind, unsigned oldB,
                         unsigned newB, uint64_t units)
{
    if (!enter())
        return;
    track *t = track_of(m);
    if (t) {
        close_growth(t, "interrupted"); /* never: one growth at a time */
        t->open = true;
        t->what = what;
        t->units = units ? units : 1;
        t->done = 0;
        t->step = 0;
        tstamp ts = now_ts();
        out(EV_HEAD ",\"args\":{\"oldB\":%u,\"newB\":%u,\"kind\":\"%s\",\"entries\":%zu}}", what,
            "B", ts.s, (long)tr.pid, t->tid, oldB, newB, kind, m->count);
        out(EV_COUNTER, t->label, ts.s, (long)tr.pid, t->tid, 0.0);
    }
    leave();
}

void mg__trace_grow_start(const mg_map *m, unsigned oldB, unsigned newB, bool same)
{
    growth_begin(m, "grow", same ? "same-size" : "double", oldB, newB,
                 oldB < 64 ? (uint64_t)1 << oldB : 1);
}

void mg__trace_shrink(const mg_map *m, unsigned oldB, unsigned newB)
{
    growth_begin(m, "shrink", "shrink", oldB, newB, newB < 64 ? (uint64_t)1 << newB : 1);
}

void mg__trace_evacuate(const mg_map *m, uint64_t unit)
{
    (void)unit;
    if (!enter())
        return;
    track *t = track_of(m);
    if (t && t->open && t->done < t->units) {
        t->done++;
        uint64_t step = t->done * TR_STEPS / t->units;
        if (step > t->step) {
            t->step = step;
            out(EV_COUNTER, t->label, now_ts().s, (long)tr.pid, t->tid,
                (double)t->done / (double)t->units);
        }
    }
    leave();
}

void mg__trace_grow_done(const mg_map *m, unsigned B)
{
    if (!enter())
        return;
    track *t = track_of(m);
    if (t && t->open) { /* else the growth began before the trace */
        tstamp ts = now_ts();
        out(EV_HEAD ",\"args\":{\"B\":%u,\"entries\":%zu,\"units\":%llu,\"evacuated\":%llu}}",
            t->what, "E", ts.s, (long)tr.pid, t->tid, B, m->count,
            (unsigned long long)t->units, (unsigned long long)t->done);
        out(EV_COUNTER, t->label, ts.s, (long)tr.pid, t->tid, 0.0);
        t->open = false;
    }
    leave();
}

static void instant(const mg_map *m, const char *what, const char *arg, uint64_t v)
{
    if (!enter())
        return;
    track *t = track_of(m);
    if (t)
        out(EV_HEAD ",\"s\":\"t\",\"args\":{\"%s\":%llu}}", what, "i", now_ts().s, (long)tr.pid,
            t->tid, arg, (unsigned long long)v);
    leave();
}

void mg__trace_promote(const mg_map *m, uint64_t n)
{
    instant(m, "promote", "entries", n);
}

void mg__trace_publish(const mg_map *m, uint64_t version)
{
    instant(m, "publish", "version", version);
}

/* ---- start, stop ----------------------------------------------------------- */

/* Close open growths, write the tail, flush and close; under the lock.
 * release: free the tracks too (not on the fatal path, which may run in a
 * signal handler that interrupted malloc). */
static int finish(bool release)
{
    for (size_t i = 0; i < tr.cap; i++)
        if (tr.tracks[i].map)
            close_growth(&tr.tracks[i], "unfinished");
    if (tr.dropped)
        out(EV_HEAD ",\"s\":\"p\",\"args\":{\"events\":%llu}}", "dropped", "i", now_ts().s,
            (long)tr.pid, 0u, (unsigned long long)tr.dropped);
    out("\n]\n");
    flush_buf();
    if (close(tr.fd) != 0)
        tr.failed = true;
    tr.fd = -1;
    tr.on = false;
    atomic_store_explicit(&mg__trace_active, 0, memory_order_relaxed);
    if (release)
        tracks_free();
    return tr.failed ? MG_EIO : MG_OK;
}

void mg__trace_fatal(const mg_map *m, const char *msg)
{
    /* The reporter may run in a signal handler, or in the thread that holds
     * our lock (a fault inside this file): never block for long.  Another
     * thread holds the lock for one event or one buffer write, so try for up to
     * TR_FATAL_WAIT_MS (nanosleep is async-signal-safe); after that the
     * file is left unfinished (docs/tracing.md). */
    int tries = 0;
    while (pthread_mutex_trylock(&tr.lock) != 0) {
        if (++tries > TR_FATAL_WAIT_MS)
            return;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (tr.on && getpid() == tr.pid) {
        char esc[TR_LABEL_MAX];
        json_escape(esc, sizeof esc, msg ? msg : "");
        out(EV_HEAD ",\"s\":\"p\",\"args\":{\"message\":\"%s\",\"map\":\"%p\"}}", "fatal", "i",
            now_ts().s, (long)tr.pid, 0u, esc, (const void *)m);
        finish(false); /* the tracks leak: the process is about to abort */
    }
    pthread_mutex_unlock(&tr.lock);
}

static void trace_atexit(void)
{
    pthread_mutex_lock(&tr.lock);
    if (tr.on && getpid() == tr.pid)
        finish(true);
    pthread_mutex_unlock(&tr.lock);
}

/* ---- fork (handlers installed by registry.c) -------------------------------- */

void mg__trace_prefork(void)
{
    pthread_mutex_lock(&tr.lock);
}

void mg__trace_postfork_parent(void)
{
    pthread_mutex_unlock(&tr.lock);
}

/* The child's only thread holds tr.lock (taken by mg__trace_prefork). */
void mg__trace_postfork_child(void)
{
    if (tr.on)
        disown();
    pthread_mutex_unlock(&tr.lock);
}

int mg_trace_start(const char *path)
{
    if (!path)
        return MG_EINVAL;
    mg__obs_atfork_init();
    pthread_mutex_lock(&tr.lock);
    if (tr.on && getpid() == tr.pid) {
        pthread_mutex_unlock(&tr.lock);
        return MG_EBUSY;
    }
    if (tr.on) /* inherited from the parent across fork: not ours */
        disown();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        pthread_mutex_unlock(&tr.lock);
        errno = e;
        return MG_EIO;
    }
    tracks_free(); /* any a fatal report left */
    tr.fd = fd;
    tr.pid = getpid();
    tr.len = 0;
    tr.failed = false;
    tr.dropped = 0;
    tr.next_tid = 0;
    char prog[TR_LABEL_MAX];
    json_escape(prog, sizeof prog, program_invocation_short_name);
    tr.len = (size_t)snprintf(tr.buf, TR_BUF,
                              "[\n{\"name\":\"process_name\",\"cat\":\"__metadata\",\"ph\":\"M\","
                              "\"ts\":0,\"pid\":%ld,\"tid\":0,\"args\":{\"name\":\"mapguard: %s\"}}",
                              (long)tr.pid, prog);
    tr.on = true;
    if (!tr.atexit_done)
        tr.atexit_done = atexit(trace_atexit) == 0;
    atomic_store_explicit(&mg__trace_active, 1, memory_order_relaxed);
    pthread_mutex_unlock(&tr.lock);
    return MG_OK;
}

int mg_trace_stop(void)
{
    pthread_mutex_lock(&tr.lock);
    int rc = MG_EINVAL;
    if (tr.on && getpid() == tr.pid) {
        int e = 0;
        rc = finish(true);
        if (rc == MG_EIO)
            e = errno;
        pthread_mutex_unlock(&tr.lock);
        if (e)
            errno = e;
        return rc;
    }
    pthread_mutex_unlock(&tr.lock);
    return rc;
}

static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void env_start(void)
{
    const char *path = secure_getenv("MAPGUARD_TRACE");
    if (!path || !*path)
        return;
    int rc = mg_trace_start(path);
    if (rc == MG_EIO)
        fprintf(stderr, "mapguard: MAPGUARD_TRACE=%s: %s\n", path, strerror(errno));
    else if (rc != MG_OK && rc != MG_EBUSY)
        fprintf(stderr, "mapguard: MAPGUARD_TRACE=%s: %s\n", path, mg_strerror(rc));
}

void mg__trace_env_init(void)
{
    pthread_once(&env_once, env_start);
}

#else /* MG_NO_OBSERVE: no timeline in the cost baseline */

int mg_trace_start(const char *path)
{
    return path ? MG_ENOTSUP : MG_EINVAL;
}

int mg_trace_stop(void)
{
    return MG_EINVAL;
}

void mg__trace_env_init(void)
{
}

#endif /* MG_NO_OBSERVE */
