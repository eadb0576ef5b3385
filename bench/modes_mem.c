/*
 * modes_mem.c - mapguard-modes-mem: memory per entry of each map mode.
 *
 *   mapguard-modes-mem [--n N] [--mode NAME] [--bytes]
 *
 * With no --mode it runs itself once per mode (a fresh process each, so
 * every RSS figure starts clean) and prints a table.  One run inserts the
 * workload's keys key(0..N-1) (u64, or with --bytes the 16-byte string
 * keys) with no size hint into a map of that mode, then prints:
 *   result mode=M keys=u64|str n=N rss_per_entry=B stats_per_entry=B
 * rss_per_entry is the resident-set growth over the inserts divided by N;
 * stats_per_entry is mg_stats_get's `bytes` divided by N (what the map
 * counts as its own).  Default N: the workload's 1,000,000.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "workload.h"

#include <mapguard.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const modes[] = {"unsync", "rwlock", "sharded", "readmostly",
                                    "snapshot", "actor"};
#define NMODES (sizeof modes / sizeof modes[0])

static int one(const char *mode, uint64_t n, int bytes)
{
    mg_options o = {.key = bytes ? MG_KEY_BYTES : MG_KEY_U64};
    size_t i;
    for (i = 0; i < NMODES; i++)
        if (strcmp(mode, modes[i]) == 0)
            break;
    if (i == NMODES) {
        fprintf(stderr, "modes_mem: unknown mode %s\n", mode);
        return 2;
    }
    o.mode = (mg_mode)i;
    uint64_t rss0 = wl_rss_bytes();
    mg_map *m = mg_new(&o);
    if (!m) {
        fprintf(stderr, "modes_mem: mg_new(%s): %s\n", mode, strerror(errno));
        return 1;
    }
    char kb[WL_STR_LEN + 1];
    for (uint64_t k = 0; k < n; k++) {
        int rc;
        if (bytes) {
            wl_str_key(kb, k);
            rc = mg_put(m, kb, WL_STR_LEN, k + 1);
        } else {
            rc = mg_put_u64(m, wl_key(k), k + 1);
        }
        if (rc != MG_OK) {
            fprintf(stderr, "modes_mem: put: %s\n", mg_strerror(rc));
            return 1;
        }
    }
    uint64_t rss1 = wl_rss_bytes();
    mg_stats st;
    mg_stats_get(m, &st);
    /* The string keys repeat now and then (key(i) mod 10^12): per entry
     * means per entry held. */
    size_t held = mg_len(m);
    if (held == 0 || held > n || (!bytes && held != n)) {
        fprintf(stderr, "modes_mem: %s holds %zu entries after %llu puts\n", mode, held,
                (unsigned long long)n);
        return 1;
    }
    printf("result mode=%s keys=%s n=%zu rss_per_entry=%.1f stats_per_entry=%.1f\n", mode,
           bytes ? "str" : "u64", held,
           rss1 > rss0 ? (double)(rss1 - rss0) / (double)held : 0.0,
           (double)st.bytes / (double)held);
    fflush(stdout);
    mg_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t n = 1000000;
    const char *mode = NULL;
    int bytes = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
            mode = argv[++i];
        else if (strcmp(argv[i], "--bytes") == 0)
            bytes = 1;
        else {
            fprintf(stderr, "usage: mapguard-modes-mem [--n N] [--mode NAME] [--bytes]\n");
            return 2;
        }
    }
    if (n == 0) {
        fprintf(stderr, "modes_mem: --n must be positive\n");
        return 2;
    }
    if (mode)
        return one(mode, n, bytes);
    /* Every mode, u64 and str keys, each in its own process. */
    int bad = 0;
    for (int b = 0; b < 2; b++)
        for (size_t i = 0; i < NMODES; i++) {
            fflush(stdout);
            pid_t pid = fork();
            if (pid < 0) {
                perror("fork");
                return 1;
            }
            if (pid == 0)
                _exit(one(modes[i], n, b));
            int st;
            if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                bad = 1;
        }
    return bad;
}
