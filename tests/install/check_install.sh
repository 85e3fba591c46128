#!/usr/bin/env bash
# check_install.sh BUILD_DIR SCRATCH CONSUMER_SRC
set -euo pipefail
build=$1 scratch=$2 src=$3
rm -rf "$scratch"
prefix=$scratch/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libtde.so.0' | head -1)")
test -f "$prefix/include/tde/cipher.h"
readelf -d "$libdir/libtde.so.0" | grep -q 'SONAME.*libtde.so.0'
test -f "$libdir/libtde.a"

# pkg-config
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc -std=c11 -Wall -Werror $(pkg-config --cflags libtde) "$src/consumer.c" -o "$scratch/by-pkgconfig" \
    $(pkg-config --libs libtde)
LD_LIBRARY_PATH=$libdir "$scratch/by-pkgconfig"
cc -std=c11 $(pkg-config --cflags libtde) "$src/consumer.c" -o "$scratch/by-pkgconfig-static" \
    "$libdir/libtde.a" $(pkg-config --static --libs-only-l libtde | sed 's/-ltde//')
"$scratch/by-pkgconfig-static"

# find_package(tde) -> tde::tde
cmake -S "$src" -B "$scratch/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$scratch/consumer-build" >/dev/null
LD_LIBRARY_PATH=$libdir "$scratch/consumer-build/consumer"
echo "install: OK"
