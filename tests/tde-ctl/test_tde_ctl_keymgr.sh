#!/bin/sh
# Runs the built tde-ctl's key-manager directory commands against directories that a
# stand-in host (km_helper, the public API) made: output, errors, exit codes, and the
# master-key rotation workflow of docs/operations.md as one sequence.
set -eu
T=$1
H=$2
. "$(dirname "$0")/lib.sh"

mkdir "$D/db"
"$T" gen-master-key "$D/a.key" 2>/dev/null
"$T" gen-master-key "$D/b.key" 2>/dev/null
"$T" gen-master-key "$D/c.key" 2>/dev/null
A="file://$D/a.key"; B="file://$D/b.key"; C="file://$D/c.key"
M="$D/meta"
R="--root db=$D/db"
"$H" "$M" "$D/db" "$A" - write 000001.sst "first table" write LOG "log line"
echo plain >"$D/db/OLD.txt"

# --- help and usage errors ---
expect 0 "$T" --help
for c in status dump verify is-encrypted metrics cat rotate-data-key rotate-master-key gc \
    backup-metadata; do
    has "$D/out" "$c"
done
for c in status dump verify is-encrypted metrics cat rotate-data-key rotate-master-key gc \
    backup-metadata; do
    expect 0 "$T" "$c" --help
    has "$D/out" "Usage: tde-ctl $c"
    has "$D/out" "--master-key"
    expect 0 "$T" help "$c"
    has "$D/out" "Usage: tde-ctl $c"
done
expect 2 "$T" status
has "$D/err" "expected DIR"
expect 2 "$T" status "$M"
has "$D/err" "master-key URI is required"
expect 2 "$T" status "$M" -k "$A" --bogus
has "$D/err" "unknown option --bogus"
expect 2 "$T" status "$M" -k "$A" --apply
expect 2 "$T" status "$M" -k "$A" --root nameonly
has "$D/err" "NAME=PATH"
expect 2 "$T" rotate-master-key "$M" -k "$A" $R
has "$D/err" "--new URI is required"
expect 2 "$T" cat "$M" -k "$A"
has "$D/err" "DIR FILE"
expect 1 "$T" status "$D/nothing" -k "$A"
has "$D/err" "not a key-manager directory"
[ -e "$D/nothing" ] && fail "status created a directory"
expect 3 "$T" status "$M" -k "$B" $R

# --- inspection ---
expect 0 "$T" status "$M" -k "$A" $R
has "$D/out" "method: *aes256-ctr"
has "$D/out" "cipher backend: *[a-z]"
has "$D/out" "encrypted files: *2"
has "$D/out" "data keys: *1"
has "$D/out" "in use: *no"
has "$D/out" "next rotation"
has "$D/out" "master key: *file $("$T" key-id --key "$A" | cut -d' ' -f2)"
TDE_MASTER_KEY="$A" expect 0 "$T" status "$M" $R
expect 0 "$T" dump "$M" -k "$A" $R
has "$D/out" "db/000001.sst"
has "$D/out" "current"
hasnt "$D/out" "$(head -c 64 "$D/a.key")"
expect 0 "$T" dump "$M" -k "$A" $R --json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["keys"])==1 and len(d["files"])==2' "$D/out" ||
    fail "dump --json is not the expected JSON"
expect 0 "$T" dump "$M" -k "$A" $R --file db/LOG
has "$D/out" "db/LOG"
hasnt "$D/out" "000001"
expect 0 "$T" dump "$M" -k "$A" $R --file "$D/db/000001.sst"
has "$D/out" "db/000001.sst"
expect 8 "$T" dump "$M" -k "$A" $R --file db/none
# --show-keys: a warning on stderr, and the key really decrypts the file (openssl, AES-256-CTR
# with the IV as the initial counter block)
expect 0 "$T" dump "$M" -k "$A" $R --show-keys
has "$D/err" "WARNING: --show-keys prints the data keys unwrapped"
K=$(awk 'NR == 2 { print $NF }' "$D/out")
echo "$K" | grep -Eq '^[0-9a-f]{64}$' || fail "--show-keys printed '$K'"
IV=$(awk '/db\/000001.sst/ { print $3 }' "$D/out")
[ "$(openssl enc -aes-256-ctr -d -K "$K" -iv "$IV" -in "$D/db/000001.sst")" = "first table" ] ||
    fail "the key from --show-keys does not decrypt 000001.sst"
expect 0 "$T" dump "$M" -k "$A" $R --show-keys --json
has "$D/out" "\"key\": \"$K\""
has "$D/err" "WARNING"
expect 0 "$T" dump "$M" -k "$A" $R --json
hasnt "$D/out" "$K"
expect 3 "$T" dump "$M" -k "$B" $R --show-keys
expect 0 "$T" is-encrypted "$M" "$D/db/000001.sst" -k "$A" $R
has "$D/out" "encrypted aes256-ctr key"
expect 8 "$T" is-encrypted "$M" "$D/db/OLD.txt" -k "$A" $R
has "$D/out" "plaintext"
expect 0 "$T" cat "$M" "$D/db/000001.sst" -k "$A" $R
[ "$(cat "$D/out")" = "first table" ] || fail "cat gave '$(cat "$D/out")'"
grep -q "first table" "$D/db/000001.sst" && fail "the data file is not encrypted"
expect 0 "$T" cat "$M" "$D/db/OLD.txt" -k "$A" $R
has "$D/out" "^plain$"
expect 0 "$T" metrics "$M" -k "$A" $R
has "$D/out" "^# TYPE tde_encrypted_files gauge$"
has "$D/out" "^tde_encrypted_files 2$"
has "$D/out" "^tde_data_keys 1$"
expect 0 "$T" verify "$M" -k "$A" $R
has "$D/out" "plaintext *$D/db/OLD.txt"
has "$D/out" "2 entries: 0 missing files, 0 missing keys; 3 files on disk, 1 plaintext"
has "$D/out" "^OK$"
expect 0 "$T" verify "$M" -k "$A" $R --data-dir "$D/db"
expect 3 "$T" verify "$M" -k "$B" $R

# --- gc: dry run, then --apply ---
rm "$D/db/LOG"
expect 1 "$T" verify "$M" -k "$A" $R
has "$D/out" "MISSING FILE *db/LOG"
has "$D/out" "PROBLEMS FOUND"
expect 0 "$T" gc "$M" -k "$A" $R
has "$D/out" "orphan *db/LOG"
has "$D/out" "dry run"
expect 1 "$T" verify "$M" -k "$A" $R
expect 0 "$T" gc "$M" -k "$A" $R --apply
has "$D/out" "removed 1 orphan"
expect 0 "$T" verify "$M" -k "$A" $R
expect 0 "$T" gc "$M" -k "$A" $R
has "$D/out" "no orphan entries"

# --- backup-metadata ---
expect 0 "$T" backup-metadata "$M" "$D/backup" -k "$A" $R
[ "$(stat -c %a "$D/backup")" = 700 ] || fail "backup directory mode"
[ -e "$D/backup/keymgr.lock" ] && fail "the lock file was copied"
for f in "$D"/backup/*; do [ "$(stat -c %a "$f")" = 600 ] || fail "$f mode"; done
expect 5 "$T" backup-metadata "$M" "$D/backup" -k "$A" $R
expect 3 "$T" backup-metadata "$M" "$D/backup2" -k "$B" $R
[ -e "$D/backup2" ] && fail "a failed backup left $D/backup2"
expect 1 "$T" backup-metadata "$D/db" "$D/backup3" -k "$A" $R
has "$D/err" "not a key-manager directory"
expect 0 "$T" cat "$D/backup" "$D/db/000001.sst" -k "$A" $R
[ "$(cat "$D/out")" = "first table" ] || fail "cat through the backup"

# --- writers are refused while a process holds the directory; readers are not ---
mkfifo "$D/hold"
"$H" "$M" "$D/db" "$A" - hold <"$D/hold" >"$D/holder.out" &
HOLDER=$!
exec 9>"$D/hold"
i=0; while ! grep -q holding "$D/holder.out" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
expect 7 "$T" rotate-data-key "$M" -k "$A" $R
has "$D/err" "in use by another writer (pid $HOLDER"
has "$D/err" "stop the database"
expect 7 "$T" rotate-master-key "$M" -k "$A" --new "$B" $R
rm "$D/db/000001.sst"
expect 0 "$T" gc "$M" -k "$A" $R
has "$D/out" "orphan *db/000001.sst"
expect 7 "$T" gc "$M" -k "$A" $R --apply
expect 0 "$T" status "$M" -k "$A" $R
has "$D/out" "in use: *yes, by pid $HOLDER"
expect 0 "$T" metrics "$M" -k "$A" $R
exec 9>&-
wait "$HOLDER"
HOLDER=

# --- master-key rotation workflow (docs/operations.md), as one sequence ---
# 0. a database running with master key A writes data.
rm -rf "$M" "$D/db"; mkdir "$D/db"
"$H" "$M" "$D/db" "$A" - write 1.sst one
# 1. online: the host is configured with current B and previous A; at open it re-seals
#    under B by itself; the online API then moves it on to C while it runs.
"$H" "$M" "$D/db" "$B" "$A" write 2.sst two
expect 3 "$T" status "$M" -k "$A" $R
expect 0 "$T" status "$M" -k "$B" $R
"$H" "$M" "$D/db" "$B" - write 3.sst three rotate-master "$C"
expect 0 "$T" verify "$M" -k "$C" $R
expect 3 "$T" verify "$M" -k "$B" $R
# 2. offline: the host is stopped; tde-ctl rotates C -> A.
expect 0 "$T" rotate-master-key "$M" -k "$C" --new "$A" $R
has "$D/out" "re-wrapped"
expect 3 "$T" status "$M" -k "$C" $R
# an interrupted change-over: the old key given as --previous-key still opens it
expect 0 "$T" rotate-master-key "$M" -k "$B" --previous-key "$A" --new "$B" $R
expect 0 "$T" rotate-master-key "$M" -k "$B" --new "$A" $R
# a wrong current key changes nothing
expect 3 "$T" rotate-master-key "$M" -k "$C" --new "$B" $R
expect 0 "$T" status "$M" -k "$A" $R
# 3. the host restarts with the new current key A; every file reads back.
"$H" "$M" "$D/db" "$A" - write 4.sst four
expect 0 "$T" verify "$M" -k "$A" $R
has "$D/out" "4 entries: 0 missing files"
for n in 1:one 2:two 3:three 4:four; do
    expect 0 "$T" cat "$M" "$D/db/${n%%:*}.sst" -k "$A" $R
    [ "$(cat "$D/out")" = "${n#*:}" ] || fail "${n%%:*}.sst after rotations: '$(cat "$D/out")'"
done

# --- rotate-data-key while stopped ---
old=$("$T" status "$M" -k "$A" $R | sed -n 's/^current key: *//p')
expect 0 "$T" rotate-data-key "$M" -k "$A" $R
has "$D/out" "new current data key"
new=$("$T" status "$M" -k "$A" $R | sed -n 's/^current key: *//p')
[ "$old" != "$new" ] || fail "rotate-data-key kept key $old"
has "$D/out" "$new"
"$H" "$M" "$D/db" "$A" - write 5.sst five
expect 0 "$T" is-encrypted "$M" "$D/db/5.sst" -k "$A" $R
has "$D/out" "key $new"
expect 0 "$T" is-encrypted "$M" "$D/db/1.sst" -k "$A" $R
has "$D/out" "key $old"
expect 0 "$T" verify "$M" -k "$A" $R

# --- verify --deep: a real RocksDB table (made by the stock ldb tool), encrypted by the host ---
if command -v ldb >/dev/null; then
    ldb --db="$D/plain" --create_if_missing put key value >/dev/null
    ldb --db="$D/plain" compact >/dev/null
    SST=$(ls "$D"/plain/*.sst | head -n 1)
    rm -rf "$M" "$D/db"; mkdir "$D/db"
    "$H" "$M" "$D/db" "$A" - copy 7.sst "$SST" copy 8.sst "$SST" write 9.log "not a table"
    expect 0 "$T" verify "$M" -k "$A" $R --deep
    has "$D/out" "deep: 2 tables checked, 0 with a wrong key"
    cmp -s "$SST" "$D/db/7.sst" && fail "7.sst is not encrypted"
    # swapped on disk: each file's entry now has the other file's IV
    mv "$D/db/7.sst" "$D/db/x" && mv "$D/db/8.sst" "$D/db/7.sst" && mv "$D/db/x" "$D/db/8.sst"
    expect 0 "$T" verify "$M" -k "$A" $R
    expect 1 "$T" verify "$M" -k "$A" $R --deep
    has "$D/out" "BAD KEY *db/7.sst"
    has "$D/out" "deep: 2 tables checked, 2 with a wrong key"
else
    fail "ldb (rocksdb-tools) is missing"
fi

finish
