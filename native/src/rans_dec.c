/* rANS decoder: scalar reference and AVX2 kernels, kernel selection, and the paired
 * decoder for two planes of one frame (rans.h). */
#include "rans.h"
#include "planes.h"
#include <immintrin.h>

/* Final states, as written by rans_enc.c (write_states). */
static size_t read_states(const uint8_t *src, size_t size, uint32_t *st)
{
    WV_RETURN_ERROR_IF(size < 4, WV_ERR_CORRUPT);
    uint32_t wide = wv_rd32(src);
    size_t o = 4;
    for (int l = 0; l < WV_RANS_LANES; l++) {
        size_t w = 3 + ((wide >> l) & 1);
        WV_RETURN_ERROR_IF(size - o < w, WV_ERR_CORRUPT);
        uint32_t x = src[o] | (uint32_t)src[o + 1] << 8 | (uint32_t)src[o + 2] << 16;
        if (w == 4) {
            x |= (uint32_t)src[o + 3] << 24;
            WV_RETURN_ERROR_IF(!(x >> 24), WV_ERR_CORRUPT); /* one encoding per state */
        }
        WV_RETURN_ERROR_IF(x < WV_RANS_L || x >= (1u << 31), WV_ERR_CORRUPT);
        st[l] = x;
        o += w;
    }
    return o;
}

/* One symbol of one lane: look up slot x mod M (in context cx[idx]'s table), write
 * the symbol, return the state before renormalisation. */
static inline __attribute__((always_inline)) uint32_t dec_sym(uint32_t x, size_t idx, uint8_t *dst,
                                                              const uint8_t *cx, const uint32_t *tab)
{
    uint32_t e = tab[(cx ? cx[idx] * WV_RANS_M : 0u) + (x & (WV_RANS_M - 1))];
    dst[idx] = (uint8_t)e;
    return ((e >> 8) & 0xfff) * (x >> WV_RANS_PROB_BITS) + (e >> 20);
}

/* Scalar fast blocks: 32 symbols read at most 32 words, so bounds are checked once
 * per block.  Returns the number of symbols decoded. */
static inline __attribute__((always_inline)) size_t blocks_scalar(uint32_t *st, const uint8_t **pp,
                                                                  const uint8_t *end, uint8_t *dst, size_t n,
                                                                  const uint8_t *cx, const uint32_t *tab)
{
    const uint8_t *p = *pp;
    size_t i = 0;
    while (i + WV_RANS_LANES <= n && end - p >= 2 * WV_RANS_LANES) {
        for (int l = 0; l < WV_RANS_LANES; l++) {
            /* branchless renorm (cmov); the block check guarantees 2 readable bytes */
            uint32_t x = dec_sym(st[l], i + l, dst, cx, tab), w = wv_rd16(p);
            uint32_t need = x < WV_RANS_L; /* arithmetic, gcc turns ?: into a jump */
            st[l] = (x << (need << 4)) | (w & (0u - need));
            p += 2 * need;
        }
        i += WV_RANS_LANES;
    }
    *pp = p;
    return i;
}

/* AVX2: lanes 8g..8g+7 in one register.  Lanes needing a word take consecutive
 * words in lane order: load 8 words, widen, permute with expand[mask]. */
static uint32_t expand_idx[256][8] __attribute__((aligned(32)));
static uint8_t hi_idx[64] __attribute__((aligned(64))); /* merge2_out: byte 2j+1 <- byte 4j of e0:e1 */
/* out4: the bytes of 16 F32 elements from plane 0's bytes in a (at 4j for a RANS plane; for
 * a PAIRS plane at 4(j/2) + j%2, then 32 bytes on for elements 16..31) and planes 3, 2, 1
 * side by side in b */
static uint8_t idx4_rans[64] __attribute__((aligned(64))), idx4_pairs[2][64] __attribute__((aligned(64)));

__attribute__((constructor)) static void rans_simd_init(void)
{
    for (unsigned m = 0; m < 256; m++) {
        unsigned k = 0;
        for (unsigned j = 0; j < 8; j++) expand_idx[m][j] = (m >> j) & 1 ? k++ : 0;
    }
    for (unsigned j = 0; j < 32; j++) hi_idx[2 * j + 1] = (uint8_t)(4 * j);
    for (unsigned j = 0; j < 16; j++) {
        uint8_t low[3] = {(uint8_t)(64 + j), (uint8_t)(80 + j), (uint8_t)(96 + j)};
        memcpy(idx4_rans + 4 * j, low, 3);
        memcpy(idx4_pairs[0] + 4 * j, low, 3);
        memcpy(idx4_pairs[1] + 4 * j, low, 3);
        idx4_rans[4 * j + 3] = (uint8_t)(4 * j);
        idx4_pairs[0][4 * j + 3] = (uint8_t)(4 * (j >> 1) + (j & 1));
        idx4_pairs[1][4 * j + 3] = (uint8_t)(32 + 4 * (j >> 1) + (j & 1));
    }
}

/* One block of 32 symbols for one stream; x holds its 4 state registers. */
static inline __attribute__((always_inline, target("avx2"))) void block_avx2(__m256i *x, const uint8_t **pp,
                                                                            uint8_t *dst, const uint8_t *cx,
                                                                            const uint32_t *tab)
{
    const __m256i m12 = _mm256_set1_epi32(WV_RANS_M - 1), m8 = _mm256_set1_epi32(0xff);
    const __m256i lim = _mm256_set1_epi32(WV_RANS_L);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const uint8_t *p = *pp;
    __m256i sym[4];
    for (int g = 0; g < 4; g++) {
        __m256i slot = _mm256_and_si256(x[g], m12);
        if (cx) {
            __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(cx + 8 * g)));
            slot = _mm256_add_epi32(slot, _mm256_slli_epi32(c, WV_RANS_PROB_BITS));
        }
        __m256i e = _mm256_i32gather_epi32((const int *)tab, slot, 4);
        sym[g] = _mm256_and_si256(e, m8);
        __m256i freq = _mm256_and_si256(_mm256_srli_epi32(e, 8), m12);
        __m256i xn = _mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srli_epi32(x[g], WV_RANS_PROB_BITS)),
                                      _mm256_srli_epi32(e, 20));
        __m256i need = _mm256_cmpgt_epi32(lim, xn);
        unsigned mask = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(need));
        __m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
        __m256i w = _mm256_permutevar8x32_epi32(words, _mm256_load_si256((const __m256i *)expand_idx[mask]));
        x[g] = _mm256_blendv_epi8(xn, _mm256_or_si256(_mm256_slli_epi32(xn, 16), w), need);
        p += 2 * __builtin_popcount(mask);
    }
    __m256i a = _mm256_packs_epi32(sym[0], sym[1]), b = _mm256_packs_epi32(sym[2], sym[3]);
    _mm256_storeu_si256((__m256i *)dst, _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), order));
    *pp = p;
}

static inline __attribute__((always_inline, target("avx2"))) size_t blocks_avx2_body(
    uint32_t *st, const uint8_t **pp, const uint8_t *end, uint8_t *dst, size_t n, const uint8_t *cx,
    const uint32_t *tab)
{
    const uint8_t *p = *pp;
    size_t i = 0;
    __m256i x[4];
    for (int g = 0; g < 4; g++) x[g] = _mm256_loadu_si256((const __m256i *)(st + 8 * g));
    while (i + WV_RANS_LANES <= n && end - p >= 2 * WV_RANS_LANES) {
        block_avx2(x, &p, dst + i, cx ? cx + i : NULL, tab);
        i += WV_RANS_LANES;
    }
    for (int g = 0; g < 4; g++) _mm256_storeu_si256((__m256i *)(st + 8 * g), x[g]);
    *pp = p;
    return i;
}

__attribute__((target("avx2"))) static size_t blocks_avx2(uint32_t *st, const uint8_t **pp, const uint8_t *end,
                                                          uint8_t *dst, size_t n, const uint8_t *cx,
                                                          const uint32_t *tab, const wv_rans_dom *dom)
{
    (void)dom;
    return cx ? blocks_avx2_body(st, pp, end, dst, n, cx, tab) : blocks_avx2_body(st, pp, end, dst, n, NULL, tab);
}

static size_t blocks_scalar_any(uint32_t *st, const uint8_t **pp, const uint8_t *end, uint8_t *dst, size_t n,
                                const uint8_t *cx, const uint32_t *tab, const wv_rans_dom *dom)
{
    (void)dom;
    return cx ? blocks_scalar(st, pp, end, dst, n, cx, tab) : blocks_scalar(st, pp, end, dst, n, NULL, tab);
}

/* AVX-512: 16 lanes per register, two registers per block.  The mask compare feeds
 * vpexpandd directly, so the renorm needs no permutation-table load. */
#define AVX512 __attribute__((target("avx512f")))
/* One block of 32 symbols for one stream; x holds its 2 state registers. */
static inline __attribute__((always_inline)) AVX512 void block_off_avx512(__m512i *x, const uint8_t **pp, uint8_t *dst,
                                                                         const uint8_t *cx, const __m512i *off,
                                                                         const uint32_t *tab, const wv_rans_dom *dom)
{
    const __m512i m12 = _mm512_set1_epi32(WV_RANS_M - 1), lim = _mm512_set1_epi32(WV_RANS_L);
    const uint8_t *p = *pp;
    for (int g = 0; g < 2; g++) {
        __m512i slot = _mm512_and_si512(x[g], m12), e;
        if (off) slot = _mm512_add_epi32(slot, off[g]);
        if (cx) {
            __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cx + 16 * g)));
            slot = _mm512_add_epi32(slot, _mm512_slli_epi32(c, WV_RANS_PROB_BITS));
        }
        /* All 16 slots in the dominant symbol's range (dom: one-table distance payloads): its
         * entries computed, no gather.  A BF16 fine-tune against the FP32 fine-tune of its run
         * (99.6% zero distances), decode best of 40: 1869 -> 2619 MB/cpu-s; members with ~74%
         * zeros (BF16 fine-tune vs the FP32 base) unchanged within noise (1528 -> 1564). */
        __m512i rel = dom ? _mm512_sub_epi32(slot, _mm512_set1_epi32((int)dom->cum)) : slot;
        if (dom && _mm512_cmplt_epu32_mask(rel, _mm512_set1_epi32((int)dom->freq)) == 0xffff)
            e = _mm512_add_epi32(_mm512_set1_epi32((int)dom->entry), _mm512_slli_epi32(rel, 20));
        else
            e = _mm512_i32gather_epi32(slot, (const void *)tab, 4);
        _mm_storeu_si128((__m128i *)(dst + 16 * g), _mm512_cvtepi32_epi8(e));
        __m512i freq = _mm512_and_si512(_mm512_srli_epi32(e, 8), m12);
        __m512i xn = _mm512_add_epi32(_mm512_mullo_epi32(freq, _mm512_srli_epi32(x[g], WV_RANS_PROB_BITS)),
                                      _mm512_srli_epi32(e, 20));
        __mmask16 need = _mm512_cmplt_epu32_mask(xn, lim);
        __m512i words = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
        __m512i w = _mm512_maskz_expand_epi32(need, words);
        x[g] = _mm512_mask_or_epi32(xn, need, _mm512_slli_epi32(xn, 16), w);
        p += 2 * __builtin_popcount((unsigned)need);
    }
    *pp = p;
}

static inline __attribute__((always_inline)) AVX512 void block_avx512(__m512i *x, const uint8_t **pp, uint8_t *dst,
                                                                     const uint8_t *cx, const uint32_t *tab,
                                                                     const wv_rans_dom *dom)
{
    block_off_avx512(x, pp, dst, cx, NULL, tab, dom);
}

static inline __attribute__((always_inline)) AVX512 size_t blocks_avx512_body(
    uint32_t *st, const uint8_t **pp, const uint8_t *end, uint8_t *dst, size_t n, const uint8_t *cx,
    const uint32_t *tab, const wv_rans_dom *dom)
{
    const uint8_t *p = *pp;
    size_t i = 0;
    __m512i x[2];
    for (int g = 0; g < 2; g++) x[g] = _mm512_loadu_si512((const void *)(st + 16 * g));
    while (i + WV_RANS_LANES <= n && end - p >= 2 * WV_RANS_LANES) {
        block_avx512(x, &p, dst + i, cx ? cx + i : NULL, tab, dom);
        i += WV_RANS_LANES;
    }
    for (int g = 0; g < 2; g++) _mm512_storeu_si512((void *)(st + 16 * g), x[g]);
    *pp = p;
    return i;
}

AVX512 static size_t blocks_avx512(uint32_t *st, const uint8_t **pp, const uint8_t *end, uint8_t *dst, size_t n,
                                   const uint8_t *cx, const uint32_t *tab, const wv_rans_dom *dom)
{
    if (cx) return blocks_avx512_body(st, pp, end, dst, n, cx, tab, NULL);
    if (dom) return blocks_avx512_body(st, pp, end, dst, n, NULL, tab, dom);
    return blocks_avx512_body(st, pp, end, dst, n, NULL, tab, NULL);
}

/* dom (wv_rans_dec.dom): only the AVX-512 kernel uses it */
typedef size_t (*blocks_fn)(uint32_t *, const uint8_t **, const uint8_t *, uint8_t *, size_t, const uint8_t *,
                            const uint32_t *, const wv_rans_dom *);
static blocks_fn dec_blocks = blocks_scalar_any;
static int merge2_on; /* kernel 2 and the byte permutes of merge2_out */

/* Kernel 0 = scalar reference, 1 = AVX2, 2 = AVX-512 decoder (AVX2 encoder); -1 = the
 * best this CPU has.  Returns the kernel in use, or -1 if the one demanded is not
 * supported here.  Best of 300 on one 128 Ki-symbol MiniLM BF16 exponent plane
 * (2.6 GHz Zen 4 VM): decode scalar ~400 MB/s, AVX2 1150, AVX-512 1520 (whole
 * frames 1900 -> 2300 MB/s); encode scalar ~350 MB/s, AVX2 1140. */
int wv_rans_select_kernel(int kernel)
{
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") != 0, avx512 = avx2 && __builtin_cpu_supports("avx512f") != 0;
    if (kernel < 0) kernel = avx512 ? 2 : avx2;
    if (kernel > 2 || (kernel == 1 && !avx2) || (kernel == 2 && !avx512)) return -1;
    dec_blocks = kernel == 2 ? blocks_avx512 : kernel == 1 ? blocks_avx2 : blocks_scalar_any;
    merge2_on = kernel == 2 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi") &&
                __builtin_cpu_supports("avx512vbmi2");
    wv_rans_enc_select(kernel >= 1);
    return kernel;
}

__attribute__((constructor)) static void rans_dispatch_init(void) { wv_rans_select_kernel(-1); }

/* Two independent streams (two rANS planes of one frame) advanced in lockstep:
 * one stream's 4 state chains are latency-bound (gather -> multiply -> renorm), so a
 * second stream's chains fill the gaps: 1150 -> 1730 MB/s (best of 300, one 128 Ki
 * BF16 exponent plane per stream).  Four streams measured 1155 MB/s: 16 state
 * registers spill. */
static inline __attribute__((always_inline, target("avx2"))) void pair_avx2_body(wv_rans_dec *a, wv_rans_dec *b,
                                                                               int with_cx)
{
    __m256i xa[4], xb[4];
    for (int g = 0; g < 4; g++) {
        xa[g] = _mm256_loadu_si256((const __m256i *)(a->st + 8 * g));
        xb[g] = _mm256_loadu_si256((const __m256i *)(b->st + 8 * g));
    }
    while (a->i + WV_RANS_LANES <= a->coded && a->end - a->p >= 2 * WV_RANS_LANES &&
           b->i + WV_RANS_LANES <= b->coded && b->end - b->p >= 2 * WV_RANS_LANES) {
        block_avx2(xa, &a->p, a->dst + a->i, with_cx && a->cx ? a->cx + a->i : NULL, a->tab);
        block_avx2(xb, &b->p, b->dst + b->i, with_cx && b->cx ? b->cx + b->i : NULL, b->tab);
        a->i += WV_RANS_LANES;
        b->i += WV_RANS_LANES;
    }
    for (int g = 0; g < 4; g++) {
        _mm256_storeu_si256((__m256i *)(a->st + 8 * g), xa[g]);
        _mm256_storeu_si256((__m256i *)(b->st + 8 * g), xb[g]);
    }
}

__attribute__((target("avx2"))) static void pair_avx2(wv_rans_dec *a, wv_rans_dec *b)
{
    if (a->cx || b->cx) pair_avx2_body(a, b, 1);
    else pair_avx2_body(a, b, 0);
}

/* The same with AVX-512 (2 state registers per stream). */
static inline __attribute__((always_inline)) AVX512 void pair_avx512_body(wv_rans_dec *a, wv_rans_dec *b, int with_cx,
                                                                         int with_dom)
{
    __m512i xa[2], xb[2];
    for (int g = 0; g < 2; g++) {
        xa[g] = _mm512_loadu_si512((const void *)(a->st + 16 * g));
        xb[g] = _mm512_loadu_si512((const void *)(b->st + 16 * g));
    }
    while (a->i + WV_RANS_LANES <= a->coded && a->end - a->p >= 2 * WV_RANS_LANES &&
           b->i + WV_RANS_LANES <= b->coded && b->end - b->p >= 2 * WV_RANS_LANES) {
        block_avx512(xa, &a->p, a->dst + a->i, with_cx && a->cx ? a->cx + a->i : NULL, a->tab,
                     with_dom ? a->dom : NULL);
        block_avx512(xb, &b->p, b->dst + b->i, with_cx && b->cx ? b->cx + b->i : NULL, b->tab,
                     with_dom ? b->dom : NULL);
        a->i += WV_RANS_LANES;
        b->i += WV_RANS_LANES;
    }
    for (int g = 0; g < 2; g++) {
        _mm512_storeu_si512((void *)(a->st + 16 * g), xa[g]);
        _mm512_storeu_si512((void *)(b->st + 16 * g), xb[g]);
    }
}

AVX512 static void pair_avx512(wv_rans_dec *a, wv_rans_dec *b)
{
    if (a->cx || b->cx) pair_avx512_body(a, b, 1, 0);
    else if (a->dom && b->dom) pair_avx512_body(a, b, 0, 1);
    else pair_avx512_body(a, b, 0, 0);
}

/* Two streams whose contexts come from a prediction (wv_rans_pctx), computed in the loop
 * instead of read from cx bytes written by an earlier pass: that pass was the first to touch
 * the base, at memory speed (7% of the FP32 fine-tune's xor v3 decode); here its loads
 * overlap the gathers.  pred_off: table offsets (table << 12) of 16 lanes. */
static inline __attribute__((always_inline)) AVX512 __m512i pred_off(const uint8_t *pred, size_t i, unsigned k,
                                                                    __m128i sh, __m512i mask, __m512i bias,
                                                                    __m512i lut)
{
    __m512i v = k == 4 ? _mm512_loadu_si512((const void *)(pred + 4 * i))
                       : _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(pred + 2 * i)));
    __m512i o = _mm512_sub_epi32(bias, _mm512_and_si512(_mm512_srl_epi32(v, sh), mask));
    o = _mm512_min_epi32(_mm512_max_epi32(o, _mm512_setzero_si512()), _mm512_set1_epi32(15));
    return _mm512_permutexvar_epi32(o, lut);
}

static inline __attribute__((always_inline)) AVX512 void pair_pred_body(wv_rans_dec *a, wv_rans_dec *b,
                                                                       const wv_rans_pctx *c, const uint8_t *pa,
                                                                       const uint8_t *pb, unsigned k)
{
    const __m128i sh = _mm_cvtsi32_si128((int)c->shift);
    const __m512i mask = _mm512_set1_epi32((int)c->mask), bias = _mm512_set1_epi32((int)c->bias);
    const __m512i lut = _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)c->lut)),
                                          WV_RANS_PROB_BITS);
    __m512i xa[2], xb[2];
    for (int g = 0; g < 2; g++) {
        xa[g] = _mm512_loadu_si512((const void *)(a->st + 16 * g));
        xb[g] = _mm512_loadu_si512((const void *)(b->st + 16 * g));
    }
    while (a->i + WV_RANS_LANES <= a->coded && a->end - a->p >= 2 * WV_RANS_LANES &&
           b->i + WV_RANS_LANES <= b->coded && b->end - b->p >= 2 * WV_RANS_LANES) {
        __m512i oa[2], ob[2];
        for (int g = 0; g < 2; g++) {
            oa[g] = pred_off(pa, a->i + 16 * g, k, sh, mask, bias, lut);
            ob[g] = pred_off(pb, b->i + 16 * g, k, sh, mask, bias, lut);
        }
        block_off_avx512(xa, &a->p, a->dst + a->i, NULL, oa, a->tab, NULL);
        block_off_avx512(xb, &b->p, b->dst + b->i, NULL, ob, b->tab, NULL);
        a->i += WV_RANS_LANES;
        b->i += WV_RANS_LANES;
    }
    for (int g = 0; g < 2; g++) {
        _mm512_storeu_si512((void *)(a->st + 16 * g), xa[g]);
        _mm512_storeu_si512((void *)(b->st + 16 * g), xb[g]);
    }
}

AVX512 static void pair_pred_avx512(wv_rans_dec *a, wv_rans_dec *b, const wv_rans_pctx *c, const uint8_t *pa,
                                    const uint8_t *pb)
{
    if (c->k == 4) pair_pred_body(a, b, c, pa, pb, 4);
    else pair_pred_body(a, b, c, pa, pb, 2);
}

void wv_rans_dec_pair_pred(wv_rans_dec *a, wv_rans_dec *b, const wv_rans_pctx *c, const uint8_t *pred_a,
                           const uint8_t *pred_b)
{
    if (dec_blocks == blocks_avx512 && (c->k == 2 || c->k == 4)) pair_pred_avx512(a, b, c, pred_a, pred_b);
}

/* Plain 2-byte planes (BF16/F16) whose only coded plane is plane 0: decode it straight
 * into the output, merged with the raw low plane, instead of into scratch and then
 * merging.  Needs AVX-512 F, BW, VBMI and VBMI2 (Ice Lake, Zen 4; AVX-512F-only CPUs
 * take the scratch path).  One hot 256 KiB MiniLM BF16 frame, wv_decode_frame best of
 * 300: 109 -> 95 us with the stream's fields in locals and rot a constant, -> 92 us with
 * the output built by one byte permute per 32 elements (merge2_out) instead of 9 ops
 * per 16 (a 512-bit op takes two passes of Zen 4's 256-bit units).  The gathers alone
 * take ~47 of the 92 us (15 cycles per 16 lanes, measured).  merge2_step: the state
 * update of one 16-lane group; returns its table entries (symbol in byte 0). */
#define MERGE2 __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2")))
static inline __attribute__((always_inline)) MERGE2 __m512i merge2_step(__m512i *x, const uint8_t **pp,
                                                                       const uint32_t *tab)
{
    const __m512i m12 = _mm512_set1_epi32(WV_RANS_M - 1), lim = _mm512_set1_epi32(WV_RANS_L);
    __m512i e = _mm512_i32gather_epi32(_mm512_and_si512(*x, m12), (const void *)tab, 4);
    __m512i freq = _mm512_and_si512(_mm512_srli_epi32(e, 8), m12);
    __m512i xn = _mm512_add_epi32(_mm512_mullo_epi32(freq, _mm512_srli_epi32(*x, WV_RANS_PROB_BITS)),
                                  _mm512_srli_epi32(e, 20));
    __mmask16 need = _mm512_cmplt_epu32_mask(xn, lim);
    __m512i words = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)*pp));
    *x = _mm512_mask_or_epi32(xn, need, _mm512_slli_epi32(xn, 16), _mm512_maskz_expand_epi32(need, words));
    *pp += 2 * __builtin_popcount((unsigned)need);
    return e;
}

/* 32 output elements: the symbols of e0, e1 (byte 0 of each dword) become the high
 * bytes, one byte permute; the raw low plane the low bytes; rot: rotate right by 1. */
static inline __attribute__((always_inline)) MERGE2 void merge2_out(uint8_t *out, const uint8_t *low, __m512i e0,
                                                                   __m512i e1, __m512i idx, int rot)
{
    __m512i hi = _mm512_maskz_permutex2var_epi8(0xaaaaaaaaaaaaaaaaull, e0, idx, e1);
    __m512i w = _mm512_or_si512(hi, _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)low)));
    if (rot) w = _mm512_shrdi_epi16(w, w, 1);
    _mm512_storeu_si512((void *)out, w);
}

/* A merge2 stream with its fields in locals: out is written through uint8_t *, which
 * may alias *d, so reading d->tab, d->end in the loop would reload them per store. */
typedef struct {
    __m512i x[2];
    const uint8_t *p, *end, *low;
    const uint32_t *tab;
    uint8_t *out;
    size_t i, coded;
} merge2_run;

static inline __attribute__((always_inline)) MERGE2 merge2_run merge2_load(const wv_rans_dec *d, uint8_t *out,
                                                                          const uint8_t *low)
{
    merge2_run r = {{_mm512_loadu_si512((const void *)d->st), _mm512_loadu_si512((const void *)(d->st + 16))},
                    d->p, d->end, low, d->tab, out, d->i, d->coded};
    return r;
}

static inline __attribute__((always_inline)) MERGE2 void merge2_store(wv_rans_dec *d, const merge2_run *r)
{
    _mm512_storeu_si512((void *)d->st, r->x[0]);
    _mm512_storeu_si512((void *)(d->st + 16), r->x[1]);
    d->p = r->p;
    d->i = r->i;
}

/* Room for one more block of 32 symbols (at most 32 words) without a bounds check. */
static inline __attribute__((always_inline)) int merge2_fits(const merge2_run *r)
{
    return r->i + WV_RANS_LANES <= r->coded && r->end - r->p >= 2 * WV_RANS_LANES;
}

static inline __attribute__((always_inline)) MERGE2 void merge2_block(merge2_run *r, __m512i idx, int rot)
{
    __m512i e0 = merge2_step(&r->x[0], &r->p, r->tab), e1 = merge2_step(&r->x[1], &r->p, r->tab);
    merge2_out(r->out + 2 * r->i, r->low + r->i, e0, e1, idx, rot);
}

static inline __attribute__((always_inline)) MERGE2 void merge2_one(wv_rans_dec *d, uint8_t *out,
                                                                    const uint8_t *low, int rot)
{
    const __m512i idx = _mm512_load_si512((const void *)hi_idx);
    merge2_run r = merge2_load(d, out, low);
    for (; merge2_fits(&r); r.i += WV_RANS_LANES) merge2_block(&r, idx, rot);
    merge2_store(d, &r);
}

MERGE2 static size_t merge2_avx512(wv_rans_dec *d, uint8_t *out, const uint8_t *low, int rot)
{
    if (rot) merge2_one(d, out, low, 1);
    else merge2_one(d, out, low, 0);
    return d->i;
}

/* Four-byte elements (F32): 16 elements per call, plane 0's bytes picked from a and planes
 * 3, 2, 1 loaded side by side into one register, one two-source byte permute.  Fusing the
 * exponent plane's decode, expansion and the 4-plane merge into one pass: the MiniLM FP32
 * base (PAIRS plane 0, three raw planes) 3928 -> 5361 MB per CPU-second. */
static inline __attribute__((always_inline)) MERGE2 void out4(uint8_t *out, const uint8_t *l1, const uint8_t *l2,
                                                             const uint8_t *l3, __m512i a, __m512i idx, int rot)
{
    __m512i b = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)l3));
    b = _mm512_inserti32x4(b, _mm_loadu_si128((const __m128i *)l2), 1);
    b = _mm512_inserti32x4(b, _mm_loadu_si128((const __m128i *)l1), 2);
    __m512i w = _mm512_permutex2var_epi8(a, idx, b);
    if (rot) w = _mm512_ror_epi32(w, 1);
    _mm512_storeu_si512((void *)out, w);
}

static inline __attribute__((always_inline)) MERGE2 void merge4_one(wv_rans_dec *d, uint8_t *out,
                                                                    const uint8_t *const *low, int rot)
{
    const __m512i idx = _mm512_load_si512((const void *)idx4_rans);
    const uint8_t *l1 = low[0], *l2 = low[1], *l3 = low[2];
    merge2_run r = merge2_load(d, out, NULL);
    for (; merge2_fits(&r); r.i += WV_RANS_LANES) {
        size_t i = r.i;
        __m512i e0 = merge2_step(&r.x[0], &r.p, r.tab), e1 = merge2_step(&r.x[1], &r.p, r.tab);
        out4(r.out + 4 * i, l1 + i, l2 + i, l3 + i, e0, idx, rot);
        out4(r.out + 4 * i + 64, l1 + i + 16, l2 + i + 16, l3 + i + 16, e1, idx, rot);
    }
    merge2_store(d, &r);
}

MERGE2 static size_t merge4_avx512(wv_rans_dec *d, uint8_t *out, const uint8_t *const *low, int rot)
{
    if (rot) merge4_one(d, out, low, 1);
    else merge4_one(d, out, low, 0);
    return d->i;
}

size_t wv_rans_dec_merge(wv_rans_dec *d, uint8_t *out, unsigned k, const uint8_t *const *low, int rot)
{
    if (!merge2_on || d->cx) return d->i;
    return k == 2 ? merge2_avx512(d, out, low[0], rot) : k == 4 ? merge4_avx512(d, out, low, rot) : d->i;
}

/* The same for a PAIRS plane 0: each 16-lane step yields 16 symbols = 32 elements.  Codes
 * go through the dictionary with byte shuffles.  A step holding an escape code takes the
 * next escape bytes in element order with one expanding load (VBMI2); an invalid code
 * (>= nd, not an escape) or too few escape bytes make the frame corrupt.  Before, such a
 * step was redone in scalar code after the loop: 1.8% of a BF16 plane decode (MiniLM has
 * ~30 escapes per frame).  One hot MiniLM BF16 frame (whole decode, CRCs included): 4.06
 * GB/s, 3.67 through scratch, expand and merge.
 * esc_fix: x with the escape bytes put at the lanes (bytes) of `lanes` whose code is 15;
 * returns 0, or 1 for a corrupt step. */
static inline __attribute__((always_inline)) MERGE2 int esc_fix(__m512i *x, __m512i codes, __mmask64 lanes,
                                                               unsigned nd, const uint8_t **esc,
                                                               const uint8_t *esc_end)
{
    __mmask64 e = _mm512_mask_cmpeq_epi8_mask(lanes, codes, _mm512_set1_epi8(WV_PAIR_ESC));
    __mmask64 bad = _mm512_mask_cmpgt_epu8_mask(lanes & ~e, codes, _mm512_set1_epi8((char)(nd - 1)));
    size_t cnt = (size_t)__builtin_popcountll(e);
    if (bad || cnt > (size_t)(esc_end - *esc)) return 1;
    *x = _mm512_mask_expandloadu_epi8(*x, e, *esc);
    *esc += cnt;
    return 0;
}

/* 32 BF16/F16 elements from 16 PAIRS symbols; returns 1 for a corrupt step. */
static inline __attribute__((always_inline)) MERGE2 int pairs_out(uint8_t *out, const uint8_t *low, __m512i e,
                                                                  __m512i lut, __m512i idx, __m512i top, unsigned nd,
                                                                  const uint8_t **esc, const uint8_t *esc_end, int rot)
{
    const __m512i m4 = _mm512_set1_epi32(15);
    const __mmask64 odd = 0xaaaaaaaaaaaaaaaaull;
    __m512i hi = _mm512_and_si512(_mm512_srli_epi32(e, 4), m4), lo = _mm512_and_si512(e, m4);
    __mmask16 bad = _mm512_cmpgt_epu32_mask(_mm512_max_epu32(hi, lo), top);
    __m512i h = _mm512_shuffle_epi8(lut, hi), l = _mm512_shuffle_epi8(lut, lo);
    __m512i x = _mm512_maskz_permutex2var_epi8(odd, h, idx, l);
    if (bad && esc_fix(&x, _mm512_maskz_permutex2var_epi8(odd, hi, idx, lo), odd, nd, esc, esc_end)) return 1;
    __m512i w = _mm512_or_si512(x, _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)low)));
    if (rot) w = _mm512_shrdi_epi16(w, w, 1);
    _mm512_storeu_si512((void *)out, w);
    return 0;
}

static inline __attribute__((always_inline)) MERGE2 size_t pairs_one(wv_rans_dec *d, uint8_t *out, const uint8_t *low,
                                                                     const uint8_t *dict, unsigned nd,
                                                                     const uint8_t **esc, const uint8_t *esc_end,
                                                                     int rot)
{
    uint8_t d16[16] = {0};
    memcpy(d16, dict, nd);
    const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)d16));
    const __m512i top = _mm512_set1_epi32((int)nd - 1);
    uint8_t ix[64] = {0};
    for (unsigned m = 0; m < 32; m++) ix[2 * m + 1] = (uint8_t)((m & 1 ? 64 : 0) + 4 * (m >> 1));
    const __m512i idx = _mm512_loadu_si512((const void *)ix);
    merge2_run r = merge2_load(d, out, low);
    const uint8_t *e = *esc;
    int corrupt = 0;
    for (; !corrupt && merge2_fits(&r); r.i += WV_RANS_LANES) {
        __m512i e0 = merge2_step(&r.x[0], &r.p, r.tab), e1 = merge2_step(&r.x[1], &r.p, r.tab);
        corrupt = pairs_out(r.out + 4 * r.i, r.low + 2 * r.i, e0, lut, idx, top, nd, &e, esc_end, rot) ||
                  pairs_out(r.out + 4 * r.i + 64, r.low + 2 * r.i + 32, e1, lut, idx, top, nd, &e, esc_end, rot);
    }
    merge2_store(d, &r);
    *esc = e;
    return corrupt ? WV_ERROR(WV_ERR_CORRUPT) : d->i;
}

MERGE2 static size_t pairs_avx512(wv_rans_dec *d, uint8_t *out, const uint8_t *low, const uint8_t *dict, unsigned nd,
                                  const uint8_t **esc, const uint8_t *esc_end, int rot)
{
    return rot ? pairs_one(d, out, low, dict, nd, esc, esc_end, 1) : pairs_one(d, out, low, dict, nd, esc, esc_end, 0);
}

/* F32 PAIRS: each 16-lane step's codes go through the dictionary with one byte shuffle
 * (element 2m's code in byte 0 of dword m, element 2m+1's in byte 1), then two out4 calls
 * write its 32 elements. */
static inline __attribute__((always_inline)) MERGE2 size_t pairs4_one(wv_rans_dec *d, uint8_t *out,
                                                                      const uint8_t *const *low, const uint8_t *dict,
                                                                      unsigned nd, const uint8_t **esc,
                                                                      const uint8_t *esc_end, int rot)
{
    uint8_t d16[16] = {0};
    memcpy(d16, dict, nd);
    const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)d16));
    const __m512i top = _mm512_set1_epi8((char)(nd - 1)), m4 = _mm512_set1_epi32(15);
    const __m512i idx0 = _mm512_load_si512((const void *)idx4_pairs[0]);
    const __m512i idx1 = _mm512_load_si512((const void *)idx4_pairs[1]);
    const uint8_t *l1 = low[0], *l2 = low[1], *l3 = low[2], *e = *esc;
    merge2_run r = merge2_load(d, out, NULL);
    int corrupt = 0;
    for (; !corrupt && merge2_fits(&r); r.i += WV_RANS_LANES) {
        __m512i s[2];
        s[0] = merge2_step(&r.x[0], &r.p, r.tab);
        s[1] = merge2_step(&r.x[1], &r.p, r.tab);
        for (int g = 0; g < 2; g++) {
            size_t el = 2 * r.i + 32 * g;
            __m512i codes = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(s[g], 4), m4),
                                            _mm512_slli_epi32(_mm512_and_si512(s[g], m4), 8));
            __m512i x = _mm512_shuffle_epi8(lut, codes);
            if (_mm512_cmpgt_epu8_mask(codes, top) && esc_fix(&x, codes, 0x3333333333333333ull, nd, &e, esc_end)) {
                corrupt = 1;
                break;
            }
            out4(r.out + 4 * el, l1 + el, l2 + el, l3 + el, x, idx0, rot);
            out4(r.out + 4 * el + 64, l1 + el + 16, l2 + el + 16, l3 + el + 16, x, idx1, rot);
        }
    }
    merge2_store(d, &r);
    *esc = e;
    return corrupt ? WV_ERROR(WV_ERR_CORRUPT) : d->i;
}

MERGE2 static size_t pairs4_avx512(wv_rans_dec *d, uint8_t *out, const uint8_t *const *low, const uint8_t *dict,
                                   unsigned nd, const uint8_t **esc, const uint8_t *esc_end, int rot)
{
    return rot ? pairs4_one(d, out, low, dict, nd, esc, esc_end, 1) : pairs4_one(d, out, low, dict, nd, esc, esc_end, 0);
}

size_t wv_rans_dec_merge_pairs(wv_rans_dec *d, uint8_t *out, unsigned k, const uint8_t *const *low, int rot,
                               const uint8_t *dict, unsigned nd, const uint8_t **esc, const uint8_t *esc_end)
{
    if (!merge2_on || d->cx) return d->i;
    if (k == 2) return pairs_avx512(d, out, low[0], dict, nd, esc, esc_end, rot);
    return k == 4 ? pairs4_avx512(d, out, low, dict, nd, esc, esc_end, rot) : d->i;
}

size_t wv_rans_dec_init(wv_rans_dec *d, uint8_t *dst, size_t n, const uint8_t *src, size_t size,
                        const uint8_t *cx, const uint32_t *tab)
{
    size_t hdr = read_states(src, size, d->st);
    WV_FORWARD_IF_ERROR(hdr);
    WV_RETURN_ERROR_IF((size - hdr) % 2, WV_ERR_CORRUPT);
    d->p = src + hdr;
    d->end = src + size;
    d->dst = dst;
    d->n = n;
    d->coded = n - (n < WV_RANS_LANES ? n : WV_RANS_LANES);
    d->i = 0;
    d->cx = cx;
    d->tab = tab;
    d->dom = NULL;
    return 0;
}

size_t wv_rans_dec_finish(wv_rans_dec *d)
{
    uint32_t *st = d->st;
    const uint8_t *p = d->p, *end = d->end, *cx = d->cx;
    const uint32_t *tab = d->tab;
    uint8_t *dst = d->dst;
    size_t i = d->i, n = d->n, coded = d->coded;
    i += dec_blocks(st, &p, end, dst + i, coded - i, cx ? cx + i : NULL, tab, cx ? NULL : d->dom);
    if (coded - i >= WV_RANS_LANES) {
        /* Fewer than 32 words left but whole blocks of symbols: a low-entropy plane (an xor
         * plane at 0.08 bits per symbol decodes ~6500 symbols from its last 32 words).
         * Continue the block kernel on a zero-padded copy; it stops once it has read past
         * the real words, which only a corrupt stream does.  MiniLM BF16 fine-tune xor
         * frames against the FP32 base, 40 hot frames: 740 -> 909 MB/s. */
        uint8_t tail[4 * WV_RANS_LANES] = {0};
        size_t rem = (size_t)(end - p);
        WV_RETURN_ERROR_IF(rem >= 2 * WV_RANS_LANES, WV_ERR_CORRUPT); /* the kernels stop below this */
        memcpy(tail, p, rem);
        const uint8_t *q = tail;
        i += dec_blocks(st, &q, tail + rem + 2 * WV_RANS_LANES, dst + i, coded - i, cx ? cx + i : NULL, tab,
                        cx ? NULL : d->dom);
        WV_RETURN_ERROR_IF((size_t)(q - tail) > rem, WV_ERR_CORRUPT);
        p += q - tail;
    }
    for (; i < coded; i++) { /* checked step for the tail */
        uint32_t x = dec_sym(st[i % WV_RANS_LANES], i, dst, cx, tab);
        if (x < WV_RANS_L) {
            WV_RETURN_ERROR_IF(end - p < 2, WV_ERR_CORRUPT);
            x = (x << 16) | wv_rd16(p);
            p += 2;
        }
        st[i % WV_RANS_LANES] = x;
    }
    for (; i < n; i++) { /* each lane's last symbol sits in its final state */
        uint32_t v = st[i % WV_RANS_LANES] - WV_RANS_L;
        WV_RETURN_ERROR_IF(v > 255, WV_ERR_CORRUPT);
        dst[i] = (uint8_t)v;
        st[i % WV_RANS_LANES] = WV_RANS_L;
    }
    for (int l = 0; l < WV_RANS_LANES; l++) WV_RETURN_ERROR_IF(st[l] != WV_RANS_L, WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF(p != end, WV_ERR_CORRUPT);
    return n;
}

size_t wv_rans_dec_pair(wv_rans_dec *a, wv_rans_dec *b)
{
    if (dec_blocks == blocks_avx512) pair_avx512(a, b);
    else if (dec_blocks != blocks_scalar_any) pair_avx2(a, b);
    WV_FORWARD_IF_ERROR(wv_rans_dec_finish(a));
    return wv_rans_dec_finish(b);
}
