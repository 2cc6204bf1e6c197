/* Payload coders implemented in C (pcodec.c): "planes" (byte planes, each plane raw,
 * constant or rANS-coded) and "xor" (the same, applied to member XOR predicted
 * base, with optional base-exponent contexts, or a distance payload: mag.h).
 * Layout in docs/FORMAT.md. */
#ifndef WV_PCODEC_H
#define WV_PCODEC_H
#include "ctx.h"

/* plane modes */
enum { WV_PLANE_RAW = 0, WV_PLANE_CONST = 1, WV_PLANE_RANS = 2, WV_PLANE_PAIRS = 3 /* frame version >= 2 */ };
/* payload flag bits */
#define WV_PF_ROT 0x01u        /* sign rotated below the mantissa before the split */
#define WV_PF_CTX_EXP 0x02u    /* xor only: planes may use base-exponent contexts */
#define WV_PF_MAG 0x04u        /* xor only, frame version >= 3: a distance payload (mag.h) follows */
#define WV_PF_KNOWN 0x07u
#define WV_NCTX 12             /* contexts of WV_PF_CTX_EXP */

size_t wv_payload_bound(size_t raw_size);
size_t wv_payload_encode(wv_ctx *ctx, uint8_t *dst, size_t cap, const uint8_t *src, size_t n, unsigned dtype,
                         const uint8_t *base, unsigned base_dtype);
size_t wv_payload_decode(wv_ctx *ctx, uint8_t *dst, size_t n, const uint8_t *src, size_t size, unsigned dtype,
                         const uint8_t *base, unsigned base_dtype, unsigned frame_version);
size_t wv_planes_sample_size(const uint8_t *src, size_t n, unsigned dtype);
size_t wv_payload_estimate(wv_ctx *ctx, const uint8_t *src, size_t n, unsigned dtype, const uint8_t *base,
                           unsigned base_dtype);
#endif
