/* Checkpoint-delta coder (codec "ckpt", id 4): codes a float tensor frame
 * against the same elements of the previous checkpoint with an adaptive binary
 * range coder whose contexts come from the prediction.  Payload layout and the
 * measurements behind the model are in ckpt.c. */
#ifndef WV_CKPT_H
#define WV_CKPT_H
#include "wv_base.h"

/* Residual modes, chosen per frame by the encoder (mode 0 = try both). */
#define WV_CKPT_AUTO 0
#define WV_CKPT_XOR 1   /* |cur| XOR |pred| */
#define WV_CKPT_MAG 2   /* |cur| - |pred|, sign + magnitude */
#define WV_CKPT_NEG_RAW 4 /* with MAG: the difference's sign is stored raw */
#define WV_CKPT_NO_FLIP 8 /* flag set by the encoder: no element changes sign */
#define WV_CKPT_FLIP_RAW 16 /* the sign-change bit is stored raw (not with NO_FLIP) */

/* Largest payload wv_ckpt_encode can write for n raw bytes. */
size_t wv_ckpt_bound(size_t n);
/* Codes n bytes of src (dtype F32, BF16 or F16) against base, the same
 * elements of the previous checkpoint in base_dtype (the same dtype, or one
 * wv_cast_supported casts from, e.g. an F32 base for a BF16 member).  Returns the payload size, or an error (wv_isError).  Allocates
 * nothing: the models live on the stack (about 45 KiB). */
size_t wv_ckpt_encode(uint8_t *dst, size_t cap, const uint8_t *src, const uint8_t *base, size_t n,
                      unsigned dtype, unsigned base_dtype, unsigned mode);
/* Decodes a payload into exactly n bytes of dst.  Hostile input cannot make it
 * read or write out of bounds; inconsistent payloads give WV_ERR_CORRUPT. */
size_t wv_ckpt_decode(uint8_t *dst, size_t n, const uint8_t *src, size_t src_size, const uint8_t *base,
                      unsigned dtype, unsigned base_dtype);
/* Mode a payload was coded with (1 or 2, | NEG_RAW with 2, | NO_FLIP or FLIP_RAW), or an error. */
size_t wv_ckpt_payload_mode(const uint8_t *src, size_t src_size);
#endif
