/*
 * actor.c - MG_ACTOR: one owner thread holds the engine map; callers send
 * requests through a bounded channel and wait for the reply.
 *
 * The pattern of a Go map owned by one goroutine behind a channel.  Every
 * call becomes a request on the caller's stack; the caller puts it in the
 * channel (a ring of MG_ACTOR queue slots; a full channel makes the caller
 * wait, which is the back-pressure), then waits on the request's done word.
 * The owner takes every request in the channel at once and runs them in
 * order against the engine.  mg_batch sends a function that runs on the
 * owner between two requests: the compound "check, then update" operations
 * that motivate the pattern, atomic without any lock.  So do mg_range
 * (fn runs on the owner thread, with the whole walk atomic) and each
 * iterator step.
 *
 * Waiting: both sides spin a little (a reply usually comes within a few
 * microseconds), then yield the CPU a few times (the other side may be
 * waiting for this CPU), then sleep on a futex; a reply wakes the caller
 * with a system call only if it went to sleep.
 *
 * Shutdown: mg_free sends a stop request behind every request already in
 * the channel; the owner answers them all, then the stop, and exits; mg_free
 * joins it.  No request is lost and no thread is left.
 *
 * Guarantees (docs/modes.md): every call, mg_range and mg_batch included,
 * is one atomic step in the owner's order; mg_len is exact at its step.
 * Progress: blocking (a caller waits for the owner).
 */
#include "modes.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { RQ_PENDING, RQ_DONE, RQ_SLEEPING };
enum { RQ_OP, RQ_LEN, RQ_CLEAR, RQ_RANGE, RQ_ITER_INIT, RQ_ITER_NEXT, RQ_ITER_DONE,
       RQ_STATS, RQ_BATCH, RQ_STOP };

typedef struct {
    int kind;
    int op;
    const mg_kref *k;
    uint64_t val, old, out;
    bool loaded;
    int rc;
    size_t n;
    mg_range_fn range_fn;
    mg_batch_fn batch_fn;
    void *arg;
    mg_miter *it;
    const void *key;
    size_t len;
    mg_stats *stats;
    atomic_uint done; /* futex word: RQ_PENDING, RQ_DONE or RQ_SLEEPING */
} request;

#define MG_ACTOR_QUEUE 256u
#define MG_ACTOR_QUEUE_MAX (1u << 20)
/* A waiter (caller or owner) pauses this many times, then yields the CPU
 * this many times, then sleeps on a futex. */
#define MG_ACTOR_SPIN 200
#define MG_ACTOR_YIELDS 50

typedef struct {
    mg_mmap base;
    mg_map *e;
    pthread_t owner;
    pthread_mutex_t mu;
    pthread_cond_t not_full;
    unsigned cap, head, count;
    unsigned waiting_full;
    request **ring;
    atomic_uint bell; /* futex word: bumped on every send; the owner sleeps on it */
    atomic_uint owner_sleeping;
} act_map;

static inline act_map *ACT(mg_mmap *mm)
{
    return (act_map *)mm;
}

static void futex_wait(atomic_uint *w, unsigned val)
{
    syscall(SYS_futex, (void *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static void futex_wake(atomic_uint *w, int n)
{
    syscall(SYS_futex, (void *)w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* ---- the owner ---------------------------------------------------------- */

static void serve(act_map *a, request *r)
{
    mg_map *e = a->e;
    switch (r->kind) {
    case RQ_OP:
        r->rc = mg__eng_do(e, mg__mm_bytes(&a->base), r->op, r->k, r->val, r->old, &r->out,
                           &r->loaded);
        break;
    case RQ_LEN:
        r->n = mg_len(e);
        break;
    case RQ_CLEAR:
        mg_clear(e);
        break;
    case RQ_RANGE:
        r->rc = mg_range(e, r->range_fn, r->arg);
        break;
    case RQ_ITER_INIT:
        mg__eng_iter_init(mg__miter_engine(r->it), e);
        break;
    case RQ_ITER_NEXT:
        r->rc = mg__eng_iter_next(mg__miter_engine(r->it), &r->key, &r->len, &r->out);
        break;
    case RQ_ITER_DONE:
        mg__eng_iter_done(mg__miter_engine(r->it));
        break;
    case RQ_STATS:
        r->rc = mg_stats_get(e, r->stats);
        break;
    case RQ_BATCH:
        r->rc = r->batch_fn(&a->base.hdr, r->arg);
        break;
    default:
        break;
    }
}

/* Wake the caller only if it went to sleep: a spinning caller needs no
 * system call. */
static void answer(request *r)
{
    if (atomic_exchange_explicit(&r->done, RQ_DONE, memory_order_acq_rel) == RQ_SLEEPING)
        futex_wake(&r->done, 1);
}

static void *owner_main(void *arg)
{
    act_map *a = arg;
    /* Calls on the map from this thread (fn of mg_range and mg_batch) go
     * straight to the engine. */
    mg__excl = &a->base;
    request *batch[64];
    for (;;) {
        unsigned bell = atomic_load_explicit(&a->bell, memory_order_acquire);
        pthread_mutex_lock(&a->mu);
        unsigned n = 0;
        while (a->count > 0 && n < 64) {
            batch[n++] = a->ring[a->head];
            a->head = (a->head + 1) % a->cap;
            a->count--;
        }
        if (n > 0 && a->waiting_full)
            pthread_cond_broadcast(&a->not_full);
        pthread_mutex_unlock(&a->mu);
        if (n == 0) {
            /* Spin on the bell for a moment, then sleep on it. */
            unsigned i = 0;
            while (i < MG_ACTOR_SPIN + MG_ACTOR_YIELDS &&
                   atomic_load_explicit(&a->bell, memory_order_acquire) == bell) {
                if (i < MG_ACTOR_SPIN)
                    mg__cpu_relax();
                else
                    sched_yield();
                i++;
            }
            if (i == MG_ACTOR_SPIN + MG_ACTOR_YIELDS) {
                atomic_store(&a->owner_sleeping, 1);
                futex_wait(&a->bell, bell);
                atomic_store(&a->owner_sleeping, 0);
            }
            continue;
        }
        bool stop = false;
        for (unsigned i = 0; i < n; i++) {
            request *r = batch[i];
            if (r->kind == RQ_STOP) {
                stop = true; /* answered after the join */
                continue;
            }
            serve(a, r);
            answer(r);
        }
        if (stop)
            return NULL;
    }
}

/* ---- the callers -------------------------------------------------------- */

static void send_wait(act_map *a, request *r)
{
    atomic_init(&r->done, RQ_PENDING);
    pthread_mutex_lock(&a->mu);
    while (a->count == a->cap) {
        a->waiting_full++;
        pthread_cond_wait(&a->not_full, &a->mu);
        a->waiting_full--;
    }
    a->ring[(a->head + a->count) % a->cap] = r;
    a->count++;
    pthread_mutex_unlock(&a->mu);
    /* seq_cst against the owner's "sleeping" store: either it sees the new
     * bell before sleeping, or we see it asleep and wake it. */
    atomic_fetch_add_explicit(&a->bell, 1, memory_order_seq_cst);
    if (atomic_load(&a->owner_sleeping))
        futex_wake(&a->bell, 1);
    for (unsigned i = 0; i < MG_ACTOR_SPIN + MG_ACTOR_YIELDS; i++) {
        if (atomic_load_explicit(&r->done, memory_order_acquire) == RQ_DONE)
            return;
        if (i < MG_ACTOR_SPIN)
            mg__cpu_relax();
        else
            sched_yield(); /* lets the owner run here if it shares this CPU */
    }
    unsigned st = RQ_PENDING;
    if (!atomic_compare_exchange_strong_explicit(&r->done, &st, RQ_SLEEPING,
                                                 memory_order_acq_rel, memory_order_acquire))
        return; /* answered meanwhile */
    while (atomic_load_explicit(&r->done, memory_order_acquire) != RQ_DONE)
        futex_wait(&r->done, RQ_SLEEPING);
}

/* On the owner thread (inside fn of mg_range or mg_batch) a request would
 * wait for itself: run it here instead. */
static void call(act_map *a, request *r)
{
    if (mg__excl == &a->base)
        serve(a, r);
    else
        send_wait(a, r);
}

static int act_rmw(mg_mmap *mm, int op, const mg_kref *k, uint64_t val, uint64_t old,
                   uint64_t *out, bool *loaded)
{
    request r = {.kind = RQ_OP, .op = op, .k = k, .val = val, .old = old};
    call(ACT(mm), &r);
    if (out && (r.loaded || op == MG_OP_GET || op == MG_RMW_GET_OR_PUT))
        *out = r.out;
    if (loaded)
        *loaded = r.loaded;
    return r.rc;
}

static int act_put(mg_mmap *mm, const mg_kref *k, uint64_t val)
{
    return act_rmw(mm, MG_OP_PUT, k, val, 0, NULL, NULL);
}

static bool act_get(mg_mmap *mm, const mg_kref *k, uint64_t *val)
{
    request r = {.kind = RQ_OP, .op = MG_OP_GET, .k = k};
    call(ACT(mm), &r);
    if (r.rc && val)
        *val = r.out;
    return r.rc != 0;
}

static bool act_del(mg_mmap *mm, const mg_kref *k)
{
    return act_rmw(mm, MG_OP_DEL, k, 0, 0, NULL, NULL) != 0;
}

static size_t act_len(mg_mmap *mm)
{
    request r = {.kind = RQ_LEN};
    call(ACT(mm), &r);
    return r.n;
}

static void act_clear(mg_mmap *mm)
{
    request r = {.kind = RQ_CLEAR};
    call(ACT(mm), &r);
}

static int act_range(mg_mmap *mm, mg_range_fn fn, void *arg)
{
    request r = {.kind = RQ_RANGE, .range_fn = fn, .arg = arg};
    call(ACT(mm), &r);
    return r.rc;
}

static void act_iter_init(mg_mmap *mm, mg_miter *it)
{
    request r = {.kind = RQ_ITER_INIT, .it = it};
    call(ACT(mm), &r);
}

static bool act_iter_next(mg_mmap *mm, mg_miter *it, const void **key, size_t *len,
                          uint64_t *val)
{
    request r = {.kind = RQ_ITER_NEXT, .it = it};
    call(ACT(mm), &r);
    if (!r.rc)
        return false;
    *key = r.key;
    *len = r.len;
    *val = r.out;
    return true;
}

static void act_iter_done(mg_mmap *mm, mg_miter *it)
{
    request r = {.kind = RQ_ITER_DONE, .it = it};
    call(ACT(mm), &r);
}

static int act_stats(mg_mmap *mm, mg_stats *out)
{
    request r = {.kind = RQ_STATS, .stats = out};
    call(ACT(mm), &r);
    out->bytes += sizeof(act_map) + ACT(mm)->cap * sizeof(request *);
    return r.rc;
}

static int act_batch(mg_mmap *mm, mg_batch_fn fn, void *arg)
{
    request r = {.kind = RQ_BATCH, .batch_fn = fn, .arg = arg};
    call(ACT(mm), &r);
    return r.rc;
}

static void release(act_map *a)
{
    if (a->e)
        mg_free(a->e);
    if (a->ring)
        mg__mfree(&a->base, a->ring, a->cap * sizeof(request *));
    mg__mode_fini(&a->base, sizeof *a);
}

static void act_sample(mg_mmap *mm, mg_metric_sample *out)
{
    act_map *a = ACT(mm);
    /* Not through the channel: the owner may be running user code (a batch
     * or range callback) that waits for this scrape. */
    mg__eng_sample(a->e, &out->st);
    out->st.bytes += sizeof(act_map) + a->cap * sizeof(request *);
    pthread_mutex_lock(&a->mu); /* held only to queue or take requests */
    out->queue_depth = a->count;
    pthread_mutex_unlock(&a->mu);
    out->queue_capacity = a->cap;
    out->has_actor = true;
}

static void act_destroy(mg_mmap *mm)
{
    act_map *a = ACT(mm);
    /* The stop request goes behind everything already sent. */
    request stop = {.kind = RQ_STOP};
    atomic_init(&stop.done, 0);
    pthread_mutex_lock(&a->mu);
    while (a->count == a->cap) {
        a->waiting_full++;
        pthread_cond_wait(&a->not_full, &a->mu);
        a->waiting_full--;
    }
    a->ring[(a->head + a->count) % a->cap] = &stop;
    a->count++;
    pthread_mutex_unlock(&a->mu);
    atomic_fetch_add_explicit(&a->bell, 1, memory_order_seq_cst);
    futex_wake(&a->bell, 1);
    pthread_join(a->owner, NULL);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->not_full);
    release(a);
}

static const mg_mops act_ops = {
    .destroy = act_destroy,
    .put = act_put,
    .get = act_get,
    .del = act_del,
    .rmw = act_rmw,
    .len = act_len,
    .clear = act_clear,
    .range = act_range,
    .iter_init = act_iter_init,
    .iter_next = act_iter_next,
    .iter_done = act_iter_done,
    .stats = act_stats,
    .sample = act_sample,
    .batch = act_batch,
};

mg_mmap *mg__actor_new(const mg_options *o)
{
    if (o->queue > MG_ACTOR_QUEUE_MAX) {
        errno = EINVAL;
        return NULL;
    }
    act_map *a = (act_map *)mg__mode_alloc(o, sizeof *a, &act_ops);
    if (!a)
        return NULL;
    a->cap = o->queue ? o->queue : MG_ACTOR_QUEUE;
    a->ring = mg__mmalloc(&a->base, a->cap * sizeof(request *));
    a->e = mg__eng_new(&a->base, o->hint);
    if (!a->ring || !a->e)
        goto nomem;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->not_full, NULL);
    atomic_init(&a->bell, 0);
    atomic_init(&a->owner_sleeping, 0);
    int rc = pthread_create(&a->owner, NULL, owner_main, a);
    if (rc != 0) {
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->not_full);
        release(a);
        errno = EAGAIN;
        return NULL;
    }
    return &a->base;
nomem:
    release(a);
    errno = ENOMEM;
    return NULL;
}
