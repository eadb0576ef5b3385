/*
 * events.h - the event points of the engine and the modes: one macro per
 * event, each a USDT probe (provider "mapguard", <sys/sdt.h>) plus, for the
 * growth timeline, a call into trace.c when a trace is running.
 *
 * Compiled out entirely when MG_NO_OBSERVE is defined (the cost baseline).
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
 * m is the public map (an mg_map *, engine or mode header); its name is
 * m->name (NULL when unnamed).
 *
 * SKELETON: the bodies below are placeholders until tracing lands.
 */
#ifndef MG_EVENTS_H
#define MG_EVENTS_H

#define MG_EV_GROW_START(m, oldB, newB, same) ((void)(m))
#define MG_EV_GROW_DONE(m, B) ((void)(m))
#define MG_EV_EVACUATE(m, unit) ((void)(m))
#define MG_EV_OVERFLOW(m, n) ((void)(m))
#define MG_EV_SHRINK(m, oldB, newB) ((void)(m))
#define MG_EV_PROMOTE(m, n) ((void)(m))
#define MG_EV_PUBLISH(m, v) ((void)(m))
#define MG_EV_FATAL(m, msg) ((void)(m))
#define MG_EV_ACCESS(m, key) ((void)(m))
#define MG_EV_ASSIGN(m, key) ((void)(m))

#endif /* MG_EVENTS_H */
