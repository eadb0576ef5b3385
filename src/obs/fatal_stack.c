/*
 * fatal_stack.c - the stacks of a fatal report.
 *
 * Capture uses glibc's backtrace() (libgcc's DWARF unwinder: no frame
 * pointers needed, and it walks through signal frames).  Its first call
 * may load libgcc_s and allocate, so mg__stack_prewarm calls it once
 * outside any handler.
 *
 * Another thread's stack: the reporter sends it MG_STACK_SIGNAL with
 * tgkill; the handler, which runs on that thread with every signal
 * blocked, records its own stack and the interrupted pc into the
 * reporter's buffer, posts a semaphore and parks in pause() for good, so
 * the thread stops touching the map while the report is written.  The
 * handler only calls backtrace, gettid, getpid, sem_post and pause.
 *
 * Symbolisation runs afterwards in the reporting thread (never in a
 * handler) with elfutils' libdwfl: modules from /proc/self/maps, symbols
 * from .symtab or .dynsym (static functions included), file:line from
 * DWARF or separate debuginfo under /usr/lib/debug.  debuginfod is turned
 * off (DEBUGINFOD_URLS is removed) so a fatal never waits on the network.
 * guard.c bounds the whole step with a timer and falls back to the raw
 * module+offset frames rendered without libdw.
 */
#include "internal.h"
#include "obs/fatal.h"

#include <dlfcn.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

void mg__buf_printf(char *buf, size_t *len, size_t cap, const char *fmt, ...)
{
    if (*len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *len += (size_t)n < cap - *len ? (size_t)n : cap - *len - 1;
}

void mg__stack_prewarm(void)
{
    void *f[4];
    (void)backtrace(f, 4);
}

static long gettid_(void)
{
    return (long)syscall(SYS_gettid);
}

MG_FATAL_TEXT void mg__stack_self(mg_stack *st)
{
    void *f[MG_STACK_MAX];
    int n = backtrace(f, MG_STACK_MAX);
    st->tid = gettid_();
    st->exact = -1;
    st->from_signal = false;
    st->n = n > 0 ? n : 0;
    for (int i = 0; i < st->n; i++)
        st->pc[i] = (uintptr_t)f[i];
}

/* ---- another thread ------------------------------------------------------ */

static _Atomic(mg_stack *) target;
static atomic_long target_tid;
static sem_t answered;

int mg__stack_signal(void)
{
    return SIGRTMIN + 3;
}

MG_FATAL_TEXT static void park_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    long self = gettid_();
    if (si->si_code != SI_TKILL || si->si_pid != getpid() ||
        self != atomic_load(&target_tid))
        return; /* not the reporter's request */
    mg_stack *st = atomic_exchange(&target, NULL);
    if (!st)
        return;
    void *f[MG_STACK_MAX];
    int n = backtrace(f, MG_STACK_MAX);
    uintptr_t pc = mg__uc_pc(uc);
    st->tid = self;
    st->exact = -1;
    st->n = n > 0 ? n : 0;
    for (int i = 0; i < st->n; i++) {
        st->pc[i] = (uintptr_t)f[i];
        if (st->exact < 0 && pc && st->pc[i] == pc)
            st->exact = i;
    }
    st->from_signal = true;
    sem_post(&answered);
    for (;;) /* parked: the process ends with the reporter's abort() */
        pause();
}

MG_FATAL_TEXT int mg__stack_other(long tid, mg_stack *st, int timeout_ms)
{
    int sig = mg__stack_signal();
    st->n = 0;
    st->exact = -1;
    st->from_signal = false;
    st->tid = tid;
    if (sem_init(&answered, 0, 0) != 0)
        return errno;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = park_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0)
        return errno;
    atomic_store(&target_tid, tid);
    atomic_store(&target, st);
    if (syscall(SYS_tgkill, (long)getpid(), tid, sig) != 0) {
        int e = errno;
        atomic_store(&target, NULL);
        return e;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (sem_timedwait(&answered, &ts) != 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        /* The handler may still run later; it then finds no target. */
        if (atomic_exchange(&target, NULL) == NULL) {
            /* It took the buffer just now: give it a moment to finish. */
            struct timespec more = {0, 100 * 1000000L};
            nanosleep(&more, NULL);
            return sem_trywait(&answered) == 0 ? 0 : e;
        }
        return e;
    }
    return 0;
}

uintptr_t mg__uc_pc(const void *ucv)
{
    const ucontext_t *uc = ucv;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    (void)uc;
    return 0;
#endif
}

/* ---- trimming -------------------------------------------------------------- */

/* The address to look a frame up by: a return address points after its
 * call, which may be the next function's first byte. */
static uintptr_t lookup_pc(const mg_stack *st, int i)
{
    return i == st->exact ? st->pc[i] : st->pc[i] - 1;
}

void mg__stack_trim(mg_stack *st)
{
    int last = -1;
    for (int i = 0; i < st->n; i++)
        if (mg__in_fatal_text(lookup_pc(st, i)))
            last = i;
    int start = last + 1;
    if (st->exact > last)
        start = st->exact; /* past the handler and the signal trampoline */
    else if (st->from_signal && st->exact < 0 && last >= 0)
        start = last + 2; /* the trampoline (__restore_rt) follows the handler */
    if (start > st->n)
        start = st->n;
    if (start <= 0)
        return;
    for (int i = start; i < st->n; i++)
        st->pc[i - start] = st->pc[i];
    st->n -= start;
    st->exact = st->exact >= start ? st->exact - start : -1;
}

/* ---- rendering ------------------------------------------------------------- */

static const char *base_name(const char *path)
{
    if (!path || !*path)
        return "??";
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Module and load bias of pc, from the dynamic loader. */
static bool module_of(uintptr_t pc, const char **name, uintptr_t *bias)
{
    Dl_info info;
    struct link_map *lm = NULL;
    if (!dladdr1((void *)pc, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm)
        return false;
    *name = base_name(info.dli_fname);
    *bias = (uintptr_t)lm->l_addr;
    return true;
}

void mg__stack_render_raw(const mg_stack *st, char *buf, size_t *len, size_t cap)
{
    for (int i = 0; i < st->n; i++) {
        const char *mod;
        uintptr_t bias;
        if (module_of(lookup_pc(st, i), &mod, &bias))
            mg__buf_printf(buf, len, cap, "\t%s+0x%lx\n", mod,
                           (unsigned long)(st->pc[i] - bias));
        else
            mg__buf_printf(buf, len, cap, "\t?? 0x%lx\n", (unsigned long)st->pc[i]);
    }
}

static Dwfl *dwfl;
static char *debuginfo_path;
static const Dwfl_Callbacks dwfl_cbs = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .debuginfo_path = &debuginfo_path,
};

bool mg__sym_begin(void)
{
    /* No network at fatal time: libdwfl asks debuginfod only when this is
     * set.  The process is about to end, so changing its environment is
     * harmless. */
    if (getenv("DEBUGINFOD_URLS"))
        unsetenv("DEBUGINFOD_URLS");
    dwfl = dwfl_begin(&dwfl_cbs);
    if (!dwfl)
        return false;
    dwfl_report_begin(dwfl);
    int rc = dwfl_linux_proc_report(dwfl, getpid());
    if (dwfl_report_end(dwfl, NULL, NULL) != 0 || rc != 0) {
        dwfl_end(dwfl);
        dwfl = NULL;
        return false;
    }
    return true;
}

void mg__sym_end(void)
{
    if (dwfl)
        dwfl_end(dwfl);
    dwfl = NULL;
}

/* file:line without .debug_aranges, which clang does not emit and which
 * libdw 0.188's address lookup needs: walk the CUs for the one whose
 * ranges hold the address. */
static const char *src_by_cu(Dwfl_Module *mod, Dwarf_Addr at, int *line)
{
    Dwarf_Addr bias;
    Dwarf *dw = dwfl_module_getdwarf(mod, &bias);
    if (!dw)
        return NULL;
    Dwarf_Off off = 0, next;
    size_t hsize;
    while (dwarf_nextcu(dw, off, &next, &hsize, NULL, NULL, NULL) == 0) {
        Dwarf_Die cu;
        if (dwarf_offdie(dw, off + hsize, &cu) && dwarf_haspc(&cu, at - bias) == 1) {
            Dwarf_Line *ln = dwarf_getsrc_die(&cu, at - bias);
            if (ln && dwarf_lineno(ln, line) == 0)
                return dwarf_linesrc(ln, NULL, NULL);
            return NULL;
        }
        off = next;
    }
    return NULL;
}

void mg__stack_render(const mg_stack *st, char *buf, size_t *len, size_t cap)
{
    for (int i = 0; i < st->n; i++) {
        uintptr_t pc = st->pc[i], at = lookup_pc(st, i);
        Dwfl_Module *mod = dwfl ? dwfl_addrmodule(dwfl, at) : NULL;
        const char *fn = NULL, *file = NULL, *modname = NULL;
        GElf_Off off = 0;
        GElf_Sym sym;
        Dwarf_Addr bias = 0;
        int line = 0;
        if (mod) {
            fn = dwfl_module_addrinfo(mod, at, &off, &sym, NULL, NULL, NULL);
            modname = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
            if (!dwfl_module_getelf(mod, &bias))
                bias = 0;
            Dwfl_Line *ln = dwfl_module_getsrc(mod, at);
            if (ln)
                file = dwfl_lineinfo(ln, NULL, &line, NULL, NULL, NULL);
            if (!file)
                file = src_by_cu(mod, at, &line);
        } else {
            uintptr_t b;
            if (module_of(at, &modname, &b))
                bias = b;
        }
        /* "name@@VERSION" (a versioned libc symbol) prints as "name". */
        int fnlen = fn ? (int)strcspn(fn, "@") : 2;
        mg__buf_printf(buf, len, cap, "%.*s(...)\n\t", fnlen, fn ? fn : "??");
        if (file)
            mg__buf_printf(buf, len, cap, "%s:%d ", file, line);
        else
            mg__buf_printf(buf, len, cap, "?? ");
        if (fn)
            mg__buf_printf(buf, len, cap, "+0x%lx ", (unsigned long)(off + (pc - at)));
        mg__buf_printf(buf, len, cap, "(%s+0x%lx)\n", base_name(modname),
                       (unsigned long)(pc - bias));
    }
}
