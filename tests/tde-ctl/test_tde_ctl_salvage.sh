#!/bin/sh
# tde-ctl salvage against a real key-manager directory (made by km_helper through the
# public API), damaged in each way that matters: every salvage leaves DIR byte-identical,
# writes a new directory that `verify` accepts, and `cat` decrypts the files back.
set -eu
T=$1
H=$2
. "$(dirname "$0")/lib.sh"
snap() { (cd "$1" && find . -type f | sort | xargs sha256sum && ls -ln | awk '{print $1, $5, $9}'); }

mkdir "$D/db"
"$T" gen-master-key "$D/a.key" 2>/dev/null
"$T" gen-master-key "$D/b.key" 2>/dev/null
A="file://$D/a.key"; B="file://$D/b.key"
M="$D/meta"
R="--root db=$D/db"
# Key 1 encrypts 1.sst; key 2 (after a rotation) the rest. The fill grows the log past a
# compaction, so generation 2 is current and generation 1 is kept as the previous one.
"$H" "$M" "$D/db" "$A" - write 1.sst "first table"
cp "$M/key.dict" "$D/old.dict"
"$H" "$M" "$D/db" "$A" - rotate write 2.sst "second table" fill 600 write 3.sst "third table" \
    write LOG "log line"
G1=filedict-0000000000000001
G2=filedict-0000000000000002
for f in $G1.snap $G1.log $G2.snap $G2.log key.dict key.dict.bak; do
    [ -f "$M/$f" ] || fail "setup: $M/$f missing (no previous generation?)"
done
[ -f "$M/filedict-0000000000000003.snap" ] && fail "setup: a third generation"

# salvage NAME WANT_RC: copies meta to NAME (damaged by the caller through $DAMAGE), salvages
# it to NAME.out and checks DIR is unchanged.
salvage() {
    name=$1; want=$2; shift 2
    snap "$D/$name" >"$D/$name.before"
    expect "$want" "$T" salvage "$D/$name" "$D/$name.out" -k "$A" $R "$@"
    cp "$D/out" "$D/$name.report"
    cp "$D/err" "$D/$name.stderr"
    snap "$D/$name" >"$D/$name.after"
    checks=$((checks + 1))
    cmp -s "$D/$name.before" "$D/$name.after" || fail "$name: salvage changed DIR"
    checks=$((checks + 1))
    ls -d "$D/$name.out".salvage-* >/dev/null 2>&1 && fail "$name: a temporary directory was left"
    if [ "$want" -eq 0 ] || [ "$want" -eq 9 ]; then
        checks=$((checks + 1))
        [ "$(stat -c %a "$D/$name.out")" = 700 ] || fail "$name: DEST mode $(stat -c %a "$D/$name.out")"
        for f in "$D/$name.out"/*; do
            checks=$((checks + 1))
            [ "$(stat -c %a "$f")" = 600 ] || fail "$name: $f mode $(stat -c %a "$f")"
        done
    else
        checks=$((checks + 1))
        [ -e "$D/$name.out" ] && fail "$name: DEST written although salvage failed"
    fi
    return 0
}
copy() { rm -rf "$D/$1" "$D/$1.out"; cp -a "$M" "$D/$1"; }
# reads FILE back through the salvaged directory NAME.out and compares it with TEXT
reads() {
    expect 0 "$T" cat "$D/$1.out" "$D/db/$2" -k "$A" $R
    checks=$((checks + 1))
    [ "$(cat "$D/out")" = "$3" ] || fail "$1: $2 reads back as '$(cat "$D/out")', want '$3'"
}
verifies() {
    expect 0 "$T" verify "$D/$1.out" -k "$A" $R --data-dir "$D/db"
    has "$D/out" "0 missing files, 0 missing keys"
    has "$D/out" "^OK"
}
all_read() {
    reads "$1" 1.sst "first table"
    reads "$1" 2.sst "second table"
    reads "$1" 3.sst "third table"
    reads "$1" LOG "log line"
}

# --- usage ---
expect 0 "$T" salvage --help
has "$D/out" "Usage: tde-ctl salvage DIR DEST"
has "$D/out" "--skip FILE"
expect 0 "$T" help salvage
expect 0 "$T" --help
has "$D/out" "salvage DIR DEST"
has "$D/out" "  9  salvage"
expect 2 "$T" salvage "$M" -k "$A"
has "$D/err" "DIR DEST"
expect 2 "$T" salvage "$M" "$D/x" -k "$A" --apply

# --- an intact directory: everything, COMPLETE ---
copy intact
salvage intact 0
has "$D/intact.report" "read          key.dict: 2 data keys"
has "$D/intact.report" "read          $G2.snap"
has "$D/intact.report" "2 data keys (2 in both copies"
has "$D/intact.report" "^COMPLETE"
verifies intact
all_read intact
# the salvaged directory is a working key manager: a host opens it read-write
"$H" "$D/intact.out" "$D/db" "$A" - write 4.sst "fourth table"
reads intact 4.sst "fourth table"
expect 5 "$T" salvage "$D/intact" "$D/intact.out" -k "$A" $R
has "$D/err" "exists already"

# --- key.dict truncated, key.dict.bak intact ---
copy trunc
truncate -s 100 "$D/trunc/key.dict"
salvage trunc 0
has "$D/trunc.report" "UNREADABLE    key.dict:"
has "$D/trunc.report" "0 only in key.dict, 2 only in key.dict.bak"
verifies trunc
all_read trunc

# --- key.dict.bak corrupt, key.dict intact ---
copy badbak
printf 'XXXXXXXX' | dd of="$D/badbak/key.dict.bak" bs=1 seek=200 conv=notrunc 2>/dev/null
salvage badbak 0
has "$D/badbak.report" "UNREADABLE    key.dict.bak:"
has "$D/badbak.report" "2 only in key.dict, 0 only in key.dict.bak"
verifies badbak
all_read badbak

# --- the copies differ (an older key.dict.bak, then an older key.dict): the union ---
copy oldbak
cp "$D/old.dict" "$D/oldbak/key.dict.bak"
salvage oldbak 0
has "$D/oldbak.report" "1 in both copies, 1 only in key.dict, 0 only in key.dict.bak"
verifies oldbak
all_read oldbak
copy olddict
cp "$D/old.dict" "$D/olddict/key.dict"
expect 4 "$T" cat "$D/olddict" "$D/db/2.sst" -k "$A" $R
has "$D/err" "which is not in key.dict"
salvage olddict 0
has "$D/olddict.report" "1 in both copies, 0 only in key.dict, 1 only in key.dict.bak"
verifies olddict
all_read olddict
# the current key is the newer copy's: new files use key 2, not key 1
"$H" "$D/olddict.out" "$D/db" "$A" - write 5.sst "fifth"
expect 0 "$T" dump "$D/olddict.out" -k "$A" $R --file "$D/db/5.sst"
K2=$(awk '{print $1}' "$D/out")
expect 0 "$T" dump "$D/olddict.out" -k "$A" $R --file "$D/db/2.sst"
has "$D/out" "^$K2 "
rm -f "$D/db/5.sst"

# --- both copies damaged, a wrong master key, a skipped copy ---
copy nokeys
truncate -s 50 "$D/nokeys/key.dict"
truncate -s 50 "$D/nokeys/key.dict.bak"
salvage nokeys 4
has "$D/nokeys.stderr" "no copy of the key dictionary opens"
has "$D/nokeys.stderr" "nothing was written"
copy wrongkey
snap "$D/wrongkey" >"$D/wk.before"
expect 3 "$T" salvage "$D/wrongkey" "$D/wrongkey.out" -k "$B" $R
has "$D/err" "wrong master key\|GCM tag\|TDE_ERR_AUTH"
[ -e "$D/wrongkey.out" ] && fail "wrong key: DEST written"
copy skip
salvage skip 0 --skip key.dict.bak
has "$D/skip.report" "key.dict.bak: skipped as asked"
has "$D/skip.report" "2 only in key.dict"

# --- a torn log tail (an append that never returned): not a loss ---
copy torn
printf 'R\001\020\000\357\377\000\000abc' >>"$D/torn/$G2.log"
salvage torn 0
has "$D/torn.report" "torn tail     $G2.log: 11 bytes at offset"
has "$D/torn.report" "^COMPLETE"
verifies torn
all_read torn

# --- a damaged record in the middle of the log: lost, the records after it kept ---
copy midlog
off=$(grep -abo '3\.sst' "$D/midlog/$G2.log" | head -1 | cut -d: -f1)
printf 'X' | dd of="$D/midlog/$G2.log" bs=1 seek="$off" conv=notrunc 2>/dev/null
expect 3 "$T" status "$D/midlog" -k "$A" $R
has "$D/err" "tde-ctl salvage $D/midlog NEWDIR"
salvage midlog 9
has "$D/midlog.report" "LOST          $G2.log: [0-9]* bytes at offset [0-9]*: damaged records skipped"
has "$D/midlog.report" "1 damaged log ranges"
has "$D/midlog.report" "^INCOMPLETE"
reads midlog 1.sst "first table"
reads midlog 2.sst "second table"
reads midlog LOG "log line"
expect 8 "$T" is-encrypted "$D/midlog.out" "$D/db/3.sst" -k "$A" $R

# --- the newest snapshot damaged, the previous generation intact: nothing lost ---
copy snap
printf 'XXXX' | dd of="$D/snap/$G2.snap" bs=1 seek=60 conv=notrunc 2>/dev/null
salvage snap 0
has "$D/snap.report" "UNREADABLE    $G2.snap"
has "$D/snap.report" "read          $G1.snap"
has "$D/snap.report" "read          $G1.log"
has "$D/snap.report" "previous generation provably holds all of it"
verifies snap
all_read snap

# --- ... and the previous generation's log damaged too: what is left, INCOMPLETE ---
copy snaplog
printf 'XXXX' | dd of="$D/snaplog/$G2.snap" bs=1 seek=60 conv=notrunc 2>/dev/null
off=$(grep -abo '1\.sst' "$D/snaplog/$G1.log" | head -1 | cut -d: -f1)
printf 'X' | dd of="$D/snaplog/$G1.log" bs=1 seek="$off" conv=notrunc 2>/dev/null
salvage snaplog 9
has "$D/snaplog.report" "LOST          $G1.log"
has "$D/snaplog.report" "entries may be missing"
reads snaplog 2.sst "second table"
reads snaplog 3.sst "third table"

# --- a key lost from both copies: its files are named, and stay unreadable ---
copy lostkey
cp "$D/old.dict" "$D/lostkey/key.dict"
cp "$D/old.dict" "$D/lostkey/key.dict.bak"
salvage lostkey 9
has "$D/lostkey.report" "MISSING KEY   db/2.sst uses key"
has "$D/lostkey.report" "MISSING KEY   db/LOG uses key"
hasnt "$D/lostkey.report" "MISSING KEY   db/1.sst"
has "$D/lostkey.report" "3 of them with a lost key"
reads lostkey 1.sst "first table"
expect 4 "$T" cat "$D/lostkey.out" "$D/db/2.sst" -k "$A" $R
has "$D/err" "db/2.sst uses data key [0-9a-f]*, which is not in key.dict"
expect 1 "$T" verify "$D/lostkey.out" -k "$A" $R --data-dir "$D/db"
has "$D/out" "MISSING KEY   db/2.sst"

finish
