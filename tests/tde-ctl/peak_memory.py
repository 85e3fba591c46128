#!/usr/bin/env python3
"""Seals and opens 1 GiB through pipes (tde-ctl seal | tde-ctl open) without touching disk
for the data, checks the output's SHA-256, and requires each process's peak RSS to stay
under 16 MiB. Peak RSS is VmHWM from /proc/PID/status, polled while the data flows
(getrusage's ru_maxrss would include this Python parent's RSS, inherited across fork+exec)."""
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time

TOTAL = 1 << 30
LIMIT_KIB = 16 * 1024
tool = sys.argv[1]

with tempfile.TemporaryDirectory() as d:
    key = os.path.join(d, "m.key")
    subprocess.run([tool, "gen-master-key", key], check=True, stderr=subprocess.DEVNULL)
    uri = "file://" + key
    seal = subprocess.Popen([tool, "seal", "--quiet", "--key", uri], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    opener = subprocess.Popen([tool, "open", "--quiet", "--key", uri], stdin=seal.stdout,
                              stdout=subprocess.PIPE)
    seal.stdout.close()
    want = hashlib.sha256()

    def feed():
        block = os.urandom(1 << 20)
        for i in range(TOTAL >> 20):
            chunk = i.to_bytes(8, "big") + block[8:]
            want.update(chunk)
            seal.stdin.write(chunk)
        seal.stdin.close()

    start = time.monotonic()
    feeder = threading.Thread(target=feed)
    feeder.start()
    got = hashlib.sha256()
    n = 0
    hwm = {"seal": 0, "open": 0}

    def poll():
        for name, p in (("seal", seal), ("open", opener)):
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm[name] = max(hwm[name], int(line.split()[1]))
            except OSError:
                pass

    while True:
        buf = opener.stdout.read(1 << 20)
        if not buf:
            break
        got.update(buf)
        n += len(buf)
        if n % (64 << 20) == 0:
            poll()
    feeder.join()
    elapsed = time.monotonic() - start
    results = {}
    for name, p in (("seal", seal), ("open", opener)):
        results[name] = (p.wait(), hwm[name])
    print(f"1 GiB in {elapsed:.1f} s ({TOTAL / elapsed / 2**20:.0f} MiB/s through seal|open)")
    for name, (rc, rss) in results.items():
        print(f"{name}: exit {rc}, peak RSS {rss} KiB ({rss / 1024:.1f} MiB)")
    ok = n == TOTAL and got.digest() == want.digest()
    ok = ok and all(rc == 0 and 0 < rss < LIMIT_KIB for rc, rss in results.values())
    if n != TOTAL or got.digest() != want.digest():
        print(f"output mismatch: {n} bytes")
    sys.exit(0 if ok else 1)
