/*
 * gdb_fatal.c - a program that dies in a mapguard fatal with maps worth
 * looking at, for tests/gdb/gdb_test.sh.
 *
 * Before the fatal it prints, on stdout, the mg_stats of its map "gdbtest"
 * (one "stats:" line) and the addresses it sets up, so the test can check
 * what gdb shows against what the library itself reported:
 *   m       "gdbtest", u64 keys, stopped in the middle of a doubling
 *   b       "gdbbytes", byte keys, not growing
 *   rw      "gdbrw", MG_RWLOCK, a few keys
 *   busy    "gdbbusy", whose writer word holds the token of a second
 *           thread (parked: a write in progress, as gdb sees it)
 *   freed   a map already freed (its header says MG_MAGIC_FREED)
 *   junk    memory that is no map (a corrupt header)
 * then calls mg_put_u64(NULL, ...): "assignment to entry in nil map", which
 * aborts (SIGABRT) in the fatal reporter.
 */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* B 7 holds MG_LOAD_NUM * 2^7 / MG_LOAD_DEN keys; the next insert starts a
 * doubling to B 8, and each later insert evacuates at most two of the 128
 * old buckets, so EXTRA more inserts leave the grow half done. */
#define FULL_B7 ((uint64_t)MG_LOAD_NUM * (128 / MG_LOAD_DEN))
#define EXTRA 20

/* The writer: a thread record of its own, as the engine's (a token is
 * the address of a thread-local mg_thread_rec holding the kernel tid), put
 * in the map's writer word, and a thread that never finishes its "write". */
static _Thread_local mg_thread_rec writer_rec;
static _Atomic long writer_tid;

static void *writer_main(void *arg)
{
    mg_map *m = arg;
    writer_rec.tid = (long)syscall(SYS_gettid);
    atomic_store(&m->writer, (uintptr_t)&writer_rec);
    atomic_store(&writer_tid, writer_rec.tid);
    for (;;)
        pause();
    return NULL;
}

/* The freed map's allocator never gives memory back, so the header that
 * mg_free marked MG_MAGIC_FREED is still there for gdb to see (with the C
 * library's free the block may be reused, as the fatal reporter's own
 * allocations would do here). */
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
    (void)ctx;
    (void)p;
    (void)size;
}
static const mg_allocator keep_alloc = {keep_malloc, keep_calloc, keep_free, NULL};
static unsigned char junk[sizeof(struct mg_map)];

static mg_map *make(const char *name, mg_mode mode, mg_keykind key)
{
    mg_options o = {.mode = mode, .key = key, .name = name};
    mg_map *m = mg_new(&o);
    if (!m) {
        perror("mg_new");
        exit(2);
    }
    return m;
}

int main(void)
{
    mg_map *m = make("gdbtest", MG_UNSYNC, MG_KEY_U64);
    for (uint64_t k = 1; k <= FULL_B7 + 1 + EXTRA; k++)
        mg_put_u64(m, k, k * 10);

    mg_map *b = make("gdbbytes", MG_UNSYNC, MG_KEY_BYTES);
    mg_put(b, "alpha", 5, 1);
    mg_put(b, "a key longer than sixteen bytes", 31, 2);

    mg_map *rw = make("gdbrw", MG_RWLOCK, MG_KEY_U64);
    for (uint64_t k = 1; k <= 3; k++)
        mg_put_u64(rw, k, k);

    mg_map *busy = make("gdbbusy", MG_UNSYNC, MG_KEY_U64);
    mg_put_u64(busy, 1, 1);
    pthread_t writer;
    if (pthread_create(&writer, NULL, writer_main, busy) != 0) {
        perror("pthread_create");
        exit(2);
    }
    while (atomic_load(&writer_tid) == 0)
        usleep(1000);

    mg_map *freed = mg_new(&(mg_options){.alloc = &keep_alloc});
    if (!freed) {
        perror("mg_new");
        exit(2);
    }
    mg_put_u64(freed, 1, 1);
    mg_free(freed);

    memset(junk, 0xab, sizeof junk);

    mg_stats st;
    mg_stats_get(m, &st);
    printf("stats: count=%zu B=%u buckets=%zu growing=%d kind=%s evacuated=%zu "
           "old_buckets=%zu overflow=%zu grows_total=%llu load=%.2f bytes=%zu\n",
           st.count, st.B, st.buckets, (int)st.growing,
           st.shrinking ? "shrink" : st.same_size_grow ? "same-size" : "double",
           st.evacuated, st.old_buckets, st.overflow_buckets,
           (unsigned long long)st.grows_total, st.load_factor, st.bytes);
    printf("maps: m=%p b=%p rw=%p busy=%p freed=%p junk=%p writer_tid=%ld\n", (void *)m,
           (void *)b, (void *)rw, (void *)busy, (void *)freed, (void *)junk,
           atomic_load(&writer_tid));
    fflush(stdout);

    mg_put_u64(NULL, 1, 1); /* fatal: assignment to entry in nil map */
    return 0;
}
