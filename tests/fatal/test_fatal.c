/*
 * test_fatal.c - misuse must abort with Go's report.
 *
 * Each case runs the misuse in a child process (fork) whose stderr goes to a
 * pipe, and checks that the child died by SIGABRT, that the report's first
 * line is exactly "fatal error: <Go's message>", that it names the map when
 * the header is readable, and that it has a "thread " line.
 *
 * Deterministic variants store a foreign token in the header's writer word
 * (through internal.h) to stand for another thread in the middle of a
 * write, or park a real thread inside its write (an allocator that never
 * returns) so that both threads' stacks can be checked by function name;
 * racy variants use real threads and are repeated.  The fatal hook
 * (mg_on_fatal) is checked through a shared mapping the child writes.
 * Faulting reads (guard.c's SIGSEGV catch) use a bucket array pointer
 * aimed at a PROT_NONE page.
 *
 * Run one case by hand with  test_fatal CASE  (the report goes to stderr
 * only on failure).
 */
#include "internal.h"
#include "mapguard.h"
#include "../test.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "obs/fatal.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif
/* A sanitizer that installs its own SIGSEGV handler before main: ours
 * chains to it, and it reports the fault its way. */
#define UNDER_SEGV_SANITIZER (UNDER_ASAN || UNDER_TSAN)

/* Functions whose names the stack tests look for: never inlined, and each
 * makes its map call in the middle (no tail call), so it keeps a frame. */
#define NOINLINE __attribute__((noinline))

/* ------------------------------------------------------------------------ */
/* Running a child                                                          */
/* ------------------------------------------------------------------------ */

typedef struct {
    int status;
    char *out; /* the child's stderr, NUL-terminated */
    size_t len;
} child;

static void child_free(child *c)
{
    free(c->out);
    c->out = NULL;
}

/* Run fn in a child; it must not return (if it does, the child exits 0). */
static child run_child(void (*fn)(void))
{
    int p[2];
    T_ASSERT(pipe(p) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], STDERR_FILENO);
        close(p[1]);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core); /* abort() on purpose: no core files */
        alarm(30);                       /* a hang shows as SIGALRM */
        fn();
        _exit(0);
    }
    close(p[1]);
    child c = {0};
    size_t cap = 4096;
    c.out = malloc(cap);
    T_ASSERT(c.out);
    for (;;) {
        if (c.len + 1024 > cap) {
            cap *= 2;
            c.out = realloc(c.out, cap);
            T_ASSERT(c.out);
        }
        ssize_t n = read(p[0], c.out + c.len, cap - c.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        c.len += (size_t)n;
    }
    c.out[c.len] = 0;
    close(p[0]);
    while (waitpid(pid, &c.status, 0) < 0)
        T_ASSERT(errno == EINTR);
    return c;
}

static void describe(const child *c);
/* Fail, showing the child's status and output, if bad. */
#define T_CHILD_FAIL_IF(c, bad, ...)                                          \
    do {                                                                      \
        if (bad) {                                                            \
            describe(c);                                                      \
            T_FAIL(__VA_ARGS__);                                              \
        }                                                                     \
    } while (0)

static void describe(const child *c)
{
    if (WIFSIGNALED(c->status))
        fprintf(stderr, "child killed by signal %d (%s)\n", WTERMSIG(c->status),
                strsignal(WTERMSIG(c->status)));
    else if (WIFEXITED(c->status))
        fprintf(stderr, "child exited with status %d\n", WEXITSTATUS(c->status));
    fprintf(stderr, "---- child stderr (%zu bytes) ----\n%s\n---- end ----\n", c->len,
            c->out);
}

static bool has_line_starting(const char *out, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = out; p && *p;) {
        if (strncmp(p, prefix, n) == 0)
            return true;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

/* Did the child abort with "fatal error: <msg>" as the report's first line?
 * skip: lines the test itself printed before the report. */
static bool is_report(const child *c, const char *msg, int skip)
{
    if (!WIFSIGNALED(c->status) || WTERMSIG(c->status) != SIGABRT)
        return false;
    const char *p = c->out;
    for (int i = 0; i < skip && p; i++) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (!p)
        return false;
    char first[256];
    snprintf(first, sizeof first, "fatal error: %s\n", msg);
    if (strncmp(p, first, strlen(first)) != 0)
        return false;
    return has_line_starting(c->out, "thread ");
}

/* Check one report: first line, SIGABRT, the map's name, a thread line. */
static void expect_report(child *c, const char *msg, const char *name)
{
    if (!is_report(c, msg, 0)) {
        describe(c);
        T_FAIL("expected an abort with first line \"fatal error: %s\" and a thread "
               "line",
               msg);
    }
    if (name) {
        char q[128];
        snprintf(q, sizeof q, "\"%s\"", name);
        if (!strstr(c->out, q)) {
            describe(c);
            T_FAIL("the report does not name the map %s", q);
        }
    }
    child_free(c);
}

static void expect_fatal(void (*fn)(void), const char *msg, const char *name)
{
    child c = run_child(fn);
    expect_report(&c, msg, name);
}

/* ------------------------------------------------------------------------ */
/* Helpers for the children                                                 */
/* ------------------------------------------------------------------------ */

#define NAME "fatal-test-map"

static mg_map *mk(mg_keykind kind, size_t n)
{
    mg_options o = {.key = kind, .name = NAME};
    mg_map *m = mg_new(&o);
    if (!m)
        _exit(3);
    for (uint64_t i = 0; i < n; i++) {
        int rc;
        if (kind == MG_KEY_BYTES)
            rc = mg_put(m, &i, sizeof i, i);
        else
            rc = mg_put_u64(m, i, i);
        if (rc != MG_OK)
            _exit(4);
    }
    return m;
}

/* Another thread in the middle of a write, as the header sees it.  The
 * report reads a thread id through the token, so the token points at a
 * long holding a recognisable one. */
static long fake_writer = 4242;
static void fake_write(mg_map *m)
{
    atomic_store(&m->writer, (uintptr_t)&fake_writer);
}

/* ------------------------------------------------------------------------ */
/* Deterministic: another writer in progress                                */
/* ------------------------------------------------------------------------ */

static void c_put_during_write(void)
{
    mg_map *m = mk(MG_KEY_U64, 10);
    fake_write(m);
    mg_put_u64(m, 99, 1);
}
static void c_put_bytes_during_write(void)
{
    mg_map *m = mk(MG_KEY_BYTES, 10);
    fake_write(m);
    mg_put(m, "k", 1, 1);
}
static void c_del_during_write(void)
{
    mg_map *m = mk(MG_KEY_U64, 10);
    fake_write(m);
    mg_del_u64(m, 3);
}
static void c_del_bytes_during_write(void)
{
    mg_map *m = mk(MG_KEY_BYTES, 10);
    fake_write(m);
    uint64_t k = 3;
    mg_del(m, &k, sizeof k);
}
static void c_clear_during_write(void)
{
    mg_map *m = mk(MG_KEY_U64, 10);
    fake_write(m);
    mg_clear(m);
}
static void c_free_during_write(void)
{
    mg_map *m = mk(MG_KEY_U64, 10);
    fake_write(m);
    mg_free(m);
}

static void t_writes_deterministic(void)
{
    void (*fns[])(void) = {c_put_during_write, c_put_bytes_during_write,
                           c_del_during_write, c_del_bytes_during_write,
                           c_clear_during_write, c_free_during_write};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        child c = run_child(fns[i]);
        /* The report names the thread that holds the map. */
        T_CHILD_FAIL_IF(&c, !strstr(c.out, "thread 4242 [writing map"),
                "case %zu: the report does not name the writing thread", i);
        expect_report(&c, "concurrent map writes", NAME);
    }
}

/* A second writer that arrives while our write runs: the engine sees a
 * foreign token in the writer word when its write ends.  The allocator,
 * called inside the write, plays the second writer. */
static mg_map *intruder_map;
static void *intruder_malloc(void *ctx, size_t size)
{
    (void)ctx;
    if (intruder_map)
        fake_write(intruder_map);
    return malloc(size);
}
static void *intruder_calloc(void *ctx, size_t size)
{
    (void)ctx;
    if (intruder_map)
        fake_write(intruder_map);
    return calloc(1, size);
}
static void intruder_free(void *ctx, void *p, size_t size)
{
    (void)ctx, (void)size;
    free(p);
}
static void c_writer_arrives_mid_write(void)
{
    static const mg_allocator a = {intruder_malloc, intruder_calloc, intruder_free,
                                   NULL};
    mg_options o = {.name = NAME, .alloc = &a};
    mg_map *m = mg_new(&o);
    if (!m)
        _exit(3);
    intruder_map = m;
    mg_put_u64(m, 1, 1); /* allocates the first bucket array */
}
static void t_writes_detected_on_exit(void)
{
    expect_fatal(c_writer_arrives_mid_write, "concurrent map writes", NAME);
}

static void c_get_during_write(void)
{
    mg_map *m = mk(MG_KEY_U64, 10);
    fake_write(m);
    mg_get_u64(m, 3, NULL);
}
static void c_get_miss_during_write(void)
{
    mg_map *m = mk(MG_KEY_U64, 10);
    fake_write(m);
    mg_get_u64(m, 12345, NULL);
}
static void c_get_bytes_during_write(void)
{
    mg_map *m = mk(MG_KEY_BYTES, 10);
    fake_write(m);
    uint64_t k = 3;
    mg_get(m, &k, sizeof k, NULL);
}
static void c_stats_during_write(void)
{
    mg_map *m = mk(MG_KEY_U64, 10);
    fake_write(m);
    mg_stats s;
    mg_stats_get(m, &s);
}
static void t_read_deterministic(void)
{
    expect_fatal(c_get_during_write, "concurrent map read and map write", NAME);
    expect_fatal(c_get_miss_during_write, "concurrent map read and map write", NAME);
    expect_fatal(c_get_bytes_during_write, "concurrent map read and map write", NAME);
    expect_fatal(c_stats_during_write, "concurrent map read and map write", NAME);
}

static void c_iter_next_during_write(void)
{
    mg_map *m = mk(MG_KEY_U64, 100);
    mg_iter it;
    mg_iter_init(&it, m);
    mg_iter_next(&it, NULL, NULL, NULL);
    fake_write(m);
    mg_iter_next(&it, NULL, NULL, NULL);
}
static void c_iter_init_during_write(void)
{
    mg_map *m = mk(MG_KEY_BYTES, 100);
    fake_write(m);
    mg_iter it;
    mg_iter_init(&it, m);
    mg_iter_next(&it, NULL, NULL, NULL);
}
static int noop_fn(const void *k, size_t len, uint64_t v, void *arg)
{
    (void)k, (void)len, (void)v, (void)arg;
    return 0;
}
static void c_range_during_write(void)
{
    mg_map *m = mk(MG_KEY_U64, 100);
    fake_write(m);
    mg_range(m, noop_fn, NULL);
}
static void t_iter_deterministic(void)
{
    expect_fatal(c_iter_next_during_write, "concurrent map iteration and map write",
                 NAME);
    expect_fatal(c_iter_init_during_write, "concurrent map iteration and map write",
                 NAME);
    expect_fatal(c_range_during_write, "concurrent map iteration and map write", NAME);
}

/* ------------------------------------------------------------------------ */
/* nil, freed, corrupted, wrong key kind                                    */
/* ------------------------------------------------------------------------ */

static void c_nil_put_u64(void)
{
    mg_put_u64(NULL, 1, 1);
}
static void c_nil_put(void)
{
    mg_put(NULL, "a", 1, 1);
}
static void t_nil_map(void)
{
    expect_fatal(c_nil_put_u64, "assignment to entry in nil map", NULL);
    expect_fatal(c_nil_put, "assignment to entry in nil map", NULL);
}

/* An allocator whose free() keeps the memory, so reading a freed map is
 * well defined (and ASan-clean) and the engine's check is what fires. */
static void *keep_malloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}
static void *keep_calloc(void *ctx, size_t size)
{
    (void)ctx;
    return calloc(1, size);
}
static void keep_free(void *ctx, void *p, size_t size)
{
    (void)ctx, (void)p, (void)size;
}
static const mg_allocator keep_alloc = {keep_malloc, keep_calloc, keep_free, NULL};

static mg_map *freed_map(mg_keykind kind)
{
    mg_options o = {.key = kind, .name = NAME, .alloc = &keep_alloc};
    mg_map *m = mg_new(&o);
    if (!m)
        _exit(3);
    for (uint64_t i = 0; i < 100; i++) {
        if (kind == MG_KEY_BYTES)
            mg_put(m, &i, sizeof i, i);
        else
            mg_put_u64(m, i, i);
    }
    mg_free(m);
    return m;
}
static void c_freed_get(void)
{
    mg_get_u64(freed_map(MG_KEY_U64), 1, NULL);
}
static void c_freed_put(void)
{
    mg_put_u64(freed_map(MG_KEY_U64), 1, 1);
}
static void c_freed_del(void)
{
    mg_del_u64(freed_map(MG_KEY_U64), 1);
}
static void c_freed_get_bytes(void)
{
    mg_get(freed_map(MG_KEY_BYTES), "a", 1, NULL);
}
static void c_freed_twice(void)
{
    mg_free(freed_map(MG_KEY_U64));
}
static void c_freed_clear(void)
{
    mg_clear(freed_map(MG_KEY_BYTES));
}
static void c_freed_stats(void)
{
    mg_stats s;
    mg_stats_get(freed_map(MG_KEY_U64), &s);
}
static void c_freed_range(void)
{
    mg_range(freed_map(MG_KEY_U64), noop_fn, NULL);
}
static void t_freed_map(void)
{
    void (*fns[])(void) = {c_freed_get,   c_freed_put,   c_freed_del,
                           c_freed_get_bytes, c_freed_twice, c_freed_clear,
                           c_freed_stats, c_freed_range};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        expect_fatal(fns[i], "use of freed map", NULL);
}

static void c_corrupt_magic(void)
{
    mg_map *m = mk(MG_KEY_U64, 10);
    m->magic = 0x0123456789abcdefull;
    mg_get_u64(m, 1, NULL);
}
static void c_corrupt_magic_put_bytes(void)
{
    mg_map *m = mk(MG_KEY_BYTES, 10);
    m->magic = 0;
    mg_put(m, "a", 1, 1);
}
static void c_corrupt_B(void)
{
    mg_map *m = mk(MG_KEY_U64, 10);
    m->B = 200;
    mg_put_u64(m, 1, 1);
}
static void c_corrupt_B_bytes_get(void)
{
    mg_map *m = mk(MG_KEY_BYTES, 10);
    m->B = MG_MAX_B + 1;
    mg_get(m, "a", 1, NULL);
}
static void c_corrupt_iter(void)
{
    mg_map *m = mk(MG_KEY_U64, 10);
    m->magic ^= 0x10000;
    mg_range(m, noop_fn, NULL);
}
static void c_corrupt_count(void)
{
    mg_map *m = mk(MG_KEY_U64, 10);
    m->count = (size_t)-3; /* a negative count */
    mg_del_u64(m, 1);
}
static void t_corrupted_header(void)
{
    void (*fns[])(void) = {c_corrupt_magic, c_corrupt_magic_put_bytes, c_corrupt_B,
                           c_corrupt_B_bytes_get, c_corrupt_iter, c_corrupt_count};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        expect_fatal(fns[i], "corrupted map header", NULL);
}

static void c_put_bytes_on_u64(void)
{
    mg_put(mk(MG_KEY_U64, 10), "a", 1, 1);
}
static void c_get_bytes_on_u64(void)
{
    mg_get(mk(MG_KEY_U64, 10), "a", 1, NULL);
}
static void c_put_u64_on_bytes(void)
{
    mg_put_u64(mk(MG_KEY_BYTES, 10), 1, 1);
}
static void c_get_u64_on_bytes(void)
{
    mg_get_u64(mk(MG_KEY_BYTES, 10), 1, NULL);
}
static void c_del_u64_on_bytes(void)
{
    mg_del_u64(mk(MG_KEY_BYTES, 10), 1);
}
static void c_del_bytes_on_u64(void)
{
    mg_del(mk(MG_KEY_U64, 10), "a", 1);
}
static void t_wrong_key_kind(void)
{
    void (*fns[])(void) = {c_put_bytes_on_u64, c_get_bytes_on_u64, c_put_u64_on_bytes,
                           c_get_u64_on_bytes, c_del_u64_on_bytes, c_del_bytes_on_u64};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        expect_fatal(fns[i], "wrong key kind for map", NAME);
}

/* ------------------------------------------------------------------------ */
/* The fatal hook                                                           */
/* ------------------------------------------------------------------------ */

typedef struct {
    atomic_int calls;
    int kind;
    int name_null;
    char msg[128];
    char name[64];
    int arg_ok;
    long tid, other_tid;
    char traceparent[64];
    char report[16384];
    char json[16384];
} hook_record;
static hook_record *rec; /* MAP_SHARED: the child writes, the parent reads */
static int hook_arg;

static void record_hook(const mg_fatal_info *info, void *arg)
{
    mg_fatal_kind kind = info->kind;
    const char *msg = info->msg, *map_name = info->map_name;
    if (atomic_fetch_add(&rec->calls, 1) != 0)
        return;
    rec->kind = (int)kind;
    snprintf(rec->msg, sizeof rec->msg, "%s", msg ? msg : "(null)");
    rec->name_null = map_name == NULL;
    snprintf(rec->name, sizeof rec->name, "%s", map_name ? map_name : "");
    rec->arg_ok = arg == &hook_arg;
    rec->tid = info->tid;
    rec->other_tid = info->other_tid;
    snprintf(rec->traceparent, sizeof rec->traceparent, "%s",
             info->traceparent ? info->traceparent : "");
    snprintf(rec->report, sizeof rec->report, "%s", info->report ? info->report : "");
    snprintf(rec->json, sizeof rec->json, "%s", info->json ? info->json : "");
}
static void printing_hook(const mg_fatal_info *info, void *arg)
{
    record_hook(info, arg);
    static const char line[] = "HOOK RAN\n";
    ssize_t w = write(STDERR_FILENO, line, sizeof line - 1);
    (void)w;
}
static void misusing_hook(const mg_fatal_info *info, void *arg)
{
    record_hook(info, arg);
    mg_put_u64(NULL, 1, 1); /* a second misuse from inside the hook */
}

static void hook_reset(void)
{
    memset(rec, 0, sizeof *rec);
}

static void c_hook_writes(void)
{
    mg_on_fatal(record_hook, &hook_arg);
    c_put_during_write();
}
static void c_hook_nil(void)
{
    mg_on_fatal(record_hook, &hook_arg);
    c_nil_put_u64();
}
static void c_hook_wrong_kind(void)
{
    mg_on_fatal(record_hook, &hook_arg);
    c_put_u64_on_bytes();
}
static void c_hook_printing(void)
{
    mg_on_fatal(printing_hook, &hook_arg);
    c_get_during_write();
}
static void c_hook_misusing(void)
{
    mg_on_fatal(misusing_hook, &hook_arg);
    c_iter_next_during_write();
}
static void c_hook_removed(void)
{
    mg_on_fatal(record_hook, &hook_arg);
    mg_on_fatal(NULL, NULL);
    c_put_during_write();
}

static void check_hook(mg_fatal_kind kind, const char *name)
{
    T_EQ_I(atomic_load(&rec->calls), 1);
    T_EQ_I(rec->kind, kind);
    T_STREQ(rec->msg, mg_fatal_message(kind));
    T_ASSERT(rec->arg_ok);
    if (name) {
        T_ASSERT(!rec->name_null);
        T_STREQ(rec->name, name);
    } else {
        T_ASSERT(rec->name_null);
    }
}

static void t_hook(void)
{
    /* mg_on_fatal returns the previous hook. */
    T_ASSERT(mg_on_fatal(record_hook, &hook_arg) == NULL);
    T_ASSERT(mg_on_fatal(printing_hook, NULL) == record_hook);
    T_ASSERT(mg_on_fatal(NULL, NULL) == printing_hook);
    T_ASSERT(mg_on_fatal(NULL, NULL) == NULL);

    hook_reset();
    expect_fatal(c_hook_writes, "concurrent map writes", NAME);
    check_hook(MG_FATAL_CONCURRENT_WRITES, NAME);

    hook_reset();
    expect_fatal(c_hook_nil, "assignment to entry in nil map", NULL);
    check_hook(MG_FATAL_NIL_MAP, NULL);

    hook_reset();
    expect_fatal(c_hook_wrong_kind, "wrong key kind for map", NAME);
    check_hook(MG_FATAL_WRONG_KEY_KIND, NAME);

    /* The hook runs after the report is printed: its line comes last. */
    hook_reset();
    child c = run_child(c_hook_printing);
    T_CHILD_FAIL_IF(&c, c.len < 9 || strcmp(c.out + c.len - 9, "HOOK RAN\n") != 0 ||
                        !is_report(&c, "concurrent map read and map write", 0),
            "the report must come first, then the hook's line");
    child_free(&c);
    check_hook(MG_FATAL_CONCURRENT_READ_WRITE, NAME);

    /* A hook that misuses a map itself: no second hook call, still an
     * abort. */
    hook_reset();
    c = run_child(c_hook_misusing);
    T_CHILD_FAIL_IF(&c, !WIFSIGNALED(c.status) || WTERMSIG(c.status) != SIGABRT,
            "a misusing hook must still end in abort()");
    child_free(&c);
    check_hook(MG_FATAL_CONCURRENT_ITER_WRITE, NAME);

    /* A removed hook is not called. */
    hook_reset();
    expect_fatal(c_hook_removed, "concurrent map writes", NAME);
    T_EQ_I(atomic_load(&rec->calls), 0);
}

/* ------------------------------------------------------------------------ */
/* Racy variants: real threads                                              */
/* ------------------------------------------------------------------------ */

static mg_map *race_map;
static pthread_barrier_t race_go;
static atomic_int race_stop;

static void *writer_thread(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg * 1000000u;
    pthread_barrier_wait(&race_go);
    for (uint64_t i = 0; i < 1000000; i++)
        mg_put_u64(race_map, base + i, i);
    return NULL;
}

/* After the threads are done, give a report in progress time to end in
 * abort(); a clean exit here means the misuse was not detected. */
static _Noreturn void race_epilogue(void)
{
    sleep(5);
    _exit(0);
}

static void c_two_writers(void)
{
    mg_options o = {.name = "raced"};
    race_map = mg_new(&o);
    if (!race_map)
        _exit(3);
    mg_on_fatal(record_hook, &hook_arg);
    pthread_barrier_init(&race_go, NULL, 2);
    pthread_t a, b;
    pthread_create(&a, NULL, writer_thread, (void *)(uintptr_t)1);
    pthread_create(&b, NULL, writer_thread, (void *)(uintptr_t)2);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    race_epilogue();
}

static void t_racy_writes(void)
{
    for (int run = 0; run < 20; run++) {
        hook_reset();
        child c = run_child(c_two_writers);
        T_CHILD_FAIL_IF(&c, !is_report(&c, "concurrent map writes", 0),
                "run %d: two racing writers did not end in the concurrent "
                "writes report",
                run);
        expect_report(&c, "concurrent map writes", "raced");
        /* Two threads may detect it; the hook still runs once. */
        T_EQ_I(atomic_load(&rec->calls), 1);
        T_EQ_I(rec->kind, MG_FATAL_CONCURRENT_WRITES);
    }
}

/* Readers race a writer that only updates keys already present in a map
 * sized by its hint: the writer never frees memory a reader could be
 * reading, so the only possible outcome is the report. */
#define RW_KEYS 50000
static void *update_writer(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&race_go);
    for (uint64_t r = 0; !atomic_load_explicit(&race_stop, memory_order_relaxed); r++)
        for (uint64_t i = 0; i < RW_KEYS; i++)
            mg_put_u64(race_map, i, r);
    return NULL;
}
static void *getter(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&race_go);
    uint64_t sum = 0, v;
    for (uint64_t r = 0; r < 2000; r++)
        for (uint64_t i = 0; i < RW_KEYS; i++)
            if (mg_get_u64(race_map, i * 7 % RW_KEYS, &v))
                sum += v;
    atomic_store(&race_stop, 1);
    return (void *)(uintptr_t)sum;
}
static void *iterator_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&race_go);
    for (int r = 0; r < 2000; r++) {
        mg_iter it;
        uint64_t v, sum = 0;
        mg_iter_init(&it, race_map);
        while (mg_iter_next(&it, NULL, NULL, &v))
            sum += v;
        mg_iter_done(&it);
        (void)sum;
    }
    atomic_store(&race_stop, 1);
    return NULL;
}
static void race_reader(void *(*reader)(void *))
{
    mg_options o = {.name = "raced", .hint = RW_KEYS};
    race_map = mg_new(&o);
    if (!race_map)
        _exit(3);
    for (uint64_t i = 0; i < RW_KEYS; i++)
        mg_put_u64(race_map, i, i);
    pthread_barrier_init(&race_go, NULL, 2);
    pthread_t w, r;
    pthread_create(&w, NULL, update_writer, NULL);
    pthread_create(&r, NULL, reader, NULL);
    pthread_join(r, NULL);
    pthread_join(w, NULL);
    race_epilogue();
}
static void c_reader_vs_writer(void)
{
    race_reader(getter);
}
static void c_iterator_vs_writer(void)
{
    race_reader(iterator_thread);
}

static void t_racy_read_write(void)
{
    for (int run = 0; run < 5; run++) {
        child c = run_child(c_reader_vs_writer);
        expect_report(&c, "concurrent map read and map write", "raced");
    }
}

static void t_racy_iter_write(void)
{
    for (int run = 0; run < 5; run++) {
        child c = run_child(c_iterator_vs_writer);
        T_CHILD_FAIL_IF(&c, !is_report(&c, "concurrent map iteration and map write", 0) &&
                            !is_report(&c, "concurrent map read and map write", 0),
                "run %d: an iteration racing a writer was not reported", run);
        T_CHILD_FAIL_IF(&c, !strstr(c.out, "\"raced\""),
                "the report does not name the map");
        child_free(&c);
    }
}

/* ------------------------------------------------------------------------ */
/* The full report: both stacks, MAPGUARD_TRACEBACK, JSON, trace context     */
/* ------------------------------------------------------------------------ */

/* A real thread parked in the middle of a write: its map's allocator never
 * returns once armed, so the writer word holds that thread's token. */
static atomic_int holder_armed, holder_inside;
static mg_map *held_map;

static NOINLINE void holder_block(void)
{
    atomic_store(&holder_inside, 1);
    for (;;) {
        struct timespec t = {0, 1000000};
        nanosleep(&t, NULL);
    }
}
static NOINLINE void *fatal_test_blocking_malloc(void *ctx, size_t size)
{
    (void)ctx;
    if (atomic_load(&holder_armed))
        holder_block();
    return malloc(size);
}
static NOINLINE void *fatal_test_blocking_calloc(void *ctx, size_t size)
{
    (void)ctx;
    if (atomic_load(&holder_armed))
        holder_block();
    return calloc(1, size);
}
static void plain_free(void *ctx, void *p, size_t size)
{
    (void)ctx, (void)size;
    free(p);
}
static NOINLINE void *fatal_test_holder(void *arg)
{
    (void)arg;
    atomic_store(&holder_armed, 1);
    mg_put_u64(held_map, 1, 1); /* the first insert allocates: blocks */
    _exit(5);
}

/* Start the holder and wait until it is inside its write. */
static void start_holder(void)
{
    static const mg_allocator a = {fatal_test_blocking_malloc, fatal_test_blocking_calloc,
                                   plain_free, NULL};
    mg_options o = {.name = NAME, .alloc = &a};
    held_map = mg_new(&o);
    if (!held_map)
        _exit(3);
    pthread_t t;
    if (pthread_create(&t, NULL, fatal_test_holder, NULL) != 0)
        _exit(3);
    while (!atomic_load(&holder_inside)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static NOINLINE void fatal_test_detector_put(void)
{
    mg_put_u64(held_map, 2, 2);
    _exit(6);
}
static NOINLINE void fatal_test_detector_get(void)
{
    uint64_t v;
    mg_get_u64(held_map, 2, &v);
    _exit(6);
}
static void c_holder_put(void)
{
    start_holder();
    fatal_test_detector_put();
}
static void c_holder_get(void)
{
    start_holder();
    fatal_test_detector_get();
}

/* The block of the report whose header line starts with head (up to the
 * next blank line), or NULL. */
static char *block(const char *out, const char *head)
{
    for (const char *p = out; p && *p;) {
        if (strncmp(p, head, strlen(head)) == 0) {
            const char *e = strstr(p, "\n\n");
            size_t n = e ? (size_t)(e - p) + 1 : strlen(p);
            char *b = malloc(n + 1);
            T_ASSERT(b);
            memcpy(b, p, n);
            b[n] = 0;
            return b;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NULL;
}

/* The block headed head lists a frame of function fn. */
static void expect_frame(const child *c, const char *head, const char *fn)
{
    char *b = block(c->out, head);
    char want[128];
    snprintf(want, sizeof want, "\n%s(...)\n\t", fn);
    if (!b || !strstr(b, want)) {
        describe(c);
        T_FAIL("no frame %s in the block \"%s\"", fn, head);
    }
    free(b);
}

/* The second thread block (the thread that held the map) lists fn. */
static void expect_writer_frame(const child *c, const char *fn)
{
    const char *first = strstr(c->out, "\nthread ");
    const char *w = first ? strstr(first + 1, "\n\nthread ") : NULL;
    char head[128];
    size_t n = w ? strcspn(w + 2, "\n") : 0;
    if (!w || n >= sizeof head) {
        describe(c);
        T_FAIL("no second thread block");
    }
    memcpy(head, w + 2, n);
    head[n] = 0;
    expect_frame(c, head, fn);
}

static void t_both_stacks(void)
{
    child c = run_child(c_holder_put);
    T_CHILD_FAIL_IF(&c, !is_report(&c, "concurrent map writes", 0),
            "expected the concurrent writes report");
    /* Detector first, [running]; the holder second, [writing map ...]. */
    expect_frame(&c, "thread ", "fatal_test_detector_put");
    expect_frame(&c, "thread ", "mg_put_u64");
    char *w = strstr(strstr(c.out, "\nthread ") + 1, "\n\nthread ");
    T_ASSERT(w && strstr(w, "[writing map 0x") && strstr(w, "\"" NAME "\"]:\n"));
    expect_writer_frame(&c, "fatal_test_holder");
    expect_writer_frame(&c, "holder_block");
    /* file:line and module+offset on each frame's second line. */
    T_ASSERT(strstr(c.out, "test_fatal.c:"));
    T_ASSERT(strstr(c.out, "(test_fatal+0x"));
    /* The reporter's own frames and the signal handler are not shown. */
    T_ASSERT(!strstr(c.out, "report(...)") && !strstr(c.out, "park_handler"));
    child_free(&c);

    c = run_child(c_holder_get);
    expect_frame(&c, "thread ", "fatal_test_detector_get");
    expect_writer_frame(&c, "fatal_test_holder");
    expect_report(&c, "concurrent map read and map write", NAME);
}

static void c_traceback_none(void)
{
    setenv("MAPGUARD_TRACEBACK", "none", 1);
    c_holder_put();
}
static void c_traceback_single(void)
{
    setenv("MAPGUARD_TRACEBACK", "single", 1);
    c_holder_put();
}
static void c_traceback_crash(void)
{
    setenv("MAPGUARD_TRACEBACK", "crash", 1);
    c_holder_put();
}
static void exit7(int sig)
{
    (void)sig;
    _exit(7);
}
static void c_abort_handler_default(void)
{
    signal(SIGABRT, exit7);
    c_holder_put();
}
static void c_abort_handler_crash(void)
{
    signal(SIGABRT, exit7);
    c_traceback_crash();
}

static void t_traceback_modes(void)
{
    /* none: the first line only. */
    child c = run_child(c_traceback_none);
    T_CHILD_FAIL_IF(&c, !WIFSIGNALED(c.status) || WTERMSIG(c.status) != SIGABRT ||
                        strcmp(c.out, "fatal error: concurrent map writes\n") != 0,
            "MAPGUARD_TRACEBACK=none: the first line only, then abort");
    child_free(&c);

    /* single: the detector's stack; the holder named, its stack omitted. */
    c = run_child(c_traceback_single);
    expect_frame(&c, "thread ", "fatal_test_detector_put");
    T_CHILD_FAIL_IF(&c, !strstr(c.out, "(stack omitted: MAPGUARD_TRACEBACK=single)") ||
                        strstr(c.out, "fatal_test_holder"),
            "MAPGUARD_TRACEBACK=single shows the detecting thread only");
    expect_report(&c, "concurrent map writes", NAME);

    /* crash: both stacks, untrimmed (the reporter's frames show). */
    c = run_child(c_traceback_crash);
    expect_writer_frame(&c, "fatal_test_holder");
    T_CHILD_FAIL_IF(&c, !strstr(c.out, "mg__stack_self(...)"),
            "MAPGUARD_TRACEBACK=crash keeps the reporter's own frames");
    expect_report(&c, "concurrent map writes", NAME);

    /* The end: abort() runs the application's SIGABRT handler; crash
     * ends with SIGABRT's default action whatever the handler. */
    c = run_child(c_abort_handler_default);
    T_CHILD_FAIL_IF(&c, !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 7,
            "default mode: abort() must run the application's handler");
    child_free(&c);
    c = run_child(c_abort_handler_crash);
    T_CHILD_FAIL_IF(&c, !WIFSIGNALED(c.status) || WTERMSIG(c.status) != SIGABRT,
            "MAPGUARD_TRACEBACK=crash must die by SIGABRT");
    child_free(&c);
}

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static void t_traceparent_api(void)
{
    T_ASSERT(mg__traceparent() == NULL);
    T_EQ_I(mg_set_traceparent(TP), MG_OK);
    T_STREQ(mg__traceparent(), TP);
    static const char *bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",   /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* v00 + extra */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* upper case */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version ff */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero trace */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* zero parent */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* dash at 2 */
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",  /* dash at 35 */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",  /* dash at 52 */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  /* not hex */
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",  /* flags */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", /* v01, no dash */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (mg_set_traceparent(bad[i]) != MG_EINVAL)
            T_FAIL("accepted invalid traceparent \"%s\"", bad[i]);
        T_STREQ(mg__traceparent(), TP); /* the previous one stays */
    }
    /* A later version may append fields: the first 55 characters count. */
    T_EQ_I(mg_set_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"),
           MG_OK);
    T_STREQ(mg__traceparent(), "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    T_EQ_I(mg_set_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"),
           MG_OK);
    /* NULL clears. */
    T_EQ_I(mg_set_traceparent(NULL), MG_OK);
    T_ASSERT(mg__traceparent() == NULL);
}

static void *other_thread_tp(void *arg)
{
    *(const char **)arg = mg__traceparent();
    return NULL;
}
static void t_traceparent_per_thread(void)
{
    T_EQ_I(mg_set_traceparent(TP), MG_OK);
    const char *seen = TP;
    pthread_t t;
    T_ASSERT(pthread_create(&t, NULL, other_thread_tp, &seen) == 0);
    pthread_join(t, NULL);
    T_ASSERT(seen == NULL);
    T_STREQ(mg__traceparent(), TP);
}

static char report_dir[64];
static void c_json_report(void)
{
    setenv("MAPGUARD_REPORT_DIR", report_dir, 1);
    mg_on_fatal(record_hook, &hook_arg);
    if (mg_set_traceparent(TP) != MG_OK)
        _exit(8);
    c_holder_put();
}

/* The one JSON file the child wrote into report_dir, read whole. */
static char *read_report_file(char *path, size_t pathcap)
{
    DIR *d = opendir(report_dir);
    T_ASSERT(d);
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "mapguard-fatal-", 15) != 0)
            continue;
        T_ASSERT(strlen(e->d_name) > 5 &&
                 strcmp(e->d_name + strlen(e->d_name) - 5, ".json") == 0);
        snprintf(path, pathcap, "%s/%s", report_dir, e->d_name);
        found++;
    }
    closedir(d);
    T_EQ_I(found, 1);
    FILE *f = fopen(path, "r");
    T_ASSERT(f);
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void t_report_dir_json(void)
{
    snprintf(report_dir, sizeof report_dir, "/tmp/mg-fatal-json-XXXXXX");
    T_ASSERT(mkdtemp(report_dir));
    hook_reset();
    child c = run_child(c_json_report);
    T_CHILD_FAIL_IF(&c, !is_report(&c, "concurrent map writes", 0),
            "expected the concurrent writes report");
    char path[256];
    char *js = read_report_file(path, sizeof path);
    /* Valid JSON, as a log shipper parses it. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 -m json.tool '%s' >/dev/null", path);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "%s\n", js);
        T_FAIL("%s: not valid JSON (python3 -m json.tool: %d)", path, rc);
    }
    /* The OTLP LogRecord shape and OpenTelemetry's attribute names. */
    static const char *want[] = {
        "\"severityNumber\":21",
        "\"severityText\":\"FATAL\"",
        "\"body\":{\"stringValue\":\"fatal error: concurrent map writes\"}",
        "\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\"",
        "\"spanId\":\"00f067aa0ba902b7\"",
        "{\"key\":\"exception.type\",\"value\":{\"stringValue\":\"mapguard."
        "ConcurrentMapWrites\"}}",
        "{\"key\":\"exception.message\",\"value\":{\"stringValue\":\"concurrent map "
        "writes\"}}",
        "{\"key\":\"exception.stacktrace\",\"value\":{\"stringValue\":\"thread ",
        "fatal_test_detector_put(...)\\n\\t",
        "fatal_test_holder(...)\\n\\t",
        "{\"key\":\"thread.id\",\"value\":{\"intValue\":\"",
        "{\"key\":\"process.pid\",\"value\":{\"intValue\":\"",
        "{\"key\":\"mapguard.map.name\",\"value\":{\"stringValue\":\"" NAME "\"}}",
        "\\\"" NAME "\\\"]:", /* the quotes of the writer's header, escaped */
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(js, want[i])) {
            fprintf(stderr, "%s\n", js);
            T_FAIL("the JSON report lacks %s", want[i]);
        }
    /* The hook got the same JSON, the report text as printed, and the
     * trace context. */
    T_EQ_I(atomic_load(&rec->calls), 1);
    js[strcspn(js, "\n")] = 0;
    T_STREQ(rec->json, js);
    T_STREQ(rec->report, c.out);
    T_STREQ(rec->traceparent, TP);
    T_ASSERT(rec->other_tid > 0 && rec->tid > 0 && rec->other_tid != rec->tid);
    /* The text report carries the trace context too. */
    T_ASSERT(has_line_starting(c.out, "trace: " TP "\n"));
    child_free(&c);
    unlink(path);
    rmdir(report_dir);
}

/* Symbolisation that cannot run (here: no file descriptor left for libdw
 * to read /proc/self/maps) still leaves a report, with raw frames. */
static void c_no_symbols(void)
{
    mg__crash_handler_install(); /* as mg_new does: backtrace() is warm */
    struct rlimit few = {64, 64};
    setrlimit(RLIMIT_NOFILE, &few);
    while (dup(STDERR_FILENO) >= 0)
        ;
    c_holder_put();
}
static void t_raw_frames_fallback(void)
{
    child c = run_child(c_no_symbols);
    char *self = block(c.out, "thread ");
    if (!self || !strstr(self, "[running]:\n\ttest_fatal+0x") || strstr(c.out, "(...)") ||
        !strstr(c.out, "(no symbols: libdw could not read the process; frames are "
                       "module+offset)\n")) {
        describe(&c);
        T_FAIL("without libdw the report must still list module+offset frames");
    }
    free(self);
    /* The holder's block has raw frames too. */
    T_ASSERT(strstr(c.out, "\"]:\n\t"));
    expect_report(&c, "concurrent map writes", NAME);
}

/* An address no process maps (the first page). */
static int *volatile bad_address = (int *)(uintptr_t)16;

/* The reporter faults (here: in the hook) after printing: still one
 * report, still an abort. */
static void segv_hook(const mg_fatal_info *info, void *arg)
{
    record_hook(info, arg);
    *bad_address = 1;
}
static void c_faulting_hook(void)
{
    mg__crash_handler_install();
    mg_on_fatal(segv_hook, &hook_arg);
    c_put_during_write();
}
static void t_reporter_faults(void)
{
    hook_reset();
    child c = run_child(c_faulting_hook);
    const char *first = strstr(c.out, "fatal error: ");
    if (!first || strstr(first + 1, "fatal error: ") ||
        !strstr(c.out, "mapguard: signal 11 inside the fatal report; aborting")) {
        describe(&c);
        T_FAIL("a reporter that faults must print one report and a note");
    }
    expect_report(&c, "concurrent map writes", NAME);
    T_EQ_I(atomic_load(&rec->calls), 1);
}

/* ------------------------------------------------------------------------ */
/* Faulting reads: the SIGSEGV/SIGBUS catch                                   */
/* ------------------------------------------------------------------------ */

/* A map whose bucket array pointer points at a PROT_NONE page: the read
 * passes its entry checks, then faults inside the read section, just as
 * when a writer frees the array under it. */
static mg_map *faulting_map(void)
{
    mg__crash_handler_install();
    mg_map *m = mk(MG_KEY_U64, 100);
    void *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        _exit(3);
    m->buckets = page;
    return m;
}
static NOINLINE void fatal_test_faulting_reader(mg_map *m)
{
    uint64_t v;
    mg_get_u64(m, 5, &v);
    _exit(9); /* not reached */
}
static void c_read_fault(void)
{
    fatal_test_faulting_reader(faulting_map());
}
static void t_read_fault(void)
{
    child c = run_child(c_read_fault);
    T_CHILD_FAIL_IF(&c, !is_report(&c, "concurrent map read and map write", 0) ||
                        !strstr(c.out, "SIGSEGV at address 0x") || !strstr(c.out, "in a map read"),
            "a fault inside the read section must give the read/write report");
    /* The faulting read and its caller are frames of the stack. */
    expect_frame(&c, "thread ", "mg_get_u64");
    expect_frame(&c, "thread ", "fatal_test_faulting_reader");
    T_ASSERT(!strstr(c.out, "\nread_fault(...)"));
    /* The map is found (no write is in progress: the report says so). */
    T_ASSERT(strstr(c.out, "no write was in progress"));
    expect_report(&c, "concurrent map read and map write", NAME);
}

/* Faults elsewhere keep their old fate. */
static NOINLINE void fatal_test_null_deref(void)
{
    *bad_address = 1;
    _exit(9);
}
static void c_fault_outside(void)
{
    mk(MG_KEY_U64, 10);
    mg__crash_handler_install();
    fatal_test_null_deref();
}
static void app_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    static const char line[] = "APP HANDLER\n";
    ssize_t w = write(STDERR_FILENO, line, sizeof line - 1);
    (void)w;
    _exit(42);
}
static void install_app_segv(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = app_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
}
static void c_fault_outside_app_handler(void)
{
    install_app_segv();
    c_fault_outside();
}
static void c_read_fault_app_handler(void)
{
    install_app_segv();
    c_read_fault();
}
static void c_read_fault_disabled(void)
{
    setenv("MAPGUARD_CATCH_FAULTS", "0", 1);
    c_read_fault();
}
static void c_sent_segv(void)
{
    mk(MG_KEY_U64, 10);
    mg__crash_handler_install();
    raise(SIGSEGV);
    _exit(9);
}

static bool died_by_segv(const child *c)
{
    if (UNDER_SEGV_SANITIZER) /* its handler was first: ours chains to it */
        return strstr(c->out, "Sanitizer: SEGV") != NULL;
    return WIFSIGNALED(c->status) && WTERMSIG(c->status) == SIGSEGV;
}

static void t_fault_outside(void)
{
    /* The default action: the process still dies by SIGSEGV (under ASan:
     * ASan's handler, installed first, still reports it). */
    child c = run_child(c_fault_outside);
    T_CHILD_FAIL_IF(&c, !died_by_segv(&c) || strstr(c.out, "fatal error"),
            "a fault outside the read section must die as before");
    child_free(&c);
    /* A signal sent with kill(), not a fault: the same. */
    c = run_child(c_sent_segv);
    T_CHILD_FAIL_IF(&c, !UNDER_SEGV_SANITIZER && (!died_by_segv(&c) || strstr(c.out, "fatal error")),
            "a sent SIGSEGV must die as before");
    child_free(&c);
    /* The application's handler, installed before ours, still gets it. */
    c = run_child(c_fault_outside_app_handler);
    T_CHILD_FAIL_IF(&c, !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 42 ||
                        strcmp(c.out, "APP HANDLER\n") != 0,
            "a fault outside the read section must reach the previous handler");
    child_free(&c);
    /* ... but a faulting read is ours. */
    c = run_child(c_read_fault_app_handler);
    expect_report(&c, "concurrent map read and map write", NAME);
    /* MAPGUARD_CATCH_FAULTS=0: no catch. */
    c = run_child(c_read_fault_disabled);
    T_CHILD_FAIL_IF(&c, !died_by_segv(&c) || strstr(c.out, "fatal error"),
            "MAPGUARD_CATCH_FAULTS=0 must leave a faulting read alone");
    child_free(&c);
}

/* The CI failure: a reader racing a writer that grows the map (and frees
 * the old bucket arrays) must end in the report, never in a bare SIGSEGV. */
static void *growing_writer(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&race_go);
    for (uint64_t i = 0; i < 1000000; i++)
        mg_put_u64(race_map, (i * 0x9e3779b97f4a7c15ull) | 1, i);
    return NULL;
}
static void *growing_reader(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&race_go);
    uint64_t v, sum = 0;
    for (uint64_t i = 0; i < 100000000; i++)
        if (mg_get_u64(race_map, i * 0x9e3779b97f4a7c15ull, &v))
            sum += v;
    return (void *)(uintptr_t)sum;
}
static void c_reader_vs_growth(void)
{
    mg__crash_handler_install();
    mg_options o = {.name = "raced"};
    race_map = mg_new(&o);
    if (!race_map)
        _exit(3);
    for (uint64_t i = 0; i < 1000; i++)
        mg_put_u64(race_map, i * 0x9e3779b97f4a7c15ull, i);
    pthread_barrier_init(&race_go, NULL, 2);
    pthread_t w, r;
    pthread_create(&r, NULL, growing_reader, NULL);
    pthread_create(&w, NULL, growing_writer, NULL);
    pthread_join(w, NULL);
    pthread_join(r, NULL);
    race_epilogue();
}
static void t_racy_read_growth(void)
{
    for (int run = 0; run < 30; run++) {
        child c = run_child(c_reader_vs_growth);
        /* Under ASan the read of freed bucket memory may be caught first,
         * by ASan, as a heap-use-after-free in the read: caught too. */
        bool asan_caught = UNDER_ASAN && strstr(c.out, "AddressSanitizer: heap-use-after-free") &&
                           strstr(c.out, "in mg_get_u64");
        T_CHILD_FAIL_IF(&c, !asan_caught && !is_report(&c, "concurrent map read and map write", 0),
                "run %d: a read racing growth did not end in the report", run);
        child_free(&c);
    }
}

/* ------------------------------------------------------------------------ */
/* Chaining to the previous handler: its flags count                        */
/* ------------------------------------------------------------------------ */

static atomic_int host_calls;

/* A host crash handler that logs and returns, trusting SA_RESETHAND to let
 * the re-fault kill the process.  Called twice: the chain looped. */
static void resethand_host(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    if (atomic_fetch_add(&host_calls, 1) != 0)
        _exit(77);
    static const char line[] = "HOST HANDLER\n";
    ssize_t w = write(STDERR_FILENO, line, sizeof line - 1);
    (void)w;
}
static void c_chain_resethand(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = resethand_host;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    mk(MG_KEY_U64, 10); /* the first mg_new installs the catch */
    fatal_test_null_deref();
}

/* The old action's sa_mask and SA_NODEFER hold during its call. */
static void mask_host(int sig, siginfo_t *si, void *uc)
{
    (void)si, (void)uc;
    sigset_t now;
    pthread_sigmask(SIG_SETMASK, NULL, &now);
    bool ok = sigismember(&now, SIGUSR1) == 1 && sigismember(&now, sig) == 0;
    _exit(ok ? 42 : 43);
}
static void c_chain_mask_nodefer(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = mask_host;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR1);
    sigaction(SIGSEGV, &sa, NULL);
    mk(MG_KEY_U64, 10);
    fatal_test_null_deref();
}

/* SIG_IGN stored with SA_SIGINFO: no function to call.  A sent SIGSEGV is
 * ignored as before; a fault dies by SIGSEGV. */
static void c_chain_ign_siginfo_sent(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    mk(MG_KEY_U64, 10);
    raise(SIGSEGV);
    _exit(9);
}
static void c_chain_dfl_siginfo_fault(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    mk(MG_KEY_U64, 10);
    fatal_test_null_deref();
}

static void t_chain_flags(void)
{
    child c = run_child(c_chain_resethand);
    T_CHILD_FAIL_IF(&c, !WIFSIGNALED(c.status) || WTERMSIG(c.status) != SIGSEGV ||
                        strcmp(c.out, "HOST HANDLER\n") != 0,
            "an SA_RESETHAND host handler must run once, then SIGSEGV kills");
    child_free(&c);
    c = run_child(c_chain_mask_nodefer);
    T_CHILD_FAIL_IF(&c, !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 42,
            "the old handler must run with its sa_mask and SA_NODEFER");
    child_free(&c);
    c = run_child(c_chain_ign_siginfo_sent);
    T_CHILD_FAIL_IF(&c, !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 9,
            "an ignored SIGSEGV (SIG_IGN with SA_SIGINFO) must stay ignored");
    child_free(&c);
    c = run_child(c_chain_dfl_siginfo_fault);
    T_CHILD_FAIL_IF(&c, !WIFSIGNALED(c.status) || WTERMSIG(c.status) != SIGSEGV || c.len != 0,
            "SIG_DFL with SA_SIGINFO: the fault must kill by SIGSEGV, silently");
    child_free(&c);
}

/* ------------------------------------------------------------------------ */
/* A faulting read with no map in sight is not a race                        */
/* ------------------------------------------------------------------------ */

static NOINLINE void fatal_test_bad_pointer_read(void)
{
    uint64_t v;
    mg_get_u64((mg_map *)(uintptr_t)0x1000, 1, &v); /* faults in the read section */
    _exit(9);
}
static void c_bad_pointer(void)
{
    mg__crash_handler_install(); /* as mg_new does; no map exists */
    fatal_test_bad_pointer_read();
}
static void c_bad_pointer_app_handler(void)
{
    install_app_segv();
    c_bad_pointer();
}
/* A host that maps guard pages in on demand (a lazily committed arena):
 * a fault on a mapped PROT_NONE page is its own, even in the read
 * section.  Here the "map" lives on such a page; once the host maps it in,
 * the read finds a zero header: a corrupted map, reported as such. */
static char *guard_page;
static void guard_host(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    char *a = si->si_addr;
    if (a < guard_page || a >= guard_page + 4096)
        _exit(44);
    static const char line[] = "GUARD\n";
    ssize_t w = write(STDERR_FILENO, line, sizeof line - 1);
    (void)w;
    if (mprotect(guard_page, 4096, PROT_READ | PROT_WRITE) != 0)
        _exit(45);
}
static void c_guard_page(void)
{
    guard_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (guard_page == MAP_FAILED)
        _exit(3);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = guard_host;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    mg__crash_handler_install();
    uint64_t v;
    mg_get_u64((mg_map *)(void *)guard_page, 1, &v);
    _exit(9);
}
static void t_bad_pointer(void)
{
    child c = run_child(c_bad_pointer);
    T_CHILD_FAIL_IF(&c, !died_by_segv(&c) || strstr(c.out, "fatal error") || strstr(c.out, "mapguard"),
            "a bad map pointer must die by SIGSEGV, without a report");
    child_free(&c);
    c = run_child(c_bad_pointer_app_handler);
    T_CHILD_FAIL_IF(&c, !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 42 ||
                        strcmp(c.out, "APP HANDLER\n") != 0,
            "a fault with no map header in sight goes to the previous handler");
    child_free(&c);
    c = run_child(c_guard_page);
    T_CHILD_FAIL_IF(&c, strncmp(c.out, "GUARD\nfatal error: corrupted map header\n", 40) != 0 ||
                        !is_report(&c, "corrupted map header", 1),
            "a fault on the host's guard page goes to the host first");
    child_free(&c);
}

/* ------------------------------------------------------------------------ */
/* The watchdog is not the application's SIGALRM                            */
/* ------------------------------------------------------------------------ */

static atomic_long host_ticks;
static void host_tick(int sig)
{
    (void)sig;
    if (atomic_fetch_add(&host_ticks, 1) > 30000) /* 30 s: a hang */
        _exit(99);
}
static void start_host_itimer(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = host_tick;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 1000}, {0, 1000}}; /* every millisecond */
    setitimer(ITIMER_REAL, &it, NULL);
}
/* The hook sees the application's interval timer still ticking: the
 * report neither took SIGALRM nor re-armed ITIMER_REAL (alarm() would). */
static void tick_hook(const mg_fatal_info *info, void *arg)
{
    (void)info, (void)arg;
    long before = atomic_load(&host_ticks);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 50000000L);
    if (atomic_load(&host_ticks) > before) {
        static const char line[] = "HOST TIMER ALIVE\n";
        ssize_t w = write(STDERR_FILENO, line, sizeof line - 1);
        (void)w;
    }
}
static void c_itimer_holder(void)
{
    start_host_itimer();
    mg_on_fatal(tick_hook, NULL);
    c_holder_put();
}
/* race_epilogue's sleep, but the ticks cut sleep() short. */
static _Noreturn void tick_proof_epilogue(void)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        struct timespec d = {0, 10000000};
        nanosleep(&d, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < 5);
    _exit(0);
}
static void c_itimer_two_writers(void)
{
    start_host_itimer();
    mg_options o = {.name = "raced"};
    race_map = mg_new(&o);
    if (!race_map)
        _exit(3);
    pthread_barrier_init(&race_go, NULL, 2);
    pthread_t a, b;
    pthread_create(&a, NULL, writer_thread, (void *)(uintptr_t)1);
    pthread_create(&b, NULL, writer_thread, (void *)(uintptr_t)2);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    tick_proof_epilogue();
}
static void t_host_sigalrm(void)
{
    /* Deterministic: both stacks, symbolised, no watchdog line. */
    child c = run_child(c_itimer_holder);
    T_CHILD_FAIL_IF(&c, !is_report(&c, "concurrent map writes", 0) || strstr(c.out, "watchdog") ||
                        strstr(c.out, "symbolisation failed") || !strstr(c.out, "HOST TIMER ALIVE\n"),
            "an application's SIGALRM must not cut the report short, and its "
            "timer must keep ticking");
    expect_frame(&c, "thread ", "fatal_test_detector_put");
    expect_writer_frame(&c, "fatal_test_holder");
    expect_report(&c, "concurrent map writes", NAME);
}
static void t_racy_host_sigalrm(void)
{
    /* Two writers; the report has both thread blocks. */
    for (int run = 0; run < 5; run++) {
        child c = run_child(c_itimer_two_writers);
        const char *first = strstr(c.out, "\nthread ");
        T_CHILD_FAIL_IF(&c, !is_report(&c, "concurrent map writes", 0) || strstr(c.out, "watchdog") ||
                            !first || !strstr(first, "[running]:\n") ||
                            !strstr(first + 1, "\n\nthread ") || !strstr(c.out, "[writing map 0x"),
                "run %d: with a 1 ms SIGALRM the report must have both thread "
                "blocks",
                run);
        child_free(&c);
    }
}

/* ------------------------------------------------------------------------ */
/* The wrong key kind on a map of every concurrent mode                      */
/* ------------------------------------------------------------------------ */

static mg_mode kind_mode;
static mg_map *mk_mode(mg_keykind kind)
{
    mg_options o = {.mode = kind_mode, .key = kind, .name = NAME};
    mg_map *m = mg_new(&o);
    if (!m)
        _exit(3);
    return m;
}
static void c_mode_bytes_on_u64(void)
{
    mg_put(mk_mode(MG_KEY_U64), "a", 1, 1);
}
static void c_mode_u64_on_bytes(void)
{
    mg_put_u64(mk_mode(MG_KEY_BYTES), 1, 1);
}
static void c_mode_get_u64_on_bytes(void)
{
    uint64_t v;
    mg_get_u64(mk_mode(MG_KEY_BYTES), 1, &v);
}
static void c_mode_get_bytes_on_u64(void)
{
    uint64_t v;
    mg_get(mk_mode(MG_KEY_U64), "a", 1, &v);
}
static void t_mode_wrong_key_kind(void)
{
    static const mg_mode modes[] = {MG_RWLOCK, MG_SHARDED, MG_READMOSTLY, MG_SNAPSHOT,
                                    MG_ACTOR};
    /* Even: a u64 map; odd: a bytes map. */
    void (*fns[])(void) = {c_mode_bytes_on_u64, c_mode_u64_on_bytes,
                           c_mode_get_bytes_on_u64, c_mode_get_u64_on_bytes};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        kind_mode = modes[i];
        for (size_t j = 0; j < sizeof fns / sizeof fns[0]; j++) {
            child c = run_child(fns[j]);
            char want[64];
            snprintf(want, sizeof want, "mode=%s keys=%s", mg_mode_name(modes[i]),
                     j % 2 == 0 ? "u64" : "bytes");
            T_CHILD_FAIL_IF(&c, !strstr(c.out, want) || !strstr(c.out, "call on a map created with"),
                    "mode %s case %zu: the report lacks \"%s\" or the detail",
                    mg_mode_name(modes[i]), j, want);
            expect_report(&c, "wrong key kind for map", NAME);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The hook's pair, JSON validity                                           */
/* ------------------------------------------------------------------------ */

static int arg_a, arg_b;
static void hook_a(const mg_fatal_info *info, void *arg)
{
    (void)info;
    _exit(arg == &arg_a ? 50 : 51);
}
static void hook_b(const mg_fatal_info *info, void *arg)
{
    (void)info;
    _exit(arg == &arg_b ? 50 : 51);
}
static void *hook_setter(void *arg)
{
    for (;;) {
        if (arg)
            mg_on_fatal(hook_a, &arg_a);
        else
            mg_on_fatal(hook_b, &arg_b);
    }
    return NULL;
}
static void c_hook_pair_race(void)
{
    mg_on_fatal(hook_a, &arg_a);
    pthread_t t1, t2;
    pthread_create(&t1, NULL, hook_setter, (void *)1);
    pthread_create(&t2, NULL, hook_setter, NULL);
    struct timespec d = {0, 20000000};
    nanosleep(&d, NULL);
    c_put_during_write();
}
static void t_hook_pair(void)
{
    /* A hook always gets its own argument, however the setters race. */
    for (int run = 0; run < 10; run++) {
        child c = run_child(c_hook_pair_race);
        T_CHILD_FAIL_IF(&c, !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 50,
                "run %d: the hook ran with another call's argument", run);
        child_free(&c);
    }
}

/* A map name that is long and not UTF-8: the text caps it, the JSON stays
 * valid (bad bytes become U+FFFD). */
static char *odd_name;
static void c_json_odd_name(void)
{
    setenv("MAPGUARD_REPORT_DIR", report_dir, 1);
    mg_options o = {.name = odd_name};
    mg_map *m = mg_new(&o);
    if (!m)
        _exit(3);
    fake_write(m);
    mg_put_u64(m, 1, 1);
}
static void t_json_odd_name(void)
{
    /* Ill-formed: F5 lead, overlong C0 AF and E0 80 AF, a surrogate
     * (ED A0 80), F8; then 200 KB of 'x'. */
    static const char bad[] = "n\xf5\x80\x80\x80-\xc0\xaf-\xe0\x80\xaf-\xed\xa0\x80-\xf8-"
                              "\xf4\x90\x80\x80-ok\xc3\xa9";
    size_t big = 200 * 1024;
    odd_name = malloc(sizeof bad + big);
    T_ASSERT(odd_name);
    memcpy(odd_name, bad, sizeof bad - 1);
    memset(odd_name + sizeof bad - 1, 'x', big);
    odd_name[sizeof bad - 1 + big] = 0;
    snprintf(report_dir, sizeof report_dir, "/tmp/mg-fatal-json-XXXXXX");
    T_ASSERT(mkdtemp(report_dir));
    child c = run_child(c_json_odd_name);
    T_CHILD_FAIL_IF(&c, !is_report(&c, "concurrent map writes", 0) || c.len > 16 * 1024,
            "expected one report with the map name capped");
    char path[256];
    char *js = read_report_file(path, sizeof path);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 -m json.tool '%s' >/dev/null", path);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "%.2000s\n", js);
        T_FAIL("%s: not valid JSON (python3 -m json.tool: %d)", path, rc);
    }
    /* Every ill-formed sequence is replaced; the well-formed é is kept. */
    T_ASSERT(strstr(js, "\"n\\ufffd\\ufffd\\ufffd\\ufffd-\\ufffd\\ufffd-"));
    T_ASSERT(strstr(js, "ok\xc3\xa9xxx"));
    child_free(&c);
    free(odd_name);
    unlink(path);
    rmdir(report_dir);
}

/* ------------------------------------------------------------------------ */
/* safe_read: no descriptor held, no stale bytes in its pipe fallback       */
/* ------------------------------------------------------------------------ */

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}
static void c_no_fd_held(void)
{
    int before = count_fds();
    mk(MG_KEY_U64, 10);
    _exit(count_fds() == before ? 0 : 10);
}

/* process_vm_readv refused (EPERM), as under a strict seccomp policy. */
static void refuse_process_vm_readv(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        _exit(20);
}
static void c_pipe_fallback(void)
{
    refuse_process_vm_readv();
    int before = count_fds();
    mg__crash_handler_install();
    /* A record straddling a readable page and a PROT_NONE one: the pipe
     * takes the readable half, then the write stops. */
    char *pages = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
    if (pages == MAP_FAILED || mprotect(pages + 4096, 4096, PROT_NONE) != 0)
        _exit(3);
    memset(pages, 0x55, 4096);
    uintptr_t straddle = (uintptr_t)pages + 4096 - sizeof(long) / 2;
    if (mg__token_tid(straddle) != 0)
        _exit(11);
    /* Then a readable record reads back exactly, no stale bytes first. */
    long tid_rec = 4242;
    if (mg__token_tid((uintptr_t)&tid_rec) != 4242)
        _exit(12);
    if (count_fds() != before)
        _exit(13);
    _exit(0);
}
static void c_read_fault_no_vm_readv(void)
{
    refuse_process_vm_readv();
    c_read_fault();
}
static void t_safe_read(void)
{
    child c = run_child(c_no_fd_held);
    T_CHILD_FAIL_IF(&c, !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0,
            "the first mg_new must not keep a descriptor open");
    child_free(&c);
    c = run_child(c_pipe_fallback);
    T_CHILD_FAIL_IF(&c, !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0,
            "safe_read's pipe fallback: unreadable -> 0, then exact bytes, no "
            "descriptor left (exit 11, 12, 13: which failed)");
    child_free(&c);
    /* The fault catch finds the map through the fallback too. */
    c = run_child(c_read_fault_no_vm_readv);
    T_CHILD_FAIL_IF(&c, !strstr(c.out, "no write was in progress"),
            "without process_vm_readv the map must still be found");
    expect_report(&c, "concurrent map read and map write", NAME);
}

/* The harness itself: a child that exits cleanly, or dies another way, is
 * not taken for a report (so the checks above can fail). */
static void c_clean_exit(void)
{
    fprintf(stderr, "fatal error: concurrent map writes\nthread 1\n");
}
static void c_segv(void)
{
    raise(SIGSEGV);
}
static void c_wrong_first_line(void)
{
    fprintf(stderr, "fatal error: concurrent map writesX\nthread 1\n");
    abort();
}
static void t_harness_can_fail(void)
{
    child c = run_child(c_clean_exit);
    T_ASSERT(!is_report(&c, "concurrent map writes", 0));
    child_free(&c);
    c = run_child(c_segv);
    T_ASSERT(!is_report(&c, "concurrent map writes", 0));
    child_free(&c);
    c = run_child(c_wrong_first_line);
    T_ASSERT(!is_report(&c, "concurrent map writes", 0));
    child_free(&c);
}

int main(int argc, char **argv)
{
    rec = mmap(NULL, sizeof *rec, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
               -1, 0);
    T_ASSERT(rec != MAP_FAILED);
    static const t_case cases[] = {
        {"harness_can_fail", t_harness_can_fail},
        {"writes_deterministic", t_writes_deterministic},
        {"writes_detected_on_exit", t_writes_detected_on_exit},
        {"read_deterministic", t_read_deterministic},
        {"iter_deterministic", t_iter_deterministic},
        {"nil_map", t_nil_map},
        {"freed_map", t_freed_map},
        {"corrupted_header", t_corrupted_header},
        {"wrong_key_kind", t_wrong_key_kind},
        {"hook", t_hook},
        {"racy_writes", t_racy_writes},
        {"racy_read_write", t_racy_read_write},
        {"racy_iter_write", t_racy_iter_write},
        {"both_stacks", t_both_stacks},
        {"traceback_modes", t_traceback_modes},
        {"traceparent_api", t_traceparent_api},
        {"traceparent_per_thread", t_traceparent_per_thread},
        {"report_dir_json", t_report_dir_json},
        {"reporter_faults", t_reporter_faults},
        {"raw_frames_fallback", t_raw_frames_fallback},
        {"read_fault", t_read_fault},
        {"fault_outside", t_fault_outside},
        {"racy_read_growth", t_racy_read_growth},
        {"chain_flags", t_chain_flags},
        {"bad_pointer", t_bad_pointer},
        {"host_sigalrm", t_host_sigalrm},
        {"racy_host_sigalrm", t_racy_host_sigalrm},
        {"mode_wrong_key_kind", t_mode_wrong_key_kind},
        {"hook_pair", t_hook_pair},
        {"json_odd_name", t_json_odd_name},
        {"safe_read", t_safe_read},
        {NULL, NULL}};
    return t_main(cases, argc, argv);
}
