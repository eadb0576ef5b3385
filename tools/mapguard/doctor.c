/*
 * doctor.c - `mapguard doctor`: reproduce each root cause of a map crash in
 * a child process, show what happened, what caught it, and the fix.
 *
 * Every cause runs in its own forked child so a fatal report (which ends in
 * abort()) cannot take the doctor down; the parent reads the child's stderr
 * and exit status and judges the outcome against what mapguard promises.
 */
#include "cli.h"
#include "mapguard.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Scenarios: each runs in the child.  Write-race scenarios are expected to */
/* die in a fatal report; the others exit 0 when the promise held.          */
/* ------------------------------------------------------------------------ */

#define RACE_KEYS 1000000u

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

typedef struct {
    mg_map *m;
    uint64_t base;
} race_arg;

static void *writer_thread(void *p)
{
    race_arg *a = p;
    for (uint64_t i = 0; i < RACE_KEYS; i++)
        mg_put_u64(a->m, mix(a->base + i), i);
    return NULL;
}

static void *reader_thread(void *p)
{
    race_arg *a = p;
    uint64_t v, sum = 0;
    for (uint64_t i = 0; i < 50u * RACE_KEYS; i++)
        sum += mg_get_u64(a->m, mix(i % 1000), &v);
    return (void *)(uintptr_t)sum;
}

static void *iter_thread(void *p)
{
    race_arg *a = p;
    uint64_t n = 0;
    for (int r = 0; r < 1000000; r++) {
        mg_iter it;
        mg_iter_init(&it, a->m);
        while (mg_iter_next(&it, NULL, NULL, NULL))
            n++;
        mg_iter_done(&it);
    }
    return (void *)(uintptr_t)n;
}

static mg_map *named_map(const char *name)
{
    mg_options o = {.name = name};
    mg_map *m = mg_new(&o);
    if (!m) {
        perror("mg_new");
        exit(3);
    }
    return m;
}

static int run_two(void *(*a)(void *), void *(*b)(void *), mg_map *m)
{
    pthread_t t1, t2;
    race_arg r1 = {m, 0}, r2 = {m, 1u << 30};
    if (pthread_create(&t1, NULL, a, &r1) || pthread_create(&t2, NULL, b, &r2)) {
        fprintf(stderr, "pthread_create failed\n");
        return 3;
    }
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    return 0;
}

static int sc_concurrent_writes(void)
{
    mg_map *m = named_map("sessions");
    return run_two(writer_thread, writer_thread, m);
}

static int sc_read_during_write(void)
{
    mg_map *m = named_map("cache");
    for (uint64_t i = 0; i < 1000; i++)
        mg_put_u64(m, mix(i), i);
    return run_two(reader_thread, writer_thread, m);
}

static int sc_iter_during_write(void)
{
    mg_map *m = named_map("routes");
    for (uint64_t i = 0; i < 64; i++)
        mg_put_u64(m, mix(i), i);
    return run_two(iter_thread, writer_thread, m);
}

static int sc_nil_map(void)
{
    mg_map *m = NULL; /* a map that was never created */
    uint64_t v;
    /* Reads, len, delete and range on NULL behave as an empty map ... */
    if (mg_get_u64(m, 1, &v) || mg_len(m) != 0 || mg_del_u64(m, 1) ||
        mg_range(m, NULL, NULL) != 0)
        return 4;
    /* ... a write is fatal, as in Go. */
    mg_put_u64(m, 1, 1);
    return 0;
}

static int sc_freed_map(void)
{
    mg_map *m = named_map("users");
    mg_put_u64(m, 1, 1);
    mg_free(m);
    uint64_t v;
    /* A use after free: mapguard checks the header's magic first. */
    (void)mg_get_u64(m, 1, &v);
    return 0;
}

/* Mutation during iteration across growth: the owner thread deletes keys it
 * has not reached, inserts new ones (forcing the map to grow mid-range) and
 * updates keys it has not reached; Go's guarantees must hold. */
typedef struct {
    mg_map *m;
    size_t n;            /* keys at the start: 0 .. n-1 */
    unsigned char *seen; /* per key */
    unsigned char *gone; /* deleted before it was reached */
    uint64_t *want;      /* current value */
    size_t produced, dups, stale, ghosts, next_new, deleted, updated;
} mut_state;

static int mut_fn(const void *key, size_t len, uint64_t val, void *arg)
{
    mut_state *s = arg;
    (void)len;
    uint64_t k = *(const uint64_t *)key;
    s->produced++;
    if (k < s->n) {
        if (s->seen[k])
            s->dups++;
        if (s->gone[k])
            s->ghosts++;
        if (val != s->want[k])
            s->stale++;
        s->seen[k] = 1;
    }
    /* Delete one unvisited key, insert two new ones, update one unvisited. */
    uint64_t d = mix(s->produced) % s->n;
    if (!s->seen[d] && !s->gone[d]) {
        mg_del_u64(s->m, d);
        s->gone[d] = 1;
        s->deleted++;
    }
    for (int i = 0; i < 2; i++)
        mg_put_u64(s->m, s->n + s->next_new++, 7);
    uint64_t u = mix(s->produced + 99) % s->n;
    if (!s->seen[u] && !s->gone[u]) {
        s->want[u] = s->want[u] + 1000;
        mg_put_u64(s->m, u, s->want[u]);
        s->updated++;
    }
    return 0;
}

static int sc_mutate_during_range(void)
{
    mut_state s = {0};
    s.n = 20000;
    s.m = named_map("inventory");
    s.seen = calloc(s.n, 1);
    s.gone = calloc(s.n, 1);
    s.want = calloc(s.n, sizeof *s.want);
    if (!s.seen || !s.gone || !s.want)
        return 3;
    for (uint64_t i = 0; i < s.n; i++) {
        s.want[i] = i;
        mg_put_u64(s.m, i, i);
    }
    mg_stats before, after;
    mg_stats_get(s.m, &before);
    mg_range(s.m, mut_fn, &s);
    mg_stats_get(s.m, &after);
    size_t missed = 0;
    for (size_t i = 0; i < s.n; i++)
        if (!s.seen[i] && !s.gone[i])
            missed++;
    printf("keys at start %zu; range produced %zu; during the range: %zu deleted "
           "before reached, %zu updated, %zu inserted; B %u -> %u (%llu grows)\n",
           s.n, s.produced, s.deleted, s.updated, s.next_new, before.B, after.B,
           (unsigned long long)(after.grows_total - before.grows_total));
    printf("duplicates %zu, missed %zu, deleted-yet-produced %zu, stale values %zu\n",
           s.dups, missed, s.ghosts, s.stale);
    bool ok = s.dups == 0 && missed == 0 && s.ghosts == 0 && s.stale == 0 &&
              after.grows_total > before.grows_total;
    mg_free(s.m);
    free(s.seen);
    free(s.gone);
    free(s.want);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* The table of causes                                                      */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *title;
    const char *what;
    int (*run)(void);
    const char *expect_fatal; /* first line expected, or NULL: expect exit 0 */
    const char *fix;
} cause;

static const cause causes[] = {
    {"concurrent-writes", "concurrent writes",
     "two threads each put 10^6 keys into one MG_UNSYNC map", sc_concurrent_writes,
     "fatal error: concurrent map writes",
     "an MG_UNSYNC map has Go's rule: one writer and nobody else. Give the map one "
     "owner thread, or guard every call with a mutex (pthread_mutex_t around put/get/"
     "del), as Go code does with sync.Mutex."},
    {"read-during-write", "a read overlapping a write",
     "one thread reads while another writes", sc_read_during_write,
     "fatal error: concurrent map read and map write",
     "readers need the writer excluded too: a pthread_rwlock_t (readers share, the "
     "writer is alone) or one owner thread that does all access."},
    {"iter-during-write", "an iteration overlapping a write",
     "one thread ranges over the map while another writes", sc_iter_during_write,
     "fatal error: concurrent map iteration and map write",
     "hold the lock for the whole range, or copy the entries out under the lock and "
     "iterate the copy."},
    {"nil-map", "a write through a NULL map",
     "mg_put_u64(NULL, ...) after reads, len, delete and range on NULL",
     sc_nil_map, "fatal error: assignment to entry in nil map",
     "create the map before the first write (mg_new), and check mg_new's result: it "
     "returns NULL with errno on failure. Reads on NULL act as an empty map, as in Go."},
    {"freed-map", "a freed map used again",
     "mg_get_u64 on a map after mg_free", sc_freed_map, "fatal error: use of freed map",
     "set the pointer to NULL after mg_free and give the map one owner who frees it "
     "last; run the tests under ASan to find the stale pointer."},
    {"mutate-during-range", "the owner mutating its map while ranging, across growth",
     "mg_range's callback deletes keys not yet reached, inserts new keys (the map "
     "grows mid-range) and updates keys not yet reached",
     sc_mutate_during_range, NULL,
     "nothing to fix: this is allowed from the owning thread. Keys inserted during the "
     "range may or may not be produced; rely only on the guarantees above."},
};
#define NCAUSES (sizeof causes / sizeof causes[0])

/* ------------------------------------------------------------------------ */
/* Running a cause in a child                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    int status;        /* waitpid status */
    bool timed_out;
    double seconds;
    char *out;         /* stdout+stderr of the child */
    size_t outlen;
} child_result;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_child(const cause *c, double timeout, child_result *r)
{
    int fd[2];
    memset(r, 0, sizeof *r);
    if (pipe(fd) != 0)
        return -1;
    fflush(NULL);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], STDOUT_FILENO);
        dup2(fd[1], STDERR_FILENO);
        close(fd[1]);
        setvbuf(stdout, NULL, _IONBF, 0);
        /* No core file for the expected aborts. */
        signal(SIGPIPE, SIG_DFL);
        _exit(c->run());
    }
    close(fd[1]);
    size_t cap = 4096;
    r->out = malloc(cap);
    if (!r->out)
        return -1;
    for (;;) {
        struct pollfd p = {fd[0], POLLIN, 0};
        double left = timeout - (now_s() - t0);
        if (left <= 0) {
            kill(pid, SIGKILL);
            r->timed_out = true;
            break;
        }
        int pr = poll(&p, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        if (r->outlen + 1024 > cap) {
            char *n = realloc(r->out, cap * 2);
            if (!n)
                break;
            r->out = n;
            cap *= 2;
        }
        ssize_t n = read(fd[0], r->out + r->outlen, cap - r->outlen - 1);
        if (n <= 0)
            break;
        r->outlen += (size_t)n;
    }
    close(fd[0]);
    r->out[r->outlen] = '\0';
    waitpid(pid, &r->status, 0);
    r->seconds = now_s() - t0;
    return 0;
}

static const char *first_line(const char *s, char *buf, size_t n)
{
    size_t i = 0;
    while (s[i] && s[i] != '\n' && i + 1 < n) {
        buf[i] = s[i];
        i++;
    }
    buf[i] = '\0';
    return buf;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void indent(const char *text, size_t max_lines)
{
    size_t lines = 0;
    const char *p = text;
    while (*p && lines < max_lines) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        printf("      | %.*s\n", (int)n, p);
        lines++;
        if (!e)
            break;
        p = e + 1;
    }
}

/* Run one cause; print it; return true when mapguard behaved as promised. */
static bool doctor_one(const cause *c, size_t idx, size_t total, bool json, bool first)
{
    child_result r;
    if (run_child(c, 60.0, &r) != 0) {
        fprintf(stderr, "mapguard doctor: cannot run %s: %s\n", c->name, strerror(errno));
        return false;
    }
    char line[256];
    first_line(r.out, line, sizeof line);
    bool aborted = WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT;
    bool clean = WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0;
    bool ok;
    char happened[256];
    if (r.timed_out)
        snprintf(happened, sizeof happened, "the child hung and was killed after %.1f s",
                 r.seconds);
    else if (WIFSIGNALED(r.status))
        snprintf(happened, sizeof happened, "the child was stopped by signal %d (%s) after %.2f s",
                 WTERMSIG(r.status), strsignal(WTERMSIG(r.status)), r.seconds);
    else
        snprintf(happened, sizeof happened, "the child exited with status %d after %.2f s",
                 WEXITSTATUS(r.status), r.seconds);
    if (c->expect_fatal)
        ok = aborted && strcmp(line, c->expect_fatal) == 0;
    else
        ok = clean;

    if (json) {
        printf("%s\n  {\"cause\": ", first ? "" : ",");
        json_str(stdout, c->name);
        printf(", \"title\": ");
        json_str(stdout, c->title);
        printf(", \"scenario\": ");
        json_str(stdout, c->what);
        printf(", \"happened\": ");
        json_str(stdout, happened);
        printf(", \"expected\": ");
        json_str(stdout, c->expect_fatal ? c->expect_fatal : "guarantees hold, exit 0");
        printf(", \"caught_by\": ");
        json_str(stdout, c->expect_fatal ? line : "");
        printf(", \"output\": ");
        json_str(stdout, r.out);
        printf(", \"fix\": ");
        json_str(stdout, c->fix);
        printf(", \"ok\": %s}", ok ? "true" : "false");
    } else {
        printf("[%zu/%zu] %s: %s\n", idx, total, c->name, c->title);
        printf("  scenario:  %s\n", c->what);
        printf("  happened:  %s\n", happened);
        if (c->expect_fatal) {
            printf("  caught by: %s\n", aborted ? line : "(nothing: no fatal report)");
            indent(r.out, 8);
        } else {
            printf("  shown:\n");
            indent(r.out, 8);
        }
        printf("  fix:       %s\n", c->fix);
        printf("  verdict:   %s\n\n",
               ok ? (c->expect_fatal ? "CAUGHT as expected" : "HANDLED as promised")
                  : "NOT AS EXPECTED");
    }
    free(r.out);
    return ok;
}

static void usage_causes(FILE *f)
{
    fprintf(f, "causes:\n");
    for (size_t i = 0; i < NCAUSES; i++)
        fprintf(f, "  %-22s %s\n", causes[i].name, causes[i].title);
}

int mg_cli_doctor(int argc, char **argv)
{
    bool json = false;
    const char *only = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--list") == 0) {
            usage_causes(stdout);
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: mapguard doctor [--json] [--list] [CAUSE]\n"
                   "Reproduces each root cause of a map crash in a child process and "
                   "shows what caught it and the fix.\nExit status 1 if any cause was "
                   "not caught or handled as expected.\n");
            usage_causes(stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "mapguard doctor: unknown option %s\n", argv[i]);
            return 2;
        } else if (only) {
            fprintf(stderr, "mapguard doctor: one cause at a time\n");
            return 2;
        } else {
            only = argv[i];
        }
    }
    size_t total = 0;
    for (size_t i = 0; i < NCAUSES; i++)
        if (!only || strcmp(only, causes[i].name) == 0)
            total++;
    if (total == 0) {
        fprintf(stderr, "mapguard doctor: no such cause: %s\n", only);
        usage_causes(stderr);
        return 2;
    }
    if (json)
        printf("[");
    else
        printf("mapguard doctor: %zu root cause%s of map crashes, each reproduced in a "
               "child process\n\n", total, total == 1 ? "" : "s");
    size_t bad = 0, k = 0;
    for (size_t i = 0; i < NCAUSES; i++) {
        if (only && strcmp(only, causes[i].name) != 0)
            continue;
        k++;
        if (!doctor_one(&causes[i], k, total, json, k == 1))
            bad++;
    }
    if (json)
        printf("\n]\n");
    else
        printf("%zu of %zu causes caught or handled as expected%s\n", total - bad, total,
               bad ? "; see NOT AS EXPECTED above" : "");
    return bad ? 1 : 0;
}
