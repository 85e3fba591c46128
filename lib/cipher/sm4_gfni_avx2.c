/*
 * SM4-CTR with GFNI and AVX2: up to 72 blocks in flight as 9 groups of 8, each
 * group held transposed (register w holds word w of 8 blocks). The S-box is
 * one GF2P8AFFINEQB and one GF2P8AFFINEINVQB (constants and their derivation:
 * sm4_consts.h, docs/ciphers.md). Compiled for these instructions only inside
 * this file's functions; used only when the CPU reports them.
 */
#include "cipher/sm4.h"

#ifdef SM4_HAVE_X86
#include <immintrin.h>

#include "cipher/sm4_consts.h"

#define TARGET __attribute__((target("gfni,avx2")))
#define INLINE TARGET __attribute__((always_inline)) static inline

/* The S-box on every byte: x -> A2 inv(A1 x + c1) + c2 in two instructions. */
INLINE __m256i
sbox_bytes(__m256i x)
{
    const __m256i pre = _mm256_set1_epi64x((long long)SM4_GFNI_PRE_MATRIX);
    const __m256i post = _mm256_set1_epi64x((long long)SM4_GFNI_POST_MATRIX);

    x = _mm256_gf2p8affine_epi64_epi8(x, pre, SM4_GFNI_PRE_CONST);
    return _mm256_gf2p8affineinv_epi64_epi8(x, post, SM4_GFNI_POST_CONST);
}

#include "cipher/sm4_avx2_body.h"

static bool
supports(tde_method m)
{
    __builtin_cpu_init(); /* idempotent; needed if called before constructors ran */
    return m == TDE_METHOD_SM4_CTR && __builtin_cpu_supports("gfni") &&
           __builtin_cpu_supports("avx2");
}

const cipher_backend tde_cipher_backend_sm4_gfni_avx2 = {
    .name = "sm4-gfni-avx2",
    .supports = supports,
    .key_new = sm4_key_new,
    .key_free = sm4_key_free,
    .process = process,
};

#endif
