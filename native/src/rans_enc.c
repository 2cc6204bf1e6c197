/* rANS encoder: scalar reference and AVX2 kernels, identical output (rans.h). */
#include "rans.h"
#include <immintrin.h>

static inline __attribute__((always_inline)) void enc_put(uint32_t *st, uint16_t **pp, const wv_rans_esym *e)
{
    /* branchless: the renorm is taken every few symbols at random, a branch
     * mispredicts; the caller guarantees (*pp)[-1] is writable */
    uint32_t x = *st;
    uint32_t emit = x >= e->x_max;
    (*pp)[-1] = (uint16_t)x;
    *pp -= emit;
    x >>= emit << 4;
    uint32_t q = (uint32_t)(((uint64_t)x * e->rcp_freq) >> 32) >> (e->packed >> 25);
    *st = x + e->bias + q * (WV_RANS_M - ((e->packed >> 13) & 0xfff));
}

/* Scalar blocks, last to first; returns how many symbols remain (a multiple of 32
 * unless the budget ran out: then NOT_COMPRESSIBLE is decided by the caller). */
static inline __attribute__((always_inline)) size_t enc_blocks_scalar(uint32_t *st, uint16_t **pp,
                                                                      const uint16_t *stop, const uint8_t *src,
                                                                      size_t i, const uint8_t *cx,
                                                                      const wv_rans_esym *etabs)
{
    uint16_t *p = *pp;
    while (i > 0 && p >= stop) {
        i -= WV_RANS_LANES;
        for (int l = WV_RANS_LANES - 1; l >= 0; l--)
            enc_put(&st[l], &p, &etabs[(cx ? cx[i + l] * 256u : 0u) + src[i + l]]);
    }
    *pp = p;
    return i;
}

/* (An AVX-512 version, vpcompressd + vpexpandd, measured no faster: 1139 vs 1140 MB/s
 * on the BF16 exponent plane; 16-element gathers cost twice the 8-element ones.)
 * AVX2 encoder: lanes 8g..8g+7 at once; the words of the lanes that renormalise are
 * compacted (compress_idx) so they land in lane order right below p, exactly where
 * the scalar loop (lanes 7..0, writing downwards) would have put them. */
static uint32_t compress_idx[256][8] __attribute__((aligned(32)));

__attribute__((constructor)) static void rans_enc_simd_init(void)
{
    for (unsigned m = 0; m < 256; m++) {
        unsigned c = (unsigned)__builtin_popcount(m), k = 8 - c;
        for (unsigned j = 0; j < 8; j++) compress_idx[m][j] = 0;
        for (unsigned j = 0; j < 8; j++)
            if ((m >> j) & 1) compress_idx[m][k++] = j;
    }
}

static inline __attribute__((always_inline, target("avx2"))) size_t enc_blocks_avx2_body(
    uint32_t *st, uint16_t **pp, const uint16_t *stop, const uint8_t *src, size_t i, const uint8_t *cx,
    const wv_rans_esym *etabs)
{
    uint16_t *p = *pp;
    const int *rcp_base = (const int *)&etabs[0].rcp_freq, *packed_base = (const int *)&etabs[0].packed;
    const __m256i m12 = _mm256_set1_epi32(0xfff), m13 = _mm256_set1_epi32(0x1fff);
    const __m256i m16 = _mm256_set1_epi32(0xffff), big = _mm256_set1_epi32(WV_RANS_M);
    const __m256i hi32 = _mm256_set1_epi64x((long long)0xffffffff00000000ull);
    __m256i x[4];
    for (int g = 0; g < 4; g++) x[g] = _mm256_loadu_si256((const __m256i *)(st + 8 * g));
    /* stop leaves room for one block of 32 words plus the 8-word store overshoot */
    while (i > 0 && p >= stop) {
        i -= WV_RANS_LANES;
        for (int g = 3; g >= 0; g--) {
            __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(src + i + 8 * g)));
            if (cx) {
                __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(cx + i + 8 * g)));
                idx = _mm256_add_epi32(idx, _mm256_slli_epi32(c, 8));
            }
            idx = _mm256_slli_epi32(idx, 2); /* 16-byte entries, gathered with scale 4 */
            __m256i packed = _mm256_i32gather_epi32(packed_base, idx, 4);
            __m256i rcp = _mm256_i32gather_epi32(rcp_base, idx, 4);
            __m256i freq = _mm256_and_si256(_mm256_srli_epi32(packed, 13), m12);
            __m256i xmax = _mm256_slli_epi32(freq, 19);
            __m256i emit = _mm256_xor_si256(_mm256_cmpgt_epi32(xmax, x[g]), _mm256_set1_epi32(-1));
            unsigned mask = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(emit));
            __m256i w = _mm256_permutevar8x32_epi32(x[g], _mm256_load_si256((const __m256i *)compress_idx[mask]));
            w = _mm256_and_si256(w, m16);
            w = _mm256_permute4x64_epi64(_mm256_packus_epi32(w, w), 0x08);
            _mm_storeu_si128((__m128i *)(p - 8), _mm256_castsi256_si128(w));
            p -= __builtin_popcount(mask);
            __m256i xs = _mm256_blendv_epi8(x[g], _mm256_srli_epi32(x[g], 16), emit);
            __m256i q_even = _mm256_srli_epi64(_mm256_mul_epu32(xs, rcp), 32);
            __m256i q_odd = _mm256_and_si256(_mm256_mul_epu32(_mm256_srli_epi64(xs, 32), _mm256_srli_epi64(rcp, 32)), hi32);
            __m256i q = _mm256_srlv_epi32(_mm256_or_si256(q_even, q_odd), _mm256_srli_epi32(packed, 25));
            __m256i add = _mm256_add_epi32(_mm256_and_si256(packed, m13),
                                           _mm256_mullo_epi32(q, _mm256_sub_epi32(big, freq)));
            x[g] = _mm256_add_epi32(xs, add);
        }
    }
    for (int g = 0; g < 4; g++) _mm256_storeu_si256((__m256i *)(st + 8 * g), x[g]);
    *pp = p;
    return i;
}

__attribute__((target("avx2"))) static size_t enc_blocks_avx2(uint32_t *st, uint16_t **pp, const uint16_t *stop,
                                                              const uint8_t *src, size_t i, const uint8_t *cx,
                                                              const wv_rans_esym *etabs)
{
    return cx ? enc_blocks_avx2_body(st, pp, stop, src, i, cx, etabs)
              : enc_blocks_avx2_body(st, pp, stop, src, i, NULL, etabs);
}

static size_t enc_blocks_scalar_any(uint32_t *st, uint16_t **pp, const uint16_t *stop, const uint8_t *src,
                                    size_t i, const uint8_t *cx, const wv_rans_esym *etabs)
{
    return cx ? enc_blocks_scalar(st, pp, stop, src, i, cx, etabs)
              : enc_blocks_scalar(st, pp, stop, src, i, NULL, etabs);
}

typedef size_t (*enc_blocks_fn)(uint32_t *, uint16_t **, const uint16_t *, const uint8_t *, size_t,
                                const uint8_t *, const wv_rans_esym *);
static enc_blocks_fn enc_blocks = enc_blocks_scalar_any;

void wv_rans_enc_select(int avx2) { enc_blocks = avx2 ? enc_blocks_avx2 : enc_blocks_scalar_any; }

/* Final states: a 32-bit map (bit l set = lane l takes 4 bytes) then each state in 3
 * or 4 bytes.  States are spread ~log-uniformly over [2^15, 2^31), so ~9/16 of them
 * fit 3 bytes: 128 -> ~114 bytes per coded plane. */
static size_t write_states(uint8_t *dst, const uint32_t *st)
{
    uint32_t wide = 0;
    size_t o = 4;
    for (int l = 0; l < WV_RANS_LANES; l++) {
        uint32_t x = st[l];
        dst[o] = (uint8_t)x; dst[o + 1] = (uint8_t)(x >> 8); dst[o + 2] = (uint8_t)(x >> 16);
        if (x >> 24) { dst[o + 3] = (uint8_t)(x >> 24); wide |= 1u << l; o += 4; }
        else o += 3;
    }
    wv_wr32(dst, wide);
    return o;
}

/* The last symbol of each lane is not coded: the encoder starts that lane at
 * L + symbol, and the decoder reads it back from the final state (which would
 * otherwise have to equal L and carry no information).  Saves ~1 coded symbol per
 * lane; corruption is still caught by the raw CRC32C of the frame. */
size_t wv_rans_encode(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, const uint8_t *cx,
                      const wv_rans_esym *etabs, uint8_t *scratch)
{
    uint32_t st[WV_RANS_LANES];
    size_t kept = n < WV_RANS_LANES ? n : WV_RANS_LANES, coded = n - kept;
    for (size_t l = 0; l < WV_RANS_LANES; l++) st[l] = WV_RANS_L;
    for (size_t i = coded; i < n; i++) st[i % WV_RANS_LANES] = WV_RANS_L + src[i];
    WV_RETURN_ERROR_IF(cap < WV_RANS_STATE_BYTES + 4 * WV_RANS_LANES + 16, WV_ERR_NOT_COMPRESSIBLE);
    uint16_t *end = (uint16_t *)(scratch + (cap & ~(size_t)1)), *p = end;
    /* a block emits <= 32 words and the SIMD store reaches 8 words below p */
    const uint16_t *stop = (const uint16_t *)(scratch + WV_RANS_STATE_BYTES + 2 * WV_RANS_LANES + 16);
    size_t i = coded, full = coded & ~(size_t)(WV_RANS_LANES - 1);
    while (i > full) {
        i--;
        enc_put(&st[i % WV_RANS_LANES], &p, &etabs[(cx ? cx[i] * 256u : 0u) + src[i]]);
    }
    if (enc_blocks(st, &p, stop, src, i, cx, etabs) > 0) return WV_ERROR(WV_ERR_NOT_COMPRESSIBLE);
    size_t words = (size_t)(end - p);
    WV_RETURN_ERROR_IF(WV_RANS_STATE_BYTES + 2 * words > cap, WV_ERR_NOT_COMPRESSIBLE);
    size_t o = write_states(dst, st);
    memcpy(dst + o, p, 2 * words);
    return o + 2 * words;
}
