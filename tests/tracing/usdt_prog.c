/*
 * usdt_prog.c - a known number of map events, for check_usdt.py, which
 * counts them with bpftrace on libmapguard.so.  Linked against the SHARED
 * library: the probes are in libmapguard.so's text.
 *
 *   usdt_prog zero SEM...          every semaphore is 0 (nobody traces)
 *   usdt_prog count N M SEM...     wait until every semaphore is raised,
 *                                  fire mgtest:begin, then N gets and M puts
 *                                  (u64 and byte keys), fire mgtest:end;
 *                                  print the expected counts as JSON
 *
 * SEM is the address of a probe's semaphore as `readelf -n` prints it (the
 * library's link-time address); the program adds the library's load bias
 * (dl_iterate_phdr).  Waiting on the semaphores makes the test
 * deterministic without exporting anything: a tracer raises a probe's
 * semaphore when it attaches that probe, so once all are non-zero every
 * probe the script uses is in place.  The program's own probes (provider
 * mgtest) have no semaphore.
 */
#include "mapguard.h"

#include <errno.h>
#include <inttypes.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sdt.h>
#include <time.h>

#ifdef __clang__
/* sdt.h calls a variadic macro of its own with no variadic argument. */
#pragma clang diagnostic ignored "-Wgnu-zero-variadic-macro-arguments"
#endif

static uintptr_t lib_base;

static int find_lib(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    if (info->dlpi_name && strstr(info->dlpi_name, "libmapguard.so")) {
        lib_base = (uintptr_t)info->dlpi_addr;
        return 1;
    }
    return 0;
}

static volatile unsigned short *sem_at(const char *s)
{
    char *end;
    errno = 0;
    uintptr_t off = (uintptr_t)strtoull(s, &end, 0);
    if (errno || *end || off == 0) {
        fprintf(stderr, "usdt_prog: bad semaphore address %s\n", s);
        exit(2);
    }
    return (volatile unsigned short *)(lib_base + off);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: usdt_prog zero SEM... | count N M SEM...\n");
        return 2;
    }
    if (dl_iterate_phdr(find_lib, NULL) == 0) {
        fprintf(stderr, "usdt_prog: libmapguard.so is not loaded (static link?)\n");
        return 2;
    }
    if (strcmp(argv[1], "zero") == 0) {
        for (int i = 2; i < argc; i++)
            if (*sem_at(argv[i]) != 0) {
                fprintf(stderr, "usdt_prog: semaphore %s is %u, want 0\n", argv[i],
                        *sem_at(argv[i]));
                return 1;
            }
        printf("{\"zero\":%d}\n", argc - 2);
        return 0;
    }
    if (strcmp(argv[1], "count") != 0 || argc < 4) {
        fprintf(stderr, "usdt_prog: bad arguments\n");
        return 2;
    }
    uint64_t n = strtoull(argv[2], NULL, 0), mput = strtoull(argv[3], NULL, 0);
    for (int i = 4; i < argc; i++) {
        long waited = 0;
        while (*sem_at(argv[i]) == 0) {
            if (waited >= 60000) {
                fprintf(stderr, "usdt_prog: semaphore %s not raised after 60 s\n", argv[i]);
                return 3;
            }
            sleep_ms(1);
            waited++;
        }
    }

    mg_map *m = mg_new(&(mg_options){.name = "usdt"});
    mg_map *b = mg_new(&(mg_options){.key = MG_KEY_BYTES, .name = "usdt-bytes"});
    if (!m || !b) {
        fprintf(stderr, "usdt_prog: mg_new: %s\n", strerror(errno));
        return 1;
    }
    STAP_PROBE(mgtest, begin);
    /* Puts: three quarters u64 (new keys, so the map doubles), a quarter
     * bytes; gets: hits and misses on both. */
    uint64_t mu = mput - mput / 4, mb = mput / 4, keysum_put = 0, keysum_get = 0;
    for (uint64_t i = 0; i < mu; i++) {
        if (mg_put_u64(m, i * 7 + 1, i) != MG_OK)
            return 1;
        keysum_put += i * 7 + 1;
    }
    for (uint64_t i = 0; i < mb; i++) {
        char k[32];
        int len = snprintf(k, sizeof k, "key-%" PRIu64, i);
        if (mg_put(b, k, (size_t)len, i) != MG_OK)
            return 1;
    }
    uint64_t nu = n - n / 4, nb = n / 4;
    for (uint64_t i = 0; i < nu; i++) {
        (void)mg_get_u64(m, i * 3, NULL);
        keysum_get += i * 3;
    }
    for (uint64_t i = 0; i < nb; i++) {
        char k[32];
        int len = snprintf(k, sizeof k, "key-%" PRIu64, i * 2);
        (void)mg_get(b, k, (size_t)len, NULL);
    }
    mg_stats sm, sb;
    mg_stats_get(m, &sm);
    mg_stats_get(b, &sb);
    STAP_PROBE(mgtest, end);

    uint64_t grows = sm.grows_total + sm.same_size_grows_total + sb.grows_total +
                     sb.same_size_grows_total;
    uint64_t done = grows - (sm.growing ? 1 : 0) - (sb.growing ? 1 : 0);
    printf("{\"access\":%" PRIu64 ",\"assign\":%" PRIu64 ",\"access_named\":%" PRIu64
           ",\"assign_keysum\":%" PRIu64 ",\"access_keysum\":%" PRIu64
           ",\"grow_start\":%" PRIu64 ",\"grow_done\":%" PRIu64 "}\n",
           n, mput, nu, keysum_put, keysum_get, grows, done);
    mg_free(m);
    mg_free(b);
    return 0;
}
