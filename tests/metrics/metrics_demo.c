/*
 * metrics_demo.c - a program with a named map of every mode, for the tests
 * that need a real exposition (promtool, Prometheus).
 *
 *   metrics_demo dump                 print mg_metrics_render to stdout
 *   metrics_demo serve ADDR [FILE]    serve /metrics on ADDR (e.g.
 *                                     127.0.0.1:0), write the port to FILE
 *                                     once serving, run until SIGTERM or
 *                                     SIGINT, then stop, free, exit 0
 *
 * The maps: "sessions" (unsync, 1000 u64 keys), "users" (rwlock, 500 byte
 * keys), "cache" (sharded, 2000), "config" (readmostly, 300, read so that
 * it promotes), "routes" (snapshot, 100), "jobs" (actor, 50), two maps
 * named "dup", one named `we"ird\<newline>name` (escaping) and one named
 * "bad" 0xFF 0xC0 0xAF "name", not UTF-8 (rendered with U+FFFD).
 */
#include "mapguard.h"
#ifdef MG_DEMO_HTTP
#include "mapguard_http.h"
#endif

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NMAPS 10

static mg_map *maps[NMAPS];

static mg_map *make(const char *name, mg_mode mode, mg_keykind kk, uint64_t n)
{
    mg_options o = {.mode = mode, .key = kk, .name = name};
    mg_map *m = mg_new(&o);
    if (!m) {
        fprintf(stderr, "metrics_demo: mg_new(%s): %s\n", name, strerror(errno));
        exit(1);
    }
    for (uint64_t k = 0; k < n; k++) {
        int rc;
        if (kk == MG_KEY_BYTES) {
            char key[32];
            int len = snprintf(key, sizeof key, "user-%llu", (unsigned long long)k);
            rc = mg_put(m, key, (size_t)len, k);
        } else {
            rc = mg_put_u64(m, k, k);
        }
        if (rc != MG_OK) {
            fprintf(stderr, "metrics_demo: put: %s\n", mg_status_name(rc));
            exit(1);
        }
    }
    return m;
}

static void make_all(void)
{
    maps[0] = make("sessions", MG_UNSYNC, MG_KEY_U64, 1000);
    maps[1] = make("users", MG_RWLOCK, MG_KEY_BYTES, 500);
    maps[2] = make("cache", MG_SHARDED, MG_KEY_U64, 2000);
    maps[3] = make("config", MG_READMOSTLY, MG_KEY_U64, 300);
    maps[4] = make("routes", MG_SNAPSHOT, MG_KEY_U64, 100);
    maps[5] = make("jobs", MG_ACTOR, MG_KEY_U64, 50);
    maps[6] = make("dup", MG_UNSYNC, MG_KEY_U64, 1);
    maps[7] = make("dup", MG_UNSYNC, MG_KEY_U64, 2);
    maps[8] = make("we\"ird\\\nname", MG_UNSYNC, MG_KEY_U64, 3);
    maps[9] = make("bad\xff\xc0\xafname", MG_UNSYNC, MG_KEY_U64, 4);
    uint64_t v;
    for (int round = 0; round < 3; round++)
        for (uint64_t k = 0; k < 300; k++)
            (void)mg_get_u64(maps[3], k, &v);
    for (uint64_t k = 0; k < 40; k++) /* some deletes */
        (void)mg_del_u64(maps[0], 1000 + k);
}

static void free_all(void)
{
    for (int i = 0; i < NMAPS; i++)
        mg_free(maps[i]);
}

static int dump(void)
{
    size_t n = mg_metrics_render(NULL, 0);
    char *buf = malloc(n + 1);
    if (!buf)
        return 1;
    if (mg_metrics_render(buf, n + 1) != n)
        return 1;
    fwrite(buf, 1, n, stdout);
    free(buf);
    return fflush(stdout) == 0 ? 0 : 1;
}

#ifdef MG_DEMO_HTTP
static int serve(const char *addr, const char *portfile)
{
    /* Block the signals before any thread starts (ACTOR's owner thread,
     * the server's), so only sigwait below receives them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    make_all();
    int rc = mg_metrics_serve(addr);
    if (rc != MG_OK) {
        fprintf(stderr, "metrics_demo: mg_metrics_serve(%s): %s (%s)\n", addr,
                mg_status_name(rc), strerror(errno));
        return 1;
    }
    unsigned port = mg_metrics_port();
    fprintf(stderr, "metrics_demo: serving http://%s/metrics (port %u)\n", addr, port);
    if (portfile) { /* written whole, then renamed: a reader never sees half */
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", portfile);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 || rename(tmp, portfile) != 0) {
            fprintf(stderr, "metrics_demo: cannot write %s\n", portfile);
            return 1;
        }
    }
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "metrics_demo: signal %d, stopping\n", sig);
    mg_metrics_stop();
    free_all();
    return 0;
}
#endif

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "dump") == 0) {
        make_all();
        int rc = dump();
        free_all();
        return rc;
    }
#ifdef MG_DEMO_HTTP
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "serve") == 0)
        return serve(argv[2], argc == 4 ? argv[3] : NULL);
#endif
    fprintf(stderr, "usage: metrics_demo dump | serve ADDR [PORTFILE]\n");
    return 2;
}
