/*
 * registry.c - the maps the metrics see, and how each one is sampled.
 * (See obs.h.)
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

void mg__registry_add(mg_map *m)
{
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
