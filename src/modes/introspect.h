/*
 * introspect.h - internal views into the concurrent modes, for tests only.
 */
#ifndef MG_MODES_INTROSPECT_H
#define MG_MODES_INTROSPECT_H

#include "mapguard.h"

#include <stdbool.h>
#include <stddef.h>

/* MG_READMOSTLY's state in Go 1.19 sync.Map's terms. */
typedef struct {
    size_t read_len; /* len(read.m): includes deleted (nil) and expunged entries */
    bool amended;    /* read.amended */
    long dirty_len;  /* len(dirty), or -1 when dirty == nil */
    size_t misses;   /* m.misses */
} mg_rm_state;

/* Returns: 0 and *out for a MG_READMOSTLY map; -1 for any other map. */
int mg__rm_state(mg_map *m, mg_rm_state *out);

#endif
