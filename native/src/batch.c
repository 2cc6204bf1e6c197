/* Many frames per call: a tensor's frames coded or decoded back to back with the
 * GIL released once, so Python's per-frame cost (~15 us, 10% of a 256 KiB frame)
 * disappears from bulk paths and two threads each take one half of the frames.
 * Only codecs implemented in C (raw, planes, xor); Python falls back per frame. */
#include "batch.h"
#include "codec.h"
#include "frame.h"

size_t wv_encode_many(wv_ctx *c, unsigned codec, uint8_t *dst, size_t cap, const uint8_t *src, size_t n,
                      unsigned dtype, const uint8_t *base, size_t base_size, unsigned base_dtype,
                      size_t frame_size, uint32_t *frame_sizes)
{
    size_t k = wv_dtype_size(dtype), bk = base ? wv_dtype_size(base_dtype) : 0;
    WV_RETURN_ERROR_IF(k == 0 || (base && bk == 0), WV_ERR_BAD_DTYPE);
    WV_RETURN_ERROR_IF(frame_size == 0 || frame_size % k || n % k, WV_ERR_BAD_SIZE);
    WV_RETURN_ERROR_IF(base && base_size != n / k * bk, WV_ERR_BAD_SIZE);
    size_t o = 0, f = 0;
    for (size_t off = 0; off < n; off += frame_size, f++) {
        size_t len = n - off < frame_size ? n - off : frame_size;
        const uint8_t *b = base ? base + off / k * bk : NULL;
        size_t r = wv_encode_frame(c, codec, dst + o, cap - o, src + off, len, dtype, b, len / k * bk, base_dtype);
        WV_FORWARD_IF_ERROR(r);
        frame_sizes[f] = (uint32_t)r;
        o += r;
    }
    return o;
}

size_t wv_scan_frames(const uint8_t *src, size_t size, uint64_t *offsets, uint32_t *raw_sizes, size_t max_frames,
                      uint32_t *native_only)
{
    size_t pos = 0, count = 0;
    *native_only = 1;
    while (pos < size) {
        wv_frame_header h;
        size_t fs = wv_frame_parse(src + pos, size - pos, &h);
        WV_FORWARD_IF_ERROR(fs);
        if (h.codec != WV_CODEC_RAW && h.codec != WV_CODEC_PLANES && h.codec != WV_CODEC_XOR) *native_only = 0;
        if (count < max_frames) { offsets[count] = pos; raw_sizes[count] = h.raw_size; } /* else: retry */
        count++;
        pos += fs;
    }
    return count;
}

/* Where frame f of a batch starts, its raw size, and its slice of the base. */
typedef struct {
    const uint8_t *frame, *base;
    size_t size, raw, base_len;
} frame_ref;

static size_t locate(const uint8_t *src, const uint64_t *offsets, size_t count, size_t src_end, size_t f,
                     uint64_t raw_at, const uint8_t *base, size_t base_size, unsigned base_dtype, frame_ref *r)
{
    size_t end = f + 1 < count ? offsets[f + 1] : src_end;
    WV_RETURN_ERROR_IF(end < offsets[f] || end > src_end, WV_ERR_CORRUPT);
    wv_frame_header h;
    /* A frame ends where its header says; bytes up to the next offset are skipped, so the
     * frames of a store's pack can be decoded in place between their entry headers. */
    size_t fs = wv_frame_parse(src + offsets[f], end - offsets[f], &h);
    WV_FORWARD_IF_ERROR(fs);
    r->frame = src + offsets[f];
    r->size = fs;
    r->raw = h.raw_size;
    r->base = NULL;
    r->base_len = 0;
    if (h.flags & WV_FLAG_NEEDS_BASE) {
        size_t k = wv_dtype_size(h.dtype), bk = wv_dtype_size(base_dtype ? base_dtype : h.base_dtype);
        WV_RETURN_ERROR_IF(bk == 0, WV_ERR_BAD_DTYPE);
        WV_RETURN_ERROR_IF(!base, WV_ERR_BASE_MISSING);
        WV_RETURN_ERROR_IF(raw_at % k, WV_ERR_BAD_SIZE);
        size_t bo = raw_at / k * bk; /* frames hold whole elements, so this is exact */
        r->base_len = h.raw_size / k * bk;
        WV_RETURN_ERROR_IF(r->base_len > base_size || bo > base_size - r->base_len, WV_ERR_BAD_SIZE);
        r->base = base + bo;
    }
    return 0;
}

size_t wv_decode_many(wv_ctx *c, const uint8_t *src, const uint64_t *offsets, size_t count, size_t src_end,
                      uint8_t *dst, size_t dst_size, uint64_t raw_start, const uint8_t *base, size_t base_size,
                      unsigned base_dtype, uint64_t *failed)
{
    /* Frames one at a time: decoding two frames' rANS streams in lockstep is 1.5x faster
     * on hot data but 8% slower streaming a whole model (1420 vs 1540 MB/s, MiniLM BF16):
     * two frames' buffers (~1.1 MB) overflow the 1 MiB L2. */
    size_t o = 0;
    for (size_t f = 0; f < count; f++) {
        frame_ref a = {0};
        *failed = f;
        WV_FORWARD_IF_ERROR(locate(src, offsets, count, src_end, f, raw_start + o, base, base_size, base_dtype, &a));
        WV_RETURN_ERROR_IF(a.raw > dst_size - o, WV_ERR_DST_TOO_SMALL);
        WV_FORWARD_IF_ERROR(wv_decode_frame(c, a.frame, a.size, dst + o, a.raw, a.base, a.base_len, base_dtype));
        o += a.raw;
    }
    WV_RETURN_ERROR_IF(o != dst_size, WV_ERR_DST_TOO_SMALL);
    return o;
}
