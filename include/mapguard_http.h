/*
 * mapguard_http.h - libmapguard-http: serve mg_metrics_render on /metrics.
 *
 * An optional library on top of libmapguard (link -lmapguard-http, or
 * `pkg-config --libs mapguard-http`); it needs libmicrohttpd.  One server
 * per process, on one internal thread:
 *
 *   GET  /metrics   200, Content-Type: text/plain; version=0.0.4; charset=utf-8
 *   HEAD /metrics   the same headers, no body
 *   other paths     404
 *   other methods   405, with Allow: GET, HEAD
 *
 * At most MG_METRICS_MAX_CONNECTIONS connections are served at once (more
 * wait, unanswered, in the listen backlog until one closes); a connection
 * idle for MG_METRICS_TIMEOUT_S seconds is closed.  docs/metrics.md lists the series.
 *
 * Copyright (c) the mapguard authors.  MIT licensed.
 */
#ifndef MAPGUARD_HTTP_H
#define MAPGUARD_HTTP_H

#include "mapguard.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MG_METRICS_MAX_CONNECTIONS 16
#define MG_METRICS_TIMEOUT_S 5

/* Start serving /metrics on addr, in a thread of its own.
 * addr: "HOST:PORT", where HOST is a numeric IPv4 address, "localhost" or a
 *   bracketed IPv6 address ("[::1]:9464"); or ":PORT" or "PORT", which mean
 *   127.0.0.1.  Only loopback is used unless the caller names another
 *   address ("0.0.0.0:9464" listens on every interface).  Port 0 picks a
 *   free port (see mg_metrics_port).
 * Returns: MG_OK; MG_EINVAL (NULL or malformed addr); MG_EBUSY (already
 *   serving); MG_EIO (the socket cannot be bound or listened on, errno
 *   says why, e.g. EADDRINUSE; or the server thread cannot start);
 *   MG_ENOMEM.
 * Thread safety: any thread; serve and stop are serialized. */
MG_API int mg_metrics_serve(const char *addr);

/* Stop the server: closes its socket and every connection, and joins its
 * thread.  A no-op when not serving.  Thread safety: any thread. */
MG_API void mg_metrics_stop(void);

/* Returns: the TCP port being served (the one chosen for port 0), or 0
 *   when not serving.  Thread safety: any thread. */
MG_API unsigned mg_metrics_port(void);

#ifdef __cplusplus
}
#endif
#endif /* MAPGUARD_HTTP_H */
