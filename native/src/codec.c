/* Whole frames for the codecs implemented in C (raw, planes, xor): header, payload,
 * both checksums and the per-frame fallback, in one call so Python crosses into C
 * (and releases the GIL) once per frame. */
#include "codec.h"
#include "cast.h"
#include "frame.h"
#include "pcodec.h"

/* An xor payload above this share of the raw size is compared with plain planes
 * (costs a second encode); below it, planes cannot win on float weights, whose
 * plain planes code to >= 0.65 (bench/codec.py on the shared repos). */
#define XOR_RETRY_SHARE 0.5
/* ... and only when plain planes, estimated on a sample (wv_planes_sample_size), could
 * come under it: every xor frame of the six shared repos' ingest (1,088) codes to >= 0.984x
 * that estimate in plain planes.  The FP32 fine-tune's 242 frames over the share all stayed
 * xor after their retry, their estimates 1.00-1.60x their xor payload; the 230 above
 * 1 / (1 - slack) are no longer retried (the retries were ~45% of its xor encode time). */
#define PLANES_SAMPLE_SLACK 0.05

size_t wv_frame_bound(size_t raw) { return WV_FRAME_HEADER_SIZE + wv_payload_bound(raw); }

size_t wv_encode_frame(wv_ctx *c, unsigned codec, uint8_t *dst, size_t cap, const uint8_t *src, size_t n,
                       unsigned dtype, const uint8_t *base, size_t base_size, unsigned base_dtype)
{
    unsigned k = wv_dtype_size(dtype);
    WV_RETURN_ERROR_IF(k == 0, WV_ERR_BAD_DTYPE);
    WV_RETURN_ERROR_IF(n % k || n > WV_MAX_RAW, WV_ERR_BAD_SIZE);
    WV_RETURN_ERROR_IF(cap < wv_frame_bound(n), WV_ERR_DST_TOO_SMALL);
    WV_FORWARD_IF_ERROR(wv_ctx_reserve(c, n));
    uint8_t *pay = dst + WV_FRAME_HEADER_SIZE;
    size_t pcap = cap - WV_FRAME_HEADER_SIZE, psize = n;
    wv_frame_header h = {WV_CODEC_RAW, dtype, 0, 0, (uint32_t)n, 0, 0, 0, WV_FRAME_VERSION};
    if (codec == WV_CODEC_XOR) {
        WV_RETURN_ERROR_IF(!base, WV_ERR_BASE_MISSING);
        WV_RETURN_ERROR_IF(!wv_cast_supported(dtype, base_dtype), WV_ERR_UNSUPPORTED_CAST);
        WV_RETURN_ERROR_IF(base_size != n / k * wv_dtype_size(base_dtype), WV_ERR_BAD_SIZE);
        size_t r = wv_payload_encode(c, pay, pcap, src, n, dtype, base, base_dtype);
        WV_FORWARD_IF_ERROR(r);
        if (r < psize) { psize = r; h.codec = WV_CODEC_XOR; h.flags = WV_FLAG_NEEDS_BASE; h.base_dtype = base_dtype; }
        if (r > XOR_RETRY_SHARE * n && r > (1 - PLANES_SAMPLE_SLACK) * wv_planes_sample_size(src, n, dtype))
            codec = WV_CODEC_PLANES;
    }
    if (codec == WV_CODEC_PLANES) {
        size_t r = wv_payload_encode(c, c->alt, wv_payload_bound(n), src, n, dtype, NULL, 0);
        WV_FORWARD_IF_ERROR(r);
        if (r < psize) {
            memcpy(pay, c->alt, r);
            psize = r;
            h.codec = WV_CODEC_PLANES; h.flags = 0; h.base_dtype = 0;
        }
    } else if (codec != WV_CODEC_RAW && codec != WV_CODEC_XOR) {
        return WV_ERROR(WV_ERR_UNKNOWN_CODEC);
    }
    if (h.codec == WV_CODEC_RAW) memcpy(pay, src, n);
    h.payload_size = (uint32_t)psize;
    h.raw_crc = wv_crc32c(0, src, n);
    h.payload_crc = wv_crc32c(0, pay, psize);
    wv_frame_write_header(dst, &h);
    return WV_FRAME_HEADER_SIZE + psize;
}

/* Header, payload checksum and base checks shared by the decoders below; *base_dtype
 * becomes the dtype the base bytes are in (see wv_decode_frame). */
static size_t frame_open(const uint8_t *frame, size_t size, size_t dst_size, const uint8_t **base, size_t base_size,
                         unsigned *base_dtype, wv_frame_header *h)
{
    size_t fs = wv_frame_parse(frame, size, h);
    WV_FORWARD_IF_ERROR(fs);
    WV_RETURN_ERROR_IF(fs != size, WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF(dst_size != h->raw_size, WV_ERR_DST_TOO_SMALL);
    WV_RETURN_ERROR_IF(wv_crc32c(0, frame + WV_FRAME_HEADER_SIZE, h->payload_size) != h->payload_crc,
                       WV_ERR_PAYLOAD_CHECKSUM);
    size_t k = wv_dtype_size(h->dtype);
    if (h->flags & WV_FLAG_NEEDS_BASE) {
        WV_RETURN_ERROR_IF(!*base, WV_ERR_BASE_MISSING);
        WV_RETURN_ERROR_IF(!wv_cast_supported(h->dtype, h->base_dtype), WV_ERR_UNSUPPORTED_CAST);
        if (*base_dtype == 0) *base_dtype = h->base_dtype;
        WV_RETURN_ERROR_IF(*base_dtype != h->base_dtype && *base_dtype != h->dtype, WV_ERR_UNSUPPORTED_CAST);
        WV_RETURN_ERROR_IF(base_size != h->raw_size / k * wv_dtype_size(*base_dtype), WV_ERR_BAD_SIZE);
    } else {
        *base = NULL;
    }
    return 0;
}

size_t wv_decode_frame(wv_ctx *c, const uint8_t *frame, size_t size, uint8_t *dst, size_t dst_size,
                       const uint8_t *base, size_t base_size, unsigned base_dtype)
{
    wv_frame_header h;
    WV_FORWARD_IF_ERROR(frame_open(frame, size, dst_size, &base, base_size, &base_dtype, &h));
    const uint8_t *pay = frame + WV_FRAME_HEADER_SIZE;
    switch (h.codec) {
    case WV_CODEC_RAW:
        WV_RETURN_ERROR_IF(h.payload_size != h.raw_size || base, WV_ERR_CORRUPT);
        memcpy(dst, pay, h.raw_size);
        break;
    case WV_CODEC_PLANES:
    case WV_CODEC_XOR:
        WV_RETURN_ERROR_IF((h.codec == WV_CODEC_XOR) != (base != NULL), WV_ERR_CORRUPT);
        WV_FORWARD_IF_ERROR(wv_payload_decode(c, dst, h.raw_size, pay, h.payload_size, h.dtype, base, base_dtype,
                                                     h.version));
        break;
    default:
        return WV_ERROR(WV_ERR_UNKNOWN_CODEC);
    }
    WV_RETURN_ERROR_IF(wv_crc32c(0, dst, h.raw_size) != h.raw_crc, WV_ERR_RAW_CHECKSUM);
    return h.raw_size;
}
