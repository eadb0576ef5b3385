/*
 * workload.h - the standard benchmark workload's generators, shared by the
 * C and C++ benchmark programs (docs: /work/shared/workload.md, the
 * authoritative text; bench/go/bench_go.go repeats these few lines in Go).
 *
 *   key(i)          output number i (0-based) of splitmix64 seeded 42
 *   present keys    key(0 .. N-1), value i + 1
 *   absent keys     key(N .. 2N-1)
 *   shuffled order  Fisher-Yates over 0..N-1, i from N-1 down to 1,
 *                   j = next() % (i + 1), next() a sequential splitmix64
 *                   seeded 43
 *   string keys     snprintf("key-%012llu", key(i) % 10^12): 16 bytes, no
 *                   terminating NUL stored
 *
 * The concurrent phases (section "Concurrent phases"):
 *   mixes           r100, r90w10, r50w50, churn90, numbered 0..3 in that
 *                   order (the number enters the seed)
 *   thread t's draws a sequential splitmix64 seeded 1000 + 100*mix + t
 *   the key         key(((r & 0xffffffff) * N) >> 32), a present key
 *   the op          a read if (r >> 32) % 100 < read_percent; otherwise a put
 *                   of that key with value r, or, in churn90, the thread's
 *                   next insert or delete of a fresh key
 *                   key(2N + (t << 32) + w/2), w counting its writes
 *
 * Also: a monotonic nanosecond clock (CLOCK_MONOTONIC, the clock the
 * workload names), the process's resident set from /proc/self/statm, its peak
 * (VmHWM in /proc/self/status) and a way to reset that peak.
 *
 * Everything is static inline and valid C11 and C++17.  The including
 * translation unit must ask for POSIX (_GNU_SOURCE or _POSIX_C_SOURCE) before
 * its first system header, for clock_gettime.
 */
#ifndef MG_BENCH_WORKLOAD_H
#define MG_BENCH_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The golden-ratio increment of splitmix64. */
#define WL_GOLDEN UINT64_C(0x9E3779B97F4A7C15)
/* Seeds fixed by the workload. */
#define WL_KEY_SEED UINT64_C(42)
#define WL_SHUFFLE_SEED UINT64_C(43)
/* The string keys: "key-" and twelve digits. */
#define WL_STR_LEN 16
#define WL_STR_MOD UINT64_C(1000000000000)

/* The splitmix64 output mixer. */
static inline uint64_t wl_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Output number i (0-based) of splitmix64 from seed. */
static inline uint64_t wl_splitmix_at(uint64_t seed, uint64_t i)
{
    return wl_mix(seed + (i + 1) * WL_GOLDEN);
}

/* key(i): present keys are key(0..N-1), absent ones key(N..2N-1).  All
 * distinct: the counter is a bijection (odd increment) and so is the mixer. */
static inline uint64_t wl_key(uint64_t i)
{
    return wl_splitmix_at(WL_KEY_SEED, i);
}

/* A sequential splitmix64 generator. */
typedef struct {
    uint64_t state;
} wl_rng;

static inline void wl_rng_seed(wl_rng *r, uint64_t seed) { r->state = seed; }

static inline uint64_t wl_rng_next(wl_rng *r)
{
    r->state += WL_GOLDEN;
    return wl_mix(r->state);
}

/* Fill order[0..n-1] with the workload's shuffled order of the indices
 * 0..n-1 (Fisher-Yates, seed 43).  n must fit in uint32_t. */
static inline void wl_shuffled_order(uint32_t *order, size_t n)
{
    wl_rng r;
    size_t i;
    for (i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    wl_rng_seed(&r, WL_SHUFFLE_SEED);
    for (i = n; i-- > 1;) {
        size_t j = (size_t)(wl_rng_next(&r) % (uint64_t)(i + 1));
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* The concurrent mixes, in the workload's order: the enumerator is the
 * "mix" number of the per-thread seed. */
typedef enum { WL_MIX_R100, WL_MIX_R90W10, WL_MIX_R50W50, WL_MIX_CHURN90 } wl_mix_id;
#define WL_NMIX 4

/* Seeds of the concurrent phases: thread t of mix number m draws from a
 * sequential splitmix64 seeded WL_CONC_SEED + WL_CONC_SEED_MIX * m + t. */
#define WL_CONC_SEED UINT64_C(1000)
#define WL_CONC_SEED_MIX UINT64_C(100)

static inline uint64_t wl_conc_seed(unsigned mix, unsigned t)
{
    return WL_CONC_SEED + WL_CONC_SEED_MIX * mix + t;
}

/* The index (0..n-1) of the present key a draw r works on: the low 32 bits
 * scaled to n (multiply-shift, no modulo bias).  n must fit in 32 bits. */
static inline uint64_t wl_conc_index(uint64_t r, uint64_t n)
{
    return ((r & UINT64_C(0xffffffff)) * n) >> 32;
}

/* Whether draw r is a read under read_percent (0..100). */
static inline int wl_conc_is_read(uint64_t r, unsigned read_percent)
{
    return (r >> 32) % 100u < read_percent;
}

/* The fresh key of churn write number w (0-based) of thread t: even writes
 * insert it, odd writes delete the key the previous write inserted. */
static inline uint64_t wl_churn_key(uint64_t n, unsigned t, uint64_t w)
{
    return wl_key(2 * n + ((uint64_t)t << 32) + w / 2);
}

/* Write the string key of index i into out[0..WL_STR_LEN-1] (no NUL). */
static inline void wl_str_key(char *out, uint64_t i)
{
    char buf[WL_STR_LEN + 1];
    snprintf(buf, sizeof buf, "key-%012llu",
             (unsigned long long)(wl_key(i) % WL_STR_MOD));
    memcpy(out, buf, WL_STR_LEN);
}

/* Nanoseconds from CLOCK_MONOTONIC. */
static inline uint64_t wl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* The resident set size in bytes (/proc/self/statm, second field); 0 if it
 * cannot be read. */
static inline uint64_t wl_rss_bytes(void)
{
    unsigned long long size = 0, resident = 0;
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (uint64_t)resident * (uint64_t)(page > 0 ? page : 4096);
}

/* The peak resident set size in bytes (VmHWM in /proc/self/status); 0 if it
 * cannot be read. */
static inline uint64_t wl_peak_rss_bytes(void)
{
    char line[256];
    unsigned long long kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            if (sscanf(line + 6, "%llu", &kb) != 1)
                kb = 0;
            break;
        }
    }
    fclose(f);
    return (uint64_t)kb * 1024u;
}

/* Reset the peak (VmHWM) to the current RSS, so that a later peak belongs
 * to what ran in between ("5" to /proc/self/clear_refs, Linux 4.0+).
 * Returns 0 on success, -1 if the kernel refused (the peak then covers the
 * whole process so far). */
static inline int wl_reset_peak_rss(void)
{
    int ok;
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f == NULL)
        return -1;
    ok = fputs("5", f) >= 0;
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

#ifdef __cplusplus
}
#endif
#endif /* MG_BENCH_WORKLOAD_H */
