/* Distance coding of a float member against its prediction (mag.c): the body of an
 * xor payload with Plane_Flags MAG (frame version >= 3; layout in docs/FORMAT.md,
 * "Distance payload").  Each element becomes the signed number of representable
 * values between the prediction and the member; one rANS symbol per element codes
 * its size class, the bits under its leading one are stored raw.  A near-identical member
 * (frame version >= 4) lists only its moved elements instead (mode SPARSE). */
#ifndef WV_MAG_H
#define WV_MAG_H
#include "ctx.h"

#define WV_MAG_DIRECT 16 /* distance codes below this are their own symbol */

/* BF16, F16, F32: the dtypes with an exponent field (wv_exp_layout). */
int wv_mag_supported(unsigned dtype);
/* Body for n_el elements of src against pred (both dtype); NOT_COMPRESSIBLE if it
 * does not fit in cap. */
size_t wv_mag_encode(wv_ctx *c, uint8_t *dst, size_t cap, const uint8_t *src, const uint8_t *pred, size_t n_el,
                     unsigned dtype);
/* Estimated size of that body, without running the coder. */
size_t wv_mag_estimate(wv_ctx *c, const uint8_t *src, const uint8_t *pred, size_t n_el, unsigned dtype);
/* dst (n_el elements) from a body of size bytes in a frame of that version (mode SPARSE
 * needs 4); never reads or writes outside them.  pred may be dst itself (each element is
 * read before it is written). */
size_t wv_mag_decode(wv_ctx *c, uint8_t *dst, const uint8_t *src, size_t size, const uint8_t *pred, size_t n_el,
                     unsigned dtype, unsigned version);
/* Rebuild kernel: 0 = scalar, 1 = AVX2, 2 = AVX-512, -1 = the best this CPU has; returns the
 * kernel in use or -1 if the one asked for is not supported here. */
int wv_mag_select_kernel(int kernel);
#endif
