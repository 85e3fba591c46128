#!/usr/bin/env bash
# The README demo: runs the examples against a scratch directory and shows the bytes on disk.
set -euo pipefail
BUILD=${1:?usage: demo.sh BUILD_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
section() { printf '\n=== %s\n' "$*"; }

section "An encrypted RocksDB from RocksDB's C API, with a key-file master key"
mkdir -p "$work/rocksdb"
"$BUILD/examples/example_rocksdb_c" "$work/rocksdb"
echo "files on disk (every one encrypted; sizes equal plaintext sizes):"
ls -l "$work/rocksdb/db"
sst=$(ls "$work"/rocksdb/db/*.sst | head -1)
echo "first bytes of $(basename "$sst"):"
od -A d -t x1 -N 64 "$sst"

section "The cipher API: a file encrypted record by record, one record read back"
mkdir -p "$work/cipher"
"$BUILD/examples/example_cipher_file" "$work/cipher"

section "The envelope API: a secret sealed under a master key, then the master key rotated"
mkdir -p "$work/envelope"
"$BUILD/examples/example_envelope_secret" "$work/envelope"
