/*
 * obs.h - internal interface of the observability layer (docs/observability.md).
 *
 *   registry.c   named maps register in mg_new and leave in mg_free;
 *                mg__registry_foreach samples each one (mg__sample).
 *   metrics.c    mg_metrics_render: Prometheus text 0.0.4 from the samples.
 *   http.c       mg_metrics_serve (optional libmapguard-http, libmicrohttpd).
 *   events.h     the event points (USDT probes + growth timeline).
 *   trace.c      the growth timeline (Chrome Trace Event JSON).
 *   guard.c      fatal reports; counts fatal errors by kind.
 *
 * Sampling never takes a map's locks on its hot path and never writes a line
 * the map's users read: an engine map's writer publishes what a sample needs
 * with relaxed atomic stores (MG_PUB_*), so a sample of a map in use is a
 * set of values each of which was true at some moment, not one consistent
 * picture.
 */
#ifndef MG_OBS_H
#define MG_OBS_H

#include "mapguard.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One map, as the metrics see it. */
typedef struct mg_metric_sample {
    const char *name;    /* registered maps always have one */
    const char *mode;    /* mg_mode_name() */
    const char *keykind; /* "u64" or "bytes" */
    mg_stats st;         /* count, buckets, B, load_factor, overflow_buckets,
                            growing, evacuated, old_buckets, grows_total,
                            same_size_grows_total, shrinks_total, bytes */
    /* MG_READMOSTLY */
    bool has_readmostly;
    uint64_t misses_total, promotions_total;
    /* MG_SNAPSHOT */
    bool has_snapshot;
    uint64_t snapshots_published_total, snapshots_retired_total;
    /* MG_ACTOR */
    bool has_actor;
    size_t queue_depth, queue_capacity;
    /* MG_SHARDED: entries per shard */
    bool has_shards;
    size_t shards, shard_entries_min, shard_entries_max;
} mg_metric_sample;

/* Fill *s from m (any mode) without taking m's locks (registry.c). */
void mg__sample(const mg_map *m, mg_metric_sample *s);

/* Registry (registry.c). */
void mg__registry_add(mg_map *m);
void mg__registry_remove(mg_map *m);
/* Calls fn for each registered map, in registration order, holding the
 * registry lock (so no registered map is freed meanwhile).  fn must not
 * create or free maps.  Returns the number of maps visited. */
size_t mg__registry_foreach(void (*fn)(const mg_metric_sample *s, void *arg), void *arg);

/* fork: the registry's and the timeline's locks are taken around fork()
 * so a child never inherits one held by a thread it does not have; the
 * child's timeline is off, its file left to the parent (registry.c installs
 * the handlers once, from the first registration or trace). */
void mg__obs_atfork_init(void);
void mg__trace_prefork(void);
void mg__trace_postfork_parent(void);
void mg__trace_postfork_child(void);

/* Fatal errors reported by this process, by kind (guard.c). */
void mg__fatal_count_inc(mg_fatal_kind kind);
uint64_t mg__fatal_count(mg_fatal_kind kind);

#endif /* MG_OBS_H */
