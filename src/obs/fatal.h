/*
 * fatal.h - internal interface of the fatal report (docs/fatal-report.md).
 *
 *   guard.c              the report itself: once per process, text, JSON,
 *                        hook, abort; the SIGSEGV/SIGBUS catch of faulting
 *                        map reads.
 *   fatal_stack.c        stacks: capture (this thread, and another one by
 *                        signal), raw module+offset frames, libdw
 *                        symbolisation.
 *   fatal_traceparent.c  mg_set_traceparent: the thread's W3C trace context.
 */
#ifndef MG_FATAL_H
#define MG_FATAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The reporter's own code (guard.c's report path, the signal handlers and
 * the capture functions) lives in this text section, so a captured stack
 * can drop the reporter's frames by address, however the compiler inlined
 * them. */
#define MG_FATAL_TEXT __attribute__((section("mapguard_fatal"), noinline))
extern const char __start_mapguard_fatal[] __attribute__((visibility("hidden")));
extern const char __stop_mapguard_fatal[] __attribute__((visibility("hidden")));

static inline bool mg__in_fatal_text(uintptr_t pc)
{
    return pc >= (uintptr_t)__start_mapguard_fatal && pc < (uintptr_t)__stop_mapguard_fatal;
}

/* ---- stacks (fatal_stack.c) --------------------------------------------- */
#define MG_STACK_MAX 64

/* A captured stack: return addresses as backtrace() gives them, except the
 * frame at index `exact` (-1: none), whose pc is the exact instruction (the
 * interrupted or faulting one), not a return address. */
typedef struct {
    long tid;
    int n;
    int exact;
    bool from_signal; /* captured in a signal handler (another thread) */
    uintptr_t pc[MG_STACK_MAX];
} mg_stack;

/* Call backtrace() once so that its first call (which may load libgcc_s
 * and allocate) never happens in a signal handler. */
void mg__stack_prewarm(void);

/* Capture the calling thread's stack. */
void mg__stack_self(mg_stack *st);

/* Capture thread tid's stack: signal it (tgkill, MG_STACK_SIGNAL), let its
 * handler record its stack and park it for good, wait up to timeout_ms.
 * Returns 0, or an errno value (ESRCH: no such thread; ETIMEDOUT: no
 * answer).  Call once per process (the parked thread never resumes). */
int mg__stack_other(long tid, mg_stack *st, int timeout_ms);
/* The signal used: SIGRTMIN + 3. */
int mg__stack_signal(void);
/* The interrupted pc in a signal handler's ucontext (0: unknown arch). */
uintptr_t mg__uc_pc(const void *uc);

/* Drop the frames a reader of the report does not want: the reporter's
 * own (the mapguard_fatal section), the signal handler and trampoline. */
void mg__stack_trim(mg_stack *st);

/* Append one frame per line as "\tmodule+0xoff\n" to buf (length *len,
 * capacity cap), without libdw: for when symbolisation fails. */
void mg__stack_render_raw(const mg_stack *st, char *buf, size_t *len, size_t cap);

/* Symbolisation (libdw).  begin: report the process's modules (returns
 * false when libdw cannot); render: Go's two lines per frame,
 *     func(...)
 *     \tfile:line +0xoff (module+0xoff)
 * end: free libdw's state. */
bool mg__sym_begin(void);
void mg__stack_render(const mg_stack *st, char *buf, size_t *len, size_t cap);
void mg__sym_end(void);

/* printf into buf at *len, never past cap - 1; keeps buf NUL-terminated. */
void mg__buf_printf(char *buf, size_t *len, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- reading memory that may be gone (guard.c) --------------------------- */
/* Copy n bytes from src into dst, or return false when they are not all
 * readable, without faulting (process_vm_readv on ourselves; where that is
 * refused, a pipe made for the call and closed before returning; n up to
 * 4096 there).  Async-signal-safe; errno is kept. */
bool mg__safe_read(uintptr_t src, void *dst, size_t n);

/* ---- trace context (fatal_traceparent.c) ---------------------------------- */
#define MG_TRACEPARENT_LEN 55
/* The calling thread's traceparent (55 characters), or NULL when none. */
const char *mg__traceparent(void);
/* Is s a valid traceparent per W3C Trace Context (level 1/2)? */
bool mg__traceparent_valid(const char *s);

#endif /* MG_FATAL_H */
