/*
 * probes.c - the semaphores of mapguard's USDT probes (see probes.h).
 *
 * One unsigned short per probe, named <provider>_<probe>_semaphore as
 * sdt.h expects, in section .probes where tracers look for them.  Zero
 * until a tracer attaches the probe; only tracers write them.  They stay
 * hidden (-fvisibility=hidden): the ELF notes carry their addresses.
 */
#include "obs/probes.h"

#if MG_USDT_ON
#define MG__SEM_DEF(name)                                                     \
    __attribute__((section(".probes"))) volatile unsigned short mapguard_##name##_semaphore;
MG_PROBE_LIST(MG__SEM_DEF)
#undef MG__SEM_DEF
#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int mg__probes_empty;
#endif

#ifndef MG_NO_OBSERVE
#include "internal.h"
#include "obs/events.h"

#include "obs/fatal.h"

#include <stdint.h>

/* A fatal report may concern a NULL, freed, corrupted or unmapped map: its
 * header is read without faulting (mg__safe_read, as the fatal report
 * does), and its name only behind a magic that a live header carries. */
const char *mg__probe_fatal_name(const mg_map *m)
{
    uint64_t magic;
    const char *label;
    if (!m || !mg__safe_read((uintptr_t)&m->magic, &magic, sizeof magic))
        return NULL;
    if (magic != MG_MAGIC_U64 && magic != MG_MAGIC_BYTES && magic != MG_MAGIC_MODE)
        return NULL;
    if (!mg__safe_read((uintptr_t)&m->label, &label, sizeof label))
        return NULL;
    return label;
}
#endif
