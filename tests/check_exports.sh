#!/bin/sh
# Fails when the shared library exports a symbol not named tde_*.
set -eu
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '{print $NF}' | grep -v '^tde_' || true)
count=$(nm -D --defined-only "$lib" | awk '{print $NF}' | grep -c '^tde_' || true)
if [ -n "$bad" ]; then
    echo "exported symbols outside tde_*:"; echo "$bad"; exit 1
fi
[ "$count" -gt 0 ] || { echo "no tde_* symbols exported from $lib"; exit 1; }
echo "$count symbols, all tde_*"
