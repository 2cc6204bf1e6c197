/* Float casts used as delta predictors (see cast.h).  The decoder must reproduce them bit for
 * bit: every SIMD kernel gives the scalar rule's bits for every input, whatever MXCSR holds. */
#include "cast.h"
#include <immintrin.h>

/* Round to nearest even, branch-free so array loops vectorise.  torch 2.x CPU
 * (vectorised path) turns every NaN into 0xFFFF; its scalar c10::BFloat16 gives
 * 0x7FC0.  Either way this is only a prediction. */
static inline uint16_t f32_to_bf16(uint32_t x)
{
    uint32_t r = (x + 0x7fffu + ((x >> 16) & 1)) >> 16;
    return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? 0xffffu : r);
}

static uint16_t f32_to_f16(uint32_t x)
{
    uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    /* NaN: quiet, sign and top payload bits kept (what torch produces) */
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a & 0x7fffffu) >> 13));
    if (a == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to infinity */
    if (a < 0x38800000u) {                                    /* F16 subnormal or zero */
        uint32_t e = a >> 23;
        if (e < 102) return (uint16_t)sign;
        uint32_t m = (a & 0x7fffffu) | 0x800000u, sh = 126 - e;
        uint32_t r = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t h = (a - 0x38000000u) >> 13, rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static uint32_t f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return sign | 0x7f800000u | (m << 13);
    if (e == 0) {
        if (m == 0) return sign;
        e = 113;
        while (!(m & 0x400u)) { m <<= 1; e--; }
        return sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
    return sign | ((e + 112) << 23) | (m << 13);
}

int wv_cast_supported(unsigned dtype, unsigned base_dtype)
{
    if (dtype == base_dtype) return dtype < WV_DT_COUNT;
    if (base_dtype == WV_DT_F32) return dtype == WV_DT_BF16 || dtype == WV_DT_F16;
    if (dtype == WV_DT_F32) return base_dtype == WV_DT_BF16 || base_dtype == WV_DT_F16;
    return 0;
}

/* F32 -> BF16 over an array, vectorised (AVX2 build chosen at run time): 128 Ki
 * elements 32 us scalar-branchy -> a few us. */
static inline __attribute__((always_inline)) void f32_to_bf16_body(uint8_t *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) wv_wr16(dst + 2 * i, f32_to_bf16(wv_rd32(src + 4 * i)));
}

static void f32_to_bf16_sse2(uint8_t *dst, const uint8_t *src, size_t n) { f32_to_bf16_body(dst, src, n); }
__attribute__((target("avx2"))) static void f32_to_bf16_avx2(uint8_t *dst, const uint8_t *src, size_t n)
{
    f32_to_bf16_body(dst, src, n);
}

/* AVX-512 (Zen 4: AVX512_BF16): vcvtne2ps2bf16 rounds to nearest even as the rule does, but
 * turns denormal inputs into zero and keeps NaN payloads, so a 32-element step whose result
 * holds a zero or a NaN is redone with the rule in integer lanes, as is the tail.  (The test is
 * on the result, not vfpclassps on the input: that one sees no denormals under MXCSR.DAZ, which
 * a caller such as torch.set_flush_denormal may set.)  MB of F32 per CPU second (median of
 * per-round ratios, kernels interleaved): one 512 KB frame hot in cache, AVX2 ~29000 -> ~46000
 * (x1.55-1.65; the rule in integer lanes alone: x1.1); from DRAM (MiniLM's tensors, as decode,
 * restore and the base cache cast them) bandwidth-bound: x0.94-1.08.  Stored as two 32-byte
 * halves: one 64-byte store was x0.95 of this from DRAM. */
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512bf16")))
/* 16 lanes of the rule, the BF16 left in each lane's high half (NaN lanes all ones) */
static inline __attribute__((always_inline)) AVX512 __m512i bf16_round16(__m512i x)
{
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __mmask16 num = _mm512_cmp_ps_mask(_mm512_castsi512_ps(x), _mm512_castsi512_ps(x), _CMP_ORD_Q);
    return _mm512_mask_add_epi32(_mm512_set1_epi32(-1), num, _mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb);
}

/* the high halves of a's and b's 32-bit lanes, a's first */
static inline __attribute__((always_inline)) AVX512 __m512i high_halves(__m512i a, __m512i b)
{
    const __m512i odd = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27,
                                         25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_permutex2var_epi16(a, odd, b);
}

AVX512 static void f32_to_bf16_avx512(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = _mm512_loadu_ps(src + 4 * i), b = _mm512_loadu_ps(src + 4 * i + 64);
        __m512i r = (__m512i)_mm512_cvtne2ps_pbh(b, a);
        __m512i twice = _mm512_add_epi16(r, r); /* without the sign: 0 for +-0, above 0xFF00 for NaN */
        if (_mm512_cmpge_epu16_mask(_mm512_sub_epi16(twice, _mm512_set1_epi16(1)), _mm512_set1_epi16((short)0xff00)))
            r = high_halves(bf16_round16(_mm512_castps_si512(a)), bf16_round16(_mm512_castps_si512(b)));
        _mm256_storeu_si256((__m256i *)(dst + 2 * i), _mm512_castsi512_si256(r));
        _mm256_storeu_si256((__m256i *)(dst + 2 * i + 32), _mm512_extracti64x4_epi64(r, 1));
    }
    if (i < n) {
        __mmask32 m = (__mmask32)((1ull << (n - i)) - 1);
        __m512i a = bf16_round16(_mm512_maskz_loadu_epi32((__mmask16)m, src + 4 * i));
        __m512i b = bf16_round16(_mm512_maskz_loadu_epi32((__mmask16)(m >> 16), src + 4 * i + 64));
        _mm512_mask_storeu_epi16(dst + 2 * i, m, high_halves(a, b));
    }
}

/* F32 -> F16: vcvtps2ph, rounding to nearest even by its immediate, is f32_to_f16 for all 2^32
 * inputs (checked exhaustively on Zen 4, also with MXCSR's FTZ and DAZ set: F32 denormals become
 * a signed zero either way, F16 subnormal results are kept, NaNs keep sign and top payload bits). */
__attribute__((target("avx2,f16c"))) static void f32_to_f16_f16c(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + 2 * i), _mm256_cvtps_ph(_mm256_loadu_ps((const float *)(src + 4 * i)),
                                                                  _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) wv_wr16(dst + 2 * i, f32_to_f16(wv_rd32(src + 4 * i)));
}

AVX512 static void f32_to_f16_avx512(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + 2 * i), _mm512_cvtps_ph(_mm512_loadu_ps(src + 4 * i),
                                                                      _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) wv_wr16(dst + 2 * i, f32_to_f16(wv_rd32(src + 4 * i)));
}

static void f32_to_f16_scalar(uint8_t *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) wv_wr16(dst + 2 * i, f32_to_f16(wv_rd32(src + 4 * i)));
}

typedef void (*cast_fn)(uint8_t *, const uint8_t *, size_t);
static cast_fn f32_to_bf16_array = f32_to_bf16_sse2, f32_to_f16_array = f32_to_f16_scalar;

int wv_cast_select_kernel(int kernel)
{
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512bf16");
    if (kernel < 0) kernel = avx512 ? 2 : avx2;
    if (kernel > 2 || (kernel == 1 && !avx2) || (kernel == 2 && !avx512)) return -1;
    static const cast_fn bf16[] = {f32_to_bf16_sse2, f32_to_bf16_avx2, f32_to_bf16_avx512},
                         f16[] = {f32_to_f16_scalar, f32_to_f16_f16c, f32_to_f16_avx512};
    f32_to_bf16_array = bf16[kernel];
    f32_to_f16_array = f16[kernel];
    return kernel;
}

__attribute__((constructor)) static void cast_init(void) { wv_cast_select_kernel(-1); }

size_t wv_cast(uint8_t *dst, unsigned dtype, const uint8_t *base, unsigned base_dtype, size_t n_el)
{
    size_t i;
    WV_RETURN_ERROR_IF(!wv_cast_supported(dtype, base_dtype), WV_ERR_UNSUPPORTED_CAST);
    if (dtype == base_dtype) {
        memcpy(dst, base, n_el * wv_dtype_size(dtype));
    } else if (base_dtype == WV_DT_F32 && dtype == WV_DT_BF16) {
        f32_to_bf16_array(dst, base, n_el);
    } else if (base_dtype == WV_DT_F32) {
        f32_to_f16_array(dst, base, n_el);
    } else if (base_dtype == WV_DT_BF16) {
        for (i = 0; i < n_el; i++) wv_wr32(dst + 4 * i, (uint32_t)wv_rd16(base + 2 * i) << 16);
    } else {
        for (i = 0; i < n_el; i++) wv_wr32(dst + 4 * i, f16_to_f32(wv_rd16(base + 2 * i)));
    }
    return n_el;
}
