#!/usr/bin/python3
"""Prints "id method hexkey" for every data key in a libtde key.dict, reading it
independently of libtde from docs/formats.md ("Sealed buffer", "Wrapped data
key", "Key dictionary"), with a `file` master key. Usage: keydict_keys.py KEY.DICT MASTER.KEY"""
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def main():
    rec = open(sys.argv[1], "rb").read()
    master = bytes.fromhex(open(sys.argv[2]).read().strip())
    assert rec[:4] == b"TDEE" and rec[5] == 5, "not a key-dictionary sealed buffer"
    (w,) = struct.unpack(">I", rec[8:12])
    wrapped = rec[12:12 + w]
    iv = rec[12 + w:24 + w]
    (length,) = struct.unpack(">Q", rec[24 + w:32 + w])
    body = rec[32 + w:32 + w + length + 16]
    # The embedded wrapped data key: prefix, provider name, key id, blob.
    p = wrapped[8]
    (k,) = struct.unpack(">H", wrapped[9 + p:11 + p])
    (b,) = struct.unpack(">I", wrapped[11 + p + k:15 + p + k])
    blob = wrapped[15 + p + k:15 + p + k + b]
    dk = AESGCM(master).decrypt(blob[:12], blob[12:], wrapped[:11 + p + k])
    plain = AESGCM(dk).decrypt(iv, body, rec[:8] + struct.pack(">Q", length))
    assert plain[:4] == b"TKDP"
    (n,) = struct.unpack("<I", plain[56:60])
    off = 64
    for _ in range(n):
        kid, _created, method, klen = struct.unpack("<QQBB", plain[off:off + 18])
        print(kid, method, plain[off + 20:off + 20 + klen].hex())
        off += 20 + klen


main()
