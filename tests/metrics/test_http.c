/*
 * test_http.c - libmapguard-http (mapguard_http.h): /metrics over real
 * sockets.  Every case serves on 127.0.0.1 port 0 (a free port the kernel
 * picks), so cases run in parallel without colliding.
 */
#include "mapguard.h"
#include "mapguard_http.h"
#include "../test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int status; /* 0: the connection closed with no response */
    char *head; /* status line and headers */
    char *body;
    size_t body_len;
} resp;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_to(int family, unsigned port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    T_ASSERT(fd >= 0);
    int rc;
    if (family == AF_INET6) {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
        a.sin6_addr = in6addr_loopback;
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    }
    if (rc != 0)
        T_FAIL("connect to port %u: %s", port, strerror(errno));
    return fd;
}

/* Read until EOF (or an error such as a reset), at most timeout_s. */
static char *read_all(int fd, size_t *len, double timeout_s)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    T_ASSERT(buf);
    double end = now_s() + timeout_s;
    for (;;) {
        double left = end - now_s();
        if (left <= 0)
            T_FAIL("no EOF within %.0f s", timeout_s);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        T_ASSERT(pr >= 0);
        if (pr == 0)
            continue;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            T_ASSERT(buf);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* EOF, or ECONNRESET from a refused connection */
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static resp request_on(int fd, const char *method, const char *path)
{
    char req[512];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Length: 0\r\n\r\n",
                     method, path);
    (void)!send(fd, req, (size_t)n, MSG_NOSIGNAL);
    size_t len;
    char *raw = read_all(fd, &len, 20);
    close(fd);
    resp r = {0};
    char *sep = strstr(raw, "\r\n\r\n");
    if (len == 0 || !sep) {
        free(raw);
        return r;
    }
    *sep = '\0';
    r.head = raw;
    r.body = sep + 4;
    r.body_len = len - (size_t)(r.body - raw);
    T_ASSERT(sscanf(raw, "HTTP/1.%*d %d", &r.status) == 1);
    return r;
}

static resp request(const char *method, const char *path)
{
    return request_on(connect_to(AF_INET, mg_metrics_port()), method, path);
}

/* The value of header `name` (case-insensitive), copied; NULL if absent. */
static char *header(const resp *r, const char *name)
{
    static char val[512];
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            h += nl + 1;
            while (*h == ' ')
                h++;
            const char *e = strstr(h, "\r\n");
            size_t vl = e ? (size_t)(e - h) : strlen(h);
            T_ASSERT(vl < sizeof val);
            memcpy(val, h, vl);
            val[vl] = '\0';
            return val;
        }
    }
    return NULL;
}

static void resp_free(resp *r)
{
    free(r->head);
}

static void serve_ok(void)
{
    T_EQ_I(mg_metrics_serve("127.0.0.1:0"), MG_OK);
    T_ASSERT(mg_metrics_port() != 0);
}

static mg_map *web_map(void)
{
    mg_options o = {.name = "web"};
    mg_map *m = mg_new(&o);
    T_ASSERT(m);
    for (uint64_t k = 0; k < 1000; k++)
        T_EQ_I(mg_put_u64(m, k, k), MG_OK);
    return m;
}

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static void c_get(void)
{
    mg_map *m = web_map();
    serve_ok();
    resp r = request("GET", "/metrics");
    T_EQ_I(r.status, 200);
    T_STREQ(header(&r, "Content-Type"), CONTENT_TYPE);
    T_EQ_U(strtoul(header(&r, "Content-Length"), NULL, 10), r.body_len);
    T_ASSERT(strstr(r.body, "\nmapguard_entries{map=\"web\",mode=\"unsync\"} 1000\n"));
    /* the body is the render, byte for byte (nothing changed meanwhile) */
    size_t n = mg_metrics_render(NULL, 0);
    char *want = malloc(n + 1);
    T_ASSERT(want);
    mg_metrics_render(want, n + 1);
    T_EQ_U(r.body_len, n);
    T_ASSERT(memcmp(r.body, want, n) == 0);
    free(want);
    resp_free(&r);
    /* a query string is not part of the path */
    r = request("GET", "/metrics?name[]=mapguard_entries");
    T_EQ_I(r.status, 200);
    resp_free(&r);
    mg_metrics_stop();
    T_EQ_U(mg_metrics_port(), 0);
    mg_free(m);
}

static void c_head(void)
{
    mg_map *m = web_map();
    serve_ok();
    resp r = request("HEAD", "/metrics");
    T_EQ_I(r.status, 200);
    T_STREQ(header(&r, "Content-Type"), CONTENT_TYPE);
    T_EQ_U(r.body_len, 0);
    T_ASSERT(strtoul(header(&r, "Content-Length"), NULL, 10) == mg_metrics_render(NULL, 0));
    resp_free(&r);
    mg_metrics_stop();
    mg_free(m);
}

static void c_not_found(void)
{
    serve_ok();
    const char *paths[] = {"/", "/metrics/", "/metricsx", "/METRICS", "/x/metrics"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        resp r = request("GET", paths[i]);
        if (r.status != 404)
            T_FAIL("GET %s: %d, want 404", paths[i], r.status);
        T_ASSERT(!strstr(r.body, "mapguard_"));
        resp_free(&r);
    }
    mg_metrics_stop();
}

static void c_method(void)
{
    serve_ok();
    const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        resp r = request(methods[i], "/metrics");
        if (r.status != 405)
            T_FAIL("%s /metrics: %d, want 405", methods[i], r.status);
        T_STREQ(header(&r, "Allow"), "GET, HEAD");
        resp_free(&r);
    }
    mg_metrics_stop();
}

static void c_busy(void)
{
    serve_ok();
    unsigned port = mg_metrics_port();
    T_EQ_I(mg_metrics_serve("127.0.0.1:0"), MG_EBUSY);
    T_EQ_I(mg_metrics_serve("[::1]:0"), MG_EBUSY);
    T_EQ_U(mg_metrics_port(), port); /* the first server is untouched */
    resp r = request("GET", "/metrics");
    T_EQ_I(r.status, 200);
    resp_free(&r);
    mg_metrics_stop();
    mg_metrics_stop(); /* a no-op */
    /* serving again after a stop works, on the same port too */
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    T_EQ_I(mg_metrics_serve(addr), MG_OK);
    T_EQ_U(mg_metrics_port(), port);
    r = request("GET", "/metrics");
    T_EQ_I(r.status, 200);
    resp_free(&r);
    mg_metrics_stop();
}

static void c_bad_addr(void)
{
    const char *bad[] = {"", "abc", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
                         "127.0.0.1:-1", "127.0.0.1:80x", "1.2.3:80", "::1:80", "[::1]",
                         "[::1]80", "[nope]:80", "host.example:80", "127.0.0.1 :80", ":",
                         "99999"};
    T_EQ_I(mg_metrics_serve(NULL), MG_EINVAL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = mg_metrics_serve(bad[i]);
        if (rc != MG_EINVAL) {
            mg_metrics_stop();
            T_FAIL("mg_metrics_serve(\"%s\") = %d, want MG_EINVAL", bad[i], rc);
        }
        T_EQ_U(mg_metrics_port(), 0);
    }
    /* the forms that mean loopback */
    const char *good[] = {"0", ":0", "localhost:0", "127.0.0.1:0"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        T_EQ_I(mg_metrics_serve(good[i]), MG_OK);
        resp r = request("GET", "/metrics");
        T_EQ_I(r.status, 200);
        resp_free(&r);
        mg_metrics_stop();
    }
}

static void c_in_use(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    T_EQ_I(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    T_EQ_I(listen(fd, 4), 0);
    socklen_t al = sizeof a;
    T_EQ_I(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(a.sin_port));
    errno = 0;
    T_EQ_I(mg_metrics_serve(addr), MG_EIO);
    T_EQ_I(errno, EADDRINUSE);
    T_EQ_U(mg_metrics_port(), 0);
    close(fd);
}

/* MG_METRICS_MAX_CONNECTIONS idle connections: one more waits unanswered
 * (in the listen backlog); when an idle one closes, it is answered. */
static void c_conn_limit(void)
{
    serve_ok();
    unsigned port = mg_metrics_port();
    int idle[MG_METRICS_MAX_CONNECTIONS];
    for (int i = 0; i < MG_METRICS_MAX_CONNECTIONS; i++)
        idle[i] = connect_to(AF_INET, port);
    usleep(200000); /* let the server accept them all */
    int fd = connect_to(AF_INET, port);
    const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    T_EQ_I(send(fd, req, strlen(req), MSG_NOSIGNAL), (long long)strlen(req));
    struct pollfd p = {.fd = fd, .events = POLLIN};
    T_EQ_I(poll(&p, 1, 1000), 0); /* no answer while at the limit */
    close(idle[0]);
    size_t len;
    char *raw = read_all(fd, &len, MG_METRICS_TIMEOUT_S - 1);
    close(fd);
    T_ASSERT(strncmp(raw, "HTTP/1.1 200 ", 13) == 0);
    free(raw);
    for (int i = 1; i < MG_METRICS_MAX_CONNECTIONS; i++)
        close(idle[i]);
    mg_metrics_stop();
}

/* A connection that sends nothing is closed after MG_METRICS_TIMEOUT_S. */
static void c_timeout(void)
{
    serve_ok();
    int fd = connect_to(AF_INET, mg_metrics_port());
    double t0 = now_s();
    size_t len;
    char *raw = read_all(fd, &len, MG_METRICS_TIMEOUT_S + 10);
    double dt = now_s() - t0;
    free(raw);
    close(fd);
    T_EQ_U(len, 0);
    if (dt < MG_METRICS_TIMEOUT_S - 1 || dt > MG_METRICS_TIMEOUT_S + 5)
        T_FAIL("idle connection closed after %.1f s, want about %d s", dt, MG_METRICS_TIMEOUT_S);
    mg_metrics_stop();
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    T_ASSERT(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Serve and stop again and again: no descriptor or thread is left. */
static void c_restart(void)
{
    mg_map *m = web_map();
    serve_ok(); /* the first start may open descriptors once for good */
    mg_metrics_stop();
    int before = count_fds();
    for (int i = 0; i < 20; i++) {
        serve_ok();
        resp r = request(i % 2 ? "HEAD" : "GET", "/metrics");
        T_EQ_I(r.status, 200);
        resp_free(&r);
        mg_metrics_stop();
    }
    T_EQ_I(count_fds(), before);
    mg_free(m);
}

static void c_ipv6(void)
{
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    a.sin6_addr = in6addr_loopback;
    if (probe < 0 || bind(probe, (struct sockaddr *)&a, sizeof a) != 0) {
        fprintf(stderr, "no IPv6 loopback here (%s): case passes without checking\n",
                strerror(errno));
        if (probe >= 0)
            close(probe);
        return;
    }
    close(probe);
    T_EQ_I(mg_metrics_serve("[::1]:0"), MG_OK);
    resp r = request_on(connect_to(AF_INET6, mg_metrics_port()), "GET", "/metrics");
    T_EQ_I(r.status, 200);
    T_STREQ(header(&r, "Content-Type"), CONTENT_TYPE);
    resp_free(&r);
    mg_metrics_stop();
}

int main(int argc, char **argv)
{
    static const t_case cases[] = {
        {"get", c_get},         {"head", c_head},         {"not_found", c_not_found},
        {"method", c_method},   {"busy", c_busy},         {"bad_addr", c_bad_addr},
        {"in_use", c_in_use},   {"conn_limit", c_conn_limit}, {"timeout", c_timeout},
        {"restart", c_restart}, {"ipv6", c_ipv6},         {NULL, NULL}};
    return t_main(cases, argc, argv);
}
