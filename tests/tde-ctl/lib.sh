# The prologue of the tde-ctl test scripts, sourced by each: . "$(dirname "$0")/lib.sh"
# A scratch directory $D (kept when KEEP is set), a background $HOLDER killed at exit, and
# the counted checks; a script ends with `finish`.
D=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX")
HOLDER=
cleanup() {
    [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null
    rm -rf "$D"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
fails=0
checks=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect RC CMD...: runs CMD, stdout to $D/out, stderr to $D/err, checks the exit code.
expect() {
    want=$1; shift
    checks=$((checks + 1))
    set +e; "$@" >"$D/out" 2>"$D/err"; rc=$?; set -e
    [ "$rc" -eq "$want" ] || { fail "exit $rc, want $want: $*"; sed 's/^/  stdout: /' "$D/out"; sed 's/^/  stderr: /' "$D/err"; }
}
# has FILE PATTERN / hasnt FILE PATTERN: grep, counted as one check.
has() { checks=$((checks + 1)); grep -q -- "$2" "$1" || { fail "$1 lacks '$2'"; sed 's/^/  /' "$1"; }; }
hasnt() { checks=$((checks + 1)); ! grep -q -- "$2" "$1" || { fail "$1 has '$2'"; sed 's/^/  /' "$1"; }; }
# The last line of every script: the counts, and its exit status.
finish() {
    echo "$checks checks, $fails failures"
    [ "$fails" -eq 0 ]
}
