/* Byte-plane split/merge kernels.  Each body is written once as an inline C loop
 * and instantiated three times: a reference build with vectorisation off, a
 * baseline build (SSE2 auto-vectorised) and an AVX2 build chosen at run time. */
#include "planes.h"
#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void split_body(const uint8_t *src, size_t n, unsigned k, int rot, uint8_t *const *pl)
{
    size_t i;
    switch (k) {
    case 2: {
        uint8_t *p0 = pl[0], *p1 = pl[1];
        if (rot)
            for (i = 0; i < n; i++) {
                uint16_t x = wv_rd16(src + 2 * i);
                x = (uint16_t)((x << 1) | (x >> 15));
                p0[i] = (uint8_t)(x >> 8); p1[i] = (uint8_t)x;
            }
        else
            for (i = 0; i < n; i++) { p0[i] = src[2 * i + 1]; p1[i] = src[2 * i]; }
        break;
    }
    case 4: {
        uint8_t *p0 = pl[0], *p1 = pl[1], *p2 = pl[2], *p3 = pl[3];
        for (i = 0; i < n; i++) {
            uint32_t x = wv_rd32(src + 4 * i);
            if (rot) x = (x << 1) | (x >> 31);
            p0[i] = (uint8_t)(x >> 24); p1[i] = (uint8_t)(x >> 16); p2[i] = (uint8_t)(x >> 8); p3[i] = (uint8_t)x;
        }
        break;
    }
    case 8:
        for (i = 0; i < n; i++) {
            uint64_t x;
            memcpy(&x, src + 8 * i, 8);
            if (rot) x = (x << 1) | (x >> 63);
            for (unsigned p = 0; p < 8; p++) pl[p][i] = (uint8_t)(x >> (8 * (7 - p)));
        }
        break;
    default:
        memcpy(pl[0], src, n);
    }
}

ALWAYS_INLINE void merge_body(uint8_t *dst, size_t n, unsigned k, int rot, const uint8_t *const *pl)
{
    size_t i;
    switch (k) {
    case 2: {
        const uint8_t *p0 = pl[0], *p1 = pl[1];
        if (rot)
            for (i = 0; i < n; i++) {
                uint16_t x = (uint16_t)((p0[i] << 8) | p1[i]);
                x = (uint16_t)((x >> 1) | (x << 15));
                wv_wr16(dst + 2 * i, x);
            }
        else
            for (i = 0; i < n; i++) { dst[2 * i] = p1[i]; dst[2 * i + 1] = p0[i]; }
        break;
    }
    case 4: {
        const uint8_t *p0 = pl[0], *p1 = pl[1], *p2 = pl[2], *p3 = pl[3];
        for (i = 0; i < n; i++) {
            uint32_t x = ((uint32_t)p0[i] << 24) | ((uint32_t)p1[i] << 16) | ((uint32_t)p2[i] << 8) | p3[i];
            if (rot) x = (x >> 1) | (x << 31);
            wv_wr32(dst + 4 * i, x);
        }
        break;
    }
    case 8:
        for (i = 0; i < n; i++) {
            uint64_t x = 0;
            for (unsigned p = 0; p < 8; p++) x |= (uint64_t)pl[p][i] << (8 * (7 - p));
            if (rot) x = (x >> 1) | (x << 63);
            memcpy(dst + 8 * i, &x, 8);
        }
        break;
    default:
        memcpy(dst, pl[0], n);
    }
}

ALWAYS_INLINE void xor_body(uint8_t *dst, const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = a[i] ^ b[i];
}

#define KERNELS(name, params, args)                                                   \
    __attribute__((optimize("no-tree-vectorize"))) static void name##_ref params { name##_body args; } \
    static void name##_sse2 params { name##_body args; }                              \
    __attribute__((target("avx2"))) static void name##_avx2 params { name##_body args; }

KERNELS(split, (const uint8_t *src, size_t n, unsigned k, int rot, uint8_t *const *pl), (src, n, k, rot, pl))
KERNELS(merge, (uint8_t *dst, size_t n, unsigned k, int rot, const uint8_t *const *pl), (dst, n, k, rot, pl))
static void xor_sse2(uint8_t *dst, const uint8_t *a, const uint8_t *b, size_t n) { xor_body(dst, a, b, n); }
__attribute__((target("avx2"))) static void xor_avx2(uint8_t *dst, const uint8_t *a, const uint8_t *b, size_t n)
{
    xor_body(dst, a, b, n);
}

static int have_avx2;
__attribute__((constructor)) static void planes_init(void)
{
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2");
}

void wv_split_ref(const uint8_t *src, size_t n, unsigned k, int rot, uint8_t *const *pl) { split_ref(src, n, k, rot, pl); }
void wv_merge_ref(uint8_t *dst, size_t n, unsigned k, int rot, const uint8_t *const *pl) { merge_ref(dst, n, k, rot, pl); }

void wv_split(const uint8_t *src, size_t n, unsigned k, int rot, uint8_t *const *pl)
{
    (have_avx2 ? split_avx2 : split_sse2)(src, n, k, rot, pl);
}

void wv_merge(uint8_t *dst, size_t n, unsigned k, int rot, const uint8_t *const *pl)
{
    (have_avx2 ? merge_avx2 : merge_sse2)(dst, n, k, rot, pl);
}

void wv_xor_into(uint8_t *dst, const uint8_t *a, const uint8_t *b, size_t n)
{
    (have_avx2 ? xor_avx2 : xor_sse2)(dst, a, b, n);
}

/* Pair planes (plane mode PAIRS, docs/FORMAT.md): each symbol holds the 4-bit codes of
 * two elements; code c < nd is dict[c], WV_PAIR_ESC takes the next escape byte. */
static int pair_code(unsigned c, unsigned nd, const uint8_t *dict, const uint8_t **esc, const uint8_t *esc_end,
                     uint8_t *out)
{
    if (c < nd) { *out = dict[c]; return 0; }
    if (c != WV_PAIR_ESC || *esc == esc_end) return -1;
    *out = *(*esc)++;
    return 0;
}

static size_t expand_scalar(uint8_t *out, size_t n, size_t i, const uint8_t *pairs, const uint8_t *dict,
                            unsigned nd, const uint8_t **esc, const uint8_t *esc_end)
{
    for (; 2 * i + 1 < n; i++) {
        WV_RETURN_ERROR_IF(pair_code(pairs[i] >> 4, nd, dict, esc, esc_end, out + 2 * i) ||
                           pair_code(pairs[i] & 15, nd, dict, esc, esc_end, out + 2 * i + 1), WV_ERR_CORRUPT);
    }
    if (2 * i < n) { /* odd count: the last symbol's second code is 0 */
        WV_RETURN_ERROR_IF(pairs[i] & 15, WV_ERR_CORRUPT);
        WV_RETURN_ERROR_IF(pair_code(pairs[i] >> 4, nd, dict, esc, esc_end, out + 2 * i), WV_ERR_CORRUPT);
    }
    return 0;
}

/* 32 symbols per step: two pshufb lookups and an interleave; a step with an escape or
 * an invalid code (any code >= nd) goes through the scalar code. */
__attribute__((target("avx2"))) static size_t expand_avx2(uint8_t *out, size_t n, const uint8_t *pairs,
                                                         const uint8_t *dict, unsigned nd, const uint8_t **esc,
                                                         const uint8_t *esc_end)
{
    uint8_t d16[16] = {0};
    memcpy(d16, dict, nd);
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)d16));
    const __m256i m4 = _mm256_set1_epi8(0x0f), top = _mm256_set1_epi8((char)(nd - 1));
    size_t i = 0;
    for (; 2 * (i + 32) <= n; i += 32) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(pairs + i));
        __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
        if (_mm256_movemask_epi8(_mm256_cmpgt_epi8(_mm256_max_epu8(lo, hi), top))) {
            WV_FORWARD_IF_ERROR(expand_scalar(out, 2 * (i + 32), i, pairs, dict, nd, esc, esc_end));
            continue;
        }
        __m256i vh = _mm256_shuffle_epi8(lut, hi), vl = _mm256_shuffle_epi8(lut, lo);
        __m256i a = _mm256_unpacklo_epi8(vh, vl), c = _mm256_unpackhi_epi8(vh, vl);
        _mm256_storeu_si256((__m256i *)(out + 2 * i), _mm256_permute2x128_si256(a, c, 0x20));
        _mm256_storeu_si256((__m256i *)(out + 2 * i + 32), _mm256_permute2x128_si256(a, c, 0x31));
    }
    return expand_scalar(out, n, i, pairs, dict, nd, esc, esc_end);
}

size_t wv_pairs_expand(uint8_t *out, size_t n, const uint8_t *pairs, const uint8_t *dict, unsigned nd,
                       const uint8_t **esc, const uint8_t *esc_end, int ref)
{
    if (have_avx2 && !ref) return expand_avx2(out, n, pairs, dict, nd, esc, esc_end);
    return expand_scalar(out, n, 0, pairs, dict, nd, esc, esc_end);
}
