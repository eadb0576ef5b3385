/*
 * events.h - the event points of the engine and the modes: one macro per
 * event, each a USDT probe (provider "mapguard", <sys/sdt.h>, probes.h)
 * plus, for the growth timeline, a call into trace.c when a trace is
 * running (docs/tracing.md).
 *
 *   event                          probe name           arguments
 *   MG_EV_GROW_START(m, oldB, newB, same)  map__grow__start  map, name, oldB, newB, same_size
 *   MG_EV_GROW_DONE(m, B)          map__grow__done      map, name, B
 *   MG_EV_EVACUATE(m, unit)        map__evacuate        map, name, unit
 *   MG_EV_OVERFLOW(m, n)           map__overflow        map, name, overflow buckets now
 *   MG_EV_SHRINK(m, oldB, newB)    map__shrink          map, name, oldB, newB
 *   MG_EV_PROMOTE(m, n)            syncmap__promote     map, name, entries promoted
 *   MG_EV_PUBLISH(m, v)            snapshot__publish    map, name, version
 *   MG_EV_FATAL(m, msg)            map__fatal           map, name, message
 *   MG_EV_ACCESS(m, key)           map__access          map, name, u64 key (0 for byte keys)   semaphore
 *   MG_EV_ASSIGN(m, key)           map__assign          map, name, u64 key (0 for byte keys)   semaphore
 *
 * Argument types as a tracer reads them: map `const void *`, name
 * `const char *` (NULL when unnamed: bpftrace's str() gives ""), B, oldB,
 * newB `unsigned`, same_size `int` (0 or 1), unit, n, version and key
 * `uint64_t`, message `const char *`.
 *
 * m is the public map (an mg_map *, engine or mode header); the name a
 * probe carries is m->label (the map's name, or for an engine map inside a
 * mode the mode map's name; NULL when unnamed).  The engine's events (grow, evacuate,
 * overflow, shrink) take the engine map, whose count the timeline reads.
 * MG_EV_FATAL's m may be NULL or freed: its name argument is read only
 * from a header that still carries a live magic (mg__probe_fatal_name).
 *
 * Lifecycle: MG_EV_GROW_START (double or same-size) or MG_EV_SHRINK starts
 * a growth (the new bucket array is in place); MG_EV_EVACUATE reports
 * each evacuation unit as it is evacuated (an old bucket; a group of old
 * buckets when shrinking); MG_EV_GROW_DONE ends the growth or shrink when
 * the old bucket array is released.
 *
 * Use: each macro is a statement (`MG_EV_GROW_DONE(m, m->B);`).  The
 * arguments are evaluated only while the event is observed, possibly more
 * than once: pass plain values, no side effects.
 *
 * Cost (docs/tracing.md): an untraced probe is a 16-bit load of its
 * semaphore and a predicted branch, so the per-operation events (access,
 * assign) cost that and nothing else.  The timeline adds one relaxed load
 * of mg__trace_active to the rare events; the work is out of line (cold).
 * Compiled out entirely when MG_NO_OBSERVE is defined (the cost baseline):
 * every macro is then ((void)0), its arguments only named under sizeof.
 */
#ifndef MG_EVENTS_H
#define MG_EVENTS_H

#include "mapguard.h"

#ifndef MG_NO_OBSERVE

#include "obs/probes.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- the growth timeline (trace.c) -------------------------------------- */
/* Non-zero while a trace runs (mg_trace_start .. mg_trace_stop). */
extern atomic_int mg__trace_active __attribute__((visibility("hidden")));
#define MG__TRACE_ON()                                                        \
    __builtin_expect(atomic_load_explicit(&mg__trace_active, memory_order_relaxed) != 0, 0)

#define MG__COLD __attribute__((cold, noinline))
MG__COLD void mg__trace_grow_start(const mg_map *m, unsigned oldB, unsigned newB, bool same);
MG__COLD void mg__trace_grow_done(const mg_map *m, unsigned B);
MG__COLD void mg__trace_evacuate(const mg_map *m, uint64_t unit);
MG__COLD void mg__trace_shrink(const mg_map *m, unsigned oldB, unsigned newB);
MG__COLD void mg__trace_promote(const mg_map *m, uint64_t n);
MG__COLD void mg__trace_publish(const mg_map *m, uint64_t version);
/* Writes a "fatal" instant event and finishes the file (it stays valid
 * JSON although the process aborts); waits at most 200 ms for the lock,
 * and leaves the file unfinished if it cannot get it. */
MG__COLD void mg__trace_fatal(const mg_map *m, const char *msg);
/* The name of a map being reported as fatal, or NULL when m is NULL or
 * its header has no live magic (probes.c). */
MG__COLD const char *mg__probe_fatal_name(const mg_map *m);

/* ---- the events ------------------------------------------------------- */
#define MG_EV_GROW_START(m, oldB, newB, same)                                 \
    do {                                                                      \
        MG__USDT5(map__grow__start, (const void *)(m), (const char *)(m)->label, \
                  (unsigned)(oldB), (unsigned)(newB), (int)!!(same));         \
        if (MG__TRACE_ON())                                                   \
            mg__trace_grow_start((m), (unsigned)(oldB), (unsigned)(newB), !!(same)); \
    } while (0)

#define MG_EV_GROW_DONE(m, B)                                                 \
    do {                                                                      \
        MG__USDT3(map__grow__done, (const void *)(m), (const char *)(m)->label, \
                  (unsigned)(B));                                             \
        if (MG__TRACE_ON())                                                   \
            mg__trace_grow_done((m), (unsigned)(B));                          \
    } while (0)

#define MG_EV_EVACUATE(m, unit)                                               \
    do {                                                                      \
        MG__USDT3(map__evacuate, (const void *)(m), (const char *)(m)->label,  \
                  (uint64_t)(unit));                                          \
        if (MG__TRACE_ON())                                                   \
            mg__trace_evacuate((m), (uint64_t)(unit));                        \
    } while (0)

/* Not in the timeline (too many, too small): probe only. */
#define MG_EV_OVERFLOW(m, n)                                                  \
    MG__USDT3(map__overflow, (const void *)(m), (const char *)(m)->label, (uint64_t)(n))

#define MG_EV_SHRINK(m, oldB, newB)                                           \
    do {                                                                      \
        MG__USDT4(map__shrink, (const void *)(m), (const char *)(m)->label,    \
                  (unsigned)(oldB), (unsigned)(newB));                        \
        if (MG__TRACE_ON())                                                   \
            mg__trace_shrink((m), (unsigned)(oldB), (unsigned)(newB));        \
    } while (0)

#define MG_EV_PROMOTE(m, n)                                                   \
    do {                                                                      \
        MG__USDT3(syncmap__promote, (const void *)(m), (const char *)(m)->label, \
                  (uint64_t)(n));                                             \
        if (MG__TRACE_ON())                                                   \
            mg__trace_promote((m), (uint64_t)(n));                            \
    } while (0)

#define MG_EV_PUBLISH(m, v)                                                   \
    do {                                                                      \
        MG__USDT3(snapshot__publish, (const void *)(m), (const char *)(m)->label, \
                  (uint64_t)(v));                                             \
        if (MG__TRACE_ON())                                                   \
            mg__trace_publish((m), (uint64_t)(v));                            \
    } while (0)

#define MG_EV_FATAL(m, msg)                                                   \
    do {                                                                      \
        MG__USDT3(map__fatal, (const void *)(m), mg__probe_fatal_name(m),     \
                  (const char *)(msg));                                       \
        if (MG__TRACE_ON())                                                   \
            mg__trace_fatal((m), (msg));                                      \
    } while (0)

/* The per-operation probes.  map__assign tests its semaphore (one load
 * and a predicted branch; inserts cost ~120 ns, where that is noise).
 * map__access is a bare nop: its arguments are the map and key registers
 * and the header's label read in place, so the semaphore test was its
 * whole cost, 3 instructions on a ~70-instruction lookup, measured +3-5%
 * on 1M-key hits (24 alternating rounds); the bare nop measured within
 * noise of the build without probes (docs/tracing.md). */
#define MG_EV_ACCESS(m, key)                                                  \
    MG__USDT3_BARE(map__access, (const void *)(m), (const char *)(m)->label, (uint64_t)(key))
#define MG_EV_ASSIGN(m, key)                                                  \
    MG__USDT3(map__assign, (const void *)(m), (const char *)(m)->label, (uint64_t)(key))

#else /* MG_NO_OBSERVE: nothing is evaluated, every argument stays "used" */

#define MG_EV_GROW_START(m, oldB, newB, same)                                 \
    ((void)sizeof(m), (void)sizeof(oldB), (void)sizeof(newB), (void)sizeof(same))
#define MG_EV_GROW_DONE(m, B) ((void)sizeof(m), (void)sizeof(B))
#define MG_EV_EVACUATE(m, unit) ((void)sizeof(m), (void)sizeof(unit))
#define MG_EV_OVERFLOW(m, n) ((void)sizeof(m), (void)sizeof(n))
#define MG_EV_SHRINK(m, oldB, newB) ((void)sizeof(m), (void)sizeof(oldB), (void)sizeof(newB))
#define MG_EV_PROMOTE(m, n) ((void)sizeof(m), (void)sizeof(n))
#define MG_EV_PUBLISH(m, v) ((void)sizeof(m), (void)sizeof(v))
#define MG_EV_FATAL(m, msg) ((void)sizeof(m), (void)sizeof(msg))
#define MG_EV_ACCESS(m, key) ((void)sizeof(m), (void)sizeof(key))
#define MG_EV_ASSIGN(m, key) ((void)sizeof(m), (void)sizeof(key))

#endif /* MG_NO_OBSERVE */

/* Start a trace at MAPGUARD_TRACE=path, once per process (trace.c; called
 * from mg_new).  A no-op under MG_NO_OBSERVE. */
void mg__trace_env_init(void);

#endif /* MG_EVENTS_H */
