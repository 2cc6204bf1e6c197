/* Frame header: 32 bytes in front of every coded frame (docs/FORMAT.md, "Frame").
 * The header is generic: any codec (C or Python, e.g. codec/ckpt.py) uses it. */
#ifndef WV_FRAME_H
#define WV_FRAME_H
#include "wv_base.h"

/* magic "WVF"(3) + version(1) + codec(1) + dtype(1) + flags(1) + base_dtype(1)
 * + raw_size(4) + payload_size(4) + raw_crc(4) + payload_crc(4) + reserved(4) + header_crc(4) */
#define WV_FRAME_HEADER_SIZE 32
/* Version 2 adds plane mode PAIRS to codecs 2 and 3, version 3 distance payloads
 * (Plane_Flags MAG) to codec 3, version 4 (written) their Sym_Mode SPARSE; versions 1 to 3
 * are still read. */
#define WV_FRAME_VERSION 4
#define WV_FRAME_VERSION_MIN 1
#define WV_FLAG_NEEDS_BASE 0x01u
#define WV_FLAGS_KNOWN 0x01u

typedef struct {
    unsigned codec, dtype, flags, base_dtype;
    uint32_t raw_size, payload_size, raw_crc, payload_crc;
    unsigned version; /* set by wv_frame_parse; the writer always writes WV_FRAME_VERSION */
} wv_frame_header;

uint32_t wv_crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t wv_crc32c_scalar(uint32_t crc, const void *buf, size_t len);
size_t wv_frame_write_header(uint8_t *dst, const wv_frame_header *h);
size_t wv_frame_parse(const uint8_t *src, size_t src_size, wv_frame_header *h);
#endif
