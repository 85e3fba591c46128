#!/usr/bin/env bash
# Runs KMIP test programs against Debian's PyKMIP server on 127.0.0.1:
#   run_pykmip.sh TEST_PROGRAM...
# Makes certificates (gen_certs.sh), starts the server on a free port, waits for
# the port (bounded), runs each program with KMIP_PORT and KMIP_CERTS set, and
# always stops the server by its own process id. KEEP=1 keeps the work directory.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
SERVER=/usr/bin/pykmip-server
if [ ! -x "$SERVER" ] || [ ! -x "$PY" ]; then
    echo "python3-pykmip is not installed (./tde.sh test installs it)" >&2
    exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tde-kmip.XXXXXX")
PID=""

# Running and not a zombie (a test may have killed it; it stays a zombie until we wait).
alive() {
    kill -0 "$1" 2>/dev/null && ! awk '{ exit ($3 == "Z") ? 0 : 1 }' "/proc/$1/stat" 2>/dev/null
}

stop_server() {
    [ -n "$PID" ] || return 0
    if alive "$PID"; then
        kill -TERM "$PID" 2>/dev/null || true
        # SIGTERM takes 3-6 s; give it 15 s, then SIGKILL.
        for _ in $(seq 1 150); do
            alive "$PID" || break
            sleep 0.1
        done
        alive "$PID" && kill -KILL "$PID" 2>/dev/null
    fi
    wait "$PID" 2>/dev/null || true
    PID=""
}
cleanup() {
    local rc=$?
    stop_server
    if [ "$rc" -ne 0 ] && [ -f "$WORK/log/server.log" ]; then
        echo "--- last lines of the PyKMIP log ($WORK/log/server.log)" >&2
        tail -n 30 "$WORK/log/server.log" >&2
    fi
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/certs" "$WORK/policies" "$WORK/log" "$WORK/data"
sh "$HERE/gen_certs.sh" "$WORK/certs"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$WORK/server.conf" <<CONF
[server]
hostname=127.0.0.1
port=$PORT
certificate_path=$WORK/certs/server.crt
key_path=$WORK/certs/server.key
ca_path=$WORK/certs/ca.crt
auth_suite=TLS1.2
policy_path=$WORK/policies
enable_tls_client_auth=True
logging_level=INFO
database_path=$WORK/data/pykmip.db
CONF

(cd "$WORK" && exec "$PY" "$SERVER" --config_path "$WORK/server.conf" \
    --log_path "$WORK/log/server.log" >"$WORK/log/stdout.log" 2>&1) &
PID=$!

# The port opens about 3 s after start on a 2-core machine: poll for up to 60 s.
up=0
for _ in $(seq 1 600); do
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "PyKMIP server exited during start-up" >&2
        cat "$WORK/log/stdout.log" >&2 || true
        exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        up=1
        break
    fi
    sleep 0.1
done
[ "$up" = 1 ] || { echo "PyKMIP server did not open port $PORT within 60 s" >&2; exit 1; }
echo "PyKMIP server pid $PID on 127.0.0.1:$PORT"

# KMIP_SERVER_PID lets the last test kill the server to check behaviour in an outage.
export KMIP_PORT=$PORT KMIP_CERTS=$WORK/certs KMIP_WORK=$WORK KMIP_SERVER_PID=$PID
for prog in "$@"; do
    "$prog"
done
