/*
 * test.h - the tests' assertion macros: each failure prints the expression,
 * both values, the file and line, then exits non-zero (never just warns).
 */
#ifndef MG_TEST_H
#define MG_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_FAIL(...)                                                           \
    do {                                                                      \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                 \
        fprintf(stderr, __VA_ARGS__);                                         \
        fprintf(stderr, "\n");                                                \
        exit(1);                                                              \
    } while (0)

#define T_ASSERT(x)                                                           \
    do {                                                                      \
        if (!(x))                                                             \
            T_FAIL("%s", #x);                                                 \
    } while (0)

#define T_EQ_U(a, b)                                                          \
    do {                                                                      \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                      \
        if (a_ != b_)                                                         \
            T_FAIL("%s == %s: %" PRIu64 " != %" PRIu64, #a, #b, a_, b_);      \
    } while (0)

#define T_EQ_I(a, b)                                                          \
    do {                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                   \
        if (a_ != b_)                                                         \
            T_FAIL("%s == %s: %lld != %lld", #a, #b, a_, b_);                 \
    } while (0)

#define T_STREQ(a, b)                                                         \
    do {                                                                      \
        const char *a_ = (a), *b_ = (b);                                      \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                \
            T_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",  \
                   b_ ? b_ : "(null)");                                       \
    } while (0)

/* Validate a map with the engine's whole-table validator. */
#define T_VALID(m)                                                            \
    do {                                                                      \
        char verr_[512];                                                      \
        if (mg__validate((m), verr_, sizeof verr_) != 0) {                    \
            if (mg_len(m) < 2000)                                             \
                mg__dump((m), stderr);                                        \
            T_FAIL("invariant broken: %s", verr_);                            \
        }                                                                     \
    } while (0)

/* A table of named cases; main runs the one named in argv[1] (ctest runs
 * each as its own test) or all of them. */
typedef struct {
    const char *name;
    void (*fn)(void);
} t_case;

static inline int t_main(const t_case *cases, int argc, char **argv)
{
    int ran = 0;
    for (const t_case *c = cases; c->name; c++) {
        if (argc > 1 && strcmp(argv[1], c->name) != 0)
            continue;
        fprintf(stderr, "-- %s\n", c->name);
        c->fn();
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no such case: %s\n", argc > 1 ? argv[1] : "");
        return 2;
    }
    return 0;
}

#endif
