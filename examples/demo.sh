#!/usr/bin/env bash
# The README demo: runs the examples against a scratch directory and shows the bytes on disk.
set -euo pipefail
BUILD=${1:?usage: demo.sh BUILD_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$BUILD/examples/example_cipher_file" "$work"
# The product: an encrypted RocksDB opened from C with a key-file master key.
if [ -x "$BUILD/examples/example_rocksdb_c" ]; then
    mkdir -p "$work/rocksdb"
    "$BUILD/examples/example_rocksdb_c" "$work/rocksdb"
    echo "files on disk (every one encrypted; sizes equal plaintext sizes):"
    ls -l "$work/rocksdb/db"
    sst=$(ls "$work"/rocksdb/db/*.sst | head -1)
    echo "first bytes of $(basename "$sst"):"
    od -A d -t x1 -N 64 "$sst"
fi
