/* Many frames per C call (batch.c). */
#ifndef WV_BATCH_H
#define WV_BATCH_H
#include "ctx.h"

size_t wv_encode_many(wv_ctx *ctx, unsigned codec, uint8_t *dst, size_t cap, const uint8_t *src, size_t n,
                      unsigned dtype, const uint8_t *base, size_t base_size, unsigned base_dtype,
                      size_t frame_size, uint32_t *frame_sizes);
size_t wv_scan_frames(const uint8_t *src, size_t size, uint64_t *offsets, uint32_t *raw_sizes, size_t max_frames,
                      uint32_t *native_only);
size_t wv_decode_many(wv_ctx *ctx, const uint8_t *src, const uint64_t *offsets, size_t count, size_t src_end,
                      uint8_t *dst, size_t dst_size, uint64_t raw_start, const uint8_t *base, size_t base_size,
                      unsigned base_dtype, uint64_t *failed);
#endif
