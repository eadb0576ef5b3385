/*
 * lock.h - the locks of the concurrent modes.
 *
 * Both are built on C11 atomics, so ThreadSanitizer sees their
 * acquire/release edges without annotations.  They spin briefly (a
 * conflict in a map lasts one engine operation, ~100 ns) and then yield the
 * CPU, so a preempted holder does not make its waiters burn their slice.
 * glibc's pthread_rwlock_t, by contrast, sleeps in the kernel on every
 * conflict, which is what makes an rwlock-guarded map collapse under 10%
 * writes (see docs/modes.md).
 *
 *   mg_spin     a test-and-test-and-set mutex: one exchange to take, one
 *               release store to drop.
 *   mg_bigrw    a "big-reader" lock: each thread counts itself in one of
 *               several reader slots, each on its own cache line, so readers
 *               on different cores write different lines; the writer takes
 *               a mutex, raises a flag and waits for every slot to drain.
 */
#ifndef MG_MODES_LOCK_H
#define MG_MODES_LOCK_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#define MG_CACHE_LINE 64
/* Two lines: the adjacent-line prefetcher pulls pairs, so anything written
 * by different threads keeps this far apart. */
#define MG_PAD 128

/* Spins before yielding the CPU. */
#define MG_SPINS 128

static inline void mg__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One step of a wait loop: pause while *n is small, then yield. */
static inline void mg__backoff(unsigned *n)
{
    if (*n < MG_SPINS) {
        (*n)++;
        mg__cpu_relax();
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
    atomic_uint writer; /* 1 while a writer holds or wants it */
    mg_spin wmutex;     /* orders the writers */
    unsigned nslots;    /* a power of two */
    mg_rslot *slots;    /* MG_PAD-aligned, inside slots_raw */
    void *slots_raw;
} mg_bigrw;

/* The calling thread's reader slot (threads are spread round robin). */
unsigned mg__bigrw_slot(void);

static inline mg_rslot *mg_bigrw_rdlock(mg_bigrw *l)
{
    mg_rslot *s = &l->slots[mg__bigrw_slot() & (l->nslots - 1)];
    unsigned n = 0;
    for (;;) {
        /* seq_cst: the count must be visible before the flag is read (the
         * writer does the mirror image: flag, then counts). */
        atomic_fetch_add_explicit(&s->readers, 1, memory_order_seq_cst);
        if (MG_LIKELY(atomic_load_explicit(&l->writer, memory_order_seq_cst) == 0))
            return s;
        atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
        while (atomic_load_explicit(&l->writer, memory_order_relaxed) != 0)
            mg__backoff(&n);
    }
}
static inline void mg_bigrw_rdunlock(mg_rslot *s)
{
    atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
}
static inline void mg_bigrw_wrlock(mg_bigrw *l)
{
    mg_spin_lock(&l->wmutex);
    atomic_store_explicit(&l->writer, 1, memory_order_seq_cst);
    unsigned n = 0;
    for (unsigned i = 0; i < l->nslots; i++)
        while (atomic_load_explicit(&l->slots[i].readers, memory_order_acquire) != 0)
            mg__backoff(&n);
}
static inline void mg_bigrw_wrunlock(mg_bigrw *l)
{
    atomic_store_explicit(&l->writer, 0, memory_order_release);
    mg_spin_unlock(&l->wmutex);
}

#endif
