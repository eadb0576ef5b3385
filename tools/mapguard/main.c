/*
 * main.c - the `mapguard` command: doctor, analyze, bench, version.
 */
#include "cli.h"
#include "mapguard.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mapguard <command> [options]\n"
            "\n"
            "commands:\n"
            "  doctor [--json] [CAUSE]  reproduce each root cause of a map crash in a\n"
            "                           child process: what happened, what caught it, the fix\n"
            "  analyze [--json] FILE|-  read a crash (Go's fatal error, panic or goroutine\n"
            "                           dump; mapguard's report, text or JSON): the root\n"
            "                           cause, the goroutines involved, the fix, grouped\n"
            "                           stacks and leaks (see analyze --help)\n"
            "  bench [options]          the knee benchmark: each thread-safe mode against\n"
            "                           Go's sync.Map and RWMutex map, libcuckoo, liburcu's\n"
            "                           lfht and absl, per write share (see bench --help)\n"
            "  bench single [options]   the single-thread workload against\n"
            "                           absl::flat_hash_map and Go 1.19's map\n"
            "  version                  print the version\n");
}

/* `mapguard bench [options]` runs the concurrent knee driver,
 * `mapguard bench single [options]` the single-thread comparison driver:
 * each is looked for beside this binary (build/bench/<driver>), then on
 * PATH, and gets the remaining options. */
static int cmd_bench(int argc, char **argv)
{
    const char *driver = "mapguard-bench-knee";
    if (argc > 0 && strcmp(argv[0], "single") == 0) {
        driver = "mapguard-bench-compare";
        argc--;
        argv++;
    }
    char self[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    const char *cands[3];
    size_t nc = 0;
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(path, sizeof path, "%s/bench/%s", self, driver);
            cands[nc++] = path;
        }
    }
    cands[nc++] = driver;
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args)
        return 1;
    for (int i = 0; i < argc; i++)
        args[i + 1] = argv[i];
    for (size_t i = 0; i < nc; i++) {
        args[0] = (char *)cands[i];
        if (strchr(cands[i], '/') ? access(cands[i], X_OK) == 0 : 1)
            execvp(cands[i], args);
    }
    fprintf(stderr,
            "mapguard bench: %s not found (%s); build with -DMG_BENCH=ON (the "
            "default)\n",
            driver, strerror(errno));
    free(args);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "doctor") == 0)
        return mg_cli_doctor(argc - 2, argv + 2);
    if (strcmp(cmd, "analyze") == 0)
        return mg_cli_analyze(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("mapguard %s\n", MG_VERSION_STRING);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "mapguard: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
