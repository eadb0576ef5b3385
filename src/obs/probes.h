/*
 * probes.h - mapguard's USDT probes, written by hand over <sys/sdt.h>
 * (Debian systemtap-sdt-dev; a header only, nothing at run time).
 *
 * Provider "mapguard"; the probe names and their arguments are listed once,
 * in events.h.  Each probe is one `nop` at its site and a note in
 * .note.stapsdt (`readelf -n libmapguard.so`).  Every probe has a
 * semaphore: sdt.h's _SDT_HAS_SEMAPHORES is all or nothing for a
 * translation unit.  The semaphores live in section .probes (probes.c);
 * a tracer that attaches a probe (bpftrace through the kernel's uprobe
 * ref_ctr_offset, or systemtap) raises its semaphore, and MG__USDT tests
 * it first, so an untraced probe costs one 16-bit load and a predicted
 * branch, and its arguments (m->name) are never computed.
 *
 * Stability (the glibc rule): probes are not ABI, but a probe whose
 * arguments change gets a new name.
 *
 * Without <sys/sdt.h>, or under MG_NO_OBSERVE, MG_USDT_ON is 0 and every
 * MG__USDT* expands to nothing.
 */
#ifndef MG_PROBES_H
#define MG_PROBES_H

#if !defined(MG_NO_OBSERVE) && defined(__has_include)
#if __has_include(<sys/sdt.h>)
#define MG_USDT_ON 1
#endif
#endif
#ifndef MG_USDT_ON
#define MG_USDT_ON 0
#endif

/* XX(probe name): every probe of provider mapguard (the same list as the
 * table in events.h; tests/tracing checks both against the binary). */
#define MG_PROBE_LIST(XX)                                                     \
    XX(map__grow__start)                                                      \
    XX(map__grow__done)                                                       \
    XX(map__evacuate)                                                         \
    XX(map__overflow)                                                         \
    XX(map__shrink)                                                           \
    XX(syncmap__promote)                                                      \
    XX(snapshot__publish)                                                     \
    XX(map__fatal)                                                            \
    XX(map__access)                                                           \
    XX(map__assign)

#if MG_USDT_ON
#define _SDT_HAS_SEMAPHORES 1 /* sdt.h's spelling: every probe gets one */
#include <sys/sdt.h>

/* The semaphores (probes.c): volatile, since the kernel writes them;
 * hidden in the declaration too, so a probe site loads its semaphore
 * directly (%rip-relative), not through the GOT. */
#define MG__SEM_DECL(name)                                                    \
    extern volatile unsigned short mapguard_##name##_semaphore                \
        __attribute__((visibility("hidden")));
MG_PROBE_LIST(MG__SEM_DECL)
#undef MG__SEM_DECL

/* sdt.h calls a variadic macro of its own with no variadic argument, which
 * clang's -Wpedantic reports at every probe site: quiet that one warning,
 * for the probe statement only. */
#ifdef __clang__
#define MG__SDT_QUIET_BEGIN                                                   \
    _Pragma("clang diagnostic push")                                          \
    _Pragma("clang diagnostic ignored \"-Wgnu-zero-variadic-macro-arguments\"")
#define MG__SDT_QUIET_END _Pragma("clang diagnostic pop")
#else
#define MG__SDT_QUIET_BEGIN
#define MG__SDT_QUIET_END
#endif

/* True while some tracer has probe `name` attached. */
#define MG_USDT_ENABLED(name) __builtin_expect(mapguard_##name##_semaphore != 0, 0)

#define MG__USDT3(name, a, b, c)                                              \
    do {                                                                      \
        MG__SDT_QUIET_BEGIN                                                   \
        if (MG_USDT_ENABLED(name))                                            \
            STAP_PROBE3(mapguard, name, a, b, c);                             \
        MG__SDT_QUIET_END                                                     \
    } while (0)
/* The probe with no semaphore test in front: for a site whose arguments
 * are already in registers or are fields the tracer reads in place (the
 * note says e.g. 8@200(%rdi)), so the test would be its only cost.  Its
 * semaphore is still defined and in the note: tracers raise it as usual. */
#define MG__USDT3_BARE(name, a, b, c)                                         \
    do {                                                                      \
        MG__SDT_QUIET_BEGIN                                                   \
        STAP_PROBE3(mapguard, name, a, b, c);                                 \
        MG__SDT_QUIET_END                                                     \
    } while (0)
#define MG__USDT4(name, a, b, c, d)                                           \
    do {                                                                      \
        MG__SDT_QUIET_BEGIN                                                   \
        if (MG_USDT_ENABLED(name))                                            \
            STAP_PROBE4(mapguard, name, a, b, c, d);                          \
        MG__SDT_QUIET_END                                                     \
    } while (0)
#define MG__USDT5(name, a, b, c, d, e)                                        \
    do {                                                                      \
        MG__SDT_QUIET_BEGIN                                                   \
        if (MG_USDT_ENABLED(name))                                            \
            STAP_PROBE5(mapguard, name, a, b, c, d, e);                       \
        MG__SDT_QUIET_END                                                     \
    } while (0)
#else
/* Nothing is evaluated; the arguments stay "used" for the warnings. */
#define MG_USDT_ENABLED(name) 0
#define MG__USDT3(name, a, b, c) ((void)sizeof(a), (void)sizeof(b), (void)sizeof(c))
#define MG__USDT3_BARE(name, a, b, c) MG__USDT3(name, a, b, c)
#define MG__USDT4(name, a, b, c, d) (MG__USDT3(name, a, b, c), (void)sizeof(d))
#define MG__USDT5(name, a, b, c, d, e) (MG__USDT4(name, a, b, c, d), (void)sizeof(e))
#endif

#endif /* MG_PROBES_H */
