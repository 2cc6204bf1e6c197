/* Payload coders implemented in C: "planes" (byte planes, each plane raw,
 * constant or rANS-coded) and "xor" (the same, applied to member XOR predicted
 * base, with optional base-exponent contexts).  Layout in docs/FORMAT.md. */
#ifndef WV_PCODEC_H
#define WV_PCODEC_H
#include "ctx.h"

/* Codec ids stored in frame headers; 1 (zstd) and 4 (ckpt) are coded in Python. */
enum { WV_CODEC_RAW = 0, WV_CODEC_ZSTD = 1, WV_CODEC_PLANES = 2, WV_CODEC_XOR = 3, WV_CODEC_CKPT = 4 };

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
size_t wv_payload_estimate(wv_ctx *ctx, const uint8_t *src, size_t n, unsigned dtype, const uint8_t *base,
                           unsigned base_dtype);
/* whole frames for codecs 0, 2 and 3 (codec.c) */
size_t wv_frame_bound(size_t raw_size);
size_t wv_encode_frame(wv_ctx *ctx, unsigned codec, uint8_t *dst, size_t cap, const uint8_t *src, size_t n,
                       unsigned dtype, const uint8_t *base, size_t base_size, unsigned base_dtype);
size_t wv_decode_frame(wv_ctx *ctx, const uint8_t *frame, size_t size, uint8_t *dst, size_t dst_size,
                       const uint8_t *base, size_t base_size);
/* batches (batch.c) */
size_t wv_encode_many(wv_ctx *ctx, unsigned codec, uint8_t *dst, size_t cap, const uint8_t *src, size_t n,
                      unsigned dtype, const uint8_t *base, size_t base_size, unsigned base_dtype,
                      size_t frame_size, uint32_t *frame_sizes);
size_t wv_scan_frames(const uint8_t *src, size_t size, uint64_t *offsets, uint32_t *raw_sizes, size_t max_frames,
                      uint32_t *native_only);
size_t wv_decode_many(wv_ctx *ctx, const uint8_t *src, const uint64_t *offsets, size_t count, size_t src_end,
                      uint8_t *dst, size_t dst_size, uint64_t raw_start, const uint8_t *base, size_t base_size,
                      uint64_t *failed);
#endif
