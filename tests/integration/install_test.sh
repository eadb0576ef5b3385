#!/bin/sh
# Install into a scratch prefix, then build a consumer three ways: with
# pkg-config against the shared library, against the static library, and
# with CMake's find_package(mapguard).  Proves `cmake --install` ships a
# usable header, both libraries, mapguard.pc and the CMake package.
set -eu
build_dir=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cmake --install "$build_dir" --prefix "$prefix" >/dev/null

cat > "$work/use.c" <<'C'
#include <mapguard.h>
#include <stdio.h>
int main(void)
{
    mg_map *m = mg_new(NULL);
    uint64_t v = 0;
    if (!m || mg_put_u64(m, 7, 42) != MG_OK || !mg_get_u64(m, 7, &v) || v != 42)
        return 1;
    mg_free(m);
    printf("ok %s\n", MG_VERSION_STRING);
    return 0;
}
C
libdir=$(ls -d "$prefix"/lib*/ | head -n 1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
test -x "$prefix/bin/mapguard"
"$prefix/bin/mapguard" version

# shellcheck disable=SC2046
cc -std=c11 -o "$work/use_shared" "$work/use.c" $(pkg-config --cflags --libs mapguard)
LD_LIBRARY_PATH="$libdir" "$work/use_shared"

# shellcheck disable=SC2046
# The archive, then what `pkg-config --static` says it needs (liburcu-bp,
# pthread), less -lmapguard itself.
cc -std=c11 -o "$work/use_static" "$work/use.c" $(pkg-config --cflags mapguard) \
    "$libdir/libmapguard.a" $(pkg-config --static --libs mapguard | sed 's/-lmapguard//')
"$work/use_static"

mkdir -p "$work/cm"
cat > "$work/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(use C)
find_package(mapguard REQUIRED)
add_executable(use ../use.c)
target_link_libraries(use PRIVATE mapguard::mapguard_static)
CM
cmake -S "$work/cm" -B "$work/cm/b" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cm/b" >/dev/null
"$work/cm/b/use"
echo "install test: 3 consumers built and ran"
