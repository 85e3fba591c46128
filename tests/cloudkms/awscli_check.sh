#!/bin/bash
# Proves the local AWS KMS (aws_kms_server.py) is faithful: Debian's awscli, an
# independent client, signs requests that the server accepts, gets data keys it
# can decrypt, sees EncryptionContext enforced, and parses its errors.
# Usage: awscli_check.sh SOURCE_DIR/tests/cloudkms
set -euo pipefail
here=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tde-awscli-XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$here/mkcerts.sh" "$tmp/certs"
/usr/bin/python3 "$here/aws_kms_server.py" --dir "$tmp" --cert-dir "$tmp/certs" --lifetime 300 \
    --key 1234abcd-12ab-34cd-56ef-1234567890ab --alias alias/tde=1234abcd-12ab-34cd-56ef-1234567890ab \
    --cred AKIDTEST:testsecret &
pid=$!
for _ in $(seq 100); do [ -f "$tmp/port" ] && break; sleep 0.1; done
[ -f "$tmp/port" ] || fail "server did not start"
url=https://127.0.0.1:$(cat "$tmp/port")

export HOME=$tmp AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_EC2_METADATA_DISABLED=true AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=
export AWS_ACCESS_KEY_ID=AKIDTEST AWS_SECRET_ACCESS_KEY=testsecret
aws() { /usr/bin/aws "$@" --endpoint-url "$url" --ca-bundle "$tmp/certs/ca.pem" --output json; }
field() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

out=$(aws kms generate-data-key --key-id alias/tde --key-spec AES_256 --encryption-context app=tde)
echo "$out" | field KeyId | grep -q '^arn:aws:kms:us-east-1:111122223333:key/1234abcd' || fail "KeyId: $out"
echo "$out" | field CiphertextBlob | base64 -d >"$tmp/blob"
pt=$(echo "$out" | field Plaintext)
[ "$(echo "$pt" | base64 -d | wc -c)" -eq 32 ] || fail "data key is not 32 bytes"

dec=$(aws kms decrypt --ciphertext-blob "fileb://$tmp/blob" --encryption-context app=tde)
[ "$(echo "$dec" | field Plaintext)" = "$pt" ] || fail "Decrypt returned another plaintext"

# EncryptionContext is bound to the ciphertext.
if err=$(aws kms decrypt --ciphertext-blob "fileb://$tmp/blob" --encryption-context app=other 2>&1); then
    fail "Decrypt with the wrong EncryptionContext succeeded"
fi
echo "$err" | grep -q InvalidCiphertextException || fail "wrong context: $err"

printf 'small secret' >"$tmp/pt"
enc=$(aws kms encrypt --key-id 1234abcd-12ab-34cd-56ef-1234567890ab --plaintext "fileb://$tmp/pt")
echo "$enc" | field CiphertextBlob | base64 -d >"$tmp/blob2"
dec=$(aws kms decrypt --ciphertext-blob "fileb://$tmp/blob2")
[ "$(echo "$dec" | field Plaintext | base64 -d)" = "small secret" ] || fail "Encrypt/Decrypt round trip"

err=$(aws kms encrypt --key-id alias/none --plaintext "fileb://$tmp/pt" 2>&1) && fail "unknown alias accepted"
echo "$err" | grep -q NotFoundException || fail "unknown alias: $err"

err=$(AWS_SECRET_ACCESS_KEY=wrong aws kms encrypt --key-id alias/tde --plaintext "fileb://$tmp/pt" 2>&1) &&
    fail "wrong secret accepted"
echo "$err" | grep -q InvalidSignatureException || fail "wrong secret: $err"

# awscli recognises the throttling error and retries it.
: >"$tmp/requests.log"
echo '{"mode": "throttle", "count": 2}' >"$tmp/fault.json"
aws kms encrypt --key-id alias/tde --plaintext "fileb://$tmp/pt" >/dev/null
[ "$(grep -c '^Encrypt ' "$tmp/requests.log")" -eq 3 ] || fail "throttling not retried: $(cat "$tmp/requests.log")"
echo "awscli: all checks passed"
