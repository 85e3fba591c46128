#!/bin/sh
# Runs the built tde-ctl through its commands, options, errors and exit codes.
set -eu
T=$1
. "$(dirname "$0")/lib.sh"

# --- help ---
expect 0 "$T" --help
for c in gen-master-key seal open rewrap key-id "Exit status"; do has "$D/out" "$c"; done
for c in gen-master-key seal open rewrap key-id; do
    expect 0 "$T" "$c" --help
    has "$D/out" "Usage: tde-ctl $c"
    expect 0 "$T" help "$c"
    has "$D/out" "Usage: tde-ctl $c"
done
expect 2 "$T"
expect 2 "$T" help frobnicate
has "$D/err" "unknown command 'frobnicate'"
expect 2 "$T" frobnicate
has "$D/err" "unknown command 'frobnicate'"
expect 2 "$T" seal --bogus
has "$D/err" "unknown option --bogus"
expect 2 "$T" seal
has "$D/err" "seal: --key URI is required"
expect 2 "$T" seal --segment-size 0 --key file:///x
expect 2 "$T" gen-master-key
expect 2 "$T" open --new-key file:///x --key file:///y

# --- gen-master-key ---
expect 0 "$T" gen-master-key "$D/a.key"
[ "$(stat -c %a "$D/a.key")" = 600 ] || fail "key file mode $(stat -c %a "$D/a.key")"
[ "$(stat -c %s "$D/a.key")" = 65 ] || fail "key file size"
grep -Eq '^[0-9a-f]{64}$' "$D/a.key" || fail "key file content"
cp "$D/a.key" "$D/a.copy"
expect 5 "$T" gen-master-key "$D/a.key"
has "$D/err" "refusing to overwrite"
cmp -s "$D/a.key" "$D/a.copy" || fail "gen-master-key overwrote a key"
expect 0 "$T" gen-master-key "$D/b.key"
A="file://$D/a.key"
B="file://$D/b.key"
expect 0 "$T" key-id --key "$A"
grep -Eq '^file [0-9a-f]{32}$' "$D/out" || fail "key-id output: $(cat "$D/out")"
grep -q "$(head -c 64 "$D/a.key")" "$D/out" && fail "key-id printed the key"

# --- seal / open, file to file and pipes ---
head -c 300000 /dev/urandom >"$D/plain"
expect 0 "$T" seal --key "$A" -o "$D/sealed" "$D/plain"
[ "$(stat -c %a "$D/sealed")" = 600 ] || fail "sealed file mode"
expect 0 "$T" open --key "$A" -o "$D/opened" "$D/sealed"
cmp -s "$D/plain" "$D/opened" || fail "file round trip"
expect 5 "$T" open --key "$A" -o "$D/opened" "$D/sealed"
expect 0 "$T" open --key "$A" --force -o "$D/opened" "$D/sealed"
"$T" seal -k "$A" -c tenant=7 -s 1000 <"$D/plain" | "$T" open -k "$A" -c tenant=7 >"$D/piped" ||
    fail "pipe round trip"
cmp -s "$D/plain" "$D/piped" || fail "pipe round trip content"
: >"$D/empty"
expect 0 "$T" seal --key "$A" -o "$D/empty.sealed" "$D/empty"
expect 0 "$T" open --key "$A" "$D/empty.sealed"
[ -s "$D/out" ] && fail "empty round trip"

# --- failures leave nothing behind ---
expect 3 "$T" open --key "$B" -o "$D/wrong" "$D/sealed"
has "$D/err" "wrong master key"
has "$D/err" "nothing written to $D/wrong"
[ -e "$D/wrong" ] && fail "output left after wrong key"
"$T" seal -k "$A" -c one -o "$D/ctx.sealed" "$D/plain"
expect 3 "$T" open -k "$A" -c two -o "$D/wrong" "$D/ctx.sealed"
expect 3 "$T" open -k "$A" -o "$D/wrong" "$D/ctx.sealed"
# Truncated: drop the last 10 bytes; a flipped byte in the middle.
head -c $(($(stat -c %s "$D/sealed") - 10)) "$D/sealed" >"$D/trunc"
expect 3 "$T" open --key "$A" -o "$D/wrong" "$D/trunc"
[ -e "$D/wrong" ] && fail "output left after truncation"
ls "$D" | grep -q tde-tmp && fail "temporary file left behind"
cp "$D/sealed" "$D/flip"
printf 'X' | dd of="$D/flip" bs=1 seek=150000 conv=notrunc 2>/dev/null
expect 3 "$T" open --key "$A" "$D/flip"
has "$D/err" "discard it"
head -c 3 "$D/sealed" >"$D/short"
expect 4 "$T" open --key "$A" "$D/short"
expect 4 "$T" open --key "$A" "$D/plain"
has "$D/err" "bad magic"
expect 1 "$T" open --key "$A" "$D/missing"
expect 1 "$T" seal --key "file://$D/missing.key" "$D/plain"
has "$D/err" "missing.key"
expect 2 "$T" seal --key "not a uri" "$D/plain"
has "$D/err" "position"

# --- rotation: rewrap under B; open with B, or with B current and A previous ---
expect 0 "$T" rewrap --key "$A" --new-key "$B" -o "$D/rewrapped" "$D/sealed"
expect 0 "$T" open --key "$B" -o "$D/opened2" "$D/rewrapped"
cmp -s "$D/plain" "$D/opened2" || fail "rewrap round trip"
expect 3 "$T" open --key "$A" "$D/rewrapped"
tail -c 200000 "$D/sealed" >"$D/t1"
tail -c 200000 "$D/rewrapped" >"$D/t2"
cmp -s "$D/t1" "$D/t2" || fail "rewrap changed the segments"
expect 0 "$T" open --key "$B" --previous-key "$A" -o "$D/opened3" "$D/sealed"
has "$D/err" "used the previous master key (file"
cmp -s "$D/plain" "$D/opened3" || fail "previous-key round trip"

# --- the test provider warns ---
expect 0 "$T" key-id --key plaintext-test-only://
has "$D/err" "warning: provider plaintext-test-only"

# --- key bytes never on stderr or stdout ---
for k in a b; do
    hex=$(head -c 64 "$D/$k.key")
    for f in "$D/err" "$D/out"; do grep -q "$hex" "$f" && fail "key $k in $f"; done
done

finish
