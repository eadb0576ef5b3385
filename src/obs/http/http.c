/*
 * http.c - libmapguard-http: mg_metrics_render served on /metrics with
 * libmicrohttpd (contract in include/mapguard_http.h).
 *
 * We bind and listen on the socket ourselves and hand it to libmicrohttpd
 * (MHD_OPTION_LISTEN_SOCKET): then an address or port problem is an errno
 * of ours (MG_EIO) rather than a NULL daemon with no reason, and port 0
 * gives its port back through getsockname.  libmicrohttpd runs one
 * internal polling thread; each scrape renders into a fresh buffer that
 * the response owns (MHD_RESPMEM_MUST_FREE), sized by the last scrape.
 */
#include "mapguard_http.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Handlers return enum MHD_Result since libmicrohttpd 0.9.71, int before. */
#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result mhd_result;
#else
typedef int mhd_result;
#endif

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static pthread_mutex_t serve_lock = PTHREAD_MUTEX_INITIALIZER;
static struct MHD_Daemon *daemon_; /* under serve_lock */
static _Atomic unsigned served_port;
static _Atomic size_t last_size; /* the last scrape's length: the next guess */

/* ---- addresses ---------------------------------------------------------- */

typedef struct {
    struct sockaddr_storage ss;
    socklen_t len;
} addr_t;

static bool parse_port(const char *s, unsigned *port)
{
    if (!*s)
        return false;
    unsigned v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (unsigned)(*s - '0');
        if (v > 65535)
            return false;
    }
    *port = v;
    return true;
}

/* "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT"; see mapguard_http.h. */
static bool parse_addr(const char *addr, addr_t *out)
{
    char host[64];
    const char *port_s;
    memset(out, 0, sizeof *out);
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof host)
            return false;
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = '\0';
        port_s = end + 2;
        unsigned port;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->ss;
        if (!parse_port(port_s, &port) || inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return false;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        out->len = sizeof *a6;
        return true;
    }
    const char *colon = strrchr(addr, ':');
    if (colon) {
        if (strchr(addr, ':') != colon || (size_t)(colon - addr) >= sizeof host)
            return false; /* IPv6 needs brackets */
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
        port_s = colon + 1;
    } else {
        host[0] = '\0';
        port_s = addr;
    }
    if (!host[0] || strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    unsigned port;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&out->ss;
    if (!parse_port(port_s, &port) || inet_pton(AF_INET, host, &a4->sin_addr) != 1)
        return false;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    out->len = sizeof *a4;
    return true;
}

/* A listening socket on a, or -1 with errno set; *port gets its port. */
static int listen_on(const addr_t *a, unsigned *port)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    /* Restart at once on the same port (TIME_WAIT); on Linux this does not
     * let two servers share a port. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&got, &gl) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *port = got.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&got)->sin6_port)
                                      : ntohs(((struct sockaddr_in *)&got)->sin_port);
    return fd;
}

/* ---- requests ----------------------------------------------------------- */

static mhd_result reply_static(struct MHD_Connection *c, unsigned status, const char *body,
                               const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body,
                                        MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    mhd_result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The whole exposition in a malloc'd buffer, or NULL (out of memory). */
static char *render(size_t *len)
{
    size_t cap = atomic_load_explicit(&last_size, memory_order_relaxed);
    cap = cap ? cap + cap / 4 + 256 : 16384;
    for (int tries = 0; tries < 8; tries++) {
        char *buf = malloc(cap);
        if (!buf)
            return NULL;
        size_t n = mg_metrics_render(buf, cap);
        if (n < cap) {
            atomic_store_explicit(&last_size, n, memory_order_relaxed);
            *len = n;
            return buf;
        }
        free(buf); /* maps came or grew since the guess: room, and again */
        cap = n + n / 4 + 256;
    }
    return NULL;
}

static mhd_result on_request(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version,
                             const char *upload_data, size_t *upload_data_size,
                             void **req_cls)
{
    (void)cls, (void)version, (void)upload_data, (void)upload_data_size, (void)req_cls;
    if (strcmp(url, "/metrics") != 0)
        return reply_static(c, MHD_HTTP_NOT_FOUND, "404 not found: try /metrics\n", NULL);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_static(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                            "405 method not allowed: GET or HEAD\n", "GET, HEAD");
    size_t len;
    char *body = render(&len);
    if (!body)
        return reply_static(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "500 out of memory\n", NULL);
    /* For HEAD, libmicrohttpd sends the headers (Content-Length included)
     * and leaves the body out. */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    mhd_result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- start and stop ----------------------------------------------------- */

int mg_metrics_serve(const char *addr)
{
    addr_t a;
    if (!addr || !parse_addr(addr, &a))
        return MG_EINVAL;
    pthread_mutex_lock(&serve_lock);
    if (daemon_) {
        pthread_mutex_unlock(&serve_lock);
        return MG_EBUSY;
    }
    unsigned port = 0;
    int fd = listen_on(&a, &port);
    if (fd < 0) {
        int e = errno;
        pthread_mutex_unlock(&serve_lock);
        errno = e;
        return e == ENOMEM || e == ENOBUFS ? MG_ENOMEM : MG_EIO;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    if (a.ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, NULL,
        MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)MG_METRICS_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)MG_METRICS_TIMEOUT_S,
        MHD_OPTION_END);
    if (!d) {
        close(fd);
        pthread_mutex_unlock(&serve_lock);
        errno = EAGAIN;
        return MG_EIO;
    }
    daemon_ = d;
    atomic_store(&served_port, port);
    pthread_mutex_unlock(&serve_lock);
    return MG_OK;
}

void mg_metrics_stop(void)
{
    pthread_mutex_lock(&serve_lock);
    if (daemon_) {
        MHD_stop_daemon(daemon_); /* joins its thread, closes the socket */
        daemon_ = NULL;
        atomic_store(&served_port, 0);
    }
    pthread_mutex_unlock(&serve_lock);
}

unsigned mg_metrics_port(void)
{
    return atomic_load(&served_port);
}
