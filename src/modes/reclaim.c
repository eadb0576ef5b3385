/*
 * reclaim.c - freeing what lock-free readers may still hold.
 *
 * MG_READMOSTLY and MG_SNAPSHOT let readers walk memory that a writer
 * replaces.  The writer retires the old memory here instead of freeing it.
 * It is freed when two things are true:
 *   1. An RCU grace period has passed since it was retired: every reader
 *      that could have loaded a pointer to it has left its read-side
 *      section.  We use liburcu's bulletproof flavour (urcu-bp): a read-side
 *      section writes only the calling thread's own counter, and threads
 *      need no registration, so the library stays usable from any thread.
 *   2. No pinned version older than it exists.  Iterators and mg_range pin
 *      the version they walk (an atomic count on it) because they run for
 *      as long as the caller likes, outside any read-side section.  Items
 *      are freed strictly in retirement order, stopping at the first one
 *      whose version is pinned, so a pinned version keeps everything that
 *      was retired after it (which may be shared with it) too.
 *
 * Grace periods are waited for in batches: a retire is a queue append, and
 * once the queue holds MG_LIMBO_ITEMS items or MG_LIMBO_BYTES bytes the
 * next poll waits for one grace period (synchronize_rcu) and frees what
 * it may.  No thread is created.
 */
/* No _LGPL_SOURCE: liburcu's read-side stays in the LGPL library (a call),
 * not inlined into this MIT-licensed code. */
#include "modes.h"

#include <urcu-bp.h>

#include <stdlib.h>

/* ThreadSanitizer does not see liburcu's ordering (liburcu is not
 * instrumented): tell it that a reader's section happens before the
 * frees that follow the next grace period. */
#if defined(__SANITIZE_THREAD__)
#define MG_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MG_TSAN 1
#endif
#endif
#ifdef MG_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char tsan_grace;
#define TSAN_RELEASE() __tsan_release(&tsan_grace)
#define TSAN_ACQUIRE() __tsan_acquire(&tsan_grace)
#else
#define TSAN_RELEASE() ((void)0)
#define TSAN_ACQUIRE() ((void)0)
#endif

#define MG_LIMBO_ITEMS 256
#define MG_LIMBO_BYTES ((size_t)4 << 20)

struct mg_retired {
    struct mg_retired *next;
    void *p;
    size_t size;
    mg_free_fn fn;
    atomic_int *pins;
};

struct mg_limbo {
    mg_mmap *mm;
    mg_spin lock; /* the queue */
    mg_retired_item *head, *tail;
    /* Written under lock; read without it by mg__limbo_poll, which every
     * write of a mode calls: a relaxed read of a line that changes only
     * when something is retired. */
    atomic_size_t n, bytes;
    atomic_bool polling; /* one poller at a time */
};

void mg__rcu_read_lock(void)
{
    urcu_bp_read_lock();
}

void mg__rcu_read_unlock(void)
{
    TSAN_RELEASE();
    urcu_bp_read_unlock();
}

static void grace(void)
{
    urcu_bp_synchronize_rcu();
    TSAN_ACQUIRE();
}

mg_limbo *mg__limbo_new(mg_mmap *mm)
{
    mg_limbo *l = mg__mmalloc(mm, sizeof *l);
    if (!l)
        return NULL;
    memset(l, 0, sizeof *l);
    atomic_init(&l->n, 0);
    atomic_init(&l->bytes, 0);
    l->mm = mm;
    mg_spin_init(&l->lock);
    atomic_init(&l->polling, false);
    return l;
}

static bool pinned(const mg_retired_item *it)
{
    return it->pins && atomic_load_explicit(it->pins, memory_order_acquire) != 0;
}

/* Free items from the front of the chain starting at *list while they are
 * unpinned; returns what is left (starting with a pinned item) and sets
 * *freed_bytes. */
static mg_retired_item *free_front(mg_limbo *l, mg_retired_item *it, size_t *nfreed,
                                   size_t *freed_bytes)
{
    while (it && !pinned(it)) {
        mg_retired_item *next = it->next;
        *freed_bytes += it->size;
        (*nfreed)++;
        it->fn(l->mm, it->p, it->size);
        mg__mfree(l->mm, it, sizeof *it);
        it = next;
    }
    return it;
}

static void poll_now(mg_limbo *l)
{
    mg_spin_lock(&l->lock);
    mg_retired_item *list = l->head, *tail = l->tail;
    l->head = l->tail = NULL;
    mg_spin_unlock(&l->lock);
    if (!list)
        return;
    grace();
    size_t n = 0, bytes = 0;
    mg_retired_item *rest = free_front(l, list, &n, &bytes);
    mg_spin_lock(&l->lock);
    atomic_fetch_sub_explicit(&l->n, n, memory_order_relaxed);
    atomic_fetch_sub_explicit(&l->bytes, bytes, memory_order_relaxed);
    if (rest) { /* put the pinned remainder back in front */
        tail->next = l->head;
        if (!l->head)
            l->tail = tail;
        l->head = rest;
    }
    mg_spin_unlock(&l->lock);
}

void mg__limbo_retire(mg_limbo *l, void *p, size_t size, mg_free_fn fn, atomic_int *pins)
{
    mg_retired_item *it = mg__mmalloc(l->mm, sizeof *it);
    if (!it) {
        /* No memory for the queue: wait for the readers and free now, if
         * nothing pinned is queued before it and its own version is not
         * pinned.  Otherwise it cannot be freed safely: it stays allocated
         * (a leak under memory pressure, never a use after free). */
        poll_now(l);
        grace();
        mg_spin_lock(&l->lock);
        bool blocked = l->head != NULL || (pins && atomic_load(pins) != 0);
        mg_spin_unlock(&l->lock);
        if (!blocked)
            fn(l->mm, p, size);
        return;
    }
    it->next = NULL;
    it->p = p;
    it->size = size;
    it->fn = fn;
    it->pins = pins;
    mg_spin_lock(&l->lock);
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    atomic_fetch_add_explicit(&l->n, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->bytes, size, memory_order_relaxed);
    mg_spin_unlock(&l->lock);
}

void mg__limbo_poll(mg_limbo *l)
{
    bool due = atomic_load_explicit(&l->n, memory_order_relaxed) >= MG_LIMBO_ITEMS ||
               atomic_load_explicit(&l->bytes, memory_order_relaxed) >= MG_LIMBO_BYTES;
    if (!due || atomic_exchange(&l->polling, true))
        return;
    poll_now(l);
    atomic_store(&l->polling, false);
}

void mg__limbo_destroy(mg_limbo *l)
{
    if (!l)
        return;
    grace();
    mg_retired_item *it = l->head;
    while (it) { /* pins are zero now: the map is being freed */
        mg_retired_item *next = it->next;
        it->fn(l->mm, it->p, it->size);
        mg__mfree(l->mm, it, sizeof *it);
        it = next;
    }
    mg__mfree(l->mm, l, sizeof *l);
}
