/*
 * conc_mapguard.c - the workload's concurrent phases on mapguard, one
 * concurrency mode per process, through mapguard.h only.
 *
 *   conc_mapguard --mode rwlock|sharded|readmostly|snapshot|actor|
 *                        unsync-read|unsync  [conc_harness.h options]
 *
 * Every mode but the last two is a thread-safe mode (mg_options.mode) and
 * takes the plain u64 calls from every thread.  unsync-read is MG_UNSYNC
 * with only the r100 mix: Go's rule allows any number of concurrent
 * readers, so it is the ceiling a synchronised mode can approach.  unsync
 * runs any mix, but writes only with --threads 1 (two writers are fatal
 * misuse).  A mode this build does not provide yet (mg_new() fails with
 * ENOTSUP) prints an "unavailable" line and exits 0.  Maps are made with
 * no hint and the mode's default options, as a user would.  The preload
 * and the check passes (untimed) run inside mg_batch where the mode has it,
 * so that an actor map is not filled by a million round trips.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "conc_harness.h"

#include <mapguard.h>

static bool get(void *m, uint64_t key, uint64_t *val)
{
    return mg_get_u64((mg_map *)m, key, val);
}

static bool put(void *m, uint64_t key, uint64_t val)
{
    return mg_put_u64((mg_map *)m, key, val) == MG_OK;
}

static bool del(void *m, uint64_t key) { return mg_del_u64((mg_map *)m, key); }

static size_t len(void *m) { return mg_len((const mg_map *)m); }

/* mg_batch runs fn as one atomic step: under the write lock, holding
 * every shard, as one snapshot publish, or on the actor's own thread.
 * MG_READMOSTLY has no batch (MG_ENOTSUP): the caller then runs fn
 * itself, with plain calls, as a sync.Map user would. */
typedef struct {
    void (*fn)(void *);
    void *arg;
} batch_call;

static int batch_body(mg_map *m, void *arg)
{
    const batch_call *b = (const batch_call *)arg;
    (void)m;
    b->fn(b->arg);
    return MG_OK;
}

static bool exclusive(void *m, void (*fn)(void *), void *arg)
{
    batch_call b = {fn, arg};
    return mg_batch((mg_map *)m, batch_body, &b) != MG_ENOTSUP;
}

static const cc_ops OPS = {get,  put,  del,  len,  NULL,
                           NULL, NULL, NULL, NULL, exclusive};

static void *worker(void *arg)
{
    cc_loop(arg, &OPS);
    return NULL;
}

/* The command line's modes, the mg_mode each runs in. */
static const char *const mode_names[] = {"rwlock",   "sharded",     "readmostly",
                                         "snapshot", "actor",       "unsync-read",
                                         "unsync"};
static const mg_mode mode_values[] = {MG_RWLOCK,   MG_SHARDED, MG_READMOSTLY,
                                      MG_SNAPSHOT, MG_ACTOR,   MG_UNSYNC,
                                      MG_UNSYNC};
#define NMODES ((int)(sizeof mode_names / sizeof mode_names[0]))

int main(int argc, char **argv)
{
    cc_args a;
    mg_options o;
    mg_map *m;
    int rc = cc_parse(&a, "mapguard", "conc_mapguard", mode_names, NMODES,
                      argc, argv);
    int k;
    if (rc != 0)
        return rc;
    for (k = 0; strcmp(a.mode, mode_names[k]) != 0;)
        k++;
    if (strcmp(a.mode, "unsync-read") == 0 && cc_any_writes(&a)) {
        fprintf(stderr, "conc_mapguard: --mode unsync-read runs r100 only\n");
        return 2;
    }
    if (strcmp(a.mode, "unsync") == 0 && cc_any_writes(&a) &&
        cc_max_threads(&a) > 1) {
        fprintf(stderr, "conc_mapguard: --mode unsync writes from one thread "
                        "only: use --threads 1 or --mixes r100\n");
        return 2;
    }
    memset(&o, 0, sizeof o);
    o.mode = mode_values[k];
    o.name = "knee";
    errno = 0;
    m = mg_new(&o);
    if (m == NULL) {
        if (errno == ENOTSUP)
            cc_unavailable(&a, "ENOTSUP");
        cc_fail(&a, "mg_new(mode %s): %s", a.mode, strerror(errno));
    }
    cc_main(&a, m, &OPS, worker);
    mg_free(m);
    return 0;
}
