/* rANS tables, encoder and scalar decoder (see rans.h for the parameters). */
#include "rans.h"
#include <immintrin.h>
#include <math.h>

static float cost_tab[WV_RANS_M + 1]; /* cost_tab[f] = 12 - log2(f) bits */

__attribute__((constructor)) static void rans_init(void)
{
    cost_tab[0] = 0;
    for (unsigned f = 1; f <= WV_RANS_M; f++) cost_tab[f] = (float)(WV_RANS_PROB_BITS - log2((double)f));
}

void wv_rans_normalize(const uint32_t count[256], uint16_t freq[256])
{
    uint64_t total = 0;
    unsigned nsym = 0, last = 0;
    for (int s = 0; s < 256; s++) {
        freq[s] = 0;
        total += count[s];
        if (count[s]) { nsym++; last = (unsigned)s; }
    }
    if (total == 0) return;
    if (nsym == 1) {
        freq[last] = WV_RANS_M - 1;
        freq[last ^ 1] = 1;
        return;
    }
    /* Rare symbols (ideal share under one slot) get one slot; the rest share the
     * remaining slots in proportion; the rounding residue goes to the largest. */
    uint64_t rare_total = 0;
    unsigned rare = 0;
    for (int s = 0; s < 256; s++)
        if (count[s] && (uint64_t)count[s] * WV_RANS_M < total) { rare++; rare_total += count[s]; }
    uint64_t rest = total - rare_total, slots = WV_RANS_M - rare;
    int sum = 0, big = -1;
    for (int s = 0; s < 256; s++) {
        if (!count[s]) continue;
        uint64_t f = 1;
        if ((uint64_t)count[s] * WV_RANS_M >= total) {
            f = ((uint64_t)count[s] * slots + rest / 2) / rest;
            if (f < 1) f = 1;
        }
        freq[s] = (uint16_t)f;
        sum += (int)f;
        if (big < 0 || count[s] > count[big]) big = s;
    }
    int diff = (int)WV_RANS_M - sum;
    while (diff != 0) {
        if (diff > 0 || freq[big] > 1 - diff) { freq[big] = (uint16_t)(freq[big] + diff); break; }
        /* rare in practice: the largest symbol cannot absorb it alone */
        int take = freq[big] / 2;
        freq[big] = (uint16_t)(freq[big] - take);
        diff += take;
        for (int s = 0; s < 256; s++)
            if (freq[s] > freq[big]) big = s;
    }
}

double wv_rans_cost_bits(const uint32_t count[256], const uint16_t freq[256])
{
    double bits = 0;
    for (int s = 0; s < 256; s++)
        if (count[s]) bits += (double)count[s] * cost_tab[freq[s]];
    return bits;
}

/* Table: kind byte 0 = empty (context never used), 1 = 32-byte bitmap of present
 * symbols, 2 = count-1 then the symbol list, 3 = first symbol and span-1 of a
 * contiguous range (symbols inside it may be absent: frequency byte 0); then the
 * frequencies in symbol order, 1 byte if < 128 else 2 bytes (0x80 | f >> 8, f & 255).
 * Kind 3 exists for exponent planes: ~40 adjacent symbols, where it saves the
 * 33-byte bitmap (~0.0001 of a BF16 model).  The writer picks the smallest kind. */
static size_t put_freq(uint8_t *dst, unsigned f)
{
    if (f < 128) { dst[0] = (uint8_t)f; return 1; }
    dst[0] = (uint8_t)(0x80 | (f >> 8));
    dst[1] = (uint8_t)f;
    return 2;
}

size_t wv_rans_write_table(uint8_t *dst, const uint16_t freq[256])
{
    unsigned nsym = 0, lo = 256, hi = 0;
    for (unsigned s = 0; s < 256; s++) {
        if (!freq[s]) continue;
        nsym++;
        if (lo == 256) lo = s;
        hi = s;
    }
    if (nsym == 0) { dst[0] = 0; return 1; }
    size_t span = hi - lo + 1, list = 2 + nsym, range = 3 + (span - nsym);
    size_t o;
    if (range <= list && range <= 33) {
        dst[0] = 3; dst[1] = (uint8_t)lo; dst[2] = (uint8_t)(span - 1);
        o = 3;
        for (unsigned s = lo; s <= hi; s++) o += freq[s] ? put_freq(dst + o, freq[s]) : (dst[o] = 0, 1);
        return o;
    }
    if (nsym > 32) {
        dst[0] = 1;
        memset(dst + 1, 0, 32);
        for (int s = 0; s < 256; s++)
            if (freq[s]) dst[1 + (s >> 3)] |= (uint8_t)(1u << (s & 7));
        o = 33;
    } else {
        dst[0] = 2;
        dst[1] = (uint8_t)(nsym - 1);
        o = 2;
        for (int s = 0; s < 256; s++)
            if (freq[s]) dst[o++] = (uint8_t)s;
    }
    for (int s = 0; s < 256; s++)
        if (freq[s]) o += put_freq(dst + o, freq[s]);
    return o;
}

static size_t get_freq(const uint8_t *src, size_t size, size_t *o, unsigned *f)
{
    WV_RETURN_ERROR_IF(*o >= size, WV_ERR_CORRUPT);
    unsigned v = src[(*o)++];
    if (v & 0x80) {
        WV_RETURN_ERROR_IF(*o >= size, WV_ERR_CORRUPT);
        v = ((v & 0x7f) << 8) | src[(*o)++];
    }
    *f = v;
    return 0;
}

size_t wv_rans_read_table(const uint8_t *src, size_t size, uint16_t freq[256])
{
    uint8_t present[256];
    memset(present, 0, sizeof present);
    memset(freq, 0, 256 * sizeof freq[0]);
    WV_RETURN_ERROR_IF(size < 1, WV_ERR_CORRUPT);
    size_t o;
    unsigned sum = 0, nsym = 0;
    if (src[0] == 0) {
        /* unused context: any valid table will do; garbage decodes fail the CRC */
        freq[0] = WV_RANS_M - 1;
        freq[1] = 1;
        return 1;
    } else if (src[0] == 3) {
        WV_RETURN_ERROR_IF(size < 3, WV_ERR_CORRUPT);
        unsigned lo = src[1], span = src[2] + 1u;
        WV_RETURN_ERROR_IF(lo + span > 256, WV_ERR_CORRUPT);
        o = 3;
        for (unsigned s = lo; s < lo + span; s++) {
            unsigned f = 0;
            WV_FORWARD_IF_ERROR(get_freq(src, size, &o, &f));
            WV_RETURN_ERROR_IF(f >= WV_RANS_M, WV_ERR_CORRUPT);
            freq[s] = (uint16_t)f;
            sum += f;
            nsym += f != 0;
        }
        WV_RETURN_ERROR_IF(nsym < 2 || sum != WV_RANS_M, WV_ERR_CORRUPT);
        return o;
    } else if (src[0] == 1) {
        WV_RETURN_ERROR_IF(size < 33, WV_ERR_CORRUPT);
        for (int s = 0; s < 256; s++) present[s] = (src[1 + (s >> 3)] >> (s & 7)) & 1;
        o = 33;
    } else if (src[0] == 2) {
        WV_RETURN_ERROR_IF(size < 2, WV_ERR_CORRUPT);
        unsigned n = src[1] + 1u;
        WV_RETURN_ERROR_IF(size < 2 + n, WV_ERR_CORRUPT);
        for (unsigned k = 0; k < n; k++) {
            WV_RETURN_ERROR_IF(present[src[2 + k]], WV_ERR_CORRUPT);
            present[src[2 + k]] = 1;
        }
        o = 2 + n;
    } else {
        return WV_ERROR(WV_ERR_CORRUPT);
    }
    for (int s = 0; s < 256; s++) {
        if (!present[s]) continue;
        unsigned f = 0;
        WV_FORWARD_IF_ERROR(get_freq(src, size, &o, &f));
        WV_RETURN_ERROR_IF(f == 0 || f >= WV_RANS_M, WV_ERR_CORRUPT);
        freq[s] = (uint16_t)f;
        sum += f;
        nsym++;
    }
    WV_RETURN_ERROR_IF(nsym < 2 || sum != WV_RANS_M, WV_ERR_CORRUPT);
    return o;
}

void wv_rans_build_etab(const uint16_t freq[256], wv_rans_esym etab[256])
{
    uint32_t cum = 0;
    for (int s = 0; s < 256; s++) {
        uint32_t f = freq[s];
        wv_rans_esym *e = &etab[s];
        memset(e, 0, sizeof *e);
        if (!f) continue;
        /* ryg_rans reciprocal division, exact for x < 2^31 */
        e->x_max = ((WV_RANS_L >> WV_RANS_PROB_BITS) << 16) * f;
        uint32_t rcp_shift = 0;
        if (f < 2) {
            e->rcp_freq = ~0u;
            e->bias = cum + WV_RANS_M - 1;
        } else {
            uint32_t shift = 0;
            while (f > (1u << shift)) shift++;
            e->rcp_freq = (uint32_t)(((1ull << (shift + 31)) + f - 1) / f);
            rcp_shift = shift - 1;
            e->bias = cum;
        }
        e->packed = e->bias | f << 13 | rcp_shift << 25;
        cum += f;
    }
}

/* entry = symbol | freq << 8 | (slot - cum) << 20; freq < 4096 always (normalize). */
void wv_rans_build_dtab(const uint16_t freq[256], uint32_t dtab[WV_RANS_M])
{
    uint32_t cum = 0;
    for (uint32_t s = 0; s < 256; s++) {
        uint32_t f = freq[s];
        for (uint32_t k = 0; k < f; k++) dtab[cum + k] = s | (f << 8) | (k << 20);
        cum += f;
    }
}

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

/* AVX2 encoder: lanes 8g..8g+7 at once; the words of the lanes that renormalise are
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

/* ---- decoder ---- */

/* Fast step: branchless renorm (cmov), the caller guarantees 2 readable bytes. */
#define DEC_STEP(l, idx)                                                        \
    do {                                                                        \
        uint32_t x_ = st[l];                                                    \
        uint32_t e_ = tab[(cx ? cx[idx] * WV_RANS_M : 0u) + (x_ & (WV_RANS_M - 1))]; \
        dst[idx] = (uint8_t)e_;                                                 \
        x_ = ((e_ >> 8) & 0xfff) * (x_ >> WV_RANS_PROB_BITS) + (e_ >> 20);      \
        uint32_t w_ = wv_rd16(p);                                               \
        uint32_t need_ = x_ < WV_RANS_L; /* arithmetic, gcc turns ?: into a jump */ \
        x_ = (x_ << (need_ << 4)) | (w_ & (0u - need_));                        \
        p += 2 * need_;                                                         \
        st[l] = x_;                                                             \
    } while (0)
/* Checked step for the tail. */
#define DEC_STEP_CHECKED(l, idx)                                                \
    do {                                                                        \
        uint32_t x_ = st[l];                                                    \
        uint32_t e_ = tab[(cx ? cx[idx] * WV_RANS_M : 0u) + (x_ & (WV_RANS_M - 1))]; \
        dst[idx] = (uint8_t)e_;                                                 \
        x_ = ((e_ >> 8) & 0xfff) * (x_ >> WV_RANS_PROB_BITS) + (e_ >> 20);      \
        if (x_ < WV_RANS_L) {                                                   \
            if (end - p < 2) return WV_ERROR(WV_ERR_CORRUPT);                   \
            x_ = (x_ << 16) | wv_rd16(p);                                       \
            p += 2;                                                             \
        }                                                                       \
        st[l] = x_;                                                             \
    } while (0)

/* Scalar fast blocks: 32 symbols read at most 32 words, so bounds are checked once
 * per block.  Returns the number of symbols decoded. */
static inline __attribute__((always_inline)) size_t blocks_scalar(uint32_t *st, const uint8_t **pp,
                                                                  const uint8_t *end, uint8_t *dst, size_t n,
                                                                  const uint8_t *cx, const uint32_t *tab)
{
    const uint8_t *p = *pp;
    size_t i = 0;
    while (i + WV_RANS_LANES <= n && end - p >= 2 * WV_RANS_LANES) {
        for (int l = 0; l < WV_RANS_LANES; l++) DEC_STEP(l, i + l);
        i += WV_RANS_LANES;
    }
    *pp = p;
    return i;
}

/* AVX2: lanes 8g..8g+7 in one register.  Lanes needing a word take consecutive
 * words in lane order: load 8 words, widen, permute with expand[mask]. */
static uint32_t expand_idx[256][8] __attribute__((aligned(32)));

__attribute__((constructor)) static void rans_simd_init(void)
{
    for (unsigned m = 0; m < 256; m++) {
        unsigned k = 0;
        for (unsigned j = 0; j < 8; j++) expand_idx[m][j] = (m >> j) & 1 ? k++ : 0;
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
                                                          const uint32_t *tab)
{
    return cx ? blocks_avx2_body(st, pp, end, dst, n, cx, tab) : blocks_avx2_body(st, pp, end, dst, n, NULL, tab);
}

static size_t blocks_scalar_any(uint32_t *st, const uint8_t **pp, const uint8_t *end, uint8_t *dst, size_t n,
                                const uint8_t *cx, const uint32_t *tab)
{
    return cx ? blocks_scalar(st, pp, end, dst, n, cx, tab) : blocks_scalar(st, pp, end, dst, n, NULL, tab);
}

typedef size_t (*blocks_fn)(uint32_t *, const uint8_t **, const uint8_t *, uint8_t *, size_t, const uint8_t *,
                            const uint32_t *);
static blocks_fn dec_blocks = blocks_scalar_any;

/* Kernel 0 = scalar reference, 1 = AVX2; -1 = the best this CPU has.  Returns the
 * kernel in use, or -1 if the one demanded is not supported here.  Measured on the
 * MiniLM BF16 exponent plane (2.6 GHz Zen 4, one 128 Ki-symbol plane): decode
 * scalar ~400 MB/s, AVX2 ~1100 MB/s; encode scalar ~350 MB/s, AVX2 see bench/. */
int wv_rans_select_kernel(int kernel)
{
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") != 0;
    if (kernel < 0) kernel = avx2;
    if (kernel > 1 || (kernel == 1 && !avx2)) return -1;
    dec_blocks = kernel == 1 ? blocks_avx2 : blocks_scalar_any;
    enc_blocks = kernel == 1 ? enc_blocks_avx2 : enc_blocks_scalar_any;
    return kernel;
}

__attribute__((constructor)) static void rans_dispatch_init(void) { wv_rans_select_kernel(-1); }

/* Two independent streams (two rANS planes of one frame) advanced in lockstep:
 * one stream's 4 state chains are latency-bound (gather -> multiply -> renorm), so a
 * second stream's chains fill the gaps: 1150 -> 1730 MB/s (best of 300, one 128 Ki
 * BF16 exponent plane per stream).  Four streams measured 1155 MB/s: 16 state
 * registers spill. */
__attribute__((target("avx2"))) static void pair_avx2(wv_rans_dec *a, wv_rans_dec *b)
{
    __m256i xa[4], xb[4];
    for (int g = 0; g < 4; g++) {
        xa[g] = _mm256_loadu_si256((const __m256i *)(a->st + 8 * g));
        xb[g] = _mm256_loadu_si256((const __m256i *)(b->st + 8 * g));
    }
    while (a->i + WV_RANS_LANES <= a->coded && a->end - a->p >= 2 * WV_RANS_LANES &&
           b->i + WV_RANS_LANES <= b->coded && b->end - b->p >= 2 * WV_RANS_LANES) {
        block_avx2(xa, &a->p, a->dst + a->i, a->cx ? a->cx + a->i : NULL, a->tab);
        block_avx2(xb, &b->p, b->dst + b->i, b->cx ? b->cx + b->i : NULL, b->tab);
        a->i += WV_RANS_LANES;
        b->i += WV_RANS_LANES;
    }
    for (int g = 0; g < 4; g++) {
        _mm256_storeu_si256((__m256i *)(a->st + 8 * g), xa[g]);
        _mm256_storeu_si256((__m256i *)(b->st + 8 * g), xb[g]);
    }
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
    return 0;
}

size_t wv_rans_dec_finish(wv_rans_dec *d)
{
    uint32_t *st = d->st;
    const uint8_t *p = d->p, *end = d->end, *cx = d->cx;
    const uint32_t *tab = d->tab;
    uint8_t *dst = d->dst;
    size_t i = d->i, n = d->n, coded = d->coded;
    i += dec_blocks(st, &p, end, dst + i, coded - i, cx ? cx + i : NULL, tab);
    for (; i < coded; i++) DEC_STEP_CHECKED(i % WV_RANS_LANES, i);
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
    if (dec_blocks == blocks_avx2) pair_avx2(a, b);
    WV_FORWARD_IF_ERROR(wv_rans_dec_finish(a));
    return wv_rans_dec_finish(b);
}

size_t wv_rans_decode(uint8_t *dst, size_t n, const uint8_t *src, size_t size, const uint8_t *cx,
                      const uint32_t *tab)
{
    wv_rans_dec d;
    WV_FORWARD_IF_ERROR(wv_rans_dec_init(&d, dst, n, src, size, cx, tab));
    return wv_rans_dec_finish(&d);
}
