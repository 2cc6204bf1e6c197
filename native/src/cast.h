/* Predicting a member tensor from its base when the dtypes differ: the base is
 * cast to the member's dtype exactly as torch 2.x on CPU does (round to nearest
 * even; NaN handling measured), so a pure cast repo XORs to all zeros. */
#ifndef WV_CAST_H
#define WV_CAST_H
#include "wv_base.h"

int wv_cast_supported(unsigned dtype, unsigned base_dtype);
/* dst: n_el elements of dtype; base: n_el elements of base_dtype. */
size_t wv_cast(uint8_t *dst, unsigned dtype, const uint8_t *base, unsigned base_dtype, size_t n_el);
/* F32 -> BF16 and F32 -> F16 kernels: 0 = baseline (SSE2; F16 scalar), 1 = AVX2 (with F16C),
 * 2 = AVX-512 (with AVX512_BF16), -1 = the best this CPU has;
 * returns the kernel in use or -1 if the one asked for is not supported here. */
int wv_cast_select_kernel(int kernel);
#endif
