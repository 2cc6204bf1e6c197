/* CRC32C (Castagnoli), the checksum of every frame (docs/FORMAT.md).
 *
 * Why two paths: the SSE4.2 crc32 instruction has latency 3 and throughput 1,
 * so one dependent stream runs at ~8 bytes / 3 cycles; three independent streams
 * over adjacent blocks, merged with "append N zero bytes" operators (Mark
 * Adler's method, GF(2) matrices turned into 4x256 tables), run ~3x faster.
 * That matters because decode checks the payload and the raw bytes of every
 * frame (~1.7 bytes hashed per raw byte).  The scalar path is slicing-by-8.
 */
#include "wv_base.h"
#include <nmmintrin.h>

#define POLY 0x82f63b78u
#define LONG_BLK 8192
#define SHORT_BLK 256

static uint32_t tab8[8][256];
static uint32_t zeros_long[4][256], zeros_short[4][256];
static int have_sse42;

static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1) sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_square(uint32_t *sq, const uint32_t *mat)
{
    for (int n = 0; n < 32; n++) sq[n] = gf2_times(mat, mat[n]);
}

/* Operator that appends len zero bytes to a CRC; len must be a power of two. */
static void zeros_op(uint32_t *even, size_t len)
{
    uint32_t odd[32], row = 1;
    odd[0] = POLY;
    for (int n = 1; n < 32; n++) { odd[n] = row; row <<= 1; }
    gf2_square(even, odd);
    gf2_square(odd, even);
    do {
        gf2_square(even, odd);
        len >>= 1;
        if (len == 0) return;
        gf2_square(odd, even);
        len >>= 1;
    } while (len);
    memcpy(even, odd, sizeof odd);
}

static void zeros_tables(uint32_t z[4][256], size_t len)
{
    uint32_t op[32];
    zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        z[0][n] = gf2_times(op, n);
        z[1][n] = gf2_times(op, n << 8);
        z[2][n] = gf2_times(op, n << 16);
        z[3][n] = gf2_times(op, n << 24);
    }
}

static inline uint32_t shift(uint32_t z[4][256], uint32_t crc)
{
    return z[0][crc & 0xff] ^ z[1][(crc >> 8) & 0xff] ^ z[2][(crc >> 16) & 0xff] ^ z[3][crc >> 24];
}

__attribute__((constructor)) static void crc32c_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        tab8[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = tab8[0][n];
        for (int k = 1; k < 8; k++) { c = tab8[0][c & 0xff] ^ (c >> 8); tab8[k][n] = c; }
    }
    zeros_tables(zeros_long, LONG_BLK);
    zeros_tables(zeros_short, SHORT_BLK);
    __builtin_cpu_init();
    have_sse42 = __builtin_cpu_supports("sse4.2");
}

uint32_t wv_crc32c_scalar(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint32_t c = ~crc;
    while (len && ((uintptr_t)p & 7)) { c = tab8[0][(c ^ *p++) & 0xff] ^ (c >> 8); len--; }
    while (len >= 8) {
        uint32_t lo = wv_rd32(p) ^ c, hi = wv_rd32(p + 4);
        c = tab8[7][lo & 0xff] ^ tab8[6][(lo >> 8) & 0xff] ^ tab8[5][(lo >> 16) & 0xff] ^ tab8[4][lo >> 24] ^
            tab8[3][hi & 0xff] ^ tab8[2][(hi >> 8) & 0xff] ^ tab8[1][(hi >> 16) & 0xff] ^ tab8[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) c = tab8[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

/* Three streams over adjacent blocks of blk bytes while 3 * blk bytes remain;
 * inlined with a constant blk so each block size gets its own loop. */
__attribute__((target("sse4.2"), always_inline)) static inline uint64_t
crc32c_3way(uint64_t c0, const uint8_t **pp, size_t *lenp, size_t blk, uint32_t z[4][256])
{
    const uint8_t *p = *pp;
    size_t len = *lenp;
    while (len >= 3 * blk) {
        uint64_t c1 = 0, c2 = 0;
        const uint8_t *end = p + blk;
        do {
            uint64_t a, b, d;
            memcpy(&a, p, 8); memcpy(&b, p + blk, 8); memcpy(&d, p + 2 * blk, 8);
            c0 = _mm_crc32_u64(c0, a); c1 = _mm_crc32_u64(c1, b); c2 = _mm_crc32_u64(c2, d);
            p += 8;
        } while (p < end);
        c0 = shift(z, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift(z, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * blk;
        len -= 3 * blk;
    }
    *pp = p;
    *lenp = len;
    return c0;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t c0 = ~crc;
    while (len && ((uintptr_t)p & 7)) { c0 = _mm_crc32_u8((uint32_t)c0, *p++); len--; }
    c0 = crc32c_3way(c0, &p, &len, LONG_BLK, zeros_long);
    c0 = crc32c_3way(c0, &p, &len, SHORT_BLK, zeros_short);
    while (len >= 8) { uint64_t a; memcpy(&a, p, 8); c0 = _mm_crc32_u64(c0, a); p += 8; len -= 8; }
    while (len--) c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    return ~(uint32_t)c0;
}

uint32_t wv_crc32c(uint32_t crc, const void *buf, size_t len)
{
    return have_sse42 ? crc32c_sse42(crc, buf, len) : wv_crc32c_scalar(crc, buf, len);
}
