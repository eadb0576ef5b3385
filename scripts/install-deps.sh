#!/bin/sh
# Install the Debian packages mapguard needs, if any is missing.
# Used by `make run` and `make test`; safe to run again (it does nothing
# when everything is there).  Needs root (or sudo) only when installing.
set -eu

PKGS="cmake make gcc g++ libc6-dev clang libclang-rt-14-dev pkg-config libxxhash-dev \
libabsl-dev golang-go binutils liburcu-dev libcuckoo-dev gnuplot-nox valgrind \
libmicrohttpd-dev prometheus systemtap-sdt-dev bpftrace libdw-dev elfutils curl jq"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
