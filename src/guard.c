/*
 * guard.c - misuse reports: Go's fatal errors for C (docs/fatal-report.md).
 *
 * The fast checks live inline in map.c; this file only runs once something
 * is wrong.  A report (MAPGUARD_TRACEBACK=all, the default) is
 *
 *     fatal error: concurrent map writes
 *
 *     map "sessions" 0x55d0c2a4b2a0: count=1234 B=8 buckets=256 ...
 *     trace: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
 *
 *     thread 4242 [running]:
 *     writer(...)
 *     	/src/app.c:31 +0x3a (app+0x11aa)
 *     ...
 *
 *     thread 4243 [writing map 0x55d0c2a4b2a0 "sessions"]:
 *     ...
 *
 * then abort(), so a core dump is there for gdb.  The steps, in order:
 *
 *   1. Once per process: the first thread to report wins; any other thread
 *      that detects a misuse (or faults) meanwhile parks for good.  A
 *      fatal inside the report or the hook does not report again.
 *   2. Count it (mg__fatal_count_inc) and fire the USDT map__fatal event.
 *   3. Stacks: this thread's with backtrace(); the thread that held the
 *      map (its token in the writer word gives its tid) is signalled and
 *      parks in its handler after recording its own (fatal_stack.c).
 *   4. Render the report with raw module+offset frames, then again
 *      symbolised with libdw under a watchdog; a symbolisation that faults
 *      or overruns falls back to the raw text, so there is always a report.
 *   5. Print it to stderr, write the JSON (MAPGUARD_REPORT_DIR), run the
 *      user's hook (mg_on_fatal), abort().
 *
 * Faulting reads.  A read that overlaps a write can pass its entry check
 * and then touch a bucket array the writer has just freed (unmapped, for
 * big arrays).  The engine's read paths live in the text section
 * mapguard_read (internal.h); mg__crash_handler_install puts a
 * SIGSEGV/SIGBUS handler in front of the existing one.  A fault whose pc
 * lies in that section becomes the "concurrent map read and map write"
 * report: the handler finds the map (a register or stack word that points
 * at a valid header, preferring one with a write in progress), then
 * rewrites the interrupted context so that returning from the handler
 * "calls" read_fault() on the faulting thread's own stack, as if the
 * faulting instruction had called it; the report then runs outside any
 * signal handler, and the faulting read shows as a frame of the stack.
 * Any other fault goes to the previous handler (a sanitizer's, the
 * application's), or, for the default action, the handler restores it and
 * returns so the fault happens again and kills the process as before.
 */
#include "internal.h"
#include "obs/events.h"
#include "obs/fatal.h"
#include "obs/obs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

/* The faulting read's "return address" as the handler plants it: the
 * unwinder looks a return address up at ra - 1 (x86_64) or within the
 * instruction before it (aarch64), which must be the faulting one. */
#if defined(__aarch64__)
#define MG_FAULT_RA_BIAS 4
#else
#define MG_FAULT_RA_BIAS 1
#endif

/* A thread's identity: the address of its record is the token stored in a
 * map's writer word, and the record gives the report the thread id. */
_Thread_local mg_thread_rec mg__self_rec __attribute__((tls_model("initial-exec")));

void mg__thread_init(void)
{
    mg__self_rec.tid = (long)syscall(SYS_gettid);
}

/* ---- reading memory that may be gone ------------------------------------ */

/* Copy n bytes from src, or return false if they are not readable, without
 * faulting: process_vm_readv on ourselves; where that is refused
 * (seccomp), a write into a pipe, which fails with EFAULT instead. */
static int probe_pipe[2] = {-1, -1};
static atomic_flag probe_busy = ATOMIC_FLAG_INIT;

static bool safe_read(uintptr_t src, void *dst, size_t n)
{
    struct iovec l = {dst, n}, r = {(void *)src, n};
    long got = syscall(SYS_process_vm_readv, (long)getpid(), &l, 1L, &r, 1L, 0L);
    if (got == (long)n)
        return true;
    if (got >= 0 || (errno != EPERM && errno != ENOSYS) || probe_pipe[1] < 0 || n > 4096)
        return false;
    if (atomic_flag_test_and_set(&probe_busy))
        return false;
    bool ok = write(probe_pipe[1], (const void *)src, n) == (ssize_t)n &&
              read(probe_pipe[0], dst, n) == (ssize_t)n;
    atomic_flag_clear(&probe_busy);
    return ok;
}

long mg__token_tid(uintptr_t token)
{
    /* The record belongs to a thread that may have exited (its TLS block
     * freed or unmapped): read it as a hint, through safe_read. */
    mg_thread_rec rec;
    if (!token || !safe_read(token, &rec, sizeof rec))
        return 0;
    return rec.tid;
}

/* ---- configuration -------------------------------------------------------- */

enum { TB_NONE, TB_SINGLE, TB_ALL, TB_CRASH };

static struct {
    int traceback;
    bool catch_faults;
    char report_dir[512];
} cfg;
static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;

static void read_config(void)
{
    const char *s = getenv("MAPGUARD_TRACEBACK");
    cfg.traceback = TB_ALL;
    if (s && strcmp(s, "none") == 0)
        cfg.traceback = TB_NONE;
    else if (s && strcmp(s, "single") == 0)
        cfg.traceback = TB_SINGLE;
    else if (s && strcmp(s, "crash") == 0)
        cfg.traceback = TB_CRASH;
    s = getenv("MAPGUARD_REPORT_DIR");
    if (s && *s && strlen(s) < sizeof cfg.report_dir)
        memcpy(cfg.report_dir, s, strlen(s) + 1);
    s = getenv("MAPGUARD_CATCH_FAULTS");
    cfg.catch_faults = !(s && (strcmp(s, "0") == 0 || strcmp(s, "off") == 0 ||
                               strcmp(s, "no") == 0));
}

/* ---- the hook ---------------------------------------------------------------- */

static _Atomic(mg_fatal_hook) user_hook;
static _Atomic(void *) user_hook_arg;

mg_fatal_hook mg_on_fatal(mg_fatal_hook hook, void *arg)
{
    atomic_store(&user_hook_arg, arg);
    return atomic_exchange(&user_hook, hook);
}

/* ---- output ------------------------------------------------------------------ */

static void write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        len -= (size_t)w;
    }
}

static void write_str(const char *s)
{
    write_all(STDERR_FILENO, s, strlen(s));
}

/* Decimal, for the signal handlers (no printf there). */
static void write_long(long v)
{
    char b[24], *p = b + sizeof b;
    unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--p = '-';
    write_all(STDERR_FILENO, p, (size_t)(b + sizeof b - p));
}

/* ---- the report's state ----------------------------------------------------- */

typedef struct {
    mg_fatal_kind kind;
    const mg_map *m;
    const char *detail; /* an extra line, or NULL */
    uintptr_t other;    /* the writer's token; 0: read m's writer word */
    uintptr_t fault_pc; /* read faults: the faulting instruction */
    bool map_unknown;   /* read faults: no map header was found */
} report_args;

static atomic_int reporting;           /* 1 once a thread reports */
static _Thread_local int in_report;    /* this thread is (or was) reporting */
static volatile sig_atomic_t stage;    /* see the enum */
static volatile long reporter_tid;
static sigjmp_buf sym_jmp;
static const char *volatile cur_msg;

enum { ST_IDLE, ST_CAPTURE, ST_SYMBOLISE, ST_PRINTED };

/* Bounds for the steps that can hang: symbolisation, the hook. */
#define SYMBOLISE_SECONDS 5
#define HOOK_SECONDS 10
#define OTHER_STACK_MS 1000

static struct {
    mg_stack self, other;
    int other_rc; /* -1 not tried; 0 captured; else an errno value */
    char raw[32 * 1024];
    char text[64 * 1024];
    char json[160 * 1024];
} R;

static bool header_readable(const mg_map *m)
{
    return m && (m->magic == MG_MAGIC_U64 || m->magic == MG_MAGIC_BYTES);
}

static const char *exception_type(mg_fatal_kind kind)
{
    switch (kind) {
    case MG_FATAL_CONCURRENT_WRITES: return "mapguard.ConcurrentMapWrites";
    case MG_FATAL_CONCURRENT_READ_WRITE: return "mapguard.ConcurrentMapReadAndMapWrite";
    case MG_FATAL_CONCURRENT_ITER_WRITE: return "mapguard.ConcurrentMapIterationAndMapWrite";
    case MG_FATAL_NIL_MAP: return "mapguard.NilMapAssignment";
    case MG_FATAL_FREED_MAP: return "mapguard.UseOfFreedMap";
    case MG_FATAL_CORRUPT_MAP: return "mapguard.CorruptedMapHeader";
    case MG_FATAL_WRONG_KEY_KIND: return "mapguard.WrongKeyKind";
    case MG_FATAL_INTERNAL: return "mapguard.InternalError";
    case MG_FATAL_KIND_COUNT: break;
    }
    return "mapguard.Fatal";
}

/* Parked for good: another thread reports and will abort the process. */
static MG_FATAL_TEXT _Noreturn void park(void)
{
    for (;;)
        pause();
}

static _Noreturn void die(void)
{
    if (cfg.traceback == TB_CRASH) {
        /* Like GOTRACEBACK=crash: the default action of SIGABRT (a core
         * dump where the limits allow one), whatever handler the
         * application installed. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGABRT, &dfl, NULL);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGABRT);
        pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    }
    abort();
}

/* A signal while this process reports: a fault in the reporter or the
 * hook, the watchdog, or a fault in another thread. */
static MG_FATAL_TEXT void report_signal(int sig, siginfo_t *si, void *uc)
{
    (void)si, (void)uc;
    long self = (long)syscall(SYS_gettid);
    if (self != reporter_tid) {
        if (sig == SIGALRM) { /* the timer is for the reporting thread */
            syscall(SYS_tgkill, (long)getpid(), (long)reporter_tid, SIGALRM);
            return;
        }
        park(); /* another thread faulted: the report goes on */
    }
    if (stage == ST_SYMBOLISE)
        siglongjmp(sym_jmp, sig); /* print the raw frames instead */
    if (stage == ST_CAPTURE && cur_msg) {
        write_str("fatal error: ");
        write_str(cur_msg);
        write_str("\n");
    }
    write_str(stage == ST_PRINTED ? "\nmapguard: signal " : "mapguard: signal ");
    write_long(sig);
    write_str(sig == SIGALRM ? " (watchdog: a step of the fatal report did not finish)"
                             : " inside the fatal report");
    write_str("; aborting\n");
    die();
}

static void report_signals(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGALRM};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = report_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigset_t unblock;
    sigemptyset(&unblock);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        sigaction(sigs[i], &sa, NULL);
        sigaddset(&unblock, sigs[i]);
    }
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
}

/* ---- rendering ------------------------------------------------------------ */

static void render_map(char *b, size_t *n, size_t cap, const report_args *a)
{
    const mg_map *m = a->m;
    if (!m) {
        if (a->kind == MG_FATAL_NIL_MAP)
            mg__buf_printf(b, n, cap, "map: nil\n");
        else if (a->map_unknown)
            mg__buf_printf(b, n, cap,
                           "map: unknown (no map header with a write in progress "
                           "was found in the faulting thread's registers or stack)\n");
        return;
    }
    if (!header_readable(m)) {
        mg__buf_printf(b, n, cap, "map %p: header not readable (magic 0x%llx)\n",
                       (const void *)m, (unsigned long long)m->magic);
        return;
    }
    /* Racy reads of a map another thread is changing: a snapshot, not a
     * consistent picture. */
    size_t buckets = (size_t)1 << (m->B <= MG_MAX_B ? m->B : 0);
    mg__buf_printf(b, n, cap,
                   "map \"%s\" %p: count=%zu B=%u buckets=%zu load_factor=%.2f "
                   "growing=%s grows=%llu same_size_grows=%llu shrinks=%llu keys=%s\n",
                   m->name ? m->name : "", (const void *)m, m->count, (unsigned)m->B,
                   buckets, (double)m->count / (double)buckets,
                   m->oldbuckets ? "yes" : "no", (unsigned long long)m->grows_total,
                   (unsigned long long)m->same_size_grows_total,
                   (unsigned long long)m->shrinks_total,
                   m->keykind == MG_KEY_BYTES ? "bytes" : "u64");
}

static const char *map_name(const report_args *a)
{
    return header_readable(a->m) && a->m->name ? a->m->name : NULL;
}

/* The report into b; *threads gets the offset of the first thread block. */
static size_t render(char *b, size_t cap, const report_args *a, long other_tid,
                     bool symbolised, size_t *threads)
{
    size_t n = 0;
    b[0] = 0;
    mg__buf_printf(b, &n, cap, "fatal error: %s\n", mg_fatal_message(a->kind));
    *threads = n;
    if (cfg.traceback == TB_NONE)
        return n;
    mg__buf_printf(b, &n, cap, "\n");
    if (a->detail)
        mg__buf_printf(b, &n, cap, "%s\n", a->detail);
    render_map(b, &n, cap, a);
    const char *tp = mg__traceparent();
    if (tp)
        mg__buf_printf(b, &n, cap, "trace: %s\n", tp);
    mg__buf_printf(b, &n, cap, "\n");
    *threads = n;
    mg__buf_printf(b, &n, cap, "thread %ld [running]:\n", R.self.tid);
    if (symbolised)
        mg__stack_render(&R.self, b, &n, cap);
    else
        mg__stack_render_raw(&R.self, b, &n, cap);
    if (other_tid > 0) {
        mg__buf_printf(b, &n, cap, "\nthread %ld [writing map %p", other_tid,
                       (const void *)a->m);
        if (map_name(a))
            mg__buf_printf(b, &n, cap, " \"%s\"", map_name(a));
        mg__buf_printf(b, &n, cap, "]:\n");
        if (R.other_rc == 0 && symbolised)
            mg__stack_render(&R.other, b, &n, cap);
        else if (R.other_rc == 0)
            mg__stack_render_raw(&R.other, b, &n, cap);
        else if (R.other_rc < 0)
            mg__buf_printf(b, &n, cap,
                           "(stack omitted: MAPGUARD_TRACEBACK=single)\n");
        else if (R.other_rc == ESRCH)
            mg__buf_printf(b, &n, cap, "(stack unavailable: no such thread)\n");
        else if (R.other_rc == ETIMEDOUT)
            mg__buf_printf(b, &n, cap,
                           "(stack unavailable: the thread did not answer in %d ms)\n",
                           OTHER_STACK_MS);
        else
            mg__buf_printf(b, &n, cap, "(stack unavailable: %s)\n",
                           strerror(R.other_rc));
    }
    return n;
}

/* ---- JSON: one OTLP/JSON LogRecord with OpenTelemetry's exception
 * attributes (docs/fatal-report.md) -------------------------------------- */

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (s[0] >= 0xf8)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

static void json_str(char *b, size_t *n, size_t cap, const char *s, size_t len)
{
    mg__buf_printf(b, n, cap, "\"");
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            mg__buf_printf(b, n, cap, "\\%c", c);
        } else if (c == '\n') {
            mg__buf_printf(b, n, cap, "\\n");
        } else if (c == '\t') {
            mg__buf_printf(b, n, cap, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            mg__buf_printf(b, n, cap, "\\u%04x", c);
        } else if (c < 0x80) {
            mg__buf_printf(b, n, cap, "%c", c);
        } else {
            size_t u = utf8_len(p); /* s is NUL-terminated: no overrun */
            if (u == 0 || (size_t)(end - p) < u) {
                mg__buf_printf(b, n, cap, "\\ufffd");
            } else {
                mg__buf_printf(b, n, cap, "%.*s", (int)u, (const char *)p);
                p += u;
                continue;
            }
        }
        p++;
    }
    mg__buf_printf(b, n, cap, "\"");
}

/* One attribute of the "attributes" array; *first: none written yet. */
static void json_attr_key(char *b, size_t *n, size_t cap, bool *first, const char *key)
{
    mg__buf_printf(b, n, cap, "%s{\"key\":\"%s\",\"value\":", *first ? "" : ",", key);
    *first = false;
}

static void json_attr_str(char *b, size_t *n, size_t cap, bool *first, const char *key,
                          const char *v)
{
    json_attr_key(b, n, cap, first, key);
    mg__buf_printf(b, n, cap, "{\"stringValue\":");
    json_str(b, n, cap, v, strlen(v));
    mg__buf_printf(b, n, cap, "}}");
}

static void json_attr_int(char *b, size_t *n, size_t cap, bool *first, const char *key,
                          long long v)
{
    json_attr_key(b, n, cap, first, key);
    mg__buf_printf(b, n, cap, "{\"intValue\":\"%lld\"}}", v);
}

static size_t render_json(const report_args *a, const char *text, size_t threads,
                          long other_tid, unsigned long long now_ns)
{
    char *b = R.json;
    size_t n = 0, cap = sizeof R.json;
    const char *msg = mg_fatal_message(a->kind);
    const char *tp = mg__traceparent();
    char body[160];
    snprintf(body, sizeof body, "fatal error: %s", msg);
    mg__buf_printf(b, &n, cap,
                   "{\"timeUnixNano\":\"%llu\",\"observedTimeUnixNano\":\"%llu\","
                   "\"severityNumber\":21,\"severityText\":\"FATAL\",\"body\":"
                   "{\"stringValue\":",
                   now_ns, now_ns);
    json_str(b, &n, cap, body, strlen(body));
    mg__buf_printf(b, &n, cap, "}");
    if (tp) /* version-traceid-parentid-flags */
        mg__buf_printf(b, &n, cap,
                       ",\"traceId\":\"%.32s\",\"spanId\":\"%.16s\",\"flags\":%lu", tp + 3,
                       tp + 36, strtoul(tp + 53, NULL, 16) & 0xff);
    mg__buf_printf(b, &n, cap, ",\"attributes\":[");
    bool first = true;
    json_attr_str(b, &n, cap, &first, "exception.type", exception_type(a->kind));
    json_attr_str(b, &n, cap, &first, "exception.message", msg);
    if (cfg.traceback != TB_NONE)
        json_attr_str(b, &n, cap, &first, "exception.stacktrace", text + threads);
    json_attr_int(b, &n, cap, &first, "thread.id", R.self.tid);
    json_attr_int(b, &n, cap, &first, "process.pid", (long long)getpid());
    if (a->detail)
        json_attr_str(b, &n, cap, &first, "mapguard.fatal.detail", a->detail);
    if (map_name(a))
        json_attr_str(b, &n, cap, &first, "mapguard.map.name", map_name(a));
    if (a->m) {
        char addr[32];
        snprintf(addr, sizeof addr, "%p", (const void *)a->m);
        json_attr_str(b, &n, cap, &first, "mapguard.map.address", addr);
    }
    if (other_tid > 0)
        json_attr_int(b, &n, cap, &first, "mapguard.writer.thread.id", other_tid);
    if (tp)
        json_attr_str(b, &n, cap, &first, "mapguard.traceparent", tp);
    mg__buf_printf(b, &n, cap, "]}");
    return n;
}

static void write_json_file(size_t len, unsigned long long now_ns)
{
    if (!cfg.report_dir[0])
        return;
    char path[sizeof cfg.report_dir + 64];
    snprintf(path, sizeof path, "%s/mapguard-fatal-%ld-%llu.json", cfg.report_dir,
             (long)getpid(), now_ns);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        char line[sizeof path + 128];
        snprintf(line, sizeof line, "mapguard: cannot write %s: %s\n", path,
                 strerror(errno));
        write_str(line);
        return;
    }
    R.json[len] = '\n';
    write_all(fd, R.json, len + 1);
    R.json[len] = 0;
    close(fd);
}

/* ---- the report -------------------------------------------------------------- */

static MG_FATAL_TEXT _Noreturn void report(const report_args *a)
{
    if (in_report) {
        /* The hook, or the reporter itself, misused a map: the report is
         * out (or on its way); no second one. */
        if (stage == ST_PRINTED)
            write_str("\nmapguard: a map misuse inside the fatal hook; aborting\n");
        die();
    }
    in_report = 1;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&reporting, &expected, 1))
        park();
    reporter_tid = (long)syscall(SYS_gettid);
    cur_msg = mg_fatal_message(a->kind);
    stage = ST_CAPTURE;
    report_signals();
    pthread_once(&cfg_once, read_config);
    if (probe_pipe[1] < 0 && pipe2(probe_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        probe_pipe[0] = probe_pipe[1] = -1; /* safe_read's fallback */
    mg__fatal_count_inc(a->kind);
    MG_EV_FATAL(a->m, cur_msg);

    /* Stacks: ours, then the writer's. */
    R.other_rc = -1;
    R.self.n = 0;
    R.self.tid = reporter_tid;
    long other_tid = 0;
    if (cfg.traceback != TB_NONE) {
        mg__stack_self(&R.self);
        for (int i = 0; a->fault_pc && i < R.self.n; i++) {
            if (R.self.pc[i] == a->fault_pc + MG_FAULT_RA_BIAS) {
                R.self.pc[i] = a->fault_pc;
                R.self.exact = i;
                break;
            }
        }
        uintptr_t writer = a->other;
        if (!writer && header_readable(a->m))
            writer = atomic_load_explicit(&((mg_map *)a->m)->writer, memory_order_relaxed);
        if (writer && writer != mg__self_token())
            other_tid = mg__token_tid(writer);
        if (other_tid == R.self.tid)
            other_tid = 0;
        if (other_tid > 0 && cfg.traceback >= TB_ALL)
            R.other_rc = mg__stack_other(other_tid, &R.other, OTHER_STACK_MS);
        if (cfg.traceback != TB_CRASH) {
            mg__stack_trim(&R.self);
            if (R.other_rc == 0)
                mg__stack_trim(&R.other);
        }
    }

    /* Raw first; then symbolised, under a watchdog (volatile: they must
     * survive the siglongjmp of a failed symbolisation). */
    size_t threads_raw, threads_sym;
    render(R.raw, sizeof R.raw, a, other_tid, false, &threads_raw);
    const char *volatile text = R.raw;
    volatile size_t threads = threads_raw;
    stage = ST_SYMBOLISE;
    int sig = sigsetjmp(sym_jmp, 1);
    if (sig == 0 && cfg.traceback != TB_NONE) {
        alarm(SYMBOLISE_SECONDS);
        if (mg__sym_begin()) {
            render(R.text, sizeof R.text, a, other_tid, true, &threads_sym);
            text = R.text;
            threads = threads_sym;
        } else {
            size_t n = strlen(R.raw);
            mg__buf_printf(R.raw, &n, sizeof R.raw,
                           "(no symbols: libdw could not read the process; frames "
                           "are module+offset)\n");
        }
        alarm(0);
    } else if (sig != 0) {
        alarm(0);
        size_t n = strlen(R.raw);
        mg__buf_printf(R.raw, &n, sizeof R.raw,
                       "(symbolisation failed: signal %d; frames are module+offset)\n",
                       sig);
    }
    stage = ST_PRINTED;
    write_str(text);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long now_ns =
        (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
    size_t jlen = render_json(a, text, threads, other_tid, now_ns);
    write_json_file(jlen, now_ns);

    mg_fatal_hook hook = atomic_load(&user_hook);
    if (hook) {
        mg_fatal_info info = {.kind = a->kind,
                              .msg = cur_msg,
                              .map = a->m,
                              .map_name = map_name(a),
                              .tid = R.self.tid,
                              .other_tid = other_tid,
                              .traceparent = mg__traceparent(),
                              .report = text,
                              .json = R.json};
        alarm(HOOK_SECONDS);
        hook(&info, atomic_load(&user_hook_arg));
        alarm(0);
    }
    die();
}

MG_FATAL_TEXT void mg__fatal(mg_fatal_kind kind, const mg_map *m)
{
    report(&(report_args){.kind = kind, .m = m});
}

MG_FATAL_TEXT void mg__fatal_writer(mg_fatal_kind kind, const mg_map *m, uintptr_t other)
{
    report(&(report_args){.kind = kind, .m = m, .other = other});
}

MG_FATAL_TEXT void mg__bad_header(const mg_map *m, uint64_t want)
{
    char detail[160];
    if (m->magic == MG_MAGIC_FREED)
        report(&(report_args){.kind = MG_FATAL_FREED_MAP, .m = m,
                              .detail = "the map was already freed with mg_free"});
    if ((m->magic == MG_MAGIC_U64 || m->magic == MG_MAGIC_BYTES) && m->magic != want) {
        snprintf(detail, sizeof detail,
                 "a %s call on a map created with .key = %s",
                 want == MG_MAGIC_BYTES ? "byte-key (mg_put/mg_get/mg_del)"
                                        : "u64-key (mg_*_u64)",
                 m->magic == MG_MAGIC_BYTES ? "MG_KEY_BYTES" : "MG_KEY_U64");
        if (m->B <= MG_MAX_B && m->count <= SIZE_MAX / 2)
            report(&(report_args){.kind = MG_FATAL_WRONG_KEY_KIND, .m = m, .detail = detail});
    }
    snprintf(detail, sizeof detail, "bad header at %p: magic=0x%llx B=%u count=%zu",
             (const void *)m, (unsigned long long)m->magic, (unsigned)m->B, m->count);
    report(&(report_args){.kind = MG_FATAL_CORRUPT_MAP, .detail = detail});
}

MG_FATAL_TEXT void mg__internal_error(const char *what, const char *file, int line)
{
    char detail[256];
    snprintf(detail, sizeof detail, "%s (%s:%d): please report this bug", what, file, line);
    report(&(report_args){.kind = MG_FATAL_INTERNAL, .detail = detail});
}

/* ---- faulting reads --------------------------------------------------------- */

static struct sigaction old_segv, old_bus;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;

static bool in_read_text(uintptr_t pc)
{
    return pc >= (uintptr_t)__start_mapguard_read && pc < (uintptr_t)__stop_mapguard_read;
}

/* Runs on the faulting thread, "called" by the faulting instruction (see
 * the top of the file), outside the signal handler. */
#if defined(__x86_64__)
#define MG_FAULT_ENTRY __attribute__((force_align_arg_pointer, used))
#else
#define MG_FAULT_ENTRY __attribute__((used))
#endif
static MG_FATAL_TEXT MG_FAULT_ENTRY _Noreturn void read_fault(uintptr_t addr, uintptr_t pc,
                                                             const mg_map *m,
                                                             uintptr_t writer, long sig)
{
    char detail[384];
    snprintf(detail, sizeof detail,
             "%s at address %p in a map read (pc %p): the read overlapped a write "
             "that changed or freed the memory it was walking%s",
             sig == SIGBUS ? "SIGBUS" : "SIGSEGV", (void *)addr, (void *)pc,
             m && !writer ? "; no write was in progress on the map when the fault "
                            "was caught"
                          : "");
    report(&(report_args){.kind = MG_FATAL_CONCURRENT_READ_WRITE,
                          .m = m,
                          .detail = detail,
                          .other = writer,
                          .fault_pc = pc,
                          .map_unknown = m == NULL});
}

/* Is c the address of a live engine map header?  *writer gets its writer
 * word. */
static bool map_at(uintptr_t c, uintptr_t *writer)
{
    if (c < 65536 || c % sizeof(uintptr_t) != 0)
        return false;
    mg_map h;
    if (!safe_read(c, &h, sizeof h))
        return false;
    if ((h.magic != MG_MAGIC_U64 && h.magic != MG_MAGIC_BYTES) || h.B > MG_MAX_B ||
        h.count > SIZE_MAX / 2)
        return false;
    *writer = atomic_load_explicit(&h.writer, memory_order_relaxed);
    return true;
}

/* The map the faulting thread was reading, best effort: a word of its
 * general registers or of the top of its stack that points at a map
 * header, or at a structure whose first words do (the caller's argument
 * block, say).  A map with a write in progress wins; without one, the
 * first map found (which may be another map the thread uses: the report
 * says no write was in progress). */
#define SCAN_STACK_WORDS 64
#define SCAN_DEREF_WORDS 8
static const mg_map *find_map(const ucontext_t *uc, uintptr_t sp, uintptr_t *writer)
{
    uintptr_t cand[64 + SCAN_STACK_WORDS];
    size_t n = 0;
#if defined(__x86_64__)
    for (int i = 0; i < NGREG && n < 64; i++)
        if (i != REG_RIP && i != REG_EFL && i != REG_CSGSFS && i != REG_ERR &&
            i != REG_TRAPNO && i != REG_OLDMASK)
            cand[n++] = (uintptr_t)uc->uc_mcontext.gregs[i];
#elif defined(__aarch64__)
    for (int i = 0; i < 31; i++)
        cand[n++] = (uintptr_t)uc->uc_mcontext.regs[i];
#else
    (void)uc;
#endif
    for (size_t w = 0; w < SCAN_STACK_WORDS; w += 8) {
        if (!safe_read(sp + w * sizeof(uintptr_t), cand + n, 8 * sizeof(uintptr_t)))
            break;
        n += 8;
    }
    const mg_map *best = NULL;
    uintptr_t self = mg__self_token();
    *writer = 0;
    for (int depth = 0; depth < 2; depth++) {
        for (size_t i = 0; i < n; i++) {
            uintptr_t inner[SCAN_DEREF_WORDS], w;
            size_t k = 1;
            inner[0] = cand[i];
            if (depth == 1) {
                if (cand[i] < 65536 || cand[i] % sizeof(uintptr_t) != 0 ||
                    !safe_read(cand[i], inner, sizeof inner))
                    continue;
                k = SCAN_DEREF_WORDS;
            }
            for (size_t j = 0; j < k; j++) {
                if (!map_at(inner[j], &w))
                    continue;
                if (w && w != self) {
                    *writer = w;
                    return (const mg_map *)inner[j];
                }
                if (!best)
                    best = (const mg_map *)inner[j];
            }
        }
    }
    return best;
}

static void chain(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *old = sig == SIGBUS ? &old_bus : &old_segv;
    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, si, uc);
        return;
    }
    if (old->sa_handler == SIG_IGN && si->si_code <= 0)
        return; /* sent with kill() and ignored before we came */
    if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
        /* The default action: put it back and let the fault happen again
         * (or, for a sent signal, raise it again) when we return. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        if (si->si_code <= 0)
            raise(sig);
        return;
    }
    old->sa_handler(sig);
}

static MG_FATAL_TEXT void fault_handler(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    uintptr_t pc = mg__uc_pc(uc);
    if (si->si_code > 0 && in_read_text(pc) && !in_report) {
        int saved = errno;
        uintptr_t addr = (uintptr_t)si->si_addr;
#if defined(__x86_64__)
        uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
        uintptr_t sp = (uintptr_t)uc->uc_mcontext.sp;
#else
        uintptr_t sp = (uintptr_t)&saved;
#endif
        /* A stack overflow is not a map race: leave it to the old handler. */
        bool overflow = addr < sp + 4096 && addr + 65536 > sp;
        if (!overflow) {
            uintptr_t writer;
            const mg_map *m = find_map(uc, sp, &writer);
#if defined(__x86_64__)
            greg_t *g = uc->uc_mcontext.gregs;
            sp -= sizeof(uintptr_t);
            *(uintptr_t *)sp = pc + MG_FAULT_RA_BIAS; /* the "return address" */
            g[REG_RSP] = (greg_t)sp;
            g[REG_RIP] = (greg_t)(uintptr_t)read_fault;
            g[REG_RDI] = (greg_t)addr;
            g[REG_RSI] = (greg_t)pc;
            g[REG_RDX] = (greg_t)(uintptr_t)m;
            g[REG_RCX] = (greg_t)writer;
            g[REG_R8] = (greg_t)sig;
            errno = saved;
            return;
#elif defined(__aarch64__)
            uc->uc_mcontext.regs[0] = addr;
            uc->uc_mcontext.regs[1] = pc;
            uc->uc_mcontext.regs[2] = (uintptr_t)m;
            uc->uc_mcontext.regs[3] = writer;
            uc->uc_mcontext.regs[4] = (uintptr_t)sig;
            uc->uc_mcontext.regs[30] = pc + MG_FAULT_RA_BIAS;
            uc->uc_mcontext.pc = (uintptr_t)read_fault;
            errno = saved;
            return;
#else
            /* No context rewriting here: report from the handler. */
            sigset_t s;
            sigemptyset(&s);
            sigaddset(&s, sig);
            pthread_sigmask(SIG_UNBLOCK, &s, NULL);
            read_fault(addr, pc, m, writer, sig);
#endif
        }
        errno = saved;
    }
    chain(sig, si, ucv);
}

static void install(void)
{
    pthread_once(&cfg_once, read_config);
    mg__stack_prewarm();
    if (!cfg.catch_faults)
        return;
    if (pipe2(probe_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        probe_pipe[0] = probe_pipe[1] = -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
}

void mg__crash_handler_install(void)
{
    pthread_once(&install_once, install);
}
