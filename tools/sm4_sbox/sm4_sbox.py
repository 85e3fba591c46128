#!/usr/bin/python3
"""Derives the constants libtde's vectorised SM4 paths use and checks them.

SM4's S-box is S(x) = A2 * inv_sm4(A1 * x + c1) + c2, where inv_sm4 is
inversion in GF(2^8) modulo SM4's polynomial x^8+x^7+x^6+x^5+x^4+x^2+1 and
A1, A2, c1, c2 are an affine map over GF(2). An isomorphism phi from SM4's
field onto the AES field (modulus x^8+x^4+x^3+x+1) turns that inversion into
the AES one: inv_sm4(y) = phi^-1(inv_aes(phi(y))). So

    S(x) = (A2 phi^-1) * inv_aes((phi A1) * x + phi(c1)) + c2

which GFNI computes with one GF2P8AFFINEQB and one GF2P8AFFINEINVQB, and
AES-NI with AESENCLAST (whose SubBytes is the AES affine map after inv_aes)
between two nibble-table affine maps.

Usage: sm4_sbox.py            print lib/cipher/sm4_consts.h
       sm4_sbox.py --check H  exit 1 unless H holds exactly what this derives
Every step is checked on all 256 inputs against the S-box table of
GB/T 32907-2016 (table 1).
"""
import sys

# GB/T 32907-2016, table 1 (the SM4 S-box).
SBOX = bytes.fromhex(
    "d690e9fecce13db716b614c228fb2c052b679a762abe04c3aa44132649860699"
    "9c4250f491ef987a33540b43edcfac62e4b31ca9c908e89580df94fa758f3fa6"
    "4707a7fcf37317ba83593c19e6854fa8686b81b27164da8bf8eb0f4b70569d35"
    "1e240e5e6358d1a225227c3b01217887d40046579fd327524c3602e7a0c4c89e"
    "eabf8ad240c738b5a3f7f2cef96115a1e0ae5da49b341a55ad933230f58cb1e3"
    "1df6e22e8266ca60c02923ab0d534e6fd5db3745defd8e2f03ff6a726d6c5b51"
    "8d1baf92bbddbc7f11d95c411f105ad80ac13188a5cd7bbd2d74d012b8e5b4b0"
    "8969974a0c96777e65b9f109c56ec68418f07dec3adc4d2079ee5f3ed7cb3948")

SM4_POLY = 0x1F5  # x^8+x^7+x^6+x^5+x^4+x^2+1
AES_POLY = 0x11B  # x^8+x^4+x^3+x+1


def gmul(a, b, poly):
    r = 0
    while b:
        if b & 1:
            r ^= a
        a <<= 1
        if a & 0x100:
            a ^= poly
        b >>= 1
    return r


def ginv(a, poly):
    if a == 0:
        return 0  # the S-box convention: 0 maps to 0
    r = 1
    for _ in range(254):  # a^254 = a^-1
        r = gmul(r, a, poly)
    return r


def parity(v):
    return bin(v).count("1") & 1


# An 8x8 matrix over GF(2) is a list of 8 row masks; row i gives output bit i.
def mat_apply(m, x):
    return sum(parity(m[i] & x) << i for i in range(8))


def mat_from_func(f):
    """The matrix of a GF(2)-linear byte map f (column j is f(1 << j))."""
    return [sum(((f(1 << j) >> i) & 1) << j for j in range(8)) for i in range(8)]


def mat_mul(a, b):
    return mat_from_func(lambda x: mat_apply(a, mat_apply(b, x)))


def mat_inv(m):
    table = {mat_apply(m, x): x for x in range(256)}
    assert len(table) == 256, "singular matrix"
    return mat_from_func(lambda y: table[y])


def circulant(row0):
    """SM4's affine matrix: output bit 7 uses row0, each next lower bit the row rotated right."""
    rows = [0] * 8
    r = row0
    for i in range(7, -1, -1):
        rows[i] = r
        r = ((r >> 1) | (r << 7)) & 0xFF
    return rows


def fail(msg):
    sys.stderr.write("sm4_sbox: %s\n" % msg)
    sys.exit(1)


# SM4's affine map (A1 = A2 = A, c1 = c2 = 0xd3, as in published algebraic
# analyses of SM4), checked below against the table, not trusted.
A = circulant(0xD3)
C = 0xD3
for x in range(256):
    if mat_apply(A, ginv(mat_apply(A, x) ^ C, SM4_POLY)) ^ C != SBOX[x]:
        fail("S(x) = A inv(A x + c) + c fails at x=%#04x" % x)

# phi: the smallest root beta in the AES field of SM4's polynomial; phi maps
# x^i to beta^i (a ring map because beta satisfies the same polynomial).
def poly_eval(poly, beta):
    r = 0
    for i in range(8, -1, -1):
        r = gmul(r, beta, AES_POLY) ^ ((poly >> i) & 1)
    return r


beta = next(b for b in range(2, 256) if poly_eval(SM4_POLY, b) == 0)
powers = [1]
for _ in range(7):
    powers.append(gmul(powers[-1], beta, AES_POLY))
PHI = mat_from_func(lambda x: powers[x.bit_length() - 1])  # x is 1 << j here
PHI_INV = mat_inv(PHI)
for a in range(256):
    if ginv(a, SM4_POLY) != mat_apply(PHI_INV, ginv(mat_apply(PHI, a), AES_POLY)):
        fail("phi is not a field isomorphism at %#04x" % a)

# GFNI: y = PRE x + pre_c (GF2P8AFFINEQB), then S = POST inv_aes(y) + C (GF2P8AFFINEINVQB).
PRE = mat_mul(PHI, A)
PRE_C = mat_apply(PHI, C)
POST = mat_mul(A, PHI_INV)


def gfni_qword(m):
    """GF2P8AFFINEQB's matrix operand: output bit i uses byte 7 - i of the qword."""
    return sum(m[i] << (8 * (7 - i)) for i in range(8))


def gfni_affine(x, qword, imm, inverse):
    if inverse:
        x = ginv(x, AES_POLY)
    return sum((parity(((qword >> (8 * (7 - i))) & 0xFF) & x) ^ ((imm >> i) & 1)) << i
               for i in range(8))


GFNI_PRE, GFNI_POST = gfni_qword(PRE), gfni_qword(POST)
for x in range(256):
    y = gfni_affine(x, GFNI_PRE, PRE_C, False)
    if gfni_affine(y, GFNI_POST, C, True) != SBOX[x]:
        fail("GFNI form fails at x=%#04x" % x)

# AES-NI: AESENCLAST's SubBytes is sb(y) = AFF inv_aes(y) + 0x63, so
# S = (POST AFF^-1) sb(y) + (POST AFF^-1 0x63 + C). Both affine maps become two
# 16-entry tables (low and high nibble, constant folded into the low one).
def rotl8(x, r):
    return ((x << r) | (x >> (8 - r))) & 0xFF


AFF = mat_from_func(lambda x: x ^ rotl8(x, 1) ^ rotl8(x, 2) ^ rotl8(x, 3) ^ rotl8(x, 4))
POST_AES = mat_mul(POST, mat_inv(AFF))
POST_AES_C = mat_apply(POST_AES, 0x63) ^ C


def nibble_tables(m, c):
    return ([mat_apply(m, n) ^ c for n in range(16)], [mat_apply(m, n << 4) for n in range(16)])


PRE_LO, PRE_HI = nibble_tables(PRE, PRE_C)
POST_LO, POST_HI = nibble_tables(POST_AES, POST_AES_C)


def aes_sbox(y):
    return mat_apply(AFF, ginv(y, AES_POLY)) ^ 0x63


for x in range(256):
    y = PRE_LO[x & 15] ^ PRE_HI[x >> 4]
    s = aes_sbox(y)
    if POST_LO[s & 15] ^ POST_HI[s >> 4] != SBOX[x]:
        fail("AES-NI form fails at x=%#04x" % x)


# Byte-sliced form (one register per byte of a word, sm4_gfni_avx512_bs.S):
# with y_j byte j (0 = least significant) of y = S(t), and bytes indexed mod 4,
#   L(y)_j = C0 (y_j + y_j+1) + C1 (y_j+1 + y_j+2 + y_j+3)
# where C0 b = b + (b << 2), C1 b = b <<< 2 (on the byte): L's rotations by 8,
# 16 and 24 become the choice of byte register. The kernel keeps the state
# premapped, z = PRE x bytewise (PRE's linear part): then the round input
# PRE t + pre_c = z1 + z2 + z3 + (PRE rk + pre_c) needs no GF2P8AFFINEQB, and
# PRE C0 S, PRE C1 S are two GF2P8AFFINEINVQB matrices (POST and C folded
# in). PRE^-1 maps the state back after the last round.
C0 = mat_from_func(lambda b: b ^ ((b << 2) & 0xFF))
C1 = mat_from_func(lambda b: rotl8(b, 2))
BS_M0 = gfni_qword(mat_mul(PRE, mat_mul(C0, POST)))
BS_C0 = mat_apply(PRE, mat_apply(C0, C))
BS_M1 = gfni_qword(mat_mul(PRE, mat_mul(C1, POST)))
BS_C1 = mat_apply(PRE, mat_apply(C1, C))
BS_UNMAP = gfni_qword(mat_inv(PRE))


def rotl32(x, r):
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF


for x in range(256):
    z = gfni_affine(x, GFNI_PRE, 0, False)  # the premapped byte
    if gfni_affine(z, BS_UNMAP, 0, False) != x:
        fail("byte-sliced unmapping fails at x=%#04x" % x)
    u = z ^ PRE_C  # what the round feeds the S-box, key folded in
    if (gfni_affine(u, BS_M0, BS_C0, True) != mat_apply(PRE, mat_apply(C0, SBOX[x]))
            or gfni_affine(u, BS_M1, BS_C1, True) != mat_apply(PRE, mat_apply(C1, SBOX[x]))):
        fail("byte-sliced matrices fail at x=%#04x" % x)
for j in range(4):
    for bit in range(8):  # L is linear: check it on every basis vector of byte j
        y = 1 << (8 * j + bit)
        want = y ^ rotl32(y, 2) ^ rotl32(y, 10) ^ rotl32(y, 18) ^ rotl32(y, 24)
        yb = [(y >> (8 * k)) & 0xFF for k in range(4)]
        got = 0
        for k in range(4):
            b = mat_apply(C0, yb[k]) ^ mat_apply(C0, yb[(k + 1) % 4])
            for d in (1, 2, 3):
                b ^= mat_apply(C1, yb[(k - d) % 4])
            got |= b << (8 * k)
        if got != want:
            fail("byte-sliced L fails on bit %d" % (8 * j + bit))


def c_bytes(vals):
    return ", ".join("0x%02x" % v for v in vals)


HEADER = """/*
 * Generated by tools/sm4_sbox/sm4_sbox.py (which checks every value on all 256
 * inputs); a ctest test fails if this file and the script disagree. See
 * docs/ciphers.md, "SM4 fast paths".
 */
#ifndef TDE_LIB_CIPHER_SM4_CONSTS_H
#define TDE_LIB_CIPHER_SM4_CONSTS_H

/* GF2P8AFFINEQB matrix and constant: x -> phi(A x + c). */
#define SM4_GFNI_PRE_MATRIX 0x%016xULL
#define SM4_GFNI_PRE_CONST 0x%02x
/* GF2P8AFFINEINVQB matrix and constant: y -> A phi^-1 inv_aes(y) + c. */
#define SM4_GFNI_POST_MATRIX 0x%016xULL
#define SM4_GFNI_POST_CONST 0x%02x
/*
 * Byte-sliced path (state premapped by PRE's linear part): GF2P8AFFINEINVQB
 * giving PRE C0 S and PRE C1 S, and GF2P8AFFINEQB's PRE^-1 (docs/ciphers.md).
 */
#define SM4_GFNI_BS_M0_MATRIX 0x%016xULL
#define SM4_GFNI_BS_M0_CONST 0x%02x
#define SM4_GFNI_BS_M1_MATRIX 0x%016xULL
#define SM4_GFNI_BS_M1_CONST 0x%02x
#define SM4_GFNI_BS_UNMAP_MATRIX 0x%016xULL

/* AES-NI path: nibble tables of the affine maps before and after AESENCLAST. */
#define SM4_AESNI_PRE_LO %s
#define SM4_AESNI_PRE_HI %s
#define SM4_AESNI_POST_LO %s
#define SM4_AESNI_POST_HI %s

/* The S-box of GB/T 32907-2016, table 1 (for the key schedule). */
#define SM4_SBOX_TABLE %s

#endif
""" % (GFNI_PRE, PRE_C, GFNI_POST, C, BS_M0, BS_C0, BS_M1, BS_C1, BS_UNMAP, c_bytes(PRE_LO), c_bytes(PRE_HI), c_bytes(POST_LO),
       c_bytes(POST_HI), c_bytes(SBOX))


def normalise(text):
    return " ".join(text.replace("\\\n", " ").split())


if len(sys.argv) == 3 and sys.argv[1] == "--check":
    with open(sys.argv[2]) as f:
        if normalise(f.read()) != normalise(HEADER):
            fail("%s differs from the derived constants; regenerate it with %s"
                 % (sys.argv[2], sys.argv[0]))
    print("sm4_sbox: all 256 inputs agree in both forms; %s matches (beta=%#04x)"
          % (sys.argv[2], beta))
elif len(sys.argv) == 1:
    sys.stdout.write(HEADER)
else:
    fail("usage: sm4_sbox.py [--check lib/cipher/sm4_consts.h]")
