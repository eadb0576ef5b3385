/*
 * memlat.c - what one random memory read costs on this machine, the number
 * that bounds every lookup benchmark here: a pointer chase (each read
 * depends on the one before) and independent reads, over arrays of several
 * sizes.  Usage: memlat [MB ...]   (default 2 4 8 16 32 64 256)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static int run(size_t mb)
{
    size_t n = (mb << 20) / sizeof(uint64_t);
    uint64_t *a = mmap(NULL, n * sizeof *a, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    /* A random cyclic permutation (Sattolo), so the chase visits every slot. */
    for (size_t i = 0; i < n; i++)
        a[i] = i;
    uint64_t x = 88172645463325252ull;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = xorshift(&x) % i;
        uint64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    const size_t reads = 2000000;
    uint64_t p = 0, sum = 0;
    double t0 = now_ns();
    for (size_t i = 0; i < reads; i++)
        p = a[p];
    double t1 = now_ns();
    for (size_t i = 0; i < reads; i++)
        sum += a[xorshift(&x) % n];
    double t2 = now_ns();
    printf("%4zu MB: dependent read %6.1f ns, independent read %5.1f ns  (%llu)\n", mb,
           (t1 - t0) / (double)reads, (t2 - t1) / (double)reads,
           (unsigned long long)((p + sum) & 1));
    munmap(a, n * sizeof *a);
    return 0;
}

int main(int argc, char **argv)
{
    static const size_t def[] = {2, 4, 8, 16, 32, 64, 256};
    int rc = 0;
    if (argc > 1)
        for (int i = 1; i < argc; i++)
            rc |= run((size_t)strtoul(argv[i], NULL, 10));
    else
        for (size_t i = 0; i < sizeof def / sizeof def[0]; i++)
            rc |= run(def[i]);
    return rc;
}
