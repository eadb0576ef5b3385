/*
 * trace_prog.c - drives the growth timeline (src/obs/trace.c) for
 * tests/tracing/check_trace.py, which validates the JSON it leaves.
 *
 *   trace_prog api                 mg_trace_start/stop's contract (alone)
 *   trace_prog workload [FILE]     maps that grow through several doublings,
 *                                  a same-size grow, shrinks, promotions and
 *                                  snapshot publishes; with FILE the trace
 *                                  runs through the API, else MAPGUARD_TRACE
 *                                  starts it and exit finishes it.  Prints
 *                                  each map's counters as one JSON line.
 *   trace_prog threads FILE        four threads, a map each, growing and
 *                                  shrinking at once into one trace
 *   trace_prog synthetic FILE      the event macros on stand-in headers:
 *                                  volume bound, name escaping (invalid
 *                                  UTF-8 included), address reuse,
 *                                  unfinished growth, fork, fatal.
 *   trace_prog fork_locks          forks while other threads scrape and
 *                                  trace: no child deadlocks on a lock a
 *                                  parent thread held at the fork
 *   trace_prog fork_fd             a child that closes every descriptor
 *                                  and opens a file keeps that file
 *                                  across its first map event
 */
#include "internal.h"
#include "obs/events.h"
#include "obs/obs.h"
#include "../test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    return x ^ (x >> 33);
}

static mg_map *new_named(const char *name, mg_mode mode)
{
    mg_options o = {.mode = mode, .name = name};
    mg_map *m = mg_new(&o);
    if (!m)
        T_FAIL("mg_new(%s): %s", name, strerror(errno));
    return m;
}

static mg_stats stats_of(const mg_map *m)
{
    mg_stats s;
    T_EQ_I(mg_stats_get(m, &s), MG_OK);
    return s;
}

/* Drive writes until m's growth or shrink is over (put and delete one key
 * that is not otherwise present: each write does grow work). */
static void finish_growth(mg_map *m)
{
    for (long i = 0; stats_of(m).growing; i++) {
        if (i > 10000000)
            T_FAIL("growth never finished");
        T_EQ_I(mg_put_u64(m, UINT64_MAX, 1), MG_OK);
        T_ASSERT(mg_del_u64(m, UINT64_MAX));
    }
}

static void print_engine(const char *name, const mg_map *m, bool comma)
{
    mg_stats s = stats_of(m);
    printf("%s\"%s\":{\"grows_total\":%llu,\"same_size_grows_total\":%llu,"
           "\"shrinks_total\":%llu,\"B\":%u,\"growing\":%s}",
           comma ? "," : "", name, (unsigned long long)s.grows_total,
           (unsigned long long)s.same_size_grows_total, (unsigned long long)s.shrinks_total,
           s.B, s.growing ? "true" : "false");
}

static int workload(const char *path)
{
    if (path)
        T_EQ_I(mg_trace_start(path), MG_OK);

    /* Doublings from B = 0, then a shrink back down. */
    mg_map *grow = new_named("timeline", MG_UNSYNC);
    const uint64_t n = 20000;
    for (uint64_t i = 0; i < n; i++)
        T_EQ_I(mg_put_u64(grow, mix(i), i), MG_OK);
    finish_growth(grow);
    for (uint64_t i = 0; i < n - 60; i++)
        T_ASSERT(mg_del_u64(grow, mix(i)));
    finish_growth(grow);

    /* Churn at a steady size: overflow buckets pile up and a same-size
     * grow compacts them (as tests/unit same_size_grow). */
    mg_map *churn = new_named("churn \"q\"", MG_UNSYNC);
    uint64_t oldest = 0, next = 50;
    for (uint64_t i = 0; i < next; i++)
        T_EQ_I(mg_put_u64(churn, mix(i + (1ull << 40)), i), MG_OK);
    for (int op = 0; op < 20000 || stats_of(churn).same_size_grows_total == 0; op++) {
        if (op > 2000000)
            T_FAIL("no same-size grow");
        T_EQ_I(mg_put_u64(churn, mix(next++ + (1ull << 40)), 1), MG_OK);
        T_ASSERT(mg_del_u64(churn, mix(oldest++ + (1ull << 40))));
    }
    finish_growth(churn);

    /* An unnamed map: its track is named by its address. */
    mg_map *anon = mg_new(NULL);
    T_ASSERT(anon != NULL);
    for (uint64_t i = 0; i < 100; i++)
        T_EQ_I(mg_put_u64(anon, i, i), MG_OK);
    finish_growth(anon);

    /* MG_READMOSTLY promotes after enough misses; MG_SNAPSHOT publishes. */
    mg_map *rm = new_named("readmostly", MG_READMOSTLY);
    for (uint64_t i = 0; i < 64; i++)
        T_EQ_I(mg_put_u64(rm, i, i), MG_OK);
    for (int r = 0; r < 4; r++)
        for (uint64_t i = 0; i < 64; i++)
            (void)mg_get_u64(rm, i, NULL);
    mg_map *snap = new_named("snapshot", MG_SNAPSHOT);
    for (uint64_t i = 0; i < 10; i++)
        T_EQ_I(mg_put_u64(snap, i, i), MG_OK);

    mg_metric_sample rs, ss;
    mg__sample(rm, &rs);
    mg__sample(snap, &ss);
    printf("{");
    print_engine("timeline", grow, false);
    print_engine("churn", churn, true);
    print_engine("anon", anon, true);
    printf(",\"anon_addr\":\"%p\"", (void *)anon);
    printf(",\"promotions_total\":%llu,\"snapshots_published_total\":%llu}\n",
           (unsigned long long)rs.promotions_total,
           (unsigned long long)ss.snapshots_published_total);
    fflush(stdout);
    if (path)
        T_EQ_I(mg_trace_stop(), MG_OK);
    mg_free(grow);
    mg_free(churn);
    mg_free(anon);
    mg_free(rm);
    mg_free(snap);
    return 0; /* with MAPGUARD_TRACE, the atexit handler finishes the file */
}

enum { NTHREADS = 4 };

static void *thread_main(void *arg)
{
    mg_map *m = arg;
    for (int round = 0; round < 3; round++) {
        for (uint64_t i = 0; i < 5000; i++)
            T_EQ_I(mg_put_u64(m, mix(i), i), MG_OK);
        for (uint64_t i = 0; i < 4990; i++) /* an empty map resets its B */
            T_ASSERT(mg_del_u64(m, mix(i)));
    }
    finish_growth(m);
    return NULL;
}

/* Maps of several threads write to one trace at once. */
static int threads(const char *path)
{
    T_EQ_I(mg_trace_start(path), MG_OK);
    mg_map *m[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        char name[16];
        snprintf(name, sizeof name, "thread%d", i);
        m[i] = new_named(name, MG_UNSYNC);
    }
    for (int i = 0; i < NTHREADS; i++)
        T_EQ_I(pthread_create(&th[i], NULL, thread_main, m[i]), 0);
    for (int i = 0; i < NTHREADS; i++)
        T_EQ_I(pthread_join(th[i], NULL), 0);
    T_EQ_I(mg_trace_stop(), MG_OK);
    printf("{");
    for (int i = 0; i < NTHREADS; i++) {
        char name[16];
        snprintf(name, sizeof name, "thread%d", i);
        print_engine(name, m[i], i > 0);
        mg_free(m[i]);
    }
    printf("}\n");
    return 0;
}

static void t_api(void)
{
    char path[] = "/tmp/mg_trace_api_XXXXXX";
    int fd = mkstemp(path);
    T_ASSERT(fd >= 0);
    close(fd);
    T_EQ_I(mg_trace_stop(), MG_EINVAL); /* none running */
    T_EQ_I(mg_trace_start(NULL), MG_EINVAL);
#ifdef MG_NO_OBSERVE
    T_EQ_I(mg_trace_start(path), MG_ENOTSUP); /* no timeline in this build */
#else
    errno = 0;
    T_EQ_I(mg_trace_start("/nonexistent-dir/mapguard/trace.json"), MG_EIO);
    T_EQ_I(errno, ENOENT);
    T_EQ_I(mg_trace_start(path), MG_OK);
    T_EQ_I(mg_trace_start(path), MG_EBUSY);
    mg_map *m = new_named("api", MG_UNSYNC);
    for (uint64_t i = 0; i < 1000; i++)
        T_EQ_I(mg_put_u64(m, i, i), MG_OK);
    T_EQ_I(mg_trace_stop(), MG_OK);
    T_EQ_I(mg_trace_stop(), MG_EINVAL);
    /* A second trace after the first: a fresh file. */
    T_EQ_I(mg_trace_start(path), MG_OK);
    for (uint64_t i = 1000; i < 3000; i++)
        T_EQ_I(mg_put_u64(m, i, i), MG_OK);
    T_EQ_I(mg_trace_stop(), MG_OK);
    mg_free(m);
    FILE *f = fopen(path, "r");
    T_ASSERT(f != NULL);
    char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    T_ASSERT(len > 4);
    T_ASSERT(buf[0] == '[');
    T_ASSERT(strcmp(buf + len - 3, "\n]\n") == 0);
    T_ASSERT(strstr(buf, "\"process_name\"") != NULL);
#endif
    unlink(path);
}

#ifndef MG_NO_OBSERVE
/* A stand-in engine header: the events read magic, name and count only. */
static mg_map *fake(const char *name)
{
    mg_map *m = calloc(1, sizeof *m);
    T_ASSERT(m != NULL);
    m->magic = MG_MAGIC_U64;
    m->name = name ? strdup(name) : NULL;
    m->label = m->name;
    return m;
}

static void unfake(mg_map *m)
{
    free(m->name);
    free(m);
}

/* Events on stand-ins, for check_trace.py's "synthetic" expectations. */
static int synthetic(const char *path)
{
    T_EQ_I(mg_trace_start(path), MG_OK);
    /* 1. A growth of 2^16 units: at most 64 + 2 counter samples. */
    mg_map *big = fake("big");
    big->count = 123;
    MG_EV_GROW_START(big, 16, 17, false);
    for (uint64_t u = 0; u < (1u << 16); u++)
        MG_EV_EVACUATE(big, u);
    MG_EV_GROW_DONE(big, 17);
    /* 2. Names that need escaping, and one that is not UTF-8. */
    /* Ill-formed UTF-8 (check_trace.py: each maximal subpart is one
     * U+FFFD): a stray byte, F5 and C0 leads, an overlong, a surrogate, a
     * code point above U+10FFFF, a sequence cut by the end. */
    mg_map *odd = fake("quote\" back\\ tab\t nl\n \xc3\xa9 bad\xff f5\xf5\x80\x80\x80"
                       " over\xc0\xaf\xe0\x80\xaf sur\xed\xa0\x80 big\xf4\x90\x80\x80"
                       " ok\xf0\x9f\x98\x80 end\xe2\x82");
    MG_EV_GROW_START(odd, 3, 3, true);
    MG_EV_EVACUATE(odd, 0);
    MG_EV_GROW_DONE(odd, 3);
    /* 3. The same address under another name: a new track. */
    mg_map *reuse = fake("first");
    MG_EV_GROW_START(reuse, 4, 5, false);
    free(reuse->name);
    reuse->name = strdup("second");
    reuse->label = reuse->name;
    MG_EV_SHRINK(reuse, 5, 4);
    MG_EV_GROW_DONE(reuse, 4);
    /* 4. Instants. */
    mg_map *mode = fake("modes");
    MG_EV_PROMOTE(mode, 7);
    MG_EV_PUBLISH(mode, 9);
    MG_EV_OVERFLOW(mode, 1); /* probe only: not in the timeline */
    /* 5. A forked child's events and exit never reach the file. */
    fflush(NULL);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        mg_map *c = fake("child");
        MG_EV_GROW_START(c, 1, 2, false);
        exit(0); /* runs the atexit handler: it must write nothing */
    }
    int st = 0;
    T_ASSERT(waitpid(pid, &st, 0) == pid);
    T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* 6. A growth left open: closed as unfinished at stop. */
    mg_map *open = fake(NULL);
    MG_EV_GROW_START(open, 5, 6, false);
    MG_EV_EVACUATE(open, 0);
    /* 7. A fatal report finishes the file at once. */
    MG_EV_FATAL(big, "concurrent map writes");
    T_EQ_I(mg_trace_stop(), MG_EINVAL); /* already finished */
    printf("{\"open_addr\":\"%p\"}\n", (void *)open);
    unfake(big);
    unfake(odd);
    unfake(reuse);
    unfake(mode);
    unfake(open);
    return 0;
}
#endif

/* ---- fork ---------------------------------------------------------------- */

/* The whole file at path, NUL-terminated, malloc'd; its length in *len. */
static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "r");
    T_ASSERT(fp != NULL);
    T_EQ_I(fseek(fp, 0, SEEK_END), 0);
    long size = ftell(fp);
    T_ASSERT(size >= 0);
    rewind(fp);
    char *text = malloc((size_t)size + 1);
    T_ASSERT(text != NULL);
    *len = fread(text, 1, (size_t)size, fp);
    fclose(fp);
    text[*len] = '\0';
    return text;
}

/* Wait for child pid for up to secs seconds; on timeout kill it and fail. */
static int wait_child(pid_t pid, int secs, const char *what)
{
    int st = 0;
    for (int i = 0; i < secs * 1000; i++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        T_ASSERT(r >= 0);
        if (r == pid)
            return st;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    T_FAIL("%s: child %ld still running after %d s (deadlocked)", what, (long)pid, secs);
}

static atomic_bool fork_stop;

/* clang 14's AddressSanitizer and ThreadSanitizer do not lock their
 * allocator around fork, so a child forked while another thread is inside
 * malloc hangs in its own first malloc (seen in SizeClassAllocator64::
 * GetFromAllocator), whatever this library does.  Under those sanitizers
 * the threads that hold our locks across a fork therefore never allocate
 * (foreach_loop, event_loop); the allocating ones (render_loop, grow_loop)
 * run in the other builds. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FORK_SAN_ALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define FORK_SAN_ALLOC 1
#endif
#endif
#ifndef FORK_SAN_ALLOC
#define FORK_SAN_ALLOC 0
#endif

static void sample_nothing(const mg_metric_sample *s, void *arg)
{
    (void)s, (void)arg;
}

/* Holds the registry lock most of the time, allocating nothing: each pass
 * samples every registered map under it, as a scrape does. */
static void *foreach_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&fork_stop))
        (void)mg__registry_foreach(sample_nothing, NULL);
    return NULL;
}

#ifndef MG_NO_OBSERVE
/* Holds the trace lock often, allocating nothing: growths of stand-in maps
 * whose tracks exist already (the writes go to /dev/null). */
static void *event_loop(void *arg)
{
    mg_map *m = arg;
    while (!atomic_load(&fork_stop)) {
        MG_EV_GROW_START(m, 3, 4, false);
        for (uint64_t u = 0; u < 8; u++)
            MG_EV_EVACUATE(m, u);
        MG_EV_GROW_DONE(m, 4);
    }
    return NULL;
}
#endif

/* Holds the registry lock most of the time: many named maps to sample. */
static void *render_loop(void *arg)
{
    (void)arg;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    T_ASSERT(buf != NULL);
    while (!atomic_load(&fork_stop))
        (void)mg_metrics_render(buf, cap);
    free(buf);
    return NULL;
}

/* Holds the trace lock often: named maps grow and shrink, and the registry
 * lock on each mg_new and mg_free. */
static void *grow_loop(void *arg)
{
    (void)arg;
    for (unsigned r = 0; !atomic_load(&fork_stop); r++) {
        mg_map *m = new_named(r % 2 ? "grower" : "grower2", MG_UNSYNC);
        for (uint64_t i = 0; i < 60; i++) /* 3 growths */
            T_EQ_I(mg_put_u64(m, mix(i), i), MG_OK);
        mg_free(m);
    }
    return NULL;
}

/* What a prefork server's child does first: a named map, which grows (its
 * events and its registration take both locks), a render. */
static void child_work(void)
{
    mg_map *m = new_named("child", MG_UNSYNC);
    for (uint64_t i = 0; i < 200; i++)
        if (mg_put_u64(m, mix(i), i) != MG_OK)
            _exit(3);
    char buf[256];
    (void)mg_metrics_render(buf, sizeof buf);
    mg_free(m);
}

/* The trace goes to /dev/null: the tracing threads write without pause, and
 * a deadlocked child (the bug) would otherwise leave gigabytes behind.
 * fork_fd and the synthetic timeline check what a child writes. */
static void t_fork_locks(void)
{
#ifndef MG_NO_OBSERVE
    T_EQ_I(mg_trace_start("/dev/null"), MG_OK);
#endif
    enum { NMAPS = 200, NFORKS = 150 };
    mg_map *maps[NMAPS];
    for (int i = 0; i < NMAPS; i++) {
        maps[i] = new_named("scraped", i % 3 ? MG_UNSYNC : MG_RWLOCK);
        for (uint64_t k = 0; k < 20; k++)
            T_EQ_I(mg_put_u64(maps[i], k, k), MG_OK);
    }
    atomic_store(&fork_stop, false);
    pthread_t th[5];
    int nth = 0;
    T_EQ_I(pthread_create(&th[nth++], NULL, foreach_loop, NULL), 0);
#ifndef MG_NO_OBSERVE
    mg_map *stand_in = fake("stand-in");
    MG_EV_GROW_START(stand_in, 3, 4, false); /* its track, made here */
    MG_EV_GROW_DONE(stand_in, 4);
    T_EQ_I(pthread_create(&th[nth++], NULL, event_loop, stand_in), 0);
#endif
    if (!FORK_SAN_ALLOC) {
        T_EQ_I(pthread_create(&th[nth++], NULL, render_loop, NULL), 0);
        T_EQ_I(pthread_create(&th[nth++], NULL, grow_loop, NULL), 0);
        T_EQ_I(pthread_create(&th[nth++], NULL, grow_loop, NULL), 0);
    }
    for (int f = 0; f < NFORKS; f++) {
        fflush(NULL);
        pid_t pid = fork();
        T_ASSERT(pid >= 0);
        if (pid == 0) {
            child_work();
            /* what the atexit handler does (it takes the trace lock); then
             * _exit: the parent's threads' memory would read as leaks */
            _exit(mg_trace_stop() == MG_EINVAL ? 0 : 4);
        }
        int st = wait_child(pid, 10, "fork_locks");
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            T_FAIL("fork %d: child status 0x%x", f, (unsigned)st);
    }
    atomic_store(&fork_stop, true);
    for (int i = 0; i < nth; i++)
        T_EQ_I(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < NMAPS; i++)
        mg_free(maps[i]);
#ifndef MG_NO_OBSERVE
    T_EQ_I(mg_trace_stop(), MG_OK);
    unfake(stand_in);
#endif
}

/* A forked child closes every descriptor it inherited (the trace's too),
 * opens a file of its own on each of those numbers, and then a map logs an
 * event: the file must stay open and intact. */
static void t_fork_fd(void)
{
    char path[] = "/tmp/mg_trace_forkfd_XXXXXX", own[] = "/tmp/mg_trace_own_XXXXXX";
    int fd = mkstemp(path);
    T_ASSERT(fd >= 0);
    close(fd);
    int ofd = mkstemp(own);
    T_ASSERT(ofd >= 0);
    close(ofd);
#ifndef MG_NO_OBSERVE
    T_EQ_I(mg_trace_start(path), MG_OK);
#endif
    mg_map *m = new_named("parent", MG_UNSYNC);
    for (uint64_t i = 0; i < 100; i++)
        T_EQ_I(mg_put_u64(m, i, i), MG_OK);
    fflush(NULL);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        int fds[1024], n = 0;
        DIR *d = opendir("/proc/self/fd");
        if (!d)
            _exit(10);
        int dfd = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d)) && n < 1024) {
            int k = atoi(e->d_name);
            if (e->d_name[0] != '.' && k > 2 && k != dfd)
                fds[n++] = k;
        }
        closedir(d);
        for (int i = 0; i < n; i++)
            close(fds[i]);
        int f = open(own, O_RDWR | O_TRUNC);
        if (f < 0)
            _exit(11);
        for (int i = 0; i < n; i++)
            if (fds[i] != f && dup2(f, fds[i]) != fds[i])
                _exit(12);
        if (write(f, "before\n", 7) != 7)
            _exit(13);
        /* the child's first map events: growths of a named map */
        mg_map *c = new_named("child", MG_UNSYNC);
        for (uint64_t i = 0; i < 100; i++)
            if (mg_put_u64(c, i, i) != MG_OK)
                _exit(14);
        mg_free(c);
        for (int i = 0; i < n; i++)
            if (fcntl(fds[i], F_GETFD) < 0) {
                fprintf(stderr, "FAIL: the child's descriptor %d was closed\n", fds[i]);
                _exit(15);
            }
        if (fcntl(f, F_GETFD) < 0 || write(f, "after\n", 6) != 6)
            _exit(16);
        char buf[64] = {0};
        if (pread(f, buf, sizeof buf - 1, 0) != 13 || strcmp(buf, "before\nafter\n") != 0)
            _exit(17);
        exit(0);
    }
    int st = wait_child(pid, 20, "fork_fd");
    unlink(own);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        unlink(path);
        T_FAIL("child status 0x%x (exit %d)", (unsigned)st, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    for (uint64_t i = 100; i < 1000; i++) /* the parent's trace goes on */
        T_EQ_I(mg_put_u64(m, i, i), MG_OK);
    mg_free(m);
#ifndef MG_NO_OBSERVE
    T_EQ_I(mg_trace_stop(), MG_OK);
    size_t len;
    char *text = slurp(path, &len);
    T_ASSERT(len > 4 && text[0] == '[' && strcmp(text + len - 3, "\n]\n") == 0);
    T_ASSERT(strstr(text, "\"parent\"") != NULL);
    T_ASSERT(strstr(text, "\"child\"") == NULL);
    free(text);
#endif
    unlink(path);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "workload") == 0)
        return workload(argc > 2 ? argv[2] : NULL);
#ifndef MG_NO_OBSERVE
    if (argc >= 3 && strcmp(argv[1], "threads") == 0)
        return threads(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "synthetic") == 0)
        return synthetic(argv[2]);
#endif
    static const t_case cases[] = {
        {"api", t_api}, {"fork_locks", t_fork_locks}, {"fork_fd", t_fork_fd}, {NULL, NULL}};
    return t_main(cases, argc, argv);
}
