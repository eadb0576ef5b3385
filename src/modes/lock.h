/*
 * lock.h - the locks of the concurrent modes.
 *
 * Both are built on C11 atomics, so ThreadSanitizer sees their
 * acquire/release edges without annotations.  They spin first (a conflict
 * in a map lasts one engine operation, ~100 ns), with a pause count that
 * doubles so that waiters leave the lock's line to its holder; then the
 * spin lock yields the CPU and the reader-writer lock sleeps on a futex.
 * glibc's pthread_rwlock_t, by contrast, sleeps in the kernel on every
 * conflict, which is what makes an rwlock-guarded map collapse under 10%
 * writes (see docs/modes.md).
 *
 *   mg_spin     a test-and-test-and-set mutex: one exchange to take, one
 *               release store to drop.
 *   mg_bigrw    a "big-reader" lock: each thread counts itself in one of
 *               several reader slots, each on its own cache line, so readers
 *               on different cores write different lines; a writer sets the
 *               writer bit of one word (which also orders the writers) and
 *               waits for every slot to drain.  Threads that wait for a
 *               writer spin briefly, then sleep on the word (futex).
 */
#ifndef MG_MODES_LOCK_H
#define MG_MODES_LOCK_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

/* Two lines: the adjacent-line prefetcher pulls pairs, so anything written
 * by different threads keeps this far apart. */
#define MG_PAD 128

/* Doublings of the pause count before a waiter yields the CPU. */
#define MG_BACKOFF_STEPS 8

static inline void mg__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One step of a wait loop: pause 1, 2, 4, ... times (a waiter that polls
 * less leaves the lock's line with its holder), then yield. */
static inline void mg__backoff(unsigned *n)
{
    if (*n < MG_BACKOFF_STEPS) {
        for (unsigned i = 0; i < (1u << *n); i++)
            mg__cpu_relax();
        (*n)++;
    } else {
        sched_yield();
    }
}

/* ---- mg_spin ------------------------------------------------------------ */
typedef struct {
    atomic_uint v;
} mg_spin;

static inline void mg_spin_init(mg_spin *l)
{
    atomic_init(&l->v, 0);
}
static inline void mg_spin_lock(mg_spin *l)
{
    unsigned n = 0;
    for (;;) {
        if (atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0)
            return;
        while (atomic_load_explicit(&l->v, memory_order_relaxed) != 0)
            mg__backoff(&n);
    }
}
static inline void mg_spin_unlock(mg_spin *l)
{
    atomic_store_explicit(&l->v, 0, memory_order_release);
}

/* ---- mg_bigrw ----------------------------------------------------------- */
/* A reader slot fills MG_PAD bytes; the array is allocated MG_PAD-aligned
 * (mg__bigrw_init), so no two slots share a line. */
typedef struct {
    atomic_ulong readers;
    char pad_[MG_PAD - sizeof(atomic_ulong)];
} mg_rslot;

typedef struct {
    atomic_uint word;   /* MG_RW_WRITER | MG_RW_WAITERS */
    unsigned nslots;    /* a power of two */
    mg_rslot *slots;    /* MG_PAD-aligned, inside slots_raw */
    void *slots_raw;
} mg_bigrw;

#define MG_RW_WRITER 0x80000000u
#define MG_RW_WAITERS 0x40000000u /* someone sleeps on the word (futex) */
/* Doublings of the pause count before a waiter for a writer sleeps. */
#define MG_RW_SPIN_STEPS 6

/* Wait for the writer bit of *w to clear: spin a little, then sleep on the
 * word (the writer wakes the sleepers when it leaves).  Sleeping, not
 * polling, is what lets the writer's thread run on alone at full speed
 * while the others wait: under a write-heavy mix the lock then behaves
 * like Go's RWMutex, which parks its waiters. */
void mg__rw_wait(atomic_uint *w, unsigned *n);
void mg__rw_wake(atomic_uint *w);
/* The calling thread's reader slot (threads are spread round robin). */
unsigned mg__bigrw_slot(void);

/* Returns the slot the reader counted itself in; pass it to
 * mg_bigrw_rdunlock. */
static inline mg_rslot *mg_bigrw_rdlock(mg_bigrw *l)
{
    mg_rslot *s = &l->slots[mg__bigrw_slot() & (l->nslots - 1)];
    unsigned n = 0;
    for (;;) {
        /* seq_cst: the count is visible before the writer word is read; a
         * writer does the mirror image (word, then counts). */
        atomic_fetch_add_explicit(&s->readers, 1, memory_order_seq_cst);
        if (MG_LIKELY(!(atomic_load_explicit(&l->word, memory_order_seq_cst) & MG_RW_WRITER)))
            return s;
        atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
        while (atomic_load_explicit(&l->word, memory_order_relaxed) & MG_RW_WRITER)
            mg__rw_wait(&l->word, &n);
    }
}
static inline void mg_bigrw_rdunlock(mg_bigrw *l, mg_rslot *s)
{
    (void)l;
    atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
}
/* The writer word both orders the writers and holds the readers off: the
 * writer that sets it owns the lock once the reader counts drain. */
static inline void mg_bigrw_wrlock(mg_bigrw *l)
{
    unsigned n = 0;
    unsigned v = atomic_load_explicit(&l->word, memory_order_relaxed);
    for (;;) {
        if (v & MG_RW_WRITER) {
            mg__rw_wait(&l->word, &n);
            v = atomic_load_explicit(&l->word, memory_order_relaxed);
        } else if (atomic_compare_exchange_weak_explicit(&l->word, &v, v | MG_RW_WRITER,
                                                         memory_order_seq_cst,
                                                         memory_order_relaxed)) {
            break;
        }
    }
    n = 0;
    for (unsigned i = 0; i < l->nslots; i++)
        while (atomic_load_explicit(&l->slots[i].readers, memory_order_acquire) != 0)
            mg__backoff(&n);
}
static inline void mg_bigrw_wrunlock(mg_bigrw *l)
{
    unsigned v = atomic_fetch_and_explicit(&l->word, ~(MG_RW_WRITER | MG_RW_WAITERS),
                                           memory_order_release);
    if (MG_UNLIKELY(v & MG_RW_WAITERS))
        mg__rw_wake(&l->word);
}

#endif
