/*
 * registry.c - the maps the metrics see, and how each one is sampled.
 * (See obs.h.)
 *
 * Fork: a child of a threaded parent inherits each mutex in the state it
 * had at the fork, so a lock another thread held then (reg_lock while the
 * /metrics thread scrapes, trace.c's lock while a map logs a growth) would
 * never be released in the child, and the child's first named mg_new or
 * map event would deadlock (prefork servers).  obs_atfork installs, once,
 * handlers that take both locks before the fork (reg_lock first, then the
 * trace lock: a fixed order, although no path nests them), release them
 * in the parent, and release them in the child, where the trace is also
 * turned off without closing its descriptor (trace.c).
 */
#include "internal.h"
#include "obs/obs.h"

#include <pthread.h>
#include <string.h>

void mg__sample(const mg_map *m, mg_metric_sample *s)
{
    memset(s, 0, sizeof *s);
    s->name = m->name ? m->name : "";
    s->mode = mg_mode_name(mg_mode_of(m));
    s->keykind = mg_key_kind(m) == MG_KEY_BYTES ? "bytes" : "u64";
    if (mg__is_mode(m))
        mg__mode_sample(m, s);
    else
        mg__eng_sample(m, &s->st);
}

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static mg_map **reg;
static size_t reg_n, reg_cap;

/* ---- fork ------------------------------------------------------------------ */

/* trace.c's side of the handlers (declared here: this file and trace.c are
 * their only users). */

static void prefork(void)
{
    pthread_mutex_lock(&reg_lock);
#ifndef MG_NO_OBSERVE
    mg__trace_prefork();
#endif
}

static void postfork_parent(void)
{
#ifndef MG_NO_OBSERVE
    mg__trace_postfork_parent();
#endif
    pthread_mutex_unlock(&reg_lock);
}

/* The child has one thread, the one that forked, which holds both locks. */
static void postfork_child(void)
{
#ifndef MG_NO_OBSERVE
    mg__trace_postfork_child();
#endif
    pthread_mutex_unlock(&reg_lock);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_register(void)
{
    /* Fails only with ENOMEM: forks then stay as unsafe as before. */
    (void)pthread_atfork(prefork, postfork_parent, postfork_child);
}

/* Install the fork handlers, once per process: from the first named map's
 * registration and from the first mg_trace_start, the only ways these
 * locks get users. */
void mg__obs_atfork_init(void)
{
    pthread_once(&atfork_once, atfork_register);
}

/* ---- the registry ------------------------------------------------------------ */

void mg__registry_add(mg_map *m)
{
    mg__obs_atfork_init();
    pthread_mutex_lock(&reg_lock);
    if (reg_n == reg_cap) {
        size_t cap = reg_cap ? 2 * reg_cap : 16;
        mg_map **r = realloc(reg, cap * sizeof *r);
        if (!r) { /* the map works; it just is not in the metrics */
            pthread_mutex_unlock(&reg_lock);
            return;
        }
        reg = r;
        reg_cap = cap;
    }
    reg[reg_n++] = m;
    pthread_mutex_unlock(&reg_lock);
}

void mg__registry_remove(mg_map *m)
{
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < reg_n; i++) {
        if (reg[i] == m) {
            memmove(reg + i, reg + i + 1, (reg_n - i - 1) * sizeof *reg);
            reg_n--;
            break;
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

size_t mg__registry_foreach(void (*fn)(const mg_metric_sample *s, void *arg), void *arg)
{
    pthread_mutex_lock(&reg_lock);
    size_t n = reg_n;
    for (size_t i = 0; i < n; i++) {
        mg_metric_sample s;
        mg__sample(reg[i], &s);
        fn(&s, arg);
    }
    pthread_mutex_unlock(&reg_lock);
    return n;
}

static _Atomic uint64_t fatal_counts[MG_FATAL_KIND_COUNT];

void mg__fatal_count_inc(mg_fatal_kind kind)
{
    if ((unsigned)kind < MG_FATAL_KIND_COUNT)
        atomic_fetch_add_explicit(&fatal_counts[kind], 1, memory_order_relaxed);
}

uint64_t mg__fatal_count(mg_fatal_kind kind)
{
    if ((unsigned)kind >= MG_FATAL_KIND_COUNT)
        return 0;
    return atomic_load_explicit(&fatal_counts[kind], memory_order_relaxed);
}
