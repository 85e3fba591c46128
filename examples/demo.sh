#!/usr/bin/env bash
# The README demo: runs the examples against a scratch directory and shows the bytes on disk.
set -euo pipefail
BUILD=${1:?usage: demo.sh BUILD_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$BUILD/examples/example_cipher_file" "$work"
