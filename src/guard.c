/*
 * guard.c - misuse reports: Go's fatal errors for C.
 *
 * The fast checks live inline in map.c; this file only runs once something
 * is wrong.  A report is
 *
 *     fatal error: concurrent map writes
 *
 *     map "sessions" 0x55d0c2a4b2a0: count=1234 B=8 buckets=256 ...
 *
 *     thread 4242 [running, detected the misuse]:
 *     #0  ./app(writer+0x3a) [0x55d0c1e0b1aa]
 *     ...
 *     thread 4243 [writing map 0x55d0c2a4b2a0]
 *
 * then abort(), so a core dump is there for gdb.  The user's hook runs
 * first.  Reports are printed once per process: a second thread that
 * detects a misuse while the first is reporting waits for the abort.  The
 * richer report (both stacks, JSON, trace context) builds on this.
 */
#include "internal.h"

#include <execinfo.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A thread's identity: the address of its record is the token stored in a
 * map's writer word, and the record gives the report the thread id. */
_Thread_local mg_thread_rec mg__self_rec __attribute__((tls_model("initial-exec")));

void mg__thread_init(void)
{
    mg__self_rec.tid = (long)syscall(SYS_gettid);
}

long mg__token_tid(uintptr_t token)
{
    /* The record belongs to a thread that may have exited; read it only as
     * a hint for the report. */
    return token ? ((const volatile mg_thread_rec *)token)->tid : 0;
}

static _Atomic(mg_fatal_hook) user_hook;
static _Atomic(void *) user_hook_arg;
static atomic_int reporting;
static _Thread_local int in_report;

mg_fatal_hook mg_on_fatal(mg_fatal_hook hook, void *arg)
{
    atomic_store(&user_hook_arg, arg);
    return atomic_exchange(&user_hook, hook);
}

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, p, len);
        if (w <= 0)
            return;
        p += w;
        len -= (size_t)w;
    }
}

static bool header_readable(const mg_map *m)
{
    return m && (m->magic == MG_MAGIC_U64 || m->magic == MG_MAGIC_BYTES);
}

static void report_map(const mg_map *m)
{
    if (!m) {
        out("map: nil\n");
        return;
    }
    if (!header_readable(m)) {
        out("map %p: header not readable (magic 0x%llx)\n", (const void *)m,
            (unsigned long long)m->magic);
        return;
    }
    /* Racy reads of a map another thread is changing: a snapshot, not a
     * consistent picture. */
    size_t buckets = (size_t)1 << (m->B <= MG_MAX_B ? m->B : 0);
    out("map \"%s\" %p: count=%zu B=%u buckets=%zu load_factor=%.2f growing=%s "
        "grows=%llu same_size_grows=%llu shrinks=%llu keys=%s\n",
        m->name ? m->name : "", (const void *)m, m->count, (unsigned)m->B, buckets,
        (double)m->count / (double)buckets, m->oldbuckets ? "yes" : "no",
        (unsigned long long)m->grows_total,
        (unsigned long long)m->same_size_grows_total,
        (unsigned long long)m->shrinks_total,
        m->keykind == MG_KEY_BYTES ? "bytes" : "u64");
}

static void report_stack(void)
{
    void *frames[64];
    int n = backtrace(frames, 64);
    /* Skip the reporter's own frames. */
    int skip = n > 2 ? 2 : 0;
    backtrace_symbols_fd(frames + skip, n - skip, STDERR_FILENO);
}

static _Noreturn void die(void)
{
    abort();
}

static _Noreturn void report(mg_fatal_kind kind, const mg_map *m, const char *detail,
                             uintptr_t other)
{
    if (in_report) /* the hook or the reporter itself went wrong */
        die();
    in_report = 1;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&reporting, &expected, 1)) {
        /* Another thread is reporting and will abort the process. */
        for (;;)
            pause();
    }
    const char *msg = mg_fatal_message(kind);
    mg_fatal_hook hook = atomic_load(&user_hook);
    if (hook) {
        mg_fatal_info info = {.kind = kind, .msg = msg, .map = m,
                              .map_name = header_readable(m) && m->name ? m->name : NULL,
                              .tid = (long)syscall(SYS_gettid)};
        hook(&info, atomic_load(&user_hook_arg));
    }
    out("fatal error: %s\n\n", msg);
    if (detail)
        out("%s\n", detail);
    report_map(m);
    out("\n");
    uintptr_t writer = other;
    if (!writer && header_readable(m))
        writer = atomic_load_explicit(&((mg_map *)m)->writer, memory_order_relaxed);
    out("thread %ld [running, detected the misuse]:\n", (long)syscall(SYS_gettid));
    report_stack();
    if (writer && writer != mg__self_token())
        out("\nthread %ld [writing map %p]\n", mg__token_tid(writer), (const void *)m);
    die();
}

void mg__fatal(mg_fatal_kind kind, const mg_map *m)
{
    report(kind, m, NULL, 0);
}

void mg__fatal_writer(mg_fatal_kind kind, const mg_map *m, uintptr_t other)
{
    report(kind, m, NULL, other);
}

void mg__bad_header(const mg_map *m, uint64_t want)
{
    char detail[160];
    if (m->magic == MG_MAGIC_FREED) {
        report(MG_FATAL_FREED_MAP, m, "the map was already freed with mg_free", 0);
    }
    if ((m->magic == MG_MAGIC_U64 || m->magic == MG_MAGIC_BYTES) && m->magic != want) {
        snprintf(detail, sizeof detail,
                 "a %s call on a map created with .key = %s",
                 want == MG_MAGIC_BYTES ? "byte-key (mg_put/mg_get/mg_del)"
                                        : "u64-key (mg_*_u64)",
                 m->magic == MG_MAGIC_BYTES ? "MG_KEY_BYTES" : "MG_KEY_U64");
        if (m->B <= MG_MAX_B && m->count <= SIZE_MAX / 2)
            report(MG_FATAL_WRONG_KEY_KIND, m, detail, 0);
    }
    snprintf(detail, sizeof detail, "bad header at %p: magic=0x%llx B=%u count=%zu",
             (const void *)m, (unsigned long long)m->magic, (unsigned)m->B, m->count);
    report(MG_FATAL_CORRUPT_MAP, NULL, detail, 0);
}

void mg__internal_error(const char *what, const char *file, int line)
{
    char detail[256];
    snprintf(detail, sizeof detail, "%s (%s:%d): please report this bug", what, file, line);
    report(MG_FATAL_INTERNAL, NULL, detail, 0);
}
