/*
 * hash.c - randomness for seeds and iteration starts.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* A fresh 64-bit seed from the kernel (getrandom).  If the kernel cannot
 * answer (seccomp, very early boot) fall back to a mix of clock, address and
 * pid: weaker, but never the same twice in a row. */
uint64_t mg__random_seed(void)
{
    uint64_t s;
    ssize_t n;
    do {
        n = getrandom(&s, sizeof s, GRND_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof s)
        return s;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    static _Atomic uint64_t counter;
    s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&s ^
        ((uint64_t)getpid() << 16) ^ atomic_fetch_add(&counter, 0x9E3779B97F4A7C15ull);
    s ^= s >> 31;
    s *= 0xBF58476D1CE4E5B9ull;
    s ^= s >> 29;
    return s;
}

/* Go: fastrand.  A per-thread wyrand stream seeded once from getrandom. */
uint64_t mg__fastrand(void)
{
    static _Thread_local uint64_t state;
    static _Thread_local bool seeded;
    if (!seeded) {
        state = mg__random_seed();
        seeded = true;
    }
    state += 0xa0761d6478bd642full;
    __uint128_t p = (__uint128_t)state * (state ^ 0xe7037ed1a0b428dbull);
    return (uint64_t)(p >> 64) ^ (uint64_t)p;
}
