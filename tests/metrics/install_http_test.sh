#!/bin/sh
# Install into a scratch prefix, then build a /metrics server with
# `pkg-config mapguard-http` (shared) and run it: proves cmake --install
# ships mapguard_http.h, libmapguard-http and mapguard-http.pc.
#   install_http_test.sh BUILD_DIR
set -eu
build_dir=$1
command -v curl >/dev/null 2>&1 || { echo "FAIL: curl not found"; exit 1; }
work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
prefix=$work/prefix
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
cat > "$work/srv.c" <<'C'
#include <mapguard.h>
#include <mapguard_http.h>
#include <signal.h>
#include <stdio.h>
int main(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    mg_options o = {.name = "installed"};
    mg_map *m = mg_new(&o);
    if (!m || mg_put_u64(m, 1, 2) != MG_OK || mg_metrics_serve("127.0.0.1:0") != MG_OK)
        return 1;
    printf("%u\n", mg_metrics_port());
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    mg_metrics_stop();
    mg_free(m);
    return 0;
}
C
libdir=$(ls -d "$prefix"/lib*/ | head -n 1)
test -f "$prefix/include/mapguard_http.h"
test -f "$libdir/libmapguard-http.a"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -D_GNU_SOURCE -o "$work/srv" "$work/srv.c" $(pkg-config --cflags --libs mapguard-http) -lpthread
LD_LIBRARY_PATH="$libdir" "$work/srv" > "$work/port" &
pid=$!
i=0
until [ -s "$work/port" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "FAIL: server exited"; exit 1; }
    i=$((i + 1)); [ "$i" -le 100 ] || { echo "FAIL: no port in 10 s"; exit 1; }
    sleep 0.1
done
port=$(cat "$work/port")
curl -sf "http://127.0.0.1:$port/metrics" > "$work/out.prom"
grep -qx 'mapguard_entries{map="installed",mode="unsync"} 1' "$work/out.prom" ||
    { echo "FAIL: no series in"; cat "$work/out.prom"; exit 1; }
kill "$pid"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || { echo "FAIL: server exited $rc on SIGTERM"; exit 1; }
echo "install_http test: built with pkg-config mapguard-http, served port $port"
