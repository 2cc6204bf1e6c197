/* Frame header writer and validating parser.  The parser checks everything
 * that can be checked without the payload (magic, version, header CRC,
 * reserved bits, dtype, size arithmetic), so a caller can reject garbage
 * before allocating or decoding anything. */
#include "frame.h"

size_t wv_frame_write_header(uint8_t *dst, const wv_frame_header *h)
{
    dst[0] = 'W'; dst[1] = 'V'; dst[2] = 'F'; dst[3] = WV_FRAME_VERSION;
    dst[4] = (uint8_t)h->codec; dst[5] = (uint8_t)h->dtype;
    dst[6] = (uint8_t)h->flags; dst[7] = (uint8_t)h->base_dtype;
    wv_wr32(dst + 8, h->raw_size);
    wv_wr32(dst + 12, h->payload_size);
    wv_wr32(dst + 16, h->raw_crc);
    wv_wr32(dst + 20, h->payload_crc);
    wv_wr32(dst + 24, 0);
    wv_wr32(dst + 28, wv_crc32c(0, dst, 28));
    return WV_FRAME_HEADER_SIZE;
}

size_t wv_frame_parse(const uint8_t *src, size_t src_size, wv_frame_header *h)
{
    WV_RETURN_ERROR_IF(src_size < WV_FRAME_HEADER_SIZE, WV_ERR_SRC_TRUNCATED);
    WV_RETURN_ERROR_IF(src[0] != 'W' || src[1] != 'V' || src[2] != 'F', WV_ERR_BAD_MAGIC);
    WV_RETURN_ERROR_IF(src[3] < WV_FRAME_VERSION_MIN || src[3] > WV_FRAME_VERSION, WV_ERR_BAD_VERSION);
    WV_RETURN_ERROR_IF(wv_crc32c(0, src, 28) != wv_rd32(src + 28), WV_ERR_HEADER_CHECKSUM);
    h->version = src[3];
    h->codec = src[4]; h->dtype = src[5]; h->flags = src[6]; h->base_dtype = src[7];
    h->raw_size = wv_rd32(src + 8);
    h->payload_size = wv_rd32(src + 12);
    h->raw_crc = wv_rd32(src + 16);
    h->payload_crc = wv_rd32(src + 20);
    WV_RETURN_ERROR_IF((h->flags & ~WV_FLAGS_KNOWN) || wv_rd32(src + 24) != 0, WV_ERR_RESERVED_BITS);
    WV_RETURN_ERROR_IF(h->dtype >= WV_DT_COUNT, WV_ERR_BAD_DTYPE);
    if (h->flags & WV_FLAG_NEEDS_BASE)
        WV_RETURN_ERROR_IF(h->base_dtype >= WV_DT_COUNT, WV_ERR_BAD_DTYPE);
    else
        WV_RETURN_ERROR_IF(h->base_dtype != 0, WV_ERR_RESERVED_BITS);
    WV_RETURN_ERROR_IF(h->raw_size > WV_MAX_RAW || h->raw_size % wv_dtype_size(h->dtype), WV_ERR_BAD_SIZE);
    WV_RETURN_ERROR_IF(h->payload_size > src_size - WV_FRAME_HEADER_SIZE, WV_ERR_SRC_TRUNCATED);
    return WV_FRAME_HEADER_SIZE + (size_t)h->payload_size;
}
