/* Whole frames for the codecs coded in C (codec.c): header, payload, both checksums
 * and the per-frame fallback. */
#ifndef WV_CODEC_H
#define WV_CODEC_H
#include "ctx.h"

/* Codec ids stored in frame headers; 1 (zstd) and 4 (ckpt) are coded in Python. */
enum { WV_CODEC_RAW = 0, WV_CODEC_ZSTD = 1, WV_CODEC_PLANES = 2, WV_CODEC_XOR = 3, WV_CODEC_CKPT = 4 };

size_t wv_frame_bound(size_t raw_size);
size_t wv_encode_frame(wv_ctx *ctx, unsigned codec, uint8_t *dst, size_t cap, const uint8_t *src, size_t n,
                       unsigned dtype, const uint8_t *base, size_t base_size, unsigned base_dtype);
/* base_dtype is the dtype the given base bytes are in: 0 for the one the frame's header
 * records, or the frame's own dtype for a base already cast to it (the decoder's first step,
 * so a reader that keeps a base cast for its members skips that cast on every frame). */
size_t wv_decode_frame(wv_ctx *ctx, const uint8_t *frame, size_t size, uint8_t *dst, size_t dst_size,
                       const uint8_t *base, size_t base_size, unsigned base_dtype);
#endif
