#!/bin/sh
# Fixture for the tde-ctl tests: installs the build into a scratch prefix with
# `cmake --install`, then checks that the installed tde-ctl runs without the build tree:
# every libtde library it needs resolves inside the prefix (RUNPATH $ORIGIN/../lib), none
# in the build tree, none missing.
set -eu
BUILD=$1
PREFIX=$2
rm -rf "$PREFIX"
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
BIN="$PREFIX/bin/tde-ctl"
[ -x "$BIN" ] || { echo "FAIL: $BIN not installed"; exit 1; }
fails=0
ldd "$BIN" >"$PREFIX/ldd.out"
if grep -q "not found" "$PREFIX/ldd.out"; then
    echo "FAIL: unresolved libraries:"; grep "not found" "$PREFIX/ldd.out"; fails=1
fi
for lib in $(grep -o 'libtde[-a-z]*\.so[.0-9]*' "$PREFIX/ldd.out" | sort -u); do
    where=$(awk -v l="$lib" '$1 == l {print $3}' "$PREFIX/ldd.out")
    case "$where" in
    "$PREFIX"/*) echo "ok: $lib => $where" ;;
    *) echo "FAIL: $lib resolves to $where, not inside $PREFIX"; fails=1 ;;
    esac
done
# the installed adapter finds the installed libtde by itself (its own RUNPATH $ORIGIN)
for so in "$PREFIX"/lib*/libtde-rocksdb.so; do
    [ -e "$so" ] || continue
    where=$(ldd "$so" | awk '$1 == "libtde.so.0" {print $3}')
    case "$where" in
    "$PREFIX"/*) echo "ok: $so needs libtde.so.0 => $where" ;;
    *) echo "FAIL: $so finds libtde.so.0 at '$where'"; fails=1 ;;
    esac
done
grep -q "libtde.so" "$PREFIX/ldd.out" || { echo "FAIL: tde-ctl does not link libtde.so"; fails=1; }
env -u LD_LIBRARY_PATH "$BIN" --version || fails=1
[ "$fails" -eq 0 ]
