/*
 * SM4's 32 rounds on two byte-sliced groups of 64 blocks (GFNI + AVX-512F),
 * for the 128-block batches of sm4_gfni_avx512.c:
 *
 *   void tde_sm4_bs_rounds(__m512i st[2][16], const uint32_t rkb[128],
 *                          const uint64_t mats[2]);
 *
 * st[g][4w + j] holds byte j (0 = least significant) of word w of the 64
 * blocks of group g, premapped (below): counters in, X32..X35 out, in place.
 * rkb[4i + j] is PRE (byte j of round key i) + pre_c in all four bytes, mats
 * the GF2P8AFFINEINVQB matrices BS_M0 and BS_M1 (sm4_consts.h; derived in
 * tools/sm4_sbox/sm4_sbox.py, explained in docs/ciphers.md). It reads and
 * writes nothing else (no caller data: ASan does not see inside).
 *
 * The state is premapped, z = PRE x on every byte (PRE's linear part), so
 * that the S-box input PRE t + pre_c = z1 + z2 + z3 + rkb needs no
 * GF2P8AFFINEQB, and the two GF2P8AFFINEINVQB matrices give P0 = PRE C0 S and
 * P1 = PRE C1 S; L's rotations by 8, 16, 24 are the choice of byte register
 * and its rotation by 2 is in C0, C1:
 *   new_j = z0_j + P0_j + P0_j+1 + P1_j + (P1_0 + P1_1 + P1_2 + P1_3).
 * Rounds go in pairs sharing s = z2 + z3. Per group and round: 8 GFNI and
 * 16 other vector instructions (word-sliced: 24 GFNI or rotations and 20
 * others for the same 64 blocks).
 *
 * Registers: a group's state is 16 registers and a round of one group is a
 * dependent chain (about 12 cycles); two groups in flight hide it, but 32
 * registers do not hold two states. So each new word is stored once and only
 * the two newest words of each group stay in registers, the older two being
 * memory operands (load ports, not vector ALU ones):
 *   zmm0-7    group 0: z2 then z3 (an even round leaves its new word in
 *             zmm0-3 and s in zmm4-7, the odd one its new word in zmm4-7);
 *   zmm8-15   group 1, the same;
 *   zmm16-19  T: the S-box input with the round key, then P0;
 *   zmm20-23  P1; zmm24 the sum of the P1;
 *   zmm30-31  BS_M0, BS_M1.
 * T, P1 and the sum are shared by the groups (renaming still lets their
 * rounds overlap; measured: no gain from separate ones). The loop body is
 * four rounds: the registers repeat every two, the words in memory every four
 * (unrolled 32 rounds were 16 KiB of code and thrashed the instruction cache
 * beside the word-sliced path).
 */
#if defined(__x86_64__)
#include "cipher/sm4_consts.h"

        .intel_syntax noprefix
        .altmacro
        .text

/*
 * The S-box input T_j = z1_j + z2_j + z3_j + rkb[4r + j], rounds in pairs that
 * share s = z2 + z3: an even round makes s (over z3, which is in memory too)
 * and takes z1 from memory; the odd one after it adds its z3, the word the
 * even round made.
 */
.macro SBOX_IN_EVEN t, o, n, key, z1
        vpxord zmm\n, zmm\n, zmm\o
        vpbroadcastd zmm\t, DWORD PTR [rsi + \key]
        vpternlogd zmm\t, zmm\n, ZMMWORD PTR [rdi + \z1], 0x96
.endm

.macro SBOX_IN_ODD t, s, z3, key
        vpbroadcastd zmm\t, DWORD PTR [rsi + \key]
        vpternlogd zmm\t, zmm\s, zmm\z3, 0x96
.endm

/* P1 = PRE C1 S(T) into f, P0 = PRE C0 S(T) over T. */
.macro SBOX_OUT f, t
        vgf2p8affineinvqb zmm\f, zmm\t, zmm31, SM4_GFNI_BS_M1_CONST
        vgf2p8affineinvqb zmm\t, zmm\t, zmm30, SM4_GFNI_BS_M0_CONST
.endm

/* o = z0_j + P0_j + P0_j+1 (z0: the word this round replaces). */
.macro ADD_P0 o, p, q, z0
        vmovdqa64 zmm\o, ZMMWORD PTR [rdi + \z0]
        vpternlogd zmm\o, zmm\p, zmm\q, 0x96
.endm

/* zmm24 = the sum of the four P1. */
.macro SUM_P1
        vpxord zmm24, zmm20, zmm21
        vpternlogd zmm24, zmm22, zmm23, 0x96
.endm

/* + P1_j + sum P1: the new word, stored over z0. */
.macro FINISH o, f, z0
        vpternlogd zmm\o, zmm\f, zmm24, 0x96
        vmovdqa64 ZMMWORD PTR [rdi + \z0], zmm\o
.endm

/*
 * One round of group g, whose registers a..a+3 and a+4..a+7 hold z2 and z3 at
 * even rounds; an even round leaves the new word in the first four and s in
 * the others, the odd round after it its new word there.
 */
.macro ROUND_G g, r, a
        .if r % 2 == 0
        .irp j, 0, 1, 2, 3
        SBOX_IN_EVEN %(16 + j), %(a + j), %(a + 4 + j), %(4 * (4 * r + j)), %(1024 * g + 64 * (4 * ((r + 1) % 4) + j))
        .endr
        .set dst, a
        .else
        .irp j, 0, 1, 2, 3
        SBOX_IN_ODD %(16 + j), %(a + 4 + j), %(a + j), %(4 * (4 * r + j))
        .endr
        .set dst, a + 4
        .endif
        .irp j, 0, 1, 2, 3
        SBOX_OUT %(20 + j), %(16 + j)
        .endr
        .irp j, 0, 1, 2, 3
        ADD_P0 %(dst + j), %(16 + j), %(16 + ((j + 1) % 4)), %(1024 * g + 64 * (4 * (r % 4) + j))
        .endr
        SUM_P1
        .irp j, 0, 1, 2, 3
        FINISH %(dst + j), %(20 + j), %(1024 * g + 64 * (4 * (r % 4) + j))
        .endr
.endm

/*
 * Round r of the word-sliced group (word w of its 16 blocks in st row 32 + w,
 * premapped too; rkw: round keys with premapped bytes): the same matrices,
 * and L's byte moves as rotations, new = z0 + P0 + (P0 + P1 >>> 8) + P1 >>>
 * 16 + P1 >>> 24. zmm25 holds the newest word, zmm26-29 are scratch.
 */
.macro WS_ROUND r
        WS_ROUND1 %(2048 + 64 * (r % 4)), %(2048 + 64 * ((r + 1) % 4)), %(2048 + 64 * ((r + 2) % 4)), %(4 * r)
.endm

.macro WS_ROUND1 z0, z1, z2, key
        vmovdqa64 zmm28, ZMMWORD PTR [rdi + \z2]
        vpbroadcastd zmm26, DWORD PTR [rcx + \key]
        vpternlogd zmm26, zmm28, ZMMWORD PTR [rdi + \z1], 0x96
        vpxord zmm26, zmm26, zmm25
        vgf2p8affineinvqb zmm27, zmm26, zmm31, SM4_GFNI_BS_M1_CONST
        vgf2p8affineinvqb zmm26, zmm26, zmm30, SM4_GFNI_BS_M0_CONST
        vprord zmm28, zmm26, 8
        vprord zmm29, zmm27, 8
        vpternlogd zmm28, zmm26, zmm29, 0x96
        vprord zmm29, zmm27, 16
        vprord zmm27, zmm27, 24
        vmovdqa64 zmm25, ZMMWORD PTR [rdi + \z0]
        vpternlogd zmm25, zmm28, zmm29, 0x96
        vpxord zmm25, zmm25, zmm27
        vmovdqa64 ZMMWORD PTR [rdi + \z0], zmm25
.endm

/* Round r of both groups, and of the word-sliced one if @p ws. */
.macro ROUND r, ws
        ROUND_G 0, r, 0
        .if ws
        WS_ROUND r
        .endif
        ROUND_G 1, r, 8
.endm

/* Loads word w of group g into registers reg..reg+3. */
.macro LOAD g, w, reg
        .irp j, 0, 1, 2, 3
        LOAD1 %(reg + j), %(1024 * g + 64 * (4 * w + j))
        .endr
.endm

.macro LOAD1 reg, off
        vmovdqa64 zmm\reg, ZMMWORD PTR [rdi + \off]
.endm

/* The kernel, with the word-sliced group if @p ws (its round keys in rcx). */
.macro KERNEL name, ws
        .globl \name
        .hidden \name
        .type \name, @function
        .p2align 6
\name:
        endbr64
        vpbroadcastq zmm30, QWORD PTR [rdx]
        vpbroadcastq zmm31, QWORD PTR [rdx + 8]
        .irp g, 0, 1
        LOAD g, 2, %(8 * g)
        LOAD g, 3, %(8 * g + 4)
        .endr
        .if ws
        vmovdqa64 zmm25, ZMMWORD PTR [rdi + 2048 + 64 * 3]
        .endif
        /* Eight times four rounds: the pattern of registers and words repeats every four. */
        mov eax, 8
1:
        ROUND 0, ws
        ROUND 1, ws
        ROUND 2, ws
        ROUND 3, ws
        add rsi, 64
        .if ws
        add rcx, 16
        .endif
        dec eax
        jnz 1b
        vzeroupper
        ret
        .size \name, . - \name
.endm

        KERNEL tde_sm4_bs_rounds, 0
        KERNEL tde_sm4_bs_rounds_ws, 1

#endif
        .section .note.GNU-stack, "", @progbits
