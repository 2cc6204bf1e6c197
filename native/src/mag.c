/* Distance payloads (mag.h; docs/FORMAT.md "Distance payload").
 *
 * An element v (W = 16 or 32 bits, sign-magnitude) is mapped to an ordered integer
 * o(v) = v ^ (sign ? 0x7f..f : 0), so that neighbouring floats are neighbouring
 * integers (-0 and +0 included), then d = o(member) - o(prediction) mod 2^W and
 * u = zigzag(d).  Symbol: u itself when u < 16, else 11 + bit length of u, with the
 * bits under u's leading one appended to a raw bit stream (LSB first).
 *
 * Why distances rather than XOR: a fine-tune moves a weight by a few units in the
 * last place, and a move across a power of two flips many XOR bits but changes the
 * distance by one.  Why one symbol per element: rANS pays one table lookup per
 * symbol whatever its entropy, and XOR planes cost k symbols per element.  Order-0
 * plus context estimates on the shared MiniLM fine-tunes against the FP32 base
 * (stored/raw; XOR planes with 12 contexts -> distances with 4 contexts):
 * BF16 fine-tune 0.0897 -> 0.0767, frozen BF16 fine-tune 0.0542 -> 0.0486, FP32
 * fine-tune 0.3376 -> 0.3073 (the ckpt coder: 0.0925, 0.0505, 0.3070).
 * The bits under the leading one are close to uniform (ckpt.c measured the same on
 * FP32 weights), so coding them raw costs nothing and decodes at memory speed.
 */
#include "mag.h"
#include "planes.h"
#include <immintrin.h>

enum { SYM_CONST = 1, SYM_RANS = 2, SYM_SPARSE = 3 /* frame version >= 4 */ };
#define HDR 9 /* [Sym_Mode u8][Sym_Size u32][Bits_Size u32] */
#define NCTX_MAX 12

/* Encoder: a context table must save this many bytes to be used (each costs a
 * 4096-slot build per decoded frame).  Contexts are worth their decode time here:
 * capped at 4 tables, the shared BF16 fine-tune grew 0.0738 -> 0.0778 of raw and the
 * frozen one 0.0473 -> 0.0492 (beyond the 1% the old per-tensor choice allows) for
 * ~16% faster decode (853 -> 986 MB/cpu-s); one table: 0.0904 at 1218 MB/cpu-s. */
#define TABLE_COST 64

int wv_mag_supported(unsigned dtype)
{
    unsigned sh, mask;
    int bias;
    return wv_exp_layout(dtype, &sh, &mask, &bias);
}

static inline __attribute__((always_inline)) uint32_t ordered(uint32_t v, unsigned w)
{
    return v ^ ((0u - (v >> (w - 1))) >> (33 - w));
}

static inline __attribute__((always_inline)) uint32_t load_el(const uint8_t *p, size_t i, unsigned k)
{
    return k == 2 ? wv_rd16(p + 2 * i) : wv_rd32(p + 4 * i);
}

/* Context of element i with `tables` contexts: octaves below 1.0 of the prediction,
 * clamp(bias - e, 0, 11), merged by three for 4 tables ((o * 11) >> 5 == o / 3 here). */
static inline __attribute__((always_inline)) void contexts_body(uint8_t *cx, const uint8_t *pred, size_t n_el,
                                                                unsigned k, unsigned sh, unsigned mask, int bias,
                                                                unsigned tables)
{
    for (size_t i = 0; i < n_el; i++) {
        int o = bias - (int)((load_el(pred, i, k) >> sh) & mask);
        o = o < 0 ? 0 : o > NCTX_MAX - 1 ? NCTX_MAX - 1 : o;
        cx[i] = (uint8_t)(tables == NCTX_MAX ? o : (o * 11) >> 5);
    }
}

static void contexts_scalar(uint8_t *cx, const uint8_t *pred, size_t n_el, unsigned k, unsigned sh, unsigned mask,
                            int bias, unsigned tables)
{
    if (k == 2 && tables == 4) contexts_body(cx, pred, n_el, 2, sh, mask, bias, 4);
    else if (k == 2) contexts_body(cx, pred, n_el, 2, sh, mask, bias, NCTX_MAX);
    else if (tables == 4) contexts_body(cx, pred, n_el, 4, sh, mask, bias, 4);
    else contexts_body(cx, pred, n_el, 4, sh, mask, bias, NCTX_MAX);
}

/* AVX2: 16 contexts per step in 16-bit lanes (F32's exponents narrowed first).  The
 * compiler did not vectorise the scalar loop: 4.9% of a BF16 fine-tune's decode. */
__attribute__((target("avx2"))) static void contexts_avx2(uint8_t *cx, const uint8_t *pred, size_t n_el, unsigned k,
                                                          unsigned sh, unsigned mask, int bias, unsigned tables)
{
    const __m128i shift = _mm_cvtsi32_si128((int)sh);
    const __m256i m = _mm256_set1_epi16((short)mask), b = _mm256_set1_epi16((short)bias);
    const __m256i top = _mm256_set1_epi16(NCTX_MAX - 1), eleven = _mm256_set1_epi16(11), zero = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n_el; i += 16) {
        __m256i e;
        if (k == 2) {
            e = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(pred + 2 * i)), shift), m);
        } else {
            __m256i lo = _mm256_srl_epi32(_mm256_loadu_si256((const __m256i *)(pred + 4 * i)), shift);
            __m256i hi = _mm256_srl_epi32(_mm256_loadu_si256((const __m256i *)(pred + 4 * i + 32)), shift);
            lo = _mm256_and_si256(lo, _mm256_set1_epi32((int)mask));
            hi = _mm256_and_si256(hi, _mm256_set1_epi32((int)mask));
            e = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xd8);
        }
        __m256i o = _mm256_min_epi16(_mm256_max_epi16(_mm256_sub_epi16(b, e), zero), top);
        if (tables == 4) o = _mm256_srli_epi16(_mm256_mullo_epi16(o, eleven), 5);
        __m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(o), _mm256_extracti128_si256(o, 1));
        _mm_storeu_si128((__m128i *)(cx + i), bytes);
    }
    contexts_scalar(cx + i, pred + k * i, n_el - i, k, sh, mask, bias, tables);
}

static int simd; /* wv_mag_select_kernel */

static void contexts(uint8_t *cx, const uint8_t *pred, size_t n_el, unsigned dtype, unsigned tables)
{
    unsigned sh = 0, mask = 0;
    int bias = 0;
    wv_exp_layout(dtype, &sh, &mask, &bias);
    (simd > 0 ? contexts_avx2 : contexts_scalar)(cx, pred, n_el, wv_dtype_size(dtype), sh, mask, bias, tables);
}

/* ---- encoder ---- */

/* zigzag(o(src[i]) - o(pred[i]) mod 2^W) */
static inline __attribute__((always_inline)) uint32_t distance_code(const uint8_t *src, const uint8_t *pred, size_t i,
                                                                    unsigned k)
{
    const unsigned w = 8 * k;
    const uint32_t wmask = w == 32 ? 0xffffffffu : 0xffffu;
    uint32_t d = (ordered(load_el(src, i, k), w) - ordered(load_el(pred, i, k), w)) & wmask;
    return ((d << 1) ^ (0u - (d >> (w - 1)))) & wmask;
}

/* The raw bit stream (LSB first) as the encoder appends to it. */
typedef struct {
    uint64_t acc;
    unsigned n;
    size_t o;
} bit_sink;

static inline __attribute__((always_inline)) void sink_put(bit_sink *b, uint8_t *bits, uint32_t v, unsigned len)
{
    b->acc |= (uint64_t)v << b->n;
    b->n += len;
    if (b->n >= 32) {
        wv_wr32(bits + b->o, (uint32_t)b->acc);
        b->o += 4;
        b->acc >>= 32;
        b->n -= 32;
    }
}

/* Symbols of elements from..n_el into sym[], their raw bits onto b; returns how many
 * symbols are not 0 (the sparse rule's count). */
static inline __attribute__((always_inline)) size_t symbols_body(uint8_t *sym, uint8_t *bits, bit_sink *b,
                                                                 const uint8_t *src, const uint8_t *pred,
                                                                 size_t from, size_t n_el, unsigned k)
{
    size_t nz = 0;
    for (size_t i = from; i < n_el; i++) {
        uint32_t u = distance_code(src, pred, i, k);
        nz += u != 0;
        if (u < WV_MAG_DIRECT) { sym[i] = (uint8_t)u; continue; }
        unsigned len = 31 - (unsigned)__builtin_clz(u); /* bits under the leading one */
        sym[i] = (uint8_t)(WV_MAG_DIRECT - 4 + len);
        sink_put(b, bits, u & ((1u << len) - 1), len);
    }
    return nz;
}

static size_t symbols_scalar(uint8_t *sym, uint8_t *bits, bit_sink *b, const uint8_t *src, const uint8_t *pred,
                             size_t n_el, unsigned k)
{
    return k == 2 ? symbols_body(sym, bits, b, src, pred, 0, n_el, 2) : symbols_body(sym, bits, b, src, pred, 0, n_el, 4);
}

/* AVX-512 (F, BW, CD): distances, lengths (vplzcntd) and symbols of 32 BF16/F16 or 16 F32
 * elements a step; only the raw bits go on one element at a time, for the lanes that have
 * any.  The scalar loop was ~30% of a BF16 member's encode (perf, BF16 fine-tune against
 * the FP32 base), its arithmetic, not its branches: branch-free it ran 5% slower. */
#define AVX512_ENC __attribute__((target("avx512f,avx512bw,avx512cd,avx512vl")))

static inline __attribute__((always_inline)) AVX512_ENC void put_lanes(bit_sink *b, uint8_t *bits, __m512i u,
                                                                       __m512i len, __mmask16 big)
{
    uint32_t uu[16], ll[16];
    _mm512_storeu_si512(uu, u);
    _mm512_storeu_si512(ll, len);
    for (unsigned m = big; m; m &= m - 1) {
        unsigned j = (unsigned)__builtin_ctz(m);
        sink_put(b, bits, uu[j] & ((1u << ll[j]) - 1), ll[j]);
    }
}

/* 16 zero-extended codes u: their symbols (as bytes into sym) and raw fields onto b. */
static inline __attribute__((always_inline)) AVX512_ENC void code_lanes(uint8_t *sym, uint8_t *bits, bit_sink *b,
                                                                        __m512i u)
{
    __mmask16 big = _mm512_cmpge_epu32_mask(u, _mm512_set1_epi32(WV_MAG_DIRECT));
    __m512i len = _mm512_sub_epi32(_mm512_set1_epi32(31), _mm512_lzcnt_epi32(u));
    __m512i s = _mm512_mask_add_epi32(u, big, len, _mm512_set1_epi32(WV_MAG_DIRECT - 4));
    _mm_storeu_si128((__m128i *)sym, _mm512_cvtepi32_epi8(s));
    if (big) put_lanes(b, bits, u, len, big);
}

AVX512_ENC static size_t symbols_avx512(uint8_t *sym, uint8_t *bits, bit_sink *b, const uint8_t *src,
                                        const uint8_t *pred, size_t n_el, unsigned k)
{
    size_t nz = 0, i = 0;
    if (k == 2) {
        const __m512i top = _mm512_set1_epi16(0x7fff);
        for (; i + 32 <= n_el; i += 32) {
            __m512i x = _mm512_loadu_si512(src + 2 * i), p = _mm512_loadu_si512(pred + 2 * i);
            x = _mm512_xor_si512(x, _mm512_and_si512(_mm512_srai_epi16(x, 15), top)); /* ordered() */
            p = _mm512_xor_si512(p, _mm512_and_si512(_mm512_srai_epi16(p, 15), top));
            __m512i d = _mm512_sub_epi16(x, p);
            __m512i u = _mm512_xor_si512(_mm512_slli_epi16(d, 1), _mm512_srai_epi16(d, 15));
            nz += (size_t)__builtin_popcount(_mm512_test_epi16_mask(u, u));
            code_lanes(sym + i, bits, b, _mm512_cvtepu16_epi32(_mm512_castsi512_si256(u)));
            code_lanes(sym + i + 16, bits, b, _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(u, 1)));
        }
        return nz + symbols_body(sym, bits, b, src, pred, i, n_el, 2);
    }
    const __m512i top = _mm512_set1_epi32(0x7fffffff);
    for (; i + 16 <= n_el; i += 16) {
        __m512i x = _mm512_loadu_si512(src + 4 * i), p = _mm512_loadu_si512(pred + 4 * i);
        x = _mm512_xor_si512(x, _mm512_and_si512(_mm512_srai_epi32(x, 31), top));
        p = _mm512_xor_si512(p, _mm512_and_si512(_mm512_srai_epi32(p, 31), top));
        __m512i d = _mm512_sub_epi32(x, p);
        __m512i u = _mm512_xor_si512(_mm512_slli_epi32(d, 1), _mm512_srai_epi32(d, 31));
        nz += (size_t)__builtin_popcount(_mm512_test_epi32_mask(u, u));
        code_lanes(sym + i, bits, b, u);
    }
    return nz + symbols_body(sym, bits, b, src, pred, i, n_el, 4);
}

typedef size_t (*symbols_fn)(uint8_t *, uint8_t *, bit_sink *, const uint8_t *, const uint8_t *, size_t, unsigned);
static symbols_fn symbols_kernel = symbols_scalar; /* wv_mag_select_kernel */

/* Symbols into sym[] and raw bits into bits[] (*nbits: their bytes); returns how many
 * symbols are not 0. */
static size_t symbols(uint8_t *sym, uint8_t *bits, size_t *nbits, const uint8_t *src, const uint8_t *pred,
                      size_t n_el, unsigned k)
{
    bit_sink b = {0, 0, 0};
    size_t nz = symbols_kernel(sym, bits, &b, src, pred, n_el, k);
    for (; b.n > 0; b.n = b.n > 8 ? b.n - 8 : 0, b.acc >>= 8) bits[b.o++] = (uint8_t)b.acc;
    *nbits = b.o;
    return nz;
}

static double table_cost(const uint32_t count[256], uint16_t freq[256])
{
    uint8_t tmp[WV_RANS_TABLE_MAX_BYTES];
    wv_rans_normalize(count, freq);
    return wv_rans_cost_bits(count, freq) / 8 + (double)wv_rans_write_table(tmp, freq) + TABLE_COST;
}

/* Table slots: 12 contexts in 0..11, 4 merged in 12..15, one table in 16. */
static unsigned choose_tables(wv_ctx *c, const uint8_t *sym, size_t n_el, unsigned *slot, double *bytes)
{
    wv_hist_ctx(sym, c->cx, n_el, NCTX_MAX, c->hist);
    memset(c->hist[12], 0, 5 * sizeof c->hist[0]);
    double cost12 = 0, cost4 = 0, cost1;
    for (unsigned t = 0; t < NCTX_MAX; t++) {
        for (unsigned s = 0; s < 256; s++) {
            c->hist[12 + (t * 11 >> 5)][s] += c->hist[t][s];
            c->hist[16][s] += c->hist[t][s];
        }
        cost12 += table_cost(c->hist[t], c->freq[t]);
    }
    for (unsigned t = 12; t < 16; t++) cost4 += table_cost(c->hist[t], c->freq[t]);
    cost1 = table_cost(c->hist[16], c->freq[16]);
    /* the estimate for wv_mag_estimate: + 4 + two streams' states and renorm slack */
    double streams = 4 + 2 * 118 + n_el / 512.0;
    if (!c->use_contexts || (cost1 <= cost4 && cost1 <= cost12)) { *slot = 16; *bytes = cost1 + streams; return 1; }
    if (cost4 <= cost12) { *slot = 12; *bytes = cost4 + streams; return 4; }
    *slot = 0;
    *bytes = cost12 + streams;
    return NCTX_MAX;
}

/* Sparse mode (frame version >= 4): the positions of the elements whose symbol is not 0, as
 * gaps, and their symbols, in one rANS stream of 2 x Count symbols (gap class, then symbol,
 * with a table each); the decoder writes the prediction and patches only those elements.
 * Why: a near-identical member (the shared BF16 fine-tune against the FP32 fine-tune, its RNE
 * cast but for 0.4% of its elements) costs one rANS symbol per element in mode RANS.
 *
 * Rule: mode SPARSE is coded when at most SPARSE_MAX_SHARE of the symbols are not 0, and kept
 * when it is at most SPARSE_MARGIN larger than mode RANS.  4 Mi BF16 elements against an F32
 * base, share moved (80% by one ulp), MB per CPU second RANS -> SPARSE, best of 15, same run
 * (the cast alone: 8152): 0.4% 2850 -> 7592, 3% 1785 -> 3777, 6% 1440 -> 2646, 10% 1514 -> 2174,
 * 12.5% 1506 -> 2009, 15% 1495 -> 1752, 20% 1420 -> 1507 (SPARSE forced); the sizes differ by
 * less than 0.1% from 6% on and SPARSE is smaller below (0.925 of RANS at 0.4%).  So SPARSE is
 * tried up to 1/8, where it still decodes 1.3x faster, and may cost 0.5% more bytes there. */
#define GAP_CLASS_MAX (WV_MAG_DIRECT - 4 + 31) /* a gap below 2^32 */
#define SPARSE_MAX_SHARE (1.0 / 8)
#define SPARSE_MARGIN 0.005

/* Size class of a gap or distance code u (u itself below 16, else 12 + the length of the
 * raw field under its leading one) and that length. */
static inline __attribute__((always_inline)) unsigned size_class(uint32_t u, unsigned *len)
{
    if (u < WV_MAG_DIRECT) {
        *len = 0;
        return u;
    }
    *len = 31 - (unsigned)__builtin_clz(u);
    return WV_MAG_DIRECT - 4 + *len;
}

/* The first i >= from with sym[i] != 0, or n; 8 symbols at a time, as listed frames are mostly
 * 0.  Encode of the BF16 fine-tune against the FP32 fine-tune, MB per CPU second, mode RANS
 * alone -> both modes tried: 505 -> 330 with byte loops, 554 -> 519 with this. */
static inline size_t next_listed(const uint8_t *sym, size_t from, size_t n)
{
    size_t i = from;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, sym + i, 8);
        if (v) return i + ((unsigned)__builtin_ctzll(v) >> 3);
    }
    while (i < n && !sym[i]) i++;
    return i;
}

/* The count of non-zero symbols (nz), when the rule below lets sparse mode be tried; else 0. */
static size_t sparse_count(const wv_ctx *c, size_t nz, size_t n_el)
{
    if (!c->use_sparse) return 0;
    size_t most = c->use_sparse == 2 ? n_el : (size_t)(SPARSE_MAX_SHARE * n_el);
    return nz <= most ? nz : 0;
}

/* The list: list[2j] = class of entry j's gap (elements skipped since the previous entry),
 * list[2j + 1] = its symbol; cx alternates tables 0 and 1.  Returns the gaps' raw bits. */
static size_t sparse_list(uint8_t *list, uint8_t *cx, const uint8_t *sym, size_t n_el)
{
    size_t j = 0, next = 0, gap_bits = 0;
    for (size_t i = next_listed(sym, 0, n_el); i < n_el; i = next_listed(sym, i + 1, n_el)) {
        unsigned len;
        list[j] = (uint8_t)size_class((uint32_t)(i - next), &len);
        list[j + 1] = sym[i];
        cx[j] = 0;
        cx[j + 1] = 1;
        gap_bits += len;
        j += 2;
        next = i + 1;
    }
    return gap_bits;
}

typedef struct {
    uint8_t *p, *end;
    uint64_t acc;
    unsigned n;
} bit_writer;

/* v < 2^len, len <= 31; 0 when dst is full */
static inline int put_bits(bit_writer *w, uint32_t v, unsigned len)
{
    w->acc |= (uint64_t)v << w->n;
    w->n += len;
    if (w->n < 32) return 1;
    if (w->end - w->p < 4) return 0;
    wv_wr32(w->p, (uint32_t)w->acc);
    w->p += 4;
    w->acc >>= 32;
    w->n -= 32;
    return 1;
}

static int flush_bits(bit_writer *w)
{
    for (; w->n > 0; w->n = w->n > 8 ? w->n - 8 : 0, w->acc >>= 8) {
        if (w->p == w->end) return 0;
        *w->p++ = (uint8_t)w->acc;
    }
    return 1;
}

static size_t sparse_encode(wv_ctx *c, uint8_t *dst, size_t cap, const uint8_t *sym, size_t n_el, size_t count,
                            const uint8_t *src, const uint8_t *pred, unsigned k)
{
    uint8_t *list = c->delta, *cx = c->cx; /* 2 x count <= 2 x n_el <= raw bytes; mode RANS is done with both */
    sparse_list(list, cx, sym, n_el);
    size_t o = HDR;
    WV_RETURN_ERROR_IF(cap < o + 4 + 2 * WV_RANS_TABLE_MAX_BYTES, WV_ERR_NOT_COMPRESSIBLE);
    wv_wr32(dst + o, (uint32_t)count);
    o += 4;
    wv_hist_ctx(list, cx, 2 * count, 2, c->hist);
    for (unsigned t = 0; t < 2; t++) {
        wv_rans_normalize(c->hist[t], c->freq[t]);
        o += wv_rans_write_table(dst + o, c->freq[t]);
        wv_rans_build_etab(c->freq[t], c->etab[t]);
    }
    size_t r = wv_rans_encode(dst + o, cap - o, list, 2 * count, cx, &c->etab[0][0], c->stream);
    WV_FORWARD_IF_ERROR(r);
    o += r;
    bit_writer w = {dst + o, dst + cap, 0, 0};
    int fits = 1;
    for (size_t i = next_listed(sym, 0, n_el), next = 0; i < n_el && fits; i = next_listed(sym, i + 1, n_el)) {
        unsigned len;
        uint32_t g = (uint32_t)(i - next);
        size_class(g, &len);
        fits = put_bits(&w, g & ((1u << len) - 1), len);
        if (sym[i] >= WV_MAG_DIRECT) {
            uint32_t u = k == 2 ? distance_code(src, pred, i, 2) : distance_code(src, pred, i, 4);
            size_class(u, &len);
            fits = fits && put_bits(&w, u & ((1u << len) - 1), len);
        }
        next = i + 1;
    }
    WV_RETURN_ERROR_IF(!fits || !flush_bits(&w), WV_ERR_NOT_COMPRESSIBLE);
    dst[0] = SYM_SPARSE;
    wv_wr32(dst + 1, (uint32_t)(o - HDR));
    wv_wr32(dst + 5, (uint32_t)(w.p - (dst + o)));
    return (size_t)(w.p - dst);
}

/* Estimated sparse body for count (> 0) entries whose distance fields take value_bytes, its
 * tables counted as choose_tables counts mode RANS's (TABLE_COST each).  Overwrites c->delta,
 * whose bits an estimate does not use. */
static double sparse_estimate(wv_ctx *c, const uint8_t *sym, size_t n_el, size_t count, size_t value_bytes)
{
    size_t gap_bits = sparse_list(c->delta, c->cx, sym, n_el);
    wv_hist_ctx(c->delta, c->cx, 2 * count, 2, c->hist);
    double stream = 4 + 118 + count / 256.0; /* one stream: states and renorm slack */
    return HDR + 4 + table_cost(c->hist[0], c->freq[0]) + table_cost(c->hist[1], c->freq[1]) + stream + value_bytes +
           gap_bits / 8.0;
}

/* Sparse mode when it is at most SPARSE_MARGIN larger than mode RANS (or RANS does not fit). */
static int sparse_pays(const wv_ctx *c, size_t sparse, size_t rans)
{
    return c->use_sparse == 2 || wv_isError(rans) || (double)sparse <= (double)rans * (1 + SPARSE_MARGIN);
}

/* The sizes in the header, then the raw bits: the whole body is o + nbits bytes. */
static size_t finish_body(uint8_t *dst, size_t cap, size_t o, const uint8_t *bits, size_t nbits)
{
    WV_RETURN_ERROR_IF(cap - o < nbits, WV_ERR_NOT_COMPRESSIBLE);
    wv_wr32(dst + 1, (uint32_t)(o - HDR));
    wv_wr32(dst + 5, (uint32_t)nbits);
    memcpy(dst + o, bits, nbits);
    return o + nbits;
}

static size_t rans_encode(wv_ctx *c, uint8_t *dst, size_t cap, const uint8_t *sym, size_t n_el, const uint8_t *pred,
                          unsigned dtype, size_t nbits)
{
    size_t o = HDR;
    dst[0] = SYM_RANS;
    contexts(c->cx, pred, n_el, dtype, NCTX_MAX);
    double estimate;
    unsigned slot, tables = choose_tables(c, sym, n_el, &slot, &estimate);
    WV_RETURN_ERROR_IF(cap - o < 1 + tables * WV_RANS_TABLE_MAX_BYTES + 4, WV_ERR_NOT_COMPRESSIBLE);
    dst[o++] = (uint8_t)tables;
    for (unsigned t = slot; t < slot + tables; t++) {
        o += wv_rans_write_table(dst + o, c->freq[t]);
        wv_rans_build_etab(c->freq[t], c->etab[t]);
    }
    const uint8_t *cx = tables == 1 ? NULL : c->cx;
    if (tables == 4)
        for (size_t j = 0; j < n_el; j++) c->cx[j] = (uint8_t)(c->cx[j] * 11 >> 5);
    size_t h = n_el / 2, at = o;
    o += 4;
    size_t r = wv_rans_encode(dst + o, cap - o, sym, h, cx, &c->etab[slot][0], c->stream);
    WV_FORWARD_IF_ERROR(r);
    wv_wr32(dst + at, (uint32_t)r);
    o += r;
    r = wv_rans_encode(dst + o, cap - o, sym + h, n_el - h, cx ? cx + h : NULL, &c->etab[slot][0], c->stream);
    WV_FORWARD_IF_ERROR(r);
    return finish_body(dst, cap, o + r, c->delta, nbits);
}

size_t wv_mag_encode(wv_ctx *c, uint8_t *dst, size_t cap, const uint8_t *src, const uint8_t *pred, size_t n_el,
                     unsigned dtype)
{
    unsigned k = wv_dtype_size(dtype);
    WV_RETURN_ERROR_IF(!wv_mag_supported(dtype), WV_ERR_BAD_DTYPE);
    /* a body that does not beat the raw bytes is of no use; the bound also keeps the
     * rANS encoder inside its scratch (c->stream holds raw + 1024 bytes) */
    if (cap > n_el * k) cap = n_el * k;
    WV_RETURN_ERROR_IF(cap < HDR + 1, WV_ERR_NOT_COMPRESSIBLE);
    uint8_t *sym = c->planes;
    size_t nbits, nz = symbols(sym, c->delta, &nbits, src, pred, n_el, k);
    size_t i = 1;
    while (i < n_el && sym[i] == sym[0]) i++;
    if (i >= n_el) {
        dst[0] = SYM_CONST;
        dst[HDR] = n_el ? sym[0] : 0;
        return finish_body(dst, cap, HDR + 1, c->delta, nbits);
    }
    size_t count = sparse_count(c, nz, n_el);
    size_t r = rans_encode(c, dst, cap, sym, n_el, pred, dtype, nbits);
    if (count) { /* c->alt holds a payload bound, more than cap */
        size_t s = sparse_encode(c, c->alt, cap, sym, n_el, count, src, pred, k);
        if (!wv_isError(s) && sparse_pays(c, s, r)) {
            memcpy(dst, c->alt, s);
            return s;
        }
    }
    return r;
}

size_t wv_mag_estimate(wv_ctx *c, const uint8_t *src, const uint8_t *pred, size_t n_el, unsigned dtype)
{
    unsigned k = wv_dtype_size(dtype);
    WV_RETURN_ERROR_IF(!wv_mag_supported(dtype), WV_ERR_BAD_DTYPE);
    uint8_t *sym = c->planes;
    size_t nbits, nz = symbols(sym, c->delta, &nbits, src, pred, n_el, k);
    size_t i = 1;
    while (i < n_el && sym[i] == sym[0]) i++;
    if (i >= n_el) return HDR + 1 + nbits;
    size_t count = sparse_count(c, nz, n_el);
    double sparse = count ? sparse_estimate(c, sym, n_el, count, nbits) : 0; /* before contexts overwrite c->cx */
    contexts(c->cx, pred, n_el, dtype, NCTX_MAX);
    double bytes;
    unsigned slot;
    choose_tables(c, sym, n_el, &slot, &bytes);
    size_t rans = HDR + 1 + (size_t)bytes + nbits;
    return count && sparse_pays(c, (size_t)sparse, rans) ? (size_t)sparse : rans;
}

/* ---- decoder ---- */

/* 8 bytes of the bit stream from byte b on, zeros past its end. */
static inline __attribute__((always_inline)) uint64_t load_bits(const uint8_t *bits, size_t nbytes, size_t b)
{
    uint64_t v = 0;
    if (b + 8 <= nbytes) {
        memcpy(&v, bits + b, 8);
        return v;
    }
    for (size_t j = 0; j < 8 && b + j < nbytes; j++) v |= (uint64_t)bits[b + j] << (8 * j);
    return v;
}

/* The gap or distance code of class s, its raw field read from the bit stream at *pos. */
static inline __attribute__((always_inline)) uint32_t read_code(unsigned s, const uint8_t *bits, size_t nbytes,
                                                                uint64_t *pos)
{
    if (s < WV_MAG_DIRECT) return s;
    unsigned len = (s - (WV_MAG_DIRECT - 4)) & 31;
    uint64_t v = load_bits(bits, nbytes, (size_t)(*pos >> 3)) >> (*pos & 7);
    *pos += len;
    return 1u << len | ((uint32_t)v & ((1u << len) - 1));
}

/* One element from its symbol, the bit stream at *pos and its prediction. */
static inline __attribute__((always_inline)) uint32_t rebuild_one(unsigned s, const uint8_t *bits, size_t nbytes,
                                                                  uint64_t *pos, uint32_t p, unsigned w)
{
    uint32_t u = read_code(s, bits, nbytes, pos);
    uint32_t d = (u >> 1) ^ (0u - (u & 1));
    return ordered((ordered(p, w) + d) & (w == 32 ? 0xffffffffu : 0xffffu), w);
}

static inline __attribute__((always_inline)) unsigned rebuild_scalar_body(uint8_t *dst, const uint8_t *sym,
                                                                          const uint8_t *pred, size_t from, size_t n,
                                                                          unsigned k, const uint8_t *bits,
                                                                          size_t nbytes, uint64_t *pos)
{
    unsigned top = 0;
    for (size_t i = from; i < n; i++) {
        top = sym[i] > top ? sym[i] : top;
        uint32_t x = rebuild_one(sym[i], bits, nbytes, pos, load_el(pred, i, k), 8 * k);
        if (k == 2) wv_wr16(dst + 2 * i, (uint16_t)x);
        else wv_wr32(dst + 4 * i, x);
    }
    return top;
}

/* Returns the largest symbol seen: the caller rejects the frame if it is out of range
 * (an invalid symbol only garbles output; the gathers' bounds check holds regardless). */
static unsigned rebuild_scalar(uint8_t *dst, const uint8_t *sym, const uint8_t *pred, size_t n, unsigned k,
                               const uint8_t *bits, size_t nbytes, uint64_t *pos)
{
    if (k == 2) return rebuild_scalar_body(dst, sym, pred, 0, n, 2, bits, nbytes, pos);
    return rebuild_scalar_body(dst, sym, pred, 0, n, 4, bits, nbytes, pos);
}

/* AVX2.  Lanes with raw bits find their bit offsets by a prefix sum of their lengths and
 * gather them (BF16/F16: <= 15 bits at offset <= 7, one 32-bit gather; F32: <= 31 bits,
 * two).  A step whose gathers could reach past the bit stream is done by the scalar
 * code.  F32 takes 8 elements per step in 32-bit lanes; BF16/F16 16 per step in 16-bit
 * lanes, widening to 32 bits only for steps with raw bits (under 1 in 4 on the shared
 * BF16 fine-tune): one hot 256 KiB frame's rebuild went ~4x fewer instructions. */
#define AVX2 __attribute__((target("avx2")))

static inline __attribute__((always_inline)) AVX2 __m256i prefix8(__m256i x)
{
    x = _mm256_add_epi32(x, _mm256_slli_si256(x, 4));
    x = _mm256_add_epi32(x, _mm256_slli_si256(x, 8));
    __m256i low_total = _mm256_permutevar8x32_epi32(x, _mm256_set1_epi32(3));
    return _mm256_add_epi32(x, _mm256_blend_epi32(_mm256_setzero_si256(), low_total, 0xf0));
}

/* Bit lengths of 8 symbols' raw fields (0 for direct symbols) and their inclusive prefix sum. */
static inline __attribute__((always_inline)) AVX2 __m256i raw_lengths(__m256i s, __m256i *inc)
{
    __m256i big = _mm256_cmpgt_epi32(s, _mm256_set1_epi32(WV_MAG_DIRECT - 1));
    __m256i len = _mm256_and_si256(big, _mm256_sub_epi32(s, _mm256_set1_epi32(WV_MAG_DIRECT - 4)));
    *inc = prefix8(len);
    return len;
}

/* u of 8 elements whose raw fields start at bit pos (bounds checked by the caller). */
static inline __attribute__((always_inline)) AVX2 __m256i gather_u(__m256i s, __m256i len, __m256i inc,
                                                                   const uint8_t *bits, size_t pos, unsigned k)
{
    const __m256i one = _mm256_set1_epi32(1);
    __m256i at = _mm256_add_epi32(_mm256_set1_epi32((int)pos), _mm256_sub_epi32(inc, len));
    __m256i byte = _mm256_srli_epi32(at, 3), sh = _mm256_and_si256(at, _mm256_set1_epi32(7));
    __m256i v = _mm256_srlv_epi32(_mm256_i32gather_epi32((const int *)bits, byte, 1), sh);
    if (k == 4) {
        __m256i hi = _mm256_i32gather_epi32((const int *)(bits + 4), byte, 1);
        v = _mm256_or_si256(v, _mm256_sllv_epi32(hi, _mm256_sub_epi32(_mm256_set1_epi32(32), sh)));
    }
    __m256i lead = _mm256_sllv_epi32(one, len);
    v = _mm256_and_si256(v, _mm256_sub_epi32(lead, one));
    return _mm256_blendv_epi8(s, _mm256_or_si256(lead, v), _mm256_cmpgt_epi32(len, _mm256_setzero_si256()));
}

static inline __attribute__((always_inline)) AVX2 __m256i ordered32_avx2(__m256i v)
{
    return _mm256_xor_si256(v, _mm256_srli_epi32(_mm256_srai_epi32(v, 31), 1));
}

static inline __attribute__((always_inline)) AVX2 __m256i ordered16_avx2(__m256i v)
{
    return _mm256_xor_si256(v, _mm256_and_si256(_mm256_srai_epi16(v, 15), _mm256_set1_epi16(0x7fff)));
}

static inline __attribute__((always_inline)) AVX2 unsigned hmax_epu32(__m256i v)
{
    uint32_t lanes[8];
    unsigned t = 0;
    _mm256_storeu_si256((__m256i *)lanes, v);
    for (int l = 0; l < 8; l++) t = lanes[l] > t ? lanes[l] : t;
    return t;
}

AVX2 static unsigned rebuild32_avx2(uint8_t *dst, const uint8_t *sym, const uint8_t *pred, size_t n,
                                    const uint8_t *bits, size_t nbytes, uint64_t *ppos)
{
    const __m256i one = _mm256_set1_epi32(1), zero = _mm256_setzero_si256();
    size_t pos = (size_t)*ppos, i = 0;
    unsigned top = 0;
    __m256i vtop = zero;
    for (; i + 8 <= n; i += 8) {
        __m256i s = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sym + i))), u = s, inc;
        vtop = _mm256_max_epu32(vtop, s);
        __m256i len = raw_lengths(s, &inc);
        if (!_mm256_testz_si256(len, len)) {
            size_t total = (uint32_t)_mm256_extract_epi32(inc, 7);
            if (((pos + total) >> 3) + 8 > nbytes) {
                *ppos = pos;
                unsigned t = rebuild_scalar_body(dst, sym, pred, i, i + 8, 4, bits, nbytes, ppos);
                top = t > top ? t : top;
                pos = (size_t)*ppos;
                continue;
            }
            u = gather_u(s, len, inc, bits, pos, 4);
            pos += total;
        }
        __m256i d = _mm256_xor_si256(_mm256_srli_epi32(u, 1), _mm256_sub_epi32(zero, _mm256_and_si256(u, one)));
        __m256i p = _mm256_loadu_si256((const __m256i *)(pred + 4 * i));
        _mm256_storeu_si256((__m256i *)(dst + 4 * i), ordered32_avx2(_mm256_add_epi32(ordered32_avx2(p), d)));
    }
    *ppos = pos;
    unsigned t = rebuild_scalar_body(dst, sym, pred, i, n, 4, bits, nbytes, ppos), v = hmax_epu32(vtop);
    t = t > top ? t : top;
    return t > v ? t : v;
}

AVX2 static unsigned rebuild16_avx2(uint8_t *dst, const uint8_t *sym, const uint8_t *pred, size_t n,
                                    const uint8_t *bits, size_t nbytes, uint64_t *ppos)
{
    const __m256i one = _mm256_set1_epi16(1), zero = _mm256_setzero_si256();
    const __m256i c15 = _mm256_set1_epi16(WV_MAG_DIRECT - 1);
    size_t pos = (size_t)*ppos, i = 0;
    unsigned top = 0;
    __m256i vtop = zero;
    for (; i + 16 <= n; i += 16) {
        __m256i s = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(sym + i))), u = s;
        vtop = _mm256_max_epu16(vtop, s);
        __m256i big = _mm256_cmpgt_epi16(s, c15);
        if (!_mm256_testz_si256(big, big)) {
            __m256i s0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sym + i)));
            __m256i s1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sym + i + 8))), inc0, inc1;
            __m256i len0 = raw_lengths(s0, &inc0), len1 = raw_lengths(s1, &inc1);
            size_t t0 = (uint32_t)_mm256_extract_epi32(inc0, 7), t1 = (uint32_t)_mm256_extract_epi32(inc1, 7);
            if (((pos + t0 + t1) >> 3) + 4 > nbytes) {
                *ppos = pos;
                unsigned t = rebuild_scalar_body(dst, sym, pred, i, i + 16, 2, bits, nbytes, ppos);
                top = t > top ? t : top;
                pos = (size_t)*ppos;
                continue;
            }
            __m256i u0 = gather_u(s0, len0, inc0, bits, pos, 2), u1 = gather_u(s1, len1, inc1, bits, pos + t0, 2);
            u = _mm256_permute4x64_epi64(_mm256_packus_epi32(u0, u1), 0xd8);
            pos += t0 + t1;
        }
        __m256i d = _mm256_xor_si256(_mm256_srli_epi16(u, 1), _mm256_sub_epi16(zero, _mm256_and_si256(u, one)));
        __m256i p = _mm256_loadu_si256((const __m256i *)(pred + 2 * i));
        _mm256_storeu_si256((__m256i *)(dst + 2 * i), ordered16_avx2(_mm256_add_epi16(ordered16_avx2(p), d)));
    }
    *ppos = pos;
    uint16_t lanes[16];
    _mm256_storeu_si256((__m256i *)lanes, vtop);
    unsigned t = rebuild_scalar_body(dst, sym, pred, i, n, 2, bits, nbytes, ppos);
    t = t > top ? t : top;
    for (int l = 0; l < 16; l++) t = lanes[l] > t ? lanes[l] : t;
    return t;
}

AVX2 static unsigned rebuild_avx2(uint8_t *dst, const uint8_t *sym, const uint8_t *pred, size_t n, unsigned k,
                                  const uint8_t *bits, size_t nbytes, uint64_t *pos)
{
    return k == 2 ? rebuild16_avx2(dst, sym, pred, n, bits, nbytes, pos)
                  : rebuild32_avx2(dst, sym, pred, n, bits, nbytes, pos);
}

/* AVX-512 (F, BW, VBMI): no gathers.  A step's raw fields all lie in the 64 bytes from its
 * first field's byte on (16 BF16/F16 fields of <= 15 bits, or 8 F32 fields of <= 31 bits,
 * start at most 7 + 15 * 31 bits in), loaded once with a masked load (zeros past the
 * stream's end, as load_bits; a masked load never faults), and one byte permute hands each
 * lane the bytes under its field.  Fields are cut to 31 bits as in rebuild_one, so hostile
 * symbols stay inside the window too.  xor v3 decode MB per CPU-second over the AVX2
 * rebuild (same frames, both builds, best of 15): BF16 fine-tune 1433 -> 1553, frozen BF16
 * fine-tune 3855 -> 4241, FP32 fine-tune 2089 -> 2257. */
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vbmi")))

static inline __attribute__((always_inline)) AVX512 __m512i window(const uint8_t *bits, size_t nbytes, size_t b)
{
    if (b >= nbytes) return _mm512_setzero_si512();
    size_t rem = nbytes - b;
    return _mm512_maskz_loadu_epi8(rem >= 64 ? ~0ull : (1ull << rem) - 1, bits + b);
}

/* u of 16 elements (symbols in dword lanes) whose raw fields (<= 25 bits: every BF16/F16
 * field, most F32 ones) start at bit *pos. */
static inline __attribute__((always_inline)) AVX512 __m512i raw16(__m512i s, const uint8_t *bits, size_t nbytes,
                                                                  size_t *pos)
{
    const __m512i one = _mm512_set1_epi32(1), z = _mm512_setzero_si512();
    const __m512i spread = _mm512_set4_epi32(0x0c0c0c0c, 0x08080808, 0x04040404, 0x00000000);
    __mmask16 big = _mm512_cmpgt_epu32_mask(s, _mm512_set1_epi32(WV_MAG_DIRECT - 1));
    __m512i len = _mm512_maskz_and_epi32(big, _mm512_sub_epi32(s, _mm512_set1_epi32(WV_MAG_DIRECT - 4)),
                                         _mm512_set1_epi32(31));
    __m512i inc = _mm512_add_epi32(len, _mm512_alignr_epi32(len, z, 15));
    inc = _mm512_add_epi32(inc, _mm512_alignr_epi32(inc, z, 14));
    inc = _mm512_add_epi32(inc, _mm512_alignr_epi32(inc, z, 12));
    inc = _mm512_add_epi32(inc, _mm512_alignr_epi32(inc, z, 8));
    __m512i at = _mm512_add_epi32(_mm512_sub_epi32(inc, len), _mm512_set1_epi32((int)(*pos & 7)));
    __m512i idx = _mm512_add_epi8(_mm512_shuffle_epi8(_mm512_srli_epi32(at, 3), spread), _mm512_set1_epi32(0x03020100));
    __m512i v = _mm512_permutexvar_epi8(idx, window(bits, nbytes, *pos >> 3));
    v = _mm512_srlv_epi32(v, _mm512_and_si512(at, _mm512_set1_epi32(7)));
    __m512i lead = _mm512_sllv_epi32(one, len);
    *pos += (uint32_t)_mm_extract_epi32(_mm512_extracti32x4_epi32(inc, 3), 3);
    return _mm512_mask_or_epi32(s, big, lead, _mm512_and_si512(v, _mm512_sub_epi32(lead, one)));
}

/* u of 8 F32 elements (symbols in dword lanes of s) in qword lanes, narrowed back to dwords. */
static inline __attribute__((always_inline)) AVX512 __m256i raw8(__m256i s32, const uint8_t *bits, size_t nbytes,
                                                                 size_t *pos)
{
    const __m512i one = _mm512_set1_epi64(1), z = _mm512_setzero_si512();
    const __m512i spread = _mm512_set4_epi32(0x08080808, 0x08080808, 0x00000000, 0x00000000);
    __m512i s = _mm512_cvtepu32_epi64(s32);
    __mmask8 big = _mm512_cmpgt_epu64_mask(s, _mm512_set1_epi64(WV_MAG_DIRECT - 1));
    __m512i len = _mm512_maskz_and_epi64(big, _mm512_sub_epi64(s, _mm512_set1_epi64(WV_MAG_DIRECT - 4)),
                                         _mm512_set1_epi64(31));
    __m512i inc = _mm512_add_epi64(len, _mm512_alignr_epi64(len, z, 7));
    inc = _mm512_add_epi64(inc, _mm512_alignr_epi64(inc, z, 6));
    inc = _mm512_add_epi64(inc, _mm512_alignr_epi64(inc, z, 4));
    __m512i at = _mm512_add_epi64(_mm512_sub_epi64(inc, len), _mm512_set1_epi64((long long)(*pos & 7)));
    __m512i idx = _mm512_add_epi8(_mm512_shuffle_epi8(_mm512_srli_epi64(at, 3), spread),
                                  _mm512_set1_epi64(0x0706050403020100ll));
    __m512i v = _mm512_permutexvar_epi8(idx, window(bits, nbytes, *pos >> 3));
    v = _mm512_srlv_epi64(v, _mm512_and_si512(at, _mm512_set1_epi64(7)));
    __m512i lead = _mm512_sllv_epi64(one, len);
    *pos += (uint64_t)_mm_extract_epi64(_mm512_extracti32x4_epi32(inc, 3), 1);
    return _mm512_cvtepi64_epi32(_mm512_mask_or_epi64(s, big, lead, _mm512_and_si512(v, _mm512_sub_epi64(lead, one))));
}

static inline __attribute__((always_inline)) AVX512 unsigned hmax_epu8(__m128i v)
{
    uint8_t lanes[16];
    unsigned t = 0;
    _mm_storeu_si128((__m128i *)lanes, v);
    for (int l = 0; l < 16; l++) t = lanes[l] > t ? lanes[l] : t;
    return t;
}

/* F32: 16 elements per step; a step whose fields all fit 25 bits takes them in dword lanes
 * (FP32 fine-tune decode 2514 -> 2898 MB/cpu-s), else 8 at a time in qword lanes. */
AVX512 static unsigned rebuild32_avx512(uint8_t *dst, const uint8_t *sym, const uint8_t *pred, size_t n,
                                        const uint8_t *bits, size_t nbytes, uint64_t *ppos)
{
    const __m512i one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512(), c15 = _mm512_set1_epi32(WV_MAG_DIRECT - 1);
    const __m512i c37 = _mm512_set1_epi32(WV_MAG_DIRECT - 4 + 25);
    size_t pos = (size_t)*ppos, i = 0;
    __m128i vtop = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16) {
        __m128i sb = _mm_loadu_si128((const __m128i *)(sym + i));
        vtop = _mm_max_epu8(vtop, sb);
        __m512i u = _mm512_cvtepu8_epi32(sb);
        __mmask16 big = _mm512_cmpgt_epu32_mask(u, c15);
        if (big && !_mm512_cmpgt_epu32_mask(u, c37)) {
            u = raw16(u, bits, nbytes, &pos); /* fields <= 25 bits: 16 at a time in dword lanes */
        } else if (big) {
            __m256i lo = _mm512_castsi512_si256(u), hi = _mm512_extracti64x4_epi64(u, 1);
            if (big & 0xff) lo = raw8(lo, bits, nbytes, &pos);
            if (big >> 8) hi = raw8(hi, bits, nbytes, &pos);
            u = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        }
        __m512i d = _mm512_xor_si512(_mm512_srli_epi32(u, 1), _mm512_sub_epi32(zero, _mm512_and_si512(u, one)));
        __m512i p = _mm512_loadu_si512((const void *)(pred + 4 * i));
        p = _mm512_xor_si512(p, _mm512_srli_epi32(_mm512_srai_epi32(p, 31), 1));
        __m512i x = _mm512_add_epi32(p, d);
        _mm512_storeu_si512((void *)(dst + 4 * i), _mm512_xor_si512(x, _mm512_srli_epi32(_mm512_srai_epi32(x, 31), 1)));
    }
    *ppos = pos;
    unsigned t = rebuild_scalar_body(dst, sym, pred, i, n, 4, bits, nbytes, ppos), v = hmax_epu8(vtop);
    return t > v ? t : v;
}

/* BF16/F16: 32 elements per step in 16-bit lanes; a step with raw fields takes them 16 at a time. */
AVX512 static unsigned rebuild16_avx512(uint8_t *dst, const uint8_t *sym, const uint8_t *pred, size_t n,
                                        const uint8_t *bits, size_t nbytes, uint64_t *ppos)
{
    const __m512i one = _mm512_set1_epi16(1), zero = _mm512_setzero_si512(), c15 = _mm512_set1_epi16(WV_MAG_DIRECT - 1);
    const __m512i m15 = _mm512_set1_epi16(0x7fff);
    size_t pos = (size_t)*ppos, i = 0;
    __m256i vtop = _mm256_setzero_si256();
    for (; i + 32 <= n; i += 32) {
        __m256i sb = _mm256_loadu_si256((const __m256i *)(sym + i));
        vtop = _mm256_max_epu8(vtop, sb);
        __m512i u = _mm512_cvtepu8_epi16(sb);
        __mmask32 big = _mm512_cmpgt_epu16_mask(u, c15);
        if (big) {
            __m256i lo = _mm512_castsi512_si256(u), hi = _mm512_extracti64x4_epi64(u, 1);
            if (big & 0xffff)
                lo = _mm512_cvtepi32_epi16(raw16(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(sb)), bits, nbytes, &pos));
            if (big >> 16)
                hi = _mm512_cvtepi32_epi16(raw16(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(sb, 1)), bits, nbytes, &pos));
            u = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        }
        __m512i d = _mm512_xor_si512(_mm512_srli_epi16(u, 1), _mm512_sub_epi16(zero, _mm512_and_si512(u, one)));
        __m512i p = _mm512_loadu_si512((const void *)(pred + 2 * i));
        p = _mm512_xor_si512(p, _mm512_and_si512(_mm512_srai_epi16(p, 15), m15));
        __m512i x = _mm512_add_epi16(p, d);
        _mm512_storeu_si512((void *)(dst + 2 * i), _mm512_xor_si512(x, _mm512_and_si512(_mm512_srai_epi16(x, 15), m15)));
    }
    *ppos = pos;
    unsigned t = rebuild_scalar_body(dst, sym, pred, i, n, 2, bits, nbytes, ppos);
    unsigned v = hmax_epu8(_mm_max_epu8(_mm256_castsi256_si128(vtop), _mm256_extracti128_si256(vtop, 1)));
    return t > v ? t : v;
}

AVX512 static unsigned rebuild_avx512(uint8_t *dst, const uint8_t *sym, const uint8_t *pred, size_t n, unsigned k,
                                      const uint8_t *bits, size_t nbytes, uint64_t *pos)
{
    return k == 2 ? rebuild16_avx512(dst, sym, pred, n, bits, nbytes, pos)
                  : rebuild32_avx512(dst, sym, pred, n, bits, nbytes, pos);
}

typedef unsigned (*rebuild_fn)(uint8_t *, const uint8_t *, const uint8_t *, size_t, unsigned, const uint8_t *,
                               size_t, uint64_t *);
static rebuild_fn rebuild = rebuild_scalar;

int wv_mag_select_kernel(int kernel)
{
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") != 0;
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vbmi");
    if (kernel < 0) kernel = avx512 ? 2 : avx2;
    if (kernel > 2 || (kernel == 1 && !avx2) || (kernel == 2 && !avx512)) return -1;
    simd = kernel;
    /* the encoder's symbols need CD and VL too (every AVX-512 CPU with VBMI has them) */
    symbols_kernel = kernel == 2 && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512vl")
                         ? symbols_avx512 : symbols_scalar;
    rebuild = kernel == 2 ? rebuild_avx512 : kernel ? rebuild_avx2 : rebuild_scalar;
    return kernel;
}

__attribute__((constructor)) static void mag_dispatch_init(void) { wv_mag_select_kernel(-1); }

/* Mode SPARSE: dst already holds the prediction; patches the listed elements.  Returns 0 or an
 * error; *pos ends at the bits read, which the caller checks as for the other modes. */
static size_t sparse_decode(wv_ctx *c, uint8_t *dst, const uint8_t *body, size_t ssz, const uint8_t *bits,
                            size_t nbytes, size_t n_el, unsigned k, unsigned smax, uint64_t *pos)
{
    WV_RETURN_ERROR_IF(ssz < 4, WV_ERR_CORRUPT);
    size_t count = wv_rd32(body), o = 4;
    WV_RETURN_ERROR_IF(count == 0 || count > n_el, WV_ERR_CORRUPT);
    for (unsigned t = 0; t < 2; t++) {
        size_t r = wv_rans_read_table(body + o, ssz - o, c->freq[t]);
        WV_FORWARD_IF_ERROR(r);
        o += r;
        wv_rans_build_dtab(c->freq[t], c->dtab[t]);
    }
    /* 2 x count <= 2 x n_el <= the raw size that c->planes and c->cx hold */
    uint8_t *list = c->planes, *cx = c->cx;
    for (size_t j = 0; j < 2 * count; j += 2) {
        cx[j] = 0;
        cx[j + 1] = 1;
    }
    wv_rans_dec d;
    WV_FORWARD_IF_ERROR(wv_rans_dec_init(&d, list, 2 * count, body + o, ssz - o, cx, &c->dtab[0][0]));
    WV_FORWARD_IF_ERROR(wv_rans_dec_finish(&d));
    uint64_t at = 0; /* the first element after the previous entry */
    for (size_t j = 0; j < 2 * count; j += 2) {
        unsigned g = list[j], s = list[j + 1];
        WV_RETURN_ERROR_IF(g > GAP_CLASS_MAX || s == 0 || s > smax, WV_ERR_CORRUPT);
        at += read_code(g, bits, nbytes, pos);
        WV_RETURN_ERROR_IF(at >= n_el, WV_ERR_CORRUPT);
        if (k == 2) wv_wr16(dst + 2 * at, (uint16_t)rebuild_one(s, bits, nbytes, pos, wv_rd16(dst + 2 * at), 16));
        else wv_wr32(dst + 4 * at, rebuild_one(s, bits, nbytes, pos, wv_rd32(dst + 4 * at), 32));
        at++;
    }
    return 0;
}

size_t wv_mag_decode(wv_ctx *c, uint8_t *dst, const uint8_t *src, size_t size, const uint8_t *pred, size_t n_el,
                     unsigned dtype, unsigned version)
{
    unsigned k = wv_dtype_size(dtype);
    WV_RETURN_ERROR_IF(!wv_mag_supported(dtype), WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF(size < HDR, WV_ERR_CORRUPT);
    size_t ssz = wv_rd32(src + 1), nbytes = wv_rd32(src + 5);
    WV_RETURN_ERROR_IF(ssz > size - HDR || nbytes != size - HDR - ssz, WV_ERR_CORRUPT);
    const uint8_t *body = src + HDR, *bits = body + ssz;
    unsigned smax = WV_MAG_DIRECT - 5 + 8 * k;
    uint8_t *sym = c->planes;
    uint64_t pos = 0;
    if (src[0] == SYM_SPARSE) {
        WV_RETURN_ERROR_IF(version < 4, WV_ERR_CORRUPT);
        if (dst != pred) memcpy(dst, pred, n_el * k);
        WV_FORWARD_IF_ERROR(sparse_decode(c, dst, body, ssz, bits, nbytes, n_el, k, smax, &pos));
    } else if (src[0] == SYM_CONST) {
        WV_RETURN_ERROR_IF(ssz != 1 || body[0] > smax, WV_ERR_CORRUPT);
        if (body[0] == 0) { /* an unchanged frame: the prediction itself */
            WV_RETURN_ERROR_IF(nbytes != 0, WV_ERR_CORRUPT);
            if (dst != pred) memcpy(dst, pred, n_el * k);
            return 0;
        }
        memset(sym, body[0], n_el);
    } else {
        WV_RETURN_ERROR_IF(src[0] != SYM_RANS || ssz < 1, WV_ERR_CORRUPT);
        unsigned tables = body[0];
        WV_RETURN_ERROR_IF(tables != 1 && tables != 4 && tables != NCTX_MAX, WV_ERR_CORRUPT);
        size_t o = 1;
        for (unsigned t = 0; t < tables; t++) {
            size_t r = wv_rans_read_table(body + o, ssz - o, c->freq[t]);
            WV_FORWARD_IF_ERROR(r);
            o += r;
            wv_rans_build_dtab(c->freq[t], c->dtab[t]);
        }
        WV_RETURN_ERROR_IF(ssz - o < 4, WV_ERR_CORRUPT);
        size_t s0 = wv_rd32(body + o);
        o += 4;
        WV_RETURN_ERROR_IF(s0 > ssz - o, WV_ERR_CORRUPT);
        const uint8_t *cx = tables > 1 ? c->cx : NULL;
        size_t h = n_el / 2;
        wv_rans_dec d[2];
        WV_FORWARD_IF_ERROR(wv_rans_dec_init(&d[0], sym, h, body + o, s0, cx, &c->dtab[0][0]));
        WV_FORWARD_IF_ERROR(wv_rans_dec_init(&d[1], sym + h, n_el - h, body + o + s0, ssz - o - s0,
                                             cx ? cx + h : NULL, &c->dtab[0][0]));
        wv_rans_dom dom;
        if (!cx) { /* one table: near-identical members, whose steps mostly decode its top symbol */
            wv_rans_dominant(c->freq[0], &dom);
            d[0].dom = d[1].dom = &dom;
        }
        if (cx) {
            /* the bulk with contexts computed in the rANS loop (AVX-512), the rest from bytes */
            wv_rans_pctx pc = {k, 0, 0, 0, {0}};
            int bias = 0;
            wv_exp_layout(dtype, &pc.shift, &pc.mask, &bias);
            pc.bias = (unsigned)bias;
            for (unsigned o8 = 0; o8 < 16; o8++) {
                unsigned v = o8 < NCTX_MAX ? o8 : NCTX_MAX - 1;
                pc.lut[o8] = (uint8_t)(tables == NCTX_MAX ? v : (v * 11) >> 5);
            }
            wv_rans_dec_pair_pred(&d[0], &d[1], &pc, pred, pred + k * h);
            size_t a = d[0].i, b = h + d[1].i;
            contexts(c->cx + a, pred + k * a, h - a, dtype, tables);
            contexts(c->cx + b, pred + k * b, n_el - b, dtype, tables);
        }
        WV_FORWARD_IF_ERROR(wv_rans_dec_pair(&d[0], &d[1]));
    }
    if (src[0] != SYM_SPARSE)
        WV_RETURN_ERROR_IF(rebuild(dst, sym, pred, n_el, k, bits, nbytes, &pos) > smax, WV_ERR_CORRUPT);
    /* every bit used, at most 7 bits of zero padding */
    WV_RETURN_ERROR_IF(pos > 8 * (uint64_t)nbytes || 8 * (uint64_t)nbytes - pos >= 8, WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF((pos & 7) && (bits[pos >> 3] >> (pos & 7)), WV_ERR_CORRUPT);
    return 0;
}
