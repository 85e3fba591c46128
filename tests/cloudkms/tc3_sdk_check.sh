#!/bin/bash
# Runs tc3_sdk_check.js against a fresh tencent_kms_server.js.
# Usage: tc3_sdk_check.sh SOURCE_DIR/tests/cloudkms NODE_MODULES_DIR
set -euo pipefail
here=$1
export NODE_PATH=$2
[ -d "$NODE_PATH/tencentcloud-sdk-nodejs-common" ] ||
    { echo "FAIL: $NODE_PATH lacks the Tencent SDK: tde.sh installs it (npm ci into BUILD_DIR/npm)" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tde-tc3sdk-XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
"$here/mkcerts.sh" "$tmp/certs"
node "$here/tencent_kms_server.js" --dir "$tmp" --cert-dir "$tmp/certs" --lifetime 120 \
    --key 23e80852-1e38-11e9-b129-5cb9019b4b01 --cred AKIDTEST:testsecret --any-service 1 &
pid=$!
for _ in $(seq 100); do [ -f "$tmp/port" ] && break; sleep 0.1; done
[ -f "$tmp/port" ] || { echo "FAIL: server did not start" >&2; exit 1; }
NODE_EXTRA_CA_CERTS=$tmp/certs/ca.pem node "$here/tc3_sdk_check.js" "$(cat "$tmp/port")" \
    23e80852-1e38-11e9-b129-5cb9019b4b01
