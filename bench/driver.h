/*
 * driver.h - what the two benchmark drivers (compare.c, knee.c) share:
 * a fatal error with the program's name, a monotonic clock, "200k"/"10M"
 * counts, the comparison qsort needs for medians, and running a program
 * behind a pipe (the measured programs, gnuplot).
 *
 * The including file defines DRV_PROG (its program name) first, and asks
 * for POSIX (_GNU_SOURCE) before its first system header.
 */
#ifndef MG_BENCH_DRIVER_H
#define MG_BENCH_DRIVER_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Print "PROG: message" and exit with status 2 (a bad command line or a
 * broken environment). */
static void drv_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void drv_die(const char *fmt, ...)
{
    va_list ap;
    fputs(DRV_PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static inline double drv_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parse the first len bytes of s as "1000000", "200k" or "10M": a positive
 * count that fits in half a uint32_t.  Returns 0 on success. */
static inline int drv_parse_count(const char *s, size_t len, size_t *out)
{
    char buf[32], *end;
    unsigned long long v, mul = 1;
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (buf[len - 1] == 'k' || buf[len - 1] == 'K')
        mul = 1000;
    else if (buf[len - 1] == 'm' || buf[len - 1] == 'M')
        mul = 1000000;
    if (mul != 1)
        buf[len - 1] = '\0';
    errno = 0;
    v = strtoull(buf, &end, 10);
    if (errno != 0 || *end != '\0' || end == buf || v == 0 ||
        v > (unsigned long long)UINT32_MAX / 2 / mul)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

/* For qsort over doubles. */
static inline int drv_cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Run path with argv behind a pipe: to_child, the returned stream writes
 * the program's stdin; otherwise it reads its stdout.  *pid gets its pid,
 * for drv_wait. */
static inline FILE *drv_spawn(const char *path, char *const argv[], int to_child, pid_t *pid)
{
    int fd[2];
    fflush(NULL);
    if (pipe(fd) != 0)
        drv_die("pipe: %s", strerror(errno));
    int mine = to_child ? fd[1] : fd[0], theirs = to_child ? fd[0] : fd[1];
    *pid = fork();
    if (*pid < 0)
        drv_die("fork: %s", strerror(errno));
    if (*pid == 0) {
        close(mine);
        if (dup2(theirs, to_child ? STDIN_FILENO : STDOUT_FILENO) < 0)
            _exit(127);
        close(theirs);
        execv(path, argv);
        fprintf(stderr, DRV_PROG ": cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(theirs);
    FILE *f = fdopen(mine, to_child ? "w" : "r");
    if (f == NULL)
        drv_die("fdopen: %s", strerror(errno));
    return f;
}

/* Wait for a program drv_spawn started; returns its wait status. */
static inline int drv_wait(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            drv_die("waitpid: %s", strerror(errno));
    }
    return status;
}

#endif
