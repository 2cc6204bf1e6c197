/* Float casts used as delta predictors (see cast.h).  Scalar on purpose: they run
 * once per frame over the base and the decoder must reproduce them bit for bit. */
#include "cast.h"

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

static int have_avx2;
__attribute__((constructor)) static void cast_init(void)
{
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2") != 0;
}

size_t wv_cast(uint8_t *dst, unsigned dtype, const uint8_t *base, unsigned base_dtype, size_t n_el)
{
    size_t i;
    WV_RETURN_ERROR_IF(!wv_cast_supported(dtype, base_dtype), WV_ERR_UNSUPPORTED_CAST);
    if (dtype == base_dtype) {
        memcpy(dst, base, n_el * wv_dtype_size(dtype));
    } else if (base_dtype == WV_DT_F32 && dtype == WV_DT_BF16) {
        (have_avx2 ? f32_to_bf16_avx2 : f32_to_bf16_sse2)(dst, base, n_el);
    } else if (base_dtype == WV_DT_F32) {
        for (i = 0; i < n_el; i++) wv_wr16(dst + 2 * i, f32_to_f16(wv_rd32(base + 4 * i)));
    } else if (base_dtype == WV_DT_BF16) {
        for (i = 0; i < n_el; i++) wv_wr32(dst + 4 * i, (uint32_t)wv_rd16(base + 2 * i) << 16);
    } else {
        for (i = 0; i < n_el; i++) wv_wr32(dst + 4 * i, f16_to_f32(wv_rd16(base + 2 * i)));
    }
    return n_el;
}
