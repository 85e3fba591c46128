#!/usr/bin/env python3
"""Known-answer vectors for libtde's envelope records, made independently of libtde.

This is a second implementation of docs/formats.md ("Wrapped data key", "Small
secret", "Sealed buffer", "Sealed stream") written with Python's `cryptography`
package (AES-256-GCM) and hashlib. Fixed IVs, data keys and stream id make the
output deterministic. Run it to print the vectors pasted into
tests/unit/test_envelope.c, or with a directory argument to (re)write the fuzz
seed corpus fuzz/corpus/envelope/ (records under the plaintext-test-only provider).
"""
import hashlib
import os
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER_KEY = bytes(range(32))  # the key file 000102...1f
FILE_KEY_ID = hashlib.sha256(b"libtde key-file fingerprint v1\0" + MASTER_KEY).hexdigest()[:32]
TEST_KEY_ID = "plaintext-test-only:default"


def prefix(rtype, method, byte7):
    return b"TDEE" + bytes([1, rtype, method, byte7])


def wrap(provider, aad, pt, iv):
    if provider == "file":
        return iv + AESGCM(MASTER_KEY).encrypt(iv, pt, aad)
    check = hashlib.sha256(TEST_KEY_ID.encode() + b"\0" + len(aad).to_bytes(8, "big") + aad + pt)
    return pt + check.digest()


def wrapped(rtype, purpose, provider, ctx, pt, iv):
    key_id = FILE_KEY_ID if provider == "file" else TEST_KEY_ID
    hdr = (prefix(rtype, 0, purpose) + bytes([len(provider)]) + provider.encode()
           + len(key_id).to_bytes(2, "big") + key_id.encode())
    blob = wrap(provider, hdr + ctx, pt, iv)
    return hdr + len(blob).to_bytes(4, "big") + blob


def sealed(rtype, provider, ctx, dek, wrap_iv, iv, pt):
    w = wrapped(1, rtype, provider, ctx, dek, wrap_iv)
    p = prefix(rtype, 1, 0)
    aad = p + len(pt).to_bytes(8, "big") + ctx
    return p + len(w).to_bytes(4, "big") + w + iv + len(pt).to_bytes(8, "big") + AESGCM(dek).encrypt(iv, pt, aad)


def stream(provider, ctx, dek, wrap_iv, stream_id, seg_size, pt):
    w = wrapped(1, 4, provider, ctx, dek, wrap_iv)
    fixed = prefix(4, 1, 0) + seg_size.to_bytes(4, "big") + stream_id
    out = fixed + len(w).to_bytes(4, "big") + w
    # Non-final segments are full; the final one holds the rest (0..seg_size bytes).
    chunks = [pt[i:i + seg_size] for i in range(0, len(pt), seg_size)] or [b""]
    for i, chunk in enumerate(chunks):
        final = 1 if i == len(chunks) - 1 else 0
        nonce = b"\0\0\0" + i.to_bytes(8, "big") + bytes([final])
        aad = fixed + i.to_bytes(8, "big") + bytes([final]) + ctx
        out += AESGCM(dek).encrypt(nonce, chunk, aad)
    return out


DEK = bytes(range(0x40, 0x60))
WRAP_IV = bytes(range(0xc0, 0xcc))
IV = bytes(range(0xd0, 0xdc))
STREAM_ID = bytes(range(0xe0, 0xf0))
CTX = b"tenant=42"
PT = b"attack at dawn, bring 40 bytes of data."


def vectors(provider, ctx):
    return {
        "wrapped_key": wrapped(1, 1, provider, ctx, DEK, WRAP_IV),
        "small_secret": wrapped(3, 0, provider, ctx, b"db-password", WRAP_IV),
        "sealed_buffer": sealed(2, provider, ctx, DEK, WRAP_IV, IV, PT),
        "stream": stream(provider, ctx, DEK, WRAP_IV, STREAM_ID, 16, PT),
    }


if __name__ == "__main__":
    if len(sys.argv) > 1:
        ops = {"wrapped_key": 0, "sealed_buffer": 1, "small_secret": 2, "stream": 3}
        for name, rec in vectors("plaintext-test-only", b"").items():
            with open(os.path.join(sys.argv[1], name), "wb") as f:
                f.write(bytes([ops[name]]) + rec)
            with open(os.path.join(sys.argv[1], name + "_rewrap"), "wb") as f:
                f.write(bytes([4]) + rec)
    else:
        print("key id", FILE_KEY_ID, "plaintext", PT)
        for name, rec in vectors("file", CTX).items():
            print(name, len(rec))
            print(rec.hex())
