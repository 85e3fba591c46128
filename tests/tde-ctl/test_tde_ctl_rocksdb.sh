#!/bin/sh
# tde-ctl retire-key and rewrite on real RocksDB databases made through libtde-rocksdb
# (rdb_helper): a retired key leaves no SST, the migration from plaintext leaves no
# plaintext SST, every record reads back, and both refuse while the database is open.
set -eu
T=$1
H=$2
KH=$3 # km_helper: holds a key manager without any database
. "$(dirname "$0")/lib.sh"
current() { "$T" status "$1" -k "$A" 2>/dev/null | awk '/^current key:/ {print $3}'; }
# the .sst and .blob entries using key $2 in key manager $1
tables_using() {
    "$T" dump "$1" -k "$A" --json 2>/dev/null | grep "\"key_id\": \"$2\"" | grep -c '\.\(sst\|blob\)"' || true
}

"$T" gen-master-key "$D/a.key" 2>/dev/null
A="file://$D/a.key"
K="$D/keys"
DB="$D/db"

# --- help and usage ---
for c in retire-key rewrite; do
    expect 0 "$T" "$c" --help
    has "$D/out" "Usage: tde-ctl $c"
    has "$D/out" "--db DBPATH"
    expect 0 "$T" help "$c"
done
expect 0 "$T" --help
has "$D/out" "retire-key DIR KEYID"
has "$D/out" "rewrite DIR --db"

# --- retire a key: no table uses it afterwards ---
"$H" "$DB" "$K" "$A" -1 fill a 300
K1=$(current "$K")
expect 0 "$T" rotate-data-key "$K" -k "$A"
K2=$(current "$K")
"$H" "$DB" "$K" "$A" -1 fill b 300
checks=$((checks + 1))
[ "$(tables_using "$K" "$K1")" -gt 0 ] || fail "setup: no table uses $K1"
expect 2 "$T" retire-key "$K" "$K1" -k "$A"
has "$D/err" "--db DBPATH is required"
expect 2 "$T" retire-key "$K" zz --db "$DB" -k "$A"
has "$D/err" "KEYID must be a data key id in hex"
expect 1 "$T" retire-key "$K" 1234 --db "$DB" -k "$A"
has "$D/err" "has no data key 0000000000001234"
expect 1 "$T" retire-key "$K" "$K1" --db "$DB" -k "$A" --cf nosuch
has "$D/err" "no column family nosuch"
expect 0 "$T" retire-key "$K" "$K1" --db "$DB" -k "$A"
has "$D/out" "files still using key $K1"
has "$D/out" "files still use key $K1"
checks=$((checks + 1))
[ "$(tables_using "$K" "$K1")" -eq 0 ] || fail "tables still use $K1 after retire-key"
expect 0 "$T" dump "$K" -k "$A" --json
hasnt "$D/out" "\"key_id\": \"$K1\", \"method\": \"[a-z0-9-]*\", \"iv\": \"[0-9a-f]*\"}.*MANIFEST"
checks=$((checks + 1))
[ "$(current "$K")" = "$K2" ] || fail "retiring an old key rotated the current one"
"$H" "$DB" "$K" "$A" 1 check a 300 check b 300 || fail "records lost after retire-key"
expect 0 "$T" verify "$K" -k "$A" --data-dir "$DB"
hasnt "$D/out" "plaintext .*\.sst"

# retiring the current key makes a new one first
expect 0 "$T" retire-key "$K" "$K2" --db "$DB" -k "$A" --cf default
checks=$((checks + 1))
[ "$(current "$K")" != "$K2" ] || fail "retiring the current key did not rotate"
checks=$((checks + 1))
[ "$(tables_using "$K" "$K2")" -eq 0 ] || fail "tables still use $K2"
"$H" "$DB" "$K" "$A" 1 check a 300 check b 300 || fail "records lost after retiring the current key"

# --- refused while the database is open ---
mkfifo "$D/hold"
"$H" "$DB" "$K" "$A" -1 hold <"$D/hold" >"$D/holder.out" &
HOLDER=$!
exec 9>"$D/hold"
i=0; while ! grep -q holding "$D/holder.out" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
expect 7 "$T" retire-key "$K" "$K1" --db "$DB" -k "$A"
has "$D/err" "is open by pid $HOLDER"
has "$D/err" "stop the database"
expect 7 "$T" rewrite "$K" --db "$DB" -k "$A"
has "$D/err" "pid $HOLDER"
exec 9>&-
wait "$HOLDER" || fail "holder failed"
HOLDER=
# only the key manager held (another process on DIR, the database itself closed)
rm -f "$D/hold"
mkfifo "$D/hold"
"$KH" "$K" "$D/other" "$A" - hold <"$D/hold" >"$D/holder.out" &
HOLDER=$!
exec 9>"$D/hold"
i=0; while ! grep -q holding "$D/holder.out" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
expect 7 "$T" retire-key "$K" "$K1" --db "$DB" -k "$A"
has "$D/err" "key manager $K is in use by pid $HOLDER"
exec 9>&-
wait "$HOLDER" || fail "key-manager holder failed"
HOLDER=

# --- a database migrated from plaintext: rewrite leaves no plaintext table ---
P="$D/plain"
PK="$D/pkeys"
"$H" "$P" - - 0 fill p 300
"$H" "$P" "$PK" "$A" 0 fill q 100
expect 0 "$T" verify "$PK" -k "$A" --data-dir "$P"
has "$D/out" "plaintext .*\.sst"
expect 0 "$T" rewrite "$PK" --db "$P" -k "$A"
has "$D/out" "files not under the current key $(current "$PK")"
hasnt "$D/out" "\.sst$"
expect 0 "$T" verify "$PK" -k "$A" --data-dir "$P"
hasnt "$D/out" "plaintext .*\.sst"
hasnt "$D/out" "plaintext .*MANIFEST"
hasnt "$D/out" "plaintext .*IDENTITY"
hasnt "$D/out" "plaintext .*CURRENT"
n=0
for f in "$P"/*.sst; do
    expect 0 "$T" is-encrypted "$PK" "$f" -k "$A"
    n=$((n + 1))
done
checks=$((checks + 1))
[ "$n" -gt 0 ] || fail "no tables after rewrite"
"$H" "$P" "$PK" "$A" 0 check p 300 check q 100 || fail "records lost after rewrite"

# --rotate: afterwards every table uses the new current key
OLD=$(current "$PK")
expect 0 "$T" rewrite "$PK" --db "$P" -k "$A" --rotate
NEW=$(current "$PK")
checks=$((checks + 1))
[ "$NEW" != "$OLD" ] || fail "rewrite --rotate did not rotate"
checks=$((checks + 1))
[ "$(tables_using "$PK" "$OLD")" -eq 0 ] || fail "tables still use $OLD after rewrite --rotate"
"$H" "$P" "$PK" "$A" 0 check p 300 check q 100 || fail "records lost after rewrite --rotate"

finish
