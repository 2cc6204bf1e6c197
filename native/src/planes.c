/* Byte-plane split/merge kernels.  Each body is written once as an inline C loop
 * and instantiated three times: a reference build with vectorisation off, a
 * baseline build (SSE2 auto-vectorised) and an AVX2 build chosen at run time. */
#include "planes.h"

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
