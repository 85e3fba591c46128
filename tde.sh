#!/usr/bin/env bash
# libtde's two set-up commands (see README.md):
#   ./tde.sh demo   install what is missing, build, run the demo
#   ./tde.sh test   install what is missing, build, run the whole suite
#                   (normal build, ASan+UBSan build, a short libFuzzer run)
# Both are idempotent: apt-get runs only when a package is missing.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
JOBS=$(nproc)

# Debian 12 packages the build, the demo and the tests need.
PACKAGES=(
    build-essential cmake ninja-build pkg-config git procps
    clang libclang-rt-14-dev clang-format
    openssl libssl-dev libgcrypt20-dev libcmocka-dev
    librocksdb-dev rocksdb-tools
    libcurl4-openssl-dev libjansson-dev
    python3 python3-pykmip python3-botocore python3-cryptography awscli
    doxygen
)

log() { printf '==> %s\n' "$*" >&2; }

ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    # Node runs the Tencent SDK signer in the tests; a machine's own Node is kept.
    if ! command -v node >/dev/null 2>&1; then
        missing+=(nodejs npm)
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
        exit 1
    fi
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ensure_node_modules BUILD_DIR: the npm packages the tests run (the Tencent Cloud SDK's TC3
# signer, pinned by tests/cloudkms/package-lock.json) in BUILD_DIR/npm; reinstalled only
# when the lock file changes.
ensure_node_modules() {
    local dir=$1/npm lock=$ROOT/tests/cloudkms/package-lock.json
    if [ -f "$dir/node_modules/.tde-stamp" ] && cmp -s "$lock" "$dir/package-lock.json"; then
        return
    fi
    log "npm ci in $dir"
    mkdir -p "$dir"
    cp "$ROOT/tests/cloudkms/package.json" "$lock" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$dir/node_modules/.tde-stamp"
}

# build DIR [cmake options...]
build() {
    local dir=$1
    shift
    cmake -S "$ROOT" -B "$dir" -G Ninja "$@" >/dev/null
    cmake --build "$dir" -j "$JOBS"
    ensure_node_modules "$dir"
}

TOTAL_PASSED=0
TOTAL_FAILED=0
# run_ctest BUILD_DIR: runs the suite and adds its counts to the totals.
run_ctest() {
    local rc=0 line
    ctest --test-dir "$1" -j "$JOBS" --output-on-failure --timeout 900 | tee "$1/ctest.log" || rc=$?
    line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$1/ctest.log" | tail -1)
    if [[ $line =~ ([0-9]+)\ tests\ failed\ out\ of\ ([0-9]+) ]]; then
        TOTAL_FAILED=$((TOTAL_FAILED + BASH_REMATCH[1]))
        TOTAL_PASSED=$((TOTAL_PASSED + BASH_REMATCH[2] - BASH_REMATCH[1]))
    fi
    [ "$rc" -eq 0 ] || { echo "tests: $TOTAL_PASSED passed, $TOTAL_FAILED failed"; exit "$rc"; }
}

cmd_demo() {
    ensure_packages
    build "$ROOT/build"
    "$ROOT/examples/demo.sh" "$ROOT/build"
}

cmd_test() {
    ensure_packages
    log "normal build"
    build "$ROOT/build"
    run_ctest "$ROOT/build"
    log "ASan+UBSan build"
    build "$ROOT/build-asan" -DTDE_SANITIZE=address,undefined -DTDE_BUILD_BENCH=OFF
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        run_ctest "$ROOT/build-asan"
    log "libFuzzer smoke run (clang)"
    # Only the fuzzers: the rest of the tree is tested by the two builds above.
    local fuzzers=() src
    for src in "$ROOT"/fuzz/fuzz_*.c; do fuzzers+=("$(basename "$src" .c)"); done
    CC=clang CXX=clang++ cmake -S "$ROOT" -B "$ROOT/build-fuzz" -G Ninja -DTDE_FUZZ=ON \
        -DTDE_SANITIZE=address,undefined -DTDE_BUILD_BENCH=OFF >/dev/null
    cmake --build "$ROOT/build-fuzz" -j "$JOBS" --target "${fuzzers[@]}"
    local f seconds=${TDE_FUZZ_SECONDS:-10}
    for f in "$ROOT"/build-fuzz/fuzz/fuzz_*; do
        case $f in *_replay) continue ;; esac
        [ -x "$f" ] || continue
        local name corpus
        name=$(basename "$f")
        corpus=$(mktemp -d)
        cp -r "$ROOT/fuzz/corpus/${name#fuzz_}/." "$corpus/"
        log "fuzzing $name for ${seconds}s"
        "$f" -max_total_time="$seconds" -rss_limit_mb=2048 "$corpus" >"$ROOT/build-fuzz/$name.log" 2>&1 ||
            { tail -50 "$ROOT/build-fuzz/$name.log"; rm -rf "$corpus"; exit 1; }
        rm -rf "$corpus"
    done
    log "all tests passed (normal and ASan+UBSan builds, fuzz smoke)"
    echo "tests: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
}

case "${1:-}" in
demo) cmd_demo ;;
test) cmd_test ;;
deps) ensure_packages ;;
*)
    echo "usage: $0 demo|test|deps" >&2
    exit 2
    ;;
esac
