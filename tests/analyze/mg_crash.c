/*
 * mg_crash.c - crash with a mapguard fatal report, for `mapguard analyze`
 * to read: mg_crash writes|nil|freed|wrongkey.
 *
 *   writes    two threads put into one MG_UNSYNC map ("sessions") until
 *             the guard catches them (racy, as in a real program)
 *   nil       a put into a NULL map
 *   freed     a get on a map after mg_free
 *   wrongkey  a byte-key call on a u64-key map
 */
#include "mapguard.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static mg_map *shared;

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 31);
}

static void *session_writer(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg;
    for (uint64_t i = 0;; i++)
        mg_put_u64(shared, mix(base + i % 100000), i);
    return NULL;
}

static int race_writes(void)
{
    mg_options o = {.name = "sessions"};
    shared = mg_new(&o);
    if (!shared)
        return 3;
    pthread_t a, b;
    if (pthread_create(&a, NULL, session_writer, (void *)(uintptr_t)0) ||
        pthread_create(&b, NULL, session_writer, (void *)(uintptr_t)(1u << 30)))
        return 3;
    pthread_join(a, NULL); /* never returns: the guard aborts */
    pthread_join(b, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (strcmp(c, "writes") == 0)
        return race_writes();
    if (strcmp(c, "nil") == 0) {
        mg_put_u64(NULL, 1, 1);
        return 0;
    }
    if (strcmp(c, "freed") == 0) {
        mg_options o = {.name = "users"};
        mg_map *m = mg_new(&o);
        uint64_t v;
        mg_free(m);
        return mg_get_u64(m, 1, &v) ? 4 : 0;
    }
    if (strcmp(c, "wrongkey") == 0) {
        mg_options o = {.name = "ids"};
        mg_map *m = mg_new(&o);
        return mg_put(m, "k", 1, 1) == MG_OK ? 4 : 0;
    }
    fprintf(stderr, "usage: mg_crash writes|nil|freed|wrongkey\n");
    return 2;
}
