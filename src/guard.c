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
 *      fatal inside the report or the hook does not report again.  A
 *      watchdog (a POSIX timer aimed at this thread, with its own signal
 *      and cookie) is armed now and re-armed for each later step, so
 *      nothing below that can block runs unwatched.
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
 * A fault in that section with no live map header in sight is a race only
 * if its address is in no mapping (a bucket array the writer unmapped);
 * a bad map pointer into the first 64 KiB or a mapped page (a guard page
 * the application handles) is not.  Any
 * other fault goes to the previous handler (a sanitizer's, the
 * application's) the way the kernel would have run it (chain()), or, for
 * the default action, the handler restores it and returns so the fault
 * happens again and kills the process as before.
 */
#include "internal.h"
#include "obs/events.h"
#include "obs/fatal.h"
#include "obs/obs.h"
#include "obs/utf8.h"
#include "modes/modes.h"

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
 * faulting: process_vm_readv on ourselves; where that is refused (seccomp:
 * EPERM or ENOSYS), a write into a pipe, which fails with EFAULT instead.
 * The pipe is made for the one call (pipe2, async-signal-safe) and closed
 * before returning: no descriptor is held between calls (a daemon that
 * closes every descriptor cannot have its numbers reused under us), and a
 * partial write can leave no bytes behind for a later read.  Safe in a
 * signal handler and from any number of threads at once. */
bool mg__safe_read(uintptr_t src, void *dst, size_t n)
{
    struct iovec l = {dst, n}, r = {(void *)src, n};
    int saved = errno;
    long got = syscall(SYS_process_vm_readv, (long)getpid(), &l, 1L, &r, 1L, 0L);
    if (got == (long)n) {
        errno = saved;
        return true;
    }
    bool refused = got < 0 && (errno == EPERM || errno == ENOSYS);
    int p[2];
    /* Raw system calls: a sanitizer's write() interceptor would check the
     * very bytes we are probing. */
    if (!refused || n > 4096 || syscall(SYS_pipe2, p, O_CLOEXEC | O_NONBLOCK) != 0) {
        errno = saved;
        return false;
    }
    /* A fresh pipe holds 64 KiB: the write never blocks; it stops at the
     * first unreadable byte (a short count, or EFAULT). */
    long w;
    do
        w = syscall(SYS_write, p[1], (const void *)src, n);
    while (w < 0 && errno == EINTR);
    bool ok = false;
    if (w == (long)n) {
        size_t got_n = 0;
        while (got_n < n) {
            long rd = syscall(SYS_read, p[0], (char *)dst + got_n, n - got_n);
            if (rd < 0 && errno == EINTR)
                continue;
            if (rd <= 0)
                break;
            got_n += (size_t)rd;
        }
        ok = got_n == n;
    }
    syscall(SYS_close, p[0]);
    syscall(SYS_close, p[1]);
    errno = saved;
    return ok;
}

static bool safe_read(uintptr_t src, void *dst, size_t n)
{
    return mg__safe_read(src, dst, n);
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

/* One pointer publishes the pair {hook, arg}, so the reporter never pairs
 * one call's hook with another call's argument.  Setters (under hook_lock)
 * fill the slot the pointer does not name, then publish it and bump
 * hook_seq.  The reporter (no lock: a parked thread may hold it) reads
 * hook_seq, the pointer and the slot's two fields, then hook_seq again,
 * and retries on a change: a slot is rewritten only by the second setter
 * after the one that moved the pointer away from it, so a torn pair
 * always comes with a changed hook_seq. */
typedef struct {
    _Atomic(mg_fatal_hook) hook;
    _Atomic(void *) arg;
} hook_pair;
static hook_pair hook_slots[2];
static _Atomic(hook_pair *) hook_cur; /* NULL: no hook */
static atomic_ulong hook_seq;
static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;

mg_fatal_hook mg_on_fatal(mg_fatal_hook hook, void *arg)
{
    pthread_mutex_lock(&hook_lock);
    hook_pair *cur = atomic_load(&hook_cur);
    mg_fatal_hook prev = cur ? atomic_load(&cur->hook) : NULL;
    hook_pair *next = &hook_slots[cur == &hook_slots[0] ? 1 : 0];
    atomic_store(&next->hook, hook);
    atomic_store(&next->arg, arg);
    atomic_store(&hook_cur, hook ? next : NULL);
    atomic_fetch_add(&hook_seq, 1);
    pthread_mutex_unlock(&hook_lock);
    return prev;
}

/* The current pair, read consistently (see above). */
static MG_FATAL_TEXT mg_fatal_hook load_hook(void **arg)
{
    for (;;) {
        unsigned long seq = atomic_load(&hook_seq);
        hook_pair *cur = atomic_load(&hook_cur);
        mg_fatal_hook hook = cur ? atomic_load(&cur->hook) : NULL;
        *arg = cur ? atomic_load(&cur->arg) : NULL;
        if (atomic_load(&hook_seq) == seq)
            return hook;
    }
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

static atomic_int reporting; /* 1 once a thread reports */
/* This thread is (or was) reporting; read in the fault handler, so
 * initial-exec (no lazy TLS allocation in a handler). */
static _Thread_local int in_report __attribute__((tls_model("initial-exec")));
static volatile sig_atomic_t stage; /* see the enum */
static volatile long reporter_tid;
static sigjmp_buf sym_jmp;
static const char *volatile cur_msg;

/* The steps of the report, as the signal handlers see them. */
enum {
    ST_IDLE,
    ST_CAPTURE,   /* counting, the trace event, stacks, the raw render */
    ST_SYMBOLISE, /* libdw: a fault or the watchdog falls back to raw */
    ST_PRINT,     /* the text to stderr, the JSON file */
    ST_HOOK       /* the user's hook */
};

/* Bounds for the steps that can hang (the watchdog, below). */
#define CAPTURE_SECONDS 5
#define SYMBOLISE_SECONDS 5
#define PRINT_SECONDS 10
#define HOOK_SECONDS 10
#define OTHER_STACK_MS 1000

static struct {
    mg_stack self, other;
    int other_rc; /* -1 not tried; 0 captured; else an errno value */
    char raw[32 * 1024];
    char text[64 * 1024];
    char json[160 * 1024];
} R;

/* The longest map name the report prints (the text and the JSON). */
#define NAME_MAX_PRINT 256

static bool header_readable(const mg_map *m)
{
    return m && (m->magic == MG_MAGIC_U64 || m->magic == MG_MAGIC_BYTES ||
                 m->magic == MG_MAGIC_MODE);
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

/* ---- the watchdog ----------------------------------------------------------
 * A POSIX timer that signals the reporting thread alone (SIGEV_THREAD_ID)
 * with a signal of its own, WATCHDOG_SIGNAL, and the address of wd_cookie
 * as its value: the handler acts only on that (si_code SI_TIMER and the
 * cookie), so an application's SIGALRM (alarm, setitimer) or its own use
 * of the signal never passes for the watchdog, and the application keeps
 * its SIGALRM handler.  It is armed when the report starts, before
 * anything that can block (the trace event, the stacks, the raw render's
 * dladdr1, which takes the loader's lock), and re-armed for each later
 * step.  Each arming records its deadline first; an expiry signal that
 * arrives before the current deadline (a late one from an earlier arming)
 * or while disarmed is dropped, so a late timer never cuts the text
 * short. */
#define WATCHDOG_SIGNAL (SIGRTMIN + 4)
static const char wd_cookie;
static timer_t wd_timer;
static bool wd_ok;
static _Atomic long long wd_deadline; /* CLOCK_MONOTONIC ns; 0: disarmed */

static long long mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000ll + t.tv_nsec;
}

static MG_FATAL_TEXT void watchdog_arm(int seconds)
{
    if (!wd_ok)
        return;
    atomic_store(&wd_deadline, seconds ? mono_ns() + seconds * 1000000000ll : 0);
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = seconds;
    timer_settime(wd_timer, 0, &its, NULL);
}

static MG_FATAL_TEXT void watchdog_start(void)
{
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = WATCHDOG_SIGNAL;
    sev.sigev_value.sival_ptr = (void *)(uintptr_t)&wd_cookie;
#ifdef sigev_notify_thread_id
    sev.sigev_notify_thread_id = (pid_t)reporter_tid;
#else
    sev._sigev_un._tid = (pid_t)reporter_tid;
#endif
    wd_ok = timer_create(CLOCK_MONOTONIC, &sev, &wd_timer) == 0;
    watchdog_arm(CAPTURE_SECONDS);
}

/* Is this signal the watchdog's expiry, due now? */
static bool watchdog_due(const siginfo_t *si)
{
    if (si->si_code != SI_TIMER || si->si_value.sival_ptr != (void *)(uintptr_t)&wd_cookie)
        return false;
    long long deadline = atomic_load(&wd_deadline);
    return deadline != 0 && mono_ns() >= deadline;
}

/* A signal while this process reports: a fault in the reporter or the
 * hook, the watchdog, or a fault in another thread. */
static MG_FATAL_TEXT void report_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int saved = errno;
    bool watchdog = sig == WATCHDOG_SIGNAL;
    long self = (long)syscall(SYS_gettid);
    if (watchdog && (self != reporter_tid || !watchdog_due(si))) {
        errno = saved; /* someone else's, or a late one: not ours to act on */
        return;
    }
    if (self != reporter_tid)
        park(); /* another thread faulted: the report goes on */
    if (stage == ST_SYMBOLISE)
        siglongjmp(sym_jmp, sig); /* print the raw frames instead */
    if (watchdog && stage == ST_PRINT)
        die(); /* stderr or the JSON file blocks: more text would too */
    if (stage == ST_CAPTURE && cur_msg) {
        write_str("fatal error: ");
        write_str(cur_msg);
        write_str("\n");
    }
    write_str(stage >= ST_PRINT ? "\nmapguard: signal " : "mapguard: signal ");
    write_long(sig);
    write_str(watchdog ? " (watchdog: a step of the fatal report did not finish)"
                       : " inside the fatal report");
    write_str("; aborting\n");
    die();
}

static void report_signals(void)
{
    const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, WATCHDOG_SIGNAL};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = report_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER | SA_RESTART;
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
                           "map: unknown (no live map header was found in the faulting "
                           "thread's registers or stack; the faulting address is in "
                           "no mapping)\n");
        return;
    }
    if (!header_readable(m)) {
        mg__buf_printf(b, n, cap, "map %p: header not readable (magic 0x%llx)\n",
                       (const void *)m, (unsigned long long)m->magic);
        return;
    }
    const char *keys = m->keykind == MG_KEY_BYTES ? "bytes" : "u64";
    if (m->magic == MG_MAGIC_MODE) {
        /* A concurrent mode's map: its entries live in the mode's own
         * structures; the header has the name and the key kind. */
        const char *mode = mg_mode_name(((const mg_mmap *)(uintptr_t)m)->mode);
        mg__buf_printf(b, n, cap, "map \"%.*s\" %p: mode=%s keys=%s\n", NAME_MAX_PRINT,
                       m->name ? m->name : "", (const void *)m, mode ? mode : "?", keys);
        return;
    }
    /* Racy reads of a map another thread is changing: a snapshot, not a
     * consistent picture. */
    size_t buckets = (size_t)1 << (m->B <= MG_MAX_B ? m->B : 0);
    mg__buf_printf(b, n, cap,
                   "map \"%.*s\" %p: count=%zu B=%u buckets=%zu load_factor=%.2f "
                   "growing=%s grows=%llu same_size_grows=%llu shrinks=%llu keys=%s\n",
                   NAME_MAX_PRINT, m->name ? m->name : "", (const void *)m, m->count,
                   (unsigned)m->B, buckets, (double)m->count / (double)buckets,
                   m->oldbuckets ? "yes" : "no", (unsigned long long)m->grows_total,
                   (unsigned long long)m->same_size_grows_total,
                   (unsigned long long)m->shrinks_total, keys);
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
            mg__buf_printf(b, &n, cap, " \"%.*s\"", NAME_MAX_PRINT, map_name(a));
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

/* Room json_str leaves at the end of the buffer, so the rest of the
 * record (the closing quote, the attributes after it, "]}") always fits
 * and the JSON stays valid even when a long string is cut short. */
#define JSON_TAIL_RESERVE 8192

/* s as a JSON string: escapes as RFC 8259 wants; a byte that is not part
 * of well-formed UTF-8 becomes U+FFFD. */
static void json_str(char *b, size_t *n, size_t cap, const char *s, size_t len)
{
    mg__buf_printf(b, n, cap, "\"");
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end && *n + JSON_TAIL_RESERVE < cap) {
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
            int u = mg__utf8_seq(p, (size_t)(end - p));
            if (u < 0) { /* its maximal subpart becomes one U+FFFD */
                mg__buf_printf(b, n, cap, "\\ufffd");
                p += -u;
                continue;
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

static void json_attr_strn(char *b, size_t *n, size_t cap, bool *first, const char *key,
                           const char *v, size_t len)
{
    json_attr_key(b, n, cap, first, key);
    mg__buf_printf(b, n, cap, "{\"stringValue\":");
    json_str(b, n, cap, v, len);
    mg__buf_printf(b, n, cap, "}}");
}

static void json_attr_str(char *b, size_t *n, size_t cap, bool *first, const char *key,
                          const char *v)
{
    json_attr_strn(b, n, cap, first, key, v, strlen(v));
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
        json_attr_strn(b, &n, cap, &first, "mapguard.map.name", map_name(a),
                       strnlen(map_name(a), NAME_MAX_PRINT));
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
        if (stage == ST_HOOK)
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
    watchdog_start(); /* before anything that can block */
    pthread_once(&cfg_once, read_config);
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
     * survive the siglongjmp of a failed symbolisation).  The stage is
     * ST_SYMBOLISE only once sym_jmp is set. */
    size_t threads_raw, threads_sym;
    render(R.raw, sizeof R.raw, a, other_tid, false, &threads_raw);
    const char *volatile text = R.raw;
    volatile size_t threads = threads_raw;
    int sig = sigsetjmp(sym_jmp, 1);
    if (sig == 0 && cfg.traceback != TB_NONE) {
        stage = ST_SYMBOLISE;
        watchdog_arm(SYMBOLISE_SECONDS);
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
    } else if (sig != 0) {
        size_t n = strlen(R.raw);
        mg__buf_printf(R.raw, &n, sizeof R.raw,
                       "(symbolisation failed: signal %d; frames are module+offset)\n",
                       sig);
    }
    /* From here a symbolisation watchdog that fires late finds ST_PRINT
     * and a newer deadline: it is dropped, the text goes out whole. */
    stage = ST_PRINT;
    watchdog_arm(PRINT_SECONDS);
    write_str(text);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long now_ns =
        (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
    size_t jlen = render_json(a, text, threads, other_tid, now_ns);
    write_json_file(jlen, now_ns);

    void *hook_arg;
    mg_fatal_hook hook = load_hook(&hook_arg);
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
        stage = ST_HOOK;
        watchdog_arm(HOOK_SECONDS);
        hook(&info, hook_arg);
    }
    watchdog_arm(0);
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
    /* The key kind: an engine map's magic says it; a mode map (magic
     * MG_MAGIC_MODE, src/modes/mode.c's check) keeps it in keykind. */
    bool mode = m->magic == MG_MAGIC_MODE;
    bool has_bytes = mode ? m->keykind == MG_KEY_BYTES : m->magic == MG_MAGIC_BYTES;
    if ((mode || m->magic == MG_MAGIC_U64 || m->magic == MG_MAGIC_BYTES) &&
        has_bytes != (want == MG_MAGIC_BYTES)) {
        snprintf(detail, sizeof detail,
                 "a %s call on a map created with .key = %s",
                 want == MG_MAGIC_BYTES ? "byte-key (mg_put/mg_get/mg_del)"
                                        : "u64-key (mg_*_u64)",
                 has_bytes ? "MG_KEY_BYTES" : "MG_KEY_U64");
        if (mode || (m->B <= MG_MAX_B && m->count <= SIZE_MAX / 2))
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
 * says no write was in progress).  NULL when no map is found (see
 * unmapped_hole for what happens then). */
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

/* Hand a fault that is not ours to the action that was there before, as
 * the kernel would have run it: SIG_DFL and SIG_IGN first (whatever the
 * flags say: an old SIG_DFL with SA_SIGINFO is no function to call); for
 * a handler, its SA_RESETHAND (the signal goes back to SIG_DFL before the
 * call, so a handler that returns to let the re-fault kill the process is
 * not called again), its sa_mask and SA_NODEFER (the mask for the call;
 * ours is put back after it).  SA_ONSTACK is not honoured: the handler
 * runs on the stack we run on. */
static void chain(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *old = sig == SIGBUS ? &old_bus : &old_segv;
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
    int flags = old->sa_flags;
    void (*plain)(int) = old->sa_handler;
    void (*info)(int, siginfo_t *, void *) = old->sa_sigaction;
    if (flags & SA_RESETHAND) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
    }
    sigset_t mask, saved;
    pthread_sigmask(SIG_SETMASK, NULL, &mask);
    for (int s = 1; s < NSIG; s++)
        if (sigismember(&old->sa_mask, s) == 1)
            sigaddset(&mask, s);
    if (flags & SA_NODEFER)
        sigdelset(&mask, sig);
    else
        sigaddset(&mask, sig);
    pthread_sigmask(SIG_SETMASK, &mask, &saved);
    if (flags & SA_SIGINFO)
        info(sig, si, uc);
    else
        plain(sig);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

/* A fault this close to the stack pointer is a stack overflow (or a
 * guard page of the stack), never a map race. */
#define OVERFLOW_BELOW_SP 65536
#define OVERFLOW_ABOVE_SP 4096

static uintptr_t page_size = 4096; /* set by install() */

/* With no map in sight, is the fault still what a read racing a writer
 * looks like?  The writer unmaps a big bucket array (or the read follows
 * a torn pointer into nothing): the address is in a hole of the address
 * space.  A bad map pointer into the first 64 KiB (mmap_min_addr; a NULL
 * map plus a field offset), a non-canonical one (si_addr 0), and a page
 * that is mapped (a guard page the application handles, PROT_NONE) are
 * not: they go to the previous handler. */
static bool unmapped_hole(uintptr_t addr)
{
    if (addr < 65536)
        return false;
    unsigned char v;
    int saved = errno;
    bool hole = syscall(SYS_mincore, (void *)(addr & ~(page_size - 1)), (size_t)1, &v) != 0 &&
                errno == ENOMEM;
    errno = saved;
    return hole;
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
        bool overflow = addr < sp + OVERFLOW_ABOVE_SP && addr + OVERFLOW_BELOW_SP > sp;
        uintptr_t writer = 0;
        /* A race needs a live map header in sight, or (the map pointer
         * may be dead in the read's registers, a global the caller
         * reloads) an address in no mapping.  Otherwise (a bad map
         * pointer, a guard page the application handles) the fault is the
         * old handler's. */
        const mg_map *m = overflow ? NULL : find_map(uc, sp, &writer);
        if (m || (!overflow && unmapped_hole(addr))) {
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
    long ps = sysconf(_SC_PAGESIZE);
    if (ps > 0)
        page_size = (uintptr_t)ps;
    /* The old actions are read before ours goes in: a fault in another
     * thread the moment after must find them to chain to. */
    if (sigaction(SIGSEGV, NULL, &old_segv) != 0 || sigaction(SIGBUS, NULL, &old_bus) != 0)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

void mg__crash_handler_install(void)
{
    pthread_once(&install_once, install);
}
