/* Byte planes: element j of plane p is byte (k-1-p) of element j after an optional
 * left rotation by one bit ("rot": moves the sign below the mantissa so plane 0
 * holds the whole exponent of BF16/F32/F64, as ZipNN does).  Plane 0 is the most
 * significant byte.  Split and merge are exact inverses for k in {1, 2, 4, 8}. */
#ifndef WV_PLANES_H
#define WV_PLANES_H
#include "wv_base.h"

void wv_split(const uint8_t *src, size_t n_el, unsigned k, int rot, uint8_t *const *planes);
void wv_merge(uint8_t *dst, size_t n_el, unsigned k, int rot, const uint8_t *const *planes);
/* reference kernels (no vectorisation) for the tests */
void wv_split_ref(const uint8_t *src, size_t n_el, unsigned k, int rot, uint8_t *const *planes);
void wv_merge_ref(uint8_t *dst, size_t n_el, unsigned k, int rot, const uint8_t *const *planes);
void wv_xor_into(uint8_t *dst, const uint8_t *a, const uint8_t *b, size_t n);
#define WV_PAIR_ESC 15 /* pair code of an escaped byte; codes 0..14 index the dictionary */
/* Plane bytes out[0..n) from the ceil(n/2) symbols of a PAIRS plane (docs/FORMAT.md);
 * *esc advances over the escape bytes used.  Error if a code is >= nd and not an escape,
 * escapes run out, or the padding code of an odd n is not 0.  ref: scalar only (tests). */
size_t wv_pairs_expand(uint8_t *out, size_t n, const uint8_t *pairs, const uint8_t *dict, unsigned nd,
                       const uint8_t **esc, const uint8_t *esc_end, int ref);
#endif
