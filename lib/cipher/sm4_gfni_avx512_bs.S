/*
 * SM4's 32 rounds on two byte-sliced groups of 64 blocks (GFNI + AVX-512F),
 * called by sm4_gfni_avx512.c for its bulk batches:
 *
 *   void tde_sm4_bs_rounds(uint8_t st[2][16][64], const uint32_t rkb[128],
 *                          const uint64_t mats[4]);
 *
 * st[g][4w + j] is byte j (0 = least significant) of word w of the 64 blocks
 * of group g, in place: counters in, X32..X35 out (64-byte aligned). rkb[4i +
 * j] is PRE (byte j of round key i) + pre_c in every byte; mats are the
 * GF2P8AFFINE matrices PRE, BS_M0, BS_M1, BS_UNMAP (sm4_consts.h, where
 * docs/ciphers.md derives them). Reads and writes only these arguments.
 *
 * The state is kept premapped, z = PRE x per byte, so that the S-box input
 * z1 + z2 + z3 + rkb is ready for GF2P8AFFINEINVQB; its two matrices give PRE
 * C0 S and PRE C1 S, from which L is XORs of byte registers:
 *   new_j = z0_j + P0_j + P0_j+1 + P1_j + (P1_0 + P1_1 + P1_2 + P1_3).
 * 8 GFNI and 18 other vector instructions per group and round.
 *
 * Registers: a group's state is 1 KiB, 16 registers; two of them (needed to
 * hide a round's latency, one group's round is a dependent chain) would not
 * fit. So each word is stored once, when computed, and its two newest words
 * stay in registers: three sets of four per group (the newest, the one
 * before, and the set the next word goes into), rotating every round:
 *   zmm0-11   group 0's sets, zmm12-23 group 1's;
 *   zmm24-27  T: the S-box input, then P0 (shared by the groups: renaming
 *             lets the groups' rounds overlap all the same);
 *   zmm29     the sum of the P1; zmm30, zmm31 BS_M0, BS_M1; zmm28 PRE or
 *             BS_UNMAP at the start and the end.
 * The two older words and the round key are memory operands (load ports, not
 * vector ALU ones). Fully unrolled: the register rotation (period 3) and the
 * word in memory (period 4) are assembly-time constants.
 */
#include "cipher/sm4_consts.h"

        .intel_syntax noprefix
        .altmacro
        .text

/* T_j = z2_j + rkb[4r + j] + z1_j (o: z2, the older register word; z1 from memory). */
.macro SBOX_IN t, o, n, r, j, z1
        vpxord zmm\t, zmm\o, DWORD PTR [rsi + 4 * (4 * \r + \j)]{1to16}
        vpternlogd zmm\t, zmm\n, ZMMWORD PTR [rdi + \z1], 0x96
.endm

/* One round of group g: r the round, o/n/f the first registers of the three sets. */
.macro ROUND_G g, r, o, n, f
        .irp j, 0, 1, 2, 3
        SBOX_IN %(24 + j), %(o + j), %(n + j), r, j, %(1024 * g + 64 * (4 * ((r + 1) % 4) + j))
        .endr
        .irp j, 0, 1, 2, 3
        SBOX_OUT %(f + j), %(24 + j)
        .endr
        SUM_P1 %(f), %(f + 1), %(f + 2), %(f + 3)
        .irp j, 0, 1, 2, 3
        COMBINE %(f + j), %(1024 * g + 64 * (4 * (r % 4) + j))
        .endr
        .irp j, 0, 1, 2, 3
        FINISH %(f + j), %(24 + j), %(24 + ((j + 1) % 4)), %(1024 * g + 64 * (4 * (r % 4) + j))
        .endr
.endm

/* P1 = PRE C1 S(T) into f, P0 = PRE C0 S(T) over T. */
.macro SBOX_OUT f, t
        vgf2p8affineinvqb zmm\f, zmm\t, zmm31, SM4_GFNI_BS_M1_CONST
        vgf2p8affineinvqb zmm\t, zmm\t, zmm30, SM4_GFNI_BS_M0_CONST
.endm

.macro SUM_P1 a, b, c, d
        vpxord zmm29, zmm\a, zmm\b
        vpternlogd zmm29, zmm\c, zmm\d, 0x96
.endm

/* P1_j + sum P1 + z0_j (z0 the word this round replaces). */
.macro COMBINE f, z0
        vpternlogd zmm\f, zmm29, ZMMWORD PTR [rdi + \z0], 0x96
.endm

/* + P0_j + P0_j+1: the new word, stored over z0. */
.macro FINISH f, p, q, z0
        vpternlogd zmm\f, zmm\p, zmm\q, 0x96
        vmovdqa64 ZMMWORD PTR [rdi + \z0], zmm\f
.endm

.macro ROUND r
        ROUND_G 0, r, %(4 * (r % 3)), %(4 * ((r + 1) % 3)), %(4 * ((r + 2) % 3))
        ROUND_G 1, r, %(12 + 4 * (r % 3)), %(12 + 4 * ((r + 1) % 3)), %(12 + 4 * ((r + 2) % 3))
.endm

/* Maps word w of group g through zmm28 into registers reg..reg+3 and back to st. */
.macro MAP g, w, reg
        .irp j, 0, 1, 2, 3
        MAP1 %(reg + j), %(1024 * g + 64 * (4 * w + j))
        .endr
.endm

.macro MAP1 reg, off
        vmovdqa64 zmm\reg, ZMMWORD PTR [rdi + \off]
        vgf2p8affineqb zmm\reg, zmm\reg, zmm28, 0
        vmovdqa64 ZMMWORD PTR [rdi + \off], zmm\reg
.endm

        .globl tde_sm4_bs_rounds
        .hidden tde_sm4_bs_rounds
        .type tde_sm4_bs_rounds, @function
        .p2align 6
tde_sm4_bs_rounds:
        endbr64
        vpbroadcastq zmm28, QWORD PTR [rdx]
        vpbroadcastq zmm30, QWORD PTR [rdx + 8]
        vpbroadcastq zmm31, QWORD PTR [rdx + 16]
        /* Into the premapped form; X2, X3 stay in sets 0 and 1 (round 0's o and n). */
        MAP 0, 0, 8
        MAP 0, 1, 8
        MAP 0, 2, 0
        MAP 0, 3, 4
        MAP 1, 0, 20
        MAP 1, 1, 20
        MAP 1, 2, 12
        MAP 1, 3, 16
        .set rnd, 0
        .rept 32
        ROUND %rnd
        .set rnd, rnd + 1
        .endr
        /* Back from the premapped form. */
        vpbroadcastq zmm28, QWORD PTR [rdx + 24]
        .irp w, 0, 1, 2, 3
        MAP 0, w, 0
        MAP 1, w, 4
        .endr
        vzeroupper
        ret
        .size tde_sm4_bs_rounds, . - tde_sm4_bs_rounds

        .section .note.GNU-stack, "", @progbits
